/*
 * siglip.c - Idefics3 / SmolVLM vision tower and connector: weight binding and the batched
 * float32 forward pass over tiles (see siglip.h).
 *
 * Numerics. Everything runs in float32, the way transformers runs the tower in the reference
 * fixtures (weights rounded to bf16 once, activations float32): the patch Conv2d (kernel =
 * stride = patch) is a gemm over patches flattened in the weight's (c, ky, kx) order, plus its
 * bias, plus the position embedding row; each pre-LN encoder block is LayerNorm (biased variance,
 * eps from the config) -> q/k/v projections with bias -> full bidirectional softmax attention
 * per head with scale head_dim^-0.5 (the softmax in float with the row max subtracted) -> out
 * projection -> residual, then LayerNorm -> fc1 -> gelu tanh approximation (gelu_pytorch_tanh)
 * -> fc2 -> residual; then post_layernorm, Idefics3Connector.pixel_shuffle (the exact
 * view / permute / reshape sequence, so the element order of each shuffled row is (dy, dx, d))
 * and the bias-free modality projection. Sums run in index order in float (the ref kernels), so
 * results differ from torch's blocked BLAS / oneDNN reductions only by rounding: on the
 * smolvlm-tiny fixture max |ours - ref| = 8.6e-6 for max |ref| = 11, far inside the 1e-3 bound.
 *
 * Position ids reproduce Idefics3VisionEmbeddings in float32: the patch mask is "any real pixel
 * in the patch"; nb_h / nb_w = real patches in column 0 / row 0; coordinate i = float32(i *
 * float32(1 / nb)) (what both torch.arange(0, 1 - 1e-6, 1 / nb) of transformers <= 4.54 and the
 * h_indices * step form of later releases give); boundaries torch.arange(1/G, 1, 1/G) as torch's
 * scalar CPU loop computes them (start + i * step in double, rounded to float; its AVX2 vector
 * loop, used from 16 elements on, rounds differently, which changes no id for the grids of real
 * models: 24, 26, 27, 32, 36); bucketize(right=True) counts boundaries <= coordinate; the ids go
 * to the real patches in row-major order and padding patches keep id 0. So a full tile gets
 * 0..N-1 on those grids (on some odd ones, e.g. 25, transformers itself repeats ids, and so do
 * we). The smolvlm-tiny fixture pins this for a full 8 x 8 grid.
 *
 * Padding patches are masked as keys only (their queries still run, as in transformers, and feed
 * the connector); instead of adding float32's minimum to their scores we leave them out of the
 * softmax, which gives the same weights since exp() of such a score is exactly 0. Results are
 * bit-identical for any thread count and any chunking of the tiles (every output element is
 * computed by one thread in a fixed order).
 *
 * Not here: image preprocessing, the text decoder, SIMD (the kernel table provides it).
 */
#include "vision/siglip.h"
#include "kernels/matmul.h"
#include "core/status.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- weight binding ----------------------------------------------------------------------- */

static const char *k_prefixes[] = {"model.", ""};

evlm_status evlm_siglip_init(evlm_siglip *m, const evlm_idefics3_config *cfg,
                             const evlm_weights *w) {
    if (!m || !cfg || !w) return evlm__fail(EVLM_ERR_ARG, "evlm_siglip_init: NULL argument");
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const evlm_idefics3_config *c = &m->cfg;
    const int64_t D = c->hidden_size, F = c->intermediate_size, L = c->n_layers;
    const int64_t N = c->num_patches, P = c->patch_size, C = c->num_channels;
    const int64_t S2 = (int64_t)c->scale_factor * c->scale_factor;
    char name[256];

    const char *prefix = NULL;
    for (size_t i = 0; i < sizeof k_prefixes / sizeof *k_prefixes && !prefix; i++) {
        snprintf(name, sizeof name, "%svision_model.embeddings.patch_embedding.weight",
                 k_prefixes[i]);
        if (evlm_weights_find(w, name)) prefix = k_prefixes[i];
    }
    if (!prefix)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: tensor 'model.vision_model.embeddings.patch_embedding.weight' not "
                          "found (no vision tower)",
                          evlm_weights_path(w));
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix);

    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) return evlm__fail(EVLM_ERR_NOMEM, "out of memory binding the vision tower");
    evlm_status st = EVLM_OK;

    /* embeddings: Conv2d weight [D, C, p, p] -> (D, C*p*p) rows in (c, ky, kx) order */
    const evlm_tensor *pw;
    int64_t ne4[4] = {P, P, C, D};
    snprintf(name, sizeof name, "%svision_model.embeddings.patch_embedding.weight", prefix);
    if ((st = evlm_weights_get(w, name, 4, ne4, &pw)) != EVLM_OK) goto fail;
    if ((st = evlm_weights_check_float(w, name, pw)) != EVLM_OK) goto fail;
    m->patch_w = *pw;
    m->patch_w.n_dims = 2;
    m->patch_w.ne[0] = C * P * P;
    m->patch_w.ne[1] = D;
    m->patch_w.ne[2] = m->patch_w.ne[3] = 1;
    evlm_tensor_set_contiguous(&m->patch_w);

