"""Errors raised by duckpulse.

The exception tree::

    DuckPulseError                 base of everything duckpulse raises on purpose
    ├── ConfigError                a bad setting: names the option and the accepted range
    │   ├── RuleError              a bad alert rule or rules file (pipeline.alerts.rules): file, line, field
    │   └── LimitError             over a stated cap (silences in force, a silence's size): names the cap
    ├── OwnershipError             another process already owns the DuckDB file
    ├── InvalidMetricError         bad input to the recording API (raised only with ``strict=True``;
    │                              otherwise counted in ``Monitor.stats()["rejected"]``)
    ├── SqlFileError               a named-query file in ``sql/`` is malformed (names file:line)
    ├── SpoolError                 a spool segment could not be written
    ├── StoreError                 the DuckDB store refused rows for a reason of its own (disk, memory, lock)
    ├── ObjectStoreError           S3 (or a store speaking its API) failed a request: its code, and whether
    │                              it may succeed later unchanged (``transient``: unreachable, 5xx, throttled)
    ├── NoMonitorError             an integration needed the default monitor and none is open
    ├── MonitorClosedError         flush() after close() with rows recorded since (``strict=True``; else False)
    └── IntegrationMissingError    an integration's library (flask, starlette, sqlalchemy) is not installed

Monitoring never raises into the host application: outside ``strict=True`` the recording API counts
and logs problems instead of raising, so these errors reach user code only from set-up calls
(constructors, configuration, explicit ``flush()`` in strict mode).
"""

from __future__ import annotations


class DuckPulseError(Exception):
    """Base class of every error duckpulse raises on purpose."""


class ConfigError(DuckPulseError, ValueError):
    """A setting is missing or out of range."""


class LimitError(ConfigError):
    """A request goes over one of duckpulse's stated caps (``cap`` says which value); nothing was changed."""

    def __init__(self, message: str, cap: int) -> None:
        super().__init__(message)
        self.cap = cap


class OwnershipError(DuckPulseError):
    """The DuckDB file is already owned by another process."""


class InvalidMetricError(DuckPulseError, ValueError):
    """A value given to the recording API cannot be recorded."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{detail} (rejected, reason {reason!r})")
        self.reason = reason


class SqlFileError(DuckPulseError):
    """A file of named queries is malformed."""


class SpoolError(DuckPulseError):
    """A spool segment could not be written or read."""


class StoreError(DuckPulseError):
    """The DuckDB store could not take rows that are sound (a full disk, memory, a lock); they stay where they
    were (the buffer, or the spool) for the next attempt."""


class ObjectStoreError(DuckPulseError):
    """An object storage request failed; the message says what to do. ``code`` is S3's error code (None when
    the store was not reached); ``transient`` is True when retrying unchanged may succeed."""

    def __init__(self, message: str, *, code: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class NoMonitorError(DuckPulseError, RuntimeError):
    """No open Monitor exists where one is needed."""


class MonitorClosedError(DuckPulseError, RuntimeError):
    """``flush()`` was called on a closed monitor holding rows recorded after ``close()``."""


class IntegrationMissingError(DuckPulseError, ImportError):
    """An integration was used without the library it instruments."""
