"""The owner lock: an exclusive ``flock`` on ``<db>.owner.lock`` says which process owns a database.

Kept apart from pipeline/store.py so that a producer can try the lock without loading DuckDB.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import OwnershipError


class OwnerLock:
    """An exclusive advisory lock next to the database (``<db>.owner.lock``), held for the owner's whole life.

    ``flock`` locks belong to the open file: the OS releases it when the holder exits or dies, SIGKILL included,
    which is what lets another process take ownership over within a second or so. The file holds the holder's pid.
    """

    def __init__(self, db_path: Path, *, fd: int | None = None) -> None:
        self.path = lock_path(db_path)
        if fd is None:
            fd = self._open(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OwnershipError(
                    f"{db_path} is already owned by process {holder(db_path)} (lock file {self.path}). Only one "
                    "process may own a duckpulse database. Monitor(db_path=...) with the default role=\"auto\" "
                    "records as a producer while another process owns the file, and takes it over when that "
                    "process ends; role=\"owner\" (and `duckpulse serve`) insists on owning it.") from None
        self._fd = fd
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    @staticmethod
    def _open(path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @classmethod
    def try_acquire(cls, db_path: Path) -> OwnerLock | None:
        """The lock if no other process holds it, else None: one non-blocking flock, cheap enough to retry
        every second."""
        path = lock_path(db_path)
        fd = cls._open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(db_path, fd=fd)

    def forget(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking (that would unlock the parent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def lock_path(db_path: Path) -> Path:
    """``<db>.owner.lock``: the owner lock's file."""
    return db_path.with_name(db_path.name + ".owner.lock")


def holder(db_path: Path) -> str:
    """The pid written in the lock file by the process that holds (or last held) it, or "unknown"."""
    try:
        return lock_path(db_path).read_text(errors="replace").strip()[:20] or "unknown"
    except OSError:
        return "unknown"
