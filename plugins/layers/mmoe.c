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
 * to gates.csv as level 1 of this layer (moe.h, which holds the kernels this file shares with
 * ple.c). Not a sparse (top-k) MoE: every expert runs on every row. */
#include "tessera.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"

typedef struct mmoe {
    int omoe;                        /* 1: one gate for all tasks */
    int K;                           /* tasks */
    moe_experts ex;                  /* the E shared experts on the input (B, D) */
    moe_gates gates;                 /* G = K gates (mmoe) or 1 (omoe) of E choices, on the input */
    ts_phase last;                   /* phase of the previous forward: a new test pass resets */
} mmoe;

static void destroy(ts_layer *Ly)
{
    mmoe *m = Ly->state;
    if (!m) return;
    moe_experts_free(&m->ex);
    moe_gates_free(&m->gates);
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
    char tasks[TS_MAX_OUT + 1][TS_NAME_MAX];
    int nu, nt, U[MOE_MAXL];
    if (ts_cfg_int(cfg, "experts", &E, e) < 0) return -1;
    if (moe_parse_units(cfg, "units", U, &nu, e) < 0 ||
        ts_cfg_list(cfg, "tasks", tasks, TS_MAX_OUT + 1, &nt, e) < 0)
        return -1;
    if (E < 1 || E > 4096)
        return ts_fail(e, "%s: [%s] experts = %ld; use 1..4096", ts_cfg_where(cfg, "experts"), sec, E);
    if (nt < 1 || nt > TS_MAX_OUT)
        return ts_fail(e, "%s: [%s] tasks lists %d names; give 1..%d, one per head",
                       ts_cfg_where(cfg, "tasks"), sec, nt, TS_MAX_OUT);
    for (int k = 0; k < nt; k++)
        for (int j = 0; j < k; j++)
            if (strcmp(tasks[j], tasks[k]) == 0)
                return ts_fail(e, "%s: [%s] task \"%s\" is listed twice in tasks",
                               ts_cfg_where(cfg, "tasks"), sec, tasks[k]);
    mmoe *m = calloc(1, sizeof *m);
    if (!m) return ts_fail(e, "%s: out of memory", sec);
    Ly->state = m;
    m->omoe = omoe;
    m->K = nt;
    m->last = TS_TRAIN;
    m->ex.D = Ly->in[0]->dim[1];
    m->ex.E = (int)E;
    m->ex.L = nu;
    m->ex.act = MOE_RELU;
    memcpy(m->ex.U, U, sizeof U);
    m->gates.D = m->ex.D;
    m->gates.G = omoe ? 1 : nt;
    m->gates.n = (int)E;
    for (int k = 0; k < nt; k++) {
        snprintf(Ly->out_name[k], TS_NAME_MAX, "%s", tasks[k]);
        Ly->out[k].dtype = TS_F32;
        Ly->out[k].ndim = 2;
        Ly->out[k].dim[0] = Ly->in[0]->dim[0];
        Ly->out[k].dim[1] = U[nu - 1];
    }
    Ly->nout = nt;
    /* W1, b1, ..., WL, bL, Wg, bg (the names and order checkpoints and params.bin hold). */
    if (moe_experts_declare(&m->ex, Ly->ctx, "", e) || moe_gates_declare(&m->gates, Ly->ctx, "", e)) {
        destroy(Ly);
        return -1;
    }
    int B = Ly->in[0]->dim[0];
    if (moe_experts_reserve(&m->ex, B) || moe_gates_reserve(&m->gates, B)) {
        destroy(Ly);
        return ts_fail(e, "%s: out of memory", sec);
    }
    return 0;
}

static int build_mmoe(ts_layer *Ly, const ts_cfg *cfg, ts_err *e) { return build_common(Ly, cfg, 0, e); }
static int build_omoe(ts_layer *Ly, const ts_cfg *cfg, ts_err *e) { return build_common(Ly, cfg, 1, e); }

