/* binary.c — the head of a binary task (click, income > 50K): one score per example.
 *
 * Input (B, 1): logits z (takes = logit, the default; the prediction is sigmoid(z)) or
 * probabilities p (takes = probability: the output of a sigmoid, or a product of probabilities
 * as ESMM's pCTCVR = pCTR x pCVR; a value outside [0, 1] is refused, not clipped: it is a
 * logit fed by mistake; p is clipped to [1e-7, 1 - 1e-7] and the loss sees
 * z = log(p / (1 - p)), so its gradient reaches p as dL/dz / (p (1 - p))). The label is (B, 1) in
 * {0, 1}. The loss comes from the head's `loss =` plugin (normally bce, whose pos_weight is read
 * from this section); in training its gradient, scaled by the task's weight, flows into the
 * input. Per-row weights and a label mask (the section's `sample_weight =` and `mask =`) weigh
 * the loss (sum w l / sum w) and the figures; a masked row has no label: it adds nothing to the
 * loss or the figures and its label is written as missing. On a validation or test split the
 * head keeps every score and label and reports, at the end of the split:
 *   auc            exact ROC AUC (ts_auc), weighted when the rows are
 *   logloss        mean binary cross-entropy of the prediction (ts_logloss)
 *   loss           the mean of the loss plugin's value over the examples
 *   positive_rate  the fraction of positive labels (a baseline for the two figures above)
 *   rows           the rows with a label (only when the head has a mask)
 * and hands the split's probabilities and labels to the host (predictions), which combines
 * several tasks' scores into one ranking score ([train] output_weights).
 * With `group = FIELD` (an id per row: the query, the user step whose candidates the rows are)
 * it also ranks each group's rows by the logit z (monotone in the odds exp(z), which weighted
 * logistic regression makes an engagement estimate; ties go to the earlier row) and reports,
 * with r the 1-based ranks of the group's positive rows (R of them) and the mean over groups:
 *   ndcg@10   sum_{r <= 10} 1/log2(1 + r) / sum_{i <= min(R, 10)} 1/log2(1 + i)
 *   recall@10 #{r <= 10} / R
 *   mrr       1 / min r
 *   groups    how many groups were ranked
 * A group without a positive row counts as a miss (0 in all three): the relevant item was not
 * among its candidates, which is the candidate generator's failure the ranking must carry.
 *   per_user_loss  the YouTube DNN paper's weighted, per-user loss: over every (positive,
 *             negative) pair of rows of the same group, the share of the positives' weight
 *             (sample_weight: the engagement) on the pairs the score orders wrongly (the
 *             negative above, or tied and earlier); lower is better; groups without a positive
 *             have no pairs.
 * It is not a multi-class head and does not calibrate its scores.
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>

typedef struct binary_state {
    int prob_in;               /* 1: the input is a probability, 0: a logit */
    float *prob;               /* (cap) predicted probabilities of the split so far */
    float *label;              /* (cap) their labels; NaN for a masked row */
    float *w;                  /* (wcap) their weights, when the head has any */
    long n, cap, wcap;
    int weighted;              /* the last evaluation's rows had weights (w holds them) */
    double loss_sum, wsum;     /* sum over batches of batch loss * batch weight, and the weight */
    float *z, *dz;             /* (max batch) logits and their gradient, for probability input */
    const ts_tensor *group;    /* `group =`: (B, 1) the row's group id, or NULL */
    float *gz;                 /* (gcap) the split's logits, for the grouped ranking */
    int64_t *gid;              /* (gcap) their group ids */
    long gcap;
} binary_state;

#define P_EPS 1e-7f

static inline double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

/* Plain stable bce for a head built without a loss plugin: sum w l / sum w over z (n),
 * dz += scale * dl/dz. */
