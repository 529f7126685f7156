/*
 * test_siglip.c - the Idefics3 vision tower + connector against transformers on
 * ../shared/fixtures/smolvlm-tiny (image_hidden_states of the 5 reference tiles within
 * 1e-3 * max(1, max|ref|)), bit-identical results for 1 and 2 threads and for any chunking of
 * the tiles, position ids of padded tiles, key masking, the vision config of the real SmolVLM
 * configs (transformers 4.x and 5.x layouts) and its errors, the scenes-vlm model, and weight
 * sets with a missing or misshapen tensor.
 */
#include "core/file.h"
#include "core/json.h"
#include "core/threadpool.h"
#include "io/safetensors.h"
#include "vision/siglip.h"
#include "vision/idefics3_config.h"
#include "test.h"
#include "test_ref.h"

#include <stdint.h>
#include <unistd.h>

/* ---- config -------------------------------------------------------------------------------- */

static void test_configs(const char *shared) {
    char dir[4096];
    evlm_idefics3_config c;

    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    CHECK_OK(evlm_idefics3_config_load(dir, &c));
    CHECK(c.hidden_size == 48 && c.intermediate_size == 96 && c.n_layers == 2 && c.n_heads == 2);
    CHECK(c.head_dim == 24 && c.image_size == 64 && c.patch_size == 8 && c.num_channels == 3);
    CHECK(c.patches_per_side == 8 && c.num_patches == 64 && c.scale_factor == 2);
    CHECK(c.tokens_per_tile == 16 && c.text_hidden_size == 64 && c.image_token_id == 641);
    CHECK(c.layer_norm_eps == 1e-6f);

    snprintf(dir, sizeof dir, "%s/models/scenes-vlm", shared);
    CHECK_OK(evlm_idefics3_config_load(dir, &c));
    CHECK(c.hidden_size == 192 && c.intermediate_size == 768 && c.n_layers == 6 && c.n_heads == 6);
    CHECK(c.image_size == 128 && c.patch_size == 16 && c.tokens_per_tile == 16);
    CHECK(c.text_hidden_size == 256 && c.image_token_id == 49190);

    /* transformers 4.x layout: every PretrainedConfig attribute inside vision_config */
    snprintf(dir, sizeof dir, "%s/reference/smolvlm-256m-instruct", shared);
    CHECK_OK(evlm_idefics3_config_load(dir, &c));
    CHECK(c.hidden_size == 768 && c.intermediate_size == 3072 && c.n_layers == 12);
    CHECK(c.n_heads == 12 && c.image_size == 512 && c.patch_size == 16 && c.scale_factor == 4);
    CHECK(c.tokens_per_tile == 64 && c.text_hidden_size == 576 && c.image_token_id == 49190);

    /* defaults of Idefics3VisionConfig / Idefics3Config / LlamaConfig */
    const char *js = "{\"vision_config\": {\"image_size\": 256}}";
    CHECK_OK(evlm_idefics3_config_parse("d.json", js, strlen(js), &c));
    CHECK(c.hidden_size == 1152 && c.intermediate_size == 3072 && c.n_layers == 12);
    CHECK(c.n_heads == 16 && c.patch_size == 32 && c.scale_factor == 2 && c.tokens_per_tile == 16);
    CHECK(c.text_hidden_size == 4096 && c.image_token_id == 128257 && c.layer_norm_eps == 1e-6f);

    static const struct {
        const char *json, *want;
        evlm_status st;
    } bad[] = {
        {"{\"vision_config\": {\"image_size\": 256, \"hidden_act\": \"gelu\"}}", "hidden_act",
         EVLM_ERR_UNSUPPORTED},
        {"{\"vision_config\": {\"image_size\": 8, \"patch_size\": 16}}", "patch_size",
         EVLM_ERR_FORMAT},
        {"{\"scale_factor\": 3, \"vision_config\": {\"image_size\": 64, \"patch_size\": 8}}",
         "scale_factor", EVLM_ERR_FORMAT},
        {"{\"vision_config\": {\"image_size\": 256, \"hidden_size\": -5}}", "hidden_size",
         EVLM_ERR_FORMAT},
        {"{\"vision_config\": {\"image_size\": 256, \"hidden_size\": 100}}", "num_attention_heads",
         EVLM_ERR_FORMAT},
        {"{\"vision_config\": {\"image_size\": 256, \"layer_norm_eps\": 0}}", "layer_norm_eps",
         EVLM_ERR_FORMAT},
        {"{\"vision_config\": {\"image_size\": 256}, \"text_config\": {\"hidden_size\": 1.5}}",
         "text_config", EVLM_ERR_FORMAT},
        {"{\"vision_config\": [1]}", "vision_config", EVLM_ERR_FORMAT},
        {"{\"vision_config\": {}}", "scale_factor", EVLM_ERR_FORMAT}, /* 224 / 32 = 7 patches */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        evlm_status st =
            evlm_idefics3_config_parse("bad.json", bad[i].json, strlen(bad[i].json), &c);
        CHECKF(st == bad[i].st && strstr(evlm_last_error(), bad[i].want) &&
                   strstr(evlm_last_error(), "bad.json"),
               "case %zu: status %d, error '%s'", i, (int)st, evlm_last_error());
    }
}

