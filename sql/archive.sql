-- The archive job (pipeline/archive.py): closed hours exported to Parquet. Values are parameters; the table
-- and its time column come from a fixed allow-list and are put in, quoted, at /* table */ and /* column */.

-- name: migration-5
-- The archive's ledger: per table and hour, the part (file) the hour's rows in the database go to and how much
-- of them the history holds; and the rows that expired without reaching the history, by reason (retention.py).
-- A database archived before the ledger existed has every hour before its archived_until taken as held whole.
CREATE TABLE IF NOT EXISTS archive_hours (
    table_name  VARCHAR   NOT NULL,
    hour        TIMESTAMP NOT NULL,
    part        INTEGER   NOT NULL,  -- 0: data.parquet; k: late-k.parquet (rows that came after retention ran)
    archived    BIGINT    NOT NULL,  -- the hour's rows in the database that the history holds (rollup tables:
                                     -- the raw rows they count); 0 once retention deleted them
    PRIMARY KEY (table_name, hour)
);
CREATE TABLE IF NOT EXISTS expired_rows (
    table_name  VARCHAR   NOT NULL,
    reason      VARCHAR   NOT NULL,  -- why they never reached the history (pipeline/retention.py: EXPIRED)
    rows        BIGINT    NOT NULL,
    PRIMARY KEY (table_name, reason)
);
INSERT INTO archive_hours SELECT 'requests', date_trunc('hour', ts), 0, count(*) FROM requests
WHERE ts >= TIMESTAMP '1970-01-01' AND ts < (SELECT archived_until FROM archive_state WHERE table_name = 'requests')
GROUP BY 2;
INSERT INTO archive_hours SELECT 'queries', date_trunc('hour', ts), 0, count(*) FROM queries
WHERE ts >= TIMESTAMP '1970-01-01' AND ts < (SELECT archived_until FROM archive_state WHERE table_name = 'queries')
GROUP BY 2;
INSERT INTO archive_hours SELECT 'process_samples', date_trunc('hour', ts), 0, count(*) FROM process_samples
WHERE ts >= TIMESTAMP '1970-01-01' AND ts < (SELECT archived_until FROM archive_state WHERE table_name = 'process_samples')
GROUP BY 2;
INSERT INTO archive_hours SELECT 'points', date_trunc('hour', ts), 0, count(*) FROM points
WHERE ts >= TIMESTAMP '1970-01-01' AND ts < (SELECT archived_until FROM archive_state WHERE table_name = 'points')
GROUP BY 2;
INSERT INTO archive_hours SELECT 'rollups_1m', date_trunc('hour', bucket_start), 0, sum(count) FROM rollups_1m
WHERE bucket_start >= TIMESTAMP '1970-01-01' AND bucket_start < (SELECT archived_until FROM archive_state WHERE table_name = 'rollups_1m')
GROUP BY 2;
INSERT INTO archive_hours SELECT 'rollup_bins_1m', date_trunc('hour', bucket_start), 0, sum(count) FROM rollup_bins_1m
WHERE bucket_start >= TIMESTAMP '1970-01-01' AND bucket_start < (SELECT archived_until FROM archive_state WHERE table_name = 'rollup_bins_1m')
GROUP BY 2;
INSERT INTO archive_hours SELECT 'rollups_1h', date_trunc('hour', bucket_start), 0, sum(count) FROM rollups_1h
WHERE bucket_start >= TIMESTAMP '1970-01-01' AND bucket_start < (SELECT archived_until FROM archive_state WHERE table_name = 'rollups_1h')
GROUP BY 2;
INSERT INTO archive_hours SELECT 'rollup_bins_1h', date_trunc('hour', bucket_start), 0, sum(count) FROM rollup_bins_1h
WHERE bucket_start >= TIMESTAMP '1970-01-01' AND bucket_start < (SELECT archived_until FROM archive_state WHERE table_name = 'rollup_bins_1h')
GROUP BY 2;

-- name: archive-state
-- How far each table is archived, as epoch seconds.
SELECT table_name, epoch(archived_until) FROM archive_state;

-- name: archive-state-upsert
-- Records that every hour of a table before $archived_until is in the history.
INSERT OR REPLACE INTO archive_state VALUES ($table_name, $archived_until, $updated_at);

-- name: archive-range-totals
-- How much of [$start, $end) the database holds, and how much of it the ledger says the history holds: equal
-- unless rows arrived late there. /* measure */ is count(*), or sum(count) for rollup tables.
SELECT (SELECT coalesce(/* measure */, 0) FROM /* table */ WHERE /* column */ >= $start AND /* column */ < $end),
       (SELECT coalesce(sum(archived), 0) FROM archive_hours
        WHERE table_name = $table_name AND hour >= $start AND hour < $end);

-- name: archive-changed-hours
-- The hours of [$start, $end) whose rows in the database differ from what the history holds, with the part their
-- rows go to (epoch seconds, in order).
WITH held AS (
    SELECT date_trunc('hour', /* column */) AS hour, /* measure */ AS measure
    FROM /* table */
    WHERE /* column */ >= $start AND /* column */ < $end
    GROUP BY 1
)
SELECT epoch(held.hour) AS hour, coalesce(a.part, 0) AS part
FROM held LEFT JOIN archive_hours a ON a.table_name = $table_name AND a.hour = held.hour
WHERE held.measure IS DISTINCT FROM coalesce(a.archived, 0)
ORDER BY hour;

-- name: archive-hour-measure
-- How much of one hour the database holds: count(*), or sum(count) for rollup tables.
SELECT /* measure */ FROM /* table */ WHERE /* column */ >= $start AND /* column */ < $end;

-- name: archive-hours-record
-- Records, per hour exported, its part and how much of it the history now holds.
INSERT INTO archive_hours
SELECT $table_name, unnest($hours::TIMESTAMP[]), unnest($parts::INTEGER[]), unnest($archived::BIGINT[])
ON CONFLICT (table_name, hour) DO UPDATE SET part = excluded.part, archived = excluded.archived;

-- name: archive-export
-- One hour of a table, in time order, as a zstd Parquet file.
COPY (SELECT * FROM /* table */ WHERE /* column */ >= $start AND /* column */ < $end ORDER BY /* column */)
TO $path (FORMAT parquet, COMPRESSION zstd);

-- name: archive-series
-- The custom series (a small dimension table), rewritten whole.
COPY (SELECT * FROM series ORDER BY series_id) TO $path (FORMAT parquet, COMPRESSION zstd);
