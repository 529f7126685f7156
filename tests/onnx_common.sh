# onnx_common.sh - sourced by the cli_onnx*.sh tests (not a test itself): skips (exit 77, with the
# reason) under the sanitizer / emulated builds, without ../shared's fixture $ONNX_FIXTURE, node,
# onnxruntime-node (scripts/deps.sh puts it in build/npm) or the ONNX export (EVLM_ONNX=OFF);
# otherwise sets S, F (fixtures), RUN (scripts/ort_run.mjs) and, through cli_common.sh, BIN, tmp
# (removed on exit), the counters pass / fail and the helpers ok, bad and err.
S="${EVLM_SHARED:-}"
F="$S/fixtures"
if [ "${EVLM_SANITIZED:-0}" = 1 ]; then echo "SKIP: sanitizer / emulated build"; exit 77; fi
if [ ! -d "$F/$ONNX_FIXTURE" ]; then echo "SKIP: $F not found"; exit 77; fi
if ! command -v node >/dev/null; then echo "SKIP: node not found (scripts/deps.sh)"; exit 77; fi
RUN="$EVLM_SRC/scripts/ort_run.mjs"
if ! node -e "require(process.argv[1] + '/build/npm/node_modules/onnxruntime-node')" \
     "$EVLM_SRC" >/dev/null 2>&1 && ! node -e "require('onnxruntime-node')" >/dev/null 2>&1; then
  echo "SKIP: onnxruntime-node not installed (scripts/deps.sh puts it in build/npm)"; exit 77
fi
. "$EVLM_SRC/tests/cli_common.sh"

e=$("$BIN" export-onnx -m "$F/$ONNX_FIXTURE" -o "$tmp/probe" --ar 8 --ctx 64 2>&1 >/dev/null)
if printf '%s' "$e" | grep -q "EVLM_ONNX=OFF"; then
  echo "SKIP: built without the ONNX export"; exit 77
fi
rm -rf "$tmp/probe"
