"""Custom metrics: counters, gauges and histograms bound to one interned label set.

``Monitor.counter(name, labels)`` resolves (name, kind, labels) to a series id once; the returned instrument
holds that id and appends ``(ts, series_id, value)`` tuples to the points buffer. Keep the instrument and
call it on the hot path: resolving labels costs a dict lookup per call, recording costs ~130 ns.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import threading
import time as _time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, Protocol, TypeVar

from .buffer import RAW_CAP, Buffer
from .clock import Timestamps
from .errors import InvalidMetricError
from .fingerprint import fingerprint_id
from .validate import number_problem, safe_repr

INF = math.inf
P = ParamSpec("P")
R = TypeVar("R")
KINDS = ("counter", "gauge", "histogram")
OVERFLOW_LABELS = {"__overflow__": "true"}
MAX_LABELS = 32
MAX_LABEL_CHARS = 256
MAX_NAME_CHARS = 200


class Rejector(Protocol):
    def __call__(self, reason: str, detail: str) -> None: ...


class _Instrument:
    __slots__ = ("_buffer", "_raw", "_reject", "_stamps", "labels", "name", "series_id")
    kind: ClassVar[str]

    def __init__(self, name: str, labels: dict[str, str], series_id: int, buffer: Buffer,
                 stamps: Timestamps, reject: Rejector) -> None:
        self.name = name
        self.labels = labels
        self.series_id = series_id
        self._buffer = buffer
        self._raw = buffer.raw["points"]
        self._stamps = stamps
        self._reject = reject

    def _record(self, value: float) -> None:
        # Counter.inc and Histogram.observe repeat these lines inline on purpose: one Python call fewer on the
        # hot path is ~40 ns, a quarter of the recording budget. Gauges (rarer) share this method.
        row = (self._stamps.seconds or self._stamps.now(), self.series_id, value)
        raw = self._raw
        if len(raw) < RAW_CAP:
            raw += row
        else:
            self._buffer.raw_full("points", row)

    def _bad(self, value: object, what: str) -> None:
        problem = number_problem(value)
        kind = {"nan": "NaN", "infinite": "infinite", "negative": "negative"}.get(problem, "not a number")
        self._reject("invalid_value", f"{type(self).__name__.lower()} {self.name!r}: {safe_repr(value)} is {kind}, "
                     f"not {what}; pass a float (a Decimal from a NUMERIC column: float(x))")


class Counter(_Instrument):
    """A count that only goes up; each ``inc`` is stored as an increment, so sums over any window work."""

    __slots__ = ()
    kind = "counter"

    def inc(self, amount: float = 1.0) -> None:
        try:
            if 0.0 <= amount < INF:
                row = (self._stamps.seconds or self._stamps.now(), self.series_id, amount)
                raw = self._raw
                if len(raw) < RAW_CAP:
                    raw += row
                else:
                    self._buffer.raw_full("points", row)
                return
        except Exception:  # Decimal('NaN') raises InvalidOperation; a caller's type, anything
            pass
        self._bad(amount, "a finite number >= 0")


class Gauge(_Instrument):
    """A value that goes up and down; each ``set`` is stored."""

    __slots__ = ("_value",)
    kind = "gauge"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._value = 0.0

    def set(self, value: float) -> None:
        try:
            if -INF < value < INF:
                self._value = value
                self._record(value)
                return
        except Exception:  # Decimal('NaN') raises InvalidOperation; a caller's type, anything
            pass
        self._bad(value, "a finite number")

    def inc(self, amount: float = 1.0) -> None:
        try:
            value = self._value + amount
        except Exception:  # not a number, an int too large for a float, a Decimal: counted, not raised
            self._bad(amount, "a finite number")
            return
        self.set(value)

    def dec(self, amount: float = 1.0) -> None:
        try:
            value = self._value - amount
        except Exception:  # as in inc
            self._bad(amount, "a finite number")
            return
        self.set(value)


class Histogram(_Instrument):
    """A distribution of observed values (percentiles are computed in SQL)."""

    __slots__ = ()
    kind = "histogram"

    def observe(self, value: float) -> None:
        try:
            if -INF < value < INF:
                row = (self._stamps.seconds or self._stamps.now(), self.series_id, value)
                raw = self._raw
                if len(raw) < RAW_CAP:
                    raw += row
                else:
                    self._buffer.raw_full("points", row)
                return
        except Exception:  # Decimal('NaN') raises InvalidOperation; a caller's type, anything
            pass
        self._bad(value, "a finite number")

    @contextmanager
    def time(self) -> Iterator[None]:
        """Observe the duration of the block, in milliseconds."""
        start = _time.perf_counter()
        try:
            yield
        finally:
            self.observe((_time.perf_counter() - start) * 1000.0)


class RejectedInstrument:
    """Stands in for an instrument whose name or labels were refused: every call is counted as rejected."""

    def __init__(self, reason: str, detail: str, reject: Rejector) -> None:
        self._reason, self._detail, self._reject = reason, detail, reject

    def _count(self, *_: object) -> None:
        self._reject(self._reason, self._detail)

    inc = dec = set = observe = _count

    @contextmanager
    def time(self) -> Iterator[None]:
        yield
        self._count()

    def __enter__(self) -> RejectedInstrument:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        return None


class QueryTimer:
    """``Monitor.time_query``: times a block (a context manager) or each call of a function (a decorator, sync or
    async) as a query; an exception records success=False."""

    def __init__(self, track_query: Callable[..., None], name: str, sql: str | None,
                 dialect: str | None = None) -> None:
        self._track, self._name, self._sql, self._dialect = track_query, name, sql, dialect
        self._cm: Any = None

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = _time.perf_counter()
        success = False
        try:
            yield
            success = True
        finally:
            self._track(self._sql if self._sql is not None else self._name, (_time.perf_counter() - start) * 1000.0,
                        success, name=self._name, dialect=self._dialect)

    def __enter__(self) -> None:
        self._cm = self._timed()
        self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        cm.__exit__(*exc)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        timed = self._timed
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with timed():
                    return await func(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with timed():
                return func(*args, **kwargs)
        return wrapper


def series_id(name: str, kind: str, labels: Mapping[str, str]) -> int:
    """The stable id of a series: the same in every process, so producers need no coordination."""
    return fingerprint_id(f"{kind}\x00{name}\x00{json.dumps(labels, sort_keys=True)}")


class Registry:
    """Interns (name, kind, labels) to instruments, with a cap on label sets per metric name."""

    def __init__(self, buffer: Buffer, stamps: Timestamps, reject: Rejector,
                 fold: Callable[[str, str], None], max_series_per_metric: int,
                 max_instruments: int = 10_000) -> None:
        self._buffer = buffer
        self._stamps = stamps
        self._reject = reject
        self._fold = fold
        self._max_series = max_series_per_metric
        self._max_instruments = max_instruments
        self._instruments: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Instrument] = {}
        self._per_name: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, name: str, labels: Mapping[Any, Any] | None) -> _Instrument | RejectedInstrument:
        if not isinstance(name, str) or not name.strip():
            return self._refuse("empty_name", f"a {kind} needs a non-empty string name, got {safe_repr(name)}")
        if len(name) > MAX_NAME_CHARS:
            return self._refuse("name_too_long", f"a {kind} name is at most {MAX_NAME_CHARS} characters, got "
                                f"{len(name):,} ({name[:60]!r}...); put varying parts in labels or values")
        if not name.isascii():
            try:
                name.encode()
            except UnicodeEncodeError:  # a lone surrogate: no UTF-8 column can store it
                return self._refuse("invalid_name", f"a {kind} name must be valid Unicode, got {name!r}")
        try:
            clean = self._clean_labels(name, labels)
        except InvalidMetricError:  # strict mode's refusal, raised on purpose
            raise
        except Exception as exc:  # a mapping or a key/value whose methods raise: refused, never raised
            return self._refuse("invalid_labels", f"labels of {name!r} could not be read: {safe_repr(exc)}")
        if isinstance(clean, RejectedInstrument):
            return clean
        key = (name, kind, tuple(sorted(clean.items())))
        found = self._instruments.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._instruments.get(key)
            if found is not None:
                return found
            if len(self._instruments) >= self._max_instruments:
                return self._refuse("too_many_instruments", f"{kind} {name!r}: this process holds "
                                    f"{len(self._instruments):,} custom metrics (max_instruments="
                                    f"{self._max_instruments:,}); a new name or label set is refused. Raise "
                                    "max_instruments, or keep varying values out of names and labels")
            count = self._per_name.get((name, kind), 0)
            if count >= self._max_series:
                self._fold("too_many_series", f"{kind} {name!r} has {count} label sets already "
                           f"(max_series_per_metric={self._max_series}); {clean} is folded into {OVERFLOW_LABELS}")
                clean = dict(OVERFLOW_LABELS)
                okey = (name, kind, tuple(sorted(clean.items())))
                existing = self._instruments.get(okey)
                if existing is not None:
                    return existing
                key = okey
            else:
                self._per_name[(name, kind)] = count + 1
            sid = series_id(name, kind, clean)
            cls: type[_Instrument] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[kind]
            inst = cls(name, clean, sid, self._buffer, self._stamps, self._reject)
            self._buffer.add_series(sid, name, kind, clean)
            self._instruments[key] = inst
            return inst

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, and the series queued again so the child's own segments carry them
        (the parent may never flush its copy; inserting a known series again is a no-op)."""
        self._lock = threading.Lock()
        for inst in self._instruments.values():
            self._buffer.add_series(inst.series_id, inst.name, inst.kind, inst.labels)

    def _clean_labels(self, name: str, labels: Mapping[Any, Any] | None) -> dict[str, str] | RejectedInstrument:
        if labels is None:
            return {}
        if not isinstance(labels, Mapping):
            return self._refuse("invalid_labels", f"labels of {name!r} must be a mapping, got {type(labels).__name__}")
        if len(labels) > MAX_LABELS:
            return self._refuse("too_many_labels", f"{name!r} has {len(labels)} labels; at most {MAX_LABELS} "
                                "are allowed. Put high-cardinality values in the metric's value, not its labels")
        clean: dict[str, str] = {}
        for k, v in labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                self._fold("label_not_string", f"labels of {name!r} should be strings; {k!r}: {v!r} was "
                           "converted with str()")
            key, value = str(k), str(v)
            if not key:
                return self._refuse("empty_name", f"{name!r} has a label with an empty name")
            if len(key) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
                self._fold("label_too_long", f"a label of {name!r} is longer than {MAX_LABEL_CHARS} characters "
                           "and was cut")
                key, value = key[:MAX_LABEL_CHARS], value[:MAX_LABEL_CHARS]
            clean[key] = value
        return clean

    def _refuse(self, reason: str, detail: str) -> RejectedInstrument:
        self._reject(reason, detail)
        return RejectedInstrument(reason, detail, self._reject)


__all__ = ["Counter", "Gauge", "Histogram", "InvalidMetricError", "QueryTimer", "Registry", "RejectedInstrument"]
