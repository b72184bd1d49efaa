/* softmax_ce.c — softmax cross-entropy over k classes with class-index labels.
 *
 * z is (n, k) logits, y (n) a class index in [0, k) stored as a float. Subtracting the row
 * maximum m keeps exp() in range:
 *   l_i = log sum_j exp(z_ij - m_i) - (z_{i,y_i} - m_i),
 *   dl_i/dz_ij = softmax(z_i)_j - [j = y_i],
 * loss = sum_i w_i l_i / sum_i w_i. It is not a sampled softmax (see sampled_softmax) and
 * takes no soft labels.
 */
#include "tessera.h"
#include "../layers/vecmath.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

/* A row's exp(z_ij - m_i) is kept between the sum and the gradient, so each logit costs one
 * exp (a full softmax over a large catalogue is exp-bound: vecmath.h's vectorised one), in a
 * buffer of the call's own (on the stack up to EX_STACK classes): eval() keeps nothing in the
 * loss's state, so a head may evaluate parts of its rows at once (TS_BRANCH_SAFE). */
#define EX_STACK 2048

/* dz (k) += g (ex (k) inv) */
TS_VEC static void grad_row(float *dz, const float *ex, float g, float inv, int k)
{
    for (int j = 0; j < k; j++) dz[j] += g * (ex[j] * inv);
}

/* Checks the labels, returns sum_i w_i l_i, and dz (n, k) += scale * d loss / d z. */
static int softmax_ce_kernel(int n, int k, const float *z, const float *y, const float *w,
                             float *dz, float scale, float *ex, double *sum_out, double *wsum_out,
                             ts_err *e)
{
    double wsum = 0, sum = 0;
    for (int i = 0; i < n; i++) {
        float c = y[i];
        if (!(c >= 0 && c < k) || c != floorf(c))
            return ts_fail(e, "softmax_ce: label %g of row %d is not a class index in [0, %d); "
                           "store classes as 0, 1, ..., k-1", c, i, k);
        wsum += w ? w[i] : 1.0;
    }
    *wsum_out = wsum;
    *sum_out = 0;
    if (wsum <= 0) return 0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (long)i * k;
        int c = (int)y[i];
        double wi = w ? w[i] : 1.0;
        float m = ts_vec_max(zi, k);
        ts_vec_exp_shift(zi, m, ex, k);
        double se = ts_vec_sum_d(ex, k);
        double lse = log(se);
        sum += wi * (lse - ((double)zi[c] - m));
        if (dz) {
            float g = (float)(scale * wi / wsum), inv = (float)(1.0 / se);
            float *dzi = dz + (long)i * k;
            grad_row(dzi, ex, g, inv, k);
            dzi[c] -= g;
        }
    }
    *sum_out = sum;
    return 0;
}

static int init(void **state, const ts_cfg *cfg, ts_err *e)
{
    (void)cfg; (void)e;
    *state = NULL;
    return 0;
}

static int eval(void *state, int n, int k, const float *z, const float *y, const float *w,
                double *loss, float *dz, float scale, ts_err *e)
{
    (void)state;
    if (k < 2) return ts_fail(e, "softmax_ce: needs at least 2 classes, got %d; use bce for one "
                              "logit", k);
    float stack[EX_STACK], *ex = k <= EX_STACK ? stack : malloc(sizeof(float) * (size_t)k);
    if (!ex) return ts_fail(e, "softmax_ce: out of memory for %d classes", k);
    double sum = 0, wsum = 0;
    int rc = softmax_ce_kernel(n, k, z, y, w, dz, scale, ex, &sum, &wsum, e);
    if (ex != stack) free(ex);
    if (rc) return -1;
    *loss = wsum > 0 ? sum / wsum : 0.0;
    return 0;
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

static const ts_loss_ops ops = {sizeof(ts_loss_ops), TS_LABEL_CLASS, init, eval, NULL,
                                 TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LOSS, "softmax_ce", "1.0",
    "softmax cross-entropy over k classes, class-index labels", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
