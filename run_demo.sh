#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the bundled demo pool:
# a stratified probability sample checked against its pool, then a selection
# recipe (dedup -> quality -> DEITA) with its trace. Outputs go to out/.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
. .venv/bin/activate
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
thresher sample examples/demo/pool.jsonl --design stratified --by category --allocation proportional \
  --min-per-stratum 5 --n 1000 --seed 0 -o "$OUT/stratified.jsonl" --overwrite
thresher check "$OUT/stratified.jsonl" --against examples/demo/pool.jsonl --by category
thresher run examples/recipes/dedup_quality_deita.yaml --overwrite
echo "sample: $OUT/stratified.jsonl (+ .manifest.json); recipe: out/recipes/deita_1k.jsonl (+ .manifest.json with the trace)"
