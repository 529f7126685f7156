/*
 * x86_kquant_body.h - the int8 gemm_q body for the k-quants Q4_K / Q5_K / Q6_K (quant/kquants.h)
 * against evlm_q8a activations, included by x86_avx2_kquant.c (KQ_DOT: vpmaddubsw + vpmaddwd)
 * and x86_avx512_kquant.c (KQ_DOT: VNNI vpdpbusd), which define KQ_DOT(acc, u8, s8) (acc + the
 * sums of 4 products of unsigned by signed bytes, 8 int32 lanes) and KQ_NAME before including.
 * Every 32 weights meet one activation block: 8 int32 lane sums, scaled in float by
 * d * scale * x.d and accumulated in 8 float lanes per output, summed at the end of the row; the
 * minimums (Q4_K / Q5_K) through the activation block's scaled sum x.s. Same products as the
 * reference, another summation order.
 * Not here: the 32-element types (x86_*_quant.c), the f32-activation path (ref's gemm).
 */
#include "quant/kquants.h"

#include <immintrin.h>
#include <string.h>

static inline float kq_h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

static inline float kq_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* lanes 0-3 * a, lanes 4-7 * b (Q6_K's two 16-element scales of one activation block) */
static inline __m256i kq_scale2(__m256i v, int a, int b) {
    return _mm256_mullo_epi32(v, _mm256_setr_epi32(a, a, a, a, b, b, b, b));
}

static float kq_dot_q4_K(const evlm_block_q4_K *w, const evlm_q8a *x, int nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int i = 0; i < nb; i++, x += 8) {
        const float d = kq_h2f(w[i].d), dmin = kq_h2f(w[i].dmin);
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(w[i].qs + 32 * g));
            __m256i lo = _mm256_and_si256(q, m4),
                    hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            int s0, m0, s1, m1;
            evlm_kq_scale_min(w[i].scales, 2 * g, &s0, &m0);
            evlm_kq_scale_min(w[i].scales, 2 * g + 1, &s1, &m1);
            const evlm_q8a *a0 = x + 2 * g, *a1 = a0 + 1;
            __m256i p0 = KQ_DOT(_mm256_setzero_si256(), lo,
                                _mm256_loadu_si256((const __m256i *)(const void *)a0->qs));
            __m256i p1 = KQ_DOT(_mm256_setzero_si256(), hi,
                                _mm256_loadu_si256((const __m256i *)(const void *)a1->qs));
            acc =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d * (float)s0 * a0->d), acc);
            acc =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d * (float)s1 * a1->d), acc);
            mins += dmin * (float)m0 * a0->s + dmin * (float)m1 * a1->s;
        }
    }
    return kq_hsum(acc) - mins;
}

static float kq_dot_q5_K(const evlm_block_q5_K *w, const evlm_q8a *x, int nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int i = 0; i < nb; i++, x += 8) {
        const float d = kq_h2f(w[i].d), dmin = kq_h2f(w[i].dmin);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)w[i].qh);
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(w[i].qs + 32 * g));
            __m256i hb0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), one);
            __m256i hb1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g + 1)), one);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(hb0, 4));
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                         _mm256_slli_epi16(hb1, 4));
            int s0, m0, s1, m1;
            evlm_kq_scale_min(w[i].scales, 2 * g, &s0, &m0);
            evlm_kq_scale_min(w[i].scales, 2 * g + 1, &s1, &m1);
            const evlm_q8a *a0 = x + 2 * g, *a1 = a0 + 1;
            __m256i p0 = KQ_DOT(_mm256_setzero_si256(), lo,
                                _mm256_loadu_si256((const __m256i *)(const void *)a0->qs));
            __m256i p1 = KQ_DOT(_mm256_setzero_si256(), hi,
                                _mm256_loadu_si256((const __m256i *)(const void *)a1->qs));
            acc =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d * (float)s0 * a0->d), acc);
            acc =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d * (float)s1 * a1->d), acc);
            mins += dmin * (float)m0 * a0->s + dmin * (float)m1 * a1->s;
        }
    }
    return kq_hsum(acc) - mins;
}

static float kq_dot_q6_K(const evlm_block_q6_K *w, const evlm_q8a *x, int nb) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++, x += 8) {
        const float d = kq_h2f(w[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(w[i].qh + 32 * h));
            for (int c = 0; c < 4; c++) {
                __m256i l = c & 1 ? l1 : l0;
                __m256i lo = c >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4)
                                    : _mm256_and_si256(l, m4);
                __m256i hb = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), m2);
                __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4)); /* 0..63 */
                const evlm_q8a *a = x + 4 * h + c;
                const __m256i av = _mm256_loadu_si256((const __m256i *)(const void *)a->qs);
                /* sum (q - 32) a = sum q a - sum 32 a, per 4 bytes */
                __m256i p = _mm256_sub_epi32(KQ_DOT(_mm256_setzero_si256(), q, av),
                                             KQ_DOT(_mm256_setzero_si256(), k32, av));
                const int j = 4 * h + c; /* activation block: 16-element sub-blocks 2j, 2j + 1 */
                p = kq_scale2(p, w[i].scales[2 * j], w[i].scales[2 * j + 1]);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * a->d), acc);
            }
        }
    }
    return kq_hsum(acc);
}

/* Y (m, n) = Xq (m, k) @ W^T for k-quant rows [n0, n1) of W (ldw bytes apart); Xq rows of ldx
 * activation blocks. */
void KQ_NAME(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w, size_t ldw,
             evlm_type wt, int m, int n0, int n1, int k) {
    const int nb = k / EVLM_QK_K;
    for (int n = n0; n < n1; n++) {
        const void *row = (const char *)w + (size_t)n * ldw;
        for (int i = 0; i < m; i++) {
            const evlm_q8a *xi = x + (size_t)i * ldx;
            float v = wt == EVLM_TYPE_Q4_K   ? kq_dot_q4_K(row, xi, nb)
                      : wt == EVLM_TYPE_Q5_K ? kq_dot_q5_K(row, xi, nb)
                                             : kq_dot_q6_K(row, xi, nb);
            y[(size_t)i * ldy + n] = v;
        }
    }
}
