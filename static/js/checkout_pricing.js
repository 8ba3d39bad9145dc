// The purchase form's live total: unit price (with the wholesale tier the
// quantity reaches) × quantity, less the coupon once it checks out. Every
// figure comes from the server (POST /api/v1/coupons/check, the same pricing
// code as checkout), so the page never does money arithmetic of its own.
(function () {
  "use strict";

  var box = document.querySelector(".checkout-pricing");
  if (!box) return;
  var form = box.closest("form");
  var quantity = form.querySelector("[name=quantity]");
  var email = form.querySelector("[name=email]");
  var couponInput = box.querySelector("[name=coupon]");
  var message = box.querySelector("[data-coupon-message]");
  var discountRow = box.querySelector("[data-discount]");
  var applied = ""; // the coupon the shown total includes
  var asked = 0; // answers to older questions are dropped
  var timer = null;

  function field(name) { return box.querySelector('[data-total="' + name + '"]'); }

  function say(text, kind) {
    message.textContent = text;
    message.className = "coupon-message" + (kind ? " is-" + kind : "");
  }

  function show(body) {
    field("amount").textContent = body.display.amount;
    field("line").textContent = body.display.unit_price + " × " + body.quantity;
    field("discount").textContent = body.display.discount;
    discountRow.hidden = !body.coupon;
    box.setAttribute("data-amount", body.amount);
  }

  function ask(coupon) {
    var n = parseInt(quantity.value, 10);
    if (!(n >= 1)) return;
    var mine = ++asked;
    var body = { sku: box.getAttribute("data-sku"), quantity: n };
    if (coupon) body.coupon = coupon;
    if (email && email.value && email.checkValidity()) body.email = email.value;
    fetch(box.getAttribute("data-price-url"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (answer) {
      if (mine !== asked) return;
      if (answer.ok) {
        applied = answer.data.coupon || "";
        show(answer.data);
        if (coupon) say(box.getAttribute("data-applied-text") + " " + answer.data.coupon, "ok");
      } else if (coupon && /^coupon_/.test(answer.data.error)) {
        // The coupon is refused: say why, and total without it.
        applied = "";
        say(answer.data.detail, "error");
        ask("");
      } else if (answer.data.detail) {
        say(answer.data.detail, "error");
      }
    }).catch(function () { /* offline for a moment: the last total stays */ });
  }

  function applyCoupon() {
    var code = couponInput.value.trim();
    if (!code) { applied = ""; say("", ""); ask(""); return; }
    ask(code);
  }

  box.querySelector("[data-coupon-apply]").addEventListener("click", applyCoupon);
  couponInput.addEventListener("change", applyCoupon);
  couponInput.addEventListener("keydown", function (event) {
    // Enter applies the coupon; it does not submit the purchase.
    if (event.key === "Enter") { event.preventDefault(); applyCoupon(); }
  });
  quantity.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { ask(applied); }, 200);
  });
  if (couponInput.value.trim()) applyCoupon(); else ask("");
})();
