/*
 * plan.c - the NPU fit planner (evlm_plan_*, evlm_npu.h): parameters, bytes and FLOPs of a model
 * from its config.json, set against a target of targets.c.
 *
 * Accounting (docs/NPU.md, section "Planner", says the same with the assumptions labelled):
 * - parameters per part from the config (text decoder: io/hf_config.h; SigLIP / Idefics3 and
 *   Qwen2-VL towers: their families' config parsers), checked against the tensors when given;
 * - bytes: matrices at the precision's weight bits plus their scales, vectors (norms, biases,
 *   position tables) at 16 bits; a tied LM head stored twice (embedding and head live in
 *   different graph parts);
 * - KV cache of the static graphs: 2 x layers x kv heads x head_dim x n_ctx at the target's KV
 *   bits (16 for fp16);
 * - decode reads every decoder matrix, the head, one embedding row and the whole static KV cache
 *   per token; a prompt chunk (AR-N) and a decode step attend over the full n_ctx;
 * - times are a roofline (the larger of compute and memory time) with two effective factors,
 *   fractions of the target's peaks, both from the one published measurement of
 *   evlm_plan_calibration_point (Llama-3.2-1B w4 on SA8295P): decode tok/s gives the bandwidth
 *   factor, the one-chunk time to first token the compute factor.
 *
 * Not here: the targets' numbers (targets.c), the ONNX export, printing.
 */
#include "npu/plan.h"

#include "core/file.h"
#include "core/status.h"
#include "io/gguf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

static const char *const k_prec_names[] = {"default", "fp16", "w8a16", "w8a8", "w4a16", "w4"};

const char *evlm_npu_precision_name(evlm_npu_precision p) {
    return (unsigned)p < sizeof k_prec_names / sizeof *k_prec_names ? k_prec_names[p] : "?";
}

evlm_status evlm_npu_precision_parse(const char *s, evlm_npu_precision *out) {
    for (int i = EVLM_NPU_FP16; i <= EVLM_NPU_W4; i++) {
        if (s && !strcmp(s, k_prec_names[i])) {
            *out = (evlm_npu_precision)i;
            return EVLM_OK;
        }
    }
    return evlm__fail(EVLM_ERR_ARG, "precision '%s': takes fp16, w8a16, w8a8, w4a16 or w4",
                      s ? s : "");
}

evlm_plan_params evlm_plan_default_params(void) {
    evlm_plan_params p;
    memset(&p, 0, sizeof p);
    p.target = "sa8295";
    return p;
}

/* ---- the model ------------------------------------------------------------------------------ */

evlm_status evlm__plan_parse(const char *what, const char *json, size_t len, evlm__plan_model *m) {
    memset(m, 0, sizeof *m);
    EVLM_TRY(evlm_decoder_config_parse(what, json, len, NULL, 0, &m->text));
    if (!strcmp(m->text.model_type, "idefics3")) {
        EVLM_TRY(evlm_idefics3_config_parse(what, json, len, &m->idefics3));
        m->vision = EVLM_PLAN_VISION_IDEFICS3;
    } else if (!strcmp(m->text.model_type, "qwen2_vl")) {
        EVLM_TRY(evlm_qwen2vl_vision_config_parse(what, json, len, &m->qwen2vl));
        m->vision = EVLM_PLAN_VISION_QWEN2VL;
    }
    return EVLM_OK;
}

/* ---- bytes of a precision ----------------------------------------------------------------------
 */

static int weight_bits(evlm_npu_precision p) {
    switch (p) {
    case EVLM_NPU_FP16:
        return 16;
    case EVLM_NPU_W8A16:
    case EVLM_NPU_W8A8:
        return 8;
    default:
        return 4;
    }
}

/* A matrix of n weights in `rows` output channels. Per-channel scales: scale and offset, 4 bytes a
 * row; w4a16: an fp16 scale per block of EVLM_PLAN_W4_BLOCK weights. */
