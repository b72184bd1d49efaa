/* train.c — the training loop: seeded shuffling, batches, the heads' weighted losses
 * (static or learned by uncertainty), the NaN guard, gradient clipping, optimizer steps,
 * evaluation each epoch, early stopping with the best weights kept, the test evaluation, and
 * the run's files (config.ini, train.csv, eval.csv, metrics.json). */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Higher is better for ranking and AUC figures, lower for losses and errors. */
static int lower_is_better(const char *metric)
{
    return strstr(metric, "loss") || strstr(metric, "mse") || strstr(metric, "mae") ||
           strstr(metric, "rmse");
}

static long all_rows_w(ts_exp *x)
{
    long n = 0;
    for (int i = 0; i < x->ctx.nparams; i++)
        if (!x->ctx.params[i]->shared)
            n += (long)x->ctx.params[i]->rows * x->ctx.params[i]->cols;
    return n;   /* the w block is the arena's first n floats (ts_ctx_alloc_params) */
}

static int load_batch(ts_exp *x, ts_phase split, const long *rows, int n, ts_err *e)
{
    const ts_dataset_ops *ops = x->data_pl->ops;
    ts_err pe;
    if (ops->batch(&x->data, split, rows, n, &pe))
        return ts_fail(e, "[data] %s: %s", x->data_pl->name, pe.msg);
    for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = n;
    return 0;
}

int ts_exp_evaluate(ts_exp *x, ts_phase split, ts_err *e)
{
    long n = x->data.nrows[split];
    x->ctx.phase = split;
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        ts_err pe;
        if (hn->ops->eval_begin && hn->ops->eval_begin(&hn->H, split, &pe))
            return ts_fail(e, "[%s] eval: %s", hn->cfg->name, pe.msg);
    }
    long *rows = malloc((size_t)x->eval_batch * sizeof *rows);
    if (!rows) return ts_fail(e, "out of memory");
    for (long s = 0; s < n; s += x->eval_batch) {
        int b = (int)(n - s < x->eval_batch ? n - s : x->eval_batch);
        for (int i = 0; i < b; i++) rows[i] = s + i;
        if (load_batch(x, split, rows, b, e) || ts_exp_forward(x, split, b, e)) {
            free(rows);
            return -1;
        }
        for (int h = 0; h < x->nheads; h++) {
            ts_hnode *hn = &x->heads[h];
            double loss = 0;
            ts_err pe;
            if (hn->ops->forward(&hn->H, split, &loss, &pe)) {
                free(rows);
                return ts_fail(e, "[%s] forward: %s", hn->cfg->name, pe.msg);
            }
        }
    }
    free(rows);
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        ts_err pe;
        x->ctx.phase = split;
        if (hn->ops->eval_end && hn->ops->eval_end(&hn->H, split, &pe))
            return ts_fail(e, "[%s] eval: %s", hn->cfg->name, pe.msg);
    }
    return 0;
}

/* The first layer whose output holds a NaN or an infinity, for the NaN guard's message. */
static const char *first_nonfinite(ts_exp *x)
{
    for (int i = 0; i < x->nnodes; i++) {
        ts_layer *L = &x->nodes[i].L;
        for (int k = 0; k < L->nout; k++) {
            ts_tensor *t = &L->out[k];
            if (t->dtype != TS_F32) continue;
            long n = ts_numel(t);
            for (long j = 0; j < n; j++)
                if (!isfinite(t->x[j])) return x->nodes[i].cfg->name;
        }
    }
    return NULL;
}

static double grad_norm(ts_exp *x)
{
    double s = 0;
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        if (p->shared || (p->flags & TS_PARAM_FROZEN)) continue;
        if (p->flags & TS_PARAM_SPARSE) {
            for (int k = 0; k < p->ntouched; k++) {
                const float *g = p->g + (size_t)p->touched[k] * p->cols;
                for (int j = 0; j < p->cols; j++) s += (double)g[j] * g[j];
            }
        } else {
            long n = (long)p->rows * p->cols;
            for (long j = 0; j < n; j++) s += (double)p->g[j] * p->g[j];
        }
    }
    return sqrt(s);
}

static void scale_grads(ts_exp *x, float c)
{
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        if (p->shared) continue;
        if (p->flags & TS_PARAM_SPARSE) {
            for (int k = 0; k < p->ntouched; k++)
                cblas_sscal(p->cols, c, p->g + (size_t)p->touched[k] * p->cols, 1);
        } else {
            cblas_sscal(p->rows * p->cols, c, p->g, 1);
        }
    }
}

static int append(FILE *f, const char *path, ts_err *e)
{
    if (ferror(f)) return ts_fail(e, "%s: write failed (disk full?)", path);
    fflush(f);
    return 0;
}

