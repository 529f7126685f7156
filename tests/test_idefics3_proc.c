/* test_idefics3_proc.c - the Idefics3 image processor against transformers' PIL backend:
 * pixel_values / pixel_attention_mask of the smolvlm-tiny fixture (goal: bit for bit; bound:
 * 1/255 before normalization), the resize rule on synthetic sizes worked out by hand from
 * image_processing_pil_idefics3.py, splitting off, and the scenes-vlm model on its dev images.
 * Needs ../shared (skips with 77 otherwise). */
#include "core/file.h"
#include "core/json.h"
#include "core/status.h"
#include "test.h"
#include "vision/idefics3_proc.h"
#include "vision/image.h"
#include "vision/resample.h"

#include <dirent.h>
#include <stdint.h>

/* ---- a tiny safetensors reader for the 5-dim fixture tensors ------------------------------ */

typedef struct st_file {
    char *data;
    size_t size;
    cJSON *header;
    size_t base;
} st_file;

static int st_open(const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    if (evlm_read_file(path, (size_t)1 << 30, &f->data, &f->size) != EVLM_OK || f->size < 8)
        return 0;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(uint8_t)f->data[i] << (8 * i);
    if (hlen > f->size - 8) return 0;
    f->header = cJSON_ParseWithLength(f->data + 8, (size_t)hlen);
    f->base = 8 + (size_t)hlen;
    return f->header != NULL;
}

static void st_close(st_file *f) {
    cJSON_Delete(f->header);
    free(f->data);
}

/* Data of tensor name with dtype, its element count in *n; NULL when absent or malformed. */
static const void *st_tensor(const st_file *f, const char *name, const char *dtype, size_t esize,
                             size_t *n) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f->header, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, dtype) != 0 || !cJSON_IsArray(shape) ||
        cJSON_GetArraySize(off) != 2)
        return NULL;
    size_t count = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) count *= (size_t)d->valuedouble;
    size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
    size_t e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    if (e < b || e - b != count * esize || f->base + e > f->size) return NULL;
    *n = count;
    return f->data + f->base + b;
}

/* ---- fixture ------------------------------------------------------------------------------ */

