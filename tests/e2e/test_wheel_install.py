"""The product as users get it: the built wheel, installed into fresh venvs, run from a
folder outside the repo. Nothing here may read a file of the checkout at run time.

- core venv (no extras): no torch/fastapi/uvicorn/kubernetes/gymnasium; ``instrument()``
  works; ``harness run --target mymod:fn`` finds ``mymod.py`` in the current folder; a
  registered workload target without its extra is a clear error naming the extra.
- full venv (``torch==2.13.0`` + ``[all]``): ``--stack local`` with 150 ms injected model
  latency pages with the shipped rules, the notification arrives and the alert gate exits
  99; ``harness dashboards generate`` writes the three dashboards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tests.support.ci import require_binary

ROOT = REPO_ROOT
pytestmark = [pytest.mark.slow, pytest.mark.e2e]

HEAVY = ("torch", "fastapi", "uvicorn", "kubernetes", "gymnasium", "grafana_client", "niquests")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def _run(argv, cwd: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(**kw.pop("env", {})), capture_output=True,
                          text=True, timeout=timeout, **kw)


def _venv(path: Path, *install: str, env: dict | None = None) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    py = path / "bin" / "python"
    for args in install:
        proc = _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args.split("\n")],
                    cwd=path, timeout=1200, env=env or {})
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return py


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT], cwd=out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (whl,) = out.glob("latency_budget_harness-*.whl")
    return whl


def test_the_wheel_carries_rules_dashboards_and_scenarios(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = "harness/observe/assets/"
    for f in ("alerts/recording_rules.yml", "alerts/alert_rules.yml", "alerts/alertmanager.yml",
              "dashboards/definitions.py", "dashboards/json/latency-budget.json", "dashboards/json/load-run.json",
              "dashboards/json/scaling.json", "dashboards/provisioning/dashboards/dashboards.yml",
              "dashboards/provisioning/datasources/datasources.yml"):
        assert assets + f in names, f
    # the shipped copies are the top-level sources, byte for byte (one source, no drift)
    with zipfile.ZipFile(wheel) as z:
        for f in ("alerts/alert_rules.yml", "dashboards/json/load-run.json"):
            assert z.read(assets + f) == (ROOT / f).read_bytes(), f
    assert any(n.startswith("harness/config/scenarios/") and n.endswith(".yaml") for n in names)
    assert "harness/config/suites/seeds-ci.yaml" in names  # `harness suite seeds-ci` by name
    assert {"harness/result/assets/uplot/uPlot.iife.min.js", "harness/result/assets/uplot/LICENSE"} <= names
    eps = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(eps).decode()
    assert "[lbh.targets]" in text and "features = workloads.plugin.targets:features [workloads]" in text


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory, wheel: Path) -> Path:
    return _venv(tmp_path_factory.mktemp("core-venv"), str(wheel))


def test_core_install_is_light_and_instruments(core_venv: Path, tmp_path: Path) -> None:
    code = ("import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m)]))"
            % (HEAVY,))
    proc = _run([core_venv, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    script = tmp_path / "use_instrument.py"
    script.write_text(
        "from prometheus_client import CollectorRegistry, generate_latest\n"
        "from instrumentation import instrument\n"
        "reg = CollectorRegistry()\n"
        "@instrument('my_op', registry=reg)\n"
        "def f(x):\n    return x + 1\n"
        "assert f(1) == 2\n"
        "text = generate_latest(reg).decode()\n"
        "assert 'lbh_operation_duration_seconds_count{operation=\"my_op\",outcome=\"ok\"} 1.0' in text, text\n"
        "print('ok')\n")
    proc = _run([core_venv, script], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_core_runs_a_module_from_the_current_folder(core_venv: Path, tmp_path: Path) -> None:
    harness = core_venv.parent / "harness"
    (tmp_path / "mymod.py").write_text("def fn():\n    return None\n")
    proc = _run([harness, "run", "--target", "mymod:fn", "--duration", "2s", "--rate", "20", "--no-metrics",
                 "--progress", "off", "-q", "--lag-bound-ms", "200", "--out", "r.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["summary"]["targets"]["fn"]["count"] == 40
    # the HTML report, with the chart library read from the installed package data
    proc = _run([harness, "report", "r.json"], cwd=tmp_path)
    assert proc.returncode == 0 and "uPlot" in (tmp_path / "r.html").read_text(), proc.stderr
    # path/to/file.py:function, with the file's own folder first on the path (sibling imports)
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "helper.py").write_text("VALUE = 3\n")
    (tmp_path / "load" / "calls.py").write_text("import helper\n\ndef call():\n    return helper.VALUE\n")
    proc = _run([harness, "run", "--target", "load/calls.py:call", "--duration", "1s", "--rate", "10",
                 "--no-metrics", "--progress", "off", "-q", "--lag-bound-ms", "200", "--out", "r2.json"],
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # a module failing at import: its own line, exit 2
    (tmp_path / "broken.py").write_text("x = 1\n\nimport not_a_module_anywhere_xyz\n")
    proc = _run([harness, "run", "--target", "broken:fn", "--duration", "1s", "--no-metrics"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "broken.py, line 3: import not_a_module_anywhere_xyz" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_core_without_workloads_names_the_extra(core_venv: Path, tmp_path: Path) -> None:
    harness = core_venv.parent / "harness"
    proc = _run([harness, "run", "--duration", "1s", "--no-metrics"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'latency-budget-harness[workloads]'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run([harness, "targets"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("features "))
    assert "missing torch, gymnasium: pip install 'latency-budget-harness[workloads]'" in line, proc.stdout
    # the payload generators need no torch: a core install can drive a remote service
    code = "from harness.targets.resolve import resolve_payload; print(len(resolve_payload('feature_window')(3)))"
    proc = _run([core_venv, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0 and int(proc.stdout) > 1000, proc.stderr
    proc = _run([core_venv.parent / "workloads", "serve"], cwd=tmp_path)
    assert proc.returncode == 2 and "latency-budget-harness[service]" in proc.stderr, proc.stderr
    # the dashboards need no extra either: generated from the shipped definition
    proc = _run([harness, "dashboards", "generate", "--out", tmp_path / "dash"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "dash").iterdir()) == ["latency-budget.json", "load-run.json",
                                                                     "scaling.json"]
    for p in (tmp_path / "dash").iterdir():
        assert p.read_text() == (ROOT / "dashboards" / "json" / p.name).read_text(), p.name


@pytest.fixture(scope="module")
def full_venv(tmp_path_factory, wheel: Path) -> Path:
    # torch first, pinned (a bare spec resolves to a multi-GB CUDA build); then [all] with
    # urllib3-future kept under its own name (README, "Install")
    return _venv(tmp_path_factory.mktemp("full-venv"), "torch==2.13.0",
                 f"--no-binary\nurllib3-future\n{wheel}[all]", env={"URLLIB3_NO_OVERRIDE": "1"})


def test_full_install_keeps_the_real_urllib3(full_venv: Path, tmp_path: Path) -> None:
    code = ("import urllib3, niquests, kubernetes, grafana_client; "
            "print(urllib3.__version__, niquests.__version__)")
    proc = _run([full_venv, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    patch = int(proc.stdout.split()[0].split(".")[2])
    assert patch < 900, f"urllib3-future (patch >= 900) replaced urllib3: {proc.stdout}"


def test_full_install_pages_with_the_shipped_rules(full_venv: Path, tmp_path: Path) -> None:
    require_binary("prometheus", "prometheus")
    require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    harness = full_venv.parent / "harness"
    proc = _run([harness, "run", "--stack", "local", "--duration", "25s", "--rate", "20",
                 "--fault", "extra_latency_seconds=0.15", "--set", "workload.enable_fallback=false",
                 "--threshold", "alerts{severity:page}=count==0", "--lag-bound-ms", "200",
                 "--progress", "off", "--out", "r.json"], cwd=tmp_path, timeout=300)
    result = json.loads((tmp_path / "r.json").read_text())
    stack = result["stack"]
    assert "error" not in stack, stack.get("error")
    page = [a for a in stack["alerts_fired"] if a["alertname"] == "LatencyP95OverBudget" and a["severity"] == "page"]
    assert page, stack["alerts_fired"]
    assert any(a["alertname"] == "LatencyP95OverBudget" and a["status"] == "firing"
               for n in stack["notifications"] for a in n["alerts"]), stack["notifications"]
    assert proc.returncode == 99, proc.stdout[-3000:] + proc.stderr[-3000:]
