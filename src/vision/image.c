/*
 * image.c - PNG and JPEG decoding into RGB8 (see image.h for the conversion rules).
 *
 * Both libraries report errors by longjmp. Each decoder keeps everything that is allocated or
 * changed after setjmp in a job struct owned by its caller (never in locals of the function
 * that calls setjmp), so the caller frees it whichever way the decoder returns. libpng and
 * libjpeg print warnings to stderr by default; both get silent handlers.
 *
 * Not here: GIF, WebP, BMP, TIFF (recognized by magic bytes and refused with
 * EVLM_ERR_UNSUPPORTED), EXIF orientation, colour management.
 */
#include "vision/image.h"
#include "core/file.h"
#include "core/status.h"

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h: it uses FILE and size_t without including them */
#include <jerror.h>
#include <png.h>

#define IMAGE_MAX_FILE (512u << 20) /* a larger "image file" is hostile */
#define JPEG_MAX_SCANS 500          /* progressive JPEGs with more scans are a CPU bomb */

evlm_image_limits evlm_image_default_limits(void) {
    evlm_image_limits l = {(int64_t)8192 * 8192};
    return l;
}

void evlm_image_free(evlm_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

evlm_status evlm_image_alloc(int w, int h, evlm_image *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (w <= 0 || h <= 0)
        return evlm__fail(EVLM_ERR_ARG, "image size %dx%d: both sides must be positive", w, h);
    if ((size_t)w > SIZE_MAX / 3 / (size_t)h)
        return evlm__fail(EVLM_ERR_NOMEM, "image size %dx%d overflows", w, h);
    out->rgb = malloc((size_t)w * (size_t)h * 3);
    if (!out->rgb) return evlm__fail(EVLM_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
    out->w = w;
    out->h = h;
    return EVLM_OK;
}

static evlm_status check_size(const char *what, uint64_t w, uint64_t h,
                              const evlm_image_limits *lim);

evlm_status evlm_image_from_rgb(const uint8_t *rgb, int w, int h, size_t stride, evlm_image *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!rgb) return evlm__fail(EVLM_ERR_ARG, "evlm_image_from_rgb: NULL pixels");
    if (w <= 0 || h <= 0) return evlm__fail(EVLM_ERR_ARG, "evlm_image_from_rgb: size %dx%d", w, h);
    if (stride < (size_t)w * 3)
        return evlm__fail(EVLM_ERR_ARG, "evlm_image_from_rgb: stride %zu < 3 * width %d", stride,
                          w);
    /* frames obey the same pixel limit as files, checked before allocating */
    evlm_image_limits lim = evlm_image_default_limits();
    EVLM_TRY(check_size("RGB frame", (uint64_t)w, (uint64_t)h, &lim));
    EVLM_TRY(evlm_image_alloc(w, h, out));
    for (int y = 0; y < h; y++)
        memcpy(out->rgb + (size_t)y * w * 3, rgb + (size_t)y * stride, (size_t)w * 3);
    return EVLM_OK;
}

/* "8192x8192" for a square limit, "N-pixel" otherwise. */
static evlm_status too_big(const char *what, uint64_t w, uint64_t h, int64_t max_pixels) {
    int64_t s = 1;
    while ((s + 1) * (s + 1) <= max_pixels && s < 3037000499LL) s++;
    if (s * s == max_pixels)
        return evlm__fail(EVLM_ERR_RANGE,
                          "%s: image is %llux%llu, more than the %lldx%lld pixel limit", what,
                          (unsigned long long)w, (unsigned long long)h, (long long)s, (long long)s);
    return evlm__fail(EVLM_ERR_RANGE, "%s: image is %llux%llu, more than the %lld-pixel limit",
                      what, (unsigned long long)w, (unsigned long long)h, (long long)max_pixels);
}

static evlm_status check_size(const char *what, uint64_t w, uint64_t h,
                              const evlm_image_limits *lim) {
    if (w == 0 || h == 0)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: image is %llux%llu", what, (unsigned long long)w,
                          (unsigned long long)h);
    /* w, h < 2^32 each, so the product fits */
    if (w > INT32_MAX || h > INT32_MAX || (int64_t)(w * h) > lim->max_pixels)
        return too_big(what, w, h, lim->max_pixels);
    return EVLM_OK;
}

