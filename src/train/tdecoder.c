/*
 * tdecoder.c - the Llama-family decoder's training forward and backward (tdecoder.h): parameter
 * binding by Hugging Face name, the arena, the layer walk over the ops of ops.h.
 * Not here: the ops' loops (ops.c), the losses (loss.c), vision (tvision.c), batches (tmodel.c).
 */
#include "train/tdecoder.h"

#include "core/status.h"
#include "model/decoder.h"
#include "train/qat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_names[EVLM_TD_COUNT] = {
    "input_layernorm.weight",  "post_attention_layernorm.weight",
    "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",    "mlp.up_proj.weight",
    "mlp.down_proj.weight",    "self_attn.q_proj.bias",
    "self_attn.k_proj.bias",   "self_attn.v_proj.bias",
    "self_attn.o_proj.bias",   "mlp.gate_proj.bias",
    "mlp.up_proj.bias",        "mlp.down_proj.bias"};

/* matrix i (0..6): rows (outputs) and cols (inputs) */
static void mat_shape(const evlm_tdecoder *d, int i, int *rows, int *cols) {
    const int r[7] = {d->QD, d->KD, d->KD, d->H, d->F, d->F, d->H};
    const int c[7] = {d->H, d->H, d->H, d->QD, d->H, d->H, d->F};
    *rows = r[i];
    *cols = c[i];
}

static evlm_status bind(evlm_tdecoder *d, const char *name, size_t n, bool optional,
                        const evlm_tparam **out) {
    const evlm_tparam *p = evlm_tparams_find(d->tp, name);
    *out = p;
    if (!p) {
        if (optional) return EVLM_OK;
        return evlm__fail(EVLM_ERR_FORMAT, "parameter '%s' is missing", name);
    }
    if (p->n != n)
        return evlm__fail(EVLM_ERR_FORMAT, "parameter '%s' has %zu elements, the config says %zu",
                          name, p->n, n);
    return EVLM_OK;
}

/* Binds matrix j's factors "<pre><stem>.lowrank_a" A [r, cols] and ".lowrank_b" B [rows, r]
 * of layer l when present (the runtime checked them too: these are the parameters' own shapes). */
static evlm_status bind_factors(evlm_tdecoder *d, const char *pre, int l, int j, int rows,
                                int cols) {
    char na[256], nb[256];
    snprintf(na, sizeof na, "%slayers.%d.%s.lowrank_a", pre, l, evlm_decoder_matrix_stem(j));
    snprintf(nb, sizeof nb, "%slayers.%d.%s.lowrank_b", pre, l, evlm_decoder_matrix_stem(j));
    const evlm_tparam *a = evlm_tparams_find(d->tp, na), *b = evlm_tparams_find(d->tp, nb);
    if (!a && !b) return EVLM_OK;
    if (!a || !b)
        return evlm__fail(EVLM_ERR_FORMAT, "parameter '%s' comes without '%s'", a ? na : nb,
                          a ? nb : na);
    const int64_t r = a->shape[0], max_r = rows < cols ? rows : cols;
    if (a->n_dims != 2 || a->shape[1] != cols || r < 1 || r > max_r)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "parameter '%s' is not [r, %d] with r in [1, %lld] (a low-rank factor A)",
                          na, cols, (long long)max_r);
    if (b->n_dims != 2 || b->shape[0] != rows || b->shape[1] != r)
        return evlm__fail(
            EVLM_ERR_FORMAT,
            "parameter '%s' is not [%d, %lld] (the factor B of rank %lld beside '%s')", nb, rows,
            (long long)r, (long long)r, na);
    d->lr[l][j][0] = a;
    d->lr[l][j][1] = b;
    d->n_factored++;
    if (r > d->lr_max_rank) d->lr_max_rank = (int)r;
    return EVLM_OK;
}

static size_t al(size_t n) {
    return (n + 15) & ~(size_t)15;
}

