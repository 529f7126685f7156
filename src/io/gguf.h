/*
 * gguf.h - the GGUF v3 container (llama.cpp / ggml): a reader over a read-only map and a
 * streaming, atomic writer.
 *
 * Layout: "GGUF", u32 version (3), u64 tensor count, u64 kv count, the kv pairs (string key,
 * u32 value type, value), the tensor infos (name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
 * u64 offset into the data section), padding to general.alignment (default 32), the data.
 * Strings are u64 length + bytes (no NUL). ggml's ne order is evlm's (ne[0] innermost).
 *
 * Reader: every field is hostile. Strings and counts are checked against the bytes left before
 * anything is allocated; keys and tensor names are at most EVLM_GGUF_MAX_NAME bytes; arrays of
 * arrays are refused; n_dims is 1..4, every ne > 0 with an overflow-checked byte size; block
 * types need ne[0] a multiple of 32; offsets must be aligned and the data inside the file;
 * duplicate keys / names are refused; general.alignment is a u32 power of two <= 1 MiB.
 * Errors name the file and the key or tensor. Tensor views point into the map (no copy), except
 * ggml Q5_0 tensors (llama-quantize's fallback for Q4_K rows that do not split into 256), read
 * as Q8_0 blocks (the same scale and integers: exact) in memory the handle owns.
 * Writer: collects kv pairs and tensors (data pointers or row producers), then writes
 * "PATH.tmp.XXXXXX" and renames it (core/file.h), tensor by tensor, 32-byte aligned; the
 * tensor data is never gathered in memory.
 *
 * Not here: llama.cpp <-> Hugging Face names and the model metadata (gguf_names.h), dtype
 * conversion (quant/quants.h), the model loaders.
 */
#ifndef EVLM_IO_GGUF_H
#define EVLM_IO_GGUF_H

#include "core/tensor.h"
#include "evlm.h"
#include "io/safetensors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVLM_GGUF_VERSION       3
#define EVLM_GGUF_ALIGNMENT     32         /* the default, and what the writer uses */
#define EVLM_GGUF_MAX_ALIGNMENT (1u << 20) /* larger general.alignment values are refused */
#define EVLM_GGUF_MAX_NAME      4096       /* keys and tensor names (llama.cpp: names < 64) */

/* Metadata value types (the numbers are the file's). */
typedef enum evlm_gguf_vtype {
    EVLM_GGUF_U8 = 0,
    EVLM_GGUF_I8 = 1,
    EVLM_GGUF_U16 = 2,
    EVLM_GGUF_I16 = 3,
    EVLM_GGUF_U32 = 4,
    EVLM_GGUF_I32 = 5,
    EVLM_GGUF_F32 = 6,
    EVLM_GGUF_BOOL = 7,
    EVLM_GGUF_STRING = 8,
    EVLM_GGUF_ARRAY = 9,
    EVLM_GGUF_U64 = 10,
    EVLM_GGUF_I64 = 11,
    EVLM_GGUF_F64 = 12,
    EVLM_GGUF_VTYPE_COUNT
} evlm_gguf_vtype;

/* ggml tensor type id of an evlm type (-1: none, e.g. U8), and back (false: not supported). */
int evlm_gguf_ggml_type(evlm_type t);
bool evlm_gguf_from_ggml_type(uint32_t ggml, evlm_type *out);

/* ---- reader ----------------------------------------------------------------------------- */

typedef struct evlm_gguf evlm_gguf;

evlm_status evlm_gguf_open(const char *path, evlm_gguf **out);
/* Parses an image already in memory (no copy: data must outlive the handle and any weight set
 * made from it). `what` names it in errors. */
evlm_status evlm_gguf_from_memory(const char *what, const void *data, size_t size, evlm_gguf **out);
/* Drops this reference; the map goes when weight sets made from it are freed too. */
void evlm_gguf_close(evlm_gguf *g);

const char *evlm_gguf_path(const evlm_gguf *g);
uint32_t evlm_gguf_alignment(const evlm_gguf *g);
/* Byte offset of the data section from the start of the file. */
size_t evlm_gguf_data_offset(const evlm_gguf *g);

/* Metadata, in file order. find: index, or -1 when absent (no error set). */
size_t evlm_gguf_kv_count(const evlm_gguf *g);
const char *evlm_gguf_kv_key(const evlm_gguf *g, size_t i);
long evlm_gguf_find_key(const evlm_gguf *g, const char *key);
/* The value type of pair i (EVLM_GGUF_ARRAY: its element type into *elem, else the same type;
 * elem may be NULL); EVLM_GGUF_VTYPE_COUNT when out of range. */
evlm_gguf_vtype evlm_gguf_kv_type(const evlm_gguf *g, size_t i, evlm_gguf_vtype *elem);

/* Typed getters by key. A missing key or a value of another kind is an error naming the file
 * and key. Integer getters take any integer type whose value fits; f32 takes F32 or F64.
 * Strings point into the map and are not NUL-terminated. */
evlm_status evlm_gguf_get_str(const evlm_gguf *g, const char *key, const char **s, size_t *len);
evlm_status evlm_gguf_get_u32(const evlm_gguf *g, const char *key, uint32_t *v);
evlm_status evlm_gguf_get_i32(const evlm_gguf *g, const char *key, int32_t *v);
evlm_status evlm_gguf_get_u64(const evlm_gguf *g, const char *key, uint64_t *v);
evlm_status evlm_gguf_get_f32(const evlm_gguf *g, const char *key, float *v);
evlm_status evlm_gguf_get_bool(const evlm_gguf *g, const char *key, bool *v);
/* Arrays: n receives the element count. */
evlm_status evlm_gguf_get_arr_n(const evlm_gguf *g, const char *key, evlm_gguf_vtype *elem,
                                size_t *n);
