/*
 * test_prune.c - pruning (src/compress/prune.c, the pruning column loop of gptq.c) against
 * independent references:
 *   - magnitude and Wanda masks equal a brute-force top-k of their score (each weight's rank in
 *     its row or N:M group counted directly), unstructured and N:M;
 *   - SparseGPT at 0 % (and with a 4:4 pattern, the adaptive path pruning nothing) returns the
 *     weights bit for bit;
 *   - SparseGPT's update against a direct least-squares solve (normal equations by Cholesky,
 *     damp 0): every weight, at the moment the loop visits it (the trace), is the minimizer of
 *     ||X (w - w')|| given the columns already visited at their final values (0 for the pruned);
 *     with a fixed mask whose pruned columns come first, the kept weights of each row are the
 *     minimizer of ||X (w - w')|| with the pruned ones at 0 (the whole least-squares problem);
 *   - the adaptive mask prunes exactly round(S * k) weights per row, M - N per N:M group;
 *   - sparse-aware GPTQ (Q8_0 / Q4_0, adaptive and fixed masks) writes exact zeros where the
 *     mask says, and beats pruning then rounding in output error; Q4_1 is refused;
 *   - results do not depend on the thread count; hostile settings get errors.
 */
#include "compress/gptq.h"
#include "compress/prune.h"
#include "compress/rtn.h"
#include "core/threadpool.h"
#include "quant/quants.h"
#include "test.h"

#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) {
    return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
}

/* correlated inputs with a few loud channels; xtx = X^T X */
static void make_xtx(int N, int k, double *xtx) {
    float *x = malloc(sizeof(float) * (size_t)N * (size_t)k);
    for (int i = 0; i < N; i++) {
        double prev = gauss();
        for (int j = 0; j < k; j++) {
            prev = 0.7 * prev + 0.7 * gauss();
            x[i * k + j] = (float)(prev * (j % 11 == 2 ? 5.0 : 1.0));
        }
    }
    memset(xtx, 0, sizeof(double) * (size_t)k * (size_t)k);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                xtx[i * k + j] += (double)x[r * k + i] * (double)x[r * k + j];
    free(x);
}

static int chol_solve(double *a, double *b, int m) {
    for (int j = 0; j < m; j++) {
        double d = a[j * m + j];
        for (int t = 0; t < j; t++) d -= a[j * m + t] * a[j * m + t];
        if (!(d > 0.0)) return 1;
        a[j * m + j] = sqrt(d);
        for (int i = j + 1; i < m; i++) {
            double v = a[i * m + j];
            for (int t = 0; t < j; t++) v -= a[i * m + t] * a[j * m + t];
            a[i * m + j] = v / a[j * m + j];
        }
    }
    for (int i = 0; i < m; i++) {
        for (int t = 0; t < i; t++) b[i] -= a[i * m + t] * b[t];
        b[i] /= a[i * m + i];
    }
    for (int i = m - 1; i >= 0; i--) {
        for (int t = i + 1; t < m; t++) b[i] -= a[t * m + i] * b[t];
        b[i] /= a[i * m + i];
    }
    return 0;
}

/* argmin over the free columns (free[j]) of (w - w')^T H (w - w') with the others at fix[j];
 * the result into sol[k] (fixed columns copied). */
static void ls_solve(const double *h, int k, const float *w, const float *fix, const bool *free_,
                     double *sol) {
    int idx[256], m = 0;
    for (int j = 0; j < k; j++)
        if (free_[j]) idx[m++] = j;
    double *a = malloc(sizeof(double) * (size_t)(m * m + 1)), *b = malloc(sizeof(double) * (m + 1));
    /* grad = 0: H_FF w'_F = H_FF w_F + H_FP (w_P - fix_P) */
    for (int i = 0; i < m; i++) {
        double v = 0;
        for (int t = 0; t < k; t++)
            v += h[idx[i] * k + t] * (free_[t] ? (double)w[t] : (double)w[t] - (double)fix[t]);
        b[i] = v;
        for (int t = 0; t < m; t++) a[i * m + t] = h[idx[i] * k + idx[t]];
    }
    CHECK(chol_solve(a, b, m) == 0);
    for (int j = 0; j < k; j++) sol[j] = fix[j];
    for (int i = 0; i < m; i++) sol[idx[i]] = b[i];
    free(a);
    free(b);
}

/* brute force: w[j] is among the cnt least of [j0, j1) by (score, column) */
static bool in_least(const double *score, int j0, int j1, int j, int cnt) {
    int rank = 0;
    for (int t = j0; t < j1; t++) rank += score[t] < score[j] || (score[t] == score[j] && t < j);
    return rank < cnt;
}

