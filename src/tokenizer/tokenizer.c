/*
 * tokenizer.c - tokenizer.json loading, added-token splitting, and the encode / decode
 * pipelines of Hugging Face tokenizers (see tokenizer.h for the supported components).
 *
 * Encode (tokenizer/mod.rs encode_single_sequence + added_vocabulary.rs
 * extract_and_normalize): split the raw text on the added tokens with normalized == false,
 * normalize the remaining pieces, split them on the normalized added tokens, run the
 * pre-tokenizers, then the BPE model on each pre-token; add_special applies the
 * post-processor's single template. Decode: ids -> token strings (added tokens first, as
 * the reference), special ones dropped when asked, then the decoder chain.
 *
 * Loading refuses what it does not implement, naming the field, rather than tokenizing
 * differently from the reference. Not here: offsets, truncation, padding of single
 * sequences, pair inputs, WordPiece / Unigram / WordLevel models.
 */
#include "tokenizer/tokenizer.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- load helpers ----------------------------------------------------------------------- */

typedef struct loader {
    const char *what; /* file name for messages */
    evlm_tokenizer *t;
    tk_ctx ctx;
    int vocab_max, added_max;
    size_t n_entries; /* vocab + added tokens (bounds the id range) */
} loader;

#define PATH_CAP 320

static evlm_status fail_at(evlm_status st, const loader *L, const char *path, const char *msg) {
    return evlm__fail(st, "%s: %s: %s", L->what, path, msg);
}

/* Copies a string into the pool (NUL-terminated); errors name path. */
static evlm_status pool_add(loader *L, const char *path, const char *s, size_t n, uint32_t *off) {
    evlm_tokenizer *t = L->t;
    if (n > EVLM_TK_MAX_TOKEN)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: string of %zu bytes is too long", L->what, path,
                          n);
    if (!evlm__tk_utf8_valid(s, n, NULL))
        return fail_at(EVLM_ERR_FORMAT, L, path, "string is not valid UTF-8");
    if (t->pool.len + n + 1 > UINT32_MAX)
        return fail_at(EVLM_ERR_NOMEM, L, path, "token strings exceed 4 GiB");
    *off = (uint32_t)t->pool.len;
    EVLM_TRY(evlm_str_append(&t->pool, s, n));
    EVLM_TRY(evlm_str_append(&t->pool, "", 1)); /* keep the NUL inside the pool */
    if (n > t->max_token_len) t->max_token_len = n;
    return EVLM_OK;
}

static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* Required string field. */
static evlm_status req_str(const loader *L, const cJSON *obj, const char *path, const char *key,
                           const char **out) {
    const cJSON *v = field(obj, key);
    if (!v || !cJSON_IsString(v))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: field \"%s\" is missing or not a string",
                          L->what, path, key);
    *out = v->valuestring;
    return EVLM_OK;
}

static evlm_status opt_bool(const loader *L, const cJSON *obj, const char *path, const char *key,
                            bool *out) {
    char where[PATH_CAP + 64];
    snprintf(where, sizeof where, "%s: %s", L->what, path);
    return evlm_json_bool(where, obj, key, out);
}

static evlm_status opt_str(const loader *L, const cJSON *obj, const char *path, const char *key,
                           const char **out) {
    char where[PATH_CAP + 64];
    snprintf(where, sizeof where, "%s: %s", L->what, path);
    return evlm_json_str(where, obj, key, out);
}

/* A single-character string (Metaspace replacement, Strip content). */
static evlm_status one_char(const loader *L, const char *path, const char *key, const char *s,
                            uint32_t *cp) {
    size_t n = strlen(s), bad;
    size_t k = n ? evlm__tk_utf8_next((const uint8_t *)s, n, cp, &bad) : 0;
    if (!k || k != n)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: field \"%s\" must be one character", L->what,
                          path, key);
    return EVLM_OK;
}

/* {"String": s} or {"Regex": r} */
static evlm_status load_pattern(const loader *L, const cJSON *obj, const char *path,
                                pcre2_code **re) {
    const cJSON *p = field(obj, "pattern");
    char sub[PATH_CAP];
    snprintf(sub, sizeof sub, "%s.pattern", path);
    if (!p || !cJSON_IsObject(p))
        return fail_at(EVLM_ERR_FORMAT, L, path, "field \"pattern\" is missing or not an object");
    const cJSON *s = field(p, "String"), *r = field(p, "Regex");
    if (s && cJSON_IsString(s))
        return evlm__tk_pattern_compile(re, L->what, sub, s->valuestring, false);
    if (r && cJSON_IsString(r))
        return evlm__tk_pattern_compile(re, L->what, sub, r->valuestring, true);
    return fail_at(EVLM_ERR_FORMAT, L, sub, "expected {\"String\": ...} or {\"Regex\": ...}");
}

static evlm_status get_type(const loader *L, const cJSON *obj, const char *path,
                            const char **type) {
    if (!cJSON_IsObject(obj)) return fail_at(EVLM_ERR_FORMAT, L, path, "not an object");
    return req_str(L, obj, path, "type", type);
}

/* Iterates the array field key of obj (a Sequence), calling fn on each element. */
typedef evlm_status (*elem_fn)(loader *L, const cJSON *e, const char *path, int depth);

static evlm_status each_elem(loader *L, const cJSON *obj, const char *path, const char *key,
                             int depth, elem_fn fn) {
    const cJSON *arr = field(obj, key);
    if (!arr || !cJSON_IsArray(arr))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: field \"%s\" is missing or not an array",
                          L->what, path, key);
    if (depth > 8) return fail_at(EVLM_ERR_FORMAT, L, path, "Sequence nested too deeply");
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char sub[PATH_CAP];
        snprintf(sub, sizeof sub, "%s.%s[%d]", path, key, i);
        EVLM_TRY(fn(L, e, sub, depth + 1));
    }
    return EVLM_OK;
}

