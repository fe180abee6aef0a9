"""A real S3-compatible server process for the tests (tests/s3_server.py), and what the tests do with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.objectstore import ObjectStore, ObjectStoreSettings

SERVER = str(Path(__file__).with_name("s3_server.py"))
# What every process of these tests signs with (moto accepts any key); the secret is distinctive so that a test
# can look for it in logs and files.
ACCESS_KEY = "AKIADUCKPULSETEST"
SECRET_KEY = "duckpulse-secret-8d1f0a6c2b7e4f93a5"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
               # pyarrow's AWS SDK would ask the instance metadata address for a region: never from a test.
               "AWS_EC2_METADATA_DISABLED": "true"}


class S3Server:
    """moto's server in a process of its own on 127.0.0.1, with its objects kept in ``state`` across restarts."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        """Start it (on the port it had, after a stop), and wait until it listens."""
        env = {**os.environ, **CREDENTIALS}
        self.proc = subprocess.Popen([sys.executable, SERVER, "--port", str(self.port), "--state", str(self.state)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once it listens
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the S3 server did not start (port {self.port}): {line!r}")
        self.port = int(line)
        return self

    def stop(self) -> None:
        """Stop it as an operator would (SIGTERM): it saves its objects and exits; requests are refused after."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=300)  # it saves every object first: over a minute at load ~30 on two cores
        self.proc = None

    def settings(self, **options: object) -> ObjectStoreSettings:
        return ObjectStoreSettings(endpoint_url=self.endpoint_url, **options)  # type: ignore[arg-type]

    def store(self, url: str) -> ObjectStore:
        return ObjectStore(url, self.settings())

    def new_bucket(self) -> str:
        """A bucket of its own for one test: ``s3://<bucket>``."""
        name = f"t-{uuid.uuid4().hex[:12]}"
        store = self.store(f"s3://{name}")
        store.client.make_bucket(name)
        return f"s3://{name}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server per test module (started once: moto's import takes a few seconds)."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = S3Server(tmp_path_factory.mktemp("s3-state")).start()
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
