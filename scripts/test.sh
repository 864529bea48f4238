#!/usr/bin/env bash
# The test command. Under CI=true a missing binary is a failure, never a skip
# (tests/conftest.py enforces that); pytest's own exit code is ours.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
