/* init_probe.c — a test head that reports how the host called its `init` op: a regression head
 * (plain mean squared error on one value per row) holding one parameter, initialised to the
 * constant 0.25, whose init counts its calls and records the parameter's value at that moment.
 * eval_end reports them as the metrics init_calls (the host must call init exactly once) and
 * init_saw (0.25: init came after the arena was allocated and initialised). Never installed. */
#include <stdlib.h>
#include "tessera.h"

typedef struct probe {
    ts_param *s;              /* (1, 1), TS_INIT_CONST 0.25, never trained */
    int calls;                /* init calls so far */
    float saw;                /* s->w[0] when init ran */
} probe;

static int build(ts_head *H, const ts_cfg *cfg, ts_err *e)
{
    (void)cfg;
    if (H->nin != 1 || H->in[0]->dtype != TS_F32 || ts_rowsize(H->in[0]) != 1 || !H->label)
        return ts_fail(e, "init_probe takes one value per row and a label");
    probe *p = calloc(1, sizeof *p);
    if (!p) return ts_fail(e, "out of memory");
    p->saw = -1;
    if (!(p->s = ts_param_add(H->ctx, "s", 1, 1, TS_INIT_CONST, 0.25f, TS_PARAM_FROZEN, e))) {
        free(p);
        return -1;
    }
    H->state = p;
    return 0;
}

static int init(ts_head *H, ts_err *e)
{
    probe *p = H->state;
    if (!p->s->w) return ts_fail(e, "init ran before the parameter arena existed");
    p->calls++;
    p->saw = p->s->w[0];
    return 0;
}

static int forward(ts_head *H, ts_phase phase, double *loss, ts_err *e)
{
    (void)e;
    const ts_tensor *z = H->in[0];
    long n = z->dim[0];
    double sum = 0;
    for (long i = 0; i < n; i++) {
        double r = (double)z->x[i] - H->label->x[i];
        sum += r * r;
        if (phase == TS_TRAIN && z->dx) z->dx[i] += H->grad_scale * (float)(2 * r / n);
    }
    *loss = n ? sum / n : 0;
    return 0;
}

static int eval_begin(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)H; (void)phase; (void)e;
    return 0;
}

static int eval_end(ts_head *H, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    const probe *p = H->state;
    ts_metric(H->ctx, H->name, "init_calls", p->calls);
    ts_metric(H->ctx, H->name, "init_saw", p->saw);
    return 0;
}

static void destroy(ts_head *H) { free(H->state); }

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};
static const ts_head_ops ops = {.size = sizeof(ts_head_ops), .build = build, .forward = forward,
    .eval_begin = eval_begin, .eval_end = eval_end, .destroy = destroy, .check_inputs = "f32 6 1",
    .check_label = "real", .init = init};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_HEAD, "init_probe", "0",
                                 "a head reporting its init calls (test only)", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
