/*
 * x86_avx512_s24q.c - the avx512vnni table's gemm_q on Q8_0_S24 weights (2:4-sparse, quant/
 * sparse24.h): each 64-byte chunk of kept int8 (16 rows x 4 kept of 8 inputs) expands in
 * registers to the two dense R16 chunks it stands for (vpermd of the pair codes through a table
 * of byte indices, vpshufb of the kept bytes, zeros where nothing was kept), then runs exactly
 * x86_avx512_quant.c's Q8_0_R16 arithmetic: bytes xor 0x80 times x with vpdpbusd, the walk's
 * -128 sum(x) correction, p = float(isum) * dx, acc = fma(dw, p, acc). So every output is bitwise
 * the dense kernel's on the zeroed matrix, for any m, n0, n1 (gemm_q's contract); only the bytes
 * read from memory change (352 per 16 rows and 32 inputs instead of 544). Measured against
 * gathering the activation bytes each kept weight meets instead (vpshufb of x + 128 from the
 * codes, one vpdpbusd per chunk, minus 128 sum(kept)), alternately in one run of bench_sparse24
 * (1 thread, m = 1): this expansion 1.63x / 1.68x the dense kernel's speed, the gather 1.44x /
 * 1.40x (it stays below the memory bandwidth); prefill (m = 64) about the same for both (~0.85x).
 * The AVX2 and float kernels gather (x86_avx2_s24.c, x86_avx512_s24f.c), which won there.
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

/* byte indices (into a row's 4 kept bytes) of the 4 dense inputs of a group, per pair code, for
 * the first (h = 0: kept bytes 0, 1) and second (h = 1: kept bytes 2, 3) group of a chunk; 0x80:
 * not kept (vpshufb writes 0). Codes 6 .. 15 never occur. */
static const int32_t k_idx[2][16] = {
    {(int32_t)0x80800100, (int32_t)0x80018000, (int32_t)0x01808000, (int32_t)0x80010080,
     (int32_t)0x01800080, (int32_t)0x01008080, (int32_t)0x80808080, (int32_t)0x80808080,
     (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080,
     (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080},
    {(int32_t)0x80800302, (int32_t)0x80038002, (int32_t)0x03808002, (int32_t)0x80030280,
     (int32_t)0x03800280, (int32_t)0x03028080, (int32_t)0x80808080, (int32_t)0x80808080,
     (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080,
     (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080, (int32_t)0x80808080}};

EVLM__INLINE __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* As x86_avx512_quant.c's r16_tile for Q8_0, reading a Q8_0_S24 block column (352 bytes): the
 * dense chunk 2c + h of row r is vpshufb(kept chunk c, idx[h][code] + 4 (r % 4)). */
EVLM__INLINE void s24_tile(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const int32_t *corr,
                           size_t ldc, const char *gw, int nb, __mmask16 mask, bool first, int MR) {
    const size_t col = EVLM_R16 * evlm_type_size(EVLM_TYPE_Q8_0_S24);
    const __m512i flip = _mm512_set1_epi8((char)0x80), lo4 = _mm512_set1_epi32(15);
    const __m512i t0 = _mm512_loadu_si512(k_idx[0]), t1 = _mm512_loadu_si512(k_idx[1]);
    const __m512i rowoff = _mm512_set_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0, 0x0c0c0c0c,
                                            0x08080808, 0x04040404, 0, 0x0c0c0c0c, 0x08080808,
                                            0x04040404, 0, 0x0c0c0c0c, 0x08080808, 0x04040404, 0);
    __m512 acc[S24_MR];
    for (int i = 0; i < MR; i++)
        acc[i] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, y + (size_t)i * ldy);
    for (int b = 0; b < nb; b++, gw += col) {
        __m512i is[S24_MR][2];
        for (int i = 0; i < MR; i++) {
            is[i][0] = _mm512_set1_epi32(corr[(size_t)i * ldc + (size_t)b]);
            is[i][1] = _mm512_setzero_si512();
        }
        for (int c = 0; c < 4; c++) {
            __m512i kept = _mm512_loadu_si512(gw + 32 + 64 * c);
            __m512i codes = _mm512_cvtepu8_epi32(
                _mm_loadu_si128((const __m128i *)(const void *)(gw + 288 + 16 * c)));
            __m512i i0 = _mm512_add_epi32(
                _mm512_permutexvar_epi32(_mm512_and_si512(codes, lo4), t0), rowoff);
            __m512i i1 =
                _mm512_add_epi32(_mm512_permutexvar_epi32(_mm512_srli_epi32(codes, 4), t1), rowoff);
            __m512i w0 = _mm512_xor_si512(_mm512_shuffle_epi8(kept, i0), flip);
            __m512i w1 = _mm512_xor_si512(_mm512_shuffle_epi8(kept, i1), flip);
            for (int i = 0; i < MR; i++) { /* dense chunks 2c (even chain) and 2c + 1 (odd) */
                const int8_t *xq = x[(size_t)i * ldx + b].qs;
                is[i][0] = _mm512_dpbusd_epi32(is[i][0], w0, bcast4(xq + 8 * c));
                is[i][1] = _mm512_dpbusd_epi32(is[i][1], w1, bcast4(xq + 8 * c + 4));
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)gw));
        for (int i = 0; i < MR; i++) {
            const evlm_q8a *xb = x + (size_t)i * ldx + b;
            __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(is[i][0], is[i][1])),
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
        s24_tile(y, ldy, x, ldx, corr, ldc, gw, nb, mask, first, MR);                              \
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

/* the dense Q8_0_R16 walk's shape and zero point (x86_avx512_quant.c) */
static const evlm__q8r16_shape k_shape = {S24_MC, S24_MR, true};

void evlm__avx512vnni_gemm_q_s24(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                                 size_t ldw, evlm_type wt, int m, int n0, int n1, int k) {
    evlm__q8r16_walk(&k_shape, s24_tiles, evlm__avx2_q8_corr, 128, y, ldy, x, ldx, w, ldw, wt, m,
                     n0, n1, k);
}

#else
typedef int evlm__x86_avx512_s24q_empty; /* ISO C forbids an empty translation unit */
#endif
