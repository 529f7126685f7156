#!/usr/bin/env bash
# text.sh - issue 15, 4b: text models written by evlm, run by llama.cpp (make interop).
#
# For each file: llama-completion's greedy continuation of a few prompts (--temp 0) against
# `evlm run --raw` greedy on the same file, 32 tokens; and llama-perplexity --kl-divergence
# against evlm's logits of the same token ids (tests/interop/interop_logits.c writes them in
# llama-perplexity's base-file format): top-1 agreement and mean KL over >= 256 positions.
# PASS: every prompt's 32 tokens equal, or (a near-tie flipped by float order) top-1 agreement
# >= 99 %. Prints a Markdown table; writes it to $W/text.md. Exit 1 on any FAIL.
#
# Models: aidreams260K (trained llama2.c weights, evlm convert), the SmolLM2-135M shape (evlm
# synth, random weights: the top-1 / KL test is the one that means something there), and the
# scene model's language model (trained) from the pair evlm writes for llama.cpp.
source "$(dirname "$0")/common.sh"
CORPUS="$SHARED/fixtures/corpus.txt"
AIDTYPES="${INTEROP_AID_TYPES:-f32 q8_0}"
M135TYPES="${INTEROP_135M_TYPES:-q8_0 q4_0 q4_k}"
SCENETYPES="${INTEROP_SCENE_LM_TYPES:-q8_0}"
out="$W/text.md"
fail=0
rows=()

# greedy FILE PROMPT: "equal|differs<TAB>evlm text<TAB>llama.cpp text<TAB>n_gen"
greedy() {
  local f="$1" p="$2" ej lt et ng
  ej="$("$EVLM" run -m "$f" --raw -p "$p" -n 32 -t "$T" --json 2>"$W/log/evlm_run.err")" ||
    { echo -e "error\tevlm run failed: $(tail -1 "$W/log/evlm_run.err")\t-\t0"; return; }
  et="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["text"], end="")' "$ej")"
  ng="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["n_gen"])' "$ej")"
  ll_run "$W/log/llama_completion.out" "$W/log/llama_completion.err" "$LL/llama-completion" -m "$f" -p "$p" \
    -n 32 --temp 0 --top-k 1 -no-cnv --no-display-prompt --no-warmup -s 1 -t "$T" -c 256 ||
    { echo -e "error\t-\tllama-completion failed $(grep -m1 -i 'error\|failed' "$W/log/llama_completion.err")\t$ng"; return; }
  lt="$(cat "$W/log/llama_completion.out")"
  # llama-completion ends an answer stopped at EOS with " [end of text]"; both sides rstripped
  lt="$(python3 -c 'import sys; t = sys.argv[1].rstrip(); t = t[:-13] if t.endswith("[end of text]") else t; print(t.rstrip(), end="")' "$lt")"
  et="$(python3 -c 'import sys; print(sys.argv[1].rstrip(), end="")' "$et")"
  if [ "$et" = "$lt" ]; then echo -e "equal\t$et\t$lt\t$ng"; else echo -e "differs\t$et\t$lt\t$ng"; fi
}

