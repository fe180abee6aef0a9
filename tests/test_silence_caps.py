"""Silences are capped (issue 13 item 13): how many are in force, how many matchers and bytes one holds; the API
answers 422 in the JSON envelope naming the cap, and creating one reads back that one only, never all."""

from __future__ import annotations

import pytest

from pipeline import Monitor
from pipeline.alerts.engine import MAX_ENDED_SILENCES_KEPT, MAX_SILENCE_BYTES, MAX_SILENCES_IN_FORCE
from pipeline.clock import utc_datetime
from pipeline.errors import LimitError
from pipeline.testing import FakeClock
from webapp import create_app


def _count(mon: Monitor, where: str = "true") -> int:
    assert mon.store is not None
    return int(mon.store.fetchall(f"SELECT count(*) FROM silences WHERE {where}")[0][0])


def test_silences_in_force_are_capped_and_expiring_one_makes_room(mon: Monitor) -> None:
    """The cap's silence is refused with LimitError naming the cap; the API says 422 in the envelope; after one
    is expired the next is accepted."""
    assert mon.alerts is not None and mon.store is not None
    # All but one planted directly (creating them one by one only slows the test down), the last one created.
    mon.store.con.execute("INSERT INTO silences SELECT 'planted' || i, '{\"route\": \"/p\"}', $now, "
                          "$now + INTERVAL 1 HOUR, '', $now FROM range($n) t(i)",
                          {"now": utc_datetime(mon.clock.now()), "n": MAX_SILENCES_IN_FORCE - 1})
    ids = [mon.alerts.silence({"route": "/last"}, duration_seconds=3600)]
    with pytest.raises(LimitError, match=f"{MAX_SILENCES_IN_FORCE} silences are in force already") as refused:
        mon.alerts.silence({"route": "/one-more"}, duration_seconds=3600)
    assert refused.value.cap == MAX_SILENCES_IN_FORCE
    assert _count(mon) == MAX_SILENCES_IN_FORCE
    client = create_app({"TESTING": True}, monitor=mon).test_client()
    response = client.post("/api/silences", json={"matchers": {"route": "/x"}, "duration": "1h"})
    assert response.status_code == 422
    assert response.get_json()["error"]["status"] == 422
    assert f"{MAX_SILENCES_IN_FORCE} silences are in force already" in response.get_json()["error"]["message"]
    assert mon.alerts.unsilence(ids[0])
    created = client.post("/api/silences", json={"matchers": {"route": "/x"}, "duration": "1h"})
    assert created.status_code == 201
    assert created.get_json()["silence"]["matchers"] == {"route": "/x"}


def test_a_silence_over_the_size_cap_is_refused_with_422(mon: Monitor) -> None:
    """Matchers and comment over MAX_SILENCE_BYTES: 422 naming the cap, nothing stored; just under it is fine."""
    client = create_app({"TESTING": True}, monitor=mon).test_client()
    big = {f"label{i}": "v" * 1000 for i in range(16)}  # each field within the API's own limits
    response = client.post("/api/silences", json={"matchers": big, "duration": "1h", "comment": "c" * 1000})
    assert response.status_code == 422
    assert f"at most {MAX_SILENCE_BYTES} bytes" in response.get_json()["error"]["message"]
    assert _count(mon) == 0
    fits = {f"label{i}": "v" * 900 for i in range(8)}
    assert client.post("/api/silences", json={"matchers": fits, "duration": "1h"}).status_code == 201
    with pytest.raises(LimitError, match="at most 16 matchers"):
        assert mon.alerts is not None
        mon.alerts.silence({f"k{i}": "v" for i in range(17)}, duration_seconds=60)


def test_ended_silences_kept_for_the_record_are_bounded(mon: Monitor, clock: FakeClock) -> None:
    """Creating a silence keeps at most MAX_ENDED_SILENCES_KEPT ended ones, the newest: a create/expire loop
    cannot grow the table without bound."""
    assert mon.alerts is not None and mon.store is not None
    # Ended silences planted directly (creating 10,000 one by one would only slow the test down).
    mon.store.con.execute("INSERT INTO silences SELECT 'old' || i, '{\"a\": \"b\"}', TIMESTAMP '2020-01-01', "
                          "TIMESTAMP '2020-01-01' + INTERVAL (i) SECOND, '', TIMESTAMP '2020-01-01' "
                          "FROM range($n) t(i)", {"n": MAX_ENDED_SILENCES_KEPT + 50})
    newest = mon.alerts.silence({"a": "b"}, duration_seconds=60)
    clock.advance(1)
    assert mon.alerts.unsilence(newest)
    clock.advance(1)
    mon.alerts.silence({"a": "c"}, duration_seconds=60)
    assert _count(mon, "ends_at <= $now".replace("$now", f"TIMESTAMP '{utc_datetime(clock.now())}'")) \
        == MAX_ENDED_SILENCES_KEPT
    assert _count(mon, f"silence_id = '{newest}'") == 1
    assert _count(mon, "silence_id = 'old0'") == 0
    assert _count(mon, f"silence_id = 'old{MAX_ENDED_SILENCES_KEPT + 49}'") == 1
