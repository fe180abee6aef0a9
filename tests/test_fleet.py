"""A fleet with real processes: three hosts record into object storage (moto's S3 server, a process of its own on
127.0.0.1), one central owner (`duckpulse serve --spool s3://...`) ingests them. Every request recorded is a row,
exactly once, whatever happens to the owner and to the store; a corrupt object is quarantined, the rest loaded."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import s3_helpers
from s3_helpers import SECRET_KEY, S3Server

from pipeline import ConfigError, Monitor
from pipeline.objectstore import ObjectStore
from pipeline.outbox import OutboxSettings
from pipeline.testing import FakeClock
from webapp import create_app

s3 = s3_helpers.s3  # the module's S3 server (a fixture)
HOST = str(Path(__file__).with_name("fleet_host.py"))
RATE = 150.0  # requests per second per host
# A flush every half second: 6 objects a second from three hosts, which moto (one Python process on the shared
# cores) keeps up with even at load ~25; at 0.2 s the hosts' outboxes still held ~120 segments each after two
# minutes of draining at that load.
FLUSH_SECONDS = 0.5


STARTED: list[subprocess.Popen[str]] = []  # the hosts and owners a test started


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """A failing test leaves no host or owner behind (it would poll a store that is gone, on shared cores)."""
    yield
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    STARTED.clear()


def host_config(tmp: Path, name: str, url: str, s3: S3Server) -> Path:
    """A host's duckpulse.toml: the fleet's spool, the store's address, a quick outbox (the test's only tuning)."""
    config = tmp / name / "duckpulse.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[recording]\nflush_interval_seconds = {FLUSH_SECONDS}\n\n[storage]\nspool_url = "{url}"\n\n'
                      f'[object_store]\nendpoint_url = "{s3.endpoint_url}"\ntimeout_seconds = 10\nretries = 0\n\n'
                      f'[outbox]\noutbox_dir = "{tmp / name / "outbox"}"\nretry_initial_seconds = 0.5\n'
                      "retry_max_seconds = 2\n")
    return config


def start_hosts(tmp: Path, url: str, s3: S3Server, stop: Path) -> list[subprocess.Popen[str]]:
    hosts = [subprocess.Popen([sys.executable, HOST, str(host_config(tmp, name, url, s3)), name, str(stop),
                               str(RATE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp / name)
             for name in ("web-1", "web-2", "worker-1")]
    STARTED.extend(hosts)
    return hosts


def finish_hosts(hosts: list[subprocess.Popen[str]], stop: Path) -> tuple[list[dict[str, object]], str]:
    """Stop the hosts' traffic and wait for each to upload everything; their reports and their stderr."""
    stop.touch()
    reports, logs = [], ""
    for proc in hosts:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
        logs += err
    return reports, logs


def serve(db: Path, url: str, s3: S3Server, log: Path) -> subprocess.Popen[str]:
    """The central owner, with the store's address from AWS_ENDPOINT_URL (the AWS SDKs' variable)."""
    env = {**os.environ, "AWS_ENDPOINT_URL": s3.endpoint_url}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--db", str(db), "--spool", url,
                             "--interval", "0.2", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=open(log, "a"), text=True, env=env)  # noqa: SIM115  (closed with the process)
    STARTED.append(proc)
    assert proc.stdout is not None
    assert "owning" in proc.stdout.readline()  # printed once the owner holds the file
    return proc


def stop_owner(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    return out


def observer(s3: S3Server, url: str) -> ObjectStore:
    """The test's own view of the store: patient, since moto (one Python process) answers slowly while three hosts
    upload and an owner ingests on a loaded machine, and the test only watches."""
    return ObjectStore(url, s3.settings(timeout_seconds=60, retries=3))


def ready_keys(store: ObjectStore) -> set[str]:
    return {o.key for o in store.list(store.url.key("ready") + "/")}


def rows(db: Path) -> tuple[int, int, dict[str, int], int]:
    """(rows, distinct (host, pid, request_id), rows per host) of the requests table, and the objects the ingest
    ledger holds."""
    with duckdb.connect(str(db), read_only=True) as con:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT (host, pid, request_id)) FROM requests"
                                      ).fetchone() or (0, 0)
        per_host = dict(con.execute("SELECT host, count(*) FROM requests GROUP BY host").fetchall())
        objects = con.execute("SELECT count(*) FROM ingested_segments WHERE segment LIKE 's3://%'").fetchone()
    return int(total), int(distinct), per_host, int(objects[0] if objects else 0)


