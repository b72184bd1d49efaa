/* conv1d.c — a 1-d convolution over the time axis of a (B, T, E) sequence, respecting lengths.
 *
 * What it is for: the word-n-gram layer of CNN-DSSM (Shen et al., CIKM 2014): each position sees a
 * window of `window` words centred on it and maps their concatenated vectors to `filters` features:
 *   y[b,t] = act( b + sum_{k=0}^{w-1} x[b, t+k-p] W_k ),  p = (w-1)/2,
 * with x[b, s] = 0 outside [0, len[b]) (zero padding at both ends of the valid part). Positions
 * t >= len[b] output 0; len passes through.
 * How: only the valid positions are gathered, as an im2col matrix X (R, w*E) with R = sum_b len[b],
 * so one sgemm Z = X W does the whole batch and padded positions cost nothing; backward is
 * dW += X^T dZ, dX = dZ W^T (two sgemms) and col2im scatters dX back. The valid positions of a row
 * are contiguous both in X's compact rows and in the (B, T, F) output, so the activation is one
 * vectorised pass per row from Z straight into the output, and backward reads y from the output
 * instead of keeping a copy. Z and dX, which only pass through, are made a block of rows at a
 * time (BLOCK_ROWS, whole rows of the batch) into buffers that stay in the L2 cache.
 * Sparse gradients: behind max-over-time pooling, dY holds one nonzero per (row, feature), at the
 * argmax, so dZ has a density of 1/len (a 9-word definition: 11 %). When at most 1/5 of dZ is
 * nonzero, backward skips the two dense sgemms (4 R (w*E) F flops) and works on the nonzeros:
 *   dW^T[f] += dz[r,f] X[r]         (a row of w*E per nonzero, into a transposed copy of dW: a
 *                                    block's nonzeros are sorted by f, so each of its rows is
 *                                    loaded and stored once per block; W's gradient += its
 *                                    transpose at the end),
 *   dX[r]    = sum_f dz[r,f] W^T[f] (W transposed once per backward).
 * (W keeps its (w*E, F) layout, so a seed initialises it as before.)
 * These are the same sums over the nonzero terms only, rows in order (the dense sgemm adds the
 * zeros too, in its own blocked order: the two agree to float rounding). On a CNN-DSSM query
 * tower that is 2 * 256 * 300 * 900 multiply-adds per step instead of 2 * 2358 * 300 * 900.
 * Buffers are sized at build for the largest batch.
 * What it is not: a strided or dilated convolution, nor a 2-d one.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"
#include "convmath.h"
#include "vecmath.h"

/* Compact rows per block of Z, dX and the sparse dW (plus up to T - 1 to end on a whole row):
 * 128 rows of X or dX (w*E = 900 floats each) are 460 KB, inside a core's L2. */
enum { BLOCK_ROWS = 128 };

typedef struct {
    int E, F, w, pad, act;
    ts_param *W;      /* (w*E, F): block k (rows k*E..k*E+E-1) multiplies x[t+k-pad] */
    ts_param *b;      /* (1, F) */
    float *X;         /* (Bmax*T, w*E) im2col of the valid positions */
    float *Z;         /* (BLOCK_ROWS + T, F) one block of X W + b, before the activation */
    float *dZ;        /* (Bmax*T, F) dense backward: the gradient before the activation */
    float *dX;        /* (BLOCK_ROWS + T, w*E) one block of the im2col matrix's gradient */
    float *Wt, *dWt;  /* (F, w*E) sparse backward: W transposed, and W's gradient transposed */
    int32_t *nzp;     /* (BLOCK_ROWS + T + 1) sparse backward: the nonzeros of the block's row
                         r0 + i are nzf/nzg[nzp[i]..nzp[i + 1]) */
    int32_t *nzf;     /* ((BLOCK_ROWS + T) * F) their features */
    float *nzg;       /* ((BLOCK_ROWS + T) * F) their values dz */
    int32_t *colp;    /* (F + 1) sparse dW: a block's nonzeros by feature, colr/colg[colp[f]..] */
    int32_t *colr;    /* ((BLOCK_ROWS + T) * F) their rows */
    float *colg;      /* ((BLOCK_ROWS + T) * F) their values */
    int32_t *start;   /* (Bmax + 1) compact row of each row's first valid position */
    int32_t *dirty;   /* (Bmax) the output cells t >= dirty[b] of row b hold zeros already (an
                         earlier forward zeroed them), so only [len, dirty) needs zeroing */
    int R;            /* valid positions of the last forward */
} conv_state;

