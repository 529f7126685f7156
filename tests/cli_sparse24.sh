#!/usr/bin/env bash
# 2:4-sparse weights end to end: `evlm synth --pattern 2:4` on the llama-tiny fixture's config
# (bf16 and f16; every decoder matrix 2:4 by magnitude), quantized to q8_0 as well. For each file
# the logits of `evlm logits` (every prompt position) with the in-memory 2:4 forms (default) are
# byte for byte those of the same file with EVLM_SPARSE=0 (the dense R16 forms), and so are the
# greedy ids of `evlm run` (decode steps; near-constant on these random weights: the bitwise
# decode check on varied ids is test_sparse24_model), and `evlm bench`
# counts the bytes really held (fewer with the 2:4 forms: 22 / 34 of each Q8_0 matrix, 9 / 16 of
# a 16-bit one); a dense model (synth without --pattern) is unchanged by EVLM_SPARSE; an
# unsupported pattern is one clear error line.
set -u
S="${EVLM_SHARED:-}"
F="$S/fixtures/llama-tiny"
if [ ! -f "$F/config.json" ]; then echo "SKIP: $F not found"; exit 77; fi
BIN="$EVLM_BIN"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }

ids() { # model, then env assignments: the greedy ids of a fixed prompt
  env "${@:2}" "$BIN" run -m "$1" --raw -p "The quick brown fox" -n 24 -t 2 --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["output_ids"])'
}
bytes() { # model, env...: the weight bytes bench reports
  env "${@:2}" "$BIN" bench -m "$1" -p 4 -n 2 -r 1 -t 2 --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["model_bytes"])'
}

"$BIN" synth --config "$F/config.json" -o "$tmp/s24-bf16" --dtype bf16 --pattern 2:4 2>/dev/null || bad "synth bf16"
"$BIN" synth --config "$F/config.json" -o "$tmp/s24-f16" --dtype f16 --pattern 2:4 2>/dev/null || bad "synth f16"
"$BIN" synth --config "$F/config.json" -o "$tmp/dense" --dtype bf16 2>/dev/null || bad "synth dense"
"$BIN" quantize -m "$tmp/s24-bf16" -o "$tmp/s24-q8.gguf" --type q8_0 -q >/dev/null 2>&1 || bad "quantize q8_0"

for m in "$tmp/s24-bf16" "$tmp/s24-f16" "$tmp/s24-q8.gguf"; do
  "$BIN" logits -m "$m" --raw -p "The quick brown fox jumps" --out "$tmp/a.bin" -t 2 >/dev/null 2>&1
  EVLM_SPARSE=0 "$BIN" logits -m "$m" --raw -p "The quick brown fox jumps" --out "$tmp/b.bin" -t 2 >/dev/null 2>&1
  if [ -s "$tmp/a.bin" ] && cmp -s "$tmp/a.bin" "$tmp/b.bin"; then ok; else bad "$(basename "$m"): prompt logits differ"; fi
  rm -f "$tmp/a.bin" "$tmp/b.bin"
  a=$(ids "$m"); b=$(ids "$m" EVLM_SPARSE=0)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then ok; else bad "$(basename "$m"): ids '$a' (2:4) vs '$b' (dense)"; fi
  s=$(bytes "$m"); d=$(bytes "$m" EVLM_SPARSE=0)
  if [ -n "$s" ] && [ -n "$d" ] && [ "$s" -lt "$d" ]; then ok; else bad "$(basename "$m"): $s bytes (2:4) vs $d (dense)"; fi
  echo "$(basename "$m"): ids $a; weights $s bytes with the 2:4 forms, $d dense"
done
# evlm info marks the 14 layer matrices (2 layers x 7) as 2:4 and counts their in-memory bytes
for m in "$tmp/s24-bf16" "$tmp/s24-q8.gguf" "$tmp/dense"; do
  want=14; [ "$m" = "$tmp/dense" ] && want=0
  "$BIN" info -m "$m" --json > "$tmp/info.json" 2>/dev/null || bad "info $m"
  python3 - "$tmp/info.json" "$want" <<'PY' && ok || bad "info $(basename "$m")"
import json, sys
j = json.load(open(sys.argv[1])); want = int(sys.argv[2])
n = sum(t["sparse24"] for t in j["tensors"])
assert j["n_sparse24"] == n == want, (j["n_sparse24"], n, want)
assert (j["mem_bytes"] < j["n_bytes"]) == (want > 0)
assert all(t["mem_bytes"] < t["bytes"] for t in j["tensors"] if t["sparse24"])
PY
done
# every layer of the tiny model is 2:4 (the q8_0 file too: its zeros are exact int8 zeros)
a=$(bytes "$tmp/dense"); b=$(bytes "$tmp/dense" EVLM_SPARSE=0)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok; else bad "dense model: $a vs $b bytes"; fi
e=$("$BIN" synth --config "$F/config.json" -o "$tmp/x" --pattern 4:8 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && printf '%s' "$e" | grep -q "only 2:4"; then ok; else bad "pattern 4:8: rc=$rc '$e'"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
