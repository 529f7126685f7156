/*
 * tokenizer_impl.h - private structures of the tokenizer module (see tokenizer.h).
 *
 * Files: tokenizer.c (tokenizer.json loading, added tokens, encode / decode orchestration),
 * bpe.c (hash tables, BPE model), pretok.c (UTF-8 helpers, regex patterns, normalizers,
 * pre-tokenizers), decoder.c (decoders).
 *
 * The encoder works on "piece lists": one text buffer plus (offset, length, id) records.
 * A piece with id >= 0 is already a token (an added token); the others still go through the
 * remaining stages. Every stage reads one list and writes a fresh one, which mirrors
 * tokenizers' PreTokenizedString splits without its offset bookkeeping (evlm needs only ids).
 */
#ifndef EVLM_TOKENIZER_TOKENIZER_IMPL_H
#define EVLM_TOKENIZER_TOKENIZER_IMPL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "core/buf.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVLM_TK_MAX_ID       (1 << 22)   /* ids above are hostile (largest real vocab ~262k) */
#define EVLM_TK_MAX_TOKEN    (64u << 10) /* bytes of one vocab / added token string */
#define EVLM_TK_MAX_TEXT     ((size_t)1 << 30) /* bytes of one encode input */
#define EVLM_TK_MAX_PATTERN  4096              /* bytes of one regex in tokenizer.json */
#define EVLM_TK_MAX_STAGES   64   /* normalizers / pre-tokenizers / decoders in total */
#define EVLM_TK_MAX_TEMPLATE 1024 /* items of the composed post-processor template */

/* ---- piece lists ------------------------------------------------------------------------ */

typedef struct tk_piece {
    size_t off, len;
    int32_t id;  /* >= 0: final token (added token); -1: text still to process */
    bool origin; /* starts at offset 0 of the original input (Metaspace prepend_scheme first) */
} tk_piece;

typedef struct tk_pieces {
    evlm_str text;
    tk_piece *v;
    size_t n, cap;
} tk_pieces;

evlm_status evlm__tk_pieces_push(tk_pieces *p, const char *s, size_t n, int32_t id, bool origin);
void evlm__tk_pieces_reset(tk_pieces *p);
void evlm__tk_pieces_free(tk_pieces *p);

/* ---- UTF-8 and Unicode classes ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4) with its code point, or 0 when invalid;
 * then *bad = the length of the maximal invalid subpart (>= 1), as Rust's from_utf8_lossy. */
size_t evlm__tk_utf8_next(const uint8_t *s, size_t n, uint32_t *cp, size_t *bad);
/* true when s is strict UTF-8; else *bad_at = byte offset of the first invalid sequence. */
bool evlm__tk_utf8_valid(const char *s, size_t n, size_t *bad_at);
/* Appends bytes, replacing each maximal invalid subpart by U+FFFD. */
evlm_status evlm__tk_utf8_lossy(evlm_str *out, const uint8_t *s, size_t n);
evlm_status evlm__tk_utf8_put(evlm_str *out, uint32_t cp);
/* Rust char::is_whitespace (Unicode White_Space). */
bool evlm__tk_is_space(uint32_t cp);
/* Rust char::is_numeric (general category Nd, Nl, No). */
bool evlm__tk_is_numeric(uint32_t cp);
/* Rust regex's Unicode \w (single_word boundaries): letters, marks, Nd, Nl, Pc, Join_Control
 * (the Alphabetic property is approximated by the letter categories). */
bool evlm__tk_is_word(uint32_t cp);

/* GPT-2's byte <-> code point map (byte_level.rs bytes_char): printable bytes map to
 * themselves, the 68 others (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100.. in byte order. */
static inline uint32_t evlm__tk_byte_char(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33u + (uint32_t)(b - 0x7F);
    return 256u + 67u; /* 0xAD */
}
/* Inverse of evlm__tk_byte_char, -1 for a code point outside the map. */
static inline int evlm__tk_char_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    uint32_t r = cp - 256;
    if (r < 33) return (int)r;
    if (r < 67) return (int)(0x7F + r - 33);
    return 0xAD;
}