static double bce_fallback(const float *z, const float *y, const float *w, long n, float *dz,
                           float scale)
{
    double sum = 0, ws = 0;
    for (long i = 0; i < n; i++) ws += w ? w[i] : 1.0;
    if (ws <= 0) return 0;
    for (long i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        if (wi == 0) continue;
        sum += wi * (y[i] * softplus(-z[i]) + (1 - y[i]) * softplus(z[i]));
        if (dz) dz[i] += scale * (float)(wi * (1.0 / (1.0 + exp(-z[i])) - y[i]) / ws);
    }
    return sum / ws;
}

static int build_impl(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    int takes = 0;
    if (ts_cfg_choice(cfg, "takes", "logit|probability", &takes, e)) return -1;
    if (H->nin != 1 || H->in[0]->dtype != TS_F32 || ts_rowsize(H->in[0]) != 1)
        return ts_fail(e, "%s: head.%s (binary) takes one %s per example (B, 1), got %s; "
                       "end the model with a dense layer of units = 1", ts_cfg_where(cfg, "input"),
                       H->name, takes ? "probability" : "logit",
                       H->nin ? ts_shape_str(H->in[0], sh, sizeof sh) : "no input");
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
    s->prob_in = takes;
    const char *g = ts_cfg_str(cfg, "group");
    if (g && *g) {
        s->group = ts_ctx_field(H->ctx, g);
        if (!s->group || (s->group->dtype != TS_I32 && s->group->dtype != TS_F32) ||
            ts_rowsize(s->group) != 1)
            return ts_fail(e, "%s: head.%s (binary): group = %s must name a dataset field of one "
                           "id per row (I32 or F32, (B, 1)); %s", ts_cfg_where(cfg, "group"),
                           H->name, g, s->group ? "this one has another shape" :
                           "the dataset has no such field");
    }
    if (takes) {
        int b = H->in[0]->dim[0] > 0 ? H->in[0]->dim[0] : 1;
        s->z = malloc((size_t)b * sizeof *s->z);
        s->dz = malloc((size_t)b * sizeof *s->dz);
        if (!s->z || !s->dz) return ts_fail(e, "head.%s: out of memory", H->name);
    }
    return 0;
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    binary_state *s = H->state;
    s->n = 0;
    s->weighted = 0;
    s->loss_sum = s->wsum = 0;
    return 0;
}

/* Grows the split's buffers to hold need rows (evaluation only). */
static int reserve(binary_state *s, long need, int weighted, const char *name, ts_err *e)
{
    if (ts_grow_pair(&s->prob, &s->label, &s->cap, need))
        return ts_fail(e, "head.%s: out of memory for %ld scores", name, need);
    if (weighted && s->wcap < need) {
        long cap = s->cap;
        float *p = realloc(s->w, (size_t)cap * sizeof *p);
        if (!p) return ts_fail(e, "head.%s: out of memory for %ld weights", name, need);
        s->w = p;
        s->wcap = cap;
    }
    return 0;
}

