/*
 * jinja_eval.c - the tree-walking evaluator of the Jinja2 subset (evlm__jinja_render): walks the
 * AST of jinja_impl.h with values that live in a per-render arena. Render time is bounded
 * (output bytes, arena bytes, evaluation steps, value nesting) against hostile input.
 * String case operations (upper, lower, capitalize) act on ASCII letters only; lengths and
 * indexes of strings count code points like Python.
 * Not here: lexing and parsing; the parser has already rejected every unknown name.
 */
#include "tokenizer/jinja_impl.h"
#include "core/status.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== values ================================================================================== */

struct evlm_jns {
    evlm_jkv *kv;
    size_t n, cap;
};

#define MAX_VALUE_DEPTH 64

typedef struct var {
    const char *name;
    size_t n;
    evlm_jv val;
} var;

typedef struct render {
    const evlm_jtpl *t;
    arena a;
    evlm_str out;
    const evlm_jvar *globals;
    int n_globals;
    var *vars; /* scope stack */
    size_t nv, capv;
    size_t frame; /* first var of the innermost frame */
    uint64_t steps;
} render;

static evlm_status r_err(render *R, evlm_status st, const jnode *at, const char *fmt, ...)
    EVLM_PRINTF(4, 5);
static evlm_status r_err(render *R, evlm_status st, const jnode *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    evlm_status r = evlm__jinja_failv(st, R->t->name, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
    return r;
}

static evlm_status r_nomem(render *R) {
    return evlm__fail(EVLM_ERR_NOMEM, "%s: rendering needs more than %u MiB", R->t->name,
                      EVLM_JINJA_MAX_MEMORY >> 20);
}

static void *r_alloc(render *R, size_t n) {
    return evlm__jinja_arena_alloc(&R->a, n);
}

static const char *type_name(const evlm_jv *v) {
    switch (v->type) {
    case EVLM_JV_UNDEF:
        return "undefined";
    case EVLM_JV_NONE:
        return "none";
    case EVLM_JV_BOOL:
        return "bool";
    case EVLM_JV_INT:
        return "int";
    case EVLM_JV_FLOAT:
        return "float";
    case EVLM_JV_STR:
        return "str";
    case EVLM_JV_LIST:
        return "list";
    case EVLM_JV_DICT:
        return "dict";
    case EVLM_JV_NS:
        return "namespace";
    }
    return "?";
}

static evlm_jv mk_int(int64_t i) {
    evlm_jv v;
    v.type = EVLM_JV_INT;
    v.u.i = i;
    return v;
}
static evlm_jv mk_float(double f) {
    evlm_jv v;
    v.type = EVLM_JV_FLOAT;
    v.u.f = f;
    return v;
}
static evlm_jv mk_undef(void) {
    evlm_jv v;
    memset(&v, 0, sizeof v);
    return v;
}

static bool truthy(const evlm_jv *v) {
    switch (v->type) {
    case EVLM_JV_UNDEF:
    case EVLM_JV_NONE:
        return false;
    case EVLM_JV_BOOL:
        return v->u.b;
    case EVLM_JV_INT:
        return v->u.i != 0;
    case EVLM_JV_FLOAT:
        return v->u.f != 0.0;
    case EVLM_JV_STR:
        return v->u.s.n > 0;
    case EVLM_JV_LIST:
        return v->u.list.n > 0;
    case EVLM_JV_DICT:
        return v->u.dict.n > 0;
    case EVLM_JV_NS:
        return true;
    }
    return false;
}

static bool is_intlike(const evlm_jv *v) {
    return v->type == EVLM_JV_INT || v->type == EVLM_JV_BOOL;
}
static bool is_num(const evlm_jv *v) {
    return is_intlike(v) || v->type == EVLM_JV_FLOAT;
}
static int64_t as_int(const evlm_jv *v) {
    return v->type == EVLM_JV_BOOL ? (int64_t)v->u.b : v->u.i;
}
static double as_num(const evlm_jv *v) {
    return v->type == EVLM_JV_FLOAT ? v->u.f : (double)as_int(v);
}

static size_t utf8_len(const char *p, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)p[i] & 0xc0) != 0x80;
    return c;
}

/* Byte offset of code point k (k <= count). */
static size_t utf8_off(const char *p, size_t n, size_t k) {
    size_t i = 0;
    for (; i < n && k > 0; k--) {
        i++;
        while (i < n && ((unsigned char)p[i] & 0xc0) == 0x80) i++;
    }
    return i;
}

static const evlm_jv *dict_get(const evlm_jv *d, const char *k, size_t kn) {
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (d->u.dict.kv[i].klen == kn && memcmp(d->u.dict.kv[i].key, k, kn) == 0)
            return &d->u.dict.kv[i].val;
    return NULL;
}

static evlm_jv *ns_get(evlm_jns *ns, const char *k, size_t kn) {
    for (size_t i = 0; i < ns->n; i++)
        if (ns->kv[i].klen == kn && memcmp(ns->kv[i].key, k, kn) == 0) return &ns->kv[i].val;
    return NULL;
}

static evlm_status ns_set(render *R, evlm_jns *ns, const char *k, size_t kn, evlm_jv v) {
    evlm_jv *slot = ns_get(ns, k, kn);
    if (slot) {
        *slot = v;
        return EVLM_OK;
    }
    if (ns->n == ns->cap) {
        size_t nc = ns->cap ? ns->cap * 2 : 4;
        evlm_jkv *kv = r_alloc(R, nc * sizeof *kv);
        if (!kv) return r_nomem(R);
        if (ns->n) memcpy(kv, ns->kv, ns->n * sizeof *kv);
        ns->kv = kv;
        ns->cap = nc;
    }
    ns->kv[ns->n].key = k;
    ns->kv[ns->n].klen = kn;
    ns->kv[ns->n].val = v;
    ns->n++;
    return EVLM_OK;
}

