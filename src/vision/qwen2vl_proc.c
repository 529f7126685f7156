/*
 * qwen2vl_proc.c - Qwen2VLImageProcessorPil for one image and get_rope_index for one sequence
 * (see qwen2vl_proc.h).
 *
 * smart_resize follows transformers 5 expression by expression: Python's `h / factor` is a
 * correctly rounded double division (so is the C one for these magnitudes), round() is
 * round-half-even (rint in the default rounding mode), `(h * w) / max_pixels` divides two
 * integers below 2^53, exactly as the C doubles do. The pixel values are computed as numpy does
 * (one 256-entry table per channel: float32(double(v) * rescale_factor), then (x - mean) / std
 * in float32), so the result is identical to transformers'.
 *
 * Not here: videos (several frames), batching, the torchvision backend.
 */
#include "vision/qwen2vl_proc.h"
#include "core/file.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PIXELS_CFG ((int64_t)1 << 40) /* min_pixels / max_pixels beyond this: hostile */
#define MAX_RESIZED    ((int64_t)1 << 30) /* resized h * w */
#define MAX_SIDE       (1 << 20)          /* resized side */
#define MAX_OUT_BYTES  (2ull << 30)       /* pixel_values */

evlm_qwen2vl_proc evlm_qwen2vl_proc_default(void) {
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}; /* OPENAI_CLIP_MEAN */
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f}; /* OPENAI_CLIP_STD */
    evlm_qwen2vl_proc p;
    memset(&p, 0, sizeof p);
    p.do_convert_rgb = p.do_resize = p.do_rescale = p.do_normalize = true;
    p.min_pixels = 56 * 56;
    p.max_pixels = 28 * 28 * 1280;
    p.patch_size = 14;
    p.merge_size = 2;
    p.temporal_patch_size = 2;
    p.resample = EVLM_RESAMPLE_BICUBIC;
    p.rescale_factor = 1.0 / 255.0;
    memcpy(p.image_mean, mean, sizeof mean);
    memcpy(p.image_std, std, sizeof std);
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

static evlm_status get_int(const char *file, const cJSON *obj, const char *key, int64_t lo,
                           int64_t hi, int *out) {
    int64_t v = *out;
    EVLM_TRY(evlm_json_int(file, obj, key, lo, hi, &v));
    *out = (int)v;
    return EVLM_OK;
}

evlm_status evlm_qwen2vl_proc_from_json(const char *file, const cJSON *obj,
                                        evlm_qwen2vl_proc *out) {
    evlm_qwen2vl_proc p = evlm_qwen2vl_proc_default();
    if (!cJSON_IsObject(obj))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: the image processor must be an object", file);
    const char *type = NULL;
    EVLM_TRY(evlm_json_str(file, obj, "image_processor_type", &type));
    if (type && strncmp(type, "Qwen2VLImageProcessor", 21) != 0)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: field \"image_processor_type\" = \"%s\" is not a Qwen2-VL image "
                          "processor",
                          file, type);
    EVLM_TRY(evlm_json_bool(file, obj, "do_convert_rgb", &p.do_convert_rgb));
    EVLM_TRY(evlm_json_bool(file, obj, "do_resize", &p.do_resize));
    EVLM_TRY(evlm_json_bool(file, obj, "do_rescale", &p.do_rescale));
    EVLM_TRY(evlm_json_bool(file, obj, "do_normalize", &p.do_normalize));

    /* size: {"shortest_edge", "longest_edge"} (transformers 5) or {"min_pixels", "max_pixels"}
     * (older files); top-level min_pixels / max_pixels override both */
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(obj, "size");
    if (size && !cJSON_IsNull(size)) {
        if (!cJSON_IsObject(size))
            return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"size\" must be an object", file);
        char where[512];
        snprintf(where, sizeof where, "%s: size", file);
        EVLM_TRY(evlm_json_int(where, size, "min_pixels", 1, MAX_PIXELS_CFG, &p.min_pixels));
        EVLM_TRY(evlm_json_int(where, size, "max_pixels", 1, MAX_PIXELS_CFG, &p.max_pixels));
        EVLM_TRY(evlm_json_int(where, size, "shortest_edge", 1, MAX_PIXELS_CFG, &p.min_pixels));
        EVLM_TRY(evlm_json_int(where, size, "longest_edge", 1, MAX_PIXELS_CFG, &p.max_pixels));
    }
    EVLM_TRY(evlm_json_int(file, obj, "min_pixels", 1, MAX_PIXELS_CFG, &p.min_pixels));
    EVLM_TRY(evlm_json_int(file, obj, "max_pixels", 1, MAX_PIXELS_CFG, &p.max_pixels));

    EVLM_TRY(get_int(file, obj, "patch_size", 1, 1024, &p.patch_size));
    EVLM_TRY(get_int(file, obj, "merge_size", 1, 64, &p.merge_size));
    EVLM_TRY(get_int(file, obj, "temporal_patch_size", 1, 16, &p.temporal_patch_size));
    if ((int64_t)p.patch_size * p.merge_size > 4096)
        return evlm__fail(EVLM_ERR_FORMAT,
                          "%s: fields \"patch_size\" x \"merge_size\" = %lld is too large", file,
                          (long long)p.patch_size * p.merge_size);
    int64_t rs = p.resample;
    EVLM_TRY(evlm_json_int(file, obj, "resample", 0, 5, &rs));
    p.resample = (evlm_resample)rs;
    EVLM_TRY(evlm_json_num(file, obj, "rescale_factor", &p.rescale_factor));
    if (!(p.rescale_factor > 0) || !isfinite(p.rescale_factor))
        return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"rescale_factor\" must be positive", file);
    EVLM_TRY(get_triple(file, obj, "image_mean", p.image_mean));
    EVLM_TRY(get_triple(file, obj, "image_std", p.image_std));
    for (int c = 0; c < 3; c++)
        if (p.image_std[c] == 0.0f)
            return evlm__fail(EVLM_ERR_FORMAT, "%s: field \"image_std\"[%d] is zero", file, c);
    *out = p;
    return EVLM_OK;
}

