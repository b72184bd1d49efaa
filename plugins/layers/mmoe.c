/* mmoe.c — Multi-gate Mixture-of-Experts (Ma et al., KDD 2018) and its one-gate variant OMoE,
 * the layer that lets several tasks share experts but weigh them per task.
 *
 *   expert_e(x) = relu(... relu(relu(x W1_e + b1_e) W2_e + b2_e) ...)     e = 1..E, width U_L
 *   mmoe: g_k(x) = softmax(x Wg_k + bg_k) over the E experts, one gate per task k
 *   omoe: g(x)   = softmax(x Wg + bg), one gate shared by every task
 *   out_k = sum_e g_k,e(x) expert_e(x)                                  (B, U_L), named after task k
 *
 * Input F32 (B, D). Keys: experts, units ("16", or "32,16" for two ReLU layers per expert),
 * tasks (the output names: `input = mix.income`). Every expert's first layer is one sgemm
 * (D, E*U1); deeper layers are one sgemm per expert on strided blocks; all gates are one sgemm
 * (D, G*E). During TS_TEST forwards it averages each task's gate weights; report() writes them
 * to gates.csv (task,expert,weight). Not a sparse (top-k) MoE: every expert runs on every row. */
#include "tessera.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXL 8                       /* layers per expert */

typedef struct mmoe {
    int omoe;                        /* 1: one gate for all tasks */
    int D, E, K, G, L;               /* input width, experts, tasks, gates (K or 1), layers */
    int U[MAXL];                     /* width of each expert layer */
    ts_param *W[MAXL], *b[MAXL];     /* W[0] (D, E*U0); W[l] (E*U[l-1], U[l]) expert e in rows
                                        e*U[l-1]..; b[l] (1, E*U[l]) */
    ts_param *Wg, *bg;               /* (D, G*E), (1, G*E) */
    int cap;                         /* rows the buffers hold */
    float *H[MAXL], *dH[MAXL];       /* (cap, E*U[l]) post-ReLU activations and their gradient */
    float *gate;                     /* (cap, G*E) softmax weights */
    float *dgate;                    /* (cap, G*E) d loss / d gate, then d loss / d logits */
    double *gsum;                    /* (G*E) sum of gate weights over TS_TEST rows */
    long gcount;                     /* TS_TEST rows summed */
    ts_phase last;                   /* phase of the previous forward: a new test pass resets */
} mmoe;

static int ensure(mmoe *m, int B)
{
    if (B <= m->cap) return 0;
    for (int l = 0; l < m->L; l++) {
        size_t n = (size_t)B * m->E * m->U[l] * sizeof(float);
        float *h = realloc(m->H[l], n), *dh = h ? realloc(m->dH[l], n) : NULL;
        if (h) m->H[l] = h;
        if (dh) m->dH[l] = dh;
        if (!h || !dh) return -1;
    }
    size_t n = (size_t)B * m->G * m->E * sizeof(float);
    float *g = realloc(m->gate, n), *dg = g ? realloc(m->dgate, n) : NULL;
    if (g) m->gate = g;
    if (dg) m->dgate = dg;
    if (!g || !dg) return -1;
    m->cap = B;
    return 0;
}

static void destroy(ts_layer *Ly)
{
    mmoe *m = Ly->state;
    if (!m) return;
    for (int l = 0; l < MAXL; l++) { free(m->H[l]); free(m->dH[l]); }
    free(m->gate); free(m->dgate); free(m->gsum);
    free(m);
    Ly->state = NULL;
}

