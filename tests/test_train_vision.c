/*
 * test_train_vision.c - the trainable Idefics3 vision tower + connector (src/train/tvision.h)
 * and a prompt's training inputs (evlm__prompt_pixels, model/family.h), on
 * ../shared/fixtures/smolvlm-tiny:
 *   1. forward features equal the inference tower's (evlm_siglip_encode on the same tiles)
 *      within 1e-5 * max |ref|: the fixture's 5 full tiles, and a padded tile (pixel mask);
 *   2. backward against tests/data/tvision_ref.safetensors (torch autograd in float64 of
 *      tools/make_tvision_ref.py: a full and a padded tile, loss = sum(features * R)): every
 *      tower / connector gradient within the grad README's bound (max |g - g_ref| <= 1e-3 *
 *      max |g_ref| + 1e-6), the loss within 1e-4 relative, text parameters untouched;
 *      gradients accumulate; frozen parameters get nothing and the rest is unchanged;
 *   3. evlm__prompt_pixels: the ids of evlm_prompt_new for the same prompt, tiles that encode to
 *      the prompt's features (bit for bit) and equal the transformers pixel_values; Qwen2-VL is
 *      refused; a text-only model tokenizes.
 */
#include "core/sysinfo.h"
#include "core/threadpool.h"
#include "model/family.h"
#include "model/model.h"
#include "train/ops.h"
#include "train/params.h"
#include "train/tvision.h"
#include "vision/siglip.h"
#include "test.h"
#include "test_ref.h"

#include <stdint.h>

/* only names matching glob trainable (NULL: all); the number trainable */
static int tp_select(evlm_tparams *tp, const char *glob) {
    int n = 0;
    if (evlm_tparams_select(tp, &glob, glob ? 1 : 0, NULL, 0, &n) != EVLM_OK) return -1;
    return n;
}

static evlm_pool *g_pool;
static evlm_tops g_ops;

/* max |a - b| <= tol * max |b| */
static int close_rel(const float *a, const float *b, size_t n, float tol, const char *what) {
    float d = max_diff(a, b, n), m = max_abs(b, n);
    printf("%s: max |diff| %.3g, max |ref| %.3g\n", what, (double)d, (double)m);
    return d <= tol * m && all_finite(a, n);
}

/* the inference tower's features of n tiles */
static float *siglip_features(const evlm_model *m, const float *px, const uint8_t *mask, int n) {
    const evlm_siglip *tower = NULL;
    if (!evlm__model_idefics3(m, &tower, NULL, NULL)) return NULL;
    evlm_siglip_state s;
    if (evlm_siglip_state_init(&s, tower, n, evlm_pool_size(g_pool)) != EVLM_OK) return NULL;
    float *out = malloc(sizeof(float) * (size_t)n * tower->cfg.tokens_per_tile *
                        tower->cfg.text_hidden_size);
    if (out && evlm_siglip_encode(tower, &s, g_pool, px, mask, n, out) != EVLM_OK) {
        fprintf(stderr, "siglip: %s\n", evlm_last_error());
        free(out);
        out = NULL;
    }
    evlm_siglip_state_release(&s);
    return out;
}

/* a misshapen or missing parameter is an error naming it */
static void test_bind_errors(evlm_model *m, const evlm_tparams *tp) {
    evlm_tparams bad = *tp;
    bad.p = malloc(sizeof *bad.p * (size_t)tp->n);
    if (!bad.p) return;
    const char *name = "model.vision_model.encoder.layers.1.mlp.fc1.weight";
    for (int pass = 0; pass < 2; pass++) {
        memcpy(bad.p, tp->p, sizeof *bad.p * (size_t)tp->n);
        evlm_tparam *p = NULL;
        for (int i = 0; i < bad.n && !p; i++)
            if (strcmp(bad.p[i].name, name) == 0) p = &bad.p[i];
        CHECK(p != NULL);
        if (!p) break;
        if (pass == 0)
            p->shape[0] = 95;
        else
            p->name[0] = 'X';
        evlm_tvision *v = NULL;
        CHECK(evlm_tvision_new(m, &bad, 2, &v) == EVLM_ERR_FORMAT && v == NULL &&
              strstr(evlm_last_error(), name) &&
              strstr(evlm_last_error(), pass == 0 ? "[95, 48]" : "not found"));
    }
    free(bad.p);
}

/* ---- 1. forward ----------------------------------------------------------------------------- */