static int find_metric(ts_exp *x, const char *name, double *v)
{
    for (int i = 0; i < x->ctx.nmetrics; i++) {
        char full[3 * TS_NAME_MAX];
        snprintf(full, sizeof full, "%s.%s", x->ctx.metrics[i].task, x->ctx.metrics[i].metric);
        if (!strcmp(full, name)) { *v = x->ctx.metrics[i].value; return 0; }
    }
    return -1;
}

static void write_eval_rows(FILE *f, ts_exp *x, long epoch, long step)
{
    for (int i = 0; i < x->ctx.nmetrics; i++) {
        ts_metric_rec *m = &x->ctx.metrics[i];
        fprintf(f, "%ld,%ld,%s,%s,%s,%.9g\n", epoch, step, ts_phase_name(m->split), m->task,
                m->metric, m->value);
    }
}

/* ---- GradNorm ---------------------------------------------------------------------------------
 * Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
 * Balancing in Deep Multitask Networks" (ICML 2018). Learned task weights w_k (sum K) scale the
 * tasks' losses; W is the trainable dense weights of the last layer every head depends on (MMoE's
 * mixture, Shared-Bottom's bottom). Each step, with L_k the batch loss of task k:
 *   G_k = || d (w_k L_k) / dW ||,   Gbar = mean_k G_k
 *   r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0))          relative inverse training rate
 *   L_grad = sum_k | G_k - Gbar r_k^alpha |                the target is held constant
 *   d L_grad / d w_k = sign(G_k - Gbar r_k^alpha) G_k / w_k
 * then one Adam step on w with rate gradnorm_lr, w_k >= 1e-3, and w <- K w / sum w.
 * G_k needs task k's own gradient on W. Each head's loss is backpropagated separately through
 * the layers from the top of the graph down to the shared layer (their output gradients are
 * zeroed between tasks, so W's gradient grows by exactly task k's part: G_k is the norm of that
 * increment); the layers below the shared one then run once on the input gradients the K passes
 * accumulated. The parameters get the same summed gradient as one backward pass; the price is
 * K backward passes of the shared layer and the towers. */
#define GN_MAX_W 16
typedef struct gradnorm {
    int shared;                   /* index in x->nodes of the shared layer */
    ts_param *W[GN_MAX_W];        /* its dense trainable parameters */
    int nW;
    long nprev;
    float *prev;                  /* (nprev) W's gradient before a task's backward pass */
    double *w, *L0, *L, *G;       /* (K) weights, first-step losses, this step's losses and norms */
    double *m, *v;                /* (K) Adam moments of the weights */
    double alpha, lr;
    long t;                       /* updates made */
} gradnorm;

static void gn_free(gradnorm *gn)
{
    free(gn->prev);
    free(gn->w);
    gn->prev = NULL;
    gn->w = NULL;
}

/* 1 when tensor t is one of L's outputs. */
static int is_output_of(const ts_layer *L, const ts_tensor *t)
{
    for (int k = 0; k < L->nout; k++)
        if (t == &L->out[k]) return 1;
    return 0;
}

static int cfg_float(ts_cfg *ct, const char *key, double def, double lo, double hi, double *out,
                     ts_err *e)
{
    *out = def;
    if (!ct || !ts_cfg_str(ct, key)) return 0;
    if (ts_cfg_float(ct, key, out, e)) return -1;
    if (*out < lo || *out > hi)
        return ts_fail(e, "%s: [train] %s = %g is outside %g..%g", ts_cfg_where(ct, key), key, *out,
                       lo, hi);
    return 0;
}

static int gn_init(ts_exp *x, gradnorm *gn, ts_err *e)
{
    int K = x->nheads;
    memset(gn, 0, sizeof *gn);
    gn->shared = -1;
    ts_cfg *ct = ts_ini_find(&x->ini, "train");
    if (cfg_float(ct, "gradnorm_alpha", 1.5, 0, 100, &gn->alpha, e) ||
        cfg_float(ct, "gradnorm_lr", 0.01, 0, 10, &gn->lr, e))
        return -1;
    if (K > 64)
        return ts_fail(e, "[train] weighting = gradnorm handles up to 64 heads, not %d", K);
    /* reach[i]: the heads that depend on layer i (bit h), from the top of the graph down. */
    uint64_t *reach = calloc((size_t)(x->nnodes ? x->nnodes : 1), sizeof *reach);
    if (!reach) return ts_fail(e, "out of memory");
    uint64_t all = K == 64 ? ~0ull : (1ull << K) - 1;
    for (int i = x->nnodes - 1; i >= 0; i--) {
        const ts_layer *L = &x->nodes[i].L;
        for (int h = 0; h < K; h++)
            for (int k = 0; k < x->heads[h].H.nin; k++)
                if (is_output_of(L, x->heads[h].H.in[k])) reach[i] |= 1ull << h;
        for (int j = i + 1; j < x->nnodes; j++)
            for (int k = 0; k < x->nodes[j].L.nin; k++)
                if (is_output_of(L, x->nodes[j].L.in[k])) reach[i] |= reach[j];
    }
    for (int i = x->nnodes - 1; i >= 0 && gn->shared < 0; i--) {
        if (reach[i] != all) continue;
        ts_node *nd = &x->nodes[i];
        gn->nW = 0;
        gn->nprev = 0;
        for (int k = 0; k < nd->nparam && gn->nW < GN_MAX_W; k++) {
            ts_param *p = x->ctx.params[nd->first_param + k];
            if (p->shared || (p->flags & (TS_PARAM_SPARSE | TS_PARAM_FROZEN))) continue;
            gn->W[gn->nW++] = p;
            gn->nprev += (long)p->rows * p->cols;
        }
        if (gn->nW) gn->shared = i;
    }
    free(reach);
    if (gn->shared < 0)
        return ts_fail(e, "[train] weighting = gradnorm needs a layer with dense trainable weights "
                       "that every head depends on (its weights are GradNorm's W); this graph has "
                       "none. Use weighting = static or uncertainty");
    gn->prev = malloc((size_t)gn->nprev * sizeof *gn->prev);
    gn->w = calloc((size_t)K * 6, sizeof *gn->w);
    if (!gn->prev || !gn->w) { gn_free(gn); return ts_fail(e, "out of memory"); }
    gn->L0 = gn->w + K;
    gn->L = gn->w + 2 * K;
    gn->G = gn->w + 3 * K;
    gn->m = gn->w + 4 * K;
    gn->v = gn->w + 5 * K;
    for (int h = 0; h < K; h++) gn->w[h] = 1;
    return 0;
}

