-- Named read queries of the dashboard's /api/hosts: a fleet's hosts side by side, and one host's routes.
-- `host` is a label like route: every row carries it, so these read the raw tables (the rollups keep no host,
-- which would multiply their rows by the number of hosts). Ranges are closed ($since <= ts <= $until, naive UTC);
-- percentiles are exact nearest-rank (quantile_disc). A request is an error when its status is 500 or more.
-- $route and $host are optional filters (NULL: every route, every host).

-- name: hosts
-- Per host over the range: requests, errors, p50/p95/p99 in ms, queries and their total time, the processes
-- seen (requests or memory samples) and when the host was last seen; busiest host first.
WITH req AS (
    SELECT host,
           count(*)                                         AS requests,
           count(*) FILTER (WHERE status >= 500)            AS errors,
           quantile_disc(duration_ms, [0.5, 0.95, 0.99])    AS pcts,
           max(ts)                                          AS last_request
    FROM requests
    WHERE ts >= $since AND ts <= $until
      AND ($route::VARCHAR IS NULL OR route = $route) AND ($host::VARCHAR IS NULL OR host = $host)
    GROUP BY host
), qry AS (
    SELECT host, count(*) AS queries, sum(duration_ms) AS query_ms, max(ts) AS last_query
    FROM queries
    WHERE ts >= $since AND ts <= $until
      AND ($route::VARCHAR IS NULL OR route = $route) AND ($host::VARCHAR IS NULL OR host = $host)
    GROUP BY host
), procs AS (
    SELECT host, pid, max(ts) AS last_ts
    FROM (SELECT host, pid, ts FROM requests
          WHERE ts >= $since AND ts <= $until
            AND ($route::VARCHAR IS NULL OR route = $route) AND ($host::VARCHAR IS NULL OR host = $host)
          UNION ALL
          SELECT host, pid, ts FROM process_samples
          WHERE ts >= $since AND ts <= $until AND $route::VARCHAR IS NULL
            AND ($host::VARCHAR IS NULL OR host = $host))
    GROUP BY host, pid
), per_host AS (
    SELECT host, count(*) AS processes, max(last_ts) AS last_process FROM procs GROUP BY host
)
SELECT host,
       coalesce(req.requests, 0)  AS requests,
       coalesce(req.errors, 0)    AS errors,
       req.pcts                   AS pcts,
       coalesce(qry.queries, 0)   AS queries,
       coalesce(qry.query_ms, 0)  AS query_ms,
       coalesce(per_host.processes, 0) AS processes,
       greatest(req.last_request, qry.last_query, per_host.last_process) AS last_seen
FROM req FULL JOIN qry USING (host) FULL JOIN per_host USING (host)
ORDER BY requests DESC, host;

-- name: host-routes
-- One host's routes over the range: requests, errors and p50/p95/p99 in ms; busiest route first.
SELECT route,
       count(*)                                         AS requests,
       count(*) FILTER (WHERE status >= 500)            AS errors,
       quantile_disc(duration_ms, [0.5, 0.95, 0.99])    AS pcts
FROM requests
WHERE ts >= $since AND ts <= $until AND host = $host
GROUP BY route
ORDER BY requests DESC, route;
