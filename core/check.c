/* check.c — plugin conformance (`tessera check-plugin`). Layers and heads: central
 * finite-difference gradient checks on random inputs (with random sequence lengths where asked)
 * at several shapes (the given batch, batch 1, a larger batch, other sizes of the non-batch
 * dimensions where build accepts them); backward accumulating (+=) into prefilled gradients;
 * NULL input gradients, in a forked child so that a crash is a failed check; sparse rows with a
 * gradient touched (ts_param_touch) and moved by an optimizer step. Losses: their gradient.
 * Optimizers: descent on a known quadratic (dense and sparse rows). Datasets: batches against
 * their declared fields. Each is built with its check keys, overridden by keys the caller gives.
 * Not a test runner: it returns a status and writes what it did to a log stream. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_SEED 20261128u
#define MAX_SAMPLES 24         /* coordinates checked per tensor */
#define CHILD_FAILED 97        /* exit status of a forked check whose pass returned an error */

/* ---- random inputs from the check_inputs grammar ------------------------------------------ */
typedef struct spec_tensor {
    ts_tensor t;
    int want_len;
} spec_tensor;

static void free_tensor(ts_tensor *t)
{
    free(t->x); free(t->dx); free(t->ids); free(t->off); free(t->len);
    memset(t, 0, sizeof *t);
}

static int parse_inputs(const char *spec, spec_tensor *in, int max, int *n, ts_rng *r,
                        int32_t **shared_len, ts_err *e)
{
    *n = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec ? spec : "");
    char *save = NULL;
    for (char *part = strtok_r(buf, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
        if (*n == max) return ts_fail(e, "check_inputs: more than %d inputs", max);
        spec_tensor *s = &in[(*n)++];
        memset(s, 0, sizeof *s);
        char *tok, *save2 = NULL;
        int dims[TS_MAX_DIMS], nd = 0;
        long vocab = 0;
        ts_dtype dt = TS_F32;
        int first = 1;
        for (tok = strtok_r(part, " \t", &save2); tok; tok = strtok_r(NULL, " \t", &save2)) {
            if (first) {
                if (!strcmp(tok, "f32")) dt = TS_F32;
                else if (!strcmp(tok, "i32")) dt = TS_I32;
                else if (!strcmp(tok, "bags")) dt = TS_BAGS;
                else return ts_fail(e, "check_inputs: unknown type '%s' (f32, i32, bags)", tok);
                first = 0;
            } else if (!strncmp(tok, "vocab=", 6)) {
                vocab = atol(tok + 6);
            } else if (!strcmp(tok, "len")) {
                s->want_len = 1;
            } else if (nd < TS_MAX_DIMS) {
                dims[nd++] = atoi(tok);
            }
        }
        if (nd < 1) return ts_fail(e, "check_inputs: '%s' has no dimensions", part);
        ts_tensor *t = &s->t;
        t->dtype = dt;
        t->ndim = nd;
        memcpy(t->dim, dims, sizeof(int) * (size_t)nd);
        t->vocab = vocab;
        long cells = ts_numel(t);
        if (dt == TS_F32) {
            t->x = malloc((size_t)cells * sizeof *t->x);
            t->dx = calloc((size_t)cells, sizeof *t->dx);
            for (long i = 0; i < cells; i++) t->x[i] = (float)ts_rng_normal(r);
        } else if (dt == TS_I32) {
            if (vocab <= 0) return ts_fail(e, "check_inputs: i32 needs vocab=V");
            t->ids = malloc((size_t)cells * sizeof *t->ids);
            for (long i = 0; i < cells; i++) t->ids[i] = (int32_t)ts_rng_below(r, (uint64_t)vocab);
        } else {
            if (vocab <= 0 || nd < 2) return ts_fail(e, "check_inputs: bags needs B T vocab=V");
            long nb = (long)dims[0] * dims[1];
            t->off = malloc((size_t)(nb + 1) * sizeof *t->off);
            t->ids = malloc((size_t)(nb * 4 + 1) * sizeof *t->ids);
            t->off[0] = 0;
            for (long c = 0; c < nb; c++) {
                int k = 1 + (int)ts_rng_below(r, 4);   /* 1..4 ids: empty bags are tested elsewhere */
                for (int j = 0; j < k; j++)
                    t->ids[t->off[c] + j] = (int32_t)ts_rng_below(r, (uint64_t)vocab);
                t->off[c + 1] = t->off[c] + k;
            }
        }
        if (s->want_len && nd >= 2) {
            if (!*shared_len) {
                *shared_len = malloc((size_t)dims[0] * sizeof **shared_len);
                for (int b = 0; b < dims[0]; b++)
                    (*shared_len)[b] = 1 + (int32_t)ts_rng_below(r, (uint64_t)dims[1]);
                (*shared_len)[0] = dims[1];   /* one full row, one of length 1 when possible */
                if (dims[0] > 1) (*shared_len)[1] = 1;
            }
            t->len = malloc((size_t)dims[0] * sizeof *t->len);
            memcpy(t->len, *shared_len, (size_t)dims[0] * sizeof *t->len);
        }
    }
    return 0;
}

/* ---- the finite-difference comparison ------------------------------------------------------ */
typedef double (*loss_fn)(void *arg, int *ok);

typedef struct fd_stats {
    int checked, failed;
    double worst;            /* largest error relative to the tolerance */
} fd_stats;

static int close_enough(double a, double n)
{
    double m = fabs(a) > fabs(n) ? fabs(a) : fabs(n);
    return fabs(a - n) <= 3e-3 + 3e-2 * m;
}

/* Checks analytic gradient ga of buffer v (n floats) against central differences of f. */
static void fd_check(float *v, const float *ga, long n, loss_fn f, void *arg, ts_rng *r,
                     const char *what, FILE *log, fd_stats *st, const int32_t *rows, int nrows,
                     int cols)
{
    long nsample = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    for (long s = 0; s < nsample; s++) {
        long i;
        if (rows && nrows > 0)   /* a sparse table: coordinates in the touched rows */
            i = (long)rows[ts_rng_below(r, (uint64_t)nrows)] * cols + (long)ts_rng_below(r, (uint64_t)cols);
        else
            i = n <= MAX_SAMPLES ? s : (long)ts_rng_below(r, (uint64_t)n);
        float keep = v[i];
        int ok = 1, good = 0;
        double num = 0;
        /* A kink (relu at 0, a max switching) can spoil one step size: try a smaller one. */
        for (double eps = 5e-3; eps > 1e-4 && !good; eps /= 5) {
            v[i] = keep + (float)eps;
            double lp = f(arg, &ok);
            v[i] = keep - (float)eps;
            double lm = f(arg, &ok);
            v[i] = keep;
            num = (lp - lm) / (2 * eps);
            good = ok && close_enough(ga[i], num);
        }
        st->checked++;
        double m = fabs(ga[i]) > fabs(num) ? fabs(ga[i]) : fabs(num);
        double rel = fabs(ga[i] - num) / (3e-3 + 3e-2 * m);
        if (rel > st->worst) st->worst = rel;
        if (!good) {
            if (st->failed < 5 && log)
                fprintf(log, "    FAIL %s[%ld]: analytic %.6g, numeric %.6g\n", what, i, ga[i], num);
            st->failed++;
        }
    }
}