evlm_status evlm_tdecoder_init(evlm_tdecoder *d, const evlm_decoder *dec, evlm_tparams *tp,
                               int max_tokens) {
    memset(d, 0, sizeof *d);
    const evlm_decoder_config *c = &dec->cfg;
    if (c->mrope_section[0] || c->mrope_section[1] || c->mrope_section[2])
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "the M-RoPE backward is not built");
    if (max_tokens < 1 || max_tokens > (1 << 20))
        return evlm__fail(EVLM_ERR_ARG, "max_tokens %d is outside [1, 2^20]", max_tokens);
    d->cfg = *c;
    d->tp = tp;
    d->L = c->n_layers;
    d->H = c->hidden_size;
    d->F = c->intermediate_size;
    d->HD = c->head_dim;
    d->NH = c->n_heads;
    d->NKV = c->n_kv_heads;
    d->QD = d->NH * d->HD;
    d->KD = d->NKV * d->HD;
    d->V = c->vocab_size;
    d->max_tokens = max_tokens;
    if (d->HD % 2 || d->HD > 1024 || d->NKV < 1 || d->NH % d->NKV)
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "head_dim %d with %d / %d heads cannot be trained",
                          d->HD, d->NH, d->NKV);
    d->lp = calloc((size_t)d->L, sizeof *d->lp);
    d->lr = calloc((size_t)d->L, sizeof *d->lr);
    if (!d->lp || !d->lr) {
        evlm_tdecoder_release(d);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    char name[256];
    const size_t H = (size_t)d->H;
    evlm_status st = EVLM_OK;
    for (int l = 0; l < d->L && st == EVLM_OK; l++) {
        for (int i = 0; i < EVLM_TD_COUNT && st == EVLM_OK; i++) {
            size_t n;
            int rows, cols;
            if (i < EVLM_TD_Q)
                n = H;
            else if (i < EVLM_TD_BQ) {
                mat_shape(d, i - EVLM_TD_Q, &rows, &cols);
                n = (size_t)rows * cols;
                st = bind_factors(d, dec->prefix, l, i - EVLM_TD_Q, rows, cols);
                if (st != EVLM_OK) break;
            } else {
                mat_shape(d, i - EVLM_TD_BQ, &rows, &cols);
                n = (size_t)rows;
            }
            snprintf(name, sizeof name, "%slayers.%d.%s", dec->prefix, l, k_names[i]);
            /* a factored matrix may go without its dense weight */
            const bool factored = i >= EVLM_TD_Q && i < EVLM_TD_BQ && d->lr[l][i - EVLM_TD_Q][0];
            st = bind(d, name, n, i >= EVLM_TD_BQ || factored, &d->lp[l][i]);
        }
    }
    if (st == EVLM_OK) {
        snprintf(name, sizeof name, "%sembed_tokens.weight", dec->prefix);
        st = bind(d, name, (size_t)d->V * H, false, &d->embed);
    }
    if (st == EVLM_OK) {
        snprintf(name, sizeof name, "%snorm.weight", dec->prefix);
        st = bind(d, name, H, false, &d->norm);
    }
    if (st == EVLM_OK) {
        st = bind(d, "lm_head.weight", (size_t)d->V * H, true, &d->head);
        if (st == EVLM_OK && !d->head) d->head = d->embed;
    }
    if (st != EVLM_OK) {
        evlm_tdecoder_release(d);
        return st;
    }

    const size_t T = (size_t)max_tokens, L = (size_t)d->L, QD = (size_t)d->QD, KD = (size_t)d->KD,
                 F = (size_t)d->F, half = (size_t)d->HD / 2;
    size_t maxw = H > QD ? H : QD;
    if (F > maxw) maxw = F;
    const size_t sizes[] = {
        T * half,
        T * half, /* rope */
        (L + 1) * T * H,
        L * T * H,
        L * T,
        L * T, /* x, xmid, rstd1, rstd2 */
        L * T * QD,
        L * T * KD,
        L * T * KD,
        L * T * QD, /* q, k, v, att */
        L * (size_t)d->NH * T,
        L * T * F,
        L * T * F, /* lse, gate, up */
        T * H,
        T * maxw,
        T * H,
        T * H, /* xn, tmp, dx, dxn */
        T * QD,
        T * KD,
        T * KD,
        T * QD, /* dq, dk, dv, datt */
        T * F,
        T * F,
        T * F,
        T * F,
        T, /* dg, du, hb, dh, rtmp */
    };
    float **dst[] = {&d->rope_cos, &d->rope_sin, &d->x,   &d->xmid, &d->rstd1, &d->rstd2, &d->q,
                     &d->k,        &d->v,        &d->att, &d->lse,  &d->gate,  &d->up,    &d->xn,
                     &d->tmp,      &d->dx,       &d->dxn, &d->dq,   &d->dk,    &d->dv,    &d->datt,
                     &d->dg,       &d->du,       &d->hb,  &d->dh,   &d->rtmp};
    _Static_assert(sizeof sizes / sizeof *sizes == sizeof dst / sizeof *dst, "arena table");
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += al(sizes[i]);
    if (total > ((size_t)1 << 38)) {
        evlm_tdecoder_release(d);
        return evlm__fail(EVLM_ERR_NOMEM, "%d tokens need too much activation memory", max_tokens);
    }
    d->arena_bytes = total * sizeof(float);
    d->arena = aligned_alloc(64, d->arena_bytes);
    if (!d->arena) {
        evlm_tdecoder_release(d);
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB of activations for %d tokens",
                          d->arena_bytes >> 20, max_tokens);
    }
    memset(d->arena, 0, d->arena_bytes);
    if (d->n_factored > 0) { /* the low-rank paths' work, beside the arena */
        const size_t nt = al(T * (size_t)d->lr_max_rank), ny = al(T * maxw);
        d->lr_t = aligned_alloc(64, (2 * nt + ny) * sizeof(float));
        if (!d->lr_t) {
            evlm_tdecoder_release(d);
            return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate the low-rank work for %d tokens",
                              max_tokens);
        }
        d->lr_dt = d->lr_t + nt;
        d->lr_y = d->lr_dt + nt;
    }
    float *p = d->arena;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *dst[i] = p;
        p += al(sizes[i]);
    }
    float inv[512];
    evlm_decoder_rope_inv_freq(dec, inv);
    for (size_t pos = 0; pos < T; pos++)
        for (size_t i = 0; i < half; i++) {
            float a = (float)pos * inv[i]; /* torch: a float32 product */
            d->rope_cos[pos * half + i] = (float)cos((double)a);
            d->rope_sin[pos * half + i] = (float)sin((double)a);
        }
    return EVLM_OK;
}

