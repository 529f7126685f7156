/*
 * test_plan.c - the NPU fit planner (evlm_npu.h): the targets table, parameter counts against
 * the fixtures' safetensors and the SmolVLM-256M reference config, the calibration point
 * reproduced, the Llama-3.2-3B decode prediction within 30 % of the published number (computed
 * from factors that come from the 1B point only), hostile settings refused with messages naming
 * the limit, and the paper's 2.xB VLM verdicts with the limit that decides each.
 *
 * Not here: the CLI's output (tests/cli_plan.sh).
 */
#include "test.h"

#include "evlm_npu.h"
#include "npu/plan.h"

#include <string.h>

static const char *src_dir(void) {
    const char *s = getenv("EVLM_SRC");
    return s ? s : ".";
}

static void test_targets(void) {
    CHECK(evlm_npu_n_targets() == 3);
    const evlm_npu_target_info *t = evlm_npu_target_find("sa8295");
    CHECK(t && t->hexagon == 68 && !t->int4_block && t->kv_bits == 8 && t->vtcm_mib == 8);
    CHECK(t == evlm_npu_target_find("SA8295P"));
    CHECK(evlm_npu_target_find("sa8255") && evlm_npu_target_find("sa8255")->hexagon == 73);
    CHECK(evlm_npu_target_find("sa8775") && evlm_npu_target_find("sa8775")->hexagon == 73);
    CHECK(evlm_npu_target_find("sa8255")->int4_block && evlm_npu_target_find("sa8775")->int4_block);
    CHECK(!evlm_npu_target_find("sa9000") && !evlm_npu_target_find(NULL));
    /* every number has a source line */
    const char *fields[] = {"hexagon:",     "tops:",        "dram_gb_s:", "vtcm_mib:",
                            "graph_limit:", "addressable:", "kv_bits:",   "int4_block:"};
    for (size_t i = 0; i < evlm_npu_n_targets(); i++) {
        const evlm_npu_target_info *ti = evlm_npu_target_at(i);
        for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
            CHECKF(strstr(ti->sources, fields[f]) != NULL, "%s: no source for %s", ti->name,
                   fields[f]);
        CHECK(ti->tops > 0 && ti->dram_gb_s > 0 && ti->graph_limit > 0 &&
              ti->addressable >= ti->graph_limit);
    }
    CHECK(evlm_npu_target_at(99) == NULL);
    evlm_npu_precision p;
    CHECK(evlm_npu_precision_parse("w8a16", &p) == EVLM_OK && p == EVLM_NPU_W8A16);
    CHECK(evlm_npu_precision_parse("w4", &p) == EVLM_OK && p == EVLM_NPU_W4);
    CHECK(evlm_npu_precision_parse("int3", &p) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "w4a16") != NULL);
    CHECK(!strcmp(evlm_npu_precision_name(EVLM_NPU_W4A16), "w4a16"));
}

/* The config's count equals the tensors' (the fixtures' model.safetensors), part by part where
 * the expected numbers are derived by hand (comments). */
