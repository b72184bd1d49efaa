/* lstm.c — a peephole LSTM over a (B, T, E) sequence that returns the last valid hidden state.
 *
 * What it is for: the sentence encoder of LSTM-DSSM (Palangi et al., IEEE/ACM TASLP 2016). With
 * x_t the input at step t, h_{-1} = c_{-1} = 0 and fb the forget bias (a constant, default 1):
 *   i_t = sig(W_i x_t + U_i h_{t-1} + p_i . c_{t-1} + b_i)
 *   f_t = sig(W_f x_t + U_f h_{t-1} + p_f . c_{t-1} + b_f + fb)
 *   g_t = tanh(W_c x_t + U_c h_{t-1} + b_c)
 *   c_t = f_t . c_{t-1} + i_t . g_t
 *   o_t = sig(W_o x_t + U_o h_{t-1} + p_o . c_t + b_o)
 *   h_t = o_t . tanh(c_t)
 * and the output y[b] = h[b, len[b]-1] (B, H). Gate order in W, U, b: i, f, g, o.
 * How: like a packed sequence, rows are sorted by length (longest first) and every buffer is
 * time-major and packed: step t holds only the n_t rows still running, at rows off_t ..
 * off_t + n_t - 1, so no work is spent on padding. The input projections of all steps are one
 * sgemm (R, E) x (E, 4H) with R = sum_b len[b]; each step adds h_{t-1} U with one (n_t, H) x
 * (H, 4H) sgemm. Backpropagation through time keeps every step's gates and cells (buffers sized
 * at build for the largest batch); dW, dU and dx are one sgemm each over the packed rows.
 * What it is not: a bidirectional or stacked LSTM, nor one that returns every step's state.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tessera.h"

typedef struct {
    int E, H, T;        /* input width, units, steps */
    int Tmax, R;        /* steps and packed rows of the last forward */
    float fb;           /* forget bias added to the f gate's pre-activation */
    ts_param *W;        /* (E, 4H) */
    ts_param *U;        /* (H, 4H) */
    ts_param *b;        /* (1, 4H) */
    ts_param *P;        /* (3, H) peepholes p_i, p_f, p_o */
    int32_t *perm;      /* (Bmax) batch row of sorted position p (longest first) */
    int32_t *plen;      /* (Bmax) length of position p */
    int32_t *nrun;      /* (T + 1) n_t: positions still running at step t (n_T = 0) */
    int32_t *off;       /* (T + 1) first packed row of step t */
    float *X;           /* (Bmax*T, E) packed inputs x[perm[p], t] */
    float *G;           /* (Bmax*T, 4H) pre-activations, then the gates i, f, g, o */
    float *C;           /* (Bmax*T, H) cells c_t */
    float *TC;          /* (Bmax*T, H) tanh(c_t) */
    float *Hp;          /* (Bmax*T, H) h_{t-1} (zero at t = 0) */
    float *dA;          /* (Bmax*T, 4H) gradient of the pre-activations */
    float *dX;          /* (Bmax*T, E) gradient of the packed inputs */
    float *dh, *dc;     /* (Bmax, H) gradient flowing into h_t, c_t of position p */
} lstm_state;

static const ts_key keys[] = {
    {"units", "int", NULL, "hidden units H (the output width)"},
    {"forget_bias", "float", "1",
     "constant added to the forget gate, so that memory is kept early in training"},
    {NULL, NULL, NULL, NULL}};

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[64];
    if (L->nin != 1)
        return ts_fail(e, "%s: lstm takes one input (B, T, E), got %d",
                       ts_cfg_where(cfg, "input"), L->nin);
    const ts_tensor *in = L->in[0];
    if (in->dtype != TS_F32 || in->ndim != 3)
        return ts_fail(e, "%s: lstm needs an f32 input of shape (B, T, E), got %s; put an "
                       "embedding_bag with combine = cell before it", ts_cfg_where(cfg, "input"),
                       ts_shape_str(in, sh, sizeof sh));
    long units;
    double fb;
    if (ts_cfg_int(cfg, "units", &units, e) || ts_cfg_float(cfg, "forget_bias", &fb, e)) return -1;
    if (units < 1 || units > 16384)
        return ts_fail(e, "%s: units = %ld; use 1..16384", ts_cfg_where(cfg, "units"), units);
    lstm_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "lstm: out of memory");
    L->state = s;
    s->E = in->dim[2];
    s->H = (int)units;
    s->T = in->dim[1];
    s->fb = (float)fb;
    int H4 = 4 * s->H;
    if (!(s->W = ts_param_add(L->ctx, "W", s->E, H4, TS_INIT_XAVIER, 0, 0, e))) return -1;
    if (!(s->U = ts_param_add(L->ctx, "U", s->H, H4, TS_INIT_XAVIER, 0, 0, e))) return -1;
    if (!(s->b = ts_param_add(L->ctx, "b", 1, H4, TS_INIT_ZEROS, 0, 0, e))) return -1;
    if (!(s->P = ts_param_add(L->ctx, "p", 3, s->H, TS_INIT_UNIFORM, 0.1f, 0, e))) return -1;
    size_t rows = (size_t)in->dim[0], cells = rows * (size_t)s->T;
    s->perm = malloc(rows * sizeof(int32_t));
    s->plen = malloc(rows * sizeof(int32_t));
    s->nrun = malloc(((size_t)s->T + 1) * sizeof(int32_t));
    s->off = malloc(((size_t)s->T + 1) * sizeof(int32_t));
    s->X = malloc(cells * s->E * sizeof(float));
    s->dX = malloc(cells * s->E * sizeof(float));
    s->G = malloc(cells * H4 * sizeof(float));
    s->dA = malloc(cells * H4 * sizeof(float));
    s->C = malloc(cells * s->H * sizeof(float));
    s->TC = malloc(cells * s->H * sizeof(float));
    s->Hp = malloc(cells * s->H * sizeof(float));
    s->dh = malloc(rows * s->H * sizeof(float));
    s->dc = malloc(rows * s->H * sizeof(float));
    if (!s->perm || !s->plen || !s->nrun || !s->off || !s->X || !s->dX || !s->G || !s->dA ||
        !s->C || !s->TC || !s->Hp || !s->dh || !s->dc)
        return ts_fail(e, "lstm %s: cannot allocate the BPTT buffers; lower [train] batch",
                       L->name);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 2;
    out->dim[0] = in->dim[0];
    out->dim[1] = s->H;
    return 0;
}

