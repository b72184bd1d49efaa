/* shape.c — layers that move values without computing: reshape and split.
 *
 *   reshape: the same values of each row under other dimensions, (B, F*D) <-> (B, F, D):
 *            `dims = 32, 4` (one item may be -1: whatever the row's size leaves). Row-major,
 *            so (B, F, D) -> (B, F*D) lays the fields side by side, as a flat embedding does.
 *   split:   one input into named parts along its last axis: `parts = wide, deep`,
 *            `sizes = 3, 5` on (B, ..., 8) gives the outputs LAYER.wide (B, ..., 3) and
 *            LAYER.deep (B, ..., 5); the sizes must add up to the last axis.
 * Backward adds each output's gradient back into the cells it came from. split passes sequence
 * lengths through (it keeps every axis but the last); reshape does not (it may move the time axis).
 * What they are not: concat (the inverse of split, plugins/layers/concat.c), a transpose (the
 * order of the values never changes), or a gather of chosen fields.
 */
#include "tessera.h"

#include <stdlib.h>
#include <string.h>

#include "compose.h"

/* ---- reshape ---------------------------------------------------------------------------------- */

static int reshape_build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96], items[TS_MAX_DIMS][TS_NAME_MAX];
    int n;
    if (ts_compose_need_inputs(L, cfg, "reshape", 1, 1, "one input", e) ||
        ts_compose_need_f32(L, cfg, "reshape", 0, "(B, ...)", e))
        return -1;
    if (ts_cfg_list(cfg, "dims", items, TS_MAX_DIMS - 1, &n, e)) return -1;
    const ts_tensor *in = L->in[0];
    long row = ts_rowsize(in), known = 1;
    int infer = -1;
    if (n < 1)
        return ts_fail(e, "%s: layer.%s (reshape): dims is empty; give the sizes after the batch, "
                       "like 32, 4", ts_cfg_where(cfg, "dims"), L->name);
    ts_tensor *out = &L->out[0];
    for (int k = 0; k < n; k++) {
        char *end;
        long v = strtol(items[k], &end, 10);
        if (*end || (v < 1 && v != -1) || v > (1L << 30))
            return ts_fail(e, "%s: layer.%s (reshape): dims item '%s' is not a size (1 or more, "
                           "or -1 for what the row leaves)", ts_cfg_where(cfg, "dims"), L->name,
                           items[k]);
        if (v == -1) {
            if (infer >= 0)
                return ts_fail(e, "%s: layer.%s (reshape): dims has two -1 items; at most one "
                               "size can be inferred", ts_cfg_where(cfg, "dims"), L->name);
            infer = k;
        } else {
            known *= v;
            if (known > row) break;
        }
        out->dim[k + 1] = (int)v;
    }
    if (infer >= 0 && known <= row && row % known == 0) out->dim[infer + 1] = (int)(row / known);
    else if (known != row || infer >= 0)
        return ts_fail(e, "%s: layer.%s (reshape): the input %s has %ld values per row, which "
                       "dims = %s cannot hold; the product of dims must be %ld",
                       ts_cfg_where(cfg, "dims"), L->name, ts_shape_str(in, sh, sizeof sh), row,
                       ts_cfg_str(cfg, "dims"), row);
    out->dtype = TS_F32;
    out->ndim = n + 1;
    out->dim[0] = in->dim[0];
    return 0;
}

static int reshape_forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    memcpy(L->out[0].x, L->in[0]->x, sizeof(float) * (size_t)ts_numel(L->in[0]));
    return 0;
}

static int reshape_backward(ts_layer *L, ts_err *e)
{
    (void)e;
    float *dx = L->in[0]->dx;
    const float *dy = L->out[0].dx;
    if (!dx) return 0;
    long n = ts_numel(L->in[0]);
    for (long i = 0; i < n; i++) dx[i] += dy[i];
    return 0;
}

static void reshape_destroy(ts_layer *L) { L->state = NULL; }

/* ---- split ------------------------------------------------------------------------------------ */

typedef struct split_state {
    int nparts;
    long d;                   /* the input's last axis */
    long size[TS_MAX_OUT];    /* each part's width */
    long off[TS_MAX_OUT];     /* each part's first column */
} split_state;

