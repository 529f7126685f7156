/*
 * qwen2vl_vit.c - Qwen2-VL vision tower + PatchMerger: weight binding and the float32
 * forward pass over one image (see qwen2vl_vit.h).
 *
 * Numerics, as transformers 5 runs the tower in float32 (weights rounded to bf16 once):
 * - PatchEmbed: a Conv3d with kernel = stride = (T, p, p) and no bias is one gemm of the pixel
 *   rows (already in the weight's (c, t, ky, kx) order) with the (D, C*T*p*p) weight view.
 * - Rotary: VisionRotaryEmbedding(head_dim / 2) has head_dim / 4 frequencies
 *   inv_freq[i] = 1 / 10000^(2i / (head_dim / 2)) in float32 (a float buffer: .to(bfloat16)
 *   rounds it, so a BF16 checkpoint carries bf16-rounded frequencies, and so do we); patch
 *   (row, col) gets angles [row * inv_freq, col * inv_freq] (head_dim / 2 values, each used
 *   for dims i and i + head_dim / 2: rotate-half), positions laid out in merge-block order like
 *   the pixel rows.
 * - Blocks: LayerNorm (eps 1e-6) -> fused qkv (+ bias) -> rotary on q and k -> softmax attention
 *   over the patches of the same frame (cu_seqlens), scale head_dim^-0.5 -> proj (+ bias) ->
 *   residual; LayerNorm -> fc1 -> QuickGELU x * sigmoid(1.702 x) (or the configured act) -> fc2
 *   -> residual.
 * - PatchMerger: ln_q per patch, 4 consecutive rows (one merge block) as one row of D * m^2,
 *   Linear -> exact (erf) GELU -> Linear.
 * Sums run in index order in float (the kernel table), so results differ from torch's blocked
 * reductions only by rounding. Every output element is computed by one thread in a fixed order:
 * results do not depend on the thread count.
 *
 * Not here: the image processor, the language model, window attention (Qwen2.5-VL).
 */
#include "vision/qwen2vl_vit.h"
#include "core/status.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- weight binding ----------------------------------------------------------------------- */

static const char *k_prefixes[] = {"model.visual.", "visual."};

evlm_status evlm_qwen2vl_vit_init(evlm_qwen2vl_vit *m, const evlm_qwen2vl_vision_config *cfg,
                                  const evlm_weights *w) {
    if (!m || !cfg || !w) return evlm__fail(EVLM_ERR_ARG, "evlm_qwen2vl_vit_init: NULL argument");
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const evlm_qwen2vl_vision_config *c = &m->cfg;
    const int64_t D = c->embed_dim, F = c->mlp_dim, L = c->depth, MD = c->merged_dim;
    const int64_t P = c->patch_size, T = c->temporal_patch_size, C = c->in_channels;
    char name[256];

    const char *prefix = NULL;
    for (size_t i = 0; i < sizeof k_prefixes / sizeof *k_prefixes && !prefix; i++) {
        snprintf(name, sizeof name, "%spatch_embed.proj.weight", k_prefixes[i]);
        if (evlm_weights_find(w, name)) prefix = k_prefixes[i];
    }
    if (!prefix)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor 'visual.patch_embed.proj.weight' not found (no Qwen2-VL "
                          "vision tower)",
                          evlm_weights_path(w));
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix);

    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) return evlm__fail(EVLM_ERR_NOMEM, "out of memory binding the vision tower");
    evlm_status st = EVLM_OK;

    /* Conv3d weight [D, C, T, p, p]: the loader folds the two innermost dims into ne[0] */
    const evlm_tensor *pw;
    int64_t ne4[4] = {P * P, T, C, D};
    snprintf(name, sizeof name, "%spatch_embed.proj.weight", prefix);
    if ((st = evlm_weights_get(w, name, 4, ne4, &pw)) != EVLM_OK) goto fail;
    if ((st = evlm_weights_check_float(w, name, pw)) != EVLM_OK) goto fail;
    m->patch_w = *pw;
    m->patch_w.n_dims = 2;
    m->patch_w.ne[0] = C * T * P * P;
    m->patch_w.ne[1] = D;
    m->patch_w.ne[2] = m->patch_w.ne[3] = 1;
    evlm_tensor_set_contiguous(&m->patch_w);

