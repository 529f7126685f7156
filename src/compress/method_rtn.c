/*
 * method_rtn.c - round to nearest, matrix by matrix (rtn.h): the method every other falls back
 * to where it has nothing to work with.
 */
#include "compress/pipeline.h"
#include "compress/rtn.h"
#include "core/status.h"

static evlm_status rtn_matrix(qctx *q, qt *x, const float *w) {
    EVLM_TRY(evlm__q_alloc(x));
    EVLM_TRY(evlm_rtn_quantize(x->to, w, x->src->ne[1], x->src->ne[0], x->qdata));
    evlm__q_finish(q, x, w);
    return EVLM_OK;
}

const evlm__qmethod evlm__qmethod_rtn = {
    .id = EVLM_QMETHOD_RTN,
    .title = "RTN",
    .name = "rtn",
    .matrix = rtn_matrix,
};
