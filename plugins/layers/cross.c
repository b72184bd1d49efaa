/* cross.c — the cross network of DCN-v2 (Wang, Shivanna, Cheng, Jain, Lin, Hong, Chi, "DCN V2:
 * Improved Deep & Cross Network", WWW 2021): explicit feature crosses of growing degree.
 *
 * Rows are vectors of the last axis (B, D), like dense. With x_0 the input and l = 0..N-1:
 *   rank = 0 (full):  z_l = x_l W_l + b_l                 W_l (D, D)
 *   rank = r (low):   z_l = (x_l V_l) U_l + b_l           V_l (D, r), U_l (r, D): W_l = V_l U_l
 *   x_{l+1} = x_0 * z_l + x_l                              (* elementwise)  output x_N (B, D)
 * (The paper writes W x for column vectors; x W here is the same map with W transposed.)
 * Backward, from G = dL/dx_{l+1}, layer by layer down:
 *   dz = G * x_0;  dx_0 += G * z_l;  db_l += colsum dz
 *   full: dW_l += x_l^T dz;  G <- G + dz W_l^T
 *   low:  dU_l += h_l^T dz (h_l = x_l V_l);  dh = dz U_l^T;  dV_l += x_l^T dh;  G <- G + dh V_l^T
 *   and finally dx_in += G + dx_0.
 * Each layer's x_l, z_l (and h_l) are kept from forward for backward. Init: Xavier for W, U, V,
 * zeros for b. What it is not: DCN-v1 (a vector w_l instead of W_l), the mixture of low-rank
 * experts of DCN-v2 (sec. 3.3), nor the deep part (dense layers beside or after it, in the INI).
 */
#include "tessera.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compose.h"

#define MAX_CROSS 16                 /* layers */

typedef struct cross_state {
    int n, d, r;                     /* layers, width, rank (0 = full) */
    ts_param *W[MAX_CROSS];          /* full: (D, D); low rank: NULL */
    ts_param *V[MAX_CROSS];          /* low rank: (D, r) */
    ts_param *U[MAX_CROSS];          /* low rank: (r, D) */
    ts_param *b[MAX_CROSS];          /* (1, D) */
    long max_rows;
    float *x;                        /* (N-1, max_rows, D): x_1 .. x_{N-1} (x_N is the output) */
    float *z;                        /* (N, max_rows, D): z_0 .. z_{N-1} */
    float *h;                        /* (N, max_rows, r): low rank only */
    float *g, *dz, *dx0;             /* (max_rows, D) backward scratch */
    float *dh;                       /* (max_rows, r) backward scratch, low rank only */
} cross_state;

static long view_rows(const ts_tensor *t) { return ts_numel(t) / t->dim[t->ndim - 1]; }

/* x_l (rows, D) for l = 0..N: the input, the kept ones, the output. */
static const float *x_at(const ts_layer *L, const cross_state *s, int l, long rows)
{
    if (l == 0) return L->in[0]->x;
    if (l == s->n) return L->out[0].x;
    return s->x + (size_t)(l - 1) * rows * s->d;
}

/* One cross layer: z = x_l W + b (or (x_l V) U + b, h = x_l V), y = x0 * z + x_l. */
static void cross_layer_forward(const cross_state *s, int l, const float *x0, const float *xl,
                                float *z, float *h, float *y, long rows)
{
    int d = s->d, r = s->r;
    for (long i = 0; i < rows; i++) memcpy(z + i * d, s->b[l]->w, sizeof(float) * (size_t)d);
    if (r == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, d, d, 1.0f, xl, d,
                    s->W[l]->w, d, 1.0f, z, d);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, r, d, 1.0f, xl, d,
                    s->V[l]->w, r, 0.0f, h, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, d, r, 1.0f, h, r,
                    s->U[l]->w, d, 1.0f, z, d);
    }
    long n = rows * d;
    for (long i = 0; i < n; i++) y[i] = x0[i] * z[i] + xl[i];
}

