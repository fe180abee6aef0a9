"""The wheel is self-contained: the SQL ships inside it and is found from any working directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_sql_and_works_outside_the_checkout(tmp_path: Path) -> None:
    """A wheel built from the project holds sql/*.sql; unpacked elsewhere, a Monitor creates the schema from it."""
    # Built from a copy of the tracked files: setuptools reuses a checkout's build/ folder, whose stale modules
    # would hide a package missing from pyproject.toml's list.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("duckpulse-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "pipeline/sql/schema.sql" in names and "pipeline/sql/queries.sql" in names
        assert any(n.endswith("entry_points.txt") for n in names)
        # The C recorder and fingerprint fast path are compiled into the wheel (which is therefore this
        # platform's), each with its type stub.
        for module in ("_record", "_fastfp"):
            assert any(n.startswith(f"pipeline/{module}.") and n.endswith((".so", ".pyd")) for n in names), names
            assert f"pipeline/{module}.pyi" in names
        # Every package of the source tree ships (the list in pyproject.toml is explicit, so a new subpackage
        # that is not added to it would be missing from every installed copy).
        for init in [*ROOT.glob("pipeline/**/__init__.py"), *ROOT.glob("webapp/**/__init__.py")]:
            shipped = init.relative_to(ROOT).as_posix()
            assert shipped in names, f"{shipped} is not in the wheel: add its package to pyproject.toml"
        zf.extractall(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import pipeline, sys; assert 'site' in pipeline.__file__, pipeline.__file__; "
            "m = pipeline.Monitor(db_path='x.duckdb', jobs=False, memory_interval_seconds=None); "
            "assert m._buffer.recorder is not None; m.track_request('/a', 'GET', 200, 1.0); m.flush(); "
            "print(m.store.fetchall('select count(*) from requests')[0][0]); m.close()")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); "
                          + code], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