static evlm_status value_eq(render *R, const jnode *at, const evlm_jv *a, const evlm_jv *b,
                            int depth, bool *eq) {
    if (depth > MAX_VALUE_DEPTH) return r_err(R, EVLM_ERR_ARG, at, "values nested too deeply");
    *eq = false;
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b))
            *eq = as_int(a) == as_int(b);
        else
            *eq = as_num(a) == as_num(b);
        return EVLM_OK;
    }
    if (a->type != b->type) return EVLM_OK;
    switch (a->type) {
    case EVLM_JV_UNDEF:
    case EVLM_JV_NONE:
        *eq = true;
        break;
    case EVLM_JV_STR:
        *eq = a->u.s.n == b->u.s.n && (a->u.s.n == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0);
        break;
    case EVLM_JV_LIST:
        if (a->u.list.n != b->u.list.n) return EVLM_OK;
        for (size_t i = 0; i < a->u.list.n; i++) {
            bool e;
            EVLM_TRY(value_eq(R, at, &a->u.list.items[i], &b->u.list.items[i], depth + 1, &e));
            if (!e) return EVLM_OK;
        }
        *eq = true;
        break;
    case EVLM_JV_DICT:
        if (a->u.dict.n != b->u.dict.n) return EVLM_OK;
        for (size_t i = 0; i < a->u.dict.n; i++) {
            const evlm_jv *o = dict_get(b, a->u.dict.kv[i].key, a->u.dict.kv[i].klen);
            bool e = false;
            if (o) EVLM_TRY(value_eq(R, at, &a->u.dict.kv[i].val, o, depth + 1, &e));
            if (!e) return EVLM_OK;
        }
        *eq = true;
        break;
    case EVLM_JV_NS:
        *eq = a->u.ns == b->u.ns;
        break;
    default:
        break;
    }
    return EVLM_OK;
}

/* ---- printing: Python str() / repr() and json.dumps(ensure_ascii=False) ---- */

static void fmt_float(double f, char *buf, size_t cap, bool json) {
    if (isnan(f)) {
        snprintf(buf, cap, json ? "NaN" : "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf"));
        return;
    }
    /* shortest round-tripping digits, laid out like Python's float repr */
    int prec = 1;
    char e[40];
    for (; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    const char *ep = strchr(e, 'e');
    int exp10 = ep ? atoi(ep + 1) : 0;
    if (exp10 < -4 || exp10 >= 16) {
        snprintf(buf, cap, "%s", e);
        return;
    }
    int dec = prec - 1 - exp10;
    snprintf(buf, cap, "%.*f", dec > 0 ? dec : 0, f);
    if (!strchr(buf, '.')) {
        size_t l = strlen(buf);
        if (l + 2 < cap) memcpy(buf + l, ".0", 3);
    }
}

static evlm_status put(evlm_str *sb, const char *p, size_t n) {
    if (sb->len + n > EVLM_JINJA_MAX_OUTPUT)
        return evlm__fail(EVLM_ERR_NOMEM, "value larger than %u MiB", EVLM_JINJA_MAX_OUTPUT >> 20);
    return evlm_str_append(sb, p, n);
}

static evlm_status put_pyrepr_str(evlm_str *sb, const char *p, size_t n) {
    bool has_sq = memchr(p, '\'', n) != NULL, has_dq = memchr(p, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    EVLM_TRY(put(sb, &q, 1));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char esc[8];
        if (c == '\\' || c == (unsigned char)q) {
            esc[0] = '\\';
            esc[1] = (char)c;
            EVLM_TRY(put(sb, esc, 2));
        } else if (c == '\n') {
            EVLM_TRY(put(sb, "\\n", 2));
        } else if (c == '\r') {
            EVLM_TRY(put(sb, "\\r", 2));
        } else if (c == '\t') {
            EVLM_TRY(put(sb, "\\t", 2));
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            EVLM_TRY(put(sb, esc, 4));
        } else {
            EVLM_TRY(put(sb, (const char *)&p[i], 1));
        }
    }
    return put(sb, &q, 1);
}

static evlm_status put_json_str(evlm_str *sb, const char *p, size_t n) {
    EVLM_TRY(put(sb, "\"", 1));
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (esc) {
            EVLM_TRY(put(sb, p + run, i - run));
            EVLM_TRY(put(sb, esc, strlen(esc)));
            run = i + 1;
        }
    }
    EVLM_TRY(put(sb, p + run, n - run));
    return put(sb, "\"", 1);
}

enum { PR_STR, PR_REPR, PR_JSON };

