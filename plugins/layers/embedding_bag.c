/* embedding_bag.c — a sparse table looked up by bags of ids and pooled (sum or mean).
 *
 * What it is for: the word-hashing front of DSSM (a 30k-wide letter-trigram count vector times a
 * (30k, E) matrix, done at the cost of the ids present), per-word trigram vectors for CNN-DSSM and
 * LSTM-DSSM, and the averaged watch history of the YouTube DNN.
 *   input  BAGS (B, T): cell (b, t) holds ids[off[c] .. off[c+1]), c = b*T + t; rows may carry len.
 *   combine = cell: out (B, T, E), out[b,t] = pool_{i in bag(b,t)} W[i]   (t < len[b]; else 0),
 *                   len passed through.
 *   combine = row:  out (B, E),    out[b]   = pool_{i in every bag(b,t), t < len[b]} W[i].
 *   pool = sum: sum of rows; mean: the sum divided by the number of ids (an empty bag gives 0).
 * Backward touches only the rows that occurred: g[i] += (1 or 1/count) * dout, ts_param_touch(i).
 * Each bag is one call of a vectorised kernel (bagmath.h, shared with sparse_conv) that sums its
 * rows (forward) or adds the bag's gradient into them (backward); the output is written once (no zeroing pass before the sums:
 * only empty bags are zeroed, and padded cells that an earlier, longer row left nonzero). The
 * ids are checked against the vocabulary in one pass first, so the kernels carry no test.
 * What it is not: a dense one-hot product, nor a weighted bag (an id counts once per occurrence).
 */
#include <stdlib.h>
#include <string.h>

#include "tessera.h"
#include "bagmath.h"
#include "vecmath.h"

typedef struct {
    int E;           /* embedding width */
    int per_cell;    /* 1: combine = cell, output (B, T, E); 0: combine = row, output (B, E) */
    int mean;        /* 1: pool = mean; 0: sum */
    ts_param *W;     /* (vocab, E) sparse table */
    int32_t *dirty;  /* combine = cell: (Bmax) the output cells t >= dirty[b] of row b hold zeros
                        already (an earlier forward zeroed them); only [len, dirty) needs it */
    /* shard = rows (TS_PARAM_SHARDED): the batch's rows are fetched into a local block first */
    int32_t *seq;    /* (ids) valid id k's row in the block; unused for ids of padded steps */
    int32_t *cid;    /* (nc) the valid ids in batch order: the block's rows */
    float *blk;      /* (nc, E) their rows (forward), their gradients (backward) */
    long nc, cap, blk_cap;
} bag_state;

static const ts_key keys[] = {
    {"dim", "int", NULL, "embedding width E"},
    {"combine", "choice:cell|row", "row",
     "cell: one vector per (row, step) cell, output (B, T, E); row: one vector per row, (B, E)"},
    {"pool", "choice:sum|mean", "sum", "how the ids of a bag are combined"},
    {"init_scale", "float", "0.05", "standard deviation of the normal initialisation"},
    {"shard", "choice:none|rows", "none", "rows: split the table by rows across MPI ranks (row r "
     "on rank r % ranks; the batch's rows and their gradients travel by MPI_Alltoallv, "
     "docs/scale.md); in one process the whole table"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    if (L->nin != 1)
        return ts_fail(e, "%s: embedding_bag takes one input (a bags field), got %d; set "
                       "input = ONE_FIELD", ts_cfg_where(cfg, "input"), L->nin);
    const ts_tensor *in = L->in[0];
    char sh[64];
    if (in->dtype != TS_BAGS || in->ndim != 2)
        return ts_fail(e, "%s: embedding_bag needs a bags input of shape (B, T), got %s; feed it a "
                       "bags field of the dataset (e.g. query)", ts_cfg_where(cfg, "input"),
                       ts_shape_str(in, sh, sizeof sh));
    if (in->vocab <= 0 || in->vocab > 0x7fffffff)
        return ts_fail(e, "%s: the input's vocabulary size %lld is not usable; the dataset must "
                       "declare the field's vocab", ts_cfg_where(cfg, "input"),
                       (long long)in->vocab);
    long dim;
    int combine, pool, shard;
    double scale;
    if (ts_cfg_int(cfg, "dim", &dim, e) || ts_cfg_choice(cfg, "combine", "cell|row", &combine, e) ||
        ts_cfg_choice(cfg, "pool", "sum|mean", &pool, e) ||
        ts_cfg_choice(cfg, "shard", "none|rows", &shard, e) ||
        ts_cfg_float(cfg, "init_scale", &scale, e))
        return -1;
    if (dim < 1 || dim > 65536)
        return ts_fail(e, "%s: dim = %ld is out of range; use 1..65536", ts_cfg_where(cfg, "dim"),
                       dim);
    bag_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "embedding_bag: out of memory");
    L->state = s;
    s->E = (int)dim;
    s->per_cell = combine == 0;
    s->mean = pool == 1;
    s->W = ts_param_add(L->ctx, "W", (int)in->vocab, s->E, TS_INIT_NORMAL, (float)scale,
                        TS_PARAM_SPARSE | (shard ? TS_PARAM_SHARDED : 0u), e);
    if (!s->W) return -1;
    s->dirty = malloc((size_t)in->dim[0] * sizeof(int32_t));
    if (!s->dirty) return ts_fail(e, "embedding_bag %s: out of memory", L->name);
    for (int b = 0; b < in->dim[0]; b++) s->dirty[b] = in->dim[1];   /* unknown: all of it */
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->dim[0] = in->dim[0];
    if (s->per_cell) {
        out->ndim = 3;
        out->dim[1] = in->dim[1];
        out->dim[2] = s->E;
    } else {
        out->ndim = 2;
        out->dim[1] = s->E;
    }
    return 0;
}

