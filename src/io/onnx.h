/*
 * onnx.h - a small ONNX model writer over the protobuf-c structs protoc-c generates from the
 * onnx.proto of Debian's libonnx-dev (build/.../gen/onnx.pb-c.h): one graph with static-shape
 * inputs and outputs, initializers (raw data inline, or external data in a side file named by
 * location / offset / length, so several graphs can share one weight file), nodes with int,
 * ints and float attributes, one opset import (default domain), and an atomic save (temporary
 * file + fsync + rename).
 *
 * Building is sticky: the first failure (out of memory, a bad name or shape) is recorded, later
 * calls do nothing, and evlm_onnx_save / evlm_onnx_status return it, so a graph builder checks
 * once at the end. Not here: shape inference, checking that node inputs exist or that an op is
 * valid (ONNX Runtime does that when it loads the file), writing the external data itself (the
 * caller writes its weight file and passes the offsets), subgraphs, other domains.
 */
#ifndef EVLM_IO_ONNX_H
#define EVLM_IO_ONNX_H

#include "evlm.h"

#include <stddef.h>
#include <stdint.h>

/* TensorProto.DataType values */
typedef enum evlm_onnx_dtype {
    EVLM_ONNX_F32 = 1,
    EVLM_ONNX_U8 = 2,
    EVLM_ONNX_I8 = 3,
    EVLM_ONNX_U16 = 4,
    EVLM_ONNX_I16 = 5,
    EVLM_ONNX_I32 = 6,
    EVLM_ONNX_I64 = 7,
    EVLM_ONNX_F16 = 10,
    EVLM_ONNX_I4 = 22, /* two per byte, the first in the low nibble (onnx.proto of IR 10) */
} evlm_onnx_dtype;

#define EVLM_ONNX_MAX_DIMS 8

/* Bytes of one element of dtype (0 for an unknown dtype; 1 for int4, whose n elements take
 * (n + 1) / 2 bytes). */
size_t evlm_onnx_dtype_size(evlm_onnx_dtype dt);
/* "float32", "int64", ... (the names manifest.json uses). */
const char *evlm_onnx_dtype_name(evlm_onnx_dtype dt);

typedef struct evlm_onnx evlm_onnx;

/* A model of one graph named graph_name, importing the default domain at opset. */
evlm_status evlm_onnx_new(const char *graph_name, int64_t opset, evlm_onnx **out);
void evlm_onnx_free(evlm_onnx *g);

/* Graph inputs / outputs of static shape (every dim >= 1). */
void evlm_onnx_input(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                     const int64_t *shape);
void evlm_onnx_output(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                      const int64_t *shape);
/* An initializer whose bytes (the shape's element count x the dtype's size) are copied into the
 * graph; ndim 0 is a scalar. */
void evlm_onnx_init(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                    const int64_t *shape, const void *data);
/* An initializer stored at offset of the file location (relative to the model's folder); its
 * length is the shape's element count x the dtype's size. */
void evlm_onnx_init_external(evlm_onnx *g, const char *name, evlm_onnx_dtype dt, int ndim,
                             const int64_t *shape, const char *location, uint64_t offset);
/* A node of the default domain; returns its index for the attribute calls (-1 after a
 * failure). Node names are the op type and the index. */
int evlm_onnx_node(evlm_onnx *g, const char *op_type, int n_in, const char *const *in, int n_out,
                   const char *const *out);
void evlm_onnx_attr_int(evlm_onnx *g, int node, const char *name, int64_t v);
void evlm_onnx_attr_ints(evlm_onnx *g, int node, const char *name, int n, const int64_t *v);
void evlm_onnx_attr_float(evlm_onnx *g, int node, const char *name, float v);

/* The first building failure, or EVLM_OK. */
evlm_status evlm_onnx_status(const evlm_onnx *g);
/* The serialized model (malloc'd; free it). */
evlm_status evlm_onnx_pack(const evlm_onnx *g, uint8_t **out, size_t *n);
/* Writes the model to path atomically. */
evlm_status evlm_onnx_save(const evlm_onnx *g, const char *path);

#endif
