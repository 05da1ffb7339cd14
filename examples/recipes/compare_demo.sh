#!/usr/bin/env bash
# The documented `thresher compare` run: full pool vs random data of the same
# size vs a k-center selection, 3 seeds each, LoRA on the bundled
# SmolLM2-135M-Instruct, scored on a 15% holdout of four Yes/No tasks
# (born_first, rectangles, which_is_heavier, regex_match: 905 rows).
#
#   bash examples/recipes/compare_demo.sh            # GPU: a few minutes
#   CPU=1 bash examples/recipes/compare_demo.sh      # 2-core CPU: smaller settings, ~30-40 min unloaded
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${WORK:-/tmp/thresher-compare-demo}
mkdir -p "$work"

python - "$work/yesno.jsonl" <<'PY'
import json, sys
tasks = {"born_first", "rectangles", "which_is_heavier", "regex_match"}
with open("examples/demo/pool.jsonl") as src, open(sys.argv[1], "w") as out:
    out.writelines(line for line in src if json.loads(line).get("category") in tasks)
PY

# ~20% of the sub-pool by k-center greedy on the static embeddings
thresher select "$work/yesno.jsonl" -m kcenter --n 180 --seed 0 -o "$work/kcenter.jsonl" --overwrite

if [[ "${CPU:-0}" == "1" ]]; then
  settings=(--holdout 0.05 --max-steps 10 --batch-size 4 --max-length 96)
else
  settings=(--holdout 0.15 --max-steps 30 --batch-size 8 --max-length 128)
fi
# `random` without a budget draws as many rows as the selection file keeps
# after its held-out rows are dropped, so both arms have the same size.
thresher compare "$work/yesno.jsonl" -o "$work/compare" \
  --arms "full,random,$work/kcenter.jsonl,base" \
  --seeds 3 --label-field category "${settings[@]}" --overwrite
