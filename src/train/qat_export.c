/*
 * qat_export.c - the GGUF of a model trained with QAT (evlm_qat_export, evlm_train.h): the
 * Hugging Face folder's GGUF as `evlm quantize` writes it (the same writer, names and metadata:
 * io/gguf_names.h), each tensor replaced by the trained one: a quantized matrix by exactly the
 * blocks the training forward dequantized (evlm_tqat_blocks), any other tensor by its float32
 * weights converted to the type quantize keeps for it (the file's dtype).
 * Not here: the training (tmodel.c, qat.c), the GGUF container (io/gguf*).
 */
#include "evlm_train.h"

#include "core/status.h"
#include "core/tensor.h"
#include "io/gguf_names.h"
#include "quant/quants.h"
#include "train/qat.h"
#include "train/tmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const evlm_tqat *q;
    evlm_tensor *views; /* [tp->n] */
    void **data;        /* [tp->n]: the quantized blocks (NULL: the float weights are used) */
    evlm_status st;
    int matched; /* parameters found in the folder */
} export_ctx;

static evlm_type type_for(void *ctx, const char *name, const evlm_tensor *t,
                          const evlm_tensor **src) {
    export_ctx *c = ctx;
    const evlm_tparams *tp = c->q->tp;
    const evlm_tparam *p = evlm_tparams_find(tp, name);
    if (!p || (size_t)evlm_tensor_nelements(t) != p->n) {
        if (c->st == EVLM_OK)
            c->st = evlm__fail(EVLM_ERR_ARG,
                               "qat export: tensor '%s' of the model folder is %s the trained "
                               "model",
                               name, p ? "of another size than in" : "not in");
        return EVLM_TYPE_COUNT; /* left out; the export fails after the write */
    }
    const int i = (int)(p - tp->p);
    c->matched++;
    evlm_tensor *v = &c->views[i];
    *v = *t;
    if (c->data[i]) {
        v->type = c->q->stored[i];
        v->data = c->data[i];
    } else {
        v->type = EVLM_TYPE_F32;
        v->data = tp->w + p->off;
    }
    evlm_tensor_set_contiguous(v);
    *src = v;
    return c->q->stored[i];
}

evlm_status evlm_qat_export(evlm_tmodel *tm, const char *model_dir, const char *out_gguf) {
    if (!tm || !model_dir || !out_gguf)
        return evlm__fail(EVLM_ERR_ARG, "qat export: no model, model folder or output path");
    const evlm_tqat *q = evlm_tmodel_qat(tm);
    if (!q)
        return evlm__fail(EVLM_ERR_ARG,
                          "qat export: the model has no QAT configuration (evlm_tmodel_set_qat)");
    const int n = q->tp->n;
    export_ctx c = {q, calloc((size_t)n, sizeof *c.views), calloc((size_t)n, sizeof *c.data),
                    EVLM_OK, 0};
    evlm_status st = c.views && c.data ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    for (int i = 0; st == EVLM_OK && i < n; i++) {
        if (!evlm_type_is_quant(q->stored[i])) continue;
        const evlm_tparam *p = &q->tp->p[i];
        size_t bytes = p->n / (size_t)evlm_type_block(q->stored[i]) * evlm_type_size(q->stored[i]);
        if (!(c.data[i] = malloc(bytes))) {
            st = evlm__fail(EVLM_ERR_NOMEM, "out of memory for the blocks of '%s'", p->name);
            break;
        }
        evlm_tqat_blocks(q, i, c.data[i]);
    }
    if (st == EVLM_OK) st = evlm_gguf_export_hf(model_dir, out_gguf, type_for, &c, NULL, NULL);
    if (st == EVLM_OK && c.st == EVLM_OK && c.matched != n)
        c.st = evlm__fail(EVLM_ERR_ARG, "qat export: %s holds %d of the trained model's %d tensors",
                          model_dir, c.matched, n);
    if (st == EVLM_OK && c.st != EVLM_OK) {
        st = c.st;
        remove(out_gguf); /* a file missing tensors is no export */
    }
    for (int i = 0; c.data && i < n; i++) free(c.data[i]);
    free(c.data);
    free(c.views);
    return st;
}
