// The order page: polls the order's status until nothing more can change,
// shows the message of the current state, and once delivered lists the keys
// with copy buttons. Without JavaScript the server-rendered page refreshes
// itself instead (a <noscript> refresh).
//
// The poll is a conditional request: it sends back the last ETag in
// If-None-Match, and an unchanged order is answered 304 from Redis, without
// the database (apps/orders/poll.py). The server says when to poll again
// (poll_after_ms in the body, Retry-After on a 304), slower for an old order
// and a busy shop; the page waits that long, longer still (exponential
// backoff) while nothing changes, with jitter so that thousands of pages
// opened in the same second of a flash sale do not poll in step.
(function () {
  "use strict";

  var root = document.getElementById("order");
  if (!root) return;

  var FINAL = ["delivered", "refunded"];
  // States that change only after a late payment or an operator's action.
  var SLOW = ["expired", "refund_pending", "needs_attention"];
  // A paid order of a manual-delivery product waits for a person, maybe for hours.
  if (root.getAttribute("data-delivery") === "manual") SLOW.push("paid");
  // Until the server has said otherwise.
  var INTERVAL = 2000;
  var SLOW_INTERVAL = 10000;
  var RETRY_AFTER_ERROR = 5000;
  // Each unchanged answer in a row stretches the wait by this much, up to MAX_BACKOFF times.
  var BACKOFF = 1.5;
  var MAX_BACKOFF = 3;
  var MAX_DELAY = 60000;
  // The page's own stretching stops here (a longer wait only when the server asks for it).
  var MAX_STRETCH = 20000;
  // Each wait is drawn from ±JITTER of its value.
  var JITTER = 0.2;
  var statusUrl = root.getAttribute("data-status-url");
  var timer = null;
  var inFlight = false;
  var stopped = FINAL.indexOf(root.getAttribute("data-status")) !== -1;
  // The status the page was rendered with: the first poll is already
  // conditional, though it is usually a 200 (rendering the page stores no
  // status record; that poll does).
  var etag = root.getAttribute("data-etag") || null;
  // The server's poll_after_ms (the page is rendered with it).
  var hint = parseInt(root.getAttribute("data-poll-after-ms"), 10);
  if (isNaN(hint)) hint = null;
  var unchanged = 0; // answers in a row that changed nothing
  var errors = 0;

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

  function jittered(delay) {
    return Math.round(delay * (1 - JITTER + 2 * JITTER * Math.random()));
  }

  function nextDelay() {
    var base = hint;
    if (base === null) base = SLOW.indexOf(root.getAttribute("data-status")) !== -1 ? SLOW_INTERVAL : INTERVAL;
    var stretched = Math.max(base, Math.min(MAX_STRETCH, base * Math.min(MAX_BACKOFF, Math.pow(BACKOFF, unchanged))));
    return jittered(Math.min(MAX_DELAY, stretched));
  }

  function retryAfterMs(response) {
    var seconds = parseInt(response.headers.get("Retry-After"), 10);
    return isNaN(seconds) ? null : seconds * 1000;
  }

  function poll() {
    // A hidden tab does not poll; becoming visible polls at once.
    if (document.hidden || inFlight || stopped) return;
    inFlight = true;
    var headers = { Accept: "application/json" };
    if (etag) headers["If-None-Match"] = etag;
    fetch(statusUrl, { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 404) { stopped = true; return null; }
        // Accepted, then lost before it was recorded: the page says so and to buy again.
        if (response.status === 410) { stopped = true; window.location.reload(); return null; }
        if (response.status === 304) {
          unchanged += 1;
          // Retry-After is whole seconds: keep the body's finer figure
          // unless the server's has moved on (load, age) since.
          var after = retryAfterMs(response);
          if (after !== null && (hint === null || Math.max(1000, Math.ceil(hint / 1000) * 1000) !== after)) hint = after;
          return null;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        etag = response.headers.get("ETag");
        return response.json();
      })
      .then(function (order) {
        inFlight = false;
        errors = 0;
        if (order) {
          unchanged = order.status === root.getAttribute("data-status") ? unchanged + 1 : 0;
          if (typeof order.poll_after_ms === "number") hint = order.poll_after_ms;
          update(order);
        }
        schedule(nextDelay());
      })
      .catch(function () {
        inFlight = false;
        errors += 1;
        schedule(jittered(Math.min(MAX_DELAY, RETRY_AFTER_ERROR * Math.pow(2, errors - 1))));
      });
  }

  root.querySelectorAll("[data-copy]").forEach(function (button) {
    enableCopy(button, button.getAttribute("data-copy"));
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) schedule(0);
  });
  schedule(nextDelay());
})();
