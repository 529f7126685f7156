/*
 * gguf.c - GGUF v3 reader (see gguf.h). The file is mapped read-only and walked once with a
 * bounded cursor: every length and count is compared with the bytes left before it is used or
 * allocated, so a hostile header fails with a message naming the file and key / tensor and
 * never reads past the end. Keys and tensor names are copied (NUL-terminated) and hashed;
 * values stay in the map and are decoded by the getters. String arrays get a table of element
 * pointers so element i is O(1) (tokenizer vocabularies are read by index).
 *
 * evlm_gguf_weights turns the tensors into an evlm_weights set under Hugging Face names
 * (gguf_names.h); the set keeps a reference on the handle, so the map lives as long as either.
 *
 * The second half of the file is the writer: kv pairs serialized as they are set, tensor infos
 * and data written at the end through an atomic file, tensor by tensor.
 *
 * Not here: name mapping and model metadata (gguf_names.c), dtype conversion.
 */
#include "io/gguf.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/status.h"
#include "io/gguf_mmproj.h"
#include "io/gguf_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- types ------------------------------------------------------------------------------ */

/* ggml type ids: the gguf_id column of the type table (core/tensor.h) */
int evlm_gguf_ggml_type(evlm_type t) {
    return evlm_type_traits_of(t)->gguf_id;
}

bool evlm_gguf_from_ggml_type(uint32_t ggml, evlm_type *out) {
    evlm_type t = evlm_type_from_gguf_id(ggml);
    if (t == EVLM_TYPE_COUNT) return false;
    *out = t;
    return true;
}

/* bytes of a scalar value type; 0 for string / array / unknown */
static size_t vtype_size(uint32_t t) {
    switch (t) {
    case EVLM_GGUF_U8:
    case EVLM_GGUF_I8:
    case EVLM_GGUF_BOOL:
        return 1;
    case EVLM_GGUF_U16:
    case EVLM_GGUF_I16:
        return 2;
    case EVLM_GGUF_U32:
    case EVLM_GGUF_I32:
    case EVLM_GGUF_F32:
        return 4;
    case EVLM_GGUF_U64:
    case EVLM_GGUF_I64:
    case EVLM_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

static const char *vtype_name(uint32_t t) {
    static const char *const names[EVLM_GGUF_VTYPE_COUNT] = {
        "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
        "bool", "string", "array", "u64", "i64", "f64"};
    return t < EVLM_GGUF_VTYPE_COUNT ? names[t] : "?";
}

/* ---- the handle ------------------------------------------------------------------------- */

typedef struct gg_kv {
    char *key;
    uint32_t type, elem;  /* elem: element type of an array, else = type */
    uint64_t n;           /* array count, else 1 */
    const uint8_t *val;   /* scalar / string (its u64 length) / first array element */
    const uint8_t **strs; /* string arrays: each element (at its u64 length) */
} gg_kv;

typedef struct gg_hash {
    uint32_t *slots; /* index + 1; 0 = empty */
    size_t cap;      /* power of two */
} gg_hash;

struct evlm_gguf {
    int refs;
    char *path;
    evlm_map map;
    int mapped;
    const uint8_t *base;
    size_t size;
    uint32_t version, alignment;
    size_t data_off;
    gg_kv *kv;
    size_t n_kv;
    evlm_tensor *tensors; /* names owned */
    size_t n_tensors;
    uint8_t *q5_0;  /* per tensor: stored as ggml Q5_0, read as Q8_0 (widened[] holds it) */
    void **widened; /* per tensor: owned data, or NULL (a view into the map) */
    gg_hash kv_hash, t_hash;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* n: number of entries that will be inserted (sized once: counts are known up front) */
static int hash_init(gg_hash *h, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap *= 2;
    h->slots = calloc(cap, sizeof *h->slots);
    h->cap = cap;
    return h->slots != NULL;
}

/* Slot of name: found (slots[i] != 0) or the empty slot where it goes. */
static size_t hash_slot(const gg_hash *h, const char *name,
                        const char *(*name_of)(const evlm_gguf *, size_t), const evlm_gguf *g) {
    size_t mask = h->cap - 1, i = (size_t)hash_str(name) & mask;
    while (h->slots[i] && strcmp(name_of(g, h->slots[i] - 1), name) != 0) i = (i + 1) & mask;
    return i;
}

static const char *kv_name(const evlm_gguf *g, size_t i) {
    return g->kv[i].key;
}
static const char *t_name(const evlm_gguf *g, size_t i) {
    return g->tensors[i].name;
}

static void gguf_free(evlm_gguf *g) {
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].strs);
    }
    for (size_t i = 0; i < g->n_tensors; i++) free((void *)(uintptr_t)g->tensors[i].name);
    for (size_t i = 0; g->widened && i < g->n_tensors; i++) free(g->widened[i]);
    free(g->widened);
    free(g->q5_0);
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash.slots);
    free(g->t_hash.slots);
    if (g->mapped) evlm_unmap(&g->map);
    free(g->path);
    free(g);
}

void evlm_gguf_close(evlm_gguf *g) {
    if (g && --g->refs == 0) gguf_free(g);
}

/* ---- bounded cursor --------------------------------------------------------------------- */

typedef struct cur {
    const evlm_gguf *g;
    size_t pos;
} cur;

static size_t left(const cur *c) {
    return c->g->size - c->pos;
}

static evlm_status need(cur *c, size_t n, const char *field) {
    if (n > left(c))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: truncated at byte %zu reading %s (%zu bytes needed, %zu left)",
                          c->g->path, c->pos, field, n, left(c));
    return EVLM_OK;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static evlm_status rd_u32(cur *c, uint32_t *v, const char *field) {
    EVLM_TRY(need(c, 4, field));
    *v = (uint32_t)le(c->g->base + c->pos, 4);
    c->pos += 4;
    return EVLM_OK;
}

static evlm_status rd_u64(cur *c, uint64_t *v, const char *field) {
    EVLM_TRY(need(c, 8, field));
    *v = le(c->g->base + c->pos, 8);
    c->pos += 8;
    return EVLM_OK;
}

/* A string header: *p at its bytes, *n its length, the cursor past it. */
static evlm_status rd_str(cur *c, const uint8_t **p, uint64_t *n, const char *field) {
    EVLM_TRY(rd_u64(c, n, field));
    if (*n > left(c))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: string length %llu exceeds the %zu bytes left",
                          c->g->path, field, (unsigned long long)*n, left(c));
    *p = c->g->base + c->pos;
    c->pos += (size_t)*n;
    return EVLM_OK;
}

