/* json.c - cJSON wrappers with file/field errors (see json.h). */
#include "core/json.h"
#include "core/file.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

evlm_status evlm_json_parse(const char *what, const char *data, size_t len, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!*out) {
        size_t off = end && end >= data ? (size_t)(end - data) : 0;
        return evlm__fail(EVLM_ERR_FORMAT, "%s: invalid JSON near byte %zu", what, off);
    }
    return EVLM_OK;
}

evlm_status evlm_json_load(const char *path, cJSON **out) {
    char *data;
    size_t n;
    *out = NULL;
    EVLM_TRY(evlm_read_file(path, EVLM_JSON_MAX_FILE, &data, &n));
    evlm_status st = evlm_json_parse(path, data, n, out);
    free(data);
    return st;
}

static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

evlm_status evlm_json_int(const char *file, const cJSON *obj, const char *key, int64_t lo,
                          int64_t hi, int64_t *out) {
    const cJSON *v = field(obj, key);
    if (!v) return EVLM_OK;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be an integer", file, key);
    if (d < (double)lo || d > (double)hi)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" = %.0f is out of range [%lld, %lld]",
                          file, key, d, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return EVLM_OK;
}

evlm_status evlm_json_int32(const char *file, const cJSON *obj, const char *key, int64_t lo,
                            int64_t hi, int *out) {
    if (!obj) return EVLM_OK;
    int64_t v = *out;
    EVLM_TRY(evlm_json_int(file, obj, key, lo, hi, &v));
    *out = (int)v;
    return EVLM_OK;
}

evlm_status evlm_json_parse_into(const char *what, const char *json, size_t len,
                                 evlm_json_fill_fn fn, void *out, size_t size) {
    if (!what) what = "config.json";
    if (!json || !out) return evlm__fail(EVLM_ERR_ARG, "%s: NULL argument", what);
    memset(out, 0, size);
    cJSON *root = NULL;
    EVLM_TRY(evlm_json_parse(what, json, len, &root));
    evlm_status st = fn(what, root, out);
    cJSON_Delete(root);
    if (st != EVLM_OK) memset(out, 0, size);
    return st;
}

evlm_status evlm_json_load_dir_into(const evlm_dir *d, const char *name, evlm_json_fill_fn fn,
                                    void *out, size_t size) {
    char path[4096];
    EVLM_TRY(evlm_dir_name(d, name, path, sizeof path));
    char *json = NULL;
    size_t n = 0;
    EVLM_TRY(evlm_dir_read(d, name, EVLM_JSON_MAX_FILE, &json, &n));
    evlm_status st = evlm_json_parse_into(path, json, n, fn, out, size);
    free(json);
    return st;
}

evlm_status evlm_json_num(const char *file, const cJSON *obj, const char *key, double *out) {
    const cJSON *v = field(obj, key);
    if (!v) return EVLM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be a finite number", file, key);
    *out = v->valuedouble;
    return EVLM_OK;
}

evlm_status evlm_json_bool(const char *file, const cJSON *obj, const char *key, bool *out) {
    const cJSON *v = field(obj, key);
    if (!v) return EVLM_OK;
    if (!cJSON_IsBool(v))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be true or false", file, key);
    *out = cJSON_IsTrue(v);
    return EVLM_OK;
}

evlm_status evlm_json_str(const char *file, const cJSON *obj, const char *key, const char **out) {
    const cJSON *v = field(obj, key);
    if (!v) return EVLM_OK;
    if (!cJSON_IsString(v))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be a string", file, key);
    *out = v->valuestring;
    return EVLM_OK;
}

evlm_status evlm_json_load_dir(const evlm_dir *d, const char *name, cJSON **out) {
    if (!d->get) {
        char path[4096];
        EVLM_TRY(evlm_dir_name(d, name, path, sizeof path));
        return evlm_json_load(path, out);
    }
    char path[4096], *data;
    size_t len;
    EVLM_TRY(evlm_dir_name(d, name, path, sizeof path));
    EVLM_TRY(evlm_dir_read(d, name, EVLM_JSON_MAX_FILE, &data, &len));
    evlm_status st = evlm_json_parse(path, data, len, out);
    free(data);
    return st;
}

evlm_status evlm_json_image_processor(const evlm_dir *d, cJSON **root, const cJSON **obj,
                                      char *path, size_t cap) {
    *root = NULL;
    *obj = NULL;
    EVLM_TRY(evlm_dir_name(d, "processor_config.json", path, cap));
    if (evlm_dir_has(d, "processor_config.json")) {
        EVLM_TRY(evlm_json_load_dir(d, "processor_config.json", root));
        const cJSON *ip = cJSON_GetObjectItemCaseSensitive(*root, "image_processor");
        if (ip && !cJSON_IsNull(ip)) {
            *obj = ip;
            return EVLM_OK;
        }
        cJSON_Delete(*root);
        *root = NULL;
    }
    EVLM_TRY(evlm_dir_name(d, "preprocessor_config.json", path, cap));
    if (!evlm_dir_has(d, "preprocessor_config.json"))
        return evlm__fail(EVLM_ERR_IO,
                          "%s: no image processor (processor_config.json with \"image_processor\" "
                          "or preprocessor_config.json)",
                          d->path);
    EVLM_TRY(evlm_json_load_dir(d, "preprocessor_config.json", root));
    *obj = *root;
    return EVLM_OK;
}