static int build_common(ts_layer *Ly, const ts_cfg *cfg, int omoe, ts_err *e)
{
    const char *sec = ts_cfg_section(cfg);
    if (Ly->nin != 1 || Ly->in[0]->dtype != TS_F32 || Ly->in[0]->ndim != 2) {
        char s[64];
        return ts_fail(e, "%s: %s takes one F32 input (B, D), got %d input(s)%s%s; put a concat "
                       "layer in front", sec, omoe ? "omoe" : "mmoe", Ly->nin, Ly->nin ? ", the first " : "",
                       Ly->nin ? ts_shape_str(Ly->in[0], s, sizeof s) : "");
    }
    long E;
    char units[MAXL + 1][TS_NAME_MAX], tasks[TS_MAX_OUT + 1][TS_NAME_MAX];
    int nu, nt;
    if (ts_cfg_int(cfg, "experts", &E, e) < 0) return -1;
    if (ts_cfg_list(cfg, "units", units, MAXL + 1, &nu, e) < 0 ||
        ts_cfg_list(cfg, "tasks", tasks, TS_MAX_OUT + 1, &nt, e) < 0)
        return -1;
    if (E < 1 || E > 4096)
        return ts_fail(e, "%s: experts = %ld; use 1..4096 (%s)", sec, E, ts_cfg_where(cfg, "experts"));
    if (nu < 1 || nu > MAXL)
        return ts_fail(e, "%s: units lists %d layer widths; give 1..%d, like \"16\" or \"32, 16\" (%s)",
                       sec, nu, MAXL, ts_cfg_where(cfg, "units"));
    if (nt < 1 || nt > TS_MAX_OUT)
        return ts_fail(e, "%s: tasks lists %d names; give 1..%d, one per head (%s)", sec, nt,
                       TS_MAX_OUT, ts_cfg_where(cfg, "tasks"));
    mmoe *m = calloc(1, sizeof *m);
    if (!m) return ts_fail(e, "%s: out of memory", sec);
    Ly->state = m;
    m->omoe = omoe;
    m->D = Ly->in[0]->dim[1];
    m->E = (int)E;
    m->K = nt;
    m->G = omoe ? 1 : nt;
    m->L = nu;
    m->last = TS_TRAIN;
    for (int l = 0; l < nu; l++) {
        char *end;
        long u = strtol(units[l], &end, 10);
        if (*end || u < 1 || u > 65536) {
            destroy(Ly);
            return ts_fail(e, "%s: units item \"%s\" is not a width in 1..65536 (%s)", sec,
                           units[l], ts_cfg_where(cfg, "units"));
        }
        m->U[l] = (int)u;
    }
    for (int k = 0; k < nt; k++) {
        for (int j = 0; j < k; j++)
            if (strcmp(tasks[j], tasks[k]) == 0) {
                destroy(Ly);
                return ts_fail(e, "%s: task \"%s\" is listed twice in tasks (%s)", sec, tasks[k],
                               ts_cfg_where(cfg, "tasks"));
            }
        snprintf(Ly->out_name[k], TS_NAME_MAX, "%s", tasks[k]);
        Ly->out[k].dtype = TS_F32;
        Ly->out[k].ndim = 2;
        Ly->out[k].dim[0] = Ly->in[0]->dim[0];
        Ly->out[k].dim[1] = m->U[nu - 1];
    }
    Ly->nout = nt;
    /* He init N(0, 2 / fan_in) with each expert's own fan-in; gates Xavier over (D, E). */
    for (int l = 0; l < nu; l++) {
        char wn[16], bn[16];
        int fan = l ? m->U[l - 1] : m->D;
        snprintf(wn, sizeof wn, "W%d", l + 1);
        snprintf(bn, sizeof bn, "b%d", l + 1);
        if (!(m->W[l] = ts_param_add(Ly->ctx, wn, l ? m->E * fan : m->D, l ? m->U[l] : m->E * m->U[0],
                                     TS_INIT_NORMAL, sqrtf(2.0f / fan), 0, e)) ||
            !(m->b[l] = ts_param_add(Ly->ctx, bn, 1, m->E * m->U[l], TS_INIT_ZEROS, 0, 0, e))) {
            destroy(Ly);
            return -1;
        }
    }
    if (!(m->Wg = ts_param_add(Ly->ctx, "Wg", m->D, m->G * m->E, TS_INIT_UNIFORM,
                               sqrtf(6.0f / (m->D + m->E)), 0, e)) ||
        !(m->bg = ts_param_add(Ly->ctx, "bg", 1, m->G * m->E, TS_INIT_ZEROS, 0, 0, e))) {
        destroy(Ly);
        return -1;
    }
    if (!(m->gsum = calloc((size_t)m->G * m->E, sizeof(double))) || ensure(m, Ly->in[0]->dim[0]) < 0) {
        destroy(Ly);
        return ts_fail(e, "%s: out of memory", sec);
    }
    return 0;
}

static int build_mmoe(ts_layer *Ly, const ts_cfg *cfg, ts_err *e) { return build_common(Ly, cfg, 0, e); }
static int build_omoe(ts_layer *Ly, const ts_cfg *cfg, ts_err *e) { return build_common(Ly, cfg, 1, e); }

/* y (B, n) = relu(y + b) where y already holds the product; b (n). */
static void bias_relu(float *y, const float *b, int B, int n)
{
    for (int i = 0; i < B; i++, y += n)
        for (int j = 0; j < n; j++) {
            float v = y[j] + b[j];
            y[j] = v > 0 ? v : 0;
        }
}

