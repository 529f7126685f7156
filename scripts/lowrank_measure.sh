#!/usr/bin/env bash
# The "Low rank" figures of docs/COMPRESSION.md (docs/compression/lowrank.md): on the scene VLM,
# SVD vs ASVD vs SVD-LLM at --ratio 0.8 of the decoder matrices, and q4_0 GPTQ alone vs
# + --lowrank-bpw 0.25 / 0.5 (with the default q8_0 embedding / head, and with the embedding /
# head kept bf16 so that the decoder matrices' error is what the KL sees); KL over
# fixtures/corpus.txt (evlm quality), accuracy on scenes-dev (evlm eval). Calibration: 64
# scenes-train items spread over the three scenarios (not the dev set). Usage:
#   scripts/lowrank_measure.sh [OUT_DIR]      (build/release/evlm; ../shared)
set -eu
B=${EVLM_BIN:-build/release/evlm}; S=${EVLM_SHARED:-../shared}; O=${1:-build/lowrank}
M=$S/models/scenes-vlm; D=$S/datasets/scenes-dev/dev.jsonl; C=$S/fixtures/corpus.txt
mkdir -p "$O"
python3 - "$S/datasets/scenes-train" "$O/calib64.jsonl" <<'PY'
import json, sys
d, out = sys.argv[1], sys.argv[2]
lines = open(d + "/train.jsonl").read().splitlines()
with open(out, "w") as f:
    for l in lines[::len(lines) // 64][:64]:
        item = json.loads(l); item["image"] = d + "/" + item["image"]; f.write(json.dumps(item) + "\n")
PY
cal=(--calib "$O/calib64.jsonl" --calib-items 64 -t 2 -q)
measure() { # name file
  "$B" quality -m "$M" -q "$2" --text "$C" -t 2 > "$O/qual-$1.txt"
  "$B" eval -m "$2" --dataset "$D" -t 2 > "$O/eval-$1.txt"
  printf '%s: %s; %s\n' "$1" "$(grep -E 'KL divergence mean' "$O/qual-$1.txt")" "$(grep overall "$O/eval-$1.txt")"
}
for m in svd asvd svd-llm; do
  "$B" lowrank -m "$M" -o "$O/r08-$m.gguf" --ratio 0.8 --method $m "${cal[@]}" | tail -1
  measure "r08-$m" "$O/r08-$m.gguf"
done
for keep in "" "--keep *embed_tokens*=bf16"; do
  for bpw in 0 0.25 0.5; do
    n="q4-gptq${keep:+-keep}-$bpw"
    "$B" quantize -m "$M" -o "$O/$n.gguf" --type q4_0 --method gptq $keep --lowrank-bpw $bpw "${cal[@]}" | tail -1
    measure "$n" "$O/$n.gguf"
  done
done
