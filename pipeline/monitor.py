"""``Monitor``: the recording API an application calls, and the wiring behind it.

Hot path (``track_request``, ``track_query``, instruments): validate a number with one chained comparison
(which also rejects NaN), extend a list with the row's values, stamped with the time a clock thread keeps
(``clock.Timestamps``). Everything else (columns, fingerprints, writing) happens on the flusher thread, or
inline only when a raw list is full. The WSGI integration goes further: it queues the finished request itself
(``_finished``) and its row is made on the flusher thread too (``_record_finished``).

An owner (``db_path``) appends batches straight into DuckDB and ingests segments that forked children or other
processes spool next to it; a producer (``spool_dir``) writes segments for an owner to ingest.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import itertools
import math
import os
import random
import socket
import tempfile
import threading
import time as _time
import weakref
from collections import Counter as _Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .alerts.rules import DEFAULT_REPEAT_INTERVAL_SECONDS, Rule
from .buffer import RAW_CAP, TICK_COMPACT_ROWS, Buffer, Flush
from .clock import SYSTEM_CLOCK, Clock, Timestamps
from .context import UNMATCHED, end_returned_request
from .context import active_request as _active_request
from .errors import ConfigError, DuckPulseError, InvalidMetricError, NoMonitorError
from .fingerprint import DIALECTS, resolve_dialect
from .instruments import Counter, Gauge, Histogram, Registry, RejectedInstrument
from .jobs import Jobs
from .logs import ThrottledLog, logger
from .malloc import DEFAULT_MEMORY_LIMIT
from .process import ProcessSampler
from .spool import SpoolWriter, flush_tables, write_segment

# What only an owner needs (DuckDB, the jobs, alerts) is imported when a process becomes one, so a producer
# never loads it (tests/test_footprint.py): DuckDB alone adds ~14 MB to a process.
if TYPE_CHECKING:
    import pandas as pd

    from .alerts.engine import Alerts
    from .alerts.notify import Notifier
    from .archive import ArchiveSettings
    from .ingest import Ingestor
    from .percentiles import Percentile
    from .retention import RetentionSettings
    from .rollup import RollupSettings
    from .store import Store

INF = math.inf
# Finished requests an integration may queue for the flusher to record (beyond, it records them itself).
FINISHED_CAP = 16_384
P = ParamSpec("P")
R = TypeVar("R")


class _StoreSink:
    """The owner's flush: the same segment files a producer writes, loaded in one transaction, then removed
    (one write path for both roles; DuckDB reads them at several million rows per second). They go to the
    system's temporary directory, so an owner leaves nothing beside its database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seq = itertools.count()

    def write(self, flush: Flush) -> None:
        files: list[tuple[str, Path]] = []
        try:
            for table, _ in flush_tables(flush):
                path = Path(tempfile.gettempdir()) / f"duckpulse-flush-{os.getpid()}-{next(self._seq)}-{table}.parquet"
                files.append((table, path))
                with open(path, "wb") as f:
                    write_segment(f, flush, table)
            self.store.load_files(files)
        finally:
            for _, path in files:
                path.unlink(missing_ok=True)


class _SpoolSink:
    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer

    def write(self, flush: Flush) -> None:
        self.writer.write(flush)


def _positive(name: str, value: float, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int | float) or not 0 < value < INF:
        raise ConfigError(f"{name}={value!r}: expected a number of seconds > 0")


