"""CLI glue for reports, baselines, the knee search, soak verdicts and the scenario library.

``harness/cli/main.py`` calls three functions (see docs/reports.md, "Wiring"):

* :func:`add_subcommands` — ``harness report | compare | search | soak | scenarios``;
* :func:`add_run_arguments` — ``harness run --baseline FILE --report [PATH] --smoke``;
* :func:`after_run` — after ``harness run`` wrote its result: the HTML report and the
  baseline gate, returning the final exit code.

Exit codes added: **97** — the run passed its thresholds but is worse than the baseline by
more than 10 % on a gated metric (or no gated metric had enough samples to judge).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["add_subcommands", "add_run_arguments", "after_run", "EXIT_REGRESSED"]

from harness.result.compare import EXIT_REGRESSED


def add_subcommands(sub: Any) -> None:
    """Register the subcommands on ``argparse``'s subparsers; each sets ``_handler``."""
    from harness.result import compare
    from harness.config import library
    from harness.result import html as report_html
    from harness.studies import search
    from harness.studies import soak

    p = sub.add_parser("report", help="render the self-contained HTML report of a result JSON")
    report_html.add_report_arguments(p)
    p.set_defaults(_handler=report_html.cmd_report)

    p = sub.add_parser("compare", help="compare a result with a baseline: improved / regressed / unchanged; "
                                       "exit 97 when worse by > 10 %%")
    compare.add_compare_arguments(p)
    p.set_defaults(_handler=compare.cmd_compare)

    p = sub.add_parser("search", help="knee search: the highest rate that still meets the thresholds")
    search.add_search_arguments(p)
    p.set_defaults(_handler=search.cmd_search)

    p = sub.add_parser("soak", help="leak verdict (RSS slope ± its error) and latency stability of a long run")
    soak.add_soak_arguments(p)
    p.set_defaults(_handler=soak.cmd_soak)

    p = sub.add_parser("scenarios", help="list the packaged scenarios (run one with `harness run NAME`)")
    library.add_scenarios_arguments(p)
    p.set_defaults(_handler=library.cmd_scenarios)


def add_run_arguments(run: Any) -> None:
    g = run.add_argument_group("reports and baselines")
    g.add_argument("--baseline", metavar="FILE", help="compare with this baseline result; exit 97 when a gated metric "
                                                      "is worse by more than 10 %% (the run's own failure codes win)")
    g.add_argument("--report", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the HTML report (default: next to the result, .html)")
    g.add_argument("--smoke", action="store_true", help="a packaged scenario's shortened variant (a few seconds)")


def after_run(args: Any, result: Dict[str, Any], result_path: Path, *, baseline: Optional[Dict[str, Any]] = None,
              stdout: Any = None) -> int:
    """Report and baseline gate after ``harness run`` (``baseline``: the loaded ``--baseline``
    result, read before the load so a bad path fails at once); returns the exit code."""
    stdout = stdout or sys.stdout
    code = int(result["verdict"]["exit_code"])
    comparison: Optional[Dict[str, Any]] = None
    if baseline is not None:
        from harness.result.compare import compare, format_comparison, gate_exit_code

        comparison = compare(baseline, result)
        if not getattr(args, "quiet", False):
            print("\n" + format_comparison(comparison), file=stdout)
        code = gate_exit_code(code, comparison)
    if getattr(args, "report", None) is not None:
        from harness.result.html import write_report

        out = args.report or str(Path(result_path).with_suffix(".html"))
        path = write_report(result, out, comparison=comparison)
        print(f"report: {path}", file=stdout)
    return code
