/* dense.c — the fully connected layer y = act(x W + b) over the last dimension.
 *
 * An input (B, ..., D) is read as (rows, D) with rows = B * ... , so the same layer works on
 * (B, D) features and per time step on (B, T, D) sequences (the lengths pass through).
 * Forward and backward are two sgemm calls each; the activation's derivative is taken from the
 * output, so nothing but one (rows, units) scratch buffer is kept between the passes. The
 * elementwise passes (activation, its derivative, the bias gradient) are vectorised kernels
 * (vecmath.h): with libm's scalar tanhf they cost as much as the sgemms of a DSSM tower.
 * It is not a convolution, not a multi-output layer, and it does not mask padded steps: a
 * padded step computes a value that a sequence-aware layer downstream ignores.
 */
#include "tessera.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vecmath.h"

enum { ACT_NONE = 0, ACT_RELU, ACT_TANH, ACT_SIGMOID };

typedef struct dense_state {
    int d, units;             /* input width D, output width */
    int act;                  /* ACT_* */
    int has_bias;
    ts_param *w;              /* (D, units) */
    ts_param *b;              /* (1, units), NULL without bias */
    float *dz;                /* (max_rows, units) scratch: dY * act'(y) */
    long max_rows;
} dense_state;

/* Rows of the (rows, D) view of a tensor whose last dimension is D. */
static long view_rows(const ts_tensor *t) { return ts_numel(t) / t->dim[t->ndim - 1]; }

/* y (n) = act(y (n)) in place, for relu and sigmoid (tanh goes through ts_vec_tanh). */
TS_VEC static void act_inplace(float *y, long n, int act)
{
    if (act == ACT_RELU)
        for (long i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    else if (act == ACT_SIGMOID)
        for (long i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-y[i]));
}

/* y (rows, units) = b (units) in every row; narrow layers (towers of 8, logits of 1) by a
 * loop instead of a memcpy call per row. */
TS_VEC static void bias_rows(float *y, const float *b, long rows, int units)
{
    if (units >= 32) {
        for (long r = 0; r < rows; r++) memcpy(y + r * units, b, sizeof(float) * (size_t)units);
        return;
    }
    if (units == 1) {
        for (long r = 0; r < rows; r++) y[r] = b[0];
        return;
    }
    for (long r = 0; r < rows; r++)
        for (int j = 0; j < units; j++) y[r * units + j] = b[j];
}

/* y (rows, units) = act(x (rows, D) W (D, units) + b (units)). */
static void dense_forward(const float *x, const float *w, const float *b, float *y, long rows,
                          int d, int units, int act)
{
    if (b) bias_rows(y, b, rows, units);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, units, d, 1.0f, x, d, w,
                units, b ? 1.0f : 0.0f, y, units);
    long n = rows * units;
    if (act == ACT_TANH) ts_vec_tanh(y, y, n);
    else if (act != ACT_NONE) act_inplace(y, n, act);
}

/* dz (rows, units) = dy * act'(z), with act' written in terms of the output y:
 * relu: [y > 0]; tanh: 1 - y^2; sigmoid: y (1 - y). */
