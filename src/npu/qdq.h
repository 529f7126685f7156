/*
 * qdq.h - what the QDQ export (onnx_decoder.c) and the NPU numerics simulation (sim.c) share:
 * the quantization points of the text decoder, the encodings of their activations, ONNX
 * QuantizeLinear / DequantizeLinear arithmetic, and the weight quantizers, so the graph and the
 * simulation compute the same numbers.
 *
 * Points: per layer, the inputs of the q/k/v, o, gate/up and down matmuls (the decoder's
 * observer groups), the query after RoPE (the scores matmul's other input), the key (after RoPE)
 * and value rows that enter the KV cache; then the LM head's input. Activations: asymmetric
 * unsigned per-tensor (uint16 for a16, uint8 for a8; the KV cache at the target's kv_bits), range =
 * [min(min, 0), max(max, 0)] of calibration. Weights: symmetric int8 per output channel (w8*),
 * symmetric int4 per block of QDQ_BLOCK input channels (w4a16), float16 (fp16).
 *
 * Not here: the graph itself (onnx_decoder.c), the forward pass (model/decoder.c).
 */
#ifndef EVLM_NPU_QDQ_H
#define EVLM_NPU_QDQ_H

#include "evlm.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define QDQ_BLOCK    64 /* int4 weights: input channels per scale */
#define QDQ_N_GROUPS 7  /* points per layer */

/* The groups of a layer's points, in order; the head's point is "lm_head". */
static const char *const evlm__qdq_groups[QDQ_N_GROUPS] = {
    "attn_qkv", "attn_q", "kv_key", "kv_value", "attn_o", "ffn_gate_up", "ffn_down"};

/* Index of a point: layer * QDQ_N_GROUPS + group, the head's last (n_layers * QDQ_N_GROUPS);
 * -1 for a group that is not a point. */
static inline int evlm__qdq_index(int n_layers, int layer, const char *group) {
    if (layer < 0) return strcmp(group, "lm_head") ? -1 : n_layers * QDQ_N_GROUPS;
    for (int g = 0; g < QDQ_N_GROUPS; g++)
        if (!strcmp(group, evlm__qdq_groups[g])) return layer * QDQ_N_GROUPS + g;
    return -1;
}

typedef struct evlm_qdq_point {
    int bits;       /* 8 or 16 */
    float min, max; /* calibration range (float) */
    float scale;
    int32_t zp; /* zero point, in [0, 2^bits - 1] */
} evlm_qdq_point;

/* Scale and zero point of the range [mn, mx] (0 included) on 2^bits - 1 steps. */
static inline void evlm__qdq_encode(evlm_qdq_point *p) {
    double mn = p->min < 0 ? p->min : 0, mx = p->max > 0 ? p->max : 0;
    double qmax = (double)((1u << p->bits) - 1);
    double scale = (mx - mn) / qmax;
    if (!(scale > 0)) scale = 1.0 / qmax;
    p->scale = (float)scale;
    double zp = nearbyint(-mn / (double)p->scale);
    p->zp = (int32_t)(zp < 0 ? 0 : zp > qmax ? qmax : zp);
}

/* ONNX QuantizeLinear then DequantizeLinear: saturate(round_half_even(x / scale) + zp), then
 * (q - zp) * scale, in float as ONNX Runtime computes them. */
static inline float evlm__qdq_fake(float x, float scale, int32_t zp, int32_t qmax) {
    float r = nearbyintf(x / scale) + (float)zp;
    r = r < 0 ? 0 : r > (float)qmax ? (float)qmax : r;
    return (float)((int32_t)r - zp) * scale;
}

#endif
