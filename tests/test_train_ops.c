/*
 * test_train_ops.c - the training ops of train/ops.h against double-precision references
 * written here: each forward against its reference, each backward against central finite
 * differences (in double) of L = sum(dy * f(x)) through that reference, on small shapes. Also:
 * accumulate vs write conventions, NULL gradients, bitwise equality across thread counts
 * (1 and 3 threads). Not here: the SIMD kernels against ref (see the kernel section), timing.
 *
 * Tolerances: forward |op - ref| <= 1e-5 * (1 + |ref|) element-wise (float32 rounding of sums of
 * tens of terms); backward |op - fd| <= 2e-4 * (1 + max |fd|) (FD step 1e-4 in double: its
 * truncation error is ~1e-8, the rest is the op's float32 rounding).
 */
#include "core/threadpool.h"
#include "kernels/kernels.h"
#include "train/ops.h"
#include "test.h"

#include <float.h>
#include <stdint.h>

static unsigned seed = 777;
static float frand(void) {
    seed = seed * 1103515245u + 12345u;
    return ((float)((seed >> 8) & 0xffff) / 65535.0f) * 2.0f - 1.0f;
}
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * frand();
}
static double *to_d(const float *x, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = (double)x[i];
    return d;
}

/* max |a - b| / (1 + |b|) */
static double err_rel(const float *a, const double *b, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs(b[i]));
        if (!(d <= e)) e = d; /* NaN propagates */
    }
    return e;
}
/* max |a - b| / (1 + max |b|) */
static double err_grad(const float *a, const double *b, size_t n) {
    double mb = 0, e = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d;
    }
    return e / (1.0 + mb);
}

/* ---- finite differences: loss(ctx) = sum(dy * f(...)) as a function of one input array ---- */
typedef double (*loss_fn)(void *ctx);
static void fd_grad(loss_fn f, void *ctx, double *x, size_t n, double *g) {
    const double h = 1e-4;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        x[i] = v + h;
        double lp = f(ctx);
        x[i] = v - h;
        double lm = f(ctx);
        x[i] = v;
        g[i] = (lp - lm) / (2 * h);
    }
}

/* ---- linear ---- */
typedef struct {
    double *x, *w, *b, *dy;
    int m, n, k;
} lin_ctx;
static double lin_ref(const lin_ctx *c, int r, int j) {
    double s = c->b ? c->b[j] : 0;
    for (int i = 0; i < c->k; i++) s += c->x[r * c->k + i] * c->w[j * c->k + i];
    return s;
}
static double lin_loss(void *p) {
    lin_ctx *c = p;
    double L = 0;
    for (int r = 0; r < c->m; r++)
        for (int j = 0; j < c->n; j++) L += c->dy[r * c->n + j] * lin_ref(c, r, j);
    return L;
}

static void test_linear(const evlm_tops *o) {
    int m = 7, n = 5, k = 13;
    float *x = malloc(sizeof(float) * m * k), *w = malloc(sizeof(float) * n * k);
    float *b = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * m * n);
    float *dy = malloc(sizeof(float) * m * n), *dx = malloc(sizeof(float) * m * k);
    float *dw = malloc(sizeof(float) * n * k), *db = malloc(sizeof(float) * n);
    fill(x, m * k, 1), fill(w, n * k, 1), fill(b, n, 1), fill(dy, m * n, 1);
    lin_ctx c = {to_d(x, m * k), to_d(w, n * k), to_d(b, n), to_d(dy, m * n), m, n, k};
    double *ry = malloc(sizeof(double) * m * n);
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) ry[r * n + j] = lin_ref(&c, r, j);
    evlm_top_linear(o, y, x, w, b, m, n, k);
    CHECKF(err_rel(y, ry, m * n) < 1e-5, "linear fwd %g", err_rel(y, ry, m * n));
    /* backward: dx written over garbage, dw / db accumulate onto 0.5 */
    for (int i = 0; i < m * k; i++) dx[i] = 1e30f;
    for (int i = 0; i < n * k; i++) dw[i] = 0.5f;
    for (int i = 0; i < n; i++) db[i] = 0.5f;
    evlm_top_linear_bwd(o, dx, false, dw, db, dy, x, w, m, n, k);
    double *g = malloc(sizeof(double) * m * k * 2 + sizeof(double) * n * k);
    fd_grad(lin_loss, &c, c.x, m * k, g);
    CHECKF(err_grad(dx, g, m * k) < 2e-4, "linear dx %g", err_grad(dx, g, m * k));
    fd_grad(lin_loss, &c, c.w, n * k, g);
    for (int i = 0; i < n * k; i++) g[i] += 0.5;
    CHECKF(err_grad(dw, g, n * k) < 2e-4, "linear dw %g", err_grad(dw, g, n * k));
    fd_grad(lin_loss, &c, c.b, n, g);
    for (int i = 0; i < n; i++) g[i] += 0.5;
    CHECKF(err_grad(db, g, n) < 2e-4, "linear db %g", err_grad(db, g, n));
    /* dx accumulates when asked: dx (= G) + G = 2 G */
    evlm_top_linear_bwd(o, dx, true, NULL, NULL, dy, x, w, m, n, k);
    fd_grad(lin_loss, &c, c.x, m * k, g);
    for (int i = 0; i < m * k; i++) g[i] *= 2;
    CHECKF(err_grad(dx, g, m * k) < 2e-4, "linear dx acc %g", err_grad(dx, g, m * k));
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(ry), free(g);
    free(c.x), free(c.w), free(c.b), free(c.dy);
}

