/*
 * evlm_compress.h - public C API of evlm's offline compression: a Hugging Face model folder to
 * one quantized GGUF file that evlm_model_load (and llama.cpp) reads.
 *
 * The pipeline of evlm_quantize:
 * 1. The float model runs over the calibration set (text chunks and / or question + answer
 *    prompts with their images), collecting the inputs of every matrix.
 * 2. Every language-model matrix is quantized to `type`: round-to-nearest, AWQ-style scaling
 *    (searched per group of matrices sharing an input, folded exactly into the RMSNorm /
 *    v_proj / up_proj before them, then rounded) or GPTQ (Hessian from the calibration inputs).
 * 3. Mixed precision (target_bpw / max_size_mb): each matrix's sensitivity is the mean KL of the
 *    final next-token distributions over the calibration set when only that matrix is quantized
 *    (round-to-nearest); the most sensitive per bit saved go up to Q8_0 until the budget is met.
 *    keep patterns pin types by tensor name.
 * 4. The vision tower and connector matrices take their own type (`vision`); after writing, the
 *    encoder output of the quantized file is compared with float (cosine similarity) on the
 *    calibration images, and the written model's mean KL on the calibration set is measured.
 * Bits per weight count every tensor of the file. The token embedding and output head stay Q8_0
 * when the matrices go to 4 bits (unless a keep pattern says otherwise), as llama.cpp's mixes do.
 * Errors name the parameter at fault by its field name here.
 *
 * Not here: the runtime (evlm.h). GPTQ needs LAPACKE, a dependency of libevlm for this reason.
 */
#ifndef EVLM_COMPRESS_H
#define EVLM_COMPRESS_H

#include "evlm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the model's matrices ------------------------------------------------------------------
 * What every compression method works on: each matmul weight of a loaded model (decoder layers,
 * embedding, head, vision tower, connector) with its role. The order is fixed: decoder layers
 * (q, k, v, o, gate, up, down per layer), embedding, head, then the family's own matrices. */

typedef enum evlm_matrix_role {
    EVLM_ROLE_ATTN_Q = 0,
    EVLM_ROLE_ATTN_K,
    EVLM_ROLE_ATTN_V,
    EVLM_ROLE_ATTN_O,
    EVLM_ROLE_MLP_GATE,
    EVLM_ROLE_MLP_UP,
    EVLM_ROLE_MLP_DOWN,
    EVLM_ROLE_EMBED,       /* token embedding */
    EVLM_ROLE_HEAD,        /* output head (the embedding itself when tied) */
    EVLM_ROLE_VISION_ATTN, /* vision tower: q / k / v / fused qkv / output of attention */
    EVLM_ROLE_VISION_MLP,  /* vision tower: MLP matrices */
    EVLM_ROLE_CONNECTOR,   /* vision -> text projection (Idefics3 connector, Qwen2-VL merger) */
    EVLM_ROLE_COUNT
} evlm_matrix_role;

typedef struct evlm_matrix_info {
    const char *name; /* the tensor's Hugging Face name (valid while the model lives) */
    evlm_matrix_role role;
    int layer;          /* decoder or vision layer; -1 outside layers */
    int64_t rows, cols; /* a Linear [out, in] has rows = out, cols = in */
    evlm_type type;     /* as stored in the file */
} evlm_matrix_info;

/* Number of matrices of m; the head counts once more when tied to the embedding. */
EVLM_API int evlm_model_n_matrices(const evlm_model *m);
/* Matrix i (0 <= i < evlm_model_n_matrices) of m. */
EVLM_API evlm_status evlm_model_matrix(const evlm_model *m, int i, evlm_matrix_info *out);
/* "attn_q", "mlp_down", "vision_attn", "connector", ...; "?" for an invalid role. */
EVLM_API const char *evlm_matrix_role_name(evlm_matrix_role r);

/* ---- quantization ------------------------------------------------------------------------- */

typedef enum evlm_qmethod {
    EVLM_QMETHOD_RTN = 0, /* round to nearest */
    EVLM_QMETHOD_AWQ,     /* activation-aware scaling, then round to nearest */
    EVLM_QMETHOD_GPTQ     /* error feedback through the inverse Hessian of the inputs */
} evlm_qmethod;

