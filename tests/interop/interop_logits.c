/*
 * interop_logits.c - evlm's logits in the file llama-perplexity reads as its KL-divergence base
 * (`llama-perplexity --kl-divergence --kl-divergence-base FILE`), so that llama.cpp compares its
 * own logits on a GGUF file against evlm's on the same file, position by position (make interop).
 *
 *   interop_logits -m MODEL -f TEXT.txt -o BASE.bin [-c N_CTX] [--chunks N] [-t THREADS]
 *                  [--act int8|f32]   (evlm's activations for quantized weights; int8 default)
 *
 * The text is tokenized by evlm (no special tokens) into chunks of N_CTX tokens; when evlm's
 * tokens of "" with special tokens are a BOS, every chunk starts with it (llama-perplexity puts
 * its BOS there too when the vocabulary adds one, and uses the tokens of this file otherwise, so
 * both runtimes see the same ids whatever their tokenizers do). Each chunk is evaluated from an
 * empty cache; positions N_CTX/2 .. N_CTX-2 are written as llama-perplexity writes them
 * (tools/perplexity/perplexity.cpp, September 2026: "_logits_", u32 n_ctx, i32 n_vocab,
 * i32 n_chunk, i32 tokens[n_chunk * n_ctx], then per chunk and position the log-probabilities
 * as 2 floats (scale, min_log_prob) and n_vocab uint16 steps, padded to an even count).
 * The same file also gets evlm's greedy ids (one line per position, "chunk pos top1") on stdout
 * for the report. A tool of the interop harness, not part of the library.
 */
#include "evlm.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "interop_logits: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static void check(evlm_status st, const char *what) {
    if (st != EVLM_OK) {
        fprintf(stderr, "interop_logits: %s: %s\n", what, evlm_last_error());
        exit(1);
    }
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open '%s'", path);
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek '%s'", path);
    long n = ftell(f);
    if (n < 0 || n > (1L << 28)) die("'%s' is unreadable or over 256 MB", path);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) die("cannot read '%s'", path);
    s[n] = 0;
    fclose(f);
    return s;
}

/* llama.cpp's nearest_int: round half to even for the magnitudes used here (0..65535) */
static int nearest_int(float v) {
    return (int)lrintf(v);
}

