#!/usr/bin/env bash
# make demo: the main job on the bundled model. Converts the bundled llama2.c model into a
# Hugging Face folder, describes it, and answers two prompts greedily with timings.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/evlm
SRC=models/aidreams260K
OUT=build/models/aidreams260K
mkdir -p "$(dirname "$OUT")"
"$BIN" convert --from llama2c "$SRC/aidreams260K.bin" "$SRC/tok512.bin" "$OUT" 2>/dev/null ||
  "$BIN" convert --from llama2c "$SRC/aidreams260K.bin" "$SRC/tok512.bin" "$OUT"
echo "== model"
"$BIN" info -m "$OUT" | sed -n '1,4p'
for p in "I dreamed" "The machine"; do
  echo
  echo "== evlm run -m $OUT --raw -p \"$p\" -n 60"
  "$BIN" run -m "$OUT" --raw -p "$p" -n 60 --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sys.argv[1] + d["text"])
print()
print("| prompt tokens | generated | TTFT ms | prefill tok/s | decode tok/s | peak RSS MB | CPU util |")
print("|---:|---:|---:|---:|---:|---:|---:|")
print("| %d | %d | %.2f | %.0f | %.0f | %.1f | %.2f |" % (d["n_prompt"], d["n_gen"], d["ttft_ms"],
      d["prefill_tok_s"], d["decode_tok_s"], d["peak_rss_mb"], d["cpu_util"]))' "$p"
done
