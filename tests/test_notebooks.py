"""The notebooks run top to bottom on any amount of data (an empty store, a few minutes of one small app, hours of
the demo's backfill), say in words where there is too little to draw, draw time charts over the data's own range,
and are committed without outputs."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from pipeline import Monitor
from pipeline.integrations.dbapi import instrument
from pipeline.integrations.flask import DuckPulse
from pipeline.testing import FakeClock

nbformat = pytest.importorskip("nbformat", reason="the notebooks are tested with the `test` extra installed")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

from pipeline.demo.synthetic import backfill  # noqa: E402  # after the skips: nothing to import without them

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
# Two closed hours ending at 2026-01-01T02:00Z (the FakeClock's epoch): small, and fully archived.
END = 1_767_225_600.0 + 2 * 3600
KERNEL_TIMEOUT_SECONDS = 180
SIZES = ("empty", "small", "backfill")
TOO_LITTLE = "Too little data for"
# Run in the kernel before the notebook: keep the figures after they are shown, so the last cell can read them.
KEEP_FIGURES = "%config InlineBackend.close_figures = False"
# Run in the kernel after the notebook: the x-limits of every date axis drawn, and the data's range.
READ_AXES = """
import json as _json
import matplotlib.dates as _mdates
_limits = [[_mdates.num2date(v).replace(tzinfo=None).isoformat() for v in _ax.get_xlim()]
           for _num in plt.get_fignums() for _ax in plt.figure(_num).axes
           if isinstance(_ax.xaxis.get_major_locator(), _mdates.DateLocator)]
print("AXES " + _json.dumps({"date_axes": _limits, "since": data.since and data.since.isoformat(),
                             "until": data.until and data.until.isoformat()}))
"""


@pytest.fixture(scope="session")
def backfill_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of the demo's bookshop traffic (two worker processes, a deploy, an incident), every hour archived
    to <db>.history: made once per session."""
    db = tmp_path_factory.mktemp("notebooks") / "bookshop.duckdb"
    summary = backfill(db, hours=2, end=END, seed=11)
    assert summary.rows["requests"] > 1000 and summary.history_dir is not None
    assert any((Path(summary.history_dir) / "requests").glob("date=*/hour=*/data.parquet"))
    return db


@pytest.fixture(scope="session")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few minutes of one small Flask app of one's own: 300 requests over 4 minutes through the DuckPulse
    middleware, its SQLite queries through dbapi.instrument, two memory samples, one process, no hour archived."""
    db = tmp_path_factory.mktemp("notebooks") / "small.duckdb"
    clock = FakeClock()
    monitor = Monitor(db_path=db, clock=clock, jobs=False, memory_interval_seconds=None)
    sql = instrument(sqlite3.connect(":memory:", check_same_thread=False), monitor)
    sql.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    app = Flask("notes")
    DuckPulse(app, monitor=monitor)

    @app.get("/")
    def index() -> dict[str, int]:
        return {"notes": sql.execute("SELECT count(*) FROM notes").fetchone()[0]}

    @app.get("/notes/<int:note_id>")
    def note(note_id: int) -> dict[str, object]:
        if note_id % 23 == 0:
            raise RuntimeError("a bug")  # recorded as a 500
        return {"body": sql.execute("SELECT body FROM notes WHERE id = ?", (note_id,)).fetchone()}

    @app.post("/notes")
    def add() -> tuple[dict[str, int], int]:
        sql.execute("INSERT INTO notes (body) VALUES ('a note')")
        return {"ok": 1}, 201

    client = app.test_client()
    monitor.track_memory()
    for i in range(300):
        clock.advance(0.8)
        response = client.post("/notes") if i % 5 == 0 else client.get("/" if i % 3 == 0 else f"/notes/{i}")
        response.close()
        monitor.flush()  # the row is made at the flush, at the fake clock's time then: as often as once a second
    monitor.track_memory()
    monitor.run_jobs_now()
    monitor.close()
    return db


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store that recorded nothing yet: the file and its tables, no row."""
    db = tmp_path_factory.mktemp("notebooks") / "empty.duckdb"
    Monitor(db_path=db, jobs=False, memory_interval_seconds=None).close()
    return db


@pytest.fixture(params=SIZES)
def data_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    db: Path = request.getfixturevalue(f"{request.param}_db")
    # The kernel is a child process: it inherits these.
    monkeypatch.setenv("DUCKPULSE_DB_PATH", str(db))
    monkeypatch.setenv("DUCKPULSE_HISTORY_DIR", f"{db}.history")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    yield request.param


def test_there_are_four_notebooks() -> None:
    """Latency and SLOs, queries and N+1, memory and process health, alert tuning."""
    assert [p.stem for p in PATHS] == ["01_latency_slos", "02_queries_n_plus_one", "03_memory_process_health",
                                       "04_alert_tuning"]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    """Outputs are not committed: every code cell is unexecuted and empty."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


def run(path: Path) -> tuple[str, int, dict[str, object]]:
    """Execute the notebook in a fresh kernel: its printed text, the charts it drew, and what READ_AXES read."""
    nb = nbformat.read(path, as_version=4)
    nb.cells = [nbformat.v4.new_code_cell(KEEP_FIGURES), *nb.cells, nbformat.v4.new_code_cell(READ_AXES)]
    client = nbclient.NotebookClient(nb, timeout=KERNEL_TIMEOUT_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    charts = sum("image/png" in o.get("data", {}) for o in outputs)
    axes = json.loads(text.rsplit("AXES ", 1)[1])
    return text, charts, axes


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_top_to_bottom_on_any_amount_of_data(path: Path, data_size: str) -> None:
    """Every cell runs on an empty store, on a few minutes of one small app and on the demo's backfill. Where the
    data is too little for a chart, a sentence says so instead (nothing is drawn from an empty store); hours of
    archived history draw every chart, read through the archive; and every time chart's x-axis spans the data's
    own range (from the start of its first bucket to the last row), never years around it."""
    text, charts, axes = run(path)
    date_axes = axes["date_axes"]
    assert isinstance(date_axes, list)
    if data_size == "empty":
        assert "Nothing recorded yet" in text and "Nothing to show for" in text and charts == 0 and date_axes == []
        return
    assert axes["since"] and axes["until"]
    since, until = datetime.fromisoformat(str(axes["since"])), datetime.fromisoformat(str(axes["until"]))
    for lo, hi in date_axes:
        left, right = datetime.fromisoformat(lo), datetime.fromisoformat(hi)
        assert since - (until - since) <= left <= since and until <= right <= until + timedelta(seconds=1), (lo, hi)
    if data_size == "backfill":
        assert charts > 0 and TOO_LITTLE not in text, text[-3000:]
        assert "reading the live file" not in text, "the notebook should have read the archived history"
        assert len(date_axes) >= {"01": 2, "02": 1, "03": 5, "04": 0}[path.stem[:2]]
    else:  # a few minutes of one process: what can be drawn is, over minutes; the rest is said
        assert "the minutes the owner published" in text  # no hour archived: what its owner published
        if path.stem.startswith("04"):
            assert charts == 0 and re.search(f"{TOO_LITTLE} back-testing five-minute rules: minutes of history: 4, "
                                             r"30 needed, in 2026-01-01 00:00:\d\d to 00:0[34]", text), text[-3000:]
        else:
            assert charts > 0 and date_axes, text[-3000:]
        if path.stem.startswith("03"):
            assert f"{TOO_LITTLE} growth rates" in text and "2 samples over 4.0 min" in text