static void test_forward(evlm_model *m, evlm_tvision *v, const char *fixture, const st_file *ref) {
    char path[8192];
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", fixture);
    st_file ro;
    CHECK(st_open(path, &ro));
    const size_t per_tile = 3 * 64 * 64, rows = 16, H = 64;
    float *px = st_get(&ro, "pixel_values", "F32", 5 * per_tile, 4);
    CHECK(px != NULL);
    if (!px) return;
    float *ours = malloc(sizeof(float) * 5 * rows * H);
    CHECK_OK(evlm_tvision_forward(v, &g_ops, px, NULL, 5, ours));
    float *want = siglip_features(m, px, NULL, 5);
    CHECK(want != NULL);
    if (want) CHECK(close_rel(ours, want, 5 * rows * H, 1e-5f, "forward, 5 full tiles"));
    free(want);
    free(px);
    st_close(&ro);

    /* a padded tile (and a full one) from the reference: inference, and torch in float64 */
    float *rpx = st_get(ref, "pixels", "F32", 2 * per_tile, 4);
    uint8_t *rmask = st_get(ref, "mask", "U8", 2 * 64 * 64, 1);
    float *tfeat = st_get(ref, "features", "F32", 2 * rows * H, 4);
    CHECK(rpx && rmask && tfeat);
    if (rpx && rmask && tfeat) {
        size_t real = 0;
        for (size_t i = 0; i < 64 * 64; i++) real += rmask[64 * 64 + i] != 0;
        CHECK(real > 0 && real < 64 * 64); /* tile 1 is padded */
        CHECK_OK(evlm_tvision_forward(v, &g_ops, rpx, rmask, 2, ours));
        want = siglip_features(m, rpx, rmask, 2);
        CHECK(want != NULL);
        if (want)
            CHECK(close_rel(ours + rows * H, want + rows * H, rows * H, 1e-5f,
                            "forward, padded tile vs inference"));
        free(want);
        CHECK(close_rel(ours, tfeat, 2 * rows * H, 1e-5f, "forward vs torch float64"));
        /* a mask that is no rectangle of patches (a hole at patch (1, 1)) is refused, naming
         * the tile, and leaves no forward to run a backward on */
        for (int y = 8; y < 16; y++) memset(rmask + 64 * 64 + y * 64 + 8, 0, 8);
        CHECK(evlm_tvision_forward(v, &g_ops, rpx, rmask, 2, ours) == EVLM_ERR_ARG &&
              strstr(evlm_last_error(), "tile 1"));
        CHECK(evlm_tvision_backward(v, &g_ops, ours) == EVLM_ERR_ARG);
        CHECK(evlm_tvision_forward(v, &g_ops, rpx, NULL, 99, ours) == EVLM_ERR_ARG &&
              strstr(evlm_last_error(), "max_tiles"));
    }
    free(rpx);
    free(rmask);
    free(tfeat);
    free(ours);
}

/* ---- 2. backward ------------------------------------------------------------------------------
 */

static int is_vision(const char *name) {
    return strstr(name, "vision_model.") || strstr(name, "connector.");
}

/* forward + backward of loss = sum(features * R) on the reference's tiles; loss out */
static int run_backward(evlm_tvision *v, const st_file *ref, double *loss) {
    const size_t per_tile = 3 * 64 * 64, n = 2 * 16 * 64;
    float *px = st_get(ref, "pixels", "F32", 2 * per_tile, 4);
    uint8_t *mask = st_get(ref, "mask", "U8", 2 * 64 * 64, 1);
    float *R = st_get(ref, "R", "F32", n, 4);
    float *feat = malloc(sizeof(float) * n);
    int ok = px && mask && R && feat;
    if (ok) ok = evlm_tvision_forward(v, &g_ops, px, mask, 2, feat) == EVLM_OK;
    if (ok) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (double)feat[i] * (double)R[i];
        *loss = s;
        ok = evlm_tvision_backward(v, &g_ops, R) == EVLM_OK;
    }
    if (!ok) fprintf(stderr, "run_backward: %s\n", evlm_last_error());
    free(px);
    free(mask);
    free(R);
    free(feat);
    return ok;
}

