/* rtn.c - round-to-nearest baseline and output-error measures (see rtn.h). */
#include "compress/rtn.h"

#include "core/status.h"
#include "quant/quants.h"

#include <math.h>
#include <stdlib.h>

evlm_status evlm_compress_check_shape(const char *what, evlm_type t, int64_t n, int64_t k) {
    if (!evlm_type_is_file_quant(t) && !evlm_type_traits_of(t)->kq)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: type %s is not Q8_0, Q4_0, Q4_1, Q4_K, Q5_K or Q6_K", what,
                          evlm_type_name(t));
    if (n <= 0 || k <= 0 || n > INT32_MAX || k > ((int64_t)1 << 20))
        return evlm__fail(EVLM_ERR_ARG, "%s: bad shape %lld x %lld", what, (long long)n,
                          (long long)k);
    if (k % evlm_type_block(t))
        return evlm__fail(EVLM_ERR_ARG, "%s: %lld input columns is not a multiple of %d", what,
                          (long long)k, evlm_type_block(t));
    return EVLM_OK;
}

static evlm_status check_finite(const char *what, const float *w, int64_t n, int64_t k) {
    for (int64_t i = 0; i < n * k; i++)
        if (!isfinite(w[i]))
            return evlm__fail(EVLM_ERR_ARG, "%s: non-finite weight at row %lld, column %lld", what,
                              (long long)(i / k), (long long)(i % k));
    return EVLM_OK;
}

evlm_status evlm_rtn_quantize(evlm_type t, const float *w, int64_t n, int64_t k, void *out) {
    EVLM_TRY(evlm_compress_check_shape("rtn", t, n, k));
    EVLM_TRY(check_finite("rtn", w, n, k));
    size_t rb = evlm_row_bytes(t, k);
    for (int64_t r = 0; r < n; r++)
        evlm_quantize_row(t, w + r * k, (char *)out + (size_t)r * rb, k);
    return EVLM_OK;
}

evlm_status evlm_quant_error_xtx(evlm_type t, const float *w, const void *q, int64_t n, int64_t k,
                                 const double *xtx, double *err, double *ref) {
    EVLM_TRY(evlm_compress_check_shape("quant error", t, n, k));
    size_t rb = evlm_row_bytes(t, k);
    float *deq = malloc(sizeof(float) * (size_t)k);
    double *e = malloc(sizeof(double) * (size_t)k * 2), *wd = e + k;
    if (!deq || !e) {
        free(deq);
        free(e);
        return evlm__fail(EVLM_ERR_NOMEM, "quant error: out of memory");
    }
    double se = 0.0, sr = 0.0;
    for (int64_t r = 0; r < n; r++) {
        evlm_dequantize_row(t, (const char *)q + (size_t)r * rb, deq, k);
        for (int64_t j = 0; j < k; j++) {
            wd[j] = (double)w[r * k + j];
            e[j] = wd[j] - (double)deq[j];
        }
        for (int64_t i = 0; i < k; i++) {
            const double *h = xtx + i * k;
            double he = 0.0, hw = 0.0;
            for (int64_t j = 0; j < k; j++) {
                he += h[j] * e[j];
                hw += h[j] * wd[j];
            }
            se += e[i] * he;
            sr += wd[i] * hw;
        }
    }
    free(deq);
    free(e);
    *err = se > 0.0 ? se : 0.0; /* xtx is PSD; rounding can leave a tiny negative */
    *ref = sr > 0.0 ? sr : 0.0;
    return EVLM_OK;
}

evlm_status evlm_quant_error_rows(evlm_type t, const float *w, const void *q, int64_t n, int64_t k,
                                  const float *x, int64_t n_rows, double *err, double *ref) {
    EVLM_TRY(evlm_compress_check_shape("quant error", t, n, k));
    size_t rb = evlm_row_bytes(t, k);
    float *deq = malloc(sizeof(float) * (size_t)k);
    if (!deq) return evlm__fail(EVLM_ERR_NOMEM, "quant error: out of memory");
    double se = 0.0, sr = 0.0;
    for (int64_t r = 0; r < n; r++) {
        evlm_dequantize_row(t, (const char *)q + (size_t)r * rb, deq, k);
        const float *wr = w + r * k;
        for (int64_t i = 0; i < n_rows; i++) {
            const float *xi = x + i * k;
            double yw = 0.0, yq = 0.0;
            for (int64_t j = 0; j < k; j++) {
                yw += (double)wr[j] * (double)xi[j];
                yq += (double)deq[j] * (double)xi[j];
            }
            se += (yw - yq) * (yw - yq);
            sr += yw * yw;
        }
    }
    free(deq);
    *err = se;
    *ref = sr;
    return EVLM_OK;
}
