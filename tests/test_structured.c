/*
 * test_structured.c - structured pruning (evlm_prune_structured) on the tiny fixtures of
 * ../shared (llama-tiny: Llama, 4 heads / 2 kv; qwen2vl-tiny: Qwen2 with q / k / v biases;
 * smolvlm-tiny: the SigLIP tower) and a synthesized Qwen2 of 6 heads / 2 kv groups of 3:
 *   - pruning nothing gives the same logits bit for bit (folder and GGUF);
 *   - pruning heads, FFN channels and layers gives a folder whose logits equal evlm's forward of
 *     the masked model: the original with the removed heads' o_proj columns, the removed
 *     channels' down_proj columns and removed layers' o_proj / down_proj zeroed (built here
 *     from the report's masks, written with the same folder writer). Zero products add exact
 *     zeros to a fused multiply-add chain, so the logits are compared bit for bit;
 *   - GQA: heads inside each group (kv heads kept) and whole groups (k / v rows removed with
 *     their query heads); the output config and tensor shapes say so;
 *   - config.json of the output (counts, head_dim written, layer_types trimmed);
 *   - ratio: at least that fraction of the decoder's non-embedding parameters removed;
 *   - the vision tower's FFN and layers;
 *   - hostile settings (more heads than exist, heads not fitting the kv groups, ratio >= 1,
 *     ratio with counts, no calibration, vision heads, an existing output) get clear errors.
 */
#include "core/file.h"
#include "core/json.h"
#include "evlm_compress.h"
#include "io/hf_export.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "test.h"

#include <unistd.h>

static char g_tmp[] = "/tmp/evlm_struct_XXXXXX";
static char g_corpus[4200];
static const char *k_text = "Once upon a time there was a little robot who liked to count.";

/* all logits of k_text through model dir (raw, no chat template); n_out: rows x vocab */
static float *logits_of(const char *dir, size_t *n_out) {
    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = 2;
    evlm_model *m = NULL;
    evlm_status st = evlm_model_load(dir, &mp, &m);
    CHECKF(st == EVLM_OK, "%s: %s", dir, evlm_last_error());
    if (st != EVLM_OK) return NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(evlm_tokenize(m, k_text, strlen(k_text), false, true, &ids, &n));
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = 128;
    evlm_context *c = NULL;
    CHECK_OK(evlm_context_new(m, &cp, &c));
    const int V = evlm_model_n_vocab(m);
    float *lg = malloc(sizeof(float) * (size_t)V * n);
    CHECK_OK(evlm_decode(c, ids, (int)n, lg, true));
    *n_out = (size_t)V * n;
    free(ids);
    evlm_context_free(c);
    evlm_model_free(m);
    return lg;
}

static double compare(const char *a, const char *b, bool *same) {
    size_t na = 0, nb = 0;
    float *x = logits_of(a, &na), *y = logits_of(b, &nb);
    double worst = -1;
    *same = false;
    if (x && y && na == nb) {
        worst = 0;
        for (size_t i = 0; i < na; i++) {
            double d = fabs((double)x[i] - (double)y[i]);
            worst = d > worst ? d : worst;
        }
        *same = !memcmp(x, y, sizeof(float) * na);
    }
    free(x);
    free(y);
    return worst;
}

/* layer index and the rest of a "...layers.<i>.<rest>" decoder tensor name (prefix given) */
static int layer_of(const char *name, const char *prefix, const char **rest) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) || strncmp(name + pl, "layers.", 7)) return -1;
    char *end;
    long l = strtol(name + pl + 7, &end, 10);
    if (*end != '.') return -1;
    *rest = end + 1;
    return (int)l;
}

static void zero_cols(evlm_tensor *t, const uint8_t *keep, int div, bool all) {
    size_t es = evlm_type_size(t->type);
    for (int64_t r = 0; r < t->ne[1]; r++)
        for (int64_t c = 0; c < t->ne[0]; c++)
            if (all || !keep[c / div]) memset((char *)t->data + r * t->nb[1] + c * es, 0, es);
}