/* ---- norms ---- */
typedef struct {
    double *x, *w, *b, *dy;
    int m, n;
    double eps;
    bool ln;
} norm_ctx;
static void norm_ref(const norm_ctx *c, double *y) {
    for (int r = 0; r < c->m; r++) {
        const double *xr = c->x + r * c->n;
        double mu = 0, v = 0;
        if (c->ln) {
            for (int i = 0; i < c->n; i++) mu += xr[i];
            mu /= c->n;
        }
        for (int i = 0; i < c->n; i++) v += (xr[i] - mu) * (xr[i] - mu);
        double rs = 1 / sqrt(v / c->n + c->eps);
        for (int i = 0; i < c->n; i++)
            y[r * c->n + i] = (xr[i] - mu) * rs * c->w[i] + (c->b ? c->b[i] : 0);
    }
}
static double norm_loss(void *p) {
    norm_ctx *c = p;
    double *y = malloc(sizeof(double) * c->m * c->n), L = 0;
    norm_ref(c, y);
    for (int i = 0; i < c->m * c->n; i++) L += c->dy[i] * y[i];
    free(y);
    return L;
}

static void test_norm(const evlm_tops *o, bool ln) {
    int m = 5, n = 19;
    size_t mn = (size_t)m * n;
    float *x = malloc(sizeof(float) * mn), *w = malloc(sizeof(float) * n);
    float *b = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * mn);
    float *dy = malloc(sizeof(float) * mn), *dx = malloc(sizeof(float) * mn);
    float *dw = malloc(sizeof(float) * n), *db = malloc(sizeof(float) * n);
    float mean[5], rstd[5];
    fill(x, mn, 2), fill(w, n, 1), fill(b, n, 1), fill(dy, mn, 1);
    for (int i = 0; i < n; i++) x[i] += 3.0f; /* row 0 off-centre: LayerNorm's mean matters */
    norm_ctx c = {to_d(x, mn), to_d(w, n), ln ? to_d(b, n) : NULL, to_d(dy, mn), m, n, 1e-5, ln};
    double *ry = malloc(sizeof(double) * mn), *g = malloc(sizeof(double) * mn);
    norm_ref(&c, ry);
    if (ln)
        evlm_top_layernorm(o, y, mean, rstd, x, w, b, m, n, 1e-5f);
    else
        evlm_top_rmsnorm(o, y, rstd, x, w, m, n, 1e-5f);
    CHECKF(err_rel(y, ry, mn) < 1e-5, "%s fwd %g", ln ? "ln" : "rms", err_rel(y, ry, mn));
    for (size_t i = 0; i < mn; i++) dx[i] = 0.25f; /* dx accumulates */
    for (int i = 0; i < n; i++) dw[i] = db[i] = -0.5f;
    if (ln)
        evlm_top_layernorm_bwd(o, dx, dw, db, dy, x, w, mean, rstd, m, n);
    else
        evlm_top_rmsnorm_bwd(o, dx, dw, dy, x, w, rstd, m, n);
    fd_grad(norm_loss, &c, c.x, mn, g);
    for (size_t i = 0; i < mn; i++) g[i] += 0.25;
    CHECKF(err_grad(dx, g, mn) < 2e-4, "%s dx %g", ln ? "ln" : "rms", err_grad(dx, g, mn));
    fd_grad(norm_loss, &c, c.w, n, g);
    for (int i = 0; i < n; i++) g[i] -= 0.5;
    CHECKF(err_grad(dw, g, n) < 2e-4, "%s dw %g", ln ? "ln" : "rms", err_grad(dw, g, n));
    if (ln) {
        fd_grad(norm_loss, &c, c.b, n, g);
        for (int i = 0; i < n; i++) g[i] -= 0.5;
        CHECKF(err_grad(db, g, n) < 2e-4, "ln db %g", err_grad(db, g, n));
    }
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(ry), free(g);
    free(c.x), free(c.w), free(c.b), free(c.dy);
}

