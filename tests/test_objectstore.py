"""Object storage against a real S3-compatible server (moto's, in its own process): the store's calls, a producer's
outbox and the owner's ingest of a fleet spool, each exactly once."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from pathlib import Path

import pytest
import s3_helpers
from s3_helpers import SECRET_KEY, S3Server

from pipeline import Monitor
from pipeline.buffer import Flush
from pipeline.errors import ConfigError, ObjectStoreError
from pipeline.ingest import Ingestor
from pipeline.logs import ThrottledLog
from pipeline.objectspool import ObjectSpool
from pipeline.objectstore import ObjectStore, ObjectStoreSettings, parse_url, resolve_endpoint, resolve_region
from pipeline.outbox import Outbox, OutboxFull, OutboxSettings, backoff_seconds
from pipeline.store import Store
from pipeline.testing import FakeClock

s3 = s3_helpers.s3  # the module's S3 server (a fixture)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flush_of(tmp: Path, requests: int, start_id: int = 0, host: str = "web-1") -> Flush:
    """What a producer's flush hands its sink: ``requests`` request rows (ids from ``start_id``)."""
    with Monitor(spool_dir=tmp / "unused", jobs=False, memory_interval_seconds=None, host=host,
                 flush_interval_seconds=3600) as mon:
        for i in range(requests):
            mon.track_request("/books/<id>", "GET", 200, 1.0 + i, request_id=start_id + i)
        mon._compact()
        return mon._buffer.take()


def outbox(s3: S3Server, url: str, tmp: Path, clock: FakeClock, **options: object) -> Outbox:
    settings = OutboxSettings(outbox_dir=tmp / "outbox", **options)  # type: ignore[arg-type]
    return Outbox(url, "web-1", clock, ThrottledLog(clock, 0.0), settings, s3.settings(), start=False)


# -- the store's calls -------------------------------------------------------------------------------------------------
def test_a_file_is_one_object_written_in_one_put(s3: S3Server, tmp_path: Path) -> None:
    """A file larger than the SDK's multipart threshold is still one PUT: its ETag is the MD5 of its bytes (a
    multipart upload's ETag ends in -<parts>); it lists, downloads, copies and deletes."""
    url = s3.new_bucket()
    store = s3.store(url + "/p")
    data = os.urandom(6 * 2**20)
    (tmp_path / "big.bin").write_bytes(data)
    etag = store.put_file("p/a/big.bin", tmp_path / "big.bin")
    assert etag == hashlib.md5(data).hexdigest()
    assert [(o.key, o.etag, o.size) for o in store.list("p/")] == [("p/a/big.bin", etag, len(data))]
    assert store.download("p/a/big.bin", tmp_path / "copy.bin") == etag
    assert (tmp_path / "copy.bin").read_bytes() == data
    store.copy("p/a/big.bin", "p/b/big.bin")
    store.delete(["p/a/big.bin", "p/never-was"])
    assert [o.key for o in store.list("p/")] == ["p/b/big.bin"]


def test_failures_say_what_happened_and_whether_to_retry(s3: S3Server) -> None:
    """An unreachable store is transient; a missing bucket is not, and says to create it."""
    down = ObjectStore("s3://some-bucket/p", ObjectStoreSettings(endpoint_url=f"http://127.0.0.1:{closed_port()}",
                                                                  timeout_seconds=2, retries=0))
    with pytest.raises(ObjectStoreError, match="unreachable") as info:
        down.list("p/")
    assert info.value.transient
    missing = s3.store("s3://no-such-bucket-here/p")
    with pytest.raises(ObjectStoreError, match="does not exist; create it") as info:
        missing.check_bucket()
    assert (info.value.code, info.value.transient) == ("NoSuchBucket", False)
    with pytest.raises(ObjectStoreError, match="create the bucket") as info:
        missing.list("p/")
    assert (info.value.code, info.value.transient) == ("NoSuchBucket", False)


