"""The short-lived response cache: shared answers, single flight, expiry, and writes that clear it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Response

from pipeline import Monitor
from webapp import create_app
from webapp.cache import MAX_ENTRIES, ResponseCache


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting(body: str, status: int = 200) -> tuple[list[int], Callable[[], Response]]:
    calls: list[int] = []

    def compute() -> Response:
        calls.append(1)
        return Response(f"{body}{len(calls)}", status=status, mimetype="application/json")
    return calls, compute


def test_an_answer_is_reused_until_it_expires() -> None:
    """Within the TTL every caller gets the first answer; after it, the next caller computes a new one."""
    clock = Ticker()
    cache = ResponseCache(1.0, clock)
    calls, compute = counting("a")
    assert cache.get("/k", compute).get_data(as_text=True) == "a1"
    clock.now = 0.9
    assert cache.get("/k", compute).get_data(as_text=True) == "a1"
    clock.now = 1.0
    assert cache.get("/k", compute).get_data(as_text=True) == "a2"
    assert (cache.hits, cache.misses, len(calls)) == (1, 2, 2)


def test_errors_are_never_cached_and_ttl_zero_disables() -> None:
    """Only 200s are kept; with a TTL of 0 every call computes."""
    cache = ResponseCache(1.0, Ticker())
    calls, compute = counting("e", status=400)
    cache.get("/bad", compute)
    cache.get("/bad", compute)
    assert len(calls) == 2
    off = ResponseCache(0)
    calls, compute = counting("x")
    off.get("/k", compute)
    off.get("/k", compute)
    assert len(calls) == 2


def test_concurrent_askers_wait_for_one_computation() -> None:
    """While one request computes a key, others asking for it wait and share its answer (single flight)."""
    cache = ResponseCache(5.0)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> Response:
        calls.append(1)
        started.set()
        release.wait(10)
        return Response("shared", mimetype="application/json")

    results: list[str] = []
    leader = threading.Thread(target=lambda: results.append(cache.get("/k", slow).get_data(as_text=True)))
    leader.start()
    started.wait(10)
    followers = [threading.Thread(target=lambda: results.append(cache.get("/k", slow).get_data(as_text=True)))
                 for _ in range(3)]
    for f in followers:
        f.start()
    release.set()
    for t in (leader, *followers):
        t.join(10)
    assert results == ["shared"] * 4 and len(calls) == 1


def test_a_failed_leader_lets_followers_compute_for_themselves() -> None:
    """If the computation raises, its error goes to its own caller and a waiting caller computes anew."""
    cache = ResponseCache(5.0)
    started, release = threading.Event(), threading.Event()

    def failing() -> Response:
        started.set()
        release.wait(10)
        raise RuntimeError("boom")

    errors: list[str] = []

    def lead() -> None:
        try:
            cache.get("/k", failing)
        except RuntimeError as exc:
            errors.append(str(exc))

    leader = threading.Thread(target=lead)
    leader.start()
    started.wait(10)
    got: list[str] = []
    follower = threading.Thread(target=lambda: got.append(
        cache.get("/k", lambda: Response("mine", mimetype="application/json")).get_data(as_text=True)))
    follower.start()
    release.set()
    leader.join(10)
    follower.join(10)
    assert errors == ["boom"] and got == ["mine"]


def test_the_cache_holds_a_bounded_number_of_keys() -> None:
    """Arbitrary ranges make arbitrary keys: the oldest are evicted past MAX_ENTRIES."""
    cache = ResponseCache(60.0, Ticker())
    for i in range(MAX_ENTRIES + 10):
        cache.get(f"/k{i}", lambda: Response("x", mimetype="application/json"))
    assert len(cache._entries) == MAX_ENTRIES and "/k0" not in cache._entries


def test_the_api_shares_reads_for_a_second_and_a_silence_clears_them(monitor: Monitor) -> None:
    """A read is reused for DUCKPULSE_CACHE_SECONDS; creating a silence clears every cached read."""
    client = create_app({"DUCKPULSE_CACHE_SECONDS": 30}, monitor=monitor).test_client()
    monitor.track_request("/a", "GET", 200, 1.0)
    monitor.flush()
    first = client.get("/api/routes").get_json()["routes"]
    monitor.track_request("/b", "GET", 200, 1.0)
    monitor.flush()
    assert client.get("/api/routes").get_json()["routes"] == first, "the same answer within the TTL"
    assert client.post("/api/silences", json={"matchers": {"rule": "x"}, "duration": "1h"}).status_code == 201
    assert len(client.get("/api/routes").get_json()["routes"]) == 2
    uncached = create_app({"DUCKPULSE_CACHE_SECONDS": "0"}, monitor=monitor).test_client()
    assert len(uncached.get("/api/routes").get_json()["routes"]) == 2


def test_an_expired_answer_is_served_while_it_is_recomputed() -> None:
    """Past the TTL, the one caller recomputing waits; the others get the previous answer at once."""
    clock = Ticker()
    cache = ResponseCache(1.0, clock)
    cache.get("/k", lambda: Response("old", mimetype="application/json"))
    clock.now = 5.0
    started, release = threading.Event(), threading.Event()

    def slow() -> Response:
        started.set()
        release.wait(10)
        return Response("new", mimetype="application/json")

    got: list[str] = []
    leader = threading.Thread(target=lambda: got.append(cache.get("/k", slow).get_data(as_text=True)))
    leader.start()
    started.wait(10)
    assert cache.get("/k", slow).get_data(as_text=True) == "old", "no waiting behind the recomputation"
    release.set()
    leader.join(10)
    assert got == ["new"]
    assert cache.get("/k", slow).get_data(as_text=True) == "new"


def test_fresh_answers_skip_flask_but_never_its_checks(monitor: Monitor) -> None:
    """A fresh cached read is answered before Flask; without the token, or for another host, Flask answers
    (401, 403) exactly as if nothing were cached."""
    token = "fast-path-token"
    app = create_app({"DUCKPULSE_CACHE_SECONDS": 30, "DUCKPULSE_TOKEN": token}, monitor=monitor)
    flask_calls: list[str] = []
    inner = app.wsgi_app.app  # type: ignore[attr-defined]

    def counting_flask(environ: dict[str, object], start_response: object) -> object:
        flask_calls.append(str(environ["PATH_INFO"]))
        return inner(environ, start_response)

    app.wsgi_app.app = counting_flask  # type: ignore[attr-defined]
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    first = client.get("/api/routes?window=5m", headers=auth)
    second = client.get("/api/routes?window=5m", headers=auth)
    assert second.status_code == 200 and second.data == first.data
    assert flask_calls == ["/api/routes"], "the second answer never reached Flask"
    assert second.headers["Cache-Control"] == "no-store" and second.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/api/routes?window=5m").status_code == 401
    assert client.get("/api/routes?window=5m", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/routes?window=10m", headers=auth).status_code == 200  # another key: Flask
    assert client.post("/api/routes?window=5m", headers=auth).status_code == 405
    assert flask_calls[1:] == ["/api/routes"] * 4

    open_app = create_app({"DUCKPULSE_CACHE_SECONDS": 30}, monitor=monitor)
    open_client = open_app.test_client()
    assert open_client.get("/api/routes").status_code == 200
    assert open_client.get("/api/routes").status_code == 200
    assert open_client.get("/api/routes", headers={"Host": "evil.example"}).status_code == 403
