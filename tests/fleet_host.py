"""One "host" of a fleet, as tests/test_fleet.py runs it: a process recording requests into object storage.

    python tests/fleet_host.py CONFIG HOST STOP_FILE RATE

``CONFIG`` is the host's duckpulse.toml (``[storage] spool_url``, ``[object_store]``, ``[outbox]``): the monitor is
``Monitor(config=CONFIG, host=HOST)``, a fleet producer. It records requests (request ids 0, 1, 2, ...) at about
``RATE`` per second until ``STOP_FILE`` exists, then waits (up to ten minutes) until its outbox is empty, closes
the monitor and prints its stats as one JSON line: what it recorded, flushed, dropped and uploaded.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import Monitor


def main() -> int:
    config, host, stop_file, rate = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    mon = Monitor(config=config, host=host, memory_interval_seconds=None)
    routes = ("/books/<id>", "/search", "/cart/checkout")
    sent = 0
    started = time.monotonic()
    while not stop_file.exists():
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            mon.track_request(routes[sent % 3], "GET", 200 if sent % 17 else 500, 1.0 + sent % 250, request_id=sent)
            sent += 1
        time.sleep(0.02)  # pacing this process's own traffic, not waiting for anything
    mon.flush()
    deadline = time.monotonic() + 600  # at load ~25 moto takes seconds per request
    while mon.stats()["outbox"]["waiting_segments"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the uploader's thread empties the outbox; the test waits for this process to end
    mon.close()  # a last upload attempt of what still waits
    stats = mon.stats()
    print(json.dumps({"host": host, "sent": sent, "recorded": stats["recorded"], "flushed": stats["flushed"],
                      "dropped": stats["dropped"], "outbox": stats["outbox"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
