/* no_touch.c — a test plugin: an embedding table (ids (B, F) -> (B, F*dim)) declared sparse whose
 * backward adds the right gradients into its rows but never calls ts_param_touch, so an
 * optimizer, which updates only touched rows, never moves them. `tessera check-plugin` must fail
 * it with a sentence. Never installed. */
#include <stdlib.h>
#include "tessera.h"

typedef struct table {
    int fields, dim;
    ts_param *t;              /* (vocab, dim), TS_PARAM_SPARSE */
} table;

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    long dim;
    if (ts_cfg_int(cfg, "dim", &dim, e)) return -1;
    const ts_tensor *in = L->in[0];
    if (L->nin != 1 || in->dtype != TS_I32 || in->ndim != 2 || in->vocab < 1)
        return ts_fail(e, "needs ids (B, F) with a vocabulary");
    table *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "out of memory");
    s->fields = in->dim[1];
    s->dim = (int)dim;
    s->t = ts_param_add(L->ctx, "table", (int)in->vocab, (int)dim, TS_INIT_NORMAL, 0.1f,
                        TS_PARAM_SPARSE, e);
    if (!s->t) { free(s); return -1; }
    L->state = s;
    L->out[0].dtype = TS_F32;
    L->out[0].ndim = 2;
    L->out[0].dim[1] = s->fields * s->dim;
    return 0;
}

static void destroy(ts_layer *L) { free(L->state); }

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    const table *s = L->state;
    long n = (long)L->in[0]->dim[0] * s->fields;
    for (long i = 0; i < n; i++)
        for (int j = 0; j < s->dim; j++)
            L->out[0].x[i * s->dim + j] = s->t->w[(long)L->in[0]->ids[i] * s->dim + j];
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    table *s = L->state;
    long n = (long)L->in[0]->dim[0] * s->fields;
    for (long i = 0; i < n; i++)   /* right gradients, but no ts_param_touch(s->t, id) */
        for (int j = 0; j < s->dim; j++)
            s->t->g[(long)L->in[0]->ids[i] * s->dim + j] += L->out[0].dx[i * s->dim + j];
    return 0;
}

static const ts_key keys[] = {{"dim", "int", "3", "width of each vector"}, {NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops), .build = build, .forward = forward,
                                 .backward = backward, .destroy = destroy,
                                 .check_inputs = "i32 4 3 vocab=20"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "no_touch", "0",
                                 "a sparse table that never calls ts_param_touch (test only)", keys,
                                 &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
