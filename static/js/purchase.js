// The product page before a flash sale: the form is live (the buyer types the
// email early) and only the buy button waits. At zero the sale opens here,
// without a reload, so nothing typed is lost and the page token the buyer has
// held since the page loaded still counts their time on the page (a reload
// would issue a new one and restart the minimum-time clock: "too fast").
// The server still decides: it refuses a submission before the sale opens.
//
// The price the buyer pays is the server's: nothing here computes a total.
(function () {
  "use strict";

  var form = document.querySelector("form.purchase[data-opens-in]");
  if (!form) return;
  var button = form.querySelector("button[type=submit]");
  var tokenInput = form.querySelector('input[name="page_token"]');
  var opensIn = parseInt(form.getAttribute("data-opens-in"), 10);
  var tokenMaxAge = parseInt(form.getAttribute("data-token-max-age"), 10);
  var minSeconds = parseInt(form.getAttribute("data-min-page-seconds"), 10) || 0;
  // A little past zero, so the server agrees the sale has started.
  var OPEN_DELAY_MS = 700;
  // Renew the token this long before it would be needed.
  var RENEW_MARGIN_SECONDS = 5;

  function open() {
    button.disabled = false;
    var label = button.getAttribute("data-open-label");
    if (label) button.textContent = label;
    form.removeAttribute("data-opens-in");
    form.setAttribute("data-sale-open", "");
    document.querySelectorAll(".countdown").forEach(function (el) { el.hidden = true; });
  }

  function renewToken() {
    // Only for a sale that opens after the page's token would be stale: a
    // fresh one, fetched early enough that it is older than the product's
    // minimum when the sale opens, so the buyer's clock is not restarted.
    fetch(form.getAttribute("data-product-url"), { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (product) { if (product && product.page_token) tokenInput.value = product.page_token; })
      .catch(function () { /* the server says so on submit; the buyer can reload then */ });
  }

  if (!isNaN(tokenMaxAge) && !isNaN(opensIn) && opensIn + 60 > tokenMaxAge && tokenInput) {
    var renewIn = Math.max(0, opensIn - minSeconds - RENEW_MARGIN_SECONDS);
    setTimeout(renewToken, renewIn * 1000);
  }

  // The product page's countdown (static/js/countdown.js) reaches zero.
  document.addEventListener("countdown:zero", function (event) {
    event.preventDefault();
    setTimeout(open, OPEN_DELAY_MS);
  });
})();
