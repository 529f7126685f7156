/*
 * test_qwen2vl_vision.c - the Qwen2-VL image processor and vision tower against transformers 5
 * on ../shared/fixtures/qwen2vl-tiny: pixel_values (max difference reported in 1/255 units
 * before normalization; must be within 1/255, bit-exact expected), image_grid_thw exact,
 * image_embeds within 1e-3 * max(1, max|ref|), bit-identical embeddings for 1 and 2 threads,
 * the M-RoPE positions of the fixture prompt (worked out by hand from get_rope_index), smart_resize
 * cases, and clean errors for hostile processor / vision configs, a huge image and bad grids.
 */
#include "core/json.h"
#include "core/threadpool.h"
#include "io/safetensors.h"
#include "vision/image.h"
#include "vision/qwen2vl_proc.h"
#include "vision/qwen2vl_vit.h"
#include "test.h"
#include "test_ref.h"

#include <stdint.h>

static char g_dir[4096];

/* ---- processor ------------------------------------------------------------------------------ */

static void test_proc_config(void) {
    evlm_qwen2vl_proc p;
    CHECK_OK(evlm_qwen2vl_proc_load(g_dir, &p));
    CHECK(p.min_pixels == 3136 && p.max_pixels == 28224);
    CHECK(p.patch_size == 14 && p.merge_size == 2 && p.temporal_patch_size == 2);
    CHECK(p.resample == EVLM_RESAMPLE_BICUBIC && p.do_resize && p.do_rescale && p.do_normalize);
    CHECK(p.image_mean[0] == 0.48145466f && p.image_std[2] == 0.27577711f);

    /* transformers 5: top-level min_pixels / max_pixels override size */
    const char *js = "{\"size\": {\"shortest_edge\": 100, \"longest_edge\": 2000}, \"max_pixels\": "
                     "5000, \"image_processor_type\": \"Qwen2VLImageProcessorPil\"}";
    cJSON *o = cJSON_Parse(js);
    CHECK_OK(evlm_qwen2vl_proc_from_json("p.json", o, &p));
    CHECK(p.min_pixels == 100 && p.max_pixels == 5000);
    cJSON_Delete(o);

    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"size\": {\"shortest_edge\": 0, \"longest_edge\": 100}}", "shortest_edge"},
        {"{\"size\": {\"shortest_edge\": 10, \"longest_edge\": -5}}", "longest_edge"},
        {"{\"max_pixels\": 1e300}", "max_pixels"},
        {"{\"min_pixels\": -1}", "min_pixels"},
        {"{\"size\": 7}", "size"},
        {"{\"patch_size\": 0}", "patch_size"},
        {"{\"patch_size\": 100000}", "patch_size"},
        {"{\"merge_size\": -2}", "merge_size"},
        {"{\"patch_size\": 1000, \"merge_size\": 60}", "merge_size"},
        {"{\"temporal_patch_size\": 1000}", "temporal_patch_size"},
        {"{\"resample\": 9}", "resample"},
        {"{\"rescale_factor\": 0}", "rescale_factor"},
        {"{\"image_std\": [1, 0, 1]}", "image_std"},
        {"{\"image_mean\": [1, 2]}", "image_mean"},
        {"{\"do_resize\": \"yes\"}", "do_resize"},
        {"{\"image_processor_type\": \"SiglipImageProcessor\"}", "image_processor_type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o = cJSON_Parse(bad[i].json);
        CHECKF(o != NULL, "case %zu parses", i);
        evlm_status st = evlm_qwen2vl_proc_from_json("bad.json", o, &p);
        CHECKF(st != EVLM_OK && strstr(evlm_last_error(), bad[i].want) &&
                   strstr(evlm_last_error(), "bad.json"),
               "case %zu: status %d, error '%s'", i, (int)st, evlm_last_error());
        cJSON_Delete(o);
    }
}

