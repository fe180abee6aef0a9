"""Alert sweeps on a real DuckDB file, driven by a fake clock: states, history, restarts, delivery rules."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline import ConfigError, Monitor
from pipeline.alerts.notify import Notification
from pipeline.alerts.state import FIRING, INACTIVE, NODATA, PENDING, RESOLVED
from pipeline.testing import FakeClock, RecordingNotifier

MB = 1024 * 1024


def sweep(mon: Monitor) -> dict[str, object]:
    result = mon.run_jobs_now()["alerts"]
    assert isinstance(result, dict)
    return result


def transitions(mon: Monitor, rule: str | None = None) -> list[tuple[str, str]]:
    assert mon.alerts is not None
    return [(e.from_state, e.to_state) for e in mon.alerts.events(rule=rule)]


def state_of(mon: Monitor, rule: str) -> dict[tuple[tuple[str, str | None], ...], str]:
    assert mon.alerts is not None
    return {s.labels: s.state for s in mon.alerts.states() if s.rule == rule}


def test_every_transition_is_recorded_with_its_values(mon: Monitor, clock: FakeClock) -> None:
    """inactive -> pending -> firing -> resolved, each a row of alert_events with value and threshold."""
    mon.add_threshold("request_duration", "gt", 500, "warning", "p95 too slow", aggregation="p95",
                      window_seconds=60, for_seconds=20, name="p95", by=("route",))
    mon.track_request("/a", "GET", 200, 700.0)
    sweep(mon)
    assert state_of(mon, "p95") == {(("route", "/a"),): PENDING}
    clock.advance(10)
    mon.track_request("/a", "GET", 200, 800.0)
    sweep(mon)
    assert state_of(mon, "p95") == {(("route", "/a"),): PENDING}
    clock.advance(10)
    sweep(mon)
    assert state_of(mon, "p95") == {(("route", "/a"),): FIRING}
    clock.advance(5)
    for _ in range(50):
        mon.track_request("/a", "GET", 200, 10.0)
    sweep(mon)
    assert transitions(mon, "p95") == [(INACTIVE, PENDING), (PENDING, FIRING), (FIRING, RESOLVED)]
    assert mon.alerts is not None
    firing = mon.alerts.events(rule="p95")[1]
    assert (firing.value, firing.threshold, firing.level, firing.message, firing.labels) == (
        800.0, 500.0, "warning", "p95 too slow", (("route", "/a"),))
    assert mon.store is not None
    assert mon.store.scalar("SELECT count(*) FROM alert_events WHERE rule = 'p95'") == 3


def test_pending_returns_to_inactive(mon: Monitor, clock: FakeClock) -> None:
    """A condition that clears before for_seconds records pending -> inactive."""
    mon.add_threshold("request_duration", "gt", 500, "warning", for_seconds=60, window_seconds=10, name="r")
    mon.track_request("/a", "GET", 200, 700.0)
    sweep(mon)
    clock.advance(20)
    mon.track_request("/a", "GET", 200, 100.0)
    sweep(mon)
    assert transitions(mon, "r") == [(INACTIVE, PENDING), (PENDING, INACTIVE)]


def test_nodata_and_back(mon: Monitor, clock: FakeClock) -> None:
    """A rule without `by` whose window empties goes to nodata, and back when rows return."""
    mon.add_threshold("query_duration", "gt", 100, "warning", window_seconds=30, name="q")
    mon.track_query("SELECT 1", 5.0)
    sweep(mon)
    clock.advance(60)
    sweep(mon)
    assert state_of(mon, "q") == {(): NODATA}
    clock.advance(10)
    mon.track_query("SELECT 1", 5.0)
    sweep(mon)
    assert transitions(mon, "q") == [(INACTIVE, NODATA), (NODATA, INACTIVE)]


def test_restart_keeps_pending_since(db_path: Path, clock: FakeClock) -> None:
    """A pending alert survives an owner restart with its pending-since time, so it fires on schedule."""
    def owner() -> Monitor:
        m = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
        m.add_threshold("request_duration", "gt", 500, "warning", window_seconds=300, for_seconds=60, name="r")
        return m

    started = clock.now()
    mon = owner()
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    mon.close()
    clock.advance(45)
    mon = owner()
    try:
        assert mon.alerts is not None
        (st,) = mon.alerts.states()
        assert (st.state, st.pending_since) == (PENDING, started)
        sweep(mon)
        assert st.state == PENDING
        clock.advance(15)  # 60 s after the condition started, 15 s after the restart
        sweep(mon)
        assert transitions(mon, "r") == [(INACTIVE, PENDING), (PENDING, FIRING)]
    finally:
        mon.close()


def test_restart_keeps_firing_and_notification_times(db_path: Path, clock: FakeClock) -> None:
    """A delivered firing alert is not delivered again after a restart, within its repeat interval."""
    def owner(rec: RecordingNotifier) -> Monitor:
        m = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
        m.add_threshold("request_duration", "gt", 500, "warning", window_seconds=300, name="r",
                        repeat_interval_seconds=600)
        m.on_alert(rec)
        return m

    first, second = RecordingNotifier(), RecordingNotifier()
    mon = owner(first)
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    mon.close()
    clock.advance(60)
    mon = owner(second)
    try:
        sweep(mon)
        assert first.states() == [("r", FIRING)] and second.states() == []
    finally:
        mon.close()


def test_alerts_of_a_renamed_rule_end_with_a_reason(db_path: Path, clock: FakeClock) -> None:
    """After a restart in which a firing rule was renamed, the first sweep resolves its alert (an event saying
    why, a resolution delivered, the state forgotten), and the rule under its new name fires on its own."""
    def owner(name: str, rec: RecordingNotifier) -> Monitor:
        m = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
        m.add_threshold("request_duration", "gt", 500, "warning", window_seconds=300, name=name, by="route")
        m.on_alert(rec)
        return m

    first, second = RecordingNotifier(), RecordingNotifier()
    mon = owner("slow", first)
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    mon.close()
    clock.advance(30)
    mon = owner("slow_requests", second)
    try:
        sweep(mon)
        assert mon.alerts is not None
        assert {(s.rule, s.state) for s in mon.alerts.states()} == {("slow_requests", FIRING)}
        (ended,) = [e for e in mon.alerts.events(rule="slow") if e.to_state == RESOLVED]
        assert (ended.from_state, ended.ts, ended.labels) == (FIRING, clock.now(), (("route", "/a"),))
        assert "no rule named 'slow' is loaded" in ended.message and "renamed" in ended.message
        assert sorted(second.states()) == [("slow", RESOLVED), ("slow_requests", FIRING)]
        resolved = next(n for n in second.notifications if n.rule == "slow")
        assert resolved.labels == (("route", "/a"),) and resolved.message == ended.message
        assert resolved.summary() == f"[warning] slow{{route=/a}} resolved: request_duration - {ended.message}"
        assert mon.store is not None
        assert mon.store.scalar("SELECT count(*) FROM alert_state WHERE rule = 'slow'") == 0
        sweep(mon)  # nothing left to end
        assert len(mon.alerts.events(rule="slow")) == 2
    finally:
        mon.close()


def test_a_removed_rule_ends_its_pending_alert_at_the_next_full_sweep(mon: Monitor, rec: RecordingNotifier,
                                                                        clock: FakeClock) -> None:
    """remove_rule() in a running owner: the next full sweep ends the rule's pending alert (never delivered, so
    nothing is delivered for its end); a flush check, which covers only some rules, leaves it alone."""
    mon.add_threshold("request_duration", "gt", 500, "warning", for_seconds=600, name="waits")
    mon.add_threshold("request_duration", "gt", 100, "critical", name="fast")
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    assert state_of(mon, "waits") == {(): PENDING}
    assert mon.alerts is not None and mon.alerts.remove_rule("waits")
    mon.track_request("/a", "GET", 200, 900.0)
    mon.flush()  # the flush check sweeps "fast" only
    assert state_of(mon, "waits") == {(): PENDING}
    clock.advance(5)
    sweep(mon)
    assert state_of(mon, "waits") == {}
    assert transitions(mon, "waits") == [(INACTIVE, PENDING), (PENDING, RESOLVED)]
    assert [r for r, _ in rec.states()] == ["fast"]


def test_inhibition_with_the_default_rules(db_path: Path, clock: FakeClock) -> None:
    """With the defaults, one request over 3 s is delivered as critical; the 1 s warning is inhibited."""
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    try:
        rec = RecordingNotifier()
        mon.on_alert(rec)
        mon.track_request("/slow", "GET", 200, 3500.0)
        sweep(mon)
        assert rec.states() == [("request_over_3s", FIRING)]
        assert state_of(mon, "request_over_1s") == {(("route", "/slow"),): FIRING}
        assert mon.alerts is not None and mon.alerts.counts["muted_inhibited"] >= 1
        clock.advance(61)
        mon.track_request("/slow", "GET", 200, 1500.0)
        sweep(mon)
        # the critical resolved, so the warning (still firing) is no longer inhibited
        assert rec.states()[1:] == [("request_over_3s", RESOLVED), ("request_over_1s", FIRING)]
    finally:
        mon.close()


def test_default_rules_installed_and_switched_off(db_path: Path, clock: FakeClock, mon: Monitor) -> None:
    """Monitor installs the plan's six thresholds and the failing-route rule by default; default_rules=False
    installs none."""
    assert mon.alerts is not None and mon.alerts.rules == []
    other = Monitor(db_path=db_path.with_name("other.duckdb"), jobs=False, clock=clock,
                    memory_interval_seconds=None)
    try:
        assert other.alerts is not None
        assert {r.name for r in other.alerts.rules} == {
            "request_over_1s", "request_over_3s", "query_over_100ms", "query_over_1s", "memory_over_512mb",
            "memory_over_1gb", "route_always_failing"}
        assert "alerts" in other.jobs_runner.names
    finally:
        other.close()


def test_memory_default_rule_per_process(db_path: Path, clock: FakeClock) -> None:
    """The memory defaults fire per host and pid on process samples over 512 MB and 1 GB."""
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    try:
        assert mon.store is not None
        mon.store.con.execute("INSERT INTO process_samples VALUES (make_timestamp($ts), 7, 'h', $rss, 0, 0, 1, 1, "
                              "0, NULL)", {"ts": int(clock.now() * 1e6), "rss": 600 * MB})
        sweep(mon)
        assert state_of(mon, "memory_over_512mb") == {(("host", "h"), ("pid", "7")): FIRING}
        assert state_of(mon, "memory_over_1gb") == {(("host", "h"), ("pid", "7")): INACTIVE}
    finally:
        mon.close()


def test_the_failing_route_default_fires_on_five_straight_failures_only(db_path: Path, clock: FakeClock) -> None:
    """route_always_failing: one failure on a quiet route, or four, fire nothing; the fifth straight 5xx of a route
    in 5 minutes fires (critical, for that route); one success resolves it; a route that also succeeds never fires."""
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None)
    rec = RecordingNotifier()
    mon.on_alert(rec)
    try:
        mon.track_request("/quiet", "GET", 500, 5.0)
        for _ in range(4):
            mon.track_request("/broken", "POST", 503, 5.0)
            mon.track_request("/flaky", "GET", 500, 5.0)
        mon.track_request("/flaky", "GET", 200, 5.0)
        clock.advance(1)
        sweep(mon)
        assert FIRING not in state_of(mon, "route_always_failing").values()
        mon.track_request("/broken", "POST", 500, 5.0)
        for _ in range(5):
            mon.track_request("/flaky", "GET", 500, 5.0)
        clock.advance(1)
        sweep(mon)
        assert {k: v for k, v in state_of(mon, "route_always_failing").items() if v == FIRING} == {
            (("route", "/broken"),): FIRING}
        [firing] = [n for n in rec.notifications if n.rule == "route_always_failing"]
        assert (firing.level, firing.state, firing.value) == ("critical", FIRING, 1.0)
        mon.track_request("/broken", "POST", 200, 5.0)
        clock.advance(1)
        sweep(mon)
        assert state_of(mon, "route_always_failing")[(("route", "/broken"),)] == RESOLVED
    finally:
        mon.close()


def test_silence_mutes_delivery_but_keeps_history(mon: Monitor, rec: RecordingNotifier, clock: FakeClock) -> None:
    """A silenced alert is recorded but not delivered; when the silence ends, the still-firing alert is."""
    assert mon.alerts is not None
    mon.add_threshold("request_duration", "gt", 500, "warning", window_seconds=600, by="route", name="r")
    silence_id = mon.alerts.silence({"route": "/a"}, duration_seconds=100, comment="deploy")
    assert [s.matchers for s in mon.alerts.silences()] == [(("route", "/a"),)]
    mon.track_request("/a", "GET", 200, 900.0)
    mon.track_request("/b", "GET", 200, 900.0)
    result = sweep(mon)
    assert [dict(n.labels)["route"] for n in rec.notifications] == ["/b"]
    assert result["muted"] == {"silenced": 1}
    assert len(transitions(mon, "r")) == 2
    clock.advance(50)
    sweep(mon)
    assert len(rec.notifications) == 1
    assert mon.alerts.unsilence(silence_id) is True
    assert mon.alerts.unsilence(silence_id) is False
    sweep(mon)
    assert [dict(n.labels)["route"] for n in rec.notifications] == ["/b", "/a"]
    assert mon.alerts.silences() == []


def test_silence_expires_by_time(mon: Monitor, rec: RecordingNotifier, clock: FakeClock) -> None:
    """A silence with `until` stops muting at that time."""
    assert mon.alerts is not None
    mon.add_threshold("request_duration", "gt", 500, "warning", window_seconds=600, name="r")
    mon.alerts.silence({"rule": "r"}, until=clock.now() + 30)
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    assert rec.notifications == []
    clock.advance(30)
    sweep(mon)
    assert rec.states() == [("r", FIRING)]


def test_bad_silences_are_refused(mon: Monitor, clock: FakeClock) -> None:
    """A silence needs matchers and exactly one end in the future."""
    assert mon.alerts is not None
    with pytest.raises(ConfigError, match="silence everything"):
        mon.alerts.silence({}, duration_seconds=10)
    with pytest.raises(ConfigError, match="exactly one"):
        mon.alerts.silence({"rule": "r"})
    with pytest.raises(ConfigError, match="not after now"):
        mon.alerts.silence({"rule": "r"}, until=clock.now() - 1)
    mon.alerts.silence({"success": True}, duration_seconds=10)
    assert mon.alerts.silences()[0].matchers == (("success", "true"),)


def test_repeat_interval_limits_renotification(mon: Monitor, rec: RecordingNotifier, clock: FakeClock) -> None:
    """A firing alert is re-delivered only every repeat_interval_seconds, marked as a repeat."""
    mon.add_threshold("request_duration", "gt", 500, "warning", window_seconds=3600, name="r",
                      repeat_interval_seconds=300)
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    for _ in range(5):
        clock.advance(50)
        sweep(mon)
    assert len(rec.notifications) == 1
    clock.advance(50)
    sweep(mon)
    assert [n.repeat for n in rec.notifications] == [False, True]


def test_resolution_is_delivered(mon: Monitor, rec: RecordingNotifier, clock: FakeClock) -> None:
    """The end of a delivered alert is delivered too."""
    mon.add_threshold("request_duration", "gt", 500, "warning", window_seconds=60, by="route", name="r")
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    clock.advance(61)
    sweep(mon)
    assert rec.states() == [("r", FIRING), ("r", RESOLVED)]
    resolved = rec.notifications[1]
    assert resolved.value is None and resolved.labels == (("route", "/a"),)
    clock.advance(10)
    sweep(mon)  # a resolved label set without rows is forgotten, in memory and in alert_state
    assert state_of(mon, "r") == {}
    assert mon.store is not None and mon.store.scalar("SELECT count(*) FROM alert_state") == 0


def test_on_alert_unsubscribe(mon: Monitor, clock: FakeClock) -> None:
    """The function on_alert returns stops further deliveries to that callback."""
    got: list[Notification] = []
    unsubscribe = mon.on_alert(got.append)
    mon.add_threshold("request_duration", "gt", 500, "warning", window_seconds=60, by="route", name="r")
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    unsubscribe()
    unsubscribe()  # twice is harmless
    mon.track_request("/b", "GET", 200, 900.0)
    sweep(mon)
    assert mon.alerts is not None and mon.alerts.settle()  # callbacks run on the notifiers' thread
    assert [dict(n.labels)["route"] for n in got] == ["/a"]


def test_failing_callback_is_counted_and_others_still_run(mon: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    """A callback that raises does not stop the sweep or the other notifiers; it is counted and logged."""
    def broken(n: Notification) -> None:
        raise RuntimeError("boom")

    rec = RecordingNotifier()
    mon.on_alert(broken)
    mon.on_alert(rec)
    mon.add_threshold("request_duration", "gt", 500, "warning", name="r")
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    assert mon.alerts is not None and mon.alerts.counts["notifier_failures"] == 1
    assert len(rec.notifications) == 1
    assert "notifier failed" in caplog.text


def test_single_slow_request_alerts_at_flush(mon: Monitor, rec: RecordingNotifier) -> None:
    """A single-event threshold is checked against each flushed batch: a flush alerts, no sweep needed."""
    mon.add_threshold("request_duration", "gt", 3000, "critical", name="slow")
    mon.add_threshold("request_duration", "gt", 10, "warning", aggregation="avg", name="avg")
    mon.track_request("/a", "GET", 200, 20.0)
    mon.flush()
    assert rec.notifications == []
    mon.track_request("/a", "GET", 200, 3200.0)
    mon.flush()
    assert rec.states() == [("slow", FIRING)]
    assert mon.alerts is not None and mon.alerts.counts["flush_checks"] == 1
    assert state_of(mon, "avg") == {}  # only the single-event rule was evaluated


def test_slow_query_alerts_at_flush(mon: Monitor, rec: RecordingNotifier) -> None:
    """Query durations are checked at flush as well."""
    mon.add_threshold("query_duration", "gte", 100, "warning", by="fingerprint", name="q")
    mon.track_query("SELECT * FROM t WHERE id = 1", 150.0)
    mon.flush()
    assert rec.states() == [("q", FIRING)]
    assert rec.notifications[0].labels == (("fingerprint", "SELECT * FROM t WHERE id = ?"),)


def test_flush_check_failure_is_counted_not_raised(mon: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    """A failing check after a flush never fails the flush; it is counted and logged."""
    assert mon.alerts is not None
    mon.add_threshold("request_duration", "gt", 1, "warning", name="r")
    mon.alerts.after_flush({"requests": pa.table({"no_duration": [1]})})
    assert mon.alerts.counts["flush_check_failures"] == 1
    assert "check after a flush failed" in caplog.text


def test_error_rate_and_request_rate(mon: Monitor, clock: FakeClock) -> None:
    """error_rate is the fraction of 5xx (avg), their count or rate; request_rate counts requests."""
    mon.add_threshold("error_rate", "gt", 0.2, "critical", aggregation="avg", name="errors")
    mon.add_threshold("error_rate", "gte", 3, "warning", aggregation="count", where={"method": "POST"},
                      name="post_errors")
    mon.add_threshold("request_rate", "gt", 0.1, "info", aggregation="rate", by="method", name="busy")
    for status in (500, 500, 500, 200, 200, 200, 200, 200):
        mon.track_request("/a", "POST", status, 5.0)
    mon.track_request("/a", "GET", 200, 5.0)
    sweep(mon)
    assert mon.alerts is not None
    values = {(s.rule, s.labels): (s.state, s.value) for s in mon.alerts.states()}
    assert values[("errors", ())] == (FIRING, pytest.approx(3 / 9))
    assert values[("post_errors", ())] == (FIRING, 3.0)
    assert values[("busy", (("method", "POST"),))] == (FIRING, pytest.approx(8 / 60))
    assert values[("busy", (("method", "GET"),))] == (INACTIVE, pytest.approx(1 / 60))


def test_request_rate_zero_fires_on_silence(mon: Monitor) -> None:
    """A traffic-stopped rule (rate below a floor) fires with no rows at all: an empty window counts zero."""
    mon.add_threshold("request_rate", "lt", 0.5, "critical", aggregation="rate", name="down")
    sweep(mon)
    assert state_of(mon, "down") == {(): FIRING}


def test_custom_series_by_and_where(mon: Monitor) -> None:
    """Custom counters and histograms alert by their own labels; counter counts sum the increments."""
    mon.counter("jobs_done", {"queue": "mail", "env": "prod"}).inc(5)
    mon.counter("jobs_done", {"queue": "sms", "env": "prod"}).inc(1)
    mon.counter("jobs_done", {"queue": "mail", "env": "dev"}).inc(9)
    mon.histogram("job_seconds", {"queue": "mail"}).observe(3.0)
    mon.add_threshold("jobs_done", "gte", 5, "warning", aggregation="count", by="queue", where={"env": "prod"},
                      name="jobs")
    mon.add_threshold("job_seconds", "gt", 2, "warning", aggregation="p99", by="queue", name="job_time")
    sweep(mon)
    assert state_of(mon, "jobs") == {(("queue", "mail"),): FIRING, (("queue", "sms"),): INACTIVE}
    assert state_of(mon, "job_seconds") == {}
    assert state_of(mon, "job_time") == {(("queue", "mail"),): FIRING}


def test_custom_series_missing_label_is_null(mon: Monitor) -> None:
    """A series without the `by` label groups under a null value (JSON null in storage)."""
    mon.gauge("depth", {"queue": "a"}).set(10)
    mon.gauge("depth", {}).set(20)
    mon.add_threshold("depth", "gt", 5, "warning", by="queue", name="depth")
    sweep(mon)
    assert state_of(mon, "depth") == {(("queue", "a"),): FIRING, (("queue", None),): FIRING}
    assert mon.store is not None
    stored = {r[0] for r in mon.store.fetchall("SELECT labels FROM alert_state")}
    assert stored == {json.dumps({"queue": "a"}, separators=(",", ":")), '{"queue":null}'}


def test_query_rules_by_success_and_route(mon: Monitor) -> None:
    """Query rules group and filter by success, route, name, pid and host."""
    mon.track_query("SELECT 1", 50.0, success=False, route="/x")
    mon.track_query("SELECT 2", 70.0, success=True, route="/x")
    mon.add_threshold("query_duration", "gt", 10, "warning", aggregation="min", by=("route", "host"),
                      where={"success": False}, name="failed")
    sweep(mon)
    assert state_of(mon, "failed") == {(("host", mon.host), ("route", "/x")): FIRING}


def test_load_rules_from_a_file(mon: Monitor, tmp_path: Path) -> None:
    """Monitor.load_rules adds every rule of a TOML file, and refuses a name already in use (adding none)."""
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "a"\nmetric = "request_duration"\nop = "gt"\nvalue = 1\nlevel = "info"\n'
                    '[[rule]]\nname = "b"\nmetric = "memory_rss"\nop = "gt"\nvalue = 1\nlevel = "info"\n')
    assert [r.name for r in mon.load_rules(path)] == ["a", "b"]
    with pytest.raises(ConfigError, match="named 'a' exists already"):
        mon.load_rules(path)
    assert mon.alerts is not None and [r.name for r in mon.alerts.rules] == ["a", "b"]
    assert mon.alerts.remove_rule("a") and not mon.alerts.remove_rule("a")


@pytest.mark.parametrize("where", ["spool_dir", "role=producer"])
def test_a_monitor_that_never_owns_refuses_rules_and_says_where_they_go(tmp_path: Path, clock: FakeClock,
                                                                        where: str) -> None:
    """Rules given to a monitor that can never own would never be evaluated: it says to use duckpulse.toml."""
    producer = (Monitor(spool_dir=tmp_path / "spool", jobs=False, clock=clock, memory_interval_seconds=None)
                if where == "spool_dir" else
                Monitor(db_path=tmp_path / "m.duckdb", role="producer", clock=clock, memory_interval_seconds=None))
    try:
        assert producer.alerts is None and not producer.can_own
        with pytest.raises(ConfigError, match=r"never owns its database.*duckpulse\.toml"):
            producer.add_threshold("request_duration", "gt", 1, "info")
        with pytest.raises(ConfigError, match=r"never owns its database.*\[\[rule\]\] and \[\[notifier\]\]"):
            producer.on_alert(print)
    finally:
        producer.close()


def test_bad_interval_is_refused(db_path: Path, clock: FakeClock) -> None:
    """alert_interval_seconds must be a positive number."""
    with pytest.raises(ConfigError, match="alert_interval_seconds"):
        Monitor(db_path=db_path, jobs=False, clock=clock, alert_interval_seconds=0)


def test_logging_notifier_logs_by_level(mon: Monitor, caplog: pytest.LogCaptureFixture) -> None:
    """The built-in logging notifier logs firing alerts at their level on duckpulse.alerts."""
    mon.add_threshold("request_duration", "gt", 500, "critical", "too slow", name="r")
    mon.track_request("/a", "GET", 200, 900.0)
    sweep(mon)
    (record,) = [r for r in caplog.records if r.name == "duckpulse.alerts"]
    assert record.levelname == "CRITICAL"
    assert "[critical] r firing: max(request_duration) = 900 ms, above 500 ms - too slow" in record.getMessage()


def test_sweep_result_and_stats(mon: Monitor) -> None:
    """A sweep reports what it did; stats() sums the sweeps."""
    mon.add_threshold("request_duration", "gt", 500, "warning", by="route", name="r")
    mon.track_request("/a", "GET", 200, 100.0)
    result = sweep(mon)
    assert {k: result[k] for k in ("rules", "label_sets", "transitions", "notifications")} == {
        "rules": 1, "label_sets": 1, "transitions": 0, "notifications": 0}
    assert mon.alerts is not None
    stats = mon.alerts.stats()
    assert stats["rules"] == 1 and stats["counts"]["sweeps"] == 1 and stats["last_sweep"] == result


def test_a_rule_over_the_longest_window_sweeps_and_back_tests(mon: Monitor, clock: FakeClock) -> None:
    """A rule at the cap of every duration (366 days) sweeps beside an ordinary rule, fires on rows in its window,
    and back-tests: the cap is a window the SQL can compute, not only a number validation accepts."""
    from pipeline.alerts.backtest import backtest
    from pipeline.alerts.rules import MAX_RULE_SECONDS

    longest = mon.add_threshold("request_duration", "gt", 500, "warning", aggregation="max", name="longest",
                                window_seconds=MAX_RULE_SECONDS, for_seconds=MAX_RULE_SECONDS - 1,
                                keep_firing_seconds=MAX_RULE_SECONDS, repeat_interval_seconds=MAX_RULE_SECONDS)
    mon.add_threshold("request_duration", "gt", 500, "critical", name="ordinary")
    mon.track_request("/a", "GET", 200, 700.0)
    result = sweep(mon)
    assert mon.stats()["jobs"]["alerts"]["last_error"] is None, result
    assert state_of(mon, "longest") == {(): PENDING} and state_of(mon, "ordinary") == {(): FIRING}
    assert mon.store is not None
    with mon.store.reading() as cursor:
        # Replayed at a tenth of its window (its step): at now - step, before the row, and at now.
        replay = backtest(cursor, [longest], since_seconds=MAX_RULE_SECONDS / 10, now=clock.now(), step_seconds=60)
    assert (replay[0].evaluations, replay[0].pending_only, replay[0].fired) == (2, 1, 0)
