/* null_dx.c — a test plugin: the layer y = 2x whose backward writes through in->dx without
 * checking it for NULL (a NULL dx means nothing upstream learns), so it crashes when its input
 * is a dataset field. `tessera check-plugin` must report the crash as a failed check and keep
 * running; with `safe = true` the layer checks, and passes. Never installed. */
#include "tessera.h"

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    int safe = 0;
    if (ts_cfg_bool(cfg, "safe", &safe, e)) return -1;
    L->state = safe ? (void *)L : NULL;   /* non-NULL: check dx (nothing to free) */
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
    float *volatile dx = L->in[0]->dx;   /* volatile: the compiler may not drop the bad store */
    if (L->state && !dx) return 0;
    long n = ts_numel(L->in[0]);
    for (long i = 0; i < n; i++) dx[i] += 2 * L->out[0].dx[i];   /* no NULL check unless safe */
    return 0;
}

static const ts_key keys[] = {{"safe", "bool", "false", "skip a NULL dx, as the contract says"},
                              {NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops), .build = build, .forward = forward,
                                 .backward = backward, .check_inputs = "f32 3 4"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "null_dx", "0",
                                 "y = 2x that writes through a NULL dx (test only)", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
