"""The SQLite connection of a request, timed by duckpulse."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import click
from flask import Flask, current_app, g

from pipeline.integrations.dbapi import instrument


def get_db() -> Any:
    """Connect to the application's configured database, once per request (or app context)."""
    if "db" not in g:
        g.db = instrument(sqlite3.connect(current_app.config["DATABASE"], detect_types=sqlite3.PARSE_DECLTYPES))
        g.db.row_factory = sqlite3.Row
    return g.db


def close_db(e: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db() -> None:
    """Clear existing data and create new tables."""
    db = get_db()
    with current_app.open_resource("schema.sql") as f:
        db.executescript(f.read().decode("utf8"))


@click.command("init-db")
def init_db_command() -> None:
    """Clear existing data and create new tables."""
    init_db()
    click.echo("Initialized the database.")


sqlite3.register_converter("timestamp", lambda v: datetime.fromisoformat(v.decode()))


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