static double matrix_bytes(evlm_npu_precision p, double n, double rows) {
    switch (p) {
    case EVLM_NPU_FP16:
        return 2 * n;
    case EVLM_NPU_W8A16:
    case EVLM_NPU_W8A8:
        return n + 4 * rows;
    case EVLM_NPU_W4A16:
        return n / 2 + 2 * ceil(n / EVLM_PLAN_W4_BLOCK);
    default:
        return n / 2 + 4 * rows;
    }
}

static double vector_bytes(double n) {
    return 2 * n;
}

/* Activation element bytes: w8a8 runs 8-bit activations, the others 16-bit. */
static int act_bytes(evlm_npu_precision p) {
    return p == EVLM_NPU_W8A8 ? 1 : 2;
}

/* ---- the fit decision --------------------------------------------------------------------------
 */

bool evlm__plan_decide(const evlm_npu_target_info *t, int64_t total_bytes, int n_parts,
                       int64_t biggest_unit, int max_parts, char *why, size_t cap) {
    if (total_bytes > t->addressable) {
        snprintf(why, cap,
                 "%.2f GiB passes %s's NPU-addressable memory, %.2f GiB per session (32-bit "
                 "address space)",
                 (double)total_bytes / GIB, t->name, (double)t->addressable / GIB);
        return false;
    }
    if (biggest_unit > t->graph_limit) {
        snprintf(why, cap,
                 "one layer holds %.2f GiB, past %s's per-graph limit of %.2f GiB: no split helps",
                 (double)biggest_unit / GIB, t->name, (double)t->graph_limit / GIB);
        return false;
    }
    if (max_parts > 0 && n_parts > max_parts) {
        snprintf(why, cap,
                 "the weights need %d graph parts under %s's per-graph limit of %.2f GiB; the "
                 "deployment takes %d",
                 n_parts, t->name, (double)t->graph_limit / GIB, max_parts);
        return false;
    }
    snprintf(why, cap, "%.2f GiB of %.2f GiB NPU-addressable, %d part%s of at most %.2f GiB",
             (double)total_bytes / GIB, (double)t->addressable / GIB, n_parts,
             n_parts == 1 ? "" : "s", (double)t->graph_limit / GIB);
    return true;
}

/* ---- accounting --------------------------------------------------------------------------- */

typedef struct counts {
    /* text decoder, per layer */
    double layer_matrix, layer_rows, layer_vector;
    double emb_matrix, head_matrix, head_vector; /* head_matrix counts a tied head too */
    bool tied;
    /* vision */
    double vis_matrix, vis_rows, vis_vector; /* tower without its per-layer part */
    double vis_layer_matrix, vis_layer_rows, vis_layer_vector;
    int vis_layers;
    double con_matrix, con_rows, con_vector;
    double vis_flops_tile, vis_act_tile; /* act: elements */
} counts;

static void count_text(const evlm_decoder_config *c, counts *k) {
    double H = c->hidden_size, QD = (double)c->n_heads * c->head_dim;
    double KD = (double)c->n_kv_heads * c->head_dim, F = c->intermediate_size, V = c->vocab_size;
    bool qkv_bias = c->attention_bias || !strncmp(c->model_type, "qwen2", 5);
    k->layer_matrix = H * QD + 2 * H * KD + QD * H + 3 * H * F;
    k->layer_rows = QD + 2 * KD + H + 2 * F + H;
    k->layer_vector = 2 * H + (qkv_bias ? QD + 2 * KD : 0) + (c->attention_bias ? H : 0) +
                      (c->mlp_bias ? 2 * F + H : 0);
    k->emb_matrix = V * H;
    k->head_matrix = V * H;
    k->head_vector = H;
    k->tied = c->tie_word_embeddings;
}