/* Labels of a loss or head check: binary alternates 0, 1; class draws K classes; real N(0, 1). */
static void draw_labels(ts_label_kind kind, int n, int k, float *y, ts_rng *r)
{
    for (int i = 0; i < n; i++) {
        if (kind == TS_LABEL_BINARY) y[i] = (float)(i % 2);   /* both classes present */
        else if (kind == TS_LABEL_CLASS) y[i] = (float)ts_rng_below(r, (uint64_t)k);
        else for (int j = 0; j < k; j++) y[i * k + j] = (float)ts_rng_normal(r);
    }
}

/* ---- layers and heads: one built unit under check ----------------------------------------- */
/* A layer or a head built on random inputs of one shape, with its parameters in an arena. */
typedef struct unit {
    const ts_plugin *p;
    int head;                      /* 1: a head (p->ops is ts_head_ops), 0: a layer */
    const ts_layer_ops *lops;
    const ts_head_ops *hops;
    ts_ctx ctx;
    spec_tensor in[TS_MAX_IN];
    int nin;
    int32_t *len;                  /* the inputs' shared sequence lengths, or NULL */
    ts_layer L;
    ts_head H;
    ts_tensor label;               /* heads: (B, 1) drawn labels */
    int built;                     /* build succeeded: destroy is owed */
    float *R[TS_MAX_OUT];          /* layers: random projections, value = sum_k <R_k, out_k> */
    float *arena;
    size_t arena_n;
    ts_rng rng0;                   /* the rng state every pass starts from (dropout, sampling) */
    double loss;                   /* heads: the loss of the last unit_grad */
    ts_err *e;                     /* where a failing pass during a finite difference reports */
    char spec[256];                /* the check_inputs it was built on, for messages */
} unit;

static void unit_close(unit *u)
{
    if (u->built) {
        if (u->head && TS_OP(u->hops, destroy)) u->hops->destroy(&u->H);
        if (!u->head && TS_OP(u->lops, destroy)) u->lops->destroy(&u->L);
    }
    if (u->H.loss && u->H.loss_state && TS_OP(u->H.loss, destroy))
        u->H.loss->destroy(u->H.loss_state);
    for (int k = 0; k < TS_MAX_OUT; k++) {
        free(u->R[k]);
        if (u->built && !u->head && u->L.out[k].dtype == TS_F32) {
            free(u->L.out[k].x);
            free(u->L.out[k].dx);
        }
    }
    for (int i = 0; i < u->nin; i++) free_tensor(&u->in[i].t);
    free(u->label.x);
    free(u->len);
    free(u->arena);
    ts_ctx_free(&u->ctx);
    memset(u, 0, sizeof *u);
}

/* Builds p on inputs drawn from spec with the keys of cfg (and the loss lp for a head). Returns
 * 0; -1 with the message in e; *refused = 1 when it was build() that failed. */
static int unit_open(unit *u, const ts_plugin *p, ts_cfg *cfg, const char *spec,
                     const ts_plugin *lp, ts_rng *r, int *refused, ts_err *e)
{
    memset(u, 0, sizeof *u);
    *refused = 0;
    u->p = p;
    u->head = p->kind == TS_HEAD;
    u->lops = u->head ? NULL : p->ops;
    u->hops = u->head ? p->ops : NULL;
    snprintf(u->spec, sizeof u->spec, "%s", spec);
    ts_ctx_init(&u->ctx, CHECK_SEED, 1);
    if (parse_inputs(spec, u->in, TS_MAX_IN, &u->nin, r, &u->len, e)) return -1;
    int B = u->in[0].t.dim[0];
    u->ctx.max_batch = B;
    ts_err pe;
    if (u->head) {
        ts_head *H = &u->H;
        const char *lab = TS_OP(u->hops, check_label);
        if (lab) {
            int k = !strncmp(lab, "class", 5) ? atoi(lab + 5) : 1;
            if (k < 1) k = 1;
            u->label.dtype = TS_F32;
            u->label.ndim = 2;
            u->label.dim[0] = B;
            u->label.dim[1] = 1;
            u->label.x = malloc(sizeof(float) * (size_t)B);
            if (!u->label.x) return ts_fail(e, "out of memory");
            draw_labels(!strncmp(lab, "binary", 6) ? TS_LABEL_BINARY :
                        !strncmp(lab, "class", 5) ? TS_LABEL_CLASS : TS_LABEL_REAL, B, k,
                        u->label.x, r);
            H->label = &u->label;
        }
        H->name = "check";
        H->ctx = &u->ctx;
        H->nin = u->nin;
        H->grad_scale = 1;
        for (int i = 0; i < u->nin; i++) H->in[i] = &u->in[i].t;
        if (lp) {
            H->loss = lp->ops;
            if (H->loss->init(&H->loss_state, cfg, e)) return -1;
        }
        u->ctx.owner = "head.check";
        if (u->hops->build(H, cfg, &pe)) {
            *refused = 1;
            return ts_fail(e, "%s", pe.msg);
        }
        u->built = 1;
    } else {
        ts_layer *L = &u->L;
        L->name = "check";
        L->ctx = &u->ctx;
        L->nin = u->nin;
        L->nout = 1;
        for (int i = 0; i < u->nin; i++) L->in[i] = &u->in[i].t;
        u->ctx.owner = "layer.check";
        if (u->lops->build(L, cfg, &pe)) {
            *refused = 1;
            return ts_fail(e, "%s", pe.msg);
        }
        u->built = 1;
        if (L->nout < 1 || L->nout > TS_MAX_OUT)
            return ts_fail(e, "%s: build declared %d outputs (1..%d)", p->name, L->nout,
                           TS_MAX_OUT);
        for (int k = 0; k < L->nout; k++) {
            ts_tensor *t = &L->out[k];
            t->dim[0] = B;
            if (t->dtype != TS_F32) continue;
            long n = ts_numel(t);
            t->x = calloc((size_t)n, sizeof *t->x);
            t->dx = calloc((size_t)n, sizeof *t->dx);
            u->R[k] = malloc((size_t)n * sizeof *u->R[k]);
            if (!t->x || !t->dx || !u->R[k]) return ts_fail(e, "out of memory");
            for (long i = 0; i < n; i++) u->R[k][i] = (float)(2 * ts_rng_uniform(r) - 1);
        }
    }
    if (ts_ctx_alloc_params(&u->ctx, 0, &u->arena, &u->arena_n, e)) return -1;
    /* Random (not the init's) parameter values, so zero biases and ones do not hide errors; a
     * head's learned scalar (a temperature) keeps its init. */
    for (int i = 0; i < u->ctx.nparams; i++) {
        ts_param *pp = u->ctx.params[i];
        if (u->head && pp->rows * pp->cols == 1) continue;
        for (long j = 0; j < (long)pp->rows * pp->cols; j++)
            pp->w[j] = (float)(0.5 * ts_rng_normal(r));
    }
    /* The one-time init, as the host calls it: after the arena, before any restore. */
    int rc = 0;
    if (u->head && TS_OP(u->hops, init)) rc = u->hops->init(&u->H, &pe);
    if (!u->head && TS_OP(u->lops, init)) rc = u->lops->init(&u->L, &pe);
    if (rc) return ts_fail(e, "%s: init: %s", p->name, pe.msg);
    u->rng0 = u->ctx.rng;
    return 0;
}

