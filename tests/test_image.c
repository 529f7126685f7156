/* test_image.c - PNG / JPEG decoding and the resampler on files written here with libpng and
 * libjpeg (gray, gray16, gray+alpha, RGBA, palette + tRNS, 1/4-bit, 16-bit RGB, interlaced;
 * RGB, gray and CMYK JPEG), hostile input (truncated at several points, garbage, huge headers,
 * empty files: each a clear error, no crash, no leak), raw RGB frames with a stride, and
 * hand-computed resampling cases. */
#include "core/file.h"
#include "core/status.h"
#include "test.h"
#include "vision/image.h"
#include "vision/resample.h"

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <unistd.h>

static char g_dir[] = "/tmp/evlm_img_XXXXXX";

static void path_in(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* ---- writers ----------------------------------------------------------------------------- */

typedef struct png_spec {
    int w, h, color_type, depth, interlace;
    const uint8_t *pixels; /* packed rows as libpng expects them (16-bit big-endian) */
    const png_color *palette;
    int n_palette;
    const uint8_t *trns;
    int n_trns;
} png_spec;

static int write_png(const char *name, const png_spec *s) {
    char p[512];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f) return 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return 0;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->color_type,
                 s->interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->palette) png_set_PLTE(png, info, s->palette, s->n_palette);
    if (s->trns) png_set_tRNS(png, info, s->trns, s->n_trns, NULL);
    png_write_info(png, info);
    int ch = s->color_type == PNG_COLOR_TYPE_RGB          ? 3
             : s->color_type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
             : s->color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                          : 1;
    size_t rowbytes = ((size_t)s->w * ch * s->depth + 7) / 8;
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)s->h);
    for (int y = 0; y < s->h; y++) rows[y] = (png_bytep)(uintptr_t)(s->pixels + y * rowbytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
    return 1;
}

/* JPEG of w x h with `nc` components in color space cs (quality 100). */
static int write_jpeg(const char *name, int w, int h, int nc, J_COLOR_SPACE cs,
                      const uint8_t *pixels) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = nc;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    if (cs == JCS_CMYK) jpeg_set_colorspace(&c, JCS_CMYK);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(uintptr_t)(pixels + (size_t)c.next_scanline * w * nc);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    char p[512];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    int ok = f && fwrite(buf, 1, size, f) == size;
    if (f) fclose(f);
    free(buf);
    return ok;
}

static int load(const char *name, evlm_image *img) {
    char p[512];
    path_in(p, sizeof p, name);
    evlm_status st = evlm_image_load(p, NULL, img);
    CHECKF(st == EVLM_OK, "%s: %s", name, evlm_last_error());
    return st == EVLM_OK;
}

static int px_is(const evlm_image *im, int x, int y, int r, int g, int b) {
    const uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
    return p[0] == r && p[1] == g && p[2] == b;
}

static int px_near(const evlm_image *im, int x, int y, int r, int g, int b, int tol) {
    const uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
    return abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
}

/* ---- PNG layouts --------------------------------------------------------------------------- */