static void test_smart_resize(void) {
    int h = 0, w = 0;
    /* round half to even: 42 / 28 = 1.5 -> 2, 70 / 28 = 2.5 -> 2 */
    CHECK_OK(evlm_qwen2vl_smart_resize(42, 70, 28, 56 * 56, 28 * 28 * 1280, &h, &w));
    CHECK(h == 56 && w == 56);
    CHECK_OK(evlm_qwen2vl_smart_resize(60, 90, 28, 3136, 28224, &h, &w));
    CHECK(h == 56 && w == 84);
    /* too small: scaled up, beta = sqrt(3136 / 100) = 5.6 -> ceil(56 / 28) = 2 */
    CHECK_OK(evlm_qwen2vl_smart_resize(10, 10, 28, 3136, 28224, &h, &w));
    CHECK(h == 56 && w == 56);
    /* too large: beta = sqrt(1000 * 1000 / 28224) = 5.952..., floor(168.0 / 28) = 6 */
    CHECK_OK(evlm_qwen2vl_smart_resize(1000, 1000, 28, 3136, 28224, &h, &w));
    CHECK(h == 168 && w == 168);
    /* a thin image scaled down keeps at least one factor per side */
    CHECK_OK(evlm_qwen2vl_smart_resize(20, 3000, 28, 3136, 28224, &h, &w));
    CHECK(h == 28 && w == 2044);
    CHECK(evlm_qwen2vl_smart_resize(10, 2010, 28, 3136, 28224, &h, &w) == EVLM_ERR_ARG);
    CHECK(strstr(evlm_last_error(), "aspect") != NULL);
    CHECK(evlm_qwen2vl_smart_resize(0, 10, 28, 3136, 28224, &h, &w) == EVLM_ERR_ARG);
    CHECK(evlm_qwen2vl_smart_resize(10, 10, 0, 3136, 28224, &h, &w) == EVLM_ERR_ARG);
    CHECK(evlm_qwen2vl_smart_resize(10, 10, 28, -1, 28224, &h, &w) == EVLM_ERR_ARG);
    /* hostile min_pixels: scaled up beyond the output bound */
    CHECK(evlm_qwen2vl_smart_resize(10, 10, 28, (int64_t)1 << 40, (int64_t)1 << 40, &h, &w) ==
          EVLM_ERR_RANGE);
}

static void test_pixels(const st_file *ref) {
    evlm_qwen2vl_proc p;
    CHECK_OK(evlm_qwen2vl_proc_load(g_dir, &p));
    char path[4200];
    snprintf(path, sizeof path, "%s/ref_image.png", g_dir);
    evlm_image img = {0, 0, NULL};
    CHECK_OK(evlm_image_load(path, NULL, &img));
    CHECK(img.w == 90 && img.h == 60);

    int gt = 0, gh = 0, gw = 0, nt = 0;
    CHECK_OK(evlm_qwen2vl_plan(&p, img.w, img.h, &gt, &gh, &gw, &nt));
    int64_t *grid = st_get(ref, "image_grid_thw", "I64", 3, 8);
    CHECK(grid != NULL);
    if (grid) CHECKF(grid[0] == gt && grid[1] == gh && grid[2] == gw, "grid %d %d %d", gt, gh, gw);
    CHECK(nt == 6);
    free(grid);

    evlm_qwen2vl_pixels px;
    CHECK_OK(evlm_qwen2vl_preprocess(&p, &img, &px));
    CHECK(px.grid_t == 1 && px.grid_h == 4 && px.grid_w == 6 && px.n_patches == 24);
    CHECK(px.patch_dim == 1176 && px.n_tokens == 6 && px.resized_w == 84 && px.resized_h == 56);
    float *want = st_get(ref, "pixel_values", "F32", 24 * 1176, 4);
    CHECK(want != NULL);
    if (want && px.pixel_values) {
        double worst = 0; /* in 1/255 units before normalization */
        size_t exact = 0, n = 24 * 1176;
        for (size_t i = 0; i < n; i++) {
            int c = (int)((i % 1176) / (2 * 14 * 14));
            double d =
                fabs((double)px.pixel_values[i] - (double)want[i]) * (double)p.image_std[c] * 255.0;
            worst = d > worst ? d : worst;
            exact += px.pixel_values[i] == want[i];
        }
        printf("pixel_values: max diff %.4f / 255, %zu of %zu bit-exact\n", worst, exact, n);
        CHECKF(worst <= 1.0 + 1e-4, "max diff %g / 255", worst);
        CHECKF(exact == n, "%zu of %zu values differ", n - exact, n);
    }
    free(want);
    evlm_qwen2vl_pixels_free(&px);

    /* hostile sizes on a real image: a huge min_pixels, an unresized odd size */
    evlm_qwen2vl_proc q = p;
    q.min_pixels = q.max_pixels = (int64_t)1 << 40;
    CHECK(evlm_qwen2vl_preprocess(&q, &img, &px) == EVLM_ERR_RANGE && px.pixel_values == NULL);
    q = p;
    q.do_resize = false;
    CHECK(evlm_qwen2vl_preprocess(&q, &img, &px) == EVLM_ERR_ARG && px.pixel_values == NULL);
    q = p;
    q.merge_size = 0;
    CHECK(evlm_qwen2vl_preprocess(&q, &img, &px) == EVLM_ERR_ARG);
    evlm_image_free(&img);

    /* a huge image (never touched: the plan fails first) */
    uint8_t tiny[3] = {0, 0, 0};
    evlm_image huge = {1 << 20, 1 << 20, tiny};
    q = p;
    q.max_pixels = (int64_t)1 << 40;
    CHECK(evlm_qwen2vl_preprocess(&q, &huge, &px) == EVLM_ERR_RANGE && px.pixel_values == NULL);
    CHECK(evlm_qwen2vl_plan(&q, 1 << 30, 1 << 30, NULL, NULL, NULL, NULL) == EVLM_ERR_RANGE);
}

