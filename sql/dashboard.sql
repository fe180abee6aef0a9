-- Named read queries of the dashboard (webapp) and its /metrics exposition; notebooks reuse them so a number on
-- the dashboard and in a notebook comes from one definition. Values are always parameters: time ranges are
-- closed ($since <= ts <= $until, naive UTC timestamps), percentiles are exact nearest-rank (quantile_disc).
-- A request is an error when its status is 500 or more.

-- name: performance-queries
-- Queries over the range: how many and their mean duration in ms.
SELECT count(*) AS total, avg(duration_ms) AS avg_ms
FROM queries
WHERE ts >= $since AND ts <= $until;

-- name: slow-queries
-- The $limit slowest query fingerprints over the range (by their slowest execution), with their durations.
SELECT fingerprint,
       count(*)                          AS count,
       avg(duration_ms)                  AS avg_ms,
       quantile_disc(duration_ms, 0.95)  AS p95_ms,
       max(duration_ms)                  AS max_ms
FROM queries
WHERE ts >= $since AND ts <= $until
GROUP BY fingerprint
ORDER BY max_ms DESC, fingerprint
LIMIT $limit;

-- name: performance-memory
-- Resident memory over the range: the sum of the latest sample of each live process (one that reported at or
-- after $live_since), how many there are, and the mean of all samples (one pass over the samples, per process).
SELECT sum(rss_bytes) FILTER (WHERE last_seen >= $live_since)  AS current_bytes,
       count(*) FILTER (WHERE last_seen >= $live_since)        AS live_processes,
       sum(total_bytes) / sum(samples)                         AS avg_bytes
FROM (SELECT arg_max(rss_bytes, ts) AS rss_bytes, max(ts) AS last_seen, sum(rss_bytes) AS total_bytes,
             count(*) AS samples
      FROM process_samples
      WHERE ts >= $since AND ts <= $until
      GROUP BY host, pid);

-- name: route-stats
-- Per route template over the range, from raw rows: requests, errors (status >= 500), mean and nearest-rank
-- p50/p95/p99 ms. The notebooks run it over the Parquet history; the dashboard reads tiers (sql/ranges.sql).
SELECT route,
       count(*)                                          AS count,
       count(*) FILTER (WHERE status >= 500)             AS errors,
       avg(duration_ms)                                  AS avg_ms,
       max(duration_ms)                                  AS max_ms,
       quantile_disc(duration_ms, [0.50, 0.95, 0.99])    AS pcts
FROM requests
WHERE ts >= $since AND ts <= $until
GROUP BY route
ORDER BY count DESC, route;

-- name: route-series
-- Per route (every route when $route is NULL) and per $step bucket aligned on the Unix epoch, as one JSON array
-- [{route, points: [{t, count, errors, errorRate, p50, p95, p99}]}]: requests, errors (status >= 500) and
-- nearest-rank percentiles in ms. Only buckets holding requests are listed, oldest first; routes by name. The
-- notebooks' form over raw rows; the dashboard's /api/series lists every bucket, from the tiers (sql/ranges.sql).
WITH buckets AS (
    SELECT route,
           time_bucket($step, ts, TIMESTAMP '1970-01-01')    AS bucket,
           count(*)                                          AS count,
           count(*) FILTER (WHERE status >= 500)             AS errors,
           quantile_disc(duration_ms, [0.50, 0.95, 0.99])    AS pcts
    FROM requests
    WHERE ts >= $since AND ts <= $until AND ($route IS NULL OR route = $route)
    GROUP BY route, bucket
), per_route AS (
    SELECT route,
           list({'t': strftime(bucket, '%Y-%m-%dT%H:%M:%S.%gZ'), 'count': count, 'errors': errors,
                 'errorRate': errors / count, 'p50': pcts[1], 'p95': pcts[2], 'p99': pcts[3]}
                ORDER BY bucket) AS points
    FROM buckets
    GROUP BY route
)
SELECT to_json(coalesce(list({'route': route, 'points': points} ORDER BY route), [])) AS series
FROM per_route;

-- name: query-fingerprints
-- Per query fingerprint over the range (of the requests of one route when $route is not NULL): executions, failures, total/mean/p95/max ms, the routes that ran it, and
-- its N+1 signature: the requests that ran it $threshold times or more, and the most runs in one request.
WITH q AS (
    SELECT * FROM queries WHERE ts >= $since AND ts <= $until AND ($route IS NULL OR route = $route)
), per_request AS (
    SELECT fingerprint_id, count(*) AS runs
    FROM q
    WHERE request_id IS NOT NULL
    GROUP BY fingerprint_id, host, pid, request_id
), repeats AS (
    SELECT fingerprint_id,
           count(*) FILTER (WHERE runs >= $threshold) AS n_plus_one_requests,
           max(runs)                                  AS max_per_request
    FROM per_request
    GROUP BY fingerprint_id
)
SELECT q.fingerprint_id,
       q.fingerprint,
       min(q.name)                                          AS name,
       count(*)                                             AS count,
       count(*) FILTER (WHERE NOT q.success)                AS failures,
       sum(q.duration_ms)                                   AS total_ms,
       avg(q.duration_ms)                                   AS avg_ms,
       quantile_disc(q.duration_ms, 0.95)                   AS p95_ms,
       max(q.duration_ms)                                   AS max_ms,
       list_sort(list_distinct(list(q.route)))              AS routes,
       coalesce(any_value(r.n_plus_one_requests), 0)        AS n_plus_one_requests,
       coalesce(any_value(r.max_per_request), 0)            AS max_per_request
FROM q LEFT JOIN repeats r USING (fingerprint_id)
GROUP BY q.fingerprint_id, q.fingerprint
ORDER BY total_ms DESC, q.fingerprint
LIMIT $limit;

