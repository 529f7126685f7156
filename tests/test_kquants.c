/*
 * test_kquants.c - the k-quants Q4_K / Q5_K / Q6_K (quant/kquants.h): block layouts, round-trip
 * error bounds on random and adversarial rows, the int8 dots against a double dot of the
 * dequantized row, the type-table rows, and known-answer blocks: the bytes that
 * tests/kquants_ref.py (a Python transcription of ggml's quantize_row_*_K_ref written from its
 * source, float32 rounding emulated op by op) computes for the rows of kat_row().
 *
 * The kernels: every gemm_q this CPU runs against ref's, on the row-major matrices and on their
 * 16-row interleaved forms Q4_K_R16 / Q5_K_R16 / Q6_K_R16 (quant/kquant_repack.h: rows back byte
 * for byte, ref's dot bit for bit, each table's R16 kernel against ref and against its own
 * row-major one).
 *
 * Not here: GGUF files with them (test_gguf.c), the decoder on them (test_kquants_model.c).
 */
#include "core/tensor.h"
#include "kernels/ref_impl.h"
#include "quant/kquant_repack.h"
#include "quant/kquants.h"
#include "quant/repack.h"
#include "quant/types.h"
#include "test.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif
#include <float.h>
#include <stddef.h>
#include <stdint.h>

static uint32_t seed = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) / 8388608.0f - 1.0f;
}

enum { NB = 8, N = NB * EVLM_QK_K, KINDS = 9 };

/* the kind of super-block b of repetition rep (make_block) */
static int kind_of(int rep, int b) {
    return (rep * NB + b) % KINDS;
}

static const evlm_type KT[3] = {EVLM_TYPE_Q4_K, EVLM_TYPE_Q5_K, EVLM_TYPE_Q6_K};

/* ---- layouts and table rows ---- */

static void test_rows(void) {
    static const size_t bytes[3] = {sizeof(evlm_block_q4_K), sizeof(evlm_block_q5_K),
                                    sizeof(evlm_block_q6_K)};
    static const int ids[3] = {12, 13, 14};
    static const char *names[3] = {"q4_K", "q5_K", "q6_K"};
    for (int i = 0; i < 3; i++) {
        const evlm_type_traits *a = evlm_type_traits_of(KT[i]);
        CHECKF(a->block == EVLM_QK_K && a->size == bytes[i] && a->kq && !a->is_quant,
               "%s: block %d size %zu", a->name, a->block, a->size);
        CHECK(a->gguf_id == ids[i] && strcmp(a->gguf_name, names[i]) == 0 && !a->st_dtype);
        CHECK(evlm_type_from_gguf_id((uint32_t)ids[i]) == KT[i]);
        CHECK(evlm_type_parse(names[i]) == KT[i]);
        CHECK(evlm_row_bytes(KT[i], 4096) == 16 * bytes[i]);
        const evlm_type_ops *o = evlm_type_ops_of(KT[i]);
        CHECK(o->to_float && o->from_float && o->dot_q8a);
    }
    /* field offsets as ggml's structs put them */
    CHECK(offsetof(evlm_block_q4_K, scales) == 4 && offsetof(evlm_block_q4_K, qs) == 16);
    CHECK(offsetof(evlm_block_q5_K, qh) == 16 && offsetof(evlm_block_q5_K, qs) == 48);
    CHECK(offsetof(evlm_block_q6_K, qh) == 128 && offsetof(evlm_block_q6_K, scales) == 192 &&
          offsetof(evlm_block_q6_K, d) == 208);
    CHECK(offsetof(evlm_block_q8_K, qs) == 4 && offsetof(evlm_block_q8_K, bsums) == 260);
}

/* ---- round trips ---- */

/* kinds of super-block: 0 uniform, 1 gaussian-ish, 2 all zero, 3 constant, 4 one outlier among
 * small values, 5 huge (1e6), 6 tiny (1e-6), 7 positive offset, 8 sub-blocks of mixed ranges */
