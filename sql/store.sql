-- Statements the store runs. Values are always parameters.

-- name: schema-version-create
-- The migration ledger; created before any migration runs.
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL);

-- name: schema-version-current
-- The highest migration applied so far (0 on a new file).
SELECT coalesce(max(version), 0) FROM schema_version;

-- name: schema-version-record
-- Records that a migration has been applied.
INSERT INTO schema_version VALUES ($version, $applied_at);

-- name: segments-already-ingested
-- Which of the given segment names the ledger already holds (a crash after commit, before unlink).
SELECT segment FROM ingested_segments WHERE list_contains($names, segment);

-- name: series-insert
-- Registers custom series; a series seen before keeps its row.
INSERT OR IGNORE INTO series SELECT DISTINCT series_id, name, kind, labels FROM __batch;

-- name: segment-series-insert
-- Registers the custom series of segment files; a series seen before keeps its row.
INSERT OR IGNORE INTO series SELECT DISTINCT series_id, name, kind, labels FROM read_parquet($files);

-- name: ledger-insert
-- Records ingested segments in the same transaction as their rows.
INSERT INTO ingested_segments SELECT unnest($segments), unnest($rows), $ingested_at;

-- name: memory-held
-- DuckDB's memory limit, what it holds, and what it holds besides cached table blocks (release_cache's floor).
SELECT (SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'),
       sum(memory_usage_bytes),
       sum(memory_usage_bytes) FILTER (WHERE tag <> 'BASE_TABLE')
FROM duckdb_memory();

-- name: rows-held
-- The rows of the data tables (counted as lost when the file holding them is deleted under its owner).
SELECT (SELECT count(*) FROM requests) + (SELECT count(*) FROM queries) + (SELECT count(*) FROM points)
       + (SELECT count(*) FROM process_samples);

-- name: segment-minutes
-- The minutes the rows of segment files fall in (epoch seconds), for the publish job: their time (epoch seconds,
-- DOUBLE) made a timestamp as the inserts do, so that a row on a minute's edge falls in the same minute.
SELECT DISTINCT epoch(date_trunc('minute', make_timestamp(CAST(round(ts * 1000000) AS BIGINT))))
FROM read_parquet($files);