/* perplexity.cpp's log_softmax(n_vocab, logits, uint16_t *log_prob, tok), line for line */
static void log_probs_u16(int n_vocab, const float *logits, uint16_t *out) {
    float max_logit = logits[0], min_logit = logits[0];
    for (int i = 1; i < n_vocab; i++) {
        if (logits[i] > max_logit) max_logit = logits[i];
        if (logits[i] < min_logit) min_logit = logits[i];
    }
    if (min_logit < max_logit - 16) min_logit = max_logit - 16;
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; i++) sum_exp += (double)expf(logits[i] - max_logit);
    const float log_sum_exp = (float)log(sum_exp);
    const float min_log_prob = min_logit - max_logit - log_sum_exp;
    const float scale = (max_logit - min_logit) / 65535.f;
    memcpy(out, &scale, sizeof scale);
    memcpy(out + 2, &min_log_prob, sizeof min_log_prob);
    uint16_t *lp = out + 4;
    if (scale != 0) {
        const float inv_scale = 1 / scale;
        for (int i = 0; i < n_vocab; i++)
            lp[i] = logits[i] > min_logit
                        ? (uint16_t)nearest_int(inv_scale * (logits[i] - min_logit))
                        : 0;
    } else
        memset(lp, 0, sizeof(uint16_t) * (size_t)n_vocab);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out_path = NULL;
    int n_ctx = 512, n_chunk = 1, n_threads = 0;
    bool f32_act = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: interop_logits -m MODEL -f TEXT.txt -o BASE.bin [-c N_CTX] [--chunks "
                   "N] [-t THREADS] [--act int8|f32]\n");
            return 0;
        }
        if (!v) die("option '%s' needs a value", a);
        if (!strcmp(a, "-m"))
            model_path = v;
        else if (!strcmp(a, "-f"))
            text_path = v;
        else if (!strcmp(a, "-o"))
            out_path = v;
        else if (!strcmp(a, "-c"))
            n_ctx = atoi(v);
        else if (!strcmp(a, "--chunks"))
            n_chunk = atoi(v);
        else if (!strcmp(a, "-t"))
            n_threads = atoi(v);
        else if (!strcmp(a, "--act"))
            f32_act = !strcmp(v, "f32");
        else
            die("unknown option '%s'", a);
        i++;
    }
    if (!model_path || !text_path || !out_path) die("%s", "need -m MODEL -f TEXT -o BASE.bin");
    if (n_ctx < 8 || n_ctx > 65536 || n_chunk < 1 || n_chunk > 4096)
        die("%s", "-c must be 8..65536 and --chunks 1..4096");

    evlm_model_params mp = evlm_model_default_params();
    mp.n_threads = n_threads;
    mp.f32_act = f32_act; /* --act f32: quantized weights meet float activations */
    evlm_model *m;
    check(evlm_model_load(model_path, &mp, &m), model_path);
    const int V = evlm_model_n_vocab(m);

    /* the BOS evlm puts before a prompt, if any */
    int32_t *bos_ids;
    size_t n_bos;
    check(evlm_tokenize(m, "", 0, false, true, &bos_ids, &n_bos), "tokenize \"\"");
    const int has_bos = n_bos == 1;
    const int32_t bos = has_bos ? bos_ids[0] : -1;
    free(bos_ids);

    char *text = read_text(text_path);
    int32_t *ids;
    size_t n_text;
    check(evlm_tokenize(m, text, strlen(text), false, false, &ids, &n_text), text_path);
    const size_t per_chunk = (size_t)(n_ctx - has_bos);
    if (n_text < per_chunk * (size_t)n_chunk) {
        fprintf(stderr, "interop_logits: %s has %zu tokens, fewer than %d chunks of %zu\n",
                text_path, n_text, n_chunk, per_chunk);
        return 1;
    }
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)n_ctx * (size_t)n_chunk);
    for (int c = 0; c < n_chunk; c++) {
        int32_t *t = tokens + (size_t)c * (size_t)n_ctx;
        if (has_bos) t[0] = bos;
        memcpy(t + has_bos, ids + (size_t)c * per_chunk, sizeof(int32_t) * per_chunk);
    }
    free(ids);
    free(text);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("cannot create '%s'", tmp);
    const uint32_t u_ctx = (uint32_t)n_ctx;
    fwrite("_logits_", 1, 8, f);
    fwrite(&u_ctx, sizeof u_ctx, 1, f);
    fwrite(&V, sizeof V, 1, f);
    fwrite(&n_chunk, sizeof n_chunk, 1, f);
    fwrite(tokens, sizeof(int32_t), (size_t)n_ctx * (size_t)n_chunk, f);

    const int first = n_ctx / 2, nv = 2 * ((V + 1) / 2) + 4;
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)n_ctx);
    uint16_t *row = calloc((size_t)nv, sizeof(uint16_t));
    if (!logits || !row) die("%s", "out of memory");
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    evlm_context *ctx;
    check(evlm_context_new(m, &cp, &ctx), "context");
    for (int c = 0; c < n_chunk; c++) {
        check(evlm_context_truncate(ctx, 0), "truncate");
        check(evlm_decode(ctx, tokens + (size_t)c * (size_t)n_ctx, n_ctx, logits, true), "decode");
        for (int p = first; p < n_ctx - 1; p++) {
            const float *l = logits + (size_t)p * (size_t)V;
            int top = 0;
            for (int i = 1; i < V; i++)
                if (l[i] > l[top]) top = i;
            printf("%d %d %d\n", c, p, top);
            log_probs_u16(V, l, row);
            fwrite(row, sizeof(uint16_t), (size_t)nv, f);
        }
    }
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) die("cannot write '%s'", tmp);
    fclose(f);
    if (rename(tmp, out_path) != 0) die("cannot rename to '%s'", out_path);
    evlm_context_free(ctx);
    evlm_model_free(m);
    free(logits);
    free(row);
    free(tokens);
    return 0;
}