static void make_block(float *x, int kind) {
    for (int j = 0; j < EVLM_QK_K; j++) {
        float r = frand();
        switch (kind) {
        case 0:
            x[j] = r;
            break;
        case 1:
            x[j] = (frand() + frand() + frand() + r) * 0.5f;
            break;
        case 2:
            x[j] = 0.0f;
            break;
        case 3:
            x[j] = -0.75f;
            break;
        case 4:
            x[j] = j == 77 ? 100.0f : 0.01f * r;
            break;
        case 5:
            x[j] = 1e6f * r;
            break;
        case 6:
            x[j] = 1e-6f * r;
            break;
        case 7:
            x[j] = 5.0f + 0.5f * r;
            break;
        default:
            x[j] = r * (float)(1 << (j / 32)) / 128.0f;
            break;
        }
    }
}

/* Below this absolute error a block may flush to zeros: its fp16 super-scale (the largest
 * sub-block scale / 63, or / 128 for Q6_K) reaches fp16's smallest step 2^-24 only for values
 * above about 63 * nmax * 2^-24 (ggml's format: values of 1e-6 come back as 0). */
static double abs_floor(evlm_type t) {
    double nmax = t == EVLM_TYPE_Q4_K ? 15 : t == EVLM_TYPE_Q5_K ? 31 : 32;
    return 64.0 * nmax * 0x1p-24;
}

/* Worst-case error of one element, as a fraction of its super-block's largest magnitude. The
 * plain range fit has step range / nmax <= 2 amax / nmax and error half a step; the search may
 * pick a slightly coarser step (trial scales down to (nmax + rmin) / range), and the 6-bit
 * scales and minimums (Q6_K: 8-bit scales) are rounded to 1/126 of the largest one, which the
 * largest code multiplies: 1 step covers all of it with room for clamped codes. */
static double frac_bound(evlm_type t) {
    switch (t) {
    case EVLM_TYPE_Q4_K:
        return 2.0 / 15 + 2.0 / 126;
    case EVLM_TYPE_Q5_K:
        return 2.0 / 31 + 2.0 / 126;
    default:
        return 2.0 / 31 + 1.0 / 126;
    }
}

static void test_round_trips(void) {
    static float x[N], y[N], z[N];
    static unsigned char q[NB * 256];
    for (int ti = 0; ti < 3; ti++) {
        const evlm_type t = KT[ti];
        const evlm_type_ops *o = evlm_type_ops_of(t);
        const char *nm = evlm_type_name(t);
        int bad = 0;
        double worst = 0.0, se = 0.0, sx = 0.0;
        for (int rep = 0; rep < 16; rep++) {
            for (int b = 0; b < NB; b++) make_block(x + b * EVLM_QK_K, kind_of(rep, b));
            o->from_float(x, q, N);
            o->to_float(q, y, N);
            evlm_dequantize_row(t, q, z, N);
            bad += memcmp(y, z, sizeof y) != 0;
            for (int b = 0; b < NB; b++) {
                const float *xb = x + b * EVLM_QK_K, *yb = y + b * EVLM_QK_K;
                double amax = 0.0;
                for (int j = 0; j < EVLM_QK_K; j++) amax = fmax(amax, fabs((double)xb[j]));
                for (int j = 0; j < EVLM_QK_K; j++) {
                    double e = fabs((double)xb[j] - (double)yb[j]);
                    double bound = frac_bound(t) * amax * (1.0 + 1e-3) + abs_floor(t);
                    if (amax > abs_floor(t)) worst = fmax(worst, e / amax);
                    if (kind_of(rep, b) == 0) se += e * e, sx += (double)xb[j] * (double)xb[j];
                    if (!(e <= bound) && bad++ < 5)
                        fprintf(stderr, "%s: block kind %d, x[%d] %.9g -> %.9g (bound %g)\n", nm,
                                kind_of(rep, b), j, (double)xb[j], (double)yb[j], bound);
                    if (amax == 0.0 && yb[j] != 0.0f) bad++; /* zeros come back as zeros */
                }
            }
        }
        printf("%s: worst error %.4f of the super-block's max (bound %.4f), rms error %.4f of "
               "rms(x) on random blocks\n",
               nm, worst, frac_bound(t), sqrt(se / sx));
        CHECKF(bad == 0, "%s round trip: %d elements over the bound", nm, bad);
        /* random blocks: the error of a uniform rounding (step / sqrt 12) with the step 2 / nmax
         * of the range [-1, 1], relative to rms(x); k-quants must do no worse than plain rounding
         * to their grid, give or take the scales' own rounding (25 %) */
        double nmax = t == EVLM_TYPE_Q4_K ? 15 : t == EVLM_TYPE_Q5_K ? 31 : 63;
        double plain = (2.0 / nmax) / sqrt(12.0) / (1.0 / sqrt(3.0));
        CHECKF(sqrt(se / sx) <= 1.25 * plain, "%s: rms error %.4f vs plain rounding %.4f", nm,
               sqrt(se / sx), plain);
    }
}

