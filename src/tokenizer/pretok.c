/*
 * pretok.c - the text side of the tokenizer: piece lists, UTF-8 helpers, regex patterns
 * with tokenizers' find_matches semantics, normalizers (NFC/NFD/NFKC/NFKD, Lowercase,
 * Prepend, Replace, Strip) and pre-tokenizers (ByteLevel, Split, Digits, Metaspace).
 *
 * Semantics follow huggingface/tokenizers (normalizer.rs split / replace, pattern.rs,
 * byte_level.rs, split.rs, digits.rs, metaspace.rs). Regexes run on PCRE2 (UTF + UCP)
 * where the reference uses Oniguruma; the patterns found in tokenizer.json files (GPT-2,
 * Llama-3 / Qwen2 splits) mean the same in both. Not here: offsets (evlm only needs ids),
 * BERT-style normalizers and pre-tokenizers, Precompiled charsmaps.
 */
#include "core/status.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- piece lists ------------------------------------------------------------------------ */

evlm_status evlm__tk_pieces_push(tk_pieces *p, const char *s, size_t n, int32_t id, bool origin) {
    if (n == 0 && id < 0) return EVLM_OK; /* tokenizers drops empty splits */
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        tk_piece *v = realloc(p->v, nc * sizeof *v);
        if (!v) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (pieces)");
        p->v = v;
        p->cap = nc;
    }
    size_t off = p->text.len;
    EVLM_TRY(evlm_str_append(&p->text, s, n));
    p->v[p->n++] = (tk_piece){off, n, id, origin};
    return EVLM_OK;
}

void evlm__tk_pieces_reset(tk_pieces *p) {
    p->n = 0;
    p->text.len = 0;
    if (p->text.data) p->text.data[0] = 0;
}

void evlm__tk_pieces_free(tk_pieces *p) {
    evlm_str_free(&p->text);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

size_t evlm__tk_utf8_next(const uint8_t *s, size_t n, uint32_t *cp, size_t *bad) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b0 < 0xC2) {
        *bad = 1;
        return 0;
    } else if (b0 < 0xE0) {
        need = 1;
        c = b0 & 0x1Fu;
    } else if (b0 < 0xF0) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F; /* no surrogates */
        c = b0 & 0x0Fu;
    } else if (b0 < 0xF5) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F; /* <= U+10FFFF */
        c = b0 & 0x07u;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) {
            *bad = k;
            return 0;
        }
        uint8_t b = s[k];
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) {
            *bad = k;
            return 0;
        }
        c = (c << 6) | (b & 0x3Fu);
    }
    *cp = c;
    return need + 1;
}

bool evlm__tk_utf8_valid(const char *s, size_t n, size_t *bad_at) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { /* ASCII fast path */
            i++;
            continue;
        }
        uint32_t cp;
        size_t bad;
        size_t k = evlm__tk_utf8_next(u + i, n - i, &cp, &bad);
        if (!k) {
            if (bad_at) *bad_at = i;
            return false;
        }
        i += k;
    }
    return true;
}

evlm_status evlm__tk_utf8_put(evlm_str *out, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return evlm_str_append(out, b, n);
}

evlm_status evlm__tk_utf8_lossy(evlm_str *out, const uint8_t *s, size_t n) {
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t bad;
        size_t k = evlm__tk_utf8_next(s + i, n - i, &cp, &bad);
        if (k) {
            i += k;
            continue;
        }
        EVLM_TRY(evlm_str_append(out, (const char *)s + run, i - run));
        EVLM_TRY(evlm_str_append(out, "\xEF\xBF\xBD", 3));
        i += bad;
        run = i;
    }
    return evlm_str_append(out, (const char *)s + run, n - run);
}

/* Decodes the (valid) code point at s[i]; returns its length. */
static size_t next_cp(const char *s, size_t n, size_t i, uint32_t *cp) {
    size_t bad;
    size_t k = evlm__tk_utf8_next((const uint8_t *)s + i, n - i, cp, &bad);
    if (!k) { /* not reached on validated text; treat the byte as one unit */
        *cp = 0xFFFD;
        return 1;
    }
    return k;
}

/* ---- Unicode classes -------------------------------------------------------------------- */