-- name: route-slowest
-- The $limit slowest requests of the range (of one route when $route is not NULL), slowest first, with what ties
-- them to their queries (host, pid, request_id).
SELECT ts, route, method, status, duration_ms, query_count, request_id, pid, host
FROM requests
WHERE ts >= $since AND ts <= $until AND ($route IS NULL OR route = $route)
ORDER BY duration_ms DESC, ts DESC
LIMIT $limit;

-- name: route-statuses
-- Requests per HTTP status over the range (of one route when $route is not NULL), by status.
SELECT status, count(*) AS count
FROM requests
WHERE ts >= $since AND ts <= $until AND ($route IS NULL OR route = $route)
GROUP BY status
ORDER BY status;

-- name: request-row
-- The request of one process (host, pid) with this request_id that ended between $since and $until.
SELECT ts, route, method, status, duration_ms, query_count, request_id, pid, host
FROM requests
WHERE ts >= $since AND ts <= $until AND host = $host AND pid = $pid AND request_id = $request_id
ORDER BY ts DESC
LIMIT 1;

-- name: request-queries
-- The queries one request ran (host, pid, request_id, recorded between $since and $until), in the order they
-- ended, each with its duration in ms.
SELECT ts, fingerprint, name, duration_ms, success
FROM queries
WHERE ts >= $since AND ts <= $until AND host = $host AND pid = $pid AND request_id = $request_id
ORDER BY ts, rowid;

-- name: memory-per-process
-- Per process (host, pid) over the range: its latest sample, and its mean and peak resident memory.
SELECT host,
       pid,
       count(*)                         AS samples,
       arg_max(rss_bytes, ts)           AS rss_bytes,
       avg(rss_bytes)                   AS avg_rss_bytes,
       max(rss_bytes)                   AS max_rss_bytes,
       arg_max(vms_bytes, ts)           AS vms_bytes,
       arg_max(cpu_percent, ts)         AS cpu_percent,
       arg_max(num_threads, ts)         AS num_threads,
       arg_max(num_fds, ts)             AS num_fds,
       min(ts)                          AS first_seen,
       max(ts)                          AS last_seen
FROM process_samples
WHERE ts >= $since AND ts <= $until
GROUP BY host, pid
ORDER BY host, pid;

-- name: memory-series
-- Per process and per $step bucket (aligned on the Unix epoch): mean and peak resident memory.
SELECT host,
       pid,
       time_bucket($step, ts, TIMESTAMP '1970-01-01')   AS bucket,
       avg(rss_bytes)                                  AS avg_rss_bytes,
       max(rss_bytes)                                  AS max_rss_bytes
FROM process_samples
WHERE ts >= $since AND ts <= $until
GROUP BY host, pid, bucket
ORDER BY host, pid, bucket;

-- name: metrics-request-histogram
-- Per route and method since $since: requests per duration bucket ($bounds_ms upper bounds, inclusive, plus an
-- overflow bucket keyed +inf; not cumulative), and the total duration in ms.
SELECT route, method, histogram(duration_ms, $bounds_ms) AS buckets, count(*) AS count, sum(duration_ms) AS sum_ms
FROM requests
WHERE ts >= $since
GROUP BY route, method
ORDER BY route, method;

-- name: metrics-request-status
-- Requests per route, method and status since $since.
SELECT route, method, status, count(*) AS count
FROM requests
WHERE ts >= $since
GROUP BY route, method, status
ORDER BY route, method, status;

-- name: metrics-query-histogram
-- Per route ('' for queries outside a request) since $since: queries per duration bucket as in
-- metrics-request-histogram, the total duration in ms, and the failures.
SELECT coalesce(route, '')                  AS route,
       histogram(duration_ms, $bounds_ms)   AS buckets,
       count(*)                             AS count,
       sum(duration_ms)                     AS sum_ms,
       count(*) FILTER (WHERE NOT success)  AS failures
FROM queries
WHERE ts >= $since
GROUP BY 1
ORDER BY 1;

-- name: metrics-process-gauges
-- The latest sample of each process that reported since $since.
SELECT host,
       pid,
       arg_max(rss_bytes, ts)       AS rss_bytes,
       arg_max(vms_bytes, ts)       AS vms_bytes,
       arg_max(cpu_percent, ts)     AS cpu_percent,
       arg_max(num_threads, ts)     AS num_threads,
       arg_max(num_fds, ts)         AS num_fds,
       arg_max(gc_collections, ts)  AS gc_collections
FROM process_samples
WHERE ts >= $since
GROUP BY host, pid
ORDER BY host, pid;

-- name: alerts-active
-- Alerts pending or firing now (alert_state of pipeline/sql/alerts.sql), most severe first, each with the
-- message of its latest transition.
WITH latest AS (
    SELECT rule, labels, arg_max(message, ts) AS message FROM alert_events GROUP BY rule, labels
)
SELECT s.rule, s.labels, s.metric, s.level, s.state, s.value, s.threshold, s.since, s.evaluated_at,
       coalesce(l.message, '') AS message
FROM alert_state s LEFT JOIN latest l USING (rule, labels)
WHERE s.state IN ('pending', 'firing')
ORDER BY CASE s.level WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, s.since, s.rule, s.labels;

-- name: alert-history
-- Alert transitions over the range (of one rule when $rule is not NULL), newest first, at most $limit.
SELECT ts, rule, labels, metric, level, from_state, to_state, value, threshold, message
FROM alert_events
WHERE ts >= $since AND ts <= $until AND ($rule IS NULL OR rule = $rule)
ORDER BY ts DESC, rule, labels
LIMIT $limit;
