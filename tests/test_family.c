/*
 * test_family.c - the family seam (src/model/family.h): the registry is consistent (names,
 * unique architectures that map back to their family, hooks that come together), an unknown
 * architecture is refused naming it, and on each fixture (../shared/fixtures: llama-tiny,
 * smolvlm-tiny, qwen2vl-tiny) the right family loads and the matrix walk lists every bound
 * matrix once with its role: seven per decoder layer, embedding and head, and the vision tower /
 * connector matrices of the VLM families, each a tensor of the weight set; the public listing
 * of evlm_compress.h (evlm_model_matrix) gives the same matrices in the same order. Every family
 * with parts of its own has a synth hook, and a random-weight model synthesized from each fixture's
 * config.json (evlm_model_synth, into a temporary folder removed after) loads back into the same
 * family (the Idefics3 one with text_only as a Llama model; Qwen2-VL refuses text_only).
 */
#include "test.h"
#include "model/model_impl.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

static void test_registry(void) {
    int n = 0;
    const evlm_family *const *f = evlm__families(&n);
    CHECK(n >= 3);
    for (int i = 0; i < n; i++) {
        CHECK(f[i]->name && f[i]->name[0]);
        CHECK(f[i]->architectures && f[i]->architectures[0]);
        for (int j = 0; j < i; j++)
            CHECKF(strcmp(f[i]->name, f[j]->name) != 0, "family %s twice", f[i]->name);
        for (const char *const *a = f[i]->architectures; *a; a++)
            CHECKF(evlm__family_find(*a) == f[i], "architecture %s maps to another family", *a);
        /* a family with parts of its own loads, frees and lists them; a text-only one has none */
        bool any = f[i]->load || f[i]->free || f[i]->matrices;
        CHECKF(!any || (f[i]->load && f[i]->free && f[i]->matrices), "family %s: partial hooks",
               f[i]->name);
        /* evlm synth lists those parts' tensors too */
        CHECKF(!f[i]->load || f[i]->synth, "family %s: parts of its own, no synth hook",
               f[i]->name);
    }
    CHECK(evlm__family_find("GPT2LMHeadModel") == NULL);
    CHECK(evlm__family_find("") == NULL);
}

typedef struct {
    const evlm_model *m;
    int per_role[EVLM_ROLE_COUNT];
    const evlm_tensor *seen[4096];
    int n_seen, dup, foreign, bad_layer;
} walk;

static void count(void *user, const evlm_tensor **slot, evlm_matrix_role role, int layer) {
    walk *w = user;
    const evlm_tensor *t = *slot;
    w->per_role[role]++;
    if (role <= EVLM_ROLE_MLP_DOWN && (layer < 0 || layer >= w->m->cfg.n_layers)) w->bad_layer++;
    bool in_set = false;
    for (size_t i = 0; i < evlm_weights_count(w->m->weights) && !in_set; i++)
        in_set = evlm_weights_at(w->m->weights, i) == t;
    w->foreign += !in_set;
    bool tied = role == EVLM_ROLE_HEAD && t == w->m->decoder.tok_embd;
    for (int i = 0; i < w->n_seen && !tied; i++) w->dup += w->seen[i] == t;
    if (w->n_seen < 4096) w->seen[w->n_seen++] = t;
}

/* Removes dir and the plain files in it. */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[4608];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        CHECKF(unlink(path) == 0, "unlink %s", path);
    }
    closedir(d);
    CHECKF(rmdir(dir) == 0, "rmdir %s", dir);
}

/* A random-weight model for the fixture's config loads into family (text_only: "llama"). */
static void test_synth(const char *fixture, const char *name, const char *family, bool vision,
                       bool text_only) {
    char tmp[] = "/tmp/evlm_synth_XXXXXX", cfg[4200], out[64];
    if (!mkdtemp(tmp)) {
        CHECKF(0, "mkdtemp");
        return;
    }
    snprintf(cfg, sizeof cfg, "%s/config.json", fixture);
    snprintf(out, sizeof out, "%s/model", tmp);
    evlm_synth_params p = evlm_synth_default_params();
    p.config = cfg;
    p.out_dir = out;
    p.dtype = "f16";
    p.text_only = text_only;
    int n = 0;
    size_t bytes = 0;
    evlm_status st = evlm_model_synth(&p, &n, &bytes);
    if (text_only && strcmp(family, "qwen2vl") == 0) { /* M-RoPE: refused */
        CHECKF(st == EVLM_ERR_UNSUPPORTED && strstr(evlm_last_error(), "text_only"),
               "%s text_only: %s", name, evlm_last_error());
        CHECKF(rmdir(tmp) == 0, "%s: a refused synth left files in %s", name, tmp);
        return;
    }
    CHECKF(st == EVLM_OK, "%s synth: %s", name, evlm_last_error());
    CHECK(n > 0 && bytes > 0);
    evlm_model *m = NULL;
    CHECKF(st == EVLM_OK && evlm_model_load(out, NULL, &m) == EVLM_OK, "%s synth load: %s", name,
           evlm_last_error());
    if (m) {
        const char *want = text_only ? "llama" : family;
        CHECKF(strcmp(m->family->name, want) == 0, "%s synth: family %s, expected %s", name,
               m->family->name, want);
        CHECK(m->has_vision == (vision && !text_only));
        evlm_model_free(m);
    }
    remove_dir(out);
    CHECKF(rmdir(tmp) == 0, "rmdir %s", tmp);
}