static void test_masks(void) {
    enum { n = 6, k = 64 };
    float w[n * k];
    double sq[k], score[k];
    uint8_t mask[n * k];
    for (int i = 0; i < n * k; i++) w[i] = (float)gauss();
    for (int j = 0; j < k; j++) sq[j] = j % 7 == 0 ? 400.0 * urand() : urand();
    w[3] = w[4] = 0.5f; /* a tie */
    for (int mi = 0; mi < 2; mi++) {
        evlm_prune_method m = mi ? EVLM_PRUNE_WANDA : EVLM_PRUNE_MAGNITUDE;
        const int pats[][2] = {{0, 0}, {2, 4}, {4, 8}, {1, 4}};
        for (int pi = 0; pi < 4; pi++) {
            int kn = pats[pi][0], gm = pats[pi][1];
            double s = gm ? 0.0 : 0.37;
            CHECK_OK(evlm_prune_mask(m, w, n, k, mi ? sq : NULL, s, kn, gm, mask));
            int bad = 0;
            for (int r = 0; r < n; r++) {
                for (int j = 0; j < k; j++)
                    score[j] = fabs((double)w[r * k + j]) * (mi ? sqrt(sq[j]) : 1.0);
                for (int j = 0; j < k; j++) {
                    int j0 = gm ? j / gm * gm : 0, j1 = gm ? j0 + gm : k;
                    int cnt = gm ? gm - kn : (int)llround(s * k);
                    bad += in_least(score, j0, j1, j, cnt) != (mask[r * k + j] == 1);
                }
            }
            CHECKF(bad == 0, "%s %d:%d: %d mask entries differ from the brute-force top-k",
                   mi ? "wanda" : "magnitude", kn, gm, bad);
        }
    }
    CHECK(evlm_prune_mask(EVLM_PRUNE_WANDA, w, n, k, NULL, 0.5, 0, 0, mask) == EVLM_ERR_ARG);
}