/* ---- dots ---- */

/* dot_q8a (evlm_q8a activations) and the Q8_K pairing against a double dot of the dequantized
 * row with the dequantized activations: the same products summed in another order, so the gap is
 * float rounding, bounded by 1e-5 of the sum of the products' magnitudes */
static void test_dots(void) {
    static float x[N], a[N], w[N];
    static unsigned char q[NB * 256];
    static evlm_q8a act[N / EVLM_QK];
    static evlm_block_q8_K ak[NB];
    for (int ti = 0; ti < 3; ti++) {
        const evlm_type t = KT[ti];
        const evlm_type_ops *o = evlm_type_ops_of(t);
        for (int rep = 0; rep < 8; rep++) {
            for (int b = 0; b < NB; b++) make_block(x + b * EVLM_QK_K, kind_of(rep, b));
            for (int j = 0; j < N; j++) a[j] = frand() * (float)(1 + j % 7);
            if (rep == 3) a[100] = 50.0f; /* an outlier activation */
            o->from_float(x, q, N);
            o->to_float(q, w, N);
            evlm_quantize_act_ref(a, act, N);
            evlm_quantize_row_q8_K(a, ak, N);
            double want = 0.0, mag = 0.0, want_k = 0.0, mag_k = 0.0;
            for (int j = 0; j < N; j++) {
                double p = (double)w[j] * (double)act[j / 32].d * act[j / 32].qs[j % 32];
                double pk = (double)w[j] * (double)ak[j / 256].d * ak[j / 256].qs[j % 256];
                want += p, mag += fabs(p), want_k += pk, mag_k += fabs(pk);
            }
            float got = o->dot_q8a(q, act, N);
            CHECKF(fabs((double)got - want) <= 1e-5 * mag + 1e-30, "%s dot (rep %d): %g vs %g",
                   evlm_type_name(t), rep, (double)got, want);
            CHECK(evlm_vec_dot_q_ref(t, q, act, N) == got);
            float got_k = ti == 0   ? evlm_vec_dot_q4_K_q8_K(q, ak, N)
                          : ti == 1 ? evlm_vec_dot_q5_K_q8_K(q, ak, N)
                                    : evlm_vec_dot_q6_K_q8_K(q, ak, N);
            CHECKF(fabs((double)got_k - want_k) <= 1e-5 * mag_k + 1e-30,
                   "%s . q8_K (rep %d): %g vs %g", evlm_type_name(t), rep, (double)got_k, want_k);
        }
    }
    /* Q8_K itself: |x - d q| <= d / 2 (ties), bsums the sums of 16, zeros a zero block */
    for (int j = 0; j < N; j++) a[j] = j < EVLM_QK_K ? 0.0f : frand() * (float)(j % 13);
    evlm_quantize_row_q8_K(a, ak, N);
    int bad = 0;
    for (int b = 0; b < NB; b++) {
        for (int j = 0; j < EVLM_QK_K; j++) {
            double e = fabs((double)a[b * 256 + j] - (double)ak[b].d * ak[b].qs[j]);
            bad += !(e <= fabs((double)ak[b].d) * (0.5 + 1e-5));
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += ak[b].qs[16 * g + l];
            bad += s != ak[b].bsums[g];
        }
    }
    CHECK(ak[0].d == 0.0f);
    CHECKF(bad == 0, "Q8_K: %d elements or sums wrong", bad);
}

/* ---- known answers ---- */

