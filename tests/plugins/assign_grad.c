/* assign_grad.c — test plugins that break the backward contract by ASSIGNING gradients instead
 * of adding to them: `assign_dx` (y = 2x) writes dx = 2 dy, `assign_dw` (y = x * a, a learned
 * scale per feature) writes da = sum dy x. Their gradients are right, so finite differences pass;
 * `tessera check-plugin` must fail them on accumulation. Never installed. */
#include <stdlib.h>
#include "tessera.h"

static int build_dx(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    (void)cfg;
    if (L->nin != 1 || L->in[0]->dtype != TS_F32) return ts_fail(e, "needs one float input");
    L->out[0] = *L->in[0];
    L->out[0].x = L->out[0].dx = NULL;
    return 0;
}

static int forward_dx(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    long n = ts_numel(L->in[0]);
    for (long i = 0; i < n; i++) L->out[0].x[i] = 2 * L->in[0]->x[i];
    return 0;
}

static int backward_dx(ts_layer *L, ts_err *e)
{
    (void)e;
    long n = ts_numel(L->in[0]);
    if (L->in[0]->dx)
        for (long i = 0; i < n; i++) L->in[0]->dx[i] = 2 * L->out[0].dx[i];   /* wrong: = */
    return 0;
}

/* y (rows, D) = x (rows, D) * a (D) */
static int build_dw(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    (void)cfg;
    if (L->nin != 1 || L->in[0]->dtype != TS_F32) return ts_fail(e, "needs one float input");
    const ts_tensor *x = L->in[0];
    ts_param *a = ts_param_add(L->ctx, "a", 1, x->dim[x->ndim - 1], TS_INIT_ONES, 0, 0, e);
    if (!a) return -1;
    L->state = a;
    L->out[0] = *x;
    L->out[0].x = L->out[0].dx = NULL;
    return 0;
}

static int forward_dw(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    const ts_param *a = L->state;
    long n = ts_numel(L->in[0]);
    for (long i = 0; i < n; i++) L->out[0].x[i] = L->in[0]->x[i] * a->w[i % a->cols];
    return 0;
}

static int backward_dw(ts_layer *L, ts_err *e)
{
    (void)e;
    ts_param *a = L->state;
    long n = ts_numel(L->in[0]);
    const float *x = L->in[0]->x, *dy = L->out[0].dx;
    for (int j = 0; j < a->cols; j++) a->g[j] = 0;   /* wrong: overwrites what g held */
    for (long i = 0; i < n; i++) {
        a->g[i % a->cols] += dy[i] * x[i];
        if (L->in[0]->dx) L->in[0]->dx[i] += dy[i] * a->w[i % a->cols];
    }
    return 0;
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops_dx = {.size = sizeof(ts_layer_ops), .build = build_dx,
    .forward = forward_dx, .backward = backward_dx, .check_inputs = "f32 3 4"};
static const ts_layer_ops ops_dw = {.size = sizeof(ts_layer_ops), .build = build_dw,
    .forward = forward_dw, .backward = backward_dw, .check_inputs = "f32 3 4"};
static const ts_plugin plugins[] = {
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "assign_dx", "0",
     "y = 2x whose backward assigns dx (test only)", keys, &ops_dx},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "assign_dw", "0",
     "y = x * a whose backward assigns the gradient of a (test only)", keys, &ops_dw}};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i < 2 ? &plugins[i] : NULL; }
