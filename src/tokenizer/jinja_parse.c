/*
 * jinja_parse.c - recursive-descent parser of the Jinja2 subset, from tokens to the AST of
 * jinja_impl.h, nodes in the template's arena. Every tag, filter, test, method, function or
 * operator it does not know fails here (EVLM_ERR_UNSUPPORTED), as do syntax errors
 * (EVLM_ERR_FORMAT) and nesting deeper than EVLM_JINJA_MAX_DEPTH, naming the line and col.
 * Not here: evaluation (jinja_eval.c); macros, call blocks, includes, tuples, loop controls,
 * filters with arguments.
 */
#include "tokenizer/jinja_impl.h"
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int lookup(const char *const *names, int n, const char *s, size_t sn) {
    for (int i = 0; i < n; i++)
        if (str_eq(s, sn, names[i])) return i;
    return -1;
}

/* ==== parser ================================================================================== */

typedef struct parser {
    const char *name;
    tok *t;
    size_t i;
    arena *a;
    int depth;
} parser;

static evlm_status p_err(parser *P, evlm_status st, const tok *t, const char *fmt, ...)
    EVLM_PRINTF(4, 5);
static evlm_status p_err(parser *P, evlm_status st, const tok *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    evlm_status r = evlm__jinja_failv(st, P->name, t->line, t->col, fmt, ap);
    va_end(ap);
    return r;
}

static const char *tok_desc(const tok *t, char *buf, size_t cap) {
    switch (t->type) {
    case T_EOF:
        return "end of template";
    case T_TEXT:
        return "template text";
    case T_VAR_BEGIN:
        return "'{{'";
    case T_VAR_END:
        return "'}}'";
    case T_BLOCK_BEGIN:
        return "'{%'";
    case T_BLOCK_END:
        return "'%}'";
    case T_STR:
        return "string literal";
    case T_INT:
    case T_FLOAT:
        return "number";
    case T_NAME:
        snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
        return buf;
    default:
        snprintf(buf, cap, "'%s'", OP_STR[t->op]);
        return buf;
    }
}

static tok *cur(parser *P) {
    return &P->t[P->i];
}
static bool at_op(parser *P, int op) {
    return cur(P)->type == T_OP && cur(P)->op == op;
}
static bool at_name(parser *P, const char *z) {
    return cur(P)->type == T_NAME && str_eq(cur(P)->s, cur(P)->n, z);
}
static void adv(parser *P) {
    if (P->t[P->i].type != T_EOF) P->i++;
}

static evlm_status unexpected(parser *P, const char *expected) {
    char b[64];
    return p_err(P, EVLM_ERR_FORMAT, cur(P), "syntax error: expected %s, got %s", expected,
                 tok_desc(cur(P), b, sizeof b));
}

static evlm_status expect_op(parser *P, int op) {
    if (!at_op(P, op)) {
        char e[16];
        snprintf(e, sizeof e, "'%s'", OP_STR[op]);
        return unexpected(P, e);
    }
    adv(P);
    return EVLM_OK;
}

static evlm_status expect_type(parser *P, int type, const char *what) {
    if (cur(P)->type != type) return unexpected(P, what);
    adv(P);
    return EVLM_OK;
}

static evlm_status new_node(parser *P, int kind, const tok *at, jnode **out) {
    jnode *n = evlm__jinja_arena_alloc(P->a, sizeof *n);
    if (!n) return evlm__fail(EVLM_ERR_NOMEM, "%s: template too large", P->name);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    *out = n;
    return EVLM_OK;
}

static evlm_status enter(parser *P) {
    if (++P->depth > EVLM_JINJA_MAX_DEPTH)
        return p_err(P, EVLM_ERR_FORMAT, cur(P), "nesting deeper than %d", EVLM_JINJA_MAX_DEPTH);
    return EVLM_OK;
}

static evlm_status parse_expr(parser *P, jnode **out);
static evlm_status parse_or(parser *P, jnode **out);
static evlm_status parse_unary(parser *P, bool with_filter, jnode **out);