static evlm_status put_value(render *R, const jnode *at, evlm_str *sb, const evlm_jv *v, int mode,
                             int depth) {
    if (depth > MAX_VALUE_DEPTH) return r_err(R, EVLM_ERR_ARG, at, "values nested too deeply");
    char b[48];
    switch (v->type) {
    case EVLM_JV_UNDEF:
        if (mode == PR_JSON)
            return r_err(R, EVLM_ERR_ARG, at, "tojson: undefined value is not JSON serializable");
        return EVLM_OK;
    case EVLM_JV_NONE:
        return put(sb, mode == PR_JSON ? "null" : "None", 4);
    case EVLM_JV_BOOL:
        if (mode == PR_JSON) return evlm_str_appendz(sb, v->u.b ? "true" : "false");
        return evlm_str_appendz(sb, v->u.b ? "True" : "False");
    case EVLM_JV_INT:
        snprintf(b, sizeof b, "%lld", (long long)v->u.i);
        return evlm_str_appendz(sb, b);
    case EVLM_JV_FLOAT:
        fmt_float(v->u.f, b, sizeof b, mode == PR_JSON);
        return evlm_str_appendz(sb, b);
    case EVLM_JV_STR:
        if (mode == PR_JSON) return put_json_str(sb, v->u.s.p, v->u.s.n);
        if (mode == PR_REPR) return put_pyrepr_str(sb, v->u.s.p, v->u.s.n);
        return put(sb, v->u.s.p, v->u.s.n);
    case EVLM_JV_LIST:
        EVLM_TRY(put(sb, "[", 1));
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i) EVLM_TRY(put(sb, ", ", 2));
            EVLM_TRY(put_value(R, at, sb, &v->u.list.items[i], mode == PR_JSON ? PR_JSON : PR_REPR,
                               depth + 1));
        }
        return put(sb, "]", 1);
    case EVLM_JV_DICT:
    case EVLM_JV_NS: {
        if (v->type == EVLM_JV_NS && mode == PR_JSON)
            return r_err(R, EVLM_ERR_ARG, at, "tojson: namespace is not JSON serializable");
        const evlm_jkv *kv = v->type == EVLM_JV_NS ? v->u.ns->kv : v->u.dict.kv;
        size_t n = v->type == EVLM_JV_NS ? v->u.ns->n : v->u.dict.n;
        if (v->type == EVLM_JV_NS) EVLM_TRY(evlm_str_appendz(sb, "<Namespace "));
        EVLM_TRY(put(sb, "{", 1));
        for (size_t i = 0; i < n; i++) {
            if (i) EVLM_TRY(put(sb, ", ", 2));
            if (mode == PR_JSON)
                EVLM_TRY(put_json_str(sb, kv[i].key, kv[i].klen));
            else
                EVLM_TRY(put_pyrepr_str(sb, kv[i].key, kv[i].klen));
            EVLM_TRY(put(sb, ": ", 2));
            EVLM_TRY(
                put_value(R, at, sb, &kv[i].val, mode == PR_JSON ? PR_JSON : PR_REPR, depth + 1));
        }
        EVLM_TRY(put(sb, "}", 1));
        if (v->type == EVLM_JV_NS) EVLM_TRY(put(sb, ">", 1));
        return EVLM_OK;
    }
    }
    return EVLM_OK;
}

/* A string value of v (str() or json), allocated in the render arena unless already a string. */
static evlm_status to_string(render *R, const jnode *at, const evlm_jv *v, int mode, evlm_jv *out) {
    if (v->type == EVLM_JV_STR && mode == PR_STR) {
        *out = *v;
        return EVLM_OK;
    }
    evlm_str sb = {0};
    evlm_status st = put_value(R, at, &sb, v, mode, 0);
    if (st != EVLM_OK) {
        evlm_str_free(&sb);
        return st;
    }
    char *p = r_alloc(R, sb.len + 1);
    if (!p) {
        evlm_str_free(&sb);
        return r_nomem(R);
    }
    if (sb.len) memcpy(p, sb.data, sb.len);
    p[sb.len] = 0;
    *out = evlm_jv_str(p, sb.len);
    evlm_str_free(&sb);
    return EVLM_OK;
}

static evlm_status new_str(render *R, size_t n, char **p) {
    *p = r_alloc(R, n + 1);
    if (!*p) return r_nomem(R);
    (*p)[n] = 0;
    return EVLM_OK;
}

/* ==== evaluator =============================================================================== */

static evlm_status eval(render *R, const jnode *e, evlm_jv *out);
static evlm_status exec_list(render *R, const jnode *s);

static evlm_status step(render *R, const jnode *at) {
    if (++R->steps > EVLM_JINJA_MAX_STEPS)
        return r_err(R, EVLM_ERR_NOMEM, at, "rendering takes more than %d steps",
                     EVLM_JINJA_MAX_STEPS);
    return EVLM_OK;
}

static const evlm_jv *lookup_var(render *R, const char *name, size_t n) {
    for (size_t i = R->nv; i-- > 0;)
        if (R->vars[i].n == n && memcmp(R->vars[i].name, name, n) == 0) return &R->vars[i].val;
    for (int i = R->n_globals; i-- > 0;)
        if (str_eq(name, n, R->globals[i].name)) return &R->globals[i].val;
    return NULL;
}

/* Assigns in the innermost frame. */
static evlm_status set_var(render *R, const char *name, size_t n, evlm_jv v) {
    for (size_t i = R->frame; i < R->nv; i++)
        if (R->vars[i].n == n && memcmp(R->vars[i].name, name, n) == 0) {
            R->vars[i].val = v;
            return EVLM_OK;
        }
    if (R->nv == R->capv) {
        size_t nc = R->capv ? R->capv * 2 : 32;
        if (nc > (1u << 20)) return r_nomem(R);
        var *vs = realloc(R->vars, nc * sizeof *vs);
        if (!vs) return r_nomem(R);
        R->vars = vs;
        R->capv = nc;
    }
    R->vars[R->nv].name = name;
    R->vars[R->nv].n = n;
    R->vars[R->nv].val = v;
    R->nv++;
    return EVLM_OK;
}

