/* binary.c — the head of a binary task (click, income > 50K): one logit per example.
 *
 * Input (B, 1) logits z, label (B, 1) in {0, 1}; the prediction is sigmoid(z). The loss comes
 * from the head's `loss =` plugin (normally bce, whose pos_weight is read from this section);
 * in training its gradient, scaled by the task's weight, flows into the input. On a validation
 * or test split the head keeps every score and label and reports, at the end of the split:
 *   auc            exact ROC AUC (ts_auc)
 *   logloss        mean binary cross-entropy of sigmoid(z) (ts_logloss)
 *   loss           the mean of the loss plugin's value over the examples
 *   positive_rate  the fraction of positive labels (a baseline for the two figures above)
 * and hands the split's probabilities and labels to the host (predictions), which combines
 * several tasks' scores into one ranking score ([train] output_weights).
 * It is not a multi-class head and does not calibrate its scores.
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct binary_state {
    float *prob;               /* (cap) sigmoid scores of the split so far */
    float *label;              /* (cap) their labels */
    long n, cap;
    double loss_sum;           /* sum over batches of batch loss * batch rows */
} binary_state;

static inline double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

/* Plain stable bce for a head built without a loss plugin: mean over z (n), dz += scale * dl/dz. */
static double bce_fallback(const float *z, const float *y, long n, float *dz, float scale)
{
    double sum = 0;
    for (long i = 0; i < n; i++) {
        sum += y[i] * softplus(-z[i]) + (1 - y[i]) * softplus(z[i]);
        if (dz) dz[i] += scale * (float)((1.0 / (1.0 + exp(-z[i])) - y[i]) / n);
    }
    return n ? sum / n : 0;
}

static int build(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    if (H->nin != 1 || H->in[0]->dtype != TS_F32 || ts_rowsize(H->in[0]) != 1)
        return ts_fail(e, "%s: head.%s (binary) takes one logit per example (B, 1), got %s; "
                       "end the model with a dense layer of units = 1", ts_cfg_where(cfg, "input"),
                       H->name, H->nin ? ts_shape_str(H->in[0], sh, sizeof sh) : "no input");
    if (!H->label || H->label->dtype != TS_F32 || ts_rowsize(H->label) != 1)
        return ts_fail(e, "%s: head.%s (binary) needs a label field of one float per example "
                       "(0 or 1); set label = a dataset field", ts_cfg_where(cfg, "label"),
                       H->name);
    if (H->loss && H->loss->label_kind == TS_LABEL_CLASS)
        return ts_fail(e, "%s: head.%s (binary) cannot train with a class-index loss; use "
                       "loss = bce", ts_cfg_where(cfg, "loss"), H->name);
    binary_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "head.%s: out of memory", H->name);
    H->state = s;
    return 0;
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    binary_state *s = H->state;
    s->n = 0;
    s->loss_sum = 0;
    return 0;
}

/* Grows the split's buffers to hold need rows (evaluation only). */
static int reserve(binary_state *s, long need, const char *name, ts_err *e)
{
    if (ts_grow_pair(&s->prob, &s->label, &s->cap, need))
        return ts_fail(e, "head.%s: out of memory for %ld scores", name, need);
    return 0;
}

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    binary_state *s = H->state;
    const ts_tensor *in = H->in[0];
    int n = in->dim[0];
    const float *z = in->x, *y = H->label->x;   /* (B, 1) each */
    float *dz = phase == TS_TRAIN ? in->dx : NULL;
    if (H->loss) {
        if (H->loss->eval(H->loss_state, n, 1, z, y, NULL, loss, dz, H->grad_scale, e))
            return -1;
    } else {
        *loss = bce_fallback(z, y, n, dz, H->grad_scale);
    }
    if (phase == TS_TRAIN) return 0;
    if (reserve(s, s->n + n, H->name, e)) return -1;
    for (int i = 0; i < n; i++) {
        s->prob[s->n + i] = 1.0f / (1.0f + expf(-z[i]));
        s->label[s->n + i] = y[i];
    }
    s->n += n;
    s->loss_sum += *loss * n;
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    binary_state *s = H->state;
    if (s->n == 0) return ts_fail(e, "head.%s: the split had no examples to evaluate", H->name);
    double pos = 0;
    for (long i = 0; i < s->n; i++) pos += s->label[i] > 0.5f;
    ts_metric(H->ctx, H->name, "auc", ts_auc(s->prob, s->label, NULL, s->n));
    ts_metric(H->ctx, H->name, "logloss", ts_logloss(s->prob, s->label, NULL, s->n));
    ts_metric(H->ctx, H->name, "loss", s->loss_sum / s->n);
    ts_metric(H->ctx, H->name, "positive_rate", pos / s->n);
    return 0;
}

/* The split's probabilities and labels, for a combined score across tasks (train.c). */
static int predictions(ts_head *H, const float **score, const float **label, long *n)
{
    binary_state *s = H->state;
    if (!s) return -1;
    *score = s->prob;
    *label = s->label;
    *n = s->n;
    return 0;
}

static void destroy(ts_head *H)
{
    binary_state *s = H->state;
    if (s) {
        free(s->prob);
        free(s->label);
    }
    free(s);
    H->state = NULL;
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

static const ts_head_ops ops = {.size = sizeof(ts_head_ops),
    .build = build, .forward = forward, .eval_begin = eval_begin,
    .eval_end = eval_end, .destroy = destroy, .check_inputs = "f32 6 1",
    .check_label = "binary", .check_keys = "", .predictions = predictions};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_HEAD, "binary", "1.0",
    "binary task on one logit: sigmoid prediction; AUC, logloss, positive rate", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