evlm_status evlm_qwen2vl_proc_load(const char *dir, evlm_qwen2vl_proc *out) {
    evlm_dir d = evlm_dir_folder(dir);
    return evlm_qwen2vl_proc_load_dir(&d, out);
}

evlm_status evlm_qwen2vl_proc_load_dir(const evlm_dir *d, evlm_qwen2vl_proc *out) {
    char path[4096];
    cJSON *root;
    const cJSON *obj;
    *out = evlm_qwen2vl_proc_default();
    EVLM_TRY(evlm_json_image_processor(d, &root, &obj, path, sizeof path));
    evlm_status st = evlm_qwen2vl_proc_from_json(path, obj, out);
    cJSON_Delete(root);
    return st;
}

/* ---- sizes ----------------------------------------------------------------------------- */

evlm_status evlm_qwen2vl_smart_resize(int height, int width, int factor, int64_t min_pixels,
                                      int64_t max_pixels, int *out_h, int *out_w) {
    if (height <= 0 || width <= 0 || factor <= 0 || min_pixels <= 0 || max_pixels <= 0 ||
        min_pixels > MAX_PIXELS_CFG || max_pixels > MAX_PIXELS_CFG)
        return evlm__fail(EVLM_ERR_ARG,
                          "qwen2vl smart_resize: size %dx%d, factor %d, pixels [%lld, %lld]", width,
                          height, factor, (long long)min_pixels, (long long)max_pixels);
    double hi = height > width ? height : width, lo = height > width ? width : height;
    if (hi / lo > 200.0)
        return evlm__fail(EVLM_ERR_ARG,
                          "qwen2vl: image %dx%d: absolute aspect ratio must be at most 200", width,
                          height);
    const double f = (double)factor, hw = (double)height * (double)width; /* exact: < 2^62 */
    double h_bar = rint(height / f) * f, w_bar = rint(width / f) * f;
    if (h_bar * w_bar > (double)max_pixels) {
        double beta = sqrt(hw / (double)max_pixels);
        h_bar = floor(height / beta / f) * f;
        w_bar = floor(width / beta / f) * f;
        if (h_bar < f) h_bar = f;
        if (w_bar < f) w_bar = f;
    } else if (h_bar * w_bar < (double)min_pixels) {
        double beta = sqrt((double)min_pixels / hw);
        h_bar = ceil(height * beta / f) * f;
        w_bar = ceil(width * beta / f) * f;
    }
    if (!(h_bar >= 1 && w_bar >= 1 && h_bar <= MAX_SIDE && w_bar <= MAX_SIDE &&
          h_bar * w_bar <= (double)MAX_RESIZED))
        return evlm__fail(EVLM_ERR_RANGE,
                          "qwen2vl: image %dx%d resizes to %.0fx%.0f (more than %lld pixels or "
                          "empty)",
                          width, height, w_bar, h_bar, (long long)MAX_RESIZED);
    *out_h = (int)h_bar;
    *out_w = (int)w_bar;
    return EVLM_OK;
}