/* Valid steps of row b: len[b] clamped to [0, T] (NULL len = all T). */
static int steps_of(const ts_tensor *in, int b)
{
    int T = in->dim[1];
    if (!in->len) return T;
    int n = in->len[b];
    return n < 0 ? 0 : n > T ? T : n;
}

/* y (n) *= a */
TS_VEC static void scale_span(float *y, long n, float a)
{
    for (long j = 0; j < n; j++) y[j] *= a;
}

/* shard = rows: the valid steps' ids in batch order (cid), each valid position's row in the block
 * (seq), and the rows themselves (blk) fetched from their ranks. */
static int shard_fetch(bag_state *s, const ts_tensor *in, const char *name, ts_err *e)
{
    const int B = in->dim[0], T = in->dim[1];
    const int32_t *off = in->off, *ids = in->ids;
    long n = off[(long)B * T];
    if (n > s->cap) {
        int32_t *a = realloc(s->seq, (size_t)n * sizeof *a), *c = a ? realloc(s->cid, (size_t)n * sizeof *c) : NULL;
        if (a) s->seq = a;
        if (c) s->cid = c;
        if (!a || !c) return ts_fail(e, "embedding_bag %s: out of memory for %ld ids", name, n);
        s->cap = n;
    }
    s->nc = 0;
    for (int b = 0; b < B; b++) {
        long c0 = (long)b * T;
        for (int32_t k = off[c0]; k < off[c0 + steps_of(in, b)]; k++) {
            s->seq[k] = (int32_t)s->nc;
            s->cid[s->nc++] = ids[k];
        }
    }
    if (s->nc * s->E > s->blk_cap) {
        float *f = realloc(s->blk, (size_t)(s->nc * s->E) * sizeof *f);
        if (!f) return ts_fail(e, "embedding_bag %s: out of memory for %ld rows", name, s->nc);
        s->blk = f;
        s->blk_cap = s->nc * s->E;
    }
    return ts_param_shard_gather(s->W, s->cid, s->nc, s->blk, e);
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    bag_state *s = L->state;
    const ts_tensor *in = L->in[0];
    ts_tensor *out = &L->out[0];
    const int B = in->dim[0], T = in->dim[1], E = s->E;
    const int32_t *off = in->off;   /* (B*T + 1) */
    const int32_t *ids = in->ids;   /* (off[B*T]) */
    const float *W = s->W->w;       /* (vocab, E) */
    float *y = out->x;              /* (B, T, E) or (B, E) */
    const int32_t *ix = ids;        /* the rows of W the bags read */
    const int64_t V = in->vocab;
    for (int b = 0; b < B; b++) {   /* every id a valid step reads, checked once */
        int nt = steps_of(in, b);
        for (int32_t k = off[(long)b * T]; k < off[(long)b * T + nt]; k++)
            if (ids[k] < 0 || ids[k] >= V) {
                int t = 0;
                while (t + 1 < nt && off[(long)b * T + t + 1] <= k) t++;
                return ts_fail(e, "embedding_bag %s: id %d at row %d step %d is outside the "
                               "vocabulary [0, %lld); the dataset produced a bad id",
                               L->name, ids[k], b, t, (long long)V);
            }
    }
    if (s->W->flags & TS_PARAM_SHARDED) {
        /* the valid steps' rows from their ranks into blk (a collective), then the same pooling
         * over blk with ix = the block's row numbers */
        if (shard_fetch(s, in, L->name, e)) return -1;
        W = s->blk;
        ix = s->seq;
    }
    for (int b = 0; b < B; b++) {
        int nt = steps_of(in, b);
        long c0 = (long)b * T;
        if (s->per_cell) {
            for (int t = 0; t < nt; t++) {
                float *yc = y + (size_t)(c0 + t) * E;
                int cnt = off[c0 + t + 1] - off[c0 + t];
                ts_bag_sum(W, ix + off[c0 + t], cnt, E, yc);
                if (s->mean && cnt > 1) scale_span(yc, E, 1.0f / (float)cnt);
            }
            if (s->dirty[b] > nt)   /* the output is written by this layer only */
                memset(y + (size_t)(c0 + nt) * E, 0, (size_t)(s->dirty[b] - nt) * E * sizeof *y);
            s->dirty[b] = nt;
        } else {
            float *yr = y + (size_t)b * E;
            /* the bags of a row's steps are consecutive in ids: one sum over all of them */
            int cnt = off[c0 + nt] - off[c0];
            ts_bag_sum(W, ix + off[c0], cnt, E, yr);
            if (s->mean && cnt > 1) scale_span(yr, E, 1.0f / (float)cnt);
        }
    }
    if (s->per_cell) out->len = in->len;
    return 0;
}

