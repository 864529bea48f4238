"""One way to report bad input: collect every problem with its field path, suggest the
closest known name, and raise once. Scenarios, profiles, thresholds, the scenario library
and the CLI all use it, so every message reads the same:
``profile.rte: unknown key for a constant profile (did you mean 'rate'?)``."""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Iterable, List, Optional

from harness.config.durations import parse_duration

__all__ = ["suggest", "Problems", "MISSING"]


class _Missing:
    """A required value that was not given (reported once, by the caller that knows why)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def suggest(word: str, choices: Iterable[str], *, cutoff: float = 0.6, otherwise: str = "known") -> str:
    """`` (did you mean 'x'?)`` for the closest choice; without one, `` (known: a, b)``
    (``otherwise="known"``), `` (expected one of: a, b)`` (``"expected"``) or ``""``."""
    options = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=cutoff)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if otherwise == "known" and options:
        return f" (known: {', '.join(options)})"
    if otherwise == "expected" and options:
        return f" (expected one of: {', '.join(options)})"
    return ""


class Problems:
    """Collects ``"path: message"`` lines; ``raise_if_any(ErrorType)`` raises them together."""

    def __init__(self, prefix: str = "") -> None:
        self.items: List[str] = []
        self.missing = False
        self.prefix = prefix

    def __bool__(self) -> bool:
        return bool(self.items) or self.missing

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.prefix}{path}: {message}")

    def unknown_keys(self, path: str, keys: Iterable[str], known: Iterable[str], what: str = "key") -> None:
        known = list(known)
        for key in keys:
            if key not in known:
                self.add(f"{path}{key}", f"unknown {what}{suggest(key, known)}")

    def number(self, path: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> Optional[float]:
        """A finite number (numeric strings accepted) >= / > ``minimum``."""
        if value is MISSING:
            self.missing = True
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.add(path, f"must be a number, got {value!r}")
            return None
        try:
            value = float(value)
        except ValueError:
            self.add(path, f"must be a number, got {value!r}")
            return None
        if not math.isfinite(value):
            self.add(path, f"must be finite, got {value!r}")
            return None
        if strict and value <= minimum:
            self.add(path, f"must be > {minimum:g}, got {value:g}")
            return None
        if not strict and value < minimum:
            self.add(path, f"must be >= {minimum:g}, got {value:g}")
            return None
        return value

    def integer(self, path: str, value: Any, minimum: int) -> Optional[int]:
        """An integer (digit strings accepted) >= ``minimum``."""
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                value = int(value)
            else:
                self.add(path, f"must be an integer >= {minimum}, got {value!r}")
                return None
        if value < minimum:
            self.add(path, f"must be >= {minimum}, got {value}")
            return None
        return value

    def duration(self, path: str, value: Any, *, allow_zero: bool = False) -> Optional[float]:
        """Seconds from ``30s``/``2m``/a number; > 0 (or >= 0 with ``allow_zero``)."""
        if value is MISSING:
            self.missing = True
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.add(path, str(exc))
            return None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            self.add(path, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
            return None
        return seconds

    def raise_if_any(self, error: Callable[[List[str]], Exception]) -> None:
        if self:
            raise error(list(self.items))
