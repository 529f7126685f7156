/*
 * kquant_r16_body.h - the int8 gemm_q tiles for the k-quants' 16-row interleaved forms
 * Q4_K_R16 / Q5_K_R16 / Q6_K_R16 (quant/kquant_repack.h) against evlm_q8a activations, written once
 * for every ISA in terms of a few vector helpers, and included by: x86_avx512_kquant_r16.c  KR_ROWS
 * 16: one 512-bit lane per row, vpdpbusd (VNNI); x86_avx2_kquant_r16.c    KR_ROWS 8: each group as
 * two 8-row halves, vpmaddubsw + vpmaddwd (the avx2 and plain avx512 tables); arm_neon_kquant_r16.c
 * KR_ROWS 4: four 4-row quarters, vmull_s8 + pairwise adds; arm_dotprod_kquant_r16.c KR_ROWS 4 with
 * SDOT. Each defines KR_NAME (the entry), KR_ROWS, the vector types kr_i (32-bit lanes, also read
 * as bytes), kr_f (float lanes) and kr_b (KR_ROWS bytes, one per row) and the kr_* helpers before
 * including it.
 *
 * One tile is one activation row against the 16 rows of a group over all super-blocks; the walk
 * is q8_walk.c's R16 walk (shape: one row per tile, all blocks in one pass). Per super-block and
 * row lane: the int32 sum of each 32 (Q6_K: 16) weights with their activation block, exact (the
 * weights are unsigned codes 0..15 / 0..31 / 0..63, so an unsigned-by-signed or a signed dot takes
 * them as they are); times the sub-block scale in int32 (Q6_K: with its -32 taken off through the
 * activation's sums of 16), then in float times the activation block's d, summed over the
 * super-block and times d at its end; Q4_K's and Q5_K's minimums through the activation blocks'
 * x.s, times dmin. The same products as ref (evlm_r16_dot_ref), another summation order:
 * tests/test_kquants.c bounds the difference. Each output's float operations depend on its row and
 * k alone, never on m, n0 or n1. Not here: the row-major k-quant kernels (x86_kquant_body.h,
 * arm_neon_kquant.c), the 32-element R16 types.
 */
#include "kernels/ref_impl.h"
#include "quant/kquant_repack.h"
#include "quant/kquants.h"
#include "quant/repack.h"

#include <string.h>

#define KR_HALVES (EVLM_R16 / KR_ROWS) /* vectors per group of 16 rows */

/* the 16 sums of 16 activation bytes of 8 blocks (s[2j + h]: block j, bytes 16h .. 16h+15),
 * exact */
#if defined(__x86_64__)
EVLM__INLINE void kr_sums16(const evlm_q8a *a, int32_t s[16]) {
    for (int j = 0; j < 8; j++) { /* the bytes + 128 summed by vpsadbw, less 16 * 128 */
        __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)a[j].qs),
                                     _mm256_set1_epi8((char)0x80));
        __m256i t = _mm256_sad_epu8(v, _mm256_setzero_si256()); /* 4 sums of 8 */
        __m128i lo = _mm256_castsi256_si128(t), hi = _mm256_extracti128_si256(t, 1);
        s[2 * j] = (int32_t)(_mm_cvtsi128_si32(lo) + _mm_extract_epi32(lo, 2)) - 16 * 128;
        s[2 * j + 1] = (int32_t)(_mm_cvtsi128_si32(hi) + _mm_extract_epi32(hi, 2)) - 16 * 128;
    }
}
#else
EVLM__INLINE void kr_sums16(const evlm_q8a *a, int32_t s[16]) {
    for (int j = 0; j < 8; j++) {
        s[2 * j] = vaddlvq_s8(vld1q_s8(a[j].qs));
        s[2 * j + 1] = vaddlvq_s8(vld1q_s8(a[j].qs + 16));
    }
}
#endif

/* ---- Q4_K_R16 ------------------------------------------------------------------------------- */

/* the 8 scales (32-bit lanes) and minimums (float) of the row lanes from o of a super-block
 * column's 12 scale bytes: evlm_kq_scale_min lane by lane, worked out on the bytes (kr_b) and
 * widened once */
