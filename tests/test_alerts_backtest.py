"""Back-testing rules over stored history, and the ``duckpulse alerts backtest`` command."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import ConfigError, Monitor
from pipeline.alerts.backtest import BacktestResult, backtest, parse_duration, parse_time, report, rule_step
from pipeline.alerts.rules import Rule, make_rule
from pipeline.cli import main
from pipeline.testing import FakeClock

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the FakeClock's start
HOUR = 3600.0


@pytest.fixture
def history(db_path: Path) -> Path:
    """An hour of requests: 20 fast ones at each minute (10-29 ms; half of them 5xx at minute 40) but none in
    minutes 20-29, slow ones (900 ms) at +30 s and +630 s, and a counter adding 2 a minute."""
    clock = FakeClock(T0)
    mon = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
    for minute in range(60):
        if not 20 <= minute < 30:
            for i in range(20):
                mon.track_request("/fast", "GET", 500 if minute == 40 and i < 10 else 200, 10.0 + i)
        if minute in (0, 10):
            clock.advance(30)
            mon.track_request("/slow", "POST", 200, 900.0)
            clock.advance(30)
        else:
            clock.advance(60)
        mon.counter("jobs", {"queue": "mail"}).inc(2)
    for i in range(20):
        mon.track_request("/fast", "GET", 200, 10.0 + i)
    mon.close()
    return db_path


def run(db: Path, *rules: Rule, step: float = 60.0) -> list[BacktestResult]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return backtest(con, list(rules), since_seconds=HOUR, now=T0 + HOUR, step_seconds=step)
    finally:
        con.close()


def test_single_events_fire_once_each(history: Path) -> None:
    """Each slow request fires a max rule for one step; two requests, two episodes."""
    (result,) = run(history, make_rule("request_duration", "gt", 500, "warning", by="route"))
    assert (result.fired, result.firing_seconds, result.longest_seconds, result.label_sets) == (2, 120, 60, 1)
    assert (result.evaluations, result.step_seconds, result.pending_only) == (61, 60, 0)


def test_for_seconds_keeps_short_breaches_pending(history: Path) -> None:
    """Breaches shorter than for_seconds never fire; they are counted as pending only."""
    (result,) = run(history, make_rule("request_duration", "gt", 500, "warning", for_seconds=60))
    assert (result.fired, result.pending_only) == (0, 2)


def test_keep_firing_merges_nearby_breaches(history: Path) -> None:
    """keep_firing_seconds holds the first episode until the second breach, which continues it."""
    (result,) = run(history, make_rule("request_duration", "gt", 500, "warning", keep_firing_seconds=600))
    assert result.fired == 1
    assert result.firing_seconds == (21 - 1) * 60  # fires at k=1, breaches again at k=11, ends at k=21


def test_count_is_zero_where_nothing_happened(history: Path) -> None:
    """A traffic floor fires while no request arrives (empty windows count zero), and not otherwise."""
    (result,) = run(history, make_rule("request_rate", "lt", 1, "critical", aggregation="count",
                                       where={"route": "/fast"}))
    # /fast is silent in minutes 20-29: the windows ending at k = 20..29 count zero
    assert (result.fired, result.firing_seconds) == (1, 600)


def test_percentiles_and_error_rate(history: Path) -> None:
    """Percentile rules are exact (nearest rank); error_rate averages the 5xx flag per window."""
    p95, errors = run(history,
                      make_rule("request_duration", "gt", 28.0, "warning", aggregation="p95", where={"route": "/fast"}),
                      make_rule("error_rate", "gte", 0.5, "critical", aggregation="avg", name="errors"))
    assert p95.fired == 0  # the nearest-rank p95 of 10..29 ms is 28 ms
    assert (errors.fired, errors.firing_seconds) == (1, 60)
    (p95_reached,) = run(history, make_rule("request_duration", "gte", 28.0, "warning", aggregation="p95",
                                            where={"route": "/fast"}))
    assert p95_reached.fired == 2  # every minute with fast traffic: before and after the quiet minutes


def test_custom_counter_rate(history: Path) -> None:
    """Custom series are replayed too: the counter adds 2 a minute."""
    (result,) = run(history, make_rule("jobs", "gte", 2, "info", aggregation="count", by="queue"))
    assert result.fired == 1 and result.label_sets == 1


def test_long_windows_are_replayed_at_a_tenth_of_their_length(history: Path) -> None:
    """A rule is replayed no finer than a tenth of its window, bounding the work per row."""
    rule = make_rule("request_duration", "gt", 500, "warning", window_seconds=1800)
    assert rule_step(rule, 60.0) == 180.0
    (result,) = run(history, rule)
    assert (result.step_seconds, result.evaluations, result.fired) == (180.0, 21, 1)


def test_no_rules_and_bad_arguments(history: Path) -> None:
    """No rules is an empty result; a non-positive range or step is refused."""
    assert run(history) == []
    con = duckdb.connect(str(history), read_only=True)
    try:
        with pytest.raises(ConfigError):
            backtest(con, [], since_seconds=0, now=T0)
    finally:
        con.close()


def test_report_lines() -> None:
    """The report says how often and how long each rule fired, and what was replayed."""
    rule = make_rule("request_duration", "gt", 500, "warning", name="r")
    text = report([BacktestResult(rule, 61, 60.0, 2, 3720.0, 3660.0, 1, 3),
                   BacktestResult(rule, 61, 60.0, 0, 0.0, 0.0, 0, 1)])
    first, second = text.splitlines()
    assert first.startswith("r: fired 2 times, firing 1h 2m in total (longest 1h 1m), 1 label set; "
                            "3 breaches shorter than for_seconds")
    assert "[max(request_duration)[60s] gt 500 ms; 61 evaluations every 60s]" in first
    assert second.startswith("r: never fired; 1 breach shorter than for_seconds")


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200),
                                               ("7d", 604800), ("2w", 1209600), ("1.5h", 5400)])
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations take s, m, h, d and w units."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "-1d", "0s", "d"])
def test_parse_duration_refuses(text: str) -> None:
    """Anything else is refused with the accepted forms."""
    with pytest.raises(ConfigError, match="s, m, h, d or w"):
        parse_duration(text)


def test_parse_time() -> None:
    """--until takes ISO 8601 (UTC by default) or epoch seconds."""
    assert parse_time("2026-01-01T01:00:00Z") == T0 + HOUR
    assert parse_time("2026-01-01T01:00:00") == T0 + HOUR
    assert parse_time(str(T0)) == T0
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_time("yesterday")


RULES = """\
[[rule]]
name = "slow"
metric = "request_duration"
op = "gt"
value = 500
level = "warning"