/* ---- M-RoPE positions ------------------------------------------------------------------------ */

static void test_rope_index(const st_file *ref) {
    int64_t *ids64 = st_get(ref, "input_ids", "I64", 31, 8);
    CHECK(ids64 != NULL);
    if (!ids64) return;
    int32_t ids[31], pos[3 * 31], delta = 0;
    for (int i = 0; i < 31; i++) ids[i] = (int32_t)ids64[i];
    free(ids64);
    const int32_t grid[3] = {1, 4, 6};
    CHECK_OK(evlm_qwen2vl_rope_index(ids, 31, 5, 2, grid, 1, pos, &delta));
    /* by hand from get_rope_index: text 0..4, the 2 x 3 merged grid at s = 5
     * (t = 5, h = 5 + row, w = 5 + col), text resumes at 5 + max(2, 3) = 8 */
    int32_t want[3][31];
    for (int i = 0; i < 5; i++) want[0][i] = want[1][i] = want[2][i] = i;
    for (int k = 0; k < 6; k++) {
        want[0][5 + k] = 5;
        want[1][5 + k] = 5 + k / 3;
        want[2][5 + k] = 5 + k % 3;
    }
    for (int i = 11; i < 31; i++) want[0][i] = want[1][i] = want[2][i] = 8 + (i - 11);
    int bad = 0;
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < 31; i++) bad += pos[a * 31 + i] != want[a][i];
    CHECKF(bad == 0, "%d positions differ", bad);
    CHECKF(delta == 28 - 31, "delta %d", delta);

    /* errors: wrong token count, missing grid, unused grid, odd grid */
    const int32_t g2[3] = {1, 4, 4};
    CHECK(evlm_qwen2vl_rope_index(ids, 31, 5, 2, g2, 1, pos, &delta) == EVLM_ERR_ARG);
    CHECK(evlm_qwen2vl_rope_index(ids, 31, 5, 2, grid, 0, pos, &delta) == EVLM_ERR_ARG);
    const int32_t two[6] = {1, 4, 6, 1, 4, 6};
    CHECK(evlm_qwen2vl_rope_index(ids, 31, 5, 2, two, 2, pos, &delta) == EVLM_ERR_ARG);
    const int32_t odd[3] = {1, 3, 6};
    CHECK(evlm_qwen2vl_rope_index(ids, 31, 5, 2, odd, 1, pos, &delta) == EVLM_ERR_ARG);
    /* text only: plain positions, delta 0 */
    CHECK_OK(evlm_qwen2vl_rope_index(ids, 4, 5, 2, NULL, 0, pos, &delta));
    CHECK(pos[3] == 3 && pos[4 + 3] == 3 && pos[8 + 3] == 3 && delta == 0);
}

/* ---- vision tower ---------------------------------------------------------------------------- */

