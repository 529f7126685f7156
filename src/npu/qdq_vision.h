/*
 * qdq_vision.h - the quantization points of the Idefics3 / SmolVLM vision graph, shared by its
 * QDQ export (onnx_vision.c) and the NPU numerics simulation of the tower (sim_vision.c), as
 * qdq.h is for the decoder: the same kinds of points (the inputs of every matmul with weights,
 * and the operands of the attention matmuls), the same arithmetic (qdq.h).
 *
 * Points, per layer: "v_qkv" (LayerNorm 1's output, the input of q / k / v), "v_q", "v_k", "v_v"
 * (the projections with their bias: the scores matmul's and the value matmul's other inputs),
 * "v_o" (the attention output, the input of the out projection), "v_fc1" (LayerNorm 2's output),
 * "v_fc2" (the GELU's output); outside the layers: "v_patch" (the pixel values, the patch
 * Conv's input) and "v_proj" (the pixel-shuffled rows, the connector projection's input).
 * Not points, as in the decoder: the softmax probabilities, the residual stream, LayerNorm and
 * GELU inside (float on the export's side). Not here: the decoder's points (qdq.h).
 */
#ifndef EVLM_NPU_QDQ_VISION_H
#define EVLM_NPU_QDQ_VISION_H

#include "npu/qdq.h"

#define QDQV_N_GROUPS 7 /* points per layer */

static const char *const evlm__qdqv_groups[QDQV_N_GROUPS] = {"v_qkv", "v_q",   "v_k",  "v_v",
                                                             "v_o",   "v_fc1", "v_fc2"};

/* Points of a tower of n_layers layers. */
static inline int evlm__qdqv_count(int n_layers) {
    return n_layers * QDQV_N_GROUPS + 2;
}

/* Index of a point: layer * QDQV_N_GROUPS + group; "v_patch" then "v_proj" last (layer -1);
 * -1 for anything else. */
static inline int evlm__qdqv_index(int n_layers, int layer, const char *group) {
    if (layer < 0)
        return !strcmp(group, "v_patch")  ? n_layers * QDQV_N_GROUPS
               : !strcmp(group, "v_proj") ? n_layers * QDQV_N_GROUPS + 1
                                          : -1;
    if (layer >= n_layers) return -1;
    for (int g = 0; g < QDQV_N_GROUPS; g++)
        if (!strcmp(group, evlm__qdqv_groups[g])) return layer * QDQV_N_GROUPS + g;
    return -1;
}

/* The layer (-1 outside) and group of point i of a tower of n_layers layers. */
static inline const char *evlm__qdqv_group(int n_layers, int i, int *layer) {
    if (i >= n_layers * QDQV_N_GROUPS) {
        *layer = -1;
        return i == n_layers * QDQV_N_GROUPS ? "v_patch" : "v_proj";
    }
    *layer = i / QDQV_N_GROUPS;
    return evlm__qdqv_groups[i % QDQV_N_GROUPS];
}

#endif
