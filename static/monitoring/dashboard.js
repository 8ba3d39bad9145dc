// The live sale dashboard: polls its JSON endpoint and draws each series as
// an SVG chart. No chart library: four small line/bar charts do not need one,
// and the admin must work without any CDN.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var W = 600, H = 220, LEFT = 44, RIGHT = 10, TOP = 10, BOTTOM = 24;

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // series: [{values: [number|null], color, kind: "line"|"bar"}]
  // options.ticks: the value axis's round ticks, lowest first, as the server
  // chose them (apps/monitoring/axes.py); options.labelAt: indexes of the
  // labels (the shop's clock) that fall on round minutes.
  function draw(svg, labels, series, options) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var all = [];
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null) all.push(v); }); });
    if (!all.length) {
      svg.appendChild(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty"}, options.empty));
      return;
    }
    var ticks = options.ticks, bottom = ticks[0], top = ticks[ticks.length - 1];
    var n = labels.length, plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM, slot = plotW / n;
    var x = function (i) { return LEFT + slot * (i + 0.5); };
    var y = function (v) { return TOP + plotH * (1 - (v - bottom) / (top - bottom)); };
    ticks.forEach(function (value) {
      svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: y(value), y2: y(value), "class": "grid"}));
      svg.appendChild(el("text", {x: LEFT - 6, y: y(value) + 4, "text-anchor": "end", "class": "axis-label y-tick"},
        String(value)));
    });
    options.labelAt.forEach(function (i) {
      svg.appendChild(el("text", {x: x(i), y: H - 6, "text-anchor": "middle", "class": "axis-label x-tick"}, labels[i]));
    });
    series.forEach(function (s) {
      if (s.kind === "bar") {
        s.values.forEach(function (v, i) {
          if (v === null || v === 0) return;
          svg.appendChild(el("rect", {x: x(i) - slot * 0.35, y: y(v), width: slot * 0.7, height: y(0) - y(v), fill: s.color}));
        });
        return;
      }
      // A minute without data is skipped and the line joins its neighbours.
      var path = "", pen = "M";
      s.values.forEach(function (v, i) {
        if (v === null) return;
        path += pen + x(i).toFixed(1) + " " + y(v).toFixed(1) + " ";
        pen = "L";
        svg.appendChild(el("circle", {cx: x(i), cy: y(v), r: 2.5, fill: s.color}));
      });
      if (path) svg.appendChild(el("path", {d: path, fill: "none", stroke: s.color, "stroke-width": 2}));
    });
  }

  function show(root, data) {
    var empty = root.dataset.noData;
    var chart = function (name) { return root.querySelector('[data-chart="' + name + '"]'); };
    var axes = function (name) { return {empty: empty, ticks: data.ticks[name], labelAt: data.minute_ticks}; };
    draw(chart("stock"), data.minutes, [{values: data.stock_left, color: "#2b6cb0", kind: "line"}], axes("stock"));
    draw(chart("orders"), data.minutes, [{values: data.orders_per_minute, color: "#38a169", kind: "bar"}], axes("orders"));
    draw(chart("success"), data.minutes, [{values: data.success_rate, color: "#805ad5", kind: "line"}], axes("success"));
    draw(chart("latency"), data.minutes, [
      {values: data.paid_to_keys_max, color: "#dd6b20", kind: "line"},
      {values: data.paid_to_keys_avg, color: "#c53030", kind: "line"}
    ], axes("latency"));
    root.querySelectorAll("[data-now]").forEach(function (node) {
      var value = data.now[node.dataset.now];
      node.textContent = value === null || value === undefined ? "—" : value + (node.dataset.unit || "");
    });
    // The shop's clock, as on the time axis, not the browser's.
    root.querySelector("[data-updated]").textContent = data.updated + " (" + data.timezone + ")";
  }

  function start() {
    var root = document.querySelector(".sale-dashboard");
    if (!root) return;
    var every = (parseInt(root.dataset.refreshSeconds, 10) || 5) * 1000;
    function poll() {
      fetch(root.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) { show(root, data); root.dataset.loaded = "true"; })
        .catch(function () { root.dataset.loaded = "error"; })
        .finally(function () { setTimeout(poll, every); });
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