#define M(field, suffix, cols, rows) EVLM_BIND_MAT(evlm_siglip_layer, field, suffix, cols, rows)
#define V(field, suffix, n)          EVLM_BIND_VEC(evlm_siglip_layer, field, suffix, n)
    const evlm_bind layer[] = {
        V(ln1_w, "layer_norm1.weight", D),
        V(ln1_b, "layer_norm1.bias", D),
        V(ln2_w, "layer_norm2.weight", D),
        V(ln2_b, "layer_norm2.bias", D),
        M(wq, "self_attn.q_proj.weight", D, D),
        M(wk, "self_attn.k_proj.weight", D, D),
        M(wv, "self_attn.v_proj.weight", D, D),
        M(wo, "self_attn.out_proj.weight", D, D),
        V(bq, "self_attn.q_proj.bias", D),
        V(bk, "self_attn.k_proj.bias", D),
        V(bv, "self_attn.v_proj.bias", D),
        V(bo, "self_attn.out_proj.bias", D),
        M(fc1, "mlp.fc1.weight", D, F),
        M(fc2, "mlp.fc2.weight", F, D),
        V(b_fc1, "mlp.fc1.bias", F),
        V(b_fc2, "mlp.fc2.bias", D),
    };
#undef M
#undef V
#define M(field, suffix, cols, rows) EVLM_BIND_MAT(evlm_siglip, field, suffix, cols, rows)
#define V(field, suffix, n)          EVLM_BIND_VEC(evlm_siglip, field, suffix, n)
    const evlm_bind embd[] = {
        V(patch_b, "vision_model.embeddings.patch_embedding.bias", D),
        {"vision_model.embeddings.position_embedding.weight",
         EVLM_BIND_FLOATS,
         offsetof(evlm_siglip, pos_embd),
         2,
         {D, N},
         false},
    };
    const evlm_bind tail[] = {
        V(post_ln_w, "vision_model.post_layernorm.weight", D),
        V(post_ln_b, "vision_model.post_layernorm.bias", D),
        M(proj, "connector.modality_projection.proj.weight", D * S2, c->text_hidden_size),
    };
#undef M
#undef V
    if ((st = evlm_weights_bind(w, prefix, embd, 2, m, &m->floats)) != EVLM_OK) goto fail;
    char pre[128];
    for (int l = 0; l < (int)L; l++) {
        snprintf(pre, sizeof pre, "%svision_model.encoder.layers.%d.", prefix, l);
        if ((st = evlm_weights_bind(w, pre, layer, sizeof layer / sizeof *layer, &m->layers[l],
                                    &m->floats)) != EVLM_OK)
            goto fail;
    }
    if ((st = evlm_weights_bind(w, prefix, tail, 3, m, &m->floats)) != EVLM_OK) goto fail;
    return EVLM_OK;
fail:
    evlm_siglip_release(m);
    return st;
}

void evlm_siglip_release(evlm_siglip *m) {
    if (!m) return;
    evlm_fstore_free(&m->floats);
    free(m->layers);
    m->layers = NULL;
}

/* ---- state -------------------------------------------------------------------------------- */

