/*
 * idefics3_proc.h - the Idefics3 / SmolVLM image processor, as transformers 5's PIL backend
 * (Idefics3ImageProcessorPil) computes it for one image:
 *
 *   1. resize so the longest edge is size.longest_edge (aspect kept, the short side truncated
 *      and rounded up to even, at least 1, then capped at 4096),
 *   2. splitting on: resize to multiples of max_image_size.longest_edge (S), cut into S x S
 *      tiles row-major, append the whole image resized to S x S (the "global" tile);
 *      rows = cols = 0 and a single tile when the image is S x S already.
 *      Splitting off: the image resized to S x S, rows = cols = 0,
 *   3. x * rescale_factor (in double, then float32), then (x - mean) / std in float32,
 *   4. pixel_attention_mask: all ones (one image is never padded).
 * Every resize is Pillow's on 8-bit RGB with the configured filter (see resample.h), so the
 * output matches transformers bit for bit.
 *
 * Not here: batching several images (padding to the largest), the prompt expansion with
 * <row_r_col_c> markers (the processor's text side), the torchvision backend.
 */
#ifndef EVLM_VISION_IDEFICS3_PROC_H
#define EVLM_VISION_IDEFICS3_PROC_H

#include "core/file.h"
#include "core/json.h"
#include "vision/image.h"
#include "vision/resample.h"

#include <stdbool.h>

typedef struct evlm_idefics3_proc {
    bool do_convert_rgb; /* decoded images are RGB already; kept for completeness */
    bool do_resize, do_rescale, do_normalize, do_pad, do_image_splitting;
    int longest_edge;   /* size.longest_edge; 0 when size gives height/width */
    int size_h, size_w; /* size.height / size.width (used when longest_edge == 0) */
    int max_image_size; /* max_image_size.longest_edge: the tile side S */
    evlm_resample resample;
    double rescale_factor;
    float image_mean[3], image_std[3];
} evlm_idefics3_proc;

typedef struct evlm_idefics3_pixels {
    int n_tiles;              /* n_rows * n_cols + 1 when split, else 1 */
    int n_rows, n_cols;       /* 0, 0 when the image was not split */
    int tile;                 /* S: tiles are S x S */
    int resized_w, resized_h; /* size after step 1 (for the record) */
    float *pixel_values;      /* [n_tiles][3][S][S]: the tiles row-major, then the global image */
    uint8_t *pixel_attention_mask; /* [n_tiles][S][S], 1 = real pixel */
} evlm_idefics3_pixels;

/* transformers' defaults for the class (longest edge 1456, tiles 364, LANCZOS, 0.5 / 0.5). */
evlm_idefics3_proc evlm_idefics3_proc_default(void);

/* Reads "image_processor" of DIR/processor_config.json, else DIR/preprocessor_config.json.
 * Missing fields keep the class defaults; wrong types and out-of-range values are errors
 * naming the file and field. */
evlm_status evlm_idefics3_proc_load(const char *dir, evlm_idefics3_proc *out);
evlm_status evlm_idefics3_proc_load_dir(const evlm_dir *d, evlm_idefics3_proc *out);
/* Same from an already-parsed processor object; `file` names it in errors. */
evlm_status evlm_idefics3_proc_from_json(const char *file, const cJSON *obj,
                                         evlm_idefics3_proc *out);

/* Output sizes for an input of w x h (no pixels touched): what the prompt expansion needs. */
evlm_status evlm_idefics3_plan(const evlm_idefics3_proc *p, int w, int h, int *n_rows, int *n_cols,
                               int *n_tiles);

evlm_status evlm_idefics3_preprocess(const evlm_idefics3_proc *p, const evlm_image *img,
                                     evlm_idefics3_pixels *out);
void evlm_idefics3_pixels_free(evlm_idefics3_pixels *px);

#endif
