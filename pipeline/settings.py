"""duckpulse's settings: one frozen value, merged once from four places, each error naming where it came from.

Precedence, highest first:

1. keyword arguments (``Monitor(flush_interval_seconds=2)``; the ``DUCKPULSE_*`` keys of a Flask ``app.config``),
2. ``DUCKPULSE_*`` environment variables (``ENVIRONMENT`` below lists them),
3. the configuration file ``duckpulse.toml``: ``Monitor(config=...)`` / ``--config``, else ``$DUCKPULSE_CONFIG``,
   else ``duckpulse.toml`` beside the database when there is one,
4. the defaults of the dataclasses below.

Each section is a frozen dataclass that validates its own fields, and each component takes the section it
needs: ``Monitor`` the ``RecordingSettings``, the owner role (``pipeline/owner.py``) the ``OwnerSettings``, the
rollup, retention and archive jobs their own. A bad value raises ``ConfigError`` naming its source: the keyword,
the variable, or ``file:line`` and ``[section] field``. The file's sections and fields are the dataclasses'
(``docs``: the README's "Configuration file").

This module stays light (no DuckDB, pyarrow or pandas): every process, producers included, reads it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from .alerts.rules import Rule, RuleError, rules_from_document
from .errors import ConfigError
from .malloc import DEFAULT_MEMORY_LIMIT

CONFIG_FILE_NAME = "duckpulse.toml"
CONFIG_VARIABLE = "DUCKPULSE_CONFIG"
ROLES = ("auto", "owner", "producer")
# DuckDB's memory cap inside the owner process (None: DuckDB's default, 80% of RAM). Measured in the soak
# (RELIABILITY.md): an owner's DuckDB holds ~2 MB of index, the rows committed since the last checkpoint, and
# cached table blocks; the cap bounds the cache, which otherwise grows with the file. Too low a cap fails the
# owner's own queries: 32MB could not ingest a backlog of 60,000-row segments in one transaction
# (tests/test_faults.py), and 64MB ran out of memory in an alert sweep of 1,000 rules over 10M rows
# (benchmarks/bench_sweep.py), which 128MB and 256MB both finish in ~0.45 s. (The value lives in malloc.py.)
_MEMORY_LIMIT = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(name: str, value: object, *, allow_zero: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        low = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: expected a finite number of seconds {low}")


def _days(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _is_number(value) or value <= 0:  # type: ignore[operator]
        keep = ", or None to keep it forever" if allow_none else ""
        raise ConfigError(f"{name}={value!r}: expected a finite number of days > 0 (e.g. 0.5 keeps 12 hours){keep}")


def _count(name: str, value: object, what: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r}: expected an integer >= 1{what}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: expected true or false")


# -- the sections ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordingSettings:
    """What every process that records reads: the hot path, the buffer and the flusher."""

    # How often the flusher makes the buffer durable (in DuckDB, or in the spool).
    flush_interval_seconds: float = 1.0
    # Metrics held in memory at most; beyond, the newest are dropped and counted.
    max_buffered: int = 1_000_000
    # A buffer holding this many rows is flushed before the interval is up.
    flush_rows: int = 200_000
    # The fraction of requests recorded (the rest are counted in stats()["sampled_out"]).
    sample_rate: float = 1.0
    # Raise InvalidMetricError on bad input instead of counting it (for tests).
    strict: bool = False
    # Label sets per custom metric name; beyond, new ones fold into one overflow series.
    max_series_per_metric: int = 1_000
    # A psutil sample of the process this often; None: never.
    memory_interval_seconds: float | None = 10.0
    # Each kind of problem is logged at most once per this many seconds.
    log_interval_seconds: float = 60.0
    # Rows carry a clock thread's time, at most this old (0: a clock call per metric, ~40 ns more).
    timestamp_resolution_seconds: float = 0.01
    # The host name stamped on rows; None: this machine's.
    host: str | None = None

    def __post_init__(self) -> None:
        _seconds("flush_interval_seconds", self.flush_interval_seconds)
        _seconds("memory_interval_seconds", self.memory_interval_seconds, allow_none=True)
        _seconds("log_interval_seconds", self.log_interval_seconds)
        _count("max_buffered", self.max_buffered, " (metrics held in memory)")
        _count("flush_rows", self.flush_rows)
        _count("max_series_per_metric", self.max_series_per_metric)
        _flag("strict", self.strict)
        if not _is_number(self.sample_rate) or not 0.0 <= self.sample_rate <= 1.0:
            raise ConfigError(f"sample_rate={self.sample_rate!r}: expected a fraction from 0.0 to 1.0")
        resolution = self.timestamp_resolution_seconds
        if not _is_number(resolution) or not 0 <= resolution < 1:
            raise ConfigError(f"timestamp_resolution_seconds={resolution!r}: expected seconds from 0 (exact "
                              "timestamps, ~40 ns more per metric) to below 1")
        if self.host is not None and (not isinstance(self.host, str) or not self.host):
            raise ConfigError(f"host={self.host!r}: expected a non-empty host name, or None for this machine's")


@dataclass(frozen=True)
class StorageSettings:
    """The owner's database and spool."""

    # DuckDB's buffer pool cap inside the owner (a DuckDB size such as "256MB"); None: DuckDB's 80% of RAM.
    duckdb_memory_limit: str | None = DEFAULT_MEMORY_LIMIT
    # The spool producers write to and the owner ingests; None: <db>.spool beside the database.
    spool_dir: Path | None = None
    # Whether the owner runs its jobs on a scheduler (False: only run_jobs_now() runs them, for tests).
    jobs: bool = True

    def __post_init__(self) -> None:
        limit = self.duckdb_memory_limit
        if limit is not None and (not isinstance(limit, str) or not _MEMORY_LIMIT.match(limit)):
            raise ConfigError(f"duckdb_memory_limit={limit!r}: expected a size such as \"256MB\" or \"1GB\", or "
                              "None for DuckDB's default (80% of RAM)")
        if self.spool_dir is not None and not isinstance(self.spool_dir, str | os.PathLike):
            raise ConfigError(f"spool_dir={self.spool_dir!r}: expected a directory path")
        _flag("jobs", self.jobs)