/* ( args ) after the '(' was seen: positional into *args, kwargs as N_KW nodes in order. */
static evlm_status parse_args(parser *P, jnode **args, int *npos, int *nkw) {
    EVLM_TRY(expect_op(P, OP_LPAREN));
    jnode **tail = args;
    *npos = *nkw = 0;
    while (!at_op(P, OP_RPAREN)) {
        jnode *e = NULL;
        if (cur(P)->type == T_NAME && P->t[P->i + 1].type == T_OP &&
            P->t[P->i + 1].op == OP_ASSIGN) {
            EVLM_TRY(new_node(P, N_KW, cur(P), &e));
            e->s = cur(P)->s;
            e->sn = cur(P)->n;
            adv(P);
            adv(P);
            EVLM_TRY(parse_expr(P, &e->a));
            (*nkw)++;
        } else {
            if (*nkw) return p_err(P, EVLM_ERR_FORMAT, cur(P), "positional argument after keyword");
            EVLM_TRY(parse_expr(P, &e));
            (*npos)++;
        }
        *tail = e;
        tail = &e->next;
        if (!at_op(P, OP_COMMA)) break;
        adv(P);
    }
    return expect_op(P, OP_RPAREN);
}

static evlm_status parse_primary(parser *P, jnode **out) {
    tok *t = cur(P);
    jnode *n = NULL;
    switch (t->type) {
    case T_NAME:
        EVLM_TRY(new_node(P, N_LIT, t, &n));
        if (str_eq(t->s, t->n, "true") || str_eq(t->s, t->n, "True")) {
            n->lit = evlm_jv_bool(true);
        } else if (str_eq(t->s, t->n, "false") || str_eq(t->s, t->n, "False")) {
            n->lit = evlm_jv_bool(false);
        } else if (str_eq(t->s, t->n, "none") || str_eq(t->s, t->n, "None")) {
            n->lit = evlm_jv_none();
        } else {
            n->kind = N_NAME;
            n->s = t->s;
            n->sn = t->n;
        }
        adv(P);
        break;
    case T_STR: {
        EVLM_TRY(new_node(P, N_LIT, t, &n));
        /* adjacent literals concatenate */
        size_t total = 0, j = P->i;
        for (; P->t[j].type == T_STR; j++) total += P->t[j].n;
        char *buf = evlm__jinja_arena_alloc(P->a, total + 1);
        if (!buf) return evlm__fail(EVLM_ERR_NOMEM, "%s: template too large", P->name);
        size_t k = 0;
        for (; cur(P)->type == T_STR; adv(P)) {
            memcpy(buf + k, cur(P)->s, cur(P)->n);
            k += cur(P)->n;
        }
        buf[k] = 0;
        n->lit = evlm_jv_str(buf, k);
        break;
    }
    case T_INT:
        EVLM_TRY(new_node(P, N_LIT, t, &n));
        n->lit.type = EVLM_JV_INT;
        n->lit.u.i = t->i;
        adv(P);
        break;
    case T_FLOAT:
        EVLM_TRY(new_node(P, N_LIT, t, &n));
        n->lit.type = EVLM_JV_FLOAT;
        n->lit.u.f = t->f;
        adv(P);
        break;
    case T_OP:
        if (t->op == OP_LPAREN) {
            adv(P);
            if (at_op(P, OP_RPAREN))
                return p_err(P, EVLM_ERR_UNSUPPORTED, t, "unsupported Jinja construct 'tuple'");
            EVLM_TRY(parse_expr(P, &n));
            if (at_op(P, OP_COMMA))
                return p_err(P, EVLM_ERR_UNSUPPORTED, t, "unsupported Jinja construct 'tuple'");
            EVLM_TRY(expect_op(P, OP_RPAREN));
            break;
        }
        if (t->op == OP_LBRACK) {
            EVLM_TRY(new_node(P, N_LIST, t, &n));
            adv(P);
            jnode **tail = &n->a;
            while (!at_op(P, OP_RBRACK)) {
                EVLM_TRY(parse_expr(P, tail));
                tail = &(*tail)->next;
                n->flag++;
                if (!at_op(P, OP_COMMA)) break;
                adv(P);
            }
            EVLM_TRY(expect_op(P, OP_RBRACK));
            break;
        }
        if (t->op == OP_LBRACE) {
            EVLM_TRY(new_node(P, N_DICT, t, &n));
            adv(P);
            jnode **kt = &n->a, **vt = &n->b;
            while (!at_op(P, OP_RBRACE)) {
                EVLM_TRY(parse_expr(P, kt));
                kt = &(*kt)->next;
                EVLM_TRY(expect_op(P, OP_COLON));
                EVLM_TRY(parse_expr(P, vt));
                vt = &(*vt)->next;
                n->flag++;
                if (!at_op(P, OP_COMMA)) break;
                adv(P);
            }
            EVLM_TRY(expect_op(P, OP_RBRACE));
            break;
        }
        return unexpected(P, "an expression");
    default:
        return unexpected(P, "an expression");
    }
    *out = n;
    return EVLM_OK;
}