/* A key or tensor name: 1..EVLM_GGUF_MAX_NAME bytes, no NUL; copied. */
static evlm_status rd_name(cur *c, char **out, const char *field) {
    const uint8_t *p = NULL;
    uint64_t n = 0;
    *out = NULL;
    EVLM_TRY(rd_str(c, &p, &n, field));
    if (n == 0 || n > EVLM_GGUF_MAX_NAME || memchr(p, 0, (size_t)n))
        return evlm__fail(
            EVLM_ERR_FORMAT, "%s: %s at byte %zu: length %llu (1..%d without NUL bytes required)",
            c->g->path, field, c->pos - (size_t)n, (unsigned long long)n, EVLM_GGUF_MAX_NAME);
    *out = malloc((size_t)n + 1);
    if (!*out) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", c->g->path);
    memcpy(*out, p, (size_t)n);
    (*out)[n] = 0;
    return EVLM_OK;
}

/* ---- parsing ---------------------------------------------------------------------------- */

static evlm_status parse_value(cur *c, gg_kv *kv) {
    const char *path = c->g->path;
    char field[EVLM_GGUF_MAX_NAME + 16];
    snprintf(field, sizeof field, "key '%s'", kv->key);
    EVLM_TRY(rd_u32(c, &kv->type, field));
    kv->elem = kv->type;
    kv->n = 1;
    if (kv->type >= EVLM_GGUF_VTYPE_COUNT)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s': unknown value type %u", path, kv->key,
                          kv->type);
    if (kv->type == EVLM_GGUF_ARRAY) {
        EVLM_TRY(rd_u32(c, &kv->elem, field));
        EVLM_TRY(rd_u64(c, &kv->n, field));
        if (kv->elem == EVLM_GGUF_ARRAY)
            return evlm__fail(EVLM_ERR_UNSUPPORTED,
                              "%s: key '%s': arrays of arrays are not supported", path, kv->key);
        if (kv->elem >= EVLM_GGUF_VTYPE_COUNT)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s': unknown array element type %u", path,
                              kv->key, kv->elem);
    }
    kv->val = c->g->base + c->pos;
    if (kv->elem == EVLM_GGUF_STRING) {
        if (kv->type != EVLM_GGUF_ARRAY) {
            const uint8_t *p;
            uint64_t n;
            return rd_str(c, &p, &n, field);
        }
        /* every element takes at least its 8-byte length */
        if (kv->n > left(c) / 8)
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: key '%s': %llu strings cannot fit in the %zu bytes left", path,
                              kv->key, (unsigned long long)kv->n, left(c));
        kv->strs = malloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->strs);
        if (!kv->strs)
            return evlm__fail(EVLM_ERR_NOMEM, "%s: key '%s': out of memory", path, kv->key);
        for (uint64_t i = 0; i < kv->n; i++) {
            const uint8_t *p;
            uint64_t n;
            kv->strs[i] = c->g->base + c->pos;
            EVLM_TRY(rd_str(c, &p, &n, field));
        }
        return EVLM_OK;
    }
    size_t es = vtype_size(kv->elem);
    if (kv->n > left(c) / es)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: key '%s': %llu values of %zu bytes exceed the %zu bytes left", path,
                          kv->key, (unsigned long long)kv->n, es, left(c));
    if (kv->elem == EVLM_GGUF_BOOL) {
        for (uint64_t i = 0; i < kv->n; i++)
            if (kv->val[i] > 1)
                return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s': bool value %u (0 or 1 required)",
                                  path, kv->key, kv->val[i]);
    }
    c->pos += (size_t)kv->n * es;
    return EVLM_OK;
}

static evlm_status parse_kvs(cur *c, evlm_gguf *g, uint64_t n_kv) {
    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    if (!g->kv || !hash_init(&g->kv_hash, (size_t)n_kv))
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        gg_kv *kv = &g->kv[g->n_kv];
        EVLM_TRY(rd_name(c, &kv->key, "metadata key"));
        g->n_kv++; /* owned from here on */
        size_t s = hash_slot(&g->kv_hash, kv->key, kv_name, g);
        if (g->kv_hash.slots[s])
            return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s' appears twice", g->path, kv->key);
        g->kv_hash.slots[s] = (uint32_t)g->n_kv;
        EVLM_TRY(parse_value(c, kv));
    }
    g->alignment = EVLM_GGUF_ALIGNMENT;
    long a = evlm_gguf_find_key(g, "general.alignment");
    if (a >= 0) {
        const gg_kv *kv = &g->kv[a];
        uint32_t v = kv->type == EVLM_GGUF_U32 ? (uint32_t)le(kv->val, 4) : 0;
        if (kv->type != EVLM_GGUF_U32 || v == 0 || (v & (v - 1)) || v > EVLM_GGUF_MAX_ALIGNMENT)
            return evlm__fail(
                EVLM_ERR_FORMAT,
                "%s: key 'general.alignment': must be a u32 power of two <= %u (got %s %u)",
                g->path, EVLM_GGUF_MAX_ALIGNMENT, vtype_name(kv->type), v);
        g->alignment = v;
    }
    return EVLM_OK;
}

/* ggml's Q5_0 (llama-quantize's fallback for Q4_K rows that do not split into 256 columns):
 * blocks of 32 as {f16 d; u8 qh[4]; u8 qs[16]}, x = d * (q - 16) with 5-bit q. Read as Q8_0
 * {f16 d; i8 q[32]} with the same d and q - 16 in [-16, 15]: exact. */
