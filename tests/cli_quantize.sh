#!/usr/bin/env bash
# evlm quantize / quality / GGUF through the CLI on the bundled scene VLM: a q8_0 file (int8
# activations) answers the scenes-dev questions as accurately as bf16 and reports a tiny KL;
# q4_0 with GPTQ and a mixed budget write valid files within their size; run / info / bench /
# eval take -m FILE.gguf; quality of a model against itself is exactly 0 (text and dev answers); bad arguments,
# truncated GGUF files and an unwritable output fail with one clear line and leave no file.
# Under sanitizers every 6th dev item is used.
set -u
S="${EVLM_SHARED:-}"
M="$EVLM_SRC/models/scenes-vlm"; D="$S/datasets/scenes-dev"
if [ ! -f "$D/dev.jsonl" ]; then echo "SKIP: $D not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"
step=1; [ "${EVLM_SANITIZED:-0}" = 1 ] && step=6
python3 - "$D" "$step" "$tmp" <<'PY'
import json, sys
d, step, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(d + "/dev.jsonl").read().splitlines()[::step]
with open(tmp + "/dev.jsonl", "w") as f:
    for l in lines:
        item = json.loads(l); item["image"] = d + "/" + item["image"]; f.write(json.dumps(item) + "\n")
PY

# q8_0: size, KL, accuracy equal to bf16
"$BIN" quantize -m "$M" -o "$tmp/q8.gguf" --type q8_0 --calib "$tmp/dev.jsonl" --calib-items 4 --json -q > "$tmp/q8.json" || bad "quantize q8_0"
python3 - "$tmp/q8.json" <<'PY' && ok || bad "q8_0 report"
import json, sys
r = json.load(open(sys.argv[1]))
print("q8_0: %.1f MB, %.2f bpw, KL %.5f, vision cosine %.5f" % (r["out_bytes"] / 1e6, r["bpw"], r["kl_mean"], r["vision_cos"]))
assert 8 < r["bpw"] < 9 and r["kl_mean"] < 0.002 and r["vision_cos"] > 0.999
assert any(t["type"] == "Q8_0" and "q_proj" in t["name"] for t in r["tensors"])
PY
"$BIN" eval -m "$M" --dataset "$tmp/dev.jsonl" -n 16 --json > "$tmp/e16.json" 2>/dev/null || bad "eval bf16"
"$BIN" eval -m "$tmp/q8.gguf" --dataset "$tmp/dev.jsonl" -n 16 --json > "$tmp/e8.json" 2>/dev/null || bad "eval q8_0"
python3 - "$tmp/e16.json" "$tmp/e8.json" <<'PY' && ok || bad "q8_0 accuracy"
import json, sys
a, b = (json.load(open(p))["accuracy"] for p in sys.argv[1:3])
print("scenes-dev accuracy: bf16 %.3f, q8_0 %.3f" % (a, b))
assert b >= a
PY
"$BIN" run -m "$tmp/q8.gguf" --image "$M/samples/car_030.png" -p "Describe the image." -n 16 --json | python3 -c '
import json, sys; d = json.load(sys.stdin); assert "license plate" in d["text"], d["text"]' && ok || bad "run q8_0"
"$BIN" info -m "$tmp/q8.gguf" | grep -q "Idefics3ForConditionalGeneration" && ok || bad "info gguf"
"$BIN" bench -m "$tmp/q8.gguf" -p 8 -n 4 -r 1 --json | tail -1 | python3 -c '
import json, sys; d = json.load(sys.stdin); assert d["decode_tok_s"] > 0 and d["model_bytes"] > 0' && ok || bad "bench gguf"
"$BIN" quality -m "$tmp/q8.gguf" -q "$tmp/q8.gguf" --text "$S/fixtures/corpus.txt" --max-tokens 300 --json 2>/dev/null | python3 -c '
import json, sys; d = json.load(sys.stdin); assert d["kl_mean"] == 0 and d["top1_agreement"] == 1 and d["ppl_ref"] == d["ppl_quant"]' && ok || bad "quality self"
# KL over the dev answers as the models see them: 0 against itself, small but not 0 for q8_0
head -n 6 "$tmp/dev.jsonl" > "$tmp/dev6.jsonl"
"$BIN" quality -m "$tmp/q8.gguf" -q "$tmp/q8.gguf" --dataset "$tmp/dev6.jsonl" --json 2>/dev/null | python3 -c '
import json, sys; d = json.load(sys.stdin)
assert d["answer_kl_mean"] == 0 and d["answer_top1_agreement"] == 1 and d["n_items"] == 6
assert d["answer_n_tokens"] >= 2 * 6, d  # each answer turn: at least one token and the end of turn' && ok || bad "quality answers self"
"$BIN" quality -m "$M" -q "$tmp/q8.gguf" --dataset "$tmp/dev6.jsonl" --json 2>/dev/null | python3 -c '
import json, sys; d = json.load(sys.stdin); print("q8_0 answer KL %.6f" % d["answer_kl_mean"])
assert 0 < d["answer_kl_mean"] < 0.002 and d["answer_top1_agreement"] >= 0.95' && ok || bad "quality answers q8_0"

# q4_0 GPTQ within 0.32x of bf16; a mixed budget
if [ "${EVLM_SANITIZED:-0}" != 1 ]; then
  "$BIN" quantize -m "$M" -o "$tmp/q4.gguf" --type q4_0 --method gptq --vision q4_0 --calib "$tmp/dev.jsonl" --calib-items 8 --json -q > "$tmp/q4.json" || bad "quantize q4_0 gptq"
  python3 - "$tmp/q4.json" "$M/model.safetensors" <<'PY' && ok || bad "q4_0 size"
import json, os, sys
r = json.load(open(sys.argv[1])); src = os.path.getsize(sys.argv[2])
print("q4_0 gptq: %.2fx the bf16 file, KL %.4f" % (r["out_bytes"] / src, r["kl_mean"]))
assert r["out_bytes"] <= 0.32 * src
assert any(t["method"] == "gptq" for t in r["tensors"])
PY
  "$BIN" quantize -m "$M" -o "$tmp/mix.gguf" --type q4_0 --target-bpw 6 --calib "$tmp/dev.jsonl" --calib-items 4 --json -q > "$tmp/mix.json" || bad "quantize mixed"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["bpw"] <= 6.0 and any(t["type"]=="Q8_0" for t in r["tensors"])' "$tmp/mix.json" && ok || bad "mixed budget"
fi

# errors
err "no --type given" "$BIN" quantize -m "$M" -o "$tmp/x.gguf"
err "--type takes" "$BIN" quantize -m "$M" -o "$tmp/x.gguf" --type q3_k
err "needs calibration data" "$BIN" quantize -m "$M" -o "$tmp/x.gguf" --type q4_0 --method awq
err "cannot be stored as" "$BIN" quantize -m "$M" -o "$tmp/x.gguf" --type q4_0 --keep "*norm.weight=q4_0" -q
err "nosuchdir" "$BIN" quantize -m "$M" -o "$tmp/nosuchdir/x.gguf" --type q8_0 -q
[ ! -e "$tmp/x.gguf" ] && [ -z "$(ls "$tmp" | grep -F '.tmp.')" ] && ok || bad "a failed quantize left a file behind"
head -c 5000 "$tmp/q8.gguf" > "$tmp/trunc.gguf"
err "trunc.gguf" "$BIN" run -m "$tmp/trunc.gguf" -p hi
printf 'GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\x7f' > "$tmp/huge.gguf"
err "huge.gguf" "$BIN" info -m "$tmp/huge.gguf"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
