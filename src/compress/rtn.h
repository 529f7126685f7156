/*
 * rtn.h - plain round-to-nearest quantization of a float weight matrix, and the output error
 * of any quantized matrix measured from calibration statistics: the baselines that GPTQ (gptq.h)
 * and AWQ (awq.h) are compared against.
 *
 * W is n rows (outputs) of k columns (inputs), row-major float; the quantized form is n rows of
 * evlm_row_bytes(type, k) bytes (for the block types: k/32 blocks per row, exactly what
 * evlm_quantize_row writes). Errors use X as N rows of k inputs, outputs Y = X W^T:
 *   err = ||X (W - Q)^T||_F^2 = sum_r e_r^T (X^T X) e_r,  ref = ||X W^T||_F^2.
 * Not here: choosing scales (awq.h) or error compensation (gptq.h).
 */
#ifndef EVLM_COMPRESS_RTN_H
#define EVLM_COMPRESS_RTN_H

#include "core/tensor.h"
#include "evlm.h"

#include <stdint.h>

/* Checks a (type, n, k) for the compress quantizers: n > 0, k > 0, a block-quantized file type
 * (evlm_type_is_file_quant) with k a multiple of 32; what names the weight in the message. */
evlm_status evlm_compress_check_shape(const char *what, evlm_type t, int64_t n, int64_t k);

/* Round-to-nearest: every row through evlm_quantize_row. out: n * evlm_row_bytes(t, k) bytes. */
evlm_status evlm_rtn_quantize(evlm_type t, const float *w, int64_t n, int64_t k, void *out);

/* err and ref (above) from xtx = X^T X (k x k, full square); q is the quantized matrix. */
evlm_status evlm_quant_error_xtx(evlm_type t, const float *w, const void *q, int64_t n, int64_t k,
                                 const double *xtx, double *err, double *ref);

/* err and ref directly on rows x (n_rows x k). */
evlm_status evlm_quant_error_rows(evlm_type t, const float *w, const void *q, int64_t n, int64_t k,
                                  const float *x, int64_t n_rows, double *err, double *ref);

#endif