/* callee '(' args ')': the built-in functions and the supported methods. */
static evlm_status parse_call(parser *P, jnode *callee, jnode **out) {
    jnode *n = NULL;
    int npos, nkw;
    if (callee->kind == N_NAME) {
        int fn = str_eq(callee->s, callee->sn, "raise_exception") ? FN_RAISE
                 : str_eq(callee->s, callee->sn, "namespace")     ? FN_NAMESPACE
                                                                  : -1;
        if (fn < 0)
            return p_err(P, EVLM_ERR_UNSUPPORTED, P->t + P->i - 1,
                         "unsupported Jinja function '%.*s'", (int)callee->sn, callee->s);
        EVLM_TRY(new_node(P, N_CALL, cur(P), &n));
        n->line = callee->line;
        n->col = callee->col;
        n->op = fn;
        n->s = callee->s;
        n->sn = callee->sn;
        EVLM_TRY(parse_args(P, &n->a, &npos, &nkw));
        if (fn == FN_RAISE && (npos != 1 || nkw))
            return p_err(P, EVLM_ERR_FORMAT, cur(P), "raise_exception() takes one argument");
        if (fn == FN_NAMESPACE && npos)
            return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P),
                         "unsupported Jinja construct 'namespace() with positional arguments'");
    } else if (callee->kind == N_ATTR) {
        int m = lookup(METHODS, (int)(sizeof METHODS / sizeof *METHODS), callee->s, callee->sn);
        if (m < 0)
            return p_err(P, EVLM_ERR_UNSUPPORTED, P->t + P->i - 1,
                         "unsupported Jinja method '%.*s'", (int)callee->sn, callee->s);
        EVLM_TRY(new_node(P, N_METHOD, cur(P), &n));
        n->line = callee->line;
        n->col = callee->col;
        n->op = m;
        n->s = callee->s;
        n->sn = callee->sn;
        n->a = callee->a;
        EVLM_TRY(parse_args(P, &n->b, &npos, &nkw));
        if (nkw || npos < METHOD_MIN_ARGS[m] || npos > METHOD_MAX_ARGS[m])
            return p_err(P, EVLM_ERR_FORMAT, cur(P), "wrong arguments to method '%s'", METHODS[m]);
        n->flag = npos;
    } else {
        return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P), "unsupported Jinja construct 'call'");
    }
    *out = n;
    return EVLM_OK;
}

