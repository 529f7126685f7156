/*
 * plan.h - internals of the NPU fit planner (public API: include/evlm_npu.h): the parsed model
 * (text decoder config plus the vision tower's, through the families' own config parsers), the
 * accounting with explicit effective factors, and the fit decision shared by the planner and the
 * tests that judge published sizes (the paper's verdicts).
 *
 * Not here: the targets' numbers (targets.c), printing (the CLI).
 */
#ifndef EVLM_NPU_PLAN_H
#define EVLM_NPU_PLAN_H

#include "evlm_npu.h"
#include "io/hf_config.h"
#include "vision/idefics3_config.h"
#include "vision/qwen2vl_config.h"

typedef enum evlm__plan_vision {
    EVLM_PLAN_VISION_NONE = 0,
    EVLM_PLAN_VISION_IDEFICS3, /* SigLIP tiles + pixel-shuffle connector (SmolVLM) */
    EVLM_PLAN_VISION_QWEN2VL,  /* Qwen2-VL ViT + patch merger */
} evlm__plan_vision;

typedef struct evlm__plan_model {
    evlm_decoder_config text;
    evlm__plan_vision vision;
    evlm_idefics3_config idefics3;
    evlm_qwen2vl_vision_config qwen2vl;
} evlm__plan_model;

/* A Qwen2-VL "tile" for image-encode estimates: a square image of this side (an assumption,
 * docs/NPU.md). */
#define EVLM_PLAN_QWEN2VL_TILE_PX 448
/* Runtime overhead added to every plan (an assumption: HTP runtime, context metadata, I/O). */
#define EVLM_PLAN_OVERHEAD_BYTES (64LL * 1024 * 1024)
/* Block size of w4a16's per-block scales (fp16 scale per block; an assumption). */
#define EVLM_PLAN_W4_BLOCK 64

/* Parses config.json text: the text decoder and, by model_type, the vision tower. */
evlm_status evlm__plan_parse(const char *what, const char *json, size_t len, evlm__plan_model *m);

/* The plan with the given effective factors (fractions of peak; 1 and 1 give the raw roofline
 * the calibration starts from). Checks the parameters and the target as evlm_plan_config does. */
evlm_status evlm__plan_compute(const evlm__plan_model *m, const evlm_plan_params *p, double eff_bw,
                               double eff_compute, evlm_plan *out);

/* The fit decision for a deployment of total_bytes (weights, KV, activations, overhead) whose
 * weights are split into n_parts graphs, the largest single unit (a layer) of biggest_unit
 * bytes; max_parts 0 = no bound. Writes the deciding limit in words into why. */
bool evlm__plan_decide(const evlm_npu_target_info *t, int64_t total_bytes, int n_parts,
                       int64_t biggest_unit, int max_parts, char *why, size_t cap);

#endif