bool evlm__tk_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool evlm__tk_is_numeric(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool evlm__tk_is_word(uint32_t c) {
    if (c == 0x200C || c == 0x200D) return true; /* Join_Control */
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

/* ---- patterns --------------------------------------------------------------------------- */

evlm_status evlm__tk_ctx_init(tk_ctx *c) {
    memset(c, 0, sizeof *c);
    c->md = pcre2_match_data_create(1, NULL);
    if (!c->md) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (match data)");
    return EVLM_OK;
}

void evlm__tk_ctx_free(tk_ctx *c) {
    if (c->md) pcre2_match_data_free(c->md);
    free(c->m.v);
    memset(c, 0, sizeof *c);
}

evlm_status evlm__tk_pattern_compile(pcre2_code **out, const char *what, const char *field,
                                     const char *pat, bool regex) {
    *out = NULL;
    size_t n = strlen(pat);
    if (n > EVLM_TK_MAX_PATTERN)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: pattern of %zu bytes is too long (max %d)",
                          what, field, n, EVLM_TK_MAX_PATTERN);
    if (!evlm__tk_utf8_valid(pat, n, NULL))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: %s: pattern is not valid UTF-8", what, field);
    int err;
    PCRE2_SIZE eoff;
    /* PCRE2_LITERAL refuses PCRE2_UCP (it has no classes to apply it to) */
    uint32_t opt = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (regex ? PCRE2_UCP : PCRE2_LITERAL);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, n, opt, &err, &eoff, NULL);
    if (!re) {
        char msg[160];
        pcre2_get_error_message(err, (PCRE2_UCHAR *)msg, sizeof msg);
        return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: %s: regex error at offset %zu: %s", what,
                          field, (size_t)eoff, msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    *out = re;
    return EVLM_OK;
}

static evlm_status push_match(tk_matches *m, size_t a, size_t b, bool is_match) {
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 64;
        tk_match *v = realloc(m->v, nc * sizeof *v);
        if (!v) return evlm__fail(EVLM_ERR_NOMEM, "tokenizer: out of memory (matches)");
        m->v = v;
        m->cap = nc;
    }
    m->v[m->n++] = (tk_match){a, b, is_match};
    return EVLM_OK;
}

evlm_status evlm__tk_find_matches(const pcre2_code *re, tk_ctx *c, const char *s, size_t n) {
    tk_matches *m = &c->m;
    m->n = 0;
    if (n == 0) return push_match(m, 0, 0, false);
    size_t prev = 0, last_end = 0;
    bool have_last = false;
    size_t last_match_end = 0;
    while (last_end <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, last_end, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its frames on the heap */
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, last_end, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                             c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            char msg[160];
            pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
            return evlm__fail(EVLM_ERR_RANGE, "tokenizer: regex match failed: %s", msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t st = ov[0], e = ov[1];
        if (st < prev || e < st || e > n)
            return evlm__fail(EVLM_ERR_UNSUPPORTED, "tokenizer: regex gave a backward match");
        /* onig's find_iter: no empty match right after the previous match (no endless loop) */
        if (e == st && have_last && last_match_end == e) {
            if (last_end >= n) break;
            uint32_t cp;
            last_end += next_cp(s, n, last_end, &cp);
            continue;
        }
        last_end = e;
        last_match_end = e;
        have_last = true;
        if (prev != st) EVLM_TRY(push_match(m, prev, st, false));
        EVLM_TRY(push_match(m, st, e, true));
        prev = e;
    }
    if (prev != n) EVLM_TRY(push_match(m, prev, n, false));
    return EVLM_OK;
}

/* Pattern::find_matches for a char predicate: every matching char is its own match. */
typedef bool (*char_pred)(uint32_t cp, uint32_t arg);

static evlm_status find_char_matches(char_pred pred, uint32_t arg, tk_ctx *c, const char *s,
                                     size_t n) {
    tk_matches *m = &c->m;
    m->n = 0;
    if (n == 0) return push_match(m, 0, 0, false);
    size_t last = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = next_cp(s, n, i, &cp);
        if (pred(cp, arg)) {
            if (last < i) EVLM_TRY(push_match(m, last, i, false));
            EVLM_TRY(push_match(m, i, i + k, true));
            last = i + k;
        }
        i += k;
    }
    if (n > last) EVLM_TRY(push_match(m, last, n, false));
    return EVLM_OK;
}

static bool pred_numeric(uint32_t cp, uint32_t arg) {
    (void)arg;
    return evlm__tk_is_numeric(cp);
}

static bool pred_eq(uint32_t cp, uint32_t arg) {
    return cp == arg;
}

/* NormalizedString::split: turns the match list into the splits of a behavior, in place.
 * Records with is_match == true afterwards are the ones to drop (Removed). */