static void test_fixture(const char *shared) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/fixtures/smolvlm-tiny", shared);
    evlm_idefics3_proc p;
    CHECK_OK(evlm_idefics3_proc_load(dir, &p));
    CHECK(p.longest_edge == 128 && p.max_image_size == 64 && p.resample == EVLM_RESAMPLE_LANCZOS);
    CHECK(p.do_image_splitting && p.do_pad && p.do_rescale && p.do_normalize);

    snprintf(path, sizeof path, "%s/ref_image.png", dir);
    evlm_image img;
    CHECK_OK(evlm_image_load(path, NULL, &img));
    CHECK(img.w == 100 && img.h == 75);

    evlm_idefics3_pixels px;
    CHECK_OK(evlm_idefics3_preprocess(&p, &img, &px));
    CHECK(px.n_tiles == 5 && px.n_rows == 2 && px.n_cols == 2 && px.tile == 64);
    CHECK(px.resized_w == 128 && px.resized_h == 96);
    int rows = -1, cols = -1, nt = -1;
    CHECK_OK(evlm_idefics3_plan(&p, 100, 75, &rows, &cols, &nt));
    CHECK(rows == 2 && cols == 2 && nt == 5);

    st_file f;
    snprintf(path, sizeof path, "%s/ref_outputs.safetensors", dir);
    CHECK(st_open(path, &f));
    size_t n = 0, nm = 0, nt_ = 0;
    const float *ref = st_tensor(&f, "pixel_values", "F32", 4, &n);
    const int64_t *mask = st_tensor(&f, "pixel_attention_mask", "I64", 8, &nm);
    const float *tv = st_tensor(&f, "pixel_values_torchvision", "F32", 4, &nt_);
    size_t want = (size_t)5 * 3 * 64 * 64;
    CHECKF(ref && n == want, "pixel_values: %zu values", n);
    CHECKF(mask && nm == (size_t)5 * 64 * 64, "pixel_attention_mask: %zu values", nm);
    if (ref && n == want && px.pixel_values) {
        double maxd = 0;
        size_t exact = 0, worst = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)px.pixel_values[i] - (double)ref[i]);
            if (d > maxd) {
                maxd = d;
                worst = i;
            }
            exact += memcmp(&px.pixel_values[i], &ref[i], 4) == 0;
        }
        double bound = 1.0 / 255.0 / 0.5; /* one 8-bit step after normalization by std 0.5 */
        printf("pixel_values vs transformers PIL backend: max |diff| = %.9g (at %zu), "
               "%zu / %zu bit-exact\n",
               maxd, worst, exact, n);
        CHECKF(maxd <= bound, "max diff %g > %g", maxd, bound);
        CHECKF(exact == n, "%zu of %zu values differ", n - exact, n);
        if (tv && nt_ == n) {
            double tmax = 0;
            for (size_t i = 0; i < n; i++) {
                double d = fabs((double)tv[i] - (double)ref[i]);
                if (d > tmax) tmax = d;
            }
            printf("(for comparison: torchvision backend vs PIL backend max |diff| = %.6g)\n",
                   tmax);
        }
    }
    if (mask && nm == (size_t)5 * 64 * 64 && px.pixel_attention_mask) {
        size_t bad = 0;
        for (size_t i = 0; i < nm; i++) bad += (int64_t)px.pixel_attention_mask[i] != mask[i];
        CHECKF(bad == 0, "%zu mask values differ", bad);
    }
    st_close(&f);
    evlm_idefics3_pixels_free(&px);
    evlm_image_free(&img);
}

/* ---- the resize rule on synthetic sizes --------------------------------------------------- */

typedef struct size_case {
    int w, h;    /* input */
    int longest; /* size.longest_edge (S = 64) */
    int rw, rh;  /* after the longest-edge resize */
    int rows, cols;
} size_case;

static evlm_image gradient(int w, int h) {
    evlm_image im;
    if (evlm_image_alloc(w, h, &im) != EVLM_OK) return im;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 7 + y * 3);
            p[1] = (uint8_t)(x * y);
            p[2] = (uint8_t)(255 - x - y);
        }
    return im;
}

