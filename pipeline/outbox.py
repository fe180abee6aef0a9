"""A fleet producer's outbox: segments wait on local disk until the object store has them.

``Monitor(spool_url="s3://bucket/prefix")`` flushes as any producer does (pipeline/spool.py: a segment per table,
written to ``tmp/``, fsynced and renamed into ``ready/``), into a bounded local directory, the outbox. An uploader
thread PUTs each segment as one object, ``<prefix>/ready/<segment name>``, oldest first, and deletes the local file
once the store has answered. While the store is unreachable segments wait, and the uploader retries with a
doubling delay (``retry_initial_seconds`` up to ``retry_max_seconds``, timed by the monitor's clock); flushes go on
meanwhile. When the outbox already holds ``max_bytes`` of segments, a new flush is dropped whole and its rows are
counted in ``stats()["dropped"]["outbox_full"]``: what cannot be kept is never lost silently.

The outbox survives the process: what a process could not upload before it ended (``close_timeout_seconds``) is
uploaded by the next one that uses the same outbox. Processes of one host may share it (gunicorn's workers): one
of them uploads at a time, the one holding ``<outbox>/upload.lock`` (an flock, released when it ends).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .errors import ConfigError, ObjectStoreError, SpoolError
from .logs import ThrottledLog
from .objectstore import ObjectStore, ObjectStoreSettings, ObjectUrl, parse_url, user_cache_dir
from .spool import SUFFIX, SpoolWriter, parse_name, spool_dirs

if TYPE_CHECKING:
    from .buffer import Flush

READY_PREFIX = "ready"
# How often a process that does not hold the upload lock checks whether the uploading process ended.
LOCK_POLL_SECONDS = 5.0
# How often an idle uploader looks for segments other processes wrote (its own flushes wake it at once).
IDLE_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class OutboxSettings:
    """Where a fleet producer's segments wait, and how it uploads them."""

    # The local directory segments wait in; None: <cache>/duckpulse/outbox/<bucket>/<prefix>, where <cache> is
    # $XDG_CACHE_HOME or ~/.cache (the system's temporary directory when the home directory cannot be written).
    outbox_dir: str | os.PathLike[str] | None = None
    # Bytes of segments the outbox holds at most (plus one flush); beyond, new flushes are dropped and counted.
    max_bytes: int = 256 * 2**20
    # The wait after a failed upload, doubled at each failure in a row up to retry_max_seconds.
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 15.0
    # At close, how long the last uploads may take; what is left waits for the next process using this outbox.
    close_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.outbox_dir is not None and not isinstance(self.outbox_dir, str | os.PathLike):
            raise ConfigError(f"outbox_dir={self.outbox_dir!r}: expected a directory path, or None for the default")
        if not isinstance(self.max_bytes, int) or isinstance(self.max_bytes, bool) or self.max_bytes < 1:
            raise ConfigError(f"max_bytes={self.max_bytes!r}: expected a number of bytes >= 1 (the outbox's bound)")
        for name in ("retry_initial_seconds", "retry_max_seconds", "close_timeout_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
                raise ConfigError(f"{name}={value!r}: expected a finite number of seconds >= 0")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ConfigError(f"retry_max_seconds={self.retry_max_seconds!r} is below retry_initial_seconds="
                              f"{self.retry_initial_seconds!r}: the wait only grows")


class OutboxFull(SpoolError):
    """The outbox holds ``max_bytes`` already: the flush is dropped (and counted by the monitor)."""


def default_outbox_dir(url: ObjectUrl) -> Path:
    """``<cache>/duckpulse/outbox/<bucket>/<prefix>``: one outbox per place in the store, shared by a host's
    processes, kept across restarts."""
    base = user_cache_dir()
    tail = Path("duckpulse", "outbox", url.bucket, url.prefix.replace("/", "_") or "_")
    try:
        (base / tail).mkdir(parents=True, exist_ok=True)
    except OSError:
        import tempfile

        base = Path(tempfile.gettempdir())
    return base / tail


def backoff_seconds(failures: int, settings: OutboxSettings) -> float:
    """The wait before the next attempt after ``failures`` failed rounds in a row."""
    if failures <= 0:
        return 0.0
    return float(min(settings.retry_max_seconds, settings.retry_initial_seconds * 2.0 ** min(failures - 1, 30)))


@dataclass
class OutboxStats:
    """What the uploader has done since the process started."""

    uploaded_segments: int = 0
    uploaded_bytes: int = 0
    upload_failures: int = 0
    dropped_flushes: int = 0
    last_upload_at: float | None = None
    last_error: str | None = None


class Outbox:
    """The sink of a fleet producer: writes segments into the outbox, and uploads them from a thread."""

    def __init__(self, url: str | ObjectUrl, host: str, clock: Clock, log: ThrottledLog,
                 settings: OutboxSettings | None = None, store: ObjectStoreSettings | None = None, *,
                 start: bool = True) -> None:
        self.url = parse_url(url, "spool_url")
        self.settings = settings or OutboxSettings()
        self.clock = clock
        self.log = log
        self.store = ObjectStore(self.url, store)
        self.root = Path(self.settings.outbox_dir) if self.settings.outbox_dir else default_outbox_dir(self.url)
        self.writer = SpoolWriter(self.root, host)
        self.ready = self.root / "ready"
        self.stats = OutboxStats()
        self._failures = 0  # failed rounds in a row
        self._next_attempt = clock.monotonic()
        self._lock_fd = -1
        self._round = threading.Lock()  # one upload round at a time (the thread's, close()'s)
        self._start_thread(start)

    def _start_thread(self, start: bool) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="duckpulse-uploader", daemon=True)
            self._thread.start()

    # -- the sink ----------------------------------------------------------------------------------------------------
    def write(self, flush: Flush) -> None:
        """Write a flush's segments into the outbox; OutboxFull when it already holds ``max_bytes``."""
        waiting = self.waiting()[1]
        if waiting >= self.settings.max_bytes:
            self.stats.dropped_flushes += 1
            raise OutboxFull(f"the outbox {self.root} holds {waiting:,} bytes of segments, its bound (max_bytes="
                             f"{self.settings.max_bytes:,}), while {self.store.describe()} cannot take them: "
                             f"{self.stats.last_error or 'uploads are behind'}. This flush is dropped")
        self.writer.write(flush)
        self._wake.set()

    def waiting(self) -> tuple[int, int]:
        """(segments, bytes) in the outbox, this process's and any other's."""
        count = size = 0
        try:
            with os.scandir(self.ready) as entries:
                for entry in entries:
                    if entry.name.endswith(SUFFIX):
                        with contextlib.suppress(FileNotFoundError):  # uploaded meanwhile
                            size += entry.stat().st_size
                            count += 1
        except FileNotFoundError:
            pass
        return count, size

    # -- uploading ---------------------------------------------------------------------------------------------------
    def step(self) -> float:
        """One step of the uploader: an upload round if one is due; returns the seconds until the next is due."""
        now = self.clock.monotonic()
        if now < self._next_attempt:
            return self._next_attempt - now
        if not self._hold_lock():
            self._next_attempt = now + LOCK_POLL_SECONDS
            return LOCK_POLL_SECONDS
        try:
            self.upload_ready()
        except ObjectStoreError as exc:
            self._failures += 1
            self.stats.upload_failures += 1
            self.stats.last_error = str(exc)
            wait = backoff_seconds(self._failures, self.settings)
            count, size = self.waiting()
            self.log.warning("upload", f"duckpulse: {exc}. {count} segment(s), {size:,} bytes wait in {self.root}; "
                             f"next attempt in {wait:g} s")
            self._next_attempt = self.clock.monotonic() + wait
            return wait
        self._failures = 0
        self._next_attempt = self.clock.monotonic()
        return IDLE_POLL_SECONDS

    def upload_ready(self, deadline: float | None = None) -> int:
        """Upload every segment waiting, oldest first (until ``deadline`` on the monotonic clock); returns how
        many. Raises ObjectStoreError at the first failure: the rest keep their order for the next round."""
        uploaded = 0
        with self._round:
            spool_dirs(self.root)
            for name in sorted(os.listdir(self.ready)):
                if deadline is not None and self.clock.monotonic() >= deadline:
                    break
                path = self.ready / name
                if parse_name(path) is None:
                    continue  # not a segment (an operator's file): never uploaded, never deleted
                try:
                    size = path.stat().st_size
                except FileNotFoundError:  # another process's uploader took it (it held the lock before us)
                    continue
                self.store.put_file(self.url.key(READY_PREFIX, name), path)
                path.unlink(missing_ok=True)
                uploaded += 1
                self.stats.uploaded_segments += 1
                self.stats.uploaded_bytes += size
                self.stats.last_upload_at = self.clock.now()
        return uploaded

    def _hold_lock(self) -> bool:
        if self._lock_fd >= 0:
            return True
        spool_dirs(self.root)
        fd = os.open(self.root / "upload.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.step()
            except Exception as exc:  # the loop must survive anything (a full disk, a removed outbox)
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.log.warning("uploader", f"duckpulse: uploader step failed: {self.stats.last_error}", exc_info=exc)
                delay = self.settings.retry_max_seconds
            self._wake.wait(max(delay, 0.0))
            self._wake.clear()

    def wake(self) -> None:
        """Ask the uploader to look at the outbox now (if no retry wait is running)."""
        self._wake.set()

    # -- state and the end --------------------------------------------------------------------------------------------
    def stats_dict(self) -> dict[str, Any]:
        count, size = self.waiting()
        st = self.stats
        return {"url": str(self.url), "dir": str(self.root), "waiting_segments": count, "waiting_bytes": size,
                "max_bytes": self.settings.max_bytes, "uploaded_segments": st.uploaded_segments,
                "uploaded_bytes": st.uploaded_bytes, "upload_failures": st.upload_failures,
                "dropped_flushes": st.dropped_flushes, "last_upload_at": st.last_upload_at,
                "last_error": st.last_error, "uploading": self._lock_fd >= 0}

    def close(self) -> None:
        """Stop the thread, then upload what waits for up to ``close_timeout_seconds``; the rest stays."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.store.settings.timeout_seconds * 3)
        deadline = self.clock.monotonic() + self.settings.close_timeout_seconds
        if self.settings.close_timeout_seconds > 0 and self._hold_lock():
            try:
                self.upload_ready(deadline)
            except ObjectStoreError as exc:
                self.stats.upload_failures += 1
                self.stats.last_error = str(exc)
        count, size = self.waiting()
        if count and self._lock_fd >= 0:
            self.log.warning("outbox-left", f"duckpulse: {count} segment(s), {size:,} bytes, stay in {self.root}: "
                             f"{self.stats.last_error or 'no time was left to upload them'}. The next process that "
                             "uses this outbox uploads them")
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is gone and its lock is the parent's; start over."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing, not unlocking: unlocking would free the parent's lock too
            self._lock_fd = -1
        self._round = threading.Lock()
        self.stats = OutboxStats()
        self._failures = 0
        self._start_thread(True)