typedef struct evlm_quant_keep {
    const char *pattern; /* fnmatch() glob over Hugging Face tensor names */
    evlm_type type;
} evlm_quant_keep;

/* ---- pruning (a stage of the same pipeline: evlm prune is evlm_quantize with these) ------------
 * Decoder matrices (q, k, v, o, gate, up, down) lose a fraction of each row (unstructured) or
 * M - N of every M consecutive inputs (N:M, along the input dimension; "2:4" keeps 2 of 4):
 *   - magnitude: the least |W_ij| of each row (or group); needs no calibration;
 *   - wanda: the least |W_ij| * ||X_j||_2 of each row (or group), X the calibration inputs;
 *   - sparsegpt: the column loop of GPTQ (one pass) with the mask chosen per block of columns by
 *     w^2 / [U_jj]^2 and each pruned weight's error spread over the columns not yet visited;
 *     with method GPTQ the same pass also quantizes (the zeros stay exactly 0).
 * A fixed mask (magnitude, wanda) is kept through quantization: GPTQ receives it, round to
 * nearest maps 0 to 0 (Q8_0, Q4_0; Q4_1 has no exact zero and is refused with pruning; AWQ,
 * whose scales would be folded around the zeros, too). The vision tower and connector take
 * their own setting, by magnitude only (the tower has no observer of its matmul inputs). The
 * embedding and output head are never pruned. */
typedef enum evlm_prune_method {
    EVLM_PRUNE_NONE = 0,
    EVLM_PRUNE_MAGNITUDE,
    EVLM_PRUNE_WANDA,
    EVLM_PRUNE_SPARSEGPT
} evlm_prune_method;

typedef struct evlm_prune_params {
    evlm_prune_method method; /* decoder matrices */
    double sparsity;          /* unstructured: fraction of each row set to 0, in [0, 1) */
    int keep_n, group_m;      /* N:M instead (group_m > 0): keep keep_n of every group_m inputs;
                                 group_m divides 32 and the matrix's columns */
    const char *const *keep;  /* fnmatch() globs of tensor names left dense */
    int n_keep;
    double vision_sparsity; /* vision tower + connector, by magnitude: a fraction of each row */
    int vision_keep_n, vision_group_m; /* ... or N:M */
} evlm_prune_params;

typedef struct evlm_quantize_params {
    evlm_type type;   /* language-model matrices: Q8_0, Q4_0, Q4_1, or the k-quants Q4_K, Q5_K,
                         Q6_K (method rtn only: ggml's own scale search; matrices whose width is
                         not a multiple of 256 take Q8_0) */
    evlm_type vision; /* vision tower + connector matrices: Q8_0 (default), Q4_0, Q4_1, F16 (also
                         BF16 / F32 with a float type) */
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
    evlm_prune_params prune; /* method NONE (default): no pruning */
    bool keep_dtype;         /* matrices keep their source float dtype (type and vision are ignored
                                there): evlm prune without --type; type may also be F32 / F16 / BF16 */
    /* Low-rank compensation of the quantization error (needs calibration; rtn or gptq): each
     * quantized decoder matrix gets W ~ Q(W) + B A, E = W - Q(W) factored in closed form against
     * the calibration covariance (LQER / QERA), stored as "<proj>.lowrank_a" / ".lowrank_b".
     * lowrank_comp: that rank for every matrix; lowrank_bpw: the ranks that fit that many extra
     * bits per weight, spent where the output error removed per bit is largest. 0: off. */
    int lowrank_comp;
    double lowrank_bpw;
    evlm_type lowrank_type; /* F16 (default) or Q8_0 (ranks a multiple of 32), also BF16, F32 */
    /* With type Q4_K: llama.cpp's Q4_K_M mix (llama-quant.cpp): attention v and ffn down at Q6_K
     * in the layers its use_more_bits picks (the first and last eighth, every third between),
     * the output head (or a tied embedding) at Q6_K, the rest Q4_K. */
    bool kq_mix;
    /* llama.cpp's layout (NULL: evlm's single file): the output file holds the language model
     * as convert_hf_to_gguf.py writes it, and a VLM's vision tower + connector go to this mmproj
     * file (llama-mtmd-cli -m OUT --mmproj MMPROJ). Added tensors (low-rank factors) are
     * refused there. */
    const char *mmproj;
} evlm_quantize_params;

