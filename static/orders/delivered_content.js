// A manual delivery that arrives while the order page is open: order.js shows
// the delivered panel when its poll sees the new status; this fills in the
// merchant's text, read once from the same status URL.
(function () {
  "use strict";

  var root = document.getElementById("order");
  var block = root && root.querySelector("[data-delivered-content]");
  if (!block) return;

  function fill() {
    if (!block.hidden || root.getAttribute("data-status") !== "delivered") return;
    fetch(root.getAttribute("data-status-url"), {
      headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store"
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (order) {
        if (!order || !order.delivered_content) return;
        block.querySelector("[data-delivered-text]").textContent = order.delivered_content;
        block.hidden = false;
      })
      .catch(function () { /* the next visit shows it, server-rendered */ });
  }

  new MutationObserver(fill).observe(root, { attributes: true, attributeFilter: ["data-status"] });
})();
