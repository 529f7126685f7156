/*
 * quantize_lowrank.c - evlm_quantize on a model whose decoder matrices are stored as low-rank
 * factors ("<proj>.lowrank_a" [r, in] / ".lowrank_b" [out, r], written by evlm lowrank; see
 * model/decoder.h): which combinations are done, the factors marked as matrices of the file
 * (K_LOWRANK, the decoder's type, --keep patterns apply), and their quantization: round to
 * nearest, or GPTQ. A's input is the matrix's input, whose statistics calibration gathers (its
 * group's X^T X); B's input is A x, so B's X^T X is Q(A) X^T X Q(A)^T (r x r) with A as written:
 * exact, and cheap beside the factorization, so GPTQ needs no second calibration pass.
 * Deliberately not done, and refused with a message: AWQ on such a model (its scales fold into
 * the previous operator and would have to pass through A), pruning its decoder, low-rank
 * compensation on top, and factors that sit beside a dense weight (an already compensated
 * model: its factors were fitted to another quantization).
 * A factor whose rows are not a multiple of the block (B at a rank not a multiple of 32) keeps
 * its stored type; the report's bits per weight count each factor at the type it is written in.
 */
#include "compress/gptq.h"
#include "compress/pipeline.h"
#include "compress/rtn.h"
#include "core/status.h"
#include "quant/quants.h"
#include "model/decoder.h"

#include <stdlib.h>
#include <string.h>

evlm_status evlm__q_lowrank_check(const qctx *q, const char *in_dir) {
    const evlm_decoder *d = evlm__model_decoder(q->m);
    if (d->lr_max_rank <= 0) return EVLM_OK;
    const evlm_quantize_params *p = q->p;
    int factored = 0;
    for (int l = 0; l < d->cfg.n_layers; l++)
        for (int i = 0; i < EVLM_DECODER_LR_COUNT; i++) factored += d->layers[l].lr[i].a != NULL;
    if (d->lr_no_dense < factored)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: low-rank factors beside a dense weight (a compensated model): "
                          "quantize the model before compensating it",
                          in_dir);
    if (p->method != EVLM_QMETHOD_RTN && p->method != EVLM_QMETHOD_GPTQ)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: a model with low-rank factors is quantized by rtn or gptq only "
                          "(AWQ's scales would have to pass through the factors: not done)",
                          in_dir);
    if (p->prune.method != EVLM_PRUNE_NONE)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: pruning the decoder of a model with low-rank factors is not done "
                          "(prune the dense model before factoring it)",
                          in_dir);
    if (p->lowrank_comp > 0 || p->lowrank_bpw > 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: low-rank compensation of a model with low-rank factors is not "
                          "done",
                          in_dir);
    return EVLM_OK;
}

/* the calibration group of matrix i of a layer (decoder.h's order; the decoder's observer names) */
static const char *const k_groups[EVLM_DECODER_LR_COUNT] = {
    "attn_qkv", "attn_qkv", "attn_qkv", "attn_o", "ffn_gate_up", "ffn_gate_up", "ffn_down"};

evlm_status evlm__q_mark_factors(qctx *q) {
    const evlm_decoder *d = evlm__model_decoder(q->m);
    for (int l = 0; l < d->cfg.n_layers; l++)
        for (int i = 0; i < EVLM_DECODER_LR_COUNT; i++) {
            const struct evlm_decoder_lowrank *f = &d->layers[l].lr[i];
            if (!f->a) continue;
            const evlm_tensor *ab[2] = {f->a, f->b};
            for (int j = 0; j < 2; j++) {
                qt *x = evlm__q_find_name(q, ab[j]->name);
                if (!x)
                    return evlm__fail(EVLM_ERR_FORMAT,
                                      "layer %d: low-rank factor '%s' is not in the weight set", l,
                                      ab[j]->name);
                x->kind = K_LOWRANK;
                x->layer = l;
                x->group = j == 0 ? k_groups[i] : NULL; /* B's input is A x: no group */
            }
        }
    return EVLM_OK;
}

