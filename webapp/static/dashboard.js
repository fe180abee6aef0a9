// duckpulse dashboard: the page's state (range, route, paused), the URL that holds it, the API calls and the
// refresh loop. charts.js draws the time charts (uPlot), sections.js the tables and lists. Nothing is loaded from
// elsewhere; text from the data is only ever set with textContent, never parsed as HTML.
(function () {
  "use strict";

  var dp = window.duckpulse;
  var body = document.body;
  var API = body.getAttribute("data-api-base") || "";
  var REFRESH_MS = Number(body.getAttribute("data-refresh-ms")) || 5000;
  var TOKEN_KEY = "duckpulse-token";
  var PRESETS = ["5m", "15m", "1h", "6h", "24h", "7d"];
  var timer = null;
  var generation = 0;
  var refreshes = 0;
  var paused = false;

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

  dp.getJson = function (path) {
    return fetch(API + path, { headers: headers(), cache: "no-store" }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var message = data && data.error ? data.error.message : response.statusText;
          throw new ApiError(response.status, message);
        }
        return data;
      });
    });
  };

  dp.send = function (method, path, payload) {
    var h = headers();
    if (payload !== undefined) { h["Content-Type"] = "application/json"; }
    return fetch(API + path, { method: method, headers: h, cache: "no-store",
                               body: payload === undefined ? undefined : JSON.stringify(payload) })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) { throw new ApiError(response.status, data.error ? data.error.message : ""); }
          return data;
        });
      });
  };

  // -- the state lives in the URL: ?window=1h or ?start=…&end=… (UTC), and ?route=… for a route's page --------
  dp.state = function () {
    var params = new URLSearchParams(window.location.search);
    var start = params.get("start"), end = params.get("end");
    var windowValue = params.get("window");
    return {
      start: start && end ? start : null,
      end: start && end ? end : null,
      window: start && end ? null : (windowValue || "1h"),
      route: params.get("route")
    };
  };

  dp.rangeQuery = function (state) {
    if (state.start) { return "start=" + encodeURIComponent(state.start) + "&end=" + encodeURIComponent(state.end); }
    return "window=" + encodeURIComponent(state.window);
  };

  // The page's URL for a state (only what differs from the defaults).
  dp.href = function (state) {
    var params = new URLSearchParams();
    if (state.start) { params.set("start", state.start); params.set("end", state.end); }
    else if (state.window && state.window !== "1h") { params.set("window", state.window); }
    if (state.route) { params.set("route", state.route); }
    var query = params.toString();
    return window.location.pathname + (query ? "?" + query : "");
  };

  dp.navigate = function (changes) {
    var state = dp.state();
    Object.keys(changes).forEach(function (key) { state[key] = changes[key]; });
    if (changes.window) { state.start = state.end = null; }
    if (changes.start) { state.window = null; }
    window.history.pushState(null, "", dp.href(state));
    restart();
  };

  // A drag on a chart: the selected span becomes the range (epoch seconds in, ISO 8601 UTC in the URL).
  dp.zoom = function (fromSeconds, toSeconds) {
    dp.navigate({ start: new Date(fromSeconds * 1000).toISOString(), end: new Date(toSeconds * 1000).toISOString() });
  };

  // -- the range picker ---------------------------------------------------------------------------------------
  function localInput(iso) {  // an ISO time as the value of a datetime-local input (the browser's time zone)
    var d = new Date(iso);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + "T" + two(d.getHours()) +
      ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }

  function showRange(state, start, end) {
    var select = document.getElementById("window");
    var custom = !!state.start || PRESETS.indexOf(state.window) < 0;
    select.value = custom ? "custom" : state.window;
    document.getElementById("custom").hidden = !custom;
    if (start && end && document.activeElement !== document.getElementById("from") &&
        document.activeElement !== document.getElementById("to")) {
      document.getElementById("from").value = localInput(start);
      document.getElementById("to").value = localInput(end);
    }
    var fixed = !!state.start;
    var button = document.getElementById("pause");
    button.disabled = fixed;
    button.textContent = fixed ? "Fixed range" : (paused ? "Resume" : "Pause");
    button.setAttribute("aria-pressed", paused ? "true" : "false");
  }

  // -- the refresh loop ---------------------------------------------------------------------------------------
  function showError(message) {
    var box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function showHealth(data) {
    var badge = document.getElementById("health");
    badge.textContent = "health: " + data.status;
    badge.className = "badge " + data.status;
    badge.title = data.problems.join("; ") || "nothing lost";
  }

  function refresh() {
    var state = dp.state();
    var onRoute = !!state.route;
    document.getElementById("overview").hidden = onRoute;
    document.getElementById("route-page").hidden = !onRoute;
    document.title = onRoute ? state.route + " · duckpulse" : "duckpulse";
    var view = onRoute ? dp.sections.routePage(state) : dp.sections.overview(state);
    return Promise.all([view, dp.getJson("/api/health").then(showHealth)]).then(function (results) {
      var range = results[0] || {};
      showRange(state, range.start, range.end);
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
        if (window.console) { window.console.info("duckpulse: refresh failed", error); }
      }
      showRange(state);
      document.getElementById("updated").textContent = "not updated";
    });
  }

  // A restart (new range, route or token) starts a new generation; an older refresh in flight schedules nothing.
  // A fixed range (start/end) is not refreshed: its rows do not change.
  function loop(gen) {
    refresh().then(function () {
      if (gen === generation && !paused && !dp.state().start) {
        timer = window.setTimeout(function () { loop(gen); }, REFRESH_MS);
      }
    });
  }

  function restart() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    generation += 1;
    loop(generation);
  }
  dp.restart = restart;

  // -- events -------------------------------------------------------------------------------------------------
  takeTokenFromUrl();
  window.addEventListener("popstate", restart);
  document.getElementById("window").addEventListener("change", function (event) {
    var value = event.target.value;
    if (value === "custom") { document.getElementById("custom").hidden = false; return; }
    dp.navigate({ window: value });
  });
  document.getElementById("range").addEventListener("submit", function (event) {
    event.preventDefault();
    var from = new Date(document.getElementById("from").value), to = new Date(document.getElementById("to").value);
    if (isNaN(from.getTime()) || isNaN(to.getTime()) || from >= to) {
      showError("Give a custom range as two times, the first before the second.");
      return;
    }
    dp.navigate({ start: from.toISOString(), end: to.toISOString() });
  });
  document.getElementById("pause").addEventListener("click", function () {
    paused = !paused;
    if (paused) {
      if (timer !== null) { window.clearTimeout(timer); timer = null; }
      generation += 1;  // a refresh in flight schedules nothing
      showRange(dp.state());
    } else {
      restart();
    }
  });
  // Links inside the page (routes, the overview) change the state without reloading it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-route], a#home, a#back") : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) { return; }
    event.preventDefault();
    dp.navigate({ route: link.getAttribute("data-route") || null });
    window.scrollTo(0, 0);
  });
  document.getElementById("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = document.getElementById("token-input").value.trim();
    if (value) { sessionStorage.setItem(TOKEN_KEY, value); }
    restart();
  });
  restart();
}());