void evlm_tdecoder_release(evlm_tdecoder *d) {
    free(d->lp);
    free(d->lr);
    free(d->lr_t);
    free(d->arena);
    free(d->fq);
    memset(d, 0, sizeof *d);
}

/* ---- parameter access ---------------------------------------------------------------------- */

static const float *pw(const evlm_tdecoder *d, const evlm_tparam *p) {
    if (p && d->qat) return evlm_tqat_w(d->qat, p);
    return p ? d->tp->w + p->off : NULL;
}

static float *pg(const evlm_tdecoder *d, const evlm_tparam *p) {
    if (p && d->qat) {
        float *g = evlm_tqat_g(d->qat, p); /* LSQ: the rounded matrix's gradient */
        if (g) return g;
    }
    return p && p->trainable ? d->tp->g + p->off : NULL;
}

/* The offset of matrix i of layer l in fq, or -1 when it is not fake-quantized. */
static long fq_off(const evlm_tdecoder *d, int l, int i) {
    size_t off = 0;
    for (int ll = 0; ll <= l; ll++)
        for (int j = 0; j < 7; j++) {
            int rows, cols;
            mat_shape(d, j, &rows, &cols);
            if (!evlm_tqat_applies(cols)) {
                if (ll == l && j == i) return -1;
                continue;
            }
            if (ll == l && j == i) return (long)off;
            off += (size_t)rows * cols;
        }
    return -1;
}

/* The weights layer l's matrix i runs with: its fake-quantized copy under QAT. */
static const float *mw(const evlm_tdecoder *d, int l, int i) {
    if (d->fq_on) {
        long off = fq_off(d, l, i);
        if (off >= 0) return d->fq + off;
    }
    return pw(d, d->lp[l][EVLM_TD_Q + i]);
}