/* x (n x k, float rows w) into x->qdata by GPTQ with xtx when given, else round to nearest. */
static evlm_status quantize_one(qctx *q, qt *x, const float *w, const double *xtx, int64_t rows) {
    int64_t n = x->src->ne[1], k = x->src->ne[0];
    EVLM_TRY(evlm__q_alloc(x));
    if (xtx) {
        evlm_gptq_params gp = evlm_gptq_default_params();
        evlm_gptq_result res;
        evlm_status s = evlm_gptq_quantize(x->to, w, n, k, xtx, rows, &gp, evlm__model_pool(q->m),
                                           x->qdata, &res);
        if (s != EVLM_OK) return evlm__fail_prefix(s, "%s", x->src->name);
        x->method = "gptq";
    } else {
        EVLM_TRY(evlm_rtn_quantize(x->to, w, n, k, x->qdata));
    }
    evlm__q_finish(q, x, w); /* A: the error on its group's rows; B: in weight space */
    return EVLM_OK;
}

/* B's X^T X from A's: a (r x k, A as written) times xtx (k x k) times a^T, into out (r x r). */
evlm_status evlm__q_xtx_through(const float *a, int64_t r, int64_t k, const double *xtx,
                                double *out) {
    double *t = malloc(sizeof(double) * (size_t)k);
    if (!t) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < r; i++) {
        const float *ai = a + i * k;
        for (int64_t c = 0; c < k; c++) { /* t = xtx a_i (xtx symmetric) */
            const double *h = xtx + c * k;
            double acc = 0;
            for (int64_t j = 0; j < k; j++) acc += h[j] * (double)ai[j];
            t[c] = acc;
        }
        for (int64_t j = 0; j <= i; j++) {
            const float *aj = a + j * k;
            double acc = 0;
            for (int64_t c = 0; c < k; c++) acc += (double)aj[c] * t[c];
            out[i * r + j] = out[j * r + i] = acc;
        }
    }
    free(t);
    return EVLM_OK;
}

evlm_status evlm__q_factors(qctx *q) {
    const evlm_decoder *d = evlm__model_decoder(q->m);
    const bool gptq = q->p->method == EVLM_QMETHOD_GPTQ && q->calib;
    for (int l = 0; l < d->cfg.n_layers; l++)
        for (int i = 0; i < EVLM_DECODER_LR_COUNT; i++) {
            const struct evlm_decoder_lowrank *f = &d->layers[l].lr[i];
            if (!f->a) continue;
            qt *xa = evlm__q_find_name(q, f->a->name), *xb = evlm__q_find_name(q, f->b->name);
            const evlm_calib_stat *st = gptq ? evlm_calib_find(q->calib, l, k_groups[i]) : NULL;
            if (st && (!st->xtx || st->k != f->a->ne[0])) st = NULL;
            int64_t r = f->a->ne[1], k = f->a->ne[0];
            float *wa = evlm__q_widen(xa->src), *wb = evlm__q_widen(xb->src), *qa = NULL;
            double *hb = NULL;
            evlm_status s = wa && wb ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
            bool qz_a = !xa->pinned && evlm_type_is_quant(xa->to);
            bool qz_b = !xb->pinned && evlm_type_is_quant(xb->to);
            if (s == EVLM_OK && qz_a)
                s = quantize_one(q, xa, wa, st ? st->xtx : NULL, st ? st->n_rows : 0);
            if (s == EVLM_OK && qz_b && st) { /* B's statistics through A as written */
                qa = malloc(sizeof(float) * (size_t)(r * k));
                hb = malloc(sizeof(double) * (size_t)(r * r));
                if (!qa || !hb) s = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
                for (int64_t j = 0; s == EVLM_OK && j < r; j++) {
                    if (qz_a)
                        evlm_dequantize_row(
                            xa->to, (const char *)xa->qdata + (size_t)j * evlm_row_bytes(xa->to, k),
                            qa + j * k, k);
                    else
                        memcpy(qa + j * k, wa + j * k, sizeof(float) * (size_t)k);
                }
                if (s == EVLM_OK) s = evlm__q_xtx_through(qa, r, k, st->xtx, hb);
            }
            if (s == EVLM_OK && qz_b) s = quantize_one(q, xb, wb, hb, st ? st->n_rows : 0);
            free(wa);
            free(wb);
            free(qa);
            free(hb);
            EVLM_TRY(s);
        }
    return EVLM_OK;
}
