/*
 * decoder.c - tokenizers' decoders over a list of token strings: ByteLevel, Metaspace,
 * ByteFallback, Fuse, Strip, Replace (a Sequence is flattened at load).
 *
 * Each decoder is decode_chain of the reference (the decoders folder, byte_level.rs,
 * metaspace.rs, normalizers/replace.rs): it maps the token list to a new list; the final
 * text is the concatenation. Token strings are valid UTF-8 (checked at load), and every
 * decoder keeps them so (ByteLevel and ByteFallback replace invalid bytes by U+FFFD).
 */
#include "core/status.h"
#include "tokenizer/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

static size_t cp_at(const char *s, size_t n, size_t i, uint32_t *cp) {
    size_t bad;
    size_t k = evlm__tk_utf8_next((const uint8_t *)s + i, n - i, cp, &bad);
    if (!k) {
        *cp = 0xFFFD;
        return 1;
    }
    return k;
}

/* All tokens -> bytes through the byte-level map (a token with an unmapped char keeps its
 * own bytes), then one lossy UTF-8 string. */
static evlm_status dec_bytelevel(const tk_pieces *in, tk_pieces *out) {
    evlm_str bytes = {0}, text = {0};
    evlm_status st = evlm_str_append(&bytes, "", 0);
    for (size_t t = 0; t < in->n && st == EVLM_OK; t++) {
        const char *s = in->text.data + in->v[t].off;
        size_t n = in->v[t].len, mark = bytes.len;
        for (size_t i = 0; i < n && st == EVLM_OK;) {
            uint32_t cp;
            i += cp_at(s, n, i, &cp);
            int b = evlm__tk_char_byte(cp);
            if (b < 0) { /* the whole token falls back to its raw bytes */
                bytes.len = mark;
                st = evlm_str_append(&bytes, s, n);
                break;
            }
            char c = (char)b;
            st = evlm_str_append(&bytes, &c, 1);
        }
    }
    if (st == EVLM_OK) st = evlm_str_append(&text, "", 0);
    if (st == EVLM_OK) st = evlm__tk_utf8_lossy(&text, (const uint8_t *)bytes.data, bytes.len);
    if (st == EVLM_OK) st = evlm__tk_pieces_push(out, text.data, text.len, 0, false);
    evlm_str_free(&bytes);
    evlm_str_free(&text);
    return st;
}

