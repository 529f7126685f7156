/*
 * decoder.c - the text decoder every family runs (Llama-style blocks): weight binding and the
 * batched float32 forward pass (see decoder.h). Numerics follow transformers' LlamaModel: RMSNorm
 * in float32, rotate-half RoPE with inv_freq computed as torch does in float32, softmax attention
 * scaled by head_dim^-0.5, SwiGLU MLP.
 */
#include "model/decoder.h"
#include "quant/repack.h"
#include "kernels/attn_kv.h"
#include "kernels/matmul.h"
#include "core/status.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- weight binding ----------------------------------------------------------------------- */

static const char *k_prefixes[] = {"model.text_model.", "model.language_model.", "model.", ""};

static bool has(const evlm_weights *w, const char *name) {
    return evlm_weights_find(w, name) != NULL;
}

/* ---- low-rank factors ---------------------------------------------------------------------- */

static const char *const k_stems[EVLM_DECODER_LR_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

const char *evlm_decoder_matrix_stem(int i) {
    return i >= 0 && i < EVLM_DECODER_LR_COUNT ? k_stems[i] : "?";
}

/* Binds "<pre><stem>.lowrank_a" [r, in] and ".lowrank_b" [out, r] of matrix i when present;
 * *present says whether they are. Hostile shapes (a factor without the other, r = 0,
 * r > min(in, out), wrong in / out, ranks that disagree) are errors naming the tensor. */
static evlm_status bind_lowrank(evlm_decoder *m, const evlm_weights *w, const char *pre, int i,
                                int64_t in, int64_t out, evlm_decoder_layer *ly, bool *present) {
    char na[256], nb[256];
    snprintf(na, sizeof na, "%s%s.lowrank_a", pre, k_stems[i]);
    snprintf(nb, sizeof nb, "%s%s.lowrank_b", pre, k_stems[i]);
    const evlm_tensor *a = evlm_weights_find(w, na), *b = evlm_weights_find(w, nb);
    *present = a || b;
    if (!a && !b) return EVLM_OK;
    if (!a || !b)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s' comes without '%s'",
                          evlm_weights_path(w), a ? na : nb, a ? nb : na);
    if (a->n_dims != 2 || b->n_dims != 2)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: tensor '%s': a low-rank factor is a 2-D matrix",
                          evlm_weights_path(w), a->n_dims != 2 ? na : nb);
    int64_t r = a->ne[1], max_r = in < out ? in : out;
    if (a->ne[0] != in)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s' has %lld columns, the matrix's input width is %lld",
                          evlm_weights_path(w), na, (long long)a->ne[0], (long long)in);
    if (r < 1 || r > max_r)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s': rank %lld is outside [1, min(in, out) = %lld]",
                          evlm_weights_path(w), na, (long long)r, (long long)max_r);
    if (b->ne[0] != r)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s' has %lld columns, its '%s' has rank %lld",
                          evlm_weights_path(w), nb, (long long)b->ne[0], na, (long long)r);
    if (b->ne[1] != out)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor '%s' has %lld rows, the matrix's output width is %lld",
                          evlm_weights_path(w), nb, (long long)b->ne[1], (long long)out);
    EVLM_TRY(evlm_weights_get_matrix(w, na, in, r, &ly->lr[i].a));
    EVLM_TRY(evlm_weights_get_matrix(w, nb, r, out, &ly->lr[i].b));
    if (r > m->lr_max_rank) m->lr_max_rank = (int)r;
    return EVLM_OK;
}

evlm_status evlm_decoder_init(evlm_decoder *m, const evlm_decoder_config *cfg,
                              const evlm_weights *w) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const int H = cfg->hidden_size, F = cfg->intermediate_size, L = cfg->n_layers;
    const int QD = cfg->n_heads * cfg->head_dim, KD = cfg->n_kv_heads * cfg->head_dim;
    char name[256];

    const char *prefix = NULL;
    for (size_t i = 0; i < sizeof k_prefixes / sizeof *k_prefixes && !prefix; i++) {
        snprintf(name, sizeof name, "%sembed_tokens.weight", k_prefixes[i]);
        if (has(w, name)) prefix = k_prefixes[i];
    }
    if (!prefix)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: no token embedding tensor (looked for '*embed_tokens.weight')",
                          evlm_weights_path(w));
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix);

    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) return evlm__fail(EVLM_ERR_NOMEM, "out of memory binding weights");
    evlm_status st = EVLM_OK;
#define M(field, suffix, cols, rows) EVLM_BIND_MAT(evlm_decoder_layer, field, suffix, cols, rows)
#define V(field, suffix, n)          EVLM_BIND_VEC(evlm_decoder_layer, field, suffix, n)
    evlm_bind base[] = {
        V(attn_norm, "input_layernorm.weight", H),
        V(ffn_norm, "post_attention_layernorm.weight", H),
        M(wq, "self_attn.q_proj.weight", H, QD),
        M(wk, "self_attn.k_proj.weight", H, KD),
        M(wv, "self_attn.v_proj.weight", H, KD),
        M(wo, "self_attn.o_proj.weight", QD, H),
        M(w_gate, "mlp.gate_proj.weight", H, F),
        M(w_up, "mlp.up_proj.weight", H, F),
        M(w_down, "mlp.down_proj.weight", F, H),
    };
    /* Qwen2 has q/k/v biases (without saying so in its config) but no o_proj bias; Llama's
     * attention_bias has all four */
    evlm_bind attn_bias[] = {
        V(bq, "self_attn.q_proj.bias", QD),
        V(bk, "self_attn.k_proj.bias", KD),
        V(bv, "self_attn.v_proj.bias", KD),
        V(bo, "self_attn.o_proj.bias", H),
    };
    attn_bias[3].optional = true;
    const evlm_bind mlp_bias[] = {
        V(b_gate, "mlp.gate_proj.bias", F),
        V(b_up, "mlp.up_proj.bias", F),
        V(b_down, "mlp.down_proj.bias", H),
    };
