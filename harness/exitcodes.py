"""Every exit code the ``harness`` command returns, in one place (k6 keeps its own in one
file too; 99 is k6's "thresholds failed"). The HTML report's verdict, the pytest plug-in
and every subcommand use these values."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    OK = 0                 #: passed (thresholds held, the run was valid)
    ERROR = 1              #: the machinery failed (a stack that would not start, Grafana refused, stale files)
    USAGE = 2              #: bad flag, scenario, file or input: the message names the field
    REGRESSED = 97         #: worse than the baseline beyond the gate
    INVALID_RUN = 98       #: the generator was the bottleneck (or a worker died): nothing was proven
    THRESHOLDS_FAILED = 99 #: a threshold (or a scale-test verdict) failed
    INTERRUPTED = 105      #: Ctrl-C / SIGTERM: a partial result was written

    @property
    def meaning(self) -> str:
        return _MEANING[self]


_MEANING = {
    ExitCode.OK: "passed",
    ExitCode.ERROR: "error",
    ExitCode.USAGE: "usage error",
    ExitCode.REGRESSED: "regressed against the baseline",
    ExitCode.INVALID_RUN: "invalid run",
    ExitCode.THRESHOLDS_FAILED: "thresholds failed",
    ExitCode.INTERRUPTED: "interrupted",
}
