/* sparse_conv.c — CLSM's word-n-gram convolution applied to the letter-trigram count vectors of
 * a word window directly (Shen et al., CIKM 2014, section 3.2), at the cost of the ids present.
 *
 * What it is for: the paper's exact convolution layer of CNN-DSSM. Input: a bags field (B, T),
 * cell (b, s) = the letter trigrams of word s (an id once per occurrence: x_s is the word's
 * trigram count vector, V wide), with per-row lengths. Output (B, T, F):
 *   y[b,t] = act( c + sum_{k=0}^{w-1} x[b, t+k-p] W_k ),  p = (w-1)/2,
 * with x[b, s] = 0 outside [0, len[b]), W_k (V, F) the filter block for window slot k, c (F) the
 * bias; positions t >= len[b] output 0, and len passes through. It is one product of the
 * (w V)-wide concatenated window [x_{t-p}, ..., x_{t+p}] with a (w V, F) matrix, as in the paper;
 * conv1d over embedding_bag's word vectors is the factorised form W_k = E A_k of it.
 * How: the table is stored by trigram, W (V, w F), row i = [W_0[i] | W_1[i] | ... ], so a word
 * reads each of its trigrams' rows once:
 *   P_s = x_s W = sum_{i in bag(s)} W[i]   (w F)   (bagmath.h's bag sum, as embedding_bag)
 *   z_t = c + sum_k P_{t+k-p}[block k],     y_t = act(z_t)
 * about (trigrams per word) * w * F multiply-adds per position (a WordNet word: 8 * 900) instead
 * of the factorised E-wide sum plus a (w E) x F product (270k at E = F = 300).
 * Backward (the input is ids: no input gradient): dz_t = dy_t * act'(z_t), dc += sum_t dz_t, and
 * for every trigram i of word s and every slot k with t = s - k + p valid,
 *   W[i][block k] += dz_t,
 * only the rows of the trigrams present (a sparse table: ts_param_touch, lazy optimizer updates).
 * Behind max-over-time pooling dz_t is sparse (one nonzero per filter per text, at the argmax):
 * a position with few nonzeros is scattered feature by feature, a dense one is added as a block
 * of F (bagmath.h's bag gradient). Both add the same terms in the same order per weight.
 * Buffers: one row of P (T, w F) and the compressed dz of one row, sized at build.
 * What it is not: a strided or dilated convolution, nor one over dense inputs (that is conv1d).
 */
#include <stdlib.h>
#include <string.h>

#include "tessera.h"
#include "bagmath.h"
#include "convmath.h"
#include "vecmath.h"

typedef struct {
    int V, F, w, pad, act;
    int KF;           /* w * F: the width of a table row */
    ts_param *W;      /* (V, w*F) sparse: row i = [W_0[i] | ... | W_{w-1}[i]], F each */
    ts_param *b;      /* (1, F) */
    float *P;         /* (T, w*F) one row's word projections P_s = x_s W */
    int32_t *nzp;     /* (T + 1) one row's nonzeros of dz: position t's are nzf/nzg[nzp[t]..) */
    int32_t *nzf;     /* (T * F) their features */
    float *nzg;       /* (T * F) their values dz */
    float *dz;        /* (T * F) one row's dz, dense (the positions added as blocks read it) */
    int32_t *dirty;   /* (Bmax) the output cells t >= dirty[b] of row b hold zeros already (an
                         earlier forward zeroed them), so only [len, dirty) needs zeroing */
} sconv_state;