#undef M
#undef V
    char pre[128];
    for (int l = 0; l < L && st == EVLM_OK; l++) {
        evlm_decoder_layer *ly = &m->layers[l];
        snprintf(pre, sizeof pre, "%slayers.%d.", prefix, l);
        /* matrices 0..6 are rows 2..8 of base; a factored one may go without its weight */
        for (int i = 0; i < EVLM_DECODER_LR_COUNT && st == EVLM_OK; i++) {
            bool lr = false;
            st = bind_lowrank(m, w, pre, i, base[2 + i].ne[0], base[2 + i].ne[1], ly, &lr);
            base[2 + i].optional = lr;
        }
        if (st == EVLM_OK)
            st = evlm_weights_bind(w, pre, base, sizeof base / sizeof *base, ly, &m->floats);
        const evlm_tensor *const mats[] = {ly->wq,     ly->wk,   ly->wv,    ly->wo,
                                           ly->w_gate, ly->w_up, ly->w_down};
        for (int i = 0; i < EVLM_DECODER_LR_COUNT && st == EVLM_OK; i++) m->lr_no_dense += !mats[i];
        snprintf(name, sizeof name, "%sself_attn.q_proj.bias", pre);
        if (st == EVLM_OK && (cfg->attention_bias || has(w, name)))
            st = evlm_weights_bind(w, pre, attn_bias, 4, ly, &m->floats);
        snprintf(name, sizeof name, "%smlp.gate_proj.bias", pre);
        if (st == EVLM_OK && (cfg->mlp_bias || has(w, name)))
            st = evlm_weights_bind(w, pre, mlp_bias, 3, ly, &m->floats);
    }
    if (st != EVLM_OK) goto fail;
    float *p = evlm_fstore_alloc(&m->floats, (size_t)H);
    if (!p) {
        st = evlm__fail(EVLM_ERR_NOMEM, "out of memory binding weights");
        goto fail;
    }
    snprintf(name, sizeof name, "%snorm.weight", prefix);
    if ((st = evlm_weights_get_vector(w, name, H, p)) != EVLM_OK) goto fail;
    m->out_norm = p;

    snprintf(name, sizeof name, "%sembed_tokens.weight", prefix);
    if ((st = evlm_weights_get_matrix(w, name, H, cfg->vocab_size, &m->tok_embd)) != EVLM_OK)
        goto fail;
    m->rope_bf16 = strcmp(cfg->dtype, "bfloat16") == 0;
    if (has(w, "lm_head.weight")) {
        if ((st = evlm_weights_get_matrix(w, "lm_head.weight", H, cfg->vocab_size, &m->lm_head)) !=
            EVLM_OK)
            goto fail;
    } else if (cfg->tie_word_embeddings) {
        m->lm_head = m->tok_embd;
    } else {
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: no 'lm_head.weight' and tie_word_embeddings is false",
                        evlm_weights_path(w));
        goto fail;
    }
    return EVLM_OK;
fail:
    evlm_decoder_release(m);
    return st;
}

void evlm_decoder_release(evlm_decoder *m) {
    evlm_greedy_head_release(&m->greedy);
    evlm_fstore_free(&m->floats);
    free(m->layers);
    m->layers = NULL;
}

/* ---- state -------------------------------------------------------------------------------- */

/* inv_freq exactly as transformers computes it in float32, then the rope_type adjustments.
 * bf16: transformers keeps inv_freq as a floating buffer, so a model that was cast to bfloat16
 * (config "dtype" / "torch_dtype" of the text model = bfloat16, e.g. the reference fixtures,
 * made with .to(bfloat16).float()) carries bf16-rounded frequencies, while a model saved from
 * float32 (scenes-vlm: text_config.dtype = float32) keeps exact ones. We follow the config. */
static void rope_inv_freq(const evlm_decoder_config *c, bool bf16, float *inv, int half) {
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        float pw = (float)pow(c->rope_theta, (double)e);
        inv[i] = 1.0f / pw;
    }
    if (c->rope_type == EVLM_ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] /= c->rope_factor;
    } else if (c->rope_type == EVLM_ROPE_LLAMA3) {
        const double pi = 3.14159265358979323846;
        double old = c->rope_original_max_pos, lo = c->rope_low_freq_factor,
               hi = c->rope_high_freq_factor, factor = c->rope_factor;
        double low_wl = old / lo, high_wl = old / hi;
        for (int i = 0; i < half; i++) {
            double f = inv[i], wl = 2 * pi / f;
            double r = wl > low_wl ? f / factor : f;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                double smooth = (old / wl - lo) / (hi - lo);
                r = (1 - smooth) * r / factor + smooth * r;
            }
            inv[i] = (float)r;
        }
    }
    if (bf16)
        for (int i = 0; i < half; i++) inv[i] = evlm_bf16_to_f32(evlm_f32_to_bf16(inv[i]));
}

