/* synthetic_mmoe.c — the synthetic two-task regression data of Ma et al., "Modeling Task
 * Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts" (KDD 2018), sec. 3.2,
 * whose task correlation p is a knob: the data on which MMoE's advantage over Shared-Bottom shows.
 *
 *   u1, u2  orthogonal unit vectors in R^d (Gram-Schmidt on two N(0, I) draws)
 *   w1 = c u1,   w2 = c (p u1 + sqrt(1 - p^2) u2)          so cos(w1, w2) = p
 *   x ~ N(0, I_d)
 *   y_k = w_k^T x + sum_{i=1..m} sin(alpha_i w_k^T x + beta_i) + eps_k,   eps_k ~ N(0, 0.01)
 * alpha_i, beta_i ~ N(0, 1) are shared by both tasks, as in the paper. Everything (vectors,
 * alpha, beta, every split's rows) comes from data_seed, so the data never depend on the
 * experiment seed. The labels are NOT normalised: their mean is about sum_i sin(beta_i) and their
 * spread small, exactly as the paper defines them; a head's bias absorbs the mean.
 * Fields: x F32 (B, d); y1, y2 F32 (B, 1). Aux (doubles): "w1", "w2" (d each), "alpha", "beta" (m).
 * Not a general synthetic-data generator: it makes this one family of tasks. */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct synth {
    int d, m;
    double *w1, *w2;        /* (d) task weight vectors */
    double *alpha, *beta;   /* (m) shapes of the sinusoids */
    float *x[3];            /* (nrows[s], d) inputs of each split */
    float *y[3];            /* (nrows[s], 2) labels y1, y2 of each split */
    int cap;
    float *bx, *by1, *by2;  /* (cap, d), (cap), (cap) batch buffers */
    ts_tensor *fx, *fy1, *fy2;
} synth;

static void unit(double *v, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++) s += v[j] * v[j];
    s = sqrt(s);
    for (int j = 0; j < d; j++) v[j] /= s;
}

/* y = w^T x + sum_i sin(alpha_i w^T x + beta_i) + noise, for one row x (d). */
static double label(const synth *st, const double *w, const float *x, double noise)
{
    double z = 0, y;
    for (int j = 0; j < st->d; j++) z += w[j] * x[j];
    y = z;
    for (int i = 0; i < st->m; i++) y += sin(st->alpha[i] * z + st->beta[i]);
    return y + noise;
}

static void synth_close(ts_data *D)
{
    synth *st = D->state;
    if (!st) return;
    free(st->w1); free(st->w2); free(st->alpha); free(st->beta);
    for (int s = 0; s < 3; s++) { free(st->x[s]); free(st->y[s]); }
    free(st->bx); free(st->by1); free(st->by2);
    free(st);
    D->state = NULL;
}

static int ensure_cap(synth *st, int n)
{
    if (n <= st->cap) return 0;
    float *a = realloc(st->bx, (size_t)n * st->d * sizeof(float));
    if (a) st->bx = a;
    float *b = realloc(st->by1, (size_t)n * sizeof(float));
    if (b) st->by1 = b;
    float *c = realloc(st->by2, (size_t)n * sizeof(float));
    if (c) st->by2 = c;
    if (!a || !b || !c) return -1;
    st->cap = n;
    return 0;
}

