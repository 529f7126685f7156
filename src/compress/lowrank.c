/*
 * lowrank.c - the factorization of one matrix (lowrank.h): the transform (identity, ASVD's
 * channel scales, the Cholesky factor of the input covariance), the SVD of W T, the components'
 * input-side vectors z_i = T^-T v_i and their output energies.
 * Not here: choosing ranks, the model, files (lowrank_model.c; quantize.c for compensation).
 */
#include "compress/lowrank.h"
#include "core/status.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void evlm__lr_free(evlm__lr *d) {
    free(d->sigma);
    free(d->u);
    free(d->z);
    free(d->e);
    memset(d, 0, sizeof *d);
}

/* l (k x k row-major, lower triangle) = chol(xtx / n_rows + lambda I); lambda = damp * mean diag,
 * raised tenfold while the factorization fails. */
static evlm_status cholesky(const double *xtx, int64_t n_rows, int64_t k, double damp, double *l) {
    double mean = 0;
    for (int64_t i = 0; i < k; i++) mean += xtx[i * k + i];
    mean = mean / (double)k / (double)(n_rows > 0 ? n_rows : 1);
    if (!(mean > 0)) mean = 1;
    for (double d = damp; d <= 1.0; d = d > 0 ? d * 10 : 1e-8) {
        for (int64_t i = 0; i < k * k; i++) l[i] = xtx[i] / (double)(n_rows > 0 ? n_rows : 1);
        for (int64_t i = 0; i < k; i++) l[i * k + i] += d * mean;
        /* row-major lower = column-major upper */
        lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)k, l, (lapack_int)k);
        if (info == 0) {
            for (int64_t i = 0; i < k; i++)
                for (int64_t j = i + 1; j < k; j++) l[i * k + j] = 0;
            return EVLM_OK;
        }
        if (info < 0) return evlm__fail(EVLM_ERR_ARG, "lowrank: LAPACK dpotrf argument %d", -info);
    }
    return evlm__fail(EVLM_ERR_UNSUPPORTED,
                      "lowrank: the input covariance is not positive definite");
}

