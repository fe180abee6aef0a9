"""A monitor's role for its database: where its flushes go, the ownership it holds, or the one it may claim.

A monitor that owns its database holds an ``owner.Ownership`` (the DuckDB file, ingest, jobs, alerts) and flushes
into it; any other flushes Parquet segments into the database's spool (``spool.SpoolWriter``) for the owner to
ingest, or, for a fleet's producer (``spool_url``, no database here), into a local outbox that an uploader sends
to object storage (``outbox.Outbox``). In role "auto" (the default) a monitor that found the file owned by another
process retries the owner lock from its flusher thread (``claim``, every ``CLAIM_INTERVAL_SECONDS``: one
non-blocking flock) and, once it holds it, opens the file and switches the sink under the flush lock, so a batch
goes wholly to the spool or wholly to the store. The hot path never sees any of this.

Alert rules and callbacks given in Python are kept here whatever the role, and applied to the ownership whenever
this process holds one (the configuration file is how every process gets the same rules).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import open_monitors
from .alerts.rules import Rule, default_rules
from .buffer import Flush
from .clock import Clock
from .errors import ConfigError
from .logs import ThrottledLog, logger
from .outbox import Outbox
from .owner_lock import OwnerLock
from .settings import Settings
from .spool import SpoolWriter, spool_of

if TYPE_CHECKING:
    from .alerts.notify import Notifier
    from .owner import Ownership

CLAIM_INTERVAL_SECONDS = 1.0


class Sink(Protocol):
    """Where a flush writes: the owner's store (``Ownership``) or the spool (``SpoolWriter``)."""

    def write(self, flush: Flush) -> Any: ...