static const ts_key keys[] = {
    {"window", "int", "3", "words seen by one position (odd: centred on it)"},
    {"filters", "int", "300", "output features per position"},
    {"activation", "choice:none|tanh|relu", "tanh", "non-linearity after the convolution"},
    {"init_scale", "float", "0.01",
     "standard deviation of the (uniform) initialisation of the (trigram, window slot, "
     "filter) weights"},
    {NULL, NULL, NULL, NULL}};

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[64];
    if (L->nin != 1)
        return ts_fail(e, "%s: sparse_conv takes one input (a bags field of words), got %d; set "
                       "input = ONE_FIELD", ts_cfg_where(cfg, "input"), L->nin);
    const ts_tensor *in = L->in[0];
    if (in->dtype != TS_BAGS || in->ndim != 2)
        return ts_fail(e, "%s: sparse_conv needs a bags input of shape (B, T) (a bag of letter "
                       "trigrams per word, e.g. the field query), got %s; for word vectors "
                       "(B, T, E) use conv1d", ts_cfg_where(cfg, "input"),
                       ts_shape_str(in, sh, sizeof sh));
    if (in->vocab <= 0 || in->vocab > 0x7fffffff)
        return ts_fail(e, "%s: the input's vocabulary size %lld is not usable; the dataset must "
                       "declare the field's vocab", ts_cfg_where(cfg, "input"),
                       (long long)in->vocab);
    long window, filters;
    int act;
    double scale;
    if (ts_cfg_int(cfg, "window", &window, e) || ts_cfg_int(cfg, "filters", &filters, e) ||
        ts_cfg_choice(cfg, "activation", "none|tanh|relu", &act, e) ||
        ts_cfg_float(cfg, "init_scale", &scale, e))
        return -1;
    if (window < 1 || window > 15 || window % 2 == 0)
        return ts_fail(e, "%s: window = %ld; use an odd width from 1 to 15",
                       ts_cfg_where(cfg, "window"), window);
    if (filters < 1 || filters > 65536)
        return ts_fail(e, "%s: filters = %ld; use 1..65536", ts_cfg_where(cfg, "filters"), filters);
    if (!(scale >= 0 && scale <= 10))
        return ts_fail(e, "%s: init_scale = %g; use a standard deviation from 0 to 10 (0.01 is "
                       "the default)", ts_cfg_where(cfg, "init_scale"), scale);
    if ((double)in->vocab * (double)window * (double)filters > 2e9)
        return ts_fail(e, "%s: the table would hold %lld x %ld x %ld weights, over 2e9; lower "
                       "filters or window, or the dataset's vocab_cap",
                       ts_cfg_where(cfg, "filters"), (long long)in->vocab, window, filters);
    sconv_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "sparse_conv: out of memory");
    L->state = s;
    s->V = (int)in->vocab;
    s->F = (int)filters;
    s->w = (int)window;
    s->pad = (s->w - 1) / 2;
    s->act = act;
    s->KF = s->w * s->F;
    /* uniform with the asked standard deviation (U(-a, a) has a / sqrt 3): a table of millions
     * of weights is drawn several times faster than through the normal's log and cos */
    s->W = ts_param_add(L->ctx, "W", s->V, s->KF, TS_INIT_UNIFORM,
                        (float)(scale * 1.7320508075688772), TS_PARAM_SPARSE, e);
    if (!s->W) return -1;
    s->b = ts_param_add(L->ctx, "b", 1, s->F, TS_INIT_ZEROS, 0, 0, e);
    if (!s->b) return -1;
    const size_t T = (size_t)in->dim[1], F = (size_t)s->F;
    s->P = malloc(T * (size_t)s->KF * sizeof(float));
    s->nzp = malloc((T + 1) * sizeof(int32_t));
    s->nzf = malloc(T * F * sizeof(int32_t));
    s->nzg = malloc(T * F * sizeof(float));
    s->dz = malloc(T * F * sizeof(float));
    s->dirty = malloc((size_t)in->dim[0] * sizeof(int32_t));
    if (!s->P || !s->nzp || !s->nzf || !s->nzg || !s->dz || !s->dirty)
        return ts_fail(e, "sparse_conv %s: out of memory", L->name);
    for (int b = 0; b < in->dim[0]; b++) s->dirty[b] = in->dim[1];   /* unknown: all of it */
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = 3;
    out->dim[0] = in->dim[0];
    out->dim[1] = in->dim[1];
    out->dim[2] = s->F;
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

/* y (n) += x (n) */
TS_VEC static void add_span(float *restrict y, const float *restrict x, int n)
{
    for (int j = 0; j < n; j++) y[j] += x[j];
}

/* G[ids[k] * ld + f[q]] += g[q] for q < m, k < n: the nonzeros of one position's dz into one
 * block of each trigram's row, in the order of ids and then of q. */
static void scatter_rows(float *G, long ld, const int32_t *ids, int n, const int32_t *f,
                         const float *g, int m)
{
    for (int k = 0; k < n; k++) {
        float *row = G + (size_t)ids[k] * ld;
        for (int q = 0; q < m; q++) row[f[q]] += g[q];
    }
}