static void test_fixtures(const char *shared) {
    char path[4096];
    evlm_plan pl;
    evlm_plan_params p = evlm_plan_default_params();
    struct {
        const char *name;
        long long total, vision, connector;
    } fx[] = {
        /* llama-tiny: embed 680x64 (tied) + 2 x (q 64x64, k/v 32x64, o 64x64, mlp 3x160x64,
         * 2 norms) + final norm = 43520 + 2 x 43136 + 64 */
        {"llama-tiny", 129856, 0, 0},
        /* smolvlm-tiny: text 173376 (untied head); SigLIP: patch 3x8x8x48+48, positions 64x48,
         * 2 x 18960, post norm 96 = 50352; connector 48x4 -> 64 = 12288 */
        {"smolvlm-tiny", 236016, 50352, 12288},
        /* qwen2vl-tiny: text 131392 (q/k/v biases); ViT: patch 3x2x14x14x32, 2 x 8544 = 54720;
         * merger: ln, 128x128+128, 128x64+64 = 24832 */
        {"qwen2vl-tiny", 210944, 54720, 24832},
    };
    for (size_t i = 0; i < sizeof fx / sizeof *fx; i++) {
        snprintf(path, sizeof path, "%s/fixtures/%s", shared, fx[i].name);
        CHECK_OK(evlm_plan_model(path, &p, &pl));
        CHECKF(pl.params_total == fx[i].total, "%s: %lld params from the config, expected %lld",
               fx[i].name, (long long)pl.params_total, fx[i].total);
        CHECKF(pl.params_file == pl.params_total, "%s: %lld in the tensors, %lld from the config",
               fx[i].name, (long long)pl.params_file, (long long)pl.params_total);
        CHECK(pl.params_vision == fx[i].vision && pl.params_connector == fx[i].connector);
        CHECK(pl.fits && pl.n_parts == 1 && pl.parts[0].embedding && pl.parts[0].head);
        CHECK(pl.total_bytes ==
              pl.weights_bytes + pl.kv_bytes + pl.activation_bytes + pl.overhead_bytes);
        CHECK((pl.vision_weights_bytes > 0) == (fx[i].vision > 0));
        CHECK((pl.image_encode_ms > 0) == (fx[i].vision > 0));
    }
    /* the same folder at other precisions: fp16 weights are 2 bytes a parameter (a tied head is
     * stored twice); w8 about half that; the KV cache follows the target (8-bit) but fp16 */
    snprintf(path, sizeof path, "%s/fixtures/llama-tiny", shared);
    p.precision = EVLM_NPU_FP16;
    CHECK_OK(evlm_plan_model(path, &p, &pl));
    CHECK(pl.weights_bytes == 2 * (129856 + 680 * 64) && pl.kv_bits == 16);
    CHECK(pl.kv_bytes == 2LL * 2 * 2 * 16 * 2 * pl.n_ctx);
    p.precision = EVLM_NPU_W8A16;
    evlm_plan p8;
    CHECK_OK(evlm_plan_model(path, &p, &p8));
    CHECK(p8.kv_bits == 8 && p8.weights_bytes < pl.weights_bytes * 6 / 10);

    /* SmolVLM-256M-Instruct's real config (no weights offline): text 30 x (576x576 q, 2 x 576x192
     * k/v, 576x576 o, 3 x 576x1536 mlp, 2 norms) + 49280x576 embedding and untied head + norm =
     * 162,974,016; SigLIP 12 layers of 768 / 3072 on 1024 patches of 16 px = 86,433,024;
     * connector 768x16 -> 576 = 7,077,888; 256,484,928 in all */
    snprintf(path, sizeof path, "%s/reference/smolvlm-256m-instruct", shared);
    p = evlm_plan_default_params();
    CHECK_OK(evlm_plan_model(path, &p, &pl));
    CHECK(pl.params_total == 256484928LL && pl.params_vision == 86433024LL &&
          pl.params_connector == 7077888LL && pl.params_file == -1);
    CHECK(pl.fits && pl.n_vision_parts == 1 && pl.n_ctx == 4096);
    printf("SmolVLM-256M on sa8295 w4: %.1f MiB weights, %.1f tok/s, image %.0f ms\n",
           (double)pl.weights_bytes / (1 << 20), pl.decode_tok_s, pl.image_encode_ms);
}

static evlm_status plan_file(const char *name, const evlm_plan_params *p, evlm_plan *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/%s", src_dir(), name);
    return evlm_plan_model(path, p, out);
}

/* Published Qualcomm AI Hub numbers (quic/ai-hub-models perf.yaml, Genie on SA8295P ADP, w4):
 * Llama-3.2-1B, context 4096: 11.0 tok/s, TTFT 225 - 7200 ms (the calibration point);
 * Llama-3.2-3B, context 1024: 3.523 tok/s, TTFT 373.117 - 2984.936 ms (predicted). */
static void test_calibration(void) {
    const evlm_plan_calibration *cal = evlm_plan_calibration_point();
    CHECK(cal->eff_bandwidth > 0 && cal->eff_bandwidth < 1);
    CHECK(cal->eff_compute > 0 && cal->eff_compute < 1);
    CHECK(strstr(cal->source, "llama_v3_2_1b_instruct") != NULL);
    evlm_plan_params p = evlm_plan_default_params();
    p.target = "sa8295";
    p.precision = EVLM_NPU_W4;
    p.n_ctx = 4096;
    evlm_plan pl;
    CHECK_OK(plan_file("llama-3.2-1b-config.json", &p, &pl));
    /* reproduced, and the regimes the calibration assumes hold: decode is bandwidth-bound,
     * a prompt chunk compute-bound */
    CHECKF(fabs(pl.decode_tok_s / 11.0 - 1) < 1e-9, "1B decode %.4f tok/s", pl.decode_tok_s);
    CHECKF(fabs(pl.ttft_ms / 225.0 - 1) < 1e-9, "1B ttft %.3f ms", pl.ttft_ms);
    CHECKF(fabs(pl.ttft_full_ms / 7200.0 - 1) < 1e-9, "1B full ttft %.3f ms", pl.ttft_full_ms);
    double bw = pl.eff_bandwidth * pl.target->dram_gb_s * 1e9;
    double ops = pl.eff_compute * pl.peak_ops;
    CHECK(pl.flops_per_token / ops < pl.bytes_per_token / bw);
    CHECK(pl.flops_per_chunk / ops > pl.bytes_per_token / bw);
    CHECK(pl.params_total == 1235814400LL); /* Llama-3.2-1B: 1.24 B (tied) */
    CHECK(pl.fits && pl.n_parts == 1);

    /* the prediction: the factors come from the 1B row alone */
    p.n_ctx = 1024;
    CHECK_OK(plan_file("llama-3.2-3b-config.json", &p, &pl));
    CHECK(pl.eff_bandwidth == cal->eff_bandwidth && pl.eff_compute == cal->eff_compute);
    CHECK(pl.params_total == 3212749824LL); /* Llama-3.2-3B: 3.21 B (tied) */
    double err = pl.decode_tok_s / 3.523 - 1;
    double err_ttft = pl.ttft_ms / 373.117 - 1, err_full = pl.ttft_full_ms / 2984.936 - 1;
    printf("Llama-3.2-3B w4 on sa8295, ctx 1024: decode %.2f tok/s predicted, 3.523 published "
           "(%+.1f %%); ttft %.0f ms vs 373 (%+.1f %%), full %.0f ms vs 2985 (%+.1f %%)\n",
           pl.decode_tok_s, 100 * err, pl.ttft_ms, 100 * err_ttft, pl.ttft_full_ms, 100 * err_full);
    CHECKF(fabs(err) < 0.30, "3B decode prediction off by %+.1f %%", 100 * err);
    CHECK(pl.fits);
}

