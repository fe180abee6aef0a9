"""One configuration: keyword arguments > DUCKPULSE_* variables > duckpulse.toml > defaults, each error naming its
source; whichever process owns the file applies the file's rules, notifiers, retention, archive and memory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline import ConfigError, Monitor
from pipeline.cli import main
from pipeline.config import load, options_from_config
from pipeline.settings import ArchiveSettings, RetentionSettings

GOOD = textwrap.dedent("""\
    # every section of duckpulse.toml
    [recording]
    flush_interval_seconds = 5
    max_buffered = 50000

    [storage]
    duckdb_memory_limit = "128MB"
    spool_dir = "spool"

    [alerts]
    interval_seconds = 30
    default_rules = false

    [rollup]
    grace_seconds = 60

    [retention]
    raw_days = 3
    rollups_1h_days = 90

    [archive]
    history_dir = "history"
    history_days = 30

    [[notifier]]
    type = "webhook"
    url = "http://127.0.0.1:9/hook"
    retries = 0
    headers = { Authorization = "Bearer abc" }

    [[notifier]]
    type = "log"
    logger = "myapp.alerts"

    [[rule]]
    name = "checkout_slow"
    metric = "request_duration"
    aggregation = "p95"
    window_seconds = 300
    where = { route = "/checkout" }
    op = "gt"
    value = 800
    level = "warning"
    min_count = 20
""")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "duckpulse.toml"
    path.parent.mkdir()
    path.write_text(GOOD)
    return path


def test_the_file_fills_every_section_with_paths_relative_to_it(config: Path) -> None:
    """Every section of the file reaches its dataclass; relative paths are the file's folder's."""
    s = load(config=config, environ={})
    assert s.config_file == config and s.role == "auto"
    assert (s.recording.flush_interval_seconds, s.recording.max_buffered) == (5.0, 50_000)
    assert s.owner.storage.duckdb_memory_limit == "128MB" and s.owner.storage.spool_dir == config.parent / "spool"
    assert (s.owner.alerts.interval_seconds, s.owner.alerts.default_rules) == (30.0, False)
    assert s.owner.rollup.grace_seconds == 60.0
    assert s.owner.retention == RetentionSettings(raw_days=3, rollups_1h_days=90)
    assert s.owner.archive == ArchiveSettings(history_dir=config.parent / "history", history_days=30)
    assert [(n.type, n.url, n.logger) for n in s.owner.alerts.notifiers] == [
        ("webhook", "http://127.0.0.1:9/hook", "duckpulse.alerts"), ("log", None, "myapp.alerts")]
    assert s.owner.alerts.notifiers[0].headers == (("Authorization", "Bearer abc"),)
    [rule] = s.owner.alerts.rules
    assert (rule.name, rule.aggregation, rule.where, rule.min_count) == ("checkout_slow", "p95",
                                                                         (("route", "/checkout"),), 20)


def test_keywords_beat_variables_beat_the_file_beats_the_defaults(config: Path) -> None:
    """Each source overrides the one below it, field by field."""
    env = {"DUCKPULSE_FLUSH_INTERVAL_SECONDS": "3", "DUCKPULSE_RETENTION_RAW_DAYS": "2", "DUCKPULSE_ROLE": "producer"}
    s = load({"flush_interval_seconds": 2}, config=config, environ=env)
    assert (s.recording.flush_interval_seconds, s.owner.retention.raw_days, s.role) == (2.0, 2.0, "producer")
    assert s.owner.retention.rollups_1h_days == 90  # from the file: the variable set another field
    s = load(config=config, environ=env)
    assert s.recording.flush_interval_seconds == 3.0
    assert load(config=config, environ={}).recording.flush_interval_seconds == 5.0
    assert load(environ={}).recording.flush_interval_seconds == 1.0
    # A whole section given in Python replaces the file's and the variables'.
    assert load({"retention": RetentionSettings(raw_days=9)}, config=config, environ=env).owner.retention == \
        RetentionSettings(raw_days=9)


def test_the_file_is_found_by_argument_then_variable_then_beside_the_database(tmp_path: Path, config: Path) -> None:
    """config= first, then $DUCKPULSE_CONFIG, then duckpulse.toml beside the database; named files must exist."""
    db = config.parent / "metrics.duckdb"
    assert load(db_path=db, environ={}).config_file == config
    other = tmp_path / "other.toml"
    other.write_text("[recording]\nflush_interval_seconds = 7\n")
    assert load(db_path=db, environ={"DUCKPULSE_CONFIG": str(other)}).recording.flush_interval_seconds == 7
    assert load(db_path=db, config=config, environ={"DUCKPULSE_CONFIG": str(other)}).config_file == config
    assert load(db_path=tmp_path / "elsewhere.duckdb", environ={}).config_file is None
    with pytest.raises(ConfigError, match=r"DUCKPULSE_CONFIG='/nope\.toml': no such file"):
        load(db_path=db, environ={"DUCKPULSE_CONFIG": "/nope.toml"})
    with pytest.raises(ConfigError, match=r"config='/nope\.toml': no such file"):
        load(config="/nope.toml", environ={})


@pytest.mark.parametrize(("text", "message"), [
    ("[recording]\nflush_interval_seconds = -1\n",
     r"duckpulse.toml:2: \[recording\] flush_interval_seconds = -1: expected a finite number of seconds > 0"),
    ("[recording]\n\n# a comment\nsample_rate = \"half\"\n",
     r"duckpulse.toml:4: \[recording\] sample_rate: expected a number, got 'half'"),
    ("[retention]\nraw_days = 7\nrollups_1m_days = 0\n",
     r"duckpulse.toml:3: \[retention\] rollups_1m_days = 0: expected a finite number of days > 0"),
    ("[storage]\nduckdb_memory_limit = \"lots\"\n",
     r"duckpulse.toml:2: \[storage\] duckdb_memory_limit = 'lots': expected a size such as \"256MB\""),
    ("[archive]\nhistroy_dir = \"h\"\n", r"duckpulse.toml:2: \[archive\] histroy_dir: unknown field; \[archive\] has"),
    ("[alerts]\n\n[retentoin]\nraw_days = 1\n", r"duckpulse.toml:3: unknown section 'retentoin'"),
    ("[[rule]]\nmetric = \"request_duration\"\nop = \"gt\"\nvalue = 1\nlevel = \"urgent\"\n",
     r"duckpulse.toml:5: rule #1, field 'level': 'urgent' is not a level"),
    ("[[notifier]]\ntype = \"log\"\n\n[[notifier]]\ntype = \"webhook\"\nurl = \"ftp://x\"\n",
     r"duckpulse.toml:6: notifier #2, field 'url': a webhook needs an http:// or https:// URL"),
    ("[[notifier]]\ntype = \"pager\"\n",
     r"duckpulse.toml:2: notifier #1, field 'type': expected \"log\" or \"webhook\""),
    ("[recording\nflush_interval_seconds = 1\n", r"duckpulse.toml:1: not valid TOML"),
])
def test_a_bad_file_names_its_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    """Every mistake in the file raises ConfigError with file:line, the section or array and the field."""
    path = tmp_path / "duckpulse.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(config=path, environ={})


def test_bad_variables_and_keywords_name_themselves(tmp_path: Path) -> None:
    """A bad variable names the variable; a bad keyword the keyword."""
    with pytest.raises(ConfigError, match=r"DUCKPULSE_FLUSH_INTERVAL_SECONDS='soon': expected a number"):
        load(environ={"DUCKPULSE_FLUSH_INTERVAL_SECONDS": "soon"})
    with pytest.raises(ConfigError, match=r"DUCKPULSE_RETENTION_RAW_DAYS='-2': expected a finite number of days"):
        load(environ={"DUCKPULSE_RETENTION_RAW_DAYS": "-2"})
    with pytest.raises(ConfigError, match=r"DUCKPULSE_JOBS='maybe': expected true or false"):
        load(environ={"DUCKPULSE_JOBS": "maybe"})
    with pytest.raises(ConfigError, match=r"alert_interval_seconds=0: expected a finite number of seconds > 0"):
        load({"alert_interval_seconds": 0}, environ={})
    with pytest.raises(ConfigError, match=r"role='boss': expected one of 'auto', 'owner', 'producer'"):
        load({"role": "boss"}, environ={})
    with pytest.raises(ConfigError, match=r"unknown setting 'flush_interval'"):
        Monitor(db_path=tmp_path / "m.duckdb", flush_interval=1)  # type: ignore[call-arg]
    assert load(environ={"DUCKPULSE_MEMORY_INTERVAL_SECONDS": "off"}).recording.memory_interval_seconds is None


def test_a_flask_config_maps_to_keywords() -> None:
    """The DUCKPULSE_* keys of app.config are Monitor keywords; text is read like a variable's."""
    assert options_from_config({"DUCKPULSE_FLUSH_INTERVAL_SECONDS": "2.5", "DUCKPULSE_ROLE": "producer",
                                "DUCKPULSE_TOKEN": "for the dashboard", "SECRET_KEY": "x",
                                "DUCKPULSE_DEFAULT_RULES": False}) == {
        "flush_interval_seconds": 2.5, "role": "producer", "default_rules": False}
    with pytest.raises(ConfigError, match="DUCKPULSE_MAX_BUFFERED='many': expected an integer"):
        options_from_config({"DUCKPULSE_MAX_BUFFERED": "many"})


