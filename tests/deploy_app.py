"""The app tests/test_deploy_gunicorn.py deploys with gunicorn: a Flask app whose every worker is a producer.

This file is both gunicorn's configuration (``-c tests/deploy_app.py``: the worker hooks below) and the WSGI
module (``deploy_app:app``). Each worker creates its own ``Monitor(spool_dir=...)`` right after the fork, before
it loads the app; ``DuckPulse(app)`` without a monitor records into that worker's default monitor. The owner is
a separate ``duckpulse serve`` process ingesting the spool.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from pipeline import Monitor, default_monitor
from pipeline.integrations.flask import DuckPulse

app = Flask("deploy")
DuckPulse(app)


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    """Answers with the worker's pid, so the test knows which producer recorded each request."""
    return {"item": item_id, "pid": os.getpid()}


# -- gunicorn's configuration (read when this file is given with -c) ------------------------------------------
workers = 4
graceful_timeout = 20


def post_fork(server: Any, worker: Any) -> None:
    """In each worker, before its app is loaded: the worker's producer monitor (short flushes for the test)."""
    Monitor(spool_dir=os.environ["DUCKPULSE_SPOOL_DIR"], flush_interval_seconds=0.2, memory_interval_seconds=None)


def worker_exit(server: Any, worker: Any) -> None:
    """A worker leaving flushes what it buffered into the spool (atexit would too; this is explicit)."""
    default_monitor().close()