evlm_status evlm_siglip_state_init(evlm_siglip_state *s, const evlm_siglip *m, int max_tiles,
                                   int n_threads) {
    if (!s || !m) return evlm__fail(EVLM_ERR_ARG, "evlm_siglip_state_init: NULL argument");
    memset(s, 0, sizeof *s);
    if (max_tiles < 1 || max_tiles > 4096 || n_threads < 1 || n_threads > 1024)
        return evlm__fail(EVLM_ERR_ARG,
                          "vision state: tiles per pass (%d) must be in [1, 4096] and threads "
                          "(%d) in [1, 1024]",
                          max_tiles, n_threads);
    const evlm_idefics3_config *c = &m->cfg;
    const size_t T = (size_t)max_tiles, N = (size_t)c->num_patches, M = T * N;
    const size_t D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    const size_t CPP = (size_t)c->num_channels * c->patch_size * c->patch_size;
    const size_t DS = D * (size_t)c->scale_factor * (size_t)c->scale_factor;
    size_t maxk = D > F ? D : F;
    if (CPP > maxk) maxk = CPP;
    if (DS > maxk) maxk = DS;
    s->scratch_per_thread = maxk + N;
    if (evlm_attn_tile_scratch((int)N, c->head_dim) > s->scratch_per_thread)
        s->scratch_per_thread = evlm_attn_tile_scratch((int)N, c->head_dim);
    /* all terms are bounded by the config limits, so these products cannot overflow */
    size_t n_floats =
        M * CPP + 6 * M * D + M * F + M * D + s->scratch_per_thread * (size_t)n_threads;
    size_t n_ints = M + T;
    size_t bytes = n_floats * sizeof(float) + n_ints * sizeof(int32_t) + M;
    if (bytes > ((size_t)1 << 40) || M > (size_t)1 << 30)
        return evlm__fail(EVLM_ERR_NOMEM, "vision state for %d tiles needs too much memory",
                          max_tiles);
    s->arena = calloc(bytes, 1);
    if (!s->arena)
        return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate %zu MB for the vision state",
                          bytes >> 20);
    s->arena_bytes = bytes;
    float *p = s->arena;
#define CARVE(field, count)                                                                        \
    do {                                                                                           \
        s->field = p;                                                                              \
        p += (count);                                                                              \
    } while (0)
    CARVE(patches, M * CPP);
    CARVE(x, M * D);
    CARVE(xb, M * D);
    CARVE(q, M * D);
    CARVE(k, M * D);
    CARVE(v, M * D);
    CARVE(att, M * D);
    CARVE(hb, M * F);
    CARVE(shuf, M * D);
    CARVE(scratch, s->scratch_per_thread * (size_t)n_threads);
#undef CARVE
    int32_t *ip = (int32_t *)(void *)p;
    s->pos_ids = ip;
    s->n_valid = ip + M;
    s->patch_mask = (uint8_t *)(void *)(ip + M + T);
    s->max_tiles = max_tiles;
    s->n_threads = n_threads;
    s->mm.scratch = s->scratch;
    s->mm.scratch_stride = s->scratch_per_thread;
    bool quant = evlm_type_is_quant(m->patch_w.type) || evlm_type_is_quant(m->proj->type);
    for (int l = 0; l < c->n_layers; l++)
        quant = quant || evlm_type_is_quant(m->layers[l].wq->type) ||
                evlm_type_is_quant(m->layers[l].fc1->type) ||
                evlm_type_is_quant(m->layers[l].fc2->type);
    if (quant) {
        s->mm.qbuf_blocks = evlm_matmul_qbuf_blocks((int)M, (int)maxk);
        s->mm.qbuf = malloc(s->mm.qbuf_blocks * sizeof(evlm_q8a));
        if (!s->mm.qbuf) {
            evlm_siglip_state_release(s);
            return evlm__fail(EVLM_ERR_NOMEM, "cannot allocate the vision activation blocks");
        }
    }
    return EVLM_OK;
}

void evlm_siglip_state_release(evlm_siglip_state *s) {
    if (!s) return;
    free(s->mm.qbuf);
    free(s->arena);
    memset(s, 0, sizeof *s);
}

