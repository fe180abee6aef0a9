"""What the notebooks share: opening the data, its time range, buckets that fit it, and saying when it is too little.

The notebooks run on any amount of data: none yet (a store that recorded nothing, or no file where they look),
a few minutes of one small app, or weeks of history. ``open_data()`` reads what there is through
``pipeline.history.connect()``: the archived history and the minutes its owner published since, else the live
file (written by an older duckpulse, when no owner holds it); a table with neither is an empty one, so every
query still runs. A chart first asks ``enough()``; when the data cannot make it, a sentence says what is missing
instead of an empty or misleading chart. Time charts use ``step()``, a round bucket width that cuts the data's
own range into about as many buckets as asked (ten minutes over hours of history, seconds over a few minutes),
and ``xlim()``, so their x-axis spans the data's real time range.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import history, sqlfiles
from .store import migrations, quote_identifier

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

# The notebooks run from notebooks/; the demo writes its file at the top of the checkout.
DEFAULT_DB = Path("..") / "duckpulse-demo.duckdb"
# Bucket widths a chart may use, smallest first: round numbers a reader takes in at a glance.
STEPS_SECONDS = (1, 5, 10, 30, 60, 5 * 60, 10 * 60, 30 * 60, 3600, 3 * 3600, 6 * 3600, 86_400, 7 * 86_400)
# The raw tables whose rows give the data's time range.
RAW_TABLES = ("requests", "queries", "process_samples")
EMPTY = "duckpulse_empty"  # the in-memory catalog holding an empty copy of every table (sql/history.sql)
SQL = "history.sql"
# Said once, under the first cell's summary, when the data is short.
MORE_DATA = ("More comes as the app records; for hours of history to explore, run the demo with a backfill on a "
             "new file (`make demo DEMO_ARGS=\"--backfill-hours 6 --duration 30 --db shop.duckdb\"`) and set "
             "DUCKPULSE_DB_PATH to that file's full path.")
# Below this much data, the first cell says where more comes from.
SHORT_SECONDS = 3600


@dataclass
class Data:
    """The connection a notebook reads through, and the time range of what it holds."""

    con: duckdb.DuckDBPyConnection
    # What is read, in words: the archived history, the live file, or nothing.
    source: str
    # The first and last timestamp over requests, queries and process samples (UTC, naive, as DuckDB returns a
    # TIMESTAMP); None when there is no row at all.
    since: datetime | None
    until: datetime | None
    # Whether the live file is attached as `live` (alert transitions are only kept there).
    live: bool
    # Rows per raw table.
    counts: dict[str, int]

    def named(self, block: str, file: str = "dashboard.sql", **params: Any) -> pd.DataFrame:
        """A named query of sql/ (the dashboard's own definitions) as a DataFrame."""
        return self.con.execute(sqlfiles.query(file, block), params).df()

    @property
    def since_epoch(self) -> float | None:
        return None if self.since is None else self.since.replace(tzinfo=UTC).timestamp()

    @property
    def until_epoch(self) -> float | None:
        return None if self.until is None else self.until.replace(tzinfo=UTC).timestamp()

    @property
    def span_seconds(self) -> float:
        """How long the data covers (0 with one row or none)."""
        if self.since is None or self.until is None:
            return 0.0
        return (self.until - self.since).total_seconds()

    def step(self, buckets: int = 40) -> timedelta:
        """The smallest round bucket width that cuts the data's range into at most ``buckets`` buckets."""
        wanted = self.span_seconds / max(buckets, 1)
        return timedelta(seconds=next((s for s in STEPS_SECONDS if s >= wanted), STEPS_SECONDS[-1]))

    def xlim(self, step: timedelta) -> tuple[datetime, datetime]:
        """The x-axis of a chart in ``step`` buckets: from the start of the first bucket to the last row."""
        if self.since is None or self.until is None:
            raise ValueError("no data: ask enough() before drawing")
        epoch = datetime(1970, 1, 1)
        start = self.since - (self.since - epoch) % step  # buckets are aligned on the Unix epoch, as time_bucket
        return start, max(self.until, start + step)

    def enough(self, have: int, need: int, what: str, purpose: str) -> bool:
        """Whether ``have`` of ``what`` (a plural: "routes with requests") reach ``need`` for ``purpose``; if not,
        say so in a sentence."""
        if have >= need:
            return True
        if self.since is None:
            print(f"Nothing to show for {purpose}: nothing recorded yet.")
        else:
            print(f"Too little data for {purpose}: {what}: {have}, {need} needed, in {self.range_words()}.")
        return False

    def range_words(self) -> str:
        """The data's range, in words: "2026-01-01 00:00:02 to 00:04:58 UTC (4 min 56 s)"."""
        if self.since is None or self.until is None:
            return "no recorded range"
        same_day = self.since.date() == self.until.date()
        end = f"{self.until:%H:%M:%S}" if same_day else f"{self.until:%Y-%m-%d %H:%M:%S}"
        return f"{self.since:%Y-%m-%d %H:%M:%S} to {end} UTC ({duration_words(self.span_seconds)})"


def step_words(step: timedelta) -> str:
    """A bucket width in words: "10 seconds", "5 minutes", "1 hour"."""
    seconds = int(step.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{step.total_seconds():g} seconds"


def duration_words(seconds: float) -> str:
    """"4 min 56 s", "2 h", "3 d 4 h": the two largest units."""
    seconds = round(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2]) or "0 s"


def open_data(db_path: str | os.PathLike[str] | None = None,
              history_dir: str | os.PathLike[str] | None = None) -> Data:
    """The notebook's data: ``db_path`` (default ``$DUCKPULSE_DB_PATH``, else the demo's file) and its history
    (default ``$DUCKPULSE_HISTORY_DIR``, else ``<db>.history``). Prints what it reads and the range it covers."""
    db = Path(db_path or os.environ.get("DUCKPULSE_DB_PATH") or DEFAULT_DB)
    # A history in object storage (s3://..., a fleet's) is read through a local cache brought up to date first.
    named = history_dir or os.environ.get("DUCKPULSE_HISTORY_DIR") or f"{db}.history"
    hist = history.local_history(named)
    con = history.connect(hist, db)
    views = {name for (name,) in con.execute(sqlfiles.query(SQL, "history-own-views")).fetchall()}
    live = history.LIVE in {name for (name,) in con.execute(sqlfiles.query(SQL, "history-databases")).fetchall()}
    if "requests" in views:
        if os.fspath(named) != os.fspath(hist):  # object storage: the fleet's archive, through a local copy
            source = f"the archived history in {os.fspath(named)} (its local copy: {hist})"
        else:
            source = f"the history in {hist} (archived hours, and the minutes the owner published since)"
    elif live:
        con.execute(f"USE {history.LIVE}")  # no closed hour archived yet (a new app, a fresh demo)
        source = f"the live file {db} (no history in {hist} yet: reading the live file)"
    elif db.exists():
        source = f"nothing yet: {db} is held by its owner and {hist} holds no archived hour"
    else:
        source = (f"nothing: there is no {db} and no history in {hist}; set DUCKPULSE_DB_PATH (and "
                  "DUCKPULSE_HISTORY_DIR when the history is elsewhere) to your data, or run `make demo`")
    if not live or "requests" in views:
        _empty_tables_for_the_missing(con, views)
    [(*numbers, since, until)] = con.execute(sqlfiles.query(SQL, "notebook-extent")).fetchall()
    counts = dict(zip(RAW_TABLES, (int(n) for n in numbers), strict=True))
    data = Data(con, source, since, until, live, counts)
    print(f"Reading {source}.")
    if since is None:
        print(f"Nothing recorded yet: each cell below says what it needs. {MORE_DATA}")
    else:
        rows = ", ".join(f"{n:,} {t.replace('_', ' ')}" for t, n in counts.items())
        print(f"{rows}, from {data.range_words()}." + (f" {MORE_DATA}" if data.span_seconds < SHORT_SECONDS else ""))
    return data


def _empty_tables_for_the_missing(con: duckdb.DuckDBPyConnection, views: set[str]) -> None:
    """An empty view for every table of the schema that neither the history nor the live file provides (an app
    without queries archives no queries; a missing file provides nothing), so that every query still runs."""
    con.execute(sqlfiles.query(SQL, "notebook-attach-empty"))
    con.execute(f"USE {EMPTY}")
    for _, sql in migrations():
        con.execute(sql)
    con.execute("USE memory")
    for (table,) in con.execute(sqlfiles.query(SQL, "notebook-empty-tables")).fetchall():
        if table not in views:  # identifiers from DuckDB's own catalog, quoted
            name = quote_identifier(table)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {EMPTY}.{name}")
