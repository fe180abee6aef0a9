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