static void test_backward(evlm_tparams *tp, evlm_tvision *v, const st_file *ref) {
    evlm_tparams_zero_grad(tp);
    double loss = 0;
    CHECK(run_backward(v, ref, &loss));
    float *rl = st_get(ref, "loss", "F32", 1, 4);
    CHECK(rl != NULL);
    if (rl) {
        printf("loss %.6f, torch %.6f\n", loss, (double)rl[0]);
        CHECK(fabs(loss - (double)rl[0]) <= 1e-4 * fabs((double)rl[0]));
    }
    free(rl);
    int n_checked = 0;
    float worst_ratio = 0; /* max over tensors of max |g - ref| / bound */
    float *scales = calloc((size_t)tp->n, sizeof(float)); /* of each gradient, for the bounds */
    if (!scales) return;
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        const float *g = tp->g + p->off;
        if (!is_vision(p->name)) {
            CHECKF(max_abs(g, p->n) == 0.0f, "%s: a text parameter got a gradient", p->name);
            continue;
        }
        float *want = st_get(ref, p->name, "F32", p->n, 4);
        CHECKF(want != NULL, "%s: not in the reference", p->name);
        if (!want) continue;
        float d = max_diff(g, want, p->n), mx = max_abs(want, p->n), scale = mx;
        /* k_proj.bias: exactly 0 in exact arithmetic (softmax ignores a constant added to a row),
         * so the float32 result is rounding noise; the README's bound, with the scale taken from
         * the same layer's q_proj.bias gradient (what that noise is made of) */
        const char *kb = strstr(p->name, "k_proj.bias");
        if (kb) {
            char qname[160];
            snprintf(qname, sizeof qname, "%.*sq_proj.bias", (int)(kb - p->name), p->name);
            float *qref = st_get(ref, qname, "F32", p->n, 4);
            CHECKF(qref != NULL, "%s: not in the reference", qname);
            if (qref) scale = max_abs(qref, p->n);
            free(qref);
        }
        scales[i] = scale;
        if (d / (1e-3f * scale + 1e-6f) > worst_ratio) worst_ratio = d / (1e-3f * scale + 1e-6f);
        CHECKF(d <= 1e-3f * scale + 1e-6f && all_finite(g, p->n),
               "%s: max |g - ref| %.3g, max |ref| %.3g, bound from %.3g", p->name, (double)d,
               (double)mx, (double)scale);
        n_checked++;
        free(want);
    }
    printf("%d vision gradients checked, worst error %.3f of the bound\n", n_checked,
           (double)worst_ratio);
    CHECK(n_checked == 38);

    /* gradients accumulate: a second pass doubles them (to rounding, per tensor; text ones
     * stay 0) */
    float *g1 = malloc(sizeof(float) * tp->n_floats);
    memcpy(g1, tp->g, sizeof(float) * tp->n_floats);
    CHECK(run_backward(v, ref, &loss));
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        float worst = 0, mx = 2 * scales[i];
        for (size_t j = p->off; j < p->off + p->n; j++)
            worst = fabsf(tp->g[j] - 2 * g1[j]) > worst ? fabsf(tp->g[j] - 2 * g1[j]) : worst;
        CHECKF(worst <= 1e-5f * mx, "%s: a second backward does not add up: %.3g of %.3g", p->name,
               (double)worst, (double)mx);
    }

    /* only layer 1 trainable: nothing else gets a gradient, layer 1's equal the full run's */
    CHECK(tp_select(tp, "model.vision_model.encoder.layers.1.*") == 16);
    evlm_tparams_zero_grad(tp);
    CHECK(run_backward(v, ref, &loss));
    int same = 1, zero = 1;
    for (int i = 0; i < tp->n; i++) {
        const evlm_tparam *p = &tp->p[i];
        if (p->trainable)
            same &= memcmp(tp->g + p->off, g1 + p->off, sizeof(float) * p->n) == 0;
        else
            zero &= max_abs(tp->g + p->off, p->n) == 0.0f;
    }
    CHECK(same);
    CHECK(zero);

    /* every vision parameter frozen: nothing runs, nothing changes */
    CHECK(tp_select(tp, "model.text_model.*") > 0);
    evlm_tparams_zero_grad(tp);
    CHECK(run_backward(v, ref, &loss));
    CHECK(max_abs(tp->g, tp->n_floats) == 0.0f);
    tp_select(tp, NULL);
    free(g1);
    free(scales);
}

/* ---- 3. a prompt's training inputs ---------------------------------------------------------- */

