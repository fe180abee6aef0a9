-- Percentiles of request durations, query durations and custom histograms (pipeline/percentiles.py).
-- Exact blocks read raw rows with quantile_disc (nearest rank) or quantile_cont (linear). Sketch blocks merge
-- log-bucket bins: whole hours from rollup_bins_1h, whole minutes from rollup_bins_1m, and the rest (the edges
-- and the minutes not rolled yet) from raw rows binned on the fly, then walk the cumulative counts to the rank.
-- Values are parameters. Python replaces only the markers, with allow-listed quoted column names:
--   /* by */         the group-by columns followed by a comma (nothing without groups)
--   /* partition */  PARTITION BY the same columns (nothing without groups)
--   /* where */      AND list_contains($w0, "column") ... for the caller's filters (nothing without)
-- Ranges are half-open [start, end); an unused range slot is given start = end and matches nothing.

-- name: percentiles-exact-requests
-- Exact nearest-rank request-duration percentiles over [start, end).
SELECT /* by */ count(*) AS count, quantile_disc(duration_ms, $quantiles) AS "values"
FROM (SELECT ts, route, method, (status // 100)::VARCHAR || 'xx' AS status_class, status, host, duration_ms
      FROM requests WHERE ts >= $start AND ts < $end)
WHERE true /* where */
GROUP BY ALL;

-- name: percentiles-exact-linear-requests
-- Exact linearly interpolated request-duration percentiles over [start, end).
SELECT /* by */ count(*) AS count, quantile_cont(duration_ms, $quantiles) AS "values"
FROM (SELECT ts, route, method, (status // 100)::VARCHAR || 'xx' AS status_class, status, host, duration_ms
      FROM requests WHERE ts >= $start AND ts < $end)
WHERE true /* where */
GROUP BY ALL;

-- name: percentiles-exact-queries
-- Exact nearest-rank query-duration percentiles over [start, end).
SELECT /* by */ count(*) AS count, quantile_disc(duration_ms, $quantiles) AS "values"
FROM (SELECT ts, fingerprint, name, route, host, success, duration_ms
      FROM queries WHERE ts >= $start AND ts < $end)
WHERE true /* where */
GROUP BY ALL;

-- name: percentiles-exact-linear-queries
-- Exact linearly interpolated query-duration percentiles over [start, end).
SELECT /* by */ count(*) AS count, quantile_cont(duration_ms, $quantiles) AS "values"
FROM (SELECT ts, fingerprint, name, route, host, success, duration_ms
      FROM queries WHERE ts >= $start AND ts < $end)
WHERE true /* where */
GROUP BY ALL;

-- name: percentiles-exact-histogram
-- Exact nearest-rank percentiles of custom histogram series ($series_ids, grouped by $groups) over [start, end).
WITH mapping AS (SELECT unnest($series_ids::BIGINT[]) AS series_id, unnest($groups::INTEGER[]) AS grp)
SELECT /* by */ count(*) AS count, quantile_disc(p.value, $quantiles) AS "values"
FROM points p JOIN mapping m ON p.series_id = m.series_id
WHERE p.ts >= $start AND p.ts < $end /* where */
GROUP BY ALL;

-- name: percentiles-exact-linear-histogram
-- Exact linearly interpolated percentiles of custom histogram series over [start, end).
WITH mapping AS (SELECT unnest($series_ids::BIGINT[]) AS series_id, unnest($groups::INTEGER[]) AS grp)
SELECT /* by */ count(*) AS count, quantile_cont(p.value, $quantiles) AS "values"
FROM points p JOIN mapping m ON p.series_id = m.series_id
WHERE p.ts >= $start AND p.ts < $end /* where */
GROUP BY ALL;

-- name: percentiles-sketch-requests
-- Request-duration bins: one hour range, two minute ranges, four raw ranges (percentiles-sketch-rank follows).
WITH raw AS (
    SELECT ts, route, method, (status // 100)::VARCHAR || 'xx' AS status_class, duration_ms
    FROM requests
    WHERE (ts >= $r1_start AND ts < $r1_end) OR (ts >= $r2_start AND ts < $r2_end)
       OR (ts >= $r3_start AND ts < $r3_end) OR (ts >= $r4_start AND ts < $r4_end)
),
pieces AS (
    SELECT /* by */ bin, count AS n
    FROM rollup_bins_1h
    WHERE source = 'requests' AND bucket_start >= $h_start AND bucket_start < $h_end /* where */
    UNION ALL
    SELECT /* by */ bin, count AS n
    FROM rollup_bins_1m
    WHERE source = 'requests'
      AND ((bucket_start >= $m1_start AND bucket_start < $m1_end) OR (bucket_start >= $m2_start AND bucket_start < $m2_end))
      /* where */
    UNION ALL
    SELECT /* by */ duckpulse_sketch_bin(duration_ms) AS bin, count(*) AS n
    FROM raw
    WHERE true /* where */
    GROUP BY ALL
)

-- name: percentiles-sketch-queries
-- Query-duration bins: one hour range, two minute ranges, four raw ranges (percentiles-sketch-rank follows).
WITH raw AS (
    SELECT ts, fingerprint, duration_ms
    FROM queries
    WHERE (ts >= $r1_start AND ts < $r1_end) OR (ts >= $r2_start AND ts < $r2_end)
       OR (ts >= $r3_start AND ts < $r3_end) OR (ts >= $r4_start AND ts < $r4_end)
),
pieces AS (
    SELECT /* by */ bin, count AS n
    FROM rollup_bins_1h
    WHERE source = 'queries' AND bucket_start >= $h_start AND bucket_start < $h_end /* where */
    UNION ALL
    SELECT /* by */ bin, count AS n
    FROM rollup_bins_1m
    WHERE source = 'queries'
      AND ((bucket_start >= $m1_start AND bucket_start < $m1_end) OR (bucket_start >= $m2_start AND bucket_start < $m2_end))
      /* where */
    UNION ALL
    SELECT /* by */ duckpulse_sketch_bin(duration_ms) AS bin, count(*) AS n
    FROM raw
    WHERE true /* where */
    GROUP BY ALL
)

-- name: percentiles-sketch-histogram
-- Custom-histogram bins ($series_ids grouped by $groups; percentiles-sketch-rank follows).
WITH mapping AS (SELECT unnest($series_ids::BIGINT[]) AS series_id, unnest($groups::INTEGER[]) AS grp),
raw AS (
    SELECT p.ts, m.grp, p.value
    FROM points p JOIN mapping m ON p.series_id = m.series_id
    WHERE (p.ts >= $r1_start AND p.ts < $r1_end) OR (p.ts >= $r2_start AND p.ts < $r2_end)
       OR (p.ts >= $r3_start AND p.ts < $r3_end) OR (p.ts >= $r4_start AND p.ts < $r4_end)
),
pieces AS (
    SELECT /* by */ b.bin, b.count AS n
    FROM rollup_bins_1h b JOIN mapping m ON b.series_id = m.series_id
    WHERE b.source = 'histogram' AND b.bucket_start >= $h_start AND b.bucket_start < $h_end /* where */
    UNION ALL
    SELECT /* by */ b.bin, b.count AS n
    FROM rollup_bins_1m b JOIN mapping m ON b.series_id = m.series_id
    WHERE b.source = 'histogram'
      AND ((b.bucket_start >= $m1_start AND b.bucket_start < $m1_end)
           OR (b.bucket_start >= $m2_start AND b.bucket_start < $m2_end))
      /* where */
    UNION ALL
    SELECT /* by */ duckpulse_sketch_bin(value) AS bin, count(*) AS n
    FROM raw
    WHERE true /* where */
    GROUP BY ALL
)

-- name: percentiles-histogram-series
-- The series of one custom histogram (labels are canonical JSON).
SELECT series_id, labels FROM series WHERE name = $name AND kind = 'histogram' ORDER BY series_id;

-- name: percentiles-sketch-rank
-- The shared tail of every percentiles-sketch-* block, which ends with a pieces(by..., bin, n) CTE:
-- merges the pieces per group, accumulates counts and picks each quantile's rank (nearest or linear).
merged AS (SELECT /* by */ bin, sum(n) AS n FROM pieces GROUP BY ALL),
cumulative AS (
    SELECT *,
           sum(n) OVER (/* partition */ ORDER BY bin ROWS UNBOUNDED PRECEDING) AS cum,
           sum(n) OVER (/* partition */) AS total
    FROM merged
),
wanted AS (
    SELECT generate_subscripts($quantiles, 1) AS i, unnest($quantiles) AS q,
           unnest($q_num)::HUGEINT AS num, unnest($q_den)::HUGEINT AS den
),
ranked AS (
    SELECT c.*, w.i, w.q,
           CASE WHEN $linear THEN floor((c.total - 1) * w.q) + 1
                ELSE greatest(1, (c.total * w.num + w.den - 1) // w.den) END AS rank_lo,
           CASE WHEN $linear THEN ceil((c.total - 1) * w.q) + 1
                ELSE greatest(1, (c.total * w.num + w.den - 1) // w.den) END AS rank_hi
    FROM cumulative c CROSS JOIN wanted w
),
picked AS (
    SELECT /* by */ i, any_value(q) AS q, any_value(total) AS total, any_value(rank_lo) AS rank_lo,
           any_value(rank_hi) AS rank_hi,
           duckpulse_sketch_value(min(bin) FILTER (WHERE cum >= rank_lo)) AS lo,
           duckpulse_sketch_value(min(bin) FILTER (WHERE cum >= rank_hi)) AS hi
    FROM ranked
    GROUP BY ALL
)
SELECT /* by */ any_value(total)::BIGINT AS count,
       list(CASE WHEN rank_hi = rank_lo THEN lo
                 ELSE lo + (hi - lo) * ((total - 1) * q - floor((total - 1) * q)) END ORDER BY i) AS "values"
FROM picked
GROUP BY ALL;
