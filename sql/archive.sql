-- The archive job (pipeline/archive.py): closed hours exported to Parquet. Values are parameters; the table
-- and its time column come from a fixed allow-list and are put in, quoted, at /* table */ and /* column */.

-- name: archive-state
-- How far each table is archived.
SELECT table_name, archived_until FROM archive_state;

-- name: archive-state-upsert
-- Records that every hour of a table before $archived_until is in the history.
INSERT OR REPLACE INTO archive_state VALUES ($table_name, $archived_until, $updated_at);

-- name: archive-earliest
-- The oldest row of a table: where its first archive run starts.
SELECT min(/* column */) FROM /* table */;

-- name: archive-hours
-- The hours of [start, end) that hold rows (an empty hour gets no file).
SELECT DISTINCT date_trunc('hour', /* column */) AS hour
FROM /* table */
WHERE /* column */ >= $start AND /* column */ < $end
ORDER BY hour;

-- name: archive-export
-- One hour of a table, in time order, as a zstd Parquet file.
COPY (SELECT * FROM /* table */ WHERE /* column */ >= $start AND /* column */ < $end ORDER BY /* column */)
TO $path (FORMAT parquet, COMPRESSION zstd);

-- name: archive-series
-- The custom series (a small dimension table), rewritten whole.
COPY (SELECT * FROM series ORDER BY series_id) TO $path (FORMAT parquet, COMPRESSION zstd);