static const ts_key keys[] = {
    {"window", "int", "3", "words seen by one position (odd: centred on it)"},
    {"filters", "int", "300", "output features per position"},
    {"activation", "choice:none|tanh|relu", "tanh", "non-linearity after the convolution"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[64];
    if (L->nin != 1)
        return ts_fail(e, "%s: conv1d takes one input (B, T, E), got %d",
                       ts_cfg_where(cfg, "input"), L->nin);
    const ts_tensor *in = L->in[0];
    if (in->dtype != TS_F32 || in->ndim != 3)
        return ts_fail(e, "%s: conv1d needs an f32 input of shape (B, T, E), got %s; put an "
                       "embedding_bag with combine = cell before it", ts_cfg_where(cfg, "input"),
                       ts_shape_str(in, sh, sizeof sh));
    long window, filters;
    int act;
    if (ts_cfg_int(cfg, "window", &window, e) || ts_cfg_int(cfg, "filters", &filters, e) ||
        ts_cfg_choice(cfg, "activation", "none|tanh|relu", &act, e))
        return -1;
    if (window < 1 || window > 15 || window % 2 == 0)
        return ts_fail(e, "%s: window = %ld; use an odd width from 1 to 15",
                       ts_cfg_where(cfg, "window"), window);
    if (filters < 1 || filters > 65536)
        return ts_fail(e, "%s: filters = %ld; use 1..65536", ts_cfg_where(cfg, "filters"), filters);
    conv_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "conv1d: out of memory");
    L->state = s;
    s->E = in->dim[2];
    s->F = (int)filters;
    s->w = (int)window;
    s->pad = (s->w - 1) / 2;
    s->act = act;
    int K = s->w * s->E;
    s->W = ts_param_add(L->ctx, "W", K, s->F, TS_INIT_XAVIER, 0, 0, e);
    if (!s->W) return -1;
    s->b = ts_param_add(L->ctx, "b", 1, s->F, TS_INIT_ZEROS, 0, 0, e);
    if (!s->b) return -1;
    size_t cells = (size_t)in->dim[0] * (size_t)in->dim[1], F = (size_t)s->F;
    size_t block = (size_t)BLOCK_ROWS + (size_t)in->dim[1];
    s->X = malloc(cells * (size_t)K * sizeof(float));
    s->dX = malloc(block * (size_t)K * sizeof(float));
    s->Z = malloc(block * F * sizeof(float));
    s->dZ = malloc(cells * F * sizeof(float));
    s->start = malloc(((size_t)in->dim[0] + 1) * sizeof(int32_t));
    s->dirty = malloc((size_t)in->dim[0] * sizeof(int32_t));
    s->nzp = malloc((block + 1) * sizeof(int32_t));
    s->nzf = malloc(block * F * sizeof(int32_t));
    s->nzg = malloc(block * F * sizeof(float));
    s->colp = malloc((F + 1) * sizeof(int32_t));
    s->colr = malloc(block * F * sizeof(int32_t));
    s->colg = malloc(block * F * sizeof(float));
    s->Wt = malloc((size_t)K * F * sizeof(float));
    s->dWt = malloc((size_t)K * F * sizeof(float));
    if (!s->dirty || !s->Wt || !s->dWt || !s->X || !s->dX || !s->Z || !s->dZ || !s->start || !s->nzp || !s->nzf || !s->nzg ||
        !s->colp || !s->colr || !s->colg)
        return ts_fail(e, "conv1d %s: cannot allocate buffers for %zu positions; lower [train] "
                       "batch", L->name, cells);
    for (int b = 0; b < in->dim[0]; b++) s->dirty[b] = in->dim[1];   /* unknown: all of it */
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 3;
    out->dim[0] = in->dim[0];
    out->dim[1] = in->dim[1];
    out->dim[2] = s->F;
    return 0;
}

static int valid_steps(const ts_tensor *in, int b)
{
    int T = in->dim[1];
    if (!in->len) return T;
    int n = in->len[b];
    return n < 0 ? 0 : n > T ? T : n;
}

/* X[r, k*E + j] = x[b, t+k-pad, j] for 0 <= t+k-pad < n_b, else 0; r walks the valid cells,
 * start[b] = the first r of row b. Returns R. */