/* ---- patterns (Split, Replace): compiled PCRE2, literals with PCRE2_LITERAL ------------- */

typedef struct tk_match {
    size_t start, end;
    bool is_match;
} tk_match;

typedef struct tk_matches {
    tk_match *v;
    size_t n, cap;
} tk_matches;

/* Per-call matching state (encode / decode are reentrant: one per call). */
typedef struct tk_ctx {
    pcre2_match_data *md;
    tk_matches m;
} tk_ctx;

evlm_status evlm__tk_ctx_init(tk_ctx *c);
void evlm__tk_ctx_free(tk_ctx *c);

/* Compiles a String (literal) or Regex pattern; errors name what: field. */
evlm_status evlm__tk_pattern_compile(pcre2_code **out, const char *what, const char *field,
                                     const char *pat, bool regex);
/* tokenizers' Pattern::find_matches for a regex: the whole of s as consecutive (span, is_match)
 * records, with onig's find_iter handling of empty matches. */
evlm_status evlm__tk_find_matches(const pcre2_code *re, tk_ctx *c, const char *s, size_t n);

/* ---- normalizers / pre-tokenizers / decoders ------------------------------------------ */

typedef enum tk_norm_type {
    TK_N_NFC,
    TK_N_NFD,
    TK_N_NFKC,
    TK_N_NFKD,
    TK_N_LOWERCASE,
    TK_N_PREPEND,
    TK_N_REPLACE,
    TK_N_STRIP,
} tk_norm_type;

typedef struct tk_norm {
    tk_norm_type type;
    char *str; /* Prepend: prepend; Replace: content */
    size_t len;
    pcre2_code *re;   /* Replace */
    bool left, right; /* Strip */
} tk_norm;

typedef enum tk_behavior {
    TK_B_REMOVED,
    TK_B_ISOLATED,
    TK_B_MERGED_PREV,
    TK_B_MERGED_NEXT,
    TK_B_CONTIGUOUS,
} tk_behavior;

typedef enum tk_prepend { TK_PREPEND_ALWAYS, TK_PREPEND_NEVER, TK_PREPEND_FIRST } tk_prepend;

typedef enum tk_pretok_type {
    TK_P_BYTELEVEL,
    TK_P_SPLIT,
    TK_P_DIGITS,
    TK_P_METASPACE,
} tk_pretok_type;

typedef struct tk_pretok {
    tk_pretok_type type;
    bool add_prefix_space, use_regex; /* ByteLevel */
    bool individual_digits;           /* Digits */
    bool invert;                      /* Split */
    tk_behavior behavior;             /* Split */
    pcre2_code *re;                   /* Split pattern / ByteLevel GPT-2 regex */
    uint32_t repl;                    /* Metaspace replacement character */
    tk_prepend prepend;               /* Metaspace */
    bool split;                       /* Metaspace */
} tk_pretok;

typedef enum tk_dec_type {
    TK_D_BYTELEVEL,
    TK_D_METASPACE,
    TK_D_BYTEFALLBACK,
    TK_D_FUSE,
    TK_D_STRIP,
    TK_D_REPLACE,
} tk_dec_type;

typedef struct tk_dec {
    tk_dec_type type;
    pcre2_code *re; /* Replace */
    char *content;  /* Replace */
    size_t content_len;
    uint32_t ch;        /* Strip content / Metaspace replacement */
    size_t start, stop; /* Strip */
    tk_prepend prepend; /* Metaspace */
} tk_dec;

/* ---- hash tables ---------------------------------------------------------------------- */

/* String -> id, open addressing; keys are (offset, length) in the tokenizer's pool. */
typedef struct tk_entry {
    uint32_t off, len;
    int32_t id;
} tk_entry;

typedef struct tk_strmap {
    tk_entry *ent;
    size_t n, cap_ent;
    int32_t *slot; /* entry index or -1 */
    size_t mask;
} tk_strmap;

