#!/usr/bin/env bash
# evlm lowrank and quantize --lowrank-comp through the CLI on llama-tiny: factored files (GGUF and
# Hugging Face folder) load and run through run / info / bench; the report's ranks and parameter
# counts are consistent (--rank: every matrix factored; --ratio: the budget is met); compensation
# adds the factors in the chosen type; bad arguments and unsupported combinations fail with one
# clear line.
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/llama-tiny"; C="$S/fixtures/corpus.txt"
if [ ! -f "$F/config.json" ]; then echo "SKIP: $F not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"

# --rank: every decoder matrix factored, GGUF out
"$BIN" lowrank -m "$F" -o "$tmp/r8.gguf" --rank 8 --json -q > "$tmp/r8.json" || bad "lowrank --rank 8"
python3 - "$tmp/r8.json" <<'PY' && ok || bad "rank report"
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["matrices"]) == 14 and all(m["rank"] == 8 for m in r["matrices"]), r["matrices"]
assert r["params"] == sum(8 * (m["rows"] + m["cols"]) for m in r["matrices"]) < r["dense_params"]
PY
"$BIN" run -m "$tmp/r8.gguf" --raw -p "Hello" -n 4 > /dev/null && ok || bad "run factored gguf"
"$BIN" info -m "$tmp/r8.gguf" | grep -q "lowrank_a" && ok || bad "info lists the factors"
"$BIN" bench -m "$tmp/r8.gguf" -p 8 -n 4 -r 1 --json | tail -1 | python3 -c '
import json, sys; d = json.load(sys.stdin); assert d["decode_tok_s"] > 0' && ok || bad "bench factored"

# --ratio with SVD-LLM, Hugging Face folder out
"$BIN" lowrank -m "$F" -o "$tmp/svdllm" --ratio 0.6 --method svd-llm --calib "$C" --calib-tokens 512 --json -q > "$tmp/r06.json" || bad "lowrank --ratio"
python3 - "$tmp/r06.json" <<'PY' && ok || bad "ratio report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["params"] <= 0.6 * r["dense_params"] and r["kl_mean"] >= 0, r
assert any(m["rank"] > 0 for m in r["matrices"])
for m in r["matrices"]:
    assert m["rank"] == 0 or m["rank"] * (m["rows"] + m["cols"]) < m["rows"] * m["cols"], m
print("svd-llm 0.6: KL %.5f" % r["kl_mean"])
PY
[ -f "$tmp/svdllm/model.safetensors" ] && [ -f "$tmp/svdllm/tokenizer.json" ] && ok || bad "folder files"
"$BIN" run -m "$tmp/svdllm" --raw -p "Hello" -n 4 > /dev/null && ok || bad "run factored folder"

# compensation: q8_0 factors of rank 32 beside every q4_0 matrix
"$BIN" quantize -m "$F" -o "$tmp/c.gguf" --type q4_0 --calib "$C" --calib-tokens 512 --lowrank-comp 32 --lowrank-type q8_0 --json -q > "$tmp/c.json" || bad "quantize --lowrank-comp"
python3 - "$tmp/c.json" <<'PY' && ok || bad "compensation report"
import json, sys
r = json.load(open(sys.argv[1]))
f = [t for t in r["tensors"] if t["method"] == "lowrank"]
assert len(f) == 28 and all(t["type"] == "Q8_0" for t in f), f
PY
"$BIN" run -m "$tmp/c.gguf" --raw -p "Hello" -n 4 > /dev/null && ok || bad "run compensated"

# errors
err "give --rank R or --ratio P" "$BIN" lowrank -m "$F" -o "$tmp/x.gguf"
err "give --rank R or --ratio P" "$BIN" lowrank -m "$F" -o "$tmp/x.gguf" --rank 4 --ratio 0.5
err "needs calibration data" "$BIN" lowrank -m "$F" -o "$tmp/x.gguf" --rank 4 --method asvd
err "multiple of 32" "$BIN" lowrank -m "$F" -o "$tmp/x.gguf" --rank 33 --type q8_0
err "svd, asvd or svd-llm" "$BIN" lowrank -m "$F" -o "$tmp/x.gguf" --rank 4 --method pca
err "float factors" "$BIN" lowrank -m "$F" -o "$tmp/xdir" --rank 32 --type q8_0
err "Hugging Face model folder" "$BIN" lowrank -m "$tmp/r8.gguf" -o "$tmp/x.gguf" --rank 4
err "need calibration data" "$BIN" quantize -m "$F" -o "$tmp/x.gguf" --type q4_0 --lowrank-comp 8
err "not both" "$BIN" quantize -m "$F" -o "$tmp/x.gguf" --type q4_0 --calib "$C" --lowrank-comp 8 --lowrank-bpw 0.5
err "after AWQ is not done" "$BIN" quantize -m "$F" -o "$tmp/x.gguf" --type q4_0 --method awq --calib "$C" --lowrank-comp 8
err "rtn or gptq only" "$BIN" quantize -m "$tmp/svdllm" -o "$tmp/x.gguf" --type q4_0 --method awq --calib "$C"
err "f16 or q8_0" "$BIN" quantize -m "$F" -o "$tmp/x.gguf" --type q4_0 --calib "$C" --lowrank-comp 8 --lowrank-type q4_1
if ! "$BIN" export-onnx -m "$tmp/r8.gguf" -o "$tmp/onnx" 2>&1 | grep -q "EVLM_ONNX=OFF"; then
  err "low-rank" "$BIN" export-onnx -m "$tmp/r8.gguf" -o "$tmp/onnx"
fi
[ ! -e "$tmp/x.gguf" ] && ok || bad "a failed run left a file"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