static evlm_status parse_postfix(parser *P, jnode *n, jnode **out) {
    for (;;) {
        tok *t = cur(P);
        jnode *m = NULL;
        if (at_op(P, OP_DOT)) {
            adv(P);
            tok *nt = cur(P);
            if (nt->type == T_NAME) {
                EVLM_TRY(new_node(P, N_ATTR, nt, &m));
                m->a = n;
                m->s = nt->s;
                m->sn = nt->n;
            } else if (nt->type == T_INT) {
                EVLM_TRY(new_node(P, N_ITEM, nt, &m));
                m->a = n;
                EVLM_TRY(new_node(P, N_LIT, nt, &m->b));
                m->b->lit.type = EVLM_JV_INT;
                m->b->lit.u.i = nt->i;
            } else {
                return unexpected(P, "an attribute name");
            }
            adv(P);
            n = m;
        } else if (at_op(P, OP_LBRACK)) {
            adv(P);
            EVLM_TRY(new_node(P, N_ITEM, t, &m));
            m->a = n;
            jnode *start = NULL;
            if (!at_op(P, OP_COLON)) EVLM_TRY(parse_expr(P, &start));
            if (at_op(P, OP_COLON)) {
                m->kind = N_SLICE;
                m->b = start;
                adv(P);
                if (!at_op(P, OP_COLON) && !at_op(P, OP_RBRACK)) EVLM_TRY(parse_expr(P, &m->c));
                if (at_op(P, OP_COLON)) {
                    adv(P);
                    if (!at_op(P, OP_RBRACK)) EVLM_TRY(parse_expr(P, &m->d));
                }
            } else {
                m->b = start;
                if (at_op(P, OP_COMMA))
                    return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P),
                                 "unsupported Jinja construct 'tuple'");
            }
            EVLM_TRY(expect_op(P, OP_RBRACK));
            n = m;
        } else if (at_op(P, OP_LPAREN)) {
            EVLM_TRY(parse_call(P, n, &n));
        } else {
            *out = n;
            return EVLM_OK;
        }
    }
}

static evlm_status parse_filters(parser *P, jnode *n, jnode **out) {
    for (;;) {
        jnode *m = NULL;
        if (at_op(P, OP_PIPE)) {
            adv(P);
            tok *nt = cur(P);
            if (nt->type != T_NAME) return unexpected(P, "a filter name");
            int f = lookup(FILTERS, (int)(sizeof FILTERS / sizeof *FILTERS), nt->s, nt->n);
            if (f < 0)
                return p_err(P, EVLM_ERR_UNSUPPORTED, nt, "unsupported Jinja filter '%.*s'",
                             (int)nt->n, nt->s);
            adv(P);
            if (at_op(P, OP_LPAREN) || at_op(P, OP_DOT))
                return p_err(P, EVLM_ERR_UNSUPPORTED, nt,
                             "unsupported Jinja construct 'arguments to filter %s'", FILTERS[f]);
            EVLM_TRY(new_node(P, N_FILTER, nt, &m));
            m->op = FILTER_CODE[f];
            m->a = n;
            n = m;
        } else if (at_name(P, "is")) {
            adv(P);
            bool neg = false;
            if (at_name(P, "not")) {
                neg = true;
                adv(P);
            }
            tok *nt = cur(P);
            if (nt->type != T_NAME) return unexpected(P, "a test name");
            int ts = lookup(TESTS, (int)(sizeof TESTS / sizeof *TESTS), nt->s, nt->n);
            if (ts < 0)
                return p_err(P, EVLM_ERR_UNSUPPORTED, nt, "unsupported Jinja test '%.*s'",
                             (int)nt->n, nt->s);
            adv(P);
            tok *after = cur(P);
            if (after->type == T_STR || after->type == T_INT || after->type == T_FLOAT ||
                at_op(P, OP_LPAREN) || at_op(P, OP_LBRACK) || at_op(P, OP_LBRACE) ||
                (after->type == T_NAME && !at_name(P, "and") && !at_name(P, "or") &&
                 !at_name(P, "if") && !at_name(P, "else") && !at_name(P, "in") &&
                 !at_name(P, "is") && !at_name(P, "not")))
                return p_err(P, EVLM_ERR_UNSUPPORTED, nt,
                             "unsupported Jinja construct 'argument to test %s'", TESTS[ts]);
            EVLM_TRY(new_node(P, N_TEST, nt, &m));
            m->op = ts;
            m->flag = neg;
            m->a = n;
            n = m;
        } else if (at_op(P, OP_LPAREN)) {
            EVLM_TRY(parse_call(P, n, &n));
        } else {
            *out = n;
            return EVLM_OK;
        }
    }
}

