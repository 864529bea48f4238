"""What an install costs a user: venv sizes and import times, measured now.

Builds the wheel, installs it into a fresh venv with no extras (the core) and into another
with ``torch==2.13.0`` and ``[all]``, then prints each venv's size on disk and, in the
core venv, the time of ``import instrumentation``, ``import harness`` and of the CLI's
own imports (``harness.cli.main``), each the median of 7 fresh interpreters minus an
empty interpreter's start (the baseline, measured in the same run).

    .venv/bin/python benchmarks/install_footprint.py [--core-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _du_mb(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total / 1e6


def _venv(path: Path, *installs: list, env: dict | None = None) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    py = path / "bin" / "python"
    for args in installs:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args], check=True,
                       env={**os.environ, **(env or {})}, stderr=subprocess.DEVNULL)
    return py


def _start_ms(py: Path, code: str, cwd: Path, n: int = 7) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([str(py), "-c", code], check=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--core-only", action="store_true", help="skip the full venv (torch + [all])")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lbh-footprint-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(ROOT)],
                       check=True, stderr=subprocess.DEVNULL)
        (wheel,) = work.glob("*.whl")
        print(f"wheel: {wheel.name} {wheel.stat().st_size / 1e3:.0f} kB")
        core = _venv(work / "core", [str(wheel)])
        empty = _venv(work / "empty")
        print(f"core venv (no extras): {_du_mb(work / 'core'):.0f} MB "
              f"(an empty venv: {_du_mb(work / 'empty'):.0f} MB)")
        base = _start_ms(core, "pass", work)
        print(f"interpreter start (baseline): {base:.0f} ms")
        for mod in ("instrumentation", "harness", "harness.cli.main"):
            ms = _start_ms(core, f"import {mod}", work)
            print(f"import {mod}: {ms - base:.0f} ms over the baseline ({ms:.0f} ms in all)")
        del empty
        if not args.core_only:
            _venv(work / "full", ["torch==2.13.0"], ["--no-binary", "urllib3-future", f"{wheel}[all]"],
                  env={"URLLIB3_NO_OVERRIDE": "1"})
            print(f"full venv (torch==2.13.0 + [all]): {_du_mb(work / 'full'):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
