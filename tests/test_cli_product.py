"""The duckpulse command as a product: `sql` over history and the live file, `--help` everywhere, errors that
exit non-zero saying what to do, and the multi-process demo with its dashboard."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import Monitor
from pipeline.cli import main
from pipeline.retention import RetentionSettings
from pipeline.testing import FakeClock

OLD_ROWS, NEW_ROWS = 10, 5


@pytest.fixture
def archived_db(tmp_path: Path) -> Path:
    """10 requests in an hour that was archived and then expired from the live file, and 5 newer live ones."""
    db = tmp_path / "m.duckdb"
    clock = FakeClock()
    with Monitor(db_path=db, clock=clock, jobs=False, memory_interval_seconds=None,
                 retention=RetentionSettings(raw_days=1 / 24)) as mon:
        for i in range(OLD_ROWS):
            mon.track_request("/old", "GET", 200, 5.0 + i)
            clock.advance(1)
        mon.flush()
        clock.advance(3 * 3600)
        for _ in range(NEW_ROWS):
            mon.track_request("/new", "GET", 503, 50.0)
        mon.run_jobs_now()  # archive (the first hour is closed), then retention (its raw rows leave the file)
    assert any((tmp_path / "m.duckdb.history" / "requests").glob("date=*/hour=*/data.parquet"))
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT route, count(*) FROM requests GROUP BY route").fetchall() == [("/new", NEW_ROWS)]
    finally:
        con.close()
    return db


def sql(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["sql", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- duckpulse sql ---------------------------------------------------------------------------------------------
def test_sql_reads_the_history_and_the_live_file_as_one_table(archived_db: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Rows expired from the live file come from the Parquet history, newer ones from the file, none twice."""
    code, out, err = sql(capsys, "--db", str(archived_db), "SELECT route, count(*) AS n, max(status) AS status "
                         "FROM requests GROUP BY route ORDER BY route")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["route", "n", "status"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["/new", str(NEW_ROWS), "503"]
    assert lines[3].split() == ["/old", str(OLD_ROWS), "200"]
    assert lines[-1] == "(2 rows)"


def test_sql_formats_csv_and_json(archived_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format csv prints a header and every row; --format json a list of objects with ISO timestamps."""
    query = "SELECT route, duration_ms, ts FROM requests ORDER BY ts"
    code, out, _ = sql(capsys, "--db", str(archived_db), "--format", "csv", query)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["route", "duration_ms", "ts"]
    assert [r[0] for r in rows[1:]] == ["/old"] * OLD_ROWS + ["/new"] * NEW_ROWS
    assert float(rows[1][1]) == 5.0
    code, out, _ = sql(capsys, "--db", str(archived_db), "--format", "json", query)
    assert code == 0
    records = json.loads(out)
    assert len(records) == OLD_ROWS + NEW_ROWS
    assert records[0]["route"] == "/old" and records[0]["duration_ms"] == 5.0
    assert re.fullmatch(r"2026-01-01T00:00:00(\.\d+)?", records[0]["ts"])


def test_sql_table_output_is_capped_by_max_rows(archived_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table format stops at --max-rows and says how to see the rest."""
    code, out, _ = sql(capsys, "--db", str(archived_db), "--max-rows", "3", "SELECT * FROM requests")
    assert code == 0
    assert len(out.splitlines()) == 2 + 3 + 1
    assert f"({OLD_ROWS + NEW_ROWS} rows; {OLD_ROWS + NEW_ROWS - 3} not shown" in out


def test_sql_with_the_owner_running_reads_what_it_published_and_says_when_that_is_old(
        archived_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While an owner holds the file, the archive and the minutes it published are read, never the file; a
    publication older than a minute (here: the fake clock's) is said on stderr."""
    with Monitor(db_path=archived_db, jobs=False, memory_interval_seconds=None):
        code, out, err = sql(capsys, "--db", str(archived_db), "--format", "csv",
                             "SELECT route, count(*) FROM requests GROUP BY route ORDER BY route")
    assert code == 0
    assert list(csv.reader(io.StringIO(out)))[1:] == [["/new", str(NEW_ROWS)], ["/old", str(OLD_ROWS)]]
    assert "last published" in err and "newer rows are missing" in err


def test_sql_with_the_owner_running_before_it_published_reads_the_archive_and_says_so(
        archived_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An owner that has published nothing yet (an older duckpulse's file): the archive only, said on stderr."""
    shutil.rmtree(archived_db.with_name(archived_db.name + ".history") / "_recent")
    with Monitor(db_path=archived_db, jobs=False, memory_interval_seconds=None):
        code, out, err = sql(capsys, "--db", str(archived_db), "--format", "csv",
                             "SELECT route, count(*) FROM requests GROUP BY route")
    assert code == 0
    assert list(csv.reader(io.StringIO(out)))[1:] == [["/old", str(OLD_ROWS)]]
    assert "held by its owner" in err and "archived history" in err


def test_sql_reads_the_environment_for_its_paths(archived_db: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """DUCKPULSE_DB_PATH and DUCKPULSE_HISTORY_DIR stand in for --db and --history."""
    monkeypatch.setenv("DUCKPULSE_DB_PATH", str(archived_db.with_name("elsewhere.duckdb")))
    monkeypatch.setenv("DUCKPULSE_HISTORY_DIR", f"{archived_db}.history")
    code, out, err = sql(capsys, "--format", "csv", "SELECT count(*) AS n FROM requests")
    assert code == 0, err
    assert out.splitlines() == ["n", str(OLD_ROWS + NEW_ROWS)]  # the archive and what the owner published


@pytest.mark.parametrize(("args", "message"), [
    (["SELEC 1"], "the query failed"),
    (["SELECT * FROM no_such_table"], "The tables are: "),
    (["   "], "no query given"),
])
def test_sql_errors_exit_2_and_say_what_to_do(archived_db: Path, capsys: pytest.CaptureFixture[str],
                                              args: list[str], message: str) -> None:
    """Bad SQL exits 2 with DuckDB's message, the tables there are and an example query."""
    code, out, err = sql(capsys, "--db", str(archived_db), *args)
    assert code == 2 and out == ""
    assert err.startswith("duckpulse: error: ") and message in err
    if "failed" in message or "tables" in message:
        assert "requests" in err and 'duckpulse sql "SELECT' in err


def test_sql_without_any_data_exits_2_naming_the_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No database and no history: exit 2, naming both paths and the options that set them."""
    code, _, err = sql(capsys, "--db", str(tmp_path / "none.duckdb"), "SELECT 1")
    assert code == 2
    assert str(tmp_path / "none.duckdb.history") in err and "--db" in err and "DUCKPULSE_DB_PATH" in err


def test_sql_unknown_format_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --format is refused with the accepted ones."""
    with pytest.raises(SystemExit) as exc:
        main(["sql", "--format", "xml", "SELECT 1"])
    assert exc.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


# -- --help everywhere, errors non-zero --------------------------------------------------------------------------
@pytest.mark.parametrize("command", [[], ["serve"], ["demo"], ["compact"], ["alerts"], ["alerts", "backtest"],
                                     ["sql"]], ids=lambda c: " ".join(c) or "duckpulse")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` prints the command's usage and options and exits 0."""
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: duckpulse {' '.join(command)}".rstrip())
    assert "-h, --help" in out


@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: command"),
    (["serve", "--spool", "s"], "the following arguments are required: --db"),
    (["demo", "--duration", "-1"], "'-1' is not a number of seconds >= 0"),
    (["demo", "--workers", "two"], "'two' is not a number of processes >= 0"),
    (["alerts"], "required: alerts_command"),
    (["sql"], "the following arguments are required: query"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
])
def test_usage_errors_exit_2_with_the_usage(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed command line exits 2, printing the usage and what was wrong."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: duckpulse") and message in err


def test_errors_of_each_command_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """serve, demo, compact and alerts backtest report a failure on stderr and exit 2."""
    db = tmp_path / "m.duckdb"
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nmetric = "request_duration"\nop = "gt"\nvalue = 1000\nlevel = "warning"\n')
    cases: list[tuple[list[str], str]] = [
        (["compact", "--db", str(tmp_path / "missing.duckdb")], "no such DuckDB file"),
        (["alerts", "backtest", str(tmp_path / "missing.toml"), "--db", str(db)], "cannot read the rules file"),
        (["alerts", "backtest", str(rules), "--db", str(tmp_path / "missing.duckdb")], "no such DuckDB file"),
        (["sql", "--db", str(tmp_path / "missing.duckdb"), "SELECT 1"], "no database at"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("duckpulse: error: ") and message in err, (argv, err)
    # Another process owns the file: serve and demo must own it, compact must have it alone.
    holder = subprocess.Popen([sys.executable, str(Path(__file__).with_name("process_roles.py")), "own_and_wait",
                               str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith("owner")
        for argv in (["serve", "--db", str(db), "--spool", str(tmp_path / "spool"), "--port", "0"],
                     ["demo", "--duration", "0", "--port", "0", "--db", str(db)],
                     ["compact", "--db", str(db)]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith("duckpulse: error: ") and f"process {holder.pid}" in err, (argv, err)
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)
    assert main(["demo", "--backfill-hours", "1", "--duration", "0", "--port", "0", "--db", str(db)]) == 2
    assert "pass a new file with --db" in capsys.readouterr().err


def test_the_console_script_exits_non_zero_on_errors(tmp_path: Path) -> None:
    """The installed entry point, in its own process: a message on stderr and exit status 2."""
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "sql", "--db", str(tmp_path / "none.duckdb"),
                          "SELECT 1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "duckpulse: error: no database at" in out.stderr


# -- the demo with producer processes ----------------------------------------------------------------------------
def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_demo_with_workers_serves_a_filled_dashboard_while_it_runs(tmp_path: Path) -> None:
    """`duckpulse demo --workers 2`: two producer processes spool, the owner ingests them and its dashboard
    reports their requests while the demo runs; at the end the table is printed and every row is in the file."""
    db = tmp_path / "demo.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", "--duration", "12", "--workers", "2",
                             "--port", "0", "--rate", "30", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    # Read on a thread, through the one file object (mixing readline() with communicate() loses buffered lines).
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    try:
        reader.start()
        deadline = time.monotonic() + 60
        while not any("dashboard at" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)  # the child prints when it is ready: no hook to call
        match = re.search(r"dashboard at (http://127\.0\.0\.1:\d+)", "".join(lines))
        assert match, "".join(lines)
        url = match[1]
        total = 0
        while time.monotonic() < deadline and proc.poll() is None:
            total = _get_json(f"{url}/api/metrics/performance?window=1h")["requests"]["total"]
            if total:
                break
            time.sleep(0.2)  # the producers and the owner's ingest run on their own schedules: no hook to call
        assert total > 0, "the dashboard never reported the producers' requests"
        proc.wait(timeout=120)
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "2 producer processes" in out
    assert "workers 2/2" in out
    assert "p95_ms" in out and "/books/<int:book_id>" in out
    recorded = int(re.search(r"duckpulse demo: (\d+) requests recorded", out)[1])  # type: ignore[index]
    con = duckdb.connect(str(db), read_only=True)
    try:
        [(rows, pids)] = con.execute("SELECT count(*), count(DISTINCT pid) FROM requests").fetchall()
    finally:
        con.close()
    assert rows == recorded and pids == 2


ROOT = Path(__file__).resolve().parents[1]


def test_the_demos_closing_hint_runs_as_typed_from_the_project_root(tmp_path: Path) -> None:
    """`make demo` runs the virtualenv's script from the project root, and that virtualenv is not on PATH: the
    command the demo prints at the end runs there as typed and reads the demo's data. Every file the demo leaves
    beside its database (and what an owner or `duckpulse compact` could leave there) is ignored by git."""
    script = Path(sys.executable).parent / "duckpulse"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]
    db = tmp_path / "duckpulse-demo.duckdb"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    demo = subprocess.run([*command, "demo", "--duration", "2", "--port", "0", "--db", str(db)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    hint = re.search(r"try `([^`]+)`", demo.stdout)
    assert hint, demo.stdout[-2000:]
    if script.is_file() and script.is_relative_to(ROOT):
        assert hint[1].startswith(f"{script.relative_to(ROOT)} sql --db {db} "), hint[1]
    typed = subprocess.run(hint[1], shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert typed.returncode == 0, typed.stderr
    assert "/books/<int:book_id>" in typed.stdout and re.search(r"\(\d+ rows\)", typed.stdout), typed.stdout

    left = {p.name + ("/" if p.is_dir() else "") for p in tmp_path.iterdir()} - {".cache/", ".config/"}
    assert f"{db.name}" in left
    names = left | {f"{db.name}.wal", f"{db.name}.history/", f"{db.name}.spool/", f"{db.name}.owner.lock",
                    f"{db.name}.compact-tmp", f"{db.name}.compact-tmp.wal", "test-artifacts/"}
    # check-ignore needs paths inside the checkout; a trailing "x" asks about a file inside a directory
    paths = [n + "x" if n.endswith("/") else n for n in sorted(names)]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *paths], capture_output=True,
                             text=True, timeout=60).stdout.split()
    assert sorted(ignored) == paths


# -- the demo runner in this process: stopping, and producers ----------------------------------------------------
def test_demo_without_a_duration_runs_until_sigterm(tmp_path: Path) -> None:
    """With no --duration the demo runs until SIGTERM (or Ctrl-C), then stops the traffic and prints the table."""
    import os
    import signal

    from pipeline.demo import DemoSettings, run

    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        if "requests" in line and "rss" in line and len([x for x in lines if "rss" in x]) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or a service manager sends; handled by the demo

    previous = signal.getsignal(signal.SIGTERM)
    rows = run(DemoSettings(db_path=tmp_path / "d.duckdb", duration_seconds=None, port=0,
                            progress_interval_seconds=0.2), dashboard=None, out=out)
    assert signal.getsignal(signal.SIGTERM) is previous, "the demo restores the SIGTERM handler it replaced"
    assert "no dashboard" in lines[0] and "until Ctrl-C" in lines[1]
    assert rows and lines[-2].startswith("route ")
    assert sum(r[2] for r in rows) > 0


def test_demo_interrupted_by_ctrl_c_still_prints_the_table(tmp_path: Path) -> None:
    """Ctrl-C during the traffic stops it, and what was recorded is still summed up."""
    from pipeline.demo import DemoSettings, run

    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        if "rss" in line:
            raise KeyboardInterrupt  # as Ctrl-C raises it in the main thread

    rows = run(DemoSettings(db_path=tmp_path / "d.duckdb", duration_seconds=60, port=0,
                            progress_interval_seconds=0.3), dashboard=None, out=out)
    assert "duckpulse demo: interrupted; stopping the traffic" in lines
    assert rows and "requests recorded" in lines[-1]


def test_demo_with_one_producer_process_in_this_process(tmp_path: Path) -> None:
    """--workers 1: the bookshop runs in a spawned producer; this process owns the file and ingests its rows."""
    import os

    from pipeline.demo import DemoSettings, run

    db = tmp_path / "d.duckdb"
    lines: list[str] = []
    rows = run(DemoSettings(db_path=db, duration_seconds=3, workers=1, port=0, progress_interval_seconds=0.5),
               dashboard=None, out=lines.append)
    assert any("workers 1/1" in line for line in lines)
    con = duckdb.connect(str(db), read_only=True)
    try:
        pids = {pid for (pid,) in con.execute("SELECT DISTINCT pid FROM requests").fetchall()}
        [(count,)] = con.execute("SELECT count(*) FROM requests").fetchall()
    finally:
        con.close()
    assert len(pids) == 1 and os.getpid() not in pids
    assert count == sum(r[2] for r in rows) > 0


def test_the_readme_documents_every_option_and_command() -> None:
    """The README's reference names every Monitor option, every dashboard setting and every command."""
    import inspect

    from pipeline.cli import build_parser
    from webapp.config import KEYS, PREFIX

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    from pipeline.settings import MonitorOptions

    options = [p for p in inspect.signature(Monitor.__init__).parameters if p not in ("self", "options")]
    options += list(MonitorOptions.__annotations__)
    assert [o for o in options if f"`{o}`" not in readme] == []
    assert [k for k in KEYS if f"`{PREFIX}{k}`" not in readme] == []
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert [c for c in commands if f"duckpulse {c}" not in readme] == []


def test_the_readme_documents_the_owners_job_settings_and_its_snippet_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RollupSettings, RetentionSettings, ArchiveSettings and PublishSettings: their import paths and every field
    are in the README (each field once per table row), and the README's snippet runs as written."""
    import dataclasses
    import importlib

    from pipeline.archive import ArchiveSettings
    from pipeline.publish import PublishSettings
    from pipeline.rollup import RollupSettings

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The owner's jobs"):readme.index("### The dashboard: `DUCKPULSE_*` keys")]
    # Defined in pipeline.settings with the other settings; documented where each job's module re-exports it.
    for cls, module in ((RollupSettings, "pipeline.rollup"), (RetentionSettings, "pipeline.retention"),
                        (ArchiveSettings, "pipeline.archive"), (PublishSettings, "pipeline.publish")):
        assert getattr(importlib.import_module(module), cls.__name__) is cls
        assert f"`{module}.{cls.__name__}`" in section and f"from {module} import {cls.__name__}" in section
        table = section[section.index(f"`{module}.{cls.__name__}`"):]
        table = table[:table.index("\n\n", table.index("| field |"))]
        assert [f.name for f in dataclasses.fields(cls) if f"\n| `{f.name}` |" not in table] == []
    snippet = section[section.index("```python\n") + 10:section.index("```\n", section.index("```python\n"))]
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})  # the README's own code, run as written
    assert (tmp_path / "metrics.duckdb").is_file()
