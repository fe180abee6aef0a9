"""Object storage: S3 and the stores that speak its API (MinIO, Ceph, R2, GCS's XML API), for a fleet of hosts.

A fleet's producers spool segments to ``s3://bucket/prefix`` (pipeline/outbox.py), one central owner ingests them
(pipeline/objectspool.py) and archives its history there (pipeline/archive.py). ``ObjectStore`` is the handful of
calls they make (one PUT of a file, list, download, delete, copy) over the MinIO Python SDK, which signs the
requests, retries them and finds the credentials: nothing here signs or parses S3 by hand.

Why that SDK: it is pure Python over urllib3 and starts no thread of its own, so a producer pays little for it.
RSS added to a process that PUTs 50 objects, measured here (2026-12-03, one process per client, after
``import flask``): minio 8.0 MB, obstore 9.2 MB (7 MB of them its shared library; it also runs a tokio runtime),
botocore 23.8 MB, boto3 26.1 MB, pyarrow's S3FileSystem 54.0 MB (benchmarks/bench_footprint.py has the
"S3 producer" row). Issue 17 suggested pyarrow's S3FileSystem, pyarrow being a dependency already; but since
issue 14 a producer never imports pyarrow (its segments are written by pipeline/parquet.py), and loading it with
its bundled AWS C++ SDK only to PUT files would cost every host ~54 MB. Readers of the history use this same class
(pipeline/objecthistory.py pulls into a local cache), so one library does every S3 call duckpulse makes.

Credentials come from the standard AWS places, in this order (the SDK's providers): the variables
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``; the shared credentials file
(``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``, profile ``profile=`` or ``AWS_PROFILE``); then IAM
(container credentials, web identity, instance metadata). duckpulse never takes a secret as a setting, so none can
end up in a configuration file, a log line or ``stats()``. The region is ``region=``, else ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, else the profile's ``region`` in ``~/.aws/config`` (``AWS_CONFIG_FILE``), else the store is
asked. The endpoint is ``endpoint_url=`` (MinIO and friends: ``http://minio.internal:9000``), else
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (the AWS SDKs' variables), else AWS S3.
"""

from __future__ import annotations

import configparser
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError, IntegrationMissingError, ObjectStoreError

if TYPE_CHECKING:
    from minio import Minio

SCHEME = "s3://"
# A PUT of up to 5 GiB is one request; segments are a few MB at most, so a segment is always one object in one PUT.
MAX_SINGLE_PUT_BYTES = 5 * 2**30
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Errors that say the request may succeed later unchanged (the store is down, slow, or overloaded).
_TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                              "RequestTimeTooSkewed"})
_HINTS = {
    "NoSuchBucket": "create the bucket, or fix the bucket name in the URL",
    "AccessDenied": "the credentials in use may not do this: check the bucket's policy and the IAM permissions "
                    "(s3:PutObject for producers; s3:ListBucket, s3:GetObject, s3:DeleteObject and s3:PutObject for "
                    "the owner)",
    "InvalidAccessKeyId": "the access key is not known to this store: check AWS_ACCESS_KEY_ID or the profile in "
                          "~/.aws/credentials, and endpoint_url",
    "SignatureDoesNotMatch": "the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY or the "
                             "profile in ~/.aws/credentials",
}


def is_object_url(value: object) -> bool:
    """Whether ``value`` names a place in object storage (``s3://...``) rather than a local path."""
    return isinstance(value, str) and value.startswith(SCHEME)


@dataclass(frozen=True)
class ObjectUrl:
    """``s3://bucket/prefix``: a bucket, and a key prefix without leading or trailing slashes ('' for the root)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under the prefix (``key("ready", name)`` -> ``prefix/ready/name``)."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def child(self, *parts: str) -> ObjectUrl:
        return ObjectUrl(self.bucket, self.key(*parts))

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def parse_url(url: str | ObjectUrl, what: str = "url") -> ObjectUrl:
    """Parse ``s3://bucket/prefix``; ConfigError naming ``what`` if it is not such a URL."""
    if isinstance(url, ObjectUrl):
        return url
    example = "s3://my-bucket/duckpulse (a bucket, then an optional key prefix)"
    if not is_object_url(url):
        raise ConfigError(f"{what}={url!r}: expected an object storage URL such as {example}")
    bucket, _, prefix = url[len(SCHEME):].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"{what}={url!r}: {bucket!r} is not a bucket name (3 to 63 lowercase letters, digits, dots "
                          f"and hyphens); expected a URL such as {example}")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigError(f"{what}={url!r}: the key prefix {prefix!r} has an empty, '.' or '..' part")
    return ObjectUrl(bucket, prefix)


