#!/usr/bin/env bash
# GGUF export checked by llama.cpp itself (issue 25, docs/compress.md "GGUF export"): each model is
# converted by `tensorzip convert` into every GGUF type tensorzip writes, then llama.cpp's
# llama-perplexity (a binary you built yourself, CPU-only Release; not part of this project) and
# `tensorzip eval --chunks` (the same protocol) score the same file on the same text.
# Usage: LLAMA_PERPLEXITY=/path/llama-perplexity bench/scripts/gguf_export_check.sh [TENSORZIP] [TEXT] [CTX] [MODELS...]
set -euo pipefail
tz="${1:-build/tensorzip}"
text="${2:-../shared/models/eval-text/tinystories_valid_head.txt}"
ctx="${3:-128}"
shift $(( $# < 3 ? $# : 3 ))
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(../shared/models/stories260K/stories260K.bin ../shared/fixtures/arch/llama.gguf)
types="${TYPES:-f16 bf16 q8_0 q5_1 q5_0 q4_1 q4_0 iq4_nl q6_k q5_k q5_k_m q4_k q4_k_m q3_k iq4_xs q2_k tq2_0 tq1_0}"
: "${LLAMA_PERPLEXITY:?set LLAMA_PERPLEXITY to a llama-perplexity binary}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$tz info | sed -n 2,3p
echo "| model | type | bits/weight | fallbacks | tensorzip PPL | llama.cpp PPL | difference |"
echo "|---|---|---:|---:|---:|---:|---:|"
for m in "${models[@]}"; do
  for t in $types; do
    f="$work/m.$t.gguf"
    conv=$($tz convert -m "$m" -o "$f" --type "$t" --json)
    bpw=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.2f %d" % (j["bits_per_weight"], j["fallbacks"]))' "$conv")
    ours=$($tz eval -m "$f" -f "$text" -c "$ctx" --chunks -1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])')
    theirs=$("$LLAMA_PERPLEXITY" -m "$f" -f "$text" -c "$ctx" -t "$(nproc)" 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    python3 -c 'import sys; m,t,b,f,o,l=sys.argv[1:]; print("| %s | %s | %s | %s | %.4f | %s | %+.3f %% |" % (m,t,b,f,float(o),l,100*(float(o)/float(l)-1) if l else float("nan")))' \
      "$(basename "$m")" "$t" ${bpw% *} ${bpw#* } "$ours" "${theirs:-failed}"
  done
done