class _HotState:
    """The hot path's attributes and the private state, in slots.

    Past 30 instance attributes CPython stops sharing instance-dict keys, and both attribute reads and method
    lookups (``mon.track_request``) get slower, ~10-30 ns per call. Slots keep the instance dict small.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_buffer",
        "_closed",
        "_counts_lock",
        "_finished",
        "_flush_lock",
        "_folded",
        "_next_flush",
        "_next_sample",
        "_random",
        "_raw_queries",
        "_raw_requests",
        "_raw_samples",
        "_registry",
        "_sampled_out",
        "_sampler",
        "_sink",
        "_stamps",
        "_stop",
        "_thread",
        "next_request_id",
    )

    _buffer: Buffer
    _stamps: Timestamps
    _raw_requests: list[Any]
    _raw_queries: list[Any]
    _raw_samples: list[Any]
    _finished: list[Any]
    next_request_id: Callable[[], int]
    """A request id unique within this process (rows also carry pid and host)."""


class Monitor(_HotState):
    """Records requests, queries, process samples and custom metrics, and makes them durable in batches.

    Exactly one of ``db_path`` (this process owns the DuckDB file) and ``spool_dir`` (this process is a
    producer; ``duckpulse serve`` owns the file) is given. ``duckdb_memory_limit`` caps the DuckDB buffer
    pool inside an owner (a DuckDB size string, ``"256MB"`` by default; None leaves DuckDB's 80% of RAM).
    """

    # The storage jobs' settings (pipeline/rollup.py, retention.py, archive.py): an owner's only, set when it
    # becomes one (their modules import DuckDB, which a producer never loads).
    rollup_settings: RollupSettings
    retention_settings: RetentionSettings
    archive_settings: ArchiveSettings

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        *,
        flush_interval_seconds: float = 1.0,
        max_buffered: int = 1_000_000,
        flush_rows: int = 200_000,
        sample_rate: float = 1.0,
        jobs: bool = True,
        clock: Clock | None = None,
        strict: bool = False,
        max_series_per_metric: int = 1_000,
        memory_interval_seconds: float | None = 10.0,
        log_interval_seconds: float = 60.0,
        ingest_dir: str | os.PathLike[str] | None = None,
        host: str | None = None,
        default_rules: bool = True,
        alert_interval_seconds: float = 10.0,
        rollup: RollupSettings | None = None,
        retention: RetentionSettings | None = None,
        archive: ArchiveSettings | None = None,
        duckdb_memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
        timestamp_resolution_seconds: float = 0.01,
    ) -> None:
        if (db_path is None) == (spool_dir is None):
            raise ConfigError("Monitor needs exactly one of db_path (this process owns the DuckDB file) and "
                              "spool_dir (this process is a producer; run `duckpulse serve` as the owner)")
        _positive("flush_interval_seconds", flush_interval_seconds)
        _positive("memory_interval_seconds", memory_interval_seconds, allow_none=True)  # type: ignore[arg-type]
        _positive("log_interval_seconds", log_interval_seconds)
        if not isinstance(max_buffered, int) or max_buffered < 1:
            raise ConfigError(f"max_buffered={max_buffered!r}: expected an integer >= 1 (metrics held in memory)")
        if not isinstance(flush_rows, int) or flush_rows < 1:
            raise ConfigError(f"flush_rows={flush_rows!r}: expected an integer >= 1")
        if not isinstance(sample_rate, int | float) or not 0.0 <= sample_rate <= 1.0:
            raise ConfigError(f"sample_rate={sample_rate!r}: expected a fraction from 0.0 to 1.0")
        if not isinstance(timestamp_resolution_seconds, int | float) or not 0 <= timestamp_resolution_seconds < 1:
            raise ConfigError(f"timestamp_resolution_seconds={timestamp_resolution_seconds!r}: expected seconds "
                              "from 0 (exact timestamps, ~40 ns more per metric) to below 1")
        if not isinstance(max_series_per_metric, int) or max_series_per_metric < 1:
            raise ConfigError(f"max_series_per_metric={max_series_per_metric!r}: expected an integer >= 1")

        self.clock: Clock = clock or SYSTEM_CLOCK
        self.flush_interval_seconds = float(flush_interval_seconds)
        self.max_buffered = max_buffered
        self.flush_rows = flush_rows
        self.sample_rate = float(sample_rate)
        self.strict = strict
        self.jobs = jobs
        self.max_series_per_metric = max_series_per_metric
        self.timestamp_resolution_seconds = float(timestamp_resolution_seconds)
        self.memory_interval_seconds = memory_interval_seconds
        self.host = host or socket.gethostname()
        self.log = ThrottledLog(self.clock, log_interval_seconds)
        # The storage jobs' settings (pipeline/rollup.py, retention.py, archive.py); defaults when None.

        self.store: Store | None = None
        self.ingestor: Ingestor | None = None
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.db_path = Path(db_path) if db_path is not None and str(db_path) != ":memory:" else None
        self.ingest_dir: Path | None = None
        if db_path is not None:
            from .archive import ArchiveSettings
            from .ingest import Ingestor
            from .retention import RetentionSettings
            from .rollup import RollupSettings
            from .store import Store

            self.rollup_settings = rollup or RollupSettings()
            self.retention_settings = retention or RetentionSettings()
            self.archive_settings = archive or ArchiveSettings()
            self.store = Store(db_path, self.clock, memory_limit=duckdb_memory_limit)
            self.ingest_dir = Path(ingest_dir) if ingest_dir else (
                self.db_path.with_name(self.db_path.name + ".spool") if self.db_path else None)
            if self.ingest_dir is not None:
                self.ingestor = Ingestor(self.store, self.ingest_dir, self.clock, self.log)
            self._sink: _StoreSink | _SpoolSink = _StoreSink(self.store)
        else:
            assert self.spool_dir is not None
            self._sink = _SpoolSink(SpoolWriter(self.spool_dir, self.host))
        if self.sample_rate < 1.0:
            # Swapped in only when asked for, so the default hot path pays nothing for sampling.
            self.track_request = self._track_request_sampled  # type: ignore[method-assign]
        self._closed = False
        # Alert rules are evaluated by the owner only (a producer has no database to sweep).
        self.alerts: Alerts | None = None
        self._after_flush: Callable[[Flush], None] | None = None
        if self.store is not None:
            from .alerts.engine import Alerts
            from .jobs import owner_jobs

            self.alerts = Alerts(self.store, self.clock, self.log, default_rules=default_rules,
                                 interval_seconds=alert_interval_seconds)
            self._after_flush = self.alerts.after_flush
        self.jobs_runner = Jobs(self.clock, self.log)
        if self.store is not None:
            for job in owner_jobs(self):
                self.jobs_runner.add(job)
        self._create_process_state()
        if self.store is not None and jobs:
            self.jobs_runner.start()
        _register(self)

    # -- per-process state (reset in a forked child) -------------------------------------------------------
    def _create_process_state(self) -> None:
        self.pid = os.getpid()
        self._buffer = Buffer(self.max_buffered, self.pid, self.host)
        self._raw_requests = self._buffer.raw["requests"]
        self._raw_queries = self._buffer.raw["queries"]
        self._raw_samples = self._buffer.raw["process_samples"]
        self._finished = []
        self._stamps = Timestamps(self.clock, self.timestamp_resolution_seconds, self._buffer.activity)
        self._random = random.random
        self._registry = Registry(self._buffer, self._stamps, self._reject, self._fold,
                                  self.max_series_per_metric)
        self._start_process_state()

    def _start_process_state(self) -> None:
        # next_request_id() is the counter's own __next__: a C call, no Python frame, paid by every request.
        self.next_request_id = itertools.count(1).__next__
        self._sampler: ProcessSampler | None = None
        self._flush_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._folded: _Counter[str] = _Counter()
        self._sampled_out = 0
        self._unclosed: _Counter[str] = _Counter()  # requests recorded without their response's end, by why
        self.flush_failures = 0
        self.last_flush_at: float | None = None
        self.last_flush_error: str | None = None
        self._next_flush = self.clock.monotonic() + self.flush_interval_seconds
        self._next_sample = self.clock.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duckpulse-flusher", daemon=True)
        self._thread.start()
        self._stamps.start()

    def _after_fork_in_child(self) -> None:
        # The parent's threads did not survive the fork, its locks may be held by them, and its buffer is the
        # parent's to flush. An owner's child must never touch the parent's DuckDB connection: it becomes a
        # producer into the owner's spool, which the parent ingests.
        if self._closed:
            return
        self.jobs_runner = Jobs(self.clock, self.log)  # the scheduler's threads stayed in the parent
        if self.store is not None:
            self.store.abandon()
            self.store = None
            self.ingestor = None
            spool = self.ingest_dir or Path(f"duckpulse-{self.pid}.spool")
            self.spool_dir = spool
            self._sink = _SpoolSink(SpoolWriter(spool, self.host))
        self.log = ThrottledLog(self.clock, self.log._interval)
        # The buffer, the registry and the clock are reset in place, not replaced: instruments the app made
        # before the fork (module-level counters under gunicorn --preload) keep recording into this process.
        self.pid = os.getpid()
        self._buffer.reset_after_fork(self.pid)
        del self._finished[:]  # the parent's requests, the parent's to record
        self._registry.reset_after_fork()
        self._start_process_state()

    @property
    def is_owner(self) -> bool:
        return self.store is not None

    # -- the hot path --------------------------------------------------------------------------------------
    # request_id and query_count are not keyword-only on purpose: CPython 3.11 specializes calls to functions
    # without keyword-only parameters (CALL_PY_WITH_DEFAULTS), which saves ~25 ns per call.
    def track_request(self, route: str, method: str, status: int, duration_ms: float,
                      request_id: int | None = None, query_count: int = 0, ts: float | None = None) -> None:
        """Record one served request: its route template, method, HTTP status and duration.

        ``ts`` is when it ended, in epoch seconds (default: now).
        """
        try:
            if 0.0 <= duration_ms < INF:  # also False for NaN
                # The clock thread's time, or (None: exact mode, or the thread idles) the clock's.
                row = (ts or self._stamps.seconds or self._stamps.now(), route, method, status, duration_ms,
                       request_id, query_count)
                raw = self._raw_requests
                if len(raw) < RAW_CAP:
                    raw += row
                else:
                    self._buffer.raw_full("requests", row)
                return
        except TypeError:
            pass
        self._reject_duration("request", duration_ms)

    def _track_request_sampled(self, route: str, method: str, status: int, duration_ms: float,
                               request_id: int | None = None, query_count: int = 0,
                               ts: float | None = None) -> None:
        """track_request for sample_rate < 1: records a random fraction and counts the rest."""
        if self._random() >= self.sample_rate:
            self._count_sampled_out()
            return
        Monitor.track_request(self, route, method, status, duration_ms, request_id, query_count, ts)

    def track_query(self, sql: str, duration_ms: float, success: bool = True, *, name: str | None = None,
                    request_id: int | None = None, route: str | None = None, dialect: str | None = None) -> None:
        """Record one database query; only its fingerprint (literals replaced by ?) is ever stored.

        Inside a request opened by an integration, the query is tied to that request (id and route) and
        counted in the request's ``query_count``. ``dialect`` (``"postgresql"``, ``"mysql"``, ``"sqlite"``, ...,
        see ``pipeline.fingerprint``) says how to read the SQL; None, or a name not known there, reads it the
        safe way (whatever could be a value in any dialect is one). It travels with the row to the flusher
        thread, where the fingerprint is made.
        """
        try:
            if 0.0 <= duration_ms < INF:
                ctx = _active_request()
                if ctx is not None:
                    ctx_id = ctx.request_id
                    if ctx_id is None:  # an integration leaves it to its first query (None: not recorded)
                        ctx_id = ctx.claim_request_id(self.next_request_id)
                    if ctx_id is not None:
                        ctx.query_count += 1
                        if request_id is None:
                            request_id = ctx_id
                            route = route or ctx.route or UNMATCHED  # the route its request's row will have
                row = (self._stamps.seconds or self._stamps.now(), sql, name, duration_ms, success, request_id,
                       route, dialect)
                raw = self._raw_queries
                if len(raw) < RAW_CAP:
                    raw += row
                else:
                    self._buffer.raw_full("queries", row)
                return
        except TypeError:
            pass
        self._reject_duration("query", duration_ms)

    def counter(self, name: str, labels: Mapping[str, str] | None = None) -> Counter:
        """The counter ``name`` with these labels (keep it: looking it up again costs a dict lookup)."""
        return self._registry.get("counter", name, labels)  # type: ignore[return-value]

    def gauge(self, name: str, labels: Mapping[str, str] | None = None) -> Gauge:
        """The gauge ``name`` with these labels."""
        return self._registry.get("gauge", name, labels)  # type: ignore[return-value]

    def histogram(self, name: str, labels: Mapping[str, str] | None = None) -> Histogram:
        """The histogram ``name`` with these labels."""
        return self._registry.get("histogram", name, labels)  # type: ignore[return-value]

    @contextmanager
    def _timed_query(self, name: str, sql: str | None, dialect: str | None = None) -> Iterator[None]:
        start = _time.perf_counter()
        success = False
        try:
            yield
            success = True
        finally:
            self.track_query(sql if sql is not None else name, (_time.perf_counter() - start) * 1000.0,
                             success, name=name, dialect=dialect)

    def time_query(self, name: str, sql: str | None = None, dialect: str | None = None) -> _QueryTimer:
        """Time a block or a function as a query named ``name``; an exception records success=False.

        Use as ``with mon.time_query("load_user"): ...`` or as a decorator ``@mon.time_query("load_user")``.
        ``dialect`` says how to read ``sql`` (see ``track_query``); a name not known raises ValueError here.
        """
        if dialect is not None and resolve_dialect(dialect) is None:
            raise ValueError(f"time_query: unknown SQL dialect {dialect!r}; use one of {sorted(DIALECTS)} "
                             "(or a driver name such as 'psycopg2', 'pymysql', 'sqlite3'), or None to read the "
                             "statement the safe way")
        return _QueryTimer(self, name, sql, dialect)

    def track_memory(self, full: bool = False) -> None:
        """Record one psutil sample of this process (``full`` adds USS, which costs milliseconds)."""
        try:
            if self._sampler is None:
                self._sampler = ProcessSampler()
            self._raw_samples.extend(self._sampler.sample(self.clock.now(), full))
        except Exception as exc:  # psutil can fail in sandboxes; monitoring must not break the app
            self._note_failure("process_sample", f"cannot sample this process: {exc}")

    # -- slow branches of the hot path -------------------------------------------------------------------
    def _count_sampled_out(self) -> None:
        with self._counts_lock:
            self._sampled_out += 1

    def count_unclosed(self, why: str) -> None:
        """An integration recorded a request whose response was neither closed nor read to its end."""
        with self._counts_lock:
            self._unclosed[why] += 1

    def _reject_duration(self, what: str, value: object) -> None:
        if isinstance(value, float) and math.isnan(value):
            reason = "nan_duration"
        elif isinstance(value, int | float) and value < 0:
            reason = "negative_duration"
        elif isinstance(value, int | float):
            reason = "infinite_duration"
        else:
            reason = "duration_not_number"
        self._reject(reason, f"{what} duration_ms={value!r} is not a finite number of milliseconds >= 0; "
                             "pass the elapsed time, e.g. (time.perf_counter() - start) * 1000")

    def _reject(self, reason: str, detail: str) -> None:
        self._buffer.reject(reason)
        if self.strict:
            raise InvalidMetricError(reason, detail)
        self.log.warning(f"rejected:{reason}", f"duckpulse rejected a metric: {detail}")

    def _fold(self, reason: str, detail: str) -> None:
        with self._counts_lock:
            self._folded[reason] += 1
        if self.strict:
            raise InvalidMetricError(reason, detail)
        self.log.warning(f"folded:{reason}", f"duckpulse: {detail}")

    def _note_failure(self, key: str, message: str, exc: BaseException | None = None) -> None:
        self.log.warning(key, f"duckpulse: {message}", exc_info=exc)

    # -- flushing ----------------------------------------------------------------------------------------
    def _record_finished(self) -> None:
        """Make the rows of the requests integrations finished since the last call (see integrations/wsgi.py):
        they queue the request itself, and its row is made here, off the request path."""
        finished = self._finished
        n = len(finished)
        if not n:
            return
        chunk = finished[:n]
        del finished[:n]  # atomic, like the raw lists: requests finishing meanwhile land after the n taken
        for request in chunk:
            try:
                request.record(self)
            except Exception as exc:  # one bad request must not stop the others, nor the flusher
                self._note_failure("record", f"cannot record a finished request: {exc!r}", exc)
                if self.strict:
                    raise

    def _compact(self, min_rows: int = 0) -> None:
        end_returned_request()  # a response this thread left unclosed (a test client's) is recorded now
        self._record_finished()
        problems = self._buffer.compact(min_rows)
        for reason, detail in problems:
            self.log.warning(f"rejected:{reason}", f"duckpulse rejected a metric: {detail}")
        if problems and self.strict:
            raise InvalidMetricError(problems[0][0], problems[0][1])

    def flush(self) -> bool:
        """Make everything recorded before this call durable (in DuckDB, or in the spool).

        Returns False if writing failed; the data then stays buffered (up to ``max_buffered``) for the next
        attempt, and the failure is counted in ``stats()["flush_failures"]``.
        """
        if self._closed:
            return True
        with self._flush_lock:
            self._compact()
            tables = self._buffer.take()
            if not tables:
                return True
            try:
                self._sink.write(tables)
            except Exception as exc:
                self._buffer.restore(tables)
                self.flush_failures += 1
                self.last_flush_error = f"{type(exc).__name__}: {exc}"
                self._note_failure("flush", f"flush failed, {tables.rows} rows kept "
                                   f"in the buffer for the next attempt: {self.last_flush_error}", exc)
                if self.strict:
                    raise
                return False
            self._buffer.committed(tables)
            self.last_flush_at = self.clock.now()
            if self._after_flush is not None and self.store is not None:  # owner only (a forked child is not)
                self._after_flush(tables)  # single-event alert thresholds; never raises
            return True

    # -- alerts (pipeline/alerts) --------------------------------------------------------------------------
    def _owner_alerts(self) -> Alerts:
        if self.alerts is None:
            raise ConfigError("alert rules are evaluated by the process that owns the DuckDB file; add them "
                              "there (Monitor(db_path=...) or `duckpulse serve`), not in a spool_dir producer")
        return self.alerts

    def add_threshold(self, metric: str, op: str, value: float, level: str, message: str = "", *,
                      aggregation: str = "max", window_seconds: float = 60.0, for_seconds: float = 0.0,
                      keep_firing_seconds: float = 0.0, by: tuple[str, ...] | list[str] | str = (),
                      where: Mapping[str, object] | None = None, name: str | None = None,
                      repeat_interval_seconds: float = DEFAULT_REPEAT_INTERVAL_SECONDS) -> Rule:
        """Alert when ``aggregation(metric)`` over the window is ``op value`` (owner only); returns the rule.

        The defaults keep the plan's meaning: ``add_threshold("request_duration", "gt", 3000, "critical")``
        alerts on any single request over 3 s. See ``pipeline.alerts.rules.Rule`` for every field.
        """
        return self._owner_alerts().add_threshold(
            metric, op, value, level, message, aggregation=aggregation, window_seconds=window_seconds,
            for_seconds=for_seconds, keep_firing_seconds=keep_firing_seconds, by=by, where=where, name=name,
            repeat_interval_seconds=repeat_interval_seconds)

    def load_rules(self, path: str | os.PathLike[str]) -> list[Rule]:
        """Add the alert rules of a TOML file (all or none; a bad file raises ConfigError with file:line)."""
        return self._owner_alerts().load_rules(Path(path))

    def on_alert(self, callback: Notifier) -> Callable[[], None]:
        """Call ``callback(notification)`` for every alert notification; returns an unsubscribe function."""
        return self._owner_alerts().on_alert(callback)

    def percentiles(self, metric: str, quantiles: float | Sequence[float] = (0.5, 0.95, 0.99),
                    window: str | float | timedelta | None = None,
                    **options: Any) -> dict[float, Percentile] | pd.DataFrame:
        """Quantiles of a metric from this owner's database; ``pipeline.percentiles`` documents every option."""
        from .percentiles import percentiles as _percentiles

        result: dict[float, Percentile] | pd.DataFrame = _percentiles(self, metric, quantiles, window, **options)
        return result

    def ingest_now(self) -> int:
        """Owner only: ingest every ready spool segment now; returns the rows loaded."""
        if self.ingestor is None:
            return 0
        try:
            return self.ingestor.drain()
        except Exception as exc:
            self.ingestor.stats.failures += 1
            self.ingestor.stats.last_error = f"{type(exc).__name__}: {exc}"
            self._note_failure("ingest", f"ingest failed: {self.ingestor.stats.last_error}", exc)
            if self.strict:
                raise
            return 0

    def run_jobs_now(self) -> dict[str, Any]:
        """Flush, then run every owner job once, synchronously (for tests and scripts); returns each job's
        result by name (a producer has no jobs: it only flushes)."""
        self.flush()
        return self.jobs_runner.run_all_now()

    def tick(self) -> None:
        """One step of the flusher loop: compact, and flush / ingest / sample when they are due."""
        now = self.clock.monotonic()
        self._compact(TICK_COMPACT_ROWS)
        if self.memory_interval_seconds is not None and now >= self._next_sample:
            self._next_sample = now + self.memory_interval_seconds
            self.track_memory()
        if now >= self._next_flush or self._buffer.buffered_rows() >= self.flush_rows:
            self._next_flush = now + self.flush_interval_seconds
            self.flush()

    def _run(self) -> None:
        # Compaction runs often (it bounds memory); flushing runs every flush_interval_seconds on self.clock.
        tick_seconds = min(0.1, self.flush_interval_seconds / 4)
        while not self._stop.wait(tick_seconds):
            try:
                self.tick()
            except Exception as exc:  # the loop must survive anything, or metrics would pile up unflushed
                self._note_failure("flusher", f"flusher step failed: {exc}", exc)

    # -- state -------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts that prove nothing is lost silently: recorded == flushed + sum(dropped) + pending."""
        with contextlib.suppress(InvalidMetricError):  # stats() reports problems, it does not raise them
            self._compact()
        counts = self._buffer.counts()
        with self._counts_lock:
            counts["folded"] = dict(self._folded)
            counts["sampled_out"] = self._sampled_out
            counts["recorded_unclosed"] = dict(self._unclosed)
        counts.update(
            flush_failures=self.flush_failures,
            last_flush_at=self.last_flush_at,
            last_flush_error=self.last_flush_error,
            buffered_bytes=self._buffer.nbytes(),
            role="owner" if self.is_owner else "producer",
            pid=self.pid,
            jobs=self.jobs_runner.status(),
        )
        if self.ingestor is not None:
            st = self.ingestor.stats
            counts["ingest"] = {
                "segments": st.segments, "rows": st.rows, "quarantined": st.quarantined, "failures": st.failures,
                "last_ingest_at": st.last_ingest_at, "last_error": st.last_error,
                "backlog": self.ingestor.backlog(),
            }
        return counts

    def close(self) -> None:
        """Flush what is buffered, stop the flusher and (owner) ingest a last time and close the file."""
        if self._closed:
            return
        self._stop.set()
        self._stamps.stop()
        self.jobs_runner.shutdown()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        try:
            self.flush()
            self.ingest_now()
        finally:
            self._closed = True
            _unregister(self)
            if self.alerts is not None and self.store is not None:
                self.alerts.close()  # webhooks deliver what they hold, within a timeout
            if self.store is not None:
                try:
                    self.store.close()
                except Exception as exc:  # e.g. the final checkpoint on a full disk: the WAL keeps what was committed
                    self._note_failure("close", f"closing {self.db_path} failed (committed rows stay in its WAL and "
                                       f"are replayed at the next open): {exc}", exc)
                    if self.strict:
                        raise

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _QueryTimer:
    """``Monitor.time_query``: a context manager and a decorator (sync and async functions)."""

    def __init__(self, monitor: Monitor, name: str, sql: str | None, dialect: str | None = None) -> None:
        self._monitor, self._name, self._sql, self._dialect = monitor, name, sql, dialect
        self._cm: Any = None

    def __enter__(self) -> None:
        self._cm = self._monitor._timed_query(self._name, self._sql, self._dialect)
        self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        cm.__exit__(*exc)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        monitor, name, sql, dialect = self._monitor, self._name, self._sql, self._dialect
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with monitor._timed_query(name, sql, dialect):
                    return await func(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with monitor._timed_query(name, sql, dialect):
                return func(*args, **kwargs)
        return wrapper


# -- process-wide registry of open monitors: default_monitor(), fork and exit handling --------------------
_open: list[weakref.ref[Monitor]] = []
_open_lock = threading.Lock()


def _register(monitor: Monitor) -> None:
    with _open_lock:
        _open.append(weakref.ref(monitor))


def _unregister(monitor: Monitor) -> None:
    with _open_lock:
        _open[:] = [r for r in _open if r() is not None and r() is not monitor]


def _live() -> list[Monitor]:
    return [m for m in (r() for r in list(_open)) if m is not None and not m.closed]


def default_monitor() -> Monitor:
    """The most recently created Monitor that is still open."""
    live = _live()
    if not live:
        raise NoMonitorError("no duckpulse Monitor is open in this process. Create one first, e.g. "
                             "Monitor(db_path='metrics.duckdb'), or pass monitor=... explicitly")
    return live[-1]


def _after_fork_in_child() -> None:
    global _open_lock
    _open_lock = threading.Lock()
    for monitor in _live():
        try:
            monitor._after_fork_in_child()
        except Exception as exc:  # never break the child process over monitoring
            logger.warning("duckpulse: cannot restart the monitor after fork: %s", exc)


def _close_all_at_exit() -> None:
    for monitor in reversed(_live()):
        try:
            monitor.close()
        except DuckPulseError as exc:
            logger.warning("duckpulse: final flush at exit failed: %s", exc)
        except Exception as exc:
            logger.warning("duckpulse: final flush at exit failed: %s", exc)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
_ = RejectedInstrument  # re-exported for type checkers of integrations