static void count_idefics3(const evlm_idefics3_config *c, counts *k) {
    double D = c->hidden_size, I = c->intermediate_size, N = c->num_patches;
    double P = (double)c->num_channels * c->patch_size * c->patch_size;
    double s2 = (double)c->scale_factor * c->scale_factor, T = c->text_hidden_size;
    k->vis_matrix = P * D;
    k->vis_rows = D;
    k->vis_vector = D + N * D + 2 * D; /* patch bias, position table, post layernorm */
    k->vis_layers = c->n_layers;
    k->vis_layer_matrix = 4 * D * D + 2 * D * I;
    k->vis_layer_rows = 4 * D + I + D;
    k->vis_layer_vector = 4 * D + 4 * D + I + D; /* 2 layernorms, q/k/v/o and fc biases */
    k->con_matrix = D * s2 * T;
    k->con_rows = T;
    k->con_vector = 0;
    double tokens = N / s2;
    k->vis_flops_tile = 2 * N * P * D +
                        c->n_layers * (2 * N * (4 * D * D + 2 * D * I) + 4 * N * N * D) +
                        2 * tokens * D * s2 * T;
    k->vis_act_tile = N * (3 * D + I + (double)c->n_heads * N);
}

static void count_qwen2vl(const evlm_qwen2vl_vision_config *c, counts *k) {
    double D = c->embed_dim, M = c->mlp_dim, P = c->patch_dim, Mg = c->merged_dim;
    double Hs = c->hidden_size, m2 = (double)c->spatial_merge_size * c->spatial_merge_size;
    double side = floor((double)EVLM_PLAN_QWEN2VL_TILE_PX / c->patch_size);
    double N = side * side;
    k->vis_matrix = P * D;
    k->vis_rows = D;
    k->vis_vector = 0;
    k->vis_layers = c->depth;
    k->vis_layer_matrix = 4 * D * D + 2 * D * M;
    k->vis_layer_rows = 3 * D + D + M + D;
    k->vis_layer_vector = 4 * D + 3 * D + D + M + D;
    k->con_matrix = Mg * Mg + Mg * Hs;
    k->con_rows = Mg + Hs;
    k->con_vector = 2 * D + Mg + Hs;
    k->vis_flops_tile = 2 * N * P * D +
                        c->depth * (2 * N * (4 * D * D + 2 * D * M) + 4 * N * N * D) +
                        2 * (N / m2) * (Mg * Mg + Mg * Hs);
    k->vis_act_tile = N * (3 * D + M + (double)c->n_heads * N);
}

/* Greedy split of units (bytes each, in order) into parts under limit; returns the part count and
 * fills parts[] (when not NULL) for the text decoder's unit layout: unit 0 the embedding, units
 * 1..L the layers, unit L+1 the head. */
static int split(const double *units, int n, double limit, evlm_plan_part *parts, int cap,
                 double *biggest) {
    int np = 0;
    double cur = 0;
    bool open = false;
    *biggest = 0;
    for (int u = 0; u < n; u++) {
        if (units[u] > *biggest) *biggest = units[u];
        if (open && cur + units[u] > limit) open = false;
        if (!open) {
            np++;
            cur = 0;
            open = true;
            if (parts && np <= cap) {
                evlm_plan_part *pp = &parts[np - 1];
                memset(pp, 0, sizeof *pp);
                pp->first_layer = pp->last_layer = -1;
            }
        }
        cur += units[u];
        if (parts && np <= cap) {
            evlm_plan_part *pp = &parts[np - 1];
            pp->bytes = (int64_t)cur;
            if (u == 0)
                pp->embedding = true;
            else if (u == n - 1)
                pp->head = true;
            else {
                if (pp->first_layer < 0) pp->first_layer = u - 1;
                pp->last_layer = u - 1;
            }
        }
    }
    return np;
}

