/*
 * safetensors.h - reading and writing Hugging Face safetensors files.
 *
 * A weight set is the union of one model.safetensors or the shards listed in
 * model.safetensors.index.json, each mmapped read-only; tensors are views into the maps.
 * Reader: the 8-byte header length is bounded (EVLM_ST_MAX_HEADER), every offset, shape and
 * byte count is overflow-checked against the file size, dtypes other than F32/F16/BF16/I64/
 * I32/I8/U8 are rejected, duplicate names rejected; errors name the file and tensor.
 * Writer: atomic (temp file + rename), header padded to 8 bytes as the format recommends.
 * Not here: dtype conversion (the model loader does that).
 */
#ifndef EVLM_IO_SAFETENSORS_H
#define EVLM_IO_SAFETENSORS_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "evlm.h"

#define EVLM_ST_MAX_HEADER (100u << 20) /* 100 MiB, like the reference implementation */
#define EVLM_ST_MAX_DIMS 8               /* views have 4: the innermost extra dims fold into ne[0] */

typedef struct evlm_weights evlm_weights;

/* path: a folder (model.safetensors.index.json or model.safetensors inside), an index json,
 * or a single .safetensors file. */
evlm_status evlm_weights_open(const char *path, evlm_weights **out);
/* Parses one safetensors image already in memory (no copy; data must outlive the set).
 * `what` names it in errors. Used by the fuzzer and tests. */
evlm_status evlm_weights_from_memory(const char *what, const void *data, size_t size,
                                     evlm_weights **out);
/* A set over n tensor views that point into memory someone else owns (a GGUF map): names are
 * copied, views kept as given (contiguous, any type). On success the set owns `owner` and calls
 * free_owner(owner) (when both are non-NULL) from evlm_weights_free; on failure the caller
 * keeps it. Duplicate names are an error naming `what`. */
evlm_status evlm_weights_from_views(const char *what, const evlm_tensor *views, size_t n,
                                    void *owner, void (*free_owner)(void *), evlm_weights **out);
void evlm_weights_free(evlm_weights *w);
/* Records that t (a tensor of w) is a matmul weight (evlm_weights_get_matrix does): only those
 * are interleaved by evlm_weights_repack_r16. */
void evlm_weights_note_matrix(const evlm_weights *w, const evlm_tensor *t);
/* Replaces every noted 2-D matrix of at least 16 rows by its 16-row interleaved copy
 * (quant/repack.h), owned by the set, the mapped source pages given back: Q8_0 / Q4_0 / Q4_1
 * ones when quant (for the int8 kernels), F32 / F16 / BF16 ones when floats. Pointers to the
 * tensors stay valid (type and data change). After this, read rows with evlm_matrix_row_f32, not
 * through nb[1]. The copying is split over pool's threads (NULL: the calling thread). */
evlm_status evlm_weights_repack_r16(evlm_weights *w, bool quant, bool floats, evlm_pool *pool);

size_t evlm_weights_count(const evlm_weights *w);
const evlm_tensor *evlm_weights_at(const evlm_weights *w, size_t i);
/* NULL when absent (no error set). O(1) average. */
const evlm_tensor *evlm_weights_find(const evlm_weights *w, const char *name);
/* Like find, but a missing tensor or a shape other than ne[0..n_dims-1] is an error naming
 * the tensor; pass ne = NULL to skip the shape check. */
evlm_status evlm_weights_get(const evlm_weights *w, const char *name, int n_dims,
                             const int64_t *ne, const evlm_tensor **out);
/* Error (naming the tensor) unless t is F32, F16 or BF16. */
evlm_status evlm_weights_check_float(const evlm_weights *w, const char *name, const evlm_tensor *t);
/* evlm_weights_get for a 2-D matrix of ne = {cols, rows}: F32/F16/BF16, or a block-quantized
 * type (Q8_0/Q4_0/Q4_1, cols a multiple of 32). */
evlm_status evlm_weights_get_matrix(const evlm_weights *w, const char *name, int64_t cols,
                                    int64_t rows, const evlm_tensor **out);
/* Widens a float tensor (F32/F16/BF16 only) of shape n_dims / ne (n elements) into dst: small vectors (norms,
 * biases, position tables) are widened once at load. */
evlm_status evlm_weights_get_floats(const evlm_weights *w, const char *name, int n_dims,
                                    const int64_t *ne, size_t n, float *dst);
/* A 1-D float vector of n elements widened into dst. */
evlm_status evlm_weights_get_vector(const evlm_weights *w, const char *name, int64_t n, float *dst);

/* Files behind the set (for messages): the first file name. */
const char *evlm_weights_path(const evlm_weights *w);

/* Writes tensors (contiguous; any supported type) to path atomically. */
evlm_status evlm_safetensors_write(const char *path, const evlm_tensor *tensors, size_t n);

#endif
