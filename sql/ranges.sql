-- Request statistics over any range, read from the cheapest tier that holds each part of it (webapp/ranges.py):
-- whole hours from rollups_1h, whole minutes from rollups_1m, the rest (ragged edges, minutes not rolled yet)
-- from raw rows; the same split as pipeline.percentiles (pipeline/percentiles.py's plan). Unused range slots are
-- given start = end and match nothing. A range up to an hour, or up to a day holding few raw rows (webapp/ranges.py's
-- EXACT_UP_TO_ROWS), is read from raw rows only: percentiles are then exact (nearest rank), else merged from the
-- log-bucket sketches (within 1%, duckpulse_sketch_value).
--
-- The blocks are CTE fragments joined by webapp/ranges.py into one statement: WITH, the fragments, then a final
-- block (a SELECT, or more CTEs and a SELECT). Python replaces only markers, with
-- allow-listed text (webapp/ranges.py's GROUPS):
--   /* by */         the group expressions followed by a comma (bucket: time_bucket over ts; route), or nothing
--   /* keys */       the group names followed by a comma, or nothing
--   /* partition */  PARTITION BY the group names, or nothing
--   /* join */       the quantiles q joined USING the group names, or CROSS JOIN without groups
-- $route, when not NULL, keeps one route.

-- name: raw-rows-up-to
-- How many raw requests [$start, $end) holds (of $route when not NULL), counting no further than $limit.
SELECT count(*) FROM (SELECT 1 FROM requests
                      WHERE ts >= $start AND ts < $end AND ($route IS NULL OR route = $route) LIMIT $limit);

-- name: range-exact
-- CTE stats (a range read from raw rows only): per group, requests, errors (status >= 500), client errors (4xx),
-- total and slowest ms, and exact nearest-rank p50/p95/p99 (pcts), in one pass over [$start, $end).
stats AS (
    SELECT /* by */ count(*) AS count, count(*) FILTER (WHERE status >= 500) AS errors,
           count(*) FILTER (WHERE status >= 400 AND status < 500) AS client_errors,
           sum(duration_ms) AS sum_ms, max(duration_ms) AS max_ms,
           quantile_disc(duration_ms, [0.5, 0.95, 0.99]) AS pcts
    FROM requests
    WHERE ts >= $start AND ts < $end AND ($route IS NULL OR route = $route)
    GROUP BY ALL
)

-- name: range-counts-raw
-- CTE counts (a range read from raw rows only): per group, requests, errors (status >= 500), client errors (4xx),
-- total and slowest ms, in one pass over [$start, $end) (range-counts' union of empty tier slots cost twice this).
counts AS (
    SELECT /* by */ count(*) AS count, count(*) FILTER (WHERE status >= 500) AS errors,
           count(*) FILTER (WHERE status >= 400 AND status < 500) AS client_errors,
           sum(duration_ms) AS sum_ms, max(duration_ms) AS max_ms
    FROM requests
    WHERE ts >= $start AND ts < $end AND ($route IS NULL OR route = $route)
    GROUP BY ALL
)

-- name: range-counts
-- CTE counts: per group, requests, errors (status >= 500), client errors (4xx), total and slowest ms, over the
-- tiers.
counts AS (
    SELECT /* by */ sum(count)::BIGINT AS count, sum(errors)::BIGINT AS errors,
           sum(client_errors)::BIGINT AS client_errors, sum(sum) AS sum_ms, max(max) AS max_ms
    FROM (
        SELECT bucket_start AS ts, route, count, errors, CASE WHEN status_class = '4xx' THEN count ELSE 0 END
                   AS client_errors, sum, max
        FROM rollups_1h
        WHERE source = 'requests' AND bucket_start >= $h_start AND bucket_start < $h_end
          AND ($route IS NULL OR route = $route)
        UNION ALL
        SELECT bucket_start, route, count, errors, CASE WHEN status_class = '4xx' THEN count ELSE 0 END, sum, max
        FROM rollups_1m
        WHERE source = 'requests'
          AND ((bucket_start >= $m1_start AND bucket_start < $m1_end)
               OR (bucket_start >= $m2_start AND bucket_start < $m2_end))
          AND ($route IS NULL OR route = $route)
        UNION ALL
        SELECT ts, route, 1, CASE WHEN status >= 500 THEN 1 ELSE 0 END,
               CASE WHEN status >= 400 AND status < 500 THEN 1 ELSE 0 END, duration_ms, duration_ms
        FROM requests
        WHERE ((ts >= $r1_start AND ts < $r1_end) OR (ts >= $r2_start AND ts < $r2_end)
               OR (ts >= $r3_start AND ts < $r3_end) OR (ts >= $r4_start AND ts < $r4_end))
          AND ($route IS NULL OR route = $route)
    )
    GROUP BY ALL
)

-- name: range-bins-raw
-- CTE bins (a range read from raw rows only): per group and sketch bin, how many request durations fell in it, in
-- one pass over [$start, $end).
bins AS (
    SELECT /* by */ duckpulse_sketch_bin(duration_ms) AS bin, count(*)::BIGINT AS n
    FROM requests
    WHERE ts >= $start AND ts < $end AND ($route IS NULL OR route = $route)
    GROUP BY ALL
)

-- name: range-bins
-- CTE bins: per group and sketch bin, how many request durations fell in it (exact counts), over the tiers.
bins AS (
    SELECT /* by */ bin, sum(n)::BIGINT AS n
    FROM (
        SELECT bucket_start AS ts, route, bin, count AS n
        FROM rollup_bins_1h
        WHERE source = 'requests' AND bucket_start >= $h_start AND bucket_start < $h_end
          AND ($route IS NULL OR route = $route)
        UNION ALL
        SELECT bucket_start, route, bin, count
        FROM rollup_bins_1m
        WHERE source = 'requests'
          AND ((bucket_start >= $m1_start AND bucket_start < $m1_end)
               OR (bucket_start >= $m2_start AND bucket_start < $m2_end))
          AND ($route IS NULL OR route = $route)
        UNION ALL
        SELECT ts, route, duckpulse_sketch_bin(duration_ms), 1
        FROM requests
        WHERE ((ts >= $r1_start AND ts < $r1_end) OR (ts >= $r2_start AND ts < $r2_end)
               OR (ts >= $r3_start AND ts < $r3_end) OR (ts >= $r4_start AND ts < $r4_end))
          AND ($route IS NULL OR route = $route)
    )
    GROUP BY ALL
)

-- name: range-sketch
-- CTE stats (after range-counts and range-bins): the counts with nearest-rank p50/p95/p99 (pcts) from the merged
-- bins: the first bin whose cumulative count reaches ceil(q * total), compared in integers (100 * cum >= q100 *
-- total), read back as duckpulse_sketch_value.
cumulative AS (
    SELECT *, sum(n) OVER (/* partition */ ORDER BY bin ROWS UNBOUNDED PRECEDING) AS cum,
           sum(n) OVER (/* partition */) AS total
    FROM bins
),
quantiles AS (
    SELECT /* keys */ [duckpulse_sketch_value(min(bin) FILTER (WHERE cum * 100 >= total * 50)),
                       duckpulse_sketch_value(min(bin) FILTER (WHERE cum * 100 >= total * 95)),
                       duckpulse_sketch_value(min(bin) FILTER (WHERE cum * 100 >= total * 99))] AS pcts
    FROM cumulative
    GROUP BY ALL
),
stats AS (SELECT c.*, q.pcts FROM counts c /* join */)

-- name: routes
-- Per route: the stats and percentiles, busiest first.
SELECT route, count, errors, client_errors, sum_ms, max_ms, pcts FROM stats ORDER BY count DESC, route;

-- name: totals
-- The whole range (or one route): the stats and percentiles (no row: no request).
SELECT count, errors, client_errors, sum_ms, max_ms, pcts FROM stats;

-- name: timeline
-- Every $step bucket from $first to $last (aligned on the Unix epoch) as one JSON array, oldest first:
-- requests, errors, client errors, error rate and p50/p95/p99 in ms. An empty bucket counts 0 requests and has
-- null percentiles and error rate, so a chart shows a gap rather than bridging it.
grid AS (SELECT unnest(generate_series($first, $last, $step)) AS bucket)
SELECT to_json(coalesce(list({'t': strftime(g.bucket, '%Y-%m-%dT%H:%M:%S.%gZ'),
                              'count': coalesce(s.count, 0), 'errors': coalesce(s.errors, 0),
                              'clientErrors': coalesce(s.client_errors, 0),
                              'errorRate': CASE WHEN s.count > 0 THEN s.errors / s.count END,
                              'avg': CASE WHEN s.count > 0 THEN s.sum_ms / s.count END,
                              'p50': s.pcts[1], 'p95': s.pcts[2], 'p99': s.pcts[3]}
                             ORDER BY g.bucket), []))
FROM grid g LEFT JOIN stats s USING (bucket);

-- name: series
-- Per route with requests in the range, every $step bucket from $first to $last as in timeline, as one JSON
-- array [{route, points}] ordered by route.
grid AS (SELECT unnest(generate_series($first, $last, $step)) AS bucket),
routes AS (SELECT DISTINCT route FROM stats),
points AS (
    SELECT r.route,
           list({'t': strftime(g.bucket, '%Y-%m-%dT%H:%M:%S.%gZ'),
                 'count': coalesce(s.count, 0), 'errors': coalesce(s.errors, 0),
                 'errorRate': CASE WHEN s.count > 0 THEN s.errors / s.count END,
                 'p50': s.pcts[1], 'p95': s.pcts[2], 'p99': s.pcts[3]} ORDER BY g.bucket) AS points
    FROM routes r CROSS JOIN grid g
    LEFT JOIN stats s ON s.route = r.route AND s.bucket = g.bucket
    GROUP BY r.route
)
SELECT to_json(coalesce(list({'route': route, 'points': points} ORDER BY route), [])) FROM points;

-- name: histogram
-- The merged bins of the range (or one route), by bin.
SELECT bin, n FROM bins ORDER BY bin;

-- name: route-counts
-- Requests per route, busiest first (after range-counts alone).
SELECT route, count FROM counts ORDER BY count DESC, route;