/* Every input (and a head's label) holds b rows from now on: a prefix of what was drawn. */
static void unit_batch(unit *u, int b)
{
    for (int i = 0; i < u->nin; i++) u->in[i].t.dim[0] = b;
    u->label.dim[0] = b;
}

/* One pass that leaves gradients: a layer's forward and backward of <R, out>, a head's training
 * forward. It adds into whatever the input dx and parameter g hold. */
static int unit_grad(unit *u, ts_err *e)
{
    u->ctx.rng = u->rng0;
    if (u->head) return u->hops->forward(&u->H, TS_TRAIN, &u->loss, e);
    ts_layer *L = &u->L;
    for (int k = 0; k < L->nout; k++) L->out[k].dim[0] = L->in[0]->dim[0];
    if (u->lops->forward(L, TS_TRAIN, e)) return -1;
    for (int k = 0; k < L->nout; k++)
        if (L->out[k].dtype == TS_F32 && L->out[k].dx)
            memcpy(L->out[k].dx, u->R[k], (size_t)ts_numel(&L->out[k]) * sizeof(float));
    return u->lops->backward(L, e);
}

/* The scalar whose gradient backward computes, for finite differences. */
static double unit_value(void *arg, int *ok)
{
    unit *u = arg;
    u->ctx.rng = u->rng0;
    if (u->head) {
        double l = 0;
        for (int i = 0; i < u->nin; i++)
            if (u->in[i].t.dx)
                memset(u->in[i].t.dx, 0, (size_t)ts_numel(&u->in[i].t) * sizeof(float));
        if (u->hops->forward(&u->H, TS_TRAIN, &l, u->e)) *ok = 0;
        return l;
    }
    ts_layer *L = &u->L;
    for (int k = 0; k < L->nout; k++) L->out[k].dim[0] = L->in[0]->dim[0];
    if (u->lops->forward(L, TS_TRAIN, u->e)) { *ok = 0; return 0; }
    double s = 0;
    for (int k = 0; k < L->nout; k++) {
        ts_tensor *t = &L->out[k];
        if (t->dtype != TS_F32) continue;
        long n = ts_numel(t);
        for (long i = 0; i < n; i++) s += (double)u->R[k][i] * t->x[i];
    }
    return s;
}

/* ---- gradient buffers: cleared, prefilled, saved ------------------------------------------ */
typedef struct grads {
    float *in[TS_MAX_IN];          /* copies of the float inputs' dx (NULL for other inputs) */
    float **par;                   /* copies of every parameter's g */
    int npar;
} grads;

static void grads_free(grads *g)
{
    for (int i = 0; i < TS_MAX_IN; i++) free(g->in[i]);
    for (int i = 0; i < g->npar; i++) free(g->par[i]);
    free(g->par);
    memset(g, 0, sizeof *g);
}

static long param_n(const ts_param *p) { return (long)p->rows * p->cols; }

/* Sets every input dx and parameter g to zero (rnd NULL) or to N(0, 1) draws, and forgets the
 * touched rows of sparse parameters. */
static void grads_set(unit *u, ts_rng *rnd)
{
    for (int i = 0; i < u->nin; i++) {
        ts_tensor *t = &u->in[i].t;
        if (t->dtype != TS_F32 || !t->dx) continue;
        long n = ts_numel(t);
        for (long j = 0; j < n; j++) t->dx[j] = rnd ? (float)ts_rng_normal(rnd) : 0;
    }
    for (int i = 0; i < u->ctx.nparams; i++) {
        ts_param *p = u->ctx.params[i];
        for (long j = 0; j < param_n(p); j++) p->g[j] = rnd ? (float)ts_rng_normal(rnd) : 0;
        if (p->is_touched) memset(p->is_touched, 0, (size_t)p->rows);
        p->ntouched = 0;
    }
}

static int grads_save(unit *u, grads *g, ts_err *e)
{
    memset(g, 0, sizeof *g);
    for (int i = 0; i < u->nin; i++) {
        ts_tensor *t = &u->in[i].t;
        if (t->dtype != TS_F32 || !t->dx) continue;
        size_t n = (size_t)ts_numel(t) * sizeof(float);
        if (!(g->in[i] = malloc(n))) return ts_fail(e, "out of memory");
        memcpy(g->in[i], t->dx, n);
    }
    g->par = calloc((size_t)(u->ctx.nparams ? u->ctx.nparams : 1), sizeof *g->par);
    if (!g->par) return ts_fail(e, "out of memory");
    g->npar = u->ctx.nparams;
    for (int i = 0; i < u->ctx.nparams; i++) {
        ts_param *p = u->ctx.params[i];
        size_t n = (size_t)param_n(p) * sizeof(float);
        if (!(g->par[i] = malloc(n))) return ts_fail(e, "out of memory");
        memcpy(g->par[i], p->g, n);
    }
    return 0;
}