@dataclass(frozen=True)
class ObjectStoreSettings:
    """How to reach the object store (never the credentials: those come from the AWS environment and files)."""

    # The store's address for MinIO-likes (http://host:port or https://host); None: AWS_ENDPOINT_URL_S3,
    # AWS_ENDPOINT_URL, else AWS S3.
    endpoint_url: str | None = None
    # The region to sign for; None: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else asked from the store.
    region: str | None = None
    # The profile of ~/.aws/credentials and ~/.aws/config; None: AWS_PROFILE, else "default".
    profile: str | None = None
    # Seconds to wait for a connection, and then for each answer, before a request counts as failed.
    timeout_seconds: float = 10.0
    # Attempts after the first, within one call, on a refused connection or a 5xx answer (the uploader and the
    # ingest retry on their own schedule beyond that).
    retries: int = 1

    def __post_init__(self) -> None:
        if self.endpoint_url is not None:
            _check_endpoint("endpoint_url", self.endpoint_url)
        for name in ("region", "profile"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name}={value!r}: expected a non-empty name, or None")
        seconds = self.timeout_seconds
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not (0 < seconds < math.inf):
            raise ConfigError(f"timeout_seconds={seconds!r}: expected a finite number of seconds > 0")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or not 0 <= self.retries <= 10:
            raise ConfigError(f"retries={self.retries!r}: expected an integer from 0 to 10")


def _check_endpoint(name: str, url: str) -> tuple[bool, str]:
    """(secure, host[:port]) of an endpoint URL; ConfigError if it is not http(s)://host[:port]."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={url!r}: expected http://host:port or https://host (the store's address, e.g. "
                          "http://127.0.0.1:9000 for a local MinIO)")
    if parts.username or parts.password:
        # Credentials in a URL would end up in configuration files and logs: they belong in the AWS files.
        raise ConfigError(f"{name}: the URL holds credentials; remove them and set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (or a profile in ~/.aws/credentials) instead")
    if parts.path.strip("/") or parts.query:
        raise ConfigError(f"{name}={url!r}: expected no path or query, only http(s)://host[:port]")
    return parts.scheme == "https", parts.netloc


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME``, else ``~/.cache``: where outboxes and history caches live across restarts."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def resolve_endpoint(settings: ObjectStoreSettings) -> str | None:
    """The endpoint URL in use: the setting, else the AWS SDKs' variables, else None (AWS S3)."""
    if settings.endpoint_url:
        return settings.endpoint_url
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name)
        if value:
            _check_endpoint(name, value)
            return value
    return None


def resolve_region(settings: ObjectStoreSettings) -> str | None:
    """The region in use: the setting, AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else None."""
    for value in (settings.region, os.environ.get("AWS_REGION"), os.environ.get("AWS_DEFAULT_REGION")):
        if value:
            return value
    config_file = Path(os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config")
    profile = settings.profile or os.environ.get("AWS_PROFILE") or "default"
    parser = configparser.ConfigParser()
    try:
        parser.read(config_file)
    except (OSError, configparser.Error):
        return None
    section = profile if profile == "default" else f"profile {profile}"
    return parser.get(section, "region", fallback=None) or None


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: its key, its ETag (without quotes) and its size."""

    key: str
    etag: str
    size: int


class ObjectStore:
    """The calls duckpulse makes to one bucket; every failure is an ``ObjectStoreError`` saying what to do."""

    def __init__(self, url: str | ObjectUrl, settings: ObjectStoreSettings | None = None) -> None:
        self.url = parse_url(url)
        self.bucket = self.url.bucket
        self.settings = settings or ObjectStoreSettings()
        self.endpoint_url = resolve_endpoint(self.settings)
        self._client: Minio | None = None

    def __repr__(self) -> str:
        return f"ObjectStore({str(self.url)!r}, endpoint={self.endpoint_url or 'AWS S3'!r})"

    @property
    def client(self) -> Minio:
        """The SDK's client, made at first use (so that a bad URL fails at set-up, a missing SDK at first use)."""
        if self._client is None:
            self._client = _make_client(self.settings, self.endpoint_url)
        return self._client

    def describe(self, key: str = "") -> str:
        where = f"{SCHEME}{self.bucket}/{key}" if key else str(self.url)
        return f"{where} (endpoint {self.endpoint_url or 'AWS S3'})"

    # -- the calls -------------------------------------------------------------------------------------------------
    def put_file(self, key: str, path: str | os.PathLike[str]) -> str:
        """Upload a file as one object in one PUT (replacing any object of that key); returns its ETag."""
        size = os.path.getsize(path)
        if size >= MAX_SINGLE_PUT_BYTES:
            raise ObjectStoreError(f"{path} has {size} bytes, more than one PUT takes (5 GiB)")
        with self._errors("upload to", key), open(path, "rb") as f:
            # part_size >= the size: the SDK sends the file in one PUT request, never a multipart upload.
            result = self.client.put_object(self.bucket, key, f, size, part_size=max(size, 5 * 2**20),
                                            content_type="application/vnd.apache.parquet")
        return _etag(result.etag)

    def list(self, prefix: str, *, limit: int | None = None, start_after: str | None = None) -> list[ObjectInfo]:
        """Objects whose keys start with ``prefix``, in key order, at most ``limit`` of them."""
        out: list[ObjectInfo] = []
        with self._errors("list", prefix):
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True, start_after=start_after):
                if obj.is_dir or obj.object_name is None:
                    continue
                out.append(ObjectInfo(obj.object_name, _etag(obj.etag), int(obj.size or 0)))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix`` (for pruning and listing partitions)."""
        with self._errors("list", prefix):
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if not obj.is_dir and obj.object_name is not None:
                    yield obj.object_name

    def download(self, key: str, path: str | os.PathLike[str]) -> str:
        """Write an object to ``path``; returns the ETag of what was read."""
        with self._errors("download", key):
            response = self.client.get_object(self.bucket, key)
            try:
                with open(path, "wb") as f:
                    for chunk in response.stream(1 << 20):
                        f.write(chunk)
                return _etag(response.headers.get("ETag", ""))
            finally:
                response.close()
                response.release_conn()

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects (1,000 per request); deleting a key that is already gone is not an error."""
        from minio.deleteobjects import DeleteObject

        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            with self._errors("delete", batch[0]):
                failed = list(self.client.remove_objects(self.bucket, [DeleteObject(k) for k in batch]))
            if failed:
                first = failed[0]
                raise ObjectStoreError(f"cannot delete {len(failed)} object(s) under {self.describe()}, e.g. "
                                       f"{first.name}: {first.code}: {first.message}", code=first.code)

    def copy(self, source_key: str, target_key: str) -> None:
        """Copy an object within the bucket (the store copies it; nothing passes through this process)."""
        from minio.commonconfig import CopySource

        with self._errors("copy", source_key):
            self.client.copy_object(self.bucket, target_key, CopySource(self.bucket, source_key))

    def check_bucket(self) -> None:
        """Raise ObjectStoreError unless the bucket exists and can be listed (a clear error at start-up)."""
        with self._errors("check the bucket of", ""):
            exists = self.client.bucket_exists(self.bucket)
        if not exists:
            raise ObjectStoreError(f"{self.describe()}: the bucket {self.bucket!r} does not exist; create it, or fix "
                                   "the bucket name in the URL", code="NoSuchBucket")

    def _errors(self, doing: str, key: str) -> _Translate:
        return _Translate(self, doing, key)


