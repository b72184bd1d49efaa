/* ple.c — Progressive Layered Extraction (Tang, Liu, Zhao, Gong, RecSys 2020): stacked CGC
 * levels, each with experts shared by every task and experts of each task's own.
 *
 * Level j (1..N) has S shared experts and T experts per task k, all MLPs with the same widths:
 *   inputs   x_k^0 = x_s^0 = x                          (B, D)
 *            x_k^j, x_s^j = level j's outputs            (B, U)   the input of level j + 1
 *   task k   g_k^j = softmax(x_k^{j-1} Wg_k + bg_k)      over [shared 1..S, task k's 1..T]
 *            x_k^j = sum_e g_k,e^j expert_e(input of e)   shared experts read x_s^{j-1},
 *                                                         task k's experts read x_k^{j-1}
 *   shared   g_s^j = softmax(x_s^{j-1} Wg_s + bg_s)      over [shared, task 1's, ..., task K's]
 *            x_s^j = sum_e g_s,e^j expert_e(...)          only below the last level, when S > 0
 * The outputs are x_k^N, one per task, named after it (`input = ple.income`). levels = 1 is CGC;
 * CGC with T = 0 is MMoE (tests/test_ple.c checks the two give the same outputs).
 *
 * Keys: tasks, levels, shared_experts, task_experts, expert_units, activation. The kernels
 * (experts, gates, mixtures, gates.csv) are moe.h's, shared with mmoe.c. During the TS_TEST
 * forwards every gate's weights are averaged; report() writes every level to gates.csv (gate =
 * the task, or `shared`; expert = shared.I or TASK.I). Not a sparse MoE: every expert runs on
 * every row, and the towers after the layer are ordinary dense layers.
 */
#include "tessera.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"

#define MAXLEV 16                    /* levels */
#define MAXEXP 1024                  /* shared or per-task experts of one level */

typedef struct level {
    moe_experts shared;              /* S experts on the shared input (none when S = 0) */
    moe_experts task[TS_MAX_OUT];    /* T experts on task k's input (none when T = 0) */
    moe_gates gate[TS_MAX_OUT + 1];  /* k < K: task k's gate; K: the shared gate (ngate = K + 1) */
    int ngate;
    float *out[TS_MAX_OUT + 1];      /* (cap, U) below the last level: x_k^j, then x_s^j */
    float *dout[TS_MAX_OUT + 1];     /* (cap, U) d loss / d out */
} level;

typedef struct ple {
    int K, S, T, N, U;               /* tasks, experts shared and per task, levels, output width */
    level lev[MAXLEV];
    int cap;                         /* rows of the out buffers */
    ts_phase last;                   /* phase of the previous forward: a new test pass resets */
} ple;

static void destroy(ts_layer *Ly)
{
    ple *p = Ly->state;
    if (!p) return;
    for (int j = 0; j < MAXLEV; j++) {
        level *v = &p->lev[j];
        moe_experts_free(&v->shared);
        for (int k = 0; k < TS_MAX_OUT; k++) moe_experts_free(&v->task[k]);
        for (int g = 0; g <= TS_MAX_OUT; g++) {
            moe_gates_free(&v->gate[g]);
            free(v->out[g]);
            free(v->dout[g]);
        }
    }
    free(p);
    Ly->state = NULL;
}

/* Room for B rows in every buffer; -1 when out of memory. */
static int reserve(ple *p, int B)
{
    for (int j = 0; j < p->N; j++) {
        level *v = &p->lev[j];
        if (p->S && moe_experts_reserve(&v->shared, B)) return -1;
        for (int k = 0; k < p->K; k++)
            if (p->T && moe_experts_reserve(&v->task[k], B)) return -1;
        for (int g = 0; g < v->ngate; g++) {
            if (moe_gates_reserve(&v->gate[g], B)) return -1;
            if (j == p->N - 1 || B <= p->cap) continue;
            size_t n = (size_t)B * p->U * sizeof(float);
            float *o = realloc(v->out[g], n), *d = o ? realloc(v->dout[g], n) : NULL;
            if (o) v->out[g] = o;
            if (d) v->dout[g] = d;
            if (!o || !d) return -1;
        }
    }
    if (B > p->cap) p->cap = B;
    return 0;
}

