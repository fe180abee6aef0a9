-- The publish job (pipeline/publish.py): the data the archive does not hold yet, as Parquet files for readers in
-- other processes. Values are parameters; the table and its time column come from a fixed allow-list and are put
-- in, quoted, at /* table */ and /* column */.

-- name: publish-archived-until
-- How far each table is archived (epoch seconds): readers take the archive below it.
SELECT table_name, epoch(archived_until) FROM archive_state;

-- name: publish-minutes-count
-- Rows per minute in [$since, $until), of a table rows are only ever appended to: a minute changed iff its count did.
SELECT epoch(date_trunc('minute', /* column */)) AS minute, count(*) AS n, 0 AS h
FROM /* table */
WHERE /* column */ >= $since AND /* column */ < $until
GROUP BY ALL;

-- name: publish-minutes-hash
-- Rows and a hash of their content per minute in [$since, $until), of a table whose rows are rewritten (rollups).
SELECT epoch(date_trunc('minute', /* column */)) AS minute, count(*) AS n, sum(hash(t)) AS h
FROM /* table */ AS t
WHERE /* column */ >= $since AND /* column */ < $until
GROUP BY ALL;

-- name: publish-whole-hash
-- Rows and a hash of the content of a small table published whole.
SELECT count(*) AS n, coalesce(sum(hash(t)), 0) AS h FROM /* table */ AS t;

-- name: publish-minute
-- One minute of a table, in time order.
COPY (SELECT * FROM /* table */ WHERE /* column */ >= $start AND /* column */ < $end ORDER BY /* column */)
TO $path (FORMAT parquet, COMPRESSION zstd);

-- name: publish-whole
-- A small table, whole.
COPY (SELECT * FROM /* table */) TO $path (FORMAT parquet, COMPRESSION zstd);

-- name: publish-empty
-- No rows, the table's columns: keeps the readers' file pattern matching when no minute is published.
COPY (SELECT * FROM /* table */ LIMIT 0) TO $path (FORMAT parquet);

-- name: publish-watermark
-- Per table, the time from which readers take the published minutes instead of the archive, and when.
COPY (SELECT unnest($tables::VARCHAR[]) AS table_name, unnest($recent_from::TIMESTAMP[]) AS recent_from,
             $published_at::TIMESTAMP AS published_at)
TO $path (FORMAT parquet);
