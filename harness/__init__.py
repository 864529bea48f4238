"""Load generation and judgement: open-loop arrival profiles, latency from intended start,
HDR histograms, k6-style thresholds, a generator that checks itself, and results you can
merge across processes."""

__version__ = "0.1.0"

__all__ = ["__version__"]
