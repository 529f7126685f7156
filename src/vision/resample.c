/*
 * resample.c - Pillow's 8-bit resampling (libImaging/Resample.c and the NEAREST path of
 * Geometry.c), line for line where the arithmetic matters.
 *
 * Why every detail is kept: the coefficients are computed in double from the same expressions
 * (center = in0 + (xx + 0.5) * scale, bounds rounded with (int)(x + 0.5), the filter evaluated at
 * (x + xmin - center + 0.5) / filterscale, divided by their sum), then rounded to
 * PRECISION_BITS = 22 fixed point away from zero; each output is 2^21 + sum(pixel * k) shifted
 * right by 22 and clipped to 0..255. Any reordering changes a rounding somewhere. The sums are
 * carried in int64 so that no input can overflow (Pillow's int32 sums cannot overflow for these
 * filters either, so the results are the same).
 *
 * Not here: Pillow's box argument (the whole image is always the box), 16-bit / float modes.
 */
#include "vision/resample.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define PRECISION_BITS (32 - 8 - 2)

/* ---- filters (Pillow's, with their supports) ------------------------------------------- */

static double box_filter(double x) {
    return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
}

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    /* Pillow writes 0.54f + 0.46f * cos(x): float constants, double arithmetic */
    return sin(x) / x * ((double)0.54f + (double)0.46f * cos(x));
}

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

typedef struct rs_filter {
    double (*fn)(double x);
    double support;
} rs_filter;

static const rs_filter *filter_of(evlm_resample f) {
    static const rs_filter box = {box_filter, 0.5}, bilinear = {bilinear_filter, 1.0},
                           hamming = {hamming_filter, 1.0}, bicubic = {bicubic_filter, 2.0},
                           lanczos = {lanczos_filter, 3.0};
    switch (f) {
    case EVLM_RESAMPLE_BOX:
        return &box;
    case EVLM_RESAMPLE_BILINEAR:
        return &bilinear;
    case EVLM_RESAMPLE_HAMMING:
        return &hamming;
    case EVLM_RESAMPLE_BICUBIC:
        return &bicubic;
    case EVLM_RESAMPLE_LANCZOS:
        return &lanczos;
    case EVLM_RESAMPLE_NEAREST:
        break;
    }
    return NULL;
}

const char *evlm_resample_name(evlm_resample filter) {
    switch (filter) {
    case EVLM_RESAMPLE_NEAREST:
        return "nearest";
    case EVLM_RESAMPLE_LANCZOS:
        return "lanczos";
    case EVLM_RESAMPLE_BILINEAR:
        return "bilinear";
    case EVLM_RESAMPLE_BICUBIC:
        return "bicubic";
    case EVLM_RESAMPLE_BOX:
        return "box";
    case EVLM_RESAMPLE_HAMMING:
        return "hamming";
    }
    return "unknown";
}

/* ---- coefficients ---------------------------------------------------------------------- */

typedef struct rs_coeffs {
    int ksize;
    int *bounds; /* [out_size][2]: first input index, count */
    int32_t *kk; /* [out_size][ksize] fixed point */
} rs_coeffs;

static void coeffs_free(rs_coeffs *c) {
    free(c->bounds);
    free(c->kk);
    c->bounds = NULL;
    c->kk = NULL;
}

