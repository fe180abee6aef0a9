// duckpulse dashboard: fetches the JSON API every few seconds and draws tables and SVG charts.
// No third-party code and nothing loaded from elsewhere. Text from the data (routes, queries) is only ever
// set with textContent, never parsed as HTML.
(function () {
  "use strict";

  var body = document.body;
  var API = body.getAttribute("data-api-base") || "";
  var REFRESH_MS = Number(body.getAttribute("data-refresh-ms")) || 5000;
  var TOKEN_KEY = "duckpulse-token";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var MAX_CHARTS = 6;
  var timer = null;
  var generation = 0;
  var refreshes = 0;

  // -- the token: from ?token= once (then removed from the address bar), kept in sessionStorage --------------
  function takeTokenFromUrl() {
    var url = new URL(window.location.href);
    var token = url.searchParams.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      url.searchParams.delete("token");
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
  }

  function headers() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    var h = { "Accept": "application/json" };
    if (token) { h["Authorization"] = "Bearer " + token; }
    return h;
  }

  function ApiError(status, message) { this.status = status; this.message = message; }

  function getJson(path) {
    return fetch(API + path, { headers: headers(), cache: "no-store" }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var message = data && data.error ? data.error.message : response.statusText;
          throw new ApiError(response.status, message);
        }
        return data;
      });
    });
  }

  // -- formatting -------------------------------------------------------------------------------------------
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function ms(value) {
    if (value === null || value === undefined) { return "–"; }
    if (value >= 1000) { return (value / 1000).toFixed(2) + " s"; }
    return (value >= 100 ? value.toFixed(0) : value.toFixed(1)) + " ms";
  }

  function bytes(value) {
    if (value === null || value === undefined) { return "–"; }
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return value.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function percent(value) { return (value * 100).toFixed(1) + "%"; }

  function count(value) { return Number(value).toLocaleString("en-US"); }

  function fillRows(tbody, rows, emptyText, columns) {
    tbody.textContent = "";
    if (!rows.length) {
      var tr = el("tr");
      var td = el("td", emptyText, "muted");
      td.colSpan = columns;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (cell) { tr.appendChild(cell instanceof Node ? cell : el("td", cell)); });
      tbody.appendChild(tr);
    });
  }

  // -- SVG line charts --------------------------------------------------------------------------------------
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) { return 1; }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i += 1) {
      if (steps[i] * power >= value) { return steps[i] * power; }
    }
    return 10 * power;
  }

  function timeLabel(ms) {
    var d = new Date(ms);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(d.getUTCHours()) + ":" + two(d.getUTCMinutes());
  }

  // lines: [{cls, values: [[timeMs, value|null], ...]}]; a null value breaks the line.
  function lineChart(lines, opts) {
    var width = 320, height = opts.height || 140, left = 56, right = 8, top = 8, bottom = 20;
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
                             "aria-label": opts.label || "chart" });
    var times = [], maxValue = 0;
    lines.forEach(function (line) {
      line.values.forEach(function (p) {
        times.push(p[0]);
        if (p[1] !== null && p[1] > maxValue) { maxValue = p[1]; }
      });
    });
    if (!times.length) { return chart; }
    var t0 = Math.min.apply(null, times), t1 = Math.max.apply(null, times);
    if (t1 === t0) { t0 -= 30000; t1 += 30000; }
    var yMax = niceMax(maxValue);
    function x(t) { return left + (t - t0) / (t1 - t0) * (width - left - right); }
    function y(v) { return top + (1 - v / yMax) * (height - top - bottom); }
    [0, 0.5, 1].forEach(function (f) {
      chart.appendChild(svg("line", { x1: left, x2: width - right, y1: y(yMax * f), y2: y(yMax * f),
                                      "class": "axis" }));
      var label = svg("text", { x: left - 4, y: y(yMax * f) + 3, "text-anchor": "end" });
      label.textContent = opts.format(yMax * f);
      chart.appendChild(label);
    });
    [[t0, "start"], [t1, "end"]].forEach(function (pair) {
      var label = svg("text", { x: x(pair[0]), y: height - 5, "text-anchor": pair[1] });
      label.textContent = timeLabel(pair[0]);
      chart.appendChild(label);
    });
    lines.forEach(function (line) {
      var d = "", pen = false;
      line.values.forEach(function (p) {
        if (p[1] === null) { pen = false; return; }
        d += (pen ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
        pen = true;
      });
      var path = svg("path", { d: d.trim(), "class": "line " + line.cls, "data-points": line.values.length });
      chart.appendChild(path);
      if (line.values.length === 1 && line.values[0][1] !== null) {  // one bucket: a dot, not an empty path
        chart.appendChild(svg("circle", { cx: x(line.values[0][0]), cy: y(line.values[0][1]), r: 2.5,
                                          "class": line.cls }));
      }
    });
    return chart;
  }

  // -- sections ---------------------------------------------------------------------------------------------
  function showSummary(perf) {
    document.getElementById("s-requests").textContent = count(perf.requests.total);
    document.getElementById("s-avg").textContent = ms(perf.requests.avgDuration);
    document.getElementById("s-p95").textContent = ms(perf.requests.p95Duration);
    document.getElementById("s-queries").textContent = count(perf.queries.total);
    document.getElementById("s-qavg").textContent = ms(perf.queries.avgDuration);
    document.getElementById("s-mem").textContent = bytes(perf.memory.current);
  }

  function showRoutes(data) {
    fillRows(document.querySelector("#routes tbody"), data.routes.map(function (r) {
      var cells = [el("td", r.route), count(r.count), percent(r.errorRate), ms(r.p50), ms(r.p95), ms(r.p99)];
      cells[0].setAttribute("data-route", r.route);
      return cells;
    }), "no requests in this window", 6);
  }

  function showSeries(data) {
    var box = document.getElementById("charts");
    box.textContent = "";
    var series = data.series.slice().sort(function (a, b) {
      function total(s) { return s.points.reduce(function (n, p) { return n + p.count; }, 0); }
      return total(b) - total(a);
    }).slice(0, MAX_CHARTS);
    if (!series.length) { box.appendChild(el("p", "no requests in this window", "muted")); return; }
    series.forEach(function (s) {
      var figure = el("figure", null, "chart");
      figure.setAttribute("data-route", s.route);
      figure.style.margin = "0";
      figure.appendChild(el("h4", s.route));
      var lines = ["p50", "p95", "p99"].map(function (key) {
        return { cls: key, values: s.points.map(function (p) { return [Date.parse(p.t), p[key]]; }) };
      });
      figure.appendChild(lineChart(lines, { format: ms, label: "latency of " + s.route }));
      box.appendChild(figure);
    });
  }

  function showQueries(data) {
    var rows = data.queries.slice().sort(function (a, b) { return b.maxDuration - a.maxDuration; });
    fillRows(document.querySelector("#queries tbody"), rows.slice(0, 20).map(function (q) {
      var flag = el("td", q.nPlusOne ? "N+1" : "", q.nPlusOne ? "flag" : "");
      return [el("td", q.fingerprint, "query"), count(q.count), ms(q.totalDuration), ms(q.p95Duration),
              ms(q.maxDuration), flag];
    }), "no queries in this window", 6);
    var list = document.getElementById("nplusone");
    list.textContent = "";
    var patterns = data.queries.filter(function (q) { return q.nPlusOne; });
    if (!patterns.length) { list.appendChild(el("li", "none", "muted")); return; }
    patterns.forEach(function (q) {
      var item = el("li");
      item.appendChild(el("code", q.fingerprint));
      item.appendChild(el("span", " — up to " + q.maxPerRequest + " runs in one request, in " +
                                  q.nPlusOneRequests + " request(s)" +
                                  (q.routes.length ? " on " + q.routes.join(", ") : ""), "muted"));
      list.appendChild(item);
    });
  }

  function showMemory(data) {
    fillRows(document.querySelector("#memory tbody"), data.processes.map(function (p) {
      return [p.host + " / " + p.pid, bytes(p.current), bytes(p.avg), bytes(p.max),
              (p.cpuPercent == null ? "n/a" : p.cpuPercent.toFixed(1) + "%"), p.numThreads];
    }), "no process samples in this window", 6);
    var box = document.getElementById("memory-charts");
    box.textContent = "";
    data.processes.slice(0, MAX_CHARTS).forEach(function (p) {
      var figure = el("figure", null, "chart");
      figure.setAttribute("data-pid", String(p.pid));
      figure.style.margin = "0";
      figure.appendChild(el("h4", "RSS of " + p.host + " / " + p.pid));
      figure.appendChild(lineChart([{ cls: "rss", values: p.points.map(function (pt) {
        return [Date.parse(pt.t), pt.avg];
      }) }], { format: bytes, height: 110, label: "RSS of " + p.pid }));
      box.appendChild(figure);
    });
  }

  function alertValue(a) {
    if (a.value === null) { return "no data"; }
    if (a.metric.indexOf("duration") >= 0) { return ms(a.value); }
    if (a.metric === "memory_rss") { return bytes(a.value); }
    return String(Math.round(a.value * 1000) / 1000);
  }

  function showAlerts(data) {
    var list = document.getElementById("alerts");
    list.textContent = "";
    if (!data.alerts.length) { list.appendChild(el("li", "none", "muted")); return; }
    data.alerts.forEach(function (a) {
      var item = el("li");
      item.setAttribute("data-rule", a.rule);
      item.appendChild(el("span", a.level, "level " + a.level));
      item.appendChild(el("strong", a.rule));
      var labels = Object.keys(a.labels).map(function (k) { return k + "=" + a.labels[k]; }).join(", ");
      item.appendChild(el("span", (labels ? " {" + labels + "}" : "") + " " + (a.message || "") + " (" +
                                  alertValue(a) + ", " + a.state + " since " +
                                  new Date(a.since).toLocaleTimeString() + ")", "muted"));
      list.appendChild(item);
    });
  }

  function showHealth(data) {
    var badge = document.getElementById("health");
    badge.textContent = "health: " + data.status;
    badge.className = "badge " + data.status;
    badge.title = data.problems.join("; ") || "nothing lost";
  }

  // -- the refresh loop -------------------------------------------------------------------------------------
  function showError(message) {
    var box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function refresh() {
    var win = encodeURIComponent(document.getElementById("window").value);
    var q = "?window=" + win;
    return Promise.all([
      getJson("/api/metrics/performance" + q).then(showSummary),
      getJson("/api/routes" + q).then(showRoutes),
      getJson("/api/series" + q).then(showSeries),
      getJson("/api/queries" + q).then(showQueries),
      getJson("/api/memory" + q).then(showMemory),
      getJson("/api/alerts").then(showAlerts),
      getJson("/api/health").then(showHealth)
    ]).then(function () {
      showError("");
      document.getElementById("token-form").hidden = true;
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
      refreshes += 1;
      body.setAttribute("data-refreshes", String(refreshes));  // lets a test (or a curious user) see it is live
    }, function (error) {
      if (error instanceof ApiError && error.status === 401) {
        document.getElementById("token-form").hidden = false;
        showError("");
      } else {
        showError("Cannot refresh: " + (error && error.message ? error.message : String(error)));
      }
      document.getElementById("updated").textContent = "not updated";
    });
  }

  // A restart (new window, new token) starts a new generation; an older refresh in flight then schedules nothing.
  function loop(gen) {
    refresh().then(function () {
      if (gen === generation) { timer = window.setTimeout(function () { loop(gen); }, REFRESH_MS); }
    });
  }

  function restart() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    generation += 1;
    loop(generation);
  }

  takeTokenFromUrl();
  document.getElementById("window").addEventListener("change", restart);
  document.getElementById("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = document.getElementById("token-input").value.trim();
    if (value) { sessionStorage.setItem(TOKEN_KEY, value); }
    restart();
  });
  restart();
}());
