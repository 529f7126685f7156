#!/usr/bin/env bash
# evlm finetune through the CLI on llama-tiny: a text run and a question-answer run (llama-tiny
# with a ChatML template added) and one with images on the scene model write model/, checkpoint/,
# log.json (and loss.png with gnuplot);
# the model folder loads with `evlm run` and `evlm eval`; a run stopped after k updates and
# resumed gives the same bytes as a straight run; bad data fails with one line naming file:line
# and leaves nothing half-written; the tiny model overfits one batch (loss < 0.01 within 150
# updates).
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/llama-tiny"
if [ ! -f "$F/config.json" ]; then echo "SKIP: $F not found"; exit 77; fi
BIN="$EVLM_BIN"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
err() { # pattern, command...
  local pat=$1; shift
  local e rc; e=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$e" | wc -l)" -eq 1 ] && printf '%s' "$e" | grep -q -- "$pat"; then ok; else bad "rc=$rc '$e' (want $pat)"; fi
}
no_leftovers() { # folder: no temporary folder or file of an atomic writer
  if find "$1" -name '*.tmp*' -o -name '*.old.*' -o -name 'eval-tmp' | grep -q .; then bad "leftovers in $1: $(find "$1" -name '*.tmp*' -o -name '*.old.*')"; else ok; fi
}

cat > "$tmp/t.txt" <<'TXT'
Once upon a time there was a little car.
It drove to the city every morning.

The driver was tired and stopped near a tall tree.

A bird sang on the roof of the house all morning long, and the cat listened.
TXT
common=(--text "$tmp/t.txt" --batch 2 --ctx 16 --lr 1e-3 --warmup 2 --wd 0.01 -t 2 --no-bar)

# a straight run of 6 updates
"$BIN" finetune -m "$F" -o "$tmp/a" --steps 6 "${common[@]}" > "$tmp/a.out" || bad "finetune text"
for f in model/config.json model/model.safetensors model/tokenizer.json checkpoint/state.json \
         checkpoint/weights.safetensors checkpoint/adam_m.safetensors log.json; do
  [ -f "$tmp/a/$f" ] && ok || bad "missing $f"
done
if command -v gnuplot >/dev/null; then [ -s "$tmp/a/loss.png" ] && ok || bad "no loss.png"; fi
python3 - "$tmp/a/log.json" <<'PY' && ok || bad "log.json"
import json, math, sys
j = json.load(open(sys.argv[1]))
s = j["steps"]
assert [x["step"] for x in s] == [1, 2, 3, 4, 5, 6], s
assert all(math.isfinite(x["loss"]) and x["loss"] > 0 and x["grad_norm"] > 0 for x in s), s
assert abs(s[0]["lr"] - 5e-4) < 1e-12 and abs(s[1]["lr"] - 1e-3) < 1e-12, s  # warmup 2
assert s[5]["lr"] < s[2]["lr"], s  # cosine decay
assert j["options"]["batch"] == 2 and j["total_steps"] == 6
PY
"$BIN" run -m "$tmp/a/model" --raw -p "Once upon" -n 4 > /dev/null && ok || bad "run the result"
no_leftovers "$tmp/a"

# the same run in two pieces (the stop in the second epoch): 5 updates, stop, resume, 1 more: the same bytes
"$BIN" finetune -m "$F" -o "$tmp/b" --steps 6 --stop-after 5 "${common[@]}" > /dev/null || bad "finetune --stop-after"
grep -q '"step":[[:space:]]*"5"' "$tmp/b/checkpoint/state.json" && ok || bad "checkpoint at step 5"
"$BIN" finetune -m "$F" -o "$tmp/b" --steps 6 --resume "$tmp/b/checkpoint" "${common[@]}" > /dev/null || bad "finetune --resume"
for f in checkpoint/weights.safetensors checkpoint/adam_m.safetensors checkpoint/adam_v.safetensors \
         checkpoint/state.json model/model.safetensors; do
  cmp -s "$tmp/a/$f" "$tmp/b/$f" && ok || bad "resumed $f differs from the straight run's"
done
python3 - "$tmp/a/log.json" "$tmp/b/log.json" <<'PY' && ok || bad "resumed log"
import json, sys
a, b = (json.load(open(p))["steps"] for p in sys.argv[1:3])
assert [(x["step"], x["loss"], x["lr"], x["grad_norm"]) for x in a] == \
       [(x["step"], x["loss"], x["lr"], x["grad_norm"]) for x in b], (a, b)
PY
no_leftovers "$tmp/b"
err "batch = 2, this run has 3" "$BIN" finetune -m "$F" -o "$tmp/b" --steps 6 --resume "$tmp/b/checkpoint" --text "$tmp/t.txt" --batch 3 --ctx 16 --lr 1e-3 --warmup 2 --wd 0.01 -t 2 --no-bar