void evlm_decoder_rope_inv_freq(const evlm_decoder *m, float *inv) {
    rope_inv_freq(&m->cfg, m->rope_bf16, inv, m->cfg.head_dim / 2);
}

evlm_status evlm_decoder_state_init(evlm_decoder_state *s, const evlm_decoder *m, int n_ctx,
                                    int n_batch, int n_threads, evlm_type kv_type) {
    memset(s, 0, sizeof *s);
    const evlm_decoder_config *c = &m->cfg;
    if (n_ctx < 1 || n_batch < 1 || n_threads < 1)
        return evlm__fail(EVLM_ERR_ARG, "context size, batch and threads must be positive");
    const int kv = evlm_type_traits_of(kv_type)->kv; /* what the type is as a cache element */
    if (!kv)
        return evlm__fail(EVLM_ERR_ARG, "the KV cache holds f32, f16 or int8, not %s",
                          evlm_type_name(kv_type));
    s->kv_type = kv_type;
    const size_t H = c->hidden_size, F = c->intermediate_size, HD = c->head_dim;
    const size_t QD = (size_t)c->n_heads * HD, KD = (size_t)c->n_kv_heads * HD;
    const size_t B = (size_t)n_batch, C = (size_t)n_ctx, L = (size_t)c->n_layers;
    size_t maxk = H > F ? H : F;
    if (QD > maxk) maxk = QD;
    s->scratch_per_thread = maxk + C;
    if (kv_type == EVLM_TYPE_F32 &&
        s->scratch_per_thread < EVLM_ATTN_ROWS * C) /* attn_rows' scores */
        s->scratch_per_thread = EVLM_ATTN_ROWS * C;
    if (s->scratch_per_thread < evlm_attn_tile_scratch((int)C, (int)HD)) /* prefill's attn_tile */
        s->scratch_per_thread = evlm_attn_tile_scratch((int)C, (int)HD);
    /* the k, v cache in floats' worth: f16 halves it, int8 quarters it plus a scale per row */
    size_t kv_floats = (2 * L * KD * C * evlm_type_size(kv_type) + 3) / 4;
    if (kv == EVLM_TYPE_KV_SCALED) kv_floats += 2 * L * (size_t)c->n_kv_heads * C;
    size_t n_floats = kv_floats + C * HD                                /* cos + sin */
                      + 2 * B * H + 2 * B * QD + 2 * B * KD + 2 * B * F /* activations */
                      + s->scratch_per_thread * (size_t)n_threads +
                      B * HD                            /* M-RoPE cos | sin per token */
                      + (C * (size_t)n_threads + 3) / 4 /* mask rows (bytes) */
                      + 16;                             /* realignment after the cache */
    if (n_floats > ((size_t)1 << 40) / sizeof(float))
        return evlm__fail(EVLM_ERR_NOMEM, "context of %d tokens needs too much memory", n_ctx);
    s->arena_bytes = n_floats * sizeof(float);
    s->arena = calloc(n_floats, sizeof(float));
    if (!s->arena)
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB for the context",
                          s->arena_bytes >> 20);
    float *p = s->arena;
#define CARVE(field, count)                                                                        \
    do {                                                                                           \
        s->field = p;                                                                              \
        p += (count);                                                                              \
    } while (0)
    if (kv == EVLM_TYPE_KV_SCALED) {
        CARVE(k_scale, L * (size_t)c->n_kv_heads * C);
        CARVE(v_scale, L * (size_t)c->n_kv_heads * C);
    }
    s->k_cache = p;
    p = (float *)(void *)((char *)p + L * KD * C * evlm_type_size(kv_type));
    s->v_cache = p;
    p = (float *)(void *)((char *)p + L * KD * C * evlm_type_size(kv_type));
    p += ((uintptr_t)p & 63) ? (64 - ((uintptr_t)p & 63)) / sizeof(float) : 0; /* realign */
    CARVE(rope_cos, C * HD / 2);
    CARVE(rope_sin, C * HD / 2);
    CARVE(x, B * H);
    CARVE(xb, B * H);
    CARVE(q, B * QD);
    CARVE(att, B * QD);
    CARVE(k, B * KD);
    CARVE(v, B * KD);
    CARVE(hb, B * F);
    CARVE(hb2, B * F);
    CARVE(scratch, s->scratch_per_thread * (size_t)n_threads);
    CARVE(rope_tmp, B * HD);
    s->mask_rows = (uint8_t *)(void *)p;
