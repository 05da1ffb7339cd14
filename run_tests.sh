#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite (model-heavy tests: `-m slow`).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
. .venv/bin/activate
exec python -m pytest -m "not slow" -q "$@"
