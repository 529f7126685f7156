/*
 * targets.c - black-box (sequence-level) distillation targets: the teacher's greedy answers to
 * the questions of a .jsonl set, generated with the runtime as `evlm eval` generates them (the
 * chat template around the question and its image, greedy decoding, the answer text trimmed),
 * written as a copy of the set whose "answer" fields are the teacher's (image paths made
 * absolute, so the copy may live in another folder; other fields kept).
 * Not here: the training items built from the copy (data.c), when to generate (loop.c).
 */
#include "core/file.h"
#include "core/status.h"
#include "train/data.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

/* Appends s and a newline to the growing buffer *buf (len, cap). */
static evlm_status append(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 2 > *cap) {
        size_t c = (*cap ? 2 * *cap : 4096) + n;
        char *nb = realloc(*buf, c);
        if (!nb) return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[(*len)++] = '\n';
    (*buf)[*len] = 0;
    return EVLM_OK;
}

/* One item: the teacher's answer into item's "answer", the image path made absolute. */
static evlm_status answer_item(evlm_model *m, evlm_context *ctx, const evlm_gen_params *gp,
                               const char *path, const char *base, int line, cJSON *item) {
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(item, "image");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(item, "question");
    if (!cJSON_IsObject(item) || !cJSON_IsString(q) ||
        (img && !cJSON_IsNull(img) && !cJSON_IsString(img)))
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s:%d: expected a \"question\" string (and \"image\", a path, or none)",
                          path, line);
    char img_path[8192], abs_path[PATH_MAX];
    evlm_image_input in = {0};
    int n_img = 0;
    if (cJSON_IsString(img)) {
        if (img->valuestring[0] == '/')
            snprintf(img_path, sizeof img_path, "%s", img->valuestring);
        else
            snprintf(img_path, sizeof img_path, "%s/%s", base, img->valuestring);
        if (!realpath(img_path, abs_path))
            return evlm__fail(EVLM_ERR_IO, "%s:%d: image %s not found", path, line, img_path);
        in.path = abs_path;
        n_img = 1;
    }
    char *text;
    EVLM_TRY(evlm_chat_prompt(m, q->valuestring, n_img, &text));
    evlm_prompt *pr = NULL;
    evlm_status st = evlm_prompt_new(m, text, false, &in, n_img, &pr);
    free(text);
    if (st == EVLM_OK) st = evlm_context_truncate(ctx, 0);
    evlm_gen_result r = {0};
    if (st == EVLM_OK) st = evlm_generate(ctx, pr, gp, NULL, NULL, &r);
    if (st == EVLM_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(item, "answer");
        cJSON_AddStringToObject(item, "answer", trim(r.text));
        if (n_img) {
            cJSON_DeleteItemFromObjectCaseSensitive(item, "image");
            cJSON_AddStringToObject(item, "image", abs_path);
        }
    }
    evlm_gen_result_free(&r);
    evlm_prompt_free(pr);
    if (st != EVLM_OK) return evlm__fail_prefix(st, "%s:%d: the teacher's answer", path, line);
    return EVLM_OK;
}

evlm_status evlm_tdata_generate_targets(const char *teacher, const char *in_jsonl,
                                        const char *out_jsonl, int n_predict, int n_threads) {
    char *data;
    size_t len;
    EVLM_TRY(evlm_read_file(in_jsonl, (size_t)1 << 30, &data, &len));
    char base[4096];
    snprintf(base, sizeof base, "%s", in_jsonl);
    char *slash = strrchr(base, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(base, sizeof base, ".");
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = n_threads;
    evlm_model *m = NULL;
    evlm_context *ctx = NULL;
    evlm_status st = evlm_model_load(teacher, &mp, &m);
    evlm_context_params cp = evlm_context_default_params();
    if (st == EVLM_OK) st = evlm_context_new(m, &cp, &ctx);
    evlm_gen_params gp = evlm_gen_default_params(); /* greedy, as evlm eval */
    gp.n_predict = n_predict > 0 ? n_predict : 64;
    char *out = NULL;
    size_t out_len = 0, out_cap = 0;
    int line = 0, n = 0;
    for (char *p = data; st == EVLM_OK && p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        char *t = trim(p);
        p = nl ? nl + 1 : NULL;
        if (!*t) continue;
        cJSON *item = cJSON_Parse(t);
        if (!item) st = evlm__fail(EVLM_ERR_FORMAT, "%s:%d: not a JSON object", in_jsonl, line);
        if (st == EVLM_OK) st = answer_item(m, ctx, &gp, in_jsonl, base, line, item);
        char *s = st == EVLM_OK ? cJSON_PrintUnformatted(item) : NULL;
        if (st == EVLM_OK && !s) st = evlm__fail(EVLM_ERR_NOMEM, "out of memory");
        if (st == EVLM_OK) st = append(&out, &out_len, &out_cap, s);
        free(s);
        cJSON_Delete(item);
        n++;
    }
    if (st == EVLM_OK && n == 0) st = evlm__fail(EVLM_ERR_FORMAT, "%s: no items", in_jsonl);
    if (st == EVLM_OK) st = evlm_write_file_atomic(out_jsonl, out, out_len);
    free(out);
    free(data);
    if (ctx) evlm_context_free(ctx);
    if (m) evlm_model_free(m);
    return st;
}