#undef CARVE
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->mm.scratch = s->scratch;
    s->mm.scratch_stride = s->scratch_per_thread;
    /* always planned (n_batch * max_k / 32 blocks, ~1.25 bytes per activation): matrices may be
     * swapped for quantized ones after the context exists (calibration, sensitivity) */
    s->mm.qbuf_blocks = evlm_matmul_qbuf_blocks(n_batch, (int)maxk);
    s->mm.qbuf = malloc(s->mm.qbuf_blocks * sizeof(evlm_q8a));
    if (!s->mm.qbuf) {
        evlm_decoder_state_release(s);
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate the activation blocks");
    }
    if (m->lr_max_rank > 0) { /* the low-rank paths' A x (a group of 3) and B (A x) */
        size_t max_out = maxk > KD ? maxk : KD;
        s->lr_t = malloc(sizeof(float) * B * 3 * (size_t)m->lr_max_rank);
        s->lr_y = malloc(sizeof(float) * B * max_out);
        if (!s->lr_t || !s->lr_y) {
            evlm_decoder_state_release(s);
            return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate the low-rank activations");
        }
    }
    int half = c->head_dim / 2;
    float inv[512];
    rope_inv_freq(c, m->rope_bf16, inv, half);
    for (int pos = 0; pos < n_ctx; pos++) {
        for (int i = 0; i < half; i++) {
            float a = (float)pos * inv[i]; /* torch: float32 product */
            s->rope_cos[(size_t)pos * half + i] = (float)cos((double)a);
            s->rope_sin[(size_t)pos * half + i] = (float)sin((double)a);
        }
    }
    return EVLM_OK;
}

void evlm_decoder_state_release(evlm_decoder_state *s) {
    evlm_greedy_work_release(&s->greedy);
    free(s->lr_t);
    free(s->lr_y);
    free(s->mm.qbuf);
    free(s->arena);
    memset(s, 0, sizeof *s);
}

/* ---- parallel tasks ------------------------------------------------------------------------ */

/* y (m, w rows) = x (m, w cols) @ w^T + bias */
static void matmul(evlm_decoder_state *s, float *y, size_t ldy, const float *x, size_t ldx,
                   const evlm_tensor *w, const float *bias, int m) {
    evlm_matmul(&s->mm, y, ldy, x, ldx, w, bias, m);
}

/* Products of one x (m rows): outs[j] is matrix idx[j] of layer ly, whose weight (outs[j].w) may
 * be NULL when it is factored. The dense products run in one hand-off; then each factored one
 * adds its low-rank path y += B (A x) (the A products of the group in one hand-off), or makes
 * y = B (A x) + bias without a dense weight. Every element is computed in a fixed order, so the
 * results stay independent of thread count and batch. */
static void linear_n(evlm_decoder_state *s, const evlm_decoder_layer *ly, const float *x,
                     size_t ldx, int m, const evlm_matmul_out *outs, const int *idx, int n_outs) {
    evlm_matmul_out dense[3], a_outs[3];
    int n_dense = 0, n_lr = 0, lr_of[3];
    size_t ldt = 0;
    for (int j = 0; j < n_outs; j++) {
        if (outs[j].w) dense[n_dense++] = outs[j];
        const struct evlm_decoder_lowrank *f = &ly->lr[idx[j]];
        if (!f->a) continue;
        lr_of[n_lr] = j;
        a_outs[n_lr++] = (evlm_matmul_out){NULL, 0, f->a, NULL};
        ldt += (size_t)f->a->ne[1];
    }
    evlm_matmul_n(&s->mm, x, ldx, m, dense, n_dense);
    if (!n_lr) return;
    size_t col = 0;
    for (int i = 0; i < n_lr; i++) { /* A x of each into its columns of lr_t [m][ldt] */
        a_outs[i].y = s->lr_t + col;
        a_outs[i].ldy = ldt;
        col += (size_t)a_outs[i].w->ne[1];
    }
    evlm_matmul_n(&s->mm, x, ldx, m, a_outs, n_lr);
    for (int i = 0; i < n_lr; i++) {
        const evlm_matmul_out *o = &outs[lr_of[i]];
        const evlm_tensor *b = ly->lr[idx[lr_of[i]]].b;
        const float *t = a_outs[i].y;
        if (!o->w) {
            evlm_matmul(&s->mm, o->y, o->ldy, t, ldt, b, o->bias, m);
            continue;
        }
        const size_t out = (size_t)b->ne[1];
        evlm_matmul(&s->mm, s->lr_y, out, t, ldt, b, NULL, m);
        for (int r = 0; r < m; r++) {
            float *y = o->y + (size_t)r * o->ldy;
            const float *d = s->lr_y + (size_t)r * out;
            for (size_t e = 0; e < out; e++) y[e] += d[e];
        }
    }
}

static void observe(evlm_decoder_state *s, int layer, const char *group, const float *x, int m,
                    int k) {
    if (s->observe) s->observe(s->observe_user, layer, group, x, m, k);
}

static void transform(evlm_decoder_state *s, int layer, const char *group, float *x, int m, int k) {
    if (s->transform) s->transform(s->transform_user, layer, group, x, m, k);
}

typedef struct {
    const evlm_kernels *kn;
    const evlm_decoder_config *c;
    evlm_decoder_state *s;
    int layer, n, slot0; /* chunk: n tokens from cache slot slot0 */
    int off, bn;         /* the chunk starts at batch token off of bn */
    const uint8_t *mask; /* the batch's [bn][bn] mask, or NULL (causal) */
} attn_task;

