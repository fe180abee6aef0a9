-- Rollups: per-minute and per-hour statistics and log-bucket histograms (pipeline/sketch.py), their watermarks,
-- the archive ledger, and the percentile queries that read them. Values are always parameters; the only text
-- Python puts in is allow-listed, quoted column names at the /* by */, /* partition */ and /* where */ markers.
--
-- Bins live beside the statistics, one row per (bucket, key, bin), rather than as a LIST or MAP column in the
-- rollup row: merging 30 days of hourly bins for 50M requests measured 94 ms this way against 111 ms for
-- UNNESTed lists (benchmarks/bench_percentiles.py), and a plain column needs no UNNEST to filter or merge.

-- name: migration-2
-- Rollup tiers (1 minute, 1 hour) with their bins, the rollup watermarks, the archive ledger, the sketch macros.
CREATE TABLE IF NOT EXISTS rollups_1m (
    bucket_start  TIMESTAMP NOT NULL,
    source        VARCHAR   NOT NULL,  -- requests, queries or histogram
    route         VARCHAR,             -- requests: the route template
    method        VARCHAR,             -- requests
    status_class  VARCHAR,             -- requests: 2xx, 3xx, 4xx, 5xx
    fingerprint   VARCHAR,             -- queries
    series_id     BIGINT,              -- histograms: the custom series
    count         BIGINT    NOT NULL,
    sum           DOUBLE    NOT NULL,
    min           DOUBLE    NOT NULL,
    max           DOUBLE    NOT NULL,
    errors        BIGINT    NOT NULL   -- requests: status >= 500; queries: not success; histograms: 0
);
CREATE TABLE IF NOT EXISTS rollups_1h (  -- the same columns, per hour, merged from rollups_1m
    bucket_start  TIMESTAMP NOT NULL,
    source        VARCHAR   NOT NULL,
    route         VARCHAR,
    method        VARCHAR,
    status_class  VARCHAR,
    fingerprint   VARCHAR,
    series_id     BIGINT,
    count         BIGINT    NOT NULL,
    sum           DOUBLE    NOT NULL,
    min           DOUBLE    NOT NULL,
    max           DOUBLE    NOT NULL,
    errors        BIGINT    NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_bins_1m (
    bucket_start  TIMESTAMP NOT NULL,
    source        VARCHAR   NOT NULL,
    route         VARCHAR,
    method        VARCHAR,
    status_class  VARCHAR,
    fingerprint   VARCHAR,
    series_id     BIGINT,
    bin           INTEGER   NOT NULL,  -- duckpulse_sketch_bin(value)
    count         BIGINT    NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_bins_1h (  -- per hour, merged from rollup_bins_1m
    bucket_start  TIMESTAMP NOT NULL,
    source        VARCHAR   NOT NULL,
    route         VARCHAR,
    method        VARCHAR,
    status_class  VARCHAR,
    fingerprint   VARCHAR,
    series_id     BIGINT,
    bin           INTEGER   NOT NULL,
    count         BIGINT    NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_state (
    tier          VARCHAR   PRIMARY KEY,  -- 1m or 1h
    rolled_from   TIMESTAMP NOT NULL,     -- the first bucket the tier holds (advanced by retention)
    rolled_until  TIMESTAMP NOT NULL,     -- every bucket before this is rolled up (the watermark)
    updated_at    TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS archive_state (
    table_name      VARCHAR   PRIMARY KEY,
    archived_until  TIMESTAMP NOT NULL,   -- every hour before this is in the Parquet history
    updated_at      TIMESTAMP NOT NULL
);
CREATE OR REPLACE MACRO duckpulse_sketch_bin(v) AS
    CASE WHEN isfinite(v) AND v > 0 THEN CAST(ceil(ln(v) / ln(1.02)) AS INTEGER)
         WHEN v > 0 OR isnan(v) THEN 40000
         ELSE -40000 END;
CREATE OR REPLACE MACRO duckpulse_sketch_value(b) AS
    CASE WHEN b <= -40000 THEN 0.0
         WHEN b >= 40000 THEN CAST('inf' AS DOUBLE)
         ELSE 2.0 * pow(1.02, b) / (1.02 + 1.0) END;

-- name: rollup-state
-- The watermarks of the rollup tiers, as epoch seconds.
SELECT tier, epoch(rolled_from), epoch(rolled_until) FROM rollup_state;

-- name: rollup-state-extend
-- Widens a tier's range to cover [$rolled_from, $rolled_until), never narrowing it (runs may overlap; the wall
-- clock may have gone back).
INSERT INTO rollup_state VALUES ($tier, $rolled_from, $rolled_until, $updated_at)
ON CONFLICT (tier) DO UPDATE SET rolled_from = least(rolled_from, excluded.rolled_from),
                                 rolled_until = greatest(rolled_until, excluded.rolled_until),
                                 updated_at = excluded.updated_at;

-- name: rollup-tables-present
-- Whether this database has the rollup tables (a file from before migration-2 has not).
SELECT count(*) FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = 'rollup_state';

-- name: rollup-raw-earliest
-- The earliest raw row the rollups read, as epoch seconds (before 1970: impossible rows, never rolled): where a
-- first run starts.
SELECT epoch(min(ts)) FROM (
    SELECT min(ts) AS ts FROM requests WHERE ts >= $earliest
    UNION ALL SELECT min(ts) FROM queries WHERE ts >= $earliest
    UNION ALL SELECT min(ts) FROM points WHERE ts >= $earliest
);

-- name: rollup-hours-with-rows
-- The hours of [$start, $end) that hold raw rows the rollups read, as epoch seconds: a run rolls those and skips
-- the rest (zone maps let DuckDB skip the row groups outside the range).
SELECT DISTINCT epoch(date_trunc('hour', ts)) AS hour FROM (
    SELECT ts FROM requests WHERE ts >= $start AND ts < $end
    UNION ALL SELECT ts FROM queries WHERE ts >= $start AND ts < $end
    UNION ALL SELECT ts FROM points
    WHERE ts >= $start AND ts < $end AND series_id IN (SELECT series_id FROM series WHERE kind = 'histogram')
)
ORDER BY hour;

-- name: rollup-1m-delete
-- Forgets the minute statistics of a range about to be rolled again.
DELETE FROM rollups_1m WHERE bucket_start >= $start AND bucket_start < $end;

-- name: rollup-1m-delete-bins
-- Forgets the minute bins of a range about to be rolled again.
DELETE FROM rollup_bins_1m WHERE bucket_start >= $start AND bucket_start < $end;

-- name: rollup-1m-requests
-- Per-minute request statistics by route, method and status class.
INSERT INTO rollups_1m
SELECT date_trunc('minute', ts), 'requests', route, method, (status // 100)::VARCHAR || 'xx', NULL, NULL,
       count(*), sum(duration_ms), min(duration_ms), max(duration_ms), count(*) FILTER (WHERE status >= 500)
FROM requests
WHERE ts >= $start AND ts < $end
GROUP BY ALL
ORDER BY 1;

-- name: rollup-1m-requests-bins
-- Per-minute request-duration bins by route, method and status class.
INSERT INTO rollup_bins_1m
SELECT date_trunc('minute', ts), 'requests', route, method, (status // 100)::VARCHAR || 'xx', NULL, NULL,
       duckpulse_sketch_bin(duration_ms), count(*)
FROM requests
WHERE ts >= $start AND ts < $end
GROUP BY ALL
ORDER BY 1;

-- name: rollup-1m-queries
-- Per-minute query statistics by fingerprint.
INSERT INTO rollups_1m
SELECT date_trunc('minute', ts), 'queries', NULL, NULL, NULL, fingerprint, NULL,
       count(*), sum(duration_ms), min(duration_ms), max(duration_ms), count(*) FILTER (WHERE NOT success)
FROM queries
WHERE ts >= $start AND ts < $end
GROUP BY ALL
ORDER BY 1;

-- name: rollup-1m-queries-bins
-- Per-minute query-duration bins by fingerprint.
INSERT INTO rollup_bins_1m
SELECT date_trunc('minute', ts), 'queries', NULL, NULL, NULL, fingerprint, NULL,
       duckpulse_sketch_bin(duration_ms), count(*)
FROM queries
WHERE ts >= $start AND ts < $end
GROUP BY ALL
ORDER BY 1;

-- name: rollup-1m-histograms
-- Per-minute statistics of custom histograms by series.
INSERT INTO rollups_1m
SELECT date_trunc('minute', p.ts), 'histogram', NULL, NULL, NULL, NULL, p.series_id,
       count(*), sum(p.value), min(p.value), max(p.value), 0
FROM points p
WHERE p.ts >= $start AND p.ts < $end
  AND p.series_id IN (SELECT series_id FROM series WHERE kind = 'histogram')
GROUP BY ALL
ORDER BY 1;

-- name: rollup-1m-histograms-bins
-- Per-minute bins of custom histograms by series.
INSERT INTO rollup_bins_1m
SELECT date_trunc('minute', p.ts), 'histogram', NULL, NULL, NULL, NULL, p.series_id,
       duckpulse_sketch_bin(p.value), count(*)
FROM points p
WHERE p.ts >= $start AND p.ts < $end
  AND p.series_id IN (SELECT series_id FROM series WHERE kind = 'histogram')
GROUP BY ALL
ORDER BY 1;

-- name: rollup-1h-delete
-- Forgets the hour statistics of a range about to be rebuilt.
DELETE FROM rollups_1h WHERE bucket_start >= $start AND bucket_start < $end;

-- name: rollup-1h-delete-bins
-- Forgets the hour bins of a range about to be rebuilt.
DELETE FROM rollup_bins_1h WHERE bucket_start >= $start AND bucket_start < $end;

-- name: rollup-1h-build
-- Hour statistics merged from the minute statistics.
INSERT INTO rollups_1h
SELECT date_trunc('hour', bucket_start), source, route, method, status_class, fingerprint, series_id,
       sum(count), sum(sum), min(min), max(max), sum(errors)
FROM rollups_1m
WHERE bucket_start >= $start AND bucket_start < $end
GROUP BY ALL
ORDER BY 1;

-- name: rollup-1h-build-bins
-- Hour bins merged from the minute bins (sketches add up bin by bin).
INSERT INTO rollup_bins_1h
SELECT date_trunc('hour', bucket_start), source, route, method, status_class, fingerprint, series_id,
       bin, sum(count)
FROM rollup_bins_1m
WHERE bucket_start >= $start AND bucket_start < $end
GROUP BY ALL
ORDER BY 1;

-- name: rollup-late-minute
-- The first minute of a range whose raw row count differs from its rollup's (epoch seconds): rows that arrived
-- after it rolled.
WITH raw AS (
    SELECT date_trunc('minute', ts) AS minute, count(*) AS n
    FROM requests WHERE ts >= $start AND ts < $end GROUP BY 1
    UNION ALL
    SELECT date_trunc('minute', ts), count(*)
    FROM queries WHERE ts >= $start AND ts < $end GROUP BY 1
    UNION ALL
    SELECT date_trunc('minute', ts), count(*)
    FROM points
    WHERE ts >= $start AND ts < $end AND series_id IN (SELECT series_id FROM series WHERE kind = 'histogram')
    GROUP BY 1
),
raw_minutes AS (SELECT minute, sum(n) AS n FROM raw GROUP BY 1),
rolled AS (
    SELECT bucket_start AS minute, sum(count) AS n
    FROM rollups_1m WHERE bucket_start >= $start AND bucket_start < $end GROUP BY 1
)
SELECT epoch(min(minute))
FROM raw_minutes FULL OUTER JOIN rolled USING (minute)
WHERE raw_minutes.n IS DISTINCT FROM rolled.n;
