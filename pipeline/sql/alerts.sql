-- Alert rules: the state of every rule and label set, every transition, silences, and the set-based
-- aggregation the sweep and the back-test run. Values are always parameters; the rule and window sets arrive
-- as registered Arrow tables (__alert_combos, __alert_rules, __alert_backtest_rules), never as SQL text.

-- name: migration-3
-- Alert state (one row per rule and label set; survives a restart), alert events (every transition), silences.
CREATE TABLE IF NOT EXISTS alert_state (
    rule              VARCHAR   NOT NULL,
    labels            VARCHAR   NOT NULL,  -- canonical JSON object of the rule's `by` labels, keys sorted
    metric            VARCHAR   NOT NULL,
    level             VARCHAR   NOT NULL,
    state             VARCHAR   NOT NULL,  -- inactive, pending, firing, resolved or nodata
    value             DOUBLE,              -- the aggregate at the last change of this row (NULL: no data)
    threshold         DOUBLE    NOT NULL,
    since             TIMESTAMP NOT NULL,  -- when the current state was entered
    pending_since     TIMESTAMP,           -- when the condition started holding (kept across restarts)
    last_true_at      TIMESTAMP,           -- the last evaluation where the condition held (keep_firing_seconds)
    evaluated_at      TIMESTAMP NOT NULL,
    last_notified_at  TIMESTAMP,           -- the last firing notification delivered (repeat_interval_seconds)
    notified          BOOLEAN   NOT NULL,  -- this firing episode reached the notifiers, so its end will too
    PRIMARY KEY (rule, labels)
);
CREATE TABLE IF NOT EXISTS alert_events (
    ts          TIMESTAMP NOT NULL,
    rule        VARCHAR   NOT NULL,
    labels      VARCHAR   NOT NULL,
    metric      VARCHAR   NOT NULL,
    level       VARCHAR   NOT NULL,
    from_state  VARCHAR   NOT NULL,
    to_state    VARCHAR   NOT NULL,
    value       DOUBLE,                    -- NULL on a transition to nodata
    threshold   DOUBLE    NOT NULL,
    message     VARCHAR   NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    silence_id  VARCHAR   PRIMARY KEY,
    matchers    VARCHAR   NOT NULL,        -- JSON object: rule, metric, level or label key -> required value
    starts_at   TIMESTAMP NOT NULL,
    ends_at     TIMESTAMP NOT NULL,
    comment     VARCHAR   NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

-- name: alert-state-load
-- Every stored alert state, times as epoch seconds.
SELECT rule, labels, metric, level, state, value, threshold, epoch(since), epoch(pending_since),
       epoch(last_true_at), epoch(evaluated_at), epoch(last_notified_at), notified
FROM alert_state
ORDER BY rule, labels;

-- name: alert-state-delete
-- Forgets the states listed in the registered table __alert_forget (rule, labels).
DELETE FROM alert_state USING __alert_forget f
WHERE alert_state.rule = f.rule AND alert_state.labels = f.labels;

-- name: alert-state-upsert
-- Writes the changed states of the registered table __alert_changed (times as epoch microseconds).
INSERT OR REPLACE INTO alert_state
SELECT rule, labels, metric, level, state, value, threshold, make_timestamp(since_us),
       make_timestamp(pending_since_us), make_timestamp(last_true_at_us), make_timestamp(evaluated_at_us),
       make_timestamp(last_notified_at_us), notified
FROM __alert_changed;

-- name: alert-events-insert
-- Appends the transitions of the registered table __alert_new_events (times as epoch microseconds).
INSERT INTO alert_events
SELECT make_timestamp(ts_us), rule, labels, metric, level, from_state, to_state, value, threshold, message
FROM __alert_new_events;

-- name: alert-events-since
-- Transitions at or after $since, oldest first (a rule of NULL means every rule).
SELECT epoch(ts), rule, labels, metric, level, from_state, to_state, value, threshold, message
FROM alert_events
WHERE ts >= make_timestamp($since_us) AND ($rule IS NULL OR rule = $rule)
ORDER BY ts, rule, labels;

-- name: silence-insert
-- Records a silence.
INSERT INTO silences VALUES ($silence_id, $matchers, make_timestamp($starts_us), make_timestamp($ends_us),
                             $comment, make_timestamp($created_us));

-- name: silence-expire
-- Ends a silence now (kept, so the history shows it); returns the ids it ended.
UPDATE silences SET ends_at = make_timestamp($now_us)
WHERE silence_id = $silence_id AND ends_at > make_timestamp($now_us)
RETURNING silence_id;

-- name: silences-active
-- Silences in force at $now.
SELECT silence_id, matchers, epoch(starts_at), epoch(ends_at), comment, epoch(created_at)
FROM silences
WHERE starts_at <= make_timestamp($now_us) AND ends_at > make_timestamp($now_us)
ORDER BY starts_at, silence_id;

-- name: sweep-aggregates
-- Every rule's aggregate per label set, in one statement. __alert_combos holds one row per distinct
-- (metric, window, label positions); each source's rows in its longest window are joined to its combos (the
-- positions a combo keeps become l1..l8, the rest NULL), grouped once per combo and label set, and joined to
-- __alert_rules, which picks its aggregation and filters on its `where` values. Windows are (now - w, now].
WITH combos AS (
    SELECT *, make_timestamp(start_us) AS start_ts FROM __alert_combos
),
series_keys AS (
    -- custom series: label values are read once per series, by JSON pointer (any key is safe)
    SELECT c.combo, c.start_ts, c.need_q, s.series_id, s.kind,
           json_extract_string(s.labels, '/' || replace(replace(c.n1, '~', '~0'), '/', '~1')) AS l1,
           json_extract_string(s.labels, '/' || replace(replace(c.n2, '~', '~0'), '/', '~1')) AS l2,
           json_extract_string(s.labels, '/' || replace(replace(c.n3, '~', '~0'), '/', '~1')) AS l3,
           json_extract_string(s.labels, '/' || replace(replace(c.n4, '~', '~0'), '/', '~1')) AS l4,
           json_extract_string(s.labels, '/' || replace(replace(c.n5, '~', '~0'), '/', '~1')) AS l5,
           json_extract_string(s.labels, '/' || replace(replace(c.n6, '~', '~0'), '/', '~1')) AS l6,
           json_extract_string(s.labels, '/' || replace(replace(c.n7, '~', '~0'), '/', '~1')) AS l7,
           json_extract_string(s.labels, '/' || replace(replace(c.n8, '~', '~0'), '/', '~1')) AS l8
    FROM series s JOIN combos c ON c.source = 'points' AND s.name = c.metric
),
keyed AS (
    SELECT c.combo, c.need_q,
           CASE WHEN c.k1 THEN r.route END AS l1,
           CASE WHEN c.k2 THEN r.method END AS l2,
           CASE WHEN c.k3 THEN r.status::VARCHAR END AS l3,
           CASE WHEN c.k4 THEN r.pid::VARCHAR END AS l4,
           CASE WHEN c.k5 THEN r.host END AS l5,
           NULL::VARCHAR AS l6, NULL::VARCHAR AS l7, NULL::VARCHAR AS l8,
           CASE WHEN c.metric = 'error_rate' THEN (r.status >= 500)::DOUBLE ELSE r.duration_ms END AS value,
           CASE WHEN c.metric = 'error_rate' THEN (r.status >= 500)::DOUBLE ELSE 1.0 END AS weight
    FROM requests r JOIN combos c ON c.source = 'requests' AND r.ts > c.start_ts
    WHERE r.ts > make_timestamp($requests_since_us) AND r.ts <= make_timestamp($now_us)
    UNION ALL
    SELECT c.combo, c.need_q,
           CASE WHEN c.k1 THEN q.fingerprint END,
           CASE WHEN c.k2 THEN q.name END,
           CASE WHEN c.k3 THEN q.route END,
           CASE WHEN c.k4 THEN q.success::VARCHAR END,
           CASE WHEN c.k5 THEN q.pid::VARCHAR END,
           CASE WHEN c.k6 THEN q.host END,
           NULL, NULL,
           q.duration_ms, 1.0
    FROM queries q JOIN combos c ON c.source = 'queries' AND q.ts > c.start_ts
    WHERE q.ts > make_timestamp($queries_since_us) AND q.ts <= make_timestamp($now_us)
    UNION ALL
    SELECT c.combo, c.need_q,
           CASE WHEN c.k1 THEN m.pid::VARCHAR END,
           CASE WHEN c.k2 THEN m.host END,
           NULL, NULL, NULL, NULL, NULL, NULL,
           m.rss_bytes::DOUBLE, 1.0
    FROM process_samples m JOIN combos c ON c.source = 'process_samples' AND m.ts > c.start_ts
    WHERE m.ts > make_timestamp($samples_since_us) AND m.ts <= make_timestamp($now_us)
    UNION ALL
    SELECT k.combo, k.need_q, k.l1, k.l2, k.l3, k.l4, k.l5, k.l6, k.l7, k.l8,
           p.value, CASE WHEN k.kind = 'counter' THEN p.value ELSE 1.0 END
    FROM points p JOIN series_keys k ON p.series_id = k.series_id AND p.ts > k.start_ts
    WHERE p.ts > make_timestamp($points_since_us) AND p.ts <= make_timestamp($now_us)
),
aggregated AS (
    SELECT combo, l1, l2, l3, l4, l5, l6, l7, l8,
           -- exact nearest-rank percentiles, computed only for the combos a percentile rule needs
           quantile_disc(value, [0.5, 0.95, 0.99]) FILTER (WHERE need_q) AS q,
           avg(value) AS avg_value, max(value) AS max_value, min(value) AS min_value, sum(weight) AS events
    FROM keyed
    GROUP BY combo, l1, l2, l3, l4, l5, l6, l7, l8
)
SELECT r.rule_index, a.l1, a.l2, a.l3, a.l4, a.l5, a.l6, a.l7, a.l8,
       CASE r.aggregation
           WHEN 'p50' THEN a.q[1] WHEN 'p95' THEN a.q[2] WHEN 'p99' THEN a.q[3]
           WHEN 'avg' THEN a.avg_value WHEN 'max' THEN a.max_value WHEN 'min' THEN a.min_value
           WHEN 'count' THEN a.events WHEN 'rate' THEN a.events / r.window_seconds
       END AS value
FROM aggregated a JOIN __alert_rules r ON a.combo = r.combo
WHERE (r.w1 IS NULL OR a.l1 = r.w1) AND (r.w2 IS NULL OR a.l2 = r.w2) AND (r.w3 IS NULL OR a.l3 = r.w3)
  AND (r.w4 IS NULL OR a.l4 = r.w4) AND (r.w5 IS NULL OR a.l5 = r.w5) AND (r.w6 IS NULL OR a.l6 = r.w6)
  AND (r.w7 IS NULL OR a.l7 = r.w7) AND (r.w8 IS NULL OR a.l8 = r.w8);
