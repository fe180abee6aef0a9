"""/api/errors: unhandled exceptions grouped by signature, checked against SQL; and, for any message, no literal
that went in (in the message, or in SQL quoted in it) comes back out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Monitor
from pipeline.clock import utc_datetime
from pipeline.testing import FakeClock
from webapp import create_app
from webapp.testing import Traffic, record_sample_traffic


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Monitor, Traffic]]:
    clock = FakeClock()
    m = Monitor(db_path=tmp_path_factory.mktemp("errors") / "m.duckdb", jobs=False, clock=clock,
                memory_interval_seconds=None)
    traffic = record_sample_traffic(m, clock, minutes=60)
    yield m, traffic
    m.close()


@pytest.fixture
def client(filled: tuple[Monitor, Traffic]) -> FlaskClient:
    return create_app({"TESTING": True}, monitor=filled[0]).test_client()


def iso(value: Any) -> str:
    return str(value.isoformat(timespec="milliseconds")) + "Z"


@pytest.mark.parametrize("route", [None, "/checkout"])
def test_groups_match_sql(client: FlaskClient, filled: tuple[Monitor, Traffic], route: str | None) -> None:
    """Per signature: type, place, scrubbed message, count, routes, first/last seen (in the range and ever) and the
    latest occurrence equal SQL's over the exceptions table; most frequent first; the totals too."""
    mon, traffic = filled
    assert mon.store is not None
    body = client.get("/api/errors", query_string={"window": "30m", **({"route": route} if route else {})}
                      ).get_json()
    end = utc_datetime(mon.clock.now())
    start = end - timedelta(minutes=30)
    expected = mon.store.fetchall(
        "SELECT signature_id, any_value(type), any_value(module), any_value(function), any_value(line), "
        "any_value(message), count(*), list_sort(list_distinct(list(route))), min(ts), max(ts), "
        "arg_max(request_id, ts) FROM exceptions WHERE ts BETWEEN ? AND ? AND (? IS NULL OR route = ?) "
        "GROUP BY signature_id ORDER BY count(*) DESC, max(ts) DESC, signature_id", [start, end, route, route])
    groups = body["groups"]
    assert len(groups) == len(expected) >= (1 if route else 2)
    for got, row in zip(groups, expected, strict=True):
        sid, kind, module, function, line, message, count, routes, first, last, latest_request = row
        assert (got["signatureId"], got["type"], got["module"], got["function"], got["line"], got["message"]) == (
            str(sid), kind, module, function, line, message)
        assert (got["count"], got["routes"]) == (count, routes)
        assert (got["firstInRange"], got["lastInRange"]) == (iso(first), iso(last))
        ever = mon.store.fetchall("SELECT min(ts), max(ts) FROM exceptions WHERE signature_id = ?", [sid])[0]
        assert (got["firstSeen"], got["lastSeen"]) == (iso(ever[0]), iso(ever[1]))
        assert got["latest"]["ts"] == iso(last) and got["latest"]["requestId"] == str(latest_request)
        status = mon.store.fetchall("SELECT status FROM requests WHERE request_id = ? AND route = ?",
                                    [latest_request, got["latest"]["route"]])
        assert status == [(500,)], "the latest occurrence names its failed request"
    assert body["total"] == sum(g["count"] for g in groups)
    assert body["signatures"] == len(groups)
    types = {g["type"] for g in groups}
    assert types == ({"webapp.testing.PaymentDeclined"} if route else {"webapp.testing.PaymentDeclined", "KeyError"})
    declined = next(g for g in groups if g["type"] == "webapp.testing.PaymentDeclined")
    assert declined["message"] == "card ending ? declined for ?, order ?"
    assert declined["function"] == "_decline" and declined["module"] == "webapp.testing"
    assert traffic.exceptions == mon.store.scalar("SELECT count(*) FROM exceptions")
    limited = client.get("/api/errors", query_string={"window": "30m", "limit": 1, **({"route": route} if route
                                                                                   else {})}).get_json()
    assert len(limited["groups"]) == 1
    assert (limited["total"], limited["signatures"]) == (body["total"], body["signatures"]), \
        "the totals count every group in the range, not only those the limit lets through"


