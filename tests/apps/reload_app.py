"""The app tests/test_dev_server.py serves with `flask --app reload_app run --debug` (the reloader on).

The README's lines, nothing else: the reloader's watcher process and the child serving requests both import it and
both create the monitor; one owns the file, the other records into its spool. The test copies this file and edits
VERSION to trigger a reload.
"""

from __future__ import annotations

import os

from flask import Flask

from pipeline import Monitor
from pipeline.integrations.flask import DuckPulse

VERSION = 1

app = Flask(__name__)
monitor = Monitor(db_path=os.environ["RELOAD_APP_DB"], flush_interval_seconds=0.2)
DuckPulse(app, monitor=monitor)


@app.get("/version")
def version() -> dict[str, object]:
    return {"version": VERSION, "pid": os.getpid(), "role": monitor.stats()["role"]}