@dataclass(frozen=True)
class RollupSettings:
    """How the rollup job runs."""

    # Each run re-rolls this much before the minute watermark: rows that arrive this late still count.
    grace_seconds: float = 120.0
    # Each run checks this far back for minutes whose raw rows outnumber their rollup (0: no check).
    late_lookback_seconds: float = 3600.0
    # How often the owner runs the job.
    interval_seconds: float = 30.0

    def __post_init__(self) -> None:
        _seconds("grace_seconds", self.grace_seconds, allow_zero=True)
        _seconds("late_lookback_seconds", self.late_lookback_seconds, allow_zero=True)
        _seconds("interval_seconds", self.interval_seconds)


@dataclass(frozen=True)
class RetentionSettings:
    """How long each tier is kept."""

    # Raw requests, queries, process samples and points, and the ingest ledger.
    raw_days: float = 7.0
    # Per-minute rollups (statistics and bins).
    rollups_1m_days: float = 30.0
    # Per-hour rollups: what percentiles over long ranges read.
    rollups_1h_days: float = 400.0
    # How often the owner runs the job.
    interval_seconds: float = 3600.0

    def __post_init__(self) -> None:
        _days("raw_days", self.raw_days)
        _days("rollups_1m_days", self.rollups_1m_days)
        _days("rollups_1h_days", self.rollups_1h_days)
        _seconds("interval_seconds", self.interval_seconds)


@dataclass(frozen=True)
class ArchiveSettings:
    """Where and when closed hours are exported."""

    # The history root; None means <db>.history beside the DuckDB file (an in-memory store has none).
    history_dir: str | os.PathLike[str] | None = None
    # An hour is exported this long after it ends: later than rows arrive and than the rollups re-roll it.
    grace_seconds: float = 600.0
    # At most this many hours per table and run, so that a first run over a long backlog stays short.
    max_hours_per_run: int = 48
    # History partitions older than this many days are deleted; None keeps the history forever.
    history_days: float | None = None
    # How often the owner runs the job.
    interval_seconds: float = 300.0

    def __post_init__(self) -> None:
        _seconds("grace_seconds", self.grace_seconds, allow_zero=True)
        _seconds("interval_seconds", self.interval_seconds)
        _count("max_hours_per_run", self.max_hours_per_run)
        _days("history_days", self.history_days, allow_none=True)


