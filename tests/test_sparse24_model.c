/*
 * test_sparse24_model.c - a 2:4-pruned model runs its 2:4 forms (quant/sparse24.h) with exactly
 * the results of the dense forms: the llama-tiny fixture's decoder matrices are pruned here (the
 * 2 smallest |w| of each aligned group of 4 inputs zeroed, by magnitude) into a temporary folder
 * (bf16 safetensors) and quantized to q8_0 (evlm_quantize, RTN: the zeros stay exact int8 zeros);
 * each file is loaded twice, by default (2:4 forms) and with keep_dense (dense R16 forms), and:
 *   - the default load holds fewer bytes per decode (evlm_model_decode_bytes: 9 / 16 of each
 *     bf16 layer matrix, 22 / 34 of each Q8_0 one), so the 2:4 forms are really used;
 *   - the logits of the prompt (prefill) and of 16 greedy decode steps are bitwise equal, and so
 *     are the greedy ids (which are checked to vary);
 *   - a model with one dense group in a matrix keeps that matrix dense (decode bytes between).
 * Not here: the kernels one by one (test_sparse24.c), speed (docs/PERFORMANCE.md).
 */
#include "core/tensor.h"
#include "evlm_compress.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t n;
    int ok = a && b;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b && fclose(b)) ok = 0;
    return ok;
}

/* dir/model.safetensors: the fixture's tensors, layer matrices pruned 2:4 (dense_row >= 0: that
 * row of the first such matrix keeps one group of 3 non-zeros) */
