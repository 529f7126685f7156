/*
 * evlm.h - public C API of evlm, an engine for small, fast vision-language models.
 *
 * Objects are opaque and come in new/load + free pairs; configuration goes through
 * the *_default_params() structs. Every call that can fail returns an evlm_status; the reason,
 * naming the file / field / tensor at fault, is in evlm_last_error() (thread-local).
 * The library never prints to stdout and never exits the process.
 * Link with `pkg-config --cflags --libs evlm`; the offline compression passes (quantization to a
 * GGUF file) are declared in evlm_compress.h, in the same library.
 *
 * Not here: internal tensor views, kernels and file readers live in src/ (see
 * docs/ARCHITECTURE.md); the shared library exports only what the public headers declare.
 *
 * Threads. A loaded model is shared read-only; each context owns its mutable state (KV cache,
 * activations, an NPU numerics simulation attached by evlm_npu_sim) and its worker threads. From
 * several threads at once, it is safe to:
 *  - decode with several contexts of one model, each context used by one thread at a time
 *    (evlm_decode*, evlm_context_*, evlm_generate with lookahead or sampling): each context
 *    runs its forward passes on its own pool of evlm_context_params.n_threads workers (0 = the
 *    model's n_threads), so the sum over busy contexts should not exceed the cores;
 *  - call evlm_tokenize, evlm_detokenize, evlm_chat_prompt and the evlm_model_* getters on a
 *    shared model;
 *  - prepare prompts with evlm_prompt_new, images included: image files are decoded,
 *    preprocessed and tokenized in parallel, while the vision encoder (whose activations and
 *    workers belong to the model) encodes the images of one prompt at a time per model, so
 *    concurrent image prompts wait for each other there. A ready evlm_prompt is read-only and
 *    may be evaluated by several contexts at once. evlm_npu_sim_prompt_new (evlm_npu.h) is the
 *    same with the tower numerics of a context's simulation, handed to that one encoding under
 *    the same lock; it reads the context, so no other thread may use that context meanwhile;
 *  - use several samplers, each by one thread at a time.
 * Not safe: one context (or sampler, or evlm_ngram_cache: one generation at a time uses it)
 * from two threads at once; freeing a model while any of its contexts lives or a call on it
 * runs (free the contexts first). Different models load and run independently.
 * evlm_last_error() is per thread: it reports the calling thread's last failure only.
 * Results never depend on the thread count nor on other contexts: a context decodes the same
 * ids alone or beside others. The kernel table is chosen once per process, at its first use
 * (EVLM_ISA is read then). evlm_gen_result.cpu_ms is the process's CPU time, other threads'
 * work included.
 */
#ifndef EVLM_H
#define EVLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the public functions: the library is built with hidden visibility, so libevlm.so exports
 * these alone. */
#if defined(__GNUC__)
#define EVLM_API __attribute__((visibility("default")))
#else
#define EVLM_API
#endif

typedef enum evlm_status {
    EVLM_OK = 0,
    EVLM_ERR_ARG,         /* invalid argument from the caller */
    EVLM_ERR_IO,          /* file missing, unreadable, unwritable */
    EVLM_ERR_FORMAT,      /* malformed, truncated or hostile file content */
    EVLM_ERR_UNSUPPORTED, /* valid input evlm does not handle (architecture, dtype, template) */
    EVLM_ERR_NOMEM,       /* allocation failed or a size limit was exceeded */
    EVLM_ERR_RANGE,       /* out of range at run time (context full, token id >= vocab) */
} evlm_status;

/* Last error message of the calling thread ("" when none). */
EVLM_API const char *evlm_last_error(void);
EVLM_API const char *evlm_status_str(evlm_status st);

/* ---- element types ---------------------------------------------------------------------- */

/* Element types of weight tensors: what files store (safetensors dtypes, GGUF types) and what
 * quantization writes. Q8_0, Q4_0 and Q4_1 are ggml's block formats (32 weights per block with
 * a scale; Q4_1 also a minimum); Q4_K, Q5_K and Q6_K are ggml's k-quants (256 weights per
 * super-block, a scale per 32 or 16 of them). The *_R16 types are layouts the loader builds in
 * memory (16 rows interleaved for the kernels): no file holds them and no call here reports them;
 * so are the
 * *_S24 types (a 2:4-sparse matrix: the kept half of the values and their positions). */
