/* adam.c — Adam (Kingma & Ba, 2015) with bias correction, and lazy Adam for sparse tables.
 *
 * With g' = g + weight_decay * w (L2, as PyTorch's Adam), slots m and v (starting at 0):
 *   m <- b1 m + (1 - b1) g',   v <- b2 v + (1 - b2) g'^2
 *   w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * The first step moves every weight by about -lr * sign(g). For a TS_PARAM_SPARSE table only
 * the touched rows' moments move (lazy Adam, TensorFlow's LazyAdamOptimizer), bias-corrected
 * with the global step t; untouched rows keep their moments. Frozen and tied (p->shared > 0)
 * parameters are left alone. It is not AdamW (decoupled decay) and not AMSGrad.
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct adam_state {
    float lr, beta1, beta2, eps, weight_decay;
} adam_state;

/* Updates n weights w (n) with gradient g (n), moments m (n) and v (n). a = lr / (1 - b1^t),
 * c = 1 / sqrt(1 - b2^t): the bias corrections folded into two scalars. */
static void adam_span(const adam_state *s, float a, float c, float *w, const float *g, float *m,
                      float *v, long n)
{
    float b1 = s->beta1, b2 = s->beta2, eps = s->eps, wd = s->weight_decay;
    for (long i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        w[i] -= a * m[i] / (sqrtf(v[i]) * c + eps);
    }
}

static int init(void **state, const ts_cfg *cfg, ts_err *e)
{
    double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0;
    if (cfg && (ts_cfg_float(cfg, "lr", &lr, e) || ts_cfg_float(cfg, "beta1", &b1, e) ||
                ts_cfg_float(cfg, "beta2", &b2, e) || ts_cfg_float(cfg, "eps", &eps, e) ||
                ts_cfg_float(cfg, "weight_decay", &wd, e)))
        return -1;
    if (!(lr > 0) || !(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1) || !(eps > 0) || !(wd >= 0))
        return ts_fail(e, "%s: adam needs lr > 0, beta1 and beta2 in [0, 1), eps > 0 and "
                       "weight_decay >= 0 (got %g, %g, %g, %g, %g)",
                       cfg ? ts_cfg_section(cfg) : "adam", lr, b1, b2, eps, wd);
    adam_state *s = malloc(sizeof *s);
    if (!s) return ts_fail(e, "adam: out of memory");
    *s = (adam_state){(float)lr, (float)b1, (float)b2, (float)eps, (float)wd};
    *state = s;
    return 0;
}

static int step(void *state, ts_param *p, long t, float lr_scale, ts_err *e)
{
    const adam_state *s = state;
    if ((p->flags & TS_PARAM_FROZEN) || p->shared > 0) return 0;
    if (t < 1) return ts_fail(e, "adam: step t = %ld; steps count from 1", t);
    if (!p->state) return ts_fail(e, "adam: parameter %s has no optimizer slots", p->name);
    long n = (long)p->rows * p->cols, cols = p->cols;
    float a = (float)(s->lr * lr_scale / (1.0 - pow(s->beta1, (double)t)));
    float c = (float)(1.0 / sqrt(1.0 - pow(s->beta2, (double)t)));
    float *m = p->state, *v = p->state + n;      /* two slots of (rows, cols) */
    if (p->flags & TS_PARAM_SPARSE) {
        for (int k = 0; k < p->ntouched; k++) {
            long o = (long)p->touched[k] * cols;
            adam_span(s, a, c, p->w + o, p->g + o, m + o, v + o, cols);
        }
    } else {
        adam_span(s, a, c, p->w, p->g, m, v, n);
    }
    return 0;
}

static void destroy(void *state) { free(state); }

static const ts_key keys[] = {
    {"lr", "float", "0.001", "learning rate"},
    {"beta1", "float", "0.9", "decay of the first moment"},
    {"beta2", "float", "0.999", "decay of the second moment"},
    {"eps", "float", "1e-8", "added to sqrt(v) to avoid division by zero"},
    {"weight_decay", "float", "0", "L2 penalty added to the gradient: g + weight_decay * w"},
    {NULL, NULL, NULL, NULL}};

static const ts_optim_ops ops = {2, init, step, destroy};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_OPTIMIZER, "adam", "1.0",
    "Adam with bias correction; lazy Adam on sparse tables", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