/* ---- swiglu / gelu ---- */
typedef struct {
    double *g, *u, *dy;
    int n;
    bool gelu;
} ew_ctx;
static double ew_ref(const ew_ctx *c, int i) {
    double g = c->g[i];
    if (c->gelu) return 0.5 * g * (1 + tanh(sqrt(2 / acos(-1.0)) * (g + 0.044715 * g * g * g)));
    return g / (1 + exp(-g)) * c->u[i];
}
static double ew_loss(void *p) {
    ew_ctx *c = p;
    double L = 0;
    for (int i = 0; i < c->n; i++) L += c->dy[i] * ew_ref(c, i);
    return L;
}

static void test_elementwise(const evlm_tops *o) {
    enum { N = 301 };
    float g[N], u[N], dy[N], y[N], dg[N], du[N];
    double ry[N], fd[N];
    fill(g, N, 5), fill(u, N, 2), fill(dy, N, 1);
    ew_ctx c = {to_d(g, N), to_d(u, N), to_d(dy, N), N, false};
    for (int i = 0; i < N; i++) ry[i] = ew_ref(&c, i);
    evlm_top_swiglu(o, y, g, u, N);
    CHECKF(err_rel(y, ry, N) < 1e-5, "swiglu fwd %g", err_rel(y, ry, N));
    evlm_top_swiglu_bwd(o, dg, du, dy, g, u, N);
    fd_grad(ew_loss, &c, c.g, N, fd);
    CHECKF(err_grad(dg, fd, N) < 2e-4, "swiglu dg %g", err_grad(dg, fd, N));
    fd_grad(ew_loss, &c, c.u, N, fd);
    CHECKF(err_grad(du, fd, N) < 2e-4, "swiglu du %g", err_grad(du, fd, N));
    c.gelu = true;
    for (int i = 0; i < N; i++) ry[i] = ew_ref(&c, i);
    evlm_top_gelu_tanh(o, y, g, N);
    CHECKF(err_rel(y, ry, N) < 1e-5, "gelu fwd %g", err_rel(y, ry, N));
    fd_grad(ew_loss, &c, c.g, N, fd);
    memcpy(dg, dy, sizeof dg);
    evlm_top_gelu_tanh_bwd(o, dg, dg, g, N); /* dx aliasing dy */
    CHECKF(err_grad(dg, fd, N) < 2e-4, "gelu dx %g", err_grad(dg, fd, N));
    memcpy(y, g, sizeof y);
    evlm_top_add(o, y, u, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += y[i] != g[i] + u[i];
    CHECK(bad == 0);
    free(c.g), free(c.u), free(c.dy);
}

/* ---- rope: forward against the rotation in double; inverse undoes it ---- */
static void test_rope(const evlm_tops *o) {
    enum { M = 4, H = 3, D = 8, P = 6 };
    float x[M * H * D], x0[M * H * D], cs[P * D / 2], sn[P * D / 2];
    double ref[M * H * D];
    int32_t pos[M] = {5, 0, 2, 5};
    for (int p = 0; p < P; p++)
        for (int i = 0; i < D / 2; i++) {
            double a = p * pow(10000.0, -2.0 * i / D);
            cs[p * D / 2 + i] = (float)cos(a), sn[p * D / 2 + i] = (float)sin(a);
        }
    fill(x, M * H * D, 1);
    memcpy(x0, x, sizeof x);
    for (int r = 0; r < M; r++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < D / 2; i++) {
                const float *v = x0 + (r * H + h) * D;
                double c = (double)cs[pos[r] * D / 2 + i], s = (double)sn[pos[r] * D / 2 + i];
                ref[(r * H + h) * D + i] = (double)v[i] * c - (double)v[i + D / 2] * s;
                ref[(r * H + h) * D + i + D / 2] = (double)v[i + D / 2] * c + (double)v[i] * s;
            }
    evlm_top_rope(o, x, M, H, D, cs, sn, pos, false);
    CHECKF(err_rel(x, ref, M * H * D) < 1e-6, "rope fwd %g", err_rel(x, ref, M * H * D));
    evlm_top_rope(o, x, M, H, D, cs, sn, pos, true);
    double *d0 = to_d(x0, M * H * D);
    CHECKF(err_rel(x, d0, M * H * D) < 1e-6, "rope inverse %g", err_rel(x, d0, M * H * D));
    free(d0);
}

/* ---- attention ---- */
typedef struct {
    double *q, *k, *v, *dout;
    const evlm_top_attn_shape *sh;
    int m;
} attn_ctx;
static void attn_ref(const attn_ctx *c, double *out, double *lse) {
    const evlm_top_attn_shape *sh = c->sh;
    int hd = sh->head_dim, nh = sh->n_heads, nkv = sh->n_kv_heads, grp = nh / nkv;
    double sc[256]; /* keys of the longest sequence */
    memset(out, 0, sizeof(double) * c->m * nh * hd);
    for (int h = 0; h < nh; h++)
        for (int s = 0; s < sh->n_seq; s++)
            for (int r = sh->seq_off[s]; r < sh->seq_off[s] + sh->seq_len[s]; r++) {
                double mx = -(double)INFINITY, sum = 0;
                int t1 = sh->causal ? r + 1 : sh->seq_off[s] + sh->seq_len[s];
                for (int t = sh->seq_off[s]; t < t1; t++) {
                    double d = -(double)INFINITY;
                    if (!sh->key_valid || sh->key_valid[t]) {
                        d = 0;
                        for (int i = 0; i < hd; i++)
                            d += c->q[(r * nh + h) * hd + i] * c->k[(t * nkv + h / grp) * hd + i];
                        d *= (double)sh->scale;
                    }
                    sc[t - sh->seq_off[s]] = d;
                    if (d > mx) mx = d;
                }
                if (lse) lse[h * c->m + r] = mx;
                if (mx == -(double)INFINITY) continue;
                for (int t = sh->seq_off[s]; t < t1; t++) {
                    double p = exp(sc[t - sh->seq_off[s]] - mx);
                    sum += p;
                    for (int i = 0; i < hd; i++)
                        out[(r * nh + h) * hd + i] += p * c->v[(t * nkv + h / grp) * hd + i];
                }
                for (int i = 0; i < hd; i++) out[(r * nh + h) * hd + i] /= sum;
                if (lse) lse[h * c->m + r] = mx + log(sum);
            }
}
static double attn_loss(void *p) {
    attn_ctx *c = p;
    size_t no = (size_t)c->m * c->sh->n_heads * c->sh->head_dim;
    double *out = malloc(sizeof(double) * no), L = 0;
    attn_ref(c, out, NULL);
    for (size_t i = 0; i < no; i++) L += c->dout[i] * out[i];
    free(out);
    return L;
}

static void test_attn(const evlm_tops *o, bool causal, bool masked, int nh, int nkv) {
    enum { M = 11, HD = 8 };
    int off[2] = {0, 4}, len[2] = {4, 7};
    uint8_t valid[M] = {1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1};
    if (causal) valid[0] = masked ? 0 : 1; /* row 0 then sees no key: out = 0 */
    evlm_top_attn_shape sh = {
        2, off, len, nh, nkv, HD, causal, masked ? valid : NULL, 1.0f / sqrtf((float)HD)};
    size_t nq = (size_t)M * nh * HD, nk = (size_t)M * nkv * HD;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *out = malloc(nq * 4);
    float *dout = malloc(nq * 4), *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    float *lse = malloc(sizeof(float) * nh * M);
    fill(q, nq, 2), fill(k, nk, 2), fill(v, nk, 1), fill(dout, nq, 1);
    attn_ctx c = {to_d(q, nq), to_d(k, nk), to_d(v, nk), to_d(dout, nq), &sh, M};
    double *ro = malloc(sizeof(double) * nq), *rl = malloc(sizeof(double) * nh * M);
    double *g = malloc(sizeof(double) * nq);
    attn_ref(&c, ro, rl);
    evlm_top_attn(o, &sh, out, lse, q, k, v);
    const char *tag = causal ? (masked ? "causal masked" : "causal") : "full";
    CHECKF(err_rel(out, ro, nq) < 1e-5, "attn %s fwd %g", tag, err_rel(out, ro, nq));
    int lbad = 0;
    for (int i = 0; i < nh * M; i++)
        lbad +=
            rl[i] == -(double)INFINITY ? lse[i] != -INFINITY : fabs((double)lse[i] - rl[i]) > 1e-5;
    CHECKF(lbad == 0, "attn %s lse: %d bad", tag, lbad);
    for (size_t i = 0; i < nq; i++) dq[i] = 1e30f; /* written, not accumulated */
    for (size_t i = 0; i < nk; i++) dk[i] = dv[i] = 1e30f;
    evlm_top_attn_bwd(o, &sh, dq, dk, dv, dout, q, k, v, out, lse);
    fd_grad(attn_loss, &c, c.q, nq, g);
    CHECKF(err_grad(dq, g, nq) < 2e-4, "attn %s dq %g", tag, err_grad(dq, g, nq));
    fd_grad(attn_loss, &c, c.k, nk, g);
    CHECKF(err_grad(dk, g, nk) < 2e-4, "attn %s dk %g", tag, err_grad(dk, g, nk));
    fd_grad(attn_loss, &c, c.v, nk, g);
    CHECKF(err_grad(dv, g, nk) < 2e-4, "attn %s dv %g", tag, err_grad(dv, g, nk));
    free(q), free(k), free(v), free(out), free(dout), free(dq), free(dk), free(dv), free(lse);
    free(c.q), free(c.k), free(c.v), free(c.dout), free(ro), free(rl), free(g);
}

/* The analytic backward in double (P from the reference forward): dq, dk, dv (dk / dv summed
 * over the group's heads). Checked against finite differences on the small shapes, then the
 * reference for the long ones (several query blocks), where differences would be too slow. */
static void attn_ref_bwd(const attn_ctx *c, double *dq, double *dk, double *dv) {
    const evlm_top_attn_shape *sh = c->sh;
    int hd = sh->head_dim, nh = sh->n_heads, nkv = sh->n_kv_heads, grp = nh / nkv, m = c->m;
    double *out = malloc(sizeof(double) * m * nh * hd), *lse = malloc(sizeof(double) * nh * m);
    attn_ref(c, out, lse);
    memset(dq, 0, sizeof(double) * m * nh * hd);
    memset(dk, 0, sizeof(double) * m * nkv * hd);
    memset(dv, 0, sizeof(double) * m * nkv * hd);
    for (int h = 0; h < nh; h++)
        for (int s = 0; s < sh->n_seq; s++)
            for (int r = sh->seq_off[s]; r < sh->seq_off[s] + sh->seq_len[s]; r++) {
                if (lse[h * m + r] == -(double)INFINITY) continue;
                const double *qr = c->q + (r * nh + h) * hd, *dor = c->dout + (r * nh + h) * hd;
                double D = 0;
                for (int i = 0; i < hd; i++) D += dor[i] * out[(r * nh + h) * hd + i];
                int t1 = sh->causal ? r + 1 : sh->seq_off[s] + sh->seq_len[s];
                for (int t = sh->seq_off[s]; t < t1; t++) {
                    if (sh->key_valid && !sh->key_valid[t]) continue;
                    const double *kt = c->k + (t * nkv + h / grp) * hd;
                    const double *vt = c->v + (t * nkv + h / grp) * hd;
                    double sc = 0, dp = 0;
                    for (int i = 0; i < hd; i++) sc += qr[i] * kt[i], dp += dor[i] * vt[i];
                    double p = exp(sc * (double)sh->scale - lse[h * m + r]);
                    double ds = p * (dp - D) * (double)sh->scale;
                    for (int i = 0; i < hd; i++) {
                        dq[(r * nh + h) * hd + i] += ds * kt[i];
                        dk[(t * nkv + h / grp) * hd + i] += ds * qr[i];
                        dv[(t * nkv + h / grp) * hd + i] += p * dor[i];
                    }
                }
            }
    free(out), free(lse);
}

/* Sequences of 150 and 70 rows (3 and 2 query blocks of 64), GQA 6 / 2, head_dim
 * 16, with padding keys: forward against attn_ref, backward against attn_ref_bwd (itself checked
 * against finite differences in test_attn_refbwd). Bound: as the FD checks. */
static void test_attn_long(const evlm_tops *o, bool causal) {
    enum { M = 220, NH = 6, NKV = 2, HD = 16 };
    int off[2] = {0, 150}, len[2] = {150, 70};
    uint8_t *valid = malloc(M);
    for (int i = 0; i < M; i++) valid[i] = (i * 7) % 11 != 4;
    evlm_top_attn_shape sh = {2, off, len, NH, NKV, HD, causal, valid, 1.0f / sqrtf((float)HD)};
    size_t nq = (size_t)M * NH * HD, nk = (size_t)M * NKV * HD;
    float *f = calloc(5 * nq + 5 * nk + NH * M, sizeof(float)); /* untouched rows stay 0 */
    float *q = f, *out = q + nq, *dout = out + nq, *dq = dout + nq, *k = dq + nq, *v = k + nk;
    float *dk = v + nk, *dv = dk + nk, *lse = dv + nk;
    fill(q, nq, 2), fill(k, nk, 2), fill(v, nk, 1), fill(dout, nq, 1);
    attn_ctx c = {to_d(q, nq), to_d(k, nk), to_d(v, nk), to_d(dout, nq), &sh, M};
    double *ro = malloc(sizeof(double) * nq), *rl = malloc(sizeof(double) * NH * M);
    double *gq = malloc(sizeof(double) * nq), *gk = malloc(sizeof(double) * nk);
    double *gv = malloc(sizeof(double) * nk);
    attn_ref(&c, ro, rl);
    attn_ref_bwd(&c, gq, gk, gv);
    evlm_top_attn(o, &sh, out, lse, q, k, v);
    CHECKF(err_rel(out, ro, nq) < 1e-5, "attn long fwd %g", err_rel(out, ro, nq));
    evlm_top_attn_bwd(o, &sh, dq, dk, dv, dout, q, k, v, out, lse);
    CHECKF(err_grad(dq, gq, nq) < 2e-4, "attn long dq %g", err_grad(dq, gq, nq));
    CHECKF(err_grad(dk, gk, nk) < 2e-4, "attn long dk %g", err_grad(dk, gk, nk));
    CHECKF(err_grad(dv, gv, nk) < 2e-4, "attn long dv %g", err_grad(dv, gv, nk));
    free(f), free(valid), free(ro), free(rl), free(gq), free(gk), free(gv);
    free(c.q), free(c.k), free(c.v), free(c.dout);
}

/* attn_ref_bwd against finite differences of attn_loss (small causal masked GQA shape) */
static void test_attn_refbwd(void) {
    enum { M = 9, NH = 4, NKV = 2, HD = 4 };
    int off[2] = {0, 3}, len[2] = {3, 6};
    uint8_t valid[M] = {1, 0, 1, 1, 1, 0, 1, 1, 1};
    evlm_top_attn_shape sh = {2, off, len, NH, NKV, HD, true, valid, 0.5f};
    size_t nq = (size_t)M * NH * HD, nk = (size_t)M * NKV * HD;
    float *f = malloc(sizeof(float) * (2 * nq + 2 * nk));
    fill(f, 2 * nq + 2 * nk, 1.5f);
    attn_ctx c = {
        to_d(f, nq), to_d(f + nq, nk), to_d(f + nq + nk, nk), to_d(f + nq + 2 * nk, nq), &sh, M};
    double *a = malloc(sizeof(double) * (nq + 2 * nk)), *g = malloc(sizeof(double) * nq);
    attn_ref_bwd(&c, a, a + nq, a + nq + nk);
    double e = 0;
    fd_grad(attn_loss, &c, c.q, nq, g);
    for (size_t i = 0; i < nq; i++) e = fmax(e, fabs(a[i] - g[i]));
    fd_grad(attn_loss, &c, c.k, nk, g);
    for (size_t i = 0; i < nk; i++) e = fmax(e, fabs(a[nq + i] - g[i]));
    fd_grad(attn_loss, &c, c.v, nk, g);
    for (size_t i = 0; i < nk; i++) e = fmax(e, fabs(a[nq + nk + i] - g[i]));
    CHECKF(e < 1e-6, "attn_ref_bwd vs finite differences %g", e);
    free(f), free(a), free(g), free(c.q), free(c.k), free(c.v), free(c.dout);
}

/* ---- the same results bitwise for 1 and 3 threads (every element one thread's sum) ---- */
static void test_threads(const evlm_tops *o1, const evlm_tops *o3) {
    /* m, n > 2 x 48: C is split over the threads (by rows for y / dx / dW alike) */
    enum { M = 130, N = 101, K = 64, NH = 4, HD = 16 };
    size_t nin = (size_t)M * K + (size_t)N * K + (size_t)M * N + N;
    size_t nout =
        (size_t)M * N + (size_t)M * K + (size_t)N * K + N + M + 4 * (size_t)M * K + NH * M;
    float *in = malloc(sizeof(float) * nin), *r[2];
    float *x = in, *w = x + M * K, *dy = w + N * K, *b = dy + M * N;
    fill(in, nin, 1);
    int off[2] = {0, 70}, len[2] = {70, 60};
    evlm_top_attn_shape sh = {2, off, len, NH, NH / 2, HD, true, NULL, 0.25f};
    const evlm_tops *ops[2] = {o1, o3};
    for (int t = 0; t < 2; t++) {
        r[t] = malloc(sizeof(float) * nout);
        memset(r[t], 0, sizeof(float) * nout);
        float *y = r[t], *dx = y + M * N, *dw = dx + M * K, *db = dw + N * K, *rs = db + N;
        float *ao = rs + M, *dq = ao + M * K, *dk = dq + M * K, *dv = dk + M * K / 2;
        float *lse = dv + M * K / 2;
        evlm_top_linear(ops[t], y, x, w, b, M, N, K);
        evlm_top_linear_bwd(ops[t], dx, false, dw, db, dy, x, w, M, N, K);
        evlm_top_rmsnorm(ops[t], dx, rs, x, w, M, K, 1e-6f);
        evlm_top_rmsnorm_bwd(ops[t], dx, dw, x, x, w, rs, M, K);
        /* attention: q = x (4 heads of 16), k / v = the first 32 columns of x's rows */
        evlm_top_attn(ops[t], &sh, ao, lse, x, w, w + 32);
        evlm_top_attn_bwd(ops[t], &sh, dq, dk, dv, x, x, w, w + 32, ao, lse);
    }
    CHECK(memcmp(r[0], r[1], sizeof(float) * nout) == 0);
    free(in), free(r[0]), free(r[1]);
}

/* ---- the training kernels of every table this CPU runs against ref ------------------------- */

/* sgemm: all four layouts, shapes around the tiles (6 / 8 x 16 / 48 / 12) and cache blocks
 * (k 256 / 576, n 384 / 768), padded leading dimensions, acc on and off. Bound per element:
 * |got - ref| <= 1e-5 * (sum_p |a b| + 1e-6) (float sums in another order). Also: a sub-block
 * of C computed alone is bitwise the same as inside the whole (the split of C over threads). */
static void test_sgemm_table(const evlm_kernels *kn, float *scratch) {
    static const int ms[] = {1, 7, 50, 97}, ns[] = {1, 17, 48, 100, 800},
                     ks[] = {1, 5, 300, 515, 700};
    int bad = 0, bad_sub = 0, runs = 0;
    for (int lay = 0; lay < 4; lay++)
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
                    int m = ms[mi], n = ns[ni], k = ks[ki];
                    if ((size_t)m * n * k > 4000000) continue;
                    bool a_t = lay & 1, b_t = lay & 2, acc = (mi + ni + ki) % 2;
                    size_t lda = (size_t)(a_t ? m : k) + 3, ldb = (size_t)(b_t ? k : n) + 5;
                    size_t ldc = (size_t)n + 2;
                    size_t na = lda * (size_t)(a_t ? k : m), nb = ldb * (size_t)(b_t ? n : k);
                    float *a = malloc(na * 4), *b = malloc(nb * 4), *c0 = malloc(ldc * m * 4);
                    float *c1 = malloc(ldc * m * 4), *c2 = malloc(ldc * m * 4);
                    fill(a, na, 1), fill(b, nb, 1), fill(c0, ldc * m, 1);
                    memcpy(c1, c0, ldc * m * 4);
                    memcpy(c2, c0, ldc * m * 4);
                    evlm_kernels_ref.sgemm(c0, ldc, a, lda, a_t, b, ldb, b_t, m, n, k, acc, NULL);
                    kn->sgemm(c1, ldc, a, lda, a_t, b, ldb, b_t, m, n, k, acc, scratch);
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++) {
                            double mag = 1e-6;
                            for (int p = 0; p < k; p++)
                                mag += fabs((double)(a_t ? a[p * lda + i] : a[i * lda + p]) *
                                            (double)(b_t ? b[j * ldb + p] : b[p * ldb + j]));
                            if (acc) mag += fabs((double)c2[i * ldc + j]);
                            double e = fabs((double)c1[i * ldc + j] - (double)c0[i * ldc + j]);
                            if (!(e <= 1e-5 * mag)) bad++;
                        }
                    for (size_t i = n; i < ldc; i++)
                        bad += c1[(m - 1) * ldc + i] != c2[(m - 1) * ldc + i];
                    /* rows [i0, m) x columns [j0, n) alone */
                    int i0 = m / 3, j0 = n / 2;
                    const float *as = a_t ? a + i0 : a + (size_t)i0 * lda;
                    const float *bs = b_t ? b + (size_t)j0 * ldb : b + j0;
                    kn->sgemm(c2 + (size_t)i0 * ldc + j0, ldc, as, lda, a_t, bs, ldb, b_t, m - i0,
                              n - j0, k, acc, scratch);
                    for (int i = i0; i < m; i++)
                        for (int j = j0; j < n; j++) bad_sub += c2[i * ldc + j] != c1[i * ldc + j];
                    runs++;
                    free(a), free(b), free(c0), free(c1), free(c2);
                }
    CHECKF(bad == 0, "%s sgemm: %d elements off ref (%d shapes)", kn->name, bad, runs);
    CHECKF(bad_sub == 0, "%s sgemm: %d elements of a sub-block differ", kn->name, bad_sub);
}

