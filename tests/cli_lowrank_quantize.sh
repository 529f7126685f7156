#!/usr/bin/env bash
# Low rank, then quantize (issue 16, item 6) through the CLI on llama-tiny: evlm lowrank writes a
# factored folder, evlm quantize rounds its factors like the other decoder matrices (q8_0, q4_0;
# a factor whose rows are not a multiple of 32 keeps its type) and the file runs through run /
# bench / quality; its logits stay close to the factored float model's (KL no more than twice
# the dense model's own q8_0 KL, plus a floor); the report's bits per weight are the bytes it
# lists; GPTQ of the factors (B's statistics through A) gives a lower KL than their round to
# nearest on the calibration text; AWQ, pruning and compensation on a factored model are refused
# with one line.
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/llama-tiny"; C="$S/fixtures/corpus.txt"
if [ ! -f "$F/config.json" ]; then echo "SKIP: $F not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"
kl() { "$BIN" quality -m "$1" -q "$2" --text "$C" --max-tokens 512 --json | tail -1; }

# factored at rank 32 (the MLP matrices: rank 32 does not pay for q / k / v / o) and by SVD-LLM
# at --ratio 0.6 (ranks that are not multiples of 32)
"$BIN" lowrank -m "$F" -o "$tmp/r32" --rank 32 -q --json > /dev/null || bad "lowrank --rank 32"
"$BIN" lowrank -m "$F" -o "$tmp/r06" --ratio 0.6 --method svd-llm --calib "$C" --calib-tokens 512 \
  -q --json > /dev/null || bad "lowrank --ratio 0.6"
"$BIN" quantize -m "$F" -o "$tmp/dense-q8.gguf" --type q8_0 -q --json > /dev/null \
  || bad "dense q8_0"
for t in q8_0 q4_0; do
  "$BIN" quantize -m "$tmp/r32" -o "$tmp/r32-$t.gguf" --type $t --keep '*embed_tokens*=bf16' \
    --calib "$C" --calib-tokens 256 -q --json > "$tmp/r32-$t.json" || bad "quantize factored $t"
  n=$("$BIN" info -m "$tmp/r32-$t.gguf" | sed -n 's/^parameters: *\([0-9]*\).*/\1/p')
  python3 - "$tmp/r32-$t.json" $t "$n" <<'PY' && ok || bad "report of factored $t"
import json, sys
r, t, el = json.load(open(sys.argv[1])), sys.argv[2].upper(), int(sys.argv[3])
f = [x for x in r["tensors"] if ".lowrank_" in x["name"]]
assert len(f) == 12 and all(x["type"] == t and x["method"] == "rtn" for x in f), f
assert all(0 <= x["rel_err"] < (1e-4 if t == "Q8_0" else 2e-2) for x in f), f
bits = sum(8 * x["bytes"] for x in r["tensors"])  # what the file stores, factors included
assert bits == 8 * r["out_bytes"] and abs(r["bpw"] - bits / el) < 1e-9, (r["bpw"], bits / el)
PY
  "$BIN" run -m "$tmp/r32-$t.gguf" --raw -p "Hello" -n 4 > /dev/null && ok || bad "run $t"
  "$BIN" bench -m "$tmp/r32-$t.gguf" -p 8 -n 4 -r 1 --json | tail -1 | python3 -c '
import json, sys; d = json.load(sys.stdin); assert d["decode_tok_s"] > 0' && ok || bad "bench $t"
done
kl "$F" "$tmp/dense-q8.gguf" > "$tmp/kl-dense.json"
kl "$tmp/r32" "$tmp/r32-q8_0.gguf" > "$tmp/kl-r32.json"
python3 - "$tmp/kl-dense.json" "$tmp/kl-r32.json" <<'PY' && ok || bad "factored q8_0 logits"
import json, sys
d, f = (json.load(open(p)) for p in sys.argv[1:3])
print("KL vs float: dense q8_0 %.5f, factored q8_0 (embedding bf16) %.5f; top-1 %.3f"
      % (d["kl_mean"], f["kl_mean"], f["top1_agreement"]))
assert f["kl_mean"] <= 2 * d["kl_mean"] + 1e-3 and f["top1_agreement"] >= 0.8, f
PY
# ranks that are not multiples of 32: A (rows as wide as the input) is quantized, B keeps its type
"$BIN" quantize -m "$tmp/r06" -o "$tmp/r06-q8.gguf" --type q8_0 -q --json > "$tmp/r06.json" \
  || bad "quantize r06"
python3 - "$tmp/r06.json" <<'PY' && ok || bad "report of r06"
import json, sys
r = json.load(open(sys.argv[1]))
a = [x for x in r["tensors"] if x["name"].endswith(".lowrank_a")]
b = [x for x in r["tensors"] if x["name"].endswith(".lowrank_b")]
assert a and all(x["type"] == "Q8_0" for x in a), a
assert all(x["type"] in ("Q8_0", "F16", "BF16", "F32") for x in b), b
assert any(x["type"] != "Q8_0" for x in b), "no rank of r06 is off the 32 grid: case not tested"
PY
"$BIN" run -m "$tmp/r06-q8.gguf" --raw -p "Hello" -n 4 > /dev/null && ok || bad "run r06"

# GPTQ of the factors against their round to nearest (q4_0; embedding bf16 so that the factors'
# and the dense attention matrices' error is what KL sees; calibration and KL on the same text)
for m in rtn gptq; do
  "$BIN" quantize -m "$tmp/r32" -o "$tmp/g-$m.gguf" --type q4_0 --method $m \
    --keep '*embed_tokens*=bf16' --calib "$C" --calib-tokens 1024 -q --json > "$tmp/g-$m.json" \
    || bad "quantize factored $m"
  kl "$tmp/r32" "$tmp/g-$m.gguf" > "$tmp/kl-g-$m.json"
done
python3 - "$tmp/g-gptq.json" "$tmp/kl-g-rtn.json" "$tmp/kl-g-gptq.json" <<'PY' \
  && ok || bad "gptq of factors"
import json, sys
r, a, b = (json.load(open(p)) for p in sys.argv[1:4])
f = [x for x in r["tensors"] if ".lowrank_" in x["name"]]
assert len(f) == 12 and all(x["method"] == "gptq" for x in f), f
print("factored q4_0, KL vs float: rtn %.4f, gptq %.4f" % (a["kl_mean"], b["kl_mean"]))
assert b["kl_mean"] < a["kl_mean"], (a, b)
PY

# refused combinations
err "rtn or gptq only" \
  "$BIN" quantize -m "$tmp/r32" -o "$tmp/x.gguf" --type q4_0 --method awq --calib "$C"
err "pruning the decoder of a model with low-rank factors" \
  "$BIN" prune -m "$tmp/r32" -o "$tmp/x.gguf" --method magnitude --sparsity 0.5
err "compensation of a model with low-rank factors" \
  "$BIN" quantize -m "$tmp/r32" -o "$tmp/x.gguf" --type q4_0 --calib "$C" --lowrank-comp 32
[ ! -e "$tmp/x.gguf" ] && ok || bad "a failed run left a file"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
