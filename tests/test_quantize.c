/*
 * test_quantize.c - the quantization pipeline (evlm_compress.h) on the real trained
 * aidreams260K model (llama2.c, converted here) with ../shared/fixtures/corpus.txt as
 * calibration text:
 *   - q8_0 round-to-nearest: the file loads, its KL vs float is tiny, the matrices are Q8_0;
 *   - q4_0: GPTQ's KL is at least 30 % below round-to-nearest's (the target), AWQ's is
 *     not above it, AWQ's folded norms are stored as F32;
 *   - --target-bpw between q4_0 and q8_0 raises some matrices to q8_0 and stays within budget;
 *     --max-size likewise; a budget below q4_0 is refused;
 *   - --keep pins a tensor's type; calibration-free AWQ is refused with a message;
 *   - output of greedy decoding from the q8_0 file equals the float model's on a story prompt
 *     for the first tokens (a trained model has large top-1 margins).
 */
#include "evlm_compress.h"
#include "io/llama2c.h"
#include "test.h"

#include <unistd.h>

static char g_tmp[] = "/tmp/evlm_quant_XXXXXX";

static evlm_status run(const char *in, const char *out, evlm_type t, evlm_qmethod meth,
                       const char *calib, double bpw, double mb, const evlm_quant_keep *keep,
                       int n_keep, evlm_quantize_report *r) {
    evlm_quantize_params p = evlm_quantize_default_params();
    p.type = t;
    p.method = meth;
    p.calib_text = calib;
    p.calib_tokens = 1024;
    p.target_bpw = bpw;
    p.max_size_mb = mb;
    p.keep = keep;
    p.n_keep = n_keep;
    return evlm_quantize(in, out, &p, r);
}

