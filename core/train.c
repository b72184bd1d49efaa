/* train.c — the training loop: seeded shuffling, batches, the heads' weighted losses
 * (static or learned by uncertainty), the NaN guard, gradient clipping, optimizer steps,
 * evaluation each epoch, early stopping with the best weights kept, the test evaluation, and
 * the run's files (config.ini, train.csv, eval.csv, metrics.json). */
#include "internal.h"
#include "dist.h"
#include "ranking.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

/* The weights training changes: no tied copy twice, no frozen table (train.run.params, the
 * "parameters" column of a comparison's report). */
static long trainable_weights(const ts_exp *x)
{
    long n = 0;
    for (int i = 0; i < x->ctx.nparams; i++) {
        const ts_param *p = x->ctx.params[i];
        if (!p->shared && !(p->flags & TS_PARAM_FROZEN)) n += (long)p->rows * p->cols;
    }
    return n;
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

/* Evaluates n rows of the reader's split `from` (map[i], or i without a map) with the heads in
 * phase `split`. */
static int evaluate_rows(ts_exp *x, ts_phase split, ts_phase from, const long *map, long n,
                           ts_err *e)
{
    x->ctx.phase = split;
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        ts_err pe;
        if (TS_OP(hn->ops, eval_begin) && hn->ops->eval_begin(&hn->H, split, &pe))
            return ts_fail(e, "[%s] eval: %s", hn->cfg->name, pe.msg);
    }
    long *rows = malloc((size_t)x->eval_batch * sizeof *rows);
    if (!rows) return ts_fail(e, "out of memory");
    for (long s = 0; s < n; s += x->eval_batch) {
        int b = (int)(n - s < x->eval_batch ? n - s : x->eval_batch);
        for (int i = 0; i < b; i++) rows[i] = map ? map[s + i] : s + i;
        if (load_batch(x, from, rows, b, e) || ts_exp_forward(x, split, b, e)) {
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
        if (TS_OP(hn->ops, eval_end) && hn->ops->eval_end(&hn->H, split, &pe))
            return ts_fail(e, "[%s] eval: %s", hn->cfg->name, pe.msg);
    }
    return 0;
}


int ts_exp_evaluate(ts_exp *x, ts_phase split, ts_err *e)
{
    return evaluate_rows(x, split, split, NULL, x->data.nrows[split], e);
}

/* The selection split: training rows of the reader, held out of training (holdout.c), evaluated
 * as a validation split; its figures are recorded as TS_SELECT. */
int ts_exp_evaluate_select(ts_exp *x, ts_err *e)
{
    int first = x->ctx.nmetrics;
    if (evaluate_rows(x, TS_VALID, TS_TRAIN, x->select_rows, x->nselect, e)) return -1;
    for (int i = first; i < x->ctx.nmetrics; i++) x->ctx.metrics[i].split = TS_SELECT;
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

/* sum of g[j]^2 in double, four accumulators so the loop pipelines (it runs every step). The
 * AVX path keeps the four accumulators as the four lanes of one register, each adding the same
 * terms in the same order as s0..s3 below, so both paths give the same bits; it exists because
 * GCC at -O2 leaves the scalar loop scalar, and this pass over every gradient was 3-4 % of the
 * YouTube DNN's training (perf, issue 17). */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx")))
static double sumsq_avx(const float *g, long n)
{
    __m256d acc = _mm256_setzero_pd();
    long j = 0;
    for (; j + 4 <= n; j += 4) {
        __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(g + j));
        acc = _mm256_add_pd(acc, _mm256_mul_pd(v, v));
    }
    double s[4];
    _mm256_storeu_pd(s, acc);
    for (; j < n; j++) s[0] += (double)g[j] * g[j];
    return (s[0] + s[1]) + (s[2] + s[3]);
}
#endif

static double sumsq(const float *g, long n)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx")) return sumsq_avx(g, n);
#endif
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    long j = 0;
    for (; j + 4 <= n; j += 4) {
        s0 += (double)g[j] * g[j];
        s1 += (double)g[j + 1] * g[j + 1];
        s2 += (double)g[j + 2] * g[j + 2];
        s3 += (double)g[j + 3] * g[j + 3];
    }
    for (; j < n; j++) s0 += (double)g[j] * g[j];
    return (s0 + s1) + (s2 + s3);
}

/* sharded: tables split across ranks (TS_PARAM_SHARDED, size > 1): each rank holds its rows'
 * gradients only, so their squares are summed over the ranks (a collective call); the other
 * gradients are alike on every rank. */
static double grad_norm_of(ts_exp *x, int sharded)
{
    double s = 0, sh = 0;
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        if (p->shared || (p->flags & TS_PARAM_FROZEN)) continue;
        if (p->flags & TS_PARAM_SPARSE) {
            double *acc = sharded && (p->flags & TS_PARAM_SHARDED) ? &sh : &s;
            for (int k = 0; k < p->ntouched; k++)
                *acc += sumsq(p->g + (size_t)p->touched[k] * p->cols, p->cols);
        } else {
            s += sumsq(p->g, (long)p->rows * p->cols);
        }
    }
    if (sharded) {
        ts_err ie;
        if (ts_dist_sum(&sh, 1, &ie)) return NAN;   /* the caller stops on a non-finite norm */
        s += sh;
    }
    return sqrt(s);
}

static double grad_norm(ts_exp *x)
{
    return grad_norm_of(x, 0);
}

/* 1 when every gradient is finite: the NaN guard's question when there is no clipping (the
 * norm in double is non-finite exactly when a gradient is: squares of floats cannot overflow a
 * double's sum). n * 0 is 0 for a finite n and NaN for an infinity or a NaN, and a NaN stays
 * in the sum; AVX does 8 floats per instruction without the conversion to double that
 * sumsq needs, so the guard costs about a third of the norm (issue 17). */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx")))
static int finite_avx(const float *g, long n)
{
    const __m256 Z = _mm256_setzero_ps();
    __m256 acc = Z;
    long j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(g + j), Z));
    float a[8];
    _mm256_storeu_ps(a, acc);
    float t = 0;
    for (int k = 0; k < 8; k++) t += a[k];
    for (; j < n; j++) t += g[j] * 0.0f;
    return t == 0;
}
#endif

static int finite_span(const float *g, long n)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx")) return finite_avx(g, n);
#endif
    for (long j = 0; j < n; j++)
        if (!isfinite(g[j])) return 0;
    return 1;
}

/* d += s over n floats ([train] replicas: adding a copy's gradients); each sum is one IEEE
 * addition, whatever the path. */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx")))
static void vec_add_avx(float *d, const float *s, long n)
{
    long j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(d + j, _mm256_add_ps(_mm256_loadu_ps(d + j), _mm256_loadu_ps(s + j)));
    for (; j < n; j++) d[j] += s[j];
}
#endif

static void vec_add(float *d, const float *s, long n)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx")) { vec_add_avx(d, s, n); return; }
#endif
    for (long j = 0; j < n; j++) d[j] += s[j];
}

static int param_finite(const ts_param *p)
{
    if (!(p->flags & TS_PARAM_SPARSE)) return finite_span(p->g, (long)p->rows * p->cols);
    for (int k = 0; k < p->ntouched; k++)
        if (!finite_span(p->g + (size_t)p->touched[k] * p->cols, p->cols)) return 0;
    return 1;
}

/* The NaN guard where it is not the optimizer's pieces' own (optimizer_step): an optimizer
 * without TS_BRANCH_SAFE, or a single parameter. */
static int grads_finite(ts_exp *x)
{
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        if (!p->shared && !(p->flags & TS_PARAM_FROZEN) && !param_finite(p)) return 0;
    }
    return 1;
}

/* skip_sharded: leave split tables alone (their rows were weighted as they left each rank). */
static void scale_grads_of(ts_exp *x, float c, int skip_sharded)
{
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        if (p->shared || (skip_sharded && (p->flags & TS_PARAM_SHARDED))) continue;
        if (p->flags & TS_PARAM_SPARSE) {
            for (int k = 0; k < p->ntouched; k++)
                cblas_sscal(p->cols, c, p->g + (size_t)p->touched[k] * p->cols, 1);
        } else {
            cblas_sscal(p->rows * p->cols, c, p->g, 1);
        }
    }
}

static void scale_grads(ts_exp *x, float c)
{
    scale_grads_of(x, c, 0);
}