/* Copies W's gradient into prev. */
static void gn_snapshot(gradnorm *gn)
{
    long o = 0;
    for (int i = 0; i < gn->nW; i++) {
        long n = (long)gn->W[i]->rows * gn->W[i]->cols;
        memcpy(gn->prev + o, gn->W[i]->g, (size_t)n * sizeof(float));
        o += n;
    }
}

/* || W.g - prev ||: the norm of the gradient one task's pass added. */
static double gn_increment_norm(const gradnorm *gn)
{
    double s = 0;
    long o = 0;
    for (int i = 0; i < gn->nW; i++) {
        long n = (long)gn->W[i]->rows * gn->W[i]->cols;
        for (long j = 0; j < n; j++) {
            double d = (double)gn->W[i]->g[j] - gn->prev[o + j];
            s += d * d;
        }
        o += n;
    }
    return sqrt(s);
}

/* One GradNorm update of the weights from this step's losses L and norms G (see above). */
static void gn_update(gradnorm *gn, int K)
{
    if (gn->t == 0)
        for (int k = 0; k < K; k++) gn->L0[k] = gn->L[k] > 1e-12 ? gn->L[k] : 1e-12;
    gn->t++;
    double rate[64], mean_rate = 0, gbar = 0;
    for (int k = 0; k < K; k++) {
        rate[k] = gn->L[k] / gn->L0[k];
        mean_rate += rate[k] / K;
        gbar += gn->G[k] / K;
    }
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double sum = 0;
    for (int k = 0; k < K; k++) {
        double r = mean_rate > 0 ? rate[k] / mean_rate : 1;
        double target = gbar * pow(r, gn->alpha);
        double g = (gn->G[k] > target ? 1.0 : gn->G[k] < target ? -1.0 : 0.0) * gn->G[k] / gn->w[k];
        gn->m[k] = b1 * gn->m[k] + (1 - b1) * g;
        gn->v[k] = b2 * gn->v[k] + (1 - b2) * g * g;
        double mh = gn->m[k] / (1 - pow(b1, (double)gn->t)), vh = gn->v[k] / (1 - pow(b2, (double)gn->t));
        gn->w[k] -= gn->lr * mh / (sqrt(vh) + eps);
        if (gn->w[k] < 1e-3) gn->w[k] = 1e-3;
        sum += gn->w[k];
    }
    for (int k = 0; k < K; k++) gn->w[k] *= K / sum;
}

/* Zeroes the output gradients of layers from..nnodes-1 (between GradNorm's per-task passes). */
static void zero_output_grads(ts_exp *x, int from)
{
    for (int i = from; i < x->nnodes; i++) {
        ts_layer *L = &x->nodes[i].L;
        for (int k = 0; k < L->nout; k++)
            if (L->out[k].dx) memset(L->out[k].dx, 0, (size_t)ts_numel(&L->out[k]) * sizeof(float));
    }
}

/* Backward of layers hi down to lo (inclusive). */
static int backward_range(ts_exp *x, int hi, int lo, ts_err *e)
{
    for (int i = hi; i >= lo; i--) {
        ts_err pe;
        if (x->nodes[i].ops->backward(&x->nodes[i].L, &pe))
            return ts_fail(e, "[%s] backward: %s", x->nodes[i].cfg->name, pe.msg);
    }
    return 0;
}

