"""Apache Spark (pyspark, local mode) reads the archived history as it is and agrees with duckpulse's percentiles.

The history goes the way a fleet's does: archived by the owner, pushed to object storage (moto's S3 server in its
own process), pulled into a local copy (Spark's s3a connector needs hadoop-aws and the AWS SDK's jars, ~600 MB from
Maven, which this test does not fetch), and read by Spark from that copy, hive partitions discovered from the paths.

Which figures are compared, and the bound:
- Spark's ``percentile_disc(q) WITHIN GROUP (ORDER BY duration_ms)`` is exact and nearest-rank (the smallest value
  whose cumulative share reaches q), the definition of ``pipeline.percentiles(..., method="exact")``: equal.
- Spark's ``percentile_approx(duration_ms, array(0.5, 0.95, 0.99), 10000)`` returns a value whose rank is within
  n/10000 of the exact one. With fewer than 10,000 rows per route that is less than one row: the exact value.
- ``pipeline.percentiles`` over these three hours by default merges the hourly sketches (``method="sketch"``) and
  states its bound, ``error_bound`` (0.99% relative, the DDSketch mapping): each of its figures is within that
  relative error of Spark's.
One Spark session for the module (a JVM start takes 10-40 s on a shared 2-core machine).
"""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3_helpers
from pyspark.sql import SparkSession
from s3_helpers import S3Server
from test_rollup import add_requests

from pipeline import archive, percentiles, rollup
from pipeline.archive import ArchiveSettings
from pipeline.objecthistory import pull, push
from pipeline.store import Store
from pipeline.testing import FakeClock

s3 = s3_helpers.s3  # the module's S3 server (a fixture)
HOUR = 3600.0
ROUTES = {"/books/<id>": 8.0, "/search": 25.0, "/reports/sales": 300.0}  # median latency, ms
QUANTILES = (0.5, 0.95, 0.99)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    assert shutil.which("java"), "Spark needs a JRE: make .venv/.test-installed installs Debian's default-jre-headless"
    work = tmp_path_factory.mktemp("spark")
    session = (SparkSession.builder.master("local[1]").appName("duckpulse-history")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.session.timeZone", "UTC").config("spark.local.dir", str(work))
               .config("spark.sql.warehouse.dir", str(work / "warehouse")).getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="module")
def fleet_history(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Store, float, float]:
    """Three hours of requests on three routes, archived, pushed to S3 and pulled back into a local copy."""
    tmp = tmp_path_factory.mktemp("history")
    clock = FakeClock()
    store = Store(tmp / "m.duckdb", clock)
    rng = random.Random(17)
    start = clock.now()
    rows = [(start + rng.uniform(0, 3 * HOUR), route, "GET", 200, rng.lognormvariate(math.log(median), 0.6))
            for route, median in ROUTES.items() for _ in range(rng.randint(1500, 2500))]
    add_requests(store, sorted(rows))
    clock.advance(3 * HOUR + 700)
    rollup.run(store, clock.now())
    archive.run(store, clock.now(), ArchiveSettings(history_dir=tmp / "owner-history"))
    url = s3.new_bucket() + "/history"
    push(tmp / "owner-history", s3.store(url))
    return pull(s3.store(url), tmp / "copy"), store, start, start + 3 * HOUR


def test_spark_reads_the_archive_and_agrees_with_duckpulse(spark: SparkSession,
                                                          fleet_history: tuple[Path, Store, float, float]) -> None:
    copy, store, start, end = fleet_history
    requests = spark.read.parquet(str(copy / "requests"))
    assert {"date", "hour", "route", "duration_ms", "host"} <= set(requests.columns)  # partitions from the paths
    requests.createOrReplaceTempView("requests")
    disc = ", ".join(f"percentile_disc({q}) WITHIN GROUP (ORDER BY duration_ms) AS d{i}"
                     for i, q in enumerate(QUANTILES))
    answer = spark.sql(
        f"SELECT route, count(*) AS n, percentile_approx(duration_ms, array(0.5, 0.95, 0.99), 10000) AS approx, "
        f"{disc} FROM requests WHERE hour BETWEEN 0 AND 2 GROUP BY route").collect()
    got = {r["route"]: r for r in answer}
    exact = percentiles(store.con, "request_duration", QUANTILES, start=start, end=end, by="route", method="exact")
    sketch = percentiles(store.con, "request_duration", QUANTILES, start=start, end=end, by="route")
    assert set(got) == set(ROUTES) == set(exact["route"]) == set(sketch["route"])
    assert set(sketch["method"]) == {"sketch"}
    for ex, sk in zip(exact.sort_values("route").to_dict("records"), sketch.sort_values("route").to_dict("records"),
                      strict=True):
        row = got[ex["route"]]
        assert row["n"] == ex["count"] == sk["count"] < 10_000
        for i, q in enumerate(QUANTILES):
            column = f"p{round(q * 100)}"
            assert row[f"d{i}"] == ex[column]  # exact, nearest rank, on both sides
            assert row["approx"][i] == ex[column]  # rank error n/10000 < 1 row
            assert abs(sk[column] - row["approx"][i]) <= sk["error_bound"] * row["approx"][i]