/* f16 / int8 caches: one (token, head) row at a time through evlm_attn_row_kv */
static void attn_fn(void *arg, int ith, int nth) {
    const attn_task *t = arg;
    const evlm_decoder_config *c = t->c;
    evlm_decoder_state *s = t->s;
    const int HD = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads, group = NH / NKV;
    const size_t QD = (size_t)NH * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    float *scores = s->scratch + (size_t)ith * s->scratch_per_thread;
    uint8_t *mrow = s->mask_rows + (size_t)ith * s->n_ctx;
    int r0, r1, filled = -1;
    evlm_split_rows(t->n * NH, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        int i = r / NH, h = r % NH, kvh = h / group;
        size_t base = (((size_t)t->layer * NKV + kvh) * s->n_ctx) * HD;
        const uint8_t *mask = NULL;
        if (t->mask) { /* the cache before the batch, then row off + i of the batch mask */
            if (filled != i) {
                int bslot = t->slot0 - t->off;
                memset(mrow, 1, (size_t)bslot);
                memcpy(mrow + bslot, t->mask + (size_t)(t->off + i) * t->bn,
                       (size_t)(t->off + i) + 1);
                filled = i;
            }
            mask = mrow;
        }
        float *out = s->att + i * QD + (size_t)h * HD;
        const float *q = s->q + i * QD + (size_t)h * HD;
        size_t es = evlm_type_size(s->kv_type), row = base / HD;
        evlm_attn_row_kv(out, q, (const char *)s->k_cache + base * es,
                         (const char *)s->v_cache + base * es, s->kv_type,
                         s->k_scale ? s->k_scale + row : NULL, s->v_scale ? s->v_scale + row : NULL,
                         t->slot0 + i + 1, HD, HD, scale, mask, scores);
    }
}

/* Decoding, token trees and short batches on a float cache: the query rows ordered by kv head,
 * then token, then head, split evenly over the threads; each thread hands its run of rows that
 * share a kv head to attn_rows, which reads each cached key and value once for all of them (a
 * tree of 4 tokens with 3 heads per kv head: one read instead of 12). Rows are bitwise attn_row's,
 * so trees match one-token decoding. */
static void attn_rows_fn(void *arg, int ith, int nth) {
    const attn_task *t = arg;
    const evlm_decoder_config *c = t->c;
    evlm_decoder_state *s = t->s;
    const int HD = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads, group = NH / NKV;
    const size_t QD = (size_t)NH * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    float *scores = s->scratch + (size_t)ith * s->scratch_per_thread;
    const int per_kv = t->n * group, bslot = t->slot0 - t->off;
    int r0, r1;
    evlm_split_rows(NKV * per_kv, ith, nth, &r0, &r1);
    while (r0 < r1) {
        const int kvh = r0 / per_kv;
        int end = (kvh + 1) * per_kv < r1 ? (kvh + 1) * per_kv : r1;
        if (end - r0 > EVLM_ATTN_ROWS) end = r0 + EVLM_ATTN_ROWS;
        float *out[EVLM_ATTN_ROWS];
        const float *q[EVLM_ATTN_ROWS];
        const uint8_t *mask[EVLM_ATTN_ROWS];
        int n_kv[EVLM_ATTN_ROWS], nq = 0;
        for (int r = r0; r < end; r++, nq++) {
            int i = (r % per_kv) / group, h = kvh * group + (r % per_kv) % group;
            out[nq] = s->att + (size_t)i * QD + (size_t)h * HD;
            q[nq] = s->q + (size_t)i * QD + (size_t)h * HD;
            mask[nq] = t->mask ? t->mask + (size_t)(t->off + i) * t->bn : NULL;
            n_kv[nq] = t->slot0 + i + 1;
        }
        size_t base = (((size_t)t->layer * NKV + kvh) * s->n_ctx) * HD;
        t->kn->attn_rows(out, q, nq, (const float *)s->k_cache + base,
                         (const float *)s->v_cache + base, HD, n_kv, bslot, mask, HD, scale,
                         scores);
        r0 = end;
    }
}

/* Prefill (no batch mask, at least ATTN_TILE_MIN tokens, float cache): blocks of ATTN_TILE_Q
 * queries of one head per step through the flash-style attn_tile, causal from the chunk's first
 * slot. Token trees and short batches keep attn_rows (their rows must be the bits of one-token
 * decoding, see kernels.h); a prompt's rows differ from them by float rounding only. */
#define ATTN_TILE_MIN 32
#define ATTN_TILE_Q   64

static void attn_tile_fn(void *arg, int ith, int nth) {
    const attn_task *t = arg;
    const evlm_decoder_config *c = t->c;
    evlm_decoder_state *s = t->s;
    const int HD = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads, group = NH / NKV;
    const int NB = (t->n + ATTN_TILE_Q - 1) / ATTN_TILE_Q;
    const size_t QD = (size_t)NH * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    float *scratch = s->scratch + (size_t)ith * s->scratch_per_thread;
    int r0, r1;
    evlm_split_rows(NH * NB, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        int h = r / NB, i0 = (r % NB) * ATTN_TILE_Q,
            nq = t->n - i0 < ATTN_TILE_Q ? t->n - i0 : ATTN_TILE_Q;
        size_t base = (((size_t)t->layer * NKV + (size_t)(h / group)) * s->n_ctx) * HD;
        const float *kc = (const float *)s->k_cache + base, *vc = (const float *)s->v_cache + base;
        t->kn->attn_tile(s->att + (size_t)i0 * QD + (size_t)h * HD, QD,
                         s->q + (size_t)i0 * QD + (size_t)h * HD, QD, nq, kc, vc, (size_t)HD,
                         t->slot0 + i0 + nq, HD, scale, t->slot0 + i0, scratch);
    }
}

