"""The dashboard's settings: ``DUCKPULSE_*`` keys from a mapping, then from the environment.

Explicit values beat the environment: a key given in the mapping passed to ``create_app`` wins over the same
environment variable. A bad value raises ``ConfigError`` naming the key and the accepted range instead of
silently falling back to a default.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError

PREFIX = "DUCKPULSE_"
MAX_PORT = 65_535


@dataclass(frozen=True)
class Settings:
    """Everything the dashboard reads from its configuration."""

    # The DuckDB file to own when no monitor is passed to create_app.
    db_path: str | None = None
    # The spool directory producers write segments to (the owner ingests them); None: next to the file.
    spool_dir: str | None = None
    # The bearer token every endpoint but /api/health requires; None: no authentication (loopback only).
    token: str | None = None
    # The address `duckpulse serve` and webapp.server bind to.
    host: str = "127.0.0.1"
    # The TCP port; 0 picks a free one.
    port: int = 8050
    # How often the HTML page fetches fresh data, in seconds.
    refresh_seconds: float = 5.0
    # A query repeated this many times in one request is flagged as an N+1 pattern.
    n_plus_one_threshold: int = 5
    # How many fingerprints /api/metrics/performance lists under slowQueries.
    slow_queries_limit: int = 10
    # How long a read answer is reused for every client asking the same URL (0: never); see webapp/cache.py.
    cache_seconds: float = 1.0


# key (without the prefix) -> (Settings field, parser)
def _text(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{PREFIX}{key}={value!r}: expected a string")
    text = os.fspath(value)
    return text if text != "" else None


def _token(key: str, value: Any) -> str | None:
    text = _text(key, value)
    # A space or a control character could not travel in an Authorization header.
    if text is not None and (not text.isprintable() or any(c.isspace() for c in text)):
        raise ConfigError(f"{PREFIX}{key}: expected printable characters without spaces (a bearer token); "
                          "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return text


def _int_in(low: int, high: int) -> Any:
    def parse(key: str, value: Any) -> int:
        try:
            number = int(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise ConfigError(f"{PREFIX}{key}={value!r}: expected an integer from {low} to {high}")
        return number
    return parse


def _seconds_in(low: float, high: float) -> Any:
    def parse(key: str, value: Any) -> float:
        try:
            number = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise ConfigError(f"{PREFIX}{key}={value!r}: expected a number of seconds from {low:g} to {high:g}")
        return number
    return parse


def _host(key: str, value: Any) -> str:
    text = _text(key, value)
    if text is None:
        raise ConfigError(f"{PREFIX}{key}: expected an address to bind to, such as 127.0.0.1")
    return text


KEYS: dict[str, tuple[str, Any]] = {
    "DB_PATH": ("db_path", _text),
    "SPOOL_DIR": ("spool_dir", _text),
    "TOKEN": ("token", _token),
    "HOST": ("host", _host),
    "PORT": ("port", _int_in(0, MAX_PORT)),
    "REFRESH_SECONDS": ("refresh_seconds", _seconds_in(1, 3600)),
    "N_PLUS_ONE_THRESHOLD": ("n_plus_one_threshold", _int_in(2, 10_000)),
    "SLOW_QUERIES_LIMIT": ("slow_queries_limit", _int_in(1, 1000)),
    "CACHE_SECONDS": ("cache_seconds", _seconds_in(0, 60)),
}


def load(config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``config`` (``DUCKPULSE_*`` keys), completed from ``environ`` (default ``os.environ``).

    Keys of ``config`` that do not start with ``DUCKPULSE_`` are not settings (they are Flask's, e.g. TESTING)
    and are ignored here; an unknown ``DUCKPULSE_`` key in ``config`` is a typo and raises.
    """
    config = dict(config or {})
    environ = os.environ if environ is None else environ
    unknown = sorted(k for k in config if k.startswith(PREFIX) and k.removeprefix(PREFIX) not in KEYS)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; the dashboard reads "
                          + ", ".join(PREFIX + k for k in KEYS))
    values: dict[str, Any] = {}
    for key, (field_name, parse) in KEYS.items():
        name = PREFIX + key
        if name in config:
            raw = config[name]
        elif name in environ:
            raw = environ[name]
        else:
            continue
        values[field_name] = parse(key, raw)
    return Settings(**values)


@functools.lru_cache(maxsize=64)  # asked on every request for its Host header, which rarely varies
def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere: treat it as public


# A token guarding a public bind has at least this many characters. Anyone who can reach the port can try tokens
# as fast as the server answers (thousands a second; nothing here slows them down): a one-character token falls at
# once, and 16 characters of secrets.token_urlsafe carry 96 random bits, beyond any such guessing.
MIN_PUBLIC_TOKEN_LENGTH = 16


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token (anyone on the network could read it), or with
    one shorter than MIN_PUBLIC_TOKEN_LENGTH (anyone could guess it)."""
    if is_loopback(host):
        return
    if token is None:
        raise ConfigError(
            f"{PREFIX}HOST={host!r} is not a loopback address and no {PREFIX}TOKEN is set: the dashboard would "
            "be readable by anyone who can reach this machine. Set DUCKPULSE_TOKEN (clients then send "
            "'Authorization: Bearer <token>'), or bind to 127.0.0.1 (the default)")
    if len(token) < MIN_PUBLIC_TOKEN_LENGTH:
        raise ConfigError(
            f"{PREFIX}TOKEN has {len(token)} characters; on a public address ({PREFIX}HOST={host!r}) it needs at "
            f"least {MIN_PUBLIC_TOKEN_LENGTH}, or anyone who can reach the port guesses it by trying. Generate one "
            "with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or bind to 127.0.0.1")
