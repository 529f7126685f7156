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
 * row) decode each weight block once per tile; q8_walk.c walks the matrix with them (this file
 * supplies only the tiles, their shapes and the activation byte sums of the R16 corrections).
 * quantize_act is bit-exact with ref.
 *
 * gemm_q on the 16-row interleaved *_R16 weights (quant/repack.h): each 64-byte chunk is two
 * ymm of 8 rows x 4 bytes, multiplied with a broadcast 4 activation bytes (vpmaddubsw, then
 * vpmaddwd by ones), so the accumulators are 8 rows wide. Q8_0 uses the sign trick above; Q4
 * sums a block's nibble products in int16 (at most 8 x 2 x 15 x 127) and Q4_0's -8 is added
 * as -8 times the activation block's byte sum in int32. One float step per block and 8 rows
 * (p = float(isum) * dx, acc = fma(dw, p, acc), + fma(m, sx, acc) for Q4_1), the same for one or
 * two activation rows per tile, so outputs do not depend on m, n0, n1 (gemm_q's contract); a
 * partial last group goes through a 16-float temporary. The dequantizing gemm reads an R16 row
 * with 4-byte loads 64 bytes apart.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

/* built only with this file's flags (CMakeLists.txt) */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

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
        __m256i p =
            _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)y[b].qs, p);
        int sum =
            hsum8i(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
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

/* acc[i][r] (8 lanes) over all blocks for MR activation rows x NR weight rows; y = lane sums. */
EVLM__INLINE void tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *w,
                       size_t ldw, int kb, evlm_type wt, int MR, int NR) {
    const size_t bs = evlm_type_traits_of(wt)->size, hd = (size_t)evlm_type_traits_of(wt)->head;
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
                wv[r] = _mm256_loadu_si256((const __m256i *)(const void *)(blk + hd));
                wa[r] = _mm256_abs_epi8(wv[r]);
            } else {
                __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(blk + hd));
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
                if (wt == EVLM_TYPE_Q8_0)
                    p = _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(xv, wv[r]));
                else if (wt == EVLM_TYPE_Q4_0)
                    p = _mm256_sub_epi16(_mm256_maddubs_epi16(wv[r], xv), x8);
                else
                    p = _mm256_maddubs_epi16(wv[r], xv);
                __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), dw[r]);
                acc[i][r] = _mm256_fmadd_ps(t, dx, acc[i][r]);
                if (wt == EVLM_TYPE_Q4_1) acc[i][r] = _mm256_fmadd_ps(dm[r], sx, acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) y[(size_t)i * ldy + r] = hsum8(acc[i][r]);
}

