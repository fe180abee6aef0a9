"""The notebooks run top to bottom on history the test set-up records, and are committed without outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebooks are tested with the `test` extra installed")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

from pipeline.demo.synthetic import backfill  # noqa: E402  # after the skips: nothing to import without them

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
# Two closed hours ending at 2026-01-01T02:00Z (the FakeClock's epoch): small, and fully archived.
END = 1_767_225_600.0 + 2 * 3600
KERNEL_TIMEOUT_SECONDS = 180


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with two hours of bookshop traffic, every hour archived to <db>.history."""
    db = tmp_path_factory.mktemp("notebooks") / "bookshop.duckdb"
    summary = backfill(db, hours=2, end=END, seed=11)
    assert summary.rows["requests"] > 1000 and summary.history_dir is not None
    assert any((Path(summary.history_dir) / "requests").glob("date=*/hour=*/data.parquet"))
    return db


@pytest.fixture
def notebook_env(history_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The kernel is a child process: it inherits these.
    monkeypatch.setenv("DUCKPULSE_DB_PATH", str(history_db))
    monkeypatch.setenv("DUCKPULSE_HISTORY_DIR", f"{history_db}.history")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    yield


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


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
@pytest.mark.usefixtures("notebook_env")
def test_notebook_runs_top_to_bottom_and_draws_charts(path: Path) -> None:
    """Every cell runs without an error on the recorded history, reading it through pipeline.history, and
    the notebook draws at least one matplotlib chart."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=KERNEL_TIMEOUT_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no chart was drawn"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "reading the live file" not in text, "the notebook should have read the archived history"
