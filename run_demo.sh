#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the bundled demo pool.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
. .venv/bin/activate
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
thresher sample examples/demo/pool.jsonl --design stratified --by category --allocation proportional \
  --min-per-stratum 5 --n 1000 --seed 0 -o "$OUT/stratified.jsonl" --overwrite
thresher check "$OUT/stratified.jsonl" --against examples/demo/pool.jsonl --by category
echo "subset: $OUT/stratified.jsonl   manifest: $OUT/stratified.manifest.json"
