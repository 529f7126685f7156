/*
 * jinja.c - the Jinja2 subset of chat templates (see jinja.h): source normalization, lexer,
 * recursive-descent parser to an AST (all in one arena owned by the template), and a
 * tree-walking evaluator whose values live in a per-render arena.
 *
 * Parse time rejects everything unknown, so a template that loads renders with the semantics of
 * jinja2 as transformers runs it, or fails with a message that names the construct. Render time
 * is bounded (output bytes, arena bytes, evaluation steps, value nesting) against hostile input.
 * String case operations (upper, lower, capitalize) act on ASCII letters only; lengths and
 * indexes of strings count code points like Python.
 * Not here: macros, call blocks, includes, tuples, loop controls, filters with arguments.
 */
#include "tokenizer/jinja.h"
#include "core/status.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== arena =================================================================================== */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
} blk;

typedef struct arena {
    blk *head;
    size_t total;
} arena;

#define BLK_HDR ((sizeof(blk) + 15) & ~(size_t)15)

static void *arena_alloc(arena *a, size_t n) {
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

static void arena_free(arena *a) {
    blk *b = a->head;
    while (b) {
        blk *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* ==== tokens ================================================================================== */

enum {
    T_EOF,
    T_TEXT,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STR,
    T_INT,
    T_FLOAT,
    T_OP
};

enum {
    OP_LPAREN,
    OP_RPAREN,
    OP_LBRACK,
    OP_RBRACK,
    OP_LBRACE,
    OP_RBRACE,
    OP_COMMA,
    OP_DOT,
    OP_COLON,
    OP_PIPE,
    OP_TILDE,
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_GT,
    OP_LE,
    OP_GE,
    OP_ASSIGN,
    OP_IN, /* AST only */
    OP_NOTIN,
};

static const char *const OP_STR[] = {"(",  ")",  "[", "]", "{",  "}",  ",",  ".",  ":",
                                     "|",  "~",  "+", "-", "*",  "/",  "//", "%",  "**",
                                     "==", "!=", "<", ">", "<=", ">=", "=",  "in", "not in"};

typedef struct tok {
    int type, op;
    int line, col;
    const char *s; /* text, name, string value */
    size_t n;
    int64_t i;
    double f;
} tok;

/* ==== AST ===================================================================================== */

enum {
    /* statements */
    N_TEXT,
    N_OUT,
    N_IF,
    N_FOR,
    N_SET,
    N_BLOCK, /* {% generation %}: renders its body */
    /* expressions */
    N_LIT,
    N_NAME,
    N_LIST,
    N_DICT,
    N_ATTR,
    N_ITEM,
    N_SLICE,
    N_BIN,
    N_AND,
    N_OR,
    N_NOT,
    N_NEG,
    N_POS,
    N_COND,
    N_TEST,
    N_FILTER,
    N_CALL,
    N_METHOD,
    N_KW,
};

enum { F_CAPITALIZE, F_TRIM, F_LENGTH, F_UPPER, F_LOWER, F_TOJSON, F_STRING };
static const char *const FILTERS[] = {"capitalize", "trim",   "length", "upper",
                                      "lower",      "tojson", "string", "count"};
static const int FILTER_CODE[] = {F_CAPITALIZE, F_TRIM,   F_LENGTH, F_UPPER,
                                  F_LOWER,      F_TOJSON, F_STRING, F_LENGTH};

enum {
    TS_DEFINED,
    TS_UNDEFINED,
    TS_NONE,
    TS_STRING,
    TS_MAPPING,
    TS_ITERABLE,
    TS_SEQUENCE,
    TS_NUMBER,
    TS_INTEGER,
    TS_FLOAT,
    TS_BOOLEAN,
    TS_TRUE,
    TS_FALSE
};
static const char *const TESTS[] = {"defined",  "undefined", "none",   "string",  "mapping",
                                    "iterable", "sequence",  "number", "integer", "float",
                                    "boolean",  "true",      "false"};

enum { M_STRIP, M_LSTRIP, M_RSTRIP, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER, M_GET };
static const char *const METHODS[] = {"strip",    "lstrip", "rstrip", "startswith",
                                      "endswith", "upper",  "lower",  "get"};
static const int METHOD_MIN_ARGS[] = {0, 0, 0, 1, 1, 0, 0, 1};
static const int METHOD_MAX_ARGS[] = {1, 1, 1, 1, 1, 0, 0, 2};

enum { FN_RAISE, FN_NAMESPACE };

typedef struct jnode jnode;
struct jnode {
    int kind, op, flag;
    int line, col;
    const char *s; /* text, variable / attribute / function name */
    size_t sn;
    const char *s2; /* N_SET: attribute of a namespace (s2 != NULL) */
    size_t s2n;
    jnode *a, *b, *c, *d;
    jnode *next;
    evlm_jv lit;
};

struct evlm_jtpl {
    char *name;
    arena a;
    jnode *body;
};

/* ==== error helpers =========================================================================== */

static evlm_status failv(evlm_status st, const char *name, int line, int col, const char *fmt,
                         va_list ap) {
    char msg[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line > 0) return evlm__fail(st, "%s: %s at line %d col %d", name, msg, line, col);
    return evlm__fail(st, "%s: %s", name, msg);
}

static int is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int is_alpha(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_digit(int c) {
    return c >= '0' && c <= '9';
}

static bool str_eq(const char *a, size_t an, const char *z) {
    size_t zn = strlen(z);
    return an == zn && memcmp(a, z, an) == 0;
}

static int lookup(const char *const *names, int n, const char *s, size_t sn) {
    for (int i = 0; i < n; i++)
        if (str_eq(s, sn, names[i])) return i;
    return -1;
}

/* ==== lexer =================================================================================== */

typedef struct lexer {
    const char *name;
    const char *src;
    size_t n, pos;
    int line;
    size_t line_start, counted; /* line bookkeeping up to `counted` */
    arena *a;
    tok *t;
    size_t nt, cap;
} lexer;

static void lx_where(lexer *L, size_t pos, int *line, int *col) {
    if (pos < L->counted) { /* only error paths look back: recount from the start */
        L->counted = L->line_start = 0;
        L->line = 1;
    }
    for (; L->counted < pos; L->counted++)
        if (L->src[L->counted] == '\n') {
            L->line++;
            L->line_start = L->counted + 1;
        }
    *line = L->line;
    *col = (int)(pos - L->line_start) + 1;
}

static evlm_status lx_err(lexer *L, evlm_status st, size_t pos, const char *fmt, ...)
    EVLM_PRINTF(4, 5);
static evlm_status lx_err(lexer *L, evlm_status st, size_t pos, const char *fmt, ...) {
    int line, col;
    lx_where(L, pos, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    evlm_status r = failv(st, L->name, line, col, fmt, ap);
    va_end(ap);
    return r;
}

static tok *lx_push(lexer *L, int type, size_t pos) {
    if (L->nt == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 256;
        tok *t = realloc(L->t, nc * sizeof *t);
        if (!t) return NULL;
        L->t = t;
        L->cap = nc;
    }
    tok *t = &L->t[L->nt++];
    memset(t, 0, sizeof *t);
    t->type = type;
    lx_where(L, pos, &t->line, &t->col);
    return t;
}

#define LX_PUSH(var, type, pos)                                                                    \
    do {                                                                                           \
        var = lx_push(L, type, pos);                                                               \
        if (!var) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", L->name);                 \
    } while (0)

static void put_utf8(char *o, size_t *k, uint32_t cp) {
    if (cp < 0x80) {
        o[(*k)++] = (char)cp;
    } else if (cp < 0x800) {
        o[(*k)++] = (char)(0xc0 | (cp >> 6));
        o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        o[(*k)++] = (char)(0xe0 | (cp >> 12));
        o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*k)++] = (char)(0xf0 | (cp >> 18));
        o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A quoted string literal at L->pos with Python escapes. */
static evlm_status lx_string(lexer *L) {
    const char *s = L->src;
    size_t start = L->pos;
    char q = s[L->pos++];
    size_t end = L->pos;
    while (end < L->n && s[end] != q) end += (s[end] == '\\' && end + 1 < L->n) ? 2 : 1;
    if (end >= L->n) return lx_err(L, EVLM_ERR_FORMAT, start, "unterminated string literal");
    char *o = arena_alloc(L->a, end - L->pos + 1);
    if (!o) return evlm__fail(EVLM_ERR_NOMEM, "%s: template too large", L->name);
    size_t k = 0;
    for (size_t i = L->pos; i < end; i++) {
        if (s[i] != '\\') {
            o[k++] = s[i];
            continue;
        }
        char e = s[++i];
        int nhex = 0;
        switch (e) {
        case 'n':
            o[k++] = '\n';
            break;
        case 't':
            o[k++] = '\t';
            break;
        case 'r':
            o[k++] = '\r';
            break;
        case 'b':
            o[k++] = '\b';
            break;
        case 'f':
            o[k++] = '\f';
            break;
        case 'v':
            o[k++] = '\v';
            break;
        case 'a':
            o[k++] = '\a';
            break;
        case '0':
            o[k++] = '\0';
            break;
        case '\\':
            o[k++] = '\\';
            break;
        case '\'':
            o[k++] = '\'';
            break;
        case '"':
            o[k++] = '"';
            break;
        case '\n':
            break; /* line continuation */
        case 'x':
            nhex = 2;
            break;
        case 'u':
            nhex = 4;
            break;
        case 'U':
            nhex = 8;
            break;
        default: /* Python keeps unknown escapes verbatim */
            o[k++] = '\\';
            o[k++] = e;
        }
        if (nhex) {
            uint32_t cp = 0;
            for (int j = 0; j < nhex; j++) {
                int h = i + 1 + (size_t)j < end ? hexval((unsigned char)s[i + 1 + (size_t)j]) : -1;
                if (h < 0) return lx_err(L, EVLM_ERR_FORMAT, i - 1, "bad \\%c escape", e);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff) return lx_err(L, EVLM_ERR_FORMAT, i - 1, "bad \\%c escape", e);
            i += (size_t)nhex;
            put_utf8(o, &k, cp);
        }
    }
    o[k] = 0;
    tok *t;
    LX_PUSH(t, T_STR, start);
    t->s = o;
    t->n = k;
    L->pos = end + 1;
    return EVLM_OK;
}

static evlm_status lx_number(lexer *L) {
    const char *s = L->src;
    size_t start = L->pos, p = L->pos;
    bool is_float = false;
    while (p < L->n && (is_digit(s[p]) || s[p] == '_')) p++;
    if (p + 1 < L->n && s[p] == '.' && is_digit(s[p + 1])) {
        is_float = true;
        p++;
        while (p < L->n && (is_digit(s[p]) || s[p] == '_')) p++;
    }
    if (p < L->n && (s[p] == 'e' || s[p] == 'E')) {
        size_t q = p + 1;
        if (q < L->n && (s[q] == '+' || s[q] == '-')) q++;
        if (q < L->n && is_digit(s[q])) {
            is_float = true;
            p = q;
            while (p < L->n && is_digit(s[p])) p++;
        }
    }
    char buf[64];
    size_t k = 0;
    for (size_t i = start; i < p; i++) {
        if (s[i] == '_') continue;
        if (k + 1 >= sizeof buf) return lx_err(L, EVLM_ERR_FORMAT, start, "number too long");
        buf[k++] = s[i];
    }
    buf[k] = 0;
    tok *t;
    LX_PUSH(t, is_float ? T_FLOAT : T_INT, start);
    if (is_float) {
        t->f = strtod(buf, NULL);
    } else {
        int64_t v = 0;
        for (size_t i = 0; i < k; i++) {
            if (v > (INT64_MAX - 9) / 10)
                return lx_err(L, EVLM_ERR_FORMAT, start, "integer too large");
            v = v * 10 + (buf[i] - '0');
        }
        t->i = v;
    }
    L->pos = p;
    return EVLM_OK;
}

enum { TAG_VAR, TAG_BLOCK, TAG_COMMENT };

/* Tokens inside {{ }} or {% %} until the closing delimiter; sets *strip to '-', '+' or 0 and
 * leaves L->pos after the delimiter. */
static evlm_status lx_tag(lexer *L, int kind, size_t open, int *strip) {
    const char *s = L->src;
    int braces = 0;
    for (;;) {
        while (L->pos < L->n && is_space(s[L->pos])) L->pos++;
        size_t p = L->pos;
        if (p >= L->n)
            return lx_err(L, EVLM_ERR_FORMAT, open, "unclosed '%s'", kind == TAG_VAR ? "{{" : "{%");
        const char *close = kind == TAG_VAR ? "}}" : "%}";
        char c = s[p];
        if ((c == '-' || (c == '+' && kind == TAG_BLOCK)) && p + 2 < L->n + 0 &&
            memcmp(s + p + 1, close, 2) == 0) {
            *strip = c;
            L->pos = p + 3;
            return EVLM_OK;
        }
        if (p + 1 < L->n && memcmp(s + p, close, 2) == 0 && (kind == TAG_BLOCK || braces == 0)) {
            *strip = 0;
            L->pos = p + 2;
            return EVLM_OK;
        }
        tok *t;
        if (is_alpha((unsigned char)c)) {
            size_t q = p;
            while (q < L->n && (is_alpha((unsigned char)s[q]) || is_digit(s[q]))) q++;
            LX_PUSH(t, T_NAME, p);
            t->s = s + p;
            t->n = q - p;
            L->pos = q;
        } else if (is_digit(c)) {
            EVLM_TRY(lx_number(L));
        } else if (c == '\'' || c == '"') {
            EVLM_TRY(lx_string(L));
        } else {
            int op = -1;
            char d = p + 1 < L->n ? s[p + 1] : 0;
            size_t len = 1;
            switch (c) {
            case '(':
                op = OP_LPAREN;
                break;
            case ')':
                op = OP_RPAREN;
                break;
            case '[':
                op = OP_LBRACK;
                break;
            case ']':
                op = OP_RBRACK;
                break;
            case '{':
                op = OP_LBRACE;
                braces++;
                break;
            case '}':
                op = OP_RBRACE;
                braces--;
                break;
            case ',':
                op = OP_COMMA;
                break;
            case '.':
                op = OP_DOT;
                break;
            case ':':
                op = OP_COLON;
                break;
            case '|':
                op = OP_PIPE;
                break;
            case '~':
                op = OP_TILDE;
                break;
            case '+':
                op = OP_ADD;
                break;
            case '-':
                op = OP_SUB;
                break;
            case '%':
                op = OP_MOD;
                break;
            case '*':
                op = d == '*' ? OP_POW : OP_MUL;
                break;
            case '/':
                op = d == '/' ? OP_FLOORDIV : OP_DIV;
                break;
            case '=':
                op = d == '=' ? OP_EQ : OP_ASSIGN;
                break;
            case '!':
                op = d == '=' ? OP_NE : -1;
                break;
            case '<':
                op = d == '=' ? OP_LE : OP_LT;
                break;
            case '>':
                op = d == '=' ? OP_GE : OP_GT;
                break;
            default:
                break;
            }
            if (op < 0) {
                if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                    return lx_err(L, EVLM_ERR_FORMAT, p, "unexpected character '%c'", c);
                return lx_err(L, EVLM_ERR_FORMAT, p, "unexpected byte 0x%02x", (unsigned char)c);
            }
            if (op == OP_POW || op == OP_FLOORDIV || op == OP_EQ || op == OP_NE || op == OP_LE ||
                op == OP_GE)
                len = 2;
            LX_PUSH(t, T_OP, p);
            t->op = op;
            L->pos = p + len;
        }
    }
}

/* Copies src into a normalized buffer: "\r\n", "\r" and the other line breaks of Python's
 * splitlines become "\n", and one trailing newline is dropped (keep_trailing_newline=False). */
static char *normalize(arena *a, const char *src, size_t n, size_t *out_n) {
    char *o = arena_alloc(a, n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '\r') {
            if (i + 1 < n && src[i + 1] == '\n') i++;
            o[k++] = '\n';
        } else if (c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) {
            o[k++] = '\n';
        } else if (c == 0xc2 && i + 1 < n && (unsigned char)src[i + 1] == 0x85) {
            o[k++] = '\n';
            i++;
        } else if (c == 0xe2 && i + 2 < n && (unsigned char)src[i + 1] == 0x80 &&
                   ((unsigned char)src[i + 2] == 0xa8 || (unsigned char)src[i + 2] == 0xa9)) {
            o[k++] = '\n';
            i += 2;
        } else {
            o[k++] = (char)c;
        }
    }
    if (k > 0 && o[k - 1] == '\n') k--;
    o[k] = 0;
    *out_n = k;
    return o;
}

static evlm_status lex(lexer *L) {
    const char *s = L->src;
    bool line_starting = true;
    while (L->pos <= L->n) {
        /* next tag opening */
        size_t q = L->pos;
        int kind = -1;
        for (; q + 1 < L->n; q++) {
            if (s[q] != '{') continue;
            if (s[q + 1] == '{')
                kind = TAG_VAR;
            else if (s[q + 1] == '%')
                kind = TAG_BLOCK;
            else if (s[q + 1] == '#')
                kind = TAG_COMMENT;
            if (kind >= 0) break;
        }
        if (kind < 0) q = L->n;
        size_t tstart = L->pos, tend = q;
        char sign = kind >= 0 && q + 2 < L->n ? s[q + 2] : 0;
        if (kind >= 0 && sign == '-') {
            while (tend > tstart && is_space(s[tend - 1])) tend--;
        } else if ((kind == TAG_BLOCK || kind == TAG_COMMENT) && sign != '+') {
            /* lstrip_blocks: whitespace between the line start and the tag */
            size_t l = tend;
            while (l > tstart && s[l - 1] != '\n') l--;
            bool at_line_start = l > tstart || line_starting;
            bool blank = true;
            for (size_t i = l; i < tend; i++)
                if (!is_space(s[i])) blank = false;
            if (at_line_start && blank) tend = l;
        }
        if (tend > tstart) {
            tok *t;
            LX_PUSH(t, T_TEXT, tstart);
            t->s = s + tstart;
            t->n = tend - tstart;
        }
        if (kind < 0) break;
        size_t open = q;
        L->pos = q + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
        int strip = 0;
        if (kind == TAG_COMMENT) {
            size_t e = L->pos;
            while (e + 1 < L->n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= L->n) return lx_err(L, EVLM_ERR_FORMAT, open, "unclosed comment");
            if (e > L->pos && s[e - 1] == '-') strip = '-';
            L->pos = e + 2;
        } else {
            tok *t;
            LX_PUSH(t, kind == TAG_VAR ? T_VAR_BEGIN : T_BLOCK_BEGIN, open);
            EVLM_TRY(lx_tag(L, kind, open, &strip));
            LX_PUSH(t, kind == TAG_VAR ? T_VAR_END : T_BLOCK_END, L->pos - 2);
        }
        size_t after = L->pos;
        if (strip == '-') {
            while (L->pos < L->n && is_space(s[L->pos])) L->pos++;
        } else if (kind != TAG_VAR && strip != '+' && L->pos < L->n && s[L->pos] == '\n') {
            L->pos++; /* trim_blocks */
        }
        line_starting = L->pos > after && s[L->pos - 1] == '\n';
    }
    tok *t;
    LX_PUSH(t, T_EOF, L->n);
    return EVLM_OK;
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
    evlm_status r = failv(st, P->name, t->line, t->col, fmt, ap);
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
    jnode *n = arena_alloc(P->a, sizeof *n);
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
        char *buf = arena_alloc(P->a, total + 1);
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
    evlm_status r = failv(st, R->t->name, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
    return r;
}

static evlm_status r_nomem(render *R) {
    return evlm__fail(EVLM_ERR_NOMEM, "%s: rendering needs more than %u MiB", R->t->name,
                      EVLM_JINJA_MAX_MEMORY >> 20);
}

static void *r_alloc(render *R, size_t n) {
    return arena_alloc(&R->a, n);
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
    lexer L;
    memset(&L, 0, sizeof L);
    L.name = t->name;
    L.line = 1;
    L.a = &t->a;
    L.src = normalize(&t->a, src ? src : "", len, &L.n);
    evlm_status st = L.src ? lex(&L) : evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", name);
    if (st == EVLM_OK) {
        parser P;
        memset(&P, 0, sizeof P);
        P.name = t->name;
        P.t = L.t;
        P.a = &t->a;
        int w;
        st = parse_body(&P, NULL, &w, &t->body);
    }
    free(L.t);
    if (st != EVLM_OK) {
        evlm__jinja_free(t);
        return st;
    }
    *out = t;
    return EVLM_OK;
}

void evlm__jinja_free(evlm_jtpl *t) {
    if (!t) return;
    arena_free(&t->a);
    free(t->name);
    free(t);
}

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
    arena_free(&R.a);
    return st;
}
