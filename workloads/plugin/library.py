"""The inputs of the packaged scenarios that the plain ``features`` target does not cover:
variable input sizes, extreme data, market-crash windows, a warm cache and a
cached/uncached mix.

All of them call the reference ``FeatureExtractor`` (CNN+LSTM, fallback on). Everything a
call needs (the models, the window pools, the warmed cache) is built once when the first
such target is built, before the harness's clock starts, so no measured call pays for
building a model. Each call takes the request ordinal and picks its window from a fixed,
seeded pool, so runs are reproducible.

These extractors have their own ``CollectorRegistry``: a run against these targets
measures latency in the harness, not the workloads' ``lbh_operation_*`` series.
"""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry

from workloads.extractor import ExtractorConfig, build_extractor
from workloads.market_data import MarketDataGenerator, crash_window, huge_window, nan_run_window, tiny_window

__all__ = ["Library", "library", "SIZES", "EXTREME_KINDS", "WARM_POOL"]

SIZES = (10, 30, 60, 120, 200)        # timesteps, 15 features each: all valid
EXTREME_KINDS = ("nan_runs", "min_10x15", "long_200x15", "tiny_10x5_invalid", "huge_200x50_invalid")
WARM_POOL = 16
_POOL = 64


class Library:
    """Two extractors (cold: no cache; warm: a cache holding the warm pool) and the pools."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.cold = build_extractor(ExtractorConfig(enable_caching=False), registry=registry)
        self.warm = build_extractor(ExtractorConfig(enable_caching=True, cache_size=4096,
                                                    cache_ttl_seconds=24 * 3600.0), registry=registry)
        gen = MarketDataGenerator(11)
        self.sizes = [[gen.window(t) for _ in range(_POOL // len(SIZES) + 1)] for t in SIZES]
        self.extreme = [
            [nan_run_window(seed=s) for s in range(8)],
            [MarketDataGenerator(100 + s).window(10) for s in range(8)],
            [MarketDataGenerator(200 + s).window(200) for s in range(8)],
            [tiny_window(seed=s) for s in range(8)],
            [huge_window(seed=s) for s in range(8)],
        ]
        self.crash = [crash_window(seed=s, drop=d, volume_multiplier=v)
                      for s in range(6) for d, v in ((0.2, 5.0), (0.3, 10.0), (0.5, 20.0))]
        self.warm_windows = [MarketDataGenerator(300 + s).window() for s in range(WARM_POOL)]
        self.cold_windows = MarketDataGenerator(400).windows(512)
        for w in self.warm_windows:  # warm the cache: this is what "warm" means
            self.warm.extract(w)
        for w in (self.sizes[0][0], self.sizes[-1][0], self.extreme[0][0], self.crash[0], self.cold_windows[0]):
            self.cold.extract(w)  # first calls per shape (torch's one-time set-up) outside the run

    def extract_sizes(self, k: int):
        """Windows of 10, 30, 60, 120 and 200 timesteps in turn (cold path)."""
        pool = self.sizes[k % len(SIZES)]
        return self.cold.extract(pool[(k // len(SIZES)) % len(pool)])

    def extract_extreme(self, k: int):
        """In turn: NaN runs (cleaned, answered), 10x15, 200x15 (answered), 10x5 and 200x50
        (invalid shapes: ``InvalidInputError``, recorded as errors: 2 requests in 5)."""
        pool = self.extreme[k % len(EXTREME_KINDS)]
        return self.cold.extract(pool[(k // len(EXTREME_KINDS)) % len(pool)])

    def extract_crash(self, k: int):
        """Market-crash windows: -20 / -30 / -50 % over the last bars on 5 / 10 / 20x volume."""
        return self.cold.extract(self.crash[k % len(self.crash)])

    def extract_warm(self, k: int):
        """A pool of 16 windows already in the cache: every call should hit."""
        return self.warm.extract(self.warm_windows[k % WARM_POOL])

    def extract_mixed(self, k: int):
        """Half the requests from the warm pool (cache hits), half fresh windows (model calls)."""
        if k % 2 == 0:
            return self.warm.extract(self.warm_windows[(k // 2) % WARM_POOL])
        return self.cold.extract(self.cold_windows[(k // 2) % len(self.cold_windows)])


@functools.lru_cache(maxsize=1)
def library() -> Library:
    """The one library of a process (the models are read-only after warming)."""
    return Library()