static void expect_err(const char *cfg, const evlm_plan_params *p, evlm_status st, const char *pat1,
                       const char *pat2) {
    evlm_plan pl;
    evlm_status s = plan_file(cfg, p, &pl);
    CHECKF(s == st, "expected status %d, got %d (%s)", (int)st, (int)s, evlm_last_error());
    CHECKF(strstr(evlm_last_error(), pat1) != NULL, "'%s' not in '%s'", pat1, evlm_last_error());
    if (pat2)
        CHECKF(strstr(evlm_last_error(), pat2) != NULL, "'%s' not in '%s'", pat2,
               evlm_last_error());
}

static void test_hostile(void) {
    const char *c1 = "llama-3.2-1b-config.json";
    evlm_plan_params p = evlm_plan_default_params();
    p.precision = EVLM_NPU_W4A16;
    expect_err(c1, &p, EVLM_ERR_UNSUPPORTED, "needs Hexagon V69 or later", "is V68");
    p.target = "sa8775"; /* V73 takes it */
    evlm_plan pl;
    CHECK_OK(plan_file(c1, &p, &pl));
    CHECK(pl.precision == EVLM_NPU_W4A16 && pl.fits);
    p = evlm_plan_default_params();
    p.target = "sa9000";
    expect_err(c1, &p, EVLM_ERR_ARG, "unknown target 'sa9000'", "sa8295");
    p = evlm_plan_default_params();
    p.n_ctx = 131072; /* the model takes it, the memory does not */
    expect_err(c1, &p, EVLM_ERR_RANGE, "NPU-addressable memory", "largest context that fits");
    p.n_ctx = 200000;
    expect_err(c1, &p, EVLM_ERR_RANGE, "max_position_embeddings", NULL);
    p.n_ctx = 64;
    p.ar = 128;
    expect_err(c1, &p, EVLM_ERR_ARG, "prompt graph length 128", NULL);
    p = evlm_plan_default_params();
    p.n_ctx = -5;
    expect_err(c1, &p, EVLM_ERR_ARG, "context -5", NULL);
    p = evlm_plan_default_params();
    p.precision = (evlm_npu_precision)42;
    expect_err(c1, &p, EVLM_ERR_ARG, "not a precision", NULL);
    /* the largest context the plan reports is one that fits, and one more token does not */
    p = evlm_plan_default_params();
    CHECK_OK(plan_file(c1, &p, &pl));
    int mc = pl.max_ctx;
    p.n_ctx = mc;
    CHECK_OK(plan_file(c1, &p, &pl));
    CHECK(pl.fits);
    p.n_ctx = mc + 1;
    expect_err(c1, &p, EVLM_ERR_RANGE, "NPU-addressable", NULL);

    /* malformed or hostile config text */
    const char *bad[] = {
        "",
        "{",
        "[]",
        "{\"hidden_size\": 64}",
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 160, "
        "\"num_hidden_layers\": 1000000000, \"num_attention_heads\": 4, \"vocab_size\": 680}",
        "{\"model_type\": \"llama\", \"hidden_size\": -64, \"intermediate_size\": 160, "
        "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 680}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        evlm_status s = evlm_plan_config("bad.json", bad[i], strlen(bad[i]), NULL, &pl);
        CHECKF(s != EVLM_OK && *evlm_last_error(), "bad config %zu accepted", i);
    }
    CHECK(evlm_plan_model("/nonexistent/config.json", NULL, &pl) == EVLM_ERR_IO);
    CHECK(evlm_plan_config("x", NULL, 0, NULL, &pl) == EVLM_ERR_ARG);

    /* weights that cannot fit are a plan (fits = false, the limit named), not an error: a
     * 32-layer, 8192-wide decoder in fp16 (about 52 GiB) */
    const char *big = "{\"model_type\": \"llama\", \"hidden_size\": 8192, "
                      "\"intermediate_size\": 28672, \"num_hidden_layers\": 32, "
                      "\"num_attention_heads\": 64, \"num_key_value_heads\": 8, "
                      "\"vocab_size\": 32000, \"max_position_embeddings\": 4096}";
    p = evlm_plan_default_params();
    p.precision = EVLM_NPU_FP16;
    CHECK_OK(evlm_plan_config("big", big, strlen(big), &p, &pl));
    CHECK(!pl.fits && strstr(pl.why, "NPU-addressable") && pl.max_ctx == 0);
    CHECK(pl.n_parts > 1);
    int next = 0; /* the parts hold the layers in order, each part under the graph limit */
    for (int i = 0; i < pl.n_parts && i < EVLM_PLAN_MAX_PARTS; i++) {
        CHECK(pl.parts[i].bytes <= pl.graph_limit);
        if (pl.parts[i].first_layer < 0) continue;
        CHECK(pl.parts[i].first_layer == next);
        next = pl.parts[i].last_layer + 1;
    }
    CHECK(next == 32 && pl.parts[0].embedding && pl.parts[pl.n_parts - 1].head);
}

