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

  function niceMax(value) {
    if (!(value > 0)) return 1;
    var step = Math.pow(10, Math.floor(Math.log10(value)));
    var m = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find(function (f) { return f * step >= value; });
    return +(m * step).toPrecision(6);
  }

  // series: [{values: [number|null], color, kind: "line"|"bar"}]
  function draw(svg, labels, series, options) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var all = [];
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null) all.push(v); }); });
    if (!all.length) {
      svg.appendChild(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty"}, options.empty));
      return;
    }
    var top = options.max || niceMax(Math.max.apply(null, all));
    var n = labels.length, plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM, slot = plotW / n;
    var x = function (i) { return LEFT + slot * (i + 0.5); };
    var y = function (v) { return TOP + plotH * (1 - v / top); };
    for (var g = 0; g <= 4; g++) {
      var value = top * g / 4;
      svg.appendChild(el("line", {x1: LEFT, x2: W - RIGHT, y1: y(value), y2: y(value), "class": "grid"}));
      svg.appendChild(el("text", {x: LEFT - 6, y: y(value) + 4, "text-anchor": "end", "class": "axis-label"},
        +value.toFixed(2)));
    }
    labels.forEach(function (label, i) {
      if (i % 5 === 0 || i === n - 1) {
        svg.appendChild(el("text", {x: x(i), y: H - 6, "text-anchor": "middle", "class": "axis-label"}, label));
      }
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
    draw(chart("stock"), data.minutes, [{values: data.stock_left, color: "#2b6cb0", kind: "line"}], {empty: empty});
    draw(chart("orders"), data.minutes, [{values: data.orders_per_minute, color: "#38a169", kind: "bar"}], {empty: empty});
    draw(chart("success"), data.minutes, [{values: data.success_rate, color: "#805ad5", kind: "line"}], {empty: empty, max: 100});
    draw(chart("latency"), data.minutes, [
      {values: data.paid_to_keys_max, color: "#dd6b20", kind: "line"},
      {values: data.paid_to_keys_avg, color: "#c53030", kind: "line"}
    ], {empty: empty});
    root.querySelectorAll("[data-now]").forEach(function (node) {
      var value = data.now[node.dataset.now];
      node.textContent = value === null || value === undefined ? "—" : value + (node.dataset.unit || "");
    });
    root.querySelector("[data-updated]").textContent = new Date().toLocaleTimeString();
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