static evlm_status parse_unary(parser *P, bool with_filter, jnode **out) {
    EVLM_TRY(enter(P));
    jnode *n = NULL;
    tok *t = cur(P);
    if (at_op(P, OP_SUB) || at_op(P, OP_ADD)) {
        adv(P);
        EVLM_TRY(new_node(P, t->op == OP_SUB ? N_NEG : N_POS, t, &n));
        EVLM_TRY(parse_unary(P, false, &n->a));
    } else {
        EVLM_TRY(parse_primary(P, &n));
    }
    EVLM_TRY(parse_postfix(P, n, &n));
    if (with_filter) EVLM_TRY(parse_filters(P, n, &n));
    P->depth--;
    *out = n;
    return EVLM_OK;
}

static evlm_status parse_binary(parser *P, int level, jnode **out);

/* Precedence levels, loosest first: + - | ~ | * / // % | ** (rejected) | unary. */
static evlm_status parse_binary(parser *P, int level, jnode **out) {
    static const int ops[3][4] = {
        {OP_ADD, OP_SUB, -1, -1}, {OP_TILDE, -1, -1, -1}, {OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD}};
    jnode *n = NULL;
    if (level == 3) {
        EVLM_TRY(parse_unary(P, true, &n));
        if (at_op(P, OP_POW))
            return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P), "unsupported Jinja operator '**'");
        *out = n;
        return EVLM_OK;
    }
    EVLM_TRY(parse_binary(P, level + 1, &n));
    for (;;) {
        tok *t = cur(P);
        int op = -1;
        if (t->type == T_OP)
            for (int k = 0; k < 4; k++)
                if (ops[level][k] == t->op) op = t->op;
        if (op < 0) break;
        adv(P);
        jnode *m = NULL;
        EVLM_TRY(new_node(P, N_BIN, t, &m));
        m->op = op;
        m->a = n;
        EVLM_TRY(parse_binary(P, level + 1, &m->b));
        n = m;
    }
    *out = n;
    return EVLM_OK;
}

static evlm_status parse_compare(parser *P, jnode **out) {
    jnode *n = NULL;
    EVLM_TRY(parse_binary(P, 0, &n));
    bool chained = false;
    for (;;) {
        tok *t = cur(P);
        int op = -1;
        if (t->type == T_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT ||
                                t->op == OP_GT || t->op == OP_LE || t->op == OP_GE)) {
            op = t->op;
            adv(P);
        } else if (at_name(P, "in")) {
            op = OP_IN;
            adv(P);
        } else if (at_name(P, "not") && P->t[P->i + 1].type == T_NAME &&
                   str_eq(P->t[P->i + 1].s, P->t[P->i + 1].n, "in")) {
            op = OP_NOTIN;
            adv(P);
            adv(P);
        }
        if (op < 0) break;
        if (chained)
            return p_err(P, EVLM_ERR_UNSUPPORTED, t,
                         "unsupported Jinja construct 'chained comparison'");
        chained = true;
        jnode *m = NULL;
        EVLM_TRY(new_node(P, N_BIN, t, &m));
        m->op = op;
        m->a = n;
        EVLM_TRY(parse_binary(P, 0, &m->b));
        n = m;
    }
    *out = n;
    return EVLM_OK;
}

static evlm_status parse_not(parser *P, jnode **out) {
    if (at_name(P, "not")) {
        EVLM_TRY(enter(P));
        jnode *n = NULL;
        EVLM_TRY(new_node(P, N_NOT, cur(P), &n));
        adv(P);
        EVLM_TRY(parse_not(P, &n->a));
        P->depth--;
        *out = n;
        return EVLM_OK;
    }
    return parse_compare(P, out);
}

static evlm_status parse_and(parser *P, jnode **out) {
    jnode *n = NULL;
    EVLM_TRY(parse_not(P, &n));
    while (at_name(P, "and")) {
        jnode *m = NULL;
        EVLM_TRY(new_node(P, N_AND, cur(P), &m));
        adv(P);
        m->a = n;
        EVLM_TRY(parse_not(P, &m->b));
        n = m;
    }
    *out = n;
    return EVLM_OK;
}

static evlm_status parse_or(parser *P, jnode **out) {
    jnode *n = NULL;
    EVLM_TRY(parse_and(P, &n));
    while (at_name(P, "or")) {
        jnode *m = NULL;
        EVLM_TRY(new_node(P, N_OR, cur(P), &m));
        adv(P);
        m->a = n;
        EVLM_TRY(parse_and(P, &m->b));
        n = m;
    }
    *out = n;
    return EVLM_OK;
}

