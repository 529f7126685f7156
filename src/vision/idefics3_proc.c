/*
 * idefics3_proc.c - Idefics3ImageProcessorPil for one image (see idefics3_proc.h).
 *
 * The size arithmetic follows image_processing_pil_idefics3.py expression by expression:
 * Python's `w / h` is a correctly rounded double division and int() truncates, exactly as the
 * C casts below; math.ceil(a / b) is ceil() of the same double. The values are computed as
 * numpy does: rescale = float32(double(x) * rescale_factor), normalize = (x - mean) / std in
 * float32 with mean and std rounded to float32. One 256-entry table per channel holds those
 * values, so the per-pixel work is a lookup and the result is identical to transformers'.
 *
 * Not here: several images per call, padding, the torchvision backend (BICUBIC instead of
 * LANCZOS, float resize: documented in docs/IMAGES.md as not matched).
 */
#include "vision/idefics3_proc.h"
#include "core/file.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGE_SIZE 4096 /* transformers' MAX_IMAGE_SIZE: the resized longest edge cap */
#define MAX_TILES      4096 /* rows * cols beyond this is a hostile config */
#define MAX_OUT_BYTES  (2ull << 30)

evlm_idefics3_proc evlm_idefics3_proc_default(void) {
    evlm_idefics3_proc p;
    memset(&p, 0, sizeof p);
    p.do_convert_rgb = p.do_resize = p.do_rescale = p.do_normalize = true;
    p.do_pad = p.do_image_splitting = true;
    p.longest_edge = 4 * 364;
    p.max_image_size = 364;
    p.resample = EVLM_RESAMPLE_LANCZOS;
    p.rescale_factor = 1.0 / 255.0;
    for (int c = 0; c < 3; c++) {
        p.image_mean[c] = 0.5f; /* IMAGENET_STANDARD_MEAN / _STD */
        p.image_std[c] = 0.5f;
    }
    return p;
}

/* ---- configuration --------------------------------------------------------------------- */

/* A number, or a list of 3 numbers, into out[3] as float32 (numpy's np.array(.., float32)). */
static evlm_status get_triple(const char *file, const cJSON *obj, const char *key, float out[3]) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return EVLM_OK;
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
        for (int c = 0; c < 3; c++) out[c] = (float)v->valuedouble;
        return EVLM_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be a number or a list of 3", file,
                          key);
    for (int c = 0; c < 3; c++) {
        const cJSON *e = cJSON_GetArrayItem(v, c);
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\"[%d] must be a finite number", file,
                              key, c);
        out[c] = (float)e->valuedouble;
    }
    return EVLM_OK;
}

/* An object field {"longest_edge": N} (or height / width) into its parts. */
static evlm_status get_size(const char *file, const cJSON *obj, const char *key, int64_t hi,
                            int *longest, int *hgt, int *wid) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return EVLM_OK;
    if (!cJSON_IsObject(v))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"%s\" must be an object", file, key);
    char where[512];
    snprintf(where, sizeof where, "%s: %s", file, key);
    int64_t le = 0, h = 0, w = 0;
    EVLM_TRY(evlm_json_int(where, v, "longest_edge", 1, hi, &le));
    if (le) {
        *longest = (int)le;
        if (hgt) *hgt = *wid = 0;
        return EVLM_OK;
    }
    if (hgt) {
        EVLM_TRY(evlm_json_int(where, v, "height", 1, hi, &h));
        EVLM_TRY(evlm_json_int(where, v, "width", 1, hi, &w));
        if (h && w) {
            *longest = 0;
            *hgt = (int)h;
            *wid = (int)w;
            return EVLM_OK;
        }
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: field \"%s\" needs \"longest_edge\" or \"height\" and \"width\"",
                          file, key);
    }
    return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: field \"%s\" needs \"longest_edge\"", file, key);
}