/* Element i of an array of strings (O(1)). */
evlm_status evlm_gguf_get_arr_str(const evlm_gguf *g, const char *key, size_t i, const char **s,
                                  size_t *len);
/* Whole integer / float arrays into dst[cap] (cap >= the count, else an error). Integer
 * elements must fit int32; floats come from F32 or F64 elements. */
evlm_status evlm_gguf_get_arr_i32(const evlm_gguf *g, const char *key, int32_t *dst, size_t cap);
evlm_status evlm_gguf_get_arr_f32(const evlm_gguf *g, const char *key, float *dst, size_t cap);

/* Tensors with their GGUF names, in file order; views into the map. */
size_t evlm_gguf_tensor_count(const evlm_gguf *g);
const evlm_tensor *evlm_gguf_tensor_at(const evlm_gguf *g, size_t i);
const evlm_tensor *evlm_gguf_tensor_find(const evlm_gguf *g, const char *name);

/* A Hugging Face file stored verbatim as "evlm.file.<name>" (e.g. "config.json"); an error
 * naming the key when absent. */
evlm_status evlm_gguf_file_text(const evlm_gguf *g, const char *name, const char **text,
                                size_t *len);

/* The tensors as a weight set under their Hugging Face names (gguf_names.h, with the prefix of
 * "evlm.text_prefix", default "model."), so model loaders use evlm_weights_* unchanged. For
 * general.architecture "llama" the attn_q / attn_k rows are in llama.cpp's interleaved RoPE
 * order; they are put back into Hugging Face order in owned memory (every other tensor stays a
 * view). The set holds a reference to g: close g whenever convenient. */
evlm_status evlm_gguf_weights(evlm_gguf *g, evlm_weights **out);
/* The same with the vision tower and connector of llama.cpp's mmproj file mm (NULL: none) under
 * their Hugging Face names (gguf_mmproj.h); without "evlm.text_prefix" the text prefix follows
 * the projector ("model.text_model." for idefics3, else "model."). The set holds a reference to
 * both. */
evlm_status evlm_gguf_weights_pair(evlm_gguf *g, evlm_gguf *mm, evlm_weights **out);

/* ---- writer ----------------------------------------------------------------------------- */

typedef struct evlm_gguf_writer evlm_gguf_writer;

/* Produces rows [row0, row0 + n) of a tensor (a row is ne[0] elements of its type, in file
 * layout) into dst. Called in row order. */
typedef evlm_status (*evlm_gguf_fill_fn)(void *ctx, const evlm_tensor *t, int64_t row0, int64_t n,
                                         void *dst);
/* Called after each chunk; return nonzero to cancel the write (the file is not created). */
typedef int (*evlm_gguf_progress_fn)(void *ctx, uint64_t done_bytes, uint64_t total_bytes);

evlm_status evlm_gguf_writer_new(evlm_gguf_writer **out);
void evlm_gguf_writer_free(evlm_gguf_writer *w);

/* Metadata (copied). A key given twice is an error; general.alignment is the writer's. */
evlm_status evlm_gguf_writer_set_str(evlm_gguf_writer *w, const char *key, const char *s);
evlm_status evlm_gguf_writer_set_strn(evlm_gguf_writer *w, const char *key, const char *s,
                                      size_t n);
evlm_status evlm_gguf_writer_set_u32(evlm_gguf_writer *w, const char *key, uint32_t v);
evlm_status evlm_gguf_writer_set_i32(evlm_gguf_writer *w, const char *key, int32_t v);
evlm_status evlm_gguf_writer_set_u64(evlm_gguf_writer *w, const char *key, uint64_t v);
evlm_status evlm_gguf_writer_set_f32(evlm_gguf_writer *w, const char *key, float v);
evlm_status evlm_gguf_writer_set_bool(evlm_gguf_writer *w, const char *key, bool v);
/* lens may be NULL (NUL-terminated strings). */
evlm_status evlm_gguf_writer_set_arr_str(evlm_gguf_writer *w, const char *key, const char *const *s,
                                         const size_t *lens, size_t n);
evlm_status evlm_gguf_writer_set_arr_i32(evlm_gguf_writer *w, const char *key, const int32_t *v,
                                         size_t n);
evlm_status evlm_gguf_writer_set_arr_f32(evlm_gguf_writer *w, const char *key, const float *v,
                                         size_t n);

/* A tensor (name copied; data not copied: it must stay valid until the write). ne[0..n_dims-1]
 * > 0; a block type needs ne[0] % 32 == 0. data is contiguous in file layout. */
evlm_status evlm_gguf_writer_add_tensor(evlm_gguf_writer *w, const char *name, evlm_type type,
                                        int n_dims, const int64_t *ne, const void *data);
/* Same with the bytes produced at write time by fill(ctx, ...). */
evlm_status evlm_gguf_writer_add_tensor_fill(evlm_gguf_writer *w, const char *name, evlm_type type,
                                             int n_dims, const int64_t *ne, evlm_gguf_fill_fn fill,
                                             void *ctx);

/* Writes the file atomically; progress may be NULL. The writer can be freed afterwards. */
evlm_status evlm_gguf_writer_write(evlm_gguf_writer *w, const char *path,
                                   evlm_gguf_progress_fn progress, void *progress_ctx);

#endif
