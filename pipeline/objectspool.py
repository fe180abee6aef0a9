"""A fleet's spool in object storage, as the central owner's ingest reads it.

Hosts upload each segment as one object, ``<prefix>/ready/<segment name>`` (pipeline/outbox.py); names begin with
the time they were written, so listing the prefix (S3 lists in key order) pages the backlog oldest first across
every host. The owner downloads a page into a staging directory of its own, loads it with the ledger in one
transaction (pipeline/ingest.py), then deletes the objects.

The ledger name of an object is ``s3://bucket/key#etag``: an owner killed after the commit and before the delete
finds the object's key and ETag in the ledger and deletes it without loading it again, and so does any owner when a
producer uploaded the same segment twice (it never heard the store's answer to the first PUT, retried, and the
owner had loaded and deleted the first copy meanwhile: the same bytes have the same ETag). A corrupt object is
copied to ``<prefix>/quarantine/`` and deleted from ``ready/``.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from .errors import ObjectStoreError
from .objectstore import ObjectStore
from .spool import Segment, parse_name

READY = "ready"
QUARANTINE = "quarantine"
# Objects downloaded at once: the owner waits on the network, not on its CPU, for small objects.
DOWNLOAD_THREADS = 8


class ObjectSpool:
    """``<prefix>/ready/`` of an object store as an ingest source."""

    def __init__(self, store: ObjectStore, staging_dir: str | None = None) -> None:
        self.store = store
        self.ready = store.url.key(READY) + "/"
        self._staging = Path(tempfile.mkdtemp(prefix="duckpulse-ingest-", dir=staging_dir))
        self._pool: ThreadPoolExecutor | None = None
        self._listed = 0
        self._keys: dict[str, str] = {}  # ledger name -> object key, for the segments of the current page

    def __str__(self) -> str:
        return str(self.store.url.child(READY))

    def page(self, limit: int) -> tuple[list[Segment], list[Segment]]:
        objects = self.store.list(self.ready, limit=limit)
        self._listed = len(objects)
        self._keys = {}
        segments: list[Segment] = []
        strangers: list[Segment] = []
        for obj in objects:
            name = f"s3://{self.store.bucket}/{obj.key}#{obj.etag}"
            local = self._staging / PurePosixPath(obj.key).name
            self._keys[name] = obj.key
            seg = parse_name(local, name)
            if seg is None:
                strangers.append(Segment(local, "", 0, name))
            else:
                segments.append(seg)
        return segments, strangers

    def fetch(self, segments: list[Segment]) -> list[Segment]:
        """Download the page in parallel; an object deleted meanwhile is left out, a failure of the store raises."""
        if not segments:
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="duckpulse-download")
        results = list(self._pool.map(self._download, segments))
        failures = [r for r in results if isinstance(r, ObjectStoreError)]
        if any(f.code != "NoSuchKey" for f in failures):
            self.release(segments)
            raise next(f for f in failures if f.code != "NoSuchKey")
        return [seg for seg, r in zip(segments, results, strict=True) if r is None]

    def _download(self, seg: Segment) -> ObjectStoreError | None:
        try:
            etag = self.store.download(self._keys[seg.name], seg.path)
        except ObjectStoreError as exc:
            return exc
        if not seg.name.endswith(f"#{etag}"):
            # Replaced between the listing and the download: not the object the ledger name stands for. It is
            # listed again, with its new ETag, by the next run.
            seg.path.unlink(missing_ok=True)
            return ObjectStoreError(f"{seg.name} changed while it was read", code="NoSuchKey")
        return None

    def release(self, segments: list[Segment]) -> None:
        for seg in segments:
            seg.path.unlink(missing_ok=True)

    def remove(self, segments: list[Segment]) -> None:
        keys = [self._keys.pop(seg.name, "") for seg in segments]
        self.release(segments)
        if keys:
            self.store.delete([k for k in keys if k])

    def quarantine(self, segment: Segment) -> str:
        key = self._keys.pop(segment.name, "")
        target = self.store.url.key(QUARANTINE, PurePosixPath(key).name)
        self.store.copy(key, target)
        self.store.delete([key])
        segment.path.unlink(missing_ok=True)
        return f"s3://{self.store.bucket}/{target}"

    def backlog(self) -> int:
        """Segments listed at the last run (a page at most: counting a long backlog would list it all)."""
        return self._listed

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        shutil.rmtree(self._staging, ignore_errors=True)