evlm_status evlm_idefics3_proc_from_json(const char *file, const cJSON *obj,
                                         evlm_idefics3_proc *out) {
    evlm_idefics3_proc p = evlm_idefics3_proc_default();
    if (!cJSON_IsObject(obj))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: the image processor must be an object", file);
    const char *type = NULL;
    EVLM_TRY(evlm_json_str(file, obj, "image_processor_type", &type));
    if (type && strncmp(type, "Idefics3ImageProcessor", 22) != 0 &&
        strncmp(type, "SmolVLMImageProcessor", 21) != 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: field \"image_processor_type\" = \"%s\" is not an Idefics3 / "
                          "SmolVLM image processor",
                          file, type);
    EVLM_TRY(evlm_json_bool(file, obj, "do_convert_rgb", &p.do_convert_rgb));
    EVLM_TRY(evlm_json_bool(file, obj, "do_resize", &p.do_resize));
    EVLM_TRY(evlm_json_bool(file, obj, "do_rescale", &p.do_rescale));
    EVLM_TRY(evlm_json_bool(file, obj, "do_normalize", &p.do_normalize));
    EVLM_TRY(evlm_json_bool(file, obj, "do_pad", &p.do_pad));
    EVLM_TRY(evlm_json_bool(file, obj, "do_image_splitting", &p.do_image_splitting));
    EVLM_TRY(get_size(file, obj, "size", 1 << 16, &p.longest_edge, &p.size_h, &p.size_w));
    EVLM_TRY(get_size(file, obj, "max_image_size", MAX_IMAGE_SIZE, &p.max_image_size, NULL, NULL));
    int64_t rs = p.resample;
    EVLM_TRY(evlm_json_int(file, obj, "resample", 0, 5, &rs));
    p.resample = (evlm_resample)rs;
    EVLM_TRY(evlm_json_num(file, obj, "rescale_factor", &p.rescale_factor));
    if (!(p.rescale_factor > 0))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"rescale_factor\" must be positive", file);
    EVLM_TRY(get_triple(file, obj, "image_mean", p.image_mean));
    EVLM_TRY(get_triple(file, obj, "image_std", p.image_std));
    for (int c = 0; c < 3; c++)
        if (p.image_std[c] == 0.0f)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"image_std\"[%d] is zero", file, c);
    *out = p;
    return EVLM_OK;
}

evlm_status evlm_idefics3_proc_load(const char *dir, evlm_idefics3_proc *out) {
    evlm_dir d = evlm_dir_folder(dir);
    return evlm_idefics3_proc_load_dir(&d, out);
}

evlm_status evlm_idefics3_proc_load_dir(const evlm_dir *d, evlm_idefics3_proc *out) {
    char path[4096];
    cJSON *root;
    const cJSON *obj;
    *out = evlm_idefics3_proc_default();
    EVLM_TRY(evlm_json_image_processor(d, &root, &obj, path, sizeof path));
    evlm_status st = evlm_idefics3_proc_from_json(path, obj, out);
    cJSON_Delete(root);
    return st;
}

/* ---- sizes ----------------------------------------------------------------------------- */

/* _resize_output_size_rescale_to_max_len (min_len = 1) */
static void rescale_to_max_len(int *h, int *w, int max_len) {
    double aspect = (double)*w / (double)*h;
    int hh = *h, ww = *w;
    if (ww >= hh) {
        ww = max_len;
        hh = (int)(ww / aspect);
        if (hh % 2 != 0) hh += 1;
    } else {
        hh = max_len;
        ww = (int)(hh * aspect);
        if (ww % 2 != 0) ww += 1;
    }
    *h = hh > 1 ? hh : 1;
    *w = ww > 1 ? ww : 1;
}

/* _resize_output_size_scale_below_upper_bound */
static void scale_below_upper_bound(int *h, int *w, int max_len) {
    double aspect = (double)*w / (double)*h;
    int hh = *h, ww = *w;
    if (ww >= hh && ww > max_len) {
        ww = max_len;
        hh = (int)(ww / aspect);
    } else if (hh > ww && hh > max_len) {
        hh = max_len;
        ww = (int)(hh * aspect);
    }
    *h = hh > 1 ? hh : 1;
    *w = ww > 1 ? ww : 1;
}

