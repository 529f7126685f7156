#!/usr/bin/env bash
# evlm qat on the tiny fixtures: the GGUF is written with its working folder OUT.gguf.train
# (checkpoint/, log.json), loads and runs; the float model is the default teacher (kl: the first
# update's loss is the quantization's KL, below the CE), --no-teacher trains on the data's
# cross-entropy; a stopped run writes the GGUF of its current weights; with --learn-scales a run stopped and resumed writes the same GGUF and
# checkpoint (scales and their moments included) as a straight run; a vision model takes
# --vision; bad options give one line. (The GGUF's runtime logits against the training graph:
# test_train_cmds.)
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/llama-tiny"
if [ ! -f "$F/config.json" ]; then echo "SKIP: $F not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"
cat > "$tmp/t.txt" <<'TXT'
Once upon a time there was a little car.
It drove to the city every morning.

The driver was tired and stopped near a tall tree.

A bird sang on the roof of the house all morning long, and the cat listened.
TXT
c=(-m "$F" --text "$tmp/t.txt" --batch 2 --ctx 16 --lr 1e-3 -t 2 --no-bar)

# the float model as teacher (default)
"$BIN" qat "${c[@]}" -o "$tmp/a.gguf" --type q4_0 --steps 3 > /dev/null || bad "qat q4_0"
for f in a.gguf a.gguf.train/log.json a.gguf.train/checkpoint/state.json; do [ -f "$tmp/$f" ] && ok || bad "missing $f"; done
[ -e "$tmp/a.gguf.train/model" ] && bad "qat wrote a float model folder" || ok
"$BIN" run -m "$tmp/a.gguf" --raw -p "Once upon" -n 4 > /dev/null && ok || bad "run the QAT GGUF"
"$BIN" info -m "$tmp/a.gguf" 2>&1 | grep -qi "q4_0" && ok || bad "info: no q4_0 in the GGUF"
# no teacher: cross-entropy through the quantized forward; the teacher's KL of the same first
# batch is another number, below the CE (the quantized model is close to the float one)
"$BIN" qat "${c[@]}" -o "$tmp/n.gguf" --type q4_0 --no-teacher --steps 2 > /dev/null || bad "qat --no-teacher"
python3 - "$tmp/a.gguf.train/log.json" "$tmp/n.gguf.train/log.json" <<'PY' && ok || bad "qat log (teacher kl vs no teacher ce)"
import json, math, sys
j = json.load(open(sys.argv[1])); s = j["steps"]; ce = json.load(open(sys.argv[2]))["steps"]
print("first update: kl to the float model %.4f, ce without teacher %.4f" % (s[0]["loss"], ce[0]["loss"]))
assert len(s) == 3 and all(math.isfinite(x["loss"]) for x in s), s
assert 0 < s[0]["loss"] < ce[0]["loss"], (s[0], ce[0])
assert j["options"]["qat"]["type"] == "q4_0" and "distill" in j["options"], j["options"]
PY

# learned scales, stopped after 2 updates and resumed = a straight run of 4
l=("${c[@]}" --type q4_0 --learn-scales --steps 4)
"$BIN" qat "${l[@]}" -o "$tmp/s1.gguf" > /dev/null || bad "qat --learn-scales"
"$BIN" qat "${l[@]}" -o "$tmp/s2.gguf" --stop-after 2 > /dev/null || bad "qat --stop-after"
[ -f "$tmp/s2.gguf" ] && ok || bad "a stopped qat run leaves no GGUF (as finetune leaves its model)"
"$BIN" qat "${l[@]}" -o "$tmp/s2.gguf" --resume "$tmp/s2.gguf.train/checkpoint" > /dev/null || bad "qat --resume"
cmp -s "$tmp/s1.gguf" "$tmp/s2.gguf" && ok || bad "resumed GGUF differs from the straight run's"
for f in weights.safetensors adam_m.safetensors extra.safetensors state.json; do
  cmp -s "$tmp/s1.gguf.train/checkpoint/$f" "$tmp/s2.gguf.train/checkpoint/$f" && ok || bad "resumed checkpoint/$f differs"
done
python3 - "$tmp/s1.gguf.train/checkpoint/extra.safetensors" <<'PY' && ok || bad "scales not checkpointed"
import json, struct, sys
f = open(sys.argv[1], "rb"); h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
assert any(k.startswith("qat.scale.") and k.endswith(".adam_v") for k in h), list(h)[:5]
PY

# a vision model: the tower's type apart
V="$S/fixtures/smolvlm-tiny"
if [ -f "$V/config.json" ]; then
  "$BIN" qat -m "$V" --text "$tmp/t.txt" --batch 2 --ctx 16 -t 2 --no-bar -o "$tmp/v.gguf" --type q4_0 --vision q8_0 --steps 1 > /dev/null || bad "qat smolvlm-tiny --vision q8_0"
  "$BIN" run -m "$tmp/v.gguf" --raw -p "Once upon" -n 2 > /dev/null && ok || bad "run the vision QAT GGUF"
fi

# bad options: one line each
err "q5_k" "$BIN" qat "${c[@]}" -o "$tmp/e1.gguf" --type q5_k
err "no type" "$BIN" qat "${c[@]}" -o "$tmp/e2.gguf"
err "Q4_1" "$BIN" qat "${c[@]}" -o "$tmp/e3.gguf" --type q4_1 --learn-scales
err "float model folder" "$BIN" qat -m "$tmp/a.gguf" --text "$tmp/t.txt" -o "$tmp/e4.gguf" --type q4_0 --no-bar
err "exclude" "$BIN" qat "${c[@]}" -o "$tmp/e5.gguf" --type q4_0 --teacher "$F" --no-teacher

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
