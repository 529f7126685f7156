#!/usr/bin/env bash
# bench_sparse24.sh - the 2:4 measurement of docs/PERFORMANCE.md ("2:4 sparsity"): a model shape
# with every decoder matrix 2:4-zeroed by magnitude (`evlm synth --pattern 2:4`), as f16 and as
# q8_0 (`evlm quantize --type q8_0`), each benchmarked with its in-memory 2:4 forms (default) and
# as the same file with EVLM_SPARSE=0 (dense R16 forms), alternated over ROUNDS rounds (the order
# flips each round), `evlm bench -t THREADS`: decode after a 1-token prompt (-p 1 -n N_GEN) and
# prefill of P_PROMPT tokens (-p P_PROMPT -n 1). Prints one line per run and a table of medians.
#
# usage: scripts/bench_sparse24.sh [CONFIG] [OUT_DIR]
#   CONFIG   default bench/configs/qwen2-1.5b.json; OUT_DIR default build/models (models are
#            synthesized / quantized once and kept there)
#   env: EVLM (build/release/evlm), THREADS (2), ROUNDS (5), N_GEN (32), P_PROMPT (64),
#        TYPES ("q8_0 f16")
set -eu
CONFIG=${1:-bench/configs/qwen2-1.5b.json}
OUT=${2:-build/models}
EVLM=${EVLM:-build/release/evlm}
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-5}; N_GEN=${N_GEN:-32}; P_PROMPT=${P_PROMPT:-64}
TYPES=${TYPES:-q8_0 f16}
name=$(basename "$CONFIG" .json)
mkdir -p "$OUT"
src="$OUT/$name-s24-f16"
[ -f "$src/config.json" ] || "$EVLM" synth --config "$CONFIG" -o "$src" --dtype f16 --pattern 2:4
log=$(mktemp); trap 'rm -f "$log"' EXIT
for t in $TYPES; do
  m="$src"
  if [ "$t" != f16 ]; then
    m="$OUT/$name-s24-$t.gguf"
    [ -f "$m" ] || "$EVLM" quantize -m "$src" -o "$m" --type "$t" -q >/dev/null
  fi
  for r in $(seq 1 "$ROUNDS"); do
    order="1 0"; [ $((r % 2)) -eq 0 ] && order="0 1"
    for sp in $order; do
      for what in decode prefill; do
        if [ "$what" = decode ]; then args="-p 1 -n $N_GEN"; else args="-p $P_PROMPT -n 1"; fi
        # shellcheck disable=SC2086
        j=$(EVLM_SPARSE=$sp "$EVLM" bench -m "$m" $args -t "$THREADS" -r 2 --json 2>/dev/null | tail -1)
        echo "$t sparse=$sp $what $j" | tee -a "$log" | cut -c1-160
      done
    done
  done
done
python3 - "$log" "$name" "$THREADS" "$ROUNDS" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, sp, what, j = line.split(" ", 3)
    r = json.loads(j)
    key = (t, sp == "sparse=1")
    d = rows.setdefault(key, {"dec": [], "pre": [], "bytes": r.get("model_bytes", 0)})
    if what == "decode":
        d["dec"].append(r["decode_tok_s"])
    else:
        d["pre"].append(r["prefill_tok_s"])
print("\n%s, %s threads, %s rounds (median, min-max)\n" % (sys.argv[2], sys.argv[3], sys.argv[4]))
print("| weights | form | weight MB in memory | decode tok/s | prefill tok/s |")
print("|---|---|---:|---:|---:|")
for (t, sp), d in sorted(rows.items()):
    f = lambda v: "%.2f (%.2f-%.2f)" % (statistics.median(v), min(v), max(v)) if v else "-"
    print("| %s | %s | %.0f | %s | %s |" % (t, "2:4" if sp else "dense (EVLM_SPARSE=0)", d["bytes"] / 1e6, f(d["dec"]), f(d["pre"])))
for t in sorted({k[0] for k in rows}):
    s, d = rows.get((t, True)), rows.get((t, False))
    if s and d and s["dec"] and d["dec"]:
        print("%s: decode 2:4 / dense = %.2fx, prefill %.2fx, weight bytes %.3f" % (
            t, statistics.median(s["dec"]) / statistics.median(d["dec"]),
            statistics.median(s["pre"]) / statistics.median(d["pre"]), s["bytes"] / d["bytes"]))
PY
