/* conv1d.c — a 1-d convolution over the time axis of a (B, T, E) sequence, respecting lengths.
 *
 * What it is for: the word-n-gram layer of CNN-DSSM (Shen et al., CIKM 2014): each position sees a
 * window of `window` words centred on it and maps their concatenated vectors to `filters` features:
 *   y[b,t] = act( b + sum_{k=0}^{w-1} x[b, t+k-p] W_k ),  p = (w-1)/2,
 * with x[b, s] = 0 outside [0, len[b]) (zero padding at both ends of the valid part). Positions
 * t >= len[b] output 0; len passes through.
 * How: only the valid positions are gathered, as an im2col matrix X (R, w*E) with R = sum_b len[b],
 * so one sgemm Z = X W does the whole batch and padded positions cost nothing; backward is
 * dW += X^T dZ, dX = dZ W^T (two sgemms) and col2im scatters dX back. Buffers are sized at build
 * for the largest batch. What it is not: a strided or dilated convolution, nor a 2-d one.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

enum { ACT_NONE = 0, ACT_TANH, ACT_RELU };

typedef struct {
    int E, F, w, pad, act;
    ts_param *W;      /* (w*E, F): block k (rows k*E..k*E+E-1) multiplies x[t+k-pad] */
    ts_param *b;      /* (1, F) */
    float *X;         /* (Bmax*T, w*E) im2col of the valid positions */
    float *Y;         /* (Bmax*T, F) activations of the valid positions */
    float *dZ;        /* (Bmax*T, F) gradient before the activation */
    float *dX;        /* (Bmax*T, w*E) gradient of the im2col matrix */
    int32_t *cell;    /* (Bmax*T) the cell b*T+t of compact row r */
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
    size_t cells = (size_t)in->dim[0] * (size_t)in->dim[1];
    s->X = malloc(cells * (size_t)K * sizeof(float));
    s->dX = malloc(cells * (size_t)K * sizeof(float));
    s->Y = malloc(cells * (size_t)s->F * sizeof(float));
    s->dZ = malloc(cells * (size_t)s->F * sizeof(float));
    s->cell = malloc(cells * sizeof(int32_t));
    if (!s->X || !s->dX || !s->Y || !s->dZ || !s->cell)
        return ts_fail(e, "conv1d %s: cannot allocate buffers for %zu positions; lower [train] "
                       "batch", L->name, cells);
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

/* X[r, k*E + j] = x[b, t+k-pad, j] for 0 <= t+k-pad < n_b, else 0; r walks the valid cells. */
static int im2col(conv_state *s, const ts_tensor *in)
{
    const int B = in->dim[0], T = in->dim[1], E = s->E, K = s->w * E;
    const float *x = in->x;  /* (B, T, E) */
    int r = 0;
    for (int b = 0; b < B; b++) {
        int n = valid_steps(in, b);
        for (int t = 0; t < n; t++, r++) {
            float *row = s->X + (size_t)r * K;
            s->cell[r] = b * T + t;
            for (int k = 0; k < s->w; k++) {
                int src = t + k - s->pad;
                if (src < 0 || src >= n) memset(row + k * E, 0, (size_t)E * sizeof(float));
                else memcpy(row + k * E, x + ((size_t)b * T + src) * E, (size_t)E * sizeof(float));
            }
        }
    }
    return r;
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    conv_state *s = L->state;
    const ts_tensor *in = L->in[0];
    ts_tensor *out = &L->out[0];
    const int F = s->F, K = s->w * s->E;
    float *y = out->x;  /* (B, T, F) */
    memset(y, 0, (size_t)ts_numel(out) * sizeof *y);
    out->len = in->len;
    int R = s->R = im2col(s, in);
    if (R == 0) return 0;
    /* Y = X W + 1 b, then the activation in place. */
    for (int r = 0; r < R; r++) memcpy(s->Y + (size_t)r * F, s->b->w, (size_t)F * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, F, K, 1.0f, s->X, K, s->W->w, F,
                1.0f, s->Y, F);
    size_t n = (size_t)R * F;
    if (s->act == ACT_TANH) for (size_t i = 0; i < n; i++) s->Y[i] = tanhf(s->Y[i]);
    else if (s->act == ACT_RELU) for (size_t i = 0; i < n; i++) s->Y[i] = s->Y[i] > 0 ? s->Y[i] : 0;
    for (int r = 0; r < R; r++)
        memcpy(y + (size_t)s->cell[r] * F, s->Y + (size_t)r * F, (size_t)F * sizeof(float));
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    conv_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const ts_tensor *out = &L->out[0];
    const int F = s->F, E = s->E, K = s->w * E, R = s->R, T = in->dim[1];
    if (!out->dx || R == 0) return 0;
    /* dZ = dY * act'(Z): tanh' = 1 - y^2, relu' = [y > 0]. */
    for (int r = 0; r < R; r++) {
        const float *dy = out->dx + (size_t)s->cell[r] * F;
        const float *yr = s->Y + (size_t)r * F;
        float *dz = s->dZ + (size_t)r * F;
        for (int f = 0; f < F; f++)
            dz[f] = s->act == ACT_TANH ? dy[f] * (1.0f - yr[f] * yr[f])
                  : s->act == ACT_RELU ? (yr[f] > 0 ? dy[f] : 0.0f) : dy[f];
    }
    /* dW += X^T dZ; db += column sums of dZ. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, F, R, 1.0f, s->X, K, s->dZ, F, 1.0f,
                s->W->g, F);
    for (int r = 0; r < R; r++) {
        const float *dz = s->dZ + (size_t)r * F;
        for (int f = 0; f < F; f++) s->b->g[f] += dz[f];
    }
    if (!in->dx) return 0;
    /* dX = dZ W^T, then col2im: dx[b, t+k-pad] += dX[r, block k] inside the valid part. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, K, F, 1.0f, s->dZ, F, s->W->w, F, 0.0f,
                s->dX, K);
    for (int r = 0; r < R; r++) {
        int b = s->cell[r] / T, t = s->cell[r] % T, n = valid_steps(in, b);
        const float *dr = s->dX + (size_t)r * K;
        for (int k = 0; k < s->w; k++) {
            int dst = t + k - s->pad;
            if (dst < 0 || dst >= n) continue;
            float *dx = in->dx + ((size_t)b * T + dst) * E;
            const float *src = dr + k * E;
            for (int j = 0; j < E; j++) dx[j] += src[j];
        }
    }
    return 0;
}

static void destroy(ts_layer *L)
{
    conv_state *s = L->state;
    if (!s) return;
    free(s->X); free(s->dX); free(s->Y); free(s->dZ); free(s->cell);
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
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 5 3 len", .check_keys = "window=3 filters=4 activation=tanh"};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "conv1d", "1.0",
    "1-d convolution over time (B,T,E) -> (B,T,filters), zero padding past the valid ends",
    keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