/* The paper's 2.xB VLM on SA8295P: bf16 5.3 GB and int8 2.4 GB did not run, int4 1.7 GB ran in
 * 1.9 GB at 70 % NPU use. The planner's limits (targets.c, with sources): 3.75 GB NPU-
 * addressable per session ([powerserve]) and about 2 GB per graph ([issue19]; the exact figure
 * and whether the paper split its graphs are not in the documents found). The sizes are the
 * paper's, in GB (1e9 bytes); the paper's KV cache and activations are unknown, so the totals
 * are the weights alone (a lower bound), and the int4 total the 1.9 GB it ran in. */
static void test_paper_verdicts(void) {
    const evlm_npu_target_info *t = evlm_npu_target_find("sa8295");
    char why[256];
    struct {
        const char *what;
        double weights, total;
    } runs[] = {{"bf16", 5.3e9, 5.3e9}, {"int8", 2.4e9, 2.4e9}, {"int4", 1.7e9, 1.9e9}};
    bool one_graph[3], split_ok[3];
    for (int i = 0; i < 3; i++) {
        int n_parts = (int)ceil(runs[i].weights / (double)t->graph_limit);
        one_graph[i] = evlm__plan_decide(t, (int64_t)runs[i].total, n_parts, 0, 1, why, sizeof why);
        printf("paper %s, one graph: %s (%s)\n", runs[i].what, one_graph[i] ? "fits" : "no", why);
        split_ok[i] = evlm__plan_decide(t, (int64_t)runs[i].total, n_parts, 0, 0, why, sizeof why);
        printf("paper %s, split into %d parts: %s (%s)\n", runs[i].what, n_parts,
               split_ok[i] ? "fits" : "no", why);
    }
    /* bf16 (5.3 GB): decided by the NPU-addressable memory, split or not */
    CHECK(!one_graph[0] && !split_ok[0]);
    evlm__plan_decide(t, (int64_t)5.3e9, 3, 0, 0, why, sizeof why);
    CHECK(strstr(why, "NPU-addressable") != NULL);
    /* int8 (2.4 GB): decided by the per-graph limit, and only for a single-graph deployment;
     * split into two parts it fits the addressable memory, so the documents found do not decide
     * the paper's int8 verdict unless the paper ran one graph */
    CHECK(!one_graph[1] && split_ok[1]);
    evlm__plan_decide(t, (int64_t)2.4e9, 2, 0, 1, why, sizeof why);
    CHECK(strstr(why, "per-graph limit") != NULL);
    printf("NOTE: the paper's int8 verdict follows from the documented limits only if its "
           "deployment was one graph; the documents found do not say\n");
    /* int4 (1.7 GB, ran in 1.9 GB): under both limits as one graph */
    CHECK(one_graph[2] && split_ok[2]);
}

int main(void) {
    test_targets();
    test_calibration();
    test_hostile();
    test_paper_verdicts();
    const char *shared = test_shared_dir();
    if (shared) test_fixtures(shared);
    return test_done();
}