static void test_png_layouts(void) {
    evlm_image im;

    /* 8-bit gray: replicated */
    uint8_t g8[4 * 3];
    for (int i = 0; i < 12; i++) g8[i] = (uint8_t)(i * 20);
    png_spec s = {4, 3, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, g8, NULL, 0, NULL, 0};
    CHECK(write_png("gray.png", &s));
    if (load("gray.png", &im)) {
        CHECK(im.w == 4 && im.h == 3);
        CHECK(px_is(&im, 0, 0, 0, 0, 0) && px_is(&im, 3, 2, 220, 220, 220));
        CHECK(px_is(&im, 1, 1, 100, 100, 100));
        evlm_image_free(&im);
    }

    /* 16-bit gray: Pillow's "I;16" -> "RGB" clips at 255 instead of taking the high byte */
    static const uint16_t g16v[5] = {0, 100, 255, 256, 65535};
    uint8_t g16[10];
    for (int i = 0; i < 5; i++) {
        g16[2 * i] = (uint8_t)(g16v[i] >> 8);
        g16[2 * i + 1] = (uint8_t)g16v[i];
    }
    s = (png_spec){5, 1, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE, g16, NULL, 0, NULL, 0};
    CHECK(write_png("gray16.png", &s));
    if (load("gray16.png", &im)) {
        CHECK(px_is(&im, 0, 0, 0, 0, 0) && px_is(&im, 1, 0, 100, 100, 100));
        CHECK(px_is(&im, 2, 0, 255, 255, 255) && px_is(&im, 3, 0, 255, 255, 255));
        CHECK(px_is(&im, 4, 0, 255, 255, 255));
        evlm_image_free(&im);
    }

    /* gray + alpha: alpha dropped */
    uint8_t ga[2 * 2] = {77, 10, 200, 255};
    s = (png_spec){2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, ga, NULL, 0, NULL, 0};
    CHECK(write_png("gray_alpha.png", &s));
    if (load("gray_alpha.png", &im)) {
        CHECK(px_is(&im, 0, 0, 77, 77, 77) && px_is(&im, 1, 0, 200, 200, 200));
        evlm_image_free(&im);
    }

    /* RGBA: convert("RGB") drops alpha, even alpha 0 (no compositing on white or black) */
    uint8_t rgba[3 * 4] = {10, 20, 30, 0, 40, 50, 60, 128, 250, 240, 230, 255};
    s = (png_spec){3, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE, rgba, NULL, 0, NULL, 0};
    CHECK(write_png("rgba.png", &s));
    if (load("rgba.png", &im)) {
        CHECK(px_is(&im, 0, 0, 10, 20, 30) && px_is(&im, 1, 0, 40, 50, 60));
        CHECK(px_is(&im, 2, 0, 250, 240, 230));
        evlm_image_free(&im);
    }

    /* 16-bit RGBA: high bytes */
    uint8_t rgba16[8] = {0xab, 0xcd, 0x12, 0x34, 0x00, 0xff, 0x80, 0x00};
    s = (png_spec){1,    1, PNG_COLOR_TYPE_RGB_ALPHA, 16, PNG_INTERLACE_NONE, rgba16, NULL, 0,
                   NULL, 0};
    CHECK(write_png("rgba16.png", &s));
    if (load("rgba16.png", &im)) {
        CHECK(px_is(&im, 0, 0, 0xab, 0x12, 0x00));
        evlm_image_free(&im);
    }

    /* 2-bit palette with tRNS: colours looked up, transparency ignored */
    static const png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 8, 7}};
    static const uint8_t trns[4] = {0, 128, 255, 255};
    uint8_t idx[1] = {(0 << 6) | (1 << 4) | (2 << 2) | 3}; /* 4 pixels, 2 bits each */
    s = (png_spec){4, 1, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_NONE, idx, pal, 4, trns, 4};
    CHECK(write_png("palette.png", &s));
    if (load("palette.png", &im)) {
        CHECK(px_is(&im, 0, 0, 255, 0, 0) && px_is(&im, 1, 0, 0, 255, 0));
        CHECK(px_is(&im, 2, 0, 0, 0, 255) && px_is(&im, 3, 0, 9, 8, 7));
        evlm_image_free(&im);
    }

    /* 1-bit and 4-bit gray: scaled to 0..255 like Pillow's "1" and "L;4" */
    uint8_t b1[1] = {0xa0}; /* 1 0 1 0 */
    s = (png_spec){4, 1, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, b1, NULL, 0, NULL, 0};
    CHECK(write_png("gray1.png", &s));
    if (load("gray1.png", &im)) {
        CHECK(px_is(&im, 0, 0, 255, 255, 255) && px_is(&im, 1, 0, 0, 0, 0));
        CHECK(px_is(&im, 2, 0, 255, 255, 255) && px_is(&im, 3, 0, 0, 0, 0));
        evlm_image_free(&im);
    }
    uint8_t b4[1] = {0x3f}; /* 3, 15 */
    s = (png_spec){2, 1, PNG_COLOR_TYPE_GRAY, 4, PNG_INTERLACE_NONE, b4, NULL, 0, NULL, 0};
    CHECK(write_png("gray4.png", &s));
    if (load("gray4.png", &im)) {
        CHECK(px_is(&im, 0, 0, 51, 51, 51) && px_is(&im, 1, 0, 255, 255, 255));
        evlm_image_free(&im);
    }

    /* Adam7-interlaced RGB: same pixels as written */
    enum { IW = 13, IH = 11 };
    uint8_t rgb[IW * IH * 3];
    for (int y = 0; y < IH; y++)
        for (int x = 0; x < IW; x++) {
            uint8_t *p = rgb + (y * IW + x) * 3;
            p[0] = (uint8_t)(x * 19);
            p[1] = (uint8_t)(y * 23);
            p[2] = (uint8_t)(x * y);
        }
    s = (png_spec){IW, IH, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, rgb, NULL, 0, NULL, 0};
    CHECK(write_png("interlaced.png", &s));
    if (load("interlaced.png", &im)) {
        CHECK(im.w == IW && im.h == IH && memcmp(im.rgb, rgb, sizeof rgb) == 0);
        evlm_image_free(&im);
    }
    s.interlace = PNG_INTERLACE_NONE;
    CHECK(write_png("rgb.png", &s));
}

