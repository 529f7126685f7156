/*
 * weights.c - the named-tensor set every model binds from (see weights.h): storage and an
 * open-addressing hash table of names, the files behind the views, typed getters (matrices that
 * stay in their stored type, small float vectors widened once at load), the table-driven binder,
 * and the 16-row repack of the matrices the layers bound.
 *
 * Not here: reading a container (safetensors.c, gguf.c fill the set), dequantizing vectors
 * (norms and biases are stored as floats).
 */
#include "io/weights.h"
#include "core/status.h"
#include "quant/quants.h"
#include "quant/repack.h"
#include "quant/sparse24.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct w_file {
    char *path;   /* as given (for messages) */
    evlm_map map; /* unmapped on free when mapped */
    int mapped;
} w_file;

struct evlm_weights {
    w_file *files;
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
        return evlm__fail(EVLM_ERR_NOMEM, "weights: out of memory");
    }
    w->slot_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i]) w->slots[find_slot(w, w->tensors[old[i] - 1].name)] = old[i];
    free(old);
    return EVLM_OK;
}

evlm_status evlm__weights_add(evlm_weights *w, const evlm_tensor *t, uint32_t file, int *dup) {
    *dup = 0;
    if (w->n >= UINT32_MAX - 1) return evlm__fail(EVLM_ERR_NOMEM, "weights: too many tensors");
    if ((w->n + 1) * 2 > w->slot_cap) EVLM_TRY(grow_slots(w));
    size_t slot = find_slot(w, t->name);
    if (w->slots[slot]) {
        *dup = 1;
        return EVLM_OK;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        evlm_tensor *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt) return evlm__fail(EVLM_ERR_NOMEM, "weights: out of memory");
        w->tensors = nt;
        uint32_t *nf = realloc(w->file_of, cap * sizeof *nf);
        if (!nf) return evlm__fail(EVLM_ERR_NOMEM, "weights: out of memory");
        w->file_of = nf;
        uint8_t *nm = realloc(w->matrix, cap);
        if (!nm) return evlm__fail(EVLM_ERR_NOMEM, "weights: out of memory");
        memset(nm + w->cap, 0, cap - w->cap);
        w->matrix = nm;
        w->cap = cap;
    }
    char *name = strdup(t->name);
    if (!name) return evlm__fail(EVLM_ERR_NOMEM, "weights: out of memory");
    w->tensors[w->n] = *t;
    w->tensors[w->n].name = name;
    w->file_of[w->n] = file;
    w->n++;
    w->slots[slot] = (uint32_t)w->n;
    return EVLM_OK;
}

/* ---- the set -------------------------------------------------------------------------- */

