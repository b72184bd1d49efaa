/* sgd.c — stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.
 *
 * With g' = g + weight_decay * w and the momentum buffer u (one slot, starting at 0):
 *   u <- momentum * u + g'
 *   w <- w - lr * (nesterov ? g' + momentum * u : u)          (PyTorch's SGD, dampening 0)
 * With momentum = 0 this is plain w <- w - lr * g'. Sparse parameters update only their
 * touched rows (their buffers lag for untouched rows, like PyTorch's sparse SGD).
 * A frozen parameter, or a tied copy (p->shared > 0, updated by its owner), is left alone.
 * It is not a learning-rate schedule: lr_scale comes from the host.
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct sgd_state {
    float lr, momentum, weight_decay;
    int nesterov;
} sgd_state;

/* Updates n consecutive weights w (n) from g (n) and the momentum buffer u (n). */
static void sgd_span(const sgd_state *s, float lr, float *w, const float *g, float *u, long n)
{
    float mu = s->momentum, wd = s->weight_decay;
    if (mu == 0.0f) {
        for (long i = 0; i < n; i++) w[i] -= lr * (g[i] + wd * w[i]);
        return;
    }
    for (long i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];
        u[i] = mu * u[i] + gi;
        w[i] -= lr * (s->nesterov ? gi + mu * u[i] : u[i]);
    }
}

static int init(void **state, const ts_cfg *cfg, ts_err *e)
{
    double lr = 0.01, mu = 0, wd = 0;
    int nest = 0;
    if (cfg && (ts_cfg_float(cfg, "lr", &lr, e) || ts_cfg_float(cfg, "momentum", &mu, e) ||
                ts_cfg_float(cfg, "weight_decay", &wd, e) ||
                ts_cfg_bool(cfg, "nesterov", &nest, e)))
        return -1;
    if (!(lr > 0) || !(mu >= 0 && mu < 1) || !(wd >= 0))
        return ts_fail(e, "%s: sgd needs lr > 0, 0 <= momentum < 1 and weight_decay >= 0 (got "
                       "%g, %g, %g)", cfg ? ts_cfg_section(cfg) : "sgd", lr, mu, wd);
    if (nest && mu == 0)
        return ts_fail(e, "%s: nesterov = true needs a momentum > 0",
                       cfg ? ts_cfg_where(cfg, "nesterov") : "sgd");
    sgd_state *s = malloc(sizeof *s);
    if (!s) return ts_fail(e, "sgd: out of memory");
    *s = (sgd_state){(float)lr, (float)mu, (float)wd, nest};
    *state = s;
    return 0;
}

static int step(void *state, ts_param *p, long t, float lr_scale, ts_err *e)
{
    (void)t;
    const sgd_state *s = state;
    if ((p->flags & TS_PARAM_FROZEN) || p->shared > 0) return 0;
    if (s->momentum > 0 && !p->state)
        return ts_fail(e, "sgd: parameter %s has no momentum slot", p->name);
    float lr = s->lr * lr_scale;
    long cols = p->cols;
    if (p->flags & TS_PARAM_SPARSE) {
        for (int k = 0; k < p->ntouched; k++) {
            long o = (long)p->touched[k] * cols;
            sgd_span(s, lr, p->w + o, p->g + o, p->state ? p->state + o : NULL, cols);
        }
    } else {
        sgd_span(s, lr, p->w, p->g, p->state, (long)p->rows * cols);
    }
    return 0;
}

static void destroy(void *state) { free(state); }

static const ts_key keys[] = {
    {"lr", "float", "0.01", "learning rate"},
    {"momentum", "float", "0", "momentum coefficient in [0, 1)"},
    {"nesterov", "bool", "false", "Nesterov momentum"},
    {"weight_decay", "float", "0", "L2 penalty added to the gradient: g + weight_decay * w"},
    {NULL, NULL, NULL, NULL}};

/* step() reads only its own state and the parameter it is given: TS_BRANCH_SAFE */
static const ts_optim_ops ops = {.size = sizeof(ts_optim_ops), .nslots = 1, .init = init, .step = step,
    .destroy = destroy, .concurrency = TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_OPTIMIZER, "sgd", "1.0",
    "SGD with optional (Nesterov) momentum and weight decay", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
