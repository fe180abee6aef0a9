"""A monitor under remote control, for the ownership tests: ``python tests/ownership_roles.py DB [ROLE] [CONFIG]``.

It creates ``Monitor(db_path=DB, role=ROLE)`` (flushing every 0.1 s, trying the owner lock every second as any
auto monitor does), prints ``{"pid": ..., "role": ...}``, then obeys one command per line on stdin and answers
each with one JSON line: ``record N FIRST`` (N requests with ids FIRST..), ``fail N FIRST`` (N requests answered
500 on /broken), ``flush``, ``stats``, ``count`` (rows and distinct ids, owner only), ``close``.
Holds no tests.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from pipeline import Monitor
from pipeline.testing import settle_notifications


def main(db: str, role: str = "auto", config: str | None = None) -> None:
    notifications: list[str] = []
    mon = Monitor(db_path=db, role=role, config=config, flush_interval_seconds=0.1, memory_interval_seconds=None)
    if mon.can_own:
        mon.on_alert(lambda n: notifications.append(f"{n.rule} {n.state}"))
    print(json.dumps({"pid": os.getpid(), "role": mon.stats()["role"]}), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        reply: dict[str, Any] = {}
        if cmd in ("record", "fail"):
            n, first = int(args[0]), int(args[1])
            route, status = ("/ok", 200) if cmd == "record" else ("/broken", 500)
            for i in range(first, first + n):
                mon.track_request(route, "GET", status, 1.0, request_id=i)
        elif cmd == "flush":
            reply["ok"] = mon.flush()
        elif cmd == "count":
            assert mon.store is not None
            reply["rows"], reply["ids"] = mon.store.fetchall(
                "SELECT count(*), count(DISTINCT request_id) FROM requests")[0]
        elif cmd == "close":
            mon.close()
        settle_notifications()  # callbacks run on the notifiers' thread
        st = mon.stats()
        reply.update(role=st["role"], takeovers=st["takeovers"], flushed=st["flushed"],
                     notifications=notifications)
        print(json.dumps(reply), flush=True)
        if cmd == "close":
            return


if __name__ == "__main__":
    main(*sys.argv[1:])
