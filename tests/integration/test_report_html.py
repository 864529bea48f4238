"""The HTML report: rendered from a real run, opened in headless Chromium, charts present.

Under CI=true a missing Chromium fails the test (install: apt-get install -y
--no-install-recommends chromium); elsewhere it skips with that line. The screenshot and
the HTML are kept as test artifacts in $HARNESS_TEST_ARTIFACTS (default results/test-artifacts/,
which git ignores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from harness.cli.report import handle as cmd_report
from harness.result.html import CHART_IDS, render_html, write_report
from harness.result.schema import load_result
from harness.run.runner import Run, RunOptions
from harness.config.scenario import load_scenario
from harness.result.schema import write_result
from tests.support import REPO_ROOT

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = Path(os.environ.get("HARNESS_TEST_ARTIFACTS", REPO_ROOT / "results" / "test-artifacts"))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    msg = "chromium not found on PATH; install it: apt-get install -y --no-install-recommends chromium"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def _browser(binary: str, tmp: Path, *extra: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    """A real 3 s run at 60 rps on a target with errors, cache hits and fallbacks."""
    sc = load_scenario(None, {"name": "report-test", "target": "tests.support.targets_capacity:flagged",
                              "payload": "tests.support.targets_capacity:ordinal", "duration": "3s",
                              "profile": {"type": "constant", "rate": 60}}, env={})
    res = Run(sc, RunOptions(metrics_port=None, progress="off", install_signal_handlers=False)).execute()
    return json.loads(json.dumps(res))  # as read back from disk


def test_report_has_every_section_and_nothing_external(result):
    page = render_html(result)
    for cid in CHART_IDS:
        assert f'data-chart="{cid}"' in page, cid
    for needle in ('id="verdict-table"', 'id="alerts"', 'id="scenario"', "p95 budget 100 ms", "p99 budget 200 ms",
                   "intended", "cache hit", "fallback", "service time", "report-test"):
        assert needle in page, needle
    # self-contained: no src/href/url()/@import to anything
    assert not re.search(r"""\b(src|href)\s*=|url\(|@import""", page), "the report must not load anything"
    assert "https://" not in page.replace("http://www.w3.org/2000/svg", "")
    # each chart that has data drew at least one series
    for cid in CHART_IDS:
        svg = page.split(f'data-chart="{cid}"', 1)[1].split("</svg>", 1)[0]
        assert 'class="series"' in svg, f"{cid} drew no series"


def test_report_lists_alerts_that_fired(result):
    with_stack = {**result, "stack": {"prometheus_url": "http://127.0.0.1:9", "alerts_fired": [
        {"alertname": "LatencyP95OverBudget", "severity": "page", "labels": {"operation": "features"},
         "firing_s": 42.0, "still_firing_at_end": True}], "notifications": []}}
    page = render_html(with_stack)
    alerts = page.split('id="alerts"', 1)[1].split("<h2", 1)[0]
    assert "LatencyP95OverBudget" in alerts and "operation=features" in alerts and ">42<" in alerts
    quiet = render_html({**result, "stack": {"alerts_fired": []}})
    assert "No alert fired" in quiet


def test_report_without_histograms_or_samples_still_renders():
    page = render_html({"schema": "harness.result/1", "scenario": {"name": "empty"}, "verdict": {"exit_code": 0},
                        "timeseries": [], "thresholds": []})
    assert page.count('class="chart"') == len(CHART_IDS)
    assert "no data" in page


def test_harness_report_renders_again_from_json(result, tmp_path, capsys):
    src = write_result(result, tmp_path / "r.json")
    args = type("A", (), {"result": str(src), "output": None, "baseline": str(src)})()
    assert cmd_report(args) == 0
    page = (tmp_path / "r.html").read_text()
    assert 'data-chart="latency-spectrum"' in page and 'id="comparison"' in page
    assert load_result(src)["run_id"] == result["run_id"]
    (tmp_path / "bad.json").write_text("{}")
    bad = type("A", (), {"result": str(tmp_path / "bad.json"), "output": None, "baseline": None})()
    assert cmd_report(bad) == 2


def _png_info(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    return w, h, len(set(raw[: 4_000_000]))


def test_report_in_headless_chromium(result, tmp_path):
    binary = _chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    html_path = write_report(result, ARTIFACTS / "report.html")
    url = html_path.resolve().as_uri()
    png = ARTIFACTS / "report.png"
    if png.exists():
        png.unlink()
    shot = _browser(binary, tmp_path / "profile1", f"--screenshot={png}", "--window-size=1400,3000", url=url)
    assert png.exists(), f"no screenshot: rc {shot.returncode}\n{shot.stderr[-2000:]}"
    w, h, distinct = _png_info(png.read_bytes())
    assert (w, h) == (1400, 3000)
    assert distinct > 20, "the screenshot is blank"
    dom = _browser(binary, tmp_path / "profile2", "--dump-dom", "--window-size=1400,3000",
                   "--virtual-time-budget=5000", url=url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'data-charts-rendered="(\d+)"', dom.stdout)
    assert m, "the page's load script did not run"
    assert int(m.group(1)) == len(CHART_IDS), f"charts laid out with series: {m.group(1)} of {len(CHART_IDS)}"
    for cid in CHART_IDS:
        assert re.search(rf'data-chart="{cid}"[^>]*data-rendered="1"', dom.stdout), cid
    assert int(re.search(r'data-series-rendered="(\d+)"', dom.stdout).group(1)) >= len(CHART_IDS)