evlm_status evlm_tdecoder_set_qat(evlm_tdecoder *d, const evlm_tops *o, bool on) {
    d->fq_on = false;
    if (!on) return EVLM_OK;
    if (d->n_factored > 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "fake quantization of a decoder with low-rank factored matrices (%d) is "
                          "not built: quantization-aware training needs a dense model",
                          d->n_factored);
    if (!d->fq) {
        size_t n = 0;
        for (int j = 0; j < 7; j++) {
            int rows, cols;
            mat_shape(d, j, &rows, &cols);
            if (evlm_tqat_applies(cols)) n += (size_t)rows * cols;
        }
        n *= (size_t)d->L;
        d->fq = aligned_alloc(64, al(n ? n : 1) * sizeof(float));
        if (!d->fq)
            return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB of fake-quantized matrices",
                              (n * sizeof(float)) >> 20);
        d->fq_floats = n;
    }
    for (int l = 0; l < d->L; l++)
        for (int j = 0; j < 7; j++) {
            int rows, cols;
            mat_shape(d, j, &rows, &cols);
            long off = fq_off(d, l, j);
            if (off >= 0)
                evlm_tqat_fake_quant(o, d->fq + off, pw(d, d->lp[l][EVLM_TD_Q + j]), rows, cols);
        }
    d->fq_on = true;
    return EVLM_OK;
}

/* ---- the linears, dense or factored ---------------------------------------------------------- */

/* y (n, rows) = x (n, cols) @ W^T + b for layer l's matrix i; factored: B (A x) + b, or
 * W x + b + B (A x) beside a dense W (the runtime's order of the sums, model/decoder.c). */
static void mlinear(const evlm_tdecoder *d, const evlm_tops *o, int l, int i, float *y,
                    const float *x, const evlm_tparam *bias, int n) {
    int rows, cols;
    mat_shape(d, i, &rows, &cols);
    const evlm_tparam *A = d->lr[l][i][0], *B = d->lr[l][i][1];
    const float *w = mw(d, l, i);
    if (!A) {
        evlm_top_linear(o, y, x, w, pw(d, bias), n, rows, cols);
        return;
    }
    const int r = (int)A->shape[0];
    evlm_top_linear(o, d->lr_t, x, pw(d, A), NULL, n, r, cols); /* t (n, r) = x A^T */
    if (!w) {
        evlm_top_linear(o, y, d->lr_t, pw(d, B), pw(d, bias), n, rows, r);
        return;
    }
    evlm_top_linear(o, y, x, w, pw(d, bias), n, rows, cols);
    evlm_top_linear(o, d->lr_y, d->lr_t, pw(d, B), NULL, n, rows, r);
    evlm_top_add(o, y, d->lr_y, (size_t)n * rows);
}

/* The backward of mlinear from dy (n, rows) and its input x: dx (n, cols) written (accumulated
 * when dx_acc); the gradients of W, b, A, B accumulated where trainable:
 * dW += dy^T x, db += sums of dy, dB += dy^T t, dt = dy B, dA += dt^T x, dx += dy W + dt A
 * with t = A x recomputed (when B learns). */
static void mlinear_bwd(const evlm_tdecoder *d, const evlm_tops *o, int l, int i, float *dx,
                        bool dx_acc, const evlm_tparam *bias, const float *dy, const float *x,
                        int n) {
    int rows, cols;
    mat_shape(d, i, &rows, &cols);
    const evlm_tparam *A = d->lr[l][i][0], *B = d->lr[l][i][1];
    const float *w = mw(d, l, i);
    float *db = pg(d, bias);
    if (w) {
        evlm_top_linear_bwd(o, dx, dx_acc, pg(d, d->lp[l][EVLM_TD_Q + i]), db, dy, x, w, n, rows,
                            cols);
        if (!A) return;
        dx_acc = true;
        db = NULL;
    }
    const int r = (int)A->shape[0];
    float *dB = pg(d, B);
    if (dB) evlm_top_linear(o, d->lr_t, x, pw(d, A), NULL, n, r, cols);
    evlm_top_linear_bwd(o, d->lr_dt, false, dB, db, dy, d->lr_t, pw(d, B), n, rows, r);
    evlm_top_linear_bwd(o, dx, dx_acc, pg(d, A), NULL, d->lr_dt, x, pw(d, A), n, r, cols);
}