/* (left id, right id) -> (rank, merged id). */
typedef struct tk_pairmap {
    uint64_t *key; /* UINT64_MAX: empty */
    uint32_t *rank;
    int32_t *merged;
    size_t mask, n;
} tk_pairmap;

evlm_status evlm__tk_strmap_init(tk_strmap *m, size_t n_expected);
/* Inserts or overwrites (later keys win, as a Rust HashMap built by collect / insert). */
evlm_status evlm__tk_strmap_put(tk_strmap *m, const char *pool, uint32_t off, uint32_t len,
                                int32_t id);
int32_t evlm__tk_strmap_get(const tk_strmap *m, const char *pool, const char *s, size_t n);
void evlm__tk_strmap_free(tk_strmap *m);

evlm_status evlm__tk_pairmap_init(tk_pairmap *m, size_t n_expected);
void evlm__tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged);
bool evlm__tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b, uint32_t *rank,
                          int32_t *merged);
void evlm__tk_pairmap_free(tk_pairmap *m);

/* ---- the tokenizer -------------------------------------------------------------------- */

typedef struct tk_added {
    int32_t id;
    uint32_t off, len;   /* content in the pool */
    uint32_t noff, nlen; /* normalized content (patterns of the normalized set) */
    bool special, lstrip, rstrip, single_word, normalized;
} tk_added;

/* Added tokens matched leftmost-longest: indices into added[] sorted by (first byte, length
 * descending, order); first[b]..first[b+1] is the bucket of first byte b. */
typedef struct tk_mset {
    int32_t *idx;
    size_t n;
    uint32_t first[257];
    bool normalized;
} tk_mset;

struct evlm_tokenizer {
    evlm_str pool;             /* every token string, NUL-separated */
    int32_t n_ids;             /* max id + 1 */
    uint32_t *id_off, *id_len; /* model vocab string of each id; id_len UINT32_MAX: none */
    int32_t *id_added;         /* index into added[] or -1 */
    tk_strmap vocab;           /* model vocab */
    tk_strmap added_map;       /* added token content -> id */
    tk_pairmap merges;

    tk_added *added;
    size_t n_added;
    tk_mset raw_set, norm_set;

    /* BPE model */
    bool byte_fallback, fuse_unk, ignore_merges, has_unk;
    int32_t unk_id; /* -1 when unk_token is not in the vocab (an error when needed) */
    uint32_t prefix_off, prefix_len; /* continuing_subword_prefix (len 0: none) */
    uint32_t suffix_off, suffix_len; /* end_of_word_suffix */
    int32_t byte_ids[256];           /* "<0xXX>" ids or -1 */
    size_t max_token_len;

    tk_norm *norms;
    size_t n_norms;
    tk_pretok *pretoks;
    size_t n_pretoks;
    tk_dec *decs;
    size_t n_decs;
    bool has_decoder;
    int32_t *post; /* composed single template: ids, -1 = the sequence */
    size_t n_post;
    bool has_post;
};

/* Applies the normalizer chain to s into out (cleared first). */
evlm_status evlm__tk_normalize(const evlm_tokenizer *t, tk_ctx *c, const char *s, size_t n,
                               evlm_str *out);
/* Applies one pre-tokenizer to piece s, appending its splits to out. */
evlm_status evlm__tk_pretokenize(const tk_pretok *p, tk_ctx *c, const char *s, size_t n,
                                 bool origin, tk_pieces *out);
/* BPE of one pre-token, ids appended to out. */
evlm_status evlm__tk_bpe(const evlm_tokenizer *t, const char *s, size_t n, evlm_ids *out);
/* Runs the decoder chain over tokens (in: list of token strings, consumed). */
evlm_status evlm__tk_decode_chain(const evlm_tokenizer *t, tk_ctx *c, tk_pieces *in, evlm_str *out);

void evlm__tk_norm_free(tk_norm *n);
void evlm__tk_pretok_free(tk_pretok *p);
void evlm__tk_dec_free(tk_dec *d);

#endif
