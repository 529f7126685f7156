#!/usr/bin/env bash
# vlm.sh - issue 15, 4a and 4c: the scene model as a llama.cpp pair (language model + mmproj)
# answering the 90 scenes-dev questions in llama-mtmd-cli and in evlm, on the same files
# (make interop). Then the quality target: `evlm quality` against bf16 of evlm's own Q4_K_M
# and of llama-quantize's Q4_K_M of the same F16 export.
#
# 4a: pairs written by evlm (INTEROP_VLM_TYPES, default q8_0 q4_k).
# 4c: pairs written by llama.cpp: llama-quantize turns evlm's F16 export into Q4_K_M and Q8_0
#     (the projector stays the F16 export's mmproj), read back by evlm with --mmproj.
# For each pair: greedy answers (64 tokens at most) of `evlm eval -v` and of llama-mtmd-cli
# --temp 0; PASS when >= 95 % of the items are equal. Every differing item is listed.
# Writes $W/vlm.md and $W/vlm_items.md (the differing items). Exit 1 on any FAIL.
source "$(dirname "$0")/common.sh"
S="$SHARED/models/scenes-vlm"
DS="$SHARED/datasets/scenes-dev/dev.jsonl"
CORPUS="$SHARED/fixtures/corpus.txt"
TYPES="${INTEROP_VLM_TYPES-q8_0 q4_k}"
LQTYPES="${INTEROP_LQ_TYPES-Q4_K_M Q8_0}"
N_ITEMS="${INTEROP_ITEMS:-0}" # 0 = every item
out="$W/vlm.md"
items="$W/vlm_items.md"
mkdir -p "$W/log"
if [ ! -f "$S/config.json" ] || [ ! -f "$DS" ]; then
  echo "vlm.sh: SKIP: $S or $DS not found" | tee "$out"
  exit 0
fi
ds="$W/dev.jsonl"
dsdir="$(cd "$(dirname "$DS")" && pwd)"
# the items (INTEROP_ITEMS of them, 0 = all) with absolute image paths: the copy lives in $W
python3 - "$DS" "$N_ITEMS" "$dsdir" >"$ds" <<'EOF'
import json, os, sys
n = int(sys.argv[2])
items = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for d in items[:n] if n > 0 else items:
    d["image"] = os.path.join(sys.argv[3], d["image"])
    print(json.dumps(d))
EOF
fail=0
rows=()
: >"$items"

# evlm_answers LM MMPROJ OUT.tsv: image<TAB>question<TAB>answer per item, from evlm eval -v
evlm_answers() {
  "$EVLM" eval -m "$1" --mmproj "$2" --dataset "$ds" -v -n 64 -t "$T" --json >"$W/log/eval.json" 2>"$W/log/eval.err" ||
    { echo "evlm eval failed: $(tail -1 "$W/log/eval.err")" >&2; return 1; }
  python3 - "$W/log/eval.err" "$3" <<'EOF'
import re, sys
rows = []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r'^(ok  |FAIL) (\S+) \| (.*) \| got "(.*)" want "(.*)"$', line.rstrip("\n"))
    if m: rows.append("%s\t%s\t%s" % (m.group(2), m.group(3), m.group(4)))
open(sys.argv[2], "w").write("".join(r + "\n" for r in rows))
EOF
}

# llama_answers LM MMPROJ OUT.tsv: the same from llama-mtmd-cli, one run per item
llama_answers() {
  python3 - "$ds" >"$W/log/items.tsv" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    if line.strip():
        d = json.loads(line)
        print("%s\t%s" % (d["image"], d["question"]))
EOF
  : >"$3"
  local img q a
  while IFS=$'\t' read -r img q; do
    ll_run "$W/log/mtmd.out" "$W/log/mtmd.err" "$LL/llama-mtmd-cli" -m "$1" --mmproj "$2" --image "$img" \
      -p "$q" -n 64 --temp 0 --top-k 1 -t "$T" --no-warmup -v ||
      { echo "llama-mtmd-cli failed on $img: $(grep -m1 -i 'error\|fail' "$W/log/mtmd.err")" >&2; return 1; }
    # its answer, and the prompt its chat layer rendered (-v logs it), image marker as evlm's
    python3 - "$W/log/mtmd.out" "$W/log/mtmd.err" "$img" "$q" >>"$3" <<'EOF2'
import json, re, sys
a = open(sys.argv[1]).read().strip().replace("\n", " ")
m = re.search(r"formatted_chat\.prompt: (.*?)\n(?=[0-9.]+ [A-Z] )", open(sys.argv[2], errors="replace").read(), re.S)
p = m.group(1).replace("<__media__>", "<image>") if m else ""
print("%s\t%s\t%s\t%s" % (sys.argv[3], sys.argv[4], a, json.dumps(p)))
EOF2
  done <"$W/log/items.tsv"
}

