/*
 * test_quants.c - the scalar block formats of src/quant/quants.c: known-answer blocks (bytes
 * worked out by hand, checking ggml's packing: fp16 d first, Q4 element j in the low nibble of
 * byte j and j + 16 in the high one, Q4_0's d = max / -8 with the sign of the largest-magnitude
 * value) and quantize -> dequantize round trips with per-element error bounds. Also the
 * reference int8 dot against a double dot of the dequantized values. Not here: SIMD kernels
 * (test_kernels.c compares them with these).
 *
 * Round-trip bounds, with d32 the float scale before its fp16 rounding d16:
 *   Q8_0: |x - q d16| <= d32 / 2 + |q| |d32 - d16|
 *   Q4_0: as Q8_0 with q - 8, but the clamp q <= 15 costs up to a full |d32| for values whose
 *         scaled position x / d32 lies in (7.5, 8] (the opposite end from max), as in ggml
 *   Q4_1: |x - (q d16 + m16)| <= d32 / 2 + q |d32 - d16| + |min - m16|
 * plus a few float ulps of |x| for the products.
 */
#include "core/tensor.h"
#include "quant/quants.h"
#include "quant/repack.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

static unsigned seed = 777;
static float frand(void) { /* [-1, 1) */
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) / 8388608.0f - 1.0f;
}

static void test_known_q8_0(void) {
    /* amax 127 gives d = 1 exactly (fp16 0x3c00) and id = 1: qs = roundf(x), ties away from 0 */
    float x[32] = {127.0f, -127.0f, 2.5f, -2.5f, 0.49f, -0.5f, 1.5f, 100.4f};
    static const int8_t want[32] = {127, -127, 3, -3, 0, -1, 2, 100};
    evlm_block_q8_0 q;
    evlm_quantize_row_q8_0(x, &q, 32);
    unsigned char bytes[34];
    memcpy(bytes, &q, 34);
    CHECK(bytes[0] == 0x00 && bytes[1] == 0x3c);
    CHECK(memcmp(q.qs, want, 32) == 0);
    float y[32];
    evlm_dequantize_row(EVLM_TYPE_Q8_0, &q, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == (float)want[j]);
}

static void test_known_q4_0(void) {
    /* x[j] = j - 8 (j < 16), x[16 + j] = 7 - j: max |x| = 8 first at x[0] = -8, so d = -8 / -8 = 1,
     * q = trunc(x + 8.5): q_j = j and q_{16+j} = 15 - j, byte j = j | (15 - j) << 4 */
    float x[32];
    for (int j = 0; j < 16; j++) x[j] = (float)(j - 8), x[16 + j] = (float)(7 - j);
    evlm_block_q4_0 q;
    evlm_quantize_row_q4_0(x, &q, 32);
    unsigned char bytes[18];
    memcpy(bytes, &q, 18);
    CHECK(bytes[0] == 0x00 && bytes[1] == 0x3c);
    CHECK(bytes[2] == 0xf0 && bytes[3] == 0xe1 && bytes[9] == 0x87 && bytes[17] == 0x0f);
    for (int j = 0; j < 16; j++) CHECK(q.qs[j] == (uint8_t)(j | (15 - j) << 4));
    float y[32];
    evlm_dequantize_row(EVLM_TYPE_Q4_0, &q, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == x[j]);

    /* the largest magnitude positive: d = 8 / -8 = -1 (fp16 0xbc00); q_0 = trunc(-8 + 8.5) = 0,
     * the zeros q = trunc(8.5) = 8: byte 0 = 0x80, the rest 0x88 */
    float z[32] = {8.0f};
    evlm_quantize_row_q4_0(z, &q, 32);
    memcpy(bytes, &q, 18);
    CHECK(bytes[0] == 0x00 && bytes[1] == 0xbc && bytes[2] == 0x80);
    for (int j = 3; j < 18; j++) CHECK(bytes[j] == 0x88);
    evlm_dequantize_row(EVLM_TYPE_Q4_0, &q, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == z[j]);
}