/* ---- output weights ---------------------------------------------------------------------------
 * [train] output_weights = TASK.auc ranks by one score s = sum_k w_k p_k over the heads that hand
 * out their predictions (binary: probabilities; regression: values). Every w_k runs over
 * 0, 0.1, ..., 1; a vector that is a multiple of another (0.2, 0.4 and 0.1, 0.2) is tried once,
 * since AUC depends only on the order of the scores, so on w up to a positive factor. The weights
 * with the best AUC of TASK's label on the validation split are then scored on the test split:
 * valid.combined.auc, test.combined.auc, test.combined.w_TASK (scaled so that the largest weight
 * is 1, which changes no ranking). A weight vector that is 1 on TASK
 * and 0 elsewhere is in the grid, so the validation figure is never below the task's own AUC. */
#define OW_MAX 4
typedef struct outw {
    int task;                     /* x->heads index whose label is ranked; -1 = off */
    int nh, head[OW_MAX];         /* heads whose scores are combined */
    float *score[2][OW_MAX];      /* [valid, test][k] (n[split]) copies of their scores */
    float *label[2];              /* [valid, test] (n[split]) the task's labels */
    long n[2];
    double w[OW_MAX];             /* the chosen weights */
    double auc[2];                /* combined AUC on valid and test */
} outw;

static void ow_free(outw *o)
{
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < OW_MAX; k++) free(o->score[s][k]);
        free(o->label[s]);
    }
}

static int ow_init(ts_exp *x, outw *o, ts_err *e)
{
    memset(o, 0, sizeof *o);
    o->task = -1;
    ts_cfg *ct = ts_ini_find(&x->ini, "train");
    const char *v = ct ? ts_cfg_str(ct, "output_weights") : NULL;
    if (!v || !*v) return 0;
    const char *dot = strrchr(v, '.');
    if (!dot || strcmp(dot + 1, "auc"))
        return ts_fail(e, "%s: [train] output_weights = %s: name a task's AUC, TASK.auc (the label "
                       "of TASK ranks the combined score; AUC is the one figure supported)",
                       ts_cfg_where(ct, "output_weights"), v);
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        if (!hn->ops->predictions) continue;
        if (strlen(hn->H.name) == (size_t)(dot - v) && !strncmp(hn->H.name, v, (size_t)(dot - v)))
            o->task = h;
        if (o->nh == OW_MAX)
            return ts_fail(e, "%s: [train] output_weights: more than %d heads offer predictions; "
                           "the grid (11^K weight vectors) grows too fast beyond that",
                           ts_cfg_where(ct, "output_weights"), OW_MAX);
        o->head[o->nh++] = h;
    }
    if (o->task < 0)
        return ts_fail(e, "%s: [train] output_weights = %s: no head of that name hands out its "
                       "predictions (binary and regression heads do)",
                       ts_cfg_where(ct, "output_weights"), v);
    if (o->nh < 2)
        return ts_fail(e, "%s: [train] output_weights needs two or more heads to combine",
                       ts_cfg_where(ct, "output_weights"));
    if (x->data.nrows[TS_VALID] <= 0)
        return ts_fail(e, "%s: [train] output_weights chooses the weights on the validation "
                       "split, which is empty; give [data] a validation split",
                       ts_cfg_where(ct, "output_weights"));
    return 0;
}

/* Copies the last evaluation's scores (split 0 valid, 1 test). */
static int ow_collect(ts_exp *x, outw *o, int split, ts_err *e)
{
    for (int k = 0; k < o->nh; k++) {
        ts_hnode *hn = &x->heads[o->head[k]];
        const float *sc, *lb;
        long n;
        if (hn->ops->predictions(&hn->H, &sc, &lb, &n) || (k && n != o->n[split]))
            return ts_fail(e, "[train] output_weights: head %s gave no predictions for every "
                           "row of the split", hn->H.name);
        o->n[split] = n;
        free(o->score[split][k]);
        if (!(o->score[split][k] = malloc((size_t)(n ? n : 1) * sizeof(float))))
            return ts_fail(e, "out of memory");
        memcpy(o->score[split][k], sc, (size_t)n * sizeof(float));
        if (o->head[k] == o->task) {
            free(o->label[split]);
            if (!(o->label[split] = malloc((size_t)(n ? n : 1) * sizeof(float))))
                return ts_fail(e, "out of memory");
            memcpy(o->label[split], lb, (size_t)n * sizeof(float));
        }
    }
    return 0;
}

static int gcd(int a, int b) { while (b) { int t = a % b; a = b; b = t; } return a; }

/* AUC of the combined score sum_k w[k] score[k][i] against label (n); buf is (n) scratch. */
static double combined_auc(const float *const *score, int K, const double *w, const float *label,
                           long n, float *buf)
{
    for (long i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += w[k] * score[k][i];
        buf[i] = (float)s;
    }
    return ts_auc(buf, label, NULL, n);
}