typedef enum evlm_type {
    EVLM_TYPE_F32 = 0,
    EVLM_TYPE_F16,
    EVLM_TYPE_BF16,
    EVLM_TYPE_I64,
    EVLM_TYPE_I32,
    EVLM_TYPE_I8,
    EVLM_TYPE_U8,
    EVLM_TYPE_Q8_0,
    EVLM_TYPE_Q4_0,
    EVLM_TYPE_Q4_1,
    EVLM_TYPE_Q8_0_R16,
    EVLM_TYPE_Q4_0_R16,
    EVLM_TYPE_Q4_1_R16,
    EVLM_TYPE_F32_R16,
    EVLM_TYPE_F16_R16,
    EVLM_TYPE_BF16_R16,
    EVLM_TYPE_Q8_0_S24,
    EVLM_TYPE_F32_S24,
    EVLM_TYPE_F16_S24,
    EVLM_TYPE_BF16_S24,
    EVLM_TYPE_Q4_K,
    EVLM_TYPE_Q5_K,
    EVLM_TYPE_Q6_K,
    EVLM_TYPE_COUNT
} evlm_type;

/* "F32", "BF16", "Q4_0", ... as files and reports spell it; "?" for an invalid type. */
EVLM_API const char *evlm_type_name(evlm_type t);
/* The type a quantization or conversion can write, by its ggml name ("q8_0", "q4_1", "f16",
 * "bf16", "f32"); EVLM_TYPE_COUNT for any other name. */
EVLM_API evlm_type evlm_type_parse(const char *name);

/* ---- model ------------------------------------------------------------------------------ */

typedef struct evlm_model evlm_model;     /* weights + config + tokenizer + chat template */
typedef struct evlm_context evlm_context; /* KV cache and scratch for one sequence */

/* Idefics3 / SmolVLM image splitting: the processor config's choice, or forced. Off = one
 * encoder pass per image (the whole image at max_image_size) instead of the tile grid plus the
 * global image: fewer image tokens and a much shorter time to first token, less detail. */
typedef enum evlm_image_splitting {
    EVLM_SPLIT_CONFIG = 0,
    EVLM_SPLIT_OFF,
    EVLM_SPLIT_ON
} evlm_image_splitting;

typedef struct evlm_model_params {
    int n_threads; /* 0 = physical cores */
    evlm_image_splitting image_splitting;
    bool f32_act;     /* quantized weights: float activations (dequantized weight rows) instead of
                         the default int8 activations with per-block scales (int8 dot products) */
    bool float_head;  /* no int8 copy of a float lm_head for greedy ids (evlm_decode_greedy): half
                         the head's bytes less memory, slower greedy decoding */
    bool keep_layout; /* weight tensors stay as in the file (tools that read them back, such as
                         quantize); by default matrices are interleaved 16 rows at a time for the
                         kernels (EVLM_REPACK=0 does the same for every load) */
    bool keep_dense;  /* no 2:4-sparse forms: by default a matrix whose every aligned group of 4
                         inputs holds 2 zeros is stored in memory as its kept half and their
                         positions (fewer bytes per token; EVLM_SPARSE=0 does the same) */
    /* a GGUF model's vision projector file (llama.cpp's mmproj); NULL: "mmproj-<file name>"
     * beside the model file when it exists */
    const char *mmproj;
} evlm_model_params;

typedef enum evlm_kv_type {
    EVLM_KV_F32 = 0,
    EVLM_KV_F16,
    EVLM_KV_INT8, /* per head and token scales: a quarter of the f32 cache */
} evlm_kv_type;

typedef struct evlm_context_params {
    int n_ctx;       /* KV cache length; 0 = min(model max positions, 4096) */
    int n_batch;     /* most tokens evaluated in one forward call; 0 = 512 */
    int n_threads;   /* this context's workers; 0 = the model's */
    evlm_kv_type kv; /* what the KV cache stores */
} evlm_context_params;

EVLM_API evlm_model_params evlm_model_default_params(void);
EVLM_API evlm_context_params evlm_context_default_params(void);

/* Loads the model at path, one of:
 * - a Hugging Face model folder: config.json, tokenizer.json, model.safetensors or a sharded
 *   model.safetensors.index.json, and the image processor config of a vision model; the chat
 *   template (chat_template.jinja / .json or tokenizer_config.json) when it has one;
 * - a GGUF file written by `evlm quantize`, told apart by its "GGUF" magic: those same files
 *   are inside as "evlm.file.<name>" keys (a GGUF from other tools, without them, is refused).
 * params NULL: evlm_model_default_params(). */
EVLM_API evlm_status evlm_model_load(const char *path, const evlm_model_params *params,
                                     evlm_model **out);
