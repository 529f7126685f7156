/*
 * attn_walk.h - the walks of attn_tile and attn_rows (kernels.h), written once for every SIMD
 * table as an include-template: a per-ISA file (x86_avx2.c, x86_avx512.c, arm_neon.c) defines
 * the primitives below and includes this header once, which defines
 *     static void attn_tile_simd(...)  and  static void attn_rows_simd(...)
 * with the kernels.h signatures, compiled with that file's flags. A template rather than a walk
 * compiled once with function-pointer tiles (r16f_walk.c): the primitives (exp, lane masks, lane
 * FMAs) sit in the innermost loops, where only inlining keeps each table's code as it was.
 *
 * attn_tile: queries in lanes. A block of AT_BQ = AT_VL x AT_QV queries is transposed (and
 * scaled) into qt (head_dim x AT_BQ), so a key gives AT_BQ scores with broadcast FMAs, the online
 * softmax's max / sum / rescale are lane-wise ops, and o^T (head_dim x AT_BQ) += v[t][d] p[t]
 * needs no horizontal sums. Keys go in blocks of AT_BK from key 0, scores in tiles of AT_KR keys,
 * outputs in tiles of AT_DR head dims. A score is one FMA chain over d in order, an output element
 * one FMA chain over the keys in order, whatever tile computes it, so every lane (query) sees the
 * same operations whatever block or call it is in: a row does not depend on n_q or on how rows
 * are split. Causal calls (kv0 >= 0) stop at the block's last query's keys and hide, on diagonal
 * blocks, the keys past each query's own (score -inf, p exactly 0; a block a lane sees none of
 * rescales it by exactly 1), so a row is still the same bits in any split.
 *
 * attn_rows: attn_row's steps for each row, keys outer, so each key / value row is loaded once for
 * all rows: the packed visible scores of every row (the table's own dot product), the table's
 * own softmax over them, then out[i] += p v[t] with the element operations the table's attn_row
 * uses (AT_AXPY), which keeps each row bitwise that table's attn_row.
 *
 * Primitives (macros; v, a, b vectors of AT_VL floats, p a float pointer):
 *   AT_V, AT_VL, AT_QV          vector type, its lanes, vectors per query block
 *   AT_ZERO(), AT_SET1(f)       all lanes 0 / f
 *   AT_BCAST(p)                 all lanes *p
 *   AT_LOAD(p), AT_STORE(p, v)  unaligned
 *   AT_ADD, AT_SUB, AT_MUL, AT_MAX (a, b)
 *   AT_FMA(acc, v, b)           acc + v * b, fused (b a broadcast)
 *   AT_DG, AT_KG, AT_KLOAD(p), AT_KFMA(acc, v, g, L)
 *                               AT_DG consecutive floats p[0 .. AT_DG) loaded as one AT_KG g
 *                               (x86: AT_DG = 1, a broadcast; NEON: 4 in one register), and
 *                               acc + v * p[L] fused (L a constant < AT_DG; NEON: FMA by lane)
 *   AT_EXP(v)                   the table's vector e^v
 *   AT_EXP_P(s, mx)             p = e^(s - mx) of a score, exactly 0 for s = -inf
 *   AT_HIDE(v, lo)              v with lanes [0, lo) set to -inf (lo any int)
 *   AT_DOT(q, k, n)             the float dot product of the table's attn_row
 *   AT_SOFTMAX(s, nl, mx)       attn_row's softmax of the nl packed scores s (max mx) in place;
 *                               returns the factor AT_WEIGHT applies
 *   AT_WEIGHT(s, f)             a key's weight p from its softmax output s and that factor
 *   AT_AXPY(o, p, v, n)         o[0, n) += p v[0, n), each element as the table's attn_row
 *   AT_UNROLL_SOFTMAX           EVLM__UNROLL or nothing: whether the online softmax's loop over
 *                               query vectors (around a loop over keys) is unrolled (NEON: yes,
 *                               its corrections stay in registers; x86: no, as each had it)
 * The includer has included <math.h> and <string.h> (INFINITY, memset) and ref_impl.h.
 * Not here: attn_row itself (per ISA), the ref kernels (ref.c), threading.
 */

