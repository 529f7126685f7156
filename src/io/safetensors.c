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
 * forbidden). Names are looked up in an open-addressing hash table.
 *
 * evlm_weights_from_views builds the same set over views into memory owned elsewhere (GGUF).
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

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SAFE_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */

typedef struct st_file {
    char *path;   /* as given (for messages) */
    evlm_map map; /* unmapped on free when mapped */
    int mapped;
} st_file;

struct evlm_weights {
    st_file *files;
    size_t n_files;
    evlm_tensor *tensors;
    uint32_t *file_of; /* index into files, per tensor */
    size_t n, cap;
    uint32_t *slots; /* hash table of tensor index + 1 (0 = empty); size slot_cap (power of 2) */
    size_t slot_cap;
    void *owner; /* evlm_weights_from_views: whoever owns the memory the views point into */
    void (*free_owner)(void *);
    void **owned; /* buffers of repacked tensors (evlm_weights_repack_r16) */
    size_t n_owned;
    uint8_t *matrix; /* per tensor: 1 once evlm_weights_note_matrix saw it (room for cap) */
};

/* ---- hash table ------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static size_t find_slot(const evlm_weights *w, const char *name) {
    size_t mask = w->slot_cap - 1;
    size_t i = (size_t)hash_str(name) & mask;
    while (w->slots[i] && strcmp(w->tensors[w->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return i;
}

static evlm_status grow_slots(evlm_weights *w) {
    size_t cap = w->slot_cap ? w->slot_cap * 2 : 64;
    uint32_t *old = w->slots;
    size_t old_cap = w->slot_cap;
    w->slots = calloc(cap, sizeof *w->slots);
    if (!w->slots) {
        w->slots = old;
        return evlm__fail(EVLM_ERR_NOMEM, "safetensors: out of memory");
    }
    w->slot_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i]) w->slots[find_slot(w, w->tensors[old[i] - 1].name)] = old[i];
    free(old);
    return EVLM_OK;
}

/* Appends a tensor (name copied) unless the name exists; *dup set when it does. */
static evlm_status add_tensor(evlm_weights *w, const evlm_tensor *t, uint32_t file, int *dup) {
    *dup = 0;
    if (w->n >= UINT32_MAX - 1) return evlm__fail(EVLM_ERR_NOMEM, "safetensors: too many tensors");
    if ((w->n + 1) * 2 > w->slot_cap) EVLM_TRY(grow_slots(w));
    size_t slot = find_slot(w, t->name);
    if (w->slots[slot]) {
        *dup = 1;
        return EVLM_OK;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        evlm_tensor *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt) return evlm__fail(EVLM_ERR_NOMEM, "safetensors: out of memory");
        w->tensors = nt;
        uint32_t *nf = realloc(w->file_of, cap * sizeof *nf);
        if (!nf) return evlm__fail(EVLM_ERR_NOMEM, "safetensors: out of memory");
        w->file_of = nf;
        uint8_t *nm = realloc(w->matrix, cap);
        if (!nm) return evlm__fail(EVLM_ERR_NOMEM, "safetensors: out of memory");
        memset(nm + w->cap, 0, cap - w->cap);
        w->matrix = nm;
        w->cap = cap;
    }
    char *name = strdup(t->name);
    if (!name) return evlm__fail(EVLM_ERR_NOMEM, "safetensors: out of memory");
    w->tensors[w->n] = *t;
    w->tensors[w->n].name = name;
    w->file_of[w->n] = file;
    w->n++;
    w->slots[slot] = (uint32_t)w->n;
    return EVLM_OK;
}

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
        st = add_tensor(w, &t, file, &dup);
        if (st != EVLM_OK) break;
        if (dup) {
            uint32_t other = w->file_of[w->slots[find_slot(w, t.name)] - 1];
            if (other == file)
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' appears twice", what, t.name);
            else
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' is also in %s", what, t.name,
                                w->files[other].path);
            break;
        }
    }
    cJSON_Delete(root);
    return st;
}

/* ---- weight sets ------------------------------------------------------------------------ */

static evlm_weights *weights_alloc(void) {
    return calloc(1, sizeof(evlm_weights));
}

