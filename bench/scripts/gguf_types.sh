#!/usr/bin/env bash
# The GGUF weight-type benchmark (docs/benchmarks.md, "GGUF weight types"): a LLaMA-2-7B-shaped
# model with 2 layers written by `tensorzip compress --synthetic` in each type, then decode and
# prefill tokens/s (bench model, 1 and 2 threads), resident memory (run --json) and the DRAM
# bandwidth of this machine (bench membw) for the roofline, all in one run. With LLAMA_BENCH set
# to a llama-bench binary you built yourself (llama.cpp, CPU-only Release; not part of this
# project), it runs beside tensorzip on the same file, alternating, two rounds each.
# Usage: [LLAMA_BENCH=/path/llama-bench] bench/scripts/gguf_types.sh [TENSORZIP] [TYPES]  (~10 min; ~30 with llama-bench)
set -euo pipefail
tz="${1:-build/tensorzip}"
types="${2:-q4_0 q4_k_m q5_k_m q6_k q8_0 iq4_xs q2_k}"
tok="${TENSORZIP_TOKENIZER:-../shared/models/llama2-tokenizer/tokenizer.bin}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$tz info | sed -n 2,5p
$tz bench membw --mib 1024 --threads 1,2
for t in $types; do
  $tz compress --synthetic 7b:2 -z "$tok" -o "$work/m.$t.gguf" --exclude 'layers.*' --gguf-type "$t" >/dev/null
  size=$(stat -c %s "$work/m.$t.gguf")
  rss=$($tz run -m "$work/m.$t.gguf" -n 8 --temp 0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_mib"])')
  echo "== $t: file $((size >> 20)) MiB, peak RSS (run -n 8) $rss MiB"
  for round in 1 2; do
    $tz bench model -m "$work/m.$t.gguf" --formats native --threads 1,2 --prefill 64 --decode 16 | sed -n '/^format/,$p'
    if [ -n "${LLAMA_BENCH:-}" ]; then "$LLAMA_BENCH" -m "$work/m.$t.gguf" -p 64 -n 16 -t 1,2 -r 3 2>&1 | grep '^| llama'; fi
    [ -n "${LLAMA_BENCH:-}" ] || break
  done
  rm -f "$work/m.$t.gguf"
done
