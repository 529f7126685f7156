/*
 * evlm_npu.h - the Qualcomm NPU path of libevlm (docs/NPU.md): static-shape ONNX graphs of a
 * loaded model for ONNX Runtime's QNN execution provider and Qualcomm's converters, and the fit
 * planner: will a model run on the Hexagon NPU of a Qualcomm automotive SoC, in how many graph
 * parts, and how fast (a roofline estimate).
 *
 * Export. What exists: the text decoder (Llama / Qwen2 families, a VLM's text half; Qwen2-VL's
 * with M-RoPE positions [3, 1, n] and image features as a prefill input) in float32, as two graphs
 * sharing one external weight file: AR-N prefill and AR-1 decode, the KV cache, positions and an
 * additive attention mask as explicit inputs, described by DIR/manifest.json; float16 weights, or
 * the QDQ precisions w8a16 / w8a8 / w4a16 calibrated on a text or dataset (encodings.json in
 * AIMET's format beside), their weights rounded to nearest or placed by GPTQ on the same grids; for
 * Idefics3 / SmolVLM also the vision tower + connector as one graph of a fixed tile count (its own
 * weight file), the prefill graph then taking image features for the image-token positions; for
 * Qwen2-VL its tower + PatchMerger for one patch grid. Not yet: a quantized vision graph. A decoder
 * past the target's per-graph limit is split by layer ranges into parts (the planner's split), each
 * with its own weight file shared by its prefill and decode graphs, the hidden states handed from
 * part to part.
 *
 * Planner. From a config.json alone (no weights needed), a Hugging Face folder or a GGUF file,
 * the planner counts the parameters of every part (decoder layers, embedding, head, vision
 * tower, connector), their bytes at a QNN precision (fp16, w8a16, w8a8, w4a16 with per-block
 * scales, w4), the KV cache at the context length with the target's KV precision, the
 * activations of the prompt graph and a runtime overhead, and sets them against the target's
 * NPU-addressable memory and per-graph limit (the part split). Times: image encode and time to
 * first token are FLOPs over the target's effective 8- or 16-bit throughput; decode tok/s is
 * bytes per token over the effective DRAM bandwidth. The two effective factors are fractions of
 * the target's published peaks calibrated on ONE published measurement
 * (evlm_plan_calibration_point), never per model. The targets table (evlm_npu_target_at)
 * carries every number with its source; numbers that no source found gives are labelled as
 * assumptions there and in docs/NPU.md.
 *
 * Simulation (evlm_npu_sim): a context computes with an export's quantized numerics.
 *
 * Not here: anything that runs on a device.
 */
#ifndef EVLM_NPU_H
#define EVLM_NPU_H

#include "evlm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ONNX export ---------------------------------------------------------------------------- */

typedef struct evlm_onnx_params {
    int ar;                /* tokens of the prefill graph (AR-N), >= 1; default 128 */
    int ctx;               /* context window C of both graphs (past + new tokens), > ar;
                              0: min(1024, the model's trained context) */
    const char *precision; /* "fp32", "fp16" (float16 weights), "w8a16", "w8a8", "w4a16" (QDQ,
                              docs/NPU.md); NULL: fp32 */
    const char *target;    /* "sa8295", "sa8255", "sa8775" (evlm_npu_target_find) or NULL /
                              "generic": the KV cache's bits and int4 support come from it */
    const char *calib;     /* calibration for the QDQ precisions: a text file, or a .jsonl
                              dataset ({"question", "answer"}; images ignored: text decoder) */
    int calib_tokens;      /* text tokens used, in chunks of 256 (default 2048) */
    int tiles;             /* tiles of the vision graph (Idefics3 / SmolVLM); 0: the most the
                              processor makes of one image; -1: no vision graph */
    int parts;             /* decoder graph parts: 0: as the target's per-graph limit needs
                              (the planner's split; one part without a target); K: K parts of
                              even layer ranges (tests; at most the layer count) */
    const char *method;    /* the QDQ weights: "rtn" (NULL: round to nearest) or "gptq" (GPTQ
                              onto the same int8 / int4 grids with the Hessian of the
                              calibration tokens' matmul inputs; needs calib) */
    int grid_h, grid_w;    /* Qwen2-VL: the vision graph for images of grid_h x grid_w patches
                              (the processor's grid, `evlm prompt --image` prints it; multiples
                              of the merge size); 0: no vision graph */
    bool calib_images;     /* method gptq with a .jsonl calibration (VLMs): the items once more
                              with their images encoded, so GPTQ's Hessians also see the
                              image-token rows (the activation encodings stay the text's) */
} evlm_onnx_params;

