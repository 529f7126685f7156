/*
 * test_family.c - the family seam (src/model/family.h): the registry is consistent (names,
 * unique architectures that map back to their family, hooks that come together), an unknown
 * architecture is refused naming it, and on each fixture (../shared/fixtures: llama-tiny,
 * smolvlm-tiny, qwen2vl-tiny) the right family loads and the matrix walk lists every bound
 * matrix once with its role: seven per decoder layer, embedding and head, and the vision tower /
 * connector matrices of the VLM families, each a tensor of the weight set.
 */
#include "test.h"
#include "model/model_impl.h"

#include <string.h>

static void test_registry(void) {
    int n = 0;
    const evlm_family *const *f = evlm__families(&n);
    CHECK(n >= 3);
    for (int i = 0; i < n; i++) {
        CHECK(f[i]->name && f[i]->name[0]);
        CHECK(f[i]->architectures && f[i]->architectures[0]);
        for (int j = 0; j < i; j++) CHECKF(strcmp(f[i]->name, f[j]->name) != 0, "family %s twice", f[i]->name);
        for (const char *const *a = f[i]->architectures; *a; a++)
            CHECKF(evlm__family_find(*a) == f[i], "architecture %s maps to another family", *a);
        /* a family with parts of its own loads, frees and lists them; a text-only one has none */
        bool any = f[i]->load || f[i]->free || f[i]->matrices;
        CHECKF(!any || (f[i]->load && f[i]->free && f[i]->matrices), "family %s: partial hooks", f[i]->name);
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
    bool tied = role == EVLM_ROLE_HEAD && t == w->m->llama.tok_embd;
    for (int i = 0; i < w->n_seen && !tied; i++) w->dup += w->seen[i] == t;
    if (w->n_seen < 4096) w->seen[w->n_seen++] = t;
}

static void test_fixture(const char *shared, const char *name, const char *family, bool vision) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fixtures/%s", shared, name);
    evlm_model *m = NULL;
    CHECK_OK(evlm_model_load(dir, NULL, &m));
    if (!m) return;
    CHECKF(strcmp(m->family->name, family) == 0, "%s: family %s, expected %s", name, m->family->name, family);
    CHECK(m->has_vision == vision);
    walk w = {.m = m};
    evlm__model_matrices(m, count, &w);
    const int L = m->cfg.n_layers;
    for (int r = EVLM_ROLE_ATTN_Q; r <= EVLM_ROLE_MLP_DOWN; r++)
        CHECKF(w.per_role[r] == L, "%s: role %d listed %d times for %d layers", name, r, w.per_role[r], L);
    CHECK(w.per_role[EVLM_ROLE_EMBED] == 1 && w.per_role[EVLM_ROLE_HEAD] == 1);
    int n_vision = w.per_role[EVLM_ROLE_VISION_ATTN] + w.per_role[EVLM_ROLE_VISION_MLP];
    CHECKF(vision ? n_vision > 0 && w.per_role[EVLM_ROLE_CONNECTOR] > 0
                  : n_vision == 0 && w.per_role[EVLM_ROLE_CONNECTOR] == 0,
           "%s: %d vision and %d connector matrices", name, n_vision, w.per_role[EVLM_ROLE_CONNECTOR]);
    CHECKF(w.dup == 0 && w.foreign == 0 && w.bad_layer == 0, "%s: %d listed twice, %d not in the weight set, %d bad layers",
           name, w.dup, w.foreign, w.bad_layer);
    evlm_model_free(m);
}

int main(void) {
    test_registry();
    const char *shared = test_shared_dir();
    if (!shared) return test_done();
    test_fixture(shared, "llama-tiny", "llama", false);
    test_fixture(shared, "smolvlm-tiny", "idefics3", true);
    test_fixture(shared, "qwen2vl-tiny", "qwen2vl", true);
    return test_done();
}
