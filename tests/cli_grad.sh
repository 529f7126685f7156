#!/usr/bin/env bash
# `evlm grad`: help and listing; the gradients of llama-tiny for every loss and smolvlm-tiny's ce
# (an image of 5 tiles and a text sequence) against the torch fixtures (../shared/fixtures/grad, tests/grad_compare.py: every tensor within the README's
# tolerance), --json's loss and grad_norm against batch.json's; bad batch files (not JSON, no
# sequences, an id outside the vocabulary), an unknown loss and a missing teacher get one line
# naming the file / field with exit code 1, and no output file is left behind.
set -u
BIN="$EVLM_BIN"
SRC="${EVLM_SRC:-.}"
S="${EVLM_SHARED:-}"
M="$S/fixtures/llama-tiny"
G="$S/fixtures/grad/llama-tiny"
if [ ! -f "$G/batch.json" ]; then echo "SKIP: $G not found"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { if eval "$2"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL ($1)"; fi; }
expect_err() {
  local what=$1 pat=$2; shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null </dev/null); rc=$?
  if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && printf '%s' "$err" | grep -q -- "$pat"; then
    pass=$((pass+1))
  else
    fail=$((fail+1)); echo "FAIL ($what): rc=$rc err='$err'"
  fi
}

out=$("$BIN" grad --help); ok "help" '[ $? -eq 0 ] && printf "%s" "$out" | grep -q -- "--loss"'
ok "listed" '"$BIN" --help | grep -q "^  grad "'

for loss in ce kd rkl hidden qat_ce; do
  out=$("$BIN" grad -m "$M" --batch "$G/batch.json" --loss $loss --teacher "$G/teacher" \
        -o "$T/g_$loss.safetensors" --json -t 2)
  ok "$loss runs" '[ $? -eq 0 ] && [ -f "$T/g_$loss.safetensors" ]'
  ok "$loss json" 'printf "%s" "$out" | python3 -c "
import json,sys
g=json.load(sys.stdin)
ref=json.load(open(\"$G/batch.json\"))[\"losses\"][\"$loss\"]
assert abs(g[\"loss\"]-ref[\"loss\"])<=1e-4*abs(ref[\"loss\"]), (g, ref)
assert abs(g[\"grad_norm\"]-ref[\"grad_norm\"])<=1e-3*ref[\"grad_norm\"], (g, ref)
"'
  ok "$loss gradients" 'python3 "$SRC/tests/grad_compare.py" "$T/g_$loss.safetensors" "$G/grads_$loss.safetensors" >"$T/cmp.txt" || { cat "$T/cmp.txt"; false; }'
done
out=$("$BIN" grad -m "$M" --batch "$G/batch.json" --loss ce -o "$T/plain.safetensors")
ok "text output" 'printf "%s" "$out" | grep -q "^loss 10.27"'

# smolvlm-tiny (an image of 5 tiles and a text sequence) through the vision tower, ce
SG="$S/fixtures/grad/smolvlm-tiny"
out=$("$BIN" grad -m "$S/fixtures/smolvlm-tiny" --batch "$SG/batch.json" --loss ce -o "$T/sv.safetensors" --json)
ok "smolvlm runs" '[ $? -eq 0 ]'
ok "smolvlm json" 'printf "%s" "$out" | python3 -c "
import json,sys
g=json.load(sys.stdin)
ref=json.load(open(\"$SG/batch.json\"))[\"losses\"][\"ce\"]
assert abs(g[\"loss\"]-ref[\"loss\"])<=1e-4*abs(ref[\"loss\"]), (g, ref)
"'
ok "smolvlm gradients" 'python3 "$SRC/tests/grad_compare.py" "$T/sv.safetensors" "$SG/grads_ce.safetensors" >"$T/cmp.txt" || { cat "$T/cmp.txt"; false; }'

# a wrong loss fails the comparison (the check can fail)
ok "compare can fail" '! python3 "$SRC/tests/grad_compare.py" "$T/g_kd.safetensors" "$G/grads_ce.safetensors" >/dev/null'

# bad input: one line naming what is wrong, nothing written
printf '{"sequences": [' >"$T/trunc.json"
expect_err "not json" "trunc.json" -- "$BIN" grad -m "$M" --batch "$T/trunc.json" --loss ce -o "$T/bad1.safetensors"
printf '{"temperature": 2}' >"$T/noseq.json"
expect_err "no sequences" 'noseq.json: no "sequences"' -- "$BIN" grad -m "$M" --batch "$T/noseq.json" --loss ce -o "$T/bad2.safetensors"
printf '{"sequences": [{"ids": [1, 2, 3]}, {"ids": [1, 99999, 3]}]}' >"$T/badid.json"
expect_err "bad id" 'badid.json: sequences\[1\].ids\[1\]' -- "$BIN" grad -m "$M" --batch "$T/badid.json" --loss ce -o "$T/bad3.safetensors"
printf '{"sequences": [{"ids": [1, 2, 3], "loss_from": 7}]}' >"$T/badfrom.json"
expect_err "bad loss_from" 'badfrom.json: sequences\[0\].loss_from' -- "$BIN" grad -m "$M" --batch "$T/badfrom.json" --loss ce -o "$T/bad4.safetensors"
expect_err "missing batch" "/nonexistent/batch.json" -- "$BIN" grad -m "$M" --batch /nonexistent/batch.json --loss ce -o "$T/bad5.safetensors"
expect_err "image, text model" 'sequences\[0\] has an image, the model has no vision tower' -- "$BIN" grad -m "$M" --batch "$SG/batch.json" --loss ce -o "$T/bad8.safetensors"
expect_err "unknown loss" "unknown loss 'mse'" -- "$BIN" grad -m "$M" --batch "$G/batch.json" --loss mse -o "$T/bad6.safetensors"
expect_err "no teacher" "needs a teacher" -- "$BIN" grad -m "$M" --batch "$G/batch.json" --loss kd -o "$T/bad7.safetensors"
expect_err "no output" "no output file" -- "$BIN" grad -m "$M" --batch "$G/batch.json" --loss ce
ok "nothing half-written" '[ -z "$(ls -A "$T" | grep -E "^bad[0-9]|^\\.|tmp")" ]'

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
