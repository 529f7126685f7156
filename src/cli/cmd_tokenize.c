/*
 * cmd_tokenize.c - `evlm tokenize -m DIR [--decode]`: a JSON array of strings on stdin becomes
 * a JSON array of id arrays on stdout (special tokens in the text parsed, nothing added);
 * with --decode, id arrays become strings (special tokens kept, as tokenizers' decode does).
 */
#include "cli/cli.h"
#include "core/file.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void append(evlm_str *out, const char *s) {
    if (evlm_str_appendz(out, s) != EVLM_OK) cli_die("out of memory");
}

static void print_string(evlm_str *dst, const char *s, size_t len) {
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
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) dir = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--decode")) decode = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: evlm tokenize -m DIR [--decode] < input.json\n"
                   "  stdin: [\"text\", ...]  ->  stdout: [[ids], ...]\n"
                   "  --decode: stdin [[ids], ...]  ->  stdout [\"text\", ...]\n");
            return 0;
        } else cli_die("unknown option '%s'", argv[i]);
    }
    if (!dir) cli_die("no model given (-m DIR)");
    char path[4096];
    cli_check(evlm_path_join(path, sizeof path, dir, "tokenizer.json"));
    evlm_tokenizer *tok;
    cli_check(evlm_tokenizer_load(path, &tok));

    size_t len;
    char *in = cli_read_stdin(&len);
    cJSON *arr = cJSON_ParseWithLength(in, len);
    free(in);
    if (!arr || !cJSON_IsArray(arr))
        cli_die("standard input: expected a JSON array of %s", decode ? "id arrays" : "strings");

    evlm_str res = {0};
    char num[16];
    append(&res, "[");
    int idx = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        if (idx) append(&res, ", ");
        if (!decode) {
            if (!cJSON_IsString(item)) cli_die("standard input: item %d is not a string", idx);
            evlm_ids ids = {0};
            cli_check(evlm_tokenizer_encode(tok, item->valuestring, strlen(item->valuestring), true,
                                            false, &ids));
            append(&res, "[");
            for (size_t k = 0; k < ids.len; k++) {
                snprintf(num, sizeof num, k ? ", %d" : "%d", ids.data[k]);
                append(&res, num);
            }
            append(&res, "]");
            evlm_ids_free(&ids);
        } else {
            if (!cJSON_IsArray(item)) cli_die("standard input: item %d is not an array of ids", idx);
            evlm_ids ids = {0};
            const cJSON *v;
            cJSON_ArrayForEach(v, item) {
                double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
                if (d < 0 || d > 2147483647.0 || d != (double)(int32_t)d)
                    cli_die("standard input: item %d holds a value that is not a token id", idx);
                if (evlm_ids_push(&ids, (int32_t)d) != EVLM_OK) cli_die("out of memory");
            }
            evlm_str s = {0};
            cli_check(evlm_tokenizer_decode(tok, ids.data, ids.len, false, &s));
            print_string(&res, s.data ? s.data : "", s.len);
            evlm_str_free(&s);
            evlm_ids_free(&ids);
        }
        idx++;
    }
    append(&res, "]\n");
    fputs(res.data, stdout);
    evlm_str_free(&res);
    cJSON_Delete(arr);
    evlm_tokenizer_free(tok);
    return 0;
}