static int forward(ts_layer *L, ts_phase phase, ts_err *e)
{
    (void)phase;
    sconv_state *s = L->state;
    const ts_tensor *in = L->in[0];
    ts_tensor *out = &L->out[0];
    const int B = in->dim[0], T = in->dim[1], F = s->F, KF = s->KF;
    const int32_t *off = in->off;   /* (B*T + 1) */
    const int32_t *ids = in->ids;   /* (off[B*T]) */
    const float *W = s->W->w;       /* (V, w*F) */
    float *y = out->x;              /* (B, T, F) */
    for (int b = 0; b < B; b++) {   /* every id a valid step reads, checked once */
        int nt = steps_of(in, b);
        for (int32_t k = off[(long)b * T]; k < off[(long)b * T + nt]; k++)
            if (ids[k] < 0 || ids[k] >= s->V) {
                int t = 0;
                while (t + 1 < nt && off[(long)b * T + t + 1] <= k) t++;
                return ts_fail(e, "sparse_conv %s: id %d at row %d step %d is outside the "
                               "vocabulary [0, %d); the dataset produced a bad id",
                               L->name, ids[k], b, t, s->V);
            }
    }
    for (int b = 0; b < B; b++) {
        const int n = steps_of(in, b);
        const long c0 = (long)b * T;
        float *yb = y + (size_t)c0 * F;
        /* P_s = the sum of word s's trigram rows, w F wide */
        for (int t = 0; t < n; t++)
            ts_bag_sum(W, ids + off[c0 + t], off[c0 + t + 1] - off[c0 + t], KF,
                       s->P + (size_t)t * KF);
        /* z_t = c + sum of the window's blocks, then the activation over the row's n positions */
        for (int t = 0; t < n; t++) {
            float *yt = yb + (size_t)t * F;
            memcpy(yt, s->b->w, (size_t)F * sizeof(float));
            for (int k = 0; k < s->w; k++) {
                int src = t + k - s->pad;
                if (src >= 0 && src < n) add_span(yt, s->P + (size_t)src * KF + (size_t)k * F, F);
            }
        }
        if (s->act == ACT_TANH) ts_vec_tanh(yb, yb, (long)n * F);
        else act_plain(yb, yb, (long)n * F, s->act);
        if (s->dirty[b] > n)   /* the output is written by this layer only */
            memset(yb + (size_t)n * F, 0, (size_t)(s->dirty[b] - n) * F * sizeof(float));
        s->dirty[b] = n;
    }
    out->len = in->len;
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    sconv_state *s = L->state;
    const ts_tensor *in = L->in[0];
    const ts_tensor *out = &L->out[0];
    if (!out->dx) return 0;
    const int B = in->dim[0], T = in->dim[1], F = s->F, KF = s->KF;
    const int32_t *off = in->off, *ids = in->ids;
    const int train_W = !(s->W->flags & TS_PARAM_FROZEN);
    float *G = s->W->g;   /* (V, w*F) */
    float *db = s->b->g;  /* (1, F) */
    for (int b = 0; b < B; b++) {
        const int n = steps_of(in, b);
        if (n == 0) continue;
        const long c0 = (long)b * T;
        const float *yb = out->x + (size_t)c0 * F, *dyb = out->dx + (size_t)c0 * F;
        /* dz of the row's positions, compressed to its nonzeros (position-major) */
        compress(yb, dyb, n, F, s->act, s->nzf, s->nzg, s->nzp, 0);
        for (int t = 0; t < n; t++)
            for (int q = s->nzp[t]; q < s->nzp[t + 1]; q++) db[s->nzf[q]] += s->nzg[q];
        if (!train_W) continue;
        int dense_made = 0;
        /* word u's trigram rows, block k, get dz of position u - k + pad */
        for (int u = 0; u < n; u++) {
            const int32_t *bag = ids + off[c0 + u];
            const int cnt = off[c0 + u + 1] - off[c0 + u];
            if (cnt == 0) continue;
            for (int k = 0; k < s->w; k++) {
                int t = u - k + s->pad;
                if (t < 0 || t >= n) continue;
                int m = s->nzp[t + 1] - s->nzp[t];
                if (m == 0) continue;
                if (3 * m > F) {   /* dense enough: a block of F, four rows per pass */
                    if (!dense_made) {
                        act_grad(yb, dyb, s->dz, (long)n * F, s->act);
                        dense_made = 1;
                    }
                    ts_bag_grad(G + (size_t)k * F, KF, bag, cnt, F, 1.0f, s->dz + (size_t)t * F);
                } else {
                    scatter_rows(G + (size_t)k * F, KF, bag, cnt, s->nzf + s->nzp[t],
                                 s->nzg + s->nzp[t], m);
                }
            }
            for (int q = 0; q < cnt; q++) ts_param_touch(s->W, bag[q]);
        }
    }
    return 0;
}

static void destroy(ts_layer *L)
{
    sconv_state *s = L->state;
    if (!s) return;
    free(s->P); free(s->nzp); free(s->nzf); free(s->nzg); free(s->dz); free(s->dirty);
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
    .check_inputs = "bags 4 5 vocab=30 len",
    .check_keys = "window=3 filters=4 activation=tanh init_scale=0.3"};
static const ts_plugin plugin = {
    TS_ABI, sizeof(ts_plugin), TS_LAYER, "sparse_conv", "1.0",
    "CLSM's convolution on the words' letter-trigram bags (B,T) -> (B,T,filters), sparse rows",
    keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