# --train / --freeze: only the chosen tensors change (the others keep their file bytes) and only
# they have moments in the checkpoint
"$BIN" finetune -m "$F" -o "$tmp/sel" --steps 2 --text "$tmp/t.txt" --batch 2 --ctx 16 --lr 1e-2 -t 2 --no-bar \
  --train 'model.layers.1.*' --freeze '*norm*' > /dev/null || bad "finetune --train --freeze"
python3 - "$F/model.safetensors" "$tmp/sel/model/model.safetensors" "$tmp/sel/checkpoint/adam_m.safetensors" <<'PY' && ok || bad "--train / --freeze"
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
src, out, m = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
train = {k for k in src if k.startswith("model.layers.1.") and "norm" not in k}
assert train and set(m) == train, (sorted(m), sorted(train))
assert set(out) == set(src)
for k in src:
    assert (out[k] != src[k]) == (k in train), k
PY

# accumulation: one update of 2 batches of 1 = the mean of their losses, the mean of their
# gradients (its norm at most the mean of theirs; without the 1 / accum scale it would be about
# twice that); the batches' own losses from a run of single batches at a negligible lr
acc=(--text "$tmp/t.txt" --ctx 16 --clip 0 -t 2 --no-bar)
"$BIN" finetune -m "$F" -o "$tmp/acc2" --steps 1 --batch 1 --accum 2 "${acc[@]}" > /dev/null || bad "finetune --accum 2"
"$BIN" finetune -m "$F" -o "$tmp/acc1" --steps 2 --batch 1 --lr 1e-12 "${acc[@]}" > /dev/null || bad "finetune --accum 1"
python3 - "$tmp/acc2/log.json" "$tmp/acc1/log.json" <<'PY' && ok || bad "accumulation"
import json, sys
a, b = (json.load(open(p))["steps"] for p in sys.argv[1:3])
assert len(a) == 1 and len(b) == 2
mean = (b[0]["loss"] + b[1]["loss"]) / 2
assert abs(a[0]["loss"] - mean) <= 1e-5 * mean, (a, b)
assert a[0]["grad_norm"] <= (b[0]["grad_norm"] + b[1]["grad_norm"]) / 2 * (1 + 1e-4), (a, b)
assert a[0]["grad_norm"] >= abs(b[0]["grad_norm"] - b[1]["grad_norm"]) / 2 * (1 - 1e-4), (a, b)
PY