/* The batch's loss of logits z (n) against y, weights w: dz += its gradient when dz is set. */
static int logit_loss(ts_head *H, int n, const float *z, const float *y, const float *w,
                      double *loss, float *dz, ts_err *e)
{
    if (H->loss) return H->loss->eval(H->loss_state, n, 1, z, y, w, loss, dz, H->grad_scale, e);
    *loss = bce_fallback(z, y, w, n, dz, H->grad_scale);
    return 0;
}

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    binary_state *s = H->state;
    const ts_tensor *in = H->in[0];
    int n = in->dim[0];
    const float *x = in->x, *y = H->label->x;   /* (B, 1) each */
    const float *w = ts_head_weights(H, n), *mask = ts_head_mask(H);
    float *dx = phase == TS_TRAIN ? in->dx : NULL;
    const float *z = x;
    if (s->prob_in) {                          /* z = logit(clip(p)); dL/dp = dL/dz / (p (1-p)) */
        for (int i = 0; i < n; i++)
            if (!(x[i] >= 0 && x[i] <= 1))      /* a logit or a NaN fed as a probability */
                return ts_fail(e, "head.%s (takes = probability) got %g in row %d, which is not a "
                               "probability; end its input with a sigmoid layer (or a product of "
                               "sigmoids), or set takes = logit", H->name, (double)x[i], i);
        for (int i = 0; i < n; i++) {
            float p = x[i] < P_EPS ? P_EPS : x[i] > 1 - P_EPS ? 1 - P_EPS : x[i];
            s->z[i] = logf(p / (1 - p));
            s->dz[i] = 0;
        }
        z = s->z;
        if (logit_loss(H, n, z, y, w, loss, dx ? s->dz : NULL, e)) return -1;
        for (int i = 0; dx && i < n; i++)
            if (x[i] > P_EPS && x[i] < 1 - P_EPS) dx[i] += s->dz[i] / (x[i] * (1 - x[i]));
    } else if (logit_loss(H, n, z, y, w, loss, dx, e)) {
        return -1;
    }
    if (phase == TS_TRAIN) return 0;
    if (reserve(s, s->n + n, w != NULL, H->name, e)) return -1;
    s->weighted |= w != NULL;
    double ws = 0;
    for (int i = 0; i < n; i++) {
        s->prob[s->n + i] = s->prob_in ? x[i] : 1.0f / (1.0f + expf(-z[i]));
        s->label[s->n + i] = mask && mask[i] == 0 ? NAN : y[i];
        if (w) s->w[s->n + i] = w[i];
        ws += w ? w[i] : 1.0;
    }
    if (s->group) {
        if (s->gcap < s->n + n) {
            long cap = s->cap > s->n + n ? s->cap : s->n + n;
            float *a = realloc(s->gz, (size_t)cap * sizeof *a);
            if (a) s->gz = a;
            int64_t *b = a ? realloc(s->gid, (size_t)cap * sizeof *b) : NULL;
            if (!a || !b) return ts_fail(e, "head.%s: out of memory for %ld group ids", H->name, cap);
            s->gid = b;
            s->gcap = cap;
        }
        for (int i = 0; i < n; i++) {
            s->gz[s->n + i] = z[i];
            s->gid[s->n + i] = s->group->dtype == TS_I32 ? (int64_t)s->group->ids[i]
                                                          : (int64_t)llround(s->group->x[i]);
        }
    }
    s->n += n;
    s->loss_sum += *loss * ws;
    s->wsum += ws;
    return 0;
}

