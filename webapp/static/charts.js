// duckpulse dashboard: time charts drawn with uPlot (vendored, see VENDORED.md). Every chart spans the whole range
// asked for, draws a missing value (null) as a gap, shows the values under the cursor in its legend, follows the
// cursor of the other charts, and turns a drag into a zoom (duckpulse.zoom: the range goes into the URL).
(function () {
  "use strict";

  var dp = window.duckpulse = window.duckpulse || {};
  var SYNC_KEY = "duckpulse";
  var HEIGHT = 170;
  var COLORS = ["#2f80ed", "#f2994a", "#d64545", "#1f9d55", "#8e44ad", "#16a085", "#7f8c8d"];
  var charts = {};  // by key: reused on refresh so the cursor and legend do not jump
  dp.charts = charts;

  dp.colors = COLORS;

  function width(box) { return Math.max(240, Math.floor(box.clientWidth || box.parentNode.clientWidth || 320)); }

  function axisValues(format) {
    return function (u, ticks) { return ticks.map(function (v) { return v === null ? "" : format(v); }); };
  }

  // The y axis as wide as its longest label (about 7 px a character at the page's 11 px axis font).
  function axisSize(self, values) {
    var longest = (values || []).reduce(function (n, v) { return Math.max(n, String(v).length); }, 4);
    return longest * 7 + 24;
  }

  // A value with no neighbour (sparse traffic in small buckets) draws no line: show such values as dots.
  function isolated(values) {
    return values.some(function (v, i) {
      return v !== null && v !== undefined && (i === 0 || values[i - 1] === null) &&
        (i === values.length - 1 || values[i + 1] === null);
    });
  }

  // spec: {key, title, start, end (epoch seconds), x: [...seconds], series: [{label, values, color, fill}],
  //        format (of a y value), yMin (default 0)}
  dp.timeChart = function (box, spec) {
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var existing = charts[spec.key];
    var shape = spec.series.map(function (s) { return s.label + (isolated(s.values) ? "." : ""); }).join("|");
    if (existing && existing.root.parentNode === box.querySelector(".plot") && existing.duckpulseShape === shape) {
      existing.duckpulseRange[0] = spec.start;
      existing.duckpulseRange[1] = spec.end;
      existing.setData(data);
      return existing;
    }
    var range = [spec.start, spec.end];  // the x scale always spans the range asked for, whatever the data
    if (existing) { existing.destroy(); }
    box.textContent = "";
    var title = document.createElement("h4");
    title.textContent = spec.title;
    box.appendChild(title);
    var plot = document.createElement("div");
    plot.className = "plot";
    box.appendChild(plot);
    var u = new window.uPlot({
      width: width(box),
      height: spec.height || HEIGHT,
      cursor: { sync: { key: SYNC_KEY }, drag: { x: true, y: false, setScale: false } },
      select: { show: true },
      legend: { live: true },
      scales: {
        x: { time: true, range: function () { return [range[0], range[1]]; } },
        y: { range: function (self, min, max) { return [spec.yMin === undefined ? 0 : spec.yMin, max > 0 ? max * 1.1 : 1]; } }
      },
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, space: 80 },
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: axisSize, values: axisValues(spec.format) }
      ],
      series: [{ label: "time" }].concat(spec.series.map(function (s, i) {
        var color = s.color || COLORS[i % COLORS.length];
        return { label: s.label, stroke: color, width: 1.6, fill: s.fill ? color + (spec.bars ? "cc" : "22") : undefined,
                 spanGaps: false, points: { show: !spec.bars && isolated(s.values), size: 4, fill: color },
                 paths: spec.bars ? window.uPlot.paths.bars({ size: [0.9, 40], align: 1 }) : undefined,
                 value: function (self, v) { return v === null || v === undefined ? "–" : spec.format(v); } };
      })),
      hooks: {
        setSelect: [function (self) {
          // Only a drag the user made zooms: uPlot also sets the selection when it resizes.
          if (!self.duckpulseDragging || self.select.width < 4) { return; }  // (narrower: a click)
          self.duckpulseDragging = false;
          var from = self.posToVal(self.select.left, "x");
          var to = self.posToVal(self.select.left + self.select.width, "x");
          window.setTimeout(clearSelections, 0);  // the other charts show it too (cursor sync)
          dp.zoom(Math.max(from, range[0]), Math.min(to, range[1]));
        }]
      }
    }, data, plot);
    u.over.addEventListener("mousedown", function () { u.duckpulseDragging = true; });
    u.duckpulseShape = shape;
    u.duckpulseRange = range;
    u.duckpulseKey = spec.key;
    charts[spec.key] = u;
    return u;
  };

  function clearSelections() {
    Object.keys(charts).forEach(function (key) {
      charts[key].setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    });
  }

  // Charts of views no longer shown are dropped, so their cursor sync and resize handling stop.
  dp.dropCharts = function (prefix) {
    Object.keys(charts).forEach(function (key) {
      if (key.indexOf(prefix) === 0) { charts[key].destroy(); delete charts[key]; }
    });
  };

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(function () {
      Object.keys(charts).forEach(function (key) {
        var u = charts[key];
        var box = u.root.parentNode && u.root.parentNode.parentNode;
        if (box) { u.setSize({ width: width(box), height: u.height }); }
      });
    }, 150);
  });
}());