/* Sorts the rows by length, longest first (a stable counting sort), and lays out the steps:
 * nrun[t] = #{p : plen[p] > t}, off[t] = sum_{t' < t} nrun[t']. */
static void pack_layout(lstm_state *s, const ts_tensor *in)
{
    const int B = in->dim[0], T = s->T;
    int32_t *count = s->off;  /* borrowed as (T + 1) counters */
    memset(count, 0, ((size_t)T + 1) * sizeof *count);
    for (int b = 0; b < B; b++) {
        int n = in->len ? in->len[b] : T;
        n = n < 1 ? 1 : n > T ? T : n;
        s->plen[b] = n;  /* temporarily: by batch row */
        count[n]++;
    }
    /* positions: lengths T, T-1, ..., 1; rows of equal length keep batch order */
    int pos = 0;
    for (int n = T; n >= 1; n--) { int c = count[n]; count[n] = pos; pos += c; }
    for (int b = 0; b < B; b++) s->perm[count[s->plen[b]]++] = b;
    for (int p = 0; p < B; p++) {
        int n = in->len ? in->len[s->perm[p]] : T;
        s->plen[p] = n < 1 ? 1 : n > T ? T : n;
    }
    s->Tmax = B > 0 ? s->plen[0] : 0;
    int p = B, r = 0;
    for (int t = 0; t <= T; t++) {
        while (p > 0 && s->plen[p - 1] <= t) p--;
        s->nrun[t] = t < s->Tmax ? p : 0;
        s->off[t] = r;
        r += s->nrun[t];
    }
    s->R = s->off[s->Tmax];
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase; (void)e;
    lstm_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const int T = s->T, E = s->E, H = s->H, H4 = 4 * H;
    const float *P = s->P->w;  /* (3, H) */
    float *y = L->out[0].x;    /* (B, H) */
    pack_layout(s, in);
    const int R = s->R;
    /* X = packed inputs; G = X W + b for every running (row, step) at once */
    for (int t = 0; t < s->Tmax; t++)
        for (int p = 0; p < s->nrun[t]; p++) {
            size_t r = (size_t)s->off[t] + p;
            const float *src = in->x + ((size_t)s->perm[p] * T + t) * E;
            memcpy(s->X + r * E, src, (size_t)E * sizeof(float));
            memcpy(s->G + r * H4, s->b->w, (size_t)H4 * sizeof(float));
        }
    if (R > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, H4, E, 1.0f, s->X, E, s->W->w, H4,
                    1.0f, s->G, H4);
    for (int t = 0; t < s->Tmax; t++) {
        const int n = s->nrun[t];
        float *Gt = s->G + (size_t)s->off[t] * H4, *Ht = s->Hp + (size_t)s->off[t] * H;
        if (t == 0) memset(Ht, 0, (size_t)n * H * sizeof(float));  /* h_{-1} = 0 */
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H4, H, 1.0f, Ht, H, s->U->w,
                         H4, 1.0f, Gt, H4);
        for (int p = 0; p < n; p++) {
            size_t r = (size_t)s->off[t] + p;
            float *g = s->G + r * H4, *c = s->C + r * H, *tc = s->TC + r * H;
            const float *cp = t > 0 ? s->C + ((size_t)s->off[t - 1] + p) * H : NULL;
            float *hn = p < s->nrun[t + 1] ? s->Hp + ((size_t)s->off[t + 1] + p) * H : NULL;
            float *yo = s->plen[p] == t + 1 ? y + (size_t)s->perm[p] * H : NULL;
            for (int j = 0; j < H; j++) {
                float c0 = cp ? cp[j] : 0.0f;
                float ig = sigm(g[j] + P[j] * c0);
                float fg = sigm(g[H + j] + P[H + j] * c0 + s->fb);
                float gg = tanhf(g[2 * H + j]);
                float cc = fg * c0 + ig * gg;
                float og = sigm(g[3 * H + j] + P[2 * H + j] * cc);
                float th = tanhf(cc);
                g[j] = ig; g[H + j] = fg; g[2 * H + j] = gg; g[3 * H + j] = og;
                c[j] = cc; tc[j] = th;
                float h = og * th;
                if (hn) hn[j] = h;
                if (yo) yo[j] = h;
            }
        }
    }
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    lstm_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const float *dy = L->out[0].dx;  /* (B, H) */
    if (!dy) return 0;
    const int T = s->T, E = s->E, H = s->H, H4 = 4 * H, R = s->R;
    const float *P = s->P->w;  /* (3, H) */
    float *dP = s->P->g;       /* (3, H) */
    for (int t = s->Tmax - 1; t >= 0; t--) {
        const int n = s->nrun[t];
        /* positions whose last step is t start here: dh = dy of their row, dc = 0 */
        for (int p = s->nrun[t + 1]; p < n; p++) {
            memcpy(s->dh + (size_t)p * H, dy + (size_t)s->perm[p] * H, (size_t)H * sizeof(float));
            memset(s->dc + (size_t)p * H, 0, (size_t)H * sizeof(float));
        }
        for (int p = 0; p < n; p++) {
            size_t r = (size_t)s->off[t] + p;
            const float *g = s->G + r * H4, *c = s->C + r * H, *tc = s->TC + r * H;
            const float *cp = t > 0 ? s->C + ((size_t)s->off[t - 1] + p) * H : NULL;
            float *da = s->dA + r * H4, *dh = s->dh + (size_t)p * H, *dc = s->dc + (size_t)p * H;
            for (int j = 0; j < H; j++) {
                float ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
                float c0 = cp ? cp[j] : 0.0f;
                float dhj = dh[j];
                float dao = dhj * tc[j] * og * (1.0f - og);
                float dcj = dc[j] + dhj * og * (1.0f - tc[j] * tc[j]) + dao * P[2 * H + j];
                float dai = dcj * gg * ig * (1.0f - ig);
                float dag = dcj * ig * (1.0f - gg * gg);
                float daf = dcj * c0 * fg * (1.0f - fg);
                da[j] = dai; da[H + j] = daf; da[2 * H + j] = dag; da[3 * H + j] = dao;
                dP[j] += dai * c0;
                dP[H + j] += daf * c0;
                dP[2 * H + j] += dao * c[j];
                dc[j] = dcj * fg + dai * P[j] + daf * P[H + j];  /* into c_{t-1} */
            }
        }
        /* d h_{t-1} = dA_t U^T for the running positions */
        if (t > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, H4, 1.0f,
                        s->dA + (size_t)s->off[t] * H4, H4, s->U->w, H4, 0.0f, s->dh, H);
    }
    if (R == 0) return 0;
    /* dU += Hp^T dA (Hp = h_{t-1}, zero at t = 0); dW += X^T dA; db += column sums of dA. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, H4, R, 1.0f, s->Hp, H, s->dA, H4, 1.0f,
                s->U->g, H4);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, H4, R, 1.0f, s->X, E, s->dA, H4, 1.0f,
                s->W->g, H4);
    for (int r = 0; r < R; r++) {
        const float *da = s->dA + (size_t)r * H4;
        for (int j = 0; j < H4; j++) s->b->g[j] += da[j];
    }
    if (!in->dx) return 0;
    /* dX = dA W^T, scattered back to dx[perm[p], t] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, E, H4, 1.0f, s->dA, H4, s->W->w, H4,
                0.0f, s->dX, E);
    for (int t = 0; t < s->Tmax; t++)
        for (int p = 0; p < s->nrun[t]; p++) {
            const float *src = s->dX + ((size_t)s->off[t] + p) * E;
            float *dst = in->dx + ((size_t)s->perm[p] * T + t) * E;
            for (int j = 0; j < E; j++) dst[j] += src[j];
        }
    return 0;
}

static void destroy(ts_layer *L)
{
    lstm_state *s = L->state;
    if (!s) return;
    free(s->perm); free(s->plen); free(s->nrun); free(s->off);
    free(s->X); free(s->dX); free(s->G); free(s->dA); free(s->C); free(s->TC); free(s->Hp);
    free(s->dh); free(s->dc);
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
    .check_inputs = "f32 4 5 3 len", .check_keys = "units=4 forget_bias=1", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "lstm", "1.0",
    "peephole LSTM over (B,T,E) with lengths -> last valid hidden state (B,H)", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