/* ---- position ids ------------------------------------------------------------------------- */

static void test_position_ids(void) {
    evlm_idefics3_config c = {0};
    static int32_t ids[256 * 256];
    static uint8_t pm[256 * 256];
    /* a full tile gets 0..N-1 for the grids of real models (Idefics3 8B: 26, SmolVLM 2.2B:
     * 27, SmolVLM 256M / 500M: 32, ...) */
    static const int grids[] = {1, 2, 3, 4, 7, 8, 14, 16, 24, 26, 27, 32, 36, 48, 64, 128, 256};
    for (size_t g = 0; g < sizeof grids / sizeof *grids; g++) {
        int G = grids[g];
        c.patches_per_side = G;
        c.num_patches = G * G;
        memset(pm, 1, (size_t)G * G);
        int n = evlm_siglip_position_ids(&c, pm, ids);
        int ok = n == G * G;
        for (int i = 0; i < G * G && ok; i++) ok = ids[i] == i;
        CHECKF(ok, "full %dx%d grid: position ids are not 0..N-1", G, G);
    }
    /* ... but not for every grid: transformers' float32 buckets of a full 25 x 25 grid put
     * coordinate i / 25 just below boundary i / 25 for some i (computed with the float32
     * rounding of torch.arange and bucketize) */
    {
        static const int want25[25] = {0,  1,  2,  3,  4,  4,  6,  7,  8,  8,  9,  11, 12,
                                       13, 14, 14, 16, 17, 17, 19, 19, 21, 22, 22, 24};
        c.patches_per_side = 25;
        c.num_patches = 625;
        memset(pm, 1, 625);
        CHECK(evlm_siglip_position_ids(&c, pm, ids) == 625);
        int ok = 1;
        for (int y = 0; y < 25; y++)
            for (int x = 0; x < 25; x++) ok &= ids[y * 25 + x] == want25[y] * 25 + want25[x];
        CHECK(ok);
        /* a 20-wide strip of a 27 x 27 grid (SmolVLM 2.2B) */
        static const int want20[20] = {0,  1,  2,  4,  5,  6,  8,  9,  10, 12,
                                       13, 14, 16, 17, 18, 20, 21, 22, 24, 25};
        c.patches_per_side = 27;
        c.num_patches = 729;
        memset(pm, 0, 729);
        for (int x = 0; x < 20; x++) pm[x] = 1;
        CHECK(evlm_siglip_position_ids(&c, pm, ids) == 20);
        ok = 1;
        for (int x = 0; x < 27; x++) ok &= ids[x] == (x < 20 ? want20[x] : 0);
        CHECK(ok);
    }
    /* padded tiles: real patches in the top-left 3 x 5 of an 8 x 8 grid; coordinates
     * {0, 1/3, 2/3} and {0, .2, .4, .6, .8} fall in buckets {0, 2, 5} and {0, 1, 3, 4, 6} */
    c.patches_per_side = 8;
    c.num_patches = 64;
    memset(pm, 0, 64);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++) pm[y * 8 + x] = 1;
    static const int bh[3] = {0, 2, 5}, bw[5] = {0, 1, 3, 4, 6};
    CHECK(evlm_siglip_position_ids(&c, pm, ids) == 15);
    int ok = 1;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            int want = (y < 3 && x < 5) ? bh[y] * 8 + bw[x] : 0;
            ok &= ids[y * 8 + x] == want;
        }
    CHECK(ok);
    /* 4 x 4 of 8 x 8: 1/4 lands exactly on the boundary 2/8, which right=True puts above */
    memset(pm, 0, 64);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) pm[y * 8 + x] = 1;
    CHECK(evlm_siglip_position_ids(&c, pm, ids) == 16);
    CHECK(ids[0] == 0 && ids[1] == 2 && ids[3] == 6 && ids[8] == 16 && ids[27] == 54);
    /* empty, and not a rectangle */
    memset(pm, 0, 64);
    CHECK(evlm_siglip_position_ids(&c, pm, ids) == -1);
    pm[0] = pm[1] = pm[8] = pm[9] = pm[20] = 1;
    CHECK(evlm_siglip_position_ids(&c, pm, ids) == -1);
}