EVLM_API void evlm_model_free(evlm_model *model);

EVLM_API int evlm_model_n_vocab(const evlm_model *model);
EVLM_API int evlm_model_n_ctx_train(const evlm_model *model);
EVLM_API int evlm_model_n_threads(const evlm_model *model);
/* Bytes of all weight tensors (vision included). */
EVLM_API size_t evlm_model_weight_bytes(const evlm_model *model);
/* Parameters of the decoder layers' matrices (2 FLOPs each per prompt token; the lm_head runs
 * for the last prompt token only). */
EVLM_API int64_t evlm_model_n_layer_params(const evlm_model *model);
/* Bytes of the int8 copy of the output head that greedy decoding uses (0: none, see
 * evlm_decode_greedy); memory beyond the weights. */
EVLM_API size_t evlm_model_greedy_head_bytes(const evlm_model *model);
/* Bytes one greedy decoded token reads: the decoder layers' matrices plus the lm_head (its int8
 * copy when the model has the greedy head: see evlm_decode_greedy). */
EVLM_API size_t evlm_model_decode_bytes(const evlm_model *model);
/* End-of-generation ids (generation_config.json, config.json, tokenizer eos). */
EVLM_API int evlm_model_eos_ids(const evlm_model *model, const int32_t **ids);
EVLM_API bool evlm_model_is_eos(const evlm_model *model, int32_t id);

EVLM_API evlm_status evlm_context_new(evlm_model *model, const evlm_context_params *params,
                                      evlm_context **out);
EVLM_API void evlm_context_free(evlm_context *ctx);
EVLM_API int evlm_context_n_past(const evlm_context *ctx);
EVLM_API int evlm_context_n_ctx(const evlm_context *ctx);
/* Drops the cache from position n_past on (n_past <= current). */
EVLM_API evlm_status evlm_context_truncate(evlm_context *ctx, int n_past);

/* Evaluates n tokens at positions n_past..n_past+n-1 and appends them to the cache.
 * logits: NULL, [n_vocab] (last position) or [n][n_vocab] when all_logits. */
EVLM_API evlm_status evlm_decode(evlm_context *ctx, const int32_t *ids, int n, float *logits,
                                 bool all_logits);
/* Evaluates a tree of n guessed tokens after what ctx holds (speculative verification): token i
 * takes cache slot n_past + i and the position of slot n_past + depth[i]; it sees the cache and the
 * batch tokens j with mask[i * n + j] != 0 (j <= i, mask[i][i] = 1). logits: [n_out][n_vocab]
 * for the increasing batch rows out_rows. Follow with evlm_context_keep to drop rejected rows. */
EVLM_API evlm_status evlm_decode_tree(evlm_context *ctx, const int32_t *ids, const int32_t *depth,
                                      const uint8_t *mask, int n, const int *out_rows, int n_out,
                                      float *logits);
/* As evlm_decode / evlm_decode_tree, but instead of logits the greedy id of each row (the argmax,
 * lowest id on ties): top [1] (last position) or [n] (all), or [n_out]. Bitwise the argmax of the
 * logits the logits calls give, and cheaper for a large float head: it is multiplied in int8 first
 * and only the ids that could be the largest are computed exactly (float_head: the whole head). */
EVLM_API evlm_status evlm_decode_greedy(evlm_context *ctx, const int32_t *ids, int n, int32_t *top,
                                        bool all);
EVLM_API evlm_status evlm_decode_tree_greedy(evlm_context *ctx, const int32_t *ids,
                                             const int32_t *depth, const uint8_t *mask, int n,
                                             const int *out_rows, int n_out, int32_t *top);
/* Keeps n_keep cache slots from base on (slots increasing, >= base), moved to base, base + 1, ...;
 * drops the rest (n_past = base + n_keep). */
EVLM_API evlm_status evlm_context_keep(evlm_context *ctx, int base, const int *slots, int n_keep);

/* ---- random-weight models --------------------------------------------------------------- */

/* A model folder with random weights for a Hugging Face config.json, so benchmarks and tests
 * need no downloads. */
