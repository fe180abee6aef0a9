"""The history in object storage: the archive's files pushed to s3://bucket/history as they are, and read back by
history.connect() through a local cache (against moto's S3 server in its own process)."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest
import s3_helpers
import test_archive_history
from s3_helpers import S3Server
from test_archive_history import HOUR, files, hourly

from pipeline import ConfigError, archive, history, percentiles, rollup
from pipeline.archive import ArchiveSettings
from pipeline.objecthistory import MANIFEST, pull, push
from pipeline.store import Store
from pipeline.testing import FakeClock

s3 = s3_helpers.s3  # the module's S3 server (a fixture)
file_store = test_archive_history.file_store  # a Store on a real file (a fixture)


def archived(store: Store, clock: FakeClock, root: Path, hours: int) -> None:
    hourly(store, hours)
    clock.advance(hours * HOUR + 700)
    rollup.run(store, clock.now())
    archive.run(store, clock.now(), ArchiveSettings(history_dir=root))


def test_the_store_holds_the_archive_as_it_is(s3: S3Server, file_store: Store, clock: FakeClock,
                                              tmp_path: Path) -> None:
    """Every file of the local history is one object under the same relative key, byte for byte (its ETag is
    its MD5); a second push uploads nothing; a pruned partition's objects are deleted."""
    root = tmp_path / "history"
    archived(file_store, clock, root, 3)
    url = s3.new_bucket() + "/history"
    store = s3.store(url)
    summary = push(root, store)
    local = files(root)
    local.remove(MANIFEST)
    assert summary.uploaded == len(local) > 10
    remote = {o.key.removeprefix("history/"): o.etag for o in store.list("history/")}
    assert sorted(remote) == local
    assert all(remote[rel] == hashlib.md5((root / rel).read_bytes()).hexdigest() for rel in local)
    assert push(root, store).uploaded == 0
    clock.advance(24 * HOUR)
    archive.run(file_store, clock.now(), ArchiveSettings(history_dir=root, history_days=0.5))  # prunes every hour
    summary = push(root, store)
    assert summary.deleted > 0 and all("date=" not in o.key for o in store.list("history/"))