/* ---- forward ------------------------------------------------------------------------------- */

/* cos | sin of token i's position into cs / sn (half floats each): plain RoPE reads the table
 * row of its position; M-RoPE (Qwen2-VL) takes frequency j from the row of the temporal, height
 * or width position, by mrope_section. */
static void token_rope(const evlm_decoder_config *c, const evlm_decoder_state *s,
                       const evlm_decoder_batch *b, int off, int i, int pos, float *cs, float *sn,
                       const float **pc, const float **ps) {
    const int half = c->head_dim / 2;
    if (!b->mrope_pos || (!c->mrope_section[0] && !c->mrope_section[1])) {
        *pc = s->rope_cos + (size_t)pos * half;
        *ps = s->rope_sin + (size_t)pos * half;
        return;
    }
    int j = 0;
    for (int sec = 0; sec < 3; sec++) {
        size_t p = (size_t)b->mrope_pos[(size_t)sec * b->n + off + i];
        for (int e = j + c->mrope_section[sec]; j < e; j++) {
            cs[j] = s->rope_cos[p * half + j];
            sn[j] = s->rope_sin[p * half + j];
        }
    }
    *pc = cs;
    *ps = sn;
}

static const int k_lr_qkv[3] = {EVLM_DECODER_LR_Q, EVLM_DECODER_LR_K, EVLM_DECODER_LR_V},
                 k_lr_o[1] = {EVLM_DECODER_LR_O},
                 k_lr_gate_up[2] = {EVLM_DECODER_LR_GATE, EVLM_DECODER_LR_UP},
                 k_lr_down[1] = {EVLM_DECODER_LR_DOWN};

