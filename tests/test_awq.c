/*
 * test_awq.c - the calibration collector (src/compress/calib.c) and AWQ scaling
 * (src/compress/awq.c), against references computed here:
 *   - calib: mean |x| and the reservoir against the rows fed in (kept rows are input rows,
 *     distinct, all of them while fewer than the capacity), one-layer selection, lm_head
 *     filtering, the byte bound and its error, width mismatches and NaN inputs;
 *   - AWQ on a q/k/v-like group with loud input channels: the chosen error is <= round-to-nearest
 *     on the calibration rows, both errors match a direct double recomputation of
 *     ||Q(W diag(s)) (x / s) - W x||^2 (1e-4 relative), and for Q4 the gain is real;
 *   - folds: RMSNorm -> q/k/v, silu(gate) * up -> down, and grouped-query attention v -> o give
 *     the same float outputs (1e-5 relative) after scaling W by s and folding 1/s backwards;
 *     untied o_proj scales are refused.
 */
#include "compress/awq.h"
#include "compress/calib.h"
#include "compress/rtn.h"
#include "model/decoder.h"
#include "quant/quants.h"
#include "test.h"

#include <stdint.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) {
    return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand());
}

/* activations with a few loud channels (the case AWQ is for) */
static void make_x(float *x, int N, int k) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++)
            x[i * k + j] = (float)(gauss() * (j % 11 == 2 ? 8.0 : j % 7 == 0 ? 0.2 : 1.0));
}
static void make_w(float *w, int64_t n) {
    for (int64_t i = 0; i < n; i++) w[i] = (float)(0.05 * gauss());
}

static void test_calib(void) {
    enum { N = 300, k = 64 };
    static float x[N * k];
    make_x(x, N, k);
    evlm_calib_params p = evlm_calib_default_params();
    p.reservoir_rows = 256;
    p.hessian = false;
    evlm_calib *c = NULL;
    CHECK_OK(evlm_calib_new(&p, &c));
    evlm_decoder_observer observe = evlm_calib_observe; /* plugs into the decoder as is */
    (void)observe;
    for (int r0 = 0; r0 < N; r0 += 50) {
        evlm_calib_observe(c, 3, "ffn_down", x + r0 * k, 50, k);
        evlm_calib_observe(c, 1, "ffn_down", x, 10, k);
        evlm_calib_observe(c, -1, "lm_head", x, 10, k); /* not collected by default */
    }
    CHECK(evlm_calib_status(c) == EVLM_OK);
    CHECK(evlm_calib_count(c) == 2 && evlm_calib_find(c, -1, "lm_head") == NULL);
    const evlm_calib_stat *st = evlm_calib_find(c, 3, "ffn_down");
    CHECK(st && st->n_rows == N && st->n_kept == 256 && st->xtx == NULL);
    CHECK(evlm_calib_bytes(c) >= 2 * evlm_calib_stat_bytes(&p, k));
    float mean[k];
    evlm_calib_mean_abs(st, mean);
    int bad = 0;
    for (int j = 0; j < k; j++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) s += fabs((double)x[i * k + j]);
        bad += fabs(s / N - (double)mean[j]) > 1e-6 * (s / N);
    }
    CHECK(bad == 0);
    /* the reservoir holds distinct input rows */
    static char used[N];
    int found = 0;
    for (int r = 0; r < st->n_kept; r++)
        for (int i = 0; i < N; i++)
            if (!used[i] && memcmp(st->rows + r * k, x + i * k, sizeof(float) * k) == 0) {
                used[i] = 1;
                found++;
                break;
            }
    CHECK(found == 256);
    const evlm_calib_stat *s1 =
        evlm_calib_find(c, 1, "ffn_down"); /* 60 < 256 rows: all, in order */
    CHECK(s1 && s1->n_kept == 60 && memcmp(s1->rows, x, sizeof(float) * 10 * k) == 0 &&
          memcmp(s1->rows + 50 * k, x, sizeof(float) * 10 * k) == 0);

    /* one layer at a time */
    evlm_calib_select_layer(c, 1);
    CHECK(evlm_calib_count(c) == 0);
    evlm_calib_observe(c, 0, "attn_qkv", x, 5, k);
    evlm_calib_observe(c, 1, "attn_qkv", x, 5, k);
    CHECK(evlm_calib_count(c) == 1 && evlm_calib_find(c, 1, "attn_qkv"));
    /* width mismatch and NaN: the first error is kept and named */
    evlm_calib_observe(c, 1, "attn_qkv", x, 5, 32);
    CHECK(evlm_calib_status(c) == EVLM_ERR_ARG && strstr(evlm_calib_error(c), "attn_qkv"));
    evlm_calib_free(c);

    x[7] = NAN;
    CHECK_OK(evlm_calib_new(&p, &c));
    evlm_calib_observe(c, 0, "attn_o", x, 5, k);
    CHECK(evlm_calib_status(c) == EVLM_ERR_RANGE);
    evlm_calib_free(c);
    x[7] = 0.0f;

    /* the byte bound: xtx of k = 64 is 32 KiB; a 40 KiB budget holds one group, not two */
    p.hessian = true;
    p.reservoir_rows = 0;
    p.max_bytes = 40 << 10;
    CHECK_OK(evlm_calib_new(&p, &c));
    evlm_calib_observe(c, 0, "attn_qkv", x, 5, k);
    CHECK(evlm_calib_status(c) == EVLM_OK);
    evlm_calib_observe(c, 0, "attn_o", x, 5, k);
    CHECK(evlm_calib_status(c) == EVLM_ERR_NOMEM && strstr(evlm_calib_error(c), "max_bytes"));
    evlm_calib_free(c);
}