static void test_prompt_pixels(evlm_model *m, evlm_tvision *v, const char *shared,
                               const char *fixture) {
    char path[8192], png[8192];
    snprintf(path, sizeof path, "%s/ref_outputs.json", fixture);
    cJSON *meta = NULL;
    CHECK_OK(evlm_json_load(path, &meta));
    const cJSON *pr = cJSON_GetObjectItem(meta, "prompt");
    const cJSON *want_ids = cJSON_GetObjectItem(meta, "input_ids");
    snprintf(png, sizeof png, "%s/ref_image.png", fixture);
    evlm_image_input img = {.path = png};
    const char *text = cJSON_IsString(pr) ? pr->valuestring : "<image>";

    evlm_ids ids = {0};
    float *px = NULL;
    uint8_t *mask = NULL;
    int n_tiles = 0;
    CHECK_OK(evlm__prompt_pixels(m, text, false, &img, 1, &ids, &px, &mask, &n_tiles));
    evlm_prompt *p = NULL;
    CHECK_OK(evlm_prompt_new(m, text, false, &img, 1, &p));
    if (!p || !px) goto done;
    size_t n = 0;
    const int32_t *pid = evlm_prompt_ids(p, &n);
    CHECK(n == ids.len && memcmp(pid, ids.data, sizeof(int32_t) * n) == 0);
    CHECK(cJSON_GetArraySize(want_ids) == (int)ids.len);
    int same_ref = 1;
    for (size_t i = 0; i < ids.len && i < (size_t)cJSON_GetArraySize(want_ids); i++)
        same_ref &= cJSON_GetArrayItem(want_ids, (int)i)->valueint == ids.data[i];
    CHECK(same_ref);
    CHECK(n_tiles == 5);
    int rows = 0;
    const float *pf = evlm__prompt_features(p, &rows);
    CHECK(rows == n_tiles * evlm_tvision_tokens_per_tile(v));
    float *enc = siglip_features(m, px, mask, n_tiles);
    CHECK(enc && memcmp(enc, pf, sizeof(float) * (size_t)rows * 64) == 0);
    free(enc);
    float *ours = malloc(sizeof(float) * (size_t)rows * 64);
    CHECK_OK(evlm_tvision_forward(v, &g_ops, px, mask, n_tiles, ours));
    CHECK(close_rel(ours, pf, (size_t)rows * 64, 1e-5f, "forward of the prompt's tiles"));
    free(ours);
    /* the tiles are transformers' pixel_values */
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", fixture);
    st_file ro;
    if (st_open(path, &ro)) {
        float *rpx = st_get(&ro, "pixel_values", "F32", 5 * 3 * 64 * 64, 4);
        CHECK(rpx && max_diff(rpx, px, 5 * 3 * 64 * 64) <= 1e-6f);
        free(rpx);
        st_close(&ro);
    }
done:
    evlm_prompt_free(p);
    evlm_ids_free(&ids);
    free(px);
    free(mask);
    cJSON_Delete(meta);

    /* Qwen2-VL: refused with a message naming the family; its tower has no backward */
    snprintf(path, sizeof path, "%s/fixtures/qwen2vl-tiny", shared);
    evlm_model *q = NULL;
    if (evlm_model_load(path, NULL, &q) == EVLM_OK) {
        evlm_ids qi = {0};
        CHECK(evlm__prompt_pixels(q, "<|vision_start|><|image_pad|><|vision_end|>hi", false, &img,
                                  1, &qi, &px, &mask, &n_tiles) == EVLM_ERR_UNSUPPORTED &&
              strstr(evlm_last_error(), "qwen2vl") && px == NULL && mask == NULL && qi.len == 0);
        evlm_tparams qtp = {0};
        evlm_tvision *qv = NULL;
        CHECK(evlm_tvision_new(q, &qtp, 1, &qv) == EVLM_ERR_UNSUPPORTED && qv == NULL);
        evlm_model_free(q);
    }
    /* a text-only family tokenizes */
    snprintf(path, sizeof path, "%s/fixtures/llama-tiny", shared);
    evlm_model *l = NULL;
    if (evlm_model_load(path, NULL, &l) == EVLM_OK) {
        evlm_ids li = {0};
        CHECK_OK(evlm__prompt_pixels(l, "Hello world", true, NULL, 0, &li, &px, &mask, &n_tiles));
        CHECK_OK(evlm_prompt_new(l, "Hello world", true, NULL, 0, &p));
        if (p) {
            pid = evlm_prompt_ids(p, &n);
            CHECK(n_tiles == 0 && px == NULL && n == li.len &&
                  memcmp(pid, li.data, sizeof(int32_t) * n) == 0);
        }
        evlm_prompt_free(p);
        evlm_ids_free(&li);
        evlm_model_free(l);
    }
}

/* the scenes model (another shape: 128-pixel tiles of 16-pixel patches, 6 layers, 192 wide):
 * the forward on a prompt's tiles equals the prompt's features; the backward runs, finite */