typedef struct evlm_synth_params {
    const char *config;        /* config.json of any architecture evlm_model_load serves */
    const char *out_dir;       /* created if missing; files in it are replaced */
    const char *dtype;         /* "bf16" (default), "f16" or "f32": every tensor's type */
    bool text_only;            /* a VLM's language model alone, as a Llama folder (with a
                                  Llama-style config.json); not for models whose text part
                                  needs the rest (Qwen2-VL's M-RoPE) */
    const char *tokenizer_dir; /* NULL: the tokenizer and chat template files come from the
                                  config's folder; else from this one */
    uint64_t seed;             /* same seed and arguments: byte-identical files */
    bool sparse24;             /* every random 2-D matrix but the embeddings and lm_head 2:4:
                                  the 2 smallest |w| of each aligned group of 4 inputs zeroed
                                  (magnitude pruning), for the 2:4 kernels' benchmarks */
} evlm_synth_params;

evlm_synth_params evlm_synth_default_params(void);
/* Writes out_dir/model.safetensors (matrices and embeddings ~ U(-a, a) with the std of
 * N(0, 0.02), norm weights 1, biases 0, deterministic per seed), config.json (the config as it
 * is, or a Llama text config for text_only), and copies the tokenizer, chat template,
 * generation and processor files present in the config's folder (no processor files for
 * text_only); without a tokenizer.json, a byte-level one (256 byte tokens, no merges) is
 * written. n_tensors, bytes (nullable): the tensors written and their data size. */
evlm_status evlm_model_synth(const evlm_synth_params *params, int *n_tensors, size_t *bytes);

/* ---- text ------------------------------------------------------------------------------- */

/* Token ids of text. parse_special: "<|im_start|>" and other added tokens in the text become
 * their ids. add_special: apply the tokenizer's post-processor (e.g. a BOS token).
 * *ids is malloc'd; free() it. */
EVLM_API evlm_status evlm_tokenize(const evlm_model *model, const char *text, size_t len,
                                   bool parse_special, bool add_special, int32_t **ids,
                                   size_t *n_ids);
/* Text of ids (malloc'd, NUL-terminated). skip_special drops special added tokens and the ids a
 * padded vocabulary has beyond the tokenizer's (without it they are an error). */
EVLM_API evlm_status evlm_detokenize(const evlm_model *model, const int32_t *ids, size_t n_ids,
                                     bool skip_special, char **text);

/* The chat template wrapping one user turn with the generation prompt (malloc'd).
 * n_images: how many images the turn carries (each becomes the template's image marker). */
EVLM_API evlm_status evlm_chat_prompt(const evlm_model *model, const char *user_text, int n_images,
                                      char **prompt);

/* ---- prompts with images ---------------------------------------------------------------- */

/* One image: a PNG / JPEG file, or a raw RGB8 buffer (a camera frame needs no file). */
typedef struct evlm_image_input {
    const char *path;   /* file, or NULL to use rgb */
    const uint8_t *rgb; /* height rows of width*3 bytes, rows stride bytes apart */
    int width, height;
    size_t stride;
} evlm_image_input;

/* A prompt ready to evaluate: token ids (image markers expanded as the model's processor does)
 * and the encoded image features that replace the image tokens. */
typedef struct evlm_prompt evlm_prompt;

EVLM_API bool evlm_model_has_vision(const evlm_model *model);
/* text holds one "<image>" per image (a count mismatch is an error). The images are decoded,
 * preprocessed and encoded here. add_special as in evlm_tokenize. */
EVLM_API evlm_status evlm_prompt_new(evlm_model *model, const char *text, bool add_special,
                                     const evlm_image_input *images, int n_images,
                                     evlm_prompt **out);
EVLM_API void evlm_prompt_free(evlm_prompt *p);
EVLM_API const int32_t *evlm_prompt_ids(const evlm_prompt *p, size_t *n_ids);
EVLM_API int evlm_prompt_n_image_tokens(const evlm_prompt *p);
EVLM_API double evlm_prompt_image_ms(const evlm_prompt *p); /* decode + preprocess + encode */
/* Evaluates the prompt after what ctx holds; logits as evlm_decode. evlm_decode_prompt_greedy:
 * the greedy id of the last position instead (as evlm_decode_greedy). */
EVLM_API evlm_status evlm_decode_prompt_greedy(evlm_context *ctx, const evlm_prompt *p,
                                               int32_t *top);
EVLM_API evlm_status evlm_decode_prompt(evlm_context *ctx, const evlm_prompt *p, float *logits,
                                        bool all_logits);

/* ---- sampling --------------------------------------------------------------------------- */

typedef struct evlm_sampler evlm_sampler;

typedef struct evlm_sampler_params {
    float temp;           /* 0 = greedy */
    int top_k;            /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int repeat_last_n;    /* window of the repetition penalty */
    uint64_t seed;
} evlm_sampler_params;

