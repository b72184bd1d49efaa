/* maxpool.c — max over the time axis of a (B, T, F) sequence, respecting lengths.
 *
 * What it is for: the max-pooling layer of CNN-DSSM, which keeps for every feature the strongest
 * local (word-n-gram) response of the text:
 *   y[b, f] = max_{t < len[b]} x[b, t, f],   d x[b, t*, f] += d y[b, f]  at t* = the argmax
 * (the first maximal step on ties). The forward pass is a vectorised kernel (vecmath.h); the
 * backward pass touches only the B * F argmax cells, which leaves the input's gradient zero
 * everywhere else (conv1d's backward takes its sparse path on such a gradient).
 * What it is not: an average or k-max pooling, nor a pooling with a window smaller than the
 * sequence.
 */
#include <stdlib.h>
#include <string.h>

#include "tessera.h"
#include "vecmath.h"

typedef struct {
    int32_t *arg;     /* (Bmax, F) the step t* each output took its value from */
} pool_state;

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[64];
    if (L->nin != 1)
        return ts_fail(e, "%s: maxpool takes one input (B, T, F), got %d",
                       ts_cfg_where(cfg, "input"), L->nin);
    const ts_tensor *in = L->in[0];
    if (in->dtype != TS_F32 || in->ndim != 3)
        return ts_fail(e, "%s: maxpool needs an f32 input of shape (B, T, F), got %s; it pools a "
                       "sequence such as a conv1d output", ts_cfg_where(cfg, "input"),
                       ts_shape_str(in, sh, sizeof sh));
    pool_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "maxpool: out of memory");
    L->state = s;
    s->arg = malloc((size_t)in->dim[0] * (size_t)in->dim[2] * sizeof(int32_t));
    if (!s->arg) return ts_fail(e, "maxpool %s: out of memory; lower [train] batch", L->name);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 2;
    out->dim[0] = in->dim[0];
    out->dim[1] = in->dim[2];
    return 0;
}

/* y (F) = max over the n rows of x (n, F), arg (F) = the first step that attains it. The
 * comparison is written as selects, so the loop over f vectorises; a NaN never wins (x > y is
 * false), as in a scalar loop of ifs. */
TS_VEC static void max_rows(const float *x, int n, int F, float *y, int32_t *arg)
{
    for (int f = 0; f < F; f++) { y[f] = x[f]; arg[f] = 0; }
    for (int t = 1; t < n; t++) {
        const float *xt = x + (size_t)t * F;
        for (int f = 0; f < F; f++) {
            int gt = xt[f] > y[f];
            y[f] = gt ? xt[f] : y[f];
            arg[f] = gt ? t : arg[f];
        }
    }
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    pool_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const int B = in->dim[0], T = in->dim[1], F = in->dim[2];
    const float *x = in->x;   /* (B, T, F) */
    float *y = L->out[0].x;   /* (B, F) */
    for (int b = 0; b < B; b++) {
        int n = in->len ? in->len[b] : T;
        if (n > T) n = T;
        float *yb = y + (size_t)b * F;
        int32_t *ab = s->arg + (size_t)b * F;
        if (n < 1) {  /* an empty row has nothing to pool: 0, and no gradient */
            memset(yb, 0, (size_t)F * sizeof *yb);
            for (int f = 0; f < F; f++) ab[f] = -1;
            continue;
        }
        max_rows(x + (size_t)b * T * F, n, F, yb, ab);
    }
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    pool_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const float *dy = L->out[0].dx;  /* (B, F) */
    if (!in->dx || !dy) return 0;
    const int B = in->dim[0], T = in->dim[1], F = in->dim[2];
    for (int b = 0; b < B; b++) {
        const int32_t *ab = s->arg + (size_t)b * F;
        float *dxb = in->dx + (size_t)b * T * F;
        for (int f = 0; f < F; f++)
            if (ab[f] >= 0) dxb[(size_t)ab[f] * F + f] += dy[(size_t)b * F + f];
    }
    return 0;
}

static void destroy(ts_layer *L)
{
    pool_state *s = L->state;
    if (!s) return;
    free(s->arg);
    free(s);
    L->state = NULL;
}


/* A failed build frees what it allocated: the host calls destroy only after a build succeeded. */
static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(L, cfg, e) == 0) return 0;
    destroy(L);
    return -1;
}
static const ts_layer_ops ops = {
    .size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 5 3 len", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "maxpool", "1.0",
    "max over the valid time steps: (B,T,F) -> (B,F), gradient to the argmax", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
