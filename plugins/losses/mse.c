/* mse.c — mean squared error, the loss of a regression head.
 *
 * z and y are (n, k): l_i = (1/k) sum_j (z_ij - y_ij)^2, loss = sum_i w_i l_i / sum_i w_i
 * (with unit weights: the mean over all n*k cells), dl/dz_ij = 2 (z_ij - y_ij) w_i / (k sum w).
 * It is not a robust loss (no Huber) and does not normalise the targets.
 */
#include "tessera.h"

#include <stddef.h>

/* Returns sum_i w_i l_i; wsum = sum_i w_i; dz (n, k) += scale * d loss / d z. */
static double mse_kernel(int n, int k, const float *z, const float *y, const float *w,
                         float *dz, float scale, double *wsum_out)
{
    double wsum = 0, sum = 0;
    for (int i = 0; i < n; i++) wsum += w ? w[i] : 1.0;
    *wsum_out = wsum;
    if (wsum <= 0) return 0;
    for (int i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0, li = 0;
        if (wi == 0) continue;                 /* a masked row: its label may be anything */
        double c = 2.0 * scale * wi / (wsum * k);
        for (int j = 0; j < k; j++) {
            long c_ij = (long)i * k + j;
            double r = (double)z[c_ij] - y[c_ij];
            li += r * r;
            if (dz) dz[c_ij] += (float)(c * r);
        }
        sum += wi * li / k;
    }
    return sum;
}

static int init(void **state, const ts_cfg *cfg, ts_err *e)
{
    (void)cfg;
    (void)e;
    *state = NULL;
    return 0;
}

static int eval(void *state, int n, int k, const float *z, const float *y, const float *w,
                double *loss, float *dz, float scale, ts_err *e)
{
    (void)state;
    if (k < 1) return ts_fail(e, "mse: predictions need at least one column, got %d", k);
    double wsum, sum = mse_kernel(n, k, z, y, w, dz, scale, &wsum);
    *loss = wsum > 0 ? sum / wsum : 0.0;
    return 0;
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

/* no state: TS_BRANCH_SAFE */
static const ts_loss_ops ops = {sizeof(ts_loss_ops), TS_LABEL_REAL, init, eval, NULL, TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LOSS, "mse", "1.0",
    "mean squared error", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