/* ||Q(W diag(s)) diag(s)^-1 x - W x||^2 summed over layers, computed directly */
static double direct_err(evlm_type t, const evlm_awq_linear *lin, int n_lin, int k, const float *s,
                         const float *x, int N) {
    double e = 0.0;
    float *ws = malloc(sizeof(float) * 256 * k), *deq = malloc(sizeof(float) * k);
    void *q = malloc(evlm_row_bytes(t, k));
    for (int l = 0; l < n_lin; l++)
        for (int r = 0; r < lin[l].n; r++) {
            const float *w = lin[l].w + (size_t)r * k;
            for (int j = 0; j < k; j++) ws[j] = w[j] * s[j];
            CHECK_OK(evlm_rtn_quantize(t, ws, 1, k, q));
            evlm_dequantize_row(t, q, deq, k);
            for (int i = 0; i < N; i++) {
                double yq = 0.0, y = 0.0;
                for (int j = 0; j < k; j++) {
                    yq += (double)deq[j] *
                          (double)(x[i * k + j] / s[j]); /* the input the layer sees */
                    y += (double)w[j] * (double)x[i * k + j];
                }
                e += (yq - y) * (yq - y);
            }
        }
    free(ws), free(deq), free(q);
    return e;
}

static void test_awq_search(void) {
    enum { N = 200, k = 64 };
    static float x[N * k], wq[64 * k], wk[32 * k], wv[32 * k];
    make_x(x, N, k);
    make_w(wq, 64 * k), make_w(wk, 32 * k), make_w(wv, 32 * k);
    evlm_calib_params cp = evlm_calib_default_params();
    cp.hessian = false;
    evlm_calib *c = NULL;
    CHECK_OK(evlm_calib_new(&cp, &c));
    evlm_calib_observe(c, 0, "attn_qkv", x, N, k);
    const evlm_calib_stat *st = evlm_calib_find(c, 0, "attn_qkv");
    CHECK(st && st->n_kept == N); /* fewer rows than the reservoir: it is x itself */
    if (!st) return;
    float mean[k], s[k], ones[k];
    evlm_calib_mean_abs(st, mean);
    for (int j = 0; j < k; j++) ones[j] = 1.0f;
    evlm_awq_linear lin[3] = {{wq, 64}, {wk, 32}, {wv, 32}};
    const evlm_type types[3] = {EVLM_TYPE_Q8_0, EVLM_TYPE_Q4_0, EVLM_TYPE_Q4_1};
    evlm_pool *pool = NULL;
    CHECK_OK(evlm_pool_new(2, &pool));
    for (int ti = 0; ti < 3; ti++) {
        evlm_type t = types[ti];
        evlm_awq_result res, res2;
        float s2[k];
        CHECK_OK(evlm_awq_search(t, lin, 3, k, mean, st->rows, st->n_kept, NULL, NULL, s, &res));
        CHECK_OK(evlm_awq_search(t, lin, 3, k, mean, st->rows, st->n_kept, NULL, pool, s2, &res2));
        CHECK(memcmp(s, s2, sizeof s) == 0 &&
              res.err == res2.err); /* thread count does not matter */
        double rtn = direct_err(t, lin, 3, k, ones, x, N), awq = direct_err(t, lin, 3, k, s, x, N);
        printf("%s: alpha %.2f, rel err awq %.3e rtn %.3e (ratio %.3f)\n", evlm_type_name(t),
               (double)res.alpha, res.err / res.ref, res.err_rtn / res.ref, res.err / res.err_rtn);
        CHECK(res.err <= res.err_rtn);
        /* the search measures (Q(W diag(s)) - W diag(s)) (x / s) in float: rounding relative to the
         * error */
        CHECKF(fabs(rtn - res.err_rtn) <= 1e-4 * rtn && fabs(awq - res.err) <= 1e-4 * awq,
               "%s: search reports %.9g / %.9g, direct %.9g / %.9g", evlm_type_name(t), res.err,
               res.err_rtn, awq, rtn);
        printf("  search vs direct: %.1e %.1e\n", fabs(rtn - res.err_rtn) / rtn,
               fabs(awq - res.err) / awq);
        if (t != EVLM_TYPE_Q8_0)
            CHECKF(res.alpha > 0.0f && res.err < 0.9 * res.err_rtn, "%s: no gain",
                   evlm_type_name(t));
        /* s for that alpha, from the public formula */
        evlm_awq_scales(mean, k, res.alpha, s2);
        CHECK(memcmp(s, s2, sizeof s) == 0);
    }
    evlm_pool_free(pool);
    /* alpha 0 is exactly 1; bad arguments */
    evlm_awq_scales(mean, k, 0.0f, s);
    CHECK(memcmp(s, ones, sizeof s) == 0);
    evlm_awq_result res;
    CHECK(evlm_awq_search(EVLM_TYPE_Q4_0, lin, 3, 48, mean, x, N, NULL, NULL, s, &res) ==
          EVLM_ERR_ARG);
    CHECK(evlm_awq_search(EVLM_TYPE_Q4_0, lin, 3, k, mean, x, 0, NULL, NULL, s, &res) ==
          EVLM_ERR_ARG);
    mean[3] = NAN;
    CHECK(evlm_awq_search(EVLM_TYPE_Q4_0, lin, 3, k, mean, x, N, NULL, NULL, s, &res) ==
          EVLM_ERR_ARG);
    evlm_calib_free(c);
}

