-- Named read queries shared by the CLI, the dashboard and the notebooks. Values are always parameters.

-- name: route-percentiles
-- Exact nearest-rank p50/p95/p99 per route and method over requests since $since.
SELECT route,
       method,
       count(*)                                   AS count,
       round(avg(duration_ms), 2)                 AS avg_ms,
       round(quantile_disc(duration_ms, 0.50), 2) AS p50_ms,
       round(quantile_disc(duration_ms, 0.95), 2) AS p95_ms,
       round(quantile_disc(duration_ms, 0.99), 2) AS p99_ms,
       count(*) FILTER (WHERE status >= 500)      AS errors
FROM requests
WHERE ts >= $since
GROUP BY route, method
ORDER BY count DESC, route;
