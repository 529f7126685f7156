/*
 * test_kquants_model.c - a decoder with k-quant weights (Q4_K, Q5_K, Q6_K) loads from GGUF and
 * multiplies them right: a random-weight Llama (hidden 256, so every matrix splits into 256-wide
 * super-blocks) is exported twice, once with its matrices in the k-quant, once as F32 holding
 * exactly those matrices' dequantized values; both files must give the same prompt logits up to
 * float summation order (1e-4 of the largest logit). Needs nothing from ../shared.
 *
 * evlm_quantize with type Q4_K / Q5_K / Q6_K and the Q4_K_M mix (kq_mix) on an 8-layer version:
 * every matrix of the type the mix's rule says (llama.cpp's use_more_bits picks layers 0, 3, 6, 7
 * of 8 for attention v and ffn down; the untied head Q6_K), the bits per weight that follow from
 * the block sizes, the written blocks byte-equal to evlm_quantize_row of the source rows (what
 * llama-quantize computes without an imatrix), and the file decodes like its dequantized twin.
 *
 * Not here: the formats themselves (test_kquants.c), quality against the float model (only
 * printed: random weights are a harsh case), llama.cpp reading the files (issue 15, item 4).
 */
#include "core/file.h"
#include "evlm_compress.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "io/gguf.h"
#include "io/gguf_names.h"
#include "quant/kquants.h"
#include "quant/types.h"
#include "test.h"
#include "test_ref.h"

#include <unistd.h>

typedef struct {
    evlm_type to;
    bool dequantized;     /* store F32 values of dequant(quant(w)) instead of the k-quant */
    evlm_tensor kept[32]; /* replacement tensors, valid until the write */
    float *bufs[32];
    int n;
    int n_kq; /* matrices given the k-quant */
} kq_ctx;

static evlm_type pick(void *vctx, const char *name, const evlm_tensor *t, const evlm_tensor **src) {
    kq_ctx *c = vctx;
    if (t->n_dims != 2 || t->ne[0] % EVLM_QK_K || t->type != EVLM_TYPE_F32 ||
        strstr(name, "embed_tokens"))
        return t->type;
    c->n_kq++;
    if (!c->dequantized) return c->to;
    if (c->n >= 32) return t->type;
    int64_t k = t->ne[0], rows = t->ne[1];
    size_t rb = evlm_row_bytes(c->to, k);
    float *v = malloc(sizeof(float) * (size_t)(k * rows));
    unsigned char *q = malloc(rb);
    if (!v || !q) {
        free(v);
        free(q);
        return t->type;
    }
    for (int64_t r = 0; r < rows; r++) {
        evlm_quantize_row(c->to, (const float *)t->data + r * k, q, k);
        evlm_dequantize_row(c->to, q, v + r * k, k);
    }
    free(q);
    c->bufs[c->n] = v;
    c->kept[c->n] = *t;
    c->kept[c->n].data = v;
    *src = &c->kept[c->n++];
    return EVLM_TYPE_F32;
}

