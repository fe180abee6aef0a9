"""The Parquet history in object storage: what the archive wrote, mirrored to ``s3://bucket/history/...``, and the
copy a reader keeps.

The owner's archive job writes closed hours in the hive layout into a local directory as always (``<db>.history``:
temporary name, fsync, rename, idempotent, see pipeline/archive.py); with ``history_dir = "s3://..."`` the
"history-upload" job then ``push``es that directory: every file that is new or changed since the last push is
uploaded under the same relative key (``<prefix>/requests/date=2026-01-01/hour=13/data.parquet``), and the objects of
files the archive pruned or replaced are deleted. A manifest beside the files (``.uploaded.json``: size, mtime and
ETag of what was uploaded) is what says "changed"; a push that dies half-way uploads the rest next time. So the
object store holds exactly the layout Spark, Trino and DuckDB read, and the local directory stays the archive's
working copy (its jobs list their own files).

Readers (``pipeline.history.connect("s3://...")``, the notebooks) ``pull`` into a local cache: only objects whose
ETag differs from the cached copy's are downloaded, objects gone from the store are removed from the cache, and
``since`` limits the pull to the hour partitions from that day on. DuckDB's httpfs extension would read the objects
directly, but it is downloaded at run time from DuckDB's servers, which a closed network cannot reach; the pinned
DuckDB (2.x) has no such extension on PyPI either. The cache is then read with the usual views.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath

from .errors import ConfigError
from .objectstore import ObjectStore, ObjectUrl, user_cache_dir

MANIFEST = ".uploaded.json"  # in the local history: what was pushed (a dot file: no view ever reads it)
CACHE_MANIFEST = ".pulled.json"  # in a reader's cache: the ETag of each file pulled
SUFFIX = ".parquet"
RECENT_DIR = "_recent"  # pipeline/publish.py's (not imported: this module stays without DuckDB)


@dataclass(frozen=True)
class PushSummary:
    """What one push did."""

    url: str
    uploaded: int = 0
    deleted: int = 0
    uploaded_bytes: int = 0


def _files(root: Path) -> dict[str, Path]:
    """The history's Parquet files by relative key (temporary files, whose names do not end in .parquet, left out,
    and what the owner publishes for local readers every few seconds: the archive is what a fleet shares)."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in root.rglob(f"*{SUFFIX}")
            if p.is_file() and p.relative_to(root).parts[0] != RECENT_DIR}


def _read_json(path: Path) -> dict[str, list[object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, list[object]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def push(local_dir: str | os.PathLike[str], store: ObjectStore) -> PushSummary:
    """Mirror the local history to the store's prefix: upload what is new or changed, delete what is gone.

    Raises ObjectStoreError when the store fails; what was done so far is recorded, the rest is done next time.
    """
    root = Path(local_dir)
    manifest_path = root / MANIFEST
    manifest = _read_json(manifest_path)
    files = _files(root)
    uploaded = deleted = uploaded_bytes = 0
    try:
        for rel, path in sorted(files.items()):
            stat = path.stat()
            seen = [stat.st_size, stat.st_mtime_ns]
            if manifest.get(rel, [])[:2] == seen:
                continue
            etag = store.put_file(store.url.key(rel), path)
            manifest[rel] = [*seen, etag]
            uploaded += 1
            uploaded_bytes += stat.st_size
        gone = sorted(set(manifest) - set(files))
        if gone:
            store.delete([store.url.key(rel) for rel in gone])
            for rel in gone:
                del manifest[rel]
            deleted = len(gone)
    finally:
        if uploaded or deleted:
            _write_json(manifest_path, manifest)
    return PushSummary(str(store.url), uploaded, deleted, uploaded_bytes)


def _partition_day(rel: str) -> date | None:
    """The day of an hour partition's file (``<table>/date=YYYY-MM-DD/hour=HH/x.parquet``), None for other files."""
    for part in PurePosixPath(rel).parts:
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[5:])
            except ValueError:
                return None
    return None


def pull(store: ObjectStore, cache_dir: str | os.PathLike[str], since: date | None = None) -> Path:
    """Bring the store's history into ``cache_dir`` (what changed only); returns the directory to read.

    ``since``: only the hour partitions of that day and later (files outside partitions, such as the custom
    series, always come). Files the store no longer has, or that ``since`` now leaves out, leave the cache too.
    """
    root = Path(cache_dir)
    if (root / MANIFEST).exists():
        raise ConfigError(f"cache_dir={root} is an owner's local history (it holds {MANIFEST}); pulling into it would "
                          "delete what it has not pushed yet. Give the reader a directory of its own")
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / CACHE_MANIFEST
    manifest = _read_json(manifest_path)
    prefix = store.url.key() + "/" if store.url.prefix else ""
    wanted: dict[str, str] = {}
    for obj in store.list(prefix):
        rel = obj.key[len(prefix):]
        day = _partition_day(rel)
        if rel.endswith(SUFFIX) and not (since is not None and day is not None and day < since):
            wanted[rel] = obj.etag
    try:
        for rel, etag in sorted(wanted.items()):
            target = root / rel
            if manifest.get(rel, [None])[0] == etag and target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Downloaded beside the target under a name no view reads, then renamed: a reader never sees half a file.
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                manifest[rel] = [store.download(store.url.key(rel), tmp)]
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        for rel in sorted(set(_files(root)) - set(wanted)):
            (root / rel).unlink(missing_ok=True)
            manifest.pop(rel, None)
    finally:
        _write_json(manifest_path, manifest)
    return root


def default_cache_dir(url: ObjectUrl) -> Path:
    """``<cache>/duckpulse/history/<bucket>/<prefix>`` ($XDG_CACHE_HOME or ~/.cache): one copy per history."""
    return user_cache_dir() / "duckpulse" / "history" / url.bucket / (url.prefix.replace("/", "_") or "_")

