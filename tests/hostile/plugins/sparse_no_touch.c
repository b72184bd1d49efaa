/* sparse_no_touch.c — a hostile test plugin: an embedding table declared sparse whose backward
 * adds the gradient into the rows a batch used but never calls ts_param_touch, so an optimizer
 * (which updates only touched rows of a sparse parameter) never moves it: the layer never trains.
 * Its gradient is right, so only a check that takes an optimizer step and requires the touched
 * rows to move catches it (`tessera check-plugin` must fail on it). Never installed. */
#include <stdlib.h>
#include <string.h>
#include "tessera.h"

typedef struct table_state {
    ts_param *table;        /* (vocab, dim), sparse */
    int fields, dim;
} table_state;

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    long dim = 0;
    if (ts_cfg_int(cfg, "dim", &dim, e)) return -1;
    if (L->nin != 1 || L->in[0]->dtype != TS_I32 || L->in[0]->ndim != 2)
        return ts_fail(e, "needs one (B, F) input of ids");
    table_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "out of memory");
    L->state = s;
    s->fields = L->in[0]->dim[1];
    s->dim = (int)dim;
    s->table = ts_param_add(L->ctx, "table", (int)L->in[0]->vocab, s->dim, TS_INIT_NORMAL, 0.05f,
                            TS_PARAM_SPARSE, e);
    if (!s->table) {
        free(s);
        L->state = NULL;
        return -1;
    }
    L->out[0].dtype = TS_F32;
    L->out[0].ndim = 2;
    L->out[0].dim[0] = L->in[0]->dim[0];
    L->out[0].dim[1] = s->fields * s->dim;
    return 0;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    table_state *s = L->state;
    long n = (long)L->in[0]->dim[0] * s->fields;
    for (long i = 0; i < n; i++) {
        int32_t id = L->in[0]->ids[i];
        if (id < 0 || id >= s->table->rows) return ts_fail(e, "id %d outside the table", id);
        memcpy(L->out[0].x + i * s->dim, s->table->w + (long)id * s->dim,
               sizeof(float) * (size_t)s->dim);
    }
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    table_state *s = L->state;
    long n = (long)L->in[0]->dim[0] * s->fields;
    for (long i = 0; i < n; i++) {
        float *g = s->table->g + (long)L->in[0]->ids[i] * s->dim;
        for (int j = 0; j < s->dim; j++) g[j] += L->out[0].dx[i * s->dim + j];
        /* wrong: no ts_param_touch(s->table, ids[i]) */
    }
    return 0;
}

static void destroy(ts_layer *L)
{
    free(L->state);
    L->state = NULL;
}

static const ts_key keys[] = {{"dim", "int", NULL, "width of each field's vector"},
                              {NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops = {
#if TS_ABI >= 3   /* from ABI 3 on, every ops table starts with its size */
                                 .size = sizeof(ts_layer_ops),
#endif
                                 .build = build, .forward = forward, .backward = backward,
                                 .destroy = destroy, .check_inputs = "i32 4 3 vocab=20",
                                 .check_keys = "dim=5"};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "sparse_no_touch", "0",
                                 "a sparse table that never marks rows touched (hostile test only)",
                                 keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