/* ---- position ids (Idefics3VisionEmbeddings) ----------------------------------------------- */

/* torch.arange(start, end, step) in float32 on the CPU: size ceil((end - start) / step) in
 * double, element i = float(start + i * step) with the accumulation type double. (Vectorized
 * chunks, used from 16 elements on with AVX2, round start + idx * step to float first; with at
 * most 15 coordinates or boundaries, or AVX-512 and 31, every element takes the scalar path.) */
static int torch_arange(double start, double end, double step, float *out, int cap) {
    double size = ceil((end - start) / step);
    if (!(size >= 0.0) || size > (double)cap) return -1;
    int n = (int)size;
    for (int i = 0; i < n; i++) out[i] = (float)(start + step * (double)i);
    return n;
}

/* torch.bucketize(x, boundaries, right=True): the number of boundaries <= x (sorted). */
static int bucketize_right(float x, const float *b, int nb) {
    int i = 0;
    while (i < nb && b[i] <= x) i++;
    return i;
}

int evlm_siglip_position_ids(const evlm_idefics3_config *cfg, const uint8_t *patch_mask,
                             int32_t *pos_ids) {
    const int G = cfg->patches_per_side, N = cfg->num_patches;
    float bound[2 * 256 + 2], ch[2 * 256 + 2], cw[2 * 256 + 2];
    int nbound = torch_arange(1.0 / G, 1.0, 1.0 / G, bound, 2 * 256 + 2);
    int nb_h = 0, nb_w = 0, total = 0;
    for (int i = 0; i < G; i++) {
        nb_h += patch_mask[i * G] != 0;
        nb_w += patch_mask[i] != 0;
    }
    for (int i = 0; i < N; i++) total += patch_mask[i] != 0;
    if (total == 0) {
        evlm__fail(EVLM_ERR_ARG, "the pixel attention mask of a tile has no real pixel");
        return -1;
    }
    if (total != nb_h * nb_w || nb_h == 0 || nb_w == 0) {
        evlm__fail(EVLM_ERR_ARG,
                   "the pixel attention mask of a tile has %d real patches, not the %d x %d "
                   "rectangle its first row and column imply",
                   total, nb_h, nb_w);
        return -1;
    }
    /* 1 / nb_patches is a float32 tensor in transformers; arange reads it back as a double */
    double step_h = (double)(1.0f / (float)nb_h), step_w = (double)(1.0f / (float)nb_w);
    int n_h = torch_arange(0.0, 1.0 - 1e-6, step_h, ch, 2 * 256 + 2);
    int n_w = torch_arange(0.0, 1.0 - 1e-6, step_w, cw, 2 * 256 + 2);
    if (nbound < 0 || n_h != nb_h || n_w != nb_w) {
        evlm__fail(EVLM_ERR_ARG, "position buckets of a %d x %d tile do not match its mask", nb_h,
                   nb_w);
        return -1;
    }
    int k = 0;
    for (int i = 0; i < N; i++) {
        pos_ids[i] = 0;
        if (!patch_mask[i]) continue;
        int bh = bucketize_right(ch[k / nb_w], bound, nbound);
        int bw = bucketize_right(cw[k % nb_w], bound, nbound);
        int id = bh * G + bw;
        pos_ids[i] = id < N ? id : N - 1; /* cannot exceed: coordinates are < 1 */
        k++;
    }
    return total;
}

/* ---- parallel tasks ------------------------------------------------------------------------ */

/* y (m, w rows) = x (m, w cols) @ w^T + bias; rows of x and y are contiguous. */
static void matmul(evlm_pool *pool, evlm_siglip_state *s, float *y, const float *x,
                   const evlm_tensor *w, const float *bias, int m) {
    s->mm.pool = pool;
    evlm_matmul(&s->mm, y, (size_t)w->ne[1], x, (size_t)w->ne[0], w, bias, m);
}

typedef enum {
    ROW_PATCH,     /* patches[r] = pixels of patch r in (c, ky, kx) order */
    ROW_POS,       /* x[r] += pos_embd[pos_ids[r]] */
    ROW_LAYERNORM, /* y[r] = LN(x[r]) */
    ROW_GELU,      /* y[r] = gelu(y[r]) */
    ROW_ADD,       /* x[r] += y[r] */
    ROW_SHUFFLE,   /* y[r] = pixel-shuffled row r of x */
} row_op;

