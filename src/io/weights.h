/*
 * weights.h - the named-tensor set a model binds its weights from, whatever the container
 * (safetensors.c and gguf.c fill it): name lookup, typed getters, the table-driven binder, and
 * the 16-row repack of the matrices the layers bound.
 *
 * Tensors are views into memory the set owns or maps (file maps, someone else's views, repacked
 * copies); their pointers stay valid for the set's lifetime, also across the repack (type and
 * data change in place). Errors name the file and the tensor.
 * Not here: parsing a container, dtype conversion of matrices (kernels widen them).
 */
#ifndef EVLM_IO_WEIGHTS_H
#define EVLM_IO_WEIGHTS_H

#include "core/file.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "evlm.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct evlm_weights evlm_weights;

/* A set over n tensor views that point into memory someone else owns (a GGUF map): names are
 * copied, views kept as given (contiguous, any type). On success the set owns `owner` and calls
 * free_owner(owner) (when both are non-NULL) from evlm_weights_free; on failure the caller
 * keeps it. Duplicate names are an error naming `what`. */
evlm_status evlm_weights_from_views(const char *what, const evlm_tensor *views, size_t n,
                                    void *owner, void (*free_owner)(void *), evlm_weights **out);
void evlm_weights_free(evlm_weights *w);

size_t evlm_weights_count(const evlm_weights *w);
const evlm_tensor *evlm_weights_at(const evlm_weights *w, size_t i);
/* NULL when absent (no error set). O(1) average. */
const evlm_tensor *evlm_weights_find(const evlm_weights *w, const char *name);
/* Files behind the set (for messages): the first file name. */
const char *evlm_weights_path(const evlm_weights *w);

/* Like find, but a missing tensor or a shape other than ne[0..n_dims-1] is an error naming
 * the tensor; pass ne = NULL to skip the shape check. */
evlm_status evlm_weights_get(const evlm_weights *w, const char *name, int n_dims, const int64_t *ne,
                             const evlm_tensor **out);
/* Error (naming the tensor) unless t is F32, F16 or BF16. */
evlm_status evlm_weights_check_float(const evlm_weights *w, const char *name, const evlm_tensor *t);
/* evlm_weights_get for a 2-D matrix of ne = {cols, rows}: F32/F16/BF16, or a block-quantized
 * type (Q8_0/Q4_0/Q4_1, cols a multiple of 32). Notes the tensor as a matrix (see repack). */
evlm_status evlm_weights_get_matrix(const evlm_weights *w, const char *name, int64_t cols,
                                    int64_t rows, const evlm_tensor **out);
/* Widens a float tensor (F32/F16/BF16 only) of shape n_dims / ne (n elements) into dst: small
 * vectors (norms, biases, position tables) are widened once at load. */
evlm_status evlm_weights_get_floats(const evlm_weights *w, const char *name, int n_dims,
                                    const int64_t *ne, size_t n, float *dst);
/* A 1-D float vector of n elements widened into dst. */
evlm_status evlm_weights_get_vector(const evlm_weights *w, const char *name, int64_t n, float *dst);

/* ---- binding -------------------------------------------------------------------------------
 * A model describes its tensors as a table of evlm_bind rows (name, kind, shape, where the
 * result goes) and binds a whole layer or block with one call. Widened float vectors are carved
 * from an evlm_fstore, so no binder counts floats by hand. */

/* Blocks of widened floats: pointers stay valid until evlm_fstore_free. */
typedef struct evlm_fstore {
    struct evlm_fblock *head;
} evlm_fstore;
float *evlm_fstore_alloc(evlm_fstore *s, size_t n); /* NULL when out of memory */
void evlm_fstore_free(evlm_fstore *s);

typedef enum evlm_bind_kind {
    EVLM_BIND_MATRIX, /* const evlm_tensor *: a 2-D matmul weight, ne = {cols, rows} */
    EVLM_BIND_TENSOR, /* const evlm_tensor *: a float tensor of the given shape, left as stored */
    EVLM_BIND_FLOATS, /* const float *: a float tensor of the given shape, widened once */
} evlm_bind_kind;

typedef struct evlm_bind {
    const char *name; /* appended to the prefix given to evlm_weights_bind */
    evlm_bind_kind kind;
    size_t offset; /* offsetof the destination field in the struct being bound */
    int n_dims;
    int64_t ne[EVLM_MAX_DIMS]; /* ggml order: a Linear [out, in] is {in, out} */
    bool optional;             /* absent: the field is set to NULL instead of an error */
} evlm_bind;

/* Rows of a table binding fields of struct type T. */
#define EVLM_BIND_MAT(T, field, name, cols, rows)                                                  \
    { (name), EVLM_BIND_MATRIX, offsetof(T, field), 2, {(cols), (rows)}, false }
#define EVLM_BIND_VEC(T, field, name, n)                                                           \
    { (name), EVLM_BIND_FLOATS, offsetof(T, field), 1, {(n)}, false }

/* Binds rows[0..n) into the struct at dst: the tensor named prefix + rows[i].name, checked
 * against the row's kind and shape. Errors name the tensor; on error dst may be half filled. */
evlm_status evlm_weights_bind(const evlm_weights *w, const char *prefix, const evlm_bind *rows,
                              size_t n, void *dst, evlm_fstore *store);

/* ---- the repack ---------------------------------------------------------------------------- */

/* Records that t (a tensor of w) is a matmul weight (evlm_weights_get_matrix does): only those
 * are interleaved by evlm_weights_repack_r16. */
void evlm_weights_note_matrix(const evlm_weights *w, const evlm_tensor *t);
/* Replaces every noted 2-D matrix of at least 16 rows by its 16-row interleaved copy
 * (quant/repack.h), owned by the set, the mapped source pages given back: Q8_0 / Q4_0 / Q4_1
 * ones when quant (for the int8 kernels), F32 / F16 / BF16 ones when floats. Pointers to the
 * tensors stay valid (type and data change). After this, read rows with evlm_matrix_row_f32, not
 * through nb[1]. The copying is split over pool's threads (NULL: the calling thread). */
evlm_status evlm_weights_repack_r16(evlm_weights *w, bool quant, bool floats, evlm_pool *pool);
/* The same, and when sparse a matrix whose every aligned group of 4 inputs holds 2 exact zeros
 * (one pass over it) becomes its 2:4 form instead (quant/sparse24.h: Q8_0_S24, F16_S24 ...; nb
 * then its own row bytes). */
evlm_status evlm_weights_repack(evlm_weights *w, bool quant, bool floats, bool sparse,
                                evlm_pool *pool);

/* ---- for the container readers ------------------------------------------------------------- */

evlm_weights *evlm__weights_new(void);
/* Registers a file (path copied; map, when given, is unmapped by evlm_weights_free); *index
 * receives its number. */
evlm_status evlm__weights_add_file(evlm_weights *w, const char *path, const evlm_map *map,
                                   uint32_t *index);
/* Appends a tensor of file `file` (name copied) unless the name exists; *dup set when it does. */
evlm_status evlm__weights_add(evlm_weights *w, const evlm_tensor *t, uint32_t file, int *dup);
uint32_t evlm__weights_file_of(const evlm_weights *w, const evlm_tensor *t);
const char *evlm__weights_file_path(const evlm_weights *w, uint32_t file);

#endif
