/* moe.h — the pieces the mixture-of-experts layers share (mmoe.c: MMoE and OMoE; ple.c: CGC and
 * PLE): a block of expert MLPs on one input, a block of softmax gates on one input, the gated
 * mixture of expert outputs, and gates.csv.
 *
 *   experts:  H_l = act(H_{l-1} W_l,e + b_l,e) for each expert e, H_0 = X      (B, E*U_l)
 *             layer 1 of every expert is one sgemm (D, E*U_1); deeper layers one per expert
 *   gates:    G gates of n choices on one input: softmax(X Wg + bg) per block   (B, G*n)
 *   mixture:  out (B, U) += sum_x g[x] H_L[:, x]     over the E experts of one block
 *
 * Every function is a plain kernel over explicit buffers and sizes, static in each plugin that
 * includes this header (as vecmath.h). What it is not: a layer. The layers own the wiring
 * (which gate sees which experts, which input feeds which block) and the parameter names.
 *
 * gates.csv (one file per run, every mixture layer and level in it):
 *   layer,level,gate,expert,weight
 *   mix,1,income,0,0.285          the mean weight of gate `income` on expert `0` of level 1
 * A layer's report() rewrites only its own rows: it keeps the rows other layers wrote and puts
 * its own after them, through a temporary file and rename(). So several mixture layers of one
 * experiment all keep theirs, and a report written twice (a resumed run) gives the same file.
 */
#ifndef TS_PLUGIN_MOE_H
#define TS_PLUGIN_MOE_H

#include "tessera.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vecmath.h"

#define MOE_MAXL 8                       /* layers per expert */
enum { MOE_RELU = 0, MOE_TANH, MOE_SIGMOID };
#define MOE_ACTS "relu|tanh|sigmoid"     /* ts_cfg_choice words, in the order of the enum */

/* ---- a block of E expert MLPs on one input ------------------------------------------------ */
typedef struct moe_experts {
    int D, E, L;                         /* input width, experts, layers per expert */
    int U[MOE_MAXL];                     /* width of each layer */
    int act;                             /* MOE_* */
    ts_param *W[MOE_MAXL], *b[MOE_MAXL]; /* W[0] (D, E*U0); W[l] (E*U[l-1], U[l]) with expert e in
                                            rows e*U[l-1]..; b[l] (1, E*U[l]) */
    int cap;                             /* rows the buffers hold */
    float *H[MOE_MAXL], *dH[MOE_MAXL];   /* (cap, E*U[l]) activations and d loss / d them */
} moe_experts;

/* Parses "16" or "32, 16" (a list of widths) into U; n its length. Returns 0 or a message. */
static inline int moe_parse_units(const ts_cfg *cfg, const char *key, int *U, int *n, ts_err *e)
{
    char items[MOE_MAXL + 1][TS_NAME_MAX];
    if (ts_cfg_list(cfg, key, items, MOE_MAXL + 1, n, e) < 0) return -1;
    if (*n < 1 || *n > MOE_MAXL)
        return ts_fail(e, "%s: [%s] %s lists %d layer widths; give 1..%d, like \"16\" or \"32, 16\"",
                       ts_cfg_where(cfg, key), ts_cfg_section(cfg), key, *n, MOE_MAXL);
    for (int l = 0; l < *n; l++) {
        char *end;
        long u = strtol(items[l], &end, 10);
        if (*end || end == items[l] || u < 1 || u > 65536)
            return ts_fail(e, "%s: [%s] %s item \"%s\" is not a width in 1..65536",
                           ts_cfg_where(cfg, key), ts_cfg_section(cfg), key, items[l]);
        U[l] = (int)u;
    }
    return 0;
}

/* Declares the block's parameters "<prefix>W1", "<prefix>b1", ... with He init N(0, 2 / fan_in)
 * (each expert's own fan-in) and zero biases. x->D, E, L, U, act must be set. */
