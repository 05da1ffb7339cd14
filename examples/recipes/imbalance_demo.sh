#!/usr/bin/env bash
# The documented imbalance run (README, "Evaluate"): a Yes/No training pool where
# "Yes" is the minority (25 of 181 rows), scored on a balanced 80-row eval set;
# LoRA on SmolLM2 trained plain vs with class weights vs on an oversampled file.
# ~25 min on one thread of a 2-core CPU.
#   bash examples/recipes/imbalance_demo.sh [OUT_DIR]      # default out/imbalance
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/imbalance}
mkdir -p "$out"
python - "$out" <<'PY'
import json, random, sys
out = sys.argv[1]
rng = random.Random(0)
rows = [json.loads(l) for l in open("examples/demo/pool.jsonl")]
rows = [dict(r, answer=r["output"]) for r in rows if r["category"] in ("rectangles", "which_is_heavier")]
yes = [r for r in rows if r["output"] == "Yes"]; no = [r for r in rows if r["output"] == "No"]
rng.shuffle(yes); rng.shuffle(no)
train = yes[40:65] + no[40:]
rng.shuffle(train)
with open(f"{out}/train.jsonl", "w") as f: f.writelines(json.dumps(r) + "\n" for r in train)
with open(f"{out}/eval.jsonl", "w") as f: f.writelines(json.dumps(r) + "\n" for r in yes[:40] + no[:40])
PY
thresher balance "$out/train.jsonl" --by answer --strategy oversample -o "$out/oversampled.jsonl" --overwrite
thresher compare "$out/train.jsonl" --eval "$out/eval.jsonl" -o "$out/compare" \
  --arms "full,full+class-weights,$out/oversampled.jsonl" --seeds 2 --label-field answer \
  --max-steps 20 --batch-size 8 --max-length 128 --threads 1 --overwrite
