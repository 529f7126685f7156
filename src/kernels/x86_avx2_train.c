/*
 * x86_avx2_train.c - the "avx2" table's training kernels (kernels.h, "training"): sgemm as
 * sgemm_walk.h's walk with a 6 x 16 register tile (12 ymm accumulators, two B vectors, A
 * broadcast: packed, or read in place when A is row-major), and 8-lane versions of rmsnorm_bwd,
 * layernorm_bwd (masked tails), swiglu_bwd, gelu_tanh_bwd and exp_sum (a vector exp as
 * x86_avx2.c's exp8; tails of fewer than 8 elements through ref).
 *
 * Compiled with x86_avx2.c's flags (CMakeLists.txt); dispatch.c uses the table only when cpuid
 * reports them. Not bit-exact with `ref`: sums are blocked (sgemm: k in blocks of SG_KC, FMA) or
 * 8 lanes wide, exp is a polynomial; test_train_ops bounds the differences. Not here:
 * threading (train/ops.c).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <stdbool.h>

/* ---- sgemm: 6 x 16 micro-kernel ------------------------------------------------------------ */

EVLM__INLINE void ukr_6x16(int kc, const float *ap, const float *bp, float *c, size_t ldc,
                           bool add) {
    __m256 t[6][2];
    EVLM__UNROLL
    for (int r = 0; r < 6; r++) t[r][0] = t[r][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++, ap += 6, bp += 16) {
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        EVLM__UNROLL
        for (int r = 0; r < 6; r++) {
            __m256 a = _mm256_broadcast_ss(ap + r);
            t[r][0] = _mm256_fmadd_ps(a, b0, t[r][0]);
            t[r][1] = _mm256_fmadd_ps(a, b1, t[r][1]);
        }
    }
    EVLM__UNROLL
    for (int r = 0; r < 6; r++) {
        float *cr = c + (size_t)r * ldc;
        EVLM__UNROLL
        for (int j = 0; j < 2; j++) {
            __m256 v = t[r][j];
            if (add) v = _mm256_add_ps(_mm256_loadu_ps(cr + 8 * j), v);
            _mm256_storeu_ps(cr + 8 * j, v);
        }
    }
}

/* the same with A read in place: row r of the tile at a + r * lda (row-major A, no pack) */
EVLM__INLINE void ukr_6x16_a(int kc, const float *a, size_t lda, const float *bp, float *c,
                             size_t ldc, bool add) {
    __m256 t[6][2];
    const float *a3 = a + 3 * lda;
    EVLM__UNROLL
    for (int r = 0; r < 6; r++) t[r][0] = t[r][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++, bp += 16) {
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        EVLM__UNROLL
        for (int r = 0; r < 6; r++) {
            __m256 av = _mm256_broadcast_ss(r < 3 ? a + r * lda + p : a3 + (r - 3) * lda + p);
            t[r][0] = _mm256_fmadd_ps(av, b0, t[r][0]);
            t[r][1] = _mm256_fmadd_ps(av, b1, t[r][1]);
        }
    }
    EVLM__UNROLL
    for (int r = 0; r < 6; r++) {
        float *cr = c + (size_t)r * ldc;
        EVLM__UNROLL
        for (int j = 0; j < 2; j++) {
            __m256 v = t[r][j];
            if (add) v = _mm256_add_ps(_mm256_loadu_ps(cr + 8 * j), v);
            _mm256_storeu_ps(cr + 8 * j, v);
        }
    }
}

#define SG_MR    6
#define SG_NR    16
#define SG_KC    576 /* k = 576 (hidden) in one block: C written once */
#define SG_MC    192
#define SG_NC    384
#define SG_KC_AT 256 /* transposed A (dW): its pack reads KC rows far apart */
#define SG_NC_AT 768
#define SG_UKR   ukr_6x16
#define SG_UKR_A ukr_6x16_a
#define SG_NAME  evlm__avx2_sgemm
#include "kernels/sgemm_walk.h"

/* ---- element-wise backward ------------------------------------------------------------------ */

