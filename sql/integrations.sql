-- Named read queries over what the integrations record: requests and the queries they ran.
-- Request ids are unique within (host, pid), so every join and grouping on them carries both.

-- name: n-plus-one
-- N+1 patterns: per route, fingerprints run at least $min_repeats times within one request since $since.
WITH per_request AS (
    SELECT route,
           host,
           pid,
           request_id,
           fingerprint_id,
           any_value(fingerprint) AS fingerprint,
           count(*)               AS repeats,
           sum(duration_ms)       AS total_ms
    FROM queries
    WHERE ts >= $since
      AND request_id IS NOT NULL
    GROUP BY route, host, pid, request_id, fingerprint_id
    HAVING count(*) >= $min_repeats
)
SELECT coalesce(route, '<unmatched>')  AS route,
       fingerprint,
       fingerprint_id,
       count(*)                        AS requests,
       max(repeats)                    AS max_repeats,
       round(avg(repeats), 1)          AS avg_repeats,
       round(avg(total_ms), 3)         AS avg_total_ms
FROM per_request
GROUP BY ALL
ORDER BY requests DESC, max_repeats DESC, route, fingerprint;

-- name: request-queries
-- Each request since $since with the queries it ran, joined on (host, pid, request_id): one row per request.
SELECT r.ts,
       r.route,
       r.method,
       r.status,
       r.duration_ms,
       r.query_count,
       count(q.fingerprint_id)            AS queries_found,
       coalesce(sum(q.duration_ms), 0)    AS query_ms
FROM requests r
LEFT JOIN queries q
       ON q.host = r.host AND q.pid = r.pid AND q.request_id = r.request_id
WHERE r.ts >= $since
GROUP BY ALL
ORDER BY r.ts;
