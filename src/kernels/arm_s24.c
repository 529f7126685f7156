/*
 * arm_s24.c - gemm_q on Q8_0_S24 weights (2:4-sparse, quant/sparse24.h) for the AArch64 "neon"
 * table when the CPU has dotprod (arm_dotprod.c hands the type here; arm_i8mm.c hands it to
 * arm_dotprod.c). Each quarter of a 64-byte chunk of kept int8 (rows 4q .. 4q+3, 4 kept each)
 * expands to the two dense R16 quarters it stands for: the rows' pair codes become byte indices
 * through a 32-byte table (TBL), and a second TBL picks the kept bytes (0 where nothing was
 * kept); then SDOT by lane and the float step of arm_dotprod.c's R16 tile, which is ref's
 * (acc += d * dx * isum, no FMA). So every output is bitwise ref's and the dense kernels' on the
 * zeroed matrix, for any m, n0, n1.
 *
 * Compiled with -march=armv8.2-a+dotprod (CMakeLists.txt); empty elsewhere. Not here: CPUs
 * without dotprod (ref's gemm_q: correct, slow), the float 2:4 forms on NEON (ref's gemm, the same
 * fma chain: correct, slow; no NEON kernel yet).
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"
#include "quant/sparse24.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)

#include <arm_neon.h>
#include <string.h>

/* byte 4 code + j: which of a row's 4 kept bytes is dense input j of the first (h = 0: kept 0,
 * 1) or second (h = 1: kept 2, 3) group of a chunk, 0x80 (TBL gives 0) where none */
#define N_ 0x80
/* clang-format off */
static const uint8_t k_tab[2][32] = {
    {0, 1, N_, N_,  0, N_, 1, N_,  0, N_, N_, 1,  N_, 0, 1, N_,  N_, 0, N_, 1,  N_, N_, 0, 1,
     N_, N_, N_, N_,  N_, N_, N_, N_},
    {2, 3, N_, N_,  2, N_, 3, N_,  2, N_, N_, 3,  N_, 2, 3, N_,  N_, 2, N_, 3,  N_, N_, 2, 3,
     N_, N_, N_, N_,  N_, N_, N_, N_}};
/* clang-format on */
#undef N_

/* the dense quarter (rows 4q .. 4q+3 x inputs of group h) of kept bytes kq and codes cv */
EVLM__INLINE int8x16_t expand(int8x16_t kq, uint32x4_t cv, uint8x16x2_t tab, int h) {
    uint32x4_t nib = h ? vshrq_n_u32(cv, 4) : vandq_u32(cv, vdupq_n_u32(15));
    uint32x4_t idx = vaddq_u32(vmulq_n_u32(vshlq_n_u32(nib, 2), 0x01010101u),
                               vdupq_n_u32(0x03020100u)); /* bytes 4 code + j */
    uint8x16_t pat = vqtbl2q_u8(tab, vreinterpretq_u8_u32(idx));
    static const uint8_t rowoff[16] = {0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12};
    return vqtbl1q_s8(kq, vaddq_u8(pat, vld1q_u8(rowoff)));
}