# evlm_same_prompt LM MMPROJ LLAMA.tsv OUT.tsv: evlm's greedy answers on the prompt llama.cpp
# rendered for each item (column 4 of LLAMA.tsv), through `evlm run --raw`
evlm_same_prompt() {
  : >"$4"
  local img q a p t
  while IFS=$'\t' read -r img q a p; do
    t="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]), end="")' "$p")"
    [ -n "$t" ] || { echo "no rendered prompt from llama.cpp for $img" >&2; return 1; }
    a="$("$EVLM" run -m "$1" --mmproj "$2" --image "$img" --raw -p "$t" -n 64 -t "$T" --json </dev/null |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["text"].strip().replace("\n", " "))')" || return 1
    printf '%s\t%s\t%s\n' "$img" "$q" "$a" >>"$4"
  done <"$3"
}

# compare NAME WRITER LM MMPROJ
compare() {
  local name="$1" writer="$2" lm="$3" mm="$4" te tl
  local ev="$W/log/$name.evlm.tsv" lc="$W/log/$name.llama.tsv"
  te=$(date +%s)
  evlm_answers "$lm" "$mm" "$ev" || { rows+=("| $name | $writer | | | | | | | | | FAIL (evlm) |"); fail=1; return; }
  te=$(($(date +%s) - te))
  tl=$(date +%s)
  llama_answers "$lm" "$mm" "$lc" || { rows+=("| $name | $writer | | | | | | | | | FAIL (llama.cpp) |"); fail=1; return; }
  tl=$(($(date +%s) - tl))
  local es="$W/log/$name.evlm_same.tsv" ts
  ts=$(date +%s)
  evlm_same_prompt "$lm" "$mm" "$lc" "$es" || { rows+=("| $name | $writer | | | | | | | | | | | FAIL (evlm run) |"); fail=1; return; }
  ts=$(($(date +%s) - ts))
  local own
  own="$(python3 - "$ev" "$lc" <<'EOF'
import sys
ev = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
lc = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
print("%d / %d" % (sum(e[2].strip() == l[2].strip() for e, l in zip(ev, lc)), len(lc)))
EOF
)"
  local r
  local dif="$W/log/$name.diff.tsv"
  r="$(python3 - "$es" "$lc" "$ds" "$name" "$dif" <<'EOF'
import json, sys
ev = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
lc = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
want = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
n = len(want)
if len(ev) != n or len(lc) != n:
    print("error\t%d evlm answers, %d llama.cpp answers, %d items" % (len(ev), len(lc), n)); sys.exit()
same = acc_e = acc_l = 0
diff = []
for e, l, w in zip(ev, lc, want):
    a_e, a_l, gt = e[2].strip(), l[2].strip(), w["answer"].strip()
    acc_e += a_e == gt; acc_l += a_l == gt
    if a_e == a_l: same += 1
    else: diff.append("\t".join((w["image"], w["question"], a_e, a_l, gt)))
