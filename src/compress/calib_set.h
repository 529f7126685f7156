/*
 * calib_set.h - a calibration set of prompts for the offline passes (quantize, structured
 * pruning, ...): text files cut into chunks of ready ids, and {image, question, answer} jsonl
 * items as chat prompts with their images (paths relative to the jsonl file).
 * Not here: running the prompts (each pass runs them with its own observers), statistics
 * (calib.h).
 */
#ifndef EVLM_COMPRESS_CALIB_SET_H
#define EVLM_COMPRESS_CALIB_SET_H

#include "evlm.h"

#define EVLM_CALIB_CHUNK 256 /* calibration text chunk (tokens) */

typedef struct evlm__calib_set {
    evlm_prompt **prompts;
    char **texts, **images; /* per prompt: the text and image of dataset items (NULL for text) */
    int n;
} evlm__calib_set;

/* Appends the first max_tokens tokens of text file path, in chunks of EVLM_CALIB_CHUNK. */
evlm_status evlm__calib_set_text(evlm__calib_set *s, evlm_model *m, const char *path,
                                 int max_tokens);
/* Appends the first max_items lines of a jsonl file (question + answer, image if m has vision). */
evlm_status evlm__calib_set_jsonl(evlm__calib_set *s, evlm_model *m, const char *path,
                                  int max_items);
void evlm__calib_set_free(evlm__calib_set *s);

#endif