/* ---- JPEG --------------------------------------------------------------------------------- */

static void test_jpeg(void) {
    evlm_image im;
    enum { W = 16, H = 16 };
    uint8_t rgb[W * H * 3];
    for (int i = 0; i < W * H; i++) {
        rgb[i * 3 + 0] = 200;
        rgb[i * 3 + 1] = 120;
        rgb[i * 3 + 2] = 40;
    }
    CHECK(write_jpeg("rgb.jpg", W, H, 3, JCS_RGB, rgb));
    if (load("rgb.jpg", &im)) {
        CHECK(im.w == W && im.h == H);
        CHECKF(px_near(&im, 5, 7, 200, 120, 40, 3), "rgb jpeg pixel %d %d %d", im.rgb[0], im.rgb[1],
               im.rgb[2]);
        evlm_image_free(&im);
    }

    uint8_t gray[W * H];
    memset(gray, 90, sizeof gray);
    CHECK(write_jpeg("gray.jpg", W, H, 1, JCS_GRAYSCALE, gray));
    if (load("gray.jpg", &im)) {
        const uint8_t *p = im.rgb + (3 * W + 3) * 3;
        CHECK(p[0] == p[1] && p[1] == p[2] && abs(p[0] - 90) <= 1);
        evlm_image_free(&im);
    }

    /* CMYK, stored values (s_c, s_m, s_y, s_k): Pillow inverts them ("CMYK;I"), then
     * r = nk - MULDIV255(c, nk) with nk = 255 - k = s_k, c = 255 - s_c */
    uint8_t cmyk[W * H * 4];
    static const uint8_t sv[4] = {200, 100, 50, 220};
    for (int i = 0; i < W * H; i++) memcpy(cmyk + i * 4, sv, 4);
    CHECK(write_jpeg("cmyk.jpg", W, H, 4, JCS_CMYK, cmyk));
    if (load("cmyk.jpg", &im)) {
        int want[3];
        for (int c = 0; c < 3; c++) {
            int nk = sv[3], t = (255 - sv[c]) * nk + 128;
            want[c] = nk - (((t >> 8) + t) >> 8);
        }
        CHECKF(px_near(&im, 8, 8, want[0], want[1], want[2], 2), "cmyk: %d %d %d want %d %d %d",
               im.rgb[0], im.rgb[1], im.rgb[2], want[0], want[1], want[2]);
        evlm_image_free(&im);
    }
}

/* ---- hostile input ------------------------------------------------------------------------- */

static uint8_t *slurp(const char *name, size_t *n) {
    char p[512];
    path_in(p, sizeof p, name);
    char *d = NULL;
    if (evlm_read_file(p, 1 << 20, &d, n) != EVLM_OK) return NULL;
    return (uint8_t *)d;
}

static void expect(const char *what, const void *data, size_t n, const evlm_image_limits *lim,
                   evlm_status want, const char *mention) {
    evlm_image im = {1, 1, (uint8_t *)1};
    evlm_status st = evlm_image_decode(what, data, n, lim, &im);
    CHECKF(st == want, "%s: status %d, want %d: %s", what, (int)st, (int)want, evlm_last_error());
    CHECKF(strstr(evlm_last_error(), what) != NULL, "%s: message lacks the name: %s", what,
           evlm_last_error());
    if (mention)
        CHECKF(strstr(evlm_last_error(), mention) != NULL, "%s: message lacks '%s': %s", what,
               mention, evlm_last_error());
    CHECK(im.rgb == NULL && im.w == 0 && im.h == 0);
    if (st == EVLM_OK) evlm_image_free(&im);
}