/* ---- PNG ------------------------------------------------------------------------------- */

typedef struct png_job {
    const char *what;
    const uint8_t *data;
    size_t size, pos;
    const evlm_image_limits *lim;
    evlm_image img; /* the result, moved out on success */
    uint8_t *tmp;   /* decoded rows when they are not RGB8 already */
    png_bytep *rows;
    evlm_status st; /* status when the decoder returns without a longjmp */
    char msg[256];
} png_job;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_on_read(png_structp png, png_bytep dst, size_t n) {
    png_job *j = png_get_io_ptr(png);
    if (n > j->size - j->pos) {
        char m[96];
        snprintf(m, sizeof m, "file is truncated (%zu bytes)", j->size);
        png_error(png, m);
    }
    memcpy(dst, j->data + j->pos, n);
    j->pos += n;
}

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Runs libpng; returns 1 after a longjmp (message in j->msg), else 0 with j->st set. */
static int png_run(png_job *j) {
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning);
    if (!png) {
        j->st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory for the PNG decoder", j->what);
        return 0;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        j->st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory for the PNG decoder", j->what);
        return 0;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu); /* ours is checked below */
    png_set_read_fn(png, j, png_on_read);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
    j->st = check_size(j->what, w, h, j->lim);
    if (j->st != EVLM_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return 0;
    }
    /* Pillow opens 16-bit gray as "I;16" and clips it to 255 in convert("RGB"); every other
     * 16-bit layout ("RGB;16B", "RGBA;16B", "LA;16B") keeps the high byte = png_set_strip_16. */
    int gray16 = ctype == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !gray16) png_set_strip_16(png);
    if ((ctype & PNG_COLOR_MASK_ALPHA) || ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_strip_alpha(png); /* convert("RGB") drops alpha, it does not composite */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t ch = png_get_channels(png, info);
    size_t bps = gray16 ? 2 : 1;
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((ch != 1 && ch != 3) || rowbytes != (size_t)w * ch * bps) {
        png_destroy_read_struct(&png, &info, NULL);
        j->st =
            evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: PNG color type %d, depth %d: unexpected layout",
                       j->what, ctype, depth);
        return 0;
    }
    j->st = evlm_image_alloc((int)w, (int)h, &j->img);
    if (j->st == EVLM_OK && ch * bps != 3) {
        j->tmp = malloc(rowbytes * h); /* <= 2 * w * h, bounded by the pixel limit */
        if (!j->tmp) j->st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", j->what);
    }
    if (j->st == EVLM_OK) {
        j->rows = malloc(sizeof(png_bytep) * h);
        if (!j->rows) j->st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", j->what);
    }
    if (j->st != EVLM_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return 0;
    }
    uint8_t *base = j->tmp ? j->tmp : j->img.rgb;
    for (png_uint_32 y = 0; y < h; y++) j->rows[y] = base + (size_t)y * rowbytes;
    png_read_image(png, j->rows);
    /* No png_read_end: like Pillow, data after the last IDAT (or its absence) is not needed. */
    png_destroy_read_struct(&png, &info, NULL);

    if (j->tmp) {
        size_t n = (size_t)w * h;
        uint8_t *o = j->img.rgb;
        const uint8_t *t = j->tmp;
        for (size_t i = 0; i < n; i++, o += 3) {
            uint8_t v = gray16 ? (t[2 * i] == 0 ? t[2 * i + 1] : 255) : t[i];
            o[0] = o[1] = o[2] = v;
        }
    }
    j->st = EVLM_OK;
    return 0;
}

