/*
 * x86_avx512_quant.c - AVX-512 VNNI kernels for quantized weights: activation quantization
 * (quantize_act), the int8 gemm_q for Q8_0 / Q4_0 / Q4_1 weights with vpdpbusd, and the
 * dequantizing gemm (the --act f32 path) for those weights.
 *
 * Compiled with the AVX-512 flags of x86_avx512.c plus -mavx512vnni for this file only
 * (CMakeLists.txt); dispatch.c builds the "avx512vnni" table from these only when cpuid reports
 * VNNI. Every function here may use VNNI, so nothing here is used by the plain avx512 table.
 *
 * gemm_q: vpdpbusd multiplies unsigned by signed bytes. Q4 nibbles are natural u8 operands and
 * their -8 (Q4_0) is subtracted exactly in int32 through the activation's byte sum; Q8_0 weights
 * get +128 (xor 0x80) and the same exact correction. Two 32-element blocks fill a 512-bit
 * register; each int32 lane holds a partial block sum that is converted and scaled per block, so
 * the only difference to `ref` is float summation order. Register tiles of up to 4 activation
 * rows x 4 weight rows decode each weight block once per tile. quantize_act is bit-exact with
 * ref (roundf's ties away from zero, not the vector default ties to even).
 *
 * gemm_q on the 16-row interleaved *_R16 weights (quant/repack.h): a 64-byte chunk is 4 weight
 * bytes of each of 16 rows, so vpdpbusd against a broadcast 4 activation bytes gives 16 exact
 * row sums and the accumulators are 16 rows wide (no horizontal sums, one masked store per
 * group). Q8_0 weights are made unsigned by xor 0x80 and Q4_0 nibbles keep their +8; the
 * -128 / -8 times the activation block's byte sum is added in int32 (exact: a per-call table of
 * block sums, not x.s, which would leave the rounding of d * sum). One float step per block and
 * 16 rows: p = float(isum) * dx, acc = fma(dw16, p, acc) (+ fma(m16, sx, acc) for Q4_1), in
 * block order, the same for the m = 1 path and every register tile of up to 8 activation rows,
 * so each output is the same bits whatever m, n0 and n1 (gemm_q's contract). q8_walk.c walks
 * the matrix with these tiles: activation rows in chunks of 64 whose blocks stay in L2, long
 * rows split in block chunks with the partial sums kept in y. The dequantizing gemm reads an R16
 * row with 4-byte loads 64 bytes apart.
 */
#include "kernels/kernels.h"
#include "kernels/ref_impl.h"
#include "quant/repack.h"

/* built only with this file's flags (CMakeLists.txt), so dispatch.c knows it exists */
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) &&                        \
    defined(__AVX512VL__) && defined(__AVX512VNNI__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

/* ---- activation quantization ---------------------------------------------------------------- */

/* roundf (ties away from zero) of 16 floats as int32: trunc, then one step away from zero when
 * the dropped fraction (exact in float) is at least one half. */
EVLM__INLINE __m512i round_away(__m512 v) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), half, _CMP_GE_OQ);
    __m512 step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)),
        _mm512_castps_si512(one)));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
}

