/*
 * quantize_lowrank.c - evlm_quantize on a model whose decoder matrices are stored as low-rank
 * factors ("<proj>.lowrank_a" [r, in] / ".lowrank_b" [out, r], written by evlm lowrank; see
 * model/decoder.h): which combinations are done, the factors marked as matrices of the file
 * (K_LOWRANK, the decoder's type, --keep patterns apply), and their round to nearest.
 * Deliberately not done, and refused with a message: GPTQ / AWQ on such a model (calibration
 * observes the input of A, the matrix's input, but not the input of B, A x: their statistics are
 * not there), pruning its decoder, low-rank compensation on top, and factors that sit beside a
 * dense weight (an already compensated model: its factors were fitted to another quantization).
 * A factor whose rows are not a multiple of the block (B at a rank not a multiple of 32) keeps
 * its stored type; the report's bits per weight count each factor at the type it is written in.
 */
#include "compress/pipeline.h"
#include "compress/rtn.h"
#include "core/status.h"
#include "model/decoder.h"

#include <stdlib.h>

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
    if (p->method != EVLM_QMETHOD_RTN)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: a model with low-rank factors is quantized by round to nearest "
                          "only (the calibration statistics of the factors' inputs are not "
                          "gathered; quantize the dense model with this method, or use rtn)",
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
            }
        }
    return EVLM_OK;
}

evlm_status evlm__q_factors(qctx *q) {
    for (int i = 0; i < q->n; i++) {
        qt *x = &q->t[i];
        if (x->kind != K_LOWRANK || x->pinned || !evlm_type_is_quant(x->to)) continue;
        float *w = evlm__q_widen(x->src);
        if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", x->src->name);
        evlm_status st = evlm__q_alloc(x);
        if (st == EVLM_OK) st = evlm_rtn_quantize(x->to, w, x->src->ne[1], x->src->ne[0], x->qdata);
        if (st == EVLM_OK) evlm__q_finish(q, x, w); /* no group: the error in weight space */
        free(w);
        EVLM_TRY(st);
    }
    return EVLM_OK;
}