static uint32_t crc_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void test_hostile(void) {
    size_t n = 0;
    uint8_t *png = slurp("interlaced.png", &n);
    CHECK(png != NULL && n > 60);
    if (png) {
        /* truncated: inside the signature, inside IHDR, after IHDR, inside IDAT, near the end */
        size_t cuts[] = {4, 8, 20, 33, 45, n / 2, n - 20};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char what[64];
            snprintf(what, sizeof what, "cut%zu.png", cuts[i]);
            evlm_status want = cuts[i] < 8 ? EVLM_ERR_UNSUPPORTED : EVLM_ERR_FORMAT;
            expect(what, png, cuts[i], NULL, want, NULL);
        }
        /* a corrupted IHDR CRC */
        uint8_t *bad = malloc(n);
        memcpy(bad, png, n);
        bad[29] ^= 0xff;
        expect("badcrc.png", bad, n, NULL, EVLM_ERR_FORMAT, "corrupt PNG");
        /* garbage inside IDAT */
        memcpy(bad, png, n);
        for (size_t i = 41; i < n - 12; i++) bad[i] = (uint8_t)(i * 37);
        expect("garbage_idat.png", bad, n, NULL, EVLM_ERR_FORMAT, NULL);
        /* IHDR claiming 100000 x 100000 (valid CRC): refused before any pixel allocation */
        memcpy(bad, png, n);
        put_be32(bad + 16, 100000);
        put_be32(bad + 20, 100000);
        put_be32(bad + 29, crc_of(bad + 12, 17));
        expect("huge.png", bad, n, NULL, EVLM_ERR_RANGE,
               "image is 100000x100000, more than the 8192x8192 pixel limit");
        /* a custom limit */
        evlm_image_limits lim = {99};
        expect("limit.png", png, n, &lim, EVLM_ERR_RANGE, "99-pixel limit");
        lim.max_pixels = 100;
        expect("limit2.png", png, n, &lim, EVLM_ERR_RANGE, "10x10 pixel limit");
        free(bad);
        free(png);
    }

    uint8_t *jpg = slurp("rgb.jpg", &n);
    CHECK(jpg != NULL && n > 200);
    if (jpg) {
        size_t cuts[] = {3, 20, 100, n / 2, n - 10};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char what[64];
            snprintf(what, sizeof what, "cut%zu.jpg", cuts[i]);
            expect(what, jpg, cuts[i], NULL, EVLM_ERR_FORMAT, "corrupt JPEG");
        }
        /* SOF0 claiming 60000 x 60000 */
        uint8_t *bad = malloc(n);
        memcpy(bad, jpg, n);
        int patched = 0;
        for (size_t i = 2; i + 9 < n; i++)
            if (bad[i] == 0xff && bad[i + 1] == 0xc0) {
                bad[i + 5] = 0xea; /* height 0xea60 = 60000 */
                bad[i + 6] = 0x60;
                bad[i + 7] = 0xea;
                bad[i + 8] = 0x60;
                patched = 1;
                break;
            }
        CHECK(patched);
        expect("huge.jpg", bad, n, NULL, EVLM_ERR_RANGE, "60000x60000");
        /* garbage after the SOI marker */
        memcpy(bad, jpg, n);
        for (size_t i = 3; i < n; i++) bad[i] = (uint8_t)(i * 131 + 7);
        expect("garbage.jpg", bad, n, NULL, EVLM_ERR_FORMAT, NULL);
        free(bad);
        free(jpg);
    }

    static const uint8_t junk[16] = "hello, world!!!";
    expect("junk.bin", junk, sizeof junk, NULL, EVLM_ERR_UNSUPPORTED, "unknown image format");
    static const uint8_t gif[16] = "GIF89a\x01\x00\x01\x00";
    expect("anim.gif", gif, sizeof gif, NULL, EVLM_ERR_UNSUPPORTED, "GIF");
    expect("empty.png", junk, 0, NULL, EVLM_ERR_FORMAT, "empty");

    /* files: missing, empty */
    evlm_image im;
    char p[512];
    path_in(p, sizeof p, "missing.png");
    CHECK(evlm_image_load(p, NULL, &im) == EVLM_ERR_IO && im.rgb == NULL);
    path_in(p, sizeof p, "empty.png");
    FILE *f = fopen(p, "wb");
    if (f) fclose(f);
    CHECK(evlm_image_load(p, NULL, &im) == EVLM_ERR_FORMAT);
    CHECK(strstr(evlm_last_error(), "empty.png") != NULL);
}

/* ---- raw frames ---------------------------------------------------------------------------- */

