/* concat.c — joins float inputs side by side: (B, D1), (B, D2), ... -> (B, D1 + D2 + ...).
 *
 * Each input is flattened per row first, so (B, F*dim) embeddings and (B, C) continuous
 * features meet in one (B, sum Di) tensor for an MLP. Backward splits the gradient back.
 * It is not a stack along a new axis, does not join along time, and takes no ids.
 */
#include "tessera.h"

#include <stdlib.h>
#include <string.h>

#include "vecmath.h"

typedef struct concat_state {
    long width[TS_MAX_IN];     /* Di: elements of one row of input i */
    long total;                /* sum Di */
} concat_state;

/* out (B, total)[b, off .. off+d) = in (B, d)[b, :]. Narrow inputs (census's 7 continuous
 * features) are copied by a loop rather than a memcpy call per row. */
TS_VEC static void copy_in(const float *in, float *out, long rows, long d, long off, long total)
{
    if (d >= 32) {
        for (long b = 0; b < rows; b++)
            memcpy(out + b * total + off, in + b * d, sizeof(float) * (size_t)d);
        return;
    }
    for (long b = 0; b < rows; b++) {
        float *dst = out + b * total + off;
        const float *src = in + b * d;
        for (long j = 0; j < d; j++) dst[j] = src[j];
    }
}

/* din (B, d)[b, :] += dout (B, total)[b, off .. off+d) (one addition per element: the
 * vectorised loop computes the same values) */
TS_VEC static void add_back(const float *dout, float *din, long rows, long d, long off, long total)
{
    for (long b = 0; b < rows; b++) {
        const float *src = dout + b * total + off;
        float *dst = din + b * d;
        for (long j = 0; j < d; j++) dst[j] += src[j];
    }
}

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    if (L->nin < 1)
        return ts_fail(e, "%s: layer.%s (concat) needs at least one input",
                       ts_cfg_where(cfg, "input"), L->name);
    concat_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    for (int i = 0; i < L->nin; i++) {
        const ts_tensor *t = L->in[i];
        if (t->dtype != TS_F32)
            return ts_fail(e, "%s: input %d of layer.%s (concat) is %s, not floats; embed ids "
                           "before joining them", ts_cfg_where(cfg, "input"), i + 1, L->name,
                           ts_shape_str(t, sh, sizeof sh));
        if (t->dim[0] != L->in[0]->dim[0])
            return ts_fail(e, "%s: inputs of layer.%s (concat) disagree on the batch: %d and %d",
                           ts_cfg_where(cfg, "input"), L->name, L->in[0]->dim[0], t->dim[0]);
        s->width[i] = ts_rowsize(t);
        s->total += s->width[i];
    }
    if (s->total > (1L << 30))
        return ts_fail(e, "layer.%s: the joined row of %ld floats is too wide", L->name,
                       s->total);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 2;
    out->dim[0] = L->in[0]->dim[0];
    out->dim[1] = (int)s->total;
    return 0;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    concat_state *s = L->state;
    long rows = L->out[0].dim[0], off = 0;
    for (int i = 0; i < L->nin; i++) {
        copy_in(L->in[i]->x, L->out[0].x, rows, s->width[i], off, s->total);
        off += s->width[i];
    }
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    concat_state *s = L->state;
    long rows = L->out[0].dim[0], off = 0;
    for (int i = 0; i < L->nin; i++) {
        if (L->in[i]->dx) add_back(L->out[0].dx, L->in[i]->dx, rows, s->width[i], off, s->total);
        off += s->width[i];
    }
    return 0;
}

static void destroy(ts_layer *L)
{
    free(L->state);
    L->state = NULL;
}

static const ts_key keys[] = {{NULL, NULL, NULL, NULL}};

/* A build that fails frees what it allocated itself (tessera.h): destroy() takes a partial
 * state. */
static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(L, cfg, e) == 0) return 0;
    destroy(L);
    return -1;
}

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward,
    .destroy = destroy, .check_inputs = "f32 4 3; f32 4 2 2; f32 4 1", .check_keys = "", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "concat", "1.0",
    "joins float inputs per row: (B, D1), (B, D2), ... -> (B, D1 + D2 + ...)", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