/* precompute_coeffs + normalize_coeffs_8bpc for the box [in0, in1) = [0, in_size). */
static evlm_status precompute_coeffs(int in_size, int out_size, const rs_filter *f, rs_coeffs *c) {
    float in0 = 0.0f, in1 = (float)in_size; /* Pillow's box is float[4] */
    double scale, filterscale;
    filterscale = scale = (double)(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = f->support * filterscale;
    double kmax = ceil(support) * 2 + 1;
    if (kmax > (double)(1 << 20))
        return evlm__fail(EVLM_ERR_RANGE, "resize %d -> %d: filter too wide", in_size, out_size);
    int ksize = (int)kmax;
    if ((size_t)out_size > SIZE_MAX / sizeof(double) / (size_t)ksize)
        return evlm__fail(EVLM_ERR_NOMEM, "resize %d -> %d: coefficient table overflows", in_size,
                          out_size);
    double *pre = malloc((size_t)out_size * (size_t)ksize * sizeof(double));
    c->bounds = malloc((size_t)out_size * 2 * sizeof(int));
    c->kk = malloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
    if (!pre || !c->bounds || !c->kk) {
        free(pre);
        coeffs_free(c);
        return evlm__fail(EVLM_ERR_NOMEM, "resize %d -> %d: out of memory", in_size, out_size);
    }
    c->ksize = ksize;
    for (int xx = 0; xx < out_size; xx++) {
        double center = (double)in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &pre[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) k[x] /= ww;
        }
        for (; x < ksize; x++) k[x] = 0;
        c->bounds[xx * 2 + 0] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * (size_t)ksize; i++) {
        if (pre[i] < 0)
            c->kk[i] = (int32_t)(-0.5 + pre[i] * (1 << PRECISION_BITS));
        else
            c->kk[i] = (int32_t)(0.5 + pre[i] * (1 << PRECISION_BITS));
    }
    free(pre);
    return EVLM_OK;
}

static inline uint8_t clip8(int64_t ss) {
    int64_t v = ss >> PRECISION_BITS; /* arithmetic shift, as Pillow's int >> */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* ---- passes ---------------------------------------------------------------------------- */

/* out rows [0, out_h) from in rows [offset, offset + out_h); width in_w -> out_w. */
static void resample_horizontal(uint8_t *out, int out_w, int out_h, const uint8_t *in, int in_w,
                                int offset, const rs_coeffs *c) {
    for (int yy = 0; yy < out_h; yy++) {
        const uint8_t *row = in + (size_t)(yy + offset) * in_w * 3;
        uint8_t *o = out + (size_t)yy * out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[xx * 2 + 0], xmax = c->bounds[xx * 2 + 1];
            const int32_t *k = &c->kk[(size_t)xx * c->ksize];
            int64_t ss0 = 1 << (PRECISION_BITS - 1), ss1 = ss0, ss2 = ss0;
            const uint8_t *p = row + (size_t)xmin * 3;
            for (int x = 0; x < xmax; x++, p += 3) {
                ss0 += (int64_t)p[0] * k[x];
                ss1 += (int64_t)p[1] * k[x];
                ss2 += (int64_t)p[2] * k[x];
            }
            o[xx * 3 + 0] = clip8(ss0);
            o[xx * 3 + 1] = clip8(ss1);
            o[xx * 3 + 2] = clip8(ss2);
        }
    }
}

static void resample_vertical(uint8_t *out, int w, int out_h, const uint8_t *in,
                              const rs_coeffs *c) {
    size_t stride = (size_t)w * 3;
    for (int yy = 0; yy < out_h; yy++) {
        const int32_t *k = &c->kk[(size_t)yy * c->ksize];
        int ymin = c->bounds[yy * 2 + 0], ymax = c->bounds[yy * 2 + 1];
        uint8_t *o = out + (size_t)yy * stride;
        for (size_t xx = 0; xx < stride; xx++) {
            int64_t ss = 1 << (PRECISION_BITS - 1);
            const uint8_t *p = in + (size_t)ymin * stride + xx;
            for (int y = 0; y < ymax; y++, p += stride) ss += (int64_t)*p * k[y];
            o[xx] = clip8(ss);
        }
    }
}

/* ImagingScaleAffine with a = {in_w / w, 0, 0, 0, in_h / h, 0}: the source pixel of output x
 * is (int)(a0 / 2 + x * a0), accumulated by repeated addition as Pillow does. */