# Printable text without backslashes, so that repr() quotes it without escaping it: the value planted is the very
# text the message holds.
_TEXT = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"), exclude_characters="\\"),
                min_size=6, max_size=24).filter(str.isprintable)
_NUMBER = st.one_of(st.integers(10_000, 10**12), st.floats(1000.5, 1e9, allow_nan=False).map(lambda f: round(f, 3)))


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A message as code writes one, with values planted where messages carry them: repr()'d strings, quoted
    text, numbers, e-mail addresses, paths, and an SQL statement with its own literals; and the values."""
    text = draw(_TEXT.filter(lambda t: not {"'", '"', "\\"} & set(t)))
    quoted = draw(_TEXT)
    # with an apostrophe and no double quote, repr() quotes it with double quotes
    double = draw(_TEXT.filter(lambda t: '"' not in t)) + "'s"
    number = draw(_NUMBER)
    user = draw(st.from_regex(r"[a-z]{3,10}", fullmatch=True))
    secret = draw(st.from_regex(r"[A-Za-z0-9]{8,16}", fullmatch=True))
    sql_number = draw(st.integers(100_000, 10**9))
    template = draw(st.sampled_from([
        "user {quoted!r} not found (order {number})",
        "cannot read '{text}' after {number} tries",
        "mail to {user}@example.org bounced: {quoted!r}",
        "failed: near \"WHERE\": syntax error in SELECT * FROM users WHERE password = '{secret}' AND id = {sql}",
        "file /srv/{user}/data.db is locked by {quoted!r}",
        "{quoted!r}",
        "relation \"{text}\" does not exist",
        "column `{text}` is unknown; did you mean {double!r}?",
        "{double!r} is not a valid {text!r}",
    ]))
    message = template.format(quoted=quoted, text=text, number=number, user=user, secret=secret, sql=sql_number,
                              double=double)
    values = [v for v in (quoted, text, double, str(number), f"{user}@example.org", secret, str(sql_number),
                          f"/srv/{user}") if v in message]
    assert values, message
    return message, values


@pytest.fixture(scope="module")
def blank() -> Iterator[tuple[Monitor, FakeClock, FlaskClient]]:
    clock = FakeClock()
    m = Monitor(db_path=":memory:", jobs=False, clock=clock, memory_interval_seconds=None, default_rules=False)
    # No response cache: every example asks the same URL, and a cached answer (the previous example's, for up to a
    # second) could hold a scrubbed message that contains this example's value as plain text.
    yield m, clock, create_app({"TESTING": True, "DUCKPULSE_CACHE_SECONDS": 0}, monitor=m).test_client()
    m.close()


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=planted())
def test_no_literal_that_went_in_comes_back_out(blank: tuple[Monitor, FakeClock, FlaskClient],
                                                case: tuple[str, list[str]]) -> None:
    """Whatever the message, the errors API returns none of the values planted in it: not in the message, not in
    any text of the answer (its times and ids are the API's own, made of digits a planted number may share)."""
    message, values = case
    mon, clock, client = blank
    clock.advance(60)  # each example alone in the last minute
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        mon.track_exception(exc, "/orders/<int:order_id>", 1)
    mon.flush()
    body = client.get("/api/errors?window=30s").get_json()
    (group,) = body["groups"]
    assert group["type"] == "RuntimeError" and group["routes"] == ["/orders/<int:order_id>"]
    answer = "\n".join(texts(body))
    assert group["message"] in answer and "/orders/<int:order_id>" in answer
    for value in values:
        assert value not in answer, (message, group["message"])


MADE_BY_THE_API = {"start", "end", "timestamp", "ts", "firstSeen", "lastSeen", "firstInRange", "lastInRange",
                   "signatureId", "requestId"}


def texts(value: Any, key: str = "") -> Iterator[str]:
    """Every string of an answer, its keys included, but for the times and ids the API makes."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from texts(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from texts(v, key)
    elif isinstance(value, str) and key not in MADE_BY_THE_API:
        yield value
