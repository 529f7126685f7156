#!/usr/bin/env bash
# evlm prune --structured through the CLI on the llama-tiny and smolvlm-tiny fixtures: a folder
# and a GGUF file of the same pruning give the same logits, `run`, `info` and `logits` take
# them, the --json report and config.json agree on the new shape; nothing removed gives the
# source's logits; bad options fail with one clear line and leave no output behind.
set -u
S="${EVLM_SHARED:-}"
L="$S/fixtures/llama-tiny"; V="$S/fixtures/smolvlm-tiny"; C="$S/fixtures/corpus.txt"
if [ ! -f "$L/config.json" ]; then echo "SKIP: $L not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"
P=(prune --structured --calib "$C" --calib-tokens 512 -q)

# nothing removed: the source's logits
"$BIN" prune -m "$L" -o "$tmp/same" --structured -q > /dev/null || bad "prune nothing"
"$BIN" logits -m "$L" --raw -p "Once upon a time" --out "$tmp/a.bin" > /dev/null || bad "logits src"
"$BIN" logits -m "$tmp/same" --raw -p "Once upon a time" --out "$tmp/b.bin" > /dev/null || bad "logits same"
cmp -s "$tmp/a.bin" "$tmp/b.bin" && ok || bad "pruning nothing changed the logits"

# heads, FFN, layers: folder and GGUF
"$BIN" "${P[@]}" -m "$L" -o "$tmp/p" --heads 2 --ffn 96 --layers 1 --json > "$tmp/p.json" || bad "prune folder"
"$BIN" "${P[@]}" -m "$L" -o "$tmp/p.gguf" --heads 2 --ffn 96 --layers 1 > "$tmp/p.txt" || bad "prune gguf"
grep -q "layers 2 -> 1, heads 4 -> 2 (kv 2 -> 2), FFN 160 -> 96" "$tmp/p.txt" && ok || bad "text report: $(cat "$tmp/p.txt")"
python3 - "$tmp/p.json" "$tmp/p/config.json" <<'PY' && ok || bad "json report / config.json"
import json, sys
r = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
assert r["layers_after"] == c["num_hidden_layers"] == 1
assert r["heads_after"] == c["num_attention_heads"] == 2 and c["num_key_value_heads"] == 2
assert r["ffn_after"] == c["intermediate_size"] == 96 and c["head_dim"] == 16
assert r["params_after"] < r["params_before"] and len(r["layers"]) == 2
assert sum(l["kept"] for l in r["layers"]) == 1
assert all(len(l["heads_removed"]) == 2 for l in r["layers"] if l["kept"])
print("report: %d -> %d decoder parameters" % (r["params_before"], r["params_after"]))
PY
"$BIN" logits -m "$tmp/p" --raw -p "Once upon a time" --out "$tmp/c.bin" > /dev/null || bad "logits folder"
"$BIN" logits -m "$tmp/p.gguf" --raw -p "Once upon a time" --out "$tmp/d.bin" > /dev/null || bad "logits gguf"
cmp -s "$tmp/c.bin" "$tmp/d.bin" && ok || bad "folder and GGUF logits differ"
"$BIN" run -m "$tmp/p.gguf" --raw -p "Once upon a time" -n 8 > /dev/null && ok || bad "run gguf"
"$BIN" info -m "$tmp/p" > "$tmp/info.txt" && ok || bad "info folder"
for f in generation_config.json tokenizer.json tokenizer_config.json; do
  cmp -s "$L/$f" "$tmp/p/$f" && ok || bad "$f not copied"
done

# ratio, and the vision tower of a VLM
"$BIN" "${P[@]}" -m "$L" -o "$tmp/r" --ratio 0.25 --json > "$tmp/r.json" || bad "ratio"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['params_after'] <= 0.75*r['params_before']" "$tmp/r.json" && ok || bad "ratio report"
"$BIN" "${P[@]}" -m "$V" -o "$tmp/v" --heads 2 --vision-ffn 64 --vision-layers 1 > /dev/null || bad "vision"
"$BIN" run -m "$tmp/v" --image "$V/ref_image.png" --raw -p "<image>What is this?" -n 4 > /dev/null && ok || bad "run vision"

# bad options: one line, exit 1, nothing written
err "needs an integer" "$BIN" "${P[@]}" -m "$L" -o "$tmp/x" --layers 0
err "ratio" "$BIN" "${P[@]}" -m "$L" -o "$tmp/x" --ratio 1
err "has 4 heads" "$BIN" "${P[@]}" -m "$L" -o "$tmp/x" --heads 8
err "multiple of" "$BIN" "${P[@]}" -m "$L" -o "$tmp/x" --heads 3
err "has 2 layers" "$BIN" "${P[@]}" -m "$L" -o "$tmp/x" --layers 5
err "not both" "$BIN" "${P[@]}" -m "$L" -o "$tmp/x" --ratio 0.5 --heads 2
err "calib" "$BIN" prune --structured -m "$L" -o "$tmp/x" --heads 2
err "add --structured" "$BIN" prune -m "$L" -o "$tmp/x" --heads 2 --calib "$C"
err "vision_heads" "$BIN" "${P[@]}" -m "$V" -o "$tmp/x" --vision-heads 3
err "already exists" "$BIN" "${P[@]}" -m "$L" -o "$tmp/p" --heads 2
err "Hugging Face model folder" "$BIN" "${P[@]}" -m "$tmp/p.gguf" -o "$tmp/x" --heads 2
err "cannot create" "$BIN" "${P[@]}" -m "$L" -o "$tmp/no/such/x" --heads 2
err "unknown option" "$BIN" "${P[@]}" -m "$L" -o "$tmp/x" --bogus
[ -e "$tmp/x" ] && bad "an output was left behind" || ok
ls "$tmp" | grep -q "tmp\." && bad "a temporary folder was left behind" || ok

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
