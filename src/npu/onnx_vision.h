/*
 * onnx_vision.h - the vision half of evlm_export_onnx (src/npu/onnx_vision.c): the Idefics3 /
 * SmolVLM tower and connector as one static-shape float32 ONNX graph of a fixed tile count, its
 * own external weight file, and its part of manifest.json. Not here: the decoder graphs
 * (onnx_decoder.c), Qwen2-VL's tower (refused with a message), quantized precisions.
 */
#ifndef EVLM_NPU_ONNX_VISION_H
#define EVLM_NPU_ONNX_VISION_H

#include "evlm.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

#define EVLM_ONNX_VISION_FILE    "vision.onnx"
#define EVLM_ONNX_VISION_WEIGHTS "vision.weights.bin"

/* Whether the export writes a vision graph for m with tiles (0: the default; negative: none
 * asked) and how many tiles: *n_tiles = 0 when none. Errors: tiles asked of a model without an
 * exportable tower (naming why), tiles out of range. Writes nothing. */
evlm_status evlm__onnx_vision_plan(const evlm_model *m, int tiles, int *n_tiles);

/* Writes dir/vision.onnx and dir/vision.weights.bin for n_tiles tiles (from
 * evlm__onnx_vision_plan, > 0) and adds the graph to graphs and a "vision" object to root. */
evlm_status evlm__onnx_vision_write(const evlm_model *m, const char *dir, int n_tiles, int opset,
                                    cJSON *root, cJSON *graphs);

#endif