static inline int moe_experts_declare(moe_experts *x, ts_ctx *ctx, const char *prefix, ts_err *e)
{
    for (int l = 0; l < x->L; l++) {
        char wn[TS_NAME_MAX], bn[TS_NAME_MAX];
        int fan = l ? x->U[l - 1] : x->D;
        snprintf(wn, sizeof wn, "%sW%d", prefix, l + 1);
        snprintf(bn, sizeof bn, "%sb%d", prefix, l + 1);
        if (!(x->W[l] = ts_param_add(ctx, wn, l ? x->E * fan : x->D, l ? x->U[l] : x->E * x->U[0],
                                     TS_INIT_NORMAL, sqrtf(2.0f / fan), 0, e)) ||
            !(x->b[l] = ts_param_add(ctx, bn, 1, x->E * x->U[l], TS_INIT_ZEROS, 0, 0, e)))
            return -1;
    }
    return 0;
}

/* Room for B rows in the activation buffers; -1 when out of memory. */
static inline int moe_experts_reserve(moe_experts *x, int B)
{
    if (B <= x->cap) return 0;
    for (int l = 0; l < x->L; l++) {
        size_t n = (size_t)B * x->E * x->U[l] * sizeof(float);
        float *h = realloc(x->H[l], n), *dh = h ? realloc(x->dH[l], n) : NULL;
        if (h) x->H[l] = h;
        if (dh) x->dH[l] = dh;
        if (!h || !dh) return -1;
    }
    x->cap = B;
    return 0;
}

static inline void moe_experts_free(moe_experts *x)
{
    for (int l = 0; l < MOE_MAXL; l++) { free(x->H[l]); free(x->dH[l]); x->H[l] = x->dH[l] = NULL; }
    x->cap = 0;
}

/* y (B, n) = act(y + b), y holding the product; b (n). TS_VEC (vecmath.h): this and the other
 * elementwise kernels below were half of MMoE's layer time as scalar loops (perf, issue 17);
 * vectorised they compute the same operations in the same order per element, same bits. */
TS_VEC static inline void moe_bias_act(float *restrict y, const float *restrict b, int B, int n, int act)
{
    if (act == MOE_RELU) {
        for (int i = 0; i < B; i++, y += n)
            for (int j = 0; j < n; j++) {
                float v = y[j] + b[j];
                y[j] = v > 0 ? v : 0;
            }
        return;
    }
    for (int i = 0; i < B; i++, y += n) {
        for (int j = 0; j < n; j++) y[j] += b[j];
        if (act == MOE_TANH) ts_vec_tanh(y, y, n);
        else for (int j = 0; j < n; j++) y[j] = 1.0f / (1.0f + expf(-y[j]));
    }
}