#define STAGE_PUSH(L, path, arr, n, T, out)                                                        \
    do {                                                                                           \
        if ((n) >= EVLM_TK_MAX_STAGES)                                                             \
            return fail_at(EVLM_ERR_FORMAT, L, path, "too many pipeline stages");                  \
        T *nv_ = realloc((arr), ((n) + 1) * sizeof *nv_);                                          \
        if (!nv_) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");                   \
        (arr) = nv_;                                                                               \
        memset(&(arr)[n], 0, sizeof *nv_);                                                         \
        (out) = &(arr)[(n)++];                                                                     \
    } while (0)

static evlm_status parse_prepend_scheme(const loader *L, const cJSON *obj, const char *path,
                                        tk_prepend *out) {
    const char *ps = NULL;
    bool aps = true;
    EVLM_TRY(opt_str(L, obj, path, "prepend_scheme", &ps));
    EVLM_TRY(opt_bool(L, obj, path, "add_prefix_space", &aps));
    if (!ps)
        *out = aps ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER; /* legacy field */
    else if (!strcmp(ps, "always"))
        *out = TK_PREPEND_ALWAYS;
    else if (!strcmp(ps, "never"))
        *out = TK_PREPEND_NEVER;
    else if (!strcmp(ps, "first"))
        *out = TK_PREPEND_FIRST;
    else
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: %s: unknown prepend_scheme \"%s\"", L->what,
                          path, ps);
    return EVLM_OK;
}

/* ---- normalizers ------------------------------------------------------------------------ */

static evlm_status load_normalizer(loader *L, const cJSON *obj, const char *path, int depth) {
    if (!obj || cJSON_IsNull(obj)) return EVLM_OK;
    const char *type = "";
    EVLM_TRY(get_type(L, obj, path, &type));
    if (!strcmp(type, "Sequence"))
        return each_elem(L, obj, path, "normalizers", depth, load_normalizer);
    evlm_tokenizer *t = L->t;
    tk_norm *n;
    if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") ||
        !strcmp(type, "NFKD") || !strcmp(type, "Lowercase") || !strcmp(type, "Prepend") ||
        !strcmp(type, "Replace") || !strcmp(type, "Strip")) {
        STAGE_PUSH(L, path, t->norms, t->n_norms, tk_norm, n);
    } else {
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: %s: unsupported normalizer type \"%s\"",
                          L->what, path, type);
    }
    if (!strcmp(type, "NFC"))
        n->type = TK_N_NFC;
    else if (!strcmp(type, "NFD"))
        n->type = TK_N_NFD;
    else if (!strcmp(type, "NFKC"))
        n->type = TK_N_NFKC;
    else if (!strcmp(type, "NFKD"))
        n->type = TK_N_NFKD;
    else if (!strcmp(type, "Lowercase"))
        n->type = TK_N_LOWERCASE;
    else if (!strcmp(type, "Strip")) {
        n->type = TK_N_STRIP;
        n->left = n->right = true;
        EVLM_TRY(opt_bool(L, obj, path, "strip_left", &n->left));
        EVLM_TRY(opt_bool(L, obj, path, "strip_right", &n->right));
    } else {
        const char *s = "";
        bool prepend = !strcmp(type, "Prepend");
        n->type = prepend ? TK_N_PREPEND : TK_N_REPLACE;
        EVLM_TRY(req_str(L, obj, path, prepend ? "prepend" : "content", &s));
        n->len = strlen(s);
        if (n->len > EVLM_TK_MAX_TOKEN || !evlm__tk_utf8_valid(s, n->len, NULL))
            return fail_at(EVLM_ERR_FORMAT, L, path, "string too long or not valid UTF-8");
        n->str = malloc(n->len + 1);
        if (!n->str) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(n->str, s, n->len + 1);
        if (!prepend) EVLM_TRY(load_pattern(L, obj, path, &n->re));
    }
    return EVLM_OK;
}

/* ---- pre-tokenizers --------------------------------------------------------------------- */

/* byte_level.rs: the GPT-2 split (Onig there, PCRE2 with Unicode properties here) */
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static evlm_status load_pretok(loader *L, const cJSON *obj, const char *path, int depth) {
    if (!obj || cJSON_IsNull(obj)) return EVLM_OK;
    const char *type = "";
    EVLM_TRY(get_type(L, obj, path, &type));
    if (!strcmp(type, "Sequence"))
        return each_elem(L, obj, path, "pretokenizers", depth, load_pretok);
    evlm_tokenizer *t = L->t;
    tk_pretok *p;
    if (!strcmp(type, "ByteLevel") || !strcmp(type, "Split") || !strcmp(type, "Digits") ||
        !strcmp(type, "Metaspace")) {
        STAGE_PUSH(L, path, t->pretoks, t->n_pretoks, tk_pretok, p);
    } else {
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: %s: unsupported pre_tokenizer type \"%s\"",
                          L->what, path, type);
    }
    if (!strcmp(type, "ByteLevel")) {
        p->type = TK_P_BYTELEVEL;
        p->add_prefix_space = p->use_regex = true;
        EVLM_TRY(opt_bool(L, obj, path, "add_prefix_space", &p->add_prefix_space));
        EVLM_TRY(opt_bool(L, obj, path, "use_regex", &p->use_regex));
        if (p->use_regex)
            EVLM_TRY(evlm__tk_pattern_compile(&p->re, L->what, path, gpt2_regex, true));
    } else if (!strcmp(type, "Digits")) {
        p->type = TK_P_DIGITS;
        EVLM_TRY(opt_bool(L, obj, path, "individual_digits", &p->individual_digits));
    } else if (!strcmp(type, "Split")) {
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        static const tk_behavior vals[] = {TK_B_REMOVED, TK_B_ISOLATED, TK_B_MERGED_PREV,
                                           TK_B_MERGED_NEXT, TK_B_CONTIGUOUS};
        const char *b = "";
        p->type = TK_P_SPLIT;
        EVLM_TRY(req_str(L, obj, path, "behavior", &b));
        size_t k = 0;
        while (k < 5 && strcmp(b, names[k])) k++;
        if (k == 5)
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: %s: unknown Split behavior \"%s\"",
                              L->what, path, b);
        p->behavior = vals[k];
        EVLM_TRY(opt_bool(L, obj, path, "invert", &p->invert));
        EVLM_TRY(load_pattern(L, obj, path, &p->re));
    } else {
        const char *r = "\xE2\x96\x81"; /* U+2581 */
        p->type = TK_P_METASPACE;
        p->split = true;
        EVLM_TRY(opt_str(L, obj, path, "replacement", &r));
        EVLM_TRY(one_char(L, path, "replacement", r, &p->repl));
        EVLM_TRY(opt_bool(L, obj, path, "split", &p->split));
        EVLM_TRY(parse_prepend_scheme(L, obj, path, &p->prepend));
    }
    return EVLM_OK;
}