/* ---- the contract checks ------------------------------------------------------------------ */
static const char *pass_name(const unit *u) { return u->head ? "forward (training)" : "backward"; }

/* Finite differences of every float input and parameter against the gradients g0. */
static int check_fd(unit *u, const grads *g0, int b, ts_rng *r, FILE *log, ts_err *e)
{
    fd_stats st = {0};
    char what[TS_NAME_MAX * 3];
    u->e = e;
    for (int i = 0; i < u->nin; i++) {
        if (!g0->in[i]) continue;
        snprintf(what, sizeof what, "d input %d", i);
        fd_check(u->in[i].t.x, g0->in[i], ts_numel(&u->in[i].t), unit_value, u, r, what, log, &st,
                 NULL, 0, 0);
    }
    int frozen = 0;
    for (int i = 0; i < u->ctx.nparams; i++) {
        ts_param *pp = u->ctx.params[i];
        int sparse = (pp->flags & TS_PARAM_SPARSE) != 0;
        /* a frozen parameter (fitted statistics, pretrained vectors) is never updated: its
         * gradient is never read, so backward need not compute it */
        if (pp->flags & TS_PARAM_FROZEN) { frozen++; continue; }
        if (sparse && pp->ntouched == 0 && log)
            fprintf(log, "    note: sparse %s: the pass touched no row\n", pp->name);
        snprintf(what, sizeof what, "d %s", pp->name);
        fd_check(pp->w, g0->par[i], param_n(pp), unit_value, u, r, what, log, &st,
                 sparse ? pp->touched : NULL, sparse ? pp->ntouched : 0, pp->cols);
    }
    if (log)
        fprintf(log, "  %s %s, inputs \"%s\" at batch %d: %d gradient coordinates checked, %d "
                "wrong (worst error %.2f of the tolerance)\n", ts_kind_name(u->p->kind),
                u->p->name, u->spec, b, st.checked, st.failed, st.worst);
    if (st.failed)
        return ts_fail(e, "%s: %s disagrees with finite differences in %d of %d coordinates "
                       "(inputs \"%s\" at batch %d)", u->p->name,
                       u->head ? "its gradient" : "backward", st.failed, st.checked, u->spec, b);
    if (st.checked == 0 && !u->head && !frozen)
        return ts_fail(e, "%s: nothing to check: no float input and no parameter", u->p->name);
    if (st.checked == 0 && !u->head && log)
        fprintf(log, "  note: %s has no gradient path (no float input, only frozen parameters): "
                "its forward and the accumulation contract are checked\n", u->p->name);
    return 0;
}

/* `+=`, never `=`: with every gradient prefilled with random values P, a pass must leave
 * P + (the gradient computed from zero). The host sums the gradients of every reader of a
 * tensor, and of tied weights, through this. */
static int check_accumulates(unit *u, const grads *g0, ts_rng *r, ts_err *e)
{
    grads pre;
    grads_set(u, r);
    if (grads_save(u, &pre, e)) { grads_free(&pre); return -1; }
    ts_err pe;
    int rc = 0;
    if (unit_grad(u, &pe)) {
        rc = ts_fail(e, "%s: %s failed with prefilled gradients: %s", u->p->name, pass_name(u),
                     pe.msg);
        goto out;
    }
    for (int i = 0; i < u->nin && !rc; i++) {
        if (!g0->in[i]) continue;
        long n = ts_numel(&u->in[i].t);
        for (long j = 0; j < n; j++) {
            double want = (double)pre.in[i][j] + g0->in[i][j], got = u->in[i].t.dx[j];
            if (fabs(got - want) <= 1e-4 + 1e-4 * (fabs(pre.in[i][j]) + fabs(g0->in[i][j])))
                continue;
            rc = ts_fail(e, "%s: %s does not add to the gradient of input %d (\"%s\"): prefilled "
                         "with %.4g, dx[%ld] became %.4g instead of %.4g (prefill + gradient); "
                         "write `dx[i] += ...`, never `dx[i] = ...`, because the host sums into "
                         "dx the gradients of every layer that reads an input", u->p->name,
                         pass_name(u), i, u->spec, pre.in[i][j], j, got, want);
            break;
        }
    }
    for (int i = 0; i < u->ctx.nparams && !rc; i++) {
        ts_param *pp = u->ctx.params[i];
        for (long j = 0; j < param_n(pp); j++) {
            double want = (double)pre.par[i][j] + g0->par[i][j], got = pp->g[j];
            if (fabs(got - want) <= 1e-4 + 1e-4 * (fabs(pre.par[i][j]) + fabs(g0->par[i][j])))
                continue;
            rc = ts_fail(e, "%s: %s does not add to the gradient of parameter %s: prefilled with "
                         "%.4g, g[%ld] became %.4g instead of %.4g (prefill + gradient); write "
                         "`p->g[i] += ...`, never `p->g[i] = ...`, because layers that share "
                         "weights (`share =`) add into the same g", u->p->name,
                         pass_name(u), pp->name, pre.par[i][j], j, got, want);
            break;
        }
    }
out:
    grads_free(&pre);
    return rc;
}

/* A sparse parameter's rows that got a gradient must be touched (ts_param_touch), since an
 * optimizer updates only touched rows; and an optimizer step (sgd) must move them. */