/* H_L of every expert from X (B, D). */
static inline void moe_experts_forward(moe_experts *x, const float *X, int B)
{
    int E = x->E;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, E * x->U[0], x->D, 1.0f, X, x->D,
                x->W[0]->w, E * x->U[0], 0.0f, x->H[0], E * x->U[0]);
    moe_bias_act(x->H[0], x->b[0]->w, B, E * x->U[0], x->act);
    for (int l = 1; l < x->L; l++) {
        int ui = x->U[l - 1], uo = x->U[l];
        for (int k = 0; k < E; k++)                   /* H[l][:, k] (B, uo) = H[l-1][:, k] (B, ui) W_k (ui, uo) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, uo, ui, 1.0f,
                        x->H[l - 1] + k * ui, E * ui, x->W[l]->w + (size_t)k * ui * uo, uo, 0.0f,
                        x->H[l] + k * uo, E * uo);
        moe_bias_act(x->H[l], x->b[l]->w, B, E * uo, x->act);
    }
}

/* dA (B, n) = dH * act'(H), act' written in terms of the output; b->g += the column sums. */
TS_VEC static inline void moe_act_backward(float *restrict dA, const float *restrict H,
                                           float *restrict bg, int B, int n, int act)
{
    if (act == MOE_RELU) {
        for (int i = 0; i < B; i++)
            for (int j = 0; j < n; j++) {
                size_t c = (size_t)i * n + j;
                float v = H[c] > 0 ? dA[c] : 0;
                dA[c] = v;
                bg[j] += v;
            }
        return;
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < n; j++) {
            size_t c = (size_t)i * n + j;
            float h = H[c], d = act == MOE_RELU ? (h > 0 ? 1.0f : 0.0f)
                              : act == MOE_TANH ? 1.0f - h * h : h * (1.0f - h);
            float v = act == MOE_RELU ? (h > 0 ? dA[c] : 0) : dA[c] * d;
            dA[c] = v;
            bg[j] += v;
        }
}

/* From dH[L-1] (d loss / d H_L, filled by the mixtures): the parameters' gradients, and
 * dX (B, D) += d loss / d X when dX is not NULL. dH of every layer is used as scratch. */
static inline void moe_experts_backward(moe_experts *x, const float *X, float *dX, int B)
{
    int E = x->E, D = x->D;
    for (int l = x->L - 1; l >= 0; l--) {
        int uo = x->U[l], n = E * uo;
        float *dA = x->dH[l];                         /* (B, E*uo) */
        moe_act_backward(dA, x->H[l], x->b[l]->g, B, n, x->act);
        if (l == 0) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, n, B, 1.0f, X, D, dA, n, 1.0f,
                        x->W[0]->g, n);               /* dW1 (D, E*U0) += X^T dA */
            if (dX)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, D, n, 1.0f, dA, n,
                            x->W[0]->w, n, 1.0f, dX, D);
            break;
        }
        int ui = x->U[l - 1];
        for (int k = 0; k < E; k++) {
            const float *Hin = x->H[l - 1] + k * ui;  /* (B, ui), row stride E*ui */
            size_t wo = (size_t)k * ui * uo;          /* expert k's block (ui, uo) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ui, uo, B, 1.0f, Hin, E * ui,
                        dA + k * uo, n, 1.0f, x->W[l]->g + wo, uo);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, ui, uo, 1.0f, dA + k * uo, n,
                        x->W[l]->w + wo, uo, 0.0f, x->dH[l - 1] + k * ui, E * ui);
        }
    }
}

/* ---- a block of G softmax gates of n choices on one input --------------------------------- */
typedef struct moe_gates {
    int D, G, n;                         /* input width, gates, choices per gate */
    ts_param *W, *b;                     /* (D, G*n), (1, G*n) */
    int cap;
    float *g;                            /* (cap, G*n) softmax weights */
    float *dg;                           /* (cap, G*n) d loss / d g, then d loss / d logits */
    double *sum;                         /* (G*n) gate weights summed over one test pass */
    long count;                          /* test rows summed */
} moe_gates;

/* Declares "<prefix>Wg" (Xavier over one gate's (D, n)) and "<prefix>bg" (zeros). */
static inline int moe_gates_declare(moe_gates *q, ts_ctx *ctx, const char *prefix, ts_err *e)
{
    char wn[TS_NAME_MAX], bn[TS_NAME_MAX];
    snprintf(wn, sizeof wn, "%sWg", prefix);
    snprintf(bn, sizeof bn, "%sbg", prefix);
    if (!(q->W = ts_param_add(ctx, wn, q->D, q->G * q->n, TS_INIT_UNIFORM,
                              sqrtf(6.0f / (q->D + q->n)), 0, e)) ||
        !(q->b = ts_param_add(ctx, bn, 1, q->G * q->n, TS_INIT_ZEROS, 0, 0, e)))
        return -1;
    if (!q->sum && !(q->sum = calloc((size_t)q->G * q->n, sizeof(double))))
        return ts_fail(e, "out of memory");
    return 0;
}

static inline int moe_gates_reserve(moe_gates *q, int B)
{
    if (B <= q->cap) return 0;
    size_t n = (size_t)B * q->G * q->n * sizeof(float);
    float *g = realloc(q->g, n), *dg = g ? realloc(q->dg, n) : NULL;
    if (g) q->g = g;
    if (dg) q->dg = dg;
    if (!g || !dg) return -1;
    q->cap = B;
    return 0;
}

static inline void moe_gates_free(moe_gates *q)
{
    free(q->g); free(q->dg); free(q->sum);
    q->g = q->dg = NULL;
    q->sum = NULL;
    q->cap = 0;
}

/* g = softmax(X W + b) per block of n; in TS_TEST the weights are summed for report(), and a
 * test pass that follows another phase (`fresh`) starts the sums again. */
static inline void moe_gates_forward(moe_gates *q, const float *X, int B, ts_phase phase, int fresh)
{
    int Gn = q->G * q->n, n = q->n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, Gn, q->D, 1.0f, X, q->D, q->W->w, Gn,
                0.0f, q->g, Gn);
    for (int i = 0; i < B; i++)
        for (int t = 0; t < q->G; t++) {
            float *z = q->g + (size_t)i * Gn + t * n, mx = -INFINITY, s = 0;
            for (int x = 0; x < n; x++) { z[x] += q->b->w[t * n + x]; if (z[x] > mx) mx = z[x]; }
            for (int x = 0; x < n; x++) s += (z[x] = expf(z[x] - mx));
            for (int x = 0; x < n; x++) z[x] /= s;
        }
    if (phase != TS_TEST) return;
    if (fresh) { memset(q->sum, 0, (size_t)Gn * sizeof(double)); q->count = 0; }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < Gn; j++) q->sum[j] += q->g[(size_t)i * Gn + j];
    q->count += B;
}