# question-answer items: llama-tiny with a ChatML template, --eval scored as evlm eval does
mkdir "$tmp/chat" && cp "$F"/* "$tmp/chat/"
printf '%s' "{% for m in messages %}<|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}" > "$tmp/chat/chat_template.jinja"
cat > "$tmp/qa.jsonl" <<'J'
{"question": "What color is the car?", "answer": "Red.", "scenario": "cars"}
{"question": "Is the driver tired?", "answer": "Yes."}
{"question": "How many birds?", "answer": "One."}
J
"$BIN" finetune -m "$tmp/chat" --data "$tmp/qa.jsonl" -o "$tmp/q" --epochs 2 --batch 2 --lr 1e-3 --eval "$tmp/qa.jsonl" --eval-every 1 -t 2 --no-bar --dtype f32 > "$tmp/q.out" 2>&1 || bad "finetune --data --eval: $(tail -1 "$tmp/q.out")"
python3 - "$tmp/q/log.json" <<'PY' && ok || bad "qa log"
import json, sys
j = json.load(open(sys.argv[1]))
assert len(j["steps"]) == 4 and j["total_steps"] == 4, j  # 2 epochs of 2 batches
assert [e["step"] for e in j["evals"]] == [1, 2, 3, 4], j["evals"]
assert all(0 <= e["accuracy"] <= 1 for e in j["evals"])
PY
"$BIN" eval -m "$tmp/q/model" --dataset "$tmp/qa.jsonl" --json | tail -1 | python3 -c '
import json, sys; d = json.load(sys.stdin); assert d["n"] == 3' && ok || bad "eval the result"
no_leftovers "$tmp/q"

# bad data: one line naming the file and line, nothing half-written
printf '{"question": "q", "answer": "a"}\nnot json\n' > "$tmp/bad1.jsonl"
err "bad1.jsonl:2: not a JSON object" "$BIN" finetune -m "$tmp/chat" --data "$tmp/bad1.jsonl" -o "$tmp/e1" --steps 1 --no-bar
printf '{"question": "q", "answer": "a"}\n{"question": "q"}\n' > "$tmp/bad2.jsonl"
err "bad2.jsonl:2: expected" "$BIN" finetune -m "$tmp/chat" --data "$tmp/bad2.jsonl" -o "$tmp/e2" --steps 1 --no-bar
printf '{"image": "missing.png", "question": "q", "answer": "a"}\n' > "$tmp/bad3.jsonl"
err "bad3.jsonl:1: image .*missing.png not found" "$BIN" finetune -m "$tmp/chat" --data "$tmp/bad3.jsonl" -o "$tmp/e3" --steps 1 --no-bar
printf '{"question": "Is it?", "answer": "A very long answer that goes on and on and on and on."}\n' > "$tmp/bad4.jsonl"
err "bad4.jsonl:1: the item is .* longer than the context of 12" "$BIN" finetune -m "$tmp/chat" --data "$tmp/bad4.jsonl" -o "$tmp/e4" --steps 1 --ctx 12 --no-bar
err "has no chat template\|template" "$BIN" finetune -m "$F" --data "$tmp/qa.jsonl" -o "$tmp/e5" --steps 1 --no-bar
for d in e1 e2 e3 e4 e5; do
  if [ -d "$tmp/$d" ]; then [ -z "$(ls -A "$tmp/$d")" ] && ok || bad "$d not empty: $(ls -A "$tmp/$d")"; fi
done
no_leftovers "$tmp"

# a vision model: question-answer items with images (the scene model, when ../shared has it)
V="$S/models/scenes-vlm"; D="$S/datasets/scenes-dev"
if [ -f "$V/config.json" ] && [ -f "$D/dev.jsonl" ]; then
  head -4 "$D/dev.jsonl" | sed "s|\"image\": \"|\"image\": \"$D/|" > "$tmp/v.jsonl"
  vopts=(--data "$tmp/v.jsonl" --steps 3 --batch 2 --lr 1e-5 -t 2 --no-bar)
  "$BIN" finetune -m "$V" -o "$tmp/v" "${vopts[@]}" --eval "$tmp/v.jsonl" > /dev/null || bad "finetune the scene model"
  "$BIN" finetune -m "$V" -o "$tmp/w" "${vopts[@]}" --stop-after 2 > /dev/null || bad "scene model, stop after 2"
  "$BIN" finetune -m "$V" -o "$tmp/w" "${vopts[@]}" --resume "$tmp/w/checkpoint" > /dev/null || bad "scene model, resume"
  cmp -s "$tmp/v/checkpoint/weights.safetensors" "$tmp/w/checkpoint/weights.safetensors" && ok || bad "scene model: resumed weights differ"
  "$BIN" eval -m "$tmp/v/model" --dataset "$tmp/v.jsonl" --json | tail -1 | python3 -c '
import json, sys; d = json.load(sys.stdin); assert d["n"] == 4' && ok || bad "eval the fine-tuned scene model"
  python3 - "$tmp/v/log.json" <<'PY' && ok || bad "scene model log"
import json, sys
j = json.load(open(sys.argv[1]))
assert len(j["steps"]) == 3 and len(j["evals"]) == 1 and all(x["grad_norm"] > 0 for x in j["steps"]), j
PY
  no_leftovers "$tmp/v"
fi

# a GGUF evlm wrote trains (its dequantized tensors are the master weights); the output folder
# gets the embedded side files and the config's float dtype (llama-tiny: bfloat16)
"$BIN" quantize -m "$F" -o "$tmp/q8.gguf" --type q8_0 > /dev/null 2>&1 || bad "quantize q8_0"
"$BIN" finetune -m "$tmp/q8.gguf" -o "$tmp/g" --steps 2 "${common[@]}" > /dev/null || bad "finetune from a GGUF"
for f in config.json tokenizer.json tokenizer_config.json model.safetensors; do
  [ -f "$tmp/g/model/$f" ] && ok || bad "GGUF source: missing model/$f"
done
cmp -s "$F/tokenizer.json" "$tmp/g/model/tokenizer.json" && ok || bad "GGUF source: tokenizer.json is not the embedded one"
python3 - "$tmp/g/model/model.safetensors" "$tmp/g/log.json" <<'PY' && ok || bad "GGUF source: dtypes / log"
import json, struct, sys
f = open(sys.argv[1], "rb"); h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
assert {v["dtype"] for k, v in h.items() if k != "__metadata__"} == {"BF16"}, h
s = json.load(open(sys.argv[2]))["steps"]
assert len(s) == 2 and all(x["loss"] > 0 and x["grad_norm"] > 0 for x in s), s
PY
"$BIN" run -m "$tmp/g/model" --raw -p "Once upon" -n 4 > /dev/null && ok || bad "run the GGUF-trained result"
no_leftovers "$tmp/g"

# overfitting one batch: the tiny model learns two short sequences by heart
printf 'The red car stops.\n\nA bird sings.\n' > "$tmp/one.txt"
"$BIN" finetune -m "$F" --text "$tmp/one.txt" -o "$tmp/o" --steps 150 --batch 2 --lr 1e-2 --clip 0 -t 2 --no-bar > /dev/null || bad "overfit run"
python3 - "$tmp/o/log.json" <<'PY' && ok || bad "overfit: loss not below 0.01 within 150 updates"
import json, sys
s = json.load(open(sys.argv[1]))["steps"]
first = next((x["step"] for x in s if x["loss"] < 0.01), None)
print("overfit: loss %.4f -> %.5f, below 0.01 from update %s" % (s[0]["loss"], s[-1]["loss"], first))
assert first is not None and s[-1]["loss"] < 0.01
PY

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
