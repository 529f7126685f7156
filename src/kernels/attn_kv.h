/*
 * attn_kv.h - attention over a compressed KV cache: rows of F16, or of int8 with one float scale
 * per row (per head and token: scale = max|x| / 127), which quarters the cache of long contexts.
 *
 * Portable C written for the compiler's vectorizer, one query row at a time; the float32 cache
 * uses the kernel table's attn_rows (several rows per key read). The softmax is ref's
 * (evlm__ref_softmax_exp, scalar expf): every table computes a compressed-cache row the same way.
 */
#ifndef EVLM_KERNELS_ATTN_KV_H
#define EVLM_KERNELS_ATTN_KV_H

#include "core/tensor.h"

#include <stdint.h>

/* Stores x (n floats) as one cache row of type t (F32, F16 or I8; *scale set for I8). */
void evlm_kv_store(void *dst, float *scale, evlm_type t, const float *x, int n);
/* attn_row (kernels.h) over rows of type t (F16 / I8) with per-row scales ks / vs for I8. */
void evlm_attn_row_kv(float *out, const float *q, const void *k, const void *v, evlm_type t,
                      const float *ks, const float *vs, int n_kv, int head_dim, size_t ld,
                      float scale, const uint8_t *mask, float *scores);

#endif