static int write_pruned(const char *fixture, const char *dir, int dense_row) {
    char path[4300];
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    evlm_weights *w = NULL;
    CHECK_OK(evlm_weights_open(path, &w));
    if (!w) return 0;
    size_t n = evlm_weights_count(w);
    evlm_tensor *t = calloc(n, sizeof *t);
    int pruned = 0;
    for (size_t i = 0; i < n; i++) {
        t[i] = *evlm_weights_at(w, i);
        size_t bytes = evlm_tensor_nbytes(&t[i]);
        void *d = malloc(bytes ? bytes : 1);
        memcpy(d, t[i].data, bytes);
        t[i].data = d;
        if (t[i].n_dims != 2 || !strstr(t[i].name, "layers.") || t[i].type != EVLM_TYPE_BF16)
            continue;
        uint16_t *v = d;
        for (int64_t r = 0; r < t[i].ne[1]; r++)
            for (int64_t q = 0; q < t[i].ne[0] / 4; q++) {
                uint16_t *g = v + r * t[i].ne[0] + 4 * q;
                int lo0 = 0, lo1;
                for (int j = 1; j < 4; j++)
                    if (fabsf(evlm_bf16_to_f32(g[j])) < fabsf(evlm_bf16_to_f32(g[lo0]))) lo0 = j;
                lo1 = lo0 ? 0 : 1;
                for (int j = 0; j < 4; j++)
                    if (j != lo0 && fabsf(evlm_bf16_to_f32(g[j])) < fabsf(evlm_bf16_to_f32(g[lo1])))
                        lo1 = j;
                g[lo0] = 0;
                if (!(pruned == 0 && r == dense_row && q == 1)) g[lo1] = 0;
            }
        pruned++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(evlm_safetensors_write(path, t, n));
    for (size_t i = 0; i < n; i++) free(t[i].data);
    free(t);
    evlm_weights_free(w);
    static const char *files[] = {"config.json", "generation_config.json", "tokenizer.json",
                                  "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char a[4300], b[4300];
        snprintf(a, sizeof a, "%s/%s", fixture, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        CHECKF(copy_file(a, b), "copy %s", files[i]);
    }
    return pruned;
}

/* prefill + steps greedy decode steps; all logits into lg ((n + steps) x V), ids into out */
static void run(evlm_model *m, const int32_t *ids, int n, int steps, float *lg, int32_t *out) {
    evlm_context_params cp = evlm_context_default_params();
    cp.n_ctx = n + steps + 1;
    evlm_context *ctx = NULL;
    CHECK_OK(evlm_context_new(m, &cp, &ctx));
    if (!ctx) return;
    const size_t V = (size_t)evlm_model_n_vocab(m);
    CHECK_OK(evlm_decode(ctx, ids, n, lg, true));
    float *last = lg + (size_t)(n - 1) * V;
    for (int s = 0; s < steps; s++) {
        int best = 0;
        for (size_t v = 1; v < V; v++)
            if (last[v] > last[best]) best = (int)v;
        out[s] = best;
        last = lg + (size_t)(n + s) * V;
        CHECK_OK(evlm_decode(ctx, &out[s], 1, last, false));
    }
    evlm_context_free(ctx);
}

/* loads path with and without the 2:4 forms; returns sparse / dense decode bytes */
static double compare(const char *path, const char *what) {
    evlm_model *m[2] = {NULL, NULL};
    for (int d = 0; d < 2; d++) {
        evlm_model_params mp = evlm_model_default_params();
        mp.n_threads = 2;
        mp.keep_dense = d == 1;
        CHECK_OK(evlm_model_load(path, &mp, &m[d]));
    }
    if (!m[0] || !m[1]) return 0;
    enum { N = 9, STEPS = 16 };
    static const int32_t ids[N] = {1, 45, 300, 17, 200, 99, 5, 123, 64};
    const size_t V = (size_t)evlm_model_n_vocab(m[0]);
    float *lg[2];
    int32_t out[2][STEPS];
    for (int d = 0; d < 2; d++) {
        lg[d] = calloc((N + STEPS) * V, sizeof(float));
        run(m[d], ids, N, STEPS, lg[d], out[d]);
    }
    CHECKF(memcmp(lg[0], lg[1], (N + STEPS) * V * sizeof(float)) == 0,
           "%s: logits differ between the 2:4 and the dense forms", what);
    CHECKF(memcmp(out[0], out[1], sizeof out[0]) == 0, "%s: greedy ids differ", what);
    int distinct = 0;
    for (int s = 0; s < STEPS; s++) {
        int seen = 0;
        for (int u = 0; u < s; u++) seen |= out[0][u] == out[0][s];
        distinct += !seen;
    }
    CHECKF(distinct >= 3, "%s: greedy ids hardly vary (%d distinct)", what, distinct);
    double ratio = (double)evlm_model_decode_bytes(m[0]) / (double)evlm_model_decode_bytes(m[1]);
    printf("%s: %d distinct greedy ids of %d; decode bytes 2:4 / dense = %.3f\n", what, distinct,
           STEPS, ratio);
    for (int d = 0; d < 2; d++) {
        free(lg[d]);
        evlm_model_free(m[d]);
    }
    return ratio;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return 77;
    char fixture[4096], dir[] = "/tmp/evlm_s24_XXXXXX", dir2[] = "/tmp/evlm_s24d_XXXXXX";
    snprintf(fixture, sizeof fixture, "%s/fixtures/llama-tiny", shared);
    if (!mkdtemp(dir) || !mkdtemp(dir2)) {
        printf("no temporary folder\n");
        return 1;
    }
    int pruned = write_pruned(fixture, dir, -1);
    CHECK(pruned >= 7);
    double r = compare(dir, "bf16 2:4");
    CHECKF(r > 0.5 && r < 0.95, "bf16: decode bytes ratio %.3f", r);

    char gguf[4200];
    snprintf(gguf, sizeof gguf, "%s/q8.gguf", dir);
    evlm_quantize_params qp = evlm_quantize_default_params();
    qp.type = EVLM_TYPE_Q8_0;
    qp.n_threads = 2;
    evlm_quantize_report rep;
    memset(&rep, 0, sizeof rep);
    CHECK_OK(evlm_quantize(dir, gguf, &qp, &rep));
    evlm_quantize_report_free(&rep);
    double rq = compare(gguf, "q8_0 2:4");
    CHECKF(rq > 0.5 && rq < 0.95, "q8_0: decode bytes ratio %.3f", rq);

    /* one group of 3 non-zeros in the first layer matrix: that matrix stays dense */
    write_pruned(fixture, dir2, 3);
    double rd = compare(dir2, "bf16 2:4, one dense matrix");
    CHECKF(rd > r + 1e-3 && rd < 1.0, "one dense matrix: ratio %.4f (all 2:4: %.4f)", rd, r);

    char cmd[9000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, dir2);
    CHECK(system(cmd) == 0);
    return test_done();
}