/* or-expr [if or-expr [else expr]] */
static evlm_status parse_expr(parser *P, jnode **out) {
    EVLM_TRY(enter(P));
    jnode *n = NULL;
    EVLM_TRY(parse_or(P, &n));
    while (at_name(P, "if")) {
        jnode *m = NULL;
        EVLM_TRY(new_node(P, N_COND, cur(P), &m));
        adv(P);
        m->b = n;
        EVLM_TRY(parse_or(P, &m->a));
        if (at_name(P, "else")) {
            adv(P);
            EVLM_TRY(parse_expr(P, &m->c));
        }
        n = m;
    }
    P->depth--;
    *out = n;
    return EVLM_OK;
}

/* ---- statements ---- */

static const char *const UNSUPPORTED_TAGS[] = {
    "macro",    "call",       "filter", "include",       "import",  "from",
    "extends",  "block",      "with",   "raw",           "break",   "continue",
    "do",       "autoescape", "trans",  "endmacro",      "endcall", "endfilter",
    "endblock", "endwith",    "endraw", "endautoescape", "print"};

/* Statements until one of stops (NULL-terminated) is the tag name; *which = its index, the
 * parser is then just after that name. No stops: until the end of the template. */
static evlm_status parse_body(parser *P, const char *const *stops, int *which, jnode **out);

static evlm_status parse_if(parser *P, const tok *at, jnode **out) {
    jnode *n = NULL;
    EVLM_TRY(new_node(P, N_IF, at, &n));
    EVLM_TRY(parse_expr(P, &n->a));
    EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    int w;
    tok *tag = cur(P);
    EVLM_TRY(parse_body(P, stops, &w, &n->b));
    if (w == 0) {
        EVLM_TRY(enter(P));
        EVLM_TRY(parse_if(P, tag, &n->c));
        P->depth--;
        *out = n;
        return EVLM_OK; /* the nested if consumed the endif */
    }
    if (w == 1) {
        EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
        static const char *const stops2[] = {"endif", NULL};
        EVLM_TRY(parse_body(P, stops2, &w, &n->c));
    }
    EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
    *out = n;
    return EVLM_OK;
}