static int forward(ts_layer *Ly, ts_phase phase, ts_err *e)
{
    mmoe *m = Ly->state;
    int B = Ly->in[0]->dim[0], E = m->ex.E, GE = m->gates.G * E, U = m->ex.U[m->ex.L - 1];
    const float *X = Ly->in[0]->x;                    /* (B, D) */
    if (moe_experts_reserve(&m->ex, B) || moe_gates_reserve(&m->gates, B))
        return ts_fail(e, "layer %s: out of memory for %d rows", Ly->name, B);
    moe_experts_forward(&m->ex, X, B);
    /* Gates: (B, G*E) softmax blocks; the means over one whole test pass for report(). */
    moe_gates_forward(&m->gates, X, B, phase, m->last != TS_TEST);
    /* Mix: out_k[i] (U) = sum_x gate[i, g(k), x] H_L[i, x] (U). */
    for (int k = 0; k < m->K; k++)
        moe_mix_forward(Ly->out[k].x, B, U, m->gates.g + (m->omoe ? 0 : k * E), GE,
                        m->ex.H[m->ex.L - 1], E, 0);
    m->last = phase;
    return 0;
}

static int backward(ts_layer *Ly, ts_err *e)
{
    mmoe *m = Ly->state;
    int B = Ly->in[0]->dim[0], E = m->ex.E, GE = m->gates.G * E, U = m->ex.U[m->ex.L - 1];
    const float *X = Ly->in[0]->x;                    /* (B, D) */
    float *dX = Ly->in[0]->dx;                        /* (B, D) or NULL */
    float *dHL = m->ex.dH[m->ex.L - 1];               /* (B, E*U) */
    (void)e;
    /* d gate[i, g, x] = sum_{k in g} dout_k[i] . H_L[i, x];  dH_L[i, x] = sum_k gate[i, g(k), x] dout_k[i] */
    memset(m->gates.dg, 0, (size_t)B * GE * sizeof(float));
    memset(dHL, 0, (size_t)B * E * U * sizeof(float));
    for (int k = 0; k < m->K; k++) {
        if (!Ly->out[k].dx) continue;
        int goff = m->omoe ? 0 : k * E;
        moe_mix_backward(Ly->out[k].dx, B, U, m->gates.g + goff, m->gates.dg + goff, GE,
                         m->ex.H[m->ex.L - 1], dHL, E);
    }
    moe_gates_backward(&m->gates, X, dX, B);
    moe_experts_backward(&m->ex, X, dX, B);
    return 0;
}

/* gates.csv: each task's mean gate weight per expert over the test pass, as level 1 of this
 * layer (moe.h describes the file). OMoE writes its one gate under every task's name. */
static int report(ts_layer *Ly, const char *dir, ts_err *e)
{
    mmoe *m = Ly->state;
    if (!dir || !*dir || m->gates.count == 0) return 0;
    char *rows = NULL, ex[16];
    size_t n = 0, cap = 0;
    for (int k = 0; k < m->K; k++)
        for (int x = 0; x < m->ex.E; x++) {
            snprintf(ex, sizeof ex, "%d", x);
            if (moe_row(&rows, &n, &cap, Ly->name, 1, Ly->out_name[k], ex,
                        m->gates.sum[(m->omoe ? 0 : k * m->ex.E) + x] / (double)m->gates.count)) {
                free(rows);
                return ts_fail(e, "layer %s: out of memory for gates.csv", Ly->name);
            }
        }
    int rc = moe_gates_write(dir, Ly->name, rows, e);
    free(rows);
    return rc;
}

static const ts_key keys[] = {
    {"experts", "int", "8", "number of experts"},
    {"units", "list", "16", "widths of each expert's ReLU layers, like 16 or 32, 16"},
    {"tasks", "list", NULL, "task names; output k is addressed as LAYER.TASK"},
    {NULL, NULL, NULL, NULL}};
static const ts_layer_ops mmoe_ops = {.size = sizeof(ts_layer_ops),
    .build = build_mmoe, .forward = forward, .backward = backward,
    .destroy = destroy, .report = report, .check_inputs = "f32 5 7",
    .check_keys = "experts=3 units=4 tasks=a,b", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_layer_ops omoe_ops = {.size = sizeof(ts_layer_ops),
    .build = build_omoe, .forward = forward, .backward = backward,
    .destroy = destroy, .report = report, .check_inputs = "f32 5 7",
    .check_keys = "experts=3 units=4 tasks=a,b", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugins[] = {
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "mmoe", "1.0",
     "multi-gate mixture of experts: one softmax gate per task over shared ReLU experts", keys, &mmoe_ops},
    {TS_ABI, sizeof(ts_plugin), TS_LAYER, "omoe", "1.0",
     "one-gate mixture of experts: a single softmax gate shared by every task", keys, &omoe_ops}};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i < 2 ? &plugins[i] : NULL; }