static int check_sparse(unit *u, const grads *g0, const ts_plugin *sgd, void *sgd_state,
                        FILE *log, ts_err *e)
{
    for (int i = 0; i < u->ctx.nparams; i++) {
        ts_param *pp = u->ctx.params[i];
        if (!(pp->flags & TS_PARAM_SPARSE) || (pp->flags & TS_PARAM_FROZEN)) continue;
        long missed = 0, first = -1, withg = 0;
        for (int row = 0; row < pp->rows; row++) {
            const float *g = g0->par[i] + (long)row * pp->cols;
            int nz = 0;
            for (int j = 0; j < pp->cols && !nz; j++) nz = g[j] != 0;
            if (!nz) continue;
            withg++;
            if (!pp->is_touched[row]) { missed++; if (first < 0) first = row; }
        }
        if (missed)
            return ts_fail(e, "%s: %s wrote gradients into %ld row%s of the sparse parameter %s "
                           "without marking them with ts_param_touch(p, row) (row %ld first), so "
                           "an optimizer, which updates only touched rows, never moves them; call "
                           "ts_param_touch for every row whose gradient it writes", u->p->name,
                           pass_name(u), missed, missed > 1 ? "s" : "", pp->name, first);
        if (!sgd || !withg) continue;
        const ts_optim_ops *oo = sgd->ops;
        float *keep = malloc((size_t)param_n(pp) * sizeof *keep);
        if (!keep) return ts_fail(e, "out of memory");
        memcpy(keep, pp->w, (size_t)param_n(pp) * sizeof *keep);
        ts_err pe;
        int rc = oo->step(sgd_state, pp, 1, 1.0f, &pe);
        long still = 0;
        first = -1;
        for (int row = 0; row < pp->rows && !rc; row++) {
            const float *g = g0->par[i] + (long)row * pp->cols;
            int big = 0, moved = 0;
            for (int j = 0; j < pp->cols; j++) {
                big |= fabsf(g[j]) > 1e-5f;
                moved |= pp->w[(long)row * pp->cols + j] != keep[(long)row * pp->cols + j];
            }
            if (big && !moved) { still++; if (first < 0) first = row; }
        }
        memcpy(pp->w, keep, (size_t)param_n(pp) * sizeof *keep);
        free(keep);
        if (rc) return ts_fail(e, "%s: sgd's step on %s failed: %s", u->p->name, pp->name, pe.msg);
        if (still)
            return ts_fail(e, "%s: an optimizer step (sgd) left %ld row%s of the sparse parameter "
                           "%s unchanged although %s gave them a gradient (row %ld first); mark "
                           "every such row with ts_param_touch(p, row)", u->p->name, still,
                           still > 1 ? "s" : "", pp->name, pass_name(u), first);
        if (log)
            fprintf(log, "  %s %s: sparse %s: %ld rows with a gradient, all touched, and an sgd "
                    "step moves them\n", ts_kind_name(u->p->kind), u->p->name, pp->name, withg);
    }
    return 0;
}

/* A NULL dx (nothing upstream learns, e.g. a dataset field) must be skipped. The pass runs in a
 * forked child, so a plugin that writes through the NULL pointer fails the check instead of
 * killing tessera: once for each float input alone, once for all of them together. */
static int check_null_dx(unit *u, FILE *log, ts_err *e)
{
    int fl[TS_MAX_IN], nf = 0;
    for (int i = 0; i < u->nin; i++)
        if (u->in[i].t.dtype == TS_F32 && u->in[i].t.dx) fl[nf++] = i;
    int nconf = nf > 1 ? nf + 1 : nf;
    for (int c = 0; c < nconf; c++) {
        char what[64];
        if (c < nf) snprintf(what, sizeof what, "input %d's gradient is", fl[c]);
        else snprintf(what, sizeof what, "every input's gradient is");
        int fd[2];
        if (pipe(fd)) return ts_fail(e, "check-plugin: pipe: %s", strerror(errno));
        if (log) fflush(log);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            close(fd[0]);
            close(fd[1]);
            return ts_fail(e, "check-plugin: fork: %s", strerror(errno));
        }
        if (pid == 0) {   /* the child: one pass, its message down the pipe, then _exit */
            close(fd[0]);
            alarm(120);
            for (int k = 0; k < nf; k++)
                if (c == nf || k == c) u->in[fl[k]].t.dx = NULL;
            ts_err ce;
            ce.msg[0] = 0;
            int rc = unit_grad(u, &ce);
            if (rc) {
                ssize_t w = write(fd[1], ce.msg, strlen(ce.msg));
                (void)w;
            }
            _exit(rc ? CHILD_FAILED : 0);
        }
        close(fd[1]);
        char msg[TS_ERR_MAX];
        size_t got = 0;
        for (ssize_t k; got < sizeof msg - 1 &&
                        (k = read(fd[0], msg + got, sizeof msg - 1 - got)) > 0;)
            got += (size_t)k;
        msg[got] = 0;
        close(fd[0]);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        const char *holder = u->head ? "H" : "L";
        if (WIFSIGNALED(status))
            return ts_fail(e, "%s: %s crashed (signal %d, %s) when %s NULL, as it is when nothing "
                           "upstream learns (a dataset field); skip such an input: `if "
                           "(%s->in[i]->dx) ...`", u->p->name, pass_name(u), WTERMSIG(status),
                           strsignal(WTERMSIG(status)), what, holder);
        if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_FAILED)
            return ts_fail(e, "%s: %s failed when %s NULL (%s); a NULL dx means nothing upstream "
                           "learns: skip that input instead of failing", u->p->name, pass_name(u),
                           what, msg);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)   /* a sanitizer's exit, say */
            return ts_fail(e, "%s: %s crashed (the process exited with status %d) when %s NULL, "
                           "as it is when nothing upstream learns (a dataset field); skip such an "
                           "input: `if (%s->in[i]->dx) ...`", u->p->name, pass_name(u),
                           WEXITSTATUS(status), what, holder);
    }
    if (log && nf)
        fprintf(log, "  %s %s: NULL input gradients are skipped (%d case%s, each in a child "
                "process)\n", ts_kind_name(u->p->kind), u->p->name, nconf, nconf > 1 ? "s" : "");
    return 0;
}

/* check_inputs with every input's batch (its first number) set to batch and every other
 * dimension grown by grow; vocab= and len are kept. Equal sizes stay equal. */
static void spec_variant(const char *spec, int batch, int grow, char *out, size_t n)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    size_t k = 0;
    out[0] = 0;
    char *save = NULL;
    for (char *part = strtok_r(buf, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
        char *save2 = NULL;
        int num = 0;
        const char *sep = k ? "; " : "";
        for (char *tok = strtok_r(part, " \t", &save2); tok && k < n;
             tok = strtok_r(NULL, " \t", &save2)) {
            char *end;
            long v = strtol(tok, &end, 10);
            if (end != tok && !*end)
                k += (size_t)snprintf(out + k, n - k, "%s%ld", sep, num++ ? v + grow : batch);
            else
                k += (size_t)snprintf(out + k, n - k, "%s%s", sep, tok);
            sep = " ";
        }
    }
}

/* Every check of one unit at the forward batches b[0..nb): gradients from zero against finite
 * differences, accumulation, sparse rows; NULL input gradients at the first batch when
 * null_dx. */