[[rule]]
name = "quiet"
metric = "request_rate"
aggregation = "count"
where = { route = "/fast" }
op = "lt"
value = 1
level = "critical"
"""


def test_cli_backtest(history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`duckpulse alerts backtest RULES --since 1h --db PATH --until T` prints one line per rule."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    code = main(["alerts", "backtest", str(rules), "--since", "1h", "--db", str(history),
                 "--until", "2026-01-01T01:00:00Z"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith(f"back-test of 2 rules from {rules} over 1h of {history}, until 2026-01-01T01:00:00")
    assert out[1].startswith("slow: fired 2 times, firing 2m in total (longest 1m), 1 label set")
    assert out[2].startswith("quiet: fired 1 time, firing 10m in total (longest 10m), 1 label set")


def test_cli_backtest_errors(history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad rules, a missing file, a locked file or no --db are errors with a message and exit code 2."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace('op = "lt"', 'op = "below"'))
    assert main(["alerts", "backtest", str(rules), "--db", str(history)]) == 2
    assert f"{rules}:13: rule #2 ('quiet'), field 'op'" in capsys.readouterr().err
    rules.write_text(RULES)
    assert main(["alerts", "backtest", str(rules), "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "no such DuckDB file" in capsys.readouterr().err
    monkeypatch.delenv("DUCKPULSE_DB_PATH", raising=False)
    assert main(["alerts", "backtest", str(rules)]) == 2
    assert "--db PATH" in capsys.readouterr().err
    owner = Monitor(db_path=history, jobs=False, memory_interval_seconds=None, default_rules=False)
    try:
        assert main(["alerts", "backtest", str(rules), "--db", str(history)]) == 2
        err = capsys.readouterr().err  # an owner runs and nothing is archived yet: its file is not opened
        assert "is already owned by process" in err and "nothing of it is published" in err
        assert "back-test a copy" in err
    finally:
        owner.close()


# A back-test in a process of its own that stops inside the replay (its file or history open) until told to go on.
PAUSED_BACKTEST = """
import sys
from pipeline.alerts import backtest as bt
from pipeline.cli import main
replay = bt.backtest
def paused(*args, **kwargs):
    print("replaying", flush=True)
    sys.stdin.readline()
    return replay(*args, **kwargs)
bt.backtest = paused
sys.exit(main(sys.argv[1:]))
"""


class HookedDuckDB:
    """pipeline.store's view of the duckdb module: runs ``hook`` once just before the next connect (in a reopen:
    after the old connection closed, before the new one opens), then connects as DuckDB does."""

    def __init__(self, hook: Callable[[], None]) -> None:
        self.hook: Callable[[], None] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(duckdb, name)

    def connect(self, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return duckdb.connect(*args, **kwargs)


def test_a_backtest_during_the_owners_reopen_never_locks_it_out(
        db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, item 10: `duckpulse alerts backtest` opened the file without checking the owner lock, and when it
    did so in the gap of the owner's periodic reopen it held the file, so the owner could not open it again
    (flush, ingest and sweep failures followed). Here a back-test in another process starts exactly in that gap and
    stays inside its replay while the owner reopens: the owner reopens and flushes, and the back-test, which never
    opened the file (an owner runs), replays the history the owner published."""
    import pipeline.store

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    clock = FakeClock(T0)
    owner = Monitor(db_path=db_path, jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
    replaying: list[subprocess.Popen[str]] = []

    def start_backtest() -> None:  # in the gap: the owner's DuckDB is closed, its owner lock still held
        proc = subprocess.Popen([sys.executable, "-c", PAUSED_BACKTEST, "alerts", "backtest", str(rules),
                                 "--since", "1h", "--db", str(db_path), "--until", "2026-01-01T01:00:00Z"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        replaying.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "replaying\n", proc.communicate()

    try:
        for minute in range(60):
            owner.track_request("/slow" if minute in (0, 10) else "/fast", "GET", 200,
                                900.0 if minute in (0, 10) else 10.0, ts=T0 + minute * 60 + 30)
        clock.advance(HOUR + 900)
        owner.run_jobs_now()  # the archive publishes the closed hour for readers
        monkeypatch.setattr(pipeline.store, "duckdb", HookedDuckDB(start_backtest))
        assert owner.store is not None and owner.store.recycle()
        owner.track_request("/after", "GET", 200, 1.0)
        assert owner.flush()
        out, err = replaying[0].communicate("go\n", timeout=120)
        assert replaying[0].returncode == 0, err
        assert "(the history the owner of" in out.splitlines()[0]
        assert out.splitlines()[1].startswith("slow: fired 2 times")
        print("\nFIGURE back-test started in the owner's reopen: the owner reopened and flushed, the back-test "
              f"replayed its history: {out.splitlines()[1]}")
    finally:
        for proc in replaying:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        owner.close()