EVLM_API evlm_sampler_params evlm_sampler_default_params(void);
EVLM_API evlm_status evlm_sampler_new(const evlm_sampler_params *params, int n_vocab,
                                      evlm_sampler **out);
EVLM_API void evlm_sampler_free(evlm_sampler *s);
/* True when the sampler picks the argmax of the raw logits (temperature 0 or top-k 1, no
 * repetition penalty): then evlm_decode_greedy gives the same ids without the logits. */
EVLM_API bool evlm_sampler_is_greedy(const evlm_sampler_params *params);
/* Picks the next id from logits [n_vocab]; history = ids so far (for the repetition penalty).
 * May modify logits. */
EVLM_API int32_t evlm_sampler_sample(evlm_sampler *s, float *logits, const int32_t *history,
                                     size_t n_history);

/* ---- generation ------------------------------------------------------------------------- */

#define EVLM_MAX_STOP 8

typedef enum evlm_stop_reason {
    EVLM_STOP_LENGTH = 0, /* n_predict tokens generated */
    EVLM_STOP_EOS,        /* an end-of-generation id */
    EVLM_STOP_STRING,     /* a stop string appeared in the text */
    EVLM_STOP_CALLBACK,   /* the callback asked to stop */
    EVLM_STOP_CONTEXT,    /* the context is full */
} evlm_stop_reason;

/* Several tokens per forward pass at identical greedy output (greedy sampling only).
 * Lookahead decoding (Fu et al., ICML 2024): a Jacobi window of `window` columns over
 * `ngram` - 1 levels grows an n-gram pool; up to `guesses` pooled n-grams that start with the
 * last token are verified in the same pass. Prompt lookup: drafts of up to `prompt_lookup`
 * tokens copied from the prompt / answer after the longest match (<= 3 tokens) of its tail. */
typedef struct evlm_lookahead_params {
    int window, ngram, guesses; /* W, N, G; window = 0: no Jacobi branch (drafts from the pool
                                   of earlier answers only, when guesses > 0) */
    int prompt_lookup;          /* draft length; 0 = off */
} evlm_lookahead_params;

/* The n-gram pool of lookahead decoding, kept across answers (a deployment asks similar
 * questions: earlier answers' phrases make good drafts). Drafts are verified, so the cache
 * changes speed, never output. One cache per model; one generation at a time uses it. */
typedef struct evlm_ngram_cache evlm_ngram_cache;
EVLM_API evlm_status evlm_ngram_cache_new(const evlm_model *model, evlm_ngram_cache **out);
EVLM_API void evlm_ngram_cache_free(evlm_ngram_cache *cache);

/* W, N, G for this model on this machine (from its size and the core count). */
EVLM_API evlm_lookahead_params evlm_lookahead_auto(const evlm_model *model);

typedef struct evlm_gen_params {
    int n_predict; /* most tokens to generate */
    evlm_sampler_params sampling;
    const char *stop[EVLM_MAX_STOP]; /* stop strings (NULL-terminated list) */
    evlm_lookahead_params lookahead; /* all 0: one token per pass */
    evlm_ngram_cache *ngrams;        /* nullable: lookahead's n-gram pool across answers */
    bool ignore_eos;                 /* benchmarks: generate n_predict tokens regardless */
} evlm_gen_params;

typedef struct evlm_gen_result {
    int32_t *ids; /* generated ids, malloc'd (the eos id included when it ended the answer) */
    int n_prompt, n_gen;
    char *text; /* answer text (special tokens skipped, cut before a stop string), malloc'd */
    evlm_stop_reason stop_reason;
    double ttft_ms;    /* prefill + first sampled token */
    double prefill_ms; /* prompt evaluation only */
    double decode_ms;  /* from the first to the last generated token */
    double cpu_ms;     /* process CPU time over the whole call */
    double wall_ms;
    int n_steps; /* forward passes after the prompt (n_gen / n_steps tokens per pass) */
} evlm_gen_result;

/* Called with each new piece of stable text (complete UTF-8, not part of a possible stop
 * string); return false to stop. */
typedef bool (*evlm_text_cb)(void *user, const char *text, size_t len);

EVLM_API evlm_gen_params evlm_gen_default_params(void);
/* Evaluates the prompt after what ctx already holds, then samples up to n_predict tokens. */
EVLM_API evlm_status evlm_generate(evlm_context *ctx, const evlm_prompt *prompt,
                                   const evlm_gen_params *params, evlm_text_cb cb, void *user,
                                   evlm_gen_result *res);