static evlm_status dec_metaspace(const tk_dec *d, const tk_pieces *in, tk_pieces *out) {
    evlm_str tok = {0};
    evlm_status st = EVLM_OK;
    for (size_t t = 0; t < in->n && st == EVLM_OK; t++) {
        const char *s = in->text.data + in->v[t].off;
        size_t n = in->v[t].len;
        tok.len = 0;
        st = evlm_str_append(&tok, "", 0);
        for (size_t i = 0; i < n && st == EVLM_OK;) {
            uint32_t cp;
            size_t k = cp_at(s, n, i, &cp);
            if (cp == d->ch) {
                if (!(t == 0 && d->prepend != TK_PREPEND_NEVER)) st = evlm_str_append(&tok, " ", 1);
            } else {
                st = evlm_str_append(&tok, s + i, k);
            }
            i += k;
        }
        if (st == EVLM_OK) st = evlm__tk_pieces_push(out, tok.data, tok.len, 0, false);
    }
    evlm_str_free(&tok);
    return st;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" -> byte, as u8::from_str_radix(&token[3..5], 16) (which takes a leading '+'). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    if (s[3] == '+') return hexval(s[4]);
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static evlm_status flush_bytes(evlm_str *bytes, tk_pieces *out) {
    if (!bytes->len) return EVLM_OK;
    evlm_status st;
    if (evlm__tk_utf8_valid(bytes->data, bytes->len, NULL)) {
        st = evlm__tk_pieces_push(out, bytes->data, bytes->len, 0, false);
    } else { /* one U+FFFD per byte, as the reference */
        st = EVLM_OK;
        for (size_t i = 0; i < bytes->len && st == EVLM_OK; i++)
            st = evlm__tk_pieces_push(out, "\xEF\xBF\xBD", 3, 0, false);
    }
    bytes->len = 0;
    return st;
}

static evlm_status dec_bytefallback(const tk_pieces *in, tk_pieces *out) {
    evlm_str bytes = {0};
    evlm_status st = EVLM_OK;
    for (size_t t = 0; t < in->n && st == EVLM_OK; t++) {
        const char *s = in->text.data + in->v[t].off;
        size_t n = in->v[t].len;
        int b = byte_token(s, n);
        if (b >= 0) {
            char c = (char)b;
            st = evlm_str_append(&bytes, &c, 1);
        } else {
            st = flush_bytes(&bytes, out);
            if (st == EVLM_OK) st = evlm__tk_pieces_push(out, s, n, 0, false);
        }
    }
    if (st == EVLM_OK) st = flush_bytes(&bytes, out);
    evlm_str_free(&bytes);
    return st;
}

static evlm_status dec_strip(const tk_dec *d, const tk_pieces *in, tk_pieces *out) {
    for (size_t t = 0; t < in->n; t++) {
        const char *s = in->text.data + in->v[t].off;
        size_t n = in->v[t].len, a = 0, e = n;
        for (size_t k = 0; k < d->start && a < e; k++) {
            uint32_t cp;
            size_t l = cp_at(s, n, a, &cp);
            if (cp != d->ch) break;
            a += l;
        }
        for (size_t k = 0; k < d->stop && e > a; k++) {
            size_t b = e - 1;
            while (b > a && ((uint8_t)s[b] & 0xC0) == 0x80) b--;
            uint32_t cp;
            cp_at(s, n, b, &cp);
            if (cp != d->ch) break;
            e = b;
        }
        EVLM_TRY(evlm__tk_pieces_push(out, s + a, e - a, 0, false));
    }
    return EVLM_OK;
}

static evlm_status dec_replace(const tk_dec *d, tk_ctx *c, const tk_pieces *in, tk_pieces *out) {
    evlm_str tok = {0};
    evlm_status st = EVLM_OK;
    for (size_t t = 0; t < in->n && st == EVLM_OK; t++) {
        const char *s = in->text.data + in->v[t].off;
        size_t n = in->v[t].len;
        tok.len = 0;
        st = evlm_str_append(&tok, "", 0);
        if (st == EVLM_OK) st = evlm__tk_find_matches(d->re, c, s, n);
        for (size_t i = 0; i < c->m.n && st == EVLM_OK; i++) {
            tk_match x = c->m.v[i];
            if (x.is_match)
                st = evlm_str_append(&tok, d->content, d->content_len);
            else
                st = evlm_str_append(&tok, s + x.start, x.end - x.start);
        }
        if (st == EVLM_OK) st = evlm__tk_pieces_push(out, tok.data, tok.len, 0, false);
    }
    evlm_str_free(&tok);
    return st;
}

evlm_status evlm__tk_decode_chain(const evlm_tokenizer *t, tk_ctx *c, tk_pieces *in,
                                  evlm_str *out) {
    if (!t->has_decoder) { /* tokens.join(" ") */
        for (size_t i = 0; i < in->n; i++) {
            if (i) EVLM_TRY(evlm_str_append(out, " ", 1));
            EVLM_TRY(evlm_str_append(out, in->text.data + in->v[i].off, in->v[i].len));
        }
        return evlm_str_append(out, "", 0);
    }
    tk_pieces next = {0};
    evlm_status st = EVLM_OK;
    for (size_t k = 0; k < t->n_decs && st == EVLM_OK; k++) {
        const tk_dec *d = &t->decs[k];
        evlm__tk_pieces_reset(&next);
        switch (d->type) {
        case TK_D_BYTELEVEL:
            st = dec_bytelevel(in, &next);
            break;
        case TK_D_METASPACE:
            st = dec_metaspace(d, in, &next);
            break;
        case TK_D_BYTEFALLBACK:
            st = dec_bytefallback(in, &next);
            break;
        case TK_D_STRIP:
            st = dec_strip(d, in, &next);
            break;
        case TK_D_REPLACE:
            st = dec_replace(d, c, in, &next);
            break;
        case TK_D_FUSE:
            st = evlm_str_append(&next.text, "", 0);
            for (size_t i = 0; i < in->n && st == EVLM_OK; i++)
                st = evlm_str_append(&next.text, in->text.data + in->v[i].off, in->v[i].len);
            if (st == EVLM_OK) st = evlm__tk_pieces_push(&next, "", 0, 0, false);
            if (st == EVLM_OK) next.v[0] = (tk_piece){0, next.text.len, 0, false};
            break;
        }
        if (st == EVLM_OK) {
            tk_pieces x = *in;
            *in = next;
            next = x;
        }
    }
    evlm__tk_pieces_free(&next);
    for (size_t i = 0; i < in->n && st == EVLM_OK; i++)
        st = evlm_str_append(out, in->text.data + in->v[i].off, in->v[i].len);
    if (st == EVLM_OK) st = evlm_str_append(out, "", 0);
    return st;
}

void evlm__tk_dec_free(tk_dec *d) {
    if (d->re) pcre2_code_free(d->re);
    free(d->content);
    memset(d, 0, sizeof *d);
}
