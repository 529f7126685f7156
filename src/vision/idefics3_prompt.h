/*
 * idefics3_prompt.h - the prompt expansion of transformers' Idefics3Processor (SmolVLM).
 *
 * Each "<image>" in the text becomes, for an image split into rows x cols tiles:
 *   for each row r, col c: <fake_token_around_image><row_r_col_c><image>*seq_len, "\n" after
 *   each row; then
 * "\n<fake_token_around_image><global-img><image>*seq_len<fake_token_around_image>" and for an
 * unsplit image (rows = cols = 0):
 *   <fake_token_around_image><global-img><image>*seq_len<fake_token_around_image>
 * The count of "<image>" markers must equal the number of images given: an error otherwise.
 * Not here: the pixels (src/vision), tokenization (the caller tokenizes the expanded text).
 */
#ifndef EVLM_VISION_IDEFICS3_PROMPT_H
#define EVLM_VISION_IDEFICS3_PROMPT_H

#include "core/buf.h"
#include "evlm.h"

typedef struct evlm_image_grid {
    int rows, cols; /* 0, 0: not split (global image only) */
} evlm_image_grid;

/* Appends the expanded text to out. */
evlm_status evlm_idefics3_expand(const char *text, const evlm_image_grid *grids, int n_images,
                                 int image_seq_len, evlm_str *out);

/* Number of "<image>" markers in text. */
int evlm_idefics3_count_images(const char *text);

#endif
