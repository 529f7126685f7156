/*
 * cmd_tokenize.c - `evlm tokenize -m DIR [--decode]`: a JSON array of strings on stdin becomes
 * a JSON array of id arrays on stdout (special tokens in the text parsed, nothing added);
 * with --decode, id arrays become strings (special tokens kept, as tokenizers' decode does).
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len, cap;
} strbuf;

static void append(strbuf *out, const char *s) {
    size_t n = strlen(s);
    if (out->len + n + 1 > out->cap) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->len + n + 1) cap *= 2;
        char *p = realloc(out->data, cap);
        if (!p) cli_die("out of memory");
        out->data = p;
        out->cap = cap;
    }
    memcpy(out->data + out->len, s, n + 1);
    out->len += n;
}

static void print_string(strbuf *dst, const char *s, size_t len) {
    cJSON *j = cJSON_CreateString("");
    if (!j) cli_die("out of memory");
    /* cJSON strings are NUL-terminated: refuse embedded NULs rather than truncating */
    if (strlen(s) != len) cli_die("decoded text contains a NUL byte");
    cJSON_SetValuestring(j, s);
    char *out = cJSON_PrintUnformatted(j);
    if (!out) cli_die("out of memory");
    append(dst, out);
    free(out);
    cJSON_Delete(j);
}

int evlm_cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL;
    bool decode = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model"))
            dir = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--decode"))
            decode = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: evlm tokenize -m DIR [--decode] < input.json\n"
                   "  stdin: [\"text\", ...]  ->  stdout: [[ids], ...]\n"
                   "  --decode: stdin [[ids], ...]  ->  stdout [\"text\", ...]\n");
            return 0;
        } else
            cli_die("unknown option '%s'", argv[i]);
    }
    if (!dir) cli_die("no model given (-m DIR)");
    char path[4096];
    int pn = snprintf(path, sizeof path, "%s/%s", dir, "tokenizer.json");
    if (pn < 0 || (size_t)pn >= sizeof path) cli_die("path too long: %s/%s", dir, "tokenizer.json");
    evlm_tokenizer *tok;
    cli_check(evlm_tokenizer_load(path, &tok));
    size_t len;
    char *in = cli_read_stdin(&len);
    cJSON *arr = cJSON_ParseWithLength(in, len);
    free(in);
    if (!arr || !cJSON_IsArray(arr))
        cli_die("standard input: expected a JSON array of %s", decode ? "id arrays" : "strings");
    strbuf res = {0};
    char num[16];
    append(&res, "[");
    int idx = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        if (idx) append(&res, ", ");
        if (!decode) {
            if (!cJSON_IsString(item)) cli_die("standard input: item %d is not a string", idx);
            int32_t *ids;
            size_t n_ids;
            const char *text = item->valuestring;
            cli_check(evlm_tokenizer_tokenize(tok, text, strlen(text), true, false, &ids, &n_ids));
            append(&res, "[");
            for (size_t k = 0; k < n_ids; k++) {
                snprintf(num, sizeof num, k ? ", %d" : "%d", ids[k]);
                append(&res, num);
            }
            append(&res, "]");
            free(ids);
        } else {
            if (!cJSON_IsArray(item))
                cli_die("standard input: item %d is not an array of ids", idx);
            int n_ids = cJSON_GetArraySize(item), k = 0;
            int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n_ids > 0 ? n_ids : 1));
            if (!ids) cli_die("out of memory");
            const cJSON *v;
            cJSON_ArrayForEach(v, item) {
                double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
                if (d < 0 || d > 2147483647.0 || d != (double)(int32_t)d)
                    cli_die("standard input: item %d holds a value that is not a token id", idx);
                ids[k++] = (int32_t)d;
            }
            char *text;
            size_t n_text;
            cli_check(evlm_tokenizer_detokenize(tok, ids, (size_t)k, false, &text, &n_text));
            print_string(&res, text, n_text);
            free(text);
            free(ids);
        }
        idx++;
    }
    append(&res, "]\n");
    fputs(res.data, stdout);
    free(res.data);
    cJSON_Delete(arr);
    evlm_tokenizer_free(tok);
    return 0;
}