static int im2col(conv_state *s, const ts_tensor *in)
{
    const int B = in->dim[0], T = in->dim[1], E = s->E, K = s->w * E;
    const float *x = in->x;  /* (B, T, E) */
    int r = 0;
    for (int b = 0; b < B; b++) {
        int n = valid_steps(in, b);
        s->start[b] = r;
        for (int t = 0; t < n; t++, r++) {
            float *row = s->X + (size_t)r * K;
            for (int k = 0; k < s->w; k++) {
                int src = t + k - s->pad;
                if (src < 0 || src >= n) memset(row + k * E, 0, (size_t)E * sizeof(float));
                else memcpy(row + k * E, x + ((size_t)b * T + src) * E, (size_t)E * sizeof(float));
            }
        }
    }
    s->start[B] = r;
    return r;
}

/* The end of the block of rows that starts at row b0: whole rows, BLOCK_ROWS positions at
 * most (more only when one row alone is longer, at most T). */
static int block_end(const conv_state *s, int b0, int B)
{
    int b1 = b0 + 1;
    while (b1 < B && s->start[b1 + 1] - s->start[b0] <= BLOCK_ROWS) b1++;
    return b1;
}

/* db (F) += the column sums of dz (R, F), row by row (the order of the scalar loop). */
TS_VEC static void col_sums(const float *dz, long R, int F, float *db)
{
    for (long r = 0; r < R; r++)
        for (int f = 0; f < F; f++) db[f] += dz[r * F + f];
}

/* dst (rows, E) at stride ds += src (rows, E) at stride ss: one block of col2im. */
TS_VEC static void add_rows(float *dst, long ds, const float *src, long ss, int rows, int E)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < E; j++) dst[r * ds + j] += src[r * ss + j];
}

/* Nonzeros among dy (n). */
TS_VEC static long count_nonzero(const float *dy, long n)
{
    long c = 0;
    for (long i = 0; i < n; i++) c += dy[i] != 0.0f;
    return c;
}

/* dst (cols, rows) at stride ld_dst = src (rows, cols) at stride ld_src transposed (add = 0),
 * or += it (add = 1), in 16 x 16 tiles. */
static void transpose(float *dst, long ld_dst, const float *src, long ld_src, int rows, int cols,
                      int add)
{
    for (int i0 = 0; i0 < rows; i0 += 16)
        for (int j0 = 0; j0 < cols; j0 += 16) {
            int i1 = i0 + 16 < rows ? i0 + 16 : rows, j1 = j0 + 16 < cols ? j0 + 16 : cols;
            if (add)
                for (int j = j0; j < j1; j++)
                    for (int i = i0; i < i1; i++) dst[j * ld_dst + i] += src[i * ld_src + j];
            else
                for (int j = j0; j < j1; j++)
                    for (int i = i0; i < i1; i++) dst[j * ld_dst + i] = src[i * ld_src + j];
        }
}

/* dst (len) += sum_q g[q] * X[rows[q]][0..len) for q < m (rows of X ldx floats apart), added in
 * the order of q, four rows per pass over dst. */
TS_VEC static void col_axpy(float *restrict dst, const float *X, long ldx, const int32_t *rows,
                            const float *g, int m, int len)
{
    int q = 0;
    for (; q + 4 <= m; q += 4) {
        const float *a = X + rows[q] * ldx, *b = X + rows[q + 1] * ldx,
                    *c = X + rows[q + 2] * ldx, *d = X + rows[q + 3] * ldx;
        const float ga = g[q], gb = g[q + 1], gc = g[q + 2], gd = g[q + 3];
        for (int j = 0; j < len; j++)
            dst[j] = (((dst[j] + ga * a[j]) + gb * b[j]) + gc * c[j]) + gd * d[j];
    }
    for (; q < m; q++) {
        const float *a = X + rows[q] * ldx;
        for (int j = 0; j < len; j++) dst[j] += g[q] * a[j];
    }
}

/* y (len) = sum_q g[q] * W[f[q]][0..len) for q < m (rows of W ld floats apart; here W^T, whose
 * rows are the filters), added in the order of q (0 when m = 0). */