static int append(FILE *f, const char *path, ts_err *e)
{
    errno = 0;
    if (fflush(f) || ferror(f))
        return ts_write_error(e, path, errno ? errno : EIO,
                              "the run stopped; its last checkpoint is kept (tessera resume "
                              "continues from it once there is room)");
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
 * [train] output_weights = TASK.FIGURE ranks by one score s = sum_k w_k p_k over the heads that
 * hand out their per-row predictions (binary: probabilities; regression: values; match, hybrid,
 * bm25: each row's own pair score). Every w_k runs over 0, 0.1, ..., 1; a vector that is a
 * multiple of another (0.2, 0.4 and 0.1, 0.2) is tried once, since the figures depend only on the
 * order of the scores, so on w up to a positive factor. The weights with the best FIGURE of TASK's
 * label on the validation split are then scored on the test split: valid.combined.FIGURE,
 * test.combined.*, test.combined.w_HEAD (scaled so that the largest weight is 1, which changes no
 * ranking). A weight vector that is 1 on TASK and 0 elsewhere is in the grid, so the validation
 * figure is never below the task's own.
 *   FIGURE = auc: one ranking of every row of the split, the scores as the heads give them.
 *   FIGURE = map, mrr or ndcg@10: late fusion of rankers. Each query (the rows of one value of the
 *   group field, [train] output_group, by default group_by's) ranks its own rows, as a head with
 *   rank = group does (core/ranking.h; ties by a fixed hash of the row). Heads' scores live on
 *   different scales (a cosine, a BM25 score), so each is standardised by its mean and standard
 *   deviation on the validation split first (the same shift and scale on test); w_HEAD are the
 *   weights of those standardised scores. */
#define OW_MAX 4
enum { OW_AUC, OW_MRR, OW_MAP, OW_NDCG10 };
static const char *const ow_figures[] = {"auc", "mrr", "map", "ndcg@10"};

typedef struct outw {
    int task;                     /* x->heads index whose label is ranked; -1 = off */
    int figure;                   /* OW_* */
    char tname[TS_NAME_MAX];      /* the task's name */
    int nh, head[OW_MAX];         /* heads whose scores are combined */
    char group[TS_NAME_MAX];      /* ranking figures: the group field */
    float *score[2][OW_MAX];      /* [valid, test][k] (n[split]) copies of their scores */
    float *label[2];              /* [valid, test] (n[split]) the task's labels */
    int32_t *gid[2];              /* [valid, test] (n[split]) ranking figures: each row's group */
    long n[2];
    double w[OW_MAX];             /* the chosen weights */
    double best[2];               /* the combined figure on valid and test */
    rk_acc acc[2];                /* ranking figures: every figure of the chosen weights */
} outw;

static void ow_free(outw *o)
{
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < OW_MAX; k++) free(o->score[s][k]);
        free(o->label[s]);
        free(o->gid[s]);
    }
}

static int ow_init(ts_exp *x, outw *o, ts_err *e)
{
    memset(o, 0, sizeof *o);
    o->task = -1;
    ts_cfg *ct = ts_ini_find(&x->ini, "train");
    const char *v = ct ? ts_cfg_str(ct, "output_weights") : NULL;
    if (!v || !*v) return 0;
    const char *where = ts_cfg_where(ct, "output_weights");
    const char *dot = strchr(v, '.');
    o->figure = -1;
    for (int f = 0; dot && f < 4; f++)
        if (!strcmp(dot + 1, ow_figures[f])) o->figure = f;
    if (o->figure < 0)
        return ts_fail(e, "%s: [train] output_weights = %s: name a task and a figure, TASK.auc "
                       "(one ranking of all rows) or TASK.map, TASK.mrr, TASK.ndcg@10 (each "
                       "query's own rows, grouped by [train] output_group)", where, v);
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        if (!TS_OP(hn->ops, predictions)) continue;
        if (strlen(hn->H.name) == (size_t)(dot - v) && !strncmp(hn->H.name, v, (size_t)(dot - v)))
            o->task = h, snprintf(o->tname, sizeof o->tname, "%s", hn->H.name);
        if (o->nh == OW_MAX)
            return ts_fail(e, "%s: [train] output_weights: more than %d heads offer predictions; "
                           "the grid (11^K weight vectors) grows too fast beyond that", where,
                           OW_MAX);
        o->head[o->nh++] = h;
    }
    if (o->task < 0)
        return ts_fail(e, "%s: [train] output_weights = %s: no head of that name hands out its "
                       "predictions (binary, regression, match, hybrid and bm25 heads do)",
                       where, v);
    if (o->nh < 2)
        return ts_fail(e, "%s: [train] output_weights needs two or more heads to combine", where);
    if (x->data.nrows[TS_VALID] <= 0)
        return ts_fail(e, "%s: [train] output_weights chooses the weights on the validation "
                       "split, which is empty; give [data] a validation split", where);
    if (o->figure == OW_AUC) return 0;
    const char *g = ts_cfg_str(ct, "output_group");
    if (!g || !*g) g = ts_cfg_str(ct, "group_by");
    if (!g || !*g)
        return ts_fail(e, "%s: [train] output_weights = %s ranks each query's own rows: name the "
                       "field that groups them, [train] output_group = FIELD (textpairs: qid)",
                       where, v);
    const ts_tensor *f = ts_ctx_field(&x->ctx, g);
    if (!f || f->dtype != TS_I32 || ts_rowsize(f) != 1)
        return ts_fail(e, "%s: [train] output_group = %s: name an I32 field of one id per row "
                       "that the dataset declares (textpairs: qid)",
                       ts_cfg_where(ct, ts_cfg_str(ct, "output_group") ? "output_group" :
                                        "group_by"), g);
    snprintf(o->group, sizeof o->group, "%s", g);
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Ranking figures: before training, that the group field gathers the validation rows into
 * queries of two rows or more (a field of one row per value leaves nothing to rank). */
static int ow_groups(ts_exp *x, outw *o, int split, long n, ts_err *e);
static int ow_check_groups(ts_exp *x, outw *o, ts_err *e)
{
    if (o->task < 0 || o->figure == OW_AUC) return 0;
    long n = x->data.nrows[TS_VALID];
    if (ow_groups(x, o, 0, n, e)) return -1;
    int32_t *g = malloc((size_t)(n ? n : 1) * sizeof *g);
    if (!g) return ts_fail(e, "out of memory");
    memcpy(g, o->gid[0], (size_t)n * sizeof *g);
    qsort(g, (size_t)n, sizeof *g, cmp_i32);
    long shared = 0;
    for (long i = 1; i < n; i++) shared += g[i] == g[i - 1];
    free(g);
    if (shared) return 0;
    ts_cfg *ct = ts_ini_find(&x->ini, "train");
    return ts_fail(e, "%s: [train] output_weights = %s.%s ranks each query's own rows, but every "
                   "value of the group field %s holds one row of the validation split: there is "
                   "nothing to rank; name the field of the queries, [train] output_group",
                   ts_cfg_where(ct, "output_weights"), o->tname, ow_figures[o->figure], o->group);
}

/* Reads the group field of every row of a split, in the order of its rows. */
static int ow_groups(ts_exp *x, outw *o, int split, long n, ts_err *e)
{
    ts_phase sp = split ? TS_TEST : TS_VALID;
    const ts_tensor *f = ts_ctx_field(&x->ctx, o->group);
    long *rows = malloc((size_t)x->eval_batch * sizeof *rows);
    free(o->gid[split]);
    o->gid[split] = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    int rc = !rows || !o->gid[split] ? ts_fail(e, "out of memory") : 0;
    for (long s = 0; !rc && s < n; s += x->eval_batch) {
        int b = (int)(n - s < x->eval_batch ? n - s : x->eval_batch);
        for (int i = 0; i < b; i++) rows[i] = s + i;
        if (!(rc = load_batch(x, sp, rows, b, e)))
            memcpy(o->gid[split] + s, f->ids, (size_t)b * sizeof(int32_t));
    }
    free(rows);
    return rc;
}

/* Copies the last evaluation's scores (split 0 valid, 1 test). */
static int ow_collect(ts_exp *x, outw *o, int split, ts_err *e)
{
    for (int k = 0; k < o->nh; k++) {
        ts_hnode *hn = &x->heads[o->head[k]];
        const float *sc, *lb;
        long n;
        if (hn->ops->predictions(&hn->H, &sc, &lb, &n) || (k && n != o->n[split]) ||
            n != x->data.nrows[split ? TS_TEST : TS_VALID])
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
    return o->figure == OW_AUC ? 0 : ow_groups(x, o, split, o->n[split], e);
}

static int gcd(int a, int b) { while (b) { int t = a % b; a = b; b = t; } return a; }

/* What the search maximises: AUC of all rows, or a ranking figure of each group's own rows. */
typedef struct {
    int figure;
    const float *label;
    long n;
    rk_groups g;                  /* ranking figures: the rows by group */
    float *sc;                    /* scratch: a group's scores */
    uint32_t *tie;                /* a group's tie keys */
    long *rel, *ranks;
} ow_obj;

static void ow_obj_free(ow_obj *b)
{
    rk_groups_free(&b->g);
    free(b->sc); free(b->tie); free(b->rel); free(b->ranks);
}

/* Returns -1 when out of memory. */
static int ow_obj_make(ow_obj *b, int figure, const float *label, const int32_t *group, long n)
{
    memset(b, 0, sizeof *b);
    b->figure = figure;
    b->label = label;
    b->n = n;
    if (figure == OW_AUC) return 0;
    int32_t *doc = malloc((size_t)(n ? n : 1) * sizeof *doc);
    if (!doc) return -1;
    for (long i = 0; i < n; i++) doc[i] = (int32_t)i;   /* every row its own candidate */
    int rc = rk_groups_make(&b->g, group, doc, n);
    free(doc);
    long m = 1;
    for (long q = 0; !rc && q < b->g.nq; q++)
        if (b->g.qstart[q + 1] - b->g.qstart[q] > m) m = b->g.qstart[q + 1] - b->g.qstart[q];
    b->sc = malloc((size_t)m * sizeof *b->sc);
    b->tie = malloc((size_t)m * sizeof *b->tie);
    b->rel = malloc((size_t)m * sizeof *b->rel);
    b->ranks = malloc((size_t)m * sizeof *b->ranks);
    if (rc || !b->sc || !b->tie || !b->rel || !b->ranks) { ow_obj_free(b); return -1; }
    return 0;
}

/* Each group's own rows ranked by s: the accumulated figures into acc. */
static void ow_rank(ow_obj *b, const float *s, rk_acc *acc)
{
    memset(acc, 0, sizeof *acc);
    for (long q = 0; q < b->g.nq; q++) {
        const long *rows = b->g.order + b->g.qstart[q];
        long m = b->g.qstart[q + 1] - b->g.qstart[q], R = 0;
        for (long k = 0; k < m; k++) {
            b->sc[k] = s[rows[k]];
            b->tie[k] = rk_tie((int32_t)rows[k]);
            if (b->label[rows[k]] > 0.5f) b->rel[R++] = k;
        }
        rk_add(acc, b->sc, b->tie, m, b->rel, R, b->ranks);
    }
}

static double ow_figure(ow_obj *b, const float *s)
{
    if (b->figure == OW_AUC) return ts_auc(s, b->label, NULL, b->n);
    rk_acc a;
    ow_rank(b, s, &a);
    if (a.nq <= 0) return NAN;
    return (b->figure == OW_MRR ? a.rr : b->figure == OW_MAP ? a.ap : a.ndcg10) / (double)a.nq;
}

/* The figure of the combined score sum_k w[k] score[k][i]; buf is (n) scratch. */
static double combined(ow_obj *b, const float *const *score, int K, const double *w, float *buf)
{
    for (long i = 0; i < b->n; i++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += w[k] * score[k][i];
        buf[i] = (float)s;
    }
    return ow_figure(b, buf);
}

/* The grid search over w in {0, 0.1, ..., 1}^K (multiples tried once): the weights with the best
 * figure into best_w (K, scaled so that the largest is 1), the figure into *best; ties keep the
 * first found. buf is (n) scratch. Returns -1 when no figure is defined (AUC: one class only;
 * ranking: no group with a relevant row). */
static int ow_search(ow_obj *b, const float *const *score, int K, double *best_w, double *best,
                     float *buf)
{
    if (K < 1 || K > OW_MAX) return -1;
    long combos = 1;
    for (int k = 0; k < K; k++) combos *= 11;
    *best = -INFINITY;
    for (long c = 1; c < combos; c++) {
        int a[OW_MAX], g = 0;
        long r = c;
        for (int k = 0; k < K; k++) { a[k] = (int)(r % 11); r /= 11; g = gcd(g, a[k]); }
        if (g != 1) continue;                  /* a multiple of a vector tried already */
        double w[OW_MAX];
        for (int k = 0; k < K; k++) w[k] = a[k] / 10.0;
        double f = combined(b, score, K, w, buf);
        if (f > *best) {
            *best = f;
            memcpy(best_w, w, (size_t)K * sizeof *w);
        }
    }
    /* Report the chosen direction with its largest weight 1: (0.1, 0) reads (1, 0). */
    double mx = 0;
    for (int k = 0; k < K; k++) mx = best_w[k] > mx ? best_w[k] : mx;
    for (int k = 0; k < K && mx > 0; k++) best_w[k] /= mx;
    return isfinite(*best) ? 0 : -1;
}

/* The searches on AUC and on a ranking figure ("mrr", "map", "ndcg@10") of each group's own rows
 * (raw scores: the caller standardises). Used by train.c's test (internal.h-free prototypes). */
int ts_output_weights_search(const float *const *score, int K, const float *label, long n,
                             double *best_w, double *best_auc, float *buf);
int ts_output_weights_search(const float *const *score, int K, const float *label, long n,
                             double *best_w, double *best_auc, float *buf)
{
    ow_obj b;
    ow_obj_make(&b, OW_AUC, label, NULL, n);
    return ow_search(&b, score, K, best_w, best_auc, buf);
}
int ts_output_weights_rank(const float *const *score, int K, const float *label,
                           const int32_t *group, long n, const char *figure, double *best_w,
                           double *best, float *buf);
int ts_output_weights_rank(const float *const *score, int K, const float *label,
                           const int32_t *group, long n, const char *figure, double *best_w,
                           double *best, float *buf)
{
    int f = 1;
    while (f < 4 && strcmp(figure, ow_figures[f])) f++;
    ow_obj b;
    if (f == 4 || ow_obj_make(&b, f, label, group, n)) return -1;
    int rc = ow_search(&b, score, K, best_w, best, buf);
    ow_obj_free(&b);
    return rc;
}

/* Ranking figures: each head's scores shifted and scaled by their validation mean and standard
 * deviation, on both splits (a constant score becomes 0). */
static void ow_standardise(outw *o)
{
    for (int k = 0; k < o->nh; k++) {
        double m = 0, v = 0;
        long n = o->n[0];
        for (long i = 0; i < n; i++) m += o->score[0][k][i];
        m = n ? m / (double)n : 0;
        for (long i = 0; i < n; i++) v += (o->score[0][k][i] - m) * (o->score[0][k][i] - m);
        double sd = n > 1 ? sqrt(v / (double)(n - 1)) : 0;
        for (int s = 0; s < 2; s++)
            for (long i = 0; i < o->n[s]; i++)
                o->score[s][k][i] = sd > 0 && isfinite(sd) ?
                                    (float)((o->score[s][k][i] - m) / sd) : 0.0f;
    }
}

static int ow_run(outw *o, ts_err *e)
{
    long n = o->n[0] > o->n[1] ? o->n[0] : o->n[1];
    float *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
    if (!buf) return ts_fail(e, "out of memory");
    if (o->figure != OW_AUC) ow_standardise(o);
    ow_obj b[2];
    for (int s = 0; s < 2; s++)
        if (ow_obj_make(&b[s], o->figure, o->label[s], o->gid[s], o->n[s])) {
            if (s) ow_obj_free(&b[0]);
            free(buf);
            return ts_fail(e, "out of memory");
        }
    int rc = 0;
    if (o->figure != OW_AUC && b[0].g.nq == o->n[0])
        rc = ts_fail(e, "[train] output_weights = %s.%s ranks each query's own rows, but every "
                     "value of the group field %s holds one row of the validation split: there "
                     "is nothing to rank; name the field of the queries, [train] output_group",
                     o->tname, ow_figures[o->figure], o->group);
    else if (ow_search(&b[0], (const float *const *)o->score[0], o->nh, o->w, &o->best[0], buf))
        rc = ts_fail(e, "[train] output_weights: %s", o->figure == OW_AUC ?
                     "the validation split has one class only; there is no AUC to maximise" :
                     "no query of the validation split has a relevant row; there is no "
                     "ranking figure to maximise");
    else {
        o->best[1] = o->n[1] ? combined(&b[1], (const float *const *)o->score[1], o->nh, o->w,
                                        buf) : NAN;
        if (o->figure != OW_AUC)
            for (int s = 0; s < 2; s++) {
                combined(&b[s], (const float *const *)o->score[s], o->nh, o->w, buf);
                ow_rank(&b[s], buf, &o->acc[s]);
            }
    }
    ow_obj_free(&b[0]);
    ow_obj_free(&b[1]);
    free(buf);
    return rc;
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

/* The first place, from the top of the graph down (the order of the backward pass), where a
 * gradient is not finite: a layer's output gradient or one of its parameters' gradients. */
static const char *first_nonfinite_grad(ts_exp *x, char *buf, size_t cap)
{
    for (int i = x->nnodes - 1; i >= 0; i--) {
        ts_node *nd = &x->nodes[i];
        for (int k = 0; k < nd->L.nout; k++) {
            ts_tensor *t = &nd->L.out[k];
            if (t->dtype != TS_F32 || !t->dx) continue;
            long n = ts_numel(t);
            for (long j = 0; j < n; j++)
                if (!isfinite(t->dx[j])) {
                    /* the backward of a layer that takes this output wrote it, or a head did */
                    const char *from = NULL;
                    for (int q = i + 1; q < x->nnodes && !from; q++)
                        for (int r = 0; r < x->nodes[q].L.nin; r++)
                            if (x->nodes[q].L.in[r] == t) from = x->nodes[q].cfg->name;
                    snprintf(buf, cap, "the gradient of [%s]'s output%s%s%s", nd->cfg->name,
                             from ? ", passed down by [" : " (from the heads)", from ? from : "",
                             from ? "]'s backward" : "");
                    return buf;
                }
        }
        for (int k = 0; k < nd->nparam; k++) {
            ts_param *p = x->ctx.params[nd->first_param + k];
            if (p->shared || (p->flags & TS_PARAM_SPARSE)) continue;
            long n = (long)p->rows * p->cols;
            for (long j = 0; j < n; j++)
                if (!isfinite(p->g[j])) {
                    snprintf(buf, cap, "the gradient of %s", p->name);
                    return buf;
                }
        }
    }
    return NULL;
}

/* ---- [train] group_by ---------------------------------------------------------------------------
 * A ranking loss over a query's candidates (the match and hybrid heads' in-batch negatives) needs
 * them in one batch. With group_by = FIELD (an I32 field of one id per row, e.g. textpairs' qid)
 * each epoch's shuffle keeps the rows of a group together: the rows are shuffled as usual, then
 * the groups are put in a random order of their own and every group's rows follow each other
 * (in their shuffled order). Batches are still cut every `batch` rows, so a group may straddle
 * two batches. The draws of the ordinary shuffle are unchanged; the groups' draws follow them. */
typedef struct { int32_t v; long row; } group_key;

static int by_group_key(const void *a, const void *b)
{
    const group_key *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* Reads the training rows' values of the group field and numbers them 0..ngroups-1. */
static int group_init(ts_exp *x, long **group, long *ngroups, ts_err *e)
{
    ts_cfg *ct = ts_ini_find(&x->ini, "train");
    const char *name = ct ? ts_cfg_str(ct, "group_by") : NULL;
    *group = NULL;
    *ngroups = 0;
    if (!name || !*name) return 0;
    if (x->data.stream)
        return ts_fail(e, "%s: [train] group_by needs every training row in memory, and [data] "
                       "stream = true reads them as a stream; drop one of them",
                       ts_cfg_where(ct, "group_by"));
    const ts_tensor *f = ts_ctx_field(&x->ctx, name);
    if (!f || f->dtype != TS_I32 || ts_rowsize(f) != 1)
        return ts_fail(e, "%s: [train] group_by = %s: name an I32 field of one id per row that "
                       "the dataset declares (textpairs: qid)", ts_cfg_where(ct, "group_by"), name);
    long n = x->train_rows ? x->ntrain_rows : x->data.nrows[TS_TRAIN], B = x->batch;
    group_key *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    long *rows = malloc((size_t)B * sizeof *rows);
    *group = malloc((size_t)(n ? n : 1) * sizeof **group);
    int rc = !k || !rows || !*group ? ts_fail(e, "out of memory") : 0;
    for (long s = 0; !rc && s < n; s += B) {
        int b = (int)(n - s < B ? n - s : B);
        for (int i = 0; i < b; i++) rows[i] = x->train_rows ? x->train_rows[s + i] : s + i;
        rc = load_batch(x, TS_TRAIN, rows, b, e);
        for (int i = 0; !rc && i < b; i++) k[s + i] = (group_key){f->ids[i], s + i};
    }
    if (!rc) qsort(k, (size_t)n, sizeof *k, by_group_key);
    for (long i = 0; !rc && i < n; i++) {
        if (i == 0 || k[i].v != k[i - 1].v) (*ngroups)++;
        (*group)[k[i].row] = *ngroups - 1;
    }
    free(k);
    free(rows);
    if (rc) { free(*group); *group = NULL; }
    return rc;
}

/* Reorders order (n rows, already shuffled) so that each group's rows are adjacent, the groups
 * in a random order (internal.h: its test calls it). */
int ts_group_order(long *order, long n, const long *group, long ng, ts_rng *rng, ts_err *e)
{
    long *perm = malloc((size_t)(ng ? ng : 1) * sizeof *perm);   /* place k holds group perm[k] */
    long *place = malloc((size_t)(ng ? ng : 1) * sizeof *place); /* group g sits at place[g] */
    long *start = calloc((size_t)ng + 1, sizeof *start);         /* where each place begins */
    long *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    int rc = 0;
    if (!perm || !place || !start || !out) {
        rc = ts_fail(e, "out of memory");
        goto done;
    }
    for (long g = 0; g < ng; g++) perm[g] = g;
    ts_rng_shuffle(rng, perm, ng);
    for (long k = 0; k < ng; k++) place[perm[k]] = k;
    for (long i = 0; i < n; i++) start[place[group[order[i]]] + 1]++;
    for (long k = 0; k < ng; k++) start[k + 1] += start[k];
    for (long i = 0; i < n; i++) out[start[place[group[order[i]]]]++] = order[i];
    memcpy(order, out, (size_t)n * sizeof *order);
done:
    free(perm); free(place); free(start); free(out);
    return rc;
}

/* The pieces of the optimizer step (below, "the optimizer step"). */
#define NBAND 4
#define BAND_MIN 65536L           /* floats of touched rows from which a table is banded */
#define SUB 64                    /* rows of a band updated at a time (opt_task) */

typedef struct piece {
    int param, band;              /* band -1: the whole parameter */
    long work;                    /* floats it covers */
    ts_param copy;                /* a band: its view of the table */
} piece;

struct bands {
    int32_t *list;                /* (rows) the bands' touched rows, band after band */
    uint8_t *mask;                /* (NBAND, rows) each band's is_touched */
    int on;                       /* banded this step */
};

/* ---- the run ----------------------------------------------------------------------------------
 * One trainer holds what the loop's pieces share. l is the state a checkpoint saves (internal.h);
 * the rest is rebuilt on resume. */
typedef struct trainer {
    ts_exp *x;
    FILE *log, *ft, *fe;
    char tpath[TS_PATH_MAX + 32], epath[TS_PATH_MAX + 32];
    int writer;                   /* rank 0: writes the run's files */
    int sharded;                  /* a table is split across the ranks (TS_PARAM_SHARDED, size > 1) */
    int rank, size;               /* data-parallel ranks (dist.h); 0 and 1 in one process */
    int tty, minimize;
    long steps_per_epoch, global_batch;
    double t_start, t_log, t_seg; /* run start, last log line, start of the timed segment */
    double t_progress;            /* the last progress line on a log that is not a terminal */
    int live;                     /* the width of a terminal's live line shown (0: none) */
    gradnorm gnst, *gn;
    outw ow;
    ts_loop l;
    long *group;                  /* [train] group_by: (ntrain) each training row's group, dense */
    long *rowbuf;                 /* (batch) a step's rows mapped through x->train_rows */
    long ngroups;
    int stream;                   /* [data] stream = true: training rows come from stream_next */
    int stream_on;                /* the epoch's stream has begun */
    long *share;                  /* streamed: (size) every rank's training rows */
    struct replicas *rs;          /* [train] replicas > 1: the other copies of the graph */
    int *opt_rc;                  /* (nparams * NBAND) the pieces' results (optimizer_step) */
    ts_err *opt_err;
    unsigned char *pc_ok;         /* (nparams * NBAND) the guard's */
    struct piece *pc;             /* the pool's pieces of the guard and the optimizer step */
    int npc;
    struct bands *bd;             /* (nparams) a banded table's lists and masks */
    int prefetch;                 /* the reader fills a batch while the optimizer runs (below) */
    long pre_s;                   /* the step of the epoch whose rows the fields hold, or -1 */
    int pre_rc;
    ts_err pre_err;
} trainer;

static void replicas_free(struct replicas *S);
static int replicas_init(trainer *t, ts_err *e);

static void trainer_free(trainer *t)
{
    replicas_free(t->rs);
    t->rs = NULL;
    free(t->opt_rc); free(t->opt_err); free(t->pc_ok);
    t->opt_rc = NULL; t->opt_err = NULL; t->pc_ok = NULL;
    for (int i = 0; t->bd && i < t->x->ctx.nparams; i++) { free(t->bd[i].list); free(t->bd[i].mask); }
    free(t->bd); free(t->pc);
    t->bd = NULL; t->pc = NULL;
    ts_pool_free(t->x->pool);
    t->x->pool = t->x->ctx.pool = NULL;
    if (t->ft) fclose(t->ft);
    if (t->fe) fclose(t->fe);
    t->ft = t->fe = NULL;
    if (t->gn) gn_free(t->gn);
    t->gn = NULL;
    ow_free(&t->ow);
    free(t->group);
    t->group = NULL;
    free(t->rowbuf);
    t->rowbuf = NULL;
    free(t->l.order);
    free(t->l.best);
    free(t->l.spos);
    free(t->share);
    t->l.order = NULL;
    t->l.best = NULL;
    t->l.spos = NULL;
    t->share = NULL;
}

/* Adds the time since the last mark to the training time (checkpoints save it). */
static void mark_time(trainer *t)
{
    double n = now();
    t->l.train_time += n - t->t_seg;
    t->t_seg = n;
}

/* Streamed data: every rank's position of its stream into l->spos (a collective call). */
static int gather_positions(trainer *t, ts_err *e)
{
    ts_loop *l = &t->l;
    double *v = calloc((size_t)l->nspos, sizeof *v);
    if (!v) return ts_fail(e, "out of memory");
    int64_t pos[TS_STREAM_POS] = {0};
    const ts_dataset_ops *ops = t->x->data_pl->ops;
    if (t->stream_on) ops->stream_pos(&t->x->data, pos);
    else pos[0] = l->epoch;   /* not begun: the epoch's start */
    for (int k = 0; k < TS_STREAM_POS; k++) v[t->rank * TS_STREAM_POS + k] = (double)pos[k];
    int rc = t->size > 1 ? ts_dist_sum(v, l->nspos, e) : 0;
    for (int i = 0; !rc && i < l->nspos; i++) l->spos[i] = (int64_t)v[i];  /* exact below 2^53 */
    free(v);
    return rc;
}

/* Several ranks: the loss sums since the last log line are every rank's; a checkpoint (written
 * by rank 0) must hold their total, so they are summed into rank 0 and zeroed elsewhere, in a
 * run resumed or not alike (log_line sums them again: the same figures). */
static int fold_losses(trainer *t, ts_err *e)
{
    ts_exp *x = t->x;
    double v[1 + 64];
    int nh = x->nheads < 64 ? x->nheads : 64;
    v[0] = t->l.loss_acc;
    for (int h = 0; h < nh; h++) v[1 + h] = x->heads[h].loss_sum;
    if (ts_dist_sum(v, 1 + nh, e)) return -1;
    t->l.loss_acc = t->rank == 0 ? v[0] : 0;
    for (int h = 0; h < nh; h++) x->heads[h].loss_sum = t->rank == 0 ? v[1 + h] : 0;
    return 0;
}

/* collective = 0: a rank alone (a signal reaches the ranks at different steps, so none may wait
 * for the others): no exchange, rank 0's own loss sums (the caller never asks it of a streamed
 * run of several ranks, whose positions it cannot gather). */
static int save_checkpoint_as(trainer *t, int best, int collective, ts_err *e)
{
    if (collective && t->stream && gather_positions(t, e)) return -1;
    if (collective && t->size > 1 && fold_losses(t, e)) return -1;
    /* split tables: every rank saves its part, and only together (a signal reaches the ranks at
     * different steps: each keeps its last checkpoint, which are of one step) */
    if (t->sharded && !collective) return 0;
    if (!t->writer && !t->sharded) return 0;
    if (!t->writer) {
        /* rank 0's log lengths, which its checkpoint names too (resume checks them) */
        long off[2] = {0, 0};
        if (ts_dist_bcast_longs(off, 2, e)) return -1;
        t->l.train_off = off[0];
        t->l.eval_off = off[1];
        t->l.wall += now() - t->t_start;
        t->t_start = now();
        int rc = ts_ckpt_save(t->x, &t->l, best, e);
        t->t_seg = now();
        return rc;
    }
    /* the logs reach the disk before a checkpoint that names their length does (a power cut
     * must not leave a checkpoint newer than its logs, which resume would refuse) */
    if (fflush(t->ft) || fsync(fileno(t->ft)))
        return ts_write_error(e, t->tpath, errno, "the previous checkpoint is kept");
    if (fflush(t->fe) || fsync(fileno(t->fe)))
        return ts_write_error(e, t->epath, errno, "the previous checkpoint is kept");
    t->l.train_off = ftell(t->ft);
    t->l.eval_off = ftell(t->fe);
    if (t->sharded) {
        long off[2] = {t->l.train_off, t->l.eval_off};
        if (ts_dist_bcast_longs(off, 2, e)) return -1;
    }
    t->l.wall += now() - t->t_start;
    t->t_start = now();
    int rc = ts_ckpt_save(t->x, &t->l, best, e);
    t->t_seg = now();   /* writing the checkpoint is not training time */
    return rc;
}

static int save_checkpoint(trainer *t, int best, ts_err *e)
{
    return save_checkpoint_as(t, best, 1, e);
}

/* Opens train.csv and eval.csv: new ones with their header lines, or (resume) the ones of the
 * killed run cut back to what its checkpoint had written. */
static int open_files(trainer *t, int resumed, ts_err *e)
{
    ts_exp *x = t->x;
    if (!t->writer) {
        t->ft = fopen("/dev/null", "w");
        t->fe = fopen("/dev/null", "w");
        if (!t->ft || !t->fe) return ts_fail(e, "cannot open /dev/null");
        return 0;
    }
    if (resumed) {
        t->ft = fopen(t->tpath, "r+");
        t->fe = fopen(t->epath, "r+");
        if (!t->ft || !t->fe)
            return ts_fail(e, "cannot resume in %s: train.csv or eval.csv is missing; run the "
                           "experiment again without --resume", x->ctx.results_dir);
        if (ftruncate(fileno(t->ft), t->l.train_off) || ftruncate(fileno(t->fe), t->l.eval_off) ||
            fseek(t->ft, 0, SEEK_END) || fseek(t->fe, 0, SEEK_END))
            return ts_fail(e, "cannot resume in %s: train.csv or eval.csv cannot be cut back to "
                           "the checkpoint", x->ctx.results_dir);
        return 0;
    }
    t->ft = fopen(t->tpath, "w");
    t->fe = fopen(t->epath, "w");
    if (!t->ft || !t->fe) return ts_fail(e, "%s: cannot write the run's files", x->ctx.results_dir);
    fprintf(t->ft, "step,epoch,examples,loss");
    for (int h = 0; h < x->nheads; h++) fprintf(t->ft, ",loss.%s", x->heads[h].H.name);
    fprintf(t->ft, ",examples_per_sec");
    /* Learned task weights (the factor on each loss) after the step, when they are learned. */
    for (int h = 0; t->gn || x->log_var ? h < x->nheads : 0; h++)
        fprintf(t->ft, ",weight.%s", x->heads[h].H.name);
    fprintf(t->ft, "\n");
    fprintf(t->fe, "epoch,step,split,task,metric,value\n");
    return append(t->ft, t->tpath, e) || append(t->fe, t->epath, e) ? -1 : 0;
}

/* Streamed data (docs/scale.md): every rank's share of the training rows; an epoch is as many
 * steps as the largest share needs, and a rank whose share is used up takes part in the steps
 * left with no rows (its gradient weighs 0), so the epochs of every rank end together and every
 * training row is seen once an epoch. */
static int stream_init(trainer *t, ts_err *e)
{
    ts_exp *x = t->x;
    ts_loop *l = &t->l;
    const ts_dataset_ops *ops = x->data_pl->ops;
    if (!TS_OP(ops, stream_begin) || !TS_OP(ops, stream_next) || !TS_OP(ops, stream_pos))
        return ts_fail(e, "[data] %s streams its rows but lacks the stream ops (a bug in the "
                       "reader)", x->data_pl->name);
    double *v = calloc((size_t)t->size, sizeof *v);
    t->share = malloc((size_t)t->size * sizeof *t->share);
    l->nspos = t->size * TS_STREAM_POS;
    l->spos = calloc((size_t)l->nspos, sizeof *l->spos);
    if (!v || !t->share || !l->spos) { free(v); return ts_fail(e, "out of memory"); }
    v[t->rank] = (double)x->data.nrows[TS_TRAIN];
    if (t->size > 1 && ts_dist_sum(v, t->size, e)) { free(v); return -1; }
    long total = 0, most = 0;
    for (int r = 0; r < t->size; r++) {
        t->share[r] = (long)v[r];
        total += t->share[r];
        if (t->share[r] > most) most = t->share[r];
    }
    free(v);
    t->stream = 1;
    l->streamed = 1;
    l->ntrain = total;
    t->steps_per_epoch = (most + x->batch - 1) / x->batch;
    if (t->log && t->size > 1) {
        fprintf(t->log, "%s  stream: training rows per rank", x->name);
        for (int r = 0; r < t->size; r++) fprintf(t->log, " %ld", t->share[r]);
        fprintf(t->log, "; %ld steps an epoch\n", t->steps_per_epoch);
    }
    return 0;
}

/* Streamed data: rank r's rows in step s of an epoch. */
static int stream_rows(const trainer *t, int r, long s)
{
    long left = t->share[r] - s * t->x->batch;
    return left <= 0 ? 0 : left < t->x->batch ? (int)left : (int)t->x->batch;
}

/* Split tables: every rank resumed from its own files; they must be of one step, or the shards
 * would not fit together. A kill may land between two ranks' writes (or a rank's latest file may
 * be damaged): then the ranks that resumed a later step go back to the earliest one, from their
 * previous file (a rank keeps its latest two). *resumed and the loop follow the outcome. */
static int same_resume(trainer *t, int *resumed, ts_err *e)
{
    double *v = calloc((size_t)t->size, sizeof *v);
    if (!v) return ts_fail(e, "out of memory");
    v[t->rank] = *resumed ? (double)t->l.step : -1;
    if (ts_dist_sum(v, t->size, e)) { free(v); return -1; }
    double lo = v[0], hi = v[0];
    for (int r = 1; r < t->size; r++) {
        if (v[r] < lo) lo = v[r];
        if (v[r] > hi) hi = v[r];
    }
    free(v);
    if (lo == hi) return 0;
    int ok = 1;
    if (lo < 0) {
        ok = 0;                   /* a rank has no usable file at all */
        snprintf(e->msg, sizeof e->msg, "a rank found no usable checkpoint");
    } else if ((long)lo != t->l.step) {
        if (t->log) fprintf(t->log, "%s  the ranks' latest checkpoints are of steps %.0f to %.0f: "
                            "going back to step %.0f\n", t->x->name, lo, hi, lo);
        ok = ts_ckpt_resume_at(t->x, &t->l, (long)lo, t->log, e) == 1;
    }
    double bad = ok ? 0 : 1;
    ts_err ie;
    if (ts_dist_sum(&bad, 1, &ie)) return ts_fail(e, "%s", ie.msg);
    if (bad > 0)
        return ts_fail(e, "--resume: the ranks' checkpoints (checkpoint.rankK-of-%d.tsck in %s) "
                       "are of different steps (%.0f to %.0f) and no step is in every rank's "
                       "files (%s); the table's shards would not fit together. Start again "
                       "without --resume", t->size, t->x->ctx.results_dir, lo, hi,
                       ok ? "another rank's file" : e->msg);
    return 0;
}

/* Sets up the run: results folder, files, task weighting, and the loop state (new or resumed). */
static int trainer_init(trainer *t, ts_exp *x, FILE *log, ts_err *e)
{
    memset(t, 0, sizeof *t);
    t->x = x;
    t->log = ts_dist_rank() == 0 ? log : NULL;
    t->rank = ts_dist_rank();
    t->size = ts_dist_size();
    t->writer = t->rank == 0;
    for (int i = 0; i < x->ctx.nparams && t->size > 1; i++)
        if (x->ctx.params[i]->flags & TS_PARAM_SHARDED) t->sharded = 1;
    t->tty = t->log && isatty(fileno(t->log));
    t->ow.task = -1;
    t->pre_s = -1;
    const char *dir = x->ctx.results_dir;
    snprintf(t->tpath, sizeof t->tpath, "%s/train.csv", dir);
    snprintf(t->epath, sizeof t->epath, "%s/eval.csv", dir);
    /* The folder exists and is locked (ts_rundir_begin). Task weighting and output weights are set up before any file is written. */
    if (ow_init(x, &t->ow, e) || ow_check_groups(x, &t->ow, e)) return -1;
    if (group_init(x, &t->group, &t->ngroups, e)) return -1;
    if (x->weighting == 2) {
        if (t->size > 1)
            return ts_fail(e, "[train] weighting = gradnorm is not available in data-parallel runs "
                           "(it needs every task's own gradient norm on the shared layer); use "
                           "static or uncertainty, or run one process");
        if (gn_init(x, &t->gnst, e)) return -1;
        t->gn = &t->gnst;
        if (t->log)
            fprintf(t->log, "%s  gradnorm: W = the weights of [%s] (alpha %g, rate %g)\n", x->name,
                    x->nodes[t->gn->shared].cfg->name, t->gn->alpha, t->gn->lr);
    }
    ts_loop *l = &t->l;
    /* the loop's positions 0..ntrain: the reader's training rows, or those the selection split
     * left (x->train_rows, holdout.c) */
    l->ntrain = x->train_rows ? x->ntrain_rows : x->data.nrows[TS_TRAIN];
    if (x->train_rows && !(t->rowbuf = malloc((size_t)x->batch * sizeof *t->rowbuf)))
        return ts_fail(e, "out of memory");
    t->global_batch = x->batch * t->size;
    t->steps_per_epoch = (l->ntrain + t->global_batch - 1) / t->global_batch;
    if (x->data.stream && stream_init(t, e)) return -1;
    /* [train] threads: the next batch is read during the optimizer's step when the reader
     * allows it (TS_BRANCH_SAFE) and the optimizer's parameters run on the pool */
    t->prefetch = x->pool && !t->stream &&
                  (TS_OP((const ts_dataset_ops *)x->data_pl->ops, concurrency) & TS_BRANCH_SAFE) &&
                  (TS_OP((const ts_optim_ops *)x->opt_pl->ops, concurrency) & TS_BRANCH_SAFE);
    l->nw = all_rows_w(x);
    l->order = malloc((size_t)(l->ntrain && !t->stream ? l->ntrain : 1) * sizeof *l->order);
    l->best = malloc((size_t)(l->nw ? l->nw : 1) * sizeof *l->best);
    if (!l->order || !l->best) return ts_fail(e, "out of memory");
    for (long i = 0; i < l->ntrain && !t->stream; i++) l->order[i] = i;
    memcpy(l->best, x->arena, (size_t)l->nw * sizeof *l->best);
    if (t->gn) { l->gn = t->gn->w; l->gn_t = &t->gn->t; }
    t->minimize = x->early_stop[0] ? lower_is_better(x->early_stop) : 0;
    l->epoch = 1;
    l->best_score = t->minimize ? INFINITY : -INFINITY;
    /* The other ranks draw their own negatives; the weights were initialised alike before. */
    if (t->rank > 0) ts_rng_seed(&x->ctx.rng, x->ctx.seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)t->rank));
    int resumed = 0, try_resume = 0;
    if (t->writer && ts_rundir_prepare(x, t->log, &try_resume, e)) return -1;
    if (!t->writer) try_resume = x->opts.resume || x->opts.if_changed;
    if (x->up_to_date) return 0;
    ts_ckpt_shard(t->rank, t->sharded ? t->size : 1);
    if (try_resume) {
        if ((resumed = ts_ckpt_resume(x, l, t->log, e)) < 0) {
            if (!x->opts.if_changed) return -1;
            /* --if-changed: an unfinished run whose checkpoints cannot be used starts again */
            if (t->log) fprintf(t->log, "%s  %s; starting again\n", x->name, e->msg);
            if (t->writer && ts_rundir_clear(dir, e)) return -1;
            resumed = 0;
        }
        if (t->sharded && same_resume(t, &resumed, e)) return -1;
        if (t->log && !resumed && !x->opts.if_changed)
            fprintf(t->log, "%s  no checkpoint in %s: starting from the beginning\n", x->name, dir);
        if (resumed && t->rank > 0) {
            /* the checkpoint's loss sums are every rank's total (fold_losses): rank 0's */
            l->loss_acc = 0;
            for (int h = 0; h < x->nheads; h++) x->heads[h].loss_sum = 0;
        }
        if (resumed) {
            /* [train] epochs, patience and max_steps may have grown: a finished run goes on */
            l->done = l->epoch > x->epochs || (x->patience > 0 && l->bad_evals >= x->patience) ||
                      (x->max_steps > 0 && l->step >= x->max_steps);
            if (l->done && x->dir_state == TS_DIR_FINISHED)
                return ts_fail(e, "%s holds a finished run and its configuration asks for no "
                               "more training (epoch %ld of %ld done): there is nothing to resume, "
                               "and its results stay as they are. Raise [train] epochs (or "
                               "max_steps) to train it longer, or pass --overwrite to train again",
                               dir, l->epoch - 1, x->epochs);
        }
        if (t->log && resumed)
            fprintf(t->log, "%s  resumed from the checkpoint of step %ld (epoch %ld%s)\n", x->name,
                    l->step, l->epoch, l->done ? ", training finished" : "");
    }
    if (!resumed && t->sharded && !t->writer) ts_ckpt_clean(dir, 0);   /* its own files */
    if (!resumed && t->writer) {
        ts_ckpt_clean(dir, 0);            /* a new run: an older run's checkpoints are not its */
        char path[TS_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/config.ini", dir);
        if (ts_ini_write(&x->ini, path, e)) return -1;
    }
    if (t->writer && ts_rundir_write_identity(x, e)) return -1;
    if (t->writer && x->data_state) {
        /* what the reader fitted on the training split: predict, evaluate and resume read with it */
        char path[TS_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/data_state.txt", dir);
        if (ts_write_atomic(path, x->data_state, x->ndata_state, e)) return -1;
    }
    if (open_files(t, resumed, e)) return -1;
    for (const char *r = x->data_report, *nl; t->log && r && *r; r = nl + 1) {
        /* what the reader cut or dropped: "name value" lines (tessera.h, aux "report") */
        if (!(nl = strchr(r, '\n'))) break;
        const char *sp = memchr(r, ' ', (size_t)(nl - r));
        if (sp) fprintf(t->log, "%s  data: %.*s = %.*s\n", x->name, (int)(sp - r), r,
                        (int)(nl - sp - 1), sp + 1);
    }
    if (t->log && x->skipped_rows > 0)
        fprintf(t->log, "%s  data: skipped %ld malformed row%s (skip_bad_rows = true)\n", x->name,
                x->skipped_rows, x->skipped_rows > 1 ? "s" : "");
    if (!resumed)
        for (int h = 0; h < x->nheads; h++) x->heads[h].loss_sum = 0;
    if (x->replicas > 1 && replicas_init(t, e)) return -1;
    t->t_start = t->t_log = t->t_seg = t->t_progress = now();
    return 0;
}

/* ---- replicas ([train] replicas = R, docs/ini.md) -------------------------------------------
 * R copies of the graph's layers train the R parts of each batch at once, one thread each: copy
 * 0 is the experiment itself (the training thread), copies 1..R-1 are ts_exp_replica's, sharing
 * its weights. x's dataset assembles the whole batch and every copy reads its rows of it in
 * place, and writes its layers' outputs into its rows of x's (views). So after the copies'
 * forward passes x's top layers hold the whole batch, and the heads run once on it, exactly as
 * without copies (in-batch negatives, sampled negatives and counts included); the copies' backward
 * passes then read their rows of the heads' gradients. Their parameter gradients, each a sum over
 * its rows, are added into x's: the batch's gradient up to the order of the float sums, which the
 * NaN guard, clipping and the optimizer then see as usual. A copy's random numbers (dropout) come
 * from a generator seeded each step from the run's seed, the step and the copy, so a resumed
 * run draws them again alike, and x's generator (the heads' negatives) is untouched. */
typedef struct replica {
    ts_exp *x;
    struct replicas *S;
    int lo, n;
    int rc;
    ts_err err;
    pthread_t th;
    int started;
} replica;

typedef struct replicas {
    int R;
    replica *rep;                 /* (R); rep[0] is the training thread's own copy */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    long gen;                     /* passes handed out */
    atomic_long agen;             /* gen, read without the lock while polling (pool.c's SPIN) */
    int phase;                    /* this pass: 1 forward, 2 backward */
    int pending, quit;
} replicas;

static int replica_run(replica *r, int phase)
{
    if (r->n <= 0) return 0;
    if (phase == 1) return ts_exp_forward(r->x, TS_TRAIN, r->n, &r->err);
    return ts_exp_backward(r->x, &r->err);
}

static void *replica_main(void *arg)
{
    replica *r = arg;
    replicas *S = r->S;
    long seen = 0;
    for (;;) {
        for (int i = 0; i < 4000 && atomic_load(&S->agen) == seen; i++) ts_relax();
        pthread_mutex_lock(&S->mu);
        while (S->gen == seen && !S->quit) pthread_cond_wait(&S->go, &S->mu);
        int quit = S->quit, phase = S->phase;
        seen = S->gen;
        pthread_mutex_unlock(&S->mu);
        if (quit) break;
        /* the last step's gradients were added into x's before this forward pass */
        if (phase == 1) ts_params_zero_grad(&r->x->ctx);
        r->rc = replica_run(r, phase);
        pthread_mutex_lock(&S->mu);
        if (--S->pending == 0) pthread_cond_signal(&S->done);
        pthread_mutex_unlock(&S->mu);
    }
    return NULL;
}

/* Runs one pass on every copy at once (the training thread takes copy 0); the first copy that
 * failed gives the message. */
static int replicas_pass(replicas *S, int phase, ts_err *e)
{
    pthread_mutex_lock(&S->mu);
    S->phase = phase;
    S->pending = S->R - 1;
    S->gen++;
    atomic_store(&S->agen, S->gen);
    pthread_cond_broadcast(&S->go);
    pthread_mutex_unlock(&S->mu);
    S->rep[0].rc = replica_run(&S->rep[0], phase);
    pthread_mutex_lock(&S->mu);
    while (S->pending > 0) pthread_cond_wait(&S->done, &S->mu);
    pthread_mutex_unlock(&S->mu);
    for (int k = 0; k < S->R; k++)
        if (S->rep[k].rc) return ts_fail(e, "%s", S->rep[k].err.msg);
    return 0;
}

static void replicas_free(replicas *S)
{
    if (!S) return;
    pthread_mutex_lock(&S->mu);
    S->quit = 1;
    pthread_cond_broadcast(&S->go);
    pthread_mutex_unlock(&S->mu);
    for (int k = 1; k < S->R; k++) {
        if (S->rep[k].started) pthread_join(S->rep[k].th, NULL);
        ts_exp_free(S->rep[k].x);
    }
    pthread_mutex_destroy(&S->mu);
    pthread_cond_destroy(&S->go);
    pthread_cond_destroy(&S->done);
    free(S->rep);
    free(S);
}

static int replicas_init(trainer *t, ts_err *e)
{
    ts_exp *x = t->x;
    int R = (int)x->replicas;
    const char *where = ts_cfg_where(ts_ini_find(&x->ini, "train"), "replicas");
    if (t->size > 1)
        return ts_fail(e, "%s: [train] replicas = %d: not in a run of several MPI ranks (each rank "
                       "is already a copy of the graph); set replicas = 1, or run one process",
                       where, R);
    if (t->gn)
        return ts_fail(e, "%s: [train] replicas = %d: not with weighting = gradnorm (its passes "
                       "from each head down to the shared layer run on one copy); set replicas = "
                       "1, or weighting = static or uncertainty", where, R);
    for (int i = 0; i < x->nnodes; i++)
        if (!(TS_OP(x->nodes[i].ops, concurrency) & TS_REPLICA_SAFE))
            return ts_fail(e, "%s: [train] replicas = %d: [%s] (type %s) does not declare that "
                           "it can run in several copies at once (TS_REPLICA_SAFE in its ops' "
                           "concurrency, docs/plugins.md: its training pass may write shared "
                           "weights or state); set replicas = 1", where, R,
                           x->nodes[i].cfg->name, x->nodes[i].pl->name);
    replicas *S = calloc(1, sizeof *S);
    if (!S || !(S->rep = calloc((size_t)R, sizeof *S->rep))) {
        free(S);
        return ts_fail(e, "out of memory");
    }
    S->R = R;
    pthread_mutex_init(&S->mu, NULL);
    pthread_cond_init(&S->go, NULL);
    pthread_cond_init(&S->done, NULL);
    t->rs = S;
    S->rep[0].x = x;
    for (int k = 0; k < R; k++) {
        S->rep[k].S = S;
        if (k > 0 && !(S->rep[k].x = ts_exp_replica(x, e))) return -1;
    }
    /* the threads take no signal: the training thread handles them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int k = 1; k < R; k++) {
        if (pthread_create(&S->rep[k].th, NULL, replica_main, &S->rep[k])) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return ts_fail(e, "[train] replicas = %d: cannot start a thread (%s); set a lower "
                           "number", R, strerror(errno));
        }
        S->rep[k].started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (t->log)
        fprintf(t->log, "%s  replicas: %d copies of the layers, up to %ld rows of each batch of %ld "
                "apiece; the heads run on the whole batch\n", x->name, R, (x->batch + R - 1) / R,
                x->batch);
    return 0;
}

/* Adds copy r's gradient of parameter i into x's: a dense one whole, the touched rows of a
 * sparse one (a row x has not touched is copied, and touched). r declares x's first
 * parameters. */
static void replica_merge_param(ts_exp *x, ts_exp *r, int i)
{
    ts_param *p = x->ctx.params[i], *q = r->ctx.params[i];
    if (p->shared || (p->flags & TS_PARAM_FROZEN)) return;
    if (!(p->flags & TS_PARAM_SPARSE)) {
        vec_add(p->g, q->g, (long)p->rows * p->cols);
        return;
    }
    long c = p->cols;
    for (int k = 0; k < q->ntouched; k++) {
        int32_t row = q->touched[k];
        float *d = p->g + (size_t)row * c;
        const float *src = q->g + (size_t)row * c;
        if (p->is_touched[row]) vec_add(d, src, c);
        else { ts_param_touch(p, row); memcpy(d, src, (size_t)c * sizeof *d); }
    }
}

static void set_rows(ts_exp *x, int n, int layers)
{
    for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = n;
    for (int i = 0; layers && i < x->nnodes; i++)
        for (int k = 0; k < x->nodes[i].L.nout; k++) x->nodes[i].L.out[k].dim[0] = n;
}

/* The copies' forward passes over this batch's b rows, which x's fields hold: copy k takes rows
 * lo_k .. lo_k + n_k. Afterwards x's fields and layers' outputs stand for all b rows, for the
 * heads. */
static int replicas_forward(trainer *t, int b, ts_err *e)
{
    replicas *S = t->rs;
    ts_exp *x = t->x;
    int R = S->R, q = b / R, rem = b % R;
    for (int k = 0, lo = 0; k < R; k++) {
        replica *r = &S->rep[k];
        r->lo = lo;
        r->n = q + (k < rem);
        lo += r->n;
        if (k > 0) {
            if (ts_exp_replica_view(r->x, x, r->lo, r->n, e)) return -1;
            /* from (seed, step, copy) only: x's generator, which the heads draw from, is left
             * as it is without copies */
            ts_rng_seed(&r->x->ctx.rng, x->ctx.seed ^ (0x9e3779b97f4a7c15ull *
                                                     (uint64_t)(t->l.step * 64 + k + 1)));
        }
    }
    set_rows(x, S->rep[0].n, 0);
    if (replicas_pass(S, 1, e)) return -1;
    set_rows(x, b, 1);
    return 0;
}

/* The copies' backward passes (each over its rows of the heads' gradients), then their
 * parameter gradients added into x's. */
typedef struct { replicas *S; } merge_arg;

static void merge_task(void *arg, int i)
{
    replicas *S = ((merge_arg *)arg)->S;
    for (int k = 1; k < S->R; k++) replica_merge_param(S->rep[0].x, S->rep[k].x, i);
}

static int replicas_backward(trainer *t, ts_err *e)
{
    replicas *S = t->rs;
    ts_exp *x = t->x;
    set_rows(x, S->rep[0].n, 1);
    if (replicas_pass(S, 2, e)) return -1;
    /* parameter by parameter, on the pool's threads when there is one */
    merge_arg a = {S};
    ts_pool_run(x->pool, S->rep[1].x->ctx.nparams, merge_task, &a);
    return 0;
}

/* This rank's slice of the B global batch rows from `from`: b of them from order[lo], split as
 * evenly as the ranks allow. */
static void rank_slice(const trainer *t, long from, int B, long *lo, int *b)
{
    int q = B / t->size, r = B % t->size;
    *b = q + (t->rank < r);
    *lo = from + (long)t->rank * q + (t->rank < r ? t->rank : r);
}

/* Fills the fields with this rank's rows of step s of the epoch (in memory). */
static int load_step(trainer *t, long s, ts_err *e)
{
    ts_exp *x = t->x;
    long from = s * t->global_batch, lo;
    int B = (int)(t->l.ntrain - from < t->global_batch ? t->l.ntrain - from : t->global_batch), b;
    rank_slice(t, from, B, &lo, &b);
    if (b == 0) return 0;   /* a rank without rows this step: nothing to read */
    const long *rows = t->l.order + lo;
    if (t->rowbuf) {
        for (int i = 0; i < b; i++) t->rowbuf[i] = x->train_rows[rows[i]];
        rows = t->rowbuf;
    }
    return load_batch(x, TS_TRAIN, rows, b, e);
}

/* ---- the optimizer step ------------------------------------------------------------------
 * Each trained parameter's update, then its gradient zeroed. With an optimizer that allows it
 * (TS_BRANCH_SAFE) the work goes in pieces, the largest first, over the pool's threads under
 * [train] threads >= 2 (in order on one thread otherwise), and without clipping the NaN guard
 * is the pieces' own. A piece is a parameter, or a band of a large sparse table's row range:
 * the DSSM's query table alone was 3-4 times any other parameter's work, and one thread updated
 * it while the other waited. A band is a copy of the table's ts_param whose touched, ntouched
 * and is_touched (a mask of its own) hold the band's rows only; an optimizer updates only a
 * sparse parameter's touched rows, so it updates the band as it would the table, and the bands
 * together update it once. A band goes SUB rows at a time, ascending: each part's gradient is
 * checked, updated and zeroed while in cache (one pass over memory instead of three: 38k -> 41k
 * DSSM pairs/s on one thread, 58k -> 62k on two). Every row's update is the same computation
 * whichever piece or thread runs it. */
static ts_param *piece_param(ts_exp *x, piece *c)
{
    return c->band < 0 ? x->ctx.params[c->param] : &c->copy;
}

/* The step's pieces, largest first, into t->pc (t->npc). */
static int pieces_build(trainer *t, ts_err *e)
{
    ts_exp *x = t->x;
    int np = x->ctx.nparams;
    size_t most = (size_t)np * NBAND;
    if (!t->pc && (!(t->pc = malloc(most * sizeof *t->pc)) || !(t->bd = calloc((size_t)np, sizeof *t->bd)) ||
                   !(t->pc_ok = malloc(most)) || !(t->opt_rc = malloc(most * sizeof *t->opt_rc)) ||
                   !(t->opt_err = malloc(most * sizeof *t->opt_err))))
        return ts_fail(e, "out of memory");
    int n = 0;
    for (int i = 0; i < np; i++) {
        ts_param *p = x->ctx.params[i];
        if (p->shared) continue;
        int sparse = (p->flags & TS_PARAM_SPARSE) != 0;
        long w = (sparse ? (long)p->ntouched : (long)p->rows) * p->cols;
        int nb = sparse && w >= BAND_MIN && p->rows >= NBAND && p->is_touched &&
                 !(p->flags & (TS_PARAM_FROZEN | TS_PARAM_SHARDED)) ? NBAND : 0;
        struct bands *b = &t->bd[i];
        b->on = nb > 0;
        if (nb && !b->list && (!(b->list = malloc((size_t)p->rows * sizeof *b->list)) ||
                               !(b->mask = calloc((size_t)NBAND * p->rows, 1))))
            return ts_fail(e, "out of memory for the bands of %s", p->name);
        /* the band's rows: in ascending order where the table is not too sparsely touched
         * (the update then walks w, g and the slots upwards, as adam.c does), else in the
         * batch's order */
        int cnt[NBAND] = {0}, at[NBAND];
        for (int k = 0; k < p->ntouched && nb; k++) cnt[(long)p->touched[k] * NBAND / p->rows]++;
        for (int c = 0, o = 0; c < nb; o += cnt[c++]) at[c] = o;
        if (nb && (long)p->rows <= 64L * p->ntouched) {
            for (int32_t r = 0, k = 0; r < p->rows; r++)
                if (p->is_touched[r]) b->list[k++] = r;
            for (int c = 0; c < nb; c++) at[c] += cnt[c];
        } else {
            for (int k = 0; k < p->ntouched && nb; k++) {
                int32_t r = p->touched[k];
                b->list[at[(long)r * NBAND / p->rows]++] = r;
            }
        }
        for (int c = 0; c < (nb ? nb : 1); c++) {
            piece pc;
            pc.param = i;
            pc.band = nb ? c : -1;
            pc.work = nb ? (long)cnt[c] * p->cols : w;
            if (nb) {
                pc.copy = *p;
                pc.copy.touched = b->list + at[c] - cnt[c];
                pc.copy.ntouched = cnt[c];
                pc.copy.is_touched = b->mask + (size_t)c * p->rows;
            }
            int k = n++;
            while (k > 0 && t->pc[k - 1].work < pc.work) { t->pc[k] = t->pc[k - 1]; k--; }
            t->pc[k] = pc;
        }
    }
    t->npc = n;
    return 0;
}

typedef struct {
    trainer *t;
    int pre;                      /* task 0 fills the fields with the next step's rows */
    int guard;                    /* the NaN guard: each piece checks its gradient first */
} opt_arg;

static void opt_task(void *arg, int task)
{
    opt_arg *a = arg;
    trainer *t = a->t;
    if (a->pre && task-- == 0) {
        t->pre_rc = load_step(t, t->l.s + 1, &t->pre_err);
        t->pre_s = t->l.s + 1;
        return;
    }
    ts_exp *x = t->x;
    piece *c = &t->pc[task];
    ts_param *p = piece_param(x, c);
    const ts_optim_ops *oo = x->opt_pl->ops;
    t->pc_ok[task] = 1;
    t->opt_rc[task] = 0;
    if (c->band >= 0) {
        /* A band SUB rows at a time: the rows' gradient checked, updated and zeroed while it is
         * in cache. Each part is the band's copy with that part's rows as touched and marked in
         * the band's own mask (an optimizer reads either), then cleared there and in the
         * table's. */
        uint8_t *table = x->ctx.params[c->param]->is_touched, *mask = p->is_touched;
        for (int s0 = 0; s0 < p->ntouched; s0 += SUB) {
            ts_param part = *p;
            part.touched = p->touched + s0;
            part.ntouched = p->ntouched - s0 < SUB ? p->ntouched - s0 : SUB;
            if (a->guard && !param_finite(&part)) {
                t->pc_ok[task] = 0;   /* left as it is, gradient and all, for the message */
                return;
            }
            for (int k = 0; k < part.ntouched; k++) mask[part.touched[k]] = 1;
            if ((t->opt_rc[task] = oo->step(x->opt_state, &part, t->l.step, 1.0f, &t->opt_err[task])))
                return;
            for (int k = 0; k < part.ntouched; k++) {
                int32_t r = part.touched[k];
                memset(p->g + (size_t)r * p->cols, 0, (size_t)p->cols * sizeof *p->g);
                mask[r] = table[r] = 0;
            }
        }
        return;
    }
    if (p->flags & TS_PARAM_FROZEN) {
        /* nothing to update */
    } else if (a->guard && !param_finite(p)) {
        t->pc_ok[task] = 0;       /* left as it is, gradient and all, for the message */
        return;
    } else {
        t->opt_rc[task] = oo->step(x->opt_state, p, t->l.step, 1.0f, &t->opt_err[task]);
    }
    ts_param_zero_grad(p);
}

static int nonfinite_fail(trainer *t, long step, double gnorm, ts_err *e);

/* guard: the NaN guard is the pieces' (train_step). */
static int optimizer_step(trainer *t, int guard, ts_err *e)
{
    ts_exp *x = t->x;
    const ts_optim_ops *oo = x->opt_pl->ops;
    int np = x->ctx.nparams;
    if (!t->npc) {
        for (int i = 0; i < np; i++) {
            ts_param *p = x->ctx.params[i];
            if (p->shared || (p->flags & TS_PARAM_FROZEN)) continue;
            ts_err pe;
            if (oo->step(x->opt_state, p, t->l.step, 1.0f, &pe))
                return ts_fail(e, "[optimizer] %s on %s: %s", x->opt_pl->name, p->name, pe.msg);
        }
        ts_params_zero_grad(&x->ctx);
        return 0;
    }
    /* The next step's rows, read while the parameters update: nothing of this step reads the
     * fields any more, and a reader that declares TS_BRANCH_SAFE fills only them. Within an
     * epoch, in memory (a stream's position is part of a checkpoint). */
    ts_loop *l = &t->l;
    int pre = t->prefetch && l->s + 1 < t->steps_per_epoch &&
              !(x->max_steps > 0 && l->step >= x->max_steps);
    opt_arg a = {t, pre, guard};
    ts_pool_run(x->pool, t->npc + pre, opt_task, &a);
    for (int k = 0; k < t->npc; k++)
        if (!t->pc_ok[k]) {
            /* The pieces with a finite gradient have moved; the run stops here, before any file
             * sees them, and its last good checkpoint stays. */
            for (int i = 0; i < np; i++) if (t->bd[i].on) x->ctx.params[i]->ntouched = 0;
            return nonfinite_fail(t, l->step, grad_norm(x), e);
        }
    for (int k = 0; k < t->npc; k++)
        if (t->opt_rc[k])
            return ts_fail(e, "[optimizer] %s on %s: %s", x->opt_pl->name,
                           x->ctx.params[t->pc[k].param]->name, t->opt_err[k].msg);
    for (int i = 0; i < np; i++)   /* a banded table: its bands zeroed its rows, gradient and flags */
        if (t->bd[i].on) x->ctx.params[i]->ntouched = 0;
    return 0;
}

/* The NaN guard's message: step (1-based), the norm, the first non-finite gradient. */
static int nonfinite_fail(trainer *t, long step, double gnorm, ts_err *e)
{
    ts_exp *x = t->x;
    char where[3 * TS_NAME_MAX];
    const char *bad = first_nonfinite_grad(x, where, sizeof where);
    return ts_fail(e, "step %ld (epoch %ld): the gradient norm is %g; %s%s. Lower [optimizer] "
                   "lr or set [train] clip_norm; the files written so far and the last good "
                   "checkpoint are kept in %s", step, t->l.epoch, gnorm,
                   bad ? "the first non-finite one, from the top of the graph, is " :
                   "every layer's gradient is finite (the loss weights overflowed)",
                   bad ? bad : "", x->ctx.results_dir);
}

/* One optimizer step on this rank's slice of global batch rows order[from, from + B). */
static int train_step(trainer *t, long from, int B, ts_err *e)
{
    ts_exp *x = t->x;
    ts_loop *l = &t->l;
    gradnorm *gn = t->gn;
    long lo;
    int b;
    rank_slice(t, from, B, &lo, &b);
    if (t->stream) b = stream_rows(t, t->rank, l->s);   /* B: every rank's rows together */
    double frac = t->size > 1 ? (double)b / B : 1.0;
    /* a split table's gradient rows leave this rank during backward: they are weighted then */
    if (t->sharded) ts_dist_shard_scale((float)frac);
    double total = 0;
    if (b > 0) {
        if (t->stream) {
            const ts_dataset_ops *ops = x->data_pl->ops;
            ts_err pe;
            int got = 0;
            if (ops->stream_next(&x->data, b, &got, &pe))
                return ts_fail(e, "[data] %s: %s", x->data_pl->name, pe.msg);
            if (got != b)
                return ts_fail(e, "[data] %s: the stream gave %d rows where the scan counted %d "
                               "more (step %ld of epoch %ld); did the files change during the "
                               "run?", x->data_pl->name, got, b, l->s + 1, l->epoch);
            for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = b;
        } else if (t->pre_s == l->s) {   /* filled during the last step's optimizer */
            if (t->pre_rc) return ts_fail(e, "%s", t->pre_err.msg);
        } else if (load_step(t, l->s, e)) {
            return -1;
        }
        t->pre_s = -1;
        if (t->rs ? replicas_forward(t, b, e) : ts_exp_forward(x, TS_TRAIN, b, e)) return -1;
        for (int h = 0; h < x->nheads; h++) {
            ts_hnode *hn = &x->heads[h];
            double scale = hn->weight;
            if (x->log_var) scale *= exp(-x->log_var->w[h]);
            if (gn) scale *= gn->w[h];
            hn->H.grad_scale = (float)scale;
            double loss = 0;
            /* GradNorm: task h's own pass from its head down to the shared layer. */
            if (gn && h > 0) zero_output_grads(x, gn->shared);
            if (head_train_forward(x, hn, l->step, l->epoch, &loss, e)) return -1;
            if (gn) {
                gn_snapshot(gn);
                if (backward_range(x, x->nnodes - 1, gn->shared, e)) return -1;
                gn->G[h] = gn_increment_norm(gn);
                gn->L[h] = loss;
                total += gn->w[h] * hn->weight * loss;
            }
            hn->last_loss = loss;
            hn->loss_sum += frac * loss;
            if (x->log_var) {
                /* Kendall et al.: L = sum_k exp(-s_k) L_k + s_k, so dL/ds_k = 1 - exp(-s_k) L_k */
                x->log_var->g[h] += (float)(1.0 - exp(-x->log_var->w[h]) * loss * hn->weight);
                total += exp(-x->log_var->w[h]) * hn->weight * loss + x->log_var->w[h];
            } else if (!gn) {
                total += hn->weight * loss;
            }
        }
        if (gn) {
            if (backward_range(x, gn->shared - 1, 0, e)) return -1;
            gn_update(gn, x->nheads);
        } else if (t->rs ? replicas_backward(t, e) : ts_exp_backward(x, e)) {
            return -1;
        }
    }
    if (b == 0 && t->sharded) {
        /* A rank without rows this step (the last short batch of an epoch, a streamed share
         * used up) still takes part in the sharded tables' exchanges, which are collective: its
         * layers run over no rows, its heads not at all (their gradient is 0 here). */
        for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = 0;
        if (ts_exp_forward(x, TS_TRAIN, 0, e) || ts_exp_backward(x, e)) return -1;
    }
    if (t->size > 1) {
        /* Every rank's gradient is the mean over its b rows: weighted by b / B, their sum is
         * the mean over the global batch. */
        if (b != B) scale_grads_of(x, (float)frac, t->sharded);
        if (ts_dist_sum_grads(x->ctx.params, x->ctx.nparams, x->arena + l->nw, x->ctx.n_dense, e))
            return -1;
    }
    /* The pieces of the guard and the optimizer step (on the pool when there is one; one
     * thread takes them in order) */
    t->npc = 0;
    if ((TS_OP((const ts_optim_ops *)x->opt_pl->ops, concurrency) & TS_BRANCH_SAFE) &&
        x->ctx.nparams >= 2 && pieces_build(t, e))
        return -1;
    /* The NaN guard on gradients, and clipping by the global norm. On the pool without clipping
     * the guard is the optimizer's pieces' own: each checks its gradient as it starts (the rows
     * are then in cache for the update), and a non-finite one stops the run before any file
     * sees the step. */
    int fused = t->npc > 0 && !t->sharded && !(x->clip_norm > 0);
    double gnorm = t->sharded ? grad_norm_of(x, 1)
                 : x->clip_norm > 0 || (!fused && !grads_finite(x)) ? grad_norm(x) : 0;
    if (!isfinite(gnorm)) return nonfinite_fail(t, l->step + 1, gnorm, e);
    if (x->clip_norm > 0 && gnorm > x->clip_norm) scale_grads(x, (float)(x->clip_norm / gnorm));
    l->step++;
    if (optimizer_step(t, fused, e)) return -1;
    l->seen += B;
    l->loss_acc += frac * total;
    l->logged_steps++;
    return 0;
}

/* "m:ss", or "h:mm:ss" from an hour on. */
static const char *duration(char *buf, size_t n, double secs)
{
    long s = secs > 0 && secs < 1e9 ? (long)(secs + 0.5) : 0;
    if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

/* Ends a terminal's live line, so what is printed next starts a line of its own. */
static void end_live(trainer *t)
{
    if (t->live) fprintf(t->log, "\r%*s\r", t->live, "");
    t->live = 0;
}

/* The progress of the run (docs/ini.md, "Progress"): on a terminal one live line rewritten at
 * every row of train.csv; on a log that is not a terminal (a pipe, a file) a line of its own at
 * most every opts.progress_every seconds (0: none), so a piped run shows life between epochs.
 * Elapsed counts the time before a resume too (l->wall); the ETA assumes the steps left take as
 * long as the ones done, evaluations included, and early stopping may end the run sooner. */
static void progress_line(trainer *t, double tn, double loss, double eps)
{
    ts_exp *x = t->x;
    ts_loop *l = &t->l;
    if (!t->log) return;
    if (!t->tty && (x->opts.progress_every <= 0 || tn - t->t_progress < x->opts.progress_every))
        return;
    long total = x->epochs * t->steps_per_epoch;
    if (x->max_steps > 0 && x->max_steps < total) total = x->max_steps;
    double elapsed = l->wall + tn - t->t_start;
    double done = total > 0 && l->step < total ? (double)l->step / total : 1;
    char el[32], eta[32];
    int w = fprintf(t->log, "%s%s  epoch %ld/%ld  step %ld/%ld  loss %.4f  %.0f ex/s  elapsed %s"
                    "  ETA %s%s", t->tty ? "\r" : "", x->name, l->epoch, x->epochs, l->step, total,
                    loss, eps, duration(el, sizeof el, elapsed),
                    duration(eta, sizeof eta, done > 0 ? elapsed * (1 - done) / done : 0),
                    t->tty ? "   " : "\n");
    fflush(t->log);
    t->live = t->tty && w > 0 ? w : 0;
    t->t_progress = tn;
}

/* A line of train.csv: the mean losses since the last one (summed over the ranks). */
static int log_line(trainer *t, ts_err *e)
{
    ts_exp *x = t->x;
    ts_loop *l = &t->l;
    double sums[1 + 64];
    int nh = x->nheads < 64 ? x->nheads : 64;
    sums[0] = l->loss_acc;
    for (int h = 0; h < nh; h++) sums[1 + h] = x->heads[h].loss_sum;
    if (t->size > 1 && ts_dist_sum(sums, 1 + nh, e)) return -1;
    double tn = now(), eps = (l->seen - l->seen_log) / (tn - t->t_log > 1e-9 ? tn - t->t_log : 1e-9);
    fprintf(t->ft, "%ld,%.6f,%ld,%.9g", l->step, (double)l->step / t->steps_per_epoch, l->seen,
            sums[0] / l->logged_steps);
    for (int h = 0; h < x->nheads; h++) {
        fprintf(t->ft, ",%.9g", (h < nh ? sums[1 + h] : x->heads[h].loss_sum) / l->logged_steps);
        x->heads[h].loss_sum = 0;
    }
    fprintf(t->ft, ",%.1f", eps);
    for (int h = 0; t->gn || x->log_var ? h < x->nheads : 0; h++)
        fprintf(t->ft, ",%.6g", t->gn ? t->gn->w[h] : exp(-x->log_var->w[h]));
    fprintf(t->ft, "\n");
    if (append(t->ft, t->tpath, e)) return -1;
    progress_line(t, tn, sums[0] / l->logged_steps, eps);
    l->loss_acc = 0;
    l->logged_steps = 0;
    t->t_log = tn;
    l->seen_log = l->seen;
    return 0;
}

/* Early stopping was switched off because its figure was undefined (end_epoch). */
static int early_stop_undefined(const ts_exp *x, const ts_loop *l)
{
    return x->early_stop[0] && l->best_epoch > 0 && isnan(l->best_score);
}

/* The end of an epoch: validation, early stopping, the epoch's checkpoint. */
static int end_epoch(trainer *t, double t_epoch, ts_err *e)
{
    ts_exp *x = t->x;
    ts_loop *l = &t->l;
    mark_time(t);
    x->ctx.nmetrics = 0;
    if (x->data.nrows[TS_VALID] > 0 && ts_exp_evaluate(x, TS_VALID, e)) return -1;
    write_eval_rows(t->fe, x, l->epoch, l->step);
    if (append(t->fe, t->epath, e)) return -1;
    double score = NAN;
    int improved = 1;
    if (x->early_stop[0]) {
        if (find_metric(x, x->early_stop, &score))
            return ts_fail(e, "[train] early_stop = %s: no head reported that figure on the "
                           "validation split; use TASK.METRIC, e.g. %s.%s", x->early_stop,
                           x->ctx.nmetrics ? x->ctx.metrics[0].task : "task",
                           x->ctx.nmetrics ? x->ctx.metrics[0].metric : "auc");
        /* A figure the first evaluation cannot define (the AUC of a validation split with one
         * class) can choose no epoch: early stopping is then off for the whole run, which keeps
         * the last epoch's weights instead of the initial ones. A NaN best_score after an
         * evaluation marks that mode, in checkpoints too. */
        int undefined = early_stop_undefined(x, l);
        if (!undefined && l->best_epoch == 0 && !isfinite(score)) {
            undefined = 1;
            if (t->log) {
                end_live(t);
                fprintf(t->log, "%s  warning: [train] early_stop = %s is %g on the validation "
                        "split at the first evaluation%s; early stopping is off: the run trains "
                        "every epoch and keeps the last one's weights (metrics.json: "
                        "train.run.early_stop_undefined = 1). Give the validation split both "
                        "classes, or early-stop on a figure it defines\n",
                        x->name, x->early_stop, score, strstr(x->early_stop, "auc") ?
                        " (an AUC is undefined when the split holds one class only)" : "");
            }
        }
        if (undefined) score = NAN;
        improved = undefined ||
                   (isfinite(score) && (t->minimize ? score < l->best_score : score > l->best_score));
    }
    if (improved) {
        l->best_score = score;
        l->best_epoch = l->epoch;
        l->bad_evals = 0;
        memcpy(l->best, x->arena, (size_t)l->nw * sizeof *l->best);
    } else {
        l->bad_evals++;
    }
    if (t->log) {
        end_live(t);
        fprintf(t->log, "%s  epoch %ld/%ld  %.1fs  %.0f ex/s", x->name, l->epoch, x->epochs,
                now() - t_epoch, l->seen / (l->train_time > 0 ? l->train_time : 1));
        int shown = 0;
        for (int i = 0; i < x->ctx.nmetrics && shown < 4; i++) {
            ts_metric_rec *m = &x->ctx.metrics[i];
            if (!strcmp(m->metric, "loss")) continue;
            fprintf(t->log, "  valid %s.%s %.4f", m->task, m->metric, m->value);
            shown++;
        }
        fprintf(t->log, "%s\n", improved && x->early_stop[0] && !early_stop_undefined(x, l) ?
                                 "  *" : "");
    }
    if (x->patience > 0 && l->bad_evals >= x->patience) {
        if (t->log) fprintf(t->log, "%s  early stop: %s did not improve for %ld epochs\n", x->name,
                            x->early_stop, x->patience);
        l->done = 1;
    }
    if (x->max_steps > 0 && l->step >= x->max_steps) l->done = 1;
    l->epoch++;
    l->s = 0;
    l->shuffled = 0;
    if (l->epoch > x->epochs) l->done = 1;
    return save_checkpoint(t, improved, e);
}

/* A signal asked the run to stop (ts_run_opts.stop): the signal's number, else 0. */
static int stop_signal(const trainer *t)
{
    return t->x->opts.stop ? (int)*t->x->opts.stop : 0;
}

/* Ends the run at a step boundary after a signal: a checkpoint of this very step (unless one
 * was just written), then a sentence saying the folder is consistent and how to continue. */
static int interrupted(trainer *t, int saved, ts_err *e)
{
    ts_exp *x = t->x;
    int sig = stop_signal(t);
    mark_time(t);
    const char *dir = x->ctx.results_dir;
    /* Several ranks see a signal at different steps: no exchange here. A streamed run of several
     * ranks then keeps its last checkpoint (this step's would lack the other ranks' positions). */
    if (!saved && t->size > 1 && t->stream)
        return ts_fail(e, "interrupted by signal %d (%s) at step %ld, epoch %ld: %s is consistent "
                       "and holds the last checkpoint written before ([train] checkpoint_every, "
                       "each epoch's end); continue with: tessera resume %s", sig, strsignal(sig),
                       t->l.step, t->l.epoch, dir, dir);
    if (!saved && save_checkpoint_as(t, 0, t->size < 2, e)) return -1;
    return ts_fail(e, "interrupted by signal %d (%s) at step %ld, epoch %ld: %s is consistent and "
                   "holds a checkpoint of that step; continue with: tessera resume %s", sig,
                   strsignal(sig), t->l.step, t->l.epoch, dir, dir);
}

static int train_loop(trainer *t, ts_err *e)
{
    ts_exp *x = t->x;
    ts_loop *l = &t->l;
    if (!l->done && stop_signal(t)) return interrupted(t, 0, e);
    while (!l->done) {
        double t_epoch = now();
        if (t->stream && !t->stream_on) {
            /* the epoch's stream: from its start, or (resumed mid-epoch) from the checkpoint's
             * position of this rank */
            const ts_dataset_ops *ops = x->data_pl->ops;
            const int64_t *pos = l->shuffled && l->spos_ok ? l->spos + t->rank * TS_STREAM_POS
                                                           : NULL;
            if (l->shuffled && !l->spos_ok)
                return ts_fail(e, "resuming a streamed epoch without the stream's position (a bug)");
            ts_err pe;
            if (ops->stream_begin(&x->data, l->epoch, pos, &pe))
                return ts_fail(e, "[data] %s: %s", x->data_pl->name, pe.msg);
            t->stream_on = 1;
            l->spos_ok = 0;
            l->shuffled = 1;
        }
        if (!l->shuffled) {
            if (t->rank == 0) ts_rng_shuffle(&x->ctx.rng, l->order, l->ntrain);
            if (t->rank == 0 && t->group &&
                ts_group_order(l->order, l->ntrain, t->group, t->ngroups, &x->ctx.rng, e))
                return -1;
            if (t->size > 1 && ts_dist_bcast_longs(l->order, l->ntrain, e)) return -1;
            l->shuffled = 1;
        }
        while (l->s < t->steps_per_epoch) {
            long from = l->s * t->global_batch;
            int B = (int)(l->ntrain - from < t->global_batch ? l->ntrain - from : t->global_batch);
            if (t->stream)
                for (int r = B = 0; r < t->size; r++) B += stream_rows(t, r, l->s);
            if (train_step(t, from, B, e)) return -1;
            l->s++;
            int last = l->s == t->steps_per_epoch || (x->max_steps > 0 && l->step >= x->max_steps);
            if ((l->step % x->log_every == 0 || last) && log_line(t, e)) return -1;
            if (last) break;
            int saved = 0;
            if (x->checkpoint_every > 0 && l->step % x->checkpoint_every == 0) {
                mark_time(t);
                if (save_checkpoint(t, 0, e)) return -1;
                saved = 1;
            }
            if (stop_signal(t)) return interrupted(t, saved, e);
        }
        t->stream_on = 0;   /* before end_epoch's checkpoint: the next epoch starts afresh */
        t->pre_s = -1;      /* the evaluation fills the fields with its own rows */
        if (end_epoch(t, t_epoch, e)) return -1;
        if (!l->done && stop_signal(t)) return interrupted(t, 1, e);
    }
    return 0;
}

/* After training: the best weights, evaluated on validation and test; params.bin, the combined
 * score, reports and metrics.json. */
static int finish(trainer *t, ts_err *e)
{
    ts_exp *x = t->x;
    ts_loop *l = &t->l;
    const char *dir = x->ctx.results_dir;
    char path[TS_PATH_MAX + 32];
    memcpy(x->arena, l->best, (size_t)l->nw * sizeof *l->best);
    snprintf(path, sizeof path, "%s/params.bin", dir);   /* reloadable: export, recommend */
    if (t->sharded) {
        /* every rank writes its part: the replicated weights and its rows of the split tables
         * (local row k of rank r is row k * ranks + r) */
        snprintf(path, sizeof path, "%s/params.rank%d-of-%d.bin", dir, t->rank, t->size);
        if (ts_save_params(x, path, e)) return -1;
    } else if (t->writer && ts_save_params(x, path, e)) {
        return -1;
    }
    ts_metric_rec *all = NULL;
    int nall = 0, rc = 0;
    if (x->nselect > 0) {
        /* first, so that the validation and test evaluations are the last the heads saw (their
         * predictions and reports are the test split's, as without a selection split) */
        x->ctx.nmetrics = 0;
        if ((rc = ts_exp_evaluate_select(x, e))) return rc;
        if (!(all = malloc((size_t)(x->ctx.nmetrics + 8) * sizeof *all))) return ts_fail(e, "out of memory");
        memcpy(all, x->ctx.metrics, (size_t)x->ctx.nmetrics * sizeof *all);
        nall = x->ctx.nmetrics;
    }
    for (int sp = TS_VALID; sp <= TS_TEST && !rc; sp++) {
        if (x->data.nrows[sp] <= 0) continue;
        x->ctx.nmetrics = 0;
        if ((rc = ts_exp_evaluate(x, (ts_phase)sp, e))) break;
        if (sp == TS_TEST) {
            write_eval_rows(t->fe, x, 0, l->step);
            /* the test split's per-row predictions, for calibration plots and paired tests */
            snprintf(path, sizeof path, "%s/predictions.csv", dir);
            ts_err pe;
            if (t->writer && !t->sharded && ts_write_predictions(x, path, 1, 1, &pe) < 0) {
                rc = ts_fail(e, "%s", pe.msg);
                break;
            }
        }
        /* after the files of the split's rows: reading the group field loads batches again */
        if (t->ow.task >= 0 && (rc = ow_collect(x, &t->ow, sp == TS_TEST, e))) break;
        ts_metric_rec *m = realloc(all, (size_t)(nall + x->ctx.nmetrics + 8) * sizeof *m);
        if (!m) { rc = ts_fail(e, "out of memory"); break; }
        all = m;
        memcpy(all + nall, x->ctx.metrics, (size_t)x->ctx.nmetrics * sizeof *m);
        nall += x->ctx.nmetrics;
    }
    /* The combined score ([train] output_weights: up to 6 figures on valid and on test, a
     * weight per head), the learned task weights (one per head), the run's 5 figures, skipped
     * rows, the selection split's 2 row counts. */
    int nextra = 2 * 6 + OW_MAX + x->nheads + 5 + 1 + 2;
    if (!rc) {
        ts_metric_rec *m = realloc(all, (size_t)(nall + nextra) * sizeof *m);
        if (!m) rc = ts_fail(e, "out of memory");
        else all = m;
    }
    outw *ow = &t->ow;
    if (!rc && ow->task >= 0 && !(rc = ow_run(ow, e))) {
        static const char *const rk_names[] = {"mrr", "map", "ndcg@10", "recall@1", "recall@10",
                                               "queries"};
        for (int s = 0; s < 2; s++) {
            if (x->data.nrows[s ? TS_TEST : TS_VALID] <= 0) continue;
            ts_phase ph = s ? TS_TEST : TS_VALID;
            const rk_acc *a = &ow->acc[s];
            double q = a->nq > 0 ? (double)a->nq : NAN;
            double v[6] = {a->rr / q, a->ap / q, a->ndcg10 / q, a->r1 / q, a->r10 / q,
                           (double)a->nq};
            int nf = ow->figure == OW_AUC ? 1 : 6;
            for (int f = 0; f < nf; f++) {
                ts_metric_rec r = {ph, "combined", "", ow->figure == OW_AUC ? ow->best[s] : v[f]};
                snprintf(r.metric, sizeof r.metric, "%s",
                         ow->figure == OW_AUC ? "auc" : rk_names[f]);
                all[nall++] = r;
                fprintf(t->fe, "0,%ld,%s,combined,%s,%.9g\n", l->step, s ? "test" : "valid",
                        r.metric, r.value);
            }
        }
        for (int k = 0; k < ow->nh; k++) {
            ts_metric_rec r = {TS_TEST, "combined", "", ow->w[k]};
            snprintf(r.metric, sizeof r.metric, "w_%.60s", x->heads[ow->head[k]].H.name);
            all[nall++] = r;
        }
        if (t->log) {
            fprintf(t->log, "%s  output weights for %s.%s:", x->name, ow->tname,
                    ow_figures[ow->figure]);
            for (int k = 0; k < ow->nh; k++)
                fprintf(t->log, " %s %.1f", x->heads[ow->head[k]].H.name, ow->w[k]);
            fprintf(t->log, "  (valid combined %s %.4f)\n", ow_figures[ow->figure],
                    ow->best[0]);
        }
    }
    gradnorm *gn = t->gn;
    for (int h = 0; !rc && (gn || x->log_var) && h < x->nheads; h++) {
        ts_metric_rec r = {TS_TRAIN, "", "", 0};
        snprintf(r.task, sizeof r.task, "%s", gn ? "gradnorm" : "uncertainty");
        snprintf(r.metric, sizeof r.metric, "%s%.50s", gn ? "w_" : "log_var_", x->heads[h].H.name);
        r.value = gn ? gn->w[h] : x->log_var->w[h];
        all[nall++] = r;
    }
    if (!rc && append(t->fe, t->epath, e)) rc = -1;
    /* Reports of layers and heads (gates.csv, item vectors...). */
    for (int i = 0; i < x->nnodes && !rc && t->writer; i++) {
        ts_node *nd = &x->nodes[i];
        ts_err pe;
        if (TS_OP(nd->ops, report) && nd->ops->report(&nd->L, dir, &pe))
            rc = ts_fail(e, "[%s] report: %s", nd->cfg->name, pe.msg);
    }
    for (int h = 0; h < x->nheads && !rc && t->writer; h++) {
        ts_hnode *hn = &x->heads[h];
        ts_err pe;
        if (TS_OP(hn->ops, report) && hn->ops->report(&hn->H, dir, &pe))
            rc = ts_fail(e, "[%s] report: %s", hn->cfg->name, pe.msg);
    }
    if (!rc) {
        double secs = l->wall + now() - t->t_start;
        ts_metric_rec extra[5] = {
            {TS_TRAIN, "run", "examples_per_sec", l->seen / (l->train_time > 0 ? l->train_time : 1)},
            {TS_TRAIN, "run", "seconds", secs},
            {TS_TRAIN, "run", "best_epoch", (double)l->best_epoch},
            {TS_TRAIN, "run", "steps", (double)l->step},
            {TS_TRAIN, "run", "params", (double)trainable_weights(x)}};
        memcpy(all + nall, extra, sizeof extra);   /* room reserved above (nextra) */
        nall += 5;
        if (x->skipped_rows > 0)
            all[nall++] = (ts_metric_rec){TS_TRAIN, "data", "skipped_rows", (double)x->skipped_rows};
        if (x->nselect > 0) {   /* room reserved above (nextra) */
            all[nall++] = (ts_metric_rec){TS_TRAIN, "data", "train_rows", (double)x->ntrain_rows};
            all[nall++] = (ts_metric_rec){TS_TRAIN, "data", "select_rows", (double)x->nselect};
        }
        int nrep = 0;
        for (const char *r = x->data_report; r && (r = strchr(r, '\n')); r++) nrep++;
        ts_metric_rec *m = nrep ? realloc(all, (size_t)(nall + nrep + 1) * sizeof *m) : all;
        if (!m) rc = ts_fail(e, "out of memory");
        else all = m;
        for (const char *r = x->data_report, *nl; !rc && r && *r; r = nl + 1) {
            if (!(nl = strchr(r, '\n'))) break;
            const char *sp = memchr(r, ' ', (size_t)(nl - r));
            if (!sp || sp - r >= TS_NAME_MAX) continue;
            ts_metric_rec rec = {TS_TRAIN, "data", "", strtod(sp + 1, NULL)};
            snprintf(rec.metric, sizeof rec.metric, "%.*s", (int)(sp - r), r);
            all[nall++] = rec;
        }
        if (early_stop_undefined(x, l))
            all[nall++] = (ts_metric_rec){TS_TRAIN, "run", "early_stop_undefined", 1};
        snprintf(path, sizeof path, "%s/metrics.json", dir);
        if (t->writer && !rc) rc = ts_write_metrics_json(path, all, nall, e);
        if (!rc && t->log) {
            for (int i = 0; i < nall; i++)
                if ((all[i].split == TS_TEST || all[i].split == TS_SELECT) &&
                    strcmp(all[i].metric, "loss"))
                    fprintf(t->log, "%s  %s %s.%s = %.4f\n", x->name, ts_phase_name(all[i].split),
                            all[i].task, all[i].metric, all[i].value);
            fprintf(t->log, "%s  results in %s\n", x->name, dir);
        }
    }
    free(all);
    return rc;
}

int ts_exp_train(ts_exp *x, FILE *log, ts_err *e)
{
    /* The results folder first (rank 0 writes it): locked, and never a run it may not replace. */
    if (ts_dist_rank() == 0 && ts_rundir_begin(x, e)) return -1;
    if (ts_exp_build(x, e)) return -1;
    /* A run reports figures on held-out rows, and early stopping needs validation rows. */
    if (x->ctx.open_mode == TS_OPEN_TRAIN && x->data.nrows[TS_TEST] <= 0)
        return ts_fail(e, "%s: [data] the test split is empty (%ld training and %ld validation "
                       "rows): the run would report no figure on held-out rows; add rows, or give "
                       "the test split a larger share",
                       ts_cfg_where(ts_ini_find(&x->ini, "data"), "path"), x->data.nrows[TS_TRAIN],
                       x->data.nrows[TS_VALID]);
    if (x->ctx.open_mode == TS_OPEN_TRAIN && x->early_stop[0] && x->data.nrows[TS_VALID] <= 0)
        return ts_fail(e, "%s: [train] early_stop = %s needs validation rows, and the validation "
                       "split is empty; give it a share of the data, or drop early_stop (the last "
                       "epoch is kept)", ts_cfg_where(ts_ini_find(&x->ini, "train"), "early_stop"),
                       x->early_stop);
    /* [train] threads >= 2: tessera's own threads (the copies of [train] replicas, or a pool
     * on which independent layers and the optimizer's parameters run at once) use the cores,
     * and every BLAS call runs on the thread that makes it. OpenBLAS's own threads would
     * compete with them: after each call they spin (sched_yield) for about 0.1 s, which took
     * a quarter of the samples of a census run with both (perf). */
    int own = x->threads >= 2 && (x->replicas > 1 || !getenv("TESSERA_BLAS_THREADS"));
    if (x->threads > 0) openblas_set_num_threads(own ? 1 : (int)x->threads);
    if (own) x->pool = ts_pool_new((int)(x->replicas > 1 ? x->replicas : x->threads));
    x->ctx.pool = x->pool;
    if (x->pool && x->replicas <= 1 && log && ts_dist_rank() == 0) {
        char buf[512] = "";
        int npar = 0;
        for (int l = 0; l < x->nlvl; l++) {
            if (!x->lvl_par[l]) continue;
            npar++;
            for (int k = x->lvl[l]; k < x->lvl[l + 1]; k++) {
                size_t m = strlen(buf);
                snprintf(buf + m, sizeof buf - m, "%s%s", k == x->lvl[l] ? (npar > 1 ? "; " : "") : " + ",
                         x->nodes[x->sched[k]].L.name);
            }
        }
        fprintf(log, "%s  threads: %d; layers run at once: %s\n", x->name, ts_pool_threads(x->pool),
                npar ? buf : "none (no level of the graph has two independent layers)");
    }
    trainer t;
    int rc = trainer_init(&t, x, log, e);
    if (!rc && x->up_to_date) { trainer_free(&t); return 0; }
    if (!rc) rc = train_loop(&t, e);
    if (t.log) end_live(&t);   /* an error message starts a line of its own */
    if (!rc) rc = finish(&t, e);
    if (!rc && (t.writer || t.sharded)) ts_ckpt_clean(x->ctx.results_dir, x->keep_checkpoints);
    trainer_free(&t);
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
