"""``harness search SCENARIO``: the knee, the highest constant rate that still meets the
scenario's thresholds (:mod:`harness.studies.search`).

Exit 0 knee found (or above ``--max-rate``), 98 the generator was the limit before a knee,
99 below ``--min-knee`` or no rate passed, 2 usage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict

from harness.cli.args import add_set_argument
from harness.config import library
from harness.config.durations import parse_duration
from harness.config.scenario import ScenarioError
from harness.exitcodes import ExitCode
from harness.lifecycle import Interrupted, signal_name, signal_scope
from harness.result.schema import write_result
from harness.run.runner import Run, RunOptions
from harness.studies.search import SearchError, SearchSettings, format_search, search, search_exit_code
from harness.targets import TargetError

__all__ = ["register", "handle"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("search", help="knee search: the highest rate that still meets the thresholds")
    p.add_argument("scenario", help="a scenario file or a packaged scenario name (`harness scenarios`)")
    p.add_argument("--start-rate", type=float, default=10.0)
    p.add_argument("--max-rate", type=float, default=5000.0)
    p.add_argument("--factor", type=float, default=2.0, help="growth factor of the exponential phase")
    p.add_argument("--precision", type=float, default=0.05, help="stop when the bracket is this narrow (fraction)")
    p.add_argument("--step", default="5s", help="duration of each step, e.g. 5s")
    p.add_argument("--min-achieved", type=float, default=0.95)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--min-knee", type=float, help="exit 99 when the knee is below this rate (e.g. 80)")
    add_set_argument(p, help="scenario field override, as for `harness run`")
    p.add_argument("--out", help="write the search (steps and evidence) as JSON")
    p.add_argument("--evidence-dir", help="also write every step's full result JSON here")
    p.add_argument("--lag-bound-ms", type=float, default=5.0)
    p.set_defaults(handler=handle)
    return p


def _progress(stderr: Any):
    def on_step(st: Dict[str, Any]) -> None:
        print(f"  step {st['rate']:.4g} rps: " + ("pass" if st["passed"] else "INVALID" if not st["valid"] else "fail"),
              file=stderr, flush=True)
    return on_step


def handle(args: argparse.Namespace, *, stdout: Any = None, stderr: Any = None) -> int:
    """A signal stops the step that runs (:mod:`harness.lifecycle`), no further step starts,
    the steps so far go to ``--out`` marked interrupted, exit 105."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    with signal_scope() as signals:
        return _handle(args, stdout, stderr, signals)


def _handle(args: argparse.Namespace, stdout: Any, stderr: Any, signals: Any) -> int:
    done: list = []
    on_step = _progress(stderr)

    def step_done(st: Dict[str, Any]) -> None:
        done.append(st)
        on_step(st)

    try:
        base = library.load(args.scenario, dict(args.set))
        settings = SearchSettings(start_rate=args.start_rate, max_rate=args.max_rate, factor=args.factor,
                                  precision=args.precision, step_duration_s=parse_duration(args.step),
                                  min_achieved=args.min_achieved, max_steps=args.max_steps,
                                  keep_results=bool(args.evidence_dir))
        opts = RunOptions(metrics_port=None, progress="off", install_signal_handlers=True,
                          lag_bound_ms=args.lag_bound_ms)

        def run_step(sc: Any) -> Dict[str, Any]:
            signals.check()  # a signal during the last step: no next one
            return Run(sc, opts).execute()

        r = search(base, settings, run_step=run_step, run_options=opts, on_step=step_done)
    except Interrupted as exc:
        print(f"harness: search: interrupted ({signal_name(exc.signum)}) after {len(done)} steps", file=stderr)
        if args.out:
            with signals.soft():
                write_result({"status": "interrupted", "steps": done}, args.out)
        return int(ExitCode.INTERRUPTED)
    except (ScenarioError, SearchError, TargetError, ValueError) as exc:
        print(f"harness: search: {exc}", file=stderr)
        return int(ExitCode.USAGE)
    with signals.soft():  # the search is done: a signal now must not lose its files
        if args.evidence_dir:
            for i, res in enumerate(r.pop("results", [])):
                write_result(res, Path(args.evidence_dir) / f"step-{i:02d}-{r['steps'][i]['rate']:.4g}rps.json")
        if args.out:
            write_result(r, args.out)
        print(format_search(r), file=stdout)
        code = search_exit_code(r, min_knee=args.min_knee)
        if code == ExitCode.THRESHOLDS_FAILED and search_exit_code(r) == ExitCode.OK:
            print(f"knee {r['knee_rps']:.4g} rps < required {args.min_knee:g} rps", file=stdout)
    return int(ExitCode.INTERRUPTED) if signals.interrupted else int(code)