#define M(field, suffix, cols, rows)                                                               \
    EVLM_BIND_MAT(evlm_qwen2vl_vit_layer, field, suffix, cols, rows)
#define V(field, suffix, n) EVLM_BIND_VEC(evlm_qwen2vl_vit_layer, field, suffix, n)
    const evlm_bind layer[] = {
        V(ln1_w, "norm1.weight", D),         V(ln1_b, "norm1.bias", D),
        V(ln2_w, "norm2.weight", D),         V(ln2_b, "norm2.bias", D),
        M(qkv, "attn.qkv.weight", D, 3 * D), V(b_qkv, "attn.qkv.bias", 3 * D),
        M(proj, "attn.proj.weight", D, D),   V(b_proj, "attn.proj.bias", D),
        M(fc1, "mlp.fc1.weight", D, F),      V(b_fc1, "mlp.fc1.bias", F),
        M(fc2, "mlp.fc2.weight", F, D),      V(b_fc2, "mlp.fc2.bias", D),
    };
#undef M
#undef V
#define M(field, suffix, cols, rows) EVLM_BIND_MAT(evlm_qwen2vl_vit, field, suffix, cols, rows)
#define V(field, suffix, n)          EVLM_BIND_VEC(evlm_qwen2vl_vit, field, suffix, n)
    const evlm_bind merger[] = {
        V(ln_q_w, "merger.ln_q.weight", D),
        V(ln_q_b, "merger.ln_q.bias", D),
        M(mlp0, "merger.mlp.0.weight", MD, MD),
        V(b_mlp0, "merger.mlp.0.bias", MD),
        M(mlp2, "merger.mlp.2.weight", MD, c->hidden_size),
        V(b_mlp2, "merger.mlp.2.bias", c->hidden_size),
    };
#undef M
#undef V
    char pre[128];
    for (int l = 0; l < (int)L; l++) {
        snprintf(pre, sizeof pre, "%sblocks.%d.", prefix, l);
        if ((st = evlm_weights_bind(w, pre, layer, sizeof layer / sizeof *layer, &m->layers[l],
                                    &m->floats)) != EVLM_OK)
            goto fail;
    }
    if ((st = evlm_weights_bind(w, prefix, merger, 6, m, &m->floats)) != EVLM_OK) goto fail;

    /* VisionRotaryEmbedding(dim = head_dim / 2): 1.0 / theta ** (arange(0, dim, 2) / dim) in
     * float32, rounded to bf16 with the rest of a bf16 checkpoint */
    const int dim = c->head_dim / 2;
    for (int i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim;
        float f = 1.0f / (float)pow((double)c->rope_theta, (double)e);
        if (m->patch_w.type == EVLM_TYPE_BF16) f = evlm_bf16_to_f32(evlm_f32_to_bf16(f));
        m->inv_freq[i] = f;
    }
    return EVLM_OK;
fail:
    evlm_qwen2vl_vit_release(m);
    return st;
}

void evlm_qwen2vl_vit_release(evlm_qwen2vl_vit *m) {
    if (!m) return;
    evlm_fstore_free(&m->floats);
    free(m->layers);
    m->layers = NULL;
}

/* ---- state -------------------------------------------------------------------------------- */

static size_t zmax(size_t a, size_t b) {
    return a > b ? a : b;
}

evlm_status evlm_qwen2vl_vit_state_init(evlm_qwen2vl_vit_state *s, const evlm_qwen2vl_vit *m,
                                        int max_patches, int n_threads) {
    if (!s || !m || !m->layers)
        return evlm__fail(EVLM_ERR_ARG, "evlm_qwen2vl_vit_state_init: NULL argument");
    memset(s, 0, sizeof *s);
    const evlm_qwen2vl_vision_config *c = &m->cfg;
    const int mm = c->spatial_merge_size * c->spatial_merge_size;
    if (max_patches < mm || max_patches > (1 << 20) || n_threads < 1 || n_threads > 1024)
        return evlm__fail(EVLM_ERR_ARG,
                          "vision state: patches (%d) must be in [%d, %d] and threads (%d) in "
                          "[1, 1024]",
                          max_patches, mm, 1 << 20, n_threads);
    const size_t N = (size_t)max_patches, D = (size_t)c->embed_dim, F = (size_t)c->mlp_dim;
    const size_t HD2 = (size_t)c->head_dim / 2;
    size_t maxk = zmax(zmax(D, F), zmax((size_t)c->patch_dim, (size_t)c->merged_dim));
    s->scratch_per_thread = zmax(maxk + N, evlm_attn_tile_scratch((int)N, c->head_dim));
    size_t hb = N * zmax(F, D);
    size_t n_floats =
        N * D * 3 + N * 3 * D + hb + 2 * N * HD2 + s->scratch_per_thread * (size_t)n_threads;
    if (n_floats > ((size_t)1 << 37) / sizeof(float))
        return evlm__fail(EVLM_ERR_NOMEM, "vision state for %d patches needs too much memory",
                          max_patches);
    s->arena = calloc(n_floats, sizeof(float));
    if (!s->arena)
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB for the vision state",
                          n_floats * sizeof(float) >> 20);
    float *p = s->arena;
