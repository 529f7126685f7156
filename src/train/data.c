/*
 * data.c - training items from question-answer .jsonl files and text files, the seeded order and
 * the batches (see data.h). Not here: image decoding and processing (the model's processor,
 * reached through the family's prompt hook), the forward pass.
 */
#include "train/data.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/status.h"
#include "model/family.h"
#include "model/model_impl.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- items ---------------------------------------------------------------------------------- */

static evlm_status push_item(evlm_tdata *d, const char *path, int line, int32_t *ids, int n,
                             int first_target, int image) {
    uint8_t *target = calloc((size_t)n, 1);
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        evlm_titem *v = realloc(d->items, sizeof *v * (size_t)cap);
        if (!v) {
            free(target);
            return evlm__fail(EVLM_ERR_NOMEM, "%s:%d: out of memory", path, line);
        }
        d->items = v;
        d->cap = cap;
    }
    if (!target) return evlm__fail(EVLM_ERR_NOMEM, "%s:%d: out of memory", path, line);
    int nt = 0;
    for (int t = first_target; t < n - 1; t++) target[t] = 1, nt++;
    d->items[d->n++] = (evlm_titem){ids, target, n, image, line};
    d->n_targets += nt;
    return EVLM_OK;
}

void evlm_tdata_free(evlm_tdata *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].ids);
        free(d->items[i].target);
    }
    for (int i = 0; i < d->n_images; i++) {
        free(d->images[i].path);
        free(d->images[i].pixels);
        free(d->images[i].mask);
    }
    free(d->items);
    free(d->images);
    memset(d, 0, sizeof *d);
}

static int find_image(evlm_tdata *d, const char *img_path) {
    for (int i = 0; i < d->n_images; i++)
        if (!strcmp(d->images[i].path, img_path)) return i;
    return -1;
}

/* The prompt's ids with the image tokens expanded (the family's prompt hook, as evlm_prompt_new
 * makes them) and the image's processed tiles, cached in d under its path: the first item that
 * shows an image keeps its tiles for the whole run, later ones share them. */