static void test_known_q4_1(void) {
    /* x = 2 + (j, then 15 - j): min 2 (fp16 0x4000), d = 15 / 15 = 1, q as in the Q4_0 case */
    float x[32];
    for (int j = 0; j < 16; j++) x[j] = 2.0f + (float)j, x[16 + j] = 2.0f + (float)(15 - j);
    evlm_block_q4_1 q;
    evlm_quantize_row_q4_1(x, &q, 32);
    unsigned char bytes[20];
    memcpy(bytes, &q, 20);
    CHECK(bytes[0] == 0x00 && bytes[1] == 0x3c && bytes[2] == 0x00 && bytes[3] == 0x40);
    CHECK(bytes[4] == 0xf0 && bytes[5] == 0xe1 && bytes[19] == 0x0f);
    float y[32];
    evlm_dequantize_row(EVLM_TYPE_Q4_1, &q, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == x[j]);
}

/* A row of blocks with different ranges: random, offset (Q4_1's m), constant, zero, huge. */
static void make_row(float *x, int k) {
    for (int b = 0; b < k / 32; b++)
        for (int j = 0; j < 32; j++) {
            float r = frand(), *v = x + b * 32 + j;
            switch (b % 6) {
            case 0:
                *v = r;
                break;
            case 1:
                *v = 100.0f + 0.1f * r;
                break;
            case 2:
                *v = -3.0f;
                break;
            case 3:
                *v = 0.0f;
                break;
            case 4:
                *v = r * 6e4f;
                break; /* d stays inside fp16's range */
            default:
                *v = r * 1e-3f * (float)(1 + j);
                break;
            }
        }
}

static void test_round_trip(evlm_type t) {
    enum { K = 32 * 60 };
    float x[K], y[K];
    unsigned char q[K * 2];
    int bad = 0;
    double worst = 0;
    for (int rep = 0; rep < 20; rep++) {
        make_row(x, K);
        evlm_quantize_row(t, x, q, K);
        evlm_dequantize_row(t, q, y, K);
        for (int b = 0; b < K / 32; b++) {
            const float *xb = x + b * 32;
            float amax = 0.0f, mx = 0.0f, mn = INFINITY, mxv = -INFINITY;
            for (int j = 0; j < 32; j++) {
                if (amax < fabsf(xb[j])) amax = fabsf(xb[j]), mx = xb[j];
                mn = fminf(mn, xb[j]), mxv = fmaxf(mxv, xb[j]);
            }
            double d32, d16, m16 = 0;
            if (t == EVLM_TYPE_Q8_0) {
                d32 = amax / 127.0f;
                d16 = evlm_f16_to_f32(((const evlm_block_q8_0 *)(const void *)q)[b].d);
            } else if (t == EVLM_TYPE_Q4_0) {
                d32 = mx / -8.0f;
                d16 = evlm_f16_to_f32(((const evlm_block_q4_0 *)(const void *)q)[b].d);
            } else {
                d32 = (mxv - mn) / 15.0f;
                d16 = evlm_f16_to_f32(((const evlm_block_q4_1 *)(const void *)q)[b].d);
                m16 = evlm_f16_to_f32(((const evlm_block_q4_1 *)(const void *)q)[b].m);
            }
            for (int j = 0; j < 32; j++) {
                double xv = xb[j], e = fabs(xv - (double)y[b * 32 + j]), bound;
                double ulps = 4.0 * (double)FLT_EPSILON * (fabs(xv) + fabs((double)mn));
                if (t == EVLM_TYPE_Q8_0) {
                    bound = fabs(d32) / 2 + 127 * fabs(d32 - d16);
                } else if (t == EVLM_TYPE_Q4_0) {
                    double pos = d32 != 0 ? xv / d32 : 0; /* in [-8, 8] */
                    bound = fabs(d32) * (pos > 7.5 ? pos - 7.0 : 0.5) + 8 * fabs(d32 - d16);
                } else {
                    bound = fabs(d32) / 2 + 15 * fabs(d32 - d16) + fabs((double)mn - m16);
                }
                if (bound > 0 && e / bound > worst) worst = e / bound;
                if (!(e <= bound + ulps) && bad++ < 5)
                    fprintf(stderr, "%s round trip block %d [%d]: %.9g -> %.9g (bound %g)\n",
                            evlm_type_name(t), b, j, xv, (double)y[b * 32 + j], bound);
            }
        }
    }
    CHECKF(bad == 0, "%s round trip: %d elements over the bound", evlm_type_name(t), bad);
    printf("%s round trip: worst error / bound = %.3f\n", evlm_type_name(t), worst);
}