static void test_sizes(void) {
    /* Derived from _resize_output_size_rescale_to_max_len and resize_for_vision_encoder:
     * 1000x10: w = 128, h = int(128 / 100.0) = 1 -> odd -> 2; encoder: w = 128,
     *          h = int(128 / 64.0) = 2 -> ceil(2 / 64) * 64 = 64: 128x64 -> 1 row, 2 cols.
     * 10x1000: the transpose: 2x128 -> 64x128 -> 2 rows, 1 col.
     * 3x3:     128x128 -> 2x2.  100x75: 128 x int(128 / 1.333..) = 96 -> 128x128 -> 2x2.
     * 50x50, longest 127: h = int(127 / 1.0) = 127 is odd -> 128: 127x128 -> 128x128 -> 2x2.
     * 64x64, longest 64: 64x64, encoder 64x64 = one tile: not split, rows = cols = 0.
     * 130x40, longest 200: 200 x int(200 / 3.25) = 61 -> 62; encoder: w = 256,
     *          h = int(256 / (200 / 62)) = 79 -> 128: 256x128 -> 2 rows, 4 cols. */
    static const size_case cases[] = {
        {1000, 10, 128, 128, 2, 1, 2}, {10, 1000, 128, 2, 128, 2, 1}, {3, 3, 128, 128, 128, 2, 2},
        {100, 75, 128, 128, 96, 2, 2}, {50, 50, 127, 127, 128, 2, 2}, {64, 64, 64, 64, 64, 0, 0},
        {130, 40, 200, 200, 62, 2, 4},
    };
    evlm_idefics3_proc p = evlm_idefics3_proc_default();
    p.max_image_size = 64;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const size_case *c = &cases[i];
        p.longest_edge = c->longest;
        evlm_image im = gradient(c->w, c->h);
        evlm_idefics3_pixels px;
        CHECK_OK(evlm_idefics3_preprocess(&p, &im, &px));
        int want_tiles = c->rows ? c->rows * c->cols + 1 : 1;
        CHECKF(px.resized_w == c->rw && px.resized_h == c->rh,
               "%dx%d: resized to %dx%d, want %dx%d", c->w, c->h, px.resized_w, px.resized_h, c->rw,
               c->rh);
        CHECKF(px.n_rows == c->rows && px.n_cols == c->cols && px.n_tiles == want_tiles,
               "%dx%d: %d rows %d cols %d tiles", c->w, c->h, px.n_rows, px.n_cols, px.n_tiles);
        int r, cl, nt;
        CHECK_OK(evlm_idefics3_plan(&p, c->w, c->h, &r, &cl, &nt));
        CHECK(r == px.n_rows && cl == px.n_cols && nt == px.n_tiles);
        /* normalized values stay in [-1, 1] and the mask is all ones */
        int ok = px.pixel_values != NULL;
        for (size_t k = 0; ok && k < (size_t)px.n_tiles * 3 * 64 * 64; k++)
            ok = px.pixel_values[k] >= -1.0f && px.pixel_values[k] <= 1.0f;
        for (size_t k = 0; ok && k < (size_t)px.n_tiles * 64 * 64; k++)
            ok = px.pixel_attention_mask[k] == 1;
        CHECKF(ok, "%dx%d: values out of range or mask not ones", c->w, c->h);
        evlm_idefics3_pixels_free(&px);
        evlm_image_free(&im);
    }
}

/* do_image_splitting false: one tile, the resized image resized again to S x S. */
static void test_no_split(void) {
    evlm_idefics3_proc p = evlm_idefics3_proc_default();
    p.longest_edge = 128;
    p.max_image_size = 64;
    p.do_image_splitting = false;
    evlm_image im = gradient(100, 75);
    evlm_idefics3_pixels px;
    CHECK_OK(evlm_idefics3_preprocess(&p, &im, &px));
    CHECK(px.n_tiles == 1 && px.n_rows == 0 && px.n_cols == 0 && px.tile == 64);
    evlm_image a, b;
    CHECK_OK(evlm_resize_rgb8(&im, 128, 96, EVLM_RESAMPLE_LANCZOS, &a));
    CHECK_OK(evlm_resize_rgb8(&a, 64, 64, EVLM_RESAMPLE_LANCZOS, &b));
    size_t bad = 0;
    for (int c = 0; c < 3 && px.pixel_values && b.rgb; c++)
        for (int i = 0; i < 64 * 64; i++) {
            float v = (float)((double)b.rgb[i * 3 + c] * (1.0 / 255.0));
            v = (v - 0.5f) / 0.5f;
            bad += memcmp(&v, &px.pixel_values[c * 64 * 64 + i], 4) != 0;
        }
    CHECKF(bad == 0, "no-split: %zu values differ", bad);
    evlm_image_free(&a);
    evlm_image_free(&b);
    evlm_idefics3_pixels_free(&px);

    /* do_resize false as well: straight to S x S */
    p.do_resize = false;
    CHECK_OK(evlm_idefics3_preprocess(&p, &im, &px));
    CHECK(px.n_tiles == 1 && px.resized_w == 100 && px.resized_h == 75);
    evlm_idefics3_pixels_free(&px);
    evlm_image_free(&im);
}