TS_VEC static void gather_rows(float *restrict y, const float *W, long ld, const int32_t *f,
                               const float *g, int m, int len)
{
    for (int j = 0; j < len; j++) y[j] = 0.0f;
    int q = 0;
    for (; q + 4 <= m; q += 4) {
        const float *a = W + f[q] * ld, *b = W + f[q + 1] * ld, *c = W + f[q + 2] * ld,
                    *d = W + f[q + 3] * ld;
        const float ga = g[q], gb = g[q + 1], gc = g[q + 2], gd = g[q + 3];
        for (int j = 0; j < len; j++)
            y[j] = (((y[j] + ga * a[j]) + gb * b[j]) + gc * c[j]) + gd * d[j];
    }
    for (; q < m; q++) {
        const float *a = W + f[q] * ld;
        for (int j = 0; j < len; j++) y[j] += g[q] * a[j];
    }
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    conv_state *s = L->state;
    const ts_tensor *in = L->in[0];
    ts_tensor *out = &L->out[0];
    const int B = in->dim[0], T = in->dim[1], F = s->F, K = s->w * s->E;
    float *y = out->x;  /* (B, T, F) */
    out->len = in->len;
    s->R = im2col(s, in);
    for (int b0 = 0, b1; b0 < B; b0 = b1) {
        b1 = block_end(s, b0, B);
        const int r0 = s->start[b0], nr = s->start[b1] - r0;
        /* Z = X W + 1 b for the block's rows: the bias rows first, the sgemm adds onto them. */
        for (int r = 0; r < nr; r++) memcpy(s->Z + (size_t)r * F, s->b->w, (size_t)F * sizeof(float));
        if (nr > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, F, K, 1.0f,
                        s->X + (size_t)r0 * K, K, s->W->w, F, 1.0f, s->Z, F);
        /* Row b's valid positions are compact rows start[b].. and cells b*T.., both contiguous:
         * one activation pass writes them, and the padded cells that may not be zero yet are
         * zeroed (the output buffer is written by this layer only). */
        for (int b = b0; b < b1; b++) {
            int n = s->start[b + 1] - s->start[b];
            float *yb = y + (size_t)b * T * F;
            const float *zb = s->Z + (size_t)(s->start[b] - r0) * F;
            if (s->act == ACT_TANH) ts_vec_tanh(zb, yb, (long)n * F);
            else act_plain(zb, yb, (long)n * F, s->act);
            if (s->dirty[b] > n)
                memset(yb + (size_t)n * F, 0, (size_t)(s->dirty[b] - n) * F * sizeof(float));
            s->dirty[b] = n;
        }
    }
    return 0;
}

/* dx[b, t+k-pad] += dX[r, block k] for the rows of texts b0..b1 (dX holds their rows from
 * compact row start[b0]): one strided add per (text, k) over the positions t in [lo, hi) with
 * t+k-pad in [0, n). */
static void col2im(const conv_state *s, const ts_tensor *in, int b0, int b1)
{
    const int T = in->dim[1], E = s->E, K = s->w * E, r0 = s->start[b0];
    for (int b = b0; b < b1; b++) {
        int n = s->start[b + 1] - s->start[b];
        for (int k = 0; k < s->w; k++) {
            int sh = k - s->pad;
            int lo = sh < 0 ? -sh : 0, hi = sh > 0 ? n - sh : n;
            if (hi <= lo) continue;
            add_rows(in->dx + ((size_t)b * T + lo + sh) * E, E,
                     s->dX + (size_t)(s->start[b] - r0 + lo) * K + (size_t)k * E, K, hi - lo, E);
        }
    }
}

