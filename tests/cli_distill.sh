#!/usr/bin/env bash
# evlm distill on the tiny fixtures: a teacher distilled into itself keeps the loss at 0 and the
# weights bit for bit (lr > 0); a student of other widths (`evlm synth`, llama-tiny's tokenizer)
# trains through the hidden-state projection (loss goes down; the projection is checkpointed,
# not written into the student); a run stopped and resumed equals a straight one byte for byte
# (projections and their moments included); --generate-targets trains on the teacher's greedy
# answers (the answer `evlm eval` generates) and does not regenerate on resume; --budget-minutes
# fits the schedule; the scene model (with images) distilled into itself keeps the loss at 0;
# bad options give one line.
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/llama-tiny"
if [ ! -f "$F/config.json" ]; then echo "SKIP: $F not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"
st_tensors() { # a safetensors file's tensors as "name dtype sha1" lines
  python3 - "$1" <<'PY'
import hashlib, json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
for k in sorted(h):
    if k != "__metadata__":
        v = h[k]; a, b = v["data_offsets"]; print(k, v["dtype"], hashlib.sha1(d[a:b]).hexdigest())
PY
}

cat > "$tmp/t.txt" <<'TXT'
Once upon a time there was a little car.
It drove to the city every morning.

The driver was tired and stopped near a tall tree.

A bird sang on the roof of the house all morning long, and the cat listened.
TXT

# 1. a teacher into itself: loss 0 at every update, the weights unchanged bit for bit
"$BIN" distill --teacher "$F" -m "$F" -o "$tmp/self" --text "$tmp/t.txt" --steps 3 --batch 2 --ctx 16 --lr 1e-2 -t 2 --no-bar > /dev/null || bad "distill into itself"
python3 - "$tmp/self/log.json" <<'PY' && ok || bad "self-distillation: loss not 0"
import json, sys
s = json.load(open(sys.argv[1]))["steps"]
assert len(s) == 3 and all(x["loss"] == 0 and x["grad_norm"] == 0 for x in s), s
PY
[ "$(st_tensors "$F/model.safetensors")" = "$(st_tensors "$tmp/self/model/model.safetensors")" ] && ok || bad "self-distillation changed the weights"

# 2. a narrower, shallower student (synth; the tokenizer from llama-tiny) through the projection
python3 - "$F/config.json" "$tmp/small.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=1)
json.dump(c, open(sys.argv[2], "w"))
PY
"$BIN" synth --config "$tmp/small.json" -o "$tmp/small" --tokenizer "$F" --dtype f32 > /dev/null 2>&1 || bad "synth the student"
"$BIN" distill --teacher "$F" -m "$tmp/small" -o "$tmp/w" --text "$tmp/t.txt" --steps 30 --batch 4 --ctx 16 --lr 2e-2 --hidden-loss 1 --temp 2 -t 2 --no-bar > /dev/null || bad "distill into a narrower student"
python3 - "$tmp/w/log.json" <<'PY' && ok || bad "narrow student: loss does not go down"
import json, sys
s = json.load(open(sys.argv[1]))["steps"]
print("narrow student: loss %.2f -> %.2f" % (s[0]["loss"], s[-1]["loss"]))
assert len(s) == 30 and s[-1]["loss"] < 0.9 * s[0]["loss"], [x["loss"] for x in s]
PY
st_tensors "$tmp/w/checkpoint/extra.safetensors" | grep -q '^distill.proj.0.weight F32' && ok || bad "projection not checkpointed"
st_tensors "$tmp/w/model/model.safetensors" | grep -q distill && bad "projection written into the student" || ok
"$BIN" run -m "$tmp/w/model" --raw -p "Once upon" -n 4 > /dev/null && ok || bad "run the student"

# 3. stopped after 4 updates and resumed = a straight run (weights, moments, projections)
c=(--teacher "$F" -m "$tmp/small" --text "$tmp/t.txt" --steps 6 --batch 2 --ctx 16 --lr 2e-2 --hidden-loss 1 --attn-loss 0.5 --alpha 0.3 --loss jsd:0.5 -t 2 --no-bar)
"$BIN" distill "${c[@]}" -o "$tmp/r1" > /dev/null || bad "straight run"
"$BIN" distill "${c[@]}" -o "$tmp/r2" --stop-after 4 > /dev/null || bad "run stopped at 4"
"$BIN" distill "${c[@]}" -o "$tmp/r2" --resume "$tmp/r2/checkpoint" > /dev/null || bad "resumed run"
for f in checkpoint/weights.safetensors checkpoint/adam_m.safetensors checkpoint/adam_v.safetensors \
         checkpoint/extra.safetensors checkpoint/state.json model/model.safetensors; do
  cmp -s "$tmp/r1/$f" "$tmp/r2/$f" && ok || bad "resumed $f differs from the straight run's"
done
err "saved with distill" "$BIN" distill "${c[@]/jsd:0.5/rkl}" -o "$tmp/r2" --resume "$tmp/r2/checkpoint"
err "saved by a distill run" "$BIN" finetune -m "$tmp/small" --text "$tmp/t.txt" --steps 6 --batch 2 --ctx 16 --lr 2e-2 -t 2 --no-bar -o "$tmp/r2" --resume "$tmp/r2/checkpoint"

