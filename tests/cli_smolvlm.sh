#!/usr/bin/env bash
# SmolVLM end to end through the CLI: the fixture from its PNG (prompt ids and greedy ids
# exact, logits within 1e-3 * max(1, max|ref|)), image errors, and the trained scene model's
# answers against the reference answers on the dev set (agreement >= 98 %; the reference was
# generated with max_new_tokens = 16, so -n 16). Under sanitizers every 6th item is used.
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/smolvlm-tiny"
if [ ! -f "$F/ref_outputs.json" ]; then echo "SKIP: $F not found"; exit 77; fi
BIN="$EVLM_BIN"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

prompt=$(python3 -c "import json;print(json.load(open('$F/ref_outputs.json'))['prompt'], end='')")
"$BIN" run -m "$F" --raw --image "$F/ref_image.png" -p "$prompt" -n 16 --json > "$tmp/run.json" || bad "run failed"
python3 - "$tmp/run.json" "$F/ref_outputs.json" <<'PY' && ok || bad "fixture ids"
import json, sys
o, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert o["prompt_ids"] == r["input_ids"], "prompt ids"
assert o["output_ids"] == r["greedy_ids"], "greedy ids"
assert o["n_image_tokens"] == 80 and o["image_ms"] > 0
PY
"$BIN" logits -m "$F" --raw --image "$F/ref_image.png" -p "$prompt" --out "$tmp/l.bin" >/dev/null || bad "logits failed"
python3 - "$tmp/l.bin" "$F/ref_outputs.safetensors" <<'PY' && ok || bad "fixture logits"
import array, json, struct, sys
ours = array.array("f", open(sys.argv[1], "rb").read())
f = open(sys.argv[2], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
a, b = h["logits"]["data_offsets"]; ref = array.array("f", d[a:b])
assert len(ours) == len(ref)
diff = max(abs(x - y) for x, y in zip(ours, ref)); tol = 1e-3 * max(1.0, max(abs(x) for x in ref))
print("logits: max |ours - ref| = %.3g (tolerance %.3g)" % (diff, tol))
assert diff <= tol
PY

# --image-splitting off: one tile (16 image tokens instead of 2 x 2 tiles + global = 80)
"$BIN" run -m "$F" --raw --image "$F/ref_image.png" -p "$prompt" -n 4 --image-splitting off --json > "$tmp/one.json" || bad "run --image-splitting off failed"
python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); assert o["n_image_tokens"] == 16, o["n_image_tokens"]' "$tmp/one.json" && ok || bad "--image-splitting off: image tokens"

# errors: marker count, bad images, images on a text-only model
err() { # pattern, command...
  local pat=$1; shift
  local e rc; e=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$e" | wc -l)" -eq 1 ] && printf '%s' "$e" | grep -q -- "$pat"; then ok; else bad "rc=$rc '$e' (want $pat)"; fi
}
err "2 <image> markers but 1 image" "$BIN" run -m "$F" --raw --image "$F/ref_image.png" -p "<image><image>hi"
err "0 <image> markers but 1 image" "$BIN" run -m "$F" --raw --image "$F/ref_image.png" -p "hi"
err "1 <image> marker but 0 images" "$BIN" run -m "$F" --raw -p "<image>hi"
head -c 300 "$F/ref_image.png" > "$tmp/trunc.png"
err "trunc.png" "$BIN" run -m "$F" --raw --image "$tmp/trunc.png" -p "<image>hi"
echo "not an image" > "$tmp/x.png"
err "x.png" "$BIN" run -m "$F" --raw --image "$tmp/x.png" -p "<image>hi"
err "no-such.png" "$BIN" run -m "$F" --raw --image "$tmp/no-such.png" -p "<image>hi"
err "image-splitting takes on or off" "$BIN" run -m "$F" --raw --image "$F/ref_image.png" -p "<image>hi" --image-splitting maybe
err "no vision tower" "$BIN" run -m "$S/fixtures/llama-tiny" --raw --image "$F/ref_image.png" -p "<image>hi"

# bench: the run --json keys plus model_bytes, with and without an image
for args in "" "--image $F/ref_image.png"; do
  "$BIN" bench -m "$F" $args -p 8 -n 4 -r 2 --json | tail -1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in ("image_ms", "prefill_tok_s", "ttft_ms", "decode_tok_s", "peak_rss_mb", "cpu_util", "model_bytes"):
    assert k in d and d[k] >= 0, k