/* kat_row() of tests/kquants_ref.py: exact float32 values */
static void kat_row(int r, float *x) {
    for (int j = 0; j < EVLM_QK_K; j++) {
        float v = (float)((j * 7919 + r * 104729) % 2001 - 1000) / 512.0f;
        if (r == 1) v = v * (float)(1 << (j / 32)) / 16.0f + 3.0f;
        if (r == 2) v = j >= 64 && j < 96 ? 0.0f : j == 200 ? -40.0f : v / 64.0f;
        x[j] = v;
    }
}

/* the bytes tests/kquants_ref.py prints: Q4_K rows 0..2, Q5_K rows 0..2, Q6_K rows 0..2 */
static const char *const kat_hex[9] = {
    /* q4_K row 0 */
    "101ce527fffffffffffffefcefdfbfdfa09f9e8e7d7c6c5b5a4a393828171606f5e4e4d3c2c2b1a0af9f8e8d7d6c6b"
    "5b"
    "e4d4d3c2b2b1a09f9f8e7d7d6c5b5b4a393928171706f5e5e4d3c3c2b1a1a09f3928271706f5f5e4d3d3c2b1b1a09f"
    "9e"
    "8e7d7c6c5b5a4a393828171606f5e4e47d7c6b5b5a49393827171605f5e4e3d3c2c1b1a0af9e8e8d7c6c6b5a4a4938"
    "28",
    /* q4_K row 1 */
    "0c282832074787c8000040c00a3080fffdfdededededededeeeeeeeededededededededededdddcdfdedededededed"
    "ed"
    "aeae9e9e9d8d8dfdfdfcecececdcdbdfcfcfcfcfbfbfbeaeaeae9e9d9d8dfdfd8e7e6d6d5c4c4b3b2a2a190908f8e7"
    "d7"
    "d6c6b5b4a4939f8f7e7e6d5d5c4c3b3bd3c2b1b1a09f9e8d7d7c6c5b5a4a393828171606f5e4e4d3c2c2b1a0af9e8e"
    "8d",
    /* q4_K row 2 */
    "ce2914390000c0000000c0000000ff005a49493827271605f5f4e3d3d2c1b1b0af9e9e8d7c7c6b5a5a493838271616"
    "05"
    "909080707060505040303020101000f0e0e0d0c0c0b0a0a09080807060605040d4d3c2b2b1a09f9f8e7d7d6c5b5b4a"
    "39"
    "3928171706f5e5e4d3c3c2b1a1a09f8e2e2e1e0efefeeeded0cebebeae9e9e8e7e7e6e5e5e4e3e3e2e1e1e0efeeeee"
    "de",
    /* q5_K row 0 */
    "0e18ec27fffcfffcfffefefbdddfaddd5a5b4b4b4969696d2d2d2525a4a4b4b4b6969692d2d2dada5b5b4b4b496969"
    "6d"
    "503e2d1bfae9c7b6a58372514f3e1d0bfae9d7b6a58372614f3d1c0bf9d8c7a5d9c7a6958362513f2d1cfbe9c8b7a5"
    "84"
    "7361403f1d0cfbe9d8b7a5847361403e62503f2e1cfbd9c8b795847351403f1d0cfbd9c8b795847251403e1d0cead9"
    "b7"
    "fae9c7b6a58372604f3e1c0bfae8c7b5a48371504f3d1c0bf9d8c7a594836150",
    /* q5_K row 1 */
    "cb231b32074787c8000040c00a3081ffbf9f9f9f9fdfdfdf5f5f5f5f5f7f6f6f2f2f2f2fafafbfbf9f9f9f9fdfdfdf"
    "df"
    "ecececebebdbdbdbddddcdcdcdcdcdbdbdbcbcbcacacacacecececebdbdbdbdb5d4d3c3c2c1b1bfbfafae9d9d9c8b8"
    "bf"
    "af9f9f8f7f7e6e5d4d4d3c2c2c1bfbfa0efddccbba9987665544231201e0dfcead9b8a6958372f1ffeecdbbaa99877"
    "66"
    "a5947361503e2c1bfae8c7b6a48372514f3e1d0bfae9c7b6a58372514e3d1c0a",
    /* q5_K row 2 */
    "3e2514390000c0000000c0000000ff0069696961e0e0f0f0b2d2d2d2d2d2d2da5b5b4b4b4969696969696961e0e0f0"
    "f0"
    "a59372615f3e2c1bfae8c7b5a48371604f3e2c0bfae8c7b5948371504f3d1c0a302000f0e0c0b0a080705040301000"
    "f0"
    "e0c0b0a080705040301000e0d0c0a090c7a6957362513f2d1cfbe9c8b7a5847351403f1d0cfbe9c8b7a5847351403e"
    "1d"
    "5f3f2f1fffdfcfbf908f7f5f4f3f1f0fffdfcfbf9f8f7f5f4f3f1f0fefdfbfaf",
    /* q6_K row 0 */
    "e01d4b7895c2f00d3a6895b2ef1d4a777c4e11e4c7996c3f11e4b6896c3f01e4194674a1de1b4976a3d10e3b68a6d3"
    "00"
    "10436699ccff0235688bbde01346699c04418fcc094784c10e3c79b6f4317ebb5084a7db1e426599cce013476b9ec2"
    "e5"
    "f3c6997b4e10e3b6996b3e01f3d6a97cd29f5c19d694511edb985613d09f5c19283b3b3b3777774646468282819191"
    "d1"
    "e2e2e3d3d3d3171714040408484849794e4e4d4d5d51111120202024e4f4f7f7f8f4f4f48485858141425252121e1f"
    "1f"
    "7d847d8c867c93867ea0847aa9807955ff0f",
    /* q6_K row 1 */
    "4151515161617272708080809090901000101010212131313141415151526262b0c0c0d0e0f1f10101112232324252"
    "53"
    "7383839394a4b4b4c0d0d0e0f0f111116081a2c4e5163758799abcddfe1f30517495b6d7f81931527394b5d607294a"
    "6b"
    "114274a5d7184a7badde004173a1d304f012346507295b7d9fc0e214365889ab000000000000000000000000000000"
    "00"
    "00000000000000000000000000000000242424242444444444448888889091d191d1d1d11121202020242464444444"
    "44"
    "eaeae9e9e6e7e4e3dfdccdd6b3b39f806f1c",
    /* q6_K row 2 */
    "0c090603000e0b0805020f0c09060300000306080b0e000306090b0e0104060964411fecc99664411fecc99764411e"
    "dc"
    "194673a1de1b4976a3d00e4b78a6d300010407090c0f000306090b0e0104070904418ecc094683c10e4b88c603408e"
    "cb"
    "6194b8eb0f326689bde014376b9ec2e5f4c6996c4f10e3b6986b3e01f3c6997c86868242424141414d0d0c0c0c0c08"
    "c8"
    "080808080444454545458181828282c2e3e3e3e3232724240428686869696d6d4e4e4d4d5d51111120202024f4f4f7"
    "f7"
    "0000000000000000000000008000000000a1",
};