/* ref int8 dot == double dot of the dequantized weights and activations, up to float sums */
static void test_vec_dot(evlm_type t) {
    enum { K = 32 * 40 };
    float x[K], w[K], wd[K];
    unsigned char q[K * 2];
    evlm_q8a a[K / 32];
    int bad = 0;
    for (int rep = 0; rep < 20; rep++) {
        for (int j = 0; j < K; j++) x[j] = frand() * (float)(1 + j % 7), w[j] = frand();
        evlm_quantize_row(t, w, q, K);
        evlm_dequantize_row(t, q, wd, K);
        evlm_quantize_act_ref(x, a, K);
        double want = 0, mag = 0;
        for (int b = 0; b < K / 32; b++)
            for (int j = 0; j < 32; j++) {
                double p = (double)wd[b * 32 + j] * (double)a[b].d * a[b].qs[j];
                want += p, mag += fabs(p);
            }
        double got = evlm_vec_dot_q_ref(t, q, a, K);
        /* Q4_1's m * s term rounds s = d * sum once more than the element products */
        if (!(fabs(got - want) <= 1e-5 * mag) && bad++ < 5)
            fprintf(stderr, "%s vec_dot: %g vs %g\n", evlm_type_name(t), got, want);
    }
    CHECKF(bad == 0, "%s vec_dot_q_ref: %d off", evlm_type_name(t), bad);
}

/* 16-row interleaving (repack.h): every row comes back byte for byte and as the same floats;
 * the known offsets of row 17's pieces in group 1 are checked by hand; padding rows are zero and
 * ref's dot on the interleaved matrix is bitwise the base row's. n = 37: a partial last group. */
static void test_repack(evlm_type t) {
    enum { N = 37, K = 96, KB = K / 32 };
    evlm_type rt = evlm_type_r16(t);
    CHECK(rt != EVLM_TYPE_COUNT && evlm_type_r16_base(rt) == t && evlm_type_is_r16(rt) &&
          !evlm_type_is_r16(t));
    size_t rb = evlm_row_bytes(t, K), bs = evlm_type_size(t);
    CHECK(evlm_r16_bytes(rt, N, K) == 48 * rb);
    unsigned char *w = malloc(rb * N), *r = malloc(evlm_r16_bytes(rt, N, K)), *row = malloc(rb);
    for (size_t i = 0; i < rb * N; i++) w[i] = (unsigned char)(frand() * 127.0f + 128.0f);
    for (int i = 0; i < N; i++)
        for (int b = 0; b < KB; b++) { /* finite fp16 scales (the float check compares values) */
            uint16_t d = evlm_f32_to_f16(frand()), m = evlm_f32_to_f16(frand());
            memcpy(w + (size_t)i * rb + (size_t)b * bs, &d, 2);
            if (t == EVLM_TYPE_Q4_1) memcpy(w + (size_t)i * rb + (size_t)b * bs + 2, &m, 2);
        }
    evlm_repack_r16(t, w, rb, N, K, r);
    int bad = 0;
    float f[K], g[K];
    for (int i = 0; i < 48; i++) {
        evlm_r16_get_row(rt, r, K, i, row);
        if (i < N) {
            bad += memcmp(row, w + (size_t)i * rb, rb) != 0;
            evlm_dequantize_row(t, w + (size_t)i * rb, f, K);
            evlm_r16_dequantize_row(rt, r, K, i, g);
            bad += memcmp(f, g, sizeof f) != 0;
        } else {
            for (size_t j = 0; j < rb; j++) bad += row[j] != 0;
        }
    }
    CHECKF(bad == 0, "%s: %d rows differ after interleaving", evlm_type_name(rt), bad);
    /* row 17 = group 1 lane 1, block column 2: scale at 2 * 1, group c of 4 bytes at qs0 + 64c + 4
     */
    size_t col = 16 * bs, q0 = t == EVLM_TYPE_Q4_1 ? 64 : 32;
    const unsigned char *cd = r + 1 * KB * col + 2 * col, *blk = w + 17 * rb + 2 * bs;
    CHECK(memcmp(cd + 2, blk, 2) == 0);
    CHECK(memcmp(cd + q0 + 64 + 4, blk + (t == EVLM_TYPE_Q4_1 ? 4 : 2) + 4, 4) == 0);
    if (t == EVLM_TYPE_Q4_1) CHECK(memcmp(cd + 32 + 2, blk + 2, 2) == 0);
    evlm_q8a x[KB];
    float xf[K];
    for (int j = 0; j < K; j++) xf[j] = frand();
    evlm_quantize_act_ref(xf, x, K);
    for (int i = 0; i < N; i++) {
        float a = evlm_vec_dot_q_ref(t, w + (size_t)i * rb, x, K),
              b = evlm_r16_dot_ref(rt, r, K, i, x);
        bad += memcmp(&a, &b, sizeof a) != 0;
    }
    CHECKF(bad == 0, "%s: ref dot differs from the base row's", evlm_type_name(rt));
    CHECK(evlm_type_r16(EVLM_TYPE_I8) == EVLM_TYPE_COUNT &&
          evlm_type_r16_base(EVLM_TYPE_Q8_0) == EVLM_TYPE_COUNT);
    free(w), free(r), free(row);
}

