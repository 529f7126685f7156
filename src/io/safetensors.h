/*
 * safetensors.h - reading and writing Hugging Face safetensors files.
 *
 * A weight set (weights.h) is filled from one model.safetensors or the shards listed in
 * model.safetensors.index.json, each mmapped read-only; tensors are views into the maps.
 * Reader: the 8-byte header length is bounded (EVLM_ST_MAX_HEADER), every offset, shape and
 * byte count is overflow-checked against the file size, dtypes other than F32/F16/BF16/I64/
 * I32/I8/U8 are rejected, duplicate names rejected; errors name the file and tensor.
 * Writer: atomic (temp file + rename), header padded to 8 bytes as the format recommends.
 * Not here: dtype conversion (the model loader does that).
 */
#ifndef EVLM_IO_SAFETENSORS_H
#define EVLM_IO_SAFETENSORS_H

#include "io/weights.h"

#define EVLM_ST_MAX_HEADER (100u << 20) /* 100 MiB, like the reference implementation */
#define EVLM_ST_MAX_DIMS   8            /* views have 4: the innermost extra dims fold into ne[0] */

/* path: a folder (model.safetensors.index.json or model.safetensors inside), an index json,
 * or a single .safetensors file. */
evlm_status evlm_weights_open(const char *path, evlm_weights **out);
/* Parses one safetensors image already in memory (no copy; data must outlive the set).
 * `what` names it in errors. Used by the fuzzer and tests. */
evlm_status evlm_weights_from_memory(const char *what, const void *data, size_t size,
                                     evlm_weights **out);

/* Writes tensors (contiguous; any supported type) to path atomically. */
evlm_status evlm_safetensors_write(const char *path, const evlm_tensor *tensors, size_t n);

#endif