EVLM__INLINE void kr_scales_mins(const char *c, int o, kr_i sc[8], kr_f mn[8]) {
    kr_b S[12];
    EVLM__UNROLL
    for (int j = 0; j < 12; j++) S[j] = kr_bload((const uint8_t *)c + EVLM_Q4K_R16_SC + 16 * j + o);
    EVLM__UNROLL
    for (int j = 0; j < 4; j++) {
        sc[j] = kr_bwiden(kr_band(S[j], 63));
        mn[j] = kr_cvt(kr_bwiden(kr_band(S[j + 4], 63)));
        /* 4..7: the low (high) nibble of byte j + 8, the top 2 bits of byte j (j + 4) above it */
        sc[j + 4] = kr_bwiden(kr_bor(kr_band(S[j + 8], 0x0f), kr_band(kr_bsrl16(S[j], 2), 0x30)));
        mn[j + 4] = kr_cvt(kr_bwiden(
            kr_bor(kr_band(kr_bsrl16(S[j + 8], 4), 0x0f), kr_band(kr_bsrl16(S[j + 4], 2), 0x30))));
    }
}

/* the fifth bits of Q5_K: bit b of each byte of H moved to bit 4 (b a constant after unrolling) */
EVLM__INLINE kr_i kr_bit4(kr_i H, int b, kr_i m10) {
    return kr_and(kr_shl16v(H, 4 - b), m10);
}

/* acc + the dot of one super-block column c (row lanes of half h) with its 8 activation blocks:
 * Q4_K_R16, or Q5_K_R16 (q5: the fifth bits from qh; the two share every offset but qs') */
EVLM__INLINE kr_f kr_q45k_block(const char *c, const evlm_q8a *a, int h, kr_f acc, bool q5) {
    const int o = KR_ROWS * h; /* the first row lane of this half */
    const kr_i m4 = kr_set8(0x0f), m10 = kr_set8(0x10);
    kr_i sc[8];
    kr_f mn[8];
    kr_scales_mins(c, o, sc, mn);
    kr_f sum = kr_fzero(), mins = kr_fzero();
    const char *qs = c + (q5 ? EVLM_Q5K_R16_QS : EVLM_Q4K_R16_QS) + 4 * o;
    const char *qh = c + EVLM_Q5K_R16_QH + 4 * o;
    EVLM__UNROLL
    for (int p = 0; p < 4; p++) { /* sub-blocks 2p (low nibbles) and 2p + 1 (high ones) */
        const evlm_q8a *a0 = a + 2 * p, *a1 = a0 + 1;
        kr_i i0 = kr_zero(), i1 = kr_zero(), j0 = kr_zero(), j1 = kr_zero();
        EVLM__UNROLL
        for (int i = 0; i < 8; i += 2) { /* two chains per sub-block */
            kr_i q = kr_load(qs + 64 * (8 * p + i)), r = kr_load(qs + 64 * (8 * p + i + 1));
            kr_i ql = kr_and(q, m4), qh4 = kr_and(kr_srl16(q, 4), m4);
            kr_i rl = kr_and(r, m4), rh4 = kr_and(kr_srl16(r, 4), m4);
            if (q5) {
                const kr_i H = kr_load(qh + 64 * i), G = kr_load(qh + 64 * (i + 1));
                ql = kr_or(ql, kr_bit4(H, 2 * p, m10));
                qh4 = kr_or(qh4, kr_bit4(H, 2 * p + 1, m10));
                rl = kr_or(rl, kr_bit4(G, 2 * p, m10));
                rh4 = kr_or(rh4, kr_bit4(G, 2 * p + 1, m10));
            }
            i0 = kr_dot(i0, ql, kr_b4(a0->qs + 4 * i));
            i1 = kr_dot(i1, qh4, kr_b4(a1->qs + 4 * i));
            j0 = kr_dot(j0, rl, kr_b4(a0->qs + 4 * i + 4));
            j1 = kr_dot(j1, rh4, kr_b4(a1->qs + 4 * i + 4));
        }
        sum = kr_fma(kr_cvt(kr_mul32(kr_add(i0, j0), sc[2 * p])), kr_fset(a0->d), sum);
        sum = kr_fma(kr_cvt(kr_mul32(kr_add(i1, j1), sc[2 * p + 1])), kr_fset(a1->d), sum);
        mins = kr_fma(mn[2 * p], kr_fset(a0->s), mins);
        mins = kr_fma(mn[2 * p + 1], kr_fset(a1->s), mins);
    }
    acc = kr_fma(sum, kr_h2f(c + EVLM_Q4K_R16_D + 2 * o), acc);
    return kr_fnma(mins, kr_h2f(c + EVLM_Q4K_R16_DMIN + 2 * o), acc);
}

/* ---- Q6_K_R16 ------------------------------------------------------------------------------- */

/* acc + the dot of one super-block column c (row lanes of half h) with its 8 activation blocks;
 * s16: their sums of 16 (kr_sums16) */
