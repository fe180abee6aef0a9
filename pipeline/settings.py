"""duckpulse's settings: one frozen value (``Settings``), a dataclass per section, each validating its own fields.

Each component takes the section it needs: ``Monitor`` the ``RecordingSettings``, the owner role
(``pipeline/owner.py``) the ``OwnerSettings``, the rollup, retention, archive and publish jobs their own. Where
the values come from (keyword arguments > ``DUCKPULSE_*`` variables > duckpulse.toml > these defaults) is
pipeline/config.py.

This module stays light (no DuckDB, pyarrow or pandas): every process, producers included, reads it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from .alerts.rules import Rule
from .caps import DEFAULT_MAX_ROUTES
from .errors import ConfigError
from .malloc import DEFAULT_MEMORY_LIMIT
from .objectstore import ObjectStoreSettings as ObjectStoreSettings
from .objectstore import is_object_url, parse_url
from .outbox import OutboxSettings as OutboxSettings

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


# The flusher (and an owner's ingest, which runs as often) wakes this often at most.
MIN_FLUSH_INTERVAL_SECONDS = 0.05


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
    # Custom metrics (name, kind and label set) per process; beyond, new ones are refused and counted.
    max_instruments: int = 10_000
    # Distinct routes (and query names) per process; beyond, new ones are stored as "<other>", counted.
    max_routes: int = DEFAULT_MAX_ROUTES
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
        if self.flush_interval_seconds < MIN_FLUSH_INTERVAL_SECONDS:
            raise ConfigError(f"flush_interval_seconds={self.flush_interval_seconds!r}: expected at least "
                              f"{MIN_FLUSH_INTERVAL_SECONDS} s; shorter intervals only burn CPU (0.0001 s kept an idle "
                              "owner at 92% of a core), and a full buffer is flushed early anyway (flush_rows)")
        _seconds("memory_interval_seconds", self.memory_interval_seconds, allow_none=True)
        _seconds("log_interval_seconds", self.log_interval_seconds)
        _count("max_buffered", self.max_buffered, " (metrics held in memory)")
        _count("flush_rows", self.flush_rows)
        _count("max_series_per_metric", self.max_series_per_metric)
        _count("max_instruments", self.max_instruments, " (custom metrics per process)")
        _count("max_routes", self.max_routes, " (distinct routes per process)")
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
    # A fleet's spool in object storage, "s3://bucket/prefix": producers on any host upload their segments there
    # (Monitor(spool_url=...)), and the owner ingests every host's from there, beside its local spool.
    spool_url: str | None = None
    # Whether the owner runs its jobs on a scheduler (False: only run_jobs_now() runs them, for tests).
    jobs: bool = True

    def __post_init__(self) -> None:
        limit = self.duckdb_memory_limit
        if limit is not None and (not isinstance(limit, str) or not _MEMORY_LIMIT.match(limit)):
            raise ConfigError(f"duckdb_memory_limit={limit!r}: expected a size such as \"256MB\" or \"1GB\", or "
                              "None for DuckDB's default (80% of RAM)")
        if is_object_url(self.spool_dir):
            raise ConfigError(f"spool_dir={self.spool_dir!r} is in object storage: give it as spool_url (spool_dir "
                              "is a local directory)")
        if self.spool_dir is not None and not isinstance(self.spool_dir, str | os.PathLike):
            raise ConfigError(f"spool_dir={self.spool_dir!r}: expected a directory path")
        if self.spool_url is not None:
            parse_url(self.spool_url, "spool_url")
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

    # The history root: a directory, or "s3://bucket/history" (the archive writes <db>.history, and the
    # history-upload job mirrors it there); None means <db>.history beside the DuckDB file.
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
        if is_object_url(self.history_dir):
            parse_url(str(self.history_dir), "history_dir")


@dataclass(frozen=True)
class PublishSettings:
    """How often the owner publishes its not yet archived rows for readers in other processes, and how far back."""

    # How often the owner publishes; readers are at most this plus a flush interval behind.
    interval_seconds: float = 15.0
    # A minute file stays until every watermark published this long back is above it (readers read one per query).
    keep_seconds: float = 3600.0
    # At most this much before now is published, however far the archive lags; rows stamped more than this ahead
    # of the owner's clock are not published either (no working clock stamps them).
    max_window_seconds: float = 6 * 3600.0

    def __post_init__(self) -> None:
        _seconds("interval_seconds", self.interval_seconds)
        _seconds("keep_seconds", self.keep_seconds)
        _seconds("max_window_seconds", self.max_window_seconds)


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
    publish: PublishSettings = field(default_factory=PublishSettings)


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one monitor."""

    # "auto" (own the database when no other process does, else record as a producer), "owner" (must own)
    # or "producer" (never owns).
    role: str = "auto"
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    owner: OwnerSettings = field(default_factory=OwnerSettings)
    # How to reach the object store of a fleet (storage.spool_url, archive.history_dir = "s3://..."), and where a
    # fleet producer's segments wait for it; whichever process needs them reads them.
    object_store: ObjectStoreSettings = field(default_factory=ObjectStoreSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
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
    max_instruments: int
    max_routes: int
    memory_interval_seconds: float | None
    log_interval_seconds: float
    ingest_dir: str | os.PathLike[str] | None
    spool_url: str | None
    host: str | None
    default_rules: bool
    alert_interval_seconds: float
    rollup: RollupSettings | None
    retention: RetentionSettings | None
    archive: ArchiveSettings | None
    object_store: ObjectStoreSettings | None
    outbox: OutboxSettings | None
    publish: PublishSettings | None
    duckdb_memory_limit: str | None
    timestamp_resolution_seconds: float