/* Backward over the nonzeros of dZ (see the top of the file), block by block. */
static void backward_sparse(conv_state *s, const ts_tensor *in, const ts_tensor *out)
{
    const int B = in->dim[0], T = in->dim[1], F = s->F, K = s->w * s->E;
    int32_t *cp = s->colp;   /* (F + 1) */
    memset(s->dWt, 0, (size_t)F * K * sizeof(float));
    if (in->dx) transpose(s->Wt, K, s->W->w, F, K, F, 0);
    for (int b0 = 0, b1; b0 < B; b0 = b1) {
        b1 = block_end(s, b0, B);
        const int r0 = s->start[b0], r1 = s->start[b1];
        /* the block's nonzeros, position by position (CSR over nzp) */
        int m = 0;
        for (int b = b0; b < b1; b++)
            m = compress(out->x + (size_t)b * T * F, out->dx + (size_t)b * T * F,
                         s->start[b + 1] - s->start[b], F, s->act, s->nzf, s->nzg,
                         s->nzp + (s->start[b] - r0), m);
        /* ... and sorted by feature (counting sort; rows ascending within a feature), for
         * dW^T[f] += sum_r dz[r,f] X[r] with each row of dW^T loaded and stored once */
        memset(cp, 0, (size_t)(F + 1) * sizeof *cp);
        for (int q = 0; q < m; q++) cp[s->nzf[q] + 1]++;
        for (int f = 0; f < F; f++) cp[f + 1] += cp[f];
        for (int r = r0; r < r1; r++)
            for (int q = s->nzp[r - r0]; q < s->nzp[r - r0 + 1]; q++) {
                int slot = cp[s->nzf[q]]++;
                s->colr[slot] = r;
                s->colg[slot] = s->nzg[q];
            }
        for (int f = F; f > 0; f--) cp[f] = cp[f - 1];   /* the fill moved each start one up */
        cp[0] = 0;
        for (int f = 0; f < F; f++) {
            int n = cp[f + 1] - cp[f];
            if (n == 0) continue;
            col_axpy(s->dWt + (size_t)f * K, s->X, K, s->colr + cp[f], s->colg + cp[f], n, K);
            for (int q = cp[f]; q < cp[f + 1]; q++) s->b->g[f] += s->colg[q];
        }
        if (!in->dx) continue;
        /* dX[r] = sum_f dz[r,f] W^T[f], then col2im */
        for (int r = r0; r < r1; r++)
            gather_rows(s->dX + (size_t)(r - r0) * K, s->Wt, K, s->nzf + s->nzp[r - r0],
                        s->nzg + s->nzp[r - r0], s->nzp[r - r0 + 1] - s->nzp[r - r0], K);
        col2im(s, in, b0, b1);
    }
    transpose(s->W->g, F, s->dWt, K, F, K, 1);
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    conv_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const ts_tensor *out = &L->out[0];
    const int B = in->dim[0], F = s->F, E = s->E, K = s->w * E, R = s->R, T = in->dim[1];
    if (!out->dx || R == 0) return 0;
    long nnz = 0;
    for (int b = 0; b < B; b++)
        nnz += count_nonzero(out->dx + (size_t)b * T * F, (long)(s->start[b + 1] - s->start[b]) * F);
    if (5 * nnz <= (long)R * F) {   /* at most 1/5 of dZ is nonzero */
        backward_sparse(s, in, out);
        return 0;
    }
    float *dZ = s->dZ;   /* (R, F) */
    /* dZ = dY * act'(Z), row by row from the output's valid cells. */
    for (int b = 0; b < B; b++) {
        long n = (long)(s->start[b + 1] - s->start[b]) * F;
        act_grad(out->x + (size_t)b * T * F, out->dx + (size_t)b * T * F,
                 dZ + (size_t)s->start[b] * F, n, s->act);
    }
    /* dW += X^T dZ; db += column sums of dZ. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, F, R, 1.0f, s->X, K, dZ, F, 1.0f,
                s->W->g, F);
    col_sums(dZ, R, F, s->b->g);
    if (!in->dx) return 0;
    /* Block by block: dX = dZ W^T for the block's rows, then col2im. */
    for (int b0 = 0, b1; b0 < B; b0 = b1) {
        b1 = block_end(s, b0, B);
        const int r0 = s->start[b0], nr = s->start[b1] - r0;
        if (nr == 0) continue;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, K, F, 1.0f,
                    dZ + (size_t)r0 * F, F, s->W->w, F, 0.0f, s->dX, K);
        col2im(s, in, b0, b1);
    }
    return 0;
}

static void destroy(ts_layer *L)
{
    conv_state *s = L->state;
    if (!s) return;
    free(s->X); free(s->dX); free(s->Z); free(s->dZ); free(s->start);
    free(s->nzp); free(s->nzf); free(s->nzg); free(s->colp); free(s->colr); free(s->colg);
    free(s->Wt); free(s->dWt); free(s->dirty);
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
    .check_inputs = "f32 4 5 3 len", .check_keys = "window=3 filters=4 activation=tanh", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "conv1d", "1.0",
    "1-d convolution over time (B,T,E) -> (B,T,filters), zero padding past the valid ends",
    keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