/* The grid search over w in {0, 0.1, ..., 1}^K (multiples tried once): the weights with the best
 * AUC into best_w (K, scaled so that the largest is 1), the AUC into best_auc; ties keep the
 * first found. buf is (n) scratch.
 * Returns -1 when no AUC is defined (one class only). Used by train.c and its test. */
int ts_output_weights_search(const float *const *score, int K, const float *label, long n,
                             double *best_w, double *best_auc, float *buf);
int ts_output_weights_search(const float *const *score, int K, const float *label, long n,
                             double *best_w, double *best_auc, float *buf)
{
    if (K < 1 || K > OW_MAX) return -1;
    long combos = 1;
    for (int k = 0; k < K; k++) combos *= 11;
    *best_auc = -INFINITY;
    for (long c = 1; c < combos; c++) {
        int a[OW_MAX], g = 0;
        long r = c;
        for (int k = 0; k < K; k++) { a[k] = (int)(r % 11); r /= 11; g = gcd(g, a[k]); }
        if (g != 1) continue;                  /* a multiple of a vector tried already */
        double w[OW_MAX];
        for (int k = 0; k < K; k++) w[k] = a[k] / 10.0;
        double auc = combined_auc(score, K, w, label, n, buf);
        if (auc > *best_auc) {
            *best_auc = auc;
            memcpy(best_w, w, (size_t)K * sizeof *w);
        }
    }
    /* Report the chosen direction with its largest weight 1: (0.1, 0) reads (1, 0). */
    double mx = 0;
    for (int k = 0; k < K; k++) mx = best_w[k] > mx ? best_w[k] : mx;
    for (int k = 0; k < K && mx > 0; k++) best_w[k] /= mx;
    return isfinite(*best_auc) ? 0 : -1;
}

static int ow_run(outw *o, ts_err *e)
{
    long n = o->n[0] > o->n[1] ? o->n[0] : o->n[1];
    float *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
    if (!buf) return ts_fail(e, "out of memory");
    if (ts_output_weights_search((const float *const *)o->score[0], o->nh, o->label[0], o->n[0],
                                 o->w, &o->auc[0], buf)) {
        free(buf);
        return ts_fail(e, "[train] output_weights: the validation split has one class only; "
                       "there is no AUC to maximise");
    }
    o->auc[1] = o->n[1] ? combined_auc((const float *const *)o->score[1], o->nh, o->w, o->label[1],
                                       o->n[1], buf) : NAN;
    free(buf);
    return 0;
}

/* A head's training forward with the NaN guard; its mean batch loss into *loss. */
static int head_train_forward(ts_exp *x, ts_hnode *hn, long step, long epoch, double *loss,
                              ts_err *e)
{
    ts_err pe;
    *loss = 0;
    if (hn->ops->forward(&hn->H, TS_TRAIN, loss, &pe))
        return ts_fail(e, "[%s] forward: %s", hn->cfg->name, pe.msg);
    if (!isfinite(*loss)) {
        const char *bad = first_nonfinite(x);
        return ts_fail(e, "step %ld (epoch %ld): the loss of [%s] is %s; %s%s%s. Lower "
                       "[optimizer] lr, set [train] clip_norm, or check the data. The "
                       "files written so far are kept in %s", step + 1, epoch,
                       hn->cfg->name, isnan(*loss) ? "NaN" : *loss > 0 ? "+Inf" : "-Inf",
                       bad ? "the first layer with a non-finite output is [" :
                             "every layer's output is finite (the head or its loss "
                             "overflowed)", bad ? bad : "", bad ? "]" : "", x->ctx.results_dir);
    }
    return 0;
}

