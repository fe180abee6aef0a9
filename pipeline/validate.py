"""What the recording API refuses, and why: the reasons counted in ``stats()["rejected"]`` and their messages.

The hot path accepts a value with one chained comparison; only a value it refused comes here, so nothing in this
module costs a recorded metric anything. Every function here takes any object (the caller's argument may be of any
type, even one whose ``__repr__``, ``__str__``, ``__hash__`` or comparisons raise) and never raises itself.
"""

from __future__ import annotations

import math
from decimal import Decimal

# A timestamp (``ts=``, epoch seconds) is accepted this far around now: 30 years back reaches any row a
# producer's backlog or a replay could hold; a day ahead allows for a skewed clock. Milliseconds (1.7e12),
# microseconds, NaN, infinities and zero or negative values all fall outside.
TS_MAX_AGE_SECONDS = 30 * 365 * 86_400.0
TS_MAX_AHEAD_SECONDS = 86_400.0


def safe_repr(value: object, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, or a description when its ``__repr__`` raises."""
    try:
        text = repr(value)
    except Exception as exc:  # a hostile __repr__: say so instead of failing the rejection itself
        return f"<{type(value).__name__} whose repr() raised {type(exc).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def number_problem(value: object) -> str:
    """Why ``value`` is no finite number >= 0: "nan", "negative", "infinite" or "not_number" ("" if it is one).

    Decimal('NaN') and Decimal('sNaN') (drivers return Decimal for NUMERIC columns) raise InvalidOperation in a
    comparison; they are NaN here.
    """
    try:
        if isinstance(value, Decimal):
            if value.is_nan():
                return "nan"
            if value.is_infinite():
                return "infinite" if value > 0 else "negative"
            return "negative" if value < 0 else ""
        if isinstance(value, int | float):
            if value != value:
                return "nan"
            if value < 0:
                return "negative"
            return "infinite" if value == math.inf else ""
    except Exception:  # a number type of the caller's whose comparisons raise
        return "not_number"
    return "not_number"


def duration_reason(value: object) -> str:
    """The rejection reason of a ``duration_ms`` the hot path refused."""
    problem = number_problem(value) or "not_number"
    return "duration_not_number" if problem == "not_number" else f"{problem}_duration"


def duration_message(what: str, value: object) -> str:
    return (f"{what} duration_ms={safe_repr(value)} is not a finite number of milliseconds >= 0; pass the elapsed "
            "time as a float, e.g. (time.perf_counter() - start) * 1000 (a Decimal from a NUMERIC column: float(x))")


def ts_problem(ts: object, now: float) -> tuple[str, str] | None:
    """(reason, message) when ``ts`` is no timestamp of a metric recorded ``now``; None when it is one."""
    try:
        # Decimal('sNaN') refuses float(): it is a NaN like the others
        nan = isinstance(ts, Decimal) and ts.is_nan()
        seconds = math.nan if nan else float(ts)  # type: ignore[arg-type]  # any object: refused, never raised
        plausible = now - TS_MAX_AGE_SECONDS <= seconds <= now + TS_MAX_AHEAD_SECONDS  # False for NaN
    except Exception:
        return "ts_not_number", (f"ts={safe_repr(ts)} is not a number; pass seconds since the epoch as a float "
                                 "(time.time()), or leave ts out to stamp the metric now")
    if plausible:
        return None
    if seconds != seconds or seconds in (math.inf, -math.inf):
        reason = "ts_not_finite"
    elif seconds <= 0:
        reason = "ts_not_positive"
    elif seconds > now + TS_MAX_AHEAD_SECONDS:
        reason = "ts_in_future"
    else:
        reason = "ts_too_old"
    years = TS_MAX_AGE_SECONDS / (365 * 86_400.0)
    hint = " (it looks like milliseconds: divide by 1000)" if now * 100 < seconds < now * 10_000 else ""
    return reason, (f"ts={safe_repr(ts)} is not a time within {years:g} years before now and "
                    f"{TS_MAX_AHEAD_SECONDS / 3600:g} hours after it{hint}; ts is seconds since the epoch "
                    "(time.time()), or leave it out to stamp the metric now")