class _Translate:
    """Turns what the SDK and urllib3 raise into ObjectStoreError: a code and a hint, never a credential."""

    def __init__(self, store: ObjectStore, doing: str, key: str) -> None:
        self.store, self.doing, self.key = store, doing, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, ObjectStoreError) or not isinstance(exc, Exception):
            return  # nothing to translate: the exception, if any, propagates as it is
        raise translate(exc, f"cannot {self.doing} {self.store.describe(self.key)}") from exc


def translate(exc: Exception, context: str) -> ObjectStoreError:
    """An ObjectStoreError for what the SDK raised (S3's error code and message, a hint; transient or not)."""
    from minio.error import InvalidResponseError, S3Error, ServerError

    if isinstance(exc, S3Error):
        code = exc.code or "Error"
        hint = _HINTS.get(code)
        return ObjectStoreError(f"{context}: {code}: {exc.message}" + (f"; {hint}" if hint else ""), code=code,
                                transient=code in _TRANSIENT_CODES)
    if isinstance(exc, ServerError | InvalidResponseError):
        return ObjectStoreError(f"{context}: the store answered with an error ({type(exc).__name__}: "
                                f"{str(exc)[:200]}); will retry", transient=True)
    if isinstance(exc, ValueError) and "credentials" in str(exc).lower():
        return ObjectStoreError(f"{context}: no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                                "a profile in ~/.aws/credentials (AWS_PROFILE), or run where an IAM role applies",
                                code="NoCredentials")
    # urllib3's MaxRetryError, NewConnectionError, timeouts, OSError: the store cannot be reached now.
    reason = getattr(exc, "reason", None) or exc
    return ObjectStoreError(f"{context}: the store is unreachable ({type(reason).__name__}: {str(reason)[:200]}); "
                            "will retry", transient=True)


def _etag(value: str | None) -> str:
    return (value or "").strip('"')


def _make_client(settings: ObjectStoreSettings, endpoint_url: str | None) -> Minio:
    try:
        import certifi
        import urllib3
        from minio import Minio
        from minio.credentials.providers import (
            AWSConfigProvider,
            ChainedProvider,
            EnvAWSProvider,
            IamAwsProvider,
        )
    except ImportError as exc:
        raise IntegrationMissingError(f"object storage needs the MinIO SDK, which is not installed ({exc}); install "
                                      "it with: pip install 'duckpulse[s3]'") from exc
    secure, host = _check_endpoint("endpoint_url", endpoint_url) if endpoint_url else (True, "s3.amazonaws.com")
    timeout = urllib3.Timeout(connect=settings.timeout_seconds, read=settings.timeout_seconds)
    http = urllib3.PoolManager(
        timeout=timeout, maxsize=16, cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=settings.retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]))
    profile = settings.profile or os.environ.get("AWS_PROFILE")
    credentials = ChainedProvider([EnvAWSProvider(), AWSConfigProvider(profile=profile), IamAwsProvider()])
    return Minio(host, secure=secure, region=resolve_region(settings), http_client=http, credentials=credentials)