/* g[id] += scale * dy for every id of every valid bag; scale = 1 (sum) or 1/count (mean). */
static int backward(ts_layer *L, ts_err *e)
{
    bag_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const ts_tensor *out = &L->out[0];
    if (!out->dx || (s->W->flags & TS_PARAM_FROZEN)) return 0;
    const int B = in->dim[0], T = in->dim[1], E = s->E;
    const int32_t *off = in->off, *ids = in->ids;
    const float *dy = out->dx;  /* (B, T, E) or (B, E) */
    float *G = s->W->g;         /* (vocab, E) */
    const int32_t *ix = ids;
    const int sharded = (s->W->flags & TS_PARAM_SHARDED) != 0;
    if (sharded) {
        /* the bags' gradients into the block of forward's rows, then to the rows' ranks */
        memset(s->blk, 0, (size_t)(s->nc * E) * sizeof *s->blk);
        G = s->blk;
        ix = s->seq;
    }
    for (int b = 0; b < B; b++) {
        int nt = steps_of(in, b);
        long c0 = (long)b * T;
        if (s->per_cell) {
            for (int t = 0; t < nt; t++) {
                int cnt = off[c0 + t + 1] - off[c0 + t];
                float sc = s->mean && cnt > 1 ? 1.0f / (float)cnt : 1.0f;
                ts_bag_grad(G, E, ix + off[c0 + t], cnt, E, sc, dy + (size_t)(c0 + t) * E);
            }
        } else {
            int cnt = off[c0 + nt] - off[c0];
            float sc = s->mean && cnt > 1 ? 1.0f / (float)cnt : 1.0f;
            ts_bag_grad(G, E, ix + off[c0], cnt, E, sc, dy + (size_t)b * E);
        }
        for (int32_t k = off[c0]; k < off[c0 + nt] && !sharded; k++) ts_param_touch(s->W, ids[k]);
    }
    if (sharded) return ts_param_shard_scatter(s->W, s->cid, s->nc, s->blk, e);
    return 0;
}

static void destroy(ts_layer *L)
{
    bag_state *s = L->state;
    if (s) {
        free(s->dirty);
        free(s->seq);
        free(s->cid);
        free(s->blk);
    }
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
static const ts_layer_ops ops_cell = {
    .size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "bags 4 5 vocab=30 len", .check_keys = "dim=3 combine=cell pool=mean", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "embedding_bag", "1.0",
    "sparse table looked up by bags of ids, pooled per cell (B,T,E) or per row (B,E)", keys,
    &ops_cell};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