/* Reads and checks the keys into p and the output names; 0 or a message with FILE:LINE. */
static int read_keys(ts_layer *Ly, const ts_cfg *cfg, ple *p, int *U, int *nu, int *act, ts_err *e)
{
    const char *sec = ts_cfg_section(cfg);
    long N, S, T;
    char tasks[TS_MAX_OUT + 1][TS_NAME_MAX];
    int nt;
    if (ts_cfg_int(cfg, "levels", &N, e) || ts_cfg_int(cfg, "shared_experts", &S, e) ||
        ts_cfg_int(cfg, "task_experts", &T, e) || moe_parse_units(cfg, "expert_units", U, nu, e) ||
        ts_cfg_choice(cfg, "activation", MOE_ACTS, act, e) ||
        ts_cfg_list(cfg, "tasks", tasks, TS_MAX_OUT + 1, &nt, e))
        return -1;
    if (N < 1 || N > MAXLEV)
        return ts_fail(e, "%s: [%s] levels = %ld; use 1..%d (1 is one CGC block)",
                       ts_cfg_where(cfg, "levels"), sec, N, MAXLEV);
    if (S < 0 || S > MAXEXP)
        return ts_fail(e, "%s: [%s] shared_experts = %ld; use 0..%d",
                       ts_cfg_where(cfg, "shared_experts"), sec, S, MAXEXP);
    if (T < 0 || T > MAXEXP)
        return ts_fail(e, "%s: [%s] task_experts = %ld; use 0..%d", ts_cfg_where(cfg, "task_experts"),
                       sec, T, MAXEXP);
    if (S + T == 0) {
        char at[512];   /* ts_cfg_where's text lasts until its next call */
        snprintf(at, sizeof at, "%s", ts_cfg_where(cfg, "task_experts"));
        return ts_fail(e, "%s: [%s] shared_experts = 0 and task_experts = 0 (%s) leave every gate 0 "
                       "experts to choose from; set at least one of them to 1 or more",
                       ts_cfg_where(cfg, "shared_experts"), sec, at);
    }
    if (nt < 1 || nt > TS_MAX_OUT)
        return ts_fail(e, "%s: [%s] tasks lists %d names; give 1..%d, one per head",
                       ts_cfg_where(cfg, "tasks"), sec, nt, TS_MAX_OUT);
    for (int k = 0; k < nt; k++) {
        if (!strcmp(tasks[k], "shared"))
            return ts_fail(e, "%s: [%s] a task may not be called \"shared\": gates.csv names the "
                           "shared gate and experts so; rename the task", ts_cfg_where(cfg, "tasks"), sec);
        for (int j = 0; j < k; j++)
            if (!strcmp(tasks[j], tasks[k]))
                return ts_fail(e, "%s: [%s] task \"%s\" is listed twice in tasks",
                               ts_cfg_where(cfg, "tasks"), sec, tasks[k]);
        snprintf(Ly->out_name[k], TS_NAME_MAX, "%s", tasks[k]);
    }
    p->K = nt;
    p->S = (int)S;
    p->T = (int)T;
    p->N = (int)N;
    p->U = U[*nu - 1];
    return 0;
}

/* Declares level j's parameters, in this order: shared experts (lJ.shared.W1, ...), each task's
 * experts (lJ.taskK.W1, ...), each task's gate (lJ.taskK.Wg, bg), the shared gate (lJ.shared.Wg). */
static int declare_level(ts_layer *Ly, ple *p, int j, int D, const int *U, int nu, int act, ts_err *e)
{
    level *v = &p->lev[j];
    char pre[TS_NAME_MAX];
    moe_experts *blocks[TS_MAX_OUT + 1];
    int nb = 0;
    if (p->S) blocks[nb++] = &v->shared;
    for (int k = 0; k < p->K && p->T; k++) blocks[nb++] = &v->task[k];
    for (int b = 0; b < nb; b++) {
        moe_experts *x = blocks[b];
        x->D = D;
        x->E = x == &v->shared ? p->S : p->T;
        x->L = nu;
        x->act = act;
        memcpy(x->U, U, (size_t)nu * sizeof *U);
        if (x == &v->shared) snprintf(pre, sizeof pre, "l%d.shared.", j + 1);
        else snprintf(pre, sizeof pre, "l%d.task%d.", j + 1, (int)(x - v->task) + 1);
        if (moe_experts_declare(x, Ly->ctx, pre, e)) return -1;
    }
    v->ngate = p->K + (j < p->N - 1 && p->S > 0);
    for (int g = 0; g < v->ngate; g++) {
        moe_gates *q = &v->gate[g];
        q->D = D;
        q->G = 1;
        q->n = g < p->K ? p->S + p->T : p->S + p->K * p->T;
        if (g < p->K) snprintf(pre, sizeof pre, "l%d.task%d.", j + 1, g + 1);
        else snprintf(pre, sizeof pre, "l%d.shared.", j + 1);
        if (moe_gates_declare(q, Ly->ctx, pre, e)) return -1;
    }
    return 0;
}