def test_every_request_once_across_ten_owner_kills_and_a_corrupt_object(s3: S3Server, tmp_path: Path) -> None:
    """Three hosts record while the owner is SIGKILLed ten times, each time after it deleted objects it had
    committed (it ingests continuously, so each kill lands somewhere in list / download / load / commit /
    delete); a corrupt object waits among the segments. Then one clean owner run: rows == requests recorded,
    each once; the corrupt object is in the quarantine prefix."""
    url = s3.new_bucket() + "/fleet"
    store = observer(s3, url)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + os.urandom(2048) + b"PAR1")
    corrupt_key = store.url.key("ready", f"{time.time_ns():020d}-requests-web_9-1-deadbeef-0-100.parquet")
    store.put_file(corrupt_key, corrupt)
    stop = tmp_path / "stop"
    hosts = start_hosts(tmp_path, url, s3, stop)
    db, log = tmp_path / "central.duckdb", tmp_path / "owner.log"
    rng = random.Random(7)
    try:
        for _ in range(10):
            owner = serve(db, url, s3, log)
            before = ready_keys(store)
            deadline = time.monotonic() + 120  # generous: moto shares a loaded machine's two cores
            while not before - ready_keys(store) and time.monotonic() < deadline:
                time.sleep(0.05)  # polling another process's effect on the store
            assert before - ready_keys(store), "the owner deleted nothing in 120 s: it is not ingesting"
            time.sleep(rng.uniform(0.0, 0.4))  # a random moment of its ingest loop
            owner.send_signal(signal.SIGKILL)
            owner.wait(timeout=60)
    finally:
        reports, _ = finish_hosts(hosts, stop)
    assert all(r["dropped"] == {} and r["outbox"]["waiting_segments"] == 0 for r in reports)  # type: ignore[index]
    owner = serve(db, url, s3, log)
    print(stop_owner(owner))
    recorded = sum(int(r["recorded"]) for r in reports)  # type: ignore[call-overload]
    total, distinct, per_host, objects = rows(db)
    assert recorded > 3_000
    assert (total, distinct) == (recorded, recorded)
    assert per_host == {r["host"]: r["recorded"] for r in reports}
    assert objects == sum(r["outbox"]["uploaded_segments"] for r in reports)  # type: ignore[index]
    assert ready_keys(store) == set()
    assert [o.key for o in store.list(store.url.key("quarantine") + "/")] == [
        corrupt_key.replace("/ready/", "/quarantine/")]


