/*
 * qat.h - fake quantization for quantization-aware training.
 *
 * A float matrix is replaced in the forward by the round trip of the runtime's quantizer
 * (quant/quants.h: evlm_quantize_row then evlm_dequantize_row, per block of 32 along a row) for
 * the ggml types a GGUF stores: Q4_0, Q4_1, Q8_0. The straight-through estimator passes the
 * gradient of the rounded matrix to the float one unchanged.
 *
 * With learnable block scales (LSQ, Q4_0 and Q8_0): each block of 32 has a trainable scale s
 * (initialized to the quantizer's d); the forward stores d = fp16(s) and codes
 * q = clamp(floor(w / d + 1/2), qmin, qmax) (Q4_0: [-8, 7], ggml's rounding; Q8_0: [-127, 127],
 * rounded half away from zero as ggml) and runs on d * q, the dequantization of those blocks.
 * Gradients: to w straight through inside the clamp range (0 outside), to s by LSQ's rule
 * (q - w / d inside, qmin / qmax when clamped), straight through the fp16 rounding.
 *
 * Which matrices are quantized (evlm_tqat_rule) mirrors `evlm quantize` (compress/quantize.c:
 * classify() and can_hold()); test_train_qat checks it against a file quantize writes.
 * Not here: the layer walks (tdecoder.c, tvision.c use evlm_tqat_w / _g), the export
 * (qat_export.c).
 */
#ifndef EVLM_TRAIN_QAT_H
#define EVLM_TRAIN_QAT_H

#include "quant/quants.h"
#include "train/ops.h"
#include "train/params.h"

#include <stdbool.h>

/* Whether a matrix of input width cols is fake-quantized (cols a multiple of 32). */
bool evlm_tqat_applies(int cols);

/* dst (rows, cols) = dequantize(quantize_q4_0(w)) row by row (cols a multiple of 32); rows are
 * split over the pool's threads (bitwise the same for any count). The qat_ce loss's path. */
void evlm_tqat_fake_quant(const evlm_tops *o, float *dst, const float *w, int rows, int cols);

/* The same for type t (Q4_0, Q4_1 or Q8_0). */
void evlm_tqat_fake_quant_type(const evlm_tops *o, evlm_type t, float *dst, const float *w,
                               int rows, int cols);

/* Whether t is a type QAT trains for (Q4_0, Q4_1, Q8_0). */
bool evlm_tqat_type_ok(evlm_type t);

/* The type `evlm quantize` with `type` / `vision` stores a tensor in: role is the tensor's
 * evlm_matrix_role (evlm_compress.h) or -1 when it is no matrix of the model; src_type its file
 * type, n_dims / cols (innermost extent) its shape. Decoder matrices, embedding and head take
 * type, the vision tower and connector vision; anything else, or a tensor that cannot hold the
 * type (not 2-D, cols not a multiple of 32, a file type that is not float), keeps src_type. */
evlm_type evlm_tqat_rule(int role, evlm_type src_type, int n_dims, int64_t cols, evlm_type type,
                         evlm_type vision);

/* ---- a model's QAT state ---------------------------------------------------------------- */

typedef struct evlm_tqat {
    const evlm_tparams *tp;
    evlm_type *stored; /* [tp->n]: the type the export stores each parameter in */
    size_t *fq_off;    /* [tp->n]: offset of its fake-quantized copy in fq; SIZE_MAX: none */
    int *scale_of;     /* [tp->n]: its scales' index in scales.p; -1: none */
    float *fq;         /* the fake-quantized matrices */
    float *fg;         /* LSQ: their gradients (mapped to w / s by evlm_tqat_backward) */
    size_t fq_floats;
    bool learn_scales;
    evlm_tparams scales; /* LSQ: "qat.scale.<name>" [rows][cols / 32], trainable */
} evlm_tqat;

/* Plans the state for tp of model m (tp built from m's weights): types by evlm_tqat_rule with
 * `type` for the decoder, `vision` for the tower and connector. learn_scales: the block scales
 * become parameters (Q4_1 is refused: its minimum is not learned). Errors name the argument. */
evlm_status evlm_tqat_init(evlm_tqat *q, const struct evlm_model *m, const evlm_tparams *tp,
                           evlm_type type, evlm_type vision, bool learn_scales);
void evlm_tqat_release(evlm_tqat *q);

/* Fake-quantizes every quantized parameter from its current weights (and scales). Call before
 * each forward (fg is zero between steps: evlm_tqat_backward clears it). */
void evlm_tqat_refresh(evlm_tqat *q, const evlm_tops *o);
/* The weights the forward uses for p: its fake-quantized copy, else its float weights. */
const float *evlm_tqat_w(const evlm_tqat *q, const evlm_tparam *p);
/* LSQ: where the backward accumulates p's gradient (fg) when p is quantized; NULL otherwise (the
 * caller then uses the parameter's own gradient: plain straight-through). */
float *evlm_tqat_g(const evlm_tqat *q, const evlm_tparam *p);
/* LSQ: fg to the weights' gradients (inside the clamp range, trainable weights only) and to the
 * scales' gradients (added). Nothing without LSQ. */
void evlm_tqat_backward(evlm_tqat *q, const evlm_tops *o);

/* The blocks of parameter index i as the forward uses them (rows * cols / 32 blocks of its
 * stored type, row-major) into dst (evlm_type_size(stored) * rows * cols / 32 bytes). */
void evlm_tqat_blocks(const evlm_tqat *q, int i, void *dst);

/* Sets tp's float weights of every parameter stored in a 16-bit float type (F16, BF16) to the
 * value the export stores (round to nearest even), so that the model being trained computes
 * what the exported file does. Quantized ones are left alone (their copies are exact). */
void evlm_tqat_round_floats(const evlm_tqat *q, evlm_tparams *tp);

/* LSQ on one row of n weights (n a multiple of 32) with scales s[n / 32]: the blocks (type Q4_0
 * or Q8_0) into blk; with g (dL/dw_q, n) given, dw (n) and ds (n / 32) are ADDED to. */
void evlm_tqat_lsq_row(evlm_type t, const float *w, const float *s, void *blk, int64_t n);
void evlm_tqat_lsq_row_bwd(evlm_type t, const float *w, const float *s, const float *g, float *dw,
                           float *ds, int64_t n);

#endif