@dataclass(frozen=True)
class NotifierSettings:
    """One place alert notifications go (a ``[[notifier]]`` table): a logger, or a webhook."""

    # "log" (a Python logger) or "webhook" (POST the notification as JSON).
    type: str
    # webhook: the http:// or https:// URL.
    url: str | None = None
    # log: the logger's name.
    logger: str = "duckpulse.alerts"
    # webhook: seconds per attempt, attempts after the first, and the first wait between them (doubling).
    timeout_seconds: float = 5.0
    retries: int = 3
    backoff_seconds: float = 1.0
    # webhook: extra HTTP headers, e.g. {Authorization = "Bearer ..."}.
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.type not in ("log", "webhook"):
            raise ConfigError(f"type={self.type!r}: expected \"log\" or \"webhook\"")
        if self.type == "webhook" and not (isinstance(self.url, str) and self.url.startswith(("http://", "https://"))):
            raise ConfigError(f"url={self.url!r}: a webhook needs an http:// or https:// URL")
        if not isinstance(self.logger, str) or not self.logger:
            raise ConfigError(f"logger={self.logger!r}: expected a logger name")
        _seconds("timeout_seconds", self.timeout_seconds)
        _seconds("backoff_seconds", self.backoff_seconds, allow_zero=True)
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ConfigError(f"retries={self.retries!r}: expected an integer >= 0")
        headers = dict(self.headers.items() if isinstance(self.headers, Mapping) else self.headers)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ConfigError(f"headers={headers!r}: expected a table of header names to text values")
        object.__setattr__(self, "headers", tuple(sorted(headers.items())))


@dataclass(frozen=True)
class AlertSettings:
    """The owner's alert rules and where their notifications go."""

    # The built-in rules (pipeline.alerts.rules.default_rules): slow requests and queries, memory, failing routes.
    default_rules: bool = True
    # How often every rule is evaluated over its window.
    interval_seconds: float = 10.0
    # Log every notification on the duckpulse.alerts logger.
    log: bool = True
    # Rules of the configuration file ([[rule]] tables), beside the default ones.
    rules: tuple[Rule, ...] = ()
    # Notifiers of the configuration file ([[notifier]] tables).
    notifiers: tuple[NotifierSettings, ...] = ()

    def __post_init__(self) -> None:
        _flag("default_rules", self.default_rules)
        _flag("log", self.log)
        _seconds("interval_seconds", self.interval_seconds)