static evlm_status resize_nearest(const evlm_image *src, int w, int h, evlm_image *dst) {
    int *xintab = calloc((size_t)w, sizeof(int));
    if (!xintab) return evlm__fail(EVLM_ERR_NOMEM, "resize: out of memory");
    evlm_status st = evlm_image_alloc(w, h, dst);
    if (st != EVLM_OK) {
        free(xintab);
        return st;
    }
    memset(dst->rgb, 0, (size_t)w * h * 3);
    double a0 = (double)((float)src->w - 0.0f) / w, a4 = (double)((float)src->h - 0.0f) / h;
    double xo = 0.0 + a0 * 0.5, yo = 0.0 + a4 * 0.5;
    int xmin = w, xmax = 0;
    for (int x = 0; x < w; x++) {
        int xin = xo < 0.0 ? -1 : (int)xo;
        if (xin >= 0 && xin < src->w) {
            xmax = x + 1;
            if (x < xmin) xmin = x;
            xintab[x] = xin;
        }
        xo += a0;
    }
    for (int y = 0; y < h; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        if (yi >= 0 && yi < src->h) {
            const uint8_t *in = src->rgb + (size_t)yi * src->w * 3;
            uint8_t *out = dst->rgb + (size_t)y * w * 3;
            for (int x = xmin; x < xmax; x++) memcpy(out + x * 3, in + (size_t)xintab[x] * 3, 3);
        }
        yo += a4;
    }
    free(xintab);
    return EVLM_OK;
}

/* ---- ImagingResampleInner -------------------------------------------------------------- */

evlm_status evlm_resize_rgb8(const evlm_image *src, int w, int h, evlm_resample filter,
                             evlm_image *dst) {
    if (!dst) return evlm__fail(EVLM_ERR_ARG, "resize: NULL output");
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    if (!src || !src->rgb || src->w <= 0 || src->h <= 0)
        return evlm__fail(EVLM_ERR_ARG, "resize: empty source image");
    if (w <= 0 || h <= 0) return evlm__fail(EVLM_ERR_ARG, "resize: target size %dx%d", w, h);
    if (filter == EVLM_RESAMPLE_NEAREST) {
        if (w == src->w && h == src->h)
            return evlm_image_from_rgb(src->rgb, src->w, src->h, (size_t)src->w * 3, dst);
        return resize_nearest(src, w, h, dst);
    }
    const rs_filter *f = filter_of(filter);
    if (!f) return evlm__fail(EVLM_ERR_ARG, "resize: unknown filter %d", (int)filter);

    int need_h = w != src->w, need_v = h != src->h;
    if (!need_h && !need_v)
        return evlm_image_from_rgb(src->rgb, src->w, src->h, (size_t)src->w * 3, dst);

    rs_coeffs cv = {0}, ch = {0};
    EVLM_TRY(precompute_coeffs(src->h, h, f, &cv));
    /* rows of the source that the vertical pass reads */
    int ybox_first = cv.bounds[0];
    int ybox_last = cv.bounds[h * 2 - 2] + cv.bounds[h * 2 - 1];

    evlm_status st = EVLM_OK;
    evlm_image tmp = {0, 0, NULL};
    const evlm_image *vin = src;
    if (need_h) {
        st = precompute_coeffs(src->w, w, f, &ch);
        if (st == EVLM_OK) {
            for (int i = 0; i < h; i++) cv.bounds[i * 2] -= ybox_first;
            int th = need_v ? ybox_last - ybox_first : src->h;
            int off = need_v ? ybox_first : 0;
            st = evlm_image_alloc(w, th, &tmp);
            if (st == EVLM_OK) resample_horizontal(tmp.rgb, w, th, src->rgb, src->w, off, &ch);
        }
        coeffs_free(&ch);
        vin = &tmp;
    }
    if (st == EVLM_OK && need_v) {
        st = evlm_image_alloc(vin->w, h, dst);
        if (st == EVLM_OK) resample_vertical(dst->rgb, vin->w, h, vin->rgb, &cv);
        evlm_image_free(&tmp);
    } else if (st == EVLM_OK) {
        *dst = tmp; /* horizontal only */
    } else {
        evlm_image_free(&tmp);
    }
    coeffs_free(&cv);
    return st;
}