# 4. --generate-targets: the teacher's greedy answers (as evlm eval generates them) are the labels
mkdir "$tmp/chat" && cp "$F"/* "$tmp/chat/"
printf '%s' "{% for m in messages %}<|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}" > "$tmp/chat/chat_template.jinja"
cat > "$tmp/qa.jsonl" <<'J'
{"question": "What color is the car?", "answer": "Red.", "scenario": "cars"}
{"question": "Is the driver tired?", "answer": "Yes."}
J
g=(--teacher "$tmp/chat" -m "$tmp/chat" --data "$tmp/qa.jsonl" --generate-targets --target-tokens 8 --alpha 1 --steps 2 --batch 1 --lr 1e-3 -t 2 --no-bar)
"$BIN" distill "${g[@]}" -o "$tmp/gt" --stop-after 1 > /dev/null || bad "distill --generate-targets"
"$BIN" eval -m "$tmp/chat" --dataset "$tmp/qa.jsonl" -n 8 -v 2> "$tmp/eval.txt" > /dev/null
python3 - "$tmp/gt/targets.jsonl" "$tmp/eval.txt" <<'PY' && ok || bad "targets are not the teacher's answers"
import json, re, sys
t = [json.loads(l) for l in open(sys.argv[1])]
got = re.findall(r'got "(.*)" want', open(sys.argv[2], newline="").read())
print("teacher's answers:", [x["answer"] for x in t])
assert len(t) == 2 and [x["answer"] for x in t] == got, (t, got)
assert t[0]["scenario"] == "cars" and t[0]["question"] == "What color is the car?"
PY
touch -d '2001-01-01' "$tmp/gt/targets.jsonl"; before=$(stat -c %Y "$tmp/gt/targets.jsonl")
"$BIN" distill "${g[@]}" -o "$tmp/gt" --resume "$tmp/gt/checkpoint" > /dev/null || bad "resume --generate-targets"
[ "$(stat -c %Y "$tmp/gt/targets.jsonl")" = "$before" ] && ok || bad "targets regenerated on resume"

# 5. --budget-minutes: the schedule shrinks to the updates that fit, the decay ends with the time
"$BIN" distill --teacher "$F" -m "$tmp/small" -o "$tmp/b" --text "$tmp/t.txt" --steps 100000 --batch 2 --ctx 16 --lr 1e-3 --budget-minutes 0.02 -t 2 --no-bar > /dev/null || bad "--budget-minutes"
python3 - "$tmp/b/log.json" <<'PY' && ok || bad "--budget-minutes: the schedule did not fit"
import json, sys
j = json.load(open(sys.argv[1])); s = j["steps"]
print("budget 1.2 s: %d updates planned, %d done, last lr %.3g" % (j["total_steps"], len(s), s[-1]["lr"]))
assert 1 <= j["total_steps"] < 100000 and len(s) <= j["total_steps"], j["total_steps"]
assert len(s) < j["total_steps"] or len(s) < 3 or s[-1]["lr"] < 0.1 * 1e-3, s[-3:]
PY

# 6. a vision model into itself on image items (the scene model, when ../shared has it): the
# teacher's tower runs on the same tiles; soft targets and hidden states agree exactly, the
# attention maps to float rounding
V="$S/models/scenes-vlm"; D="$S/datasets/scenes-dev"
if [ -f "$V/config.json" ] && [ -f "$D/dev.jsonl" ]; then
  head -2 "$D/dev.jsonl" | sed "s|\"image\": \"|\"image\": \"$D/|" > "$tmp/v.jsonl"
  "$BIN" distill --teacher "$V" -m "$V" -o "$tmp/vd" --data "$tmp/v.jsonl" --steps 1 --batch 2 --lr 1e-5 --hidden-loss 1 --attn-loss 1 -t 2 --no-bar > /dev/null || bad "distill the scene model into itself"
  python3 - "$tmp/vd/log.json" <<'PY' && ok || bad "scene model into itself: loss not 0"
import json, sys
s = json.load(open(sys.argv[1]))["steps"]
assert s[0]["loss"] < 1e-9 and s[0]["grad_norm"] < 1e-5, s
PY
fi

# 7. bad options: one line each
err "unknown.*'mse'\|'mse'" "$BIN" distill --teacher "$F" -m "$F" -o "$tmp/e1" --text "$tmp/t.txt" --loss mse --no-bar
err "jsd" "$BIN" distill --teacher "$F" -m "$F" -o "$tmp/e2" --text "$tmp/t.txt" --loss jsd:1.5 --no-bar
err "5:0\|layer 5\|out of range" "$BIN" distill --teacher "$F" -m "$F" -o "$tmp/e3" --text "$tmp/t.txt" --hidden-loss 1 --layer-map 5:0 --no-bar
python3 - "$F/config.json" "$tmp/v.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c.update(vocab_size=700); json.dump(c, open(sys.argv[2], "w"))
PY
"$BIN" synth --config "$tmp/v.json" -o "$tmp/v700" --tokenizer "$F" > /dev/null 2>&1 || bad "synth a teacher of another vocabulary"
err "vocabulary" "$BIN" distill --teacher "$tmp/v700" -m "$F" -o "$tmp/e4" --text "$tmp/t.txt" --no-bar
# the same size, another tokenizer (the ids of the ordinary tokens reversed): refused too
mkdir "$tmp/rtok" && cp "$F"/* "$tmp/rtok/"
python3 - "$tmp/rtok/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); v = t["model"]["vocab"]
special = {a["id"] for a in t["added_tokens"]}
ids = sorted(i for i in v.values() if i not in special)
flip = dict(zip(ids, reversed(ids)))
t["model"]["vocab"] = {k: flip.get(i, i) for k, i in v.items()}
json.dump(t, open(sys.argv[1], "w"))
PY
err "tokenizer is not the student's" "$BIN" distill --teacher "$tmp/rtok" -m "$F" -o "$tmp/e6" --text "$tmp/t.txt" --no-bar
err "no teacher" "$BIN" distill -m "$F" -o "$tmp/e5" --text "$tmp/t.txt" --no-bar

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
