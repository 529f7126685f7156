/*
 * jinja_lex.c - source normalization (Python's line breaks become "\n", one trailing newline
 * dropped) and the lexer of the Jinja2 subset: template text between tags, with the whitespace
 * control of trim_blocks / lstrip_blocks and the '-' / '+' markers; comments dropped; names,
 * string and number literals and operators inside {{ }} and {% %}.
 * Not here: any grammar or name (jinja_parse.c decides what a tag, filter or operator means).
 */
#include "tokenizer/jinja_impl.h"
#include "core/status.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int is_alpha(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_digit(int c) {
    return c >= '0' && c <= '9';
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
    evlm_status r = evlm__jinja_failv(st, L->name, line, col, fmt, ap);
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
    char *o = evlm__jinja_arena_alloc(L->a, end - L->pos + 1);
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
    char *o = evlm__jinja_arena_alloc(a, n + 1);
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

evlm_status evlm__jinja_lex(const char *name, arena *a, const char *src, size_t len, tok **out) {
    lexer L;
    memset(&L, 0, sizeof L);
    L.name = name;
    L.line = 1;
    L.a = a;
    L.src = normalize(a, src, len, &L.n);
    evlm_status st = L.src ? lex(&L) : evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", name);
    if (st != EVLM_OK) {
        free(L.t);
        L.t = NULL;
    }
    *out = L.t;
    return st;
}
