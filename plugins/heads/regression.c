/* regression.c — the head of a real-valued task (a rating, a duration): one value per example.
 *
 * Input (B, 1) predictions z, label (B, 1) real targets. The loss comes from the head's
 * `loss =` plugin (normally mse); in training its gradient, scaled by the task's weight, flows
 * into the input. Per-row weights and a label mask (the section's `sample_weight =` and
 * `mask =`) weigh the loss (sum w l / sum w) and the figures; a masked row has no target. On a
 * validation or test split the head reports (weighted means over the rows with a target)
 *   mse   mean of (z - y)^2      mae   mean of |z - y|      loss  the loss plugin's mean value
 *   rows  the rows with a target (only when the head has a mask)
 * accumulated in double over the whole split. It also keeps the split's predictions and targets
 * (two floats per row, grown by doubling during evaluation only) for the host's combined score
 * across tasks ([train] output_weights). It does not rescale targets: normalise them in the
 * dataset if their range is large.
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct regression_state {
    double se, ae, loss_sum;   /* sums over the split: weighted squared and absolute errors, loss */
    double wsum, lwsum;        /* the labelled rows' weight, the loss's weight */
    long n, rows;
    float *pred, *target;      /* (cap) predictions and targets (NaN: masked) of the split so far */
    long cap;
} regression_state;

/* Plain mse for a head built without a loss plugin: sum w l / sum w over z (n),
 * dz += scale * dl/dz. */
static double mse_fallback(const float *z, const float *y, const float *w, long n, float *dz,
                           float scale)
{
    double sum = 0, ws = 0;
    for (long i = 0; i < n; i++) ws += w ? w[i] : 1.0;
    if (ws <= 0) return 0;
    for (long i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0, r = (double)z[i] - y[i];
        if (wi == 0) continue;
        sum += wi * r * r;
        if (dz) dz[i] += scale * (float)(2.0 * wi * r / ws);
    }
    return sum / ws;
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
    s->se = s->ae = s->loss_sum = s->wsum = s->lwsum = 0;
    s->n = s->rows = 0;
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
    const float *w = ts_head_weights(H, n), *mask = ts_head_mask(H);
    float *dz = phase == TS_TRAIN ? in->dx : NULL;
    if (H->loss) {
        if (H->loss->eval(H->loss_state, n, 1, z, y, w, loss, dz, H->grad_scale, e))
            return -1;
    } else {
        *loss = mse_fallback(z, y, w, n, dz, H->grad_scale);
    }
    if (phase == TS_TRAIN) return 0;
    if (reserve(s, s->n + n, H->name, e)) return -1;
    double lw = 0;
    for (int i = 0; i < n; i++) {
        int masked = mask && mask[i] == 0;
        double wi = w ? w[i] : 1.0, r = (double)z[i] - y[i];
        s->pred[s->n + i] = z[i];
        s->target[s->n + i] = masked ? NAN : y[i];
        lw += wi;
        if (masked) continue;
        s->se += wi * r * r;
        s->ae += wi * fabs(r);
        s->wsum += wi;
        s->rows++;
    }
    s->n += n;
    s->loss_sum += *loss * lw;
    s->lwsum += lw;
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    regression_state *s = H->state;
    if (s->rows == 0)
        return ts_fail(e, "head.%s: the split had no %sexamples to evaluate", H->name,
                       s->n ? "labelled (unmasked) " : "");
    ts_metric(H->ctx, H->name, "mse", s->wsum > 0 ? s->se / s->wsum : NAN);
    ts_metric(H->ctx, H->name, "mae", s->wsum > 0 ? s->ae / s->wsum : NAN);
    ts_metric(H->ctx, H->name, "loss", s->lwsum > 0 ? s->loss_sum / s->lwsum : NAN);
    if (ts_head_mask(H)) ts_metric(H->ctx, H->name, "rows", (double)s->rows);
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
    .check_label = "real", .check_keys = "", .predictions = predictions, .row_weights = 1};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_HEAD, "regression", "1.0",
    "real-valued task on one output: MSE, MAE", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
