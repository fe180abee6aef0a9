"""The app tests/test_deploy_auto.py runs under gunicorn with 4 workers and no `duckpulse serve`.

Nothing says which process owns the file: every worker imports this module after the fork and creates the monitor
of ``FLASK_DUCKPULSE_DB_PATH`` through the Flask extension; the first to take the owner lock owns it, the others
record into its spool, and when the owner dies another takes over. Rules, the webhook and the flush interval come
from the duckpulse.toml beside the database. Every answer carries the worker's pid, so the test knows which process
recorded each request.
"""

from __future__ import annotations

import os

from flask import Flask

from pipeline.integrations.flask import DuckPulse

duckpulse = DuckPulse()


def create_app() -> Flask:
    app = Flask("workers")
    app.config.from_prefixed_env()  # FLASK_DUCKPULSE_DB_PATH

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"item": item_id, "pid": os.getpid()}

    for phase in (1, 2, 3):  # one route per phase of the test, so each phase's alert is a new one
        app.add_url_rule(f"/broken{phase}", f"broken{phase}", lambda: ({"pid": os.getpid()}, 500))
    duckpulse.init_app(app)
    return app


app = create_app()
