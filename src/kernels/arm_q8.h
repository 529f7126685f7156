/*
 * arm_q8.h - the int8 pieces the AArch64 gemm_q files share (arm_neon.c, arm_dotprod.c,
 * arm_i8mm.c), included once by each after <arm_neon.h> and compiled with its own flags: fp16
 * scale loads, and the row-major register tile (Q8_0 / Q4_0 / Q4_1 weights, q8_walk.c's
 * evlm__q8_tile) written once in terms of the includer's int8 dot product QT_DOT.
 *
 * qtile: MR activation rows x NR weight rows over kb blocks; per element the block sums are exact
 * int32 lanes (QT_DOT(acc, a, b): acc + the 16 products a[j] b[j], four to a lane; which products
 * share a lane depends on QT_DOT, hence the float rounding), scaled by dw * dx and summed in 4
 * float lanes in block order (+ m * s / 4 per lane for Q4_1), then the lane sum. Q4_0's nibbles
 * are made signed (q - 8) before the dot; Q4_1's stay 0..15. Not here: the walks (q8_walk.c),
 * the *_R16 tiles (one per file: their instructions differ).
 */

EVLM__INLINE float h2f(const char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return evlm_f16_to_f32(h);
}

/* 16 fp16 values at p as 4 vectors of rows 4q .. 4q+3 (exact conversions) */
EVLM__INLINE void load_h16(const char *p, float32x4_t v[4]) {
    float16x8_t a = vreinterpretq_f16_u8(vld1q_u8((const uint8_t *)p));
    float16x8_t b = vreinterpretq_f16_u8(vld1q_u8((const uint8_t *)p + 16));
    v[0] = vcvt_f32_f16(vget_low_f16(a)), v[1] = vcvt_high_f32_f16(a);
    v[2] = vcvt_f32_f16(vget_low_f16(b)), v[3] = vcvt_high_f32_f16(b);
}

#ifdef QT_DOT
EVLM__INLINE void qtile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *w,
                        size_t ldw, int kb, evlm_type wt, int MR, int NR) {
    const size_t bs = evlm_type_traits_of(wt)->size, hd = (size_t)evlm_type_traits_of(wt)->head;
    float32x4_t acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) acc[i][r] = vdupq_n_f32(0.0f);
    for (int b = 0; b < kb; b++) {
        int8x16_t w0[4], w1[4]; /* elements 0..15 and 16..31 of each weight block */
        float dw[4], dm[4];
        for (int r = 0; r < NR; r++) {
            const char *blk = w + (size_t)r * ldw + (size_t)b * bs;
            if (wt == EVLM_TYPE_Q8_0) {
                w0[r] = vld1q_s8((const int8_t *)(blk + hd));
                w1[r] = vld1q_s8((const int8_t *)(blk + hd + 16));
            } else {
                uint8x16_t p = vld1q_u8((const uint8_t *)blk + hd);
                w0[r] = vreinterpretq_s8_u8(vandq_u8(p, vdupq_n_u8(0x0f)));
                w1[r] = vreinterpretq_s8_u8(vshrq_n_u8(p, 4));
                if (wt == EVLM_TYPE_Q4_0) {
                    w0[r] = vsubq_s8(w0[r], vdupq_n_s8(8));
                    w1[r] = vsubq_s8(w1[r], vdupq_n_s8(8));
                }
            }
            dw[r] = h2f(blk);
            dm[r] = wt == EVLM_TYPE_Q4_1 ? h2f(blk + 2) : 0.0f;
        }
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            int8x16_t x0 = vld1q_s8(xb->qs), x1 = vld1q_s8(xb->qs + 16);
            for (int r = 0; r < NR; r++) {
                int32x4_t p = QT_DOT(QT_DOT(vdupq_n_s32(0), w0[r], x0), w1[r], x1);
                acc[i][r] = vfmaq_n_f32(acc[i][r], vcvtq_f32_s32(p), dw[r] * xb->d);
                if (wt == EVLM_TYPE_Q4_1)
                    acc[i][r] = vaddq_f32(acc[i][r], vdupq_n_f32(dm[r] * (xb->s * 0.25f)));
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) y[(size_t)i * ldy + r] = vaddvq_f32(acc[i][r]);
}

#define QTILE(T, MR, NR)                                                                           \
    static void qtile_##T##_##MR##x##NR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,       \
                                        const char *w, size_t ldw, int kb) {                       \
        qtile(y, ldy, x, ldx, w, ldw, kb, EVLM_TYPE_##T, MR, NR);                                  \
    }
/* q8_walk.c's table: [0] one weight row; [1] two (several activation rows); [2] 1 x 4 (one) */
/* clang-format off */
#define QTILES(T)                                                                                  \
    QTILE(T, 1, 1) QTILE(T, 2, 1) QTILE(T, 3, 1) QTILE(T, 4, 1)                                    \
    QTILE(T, 1, 2) QTILE(T, 2, 2) QTILE(T, 3, 2) QTILE(T, 4, 2) QTILE(T, 1, 4)                     \
    static const evlm__q8_tile qtiles_##T[3][4] = {                                                \
        {qtile_##T##_1x1, qtile_##T##_2x1, qtile_##T##_3x1, qtile_##T##_4x1},                      \
        {qtile_##T##_1x2, qtile_##T##_2x2, qtile_##T##_3x2, qtile_##T##_4x2},                      \
        {qtile_##T##_1x4, NULL, NULL, NULL}};
/* clang-format on */
QTILES(Q8_0)
QTILES(Q4_0)
QTILES(Q4_1)

/* tiles of 1..4 x 2 weight rows, 1 x 4 for a single activation row (decode) */
static const evlm__q8_shape k_qshape = {4, 2};
#endif