static int build(ts_layer *Ly, const ts_cfg *cfg, ts_err *e)
{
    const char *sec = ts_cfg_section(cfg);
    if (Ly->nin != 1 || Ly->in[0]->dtype != TS_F32 || Ly->in[0]->ndim != 2) {
        char s[64];
        return ts_fail(e, "ple takes one F32 input (B, D), got %d input(s)%s%s; put a concat "
                       "layer in front", Ly->nin, Ly->nin ? ", the first " : "",
                       Ly->nin ? ts_shape_str(Ly->in[0], s, sizeof s) : "");
    }
    ple *p = calloc(1, sizeof *p);
    if (!p) return ts_fail(e, "%s: out of memory", sec);
    int U[MOE_MAXL], nu, act;
    if (read_keys(Ly, cfg, p, U, &nu, &act, e)) { free(p); return -1; }
    Ly->state = p;
    p->last = TS_TRAIN;
    for (int k = 0; k < p->K; k++) {
        Ly->out[k].dtype = TS_F32;
        Ly->out[k].ndim = 2;
        Ly->out[k].dim[0] = Ly->in[0]->dim[0];
        Ly->out[k].dim[1] = p->U;
    }
    Ly->nout = p->K;
    for (int j = 0; j < p->N; j++)
        if (declare_level(Ly, p, j, j ? p->U : Ly->in[0]->dim[1], U, nu, act, e)) {
            destroy(Ly);
            return -1;
        }
    if (reserve(p, Ly->in[0]->dim[0])) {
        destroy(Ly);
        return ts_fail(e, "%s: out of memory", sec);
    }
    return 0;
}

/* The inputs of level j: task k's (k < K) or the shared one (k = K), and their gradients. */
static const float *level_in(ts_layer *Ly, ple *p, int j, int k)
{
    return j ? p->lev[j - 1].out[k] : Ly->in[0]->x;
}

static float *level_din(ts_layer *Ly, ple *p, int j, int k)
{
    return j ? p->lev[j - 1].dout[k] : Ly->in[0]->dx;
}

/* Where gate g of level j mixes into: the layer's output on the last level, else a buffer. */
static float *level_out(ts_layer *Ly, ple *p, int j, int g)
{
    return j == p->N - 1 ? Ly->out[g].x : p->lev[j].out[g];
}

static float *level_dout(ts_layer *Ly, ple *p, int j, int g)
{
    return j == p->N - 1 ? Ly->out[g].dx : p->lev[j].dout[g];
}

static int forward(ts_layer *Ly, ts_phase phase, ts_err *e)
{
    ple *p = Ly->state;
    int B = Ly->in[0]->dim[0], K = p->K, S = p->S, T = p->T, U = p->U;
    if (reserve(p, B)) return ts_fail(e, "layer %s: out of memory for %d rows", Ly->name, B);
    int fresh = p->last != TS_TEST;
    for (int j = 0; j < p->N; j++) {
        level *v = &p->lev[j];
        if (S) moe_experts_forward(&v->shared, level_in(Ly, p, j, K), B);
        for (int k = 0; k < K && T; k++) moe_experts_forward(&v->task[k], level_in(Ly, p, j, k), B);
        for (int g = 0; g < v->ngate; g++) {
            moe_gates *q = &v->gate[g];
            moe_gates_forward(q, level_in(Ly, p, j, g), B, phase, fresh);
            float *out = level_out(Ly, p, j, g);      /* (B, U) */
            int add = 0;
            if (S) { moe_mix_forward(out, B, U, q->g, q->n, v->shared.H[v->shared.L - 1], S, 0); add = 1; }
            if (!T) continue;
            if (g < K) {                              /* task k's gate: its own experts after the shared */
                moe_mix_forward(out, B, U, q->g + S, q->n, v->task[g].H[v->task[g].L - 1], T, add);
                continue;
            }
            for (int k = 0; k < K; k++)               /* the shared gate: every task's experts */
                moe_mix_forward(out, B, U, q->g + S + k * T, q->n, v->task[k].H[v->task[k].L - 1], T, 1);
        }
    }
    p->last = phase;
    return 0;
}

