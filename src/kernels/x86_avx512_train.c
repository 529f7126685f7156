/*
 * x86_avx512_train.c - the "avx512" table's training kernels (kernels.h, "training"): sgemm as
 * sgemm_walk.h's walk with an 8 x 48 register tile (24 zmm accumulators, three B vectors, A
 * broadcast from memory: packed, or read in place when A is row-major), 8 x 16 / 8 x 32 tiles
 * for the last columns; 16-lane versions of rmsnorm_bwd, layernorm_bwd, swiglu_bwd,
 * gelu_tanh_bwd and exp_sum (a vector exp, as x86_avx512.c's exp16).
 *
 * Compiled with x86_avx512.c's flags (CMakeLists.txt); dispatch.c uses the table only when cpuid
 * reports them. Not bit-exact with `ref`: sums are blocked (sgemm: k in blocks of SG_KC, FMA) or
 * 16 lanes wide, exp is a polynomial; test_train_ops bounds the differences. Not here:
 * threading (train/ops.c), the avx512vnni table (dispatch.c copies this one's entries).
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) &&                        \
    defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <stdbool.h>

/* ---- sgemm: 8 x 48 micro-kernel ----------------------------------------------------------- */

/* 8 rows x nv * 16 columns (nv = 1..3, the last tiles of a row of tiles use fewer vectors):
 * A packed (ap, 8 floats per k) or, direct, read in place (a[r * lda + p]); B packed 48 wide.
 * Every element is one FMA chain from 0 in p order whatever nv or direct is. */
EVLM__INLINE void ukr_8xv(int kc, const float *ap, const float *a, size_t lda, const float *bp,
                          float *c, size_t ldc, bool add, const int nv, const bool direct) {
    __m512 t[8][3];
    const float *a4 = direct ? a + 4 * lda : NULL;
    EVLM__UNROLL
    for (int r = 0; r < 8; r++) t[r][0] = t[r][1] = t[r][2] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++, bp += 48) {
        __m512 b[3];
        EVLM__UNROLL
        for (int j = 0; j < nv; j++) b[j] = _mm512_loadu_ps(bp + 16 * j);
        EVLM__UNROLL
        for (int r = 0; r < 8; r++) {
            __m512 av =
                _mm512_set1_ps(direct ? (r < 4 ? a[r * lda + p] : a4[(r - 4) * lda + p]) : ap[r]);
            EVLM__UNROLL
            for (int j = 0; j < nv; j++) t[r][j] = _mm512_fmadd_ps(av, b[j], t[r][j]);
        }
        if (!direct) ap += 8;
    }
    EVLM__UNROLL
    for (int r = 0; r < 8; r++) {
        float *cr = c + (size_t)r * ldc;
        EVLM__UNROLL
        for (int j = 0; j < nv; j++) {
            __m512 v = t[r][j];
            if (add) v = _mm512_add_ps(_mm512_loadu_ps(cr + 16 * j), v);
            _mm512_storeu_ps(cr + 16 * j, v);
        }
    }
}

#define UKR_VARIANT(name, nv, direct)                                                              \
    static void name(int kc, const float *ap, const float *a, size_t lda, const float *bp,         \
                     float *c, size_t ldc, bool add) {                                             \
        ukr_8xv(kc, ap, a, lda, bp, c, ldc, add, nv, direct);                                      \
    }
UKR_VARIANT(ukr_p1, 1, false)
UKR_VARIANT(ukr_p2, 2, false)
UKR_VARIANT(ukr_p3, 3, false)
UKR_VARIANT(ukr_d1, 1, true)
UKR_VARIANT(ukr_d2, 2, true)
UKR_VARIANT(ukr_d3, 3, true)

/* the tile of nr valid columns: ceil(nr / 16) vectors, A in place when ad is given */
static void tile_512(int kc, const float *ad, size_t lda, const float *ap, const float *bp,
                     float *c, size_t ldc, bool add, int nr) {
    int nv = (nr + 15) / 16;
    if (ad)
        (nv == 3 ? ukr_d3 : nv == 2 ? ukr_d2 : ukr_d1)(kc, NULL, ad, lda, bp, c, ldc, add);
    else
        (nv == 3 ? ukr_p3 : nv == 2 ? ukr_p2 : ukr_p1)(kc, ap, NULL, 0, bp, c, ldc, add);
}

#define SG_MR            8
#define SG_NR            48
#define SG_KC            576 /* k = 576 (hidden) in one block: C written once */
#define SG_MC            192
#define SG_NC            384
#define SG_KC_AT         256 /* transposed A (dW): its pack reads KC rows far apart */
#define SG_NC_AT         768
#define SG_TILE          tile_512
#define SG_TILE_DIRECT   1
#define SG_NAME          evlm__avx512_sgemm
#define SG_TILE_COLS(nr) (((nr) + 15) / 16 * 16) /* whole vectors */
#include "kernels/sgemm_walk.h"

/* ---- element-wise backward ------------------------------------------------------------------ */

