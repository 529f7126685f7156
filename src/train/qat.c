/*
 * qat.c - Q4_0 fake quantization (qat.h): ggml's reference quantizer and dequantizer
 * (quant/quants.h) one block of 32 at a time, rows split over the pool.
 * Not here: the straight-through gradient (the caller's dW goes to the float matrix).
 */
#include "train/qat.h"

#include "quant/quants.h"

bool evlm_tqat_applies(int cols) {
    return cols > 0 && cols % EVLM_QK == 0;
}

typedef struct {
    float *dst;
    const float *w;
    int rows, cols;
} fq_task;

static void fq_fn(void *arg, int ith, int nth) {
    const fq_task *t = arg;
    int r0, r1;
    evlm_split_rows(t->rows, ith, nth, &r0, &r1);
    for (int r = r0; r < r1; r++) {
        const float *x = t->w + (size_t)r * t->cols;
        float *y = t->dst + (size_t)r * t->cols;
        for (int b = 0; b < t->cols; b += EVLM_QK) {
            evlm_block_q4_0 q;
            evlm_quantize_row_q4_0(x + b, &q, EVLM_QK);
            evlm_dequantize_row_q4_0(&q, y + b, EVLM_QK);
        }
    }
}

void evlm_tqat_fake_quant(const evlm_tops *o, float *dst, const float *w, int rows, int cols) {
    fq_task t = {dst, w, rows, cols};
    if (o && o->pool)
        evlm_pool_run(o->pool, fq_fn, &t);
    else
        fq_fn(&t, 0, 1);
}