static evlm_status get_item(render *R, const jnode *at, const evlm_jv *obj, const evlm_jv *key,
                            evlm_jv *out) {
    *out = mk_undef();
    switch (obj->type) {
    case EVLM_JV_UNDEF:
        if (key->type == EVLM_JV_STR)
            return r_err(R, EVLM_ERR_ARG, at, "undefined value has no attribute or item '%.*s'",
                         (int)(key->u.s.n > 40 ? 40 : key->u.s.n), key->u.s.p);
        return r_err(R, EVLM_ERR_ARG, at, "undefined value has no items");
    case EVLM_JV_DICT:
        if (key->type == EVLM_JV_STR) {
            const evlm_jv *v = dict_get(obj, key->u.s.p, key->u.s.n);
            if (v) *out = *v;
        }
        return EVLM_OK;
    case EVLM_JV_NS:
        if (key->type == EVLM_JV_STR) {
            const evlm_jv *v = ns_get(obj->u.ns, key->u.s.p, key->u.s.n);
            if (v) *out = *v;
        }
        return EVLM_OK;
    case EVLM_JV_LIST:
        if (is_intlike(key)) {
            int64_t i = as_int(key), n = (int64_t)obj->u.list.n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) *out = obj->u.list.items[i];
        }
        return EVLM_OK;
    case EVLM_JV_STR:
        if (is_intlike(key)) {
            int64_t i = as_int(key), n = (int64_t)utf8_len(obj->u.s.p, obj->u.s.n);
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                size_t o0 = utf8_off(obj->u.s.p, obj->u.s.n, (size_t)i);
                size_t o1 = utf8_off(obj->u.s.p, obj->u.s.n, (size_t)i + 1);
                *out = evlm_jv_str(obj->u.s.p + o0, o1 - o0);
            }
        }
        return EVLM_OK;
    default:
        return EVLM_OK; /* none, numbers: jinja gives undefined */
    }
}

/* Python slice index normalization (PySlice_AdjustIndices). */
static evlm_status slice(render *R, const jnode *e, const evlm_jv *obj, evlm_jv *out) {
    int64_t n;
    if (obj->type == EVLM_JV_LIST)
        n = (int64_t)obj->u.list.n;
    else if (obj->type == EVLM_JV_STR)
        n = (int64_t)utf8_len(obj->u.s.p, obj->u.s.n);
    else
        return r_err(R, EVLM_ERR_ARG, e, "cannot slice a %s", type_name(obj));
    int64_t bnd[3] = {0, 0, 1};
    const jnode *parts[3] = {e->b, e->c, e->d};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3; k++) {
        if (!parts[k]) continue;
        evlm_jv v;
        EVLM_TRY(eval(R, parts[k], &v));
        if (v.type == EVLM_JV_NONE) continue;
        if (!is_intlike(&v)) return r_err(R, EVLM_ERR_ARG, e, "slice indices must be integers");
        bnd[k] = as_int(&v);
        given[k] = true;
    }
    int64_t step_ = bnd[2];
    if (step_ == 0) return r_err(R, EVLM_ERR_ARG, e, "slice step cannot be zero");
    int64_t start = given[0] ? bnd[0] : (step_ > 0 ? 0 : n - 1);
    int64_t stop = given[1] ? bnd[1] : (step_ > 0 ? n : -1);
    if (given[0]) {
        if (start < 0) start += n;
        if (start < 0) start = step_ < 0 ? -1 : 0;
        if (start >= n) start = step_ < 0 ? n - 1 : n;
    }
    if (given[1]) {
        if (stop < 0) stop += n;
        if (stop < 0) stop = step_ < 0 ? -1 : 0;
        if (stop >= n) stop = step_ < 0 ? n - 1 : n;
    }
    int64_t cnt = 0;
    if (step_ > 0 && start < stop) cnt = (stop - start - 1) / step_ + 1;
    if (step_ < 0 && stop < start) cnt = (start - stop - 1) / (-step_) + 1;
    if (obj->type == EVLM_JV_LIST) {
        evlm_jv *items = r_alloc(R, (size_t)(cnt ? cnt : 1) * sizeof *items);
        if (!items) return r_nomem(R);
        for (int64_t k = 0; k < cnt; k++) items[k] = obj->u.list.items[start + k * step_];
        *out = evlm_jv_list(items, (size_t)cnt);
        return EVLM_OK;
    }
    /* strings: offsets of every code point, then copy */
    size_t *off = r_alloc(R, (size_t)(n + 1) * sizeof *off);
    if (!off) return r_nomem(R);
    size_t i = 0;
    for (int64_t k = 0; k <= n; k++) {
        off[k] = i;
        if (i < obj->u.s.n) {
            i++;
            while (i < obj->u.s.n && ((unsigned char)obj->u.s.p[i] & 0xc0) == 0x80) i++;
        }
    }
    char *p;
    EVLM_TRY(new_str(R, obj->u.s.n, &p));
    size_t len = 0;
    for (int64_t k = 0; k < cnt; k++) {
        int64_t c = start + k * step_;
        memcpy(p + len, obj->u.s.p + off[c], off[c + 1] - off[c]);
        len += off[c + 1] - off[c];
    }
    p[len] = 0;
    *out = evlm_jv_str(p, len);
    return EVLM_OK;
}

static evlm_status concat_str(render *R, const evlm_jv *a, const evlm_jv *b, evlm_jv *out) {
    if (a->u.s.n + b->u.s.n > EVLM_JINJA_MAX_OUTPUT) return r_nomem(R);
    char *p;
    EVLM_TRY(new_str(R, a->u.s.n + b->u.s.n, &p));
    if (a->u.s.n) memcpy(p, a->u.s.p, a->u.s.n);
    if (b->u.s.n) memcpy(p + a->u.s.n, b->u.s.p, b->u.s.n);
    *out = evlm_jv_str(p, a->u.s.n + b->u.s.n);
    return EVLM_OK;
}