/* ---- the fixture --------------------------------------------------------------------------- */

static void test_fixture(const char *shared) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", dir);
    st_file ref;
    CHECK(st_open(path, &ref));
    if (!ref.hdr) return;
    const int T = 5, S = 64;
    float *pixels = st_get(&ref, "pixel_values", "F32", (size_t)T * 3 * S * S, 4);
    int64_t *mask64 = st_get(&ref, "pixel_attention_mask", "I64", (size_t)T * S * S, 8);
    float *want = st_get(&ref, "image_hidden_states", "F32", (size_t)T * 16 * 64, 4);
    CHECK(pixels && mask64 && want);
    if (!pixels || !mask64 || !want) goto done_ref;
    uint8_t *mask = malloc((size_t)T * S * S);
    for (size_t i = 0; i < (size_t)T * S * S; i++) mask[i] = mask64[i] != 0;

    evlm_idefics3_config cfg;
    evlm_weights *w = NULL;
    evlm_siglip m;
    CHECK_OK(evlm_idefics3_config_load(dir, &cfg));
    CHECK_OK(evlm_weights_open(dir, &w));
    if (!w) goto done_mask;
    CHECK_OK(evlm_siglip_init(&m, &cfg, w));
    const size_t n_out = (size_t)T * cfg.tokens_per_tile * cfg.text_hidden_size;
    float *out[4];
    for (int i = 0; i < 4; i++) out[i] = calloc(n_out, sizeof(float));

    /* 1 and 2 threads, 5 tiles at once; 2 threads, chunks of 2 tiles; no mask */
    static const int threads[4] = {1, 2, 2, 1}, tiles[4] = {5, 5, 2, 5};
    for (int i = 0; i < 4; i++) {
        evlm_pool *pool = NULL;
        evlm_siglip_state s;
        CHECK_OK(evlm_pool_new(threads[i], &pool));
        CHECK_OK(evlm_siglip_state_init(&s, &m, tiles[i], threads[i]));
        if (pool && s.arena)
            CHECK_OK(evlm_siglip_encode(&m, &s, pool, pixels, i == 3 ? NULL : mask, T, out[i]));
        evlm_siglip_state_release(&s);
        evlm_pool_free(pool);
    }
    float mr = max_abs(want, n_out), d = max_diff(out[0], want, n_out);
    float tol = 1e-3f * (mr > 1.0f ? mr : 1.0f);
    printf("image_hidden_states: max |ours - ref| = %.3g (max |ref| = %.3g, bound %.3g)\n",
           (double)d, (double)mr, (double)tol);
    CHECKF(d <= tol, "max diff %g > %g", (double)d, (double)tol);
    for (int t = 0; t < T; t++) {
        size_t per = n_out / T;
        float dt = max_diff(out[0] + t * per, want + t * per, per);
        CHECKF(dt <= tol, "tile %d: max diff %g", t, (double)dt);
    }
    CHECK(memcmp(out[0], out[1], n_out * sizeof(float)) == 0);
    CHECK(memcmp(out[0], out[2], n_out * sizeof(float)) == 0);
    /* the fixture's mask is all ones (full tiles), so no mask gives the same bits */
    CHECK(memcmp(out[0], out[3], n_out * sizeof(float)) == 0);
    for (int i = 0; i < 4; i++) free(out[i]);

    /* a padded tile: real pixels in the top-left 29 x 29 (4 x 4 patches of 8, the last ones
     * partly real). Tokens made only of real patches (2 x 2 of the 4 x 4 shuffled grid) must
     * not see what the padding patches (from pixel 32 on) hold; the others do (padding queries
     * still run). */
    {
        const int D = cfg.text_hidden_size, TPT = cfg.tokens_per_tile;
        float *px = malloc(sizeof(float) * 2 * 3 * S * S);
        uint8_t *pm = calloc(2 * (size_t)S * S, 1);
        float *o = malloc(sizeof(float) * 2 * (size_t)TPT * D);
        for (int v = 0; v < 2; v++)
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++) {
                        int real = y < 29 && x < 29;
                        float val = pixels[((size_t)ch * S + y) * S + x];
                        if (y >= 32 || x >= 32)
                            val = v == 0 ? 0.0f : (float)((x * 7 + y * 3 + ch) % 11) / 5.0f - 1.0f;
                        px[(((size_t)v * 3 + ch) * S + y) * S + x] = val;
                        pm[((size_t)v * S + y) * S + x] = (uint8_t)real;
                    }
        evlm_pool *pool = NULL;
        evlm_siglip_state s;
        CHECK_OK(evlm_pool_new(2, &pool));
        CHECK_OK(evlm_siglip_state_init(&s, &m, 2, 2));
        if (pool && s.arena) CHECK_OK(evlm_siglip_encode(&m, &s, pool, px, pm, 2, o));
        CHECK(all_finite(o, 2 * (size_t)TPT * D));
        for (int tok = 0; tok < TPT; tok++) {
            int inner = tok / 4 < 2 && tok % 4 < 2;
            int same = memcmp(o + (size_t)tok * D, o + (size_t)(TPT + tok) * D,
                              sizeof(float) * (size_t)D) == 0;
            CHECKF(same == inner, "padded tile, token %d: same = %d", tok, same);
        }
        /* a mask whose real patches are not a top-left rectangle is refused */
        memset(pm + (size_t)S * S, 0, (size_t)S * S);
        pm[(size_t)S * S + 40 * S + 40] = 1;
        pm[(size_t)S * S] = 1;
        if (pool && s.arena) {
            evlm_status st = evlm_siglip_encode(&m, &s, pool, px, pm, 2, o);
            CHECKF(st == EVLM_ERR_ARG && strstr(evlm_last_error(), "tile 1"), "%s",
                   evlm_last_error());
            CHECK(evlm_siglip_encode(&m, &s, pool, px, pm, 0, o) == EVLM_ERR_ARG);
        }
        evlm_siglip_state_release(&s);
        evlm_pool_free(pool);
        free(px);
        free(pm);
        free(o);
    }
    evlm_siglip_release(&m);
    evlm_weights_free(w);
