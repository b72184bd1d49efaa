/* ops_sizes.c — test plugins for the growable ABI (tessera.h, "The plugin ABI"). Three layers
 * y = x: `ops_before_init` says its ops table ends before the appended `init` op, as a plugin
 * compiled before init existed would, and its init fails if the host calls it anyway;
 * `ops_from_future` carries a table longer than this host's, as a plugin compiled against a newer
 * tessera.h would; `ops_too_small` declares 8 bytes, less than ABI 3's first layout, and must be
 * refused with a sentence. Never installed. */
#include <stddef.h>
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
    for (long i = 0; i < n; i++) L->out[0].x[i] = L->in[0]->x[i];
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    long n = ts_numel(L->in[0]);
    if (L->in[0]->dx)
        for (long i = 0; i < n; i++) L->in[0]->dx[i] += L->out[0].dx[i];
    return 0;
}

static int init_never(ts_layer *L, ts_err *e)
{
    (void)L;
    return ts_fail(e, "the host called init, which lies past this plugin's ops size");
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

static const ts_layer_ops before_init = {.size = offsetof(ts_layer_ops, init), .build = build,
    .forward = forward, .backward = backward, .check_inputs = "f32 3 4", .init = init_never};

typedef struct future_ops {
    ts_layer_ops ops;
    int (*op_of_a_later_abi)(ts_layer *L, ts_err *e);   /* unknown to this host */
} future_ops;
static const future_ops future = {{.size = sizeof(future_ops), .build = build, .forward = forward,
    .backward = backward, .check_inputs = "f32 3 4"}, init_never};

static const ts_layer_ops too_small = {.size = 8, .build = build, .forward = forward,
    .backward = backward};

static const ts_plugin plugins[] = {
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "ops_before_init", "0",
     "y = x, ops table of a plugin older than the init op (test only)", keys, &before_init},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "ops_from_future", "0",
     "y = x, ops table longer than this host's (test only)", keys, &future},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "ops_too_small", "0",
     "y = x, ops table smaller than ABI 3's first layout (test only)", keys, &too_small}};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i < 3 ? &plugins[i] : NULL; }
