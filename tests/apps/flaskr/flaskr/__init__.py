"""The blog of the Flask tutorial, instrumented with duckpulse the way its README says."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from pipeline.integrations.flask import DuckPulse

# The Flask extension convention: created once, set up on every app the factory makes. init_app records into the
# monitor of app.config["DUCKPULSE_DB_PATH"], one per file and process however many apps the factory makes.
duckpulse = DuckPulse()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the Flask application."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="dev",
        DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"),
        DUCKPULSE_DB_PATH=os.path.join(app.instance_path, "metrics.duckdb"),
    )
    app.config.from_prefixed_env()  # FLASK_DUCKPULSE_DB_PATH=... chooses where the metrics go

    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.update(test_config)

    os.makedirs(app.instance_path, exist_ok=True)

    @app.route("/hello")
    def hello() -> str:
        return "Hello, World!"

    duckpulse.init_app(app)

    from . import db

    db.init_app(app)

    from . import auth

    app.register_blueprint(auth.bp)

    from . import blog

    app.register_blueprint(blog.bp)
    app.add_url_rule("/", endpoint="index")

    return app