/* ---- folds ------------------------------------------------------------------------------ */

static void rmsnorm(float *y, const float *x, const float *g, int k) {
    float ss = 0.0f;
    for (int j = 0; j < k; j++) ss += x[j] * x[j];
    float inv = 1.0f / sqrtf(ss / (float)k + 1e-6f);
    for (int j = 0; j < k; j++) y[j] = x[j] * inv * g[j];
}
static void matvec(float *y, const float *w, const float *b, const float *x, int n, int k) {
    for (int r = 0; r < n; r++) {
        float acc = b ? b[r] : 0.0f;
        for (int j = 0; j < k; j++) acc += w[r * k + j] * x[j];
        y[r] = acc;
    }
}
static double rel_diff(const float *a, const float *b, int n) {
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - (double)b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}
static float *copy(const float *x, int n) {
    float *y = malloc(sizeof(float) * n);
    memcpy(y, x, sizeof(float) * n);
    return y;
}

static void test_folds(void) {
    enum { H = 64, F = 96, NH = 4, NKV = 2, HD = 16, T = 5 };
    float x[T * H], g[H], wq[H * H], mean[F], s[F];
    float wg[F * H], wu[F * H], bu[F], wd[H * F];
    float wv[NKV * HD * H], bv[NKV * HD], wo[H * NH * HD], p[NH * T * T];
    make_x(x, T, H);
    for (int j = 0; j < H; j++) g[j] = (float)(0.5 + urand());
    make_w(wq, H * H), make_w(wg, F * H), make_w(wu, F * H), make_w(bu, F), make_w(wd, H * F);
    make_w(wv, NKV * HD * H), make_w(bv, NKV * HD), make_w(wo, H * NH * HD);
    for (int i = 0; i < F; i++) mean[i] = (float)(0.01 + 3.0 * urand());
    for (int h = 0; h < NH; h++) /* causal attention probabilities, rows sum to 1 */
        for (int i = 0; i < T; i++) {
            double sum = 0.0;
            for (int t = 0; t < T; t++)
                sum += (double)(p[(h * T + i) * T + t] = t <= i ? (float)urand() : 0.0f);
            for (int t = 0; t < T; t++) p[(h * T + i) * T + t] /= (float)sum;
        }

    /* RMSNorm -> q: W diag(s) rmsnorm(x, g / s) == W rmsnorm(x, g) */
    evlm_awq_scales(mean, H, 0.7f, s);
    float *g2 = copy(g, H), *wq2 = copy(wq, H * H), y[H], a[F], b[F], o1[H], o2[H];
    CHECK_OK(evlm_awq_fold_norm(g2, H, s));
    evlm_awq_scale_cols(wq2, H, H, s);
    double worst = 0.0;
    for (int i = 0; i < T; i++) {
        rmsnorm(y, x + i * H, g, H), matvec(o1, wq, NULL, y, H, H);
        rmsnorm(y, x + i * H, g2, H), matvec(o2, wq2, NULL, y, H, H);
        worst = fmax(worst, rel_diff(o2, o1, H));
    }
    CHECKF(worst < 1e-5, "norm fold changes q by %g", worst);

    /* silu(gate) * up -> down: up rows and bias / s, down columns * s */
    evlm_awq_scales(mean, F, 0.5f, s);
    float *wu2 = copy(wu, F * H), *bu2 = copy(bu, F), *wd2 = copy(wd, H * F);
    CHECK_OK(evlm_awq_fold_rows(wu2, bu2, H, s, F));
    evlm_awq_scale_cols(wd2, H, F, s);
    worst = 0.0;
    for (int i = 0; i < T; i++)
        for (int v = 0; v < 2; v++) {
            matvec(a, wg, NULL, x + i * H, F, H);
            matvec(b, v ? wu2 : wu, v ? bu2 : bu, x + i * H, F, H);
            for (int j = 0; j < F; j++) a[j] = a[j] / (1.0f + expf(-a[j])) * b[j];
            matvec(v ? o2 : o1, v ? wd2 : wd, NULL, a, H, F);
            if (v) worst = fmax(worst, rel_diff(o2, o1, H));
        }
    CHECKF(worst < 1e-5, "up fold changes down by %g", worst);

    /* GQA attention: o_proj input channel (h, d) = sum_t p[h][i][t] v_t[h / 2][d] */
    CHECK_OK(evlm_awq_tie_heads(mean, NH, NKV, HD));
    evlm_awq_scales(mean, NH * HD, 0.6f, s);
    float *wv2 = copy(wv, NKV * HD * H), *bv2 = copy(bv, NKV * HD), *wo2 = copy(wo, H * NH * HD);
    CHECK_OK(evlm_awq_fold_v_proj(wv2, bv2, H, s, NH, NKV, HD));
    evlm_awq_scale_cols(wo2, H, NH * HD, s);
    float vv[T * NKV * HD], att[NH * HD];
    worst = 0.0;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < T; i++) {
            for (int t = 0; t < T; t++)
                matvec(vv + t * NKV * HD, v ? wv2 : wv, v ? bv2 : bv, x + t * H, NKV * HD, H);
            for (int h = 0; h < NH; h++)
                for (int d = 0; d < HD; d++) {
                    float acc = 0.0f;
                    for (int t = 0; t < T; t++)
                        acc += p[(h * T + i) * T + t] * vv[t * NKV * HD + (h / 2) * HD + d];
                    att[h * HD + d] = acc;
                }
            static float ref[T][H];
            matvec(v ? o2 : ref[i], v ? wo2 : wo, NULL, att, H, NH * HD);
            if (v) worst = fmax(worst, rel_diff(o2, ref[i], H));
        }
    CHECKF(worst < 1e-5, "v fold changes o by %g", worst);
    /* untied scales under GQA cannot be folded */
    s[HD + 3] *= 1.5f;
    CHECK(evlm_awq_fold_v_proj(wv2, bv2, H, s, NH, NKV, HD) == EVLM_ERR_ARG);
    s[HD + 3] = 0.0f;
    CHECK(evlm_awq_fold_norm(g2, H, s) == EVLM_ERR_ARG);
    free(g2), free(wq2), free(wu2), free(bu2), free(wd2), free(wv2), free(bv2), free(wo2);
}

int main(void) {
    test_calib();
    test_awq_search();
    test_folds();
    return test_done();
}