evlm_status evlm__plan_compute(const evlm__plan_model *m, const evlm_plan_params *pin,
                               double eff_bw, double eff_compute, evlm_plan *o) {
    evlm_plan_params p = pin ? *pin : evlm_plan_default_params();
    memset(o, 0, sizeof *o);
    const char *tname = p.target ? p.target : "sa8295";
    const evlm_npu_target_info *t = evlm_npu_target_find(tname);
    if (!t) {
        char names[128] = "";
        for (size_t i = 0; i < evlm_npu_n_targets(); i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "",
                     evlm_npu_target_at(i)->name);
        }
        return evlm__fail(EVLM_ERR_ARG, "unknown target '%s' (known: %s)", tname, names);
    }
    evlm_npu_precision prec = p.precision;
    if ((unsigned)prec > EVLM_NPU_W4)
        return evlm__fail(EVLM_ERR_ARG, "precision %d: not a precision", (int)prec);
    if (prec == EVLM_NPU_DEFAULT) prec = t->int4_block ? EVLM_NPU_W4A16 : EVLM_NPU_W4;
    if (prec == EVLM_NPU_W4A16 && !t->int4_block)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "precision w4a16 (int4 per-block weights) needs Hexagon V69 or later: "
                          "%s (%s) is V%d; w4 (int4 per-channel weights, fp16 activations) or "
                          "w8a16 run there",
                          t->name, t->soc, t->hexagon);
    const evlm_decoder_config *c = &m->text;
    int max_pos = c->max_position_embeddings > 0 ? c->max_position_embeddings : (1 << 30);
    int n_ctx = p.n_ctx;
    if (n_ctx < 0) return evlm__fail(EVLM_ERR_ARG, "context %d: must be positive", n_ctx);
    if (n_ctx == 0) n_ctx = max_pos < 4096 ? max_pos : 4096;
    if (n_ctx > max_pos)
        return evlm__fail(EVLM_ERR_RANGE,
                          "context %d passes the model's max_position_embeddings (%d)", n_ctx,
                          max_pos);
    int ar = p.ar;
    if (ar < 0 || ar > n_ctx)
        return evlm__fail(EVLM_ERR_ARG,
                          "prompt graph length %d: must be in [1, %d] (the context length)", ar,
                          n_ctx);
    if (ar == 0) ar = n_ctx < 128 ? n_ctx : 128;
    int n_prompt = p.n_prompt;
    if (n_prompt < 0 || n_prompt > n_ctx)
        return evlm__fail(EVLM_ERR_ARG, "prompt of %d tokens: must be in [1, %d]", n_prompt, n_ctx);
    if (n_prompt == 0) n_prompt = ar;
    int n_tiles = p.n_tiles;
    if (n_tiles < 0 || n_tiles > 1024)
        return evlm__fail(EVLM_ERR_ARG, "tiles %d: must be in [1, 1024]", n_tiles);
    if (n_tiles == 0) n_tiles = 1;
    if (p.max_parts < 0)
        return evlm__fail(EVLM_ERR_ARG, "max parts %d: must be 0 (no bound) or more", p.max_parts);

    o->target = t;
    o->precision = prec;
    o->n_ctx = n_ctx;
    o->ar = ar;
    o->n_prompt = n_prompt;
    o->n_tiles = n_tiles;
    snprintf(o->model_type, sizeof o->model_type, "%s", c->model_type);
    o->params_file = -1;

    counts k;
    memset(&k, 0, sizeof k);
    count_text(c, &k);
    if (m->vision == EVLM_PLAN_VISION_IDEFICS3) count_idefics3(&m->idefics3, &k);
    if (m->vision == EVLM_PLAN_VISION_QWEN2VL) count_qwen2vl(&m->qwen2vl, &k);
    double L = c->n_layers, H = c->hidden_size;

    /* parameters */
    o->params_layers = (int64_t)(L * (k.layer_matrix + k.layer_vector));
    o->params_embedding = (int64_t)k.emb_matrix;
    o->params_head = (int64_t)((k.tied ? 0 : k.head_matrix) + k.head_vector);
    o->params_vision = (int64_t)(k.vis_matrix + k.vis_vector +
                                 k.vis_layers * (k.vis_layer_matrix + k.vis_layer_vector));
    o->params_connector = (int64_t)(k.con_matrix + k.con_vector);
    o->params_total = o->params_layers + o->params_embedding + o->params_head + o->params_vision +
                      o->params_connector;

    /* weights */
    double layer_b =
        matrix_bytes(prec, k.layer_matrix, k.layer_rows) + vector_bytes(k.layer_vector);
    double emb_b = matrix_bytes(prec, k.emb_matrix, c->vocab_size);
    double head_b = matrix_bytes(prec, k.head_matrix, c->vocab_size) + vector_bytes(k.head_vector);
    double text_b = emb_b + L * layer_b + head_b;
    double vis_layer_b =
        matrix_bytes(prec, k.vis_layer_matrix, k.vis_layer_rows) + vector_bytes(k.vis_layer_vector);
    double vis_first_b =
        m->vision ? matrix_bytes(prec, k.vis_matrix, k.vis_rows) + vector_bytes(k.vis_vector) : 0;
    double con_b =
        m->vision ? matrix_bytes(prec, k.con_matrix, k.con_rows) + vector_bytes(k.con_vector) : 0;
    double vis_b = vis_first_b + k.vis_layers * vis_layer_b + con_b;
    o->text_weights_bytes = (int64_t)text_b;
    o->vision_weights_bytes = (int64_t)vis_b;
    o->weights_bytes = o->text_weights_bytes + o->vision_weights_bytes;

    /* KV cache, activations, overhead */
    o->kv_bits = prec == EVLM_NPU_FP16 ? 16 : t->kv_bits;
    double kv_per_ctx = 2 * L * c->n_kv_heads * c->head_dim * o->kv_bits / 8.0;
    o->kv_bytes = (int64_t)(kv_per_ctx * n_ctx);
    int ab = act_bytes(prec);
    double act_base = (double)ar * (2 * H + 2.0 * c->intermediate_size) * ab +
                      (double)ar * c->vocab_size * 2 + k.vis_act_tile * ab;
    double act_per_ctx = (double)ar * c->n_heads * ab;
    o->activation_bytes = (int64_t)(act_base + act_per_ctx * n_ctx);
    o->overhead_bytes = EVLM_PLAN_OVERHEAD_BYTES;
    o->total_bytes = o->weights_bytes + o->kv_bytes + o->activation_bytes + o->overhead_bytes;
    o->limit_bytes = t->addressable;
    o->graph_limit = t->graph_limit;

    /* the largest context that fits */
    double fixed = (double)o->weights_bytes + act_base + (double)o->overhead_bytes;
    double room = (double)t->addressable - fixed;
    double mc = room > 0 ? floor(room / (kv_per_ctx + act_per_ctx)) : 0;
    o->max_ctx = mc > max_pos ? max_pos : (int)mc;

    /* the part split */
    int n_units = c->n_layers + 2;
    double *units = malloc((size_t)n_units * sizeof *units);
    if (!units) return evlm__fail(EVLM_ERR_NOMEM, "out of memory planning the part split");
    units[0] = emb_b;
    for (int l = 0; l < c->n_layers; l++) units[l + 1] = layer_b;
    units[n_units - 1] = head_b;
    double biggest = 0, vbig = 0;
    o->n_parts =
        split(units, n_units, (double)t->graph_limit, o->parts, EVLM_PLAN_MAX_PARTS, &biggest);
    free(units);
    if (m->vision) {
        double vu[3] = {vis_first_b, vis_layer_b, con_b};
        /* the tower's layers are equal: split them as a run of units */
        int nv = k.vis_layers + 2;
        double *vunits = malloc((size_t)nv * sizeof *vunits);
        if (!vunits) return evlm__fail(EVLM_ERR_NOMEM, "out of memory planning the part split");
        vunits[0] = vu[0];
        for (int l = 0; l < k.vis_layers; l++) vunits[l + 1] = vu[1];
        vunits[nv - 1] = vu[2];
        o->n_vision_parts = split(vunits, nv, (double)t->graph_limit, NULL, 0, &vbig);
        free(vunits);
        if (vbig > biggest) biggest = vbig;
    }

    if (fixed > (double)t->addressable) {
        o->fits = evlm__plan_decide(t, o->total_bytes, o->n_parts, (int64_t)biggest, p.max_parts,
                                    o->why, sizeof o->why);
    } else if (n_ctx > o->max_ctx) {
        return evlm__fail(EVLM_ERR_RANGE,
                          "context %d: the KV cache (%.0f MiB) and the prompt graph's activations "
                          "bring the total to %.2f GiB, past %s's NPU-addressable memory of %.2f "
                          "GiB; the largest context that fits is %d",
                          n_ctx, (double)o->kv_bytes / MIB, (double)o->total_bytes / GIB, t->name,
                          (double)t->addressable / GIB, o->max_ctx);
    } else {
        o->fits = evlm__plan_decide(t, o->total_bytes, o->n_parts, (int64_t)biggest, p.max_parts,
                                    o->why, sizeof o->why);
        if (o->fits && o->n_parts > EVLM_PLAN_MAX_PARTS) {
            o->fits = false;
            snprintf(o->why, sizeof o->why, "needs %d graph parts; the planner lists at most %d",
                     o->n_parts, EVLM_PLAN_MAX_PARTS);
        }
    }

    /* the roofline */
    double emb_row = H * weight_bits(prec) / 8.0;
    o->bytes_per_token = L * layer_b + head_b + emb_row + (double)o->kv_bytes;
    double attn = 4.0 * c->n_heads * c->head_dim * n_ctx;
    o->flops_per_token = 2 * (L * k.layer_matrix + k.head_matrix) + L * attn;
    o->flops_per_chunk = (double)ar * o->flops_per_token;
    o->vision_flops = k.vis_flops_tile * n_tiles;
    o->eff_bandwidth = eff_bw;
    o->eff_compute = eff_compute;
    o->peak_ops = t->tops * 1e12 * (ab == 1 ? 1.0 : 0.5);
    double bw = eff_bw * t->dram_gb_s * 1e9, ops = eff_compute * o->peak_ops;
    double t_dec = fmax(o->bytes_per_token / bw, o->flops_per_token / ops);
    o->decode_tok_s = 1.0 / t_dec;
    double t_chunk = fmax(o->flops_per_chunk / ops, o->bytes_per_token / bw);
    o->ttft_ms = 1e3 * ceil((double)n_prompt / ar) * t_chunk;
    o->ttft_full_ms = 1e3 * ceil((double)n_ctx / ar) * t_chunk;
    o->image_encode_ms = m->vision ? 1e3 * fmax(o->vision_flops / ops, vis_b / bw) : 0;
    return EVLM_OK;
}

