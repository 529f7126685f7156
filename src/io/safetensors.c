/*
 * safetensors.c - reader and writer of Hugging Face safetensors files (see safetensors.h).
 *
 * Reader: every file is mmapped read-only and its JSON header is parsed with cJSON; each
 * tensor becomes an evlm_tensor view into the map (ne in ggml order, contiguous nb). All
 * numbers of the header are treated as hostile: the header length is bounded by
 * EVLM_ST_MAX_HEADER and the file size, dims and offsets must be non-negative integers below
 * 2^53 (the exact range of a JSON double), the element count and byte size are
 * overflow-checked, and [begin, end) must lie inside the data section and match the shape.
 * Tensors may overlap or leave holes (the format does not forbid it and nothing here needs it
 * forbidden). The tensors go into a weight set (weights.c: names, lookup, the repack).
 *
 * Not here: dtype conversion, alignment fix-ups (a tensor's data pointer may be unaligned;
 * kernels that need alignment copy), GGUF parsing (gguf.c).
 */
#include "io/safetensors.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "quant/repack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SAFE_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */

/* ---- header parsing --------------------------------------------------------------------- */

/* the dtype strings are the st_dtype column of the type table (core/tensor.h) */
static int parse_dtype(const char *s, evlm_type *out) {
    evlm_type t = evlm_type_from_st_dtype(s);
    if (t == EVLM_TYPE_COUNT) return 0;
    *out = t;
    return 1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d >= MAX_SAFE_INT || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static evlm_status parse_tensor(const char *file, const cJSON *item, const uint8_t *data,
                                uint64_t data_size, evlm_tensor *t) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': entry is not an object", file, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(jd))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': \"dtype\" missing or not a string",
                          file, name);
    if (!cJSON_IsArray(js))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': \"shape\" missing or not an array",
                          file, name);
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': \"data_offsets\" must be an array [begin, end]", file,
                          name);

    memset(t, 0, sizeof *t);
    t->name = name;
    if (!parse_dtype(jd->valuestring, &t->type))
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: tensor '%s': dtype \"%s\" is not supported",
                          file, name, jd->valuestring);

    int n_dims = cJSON_GetArraySize(js);
    if (n_dims > EVLM_ST_MAX_DIMS)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: tensor '%s': %d dimensions (at most %d supported)", file, name,
                          n_dims, EVLM_ST_MAX_DIMS);
    /* more than 4 dims (a Conv3d kernel): the innermost n_dims - 3 fold into ne[0] */
    int fold = n_dims > EVLM_MAX_DIMS ? n_dims - EVLM_MAX_DIMS : 0;
    t->n_dims = n_dims - fold;
    for (int i = 0; i < EVLM_MAX_DIMS; i++) t->ne[i] = 1;
    uint64_t nel = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        uint64_t v;
        if (!json_uint(d, &v))
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: tensor '%s': shape[%d] is not a non-negative integer", file,
                              name, i);
        if (v != 0 && nel > (uint64_t)INT64_MAX / v)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': element count overflows", file,
                              name);
        nel *= v;
        /* ggml order: the last safetensors dim is ne[0] */
        int at = n_dims - 1 - i - fold;
        t->ne[at < 0 ? 0 : at] *= (int64_t)v;
        i++;
    }
    uint64_t ts = evlm_type_size(t->type);
    if (nel > UINT64_MAX / ts || nel * ts > (uint64_t)SIZE_MAX)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': byte size overflows", file, name);
    uint64_t nbytes = nel * ts;

    uint64_t begin, end;
    if (!json_uint(cJSON_GetArrayItem(jo, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(jo, 1), &end))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets must be non-negative integers", file,
                          name);
    if (begin > end)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] have begin > end", file, name,
                          (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] exceed the data size %llu",
                          file, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)data_size);
    if (end - begin != nbytes)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but the "
                          "%s shape needs %llu",
                          file, name, (unsigned long long)begin, (unsigned long long)end,
                          (unsigned long long)(end - begin), jd->valuestring,
                          (unsigned long long)nbytes);
    evlm_tensor_set_contiguous(t);
    /* the view is read-only in practice; evlm_tensor has one pointer type for both uses */
    t->data = data ? (void *)(uintptr_t)(data + begin) : NULL;
    return EVLM_OK;
}