EVLM_API evlm_onnx_params evlm_onnx_default_params(void);

/* Writes DIR/decoder_ar{N}.onnx, DIR/decoder_ar1.onnx, DIR/decoder.weights.bin and
 * DIR/manifest.json (Idefics3 / SmolVLM: also DIR/vision.onnx, DIR/vision.weights.bin); split
 * into K > 1 parts: DIR/decoder_p{k}_ar{N}.onnx, DIR/decoder_p{k}_ar1.onnx and
 * DIR/decoder_p{k}.weights.bin for each part k, manifest.json's "parts" in order. dir must
 * not exist or be an empty folder; the files are written into a temporary sibling folder renamed to
 * dir at the end, so a failure leaves no half-written export. Errors name the setting at fault
 * ("ar", "ctx", "precision", "tiles", "parts"). EVLM_ERR_UNSUPPORTED in a build without the ONNX
 * writer (cmake -DEVLM_ONNX=OFF). */
EVLM_API evlm_status evlm_export_onnx(const evlm_model *model, const char *dir,
                                      const evlm_onnx_params *params);

/* The vision graph's input for one image: pixel_values [*n_tiles][3][*tile][*tile] float32
 * (malloc'd; free it) as the model's image processor makes them (splitting as loaded), the
 * tiles row-major, then the global image. EVLM_ERR_UNSUPPORTED for models other than
 * Idefics3 / SmolVLM. */
EVLM_API evlm_status evlm_onnx_image_pixels(const evlm_model *model, const evlm_image_input *image,
                                            float **pixels, int *n_tiles, int *tile);

/* The Qwen2-VL vision graph's input for one image: the processor's patch rows
 * [*grid_t * *grid_h * *grid_w][*patch_dim] float32 (malloc'd; free it), in its merge-block
 * order. EVLM_ERR_UNSUPPORTED for models other than Qwen2-VL. */
EVLM_API evlm_status evlm_onnx_image_patches(const evlm_model *model, const evlm_image_input *image,
                                             float **pixels, int *grid_t, int *grid_h, int *grid_w,
                                             int *patch_dim);

/* The image features evlm's own encoder gave prompt p ([*n_rows][*width] float32, owned by p;
 * NULL and 0 rows without images): what the vision graph's image_features are checked
 * against. */
EVLM_API const float *evlm_onnx_prompt_features(const evlm_model *model, const evlm_prompt *p,
                                                int *n_rows, int *width);

/* M-RoPE positions of prompt p (Qwen2-VL with images): [3][n_ids] temporal, height and width
 * rows counted from 0, as the decoder uses them (the graphs' position_ids [3, 1, n]); NULL when
 * the prompt has none (every position is its index, the three alike). *next (may be NULL): the
 * position of the token after the prompt (n_ids without M-RoPE positions). */
EVLM_API const int32_t *evlm_onnx_prompt_positions(const evlm_prompt *p, int32_t *next);

/* The token id whose positions take p's image features (the prefill graph's image_mask), -1
 * when p has none. */
EVLM_API int32_t evlm_onnx_prompt_image_token(const evlm_prompt *p);

/* NPU numerics simulation: ctx computes with the numerics of the export in dir (manifest.json's
 * "quantization"): the export's dequantized weights, and at each of its activation points (the
 * matmul inputs, the KV cache rows) QuantizeLinear -> DequantizeLinear with its scale and zero
 * point. The simulation belongs to ctx and is freed with it; other contexts of the model are
 * unaffected. An fp32 export simulates the float model. Errors name the file at fault. */
