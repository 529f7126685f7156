/*
 * jinja.c - the entry points of the Jinja2 subset of chat templates (see jinja.h):
 * evlm__jinja_parse runs the lexer (jinja_lex.c) and then the parser (jinja_parse.c), all in one
 * arena owned by the template; evlm__jinja_free. Also the pieces the stages share: that arena
 * and the error message with the template name and line/col.
 *
 * Parse time rejects everything unknown, so a template that loads renders with the semantics of
 * jinja2 as transformers runs it, or fails with a message that names the construct.
 * Not here: lexing, parsing, and rendering (jinja_eval.c, which holds evlm__jinja_render).
 */
#include "tokenizer/jinja_impl.h"
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== arena =================================================================================== */

#define BLK_HDR ((sizeof(blk) + 15) & ~(size_t)15)

void *evlm__jinja_arena_alloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (n > EVLM_JINJA_MAX_MEMORY || a->total + cap > EVLM_JINJA_MAX_MEMORY) return NULL;
        blk *b = malloc(BLK_HDR + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = (char *)a->head + BLK_HDR + a->head->used;
    a->head->used += n;
    return p;
}

void evlm__jinja_arena_free(arena *a) {
    blk *b = a->head;
    while (b) {
        blk *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* ==== error helpers =========================================================================== */

evlm_status evlm__jinja_failv(evlm_status st, const char *name, int line, int col, const char *fmt,
                              va_list ap) {
    char msg[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line > 0) return evlm__fail(st, "%s: %s at line %d col %d", name, msg, line, col);
    return evlm__fail(st, "%s: %s", name, msg);
}

/* ==== API ===================================================================================== */

evlm_status evlm__jinja_parse(const char *name, const char *src, size_t len, evlm_jtpl **out) {
    *out = NULL;
    if (!name) name = "template";
    if (!src && len) return evlm__fail(EVLM_ERR_ARG, "%s: NULL source", name);
    if (len > EVLM_JINJA_MAX_SOURCE)
        return evlm__fail(EVLM_ERR_NOMEM, "%s: template larger than %u MiB", name,
                          EVLM_JINJA_MAX_SOURCE >> 20);
    evlm_jtpl *t = calloc(1, sizeof *t);
    if (!t) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", name);
    size_t nl = strlen(name);
    t->name = malloc(nl + 1);
    if (!t->name) {
        free(t);
        return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", name);
    }
    memcpy(t->name, name, nl + 1);
    tok *toks = NULL;
    evlm_status st = evlm__jinja_lex(t->name, &t->a, src ? src : "", len, &toks);
    if (st == EVLM_OK) st = evlm__jinja_parse_tokens(t->name, toks, &t->a, &t->body);
    free(toks);
    if (st != EVLM_OK) {
        evlm__jinja_free(t);
        return st;
    }
    *out = t;
    return EVLM_OK;
}

void evlm__jinja_free(evlm_jtpl *t) {
    if (!t) return;
    evlm__jinja_arena_free(&t->a);
    free(t->name);
    free(t);
}