evlm_status evlm__lr_decompose(evlm__lr_mode mode, const float *w, int64_t n, int64_t k,
                               const double *xtx, int64_t n_rows, const float *abs_mean,
                               double alpha, double damp, evlm__lr *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || k < 1 || n > (1 << 20) || k > (1 << 20))
        return evlm__fail(EVLM_ERR_ARG, "lowrank: a %lld x %lld matrix", (long long)n,
                          (long long)k);
    if (mode == EVLM_LR_WHITEN && !xtx)
        return evlm__fail(EVLM_ERR_ARG, "lowrank: whitening needs the input covariance");
    const int64_t kmax = n < k ? n : k;
    out->n = n;
    out->k = k;
    out->kmax = kmax;
    double *m = malloc(sizeof(double) * (size_t)(n * k)), *l = NULL, *s = NULL;
    double *vt = malloc(sizeof(double) * (size_t)(kmax * k));
    out->sigma = malloc(sizeof(double) * (size_t)kmax);
    out->u = malloc(sizeof(double) * (size_t)(n * kmax));
    out->z = vt;
    out->e = malloc(sizeof(double) * (size_t)kmax);
    evlm_status st = EVLM_OK;
    if (!m || !vt || !out->sigma || !out->u || !out->e) {
        st = evlm__fail(EVLM_ERR_NOMEM, "lowrank: out of memory for a %lld x %lld matrix",
                        (long long)n, (long long)k);
        goto done;
    }
    /* M = W T */
    if (mode == EVLM_LR_WHITEN) {
        l = malloc(sizeof(double) * (size_t)(k * k));
        if (!l) {
            st = evlm__fail(EVLM_ERR_NOMEM, "lowrank: out of memory");
            goto done;
        }
        if ((st = cholesky(xtx, n_rows, k, damp, l)) != EVLM_OK) goto done;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++) {
                double acc = 0; /* (W L)_ij = sum_{t >= j} w_it l_tj */
                for (int64_t t = j; t < k; t++) acc += (double)w[i * k + t] * l[t * k + j];
                m[i * k + j] = acc;
            }
    } else {
        s = malloc(sizeof(double) * (size_t)k);
        if (!s) {
            st = evlm__fail(EVLM_ERR_NOMEM, "lowrank: out of memory");
            goto done;
        }
        double mx = 0;
        for (int64_t j = 0; j < k; j++) {
            s[j] = mode == EVLM_LR_ASVD && abs_mean ? pow((double)abs_mean[j], alpha) : 1.0;
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int64_t j = 0; j < k; j++) /* a dead channel keeps a small scale, not 0 */
            if (!(s[j] > 1e-6 * mx)) s[j] = mx > 0 ? 1e-6 * mx : 1.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < k; j++) m[i * k + j] = (double)w[i * k + j] * s[j];
    }
    lapack_int info =
        LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)n, (lapack_int)k, m, (lapack_int)k,
                       out->sigma, out->u, (lapack_int)kmax, vt, (lapack_int)k);
    if (info != 0) {
        st = evlm__fail(EVLM_ERR_UNSUPPORTED, "lowrank: the SVD did not converge (dgesdd %d)",
                        (int)info);
        goto done;
    }
    /* z_i = T^-T v_i in place of v_i: rows of vt are v_i^T; T^-T v = solve L^T z = v */
    if (l) { /* vt row-major [kmax][k] is column-major k x kmax (the v_i as columns); the
                row-major lower l is the column-major upper L^T */
        lapack_int ti = LAPACKE_dtrtrs(LAPACK_COL_MAJOR, 'U', 'N', 'N', (lapack_int)k,
                                       (lapack_int)kmax, l, (lapack_int)k, vt, (lapack_int)k);
        if (ti != 0) {
            st = evlm__fail(EVLM_ERR_UNSUPPORTED, "lowrank: singular Cholesky factor (dtrtrs %d)",
                            (int)ti);
            goto done;
        }
    } else {
        for (int64_t i = 0; i < kmax; i++)
            for (int64_t j = 0; j < k; j++) vt[i * k + j] /= s[j];
    }
    /* energies: e_i = sigma_i^2 z_i^T C z_i (C = xtx / n_rows, or I) */
    out->total = 0;
    for (int64_t i = 0; i < kmax; i++) {
        const double *z = vt + i * k;
        double q = 0;
        if (xtx) {
            for (int64_t a = 0; a < k; a++) {
                double acc = 0;
                for (int64_t b = 0; b < k; b++) acc += xtx[a * k + b] * z[b];
                q += z[a] * acc;
            }
            q /= (double)(n_rows > 0 ? n_rows : 1);
        } else {
            for (int64_t a = 0; a < k; a++) q += z[a] * z[a];
        }
        out->e[i] = out->sigma[i] * out->sigma[i] * q;
        out->total += out->e[i];
    }
done:
    free(m);
    free(l);
    free(s);
    if (st != EVLM_OK) evlm__lr_free(out);
    return st;
}

void evlm__lr_factors(const evlm__lr *d, int64_t r, float *a, float *b) {
    for (int64_t i = 0; i < r; i++) {
        double sq = sqrt(d->sigma[i]);
        for (int64_t j = 0; j < d->k; j++) a[i * d->k + j] = (float)(sq * d->z[i * d->k + j]);
    }
    for (int64_t o = 0; o < d->n; o++)
        for (int64_t i = 0; i < r; i++)
            b[o * r + i] = (float)(d->u[o * d->kmax + i] * sqrt(d->sigma[i]));
}

double evlm__lr_tail(const evlm__lr *d, int64_t r) {
    double t = 0;
    for (int64_t i = d->kmax - 1; i >= r; i--) t += d->e[i];
    return t;
}