EVLM_API void evlm_gen_result_free(evlm_gen_result *res);
/* The model a context belongs to. */
EVLM_API evlm_model *evlm_context_model(evlm_context *ctx);

/* ---- tokenizer alone -------------------------------------------------------------------- */

/* A tokenizer.json without a model (tools that count or inspect tokens); a loaded model's own
 * tokenizer is used through evlm_tokenize / evlm_detokenize. */
typedef struct evlm_tokenizer evlm_tokenizer;

/* path: a tokenizer.json file (the folder's tokenizer_config.json is not needed). */
EVLM_API evlm_status evlm_tokenizer_load(const char *path, evlm_tokenizer **out);
EVLM_API void evlm_tokenizer_free(evlm_tokenizer *tok);
/* As evlm_tokenize: *ids is malloc'd; free() it. */
EVLM_API evlm_status evlm_tokenizer_tokenize(const evlm_tokenizer *tok, const char *text,
                                             size_t len, bool parse_special, bool add_special,
                                             int32_t **ids, size_t *n_ids);
/* Text of ids, malloc'd and NUL-terminated; *len is its length, which tells a NUL byte a token
 * decodes to from the end. skip_special drops special added tokens. An id the tokenizer does not
 * have is an error. */
EVLM_API evlm_status evlm_tokenizer_detokenize(const evlm_tokenizer *tok, const int32_t *ids,
                                               size_t n_ids, bool skip_special, char **text,
                                               size_t *len);

/* ---- model files, inspected without loading --------------------------------------------- */

/* The text decoder's configuration from config.json (a VLM's text_config). */
typedef struct evlm_text_config {
    char architecture[64]; /* architectures[0], e.g. "LlamaForCausalLM" */
    char model_type[32];   /* the top-level model_type, e.g. "llama", "idefics3" */
    int n_layers, hidden_size, intermediate_size, vocab_size;
    int n_heads, n_kv_heads, head_dim;
    double rope_theta;
    bool tie_word_embeddings;
} evlm_text_config;

typedef struct evlm_tensor_info {
    const char *name; /* Hugging Face name; points into the evlm_model_info */
    evlm_type type;   /* as stored in the file */
    int n_dims;
    int64_t shape[4]; /* PyTorch order: the outermost dimension first */
    size_t bytes;
    size_t mem_bytes; /* what a loaded model holds for it when it is a weight matrix: bytes, or
                         fewer when the matrix is 2:4 (every aligned group of 4 inputs holds 2
                         zeros: held as its kept half and their positions unless EVLM_SPARSE=0) */
    bool sparse24;    /* a 2:4 matrix (mem_bytes counts its 2:4 form) */
} evlm_tensor_info;

typedef struct evlm_model_info evlm_model_info;

/* Opens a model folder, a .safetensors file, a .safetensors.index.json or a .gguf file for
 * inspection: the tensors are mapped, not read, and nothing is converted. */
EVLM_API evlm_status evlm_model_info_open(const char *path, evlm_model_info **out);
EVLM_API void evlm_model_info_free(evlm_model_info *info);
/* The folder's config.json or the one a GGUF file embeds; NULL when there is none (a lone
 * .safetensors file). */
EVLM_API const evlm_text_config *evlm_model_info_config(const evlm_model_info *info);
EVLM_API size_t evlm_model_info_n_tensors(const evlm_model_info *info);
/* Tensor i < evlm_model_info_n_tensors(), in the file's order. */
EVLM_API evlm_tensor_info evlm_model_info_tensor(const evlm_model_info *info, size_t i);

/* ---- import ----------------------------------------------------------------------------- */

/* Converts a llama2.c checkpoint (the v0 format of run.c) and its tokenizer.bin into a Hugging
 * Face folder out_dir (config.json, model.safetensors, tokenizer.json, ...) that evlm_model_load
 * reads. Every size is checked against the file; the files are written atomically. */
EVLM_API evlm_status evlm_llama2c_convert(const char *model_bin, const char *tokenizer_bin,
                                          const char *out_dir);

/* ---- measurements ----------------------------------------------------------------------- */

/* The clocks evlm_gen_result's times come from, for reports that add their own spans. */
EVLM_API double evlm_time_ms(void);     /* CLOCK_MONOTONIC */
EVLM_API double evlm_cpu_time_ms(void); /* user + system time of the whole process */
EVLM_API double evlm_peak_rss_mb(void); /* high-water mark of the process's resident memory */

#ifdef __cplusplus
}
#endif
#endif