static void test_synth_errors(const char *fixture) {
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", fixture);
    evlm_synth_params p = evlm_synth_default_params();
    p.config = cfg;
    p.out_dir = "/nonexistent/evlm-synth-never-written";
    p.dtype = "q9";
    CHECK(evlm_model_synth(&p, NULL, NULL) == EVLM_ERR_ARG && strstr(evlm_last_error(), "dtype"));
    p.dtype = "bf16";
    p.out_dir = NULL;
    CHECK(evlm_model_synth(&p, NULL, NULL) == EVLM_ERR_ARG);
    /* an architecture no family serves: refused naming the file and the architecture */
    char tmp[] = "/tmp/evlm_synth_XXXXXX", gpt2[64];
    if (!mkdtemp(tmp)) {
        CHECKF(0, "mkdtemp");
        return;
    }
    snprintf(gpt2, sizeof gpt2, "%s/config.json", tmp);
    FILE *f = fopen(gpt2, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", "
              "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 1, "
              "\"num_attention_heads\": 2, \"vocab_size\": 300}",
              f);
        fclose(f);
    }
    p.config = gpt2;
    p.out_dir = tmp;
    CHECK(evlm_model_synth(&p, NULL, NULL) == EVLM_ERR_UNSUPPORTED &&
          strstr(evlm_last_error(), gpt2) && strstr(evlm_last_error(), "\"GPT2LMHeadModel\""));
    unlink(gpt2);
    CHECKF(rmdir(tmp) == 0, "a refused synth left files in %s", tmp);
}

static void test_fixture(const char *shared, const char *name, const char *family, bool vision) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fixtures/%s", shared, name);
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return;
    CHECKF(strcmp(m->family->name, family) == 0, "%s: family %s, expected %s", name,
           m->family->name, family);
    CHECK(m->has_vision == vision);
    walk w = {.m = m};
    evlm__model_matrices(m, count, &w);
    const int L = m->cfg.n_layers;
    for (int r = EVLM_ROLE_ATTN_Q; r <= EVLM_ROLE_MLP_DOWN; r++)
        CHECKF(w.per_role[r] == L, "%s: role %d listed %d times for %d layers", name, r,
               w.per_role[r], L);
    CHECK(w.per_role[EVLM_ROLE_EMBED] == 1 && w.per_role[EVLM_ROLE_HEAD] == 1);
    int n_vision = w.per_role[EVLM_ROLE_VISION_ATTN] + w.per_role[EVLM_ROLE_VISION_MLP];
    CHECKF(vision ? n_vision > 0 && w.per_role[EVLM_ROLE_CONNECTOR] > 0
                  : n_vision == 0 && w.per_role[EVLM_ROLE_CONNECTOR] == 0,
           "%s: %d vision and %d connector matrices", name, n_vision,
           w.per_role[EVLM_ROLE_CONNECTOR]);
    CHECKF(w.dup == 0 && w.foreign == 0 && w.bad_layer == 0,
           "%s: %d listed twice, %d not in the weight set, %d bad layers", name, w.dup, w.foreign,
           w.bad_layer);
    /* the public listing (evlm_compress.h) walks the same matrices in the same order */
    CHECKF(evlm_model_n_matrices(m) == w.n_seen, "%s: %d public matrices, %d walked", name,
           evlm_model_n_matrices(m), w.n_seen);
    for (int i = 0; i < w.n_seen && i < evlm_model_n_matrices(m); i++) {
        evlm_matrix_info mi;
        CHECK_OK(evlm_model_matrix(m, i, &mi));
        CHECKF(strcmp(mi.name, w.seen[i]->name) == 0 && mi.rows == w.seen[i]->ne[1] &&
                   mi.cols == w.seen[i]->ne[0] && mi.type < EVLM_TYPE_Q8_0_R16,
               "%s: matrix %d is %s %lldx%lld %s", name, i, mi.name, (long long)mi.rows,
               (long long)mi.cols, evlm_type_name(mi.type));
        CHECK(strcmp(evlm_matrix_role_name(mi.role), "?") != 0);
    }
    evlm_matrix_info mi;
    CHECK(evlm_model_matrix(m, w.n_seen, &mi) == EVLM_ERR_ARG &&
          strstr(evlm_last_error(), "matrix"));
    CHECK(evlm_model_matrix(m, -1, &mi) == EVLM_ERR_ARG);
    CHECK(strcmp(evlm_matrix_role_name(EVLM_ROLE_COUNT), "?") == 0);
    evlm_model_free(m);
    test_synth(dir, name, family, vision, false);
    test_synth(dir, name, family, vision, true);
}

int main(void) {
    test_registry();
    const char *shared = test_shared_dir();
    if (!shared) return test_done();
    test_fixture(shared, "llama-tiny", "llama", false);
    test_fixture(shared, "smolvlm-tiny", "idefics3", true);
    test_fixture(shared, "qwen2vl-tiny", "qwen2vl", true);
    char llama[4096];
    snprintf(llama, sizeof llama, "%s/fixtures/llama-tiny", shared);
    test_synth_errors(llama);
    return test_done();
}
