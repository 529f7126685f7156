/*
 * image.h - decoded images: PNG (libpng) and JPEG (libjpeg-turbo) into 8-bit RGB, and raw RGB
 * frames from a camera or another decoder.
 *
 * Every decoded image becomes what Pillow gives for Image.open(f).convert("RGB"), which is what
 * transformers' convert_to_rgb does for non-RGB images: alpha is dropped (not composited),
 * palettes are looked up, gray is replicated, 16-bit RGB / RGBA / gray+alpha keep the high byte,
 * 16-bit gray is clipped to 255 (Pillow's "I;16" -> "RGB" conversion), 1/2/4-bit gray is
 * scaled to 0..255, CMYK JPEGs are read with Adobe's inverted convention. Gamma, ICC profiles
 * and EXIF orientation are ignored, as Pillow does unless asked.
 *
 * Width and height come from the file header and are checked against evlm_image_limits before
 * anything image-sized is allocated. Truncated or corrupt files fail with EVLM_ERR_FORMAT and a
 * message naming the file; nothing is printed, nothing leaks.
 *
 * Not here: resampling (resample.h), model-specific preprocessing (idefics3_proc.h).
 */
#ifndef EVLM_VISION_IMAGE_H
#define EVLM_VISION_IMAGE_H

#include "evlm.h"

#include <stddef.h>
#include <stdint.h>

/* RGB8, row-major, rows packed (stride 3*w), owned: release with evlm_image_free. */
typedef struct evlm_image {
    int w, h;
    uint8_t *rgb;
} evlm_image;

typedef struct evlm_image_limits {
    int64_t max_pixels; /* w*h above this is EVLM_ERR_RANGE; default 8192*8192 */
} evlm_image_limits;

evlm_image_limits evlm_image_default_limits(void);

/* Reads and decodes a PNG or JPEG file (format from its magic bytes). lim may be NULL
 * (defaults). On failure *out is left empty ({0, 0, NULL}). */
evlm_status evlm_image_load(const char *path, const evlm_image_limits *lim, evlm_image *out);

/* Decodes a PNG or JPEG held in memory; `what` names it in errors. Other formats are
 * EVLM_ERR_UNSUPPORTED. */
evlm_status evlm_image_decode(const char *what, const void *data, size_t size,
                              const evlm_image_limits *lim, evlm_image *out);

/* Copies a packed-RGB frame: h rows of w pixels, each row `stride` bytes apart
 * (stride >= 3*w). */
evlm_status evlm_image_from_rgb(const uint8_t *rgb, int w, int h, size_t stride, evlm_image *out);

/* Allocates an uninitialized w x h image (used by the resampler and the processors). */
evlm_status evlm_image_alloc(int w, int h, evlm_image *out);

void evlm_image_free(evlm_image *img);

#endif
