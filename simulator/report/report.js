// simreplay report: draws the figure specs of simulator/report/figures.py as inline SVG.
// Inlined into every page; plain ES2017, no library. __PALETTE__ is filled in by html.py.
(function () {
"use strict";
var PALETTE = __PALETTE__;
var NS = "http://www.w3.org/2000/svg";
var specs = JSON.parse(document.getElementById("simreplay-figures").textContent);
var zoom = null;          // [lo, hi] of the shared time axis, null = everything
var drawn = {};
var brushing = null;      // finishes the drag-to-zoom in progress, on mouse up anywhere
window.addEventListener("mouseup", function (ev) {
  if (brushing) { var f = brushing; brushing = null; f(ev); }
});

function el(tag, attrs, parent) {
  var e = document.createElementNS(NS, tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
// Pixels between two rows of reference-line labels (11 px text) and, where the text cannot be
// measured (a figure not displayed), a generous width per character of it.
var REF_ROW_PX = 13, REF_CHAR_PX = 6.5;
function labelWidth(text) {
  var w = text.getComputedTextLength ? text.getComputedTextLength() : 0;
  return w > 0 ? w : REF_CHAR_PX * text.textContent.length;
}
function finite(v) { return v !== null && v !== undefined && isFinite(v); }
function niceStep(span, n) {
  var raw = span / Math.max(n, 1), mag = Math.pow(10, Math.floor(Math.log10(raw)));
  var r = raw / mag;
  return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}
function linTicks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  var step = niceStep(hi - lo, n), out = [];
  for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}
function logTicks(lo, hi) {
  var out = [], a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  // Decades; 1-2-5 within three decades; every integer multiple when that is still too few.
  var sets = (b - a) <= 3 ? [[1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]] : [[1]];
  for (var k = 0; k < sets.length && out.length < 3; k++) {
    out = [];
    for (var e = a; e <= b; e++) for (var i = 0; i < sets[k].length; i++) {
      var v = sets[k][i] * Math.pow(10, e);
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out.length >= 2 ? out : [lo, hi];
}
function tailTicks(top) {
  var out = [0, 0.5];
  for (var k = 1; 1 - Math.pow(10, -k) <= top + 1e-12; k++) out.push(1 - Math.pow(10, -k));
  return out;
}
function fmt(v) {
  if (!finite(v)) return "n/a";
  var a = Math.abs(v);
  if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
  if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
  if (a >= 100) return Math.round(v).toString();
  if (a >= 1) return (+v.toPrecision(3)).toString();
  if (a === 0) return "0";
  return (+v.toPrecision(2)).toString();
}
function timeUnit(span) {
  return span > 7200 ? [3600, "h"] : span > 180 ? [60, "min"] : [1, "s"];
}
function scale(lo, hi, a, b, log) {
  if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
  var k = (b - a) / ((hi - lo) || 1);
  var f = log ? function (v) { return a + (Math.log10(v) - lo) * k; }
              : function (v) { return a + (v - lo) * k; };
  f.invert = log ? function (p) { return Math.pow(10, lo + (p - a) / k); }
                 : function (p) { return lo + (p - a) / k; };
  return f;
}
function xsOf(spec, s) { return s.x || spec.x.values; }

function extent(spec, xlo, xhi) {
  var logx = spec.x.scale === "log", logy = spec.y.scale === "log", xs = [], ys = [];
  spec.series.forEach(function (s) {
    var x = xsOf(spec, s);
    for (var i = 0; i < s.y.length; i++) {
      if (!finite(s.y[i]) || !finite(x[i]) || (logx && x[i] <= 0) || (logy && s.y[i] <= 0)) continue;
      if (xlo !== null && (x[i] < xlo || x[i] > xhi)) continue;
      xs.push(x[i]); ys.push(s.y[i]);
    }
  });
  spec.markers.forEach(function (m) {
    if ((!logx || m.x > 0) && (!logy || m.y > 0)) { xs.push(m.x); ys.push(m.y); }
  });
  spec.vlines.forEach(function (v) { if (!logx || v.x > 0) xs.push(v.x); });
  spec.hlines.forEach(function (h) { if (!logy || h.y > 0) ys.push(h.y); });
  function mm(a) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < a.length; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i]; }
    return [lo, hi];
  }
  var X = mm(xs), Y = mm(ys);
  if (!(X[1] >= X[0])) {
    // Nothing finite to draw (no completed request, an empty window): an empty frame.
    var shared = (spec.x.values || []).filter(function (v) { return finite(v) && (!logx || v > 0); });
    X = shared.length ? mm(shared) : logx ? [1, 10] : [0, 1];
  }
  if (!(Y[1] >= Y[0])) Y = logy ? [1, 10] : [0, 1];
  if (xlo !== null) X = [xlo, xhi];
  if (spec.y.min !== undefined) Y[0] = spec.y.min;
  if (logy) {
    if (!(Y[0] > 0)) Y = [1, 10];
    Y = [Y[0] / 1.25, Y[1] * 1.25];
    if (!(Y[1] > Y[0] * 1.01)) Y = [Y[0] / 2, Y[1] * 2];
  } else {
    if (spec.y.max !== undefined) Y[1] = spec.y.max; else Y[1] = Y[1] + (Y[1] - Y[0]) * 0.06;
    if (!(Y[1] > Y[0])) Y[1] = Y[0] + 1;
  }
  if (!(X[1] > X[0])) { X = logx ? [X[0] / 2 || 1, (X[0] || 1) * 2] : [X[0] - 1, X[0] + 1]; }
  else if (spec.series.some(function (s) { return s.points; })) {
    // Room for the dots and rings at the ends.
    X = logx ? [X[0] / 1.15, X[1] * 1.15] : [X[0] - (X[1] - X[0]) * 0.04, X[1] + (X[1] - X[0]) * 0.04];
  }
  return [X, Y];
}

function drawLine(spec, box) {
  var W = Math.max(box.clientWidth, 320), H = spec.x.time ? 200 : 250;
  var m = {l: spec.y.scale === "tail" ? 68 : 56, r: 14, t: 10, b: 34};
  box.innerHTML = "";
  var svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                       "aria-label": spec.title}, box);
  var dom = extent(spec, spec.zoom && zoom ? zoom[0] : null, spec.zoom && zoom ? zoom[1] : null);
  var logx = spec.x.scale === "log";
  var X = scale(dom[0][0], dom[0][1], m.l, W - m.r, logx);
  var tail = spec.y.scale === "tail", top = spec.y.max;
  // "tail": the distance to 1 on a log scale, so p50, p90, p99, p99.9 are evenly spaced.
  var logy = spec.y.scale === "log";
  var ty = tail ? function (v) { return -Math.log10(Math.max(1 - Math.min(v, top), 1e-12)); }
         : logy ? function (v) { return Math.log10(v); }
                : function (v) { return v; };
  var Ylin = scale(ty(dom[1][0]), ty(dom[1][1]), H - m.b, m.t, false);
  var Y = function (v) { return Ylin(ty(v)); };
  var unit = spec.x.time ? timeUnit(dom[0][1] - dom[0][0]) : [1, ""];
  var xt = spec.x.ticks ? spec.x.ticks.slice()
         : logx ? logTicks(dom[0][0], dom[0][1])
                : linTicks(dom[0][0] / unit[0], dom[0][1] / unit[0], W / 110).map(function (v) { return v * unit[0]; })
                  .filter(function (v) { return !spec.x.integer || v === Math.round(v); });
  var yt = tail ? tailTicks(top) : logy ? logTicks(dom[1][0], dom[1][1])
                                        : linTicks(dom[1][0], dom[1][1], H / 45);
  yt.forEach(function (v) {
    el("line", {x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), "class": "grid"}, svg);
    el("text", {x: m.l - 5, y: Y(v) + 4, "text-anchor": "end"}, svg).textContent =
      tail ? +(v * 100).toPrecision(6) + "%" : fmt(v);
  });
  xt.forEach(function (v) {
    el("line", {x1: X(v), x2: X(v), y1: m.t, y2: H - m.b, "class": "grid"}, svg);
    el("text", {x: X(v), y: H - m.b + 14, "text-anchor": "middle"}, svg).textContent = fmt(v / unit[0]);
  });
  el("line", {x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, "class": "axis"}, svg);
  el("line", {x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, "class": "axis"}, svg);
  el("text", {x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle"}, svg).textContent =
    spec.x.label + (unit[1] ? " (" + unit[1] + ")" : "");
  el("text", {x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle",
              transform: "rotate(-90 12 " + (m.t + H - m.b) / 2 + ")"}, svg).textContent = spec.y.label;
  var clipId = "clip-" + spec.id;
  var defs = el("defs", {}, svg), clip = el("clipPath", {id: clipId}, defs);
  el("rect", {x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b}, clip);
  var plot = el("g", {"clip-path": "url(#" + clipId + ")"}, svg);
  spec.series.forEach(function (s, si) {
    var x = xsOf(spec, s), d = [], pen = false, step = s.step;
    var dx = step && x.length > 1 ? x[1] - x[0] : 0;
    for (var i = 0; i < s.y.length; i++) {
      if (!finite(s.y[i]) || !finite(x[i]) || (logx && x[i] <= 0) || (logy && s.y[i] <= 0)) {
        pen = false; continue;
      }
      if (spec.zoom && zoom && (x[i] + dx < zoom[0] - (zoom[1] - zoom[0]) * 0.02 || x[i] > zoom[1] * 1.0 + (zoom[1] - zoom[0]) * 0.02)) { pen = false; continue; }
      var px = X(x[i]).toFixed(1), py = Y(s.y[i]).toFixed(1);
      if (step) {
        d.push((pen ? "L" : "M") + px + " " + py + "H" + X(i + 1 < x.length ? x[i + 1] : x[i] + dx).toFixed(1));
      } else {
        d.push((pen ? "L" : "M") + px + " " + py);
      }
      pen = true;
    }
    var colour = PALETTE[(s.color !== undefined ? s.color : si) % PALETTE.length];
    el("path", {d: s.points && !s.line ? "" : d.join(""), fill: "none", stroke: colour,
                "stroke-width": spec.series.length > 8 ? 1 : 1.6, "class": "series",
                "data-series": s.name, "stroke-dasharray": s.dash ? "5 3" : "none"}, plot);
    if (s.points) {
      for (var j = 0; j < s.y.length; j++) {
        if (!finite(s.y[j]) || !finite(x[j]) || (logx && x[j] <= 0) || (logy && s.y[j] <= 0)) continue;
        var c = el("circle", {cx: X(x[j]), cy: Y(s.y[j]), r: 3.5, fill: colour, "fill-opacity": 0.75,
                              "class": "point"}, plot);
        el("title", {}, c).textContent = (s.labels ? s.labels[j] + ": " : "") + fmt(x[j]) + ", " + fmt(s.y[j]);
      }
    }
  });
  // Reference lines' labels step aside so that two close bounds (ttft p50 and p99 SLOs) stay
  // readable: a vertical line's label drops a row when it would run into one to its left, a
  // horizontal line's rises when it would sit on the one below it (png.py does the same).
  var rowEnds = [];
  spec.vlines.filter(function (v) { return !logx || v.x > 0; })
    .sort(function (a, b) { return a.x - b.x; }).forEach(function (v) {
      el("line", {x1: X(v.x), x2: X(v.x), y1: m.t, y2: H - m.b, "class": "ref"}, plot);
      var t = el("text", {x: X(v.x) - 4, y: m.t + 12, "text-anchor": "end", "class": "ref-label"}, plot);
      t.textContent = v.label;
      var row = 0, left = X(v.x) - 4 - labelWidth(t);
      while (row < rowEnds.length && left < rowEnds[row] + 6) row++;
      rowEnds[row] = X(v.x) - 4;
      t.setAttribute("y", m.t + 12 + REF_ROW_PX * row);
    });
  var hlines = spec.hlines.filter(function (h) { return !logy || h.y > 0; })
    .sort(function (a, b) { return Y(b.y) - Y(a.y); });
  var ys = [], below = Infinity, above = -Infinity;
  hlines.forEach(function (h) { below = Math.min(Y(h.y) - 4, below - REF_ROW_PX); ys.push(below); });
  // Labels pushed above the frame come back into it, and those under them make room.
  for (var i = ys.length - 1; i >= 0; i--) { above = Math.max(ys[i], above + REF_ROW_PX, m.t + 11); ys[i] = above; }
  hlines.forEach(function (h, i) {
    el("line", {x1: m.l, x2: W - m.r, y1: Y(h.y), y2: Y(h.y), "class": "ref"}, plot);
    el("text", {x: W - m.r - 4, y: ys[i], "text-anchor": "end", "class": "ref-label"}, plot).textContent = h.label;
  });
  spec.markers.forEach(function (mk) {
    if (logx && mk.x <= 0) return;
    var c = el("circle", {cx: X(mk.x), cy: Y(mk.y), r: mk.highlight ? 8 : 3.5, fill: mk.highlight ? "none" : "#fff",
                          stroke: mk.highlight ? "#cf222e" : "#1f2328", "stroke-width": mk.highlight ? 2.5 : 1.4,
                          "class": mk.highlight ? "marker highlight" : "marker"}, plot);
    el("title", {}, c).textContent = mk.name;
    el("text", {x: X(mk.x) + (mk.highlight ? 11 : 6), y: Y(mk.y) + 4,
                "class": mk.highlight ? "ref-label" : ""}, plot).textContent = mk.name;
  });
  interact(spec, box, svg, X, Y, m, W, H);
}

function drawBars(spec, box) {
  var cats = spec.x.values, W = Math.max(box.clientWidth, 320), H = 250;
  var m = {l: 56, r: 14, t: 10, b: 34};
  box.innerHTML = "";
  var svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                       "aria-label": spec.title}, box);
  var hi = 0;
  spec.series.forEach(function (s) { s.y.forEach(function (v) { if (finite(v) && v > hi) hi = v; }); });
  hi = hi > 0 ? hi * 1.08 : 1;
  var Y = scale(0, hi, H - m.b, m.t, false);
  linTicks(0, hi, H / 45).forEach(function (v) {
    el("line", {x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v), "class": "grid"}, svg);
    el("text", {x: m.l - 5, y: Y(v) + 4, "text-anchor": "end"}, svg).textContent = fmt(v);
  });
  var band = (W - m.l - m.r) / Math.max(cats.length, 1), n = spec.series.length;
  var bw = Math.max(band * 0.8 / Math.max(n, 1), 1);
  var every = Math.ceil(cats.length / Math.max((W - m.l - m.r) / 28, 1));
  cats.forEach(function (c, ci) {
    var x0 = m.l + ci * band + band * 0.1;
    spec.series.forEach(function (s, si) {
      var v = s.y[ci];
      if (!finite(v)) return;
      var r = el("rect", {x: x0 + si * bw, y: Y(v), width: Math.max(bw - 1, 0.5), height: Y(0) - Y(v),
                          fill: PALETTE[si % PALETTE.length], "class": "bar", "data-series": s.name}, svg);
      el("title", {}, r).textContent = spec.x.label + " " + c + ", " + s.name + ": " + fmt(v);
    });
    if (ci % every === 0)
      el("text", {x: m.l + (ci + 0.5) * band, y: H - m.b + 14, "text-anchor": "middle"}, svg).textContent = c;
  });
  el("line", {x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, "class": "axis"}, svg);
  el("text", {x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle"}, svg).textContent = spec.x.label;
  el("text", {x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle",
              transform: "rotate(-90 12 " + (m.t + H - m.b) / 2 + ")"}, svg).textContent = spec.y.label;
}

function heatColour(v) {
  // 0 red, 0.5 yellow, 1 green: SLO attainment reads at a glance.
  var stops = [[207, 34, 46], [237, 201, 72], [45, 164, 78]], t = Math.max(0, Math.min(1, v));
  var k = t < 0.5 ? 0 : 1, f = t < 0.5 ? t * 2 : (t - 0.5) * 2, a = stops[k], b = stops[k + 1];
  return "rgb(" + [0, 1, 2].map(function (i) { return Math.round(a[i] + (b[i] - a[i]) * f); }).join(",") + ")";
}

function drawHeatmap(spec, box) {
  var xs = spec.x.values, ys = spec.y.values, W = Math.max(box.clientWidth, 320);
  var m = {l: 110, r: 14, t: 10, b: 40}, cell = Math.min(36, Math.max(18, 300 / Math.max(ys.length, 1)));
  var H = m.t + m.b + cell * ys.length;
  box.innerHTML = "";
  var svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                       "aria-label": spec.title}, box);
  var cw = (W - m.l - m.r) / Math.max(xs.length, 1);
  ys.forEach(function (yv, yi) {
    el("text", {x: m.l - 6, y: m.t + (yi + 0.5) * cell + 4, "text-anchor": "end"}, svg).textContent = yv;
    xs.forEach(function (xv, xi) {
      var v = spec.z[yi][xi];
      var r = el("rect", {x: m.l + xi * cw, y: m.t + yi * cell, width: Math.max(cw - 2, 1), height: cell - 2,
                          fill: finite(v) ? heatColour(v) : "#eaeef2", "class": "cell"}, svg);
      el("title", {}, r).textContent = spec.y.label + " " + yv + ", " + spec.x.label + " " + xv + ": " +
        (finite(v) ? (v * 100).toFixed(1) + "%" : "no scenario");
      if (finite(v) && cw > 34)
        el("text", {x: m.l + (xi + 0.5) * cw - 1, y: m.t + (yi + 0.5) * cell + 4, "text-anchor": "middle",
                    style: "fill: #fff; font-weight: 600"}, svg).textContent = Math.round(v * 100) + "%";
    });
  });
  var every = Math.ceil(xs.length / Math.max((W - m.l - m.r) / 40, 1));
  xs.forEach(function (xv, xi) {
    if (xi % every === 0)
      el("text", {x: m.l + (xi + 0.5) * cw, y: H - m.b + 14, "text-anchor": "middle"}, svg).textContent = xv;
  });
  el("text", {x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle"}, svg).textContent = spec.x.label;
  el("text", {x: 4, y: m.t - 0, "text-anchor": "start"}, svg).textContent = spec.y.label;
}

function nearest(arr, v) {
  var lo = 0, hi = arr.length - 1;
  while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (arr[mid] < v) lo = mid; else hi = mid; }
  return Math.abs(arr[lo] - v) <= Math.abs(arr[hi] - v) ? lo : hi;
}

