/*
 * params.c - the trainable parameter set (params.h): every tensor of a weight set widened to
 * float32 master weights, with gradients and AdamW moments, all carved from one allocation by a
 * size table (each parameter starts on a 64-byte boundary for the kernels).
 * Not here: what the parameters mean (tdecoder.c, tvision.c), the optimizer.
 */
#include "train/params.h"

#include "core/status.h"
#include "core/tensor.h"
#include "quant/types.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#define PARAM_ALIGN 16 /* floats: 64 bytes */

/* The floats of t in row order; false when its type has no float value. */
static bool widen(const evlm_tensor *t, float *dst) {
    const evlm_type_ops *ops = evlm_type_ops_of(t->type);
    if (!ops->to_float || evlm_type_traits_of(t->type)->memory_only) return false;
    const int64_t cols = t->ne[0];
    const int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    for (int64_t r = 0; r < rows; r++) {
        /* contiguous: row r of the folded rows starts r row-bytes in */
        const char *src = (const char *)t->data + (size_t)r * evlm_row_bytes(t->type, cols);
        ops->to_float(src, dst + (size_t)r * (size_t)cols, cols);
    }
    return true;
}

static evlm_status from_weights(evlm_tparams *tp, const evlm_weights *ws, int copies) {
    memset(tp, 0, sizeof *tp);
    const size_t n = evlm_weights_count(ws);
    if (n == 0 || n > (size_t)1 << 24)
        return evlm__fail(EVLM_ERR_ARG, "%s: %zu tensors to train", evlm_weights_path(ws), n);
    tp->p = calloc(n, sizeof *tp->p);
    if (!tp->p) return evlm__fail(EVLM_ERR_NOMEM, "out of memory for %zu parameters", n);
    tp->n = (int)n;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = evlm_weights_at(ws, i);
        evlm_tparam *p = &tp->p[i];
        if (snprintf(p->name, sizeof p->name, "%s", t->name) >= (int)sizeof p->name) {
            evlm_tparams_release(tp);
            return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor name '%s' is too long to train",
                              evlm_weights_path(ws), t->name);
        }
        p->n_dims = t->n_dims < 1 ? 1 : t->n_dims;
        for (int d = 0; d < 4; d++) p->shape[d] = 1;
        for (int d = 0; d < p->n_dims; d++) p->shape[d] = t->ne[p->n_dims - 1 - d];
        p->n = (size_t)evlm_tensor_nelements(t);
        p->off = off;
        p->src_type = t->type;
        p->trainable = true;
        const evlm_type_ops *ops = evlm_type_ops_of(t->type);
        if (!ops->to_float || evlm_type_traits_of(t->type)->memory_only) {
            evlm_tparams_release(tp);
            return evlm__fail(EVLM_ERR_UNSUPPORTED,
                              "%s: tensor '%s' of type %s cannot be trained (no float values; "
                              "load the model with keep_layout)",
                              evlm_weights_path(ws), t->name, evlm_type_name(t->type));
        }
        off += (p->n + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
        if (off > ((size_t)1 << 38)) {
            evlm_tparams_release(tp);
            return evlm__fail(EVLM_ERR_NOMEM, "%s: too many parameters to train",
                              evlm_weights_path(ws));
        }
    }
    tp->n_floats = off;
    tp->mem = aligned_alloc(64, (size_t)copies * off * sizeof(float));
    if (!tp->mem) {
        evlm_tparams_release(tp);
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB for the parameters",
                          ((size_t)copies * off * sizeof(float)) >> 20);
    }
    memset(tp->mem, 0, (size_t)copies * off * sizeof(float));
    tp->w = tp->mem;
    if (copies == 4) {
        tp->g = tp->w + off;
        tp->m = tp->g + off;
        tp->v = tp->m + off;
    }
    for (size_t i = 0; i < n; i++) {
        widen(evlm_weights_at(ws, i), tp->w + tp->p[i].off);
        tp->p[i].trainable = copies == 4;
    }
    return EVLM_OK;
}

evlm_status evlm_tparams_from_weights(evlm_tparams *tp, const evlm_weights *ws) {
    return from_weights(tp, ws, 4);
}

evlm_status evlm_tparams_from_weights_frozen(evlm_tparams *tp, const evlm_weights *ws) {
    return from_weights(tp, ws, 1);
}

void evlm_tparams_release(evlm_tparams *tp) {
    free(tp->p);
    free(tp->mem);
    memset(tp, 0, sizeof *tp);
}

const evlm_tparam *evlm_tparams_find(const evlm_tparams *tp, const char *name) {
    for (int i = 0; i < tp->n; i++)
        if (!strcmp(tp->p[i].name, name)) return &tp->p[i];
    return NULL;
}

float *evlm_tparams_w(const evlm_tparams *tp, const char *name) {
    const evlm_tparam *p = evlm_tparams_find(tp, name);
    return p ? tp->w + p->off : NULL;
}

float *evlm_tparams_g(const evlm_tparams *tp, const char *name) {
    const evlm_tparam *p = evlm_tparams_find(tp, name);
    return p && tp->g ? tp->g + p->off : NULL;
}

static bool match_any(const char *name, const char *const *globs, int n) {
    for (int i = 0; i < n; i++)
        if (globs[i] && fnmatch(globs[i], name, 0) == 0) return true;
    return false;
}

evlm_status evlm_tparams_select(evlm_tparams *tp, const char *const *train, int n_train,
                                const char *const *freeze, int n_freeze, int *n_trainable) {
    if (!tp->g)
        return evlm__fail(EVLM_ERR_ARG, "a frozen parameter set (weights only) trains nothing");
    int count = 0;
    for (int i = 0; i < tp->n; i++) {
        evlm_tparam *p = &tp->p[i];
        p->trainable = n_train > 0 ? match_any(p->name, train, n_train) : true;
        if (p->trainable && match_any(p->name, freeze, n_freeze)) p->trainable = false;
        count += p->trainable;
    }
    if (n_trainable) *n_trainable = count;
    if (count == 0) {
        char msg[512] = "";
        size_t len = 0;
        for (int i = 0; i < n_train && len < sizeof msg; i++)
            len += (size_t)snprintf(msg + len, sizeof msg - len, " --train '%s'", train[i]);
        for (int i = 0; i < n_freeze && len < sizeof msg; i++)
            len += (size_t)snprintf(msg + len, sizeof msg - len, " --freeze '%s'", freeze[i]);
        return evlm__fail(EVLM_ERR_ARG, "no parameter is left to train by%s", msg);
    }
    return EVLM_OK;
}

void evlm_tparams_zero_grad(evlm_tparams *tp) {
    if (tp->g) memset(tp->g, 0, tp->n_floats * sizeof(float));
}