static int check_unit(unit *u, const int *b, int nb, int null_dx, const ts_plugin *sgd,
                      void *sgd_state, ts_rng *r, FILE *log, ts_err *e)
{
    for (int k = 0; k < nb; k++) {
        unit_batch(u, b[k]);
        grads_set(u, NULL);
        ts_err pe;
        if (unit_grad(u, &pe))
            return ts_fail(e, "%s: %s failed on inputs \"%s\" at batch %d: %s", u->p->name,
                           pass_name(u), u->spec, b[k], pe.msg);
        if (u->head && !isfinite(u->loss))
            return ts_fail(e, "%s: the loss is %g on ordinary inputs (\"%s\" at batch %d)",
                           u->p->name, u->loss, u->spec, b[k]);
        grads g0;
        int rc = grads_save(u, &g0, e);
        if (!rc) rc = check_sparse(u, &g0, sgd, sgd_state, log, e);
        if (!rc) rc = check_fd(u, &g0, b[k], r, log, e);
        if (!rc) rc = check_accumulates(u, &g0, r, e);
        grads_free(&g0);
        if (rc) return rc;
        if (null_dx && k == 0 && check_null_dx(u, log, e)) return -1;
    }
    return 0;
}

/* Layers and heads: the given inputs at their batch and at batch 1 (the host builds once with
 * the largest batch and may then pass fewer rows), a larger batch, and other sizes of the
 * non-batch dimensions when build accepts them (a refusal is noted, not failed). */
static int check_graph_plugin(const ts_plugin *p, ts_cfg *cfg, FILE *log, ts_err *e)
{
    int head = p->kind == TS_HEAD;
    const ts_layer_ops *lops = head ? NULL : p->ops;
    const ts_head_ops *hops = head ? p->ops : NULL;
    if (!head && (!lops->build || !lops->forward || !lops->backward))
        return ts_fail(e, "%s: a layer needs build, forward and backward", p->name);
    if (head && (!hops->build || !hops->forward))
        return ts_fail(e, "%s: a head needs build and forward", p->name);
    const char *given = head ? TS_OP(hops, check_inputs) : TS_OP(lops, check_inputs);
    if (!given) given = head ? "f32 6 1" : "f32 4 5";
    /* A head's loss: `loss = NAME` among the keys, else the usual one for its label. */
    const ts_plugin *lp = NULL;
    if (head) {
        const char *lname = ts_cfg_str(cfg, "loss");
        const char *lab = TS_OP(hops, check_label);
        if (!lname && lab)
            lname = !strncmp(lab, "binary", 6) ? "bce" : !strncmp(lab, "class", 5) ? "softmax_ce"
                                                                                    : "mse";
        if (lname && !(lp = ts_plugin_find(TS_LOSS, lname, e))) return -1;
        static const char *const hk[] = {"type", "input", "label", "loss", "weight", NULL};
        const ts_key *lists[2] = {p->keys, lp ? lp->keys : NULL};
        if (ts_cfg_validate(cfg, hk, lists, 2, e)) return -1;
    } else {
        static const char *const hk[] = {"type", "input", NULL};
        const ts_key *lists[1] = {p->keys};
        if (ts_cfg_validate(cfg, hk, lists, 1, e)) return -1;
    }
    /* sgd, for the sparse rows' optimizer step; without it that part is skipped */
    ts_err se;
    const ts_plugin *sgd = ts_plugin_find(TS_OPTIMIZER, "sgd", &se);
    void *sgd_state = NULL;
    ts_ini sini = {0};
    if (sgd) {
        const ts_optim_ops *oo = sgd->ops;
        const ts_key *sl[1] = {sgd->keys};
        if (ts_ini_from_pairs(&sini, "optimizer", "lr=0.1", &se) ||
            ts_cfg_validate(&sini.sec[0], NULL, sl, 1, &se) ||
            oo->init(&sgd_state, &sini.sec[0], &se))
            sgd = NULL;
    }
    if (!sgd && log) fprintf(log, "  note: no usable sgd optimizer: sparse rows are checked for "
                             "ts_param_touch only\n");
    ts_rng r;
    ts_rng_seed(&r, CHECK_SEED);
    int rc = 0;
    unit u;
    int refused;
    /* 1. the given inputs, at their batch and at batch 1, and NULL input gradients */
    char why[TS_ERR_MAX];
    if (unit_open(&u, p, cfg, given, lp, &r, &refused, e)) {
        snprintf(why, sizeof why, "%s", e->msg);
        if (refused) ts_fail(e, "%s: build failed on its check_inputs \"%s\": %s", p->name, given,
                             why);
        rc = -1;
    } else {
        int B = u.in[0].t.dim[0];
        int bs[2] = {B, 1};
        rc = check_unit(&u, bs, B > 1 ? 2 : 1, 1, sgd, sgd_state, &r, log, e);
        int Bbig = 2 * B + 1;
        unit_close(&u);
        /* 2. a larger batch */
        char spec[512];
        spec_variant(given, Bbig, 0, spec, sizeof spec);
        if (!rc && unit_open(&u, p, cfg, spec, lp, &r, &refused, e)) {
            snprintf(why, sizeof why, "%s", e->msg);
            if (refused) ts_fail(e, "%s: build failed at batch %d (inputs \"%s\"): %s", p->name,
                                 Bbig, spec, why);
            rc = -1;
        } else if (!rc) {
            rc = check_unit(&u, &Bbig, 1, 0, sgd, sgd_state, &r, log, e);
        }
        unit_close(&u);
        /* 3. other sizes of the non-batch dimensions, where build accepts them */
        spec_variant(given, B, 1, spec, sizeof spec);
        if (!rc && unit_open(&u, p, cfg, spec, lp, &r, &refused, e)) {
            if (!refused) rc = -1;
            else if (log)
                fprintf(log, "  note: build refused the inputs \"%s\" (%s); that shape is not "
                        "checked\n", spec, e->msg);
        } else if (!rc) {
            rc = check_unit(&u, &B, 1, 0, sgd, sgd_state, &r, log, e);
        }
    }
    unit_close(&u);
    if (sgd_state && TS_OP((const ts_optim_ops *)sgd->ops, destroy))
        ((const ts_optim_ops *)sgd->ops)->destroy(sgd_state);
    ts_ini_free(&sini);
    return rc;
}

/* ---- losses -------------------------------------------------------------------------------- */
typedef struct loss_check {
    const ts_loss_ops *ops;
    void *state;
    int n, k;
    float *z, *y, *w;
    ts_err *e;
} loss_check;

static double loss_value(void *arg, int *ok)
{
    loss_check *c = arg;
    double l = 0;
    if (c->ops->eval(c->state, c->n, c->k, c->z, c->y, c->w, &l, NULL, 1.0f, c->e)) *ok = 0;
    return l;
}