# kl FILE CTX CHUNKS: "top1 %<TAB>mean KLD<TAB>positions" from llama-perplexity
kl() {
  local f="$1" c="$2" n="$3" base="$W/$(basename "$1").base"
  "$LOGITS" -m "$f" -f "$CORPUS" -o "$base" -c "$c" --chunks "$n" -t "$T" >"$W/log/$(basename "$f").top1" \
    2>"$W/log/interop_logits.err" || { echo -e "error\tinterop_logits: $(tail -1 "$W/log/interop_logits.err")\t0"; return; }
  ll_run_grep "$W/log/$(basename "$f").kld" "Same top p" "$LL/llama-perplexity" -m "$f" --kl-divergence \
    --kl-divergence-base "$base" -c "$c" -b "$c" -t "$T" ||
    { echo -e "error\tllama-perplexity failed (log/$(basename "$f").kld)\t0"; return; }
  # the noise floor: evlm against itself on the same file, int8 against float activations
  "$LOGITS" -m "$f" -f "$CORPUS" -o "$base.f32act" -c "$c" --chunks "$n" -t "$T" --act f32 \
    >"$W/log/$(basename "$f").top1.f32act" 2>/dev/null || : >"$W/log/$(basename "$f").top1.f32act"
  python3 - "$W/log/$(basename "$f").kld" "$c" "$n" "$W/log/$(basename "$f").top1" "$W/log/$(basename "$f").top1.f32act" <<'EOF'
import re, sys
s = open(sys.argv[1], errors="replace").read()
top = re.search(r"Same top p:\s*([0-9.]+)", s)
kld = re.search(r"Mean\s+KLD:\s*(-?[0-9.]+)", s)
mx = re.search(r"Maximum KLD:\s*(-?[0-9.]+)", s)
c, n = int(sys.argv[2]), int(sys.argv[3])
if not top or not kld:
    print("error\tno KL summary in llama-perplexity's output\t0")
else:
    a = [l.split()[2] for l in open(sys.argv[4]) if l.strip()]
    b = [l.split()[2] for l in open(sys.argv[5]) if l.strip()]
    floor = "%.3f" % (100.0 * sum(x == y for x, y in zip(a, b)) / len(a)) if a and len(a) == len(b) else "-"
    print("%s\t%s (max %s)\t%d\t%s" % (top.group(1), kld.group(1), mx.group(1) if mx else "?", n * (c - 1 - c // 2), floor))
EOF
}

# check NAME FILE CTX CHUNKS PROMPT...
check() {
  local name="$1" f="$2" c="$3" n="$4"
  shift 4
  local eq=0 tot=0 notes="" g st et lt ng
  for p in "$@"; do
    g="$(greedy "$f" "$p")"
    IFS=$'\t' read -r st et lt ng <<<"$g"
    tot=$((tot + 1))
    if [ "$st" = equal ]; then
      eq=$((eq + 1))
    else
      notes+="prompt '$p': evlm '$et' / llama.cpp '$lt'; "
    fi
  done
  local k top kld npos floor res
  k="$(kl "$f" "$c" "$n")"
  IFS=$'\t' read -r top kld npos floor <<<"$k"
  res=FAIL
  if [ "$eq" = "$tot" ]; then res=PASS; fi
  if [ "$top" != error ] && python3 -c "import sys; sys.exit(0 if float('$top') >= 99.0 else 1)"; then
    [ "$res" = PASS ] || { res=PASS; notes+="greedy differs, top-1 >= 99 % (near-tie); "; }
  fi
  [ "$top" = error ] && notes+="KL: $kld; "
  [ "$res" = PASS ] || fail=1
  rows+=("| $name | $(basename "$f") | $eq / $tot | $top | $floor | $kld | $npos | $res | ${notes%; } |")
  echo "${rows[-1]}" >&2
}

mkdir -p "$W/log"
t0=$(date +%s)

# aidreams260K: trained llama2.c weights; its context is 128 positions (5 chunks: 315 positions)
R="$SHARED/reference/llama2c"
if [ -f "$R/aidreams260K.bin" ]; then
  [ -f "$W/aid/config.json" ] || "$EVLM" convert --from llama2c "$R/aidreams260K.bin" "$R/tok512.bin" "$W/aid" >/dev/null
  for t in $AIDTYPES; do
    f="$W/aid-$t.gguf"
    fresh "$f" || evlm_pair "$W/aid" "$t" "$f" >"$W/log/aid-$t.write" 2>&1 ||
      { rows+=("| aidreams260K | aid-$t.gguf | | | | | FAIL | evlm could not write it: $(tail -1 "$W/log/aid-$t.write") |"); fail=1; continue; }
    check aidreams260K "$f" 128 5 "I dreamed" "The machine" "Once upon a time"
  done
else
  rows+=("| aidreams260K | | | | | | SKIP | $R not found |")
fi

# the SmolLM2-135M shape (random weights from evlm synth; the real SmolVLM tokenizer)
cfg="$SHARED/reference/smolvlm-256m-instruct/config.json"
if [ -f "$cfg" ] && [ -n "$M135TYPES" ]; then
  [ -f "$W/m135/config.json" ] || "$EVLM" synth --config "$cfg" -o "$W/m135" --dtype bf16 --text-only >/dev/null
  for t in $M135TYPES; do
    f="$W/m135-$t.gguf"
    fresh "$f" || evlm_pair "$W/m135" "$t" "$f" >"$W/log/m135-$t.write" 2>&1 ||
      { rows+=("| SmolLM2-135M shape | m135-$t.gguf | | | | | FAIL | evlm could not write it: $(tail -1 "$W/log/m135-$t.write") |"); fail=1; continue; }
    check "SmolLM2-135M shape (random)" "$f" 512 1 "The car" "A driver"
  done
fi

# the scene model's language model (trained), from the pair written for llama.cpp
S="$SHARED/models/scenes-vlm"
if [ -f "$S/config.json" ]; then
  for t in $SCENETYPES; do
    f="$W/scenes-$t.gguf"
    fresh "$f" || evlm_pair "$S" "$t" "$f" >"$W/log/scenes-$t.write" 2>&1 ||
      { rows+=("| scene model LM | scenes-$t.gguf | | | | | FAIL | evlm could not write it: $(tail -1 "$W/log/scenes-$t.write") |"); fail=1; continue; }
    check "scene model LM" "$f" 512 1 "The driver" "A red car"
  done
fi

{
  echo "### 4b: text models, greedy continuation and top-1 / KL (llama-completion, llama-perplexity)"
  echo
  echo "| model | file | greedy 32 tokens equal (prompts) | top-1 agreement % | evlm int8 vs float act. top-1 % | mean KL (max) | positions | result | notes |"
  echo "|---|---|---:|---:|---:|---:|---:|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Wall time $(($(date +%s) - t0)) s. Greedy: \`evlm run -m FILE --raw -p P -n 32 --json\` vs \`llama-completion -m FILE -p P -n 32 --temp 0 -no-cnv\`. KL: \`interop_logits -m FILE -f corpus.txt -c C --chunks K -o BASE\` (evlm's logits as llama-perplexity's base file), then \`llama-perplexity -m FILE --kl-divergence --kl-divergence-base BASE -c C -b C\`: llama.cpp's logits on the same ids against evlm's (KL(evlm || llama.cpp), base quantized to 16 bits by the file format). The noise-floor column: evlm against itself on the same file and positions, its default int8 activations against float activations (\`interop_logits --act f32\`): how often rounding alone moves the top-1 on this model (for an F32 file both are the same computation)."
} >"$out"
cat "$out"
exit $fail