#define GGML_Q5_0  6
#define Q5_0_BYTES 22
#define Q8_0_BYTES 34
static evlm_status widen_q5_0(evlm_gguf *g, size_t i) {
    evlm_tensor *t = &g->tensors[i];
    size_t nb = evlm_tensor_nbytes(t), blocks = nb / Q8_0_BYTES;
    uint8_t *dst = malloc(nb ? nb : 1);
    if (!dst) return evlm__fail(EVLM_ERR_NOMEM, "%s: tensor '%s': out of memory", g->path, t->name);
    const uint8_t *src = t->data;
    for (size_t b = 0; b < blocks; b++) {
        const uint8_t *x = src + b * Q5_0_BYTES;
        uint8_t *y = dst + b * Q8_0_BYTES;
        uint32_t qh =
            (uint32_t)x[2] | (uint32_t)x[3] << 8 | (uint32_t)x[4] << 16 | (uint32_t)x[5] << 24;
        y[0] = x[0];
        y[1] = x[1];
        for (int j = 0; j < 16; j++) {
            int lo = (x[6 + j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
            int hi = (x[6 + j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            y[2 + j] = (uint8_t)(int8_t)(lo - 16);
            y[2 + j + 16] = (uint8_t)(int8_t)(hi - 16);
        }
    }
    g->widened[i] = dst;
    t->data = dst;
    return EVLM_OK;
}

static evlm_status parse_tensor_info(cur *c, evlm_gguf *g, evlm_tensor *t, uint64_t *offset) {
    char *name;
    EVLM_TRY(rd_name(c, &name, "tensor name"));
    t->name = name;
    g->n_tensors++; /* owned from here on */
    size_t s = hash_slot(&g->t_hash, name, t_name, g);
    if (g->t_hash.slots[s])
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' appears twice", g->path, name);
    g->t_hash.slots[s] = (uint32_t)g->n_tensors;

    uint32_t n_dims, gt;
    char field[EVLM_GGUF_MAX_NAME + 16];
    snprintf(field, sizeof field, "tensor '%s'", name);
    EVLM_TRY(rd_u32(c, &n_dims, field));
    if (n_dims < 1 || n_dims > EVLM_MAX_DIMS)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': %u dimensions (1..%d supported)",
                          g->path, name, n_dims, EVLM_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < EVLM_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t v;
        EVLM_TRY(rd_u64(c, &v, field));
        if (v == 0 || v > (uint64_t)INT64_MAX / nel)
            return evlm__fail(EVLM_ERR_FORMAT,
                              "%s: tensor '%s': ne[%u] = %llu (must be > 0, element count < 2^63)",
                              g->path, name, d, (unsigned long long)v);
        nel *= v;
        t->ne[d] = (int64_t)v;
    }
    EVLM_TRY(rd_u32(c, &gt, field));
    if (gt == GGML_Q5_0) { /* read as Q8_0: the same blocks of 32, bytes checked as Q5_0 */
        g->q5_0[g->n_tensors - 1] = 1;
        gt = (uint32_t)evlm_gguf_ggml_type(EVLM_TYPE_Q8_0);
    }
    if (!evlm_gguf_from_ggml_type(gt, &t->type))
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: tensor '%s': ggml type %u is not supported",
                          g->path, name, gt);
    int blk = evlm_type_block(t->type);
    if (t->ne[0] % blk)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': %s needs ne[0] (%lld) to be a multiple of %d", g->path,
                          name, evlm_type_name(t->type), (long long)t->ne[0], blk);
    uint64_t blocks = nel / (uint64_t)blk, bs = evlm_type_size(t->type);
    if (blocks > (uint64_t)SIZE_MAX / bs)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': byte size overflows", g->path, name);
    EVLM_TRY(rd_u64(c, offset, field));
    if (*offset % g->alignment)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': offset %llu is not a multiple of the alignment %u",
                          g->path, name, (unsigned long long)*offset, g->alignment);
    evlm_tensor_set_contiguous(t);
    return EVLM_OK;
}

static evlm_status parse(evlm_gguf *g) {
    cur c = {g, 0};
    uint32_t version;
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", g->path);
    c.pos = 4;
    EVLM_TRY(rd_u32(&c, &version, "version"));
    if (version != EVLM_GGUF_VERSION)
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: GGUF version %u (only %d is supported)",
                          g->path, version, EVLM_GGUF_VERSION);
    g->version = version;
    uint64_t n_t, n_kv;
    EVLM_TRY(rd_u64(&c, &n_t, "tensor count"));
    EVLM_TRY(rd_u64(&c, &n_kv, "metadata count"));
    /* a kv takes at least 8 + 1 + 4 + 1 bytes, a tensor info 8 + 1 + 4 + 8 + 4 + 8 */
    if (n_kv > left(&c) / 14 || n_t > left(&c) / 33 || n_kv * 14 + n_t * 33 > left(&c))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: %llu keys and %llu tensors cannot fit in a file of %zu bytes",
                          g->path, (unsigned long long)n_kv, (unsigned long long)n_t, g->size);
    if (n_t >= UINT32_MAX || n_kv >= UINT32_MAX)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: too many keys or tensors", g->path);
    EVLM_TRY(parse_kvs(&c, g, n_kv));

    g->tensors = calloc((size_t)(n_t ? n_t : 1), sizeof *g->tensors);
    g->q5_0 = calloc((size_t)(n_t ? n_t : 1), 1);
    g->widened = calloc((size_t)(n_t ? n_t : 1), sizeof *g->widened);
    uint64_t *offsets = malloc((size_t)(n_t ? n_t : 1) * sizeof *offsets);
    if (!g->tensors || !g->q5_0 || !g->widened || !offsets || !hash_init(&g->t_hash, (size_t)n_t)) {
        free(offsets);
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", g->path);
    }
    evlm_status st = EVLM_OK;
    for (uint64_t i = 0; i < n_t && st == EVLM_OK; i++)
        st = parse_tensor_info(&c, g, &g->tensors[i], &offsets[i]);
    if (st == EVLM_OK) {
        size_t a = g->alignment, pad = (a - c.pos % a) % a;
        if (pad > left(&c) && n_t > 0)
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "%s: truncated: the data section (at byte %zu) is missing", g->path,
                            c.pos + pad);
        g->data_off = pad > left(&c) ? g->size : c.pos + pad;
    }
    uint64_t data_size = g->size - g->data_off;
    for (size_t i = 0; i < g->n_tensors && st == EVLM_OK; i++) {
        evlm_tensor *t = &g->tensors[i];
        uint64_t nb = evlm_tensor_nbytes(t);
        if (g->q5_0[i]) nb = nb / Q8_0_BYTES * Q5_0_BYTES;
        if (offsets[i] > data_size || nb > data_size - offsets[i])
            st = evlm__fail(
                EVLM_ERR_FORMAT,
                "%s: tensor '%s': bytes [%llu, %llu) of the data section exceed its %llu bytes",
                g->path, t->name, (unsigned long long)offsets[i],
                (unsigned long long)(offsets[i] + nb), (unsigned long long)data_size);
        else
            t->data =
                (void *)(uintptr_t)(g->base + g->data_off + offsets[i]); /* read-only in practice */
        if (st == EVLM_OK && g->q5_0[i]) st = widen_q5_0(g, i);
    }
    free(offsets);
    return st;
}

