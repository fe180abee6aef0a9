"""Create the tutorial app ``N`` times, as its test suite does, serve a request on each, and print as JSON this
process's threads (by name) and RSS after the first ``WARMUP`` apps and after all of them:
``python create_many.py N WARMUP``. Holds no tests (tests/test_app_factory.py runs it)."""

from __future__ import annotations

import gc
import json
import sys
import threading
from collections import Counter

import psutil
from flaskr import create_app


def main(n: int, warmup: int) -> None:
    marks: dict[int, dict[str, object]] = {}
    for i in range(1, n + 1):
        app = create_app({"TESTING": True})
        with app.test_client().get("/hello") as response:  # closed: this measures the app factory alone
            assert response.status_code == 200
        if i in (warmup, n):
            gc.collect()
            names = Counter(t.name.rsplit("_", 1)[0] for t in threading.enumerate())
            marks[i] = {"threads": dict(names), "rss_bytes": psutil.Process().memory_info().rss}
    from pipeline import default_monitor

    stats = default_monitor().stats()
    print(json.dumps({"marks": marks, "recorded": stats["recorded"], "role": stats["role"]}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
