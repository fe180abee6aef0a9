-- Tiered retention (pipeline/retention.py) and `duckpulse compact`. Values are always parameters.

-- name: retention-delete-range
-- Deletes the rows of an archived table stamped in [$start, $end) (NULL: unbounded); returns how many.
-- /* table */ and /* column */ come from the archive's allow-list (pipeline/archive.py).
DELETE FROM /* table */
WHERE /* column */ >= coalesce($start, '-infinity'::TIMESTAMP) AND /* column */ < coalesce($end, 'infinity'::TIMESTAMP);

-- name: retention-hours-with-rows
-- The hours of an archived table that hold rows stamped in [$earliest, $end), as epoch seconds.
SELECT DISTINCT epoch(date_trunc('hour', /* column */)) AS hour FROM /* table */
WHERE /* column */ >= $earliest AND /* column */ < $end
ORDER BY hour;

-- name: retention-hours
-- The hours of [$start, $end) of an archived table (epoch seconds): their rows, their measure (rows, or the raw
-- rows rollup rows count) and how much of it the archive's ledger says the history holds.
WITH held AS (
    SELECT date_trunc('hour', /* column */) AS hour, count(*) AS n, /* measure */ AS measure
    FROM /* table */
    WHERE /* column */ >= $start AND /* column */ < $end
    GROUP BY 1
)
SELECT epoch(held.hour), held.n, held.measure, coalesce(a.archived, 0)
FROM held LEFT JOIN archive_hours a ON a.table_name = $table_name AND a.hour = held.hour
ORDER BY 1;

-- name: retention-hours-deleted
-- After the rows of [$start, $end) were deleted: the history holds none of what the database holds of those hours
-- now, and rows that arrive for them later go to a new part (file) of their partition.
UPDATE archive_hours SET part = part + CAST(archived > 0 AS INTEGER), archived = 0
WHERE table_name = $table_name AND hour >= $start AND hour < $end;

-- name: retention-hours-forget
-- Forgets the ledger of hours older than the history keeps once their rows are gone (late rows of them expire).
DELETE FROM archive_hours WHERE table_name = $table_name AND hour < $before;

-- name: retention-expired-add
-- Counts rows deleted without reaching the history.
INSERT INTO expired_rows VALUES ($table_name, $reason, $rows)
ON CONFLICT (table_name, reason) DO UPDATE SET rows = rows + excluded.rows;

-- name: retention-expired-totals
-- Every row deleted without reaching the history, by table and reason.
SELECT table_name, reason, rows FROM expired_rows ORDER BY reason, table_name;

-- name: retention-ingested-segments
-- Prunes the ingest ledger: a segment that old was unlinked long ago (the ledger only guards a crash between
-- commit and unlink).
DELETE FROM ingested_segments WHERE ingested_at < $cutoff;

-- name: retention-alert-events
-- Deletes alert history older than the hour-tier cutoff (alert history is kept as long as hourly statistics).
DELETE FROM alert_events WHERE ts < $cutoff;

-- name: retention-expired-silences
-- Deletes silences that ended before the hour-tier cutoff.
DELETE FROM silences WHERE ends_at < $cutoff;

-- name: retention-advance-tier
-- Moves a tier's first bucket past what retention deleted, so percentile plans stop counting on it.
UPDATE rollup_state
SET rolled_from = least(greatest(rolled_from, $first_kept), rolled_until), updated_at = $now
WHERE tier = $tier;

-- name: retention-checkpoint
-- Writes the deletions into the file so that their blocks can be reused.
CHECKPOINT;

-- name: compact-attach-source
-- Opens the database to compact read-only: its WAL, if any, is replayed in memory and the file left untouched.
ATTACH $path AS duckpulse_compact_source (READ_ONLY);

-- name: compact-attach-checkpoint
-- Opens the database to fold its WAL into the file (detaching checkpoints it) before the rewrite replaces it.
ATTACH $path AS duckpulse_compact_source;

-- name: compact-attach-target
-- Creates the fresh file the database is copied into.
ATTACH $path AS duckpulse_compact_target;

-- name: compact-copy
-- Copies schema, macros and rows into the fresh file, which holds no free blocks.
COPY FROM DATABASE duckpulse_compact_source TO duckpulse_compact_target;

-- name: compact-detach-source
-- Closes the compacted database (checkpointing it when it was attached for writing).
DETACH duckpulse_compact_source;

-- name: compact-detach-target
-- Closes the fresh file (checkpointing it).
DETACH duckpulse_compact_target;