done_mask:
    free(mask);
done_ref:
    free(pixels);
    free(mask64);
    free(want);
    st_close(&ref);
}

/* ---- scenes-vlm ---------------------------------------------------------------------------- */

static void test_scenes(const char *shared) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/scenes-vlm", shared);
    evlm_idefics3_config cfg;
    evlm_weights *w = NULL;
    evlm_siglip m;
    CHECK_OK(evlm_idefics3_config_load(dir, &cfg));
    CHECK_OK(evlm_weights_open(dir, &w));
    if (!w) return;
    CHECK_OK(evlm_siglip_init(&m, &cfg, w));
    CHECK(cfg.tokens_per_tile == 16 && cfg.text_hidden_size == 256);
    const size_t npx = 3 * (size_t)cfg.image_size * cfg.image_size, nout = 16 * 256;
    float *px = malloc(sizeof(float) * npx), *o = malloc(sizeof(float) * (nout + 1));
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < npx; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        px[i] = (float)(r >> 40) / (float)(1u << 23) - 1.0f;
    }
    o[nout] = 12345.0f; /* the encoder writes exactly [16][256] */
    evlm_pool *pool = NULL;
    evlm_siglip_state s;
    CHECK_OK(evlm_pool_new(2, &pool));
    CHECK_OK(evlm_siglip_state_init(&s, &m, 1, 2));
    if (pool && s.arena) CHECK_OK(evlm_siglip_encode(&m, &s, pool, px, NULL, 1, o));
    CHECK(all_finite(o, nout) && max_abs(o, nout) > 0.0f && o[nout] == 12345.0f);
    evlm_siglip_state_release(&s);
    evlm_pool_free(pool);
    free(px);
    free(o);
    evlm_siglip_release(&m);
    evlm_weights_free(w);
}