static int check_loss(const ts_plugin *p, ts_cfg *cfg, FILE *log, ts_err *e)
{
    const ts_loss_ops *ops = p->ops;
    ts_rng r;
    ts_rng_seed(&r, CHECK_SEED);
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(cfg, NULL, lists, 1, e)) return -1;
    int rc = 0;
    for (int weighted = 0; weighted < 2 && !rc; weighted++) {
        loss_check c = {.ops = ops, .n = 6, .e = e};
        c.k = ops->label_kind == TS_LABEL_BINARY ? 1 : 4;
        c.z = malloc(sizeof(float) * (size_t)(c.n * c.k));
        c.y = malloc(sizeof(float) * (size_t)(c.n * c.k));
        c.w = weighted ? malloc(sizeof(float) * (size_t)c.n) : NULL;
        float *dz = calloc((size_t)(c.n * c.k), sizeof *dz);
        for (int i = 0; i < c.n * c.k; i++) c.z[i] = (float)(1.5 * ts_rng_normal(&r));
        draw_labels(ops->label_kind, c.n, c.k, c.y, &r);
        for (int i = 0; weighted && i < c.n; i++) c.w[i] = (float)(0.2 + ts_rng_uniform(&r));
        if (ops->init(&c.state, cfg, e)) rc = -1;
        double l = 0;
        if (!rc && ops->eval(c.state, c.n, c.k, c.z, c.y, c.w, &l, dz, 1.0f, e)) rc = -1;
        if (!rc && !isfinite(l)) rc = ts_fail(e, "%s: the loss is %g on ordinary inputs", p->name, l);
        fd_stats st = {0};
        if (!rc) fd_check(c.z, dz, c.n * c.k, loss_value, &c, &r, "d z", log, &st, NULL, 0, 0);
        if (!rc && log)
            fprintf(log, "  loss %s (%s): %d coordinates checked, %d wrong\n", p->name,
                    weighted ? "weighted" : "unweighted", st.checked, st.failed);
        if (!rc && st.failed)
            rc = ts_fail(e, "%s: the gradient disagrees with finite differences in %d of %d "
                         "coordinates", p->name, st.failed, st.checked);
        if (c.state && TS_OP(ops, destroy)) ops->destroy(c.state);
        free(c.z); free(c.y); free(c.w); free(dz);
    }
    return rc;
}

/* ---- optimizers ---------------------------------------------------------------------------- */
/* f(w) = 1/2 sum_i a_i (w_i - c_i)^2 with a_i in [0.5, 2]: every sane optimizer with a
 * moderate rate gets f below 1 % of its start within 2000 steps. */
static int check_optimizer(const ts_plugin *p, ts_cfg *cfg, FILE *log, ts_err *e)
{
    const ts_optim_ops *ops = p->ops;
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(cfg, NULL, lists, 1, e)) return -1;
    ts_ctx ctx;
    ts_ctx_init(&ctx, CHECK_SEED, 1);
    ctx.owner = "check";
    int rc = -1;
    void *state = NULL;
    float *arena = NULL;
    size_t an;
    ts_param *dense = ts_param_add(&ctx, "dense", 4, 5, TS_INIT_ZEROS, 0, 0, e);
    ts_param *sparse = dense ? ts_param_add(&ctx, "sparse", 6, 3, TS_INIT_ZEROS, 0, TS_PARAM_SPARSE, e)
                             : NULL;
    if (!sparse || ts_ctx_alloc_params(&ctx, ops->nslots, &arena, &an, e)) goto out;
    if (ops->init(&state, cfg, e)) goto out;
    ts_rng r;
    ts_rng_seed(&r, CHECK_SEED);
    float a[20], c[20], sa[18], sc[18];
    for (int i = 0; i < 20; i++) { a[i] = (float)(0.5 + 1.5 * ts_rng_uniform(&r)); c[i] = (float)ts_rng_normal(&r); }
    for (int i = 0; i < 18; i++) { sa[i] = (float)(0.5 + 1.5 * ts_rng_uniform(&r)); sc[i] = (float)ts_rng_normal(&r); }
    double f0 = 0, f = 0, fs0 = 0, fs = 0;
    for (int i = 0; i < 20; i++) f0 += 0.5 * a[i] * c[i] * c[i];
    for (int row = 1; row < 6; row += 3)
        for (int j = 0; j < 3; j++) { int i = row * 3 + j; fs0 += 0.5 * sa[i] * sc[i] * sc[i]; }
    for (long t = 1; t <= 2000; t++) {
        for (int i = 0; i < 20; i++) dense->g[i] = a[i] * (dense->w[i] - c[i]);
        for (int row = 1; row < 6; row += 3) {   /* rows 1 and 4 only */
            ts_param_touch(sparse, row);
            for (int j = 0; j < 3; j++) {
                int i = row * 3 + j;
                sparse->g[i] = sa[i] * (sparse->w[i] - sc[i]);
            }
        }
        if (ops->step(state, dense, t, 1.0f, e) || ops->step(state, sparse, t, 1.0f, e)) goto out;
        ts_params_zero_grad(&ctx);
    }
    for (int i = 0; i < 20; i++) f += 0.5 * a[i] * (dense->w[i] - c[i]) * (dense->w[i] - c[i]);
    int untouched_moved = 0;
    for (int row = 0; row < 6; row++)
        for (int j = 0; j < 3; j++) {
            int i = row * 3 + j;
            if (row == 1 || row == 4) fs += 0.5 * sa[i] * (sparse->w[i] - sc[i]) * (sparse->w[i] - sc[i]);
            else if (sparse->w[i] != 0) untouched_moved = 1;
        }
    if (log)
        fprintf(log, "  optimizer %s: quadratic %.4g -> %.4g (dense), %.4g -> %.4g (sparse rows)%s\n",
                p->name, f0, f, fs0, fs, untouched_moved ? ", UNTOUCHED ROWS MOVED" : "");
    if (!(f < 0.01 * f0) || !(fs < 0.01 * fs0))
        ts_fail(e, "%s: did not minimise a convex quadratic in 2000 steps (%.4g -> %.4g dense, "
                "%.4g -> %.4g sparse)", p->name, f0, f, fs0, fs);
    else if (untouched_moved)
        ts_fail(e, "%s: a sparse step moved rows that had no gradient", p->name);
    else
        rc = 0;
out:
    if (state && TS_OP(ops, destroy)) ops->destroy(state);
    free(arena);
    ts_ctx_free(&ctx);
    return rc;
}

