/*
 * greedy_head.h - the greedy token of a float output head without the whole float product.
 *
 * Greedy decoding (and lookahead verification) needs only the argmax of each logits row. In a
 * small decoder with a large vocabulary the head is most of a decode pass (the scene VLM's
 * 49280 x 256 head outweighs its whole decoder), and with several rows per pass its
 * multiply-adds dominate too. At load a float head (F32 / F16 / BF16 in the R16 layout) gets an
 * int8 copy (Q8_0_R16) and, per row, ||w - w~|| and ||w~|| (w~ the int8 row's values). A pass:
 *
 *   1. approximate logits a = x~ . w~ with the int8 kernels (x~: x's int8 activation blocks):
 *      half the bytes of bf16, 4x the multiply-adds per instruction;
 *   2. a rigorous bound B >= |exact - a|, where exact is the float chain the full head computes
 *      (R16: one fma per column, ref's bits on every table):
 *        |exact - x.w|    <= gamma |w| |x|              (rounding of the fma chain)
 *        |x.w - x~.w~|    <= |w - w~| |x| + |w~| |x - x~|   (Cauchy-Schwarz)
 *        |x~.w~ - a|      <= gamma |w~| |x~|             (the int8 kernel's float steps)
 *      with gamma = gamma_(k + 16) (k + 16 roundings: more than either chain has);
 *   3. candidates: the 16-row groups whose largest a reaches max(a) - 2B (B with the largest
 *      row norms); the true argmax always lies in one (its a is >= exact - B >= max(a) - 2B), and
 *      every row outside them is strictly below it;
 *   4. the exact float chain for the candidate groups (the head's own kernel) and the argmax of
 *      those values, lowest id on ties.
 *
 * So the id is bitwise the argmax of the full head's logits (evlm__argmax), at about the cost of
 * an int8 head. Rows with non-finite values, or bounds that could overflow, and passes with too
 * many candidates take the full head instead. Not here: sampling (that needs every logit).
 */
#ifndef EVLM_MODEL_GREEDY_HEAD_H
#define EVLM_MODEL_GREEDY_HEAD_H

#include "core/tensor.h"
#include "core/threadpool.h"
#include "kernels/matmul.h"

#include <stdint.h>

#define EVLM_GREEDY_ROWS 16 /* rows per evlm_greedy_argmax call */

typedef struct evlm_greedy_head {
    const evlm_tensor *w;     /* the float R16 head */
    evlm_tensor q;            /* its Q8_0_R16 copy (q.data owned) */
    double err_max, norm_max; /* largest ||w - w~|| and ||w~|| over the rows (rounded up) */
} evlm_greedy_head;

/* Builds the int8 copy of w. EVLM_ERR_ARG (nothing built) if w is not a float R16 matrix with k a
 * multiple of 32 and finite values. */
evlm_status evlm_greedy_head_init(evlm_greedy_head *h, const evlm_tensor *w, evlm_pool *pool);
void evlm_greedy_head_release(evlm_greedy_head *h);
/* Bytes of the int8 copy. */
size_t evlm_greedy_head_bytes(const evlm_greedy_head *h);

/* What a call needs for a head of n rows and k columns, planned once per state. */
typedef struct evlm_greedy_work {
    float *y;        /* [EVLM_GREEDY_ROWS][n]: approximate logits, then exact ones */
    float *pmax;     /* [EVLM_GREEDY_ROWS][pieces]: largest approximate logit of each work piece */
    evlm_q8a *xq;    /* [EVLM_GREEDY_ROWS][k / 32] */
    int32_t *groups; /* candidate groups of a call */
    int64_t n_groups,
        n_full; /* so far: candidate groups evaluated exactly, rows given the full head */
} evlm_greedy_work;

evlm_status evlm_greedy_work_init(evlm_greedy_work *wk, int n, int k);
void evlm_greedy_work_release(evlm_greedy_work *wk);

/* top[i] = argmax of row i of x @ w^T as evlm_matmul computes it (lowest id on ties, NaN
 * skipped), for m <= EVLM_GREEDY_ROWS rows of w->ne[0] floats, ldx apart. h NULL: the full head
 * (any type), then the argmax. */
void evlm_greedy_argmax(const evlm_greedy_head *h, const evlm_tensor *w, const evlm_matmul_env *env,
                        evlm_greedy_work *wk, const float *x, size_t ldx, int m, int32_t *top);

#endif
