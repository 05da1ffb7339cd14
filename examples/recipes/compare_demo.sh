#!/usr/bin/env bash
# The documented `thresher compare` run (README, "Evaluate"): does fine-tuning
# pay, and does a task-aware selection beat random data of the same size?
#
# The task, made from the demo pool: which topic is a message about (trivia,
# emotion, coding, conversations, ai; 862 rows), a label-style task where the
# untuned model is weak. Arms: full, random@20%, stratified@20% (random within
# each label), longest@20% (the length baseline), the main recipe's task-aware
# selection (mixture over the label with DEITA inside) at 20%, and the untuned
# base; LoRA on the bundled SmolLM2-135M-Instruct, equal compute per run, 3
# seeds, a stratified 15% holdout. ~15 min on a 2-core CPU; a few on a GPU.
#
#   bash examples/recipes/compare_demo.sh [OUT_DIR]      # default out/demo
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/demo}
mkdir -p "$out"

python - "$out/topic.jsonl" <<'PY'
import json, sys
topics = ["trivia", "emotion", "coding", "conversations", "ai"]
ask = "Which topic is this message about? Answer with one word: " + ", ".join(topics[:-1]) + " or " + topics[-1] + "."
with open("examples/demo/pool.jsonl") as src, open(sys.argv[1], "w") as dst:
    for line in src:
        row = json.loads(line)
        if row["category"] in topics:
            text = (row["instruction"] + "\n" + row["input"]).strip()
            dst.write(json.dumps({"id": row["id"], "instruction": ask, "input": text, "output": row["category"],
                                  "category": row["category"]}) + "\n")
PY

# the main recipe's selector, task-aware, at 20% of the task pool
thresher select "$out/topic.jsonl" -m mixture --by category --proportions temperature \
  --param 'within={deita: {threshold: 0.9}}' --fraction 0.2 --min-per-category 5 --seed 0 -o "$out/topic_mixture.jsonl" --overwrite -q

thresher compare "$out/topic.jsonl" -o "$out/compare" \
  --arms "full,random@20%,stratified@20%,longest@20%,$out/topic_mixture.jsonl,base" \
  --seeds 3 --label-field category --holdout 0.15 --overwrite
thresher report "$out/compare" -o "$out/compare_report.html" --overwrite
echo "compare: $out/compare/results.json, table $out/compare/table.txt, report $out/compare_report.html"