/* ---- decoders --------------------------------------------------------------------------- */

static evlm_status load_decoder(loader *L, const cJSON *obj, const char *path, int depth) {
    if (!obj || cJSON_IsNull(obj)) return EVLM_OK;
    const char *type = "";
    EVLM_TRY(get_type(L, obj, path, &type));
    if (!strcmp(type, "Sequence")) return each_elem(L, obj, path, "decoders", depth, load_decoder);
    evlm_tokenizer *t = L->t;
    tk_dec *d;
    if (!strcmp(type, "ByteLevel") || !strcmp(type, "Metaspace") || !strcmp(type, "ByteFallback") ||
        !strcmp(type, "Fuse") || !strcmp(type, "Strip") || !strcmp(type, "Replace")) {
        STAGE_PUSH(L, path, t->decs, t->n_decs, tk_dec, d);
    } else {
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: %s: unsupported decoder type \"%s\"", L->what,
                          path, type);
    }
    if (!strcmp(type, "ByteLevel"))
        d->type = TK_D_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback"))
        d->type = TK_D_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse"))
        d->type = TK_D_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        const char *r = "\xE2\x96\x81";
        d->type = TK_D_METASPACE;
        EVLM_TRY(opt_str(L, obj, path, "replacement", &r));
        EVLM_TRY(one_char(L, path, "replacement", r, &d->ch));
        EVLM_TRY(parse_prepend_scheme(L, obj, path, &d->prepend));
    } else if (!strcmp(type, "Strip")) {
        const char *c = "";
        int64_t start = 0, stop = 0;
        char where[PATH_CAP + 64];
        snprintf(where, sizeof where, "%s: %s", L->what, path);
        d->type = TK_D_STRIP;
        EVLM_TRY(req_str(L, obj, path, "content", &c));
        EVLM_TRY(one_char(L, path, "content", c, &d->ch));
        EVLM_TRY(evlm_json_int(where, obj, "start", 0, 1 << 20, &start));
        EVLM_TRY(evlm_json_int(where, obj, "stop", 0, 1 << 20, &stop));
        d->start = (size_t)start;
        d->stop = (size_t)stop;
    } else {
        const char *c = "";
        d->type = TK_D_REPLACE;
        EVLM_TRY(req_str(L, obj, path, "content", &c));
        d->content_len = strlen(c);
        if (d->content_len > EVLM_TK_MAX_TOKEN || !evlm__tk_utf8_valid(c, d->content_len, NULL))
            return fail_at(EVLM_ERR_FORMAT, L, path, "content too long or not valid UTF-8");
        d->content = malloc(d->content_len + 1);
        if (!d->content) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(d->content, c, d->content_len + 1);
        EVLM_TRY(load_pattern(L, obj, path, &d->re));
    }
    return EVLM_OK;
}

/* ---- post-processors -------------------------------------------------------------------- */

/* Replaces every sequence marker (-1) of the composed template by items, in place. */
static evlm_status compose(loader *L, const char *path, const int32_t *items, size_t n) {
    evlm_tokenizer *t = L->t;
    size_t n_seq = 0;
    for (size_t i = 0; i < n; i++) n_seq += items[i] < 0;
    size_t total = n - n_seq + n_seq * t->n_post;
    if (total > EVLM_TK_MAX_TEMPLATE) return fail_at(EVLM_ERR_FORMAT, L, path, "template too long");
    int32_t *v = malloc((total ? total : 1) * sizeof *v);
    if (!v) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i] >= 0)
            v[k++] = items[i];
        else
            for (size_t j = 0; j < t->n_post; j++) v[k++] = t->post[j];
    }
    free(t->post);
    t->post = v;
    t->n_post = k;
    return EVLM_OK;
}

static evlm_status check_id(loader *L, const char *path, double d, int32_t *id) {
    if (!(d >= 0 && d < (double)L->t->n_ids) || d != (double)(int32_t)d)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: id %.0f is not a token id (vocab %d)", L->what,
                          path, d, L->t->n_ids);
    *id = (int32_t)d;
    return EVLM_OK;
}

/* ["[CLS]", 101] */
static evlm_status token_pair(loader *L, const cJSON *obj, const char *path, const char *key,
                              int32_t *id) {
    const cJSON *a = field(obj, key);
    char sub[PATH_CAP];
    snprintf(sub, sizeof sub, "%s.%s", path, key);
    if (!a || cJSON_GetArraySize(a) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(a, 1)))
        return fail_at(EVLM_ERR_FORMAT, L, sub, "expected [token, id]");
    return check_id(L, sub, cJSON_GetArrayItem(a, 1)->valuedouble, id);
}