/* Whether layer l has a trainable parameter (factors included). */
static bool layer_learns(const evlm_tdecoder *d, int l) {
    for (int i = 0; i < EVLM_TD_COUNT; i++)
        if (pg(d, d->lp[l][i])) return true;
    for (int i = 0; i < 7; i++)
        if (pg(d, d->lr[l][i][0]) || pg(d, d->lr[l][i][1])) return true;
    return false;
}

/* ---- forward ------------------------------------------------------------------------------- */

static evlm_top_attn_shape attn_shape(const evlm_tdecoder *d, const evlm_tdec_rows *r) {
    evlm_top_attn_shape sh = {r->n_seq, r->seq_off, r->seq_len,
                              d->NH,    d->NKV,     d->HD,
                              true,     NULL,       1.0f / sqrtf((float)d->HD)};
    return sh;
}

evlm_status evlm_tdecoder_forward(evlm_tdecoder *d, const evlm_tops *o, const evlm_tdec_rows *r) {
    const int n = r->n, H = d->H, QD = d->QD, KD = d->KD, F = d->F;
    const size_t T = (size_t)d->max_tokens;
    const float eps = d->cfg.rms_norm_eps;
    if (n < 1 || n > d->max_tokens)
        return evlm__fail(EVLM_ERR_ARG, "a batch of %d rows: the model was planned for at most %d",
                          n, d->max_tokens);
    int img = 0;
    const float *embed = pw(d, d->embed);
    for (int i = 0; i < n; i++)
        if (r->pos[i] < 0 || r->pos[i] >= d->max_tokens)
            return evlm__fail(EVLM_ERR_RANGE, "row %d: position %d is outside [0, %d)", i,
                              r->pos[i], d->max_tokens);
    for (int i = 0; i < n; i++) {
        float *x = d->x + (size_t)i * H;
        if (r->image_token >= 0 && r->ids[i] == r->image_token && r->img) {
            if (img >= r->n_img)
                return evlm__fail(EVLM_ERR_ARG,
                                  "more image tokens in the batch than image feature rows (%d)",
                                  r->n_img);
            memcpy(x, r->img + (size_t)img++ * H, sizeof(float) * H);
        } else {
            if (r->ids[i] < 0 || r->ids[i] >= d->V)
                return evlm__fail(EVLM_ERR_RANGE,
                                  "row %d: token id %d is outside the vocabulary [0, %d)", i,
                                  r->ids[i], d->V);
            memcpy(x, embed + (size_t)r->ids[i] * H, sizeof(float) * H);
        }
    }
    if (r->img && img != r->n_img)
        return evlm__fail(EVLM_ERR_ARG, "%d image feature rows for %d image tokens", r->n_img, img);
    const evlm_top_attn_shape sh = attn_shape(d, r);
    for (int l = 0; l < d->L; l++) {
        const evlm_tparam *const *P = d->lp[l];
        float *X = d->x + (size_t)l * T * H, *Xn = d->x + (size_t)(l + 1) * T * H;
        float *xm = d->xmid + (size_t)l * T * H;
        float *q = d->q + (size_t)l * T * QD, *k = d->k + (size_t)l * T * KD,
              *v = d->v + (size_t)l * T * KD, *att = d->att + (size_t)l * T * QD;
        float *g = d->gate + (size_t)l * T * F, *u = d->up + (size_t)l * T * F;
        evlm_top_rmsnorm(o, d->xn, d->rstd1 + (size_t)l * T, X, pw(d, P[EVLM_TD_ATTN_NORM]), n, H,
                         eps);
        mlinear(d, o, l, 0, q, d->xn, P[EVLM_TD_BQ], n);
        mlinear(d, o, l, 1, k, d->xn, P[EVLM_TD_BK], n);
        mlinear(d, o, l, 2, v, d->xn, P[EVLM_TD_BV], n);
        evlm_top_rope(o, q, n, d->NH, d->HD, d->rope_cos, d->rope_sin, r->pos, false);
        evlm_top_rope(o, k, n, d->NKV, d->HD, d->rope_cos, d->rope_sin, r->pos, false);
        evlm_top_attn(o, &sh, att, d->lse + (size_t)l * d->NH * T, q, k, v);
        mlinear(d, o, l, 3, d->tmp, att, P[EVLM_TD_BO], n);
        memcpy(xm, X, sizeof(float) * (size_t)n * H);
        evlm_top_add(o, xm, d->tmp, (size_t)n * H);
        evlm_top_rmsnorm(o, d->xn, d->rstd2 + (size_t)l * T, xm, pw(d, P[EVLM_TD_FFN_NORM]), n, H,
                         eps);
        mlinear(d, o, l, 4, g, d->xn, P[EVLM_TD_BGATE], n);
        mlinear(d, o, l, 5, u, d->xn, P[EVLM_TD_BUP], n);
        evlm_top_swiglu(o, d->hb, g, u, (size_t)n * F);
        mlinear(d, o, l, 6, d->tmp, d->hb, P[EVLM_TD_BDOWN], n);
        memcpy(Xn, xm, sizeof(float) * (size_t)n * H);
        evlm_top_add(o, Xn, d->tmp, (size_t)n * H);
    }
    return EVLM_OK;
}