static int synth_open(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    long d, m, seed;
    double c, p, rows[4];
    int nrows;
    if (ts_cfg_int(cfg, "d", &d, e) < 0 || ts_cfg_int(cfg, "m", &m, e) < 0 ||
        ts_cfg_int(cfg, "data_seed", &seed, e) < 0 || ts_cfg_float(cfg, "c", &c, e) < 0 ||
        ts_cfg_float(cfg, "p", &p, e) < 0 || ts_cfg_floats(cfg, "rows", rows, 4, &nrows, e) < 0)
        return -1;
    if (d < 2 || d > 100000)
        return ts_fail(e, "%s: [data] d = %ld; the input dimension must lie in 2..100000 (two "
                       "orthogonal directions are needed)", ts_cfg_where(cfg, "d"), d);
    if (m < 0 || m > 10000)
        return ts_fail(e, "%s: [data] m = %ld; the number of sinusoids must lie in 0..10000",
                       ts_cfg_where(cfg, "m"), m);
    if (!(p >= -1 && p <= 1))
        return ts_fail(e, "%s: [data] p = %g; the task correlation must lie in [-1, 1]",
                       ts_cfg_where(cfg, "p"), p);
    /* |y| is about |c| * |x|: a c beyond 1e6 makes labels that overflow float (inf, then NaN
     * losses) long before it could make a meaningful task. */
    if (!(fabs(c) <= 1e6))
        return ts_fail(e, "%s: [data] c = %g; the scale of the task weights must lie in "
                       "[-1e6, 1e6] (the paper uses 1)", ts_cfg_where(cfg, "c"), c);
    if (nrows != 3 || rows[0] < 1 || rows[1] < 0 || rows[2] < 0 || rows[0] + rows[1] + rows[2] > 1e8 ||
        rows[0] != floor(rows[0]) || rows[1] != floor(rows[1]) || rows[2] != floor(rows[2]))
        return ts_fail(e, "%s: [data] rows must be three whole numbers of rows for train, valid, "
                       "test (train at least 1), like 10000, 1000, 1000", ts_cfg_where(cfg, "rows"));
    synth *st = calloc(1, sizeof *st);
    if (!st) return ts_fail(e, "synthetic_mmoe: out of memory");
    D->state = st;
    st->d = (int)d;
    st->m = (int)m;
    st->w1 = calloc((size_t)d, sizeof(double));
    st->w2 = calloc((size_t)d, sizeof(double));
    st->alpha = calloc((size_t)m + 1, sizeof(double));
    st->beta = calloc((size_t)m + 1, sizeof(double));
    double *u2 = calloc((size_t)d, sizeof(double));
    int ok = st->w1 && st->w2 && st->alpha && st->beta && u2;
    for (int s = 0; ok && s < 3; s++) {
        D->nrows[s] = (long)rows[s];
        ok = (st->x[s] = malloc((size_t)(rows[s] + 1) * d * sizeof(float))) &&
             (st->y[s] = malloc((size_t)(rows[s] + 1) * 2 * sizeof(float)));
    }
    int mb = ts_ctx_max_batch(D->ctx);
    if (!ok || ensure_cap(st, mb > 0 ? mb : 1) < 0) {
        free(u2);
        synth_close(D);
        return ts_fail(e, "synthetic_mmoe: out of memory for %g rows of %ld inputs",
                       rows[0] + rows[1] + rows[2], d);
    }
    ts_rng r;
    ts_rng_seed(&r, (uint64_t)seed);
    double *u1 = st->w1, dot = 0, q = sqrt(1 - p * p);
    for (long j = 0; j < d; j++) u1[j] = ts_rng_normal(&r);
    unit(u1, (int)d);
    do {            /* u2: a second draw made orthogonal to u1 (retried if it was parallel) */
        double n2 = 0;
        for (long j = 0; j < d; j++) u2[j] = ts_rng_normal(&r);
        dot = 0;
        for (long j = 0; j < d; j++) dot += u2[j] * u1[j];
        for (long j = 0; j < d; j++) { u2[j] -= dot * u1[j]; n2 += u2[j] * u2[j]; }
        dot = n2;
    } while (dot < 1e-12);
    unit(u2, (int)d);
    for (long j = 0; j < d; j++) {
        st->w2[j] = c * (p * u1[j] + q * u2[j]);
        st->w1[j] = c * u1[j];                          /* u1 lives in w1: scale it last */
    }
    free(u2);
    for (long i = 0; i < m; i++) st->alpha[i] = ts_rng_normal(&r);
    for (long i = 0; i < m; i++) st->beta[i] = ts_rng_normal(&r);
    for (int s = 0; s < 3; s++)
        for (long i = 0; i < D->nrows[s]; i++) {
            float *x = st->x[s] + i * d;
            for (long j = 0; j < d; j++) x[j] = (float)ts_rng_normal(&r);
            double e1 = 0.1 * ts_rng_normal(&r), e2 = 0.1 * ts_rng_normal(&r); /* var 0.01 */
            st->y[s][2 * i] = (float)label(st, st->w1, x, e1);
            st->y[s][2 * i + 1] = (float)label(st, st->w2, x, e2);
        }
    int dd = (int)d, one = 1;
    if (!(st->fx = ts_data_field(D, "x", TS_F32, 2, &dd, 0, e)) ||
        !(st->fy1 = ts_data_field(D, "y1", TS_F32, 2, &one, 0, e)) ||
        !(st->fy2 = ts_data_field(D, "y2", TS_F32, 2, &one, 0, e)) ||
        ts_data_label(D, "y1", e) || ts_data_label(D, "y2", e)) {   /* never layers' inputs */
        synth_close(D);
        return -1;
    }
    return 0;
}

static int synth_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    synth *st = D->state;
    int d = st->d;
    if (ensure_cap(st, n) < 0) return ts_fail(e, "synthetic_mmoe: out of memory for %d rows", n);
    for (int i = 0; i < n; i++) {
        long r = rows[i];
        if (r < 0 || r >= D->nrows[split])
            return ts_fail(e, "synthetic_mmoe: row %ld asked of a split of %ld rows", r, D->nrows[split]);
        memcpy(st->bx + (size_t)i * d, st->x[split] + r * d, (size_t)d * sizeof(float));
        st->by1[i] = st->y[split][2 * r];
        st->by2[i] = st->y[split][2 * r + 1];
    }
    st->fx->x = st->bx;
    st->fy1->x = st->by1;
    st->fy2->x = st->by2;
    st->fx->dim[0] = st->fy1->dim[0] = st->fy2->dim[0] = n;
    return 0;
}

static int synth_aux(ts_data *D, const char *name, const void **ptr, long *n)
{
    synth *st = D->state;
    if (strcmp(name, "w1") == 0) { *ptr = st->w1; *n = st->d; }
    else if (strcmp(name, "w2") == 0) { *ptr = st->w2; *n = st->d; }
    else if (strcmp(name, "alpha") == 0) { *ptr = st->alpha; *n = st->m; }
    else if (strcmp(name, "beta") == 0) { *ptr = st->beta; *n = st->m; }
    else return -1;
    return 0;
}

static const ts_key keys[] = {
    {"d", "int", "100", "input dimension"},
    {"c", "float", "0.3", "scale of the task weight vectors"},
    {"m", "int", "5", "number of sinusoids added to each label"},
    {"p", "float", "0.5", "task correlation: cosine of w1 and w2, in [-1, 1]"},
    {"rows", "list", "10000, 1000, 1000", "rows of the train, valid and test splits"},
    {"data_seed", "int", "2026", "seed of everything generated (vectors, alpha, beta, rows)"},
    {NULL, NULL, NULL, NULL}};
static const ts_dataset_ops ops = {.size = sizeof(ts_dataset_ops),
    .open = synth_open, .batch = synth_batch, .aux = synth_aux,
                                   .close = synth_close,
    .concurrency = TS_BRANCH_SAFE};   /* batch() fills the fields only */
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_DATASET, "synthetic_mmoe", "1.0",
    "two regression tasks of controllable correlation p (Ma et al. 2018, sec. 3.2)", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