class Role:
    """Owner or producer of one database (``db_path``; None in memory), or a pure producer (``spool_dir``, or with
    neither, ``storage.spool_url``: a fleet's host)."""

    def __init__(self, db_path: str | os.PathLike[str] | None, spool_dir: str | os.PathLike[str] | None,
                 settings: Settings, clock: Clock, log: ThrottledLog, host: str) -> None:
        self.settings = settings
        self.clock = clock
        self.log = log
        self.host = host
        self.name = settings.role
        if spool_dir is not None and self.name == "owner":
            raise ConfigError("role='owner' needs db_path (the file to own); spool_dir=... makes a producer")
        self.db_path = Path(db_path) if db_path is not None and os.fspath(db_path) != ":memory:" else None
        self.ownership: Ownership | None = None
        # A pure producer's spool; a database's is spool_of(db_path, settings.owner.storage.spool_dir).
        self.spool_dir = Path(spool_dir) if spool_dir is not None else self.database_spool
        # The file this monitor may still take ownership of (role "auto" while another process owns it).
        self.claim: Path | None = None
        self.takeovers = 0
        self.rules: dict[str, Rule] = {}
        self.notifiers: list[Notifier] = []
        self.lock = threading.Lock()  # rules, callbacks and the switch to owner
        self._claiming = threading.Lock()
        self.flush_lock: AbstractContextManager[Any] = threading.Lock()  # the monitor's, once it has one
        self.sink: Sink
        if db_path is not None and self.db_path is None:  # in memory: nobody else can own it
            self._own(None)
        elif self.db_path is not None and self.name != "producer":
            lock = OwnerLock(self.db_path) if self.name == "owner" else OwnerLock.try_acquire(self.db_path)
            if lock is not None:
                self._own(lock)
            else:
                self.claim = self.db_path
        if self.ownership is None:
            self.sink = self._producer_sink()

    def _producer_sink(self) -> Sink:
        """A producer's sink: the database's (or the given) spool directory, else the fleet's outbox."""
        if self.spool_dir is not None:
            return SpoolWriter(self.spool_dir, self.host)
        url = self.settings.owner.storage.spool_url
        if url is None:
            raise ConfigError("a producer needs somewhere to write: db_path (its spool), spool_dir, or spool_url "
                              "(a fleet's object storage, s3://bucket/prefix)")
        return Outbox(url, self.host, self.clock, self.log, self.settings.outbox, self.settings.object_store)

    @property
    def database_spool(self) -> Path | None:
        """The database's spool: where its producers write and its owner ingests (None without a database)."""
        if self.db_path is None:
            return self.ownership.spool_dir if self.ownership is not None else None
        return spool_of(self.db_path, self.settings.owner.storage.spool_dir)

    @property
    def can_own(self) -> bool:
        """Whether this monitor owns, or may own later, its database (role "producer" and spool_dir never do)."""
        return self.ownership is not None or self.claim is not None

    # -- becoming the owner --------------------------------------------------------------------------------
    def _new_ownership(self, lock: OwnerLock | None, ingest_interval_seconds: float) -> Ownership:
        from .owner import Ownership  # here: a producer never loads DuckDB

        open_monitors.close_before_modules_exit()  # DuckDB is imported now: our last flush must come first
        return Ownership(self.db_path, self.settings.owner, self.clock, self.log, lock=lock,
                         ingest_interval_seconds=ingest_interval_seconds, strict=self.settings.recording.strict,
                         rules=list(self.rules.values()), notifiers=list(self.notifiers),
                         object_store=self.settings.object_store)

    def _own(self, lock: OwnerLock | None) -> None:
        self.ownership = self._new_ownership(lock, self.settings.recording.flush_interval_seconds)
        self.sink = self.ownership
        self.claim = None

    def claim_now(self, *, start_jobs: bool = True) -> bool:
        """Take ownership if the owner lock is free (the owner ended or died); True once this process owns."""
        with self._claiming:  # the flusher and close() (or a test's tick) never claim twice at once
            return self._claim_now(start_jobs)

    def _claim_now(self, start_jobs: bool) -> bool:
        path = self.claim
        if path is None:
            return self.ownership is not None
        lock = OwnerLock.try_acquire(path)
        if lock is None:
            return False
        try:
            with self.lock:  # rules and callbacks added meanwhile go into the new ownership too
                ownership = self._new_ownership(lock, self.settings.recording.flush_interval_seconds)
                with self.flush_lock:  # a flush writes wholly to the spool or wholly to the store
                    self.ownership = ownership
                    self.sink = ownership
                    self.claim = None
        except Exception as exc:  # e.g. a notebook holds the file open: stay a producer and retry
            lock.release()
            self.log.warning("claim", f"duckpulse: could not take ownership of {path} (still recording into its "
                             f"spool, retrying every {CLAIM_INTERVAL_SECONDS:g} s): {exc}", exc_info=exc)
            return False
        self.takeovers += 1
        logger.info("duckpulse: process %d now owns %s (its previous owner ended)", os.getpid(), path)
        if start_jobs and self.settings.owner.storage.jobs:
            ownership.start_jobs()
        return True

    def after_fork(self) -> None:
        """In a forked child: the parent's ownership stays the parent's, and the child spools into the database's
        spool for good. It never claims the file: DuckDB cannot be used in a process forked from one that had it
        open (its threads did not survive the fork, and a new database in the child hung in tests). A child of a
        producer keeps its claim: no DuckDB was open in the parent."""
        self.lock, self._claiming = threading.Lock(), threading.Lock()
        if isinstance(self.sink, Outbox):
            self.sink.after_fork()  # the parent's uploader thread and lock stay the parent's
        if self.ownership is None:
            return
        spool = self.ownership.spool_dir or Path(f"duckpulse-{os.getpid()}.spool")
        self.ownership.abandon()
        self.ownership = None
        self.sink = SpoolWriter(spool, self.host)
        self.claim = None

    def close_sink(self) -> None:
        """After the last flush: a fleet producer uploads what waits in its outbox (for a while, then leaves it)."""
        if isinstance(self.sink, Outbox):
            self.sink.close()

    def sink_stats(self) -> dict[str, Any]:
        """A fleet producer's outbox and uploads, for ``Monitor.stats()`` (nothing for other sinks)."""
        return {"outbox": self.sink.stats_dict()} if isinstance(self.sink, Outbox) else {}

    # -- alert rules and callbacks given in Python -------------------------------------------------------------
    def _keep_for_owner(self, what: str) -> None:
        if not self.can_own:
            raise ConfigError(
                f"this Monitor never owns its database "
                f"({'role=producer' if self.db_path else 'spool_dir or spool_url'}), "
                f"so {what} given to it would never be evaluated. Put alert rules and notifiers in duckpulse.toml "
                "([[rule]] and [[notifier]] tables): whichever process owns the file applies them, `duckpulse serve "
                "--config FILE` included")

    def add_rules(self, rules: Sequence[Rule]) -> None:
        """Keep ``rules`` (all or none: a name already in use raises ConfigError) and apply them if owning."""
        self._keep_for_owner("alert rules")
        with self.lock:
            alerting = self.settings.owner.alerts
            taken = {*self.rules, *(r.name for r in alerting.rules),
                     *(r.name for r in (default_rules() if alerting.default_rules else ()))}
            for rule in rules:
                if rule.name in taken:
                    raise ConfigError(f"an alert rule named {rule.name!r} exists already; give the new rule "
                                      "another name (name=...)")
                taken.add(rule.name)
            if self.ownership is not None:
                self.ownership.alerts.add_rules(rules)
            self.rules.update((r.name, r) for r in rules)

    def on_alert(self, callback: Notifier) -> Callable[[], None]:
        """Keep ``callback`` and subscribe it while owning; returns the function that unsubscribes it."""
        self._keep_for_owner("alert callbacks")
        with self.lock:
            self.notifiers.append(callback)
            if self.ownership is not None:
                self.ownership.subscribe(callback)

        def unsubscribe() -> None:
            with self.lock:
                self.notifiers = [n for n in self.notifiers if n is not callback]
                if self.ownership is not None:
                    self.ownership.unsubscribe(callback)
        return unsubscribe