typedef struct {
    const evlm_kernels *kn;
    const evlm_siglip *m;
    evlm_siglip_state *s;
    row_op op;
    int rows, width;
    float *x, *y;
    const float *w, *b, *pixels;
} rows_task;

static void rows_fn(void *arg, int ith, int nth) {
    const rows_task *t = arg;
    const evlm_idefics3_config *c = &t->m->cfg;
    const size_t W = (size_t)t->width;
    int r0, r1;
    evlm_split_rows(t->rows, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        float *xr = t->x ? t->x + (size_t)r * W : NULL;
        float *yr = t->y ? t->y + (size_t)r * W : NULL;
        switch (t->op) {
        case ROW_PATCH: {
            const int G = c->patches_per_side, P = c->patch_size, S = c->image_size;
            const int N = c->num_patches, tile = r / N, py = (r % N) / G, px = (r % N) % G;
            const float *img = t->pixels + (size_t)tile * c->num_channels * S * S;
            float *dst = yr;
            for (int ch = 0; ch < c->num_channels; ch++)
                for (int ky = 0; ky < P; ky++) {
                    const float *src =
                        img + ((size_t)ch * S + (size_t)py * P + ky) * S + (size_t)px * P;
                    memcpy(dst, src, sizeof(float) * (size_t)P);
                    dst += P;
                }
            break;
        }
        case ROW_POS: {
            const float *pe = t->m->pos_embd + (size_t)t->s->pos_ids[r] * W;
            for (size_t i = 0; i < W; i++) xr[i] += pe[i];
            break;
        }
        case ROW_LAYERNORM:
            t->kn->layernorm(yr, xr, t->w, t->b, t->width, c->layer_norm_eps);
            break;
        case ROW_GELU:
            t->kn->gelu_tanh(yr, t->width);
            break;
        case ROW_ADD:
            for (size_t i = 0; i < W; i++) xr[i] += yr[i];
            break;
        case ROW_SHUFFLE: {
            /* Idefics3Connector.pixel_shuffle: row (h2, w2) of the (G/s)^2 grid holds, for
             * k = (dy * s + dx) * D + d, element d of patch (h2 * s + dy, w2 * s + dx). */
            const int G = c->patches_per_side, sf = c->scale_factor, D = c->hidden_size;
            const int GS = G / sf, TPT = c->tokens_per_tile;
            const int tile = r / TPT, h2 = (r % TPT) / GS, w2 = (r % TPT) % GS;
            const float *src = t->x + (size_t)tile * c->num_patches * D;
            float *dst = yr;
            for (int dy = 0; dy < sf; dy++)
                for (int dx = 0; dx < sf; dx++) {
                    size_t patch = (size_t)(h2 * sf + dy) * G + (size_t)(w2 * sf + dx);
                    memcpy(dst, src + patch * D, sizeof(float) * (size_t)D);
                    dst += D;
                }
            break;
        }
        }
    }
}

static void run_rows(evlm_pool *pool, const evlm_kernels *kn, const evlm_siglip *m,
                     evlm_siglip_state *s, row_op op, int rows, int width, float *x, float *y,
                     const float *w, const float *b, const float *pixels) {
    rows_task t = {kn, m, s, op, rows, width, x, y, w, b, pixels};
    evlm_pool_run(pool, rows_fn, &t);
}

typedef struct {
    const evlm_kernels *kn;
    const evlm_siglip *m;
    evlm_siglip_state *s;
    int n_tiles;
} attn_task;

/* Blocks of 64 queries of one (tile, head) per step, each one attn_tile call (a row's result
 * does not depend on the blocks, so any thread count gives the same bytes); keys / values of
 * masked tiles were compacted to the tile's first n_valid rows. */
