/* reduce.c — the sum or the mean over one axis of a float tensor.
 *
 *   axis = fields: (B, F, D) -> (B, D),  y[b, d] = op_f x[b, f, d]   (pool per-field vectors)
 *   axis = last:   (B, ..., D) -> (B, ..., 1) for a 2-d input, and (B, F, D) -> (B, F)
 *                  y[b, f] = op_d x[b, f, d]                        (one score per field)
 * op = sum, or mean (the sum divided by the axis' length). Backward spreads dy over the axis
 * (times 1/length for the mean). With an embedding of dim 1, `axis = fields` or (flat layout)
 * `axis = last` is a linear model over one-hot features: the wide part of Wide & Deep and the
 * first-order term of DeepFM. What it is not: a max (maxpool), a masked pooling over sequence
 * lengths (embedding_bag's mean), nor a weighted sum.
 */
#include "tessera.h"

#include <stdlib.h>
#include <string.h>

#include "compose.h"

enum { AXIS_FIELDS = 0, AXIS_LAST = 1 };

typedef struct reduce_state {
    int axis;                 /* AXIS_* */
    int mean;                 /* 1: divide by the axis' length */
    long inner;               /* elements after the reduced axis (D for fields, 1 for last) */
    long len;                 /* the reduced axis' length (F for fields, D for last) */
} reduce_state;

/* y (outer, inner) = scale * sum_k x (outer, len, inner)[o, k, i]. */
static void reduce_forward(const float *x, float *y, long outer, long len, long inner, float scale)
{
    for (long o = 0; o < outer; o++) {
        float *yo = y + o * inner;
        const float *xo = x + o * len * inner;
        memcpy(yo, xo, sizeof(float) * (size_t)inner);
        for (long k = 1; k < len; k++)
            for (long i = 0; i < inner; i++) yo[i] += xo[k * inner + i];
        if (scale != 1.0f)
            for (long i = 0; i < inner; i++) yo[i] *= scale;
    }
}

/* dx (outer, len, inner)[o, k, i] += scale * dy (outer, inner)[o, i]. */
static void reduce_backward(const float *dy, float *dx, long outer, long len, long inner,
                            float scale)
{
    for (long o = 0; o < outer; o++)
        for (long k = 0; k < len; k++)
            for (long i = 0; i < inner; i++)
                dx[(o * len + k) * inner + i] += scale * dy[o * inner + i];
}

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    if (ts_compose_need_inputs(L, cfg, "reduce", 1, 1, "one input", e) ||
        ts_compose_need_f32(L, cfg, "reduce", 0, "(B, F, D) or (B, D)", e))
        return -1;
    int axis, op;
    if (ts_cfg_choice(cfg, "axis", "fields|last", &axis, e) ||
        ts_cfg_choice(cfg, "op", "sum|mean", &op, e))
        return -1;
    const ts_tensor *in = L->in[0];
    if (axis == AXIS_FIELDS && in->ndim != 3)
        return ts_fail(e, "%s: layer.%s (reduce): axis = fields needs per-field vectors "
                       "(B, F, D), got %s; set layout = fields on the embedding layer, reshape "
                       "the input, or use axis = last", ts_cfg_where(cfg, "axis"), L->name,
                       ts_shape_str(in, sh, sizeof sh));
    if (axis == AXIS_LAST && in->ndim < 2)
        return ts_fail(e, "%s: layer.%s (reduce): axis = last needs (B, ..., D), got %s",
                       ts_cfg_where(cfg, "axis"), L->name, ts_shape_str(in, sh, sizeof sh));
    reduce_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->axis = axis;
    s->mean = op == 1;
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->dim[0] = in->dim[0];
    if (axis == AXIS_FIELDS) {            /* (B, F, D) -> (B, D) */
        s->len = in->dim[1];
        s->inner = in->dim[2];
        out->ndim = 2;
        out->dim[1] = in->dim[2];
    } else if (in->ndim == 2) {           /* (B, D) -> (B, 1) */
        s->len = in->dim[1];
        s->inner = 1;
        out->ndim = 2;
        out->dim[1] = 1;
    } else {                              /* (B, ..., F, D) -> (B, ..., F) */
        s->len = in->dim[in->ndim - 1];
        s->inner = 1;
        out->ndim = in->ndim - 1;
        memcpy(out->dim, in->dim, sizeof out->dim);
        out->dim[out->ndim] = 0;
    }
    return 0;
}

static long outer_of(const reduce_state *s, const ts_tensor *in)
{
    return ts_numel(in) / (s->len * s->inner);
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    const reduce_state *s = L->state;
    const ts_tensor *in = L->in[0];
    if (s->axis == AXIS_LAST && in->ndim > 2) L->out[0].len = in->len;
    reduce_forward(in->x, L->out[0].x, outer_of(s, in), s->len, s->inner,
                   s->mean ? 1.0f / (float)s->len : 1.0f);
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    const reduce_state *s = L->state;
    const ts_tensor *in = L->in[0];
    if (!in->dx) return 0;
    reduce_backward(L->out[0].dx, in->dx, outer_of(s, in), s->len, s->inner,
                    s->mean ? 1.0f / (float)s->len : 1.0f);
    return 0;
}

static void destroy(ts_layer *L)
{
    free(L->state);
    L->state = NULL;
}

static const ts_key keys[] = {
    {"axis", "choice:fields|last", "fields", "fields: (B, F, D) -> (B, D); last: (B, F, D) -> "
     "(B, F), or (B, D) -> (B, 1)"},
    {"op", "choice:sum|mean", "sum", "the sum over the axis, or the mean"},
    {NULL, NULL, NULL, NULL}};

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 3 5", .check_keys = "axis=fields op=mean", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "reduce", "1.0",
    "sum or mean over the fields (B, F, D) -> (B, D) or the last axis -> (B, F)", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