/* Batch tokens [off, off + n) of b at slots n_past.. (n <= n_batch). */
static evlm_status forward_chunk(const evlm_decoder *m, evlm_decoder_state *s, evlm_pool *pool,
                                 const evlm_decoder_batch *b, int off, int n, float *logits,
                                 int32_t *top) {
    const evlm_kernels *kn = evlm_kernels_get();
    const evlm_decoder_config *c = &m->cfg;
    const int H = c->hidden_size, F = c->intermediate_size, HD = c->head_dim;
    const int QD = c->n_heads * HD, KD = c->n_kv_heads * HD, half = HD / 2;
    const int slot0 = s->n_past;
    const int32_t *ids = b->ids ? b->ids + off : NULL;
    evlm_decoder_inject *inj = b->inject;
    s->mm.pool = pool;

    for (int i = 0; i < n; i++) {
        if (ids && inj && ids[i] == inj->image_token) {
            if (inj->used >= inj->n_rows)
                return evlm__fail(EVLM_ERR_ARG,
                                  "more image tokens in the prompt than image features (%d)",
                                  inj->n_rows);
            memcpy(s->x + (size_t)i * H, inj->rows + (size_t)inj->used++ * H, sizeof(float) * H);
        } else if (ids) {
            if (ids[i] < 0 || ids[i] >= c->vocab_size)
                return evlm__fail(EVLM_ERR_RANGE, "token id %d is outside the vocabulary [0, %d)",
                                  ids[i], c->vocab_size);
            evlm_matrix_row_f32(m->tok_embd, ids[i], s->x + (size_t)i * H);
        } else {
            memcpy(s->x + (size_t)i * H, b->embd + (size_t)(off + i) * H, sizeof(float) * H);
        }
    }

    for (int l = 0; l < c->n_layers; l++) {
        const evlm_decoder_layer *ly = &m->layers[l];
        if (s->residual) s->residual(s->residual_user, l, "residual", s->x, n, H);
        for (int i = 0; i < n; i++)
            kn->rmsnorm(s->xb + (size_t)i * H, s->x + (size_t)i * H, ly->attn_norm, H,
                        c->rms_norm_eps);
        observe(s, l, "attn_qkv", s->xb, n, H);
        transform(s, l, "attn_qkv", s->xb, n, H);
        const evlm_matmul_out qkv[3] = {
            {s->q, QD, ly->wq, ly->bq}, {s->k, KD, ly->wk, ly->bk}, {s->v, KD, ly->wv, ly->bv}};
        linear_n(s, ly, s->xb, H, n, qkv, k_lr_qkv, 3);
        for (int i = 0; i < n; i++) {
            int pos = b->pos ? b->pos[off + i] : slot0 + i + s->pos_offset;
            const float *cs, *sn;
            token_rope(c, s, b, off, i, pos, s->rope_tmp + (size_t)i * HD,
                       s->rope_tmp + (size_t)i * HD + half, &cs, &sn);
            kn->rope(s->q + (size_t)i * QD, c->n_heads, HD, cs, sn);
            kn->rope(s->k + (size_t)i * KD, c->n_kv_heads, HD, cs, sn);
            transform(s, l, "attn_q", s->q + (size_t)i * QD, 1, QD);
            transform(s, l, "kv_key", s->k + (size_t)i * KD, 1, KD);
            transform(s, l, "kv_value", s->v + (size_t)i * KD, 1, KD);
            for (int h = 0; h < c->n_kv_heads; h++) {
                size_t dst = ((((size_t)l * c->n_kv_heads + h) * s->n_ctx) + slot0 + i) * HD;
                size_t es = evlm_type_size(s->kv_type), row = dst / HD;
                evlm_kv_store((char *)s->k_cache + dst * es, s->k_scale ? s->k_scale + row : NULL,
                              s->kv_type, s->k + (size_t)i * KD + (size_t)h * HD, HD);
                evlm_kv_store((char *)s->v_cache + dst * es, s->v_scale ? s->v_scale + row : NULL,
                              s->kv_type, s->v + (size_t)i * KD + (size_t)h * HD, HD);
            }
        }
        /* masks are lower-triangular, so earlier chunks of the batch are in the cache already */
        attn_task at = {kn, c, s, l, n, slot0, off, b->n, b->mask};
        bool f32 = s->kv_type == EVLM_TYPE_F32, tiles = f32 && !b->mask && n >= ATTN_TILE_MIN;
        evlm_pool_run(pool, tiles ? attn_tile_fn : f32 ? attn_rows_fn : attn_fn, &at);
        observe(s, l, "attn_o", s->att, n, QD);
        transform(s, l, "attn_o", s->att, n, QD);
        const evlm_matmul_out o_out = {s->xb, H, ly->wo, ly->bo};
        linear_n(s, ly, s->att, QD, n, &o_out, k_lr_o, 1);
        for (size_t j = 0; j < (size_t)n * H; j++) s->x[j] += s->xb[j];

        for (int i = 0; i < n; i++)
            kn->rmsnorm(s->xb + (size_t)i * H, s->x + (size_t)i * H, ly->ffn_norm, H,
                        c->rms_norm_eps);
        observe(s, l, "ffn_gate_up", s->xb, n, H);
        transform(s, l, "ffn_gate_up", s->xb, n, H);
        const evlm_matmul_out gate_up[2] = {{s->hb, F, ly->w_gate, ly->b_gate},
                                            {s->hb2, F, ly->w_up, ly->b_up}};
        linear_n(s, ly, s->xb, H, n, gate_up, k_lr_gate_up, 2);
        for (int i = 0; i < n; i++) kn->silu_mul(s->hb + (size_t)i * F, s->hb2 + (size_t)i * F, F);
        observe(s, l, "ffn_down", s->hb, n, F);
        transform(s, l, "ffn_down", s->hb, n, F);
        const evlm_matmul_out down_out = {s->xb, H, ly->w_down, ly->b_down};
        linear_n(s, ly, s->hb, F, n, &down_out, k_lr_down, 1);
        for (size_t j = 0; j < (size_t)n * H; j++) s->x[j] += s->xb[j];
    }
    if (s->residual) s->residual(s->residual_user, c->n_layers, "residual", s->x, n, H);
    s->n_past += n;

    if (!logits && !top) return EVLM_OK;
    /* the rows of this chunk whose logits are wanted, gathered into xb */
    int rows = 0, before = 0;
    if (b->out_rows) {
        for (int j = 0; j < b->n_out; j++) {
            int r = b->out_rows[j] - off;
            if (r < 0)
                before++;
            else if (r < n)
                kn->rmsnorm(s->xb + (size_t)rows++ * H, s->x + (size_t)r * H, m->out_norm, H,
                            c->rms_norm_eps);
        }
    } else {
        int first = b->all_logits ? 0 : n - 1;
        for (int i = first; i < n; i++)
            kn->rmsnorm(s->xb + (size_t)rows++ * H, s->x + (size_t)i * H, m->out_norm, H,
                        c->rms_norm_eps);
    }
    if (!rows) return EVLM_OK;
    observe(s, -1, "lm_head", s->xb, rows, H);
    transform(s, -1, "lm_head", s->xb, rows, H);
    if (top) { /* greedy ids only */
        if (!s->greedy.y) EVLM_TRY(evlm_greedy_work_init(&s->greedy, c->vocab_size, H));
        for (int r0 = 0; r0 < rows; r0 += EVLM_GREEDY_ROWS)
            evlm_greedy_argmax(m->greedy.q.data && m->greedy.w == m->lm_head ? &m->greedy : NULL,
                               m->lm_head, &s->mm, &s->greedy, s->xb + (size_t)r0 * H, H,
                               rows - r0 < EVLM_GREEDY_ROWS ? rows - r0 : EVLM_GREEDY_ROWS,
                               top + before + r0);
        return EVLM_OK;
    }
    matmul(s, logits + (size_t)before * c->vocab_size, (size_t)c->vocab_size, s->xb, H, m->lm_head,
           NULL, rows);
    return EVLM_OK;
}