EVLM_API evlm_quantize_params evlm_quantize_default_params(void);

typedef struct evlm_quant_tensor_report {
    char name[160];
    evlm_type from, to;
    int64_t n_elements;
    size_t bytes;
    const char *method; /* "rtn", "awq", "gptq", "keep", "float"; pruned: "magnitude",
                           "wanda+gptq", "sparsegpt+gptq", ... */
    double rel_err;     /* output error on calibration rows ||(W - Q) x||^2 / ||W x||^2, or the
                           weight error ||W - Q||^2 / ||W||^2 without calibration;
                           -1: not a matrix */
    double kl;          /* sensitivity (mean KL), -1 when not measured */
    double sparsity;    /* pruned tensors: the fraction of zeros written; -1: not pruned */
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

/* Quantizes the model folder in_dir into out_gguf (written atomically); p NULL = defaults.
 * report (nullable; free with evlm_quantize_report_free) describes every tensor of the file.
 * A model with low-rank factors (evlm_lowrank) has them quantized like its decoder matrices, by
 * rtn or gptq (AWQ, pruning and compensation on such a model: EVLM_ERR_UNSUPPORTED). */
EVLM_API evlm_status evlm_quantize(const char *in_dir, const char *out_gguf,
                                   const evlm_quantize_params *p, evlm_quantize_report *report);
EVLM_API void evlm_quantize_report_free(evlm_quantize_report *r);

/* ---- low-rank factorization ----------------------------------------------------------------
 * evlm_lowrank replaces decoder matrices W [out, in] by two thin factors, W ~ B A with
 * A [r, in] and B [out, r], stored as "<proj>.lowrank_a" / "<proj>.lowrank_b" instead of
 * "<proj>.weight" (names no Hugging Face checkpoint uses; the runtime runs y = B (A x) + bias).
 * A matrix is only factored when r (in + out) < in * out. Methods: plain truncated SVD; ASVD
 * (input channels scaled by (mean |x|)^alpha of the calibration inputs before the SVD, the
 * scaling folded back into A); SVD-LLM (whitening by the Cholesky factor of the calibration
 * covariance, so truncation drops exactly the smallest output-error energy). With `ratio`, the
 * ranks per matrix are chosen greedily by the measured output-error energy per parameter until
 * the decoder matrices hold that fraction of their parameters. docs/COMPRESSION.md, "Low rank".
 */

typedef enum evlm_lrmethod {
    EVLM_LRMETHOD_SVD = 0, /* plain truncated SVD */
    EVLM_LRMETHOD_ASVD,    /* activation-aware channel scaling */
    EVLM_LRMETHOD_SVD_LLM  /* whitening by the Cholesky factor of the input covariance */
} evlm_lrmethod;

typedef struct evlm_lowrank_params {
    evlm_lrmethod method;
    int rank;                /* every matrix at this rank (0: ratio decides) */
    double ratio;            /* 0 < ratio < 1: parameters kept of the decoder matrices */
    double alpha;            /* ASVD's exponent (default 0.5) */
    evlm_type type;          /* the factors: F16 (default), F32, BF16, Q8_0, Q4_0 (rank a multiple
                                of 32 then) */
    const char *calib_text;  /* as in evlm_quantize_params; ASVD and SVD-LLM need one */
    const char *calib_jsonl; /* ... */
    int calib_tokens, calib_items;
    const char *const *keep; /* fnmatch() globs over tensor names of matrices kept dense */
    int n_keep;
    int n_threads; /* 0: physical cores */
    void (*progress)(void *user, const char *stage, int done, int total);
    void *user;
} evlm_lowrank_params;

EVLM_API evlm_lowrank_params evlm_lowrank_default_params(void);

typedef struct evlm_lowrank_matrix_report {
    char name[160]; /* the dense matrix's tensor name */
    int64_t rows, cols;
    int rank;       /* 0: kept dense */
    int64_t params; /* stored: rank (rows + cols), or rows * cols when dense */
    double rel_err; /* ||(W - B A) x||^2 / ||W x||^2 on the calibration rows (weight space
                       without calibration); 0 when dense */
} evlm_lowrank_matrix_report;

typedef struct evlm_lowrank_report {
    evlm_lowrank_matrix_report *t;
    int n;
    int64_t dense_params, params; /* decoder matrices before / after */
    double kl_mean;               /* the written model vs the source on the calibration set */
    int n_calib_rows;
} evlm_lowrank_report;

/* Factors the decoder matrices of the Hugging Face folder in_dir into out: a GGUF file when out
 * ends in ".gguf", else a Hugging Face folder (config, tokenizer and other files copied,
 * model.safetensors; float factor types only). Atomic files. p NULL = defaults (rank must be
 * set then). */
EVLM_API evlm_status evlm_lowrank(const char *in_dir, const char *out, const evlm_lowrank_params *p,
                                  evlm_lowrank_report *report);
EVLM_API void evlm_lowrank_report_free(evlm_lowrank_report *r);
/* ---- structured pruning --------------------------------------------------------------------
 * evlm_prune_structured: whole attention heads, FFN channels and decoder layers removed by
 * importance measured on calibration activations, written as a standard model with smaller
 * uniform dimensions (a Hugging Face folder, or evlm's GGUF container of one). Each count is
 * what remains; 0 keeps all. `ratio` instead removes that fraction of the decoder's
 * non-embedding parameters, the split between heads, channels and layers chosen by importance
 * (the rule: src/compress/structured.c). */

typedef struct evlm_prune_structured_params {
    int heads;  /* attention (query) heads kept per decoder layer; 0: all */
    int ffn;    /* FFN width (intermediate_size) kept; 0: all */
    int layers; /* decoder layers kept; 0: all */
    int vision_heads, vision_ffn, vision_layers; /* the SigLIP tower, likewise; 0: all */
    double ratio; /* in (0, 1): fraction of the decoder's non-embedding parameters to remove
                     (with the counts above all 0); 0: off */
    const char *calib_text;  /* a text file, nullable */
    const char *calib_jsonl; /* {image, question, answer} lines, nullable */
    int calib_tokens;        /* text tokens used (default 2048) */
    int calib_items;         /* dataset items used (default 16) */
    int n_threads;           /* 0: physical cores */
    void (*progress)(void *user, const char *stage, int done, int total); /* nullable */
    void *user;
} evlm_prune_structured_params;

EVLM_API evlm_prune_structured_params evlm_prune_structured_default_params(void);

/* One decoder layer of the source model. */
typedef struct evlm_prune_layer_report {
    bool kept;
    int new_index;      /* in the output, -1 when removed */
    double influence;   /* mean 1 - cos(layer input, layer output) of the residual stream */
    int heads_kept;     /* query heads kept (0 when the layer is removed) */
    double head_keep;   /* fraction of the layer's head-output norm kept */
    double ffn_keep;    /* fraction of the layer's FFN activation magnitude kept */
    uint8_t *head_mask; /* [n_heads] 1 = kept (owned by the report) */
    uint8_t *ffn_mask;  /* [intermediate_size] 1 = kept (owned by the report) */
} evlm_prune_layer_report;

typedef struct evlm_prune_structured_report {
    int layers_before, layers_after;
    int heads_before, heads_after;       /* per layer */
    int kv_heads_before, kv_heads_after; /* per layer */
    int ffn_before, ffn_after;
    int vision_layers_before, vision_layers_after, vision_ffn_before, vision_ffn_after;
    int64_t params_before, params_after; /* the decoder's non-embedding parameters */
    int64_t total_before, total_after;   /* every tensor of the model */
    evlm_prune_layer_report *layer;      /* [layers_before] */
    int n_calib_rows;                    /* calibration positions measured */
    bool measured;                       /* importance came from calibration activations */
} evlm_prune_structured_report;

/* Prunes the Hugging Face folder in_dir into out: a folder (written as a temporary folder
 * renamed at the end; out must not exist) or, when out ends in ".gguf", one GGUF file.
 * p NULL = defaults (nothing removed). report (nullable; free with
 * evlm_prune_structured_report_free) says what was removed. */
EVLM_API evlm_status evlm_prune_structured(const char *in_dir, const char *out,
                                           const evlm_prune_structured_params *p,
                                           evlm_prune_structured_report *report);
EVLM_API void evlm_prune_structured_report_free(evlm_prune_structured_report *r);

#ifdef __cplusplus
}
#endif
#endif
