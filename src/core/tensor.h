/*
 * tensor.h - element types, their traits table and the plain tensor view used everywhere inside
 * evlm.
 *
 * Shapes follow ggml: ne[0] is the fastest-varying (innermost) dimension and nb[i] is the byte
 * stride of dimension i. A PyTorch / safetensors shape [rows, cols] is ne = {cols, rows}, so a
 * Linear weight [out_features, in_features] has ne[0] = in, ne[1] = out.
 * A view never owns its data (weights are mmapped, activations live in an arena).
 *
 * Each type is one row of evlm_type_traits (tensor.c), indexed by the enum: what it is called
 * (here, in GGUF, in safetensors), how big a block is, what kind of values it holds and how it
 * pairs with its 16-row interleaved form. Code asks the row, never a list or range of enum
 * values. Only plain data lives here because core depends on nothing: the row functions of a
 * type (to / from float, the reference dot) sit in the same order in quant/types.c, its kernels
 * in src/kernels. A new format is its enum value, its row here, its row in quant/types.c and its
 * kernels. Not here: converting values (quant), choosing kernels (kernels/dispatch.c).
 */
#ifndef EVLM_CORE_TENSOR_H
#define EVLM_CORE_TENSOR_H

#include <stdbool.h>

#include "evlm.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EVLM_MAX_DIMS 4

/* evlm_type and evlm_type_name are public (evlm.h). The block layouts of the quantized types are
 * in quant/quants.h; the *_R16 interleavings, built at load, in quant/repack.h. */

typedef struct evlm_tensor {
    const char *name; /* owned by whoever produced the view */
    evlm_type type;
    int n_dims;
    int64_t ne[EVLM_MAX_DIMS]; /* unused dims are 1 */
    size_t nb[EVLM_MAX_DIMS];
    void *data;
} evlm_tensor;

/* Everything that is plain data about one type (a row of the table in tensor.c). */
typedef struct evlm_type_traits {
    const char *name;      /* as evlm prints it: "Q4_1", "BF16_R16"; "?" for an invalid type */
    int block;             /* elements per block along ne[0]: 1 for plain types */
    size_t size;           /* bytes per block (per element for plain types); 0 when invalid */
    int head;              /* block-quantized: bytes of the fp16 fields (d, then m) before the
                            * quants; 0 otherwise */
    bool is_float;         /* F32 / F16 / BF16 values (and their R16 forms) */
    bool is_quant;         /* block-quantized (and their R16 forms) */
    bool memory_only;      /* built at load, never read from or written to a file */
    evlm_type r16;         /* the 16-row interleaved form; EVLM_TYPE_COUNT when none */
    evlm_type r16_base;    /* an R16 form: the file type it is built from; else EVLM_TYPE_COUNT */
    int gguf_id;           /* GGML_TYPE_* number; -1 when GGUF has none */
    const char *gguf_name; /* ggml's type name ("q4_1", "bf16"); NULL when none */
    const char *st_dtype;  /* safetensors dtype string; NULL when none */
    int kv;                /* as a KV cache element: 0 never, else EVLM_TYPE_KV_VALUES or
                            * EVLM_TYPE_KV_SCALED (kernels/attn_kv.h reads both) */
    bool s24; /* a 2:4-sparse form (quant/sparse24.h): 16 rows interleaved like an R16 form
               * (r16_base is its file type) but only 2 of every 4 values stored */
    bool kq;  /* a k-quant (quant/kquants.h): 256-element super-blocks; not is_quant, whose
               * 32-element layout the int8 kernels and R16 forms assume */
} evlm_type_traits;

/* evlm_type_traits.kv: rows hold the values (F32, F16), or int8 with a float scale per row */
#define EVLM_TYPE_KV_VALUES 1
#define EVLM_TYPE_KV_SCALED 2

/* Largest block of any type (bytes): buffers that hold one block of whatever type. */
#define EVLM_TYPE_MAX_BLOCK_BYTES 256

/* The table, one row per type and a last row ([EVLM_TYPE_COUNT]) for every invalid value. */
extern const evlm_type_traits evlm__type_traits[EVLM_TYPE_COUNT + 1];
static inline const evlm_type_traits *evlm_type_traits_of(evlm_type t) {
    return &evlm__type_traits[(unsigned)t < EVLM_TYPE_COUNT ? t : EVLM_TYPE_COUNT];
}

/* Elements per block: 1 for plain types, 32 for the quantized ones. */
int evlm_type_block(evlm_type t);
/* Bytes of one block (of one element for plain types); 0 for an invalid type. */
size_t evlm_type_size(evlm_type t);
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t evlm_row_bytes(evlm_type t, int64_t n);
static inline int evlm_type_is_quant(evlm_type t) {
    return evlm_type_traits_of(t)->is_quant;
}
/* float values as a file holds them (F32, BF16, ...; not an R16 form) */
static inline bool evlm_type_is_file_float(evlm_type t) {
    const evlm_type_traits *tt = evlm_type_traits_of(t);
    return tt->is_float && !tt->memory_only;
}
/* block-quantized values as a file holds them (Q8_0, ...; not an R16 form) */
static inline bool evlm_type_is_file_quant(evlm_type t) {
    const evlm_type_traits *tt = evlm_type_traits_of(t);
    return tt->is_quant && !tt->memory_only;
}
/* The type of a GGML_TYPE_* id, ggml type name ("q8_0", case-sensitive) or safetensors dtype
 * ("BF16"); EVLM_TYPE_COUNT when no type has it. */
evlm_type evlm_type_from_gguf_id(uint32_t id);
evlm_type evlm_type_from_gguf_name(const char *name);
evlm_type evlm_type_from_st_dtype(const char *dtype);
/* Number of elements (product of ne). */
int64_t evlm_tensor_nelements(const evlm_tensor *t);
/* Bytes of a contiguous tensor (nelements / block * block bytes). */
size_t evlm_tensor_nbytes(const evlm_tensor *t);
/* Fills nb for a contiguous layout from type and ne. */
void evlm_tensor_set_contiguous(evlm_tensor *t);

/* ---- half-precision conversions (exact in the float direction) ---- */

static inline float evlm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t evlm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float evlm_f16_to_f32(uint16_t h);
uint16_t evlm_f32_to_f16(float f);

#endif