static evlm_status gguf_new(const char *what, evlm_gguf **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    (*out)->refs = 1;
    (*out)->path = strdup(what);
    if (!(*out)->path) {
        free(*out);
        *out = NULL;
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    }
    return EVLM_OK;
}

evlm_status evlm_gguf_from_memory(const char *what, const void *data, size_t size,
                                  evlm_gguf **out) {
    *out = NULL;
    if (!what) what = "gguf";
    if (!data && size) return evlm__fail(EVLM_ERR_ARG, "%s: NULL data", what);
    evlm_gguf *g;
    EVLM_TRY(gguf_new(what, &g));
    g->base = data;
    g->size = size;
    evlm_status st = parse(g);
    if (st != EVLM_OK) {
        gguf_free(g);
        return st;
    }
    *out = g;
    return EVLM_OK;
}

evlm_status evlm_gguf_open(const char *path, evlm_gguf **out) {
    *out = NULL;
    if (!path) return evlm__fail(EVLM_ERR_ARG, "evlm_gguf_open: NULL path");
    evlm_gguf *g;
    EVLM_TRY(gguf_new(path, &g));
    evlm_status st = evlm_map_file(path, &g->map);
    if (st == EVLM_OK) {
        g->mapped = 1;
        g->base = g->map.data;
        g->size = g->map.size;
        st = parse(g);
    }
    if (st != EVLM_OK) {
        gguf_free(g);
        return st;
    }
    *out = g;
    return EVLM_OK;
}

/* ---- queries ---------------------------------------------------------------------------- */

const char *evlm_gguf_path(const evlm_gguf *g) {
    return g ? g->path : "";
}
uint32_t evlm_gguf_alignment(const evlm_gguf *g) {
    return g->alignment;
}
size_t evlm_gguf_data_offset(const evlm_gguf *g) {
    return g->data_off;
}
size_t evlm_gguf_kv_count(const evlm_gguf *g) {
    return g ? g->n_kv : 0;
}
const char *evlm_gguf_kv_key(const evlm_gguf *g, size_t i) {
    return g && i < g->n_kv ? g->kv[i].key : NULL;
}

evlm_gguf_vtype evlm_gguf_kv_type(const evlm_gguf *g, size_t i, evlm_gguf_vtype *elem) {
    if (!g || i >= g->n_kv) return EVLM_GGUF_VTYPE_COUNT;
    if (elem) *elem = (evlm_gguf_vtype)g->kv[i].elem;
    return (evlm_gguf_vtype)g->kv[i].type;
}

long evlm_gguf_find_key(const evlm_gguf *g, const char *key) {
    if (!g || !key || !g->kv_hash.cap) return -1;
    uint32_t s = g->kv_hash.slots[hash_slot(&g->kv_hash, key, kv_name, g)];
    return s ? (long)s - 1 : -1;
}

size_t evlm_gguf_tensor_count(const evlm_gguf *g) {
    return g ? g->n_tensors : 0;
}

const evlm_tensor *evlm_gguf_tensor_at(const evlm_gguf *g, size_t i) {
    return g && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const evlm_tensor *evlm_gguf_tensor_find(const evlm_gguf *g, const char *name) {
    if (!g || !name || !g->t_hash.cap) return NULL;
    uint32_t s = g->t_hash.slots[hash_slot(&g->t_hash, name, t_name, g)];
    return s ? &g->tensors[s - 1] : NULL;
}

static evlm_status get_kv(const evlm_gguf *g, const char *key, const gg_kv **out) {
    long i = evlm_gguf_find_key(g, key);
    if (i < 0)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s' not found", evlm_gguf_path(g),
                          key ? key : "(null)");
    *out = &g->kv[i];
    return EVLM_OK;
}

static evlm_status wrong_type(const evlm_gguf *g, const gg_kv *kv, const char *want) {
    return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s' is %s%s%s, expected %s", g->path, kv->key,
                      kv->type == EVLM_GGUF_ARRAY ? "an array of " : "", vtype_name(kv->elem),
                      kv->type == EVLM_GGUF_ARRAY ? "" : " ", want);
}

/* An integer element: *neg and the magnitude split so every type converts exactly. */
static int int_at(uint32_t type, const uint8_t *p, int *neg, uint64_t *mag) {
    int64_t s;
    *neg = 0;
    switch (type) {
    case EVLM_GGUF_U8:
    case EVLM_GGUF_U16:
    case EVLM_GGUF_U32:
    case EVLM_GGUF_U64:
        *mag = le(p, (int)vtype_size(type));
        return 1;
    case EVLM_GGUF_I8:
        s = (int8_t)p[0];
        break;
    case EVLM_GGUF_I16:
        s = (int16_t)(uint16_t)le(p, 2);
        break;
    case EVLM_GGUF_I32:
        s = (int32_t)(uint32_t)le(p, 4);
        break;
    case EVLM_GGUF_I64:
        s = (int64_t)le(p, 8);
        break;
    default:
        return 0;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return 1;
}

static evlm_status get_int(const evlm_gguf *g, const char *key, int64_t lo, uint64_t hi, int *neg,
                           uint64_t *mag) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_kv(g, key, &kv));
    if (kv->type == EVLM_GGUF_ARRAY || !int_at(kv->type, kv->val, neg, mag))
        return wrong_type(g, kv, "an integer");
    if ((*neg && *mag > (uint64_t)0 - (uint64_t)lo) || (!*neg && *mag > hi) ||
        (*neg && lo == 0 && *mag))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s': value %s%llu out of range", g->path, key,
                          *neg ? "-" : "", (unsigned long long)*mag);
    return EVLM_OK;
}

evlm_status evlm_gguf_get_u32(const evlm_gguf *g, const char *key, uint32_t *v) {
    int neg;
    uint64_t m;
    EVLM_TRY(get_int(g, key, 0, UINT32_MAX, &neg, &m));
    *v = (uint32_t)m;
    return EVLM_OK;
}

evlm_status evlm_gguf_get_i32(const evlm_gguf *g, const char *key, int32_t *v) {
    int neg;
    uint64_t m;
    EVLM_TRY(get_int(g, key, INT32_MIN, INT32_MAX, &neg, &m));
    *v = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
    return EVLM_OK;
}