static void test_sparsegpt(void) {
    enum { n = 5, k = 96, N = 400 };
    double *xtx = malloc(sizeof(double) * k * k), *h = malloc(sizeof(double) * k * k);
    float *w = malloc(sizeof(float) * n * k), *out = malloc(sizeof(float) * n * k);
    float *trace = malloc(sizeof(float) * n * k);
    uint8_t *mask = malloc(n * k);
    double sol[k];
    bool fr[k];
    make_xtx(N, k, xtx);
    for (int i = 0; i < k * k; i++) h[i] = xtx[i] * 2.0 / N;
    for (int i = 0; i < n * k; i++) w[i] = (float)(0.1 * gauss());
    evlm_gptq_params p = evlm_gptq_default_params();
    evlm_gptq_result res, res2;

    /* 0 %: identity, plain and through the adaptive path (4:4 keeps every weight) */
    evlm_gptq_prune none = {0}, all = {.keep_n = 4, .group_m = 4, .mask_out = mask};
    CHECK_OK(evlm_gptq_run(EVLM_TYPE_F32, w, n, k, xtx, N, &p, &none, NULL, out, &res));
    CHECK(memcmp(out, w, sizeof(float) * n * k) == 0 && res.err == 0.0);
    CHECK_OK(evlm_gptq_run(EVLM_TYPE_F32, w, n, k, xtx, N, &p, &all, NULL, out, &res));
    CHECK(memcmp(out, w, sizeof(float) * n * k) == 0);

    /* adaptive 50 %, damp 0, blocks of 32: each visited weight is the conditional optimum */
    p.damp = 0.0;
    p.block_cols = 32;
    p.trace = trace;
    evlm_gptq_prune ad = {.sparsity = 0.5, .mask_out = mask};
    CHECK_OK(evlm_gptq_run(EVLM_TYPE_F32, w, n, k, xtx, N, &p, &ad, NULL, out, &res));
    double worst = 0, scale = 0;
    int wrong_count = 0;
    for (int r = 0; r < n; r++) {
        const float *wr = w + r * k, *o = out + r * k;
        int z = 0;
        for (int j = 0; j < k; j++) {
            z += mask[r * k + j];
            if (mask[r * k + j] && o[j] != 0.0f) wrong_count++;
            scale = fmax(scale, fabs(wr[j]));
        }
        wrong_count += z != k / 2;
        for (int i = 0; i < k; i += 7) {
            for (int j = 0; j < k; j++) fr[j] = j >= i;
            ls_solve(h, k, wr, o, fr, sol);
            worst = fmax(worst, fabs(sol[i] - (double)trace[r * k + i]));
        }
    }
    CHECKF(wrong_count == 0, "%d rows / zeros off the 50 %% mask", wrong_count);
    CHECKF(worst < 1e-4 * scale, "sparsegpt: visited weight off the least-squares optimum by %g",
           worst);
    /* it beats magnitude pruning of the same rows in output error */
    double e_mag;
    CHECK_OK(evlm_prune_mask(EVLM_PRUNE_MAGNITUDE, w, n, k, NULL, 0.5, 0, 0, mask));
    float *wm = malloc(sizeof(float) * n * k);
    for (int i = 0; i < n * k; i++) wm[i] = mask[i] ? 0.0f : w[i];
    e_mag = 0;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                e_mag += ((double)w[r * k + i] - (double)wm[r * k + i]) * xtx[i * k + j] *
                         ((double)w[r * k + j] - (double)wm[r * k + j]);
    CHECKF(res.err < 0.5 * e_mag, "sparsegpt error %g vs magnitude %g", res.err, e_mag);

    /* fixed mask, pruned columns first: the kept weights are the full least-squares solution */
    p.trace = NULL;
    int lead[n] = {48, 10, 0, 95, 33};
    for (int r = 0; r < n; r++)
        for (int j = 0; j < k; j++) mask[r * k + j] = j < lead[r];
    evlm_gptq_prune fx = {.mask = mask};
    CHECK_OK(evlm_gptq_run(EVLM_TYPE_F32, w, n, k, xtx, N, &p, &fx, NULL, out, &res));
    worst = 0;
    float zero[k];
    memset(zero, 0, sizeof zero);
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < k; j++) fr[j] = !mask[r * k + j];
        ls_solve(h, k, w + r * k, zero, fr, sol);
        for (int j = 0; j < k; j++) worst = fmax(worst, fabs(sol[j] - (double)out[r * k + j]));
    }
    CHECKF(worst < 1e-4 * scale, "fixed leading mask: kept weights off the direct solve by %g",
           worst);

    /* N:M along the inputs, float and quantized */
    const int pats[][2] = {{2, 4}, {4, 8}, {1, 2}};
    const evlm_type types[] = {EVLM_TYPE_F32, EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0};
    p = evlm_gptq_default_params();
    float *deq = malloc(sizeof(float) * n * k);
    for (int pi = 0; pi < 3; pi++)
        for (int ti = 0; ti < 3; ti++) {
            evlm_type t = types[ti];
            void *o = malloc(evlm_row_bytes(t, k) * n);
            evlm_gptq_prune nm = {.keep_n = pats[pi][0], .group_m = pats[pi][1], .mask_out = mask};
            CHECK_OK(evlm_gptq_run(t, w, n, k, xtx, N, &p, &nm, NULL, o, &res));
            for (int r = 0; r < n; r++)
                evlm_dequantize_row(t, (char *)o + evlm_row_bytes(t, k) * r, deq + r * k, k);
            int bad = 0, gm = pats[pi][1];
            for (int g = 0; g < n * k; g += gm) {
                int z = 0, mz = 0;
                for (int j = g; j < g + gm; j++) {
                    z += deq[j] == 0.0f;
                    mz += mask[j];
                    bad += mask[j] && deq[j] != 0.0f;
                }
                bad += mz != gm - pats[pi][0] || z < gm - pats[pi][0];
            }
            CHECKF(bad == 0, "%d:%d into %s: %d groups break the pattern", pats[pi][0], gm,
                   evlm_type_name(t), bad);
            free(o);
        }

    /* sparse-aware GPTQ: zeros kept, better than pruning then rounding; thread independence */
    evlm_pool *pool = NULL;
    CHECK_OK(evlm_pool_new(3, &pool));
    for (int ti = 1; ti < 3; ti++) {
        evlm_type t = types[ti];
        size_t bytes = evlm_row_bytes(t, k) * n;
        void *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
        evlm_gptq_prune sp = {.sparsity = 0.5, .mask_out = mask};
        CHECK_OK(evlm_gptq_run(t, w, n, k, xtx, N, &p, &sp, NULL, a, &res));
        CHECK_OK(evlm_gptq_run(t, w, n, k, xtx, N, &p, &sp, pool, b, &res));
        CHECK(memcmp(a, b, bytes) == 0);
        int bad = 0;
        for (int r = 0; r < n; r++) {
            evlm_dequantize_row(t, (char *)a + evlm_row_bytes(t, k) * r, deq + r * k, k);
            for (int j = 0; j < k; j++) bad += mask[r * k + j] && deq[r * k + j] != 0.0f;
        }
        CHECKF(bad == 0, "sparsegpt + gptq %s: %d pruned weights are not 0", evlm_type_name(t),
               bad);
        /* one pass does at least as well as SparseGPT in float, then rounding (its grids see
         * the pruning's compensation coming) */
        float *fl = malloc(sizeof(float) * n * k);
        double e_two, r_two;
        CHECK_OK(evlm_gptq_run(EVLM_TYPE_F32, w, n, k, xtx, N, &p, &sp, NULL, fl, &res2));
        CHECK_OK(evlm_rtn_quantize(t, fl, n, k, c));
        CHECK_OK(evlm_quant_error_xtx(t, w, c, n, k, xtx, &e_two, &r_two));
        CHECKF(res.err <= e_two, "sparsegpt + gptq %s in one pass: error %g > %g of two steps",
               evlm_type_name(t), res.err, e_two);
        free(fl);
        /* a fixed (magnitude) mask through GPTQ: kept zeros, error below mask-then-round */
        CHECK_OK(evlm_prune_mask(EVLM_PRUNE_MAGNITUDE, w, n, k, NULL, 0.5, 0, 0, mask));
        evlm_gptq_prune fm = {.mask = mask};
        CHECK_OK(evlm_gptq_run(t, w, n, k, xtx, N, &p, &fm, NULL, b, &res));
        for (int i = 0; i < n * k; i++) wm[i] = mask[i] ? 0.0f : w[i];
        CHECK_OK(evlm_rtn_quantize(t, wm, n, k, c));
        double e_rtn, r_rtn;
        CHECK_OK(evlm_quant_error_xtx(t, w, c, n, k, xtx, &e_rtn, &r_rtn));
        bad = 0;
        for (int r = 0; r < n; r++) {
            evlm_dequantize_row(t, (char *)b + evlm_row_bytes(t, k) * r, deq + r * k, k);
            for (int j = 0; j < k; j++) bad += mask[r * k + j] && deq[r * k + j] != 0.0f;
        }
        CHECKF(bad == 0 && res.err < e_rtn, "fixed mask + gptq %s: %d nonzero, err %g vs %g",
               evlm_type_name(t), bad, res.err, e_rtn);
        free(a);
        free(b);
        free(c);
    }
    evlm_pool_free(pool);
    void *q41 = malloc(evlm_row_bytes(EVLM_TYPE_Q4_1, k) * n);
    evlm_gptq_prune sp = {.sparsity = 0.5};
    CHECK(evlm_gptq_run(EVLM_TYPE_Q4_1, w, n, k, xtx, N, &p, &sp, NULL, q41, &res) ==
          EVLM_ERR_UNSUPPORTED);
    CHECK(strstr(evlm_last_error(), "Q4_1") != NULL);
    free(q41);
    free(deq);
    free(wm);
    free(xtx);
    free(h);
    free(w);
    free(out);
    free(trace);
    free(mask);
}