static evlm_status load_template(loader *L, const cJSON *obj, const char *path) {
    const cJSON *single = field(obj, "single"), *specials = field(obj, "special_tokens");
    if (!single || !cJSON_IsArray(single))
        return fail_at(EVLM_ERR_UNSUPPORTED, L, path, "field \"single\" must be a list of pieces");
    int32_t items[EVLM_TK_MAX_TEMPLATE];
    size_t n = 0;
    int i = 0;
    for (const cJSON *e = single->child; e; e = e->next, i++) {
        char sub[PATH_CAP];
        snprintf(sub, sizeof sub, "%s.single[%d]", path, i);
        const cJSON *sp = field(e, "SpecialToken"), *sq = field(e, "Sequence");
        const char *id = NULL;
        if (sq) {
            EVLM_TRY(req_str(L, sq, sub, "id", &id));
            if (strcmp(id, "A"))
                return fail_at(EVLM_ERR_UNSUPPORTED, L, sub, "single template names sequence B");
            if (n >= EVLM_TK_MAX_TEMPLATE)
                return fail_at(EVLM_ERR_FORMAT, L, sub, "template too long");
            items[n++] = -1;
        } else if (sp) {
            EVLM_TRY(req_str(L, sp, sub, "id", &id));
            const cJSON *st = specials ? cJSON_GetObjectItemCaseSensitive(specials, id) : NULL;
            const cJSON *ids = st ? field(st, "ids") : NULL;
            if (!ids || !cJSON_IsArray(ids))
                return evlm__fail(EVLM_ERR_FORMAT,
                                  "%s: %s: special token \"%.64s\" is not in special_tokens",
                                  L->what, sub, id);
            for (const cJSON *x = ids->child; x; x = x->next) {
                if (!cJSON_IsNumber(x))
                    return fail_at(EVLM_ERR_FORMAT, L, sub, "ids must be numbers");
                if (n >= EVLM_TK_MAX_TEMPLATE)
                    return fail_at(EVLM_ERR_FORMAT, L, sub, "template too long");
                EVLM_TRY(check_id(L, sub, x->valuedouble, &items[n]));
                n++;
            }
        } else {
            return fail_at(EVLM_ERR_FORMAT, L, sub, "expected SpecialToken or Sequence");
        }
    }
    return compose(L, path, items, n);
}

static evlm_status load_post(loader *L, const cJSON *obj, const char *path, int depth) {
    if (!obj || cJSON_IsNull(obj)) return EVLM_OK;
    const char *type = "";
    EVLM_TRY(get_type(L, obj, path, &type));
    L->t->has_post = true;
    if (!strcmp(type, "Sequence")) return each_elem(L, obj, path, "processors", depth, load_post);
    if (!strcmp(type, "ByteLevel")) return EVLM_OK; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) return load_template(L, obj, path);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        int32_t items[3] = {0, -1, 0};
        EVLM_TRY(token_pair(L, obj, path, "cls", &items[0]));
        EVLM_TRY(token_pair(L, obj, path, "sep", &items[2]));
        return compose(L, path, items, 3);
    }
    return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: %s: unsupported post_processor type \"%s\"",
                      L->what, path, type);
}

/* ---- model (BPE) ------------------------------------------------------------------------ */

static evlm_status load_vocab(loader *L, const cJSON *vocab) {
    evlm_tokenizer *t = L->t;
    if (!vocab || !cJSON_IsObject(vocab))
        return fail_at(EVLM_ERR_FORMAT, L, "model.vocab", "missing or not an object");
    size_t n = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) n++;
    L->n_entries += n;
    EVLM_TRY(evlm__tk_strmap_init(&t->vocab, n));
    for (const cJSON *e = vocab->child; e; e = e->next) {
        char path[PATH_CAP];
        snprintf(path, sizeof path, "model.vocab[\"%.48s\"]", e->string ? e->string : "");
        double d = e->valuedouble;
        if (!cJSON_IsNumber(e) || !(d >= 0 && d < EVLM_TK_MAX_ID) || d != (double)(int32_t)d)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: id must be an integer in [0, %d)", L->what,
                              path, EVLM_TK_MAX_ID);
        uint32_t off;
        const char *key = e->string ? e->string : "";
        size_t klen = strlen(key);
        EVLM_TRY(pool_add(L, path, key, klen, &off));
        EVLM_TRY(evlm__tk_strmap_put(&t->vocab, t->pool.data, off, (uint32_t)klen, (int32_t)d));
        if ((int)d > L->vocab_max) L->vocab_max = (int)d;
    }
    return EVLM_OK;
}

static evlm_status lookup_merge_part(loader *L, const char *path, const char *s, size_t n,
                                     int32_t *id) {
    *id = evlm__tk_strmap_get(&L->t->vocab, L->t->pool.data, s, n);
    if (*id < 0)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: token \"%.*s\" is not in model.vocab", L->what,
                          path, (int)(n > 64 ? 64 : n), s);
    return EVLM_OK;
}

