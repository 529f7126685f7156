/*
 * onnx_vision.h - the vision half of evlm_export_onnx (src/npu/onnx_vision.c): the Idefics3 /
 * SmolVLM tower and connector as one static-shape float32 ONNX graph of a fixed tile count, its
 * own external weight file, and its part of manifest.json; Qwen2-VL's tower + PatchMerger for one
 * fixed patch grid. Not here: the decoder graphs (onnx_decoder.c), a quantized Qwen2-VL tower.
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
 * evlm__onnx_vision_plan, > 0) and adds the graph to graphs and a "vision" object to root.
 * act_bits 0: float32; 16 or 8: the QDQ graph (int8 weights per output channel, activations of
 * act_bits at qdq_vision.h's points), its encodings calibrated on the images of the .jsonl
 * dataset calib (refused, naming why, when it is not one or has no image), written to
 * dir/vision.encodings.json and the vision object's "quantization". */
evlm_status evlm__onnx_vision_write(const evlm_model *m, const char *dir, int n_tiles, int opset,
                                    int act_bits, const char *calib, cJSON *root, cJSON *graphs);

/* Qwen2-VL: writes dir/vision.onnx and dir/vision.weights.bin, the tower + PatchMerger for one
 * still image of grid_h x grid_w patches, and adds the graph and a "vision" object (tower
 * "qwen2vl", grid) to the manifest. Errors: not a Qwen2-VL model, a grid that is not multiples
 * of the merge size, a tanh-GELU tower. */
evlm_status evlm__onnx_qwen2vl_write(const evlm_model *m, const char *dir, int grid_h, int grid_w,
                                     int opset, cJSON *root, cJSON *graphs);

#endif