function interact(spec, box, svg, X, Y, m, W, H) {
  // Scatter plots keep each point's own tooltip (<title>); nothing may cover them.
  if (spec.series.some(function (s) { return s.points; })) return;
  var tip = box.parentNode.querySelector(".tip");
  var guide = el("line", {y1: m.t, y2: H - m.b, "class": "guide", visibility: "hidden"}, svg);
  var brush = el("rect", {y: m.t, height: H - m.t - m.b, width: 0, "class": "brush", visibility: "hidden"}, svg);
  var hit = el("rect", {x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b,
                        fill: "transparent", style: spec.zoom ? "cursor: crosshair" : ""}, svg);
  var start = null;
  function px(ev) { var r = svg.getBoundingClientRect(); return Math.min(Math.max(ev.clientX - r.left, m.l), W - m.r); }
  hit.addEventListener("mousemove", function (ev) {
    var p = px(ev), xv = X.invert(p), lines = [];
    guide.setAttribute("x1", p); guide.setAttribute("x2", p); guide.setAttribute("visibility", "visible");
    var unit = spec.x.time ? timeUnit((zoom && spec.zoom ? zoom[1] - zoom[0] : 1e9)) : [1, ""];
    spec.series.slice(0, 12).forEach(function (s) {
      var x = xsOf(spec, s); if (!x.length) return;
      var i = nearest(x, xv);
      if (spec.series[0].cdf) lines.push(s.name + ": " + fmt(x[i]) + " ms at " + (s.y[i] * 100).toPrecision(4) + "%");
      else lines.push(s.name + ": " + fmt(s.y[i]));
    });
    if (!spec.series[0] || !spec.series[0].cdf) lines.unshift(spec.x.label + " " + fmt(xv / unit[0]) + (unit[1] ? " " + unit[1] : ""));
    if (spec.series.length > 12) lines.push("\u2026 " + (spec.series.length - 12) + " more");
    tip.textContent = ""; lines.forEach(function (t) { var d = document.createElement("div"); d.textContent = t; tip.appendChild(d); });
    tip.style.display = "block";
    tip.style.left = Math.min(p + 14, W - 200) + "px"; tip.style.top = (m.t + 30) + "px";
    if (start !== null) {
      brush.setAttribute("x", Math.min(start, p)); brush.setAttribute("width", Math.abs(p - start));
    }
  });
  hit.addEventListener("mouseleave", function () {
    guide.setAttribute("visibility", "hidden"); tip.style.display = "none";
  });
  if (!spec.zoom) return;
  hit.addEventListener("mousedown", function (ev) {
    start = px(ev); brush.setAttribute("visibility", "visible"); brush.setAttribute("width", 0);
    ev.preventDefault();
    brushing = function (up) {
      var p = px(up), a = Math.min(start, p), b = Math.max(start, p);
      start = null; brush.setAttribute("visibility", "hidden");
      if (b - a > 4) setZoom([X.invert(a), X.invert(b)]);
    };
  });
  hit.addEventListener("dblclick", function () { setZoom(null); });
}