/* s[i][q] += dense chunks 2c (lane L0) and 2c + 1 (lane L0 + 1) of xv[i] */
#define S24_CHUNK(c, xv, L0)                                                                       \
    do {                                                                                           \
        for (int q = 0; q < 4; q++) {                                                              \
            int8x16_t kq = vld1q_s8((const int8_t *)(cd + 32 + 64 * (c) + 16 * q));                \
            uint32_t cw;                                                                           \
            memcpy(&cw, cd + 288 + 16 * (c) + 4 * q, 4);                                           \
            uint32x4_t cv =                                                                        \
                vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(cw)))));            \
            int8x16_t d0 = expand(kq, cv, t0, 0), d1 = expand(kq, cv, t1, 1);                      \
            for (int i = 0; i < MR; i++) {                                                         \
                s[i][q] = vdotq_laneq_s32(s[i][q], d0, (xv)[i], L0);                               \
                s[i][q] = vdotq_laneq_s32(s[i][q], d1, (xv)[i], L0 + 1);                           \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* y[i][r] for MR activation rows and rows r < nv of the group at gw (kb block columns) */
EVLM__INLINE void s24_tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *gw,
                           int kb, int nv, int MR) {
    const size_t col = EVLM_R16 * evlm_type_size(EVLM_TYPE_Q8_0_S24);
    const uint8x16x2_t t0 = {{vld1q_u8(k_tab[0]), vld1q_u8(k_tab[0] + 16)}};
    const uint8x16x2_t t1 = {{vld1q_u8(k_tab[1]), vld1q_u8(k_tab[1] + 16)}};
    float32x4_t acc[2][4];
    for (int i = 0; i < MR; i++)
        for (int q = 0; q < 4; q++) acc[i][q] = vdupq_n_f32(0.0f);
    for (int b = 0; b < kb; b++) {
        const char *cd = gw + (size_t)b * col;
        int8x16_t x0[2], x1[2];
        int32x4_t s[2][4];
        for (int i = 0; i < MR; i++) {
            x0[i] = vld1q_s8(x[(size_t)i * ldx + b].qs);
            x1[i] = vld1q_s8(x[(size_t)i * ldx + b].qs + 16);
            for (int q = 0; q < 4; q++) s[i][q] = vdupq_n_s32(0);
        }
        S24_CHUNK(0, x0, 0);
        S24_CHUNK(1, x0, 2);
        S24_CHUNK(2, x1, 0);
        S24_CHUNK(3, x1, 2);
        float32x4_t dw[4];
        float16x8_t a = vreinterpretq_f16_u8(vld1q_u8((const uint8_t *)cd));
        float16x8_t bh = vreinterpretq_f16_u8(vld1q_u8((const uint8_t *)cd + 16));
        dw[0] = vcvt_f32_f16(vget_low_f16(a)), dw[1] = vcvt_high_f32_f16(a);
        dw[2] = vcvt_f32_f16(vget_low_f16(bh)), dw[3] = vcvt_high_f32_f16(bh);
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            for (int q = 0; q < 4; q++) {
                float32x4_t t = vmulq_f32(vmulq_n_f32(dw[q], xb->d), vcvtq_f32_s32(s[i][q]));
                acc[i][q] = vaddq_f32(acc[i][q], t);
            }
        }
    }
    for (int i = 0; i < MR; i++) {
        float tmp[EVLM_R16], *yi = y + (size_t)i * ldy, *dst = nv == EVLM_R16 ? yi : tmp;
        for (int q = 0; q < 4; q++) vst1q_f32(dst + 4 * q, acc[i][q]);
        if (dst == tmp) memcpy(yi, tmp, sizeof(float) * (size_t)nv); /* rows >= n1: not ours */
    }
}

#define S24TILE(MR)                                                                                \
    static void s24_##MR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const int32_t *corr, \
                         size_t ldc, const char *gw, int nb, int rows, bool first) {               \
        (void)corr, (void)ldc, (void)first;                                                        \
        s24_tile(y, ldy, x, ldx, gw, nb, rows < EVLM_R16 ? rows : EVLM_R16, MR);                   \
    }
S24TILE(1)
S24TILE(2)
static const evlm__q8r16_tile s24_tiles[2][2] = {{s24_1, NULL}, {s24_2, NULL}};
/* arm_dotprod.c's R16 shape: all blocks in one pass, tiles of 2 activation rows */
static const evlm__q8r16_shape k_shape = {0, 2, false};

void evlm__dotprod_gemm_q_s24(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                              size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    evlm__q8r16_walk(&k_shape, s24_tiles, NULL, 0, y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

#else
typedef int evlm__arm_s24_empty; /* ISO C forbids an empty translation unit */
#endif