static int backward(ts_layer *Ly, ts_err *e)
{
    ple *p = Ly->state;
    int B = Ly->in[0]->dim[0], K = p->K, S = p->S, T = p->T, U = p->U;
    (void)e;
    for (int j = p->N - 1; j >= 0; j--) {
        level *v = &p->lev[j];
        size_t bu = (size_t)B * U;
        /* this level's input gradients are ours below level 1: they start at zero */
        for (int k = 0; j && k < p->lev[j - 1].ngate; k++)
            memset(p->lev[j - 1].dout[k], 0, bu * sizeof(float));
        if (S) memset(v->shared.dH[v->shared.L - 1], 0, bu * S * sizeof(float));
        for (int k = 0; k < K && T; k++) memset(v->task[k].dH[v->task[k].L - 1], 0, bu * T * sizeof(float));
        for (int g = 0; g < v->ngate; g++) {
            moe_gates *q = &v->gate[g];
            const float *dout = level_dout(Ly, p, j, g);
            memset(q->dg, 0, (size_t)B * q->n * sizeof(float));
            if (!dout) continue;
            if (S)
                moe_mix_backward(dout, B, U, q->g, q->dg, q->n, v->shared.H[v->shared.L - 1],
                                 v->shared.dH[v->shared.L - 1], S);
            for (int k = 0; k < K && T; k++) {
                if (g < K && k != g) continue;
                moe_experts *x = &v->task[k];
                int off = S + (g < K ? 0 : k * T);
                moe_mix_backward(dout, B, U, q->g + off, q->dg + off, q->n, x->H[x->L - 1],
                                 x->dH[x->L - 1], T);
            }
        }
        for (int g = 0; g < v->ngate; g++)
            moe_gates_backward(&v->gate[g], level_in(Ly, p, j, g), level_din(Ly, p, j, g), B);
        if (S) moe_experts_backward(&v->shared, level_in(Ly, p, j, K), level_din(Ly, p, j, K), B);
        for (int k = 0; k < K && T; k++)
            moe_experts_backward(&v->task[k], level_in(Ly, p, j, k), level_din(Ly, p, j, k), B);
    }
    return 0;
}

/* gates.csv: every level's gates (each task's, then `shared`), the mean weight of each expert
 * it chooses from over the test pass (moe.h describes the file). */
static int report(ts_layer *Ly, const char *dir, ts_err *e)
{
    ple *p = Ly->state;
    if (!dir || !*dir || p->lev[0].gate[0].count == 0) return 0;
    char *rows = NULL, ex[TS_NAME_MAX + 16];
    size_t n = 0, cap = 0;
    int bad = 0;
    for (int j = 0; j < p->N && !bad; j++) {
        level *v = &p->lev[j];
        for (int g = 0; g < v->ngate && !bad; g++) {
            const moe_gates *q = &v->gate[g];
            const char *gate = g < p->K ? Ly->out_name[g] : "shared";
            for (int c = 0; c < q->n && !bad; c++) {
                /* choice c: shared experts first, then the task's own (task gate) or every
                 * task's in turn (shared gate) */
                if (c < p->S) snprintf(ex, sizeof ex, "shared.%d", c);
                else if (g < p->K) snprintf(ex, sizeof ex, "%s.%d", Ly->out_name[g], c - p->S);
                else snprintf(ex, sizeof ex, "%s.%d", Ly->out_name[(c - p->S) / p->T], (c - p->S) % p->T);
                bad = moe_row(&rows, &n, &cap, Ly->name, j + 1, gate, ex, q->sum[c] / (double)q->count);
            }
        }
    }
    if (bad) {
        free(rows);
        return ts_fail(e, "layer %s: out of memory for gates.csv", Ly->name);
    }
    int rc = moe_gates_write(dir, Ly->name, rows ? rows : "", e);
    free(rows);
    return rc;
}

static const ts_key keys[] = {
    {"tasks", "list", NULL, "task names; output k is addressed as LAYER.TASK"},
    {"levels", "int", "2", "stacked extraction levels; 1 is a single CGC block"},
    {"shared_experts", "int", "2", "experts shared by every task, per level"},
    {"task_experts", "int", "2", "experts of each task's own, per task and level (0 with levels = 1 is MMoE)"},
    {"expert_units", "list", "16", "widths of each expert's layers, like 16 or 32, 16; the last is the output width"},
    {"activation", "choice:" MOE_ACTS, "relu", "non-linearity after each expert layer"},
    {NULL, NULL, NULL, NULL}};
static const ts_layer_ops ops = {.size = sizeof(ts_layer_ops),
    .build = build, .forward = forward, .backward = backward, .destroy = destroy, .report = report,
    .check_inputs = "f32 5 7",
    .check_keys = "tasks=a,b levels=2 shared_experts=2 task_experts=1 expert_units=4 activation=tanh", .concurrency = TS_REPLICA_SAFE | TS_BRANCH_SAFE};
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_LAYER, "ple", "1.0",
    "progressive layered extraction: levels of shared and task-specific experts (CGC at levels = 1)",
    keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
