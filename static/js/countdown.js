// Counts down to a sale start. The server sends the seconds left rather than a
// time of day, so a buyer's wrong clock cannot start the countdown early or late.
// At zero the page reloads (the server decides what it shows now), unless the
// page handles the "countdown:zero" event itself.
(function () {
  "use strict";

  function clock(seconds) {
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    return h + ":" + (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
  }

  document.querySelectorAll("[data-countdown]").forEach(function (el) {
    var total = parseInt(el.getAttribute("data-countdown"), 10);
    if (isNaN(total)) return;
    var started = performance.now();
    var timer = setInterval(function () {
      var left = Math.max(0, Math.ceil(total - (performance.now() - started) / 1000));
      el.textContent = clock(left);
      if (left === 0) {
        clearInterval(timer);
        // A page that can carry on without a reload (the product page's form,
        // static/js/purchase.js) cancels this event; the others reload, a little
        // past zero, so the server agrees the time is up.
        var zero = new CustomEvent("countdown:zero", { bubbles: true, cancelable: true });
        if (el.dispatchEvent(zero)) setTimeout(function () { window.location.reload(); }, 700);
      }
    }, 250);
  });
})();