/* resize_for_vision_encoder: both sides up to multiples of s */
static void vision_encoder_size(int *h, int *w, int s) {
    double aspect = (double)*w / (double)*h;
    int hh = *h, ww = *w;
    if (ww >= hh) {
        ww = (int)ceil((double)ww / s) * s;
        hh = (int)(ww / aspect);
        hh = (int)ceil((double)hh / s) * s;
    } else {
        hh = (int)ceil((double)hh / s) * s;
        ww = (int)(hh * aspect);
        ww = (int)ceil((double)ww / s) * s;
    }
    *h = hh;
    *w = ww;
}

typedef struct plan {
    int w1, h1; /* after the first resize */
    int w2, h2; /* after resize_for_vision_encoder (splitting only) */
    int rows, cols, n_tiles;
} plan;

static evlm_status make_plan(const evlm_idefics3_proc *p, int w, int h, plan *pl) {
    if (w <= 0 || h <= 0) return evlm__fail(EVLM_ERR_ARG, "idefics3: image size %dx%d", w, h);
    int s = p->max_image_size;
    if (s <= 0 || s > MAX_IMAGE_SIZE)
        return evlm__fail(EVLM_ERR_ARG, "idefics3: max_image_size %d out of range", s);
    memset(pl, 0, sizeof *pl);
    int h1 = h, w1 = w;
    if (p->do_resize) {
        if (p->longest_edge > 0) {
            rescale_to_max_len(&h1, &w1, p->longest_edge);
            scale_below_upper_bound(&h1, &w1, MAX_IMAGE_SIZE);
        } else if (p->size_h > 0 && p->size_w > 0) {
            h1 = p->size_h;
            w1 = p->size_w;
        } else {
            return evlm__fail(EVLM_ERR_ARG, "idefics3: size needs longest_edge or height/width");
        }
    }
    pl->w1 = w1;
    pl->h1 = h1;
    pl->rows = pl->cols = 0;
    pl->n_tiles = 1;
    if (p->do_image_splitting) {
        int h2 = h1, w2 = w1;
        vision_encoder_size(&h2, &w2, s);
        /* Python would fail in PIL on a zero side; the sides are bounded by 4096 + s or by
         * the input size (do_resize off) */
        if (h2 <= 0 || w2 <= 0)
            return evlm__fail(EVLM_ERR_RANGE, "idefics3: %dx%d image resizes to %dx%d", w, h, w2,
                              h2);
        pl->w2 = w2;
        pl->h2 = h2;
        if (h2 > s || w2 > s) {
            int64_t rows = (h2 - s) / s + 1, cols = (w2 - s) / s + 1;
            if (rows * cols > MAX_TILES)
                return evlm__fail(EVLM_ERR_RANGE,
                                  "idefics3: %dx%d image splits into %lldx%lld tiles, more than %d",
                                  w, h, (long long)rows, (long long)cols, MAX_TILES);
            pl->rows = (int)rows;
            pl->cols = (int)cols;
            pl->n_tiles = (int)(rows * cols) + 1;
        } else if (h2 != s || w2 != s) {
            return evlm__fail(EVLM_ERR_RANGE, "idefics3: %dx%d image resizes to %dx%d, not %dx%d",
                              w, h, w2, h2, s, s);
        }
    }
    if ((uint64_t)pl->n_tiles * 3 * (uint64_t)s * (uint64_t)s * sizeof(float) > MAX_OUT_BYTES)
        return evlm__fail(EVLM_ERR_RANGE, "idefics3: %d tiles of %dx%d are too large", pl->n_tiles,
                          s, s);
    return EVLM_OK;
}

evlm_status evlm_idefics3_plan(const evlm_idefics3_proc *p, int w, int h, int *n_rows, int *n_cols,
                               int *n_tiles) {
    plan pl;
    EVLM_TRY(make_plan(p, w, h, &pl));
    if (n_rows) *n_rows = pl.rows;
    if (n_cols) *n_cols = pl.cols;
    if (n_tiles) *n_tiles = pl.n_tiles;
    return EVLM_OK;
}

/* ---- pixels ---------------------------------------------------------------------------- */

/* rescale (float64 multiply, cast to float32), then normalize in float32, as numpy does */
typedef struct lut_t {
    float v[3][256];
} lut_t;

