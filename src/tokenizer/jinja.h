/*
 * jinja.h - a small Jinja2 subset for chat templates: lexer, parser to an AST, evaluator over a
 * tiny value type (undefined / none / bool / int / float / string / list / dict / namespace).
 *
 * Behaves like jinja2 as Hugging Face transformers configures it (ImmutableSandboxedEnvironment
 * with trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False): the first newline
 * after a block or comment tag is dropped, whitespace from the start of a line up to a block or
 * comment tag is dropped, `{%-` / `-%}` strip all whitespace, `{%+` / `+%}` disable both, and a
 * single trailing newline of the source is dropped. Undefined values print as "", are falsy and
 * iterate as empty; attribute or item access on them is an error (jinja2's default Undefined).
 *
 * Everything the parser does not know fails at parse time with EVLM_ERR_UNSUPPORTED (tags,
 * filters, tests, functions, methods, operators) or EVLM_ERR_FORMAT (syntax), naming the
 * template, the construct and its line/col. Render errors (type errors, raise_exception) are
 * EVLM_ERR_ARG; exceeded bounds (output size, memory, steps) are EVLM_ERR_NOMEM.
 * Not here: macros, call blocks, includes, inheritance, tuples, loop controls, autoescape.
 */
#ifndef EVLM_TOKENIZER_JINJA_H
#define EVLM_TOKENIZER_JINJA_H

#include "core/buf.h"
#include "evlm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    EVLM_JV_UNDEF = 0,
    EVLM_JV_NONE,
    EVLM_JV_BOOL,
    EVLM_JV_INT,
    EVLM_JV_FLOAT,
    EVLM_JV_STR,
    EVLM_JV_LIST,
    EVLM_JV_DICT,
    EVLM_JV_NS, /* namespace(): the only mutable value, shared by reference */
} evlm_jv_type;

typedef struct evlm_jv evlm_jv;
typedef struct evlm_jkv evlm_jkv;
typedef struct evlm_jns evlm_jns;

struct evlm_jv {
    evlm_jv_type type;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct {
            const evlm_jv *items;
            size_t n;
        } list;
        struct {
            const evlm_jkv *kv; /* keys are strings, in insertion order */
            size_t n;
        } dict;
        evlm_jns *ns;
    } u;
};

struct evlm_jkv {
    const char *key;
    size_t klen;
    evlm_jv val;
};

/* Constructors for callers that build variables (values point at the caller's memory). */
static inline evlm_jv evlm_jv_str(const char *p, size_t n) {
    evlm_jv v;
    v.type = EVLM_JV_STR;
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline evlm_jv evlm_jv_bool(bool b) {
    evlm_jv v;
    v.type = EVLM_JV_BOOL;
    v.u.b = b;
    return v;
}
static inline evlm_jv evlm_jv_none(void) {
    evlm_jv v;
    v.type = EVLM_JV_NONE;
    v.u.i = 0;
    return v;
}
static inline evlm_jv evlm_jv_list(const evlm_jv *items, size_t n) {
    evlm_jv v;
    v.type = EVLM_JV_LIST;
    v.u.list.items = items;
    v.u.list.n = n;
    return v;
}
static inline evlm_jv evlm_jv_dict(const evlm_jkv *kv, size_t n) {
    evlm_jv v;
    v.type = EVLM_JV_DICT;
    v.u.dict.kv = kv;
    v.u.dict.n = n;
    return v;
}

typedef struct evlm_jvar {
    const char *name;
    evlm_jv val;
} evlm_jvar;

typedef struct evlm_jtpl evlm_jtpl;

/* Bounds against hostile templates. */
#define EVLM_JINJA_MAX_SOURCE (4u << 20)  /* template source bytes */
#define EVLM_JINJA_MAX_DEPTH  128         /* nesting of blocks and expressions */
#define EVLM_JINJA_MAX_OUTPUT (16u << 20) /* rendered bytes */
#define EVLM_JINJA_MAX_MEMORY (64u << 20) /* parse or render arena bytes */
#define EVLM_JINJA_MAX_STEPS  5000000     /* evaluated nodes and loop iterations per render */

/* Parses src[0..len) (need not be NUL-terminated); name prefixes error messages. */
evlm_status evlm__jinja_parse(const char *name, const char *src, size_t len, evlm_jtpl **out);
void evlm__jinja_free(evlm_jtpl *t);
/* Renders with the given global variables and appends the result to out (left unchanged on
 * error). The functions raise_exception(msg) and namespace(...) are built in. */
evlm_status evlm__jinja_render(const evlm_jtpl *t, const evlm_jvar *vars, int n_vars,
                               evlm_str *out);

#endif
