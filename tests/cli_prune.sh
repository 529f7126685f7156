#!/usr/bin/env bash
# evlm prune (and quantize --prune, the same pipeline) on the tiny fixtures: magnitude without
# calibration, SparseGPT 2:4 quantized to q8_0 in the same pass with the vision tower pruned by
# magnitude, Wanda 50 %; the files load, logits / run work on them, the report shows the
# sparsity reached per tensor and in total; --keep leaves tensors dense; hostile options fail with
# one clear line and leave no file.
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures"
if [ ! -f "$F/llama-tiny/config.json" ] || [ ! -f "$F/smolvlm-tiny/config.json" ]; then
  echo "SKIP: $F not found"; exit 77
fi
. "$EVLM_SRC/tests/cli_common.sh"

# magnitude 50 %, no calibration, source dtype kept; --keep leaves the down projections dense
"$BIN" prune -m "$F/llama-tiny" -o "$tmp/mag.gguf" --method magnitude --sparsity 0.5 \
  --keep '*down_proj*' --json -q > "$tmp/mag.json" || bad "prune magnitude"
python3 - "$tmp/mag.json" <<'PY' && ok || bad "magnitude report"
import json, sys
r = json.load(open(sys.argv[1]))
ts = {t["name"]: t for t in r["tensors"]}
pr = [t for t in r["tensors"] if t["sparsity"] >= 0]
assert pr and all(t["method"] == "magnitude" and abs(t["sparsity"] - 0.5) < 1e-3 for t in pr), pr
assert all(t["sparsity"] < 0 for n, t in ts.items() if "down_proj" in n)
assert all(t["type"] in ("F32", "BF16", "F16") for t in pr)
assert not any("embed" in t["name"] for t in pr)
print("magnitude: %d tensors pruned, %.3f" % (len(pr), r["sparsity"]))
PY
"$BIN" prune -m "$F/llama-tiny" -o "$tmp/mag.gguf" --method magnitude --sparsity 0.5 -q \
  | grep -q "are 0 (50.00 %)" && ok || bad "table report"
"$BIN" logits -m "$tmp/mag.gguf" -p "hello" --raw --out "$tmp/l.bin" > /dev/null && [ -s "$tmp/l.bin" ] && ok || bad "logits"
"$BIN" run -m "$tmp/mag.gguf" -p "hello" --raw -n 4 > /dev/null && ok || bad "run"
"$BIN" info -m "$tmp/mag.gguf" | grep -q "parameters" && ok || bad "info"

# SparseGPT 2:4 + GPTQ q8_0 in one pass; the vision tower by magnitude; Wanda 50 %
"$BIN" prune -m "$F/smolvlm-tiny" -o "$tmp/sg.gguf" --method sparsegpt --pattern 2:4 \
  --calib "$F/corpus.txt" --type q8_0 --vision-sparsity 0.5 --json -q > "$tmp/sg.json" || bad "prune sparsegpt"
python3 - "$tmp/sg.json" <<'PY' && ok || bad "sparsegpt report"
import json, sys
r = json.load(open(sys.argv[1]))
lm = [t for t in r["tensors"] if t["name"].startswith("model.text_model.layers")
      and t["name"].endswith("proj.weight")]
vi = [t for t in r["tensors"] if t["sparsity"] >= 0 and "text_model" not in t["name"]]
assert lm and all(t["method"] == "sparsegpt+gptq" and t["type"] == "Q8_0" for t in lm), lm
assert all(t["sparsity"] >= 0.5 and 0 <= t["rel_err"] < 1 for t in lm)
assert vi and all(t["method"].startswith("magnitude") and t["sparsity"] >= 0.5 for t in vi), vi
assert r["kl_mean"] >= 0
print("sparsegpt 2:4 q8_0: KL %.4f on the random fixture, %d vision matrices" % (r["kl_mean"], len(vi)))
PY
"$BIN" logits -m "$tmp/sg.gguf" -p "hello" --raw --out "$tmp/l2.bin" > /dev/null && [ -s "$tmp/l2.bin" ] && ok || bad "logits sparsegpt"
"$BIN" prune -m "$F/llama-tiny" -o "$tmp/wa.gguf" --method wanda --sparsity 0.5 \
  --calib "$F/corpus.txt" --calib-tokens 512 --json -q > "$tmp/wa.json" || bad "prune wanda"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert abs(r["sparsity"]-0.5)<1e-3 and any(t["method"]=="wanda" for t in r["tensors"])' "$tmp/wa.json" && ok || bad "wanda report"
# quantize --prune: the same pipeline
"$BIN" quantize -m "$F/llama-tiny" -o "$tmp/q.gguf" --type q4_0 --prune magnitude --sparsity 0.5 \
  --json -q > "$tmp/q.json" || bad "quantize --prune"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert abs(r["sparsity"]-0.5)<0.01 and any(t["method"]=="magnitude+rtn" and t["type"]=="Q4_0" for t in r["tensors"])' "$tmp/q.json" && ok || bad "quantize --prune report"
"$BIN" quantize -m "$F/llama-tiny" -o "$tmp/qg.gguf" --type q8_0 --method gptq --calib "$F/corpus.txt" \
  --calib-tokens 512 --prune magnitude --pattern 4:8 --json -q > "$tmp/qg.json" || bad "quantize gptq --prune"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert abs(r["sparsity"]-0.5)<0.01 and any(t["method"]=="magnitude+gptq" for t in r["tensors"])' "$tmp/qg.json" && ok || bad "quantize gptq --prune report"

# errors
M="$F/llama-tiny"
err "in \[0, 1)" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method magnitude --sparsity 1.5
err "5:4" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method magnitude --pattern 5:4
err "needs calibration data" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method wanda --sparsity 0.5
err "needs calibration data" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method sparsegpt --pattern 2:4
err "needs calibration data" "$BIN" quantize -m "$M" -o "$tmp/x.gguf" --type q8_0 --prune sparsegpt --sparsity 0.5
err "give --sparsity S or --pattern" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method magnitude
err "not both" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method magnitude --sparsity 0.5 --pattern 2:4
err "no --method" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --sparsity 0.5
err "magnitude, wanda or sparsegpt" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method random --sparsity 0.5
err "q4_1 has no exact zero" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method magnitude --sparsity 0.5 --type q4_1
err "Q4_1 has no exact zero" "$BIN" quantize -m "$M" -o "$tmp/x.gguf" --type q4_1 --prune magnitude --sparsity 0.5
err "would not keep the" "$BIN" quantize -m "$M" -o "$tmp/x.gguf" --type q4_0 --method awq --calib "$F/corpus.txt" --prune magnitude --sparsity 0.5
err "add --structured" "$BIN" prune -m "$M" -o "$tmp/x.gguf" --method magnitude --sparsity 0.5 --heads 2
[ ! -e "$tmp/x.gguf" ] && [ -z "$(ls "$tmp" | grep -F '.tmp.')" ] && ok || bad "a failed prune left a file behind"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