#define ATTN_QBLOCK 64
static void attn_fn(void *arg, int ith, int nth) {
    const attn_task *t = arg;
    const evlm_idefics3_config *c = &t->m->cfg;
    evlm_siglip_state *s = t->s;
    const int N = c->num_patches, NH = c->n_heads, HD = c->head_dim;
    const int NB = (N + ATTN_QBLOCK - 1) / ATTN_QBLOCK;
    const size_t D = (size_t)c->hidden_size;
    const float scale = (float)(1.0 / sqrt((double)HD));
    float *scratch = s->scratch + (size_t)ith * s->scratch_per_thread;
    int r0, r1;
    evlm_split_rows(t->n_tiles * NH * NB, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        int tile = r / (NH * NB), h = (r / NB) % NH, i0 = (r % NB) * ATTN_QBLOCK;
        int nq = N - i0 < ATTN_QBLOCK ? N - i0 : ATTN_QBLOCK;
        size_t row = (size_t)tile * N + (size_t)i0, base = (size_t)tile * N * D + (size_t)h * HD;
        t->kn->attn_tile(s->att + row * D + (size_t)h * HD, D, s->q + row * D + (size_t)h * HD, D,
                         nq, s->k + base, s->v + base, D, s->n_valid[tile], HD, scale, -1, scratch);
    }
}

/* ---- forward ------------------------------------------------------------------------------- */

/* the state's transform (siglip.h) at one quantization point; nothing without one */
static void hook(evlm_siglip_state *s, int layer, const char *group, float *x, int m, int k) {
    if (s->transform) s->transform(s->transform_user, layer, group, x, m, k);
}

static evlm_status encode_chunk(const evlm_siglip *m, evlm_siglip_state *s, evlm_pool *pool,
                                const float *pixels, const uint8_t *mask, int T, int first,
                                float *out) {
    const evlm_kernels *kn = evlm_kernels_get();
    const evlm_idefics3_config *c = &m->cfg;
    const int N = c->num_patches, G = c->patches_per_side, P = c->patch_size, S = c->image_size;
    const int D = c->hidden_size, F = c->intermediate_size, M = T * N;
    const int CPP = c->num_channels * P * P;

    /* patch masks and position ids */
    for (int t = 0; t < T; t++) {
        uint8_t *pm = s->patch_mask + (size_t)t * N;
        if (!mask) {
            memset(pm, 1, (size_t)N);
        } else {
            const uint8_t *pxm = mask + (size_t)t * S * S;
            for (int py = 0; py < G; py++)
                for (int px = 0; px < G; px++) {
                    uint8_t any = 0;
                    for (int ky = 0; ky < P && !any; ky++) {
                        const uint8_t *row = pxm + ((size_t)py * P + ky) * S + (size_t)px * P;
                        for (int kx = 0; kx < P; kx++) any |= row[kx];
                    }
                    pm[py * G + px] = any != 0;
                }
        }
        int nv = evlm_siglip_position_ids(c, pm, s->pos_ids + (size_t)t * N);
        if (nv < 0) return evlm__fail_prefix(EVLM_ERR_ARG, "vision tile %d", first + t);
        s->n_valid[t] = nv;
    }

    /* embeddings: conv as gemm over flattened patches, + bias, + position embedding */
    run_rows(pool, kn, m, s, ROW_PATCH, M, CPP, NULL, s->patches, NULL, NULL, pixels);
    hook(s, -1, "v_patch", s->patches, M, CPP);
    matmul(pool, s, s->x, s->patches, &m->patch_w, m->patch_b, M);
    run_rows(pool, kn, m, s, ROW_POS, M, D, s->x, NULL, NULL, NULL, NULL);

    for (int l = 0; l < c->n_layers; l++) {
        const evlm_siglip_layer *ly = &m->layers[l];
        run_rows(pool, kn, m, s, ROW_LAYERNORM, M, D, s->x, s->xb, ly->ln1_w, ly->ln1_b, NULL);
        hook(s, l, "v_qkv", s->xb, M, D);
        matmul(pool, s, s->q, s->xb, ly->wq, ly->bq, M);
        matmul(pool, s, s->k, s->xb, ly->wk, ly->bk, M);
        matmul(pool, s, s->v, s->xb, ly->wv, ly->bv, M);
        hook(s, l, "v_q", s->q, M, D);
        hook(s, l, "v_k", s->k, M, D);
        hook(s, l, "v_v", s->v, M, D);
        /* padding patches are no keys: move the real ones to the front of their tile */
        for (int t = 0; t < T; t++) {
            if (s->n_valid[t] == N) continue;
            const uint8_t *pm = s->patch_mask + (size_t)t * N;
            float *kt = s->k + (size_t)t * N * D, *vt = s->v + (size_t)t * N * D;
            for (int i = 0, j = 0; i < N; i++) {
                if (!pm[i]) continue;
                if (i != j) {
                    memcpy(kt + (size_t)j * D, kt + (size_t)i * D, sizeof(float) * (size_t)D);
                    memcpy(vt + (size_t)j * D, vt + (size_t)i * D, sizeof(float) * (size_t)D);
                }
                j++;
            }
        }
        attn_task at = {kn, m, s, T};
        evlm_pool_run(pool, attn_fn, &at);
        hook(s, l, "v_o", s->att, M, D);
        matmul(pool, s, s->xb, s->att, ly->wo, ly->bo, M);
        run_rows(pool, kn, m, s, ROW_ADD, M, D, s->x, s->xb, NULL, NULL, NULL);

        run_rows(pool, kn, m, s, ROW_LAYERNORM, M, D, s->x, s->xb, ly->ln2_w, ly->ln2_b, NULL);
        hook(s, l, "v_fc1", s->xb, M, D);
        matmul(pool, s, s->hb, s->xb, ly->fc1, ly->b_fc1, M);
        run_rows(pool, kn, m, s, ROW_GELU, M, F, NULL, s->hb, NULL, NULL, NULL);
        hook(s, l, "v_fc2", s->hb, M, F);
        matmul(pool, s, s->xb, s->hb, ly->fc2, ly->b_fc2, M);
        run_rows(pool, kn, m, s, ROW_ADD, M, D, s->x, s->xb, NULL, NULL, NULL);
    }
    run_rows(pool, kn, m, s, ROW_LAYERNORM, M, D, s->x, s->xb, m->post_ln_w, m->post_ln_b, NULL);

    /* connector: pixel shuffle, then the bias-free projection straight into out */
    const int rows = T * c->tokens_per_tile;
    const int DS = D * c->scale_factor * c->scale_factor;
    run_rows(pool, kn, m, s, ROW_SHUFFLE, rows, DS, s->xb, s->shuf, NULL, NULL, NULL);
    hook(s, -1, "v_proj", s->shuf, rows, DS);
    matmul(pool, s, out, s->shuf, m->proj, NULL, rows);
    return EVLM_OK;
}