#define TILE(T, MR, NR)                                                                            \
    static void tile_##T##_##MR##x##NR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,        \
                                       const char *w, size_t ldw, int kb) {                        \
        tile(y, ldy, x, ldx, w, ldw, kb, EVLM_TYPE_##T, MR, NR);                                   \
    }
/* [0]: one weight row; [1]: two (several activation rows); [2]: 1 x 4 (a single activation row) */
/* a macro of macros, laid out by hand */
/* clang-format off */
#define TILES(T)                                                                                   \
    TILE(T, 1, 1) TILE(T, 2, 1) TILE(T, 3, 1) TILE(T, 4, 1)                                        \
    TILE(T, 1, 2) TILE(T, 2, 2) TILE(T, 3, 2) TILE(T, 4, 2) TILE(T, 1, 4)                          \
    static const evlm__q8_tile tiles_##T[3][4] = {                                                 \
        {tile_##T##_1x1, tile_##T##_2x1, tile_##T##_3x1, tile_##T##_4x1},                          \
        {tile_##T##_1x2, tile_##T##_2x2, tile_##T##_3x2, tile_##T##_4x2},                          \
        {tile_##T##_1x4, NULL, NULL, NULL}};
/* clang-format on */
TILES(Q8_0)
TILES(Q4_0)
TILES(Q4_1)

/* ---- int8 gemm on 16-row interleaved weights (*_R16, quant/repack.h) --------------------------
 */

/* A block column of a group holds 16 rows: fp16 scales, (Q4_1) fp16 minimums, then 64-byte
 * chunks with one 32-bit lane per row; here each chunk is two 8-row halves (one ymm each), so
 * the accumulators are 8 rows wide (no horizontal sums). */
#define R16_MC 64 /* activation rows per chunk (their blocks stay in L2) */
#define R16_MR 4  /* activation rows per register tile: up to 2 x 16 weight rows, 4 x 8 */

EVLM__INLINE __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Y rows of MR activation rows x the weight rows of halves [H0, H0 + NH) of one group (rows
 * from `rows` on go to a temporary, never to y) over blocks [0, nb) of gw (a group's block
 * column b0): acc starts at 0 (first) or at y (later block chunks). isum per row and block is
 * exact: Q8_0 as |w| times x with w's sign (vpmaddubsw pairs <= 2 * 128 * 127, no saturation),
 * Q4 nibbles times x summed in int16 over the block (8 pairs of at most 15 * 127 each: <= 30480)
 * plus corr = -8 sum(x.qs) for Q4_0. The float step is the same for every MR and half:
 * p = float(isum) * dx, acc = fma(dw, p, acc), and for Q4_1 acc = fma(m, sx, acc). */
EVLM__INLINE void r16_tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const int32_t *corr,
                           size_t ldc, const char *gw, int nb, int rows, bool first, evlm_type wt,
                           int MR, int H0, int NH) {
    /* a block column: the 16 rows' fp16 fields, then their quants */
    const size_t col = EVLM_R16 * evlm_type_traits_of(wt)->size;
    const size_t q0 = EVLM_R16 * (size_t)evlm_type_traits_of(wt)->head;
    const __m256i ones = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f);
    const int r0 = 8 * H0, r1 = 8 * (H0 + NH) < rows ? 8 * (H0 + NH) : rows;
    float tmp[R16_MR][EVLM_R16];
    float *yo = y;
    size_t ldo = ldy;
    if (r1 < 8 * (H0 + NH)) { /* partial last group: never write past n1 */
        yo = tmp[0], ldo = EVLM_R16;
        for (int i = 0; i < MR; i++)
            for (int r = 0; r < EVLM_R16; r++)
                tmp[i][r] = r < r1 && !first ? y[(size_t)i * ldy + r] : 0.0f;
    }
    __m256 acc[R16_MR][2];
    for (int i = 0; i < MR; i++)
        for (int h = H0; h < H0 + NH; h++)
            acc[i][h - H0] =
                first ? _mm256_setzero_ps() : _mm256_loadu_ps(yo + (size_t)i * ldo + 8 * h);
    for (int b = 0; b < nb; b++, gw += col) {
        __m256i is[R16_MR][2];
        for (int h = H0; h < H0 + NH; h++) {
            const int j = h - H0;
            for (int i = 0; i < MR; i++) is[i][j] = _mm256_setzero_si256();
            if (wt == EVLM_TYPE_Q8_0) {
                for (int c = 0; c < 8; c++) {
                    __m256i wv = _mm256_loadu_si256(
                        (const __m256i *)(const void *)(gw + q0 + 64 * c + 32 * h));
                    __m256i wa = _mm256_abs_epi8(wv);
                    for (int i = 0; i < MR; i++) {
                        __m256i xs =
                            _mm256_sign_epi8(bcast4(x[(size_t)i * ldx + b].qs + 4 * c), wv);
                        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xs), ones);
                        is[i][j] = _mm256_add_epi32(is[i][j], p);
                    }
                }
            } else {
                for (int c = 0; c < 4; c++) {
                    __m256i v = _mm256_loadu_si256(
                        (const __m256i *)(const void *)(gw + q0 + 64 * c + 32 * h));
                    __m256i lo = _mm256_and_si256(v, lo4),
                            hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
                    for (int i = 0; i < MR; i++) {
                        const int8_t *xq = x[(size_t)i * ldx + b].qs;
                        __m256i pl = _mm256_maddubs_epi16(lo, bcast4(xq + 4 * c));
                        __m256i ph = _mm256_maddubs_epi16(hi, bcast4(xq + 16 + 4 * c));
                        is[i][j] = _mm256_add_epi16(is[i][j], _mm256_add_epi16(pl, ph));
                    }
                }
                for (int i = 0; i < MR; i++) {
                    is[i][j] = _mm256_madd_epi16(is[i][j], ones);
                    if (wt == EVLM_TYPE_Q4_0)
                        is[i][j] = _mm256_add_epi32(is[i][j],
                                                    _mm256_set1_epi32(corr[(size_t)i * ldc + b]));
                }
            }
        }
        for (int h = H0; h < H0 + NH; h++) {
            const int j = h - H0;
            __m256 dw =
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(gw + 16 * h)));
            __m256 mw = wt == EVLM_TYPE_Q4_1
                            ? _mm256_cvtph_ps(_mm_loadu_si128(
                                  (const __m128i *)(const void *)(gw + 32 + 16 * h)))
                            : dw;
            for (int i = 0; i < MR; i++) {
                const evlm_q8a *xb = x + (size_t)i * ldx + b;
                __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(is[i][j]), _mm256_set1_ps(xb->d));
                acc[i][j] = _mm256_fmadd_ps(dw, p, acc[i][j]);
                if (wt == EVLM_TYPE_Q4_1)
                    acc[i][j] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xb->s), acc[i][j]);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int h = H0; h < H0 + NH; h++)
            _mm256_storeu_ps(yo + (size_t)i * ldo + 8 * h, acc[i][h - H0]);
    if (yo != y)
        for (int i = 0; i < MR; i++)
            for (int r = r0; r < r1; r++) y[(size_t)i * ldy + r] = tmp[i][r];
}

