/*
 * method_gptq.c - GPTQ matrix by matrix (gptq.h): error feedback through the inverse Hessian
 * of the matrix's calibration inputs; round to nearest for a matrix no calibration row reached.
 */
#include "compress/gptq.h"
#include "compress/pipeline.h"
#include "core/status.h"

static evlm_status gptq_matrix(qctx *q, qt *x, const float *w) {
    const evlm_calib_stat *st = x->group ? evlm_calib_find(q->calib, x->layer, x->group) : NULL;
    if (!st || !st->xtx) return evlm__qmethod_find(EVLM_QMETHOD_RTN)->matrix(q, x, w);
    int64_t n = x->src->ne[1], k = x->src->ne[0];
    EVLM_TRY(evlm__q_alloc(x));
    evlm_gptq_params gp = evlm_gptq_default_params();
    evlm_gptq_result res;
    evlm_status s = evlm_gptq_quantize(x->to, w, n, k, st->xtx, st->n_rows, &gp,
                                       evlm__model_pool(q->m), x->qdata, &res);
    if (s != EVLM_OK) return evlm__fail_prefix(s, "%s", x->src->name);
    x->method = "gptq";
    evlm__q_finish(q, x, w);
    return EVLM_OK;
}

const evlm__qmethod evlm__qmethod_gptq = {
    .id = EVLM_QMETHOD_GPTQ,
    .title = "GPTQ",
    .name = "gptq",
    .calibration = true,
    .hessian = true,
    .matrix = gptq_matrix,
};
