"""The owner's scheduled jobs, on APScheduler 3.x's BackgroundScheduler.

Every job is a plain function of ``now`` (epoch seconds from the owner's clock) closed over the store, so
tests run it directly with a fake clock (``Jobs.run_all_now``) and never wait for the scheduler. The scheduler
only decides *when*: each job has ``max_instances=1`` and coalescing, so a slow run is never stacked up, and a
job that raises is logged, counted and simply runs again at its next interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC
from typing import Any

from .clock import Clock
from .logs import ThrottledLog


@dataclass(frozen=True)
class Job:
    """A named periodic job: ``run(now)`` every ``interval_seconds``."""

    name: str
    interval_seconds: float
    run: Callable[[float], Any]


@dataclass
class JobStatus:
    """What the health endpoint shows of a job."""

    runs: int = 0
    failures: int = 0
    last_run_at: float | None = None
    last_duration_seconds: float | None = None
    last_error: str | None = None
    last_result: Any = None
    skipped: int = 0  # intervals that came while the previous run was still going


def _copy(result: Any) -> Any:
    """A job's result as its status shows it, as ``dataclasses.asdict`` would make it: a dataclass (a rollup's
    summary) as a dict, dicts, lists and tuples copied, anything else as it is."""
    if is_dataclass(result) and not isinstance(result, type):
        return asdict(result)
    if isinstance(result, dict):
        return {k: _copy(v) for k, v in result.items()}
    if isinstance(result, list):
        return [_copy(v) for v in result]
    if type(result) is tuple:  # a named tuple is immutable: kept as it is
        return tuple(_copy(v) for v in result)
    return result


class _NoSkipLines(logging.Filter):
    """APScheduler warns at every interval a job is still running (thousands of lines during a long ingest);
    duckpulse counts those skips and logs them through its ThrottledLog instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


# The scheduler's own logger (APScheduler's "apscheduler.scheduler" is the app's to configure, so it is left alone).
SCHEDULER_LOG = logging.getLogger("duckpulse.scheduler")
SCHEDULER_LOG.addFilter(_NoSkipLines())


class Jobs:
    """The owner's jobs and their status; starts a scheduler only when asked to."""

    def __init__(self, clock: Clock, log: ThrottledLog) -> None:
        self.clock = clock
        self.log = log
        self._jobs: dict[str, Job] = {}
        self._status: dict[str, JobStatus] = {}
        self._lock = threading.Lock()
        self._scheduler: Any = None

    def add(self, job: Job) -> None:
        if job.name in self._jobs:
            raise ValueError(f"a job named {job.name!r} exists already")
        self._jobs[job.name] = job
        self._status[job.name] = JobStatus()

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    def run(self, name: str) -> Any:
        """Run one job now, on this thread; an exception is counted and logged, never raised."""
        job = self._jobs[name]
        status = self._status[name]
        started = time.perf_counter()
        now = self.clock.now()
        try:
            result = job.run(now)
        except Exception as exc:
            with self._lock:
                status.failures += 1
                status.last_error = f"{type(exc).__name__}: {exc}"
            self.log.warning(f"job:{name}", f"duckpulse job {name!r} failed (it runs again in "
                             f"{job.interval_seconds:g} s): {status.last_error}", exc_info=exc)
            result = None
        else:
            with self._lock:
                status.last_error = None
                status.last_result = result
        with self._lock:
            status.runs += 1
            status.last_run_at = now
            status.last_duration_seconds = time.perf_counter() - started
        return result

    def run_all_now(self) -> dict[str, Any]:
        """Run every job once, in the order they were added, synchronously."""
        return {name: self.run(name) for name in self._jobs}

    def status(self) -> dict[str, dict[str, Any]]:
        """Each job's status as a dict (a copy: a run going on meanwhile does not change it). Copied by hand, one
        level deep: ``dataclasses.asdict`` deep-copies recursively and cost ~0.6 ms of every ``/api/health``."""
        with self._lock:
            return {name: {**vars(st), "last_result": _copy(st.last_result)} for name, st in self._status.items()}

    def _skipped(self, event: Any) -> None:
        job = self._jobs.get(event.job_id)
        if job is None:
            return
        with self._lock:
            self._status[job.name].skipped += 1
        self.log.warning(f"job-skipped:{job.name}", f"duckpulse job {job.name!r} was still running when its next "
                         f"run was due (every {job.interval_seconds:g} s); that run was skipped")

    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone=UTC, logger=SCHEDULER_LOG,
                                        job_defaults={"coalesce": True, "max_instances": 1,
                                                      "misfire_grace_time": None})
        scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        for job in self._jobs.values():
            scheduler.add_job(self.run, "interval", args=[job.name], id=job.name, name=job.name,
                              seconds=job.interval_seconds)
        scheduler.start()
        self._scheduler = scheduler

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