EVLM__INLINE kr_f kr_q6k_block(const char *c, const evlm_q8a *a, const int32_t s16[16], int h,
                               kr_f acc) {
    const int o = KR_ROWS * h;
    const kr_i m4 = kr_set8(0x0f), m30 = kr_set8(0x30);
    kr_f sum = kr_fzero();
    for (int hh = 0; hh < 2; hh++) { /* 128-element halves: activation blocks 4hh .. 4hh + 3 */
        const char *q = c + EVLM_Q6K_R16_Q + 1536 * hh + 4 * o;
        const evlm_q8a *ab = a + 4 * hh;
        kr_i acc_i[4][2]; /* [activation block][16-element half] */
        EVLM__UNROLL
        for (int b = 0; b < 4; b++) acc_i[b][0] = acc_i[b][1] = kr_zero();
        EVLM__UNROLL
        for (int i = 0; i < 8; i++) {
            const kr_i A = kr_load(q + 192 * i), B = kr_load(q + 192 * i + 64),
                       H = kr_load(q + 192 * i + 128);
            const int s = i >> 2; /* elements 4i .. 4i+3: the first or second 16 of a block */
            const kr_i q0 = kr_or(kr_and(A, m4), kr_and(kr_sll16(H, 4), m30));
            const kr_i q1 = kr_or(kr_and(B, m4), kr_and(kr_sll16(H, 2), m30));
            const kr_i q2 = kr_or(kr_and(kr_srl16(A, 4), m4), kr_and(H, m30));
            const kr_i q3 = kr_or(kr_and(kr_srl16(B, 4), m4), kr_and(kr_srl16(H, 2), m30));
            acc_i[0][s] = kr_dot(acc_i[0][s], q0, kr_b4(ab[0].qs + 4 * i));
            acc_i[1][s] = kr_dot(acc_i[1][s], q1, kr_b4(ab[1].qs + 4 * i));
            acc_i[2][s] = kr_dot(acc_i[2][s], q2, kr_b4(ab[2].qs + 4 * i));
            acc_i[3][s] = kr_dot(acc_i[3][s], q3, kr_b4(ab[3].qs + 4 * i));
        }
        EVLM__UNROLL
        for (int b = 0; b < 4; b++) { /* block j: the 16-element sub-blocks 2j and 2j + 1 */
            const int j = 4 * hh + b;
            const kr_i sc0 = kr_s8((const int8_t *)c + EVLM_Q6K_R16_SC + 16 * (2 * j) + o);
            const kr_i sc1 = kr_s8((const int8_t *)c + EVLM_Q6K_R16_SC + 16 * (2 * j + 1) + o);
            /* sum (q - 32) a over each 16 = sum q a - 32 * (the activations' sum of 16) */
            const kr_i t0 = kr_sub(acc_i[b][0], kr_set32(32 * s16[2 * j]));
            const kr_i t1 = kr_sub(acc_i[b][1], kr_set32(32 * s16[2 * j + 1]));
            const kr_i t = kr_add(kr_mul32(t0, sc0), kr_mul32(t1, sc1));
            sum = kr_fma(kr_cvt(t), kr_fset(ab[b].d), sum);
        }
    }
    return kr_fma(sum, kr_h2f(c + EVLM_Q6K_R16_D + 2 * o), acc);
}

/* ---- tiles and the entry -------------------------------------------------------------------- */

/* one super-block column c against its 8 activation blocks a, for both halves of a group */
EVLM__INLINE void kr_block_Q4_K(const char *c, const evlm_q8a *a, const int32_t *pre,
                                kr_f acc[KR_HALVES]) {
    (void)pre;
    EVLM__UNROLL
    for (int h = 0; h < KR_HALVES; h++) acc[h] = kr_q45k_block(c, a, h, acc[h], false);
}
EVLM__INLINE void kr_block_Q5_K(const char *c, const evlm_q8a *a, const int32_t *pre,
                                kr_f acc[KR_HALVES]) {
    (void)pre;
    EVLM__UNROLL
    for (int h = 0; h < KR_HALVES; h++) acc[h] = kr_q45k_block(c, a, h, acc[h], true);
}
/* pre: the 16 activation sums of 16 of this super-block (kr_sums16), or NULL: work them out */
EVLM__INLINE void kr_block_Q6_K(const char *c, const evlm_q8a *a, const int32_t *pre,
                                kr_f acc[KR_HALVES]) {
    int32_t s16[16];
    if (!pre) kr_sums16(a, s16);
    EVLM__UNROLL
    for (int h = 0; h < KR_HALVES; h++) acc[h] = kr_q6k_block(c, a, pre ? pre : s16, h, acc[h]);
}