/* ---- head ---------------------------------------------------------------------------------- */

void evlm_tdecoder_final_norm(const evlm_tdecoder *d, const evlm_tops *o, const int *rows, int nr,
                              float *xg, float *xf, float *rstd) {
    const size_t H = (size_t)d->H;
    const float *xl = d->x + (size_t)d->L * d->max_tokens * H;
    for (int i = 0; i < nr; i++) memcpy(xg + i * H, xl + (size_t)rows[i] * H, sizeof(float) * H);
    evlm_top_rmsnorm(o, xf, rstd, xg, pw(d, d->norm), nr, d->H, d->cfg.rms_norm_eps);
}

void evlm_tdecoder_logits(const evlm_tdecoder *d, const evlm_tops *o, const float *xf, int nr,
                          float *z) {
    evlm_top_linear(o, z, xf, pw(d, d->head), NULL, nr, d->V, d->H);
}

void evlm_tdecoder_logits_bwd(const evlm_tdecoder *d, const evlm_tops *o, const float *dz,
                              const float *xf, int nr, float *dxf) {
    evlm_top_linear_bwd(o, dxf, false, pg(d, d->head), NULL, dz, xf, pw(d, d->head), nr, d->V,
                        d->H);
}

void evlm_tdecoder_bwd_begin(evlm_tdecoder *d, int n) {
    memset(d->dx, 0, sizeof(float) * (size_t)n * d->H);
}

void evlm_tdecoder_final_norm_bwd(evlm_tdecoder *d, const evlm_tops *o, const int *rows, int nr,
                                  const float *dxf, const float *xg, const float *rstd,
                                  float *dxg) {
    const size_t H = (size_t)d->H;
    memset(dxg, 0, sizeof(float) * (size_t)nr * H);
    evlm_top_rmsnorm_bwd(o, dxg, pg(d, d->norm), dxf, xg, pw(d, d->norm), rstd, nr, d->H);
    for (int i = 0; i < nr; i++) {
        float *dst = d->dx + (size_t)rows[i] * H;
        const float *src = dxg + i * H;
        for (size_t j = 0; j < H; j++) dst[j] += src[j];
    }
}

/* ---- backward ------------------------------------------------------------------------------ */

void evlm_tdecoder_backward(evlm_tdecoder *d, const evlm_tops *o, const evlm_tdec_rows *r,
                            evlm_tdec_hidden_fn hid, void *hid_user, float *dimg) {
    evlm_tdecoder_backward_ex(d, o, r, hid, hid_user, NULL, NULL, dimg);
}