static evlm_status parse_stmt(parser *P, const tok *at, jnode **out) {
    tok *t = cur(P);
    jnode *n = NULL;
    if (at_name(P, "if")) {
        adv(P);
        return parse_if(P, at, out);
    }
    if (at_name(P, "for")) {
        adv(P);
        EVLM_TRY(new_node(P, N_FOR, at, &n));
        if (cur(P)->type != T_NAME) return unexpected(P, "a loop variable");
        n->s = cur(P)->s;
        n->sn = cur(P)->n;
        adv(P);
        if (at_op(P, OP_COMMA))
            return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P),
                         "unsupported Jinja construct 'tuple unpacking in for'");
        if (!at_name(P, "in")) return unexpected(P, "'in'");
        adv(P);
        EVLM_TRY(parse_or(P, &n->a));
        if (at_name(P, "if"))
            return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P),
                         "unsupported Jinja construct 'loop filter'");
        if (at_name(P, "recursive"))
            return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P),
                         "unsupported Jinja construct 'recursive loop'");
        EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
        static const char *const stops[] = {"else", "endfor", NULL};
        int w;
        tok *tag = cur(P);
        EVLM_TRY(parse_body(P, stops, &w, &n->b));
        if (w == 0)
            return p_err(P, EVLM_ERR_UNSUPPORTED, tag, "unsupported Jinja construct 'for-else'");
        EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
        *out = n;
        return EVLM_OK;
    }
    if (at_name(P, "set")) {
        adv(P);
        EVLM_TRY(new_node(P, N_SET, at, &n));
        if (cur(P)->type != T_NAME) return unexpected(P, "a variable name");
        n->s = cur(P)->s;
        n->sn = cur(P)->n;
        adv(P);
        if (at_op(P, OP_DOT)) {
            adv(P);
            if (cur(P)->type != T_NAME) return unexpected(P, "an attribute name");
            n->s2 = cur(P)->s;
            n->s2n = cur(P)->n;
            adv(P);
        }
        if (at_op(P, OP_COMMA))
            return p_err(P, EVLM_ERR_UNSUPPORTED, cur(P),
                         "unsupported Jinja construct 'tuple assignment'");
        if (cur(P)->type == T_BLOCK_END || at_op(P, OP_PIPE))
            return p_err(P, EVLM_ERR_UNSUPPORTED, t, "unsupported Jinja construct 'block set'");
        EVLM_TRY(expect_op(P, OP_ASSIGN));
        EVLM_TRY(parse_expr(P, &n->a));
        EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
        *out = n;
        return EVLM_OK;
    }
    if (at_name(P, "generation")) { /* transformers' assistant-mask marker: renders its body */
        adv(P);
        EVLM_TRY(new_node(P, N_BLOCK, at, &n));
        EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
        static const char *const stops[] = {"endgeneration", NULL};
        int w;
        EVLM_TRY(parse_body(P, stops, &w, &n->b));
        EVLM_TRY(expect_type(P, T_BLOCK_END, "'%}'"));
        *out = n;
        return EVLM_OK;
    }
    if (t->type != T_NAME) return unexpected(P, "a tag name");
    if (lookup(UNSUPPORTED_TAGS, (int)(sizeof UNSUPPORTED_TAGS / sizeof *UNSUPPORTED_TAGS), t->s,
               t->n) >= 0 ||
        !(str_eq(t->s, t->n, "elif") || str_eq(t->s, t->n, "else") || str_eq(t->s, t->n, "endif") ||
          str_eq(t->s, t->n, "endfor") || str_eq(t->s, t->n, "endset") ||
          str_eq(t->s, t->n, "endgeneration")))
        return p_err(P, EVLM_ERR_UNSUPPORTED, t, "unsupported Jinja tag '%.*s'",
                     (int)(t->n > 40 ? 40 : t->n), t->s);
    return p_err(P, EVLM_ERR_FORMAT, t, "syntax error: unexpected '%.*s'", (int)t->n, t->s);
}

static evlm_status parse_body(parser *P, const char *const *stops, int *which, jnode **out) {
    EVLM_TRY(enter(P));
    jnode *head = NULL, **tail = &head;
    for (;;) {
        tok *t = cur(P);
        jnode *n = NULL;
        if (t->type == T_EOF) {
            if (stops && stops[0]) {
                const char *last = stops[0];
                for (int k = 0; stops[k]; k++) last = stops[k];
                return p_err(P, EVLM_ERR_FORMAT, t,
                             "syntax error: unexpected end of template, expected '%s'", last);
            }
            break;
        }
        if (t->type == T_TEXT) {
            EVLM_TRY(new_node(P, N_TEXT, t, &n));
            n->s = t->s;
            n->sn = t->n;
            adv(P);
        } else if (t->type == T_VAR_BEGIN) {
            adv(P);
            EVLM_TRY(new_node(P, N_OUT, t, &n));
            EVLM_TRY(parse_expr(P, &n->a));
            EVLM_TRY(expect_type(P, T_VAR_END, "'}}'"));
        } else if (t->type == T_BLOCK_BEGIN) {
            adv(P);
            tok *name = cur(P);
            int w = -1;
            if (stops && name->type == T_NAME)
                for (int k = 0; stops[k]; k++)
                    if (str_eq(name->s, name->n, stops[k])) w = k;
            if (w >= 0) {
                adv(P);
                *which = w;
                break;
            }
            EVLM_TRY(parse_stmt(P, t, &n));
        } else {
            return unexpected(P, "template text or a tag");
        }
        *tail = n;
        tail = &n->next;
    }
    P->depth--;
    *out = head;
    return EVLM_OK;
}

evlm_status evlm__jinja_parse_tokens(const char *name, tok *t, arena *a, jnode **body) {
    parser P;
    memset(&P, 0, sizeof P);
    P.name = name;
    P.t = t;
    P.a = a;
    int w;
    return parse_body(&P, NULL, &w, body);
}