static int forward(ts_layer *Ly, ts_phase phase, ts_err *e)
{
    mmoe *m = Ly->state;
    int B = Ly->in[0]->dim[0], D = m->D, E = m->E, GE = m->G * m->E, U = m->U[m->L - 1];
    const float *X = Ly->in[0]->x;                    /* (B, D) */
    if (ensure(m, B) < 0) return ts_fail(e, "layer %s: out of memory for %d rows", Ly->name, B);
    /* Experts: layer 1 of every expert in one product, deeper layers per expert block. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, E * m->U[0], D, 1.0f, X, D,
                m->W[0]->w, E * m->U[0], 0.0f, m->H[0], E * m->U[0]);
    bias_relu(m->H[0], m->b[0]->w, B, E * m->U[0]);
    for (int l = 1; l < m->L; l++) {
        int ui = m->U[l - 1], uo = m->U[l];
        for (int x = 0; x < E; x++)                   /* H[l][:, x] (B, uo) = H[l-1][:, x] (B, ui) W_x (ui, uo) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, uo, ui, 1.0f,
                        m->H[l - 1] + x * ui, E * ui, m->W[l]->w + (size_t)x * ui * uo, uo, 0.0f,
                        m->H[l] + x * uo, E * uo);
        bias_relu(m->H[l], m->b[l]->w, B, E * uo);
    }
    /* Gates: logits (B, G*E) = X Wg + bg, then a softmax over each block of E. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, GE, D, 1.0f, X, D, m->Wg->w, GE,
                0.0f, m->gate, GE);
    for (int i = 0; i < B; i++)
        for (int g = 0; g < m->G; g++) {
            float *z = m->gate + (size_t)i * GE + g * E, mx = -INFINITY, s = 0;
            for (int x = 0; x < E; x++) { z[x] += m->bg->w[g * E + x]; if (z[x] > mx) mx = z[x]; }
            for (int x = 0; x < E; x++) s += (z[x] = expf(z[x] - mx));
            for (int x = 0; x < E; x++) z[x] /= s;
        }
    /* Mix: out_k[i] (U) = sum_x gate[i, g(k), x] H_L[i, x] (U). */
    const float *HL = m->H[m->L - 1];                 /* (B, E*U) */
    for (int k = 0; k < m->K; k++) {
        float *out = Ly->out[k].x;                    /* (B, U) */
        const float *gk = m->gate + (m->omoe ? 0 : k * E);
        for (int i = 0; i < B; i++) {
            float *o = out + (size_t)i * U;
            const float *gi = gk + (size_t)i * GE, *h = HL + (size_t)i * E * U;
            memset(o, 0, (size_t)U * sizeof(float));
            for (int x = 0; x < E; x++)
                for (int u = 0; u < U; u++) o[u] += gi[x] * h[x * U + u];
        }
    }
    /* Gate introspection: mean gate weights over one whole test pass. */
    if (phase == TS_TEST) {
        if (m->last != TS_TEST) { memset(m->gsum, 0, (size_t)GE * sizeof(double)); m->gcount = 0; }
        for (int i = 0; i < B; i++)
            for (int j = 0; j < GE; j++) m->gsum[j] += m->gate[(size_t)i * GE + j];
        m->gcount += B;
    }
    m->last = phase;
    return 0;
}