/* ---- datasets ------------------------------------------------------------------------------ */
static int check_field(const char *name, const ts_tensor *t, int n, ts_err *e)
{
    if (t->dim[0] != n) return ts_fail(e, "field %s: dim[0] = %d after a batch of %d", name, t->dim[0], n);
    long cells = ts_numel(t);
    if (t->dtype == TS_F32) {
        if (!t->x) return ts_fail(e, "field %s: no values", name);
        for (long i = 0; i < cells; i++)
            if (!isfinite(t->x[i])) return ts_fail(e, "field %s: value %ld is %g", name, i, t->x[i]);
    } else if (t->dtype == TS_I32) {
        for (long i = 0; i < cells; i++)
            if (t->ids[i] < 0 || t->ids[i] >= t->vocab)
                return ts_fail(e, "field %s: id %d outside [0, %ld)", name, t->ids[i], (long)t->vocab);
    } else {
        long nb = (long)t->dim[0] * t->dim[1];
        if (t->off[0] != 0) return ts_fail(e, "field %s: off[0] = %d", name, t->off[0]);
        for (long c = 0; c < nb; c++) {
            if (t->off[c + 1] < t->off[c]) return ts_fail(e, "field %s: offsets decrease", name);
            for (int32_t j = t->off[c]; j < t->off[c + 1]; j++)
                if (t->ids[j] < 0 || t->ids[j] >= t->vocab)
                    return ts_fail(e, "field %s: id %d outside [0, %ld)", name, t->ids[j], (long)t->vocab);
        }
    }
    if (t->len)
        for (int b = 0; b < n; b++)
            if (t->len[b] < 1 || t->len[b] > t->dim[1])
                return ts_fail(e, "field %s: len[%d] = %d outside 1..%d", name, b, t->len[b], t->dim[1]);
    return 0;
}

/* Opens the dataset with its defaults (or the keys given) and checks a batch of each split. */
static int check_dataset(const ts_plugin *p, ts_cfg *cfg, int keys_given, FILE *log, ts_err *e)
{
    const ts_dataset_ops *ops = p->ops;
    const ts_key *lists[1] = {p->keys};
    ts_ctx ctx;
    ts_ctx_init(&ctx, CHECK_SEED, 64);
    ts_data D;
    memset(&D, 0, sizeof D);
    D.ctx = &ctx;
    ctx.data = &D;
    ctx.data_ops = ops;
    int rc = 0;
    ts_err pe;
    if (ts_cfg_validate(cfg, NULL, lists, 1, &pe) || ops->open(&D, cfg, &pe)) {
        if (TS_OP(ops, close)) ops->close(&D);
        ts_ctx_free(&ctx);
        if (keys_given)
            return ts_fail(e, "%s: cannot open it with the keys given: %s", p->name, pe.msg);
        /* A dataset whose defaults name no data cannot be opened here: say so, do not fail. */
        if (log) fprintf(log, "  dataset %s: not opened with its defaults (%s); give it keys "
                         "(path=...) to check its batches\n", p->name, pe.msg);
        return 0;
    }
    long rows[64];
    for (int s = 0; s < 3 && !rc; s++) {
        int n = (int)(D.nrows[s] < 64 ? D.nrows[s] : 64);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) rows[i] = (D.nrows[s] - 1) * i / (n > 1 ? n - 1 : 1);
        if (ops->batch(&D, (ts_phase)s, rows, n, &pe)) { rc = ts_fail(e, "%s: batch: %s", p->name, pe.msg); break; }
        for (int f = 0; f < D.nfield && !rc; f++) {
            D.field[f].dim[0] = n;
            if (check_field(D.field_name[f], &D.field[f], n, &pe))
                rc = ts_fail(e, "%s (%s split): %s", p->name, ts_phase_name((ts_phase)s), pe.msg);
        }
    }
    if (log && !rc)
        fprintf(log, "  dataset %s: %d fields, %ld/%ld/%ld rows, batches of each split well formed\n",
                p->name, D.nfield, D.nrows[0], D.nrows[1], D.nrows[2]);
    if (TS_OP(ops, close)) ops->close(&D);
    ts_ctx_free(&ctx);
    return rc;
}

int ts_check_plugin_keys(const ts_plugin *p, char *const *keys, int nkeys, FILE *log, ts_err *e)
{
    /* The section the plugin reads, its check keys, then the keys given, which override them. */
    const char *section = "layer.check", *pairs = "";
    switch (p->kind) {
    case TS_LAYER: pairs = TS_OP((const ts_layer_ops *)p->ops, check_keys); break;
    case TS_HEAD:
        section = "head.check";
        pairs = TS_OP((const ts_head_ops *)p->ops, check_keys);
        break;
    case TS_LOSS: section = "head.check"; break;
    case TS_OPTIMIZER:
        section = "optimizer";
        for (const ts_key *k = p->keys; k && k->key; k++)
            if (!strcmp(k->key, "lr")) pairs = "lr=0.05";
        break;
    case TS_DATASET: section = "data"; break;
    default: return ts_fail(e, "%s: unknown kind %d", p->name, (int)p->kind);
    }
    ts_ini ini;
    if (ts_ini_from_pairs(&ini, section, pairs, e)) { ts_ini_free(&ini); return -1; }
    for (int i = 0; i < nkeys; i++) {
        char assign[TS_PATH_MAX];
        if (!strchr(keys[i], '=') || keys[i][0] == '=') {
            ts_ini_free(&ini);
            return ts_fail(e, "check-plugin: '%s' is not KEY=VALUE; give the plugin's keys as "
                           "`tessera describe %s` lists them, e.g. units=8", keys[i], p->name);
        }
        snprintf(assign, sizeof assign, "%s.%s", section, keys[i]);
        if (ts_ini_override(&ini, assign, e)) { ts_ini_free(&ini); return -1; }
    }
    ts_cfg *cfg = &ini.sec[0];
    if (log && nkeys) {
        fprintf(log, "  %s %s with keys:", ts_kind_name(p->kind), p->name);
        for (int i = 0; i < cfg->n; i++) fprintf(log, " %s=%s", cfg->ent[i].key, cfg->ent[i].value);
        fprintf(log, "\n");
    }
    int rc;
    switch (p->kind) {
    case TS_LOSS: rc = check_loss(p, cfg, log, e); break;
    case TS_OPTIMIZER: rc = check_optimizer(p, cfg, log, e); break;
    case TS_DATASET: rc = check_dataset(p, cfg, nkeys > 0, log, e); break;
    default: rc = check_graph_plugin(p, cfg, log, e); break;
    }
    ts_ini_free(&ini);
    return rc;
}

int ts_check_plugin(const ts_plugin *p, FILE *log, ts_err *e)
{
    return ts_check_plugin_keys(p, NULL, 0, log, e);
}