EVLM__INLINE __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

EVLM__INLINE __mmask16 tail_mask(int left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* 1 / (1 + e^(-v)) */
EVLM__INLINE __m512 sigmoid16(__m512 v) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

void evlm__avx512_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *w,
                              float rstd, int n) {
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 g =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dy + i), _mm512_maskz_loadu_ps(mk, w + i));
        s = _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(mk, x + i), s);
    }
    float c = rstd * rstd * _mm512_reduce_add_ps(s) / (float)n;
    __m512 vr = _mm512_set1_ps(rstd), vc = _mm512_set1_ps(c);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 g =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dy + i), _mm512_maskz_loadu_ps(mk, w + i));
        __m512 d = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(mk, x + i), vc, g);
        _mm512_mask_storeu_ps(dx + i, mk,
                              _mm512_fmadd_ps(vr, d, _mm512_maskz_loadu_ps(mk, dx + i)));
    }
}

void evlm__avx512_layernorm_bwd(float *dx, const float *dy, const float *x, const float *w,
                                float mean, float rstd, int n) {
    __m512 sg = _mm512_setzero_ps(), sgx = _mm512_setzero_ps();
    __m512 vm = _mm512_set1_ps(mean), vr = _mm512_set1_ps(rstd);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 g =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dy + i), _mm512_maskz_loadu_ps(mk, w + i));
        __m512 xh =
            _mm512_mul_ps(_mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + i), vm), vr);
        sg = _mm512_add_ps(sg, g);
        sgx = _mm512_fmadd_ps(g, xh, sgx);
    }
    __m512 a = _mm512_set1_ps(_mm512_reduce_add_ps(sg) / (float)n);
    __m512 b = _mm512_set1_ps(_mm512_reduce_add_ps(sgx) / (float)n);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 g =
            _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dy + i), _mm512_maskz_loadu_ps(mk, w + i));
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), vr);
        __m512 d = _mm512_fnmadd_ps(xh, b, _mm512_sub_ps(g, a));
        _mm512_mask_storeu_ps(dx + i, mk,
                              _mm512_fmadd_ps(vr, d, _mm512_maskz_loadu_ps(mk, dx + i)));
    }
}

void evlm__avx512_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                             int n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 vg = _mm512_maskz_loadu_ps(mk, g + i), d = _mm512_maskz_loadu_ps(mk, dh + i);
        __m512 s = sigmoid16(vg);
        if (du) _mm512_mask_storeu_ps(du + i, mk, _mm512_mul_ps(d, _mm512_mul_ps(vg, s)));
        if (dg) {
            __m512 f = _mm512_fmadd_ps(vg, _mm512_sub_ps(one, s), one);
            __m512 v = _mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, u + i)), s);
            _mm512_mask_storeu_ps(dg + i, mk, _mm512_mul_ps(v, f));
        }
    }
}

/* d/dx of 0.5 x (1 + tanh(u)), u = k (x + c x^3): with s = sigmoid(2u) (= 0.5 (1 + tanh u)),
 * s + 2 x s (1 - s) k (1 + 3 c x^2): no cancellation for large |x| */
void evlm__avx512_gelu_tanh_bwd(float *dx, const float *dy, const float *x, int n) {
    const __m512 k = _mm512_set1_ps(0.7978845608028654f), c = _mm512_set1_ps(0.044715f);
    const __m512 c3 = _mm512_set1_ps(3.0f * 0.044715f), one = _mm512_set1_ps(1.0f);
    const __m512 two = _mm512_set1_ps(2.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i), v2 = _mm512_mul_ps(v, v);
        __m512 u = _mm512_mul_ps(k, _mm512_fmadd_ps(_mm512_mul_ps(c, v), v2, v));
        __m512 s = sigmoid16(_mm512_mul_ps(two, u));
        __m512 du = _mm512_mul_ps(k, _mm512_fmadd_ps(c3, v2, one));
        __m512 t = _mm512_mul_ps(_mm512_mul_ps(two, v), _mm512_mul_ps(s, _mm512_sub_ps(one, s)));
        __m512 d = _mm512_fmadd_ps(t, du, s);
        _mm512_mask_storeu_ps(dx + i, mk, _mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, dy + i)));
    }
}

float evlm__avx512_exp_sum(float *x, int n, float mx) {
    const __m512 vm = _mm512_set1_ps(mx), lo = _mm512_set1_ps(-87.3f);
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 mk = tail_mask(n - i);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm);
        __mmask16 keep = _mm512_mask_cmp_ps_mask(mk, d, lo, _CMP_GE_OQ);
        __m512 e = _mm512_maskz_mov_ps(keep, exp16(d));
        s = _mm512_add_ps(s, e);
        _mm512_mask_storeu_ps(x + i, mk, e);
    }
    return _mm512_reduce_add_ps(s);
}

#else
typedef int evlm__x86_avx512_train_empty; /* ISO C forbids an empty translation unit */
#endif
