/*
 * test_idefics3_prompt.c - prompt expansion of the Idefics3 processor: the fixture's
 * input_ids (2x2 tiles + global image, 16 tokens each) exactly, the unsplit form, and the
 * marker-count errors.
 */
#include "core/file.h"
#include "core/json.h"
#include "vision/idefics3_prompt.h"
#include "tokenizer/tokenizer.h"
#include "test.h"

static void test_forms(void) {
    evlm_str s = {0};
    evlm_image_grid g = {0, 0};
    CHECK_OK(evlm_idefics3_expand("a<image>b", &g, 1, 2, &s));
    CHECK(s.data && strcmp(s.data, "a<fake_token_around_image><global-img><image><image>"
                                   "<fake_token_around_image>b") == 0);
    evlm_str_free(&s);
    evlm_image_grid g2 = {1, 2};
    CHECK_OK(evlm_idefics3_expand("<image>", &g2, 1, 1, &s));
    CHECK(s.data && strcmp(s.data, "<fake_token_around_image><row_1_col_1><image>"
                                   "<fake_token_around_image><row_1_col_2><image>\n\n"
                                   "<fake_token_around_image><global-img><image>"
                                   "<fake_token_around_image>") == 0);
    evlm_str_free(&s);
    evlm_image_grid two[2] = {{0, 0}, {0, 0}};
    CHECK(evlm_idefics3_expand("<image> and <image>", two, 1, 4, &s) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "2 <image> markers but 1 image") != NULL);
    CHECK(evlm_idefics3_expand("no marker", two, 2, 4, &s) == EVLM_ERR_ARG);
    CHECK_OK(evlm_idefics3_expand("<image> and <image>", two, 2, 1, &s));
    CHECK(evlm_idefics3_count_images(s.data) == 2);
    evlm_str_free(&s);
}

static void test_fixture(const char *shared) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(path, sizeof path, "%s/ref_outputs.json", dir);
    cJSON *meta;
    CHECK_OK(evlm_json_load(path, &meta));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    evlm_tokenizer *tok;
    CHECK_OK(evlm_tokenizer_load(path, &tok));
    if (!meta || !tok) return;
    const char *prompt = cJSON_GetObjectItem(meta, "prompt")->valuestring;
    int seq = cJSON_GetObjectItem(meta, "image_seq_len")->valueint;
    evlm_image_grid g = {2, 2}; /* 100x75 -> 128x96 -> 2x2 tiles of 64 */
    evlm_str s = {0};
    CHECK_OK(evlm_idefics3_expand(prompt, &g, 1, seq, &s));
    evlm_ids ids = {0};
    CHECK_OK(evlm_tokenizer_encode(tok, s.data, s.len, true, false, &ids));
    const cJSON *want = cJSON_GetObjectItem(meta, "input_ids");
    CHECKF((int)ids.len == cJSON_GetArraySize(want), "%zu ids, want %d", ids.len,
           cJSON_GetArraySize(want));
    int same = (int)ids.len == cJSON_GetArraySize(want);
    for (size_t i = 0; same && i < ids.len; i++)
        same = ids.data[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
    CHECK(same);
    evlm_ids_free(&ids);
    evlm_str_free(&s);
    evlm_tokenizer_free(tok);
    cJSON_Delete(meta);
}

int main(void) {
    test_forms();
    const char *shared = test_shared_dir();
    if (shared) test_fixture(shared);
    return test_done();
}