open(sys.argv[5], "w").write("".join(d + "\n" for d in diff))
print("%d\t%d\t%.1f\t%.1f\t%.1f" % (same, n, 100.0 * same / n, 100.0 * acc_e / n, 100.0 * acc_l / n))
EOF
)"
  local same n pct ae al res
  IFS=$'\t' read -r same n pct ae al <<<"$r"
  if [ "$same" = error ]; then rows+=("| $name | $writer | | | | | | | | | FAIL ($n) |"); fail=1; return; fi
  # every differing item, with how close evlm's own choice was where the answers part
  {
    echo
    echo "#### $name: $((n - same)) differing item(s)"
    if [ "$same" != "$n" ]; then
      echo
      echo "| image | question | evlm | llama.cpp | reference | where they part (evlm on its own chat rendering) |"
      echo "|---|---|---|---|---|---|"
      local k=0 why
      while IFS=$'\t' read -r img q a_e a_l gt; do
        k=$((k + 1))
        if [ $k -le "${INTEROP_WHY_MAX:-30}" ]; then
          why="$(python3 "$ROOT/tests/interop/why.py" "$EVLM" "$lm" "$mm" "$img" "$q" "$a_l" "$T" 2>&1 </dev/null | tail -1)"
        else why="(not analysed)"; fi
        echo "| $(basename "$img") | $q | $a_e | $a_l | $gt | $why |"
      done <"$dif"
    fi
  } >>"$items"
  res=PASS
  python3 -c "import sys; sys.exit(0 if $same >= 0.95 * $n else 1)" || { res=FAIL; fail=1; }
  rows+=("| $name | $writer | $same / $n | $pct | $own | $ae | $al | $ts | $te | $tl | $res |")
  echo "${rows[-1]}" >&2
}

t0=$(date +%s)
# 4a: pairs written by evlm
for t in $TYPES; do
  f="$W/scenes-$t.gguf"
  fresh "$f" || evlm_pair "$S" "$t" "$f" >"$W/log/scenes-$t.write" 2>&1 ||
    { rows+=("| scenes-$t | evlm | | | | | | | | | FAIL (write: $(tail -1 "$W/log/scenes-$t.write")) |"); fail=1; continue; }
  compare "scenes-$t" "evlm quantize --type $t" "$f" "$(mmproj_of "$f")"
done

# 4c: llama-quantize on evlm's F16 export; the projector stays the F16 export's
f16="$W/scenes-f16.gguf"
fresh "$f16" || evlm_pair "$S" f16 "$f16" >"$W/log/scenes-f16.write" 2>&1 ||
  { rows+=("| scenes-f16 | evlm export-gguf | | | | | | | | | FAIL (write: $(tail -1 "$W/log/scenes-f16.write")) |"); fail=1; }
if [ -f "$f16" ]; then
  for t in $LQTYPES; do
    f="$W/lq-$t.gguf"
    fresh "$f" || "$LL/llama-quantize" "$f16" "$f" "$t" "$T" >"$W/log/lq-$t.log" 2>&1 ||
      { rows+=("| lq-$t | llama-quantize | | | | | | | | | FAIL (llama-quantize: $(grep -m1 -i 'error\|fail' "$W/log/lq-$t.log")) |"); fail=1; continue; }
    compare "lq-$t" "llama-quantize F16 -> $t" "$f" "$(mmproj_of "$f16")"
  done
fi

# the quality target: evlm's Q4_K_M and llama-quantize's, both against bf16 (the model folder)
qrows=()
qvals=()
quality() { # NAME LM (its mmproj beside it: --mmproj would also apply to -m)
  "$EVLM" quality -m "$S" -q "$2" --text "$CORPUS" --max-tokens "${INTEROP_KL_TOKENS:-8192}" \
    --dataset "$ds" -t "$T" --json \
    >"$W/log/quality-$1.json" 2>"$W/log/quality-$1.err" ||
    { qrows+=("| $1 | failed: $(tail -1 "$W/log/quality-$1.err") | | | | |"); return 1; }
  qvals+=("$(python3 -c 'import json,sys; j=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(j["kl_mean"], j["accuracy_quant"])' "$W/log/quality-$1.json")")
  qrows+=("$(python3 - "$W/log/quality-$1.json" "$1" "$2" <<'EOF'
import json, os, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
def g(*ks):
    for k in ks:
        if k in j: return j[k]
    return float("nan")
print("| %s | %.1f | %.6f | %.5f | %.2f | %.1f (bf16 %.1f) |" % (sys.argv[2], os.path.getsize(sys.argv[3]) / 1e6,
      g("kl_mean"), g("kl_p99"), 100 * g("top1_agreement"), 100 * g("accuracy_quant"), 100 * g("accuracy_ref")))
EOF
)")
}
eq="$W/scenes-q4_k_m.gguf"
# the projector at f16 as in the F16 export that llama-quantize starts from (it keeps the mmproj)
fresh "$eq" || evlm_pair "$S" q4_k_m "$eq" --vision f16 >"$W/log/scenes-q4_k_m.write" 2>&1 || qrows+=("| evlm q4_k_m | write failed: $(tail -1 "$W/log/scenes-q4_k_m.write") | | | | |")
[ -f "$eq" ] && quality "evlm quantize --type q4_k_m" "$eq"
if [ -f "$W/lq-Q4_K_M.gguf" ]; then
  ln -sf "$(basename "$(mmproj_of "$f16")")" "$(mmproj_of "$W/lq-Q4_K_M.gguf")"
  quality "llama-quantize Q4_K_M" "$W/lq-Q4_K_M.gguf"