static void test_from_rgb(void) {
    enum { W = 5, H = 3, STRIDE = W * 3 + 7 };
    uint8_t buf[STRIDE * H];
    memset(buf, 0xee, sizeof buf);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W * 3; x++) buf[y * STRIDE + x] = (uint8_t)(y * 50 + x);
    evlm_image im;
    CHECK_OK(evlm_image_from_rgb(buf, W, H, STRIDE, &im));
    int ok = im.w == W && im.h == H;
    for (int y = 0; ok && y < H; y++) ok = memcmp(im.rgb + y * W * 3, buf + y * STRIDE, W * 3) == 0;
    CHECK(ok);
    evlm_image_free(&im);
    CHECK(evlm_image_from_rgb(buf, W, H, W * 3 - 1, &im) == EVLM_ERR_ARG && im.rgb == NULL);
    CHECK(evlm_image_from_rgb(buf, 0, H, STRIDE, &im) == EVLM_ERR_ARG);
    CHECK(evlm_image_from_rgb(NULL, W, H, STRIDE, &im) == EVLM_ERR_ARG);
    evlm_image_free(&im); /* freeing an empty image is fine */
}

/* ---- resampling ---------------------------------------------------------------------------- */

static void test_resample(void) {
    evlm_image src, dst;
    /* bilinear 2x1 -> 4x1, worked by hand from precompute_coeffs: [p0, .75p0+.25p1, ...] */
    uint8_t two[6] = {0, 0, 0, 200, 100, 40};
    CHECK_OK(evlm_image_from_rgb(two, 2, 1, 6, &src));
    CHECK_OK(evlm_resize_rgb8(&src, 4, 1, EVLM_RESAMPLE_BILINEAR, &dst));
    CHECK(px_is(&dst, 0, 0, 0, 0, 0) && px_is(&dst, 1, 0, 50, 25, 10));
    CHECK(px_is(&dst, 2, 0, 150, 75, 30) && px_is(&dst, 3, 0, 200, 100, 40));
    evlm_image_free(&dst);
    /* nearest 2 -> 4: sources 0, 0, 1, 1 */
    CHECK_OK(evlm_resize_rgb8(&src, 4, 1, EVLM_RESAMPLE_NEAREST, &dst));
    CHECK(px_is(&dst, 1, 0, 0, 0, 0) && px_is(&dst, 2, 0, 200, 100, 40));
    evlm_image_free(&dst);
    evlm_image_free(&src);

    /* box 2x2 -> 1x1 of 0 and 255: (0 + 255) / 2 rounds half up to 128 in both passes */
    uint8_t four[12] = {0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0};
    CHECK_OK(evlm_image_from_rgb(four, 2, 2, 6, &src));
    CHECK_OK(evlm_resize_rgb8(&src, 1, 1, EVLM_RESAMPLE_BOX, &dst));
    CHECK(px_is(&dst, 0, 0, 128, 128, 128));
    evlm_image_free(&dst);
    /* nearest 4x1 -> 2x1 picks 1 and 3 */
    evlm_image_free(&src);
    uint8_t row4[12] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4};
    CHECK_OK(evlm_image_from_rgb(row4, 4, 1, 12, &src));
    CHECK_OK(evlm_resize_rgb8(&src, 2, 1, EVLM_RESAMPLE_NEAREST, &dst));
    CHECK(px_is(&dst, 0, 0, 2, 2, 2) && px_is(&dst, 1, 0, 4, 4, 4));
    evlm_image_free(&dst);
    evlm_image_free(&src);

    /* a constant image stays constant under every filter and size; same size is a copy */
    CHECK_OK(evlm_image_alloc(37, 23, &src));
    memset(src.rgb, 173, (size_t)37 * 23 * 3);
    static const int sizes[][2] = {{37, 23}, {5, 5}, {100, 23}, {37, 90}, {1, 1}, {300, 7}};
    for (int f = 0; f <= 5; f++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            CHECK_OK(evlm_resize_rgb8(&src, sizes[i][0], sizes[i][1], (evlm_resample)f, &dst));
            int ok = dst.rgb && dst.w == sizes[i][0] && dst.h == sizes[i][1];
            for (size_t k = 0; ok && k < (size_t)dst.w * dst.h * 3; k++) ok = dst.rgb[k] == 173;
            CHECKF(ok, "%s to %dx%d is not constant", evlm_resample_name((evlm_resample)f),
                   sizes[i][0], sizes[i][1]);
            evlm_image_free(&dst);
        }
    CHECK(evlm_resize_rgb8(&src, 0, 5, EVLM_RESAMPLE_LANCZOS, &dst) == EVLM_ERR_ARG);
    CHECK(evlm_resize_rgb8(&src, 5, 5, (evlm_resample)9, &dst) == EVLM_ERR_ARG);
    evlm_image_free(&src);
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_png_layouts();
    test_jpeg();
    test_hostile();
    test_from_rgb();
    test_resample();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_done();
}
