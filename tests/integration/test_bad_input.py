"""Bad input through the real command line: exit 2, a message naming the field or the file,
never a traceback (huge rates and durations, deep or non-UTF-8 YAML, a module or payload
that raises, results of the wrong shape); and broken runs: a payload or target that raises
is an error outcome for every scheduled request, so the run fails, never exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

BROKEN = textwrap.dedent('''
    def target(x=None):
        return None

    async def atarget(x=None):
        return None

    def pay(k):
        if k >= 50:
            raise ValueError("boom")
        return (k,)

    def pay_first(k):
        raise RuntimeError("first call")

    def sysexit(x=None):
        raise SystemExit(3)

    async def asysexit(x=None):
        raise SystemExit(4)
''')


def harness(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli.main", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "brk.py").write_text(BROKEN)
    (tmp_path / "badimp.py").write_text('raise RuntimeError("at import")\ndef f():\n    pass\n')
    (tmp_path / "pkgbad").mkdir()
    (tmp_path / "pkgbad" / "__init__.py").write_text('raise RuntimeError("package init")\n')
    (tmp_path / "pkgbad" / "mod.py").write_text("def f():\n    pass\n")
    (tmp_path / "deep.yaml").write_text("target: " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    return tmp_path


RUN = ("run", "--no-metrics", "--progress", "off", "-q", "--out", "r.json")


def assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr[-2000:])


# ----------------------------------------------------------------------------- inputs bounded

@pytest.mark.parametrize("args, needles", [
    (("--rate", "1e9", "--duration", "3s"), ("profile.rate", "at most 1e+06")),
    (("--rate", "1e300"), ("profile.rate", "at most 1e+06")),
    (("--duration", "100000000h"), ("duration", "at most 30d")),
    (("--duration", "1e300"), ("duration", "at most 30d")),
    (("--timeout", "1e300"), ("timeout", "at most 30d")),
    (("--rate", "1e6", "--duration", "30d"), ("profile.duration", "1e+10")),
    (("--threads", "100000"), ("executor.threads", "at most 10,000")),
    (("--workers", "5000", "--max-in-flight", "6000"), ("executor.workers", "at most 1,024")),
    (("--profile", "users", "--vus", "100000"), ("profile.vus", "at most 10000")),
], ids=["rate-1e9", "rate-1e300", "duration-1e8h", "duration-1e300", "timeout-1e300", "requests-2.6e12",
        "threads", "workers", "vus"])
def test_rates_durations_and_counts_beyond_the_limits_are_refused_up_front(work, args, needles):
    proc = harness(work, *RUN, "--target", "noop", *args, timeout=60)
    assert_usage_error(proc, *needles)
    assert not (work / "r.json").exists()  # refused before anything ran


@pytest.mark.parametrize("args, needles", [
    (("deep.yaml",), ("deep.yaml", "nested too deeply")),
    (("latin1.yaml",), ("latin1.yaml", "not UTF-8")),
    (("--target", "badimp:f"), ("target:", "importing 'badimp' failed", "RuntimeError: at import")),
    (("--target", "./badimp.py:f"), ("target:", "RuntimeError: at import")),
    (("--target", "pkgbad.mod:f"), ("target:", "importing 'pkgbad.mod' failed", "package init")),
    (("--target", "brk:target", "--payload", "brk:pay_first"), ("payload:", "RuntimeError: first call")),
    (("--target", "brk:target", "--payload", "brk:pay_first", "--workers", "2"),
     ("payload:", "RuntimeError: first call")),
], ids=["deep-yaml", "non-utf8-yaml", "module-raises", "file-raises", "package-raises", "payload-first-call",
        "payload-first-call-workers"])
def test_bad_files_modules_and_payloads_are_usage_errors_naming_them(work, args, needles):
    proc = harness(work, *RUN, "--duration", "1s", "--rate", "5", *args)
    assert_usage_error(proc, *needles)


def test_a_deep_set_value_is_text_not_a_traceback(work):
    proc = harness(work, "validate", "--set", "name=" + "[" * 5000)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_a_deep_environment_value_names_its_variable(work):
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "validate"], cwd=work,
                          env={**ENV, "HARNESS_NAME": "[" * 5000}, capture_output=True, text=True, timeout=60)
    assert_usage_error(proc, "HARNESS_NAME", "nested too deeply")


# ----------------------------------------------------------------------------- results of the wrong shape

@pytest.fixture(scope="module")
def good_result(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("good")
    proc = harness(d, "run", "--target", "noop", "--rate", "50", "--duration", "1s", "--no-metrics", "--progress",
                   "off", "-q", "--out", "good.json")
    assert proc.returncode == 0, proc.stderr
    return json.loads((d / "good.json").read_text())


def _corrupt_histogram(r: dict) -> None:
    target = next(iter(r["histograms"]["targets"].values()))
    outcome = next(iter(target["outcomes"].values()))
    outcome["histograms"][next(iter(outcome["histograms"]))] = "!!!not base64"


CORRUPTIONS = {
    "summary-string": (lambda r: r.__setitem__("summary", "x"), "summary: expected an object"),
    "count-string": (lambda r: r["summary"]["all"].__setitem__("count", "120"), "summary.all.count"),
    "target-latency": (lambda r: next(iter(r["summary"]["targets"].values())).__setitem__("latency", [1]),
                       "latency: expected an object"),
    "rate-string": (lambda r: r["summary"]["all"].__setitem__("error_rate", "0.1"), "summary.all.error_rate"),
    "elapsed-string": (lambda r: r.__setitem__("elapsed_s", "3"), "elapsed_s"),
    "segment-offset": (lambda r: r["scenario"]["profile"].__setitem__("segment", {"offset": "x", "stride": 2}),
                       "scenario.profile.segment.offset"),
    "histogram-corrupt": (_corrupt_histogram, "histograms: corrupt"),
    "histograms-string": (lambda r: r.__setitem__("histograms", "x"), "histograms: expected"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
@pytest.mark.parametrize("command", ["compare", "merge", "report"])
def test_results_of_the_wrong_shape_are_usage_errors_naming_the_field(tmp_path, good_result, case, command):
    corrupt, field = CORRUPTIONS[case]
    bad = json.loads(json.dumps(good_result))
    corrupt(bad)
    (tmp_path / "good.json").write_text(json.dumps(good_result))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    args = {"compare": ("compare", "good.json", "bad.json"),
            "merge": ("merge", "good.json", "bad.json", "--out", "m.json"),
            "report": ("report", "bad.json", "-o", "bad.html")}[command]
    assert_usage_error(harness(tmp_path, *args, timeout=60), "bad.json", field)


# ----------------------------------------------------------------------------- broken runs never pass

def _run_counts(work: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = harness(work, *RUN, "--rate", "40", "--duration", "3s", *args)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc, json.loads((work / "r.json").read_text())


@pytest.mark.parametrize("args", [
    ("--target", "brk:target", "--payload", "brk:pay"),
    ("--target", "brk:atarget", "--payload", "brk:pay"),
    ("--target", "brk:target", "--payload", "brk:pay", "--workers", "2"),
], ids=["threads", "asyncio", "workers-2"])
def test_a_payload_raising_from_the_50th_request_fails_the_run_with_every_request_counted(work, args):
    proc, result = _run_counts(work, *args)
    summary = result["summary"]["all"]
    assert summary["count"] == 120 and summary["outcomes"]["ok"] == 50 and summary["outcomes"]["error"] == 70
    assert summary["errors"] == {"ValueError": 70}
    assert proc.returncode == result["verdict"]["exit_code"] != 0 and not result["verdict"]["passed"]
    assert proc.returncode in (98, 99)


@pytest.mark.parametrize("args", [
    ("--target", "brk:sysexit"),
    ("--target", "brk:asysexit"),
    ("--target", "brk:sysexit", "--workers", "2"),
], ids=["threads", "asyncio", "workers-2"])
def test_a_target_raising_system_exit_fails_the_run_with_every_request_an_error(work, args):
    proc, result = _run_counts(work, *args)
    summary = result["summary"]["all"]
    assert summary["count"] == 120 and summary["errors"] == {"SystemExit": 120}
    assert proc.returncode == result["verdict"]["exit_code"] != 0 and not result["verdict"]["passed"]


def test_a_worker_process_that_dies_makes_the_run_invalid(work):
    (work / "die.py").write_text("import os\n_n = [0]\n\ndef target(x=None):\n    _n[0] += 1\n"
                                 "    if _n[0] == 5:\n        os._exit(7)\n")
    proc, result = _run_counts(work, "--target", "die:target", "--workers", "2")
    assert proc.returncode == 98 == result["verdict"]["exit_code"], proc.stderr[-2000:]
    assert result["status"] == "failed" and not result["verdict"]["valid"]
    reasons = result["generator"]["reasons"]
    assert any("worker process" in r and "exited with code 7" in r for r in reasons), reasons
    assert any("scheduled requests" in r for r in reasons), reasons