/* Parses one safetensors image and adds its tensors to w as file number `file`. */
static evlm_status parse_image(evlm_weights *w, uint32_t file, const char *what,
                               const uint8_t *base, size_t size) {
    if (size < 8)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length",
                          what, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | base[i];
    if (n > EVLM_ST_MAX_HEADER)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes",
                          what, (unsigned long long)n, EVLM_ST_MAX_HEADER);
    if (n > size - 8)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: header length %llu exceeds the file size %zu (truncated file?)",
                          what, (unsigned long long)n, size);
    if (n < 2)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: header length %llu is too short", what,
                          (unsigned long long)n);
    cJSON *root = NULL;
    if (evlm_json_parse(what, (const char *)base + 8, (size_t)n, &root) != EVLM_OK)
        return evlm__fail_prefix(EVLM_ERR_FORMAT, "safetensors header");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return evlm__fail(EVLM_ERR_FORMAT, "%s: header is not a JSON object", what);
    }
    const uint8_t *data = base + 8 + n;
    uint64_t data_size = size - 8 - n;
    evlm_status st = EVLM_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (!item->string) continue;
        if (strcmp(item->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) {
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: \"__metadata__\" is not an object", what);
                break;
            }
            continue;
        }
        evlm_tensor t;
        st = parse_tensor(what, item, data, data_size, &t);
        if (st != EVLM_OK) break;
        int dup;
        st = evlm__weights_add(w, &t, file, &dup);
        if (st != EVLM_OK) break;
        if (dup) {
            uint32_t other = evlm__weights_file_of(w, evlm_weights_find(w, t.name));
            if (other == file)
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' appears twice", what, t.name);
            else
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' is also in %s", what, t.name,
                                evlm__weights_file_path(w, other));
            break;
        }
    }
    cJSON_Delete(root);
    return st;
}

/* ---- weight sets ------------------------------------------------------------------------ */

static evlm_status open_one(evlm_weights *w, const char *path) {
    uint32_t idx = 0;
    evlm_map map;
    EVLM_TRY(evlm_map_file(path, &map));
    evlm_status st = evlm__weights_add_file(w, path, &map, &idx);
    if (st != EVLM_OK) {
        evlm_unmap(&map);
        return st;
    }
    return parse_image(w, idx, path, map.data, map.size);
}