/* x (k) -> k / 32 blocks: d = max|x| / 127, qs = roundf(x / d), s = d * sum(qs), as ref */
void evlm__avx512vnni_quantize_act(const float *x, evlm_q8a *y, int k) {
    for (int b = 0; b < k / EVLM_QK; b++, x += EVLM_QK) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = round_away(_mm512_mul_ps(v0, vid)), q1 = round_away(_mm512_mul_ps(v1, vid));
        /* |q| <= 127 for finite x; NaN / Inf convert to INT_MIN: clamp so that the sum below stays
         * the sum of the stored bytes (and free of overflow) */
        const __m512i lo = _mm512_set1_epi32(-128), hi = _mm512_set1_epi32(127);
        q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
        q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
        _mm_storeu_si128((__m128i *)(void *)y[b].qs, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(void *)(y[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
        int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        y[b].d = d;
        y[b].s = d * (float)sum;
    }
}

/* ---- int8 gemm ------------------------------------------------------------------------------- */

/* Two fp16 values as 16 floats: a in the lanes of the first block, b in the second. Q8_0 keeps
 * a block's 32 bytes together (lanes 0-7 | 8-15); Q4 interleaves 16-byte halves (0-3, 8-11 |
 * 4-7, 12-15), see load_w. */
EVLM__INLINE __m512 pair_ps(float a, float b, evlm_type wt) {
    __mmask16 second = wt == EVLM_TYPE_Q8_0 ? (__mmask16)0xff00 : (__mmask16)0xf0f0;
    return _mm512_mask_blend_ps(second, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

EVLM__INLINE float h2f(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* The weights of blocks b (and b + 1 when two) of one row as unsigned bytes, in the lane order
 * of pair_ps: Q8_0 as q + 128; Q4 as [b lo nibbles, b+1 lo, b hi, b+1 hi] (16 bytes each). */
EVLM__INLINE __m512i load_w(const char *blk, int two, evlm_type wt) {
    const size_t bs = evlm_type_traits_of(wt)->size, off = (size_t)evlm_type_traits_of(wt)->head;
    if (wt == EVLM_TYPE_Q8_0) {
        const __m256i *p0 = (const __m256i *)(const void *)(blk + off);
        const __m256i *p1 = (const __m256i *)(const void *)(blk + bs + off);
        __m512i v = two ? _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(p0)),
                                             _mm256_loadu_si256(p1), 1)
                        : _mm512_zextsi256_si512(_mm256_loadu_si256(p0));
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(blk + off));
    __m128i hi = two ? _mm_loadu_si128((const __m128i *)(const void *)(blk + bs + off))
                     : _mm_setzero_si128();
    __m512i v = _mm512_broadcast_i64x4(_mm256_set_m128i(hi, lo));
    v = _mm512_mask_srli_epi16(v, (__mmask32)0xffff0000u, v, 4);
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
}

/* Activation bytes of blocks b (b + 1) in the lane order of load_w. */
EVLM__INLINE __m512i load_x(const evlm_q8a *x, int two, evlm_type wt) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)x[0].qs);
    __m512i v =
        two ? _mm512_inserti64x4(_mm512_castsi256_si512(a),
                                 _mm256_loadu_si256((const __m256i *)(const void *)x[1].qs), 1)
            : _mm512_zextsi256_si512(a);
    if (wt != EVLM_TYPE_Q8_0) v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
    return v;
}

/* acc[i][r] (16 lanes) over all blocks for MR activation rows x NR weight rows; y = lane sums. */
EVLM__INLINE void tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *w,
                       size_t ldw, int kb, evlm_type wt, int MR, int NR) {
    const size_t bs = evlm_type_traits_of(wt)->size;
    __m512 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) acc[i][r] = _mm512_setzero_ps();
    /* the bytes whose dot with x is subtracted: the +128 of Q8_0, the -8 of Q4_0 */
    const __m512i off = _mm512_set1_epi8(wt == EVLM_TYPE_Q8_0 ? (char)0x80 : 8);
    for (int b = 0; b < kb; b += 2) {
        int two = b + 1 < kb;
        __m512i wv[4];
        __m512 dw[4], dm[4];
        for (int r = 0; r < NR; r++) {
            const char *blk = w + (size_t)r * ldw + (size_t)b * bs;
            wv[r] = load_w(blk, two, wt);
            dw[r] = pair_ps(h2f(blk), two ? h2f(blk + bs) : 0.0f, wt);
            if (wt == EVLM_TYPE_Q4_1)
                dm[r] = pair_ps(h2f(blk + 2), two ? h2f(blk + bs + 2) : 0.0f, wt);
        }
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            __m512i xv = load_x(xb, two, wt);
            __m512 dx = pair_ps(xb[0].d, two ? xb[1].d : 0.0f, wt), sx = dx;
            __m512i base = _mm512_setzero_si512();
            if (wt != EVLM_TYPE_Q4_1)
                base = _mm512_sub_epi32(base, _mm512_dpbusd_epi32(base, off, xv));
            else /* m * s spread over the 8 lanes of the block: s / 8 is exact */
                sx = pair_ps(xb[0].s * 0.125f, two ? xb[1].s * 0.125f : 0.0f, wt);
            for (int r = 0; r < NR; r++) {
                __m512i isum = _mm512_dpbusd_epi32(base, wv[r], xv);
                __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dw[r]);
                acc[i][r] = _mm512_fmadd_ps(t, dx, acc[i][r]);
                if (wt == EVLM_TYPE_Q4_1) acc[i][r] = _mm512_fmadd_ps(dm[r], sx, acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) y[(size_t)i * ldy + r] = _mm512_reduce_add_ps(acc[i][r]);
}

