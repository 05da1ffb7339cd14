#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the bundled demo pool: profile it,
# featurize (cached), run the selection recipe (exact + near dedup -> quality ->
# DEITA to 1,000 rows), write the subset + manifest + trace and an HTML report.
# `./run_demo.sh --evaluate` adds the LoRA evaluation (compare arms; ~30 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
. .venv/bin/activate
OUT=out/demo
mkdir -p "$OUT"
thresher inspect examples/demo/pool.jsonl
thresher featurize examples/demo/pool.jsonl --features text,quality,exact_dup,near_dup,embed_static
thresher run examples/recipes/main.yaml --overwrite
thresher sample examples/demo/pool.jsonl --design stratified --by category --allocation proportional \
  --min-per-stratum 5 --n 1000 --seed 0 -o "$OUT/stratified.jsonl" --overwrite --report "$OUT/stratified.html"
if [ "${1:-}" = "--evaluate" ]; then
  bash examples/recipes/compare_demo.sh "$OUT"
fi
echo
echo "selected subset: $OUT/selected.jsonl (+ selected.manifest.json with the trace, selected.removed.jsonl)"
echo "report:          $OUT/report.html (figures in $OUT/report_figures/)"
echo "stratified sample for comparison: $OUT/stratified.jsonl, report $OUT/stratified.html"
