"""The stack cross-check with native histograms: native ``histogram_quantile`` against HDR."""

from __future__ import annotations

from harness.observe.stack_report import NATIVE_GOAL_PCT, quantile_crosscheck
from harness.record.recorder import Recorder


class FakeProm:
    def __init__(self, classic_s, native_s):
        self.classic_s, self.native_s = classic_s, native_s
        self.exprs = []

    def query(self, expr, at=None):
        self.exprs.append(expr)
        value = self.native_s if "_native_seconds" in expr else self.classic_s
        if value is None:
            return []
        return [{"metric": {"target": "api"}, "value": [at, str(value)]}]


def _recorder():
    rec = Recorder(origin_ns=0)
    for i in range(100):
        rec.record("api", "ok", 0, 0, 150_000_000)  # 150 ms each
    return rec


def test_native_rows_compare_with_hdr_against_the_goal():
    prom = FakeProm(0.1975, 0.1510)
    rows = quantile_crosscheck(prom, _recorder(), "harness", 1000.0)
    assert any("lbh_harness_latency_native_seconds" in e and "sum by (target)" in e for e in prom.exprs)
    for r in rows:
        assert r["native_ms"] == 151.0
        assert abs(r["native_error_pct"] - abs(151.0 - r["hdr_ms"]) / r["hdr_ms"] * 100) < 1e-3
        assert r["native_within_goal"] is True
        assert r["within_bucket"] is True  # the classic check is unchanged
    off = quantile_crosscheck(FakeProm(0.1975, 0.1600), _recorder(), "harness", 1000.0)
    assert all(r["native_error_pct"] > NATIVE_GOAL_PCT and r["native_within_goal"] is False for r in off)


def test_without_native_histograms_rows_are_as_before():
    rows = quantile_crosscheck(FakeProm(0.1975, None), _recorder(), "harness", 1000.0)
    assert rows and all("native_ms" not in r for r in rows)
