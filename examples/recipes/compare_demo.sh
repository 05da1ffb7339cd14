#!/usr/bin/env bash
# The documented `thresher compare` run (README, "Evaluate"): LoRA on the bundled
# SmolLM2-135M-Instruct, full pool vs random@20% vs a k-center selection of the
# same size, 3 seeds each, plus the untuned base model, scored on a stratified
# 15% holdout of two Yes/No tasks of the demo pool (rectangles, which_is_heavier:
# 383 rows). ~40 min on a 2-core CPU; a few minutes on a GPU.
#
#   bash examples/recipes/compare_demo.sh [OUT_DIR]      # default out/demo
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/demo}
mkdir -p "$out"

python - "$out/yesno.jsonl" <<'PY'
import json, sys
tasks = {"rectangles", "which_is_heavier"}
with open("examples/demo/pool.jsonl") as src, open(sys.argv[1], "w") as dst:
    dst.writelines(line for line in src if json.loads(line).get("category") in tasks)
PY

# ~20% of the sub-pool by k-center greedy on the static embeddings
thresher select "$out/yesno.jsonl" -m kcenter --n 77 --seed 0 -o "$out/kcenter.jsonl" --overwrite -q

thresher compare "$out/yesno.jsonl" -o "$out/compare" \
  --arms "full,random@20%,$out/kcenter.jsonl,base" --seeds 3 --label-field category \
  --holdout 0.15 --max-steps 20 --batch-size 8 --max-length 128 --threads 1 --overwrite
thresher report "$out/compare" -o "$out/compare_report.html" --overwrite
echo "compare: $out/compare/results.json, table $out/compare/table.txt, report $out/compare_report.html"