/* Bad configs name the file and field. */
static void test_bad_config(void) {
    static const struct {
        const char *json, *mention;
    } cases[] = {
        {"{\"resample\": 9}", "resample"},
        {"{\"size\": 5}", "size"},
        {"{\"size\": {\"shortest_edge\": 5}}", "size"},
        {"{\"max_image_size\": {\"longest_edge\": 0}}", "longest_edge"},
        {"{\"image_std\": [0.5, 0, 0.5]}", "image_std"},
        {"{\"image_mean\": [0.5, 0.5]}", "image_mean"},
        {"{\"do_pad\": 3}", "do_pad"},
        {"{\"image_processor_type\": \"CLIPImageProcessor\"}", "image_processor_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j = cJSON_Parse(cases[i].json);
        evlm_idefics3_proc p;
        evlm_status st = evlm_idefics3_proc_from_json("cfg.json", j, &p);
        CHECKF(st != EVLM_OK, "%s accepted", cases[i].json);
        CHECKF(strstr(evlm_last_error(), "cfg.json") && strstr(evlm_last_error(), cases[i].mention),
               "%s: %s", cases[i].json, evlm_last_error());
        cJSON_Delete(j);
    }
    evlm_idefics3_proc p;
    CHECK(evlm_idefics3_proc_load("/nonexistent-dir", &p) == EVLM_ERR_IO);
}

/* ---- scenes-vlm ---------------------------------------------------------------------------- */

static void test_scenes(const char *shared) {
    char dir[1024], ddir[1024], path[2200];
    snprintf(dir, sizeof dir, "%s/models/scenes-vlm", shared);
    snprintf(ddir, sizeof ddir, "%s/datasets/scenes-dev", shared);
    evlm_idefics3_proc p;
    snprintf(path, sizeof path, "%s/processor_config.json", dir);
    if (!evlm_file_exists(path)) {
        printf("scenes-vlm absent: skipped\n");
        return;
    }
    CHECK_OK(evlm_idefics3_proc_load(dir, &p));
    CHECK(p.longest_edge == 256 && p.max_image_size == 128);

    snprintf(path, sizeof path, "%s/car_030.png", ddir);
    evlm_image img;
    CHECK_OK(evlm_image_load(path, NULL, &img));
    CHECK(img.w == 317 && img.h == 221);
    evlm_idefics3_pixels px;
    CHECK_OK(evlm_idefics3_preprocess(&p, &img, &px));
    /* 317x221 -> 256 x int(256 / 1.434..) = 178 -> encoder 256x256 -> 2x2 tiles + global */
    printf("scenes-vlm car_030.png %dx%d: resized %dx%d, %d tiles (%d rows x %d cols) of %dpx\n",
           img.w, img.h, px.resized_w, px.resized_h, px.n_tiles, px.n_rows, px.n_cols, px.tile);
    CHECK(px.tile == 128 && px.n_tiles == 5 && px.n_rows == 2 && px.n_cols == 2);
    CHECK(px.resized_w == 256 && px.resized_h == 178);
    evlm_idefics3_pixels_free(&px);
    evlm_image_free(&img);

    /* every dev image plans into 128px tiles and preprocesses */
    DIR *d = opendir(ddir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".png") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", ddir, e->d_name);
        evlm_image im;
        CHECK_OK(evlm_image_load(path, NULL, &im));
        CHECK_OK(evlm_idefics3_preprocess(&p, &im, &px));
        CHECKF(px.tile == 128 && px.n_tiles == (px.n_rows ? px.n_rows * px.n_cols + 1 : 1),
               "%s: %d tiles", e->d_name, px.n_tiles);
        evlm_idefics3_pixels_free(&px);
        evlm_image_free(&im);
        n++;
    }
    if (d) closedir(d);
    CHECK(n > 0);
    printf("scenes-dev: %d images preprocessed\n", n);
}

int main(void) {
    test_sizes();
    test_no_split();
    test_bad_config();
    const char *shared = test_shared_dir();
    if (!shared) return t_fail ? 1 : 77;
    test_fixture(shared);
    test_scenes(shared);
    return test_done();
}
