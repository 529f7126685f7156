/*
 * qwen2vl_proc.h - the Qwen2-VL image processor, as transformers 5's PIL backend
 * (Qwen2VLImageProcessorPil) computes it for one image, and the M-RoPE position ids of a prompt
 * (Qwen2VLModel.get_rope_index):
 *
 *   1. smart_resize: both sides to multiples of factor = patch_size * merge_size (Python's
 *      round-half-even), scaled down / up so that h * w lies within [min_pixels, max_pixels]
 *      (size.shortest_edge / size.longest_edge), aspect ratio above 200 rejected,
 *   2. Pillow's 8-bit resize with the configured filter (BICUBIC by default, see resample.h),
 *   3. x * rescale_factor (double, then float32), (x - mean) / std in float32 (CLIP mean / std),
 *   4. the still image repeated temporal_patch_size times (grid_t = 1), cut into patches and
 *      flattened in the processor's order: rows by (merge block row, merge block col, row in
 *      block, col in block), each row (channel, frame, y, x) - [n_patches][C * T * p * p].
 * The output matches transformers bit for bit (tested on ../shared/fixtures/qwen2vl-tiny).
 *
 * Not here: several images per call, videos, the prompt expansion (<|image_pad|> x n_tokens),
 * the torchvision backend.
 */
#ifndef EVLM_VISION_QWEN2VL_PROC_H
#define EVLM_VISION_QWEN2VL_PROC_H

#include "core/json.h"
#include "vision/image.h"
#include "vision/resample.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct evlm_qwen2vl_proc {
    bool do_convert_rgb; /* decoded images are RGB already; kept for completeness */
    bool do_resize, do_rescale, do_normalize;
    int64_t min_pixels, max_pixels; /* size.shortest_edge / size.longest_edge */
    int patch_size, merge_size, temporal_patch_size;
    evlm_resample resample;
    double rescale_factor;
    float image_mean[3], image_std[3];
} evlm_qwen2vl_proc;

typedef struct evlm_qwen2vl_pixels {
    int grid_t, grid_h, grid_w; /* image_grid_thw: patches (before merging) */
    int n_patches;              /* grid_t * grid_h * grid_w */
    int patch_dim;              /* 3 * temporal_patch_size * patch_size^2 */
    int n_tokens;               /* n_patches / merge_size^2: <|image_pad|> tokens in the prompt */
    int resized_w, resized_h;
    float *pixel_values; /* [n_patches][patch_dim] */
} evlm_qwen2vl_pixels;

/* transformers' class defaults (min 56*56, max 28*28*1280 pixels, patch 14, merge 2, temporal 2,
 * BICUBIC, CLIP mean / std). */
evlm_qwen2vl_proc evlm_qwen2vl_proc_default(void);

/* Reads "image_processor" of DIR/processor_config.json, else DIR/preprocessor_config.json.
 * size.shortest_edge / size.longest_edge, overridden by top-level min_pixels / max_pixels as
 * transformers 5 does (older files with size.min_pixels / size.max_pixels are read too).
 * Missing fields keep the class defaults; wrong types and out-of-range values are errors
 * naming the file and field. */
evlm_status evlm_qwen2vl_proc_load(const char *dir, evlm_qwen2vl_proc *out);
evlm_status evlm_qwen2vl_proc_load_dir(const evlm_dir *d, evlm_qwen2vl_proc *out);
evlm_status evlm_qwen2vl_proc_from_json(const char *file, const cJSON *obj, evlm_qwen2vl_proc *out);

/* smart_resize(height, width, factor, min_pixels, max_pixels) of transformers 5. Errors (ARG)
 * on non-positive sizes or factor, aspect ratio above 200, or a result beyond 1 << 30 pixels. */
evlm_status evlm_qwen2vl_smart_resize(int height, int width, int factor, int64_t min_pixels,
                                      int64_t max_pixels, int *out_h, int *out_w);

/* Output sizes for a w x h input (no pixels touched): grid and token count for the prompt. */
evlm_status evlm_qwen2vl_plan(const evlm_qwen2vl_proc *p, int w, int h, int *grid_t, int *grid_h,
                              int *grid_w, int *n_tokens);

evlm_status evlm_qwen2vl_preprocess(const evlm_qwen2vl_proc *p, const evlm_image *img,
                                    evlm_qwen2vl_pixels *out);
void evlm_qwen2vl_pixels_free(evlm_qwen2vl_pixels *px);

/* M-RoPE positions of a prompt, as Qwen2VLModel.get_rope_index of transformers 5 computes them
 * for one sequence without padding. Each maximal run of image_token_id is one image and takes
 * the next grid (grids: n_images x {t, h, w} in patches, as image_grid_thw); its tokens get
 * (t + s, s + row, s + col) over the merged grid (t, h / merge, w / merge) in row-major order,
 * s the position after the text before it; text continues at s + max(h, w) / merge. pos is
 * [3][n] (temporal, height, width rows); *delta = max position + 1 - n (what later decode
 * positions add to the slot index). A run whose length is not t * (h / merge) * (w / merge),
 * more runs than grids, or unused grids are EVLM_ERR_ARG. */
evlm_status evlm_qwen2vl_rope_index(const int32_t *ids, int n, int32_t image_token_id,
                                    int merge_size, const int32_t *grids, int n_images,
                                    int32_t *pos, int32_t *delta);

#endif