typedef struct plan {
    int rh, rw;     /* resized size */
    int gt, gh, gw; /* grid in patches */
    int n_patches, patch_dim, n_tokens;
} plan;

static evlm_status make_plan(const evlm_qwen2vl_proc *p, int w, int h, plan *pl) {
    if (!p) return evlm__fail(EVLM_ERR_ARG, "qwen2vl: NULL processor");
    if (w <= 0 || h <= 0) return evlm__fail(EVLM_ERR_ARG, "qwen2vl: image size %dx%d", w, h);
    if (p->patch_size < 1 || p->patch_size > 1024 || p->merge_size < 1 || p->merge_size > 64 ||
        p->temporal_patch_size < 1 || p->temporal_patch_size > 16)
        return evlm__fail(EVLM_ERR_ARG, "qwen2vl: patch %d, merge %d, temporal %d out of range",
                          p->patch_size, p->merge_size, p->temporal_patch_size);
    const int factor = p->patch_size * p->merge_size;
    memset(pl, 0, sizeof *pl);
    if (p->do_resize) {
        EVLM_TRY(evlm_qwen2vl_smart_resize(h, w, factor, p->min_pixels, p->max_pixels, &pl->rh,
                                           &pl->rw));
    } else {
        if (h % factor || w % factor)
            return evlm__fail(EVLM_ERR_ARG,
                              "qwen2vl: without resizing, the image (%dx%d) must be a multiple "
                              "of patch_size x merge_size = %d",
                              w, h, factor);
        pl->rh = h;
        pl->rw = w;
    }
    pl->gt = 1; /* one frame, repeated to temporal_patch_size */
    pl->gh = pl->rh / p->patch_size;
    pl->gw = pl->rw / p->patch_size;
    int64_t np = (int64_t)pl->gh * pl->gw,
            pd = 3LL * p->temporal_patch_size * p->patch_size * p->patch_size;
    if (np < 1 || np > INT32_MAX || (uint64_t)np * (uint64_t)pd * sizeof(float) > MAX_OUT_BYTES)
        return evlm__fail(EVLM_ERR_RANGE,
                          "qwen2vl: %dx%d image gives %lld patches of %lld values: too large", w, h,
                          (long long)np, (long long)pd);
    pl->n_patches = (int)np;
    pl->patch_dim = (int)pd;
    pl->n_tokens = (int)(np / ((int64_t)p->merge_size * p->merge_size));
    return EVLM_OK;
}

evlm_status evlm_qwen2vl_plan(const evlm_qwen2vl_proc *p, int w, int h, int *grid_t, int *grid_h,
                              int *grid_w, int *n_tokens) {
    plan pl;
    EVLM_TRY(make_plan(p, w, h, &pl));
    if (grid_t) *grid_t = pl.gt;
    if (grid_h) *grid_h = pl.gh;
    if (grid_w) *grid_w = pl.gw;
    if (n_tokens) *n_tokens = pl.n_tokens;
    return EVLM_OK;
}

/* ---- pixels ---------------------------------------------------------------------------- */

void evlm_qwen2vl_pixels_free(evlm_qwen2vl_pixels *px) {
    if (!px) return;
    free(px->pixel_values);
    memset(px, 0, sizeof *px);
}

evlm_status evlm_qwen2vl_preprocess(const evlm_qwen2vl_proc *p, const evlm_image *img,
                                    evlm_qwen2vl_pixels *out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "qwen2vl: NULL output");
    memset(out, 0, sizeof *out);
    if (!p || !img || !img->rgb)
        return evlm__fail(EVLM_ERR_ARG, "qwen2vl: NULL processor or image");
    plan pl;
    EVLM_TRY(make_plan(p, img->w, img->h, &pl));

    evlm_image rs = {0, 0, NULL};
    const evlm_image *cur = img;
    if (p->do_resize && (pl.rw != img->w || pl.rh != img->h)) {
        EVLM_TRY(evlm_resize_rgb8(img, pl.rw, pl.rh, p->resample, &rs));
        cur = &rs;
    }
    out->pixel_values = malloc((size_t)pl.n_patches * (size_t)pl.patch_dim * sizeof(float));
    if (!out->pixel_values) {
        evlm_image_free(&rs);
        return evlm__fail(EVLM_ERR_NOMEM, "qwen2vl: out of memory for %d patches", pl.n_patches);
    }

    /* rescale (float64 multiply, cast to float32), then normalize in float32, as numpy does */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            if (p->do_normalize) x = (x - p->image_mean[c]) / p->image_std[c];
            lut[c][v] = x;
        }

    /* numpy: reshape (T, C, gh/m, m, p, gw/m, m, p), transpose to (gh/m, gw/m, m, m, C, T, p, p) */
    const int P = p->patch_size, M = p->merge_size, T = p->temporal_patch_size;
    const int bw_n = pl.gw / M, bh_n = pl.gh / M;
    float *dst = out->pixel_values;
    for (int bh = 0; bh < bh_n; bh++)
        for (int bw = 0; bw < bw_n; bw++)
            for (int mh = 0; mh < M; mh++)
                for (int mw = 0; mw < M; mw++) {
                    const int y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
                    for (int c = 0; c < 3; c++)
                        for (int t = 0; t < T; t++) /* the same frame T times */
                            for (int y = 0; y < P; y++) {
                                const uint8_t *row =
                                    cur->rgb +
                                    ((size_t)(y0 + y) * (size_t)cur->w + (size_t)x0) * 3 + c;
                                for (int x = 0; x < P; x++) *dst++ = lut[c][row[(size_t)x * 3]];
                            }
                }
    evlm_image_free(&rs);
    out->grid_t = pl.gt;
    out->grid_h = pl.gh;
    out->grid_w = pl.gw;
    out->n_patches = pl.n_patches;
    out->patch_dim = pl.patch_dim;
    out->n_tokens = pl.n_tokens;
    out->resized_w = pl.rw;
    out->resized_h = pl.rh;
    return EVLM_OK;
}