#define TILE(T, MR, NR)                                                                            \
    static void tile_##T##_##MR##x##NR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,        \
                                       const char *w, size_t ldw, int kb) {                        \
        tile(y, ldy, x, ldx, w, ldw, kb, EVLM_TYPE_##T, MR, NR);                                   \
    }
/* [0]: one weight row; [1]: four; [2]: 1 x 4 again (q8_walk.c's single-row chunks) */
/* a macro of macros, laid out by hand */
/* clang-format off */
#define TILES(T)                                                                                   \
    TILE(T, 1, 1) TILE(T, 2, 1) TILE(T, 3, 1) TILE(T, 4, 1)                                        \
    TILE(T, 1, 4) TILE(T, 2, 4) TILE(T, 3, 4) TILE(T, 4, 4)                                        \
    static const evlm__q8_tile tiles_##T[3][4] = {                                                 \
        {tile_##T##_1x1, tile_##T##_2x1, tile_##T##_3x1, tile_##T##_4x1},                          \
        {tile_##T##_1x4, tile_##T##_2x4, tile_##T##_3x4, tile_##T##_4x4},                          \
        {tile_##T##_1x4, NULL, NULL, NULL}};
/* clang-format on */
TILES(Q8_0)
TILES(Q4_0)
TILES(Q4_1)

/* ---- int8 gemm on 16-row interleaved weights (*_R16, quant/repack.h) --------------------------
 */

/* One block column of a group holds 16 rows: fp16 scales, (Q4_1) fp16 minimums, then 64-byte
 * chunks with one 32-bit lane per row, so a zmm load is 4 weights of each of 16 rows and the
 * accumulators are 16 rows wide (no horizontal sums). */
#define R16_MC 64 /* activation rows per chunk (their blocks stay in L2) */
#define R16_MR 8  /* activation rows per register tile */

EVLM__INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Y rows of MR activation rows x the 16 weight rows of one group (lanes of `mask`) over blocks
 * [0, nb) of gw (a group's block column b0): acc starts at 0 (first) or at y (later block
 * chunks, stored there by the previous one). isum per row and block is exact: the unsigned
 * weight bytes (Q8_0 xor 0x80, Q4 nibbles) times x, plus corr = -128 or -8 times sum(x.qs). The
 * float step is the same for every MR (the invariant of gemm_q): p = float(isum) * dx,
 * acc = fma(dw, p, acc), and for Q4_1 acc = fma(m, sx, acc). */
EVLM__INLINE void r16_tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const int32_t *corr,
                           size_t ldc, const char *gw, int nb, __mmask16 mask, bool first,
                           evlm_type wt, int MR) {
    /* a block column: the 16 rows' fp16 fields, then their quants */
    const size_t col = EVLM_R16 * evlm_type_traits_of(wt)->size;
    const size_t q0 = EVLM_R16 * (size_t)evlm_type_traits_of(wt)->head;
    const __m512i lo4 = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
    __m512 acc[R16_MR];
    for (int i = 0; i < MR; i++)
        acc[i] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, y + (size_t)i * ldy);
    for (int b = 0; b < nb; b++, gw += col) {
        __m512i is[R16_MR][2];
        for (int i = 0; i < MR; i++) {
            is[i][0] = wt == EVLM_TYPE_Q4_1 ? _mm512_setzero_si512()
                                            : _mm512_set1_epi32(corr[(size_t)i * ldc + (size_t)b]);
            is[i][1] = _mm512_setzero_si512();
        }
        if (wt == EVLM_TYPE_Q8_0) {
            for (int c = 0; c < 8; c += 2) { /* two chains: even and odd chunks */
                __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(gw + q0 + 64 * c), flip);
                __m512i w1 = _mm512_xor_si512(_mm512_loadu_si512(gw + q0 + 64 * c + 64), flip);
                for (int i = 0; i < MR; i++) {
                    const int8_t *xq = x[(size_t)i * ldx + b].qs;
                    is[i][0] = _mm512_dpbusd_epi32(is[i][0], w0, bcast4(xq + 4 * c));
                    is[i][1] = _mm512_dpbusd_epi32(is[i][1], w1, bcast4(xq + 4 * c + 4));
                }
            }
        } else { /* low nibbles: elements 4c.., high nibbles: 16 + 4c.. */
            for (int c = 0; c < 4; c++) {
                __m512i v = _mm512_loadu_si512(gw + q0 + 64 * c);
                __m512i lo = _mm512_and_si512(v, lo4),
                        hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
                for (int i = 0; i < MR; i++) {
                    const int8_t *xq = x[(size_t)i * ldx + b].qs;
                    is[i][0] = _mm512_dpbusd_epi32(is[i][0], lo, bcast4(xq + 4 * c));
                    is[i][1] = _mm512_dpbusd_epi32(is[i][1], hi, bcast4(xq + 16 + 4 * c));
                }
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)gw));
        __m512 mw =
            wt == EVLM_TYPE_Q4_1
                ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(gw + 32)))
                : dw;
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(is[i][0], is[i][1])),
                                     _mm512_set1_ps(xb->d));
            acc[i] = _mm512_fmadd_ps(dw, p, acc[i]);
            if (wt == EVLM_TYPE_Q4_1) acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xb->s), acc[i]);
        }
    }
    for (int i = 0; i < MR; i++) _mm512_mask_storeu_ps(y + (size_t)i * ldy, mask, acc[i]);
}