static int backward(ts_layer *Ly, ts_err *e)
{
    mmoe *m = Ly->state;
    int B = Ly->in[0]->dim[0], D = m->D, E = m->E, GE = m->G * m->E, U = m->U[m->L - 1], L = m->L;
    const float *X = Ly->in[0]->x;                    /* (B, D) */
    float *dX = Ly->in[0]->dx;                        /* (B, D) or NULL */
    const float *HL = m->H[L - 1];                    /* (B, E*U) */
    float *dHL = m->dH[L - 1];                        /* (B, E*U) */
    (void)e;
    /* d gate[i, g, x] = sum_{k in g} dout_k[i] . H_L[i, x];  dH_L[i, x] = sum_k gate[i, g(k), x] dout_k[i] */
    memset(m->dgate, 0, (size_t)B * GE * sizeof(float));
    memset(dHL, 0, (size_t)B * E * U * sizeof(float));
    for (int k = 0; k < m->K; k++) {
        const float *dout = Ly->out[k].dx;           /* (B, U) */
        if (!dout) continue;
        int goff = m->omoe ? 0 : k * E;
        for (int i = 0; i < B; i++) {
            const float *dy = dout + (size_t)i * U, *h = HL + (size_t)i * E * U;
            const float *gi = m->gate + (size_t)i * GE + goff;
            float *dgi = m->dgate + (size_t)i * GE + goff, *dh = dHL + (size_t)i * E * U;
            for (int x = 0; x < E; x++) {
                float s = 0;
                for (int u = 0; u < U; u++) { s += dy[u] * h[x * U + u]; dh[x * U + u] += gi[x] * dy[u]; }
                dgi[x] += s;
            }
        }
    }
    /* Softmax: dz_x = g_x (dg_x - sum_y g_y dg_y), in place; bg gets the column sums. */
    for (int i = 0; i < B; i++)
        for (int g = 0; g < m->G; g++) {
            const float *gi = m->gate + (size_t)i * GE + g * E;
            float *d = m->dgate + (size_t)i * GE + g * E, dot = 0;
            for (int x = 0; x < E; x++) dot += gi[x] * d[x];
            for (int x = 0; x < E; x++) { d[x] = gi[x] * (d[x] - dot); m->bg->g[g * E + x] += d[x]; }
        }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, GE, B, 1.0f, X, D, m->dgate, GE, 1.0f,
                m->Wg->g, GE);                        /* dWg (D, GE) += X^T dZ */
    if (dX)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, D, GE, 1.0f, m->dgate, GE, m->Wg->w,
                    GE, 1.0f, dX, D);                 /* dX (B, D) += dZ Wg^T */
    /* Experts, last layer first: dA = dH * [H > 0]; db += colsum dA; dW += H_in^T dA; dH_in = dA W^T. */
    for (int l = L - 1; l >= 0; l--) {
        int uo = m->U[l], n = E * uo;
        float *dA = m->dH[l];                         /* (B, E*uo) */
        const float *H = m->H[l];
        for (int i = 0; i < B; i++)
            for (int j = 0; j < n; j++) {
                float v = H[(size_t)i * n + j] > 0 ? dA[(size_t)i * n + j] : 0;
                dA[(size_t)i * n + j] = v;
                m->b[l]->g[j] += v;
            }
        if (l == 0) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, n, B, 1.0f, X, D, dA, n, 1.0f,
                        m->W[0]->g, n);               /* dW1 (D, E*U0) += X^T dA */
            if (dX)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, D, n, 1.0f, dA, n,
                            m->W[0]->w, n, 1.0f, dX, D);
            break;
        }
        int ui = m->U[l - 1];
        for (int x = 0; x < E; x++) {
            const float *Hin = m->H[l - 1] + x * ui;  /* (B, ui), row stride E*ui */
            size_t wo = (size_t)x * ui * uo;          /* expert x's block (ui, uo) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ui, uo, B, 1.0f, Hin, E * ui,
                        dA + x * uo, n, 1.0f, m->W[l]->g + wo, uo);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, ui, uo, 1.0f, dA + x * uo, n,
                        m->W[l]->w + wo, uo, 0.0f, m->dH[l - 1] + x * ui, E * ui);
        }
    }
    return 0;
}

/* gates.csv: task,expert,weight — each task's mean gate weight per expert over the test pass. */
static int report(ts_layer *Ly, const char *dir, ts_err *e)
{
    mmoe *m = Ly->state;
    if (!dir || !*dir || m->gcount == 0) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/gates.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) return ts_fail(e, "layer %s: cannot write %s: %s; check the results folder", Ly->name,
                           path, strerror(errno));
    fprintf(f, "task,expert,weight\n");
    for (int k = 0; k < m->K; k++)
        for (int x = 0; x < m->E; x++)
            fprintf(f, "%s,%d,%.6f\n", Ly->out_name[k], x,
                    m->gsum[(m->omoe ? 0 : k * m->E) + x] / (double)m->gcount);
    if (fclose(f) != 0) return ts_fail(e, "layer %s: error writing %s: %s", Ly->name, path, strerror(errno));
    return 0;
}

static const ts_key keys[] = {
    {"experts", "int", "8", "number of experts"},
    {"units", "list", "16", "widths of each expert's ReLU layers, like 16 or 32, 16"},
    {"tasks", "list", NULL, "task names; output k is addressed as LAYER.TASK"},
    {NULL, NULL, NULL, NULL}};
static const ts_layer_ops mmoe_ops = {.size = sizeof(ts_layer_ops),
    .build = build_mmoe, .forward = forward, .backward = backward,
    .destroy = destroy, .report = report, .check_inputs = "f32 5 7",
    .check_keys = "experts=3 units=4 tasks=a,b"};
static const ts_layer_ops omoe_ops = {.size = sizeof(ts_layer_ops),
    .build = build_omoe, .forward = forward, .backward = backward,
    .destroy = destroy, .report = report, .check_inputs = "f32 5 7",
    .check_keys = "experts=3 units=4 tasks=a,b"};
static const ts_plugin plugins[] = {
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "mmoe", "1.0",
     "multi-gate mixture of experts: one softmax gate per task over shared ReLU experts", keys, &mmoe_ops},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "omoe", "1.0",
     "one-gate mixture of experts: a single softmax gate shared by every task", keys, &omoe_ops}};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i < 2 ? &plugins[i] : NULL; }