static evlm_status decode_png(const char *what, const uint8_t *data, size_t size,
                              const evlm_image_limits *lim, evlm_image *out) {
    /* IHDR is checked here first, so a hostile size fails before libpng reads anything else */
    if (size < 33) return evlm__fail(EVLM_ERR_FORMAT, "%s: PNG file is truncated", what);
    if (be32(data + 8) != 13 || memcmp(data + 12, "IHDR", 4) != 0)
        return evlm__fail(EVLM_ERR_FORMAT, "%s: PNG file does not start with IHDR", what);
    EVLM_TRY(check_size(what, be32(data + 16), be32(data + 20), lim));

    png_job *j = calloc(1, sizeof *j);
    if (!j) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    j->what = what;
    j->data = data;
    j->size = size;
    j->lim = lim;
    evlm_status st;
    if (png_run(j))
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: corrupt PNG: %s", what, j->msg);
    else
        st = j->st;
    free(j->tmp);
    free(j->rows);
    if (st == EVLM_OK)
        *out = j->img;
    else
        evlm_image_free(&j->img);
    free(j);
    return st;
}

/* ---- JPEG ------------------------------------------------------------------------------ */

typedef struct jpg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    const char *what;
    const evlm_image_limits *lim;
    evlm_image img;
    uint8_t *row;
    int created;
    evlm_status st;
    char msg[JMSG_LENGTH_MAX];
} jpg_job;

/* cinfo is the job's first member, so the common pointer libjpeg passes back is the job. */
static jpg_job *jpg_of(j_common_ptr c) {
    return (jpg_job *)(void *)c;
}

static void jpg_error_exit(j_common_ptr c) {
    jpg_job *j = jpg_of(c);
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

/* Warnings are ignored as Pillow ignores them, except running out of data: Pillow refuses a
 * truncated JPEG ("image file is truncated"), and so do we. */
static void jpg_emit_message(j_common_ptr c, int level) {
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) jpg_error_exit(c);
}

static void jpg_output_message(j_common_ptr c) {
    (void)c;
}

