#!/usr/bin/env bash
# The compressor's quality table on the real model: method x bits x group -> bits/weight, size,
# time, perplexity on TinyStories (the shared README's 300-document protocol) and on WikiText-2
# (first 300 lines as documents). Calibration: 128 TinyStories documents after the first 300
# (never evaluated). Usage: bench/scripts/quality_table.sh [build/tensorzip] [../shared/models] [all|tuned]
# ("tuned": only the end-to-end tuning block, ~35 minutes on 2 cores).
set -euo pipefail
tz="${1:-build/tensorzip}"
models="${2:-../shared/models}"
m="$models/stories260K/stories260K.bin"
ts="$models/eval-text/tinystories_valid_head.txt"
wt="$models/eval-text/wikitext2_test.raw"
section="${3:-all}"
out=$(mktemp -d)
ppl() {  # model file -> "tinystories wikitext"
  local a b
  a=$($tz eval -m "$1" --text "$ts" --split '\n\n' --max-docs 300 --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/')
  b=$($tz eval -m "$1" --text "$wt" --split '\r\n' --max-docs 300 --json | sed 's/.*"perplexity":\([0-9.e+-]*\).*/\1/')
  echo "$a $b"
}
echo "| method | bits | group | extras | bits/w | file KiB | time s | ppl TinyStories | ppl WikiText-2 |"
echo "|---|---:|---:|---|---:|---:|---:|---:|---:|"
read -r a b < <(ppl "$m")
echo "| f32 | 32 | - | - | 32 | $(( $(stat -c %s "$m") / 1024 )) | - | $a | $b |"
row() {  # method bits group extras...
  docs=128 row_docs "$@"
}
row_docs() {  # $docs calibration documents; method bits group extras...
  local method=$1 bits=$2 group=$3; shift 3
  local f="$out/m.tz"
  local j
  j=$($tz compress "$m" -o "$f" --method "$method" --bits "$bits" --group "$group" --asym --calib "$ts" --calib-skip 300 --calib-docs "$docs" "$@" --json)
  local bpw secs
  bpw=$(echo "$j" | python3 -c 'import json, sys; print(json.load(sys.stdin)["bits_per_weight"])')
  secs=$(echo "$j" | python3 -c 'import json, sys; print(json.load(sys.stdin)["seconds"])')
  read -r a b < <(ppl "$f")
  local extras="${*:-none}"
  [ "$docs" = 128 ] || extras="$extras, $docs calibration docs"
  printf "| %s | %s | %s | %s | %.3f | %d | %.2f | %.4f | %.4f |\n" "$method" "$bits" "$group" "$extras" "$bpw" $(( $(stat -c %s "$f") / 1024 )) "$secs" "$a" "$b"
}
if [ "$section" = all ]; then
for bits in 4 3 2; do
  for method in rtn awq gptq; do
    for group in 32 64; do row $method $bits $group; done
  done
  row rtn "$bits" 32 --clip
  row awq "$bits" 32 --no-fold
  row gptq "$bits" 32 --act-order
  row gptq "$bits" 32 --lowrank 8
  row gptq "$bits" 32 --outliers 4
done
row ternary 2 32
row gptq 2 32 --lowrank 8 --lowrank-method lqlora
row gptq 4 32 --target-bpw 4.77 --candidate-bits 2,3,4,5,6,8
row gptq 4 32 --target-bpw 5.2 --candidate-bits 3,4,5,6,8
fi
# End-to-end tuning (docs/compress.md): 2,000 calibration documents, 4 epochs, codes and scales.
for seed in 1 2 3; do
  docs=2000 row_docs gptq 4 32 --true-sequential --clip --tune-epochs 4 --tune-codes --tune-seed $seed
  docs=2000 row_docs awq 4 32 --tune-epochs 4 --tune-codes --tune-seed $seed
done
docs=2000 row_docs gptq 4 32 --true-sequential
docs=2000 row_docs gptq 4 32 --true-sequential --clip
docs=2000 row_docs gptq 4 32 --true-sequential --tune-epochs 4 --tune-codes
docs=2000 row_docs awq 4 32 --clip --tune-epochs 4 --tune-codes
docs=2000 row_docs rtn 4 32 --tune-epochs 4 --tune-codes
docs=2000 row_docs rtn 4 32 --clip --tune-epochs 4 --tune-codes
docs=2000 row_docs gptq 3 32 --true-sequential --tune-epochs 4 --tune-codes
docs=2000 row_docs gptq 3 32 --true-sequential --clip --tune-epochs 4 --tune-codes
docs=2000 row_docs gptq 2 32 --clip --tune-epochs 4 --tune-codes
docs=2000 row_docs gptq 2 32 --clip --lowrank 8 --tune-epochs 4 --tune-codes
rm -rf "$out"