evlm_status evlm_gguf_get_u64(const evlm_gguf *g, const char *key, uint64_t *v) {
    int neg;
    EVLM_TRY(get_int(g, key, 0, UINT64_MAX, &neg, v));
    return EVLM_OK;
}

static float float_at(uint32_t type, const uint8_t *p) {
    if (type == EVLM_GGUF_F32) {
        uint32_t u = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    uint64_t u = le(p, 8);
    double d;
    memcpy(&d, &u, 8);
    return (float)d;
}

evlm_status evlm_gguf_get_f32(const evlm_gguf *g, const char *key, float *v) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_kv(g, key, &kv));
    if (kv->type != EVLM_GGUF_F32 && kv->type != EVLM_GGUF_F64) return wrong_type(g, kv, "a float");
    *v = float_at(kv->type, kv->val);
    return EVLM_OK;
}

evlm_status evlm_gguf_get_bool(const evlm_gguf *g, const char *key, bool *v) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_kv(g, key, &kv));
    if (kv->type != EVLM_GGUF_BOOL) return wrong_type(g, kv, "a bool");
    *v = kv->val[0] != 0;
    return EVLM_OK;
}

evlm_status evlm_gguf_get_str(const evlm_gguf *g, const char *key, const char **s, size_t *len) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_kv(g, key, &kv));
    if (kv->type != EVLM_GGUF_STRING) return wrong_type(g, kv, "a string");
    *len = (size_t)le(kv->val, 8);
    *s = (const char *)kv->val + 8;
    return EVLM_OK;
}

static evlm_status get_arr(const evlm_gguf *g, const char *key, const gg_kv **kv) {
    EVLM_TRY(get_kv(g, key, kv));
    if ((*kv)->type != EVLM_GGUF_ARRAY) return wrong_type(g, *kv, "an array");
    return EVLM_OK;
}

evlm_status evlm_gguf_get_arr_n(const evlm_gguf *g, const char *key, evlm_gguf_vtype *elem,
                                size_t *n) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_arr(g, key, &kv));
    if (elem) *elem = (evlm_gguf_vtype)kv->elem;
    *n = (size_t)kv->n;
    return EVLM_OK;
}

evlm_status evlm_gguf_get_arr_str(const evlm_gguf *g, const char *key, size_t i, const char **s,
                                  size_t *len) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_arr(g, key, &kv));
    if (kv->elem != EVLM_GGUF_STRING) return wrong_type(g, kv, "an array of strings");
    if (i >= kv->n)
        return evlm__fail(EVLM_ERR_RANGE, "%s: key '%s': index %zu of %llu elements", g->path, key,
                          i, (unsigned long long)kv->n);
    *len = (size_t)le(kv->strs[i], 8);
    *s = (const char *)kv->strs[i] + 8;
    return EVLM_OK;
}

static evlm_status check_cap(const evlm_gguf *g, const gg_kv *kv, size_t cap) {
    if (kv->n > cap)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: key '%s' has %llu elements, more than the %zu expected", g->path,
                          kv->key, (unsigned long long)kv->n, cap);
    return EVLM_OK;
}

evlm_status evlm_gguf_get_arr_i32(const evlm_gguf *g, const char *key, int32_t *dst, size_t cap) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_arr(g, key, &kv));
    size_t es = vtype_size(kv->elem);
    int neg = 0;
    uint64_t m = 0;
    if (kv->elem == EVLM_GGUF_BOOL || kv->elem == EVLM_GGUF_F32 || kv->elem == EVLM_GGUF_F64 ||
        es == 0)
        return wrong_type(g, kv, "integers"); /* (no element is read: the array may be empty) */
    EVLM_TRY(check_cap(g, kv, cap));
    for (uint64_t i = 0; i < kv->n; i++) {
        int_at(kv->elem, kv->val + i * es, &neg, &m);
        if ((!neg && m > INT32_MAX) || (neg && m > (uint64_t)INT32_MAX + 1))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: key '%s': element %llu does not fit int32",
                              g->path, key, (unsigned long long)i);
        dst[i] = neg ? (int32_t)(-(int64_t)m) : (int32_t)m;
    }
    return EVLM_OK;
}

evlm_status evlm_gguf_get_arr_f32(const evlm_gguf *g, const char *key, float *dst, size_t cap) {
    const gg_kv *kv = NULL;
    EVLM_TRY(get_arr(g, key, &kv));
    if (kv->elem != EVLM_GGUF_F32 && kv->elem != EVLM_GGUF_F64) return wrong_type(g, kv, "floats");
    EVLM_TRY(check_cap(g, kv, cap));
    size_t es = vtype_size(kv->elem);
    for (uint64_t i = 0; i < kv->n; i++) dst[i] = float_at(kv->elem, kv->val + i * es);
    return EVLM_OK;
}

evlm_status evlm_gguf_file_text(const evlm_gguf *g, const char *name, const char **text,
                                size_t *len) {
    char key[256];
    int n = snprintf(key, sizeof key, "evlm.file.%s", name ? name : "");
    if (n < 0 || (size_t)n >= sizeof key)
        return evlm__fail(EVLM_ERR_ARG, "evlm_gguf_file_text: name too long");
    return evlm_gguf_get_str(g, key, text, len);
}

/* ---- weight sets ------------------------------------------------------------------------ */

typedef struct gg_owner {
    evlm_gguf *g, *mm;
    void **bufs;
    size_t n_bufs;
} gg_owner;

static void owner_free(void *p) {
    gg_owner *o = p;
    for (size_t i = 0; i < o->n_bufs; i++) free(o->bufs[i]);
    free(o->bufs);
    evlm_gguf_close(o->g);
    evlm_gguf_close(o->mm);
    free(o);
}