void evlm_tdecoder_backward_ex(evlm_tdecoder *d, const evlm_tops *o, const evlm_tdec_rows *r,
                               evlm_tdec_hidden_fn hid, void *hid_user, evlm_tdec_attn_fn attn,
                               void *attn_user, float *dimg) {
    const int n = r->n, H = d->H, QD = d->QD, KD = d->KD, F = d->F;
    const size_t T = (size_t)d->max_tokens;
    const float eps = d->cfg.rms_norm_eps;
    const evlm_top_attn_shape sh = attn_shape(d, r);
    if (hid) hid(hid_user, d->L, d->x + (size_t)d->L * T * H, d->dx);
    /* the walk stops below the lowest layer that has something to learn, unless the embedding
     * or the image rows (the vision tower) want the stream's gradient */
    int stop = 0;
    if (!pg(d, d->embed) && !(dimg && r->img)) {
        stop = d->L;
        for (int l = 0; l < d->L && stop == d->L; l++)
            if (layer_learns(d, l)) stop = l;
    }
    for (int l = d->L - 1; l >= stop; l--) {
        const evlm_tparam *const *P = d->lp[l];
        const float *X = d->x + (size_t)l * T * H, *xm = d->xmid + (size_t)l * T * H;
        const float *q = d->q + (size_t)l * T * QD, *k = d->k + (size_t)l * T * KD,
                    *v = d->v + (size_t)l * T * KD, *att = d->att + (size_t)l * T * QD;
        const float *g = d->gate + (size_t)l * T * F, *u = d->up + (size_t)l * T * F;
        /* MLP */
        evlm_top_swiglu(o, d->hb, g, u, (size_t)n * F);
        mlinear_bwd(d, o, l, 6, d->dh, false, P[EVLM_TD_BDOWN], d->dx, d->hb, n);
        evlm_top_swiglu_bwd(o, d->dg, d->du, d->dh, g, u, (size_t)n * F);
        evlm_top_rmsnorm(o, d->xn, d->rtmp, xm, pw(d, P[EVLM_TD_FFN_NORM]), n, H, eps);
        mlinear_bwd(d, o, l, 4, d->dxn, false, P[EVLM_TD_BGATE], d->dg, d->xn, n);
        mlinear_bwd(d, o, l, 5, d->dxn, true, P[EVLM_TD_BUP], d->du, d->xn, n);
        evlm_top_rmsnorm_bwd(o, d->dx, pg(d, P[EVLM_TD_FFN_NORM]), d->dxn, xm,
                             pw(d, P[EVLM_TD_FFN_NORM]), d->rstd2 + (size_t)l * T, n, H);
        /* attention */
        mlinear_bwd(d, o, l, 3, d->datt, false, P[EVLM_TD_BO], d->dx, att, n);
        evlm_top_attn_bwd(o, &sh, d->dq, d->dk, d->dv, d->datt, q, k, v, att,
                          d->lse + (size_t)l * d->NH * T);
        if (attn) attn(attn_user, l, d->dq, d->dk);
        evlm_top_rope(o, d->dq, n, d->NH, d->HD, d->rope_cos, d->rope_sin, r->pos, true);
        evlm_top_rope(o, d->dk, n, d->NKV, d->HD, d->rope_cos, d->rope_sin, r->pos, true);
        evlm_top_rmsnorm(o, d->xn, d->rtmp, X, pw(d, P[EVLM_TD_ATTN_NORM]), n, H, eps);
        mlinear_bwd(d, o, l, 0, d->dxn, false, P[EVLM_TD_BQ], d->dq, d->xn, n);
        mlinear_bwd(d, o, l, 1, d->dxn, true, P[EVLM_TD_BK], d->dk, d->xn, n);
        mlinear_bwd(d, o, l, 2, d->dxn, true, P[EVLM_TD_BV], d->dv, d->xn, n);
        evlm_top_rmsnorm_bwd(o, d->dx, pg(d, P[EVLM_TD_ATTN_NORM]), d->dxn, X,
                             pw(d, P[EVLM_TD_ATTN_NORM]), d->rstd1 + (size_t)l * T, n, H);
        if (hid && l >= 1) hid(hid_user, l, X, d->dx);
    }
    if (stop > 0) return; /* nothing below wants a gradient */
    /* the embedding: ordinary rows scatter-add, image rows hand their gradient back */
    float *eg = pg(d, d->embed);
    int img = 0;
    for (int i = 0; i < n; i++) {
        const float *src = d->dx + (size_t)i * H;
        if (r->image_token >= 0 && r->ids[i] == r->image_token && r->img) {
            if (dimg) memcpy(dimg + (size_t)img * H, src, sizeof(float) * H);
            img++;
        } else if (eg) {
            float *dst = eg + (size_t)r->ids[i] * H;
            for (int j = 0; j < H; j++) dst[j] += src[j];
        }
    }
}