/* ---- M-RoPE positions (get_rope_index) ------------------------------------------------- */

evlm_status evlm_qwen2vl_rope_index(const int32_t *ids, int n, int32_t image_token_id,
                                    int merge_size, const int32_t *grids, int n_images,
                                    int32_t *pos, int32_t *delta) {
    if (!ids || !pos || n < 1 || merge_size < 1 || n_images < 0 || (n_images > 0 && !grids))
        return evlm__fail(EVLM_ERR_ARG,
                          "qwen2vl rope index: bad arguments (n %d, merge %d, "
                          "images %d)",
                          n, merge_size, n_images);
    int32_t *pt = pos, *ph = pos + n, *pw = pos + 2 * (size_t)n;
    int64_t cur = 0, maxp = -1;
    int img = 0;
    for (int i = 0; i < n;) {
        if (ids[i] != image_token_id) {
            pt[i] = ph[i] = pw[i] = (int32_t)cur;
            maxp = cur > maxp ? cur : maxp;
            cur++;
            i++;
            continue;
        }
        int j = i;
        while (j < n && ids[j] == image_token_id) j++;
        if (img >= n_images)
            return evlm__fail(EVLM_ERR_ARG,
                              "qwen2vl rope index: image %d (tokens %d..%d) has no grid (%d given)",
                              img, i, j - 1, n_images);
        const int32_t gt = grids[3 * img], gh = grids[3 * img + 1], gw = grids[3 * img + 2];
        if (gt < 1 || gh < merge_size || gw < merge_size || gh % merge_size || gw % merge_size)
            return evlm__fail(EVLM_ERR_ARG,
                              "qwen2vl rope index: grid %d = (%d, %d, %d) with merge %d", img, gt,
                              gh, gw, merge_size);
        const int64_t lh = gh / merge_size, lw = gw / merge_size;
        if ((int64_t)(j - i) != (int64_t)gt * lh * lw)
            return evlm__fail(EVLM_ERR_ARG,
                              "qwen2vl rope index: image %d has %d tokens, its grid (%d, %d, %d) "
                              "needs %lld",
                              img, j - i, gt, gh, gw, (long long)gt * lh * lw);
        int k = i;
        for (int64_t t = 0; t < gt; t++)
            for (int64_t y = 0; y < lh; y++)
                for (int64_t x = 0; x < lw; x++, k++) {
                    pt[k] = (int32_t)(cur + t);
                    ph[k] = (int32_t)(cur + y);
                    pw[k] = (int32_t)(cur + x);
                }
        int64_t top = cur + (gt - 1 > lh - 1 ? gt - 1 : lh - 1);
        if (lw - 1 + cur > top) top = cur + lw - 1;
        maxp = top > maxp ? top : maxp;
        cur += lh > lw ? lh : lw;
        img++;
        i = j;
        if (cur > INT32_MAX / 2)
            return evlm__fail(EVLM_ERR_RANGE, "qwen2vl rope index: positions overflow");
    }
    if (img != n_images)
        return evlm__fail(EVLM_ERR_ARG, "qwen2vl rope index: %d image grids for %d images",
                          n_images, img);
    if (delta) *delta = (int32_t)(maxp + 1 - n);
    return EVLM_OK;
}
