"""The real APScheduler behind the owner's jobs: a run that outlasts its interval is skipped, counted and logged
once per log interval, not at every interval as APScheduler itself would."""

from __future__ import annotations

import logging
import threading

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES

from pipeline.jobs import Job, Jobs
from pipeline.logs import ThrottledLog
from pipeline.testing import FakeClock


def test_a_job_still_running_at_its_next_interval_is_skipped_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    jobs = Jobs(clock, ThrottledLog(clock, 60.0))
    started, release = threading.Event(), threading.Event()

    def slow(now: float) -> None:
        started.set()
        release.wait(timeout=60)  # the test releases it once the scheduler has skipped it three times

    jobs.add(Job("slow", 0.02, slow))
    caplog.set_level(logging.DEBUG)
    jobs.start()
    skipped_three, seen = threading.Event(), [0]

    def count(event: object) -> None:
        seen[0] += 1
        if seen[0] >= 3:
            skipped_three.set()

    jobs._scheduler.add_listener(count, EVENT_JOB_MAX_INSTANCES)
    try:
        assert started.wait(timeout=60)
        assert skipped_three.wait(timeout=60)
    finally:
        release.set()
        jobs.shutdown()
    assert jobs.status()["slow"]["skipped"] >= 3
    skips = [r for r in caplog.records if "skipped" in r.getMessage()]
    # The fake clock never moves: one line for every skip inside one log interval, none of APScheduler's own.
    assert [r.getMessage() for r in skips] == ["duckpulse job 'slow' was still running when its next run was due "
                                               "(every 0.02 s); that run was skipped"]


def test_a_jobs_status_is_a_copy_with_its_result_as_plain_values() -> None:
    from dataclasses import dataclass

    @dataclass
    class Summary:
        hours: int
        tables: dict[str, int]

    clock = FakeClock(1_000.0)
    jobs = Jobs(clock, ThrottledLog(clock, 60.0))
    results = iter([{"rows": 3, "by": {"a": [1, 2]}, "span": (1.0, 2.0)}, Summary(2, {"requests": 5}), None])
    jobs.add(Job("j", 10.0, lambda now: next(results)))
    jobs.run("j")
    status = jobs.status()["j"]
    assert status["runs"] == 1 and status["failures"] == 0 and status["last_run_at"] == 1_000.0
    assert status["last_result"] == {"rows": 3, "by": {"a": [1, 2]}, "span": (1.0, 2.0)}
    status["last_result"]["by"]["a"].append(3)  # the caller's copy: the next status is untouched
    assert jobs.status()["j"]["last_result"]["by"] == {"a": [1, 2]}
    jobs.run("j")
    assert jobs.status()["j"]["last_result"] == {"hours": 2, "tables": {"requests": 5}}  # a dataclass, as a dict
    jobs.run("j")
    assert jobs.status()["j"]["last_result"] is None and jobs.status()["j"]["runs"] == 3