/* ---- calibration ------------------------------------------------------------------------- */

/* meta-llama/Llama-3.2-1B-Instruct config.json (the fields the planner reads). */
static const char k_llama32_1b[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
    "\"hidden_size\": 2048, \"intermediate_size\": 8192, \"num_hidden_layers\": 16, "
    "\"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"head_dim\": 64, "
    "\"vocab_size\": 128256, \"max_position_embeddings\": 131072, \"rms_norm_eps\": 1e-05, "
    "\"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 32.0, \"low_freq_factor\": 1.0, "
    "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, "
    "\"rope_type\": \"llama3\"}, \"tie_word_embeddings\": true, \"attention_bias\": false, "
    "\"mlp_bias\": false, \"hidden_act\": \"silu\"}";

static evlm_plan_calibration g_cal = {
    .model = "Llama-3.2-1B-Instruct",
    .target = "sa8295",
    .precision = EVLM_NPU_W4,
    .n_ctx = 4096,
    .ar = 128,
    .tok_s = 11.0,
    .ttft_ms = 225.0,
    .source = "Qualcomm AI Hub, quic/ai-hub-models qai_hub_models/models/llama_v3_2_1b_instruct/"
              "perf.yaml: w4, SA8295P ADP, Genie, context 4096: 11.0 tokens/s, time to first "
              "token 225 ms (one 128-token prompt chunk) to 7200 ms (4096 tokens)",
};
static pthread_once_t g_cal_once = PTHREAD_ONCE_INIT;

static void calibrate(void) {
    evlm__plan_model m;
    evlm_plan raw;
    evlm_plan_params p = evlm_plan_default_params();
    p.target = g_cal.target;
    p.precision = g_cal.precision;
    p.n_ctx = g_cal.n_ctx;
    p.ar = g_cal.ar;
    if (evlm__plan_parse("calibration model", k_llama32_1b, sizeof k_llama32_1b - 1, &m) !=
            EVLM_OK ||
        evlm__plan_compute(&m, &p, 1.0, 1.0, &raw) != EVLM_OK)
        return; /* the factors stay 0: evlm_plan_config reports it */
    g_cal.eff_bandwidth = raw.bytes_per_token * g_cal.tok_s / (raw.target->dram_gb_s * 1e9);
    g_cal.eff_compute = raw.flops_per_chunk / (g_cal.ttft_ms * 1e-3) / raw.peak_ops;
}

const evlm_plan_calibration *evlm_plan_calibration_point(void) {
    pthread_once(&g_cal_once, calibrate);
    return &g_cal;
}

/* ---- entry points ------------------------------------------------------------------------- */

evlm_status evlm_plan_config(const char *what, const char *json, size_t len,
                             const evlm_plan_params *params, evlm_plan *out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "evlm_plan_config: out is NULL");
    memset(out, 0, sizeof *out);
    if (!json) return evlm__fail(EVLM_ERR_ARG, "evlm_plan_config: json is NULL");
    const evlm_plan_calibration *cal = evlm_plan_calibration_point();
    if (cal->eff_bandwidth <= 0 || cal->eff_compute <= 0)
        return evlm__fail(EVLM_ERR_FORMAT, "the planner's calibration point did not compute");
    evlm__plan_model m;
    EVLM_TRY(evlm__plan_parse(what ? what : "config", json, len, &m));
    return evlm__plan_compute(&m, params, cal->eff_bandwidth, cal->eff_compute, out);
}

