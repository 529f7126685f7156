/*
 * x86_avx2_quant.c - AVX2 kernels for quantized weights: activation quantization (quantize_act),
 * the int8 gemm_q for Q8_0 / Q4_0 / Q4_1 weights with vpmaddubsw, and the dequantizing gemm
 * (the --act f32 path) for those weights. Used by the avx2 table and by the avx512 table on
 * CPUs without VNNI (x86_avx512_quant.c has the VNNI versions).
 *
 * Compiled with -mavx2 -mfma -mf16c for this file only (CMakeLists.txt); empty elsewhere.
 * gemm_q: one 32-element block per 256-bit register. vpmaddubsw multiplies unsigned by signed
 * bytes into int16 pairs, so Q8_0 uses |w| times x with w's sign (no pair can saturate: at most
 * 2 * 128 * 127); Q4 nibbles are unsigned already and Q4_0's -8 is subtracted exactly as 8 * x.
 * Block sums are exact int32 lanes, scaled per block in float: the only difference to `ref` is
 * summation order. Register tiles of up to 4 activation rows x 2 weight rows (1 x 4 for one
 * row) decode each weight block once per tile. quantize_act is bit-exact with ref.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

/* built only with this file's flags (CMakeLists.txt) */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define EVLM__INLINE static inline __attribute__((always_inline))

/* ---- activation quantization ---------------------------------------------------------------- */

/* roundf (ties away from zero) of 8 floats as int32: trunc, then one step away from zero when
 * the dropped fraction (exact in float) is at least one half. */
EVLM__INLINE __m256i round_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f),
                              _CMP_GE_OQ);
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, step)));
}

EVLM__INLINE int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

EVLM__INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* x (k) -> k / 32 blocks: d = max|x| / 127, qs = roundf(x / d), s = d * sum(qs), as ref */
void evlm__avx2_quantize_act(const float *x, evlm_q8a *y, int k) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < k / EVLM_QK; b++, x += EVLM_QK) {
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[j]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float d = _mm_cvtss_f32(m4) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) q[j] = round_away(_mm256_mul_ps(v[j], vid));
        /* packs interleave 128-bit lanes; the permute puts the 32 bytes back in order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)y[b].qs, p);
        int sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        y[b].d = d;
        y[b].s = d * (float)sum;
    }
}

/* ---- int8 gemm ------------------------------------------------------------------------------- */

EVLM__INLINE float h2f(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

EVLM__INLINE size_t block_bytes(evlm_type wt) {
    return wt == EVLM_TYPE_Q8_0 ? sizeof(evlm_block_q8_0)
           : wt == EVLM_TYPE_Q4_0 ? sizeof(evlm_block_q4_0)
                                  : sizeof(evlm_block_q4_1);
}

/* acc[i][r] (8 lanes) over all blocks for MR activation rows x NR weight rows; y = lane sums. */
EVLM__INLINE void tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *w,
                       size_t ldw, int kb, evlm_type wt, int MR, int NR) {
    size_t bs = block_bytes(wt);
    const __m256i ones = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) acc[i][r] = _mm256_setzero_ps();
    for (int b = 0; b < kb; b++) {
        __m256i wv[4], wa[4]; /* Q8_0: q and |q|; Q4: the 32 nibbles in element order */
        __m256 dw[4], dm[4];
        for (int r = 0; r < NR; r++) {
            const char *blk = w + (size_t)r * ldw + (size_t)b * bs;
            if (wt == EVLM_TYPE_Q8_0) {
                wv[r] = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
                wa[r] = _mm256_abs_epi8(wv[r]);
            } else {
                __m128i q = _mm_loadu_si128(
                    (const __m128i *)(const void *)(blk + (wt == EVLM_TYPE_Q4_0 ? 2 : 4)));
                wv[r] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), lo4);
            }
            dw[r] = _mm256_set1_ps(h2f(blk));
            if (wt == EVLM_TYPE_Q4_1) dm[r] = _mm256_set1_ps(h2f(blk + 2));
        }
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xb->qs);
            __m256i x8 = _mm256_setzero_si256();
            __m256 dx = _mm256_set1_ps(xb->d), sx = dx;
            if (wt == EVLM_TYPE_Q4_0) x8 = _mm256_maddubs_epi16(_mm256_set1_epi8(8), xv);
            if (wt == EVLM_TYPE_Q4_1) sx = _mm256_set1_ps(xb->s * 0.125f); /* m * s over 8 lanes */
            for (int r = 0; r < NR; r++) {
                __m256i p;
                if (wt == EVLM_TYPE_Q8_0) p = _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(xv, wv[r]));
                else if (wt == EVLM_TYPE_Q4_0) p = _mm256_sub_epi16(_mm256_maddubs_epi16(wv[r], xv), x8);
                else p = _mm256_maddubs_epi16(wv[r], xv);
                __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), dw[r]);
                acc[i][r] = _mm256_fmadd_ps(t, dx, acc[i][r]);
                if (wt == EVLM_TYPE_Q4_1) acc[i][r] = _mm256_fmadd_ps(dm[r], sx, acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) y[(size_t)i * ldy + r] = hsum8(acc[i][r]);
}

typedef void (*tile_fn)(float *, size_t, const evlm_q8a *, size_t, const char *, size_t, int);

