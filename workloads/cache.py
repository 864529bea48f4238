"""A size-bounded TTL cache for extractor results, keyed by a digest of the input window.

Why a digest: two windows with equal bytes, shape and dtype give equal features, so the
key is blake2b over exactly those three things. A 60×15 float32 window hashes in a few
microseconds, far below a model call. Why OrderedDict: get, put and eviction are all
O(1) (``move_to_end`` / ``popitem(last=False)``), and the least recently used entry is
always at the front. The clock is injectable so tests can expire entries without sleeping.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

__all__ = ["CacheStats", "TTLCache", "window_key"]

V = TypeVar("V")


def window_key(window: np.ndarray) -> bytes:
    """A 16-byte blake2b digest of ``window``'s dtype, shape and bytes (C order)."""
    arr = np.ascontiguousarray(window)
    h = hashlib.blake2b(digest_size=16)
    h.update(arr.dtype.str.encode())
    h.update(repr(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))
    return h.digest()


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was created (``clear`` does not reset them)."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int
    max_size: int

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class TTLCache(Generic[V]):
    """Thread-safe LRU cache whose entries also expire ``ttl_seconds`` after insertion.

    An expired entry found on lookup counts as an expiration *and* a miss. When full, the
    least recently used entry goes; that counts as an expiration if it had already
    expired, otherwise as an eviction, so ``evictions`` measures real capacity pressure.
    """

    def __init__(
        self,
        max_size: int = 1000,
        ttl_seconds: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds}")
        self.max_size = int(max_size)
        self.ttl_seconds = float(ttl_seconds)
        self._clock = clock
        self._data: OrderedDict[bytes, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = self._expirations = 0

    def get(self, key: bytes) -> V | None:
        """The live value for ``key``, or None; a hit makes the entry most recently used."""
        now = self._clock()
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self._misses += 1
                return None
            expires_at, value = entry
            if now >= expires_at:
                del self._data[key]
                self._expirations += 1
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: bytes, value: V) -> None:
        """Insert or refresh ``key``; its TTL restarts now."""
        now = self._clock()
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
            elif len(self._data) >= self.max_size:
                _, (expires_at, _) = self._data.popitem(last=False)
                if now >= expires_at:
                    self._expirations += 1
                else:
                    self._evictions += 1
            self._data[key] = (now + self.ttl_seconds, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                size=len(self._data),
                max_size=self.max_size,
            )