static evlm_status load_merges(loader *L, const cJSON *merges) {
    evlm_tokenizer *t = L->t;
    if (!merges || !cJSON_IsArray(merges))
        return fail_at(EVLM_ERR_FORMAT, L, "model.merges", "missing or not an array");
    size_t n = 0;
    for (const cJSON *e = merges->child; e; e = e->next) n++;
    if (n > (size_t)EVLM_TK_MAX_ID * 4)
        return fail_at(EVLM_ERR_FORMAT, L, "model.merges", "too many merges");
    EVLM_TRY(evlm__tk_pairmap_init(&t->merges, n));
    char *buf = malloc(2 * (size_t)EVLM_TK_MAX_TOKEN + 2);
    if (!buf) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
    evlm_status st = EVLM_OK;
    size_t i = 0;
    uint32_t rank = 0;
    for (const cJSON *e = merges->child; e && st == EVLM_OK; e = e->next, i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof path, "model.merges[%zu]", i);
        const char *a, *b;
        size_t na, nb;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring;
            if (!strncmp(s, "#version", 8)) continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = fail_at(EVLM_ERR_FORMAT, L, path, "expected \"left right\" with one space");
                break;
            }
            a = s;
            na = (size_t)(sp - s);
            b = sp + 1;
            nb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b = e->child->next->valuestring;
            na = strlen(a);
            nb = strlen(b);
        } else {
            st = fail_at(EVLM_ERR_FORMAT, L, path, "expected \"left right\" or [left, right]");
            break;
        }
        int32_t ia, ib, im;
        st = lookup_merge_part(L, path, a, na, &ia);
        if (st == EVLM_OK) st = lookup_merge_part(L, path, b, nb, &ib);
        if (st != EVLM_OK) break;
        if (nb < t->prefix_len || na > EVLM_TK_MAX_TOKEN || nb > EVLM_TK_MAX_TOKEN) {
            st = fail_at(EVLM_ERR_FORMAT, L, path, "right token shorter than the subword prefix");
            break;
        }
        memcpy(buf, a, na);
        memcpy(buf + na, b + t->prefix_len, nb - t->prefix_len);
        st = lookup_merge_part(L, path, buf, na + nb - t->prefix_len, &im);
        if (st == EVLM_OK) evlm__tk_pairmap_put(&t->merges, ia, ib, rank++, im);
    }
    free(buf);
    return st;
}

static evlm_status load_model(loader *L, const cJSON *m) {
    evlm_tokenizer *t = L->t;
    if (!m || !cJSON_IsObject(m))
        return fail_at(EVLM_ERR_FORMAT, L, "model", "missing or not an object");
    const char *type = NULL, *unk = NULL, *prefix = NULL, *suffix = NULL;
    EVLM_TRY(opt_str(L, m, "model", "type", &type));
    if (type ? strcmp(type, "BPE") != 0 : !field(m, "merges"))
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: model.type: \"%s\" is not supported (only BPE)", L->what,
                          type ? type : "(none)");
    const cJSON *dropout = field(m, "dropout");
    if (dropout && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return fail_at(EVLM_ERR_UNSUPPORTED, L, "model.dropout", "BPE dropout is not supported");
    EVLM_TRY(opt_str(L, m, "model", "unk_token", &unk));
    EVLM_TRY(opt_str(L, m, "model", "continuing_subword_prefix", &prefix));
    EVLM_TRY(opt_str(L, m, "model", "end_of_word_suffix", &suffix));
    EVLM_TRY(opt_bool(L, m, "model", "fuse_unk", &t->fuse_unk));
    EVLM_TRY(opt_bool(L, m, "model", "byte_fallback", &t->byte_fallback));
    EVLM_TRY(opt_bool(L, m, "model", "ignore_merges", &t->ignore_merges));
    if (prefix) {
        EVLM_TRY(
            pool_add(L, "model.continuing_subword_prefix", prefix, strlen(prefix), &t->prefix_off));
        t->prefix_len = (uint32_t)strlen(prefix);
    }
    if (suffix) {
        EVLM_TRY(pool_add(L, "model.end_of_word_suffix", suffix, strlen(suffix), &t->suffix_off));
        t->suffix_len = (uint32_t)strlen(suffix);
    }
    EVLM_TRY(load_vocab(L, field(m, "vocab")));
    EVLM_TRY(load_merges(L, field(m, "merges")));
    t->has_unk = unk != NULL;
    t->unk_id = unk ? evlm__tk_strmap_get(&t->vocab, t->pool.data, unk, strlen(unk)) : -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = evlm__tk_strmap_get(&t->vocab, t->pool.data, name, 6);
    }
    return EVLM_OK;
}

/* ---- added tokens ----------------------------------------------------------------------- */

static evlm_status load_added(loader *L, const cJSON *arr) {
    evlm_tokenizer *t = L->t;
    if (!arr || cJSON_IsNull(arr)) return EVLM_OK;
    if (!cJSON_IsArray(arr)) return fail_at(EVLM_ERR_FORMAT, L, "added_tokens", "not an array");
    size_t n = 0;
    for (const cJSON *e = arr->child; e; e = e->next) n++;
    if (n > EVLM_TK_MAX_ID) return fail_at(EVLM_ERR_FORMAT, L, "added_tokens", "too many tokens");
    L->n_entries += n;
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
    EVLM_TRY(evlm__tk_strmap_init(&t->added_map, n));
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char path[PATH_CAP], where[PATH_CAP + 64];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        snprintf(where, sizeof where, "%s: %s", L->what, path);
        if (!cJSON_IsObject(e)) return fail_at(EVLM_ERR_FORMAT, L, path, "not an object");
        tk_added *a = &t->added[t->n_added];
        int64_t id = -1;
        const char *content = "";
        EVLM_TRY(evlm_json_int(where, e, "id", 0, EVLM_TK_MAX_ID - 1, &id));
        if (id < 0) return fail_at(EVLM_ERR_FORMAT, L, path, "field \"id\" is missing");
        EVLM_TRY(req_str(L, e, path, "content", &content));
        a->id = (int32_t)id;
        a->normalized = true; /* AddedToken's defaults */
        EVLM_TRY(opt_bool(L, e, path, "special", &a->special));
        EVLM_TRY(opt_bool(L, e, path, "lstrip", &a->lstrip));
        EVLM_TRY(opt_bool(L, e, path, "rstrip", &a->rstrip));
        EVLM_TRY(opt_bool(L, e, path, "single_word", &a->single_word));
        EVLM_TRY(opt_bool(L, e, path, "normalized", &a->normalized));
        size_t len = strlen(content);
        EVLM_TRY(pool_add(L, path, content, len, &a->off));
        a->len = (uint32_t)len;
        EVLM_TRY(evlm__tk_strmap_put(&t->added_map, t->pool.data, a->off, a->len, a->id));
        if (a->id > L->added_max) L->added_max = a->id;
        t->n_added++;
    }
    return EVLM_OK;
}