static void apply_behavior(tk_matches *m, tk_behavior b) {
    size_t w = 0;
    bool prev_match = false;
    switch (b) {
    case TK_B_REMOVED:
        return;
    case TK_B_ISOLATED:
        for (size_t i = 0; i < m->n; i++) m->v[i].is_match = false;
        return;
    case TK_B_CONTIGUOUS:
        for (size_t i = 0; i < m->n; i++) {
            tk_match x = m->v[i];
            if (x.is_match == prev_match && w > 0)
                m->v[w - 1].end = x.end;
            else
                m->v[w++] = (tk_match){x.start, x.end, false};
            prev_match = x.is_match;
        }
        m->n = w;
        return;
    case TK_B_MERGED_PREV:
        for (size_t i = 0; i < m->n; i++) {
            tk_match x = m->v[i];
            if (x.is_match && !prev_match && w > 0)
                m->v[w - 1].end = x.end;
            else
                m->v[w++] = (tk_match){x.start, x.end, false};
            prev_match = x.is_match;
        }
        m->n = w;
        return;
    case TK_B_MERGED_NEXT: {
        /* the reference folds from the right; do the same, writing from the end */
        size_t r = m->n; /* next free slot, counting down */
        for (size_t i = m->n; i-- > 0;) {
            tk_match x = m->v[i];
            if (x.is_match && !prev_match && r < m->n)
                m->v[r].start = x.start;
            else
                m->v[--r] = (tk_match){x.start, x.end, false};
            prev_match = x.is_match;
        }
        if (r > 0) memmove(m->v, m->v + r, (m->n - r) * sizeof *m->v);
        m->n -= r;
        return;
    }
    }
}

/* Pushes the kept splits of s (after apply_behavior) to out. */
static evlm_status push_splits(const tk_matches *m, const char *s, bool origin, tk_pieces *out) {
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].is_match) continue;
        size_t a = m->v[i].start, e = m->v[i].end;
        EVLM_TRY(evlm__tk_pieces_push(out, s + a, e - a, -1, origin && a == 0));
    }
    return EVLM_OK;
}

/* ---- normalizers ------------------------------------------------------------------------ */

static evlm_status norm_utf8proc(const char *s, size_t n, utf8proc_option_t opt, evlm_str *out) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r =
        utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt | UTF8PROC_STABLE);
    if (r < 0) {
        free(dst);
        return evlm__fail(EVLM_ERR_ARG, "tokenizer: normalization failed: %s", utf8proc_errmsg(r));
    }
    evlm_status st = evlm_str_append(out, (const char *)dst, (size_t)r);
    free(dst);
    return st;
}

static evlm_status norm_one(const tk_norm *nm, tk_ctx *c, const char *s, size_t n, evlm_str *out) {
    switch (nm->type) {
    case TK_N_NFC:
        return norm_utf8proc(s, n, UTF8PROC_COMPOSE, out);
    case TK_N_NFD:
        return norm_utf8proc(s, n, UTF8PROC_DECOMPOSE, out);
    case TK_N_NFKC:
        return norm_utf8proc(s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case TK_N_NFKD:
        return norm_utf8proc(s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case TK_N_LOWERCASE:
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            i += next_cp(s, n, i, &cp);
            if (cp == 0x130) { /* Rust's full mapping: "i" + combining dot above */
                EVLM_TRY(evlm_str_append(out, "i\xCC\x87", 3));
                continue;
            }
            EVLM_TRY(evlm__tk_utf8_put(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp)));
        }
        return EVLM_OK;
    case TK_N_PREPEND:
        if (n) EVLM_TRY(evlm_str_append(out, nm->str, nm->len));
        return evlm_str_append(out, s, n);
    case TK_N_REPLACE:
        EVLM_TRY(evlm__tk_find_matches(nm->re, c, s, n));
        for (size_t i = 0; i < c->m.n; i++) {
            tk_match x = c->m.v[i];
            if (x.is_match)
                EVLM_TRY(evlm_str_append(out, nm->str, nm->len));
            else
                EVLM_TRY(evlm_str_append(out, s + x.start, x.end - x.start));
        }
        return EVLM_OK;
    case TK_N_STRIP: {
        size_t a = 0, e = n;
        if (nm->left)
            while (a < e) {
                uint32_t cp;
                size_t k = next_cp(s, n, a, &cp);
                if (!evlm__tk_is_space(cp)) break;
                a += k;
            }
        if (nm->right)
            while (e > a) {
                size_t b = e - 1;
                while (b > a && ((uint8_t)s[b] & 0xC0) == 0x80) b--;
                uint32_t cp;
                next_cp(s, n, b, &cp);
                if (!evlm__tk_is_space(cp)) break;
                e = b;
            }
        return evlm_str_append(out, s + a, e - a);
    }
    }
    return EVLM_OK;
}

evlm_status evlm__tk_normalize(const evlm_tokenizer *t, tk_ctx *c, const char *s, size_t n,
                               evlm_str *out) {
    out->len = 0;
    EVLM_TRY(evlm_str_append(out, s, n));
    if (t->n_norms == 0) return EVLM_OK;
    evlm_str tmp = {0};
    evlm_status st = EVLM_OK;
    for (size_t i = 0; i < t->n_norms && st == EVLM_OK; i++) {
        tmp.len = 0;
        st = evlm_str_append(&tmp, "", 0);
        if (st == EVLM_OK) st = norm_one(&t->norms[i], c, out->data, out->len, &tmp);
        if (st == EVLM_OK) { /* swap: the result becomes the input of the next */
            evlm_str x = *out;
            *out = tmp;
            tmp = x;
        }
    }
    evlm_str_free(&tmp);
    return st;
}

