/* layer_norm.c — layer normalisation (Ba, Kiros, Hinton, 2016) over the last axis, with a
 * learned gain and bias per feature.
 *
 * Each row x (D) of the (rows, D) view of the input (B, ..., D):
 *   mu = mean_j x_j,  var = mean_j (x_j - mu)^2,  rstd = 1 / sqrt(var + eps)
 *   xhat = (x - mu) * rstd,  y = gain * xhat + bias          gain (1, D) = 1, bias (1, D) = 0 at init
 * Backward, with g = dy * gain:
 *   dx += rstd * (g - mean_j g_j - xhat * mean_j (g_j xhat_j))
 *   dgain += sum over rows of dy * xhat,  dbias += sum over rows of dy
 * Means and variances are summed in double; xhat and rstd are kept from forward. The same in
 * training and evaluation (no running statistics, unlike batch normalisation, which this is
 * not); sequence lengths pass through (padded steps are normalised too and ignored downstream).
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compose.h"

typedef struct ln_state {
    int d;                    /* the normalised axis */
    double eps;
    ts_param *gain, *bias;    /* (1, D) each */
    float *xhat;              /* (max_rows, D) of the last forward */
    float *rstd;              /* (max_rows) of the last forward */
    long max_rows;
} ln_state;

static long view_rows(const ts_tensor *t) { return ts_numel(t) / t->dim[t->ndim - 1]; }

/* y, xhat (rows, d) and rstd (rows) from x (rows, d). */
static void ln_forward(const float *x, const float *gain, const float *bias, float *y,
                       float *xhat, float *rstd, long rows, int d, double eps)
{
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        double mu = 0, var = 0;
        for (int j = 0; j < d; j++) mu += xr[j];
        mu /= d;
        for (int j = 0; j < d; j++) var += (xr[j] - mu) * (xr[j] - mu);
        var /= d;
        double rs = 1.0 / sqrt(var + eps);
        rstd[r] = (float)rs;
        for (int j = 0; j < d; j++) {
            float h = (float)((xr[j] - mu) * rs);
            xhat[r * d + j] = h;
            y[r * d + j] = gain[j] * h + bias[j];
        }
    }
}

/* dx (rows, d) += ..., dgain, dbias (d) += ... (see the file's comment); dx may be NULL. */
static void ln_backward(const float *dy, const float *xhat, const float *rstd, const float *gain,
                        float *dx, float *dgain, float *dbias, long rows, int d)
{
    for (long r = 0; r < rows; r++) {
        const float *dyr = dy + r * d, *hr = xhat + r * d;
        double mg = 0, mgh = 0;
        for (int j = 0; j < d; j++) {
            double g = (double)dyr[j] * gain[j];
            mg += g;
            mgh += g * hr[j];
            dgain[j] += dyr[j] * hr[j];
            dbias[j] += dyr[j];
        }
        if (!dx) continue;
        mg /= d;
        mgh /= d;
        for (int j = 0; j < d; j++)
            dx[r * d + j] += (float)(rstd[r] * ((double)dyr[j] * gain[j] - mg - hr[j] * mgh));
    }
}

static void destroy(ts_layer *L)
{
    ln_state *s = L->state;
    if (s) {
        free(s->xhat);
        free(s->rstd);
    }
    free(s);
    L->state = NULL;
}

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    if (ts_compose_need_inputs(L, cfg, "layer_norm", 1, 1, "one input", e) ||
        ts_compose_need_f32(L, cfg, "layer_norm", 0, "(B, ..., D)", e))
        return -1;
    const ts_tensor *in = L->in[0];
    if (in->ndim < 2 || in->dim[in->ndim - 1] < 2)
        return ts_fail(e, "%s: layer.%s (layer_norm) needs (B, ..., D) with D >= 2 to normalise "
                       "over, got %s", ts_cfg_where(cfg, "input"), L->name,
                       ts_shape_str(in, sh, sizeof sh));
    double eps;
    if (ts_cfg_float(cfg, "eps", &eps, e)) return -1;
    if (!(eps > 0))
        return ts_fail(e, "%s: layer.%s (layer_norm): eps = %g; it must be > 0 (it keeps a "
                       "constant row finite)", ts_cfg_where(cfg, "eps"), L->name, eps);
    ln_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->d = in->dim[in->ndim - 1];
    s->eps = eps;
    s->max_rows = view_rows(in);
    if (!(s->gain = ts_param_add(L->ctx, "gain", 1, s->d, TS_INIT_ONES, 0, 0, e)) ||
        !(s->bias = ts_param_add(L->ctx, "bias", 1, s->d, TS_INIT_ZEROS, 0, 0, e)))
        return -1;
    s->xhat = malloc(sizeof(float) * (size_t)s->max_rows * (size_t)s->d);
    s->rstd = malloc(sizeof(float) * (size_t)s->max_rows);
    if (!s->xhat || !s->rstd)
        return ts_fail(e, "layer.%s: out of memory for %ld rows", L->name, s->max_rows);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = in->ndim;
    memcpy(out->dim, in->dim, sizeof out->dim);
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
    ln_state *s = L->state;
    const ts_tensor *in = L->in[0];
    long rows = view_rows(in);
    if (rows > s->max_rows)
        return ts_fail(e, "layer.%s: batch of %ld rows exceeds the %ld it was built for", L->name,
                       rows, s->max_rows);
    L->out[0].len = in->len;
    ln_forward(in->x, s->gain->w, s->bias->w, L->out[0].x, s->xhat, s->rstd, rows, s->d, s->eps);
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    ln_state *s = L->state;
    const ts_tensor *in = L->in[0];
    ln_backward(L->out[0].dx, s->xhat, s->rstd, s->gain->w, in->dx, s->gain->g, s->bias->g,
                view_rows(in), s->d);
    return 0;
}

static const ts_key keys[] = {
    {"eps", "float", "1e-5", "added to the variance before the square root"},
    {NULL, NULL, NULL, NULL}};

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 3 6 len", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "layer_norm", "1.0",
    "layer normalisation over the last axis with a learned gain and bias", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
