#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. Locally the default run skips
# model-heavy tests (`-m slow`: the bundled SmolLM2 and MiniLM, ~1-2 min more);
# in CI (CI=true) they run too. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
bash scripts/install_browser.sh  # Debian's chromium for the report's browser test
. .venv/bin/activate
if [ "${CI:-}" = "true" ]; then
  exec python -m pytest -q "$@"
fi
exec python -m pytest -m "not slow" -q "$@"
