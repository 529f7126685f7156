#!/usr/bin/env bash
# Every bad file or argument gives a one-line error naming what is wrong, exit code 1, and
# never a crash (a signal gives 128+N). Also checks the tokenize / logits output contracts.
set -u
BIN="$EVLM_BIN"
F="${EVLM_SHARED:-}/fixtures/llama-tiny"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
# expect_err WHAT GREP_PATTERN -- command...
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
expect_err "no command" "usage" -- bash -c "\"$BIN\" 2>&1 | head -1 >&2; exit 1"
expect_err "unknown command" "unknown command" -- bash -c "\"$BIN\" frobnicate 2>&1 | head -1 >&2; exit 1"
expect_err "unknown option" "unknown option '--bogus'" -- "$BIN" run --bogus
expect_err "missing value" "needs a value" -- "$BIN" run -m
expect_err "bad integer" "needs an integer" -- "$BIN" run -m x -p y -n abc
expect_err "bad temp" "needs a number" -- "$BIN" run -m x -p y --temp -1
expect_err "no model" "no model given" -- "$BIN" run -p hi
expect_err "bad head" "--head takes int8 or float" -- "$BIN" run -m x -p y --head fp8
expect_err "bad lookahead" "--lookahead needs W,N,G" -- "$BIN" run -m x -p y --lookahead 1,1
expect_err "lookahead range" "--lookahead needs W,N,G" -- "$BIN" eval -m x --dataset y --lookahead 2,17,2
expect_err "prompt lookup range" "--prompt-lookup needs an integer in \[0, 64\]" -- "$BIN" bench -m x --prompt-lookup 99
expect_err "missing folder" "/nonexistent: not a model folder" -- "$BIN" run -m /nonexistent -p hi
expect_err "info missing" "no such file" -- "$BIN" info -m /nonexistent
expect_err "convert format" "unknown source format" -- "$BIN" convert --from gguf a b c
expect_err "convert missing" "no-such.bin" -- "$BIN" convert --from llama2c "$tmp/no-such.bin" "$tmp/t.bin" "$tmp/o"

if [ -f "$F/config.json" ]; then
  m="$tmp/m"; mkdir "$m"; cp "$F"/*.json "$F/model.safetensors" "$m/"
  expect_err "no template" "no chat template" -- "$BIN" run -m "$m" -p hi
  expect_err "no prompt" "no prompt given" -- "$BIN" run -m "$m" --raw
  expect_err "lookahead sampling" "need greedy decoding" -- "$BIN" run -m "$m" --raw -p hi --temp 0.7 --lookahead 2,3,2
  expect_err "logits no out" "no output file" -- "$BIN" logits -m "$m" -p hi --raw
  # corrupt files, one at a time
  cp "$m/config.json" "$tmp/config.json"
  echo '{"architectures": ["LlamaForCausalLM"], "hidden_size": ' > "$m/config.json"
  expect_err "bad json" "config.json: invalid JSON" -- "$BIN" run -m "$m" -p hi --raw
  python3 -c "import json;c=json.load(open('$tmp/config.json'));c['num_attention_heads']=3;json.dump(c,open('$m/config.json','w'))"
  expect_err "bad heads" "config.json" -- "$BIN" run -m "$m" -p hi --raw
  python3 -c "import json;c=json.load(open('$tmp/config.json'));c['architectures']=['BertModel'];json.dump(c,open('$m/config.json','w'))"
  expect_err "bad arch" "BertModel" -- "$BIN" run -m "$m" -p hi --raw
  python3 -c "import json;c=json.load(open('$tmp/config.json'));c['hidden_size']=128;json.dump(c,open('$m/config.json','w'))"
  expect_err "shape mismatch" "model.safetensors" -- "$BIN" run -m "$m" -p hi --raw
  cp "$tmp/config.json" "$m/config.json"
  cp "$m/model.safetensors" "$tmp/w"
  head -c 5000 "$tmp/w" > "$m/model.safetensors"
  expect_err "truncated weights" "model.safetensors" -- "$BIN" run -m "$m" -p hi --raw
  printf '\xff\xff\xff\xff\xff\xff\xff\x7f' > "$m/model.safetensors"
  expect_err "huge header" "model.safetensors" -- "$BIN" info -m "$m"
  cp "$tmp/w" "$m/model.safetensors"
  echo '{"model": {"type": "Unigram"}}' > "$m/tokenizer.json"
  expect_err "bad tokenizer" "tokenizer.json" -- "$BIN" run -m "$m" -p hi --raw
  cp "$F/tokenizer.json" "$m/"
  expect_err "invalid utf8" "UTF-8" -- "$BIN" run -m "$m" -p $'\xff\xfe' --raw
  expect_err "tokenize bad stdin" "expected a JSON array" -- bash -c "echo '{}' | \"$BIN\" tokenize -m \"$m\""
  expect_err "decode bad id" "" -- bash -c "echo '[[99999]]' | \"$BIN\" tokenize -m \"$m\" --decode"

  # output contracts
  out=$(echo '["Hello world", "<|im_start|>user"]' | "$BIN" tokenize -m "$m")
  [ "$out" = "[[42, 71, 414, 81, 279, 269, 592], [1, 87, 526]]" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL tokenize: $out"; }
  out=$(echo '[[42, 71, 414, 81, 279, 269, 592]]' | "$BIN" tokenize -m "$m" --decode)
  [ "$out" = '["Hello world"]' ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL decode: $out"; }
  info=$("$BIN" logits -m "$m" -p "Hello world" --raw --out "$tmp/l.bin")
  sz=$(stat -c %s "$tmp/l.bin")
  [ "$info" = '{"ids": [42, 71, 414, 81, 279, 269, 592], "n_vocab": 680}' ] && [ "$sz" -eq $((7 * 680 * 4)) ] &&
    pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL logits: $info size $sz"; }
  "$BIN" info -m "$m" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["n_params"] == 129856' &&
    pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL info --json"; }
else
  echo "SKIP: fixture checks ($F not found)"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