static void jpg_progress(j_common_ptr c) {
    if (!c->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpg_job *j = jpg_of(c);
        snprintf(j->msg, sizeof j->msg, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(j->jb, 1);
    }
}

static int jpg_run(jpg_job *j, const uint8_t *data, size_t size) {
    j->cinfo.err = jpeg_std_error(&j->err);
    j->err.error_exit = jpg_error_exit;
    j->err.emit_message = jpg_emit_message;
    j->err.output_message = jpg_output_message;
    if (setjmp(j->jb)) return 1;
    jpeg_create_decompress(&j->cinfo);
    j->created = 1;
    j->progress.progress_monitor = jpg_progress;
    j->cinfo.progress = &j->progress;
    jpeg_mem_src(&j->cinfo, data, (unsigned long)size);
    jpeg_read_header(&j->cinfo, TRUE);
    j->st = check_size(j->what, j->cinfo.image_width, j->cinfo.image_height, j->lim);
    if (j->st != EVLM_OK) return 0;

    int cmyk = 0;
    switch (j->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        j->cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        j->cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        j->cinfo.out_color_space = JCS_RGB;
        break;
    }
    jpeg_start_decompress(&j->cinfo);
    int nc = j->cinfo.output_components;
    int want = j->cinfo.out_color_space == JCS_GRAYSCALE ? 1 : cmyk ? 4 : 3;
    if (nc != want || j->cinfo.output_width != j->cinfo.image_width ||
        j->cinfo.output_height != j->cinfo.image_height) {
        j->st = evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: JPEG with %d components: unexpected layout",
                           j->what, nc);
        return 0;
    }
    int w = (int)j->cinfo.output_width, h = (int)j->cinfo.output_height;
    j->st = evlm_image_alloc(w, h, &j->img);
    if (j->st != EVLM_OK) return 0;
    j->row = malloc((size_t)w * (size_t)nc);
    if (!j->row) {
        j->st = evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", j->what);
        return 0;
    }
    while (j->cinfo.output_scanline < j->cinfo.output_height) {
        size_t y = j->cinfo.output_scanline;
        JSAMPROW rp = j->row;
        if (jpeg_read_scanlines(&j->cinfo, &rp, 1) != 1) {
            snprintf(j->msg, sizeof j->msg, "no data for row %zu", y);
            return 1;
        }
        uint8_t *o = j->img.rgb + y * (size_t)w * 3;
        const uint8_t *r = j->row;
        if (nc == 3) {
            memcpy(o, r, (size_t)w * 3);
        } else if (nc == 1) {
            for (int x = 0; x < w; x++, o += 3) o[0] = o[1] = o[2] = r[x];
        } else {
            /* Pillow reads every CMYK JPEG as "CMYK;I" (Adobe's inverted storage), then
             * cmyk2rgb: out = nk - MULDIV255(c, nk) with nk = 255 - k */
            for (int x = 0; x < w; x++, o += 3, r += 4) {
                int nk = r[3]; /* 255 - (255 - stored k) */
                for (int c = 0; c < 3; c++) {
                    int t = (255 - r[c]) * nk + 128;
                    int v = nk - (((t >> 8) + t) >> 8);
                    o[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    /* No jpeg_finish_decompress: the pixels are complete; trailing data does not matter. */
    j->st = EVLM_OK;
    return 0;
}

static evlm_status decode_jpeg(const char *what, const uint8_t *data, size_t size,
                               const evlm_image_limits *lim, evlm_image *out) {
    jpg_job *j = calloc(1, sizeof *j);
    if (!j) return evlm__fail(EVLM_ERR_NOMEM, "%s: out of memory", what);
    j->what = what;
    j->lim = lim;
    evlm_status st;
    if (jpg_run(j, data, size))
        st = evlm__fail(EVLM_ERR_FORMAT, "%s: corrupt JPEG: %s", what, j->msg);
    else
        st = j->st;
    if (j->created) jpeg_destroy_decompress(&j->cinfo);
    free(j->row);
    if (st == EVLM_OK)
        *out = j->img;
    else
        evlm_image_free(&j->img);
    free(j);
    return st;
}

/* ---- entry points ---------------------------------------------------------------------- */

evlm_status evlm_image_decode(const char *what, const void *data, size_t size,
                              const evlm_image_limits *lim, evlm_image *out) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    evlm_image_limits def = evlm_image_default_limits();
    if (!what) what = "image";
    if (!out) return evlm__fail(EVLM_ERR_ARG, "%s: evlm_image_decode: NULL output", what);
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!lim) lim = &def;
    if (lim->max_pixels <= 0)
        return evlm__fail(EVLM_ERR_ARG, "%s: max_pixels must be positive", what);
    const uint8_t *p = data;
    if (size == 0 || !p) return evlm__fail(EVLM_ERR_FORMAT, "%s: empty image file", what);
    if (size >= 8 && memcmp(p, png_sig, 8) == 0) return decode_png(what, p, size, lim, out);
    if (size >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return decode_jpeg(what, p, size, lim, out);
    const char *fmt = NULL;
    if (size >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        fmt = "GIF";
    else if (size >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        fmt = "WebP";
    else if (size >= 2 && memcmp(p, "BM", 2) == 0)
        fmt = "BMP";
    else if (size >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
        fmt = "TIFF";
    if (fmt)
        return evlm__fail(EVLM_ERR_UNSUPPORTED,
                          "%s: %s images are not supported (PNG or JPEG only)", what, fmt);
    return evlm__fail(EVLM_ERR_UNSUPPORTED, "%s: unknown image format (PNG or JPEG expected)",
                      what);
}

evlm_status evlm_image_load(const char *path, const evlm_image_limits *lim, evlm_image *out) {
    if (!out) return evlm__fail(EVLM_ERR_ARG, "evlm_image_load: NULL output");
    out->w = out->h = 0;
    out->rgb = NULL;
    if (!path) return evlm__fail(EVLM_ERR_ARG, "evlm_image_load: NULL path");
    char *data = NULL;
    size_t size = 0;
    EVLM_TRY(evlm_read_file(path, IMAGE_MAX_FILE, &data, &size));
    evlm_status st = evlm_image_decode(path, data, size, lim, out);
    free(data);
    return st;
}
