"""A pytest plugin that writes down, apart from duckpulse, every request a Flask app's test suite makes.

``python -m pytest -p audit_requests`` with ``AUDIT_REQUESTS_OUT=file.json``: for each request, its route
template (``<unmatched>`` when no rule matched), method, status and the number of SQL statements SQLite ran
for it (its trace callback, less the BEGIN and COMMIT the sqlite3 module adds), from Flask's own signals. At
the end, the file also holds ``stats()`` of the process's duckpulse monitor, taken after a flush.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Any

import flask
import pytest

_current = threading.local()
_requests: list[list[Any]] = []
_connect = sqlite3.connect
_NOT_THE_APPS = ("BEGIN", "COMMIT", "ROLLBACK")


def _started(sender: flask.Flask, **extra: Any) -> None:
    _current.request = [None, flask.request.method, None, 0]
    _requests.append(_current.request)


def _finished(sender: flask.Flask, response: flask.Response, **extra: Any) -> None:
    request = _current.__dict__.pop("request", None)
    if request is not None:
        rule = flask.request.url_rule
        request[0] = rule.rule if rule is not None else "<unmatched>"
        request[2] = response.status_code


def _statement(sql: str) -> None:
    request = getattr(_current, "request", None)
    if request is not None and not sql.strip().upper().startswith(_NOT_THE_APPS):
        request[3] += 1


def _traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    connection = _connect(*args, **kwargs)
    connection.set_trace_callback(_statement)
    return connection


def pytest_configure(config: pytest.Config) -> None:
    flask.request_started.connect(_started)
    flask.request_finished.connect(_finished)
    sqlite3.connect = _traced_connect  # type: ignore[assignment]


def pytest_sessionfinish(session: pytest.Session) -> None:
    from pipeline import default_monitor

    monitor = default_monitor()
    monitor.flush()
    with open(os.environ["AUDIT_REQUESTS_OUT"], "w") as f:
        json.dump({"requests": _requests, "stats": monitor.stats()}, f, default=str)
