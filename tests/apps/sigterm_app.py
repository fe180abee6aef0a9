"""The apps tests/test_sigterm.py stops with SIGTERM: a Flask app (the dev server, gunicorn), an ASGI app (uvicorn)
and a plain script (``python sigterm_app.py N``).

The monitor flushes every hour (SIGTERM_APP_DB is the file, SIGTERM_APP_ROLE "auto" or "producer"), so a row
reaches the database or its spool within a test only if something flushes on the way out.
"""

from __future__ import annotations

import os
import signal
import sys

from pipeline import Monitor

monitor = Monitor(db_path=os.environ["SIGTERM_APP_DB"], role=os.environ.get("SIGTERM_APP_ROLE", "auto"),
                  flush_interval_seconds=3600.0, jobs=False, memory_interval_seconds=None)


def flask_app() -> object:
    from flask import Flask

    from pipeline.integrations.flask import DuckPulse

    app = Flask("sigterm")
    app.get("/r")(lambda: {"pid": os.getpid()})
    DuckPulse(app, monitor)
    return app


def asgi_app() -> object:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from pipeline.integrations.asgi import MetricsMiddleware

    async def r(request: object) -> JSONResponse:
        return JSONResponse({"pid": os.getpid()})

    return MetricsMiddleware(Starlette(routes=[Route("/r", r)]), monitor)


if __name__ == "__main__":
    for i in range(int(sys.argv[1])):
        monitor.track_request("/r", "GET", 200, float(i))
    print("recorded", flush=True)
    while True:
        signal.pause()
