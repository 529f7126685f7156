/* attn_kv.c - attention over F16 / int8 KV caches (see attn_kv.h). What a cache type is comes
 * from its traits (evlm_type_traits.kv): rows of values are written by the type's from_float
 * (quant/types.h), scaled rows are int8 with a float scale per row. */
#include "kernels/attn_kv.h"
#include "kernels/ref_impl.h"
#include "quant/types.h"

#include <math.h>
#include <string.h>

void evlm_kv_store(void *dst, float *scale, evlm_type t, const float *x, int n) {
    if (evlm_type_traits_of(t)->kv != EVLM_TYPE_KV_SCALED) {
        evlm_type_ops_of(t)->from_float(x, dst, n);
    } else {
        float amax = 0.0f;
        for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int8_t *q = dst;
        for (int i = 0; i < n; i++) q[i] = (int8_t)lrintf(x[i] * id);
        *scale = d;
    }
}

static float dot_row(const float *q, const void *k, bool scaled, size_t row, size_t ld, int n) {
    float s = 0.0f;
    if (!scaled) {
        const uint16_t *h = (const uint16_t *)k + row * ld;
        for (int i = 0; i < n; i++) s += q[i] * evlm_f16_to_f32(h[i]);
    } else {
        const int8_t *r = (const int8_t *)k + row * ld;
        for (int i = 0; i < n; i++) s += q[i] * (float)r[i];
    }
    return s;
}

void evlm_attn_row_kv(float *out, const float *q, const void *k, const void *v, evlm_type t,
                      const float *ks, const float *vs, int n_kv, int head_dim, size_t ld,
                      float scale, const uint8_t *mask, float *scores) {
    const bool scaled = evlm_type_traits_of(t)->kv == EVLM_TYPE_KV_SCALED; /* int8, else F16 */
    float mx = -INFINITY;
    for (int j = 0; j < n_kv; j++) {
        if (mask && !mask[j]) {
            scores[j] = -INFINITY;
            continue;
        }
        float s = dot_row(q, k, scaled, (size_t)j, ld, head_dim) * scale;
        if (scaled) s *= ks[j];
        scores[j] = s;
        if (s > mx) mx = s;
    }
    float inv = evlm__ref_softmax_exp(scores, n_kv, mx);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int j = 0; j < n_kv; j++) {
        if (mask && !mask[j]) continue;
        float p = scores[j] * inv;
        if (!scaled) {
            const uint16_t *h = (const uint16_t *)v + (size_t)j * ld;
            for (int i = 0; i < head_dim; i++) out[i] += p * evlm_f16_to_f32(h[i]);
        } else {
            const int8_t *r = (const int8_t *)v + (size_t)j * ld;
            p *= vs[j];
            for (int i = 0; i < head_dim; i++) out[i] += p * (float)r[i];
        }
    }
}