/* llama.cpp's "llama" rows of attn_q / attn_k (weight or bias) back into Hugging Face order. */
static evlm_status unpermute(const evlm_gguf *g, const evlm_tensor *t, int n_head, gg_owner *o,
                             void **out) {
    int64_t rows = t->n_dims == 1 ? t->ne[0] : t->ne[1];
    size_t row_bytes = t->n_dims == 1 ? evlm_type_size(t->type) : t->nb[1];
    if ((t->n_dims == 1 && (evlm_type_is_quant(t->type) || evlm_type_traits_of(t->type)->kq)) ||
        t->n_dims > 2 || n_head <= 0 || rows % (2 * n_head))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': %lld rows cannot be split into %d RoPE heads", g->path,
                          t->name, (long long)rows, n_head);
    size_t nb = evlm_tensor_nbytes(t);
    uint8_t *dst = malloc(nb ? nb : 1);
    if (!dst) return evlm__fail(EVLM_ERR_NOMEM, "%s: tensor '%s': out of memory", g->path, t->name);
    o->bufs[o->n_bufs++] = dst;
    int64_t hd = rows / n_head;
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = evlm_gguf_qk_src_row(r, hd, false);
        memcpy(dst + (size_t)r * row_bytes, (const uint8_t *)t->data + (size_t)src * row_bytes,
               row_bytes);
    }
    *out = dst;
    return EVLM_OK;
}

evlm_status evlm_gguf_weights(evlm_gguf *g, evlm_weights **out) {
    return evlm_gguf_weights_pair(g, NULL, out);
}

evlm_status evlm_gguf_weights_pair(evlm_gguf *g, evlm_gguf *mm, evlm_weights **out) {
    *out = NULL;
    char prefix[128] = "model.";
    if (mm && evlm_gguf_find_key(mm, "clip.projector_type") >= 0) {
        const char *pt;
        size_t pn;
        EVLM_TRY(evlm_gguf_get_str(mm, "clip.projector_type", &pt, &pn));
        if (evlm_mmproj_kind_from_name(pt, pn) == EVLM_MMPROJ_IDEFICS3)
            snprintf(prefix, sizeof prefix, "model.text_model.");
    }
    const char *s;
    size_t n;
    if (evlm_gguf_find_key(g, "evlm.text_prefix") >= 0) {
        EVLM_TRY(evlm_gguf_get_str(g, "evlm.text_prefix", &s, &n));
        if (n >= sizeof prefix || memchr(s, 0, n))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: key 'evlm.text_prefix' is too long", g->path);
        memcpy(prefix, s, n);
        prefix[n] = 0;
    }
    bool llama = false;
    int n_head = 0, n_head_kv = 0;
    if (evlm_gguf_find_key(g, "general.architecture") >= 0) {
        EVLM_TRY(evlm_gguf_get_str(g, "general.architecture", &s, &n));
        llama = n == 5 && memcmp(s, "llama", 5) == 0;
    }
    size_t n_mm = mm ? mm->n_tensors : 0, cap = g->n_tensors + n_mm;
    gg_owner *o = calloc(1, sizeof *o);
    evlm_tensor *views = calloc(cap + 1, sizeof *views);
    evlm_status st = EVLM_OK;
    if (o) o->bufs = calloc(cap + 1, sizeof *o->bufs);
    if (!o || !o->bufs || !views) st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", g->path);
    char hf[EVLM_GGUF_MAX_NAME + 160];
    for (size_t i = 0; i < g->n_tensors && st == EVLM_OK; i++) {
        const evlm_tensor *t = &g->tensors[i];
        views[i] = *t;
        views[i].name = NULL;
        if (evlm_gguf_name_to_hf(t->name, prefix, hf, sizeof hf) < 0) {
            st = evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': name too long", g->path, t->name);
            break;
        }
        views[i].name = strdup(hf);
        if (!views[i].name) {
            st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", g->path);
            break;
        }
        int qk = evlm_gguf_is_qk(t->name);
        if (!llama || !qk) continue;
        if (!n_head) {
            uint32_t h, hk;
            st = evlm_gguf_get_u32(g, "llama.attention.head_count", &h);
            hk = h;
            if (st == EVLM_OK && evlm_gguf_find_key(g, "llama.attention.head_count_kv") >= 0)
                st = evlm_gguf_get_u32(g, "llama.attention.head_count_kv", &hk);
            if (st == EVLM_OK && (h == 0 || hk == 0 || h > 65536 || hk > h))
                st = evlm__fail(EVLM_ERR_FORMAT, "%s: head counts %u / %u are invalid", g->path, h,
                                hk);
            if (st != EVLM_OK) break;
            n_head = (int)h;
            n_head_kv = (int)hk;
        }
        st = unpermute(g, t, qk == 1 ? n_head : n_head_kv, o, &views[i].data);
    }
    size_t nv = g->n_tensors;
    if (st == EVLM_OK && mm) st = evlm_mmproj_views(mm, NULL, views, &nv, cap, o->bufs, &o->n_bufs);
    if (st == EVLM_OK) {
        o->g = g;
        o->mm = mm;
        st = evlm_weights_from_views(g->path, views, nv, o, owner_free, out);
        if (st == EVLM_OK) g->refs++;
        if (st == EVLM_OK && mm) mm->refs++;
    }
    if (st != EVLM_OK && o) {
        o->g = o->mm = NULL;
        for (size_t i = 0; i < o->n_bufs; i++) free(o->bufs[i]);
        free(o->bufs);
        free(o);
    }
    for (size_t i = 0; views && i < cap; i++) free((void *)(uintptr_t)views[i].name);
    free(views);
    return st;
}

/* ---- writer ----------------------------------------------------------------------------- */

#define WRITE_CHUNK ((size_t)4 << 20) /* bytes per write / fill call / progress report */

typedef struct gw_tensor {
    evlm_tensor t; /* name owned; data = the caller's pointer (NULL with fill) */
    evlm_gguf_fill_fn fill;
    void *ctx;
    uint64_t offset;
} gw_tensor;

struct evlm_gguf_writer {
    evlm_str kv; /* the serialized kv pairs */
    char **keys;
    size_t n_kv;
    gw_tensor *tensors;
    size_t n_t, cap_t;
};

evlm_status evlm_gguf_writer_new(evlm_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? EVLM_OK : evlm__fail(EVLM_ERR_NOMEM, "gguf writer: out of memory");
}

void evlm_gguf_writer_free(evlm_gguf_writer *w) {
    if (!w) return;
    evlm_str_free(&w->kv);
    for (size_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_t; i++) free((void *)(uintptr_t)w->tensors[i].t.name);
    free(w->tensors);
    free(w);
}

static evlm_status put_le(evlm_str *s, uint64_t v, int n) {
    char b[8];
    for (int i = 0; i < n; i++) b[i] = (char)(uint8_t)(v >> (8 * i));
    return evlm_str_append(s, b, (size_t)n);
}