#define R16_TILE(T, MR, H0, NH)                                                                    \
    static void r16_tile_##T##_##MR##_##H0##NH(float *y, size_t ldy, const evlm_q8a *x,            \
                                               size_t ldx, const int32_t *corr, size_t ldc,        \
                                               const char *gw, int nb, int rows, bool first) {     \
        r16_tile(y, ldy, x, ldx, corr, ldc, gw, nb, rows, first, EVLM_TYPE_##T, MR, H0, NH);       \
    }
/* [MR - 1]: 1 or 2 rows x both halves; 3 or 4 rows x one half, [0] then [1] */
/* a macro of macros, laid out by hand */
/* clang-format off */
#define R16_TILES(T)                                                                               \
    R16_TILE(T, 1, 0, 2) R16_TILE(T, 2, 0, 2) R16_TILE(T, 3, 0, 1) R16_TILE(T, 4, 0, 1)            \
    R16_TILE(T, 3, 1, 1) R16_TILE(T, 4, 1, 1)                                                      \
    static const evlm__q8r16_tile r16_tiles_##T[R16_MR][2] = {                                     \
        {r16_tile_##T##_1_02, NULL}, {r16_tile_##T##_2_02, NULL},                                  \
        {r16_tile_##T##_3_01, r16_tile_##T##_3_11}, {r16_tile_##T##_4_01, r16_tile_##T##_4_11}};
/* clang-format on */
R16_TILES(Q8_0)
R16_TILES(Q4_0)
R16_TILES(Q4_1)

/* c[b] = mul * the sum of activation block b's 32 int8 values (exact): bytes + 128 summed by
 * vpsadbw; q8_walk.c's corrections, also for x86_avx512_quant.c */
void evlm__avx2_q8_corr(int32_t *c, const evlm_q8a *x, int nb, int32_t mul) {
    for (int b = 0; b < nb; b++) {
        __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)x[b].qs),
                                     _mm256_set1_epi8((char)0x80));
        __m256i s = _mm256_sad_epu8(v, _mm256_setzero_si256());
        __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
        c[b] = mul * ((int32_t)_mm_cvtsi128_si32(t) - 32 * 128);
    }
}

/* Row-major: 1 x 4 tiles for one activation row, 1..4 x 2 for more. R16: activation rows in
 * chunks of R16_MC, blocks in chunks whose corrections fit q8_walk.c's table (Q4_0 only: Q8_0 is
 * signed already, Q4_1 needs none), register tiles of up to R16_MR rows (halves for 3 or 4). */
static const evlm__q8_shape k_shape = {4, 2};
static const evlm__q8r16_shape k_r16_shape = {R16_MC, R16_MR, true};

/* The int8 entries per block type (ref_impl.h): Q4_0's R16 tiles keep the nibbles unsigned and
 * take the -8 through the walk's corrections; Q8_0's are signed already, Q4_1 needs none. */
const evlm__q8_kern evlm__avx2_q8[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = {tiles_Q8_0, r16_tiles_Q8_0, 0},
    [EVLM_TYPE_Q4_0] = {tiles_Q4_0, r16_tiles_Q4_0, 8},
    [EVLM_TYPE_Q4_1] = {tiles_Q4_1, r16_tiles_Q4_1, 0},
};

/* Y (m, n) = Xq (m, k) @ W^T for W rows [n0, n1): q8_walk.c's walks with this file's tiles;
 * types without an entry go to ref. */