def test_the_owner_applies_the_file(config: Path) -> None:
    """A monitor owning the file beside duckpulse.toml runs the file's rules, notifiers, memory cap and settings."""
    with Monitor(db_path=config.parent / "metrics.duckdb", jobs=False, memory_interval_seconds=None) as mon:
        assert mon.is_owner and mon.store is not None and mon.alerts is not None
        assert mon.flush_interval_seconds == 5.0 and mon.store.memory_limit == "128MB"
        assert [r.name for r in mon.alerts.rules] == ["checkout_slow"]  # default_rules = false
        assert mon.ingest_dir == config.parent / "spool"
        assert mon.retention_settings.raw_days == 3
        assert mon.jobs_runner._jobs["alerts"].interval_seconds == 30
        webhooks = [n for n in mon.alerts._notifiers if type(n).__name__ == "WebhookNotifier"]
        assert [w.url for w in webhooks] == ["http://127.0.0.1:9/hook"]  # type: ignore[attr-defined]


def test_config_check_reports_the_file_or_its_first_mistake(tmp_path: Path, config: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`duckpulse config check FILE` prints what the file configures, or the error with file:line, exit 2."""
    assert main(["config", "check", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{config} is valid" in out and "rule checkout_slow: p95(request_duration{route=/checkout})[300s]" in out
    assert main(["config", "check", "--db", str(config.parent / "metrics.duckdb")]) == 0  # found beside the db
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text("[retention]\nraw_days = 7\n\n[[rule]]\nmetric = \"request_duration\"\nop = \"over\"\nvalue = 1\n"
                   "level = \"info\"\n")
    assert main(["config", "check", str(bad)]) == 2
    assert f"duckpulse: error: {bad}:6: rule #1, field 'op'" in capsys.readouterr().err
    assert main(["config", "check", "--db", str(tmp_path / "none" / "m.duckdb")]) == 2
    assert "no configuration file to check" in capsys.readouterr().err