static int split_build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96], parts[TS_MAX_OUT + 1][TS_NAME_MAX], sizes[TS_MAX_OUT + 1][TS_NAME_MAX];
    int np, ns;
    if (ts_compose_need_inputs(L, cfg, "split", 1, 1, "one input", e) ||
        ts_compose_need_f32(L, cfg, "split", 0, "(B, ..., D)", e))
        return -1;
    if (ts_cfg_list(cfg, "parts", parts, TS_MAX_OUT + 1, &np, e) ||
        ts_cfg_list(cfg, "sizes", sizes, TS_MAX_OUT + 1, &ns, e))
        return -1;
    const ts_tensor *in = L->in[0];
    if (in->ndim < 2)
        return ts_fail(e, "%s: layer.%s (split) needs (B, ..., D), got %s",
                       ts_cfg_where(cfg, "input"), L->name, ts_shape_str(in, sh, sizeof sh));
    if (np < 1 || np > TS_MAX_OUT)
        return ts_fail(e, "%s: layer.%s (split): parts lists %d names; give 1 to %d, one per "
                       "output (LAYER.NAME)", ts_cfg_where(cfg, "parts"), L->name, np, TS_MAX_OUT);
    if (ns != np)
        return ts_fail(e, "%s: layer.%s (split): sizes lists %d widths for %d parts; give one "
                       "width per part", ts_cfg_where(cfg, "sizes"), L->name, ns, np);
    split_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->nparts = np;
    s->d = in->dim[in->ndim - 1];
    long total = 0;
    for (int k = 0; k < np; k++) {
        for (int j = 0; j < k; j++)
            if (!strcmp(parts[j], parts[k]))
                return ts_fail(e, "%s: layer.%s (split): part '%s' is named twice; each output "
                               "needs a name of its own", ts_cfg_where(cfg, "parts"), L->name,
                               parts[k]);
        char *end;
        long v = strtol(sizes[k], &end, 10);
        if (*end || v < 1 || v > s->d)
            return ts_fail(e, "%s: layer.%s (split): size '%s' of part '%s' is not a width in "
                           "1..%ld (the input's last axis)", ts_cfg_where(cfg, "sizes"), L->name,
                           sizes[k], parts[k], s->d);
        s->size[k] = v;
        s->off[k] = total;
        total += v;
    }
    if (total != s->d)
        return ts_fail(e, "%s: layer.%s (split): sizes = %s add up to %ld, but the input %s has "
                       "%ld along its last axis; the sizes must add up to it exactly",
                       ts_cfg_where(cfg, "sizes"), L->name, ts_cfg_str(cfg, "sizes"), total,
                       ts_shape_str(in, sh, sizeof sh), s->d);
    L->nout = np;
    for (int k = 0; k < np; k++) {
        snprintf(L->out_name[k], TS_NAME_MAX, "%s", parts[k]);
        ts_tensor *out = &L->out[k];
        out->dtype = TS_F32;
        out->ndim = in->ndim;
        memcpy(out->dim, in->dim, sizeof out->dim);
        out->dim[in->ndim - 1] = (int)s->size[k];
    }
    return 0;
}

static int split_forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    (void)e;
    const split_state *s = L->state;
    const ts_tensor *in = L->in[0];
    long rows = ts_numel(in) / s->d;
    for (int k = 0; k < s->nparts; k++) {
        float *y = L->out[k].x;                       /* (rows, size[k]) */
        L->out[k].len = in->len;
        for (long r = 0; r < rows; r++)
            memcpy(y + r * s->size[k], in->x + r * s->d + s->off[k],
                   sizeof(float) * (size_t)s->size[k]);
    }
    return 0;
}

static int split_backward(ts_layer *L, ts_err *e)
{
    (void)e;
    const split_state *s = L->state;
    const ts_tensor *in = L->in[0];
    if (!in->dx) return 0;
    long rows = ts_numel(in) / s->d;
    for (int k = 0; k < s->nparts; k++) {
        const float *dy = L->out[k].dx;               /* (rows, size[k]) */
        if (!dy) continue;
        for (long r = 0; r < rows; r++) {
            float *dx = in->dx + r * s->d + s->off[k];
            for (long j = 0; j < s->size[k]; j++) dx[j] += dy[r * s->size[k] + j];
        }
    }
    return 0;
}

static void split_destroy(ts_layer *L)
{
    free(L->state);
    L->state = NULL;
}

/* A build that fails frees what it allocated itself (tessera.h). */
static int split_build(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (split_build_impl(L, cfg, e) == 0) return 0;
    split_destroy(L);
    return -1;
}

static const ts_key reshape_keys[] = {
    {"dims", "list", NULL, "the sizes after the batch, like 32, 4 (one may be -1: inferred)"},
    {NULL, NULL, NULL, NULL}};
static const ts_key split_keys[] = {
    {"parts", "list", NULL, "output names; part k is addressed as LAYER.NAME"},
    {"sizes", "list", NULL, "each part's width along the last axis; they add up to it"},
    {NULL, NULL, NULL, NULL}};

static const ts_layer_ops reshape_ops = {.size = sizeof(ts_layer_ops),
    .build = reshape_build, .forward = reshape_forward, .backward = reshape_backward,
    .destroy = reshape_destroy, .check_inputs = "f32 4 12", .check_keys = "dims=3,-1", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_layer_ops split_ops = {.size = sizeof(ts_layer_ops),
    .build = split_build, .forward = split_forward, .backward = split_backward,
    .destroy = split_destroy, .check_inputs = "f32 4 2 6 len", .check_keys = "parts=a,b sizes=2,4", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugins[2] = {
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "reshape", "1.0",
     "the same values per row under other dimensions: (B, F*D) <-> (B, F, D)", reshape_keys,
     &reshape_ops},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "split", "1.0",
     "one input into named parts along its last axis (LAYER.PART outputs)", split_keys,
     &split_ops}};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i < 2 ? &plugins[i] : NULL; }