static int hex_nibble(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void test_known_answers(void) {
    float x[EVLM_QK_K];
    unsigned char got[256], want[256];
    for (int ti = 0; ti < 3; ti++) {
        size_t bytes = evlm_type_size(KT[ti]);
        for (int r = 0; r < 3; r++) {
            const char *h = kat_hex[3 * ti + r];
            CHECKF(strlen(h) == 2 * bytes, "%s row %d: %zu hex digits", evlm_type_name(KT[ti]), r,
                   strlen(h));
            if (strlen(h) != 2 * bytes) continue;
            for (size_t i = 0; i < bytes; i++)
                want[i] = (unsigned char)(hex_nibble(h[2 * i]) << 4 | hex_nibble(h[2 * i + 1]));
            kat_row(r, x);
            evlm_quantize_row(KT[ti], x, got, EVLM_QK_K);
            size_t first = bytes;
            for (size_t i = 0; i < bytes && first == bytes; i++)
                if (got[i] != want[i]) first = i;
            CHECKF(first == bytes, "%s row %d: byte %zu is %02x, the Python reference has %02x",
                   evlm_type_name(KT[ti]), r, first, first < bytes ? got[first] : 0,
                   first < bytes ? want[first] : 0);
        }
    }
}

/* ---- kernels: every gemm_q this CPU runs against ref's, on the same activation blocks ---- */

typedef void (*gemm_q_fn)(float *y, size_t ldy, const evlm_q8a *x, size_t ldx, const void *w,
                          size_t ldw, evlm_type wt, int m, int n0, int n1, int k);

static void check_gemm_q(const char *isa, gemm_q_fn fn) {
    enum { M = 3, R = 7, K = 4 * EVLM_QK_K };
    static float x[M * K], w[R * K], wd[K];
    static unsigned char q[R * K];
    static evlm_q8a act[M * (K / EVLM_QK)];
    for (int ti = 0; ti < 3; ti++) {
        const evlm_type t = KT[ti];
        const size_t rb = evlm_row_bytes(t, K);
        for (int r = 0; r < R; r++)
            make_block(w + r * K, kind_of(r, 0)), make_block(w + r * K + 256, 1),
                make_block(w + r * K + 512, 5), make_block(w + r * K + 768, 8);
        for (int r = 0; r < R; r++) evlm_quantize_row(t, w + r * K, q + (size_t)r * rb, K);
        for (int j = 0; j < M * K; j++) x[j] = frand() * (float)(1 + j % 5);
        for (int i = 0; i < M; i++) evlm_quantize_act_ref(x + i * K, act + i * (K / EVLM_QK), K);
        for (int m = 1; m <= M; m += 2) {
            float got[M * R], want[M * R];
            for (int j = 0; j < M * R; j++) got[j] = want[j] = -1.0f;
            evlm__ref_gemm_q(want, R, act, K / EVLM_QK, q, rb, t, m, 1, R, K);
            fn(got, R, act, K / EVLM_QK, q, rb, t, m, 1, R, K);
            int bad = 0;
            for (int i = 0; i < m; i++)
                for (int r = 0; r < R; r++) {
                    const float g = got[i * R + r], e = want[i * R + r];
                    if (r == 0) { /* outside [n0, n1): untouched */
                        bad += g != -1.0f;
                        continue;
                    }
                    evlm_dequantize_row(t, q + (size_t)r * rb, wd, K);
                    double mag = 0.0;
                    const evlm_q8a *a = act + i * (K / EVLM_QK);
                    for (int j = 0; j < K; j++)
                        mag += fabs((double)wd[j] * (double)a[j / 32].d * a[j / 32].qs[j % 32]);
                    if (!(fabs((double)g - (double)e) <= 1e-5 * mag + 1e-30) && bad++ < 3)
                        fprintf(stderr, "%s %s m %d row %d: %g vs ref %g\n", isa, evlm_type_name(t),
                                m, r, (double)g, (double)e);
                }
            CHECKF(bad == 0, "%s gemm_q %s, m = %d: %d outputs off", isa, evlm_type_name(t), m,
                   bad);
        }
    }
}

/* ---- interleaved forms ---- */

static const evlm_type KR[3] = {EVLM_TYPE_Q4_K, EVLM_TYPE_Q5_K,
                                EVLM_TYPE_Q6_K}; /* with R16 forms */

/* rows of a 37-row matrix (a partial last group) back byte for byte and as the same floats,
 * padding rows zero, and ref's dot of the R16 form bitwise the row's own */
static void test_r16_rows(void) {
    enum { R = 37, K = 3 * EVLM_QK_K };
    static float x[R * K], f[K], g[K];
    static unsigned char q[R * K], r16[48 * K], row[K];
    static evlm_q8a act[K / EVLM_QK];
    for (int ti = 0; ti < 3; ti++) {
        const evlm_type t = KR[ti], rt = evlm_type_r16(t);
        CHECKF(rt != EVLM_TYPE_COUNT && evlm_type_r16_base(rt) == t && evlm_type_traits_of(rt)->kq,
               "%s has no R16 form", evlm_type_name(t));
        const size_t rb = evlm_row_bytes(t, K);
        for (int i = 0; i < R; i++)
            for (int b = 0; b < K / EVLM_QK_K; b++)
                make_block(x + i * K + b * EVLM_QK_K, kind_of(i, b));
        for (int i = 0; i < R; i++) evlm_quantize_row(t, x + i * K, q + (size_t)i * rb, K);
        CHECK(evlm_r16_bytes(rt, R, K) == 48 * rb && 48 * rb <= sizeof r16);
        memset(r16, 0xa5, sizeof r16);
        evlm_repack_r16(t, q, rb, R, K, r16);
        for (int j = 0; j < K; j++) x[j] = frand() * (float)(1 + j % 3);
        evlm_quantize_act_ref(x, act, K);
        int bad = 0;
        for (int i = 0; i < 48; i++) {
            evlm_r16_get_row(rt, r16, K, i, row);
            if (i >= R) { /* padding */
                for (size_t j = 0; j < rb; j++) bad += row[j] != 0;
                continue;
            }
            bad += memcmp(row, q + (size_t)i * rb, rb) != 0;
            evlm_dequantize_row(t, q + (size_t)i * rb, f, K);
            evlm_r16_dequantize_row(rt, r16, K, i, g);
            bad += memcmp(f, g, sizeof f) != 0;
            bad += evlm_r16_dot_ref(rt, r16, K, i, act) !=
                   evlm_vec_dot_q_ref(t, q + (size_t)i * rb, act, K);
        }
        CHECKF(bad == 0, "%s: %d rows differ after interleaving", evlm_type_name(rt), bad);
        /* the float-activation gemm (--act f32) on the R16 form: the rows dequantized as the
         * file layout's, so the same bits (every table sends k-quants to ref's) */
        static float yr[R], yi[R], scratch[K];
        const evlm_kernels *kn = evlm_kernels_get();
        kn->gemm(yr, R, x, K, q, rb, t, 1, 0, R, K, scratch);
        kn->gemm(yi, R, x, K, r16, rb, rt, 1, 0, R, K, scratch);
        CHECKF(memcmp(yr, yi, sizeof yr) == 0, "%s: the f32-activation gemm differs",
               evlm_type_name(rt));
        /* the documented places of row 5's d and of its qs / ql byte 4 * 3 + 1 in group 0 */
        const unsigned char *b0 = q + 5 * rb;
        if (t == EVLM_TYPE_Q4_K) {
            CHECK(memcmp(r16 + EVLM_Q4K_R16_D + 2 * 5, b0, 2) == 0);
            CHECK(r16[EVLM_Q4K_R16_QS + 64 * 3 + 4 * 5 + 1] == b0[16 + 4 * 3 + 1]);
            CHECK(r16[EVLM_Q4K_R16_SC + 16 * 7 + 5] == b0[4 + 7]);
        } else if (t == EVLM_TYPE_Q5_K) {
            CHECK(memcmp(r16 + EVLM_Q5K_R16_DMIN + 2 * 5, b0 + 2, 2) == 0);
            CHECK(r16[EVLM_Q5K_R16_QH + 64 * 3 + 4 * 5 + 1] == b0[16 + 4 * 3 + 1]);
            CHECK(r16[EVLM_Q5K_R16_QS + 64 * 3 + 4 * 5 + 1] == b0[48 + 4 * 3 + 1]);
        } else {
            CHECK(memcmp(r16 + EVLM_Q6K_R16_D + 2 * 5, b0 + 208, 2) == 0);
            /* half 1, i = 3: ql[64 + 12 ..], ql[64 + 32 + 12 ..], qh[32 + 12 ..] */
            const unsigned char *q6 = r16 + EVLM_Q6K_R16_Q + 1536 + 192 * 3 + 4 * 5 + 1;
            CHECK(q6[0] == b0[64 + 12 + 1] && q6[64] == b0[96 + 12 + 1] &&
                  q6[128] == b0[128 + 32 + 12 + 1]);
            CHECK(r16[EVLM_Q6K_R16_SC + 16 * 9 + 5] == b0[192 + 9]);
        }
    }
}

/* fn on the R16 form of a 45-row matrix (3 groups, the last partial) against ref on the
 * row-major rows (the 1e-5 bound of check_gemm_q) and against fn on the row-major rows (the same
 * bound: two summation orders of the same products), for n0 = 0 and n0 = 16 (rows outside
 * [n0, n1) untouched) and 1..3 activation rows */
static void check_gemm_q_r16(const char *isa, gemm_q_fn fn) {
    enum { M = 3, R = 45, K = 5 * EVLM_QK_K };
    static float x[M * K], w[R * K], wd[K];
    static unsigned char q[R * K], r16[48 * K];
    static evlm_q8a act[M * (K / EVLM_QK)];
    static float got[M * R], want[M * R], rowm[M * R];
    for (int ti = 0; ti < 3; ti++) {
        const evlm_type t = KR[ti], rt = evlm_type_r16(t);
        const size_t rb = evlm_row_bytes(t, K);
        for (int r = 0; r < R; r++)
            for (int b = 0; b < K / EVLM_QK_K; b++)
                make_block(w + r * K + b * EVLM_QK_K, kind_of(r + 1, b));
        for (int r = 0; r < R; r++) evlm_quantize_row(t, w + r * K, q + (size_t)r * rb, K);
        evlm_repack_r16(t, q, rb, R, K, r16);
        for (int j = 0; j < M * K; j++) x[j] = frand() * (float)(1 + j % 5);
        x[17] = 40.0f; /* an outlier activation */
        for (int i = 0; i < M; i++) evlm_quantize_act_ref(x + i * K, act + i * (K / EVLM_QK), K);
        for (int n0 = 0; n0 <= 16; n0 += 16)
            for (int m = 1; m <= M; m++) {
                for (int j = 0; j < M * R; j++) got[j] = want[j] = rowm[j] = -1.0f;
                evlm__ref_gemm_q(want, R, act, K / EVLM_QK, q, rb, t, m, n0, R, K);
                fn(rowm, R, act, K / EVLM_QK, q, rb, t, m, n0, R, K);
                fn(got, R, act, K / EVLM_QK, r16, rb, rt, m, n0, R, K);
                int bad = 0;
                for (int i = 0; i < m; i++)
                    for (int r = 0; r < R; r++) {
                        const float gv = got[i * R + r], e = want[i * R + r], o = rowm[i * R + r];
                        if (r < n0) {
                            bad += gv != -1.0f;
                            continue;
                        }
                        evlm_dequantize_row(t, q + (size_t)r * rb, wd, K);
                        double mag = 0.0;
                        const evlm_q8a *a = act + i * (K / EVLM_QK);
                        for (int j = 0; j < K; j++)
                            mag += fabs((double)wd[j] * (double)a[j / 32].d * a[j / 32].qs[j % 32]);
                        bool ok = fabs((double)gv - (double)e) <= 1e-5 * mag + 1e-30 &&
                                  fabs((double)gv - (double)o) <= 1e-5 * mag + 1e-30;
                        if (!ok && bad++ < 3)
                            fprintf(stderr, "%s %s m %d row %d: %g vs ref %g, row-major %g\n", isa,
                                    evlm_type_name(rt), m, r, (double)gv, (double)e, (double)o);
                    }
                for (int j = m * R; j < M * R; j++) bad += got[j] != -1.0f; /* rows past m */
                CHECKF(bad == 0, "%s gemm_q %s, m = %d, n0 = %d: %d outputs off", isa,
                       evlm_type_name(rt), m, n0, bad);
            }
    }
}

static void test_kernels(void) {
    int n = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        check_gemm_q("avx2", evlm__avx2_gemm_q);
        check_gemm_q_r16("avx2", evlm__avx2_gemm_q);
        n++;
    }
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")) {
        check_gemm_q("avx512vnni", evlm__avx512vnni_gemm_q);
        check_gemm_q_r16("avx512vnni", evlm__avx512vnni_gemm_q);
        n++;
    }
#endif
#if defined(__aarch64__)
    check_gemm_q("neon", evlm_kernels_neon.gemm_q);
    check_gemm_q_r16("neon", evlm_kernels_neon.gemm_q);
    n++;
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) {
        check_gemm_q("dotprod", evlm__neon_dotprod_gemm_q);
        check_gemm_q_r16("dotprod", evlm__neon_dotprod_gemm_q);
        n++;
    }
#endif
#endif
    check_gemm_q("ref (by the type table)", evlm__ref_gemm_q);
    check_gemm_q_r16("ref (by the type table)", evlm__ref_gemm_q);
    printf("gemm_q checked against ref on %d SIMD table(s) of this CPU\n", n);
}

int main(void) {
    test_rows();
    test_round_trips();
    test_dots();
    test_known_answers();
    test_r16_rows();
    test_kernels();
    return test_done();
}
