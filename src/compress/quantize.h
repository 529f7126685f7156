/*
 * quantize.h - a Hugging Face model folder to one quantized GGUF file: the whole pipeline behind
 * `evlm quantize`.
 *
 * 1. The float model runs over the calibration set (text chunks and / or question + answer
 *    prompts with their images) with the calibration collector on its matmul inputs.
 * 2. Every language-model matrix is quantized to the chosen type: round-to-nearest, AWQ-style
 *    scaling (searched per input-sharing group, folded exactly into RMSNorm / v_proj / up_proj,
 *    then rounded) or GPTQ (Hessian from the calibration inputs).
 * 3. Mixed precision (--target-bpw / --max-size): each matrix's sensitivity is the mean KL of the
 *    final next-token distributions over the calibration set when only that matrix is quantized
 *    (round-to-nearest); the most sensitive per bit saved go up to Q8_0 until the budget is met.
 *    --keep patterns pin types by name.
 * 4. The vision tower and connector matrices take their own type; after writing, the encoder
 *    output of the quantized file is compared with float (cosine similarity) on the calibration
 *    images, and the written model's mean KL on the calibration set is measured.
 * Bits per weight count every tensor of the file. The token embedding and output head stay Q8_0
 * when the matrices go to 4 bits (unless a --keep says otherwise), as llama.cpp's mixes do.
 * Not here: the GGUF container (io/gguf*), the quantizers themselves (gptq, awq, rtn).
 */
#ifndef EVLM_COMPRESS_QUANTIZE_H
#define EVLM_COMPRESS_QUANTIZE_H

#include "core/tensor.h"
#include "evlm.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum evlm_qmethod { EVLM_QMETHOD_RTN = 0, EVLM_QMETHOD_AWQ, EVLM_QMETHOD_GPTQ } evlm_qmethod;

typedef struct evlm_quant_keep {
    const char *pattern; /* fnmatch() glob over Hugging Face tensor names */
    evlm_type type;
} evlm_quant_keep;

typedef struct evlm_quantize_params {
    evlm_type type;   /* language-model matrices: Q8_0, Q4_0 or Q4_1 */
    evlm_type vision; /* vision tower + connector matrices: Q8_0, Q4_0, Q4_1 or F16 (default Q8_0) */
    evlm_qmethod method;
    const char *calib_text;  /* a text file, nullable */
    const char *calib_jsonl; /* {image, question, answer} lines (paths relative to it), nullable */
    int calib_tokens;        /* text tokens used, in chunks of 256 (default 2048) */
    int calib_items;         /* dataset items used (default 16) */
    const evlm_quant_keep *keep;
    int n_keep;
    double target_bpw;  /* 0: off */
    double max_size_mb; /* 0: off */
    int n_threads;      /* 0: physical cores */
    /* progress of a stage (nullable): done of total units */
    void (*progress)(void *user, const char *stage, int done, int total);
    void *user;
} evlm_quantize_params;

evlm_quantize_params evlm_quantize_default_params(void);

typedef struct evlm_quant_tensor_report {
    char name[160];
    evlm_type from, to;
    int64_t n_elements;
    size_t bytes;
    const char *method; /* "rtn", "awq", "gptq", "keep", "float" */
    double rel_err;     /* output error on calibration rows ||(W - Q) x||^2 / ||W x||^2, or the
                           weight error ||W - Q||^2 / ||W||^2 without calibration; -1: not a matrix */
    double kl;          /* sensitivity (mean KL), -1 when not measured */
} evlm_quant_tensor_report;

typedef struct evlm_quantize_report {
    evlm_quant_tensor_report *t;
    int n;
    size_t in_bytes, out_bytes; /* tensor bytes of the source and of the file */
    double bpw;                 /* bits per weight of the file's tensors */
    double kl_mean;             /* the written model vs float over the calibration set, -1: none */
    double vision_cos;          /* mean cosine of the encoder output vs float, -1: none */
    int n_calib_rows;           /* calibration positions evaluated */
} evlm_quantize_report;

evlm_status evlm_quantize(const char *in_dir, const char *out_gguf, const evlm_quantize_params *p,
                          evlm_quantize_report *report);
void evlm_quantize_report_free(evlm_quantize_report *r);

#endif
