/*
 * test_gguf_model.c - models load from one GGUF file exactly as from their Hugging Face folder:
 * each fixture (llama-tiny, smolvlm-tiny with its image, qwen2vl-tiny with its image) exported
 * with its dtypes kept gives bit-identical prompt logits and the same chat template / tokens;
 * exported with Q8_0 matrices (int8 activations) it stays within 0.15 * max(1, max|logit|) of the
 * float model (random-weight fixtures are a harsh case; quality on trained models is in
 * COMPRESSION.md).
 */
#include "io/gguf_names.h"
#include "test.h"
#include "test_ref.h"

#include <unistd.h>

static evlm_type all_q8(void *ctx, const char *name, const evlm_tensor *t,
                        const evlm_tensor **src) {
    (void)src;
    (void)ctx;
    (void)name;
    if (t->n_dims == 2 && t->ne[0] % 32 == 0 &&
        (t->type == EVLM_TYPE_BF16 || t->type == EVLM_TYPE_F16 || t->type == EVLM_TYPE_F32))
        return EVLM_TYPE_Q8_0;
    return t->type;
}

static float *logits_of(const char *model, const char *text, const char *image, size_t *n_out,
                        int *V) {
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(model, NULL, &m));
    if (!m) return NULL;
    *V = evlm_model_n_vocab(m);
    evlm_image_input img = {.path = image};
    evlm_prompt *p = NULL;
    CHECK_OK(evlm_prompt_new(m, text, false, &img, image ? 1 : 0, &p));
    float *lg = NULL;
    if (p) {
        size_t n;
        evlm_prompt_ids(p, &n);
        evlm_context_params cp = evlm_context_default_params();
        cp.n_ctx = (int)n + 4;
        evlm_context *c;
        CHECK_OK(evlm_context_new(m, &cp, &c));
        lg = malloc(sizeof(float) * n * (size_t)*V);
        CHECK_OK(evlm_decode_prompt(c, p, lg, true));
        *n_out = n;
        evlm_context_free(c);
        evlm_prompt_free(p);
    }
    evlm_model_free(m);
    return lg;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    static const struct {
        const char *name, *prompt;
        bool image;
    } cases[] = {
        {"llama-tiny", "<|im_start|>user\nWhat is a license?<|im_end|>\n", false},
        {"smolvlm-tiny",
         "<|im_start|>User:<image>Describe the image.<end_of_utterance>\nAssistant:", true},
        {"qwen2vl-tiny",
         "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n",
         true},
    };
    char tmp[] = "/tmp/evlm_ggufm_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char dir[4096], png[4200], out[4200], outq[4200];
        snprintf(dir, sizeof dir, "%s/fixtures/%s", shared, cases[c].name);
        snprintf(png, sizeof png, "%s/ref_image.png", dir);
        snprintf(out, sizeof out, "%s/%s.gguf", tmp, cases[c].name);
        snprintf(outq, sizeof outq, "%s/%s-q8.gguf", tmp, cases[c].name);
        CHECK_OK(evlm_gguf_export_hf(dir, out, NULL, NULL, NULL, NULL));
        CHECK_OK(evlm_gguf_export_hf(dir, outq, all_q8, NULL, NULL, NULL));
        size_t n1 = 0, n2 = 0, n3 = 0;
        int V1 = 0, V2 = 0, V3 = 0;
        const char *img = cases[c].image ? png : NULL;
        float *a = logits_of(dir, cases[c].prompt, img, &n1, &V1);
        float *b = logits_of(out, cases[c].prompt, img, &n2, &V2);
        float *q = logits_of(outq, cases[c].prompt, img, &n3, &V3);
        CHECKF(a && b && n1 == n2 && V1 == V2 && !memcmp(a, b, sizeof(float) * n1 * (size_t)V1),
               "%s: GGUF logits differ from the folder's", cases[c].name);
        if (a && q && n1 == n3) {
            float tol = 0.15f * fmaxf(1.0f, max_abs(a, n1 * (size_t)V1)),
                  d = max_diff(a, q, n1 * (size_t)V1);
            printf("%s: Q8_0 GGUF max |logit diff| = %.3g (bound %.3g)\n", cases[c].name, (double)d,
                   (double)tol);
            CHECK(d <= tol);
        }
        free(a);
        free(b);
        free(q);
        unlink(out);
        unlink(outq);
    }
    rmdir(tmp);
    /* not a model */
    evlm_model *m = NULL;
    CHECK(evlm_model_load("/nonexistent/model.gguf", NULL, &m) != EVLM_OK && !m);
    return test_done();
}
