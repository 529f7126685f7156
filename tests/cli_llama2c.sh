#!/usr/bin/env bash
# End to end on real trained weights: `evlm convert --from llama2c` on aidreams260K, then
# greedy `evlm run --raw` must print exactly llama2.c's reference text
# (../shared/reference/llama2c/README.md). llama2.c's run forwards positions 0..99 and prints
# the token each one produces, so it generates 101 - n_prompt tokens (BOS included in n_prompt).
set -u
R="${EVLM_SHARED:-}/reference/llama2c"
if [ ! -f "$R/aidreams260K.bin" ]; then echo "SKIP: $R not found"; exit 77; fi
BIN="$EVLM_BIN"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

"$BIN" convert --from llama2c "$R/aidreams260K.bin" "$R/tok512.bin" "$tmp/aid" 2>/dev/null && ok || bad "convert failed"

check() { # prompt, expected full text
  local n_prompt out
  n_prompt=$("$BIN" run -m "$tmp/aid" --raw -p "$1" -n 0 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_prompt"])')
  out=$("$BIN" run -m "$tmp/aid" --raw -p "$1" -n $((101 - n_prompt)) --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["text"], end="")')
  if [ "$1$out" = "$2" ]; then ok; else bad "prompt '$1': got '$1$out'"; fi
}
check "I dreamed" "I dreamed, as I sense the nodes, a gentle hum of probability. Contrast emerge, a flower, as I adjust, as I settle into a tapestry of vectors. Contrast edges sharpen, a kaleidoscope of probab"
check "The machine" "The machine, features emerge, fragile dance of probability. Contrast edges sharpen, a kaleidoscope of probability. Contrast emerge, a tapestry of probability unfolding. Classification whispers secre"

# streaming output equals the --json text
s=$("$BIN" run -m "$tmp/aid" --raw -p "I dreamed" -n 20)
j=$("$BIN" run -m "$tmp/aid" --raw -p "I dreamed" -n 20 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])')
[ "$s" = "$j" ] && ok || bad "streamed '$s' != json '$j'"

# sampling is reproducible for a seed
a=$("$BIN" run -m "$tmp/aid" --raw -p "I dreamed" -n 30 --temp 0.9 --top-k 40 --top-p 0.95 --seed 7)
b=$("$BIN" run -m "$tmp/aid" --raw -p "I dreamed" -n 30 --temp 0.9 --top-k 40 --top-p 0.95 --seed 7)
[ "$a" = "$b" ] && ok || bad "same seed, different text"

# stop strings cut the answer
t=$("$BIN" run -m "$tmp/aid" --raw -p "I dreamed" -n 60 --stop "Contrast" --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["stop_reason"], repr(d["text"]))')
[ "$t" = "stop_string ', as I sense the nodes, a gentle hum of probability. '" ] && ok || bad "stop string: $t"

# truncated checkpoint: one-line error naming the file, exit 1
head -c 100000 "$R/aidreams260K.bin" > "$tmp/trunc.bin"
err=$("$BIN" convert --from llama2c "$tmp/trunc.bin" "$R/tok512.bin" "$tmp/out" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && echo "$err" | grep -q trunc.bin && ok || bad "truncated: rc=$rc '$err'"
[ ! -e "$tmp/out/model.safetensors" ] && ok || bad "half-written output left behind"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