int ts_exp_train(ts_exp *x, FILE *log, ts_err *e)
{
    if (ts_exp_build(x, e)) return -1;
    if (x->threads > 0) openblas_set_num_threads((int)x->threads);
    const char *dir = x->ctx.results_dir;
    if (ts_mkdirs(dir, e)) return -1;
    char path[TS_PATH_MAX + 32], tpath[TS_PATH_MAX + 32], epath[TS_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.ini", dir);
    if (ts_ini_write(&x->ini, path, e)) return -1;
    snprintf(tpath, sizeof tpath, "%s/train.csv", dir);
    snprintf(epath, sizeof epath, "%s/eval.csv", dir);
    FILE *ft = fopen(tpath, "w"), *fe = fopen(epath, "w");
    if (!ft || !fe) {
        if (ft) fclose(ft);
        if (fe) fclose(fe);
        return ts_fail(e, "%s: cannot write the run's files", dir);
    }
    /* Task weighting and output weights are set up before any file is written. */
    gradnorm gnst, *gn = NULL;
    outw ow;
    if (ow_init(x, &ow, e)) { fclose(ft); fclose(fe); return -1; }
    if (x->weighting == 2) {
        if (gn_init(x, &gnst, e)) { fclose(ft); fclose(fe); return -1; }
        gn = &gnst;
        if (log)
            fprintf(log, "%s  gradnorm: W = the weights of [%s] (alpha %g, rate %g)\n", x->name,
                    x->nodes[gn->shared].cfg->name, gn->alpha, gn->lr);
    }
    fprintf(ft, "step,epoch,examples,loss");
    for (int h = 0; h < x->nheads; h++) fprintf(ft, ",loss.%s", x->heads[h].H.name);
    fprintf(ft, ",examples_per_sec");
    /* Learned task weights (the factor on each loss) after the step, when they are learned. */
    for (int h = 0; gn || x->log_var ? h < x->nheads : 0; h++)
        fprintf(ft, ",weight.%s", x->heads[h].H.name);
    fprintf(ft, "\n");
    fprintf(fe, "epoch,step,split,task,metric,value\n");

    const ts_optim_ops *oo = x->opt_pl->ops;
    long ntrain = x->data.nrows[TS_TRAIN];
    long steps_per_epoch = (ntrain + x->batch - 1) / x->batch;
    long *order = malloc((size_t)ntrain * sizeof *order);
    long nw = all_rows_w(x);
    float *best = malloc((size_t)(nw ? nw : 1) * sizeof *best);
    if (!order || !best) { free(order); free(best); fclose(ft); fclose(fe);
        if (gn) gn_free(gn);
        ow_free(&ow);
        return ts_fail(e, "out of memory"); }
    for (long i = 0; i < ntrain; i++) order[i] = i;
    memcpy(best, x->arena, (size_t)nw * sizeof *best);

    int rc = 0, tty = log && isatty(fileno(log));
    int minimize = x->early_stop[0] ? lower_is_better(x->early_stop) : 0;
    double best_score = minimize ? INFINITY : -INFINITY, t_start = now(), t_log = t_start;
    double train_time = 0;
    long step = 0, seen = 0, seen_log = 0, best_epoch = 0, bad_evals = 0, logged_steps = 0;
    double loss_acc = 0;
    for (int h = 0; h < x->nheads; h++) x->heads[h].loss_sum = 0;

    for (long epoch = 1; epoch <= x->epochs && !rc; epoch++) {
        double t_epoch = now();
        ts_rng_shuffle(&x->ctx.rng, order, ntrain);
        for (long s = 0; s < steps_per_epoch && !rc; s++) {
            int b = (int)(ntrain - s * x->batch < x->batch ? ntrain - s * x->batch : x->batch);
            if ((rc = load_batch(x, TS_TRAIN, order + s * x->batch, b, e))) break;
            if ((rc = ts_exp_forward(x, TS_TRAIN, b, e))) break;
            double total = 0;
            for (int h = 0; h < x->nheads && !rc; h++) {
                ts_hnode *hn = &x->heads[h];
                double scale = hn->weight;
                if (x->log_var) scale *= exp(-x->log_var->w[h]);
                if (gn) scale *= gn->w[h];
                hn->H.grad_scale = (float)scale;
                double loss = 0;
                /* GradNorm: task h's own pass from its head down to the shared layer. */
                if (gn && h > 0) zero_output_grads(x, gn->shared);
                if ((rc = head_train_forward(x, hn, step, epoch, &loss, e))) break;
                if (gn) {
                    gn_snapshot(gn);
                    if ((rc = backward_range(x, x->nnodes - 1, gn->shared, e))) break;
                    gn->G[h] = gn_increment_norm(gn);
                    gn->L[h] = loss;
                    total += gn->w[h] * hn->weight * loss;
                }
                hn->last_loss = loss;
                hn->loss_sum += loss;
                if (x->log_var) {
                    /* Kendall et al.: L = sum_k exp(-s_k) L_k + s_k, so dL/ds_k = 1 - exp(-s_k) L_k */
                    x->log_var->g[h] += (float)(1.0 - exp(-x->log_var->w[h]) * loss * hn->weight);
                    total += exp(-x->log_var->w[h]) * hn->weight * loss + x->log_var->w[h];
                } else if (!gn) {
                    total += hn->weight * loss;
                }
            }
            if (rc) break;
            if (gn) {
                if ((rc = backward_range(x, gn->shared - 1, 0, e))) break;
                gn_update(gn, x->nheads);
            } else if ((rc = ts_exp_backward(x, e))) {
                break;
            }
            if (x->clip_norm > 0) {
                double gnorm = grad_norm(x);
                if (!isfinite(gnorm)) {
                    rc = ts_fail(e, "step %ld (epoch %ld): the gradient norm is %g; lower [optimizer]"
                                 " lr. The files written so far are kept in %s", step + 1, epoch,
                                 gnorm, dir);
                    break;
                }
                if (gnorm > x->clip_norm) scale_grads(x, (float)(x->clip_norm / gnorm));
            }
            step++;
            for (int i = 0; i < x->ctx.nparams && !rc; i++) {
                ts_param *p = x->ctx.params[i];
                if (p->shared || (p->flags & TS_PARAM_FROZEN)) continue;
                ts_err pe;
                if (oo->step(x->opt_state, p, step, 1.0f, &pe))
                    rc = ts_fail(e, "[optimizer] %s on %s: %s", x->opt_pl->name, p->name, pe.msg);
            }
            ts_params_zero_grad(&x->ctx);
            seen += b;
            loss_acc += total;
            logged_steps++;
            if (step % x->log_every == 0 || s == steps_per_epoch - 1) {
                double t = now(), eps = (seen - seen_log) / (t - t_log > 1e-9 ? t - t_log : 1e-9);
                fprintf(ft, "%ld,%.6f,%ld,%.9g", step, (double)step / steps_per_epoch, seen,
                        loss_acc / logged_steps);
                for (int h = 0; h < x->nheads; h++) {
                    fprintf(ft, ",%.9g", x->heads[h].loss_sum / logged_steps);
                    x->heads[h].loss_sum = 0;
                }
                fprintf(ft, ",%.1f", eps);
                for (int h = 0; gn || x->log_var ? h < x->nheads : 0; h++)
                    fprintf(ft, ",%.6g", gn ? gn->w[h] : exp(-x->log_var->w[h]));
                fprintf(ft, "\n");
                if ((rc = append(ft, tpath, e))) break;
                if (tty) {
                    double done = (double)step / (x->epochs * steps_per_epoch);
                    double eta = (t - t_start) * (1 - done) / (done > 0 ? done : 1);
                    fprintf(log, "\r%s  epoch %ld/%ld  step %ld  loss %.4f  %.0f ex/s  ETA %d:%02d   ",
                            x->name, epoch, x->epochs, step, loss_acc / logged_steps, eps,
                            (int)eta / 60, (int)eta % 60);
                    fflush(log);
                }
                loss_acc = 0;
                logged_steps = 0;
                t_log = t;
                seen_log = seen;
            }
        }
        train_time += now() - t_epoch;
        if (rc) break;
        /* Validation. */
        x->ctx.nmetrics = 0;
        if (x->data.nrows[TS_VALID] > 0 && (rc = ts_exp_evaluate(x, TS_VALID, e))) break;
        write_eval_rows(fe, x, epoch, step);
        if ((rc = append(fe, epath, e))) break;
        double score = NAN;
        int improved = 1;
        if (x->early_stop[0]) {
            if (find_metric(x, x->early_stop, &score)) {
                rc = ts_fail(e, "[train] early_stop = %s: no head reported that figure on the "
                             "validation split; use TASK.METRIC, e.g. %s.%s", x->early_stop,
                             x->ctx.nmetrics ? x->ctx.metrics[0].task : "task",
                             x->ctx.nmetrics ? x->ctx.metrics[0].metric : "auc");
                break;
            }
            improved = isfinite(score) && (minimize ? score < best_score : score > best_score);
        }
        if (improved) {
            best_score = score;
            best_epoch = epoch;
            bad_evals = 0;
            memcpy(best, x->arena, (size_t)nw * sizeof *best);
        } else {
            bad_evals++;
        }
        if (log) {
            if (tty) fprintf(log, "\r");
            fprintf(log, "%s  epoch %ld/%ld  %.1fs  %.0f ex/s", x->name, epoch, x->epochs,
                    now() - t_epoch, ntrain / (train_time > 0 ? train_time / epoch : 1));
            int shown = 0;
            for (int i = 0; i < x->ctx.nmetrics && shown < 4; i++) {
                ts_metric_rec *m = &x->ctx.metrics[i];
                if (!strcmp(m->metric, "loss")) continue;
                fprintf(log, "  valid %s.%s %.4f", m->task, m->metric, m->value);
                shown++;
            }
            fprintf(log, "%s\n", improved && x->early_stop[0] ? "  *" : "");
        }
        if (x->patience > 0 && bad_evals >= x->patience) {
            if (log) fprintf(log, "%s  early stop: %s did not improve for %ld epochs\n", x->name,
                             x->early_stop, x->patience);
            break;
        }
    }
    free(order);
    fclose(ft);
    if (rc) { fclose(fe); free(best); if (gn) gn_free(gn); ow_free(&ow); return -1; }

    /* The best weights, evaluated on validation and test. */
    memcpy(x->arena, best, (size_t)nw * sizeof *best);
    free(best);
    snprintf(path, sizeof path, "%s/params.bin", dir);   /* reloadable: export, recommend */
    rc = ts_save_params(x, path, e);   /* on failure the code below cleans up */
    ts_metric_rec *all = NULL;
    int nall = 0;
    for (int sp = TS_VALID; sp <= TS_TEST && !rc; sp++) {
        if (x->data.nrows[sp] <= 0) continue;
        x->ctx.nmetrics = 0;
        if ((rc = ts_exp_evaluate(x, (ts_phase)sp, e))) break;
        if (ow.task >= 0 && (rc = ow_collect(x, &ow, sp == TS_TEST, e))) break;
        if (sp == TS_TEST) write_eval_rows(fe, x, 0, step);
        ts_metric_rec *m = realloc(all, (size_t)(nall + x->ctx.nmetrics + 8) * sizeof *m);
        if (!m) { rc = ts_fail(e, "out of memory"); break; }
        all = m;
        memcpy(all + nall, x->ctx.metrics, (size_t)x->ctx.nmetrics * sizeof *m);
        nall += x->ctx.nmetrics;
    }
    /* The combined score ([train] output_weights), and the learned task weights. */
    int nextra = 4 + 2 * x->nheads + OW_MAX + 2;
    if (!rc) {
        ts_metric_rec *m = realloc(all, (size_t)(nall + nextra) * sizeof *m);
        if (!m) rc = ts_fail(e, "out of memory");
        else all = m;
    }
    if (!rc && ow.task >= 0 && !(rc = ow_run(&ow, e))) {
        const char *tn = x->heads[ow.task].H.name;
        all[nall++] = (ts_metric_rec){TS_VALID, "combined", "auc", ow.auc[0]};
        if (x->data.nrows[TS_TEST] > 0)
            all[nall++] = (ts_metric_rec){TS_TEST, "combined", "auc", ow.auc[1]};
        for (int k = 0; k < ow.nh; k++) {
            ts_metric_rec r = {TS_TEST, "combined", "", ow.w[k]};
            snprintf(r.metric, sizeof r.metric, "w_%.60s", x->heads[ow.head[k]].H.name);
            all[nall++] = r;
        }
        fprintf(fe, "0,%ld,valid,combined,auc,%.9g\n", step, ow.auc[0]);
        if (x->data.nrows[TS_TEST] > 0)
            fprintf(fe, "0,%ld,test,combined,auc,%.9g\n", step, ow.auc[1]);
        if (log) {
            fprintf(log, "%s  output weights for %s.auc:", x->name, tn);
            for (int k = 0; k < ow.nh; k++)
                fprintf(log, " %s %.1f", x->heads[ow.head[k]].H.name, ow.w[k]);
            fprintf(log, "  (valid combined AUC %.4f)\n", ow.auc[0]);
        }
    }
    for (int h = 0; !rc && (gn || x->log_var) && h < x->nheads; h++) {
        ts_metric_rec r = {TS_TRAIN, "", "", 0};
        snprintf(r.task, sizeof r.task, "%s", gn ? "gradnorm" : "uncertainty");
        snprintf(r.metric, sizeof r.metric, "%s%.50s", gn ? "w_" : "log_var_", x->heads[h].H.name);
        r.value = gn ? gn->w[h] : x->log_var->w[h];
        all[nall++] = r;
    }
    if (gn) gn_free(gn);
    ow_free(&ow);
    fclose(fe);
    if (!rc) {
        /* Reports of layers and heads (gates.csv, item vectors...). */
        for (int i = 0; i < x->nnodes && !rc; i++) {
            ts_node *nd = &x->nodes[i];
            ts_err pe;
            if (nd->ops->report && nd->ops->report(&nd->L, dir, &pe))
                rc = ts_fail(e, "[%s] report: %s", nd->cfg->name, pe.msg);
        }
        for (int h = 0; h < x->nheads && !rc; h++) {
            ts_hnode *hn = &x->heads[h];
            ts_err pe;
            if (hn->ops->report && hn->ops->report(&hn->H, dir, &pe))
                rc = ts_fail(e, "[%s] report: %s", hn->cfg->name, pe.msg);
        }
    }
    if (!rc) {
        ts_metric_rec extra[4] = {
            {TS_TRAIN, "run", "examples_per_sec", seen / (train_time > 0 ? train_time : 1)},
            {TS_TRAIN, "run", "seconds", now() - t_start},
            {TS_TRAIN, "run", "best_epoch", (double)best_epoch},
            {TS_TRAIN, "run", "steps", (double)step}};
        memcpy(all + nall, extra, sizeof extra);   /* room reserved above (nextra) */
        nall += 4;
        char mpath[TS_PATH_MAX + 32];
        snprintf(mpath, sizeof mpath, "%s/metrics.json", dir);
        rc = ts_write_metrics_json(mpath, all, nall, e);
        if (!rc && log) {
            for (int i = 0; i < nall; i++)
                if (all[i].split == TS_TEST && strcmp(all[i].metric, "loss"))
                    fprintf(log, "%s  test %s.%s = %.4f\n", x->name, all[i].task, all[i].metric,
                            all[i].value);
            fprintf(log, "%s  results in %s\n", x->name, dir);
        }
    }
    free(all);
    return rc;
}

int ts_run(const char *ini_path, const ts_run_opts *o, ts_err *e)
{
    ts_exp *x = ts_exp_load(ini_path, o, e);
    if (!x) return -1;
    FILE *log = o ? o->log : NULL;
    int rc = ts_exp_train(x, log, e);
    ts_exp_free(x);
    return rc;
}