static evlm_status put_str(evlm_str *s, const char *p, size_t n) {
    EVLM_TRY(put_le(s, n, 8));
    return evlm_str_append(s, p, n);
}

/* Registers key (unique, not general.alignment) and serializes it with its type. */
static evlm_status put_key(evlm_gguf_writer *w, const char *key, uint32_t type) {
    if (!w || !key || !key[0] || strlen(key) > EVLM_GGUF_MAX_NAME)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: bad key '%s'", key ? key : "(null)");
    if (strcmp(key, "general.alignment") == 0)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: general.alignment is set by the writer (%d)",
                          EVLM_GGUF_ALIGNMENT);
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return evlm__fail(EVLM_ERR_ARG, "gguf writer: key '%s' set twice", key);
    char **nk = realloc(w->keys, (w->n_kv + 1) * sizeof *nk);
    if (!nk) return evlm__fail(EVLM_ERR_NOMEM, "gguf writer: out of memory");
    w->keys = nk;
    if (!(w->keys[w->n_kv] = strdup(key)))
        return evlm__fail(EVLM_ERR_NOMEM, "gguf writer: out of memory");
    w->n_kv++;
    EVLM_TRY(put_str(&w->kv, key, strlen(key)));
    return put_le(&w->kv, type, 4);
}

evlm_status evlm_gguf_writer_set_strn(evlm_gguf_writer *w, const char *key, const char *s,
                                      size_t n) {
    if (!s && n)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: key '%s': NULL string", key ? key : "");
    EVLM_TRY(put_key(w, key, EVLM_GGUF_STRING));
    return put_str(&w->kv, s, n);
}

evlm_status evlm_gguf_writer_set_str(evlm_gguf_writer *w, const char *key, const char *s) {
    return evlm_gguf_writer_set_strn(w, key, s, s ? strlen(s) : 0);
}

evlm_status evlm_gguf_writer_set_u32(evlm_gguf_writer *w, const char *key, uint32_t v) {
    EVLM_TRY(put_key(w, key, EVLM_GGUF_U32));
    return put_le(&w->kv, v, 4);
}

evlm_status evlm_gguf_writer_set_i32(evlm_gguf_writer *w, const char *key, int32_t v) {
    EVLM_TRY(put_key(w, key, EVLM_GGUF_I32));
    return put_le(&w->kv, (uint32_t)v, 4);
}

evlm_status evlm_gguf_writer_set_u64(evlm_gguf_writer *w, const char *key, uint64_t v) {
    EVLM_TRY(put_key(w, key, EVLM_GGUF_U64));
    return put_le(&w->kv, v, 8);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

evlm_status evlm_gguf_writer_set_f32(evlm_gguf_writer *w, const char *key, float v) {
    EVLM_TRY(put_key(w, key, EVLM_GGUF_F32));
    return put_le(&w->kv, f32_bits(v), 4);
}

evlm_status evlm_gguf_writer_set_bool(evlm_gguf_writer *w, const char *key, bool v) {
    EVLM_TRY(put_key(w, key, EVLM_GGUF_BOOL));
    return put_le(&w->kv, v ? 1 : 0, 1);
}

static evlm_status put_arr(evlm_gguf_writer *w, const char *key, uint32_t elem, size_t n,
                           const void *p) {
    if (!p && n)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: key '%s': NULL array", key ? key : "");
    EVLM_TRY(put_key(w, key, EVLM_GGUF_ARRAY));
    EVLM_TRY(put_le(&w->kv, elem, 4));
    return put_le(&w->kv, n, 8);
}

evlm_status evlm_gguf_writer_set_arr_str(evlm_gguf_writer *w, const char *key, const char *const *s,
                                         const size_t *lens, size_t n) {
    for (size_t i = 0; s && i < n; i++)
        if (!s[i] && (!lens || lens[i]))
            return evlm__fail(EVLM_ERR_ARG, "gguf writer: key '%s': NULL string %zu",
                              key ? key : "", i);
    EVLM_TRY(put_arr(w, key, EVLM_GGUF_STRING, n, s));
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(s[i]);
        EVLM_TRY(put_str(&w->kv, s[i], len));
    }
    return EVLM_OK;
}

evlm_status evlm_gguf_writer_set_arr_i32(evlm_gguf_writer *w, const char *key, const int32_t *v,
                                         size_t n) {
    EVLM_TRY(put_arr(w, key, EVLM_GGUF_I32, n, v));
    for (size_t i = 0; i < n; i++) EVLM_TRY(put_le(&w->kv, (uint32_t)v[i], 4));
    return EVLM_OK;
}

evlm_status evlm_gguf_writer_set_arr_f32(evlm_gguf_writer *w, const char *key, const float *v,
                                         size_t n) {
    EVLM_TRY(put_arr(w, key, EVLM_GGUF_F32, n, v));
    for (size_t i = 0; i < n; i++) EVLM_TRY(put_le(&w->kv, f32_bits(v[i]), 4));
    return EVLM_OK;
}

static evlm_status add_tensor(evlm_gguf_writer *w, const char *name, evlm_type type, int n_dims,
                              const int64_t *ne, const void *data, evlm_gguf_fill_fn fill,
                              void *ctx) {
    if (!w || !name || !name[0] || strlen(name) > EVLM_GGUF_MAX_NAME || !ne)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: bad tensor name '%s'",
                          name ? name : "(null)");
    if (evlm_gguf_ggml_type(type) < 0)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s': type %s has no GGUF equivalent",
                          name, evlm_type_name(type));
    if (n_dims < 1 || n_dims > EVLM_MAX_DIMS)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s': n_dims %d", name, n_dims);
    evlm_tensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || (uint64_t)ne[d] > (uint64_t)INT64_MAX / nel)
            return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s': bad ne[%d] = %lld", name, d,
                              (long long)ne[d]);
        nel *= (uint64_t)ne[d];
        t.ne[d] = ne[d];
    }
    if (ne[0] % evlm_type_block(type))
        return evlm__fail(EVLM_ERR_ARG,
                          "gguf writer: tensor '%s': %s needs ne[0] (%lld) a multiple of %d", name,
                          evlm_type_name(type), (long long)ne[0], evlm_type_block(type));
    if (nel / (uint64_t)evlm_type_block(type) > (uint64_t)SIZE_MAX / evlm_type_size(type) / 2)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s' is too large", name);
    if (!data && !fill)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s' has no data", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->tensors[i].t.name, name) == 0)
            return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s' given twice", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        gw_tensor *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt) return evlm__fail(EVLM_ERR_NOMEM, "gguf writer: out of memory");
        w->tensors = nt;
        w->cap_t = cap;
    }
    evlm_tensor_set_contiguous(&t);
    t.data = (void *)(uintptr_t)data;
    if (!(t.name = strdup(name))) return evlm__fail(EVLM_ERR_NOMEM, "gguf writer: out of memory");
    w->tensors[w->n_t++] = (gw_tensor){.t = t, .fill = fill, .ctx = ctx};
    return EVLM_OK;
}