TS_VEC static void act_backward(const float *y, const float *dy, float *dz, long n, int act)
{
    switch (act) {
    case ACT_RELU:
        for (long i = 0; i < n; i++) dz[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case ACT_TANH:
        for (long i = 0; i < n; i++) dz[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    case ACT_SIGMOID:
        for (long i = 0; i < n; i++) dz[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    default:
        for (long i = 0; i < n; i++) dz[i] = dy[i];
        break;
    }
}

/* db (units) += the column sums of dz (rows, units), row after row. */
TS_VEC static void col_sums(const float *dz, long rows, int units, float *db)
{
    for (long r = 0; r < rows; r++)
        for (int j = 0; j < units; j++) db[j] += dz[r * units + j];
}

/* dW (D, units) += x^T dz; db (units) += column sums of dz; dx (rows, D) += dz W^T. */
static void dense_backward(const float *x, const float *w, const float *dz, float *dw, float *db,
                           float *dx, long rows, int d, int units)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, units, (int)rows, 1.0f, x, d, dz,
                units, 1.0f, dw, units);
    if (db) col_sums(dz, rows, units, db);
    if (dx) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, d, units, 1.0f, dz,
                    units, w, units, 1.0f, dx, d);
    }
}

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (L->nin != 1) {
        return ts_fail(e, "%s: layer.%s takes one input, got %d; list one tensor in `input =`",
                       ts_cfg_where(cfg, "input"), L->name, L->nin);
    }
    const ts_tensor *in = L->in[0];
    if (in->dtype != TS_F32 || in->ndim < 2) {
        char s[96];
        return ts_fail(e, "%s: layer.%s (dense) needs a float input (B, ..., D), got %s; put an "
                       "embedding layer in front of ids", ts_cfg_where(cfg, "input"), L->name,
                       ts_shape_str(in, s, sizeof s));
    }
    long units;
    int act, init, bias;
    double scale;
    if (ts_cfg_int(cfg, "units", &units, e) || ts_cfg_choice(cfg, "activation",
        "none|relu|tanh|sigmoid", &act, e) || ts_cfg_bool(cfg, "bias", &bias, e) ||
        ts_cfg_choice(cfg, "init", "xavier|he|normal", &init, e) ||
        ts_cfg_float(cfg, "init_scale", &scale, e))
        return -1;
    if (units < 1 || units > (1L << 20))
        return ts_fail(e, "%s: units = %ld is out of range; use 1 to 1048576",
                       ts_cfg_where(cfg, "units"), units);
    dense_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->d = in->dim[in->ndim - 1];
    s->units = (int)units;
    s->act = act;
    s->has_bias = bias;
    static const ts_init inits[] = {TS_INIT_XAVIER, TS_INIT_HE, TS_INIT_NORMAL};
    s->w = ts_param_add(L->ctx, "W", s->d, s->units, inits[init], (float)scale, 0, e);
    if (!s->w) return -1;
    if (bias) {
        s->b = ts_param_add(L->ctx, "b", 1, s->units, TS_INIT_ZEROS, 0.0f, 0, e);
        if (!s->b) return -1;
    }
    s->max_rows = view_rows(in);
    s->dz = malloc(sizeof(float) * (size_t)s->max_rows * (size_t)s->units);
    if (!s->dz) return ts_fail(e, "layer.%s: out of memory for %ld rows", L->name, s->max_rows);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = in->ndim;
    memcpy(out->dim, in->dim, sizeof out->dim);
    out->dim[out->ndim - 1] = s->units;
    return 0;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    dense_state *s = L->state;
    const ts_tensor *in = L->in[0];
    long rows = view_rows(in);
    if (rows > s->max_rows)
        return ts_fail(e, "layer.%s: batch of %ld rows exceeds the %ld it was built for",
                       L->name, rows, s->max_rows);
    L->out[0].len = in->len;
    dense_forward(in->x, s->w->w, s->b ? s->b->w : NULL, L->out[0].x, rows, s->d, s->units,
                  s->act);
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    dense_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const ts_tensor *out = &L->out[0];
    long rows = view_rows(in);
    const float *dz = out->dx;          /* (rows, units) */
    if (s->act != ACT_NONE) {
        act_backward(out->x, out->dx, s->dz, rows * s->units, s->act);
        dz = s->dz;
    }
    dense_backward(in->x, s->w->w, dz, s->w->g, s->b ? s->b->g : NULL, in->dx, rows, s->d,
                   s->units);
    return 0;
}

static void destroy(ts_layer *L)
{
    dense_state *s = L->state;
    if (s) free(s->dz);
    free(s);
    L->state = NULL;
}

static const ts_key keys[] = {
    {"units", "int", NULL, "output width"},
    {"activation", "choice:none|relu|tanh|sigmoid", "none", "elementwise function of x W + b"},
    {"bias", "bool", "true", "add a learned bias b"},
    {"init", "choice:xavier|he|normal", "xavier", "initialisation of W"},
    {"init_scale", "float", "0.01", "standard deviation of W when init = normal"},
    {NULL, NULL, NULL, NULL}};

/* A build that fails frees what it allocated itself (tessera.h): destroy() takes a partial
 * state. */
static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(L, cfg, e) == 0) return 0;
    destroy(L);
    return -1;
}

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward,
    .destroy = destroy, .check_inputs = "f32 4 6", .check_keys = "units=3 activation=tanh", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "dense", "1.0",
    "fully connected layer y = act(x W + b) over the last dimension", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
