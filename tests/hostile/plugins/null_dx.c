/* null_dx.c — a hostile test plugin: the layer y = 2x whose backward writes its input's gradient
 * without checking that dx is not NULL (tessera.h: dx is NULL when nothing upstream learns, as
 * for a dataset field). Fed a field it dereferences NULL, so `tessera check-plugin` must pass it
 * a NULL dx and fail it with a sentence, not crash. Never installed. */
#include "tessera.h"

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    (void)cfg;
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
    float *dx = L->in[0]->dx;                 /* wrong: never checked for NULL */
    for (long i = 0; i < n; i++) dx[i] += 2 * L->out[0].dx[i];
    return 0;
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops = {
#if TS_ABI >= 3   /* from ABI 3 on, every ops table starts with its size */
                                 .size = sizeof(ts_layer_ops),
#endif
                                 .build = build, .forward = forward, .backward = backward,
                                 .check_inputs = "f32 3 4"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "null_dx", "0",
                                 "y = 2x that writes a NULL dx (hostile test only)", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