#define AT_BQ (AT_VL * AT_QV) /* queries per block */
#define AT_BK 64              /* keys per block */
#define AT_KR 4               /* keys per score tile */
#define AT_DR 4               /* head dims per output tile */

_Static_assert(AT_DG == 1 || AT_DG == 2 || AT_DG == 4, "AT_DG: 1, 2 or 4 dims per key load");
_Static_assert(AT_BQ <= 64, "evlm_attn_tile_scratch (kernels.h) holds blocks of 64 queries");

static void attn_tile_simd(float *out, size_t ldo, const float *q, size_t ldq, int n_q,
                           const float *k, const float *v, size_t ldkv, int n_kv, int hd,
                           float scale, int kv0, float *scratch) {
    float *qt = scratch, *ot = qt + (size_t)hd * AT_BQ, *pb = ot + (size_t)hd * AT_BQ;
    float *mrow = pb + (size_t)AT_BK * AT_BQ, *lrow = mrow + AT_BQ;
    const int hdg = hd & -AT_DG; /* dims in whole key loads */
    for (int i0 = 0; i0 < n_q; i0 += AT_BQ) {
        int nb = n_q - i0 < AT_BQ ? n_q - i0 : AT_BQ;
        for (int d = 0; d < hd; d++)
            for (int i = 0; i < AT_BQ; i++)
                qt[(size_t)d * AT_BQ + i] = i < nb ? q[(size_t)(i0 + i) * ldq + d] * scale : 0.0f;
        memset(ot, 0, sizeof(float) * (size_t)hd * AT_BQ);
        for (int i = 0; i < AT_BQ; i++) mrow[i] = -INFINITY, lrow[i] = 0.0f;
        /* causal: the block's last query sees keys up to kv0 + i0 + nb - 1 */
        const int kv_end = kv0 >= 0 && kv0 + i0 + nb < n_kv ? kv0 + i0 + nb : n_kv;
        for (int t0 = 0; t0 < kv_end; t0 += AT_BK) {
            int bk = kv_end - t0 < AT_BK ? kv_end - t0 : AT_BK;
            const float *kb = k + (size_t)t0 * ldkv, *vb = v + (size_t)t0 * ldkv;
            AT_V bm[AT_QV];
            EVLM__UNROLL for (int c = 0; c < AT_QV; c++) bm[c] = AT_SET1(-INFINITY);
            /* scores s[t][i] = qt[.][i] . k[t], AT_KR keys at a time */
            int t = 0;
            for (; t + AT_KR <= bk; t += AT_KR) {
                AT_V s0[AT_QV], s1[AT_QV], s2[AT_QV], s3[AT_QV];
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) s0[c] = s1[c] = s2[c] = s3[c] =
                    AT_ZERO();
                const float *k0 = kb + (size_t)t * ldkv;
                int d = 0;
                /* AT_DG dims of each key per load, used lane by lane: one FMA per d in order */
                for (; d < hdg; d += AT_DG) {
                    AT_KG b0 = AT_KLOAD(k0 + d), b1 = AT_KLOAD(k0 + ldkv + d);
                    AT_KG b2 = AT_KLOAD(k0 + 2 * ldkv + d), b3 = AT_KLOAD(k0 + 3 * ldkv + d);
                    const float *qd = qt + (size_t)d * AT_BQ;
#define AT_S_LANE(L)                                                                               \
    if ((L) < AT_DG) EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {                                \
            AT_V qv = AT_LOAD(qd + (L)*AT_BQ + AT_VL * c);                                         \
            s0[c] = AT_KFMA(s0[c], qv, b0, L);                                                     \
            s1[c] = AT_KFMA(s1[c], qv, b1, L);                                                     \
            s2[c] = AT_KFMA(s2[c], qv, b2, L);                                                     \
            s3[c] = AT_KFMA(s3[c], qv, b3, L);                                                     \
        }
                    AT_S_LANE(0)
                    AT_S_LANE(1)
                    AT_S_LANE(2)
                    AT_S_LANE(3)
#undef AT_S_LANE
                }
                for (; AT_DG > 1 && d < hd; d++) { /* the last hd % AT_DG dims */
                    AT_V b0 = AT_BCAST(k0 + d), b1 = AT_BCAST(k0 + ldkv + d);
                    AT_V b2 = AT_BCAST(k0 + 2 * ldkv + d), b3 = AT_BCAST(k0 + 3 * ldkv + d);
                    EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {
                        AT_V qv = AT_LOAD(qt + (size_t)d * AT_BQ + AT_VL * c);
                        s0[c] = AT_FMA(s0[c], qv, b0);
                        s1[c] = AT_FMA(s1[c], qv, b1);
                        s2[c] = AT_FMA(s2[c], qv, b2);
                        s3[c] = AT_FMA(s3[c], qv, b3);
                    }
                }
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {
                    AT_STORE(pb + (size_t)t * AT_BQ + AT_VL * c, s0[c]);
                    AT_STORE(pb + (size_t)(t + 1) * AT_BQ + AT_VL * c, s1[c]);
                    AT_STORE(pb + (size_t)(t + 2) * AT_BQ + AT_VL * c, s2[c]);
                    AT_STORE(pb + (size_t)(t + 3) * AT_BQ + AT_VL * c, s3[c]);
                    bm[c] = AT_MAX(bm[c], AT_MAX(AT_MAX(s0[c], s1[c]), AT_MAX(s2[c], s3[c])));
                }
            }
            for (; t < bk; t++) {
                AT_V s0[AT_QV];
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) s0[c] = AT_ZERO();
                const float *k0 = kb + (size_t)t * ldkv;
                for (int d = 0; d < hd; d++) {
                    AT_V b0 = AT_BCAST(k0 + d);
                    EVLM__UNROLL for (int c = 0; c < AT_QV; c++) s0[c] =
                        AT_FMA(s0[c], AT_LOAD(qt + (size_t)d * AT_BQ + AT_VL * c), b0);
                }
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {
                    AT_STORE(pb + (size_t)t * AT_BQ + AT_VL * c, s0[c]);
                    bm[c] = AT_MAX(bm[c], s0[c]);
                }
            }
            /* causal diagonal: hide the keys past a query's own */
            if (kv0 >= 0 && t0 + bk - 1 > kv0 + i0) {
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) bm[c] = AT_SET1(-INFINITY);
                for (int u = 0; u < bk; u++) {
                    int first = t0 + u - kv0 - i0; /* lanes below it do not see key t0 + u */
                    EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {
                        float *pr = pb + (size_t)u * AT_BQ + AT_VL * c;
                        AT_V sv = AT_HIDE(AT_LOAD(pr), first - AT_VL * c);
                        AT_STORE(pr, sv);
                        bm[c] = AT_MAX(bm[c], sv);
                    }
                }
            }
            /* online softmax: new max, rescale factor, p = e^(s - max) (exactly 0 for hidden
             * keys), running sum */
            AT_V corr[AT_QV];
            AT_UNROLL_SOFTMAX for (int c = 0; c < AT_QV; c++) {
                AT_V mold = AT_LOAD(mrow + AT_VL * c);
                AT_V mx = AT_MAX(mold, bm[c]);
                corr[c] = AT_EXP(AT_SUB(mold, mx));
                AT_STORE(mrow + AT_VL * c, mx);
                AT_V l = AT_MUL(AT_LOAD(lrow + AT_VL * c), corr[c]);
                for (int u = 0; u < bk; u++) {
                    float *pr = pb + (size_t)u * AT_BQ + AT_VL * c;
                    AT_V p = AT_EXP_P(AT_LOAD(pr), mx);
                    AT_STORE(pr, p);
                    l = AT_ADD(l, p);
                }
                AT_STORE(lrow + AT_VL * c, l);
            }
            /* o^T[d] = o^T[d] * corr + sum_t v[t][d] p[t], AT_DR dims at a time */
            int d = 0;
            for (; d + AT_DR <= hd; d += AT_DR) {
                AT_V o0[AT_QV], o1[AT_QV], o2[AT_QV], o3[AT_QV];
                float *od = ot + (size_t)d * AT_BQ;
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {
                    o0[c] = AT_MUL(AT_LOAD(od + AT_VL * c), corr[c]);
                    o1[c] = AT_MUL(AT_LOAD(od + AT_BQ + AT_VL * c), corr[c]);
                    o2[c] = AT_MUL(AT_LOAD(od + 2 * AT_BQ + AT_VL * c), corr[c]);
                    o3[c] = AT_MUL(AT_LOAD(od + 3 * AT_BQ + AT_VL * c), corr[c]);
                }
                for (int u = 0; u < bk; u++) {
                    const float *vr = vb + (size_t)u * ldkv + d; /* v[u][d .. d + 3] */
                    AT_KG g[AT_DR / AT_DG];
                    EVLM__UNROLL for (int j = 0; j < AT_DR / AT_DG; j++) g[j] =
                        AT_KLOAD(vr + AT_DG * j);
                    EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {
                        AT_V p = AT_LOAD(pb + (size_t)u * AT_BQ + AT_VL * c);
                        o0[c] = AT_KFMA(o0[c], p, g[0 / AT_DG], 0 % AT_DG);
                        o1[c] = AT_KFMA(o1[c], p, g[1 / AT_DG], 1 % AT_DG);
                        o2[c] = AT_KFMA(o2[c], p, g[2 / AT_DG], 2 % AT_DG);
                        o3[c] = AT_KFMA(o3[c], p, g[3 / AT_DG], 3 % AT_DG);
                    }
                }
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) {
                    AT_STORE(od + AT_VL * c, o0[c]);
                    AT_STORE(od + AT_BQ + AT_VL * c, o1[c]);
                    AT_STORE(od + 2 * AT_BQ + AT_VL * c, o2[c]);
                    AT_STORE(od + 3 * AT_BQ + AT_VL * c, o3[c]);
                }
            }
            for (; d < hd; d++) {
                AT_V o0[AT_QV];
                float *od = ot + (size_t)d * AT_BQ;
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) o0[c] =
                    AT_MUL(AT_LOAD(od + AT_VL * c), corr[c]);
                for (int u = 0; u < bk; u++) {
                    AT_V b0 = AT_BCAST(vb + (size_t)u * ldkv + d);
                    EVLM__UNROLL for (int c = 0; c < AT_QV; c++) o0[c] =
                        AT_FMA(o0[c], AT_LOAD(pb + (size_t)u * AT_BQ + AT_VL * c), b0);
                }
                EVLM__UNROLL for (int c = 0; c < AT_QV; c++) AT_STORE(od + AT_VL * c, o0[c]);
            }
        }
        for (int i = 0; i < nb; i++) {
            float inv = 1.0f / lrow[i];
            float *orow = out + (size_t)(i0 + i) * ldo;
            for (int d = 0; d < hd; d++) orow[d] = ot[(size_t)d * AT_BQ + i] * inv;
        }
    }
}