/* an evlm__q8r16_tile: the group's rows below `rows` are the lanes of the mask */
#define R16_TILE(T, MR)                                                                            \
    static void r16_tile_##T##_##MR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,           \
                                    const int32_t *corr, size_t ldc, const char *gw, int nb,       \
                                    int rows, bool first) {                                        \
        __mmask16 mask = rows >= EVLM_R16 ? (__mmask16)0xffff : (__mmask16)((1u << rows) - 1);     \
        r16_tile(y, ldy, x, ldx, corr, ldc, gw, nb, mask, first, EVLM_TYPE_##T, MR);               \
    }
/* [MR - 1][0]: MR rows x the whole group */
/* a macro of macros, laid out by hand */
/* clang-format off */
#define R16_TILES(T)                                                                               \
    R16_TILE(T, 1) R16_TILE(T, 2) R16_TILE(T, 3) R16_TILE(T, 4)                                    \
    R16_TILE(T, 5) R16_TILE(T, 6) R16_TILE(T, 7) R16_TILE(T, 8)                                    \
    static const evlm__q8r16_tile r16_tiles_##T[R16_MR][2] = {                                     \
        {r16_tile_##T##_1}, {r16_tile_##T##_2}, {r16_tile_##T##_3}, {r16_tile_##T##_4},            \
        {r16_tile_##T##_5}, {r16_tile_##T##_6}, {r16_tile_##T##_7}, {r16_tile_##T##_8}};
/* clang-format on */
R16_TILES(Q8_0)
R16_TILES(Q4_0)
R16_TILES(Q4_1)

/* Row-major: tiles of 1..4 activation rows x 4 weight rows. R16: activation rows in chunks of
 * R16_MC, blocks in chunks whose corrections (Q8_0: -128, Q4_0: -8 times an activation block's
 * byte sum; x86_avx2_quant.c's evlm__avx2_q8_corr) fit q8_walk.c's table, tiles of up to R16_MR
 * rows x the whole group. */
static const evlm__q8_shape k_shape = {4, 4};
static const evlm__q8r16_shape k_r16_shape = {R16_MC, R16_MR, true};

/* The int8 entries per block type (ref_impl.h), with the zero points of the R16 tiles: Q8_0's
 * bytes xor 0x80 (+128), Q4_0's nibbles (+8), Q4_1 none. */
const evlm__q8_kern evlm__avx512vnni_q8[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = {tiles_Q8_0, r16_tiles_Q8_0, 128},
    [EVLM_TYPE_Q4_0] = {tiles_Q4_0, r16_tiles_Q4_0, 8},
    [EVLM_TYPE_Q4_1] = {tiles_Q4_1, r16_tiles_Q4_1, 0},
};

/* Y (m, n) = Xq (m, k) @ W^T for W rows [n0, n1): q8_walk.c's walks with this file's tiles;
 * types without an entry go to ref. */
void evlm__avx512vnni_gemm_q(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                             size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    if (wt == EVLM_TYPE_Q8_0_S24) { /* x86_avx512_s24q.c */
        evlm__avx512vnni_gemm_q_s24(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (evlm_type_traits_of(wt)->kq) { /* x86_avx512_kquant.c, x86_avx512_kquant_r16.c */
        if (evlm_type_is_r16(wt))      /* Q4_K_R16 / Q6_K_R16 */
            evlm__avx512vnni_gemm_q_kqr16(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        else
            evlm__avx512vnni_gemm_q_kq(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (!evlm__q8_gemm(evlm__avx512vnni_q8, &k_shape, &k_r16_shape, evlm__avx2_q8_corr, y, ldy, x,
                       ldx, w, ldw, wt, m, n0, n1, k))
        evlm__ref_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

/* ---- dequantizing gemm (act f32) ------------------------------------------------------------- */

/* One block to 32 floats, value for value as evlm_dequantize_row (q * d, then + m): qs is the
 * block's 32 int8 (Q8_0) or 16 nibble bytes (Q4, low 128 bits), in ggml order. */
EVLM__INLINE void dequant_block(__m256i qs, float d, float mn, float *dst, evlm_type wt) {
    __m512i q0, q1;
    if (wt == EVLM_TYPE_Q8_0) {
        q0 = _mm512_cvtepi8_epi32(_mm256_castsi256_si128(qs));
        q1 = _mm512_cvtepi8_epi32(_mm256_extracti128_si256(qs, 1));
    } else {
        __m512i q = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(qs));
        q0 = _mm512_and_si512(q, _mm512_set1_epi32(0x0f));
        q1 = _mm512_srli_epi32(q, 4);
        if (wt == EVLM_TYPE_Q4_0) {
            q0 = _mm512_sub_epi32(q0, _mm512_set1_epi32(8));
            q1 = _mm512_sub_epi32(q1, _mm512_set1_epi32(8));
        }
    }
    __m512 vd = _mm512_set1_ps(d);
    __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(q0), vd),
           f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(q1), vd);
    if (wt == EVLM_TYPE_Q4_1) {
        f0 = _mm512_add_ps(f0, _mm512_set1_ps(mn));
        f1 = _mm512_add_ps(f1, _mm512_set1_ps(mn));
    }
    _mm512_storeu_ps(dst, f0);
    _mm512_storeu_ps(dst + 16, f1);
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
const evlm__deq_row evlm__avx512vnni_deq[EVLM_TYPE_COUNT] = {
    [EVLM_TYPE_Q8_0] = deq_Q8_0,
    [EVLM_TYPE_Q4_0] = deq_Q4_0,
    [EVLM_TYPE_Q4_1] = deq_Q4_1,
};

/* x (k) . w (k), k a multiple of 32, 2 accumulators of 16 lanes */
static float dot32(const float *x, const float *w, int k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int j = 0; j < k; j += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(w + j), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + j + 16), _mm512_loadu_ps(w + j + 16), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* gemm for the block types of evlm__avx512vnni_deq and their R16 forms: each row dequantized
 * once into scratch (k floats), then dotted with all m rows of x. Other weight types go to
 * `ref`. */
void evlm__avx512vnni_gemm_deq(float *y, size_t ldy, const float *x, size_t ldx, const void *w,
                               size_t ldw, evlm_type wt, int m, int n0, int n1, int k,
                               float *scratch) {
    evlm_type base = evlm_type_is_r16(wt) ? evlm_type_r16_base(wt) : wt;
    evlm__deq_row deq = (unsigned)base < EVLM_TYPE_COUNT ? evlm__avx512vnni_deq[base] : NULL;
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
typedef int evlm__x86_avx512_quant_empty; /* ISO C forbids an empty translation unit */
#endif
