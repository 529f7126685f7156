/*
 * resample.h - Pillow's Image.resize for 8-bit RGB images, reproduced bit for bit.
 *
 * Same separable convolution as Pillow's libImaging/Resample.c (coefficients in double,
 * normalized to 22-bit fixed point, horizontal pass then vertical pass, a pass skipped when its
 * side keeps its size), and Pillow's affine nearest-neighbour path for NEAREST. The filter values
 * equal Pillow's constants (Image.Resampling), so a preprocessor config's "resample" field maps
 * directly. Results do not depend on the thread count or the CPU (no SIMD, no FMA contraction:
 * the library builds in ISO C mode).
 *
 * Not here: the `box` / `reducing_gap` arguments of Image.resize, 16-bit and float images.
 */
#ifndef EVLM_VISION_RESAMPLE_H
#define EVLM_VISION_RESAMPLE_H

#include "vision/image.h"

typedef enum evlm_resample {
    EVLM_RESAMPLE_NEAREST = 0,
    EVLM_RESAMPLE_LANCZOS = 1,
    EVLM_RESAMPLE_BILINEAR = 2,
    EVLM_RESAMPLE_BICUBIC = 3,
    EVLM_RESAMPLE_BOX = 4,
    EVLM_RESAMPLE_HAMMING = 5,
} evlm_resample;

/* "lanczos", "bicubic", ... (for messages). */
const char *evlm_resample_name(evlm_resample filter);

/* dst = src resized to w x h, as PIL's src.resize((w, h), filter) on an "RGB" image.
 * dst is allocated (free with evlm_image_free); same size gives a copy. */
evlm_status evlm_resize_rgb8(const evlm_image *src, int w, int h, evlm_resample filter,
                             evlm_image *dst);

#endif
