"""The owner role: the DuckDB file, the spool's ingest, the scheduled jobs and the alerts, held in one object.

A process owns a database while it holds ``<db>.owner.lock`` (``store.OwnerLock``). ``Ownership`` is everything
that comes with it, built when the lock is taken and closed when it is released: a ``Monitor`` gains it at
creation or later, when the previous owner ends (pipeline/monitor.py), and gives it up at close. Nothing here
knows the recording API: the parts take the store and their settings (``settings.OwnerSettings``).

A fleet's central owner ingests the segments every host uploads to ``storage.spool_url`` (``objectspool``) beside
its local spool, and with ``archive.history_dir = "s3://..."`` archives into ``<db>.history`` as always and mirrors
it there after each archive run (the "history-upload" job, ``objecthistory.push``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import archive, objecthistory, publish, retention, rollup
from .alerts.engine import Alerts
from .alerts.notify import LoggingNotifier, Notifier, WebhookNotifier
from .alerts.rules import Rule
from .buffer import Flush
from .clock import Clock
from .ingest import Ingestor, Source
from .jobs import Job, Jobs
from .logs import ThrottledLog
from .objectspool import ObjectSpool
from .objectstore import ObjectStore, ObjectStoreSettings, is_object_url
from .owner_lock import OwnerLock
from .settings import ArchiveSettings, NotifierSettings, OwnerSettings
from .spool import LocalSpool, flush_tables, spool_of, time_span, write_segment
from .store import CACHE_RELEASE_INTERVAL_SECONDS, Store


def notifier(settings: NotifierSettings) -> Notifier:
    """The notifier a ``[[notifier]]`` table describes."""
    if settings.type == "webhook":
        assert settings.url is not None  # NotifierSettings checked it
        return WebhookNotifier(settings.url, timeout_seconds=settings.timeout_seconds, retries=settings.retries,
                               backoff_seconds=settings.backoff_seconds, headers=dict(settings.headers))
    return LoggingNotifier(logging.getLogger(settings.logger))


# How often the owner looks for what killed producers left in the spool's tmp/.
SPOOL_DEBRIS_INTERVAL_SECONDS = 300.0


class Ownership:
    """What the owner of a database holds: its store, ingestor, alerts and jobs.

    ``rules`` and ``notifiers`` are the ones given in Python to the monitor (kept while it was a producer); the
    configuration's come from ``settings``. Building it opens the file, which replays DuckDB's WAL.
    """

    def __init__(self, db_path: Path | None, settings: OwnerSettings, clock: Clock, log: ThrottledLog, *,
                 lock: OwnerLock | None = None, ingest_interval_seconds: float = 1.0, strict: bool = False,
                 rules: Iterable[Rule] = (), notifiers: Iterable[Notifier] = (),
                 object_store: ObjectStoreSettings | None = None) -> None:
        self.db_path = db_path
        self.settings = settings
        self.clock = clock
        self.log = log
        self.strict = strict
        self.object_store = object_store or ObjectStoreSettings()
        self.spool_dir = spool_of(db_path, settings.storage.spool_dir)
        self.spool_url = settings.storage.spool_url
        self._seq = itertools.count()  # names of this owner's flush files
        self.store = Store(db_path, clock, memory_limit=settings.storage.duckdb_memory_limit, owner_lock=lock)
        self._object_spool: ObjectSpool | None = None
        try:
            sources: list[Source] = [LocalSpool(self.spool_dir)] if self.spool_dir else []
            if self.spool_url is not None:
                self._object_spool = ObjectSpool(ObjectStore(self.spool_url, self.object_store))
                sources.append(self._object_spool)
            self.ingestor = Ingestor(self.store, sources, clock, log) if sources else None
            alerting = settings.alerts
            self.alerts = Alerts(self.store, clock, log, default_rules=alerting.default_rules,
                                 interval_seconds=alerting.interval_seconds, log_alerts=alerting.log)
            self.alerts.add_rules([*alerting.rules, *rules])
            for each in map(notifier, alerting.notifiers):
                self.alerts.on_alert(each)
            self._unsubscribe: dict[int, Callable[[], None]] = {}
            for each in notifiers:
                self.subscribe(each)
            self._published_watermark: Path | None = None  # set with the publish job, if any
            self.jobs = Jobs(clock, log)
            for job in self._jobs(ingest_interval_seconds):
                self.jobs.add(job)
        except BaseException:
            if self._object_spool is not None:
                self._object_spool.close()
            self.store.close()
            raise

    def _jobs(self, ingest_interval_seconds: float) -> list[Job]:
        """The jobs an owner runs, in the order ``run_jobs_now`` runs them.

        Ingest comes first so that rollups and sweeps see the producers' latest rows.
        """
        store, settings = self.store, self.settings
        debris = [Job("spool-debris", SPOOL_DEBRIS_INTERVAL_SECONDS, self.ingestor.remove_debris)] \
            if self.ingestor is not None else []
        return [
            Job("ingest", ingest_interval_seconds, lambda now: self.ingest_now()),
            *debris,
            rollup.job(store, settings.rollup),
            # The alert sweep: every rule over its window; single-event thresholds are also checked per flush.
            Job("alerts", self.alerts.interval_seconds, self.alerts.sweep),
            # Archive before retention, so that an hour reaches the history before its raw rows expire.
            *self._archive_jobs(),
            retention.job(store, settings.retention, settings.archive),
            # Last: evict the table blocks DuckDB cached meanwhile, so the host app's memory stays flat.
            Job("release-cache", CACHE_RELEASE_INTERVAL_SECONDS, store.release_memory),
        ]

    def _archive_jobs(self) -> list[Job]:
        """The archive job; with a history in object storage, into the local working copy, then mirrored."""
        settings = self.settings.archive
        target = settings.history_dir
        if not is_object_url(target):
            return [archive.job(self.store, settings), *self._publish_job(settings)]
        assert isinstance(target, str)  # an object URL is text
        local = dataclasses.replace(settings, history_dir=None)  # <db>.history (an in-memory store: none)
        local_dir = archive.default_history_dir(self.store.path) if self.store.path is not None else None
        history = ObjectStore(target, self.object_store)
        return [archive.job(self.store, local), *self._publish_job(local),
                Job("history-upload", settings.interval_seconds,
                    lambda now: objecthistory.push(local_dir, history) if local_dir is not None else None)]

    def _publish_job(self, local_archive: ArchiveSettings) -> list[Job]:
        """After the archive (the watermark it publishes is the archive's latest), into its local history: the
        recent minutes are for readers on this machine; none for an in-memory store."""
        job = publish.job(self.store, local_archive, self.settings.publish)
        history_dir = archive.history_dir_of(self.store, local_archive)
        self._published_watermark = publish.watermark_path(history_dir) if job and history_dir else None
        return [job] if job is not None else []

    # -- the sink the flusher writes to ---------------------------------------------------------------------
    def write(self, flush: Flush) -> None:
        """Load a flushed batch, then check single-event alert thresholds against it (never raises).

        The batch goes through the same segment files a producer writes, loaded in one transaction, then removed
        (one write path for both roles; DuckDB reads them at several million rows per second). They go to the
        system's temporary directory, so an owner leaves nothing beside its database.
        """
        files: list[tuple[str, Path]] = []
        spans: dict[str, tuple[float, float]] = {}  # per table, its rows' first and last time (the publish job's)
        try:
            for table, _ in flush_tables(flush):
                path = Path(tempfile.gettempdir()) / f"duckpulse-flush-{os.getpid()}-{next(self._seq)}-{table}.parquet"
                files.append((table, path))
                span = time_span(flush, table)
                if span is not None:
                    spans[table] = span
                with open(path, "wb") as f:
                    write_segment(f, flush, table, span)
            self.store.load_files(files, spans)
        finally:
            for _, path in files:
                path.unlink(missing_ok=True)
        self.alerts.after_flush(flush)

    def subscribe(self, callback: Notifier) -> None:
        """Deliver notifications to ``callback`` too (a monitor's on_alert)."""
        self._unsubscribe[id(callback)] = self.alerts.on_alert(callback)

    def unsubscribe(self, callback: Notifier) -> None:
        stop = self._unsubscribe.pop(id(callback), None)
        if stop is not None:
            stop()

    # -- jobs --------------------------------------------------------------------------------------------------
    def start_jobs(self) -> None:
        self.jobs.start()

    def ingest_now(self) -> int:
        """Ingest every ready spool segment now; returns the rows loaded (0 on failure, counted and logged)."""
        if self.ingestor is None:
            return 0
        try:
            return self.ingestor.drain()
        except Exception as exc:
            self.ingestor.stats.failures += 1
            self.ingestor.stats.last_error = f"{type(exc).__name__}: {exc}"
            self.log.warning("ingest", f"duckpulse: ingest failed: {self.ingestor.stats.last_error}", exc_info=exc)
            if self.strict:
                raise
            return 0

    def stats(self) -> dict[str, Any]:
        """The owner's part of ``Monitor.stats()``: the database file's losses, the alerts' counts and delivery, the
        ingest's counts (with a spool)."""
        lost = self.store.file_lost
        alerts = self.alerts.stats()
        counts: dict[str, Any] = {"store": {"file_lost": lost.count, "rows_lost": lost.rows_lost,
                                            "last_file_lost_at": lost.last_at, "last_error": lost.last_message},
                                  "alerts": {"counts": alerts["counts"], "delivery": alerts["delivery"]}}
        if self.ingestor is None:
            return counts
        st = self.ingestor.stats
        return {**counts, "ingest": {
            "segments": st.segments, "rows": st.rows, "quarantined": st.quarantined, "failures": st.failures,
            "debris_removed": st.debris_removed,
            "last_ingest_at": st.last_ingest_at, "last_error": st.last_error, "backlog": self.ingestor.backlog(),
            "sources": [str(source) for source in self.ingestor.sources],
        }}

    # -- the end ---------------------------------------------------------------------------------------------
    def stop_jobs(self) -> None:
        """Stop the scheduler; a running ingest ends after the page it is loading (the rest waits in ready/)."""
        if self.ingestor is not None:
            self.ingestor.stopping.set()
        self.jobs.shutdown()

    def close(self) -> None:
        """Ingest a last time (one page once ``stop_jobs`` ran), publish (see below), let notifiers deliver,
        close the file and release the lock (in that order)."""
        try:
            self.ingest_now()
            # Readers in other processes see every row up to the close: a publication, once there is one (with
            # jobs=False too, e.g. of run_jobs_now() or an earlier owner), is what they read instead of the file.
            watermark = self._published_watermark
            if watermark is not None and (self.settings.storage.jobs or watermark.exists()):
                self.jobs.run("publish")
        finally:
            if self._object_spool is not None:
                self._object_spool.close()
            self.alerts.close()  # webhooks deliver what they hold, within a timeout
            try:
                self.store.close()
            except Exception as exc:  # e.g. the final checkpoint on a full disk: the WAL keeps what was committed
                self.log.warning("close", f"duckpulse: closing {self.db_path} failed (committed rows stay in its WAL "
                                 f"and are replayed at the next open): {exc}", exc_info=exc)
                if self.strict:
                    raise

    def abandon(self) -> None:
        """In a forked child: let go of the parent's file and lock without touching them."""
        self.store.abandon()