static const evlm_quant_tensor_report *tensor(const evlm_quantize_report *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->t[i].name, name)) return &r->t[i];
    return NULL;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    if (!mkdtemp(g_tmp)) return 1;
    char model[4200], mb[4200], tb[4200], corpus[4200], out[4300];
    snprintf(mb, sizeof mb, "%s/reference/llama2c/aidreams260K.bin", shared);
    snprintf(tb, sizeof tb, "%s/reference/llama2c/tok512.bin", shared);
    snprintf(corpus, sizeof corpus, "%s/fixtures/corpus.txt", shared);
    snprintf(model, sizeof model, "%s/aid", g_tmp);
    CHECK_OK(evlm_llama2c_convert(mb, tb, model));

    /* q8_0, round to nearest */
    evlm_quantize_report r;
    snprintf(out, sizeof out, "%s/q8.gguf", g_tmp);
    CHECK_OK(run(model, out, EVLM_TYPE_Q8_0, EVLM_QMETHOD_RTN, corpus, 0, 0, NULL, 0, &r));
    printf("q8_0 rtn: %.3f bpw, KL %.6f\n", r.bpw, r.kl_mean);
    /* the report is optional */
    snprintf(out, sizeof out, "%s/q8-noreport.gguf", g_tmp);
    CHECK_OK(run(model, out, EVLM_TYPE_Q8_0, EVLM_QMETHOD_RTN, NULL, 0, 0, NULL, 0, NULL));
    CHECK(r.kl_mean >= 0 && r.kl_mean < 0.002);
    const evlm_quant_tensor_report *wq = tensor(&r, "model.layers.0.self_attn.q_proj.weight");
    CHECK(wq && wq->to == EVLM_TYPE_Q8_0 && wq->rel_err >= 0 && wq->rel_err < 1e-3);
    evlm_quantize_report_free(&r);

    /* greedy continuation from the file */
    evlm_model *f = NULL, *q = NULL;
    CHECK_OK(evlm_model_load(model, NULL, &f));
    CHECK_OK(evlm_model_load(out, NULL, &q));
    if (f && q) {
        int32_t *ids[2];
        int n[2];
        evlm_model *ms[2] = {f, q};
        for (int k = 0; k < 2; k++) {
            evlm_prompt *p;
            CHECK_OK(evlm_prompt_new(ms[k], "Once upon a time", true, NULL, 0, &p));
            evlm_context *c;
            CHECK_OK(evlm_context_new(ms[k], NULL, &c));
            evlm_gen_params gp = evlm_gen_default_params();
            gp.n_predict = 12;
            evlm_gen_result res;
            CHECK_OK(evlm_generate(c, p, &gp, NULL, NULL, &res));
            ids[k] = res.ids;
            n[k] = res.n_gen;
            res.ids = NULL;
            evlm_gen_result_free(&res);
            evlm_context_free(c);
            evlm_prompt_free(p);
        }
        CHECK(n[0] == n[1] && !memcmp(ids[0], ids[1], sizeof(int32_t) * (size_t)n[0]));
        free(ids[0]);
        free(ids[1]);
    }
    evlm_model_free(f);
    evlm_model_free(q);

    /* q4_0: the calibrated methods beat round to nearest by 30 % */
    double kl[3];
    const char *names[3] = {"rtn", "awq", "gptq"};
    for (int meth = 0; meth < 3; meth++) {
        snprintf(out, sizeof out, "%s/q4-%s.gguf", g_tmp, names[meth]);
        CHECK_OK(run(model, out, EVLM_TYPE_Q4_0, (evlm_qmethod)meth, corpus, 0, 0, NULL, 0, &r));
        kl[meth] = r.kl_mean;
        printf("q4_0 %s: %.3f bpw, KL %.5f\n", names[meth], r.bpw, r.kl_mean);
        if (meth == EVLM_QMETHOD_AWQ) {
            const evlm_quant_tensor_report *nw =
                tensor(&r, "model.layers.0.input_layernorm.weight");
            CHECK(nw && nw->to == EVLM_TYPE_F32);
        }
        evlm_quantize_report_free(&r);
    }
    /* the target: AWQ or GPTQ at least 30 % below RTN; AWQ is never worse here (on this
     * 64-wide model it gains little; on the scene VLM it halves the KL, see COMPRESSION.md) */
    CHECKF(kl[1] <= kl[0], "awq KL %.5f vs rtn %.5f", kl[1], kl[0]);
    CHECKF(kl[2] < 0.7 * kl[0], "gptq KL %.5f vs rtn %.5f", kl[2], kl[0]);

    /* mixed precision: a budget halfway between all-q4_0 and all-q8_0 (some tensors stay F32:
     * aidreams' FFN width is not a multiple of 32) */
    double bpw4, bpw8;
    snprintf(out, sizeof out, "%s/mix.gguf", g_tmp);
    CHECK_OK(run(model, out, EVLM_TYPE_Q4_0, EVLM_QMETHOD_RTN, NULL, 0, 0, NULL, 0, &r));
    bpw4 = r.bpw;
    evlm_quantize_report_free(&r);
    CHECK_OK(run(model, out, EVLM_TYPE_Q8_0, EVLM_QMETHOD_RTN, NULL, 0, 0, NULL, 0, &r));
    bpw8 = r.bpw;
    evlm_quantize_report_free(&r);
    double target = 0.5 * (bpw4 + bpw8);
    CHECK_OK(run(model, out, EVLM_TYPE_Q4_0, EVLM_QMETHOD_RTN, corpus, target, 0, NULL, 0, &r));
    int raised = 0, measured = 0;
    for (int i = 0; i < r.n; i++) {
        raised += r.t[i].to == EVLM_TYPE_Q8_0;
        measured += r.t[i].kl >= 0;
    }
    printf("target %.3f bpw: %.3f bpw, %d raised to q8_0, %d measured, KL %.5f\n", target, r.bpw,
           raised, measured, r.kl_mean);
    CHECK(r.bpw <= target && raised > 0 && measured > 0 && r.kl_mean < kl[0]);
    size_t mix_bytes = r.out_bytes;
    evlm_quantize_report_free(&r);
    CHECK_OK(run(model, out, EVLM_TYPE_Q4_0, EVLM_QMETHOD_RTN, corpus, 0, (double)mix_bytes / 1e6,
                 NULL, 0, &r));
    CHECK(r.out_bytes <= mix_bytes);
    evlm_quantize_report_free(&r);
    CHECK(run(model, out, EVLM_TYPE_Q4_0, EVLM_QMETHOD_RTN, corpus, bpw4 - 0.5, 0, NULL, 0, &r) ==
          EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "budget") != NULL);

    /* --keep, and methods that need calibration */
    evlm_quant_keep keep[1] = {{"*.mlp.down_proj.weight", EVLM_TYPE_F16}};
    CHECK_OK(run(model, out, EVLM_TYPE_Q4_0, EVLM_QMETHOD_RTN, NULL, 0, 0, keep, 1, &r));
    const evlm_quant_tensor_report *down = tensor(&r, "model.layers.2.mlp.down_proj.weight");
    CHECK(down && down->to == EVLM_TYPE_F16 && !strcmp(down->method, "keep"));
    evlm_quantize_report_free(&r);
    CHECK(run(model, out, EVLM_TYPE_Q4_0, EVLM_QMETHOD_AWQ, NULL, 0, 0, NULL, 0, &r) ==
          EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "calib") != NULL);

    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    CHECK(system(cmd) == 0);
    return test_done();
}
