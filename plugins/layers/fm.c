/* fm.c — the second-order interaction of a factorisation machine (Rendle, ICDM 2010) over
 * per-field embeddings, as in DeepFM's FM component (Guo et al., IJCAI 2017).
 *
 * Input (B, F, D): field f's vector v_f of row b. With s_d = sum_f v_{f,d}:
 *   sum_{f < g} <v_f, v_g> = 0.5 * sum_d (s_d^2 - sum_f v_{f,d}^2)       (Rendle's O(F D) form)
 *   reduce = true:  y (B, 1) = that sum
 *   reduce = false: y (B, D), y_d = 0.5 * (s_d^2 - sum_f v_{f,d}^2)     (the bi-interaction
 *                   pooling of NFM, He & Chua, SIGIR 2017: the pairwise products summed per d)
 * Gradient: d y_d / d v_{f,d} = s_d - v_{f,d}, so dx[b, f, d] += dy[b, (d)] * (s_d - v_{f,d}).
 * No parameters: the weights are the embeddings upstream (ids of one-hot features, so the
 * x_i x_j of Rendle's formula are 1). What it is not: the first-order term (an embedding of dim 1
 * summed by `reduce` is), field-aware FM (one vector per field pair), nor higher orders.
 */
#include "tessera.h"

#include <stdlib.h>
#include <string.h>

#include "compose.h"

typedef struct fm_state {
    int reduce;               /* 1: (B, 1); 0: (B, D) */
    int f, d;                 /* fields, width */
    float *sum;               /* (max_rows, D) s of the last forward, for backward */
    long max_rows;
} fm_state;

/* s (rows, D) = sum over fields of x (rows, F, D); y (rows, D) or (rows, 1). */
static void fm_forward(const float *x, float *s, float *y, long rows, int f, int d, int reduce)
{
    for (long b = 0; b < rows; b++) {
        const float *xb = x + b * f * d;
        float *sb = s + b * d;
        double total = 0;
        for (int j = 0; j < d; j++) {
            double sum = 0, sq = 0;     /* double: s^2 - sum v^2 cancels */
            for (int k = 0; k < f; k++) {
                double v = xb[k * d + j];
                sum += v;
                sq += v * v;
            }
            sb[j] = (float)sum;
            double yj = 0.5 * (sum * sum - sq);
            if (reduce) total += yj;
            else y[b * d + j] = (float)yj;
        }
        if (reduce) y[b] = (float)total;
    }
}

/* dx (rows, F, D)[b, f, j] += dy[b, j or 0] * (s[b, j] - x[b, f, j]). */
static void fm_backward(const float *x, const float *s, const float *dy, float *dx, long rows,
                        int f, int d, int reduce)
{
    for (long b = 0; b < rows; b++) {
        const float *xb = x + b * f * d, *sb = s + b * d;
        float *dxb = dx + b * f * d;
        for (int k = 0; k < f; k++)
            for (int j = 0; j < d; j++) {
                float g = reduce ? dy[b] : dy[b * d + j];
                dxb[k * d + j] += g * (sb[j] - xb[k * d + j]);
            }
    }
}

static void destroy(ts_layer *L)
{
    fm_state *s = L->state;
    if (s) free(s->sum);
    free(s);
    L->state = NULL;
}

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96], nm[TS_NAME_MAX + 16];
    if (ts_compose_need_inputs(L, cfg, "fm", 1, 1, "one input of per-field vectors (B, F, D)", e)
        || ts_compose_need_f32(L, cfg, "fm", 0, "(B, F, D)", e))
        return -1;
    const ts_tensor *in = L->in[0];
    if (in->ndim != 3)
        return ts_fail(e, "%s: layer.%s (fm): input %s is %s, but fm needs per-field vectors "
                       "(B, F, D); set layout = fields on the embedding layer (or put a reshape "
                       "with dims = F, D in front)", ts_cfg_where(cfg, "input"), L->name,
                       ts_compose_input_name(cfg, 0, nm, sizeof nm),
                       ts_shape_str(in, sh, sizeof sh));
    if (in->dim[1] < 2)
        return ts_fail(e, "%s: layer.%s (fm): input %s has %d field; pairwise interactions need "
                       "2 or more", ts_cfg_where(cfg, "input"), L->name,
                       ts_shape_str(in, sh, sizeof sh), in->dim[1]);
    int reduce;
    if (ts_cfg_bool(cfg, "reduce", &reduce, e)) return -1;
    fm_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->reduce = reduce;
    s->f = in->dim[1];
    s->d = in->dim[2];
    s->max_rows = in->dim[0];
    s->sum = malloc(sizeof(float) * (size_t)s->max_rows * (size_t)s->d);
    if (!s->sum) return ts_fail(e, "layer.%s: out of memory for %ld rows", L->name, s->max_rows);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 2;
    out->dim[0] = in->dim[0];
    out->dim[1] = reduce ? 1 : s->d;
    return 0;
}

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(L, cfg, e) == 0) return 0;
    destroy(L);
    return -1;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    fm_state *s = L->state;
    const ts_tensor *in = L->in[0];
    if (in->dim[0] > s->max_rows)
        return ts_fail(e, "layer.%s: batch of %d rows exceeds the %ld it was built for", L->name,
                       in->dim[0], s->max_rows);
    fm_forward(in->x, s->sum, L->out[0].x, in->dim[0], s->f, s->d, s->reduce);
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    const fm_state *s = L->state;
    const ts_tensor *in = L->in[0];
    if (in->dx)
        fm_backward(in->x, s->sum, L->out[0].dx, in->dx, in->dim[0], s->f, s->d, s->reduce);
    return 0;
}

static const ts_key keys[] = {
    {"reduce", "bool", "true", "true: the interaction summed to (B, 1); false: per dimension, "
     "(B, D)"},
    {NULL, NULL, NULL, NULL}};

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 5 3", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "fm", "1.0",
    "factorisation machine pairwise interaction over (B, F, D): -> (B, 1), or (B, D)", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
