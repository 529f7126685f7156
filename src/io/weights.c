/*
 * weights.c - typed getters over a weight set (see safetensors.h): matrices that stay mmapped
 * (float or block-quantized), and small float vectors widened to float32 once at load. Shared
 * by every model. Not here: dequantizing vectors (norms and biases are stored as floats).
 */
#include "core/status.h"
#include "io/safetensors.h"
#include "quant/quants.h"

evlm_status evlm_weights_check_float(const evlm_weights *w, const char *name, const evlm_tensor *t) {
    if (!evlm_type_is_file_float(t->type))
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (expected F32/F16/BF16)",
                          evlm_weights_path(w), name, evlm_type_name(t->type));
    return EVLM_OK;
}

evlm_status evlm_weights_get_matrix(const evlm_weights *w, const char *name, int64_t cols,
                                    int64_t rows, const evlm_tensor **out) {
    int64_t ne[2] = {cols, rows};
    EVLM_TRY(evlm_weights_get(w, name, 2, ne, out));
    evlm_weights_note_matrix(w, *out);
    evlm_type t = (*out)->type;
    if (evlm_type_is_quant(t)) {
        if (cols % evlm_type_block(t) != 0) {
            *out = NULL;
            return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' is %s with %lld columns (not a multiple of %d)",
                              evlm_weights_path(w), name, evlm_type_name(t), (long long)cols,
                              evlm_type_block(t));
        }
        return EVLM_OK;
    }
    evlm_status st = evlm_weights_check_float(w, name, *out);
    if (st != EVLM_OK) *out = NULL;
    return st;
}

evlm_status evlm_weights_get_floats(const evlm_weights *w, const char *name, int n_dims,
                                    const int64_t *ne, size_t n, float *dst) {
    const evlm_tensor *t;
    EVLM_TRY(evlm_weights_get(w, name, n_dims, ne, &t));
    EVLM_TRY(evlm_weights_check_float(w, name, t));
    if ((size_t)evlm_tensor_nelements(t) != n)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' has %lld elements, expected %zu",
                          evlm_weights_path(w), name, (long long)evlm_tensor_nelements(t), n);
    evlm_dequantize_row(t->type, t->data, dst, (int64_t)n); /* any alignment (quant/types.h) */
    return EVLM_OK;
}

evlm_status evlm_weights_get_vector(const evlm_weights *w, const char *name, int64_t n, float *dst) {
    return evlm_weights_get_floats(w, name, 1, &n, (size_t)n, dst);
}