/* From dg (d loss / d g, filled by the mixtures): the softmax's backward in place,
 * dz_x = g_x (dg_x - sum_y g_y dg_y); bg, Wg gradients; dX (B, D) += dZ Wg^T unless NULL. */
static inline void moe_gates_backward(moe_gates *q, const float *X, float *dX, int B)
{
    int Gn = q->G * q->n, n = q->n;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < q->G; t++) {
            const float *gi = q->g + (size_t)i * Gn + t * n;
            float *d = q->dg + (size_t)i * Gn + t * n, dot = 0;
            for (int x = 0; x < n; x++) dot += gi[x] * d[x];
            for (int x = 0; x < n; x++) { d[x] = gi[x] * (d[x] - dot); q->b->g[t * n + x] += d[x]; }
        }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, q->D, Gn, B, 1.0f, X, q->D, q->dg, Gn, 1.0f,
                q->W->g, Gn);                         /* dWg (D, G*n) += X^T dZ */
    if (dX)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, q->D, Gn, 1.0f, q->dg, Gn, q->W->w,
                    Gn, 1.0f, dX, q->D);              /* dX (B, D) += dZ Wg^T */
}

/* ---- the mixture ------------------------------------------------------------------------------ */
/* out[i] (U) (=, or += when add) sum_x g[i*gs + x] H[i, x] (U) over E experts; H (B, E*U). */
TS_VEC static inline void moe_mix_forward(float *restrict out, int B, int U, const float *restrict g,
                                          int gs, const float *restrict H, int E, int add)
{
    for (int i = 0; i < B; i++) {
        float *o = out + (size_t)i * U;
        const float *gi = g + (size_t)i * gs, *h = H + (size_t)i * E * U;
        if (!add) memset(o, 0, (size_t)U * sizeof(float));
        for (int x = 0; x < E; x++)
            for (int u = 0; u < U; u++) o[u] += gi[x] * h[x * U + u];
    }
}

/* The mixture's backward: dg[i*gs + x] += <dout[i], H[i, x]>, dH[i, x] += g[i*gs + x] dout[i].
 * Each dot stays a scalar sum in order u = 0..U-1, but four experts' dots run side by side
 * (four independent chains instead of one chain of E*U dependent additions, the same values);
 * the dH update vectorises. */
TS_VEC static inline void moe_mix_backward(const float *restrict dout, int B, int U,
                                           const float *restrict g, float *restrict dg, int gs,
                                           const float *restrict H, float *restrict dH, int E)
{
    for (int i = 0; i < B; i++) {
        const float *dy = dout + (size_t)i * U, *h = H + (size_t)i * E * U, *gi = g + (size_t)i * gs;
        float *dgi = dg + (size_t)i * gs, *dh = dH + (size_t)i * E * U;
        int x = 0;
        for (; x + 4 <= E; x += 4) {
            const float *h0 = h + x * U, *h1 = h0 + U, *h2 = h1 + U, *h3 = h2 + U;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int u = 0; u < U; u++) {
                s0 += dy[u] * h0[u];
                s1 += dy[u] * h1[u];
                s2 += dy[u] * h2[u];
                s3 += dy[u] * h3[u];
            }
            dgi[x] += s0;
            dgi[x + 1] += s1;
            dgi[x + 2] += s2;
            dgi[x + 3] += s3;
        }
        for (; x < E; x++) {
            float s = 0;
            for (int u = 0; u < U; u++) s += dy[u] * h[x * U + u];
            dgi[x] += s;
        }
        for (x = 0; x < E; x++)
            for (int u = 0; u < U; u++) dh[x * U + u] += gi[x] * dy[u];
    }
}