EVLM__INLINE __m256 exp8(__m256 x) {
    __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

EVLM__INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static const int32_t lane_mask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* lanes [0, left) of a masked load / store */
EVLM__INLINE __m256i lanes(int left) {
    return _mm256_loadu_si256(
        (const __m256i *)(const void *)(lane_mask + 8 - (left < 8 ? left : 8)));
}

#define LD(p, mk) _mm256_maskload_ps(p, mk)

/* 1 / (1 + e^(-v)) */
EVLM__INLINE __m256 sigmoid8(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}

void evlm__avx2_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w, float rstd,
                            int n) {
    __m256 s = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        s = _mm256_fmadd_ps(_mm256_mul_ps(LD(dy + i, mk), LD(w + i, mk)), LD(x + i, mk), s);
    }
    float c = rstd * rstd * hsum8(s) / (float)n;
    __m256 vr = _mm256_set1_ps(rstd), vc = _mm256_set1_ps(c);
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        __m256 g = _mm256_mul_ps(LD(dy + i, mk), LD(w + i, mk));
        __m256 d = _mm256_fnmadd_ps(LD(x + i, mk), vc, g);
        _mm256_maskstore_ps(dx + i, mk, _mm256_fmadd_ps(vr, d, LD(dx + i, mk)));
    }
}

void evlm__avx2_layernorm_bwd(float *dx, const float *dy, const float *x, const float *w,
                              float mean, float rstd, int n) {
    __m256 sg = _mm256_setzero_ps(), sgx = _mm256_setzero_ps();
    __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        __m256 g = _mm256_mul_ps(LD(dy + i, mk), LD(w + i, mk));
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LD(x + i, mk), vm), vr);
        sg = _mm256_add_ps(sg, g);
        sgx = _mm256_fmadd_ps(g, xh, sgx); /* g = 0 in masked lanes */
    }
    __m256 a = _mm256_set1_ps(hsum8(sg) / (float)n), b = _mm256_set1_ps(hsum8(sgx) / (float)n);
    for (int i = 0; i < n; i += 8) {
        __m256i mk = lanes(n - i);
        __m256 g = _mm256_mul_ps(LD(dy + i, mk), LD(w + i, mk));
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LD(x + i, mk), vm), vr);
        __m256 d = _mm256_fnmadd_ps(xh, b, _mm256_sub_ps(g, a));
        _mm256_maskstore_ps(dx + i, mk, _mm256_fmadd_ps(vr, d, LD(dx + i, mk)));
    }
}

void evlm__avx2_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                           int n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vg = _mm256_loadu_ps(g + i), d = _mm256_loadu_ps(dh + i);
        __m256 s = sigmoid8(vg);
        if (du) _mm256_storeu_ps(du + i, _mm256_mul_ps(d, _mm256_mul_ps(vg, s)));
        if (dg) {
            __m256 f = _mm256_fmadd_ps(vg, _mm256_sub_ps(one, s), one);
            __m256 v = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_loadu_ps(u + i)), s);
            _mm256_storeu_ps(dg + i, _mm256_mul_ps(v, f));
        }
    }
    if (i < n)
        evlm__ref_swiglu_bwd(dg ? dg + i : NULL, du ? du + i : NULL, dh + i, g + i, u + i, n - i);
}

/* d/dx of 0.5 x (1 + tanh(u)), u = k (x + c x^3): with s = sigmoid(2u) (= 0.5 (1 + tanh u)),
 * s + 2 x s (1 - s) k (1 + 3 c x^2): no cancellation for large |x| */
void evlm__avx2_gelu_tanh_bwd(float *dx, const float *dy, const float *x, int n) {
    const __m256 k = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
    const __m256 c3 = _mm256_set1_ps(3.0f * 0.044715f), one = _mm256_set1_ps(1.0f);
    const __m256 two = _mm256_set1_ps(2.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), v2 = _mm256_mul_ps(v, v);
        __m256 u = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(c, v), v2, v));
        __m256 s = sigmoid8(_mm256_mul_ps(two, u));
        __m256 du = _mm256_mul_ps(k, _mm256_fmadd_ps(c3, v2, one));
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(two, v), _mm256_mul_ps(s, _mm256_sub_ps(one, s)));
        __m256 d = _mm256_fmadd_ps(t, du, s);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(d, _mm256_loadu_ps(dy + i)));
    }
    if (i < n) evlm__ref_gelu_tanh_bwd(dx + i, dy + i, x + i, n - i);
}

float evlm__avx2_exp_sum(float *x, int n, float mx) {
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)); /* 0 below -87.3 */
        s = _mm256_add_ps(s, e);
        _mm256_storeu_ps(x + i, e);
    }
    return hsum8(s) + (i < n ? evlm__ref_exp_sum(x + i, n - i, mx) : 0.0f);
}

#else
typedef int evlm__x86_avx2_train_empty; /* ISO C forbids an empty translation unit */
#endif
