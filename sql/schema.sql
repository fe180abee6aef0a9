-- The duckpulse schema, as numbered migrations. Each block runs once, in order, in one transaction with the
-- row that records it in schema_version. Never edit a released block: add the next one.
-- Time is UTC TIMESTAMP; rows are appended in time order so DuckDB's zone maps prune time windows.

-- name: migration-1
-- The raw tables written by the flusher and the ingest job, and the ingest ledger.
CREATE TABLE IF NOT EXISTS requests (
    ts           TIMESTAMP NOT NULL,
    route        VARCHAR   NOT NULL,  -- the route template (/users/<id>), or <unmatched>
    method       VARCHAR   NOT NULL,
    status       SMALLINT  NOT NULL,
    duration_ms  DOUBLE    NOT NULL,
    request_id   BIGINT,              -- unique within (host, pid); joins queries to their request
    query_count  INTEGER   NOT NULL,  -- how many queries the request ran
    pid          INTEGER   NOT NULL,
    host         VARCHAR   NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    ts              TIMESTAMP NOT NULL,
    fingerprint     VARCHAR   NOT NULL,  -- the statement with every literal replaced by ?
    fingerprint_id  BIGINT    NOT NULL,  -- stable 64-bit hash of fingerprint
    name            VARCHAR,             -- the name given to time_query(), if any
    duration_ms     DOUBLE    NOT NULL,
    success         BOOLEAN   NOT NULL,
    request_id      BIGINT,
    route           VARCHAR,
    pid             INTEGER   NOT NULL,
    host            VARCHAR   NOT NULL
);
CREATE TABLE IF NOT EXISTS process_samples (
    ts              TIMESTAMP NOT NULL,
    pid             INTEGER   NOT NULL,
    host            VARCHAR   NOT NULL,
    rss_bytes       BIGINT    NOT NULL,
    vms_bytes       BIGINT    NOT NULL,
    cpu_percent     DOUBLE    NOT NULL,
    num_threads     INTEGER   NOT NULL,
    num_fds         INTEGER,             -- NULL where the platform has no file descriptors
    gc_collections  BIGINT    NOT NULL,  -- collections of all generations since start
    uss_bytes       BIGINT               -- only when memory_full_info was asked for
);
CREATE TABLE IF NOT EXISTS series (
    series_id  BIGINT  PRIMARY KEY,  -- stable hash of (name, kind, labels): the same in every process
    name       VARCHAR NOT NULL,
    kind       VARCHAR NOT NULL,     -- counter, gauge or histogram
    labels     VARCHAR NOT NULL      -- canonical JSON object, keys sorted
);
CREATE TABLE IF NOT EXISTS points (
    ts         TIMESTAMP NOT NULL,
    series_id  BIGINT    NOT NULL,
    value      DOUBLE    NOT NULL,   -- counters: the increment; gauges: the value set; histograms: the observation
    pid        INTEGER   NOT NULL,
    host       VARCHAR   NOT NULL
);
CREATE TABLE IF NOT EXISTS ingested_segments (
    segment      VARCHAR   PRIMARY KEY,  -- the segment's file name, unique per producer write
    rows         BIGINT    NOT NULL,
    ingested_at  TIMESTAMP NOT NULL
);

-- name: migration-4
-- CPU figures that cannot be right (a process's first sample, more than 100% per core) are stored as NULL.
ALTER TABLE process_samples ALTER COLUMN cpu_percent DROP NOT NULL;