/* ---- gates.csv ---------------------------------------------------------------------------------- */
/* Rows of gates.csv that a layer other than `layer` wrote (header dropped), malloc'ed into *keep;
 * nothing when there is no file, it is not a regular file, or its header is not this format's. */
static inline int moe_gates_others(const char *path, const char *layer, char **keep, size_t *nkeep)
{
    *keep = NULL;
    *nkeep = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    struct stat st;
    FILE *f = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fdopen(fd, "r") : NULL;
    if (!f) { close(fd); return 0; }   /* not a file of ours: replaced below */
    char line[1024];
    size_t n = strlen(layer), cap = 0;
    int ours = fgets(line, sizeof line, f) && !strcmp(line, "layer,level,gate,expert,weight\n");
    while (ours && fgets(line, sizeof line, f)) {
        if (!strncmp(line, layer, n) && line[n] == ',') continue;
        size_t k = strlen(line);
        if (*nkeep + k + 1 > cap) {
            cap = 2 * (*nkeep + k + 1);
            char *t = realloc(*keep, cap);
            if (!t) { fclose(f); free(*keep); *keep = NULL; return -1; }
            *keep = t;
        }
        memcpy(*keep + *nkeep, line, k + 1);
        *nkeep += k;
    }
    fclose(f);
    return 0;
}

/* Writes gates.csv in dir: the other layers' rows, then `rows` (this layer's, each line
 * "layer,level,gate,expert,weight\n"), through dir/gates.csv.tmpPID and rename(). */
static inline int moe_gates_write(const char *dir, const char *layer, const char *rows, ts_err *e)
{
    char path[4096], tmp[4128];
    snprintf(path, sizeof path, "%s/gates.csv", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    char *keep;
    size_t nkeep;
    if (moe_gates_others(path, layer, &keep, &nkeep))
        return ts_fail(e, "layer %s: cannot read %s: %s; check the results folder", layer, path,
                       strerror(errno ? errno : ENOMEM));
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(keep);
        return ts_fail(e, "layer %s: cannot write %s: %s; check the results folder", layer, tmp,
                       strerror(errno));
    }
    int bad = fputs("layer,level,gate,expert,weight\n", f) == EOF ||
              (nkeep && fwrite(keep, 1, nkeep, f) != nkeep) || fputs(rows, f) == EOF;
    free(keep);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        int er = errno;
        unlink(tmp);
        return ts_fail(e, "layer %s: error writing %s: %s; check the free space of the results "
                       "folder", layer, path, strerror(er));
    }
    return 0;
}

/* Appends "layer,level,gate,expert,weight\n" to a growing text (*s, *n bytes, *cap room). */
static inline int moe_row(char **s, size_t *n, size_t *cap, const char *layer, int level, const char *gate,
                   const char *expert, double w)
{
    char line[4 * TS_NAME_MAX + 64];
    int k = snprintf(line, sizeof line, "%s,%d,%s,%s,%.6f\n", layer, level, gate, expert, w);
    if (k < 0 || (size_t)k >= sizeof line) return -1;
    if (*n + (size_t)k + 1 > *cap) {
        size_t c = *cap ? 2 * *cap : 4096;
        while (c < *n + (size_t)k + 1) c *= 2;
        char *t = realloc(*s, c);
        if (!t) return -1;
        *s = t;
        *cap = c;
    }
    memcpy(*s + *n, line, (size_t)k + 1);
    *n += (size_t)k;
    return 0;
}

#endif /* TS_PLUGIN_MOE_H */
