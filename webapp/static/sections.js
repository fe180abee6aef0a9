// duckpulse dashboard: the overview and a route's page, drawn from the API (tables, lists, bars; time charts by
// charts.js). Every text from the data is set with textContent.
(function () {
  "use strict";

  var dp = window.duckpulse = window.duckpulse || {};
  var routesData = [];
  var routeSort = { key: "count", descending: true };
  var requestDetails = {};  // the queries of a request never change: fetched once, kept open across refreshes
  var openRequests = {};

  // -- formatting ---------------------------------------------------------------------------------------------
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
  dp.ms = ms;

  function bytes(value) {
    if (value === null || value === undefined) { return "–"; }
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return value.toFixed(i ? 1 : 0) + " " + units[i];
  }

  // Ticks of a bytes axis in binary steps, so they read 64 MB, 128 MB rather than 47.7 MB, 95.4 MB.
  var BYTE_STEPS = [];
  for (var power = 10; power <= 50; power += 10) {
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].forEach(function (m) { BYTE_STEPS.push(m * Math.pow(2, power)); });
  }

  function percent(value) {
    if (value === null || value === undefined) { return "–"; }
    var p = value * 100;
    return (p > 0 && p < 0.1 ? "<0.1" : p.toFixed(p >= 10 ? 0 : 1)) + "%";
  }

  function count(value) { return Number(value).toLocaleString("en-US"); }

  function perSecond(value) {
    if (value === null || value === undefined) { return "–"; }
    // Two significant digits below 1/s: a quiet route's 0.025/s is not rounded to a 0.03/s it never had.
    return (value >= 10 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value === 0 ? "0" :
            String(Number(value.toPrecision(2)))) + "/s";
  }

  function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }

  // A time as short as it can be told apart: the time of day within the last day, else the date too.
  function short(iso) {
    var d = new Date(iso);
    if (Math.abs(Date.now() - d.getTime()) < 86400000) { return d.toLocaleTimeString(); }
    return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function ago(iso) {
    var seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (!(seconds >= 0)) { return when(iso); }
    if (seconds < 90) { return Math.round(seconds) + " s ago"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min ago"; }
    if (seconds < 172800) { return Math.round(seconds / 3600) + " h ago"; }
    return Math.round(seconds / 86400) + " days ago";
  }

  function method(data) {
    return data.method === "sketch" ? "from rollups, ±" + (data.errorBound * 100).toFixed(1) + "%" : "exact";
  }

  function seconds(iso) { return Date.parse(iso) / 1000; }

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
      var tr = cells.tr || el("tr");
      (cells.cells || cells).forEach(function (cell) { tr.appendChild(cell instanceof Node ? cell : el("td", cell)); });
      tbody.appendChild(tr);
    });
  }

  function td(content, cls) {
    var cell = el("td", null, cls);
    if (content instanceof Node) { cell.appendChild(content); } else { cell.textContent = String(content); }
    return cell;
  }

  function routeLink(route) {
    var link = el("a", route, "route-link");
    link.setAttribute("data-route", route);
    var state = dp.state();
    state.route = route;
    link.href = dp.href(state);
    return link;
  }

  function setText(id, text) { document.getElementById(id).textContent = text; }

  // -- time charts --------------------------------------------------------------------------------------------
  function trafficCharts(box, prefix, timeline) {
    var x = timeline.points.map(function (p) { return seconds(p.t); });
    var step = timeline.stepSeconds;
    var start = seconds(timeline.start), end = seconds(timeline.end);
    var boxes = ["latency", "throughput", "errors"].map(function (name) {
      var existing = box.querySelector("[data-chart='" + name + "']");
      if (existing) { return existing; }
      var figure = el("figure", null, "chart");
      figure.setAttribute("data-chart", name);
      box.appendChild(figure);
      return figure;
    });
    dp.timeChart(boxes[0], {
      key: prefix + "latency", title: "Latency (" + method(timeline) + ")", start: start, end: end, x: x,
      format: ms, series: ["p50", "p95", "p99"].map(function (key, i) {
        return { label: key, values: timeline.points.map(function (p) { return p[key]; }), color: dp.colors[i] };
      })
    });
    dp.timeChart(boxes[1], {
      key: prefix + "throughput", title: "Throughput (requests per second, " + step + " s buckets)",
      start: start, end: end, x: x, format: perSecond, bars: true, series: [
        { label: "all", values: timeline.points.map(function (p) { return p.count / step; }), fill: true,
          color: dp.colors[0] },
        { label: "5xx", values: timeline.points.map(function (p) { return p.errors / step; }), color: "#c53030",
          fill: true }]
    });
    dp.timeChart(boxes[2], {
      key: prefix + "errors", title: "Error rate (5xx)", start: start, end: end, x: x, format: percent,
      series: [{ label: "error rate", values: timeline.points.map(function (p) { return p.errorRate; }),
                 color: "#c53030", fill: true }]
    });
  }

  // -- the overview -------------------------------------------------------------------------------------------
  function showSummary(perf, routes, timeline, errors, memory) {
    var total = perf.requests.total;
    var spanSeconds = seconds(timeline.end) - seconds(timeline.start);
    var failed = routes.routes.reduce(function (n, r) { return n + r.errors; }, 0);
    setText("s-requests", count(total));
    setText("s-rate", perSecond(spanSeconds > 0 ? total / spanSeconds : null));
    setText("s-error-rate", total ? percent(failed / total) : "–");
    setText("s-errors", count(failed) + " with 5xx");
    setText("s-p95", ms(perf.requests.p95Duration));
    setText("s-method", method(perf.requests));
    setText("s-exceptions", count(errors.total));
    setText("s-signatures", errors.signatures + " kind" + (errors.signatures === 1 ? "" : "s"));
    setText("s-queries", count(perf.queries.total));
    setText("s-qavg", "avg " + ms(perf.queries.avgDuration));
    setText("s-mem", bytes(memory.totals.currentBytes));
    setText("s-procs", memory.totals.liveProcesses + " live · " + memory.totals.goneProcesses + " gone");
  }

  function sortRoutes() {
    var key = routeSort.key, sign = routeSort.descending ? -1 : 1;
    return routesData.slice().sort(function (a, b) {
      var x = a[key], y = b[key];
      if (x === y) { return a.route < b.route ? -1 : 1; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      return (x < y ? -1 : 1) * sign;
    });
  }

  function showRoutes() {
    var search = document.getElementById("route-search").value.trim().toLowerCase();
    var shown = sortRoutes().filter(function (r) { return r.route.toLowerCase().indexOf(search) >= 0; });
    fillRows(document.querySelector("#routes tbody"), shown.map(function (r) {
      var errors = td(r.errors ? count(r.errors) + " (" + percent(r.errorRate) + ")" : "0", "num");
      if (r.errors) { errors.classList.add("bad"); }
      return [td(routeLink(r.route), "text"), td(count(r.count), "num"), td(ms(r.p50), "num opt"),
              td(ms(r.p95), "num"), td(ms(r.p99), "num opt"), errors];
    }), search ? "no route matches" : "no requests in this range", 6);
    setText("routes-count", shown.length === routesData.length ? String(routesData.length)
      : shown.length + " of " + routesData.length);
    document.querySelectorAll("#routes th").forEach(function (th) {
      var active = th.getAttribute("data-key") === routeSort.key;
      th.setAttribute("aria-sort", active ? (routeSort.descending ? "descending" : "ascending") : "none");
    });
  }

  function alertItem(a, withRoute) {
    var item = el("li", null, "alert");
    item.setAttribute("data-rule", a.rule);
    item.appendChild(el("span", a.level, "level " + a.level));
    item.appendChild(el("strong", a.rule));
    var labels = Object.keys(a.labels).map(function (k) { return k + "=" + a.labels[k]; }).join(", ");
    if (labels) { item.appendChild(el("span", " {" + labels + "}", "muted")); }
    var value = a.value === null ? "no data" : a.metric.indexOf("duration") >= 0 ? ms(a.value)
      : a.metric === "memory_rss" ? bytes(a.value) : a.metric === "error_rate" ? percent(a.value)
      : String(Math.round(a.value * 1000) / 1000);
    item.appendChild(el("div", (a.message || "") + " — " + value + ", " + a.state + " since " + short(a.since),
                        "muted"));
    var actions = el("div", null, "actions");
    if (withRoute && a.labels.route) {
      var link = routeLink(a.labels.route);
      link.textContent = "open " + a.labels.route;
      actions.appendChild(link);
    }
    var silence = el("button", "Silence 1 h", "small");
    silence.type = "button";
    silence.setAttribute("data-silence", JSON.stringify(Object.assign({ rule: a.rule }, a.labels)));
    actions.appendChild(silence);
    item.appendChild(actions);
    return item;
  }

  function showAlerts(list, alerts, withRoute) {
    list.textContent = "";
    if (!alerts.length) { list.appendChild(el("li", "none", "muted")); return; }
    alerts.forEach(function (a) { list.appendChild(alertItem(a, withRoute)); });
  }

  function showSilences(data) {
    var list = document.getElementById("silences");
    list.textContent = "";
    if (!data.silences.length) { list.appendChild(el("li", "none", "muted")); return; }
    data.silences.forEach(function (s) {
      var item = el("li");
      var matchers = Object.keys(s.matchers).map(function (k) { return k + "=" + s.matchers[k]; }).join(", ");
      item.appendChild(el("code", matchers));
      item.appendChild(el("span", " until " + when(s.endsAt) + (s.comment ? " — " + s.comment : ""), "muted"));
      var expire = el("button", "Expire", "small");
      expire.type = "button";
      expire.setAttribute("data-expire", s.id);
      item.appendChild(expire);
      list.appendChild(item);
    });
  }

  function showHistory(data) {
    setText("history-count", "(" + data.events.length + ")");
    fillRows(document.querySelector("#history tbody"), data.events.map(function (e) {
      var labels = Object.keys(e.labels).map(function (k) { return k + "=" + e.labels[k]; }).join(", ");
      return [short(e.ts), e.rule + (labels ? " {" + labels + "}" : ""), e.from + " → " + e.to,
              td(e.value === null ? "–" : String(Math.round(e.value * 1000) / 1000), "num")];
    }), "no transitions in this range", 4);
  }

  function showErrors(list, data) {
    list.textContent = "";
    if (!data.groups.length) { list.appendChild(el("li", "none in this range", "muted")); return; }
    data.groups.forEach(function (g) {
      var item = el("li", null, "error-group");
      item.setAttribute("data-signature", g.signatureId);
      var head = el("div", null, "head");
      head.appendChild(el("strong", g.type, "type"));
      head.appendChild(el("span", "×" + count(g.count), "count"));
      item.appendChild(head);
      item.appendChild(el("code", g.message || "(no message)", "message"));
      item.appendChild(el("div", "at " + g.module + "." + g.function + ":" + g.line, "where"));
      var seen = el("div", "last " + ago(g.lastSeen) + " · first " + when(g.firstSeen) + " · ", "muted");
      g.routes.forEach(function (route, i) {
        if (i) { seen.appendChild(document.createTextNode(", ")); }
        seen.appendChild(routeLink(route));
      });
      item.appendChild(seen);
      list.appendChild(item);
    });
  }

  function showQueries(tbody, data) {
    fillRows(tbody, data.queries.map(function (q) {
      var flag = td(q.nPlusOne ? "N+1 ×" + q.maxPerRequest : "", "num" + (q.nPlusOne ? " flag" : ""));
      if (q.nPlusOne) { flag.title = q.nPlusOneRequests + " request(s) ran it " + data.nPlusOneThreshold + "+ times"; }
      return [td(q.fingerprint, "query"), td(count(q.count), "num"), td(ms(q.totalDuration), "num"),
              td(ms(q.p95Duration), "num"), flag];
    }), "no queries in this range", 5);
  }

  function showMemory(data) {
    var t = data.totals;
    setText("memory-totals", t.liveProcesses + " live" + (t.currentBytes !== null ? " (" + bytes(t.currentBytes) + ")"
      : "") + " · " + t.goneProcesses + " gone");
    fillRows(document.querySelector("#memory tbody"), data.processes.map(function (p) {
      var state = td(p.live ? "live" : "gone · last seen " + ago(p.lastSeen), p.live ? "ok" : "muted");
      state.title = "last sample " + when(p.lastSeen);
      var tr = el("tr", null, p.live ? "live" : "gone");
      tr.setAttribute("data-pid", String(p.pid));
      return { tr: tr, cells: [p.host + " / " + p.pid, state, td(bytes(p.current), "num"), td(bytes(p.max), "num opt"),
                               td(p.cpuPercent == null ? "n/a" : p.cpuPercent.toFixed(1) + "%", "num opt")] };
    }), "no process samples in this range", 5);
    var shown = data.processes.slice(0, 8);
    var box = document.getElementById("memory-chart");
    if (!shown.length) { dp.dropCharts("overview:memory"); box.textContent = ""; return; }
    dp.timeChart(box, {
      key: "overview:memory", title: "Resident memory per process", start: seconds(data.start),
      end: seconds(data.end), x: shown[0].points.map(function (pt) { return seconds(pt.t); }), format: bytes,
      bridgeSeconds: data.liveWithinSeconds,  // a process is live while it reports this often: no gap in between
      incrs: BYTE_STEPS,
      series: shown.map(function (p) {
        return { label: p.pid + (p.live ? "" : " (gone)"), values: p.points.map(function (pt) { return pt.avg; }) };
      })
    });
  }

  dp.sections = {};

  dp.sections.overview = function (state) {
    var q = dp.rangeQuery(state);
    dp.dropCharts("route:");
    return Promise.all([
      dp.getJson("/api/metrics/performance?" + q), dp.getJson("/api/timeline?" + q), dp.getJson("/api/routes?" + q),
      dp.getJson("/api/errors?" + q + "&limit=20"), dp.getJson("/api/queries?" + q + "&limit=20"),
      dp.getJson("/api/memory?" + q), dp.getJson("/api/alerts"), dp.getJson("/api/silences"),
      dp.getJson("/api/alerts/history?" + q + "&limit=100")
    ]).then(function (r) {
      var timeline = r[1];
      routesData = r[2].routes;
      showSummary(r[0], r[2], timeline, r[3], r[5]);
      trafficCharts(document.getElementById("overview-charts"), "overview:", timeline);
      showRoutes();
      showErrors(document.getElementById("errors"), r[3]);
      showQueries(document.querySelector("#queries tbody"), r[4]);
      showMemory(r[5]);
      showAlerts(document.getElementById("alerts"), r[6].alerts, true);
      showSilences(r[7]);
      showHistory(r[8]);
      return { start: timeline.start, end: timeline.end };
    });
  };

  // -- a route's page -----------------------------------------------------------------------------------------
  function showRouteSummary(route, data, timeline) {
    setText("route-name", route);
    var r = data.routes[0];
    var spanSeconds = seconds(timeline.end) - seconds(timeline.start);
    setText("r-count", r ? count(r.count) : "0");
    setText("r-rate", r && spanSeconds > 0 ? perSecond(r.count / spanSeconds) : "");
    setText("r-error-rate", r ? percent(r.errorRate) : "–");
    setText("r-errors", r ? count(r.errors) + " with 5xx, " + count(r.clientErrors) + " with 4xx" : "");
    setText("r-pcts", r ? ms(r.p50) + " / " + ms(r.p95) + " / " + ms(r.p99) : "–");
    setText("r-method", r ? method(r) + " · max " + ms(r.max) : "no requests in this range");
  }

  function showHistogram(data) {
    var box = document.getElementById("histogram");
    box.textContent = "";
    if (!data.bars.length) { box.appendChild(el("p", "no requests in this range", "muted")); return; }
    var most = Math.max.apply(null, data.bars.map(function (b) { return b.count; }));
    var columns = el("div", null, "columns");
    data.bars.forEach(function (b) {
      var column = el("div", null, "column");
      var bar = el("div", null, "hbar");
      bar.style.height = (b.count ? Math.max(2, 100 * b.count / most) : 0) + "%";
      column.title = (b.high === 0 ? "0 ms" : ms(b.low) + " – " + ms(b.high)) + ": " + count(b.count) + " requests";
      column.setAttribute("data-count", String(b.count));
      column.appendChild(bar);
      columns.appendChild(column);
    });
    box.appendChild(columns);
    var axis = el("div", null, "axis");
    var first = data.bars[0], last = data.bars[data.bars.length - 1];
    axis.appendChild(el("span", ms(first.high === 0 ? 0 : first.low)));
    axis.appendChild(el("span", count(data.total) + " requests, log scale", "muted"));
    axis.appendChild(el("span", ms(last.high)));
    box.appendChild(axis);
  }

  function showStatuses(data) {
    var total = data.statuses.reduce(function (n, s) { return n + s.count; }, 0);
    fillRows(document.querySelector("#statuses tbody"), data.statuses.map(function (s) {
      var share = el("div", null, "share s" + String(s.status).charAt(0));
      share.style.width = (100 * s.count / total) + "%";
      var bar = td(share, "bar-cell");
      return [td(String(s.status), "status s" + String(s.status).charAt(0)), td(count(s.count), "num"),
              td(percent(s.count / total), "num"), bar];
    }), "no requests in this range", 4);
  }

  function requestKey(r) { return r.host + "|" + r.pid + "|" + r.requestId + "|" + r.ts; }

  function detailRow(request, detail) {
    var tr = el("tr", null, "detail");
    var cell = el("td");
    cell.colSpan = 4;
    if (!detail) { cell.textContent = "loading…"; tr.appendChild(cell); return tr; }
    if (!detail.queries.length) { cell.appendChild(el("p", "this request ran no query", "muted")); }
    var list = el("ol", null, "waterfall");
    detail.queries.forEach(function (q) {
      var item = el("li", null, q.success ? "" : "failed");
      var lane = el("div", null, "lane");
      var span = el("div", null, "span");
      var total = request.durationMs || 1;
      span.style.marginLeft = Math.min(100, Math.max(0, 100 * q.offsetMs / total)) + "%";
      span.style.width = Math.max(0.5, Math.min(100, 100 * q.durationMs / total)) + "%";
      lane.appendChild(span);
      item.appendChild(el("span", "+" + ms(Math.max(0, q.offsetMs)), "offset"));
      item.appendChild(el("span", ms(q.durationMs), "duration"));
      item.appendChild(lane);
      item.appendChild(el("code", q.fingerprint, "query"));
      list.appendChild(item);
    });
    cell.appendChild(el("div", request.method + " · pid " + request.pid + " on " + request.host + " · request " +
                               request.requestId, "muted"));
    cell.appendChild(list);
    tr.appendChild(cell);
    return tr;
  }

  function openRequest(request, row) {
    var key = requestKey(request);
    var next = row.nextSibling;
    if (next && next.classList.contains("detail")) { next.parentNode.removeChild(next); }
    row.setAttribute("aria-expanded", "true");
    var placeholder = detailRow(request, requestDetails[key]);
    row.parentNode.insertBefore(placeholder, row.nextSibling);
    if (requestDetails[key]) { return Promise.resolve(); }
    var q = "host=" + encodeURIComponent(request.host) + "&pid=" + request.pid + "&requestId=" +
      encodeURIComponent(request.requestId) + "&at=" + encodeURIComponent(request.ts);
    return dp.getJson("/api/requests/queries?" + q).then(function (detail) {
      requestDetails[key] = detail;
      if (placeholder.parentNode) { placeholder.parentNode.replaceChild(detailRow(request, detail), placeholder); }
    }, function (error) {
      placeholder.firstChild.textContent = "cannot load its queries: " + error.message;
    });
  }

  function showSlowest(data) {
    var tbody = document.querySelector("#slowest tbody");
    fillRows(tbody, data.requests.map(function (r) {
      var tr = el("tr", null, "request");
      tr.setAttribute("aria-expanded", "false");
      tr.setAttribute("data-request", requestKey(r));
      tr.tabIndex = 0;
      tr.duckpulseRequest = r;
      return { tr: tr, cells: [short(r.ts), td(ms(r.durationMs), "num"),
                               td(String(r.status), "num status s" + String(r.status).charAt(0)),
                               td(String(r.queryCount), "num")] };
    }), "no requests in this range (raw rows are kept for 7 days)", 4);
    Array.prototype.forEach.call(tbody.querySelectorAll("tr.request"), function (tr) {
      if (openRequests[tr.getAttribute("data-request")]) { openRequest(tr.duckpulseRequest, tr); }
    });
  }

  dp.sections.routePage = function (state) {
    var q = dp.rangeQuery(state) + "&route=" + encodeURIComponent(state.route);
    dp.dropCharts("overview:");
    return Promise.all([
      dp.getJson("/api/routes?" + q), dp.getJson("/api/timeline?" + q), dp.getJson("/api/histogram?" + q),
      dp.getJson("/api/statuses?" + q), dp.getJson("/api/requests/slowest?" + q), dp.getJson("/api/queries?" + q),
      dp.getJson("/api/errors?" + q), dp.getJson("/api/alerts")
    ]).then(function (r) {
      showRouteSummary(state.route, r[0], r[1]);
      trafficCharts(document.getElementById("route-charts"), "route:", r[1]);
      showHistogram(r[2]);
      showStatuses(r[3]);
      showSlowest(r[4]);
      showQueries(document.querySelector("#route-queries tbody"), r[5]);
      showErrors(document.getElementById("route-errors"), r[6]);
      var own = r[7].alerts.filter(function (a) { return a.labels.route === state.route; });
      var list = document.getElementById("route-alerts");
      list.textContent = "";
      own.forEach(function (a) { list.appendChild(alertItem(a, false)); });
      return { start: r[1].start, end: r[1].end };
    });
  };

  // -- events (delegated once: the tables are redrawn at every refresh) ---------------------------------------
  document.getElementById("route-search").addEventListener("input", showRoutes);
  document.querySelector("#routes thead").addEventListener("click", function (event) {
    var th = event.target.closest("th[data-key]");
    if (!th) { return; }
    var key = th.getAttribute("data-key");
    routeSort = { key: key, descending: routeSort.key === key ? !routeSort.descending : key !== "route" };
    showRoutes();
  });
  document.querySelector("#slowest tbody").addEventListener("click", function (event) {
    var tr = event.target.closest("tr.request");
    if (!tr) { return; }
    var key = tr.getAttribute("data-request");
    if (openRequests[key]) {
      delete openRequests[key];
      tr.setAttribute("aria-expanded", "false");
      if (tr.nextSibling && tr.nextSibling.classList.contains("detail")) { tr.parentNode.removeChild(tr.nextSibling); }
      return;
    }
    openRequests[key] = true;
    openRequest(tr.duckpulseRequest, tr);
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-silence], button[data-expire]") : null;
    if (!button) { return; }
    button.disabled = true;
    var done = function () { dp.restart(); };
    if (button.hasAttribute("data-silence")) {
      dp.send("POST", "/api/silences", { matchers: JSON.parse(button.getAttribute("data-silence")), duration: "1h",
                                         comment: "silenced from the dashboard" }).then(done, done);
    } else {
      dp.send("DELETE", "/api/silences/" + encodeURIComponent(button.getAttribute("data-expire"))).then(done, done);
    }
  });
  document.getElementById("silence-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var matchers = {};
    document.getElementById("silence-matchers").value.split(",").forEach(function (pair) {
      var at = pair.indexOf("=");
      if (at > 0) { matchers[pair.slice(0, at).trim()] = pair.slice(at + 1).trim(); }
    });
    dp.send("POST", "/api/silences", { matchers: matchers, duration: document.getElementById("silence-duration").value,
                                       comment: "silenced from the dashboard" })
      .then(function () { document.getElementById("silence-matchers").value = ""; dp.restart(); },
            function (error) { document.getElementById("error").hidden = false;
                               document.getElementById("error").textContent = "Cannot silence: " + error.message; });
  });
}());