static void test_scenes(const char *shared, const char *png) {
    char dir[8192];
    snprintf(dir, sizeof dir, "%s/models/scenes-vlm", shared);
    evlm_model_params mp = evlm_model_default_params();
    mp.keep_layout = true;
    mp.n_threads = 2;
    evlm_model *m = NULL;
    if (evlm_model_load(dir, &mp, &m) != EVLM_OK) {
        printf("scenes-vlm not loaded (%s): skipped\n", evlm_last_error());
        return;
    }
    evlm_image_input img = {.path = png};
    evlm_ids ids = {0};
    float *px = NULL, *ours = NULL;
    uint8_t *mask = NULL;
    int n_tiles = 0, rows = 0;
    evlm_prompt *p = NULL;
    evlm_tparams tp = {0};
    evlm_tvision *v = NULL;
    evlm_tops o = {0};
    CHECK_OK(
        evlm__prompt_pixels(m, "<image>Which scene?", false, &img, 1, &ids, &px, &mask, &n_tiles));
    CHECK_OK(evlm_prompt_new(m, "<image>Which scene?", false, &img, 1, &p));
    CHECK_OK(evlm_tparams_from_weights(&tp, evlm__model_weights(m)));
    CHECK_OK(evlm_tvision_new(m, &tp, n_tiles > 0 ? n_tiles : 1, &v));
    if (!p || !px || !v) goto done;
    int max_dim = 0, max_seq = 0, head_dim = 0;
    evlm_tvision_tops_need(v, &max_dim, &max_seq, &head_dim);
    CHECK_OK(evlm_tops_init(&o, g_pool, NULL, max_dim, max_seq, head_dim));
    const float *pf = evlm__prompt_features(p, &rows);
    CHECK(rows == n_tiles * evlm_tvision_tokens_per_tile(v));
    ours = malloc(sizeof(float) * (size_t)rows * 256);
    double t0 = evlm_time_ms();
    CHECK_OK(evlm_tvision_forward(v, &o, px, mask, n_tiles, ours));
    double t1 = evlm_time_ms();
    CHECK(close_rel(ours, pf, (size_t)rows * 256, 1e-5f, "scenes-vlm forward"));
    CHECK_OK(evlm_tvision_backward(v, &o, ours)); /* d(sum features^2 / 2) */
    printf("scenes-vlm, %d tiles, 2 threads: forward %.1f ms, backward %.1f ms\n", n_tiles, t1 - t0,
           evlm_time_ms() - t1);
    const evlm_tparam *pw = NULL;
    for (int i = 0; i < tp.n; i++)
        if (strstr(tp.p[i].name, "patch_embedding.weight")) pw = &tp.p[i];
    CHECK(pw && all_finite(tp.g, tp.n_floats) && max_abs(tp.g + pw->off, pw->n) > 0.0f);
    evlm_tops_release(&o);
done:
    free(ours);
    evlm_tvision_free(v);
    evlm_tparams_release(&tp);
    evlm_prompt_free(p);
    evlm_ids_free(&ids);
    free(px);
    free(mask);
    evlm_model_free(m);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char fixture[4096], path[8192];
    snprintf(fixture, sizeof fixture, "%s/fixtures/smolvlm-tiny", shared);
    const char *src = getenv("EVLM_SRC");
    snprintf(path, sizeof path, "%s/tests/data/tvision_ref.safetensors", src ? src : ".");
    st_file ref;
    if (!st_open(path, &ref)) {
        printf("FAIL: cannot read %s\n", path);
        return 1;
    }
    evlm_model_params mp = evlm_model_default_params();
    mp.keep_layout = true;
    mp.n_threads = 2;
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(fixture, &mp, &m));
    CHECK_OK(evlm_pool_new(2, &g_pool));
    evlm_tparams tp = {0};
    CHECK_OK(evlm_tparams_from_weights(&tp, evlm__model_weights(m)));
    evlm_tvision *v = NULL;
    CHECK_OK(evlm_tvision_new(m, &tp, 5, &v));
    if (v) {
        int max_dim = 0, max_seq = 0, head_dim = 0;
        evlm_tvision_tops_need(v, &max_dim, &max_seq, &head_dim);
        CHECK_OK(evlm_tops_init(&g_ops, g_pool, NULL, max_dim, max_seq, head_dim));
        CHECK(evlm_tvision_tokens_per_tile(v) == 16);
        test_bind_errors(m, &tp);
        test_forward(m, v, fixture, &ref);
        test_backward(&tp, v, &ref);
        test_prompt_pixels(m, v, shared, fixture);
        snprintf(path, sizeof path, "%s/ref_image.png", fixture);
        test_scenes(shared, path);
        evlm_tops_release(&g_ops);
    }
    evlm_tvision_free(v);
    evlm_tparams_release(&tp);
    evlm_pool_free(g_pool);
    evlm_model_free(m);
    st_close(&ref);
    return test_done();
}