static evlm_status image_prompt_ids(evlm_tdata *d, evlm_model *m, const char *text,
                                    const char *img_path, const char *path, int line, int32_t **ids,
                                    size_t *n_ids, int *image) {
    *ids = NULL;
    *n_ids = 0;
    *image = -1;
    evlm_image_input in = {0};
    in.path = img_path;
    evlm_ids v = {0};
    float *pixels = NULL;
    uint8_t *mask = NULL;
    int n_tiles = 0;
    evlm_status st = evlm__prompt_pixels(m, text, false, &in, 1, &v, &pixels, &mask, &n_tiles);
    if (st != EVLM_OK) return evlm__fail_prefix(st, "%s:%d", path, line);
    int k = find_image(d, img_path);
    if (k >= 0) {
        if (d->images[k].n_tiles != n_tiles)
            st = evlm__fail(EVLM_ERR_FORMAT, "%s:%d: image %s gave %d tiles, earlier %d", path,
                            line, img_path, n_tiles, d->images[k].n_tiles);
        free(pixels);
        free(mask);
    } else {
        if (d->n_images == d->cap_images) {
            int cap = d->cap_images ? 2 * d->cap_images : 16;
            evlm_timage *nv = realloc(d->images, sizeof *nv * (size_t)cap);
            if (!nv)
                st = evlm__fail(EVLM_ERR_NOMEM, "%s:%d: out of memory", path, line);
            else
                d->images = nv, d->cap_images = cap;
        }
        char *name = st == EVLM_OK ? strdup(img_path) : NULL;
        if (st == EVLM_OK && !name)
            st = evlm__fail(EVLM_ERR_NOMEM, "%s:%d: out of memory", path, line);
        if (st != EVLM_OK) {
            free(pixels);
            free(mask);
        } else {
            k = d->n_images++;
            d->images[k] = (evlm_timage){name, pixels, mask, n_tiles};
        }
    }
    if (st != EVLM_OK) {
        evlm_ids_free(&v);
        return st;
    }
    *image = k;
    *ids = v.data; /* the caller frees it with free() */
    *n_ids = v.len;
    return EVLM_OK;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static evlm_status add_qa(evlm_tdata *d, evlm_model *m, const char *path, const char *base,
                          int line, char *text, int max_len) {
    cJSON *item = cJSON_Parse(text);
    if (!item || !cJSON_IsObject(item)) {
        cJSON_Delete(item);
        return evlm__fail(EVLM_ERR_FORMAT, "%s:%d: not a JSON object", path, line);
    }
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(item, "image");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(item, "question");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(item, "answer");
    evlm_status st = EVLM_OK;
    char img_path[8192];
    if (!cJSON_IsString(q) || !cJSON_IsString(a) ||
        (img && !cJSON_IsNull(img) && !cJSON_IsString(img)))
        st = evlm__fail(EVLM_ERR_FORMAT,
                        "%s:%d: expected \"question\" and \"answer\" strings (and \"image\", a "
                        "path, or none)",
                        path, line);
    bool has_img = st == EVLM_OK && cJSON_IsString(img);
    if (has_img) {
        if (img->valuestring[0] == '/')
            snprintf(img_path, sizeof img_path, "%s", img->valuestring);
        else
            snprintf(img_path, sizeof img_path, "%s/%s", base, img->valuestring);
        if (!evlm_file_exists(img_path))
            st = evlm__fail(EVLM_ERR_IO, "%s:%d: image %s not found", path, line, img_path);
        else if (!evlm_model_has_vision(m))
            st = evlm__fail(EVLM_ERR_ARG, "%s:%d: an item with an image, the model has no vision",
                            path, line);
    }
    char *prompt = NULL, *turn = NULL;
    int32_t *pids = NULL, *aids = NULL;
    size_t np = 0, na = 0;
    int image = -1;
    if (st == EVLM_OK) st = evlm_chat_prompt(m, q->valuestring, has_img, &prompt);
    if (st == EVLM_OK) {
        st = evlm_chat_answer(m, q->valuestring, has_img, a->valuestring, &turn);
        if (st != EVLM_OK) st = evlm__fail_prefix(st, "%s:%d", path, line);
    }
    if (st == EVLM_OK) {
        if (has_img)
            st = image_prompt_ids(d, m, prompt, img_path, path, line, &pids, &np, &image);
        else
            st = evlm_tokenize(m, prompt, strlen(prompt), true, false, &pids, &np);
    }
    if (st == EVLM_OK) st = evlm_tokenize(m, turn, strlen(turn), true, false, &aids, &na);
    if (st == EVLM_OK && (np == 0 || na == 0))
        st = evlm__fail(EVLM_ERR_FORMAT, "%s:%d: empty prompt or answer after tokenization", path,
                        line);
    if (st == EVLM_OK && np + na > (size_t)max_len)
        st = evlm__fail(EVLM_ERR_ARG,
                        "%s:%d: the item is %zu tokens (answer %zu), longer than the "
                        "context of %d",
                        path, line, np + na, na, max_len);
    int32_t *ids = NULL;
    if (st == EVLM_OK) {
        ids = malloc(sizeof *ids * (np + na));
        if (!ids) st = evlm__fail(EVLM_ERR_NOMEM, "%s:%d: out of memory", path, line);
    }
    if (st == EVLM_OK) {
        memcpy(ids, pids, sizeof *ids * np);
        memcpy(ids + np, aids, sizeof *ids * na);
        /* position np - 1 (the prompt's last token) predicts the first answer token */
        st = push_item(d, path, line, ids, (int)(np + na), (int)np - 1, image);
        if (st == EVLM_OK) ids = NULL;
    }
    free(ids);
    free(pids);
    free(aids);
    free(prompt);
    free(turn);
    cJSON_Delete(item);
    return st;
}

evlm_status evlm_tdata_add_jsonl(evlm_tdata *d, evlm_model *m, const char *path, int max_len) {
    char *data;
    size_t len;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 30, &data, &len));
    char base[4096];
    snprintf(base, sizeof base, "%s", path);
    char *slash = strrchr(base, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(base, sizeof base, ".");
    evlm_status st = EVLM_OK;
    int line = 0, before = d->n;
    for (char *p = data; p && *p && st == EVLM_OK;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        char *t = trim(p);
        if (*t) st = add_qa(d, m, path, base, line, t, max_len);
        p = nl ? nl + 1 : NULL;
    }
    free(data);
    if (st == EVLM_OK && d->n == before) st = evlm__fail(EVLM_ERR_FORMAT, "%s: no items", path);
    return st;
}