void evlm_weights_free(evlm_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free((void *)(uintptr_t)w->tensors[i].name);
    for (size_t i = 0; i < w->n_files; i++) {
        if (w->files[i].mapped) evlm_unmap(&w->files[i].map);
        free(w->files[i].path);
    }
    free(w->files);
    free(w->tensors);
    free(w->file_of);
    free(w->matrix);
    free(w->slots);
    for (size_t i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    if (w->owner && w->free_owner) w->free_owner(w->owner);
    free(w);
}

/* Registers a file (path copied); *index receives its number. */
static evlm_status add_file(evlm_weights *w, const char *path, uint32_t *index) {
    st_file *nf = realloc(w->files, (w->n_files + 1) * sizeof *nf);
    if (!nf) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    w->files = nf;
    st_file *f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    *index = (uint32_t)w->n_files++;
    return EVLM_OK;
}

static evlm_status open_one(evlm_weights *w, const char *path) {
    uint32_t idx = 0;
    EVLM_TRY(add_file(w, path, &idx));
    st_file *f = &w->files[idx];
    EVLM_TRY(evlm_map_file(path, &f->map));
    f->mapped = 1;
    return parse_image(w, idx, path, f->map.data, f->map.size);
}

evlm_status evlm_weights_from_memory(const char *what, const void *data, size_t size,
                                     evlm_weights **out) {
    *out = NULL;
    if (!what) what = "safetensors";
    if (!data && size) return evlm__fail(EVLM_ERR_ARG, "%s: NULL data", what);
    evlm_weights *w = weights_alloc();
    if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    uint32_t idx = 0;
    evlm_status st = add_file(w, what, &idx);
    if (st == EVLM_OK) st = parse_image(w, idx, what, data, size);
    if (st != EVLM_OK) {
        evlm_weights_free(w);
        return st;
    }
    *out = w;
    return EVLM_OK;
}

evlm_status evlm_weights_from_views(const char *what, const evlm_tensor *views, size_t n,
                                    void *owner, void (*free_owner)(void *), evlm_weights **out) {
    *out = NULL;
    if (!what) what = "weights";
    if (n && !views) return evlm__fail(EVLM_ERR_ARG, "%s: NULL views", what);
    evlm_weights *w = weights_alloc();
    if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    uint32_t idx = 0;
    evlm_status st = add_file(w, what, &idx);
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        if (!views[i].name) {
            st = evlm__fail(EVLM_ERR_ARG, "%s: view %zu has no name", what, i);
            break;
        }
        int dup;
        st = add_tensor(w, &views[i], idx, &dup);
        if (st == EVLM_OK && dup)
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' appears twice", what, views[i].name);
    }
    if (st != EVLM_OK) {
        evlm_weights_free(w);
        return st;
    }
    w->owner = owner;
    w->free_owner = free_owner;
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
            if (!t || w->file_of[t - w->tensors] != k) {
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
    evlm_weights *w = weights_alloc();
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

size_t evlm_weights_count(const evlm_weights *w) {
    return w ? w->n : 0;
}

const evlm_tensor *evlm_weights_at(const evlm_weights *w, size_t i) {
    return w && i < w->n ? &w->tensors[i] : NULL;
}

const evlm_tensor *evlm_weights_find(const evlm_weights *w, const char *name) {
    if (!w || !name || !w->slot_cap) return NULL;
    uint32_t s = w->slots[find_slot(w, name)];
    return s ? &w->tensors[s - 1] : NULL;
}

const char *evlm_weights_path(const evlm_weights *w) {
    return w && w->n_files ? w->files[0].path : "";
}

/* "[a, b, c]" in safetensors (PyTorch) order. */
static void shape_str(char *buf, size_t cap, int n_dims, const int64_t *ne) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = n_dims - 1; i >= 0 && k < cap; i--)
        k += (size_t)snprintf(buf + k, cap - k, "%lld%s", (long long)ne[i], i ? ", " : "");
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

evlm_status evlm_weights_get(const evlm_weights *w, const char *name, int n_dims, const int64_t *ne,
                             const evlm_tensor **out) {
    *out = NULL;
    const evlm_tensor *t = evlm_weights_find(w, name);
    if (!t)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' not found", evlm_weights_path(w),
                          name ? name : "(null)");
    if (ne) {
        if (n_dims < 0 || n_dims > EVLM_MAX_DIMS)
            return evlm__fail(EVLM_ERR_ARG, "evlm_weights_get: n_dims %d", n_dims);
        int ok = t->n_dims == n_dims;
        for (int i = 0; i < n_dims && ok; i++) ok = t->ne[i] == ne[i];
        if (!ok) {
            char have[128], want[128];
            shape_str(have, sizeof have, t->n_dims, t->ne);
            shape_str(want, sizeof want, n_dims, ne);
            return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s",
                              w->files[w->file_of[t - w->tensors]].path, name, have, want);
        }
    }
    *out = t;
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
        if (!t->name || !evlm_type_traits_of(t->type)->st_dtype ||
            t->n_dims < 0 ||
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

/* Gives the page-aligned inside of [p, p + n) back to the kernel: a mapped file's pages are read
 * again if touched, so this only lowers the resident set once a tensor has been copied. */
static void drop_pages(const void *p, size_t n) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void evlm_weights_note_matrix(const evlm_weights *w, const evlm_tensor *t) {
    if (w && t >= w->tensors && t < w->tensors + w->n) w->matrix[t - w->tensors] = 1;
}

/* bytes of tensor i's interleaved copy, 0 if it is not to be repacked */
static size_t repack_bytes(const evlm_weights *w, size_t i, bool quant, bool floats) {
    const evlm_tensor *t = &w->tensors[i];
    evlm_type rt = evlm_type_r16(t->type);
    if (rt == EVLM_TYPE_COUNT || !w->matrix[i] || t->n_dims != 2 || t->ne[1] < EVLM_R16 ||
        t->nb[1] != evlm_row_bytes(t->type, t->ne[0]))
        return 0;
    if (evlm_type_is_quant(t->type) ? !quant || t->ne[0] % EVLM_QK : !floats) return 0;
    return (evlm_r16_bytes(rt, t->ne[1], t->ne[0]) + 63) & ~(size_t)63;
}

/* One matrix's copy in slices of whole groups, taken from a shared counter by the pool's
 * threads; each slice is its own run of the copy, and its source pages are given back as soon as
 * it is done, so the resident set never holds a whole matrix twice. */
#define REPACK_SLICE (16 * EVLM_R16)
typedef struct {
    const evlm_tensor *t;
    char *dst;
    bool drop; /* the source is a mapped file or someone else's views: give its pages back */
    atomic_int next;
} repack_task;

static void repack_fn(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    repack_task *rt = arg;
    const evlm_tensor *t = rt->t;
    size_t gbytes = EVLM_R16 * evlm_row_bytes(t->type, t->ne[0]);
    for (;;) {
        int64_t r0 = (int64_t)atomic_fetch_add_explicit(&rt->next, 1, memory_order_relaxed) * REPACK_SLICE;
        if (r0 >= t->ne[1]) break;
        int64_t rows = t->ne[1] - r0 < REPACK_SLICE ? t->ne[1] - r0 : REPACK_SLICE;
        const char *src = (const char *)t->data + (size_t)r0 * t->nb[1];
        evlm_repack_r16(t->type, src, t->nb[1], rows, t->ne[0], rt->dst + (size_t)(r0 / EVLM_R16) * gbytes);
        if (rt->drop) drop_pages(src, (size_t)rows * t->nb[1]);
    }
}

/* One buffer for all the copies, on 2 MB boundaries and marked for transparent huge pages: the
 * 1.5B bf16 model writes 3 GB at load, and 4 KB pages made that 750k page faults (most of the
 * load time is the kernel zeroing fresh pages, which the pool's threads share). */
evlm_status evlm_weights_repack_r16(evlm_weights *w, bool quant, bool floats, evlm_pool *pool) {
    size_t total = 0;
    for (size_t i = 0; i < w->n; i++) total += repack_bytes(w, i, quant, floats);
    if (!total) return EVLM_OK;
    const size_t huge = (size_t)2 << 20;
    size_t len = (total + huge - 1) & ~(huge - 1);
    void **no = realloc(w->owned, (w->n_owned + 1) * sizeof *no);
    char *arena = no ? aligned_alloc(huge, len) : NULL;
    if (no) w->owned = no;
    if (!arena)
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory interleaving the weight matrices (%zu MB)",
                          evlm_weights_path(w), total >> 20);
    w->owned[w->n_owned++] = arena;
#ifdef MADV_HUGEPAGE
    (void)madvise(arena, len, MADV_HUGEPAGE);
#endif
    for (size_t i = 0; i < w->n; i++) {
        size_t bytes = repack_bytes(w, i, quant, floats);
        if (!bytes) continue;
        evlm_tensor *t = &w->tensors[i];
        repack_task rt = {.t = t, .dst = arena, .drop = w->n_files > 0 || w->owner};
        atomic_init(&rt.next, 0);
        evlm_pool_run(pool, repack_fn, &rt);
        t->type = evlm_type_r16(t->type);
        t->data = arena;
        arena += bytes;
    }
    return EVLM_OK;
}