EVLM_API evlm_status evlm_npu_sim(evlm_context *ctx, const char *dir);

/* evlm_prompt_new with the images encoded by the numerics of ctx's simulation: when its export
 * has a quantized vision graph (manifest.json's vision.quantization), the tower runs on the
 * export's dequantized int8 weights with its activation points fake-quantized; otherwise (no
 * simulation, a float32 vision graph) exactly evlm_prompt_new. Threads: as evlm_prompt_new (the
 * image encoding holds the model's vision_mu; the simulation's tower is read-only), while no
 * other thread uses ctx; the prompt keeps no reference to ctx. */
EVLM_API evlm_status evlm_npu_sim_prompt_new(evlm_context *ctx, const char *text, bool add_special,
                                             const evlm_image_input *images, int n_images,
                                             evlm_prompt **out);

/* ---- planner ------------------------------------------------------------------------------- */

/* ---- targets ------------------------------------------------------------------------------ */

typedef struct evlm_npu_target_info {
    const char *name;    /* what --target takes: "sa8295" */
    const char *soc;     /* "SA8295P" */
    int hexagon;         /* Hexagon (HTP) architecture version: 68, 73 */
    double tops;         /* marketed peak AI TOPS (8-bit ops) */
    double dram_gb_s;    /* peak DRAM bandwidth, GB/s (1e9 bytes) */
    double vtcm_mib;     /* VTCM (tightly coupled memory) of the NPU */
    int64_t graph_limit; /* largest weights one graph (context binary part) may hold, bytes */
    int64_t addressable; /* NPU-addressable memory of one session (32-bit VA), bytes */
    int kv_bits;         /* KV cache precision of quantized graphs */
    bool int4_block;     /* int4 per-block weights (Hexagon V69 and later) */
    const char *sources; /* each field's source, one "field: source" line per field */
} evlm_npu_target_info;

EVLM_API size_t evlm_npu_n_targets(void);
EVLM_API const evlm_npu_target_info *evlm_npu_target_at(size_t i);
/* By name ("sa8295"; "SA8295P" too); NULL when unknown. */
EVLM_API const evlm_npu_target_info *evlm_npu_target_find(const char *name);

/* ---- precisions --------------------------------------------------------------------------- */

typedef enum evlm_npu_precision {
    EVLM_NPU_DEFAULT = 0, /* w4a16 where int4 block weights run, w4 elsewhere */
    EVLM_NPU_FP16,        /* fp16 weights and activations */
    EVLM_NPU_W8A16,       /* int8 per-channel weights, 16-bit activations */
    EVLM_NPU_W8A8,        /* int8 per-channel weights, 8-bit activations */
    EVLM_NPU_W4A16,       /* int4 per-block weights (block 64, fp16 scales), 16-bit activations */
    EVLM_NPU_W4,          /* int4 per-channel weights, fp16 activations (Qualcomm AI Hub "w4") */
} evlm_npu_precision;

EVLM_API const char *evlm_npu_precision_name(evlm_npu_precision p);
/* "fp16", "w8a16", "w8a8", "w4a16", "w4"; EVLM_ERR_ARG naming the accepted ones otherwise. */
EVLM_API evlm_status evlm_npu_precision_parse(const char *s, evlm_npu_precision *out);

/* ---- the plan ----------------------------------------------------------------------------- */

typedef struct evlm_plan_params {
    const char *target;           /* default "sa8295" */
    evlm_npu_precision precision; /* default EVLM_NPU_DEFAULT */
    int n_ctx;                    /* context length of the static graphs; 0: 4096 (or less when
                                     the model's max_position_embeddings is less) */
    int ar;                       /* prompt-processor graph length (AR-N); 0: 128 */
    int n_prompt;                 /* prompt tokens for ttft_ms; 0: one AR-N chunk */
    int n_tiles;                  /* image tiles encoded per image (vision models); 0: 1 */
    int max_parts;                /* most graph parts the deployment accepts; 0: no bound */
} evlm_plan_params;

