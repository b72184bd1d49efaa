/* regression.c — the head of a real-valued task (a rating, a duration): one value per example.
 *
 * Input (B, 1) predictions z, label (B, 1) real targets. The loss comes from the head's
 * `loss =` plugin (normally mse); in training its gradient, scaled by the task's weight, flows
 * into the input. On a validation or test split the head reports
 *   mse   mean of (z - y)^2      mae   mean of |z - y|      loss  the loss plugin's mean value
 * accumulated in double over the whole split. It also keeps the split's predictions and targets
 * (two floats per row, grown by doubling during evaluation only) for the host's combined score
 * across tasks ([train] output_weights). It does not rescale targets: normalise them in the
 * dataset if their range is large.
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct regression_state {
    double se, ae, loss_sum;   /* sums over the split: squared error, absolute error, loss * rows */
    long n;
    float *pred, *target;      /* (cap) predictions and targets of the split so far */
    long cap;
} regression_state;

/* Plain mse for a head built without a loss plugin: mean over z (n), dz += scale * dl/dz. */
static double mse_fallback(const float *z, const float *y, long n, float *dz, float scale)
{
    double sum = 0;
    for (long i = 0; i < n; i++) {
        double r = (double)z[i] - y[i];
        sum += r * r;
        if (dz) dz[i] += scale * (float)(2.0 * r / n);
    }
    return n ? sum / n : 0;
}

static int build(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    if (H->nin != 1 || H->in[0]->dtype != TS_F32 || ts_rowsize(H->in[0]) != 1)
        return ts_fail(e, "%s: head.%s (regression) takes one value per example (B, 1), got %s; "
                       "end the model with a dense layer of units = 1", ts_cfg_where(cfg, "input"),
                       H->name, H->nin ? ts_shape_str(H->in[0], sh, sizeof sh) : "no input");
    if (!H->label || H->label->dtype != TS_F32 || ts_rowsize(H->label) != 1)
        return ts_fail(e, "%s: head.%s (regression) needs a label field of one float per "
                       "example; set label = a dataset field", ts_cfg_where(cfg, "label"),
                       H->name);
    if (H->loss && H->loss->label_kind == TS_LABEL_CLASS)
        return ts_fail(e, "%s: head.%s (regression) cannot train with a class-index loss; use "
                       "loss = mse", ts_cfg_where(cfg, "loss"), H->name);
    regression_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "head.%s: out of memory", H->name);
    H->state = s;
    return 0;
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    regression_state *s = H->state;
    s->se = s->ae = s->loss_sum = 0;
    s->n = 0;
    return 0;
}

/* Grows the split's buffers to hold need rows (evaluation only). */
static int reserve(regression_state *s, long need, const char *name, ts_err *e)
{
    if (ts_grow_pair(&s->pred, &s->target, &s->cap, need))
        return ts_fail(e, "head.%s: out of memory for %ld predictions", name, need);
    return 0;
}

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    regression_state *s = H->state;
    const ts_tensor *in = H->in[0];
    int n = in->dim[0];
    const float *z = in->x, *y = H->label->x;   /* (B, 1) each */
    float *dz = phase == TS_TRAIN ? in->dx : NULL;
    if (H->loss) {
        if (H->loss->eval(H->loss_state, n, 1, z, y, NULL, loss, dz, H->grad_scale, e))
            return -1;
    } else {
        *loss = mse_fallback(z, y, n, dz, H->grad_scale);
    }
    if (phase == TS_TRAIN) return 0;
    if (reserve(s, s->n + n, H->name, e)) return -1;
    for (int i = 0; i < n; i++) {
        double r = (double)z[i] - y[i];
        s->se += r * r;
        s->ae += fabs(r);
        s->pred[s->n + i] = z[i];
        s->target[s->n + i] = y[i];
    }
    s->n += n;
    s->loss_sum += *loss * n;
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    regression_state *s = H->state;
    if (s->n == 0) return ts_fail(e, "head.%s: the split had no examples to evaluate", H->name);
    ts_metric(H->ctx, H->name, "mse", s->se / s->n);
    ts_metric(H->ctx, H->name, "mae", s->ae / s->n);
    ts_metric(H->ctx, H->name, "loss", s->loss_sum / s->n);
    return 0;
}

/* The split's predictions and targets, for a combined score across tasks (train.c). */
static int predictions(ts_head *H, const float **score, const float **label, long *n)
{
    regression_state *s = H->state;
    if (!s) return -1;
    *score = s->pred;
    *label = s->target;
    *n = s->n;
    return 0;
}

static void destroy(ts_head *H)
{
    regression_state *s = H->state;
    if (s) {
        free(s->pred);
        free(s->target);
    }
    free(s);
    H->state = NULL;
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

static const ts_head_ops ops = {.size = sizeof(ts_head_ops),
    .build = build, .forward = forward, .eval_begin = eval_begin,
    .eval_end = eval_end, .destroy = destroy, .check_inputs = "f32 6 1",
    .check_label = "real", .check_keys = "", .predictions = predictions};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_HEAD, "regression", "1.0",
    "real-valued task on one output: MSE, MAE", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