/* Layer l's backward: g (rows, D) holds dL/dx_{l+1} and leaves as dL/dx_l (this layer's part);
 * dx0 (rows, D) gathers the x_0 terms; parameter gradients accumulate. */
static void cross_layer_backward(cross_state *s, int l, const float *x0, const float *xl,
                                 const float *z, const float *h, long rows)
{
    int d = s->d, r = s->r;
    long n = rows * d;
    float *g = s->g, *dz = s->dz;
    for (long i = 0; i < n; i++) {
        dz[i] = g[i] * x0[i];
        s->dx0[i] += g[i] * z[i];
    }
    float *db = s->b[l]->g;
    for (long i = 0; i < rows; i++)
        for (int j = 0; j < d; j++) db[j] += dz[i * d + j];
    if (r == 0) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, (int)rows, 1.0f, xl, d, dz, d,
                    1.0f, s->W[l]->g, d);                      /* dW += x_l^T dz */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, d, d, 1.0f, dz, d,
                    s->W[l]->w, d, 1.0f, g, d);                /* g += dz W^T */
    } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, d, (int)rows, 1.0f, h, r, dz, d,
                    1.0f, s->U[l]->g, d);                      /* dU += h^T dz */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, r, d, 1.0f, dz, d,
                    s->U[l]->w, d, 0.0f, s->dh, r);            /* dh = dz U^T */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, r, (int)rows, 1.0f, xl, d, s->dh,
                    r, 1.0f, s->V[l]->g, r);                   /* dV += x_l^T dh */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, d, r, 1.0f, s->dh, r,
                    s->V[l]->w, r, 1.0f, g, d);                /* g += dh V^T */
    }
}

static void destroy(ts_layer *L)
{
    cross_state *s = L->state;
    if (s) {
        free(s->x);
        free(s->z);
        free(s->h);
        free(s->g);
        free(s->dz);
        free(s->dx0);
        free(s->dh);
    }
    free(s);
    L->state = NULL;
}

/* Declares layer l's parameters. */
static int declare(ts_layer *L, cross_state *s, int l, ts_err *e)
{
    char name[32];
    int d = s->d, r = s->r;
    if (r == 0) {
        snprintf(name, sizeof name, "W%d", l + 1);
        if (!(s->W[l] = ts_param_add(L->ctx, name, d, d, TS_INIT_XAVIER, 0, 0, e))) return -1;
    } else {
        snprintf(name, sizeof name, "V%d", l + 1);
        if (!(s->V[l] = ts_param_add(L->ctx, name, d, r, TS_INIT_XAVIER, 0, 0, e))) return -1;
        snprintf(name, sizeof name, "U%d", l + 1);
        if (!(s->U[l] = ts_param_add(L->ctx, name, r, d, TS_INIT_XAVIER, 0, 0, e))) return -1;
    }
    snprintf(name, sizeof name, "b%d", l + 1);
    return (s->b[l] = ts_param_add(L->ctx, name, 1, d, TS_INIT_ZEROS, 0, 0, e)) ? 0 : -1;
}