/* The masked model of src for report r into dst (head_dim hd, text prefix). */
static void write_masked(const char *src, const char *dst, const evlm_prune_structured_report *r,
                         int hd, const char *prefix) {
    evlm_weights *w = NULL;
    CHECK_OK(evlm_weights_open(src, &w));
    if (!w) return;
    size_t n = evlm_weights_count(w);
    evlm_tensor *t = calloc(n, sizeof *t);
    void **bufs = calloc(n, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        t[i] = *evlm_weights_at(w, i);
        size_t bytes = evlm_tensor_nbytes(&t[i]);
        bufs[i] = malloc(bytes + 1);
        memcpy(bufs[i], t[i].data, bytes);
        t[i].data = bufs[i];
        const char *rest;
        int l = layer_of(t[i].name, prefix, &rest);
        if (l < 0 || l >= r->layers_before) continue;
        const evlm_prune_layer_report *x = &r->layer[l];
        if (!strcmp(rest, "self_attn.o_proj.weight"))
            zero_cols(&t[i], x->head_mask, hd, !x->kept);
        else if (!strcmp(rest, "mlp.down_proj.weight"))
            zero_cols(&t[i], x->ffn_mask, 1, !x->kept);
    }
    char cp[4300], *conf = NULL;
    size_t len;
    snprintf(cp, sizeof cp, "%s/config.json", src);
    CHECK_OK(evlm_read_file(cp, 1 << 20, &conf, &len));
    CHECK_OK(evlm_hf_export(src, dst, conf, t, n));
    free(conf);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(t);
    evlm_weights_free(w);
}

static int cfg_int(const char *dir, const char *block, const char *key) {
    char p[4300], *txt = NULL;
    size_t len;
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (evlm_read_file(p, 1 << 20, &txt, &len) != EVLM_OK) return -1;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *o = block ? cJSON_GetObjectItem(root, block) : root;
    const cJSON *v = o ? cJSON_GetObjectItem(o, key) : NULL;
    int x = cJSON_IsNumber(v) ? v->valueint : -1;
    cJSON_Delete(root);
    return x;
}

static int64_t tensor_rows(const char *dir, const char *name, int dim) {
    evlm_weights *w = NULL;
    if (evlm_weights_open(dir, &w) != EVLM_OK) return -1;
    const evlm_tensor *t = evlm_weights_find(w, name);
    int64_t v = t ? t->ne[dim] : -1;
    evlm_weights_free(w);
    return v;
}

static evlm_status prune(const char *in, const char *out, int heads, int ffn, int layers,
                         double ratio, evlm_prune_structured_report *r) {
    evlm_prune_structured_params p = evlm_prune_structured_default_params();
    p.heads = heads;
    p.ffn = ffn;
    p.layers = layers;
    p.ratio = ratio;
    p.calib_text = g_corpus;
    p.calib_tokens = 512;
    p.n_threads = 2;
    return evlm_prune_structured(in, out, &p, r);
}

/* prune, then the masked model, then both logits bit for bit */
static void masked_case(const char *what, const char *in, int heads, int ffn, int layers,
                        double ratio, const char *prefix, int hd) {
    char out[4400], masked[4400];
    snprintf(out, sizeof out, "%s/%s", g_tmp, what);
    snprintf(masked, sizeof masked, "%s/%s-masked", g_tmp, what);
    evlm_prune_structured_report r;
    evlm_status st = prune(in, out, heads, ffn, layers, ratio, &r);
    CHECKF(st == EVLM_OK, "%s: %s", what, evlm_last_error());
    if (st != EVLM_OK) return;
    write_masked(in, masked, &r, hd, prefix);
    bool same;
    double d = compare(out, masked, &same);
    printf("%s: layers %d -> %d, heads %d -> %d (kv %d -> %d), ffn %d -> %d, params %lld -> "
           "%lld; vs masked: max |diff| %.3g%s\n",
           what, r.layers_before, r.layers_after, r.heads_before, r.heads_after, r.kv_heads_before,
           r.kv_heads_after, r.ffn_before, r.ffn_after, (long long)r.params_before,
           (long long)r.params_after, d, same ? " (bitwise)" : "");
    CHECKF(same, "%s: pruned logits differ from the masked model's by %g", what, d);
    CHECK(cfg_int(out, NULL, "num_hidden_layers") == r.layers_after ||
          cfg_int(out, "text_config", "num_hidden_layers") == r.layers_after);
    if (ratio > 0)
        CHECKF(r.params_after <= (int64_t)((1 - ratio) * (double)r.params_before + 0.5),
               "%s: %lld of %lld left", what, (long long)r.params_after,
               (long long)r.params_before);
    evlm_prune_structured_report_free(&r);
}

