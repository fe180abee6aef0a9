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

-- name: silences-in-force-count
-- How many silences are in force at $now (creating one checks the cap with it).
SELECT count(*) FROM silences WHERE starts_at <= make_timestamp($now_us) AND ends_at > make_timestamp($now_us);

-- name: silences-prune-ended
-- Deletes ended silences beyond the newest $kept.
DELETE FROM silences WHERE silence_id IN (
    SELECT silence_id FROM silences WHERE ends_at <= make_timestamp($now_us)
    ORDER BY ends_at DESC, silence_id OFFSET $kept);

-- name: silence-expire
-- Ends a silence now (kept, so the history shows it); returns the ids it ended.
UPDATE silences SET ends_at = make_timestamp($now_us)
WHERE silence_id = $silence_id AND ends_at > make_timestamp($now_us)
RETURNING silence_id;

-- name: silences-active
-- Silences in force at $now (only the one $silence_id names, when it is not NULL).
SELECT silence_id, matchers, epoch(starts_at), epoch(ends_at), comment, epoch(created_at)
FROM silences
WHERE starts_at <= make_timestamp($now_us) AND ends_at > make_timestamp($now_us)
  AND ($silence_id IS NULL OR silence_id = $silence_id)
ORDER BY starts_at, silence_id;

-- name: sweep-aggregates
-- Every rule's aggregate per label set, in one statement. __alert_combos holds one row per distinct
-- (source table or custom series, window, label positions): request_duration, error_rate and request_rate
-- share the requests' combos, which carry the duration as value and the 5xx flag as errors. Each source's rows
-- in its longest window are joined to its combos (the label positions a combo keeps become l1..l8, the rest
-- NULL), grouped once per combo and label set on the table's own column types (cast to text only afterwards),
-- and joined to __alert_rules, which picks its aggregation and filters on its `where` values and min_count
-- (a label set with fewer rows in the window has none, for that rule).
-- Windows are (now - w, now]; percentiles are exact (nearest rank) and computed only where a rule needs one.
WITH combos AS (
    SELECT *, make_timestamp($now_us - CAST(window_seconds * 1000000 AS BIGINT)) AS start_ts FROM __alert_combos
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
aggregated AS (
    SELECT combo, l1, l2, l3::VARCHAR AS l3, l4::VARCHAR AS l4, l5,
           NULL::VARCHAR AS l6, NULL::VARCHAR AS l7, NULL::VARCHAR AS l8,
           quantile_disc(value, [0.5, 0.95, 0.99]) FILTER (WHERE need_q) AS q,
           avg(value) AS avg_value, max(value) AS max_value, min(value) AS min_value,
           count(*)::DOUBLE AS events, sum(errors) AS errors
    FROM (SELECT c.combo, c.need_q,
                 CASE WHEN c.k1 THEN r.route END AS l1, CASE WHEN c.k2 THEN r.method END AS l2,
                 CASE WHEN c.k3 THEN r.status END AS l3, CASE WHEN c.k4 THEN r.pid END AS l4,
                 CASE WHEN c.k5 THEN r.host END AS l5,
                 r.duration_ms AS value, (r.status >= 500)::DOUBLE AS errors
          FROM requests r JOIN combos c ON c.source = 'requests' AND r.ts > c.start_ts
          WHERE r.ts > make_timestamp($requests_since_us) AND r.ts <= make_timestamp($now_us))
    GROUP BY combo, l1, l2, l3, l4, l5
    UNION ALL
    SELECT combo, l1, l2, l3, l4::VARCHAR, l5::VARCHAR, l6, NULL, NULL,
           quantile_disc(value, [0.5, 0.95, 0.99]) FILTER (WHERE need_q),
           avg(value), max(value), min(value), count(*)::DOUBLE, 0.0
    FROM (SELECT c.combo, c.need_q,
                 CASE WHEN c.k1 THEN q.fingerprint END AS l1, CASE WHEN c.k2 THEN q.name END AS l2,
                 CASE WHEN c.k3 THEN q.route END AS l3, CASE WHEN c.k4 THEN q.success END AS l4,
                 CASE WHEN c.k5 THEN q.pid END AS l5, CASE WHEN c.k6 THEN q.host END AS l6,
                 q.duration_ms AS value
          FROM queries q JOIN combos c ON c.source = 'queries' AND q.ts > c.start_ts
          WHERE q.ts > make_timestamp($queries_since_us) AND q.ts <= make_timestamp($now_us))
    GROUP BY combo, l1, l2, l3, l4, l5, l6
    UNION ALL
    SELECT combo, l1::VARCHAR, l2, NULL, NULL, NULL, NULL, NULL, NULL,
           quantile_disc(value, [0.5, 0.95, 0.99]) FILTER (WHERE need_q),
           avg(value), max(value), min(value), count(*)::DOUBLE, 0.0
    FROM (SELECT c.combo, c.need_q, CASE WHEN c.k1 THEN m.pid END AS l1, CASE WHEN c.k2 THEN m.host END AS l2,
                 m.rss_bytes::DOUBLE AS value
          FROM process_samples m JOIN combos c ON c.source = 'process_samples' AND m.ts > c.start_ts
          WHERE m.ts > make_timestamp($samples_since_us) AND m.ts <= make_timestamp($now_us))
    GROUP BY combo, l1, l2
    UNION ALL
    -- counters store increments: their count is the sum of the increments
    SELECT k.combo, k.l1, k.l2, k.l3, k.l4, k.l5, k.l6, k.l7, k.l8,
           quantile_disc(p.value, [0.5, 0.95, 0.99]) FILTER (WHERE k.need_q),
           avg(p.value), max(p.value), min(p.value),
           sum(CASE WHEN k.kind = 'counter' THEN p.value ELSE 1.0 END), 0.0
    FROM points p JOIN series_keys k ON p.series_id = k.series_id AND p.ts > k.start_ts
    WHERE p.ts > make_timestamp($points_since_us) AND p.ts <= make_timestamp($now_us)
    GROUP BY k.combo, k.l1, k.l2, k.l3, k.l4, k.l5, k.l6, k.l7, k.l8
)
SELECT r.rule_index, a.l1, a.l2, a.l3, a.l4, a.l5, a.l6, a.l7, a.l8,
       CASE WHEN r.metric = 'error_rate' THEN
           CASE r.aggregation WHEN 'avg' THEN a.errors / a.events WHEN 'count' THEN a.errors
                              WHEN 'rate' THEN a.errors / r.window_seconds END
       ELSE
           CASE r.aggregation
               WHEN 'p50' THEN a.q[1] WHEN 'p95' THEN a.q[2] WHEN 'p99' THEN a.q[3]
               WHEN 'avg' THEN a.avg_value WHEN 'max' THEN a.max_value WHEN 'min' THEN a.min_value
               WHEN 'count' THEN a.events WHEN 'rate' THEN a.events / r.window_seconds
           END
       END AS value
FROM aggregated a JOIN __alert_rules r ON a.combo = r.combo
WHERE (r.w1 IS NULL OR a.l1 = r.w1) AND (r.w2 IS NULL OR a.l2 = r.w2) AND (r.w3 IS NULL OR a.l3 = r.w3)
  AND (r.w4 IS NULL OR a.l4 = r.w4) AND (r.w5 IS NULL OR a.l5 = r.w5) AND (r.w6 IS NULL OR a.l6 = r.w6)
  AND (r.w7 IS NULL OR a.l7 = r.w7) AND (r.w8 IS NULL OR a.l8 = r.w8)
  AND a.events >= r.min_count;

-- name: backtest-runs
-- Replays rules over stored history: a combo's evaluation times are t_k = $start + k * step (k = 0..steps;
-- its step and steps come with __alert_combos), each over the window (t_k - w, t_k]. Raw rows are cut into
-- step-long buckets per combo and label set (count, sum, min, max, events, errors; for percentile rules the
-- values themselves), each bucket is stepped into the window series of the evaluation times that cover it
-- (generated with range()), the aggregates are compared with each rule's threshold (count and rate are zero
-- where nothing happened; percentiles are exact, nearest rank), and the consecutive breaching times come back
-- as runs (rule_index, by-labels l1..l8, first k, last k).
-- A window that is not a multiple of the step is rounded up to whole steps.
WITH combos AS (
    SELECT *, greatest(1, ceil(window_seconds / step - 1e-9))::BIGINT AS nb,
           make_timestamp($start_us - CAST(window_seconds * 1000000 AS BIGINT)) AS start_ts
    FROM __alert_combos
),
series_keys AS (
    SELECT c.combo, c.need_q, c.step, s.series_id, s.kind,
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
sourced AS (
    SELECT c.combo, c.need_q, ceil((epoch(r.ts) - $start) / c.step)::BIGINT AS j,
           CASE WHEN c.k1 THEN r.route END AS l1,
           CASE WHEN c.k2 THEN r.method END AS l2,
           CASE WHEN c.k3 THEN r.status::VARCHAR END AS l3,
           CASE WHEN c.k4 THEN r.pid::VARCHAR END AS l4,
           CASE WHEN c.k5 THEN r.host END AS l5,
           NULL::VARCHAR AS l6, NULL::VARCHAR AS l7, NULL::VARCHAR AS l8,
           r.duration_ms AS value, 1.0 AS weight, (r.status >= 500)::DOUBLE AS errors
    FROM requests r JOIN combos c ON c.source = 'requests' AND r.ts > c.start_ts
    WHERE r.ts > make_timestamp($requests_since_us) AND r.ts <= make_timestamp($now_us)
    UNION ALL
    SELECT c.combo, c.need_q, ceil((epoch(q.ts) - $start) / c.step)::BIGINT,
           CASE WHEN c.k1 THEN q.fingerprint END,
           CASE WHEN c.k2 THEN q.name END,
           CASE WHEN c.k3 THEN q.route END,
           CASE WHEN c.k4 THEN q.success::VARCHAR END,
           CASE WHEN c.k5 THEN q.pid::VARCHAR END,
           CASE WHEN c.k6 THEN q.host END,
           NULL, NULL,
           q.duration_ms, 1.0, 0.0
    FROM queries q JOIN combos c ON c.source = 'queries' AND q.ts > c.start_ts
    WHERE q.ts > make_timestamp($queries_since_us) AND q.ts <= make_timestamp($now_us)
    UNION ALL
    SELECT c.combo, c.need_q, ceil((epoch(m.ts) - $start) / c.step)::BIGINT,
           CASE WHEN c.k1 THEN m.pid::VARCHAR END,
           CASE WHEN c.k2 THEN m.host END,
           NULL, NULL, NULL, NULL, NULL, NULL,
           m.rss_bytes::DOUBLE, 1.0, 0.0
    FROM process_samples m JOIN combos c ON c.source = 'process_samples' AND m.ts > c.start_ts
    WHERE m.ts > make_timestamp($samples_since_us) AND m.ts <= make_timestamp($now_us)
    UNION ALL
    SELECT k.combo, k.need_q, ceil((epoch(p.ts) - $start) / k.step)::BIGINT,
           k.l1, k.l2, k.l3, k.l4, k.l5, k.l6, k.l7, k.l8,
           p.value, CASE WHEN k.kind = 'counter' THEN p.value ELSE 1.0 END, 0.0
    FROM points p JOIN series_keys k ON p.series_id = k.series_id
    WHERE p.ts > make_timestamp($points_since_us) AND p.ts <= make_timestamp($now_us)
),
buckets AS (
    SELECT combo, j, l1, l2, l3, l4, l5, l6, l7, l8, count(*) AS n, sum(value) AS total,
           min(value) AS min_value, max(value) AS max_value, sum(weight) AS events, sum(errors) AS errors
    FROM sourced
    GROUP BY combo, j, l1, l2, l3, l4, l5, l6, l7, l8
),
windowed AS (
    -- bucket j lies in the windows of the evaluation times k = j .. j + nb - 1: the window series
    SELECT combo, k, l1, l2, l3, l4, l5, l6, l7, l8, sum(n) AS n, sum(total) AS total,
           min(min_value) AS min_value, max(max_value) AS max_value, sum(events) AS events, sum(errors) AS errors
    FROM (SELECT b.*, unnest(range(greatest(b.j, 0), least(b.j + c.nb, c.steps + 1))) AS k
          FROM buckets b JOIN combos c ON b.combo = c.combo)
    GROUP BY combo, k, l1, l2, l3, l4, l5, l6, l7, l8
),
quantiles AS (
    -- percentiles stay exact (nearest rank): every value is stepped into the windows that hold it
    SELECT combo, k, l1, l2, l3, l4, l5, l6, l7, l8, quantile_disc(value, [0.5, 0.95, 0.99]) AS q
    FROM (SELECT s.*, unnest(range(greatest(s.j, 0), least(s.j + c.nb, c.steps + 1))) AS k
          FROM sourced s JOIN combos c ON s.combo = c.combo
          WHERE s.need_q)
    GROUP BY combo, k, l1, l2, l3, l4, l5, l6, l7, l8
),
valued AS MATERIALIZED (
    SELECT r.rule_index, w.k,
           CASE WHEN r.b1 THEN w.l1 END AS l1, CASE WHEN r.b2 THEN w.l2 END AS l2,
           CASE WHEN r.b3 THEN w.l3 END AS l3, CASE WHEN r.b4 THEN w.l4 END AS l4,
           CASE WHEN r.b5 THEN w.l5 END AS l5, CASE WHEN r.b6 THEN w.l6 END AS l6,
           CASE WHEN r.b7 THEN w.l7 END AS l7, CASE WHEN r.b8 THEN w.l8 END AS l8,
           CASE WHEN r.metric = 'error_rate' THEN
               CASE r.aggregation WHEN 'avg' THEN w.errors / w.events WHEN 'count' THEN w.errors
                                  WHEN 'rate' THEN w.errors / r.window_seconds END
           ELSE
               CASE r.aggregation
                   WHEN 'p50' THEN q.q[1] WHEN 'p95' THEN q.q[2] WHEN 'p99' THEN q.q[3]
                   WHEN 'avg' THEN w.total / w.n WHEN 'max' THEN w.max_value WHEN 'min' THEN w.min_value
                   WHEN 'count' THEN w.events WHEN 'rate' THEN w.events / r.window_seconds
               END
           END AS value
    FROM windowed w
    JOIN __alert_rules r ON w.combo = r.combo
    LEFT JOIN quantiles q ON q.combo = w.combo AND q.k = w.k
        AND q.l1 IS NOT DISTINCT FROM w.l1 AND q.l2 IS NOT DISTINCT FROM w.l2
        AND q.l3 IS NOT DISTINCT FROM w.l3 AND q.l4 IS NOT DISTINCT FROM w.l4
        AND q.l5 IS NOT DISTINCT FROM w.l5 AND q.l6 IS NOT DISTINCT FROM w.l6
        AND q.l7 IS NOT DISTINCT FROM w.l7 AND q.l8 IS NOT DISTINCT FROM w.l8
    WHERE (r.w1 IS NULL OR w.l1 = r.w1) AND (r.w2 IS NULL OR w.l2 = r.w2) AND (r.w3 IS NULL OR w.l3 = r.w3)
      AND (r.w4 IS NULL OR w.l4 = r.w4) AND (r.w5 IS NULL OR w.l5 = r.w5) AND (r.w6 IS NULL OR w.l6 = r.w6)
      AND (r.w7 IS NULL OR w.l7 = r.w7) AND (r.w8 IS NULL OR w.l8 = r.w8)
      AND w.events >= r.min_count
),
counted_sets AS (
    -- count and rate have a value (zero) at every time for every label set they ever saw
    SELECT DISTINCT v.rule_index, v.l1, v.l2, v.l3, v.l4, v.l5, v.l6, v.l7, v.l8
    FROM valued v JOIN __alert_rules r ON v.rule_index = r.rule_index
    WHERE r.aggregation IN ('count', 'rate')
    UNION
    SELECT rule_index, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM __alert_rules
    WHERE aggregation IN ('count', 'rate') AND NOT (b1 OR b2 OR b3 OR b4 OR b5 OR b6 OR b7 OR b8)
),
zeros AS (
    SELECT s.rule_index, g.k, s.l1, s.l2, s.l3, s.l4, s.l5, s.l6, s.l7, s.l8, 0.0 AS value
    FROM counted_sets s
    JOIN __alert_rules r ON s.rule_index = r.rule_index
    JOIN combos c ON r.combo = c.combo
    JOIN range(0, (SELECT max(steps) FROM combos) + 1) g(k) ON g.k <= c.steps
    ANTI JOIN valued v ON v.rule_index = s.rule_index AND v.k = g.k
        AND v.l1 IS NOT DISTINCT FROM s.l1 AND v.l2 IS NOT DISTINCT FROM s.l2
        AND v.l3 IS NOT DISTINCT FROM s.l3 AND v.l4 IS NOT DISTINCT FROM s.l4
        AND v.l5 IS NOT DISTINCT FROM s.l5 AND v.l6 IS NOT DISTINCT FROM s.l6
        AND v.l7 IS NOT DISTINCT FROM s.l7 AND v.l8 IS NOT DISTINCT FROM s.l8
),
breached AS (
    SELECT f.rule_index, f.k, f.l1, f.l2, f.l3, f.l4, f.l5, f.l6, f.l7, f.l8
    FROM (SELECT * FROM valued UNION ALL SELECT * FROM zeros) f JOIN __alert_rules r ON f.rule_index = r.rule_index
    WHERE CASE r.op WHEN 'gt' THEN f.value > r.threshold WHEN 'gte' THEN f.value >= r.threshold
                    WHEN 'lt' THEN f.value < r.threshold WHEN 'lte' THEN f.value <= r.threshold
                    ELSE f.value = r.threshold END
),
islands AS (
    SELECT *, k - row_number() OVER (PARTITION BY rule_index, l1, l2, l3, l4, l5, l6, l7, l8 ORDER BY k) AS island
    FROM breached
)
SELECT rule_index, l1, l2, l3, l4, l5, l6, l7, l8, min(k) AS first_k, max(k) AS last_k
FROM islands
GROUP BY rule_index, l1, l2, l3, l4, l5, l6, l7, l8, island
ORDER BY rule_index, l1, l2, l3, l4, l5, l6, l7, l8, first_k;