#define TILE(T, MR, NR)                                                                            \
    static void tile_##T##_##MR##x##NR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,       \
                                       const char *w, size_t ldw, int kb) {                        \
        tile(y, ldy, x, ldx, w, ldw, kb, EVLM_TYPE_##T, MR, NR);                                   \
    }
/* [0]: one weight row; [1]: two (several activation rows); [2]: 1 x 4 (a single activation row) */
#define TILES(T)                                                                                   \
    TILE(T, 1, 1) TILE(T, 2, 1) TILE(T, 3, 1) TILE(T, 4, 1)                                        \
    TILE(T, 1, 2) TILE(T, 2, 2) TILE(T, 3, 2) TILE(T, 4, 2) TILE(T, 1, 4)                          \
    static const tile_fn tiles_##T[3][4] = {                                                       \
        {tile_##T##_1x1, tile_##T##_2x1, tile_##T##_3x1, tile_##T##_4x1},                          \
        {tile_##T##_1x2, tile_##T##_2x2, tile_##T##_3x2, tile_##T##_4x2},                          \
        {tile_##T##_1x4, NULL, NULL, NULL}};
TILES(Q8_0)
TILES(Q4_0)
TILES(Q4_1)

/* Y (m, n) = Xq (m, k) @ W^T for W rows [n0, n1): activation rows in chunks that stay in L2,
 * weight rows in tiles streamed once per chunk (once in all for m <= the chunk). */
void evlm__avx2_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                       size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    const tile_fn(*tiles)[4];
    switch (wt) {
    case EVLM_TYPE_Q8_0: tiles = tiles_Q8_0; break;
    case EVLM_TYPE_Q4_0: tiles = tiles_Q4_0; break;
    case EVLM_TYPE_Q4_1: tiles = tiles_Q4_1; break;
    default: evlm__ref_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k); return;
    }
    int kb = k / EVLM_QK;
    size_t row_bytes = (size_t)(kb > 0 ? kb : 1) * sizeof(evlm_q8a);
    int mc = (int)((192u * 1024u) / row_bytes) & ~3;
    if (mc < 4) mc = 4;
    for (int i0 = 0; i0 < m; i0 += mc) {
        int i1 = m - i0 < mc ? m : i0 + mc;
        int wide = i1 - i0 == 1 ? 4 : 2, sel = i1 - i0 == 1 ? 2 : 1;
        for (int n = n0; n < n1;) {
            int nr = n1 - n >= wide ? wide : 1;
            const char *wr = (const char *)w + (size_t)n * ldw;
            for (int i = i0; i < i1; i += 4) {
                int mr = i1 - i < 4 ? i1 - i : 4;
                tiles[nr == 1 ? 0 : sel][mr - 1](y + (size_t)i * ldy + n, ldy, x + (size_t)i * ldx,
                                                 ldx, wr, ldw, kb);
            }
            n += nr;
        }
    }
}

/* ---- dequantizing gemm (act f32) ------------------------------------------------------------- */

/* One Q8_0 / Q4_0 / Q4_1 row to float, value for value as evlm_dequantize_row (q * d, then + m). */
static void dequant_row(const void *w, float *dst, int k, evlm_type wt) {
    const char *blk = w;
    size_t bs = block_bytes(wt);
    for (int b = 0; b < k / EVLM_QK; b++, blk += bs, dst += EVLM_QK) {
        __m256 d = _mm256_set1_ps(h2f(blk));
        __m256i q[4];
        if (wt == EVLM_TYPE_Q8_0) {
            for (int j = 0; j < 4; j++) {
                __m128i b8 = _mm_loadl_epi64((const __m128i *)(const void *)(blk + 2 + 8 * j));
                q[j] = _mm256_cvtepi8_epi32(b8);
            }
        } else {
            __m128i b16 = _mm_loadu_si128((const __m128i *)(const void *)(blk + (wt == EVLM_TYPE_Q4_0 ? 2 : 4)));
            __m256i lo = _mm256_cvtepu8_epi32(b16), hi = _mm256_cvtepu8_epi32(_mm_srli_si128(b16, 8));
            q[0] = _mm256_and_si256(lo, _mm256_set1_epi32(0x0f));
            q[1] = _mm256_and_si256(hi, _mm256_set1_epi32(0x0f));
            q[2] = _mm256_srli_epi32(lo, 4);
            q[3] = _mm256_srli_epi32(hi, 4);
            if (wt == EVLM_TYPE_Q4_0)
                for (int j = 0; j < 4; j++) q[j] = _mm256_sub_epi32(q[j], _mm256_set1_epi32(8));
        }
        for (int j = 0; j < 4; j++) {
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(q[j]), d);
            if (wt == EVLM_TYPE_Q4_1) f = _mm256_add_ps(f, _mm256_set1_ps(h2f(blk + 2)));
            _mm256_storeu_ps(dst + 8 * j, f);
        }
    }
}

/* x (k) . w (k), k a multiple of 32, 4 accumulators of 8 lanes */
static float dot32(const float *x, const float *w, int k) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int j = 0; j < k; j += 32)
        for (int u = 0; u < 4; u++)
            a[u] = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8 * u), _mm256_loadu_ps(w + j + 8 * u), a[u]);
    return hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
}

/* gemm for Q8_0 / Q4_0 / Q4_1 weights: each row dequantized once into scratch (k floats), then
 * dotted with all m rows of x. Other weight types go to `ref`. */
void evlm__avx2_gemm_deq(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                         size_t ldw, evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    if (!evlm_type_is_quant(wt) || evlm_type_is_r16(wt) || k % EVLM_QK) {
        evlm__ref_gemm(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
        return;
    }
    for (int n = n0; n < n1; n++) {
        dequant_row((const char *)w + (size_t)n * ldw, scratch, k, wt);
        for (int i = 0; i < m; i++) y[(size_t)i * ldy + n] = dot32(x + (size_t)i * ldx, scratch, k);
    }
}

#else
typedef int evlm__x86_avx2_quant_empty; /* ISO C forbids an empty translation unit */
#endif