typedef struct { int64_t g; long i; } grow_t;
static int by_group(const void *a, const void *b)
{
    const grow_t *x = a, *y = b;
    if (x->g != y->g) return x->g < y->g ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* ndcg@10, recall@10 and mrr of the split's groups (see the top of the file). */
static int group_metrics(ts_head *H, binary_state *s, ts_err *e)
{
    long n = s->n;
    grow_t *gr = malloc((size_t)(n ? n : 1) * sizeof *gr);
    long *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!gr || !idx) { free(gr); free(idx); return ts_fail(e, "head.%s: out of memory", H->name); }
    for (long i = 0; i < n; i++) gr[i] = (grow_t){s->gid[i], i};
    qsort(gr, (size_t)n, sizeof *gr, by_group);
    for (long i = 0; i < n; i++) idx[i] = gr[i].i;
    free(gr);
    double ndcg = 0, rec = 0, mrr = 0, mis_w = 0, pair_w = 0;
    long groups = 0;
    const float *wt = s->weighted ? s->w : NULL;
    for (long a = 0, b; a < n; a = b) {
        for (b = a; b < n && s->gid[idx[b]] == s->gid[idx[a]]; b++) {}
        long R = 0, best = 0, hit = 0;
        double dcg = 0, idcg = 0;
        for (long p = a; p < b; p++) {
            long t = idx[p];
            if (isnan(s->label[t]) || !(s->label[t] > 0.5f)) continue;
            long r = 1;
            for (long q = a; q < b; q++) {
                long j = idx[q];
                if (isnan(s->label[j])) continue;
                if (s->gz[j] > s->gz[t] || (s->gz[j] == s->gz[t] && j < t)) r++;
            }
            /* the paper's weighted, per-user loss: each (positive, negative) pair of the group
             * the score orders wrongly costs the positive's weight (its engagement) */
            double wpos = wt ? wt[t] : 1.0;
            for (long q = a; q < b; q++) {
                long j = idx[q];
                if (isnan(s->label[j]) || s->label[j] > 0.5f) continue;
                pair_w += wpos;
                if (s->gz[j] > s->gz[t] || (s->gz[j] == s->gz[t] && j < t)) mis_w += wpos;
            }
            if (r <= 10) { dcg += 1.0 / log2(1.0 + (double)r); hit++; }
            if (R < 10) idcg += 1.0 / log2(2.0 + (double)R);
            if (!best || r < best) best = r;
            R++;
        }
        int any = 0;
        for (long p = a; p < b && !any; p++) any = !isnan(s->label[idx[p]]);
        if (!any) continue;                  /* every row masked: not a query */
        groups++;
        if (R == 0) continue;                /* the relevant item is not among the rows: a miss */
        ndcg += dcg / idcg;
        rec += (double)hit / (double)R;
        mrr += 1.0 / (double)best;
    }
    free(idx);
    ts_metric(H->ctx, H->name, "ndcg@10", groups ? ndcg / groups : NAN);
    ts_metric(H->ctx, H->name, "recall@10", groups ? rec / groups : NAN);
    ts_metric(H->ctx, H->name, "mrr", groups ? mrr / groups : NAN);
    ts_metric(H->ctx, H->name, "per_user_loss", pair_w > 0 ? mis_w / pair_w : NAN);
    ts_metric(H->ctx, H->name, "groups", (double)groups);
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase;
    binary_state *s = H->state;
    const float *w = s->weighted ? s->w : NULL;
    double pos = 0, ws = 0;
    long rows = 0;
    for (long i = 0; i < s->n; i++) {
        if (isnan(s->label[i])) continue;
        double wi = w ? w[i] : 1.0;
        pos += wi * (s->label[i] > 0.5f);
        ws += wi;
        rows++;
    }
    if (rows == 0)
        return ts_fail(e, "head.%s: the split had no %sexamples to evaluate", H->name,
                       s->n ? "labelled (unmasked) " : "");
    ts_metric(H->ctx, H->name, "auc", ts_auc(s->prob, s->label, w, s->n));
    ts_metric(H->ctx, H->name, "logloss", ts_logloss(s->prob, s->label, w, s->n));
    ts_metric(H->ctx, H->name, "loss", s->wsum > 0 ? s->loss_sum / s->wsum : NAN);
    ts_metric(H->ctx, H->name, "positive_rate", ws > 0 ? pos / ws : NAN);
    if (ts_head_mask(H)) ts_metric(H->ctx, H->name, "rows", (double)rows);
    return s->group ? group_metrics(H, s, e) : 0;
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
        free(s->w);
        free(s->z);
        free(s->dz);
        free(s->gz);
        free(s->gid);
    }
    free(s);
    H->state = NULL;
}

/* A failed build frees what it allocated: the host calls destroy only after a build succeeded. */
static int build(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(H, cfg, e) == 0) return 0;
    destroy(H);
    return -1;
}

static const ts_key keys[] = {
    {"takes", "choice:logit|probability", "logit",
     "what the input holds: a logit (sigmoid applied here) or a probability (ESMM's pCTR x pCVR)"},
    {"group", "string", "", "a dataset field of one id per row (a query, a user step): each "
     "group's rows are ranked by score and ndcg@10, recall@10, mrr reported (a group without a "
     "positive is a miss)"},
    {NULL, NULL, NULL, NULL}};

static const ts_head_ops ops = {.size = sizeof(ts_head_ops),
    .build = build, .forward = forward, .eval_begin = eval_begin,
    .eval_end = eval_end, .destroy = destroy, .check_inputs = "f32 6 1",
    .check_label = "binary", .check_keys = "", .predictions = predictions, .row_weights = 1};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_HEAD, "binary", "1.2",
    "binary task on one logit or probability: AUC, logloss, positive rate; row weights, masks",
    keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