@dataclass(frozen=True)
class OwnerSettings:
    """Everything the process owning the database applies, whichever process that is."""

    storage: StorageSettings = field(default_factory=StorageSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    rollup: RollupSettings = field(default_factory=RollupSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one monitor."""

    # "auto" (own the database when no other process does, else record as a producer), "owner" (must own)
    # or "producer" (never owns).
    role: str = "auto"
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    owner: OwnerSettings = field(default_factory=OwnerSettings)
    # The configuration file these settings were read from, if any.
    config_file: Path | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"role={self.role!r}: expected one of {', '.join(map(repr, ROLES))} (\"auto\": own "
                              "the database unless another process does, then record as its producer)")


class MonitorOptions(TypedDict, total=False):
    """Monitor's keyword settings (each one given beats the variables and the file; see the dataclasses)."""

    role: str
    flush_interval_seconds: float
    max_buffered: int
    flush_rows: int
    sample_rate: float
    jobs: bool
    strict: bool
    max_series_per_metric: int
    memory_interval_seconds: float | None
    log_interval_seconds: float
    ingest_dir: str | os.PathLike[str] | None
    host: str | None
    default_rules: bool
    alert_interval_seconds: float
    rollup: RollupSettings | None
    retention: RetentionSettings | None
    archive: ArchiveSettings | None
    duckdb_memory_limit: str | None
    timestamp_resolution_seconds: float


# -- where each field may come from ------------------------------------------------------------------------------
# The file's sections hold these dataclasses' fields ([alerts] only its plain fields: rules and notifiers are the
# [[rule]] and [[notifier]] arrays).
SECTIONS: dict[str, type[Any]] = {
    "recording": RecordingSettings, "storage": StorageSettings, "alerts": AlertSettings,
    "rollup": RollupSettings, "retention": RetentionSettings, "archive": ArchiveSettings,
}
_NOT_IN_FILE = {("alerts", "rules"), ("alerts", "notifiers"), ("recording", "host")}
_PATHS = {"spool_dir", "history_dir"}
_TEXTS = {"duckdb_memory_limit", "host"}
_OPTIONAL = {"memory_interval_seconds", "host", "duckdb_memory_limit", "spool_dir", "history_dir", "history_days"}
# Monitor's keyword arguments that name a field differently from the file.
KEYWORDS: dict[str, tuple[str, str]] = {
    "ingest_dir": ("storage", "spool_dir"),
    "alert_interval_seconds": ("alerts", "interval_seconds"),
    **{name: ("recording", name) for name in (f.name for f in dataclasses.fields(RecordingSettings))},
    **{name: ("storage", name) for name in ("duckdb_memory_limit", "jobs")},
    "default_rules": ("alerts", "default_rules"),
}
# Keyword arguments that give a whole section (a RollupSettings, ...): they replace the file's and variables'.
SECTION_KEYWORDS = ("rollup", "retention", "archive")


def _environment() -> dict[str, tuple[str, str]]:
    """DUCKPULSE_* variable -> (section, field). Recording and storage fields keep their name; the jobs' fields
    take their section's (DUCKPULSE_RETENTION_RAW_DAYS); the dashboard's variables (DUCKPULSE_HOST, _PORT,
    _TOKEN, ...) are webapp/config.py's, which is why the row's host name has none."""
    names: dict[str, tuple[str, str]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if (section, f.name) in _NOT_IN_FILE:
                continue
            prefix = "" if section in ("recording", "storage") else f"{section}_"
            names[f"DUCKPULSE_{prefix}{f.name}".upper()] = (section, f.name)
    names["DUCKPULSE_HISTORY_DIR"] = names.pop("DUCKPULSE_ARCHIVE_HISTORY_DIR")  # as `duckpulse sql` reads it
    return names


ENVIRONMENT = _environment()


def _kind(section: str, name: str) -> str:
    if name in _PATHS:
        return "path"
    if name in _TEXTS:
        return "text"
    default = getattr(SECTIONS[section](), name)
    if isinstance(default, bool):
        return "boolean"
    return "integer" if isinstance(default, int) else "number"


_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def _from_text(section: str, name: str, text: str) -> Any:
    """A variable's text as the field's type; raises ValueError saying what was expected."""
    kind = _kind(section, name)
    if name in _OPTIONAL and text.strip().lower() in ("", "none", "off"):
        return None
    if kind == "boolean":
        if text.strip().lower() not in _TRUE | _FALSE:
            raise ValueError("expected true or false (1/0, yes/no, on/off)")
        return text.strip().lower() in _TRUE
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind == 'integer' else 'a number'}") from None
    return Path(text) if kind == "path" else text


def _from_toml(section: str, name: str, value: Any, base: Path) -> Any:
    """A file's value as the field's type (paths relative to the file's folder); ValueError if mistyped."""
    kind = _kind(section, name)
    if name in _OPTIONAL and value is False:  # TOML has no null: `false` switches an optional setting off
        return None
    ok = {"boolean": isinstance(value, bool), "integer": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, int | float) and not isinstance(value, bool),
          "text": isinstance(value, str), "path": isinstance(value, str)}[kind]
    if not ok:
        off = " (or false: off)" if name in _OPTIONAL else ""
        raise ValueError(f"expected {'a' if kind != 'integer' else 'an'} {kind}{off}, got {value!r}")
    if kind == "number":
        return float(value)
    return base / value if kind == "path" else value


def _expected(exc: ConfigError) -> str:
    """The "expected ..." part of a dataclass's "name=value: expected ..." message."""
    text = str(exc)
    return text.split(": ", 1)[1] if re.match(r"^\w+=", text) and ": " in text else text


@dataclass
class _Value:
    value: Any
    # Where it came from, for messages: "keyword=1" (an argument), "DUCKPULSE_X='1'" or "file:line: [s] field = 1".
    source: str


# -- the configuration file --------------------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[")


def _section_line(lines: list[str], section: str, key: str | None) -> int:
    """The 1-based line of ``key`` in ``[section]`` (its header if the key is not found; 1 without either)."""
    header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]")
    start = next((n for n, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return 1
    if key is not None:
        pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*=""")
        for n in range(start + 1, len(lines)):
            if _HEADER.match(lines[n]):
                break
            if pattern.match(lines[n]):
                return n + 1
    return start + 1


def _top_line(lines: list[str], key: str) -> int:
    pattern = re.compile(rf"""^\s*(?:\[\[?\s*{re.escape(key)}\s*\]|{re.escape(key)}\s*=)""")
    return next((n + 1 for n, line in enumerate(lines) if pattern.match(line)), 1)


@dataclass
class ConfigFile:
    """What a configuration file holds: field values by section (each with its source), rules and notifiers."""

    path: Path
    values: dict[str, dict[str, _Value]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    notifiers: tuple[NotifierSettings, ...] = ()


def read_config_file(path: str | os.PathLike[str]) -> ConfigFile:
    """Parse and check a configuration file; any error raises ConfigError naming ``file:line`` and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc}") from exc
    lines = text.splitlines()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        raise ConfigError(f"{path}:{found[1] if found else 1}: not valid TOML: {exc}") from None
    result = ConfigFile(path)
    base = path.parent
    for key, content in data.items():
        line = _top_line(lines, key)
        if key == "rule":
            try:
                result.rules = tuple(rules_from_document(content, lines, str(path)))
            except RuleError as exc:
                raise ConfigError(str(exc)) from None
        elif key == "notifier":
            result.notifiers = _notifiers(content, lines, path)
        elif key in SECTIONS and isinstance(content, dict):
            result.values[key] = _section_values(key, content, lines, path, base)
        else:
            raise ConfigError(f"{path}:{line}: unknown {'section' if isinstance(content, dict) else 'key'} "
                              f"{key!r}; the file holds the sections {', '.join(f'[{s}]' for s in SECTIONS)} and "
                              "the arrays [[rule]] and [[notifier]]")
    return result


def _section_values(section: str, content: dict[str, Any], lines: list[str], path: Path,
                    base: Path) -> dict[str, _Value]:
    cls = SECTIONS[section]
    known = [f.name for f in dataclasses.fields(cls) if (section, f.name) not in _NOT_IN_FILE]
    values: dict[str, _Value] = {}
    for name, raw in content.items():
        line = _section_line(lines, section, name)
        where = f"{path}:{line}: [{section}] {name}"
        if name not in known:
            raise ConfigError(f"{where}: unknown field; [{section}] has {', '.join(known)}")
        try:
            value = _from_toml(section, name, raw, base)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        values[name] = _Value(value, f"{where} = {raw!r}")
    return values


def _notifiers(content: Any, lines: list[str], path: Path) -> tuple[NotifierSettings, ...]:
    if not isinstance(content, list):
        raise ConfigError(f"{path}:{_top_line(lines, 'notifier')}: 'notifier' must be an array of tables: write "
                          "each notifier under its own [[notifier]] header")
    from .alerts.rules import field_line

    known = [f.name for f in dataclasses.fields(NotifierSettings)]
    notifiers: list[NotifierSettings] = []
    for index, table in enumerate(content):
        def fail(name: str | None, message: str, index: int = index) -> ConfigError:
            line = field_line(lines, index, name, array="notifier")
            return ConfigError(f"{path}:{line}: notifier #{index + 1}{f', field {name!r}' if name else ''}: "
                               f"{message}")

        unknown = [k for k in table if k not in known]
        if unknown:
            raise fail(unknown[0], f"unknown field; the fields are {', '.join(known)}")
        if "type" not in table:
            raise fail(None, "missing field 'type' (\"log\" or \"webhook\")")
        for name, value in table.items():
            alone = ({"type": value, "url": "http://localhost"} if name == "type" else
                     {"type": "webhook", "url": value} if name == "url" else {"type": "log", name: value})
            if name == "url" and table["type"] != "webhook":
                continue
            try:
                NotifierSettings(**alone)
            except ConfigError as exc:
                raise fail(name, _expected(exc)) from None
            except TypeError as exc:
                raise fail(name, str(exc)) from None
        try:
            notifiers.append(NotifierSettings(**table))
        except ConfigError as exc:
            bad = re.match(r"^(\w+)=", str(exc))
            raise fail(bad[1] if bad else None, _expected(exc)) from None
    return tuple(notifiers)


def find_config_file(config: str | os.PathLike[str] | None, db_path: str | os.PathLike[str] | None,
                     environ: Mapping[str, str]) -> Path | None:
    """The configuration file to read: ``config``, else ``$DUCKPULSE_CONFIG``, else ``duckpulse.toml`` beside the
    database when there is one. A file named explicitly must exist."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config={os.fspath(config)!r}: no such file; give the path of a duckpulse.toml")
        return path
    named = environ.get(CONFIG_VARIABLE)
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"{CONFIG_VARIABLE}={named!r}: no such file; point it at a duckpulse.toml, or unset it")
        return Path(named)
    if db_path is not None and os.fspath(db_path) != ":memory:":
        beside = Path(db_path).parent / CONFIG_FILE_NAME
        if beside.is_file():
            return beside
    return None


# -- merging ---------------------------------------------------------------------------------------------------
def load(options: Mapping[str, Any] | None = None, *, db_path: str | os.PathLike[str] | None = None,
         config: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of a monitor: ``options`` (keyword arguments) > ``DUCKPULSE_*`` variables > the file > defaults.

    ``options`` holds only what the caller gave (Monitor's keyword arguments; absent means "not given").
    """
    options = dict(options or {})
    environ = os.environ if environ is None else environ
    file = find_config_file(config, db_path, environ)
    parsed = read_config_file(file) if file is not None else None
    merged: dict[str, dict[str, _Value]] = {s: dict(parsed.values.get(s, {})) if parsed else {} for s in SECTIONS}
    for variable, (section, name) in ENVIRONMENT.items():
        text = environ.get(variable)
        if text is None:
            continue
        try:
            merged[section][name] = _Value(_from_text(section, name, text), f"{variable}={text!r}")
        except ValueError as exc:
            raise ConfigError(f"{variable}={text!r}: {exc}") from None
    role = environ.get("DUCKPULSE_ROLE", "auto")
    for key, value in options.items():
        if key == "role":
            role = value
        elif key in KEYWORDS:
            section, name = KEYWORDS[key]
            if name in _PATHS and isinstance(value, str | os.PathLike):
                value = Path(value)
            merged[section][name] = _Value(value, f"{key}={value!r}")
        elif key not in SECTION_KEYWORDS:
            raise ConfigError(f"unknown setting {key!r}; the settings are {', '.join(sorted(KEYWORDS))}, "
                              f"{', '.join(SECTION_KEYWORDS)} and role")
    sections = {section: _build(SECTIONS[section], merged[section]) for section in SECTIONS}
    for key in SECTION_KEYWORDS:
        if options.get(key) is not None:
            if not isinstance(options[key], SECTIONS[key]):
                raise ConfigError(f"{key}={options[key]!r}: expected a {SECTIONS[key].__name__}")
            sections[key] = options[key]
    if parsed is not None:
        sections["alerts"] = dataclasses.replace(sections["alerts"], rules=parsed.rules, notifiers=parsed.notifiers)
    owner = OwnerSettings(storage=sections["storage"], alerts=sections["alerts"], rollup=sections["rollup"],
                          retention=sections["retention"], archive=sections["archive"])
    return Settings(role=role, recording=sections["recording"], owner=owner, config_file=file)


def _build(cls: type[Any], values: Mapping[str, _Value]) -> Any:
    """The section from its values; a bad one raises ConfigError naming its source."""
    for name, item in values.items():
        try:
            cls(**{name: item.value})
        except ConfigError as exc:
            raise ConfigError(f"{item.source}: {_expected(exc)}") from None
    return cls(**{name: item.value for name, item in values.items()})


def options_from_config(config: Mapping[str, Any], prefix: str = "DUCKPULSE_") -> dict[str, Any]:
    """Monitor's keyword arguments from the ``DUCKPULSE_*`` keys of a mapping (a Flask ``app.config``): each key
    is a keyword in capitals (DUCKPULSE_FLUSH_INTERVAL_SECONDS), plus DUCKPULSE_ROLE and DUCKPULSE_CONFIG. Text
    values are read like the environment's; other keys (the dashboard's, the middleware's) are left alone."""
    options: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        name = key.removeprefix(prefix).lower()
        if name in ("role", "config"):
            options[name] = value
        elif name in KEYWORDS and name != "host":
            section, field_name = KEYWORDS[name]
            if isinstance(value, str):
                try:
                    value = _from_text(section, field_name, value)
                except ValueError as exc:
                    raise ConfigError(f"{key}={value!r}: {exc}") from None
            options[name] = value
    return options


def differences(current: Settings, options: Mapping[str, Any]) -> list[str]:
    """The keyword settings in ``options`` whose values differ from ``current`` (a monitor created again)."""
    sections = {"recording": current.recording, "storage": current.owner.storage, "alerts": current.owner.alerts}
    found: list[str] = []
    for key, value in options.items():
        if key == "role":
            have: Any = current.role
        elif key == "config":
            if value is None:  # found the same way again
                continue
            have, value = current.config_file, Path(value)
        elif key in SECTION_KEYWORDS:
            have = getattr(current.owner, key)
        elif key in KEYWORDS:
            section, name = KEYWORDS[key]
            have = getattr(sections[section], name)
            value = Path(value) if name in _PATHS and isinstance(value, str | os.PathLike) else value
        else:
            continue
        if (value != have and value is not None) or (value is None and have is not None and key in KEYWORDS):
            found.append(f"{key}={value!r} (open: {have!r})")
    return found


def describe(settings: Settings) -> list[str]:
    """What a configuration amounts to, one line per part (``duckpulse config check``)."""
    owner = settings.owner
    alerts = owner.alerts
    notifiers = ", ".join(n.type + (f" {n.url}" if n.url else f" ({n.logger})") for n in alerts.notifiers)
    return [
        f"recording: flush every {settings.recording.flush_interval_seconds:g} s, at most "
        f"{settings.recording.max_buffered:,} metrics buffered, sample rate {settings.recording.sample_rate:g}",
        f"storage: DuckDB memory limit {owner.storage.duckdb_memory_limit or 'DuckDB default (80% of RAM)'}, "
        f"spool {owner.storage.spool_dir or '<db>.spool'}",
        f"alerts: {len(alerts.rules)} rule(s) from the file"
        f"{' plus the default rules' if alerts.default_rules else ' (default rules off)'}, swept every "
        f"{alerts.interval_seconds:g} s; notifiers: {'log' if alerts.log else 'no log'}"
        f"{', ' + notifiers if notifiers else ''}",
        *(f"  rule {r.name}: {r.describe()} ({r.level})" for r in alerts.rules),
        f"retention: raw {owner.retention.raw_days:g} d, 1-minute rollups {owner.retention.rollups_1m_days:g} d, "
        f"1-hour rollups {owner.retention.rollups_1h_days:g} d",
        f"archive: {owner.archive.history_dir or '<db>.history'}, kept "
        f"{'forever' if owner.archive.history_days is None else f'{owner.archive.history_days:g} d'}",
    ]
