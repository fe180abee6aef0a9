"""``Monitor``: the recording API an application calls, its buffer, its flusher, and the sink it flushes to.

Hot path (``track_request``, ``track_query``, instruments): validate a number with one chained comparison
(which also rejects NaN), extend a list with the row's values, stamped with the time a clock thread keeps
(``clock.Timestamps``). Everything else (columns, fingerprints, writing) happens on the flusher thread, or
inline only when a raw list is full. (The WSGI integration makes a request's row on the
serving thread as its response ends: a row queued for the flusher costs more CPU in all, under the same GIL.)

The flusher writes into a sink: the owner's store, or the database's spool. Which one, the ownership this process
holds and the one it may take over when the owner ends are the monitor's role (pipeline/role.py); the hot path
never sees it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import random
import socket
import threading
from collections import Counter as _Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, Unpack

from . import exceptions as _exceptions
from . import open_monitors, reloader
from .alerts.rules import DEFAULT_REPEAT_INTERVAL_SECONDS, Rule, load_rules_file, make_rule
from .buffer import RAW_CAP, TICK_COMPACT_ROWS, Buffer
from .caps import OVERFLOW_METHOD, OVERFLOW_ROUTE
from .clock import SYSTEM_CLOCK, Clock, SystemClock, Timestamps
from .config import differences
from .config import load as load_settings
from .context import UNMATCHED, end_returned_request
from .context import active_request as _active_request
from .errors import ConfigError, InvalidMetricError, MonitorClosedError, OwnershipError
from .faults import RecentFaults
from .fingerprint import DIALECTS, resolve_dialect
from .instruments import Counter, Gauge, Histogram, QueryTimer, Registry, RejectedInstrument
from .jobs import Jobs
from .logs import ThrottledLog
from .outbox import OutboxFull
from .owner_lock import holder
from .process import ProcessSampler
from .role import CLAIM_INTERVAL_SECONDS, Role
from .settings import MonitorOptions, Settings
from .validate import TS_MAX_AGE_SECONDS, TS_MAX_AHEAD_SECONDS, duration_message, duration_reason, ts_problem

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
P = ParamSpec("P")
R = TypeVar("R")


if TYPE_CHECKING:
    _OnePerFile = type
else:
    class _OnePerFile(type):
        """``Monitor(db_path=X)`` returns the open monitor of X in this process, if any (pipeline/open_monitors.py).

        Hidden from type checkers, which then check calls against ``Monitor.__init__``'s signature.
        """

        def __call__(cls, db_path=None, spool_dir=None, **kwargs):
            if db_path is None and spool_dir is None and kwargs.get("spool_url") is None:
                db_path = os.environ.get("DUCKPULSE_DB_PATH") or None
            return open_monitors.get_or_create(
                open_monitors.key(db_path, spool_dir, kwargs.get("spool_url")), kwargs,
                lambda: super(_OnePerFile, cls).__call__(db_path, spool_dir, **kwargs))


class _HotState(metaclass=_OnePerFile):
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
    next_request_id: Callable[[], int]
    """A request id unique within this process (rows also carry pid and host)."""


class Monitor(_HotState):
    """Records requests, queries, process samples and custom metrics, and makes them durable in batches.

    ``Monitor(db_path=X)``: this process owns X if no other process does (``role="auto"``, the default), else it
    records as a producer into X's spool and takes ownership over when the owner ends. ``role="owner"`` must own
    (OwnershipError otherwise), ``role="producer"`` never does. ``Monitor(spool_dir=S)`` is a pure producer into S.
    ``Monitor(spool_url="s3://bucket/prefix")`` is a fleet's producer on any host: its segments wait in a local
    outbox and are uploaded there (pipeline/outbox.py), for a central owner (``duckpulse serve --spool s3://...``).
    A second ``Monitor(db_path=X)`` in the same process returns the first (see pipeline/open_monitors.py).

    Settings (``pipeline.settings.MonitorOptions``) come from these keyword arguments, then ``DUCKPULSE_*``
    variables, then the configuration file (``config=``, ``$DUCKPULSE_CONFIG``, or duckpulse.toml beside X).
    """

    def __init__(self, db_path: str | os.PathLike[str] | None = None,
                 spool_dir: str | os.PathLike[str] | None = None, *, clock: Clock | None = None,
                 config: str | os.PathLike[str] | None = None, **options: Unpack[MonitorOptions]) -> None:
        self.settings: Settings = load_settings(options, db_path=db_path, config=config)
        spool_url = self.settings.owner.storage.spool_url if db_path is None and spool_dir is None else None
        given_url = options.get("spool_url") is not None and spool_dir is not None  # both given: which one?
        if (db_path is not None) + (spool_dir is not None) + (spool_url is not None) != 1 or given_url:
            raise ConfigError("Monitor needs exactly one of db_path (the DuckDB file: this process owns it, or records "
                              "into its spool while another process does), spool_dir (a producer only) and spool_url "
                              "(a producer of a fleet, uploading to object storage: s3://bucket/prefix)")
        recording = self.settings.recording
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.flush_interval_seconds = float(recording.flush_interval_seconds)
        self.max_buffered = recording.max_buffered
        self.flush_rows = recording.flush_rows
        self.sample_rate = float(recording.sample_rate)
        self.strict = recording.strict
        self.jobs = self.settings.owner.storage.jobs
        self.max_series_per_metric = recording.max_series_per_metric
        self.timestamp_resolution_seconds = float(recording.timestamp_resolution_seconds)
        self.memory_interval_seconds = recording.memory_interval_seconds
        self.host = recording.host or socket.gethostname()
        self.log = ThrottledLog(self.clock, recording.log_interval_seconds)
        self._handles = 1  # Monitor(...) calls that returned this monitor and were not closed yet
        self._role = Role(db_path, spool_dir, self.settings, self.clock, self.log, self.host)
        self.db_path, self.spool_dir = self._role.db_path, Path(spool_dir) if spool_dir is not None else None
        if self.sample_rate < 1.0:
            # Swapped in only when asked for, so the default hot path pays nothing for sampling.
            self.track_request = self._track_request_sampled  # type: ignore[method-assign]
        self._closed = False
        self._create_process_state()
        if self._role.ownership is not None and self.jobs:
            self._role.ownership.start_jobs()
        open_monitors.register(self, open_monitors.key(db_path, spool_dir, spool_url))

    def _differences(self, options: Mapping[str, Any]) -> list[str]:
        """What a new Monitor(...) call of this file asked for differently (it gets this monitor as it is); raises
        OwnershipError when it insists on owning (role="owner") and this process does not."""
        if options.get("role") == "owner" and not self.is_owner:
            raise OwnershipError(f"{self.db_path} is already owned by process {holder(self.db_path)} (this process "
                                 "records into its spool as a producer): role='owner' cannot be satisfied") \
                if self.db_path is not None else OwnershipError("a producer monitor of this spool is open in this "
                                                                "process: role='owner' needs db_path")
        found = differences(self.settings, options)
        clock = options.get("clock")
        if clock is not None and clock is not self.clock:
            found.append(f"clock={clock!r} (open: {self.clock!r})")
        return found

    # -- the role (pipeline/role.py) -----------------------------------------------------------------------
    @property
    def role(self) -> str:
        """"auto", "owner" or "producer": what this monitor was asked to be (``is_owner`` says what it is now)."""
        return self._role.name

    @property
    def is_owner(self) -> bool:
        """Whether this process owns the database now (in role "auto" it may become the owner later)."""
        return self._role.ownership is not None

    @property
    def can_own(self) -> bool:
        """Whether this monitor owns, or may own later, its database (role "producer" and spool_dir never do)."""
        return self._role.can_own

    @property
    def store(self) -> Store | None:
        """The owner's DuckDB store; None while this process does not own the file."""
        ownership = self._role.ownership
        return ownership.store if ownership is not None else None

    @property
    def ingestor(self) -> Ingestor | None:
        ownership = self._role.ownership
        return ownership.ingestor if ownership is not None else None

    @property
    def alerts(self) -> Alerts | None:
        """The owner's alert engine (states, events, silences); None while this process does not own the file."""
        ownership = self._role.ownership
        return ownership.alerts if ownership is not None else None

    @property
    def jobs_runner(self) -> Jobs:
        """The owner's jobs; a producer has none."""
        ownership = self._role.ownership
        return ownership.jobs if ownership is not None else _NO_JOBS

    @property
    def ingest_dir(self) -> Path | None:
        """The database's spool: where its producers write and its owner ingests (None for a pure producer)."""
        return self._role.database_spool

    @property
    def rollup_settings(self) -> RollupSettings:
        return self.settings.owner.rollup

    @property
    def retention_settings(self) -> RetentionSettings:
        return self.settings.owner.retention

    @property
    def archive_settings(self) -> ArchiveSettings:
        return self.settings.owner.archive

    # -- per-process state (reset in a forked child) -------------------------------------------------------
    def _create_process_state(self) -> None:
        self.pid = os.getpid()
        self._buffer = Buffer(self.max_buffered, self.pid, self.host, self.settings.recording.max_routes)
        self._raw_requests = self._buffer.raw["requests"]
        self._raw_queries = self._buffer.raw["queries"]
        self._raw_samples = self._buffer.raw["process_samples"]
        self._stamps = Timestamps(self.clock, self.timestamp_resolution_seconds, self._buffer.activity)
        self._random = random.random
        self._registry = Registry(self._buffer, self._stamps, self._reject, self._fold,
                                  self.max_series_per_metric, self.settings.recording.max_instruments)
        self._bind_recorder()
        self._start_process_state()

    def _bind_recorder(self) -> None:
        """``track_request`` in C (pipeline/_record.c, ~4x cheaper counting its compaction) where its rows are the
        Python path's exactly: the system clock (a test's FakeClock keeps the Python path), every request
        recorded (sample_rate 1), and Monitor's own method. Where the extension was not compiled, nothing
        changes. What the recorder does not take (a value not certainly storable, a timestamp out of range) it
        passes to ``Monitor.track_request``, which refuses and counts it as always."""
        if (not isinstance(self.clock, SystemClock) or self.sample_rate < 1.0
                or type(self).track_request is not Monitor.track_request):
            return
        fallback = functools.partial(Monitor.track_request, self)
        recorder = self._buffer.attach_recorder(fallback, self.timestamp_resolution_seconds)
        if recorder is not None:
            self.track_request = recorder.track_request  # type: ignore[method-assign]

    def _start_process_state(self) -> None:
        # next_request_id() is the counter's own __next__: a C call, no Python frame, paid by every request.
        self.next_request_id = itertools.count(1).__next__
        self._sampler: ProcessSampler | None = None
        self._flush_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._role.flush_lock = self._flush_lock
        self._folded: _Counter[str] = _Counter()
        self._folds_logged = 0
        self._sampled_out = 0
        self._unclosed: _Counter[str] = _Counter()  # requests recorded without their response's end, by why
        self.flush_failures = 0
        self._faults = RecentFaults(self.clock)  # which of the fault counts grew lately (health judges by those)
        self.last_flush_at: float | None = None
        self.last_flush_error: str | None = None
        self._next_flush = self.clock.monotonic() + self.flush_interval_seconds
        self._next_sample = self.clock.monotonic()
        self._next_claim = self.clock.monotonic() + CLAIM_INTERVAL_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duckpulse-flusher", daemon=True)
        self._thread.start()
        self._stamps.start()

    def _after_fork_in_child(self) -> None:
        # The parent's threads did not survive the fork, its locks may be held by them, and its buffer is the
        # parent's to flush. An owner's child must never touch the parent's DuckDB connection: it becomes a
        # producer into the owner's spool, which the parent ingests (pipeline/role.py).
        if self._closed:
            return
        self._role.after_fork()
        self.log = ThrottledLog(self.clock, self.log._interval)
        self._role.log = self.log
        # The buffer, the registry and the clock are reset in place, not replaced: instruments the app made
        # before the fork (module-level counters under gunicorn --preload) keep recording into this process.
        self.pid = os.getpid()
        self._buffer.reset_after_fork(self.pid)
        self._registry.reset_after_fork()
        self._start_process_state()

    # -- the hot path --------------------------------------------------------------------------------------
    # request_id and query_count are not keyword-only on purpose: CPython 3.11 specializes calls to functions
    # without keyword-only parameters (CALL_PY_WITH_DEFAULTS), which saves ~25 ns per call.
    def track_request(self, route: str, method: str, status: int, duration_ms: float,
                      request_id: int | None = None, query_count: int = 0, ts: float | None = None) -> None:
        """Record one served request: its route template, method, HTTP status and duration.

        ``ts`` is when it ended, in epoch seconds (default: now); one more than 30 years old or a day ahead is
        refused (``pipeline.validate``).
        """
        if ts is not None:
            self._track_request_at(route, method, status, duration_ms, request_id, query_count, ts)
            return
        try:
            if 0.0 <= duration_ms < INF:  # also False for NaN
                # The clock thread's time, or (None: exact mode, or the thread idles) the clock's.
                row = (self._stamps.seconds or self._stamps.now(), route, method, status, duration_ms,
                       request_id, query_count)
                raw = self._raw_requests
                if len(raw) < RAW_CAP:
                    raw += row
                else:
                    self._buffer.raw_full("requests", row)
                return
        except Exception:  # Decimal('NaN') raises InvalidOperation, a caller's type anything
            pass
        self._reject_duration("request", duration_ms)

    def _track_request_at(self, route: str, method: str, status: int, duration_ms: float,
                          request_id: int | None, query_count: int, ts: float) -> None:
        """track_request with its own timestamp (the WSGI integration's, on the flusher thread): two chained
        comparisons accept it; only a refused one is looked at closely (``pipeline.validate``)."""
        now = self._stamps.seconds or self._stamps.now()
        try:
            if now - TS_MAX_AGE_SECONDS <= ts <= now + TS_MAX_AHEAD_SECONDS and 0.0 <= duration_ms < INF:
                self._buffer.append("requests", (ts, route, method, status, duration_ms, request_id, query_count))
                return
        except Exception:  # as in track_request
            pass
        problem = ts_problem(ts, now)
        if problem is not None:
            self._reject(*problem)
        else:
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
        except Exception:  # as in track_request
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

    def time_query(self, name: str, sql: str | None = None, dialect: str | None = None) -> QueryTimer:
        """Time a block or a function as a query named ``name``; an exception records success=False.

        Use as ``with mon.time_query("load_user"): ...`` or as a decorator ``@mon.time_query("load_user")``.
        ``dialect`` says how to read ``sql`` (see ``track_query``); a name not known raises ValueError here.
        """
        if dialect is not None and resolve_dialect(dialect) is None:
            raise ValueError(f"time_query: unknown SQL dialect {dialect!r}; use one of {sorted(DIALECTS)} "
                             "(or a driver name such as 'psycopg2', 'pymysql', 'sqlite3'), or None to read the "
                             "statement the safe way")
        return QueryTimer(self.track_query, name, sql, dialect)

    def track_exception(self, exc: BaseException, route: str | None = None, request_id: int | None = None) -> None:
        """Record an exception a request raised and did not handle (the integrations call it): its type, where it
        was raised and its message with every literal removed; never the raw message, never a local variable.
        The row is made on the flusher thread (pipeline/exceptions.py); ``request_id`` ties it to the request."""
        _exceptions.record(self._buffer, self._stamps.seconds or self._stamps.now(), exc, route, request_id,
                           self._reject)

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
        self._reject(duration_reason(value), duration_message(what, value))

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
    def _compact(self, min_rows: int = 0) -> None:
        end_returned_request()  # a response this thread left unclosed (a test client's) is recorded now
        problems = self._buffer.compact(min_rows)
        for reason, detail in problems:
            self.log.warning(f"rejected:{reason}", f"duckpulse rejected a metric: {detail}")
        folded = self._buffer.folded
        if folded and folded.total() > self._folds_logged:
            self._folds_logged = folded.total()
            self.log.warning("folded:caps", f"duckpulse: routes, methods or query names beyond their caps were "
                             f"folded into {OVERFLOW_ROUTE!r} / {OVERFLOW_METHOD!r} or cut: {dict(folded)} rows so "
                             f"far (max_routes={self.settings.recording.max_routes} distinct routes per process; "
                             "README, 'Caps')")
        if problems and self.strict:
            raise InvalidMetricError(problems[0][0], problems[0][1])

    def flush(self) -> bool:
        """Make everything recorded before this call durable (in DuckDB, or in the spool).

        Returns False if writing failed; the data then stays buffered (up to ``max_buffered``) for the next
        attempt, and the failure is counted in ``stats()["flush_failures"]``. A fleet producer whose outbox is full
        (the object store unreachable for long) drops the flush instead, counted in ``stats()["dropped"]
        ["outbox_full"]``, and returns False too. After ``close()`` nothing can be written: True if nothing was
        recorded since, else False (strict: MonitorClosedError), the rows staying pending in ``stats()``.
        """
        if self._closed:
            return self._flush_closed()
        with self._flush_lock:
            self._compact()
            tables = self._buffer.take()
            if not tables:
                return True
            try:
                self._role.sink.write(tables)  # the owner's also checks single-event alert thresholds
            except OutboxFull as exc:  # what cannot be kept is dropped, and counted
                self._buffer.discard(tables, "outbox_full")
                self.last_flush_error = f"{type(exc).__name__}: {exc}"
                self._note_failure("outbox_full", f"{exc} ({tables.rows} rows, counted in "
                                   "stats()['dropped']['outbox_full'])")
                return False
            except Exception as exc:
                self._buffer.restore(tables)
                self.flush_failures += 1
                self.last_flush_error = f"{type(exc).__name__}: {exc}"
                self._faults.observe(self._fault_totals())
                self._note_failure("flush", f"flush failed, {tables.rows} rows kept "
                                   f"in the buffer for the next attempt: {self.last_flush_error}", exc)
                if self.strict:
                    raise
                return False
            self._buffer.committed(tables)
            self.last_flush_at = self.clock.now()
            self._faults.observe(self._fault_totals())  # a fault is dated by the flush that first sees it
            return True

    def _flush_closed(self) -> bool:
        with self._flush_lock:
            self._compact()
            pending = self._buffer.buffered_rows()
        if not pending:
            return True
        detail = (f"flush() after close(): this monitor is closed and cannot write the {pending} rows recorded "
                  "since; they stay pending (stats()['pending']). Record into an open monitor: keep it open until "
                  "the app stops, or create a new Monitor(...)")
        if self.strict:
            raise MonitorClosedError(detail)
        self.log.warning("flush:closed", f"duckpulse: {detail}")
        return False

    # -- alerts (pipeline/alerts): kept by the role, applied by whichever ownership this process holds -------
    def add_threshold(self, metric: str, op: str, value: float, level: str, message: str = "", *,
                      aggregation: str = "max", window_seconds: float = 60.0, for_seconds: float = 0.0,
                      keep_firing_seconds: float = 0.0, by: tuple[str, ...] | list[str] | str = (),
                      where: Mapping[str, object] | None = None, name: str | None = None,
                      repeat_interval_seconds: float = DEFAULT_REPEAT_INTERVAL_SECONDS,
                      min_count: int = 1) -> Rule:
        """Alert when ``aggregation(metric)`` over the window is ``op value``; returns the rule.

        The defaults keep the plan's meaning: ``add_threshold("request_duration", "gt", 3000, "critical")``
        alerts on any single request over 3 s. See ``pipeline.alerts.rules.Rule`` for every field. The rule is
        evaluated by whichever process owns the database: given to a monitor that is a producer for now, it is
        kept and applied once this process owns the file (to give every process the same rules, use the
        configuration file).
        """
        rule = make_rule(metric, op, value, level, message, aggregation=aggregation, window_seconds=window_seconds,
                         for_seconds=for_seconds, keep_firing_seconds=keep_firing_seconds, by=by, where=where,
                         name=name, repeat_interval_seconds=repeat_interval_seconds, min_count=min_count)
        self._role.add_rules([rule])
        return rule

    def load_rules(self, path: str | os.PathLike[str]) -> list[Rule]:
        """Add the alert rules of a TOML file (all or none; a bad file raises ConfigError with file:line)."""
        rules = load_rules_file(Path(path))
        self._role.add_rules(rules)
        return rules

    def on_alert(self, callback: Notifier) -> Callable[[], None]:
        """Call ``callback(notification)`` for every alert notification while this process owns the database
        (kept until then); returns an unsubscribe function."""
        return self._role.on_alert(callback)

    def percentiles(self, metric: str, quantiles: float | Sequence[float] = (0.5, 0.95, 0.99),
                    window: str | float | timedelta | None = None,
                    **options: Any) -> dict[float, Percentile] | pd.DataFrame:
        """Quantiles of a metric from this owner's database; ``pipeline.percentiles`` documents every option."""
        from .percentiles import percentiles

        result: dict[float, Percentile] | pd.DataFrame = percentiles(self, metric, quantiles, window, **options)
        return result

    def ingest_now(self) -> int:
        """Owner only: ingest every ready spool segment now; returns the rows loaded."""
        ownership = self._role.ownership
        return ownership.ingest_now() if ownership is not None else 0

    def run_jobs_now(self) -> dict[str, Any]:
        """Flush, then run every owner job once, synchronously (for tests and scripts); returns each job's
        result by name (a producer has no jobs: it only flushes)."""
        self.flush()
        return self.jobs_runner.run_all_now()

    def tick(self) -> None:
        """One step of the flusher loop: compact, try to own (role "auto"), flush / sample when they are due."""
        now = self.clock.monotonic()
        reloader.arm_if_watcher()  # flask run --debug: the watcher lets its child flush before killing it
        if self._role.claim is not None and now >= self._next_claim:
            self._next_claim = now + CLAIM_INTERVAL_SECONDS
            self._role.claim_now()
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
            counts["folded"] = {**counts["folded"], **self._folded}  # routes/methods, then names/labels
            counts["sampled_out"] = self._sampled_out
            counts["recorded_unclosed"] = dict(self._unclosed)
        ownership = self._role.ownership
        counts.update(
            flush_failures=self.flush_failures,
            last_flush_at=self.last_flush_at,
            last_flush_error=self.last_flush_error,
            buffered_bytes=self._buffer.nbytes(),
            role="owner" if ownership is not None else "producer",
            pid=self.pid,
            takeovers=self._role.takeovers,
            jobs=self.jobs_runner.status(),
        )
        if ownership is not None:
            counts.update(ownership.stats())
        counts.update(self._role.sink_stats())
        # The counts above are since the start; these say which of them grew lately: name -> seconds since.
        counts["recent_faults"] = self._faults.observe(self._fault_totals(counts))
        counts["fault_window_seconds"] = self._faults.window_seconds
        return counts

    def _fault_totals(self, counts: Mapping[str, Any] | None = None) -> dict[str, int]:
        """Every fault count since the start, by name (see pipeline/faults.py)."""
        dropped = (counts or self._buffer.counts())["dropped"]
        totals = {"dropped": int(sum(dropped.values())), "flush_failures": self.flush_failures}
        if self.ingestor is not None:
            totals.update(ingest_failures=self.ingestor.stats.failures, quarantined=self.ingestor.stats.quarantined)
        if self.store is not None:
            totals["database_file_lost"] = self.store.file_lost.count
        return totals

    def close(self) -> None:
        """Flush what is buffered, stop the flusher and (owner) ingest a last time, close the file and release it.

        One close per ``Monitor(...)`` call that returned this monitor: it really closes at the last one (and at
        exit). A monitor in role "auto" that finds the file free at that moment owns it for its last flush, so
        what producers left in the spool is ingested.
        """
        if self._closed:
            return
        self._handles -= 1
        if self._handles > 0:
            return
        self._stop.set()
        self._stamps.stop()
        if self._role.ownership is not None:
            self._role.ownership.stop_jobs()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        try:
            self._role.claim_now(start_jobs=False)
            self.flush()
            self._role.close_sink()
        finally:
            self._closed = True
            open_monitors.unregister(self)
            if self._role.ownership is not None:
                self._role.ownership.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NO_JOBS = Jobs(SYSTEM_CLOCK, ThrottledLog(SYSTEM_CLOCK))  # a producer's (empty) jobs


def default_monitor() -> Monitor:
    """The most recently created Monitor that is still open."""
    monitor: Monitor = open_monitors.default_monitor()
    return monitor


_ = RejectedInstrument, OwnershipError  # re-exported for type checkers of integrations