static void test_vision_config(void) {
    evlm_qwen2vl_vision_config c;
    CHECK_OK(evlm_qwen2vl_vision_config_load(g_dir, &c));
    CHECK(c.depth == 2 && c.embed_dim == 32 && c.n_heads == 2 && c.head_dim == 16);
    CHECK(c.mlp_dim == 64 && c.patch_size == 14 && c.temporal_patch_size == 2);
    CHECK(c.in_channels == 3 && c.spatial_merge_size == 2 && c.hidden_size == 64);
    CHECK(c.act == EVLM_QWEN2VL_QUICK_GELU && c.patch_dim == 1176 && c.merged_dim == 128);

    /* Qwen2-VL-2B's vision_config (in_chans, float mlp_ratio) */
    const char *js = "{\"vision_config\": {\"depth\": 32, \"embed_dim\": 1280, \"mlp_ratio\": 4, "
                     "\"num_heads\": 16, \"in_chans\": 3, \"hidden_size\": 1536, \"patch_size\": "
                     "14, \"spatial_merge_size\": 2, \"temporal_patch_size\": 2}}";
    CHECK_OK(evlm_qwen2vl_vision_config_parse("2b.json", js, strlen(js), &c));
    CHECK(c.depth == 32 && c.embed_dim == 1280 && c.mlp_dim == 5120 && c.head_dim == 80);
    CHECK(c.hidden_size == 1536 && c.merged_dim == 5120 && c.act == EVLM_QWEN2VL_QUICK_GELU);

    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"vision_config\": {\"embed_dim\": 100, \"num_heads\": 16}}", "embed_dim"},
        {"{\"vision_config\": {\"embed_dim\": 36, \"num_heads\": 6}}", "multiple of 4"},
        {"{\"vision_config\": {\"hidden_act\": \"relu\"}}", "hidden_act"},
        {"{\"vision_config\": {\"mlp_ratio\": -1}}", "mlp_ratio"},
        {"{\"vision_config\": {\"mlp_ratio\": 1e30}}", "mlp_ratio"},
        {"{\"vision_config\": {\"depth\": 0}}", "depth"},
        {"{\"vision_config\": {\"patch_size\": -14}}", "patch_size"},
        {"{\"vision_config\": {\"spatial_merge_size\": 100000}}", "spatial_merge_size"},
        {"{\"vision_config\": 3}", "vision_config"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        evlm_status st =
            evlm_qwen2vl_vision_config_parse("bad.json", bad[i].json, strlen(bad[i].json), &c);
        CHECKF(st != EVLM_OK && strstr(evlm_last_error(), bad[i].want) &&
                   strstr(evlm_last_error(), "bad.json"),
               "case %zu: status %d, error '%s'", i, (int)st, evlm_last_error());
    }
}