static evlm_status contains(render *R, const jnode *at, const evlm_jv *item, const evlm_jv *c,
                            bool *res) {
    *res = false;
    switch (c->type) {
    case EVLM_JV_UNDEF:
        return EVLM_OK;
    case EVLM_JV_STR:
        if (item->type != EVLM_JV_STR)
            return r_err(R, EVLM_ERR_ARG, at, "'in <string>' requires a string, not %s",
                         type_name(item));
        if (item->u.s.n == 0) {
            *res = true;
            return EVLM_OK;
        }
        for (size_t i = 0; i + item->u.s.n <= c->u.s.n; i++)
            if (memcmp(c->u.s.p + i, item->u.s.p, item->u.s.n) == 0) {
                *res = true;
                break;
            }
        return EVLM_OK;
    case EVLM_JV_LIST:
        for (size_t i = 0; i < c->u.list.n && !*res; i++)
            EVLM_TRY(value_eq(R, at, item, &c->u.list.items[i], 0, res));
        return EVLM_OK;
    case EVLM_JV_DICT:
        if (item->type == EVLM_JV_STR) *res = dict_get(c, item->u.s.p, item->u.s.n) != NULL;
        return EVLM_OK;
    default:
        return r_err(R, EVLM_ERR_ARG, at, "argument of type %s is not iterable", type_name(c));
    }
}

static evlm_status binop(render *R, const jnode *e, const evlm_jv *a, const evlm_jv *b,
                         evlm_jv *out) {
    int op = e->op;
    if (op == OP_TILDE) {
        evlm_jv sa, sb;
        EVLM_TRY(to_string(R, e, a, PR_STR, &sa));
        EVLM_TRY(to_string(R, e, b, PR_STR, &sb));
        return concat_str(R, &sa, &sb, out);
    }
    if (op == OP_EQ || op == OP_NE) {
        bool eq;
        EVLM_TRY(value_eq(R, e, a, b, 0, &eq));
        *out = evlm_jv_bool(op == OP_EQ ? eq : !eq);
        return EVLM_OK;
    }
    if (op == OP_IN || op == OP_NOTIN) {
        bool in;
        EVLM_TRY(contains(R, e, a, b, &in));
        *out = evlm_jv_bool(op == OP_IN ? in : !in);
        return EVLM_OK;
    }
    if (op == OP_LT || op == OP_GT || op == OP_LE || op == OP_GE) {
        int c;
        if (is_num(a) && is_num(b)) {
            if (is_intlike(a) && is_intlike(b))
                c = as_int(a) < as_int(b) ? -1 : as_int(a) > as_int(b);
            else
                c = as_num(a) < as_num(b) ? -1 : as_num(a) > as_num(b) ? 1 : 0;
            if (isnan(as_num(a)) || isnan(as_num(b))) {
                *out = evlm_jv_bool(false);
                return EVLM_OK;
            }
        } else if (a->type == EVLM_JV_STR && b->type == EVLM_JV_STR) {
            size_t m = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
            c = m ? memcmp(a->u.s.p, b->u.s.p, m) : 0;
            if (c == 0) c = a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
        } else {
            return r_err(R, EVLM_ERR_ARG, e, "'%s' not supported between %s and %s", OP_STR[op],
                         type_name(a), type_name(b));
        }
        bool r = op == OP_LT ? c < 0 : op == OP_GT ? c > 0 : op == OP_LE ? c <= 0 : c >= 0;
        *out = evlm_jv_bool(r);
        return EVLM_OK;
    }
    if (op == OP_ADD && a->type == EVLM_JV_STR && b->type == EVLM_JV_STR)
        return concat_str(R, a, b, out);
    if (op == OP_ADD && a->type == EVLM_JV_LIST && b->type == EVLM_JV_LIST) {
        size_t n = a->u.list.n + b->u.list.n;
        if (n > EVLM_JINJA_MAX_MEMORY / sizeof(evlm_jv)) return r_nomem(R);
        evlm_jv *items = r_alloc(R, (n ? n : 1) * sizeof *items);
        if (!items) return r_nomem(R);
        if (a->u.list.n) memcpy(items, a->u.list.items, a->u.list.n * sizeof *items);
        if (b->u.list.n) memcpy(items + a->u.list.n, b->u.list.items, b->u.list.n * sizeof *items);
        *out = evlm_jv_list(items, n);
        return EVLM_OK;
    }
    if (!is_num(a) || !is_num(b))
        return r_err(R, EVLM_ERR_ARG, e, "unsupported operand types for %s: %s and %s", OP_STR[op],
                     type_name(a), type_name(b));
    if (is_intlike(a) && is_intlike(b) && op != OP_DIV) {
        int64_t x = as_int(a), y = as_int(b), z = 0;
        bool ovf = false;
        switch (op) {
        case OP_ADD:
            ovf = __builtin_add_overflow(x, y, &z);
            break;
        case OP_SUB:
            ovf = __builtin_sub_overflow(x, y, &z);
            break;
        case OP_MUL:
            ovf = __builtin_mul_overflow(x, y, &z);
            break;
        case OP_FLOORDIV:
        case OP_MOD:
            if (y == 0) return r_err(R, EVLM_ERR_ARG, e, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) {
                ovf = op == OP_FLOORDIV;
                z = 0;
                break;
            }
            z = op == OP_FLOORDIV ? x / y : x % y;
            if (op == OP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0))) z--;
            if (op == OP_MOD && z != 0 && ((z < 0) != (y < 0))) z += y;
            break;
        default:
            break;
        }
        if (ovf) return r_err(R, EVLM_ERR_ARG, e, "integer overflow");
        *out = mk_int(z);
        return EVLM_OK;
    }
    double x = as_num(a), y = as_num(b), z = 0;
    switch (op) {
    case OP_ADD:
        z = x + y;
        break;
    case OP_SUB:
        z = x - y;
        break;
    case OP_MUL:
        z = x * y;
        break;
    case OP_DIV:
    case OP_FLOORDIV:
    case OP_MOD:
        if (y == 0.0) return r_err(R, EVLM_ERR_ARG, e, "division by zero");
        if (op == OP_DIV)
            z = x / y;
        else if (op == OP_FLOORDIV)
            z = floor(x / y);
        else {
            z = fmod(x, y);
            if (z != 0.0 && ((z < 0) != (y < 0))) z += y;
        }
        break;
    default:
        break;
    }
    *out = mk_float(z);
    return EVLM_OK;
}

