-- Tiered retention (pipeline/retention.py) and `duckpulse compact`. Values are always parameters.

-- name: retention-requests
-- Deletes raw requests older than the raw cutoff.
DELETE FROM requests WHERE ts < $cutoff;

-- name: retention-queries
-- Deletes raw queries older than the raw cutoff.
DELETE FROM queries WHERE ts < $cutoff;

-- name: retention-process-samples
-- Deletes process samples older than the raw cutoff.
DELETE FROM process_samples WHERE ts < $cutoff;

-- name: retention-points
-- Deletes custom-metric points older than the raw cutoff.
DELETE FROM points WHERE ts < $cutoff;

-- name: retention-ingested-segments
-- Prunes the ingest ledger: a segment that old was unlinked long ago (the ledger only guards a crash between
-- commit and unlink).
DELETE FROM ingested_segments WHERE ingested_at < $cutoff;

-- name: retention-rollups-1m
-- Deletes minute statistics older than the minute-tier cutoff.
DELETE FROM rollups_1m WHERE bucket_start < $cutoff;

-- name: retention-rollup-bins-1m
-- Deletes minute bins older than the minute-tier cutoff.
DELETE FROM rollup_bins_1m WHERE bucket_start < $cutoff;

-- name: retention-rollups-1h
-- Deletes hour statistics older than the hour-tier cutoff.
DELETE FROM rollups_1h WHERE bucket_start < $cutoff;

-- name: retention-rollup-bins-1h
-- Deletes hour bins older than the hour-tier cutoff.
DELETE FROM rollup_bins_1h WHERE bucket_start < $cutoff;

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