evlm_weights *evlm__weights_new(void) {
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

evlm_status evlm__weights_add_file(evlm_weights *w, const char *path, const evlm_map *map,
                                   uint32_t *index) {
    w_file *nf = realloc(w->files, (w->n_files + 1) * sizeof *nf);
    if (!nf) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    w->files = nf;
    w_file *f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
    if (map) {
        f->map = *map;
        f->mapped = 1;
    }
    *index = (uint32_t)w->n_files++;
    return EVLM_OK;
}

uint32_t evlm__weights_file_of(const evlm_weights *w, const evlm_tensor *t) {
    return w->file_of[t - w->tensors];
}

const char *evlm__weights_file_path(const evlm_weights *w, uint32_t file) {
    return file < w->n_files ? w->files[file].path : "";
}

evlm_status evlm_weights_from_views(const char *what, const evlm_tensor *views, size_t n,
                                    void *owner, void (*free_owner)(void *), evlm_weights **out) {
    *out = NULL;
    if (!what) what = "weights";
    if (n && !views) return evlm__fail(EVLM_ERR_ARG, "%s: NULL views", what);
    evlm_weights *w = evlm__weights_new();
    if (!w) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    uint32_t idx = 0;
    evlm_status st = evlm__weights_add_file(w, what, NULL, &idx);
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        if (!views[i].name) {
            st = evlm__fail(EVLM_ERR_ARG, "%s: view %zu has no name", what, i);
            break;
        }
        int dup;
        st = evlm__weights_add(w, &views[i], idx, &dup);
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

/* whether tensor i is to be interleaved (R16 or S24) */
static bool repackable(const evlm_weights *w, size_t i, bool quant, bool floats) {
    const evlm_tensor *t = &w->tensors[i];
    if (evlm_type_r16(t->type) == EVLM_TYPE_COUNT || !w->matrix[i] || t->n_dims != 2 ||
        t->ne[1] < EVLM_R16 || t->nb[1] != evlm_row_bytes(t->type, t->ne[0]))
        return false;
    if (evlm_type_traits_of(t->type)->kq) /* k-quants: whole super-blocks (kquant_repack.h) */
        return quant && t->ne[0] % evlm_type_block(t->type) == 0;
    return evlm_type_is_quant(t->type) ? quant && t->ne[0] % EVLM_QK == 0 : floats;
}

/* bytes of a tensor's copy in form rt (R16 or S24), on a 64-byte boundary */
static size_t form_bytes(const evlm_tensor *t, evlm_type rt) {
    return (evlm_r16_bytes(rt, t->ne[1], t->ne[0]) + 63) & ~(size_t)63;
}

/* One matrix's copy in slices of whole groups, taken from a shared counter by the pool's
 * threads; each slice is its own run of the copy, and its source pages are given back as soon as
 * it is done, so the resident set never holds a whole matrix twice. The 2:4 check runs the same
 * way before (check: every slice tests its rows; dense: one of them found a dense group). */
#define REPACK_SLICE (16 * EVLM_R16)
typedef struct {
    const evlm_tensor *t;
    evlm_type rt; /* the form: evlm_type_r16 or evlm_type_s24 of the tensor's type */
    char *dst;
    bool drop;  /* the source is a mapped file or someone else's views: give its pages back */
    bool check; /* only test the 2:4 pattern */
    atomic_int next;
    atomic_int dense;
} repack_task;

static void repack_fn(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    repack_task *rt = arg;
    const evlm_tensor *t = rt->t;
    size_t gbytes = EVLM_R16 * evlm_row_bytes(rt->rt, t->ne[0]);
    for (;;) {
        if (rt->check && atomic_load_explicit(&rt->dense, memory_order_relaxed)) break;
        int64_t r0 =
            (int64_t)atomic_fetch_add_explicit(&rt->next, 1, memory_order_relaxed) * REPACK_SLICE;
        if (r0 >= t->ne[1]) break;
        int64_t rows = t->ne[1] - r0 < REPACK_SLICE ? t->ne[1] - r0 : REPACK_SLICE;
        const char *src = (const char *)t->data + (size_t)r0 * t->nb[1];
        if (rt->check) {
            if (!evlm_s24_check(t->type, src, t->nb[1], rows, t->ne[0]))
                atomic_store_explicit(&rt->dense, 1, memory_order_relaxed);
            continue;
        }
        char *dst = rt->dst + (size_t)(r0 / EVLM_R16) * gbytes;
        if (evlm_type_is_s24(rt->rt))
            evlm_repack_s24(t->type, src, t->nb[1], rows, t->ne[0], dst);
        else
            evlm_repack_r16(t->type, src, t->nb[1], rows, t->ne[0], dst);
        if (rt->drop) drop_pages(src, (size_t)rows * t->nb[1]);
    }
}

/* whether every aligned group of 4 inputs of t holds 2 zeros (one pass over the pool) */
static bool is_s24(const evlm_tensor *t, evlm_pool *pool) {
    evlm_type st = evlm_type_s24(t->type);
    if (st == EVLM_TYPE_COUNT || !evlm_s24_check(t->type, t->data, t->nb[1], 1, t->ne[0]))
        return false; /* no form, an unfit k, or a dense first row: no need for the pool */
    repack_task rt = {.t = t, .rt = st, .check = true};
    atomic_init(&rt.next, 0);
    atomic_init(&rt.dense, 0);
    evlm_pool_run(pool, repack_fn, &rt);
    return !atomic_load(&rt.dense);
}

/* One buffer for all the copies, on 2 MB boundaries and marked for transparent huge pages: the
 * 1.5B bf16 model writes 3 GB at load, and 4 KB pages made that 750k page faults (most of the
 * load time is the kernel zeroing fresh pages, which the pool's threads share). */
evlm_status evlm_weights_repack(evlm_weights *w, bool quant, bool floats, bool sparse,
                                evlm_pool *pool) {
    evlm_type *form = calloc(w->n ? w->n : 1, sizeof *form);
    if (!form) return evlm__fail(EVLM_ERR_NOMEM, "out of memory planning the weight repack");
    size_t total = 0;
    for (size_t i = 0; i < w->n; i++) {
        const evlm_tensor *t = &w->tensors[i];
        form[i] = EVLM_TYPE_COUNT;
        if (!repackable(w, i, quant, floats)) continue;
        form[i] = sparse && is_s24(t, pool) ? evlm_type_s24(t->type) : evlm_type_r16(t->type);
        total += form_bytes(t, form[i]);
    }
    if (!total) {
        free(form);
        return EVLM_OK;
    }
    const size_t huge = (size_t)2 << 20;
    size_t len = (total + huge - 1) & ~(huge - 1);
    void **no = realloc(w->owned, (w->n_owned + 1) * sizeof *no);
    char *arena = no ? aligned_alloc(huge, len) : NULL;
    if (no) w->owned = no;
    if (!arena) {
        free(form);
        return evlm__fail(EVLM_ERR_NOMEM,
                          "%s: out of memory interleaving the weight matrices (%zu MB)",
                          evlm_weights_path(w), total >> 20);
    }
    w->owned[w->n_owned++] = arena;
#ifdef MADV_HUGEPAGE
    (void)madvise(arena, len, MADV_HUGEPAGE);
#endif
    for (size_t i = 0; i < w->n; i++) {
        if (form[i] == EVLM_TYPE_COUNT) continue;
        evlm_tensor *t = &w->tensors[i];
        repack_task rt = {.t = t, .rt = form[i], .dst = arena, .drop = w->n_files > 0 || w->owner};
        atomic_init(&rt.next, 0);
        atomic_init(&rt.dense, 0);
        evlm_pool_run(pool, repack_fn, &rt);
        size_t bytes = form_bytes(t, form[i]);
        t->type = form[i];
        if (evlm_type_is_s24(form[i])) /* its own row bytes (quant/sparse24.h) */
            evlm_tensor_set_contiguous(t);
        t->data = arena;
        arena += bytes;
    }
    free(form);
    return EVLM_OK;
}

evlm_status evlm_weights_repack_r16(evlm_weights *w, bool quant, bool floats, evlm_pool *pool) {
    return evlm_weights_repack(w, quant, floats, false, pool);
}

/* ---- typed getters ----------------------------------------------------------------------- */

evlm_status evlm_weights_check_float(const evlm_weights *w, const char *name,
                                     const evlm_tensor *t) {
    if (!evlm_type_is_file_float(t->type))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: tensor '%s' has dtype %s (expected F32/F16/BF16)",
                          evlm_weights_path(w), name, evlm_type_name(t->type));
    return EVLM_OK;
}

evlm_status evlm_weights_get_matrix(const evlm_weights *w, const char *name, int64_t cols,
                                    int64_t rows, const evlm_tensor **out) {
    int64_t ne[2] = {cols, rows};
    EVLM_TRY(evlm_weights_get(w, name, 2, ne, out));
    evlm_weights_note_matrix(w, *out);
    evlm_type t = (*out)->type;
    if (evlm_type_is_quant(t) || evlm_type_traits_of(t)->kq) { /* k-quants: the float gemm path */
        if (cols % evlm_type_block(t) != 0) {
            *out = NULL;
            return evlm__fail(
                EVLM_ERR_FORMAT, "%s: tensor '%s' is %s with %lld columns (not a multiple of %d)",
                evlm_weights_path(w), name, evlm_type_name(t), (long long)cols, evlm_type_block(t));
        }
        return EVLM_OK;
    }
    evlm_status st = evlm_weights_check_float(w, name, *out);
    if (st != EVLM_OK) *out = NULL;
    return st;
}

evlm_status evlm_weights_get_floats(const evlm_weights *w, const char *name, int n_dims,
                                    const int64_t *ne, size_t n, float *dst) {
    const evlm_tensor *t;
    EVLM_TRY(evlm_weights_get(w, name, n_dims, ne, &t));
    EVLM_TRY(evlm_weights_check_float(w, name, t));
    if ((size_t)evlm_tensor_nelements(t) != n)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' has %lld elements, expected %zu",
                          evlm_weights_path(w), name, (long long)evlm_tensor_nelements(t), n);
    evlm_dequantize_row(t->type, t->data, dst, (int64_t)n); /* any alignment (quant/types.h) */
    return EVLM_OK;
}