/* Float matrices interleaved column by column (repack.h): element (r, j) at (r / 16) 16k + 16j +
 * r % 16 (checked by hand for one element), zero padding, rows back value for value, and the ref
 * dot is the fma chain written out here. */
static void test_repack_float(evlm_type t) {
    enum { N = 37, K = 5 };
    evlm_type rt = evlm_type_r16(t);
    CHECK(evlm_type_is_r16(rt) && evlm_type_is_r16_float(rt) && !evlm_type_is_quant(rt) &&
          evlm_type_r16_base(rt) == t);
    size_t es = evlm_type_size(t), rb = es * K, bytes = evlm_r16_bytes(rt, N, K);
    CHECK(bytes == 48 * rb);
    unsigned char *w = malloc(rb * N), *r = malloc(bytes);
    float wf[N][K], x[K], f[K];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < K; j++) {
            float v = frand();
            uint16_t h = t == EVLM_TYPE_F16 ? evlm_f32_to_f16(v) : evlm_f32_to_bf16(v);
            if (t == EVLM_TYPE_F32)
                memcpy(w + (size_t)i * rb + 4 * j, &v, 4);
            else
                memcpy(w + (size_t)i * rb + 2 * j, &h, 2);
            evlm_dequantize_row(t, w + (size_t)i * rb + es * j, &wf[i][j], 1);
        }
    evlm_repack_r16(t, w, rb, N, K, r);
    CHECK(memcmp(r + (16 * K + 16 * 3 + 1) * es, w + 17 * rb + 3 * es, es) == 0); /* (17, 3) */
    int bad = 0;
    for (size_t b = 0; b < bytes; b++) /* rows 37 .. 47 of group 2 are zero */
        if ((b / es) / (16 * K) == 2 && (b / es) % 16 >= N - 32) bad += r[b] != 0;
    CHECKF(bad == 0, "%s: padding rows not zero", evlm_type_name(rt));
    for (int j = 0; j < K; j++) x[j] = frand();
    for (int i = 0; i < N; i++) {
        evlm_r16_dequantize_row(rt, r, K, i, f);
        bad += memcmp(f, wf[i], sizeof f) != 0;
        float acc = 0.0f;
        for (int j = 0; j < K; j++) acc = fmaf(wf[i][j], x[j], acc);
        float d = evlm_r16_dot_f32_ref(rt, r, K, i, x);
        bad += memcmp(&acc, &d, sizeof d) != 0;
    }
    CHECKF(bad == 0, "%s: %d rows or dots differ after interleaving", evlm_type_name(rt), bad);
    free(w), free(r);
}

int main(void) {
    test_known_q8_0();
    test_known_q4_0();
    test_known_q4_1();
    static const evlm_type types[] = {EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1};
    test_repack_float(EVLM_TYPE_F32);
    test_repack_float(EVLM_TYPE_F16);
    test_repack_float(EVLM_TYPE_BF16);
    for (int i = 0; i < 3; i++) {
        test_round_trip(types[i]);
        test_vec_dot(types[i]);
    }
    /* activation quantization: |x - d qs| <= d / 2 and s = d * sum(qs) */
    float x[64];
    evlm_q8a a[2];
    for (int j = 0; j < 64; j++) x[j] = frand() * 3.0f;
    evlm_quantize_act_ref(x, a, 64);
    for (int b = 0; b < 2; b++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            CHECK(fabs((double)x[b * 32 + j] - (double)a[b].d * a[b].qs[j]) <=
                  (double)a[b].d * 0.5 * (1 + 1e-6));
            sum += a[b].qs[j];
        }
        CHECK(a[b].s == a[b].d * (float)sum);
    }
    test_repack(EVLM_TYPE_Q8_0);
    test_repack(EVLM_TYPE_Q4_0);
    test_repack(EVLM_TYPE_Q4_1);
    return test_done();
}