static const tk_added *mset_tok(const evlm_tokenizer *t, const tk_mset *m, int32_t i,
                                const char **s, uint32_t *n) {
    const tk_added *a = &t->added[i];
    *s = t->pool.data + (m->normalized ? a->noff : a->off);
    *n = m->normalized ? a->nlen : a->len;
    return a;
}

typedef struct mkey {
    uint8_t first;
    uint32_t len;
    int32_t idx;
} mkey;

/* (first byte, length descending, token order): the longest candidate is met first */
static int mkey_cmp(const void *pa, const void *pb) {
    const mkey *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static evlm_status build_mset(evlm_tokenizer *t, tk_mset *m, bool normalized) {
    m->normalized = normalized;
    size_t cap = t->n_added ? t->n_added : 1;
    m->idx = malloc(cap * sizeof *m->idx);
    mkey *keys = malloc(cap * sizeof *keys);
    if (!m->idx || !keys) {
        free(keys);
        return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (size_t i = 0; i < t->n_added; i++) {
        const tk_added *a = &t->added[i];
        if (a->normalized != normalized) continue;
        const char *s = "";
        uint32_t n;
        mset_tok(t, m, (int32_t)i, &s, &n);
        if (n) keys[m->n++] = (mkey){(uint8_t)s[0], n, (int32_t)i};
    }
    if (m->n) qsort(keys, m->n, sizeof *keys, mkey_cmp);
    size_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < m->n && keys[k].first < b) k++;
        m->first[b] = (uint32_t)k;
    }
    for (size_t i = 0; i < m->n; i++) m->idx[i] = keys[i].idx;
    free(keys);
    return EVLM_OK;
}

static evlm_status finish(loader *L) {
    evlm_tokenizer *t = L->t;
    int max = L->vocab_max > L->added_max ? L->vocab_max : L->added_max;
    if (max >= 0 && (size_t)max > 8 * L->n_entries + 4096)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: token id %d is far beyond the %zu tokens", L->what,
                          max, L->n_entries);
    t->n_ids = max + 1;
    size_t n = (size_t)t->n_ids ? (size_t)t->n_ids : 1;
    t->id_off = malloc(n * sizeof *t->id_off);
    t->id_len = malloc(n * sizeof *t->id_len);
    t->id_added = malloc(n * sizeof *t->id_added);
    if (!t->id_off || !t->id_len || !t->id_added)
        return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->id_len, 0xff, n * sizeof *t->id_len);
    memset(t->id_added, 0xff, n * sizeof *t->id_added);
    for (size_t e = 0; e < t->vocab.n; e++) {
        const tk_entry *x = &t->vocab.ent[e];
        t->id_off[x->id] = x->off;
        t->id_len[x->id] = x->len;
    }
    for (size_t i = 0; i < t->n_added; i++) t->id_added[t->added[i].id] = (int32_t)i;
    /* patterns of normalized added tokens are their normalized content */
    evlm_str s = {0};
    evlm_status st = EVLM_OK;
    for (size_t i = 0; i < t->n_added && st == EVLM_OK; i++) {
        tk_added *a = &t->added[i];
        if (!a->normalized) continue;
        char path[PATH_CAP];
        snprintf(path, sizeof path, "added_tokens[%zu] (normalized)", i);
        st = evlm__tk_normalize(t, &L->ctx, t->pool.data + a->off, a->len, &s);
        if (st == EVLM_OK) st = pool_add(L, path, s.data, s.len, &a->noff);
        a->nlen = (uint32_t)s.len;
    }
    evlm_str_free(&s);
    EVLM_TRY(st);
    EVLM_TRY(build_mset(t, &t->raw_set, false));
    return build_mset(t, &t->norm_set, true);
}

static evlm_status load_root(loader *L, const cJSON *root) {
    evlm_tokenizer *t = L->t;
    if (!cJSON_IsObject(root)) return evlm__fail(EVLM_ERR_FORMAT, "%s: not a JSON object", L->what);
    const cJSON *trunc = field(root, "truncation"), *pad = field(root, "padding");
    if (trunc) return fail_at(EVLM_ERR_UNSUPPORTED, L, "truncation", "truncation is not supported");
    if (pad) { /* BatchLongest pads a single sequence to itself */
        const cJSON *s = field(pad, "strategy");
        if (!cJSON_IsString(s) || strcmp(s->valuestring, "BatchLongest") ||
            field(pad, "pad_to_multiple_of"))
            return fail_at(EVLM_ERR_UNSUPPORTED, L, "padding",
                           "only BatchLongest padding is supported");
    }
    EVLM_TRY(load_model(L, cJSON_GetObjectItemCaseSensitive(root, "model")));
    EVLM_TRY(load_added(L, field(root, "added_tokens")));
    EVLM_TRY(load_normalizer(L, field(root, "normalizer"), "normalizer", 0));
    EVLM_TRY(load_pretok(L, field(root, "pre_tokenizer"), "pre_tokenizer", 0));
    EVLM_TRY(load_decoder(L, field(root, "decoder"), "decoder", 0));
    t->has_decoder = field(root, "decoder") != NULL;
    EVLM_TRY(finish(L));
    t->post = malloc(sizeof *t->post);
    if (!t->post) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
    t->post[0] = -1;
    t->n_post = 1;
    return load_post(L, field(root, "post_processor"), "post_processor", 0);
}

evlm_status evlm_tokenizer_from_json(const char *what, const char *json, size_t len,
                                     evlm_tokenizer **out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "evlm_tokenizer_from_json: out is NULL");
    *out = NULL;
    if (!json && len) return evlm__fail(EVLM_ERR_ARG, "evlm_tokenizer_from_json: json is NULL");
    if (!what) what = "tokenizer.json";
    cJSON *root;
    EVLM_TRY(evlm_json_parse(what, json ? json : "", len, &root));
    evlm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    loader L = {what, t, {0}, -1, -1, 0};
    evlm_status st = evlm__tk_ctx_init(&L.ctx);
    if (st == EVLM_OK) st = load_root(&L, root);
    evlm__tk_ctx_free(&L.ctx);
    cJSON_Delete(root);
    if (st != EVLM_OK) {
        evlm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return EVLM_OK;
}