evlm_status evlm_weights_get_vector(const evlm_weights *w, const char *name, int64_t n,
                                    float *dst) {
    return evlm_weights_get_floats(w, name, 1, &n, (size_t)n, dst);
}

/* ---- binding ---------------------------------------------------------------------------- */

#define FBLOCK_MIN ((size_t)1 << 16) /* floats */

struct evlm_fblock {
    struct evlm_fblock *next;
    size_t used, cap;
    float data[];
};

float *evlm_fstore_alloc(evlm_fstore *s, size_t n) {
    struct evlm_fblock *b = s->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > FBLOCK_MIN ? n : FBLOCK_MIN;
        if (cap > (SIZE_MAX - sizeof *b) / sizeof(float)) return NULL;
        b = malloc(sizeof *b + cap * sizeof(float));
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = s->head;
        s->head = b;
    }
    float *p = b->data + b->used;
    b->used += n;
    return p;
}

void evlm_fstore_free(evlm_fstore *s) {
    for (struct evlm_fblock *b = s->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    s->head = NULL;
}

evlm_status evlm_weights_bind(const evlm_weights *w, const char *prefix, const evlm_bind *rows,
                              size_t n, void *dst, evlm_fstore *store) {
    char name[256];
    for (size_t i = 0; i < n; i++) {
        const evlm_bind *r = &rows[i];
        int len = snprintf(name, sizeof name, "%s%s", prefix, r->name);
        if (len < 0 || (size_t)len >= sizeof name)
            return evlm__fail(EVLM_ERR_ARG, "%s: tensor name '%s%s' is too long",
                              evlm_weights_path(w), prefix, r->name);
        void *field = (char *)dst + r->offset;
        if (r->optional && !evlm_weights_find(w, name)) {
            const void *none = NULL;
            memcpy(field, &none, sizeof none);
            continue;
        }
        if (r->kind == EVLM_BIND_MATRIX) {
            const evlm_tensor *t;
            EVLM_TRY(evlm_weights_get_matrix(w, name, r->ne[0], r->ne[1], &t));
            memcpy(field, &t, sizeof t);
        } else if (r->kind == EVLM_BIND_TENSOR) {
            const evlm_tensor *t;
            EVLM_TRY(evlm_weights_get(w, name, r->n_dims, r->ne, &t));
            EVLM_TRY(evlm_weights_check_float(w, name, t));
            memcpy(field, &t, sizeof t);
        } else {
            size_t count = 1;
            for (int d = 0; d < r->n_dims; d++) count *= (size_t)r->ne[d];
            float *p = evlm_fstore_alloc(store, count);
            if (!p) return evlm__fail(EVLM_ERR_NOMEM, "out of memory binding '%s'", name);
            EVLM_TRY(evlm_weights_get_floats(w, name, r->n_dims, r->ne, count, p));
            const float *cp = p;
            memcpy(field, &cp, sizeof cp);
        }
    }
    return EVLM_OK;
}
