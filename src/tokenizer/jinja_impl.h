/*
 * jinja_impl.h - private to the Jinja subset (jinja.c, jinja_lex.c, jinja_parse.c,
 * jinja_eval.c): the arena that templates and renders allocate from, the tokens the lexer hands
 * the parser, the AST the parser hands the evaluator (with the name tables of its filters,
 * tests and methods beside their codes), the template object, and the helpers the stages share.
 * Not here: anything the rest of the library uses; that is jinja.h.
 */
#ifndef EVLM_TOKENIZER_JINJA_IMPL_H
#define EVLM_TOKENIZER_JINJA_IMPL_H

#include "tokenizer/jinja.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ==== arena (jinja.c) ========================================================================= */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
} blk;

typedef struct arena {
    blk *head;
    size_t total;
} arena;

/* NULL when n or the arena's total would pass EVLM_JINJA_MAX_MEMORY, or malloc fails. */
void *evlm__jinja_arena_alloc(arena *a, size_t n);
void evlm__jinja_arena_free(arena *a);

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

/* ==== shared helpers ========================================================================== */

/* Fails with st and "name: message at line L col C" (without the position when line <= 0). */
evlm_status evlm__jinja_failv(evlm_status st, const char *name, int line, int col, const char *fmt,
                              va_list ap);

static inline int is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static inline bool str_eq(const char *a, size_t an, const char *z) {
    size_t zn = strlen(z);
    return an == zn && memcmp(a, z, an) == 0;
}

/* ==== stages ================================================================================== */

/* jinja_lex.c: normalizes src[0..len) into a copy in *a and splits it into tokens ending with
 * T_EOF, which point into that copy; *out is malloc'd, freed by the caller (NULL on error). */
evlm_status evlm__jinja_lex(const char *name, arena *a, const char *src, size_t len, tok **out);
/* jinja_parse.c: parses the tokens into the statement list *body, nodes from *a. */
evlm_status evlm__jinja_parse_tokens(const char *name, tok *t, arena *a, jnode **body);

#endif