/* ---- bad weights --------------------------------------------------------------------------- */

/* Rewrites the tiny model without `drop`, or with `reshape` given ne {a, b}; init must fail
 * naming the tensor. */
static void bad_weights(const char *dir, const evlm_idefics3_config *cfg, const char *drop,
                        const char *reshape, const char *want) {
    evlm_weights *w = NULL;
    CHECK_OK(evlm_weights_open(dir, &w));
    if (!w) return;
    size_t n = evlm_weights_count(w), k = 0;
    evlm_tensor *ts = calloc(n, sizeof *ts);
    for (size_t i = 0; i < n; i++) {
        const evlm_tensor *t = evlm_weights_at(w, i);
        if (drop && strcmp(t->name, drop) == 0) continue;
        ts[k] = *t;
        if (reshape && strcmp(t->name, reshape) == 0) {
            ts[k].ne[0] *= 2;
            ts[k].ne[1] /= 2;
            evlm_tensor_set_contiguous(&ts[k]);
        }
        k++;
    }
    char path[256];
    snprintf(path, sizeof path, "/tmp/evlm_test_siglip_%d.safetensors", (int)getpid());
    CHECK_OK(evlm_safetensors_write(path, ts, k));
    evlm_weights *bad = NULL;
    CHECK_OK(evlm_weights_open(path, &bad));
    if (bad) {
        evlm_siglip m;
        evlm_status st = evlm_siglip_init(&m, cfg, bad);
        CHECKF(st == EVLM_ERR_FORMAT && strstr(evlm_last_error(), want), "status %d: %s", (int)st,
               evlm_last_error());
        CHECK(m.floats.head == NULL && m.layers == NULL);
        evlm_weights_free(bad);
    }
    remove(path);
    free(ts);
    evlm_weights_free(w);
}

static void test_bad_weights(const char *shared) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    evlm_idefics3_config cfg;
    CHECK_OK(evlm_idefics3_config_load(dir, &cfg));
    bad_weights(dir, &cfg, "model.vision_model.encoder.layers.1.mlp.fc2.weight", NULL,
                "'model.vision_model.encoder.layers.1.mlp.fc2.weight' not found");
    bad_weights(dir, &cfg, "model.connector.modality_projection.proj.weight", NULL,
                "'model.connector.modality_projection.proj.weight' not found");
    bad_weights(dir, &cfg, "model.vision_model.post_layernorm.bias", NULL,
                "'model.vision_model.post_layernorm.bias' not found");
    bad_weights(dir, &cfg, "model.vision_model.embeddings.patch_embedding.weight", NULL,
                "patch_embedding.weight");
    bad_weights(dir, &cfg, NULL, "model.vision_model.encoder.layers.0.self_attn.q_proj.weight",
                "'model.vision_model.encoder.layers.0.self_attn.q_proj.weight' has shape");
    bad_weights(dir, &cfg, NULL, "model.vision_model.embeddings.position_embedding.weight",
                "'model.vision_model.embeddings.position_embedding.weight' has shape");
    /* a config that does not match the weights */
    evlm_idefics3_config wide = cfg;
    wide.text_hidden_size = 128;
    evlm_weights *w = NULL;
    CHECK_OK(evlm_weights_open(dir, &w));
    if (w) {
        evlm_siglip m;
        evlm_status st = evlm_siglip_init(&m, &wide, w);
        CHECKF(st == EVLM_ERR_FORMAT &&
                   strstr(evlm_last_error(), "modality_projection.proj.weight"),
               "%s", evlm_last_error());
        evlm_weights_free(w);
    }
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    test_configs(shared);
    test_position_ids();
    test_fixture(shared);
    test_scenes(shared);
    test_bad_weights(shared);
    return test_done();
}