/* ---- pre-tokenizers --------------------------------------------------------------------- */

/* Appends the GPT-2 byte-level form of s to out. */
static evlm_status byte_map(const char *s, size_t n, evlm_str *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = evlm__tk_byte_char((uint8_t)s[i]);
        EVLM_TRY(evlm__tk_utf8_put(out, cp));
    }
    return EVLM_OK;
}

static evlm_status pretok_bytelevel(const tk_pretok *p, tk_ctx *c, const char *s, size_t n,
                                    bool origin, tk_pieces *out) {
    evlm_str src = {0}, mapped = {0};
    evlm_status st = EVLM_OK;
    if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
        st = evlm_str_append(&src, " ", 1);
        if (st == EVLM_OK) st = evlm_str_append(&src, s, n);
        if (st == EVLM_OK) {
            s = src.data;
            n = src.len;
        }
    }
    if (st == EVLM_OK && p->use_regex) {
        st = evlm__tk_find_matches(p->re, c, s, n);
        for (size_t i = 0; i < c->m.n && st == EVLM_OK; i++) {
            tk_match x = c->m.v[i];
            if (x.end == x.start) continue;
            mapped.len = 0;
            st = byte_map(s + x.start, x.end - x.start, &mapped);
            if (st == EVLM_OK)
                st = evlm__tk_pieces_push(out, mapped.data, mapped.len, -1, origin && !x.start);
        }
    } else if (st == EVLM_OK && n) {
        st = byte_map(s, n, &mapped);
        if (st == EVLM_OK) st = evlm__tk_pieces_push(out, mapped.data, mapped.len, -1, origin);
    }
    evlm_str_free(&src);
    evlm_str_free(&mapped);
    return st;
}

static evlm_status pretok_metaspace(const tk_pretok *p, tk_ctx *c, const char *s, size_t n,
                                    bool origin, tk_pieces *out) {
    evlm_str r = {0};
    evlm_status st = EVLM_OK;
    uint32_t first = 0;
    if (n) next_cp(s, n, 0, &first);
    if (first == ' ') first = p->repl; /* the check runs after the replacement */
    bool prepend = n > 0 && first != p->repl &&
                   (p->prepend == TK_PREPEND_ALWAYS || (p->prepend == TK_PREPEND_FIRST && origin));
    /* tokenizers: replace ' ' by the replacement, then prepend it (only to non-empty text:
     * NormalizedString::prepend is a no-op on an empty string) */
    if (prepend) st = evlm__tk_utf8_put(&r, p->repl);
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        if (s[i] == ' ')
            st = evlm__tk_utf8_put(&r, p->repl);
        else
            st = evlm_str_append(&r, s + i, 1);
    }
    if (st == EVLM_OK && r.len) {
        if (p->split) {
            st = find_char_matches(pred_eq, p->repl, c, r.data, r.len);
            if (st == EVLM_OK) {
                apply_behavior(&c->m, TK_B_MERGED_NEXT);
                st = push_splits(&c->m, r.data, origin, out);
            }
        } else {
            st = evlm__tk_pieces_push(out, r.data, r.len, -1, origin);
        }
    }
    evlm_str_free(&r);
    return st;
}

evlm_status evlm__tk_pretokenize(const tk_pretok *p, tk_ctx *c, const char *s, size_t n,
                                 bool origin, tk_pieces *out) {
    switch (p->type) {
    case TK_P_BYTELEVEL:
        return pretok_bytelevel(p, c, s, n, origin, out);
    case TK_P_METASPACE:
        return pretok_metaspace(p, c, s, n, origin, out);
    case TK_P_DIGITS:
        EVLM_TRY(find_char_matches(pred_numeric, 0, c, s, n));
        apply_behavior(&c->m, p->individual_digits ? TK_B_ISOLATED : TK_B_CONTIGUOUS);
        return push_splits(&c->m, s, origin, out);
    case TK_P_SPLIT:
        EVLM_TRY(evlm__tk_find_matches(p->re, c, s, n));
        if (p->invert)
            for (size_t i = 0; i < c->m.n; i++) c->m.v[i].is_match = !c->m.v[i].is_match;
        apply_behavior(&c->m, p->behavior);
        return push_splits(&c->m, s, origin, out);
    }
    return EVLM_OK;
}

void evlm__tk_norm_free(tk_norm *n) {
    free(n->str);
    if (n->re) pcre2_code_free(n->re);
    memset(n, 0, sizeof *n);
}

void evlm__tk_pretok_free(tk_pretok *p) {
    if (p->re) pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}
