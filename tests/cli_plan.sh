#!/usr/bin/env bash
# `evlm plan`: help, the targets table, the --json fields the issue asks for (fits, weights_bytes,
# kv_bytes, total_bytes, limit_bytes, parts, ttft_ms, decode_tok_s), the text table, and the
# errors (unknown target, bad precision, int4 block weights on V68, a context that cannot fit)
# as one line naming the limit with exit code 1.
set -u
BIN="$EVLM_BIN"
SRC="${EVLM_SRC:-.}"
C1="$SRC/tests/data/llama-3.2-1b-config.json"
C3="$SRC/tests/data/llama-3.2-3b-config.json"
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

out=$("$BIN" plan --help); ok "help" '[ $? -eq 0 ] && printf "%s" "$out" | grep -q -- "--precision"'
ok "listed" '"$BIN" --help | grep -q "^  plan "'
out=$("$BIN" plan --targets)
ok "targets" 'printf "%s" "$out" | grep -q "sa8295 (SA8295P): Hexagon V68" && printf "%s" "$out" | grep -q "sa8775 (SA8775P): Hexagon V73"'
ok "targets sources" 'printf "%s" "$out" | grep -q "ASSUMPTION"'
out=$("$BIN" plan --targets --json)
ok "targets json" 'printf "%s" "$out" | python3 -c "import json,sys; t=json.load(sys.stdin); assert [x[\"name\"] for x in t]==[\"sa8295\",\"sa8255\",\"sa8775\"]"'

# --json: the fields, and the calibration point reproduced (11.0 tok/s, 225 ms)
out=$("$BIN" plan -m "$C1" --target sa8295 --precision w4 --ctx 4096 --json)
ok "json fields" 'printf "%s" "$out" | python3 -c "
import json,sys
p=json.load(sys.stdin)
for k in [\"fits\",\"weights_bytes\",\"kv_bytes\",\"total_bytes\",\"limit_bytes\",\"parts\",\"ttft_ms\",\"decode_tok_s\"]:
    assert k in p, k
assert p[\"fits\"] is True and p[\"parts\"]==1 and p[\"precision\"]==\"w4\"
assert abs(p[\"decode_tok_s\"]-11.0)<1e-3 and abs(p[\"ttft_ms\"]-225)<1e-2
assert p[\"total_bytes\"]==p[\"weights_bytes\"]+p[\"kv_bytes\"]+p[\"activation_bytes\"]+p[\"overhead_bytes\"]
assert p[\"kv_bytes\"]==2*16*8*64*4096 and p[\"limit_bytes\"]>p[\"total_bytes\"]
"'
# the 3B prediction against AI Hub's 3.523 tok/s (context 1024)
out=$("$BIN" plan -m "$C3" --precision w4 --ctx 1024 --json)
ok "3B within 30 %" 'printf "%s" "$out" | python3 -c "import json,sys; p=json.load(sys.stdin); e=p[\"decode_tok_s\"]/3.523-1; print(\"3B decode error %+.1f %%\" % (100*e)); assert abs(e)<0.30"'
# a single-graph deployment of a model over the per-graph limit: a plan, fits false
out=$("$BIN" plan -m "$C1" --precision fp16 --ctx 1024 --max-parts 1 --json)
ok "max parts" 'printf "%s" "$out" | python3 -c "import json,sys; p=json.load(sys.stdin); assert p[\"fits\"] is False and \"per-graph\" in p[\"why\"] and p[\"parts\"]>1"'

# the text table
out=$("$BIN" plan -m "$C1")
ok "text" 'printf "%s" "$out" | grep -q "^fits:         yes" && printf "%s" "$out" | grep -q "^decode:       11.00 tok/s"'
if [ -n "${EVLM_SHARED:-}" ] && [ -d "$EVLM_SHARED/fixtures/smolvlm-tiny" ]; then
  out=$("$BIN" plan -m "$EVLM_SHARED/fixtures/smolvlm-tiny" --target sa8255)
  ok "vlm folder" 'printf "%s" "$out" | grep -q "image encode:" && printf "%s" "$out" | grep -q "in the tensors"'
  out=$("$BIN" plan -m "$EVLM_SHARED/fixtures/smolvlm-tiny/config.json" --json)
  ok "vlm config" 'printf "%s" "$out" | python3 -c "import json,sys; p=json.load(sys.stdin); assert p[\"params\"][\"total\"]==236016 and p[\"params_file\"]==-1"'
  # a GGUF file: the config.json it embeds, its tensors counted
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  if "$BIN" quantize -m "$EVLM_SHARED/fixtures/smolvlm-tiny" -o "$tmp/m.gguf" --type q8_0 >/dev/null 2>&1; then
    out=$("$BIN" plan -m "$tmp/m.gguf" --json)
    ok "gguf" 'printf "%s" "$out" | python3 -c "import json,sys; p=json.load(sys.stdin); assert p[\"params\"][\"total\"]==236016==p[\"params_file\"]"'
  else
    fail=$((fail+1)); echo "FAIL (quantize for the gguf check)"
  fi
fi

expect_err "no model" "no model given" -- "$BIN" plan --target sa8295
expect_err "unknown target" "unknown target (known: sa8295, sa8255, sa8775)" -- "$BIN" plan -m "$C1" --target sa9000
expect_err "bad precision" "--precision int3: takes fp16, w8a16, w8a8, w4a16 or w4" -- "$BIN" plan -m "$C1" --precision int3
expect_err "int4 block on V68" "w4a16 (int4 per-block weights) needs Hexagon V69 or later: sa8295 (SA8295P) is V68" -- "$BIN" plan -m "$C1" --precision w4a16
expect_err "ctx too big" "past sa8295's NPU-addressable memory of 3.75 GiB; the largest context that fits is" -- "$BIN" plan -m "$C1" --ctx 131072
expect_err "ctx past model" "max_position_embeddings (131072)" -- "$BIN" plan -m "$C1" --ctx 200000
expect_err "missing file" "/nonexistent.json: No such file" -- "$BIN" plan -m /nonexistent.json
expect_err "bad option" "unknown option '--bogus'" -- "$BIN" plan --bogus

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
