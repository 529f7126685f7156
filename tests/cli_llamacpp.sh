#!/usr/bin/env bash
# llama.cpp's layout through the CLI: `evlm export-gguf` (f16) and `evlm quantize --format
# llamacpp` (q8_0, q4_k_m, --mmproj naming the projector) write the language model file and the
# mmproj file of the scene model; `evlm run` on the pair (mmproj found beside the model, or
# --mmproj) answers as on the Hugging Face folder; a text model gets no mmproj; --mmproj without
# --format llamacpp and added tensors in llama.cpp's layout fail with one clear line.
# (What llama.cpp's loaders need: test_llamacpp; llama.cpp itself: make interop.)
set -u
S="${EVLM_SHARED:-}"
M="$EVLM_SRC/models/scenes-vlm"; D="$S/datasets/scenes-dev"
if [ ! -f "$D/fatigue_000.png" ]; then echo "SKIP: $D not found"; exit 77; fi
. "$EVLM_SRC/tests/cli_common.sh"
img="$D/fatigue_000.png"; q="Describe the image."
ref=$("$BIN" run -m "$M" --image "$img" -p "$q" -n 24 2>/dev/null)

"$BIN" export-gguf -m "$M" -o "$tmp/f16.gguf" -q --json > /dev/null || bad "export-gguf"
[ -f "$tmp/f16.gguf" ] && [ -f "$tmp/mmproj-f16.gguf" ] && ok || bad "export-gguf: the pair"
a=$("$BIN" run -m "$tmp/f16.gguf" --image "$img" -p "$q" -n 24 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$ref" ] && ok || bad "f16 pair answers '$a', the folder '$ref'"

"$BIN" quantize -m "$M" -o "$tmp/q8.gguf" --type q8_0 --format llamacpp -q --json > /dev/null || bad "quantize q8_0 llamacpp"
[ -f "$tmp/mmproj-q8.gguf" ] && ok || bad "q8_0: no mmproj"
"$BIN" run -m "$tmp/q8.gguf" --image "$img" -p "$q" -n 24 2>/dev/null | grep -q "drowsy" && ok || bad "q8_0 pair answer"

"$BIN" quantize -m "$M" -o "$tmp/q4km.gguf" --type q4_k_m --format llamacpp --mmproj "$tmp/vision.gguf" -q --json > "$tmp/q4km.json" || bad "quantize q4_k_m llamacpp"
[ -f "$tmp/vision.gguf" ] && [ ! -e "$tmp/mmproj-q4km.gguf" ] && ok || bad "--mmproj path"
"$BIN" run -m "$tmp/q4km.gguf" --mmproj "$tmp/vision.gguf" --image "$img" -p "$q" -n 24 >/dev/null 2>&1 && ok || bad "run --mmproj"
err "mmproj" "$BIN" run -m "$tmp/q4km.gguf" --image "$img" -p "$q" -n 4   # its projector is not beside it

"$BIN" export-gguf -m "$S/fixtures/llama-tiny" -o "$tmp/text.gguf" -q --json > /dev/null || bad "export-gguf text"
[ -f "$tmp/text.gguf" ] && [ ! -e "$tmp/mmproj-text.gguf" ] && ok || bad "text model: no mmproj"

err "format llamacpp" "$BIN" quantize -m "$M" -o "$tmp/x.gguf" --type q8_0 --mmproj "$tmp/y.gguf"
err "format takes" "$BIN" export-gguf -m "$M" -o "$tmp/x.gguf" --format onnx
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
