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

  function present(v) { return v !== null && v !== undefined; }

  // A value with no neighbour within `reach` buckets (sparse traffic in small buckets) draws no line: show such
  // values as dots.
  function isolated(values, reach) {
    return values.some(function (v, i) {
      if (!present(v)) { return false; }
      for (var d = 1; d <= reach; d += 1) {
        if (present(values[i - d]) || present(values[i + d])) { return false; }
      }
      return true;
    });
  }

  // The buckets a line may cross without a value: none (a gap is a gap), or up to spec.bridgeSeconds for values
  // that are samples taken at intervals, not traffic (a process sampled every minute has no value in most 30 s
  // buckets, and is no less alive for that).
  function reachOf(spec) {
    var step = spec.x.length > 1 ? spec.x[1] - spec.x[0] : 0;
    return spec.bridgeSeconds && step > 0 ? Math.max(1, Math.floor(spec.bridgeSeconds / step) + 1) : 1;
  }

  // uPlot's gaps refiner: drop the gaps a line may cross, so it crosses them. Values bridgeSeconds apart land in
  // buckets up to one bucket further apart than that (each is placed at its bucket's start).
  function bridge(spec, range) {
    var step = spec.x.length > 1 ? spec.x[1] - spec.x[0] : 0;
    return function (u, seriesIdx, idx0, idx1, gaps) {
      var widest = u.valToPos(range[0] + spec.bridgeSeconds + step, "x", true) - u.valToPos(range[0], "x", true);
      return gaps.filter(function (g) { return g[1] - g[0] > widest + 1; });  // (+1: pixels are rounded)
    };
  }

  // spec: {key, title, start, end (epoch seconds), x: [...seconds], series: [{label, values, color, fill}],
  //        format (of a y value), yMin (default 0), bridgeSeconds (gaps up to this long are crossed; default none),
  //        incrs (the y ticks' steps, when uPlot's decimal ones make odd labels in the format)}
  dp.timeChart = function (box, spec) {
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var existing = charts[spec.key];
    var reach = reachOf(spec);
    var shape = spec.series.map(function (s) { return s.label + (isolated(s.values, reach) ? "." : ""); }).join("|")
      + "/" + reach;
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
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: axisSize, values: axisValues(spec.format),
          incrs: spec.incrs }
      ],
      series: [{ label: "time" }].concat(spec.series.map(function (s, i) {
        var color = s.color || COLORS[i % COLORS.length];
        var series = {
          label: s.label, stroke: color, width: 1.6, fill: s.fill ? color + (spec.bars ? "cc" : "22") : undefined,
          spanGaps: false, points: { show: !spec.bars && isolated(s.values, reach), size: 4, fill: color },
          paths: spec.bars ? window.uPlot.paths.bars({ size: [0.9, 40], align: 1 }) : undefined,
          value: function (self, v) { return v === null || v === undefined ? "–" : spec.format(v); } };
        // Set only when wanted: an own `gaps: undefined` would replace uPlot's default refiner (not a function).
        if (spec.bridgeSeconds) { series.gaps = bridge(spec, range); }
        return series;
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
