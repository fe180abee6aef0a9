"""An S3-compatible server for the tests: moto's server (its WSGI app) in a process of its own on 127.0.0.1.

    python tests/s3_server.py [--port N] [--state DIR]

Prints the port it listens on (port 0, the default, picks a free one), then serves until SIGTERM. Moto keeps
objects in memory; with ``--state DIR`` this process gives it what a real store has, a disk: at start it loads
every object found under ``DIR/<bucket>/<key>`` (buckets included), and at SIGTERM it writes every object there
before exiting. So a test can stop the store (requests are refused while it is down) and start it again on the
same port with its objects, as a MinIO would come back. Objects are stored again whole, so their ETags (the MD5
of a single PUT) are what they were.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "duckpulse-test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "duckpulse-test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def _backend():  # type: ignore[no-untyped-def]
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["global"]


def load(state: Path) -> int:
    """Create every bucket and object saved under ``state`` (before the server answers anything)."""
    backend, loaded = _backend(), 0
    for bucket_dir in sorted(p for p in state.iterdir() if p.is_dir()):
        backend.create_bucket(bucket_dir.name, "us-east-1")
        for path in sorted(p for p in bucket_dir.rglob("*") if p.is_file()):
            backend.put_object(bucket_dir.name, path.relative_to(bucket_dir).as_posix(), path.read_bytes())
            loaded += 1
    return loaded


def save(state: Path) -> int:
    """Write every bucket and object under ``state`` (after the server stopped answering)."""
    import shutil

    backend, saved = _backend(), 0
    shutil.rmtree(state, ignore_errors=True)
    for name, bucket in list(backend.buckets.items()):
        (state / name).mkdir(parents=True, exist_ok=True)
        for key_name in list(bucket.keys.keys()):
            key = bucket.keys[key_name]
            target = state / name / key_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(key.value)
            saved += 1
    return saved


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path)
    args = parser.parse_args()

    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    if args.state is not None and args.state.is_dir():
        load(args.state)
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(server.port, flush=True)
    stop.wait()
    server.shutdown()  # no new request is accepted
    server.server_close()
    # A request being answered finishes before the objects are saved: an object the store acknowledged is kept.
    for other in threading.enumerate():
        if other is not threading.main_thread():
            other.join(timeout=30)
    if args.state is not None:
        save(args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