evlm_status evlm_siglip_encode(const evlm_siglip *m, evlm_siglip_state *s, evlm_pool *pool,
                               const float *pixels, const uint8_t *mask, int n_tiles, float *out) {
    if (!m || !s || !pool || !pixels || !out || !s->arena)
        return evlm__fail(EVLM_ERR_ARG, "evlm_siglip_encode: NULL argument");
    if (n_tiles < 1) return evlm__fail(EVLM_ERR_ARG, "evlm_siglip_encode: no tile to encode");
    if (evlm_pool_size(pool) > s->n_threads)
        return evlm__fail(EVLM_ERR_ARG,
                          "evlm_siglip_encode: pool of %d threads, state planned for %d",
                          evlm_pool_size(pool), s->n_threads);
    const evlm_idefics3_config *c = &m->cfg;
    const size_t px_per_tile = (size_t)c->num_channels * c->image_size * c->image_size;
    const size_t mask_per_tile = (size_t)c->image_size * c->image_size;
    const size_t out_per_tile = (size_t)c->tokens_per_tile * c->text_hidden_size;
    for (int done = 0; done < n_tiles;) {
        int chunk = n_tiles - done < s->max_tiles ? n_tiles - done : s->max_tiles;
        evlm_status st = encode_chunk(m, s, pool, pixels + (size_t)done * px_per_tile,
                                      mask ? mask + (size_t)done * mask_per_tile : NULL, chunk,
                                      done, out + (size_t)done * out_per_tile);
        if (st != EVLM_OK) return st;
        done += chunk;
    }
    return EVLM_OK;
}
