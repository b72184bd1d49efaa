/* activation.c — the elementwise activations relu, tanh and sigmoid, three plugins in one file
 * (entries 0, 1, 2).
 *
 * Any float shape in, the same shape out; sequence lengths pass through. Each derivative is
 * written in terms of the output y, so backward needs no saved input:
 *   relu:    y = max(x, 0),          dy/dx = [y > 0]
 *   tanh:    y = tanh(x),            dy/dx = 1 - y^2
 *   sigmoid: y = 1 / (1 + exp(-x)),  dy/dx = y (1 - y)
 * Both passes are vectorised kernels (vecmath.h; tanh through ts_vec_tanh, within 1 ulp).
 * It is not a dense layer's built-in activation (dense has `activation =`) and has no
 * parameters (no PReLU, no GELU).
 */
#include "tessera.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "vecmath.h"

enum { RELU = 0, TANH = 1, SIGMOID = 2 };

/* y (n) = f(x (n)) for relu and sigmoid */
TS_VEC static void relu_sigmoid(int kind, const float *x, float *y, long n)
{
    if (kind == RELU)
        for (long i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    else
        for (long i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

/* y (n) = f(x (n)) */
static void act_forward(int kind, const float *x, float *y, long n)
{
    if (kind == TANH) ts_vec_tanh(x, y, n);
    else relu_sigmoid(kind, x, y, n);
}

/* dx (n) += dy (n) * f'(x), with f' from the output y (n) */
TS_VEC static void act_backward(int kind, const float *y, const float *dy, float *dx, long n)
{
    if (kind == RELU)
        for (long i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
    else if (kind == TANH)
        for (long i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
    else
        for (long i = 0; i < n; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

/* The kind travels in L->state as a small integer + 1 (no allocation needed). */
static int kind_of(const ts_layer *L) { return (int)(intptr_t)L->state - 1; }

static int build_kind(ts_layer *L, const ts_cfg *cfg, int kind, ts_err *e)
{
    char sh[96];
    if (L->nin != 1 || L->in[0]->dtype != TS_F32)
        return ts_fail(e, "%s: layer.%s takes one float input, got %d input(s) (first: %s)",
                       ts_cfg_where(cfg, "input"), L->name, L->nin,
                       L->nin ? ts_shape_str(L->in[0], sh, sizeof sh) : "none");
    L->state = (void *)(intptr_t)(kind + 1);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = L->in[0]->ndim;
    memcpy(out->dim, L->in[0]->dim, sizeof out->dim);
    return 0;
}

static int build_relu(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    return build_kind(L, cfg, RELU, e);
}
static int build_tanh(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    return build_kind(L, cfg, TANH, e);
}
static int build_sigmoid(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    return build_kind(L, cfg, SIGMOID, e);
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    L->out[0].len = L->in[0]->len;
    act_forward(kind_of(L), L->in[0]->x, L->out[0].x, ts_numel(L->in[0]));
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    if (L->in[0]->dx)
        act_backward(kind_of(L), L->out[0].x, L->out[0].dx, L->in[0]->dx, ts_numel(L->in[0]));
    return 0;
}

static void destroy(ts_layer *L) { L->state = NULL; }

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

/* relu's kink at 0 is measure-zero for random inputs; the checker's inputs avoid it in practice */
static const ts_layer_ops relu_ops = {.size = sizeof(ts_layer_ops),
    .build = build_relu, .forward = forward,
    .backward = backward, .destroy = destroy, .check_inputs = "f32 4 3 5", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_layer_ops tanh_ops = {.size = sizeof(ts_layer_ops),
    .build = build_tanh, .forward = forward,
    .backward = backward, .destroy = destroy, .check_inputs = "f32 4 5 3 len", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_layer_ops sigmoid_ops = {.size = sizeof(ts_layer_ops),
    .build = build_sigmoid, .forward = forward,
    .backward = backward, .destroy = destroy, .check_inputs = "f32 4 6", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugins[3] = {
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "relu", "1.0", "elementwise max(x, 0)", keys,
     &relu_ops},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "tanh", "1.0", "elementwise tanh(x)", keys, &tanh_ops},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "sigmoid", "1.0", "elementwise 1 / (1 + exp(-x))",
     keys, &sigmoid_ops}};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i < 3 ? &plugins[i] : NULL; }