#define CARVE(field, count)                                                                        \
    do {                                                                                           \
        s->field = p;                                                                              \
        p += (count);                                                                              \
    } while (0)
    CARVE(x, N * D);
    CARVE(xb, N * D);
    CARVE(qkv, N * 3 * D);
    CARVE(att, N * D);
    CARVE(hb, hb);
    CARVE(cos, N * HD2);
    CARVE(sin, N * HD2);
    CARVE(scratch, s->scratch_per_thread * (size_t)n_threads);
#undef CARVE
    s->max_patches = max_patches;
    s->n_threads = n_threads;
    s->mm.scratch = s->scratch;
    s->mm.scratch_stride = s->scratch_per_thread;
    bool quant = evlm_type_is_quant(m->mlp0->type) || evlm_type_is_quant(m->mlp2->type);
    for (int l = 0; l < c->depth; l++)
        quant = quant || evlm_type_is_quant(m->layers[l].qkv->type) ||
                evlm_type_is_quant(m->layers[l].proj->type) ||
                evlm_type_is_quant(m->layers[l].fc1->type) ||
                evlm_type_is_quant(m->layers[l].fc2->type);
    if (quant) {
        s->mm.qbuf_blocks = evlm_matmul_qbuf_blocks(max_patches, (int)maxk);
        s->mm.qbuf = malloc(s->mm.qbuf_blocks * sizeof(evlm_q8a));
        if (!s->mm.qbuf) {
            evlm_qwen2vl_vit_state_release(s);
            return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate the vision activation blocks");
        }
    }
    return EVLM_OK;
}

void evlm_qwen2vl_vit_state_release(evlm_qwen2vl_vit_state *s) {
    if (!s) return;
    free(s->mm.qbuf);
    free(s->arena);
    memset(s, 0, sizeof *s);
}

/* ---- parallel row tasks --------------------------------------------------------------------- */

typedef enum {
    ROW_ROPE_TABLE, /* cos / sin rows of patch r */
    ROW_ROPE,       /* rotary on q and k of row r of qkv */
    ROW_LAYERNORM,  /* y[r] = LN(x[r]) */
    ROW_ACT,        /* y[r] = act(y[r]) */
    ROW_GELU_ERF,   /* y[r] = gelu(y[r]) */
    ROW_ADD,        /* x[r] += y[r] */
    ROW_ATTN,       /* one (head, block of ATTN_QBLOCK queries of one frame) per row */
} row_op;

#define ATTN_QBLOCK 64 /* queries per attention tile */

typedef struct {
    const evlm_kernels *kn;
    const evlm_qwen2vl_vit *m;
    evlm_qwen2vl_vit_state *s;
    row_op op;
    int rows, width;
    int grid_h, grid_w, frame; /* patches per frame for ROW_ATTN / ROW_ROPE_TABLE */
    float *x, *y;
    const float *w, *b;
} rows_task;

static float quick_gelu(float v) {
    return v * (1.0f / (1.0f + expf(-1.702f * v)));
}
static float gelu_erf(float v) {
    return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}

