#!/usr/bin/env bash
# make bench: kernel throughput (checked against ref first) and end-to-end speed of the
# bundled model, as Markdown tables. The full benchmark of standard shapes (SmolLM2-135M,
# SmolVLM-256M, Qwen2-1.5B) arrives with `evlm bench` and `evlm synth`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "## Kernels ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), 1 thread)"
echo
build/release/bench_kernels
echo
OUT=build/models/aidreams260K
mkdir -p build/models
[ -f "$OUT/model.safetensors" ] || build/release/evlm convert --from llama2c \
  models/aidreams260K/aidreams260K.bin models/aidreams260K/tok512.bin "$OUT" 2>/dev/null
echo "## End to end: aidreams260K (F32), greedy, 100 tokens, median of 5"
echo
echo "| threads | TTFT ms | prefill tok/s | decode tok/s | peak RSS MB |"
echo "|---:|---:|---:|---:|---:|"
for t in 1 2; do
  for r in 1 2 3 4 5; do
    build/release/evlm run -m "$OUT" --raw -p "I dreamed" -n 100 -t $t --json
  done | python3 -c '
import json, sys, statistics as st
rows = [json.loads(l) for l in sys.stdin]
med = lambda k: st.median(r[k] for r in rows)
print("| %s | %.2f | %.0f | %.0f | %.1f |" % (sys.argv[1], med("ttft_ms"), med("prefill_tok_s"),
      med("decode_tok_s"), med("peak_rss_mb")))' $t
done