static evlm_status check_batch(const evlm_decoder *m, const evlm_decoder_state *s,
                               const evlm_decoder_batch *b) {
    if (b->n < 1) return evlm__fail(EVLM_ERR_ARG, "nothing to evaluate");
    if (!b->ids && !b->embd)
        return evlm__fail(EVLM_ERR_ARG, "a batch needs token ids or embeddings");
    if (b->top && b->logits)
        return evlm__fail(EVLM_ERR_ARG, "a batch asks for logits or greedy ids, not both");
    if (b->out_rows)
        for (int j = 0; j < b->n_out; j++)
            if (b->out_rows[j] < 0 || b->out_rows[j] >= b->n ||
                (j && b->out_rows[j] <= b->out_rows[j - 1]))
                return evlm__fail(EVLM_ERR_ARG, "logit rows must increase within the batch of %d",
                                  b->n);
    if (s->n_past + b->n > s->n_ctx)
        return evlm__fail(EVLM_ERR_RANGE, "context is full: %d + %d tokens exceed n_ctx = %d",
                          s->n_past, b->n, s->n_ctx);
    for (int i = 0; i < b->n; i++) {
        int pos = b->pos ? b->pos[i] : s->n_past + i + s->pos_offset;
        if (pos < 0 || pos >= s->n_ctx)
            return evlm__fail(EVLM_ERR_RANGE, "token %d: position %d is outside [0, n_ctx = %d)", i,
                              pos, s->n_ctx);
        if (b->mrope_pos)
            for (int sec = 0; sec < 3; sec++) {
                int p = b->mrope_pos[(size_t)sec * b->n + i];
                if (p < 0 || p >= s->n_ctx)
                    return evlm__fail(EVLM_ERR_RANGE,
                                      "token %d: M-RoPE position %d is outside [0, n_ctx = %d)", i,
                                      p, s->n_ctx);
            }
        if (b->mask) {
            const uint8_t *row = b->mask + (size_t)i * b->n;
            if (!row[i])
                return evlm__fail(EVLM_ERR_ARG, "attention mask: token %d does not see itself", i);
            for (int j = i + 1; j < b->n; j++)
                if (row[j])
                    return evlm__fail(EVLM_ERR_ARG,
                                      "attention mask: token %d sees the later token %d", i, j);
        }
    }
    (void)m;
    return EVLM_OK;
}

evlm_status evlm_decoder_decode(const evlm_decoder *m, evlm_decoder_state *s, evlm_pool *pool,
                                const evlm_decoder_batch *b) {
    EVLM_TRY(check_batch(m, s, b));
    const size_t V = (size_t)m->cfg.vocab_size;
    const int n_past0 = s->n_past, used0 = b->inject ? b->inject->used : 0;
    for (int done = 0; done < b->n;) {
        int chunk = b->n - done < s->n_batch ? b->n - done : s->n_batch;
        bool last = done + chunk == b->n;
        float *lg = NULL;
        int32_t *top = NULL;
        if (b->out_rows) { /* forward_chunk finds its rows */
            lg = b->logits;
            top = b->top;
        } else if (b->all_logits) {
            lg = b->logits ? b->logits + (size_t)done * V : NULL;
            top = b->top ? b->top + done : NULL;
        } else if (last) {
            lg = b->logits;
            top = b->top;
        }
        evlm_status st = forward_chunk(m, s, pool, b, done, chunk, lg, top);
        if (st != EVLM_OK) {
            s->n_past = n_past0;
            if (b->inject) b->inject->used = used0;
            return st;
        }
        done += chunk;
    }
    return EVLM_OK;
}

evlm_status evlm_decoder_forward(const evlm_decoder *m, evlm_decoder_state *s, evlm_pool *pool,
                                 const int32_t *ids, const float *embd, evlm_decoder_inject *inject,
                                 int n, float *logits, bool all_logits) {
    evlm_decoder_batch b = {.n = n,
                            .ids = ids,
                            .embd = embd,
                            .inject = inject,
                            .logits = logits,
                            .all_logits = all_logits};
    return evlm_decoder_decode(m, s, pool, &b);
}

evlm_status evlm_decoder_kv_keep(const evlm_decoder *m, evlm_decoder_state *s, int base,
                                 const int *slots, int n_keep) {
    const evlm_decoder_config *c = &m->cfg;
    if (base < 0 || base > s->n_past || n_keep < 0 || base + n_keep > s->n_past)
        return evlm__fail(EVLM_ERR_ARG, "cannot keep %d cache entries from %d (the cache holds %d)",
                          n_keep, base, s->n_past);
    for (int j = 0; j < n_keep; j++) {
        if (slots[j] < base + j || slots[j] >= s->n_past || (j && slots[j] <= slots[j - 1]))
            return evlm__fail(EVLM_ERR_ARG, "cache slots to keep must increase within [%d, %d)",
                              base, s->n_past);
    }
    const size_t HD = (size_t)c->head_dim;
    for (int j = 0; j < n_keep; j++) {
        if (slots[j] == base + j) continue;
        for (int l = 0; l < c->n_layers; l++)
            for (int h = 0; h < c->n_kv_heads; h++) {
                size_t row = ((size_t)l * c->n_kv_heads + h) * s->n_ctx;
                size_t to = row + base + j, from = row + slots[j],
                       es = evlm_type_size(s->kv_type) * HD;
                memmove((char *)s->k_cache + to * es, (char *)s->k_cache + from * es, es);
                memmove((char *)s->v_cache + to * es, (char *)s->v_cache + from * es, es);
                if (s->k_scale) {
                    s->k_scale[to] = s->k_scale[from];
                    s->v_scale[to] = s->v_scale[from];
                }
            }
    }
    s->n_past = base + n_keep;
    return EVLM_OK;
}