def test_nothing_is_lost_while_the_store_is_down_for_30_seconds(s3: S3Server, tmp_path: Path) -> None:
    """The store is stopped (SIGTERM; requests refused) for 30 s while the hosts record and the owner runs, then
    started again: the outboxes held every segment and upload them oldest first; every request is a row, once.
    No secret key appears in any log or file of the hosts and the owner."""
    url = s3.new_bucket() + "/fleet"
    stop = tmp_path / "stop"
    db, log = tmp_path / "central.duckdb", tmp_path / "owner.log"
    owner = serve(db, url, s3, log)
    hosts = start_hosts(tmp_path, url, s3, stop)
    store = observer(s3, url)
    try:
        deadline = time.monotonic() + 60
        while not ready_keys(store) and time.monotonic() < deadline:
            time.sleep(0.05)  # the hosts' first uploads
        s3.stop()
        down_since = time.monotonic()
        waiting = [tmp_path / name / "outbox" / "ready" for name in ("web-1", "web-2", "worker-1")]
        time.sleep(30)  # the outage itself
        held = sum(len(list(d.glob("*.parquet"))) for d in waiting)
        s3.start()
        assert time.monotonic() - down_since >= 30
        # Every flush of those 30 s waited on its host's disk (at least 40% of them as a floor: a loaded machine
        # delays flushes).
        assert held > 0.4 * 3 * 30 / FLUSH_SECONDS
    finally:
        reports, host_logs = finish_hosts(hosts, stop)
    out = stop_owner(owner)
    recorded = sum(int(r["recorded"]) for r in reports)  # type: ignore[call-overload]
    total, distinct, _, _ = rows(db)
    assert (total, distinct) == (recorded, recorded)
    for report in reports:
        outbox = report["outbox"]
        assert report["dropped"] == {} and outbox["waiting_segments"] == 0  # type: ignore[index]
        assert outbox["upload_failures"] > 0  # type: ignore[index]  (the outage was felt)
    assert "unreachable" in host_logs and "unreachable" in log.read_text()
    every_log = host_logs + log.read_text() + out
    assert SECRET_KEY not in every_log
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET_KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("value", ["s3://Bad_Bucket/x", "s3://ok-bucket/a//b"])
def test_a_bad_spool_url_is_refused_before_anything_starts(tmp_path: Path, value: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", "--db", str(tmp_path / "x.duckdb"),
                           "--spool", value, "--port", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "spool_url" in proc.stderr and not (tmp_path / "x.duckdb").exists()


def test_the_fleet_is_configured_in_duckpulse_toml_or_the_environment(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """spool_url, history_dir = "s3://..." (kept as a URL, not made a path), [object_store] and [outbox] come from
    the file; DUCKPULSE_SPOOL_URL and DUCKPULSE_OBJECT_STORE_ENDPOINT_URL from the environment; a URL given as
    spool_dir, or an endpoint holding credentials, is refused naming file:line."""
    from pipeline.config import describe, load

    config = tmp_path / "duckpulse.toml"
    config.write_text('[storage]\nspool_url = "s3://fleet-bucket/duckpulse"\n\n[archive]\n'
                      'history_dir = "s3://fleet-bucket/history"\n\n[object_store]\nendpoint_url = '
                      '"http://minio.internal:9000"\nregion = "eu-west-1"\n\n[outbox]\nmax_bytes = 1000000\n')
    settings = load(config=config, environ={})
    assert settings.owner.storage.spool_url == "s3://fleet-bucket/duckpulse"
    assert settings.owner.archive.history_dir == "s3://fleet-bucket/history"
    assert (settings.object_store.endpoint_url, settings.object_store.region) == ("http://minio.internal:9000",
                                                                                  "eu-west-1")
    assert settings.outbox.max_bytes == 1_000_000
    assert any(line.startswith("fleet: spool s3://fleet-bucket/duckpulse") for line in describe(settings))
    env = load(environ={"DUCKPULSE_SPOOL_URL": "s3://b-2/p", "DUCKPULSE_OBJECT_STORE_ENDPOINT_URL": "http://h:1"})
    assert (env.owner.storage.spool_url, env.object_store.endpoint_url) == ("s3://b-2/p", "http://h:1")
    config.write_text('[storage]\nspool_dir = "s3://fleet-bucket/duckpulse"\n')
    with pytest.raises(ConfigError, match=r"duckpulse.toml:2: \[storage\] spool_dir.*give it as spool_url"):
        load(config=config, environ={})
    config.write_text('[object_store]\n\nendpoint_url = "http://key:secret@minio:9000"\n')
    with pytest.raises(ConfigError, match=r"duckpulse.toml:3: \[object_store\] endpoint_url.*holds credentials"):
        load(config=config, environ={})
    monkeypatch.delenv("DUCKPULSE_DB_PATH", raising=False)
    with pytest.raises(ConfigError, match="exactly one of db_path"):
        Monitor(spool_dir=tmp_path / "s", spool_url="s3://b-2/p")


def test_host_is_a_label_to_group_filter_and_alert_by(s3: S3Server, tmp_path: Path, clock: FakeClock) -> None:
    """Two hosts upload; the central owner ingests them. Alert rules grouped by host fire for the slow host only,
    a rule filtered to one host sees only its rows; /api/hosts gives each host's figures (equal to SQL over the
    owner's rows) and, with host=, one host and its routes, with route=, one route on every host."""
    url = s3.new_bucket() + "/fleet"
    for name, slow_ms, fail_every in (("web-1", 0.0, 0), ("web-2", 400.0, 4)):
        with Monitor(spool_url=url, host=name, clock=clock, memory_interval_seconds=None,
                     flush_interval_seconds=3600, object_store=s3.settings(),
                     outbox=OutboxSettings(outbox_dir=tmp_path / name)) as producer:
            for i in range(40):
                status = 500 if fail_every and i % fail_every == 0 else 200
                producer.track_request(("/books/<id>", "/search")[i % 2], "GET", status, 5.0 + i + slow_ms,
                                       request_id=i)
                producer.track_query("SELECT * FROM books WHERE id = ?", 1.0 + i % 3, route="/search",
                                     request_id=i)
            assert producer.flush()
        # close() uploaded what the flush left in the outbox
        assert producer.stats()["outbox"]["waiting_segments"] == 0
    with Monitor(db_path=tmp_path / "central.duckdb", spool_url=url, jobs=False, clock=clock,
                 memory_interval_seconds=None, object_store=s3.settings()) as owner:
        assert owner.ingest_now() == 2 * (40 + 40)
        owner.add_threshold("request_duration", "gt", 200, "warning", aggregation="p95", by=("host",),
                            name="slow-host")
        owner.add_threshold("error_rate", "gt", 0.0, "critical", aggregation="count", by=("route",),
                            where={"host": "web-1"}, name="web-1-errors")
        owner.add_threshold("error_rate", "gt", 0.0, "critical", aggregation="count", by=("route", "host"),
                            where={"host": "web-2", "route": "/books/<id>"}, name="web-2-book-errors")
        owner.run_jobs_now()
        assert owner.alerts is not None
        states = {(s.rule, s.labels): s.state for s in owner.alerts.states()
                  if s.rule in ("slow-host", "web-1-errors", "web-2-book-errors")}
        assert states == {("slow-host", (("host", "web-1"),)): "inactive",
                          ("slow-host", (("host", "web-2"),)): "firing",
                          ("web-1-errors", (("route", "/books/<id>"),)): "inactive",
                          ("web-1-errors", (("route", "/search"),)): "inactive",
                          ("web-2-book-errors", (("host", "web-2"), ("route", "/books/<id>"))): "firing"}

        client = create_app({"TESTING": True}, monitor=owner).test_client()
        body = client.get("/api/hosts?window=1h").get_json()
        assert owner.store is not None
        expected = owner.store.fetchall(
            "SELECT host, count(*), count(*) FILTER (status >= 500), quantile_disc(duration_ms, 0.95), "
            "max(ts) FROM requests GROUP BY host ORDER BY host")
        assert [(h["host"], h["requests"], h["errors"], h["p95"]) for h in body["hosts"]] == [
            (h, c, e, p95) for h, c, e, p95, _ in expected]
        assert [h["queries"] for h in body["hosts"]] == [40, 40] and [h["processes"] for h in body["hosts"]] == [1, 1]
        assert body["method"] == "exact" and "routes" not in body

        one = client.get("/api/hosts?window=1h&host=web-2").get_json()
        assert [h["host"] for h in one["hosts"]] == ["web-2"]
        routes = owner.store.fetchall("SELECT route, count(*), count(*) FILTER (status >= 500), "
                                      "quantile_disc(duration_ms, 0.99) FROM requests WHERE host = 'web-2' "
                                      "GROUP BY route ORDER BY route")
        assert [(r["route"], r["requests"], r["errors"], r["p99"]) for r in one["routes"]] == routes

        search = client.get("/api/hosts?window=1h&route=/search").get_json()
        assert [(h["host"], h["requests"], h["errors"]) for h in search["hosts"]] == [("web-1", 20, 0),
                                                                                     ("web-2", 20, 0)]
        assert client.get("/api/hosts?host=").status_code == 400
        assert client.get("/api/hosts?hosts=web-1").get_json()["error"]["message"].startswith("unknown parameter")