def test_history_connect_reads_the_store_through_a_cache(s3: S3Server, file_store: Store, clock: FakeClock,
                                                         tmp_path: Path) -> None:
    """connect("s3://...") gives the same tables and percentiles as the local history; a second connect downloads
    nothing that did not change; ``since`` leaves earlier partitions out."""
    root = tmp_path / "history"
    archived(file_store, clock, root, 3)
    url = s3.new_bucket() + "/history"
    push(root, s3.store(url))
    cache = tmp_path / "cache"
    start, end = FakeClock().now(), FakeClock().now() + 3 * HOUR
    with history.connect(url, cache_dir=cache, store=s3.settings()) as remote, history.connect(root) as here:
        query = "SELECT route, count(*), sum(duration_ms) FROM requests GROUP BY route ORDER BY route"
        assert remote.execute(query).fetchall() == here.execute(query).fetchall()
        assert remote.execute("SELECT count(*) FROM requests").fetchone() == (18,)
        got = percentiles(remote, "request_duration", start=start, end=end, by="route", method="exact")
    expected = percentiles(file_store.con, "request_duration", start=start, end=end, by="route", method="exact")
    assert got.to_dict("records") == expected.to_dict("records") and expected["count"].sum() == 18
    pulled = {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")}
    pull(s3.store(url), cache)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.parquet")} == pulled  # nothing downloaded again
    with history.connect(url, cache_dir=cache, store=s3.settings(), since=date(2026, 1, 2)) as later:
        views = {r[0] for r in later.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert "requests" not in views and "series" in views  # every hour is on 2026-01-01


def test_a_reader_never_pulls_into_an_owners_history(s3: S3Server, file_store: Store, clock: FakeClock,
                                                     tmp_path: Path) -> None:
    root = tmp_path / "history"
    archived(file_store, clock, root, 1)
    url = s3.new_bucket() + "/history"
    push(root, s3.store(url))
    with pytest.raises(ConfigError, match="owner's local history"):
        pull(s3.store(url), root)


def test_an_owner_with_an_s3_history_archives_locally_then_uploads(s3: S3Server, tmp_path: Path,
                                                                   clock: FakeClock) -> None:
    """archive.history_dir = "s3://...": the owner's jobs write <db>.history as always, then the history-upload
    job mirrors it; the central owner's stats name its sources, the local spool and the fleet's."""
    from pipeline import Monitor
    from pipeline.settings import ArchiveSettings as Archive

    url = s3.new_bucket()
    db = tmp_path / "central.duckdb"
    with Monitor(db_path=db, jobs=False, clock=clock, memory_interval_seconds=None, spool_url=url + "/fleet",
                 archive=Archive(history_dir=url + "/history"), object_store=s3.settings()) as mon:
        for i in range(30):
            mon.track_request("/r", "GET", 200, float(i))
        mon.flush()
        clock.advance(2 * HOUR)
        results = mon.run_jobs_now()
        assert results["history-upload"].uploaded >= 2
        assert mon.stats()["ingest"]["sources"] == [f"{db}.spool", f"{url}/fleet/ready"]
    keys = [o.key for o in s3.store(url).list("history/")]
    assert "history/requests/date=2026-01-01/hour=00/data.parquet" in keys and "history/series/data.parquet" in keys
    assert (tmp_path / "central.duckdb.history" / "requests").is_dir()


def test_a_notebook_reads_a_history_in_object_storage(s3: S3Server, file_store: Store, clock: FakeClock,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """DUCKPULSE_HISTORY_DIR=s3://... and the store's address in DUCKPULSE_OBJECT_STORE_ENDPOINT_URL: the
    notebooks' open_data() reads the fleet's history (through a cache under XDG_CACHE_HOME) and says so."""
    from pipeline import notebook

    root = tmp_path / "history"
    archived(file_store, clock, root, 3)
    url = s3.new_bucket() + "/history"
    push(root, s3.store(url))
    monkeypatch.setenv("DUCKPULSE_HISTORY_DIR", url)
    monkeypatch.setenv("DUCKPULSE_OBJECT_STORE_ENDPOINT_URL", s3.endpoint_url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DUCKPULSE_CONFIG", raising=False)
    data = notebook.open_data(db_path=tmp_path / "elsewhere.duckdb")
    assert data.counts["requests"] == 18
    assert f"Reading the archived history in {url} (its local copy: {tmp_path / 'cache'}" in capsys.readouterr().out
    data.con.close()


def test_duckpulse_sql_reads_a_history_in_object_storage(s3: S3Server, file_store: Store, clock: FakeClock,
                                                         tmp_path: Path) -> None:
    """`duckpulse sql --history s3://...` (the store's address in AWS_ENDPOINT_URL) brings the history into its
    cache and reads it, with the read-only lock on that cache: a query that writes is still refused."""
    import os
    import subprocess
    import sys

    root = tmp_path / "history"
    archived(file_store, clock, root, 3)
    url = s3.new_bucket() + "/history"
    push(root, s3.store(url))
    env = {**os.environ, "AWS_ENDPOINT_URL": s3.endpoint_url, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("DUCKPULSE_CONFIG", None)

    def sql(query: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "sql", "--db", str(tmp_path / "none.duckdb"),
                               "--history", url, query], capture_output=True, text=True, env=env, timeout=300)

    done = sql("SELECT count(*) AS n FROM requests")
    assert done.returncode == 0, done.stderr
    assert "18" in done.stdout.split()
    assert any((tmp_path / "cache").rglob("data.parquet"))
    refused = sql(f"COPY (SELECT 1) TO '{tmp_path / 'cache' / 'x.csv'}'")
    assert refused.returncode != 0 and not (tmp_path / "cache" / "x.csv").exists()
