"""Human durations ("30s", "2m", "1m30s", "500ms", "1h") <-> seconds.

Scenarios, profiles and the CLI all accept durations the way k6 users write them, so the
parsing lives in one place and every error message reads the same.  Bare numbers mean
seconds (a YAML ``duration: 30`` is 30 s).

Every duration is at most :data:`MAX_DURATION_S` (30 days): longer than any run the
harness schedules, and far below where nanosecond clocks (int64) and timers overflow, so
``100000000h`` or ``1e300`` is refused up front, naming the field, instead of crashing
(or silently scheduling nothing) later.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "format_duration", "DURATION_UNITS", "MAX_DURATION_S"]

#: the longest duration (seconds) any field accepts: 30 days
MAX_DURATION_S = 30 * 86400.0

#: unit suffix -> seconds.  ``µ`` (micro sign) and ``μ`` (Greek mu) are both accepted.
DURATION_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})\s*(ns|us|µs|μs|ms|s|m|h|d)")
_WHOLE = re.compile(rf"^\s*[-+]?\s*(?:{_NUMBER}\s*(?:ns|us|µs|μs|ms|s|m|h|d)\s*)+$")
_BARE = re.compile(rf"^\s*[-+]?{_NUMBER}(?:[eE][-+]?\d+)?\s*$")


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds.

    Accepts ints/floats (seconds), numeric strings (seconds) and unit strings, including
    k6-style compounds such as ``"1m30s"``.  Raises ``ValueError`` with a message that says
    what was expected; it never returns NaN or infinity.  Sign checks (``> 0``) are left to
    the caller, which knows the field name.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', '2m', '500ms' or seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if _BARE.match(text):
            seconds = float(text)
        elif _WHOLE.match(text):
            seconds = sum(float(num) * DURATION_UNITS[unit] for num, unit in _PART.findall(text))
            if text.startswith("-"):
                seconds = -seconds
        else:
            raise ValueError(
                f"expected a duration like '30s', '2m', '500ms', '1h' or a number of seconds, got {value!r}"
            )
    else:
        raise ValueError(
            f"expected a duration like '30s', '2m', '500ms' or seconds, got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be finite, got {value!r}")
    if abs(seconds) > MAX_DURATION_S:
        raise ValueError(f"must be at most 30d ({MAX_DURATION_S:g} s, the longest the harness schedules), "
                         f"got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: ``90 -> '1m30s'``, ``0.25 -> '250ms'``, ``3600 -> '1h'``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:g}us"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    whole = int(seconds)
    frac = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs or frac:
        out += f"{secs + frac:g}s"
    return out