/* The element-wise training kernels against ref: |got - ref| <= tol * (1 + |ref|); n around
 * the lane counts; inputs up to +-12 (exp's range) for swiglu / gelu. */
static void test_ew_table(const evlm_kernels *kn) {
    static const int lens[] = {1, 7, 8, 15, 16, 17, 33, 576, 1031};
    const evlm_kernels *r = &evlm_kernels_ref;
    int bad[5] = {0};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        int n = lens[li];
        float *x = malloc(n * 4), *dy = malloc(n * 4), *w = malloc(n * 4), *u = malloc(n * 4);
        float *o1 = malloc(n * 4), *o2 = malloc(n * 4), *p1 = malloc(n * 4), *p2 = malloc(n * 4);
        fill(x, n, 3), fill(dy, n, 1), fill(w, n, 1), fill(u, n, 2);
        fill(o1, n, 1);
        memcpy(o2, o1, n * 4);
        r->rmsnorm_bwd(o1, dy, x, w, 0.7f, n);
        kn->rmsnorm_bwd(o2, dy, x, w, 0.7f, n);
        for (int i = 0; i < n; i++) bad[0] += !(fabsf(o1[i] - o2[i]) <= 1e-5f * (1 + fabsf(o1[i])));
        fill(o1, n, 1);
        memcpy(o2, o1, n * 4);
        r->layernorm_bwd(o1, dy, x, w, 0.3f, 0.9f, n);
        kn->layernorm_bwd(o2, dy, x, w, 0.3f, 0.9f, n);
        for (int i = 0; i < n; i++) bad[1] += !(fabsf(o1[i] - o2[i]) <= 1e-5f * (1 + fabsf(o1[i])));
        for (int i = 0; i < n; i++) x[i] *= 4.0f;
        r->swiglu_bwd(o1, p1, dy, x, u, n);
        kn->swiglu_bwd(o2, p2, dy, x, u, n);
        for (int i = 0; i < n; i++)
            bad[2] += !(fabsf(o1[i] - o2[i]) <= 1e-5f * (1 + fabsf(o1[i])) &&
                        fabsf(p1[i] - p2[i]) <= 1e-5f * (1 + fabsf(p1[i])));
        r->gelu_tanh_bwd(o1, dy, x, n);
        memcpy(o2, dy, n * 4);
        kn->gelu_tanh_bwd(o2, o2, x, n); /* aliasing dx = dy */
        for (int i = 0; i < n; i++) bad[3] += !(fabsf(o1[i] - o2[i]) <= 1e-5f * (1 + fabsf(o1[i])));
        /* exp_sum: a max of 0, entries down to -100 and masked ones (-inf): exact zeros */
        for (int i = 0; i < n; i++) o1[i] = i % 5 == 3 ? -INFINITY : -fabsf(x[i]) * 8.0f;
        memcpy(o2, o1, n * 4);
        float s1 = r->exp_sum(o1, n, 0.5f), s2 = kn->exp_sum(o2, n, 0.5f);
        bad[4] += !(fabsf(s1 - s2) <= 1e-5f * s1);
        for (int i = 0; i < n; i++)
            bad[4] +=
                !(fabsf(o1[i] - o2[i]) <= 2e-6f * o1[i] + 1e-30f) || (i % 5 == 3 && o2[i] != 0);
        free(x), free(dy), free(w), free(u), free(o1), free(o2), free(p1), free(p2);
    }
    CHECKF(bad[0] == 0, "%s rmsnorm_bwd: %d off", kn->name, bad[0]);
    CHECKF(bad[1] == 0, "%s layernorm_bwd: %d off", kn->name, bad[1]);
    CHECKF(bad[2] == 0, "%s swiglu_bwd: %d off", kn->name, bad[2]);
    CHECKF(bad[3] == 0, "%s gelu_tanh_bwd: %d off", kn->name, bad[3]);
    CHECKF(bad[4] == 0, "%s exp_sum: %d off", kn->name, bad[4]);
}