#define EVLM_PLAN_MAX_PARTS 64

typedef struct evlm_plan_part {
    int first_layer, last_layer; /* decoder layers in this part; -1 when none */
    bool embedding, head;        /* holds the token embedding / the final norm and LM head */
    int64_t bytes;               /* its weights */
} evlm_plan_part;

typedef struct evlm_plan {
    const evlm_npu_target_info *target;
    evlm_npu_precision precision;
    int n_ctx, ar, n_prompt, n_tiles;
    char model_type[32];
    /* parameters (counted from the config; tied embeddings counted once) */
    int64_t params_layers, params_embedding, params_head, params_vision, params_connector;
    int64_t params_total;
    int64_t params_file; /* counted from the tensors of a folder or GGUF; -1 without weights */
    /* memory, bytes */
    int64_t text_weights_bytes;   /* decoder, embedding, head (a tied head stored twice: the
                                     embedding and the head sit in different parts) */
    int64_t vision_weights_bytes; /* vision tower and connector */
    int64_t weights_bytes;
    int kv_bits;
    int64_t kv_bytes;         /* at n_ctx */
    int64_t activation_bytes; /* live tensors of the AR-N prompt graph and the vision graph */
    int64_t overhead_bytes;   /* runtime overhead (an assumption, docs/NPU.md) */
    int64_t total_bytes;
    int64_t limit_bytes; /* target->addressable */
    int64_t graph_limit; /* target->graph_limit */
    int n_parts;         /* decoder graph parts (each under graph_limit) */
    evlm_plan_part parts[EVLM_PLAN_MAX_PARTS];
    int n_vision_parts; /* 0 for a text model */
    int max_ctx;        /* largest context whose total still fits (0 when the weights do not) */
    bool fits;
    char why[256]; /* the limit that decides, in words */
    /* roofline estimates */
    double bytes_per_token; /* decode: weights read + the whole static KV cache */
    double flops_per_token; /* decode, at n_ctx */
    double flops_per_chunk; /* one AR-N prompt chunk, at n_ctx */
    double vision_flops;    /* one image of n_tiles tiles */
    double eff_bandwidth;   /* calibrated fraction of peak DRAM bandwidth */
    double eff_compute;     /* calibrated fraction of the peak for this precision's class */
    double peak_ops;        /* ops/s the precision's class may reach (a16: tops / 2) */
    double decode_tok_s;
    double ttft_ms;      /* n_prompt tokens */
    double ttft_full_ms; /* a prompt filling n_ctx */
    double image_encode_ms;
} evlm_plan;

EVLM_API evlm_plan_params evlm_plan_default_params(void);
/* path: a config.json file, a model folder (its config.json; its tensors counted when present)
 * or a GGUF file (the config.json it embeds). Errors: unknown target, a precision the target
 * cannot run (int4 block weights before V69), a context the model or the memory cannot hold
 * (naming the limit and the largest context that fits). A model whose weights do not fit is not
 * an error: fits is false and why names the limit. */
EVLM_API evlm_status evlm_plan_model(const char *path, const evlm_plan_params *params,
                                     evlm_plan *out);
/* The same from config.json text; what names it in errors. */
EVLM_API evlm_status evlm_plan_config(const char *what, const char *json, size_t len,
                                      const evlm_plan_params *params, evlm_plan *out);

/* The one published measurement the effective factors come from. */
typedef struct evlm_plan_calibration {
    const char *model;  /* "Llama-3.2-1B-Instruct" */
    const char *target; /* "sa8295" */
    evlm_npu_precision precision;
    int n_ctx, ar;
    double tok_s;   /* published decode rate */
    double ttft_ms; /* published time to first token of one AR-N chunk */
    const char *source;
    double eff_bandwidth, eff_compute; /* the factors it gives */
} evlm_plan_calibration;

EVLM_API const evlm_plan_calibration *evlm_plan_calibration_point(void);

#ifdef __cplusplus
}
#endif

#endif
