/* bce.c — binary cross-entropy on logits, the loss of a binary head.
 *
 * For a logit z and a label y in [0, 1] (usually 0 or 1), with pos_weight p weighting the
 * positive term (p > 1 favours recall of a rare positive class):
 *   l(z, y) = p y softplus(-z) + (1 - y) softplus(z)
 *           = -[p y log s(z) + (1 - y) log(1 - s(z))],   s = sigmoid,
 *   dl/dz   = p y (s(z) - 1) + (1 - y) s(z),
 * with softplus(x) = max(x, 0) + log1p(exp(-|x|)), which never overflows (the log-sum-exp form).
 * z is (n, k): each column is an independent binary label, l_i is the mean over the k columns,
 * and loss = sum_i w_i l_i / sum_i w_i. It is not a loss on probabilities and not multi-class
 * (see softmax_ce).
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct bce_state {
    float pos_weight;          /* weight of the positive term */
} bce_state;

static inline double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

/* Returns sum_i w_i l_i and sum_i w_i; dz (n, k) += scale * w_i / wsum * dl_i/dz when wanted. */
static double bce_kernel(int n, int k, const float *z, const float *y, const float *w,
                         float pw, float *dz, float scale, double *wsum_out)
{
    double wsum = 0, sum = 0;
    for (int i = 0; i < n; i++) wsum += w ? w[i] : 1.0;
    *wsum_out = wsum;
    if (wsum <= 0) return 0;
    for (int i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0, li = 0;
        if (wi == 0) continue;                 /* a masked row: its label may be anything */
        double c = scale * wi / (wsum * k);           /* d loss / d l_ij */
        for (int j = 0; j < k; j++) {
            double zz = z[(long)i * k + j], yy = y[(long)i * k + j];
            li += pw * yy * softplus(-zz) + (1 - yy) * softplus(zz);
            if (dz) {
                double s = 1.0 / (1.0 + exp(-zz));
                dz[(long)i * k + j] += (float)(c * (pw * yy * (s - 1) + (1 - yy) * s));
            }
        }
        sum += wi * li / k;
    }
    return sum;
}

static int init(void **state, const ts_cfg *cfg, ts_err *e)
{
    double pw = 1.0;
    if (cfg && ts_cfg_str(cfg, "pos_weight") && ts_cfg_float(cfg, "pos_weight", &pw, e))
        return -1;
    if (!(pw > 0) || !isfinite(pw))
        return ts_fail(e, "%s: pos_weight = %g must be a positive number (1 = unweighted)",
                       cfg ? ts_cfg_where(cfg, "pos_weight") : "bce", pw);
    bce_state *s = malloc(sizeof *s);
    if (!s) return ts_fail(e, "bce: out of memory");
    s->pos_weight = (float)pw;
    *state = s;
    return 0;
}

static int eval(void *state, int n, int k, const float *z, const float *y, const float *w,
                double *loss, float *dz, float scale, ts_err *e)
{
    const bce_state *s = state;
    if (k < 1) return ts_fail(e, "bce: logits need at least one column, got %d", k);
    double wsum;
    double sum = bce_kernel(n, k, z, y, w, s ? s->pos_weight : 1.0f, dz, scale, &wsum);
    *loss = wsum > 0 ? sum / wsum : 0.0;
    return 0;
}

static void destroy(void *state) { free(state); }

static const ts_key keys[] = {
    {"pos_weight", "float", "1", "weight of the positive examples' term (1 = unweighted)"},
    {NULL, NULL, NULL, NULL}};

/* eval() reads its state only: TS_BRANCH_SAFE */
static const ts_loss_ops ops = {sizeof(ts_loss_ops), TS_LABEL_BINARY, init, eval, destroy,
                                 TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LOSS, "bce", "1.0",
    "binary cross-entropy on logits (stable), optional pos_weight", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