static bool is_ws(char c) {
    return is_space((unsigned char)c);
}

static evlm_status apply_filter(render *R, const jnode *e, const evlm_jv *v, evlm_jv *out) {
    switch (e->op) {
    case F_LENGTH:
        switch (v->type) {
        case EVLM_JV_UNDEF:
            *out = mk_int(0);
            return EVLM_OK;
        case EVLM_JV_STR:
            *out = mk_int((int64_t)utf8_len(v->u.s.p, v->u.s.n));
            return EVLM_OK;
        case EVLM_JV_LIST:
            *out = mk_int((int64_t)v->u.list.n);
            return EVLM_OK;
        case EVLM_JV_DICT:
            *out = mk_int((int64_t)v->u.dict.n);
            return EVLM_OK;
        default:
            return r_err(R, EVLM_ERR_ARG, e, "length: %s has no length", type_name(v));
        }
    case F_TOJSON:
        return to_string(R, e, v, PR_JSON, out);
    case F_STRING:
        return to_string(R, e, v, PR_STR, out);
    default:
        break;
    }
    evlm_jv s;
    EVLM_TRY(to_string(R, e, v, PR_STR, &s));
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (e->op == F_TRIM) {
        while (n && is_ws(p[0])) p++, n--;
        while (n && is_ws(p[n - 1])) n--;
        *out = evlm_jv_str(p, n);
        return EVLM_OK;
    }
    char *o;
    EVLM_TRY(new_str(R, n, &o));
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool up = e->op == F_UPPER || (e->op == F_CAPITALIZE && i == 0);
        if (up && c >= 'a' && c <= 'z') c = (char)(c - 32);
        if (!up && c >= 'A' && c <= 'Z') c = (char)(c + 32);
        o[i] = c;
    }
    *out = evlm_jv_str(o, n);
    return EVLM_OK;
}

static bool apply_test(int ts, const evlm_jv *v) {
    switch (ts) {
    case TS_DEFINED:
        return v->type != EVLM_JV_UNDEF;
    case TS_UNDEFINED:
        return v->type == EVLM_JV_UNDEF;
    case TS_NONE:
        return v->type == EVLM_JV_NONE;
    case TS_STRING:
        return v->type == EVLM_JV_STR;
    case TS_MAPPING:
        return v->type == EVLM_JV_DICT;
    case TS_ITERABLE:
    case TS_SEQUENCE:
        return v->type == EVLM_JV_STR || v->type == EVLM_JV_LIST || v->type == EVLM_JV_DICT ||
               v->type == EVLM_JV_UNDEF;
    case TS_NUMBER:
        return is_num(v);
    case TS_INTEGER:
        return v->type == EVLM_JV_INT;
    case TS_FLOAT:
        return v->type == EVLM_JV_FLOAT;
    case TS_BOOLEAN:
        return v->type == EVLM_JV_BOOL;
    case TS_TRUE:
        return v->type == EVLM_JV_BOOL && v->u.b;
    case TS_FALSE:
        return v->type == EVLM_JV_BOOL && !v->u.b;
    }
    return false;
}

static evlm_status call_method(render *R, const jnode *e, evlm_jv *out) {
    evlm_jv obj, args[2];
    EVLM_TRY(eval(R, e->a, &obj));
    int k = 0;
    for (const jnode *a = e->b; a; a = a->next) EVLM_TRY(eval(R, a, &args[k++]));
    if (e->op == M_GET) {
        if (obj.type != EVLM_JV_DICT)
            return r_err(R, EVLM_ERR_ARG, e, "%s has no method 'get'", type_name(&obj));
        const evlm_jv *v =
            args[0].type == EVLM_JV_STR ? dict_get(&obj, args[0].u.s.p, args[0].u.s.n) : NULL;
        *out = v ? *v : (k > 1 ? args[1] : evlm_jv_none());
        return EVLM_OK;
    }
    if (obj.type != EVLM_JV_STR)
        return r_err(R, EVLM_ERR_ARG, e, "%s has no method '%s'", type_name(&obj), METHODS[e->op]);
    for (int i = 0; i < k; i++)
        if (args[i].type != EVLM_JV_STR && !(args[i].type == EVLM_JV_NONE && e->op <= M_RSTRIP))
            return r_err(R, EVLM_ERR_ARG, e, "%s() argument must be a string", METHODS[e->op]);
    const char *p = obj.u.s.p;
    size_t n = obj.u.s.n;
    switch (e->op) {
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        const evlm_jv *cs = k && args[0].type == EVLM_JV_STR ? &args[0] : NULL;
#define IN_SET(c) (cs ? memchr(cs->u.s.p, (c), cs->u.s.n) != NULL : is_ws(c))
        if (e->op != M_RSTRIP)
            while (n && IN_SET(p[0])) p++, n--;
        if (e->op != M_LSTRIP)
            while (n && IN_SET(p[n - 1])) n--;
#undef IN_SET
        *out = evlm_jv_str(p, n);
        return EVLM_OK;
    }
    case M_STARTSWITH:
    case M_ENDSWITH: {
        size_t m = args[0].u.s.n;
        bool r = m <= n &&
                 (m == 0 || memcmp(e->op == M_STARTSWITH ? p : p + n - m, args[0].u.s.p, m) == 0);
        *out = evlm_jv_bool(r);
        return EVLM_OK;
    }
    default: {
        jnode f = *e;
        f.op = e->op == M_UPPER ? F_UPPER : F_LOWER;
        return apply_filter(R, &f, &obj, out);
    }
    }
}

