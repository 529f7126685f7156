# common.sh - sourced by the make interop scripts (tests/interop/*.sh): paths, the llama.cpp
# binaries, and the evlm commands that write llama.cpp's files.
#
#   EVLM_BIN       evlm (default build/release/evlm); interop_logits sits beside it
#   EVLM_SHARED    the shared data folder (default ../shared)
#   LLAMACPP_BIN   llama.cpp binaries to use instead of building them (scripts/llamacpp.sh)
#   INTEROP_DIR    work folder (default build/interop): models, files, logs, the tables
#   INTEROP_THREADS  threads for every run, evlm and llama.cpp alike (default 1: a shared machine)
#   INTEROP_REUSE  1: keep the GGUF files of an earlier run (default: every file is written again)
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EVLM="${EVLM_BIN:-$ROOT/build/release/evlm}"
LOGITS="$(dirname "$EVLM")/interop_logits"
SHARED="${EVLM_SHARED:-$ROOT/../shared}"
W="${INTEROP_DIR:-$ROOT/build/interop}"
T="${INTEROP_THREADS:-1}"
mkdir -p "$W"

for b in "$EVLM" "$LOGITS"; do
  [ -x "$b" ] || { echo "interop: $b is missing (make build)" >&2; exit 1; }
done
# the binaries only (run.sh and make interop build them first: scripts/llamacpp.sh)
LL="$("$ROOT/scripts/llamacpp.sh" --print)" || exit 1

# evlm_pair MODEL_DIR TYPE OUT.gguf: the language model OUT.gguf and its projector
# mmproj-OUT.gguf (vision models) as llama.cpp loads them, written by evlm; float types through
# the plain export, the others through quantize (args after TYPE go to quantize)
evlm_pair() {
  local m="$1" t="$2" out="$3"
  shift 3
  case "$t" in
    f16 | bf16 | f32) "$EVLM" export-gguf -m "$m" -o "$out" --type "$t" --format llamacpp -q -t "$T" "$@" ;;
    *) "$EVLM" quantize -m "$m" -o "$out" --type "$t" --format llamacpp -q -t "$T" "$@" ;;
  esac
}

# fresh FILE: true when FILE (and its mmproj) may be reused (INTEROP_REUSE=1 and present);
# otherwise removes them so that they are written again by the code under test
fresh() {
  if [ "${INTEROP_REUSE:-0}" = 1 ] && [ -f "$1" ]; then return 0; fi
  rm -f "$1" "$(mmproj_of "$1")"
  return 1
}

# ll_run OUT ERR CMD...: a llama.cpp tool whose stdout should end in its closing blank line
# ("\n\n"); on a loaded machine a run now and then exits non-zero or prints nothing at all on
# stdout (llama.cpp's tools print through the asynchronous log worker of common/log.cpp; seen
# here with llama-completion about once in six runs under load), so a run that does is tried
# again, up to 6 times, each retry counted in $W/log/retries
ll_run() {
  local o="$1" e="$2" k
  shift 2
  for k in 1 2 3 4 5 6; do
    if "$@" >"$o" 2>"$e" </dev/null && [ "$(tail -c 2 "$o" | od -An -c | tr -d ' ')" = '\n\n' ]; then
      return 0
    fi
    echo "retry $k: $*" >>"$W/log/retries"
  done
  return 1
}

# ll_run_grep OUT PATTERN CMD...: the same for a tool whose report (stdout and stderr in OUT)
# must hold PATTERN (llama-perplexity's summary)
ll_run_grep() {
  local o="$1" pat="$2" k
  shift 2
  for k in 1 2 3 4 5 6; do
    if "$@" >"$o" 2>&1 </dev/null && grep -q "$pat" "$o"; then return 0; fi
    echo "retry $k: $*" >>"$W/log/retries"
  done
  return 1
}

# mmproj_of OUT.gguf: the projector file written beside it
mmproj_of() { echo "$(dirname "$1")/mmproj-$(basename "$1")"; }

# a line of the machine for the reports
machine() {
  local cpu
  cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  echo "$cpu, $(nproc) cores visible, $T thread(s) per run; llama.cpp $(git -C "$LL/../../src" describe --tags --always 2>/dev/null || echo '?') (node-llama-cpp 3.21.1 bundle)"
}