evlm_status evlm_weights_from_memory(const char *what, const void *data, size_t size,
                                     evlm_weights **out) {
    *out = NULL;
    if (!what) what = "safetensors";
    if (!data && size) return evlm__fail(EVLM_ERR_ARG, "%s: NULL data", what);
    evlm_weights *w = evlm__weights_new();
    if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    uint32_t idx = 0;
    evlm_status st = evlm__weights_add_file(w, what, NULL, &idx);
    if (st == EVLM_OK) st = parse_image(w, idx, what, data, size);
    if (st != EVLM_OK) {
        evlm_weights_free(w);
        return st;
    }
    *out = w;
    return EVLM_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Shard file names must stay inside the index's folder. */
static int shard_name_ok(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static evlm_status open_index(evlm_weights *w, const char *index_path) {
    cJSON *root;
    EVLM_TRY(evlm_json_load(index_path, &root));
    evlm_status st = EVLM_OK;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: \"weight_map\" missing or not an object", index_path);
        goto done;
    }
    if (!map->child) {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: \"weight_map\" is empty", index_path);
        goto done;
    }
    char dir[4096];
    const char *slash = strrchr(index_path, '/');
    if (slash) {
        size_t dn = (size_t)(slash - index_path);
        if (dn >= sizeof dir) {
            st = evlm__fail(EVLM_ERR_ARG, "%s: path too long", index_path);
            goto done;
        }
        memcpy(dir, index_path, dn);
        dir[dn] = 0;
        if (dn == 0) strcpy(dir, "/");
    } else {
        strcpy(dir, ".");
    }
    /* open each shard once, in the order of first mention */
    const char **shard_names = NULL;
    size_t n_shards = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e)) {
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: weight_map[\"%s\"] is not a string", index_path,
                            e->string ? e->string : "");
            break;
        }
        if (!shard_name_ok(e->valuestring)) {
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "%s: weight_map[\"%s\"]: shard name \"%s\" must be a plain file name "
                            "in the same folder",
                            index_path, e->string, e->valuestring);
            break;
        }
        size_t k = 0;
        while (k < n_shards && strcmp(shard_names[k], e->valuestring) != 0) k++;
        if (k < n_shards) continue;
        const char **ns = realloc(shard_names, (n_shards + 1) * sizeof *ns);
        if (!ns) {
            st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", index_path);
            break;
        }
        shard_names = ns;
        shard_names[n_shards++] = e->valuestring;
        char path[4096];
        st = evlm_path_join(path, sizeof path, dir, e->valuestring);
        if (st == EVLM_OK && !evlm_file_exists(path))
            st = evlm__fail(EVLM_ERR_IO, "%s: shard %s (of tensor '%s') not found", index_path,
                            path, e->string);
        if (st == EVLM_OK) st = open_one(w, path);
        if (st != EVLM_OK) break;
    }
    /* every tensor of the map must be in the shard the map names */
    if (st == EVLM_OK) {
        cJSON_ArrayForEach(e, map) {
            const evlm_tensor *t = evlm_weights_find(w, e->string);
            size_t k = 0;
            while (k < n_shards && strcmp(shard_names[k], e->valuestring) != 0) k++;
            /* files[] are exactly the shards, in the same order */
            if (!t || evlm__weights_file_of(w, t) != k) {
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' is not in shard %s", index_path,
                                e->string, e->valuestring);
                break;
            }
        }
    }
    free(shard_names);
done:
    cJSON_Delete(root);
    return st;
}

evlm_status evlm_weights_open(const char *path, evlm_weights **out) {
    *out = NULL;
    if (!path) return evlm__fail(EVLM_ERR_ARG, "evlm_weights_open: NULL path");
    evlm_weights *w = evlm__weights_new();
    if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    evlm_status st;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char p[4096];
        st = evlm_path_join(p, sizeof p, path, "model.safetensors.index.json");
        if (st == EVLM_OK) {
            if (evlm_file_exists(p)) {
                st = open_index(w, p);
            } else {
                st = evlm_path_join(p, sizeof p, path, "model.safetensors");
                if (st == EVLM_OK && !evlm_file_exists(p))
                    st = evlm__fail(EVLM_ERR_IO,
                                    "%s: no model.safetensors.index.json or model.safetensors",
                                    path);
                if (st == EVLM_OK) st = open_one(w, p);
            }
        }
    } else if (ends_with(path, ".json")) {
        st = open_index(w, path);
    } else {
        st = open_one(w, path);
    }
    if (st != EVLM_OK) {
        evlm_weights_free(w);
        return st;
    }
    *out = w;
    return EVLM_OK;
}

/* ---- writer ----------------------------------------------------------------------------- */