fi

qres="FAIL (not measured)"
if [ ${#qvals[@]} = 2 ]; then
  qres="$(python3 -c '
import sys
ke, ae = map(float, sys.argv[1].split()); kl, al = map(float, sys.argv[2].split())
ok = ke <= kl and ae >= al
print("%s: evlm mean KL %.6f vs llama.cpp %.6f (%s), accuracy %.1f %% vs %.1f %%" % ("PASS" if ok else "FAIL", ke, kl,
      "%.0f %% lower" % (100 * (1 - ke / kl)) if kl > 0 and ke <= kl else "higher", 100 * ae, 100 * al))' "${qvals[0]}" "${qvals[1]}")"
fi
case "$qres" in PASS*) ;; *) fail=1 ;; esac
{
  echo "### 4a, 4c: the scene model's pair in llama-mtmd-cli and in evlm ($(wc -l <"$ds") scenes-dev items)"
  echo
  echo "| pair | written by | equal answers (same prompt) | equal % | equal with each one's own chat rendering | evlm accuracy % (same prompt) | llama.cpp accuracy % | evlm run wall s | evlm eval wall s | llama.cpp wall s | result (>= 95 %) |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Same prompt: for each item \`evlm run -m LM.gguf --mmproj mmproj-LM.gguf --image IMG --raw -p PROMPT -n 64\`, PROMPT being the text llama-mtmd-cli's chat layer rendered for that item (its -v log; <__media__> written <image>): both runtimes see the same text, so this compares the files (weights, tokenizer, projector, image preprocessing). llama.cpp renders the SmolVLM template from a plain-text user message as \`<|im_start|>User: <image>QUESTION<end_of_utterance>\\nAssistant:\`, a space after \`User:\`; transformers and evlm render the image-first typed message as \`User:<image>...\`, no space. That one token moves plate readings: the column 'own chat rendering' compares \`evlm eval\` (evlm's rendering) with llama.cpp's answers."
  echo "evlm eval: \`evlm eval -m LM.gguf --mmproj mmproj-LM.gguf --dataset dev.jsonl -v -n 64 -t $T\` (one process for all items)."
  echo "llama.cpp: \`llama-mtmd-cli -m LM.gguf --mmproj mmproj-LM.gguf --image IMG -p QUESTION -n 64 --temp 0 -t $T -v\`, one process per item (its wall time includes 90 model loads)."
  echo
  echo "### Differing items"
  cat "$items"
  echo
  echo "### Quality target: Q4_K_M against bf16 (\`evlm quality -m scenes-vlm -q FILE --text corpus.txt --dataset dev.jsonl\`)"
  echo
  echo "| Q4_K_M written by | file MB | mean KL | KL p99 | same top-1 % | accuracy % |"
  echo "|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${qrows[@]}"
  echo
  echo "Target (evlm's Q4_K_M at least as good as llama.cpp's: mean KL no higher, accuracy no lower): $qres."
  echo "KL over ${INTEROP_KL_TOKENS:-8192} tokens of corpus.txt (chunks of 256, KL(bf16 || Q4_K_M)); accuracy: greedy exact match on the scenes-dev items; both Q4_K_M files with the same F16 projector type."
  echo
  echo "Wall time $(($(date +%s) - t0)) s."
} >"$out"
cat "$out"
exit $fail