static int build_impl(ts_layer *L, const ts_cfg *cfg, ts_err *e)
{
    char sh[96];
    if (ts_compose_need_inputs(L, cfg, "cross", 1, 1, "one input (B, D)", e) ||
        ts_compose_need_f32(L, cfg, "cross", 0, "(B, D)", e))
        return -1;
    const ts_tensor *in = L->in[0];
    if (in->ndim < 2)
        return ts_fail(e, "%s: layer.%s (cross) needs (B, D), got %s", ts_cfg_where(cfg, "input"),
                       L->name, ts_shape_str(in, sh, sizeof sh));
    long layers, rank;
    if (ts_cfg_int(cfg, "layers", &layers, e) || ts_cfg_int(cfg, "rank", &rank, e)) return -1;
    int d = in->dim[in->ndim - 1];
    if (layers < 1 || layers > MAX_CROSS)
        return ts_fail(e, "%s: layer.%s (cross): layers = %ld; use 1 to %d",
                       ts_cfg_where(cfg, "layers"), L->name, layers, MAX_CROSS);
    if (rank < 0 || rank > d)
        return ts_fail(e, "%s: layer.%s (cross): rank = %ld; use 0 (full rank) or 1 to the "
                       "input's width %d", ts_cfg_where(cfg, "rank"), L->name, rank, d);
    cross_state *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(e, "layer.%s: out of memory", L->name);
    L->state = s;
    s->n = (int)layers;
    s->d = d;
    s->r = (int)rank;
    s->max_rows = view_rows(in);
    for (int l = 0; l < s->n; l++)
        if (declare(L, s, l, e)) return -1;
    size_t rd = (size_t)s->max_rows * (size_t)d, rr = (size_t)s->max_rows * (size_t)(s->r ? s->r : 1);
    s->x = malloc(sizeof(float) * rd * (size_t)(s->n > 1 ? s->n - 1 : 1));
    s->z = malloc(sizeof(float) * rd * (size_t)s->n);
    s->g = malloc(sizeof(float) * rd);
    s->dz = malloc(sizeof(float) * rd);
    s->dx0 = malloc(sizeof(float) * rd);
    if (s->r) {
        s->h = malloc(sizeof(float) * rr * (size_t)s->n);
        s->dh = malloc(sizeof(float) * rr);
    }
    if (!s->x || !s->z || !s->g || !s->dz || !s->dx0 || (s->r && (!s->h || !s->dh)))
        return ts_fail(e, "layer.%s: out of memory for %ld rows", L->name, s->max_rows);
    ts_tensor *out = &L->out[0];
    out->dtype = TS_F32;
    out->ndim = in->ndim;
    memcpy(out->dim, in->dim, sizeof out->dim);
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
    (void)phase;
    cross_state *s = L->state;
    long rows = view_rows(L->in[0]);
    if (rows > s->max_rows)
        return ts_fail(e, "layer.%s: batch of %ld rows exceeds the %ld it was built for", L->name,
                       rows, s->max_rows);
    L->out[0].len = L->in[0]->len;
    const float *x0 = L->in[0]->x;
    for (int l = 0; l < s->n; l++) {
        float *y = (float *)x_at(L, s, l + 1, rows);
        float *h = s->r ? s->h + (size_t)l * rows * s->r : NULL;
        cross_layer_forward(s, l, x0, x_at(L, s, l, rows), s->z + (size_t)l * rows * s->d, h, y,
                            rows);
    }
    return 0;
}

static int backward(ts_layer *L, ts_err *e)
{
    (void)e;
    cross_state *s = L->state;
    long rows = view_rows(L->in[0]), n = rows * s->d;
    const float *x0 = L->in[0]->x;
    memcpy(s->g, L->out[0].dx, sizeof(float) * (size_t)n);
    memset(s->dx0, 0, sizeof(float) * (size_t)n);
    for (int l = s->n - 1; l >= 0; l--) {
        const float *h = s->r ? s->h + (size_t)l * rows * s->r : NULL;
        cross_layer_backward(s, l, x0, x_at(L, s, l, rows), s->z + (size_t)l * rows * s->d, h,
                             rows);
    }
    float *dx = L->in[0]->dx;
    if (dx)
        for (long i = 0; i < n; i++) dx[i] += s->g[i] + s->dx0[i];
    return 0;
}

static const ts_key keys[] = {
    {"layers", "int", "3", "cross layers N: crosses up to degree N + 1"},
    {"rank", "int", "0", "0: a full (D, D) matrix per layer; r: low rank V (D, r) U (r, D)"},
    {NULL, NULL, NULL, NULL}};

static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy,
    .check_inputs = "f32 4 6", .check_keys = "layers=2 rank=0", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};

static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "cross", "1.0",
    "DCN-v2 cross network x_{l+1} = x_0 * (x_l W_l + b_l) + x_l, full or low rank", keys, &ops};

const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
