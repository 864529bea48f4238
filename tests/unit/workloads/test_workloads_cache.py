"""TTL cache: keys, hits, LRU eviction, expiry on a fake clock, counters, thread safety."""

import threading

import numpy as np
import pytest

from workloads.cache import TTLCache, window_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_key_depends_on_bytes_shape_and_dtype():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert window_key(a) == window_key(a.copy())
    assert len(window_key(a)) == 16
    assert window_key(a) != window_key(a.reshape(4, 3))
    assert window_key(a) != window_key(a.astype(np.float64))
    b = a.copy()
    b[0, 0] = 99
    assert window_key(a) != window_key(b)
    # a non-contiguous view hashes like its contiguous copy
    big = np.arange(24, dtype=np.float32).reshape(3, 8)
    assert window_key(big[:, ::2]) == window_key(np.ascontiguousarray(big[:, ::2]))


def test_hit_miss_and_expiry_on_a_fake_clock():
    clock = FakeClock()
    cache: TTLCache[str] = TTLCache(10, ttl_seconds=5, clock=clock)
    assert cache.get(b"k") is None
    cache.put(b"k", "v")
    clock.now += 4.999
    assert cache.get(b"k") == "v"
    clock.now += 0.001
    assert cache.get(b"k") is None
    s = cache.stats()
    assert (s.hits, s.misses, s.expirations, s.evictions, s.size) == (1, 2, 1, 0, 0)
    assert s.hit_rate == pytest.approx(1 / 3)


def test_put_restarts_the_ttl():
    clock = FakeClock()
    cache: TTLCache[int] = TTLCache(10, ttl_seconds=5, clock=clock)
    cache.put(b"k", 1)
    clock.now += 4
    cache.put(b"k", 2)
    clock.now += 4
    assert cache.get(b"k") == 2


def test_lru_eviction_keeps_recently_used_entries():
    clock = FakeClock()
    cache: TTLCache[int] = TTLCache(2, ttl_seconds=60, clock=clock)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1  # b is now least recently used
    cache.put(b"c", 3)
    assert cache.get(b"b") is None and cache.get(b"a") == 1 and cache.get(b"c") == 3
    assert cache.stats().evictions == 1 and len(cache) == 2


def test_evicting_an_expired_entry_counts_as_expiration():
    clock = FakeClock()
    cache: TTLCache[int] = TTLCache(1, ttl_seconds=1, clock=clock)
    cache.put(b"a", 1)
    clock.now += 2
    cache.put(b"b", 2)
    s = cache.stats()
    assert (s.evictions, s.expirations) == (0, 1)


def test_invalid_settings():
    with pytest.raises(ValueError):
        TTLCache(0)
    with pytest.raises(ValueError):
        TTLCache(10, ttl_seconds=0)


def test_concurrent_use_keeps_counts_exact():
    cache: TTLCache[int] = TTLCache(64, ttl_seconds=60)
    keys = [bytes([i]) for i in range(128)]

    def work() -> None:
        for i in range(2000):
            k = keys[i % 128]
            if cache.get(k) is None:
                cache.put(k, i)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = cache.stats()
    assert s.hits + s.misses == 4 * 2000
    assert s.size <= 64