evlm_status evlm_tokenizer_load(const char *path, evlm_tokenizer **out) {
    if (!out || !path) return evlm__fail(EVLM_ERR_ARG, "evlm_tokenizer_load: NULL argument");
    *out = NULL;
    char *data;
    size_t n;
    EVLM_TRY(evlm_read_file(path, EVLM_JSON_MAX_FILE, &data, &n));
    evlm_status st = evlm_tokenizer_from_json(path, data, n, out);
    free(data);
    return st;
}

void evlm_tokenizer_free(evlm_tokenizer *t) {
    if (!t) return;
    evlm_str_free(&t->pool);
    free(t->id_off);
    free(t->id_len);
    free(t->id_added);
    evlm__tk_strmap_free(&t->vocab);
    evlm__tk_strmap_free(&t->added_map);
    evlm__tk_pairmap_free(&t->merges);
    free(t->added);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    for (size_t i = 0; i < t->n_norms; i++) evlm__tk_norm_free(&t->norms[i]);
    for (size_t i = 0; i < t->n_pretoks; i++) evlm__tk_pretok_free(&t->pretoks[i]);
    for (size_t i = 0; i < t->n_decs; i++) evlm__tk_dec_free(&t->decs[i]);
    free(t->norms);
    free(t->pretoks);
    free(t->decs);
    free(t->post);
    free(t);
}

/* ---- added-token split (added_vocabulary.rs find_matches) ------------------------------- */

static uint32_t cp_before(const char *s, size_t at) {
    size_t b = at - 1;
    while (b > 0 && ((uint8_t)s[b] & 0xC0) == 0x80) b--;
    uint32_t cp;
    size_t bad;
    if (!evlm__tk_utf8_next((const uint8_t *)s + b, at - b, &cp, &bad)) cp = 0xFFFD;
    return cp;
}

static uint32_t cp_after(const char *s, size_t n, size_t at) {
    uint32_t cp;
    size_t bad;
    if (!evlm__tk_utf8_next((const uint8_t *)s + at, n - at, &cp, &bad)) cp = 0xFFFD;
    return cp;
}

static bool is_word_cp(uint32_t cp) {
    return evlm__tk_is_word(cp);
}

/* End of the text before at once its trailing whitespace is cut (space_leftmost_at_end). */
static size_t lstrip_to(const char *s, size_t at) {
    while (at > 0) {
        size_t b = at - 1;
        while (b > 0 && ((uint8_t)s[b] & 0xC0) == 0x80) b--;
        if (!evlm__tk_is_space(cp_after(s, at, b))) break;
        at = b;
    }
    return at;
}

/* Length of the whitespace at s[at..n) (space_rightmost_at_start). */
static size_t rstrip_len(const char *s, size_t n, size_t at) {
    size_t i = at;
    while (i < n) {
        uint32_t cp;
        size_t bad, k = evlm__tk_utf8_next((const uint8_t *)s + i, n - i, &cp, &bad);
        if (!k || !evlm__tk_is_space(cp)) break;
        i += k;
    }
    return i - at;
}

/* The longest added token of m starting at s[pos], or -1. */
static int32_t match_at(const evlm_tokenizer *t, const tk_mset *m, const char *s, size_t n,
                        size_t pos) {
    uint8_t b = (uint8_t)s[pos];
    for (uint32_t k = m->first[b]; k < m->first[b + 1]; k++) {
        const char *p;
        uint32_t len;
        mset_tok(t, m, m->idx[k], &p, &len);
        if (len <= n - pos && memcmp(s + pos, p, len) == 0) return m->idx[k];
    }
    return -1;
}

static evlm_status split_added(const evlm_tokenizer *t, const tk_mset *m, const char *s, size_t n,
                               bool origin, bool parse_special, tk_pieces *out) {
    size_t start_offset = 0, pos = 0;
    while (m->n && pos < n) {
        int32_t k = match_at(t, m, s, n, pos);
        if (k < 0) {
            pos++;
            continue;
        }
        const tk_added *a = &t->added[k];
        size_t mstart = pos, mend = pos + (m->normalized ? a->nlen : a->len);
        pos = mend; /* leftmost-longest matches do not overlap */
        if (a->special && !parse_special) continue;
        if (a->single_word) {
            bool start_space = mstart == 0 || !is_word_cp(cp_before(s, mstart));
            bool stop_space = mend == n || !is_word_cp(cp_after(s, n, mend));
            if (!start_space || !stop_space) continue;
        }
        size_t start = mstart, stop = mend;
        if (a->lstrip) {
            size_t ns = lstrip_to(s, mstart);
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) stop += rstrip_len(s, n, mend);
        if (start_offset < start)
            EVLM_TRY(evlm__tk_pieces_push(out, s + start_offset, start - start_offset, -1,
                                          origin && start_offset == 0));
        EVLM_TRY(evlm__tk_pieces_push(out, s + start, stop - start, a->id, false));
        start_offset = stop;
    }
    if (start_offset < n)
        EVLM_TRY(evlm__tk_pieces_push(out, s + start_offset, n - start_offset, -1,
                                      origin && start_offset == 0));
    return EVLM_OK;
}

/* ---- encode / decode -------------------------------------------------------------------- */

