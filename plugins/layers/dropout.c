/* dropout.c — inverted dropout (Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, JMLR
 * 2014): during training each value is kept with probability 1 - rate and scaled by 1/(1 - rate),
 * so evaluation needs no rescaling and is the identity.
 *
 *   TS_TRAIN:             m_i = [u_i >= rate] / (1 - rate),  y = x * m,  dx += dy * m
 *   TS_VALID / TS_TEST:   y = x (nothing is drawn)
 * The draws come from the run's generator (ts_ctx_rng: seeded from [experiment] seed, saved in
 * every checkpoint), one 64-bit draw per value in row-major order, only in training forwards. So
 * one seed gives one set of masks, and a run killed and resumed draws the masks it would have
 * drawn (the generator is restored with the checkpoint). The mask of the last training forward
 * is kept for backward. What it is not: a spatial or per-feature dropout (one mask per value),
 * nor DropConnect (on weights).
 */
#include "tessera.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compose.h"

typedef struct dropout_state {
    double rate;              /* probability of dropping a value, [0, 1) */
    uint64_t threshold;       /* u < rate  <=>  64-bit draw < threshold */
    float keep_scale;         /* 1 / (1 - rate) */
    float *mask;              /* (max_cells) 0 or keep_scale, from the last training forward */
    long max_cells;
    int have_mask;            /* the last forward was a training one */
} dropout_state;

/* y (n) = x (n) * mask (n), drawing mask from r: 0 with probability rate, else keep_scale. */
static void dropout_forward(const float *x, float *y, float *mask, long n, uint64_t threshold,
                            float keep_scale, ts_rng *r)
{
    for (long i = 0; i < n; i++) {
        mask[i] = ts_rng_next(r) < threshold ? 0.0f : keep_scale;
        y[i] = x[i] * mask[i];
    }
}

static void destroy(ts_layer *L)
{
    dropout_state *s = L->state;
    if (s) free(s->mask);
    free(s);
    L->state = NULL;
}

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (ts_compose_need_inputs(L, cfg, "dropout", 1, 1, "one input", e) ||
        ts_compose_need_f32(L, cfg, "dropout", 0, "(B, ...)", e))
        return -1;
    double rate;
    if (ts_cfg_float(cfg, "rate", &rate, e)) return -1;
    if (!(rate >= 0 && rate < 1))
        return ts_fail(e, "%s: layer.%s (dropout): rate = %g; give the probability of dropping "
                       "a value, 0 <= rate < 1", ts_cfg_where(cfg, "rate"), L->name, rate);
    dropout_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->rate = rate;
    /* rate * 2^64 without overflow: rate < 1, and ldexp is exact */
    s->threshold = (uint64_t)ldexp(rate, 64);
    s->keep_scale = (float)(1.0 / (1.0 - rate));
    s->max_cells = ts_numel(L->in[0]);
    s->mask = malloc(sizeof(float) * (size_t)s->max_cells);
    if (!s->mask) return ts_fail(e, "layer.%s: out of memory", L->name);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = L->in[0]->ndim;
    memcpy(out->dim, L->in[0]->dim, sizeof out->dim);
    return 0;
}

static int build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (build_impl(L, cfg, e) == 0) return 0;
    destroy(L);
    return -1;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    dropout_state *s = L->state;
    const ts_tensor *in = L->in[0];
    long n = ts_numel(in);
    if (n > s->max_cells)
        return ts_fail(e, "layer.%s: batch of %d rows exceeds the rows it was built for", L->name,
                       in->dim[0]);
    L->out[0].len = in->len;
    s->have_mask = phase == TS_TRAIN && s->rate > 0;
    if (s->have_mask)
        dropout_forward(in->x, L->out[0].x, s->mask, n, s->threshold, s->keep_scale,
                        ts_ctx_rng(L->ctx));
    else
        memcpy(L->out[0].x, in->x, sizeof(float) * (size_t)n);
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    const dropout_state *s = L->state;
    float *dx = L->in[0]->dx;
    const float *dy = L->out[0].dx;
    if (!dx) return 0;
    long n = ts_numel(L->in[0]);
    if (s->have_mask)
        for (long i = 0; i < n; i++) dx[i] += dy[i] * s->mask[i];
    else
        for (long i = 0; i < n; i++) dx[i] += dy[i];
    return 0;
}

static const ts_key keys[] = {
    {"rate", "float", "0.5", "probability of dropping a value during training (0 <= rate < 1); "
     "evaluation keeps every value"},
    {NULL, NULL, NULL, NULL}};

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 3 5 len", .check_keys = "rate=0.3",
    .concurrency = TS_REPLICA_SAFE};   /* not TS_BRANCH_SAFE: it draws its masks from the run's generator */

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "dropout", "1.0",
    "inverted dropout: x * mask / (1 - rate) in training, identity in evaluation", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
