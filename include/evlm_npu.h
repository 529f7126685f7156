/*
 * evlm_npu.h - the Qualcomm NPU path of libevlm (docs/NPU.md): static-shape ONNX graphs of a
 * loaded model for ONNX Runtime's QNN execution provider and Qualcomm's converters.
 *
 * What exists: the text decoder (Llama / Qwen2 families; a VLM's text half for text-only
 * prompts) in float32, as two graphs sharing one external weight file: AR-N prefill and AR-1
 * decode, the KV cache, positions and an additive attention mask as explicit inputs, described
 * by DIR/manifest.json. Not yet: quantized (QDQ) precisions, the vision encoder, part splits,
 * per-SoC targets (issue 19).
 */
#ifndef EVLM_NPU_H
#define EVLM_NPU_H

#include "evlm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evlm_onnx_params {
    int ar;                /* tokens of the prefill graph (AR-N), >= 1; default 128 */
    int ctx;               /* context window C of both graphs (past + new tokens), > ar;
                              0: min(1024, the model's trained context) */
    const char *precision; /* "fp32" (the only one so far); NULL: fp32 */
} evlm_onnx_params;

EVLM_API evlm_onnx_params evlm_onnx_default_params(void);

/* Writes DIR/decoder_ar{N}.onnx, DIR/decoder_ar1.onnx, DIR/decoder.weights.bin and
 * DIR/manifest.json. dir must not exist or be an empty folder; the files are written into a
 * temporary sibling folder renamed to dir at the end, so a failure leaves no half-written
 * export. Errors name the setting at fault ("ar", "ctx", "precision"). EVLM_ERR_UNSUPPORTED in
 * a build without the ONNX writer (cmake -DEVLM_ONNX=OFF). */
EVLM_API evlm_status evlm_export_onnx(const evlm_model *model, const char *dir,
                                      const evlm_onnx_params *params);

#ifdef __cplusplus
}
#endif

#endif
