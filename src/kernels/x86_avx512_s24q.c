/*
 * x86_avx512_s24q.c - the avx512vnni table's gemm_q on Q8_0_S24 weights (2:4-sparse, quant/
 * sparse24.h): for each 64-byte chunk of kept int8 (16 rows x 4 kept of 8 inputs) the activation
 * bytes the kept weights meet are gathered in registers (vpshufb, indices from the pair codes
 * through vpermd tables), one vpdpbusd per chunk and activation row instead of the dense two.
 * The block sums are exact integers, the dense ones (the dropped weights are 0), and the float
 * step is x86_avx512_quant.c's Q8_0_R16 one (p = float(isum) * dx, acc = fma(dw, p, acc)), so
 * every output is bitwise the dense kernel's on the zeroed matrix, for any m, n0, n1 (gemm_q's
 * contract); the bytes read per 16 rows and 32 inputs are 352 instead of 544. Measured against
 * expanding each chunk back to the two dense R16 chunks (vpshufb of the kept bytes, then the
 * dense tile): decode 1.46x the dense kernel's speed for that one (bench_sparse24, 1 thread,
 * loaded machine), this one faster (docs/PERFORMANCE.md).
 *
 * Compiled with the avx512vnni flags (CMakeLists.txt); empty elsewhere. Not here: Q4 2:4 forms
 * (none), the float 2:4 forms (x86_avx512_s24f.c), deciding what is 2:4 (io/weights.c).
 */
#include "kernels/ref_impl.h"
#include "quant/repack.h"
#include "quant/sparse24.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) &&                        \
    defined(__AVX512VNNI__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define S24_MC 64 /* activation rows per chunk, as the dense R16 walk */
#define S24_MR 8  /* activation rows per register tile */

/* per pair code: the bytes of x[16 h .. 16 h + 15] (h: which half of the block a chunk reads)
 * that a row's 4 kept values meet: the first group of chunk c (kept bytes 0, 1: table A, inputs
 * 8 (c % 2) + position) and its second group (kept bytes 2, 3: table B, 8 (c % 2) + 4 +
 * position), for even and odd c; vpermd reads the low 4 bits of an index, so the low nibble of a
 * code byte needs no mask. Codes 6 .. 15 never occur. */
static const int32_t k_ta[2][16] = {
    {0x00000100, 0x00000200, 0x00000300, 0x00000201, 0x00000301, 0x00000302},
    {0x00000908, 0x00000a08, 0x00000b08, 0x00000a09, 0x00000b09, 0x00000b0a}};
static const int32_t k_tb[2][16] = {
    {0x05040000, 0x06040000, 0x07040000, 0x06050000, 0x07050000, 0x07060000},
    {0x0d0c0000, 0x0e0c0000, 0x0f0c0000, 0x0e0d0000, 0x0f0d0000, 0x0f0e0000}};

/* MR activation rows x the 16 weight rows of one group (lanes of `mask`) over nb Q8_0_S24 block
 * columns (352 bytes) from gw: acc starts at 0 (first) or at y (later block chunks). Per chunk
 * of kept int8 (16 rows x 4), the 4 activation bytes each row's kept values meet are gathered
 * (vpshufb of x + 128, per 128-bit lane, indices from the codes through k_ta / k_tb); vpdpbusd
 * of them with the signed kept bytes, minus 128 sum(kept) (a vpdpbusd of 0x80 bytes): the exact
 * block sum of the dense row (the dropped weights are 0). The float step is x86_avx512_quant.c's
 * R16 one (p = float(isum) * dx, acc = fma(dw, p, acc)), so outputs are bitwise the dense R16
 * kernel's. */
EVLM__INLINE void s24_tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const char *gw,
                           int nb, __mmask16 mask, bool first, int MR) {
    const size_t col = EVLM_R16 * evlm_type_size(EVLM_TYPE_Q8_0_S24);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i ta0 = _mm512_loadu_si512(k_ta[0]), ta1 = _mm512_loadu_si512(k_ta[1]);
    const __m512i tb0 = _mm512_loadu_si512(k_tb[0]), tb1 = _mm512_loadu_si512(k_tb[1]);
    __m512 acc[S24_MR];
    for (int i = 0; i < MR; i++)
        acc[i] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, y + (size_t)i * ldy);
    for (int b = 0; b < nb; b++, gw += col) {
        __m512i is[S24_MR], xh[S24_MR][2], cw = _mm512_setzero_si512();
        for (int i = 0; i < MR; i++) {
            const int8_t *xq = x[(size_t)i * ldx + b].qs;
            is[i] = _mm512_setzero_si512();
            for (int h = 0; h < 2; h++)
                xh[i][h] = _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128(
                                                (const __m128i *)(const void *)(xq + 16 * h))),
                                            flip);
        }
        for (int c = 0; c < 4; c++) {
            __m512i kept = _mm512_loadu_si512(gw + 32 + 64 * c);
            __m512i codes = _mm512_cvtepu8_epi32(
                _mm_loadu_si128((const __m128i *)(const void *)(gw + 288 + 16 * c)));
            __m512i idx = _mm512_or_si512(
                _mm512_permutexvar_epi32(codes, c & 1 ? ta1 : ta0),
                _mm512_permutexvar_epi32(_mm512_srli_epi32(codes, 4), c & 1 ? tb1 : tb0));
            cw = _mm512_dpbusd_epi32(cw, flip, kept);
            for (int i = 0; i < MR; i++)
                is[i] = _mm512_dpbusd_epi32(is[i], _mm512_shuffle_epi8(xh[i][c / 2], idx), kept);
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)gw));
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(is[i], cw)),
                                     _mm512_set1_ps(xb->d));
            acc[i] = _mm512_fmadd_ps(dw, p, acc[i]);
        }
    }
    for (int i = 0; i < MR; i++) _mm512_mask_storeu_ps(y + (size_t)i * ldy, mask, acc[i]);
}

#define S24_TILE(MR)                                                                               \
    static void s24_tile_##MR(float *y, size_t ldy, const evlm_q8a *x, size_t ldx,                 \
                              const int32_t *corr, size_t ldc, const char *gw, int nb, int rows,   \
                              bool first) {                                                        \
        __mmask16 mask = rows >= EVLM_R16 ? (__mmask16)0xffff : (__mmask16)((1u << rows) - 1);     \
        (void)corr, (void)ldc;                                                                     \
        s24_tile(y, ldy, x, ldx, gw, nb, mask, first, MR);                                         \
    }
S24_TILE(1)
S24_TILE(2)
S24_TILE(3)
S24_TILE(4)
S24_TILE(5)
S24_TILE(6)
S24_TILE(7)
S24_TILE(8)
static const evlm__q8r16_tile s24_tiles[S24_MR][2] = {{s24_tile_1}, {s24_tile_2}, {s24_tile_3},
                                                      {s24_tile_4}, {s24_tile_5}, {s24_tile_6},
                                                      {s24_tile_7}, {s24_tile_8}};

/* the dense Q8_0_R16 walk's shape (x86_avx512_quant.c); no zero point: the tiles correct their
 * own offset */
static const evlm__q8r16_shape k_shape = {S24_MC, S24_MR, true};

void evlm__avx512vnni_gemm_q_s24(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                                 size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    evlm__q8r16_walk(&k_shape, s24_tiles, NULL, 0, y, ldy, x, ldx, w, ldw, wt, m, n0, n1, k);
}

#else
typedef int evlm__x86_avx512_s24q_empty; /* ISO C forbids an empty translation unit */
#endif
