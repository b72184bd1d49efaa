/* bad_grad.c — a test plugin: the layer y = 2x with a deliberately wrong backward (it passes
 * 3 dy back instead of 2 dy), so that a test can show `tessera check-plugin` failing; with
 * `nan = true` it passes NaN back instead, and with `inf = true` +infinity in the first cell only
 * (the rest as without it), for the NaN guard's tests. Never installed. */
#include <math.h>
#include <stdlib.h>
#include "tessera.h"

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    int nan = 0, inf = 0;
    if (ts_cfg_bool(cfg, "nan", &nan, e) < 0 || ts_cfg_bool(cfg, "inf", &inf, e) < 0) return -1;
    /* non-NULL: NaN mode (nothing to free); (char *)L + 1: the infinity mode */
    L->state = nan ? (void *)L : inf ? (void *)((char *)L + 1) : NULL;
    if (L->nin != 1 || L->in[0]->dtype != TS_F32) return ts_fail(e, "needs one float input");
    L->out[0] = *L->in[0];
    L->out[0].x = L->out[0].dx = NULL;
    return 0;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    long n = ts_numel(L->in[0]);
    for (long i = 0; i < n; i++) L->out[0].x[i] = 2 * L->in[0]->x[i];
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    long n = ts_numel(L->in[0]);
    if (L->in[0]->dx)
        for (long i = 0; i < n; i++)   /* wrong on purpose */
            L->in[0]->dx[i] += L->state == (void *)L ? NAN
                               : L->state && i == 0 ? INFINITY : 3 * L->out[0].dx[i];
    return 0;
}

static const ts_key keys[] = {{"nan", "bool", "false", "pass NaN down instead of 3 dy"},
                              {"inf", "bool", "false", "pass +inf down in the first cell"},
                              {NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward,
                                 .check_inputs = "f32 3 4"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "bad_grad", "0",
                                 "y = 2x with a wrong backward (test only)", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