@pytest.mark.parametrize(("url", "complaint"), [
    ("/var/spool", "expected an object storage URL"),
    ("s3://A_Bucket/x", "is not a bucket name"),
    ("s3://ok-bucket/a//b", "empty, '.' or '..' part"),
])
def test_bad_urls_are_refused_with_the_form_expected(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_url(url, "spool_url")


def test_urls_settings_and_the_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Endpoint and region come from the setting, else the AWS variables, else the profile's config file; an
    endpoint holding credentials is refused (it would end up in files and logs)."""
    assert (parse_url("s3://b-1/a/b/").prefix, parse_url("s3://b-1").key("ready", "x")) == ("a/b", "ready/x")
    with pytest.raises(ConfigError, match="holds credentials"):
        ObjectStoreSettings(endpoint_url="http://key:secret@127.0.0.1:9000")
    with pytest.raises(ConfigError, match="http://host:port"):
        ObjectStoreSettings(endpoint_url="ftp://127.0.0.1")
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert resolve_endpoint(ObjectStoreSettings()) == "http://127.0.0.1:9000"
    assert resolve_endpoint(ObjectStoreSettings(endpoint_url="https://s3.example")) == "https://s3.example"
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-3\n[profile fleet]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert resolve_region(ObjectStoreSettings()) == "eu-west-3"
    assert resolve_region(ObjectStoreSettings(profile="fleet")) == "ap-south-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert resolve_region(ObjectStoreSettings(profile="fleet")) == "us-west-2"
    assert resolve_region(ObjectStoreSettings(region="sa-east-1")) == "sa-east-1"


# -- a producer's outbox ----------------------------------------------------------------------------------------------
def test_the_outbox_uploads_each_segment_as_one_object_then_forgets_it(s3: S3Server, tmp_path: Path) -> None:
    url = s3.new_bucket() + "/fleet"
    clock = FakeClock()
    box = outbox(s3, url, tmp_path, clock)
    try:
        box.write(flush_of(tmp_path, 10))
        box.write(flush_of(tmp_path, 5, 10))
        assert box.waiting()[0] == 2
        assert box.step() > 0
        keys = [o.key for o in s3.store(url).list("fleet/")]
        assert len(keys) == 2 and all(k.startswith("fleet/ready/") and "-requests-web_1-" in k for k in keys)
        assert keys == sorted(keys)  # oldest first: names begin with the time they were written
        assert box.waiting() == (0, 0)
        assert box.stats_dict()["uploaded_segments"] == 2
    finally:
        box.close()


def test_while_the_store_is_unreachable_segments_wait_and_retries_back_off(s3: S3Server, tmp_path: Path) -> None:
    """Each failed round doubles the wait (1, 2, 4 s ... up to the maximum), on the monitor's clock; nothing is
    attempted before it is due; once the store answers, everything waiting goes, oldest first."""
    url = s3.new_bucket() + "/fleet"
    clock = FakeClock()
    settings = OutboxSettings(outbox_dir=tmp_path / "outbox", retry_initial_seconds=1, retry_max_seconds=4)
    down = ObjectStoreSettings(endpoint_url=f"http://127.0.0.1:{closed_port()}", timeout_seconds=2, retries=0)
    box = Outbox(url, "web-1", clock, ThrottledLog(clock, 0.0), settings, down, start=False)
    try:
        for i in range(3):
            box.write(flush_of(tmp_path, 4, 4 * i))
        waits = []
        for _ in range(4):
            waits.append(box.step())
            assert box.step() == waits[-1]  # not due yet: no attempt, the same wait
            clock.advance(waits[-1])
        assert waits == [1, 2, 4, 4]
        assert box.stats.upload_failures == 4 and "unreachable" in (box.stats.last_error or "")
        assert box.waiting()[0] == 3
        box.store = s3.store(url)  # the store is back (same bucket, reachable endpoint)
        box.step()
        assert box.waiting() == (0, 0)
        assert len(s3.store(url).list("fleet/ready/")) == 3
    finally:
        box.close()
    assert [backoff_seconds(n, OutboxSettings()) for n in (0, 1, 2, 5, 99)] == [0, 1, 2, 15, 15]


def test_a_full_outbox_drops_new_flushes_and_counts_them(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = OutboxSettings(outbox_dir=tmp_path / "outbox", max_bytes=1)
    down = ObjectStoreSettings(endpoint_url=f"http://127.0.0.1:{closed_port()}")
    box = Outbox("s3://fleet-bucket/p", "web-1", clock, ThrottledLog(clock, 0.0), settings, down, start=False)
    box.write(flush_of(tmp_path, 3))  # the first fits: the bound is checked before writing
    with pytest.raises(OutboxFull, match="max_bytes=1"):
        box.write(flush_of(tmp_path, 3, 3))
    assert box.stats.dropped_flushes == 1 and box.waiting()[0] == 1


def test_what_close_could_not_upload_is_uploaded_by_the_next_process(s3: S3Server, tmp_path: Path) -> None:
    url = s3.new_bucket() + "/fleet"
    clock = FakeClock()
    box = outbox(s3, url, tmp_path, clock, close_timeout_seconds=0)
    box.write(flush_of(tmp_path, 7))
    box.close()
    assert box.waiting()[0] == 1 and s3.store(url).list("fleet/") == []
    again = outbox(s3, url, tmp_path, clock)
    try:
        again.step()
        assert again.waiting()[0] == 0 and len(s3.store(url).list("fleet/ready/")) == 1
    finally:
        again.close()


def test_processes_sharing_an_outbox_upload_one_at_a_time(s3: S3Server, tmp_path: Path) -> None:
    """The first outbox to take the upload lock uploads for both; the other writes only, until the lock is free."""
    url = s3.new_bucket() + "/fleet"
    clock = FakeClock()
    first, second = outbox(s3, url, tmp_path, clock), outbox(s3, url, tmp_path, clock)
    first.step()
    second.write(flush_of(tmp_path, 2))
    assert second.step() == 5.0 and second.waiting()[0] == 1  # the lock is held: it waits
    first.step()
    assert first.stats.uploaded_segments == 1 and second.stats.uploaded_segments == 0
    first.close()
    clock.advance(5)
    second.write(flush_of(tmp_path, 2))
    second.step()
    assert second.stats.uploaded_segments == 1
    second.close()


# -- the owner's ingest of a fleet spool ------------------------------------------------------------------------------
def test_the_owner_ingests_every_object_once_and_deletes_it(s3: S3Server, tmp_path: Path, clock: FakeClock,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Segments from two hosts load once; an object uploaded again after the owner had loaded and deleted it
    (a producer that never heard the first PUT's answer) is recognised by key and ETag and deleted unloaded;
    a corrupt object goes to the quarantine prefix and the rest loads."""
    url = s3.new_bucket() + "/fleet"
    store_s3 = s3.store(url)
    boxes = [outbox(s3, url, tmp_path / h, clock) for h in ("a", "b")]
    for n, box in enumerate(boxes):
        box.write(flush_of(tmp_path, 100, 1000 * n, host=f"web-{n}"))
    kept = tmp_path / "kept.parquet"
    first = sorted((boxes[0].ready).iterdir())[0]
    kept.write_bytes(first.read_bytes())
    for box in boxes:
        box.step()
        box.close()
    spool = ObjectSpool(s3.store(url))
    db = Store(tmp_path / "m.duckdb", clock)
    try:
        ingestor = Ingestor(db, spool, clock, ThrottledLog(clock, 0.0))
        assert ingestor.drain() == 200
        assert store_s3.list("fleet/ready/") == []
        # The same segment again, under its own key (the retried PUT), and a corrupt one named as a segment.
        key = f"fleet/ready/{first.name}"
        store_s3.put_file(key, kept)
        corrupt = tmp_path / "corrupt.parquet"
        corrupt.write_bytes(b"PAR1" + os.urandom(500) + b"PAR1")
        store_s3.put_file(f"fleet/ready/{'0' * 19}1{first.name[20:]}", corrupt)
        assert ingestor.drain() == 0
        assert db.scalar("SELECT count(*) FROM requests") == 200
        assert db.scalar("SELECT count(DISTINCT (host, request_id)) FROM requests") == 200
        assert store_s3.list("fleet/ready/") == []
        quarantined = [o.key for o in store_s3.list("fleet/quarantine/")]
        assert len(quarantined) == 1 and ingestor.stats.quarantined == 1
        assert any("moved to s3://" in r.getMessage() for r in caplog.records)
    finally:
        spool.close()
        db.close()


def test_no_secret_reaches_a_log_or_a_file(s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Uploads that fail and succeed, with every log level on: the secret key is in no record and no file."""
    caplog.set_level(logging.DEBUG)
    url = s3.new_bucket() + "/fleet"
    clock = FakeClock()
    down = ObjectStoreSettings(endpoint_url=f"http://127.0.0.1:{closed_port()}", timeout_seconds=1, retries=0)
    box = Outbox(url, "web-1", clock, ThrottledLog(clock, 0.0), OutboxSettings(outbox_dir=tmp_path / "outbox"), down,
                 start=False)
    box.write(flush_of(tmp_path, 3))
    box.step()
    box.store = s3.store(url)
    clock.advance(60)
    box.step()
    box.close()
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records) + repr(box.stats_dict())
    assert "unreachable" in text and SECRET_KEY not in text
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET_KEY.encode() not in path.read_bytes(), path


def test_a_forked_worker_of_a_fleet_producer_uploads_through_the_shared_outbox(s3: S3Server, tmp_path: Path) -> None:
    """gunicorn --preload: a child forked from a fleet producer starts its own uploader and never unlocks the
    parent's outbox; its segments, written into the shared outbox, reach the store."""
    url = s3.new_bucket() + "/fleet"
    mon = Monitor(spool_url=url, host="web-1", memory_interval_seconds=None, flush_interval_seconds=3600,
                  object_store=s3.settings(), outbox=OutboxSettings(outbox_dir=tmp_path / "outbox"))
    try:
        mon.track_request("/parent", "GET", 200, 1.0)
        assert mon.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                alive = [t.name for t in threading.enumerate() if t.is_alive()]
                mon.track_request("/child", "GET", 200, 1.0)
                code = 0 if mon.flush() and "duckpulse-uploader" in alive else 2
                mon.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        mon.close()
    keys = [o.key for o in s3.store(url).list("fleet/ready/")]
    assert len(keys) == 2 and {k.split("-")[3] for k in keys} == {str(os.getpid()), str(pid)}
    assert mon.stats()["outbox"]["waiting_segments"] == 0