static evlm_status eval(render *R, const jnode *e, evlm_jv *out) {
    EVLM_TRY(step(R, e));
    evlm_jv a, b;
    switch (e->kind) {
    case N_LIT:
        *out = e->lit;
        return EVLM_OK;
    case N_NAME: {
        const evlm_jv *v = lookup_var(R, e->s, e->sn);
        *out = v ? *v : mk_undef();
        return EVLM_OK;
    }
    case N_LIST: {
        evlm_jv *items = r_alloc(R, (size_t)(e->flag ? e->flag : 1) * sizeof *items);
        if (!items) return r_nomem(R);
        int k = 0;
        for (const jnode *i = e->a; i; i = i->next) EVLM_TRY(eval(R, i, &items[k++]));
        *out = evlm_jv_list(items, (size_t)k);
        return EVLM_OK;
    }
    case N_DICT: {
        evlm_jkv *kv = r_alloc(R, (size_t)(e->flag ? e->flag : 1) * sizeof *kv);
        if (!kv) return r_nomem(R);
        size_t k = 0;
        for (const jnode *ki = e->a, *vi = e->b; ki && vi; ki = ki->next, vi = vi->next) {
            EVLM_TRY(eval(R, ki, &a));
            if (a.type != EVLM_JV_STR)
                return r_err(R, EVLM_ERR_ARG, ki, "dict keys must be strings, not %s",
                             type_name(&a));
            EVLM_TRY(eval(R, vi, &b));
            size_t j = 0;
            while (j < k && !(kv[j].klen == a.u.s.n && memcmp(kv[j].key, a.u.s.p, a.u.s.n) == 0))
                j++;
            kv[j].key = a.u.s.p;
            kv[j].klen = a.u.s.n;
            kv[j].val = b;
            if (j == k) k++;
        }
        *out = evlm_jv_dict(kv, k);
        return EVLM_OK;
    }
    case N_ATTR:
        EVLM_TRY(eval(R, e->a, &a));
        b = evlm_jv_str(e->s, e->sn);
        return get_item(R, e, &a, &b, out);
    case N_ITEM:
        EVLM_TRY(eval(R, e->a, &a));
        EVLM_TRY(eval(R, e->b, &b));
        return get_item(R, e, &a, &b, out);
    case N_SLICE:
        EVLM_TRY(eval(R, e->a, &a));
        return slice(R, e, &a, out);
    case N_BIN:
        EVLM_TRY(eval(R, e->a, &a));
        EVLM_TRY(eval(R, e->b, &b));
        if ((a.type == EVLM_JV_UNDEF || b.type == EVLM_JV_UNDEF) && e->op != OP_TILDE &&
            e->op != OP_EQ && e->op != OP_NE && e->op != OP_IN && e->op != OP_NOTIN)
            return r_err(R, EVLM_ERR_ARG, e, "undefined value in '%s'", OP_STR[e->op]);
        return binop(R, e, &a, &b, out);
    case N_AND:
        EVLM_TRY(eval(R, e->a, &a));
        if (!truthy(&a)) {
            *out = a;
            return EVLM_OK;
        }
        return eval(R, e->b, out);
    case N_OR:
        EVLM_TRY(eval(R, e->a, &a));
        if (truthy(&a)) {
            *out = a;
            return EVLM_OK;
        }
        return eval(R, e->b, out);
    case N_NOT:
        EVLM_TRY(eval(R, e->a, &a));
        *out = evlm_jv_bool(!truthy(&a));
        return EVLM_OK;
    case N_NEG:
    case N_POS:
        EVLM_TRY(eval(R, e->a, &a));
        if (!is_num(&a))
            return r_err(R, EVLM_ERR_ARG, e, "bad operand type for unary %s: %s",
                         e->kind == N_NEG ? "-" : "+", type_name(&a));
        if (e->kind == N_POS) {
            *out = a.type == EVLM_JV_BOOL ? mk_int(as_int(&a)) : a;
        } else if (a.type == EVLM_JV_FLOAT) {
            *out = mk_float(-a.u.f);
        } else {
            if (as_int(&a) == INT64_MIN) return r_err(R, EVLM_ERR_ARG, e, "integer overflow");
            *out = mk_int(-as_int(&a));
        }
        return EVLM_OK;
    case N_COND:
        EVLM_TRY(eval(R, e->a, &a));
        if (truthy(&a)) return eval(R, e->b, out);
        if (e->c) return eval(R, e->c, out);
        *out = mk_undef();
        return EVLM_OK;
    case N_TEST:
        EVLM_TRY(eval(R, e->a, &a));
        *out = evlm_jv_bool(apply_test(e->op, &a) != (e->flag != 0));
        return EVLM_OK;
    case N_FILTER:
        EVLM_TRY(eval(R, e->a, &a));
        return apply_filter(R, e, &a, out);
    case N_METHOD:
        return call_method(R, e, out);
    case N_CALL:
        if (e->op == FN_RAISE) {
            EVLM_TRY(eval(R, e->a, &a));
            EVLM_TRY(to_string(R, e, &a, PR_STR, &b));
            return evlm__fail(EVLM_ERR_ARG, "%s: %.*s", R->t->name,
                              (int)(b.u.s.n > 800 ? 800 : b.u.s.n), b.u.s.p);
        } else {
            evlm_jns *ns = r_alloc(R, sizeof *ns);
            if (!ns) return r_nomem(R);
            memset(ns, 0, sizeof *ns);
            for (const jnode *k = e->a; k; k = k->next) {
                EVLM_TRY(eval(R, k->a, &a));
                EVLM_TRY(ns_set(R, ns, k->s, k->sn, a));
            }
            out->type = EVLM_JV_NS;
            out->u.ns = ns;
            return EVLM_OK;
        }
    default:
        return r_err(R, EVLM_ERR_ARG, e, "internal: bad expression node");
    }
}

