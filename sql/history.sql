-- The notebook connection over the Parquet history (pipeline/history.py). Paths in the views are relative:
-- pipeline.history.connect() points DuckDB's file_search_path at the history directory, so that no path is
-- ever spliced into SQL text. Values are parameters.

-- name: history-search-path
-- Resolves the views' relative paths against the history directory (then the working directory).
SET GLOBAL file_search_path = $paths;

-- name: history-view-requests
-- Raw requests, one hive partition per hour.
CREATE OR REPLACE VIEW requests AS
SELECT * FROM read_parquet('requests/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-queries
-- Raw queries, one hive partition per hour.
CREATE OR REPLACE VIEW queries AS
SELECT * FROM read_parquet('queries/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-process-samples
-- Process samples, one hive partition per hour.
CREATE OR REPLACE VIEW process_samples AS
SELECT * FROM read_parquet('process_samples/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-points
-- Custom-metric points, one hive partition per hour.
CREATE OR REPLACE VIEW points AS
SELECT * FROM read_parquet('points/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-exceptions
-- Unhandled exceptions (their signatures), one hive partition per hour.
CREATE OR REPLACE VIEW exceptions AS
SELECT * FROM read_parquet('exceptions/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-rollups-1m
-- Per-minute rollup statistics, one hive partition per hour.
CREATE OR REPLACE VIEW rollups_1m AS
SELECT * FROM read_parquet('rollups_1m/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-rollup-bins-1m
-- Per-minute log-bucket bins, one hive partition per hour.
CREATE OR REPLACE VIEW rollup_bins_1m AS
SELECT * FROM read_parquet('rollup_bins_1m/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-rollups-1h
-- Per-hour rollup statistics, one hive partition per hour.
CREATE OR REPLACE VIEW rollups_1h AS
SELECT * FROM read_parquet('rollups_1h/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-rollup-bins-1h
-- Per-hour log-bucket bins, one hive partition per hour.
CREATE OR REPLACE VIEW rollup_bins_1h AS
SELECT * FROM read_parquet('rollup_bins_1h/*/*/*.parquet', hive_partitioning = true,
                           hive_types = {'date': DATE, 'hour': INTEGER});

-- name: history-view-series
-- The custom series.
CREATE OR REPLACE VIEW series AS SELECT * FROM read_parquet('series/*.parquet');

-- name: history-view-archive-and-recent
-- A table over the archive (below the owner's published watermark) and the minutes it published (at or above
-- it): the watermark is read once per query, so a run of the archive and publish jobs meanwhile never makes a
-- row count twice or go missing. /* table */ and the rest come from a fixed allow-list (pipeline/history.py).
CREATE OR REPLACE VIEW /* table */ AS
WITH watermark AS MATERIALIZED (
    SELECT coalesce(max(recent_from) FILTER (WHERE table_name = /* table-name */), 'infinity'::TIMESTAMP) AS since
    FROM read_parquet('_recent/watermark.parquet')
)
SELECT archived.* FROM read_parquet(/* archive-files */, hive_partitioning = true,
                                    hive_types = {'date': DATE, 'hour': INTEGER}) AS archived, watermark
WHERE archived./* column */ < watermark.since
UNION ALL BY NAME
SELECT recent.*, CAST(recent./* column */ AS DATE) AS date, CAST(hour(recent./* column */) AS INTEGER) AS hour
FROM read_parquet(/* recent-files */, union_by_name = true) AS recent, watermark
WHERE recent./* column */ >= watermark.since;

-- name: history-view-recent
-- A table nothing of which is archived yet: every minute the owner published (with the archive's date and hour).
CREATE OR REPLACE VIEW /* table */ AS
SELECT recent.*, CAST(recent./* column */ AS DATE) AS date, CAST(hour(recent./* column */) AS INTEGER) AS hour
FROM read_parquet(/* recent-files */, union_by_name = true) AS recent;

-- name: history-view-whole
-- A small table the owner publishes whole (series, alert_state, alert_events, silences).
CREATE OR REPLACE VIEW /* table */ AS SELECT * FROM read_parquet(/* recent-files */);

-- name: history-sketch-macros
-- The log-bucket mapping of pipeline/sketch.py (the same macros as migration-2 creates in the database).
CREATE OR REPLACE MACRO duckpulse_sketch_bin(v) AS
    CASE WHEN isfinite(v) AND v > 0 THEN CAST(ceil(ln(v) / ln(1.02)) AS INTEGER)
         WHEN v > 0 OR isnan(v) THEN 40000
         ELSE -40000 END;
CREATE OR REPLACE MACRO duckpulse_sketch_value(b) AS
    CASE WHEN b <= -40000 THEN 0.0
         WHEN b >= 40000 THEN CAST('inf' AS DOUBLE)
         ELSE 2.0 * pow(1.02, b) / (1.02 + 1.0) END;

-- name: history-attach-live
-- The live database, read-only (only when no owner holds it and none ever published).
ATTACH $path AS live (READ_ONLY);

-- name: history-own-views
-- The views of the connection's own catalog: the archived tables (and, in a notebook, the empty stand-ins).
SELECT view_name FROM duckdb_views() WHERE database_name = 'memory' AND NOT internal;

-- name: history-databases
-- The attached databases (`live` when the live file is).
SELECT database_name FROM duckdb_databases();

-- name: notebook-attach-empty
-- An in-memory catalog for an empty copy of every table (pipeline/notebook.py), for tables no source provides.
ATTACH ':memory:' AS duckpulse_empty;

-- name: notebook-empty-tables
-- The tables of that empty copy.
SELECT table_name FROM duckdb_tables() WHERE database_name = 'duckpulse_empty';

-- name: notebook-extent
-- Rows of each raw table and the time range they cover together (NULL without any row), in the current catalog.
SELECT (SELECT count(*) FROM requests)        AS requests,
       (SELECT count(*) FROM queries)         AS queries,
       (SELECT count(*) FROM process_samples) AS process_samples,
       least((SELECT min(ts) FROM requests), (SELECT min(ts) FROM queries),
             (SELECT min(ts) FROM process_samples))    AS since,
       greatest((SELECT max(ts) FROM requests), (SELECT max(ts) FROM queries),
                (SELECT max(ts) FROM process_samples)) AS until;

-- name: history-published-at
-- When the owner last published (epoch seconds), from its watermark file.
SELECT epoch(max(published_at)) FROM read_parquet($path);