evlm_status evlm_gguf_writer_add_tensor(evlm_gguf_writer *w, const char *name, evlm_type type,
                                        int n_dims, const int64_t *ne, const void *data) {
    if (!data)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s' has no data",
                          name ? name : "(null)");
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

evlm_status evlm_gguf_writer_add_tensor_fill(evlm_gguf_writer *w, const char *name, evlm_type type,
                                             int n_dims, const int64_t *ne, evlm_gguf_fill_fn fill,
                                             void *ctx) {
    if (!fill)
        return evlm__fail(EVLM_ERR_ARG, "gguf writer: tensor '%s' has no fill",
                          name ? name : "(null)");
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, ctx);
}

static size_t pad_to(uint64_t n) {
    return (size_t)((EVLM_GGUF_ALIGNMENT - n % EVLM_GGUF_ALIGNMENT) % EVLM_GGUF_ALIGNMENT);
}

typedef struct wstate {
    evlm_afile *af;
    evlm_gguf_progress_fn progress;
    void *pctx;
    uint64_t done, total;
} wstate;

static evlm_status report(wstate *ws, size_t n) {
    ws->done += n;
    if (ws->progress && ws->progress(ws->pctx, ws->done, ws->total))
        return evlm__fail(EVLM_ERR_ARG, "%s: write cancelled", ws->af->path);
    return EVLM_OK;
}

static evlm_status write_tensor(wstate *ws, const gw_tensor *wt, void *buf) {
    const evlm_tensor *t = &wt->t;
    size_t nb = evlm_tensor_nbytes(t);
    if (!wt->fill) {
        for (size_t off = 0; off < nb; off += WRITE_CHUNK) {
            size_t n = nb - off < WRITE_CHUNK ? nb - off : WRITE_CHUNK;
            EVLM_TRY(evlm_afile_write(ws->af, (const uint8_t *)t->data + off, n));
            EVLM_TRY(report(ws, n));
        }
        return EVLM_OK;
    }
    size_t row = t->nb[1];
    int64_t rows = (int64_t)(nb / row);
    int64_t per = (int64_t)(WRITE_CHUNK / row);
    if (per < 1) per = 1;
    for (int64_t r = 0; r < rows; r += per) {
        int64_t n = rows - r < per ? rows - r : per;
        evlm_status st = wt->fill(wt->ctx, t, r, n, buf);
        if (st != EVLM_OK) return evlm__fail_prefix(st, "%s: tensor '%s'", ws->af->path, t->name);
        EVLM_TRY(evlm_afile_write(ws->af, buf, (size_t)n * row));
        EVLM_TRY(report(ws, (size_t)n * row));
    }
    return EVLM_OK;
}

static evlm_status write_body(evlm_gguf_writer *w, wstate *ws) {
    static const char zeros[EVLM_GGUF_ALIGNMENT];
    evlm_str h = {0};
    size_t max_fill = 0;
    evlm_status st = evlm_str_append(&h, "GGUF", 4);
    if (st == EVLM_OK) st = put_le(&h, EVLM_GGUF_VERSION, 4);
    if (st == EVLM_OK) st = put_le(&h, w->n_t, 8);
    if (st == EVLM_OK) st = put_le(&h, w->n_kv, 8);
    if (st == EVLM_OK && w->kv.len) st = evlm_str_append(&h, w->kv.data, w->kv.len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t && st == EVLM_OK; i++) {
        gw_tensor *wt = &w->tensors[i];
        size_t nb = evlm_tensor_nbytes(&wt->t);
        wt->offset = off;
        off += nb + pad_to(nb);
        ws->total += nb;
        if (wt->fill) {
            size_t row = wt->t.nb[1], chunk = row * (WRITE_CHUNK / row ? WRITE_CHUNK / row : 1);
            if (chunk > nb) chunk = nb;
            if (chunk > max_fill) max_fill = chunk;
        }
        st = put_str(&h, wt->t.name, strlen(wt->t.name));
        if (st == EVLM_OK) st = put_le(&h, (uint32_t)wt->t.n_dims, 4);
        for (int d = 0; d < wt->t.n_dims && st == EVLM_OK; d++)
            st = put_le(&h, (uint64_t)wt->t.ne[d], 8);
        if (st == EVLM_OK) st = put_le(&h, (uint32_t)evlm_gguf_ggml_type(wt->t.type), 4);
        if (st == EVLM_OK) st = put_le(&h, wt->offset, 8);
    }
    if (st == EVLM_OK && pad_to(h.len)) st = evlm_str_append(&h, zeros, pad_to(h.len));
    if (st == EVLM_OK) st = evlm_afile_write(ws->af, h.data, h.len);
    evlm_str_free(&h);
    void *buf = NULL;
    if (st == EVLM_OK && max_fill && !(buf = malloc(max_fill)))
        st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", ws->af->path);
    for (size_t i = 0; i < w->n_t && st == EVLM_OK; i++) {
        size_t nb = evlm_tensor_nbytes(&w->tensors[i].t);
        st = write_tensor(ws, &w->tensors[i], buf);
        if (st == EVLM_OK && pad_to(nb)) st = evlm_afile_write(ws->af, zeros, pad_to(nb));
    }
    free(buf);
    return st;
}

evlm_status evlm_gguf_writer_write(evlm_gguf_writer *w, const char *path,
                                   evlm_gguf_progress_fn progress, void *progress_ctx) {
    if (!w || !path) return evlm__fail(EVLM_ERR_ARG, "gguf writer: NULL argument");
    evlm_afile af;
    EVLM_TRY(evlm_afile_open(&af, path));
    wstate ws = {&af, progress, progress_ctx, 0, 0};
    evlm_status st = write_body(w, &ws);
    if (st != EVLM_OK) {
        evlm_afile_abort(&af);
        return st;
    }
    return evlm_afile_commit(&af);
}
