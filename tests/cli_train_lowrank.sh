#!/usr/bin/env bash
# training a low-rank factored student from the command line: `evlm lowrank` writes llama-tiny at
# rank 8 as a folder, `evlm distill` trains it from the dense teacher (logit KL + hidden-state MSE)
# and its loss falls; the student it writes keeps the factors under their names (no dense weight
# for a factored matrix) and `evlm run` / `evlm quality` load it; a run stopped and resumed
# equals a straight one byte for byte; `evlm finetune --train '*lowrank_b'` trains the B factors
# alone; `evlm qat` refuses a factored model in one line.
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/llama-tiny"
if [ ! -f "$F/config.json" ]; then echo "SKIP: $F not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"
st_names() { # a safetensors file's tensor names
  python3 - "$1" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
print("\n".join(sorted(k for k in h if k != "__metadata__")))
PY
}

cat > "$tmp/t.txt" <<'TXT'
Once upon a time there was a little car.
It drove to the city every morning.

The driver was tired and stopped near a tall tree.

A bird sang on the roof of the house all morning long, and the cat listened.
TXT

"$BIN" lowrank -m "$F" -o "$tmp/lr" --rank 8 -q > /dev/null || bad "lowrank --rank 8 into a folder"
[ "$(st_names "$tmp/lr/model.safetensors" | grep -c 'lowrank_a$')" -eq 14 ] && ok || bad "lowrank: not 14 factored matrices"

# 1. distillation into the factored student: the loss falls, the factors stay factors
"$BIN" distill --teacher "$F" -m "$tmp/lr" -o "$tmp/d" --text "$tmp/t.txt" --steps 30 --batch 4 --ctx 16 --lr 2e-2 --hidden-loss 1 -t 2 --no-bar > /dev/null || bad "distill into the rank-8 student"
python3 - "$tmp/d/log.json" <<'PY' && ok || bad "factored student: loss does not go down"
import json, sys
s = json.load(open(sys.argv[1]))["steps"]
a = sum(x["loss"] for x in s[:5]) / 5; b = sum(x["loss"] for x in s[-5:]) / 5
print("rank-8 student: distill loss, mean of the first / last 5 updates %.3f -> %.3f" % (a, b))
assert len(s) == 30 and b < 0.9 * a, [x["loss"] for x in s]
PY
names=$(st_names "$tmp/d/model/model.safetensors")
[ "$(printf '%s\n' "$names" | grep -c 'lowrank_[ab]$')" -eq 28 ] && ok || bad "the student lost its factors"
printf '%s\n' "$names" | grep -q 'q_proj.weight$' && bad "the student has a dense q_proj" || ok
cmp -s "$tmp/lr/model.safetensors" "$tmp/d/model/model.safetensors" && bad "the factors did not change" || ok
"$BIN" run -m "$tmp/d/model" --raw -p "Once upon" -n 4 > /dev/null && ok || bad "run the student"
"$BIN" quality -m "$F" -q "$tmp/d/model" --text "$tmp/t.txt" --max-tokens 64 > /dev/null 2>&1 && ok || bad "quality of the student against the teacher"

# 2. stopped after 3 updates and resumed = a straight run
c=(--teacher "$F" -m "$tmp/lr" --text "$tmp/t.txt" --steps 5 --batch 2 --ctx 16 --lr 1e-2 --hidden-loss 1 --alpha 0.3 -t 2 --no-bar)
"$BIN" distill "${c[@]}" -o "$tmp/r1" > /dev/null || bad "straight run"
"$BIN" distill "${c[@]}" -o "$tmp/r2" --stop-after 3 > /dev/null || bad "run stopped at 3"
"$BIN" distill "${c[@]}" -o "$tmp/r2" --resume "$tmp/r2/checkpoint" > /dev/null || bad "resumed run"
for f in checkpoint/weights.safetensors checkpoint/adam_m.safetensors checkpoint/adam_v.safetensors \
         model/model.safetensors; do
  cmp -s "$tmp/r1/$f" "$tmp/r2/$f" && ok || bad "resumed $f differs from the straight run's"
done

# 3. finetune with only the B factors trainable (--train glob)
"$BIN" finetune -m "$tmp/lr" --text "$tmp/t.txt" --steps 4 --batch 2 --ctx 16 --lr 1e-2 --train '*lowrank_b' -t 2 --no-bar -o "$tmp/f" > /dev/null || bad "finetune the B factors"
python3 - "$tmp/lr/model.safetensors" "$tmp/f/model/model.safetensors" <<'PY' && ok || bad "finetune --train '*lowrank_b' changed something else or nothing"
import json, struct, sys
def load(p):
    f = open(p, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
    return {k: d[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
changed = sorted(k for k in a if a[k] != b[k])
assert changed and all(k.endswith("lowrank_b") for k in changed), changed
PY

# 4. quantization-aware training refuses a factored decoder in one line
err "low-rank factored matrices" "$BIN" qat -m "$tmp/lr" -o "$tmp/q.gguf" --type q4_0 --text "$tmp/t.txt" --steps 2 --batch 1 --ctx 16 -t 2 --no-bar

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
