/*
 * json.h - cJSON with errors that name the file and field.
 *
 * Getters take the file name only for messages. Missing optional fields leave *out untouched
 * and return OK; present fields of the wrong type are errors.
 */
#ifndef EVLM_CORE_JSON_H
#define EVLM_CORE_JSON_H

#include "core/file.h"
#include "evlm.h"

#include <cjson/cJSON.h>

#define EVLM_JSON_MAX_FILE (256u << 20) /* 256 MiB: larger "JSON" is hostile */

/* Parses a file; error names the file and the byte offset of the syntax error. */
evlm_status evlm_json_load(const char *path, cJSON **out);
/* Parses file name of a folder (a directory or a container's embedded files). */
evlm_status evlm_json_load_dir(const evlm_dir *d, const char *name, cJSON **out);
/* The image processor's settings in a model folder: "image_processor" of processor_config.json
 * (transformers 5), else the whole preprocessor_config.json. *root owns the tree, *obj points
 * into it, path (cap bytes) receives the file's name for messages. */
evlm_status evlm_json_image_processor(const evlm_dir *d, cJSON **root, const cJSON **obj,
                                      char *path, size_t cap);
/* Parses a buffer; `what` names it in errors. */
evlm_status evlm_json_parse(const char *what, const char *data, size_t len, cJSON **out);

/* A config struct of `size` bytes at out filled by fn from JSON text (`what` names it, default
 * "config.json"): zeroed first, and again when parsing or fn fails. */
typedef evlm_status (*evlm_json_fill_fn)(const char *file, const cJSON *root, void *out);
evlm_status evlm_json_parse_into(const char *what, const char *json, size_t len,
                                 evlm_json_fill_fn fn, void *out, size_t size);
/* The same from the file `name` of d, named in errors by its path. */
evlm_status evlm_json_load_dir_into(const evlm_dir *d, const char *name, evlm_json_fill_fn fn,
                                    void *out, size_t size);

/* Optional fields (ok when absent or null). */
evlm_status evlm_json_int(const char *file, const cJSON *obj, const char *key, int64_t lo,
                          int64_t hi, int64_t *out);
/* The same into an int; obj NULL (an absent section) reads nothing. */
evlm_status evlm_json_int32(const char *file, const cJSON *obj, const char *key, int64_t lo,
                            int64_t hi, int *out);
evlm_status evlm_json_num(const char *file, const cJSON *obj, const char *key, double *out);
evlm_status evlm_json_bool(const char *file, const cJSON *obj, const char *key, bool *out);
/* *out points into the cJSON tree. */
evlm_status evlm_json_str(const char *file, const cJSON *obj, const char *key, const char **out);

#endif