static void expect_error(const char *what, const char *in, int heads, int ffn, int layers,
                         double ratio, const char *calib, int vision_heads, const char *needle) {
    char out[4400];
    snprintf(out, sizeof out, "%s/bad", g_tmp);
    evlm_prune_structured_params p = evlm_prune_structured_default_params();
    p.heads = heads;
    p.ffn = ffn;
    p.layers = layers;
    p.ratio = ratio;
    p.calib_text = calib;
    p.calib_tokens = 256;
    p.vision_heads = vision_heads;
    evlm_prune_structured_report r;
    evlm_status st = evlm_prune_structured(in, out, &p, &r);
    CHECKF(st != EVLM_OK && strstr(evlm_last_error(), needle), "%s: status %d, '%s'", what, (int)st,
           evlm_last_error());
    CHECK(!evlm_file_exists(out));
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    if (!mkdtemp(g_tmp)) return 1;
    char llama[4200], qwen2vl[4200], smol[4200], out[4400], out2[4400];
    snprintf(llama, sizeof llama, "%s/fixtures/llama-tiny", shared);
    snprintf(qwen2vl, sizeof qwen2vl, "%s/fixtures/qwen2vl-tiny", shared);
    snprintf(smol, sizeof smol, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(g_corpus, sizeof g_corpus, "%s/fixtures/corpus.txt", shared);

    /* nothing removed: the same logits, folder and GGUF */
    evlm_prune_structured_report r;
    bool same;
    snprintf(out, sizeof out, "%s/none", g_tmp);
    CHECK_OK(evlm_prune_structured(llama, out, NULL, &r));
    CHECK(r.params_after == r.params_before && r.layers_after == r.layers_before);
    evlm_prune_structured_report_free(&r);
    compare(llama, out, &same);
    CHECKF(same, "pruning nothing changed the logits");
    CHECK(cfg_int(out, NULL, "head_dim") == 16);
    snprintf(out2, sizeof out2, "%s/none.gguf", g_tmp);
    CHECK_OK(evlm_prune_structured(llama, out2, NULL, NULL));
    compare(llama, out2, &same);
    CHECKF(same, "pruning nothing into GGUF changed the logits");

    /* heads inside the kv groups, FFN channels, a layer; Llama and Qwen2 (biases) */
    masked_case("llama-h2-f96-l1", llama, 2, 96, 1, 0, "model.", 16);
    masked_case("llama-h2", llama, 2, 0, 0, 0, "model.", 16);
    masked_case("llama-ratio30", llama, 0, 0, 0, 0.3, "model.", 16);
    masked_case("qwen2vl-h2-f64", qwen2vl, 2, 64, 0, 0, "model.", 16);
    masked_case("qwen2vl-l1", qwen2vl, 0, 0, 1, 0, "model.", 16);
    masked_case("smolvlm-h2-f128", smol, 2, 128, 0, 0, "model.text_model.", 16);

    snprintf(out, sizeof out, "%s/llama-h2-f96-l1", g_tmp);
    CHECK(cfg_int(out, NULL, "num_attention_heads") == 2);
    CHECK(cfg_int(out, NULL, "num_key_value_heads") == 2);
    CHECK(cfg_int(out, NULL, "intermediate_size") == 96);
    CHECK(cfg_int(out, NULL, "head_dim") == 16);
    CHECK(tensor_rows(out, "model.layers.0.self_attn.q_proj.weight", 1) == 32);
    CHECK(tensor_rows(out, "model.layers.0.self_attn.k_proj.weight", 1) == 32);
    CHECK(tensor_rows(out, "model.layers.0.self_attn.o_proj.weight", 0) == 32);
    CHECK(tensor_rows(out, "model.layers.0.mlp.down_proj.weight", 0) == 96);
    CHECK(tensor_rows(out, "model.layers.1.mlp.down_proj.weight", 0) == -1);
    snprintf(out, sizeof out, "%s/qwen2vl-h2-f64", g_tmp);
    CHECK(tensor_rows(out, "model.layers.1.self_attn.q_proj.bias", 0) == 32);
    CHECK(tensor_rows(out, "model.layers.1.self_attn.k_proj.bias", 0) == 32);

    /* whole kv groups: a Qwen2 of 6 heads in 2 groups of 3 */
    char sdir[4400], scfg[4400];
    snprintf(sdir, sizeof sdir, "%s/qwen6", g_tmp);
    snprintf(scfg, sizeof scfg, "%s/qwen6.json", g_tmp);
    const char *cj = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", "
                     "\"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 3, "
                     "\"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 16, "
                     "\"vocab_size\": 680, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, "
                     "\"tie_word_embeddings\": false, \"torch_dtype\": \"float32\", "
                     "\"layer_types\": [\"full_attention\", \"full_attention\", "
                     "\"full_attention\"]}";
    CHECK_OK(evlm_write_file_atomic(scfg, cj, strlen(cj)));
    evlm_synth_params sp = evlm_synth_default_params();
    sp.config = scfg;
    sp.out_dir = sdir;
    sp.dtype = "f32";
    sp.tokenizer_dir = llama;
    CHECK_OK(evlm_model_synth(&sp, NULL, NULL));
    masked_case("qwen6-h3-groups", sdir, 3, 0, 0, 0, "model.", 16);
    masked_case("qwen6-h4-inside", sdir, 4, 64, 2, 0, "model.", 16);
    snprintf(out, sizeof out, "%s/qwen6-h3-groups", g_tmp);
    CHECK(cfg_int(out, NULL, "num_attention_heads") == 3);
    CHECK(cfg_int(out, NULL, "num_key_value_heads") == 1);
    CHECK(tensor_rows(out, "model.layers.2.self_attn.k_proj.weight", 1) == 16);
    CHECK(tensor_rows(out, "model.layers.2.self_attn.v_proj.weight", 1) == 16);
    CHECK(tensor_rows(out, "model.layers.2.self_attn.q_proj.weight", 1) == 48);
    snprintf(out, sizeof out, "%s/qwen6-h4-inside", g_tmp);
    CHECK(cfg_int(out, NULL, "num_key_value_heads") == 2);
    CHECK(cfg_int(out, NULL, "num_hidden_layers") == 2);
    {
        char p[4500], *txt = NULL;
        size_t len;
        snprintf(p, sizeof p, "%s/config.json", out);
        CHECK_OK(evlm_read_file(p, 1 << 20, &txt, &len));
        cJSON *root = txt ? cJSON_Parse(txt) : NULL;
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(root, "layer_types")) == 2);
        cJSON_Delete(root);
        free(txt);
    }

    /* the vision tower: FFN width and layers */
    {
        evlm_prune_structured_params p = evlm_prune_structured_default_params();
        p.vision_ffn = 64;
        p.vision_layers = 1;
        snprintf(out, sizeof out, "%s/smol-vision", g_tmp);
        CHECK_OK(evlm_prune_structured(smol, out, &p, &r));
        CHECK(r.vision_layers_after == 1 && r.vision_ffn_after == 64);
        evlm_prune_structured_report_free(&r);
        CHECK(cfg_int(out, "vision_config", "intermediate_size") == 64);
        CHECK(cfg_int(out, "vision_config", "num_hidden_layers") == 1);
        evlm_model *m = NULL;
        CHECK_OK(evlm_model_load(out, NULL, &m));
        char img[4300];
        snprintf(img, sizeof img, "%s/ref_image.png", smol);
        evlm_image_input in = {.path = img};
        evlm_prompt *pr = NULL;
        if (m) CHECK_OK(evlm_prompt_new(m, "<image>What is this?", true, &in, 1, &pr));
        evlm_prompt_free(pr);
        evlm_model_free(m);
    }

    /* hostile settings */
    expect_error("heads > model", llama, 5, 0, 0, 0, g_corpus, 0, "has 4 heads");
    expect_error("heads vs groups", sdir, 5, 0, 0, 0, g_corpus, 0, "multiple of");
    expect_error("ffn > model", llama, 0, 161, 0, 0, g_corpus, 0, "FFN width is 160");
    expect_error("layers > model", llama, 0, 0, 3, 0, g_corpus, 0, "has 2 layers");
    expect_error("layers < 0", llama, 0, 0, -1, 0, g_corpus, 0, "layers = -1");
    expect_error("ratio 1", llama, 0, 0, 0, 1.0, g_corpus, 0, "ratio = 1");
    expect_error("ratio < 0", llama, 0, 0, 0, -0.5, g_corpus, 0, "ratio = -0.5");
    expect_error("ratio + counts", llama, 2, 0, 0, 0.5, g_corpus, 0, "not both");
    expect_error("no calibration", llama, 2, 0, 0, 0, NULL, 0, "calib");
    expect_error("vision heads", smol, 0, 0, 0, 0, NULL, 3, "vision_heads");
    snprintf(out, sizeof out, "%s/llama-h2", g_tmp); /* exists */
    CHECKF(prune(llama, out, 2, 0, 0, 0, &r) != EVLM_OK && strstr(evlm_last_error(), "exists"),
           "%s", evlm_last_error());
    {
        evlm_prune_structured_params p = evlm_prune_structured_default_params();
        p.vision_layers = 2;
        snprintf(out, sizeof out, "%s/bad", g_tmp);
        CHECKF(evlm_prune_structured(llama, out, &p, &r) != EVLM_OK &&
                   strstr(evlm_last_error(), "vision tower"),
               "%s", evlm_last_error());
    }

    char cmd[4500];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_done();
}
