/*
 * onnx_parts.h - the ONNX export's part split (onnx_decoder.c): which decoder layers each graph
 * part holds. One source of truth with the planner: for a target the split IS the planner's
 * (evlm__plan_compute on the text decoder's config at the export's precision, fp32 planned as the
 * fp16 it runs in on the HTP), so a plan and an export of the same config cannot disagree; a
 * forced count (evlm_onnx_params.parts, for tests) splits the layers evenly.
 *
 * Not here: writing the parts (onnx_decoder.c), the planner's accounting (plan.c).
 */
#ifndef EVLM_NPU_ONNX_PARTS_H
#define EVLM_NPU_ONNX_PARTS_H

#include "evlm_npu.h"
#include "io/hf_config.h"

typedef struct evlm__onnx_part {
    int first, end;       /* decoder layers [first, end); first == end: none */
    bool embedding, head; /* holds the token embedding / the final norm and LM head */
} evlm__onnx_part;

/* The parts of a decoder of config c exported at precision prec (EVLM_NPU_DEFAULT: fp32) for
 * target t (NULL: generic, one part) with ar / ctx, or forced > 0 parts of even layer ranges
 * (EVLM_ERR_ARG when forced exceeds the layer count). parts has room for EVLM_PLAN_MAX_PARTS. */
evlm_status evlm__onnx_split(const evlm_decoder_config *c, const evlm_npu_target_info *t,
                             evlm_npu_precision prec, int ar, int ctx, int forced,
                             evlm__onnx_part *parts, int *n);

#endif