static evlm_status encode_pieces(const evlm_tokenizer *t, tk_ctx *c, const char *text, size_t len,
                                 bool parse_special, evlm_ids *seq) {
    tk_pieces a = {0}, b = {0};
    evlm_str norm = {0};
    evlm_status st = split_added(t, &t->raw_set, text, len, true, parse_special, &a);
    /* normalize what is left, then split on the normalized added tokens */
    for (size_t i = 0; i < a.n && st == EVLM_OK; i++) {
        const tk_piece *p = &a.v[i];
        if (p->id >= 0) {
            st = evlm__tk_pieces_push(&b, a.text.data + p->off, p->len, p->id, false);
            continue;
        }
        st = evlm__tk_normalize(t, c, a.text.data + p->off, p->len, &norm);
        if (st == EVLM_OK)
            st = split_added(t, &t->norm_set, norm.data, norm.len, p->origin, parse_special, &b);
    }
    for (size_t k = 0; k <= t->n_pretoks && st == EVLM_OK; k++) {
        tk_pieces x = a; /* the output of the last stage becomes the input */
        a = b;
        b = x;
        evlm__tk_pieces_reset(&b);
        if (k == t->n_pretoks) break;
        for (size_t i = 0; i < a.n && st == EVLM_OK; i++) {
            const tk_piece *p = &a.v[i];
            if (p->id >= 0)
                st = evlm__tk_pieces_push(&b, a.text.data + p->off, p->len, p->id, false);
            else
                st = evlm__tk_pretokenize(&t->pretoks[k], c, a.text.data + p->off, p->len,
                                          p->origin, &b);
        }
    }
    for (size_t i = 0; i < a.n && st == EVLM_OK; i++) {
        const tk_piece *p = &a.v[i];
        if (p->id >= 0)
            st = evlm_ids_push(seq, p->id);
        else
            st = evlm__tk_bpe(t, a.text.data + p->off, p->len, seq);
    }
    evlm__tk_pieces_free(&a);
    evlm__tk_pieces_free(&b);
    evlm_str_free(&norm);
    return st;
}

evlm_status evlm_tokenizer_encode(const evlm_tokenizer *t, const char *text, size_t len,
                                  bool parse_special, bool add_special, evlm_ids *out) {
    if (!t || !out || (!text && len))
        return evlm__fail(EVLM_ERR_ARG, "evlm_tokenizer_encode: NULL argument");
    if (len > EVLM_TK_MAX_TEXT)
        return evlm__fail(EVLM_ERR_ARG, "evlm_tokenizer_encode: text of %zu bytes is too long",
                          len);
    size_t bad;
    if (!evlm__tk_utf8_valid(text, len, &bad))
        return evlm__fail(EVLM_ERR_ARG, "evlm_tokenizer_encode: text is not valid UTF-8 (byte %zu)",
                          bad);
    tk_ctx c;
    evlm_ids seq = {0};
    size_t keep = out->len;
    evlm_status st = evlm__tk_ctx_init(&c);
    if (st == EVLM_OK) st = encode_pieces(t, &c, text ? text : "", len, parse_special, &seq);
    if (add_special && t->has_post) {
        for (size_t i = 0; i < t->n_post && st == EVLM_OK; i++)
            st = t->post[i] < 0 ? evlm_ids_append(out, seq.data, seq.len)
                                : evlm_ids_push(out, t->post[i]);
    } else if (st == EVLM_OK) {
        st = evlm_ids_append(out, seq.data, seq.len);
    }
    if (st != EVLM_OK) out->len = keep;
    evlm_ids_free(&seq);
    evlm__tk_ctx_free(&c);
    return st;
}

evlm_status evlm_tokenizer_decode(const evlm_tokenizer *t, const int32_t *ids, size_t n,
                                  bool skip_special, evlm_str *out) {
    if (!t || !out || (!ids && n))
        return evlm__fail(EVLM_ERR_ARG, "evlm_tokenizer_decode: NULL argument");
    tk_pieces toks = {0};
    evlm_status st = EVLM_OK;
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids) {
            st = evlm__fail(EVLM_ERR_RANGE,
                            "evlm_tokenizer_decode: id %d at position %zu is out of "
                            "range [0, %d)",
                            id, i, t->n_ids);
            break;
        }
        int32_t a = t->id_added[id];
        if (a >= 0) {
            if (skip_special && t->added[a].special) continue;
            st = evlm__tk_pieces_push(&toks, t->pool.data + t->added[a].off, t->added[a].len, 0,
                                      false);
        } else if (t->id_len[id] != UINT32_MAX) {
            st = evlm__tk_pieces_push(&toks, t->pool.data + t->id_off[id], t->id_len[id], 0, false);
        } else {
            st = evlm__fail(EVLM_ERR_RANGE,
                            "evlm_tokenizer_decode: id %d at position %zu has no "
                            "token",
                            id, i);
        }
    }
    size_t keep = out->len;
    tk_ctx c = {0};
    if (st == EVLM_OK) st = evlm__tk_ctx_init(&c);
    if (st == EVLM_OK) st = evlm__tk_decode_chain(t, &c, &toks, out);
    if (st != EVLM_OK && out->data) {
        out->len = keep;
        out->data[keep] = 0;
    }
    evlm__tk_ctx_free(&c);
    evlm__tk_pieces_free(&toks);
    return st;
}

/* ---- accessors -------------------------------------------------------------------------- */

int evlm_tokenizer_n_vocab(const evlm_tokenizer *t) {
    return t ? t->n_ids : 0;
}

int32_t evlm_tokenizer_token_id(const evlm_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    int32_t id = evlm__tk_strmap_get(&t->added_map, t->pool.data, token, n);
    return id >= 0 ? id : evlm__tk_strmap_get(&t->vocab, t->pool.data, token, n);
}

const char *evlm_tokenizer_token_str(const evlm_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    if (t->id_added[id] >= 0) return t->pool.data + t->added[t->id_added[id]].off;
    return t->id_len[id] != UINT32_MAX ? t->pool.data + t->id_off[id] : NULL;
}

bool evlm_tokenizer_is_special(const evlm_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_ids || t->id_added[id] < 0) return false;
    return t->added[t->id_added[id]].special;
}
