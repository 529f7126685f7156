/*
 * calib_set.c - the calibration prompts the offline passes share (calib_set.h): a text file in
 * chunks of ready ids, jsonl items as chat prompts (question + answer) with their images.
 * Not here: running them, statistics (calib.c), what each pass measures.
 */
#include "compress/calib_set.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "model/model.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static evlm_status add_prompt(evlm__calib_set *s, evlm_prompt *pr, const char *text,
                              const char *image) {
    size_t n = (size_t)s->n + 1;
    evlm_prompt **np = realloc(s->prompts, sizeof *np * n);
    if (np) s->prompts = np;
    char **nt = np ? realloc(s->texts, sizeof *nt * n) : NULL;
    if (nt) s->texts = nt;
    char **ni = nt ? realloc(s->images, sizeof *ni * n) : NULL;
    if (ni) s->images = ni;
    if (!ni) {
        evlm_prompt_free(pr);
        return evlm__fail(EVLM_ERR_NOMEM, "out of memory");
    }
    s->texts[s->n] = text ? strdup(text) : NULL;
    s->images[s->n] = image ? strdup(image) : NULL;
    s->prompts[s->n++] = pr;
    return EVLM_OK;
}

evlm_status evlm__calib_set_text(evlm__calib_set *s, evlm_model *m, const char *path,
                                 int max_tokens) {
    char *text;
    size_t len;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 30, &text, &len));
    int32_t *ids = NULL;
    size_t n = 0;
    evlm_status st = evlm_tokenize(m, text, len, false, true, &ids, &n);
    free(text);
    if (st == EVLM_OK && n < 2) st = evlm__fail(EVLM_ERR_ARG, "%s: fewer than 2 tokens", path);
    size_t use = n < (size_t)max_tokens ? n : (size_t)max_tokens;
    for (size_t at = 0; st == EVLM_OK && at + 1 < use; at += EVLM_CALIB_CHUNK) {
        evlm_prompt *pr;
        size_t len_c = use - at < EVLM_CALIB_CHUNK ? use - at : EVLM_CALIB_CHUNK;
        st = evlm__prompt_from_ids(ids + at, len_c, &pr);
        if (st == EVLM_OK) st = add_prompt(s, pr, NULL, NULL);
    }
    free(ids);
    return st;
}

evlm_status evlm__calib_set_jsonl(evlm__calib_set *s, evlm_model *m, const char *path,
                                  int max_items) {
    char *data;
    size_t len;
    EVLM_TRY(evlm_read_file(path, (size_t)1 << 30, &data, &len));
    char base_buf[4096];
    snprintf(base_buf, sizeof base_buf, "%s", path);
    const char *base = dirname(base_buf);
    evlm_status st = EVLM_OK;
    int line_no = 0, used = 0;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line && st == EVLM_OK && used < max_items;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        cJSON *item = cJSON_Parse(line);
        const cJSON *img = cJSON_GetObjectItem(item, "image"),
                    *qs = cJSON_GetObjectItem(item, "question");
        const cJSON *ans = cJSON_GetObjectItem(item, "answer");
        if (!item || !cJSON_IsString(qs) || (img && !cJSON_IsString(img)) ||
            (ans && !cJSON_IsString(ans))) {
            cJSON_Delete(item);
            st = evlm__fail(EVLM_ERR_FORMAT,
                            "%s:%d: expected {\"image\", \"question\", \"answer\"} strings", path,
                            line_no);
            break;
        }
        char img_path[8192];
        evlm_image_input in = {0};
        int n_img = img && evlm_model_has_vision(m) ? 1 : 0;
        if (n_img) {
            if (img->valuestring[0] == '/')
                snprintf(img_path, sizeof img_path, "%s", img->valuestring);
            else
                snprintf(img_path, sizeof img_path, "%s/%s", base, img->valuestring);
            in.path = img_path;
        }
        char *chat = NULL;
        st = evlm_chat_prompt(m, qs->valuestring, n_img, &chat);
        evlm_str full = {0};
        if (st == EVLM_OK) st = evlm_str_append(&full, chat, strlen(chat));
        if (st == EVLM_OK && ans)
            st = evlm_str_append(&full, ans->valuestring, strlen(ans->valuestring));
        evlm_prompt *pr = NULL;
        if (st == EVLM_OK) st = evlm_prompt_new(m, full.data, false, &in, n_img, &pr);
        if (st == EVLM_OK) st = add_prompt(s, pr, full.data, n_img ? img_path : NULL);
        if (st != EVLM_OK) evlm__fail_prefix(st, "%s:%d", path, line_no);
        free(chat);
        evlm_str_free(&full);
        cJSON_Delete(item);
        used++;
    }
    free(data);
    return st;
}

void evlm__calib_set_free(evlm__calib_set *s) {
    for (int i = 0; i < s->n; i++) {
        evlm_prompt_free(s->prompts[i]);
        free(s->texts[i]);
        free(s->images[i]);
    }
    free(s->prompts);
    free(s->texts);
    free(s->images);
    memset(s, 0, sizeof *s);
}