static void build_lut(const evlm_idefics3_proc *p, lut_t *lut) {
    for (int c = 0; c < 3; c++) {
        for (int v = 0; v < 256; v++) {
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            if (p->do_normalize) x = (x - p->image_mean[c]) / p->image_std[c];
            lut->v[c][v] = x;
        }
    }
}

/* Writes the S x S block of im at (x0, y0) as [3][S][S]. */
static void put_tile(float *dst, const evlm_image *im, int x0, int y0, int s, const lut_t *lut) {
    for (int c = 0; c < 3; c++) {
        float *o = dst + (size_t)c * s * s;
        for (int y = 0; y < s; y++) {
            const uint8_t *row = im->rgb + ((size_t)(y0 + y) * im->w + x0) * 3 + c;
            for (int x = 0; x < s; x++) o[(size_t)y * s + x] = lut->v[c][row[(size_t)x * 3]];
        }
    }
}

void evlm_idefics3_pixels_free(evlm_idefics3_pixels *px) {
    if (!px) return;
    free(px->pixel_values);
    free(px->pixel_attention_mask);
    memset(px, 0, sizeof *px);
}

evlm_status evlm_idefics3_preprocess(const evlm_idefics3_proc *p, const evlm_image *img,
                                     evlm_idefics3_pixels *out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "idefics3: NULL output");
    memset(out, 0, sizeof *out);
    if (!p || !img || !img->rgb)
        return evlm__fail(EVLM_ERR_ARG, "idefics3: NULL processor or image");
    plan pl;
    EVLM_TRY(make_plan(p, img->w, img->h, &pl));
    int s = p->max_image_size;

    evlm_image r1 = {0, 0, NULL}, r2 = {0, 0, NULL}, g = {0, 0, NULL};
    const evlm_image *cur = img;
    evlm_status st = EVLM_OK;
    if (p->do_resize) {
        st = evlm_resize_rgb8(cur, pl.w1, pl.h1, p->resample, &r1);
        cur = &r1;
    }
    const evlm_image *global = NULL; /* the last (or only) tile */
    if (st == EVLM_OK && p->do_image_splitting) {
        st = evlm_resize_rgb8(cur, pl.w2, pl.h2, p->resample, &r2);
        cur = &r2;
        if (st == EVLM_OK && pl.rows > 0) {
            st = evlm_resize_rgb8(cur, s, s, p->resample, &g);
            global = &g;
        } else {
            global = cur; /* already s x s (checked by make_plan) */
        }
    } else if (st == EVLM_OK) {
        st = evlm_resize_rgb8(cur, s, s, p->resample, &g);
        global = &g;
    }

    size_t tile_n = (size_t)s * s;
    if (st == EVLM_OK) {
        out->pixel_values = malloc((size_t)pl.n_tiles * 3 * tile_n * sizeof(float));
        out->pixel_attention_mask = malloc((size_t)pl.n_tiles * tile_n);
        if (!out->pixel_values || !out->pixel_attention_mask)
            st = evlm__fail(EVLM_ERR_NOMEM, "idefics3: out of memory for %d tiles", pl.n_tiles);
    }
    if (st == EVLM_OK) {
        lut_t lut;
        build_lut(p, &lut);
        int t = 0;
        for (int r = 0; r < pl.rows; r++)
            for (int c = 0; c < pl.cols; c++, t++)
                put_tile(out->pixel_values + (size_t)t * 3 * tile_n, cur, c * s, r * s, s, &lut);
        put_tile(out->pixel_values + (size_t)t * 3 * tile_n, global, 0, 0, s, &lut);
        /* one image: padding to the batch maximum is a no-op, every pixel is real */
        memset(out->pixel_attention_mask, 1, (size_t)pl.n_tiles * tile_n);
        out->n_tiles = pl.n_tiles;
        out->n_rows = pl.rows;
        out->n_cols = pl.cols;
        out->tile = s;
        out->resized_w = pl.w1;
        out->resized_h = pl.h1;
    } else {
        evlm_idefics3_pixels_free(out);
    }
    evlm_image_free(&r1);
    evlm_image_free(&r2);
    evlm_image_free(&g);
    return st;
}
