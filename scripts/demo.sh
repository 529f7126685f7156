#!/usr/bin/env bash
# make demo: the main job on the bundled models.
#  1. the trained in-car scene VLM (models/scenes-vlm, SmolVLM architecture): one question of
#     each scene type on a bundled sample image, with the timings an in-car team reads;
#  2. the same model compressed to int8 and int4 GGUF files (evlm quantize), asked again;
#  3. the real trained text model aidreams260K (llama2.c format), converted and run greedily.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/release/evlm
VLM=models/scenes-vlm
report() { # prompt label; reads run --json on stdin
  python3 -c '
import json, sys
d = json.load(sys.stdin)
print("  answer: %s" % d["text"].strip())
print("  | image ms | image tokens | prompt tokens | TTFT ms | prefill tok/s | decode tok/s | peak RSS MB | CPU util |")
print("  |---:|---:|---:|---:|---:|---:|---:|---:|")
print("  | %.1f | %d | %d | %.1f | %.0f | %.1f | %.1f | %.2f |" % (d.get("image_ms", 0), d.get("n_image_tokens", 0),
      d["n_prompt"], d["ttft_ms"], d["prefill_tok_s"], d["decode_tok_s"], d["peak_rss_mb"], d["cpu_util"]))'
}
echo "== scenes-vlm: $("$BIN" info -m "$VLM" | sed -n 's/^parameters: *//p')"
for item in "fatigue_000.png|Is the driver drowsy?" "car_030.png|What is the license plate number?" \
            "child_060.png|What emotion does the child show?"; do
  img=${item%%|*}; q=${item#*|}
  echo
  echo "\$ evlm run -m $VLM --image $VLM/samples/$img -p \"$q\""
  "$BIN" run -m "$VLM" --image "$VLM/samples/$img" -p "$q" -n 16 --json | report
done

mkdir -p build/models
echo
echo "== compression: the same questions, int8 (q8_0) and int4 (q4_0, vision q4_0) with int8 activations"
echo "  | weights | file MB | answers | TTFT ms (mean) | decode tok/s (mean) |"
echo "  |---|---:|---|---:|---:|"
for t in bf16 q8_0 q4_0; do
  M="$VLM"
  if [ "$t" != bf16 ]; then
    M=build/models/scenes-vlm-$t.gguf
    "$BIN" quantize -m "$VLM" -o "$M" --type $t --vision $t -q >/dev/null
  fi
  for item in "fatigue_000.png|Is the driver drowsy?" "car_030.png|What is the license plate number?" \
              "child_060.png|What emotion does the child show?"; do
    img=${item%%|*}; q=${item#*|}
    "$BIN" run -m "$M" --image "$VLM/samples/$img" -p "$q" -n 16 --json
  done | python3 -c '
import json, os, sys
rows = [json.loads(l) for l in sys.stdin]
path = sys.argv[2]
mb = os.path.getsize(path) / 1e6 if os.path.isfile(path) else sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 1e6
print("  | %s | %.1f | %s | %.1f | %.0f |" % (sys.argv[1], mb, " / ".join(r["text"].strip() for r in rows),
      sum(r["ttft_ms"] for r in rows) / len(rows), sum(r["decode_tok_s"] for r in rows) / len(rows)))' "$t" "$M"
done

SRC=models/aidreams260K
OUT=build/models/aidreams260K
mkdir -p "$(dirname "$OUT")"
"$BIN" convert --from llama2c "$SRC/aidreams260K.bin" "$SRC/tok512.bin" "$OUT" 2>/dev/null ||
  "$BIN" convert --from llama2c "$SRC/aidreams260K.bin" "$SRC/tok512.bin" "$OUT"
echo
echo "\$ evlm run -m $OUT --raw -p \"I dreamed\" -n 60   (llama2.c checkpoint, converted)"
"$BIN" run -m "$OUT" --raw -p "I dreamed" -n 60 --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("  I dreamed" + d["text"])
print("  TTFT %.2f ms, decode %.0f tok/s, peak RSS %.1f MB" % (d["ttft_ms"], d["decode_tok_s"], d["peak_rss_mb"]))'