/* evlm__q8r16_tile of one activation row: nb activation blocks (nb / 8 super-blocks) from the
 * group at gw; all blocks in one pass (first is always true). corr: NULL (the walk's calls), or
 * for Q6_K this row's activation sums of 16 (nb * 2 of them: kr_gemm_q6k). */
#define KR_TILE(T)                                                                                 \
    static void kr_tile_##T(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,                   \
                            const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,     \
                            bool first) {                                                          \
        (void)ldy, (void)ldx, (void)ldc, (void)first;                                              \
        const size_t col = EVLM_R16 * evlm_type_traits_of(EVLM_TYPE_##T)->size;                    \
        kr_f acc[KR_HALVES];                                                                       \
        for (int h = 0; h < KR_HALVES; h++) acc[h] = kr_fzero();                                   \
        for (int b = 0; b < nb / 8; b++) {                                                         \
            const char *c = gw + (size_t)b * col;                                                  \
            kr_block_##T(c, x + 8 * b, corr ? corr + 16 * b : NULL, acc);                          \
        }                                                                                          \
        for (int h = 0; h < KR_HALVES; h++) {                                                      \
            int n = rows - KR_ROWS * h;                                                            \
            if (n > 0) kr_store(y + KR_ROWS * h, acc[h], n < KR_ROWS ? n : KR_ROWS);               \
        }                                                                                          \
    }                                                                                              \
    static const evlm__q8r16_tile kr_tiles_##T[1][2] = {{kr_tile_##T, NULL}};
KR_TILE(Q4_K)
KR_TILE(Q5_K)
KR_TILE(Q6_K)

/* one activation row per tile, activation rows in chunks that stay in L2, no split of k */
static const evlm__q8r16_shape kr_shape = {0, 1, false};

/* Q6_K: the walk of q8_walk.c, but with each chunk's activation sums of 16 worked out once for
 * all groups (KR_SUMS int32 on the stack: chunks of KR_SUMS / (k / 16) rows); an activation row
 * too long for that takes the walk, whose tiles work them out per group. The same float
 * operations per output either way. */
#define KR_SUMS 8192
static bool kr_gemm_q6k(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *w,
                        size_t ldw, int m, int n0, int n1, int k) {
    const int ns = k / 16, kb = k / EVLM_QK;
    if (ns > KR_SUMS || ns < 1) return false;
    int32_t sums[KR_SUMS];
    const int mc = KR_SUMS / ns;
    for (int i0 = 0; i0 < m; i0 += mc) {
        const int i1 = m - i0 < mc ? m : i0 + mc;
        for (int i = i0; i < i1; i++)
            for (int b = 0; b < k / EVLM_QK_K; b++)
                kr_sums16(x + (size_t)i * ldx + 8 * b, sums + (size_t)(i - i0) * ns + 16 * b);
        for (int g = n0 / EVLM_R16; g * EVLM_R16 < n1; g++) {
            const char *gw = w + (size_t)g * EVLM_R16 * ldw;
            for (int i = i0; i < i1; i++)
                kr_tiles_Q6_K[0][0](y + (size_t)i * ldy + (size_t)g * EVLM_R16, ldy,
                                    x + (size_t)i * ldx, ldx, sums + (size_t)(i - i0) * ns,
                                    (size_t)ns, gw, kb, n1 - g * EVLM_R16, true);
        }
    }
    return true;
}

/* Y (m, n) = Xq (m, k) @ W^T for W rows [n0, n1) of a Q4_K_R16 / Q5_K_R16 / Q6_K_R16 matrix (n0 a
 * multiple of 16; w the matrix base, ldw its base's row bytes): q8_walk.c's R16 walk with these
 * tiles (Q6_K: kr_gemm_q6k) */
void KR_NAME(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w, size_t ldw,
             evlm_type wt, int m, int n0, int n1, int k) {
    const evlm_type base = evlm_type_r16_base(wt);
    const evlm__q8r16_tile(*tiles)[2] = base == EVLM_TYPE_Q4_K   ? kr_tiles_Q4_K
                                        : base == EVLM_TYPE_Q5_K ? kr_tiles_Q5_K
                                        : base == EVLM_TYPE_Q6_K ? kr_tiles_Q6_K
                                                                 : NULL;
    if (!tiles || k % EVLM_QK_K) {
        evlm__ref_gemm_q(y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
        return;
    }
    if (base == EVLM_TYPE_Q6_K && kr_gemm_q6k(y, ldy, x, ldx, w, ldw, m, n0, n1, k)) return;
    evlm__q8r16_walk(&kr_shape, tiles, NULL, 0, y, ldy, x, ldx, w, ldw, base, m, n0, n1, k);
}
