// The order page: polls the order's status every two seconds until nothing
// more can change, shows the message of the current state, and once delivered
// lists the keys with copy buttons. Without JavaScript the server-rendered page
// refreshes itself instead (a <noscript> refresh).
(function () {
  "use strict";

  var root = document.getElementById("order");
  if (!root) return;

  var FINAL = ["delivered", "refunded"];
  // States that change only after a late payment or an operator's action.
  var SLOW = ["expired", "refund_pending", "needs_attention"];
  // A paid order of a manual-delivery product waits for a person, maybe for hours.
  if (root.getAttribute("data-delivery") === "manual") SLOW.push("paid");
  var INTERVAL = 2000;
  var SLOW_INTERVAL = 10000;
  var RETRY_AFTER_ERROR = 5000;
  var statusUrl = root.getAttribute("data-status-url");
  var timer = null;
  var inFlight = false;
  var stopped = FINAL.indexOf(root.getAttribute("data-status")) !== -1;

  function show(status) {
    root.setAttribute("data-status", status);
    root.querySelectorAll("[data-state]").forEach(function (panel) {
      panel.hidden = panel.getAttribute("data-state") !== status;
    });
  }

  function flash(button, text) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 1500);
  }

  function enableCopy(button, text) {
    // The Clipboard API exists only in secure contexts; without it the key
    // stays selectable by hand and the button stays hidden.
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(text).then(
        function () { flash(button, root.getAttribute("data-copied-label")); },
        function () { flash(button, root.getAttribute("data-copy-failed-label")); }
      );
    });
  }

  function renderKeys(keys) {
    var list = root.querySelector("[data-keys]");
    var template = root.querySelector("[data-copy-template]");
    list.replaceChildren();
    (keys || []).forEach(function (key) {
      var item = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = key;
      var button = template.content.firstElementChild.cloneNode(true);
      item.append(code, " ", button);
      list.append(item);
      enableCopy(button, key);
    });
  }

  function update(order) {
    if (order.status === "delivered" && root.getAttribute("data-status") !== "delivered") {
      renderKeys(order.keys);
    }
    show(order.status);
    stopped = FINAL.indexOf(order.status) !== -1;
  }

  function schedule(delay) {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(poll, delay);
  }

  function poll() {
    // A hidden tab does not poll; becoming visible polls at once.
    if (document.hidden || inFlight || stopped) return;
    inFlight = true;
    fetch(statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 404) { stopped = true; return null; }
        // Accepted, then lost before it was recorded: the page says so and to buy again.
        if (response.status === 410) { stopped = true; window.location.reload(); return null; }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (order) {
        inFlight = false;
        if (order) update(order);
        schedule(SLOW.indexOf(root.getAttribute("data-status")) !== -1 ? SLOW_INTERVAL : INTERVAL);
      })
      .catch(function () {
        inFlight = false;
        schedule(RETRY_AFTER_ERROR);
      });
  }

  root.querySelectorAll("[data-copy]").forEach(function (button) {
    enableCopy(button, button.getAttribute("data-copy"));
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) schedule(0);
  });
  schedule(INTERVAL);
})();
