"""What duckpulse loads into the host process: a producer, and `import pipeline`, stay light (issue 14).

Measured with benchmarks/bench_footprint.py: pandas adds ~80 MB to a process, pyarrow ~37 MB, numpy ~12 MB,
DuckDB ~14 MB, APScheduler ~3 MB. A producer (each gunicorn worker) records and writes Parquet segments with the
standard library only, so it must load none of them, nor the webapp; an owner needs DuckDB and its scheduler,
but never pandas or pyarrow (DataFrames are built only when a caller asks for one). Each check runs in a fresh
interpreter, so nothing imported by another test hides a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PRODUCER_MUST_NOT_LOAD = ("pandas", "pyarrow", "numpy", "duckdb", "apscheduler", "webapp")
OWNER_MUST_NOT_LOAD = ("pandas", "pyarrow", "numpy", "webapp")


def loaded_after(code: str, tmp_path: Path) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running ``code``."""
    script = (f"import json, sys\n{code}\n"
              "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_pipeline_loads_no_heavy_package(tmp_path: Path) -> None:
    """`import pipeline` loads none of pandas, pyarrow, numpy, DuckDB, APScheduler or the webapp."""
    loaded = loaded_after("import pipeline\nfrom pipeline.integrations.flask import DuckPulse", tmp_path)
    assert "pipeline" in loaded
    assert loaded.isdisjoint(PRODUCER_MUST_NOT_LOAD), loaded & set(PRODUCER_MUST_NOT_LOAD)


def test_a_producer_records_and_spools_without_heavy_packages(tmp_path: Path) -> None:
    """A producer that records every kind of metric, flushes segments and closes loads none of them."""
    loaded = loaded_after(
        "from pipeline import Monitor\n"
        "m = Monitor(spool_dir='spool', memory_interval_seconds=None, flush_interval_seconds=3600)\n"
        "m.track_request('/a', 'GET', 200, 1.0)\n"
        "m.track_query('SELECT 1', 1.0)\n"
        "m.counter('jobs').inc(); m.histogram('size').observe(3); m.track_memory()\n"
        "assert m.flush() and m.stats()['flushed'] == 5\n"
        "m.close()\n"
        "import os; assert len(os.listdir('spool/ready')) == 5", tmp_path)
    assert loaded.isdisjoint(PRODUCER_MUST_NOT_LOAD), loaded & set(PRODUCER_MUST_NOT_LOAD)


def test_an_owner_runs_its_jobs_without_pandas_or_pyarrow(tmp_path: Path) -> None:
    """An embedded owner loads DuckDB and APScheduler, flushes, ingests, runs every job and computes
    percentiles, without pandas, pyarrow or numpy (only by=... asks for a DataFrame)."""
    loaded = loaded_after(
        "from pipeline import Monitor\n"
        "m = Monitor(db_path='m.duckdb')\n"
        "m.track_request('/a', 'GET', 200, 1.0)\n"
        "m.run_jobs_now()\n"
        "assert m.percentiles('request_duration', window='1h')[0.5].count == 1\n"
        "m.close()", tmp_path)
    assert {"duckdb", "apscheduler"} <= loaded
    assert loaded.isdisjoint(OWNER_MUST_NOT_LOAD), loaded & set(OWNER_MUST_NOT_LOAD)


def test_a_fleet_producer_adds_only_its_s3_client(tmp_path: Path) -> None:
    """A producer spooling to object storage (its uploader tried, against a store that refuses connections) loads
    the MinIO SDK and urllib3, and still none of the heavy packages."""
    loaded = loaded_after(
        "import os, socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
        "os.environ.update(AWS_ACCESS_KEY_ID='k', AWS_SECRET_ACCESS_KEY='s', AWS_REGION='us-east-1')\n"
        "from pipeline import Monitor\n"
        "from pipeline.settings import ObjectStoreSettings, OutboxSettings\n"
        "m = Monitor(spool_url='s3://fleet-bucket/p', memory_interval_seconds=None, flush_interval_seconds=3600,\n"
        "            outbox=OutboxSettings(outbox_dir='outbox', close_timeout_seconds=1),\n"
        "            object_store=ObjectStoreSettings(endpoint_url=f'http://127.0.0.1:{port}', retries=0))\n"
        "m.track_request('/a', 'GET', 200, 1.0)\n"
        "assert m.flush()\n"
        "m.close()\n"
        "assert m.stats()['outbox']['waiting_segments'] == 1 and m.stats()['outbox']['upload_failures'] >= 1",
        tmp_path)
    assert {"minio", "urllib3"} <= loaded
    assert loaded.isdisjoint(PRODUCER_MUST_NOT_LOAD), loaded & set(PRODUCER_MUST_NOT_LOAD)
