/* elementwise.c — layers that combine inputs of one shape cell by cell: add, multiply, and the
 * row-wise dot product.
 *
 *   add:      y = x_1 + x_2 + ... + x_n                   dy/dx_i = 1
 *   multiply: y = x_1 * x_2 * ... * x_n (Hadamard)        dy/dx_i = prod_{j != i} x_j
 *   dot:      y[r] = sum_d a[r, d] b[r, d] over the last axis, (B, ..., D) x2 -> (B, ..., 1)
 *                                                         dy/da = b, dy/db = a
 * add and multiply take 2 to 16 float inputs of exactly one shape (no broadcasting: a shape
 * mismatch is an error naming the INI line and both inputs), and pass sequence lengths through.
 * multiply's gradient is the product of the other inputs, computed directly (never y / x_i, which
 * a zero would break). What they are not: concat (side by side), nor a weighted sum (a dense layer
 * learns weights), nor cosine (normalised).
 */
#include "tessera.h"

#include <stdlib.h>
#include <string.h>

#include "compose.h"

enum { ADD = 0, MULTIPLY = 1, DOT = 2 };

static const char *const type_name[] = {"add", "multiply", "dot"};

/* y (n) = sum_i x_i (n). */
static void add_forward(const float *const *x, int nin, float *y, long n)
{
    memcpy(y, x[0], sizeof(float) * (size_t)n);
    for (int i = 1; i < nin; i++)
        for (long j = 0; j < n; j++) y[j] += x[i][j];
}

/* y (n) = prod_i x_i (n). */
static void mul_forward(const float *const *x, int nin, float *y, long n)
{
    memcpy(y, x[0], sizeof(float) * (size_t)n);
    for (int i = 1; i < nin; i++)
        for (long j = 0; j < n; j++) y[j] *= x[i][j];
}

/* dx_k (n) += dy (n) * prod_{i != k} x_i (n). */
static void mul_backward(const float *const *x, int nin, int k, const float *dy, float *dxk,
                         long n)
{
    for (long j = 0; j < n; j++) {
        float p = dy[j];
        for (int i = 0; i < nin; i++)
            if (i != k) p *= x[i][j];
        dxk[j] += p;
    }
}

/* y (rows) = row-wise dot products of a, b (rows, d). */
static void dot_forward(const float *a, const float *b, float *y, long rows, long d)
{
    for (long r = 0; r < rows; r++) {
        float s = 0;
        for (long j = 0; j < d; j++) s += a[r * d + j] * b[r * d + j];
        y[r] = s;
    }
}

/* da (rows, d) += dy (rows) * other (rows, d). */
static void dot_backward(const float *other, const float *dy, float *da, long rows, long d)
{
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < d; j++) da[r * d + j] += dy[r] * other[r * d + j];
}

/* The kind lives in L->state as kind + 1 (no allocation: nothing to free). */
static int kind_of(const ts_layer *L) { return (int)(intptr_t)L->state - 1; }

static int build_kind(ts_layer *L, const ts_cfg *cfg, int kind, ts_err *e)
{
    const char *type = type_name[kind];
    if (kind == DOT ? ts_compose_need_inputs(L, cfg, type, 2, 2, "two inputs of one shape "
                                             "(B, ..., D): input = A, B", e)
                    : ts_compose_need_inputs(L, cfg, type, 2, TS_MAX_IN, "2 to 16 inputs of "
                                             "one shape: input = A, B, ...", e))
        return -1;
    for (int i = 0; i < L->nin; i++)
        if (ts_compose_need_f32(L, cfg, type, i, "of one shape", e)) return -1;
    const ts_tensor *a = L->in[0];
    for (int i = 1; i < L->nin; i++) {
        if (ts_compose_same_shape(a, L->in[i]) && L->in[i]->dim[0] == a->dim[0]) continue;
        char n0[TS_NAME_MAX + 16], ni[TS_NAME_MAX + 16], s0[96], si[96];
        return ts_fail(e, "%s: layer.%s (%s): input %d %s is %s but input 1 %s is %s; %s needs "
                       "inputs of exactly one shape (no broadcasting): map one to the other's "
                       "width with a dense layer, or reshape it", ts_cfg_where(cfg, "input"),
                       L->name, type, i + 1, ts_compose_input_name(cfg, i, ni, sizeof ni),
                       ts_shape_str(L->in[i], si, sizeof si),
                       ts_compose_input_name(cfg, 0, n0, sizeof n0), ts_shape_str(a, s0, sizeof s0),
                       type);
    }
    L->state = (void *)(intptr_t)(kind + 1);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = a->ndim;
    memcpy(out->dim, a->dim, sizeof out->dim);
    if (kind == DOT) {
        if (out->ndim == 1) out->ndim = 2;
        out->dim[out->ndim - 1] = 1;
    }
    return 0;
}

static int build_add(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    return build_kind(L, cfg, ADD, e);
}
static int build_multiply(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    return build_kind(L, cfg, MULTIPLY, e);
}
static int build_dot(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    return build_kind(L, cfg, DOT, e);
}

/* The width of the last axis of a dot's inputs (1 for a 1-d input). */
static long last_dim(const ts_tensor *t) { return t->ndim > 1 ? t->dim[t->ndim - 1] : 1; }

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    const float *x[TS_MAX_IN];
    for (int i = 0; i < L->nin; i++) x[i] = L->in[i]->x;
    long n = ts_numel(L->in[0]);
    int kind = kind_of(L);
    if (kind == DOT) {
        long d = last_dim(L->in[0]);
        dot_forward(x[0], x[1], L->out[0].x, n / d, d);
        return 0;
    }
    L->out[0].len = L->in[0]->len;
    if (kind == ADD) add_forward(x, L->nin, L->out[0].x, n);
    else mul_forward(x, L->nin, L->out[0].x, n);
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    const float *x[TS_MAX_IN];
    for (int i = 0; i < L->nin; i++) x[i] = L->in[i]->x;
    const float *dy = L->out[0].dx;
    long n = ts_numel(L->in[0]);
    int kind = kind_of(L);
    if (kind == DOT) {
        long d = last_dim(L->in[0]);
        if (L->in[0]->dx) dot_backward(x[1], dy, L->in[0]->dx, n / d, d);
        if (L->in[1]->dx) dot_backward(x[0], dy, L->in[1]->dx, n / d, d);
        return 0;
    }
    for (int k = 0; k < L->nin; k++) {
        float *dx = L->in[k]->dx;
        if (!dx) continue;
        if (kind == ADD)
            for (long j = 0; j < n; j++) dx[j] += dy[j];
        else
            mul_backward(x, L->nin, k, dy, dx, n);
    }
    return 0;
}

static void destroy(ts_layer *L) { L->state = NULL; }

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

static const ts_layer_ops add_ops = {.size = sizeof(ts_layer_ops),
    .build = build_add, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 3 2 len; f32 4 3 2; f32 4 3 2", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_layer_ops multiply_ops = {.size = sizeof(ts_layer_ops),
    .build = build_multiply, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 5; f32 4 5; f32 4 5", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_layer_ops dot_ops = {.size = sizeof(ts_layer_ops),
    .build = build_dot, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 6; f32 4 6", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugins[3] = {
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "add", "1.0",
     "elementwise sum of 2+ inputs of one shape", keys, &add_ops},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "multiply", "1.0",
     "elementwise (Hadamard) product of 2+ inputs of one shape", keys, &multiply_ops},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "dot", "1.0",
     "row-wise dot product over the last axis: (B, ..., D) x2 -> (B, ..., 1)", keys, &dot_ops}};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i < 3 ? &plugins[i] : NULL; }
