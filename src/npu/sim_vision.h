/*
 * sim_vision.h - the vision half of evlm_npu_sim (sim.c): an export's quantized vision graph
 * (manifest.json's vision.quantization, onnx_vision.c) as a copy of the model's SigLIP tower
 * over the export's dequantized int8 weights plus a transform at qdq_vision.h's points, handed
 * to prompts as an evlm_vision_hook (model/model.h). Not here: the decoder's simulation (sim.c).
 */
#ifndef EVLM_NPU_SIM_VISION_H
#define EVLM_NPU_SIM_VISION_H

#include "model/model.h"

#include <cjson/cJSON.h>

typedef struct evlm__sim_vision evlm__sim_vision;

/* Loads the quantized vision graph the manifest j of the export in dir describes, for model m:
 * *out = NULL (and EVLM_OK) when the export's vision graph is float32 or absent. Errors name
 * the file and the entry at fault (another model's tower, a truncated weight file). */
evlm_status evlm__sim_vision_load(const evlm_model *m, const char *dir, const cJSON *j,
                                  evlm__sim_vision **out);
void evlm__sim_vision_free(evlm__sim_vision *v);
const evlm_vision_hook *evlm__sim_vision_hook(const evlm__sim_vision *v);

#endif