static void attn_rows_simd(float *const *out, const float *const *q, int n_q, const float *k,
                           const float *v, size_t ld, const int *n_kv, int n_pre,
                           const uint8_t *const *mask, int head_dim, float scale, float *scores) {
    int nmax = 0, nl[EVLM_ATTN_ROWS] = {0}, jj[EVLM_ATTN_ROWS] = {0};
    float mx[EVLM_ATTN_ROWS], f[EVLM_ATTN_ROWS];
    for (int i = 0; i < n_q; i++) {
        nmax = n_kv[i] > nmax ? n_kv[i] : nmax;
        mx[i] = -INFINITY;
    }
    for (int t = 0; t < nmax; t++) {
        const float *kr = k + (size_t)t * ld;
        for (int i = 0; i < n_q; i++) {
            if (!evlm_attn_rows_sees(n_kv, n_pre, mask, i, t)) continue;
            float s = AT_DOT(q[i], kr, head_dim) * scale;
            scores[(size_t)i * nmax + nl[i]++] = s;
            if (s > mx[i]) mx[i] = s;
        }
    }
    for (int i = 0; i < n_q; i++) {
        f[i] = AT_SOFTMAX(scores + (size_t)i * nmax, nl[i], mx[i]);
        for (int c = 0; c < head_dim; c++) out[i][c] = 0.0f;
    }
    for (int t = 0; t < nmax; t++) {
        const float *vr = v + (size_t)t * ld;
        for (int i = 0; i < n_q; i++) {
            if (!evlm_attn_rows_sees(n_kv, n_pre, mask, i, t)) continue;
            AT_AXPY(out[i], AT_WEIGHT(scores[(size_t)i * nmax + jj[i]++], f[i]), vr, head_dim);
        }
    }
}
