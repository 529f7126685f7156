/*
 * data.h - the training data of `evlm finetune`: question-answer items (the eval format, .jsonl
 * lines of {image, question, answer, ...}, image paths relative to the file) and plain text.
 *
 * A question-answer item is the exact prompt `evlm eval` builds (the chat template around the
 * question and its image, evlm_chat_prompt; ids and the image's processed tiles from the family's
 * hook evlm__prompt_pixels, image tokens expanded as evlm_prompt_new does) followed by
 * the assistant turn as the template renders it: the answer and the template's end-of-turn token
 * (e.g. " Yes.<end_of_utterance>" for SmolVLM; trailing whitespace after the last token is not
 * kept). Loss targets: the answer tokens and the end of turn only. A text file is split into
 * paragraphs (blank lines), each tokenized with the post-processor (BOS) and cut into pieces of
 * at most the context; loss on every token.
 * Images are processed when the data is loaded and their tiles kept for the whole run, shared by
 * the items that show the same file (evlm_tdata.images).
 * Errors name the file and line: a line that is not JSON, a missing field, a missing image, an
 * item longer than the context.
 * The order: a seeded Fisher-Yates shuffle per epoch (splitmix64, its own state, never rand()),
 * batches taken in that order, up to B sequences and max_tokens rows, never across an epoch.
 * Not here: the model's forward (tmodel.h), what the batches are used for (loop.c).
 */
#ifndef EVLM_TRAIN_DATA_H
#define EVLM_TRAIN_DATA_H

#include "evlm.h"
#include "train/tmodel.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct evlm_titem {
    int32_t *ids;    /* [n], image tokens expanded */
    uint8_t *target; /* [n]: 1 where position t predicts ids[t + 1] in the loss */
    int n;
    int image; /* index into evlm_tdata.images, or -1 */
    int line;  /* line (jsonl) or paragraph start line (text) of the source file */
} evlm_titem;

/* An image's processed tiles, shared by the items that show it (kept for the whole run). */
typedef struct evlm_timage {
    char *path;
    float *pixels;
    uint8_t *mask;
    int n_tiles;
} evlm_timage;

typedef struct evlm_tdata {
    evlm_titem *items;
    int n, cap;
    evlm_timage *images;
    int n_images, cap_images;
    int n_targets; /* over all items */
} evlm_tdata;

/* Appends the items of a .jsonl file (question-answer) or a text file. max_len: the most
 * tokens an item may have (the training context). */
evlm_status evlm_tdata_add_jsonl(evlm_tdata *d, evlm_model *m, const char *path, int max_len);
evlm_status evlm_tdata_add_text(evlm_tdata *d, const evlm_model *m, const char *path, int max_len);
void evlm_tdata_free(evlm_tdata *d);

/* Black-box distillation (targets.c): out_jsonl = in_jsonl with every "answer" replaced by the
 * teacher model's greedy answer (the runtime, as `evlm eval` generates: at most n_predict tokens,
 * 0: 64) and image paths made absolute. Atomic; errors name the file and line. */
evlm_status evlm_tdata_generate_targets(const char *teacher, const char *in_jsonl,
                                        const char *out_jsonl, int n_predict, int n_threads);

/* ---- order ---------------------------------------------------------------------------------- */
uint64_t evlm_splitmix64(uint64_t *state);

/* order[0..n) = a permutation of 0..n-1 drawn from *rng (advanced). */
void evlm_tdata_shuffle(int *order, int n, uint64_t *rng);

/* The batch starting at order[*pos]: up to max_seq items and max_tokens rows (at least one
 * item; one longer than max_tokens is an EVLM_ERR_ARG naming its line), not past the end of
 * order. seqs must hold max_seq entries; *pos advances. n_seq 0 when *pos == n. */
evlm_status evlm_tdata_batch(const evlm_tdata *d, const int *order, int64_t *pos, int max_seq,
                             int max_tokens, evlm_tseq *seqs, int *n_seq);

#endif