evlm_status evlm_tdata_add_text(evlm_tdata *d, const evlm_model *m, const char *path, int max_len) {
    if (max_len < 2) return evlm__fail(EVLM_ERR_ARG, "%s: context of %d tokens", path, max_len);
    char *data;
    size_t len;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 30, &data, &len));
    evlm_status st = EVLM_OK;
    int line = 1, before = d->n;
    char *p = data;
    while (*p && st == EVLM_OK) {
        /* a paragraph: lines up to a blank line */
        while (*p == '\n') p++, line++;
        if (!*p) break;
        int start = line;
        char *e = p;
        for (;;) {
            char *nl = strchr(e, '\n');
            if (!nl) {
                e += strlen(e);
                break;
            }
            char *q = nl + 1;
            while (*q == ' ' || *q == '\t' || *q == '\r') q++;
            if (*q == '\n' || !*q) {
                e = nl; /* the outer loop counts this newline */
                break;
            }
            line++;
            e = nl + 1;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        st = evlm_tokenize(m, p, (size_t)(e - p), false, true, &ids, &n);
        for (size_t at = 0; st == EVLM_OK && at + 1 < n; at += (size_t)max_len) {
            size_t k = n - at < (size_t)max_len ? n - at : (size_t)max_len;
            if (k < 2) break;
            int32_t *piece = malloc(sizeof *piece * k);
            if (!piece) {
                st = evlm__fail(EVLM_ERR_NOMEM, "%s:%d: out of memory", path, start);
                break;
            }
            memcpy(piece, ids + at, sizeof *piece * k);
            st = push_item(d, path, start, piece, (int)k, 0, -1);
            if (st != EVLM_OK) free(piece);
        }
        free(ids);
        if (st != EVLM_OK) evlm__fail_prefix(st, "%s:%d", path, start);
        p = e;
    }
    free(data);
    if (st == EVLM_OK && d->n == before)
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: no text of two tokens or more", path);
    return st;
}

/* ---- order and batches ---------------------------------------------------------------------- */

uint64_t evlm_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void evlm_tdata_shuffle(int *order, int n, uint64_t *rng) {
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        /* j uniform in [0, i] by rejection (no modulo bias) */
        uint64_t lim = UINT64_MAX - UINT64_MAX % (uint64_t)(i + 1), r;
        do r = evlm_splitmix64(rng);
        while (r >= lim);
        int j = (int)(r % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

evlm_status evlm_tdata_batch(const evlm_tdata *d, const int *order, int64_t *pos, int max_seq,
                             int max_tokens, evlm_tseq *seqs, int *n_seq) {
    int k = 0, rows = 0;
    while (k < max_seq && *pos < d->n) {
        const evlm_titem *it = &d->items[order[*pos]];
        if (it->n > max_tokens && k == 0)
            return evlm__fail(EVLM_ERR_ARG,
                              "item of line %d: %d tokens, more than the %d of a batch", it->line,
                              it->n, max_tokens);
        if (rows + it->n > max_tokens) break;
        const evlm_timage *im = it->image >= 0 ? &d->images[it->image] : NULL;
        seqs[k++] = (evlm_tseq){.ids = it->ids,
                                .n = it->n,
                                .target = it->target,
                                .pixels = im ? im->pixels : NULL,
                                .pixel_mask = im ? im->mask : NULL,
                                .n_tiles = im ? im->n_tiles : 0};
        rows += it->n;
        (*pos)++;
    }
    *n_seq = k;
    return EVLM_OK;
}