static void test_encode(const st_file *ref) {
    evlm_qwen2vl_vision_config c;
    CHECK_OK(evlm_qwen2vl_vision_config_load(g_dir, &c));
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    evlm_weights *w = NULL;
    CHECK_OK(evlm_weights_open(path, &w));
    if (!w) return;
    evlm_qwen2vl_vit m;
    CHECK_OK(evlm_qwen2vl_vit_init(&m, &c, w));
    CHECK(strcmp(m.prefix, "visual.") == 0);

    float *pix = st_get(ref, "pixel_values", "F32", 24 * 1176, 4);
    float *want = st_get(ref, "image_embeds", "F32", 6 * 64, 4);
    CHECK(pix && want);
    float *out[2] = {calloc(6 * 64, sizeof(float)), calloc(6 * 64, sizeof(float))};
    for (int k = 0; k < 2 && pix && want; k++) {
        evlm_pool *pool = NULL;
        evlm_qwen2vl_vit_state s;
        CHECK_OK(evlm_pool_new(k + 1, &pool));
        CHECK_OK(evlm_qwen2vl_vit_state_init(&s, &m, 64, k + 1));
        CHECK_OK(evlm_qwen2vl_vit_encode(&m, &s, pool, pix, 1, 4, 6, out[k]));
        if (k == 0) {
            float bound = 1e-3f * fmaxf(1.0f, max_abs(want, 6 * 64));
            float d = max_diff(out[k], want, 6 * 64);
            printf("image_embeds: max diff %.3g (bound %.3g, max |ref| %.3g)\n", (double)d,
                   (double)bound, (double)max_abs(want, 6 * 64));
            CHECKF(d <= bound && all_finite(out[k], 6 * 64), "max diff %g > %g", (double)d,
                   (double)bound);
            /* bad grids: odd, larger than planned, zero */
            CHECK(evlm_qwen2vl_vit_encode(&m, &s, pool, pix, 1, 3, 6, out[k]) == EVLM_ERR_ARG);
            CHECK(evlm_qwen2vl_vit_encode(&m, &s, pool, pix, 1, 8, 10, out[k]) == EVLM_ERR_ARG);
            CHECK(evlm_qwen2vl_vit_encode(&m, &s, pool, pix, 0, 4, 6, out[k]) == EVLM_ERR_ARG);
        }
        evlm_qwen2vl_vit_state_release(&s);
        evlm_pool_free(pool);
    }
    CHECK(memcmp(out[0], out[1], 6 * 64 * sizeof(float)) == 0);

    /* end to end: our own pixels from the PNG give the same embeddings */
    evlm_qwen2vl_proc p;
    evlm_image img = {0, 0, NULL};
    evlm_qwen2vl_pixels px;
    memset(&px, 0, sizeof px);
    snprintf(path, sizeof path, "%s/ref_image.png", g_dir);
    CHECK_OK(evlm_qwen2vl_proc_load(g_dir, &p));
    CHECK_OK(evlm_image_load(path, NULL, &img));
    CHECK_OK(evlm_qwen2vl_preprocess(&p, &img, &px));
    if (px.pixel_values && want) {
        evlm_pool *pool = NULL;
        evlm_qwen2vl_vit_state s;
        CHECK_OK(evlm_pool_new(2, &pool));
        CHECK_OK(evlm_qwen2vl_vit_state_init(&s, &m, px.n_patches, 2));
        CHECK_OK(evlm_qwen2vl_vit_encode(&m, &s, pool, px.pixel_values, px.grid_t, px.grid_h,
                                         px.grid_w, out[1]));
        float d = max_diff(out[1], want, 6 * 64);
        CHECKF(d <= 1e-3f * fmaxf(1.0f, max_abs(want, 6 * 64)), "from the PNG: max diff %g",
               (double)d);
        evlm_qwen2vl_vit_state_release(&s);
        evlm_pool_free(pool);
    }
    evlm_qwen2vl_pixels_free(&px);
    evlm_image_free(&img);

    /* state limits */
    evlm_qwen2vl_vit_state s;
    CHECK(evlm_qwen2vl_vit_state_init(&s, &m, 0, 1) == EVLM_ERR_ARG);
    CHECK(evlm_qwen2vl_vit_state_init(&s, &m, 64, 0) == EVLM_ERR_ARG);

    /* a config that does not fit the weights names the tensor */
    evlm_qwen2vl_vision_config c2 = c;
    evlm_qwen2vl_vit m2;
    c2.mlp_dim = 96;
    CHECK(evlm_qwen2vl_vit_init(&m2, &c2, w) != EVLM_OK);
    CHECK(strstr(evlm_last_error(), "visual.blocks.0.mlp.fc1") != NULL);
    c2 = c;
    c2.hidden_size = 48;
    CHECK(evlm_qwen2vl_vit_init(&m2, &c2, w) != EVLM_OK);
    CHECK(strstr(evlm_last_error(), "merger.mlp.2") != NULL);

    free(out[0]);
    free(out[1]);
    free(pix);
    free(want);
    evlm_qwen2vl_vit_release(&m);
    evlm_weights_free(w);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    snprintf(g_dir, sizeof g_dir, "%s/fixtures/qwen2vl-tiny", shared);
    char path[4200];
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", g_dir);
    st_file ref;
    if (!st_open(path, &ref)) {
        printf("cannot read %s\n", path);
        return 1;
    }
    test_proc_config();
    test_smart_resize();
    test_pixels(&ref);
    test_rope_index(&ref);
    test_vision_config();
    test_encode(&ref);
    st_close(&ref);
    return test_done();
}