static evlm_status json_escape(evlm_str *s, const char *z) {
    EVLM_TRY(evlm_str_append(s, "\"", 1));
    for (const unsigned char *p = (const unsigned char *)z; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            EVLM_TRY(evlm_str_append(s, e, 2));
        } else if (*p < 0x20) {
            EVLM_TRY(evlm_str_appendf(s, "\\u%04x", *p));
        } else {
            EVLM_TRY(evlm_str_append(s, (const char *)p, 1));
        }
    }
    return evlm_str_append(s, "\"", 1);
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static evlm_status check_tensors(const char *path, const evlm_tensor *ts, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = &ts[i];
        if (!t->name || !evlm_type_traits_of(t->type)->st_dtype || t->n_dims < 0 ||
            t->n_dims > EVLM_MAX_DIMS)
            return evlm__fail(EVLM_ERR_ARG, "%s: tensor %zu: bad name, type or n_dims", path, i);
        size_t nb = evlm_type_size(t->type);
        for (int d = 0; d < EVLM_MAX_DIMS; d++) {
            if (t->ne[d] < 0 || (d >= t->n_dims && t->ne[d] != 1))
                return evlm__fail(EVLM_ERR_ARG, "%s: tensor '%s': bad ne[%d]", path, t->name, d);
            if (t->ne[d] > 1 && t->nb[d] != nb)
                return evlm__fail(EVLM_ERR_ARG, "%s: tensor '%s' is not contiguous", path, t->name);
            if (t->ne[d] && nb > SIZE_MAX / (size_t)t->ne[d])
                return evlm__fail(EVLM_ERR_ARG, "%s: tensor '%s' is too large", path, t->name);
            nb *= (size_t)t->ne[d];
        }
        if (nb && !t->data)
            return evlm__fail(EVLM_ERR_ARG, "%s: tensor '%s' has no data", path, t->name);
    }
    if (n < 2) return EVLM_OK;
    const char **names = malloc(n * sizeof *names);
    if (!names) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) names[i] = ts[i].name;
    qsort(names, n, sizeof *names, cmp_names);
    evlm_status st = EVLM_OK;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            st = evlm__fail(EVLM_ERR_ARG, "%s: tensor '%s' given twice", path, names[i]);
            break;
        }
    }
    free(names);
    return st;
}

evlm_status evlm_safetensors_write(const char *path, const evlm_tensor *tensors, size_t n) {
    if (!path || (n && !tensors)) return evlm__fail(EVLM_ERR_ARG, "safetensors_write: NULL arg");
    EVLM_TRY(check_tensors(path, tensors, n));
    evlm_str h = {0};
    evlm_status st = evlm_str_appendz(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        const evlm_tensor *t = &tensors[i];
        size_t nb = evlm_tensor_nbytes(t);
        st = evlm_str_append(&h, ",", 1);
        if (st == EVLM_OK) st = json_escape(&h, t->name);
        if (st == EVLM_OK)
            st = evlm_str_appendf(&h, ":{\"dtype\":\"%s\",\"shape\":[",
                                  evlm_type_traits_of(t->type)->st_dtype);
        for (int d = t->n_dims - 1; d >= 0 && st == EVLM_OK; d--)
            st = evlm_str_appendf(&h, "%lld%s", (long long)t->ne[d], d ? "," : "");
        if (st == EVLM_OK)
            st = evlm_str_appendf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                  (unsigned long long)(off + nb));
        off += nb;
    }
    if (st == EVLM_OK) st = evlm_str_append(&h, "}", 1);
    while (st == EVLM_OK && h.len % 8) st = evlm_str_append(&h, " ", 1);
    if (st != EVLM_OK) {
        evlm_str_free(&h);
        return st;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));

    evlm_afile af;
    st = evlm_afile_open(&af, path);
    if (st != EVLM_OK) {
        evlm_str_free(&h);
        return st;
    }
    st = evlm_afile_write(&af, len8, 8);
    if (st == EVLM_OK) st = evlm_afile_write(&af, h.data, h.len);
    for (size_t i = 0; i < n && st == EVLM_OK; i++)
        st = evlm_afile_write(&af, tensors[i].data, evlm_tensor_nbytes(&tensors[i]));
    evlm_str_free(&h);
    if (st != EVLM_OK) {
        evlm_afile_abort(&af);
        return st;
    }
    return evlm_afile_commit(&af);
}