static void rows_fn(void *arg, int ith, int nth) {
    const rows_task *t = arg;
    const evlm_qwen2vl_vision_config *c = &t->m->cfg;
    const size_t W = (size_t)t->width;
    const int HD = c->head_dim, HD2 = HD / 2, NH = c->n_heads, D = c->embed_dim;
    int r0, r1;
    evlm_split_rows(t->rows, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        float *xr = t->x ? t->x + (size_t)r * W : NULL;
        float *yr = t->y ? t->y + (size_t)r * W : NULL;
        switch (t->op) {
        case ROW_ROPE_TABLE: {
            /* position of patch r in merge-block order (rot_pos_emb / get_vision_position_ids) */
            const int ms = c->spatial_merge_size, i = r % t->frame;
            const int blk = i / (ms * ms), in = i % (ms * ms), bw_n = t->grid_w / ms;
            const int row = (blk / bw_n) * ms + in / ms, col = (blk % bw_n) * ms + in % ms;
            float *cr = t->s->cos + (size_t)r * HD2, *sr = t->s->sin + (size_t)r * HD2;
            const int q = HD2 / 2;
            for (int k = 0; k < HD2; k++) {
                float f = (float)(k < q ? row : col) * t->m->inv_freq[k % q];
                cr[k] = (float)cos((double)f);
                sr[k] = (float)sin((double)f);
            }
            break;
        }
        case ROW_ROPE: {
            const float *cr = t->s->cos + (size_t)r * HD2, *sr = t->s->sin + (size_t)r * HD2;
            t->kn->rope(xr, NH, HD, cr, sr);     /* q */
            t->kn->rope(xr + D, NH, HD, cr, sr); /* k */
            break;
        }
        case ROW_LAYERNORM:
            t->kn->layernorm(yr, xr, t->w, t->b, t->width, c->layer_norm_eps);
            break;
        case ROW_ACT:
            if (c->act == EVLM_QWEN2VL_GELU_TANH) {
                t->kn->gelu_tanh(yr, t->width);
            } else if (c->act == EVLM_QWEN2VL_GELU) {
                for (size_t i = 0; i < W; i++) yr[i] = gelu_erf(yr[i]);
            } else {
                for (size_t i = 0; i < W; i++) yr[i] = quick_gelu(yr[i]);
            }
            break;
        case ROW_GELU_ERF:
            for (size_t i = 0; i < W; i++) yr[i] = gelu_erf(yr[i]);
            break;
        case ROW_ADD:
            for (size_t i = 0; i < W; i++) xr[i] += yr[i];
            break;
        case ROW_ATTN: {
            /* rows of qkv are [q (D) | k (D) | v (D)], heads contiguous inside each; a block of
             * queries of one frame against that frame's keys, one attn_tile call (a query's
             * result does not depend on its block, so any thread count gives the same bytes) */
            const int nbf = (t->frame + ATTN_QBLOCK - 1) / ATTN_QBLOCK, per_head = t->rows / NH;
            const int h = r / per_head, b = r % per_head, f = b / nbf, q0 = (b % nbf) * ATTN_QBLOCK;
            const int nq = t->frame - q0 < ATTN_QBLOCK ? t->frame - q0 : ATTN_QBLOCK;
            const size_t ld = 3 * (size_t)D, i0 = (size_t)f * t->frame + (size_t)q0;
            const float *q = t->s->qkv + i0 * ld + (size_t)h * HD;
            const float *k = t->s->qkv + (size_t)f * t->frame * ld + (size_t)D + (size_t)h * HD;
            float *scratch = t->s->scratch + (size_t)ith * t->s->scratch_per_thread;
            t->kn->attn_tile(t->s->att + i0 * (size_t)D + (size_t)h * HD, (size_t)D, q, ld, nq, k,
                             k + D, ld, t->frame, HD, (float)(1.0 / sqrt((double)HD)), -1, scratch);
            break;
        }
        }
    }
}

static void run_rows(evlm_pool *pool, const rows_task *proto, row_op op, int rows, int width,
                     float *x, float *y, const float *w, const float *b) {
    rows_task t = *proto;
    t.op = op;
    t.rows = rows;
    t.width = width;
    t.x = x;
    t.y = y;
    t.w = w;
    t.b = b;
    evlm_pool_run(pool, rows_fn, &t);
}

/* y (m, w rows) = x (m, w cols) @ w^T + bias; rows of x and y are contiguous. */
static void matmul(evlm_pool *pool, evlm_qwen2vl_vit_state *s, float *y, const float *x,
                   const evlm_tensor *w, const float *bias, int m) {
    s->mm.pool = pool;
    evlm_matmul(&s->mm, y, (size_t)w->ne[1], x, (size_t)w->ne[0], w, bias, m);
}

