/*
 * test_vlm_api.c - the public multimodal API on ../shared/fixtures/smolvlm-tiny: a raw RGB
 * buffer (a camera frame, with row padding) gives exactly the logits of the same image read
 * from its PNG; two images in one prompt; chat prompts with images; marker-count errors.
 */
#include "vision/image.h"
#include "test.h"

static float *prompt_logits(evlm_model *m, const char *text, const evlm_image_input *imgs,
                            int n_imgs, size_t *n_out, int *n_img_tokens) {
    evlm_prompt *p;
    CHECK_OK(evlm_prompt_new(m, text, false, imgs, n_imgs, &p));
    if (!p) return NULL;
    size_t n;
    evlm_prompt_ids(p, &n);
    *n_img_tokens = evlm_prompt_n_image_tokens(p);
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = (int)n;
    evlm_context *ctx;
    CHECK_OK(evlm_context_new(m, &cp, &ctx));
    float *lg = malloc(sizeof(float) * (size_t)evlm_model_n_vocab(m) * n);
    CHECK_OK(evlm_decode_prompt(ctx, p, lg, true));
    evlm_context_free(ctx);
    evlm_prompt_free(p);
    *n_out = n;
    return lg;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char dir[4096], png[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(png, sizeof png, "%s/ref_image.png", dir);
    evlm_model *m;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return test_done();
    CHECK(evlm_model_has_vision(m));
    const int V = evlm_model_n_vocab(m);

    /* the same image as a file and as a padded RGB buffer */
    evlm_image img;
    CHECK_OK(evlm_image_load(png, NULL, &img));
    size_t stride = (size_t)img.w * 3 + 5;
    uint8_t *frame = calloc(stride * (size_t)img.h, 1);
    for (int y = 0; y < img.h; y++)
        memcpy(frame + y * stride, img.rgb + (size_t)y * img.w * 3, (size_t)img.w * 3);
    const char *text =
        "<|im_start|>User:<image>What is the plate number?<end_of_utterance>\nAssistant:";
    evlm_image_input from_file = {.path = png};
    evlm_image_input from_rgb = {.rgb = frame, .width = img.w, .height = img.h, .stride = stride};
    size_t n1 = 0, n2 = 0;
    int t1 = 0, t2 = 0;
    float *a = prompt_logits(m, text, &from_file, 1, &n1, &t1);
    float *b = prompt_logits(m, text, &from_rgb, 1, &n2, &t2);
    CHECK(a && b && n1 == 120 && n1 == n2 && t1 == 80 && t2 == 80);
    if (a && b && n1 == n2) CHECK(memcmp(a, b, sizeof(float) * (size_t)V * n1) == 0);
    free(a);
    free(b);

    /* two images: both expanded, both encoded */
    evlm_image_input two[2] = {from_file, from_rgb};
    a = prompt_logits(m, "<image>and<image>?", two, 2, &n1, &t1);
    CHECK(a && t1 == 160);
    free(a);

    /* the chat template carries the images (the fixture has none: that is reported) */
    char *chat = NULL;
    CHECK(evlm_chat_prompt(m, "Hi", 1, &chat) == EVLM_ERR_UNSUPPORTED && !chat);
    char scenes[4096];
    snprintf(scenes, sizeof scenes, "%s/models/scenes-vlm", shared);
    evlm_model *sm = NULL;
    if (evlm_model_load(scenes, NULL, &sm) == EVLM_OK) {
        CHECK_OK(evlm_chat_prompt(sm, "What?", 1, &chat));
        CHECK(chat &&
              strcmp(chat, "<|im_start|>User:<image>What?<end_of_utterance>\nAssistant:") == 0);
        free(chat);
        evlm_model_free(sm);
    }

    /* marker count and empty inputs are errors */
    evlm_prompt *p = NULL;
    CHECK(evlm_prompt_new(m, "no marker", false, &from_file, 1, &p) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "0 <image> markers but 1 image") != NULL);
    evlm_image_input none = {0};
    CHECK(evlm_prompt_new(m, "<image>", false, &none, 1, &p) == EVLM_ERR_ARG);
    evlm_image_input huge = {.rgb = frame, .width = 100000, .height = 100000, .stride = 300000};
    CHECK(evlm_prompt_new(m, "<image>", false, &huge, 1, &p) == EVLM_ERR_RANGE);
    CHECK(strstr(evlm_last_error(), "pixel limit") != NULL);
    CHECK(p == NULL);

    free(frame);
    evlm_image_free(&img);
    evlm_model_free(m);
    return test_done();
}