static void test_hostile(void) {
    CHECK(evlm_prune_check("x", 1.5, 0, 0, 64) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "1.5") != NULL);
    CHECK(evlm_prune_check("x", -0.1, 0, 0, 64) == EVLM_ERR_ARG);
    CHECK(evlm_prune_check("x", NAN, 0, 0, 64) == EVLM_ERR_ARG);
    CHECK(evlm_prune_check("x", 1.0, 0, 0, 64) == EVLM_ERR_ARG);
    CHECK(evlm_prune_check("x", 0, 5, 4, 64) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "5:4") != NULL);
    CHECK(evlm_prune_check("x", 0, 2, 3, 64) == EVLM_ERR_ARG);
    CHECK(evlm_prune_check("x", 0, 2, 8, 60) == EVLM_ERR_ARG);
    CHECK(evlm_prune_check("x", 0.5, 2, 4, 64) == EVLM_ERR_ARG);
    CHECK(evlm_prune_check("x", 0, 2, 4, 64) == EVLM_OK);
    CHECK(evlm_prune_check("x", 0.5, 0, 0, 64) == EVLM_OK);
    float w[64] = {0};
    double xtx[64 * 64] = {0};
    for (int i = 0; i < 64; i++) xtx[i * 64 + i] = 1;
    float out[64];
    evlm_gptq_result res;
    evlm_gptq_prune bad = {.sparsity = 2.0};
    CHECK(evlm_gptq_run(EVLM_TYPE_F32, w, 1, 64, xtx, 10, NULL, &bad, NULL, out, &res) ==
          EVLM_ERR_ARG);
    evlm_gptq_prune nm = {.keep_n = 5, .group_m = 4};
    CHECK(evlm_gptq_run(EVLM_TYPE_F32, w, 1, 64, xtx, 10, NULL, &nm, NULL, out, &res) ==
          EVLM_ERR_ARG);
}

int main(void) {
    test_masks();
    test_sparsegpt();
    test_hostile();
    return test_done();
}