static void test_tables(void) {
    static const char *const names[] = {"ref", "avx2", "avx512", "avx512vnni", "neon"};
    float *scratch = malloc(EVLM_SGEMM_SCRATCH * sizeof(float));
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const evlm_kernels *kn = evlm_kernels_by_name(names[i]);
        if (!kn) {
            printf("table %s: not built or not supported by this CPU, skipped\n", names[i]);
            continue;
        }
        test_sgemm_table(kn, scratch);
        test_ew_table(kn);
    }
    free(scratch);
}

int main(void) {
    evlm_pool *p1 = NULL, *p3 = NULL;
    CHECK_OK(evlm_pool_new(1, &p1));
    CHECK_OK(evlm_pool_new(3, &p3));
    if (!p1 || !p3) return test_done();
    evlm_tops o1, o3;
    CHECK_OK(evlm_tops_init(&o1, p1, NULL, 64, 150, 16));
    CHECK_OK(evlm_tops_init(&o3, p3, NULL, 64, 150, 16));
    const evlm_tops *os[2] = {&o1, &o3};
    for (int t = 0; t < 2; t++) {
        test_linear(os[t]);
        test_norm(os[t], false);
        test_norm(os[t], true);
        test_elementwise(os[t]);
        test_rope(os[t]);
        test_attn(os[t], false, false, 4, 2);
        test_attn(os[t], true, false, 4, 2);
        test_attn(os[t], true, true, 6, 2);
        test_attn(os[t], false, true, 2, 2);
        test_attn_long(os[t], true);
        test_attn_long(os[t], false);
    }
    test_attn_refbwd();
    /* no pool: the ops run on the calling thread */
    evlm_tops o0;
    CHECK_OK(evlm_tops_init(&o0, NULL, NULL, 64, 150, 16));
    test_linear(&o0);
    test_attn_long(&o0, true);
    evlm_tops_release(&o0);
    test_threads(&o1, &o3);
    test_tables();
    evlm_tops_release(&o1);
    evlm_tops_release(&o3);
    evlm_pool_free(p1);
    evlm_pool_free(p3);
    return test_done();
}
