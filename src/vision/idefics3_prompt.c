/* idefics3_prompt.c - Idefics3Processor prompt expansion (see idefics3_prompt.h). */
#include "vision/idefics3_prompt.h"
#include "core/status.h"

#include <string.h>

static const char k_image[] = "<image>";
static const char k_fake[] = "<fake_token_around_image>";
static const char k_global[] = "<global-img>";

int evlm_idefics3_count_images(const char *text) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, k_image)); p += sizeof k_image - 1) n++;
    return n;
}

static evlm_status repeat_image(evlm_str *out, int n) {
    for (int i = 0; i < n; i++) EVLM_TRY(evlm_str_append(out, k_image, sizeof k_image - 1));
    return EVLM_OK;
}

static evlm_status expand_one(const evlm_image_grid *g, int seq, evlm_str *out) {
    if (g->rows > 0 && g->cols > 0) {
        for (int r = 0; r < g->rows; r++) {
            for (int c = 0; c < g->cols; c++) {
                EVLM_TRY(evlm_str_appendf(out, "%s<row_%d_col_%d>", k_fake, r + 1, c + 1));
                EVLM_TRY(repeat_image(out, seq));
            }
            EVLM_TRY(evlm_str_append(out, "\n", 1));
        }
        EVLM_TRY(evlm_str_append(out, "\n", 1));
    }
    EVLM_TRY(evlm_str_appendz(out, k_fake));
    EVLM_TRY(evlm_str_appendz(out, k_global));
    EVLM_TRY(repeat_image(out, seq));
    return evlm_str_appendz(out, k_fake);
}

evlm_status evlm_idefics3_expand(const char *text, const evlm_image_grid *grids, int n_images,
                                 int image_seq_len, evlm_str *out) {
    int found = evlm_idefics3_count_images(text);
    if (found != n_images)
        return evlm__fail(EVLM_ERR_ARG, "the prompt has %d <image> marker%s but %d image%s given",
                          found, found == 1 ? "" : "s", n_images,
                          n_images == 1 ? " was" : "s were");
    if (image_seq_len < 1 || image_seq_len > 100000)
        return evlm__fail(EVLM_ERR_ARG, "bad image_seq_len %d", image_seq_len);
    const char *p = text;
    for (int i = 0; i < n_images; i++) {
        const char *hit = strstr(p, k_image);
        EVLM_TRY(evlm_str_append(out, p, (size_t)(hit - p)));
        if (grids[i].rows < 0 || grids[i].cols < 0 || grids[i].rows > 64 || grids[i].cols > 64)
            return evlm__fail(EVLM_ERR_ARG, "bad tile grid %dx%d", grids[i].rows, grids[i].cols);
        EVLM_TRY(expand_one(&grids[i], image_seq_len, out));
        p = hit + sizeof k_image - 1;
    }
    return evlm_str_appendz(out, p);
}