void evlm__avx2_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                       size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    if (wt == EVLM_TYPE_Q8_0_S24) { /* x86_avx2_s24.c */
        evlm__avx2_gemm_q_s24(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (evlm_type_traits_of(wt)->kq) { /* x86_avx2_kquant.c, x86_avx2_kquant_r16.c */
        if (evlm_type_is_r16(wt))      /* Q4_K_R16 / Q6_K_R16 */
            evlm__avx2_gemm_q_kqr16(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        else
            evlm__avx2_gemm_q_kq(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (!evlm__q8_gemm(evlm__avx2_q8, &k_shape, &k_r16_shape, evlm__avx2_q8_corr, y, ldy, x, ldx, w,
                       ldw, wt, m, n0, n1, k))
        evlm__ref_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

/* ---- dequantizing gemm (act f32) ------------------------------------------------------------- */

/* One block to 32 floats, value for value as evlm_dequantize_row (q * d, then + m): qs is the
 * block's 32 int8 (Q8_0) or 16 nibble bytes (Q4, low 128 bits), in ggml order. */
EVLM__INLINE void dequant_block(__m256i qs, float d, float mn, float *dst, evlm_type wt) {
    __m256i q[4];
    if (wt == EVLM_TYPE_Q8_0) {
        __m128i a = _mm256_castsi256_si128(qs), b = _mm256_extracti128_si256(qs, 1);
        q[0] = _mm256_cvtepi8_epi32(a);
        q[1] = _mm256_cvtepi8_epi32(_mm_srli_si128(a, 8));
        q[2] = _mm256_cvtepi8_epi32(b);
        q[3] = _mm256_cvtepi8_epi32(_mm_srli_si128(b, 8));
    } else {
        __m128i b16 = _mm256_castsi256_si128(qs);
        __m256i lo = _mm256_cvtepu8_epi32(b16), hi = _mm256_cvtepu8_epi32(_mm_srli_si128(b16, 8));
        q[0] = _mm256_and_si256(lo, _mm256_set1_epi32(0x0f));
        q[1] = _mm256_and_si256(hi, _mm256_set1_epi32(0x0f));
        q[2] = _mm256_srli_epi32(lo, 4);
        q[3] = _mm256_srli_epi32(hi, 4);
        if (wt == EVLM_TYPE_Q4_0)
            for (int j = 0; j < 4; j++) q[j] = _mm256_sub_epi32(q[j], _mm256_set1_epi32(8));
    }
    __m256 vd = _mm256_set1_ps(d);
    for (int j = 0; j < 4; j++) {
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(q[j]), vd);
        if (wt == EVLM_TYPE_Q4_1) f = _mm256_add_ps(f, _mm256_set1_ps(mn));
        _mm256_storeu_ps(dst + 8 * j, f);
    }
}

/* One Q8_0 / Q4_0 / Q4_1 row (ggml layout) to float. */
EVLM__INLINE void dequant_row(const void *w, float *dst, int k, evlm_type wt) {
    const char *blk = w;
    const size_t bs = evlm_type_traits_of(wt)->size, q0 = (size_t)evlm_type_traits_of(wt)->head;
    for (int b = 0; b < k / EVLM_QK; b++, blk += bs, dst += EVLM_QK) {
        __m256i qs = wt == EVLM_TYPE_Q8_0
                         ? _mm256_loadu_si256((const __m256i *)(const void *)(blk + q0))
                         : _mm256_castsi128_si256(
                               _mm_loadu_si128((const __m128i *)(const void *)(blk + q0)));
        dequant_block(qs, h2f(blk), wt == EVLM_TYPE_Q4_1 ? h2f(blk + 2) : 0.0f, dst, wt);
    }
}

#define DEQ_ROW(T)                                                                                 \
    static void deq_##T(const void *w, float *dst, int k) {                                        \
        dequant_row(w, dst, k, EVLM_TYPE_##T);                                                     \
    }
DEQ_ROW(Q8_0)
DEQ_ROW(Q4_0)
DEQ_ROW(Q4_1)

/* the dequantizing gemm's row decoders per block type (ref_impl.h) */
const evlm__deq_row evlm__avx2_deq[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = deq_Q8_0,
    [EVLM_TYPE_Q4_0] = deq_Q4_0,
    [EVLM_TYPE_Q4_1] = deq_Q4_1,
};

/* x (k) . w (k), k a multiple of 32, 4 accumulators of 8 lanes */
static float dot32(const float *x, const float *w, int k) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (int j = 0; j < k; j += 32)
        for (int u = 0; u < 4; u++)
            a[u] = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8 * u), _mm256_loadu_ps(w + j + 8 * u),
                                   a[u]);
    return hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
}

/* gemm for the block types of evlm__avx2_deq and their R16 forms: each row dequantized once
 * into scratch (k floats), then dotted with all m rows of x. Other weight types go to `ref`. */
void evlm__avx2_gemm_deq(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                         size_t ldw, evlm_type wt, int m, int n0, int n1, int k, float *scratch) {
    evlm_type base = evlm_type_is_r16(wt) ? evlm_type_r16_base(wt) : wt;
    evlm__deq_row deq = (unsigned)base < EVLM_TYPE_COUNT ? evlm__avx2_deq[base] : NULL;
    if (!deq || k % EVLM_QK) {
        evlm__ref_gemm(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k, scratch);
        return;
    }
    for (int n = n0; n < n1; n++) {
        evlm__deq_matrix_row(w, ldw, wt, n, scratch, k, deq);
        for (int i = 0; i < m; i++) y[(size_t)i * ldy + n] = dot32(x + (size_t)i * ldx, scratch, k);
    }
}

#else
typedef int evlm__x86_avx2_quant_empty; /* ISO C forbids an empty translation unit */
#endif
