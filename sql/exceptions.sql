-- Unhandled exceptions of requests (pipeline/exceptions.py): each occurrence is stored by its signature (type,
-- where it was raised, its message with every literal removed), never its raw message nor a local variable. The
-- dashboard groups them by signature_id; `duckpulse sql "SELECT * FROM exceptions"` reads them too.

-- name: migration-6
-- One row per unhandled exception; request_id (with pid and host) ties it to its request row.
CREATE TABLE IF NOT EXISTS exceptions (
    ts            TIMESTAMP NOT NULL,
    route         VARCHAR,             -- the route template of the request (<unmatched> when none matched)
    request_id    BIGINT,
    type          VARCHAR   NOT NULL,  -- module.QualName of the class (a builtin's bare name)
    module        VARCHAR   NOT NULL,  -- where it was raised: the innermost application frame's module,
    function      VARCHAR   NOT NULL,  -- its function (qualified name)
    line          INTEGER   NOT NULL,  -- and its line
    message       VARCHAR   NOT NULL,  -- str(exc) with literals removed as SQL is fingerprinted
    signature_id  BIGINT    NOT NULL,  -- hash of the five above: what groups occurrences
    pid           INTEGER   NOT NULL,
    host          VARCHAR   NOT NULL
);

-- name: error-groups
-- Exceptions over the range (of one route when $route is not NULL) grouped by signature, most frequent first, at
-- most $limit: how many, the routes they hit, first and last seen in the range and ever (in stored rows), and the
-- latest occurrence (what ties it to its request: host, pid, request_id); every row also carries the range's
-- totals over all groups (hits, signatures), counted before the limit, so one statement answers the endpoint.
WITH hits AS (
    SELECT * FROM exceptions WHERE ts >= $since AND ts <= $until AND ($route IS NULL OR route = $route)
), groups AS (
    SELECT signature_id,
           any_value(type) AS type, any_value(module) AS module, any_value(function) AS function,
           any_value(line) AS line, any_value(message) AS message,
           count(*) AS count,
           list_sort(list_distinct(list(route))) AS routes,
           min(ts) AS first_in_range, max(ts) AS last_in_range,
           arg_max({'ts': ts, 'route': route, 'request_id': request_id, 'pid': pid, 'host': host}, ts) AS latest,
           sum(count(*)) OVER () AS total_count, count(*) OVER () AS total_signatures
    FROM hits
    GROUP BY signature_id
    ORDER BY count DESC, last_in_range DESC, signature_id
    LIMIT $limit
), ever AS (
    SELECT signature_id, min(ts) AS first_seen, max(ts) AS last_seen
    FROM exceptions
    WHERE signature_id IN (SELECT signature_id FROM groups)
    GROUP BY signature_id
)
SELECT g.*, e.first_seen, e.last_seen
FROM groups g JOIN ever e USING (signature_id)
ORDER BY g.count DESC, g.last_in_range DESC, g.signature_id;