static int64_t count_tensors(const char *path) {
    evlm_model_info *info;
    if (evlm_model_info_open(path, &info) != EVLM_OK) {
        evlm__clear_error();
        return -1;
    }
    int64_t n = 0;
    size_t nt = evlm_model_info_n_tensors(info);
    for (size_t i = 0; i < nt; i++) {
        evlm_tensor_info ti = evlm_model_info_tensor(info, i);
        int64_t e = 1;
        for (int d = 0; d < ti.n_dims; d++) e *= ti.shape[d];
        n += e;
    }
    evlm_model_info_free(info);
    return nt ? n : -1;
}

evlm_status evlm_plan_model(const char *path, const evlm_plan_params *params, evlm_plan *out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "evlm_plan_model: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return evlm__fail(EVLM_ERR_ARG, "evlm_plan_model: path is NULL");
    struct stat st;
    if (stat(path, &st) != 0) return evlm__fail(EVLM_ERR_IO, "%s: %s", path, strerror(errno));
    char *json = NULL;
    size_t len = 0;
    bool weights = false;
    evlm_status s;
    const size_t max_json = 16u << 20;
    if (S_ISDIR(st.st_mode)) {
        char cfg[4096];
        EVLM_TRY(evlm_path_join(cfg, sizeof cfg, path, "config.json"));
        if (!evlm_file_exists(cfg))
            return evlm__fail(EVLM_ERR_IO, "%s: no config.json in this folder", path);
        EVLM_TRY(evlm_read_file(cfg, max_json, &json, &len));
        weights = true;
    } else {
        FILE *f = fopen(path, "rb");
        char magic[4] = {0};
        bool gguf = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
        if (f) fclose(f);
        if (gguf) {
            evlm_gguf *g;
            EVLM_TRY(evlm_gguf_open(path, &g));
            const char *text;
            s = evlm_gguf_file_text(g, "config.json", &text, &len);
            if (s == EVLM_OK) {
                json = malloc(len + 1);
                if (json) {
                    memcpy(json, text, len);
                    json[len] = 0;
                }
            }
            evlm_gguf_close(g);
            if (s != EVLM_OK) return evlm__fail(s, "%s: the GGUF file embeds no config.json", path);
            if (!json) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", path);
            weights = true;
        } else {
            EVLM_TRY(evlm_read_file(path, max_json, &json, &len));
        }
    }
    s = evlm_plan_config(path, json, len, params, out);
    free(json);
    if (s == EVLM_OK && weights) out->params_file = count_tensors(path);
    return s;
}
