/*
 * ref.c - scalar reference kernels: the ground truth every SIMD kernel is tested against.
 *
 * Plain C with float accumulation in index order, so results are reproducible and
 * independent of the thread count. Exponentials and square roots use libm in float.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

#include <math.h>
#include <stdbool.h>

/* One weight row as float32 (F32 rows are used in place). */
static const float *row_f32(const void *w, size_t ldw, evlm_type wt, int r, int k, float *tmp) {
    if (evlm_type_is_r16(wt)) {
        evlm_r16_dequantize_row(wt, w, k, r, tmp);
        return tmp;
    }
    const char *p = (const char *)w + (size_t)r * ldw;
    if (wt == EVLM_TYPE_F32) return (const float *)(const void *)p;
    evlm_dequantize_row(wt, p, tmp, k);
    return tmp;
}

void evlm__ref_gemm(float *y, size_t ldy, const float *x, size_t ldx, const void *w, size_t ldw,
                    evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    for (int n = n0; n < n1; n++) {
        const float *wr = row_f32(w, ldw, wt, n, k, scratch);
        bool chain = evlm_type_is_r16_float(wt); /* the packed kernels' fma chain (repack.h) */
        for (int i = 0; i < m; i++) {
            const float *xr = x + (size_t)i * ldx;
            float s = 0.0f;
            if (chain)
                for (int j = 0; j < k; j++) s = fmaf(wr[j], xr[j], s);
            else
                for (int j = 0; j < k; j++) s += xr[j] * wr[j];
            y[(size_t)i * ldy + n] = s;
        }
    }
}

void evlm__ref_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * inv);
}

float evlm__ref_max(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

void evlm__ref_silu_mul(float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void evlm__ref_rope(float *x, int n_heads, int head_dim, const float *cos, const float *sin) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

/* scores[t] = exp(scores[t] - mx) in place; returns 1 / sum. ref's softmax, also used by the
 * compressed KV cache (attn_kv.c); the SIMD tables' attn_row use their vector exp. */
float evlm__ref_softmax_exp(float *scores, int n, float mx) {
    float sum = 0.0f;
    for (int t = 0; t < n; t++) {
        scores[t] = expf(scores[t] - mx);
        sum += scores[t];
    }
    return 1.0f / sum;
}

/* attn_row of row i of an attn_rows call (attn_row itself: one row, n_pre 0) */
static void attn_row_vis(float *out, const float *q, const float *k, const float *v, size_t ld,
                         const int *n_kv, int n_pre, const uint8_t *const *mask, int i,
                         int head_dim, float scale, float *scores) {
    float mx = -INFINITY;
    for (int t = 0; t < n_kv[i]; t++) {
        if (!evlm_attn_rows_sees(n_kv, n_pre, mask, i, t)) {
            scores[t] = -INFINITY; /* exp gives exactly 0 */
            continue;
        }
        const float *kr = k + (size_t)t * ld;
        float s = 0.0f;
        for (int c = 0; c < head_dim; c++) s += q[c] * kr[c];
        s *= scale;
        scores[t] = s;
        if (s > mx) mx = s;
    }
    float inv = evlm__ref_softmax_exp(scores, n_kv[i], mx);
    for (int c = 0; c < head_dim; c++) out[c] = 0.0f;
    for (int t = 0; t < n_kv[i]; t++) {
        if (!evlm_attn_rows_sees(n_kv, n_pre, mask, i, t)) continue;
        const float *vr = v + (size_t)t * ld;
        float p = scores[t] * inv;
        for (int c = 0; c < head_dim; c++) out[c] += p * vr[c];
    }
}

void evlm__ref_attn_row(float *out, const float *q, const float *k, const float *v, int n_kv,
                        int head_dim, size_t ld, float scale, const uint8_t *mask, float *scores) {
    attn_row_vis(out, q, k, v, ld, &n_kv, 0, mask ? &mask : NULL, 0, head_dim, scale, scores);
}

/* row by row (ref reads the keys once per row) */
void evlm__ref_attn_rows(float *const *out, const float *const *q, int n_q, const float *k,
                         const float *v, size_t ld, const int *n_kv, int n_pre,
                         const uint8_t *const *mask, int head_dim, float scale, float *scores) {
    for (int i = 0; i < n_q; i++)
        attn_row_vis(out[i], q[i], k, v, ld, n_kv, n_pre, mask, i, head_dim, scale, scores);
}

/* attn_row for each query row over the keys it sees, scores in scratch (n_kv floats): the
 * exact softmax */
void evlm__ref_attn_tile(float *out, size_t ldo, const float *q, size_t ldq, int n_q,
                         const float *k, const float *v, size_t ldkv, int n_kv, int head_dim,
                         float scale, int kv0, float *scratch) {
    for (int i = 0; i < n_q; i++)
        evlm__ref_attn_row(out + (size_t)i * ldo, q + (size_t)i * ldq, k, v,
                           kv0 < 0 ? n_kv : kv0 + i + 1, head_dim, ldkv, scale, NULL, scratch);
}

/* Two passes (mean, then centred variance) in float, as torch's CPU LayerNorm computes the
 * moments in float; the centred form avoids the cancellation of E[x^2] - E[x]^2. */
void evlm__ref_layernorm(float *y, const float *x, const float *w, const float *b, int n,
                         float eps) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += x[i];
    float mean = sum / (float)n, ss = 0.0f;
    for (int i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), torch's gelu(approximate="tanh") in float */
void evlm__ref_gelu_tanh(float *x, int n) {
    const float k = 0.7978845608028654f, c = 0.044715f;
    for (int i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + c * v * v * v)));
    }
}

void evlm__ref_quantize_act(const float *x, evlm_q8a *y, int k) {
    evlm_quantize_act_ref(x, y, k);
}

void evlm__ref_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                      size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    for (int n = n0; n < n1; n++) {
        const void *wr = (const char *)w + (size_t)n * ldw;
        for (int i = 0; i < m; i++)
            y[(size_t)i * ldy + n] = evlm_type_is_r16(wt)
                                         ? evlm_r16_dot_ref(wt, w, k, n, x + (size_t)i * ldx)
                                         : evlm_vec_dot_q_ref(wt, wr, x + (size_t)i * ldx, k);
    }
}

const evlm_kernels evlm_kernels_ref = {
    .name = "ref",
    .gemm = evlm__ref_gemm,
    .rmsnorm = evlm__ref_rmsnorm,
    .silu_mul = evlm__ref_silu_mul,
    .rope = evlm__ref_rope,
    .attn_row = evlm__ref_attn_row,
    .layernorm = evlm__ref_layernorm,
    .gelu_tanh = evlm__ref_gelu_tanh,
    .quantize_act = evlm__ref_quantize_act,
    .gemm_q = evlm__ref_gemm_q,
    .attn_tile = evlm__ref_attn_tile,
    .max = evlm__ref_max,
    .attn_rows = evlm__ref_attn_rows,
    EVLM__TRAIN_ENTRIES(ref),
};