function setZoom(z, keepUrl) {
  zoom = z;
  specs.forEach(function (s) { if (s.zoom) draw(s); });
  var r = document.getElementById("zoom-state");
  // In the unit of the zoomed axes (timeUnit of the span), not always seconds.
  var u = z ? timeUnit(z[1] - z[0]) : null;
  if (r) r.textContent = z ? "showing " + fmt(z[0] / u[0]) + " " + u[1] + " to " + fmt(z[1] / u[0]) + " " + u[1] + " of the trace" : "";
  // The span is kept in the address (#t=START-END, trace seconds) so a zoomed view can be shared.
  if (!keepUrl) {
    try {
      history.replaceState(null, "", z ? "#t=" + z[0].toFixed(3) + "-" + z[1].toFixed(3)
                                       : location.pathname + location.search);
    } catch (e) { /* some viewers forbid it; the zoom still works */ }
  }
}
function zoomFromUrl() {
  var m = /^#t=(-?[0-9.]+)-(-?[0-9.]+)$/.exec(location.hash);
  if (m && +m[2] > +m[1]) setZoom([+m[1], +m[2]], true);
}

function draw(spec) {
  var fig = document.getElementById("fig-" + spec.id);
  if (!fig) return;
  var box = fig.querySelector(".plot");
  try {
    if (spec.kind === "bar") drawBars(spec, box);
    else if (spec.kind === "heatmap") drawHeatmap(spec, box);
    else drawLine(spec, box);
    drawn[spec.id] = true;
  } catch (e) {
    box.innerHTML = "";
    var p = document.createElement("p"); p.className = "error";
    p.textContent = "could not draw this figure: " + e.message; box.appendChild(p);
    document.body.setAttribute("data-render-errors", "yes");
  }
}

function legends() {
  specs.forEach(function (spec) {
    var fig = document.getElementById("fig-" + spec.id);
    if (!fig || spec.series.length < 2) return;
    var lg = fig.querySelector(".legend");
    spec.series.forEach(function (s, si) {
      var span = document.createElement("span");
      span.style.setProperty("--c", PALETTE[(s.color !== undefined ? s.color : si) % PALETTE.length]);
      span.textContent = s.name; lg.appendChild(span);
    });
  });
}

legends();
specs.forEach(draw);
zoomFromUrl();
document.body.setAttribute("data-rendered", Object.keys(drawn).length);
var reset = document.getElementById("reset-zoom");
if (reset) reset.addEventListener("click", function () { setZoom(null); });
var timer = null;
window.addEventListener("resize", function () {
  clearTimeout(timer);
  timer = setTimeout(function () { specs.forEach(draw); }, 150);
});
})();