static float *logits_of_layout(const char *model, const char *text, size_t *n_out, int *V,
                               bool f32_act, bool keep_layout) {
    evlm_model *m = NULL;
    evlm_model_params mp = evlm_model_default_params();
    mp.f32_act = f32_act;
    mp.keep_layout = keep_layout;
    CHECK_OK(evlm_model_load(model, &mp, &m));
    if (!m) return NULL;
    *V = evlm_model_n_vocab(m);
    evlm_prompt *p = NULL;
    CHECK_OK(evlm_prompt_new(m, text, false, NULL, 0, &p));
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

/* the weights interleaved at load (Q4_K_R16 / Q6_K_R16 for those bases: quant/kquant_repack.h) */
static float *logits_of_act(const char *model, const char *text, size_t *n_out, int *V,
                            bool f32_act) {
    return logits_of_layout(model, text, n_out, V, f32_act, false);
}

/* float activations: the k-quant rows dequantized, as the F32 twin's */
static float *logits_of(const char *model, const char *text, size_t *n_out, int *V) {
    return logits_of_act(model, text, n_out, V, true);
}

/* the type the Q4_K_M rule gives the Hugging Face tensor `name` of an 8-layer Llama */
static evlm_type mix_want(const char *name) {
    if (!strcmp(name, "lm_head.weight")) return EVLM_TYPE_Q6_K;
    if (strstr(name, "embed_tokens")) return EVLM_TYPE_Q4_K; /* untied: the default type */
    int l = -1;
    if (sscanf(name, "model.layers.%d.", &l) != 1) return EVLM_TYPE_COUNT;
    bool more = l == 0 || l == 3 || l == 6 || l == 7;
    if (more && (strstr(name, "v_proj.weight") || strstr(name, "down_proj.weight")))
        return EVLM_TYPE_Q6_K;
    return strstr(name, "proj.weight") ? EVLM_TYPE_Q4_K : EVLM_TYPE_COUNT;
}

static void test_quantize(const char *tmp) {
    char cfg[4200], dir[4200], out[4200];
    snprintf(cfg, sizeof cfg, "%s/config8.json", tmp);
    snprintf(dir, sizeof dir, "%s/model8", tmp);
    const char *cj = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                     "\"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 8, "
                     "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 64, "
                     "\"vocab_size\": 256, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
                     "\"tie_word_embeddings\": false, \"torch_dtype\": \"float32\", "
                     "\"max_position_embeddings\": 256}";
    CHECK_OK(evlm_write_file_atomic(cfg, cj, strlen(cj)));
    evlm_synth_params sp = evlm_synth_default_params();
    sp.config = cfg;
    sp.out_dir = dir;
    sp.dtype = "f32";
    CHECK_OK(evlm_model_synth(&sp, NULL, NULL));
    static const struct {
        evlm_type t;
        bool mix;
        double bpw; /* of every matrix: 4.5, 5.5, 6.5625 bits; norms stay F32 */
    } cases[] = {{EVLM_TYPE_Q4_K, false, 4.5},
                 {EVLM_TYPE_Q5_K, false, 5.5},
                 {EVLM_TYPE_Q6_K, false, 6.5625},
                 {EVLM_TYPE_Q4_K, true, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *nm = cases[c].mix ? "Q4_K_M" : evlm_type_name(cases[c].t);
        snprintf(out, sizeof out, "%s/%s.gguf", tmp, nm);
        evlm_quantize_params p = evlm_quantize_default_params();
        p.type = cases[c].t;
        p.kq_mix = cases[c].mix;
        evlm_quantize_report r;
        CHECK_OK(evlm_quantize(dir, out, &p, &r));
        int wrong = 0, n_mat = 0, n_q6 = 0;
        double bits = 0, el = 0;
        for (int i = 0; i < r.n; i++) {
            const evlm_quant_tensor_report *t = &r.t[i];
            evlm_type want = cases[c].mix ? mix_want(t->name)
                             : strstr(t->name, "proj.weight") || strstr(t->name, "lm_head") ||
                                     strstr(t->name, "embed_tokens")
                                 ? cases[c].t
                                 : EVLM_TYPE_COUNT;
            if (want == EVLM_TYPE_COUNT) continue; /* norms */
            n_mat++;
            n_q6 += t->to == EVLM_TYPE_Q6_K;
            bits += 8.0 * (double)t->bytes, el += (double)t->n_elements;
            if (t->to != want && wrong++ < 5)
                fprintf(stderr, "%s: %s is %s, want %s\n", nm, t->name, evlm_type_name(t->to),
                        evlm_type_name(want));
        }
        CHECKF(wrong == 0 && n_mat == 8 * 7 + 2, "%s: %d of %d matrices of the wrong type", nm,
               wrong, n_mat);
        if (cases[c].mix) /* 4 layers x (v, down) + the head */
            CHECKF(n_q6 == 9, "Q4_K_M: %d Q6_K matrices", n_q6);
        else
            CHECKF(fabs(bits / el - cases[c].bpw) < 1e-9, "%s: %.4f bits per matrix weight", nm,
                   bits / el);
        printf("%s: %.4f bits per weight over the file, %.4f over the matrices\n", nm, r.bpw,
               bits / el);
        evlm_quantize_report_free(&r);
        /* a block as evlm_quantize_row writes it from the source rows (no Q/K row order) */
        evlm_gguf *g = NULL;
        CHECK_OK(evlm_gguf_open(out, &g));
        const evlm_tensor *gt = g ? evlm_gguf_tensor_find(g, "blk.5.ffn_gate.weight") : NULL;
        char st_path[4400];
        snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
        evlm_weights *w = NULL;
        CHECK_OK(evlm_weights_open(st_path, &w));
        const evlm_tensor *src =
            w ? evlm_weights_find(w, "model.layers.5.mlp.gate_proj.weight") : NULL;
        if (gt && src && src->type == EVLM_TYPE_F32) {
            size_t rb = evlm_row_bytes(gt->type, src->ne[0]);
            unsigned char *row = malloc(rb);
            int diff = 0;
            for (int64_t i = 0; row && i < src->ne[1]; i++) {
                evlm_quantize_row(gt->type, (const float *)src->data + i * src->ne[0], row,
                                  src->ne[0]);
                diff += memcmp(row, (const char *)gt->data + (size_t)i * rb, rb) != 0;
            }
            CHECKF(row && diff == 0 && gt->type == (cases[c].mix ? EVLM_TYPE_Q4_K : cases[c].t),
                   "%s: %d rows of blk.5.ffn_gate differ from evlm_quantize_row", nm, diff);
            free(row);
        } else {
            CHECKF(0, "%s: blk.5.ffn_gate / its source not found", nm);
        }
        evlm_weights_free(w);
        evlm_gguf_close(g);
        /* it decodes */
        size_t n = 0;
        int V = 0;
        float *lg = logits_of(out, "Hello there.", &n, &V);
        bool finite = lg != NULL;
        for (size_t i = 0; lg && i < n * (size_t)V; i++) finite = finite && isfinite(lg[i]);
        CHECKF(finite && n > 0, "%s: the quantized file decodes", nm);
        free(lg);
        unlink(out);
    }
    /* refusals: methods and options that are not done for k-quants */
    evlm_quantize_params p = evlm_quantize_default_params();
    p.type = EVLM_TYPE_Q5_K;
    p.kq_mix = true;
    snprintf(out, sizeof out, "%s/bad.gguf", tmp);
    CHECK(evlm_quantize(dir, out, &p, NULL) == EVLM_ERR_ARG);
    p.kq_mix = false;
    p.target_bpw = 5.0;
    p.calib_text = cfg; /* any text */
    CHECK(evlm_quantize(dir, out, &p, NULL) == EVLM_ERR_UNSUPPORTED);
    CHECK(access(out, F_OK) != 0);
}

int main(void) {
    char tmp[] = "/tmp/evlm_kqm_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char cfg[4200], dir[4200], fq[4200], fd[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    snprintf(dir, sizeof dir, "%s/model", tmp);
    const char *cj = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                     "\"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 2, "
                     "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 64, "
                     "\"vocab_size\": 256, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
                     "\"tie_word_embeddings\": false, \"torch_dtype\": \"float32\", "
                     "\"max_position_embeddings\": 256}";
    CHECK_OK(evlm_write_file_atomic(cfg, cj, strlen(cj)));
    evlm_synth_params sp = evlm_synth_default_params();
    sp.config = cfg;
    sp.out_dir = dir;
    sp.dtype = "f32";
    CHECK_OK(evlm_model_synth(&sp, NULL, NULL));
    static const evlm_type types[3] = {EVLM_TYPE_Q4_K, EVLM_TYPE_Q5_K, EVLM_TYPE_Q6_K};
    static const char *prompts[2] = {"The quick brown fox jumps over the lazy dog.", "a"};
    for (int ti = 0; ti < 3; ti++) {
        const char *nm = evlm_type_name(types[ti]);
        snprintf(fq, sizeof fq, "%s/%s.gguf", tmp, nm);
        snprintf(fd, sizeof fd, "%s/%s-deq.gguf", tmp, nm);
        kq_ctx a = {.to = types[ti]}, b = {.to = types[ti], .dequantized = true};
        CHECK_OK(evlm_gguf_export_hf(dir, fq, pick, &a, NULL, NULL));
        CHECK_OK(evlm_gguf_export_hf(dir, fd, pick, &b, NULL, NULL));
        for (int i = 0; i < b.n; i++) free(b.bufs[i]);
        /* 2 layers x 7 projections and lm_head */
        CHECKF(a.n_kq == 15 && b.n == 15, "%s: %d / %d matrices converted", nm, a.n_kq, b.n);
        for (int pi = 0; pi < 2; pi++) {
            size_t n1 = 0, n2 = 0, n3 = 0;
            int V1 = 0, V2 = 0, V3 = 0;
            float *lq = logits_of(fq, prompts[pi], &n1, &V1);
            size_t n4 = 0;
            int V4 = 0;
            float *li = logits_of_act(fq, prompts[pi], &n4, &V4, false); /* int8 activations */
            float *ld = logits_of(fd, prompts[pi], &n2, &V2);
            float *lf = logits_of(dir, prompts[pi], &n3, &V3);
            if (lq && ld && lf && n1 == n2 && n1 == n3 && V1 == V2 && V1 == V3) {
                size_t cnt = n1 * (size_t)V1;
                float mx = fmaxf(1.0f, max_abs(ld, cnt)), d = max_diff(lq, ld, cnt);
                printf("%s, %zu tokens: max |logit diff| vs its dequantized F32 copy %.3g "
                       "(bound %.3g); vs the float model %.3g (max |logit| %.3g)\n",
                       nm, n1, (double)d, 1e-4 * (double)mx, (double)max_diff(lq, lf, cnt),
                       (double)max_abs(lf, cnt));
                CHECK(d <= 1e-4f * mx);
                /* the int8 path (gemm_q): activations rounded to 8 bits per 32 values, so within
                 * the bound test_gguf_model.c gives Q8_0 of the float model, 0.15 max(1, |logit|)
                 */
                if (li && n4 == n1 && V4 == V1) {
                    float di = max_diff(li, ld, cnt);
                    printf("  int8 activations: max |logit diff| vs the dequantized copy %.3g\n",
                           (double)di);
                    CHECK(di <= 0.15f * mx && di > 0.0f); /* > 0: the int8 path did run */
                    /* the interleaved kernels against the row-major ones (the file's layout
                     * kept): the same products summed in another order, so the logits agree to
                     * float rounding (~1e-6 here), unless an output's last bit moves an activation
                     * of a later layer to the neighbouring int8 value: one step of one block, up
                     * to ~1 % of the largest logit (seen once: Q5_K under avx2, 0.7 %). A wrong
                     * layout or kernel moves them by the logits' own size. */
                    size_t n5 = 0;
                    int V5 = 0;
                    float *lr = logits_of_layout(fq, prompts[pi], &n5, &V5, false, true);
                    if (lr && n5 == n1 && V5 == V1) {
                        float dr = max_diff(li, lr, cnt);
                        printf("  int8, interleaved vs file layout: max |logit diff| %.3g\n",
                               (double)dr);
                        CHECK(dr <= 0.02f * mx);
                    } else {
                        CHECKF(0, "%s: file-layout logits missing", nm);
                    }
                    free(lr);
                } else {
                    CHECKF(0, "%s: int8-activation logits missing", nm);
                }
            } else {
                CHECKF(0, "%s: logits missing or of different sizes", nm);
            }
            free(lq);
            free(li);
            free(ld);
            free(lf);
        }
        unlink(fq);
        unlink(fd);
    }
    /* the files hold the k-quant: the GGUF reader sees its type */
    {
        kq_ctx a = {.to = EVLM_TYPE_Q4_K};
        snprintf(fq, sizeof fq, "%s/q4k.gguf", tmp);
        CHECK_OK(evlm_gguf_export_hf(dir, fq, pick, &a, NULL, NULL));
        evlm_gguf *g = NULL;
        CHECK_OK(evlm_gguf_open(fq, &g));
        int n_q4k = 0;
        for (size_t i = 0; g && i < evlm_gguf_tensor_count(g); i++)
            n_q4k += evlm_gguf_tensor_at(g, i)->type == EVLM_TYPE_Q4_K;
        CHECKF(n_q4k == 15, "%d Q4_K tensors in the file", n_q4k);
        evlm_gguf_close(g);
        unlink(fq);
    }
    test_quantize(tmp);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return test_done();
}