assert d["prefill_tok_s"] > 0 and d["decode_tok_s"] > 0 and d["model_bytes"] > 0
assert d["n_gen"] == 4 and (d["n_image_tokens"] == 80) == (len(sys.argv) > 1)
' $args && ok || bad "bench $args"
done
err "bench takes at most one --image" "$BIN" bench -m "$F" --image "$F/ref_image.png" --image "$F/ref_image.png"

# synth: random weights for the fixture's config load and run, whole VLM and --text-only
"$BIN" synth --config "$F/config.json" -o "$tmp/syn" --dtype f16 2>/dev/null && ok || bad "synth vlm"
"$BIN" run -m "$tmp/syn" --raw --image "$F/ref_image.png" -p "<image>hi" -n 3 --json >/dev/null && ok || bad "run synth vlm"
"$BIN" synth --config "$F/config.json" -o "$tmp/syn-text" --text-only 2>/dev/null && ok || bad "synth text"
"$BIN" info -m "$tmp/syn-text" | grep -q "LlamaForCausalLM" && ok || bad "synth text config"
"$BIN" run -m "$tmp/syn-text" --raw -p "hi" -n 3 >/dev/null && ok || bad "run synth text"
# a vocabulary padded beyond the tokenizer (Qwen2 style): ids without a token decode to nothing
cat > "$tmp/pad.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
 "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 4096, "tie_word_embeddings": false}
JSON
"$BIN" synth --config "$tmp/pad.json" -o "$tmp/pad" 2>/dev/null && "$BIN" run -m "$tmp/pad" --raw -p "hi" -n 40 --json |
  python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["n_gen"] == 40 and any(i >= 256 for i in d["output_ids"])' && ok || bad "padded vocabulary"
err "must be bf16, f16 or f32" "$BIN" synth --config "$F/config.json" -o "$tmp/x" --dtype q9
err "config.json" "$BIN" synth --config "$tmp/nope/config.json" -o "$tmp/x"

# the trained scene model against its reference answers
M="$S/models/scenes-vlm"; D="$S/datasets/scenes-dev"
if [ -f "$M/model.safetensors" ] && [ -f "$D/dev.jsonl" ]; then
  step=1; [ "${EVLM_SANITIZED:-0}" = 1 ] && step=6
  python3 - "$D" "$step" "$tmp" <<'PY'
import json, sys
d, step, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(d + "/dev.jsonl").read().splitlines()[::step]
with open(tmp + "/dev.jsonl", "w") as f:
    for l in lines:
        item = json.loads(l); item["image"] = d + "/" + item["image"]; f.write(json.dumps(item) + "\n")
PY
  "$BIN" eval -m "$M" --dataset "$tmp/dev.jsonl" -n 16 -v --json 2>"$tmp/eval.log" >"$tmp/eval.json" || bad "eval failed"
  python3 - "$tmp/eval.log" "$D/predictions.jsonl" "$tmp/eval.json" <<'PY' && ok || bad "scenes agreement"
import json, re, sys
ref = {(p["image"], p["question"]): p for p in map(json.loads, open(sys.argv[2]))}
n = agree = ours_ok = ref_ok = 0
for l in open(sys.argv[1]):
    m = re.match(r'(ok  |FAIL) (\S+) \| (.*) \| got "(.*)" want "(.*)"$', l.rstrip("\n"))
    if not m: continue
    p = ref[(m.group(2).split("/")[-1], m.group(3))]
    n += 1; agree += m.group(4) == p["hf_answer"].strip()
    ours_ok += m.group(1) == "ok  "; ref_ok += p["hf_answer"].strip() == p["answer"].strip()
summary = json.load(open(sys.argv[3]))
print("scenes-dev: %d items, agreement %.1f %%, accuracy %.1f %% (reference %.1f %%)" %
      (n, 100 * agree / n, 100 * ours_ok / n, 100 * ref_ok / n))
assert n > 0 and agree >= 0.98 * n
assert abs(ours_ok - ref_ok) <= 0.01 * n
assert abs(summary["accuracy"] - ours_ok / n) < 1e-9
PY
else
  echo "SKIP: scenes model or dataset not found"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
