"""Targets for the report tests: one that always fails, with a message that is markup."""

from __future__ import annotations

import time

#: what every call raises: HTML and a script end tag, which the report must show as text
HOSTILE_MESSAGE = "backend said <b>no</b> & </script><script>window.pwned=1</script>"


def always_runtime_error(k: int) -> None:
    """About 1 ms, then RuntimeError: a run where every request failed."""
    time.sleep(0.001)
    raise RuntimeError(HOSTILE_MESSAGE)