static evlm_status emit(render *R, const jnode *at, const char *p, size_t n) {
    if (R->out.len + n > EVLM_JINJA_MAX_OUTPUT)
        return r_err(R, EVLM_ERR_NOMEM, at, "output larger than %u MiB",
                     EVLM_JINJA_MAX_OUTPUT >> 20);
    return evlm_str_append(&R->out, p, n);
}

static evlm_status exec_for(render *R, const jnode *s) {
    evlm_jv it;
    EVLM_TRY(eval(R, s->a, &it));
    size_t n;
    switch (it.type) {
    case EVLM_JV_UNDEF:
        return EVLM_OK;
    case EVLM_JV_LIST:
        n = it.u.list.n;
        break;
    case EVLM_JV_DICT:
        n = it.u.dict.n;
        break;
    case EVLM_JV_STR:
        n = utf8_len(it.u.s.p, it.u.s.n);
        break;
    default:
        return r_err(R, EVLM_ERR_ARG, s, "%s is not iterable", type_name(&it));
    }
    static const char *const keys[] = {"index", "index0", "revindex", "revindex0",
                                       "first", "last",   "length"};
    enum { NK = 7 };
    /* one loop object per loop run, updated in place each iteration */
    evlm_jkv *kv = r_alloc(R, NK * sizeof *kv);
    if (!kv) return r_nomem(R);
    for (int k = 0; k < NK; k++) {
        kv[k].key = keys[k];
        kv[k].klen = strlen(keys[k]);
    }
    size_t saved_frame = R->frame, saved_nv = R->nv, off = 0;
    evlm_status st = EVLM_OK;
    for (size_t i = 0; i < n && st == EVLM_OK; i++) {
        evlm_jv item;
        if (it.type == EVLM_JV_LIST) {
            item = it.u.list.items[i];
        } else if (it.type == EVLM_JV_DICT) {
            item = evlm_jv_str(it.u.dict.kv[i].key, it.u.dict.kv[i].klen);
        } else {
            size_t e = off + 1;
            while (e < it.u.s.n && ((unsigned char)it.u.s.p[e] & 0xc0) == 0x80) e++;
            item = evlm_jv_str(it.u.s.p + off, e - off);
            off = e;
        }
        kv[0].val = mk_int((int64_t)i + 1);
        kv[1].val = mk_int((int64_t)i);
        kv[2].val = mk_int((int64_t)(n - i));
        kv[3].val = mk_int((int64_t)(n - i - 1));
        kv[4].val = evlm_jv_bool(i == 0);
        kv[5].val = evlm_jv_bool(i + 1 == n);
        kv[6].val = mk_int((int64_t)n);
        R->frame = R->nv = saved_nv; /* fresh frame per iteration */
        st = step(R, s);
        if (st == EVLM_OK) st = set_var(R, "loop", 4, evlm_jv_dict(kv, NK));
        if (st == EVLM_OK) st = set_var(R, s->s, s->sn, item);
        if (st == EVLM_OK) st = exec_list(R, s->b);
    }
    R->frame = saved_frame;
    R->nv = saved_nv;
    return st;
}

static evlm_status exec_list(render *R, const jnode *s) {
    for (; s; s = s->next) {
        EVLM_TRY(step(R, s));
        evlm_jv v, sv;
        switch (s->kind) {
        case N_TEXT:
            EVLM_TRY(emit(R, s, s->s, s->sn));
            break;
        case N_OUT:
            EVLM_TRY(eval(R, s->a, &v));
            EVLM_TRY(to_string(R, s->a, &v, PR_STR, &sv));
            EVLM_TRY(emit(R, s, sv.u.s.p, sv.u.s.n));
            break;
        case N_IF:
            EVLM_TRY(eval(R, s->a, &v));
            EVLM_TRY(exec_list(R, truthy(&v) ? s->b : s->c));
            break;
        case N_FOR:
            EVLM_TRY(exec_for(R, s));
            break;
        case N_BLOCK:
            EVLM_TRY(exec_list(R, s->b));
            break;
        case N_SET:
            EVLM_TRY(eval(R, s->a, &v));
            if (s->s2) {
                const evlm_jv *ns = lookup_var(R, s->s, s->sn);
                if (!ns || ns->type != EVLM_JV_NS)
                    return r_err(R, EVLM_ERR_ARG, s, "cannot assign attribute on %s '%.*s'",
                                 ns ? type_name(ns) : "undefined", (int)s->sn, s->s);
                EVLM_TRY(ns_set(R, ns->u.ns, s->s2, s->s2n, v));
            } else {
                EVLM_TRY(set_var(R, s->s, s->sn, v));
            }
            break;
        default:
            return r_err(R, EVLM_ERR_ARG, s, "internal: bad statement node");
        }
    }
    return EVLM_OK;
}

/* ==== API ===================================================================================== */

evlm_status evlm__jinja_render(const evlm_jtpl *t, const evlm_jvar *vars, int n_vars,
                               evlm_str *out) {
    if (!t || !out || n_vars < 0 || (n_vars && !vars))
        return evlm__fail(EVLM_ERR_ARG, "jinja render: bad arguments");
    render R;
    memset(&R, 0, sizeof R);
    R.t = t;
    R.globals = vars;
    R.n_globals = n_vars;
    evlm_status st = exec_list(&R, t->body);
    if (st == EVLM_OK && R.out.len) st = evlm_str_append(out, R.out.data, R.out.len);
    if (st == EVLM_OK && !out->data) st = evlm_str_append(out, "", 0);
    evlm_str_free(&R.out);
    free(R.vars);
    evlm__jinja_arena_free(&R.a);
    return st;
}