/* ---- forward ------------------------------------------------------------------------------- */

evlm_status evlm_qwen2vl_vit_encode(const evlm_qwen2vl_vit *m, evlm_qwen2vl_vit_state *s,
                                    evlm_pool *pool, const float *pixels, int grid_t, int grid_h,
                                    int grid_w, float *out) {
    if (!m || !s || !pool || !pixels || !out || !s->arena || !m->layers)
        return evlm__fail(EVLM_ERR_ARG, "evlm_qwen2vl_vit_encode: NULL argument");
    if (evlm_pool_size(pool) > s->n_threads)
        return evlm__fail(EVLM_ERR_ARG,
                          "evlm_qwen2vl_vit_encode: pool of %d threads, state planned for %d",
                          evlm_pool_size(pool), s->n_threads);
    const evlm_qwen2vl_vision_config *c = &m->cfg;
    const int ms = c->spatial_merge_size;
    if (grid_t < 1 || grid_h < ms || grid_w < ms || grid_h % ms || grid_w % ms ||
        (int64_t)grid_t * grid_h * grid_w > s->max_patches)
        return evlm__fail(EVLM_ERR_ARG,
                          "qwen2vl vision: grid (%d, %d, %d) must be positive multiples of the "
                          "merge size %d with at most %d patches",
                          grid_t, grid_h, grid_w, ms, s->max_patches);
    const evlm_kernels *kn = evlm_kernels_get();
    const int frame = grid_h * grid_w, N = grid_t * frame;
    const int D = c->embed_dim, F = c->mlp_dim, HD2 = c->head_dim / 2;
    rows_task proto;
    memset(&proto, 0, sizeof proto);
    proto.kn = kn;
    proto.m = m;
    proto.s = s;
    proto.grid_h = grid_h;
    proto.grid_w = grid_w;
    proto.frame = frame;

    matmul(pool, s, s->x, pixels, &m->patch_w, NULL, N);
    run_rows(pool, &proto, ROW_ROPE_TABLE, N, HD2, NULL, NULL, NULL, NULL);

    for (int l = 0; l < c->depth; l++) {
        const evlm_qwen2vl_vit_layer *ly = &m->layers[l];
        run_rows(pool, &proto, ROW_LAYERNORM, N, D, s->x, s->xb, ly->ln1_w, ly->ln1_b);
        matmul(pool, s, s->qkv, s->xb, ly->qkv, ly->b_qkv, N);
        run_rows(pool, &proto, ROW_ROPE, N, 3 * D, s->qkv, NULL, NULL, NULL);
        run_rows(pool, &proto, ROW_ATTN,
                 c->n_heads * (N / frame) * ((frame + ATTN_QBLOCK - 1) / ATTN_QBLOCK), 0, NULL,
                 NULL, NULL, NULL);
        matmul(pool, s, s->xb, s->att, ly->proj, ly->b_proj, N);
        run_rows(pool, &proto, ROW_ADD, N, D, s->x, s->xb, NULL, NULL);

        run_rows(pool, &proto, ROW_LAYERNORM, N, D, s->x, s->xb, ly->ln2_w, ly->ln2_b);
        matmul(pool, s, s->hb, s->xb, ly->fc1, ly->b_fc1, N);
        run_rows(pool, &proto, ROW_ACT, N, F, NULL, s->hb, NULL, NULL);
        matmul(pool, s, s->xb, s->hb, ly->fc2, ly->b_fc2, N);
        run_rows(pool, &proto, ROW_ADD, N, D, s->x, s->xb, NULL, NULL);
    }

    /* merger: ln_q per patch; a merge block's m^2 consecutive rows form one row of D * m^2 */
    const int R = N / (ms * ms), MD = c->merged_dim;
    run_rows(pool, &proto, ROW_LAYERNORM, N, D, s->x, s->xb, m->ln_q_w, m->ln_q_b);
    matmul(pool, s, s->hb, s->xb, m->mlp0, m->b_mlp0, R);
    run_rows(pool, &proto, ROW_GELU_ERF, R, MD, NULL, s->hb, NULL, NULL);
    matmul(pool, s, out, s->hb, m->mlp2, m->b_mlp2, R);
    return EVLM_OK;
}
