/* check.c — plugin conformance (`tessera check-plugin`): central finite-difference gradient
 * checks of layers, losses and heads on random inputs (with random sequence lengths where
 * asked), an optimizer's descent on a known quadratic (dense and sparse rows), and a
 * dataset's batches against its declared fields. Not a test runner: it returns a status and
 * writes what it did to a log stream. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_SEED 20261128u
#define MAX_SAMPLES 24         /* coordinates checked per tensor */

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

/* ---- layers -------------------------------------------------------------------------------- */
typedef struct layer_check {
    ts_layer *L;
    const ts_layer_ops *ops;
    ts_ctx *ctx;
    ts_rng rng0;             /* the rng state every forward starts from (dropout, sampling) */
    float *R[TS_MAX_OUT];    /* random projections: loss = sum_k <R_k, out_k> */
    ts_err *e;
} layer_check;

static double layer_loss(void *arg, int *ok)
{
    layer_check *c = arg;
    c->ctx->rng = c->rng0;
    for (int k = 0; k < c->L->nout; k++) c->L->out[k].dim[0] = c->L->in[0]->dim[0];
    if (c->ops->forward(c->L, TS_TRAIN, c->e)) { *ok = 0; return 0; }
    double s = 0;
    for (int k = 0; k < c->L->nout; k++) {
        ts_tensor *t = &c->L->out[k];
        if (t->dtype != TS_F32) continue;
        long n = ts_numel(t);
        for (long i = 0; i < n; i++) s += (double)c->R[k][i] * t->x[i];
    }
    return s;
}

static int check_layer(const ts_plugin *p, FILE *log, ts_err *e)
{
    const ts_layer_ops *ops = p->ops;
    if (!ops->build || !ops->forward || !ops->backward)
        return ts_fail(e, "%s: a layer needs build, forward and backward", p->name);
    ts_ctx ctx;
    ts_ctx_init(&ctx, CHECK_SEED, 1);
    ts_rng r;
    ts_rng_seed(&r, CHECK_SEED);
    spec_tensor in[TS_MAX_IN];
    int nin = 0, rc = -1;
    int32_t *len = NULL;
    ts_ini ini = {0};
    ts_layer L;
    memset(&L, 0, sizeof L);
    float *arena = NULL, *ga = NULL;
    size_t arena_n = 0;
    layer_check lc = {.L = &L, .ops = ops, .ctx = &ctx, .e = e};
    int built = 0;
    if (parse_inputs(ops->check_inputs ? ops->check_inputs : "f32 4 5", in, TS_MAX_IN, &nin, &r,
                     &len, e))
        goto out;
    ctx.max_batch = in[0].t.dim[0];
    if (ts_ini_from_pairs(&ini, "layer.check", ops->check_keys, e)) goto out;
    static const char *const hk[] = {"type", "input", NULL};
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(&ini.sec[0], hk, lists, 1, e)) goto out;
    L.name = "check";
    L.ctx = &ctx;
    L.nin = nin;
    L.nout = 1;
    for (int i = 0; i < nin; i++) L.in[i] = &in[i].t;
    ctx.owner = "layer.check";
    if (ops->build(&L, &ini.sec[0], e)) goto out;
    built = 1;
    for (int k = 0; k < L.nout; k++) {
        ts_tensor *t = &L.out[k];
        t->dim[0] = ctx.max_batch;
        if (t->dtype != TS_F32) continue;
        long n = ts_numel(t);
        t->x = calloc((size_t)n, sizeof *t->x);
        t->dx = calloc((size_t)n, sizeof *t->dx);
        lc.R[k] = malloc((size_t)n * sizeof *lc.R[k]);
        for (long i = 0; i < n; i++) lc.R[k][i] = (float)(2 * ts_rng_uniform(&r) - 1);
    }
    if (ts_ctx_alloc_params(&ctx, 0, &arena, &arena_n, e)) goto out;
    /* Random (not the init's) parameter values, so zero biases and ones do not hide errors. */
    for (int i = 0; i < ctx.nparams; i++) {
        ts_param *pp = ctx.params[i];
        for (long j = 0; j < (long)pp->rows * pp->cols; j++)
            pp->w[j] = (float)(0.5 * ts_rng_normal(&r));
    }
    lc.rng0 = ctx.rng;
    int ok = 1;
    layer_loss(&lc, &ok);
    if (!ok) goto out;
    for (int k = 0; k < L.nout; k++)
        if (L.out[k].dtype == TS_F32)
            memcpy(L.out[k].dx, lc.R[k], (size_t)ts_numel(&L.out[k]) * sizeof(float));
    if (ops->backward(&L, e)) goto out;

    fd_stats st = {0};
    char what[TS_NAME_MAX * 3];
    for (int i = 0; i < nin; i++) {
        ts_tensor *t = &in[i].t;
        if (t->dtype != TS_F32) continue;
        long n = ts_numel(t);
        ga = malloc((size_t)n * sizeof *ga);
        memcpy(ga, t->dx, (size_t)n * sizeof *ga);
        snprintf(what, sizeof what, "d input %d", i);
        fd_check(t->x, ga, n, layer_loss, &lc, &r, what, log, &st, NULL, 0, 0);
        free(ga);
        ga = NULL;
    }
    for (int i = 0; i < ctx.nparams; i++) {
        ts_param *pp = ctx.params[i];
        long n = (long)pp->rows * pp->cols;
        ga = malloc((size_t)n * sizeof *ga);
        memcpy(ga, pp->g, (size_t)n * sizeof *ga);
        snprintf(what, sizeof what, "d %s", pp->name);
        int sparse = (pp->flags & TS_PARAM_SPARSE) != 0;
        if (sparse && pp->ntouched == 0 && log)
            fprintf(log, "    note: sparse %s: backward touched no row\n", pp->name);
        fd_check(pp->w, ga, n, layer_loss, &lc, &r, what, log, &st, sparse ? pp->touched : NULL,
                 sparse ? pp->ntouched : 0, pp->cols);
        free(ga);
        ga = NULL;
    }
    if (log)
        fprintf(log, "  layer %s: %d gradient coordinates checked, %d wrong (worst error %.2f of "
                "the tolerance)\n", p->name, st.checked, st.failed, st.worst);
    if (st.failed)
        ts_fail(e, "%s: backward disagrees with finite differences in %d of %d coordinates",
                p->name, st.failed, st.checked);
    else if (st.checked == 0)
        ts_fail(e, "%s: nothing to check: no float input and no parameter", p->name);
    else
        rc = 0;
out:
    if (built && ops->destroy) ops->destroy(&L);
    for (int k = 0; k < TS_MAX_OUT; k++) {
        free(lc.R[k]);
        if (built && L.out[k].dtype == TS_F32) { free(L.out[k].x); free(L.out[k].dx); }
    }
    for (int i = 0; i < nin; i++) free_tensor(&in[i].t);
    free(len);
    free(arena);
    ts_ctx_free(&ctx);
    ts_ini_free(&ini);
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

static void draw_labels(ts_label_kind kind, int n, int k, float *y, ts_rng *r)
{
    for (int i = 0; i < n; i++) {
        if (kind == TS_LABEL_BINARY) y[i] = (float)(i % 2);   /* both classes present */
        else if (kind == TS_LABEL_CLASS) y[i] = (float)ts_rng_below(r, (uint64_t)k);
        else for (int j = 0; j < k; j++) y[i * k + j] = (float)ts_rng_normal(r);
    }
}

static int check_loss(const ts_plugin *p, FILE *log, ts_err *e)
{
    const ts_loss_ops *ops = p->ops;
    ts_rng r;
    ts_rng_seed(&r, CHECK_SEED);
    ts_ini ini;
    if (ts_ini_from_pairs(&ini, "head.check", "", e)) return -1;
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(&ini.sec[0], NULL, lists, 1, e)) { ts_ini_free(&ini); return -1; }
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
        if (ops->init(&c.state, &ini.sec[0], e)) rc = -1;
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
        if (c.state && ops->destroy) ops->destroy(c.state);
        free(c.z); free(c.y); free(c.w); free(dz);
    }
    ts_ini_free(&ini);
    return rc;
}

/* ---- heads --------------------------------------------------------------------------------- */
typedef struct head_check {
    ts_head *H;
    const ts_head_ops *ops;
    ts_ctx *ctx;
    ts_rng rng0;
    ts_err *e;
} head_check;

static double head_loss(void *arg, int *ok)
{
    head_check *c = arg;
    c->ctx->rng = c->rng0;
    double l = 0;
    for (int i = 0; i < c->H->nin; i++)
        if (c->H->in[i]->dx) memset(c->H->in[i]->dx, 0, (size_t)ts_numel(c->H->in[i]) * sizeof(float));
    if (c->ops->forward(c->H, TS_TRAIN, &l, c->e)) *ok = 0;
    return l;
}

static int check_head(const ts_plugin *p, FILE *log, ts_err *e)
{
    const ts_head_ops *ops = p->ops;
    ts_ctx ctx;
    ts_ctx_init(&ctx, CHECK_SEED, 1);
    ts_rng r;
    ts_rng_seed(&r, CHECK_SEED);
    spec_tensor in[TS_MAX_IN];
    int nin = 0, rc = -1, built = 0;
    int32_t *len = NULL;
    ts_ini ini = {0};
    ts_head H;
    memset(&H, 0, sizeof H);
    ts_tensor label = {0};
    float *arena = NULL, *ga = NULL;
    size_t arena_n = 0;
    head_check hc = {.H = &H, .ops = ops, .ctx = &ctx, .e = e};
    if (parse_inputs(ops->check_inputs ? ops->check_inputs : "f32 6 1", in, TS_MAX_IN, &nin, &r,
                     &len, e))
        goto out;
    int B = in[0].t.dim[0];
    ctx.max_batch = B;
    if (ts_ini_from_pairs(&ini, "head.check", ops->check_keys, e)) goto out;
    /* The loss: `loss=NAME` among the check keys, else the usual one for the label. */
    const char *lname = ts_cfg_str(&ini.sec[0], "loss");
    const char *lab = ops->check_label;
    if (!lname && lab)
        lname = !strncmp(lab, "binary", 6) ? "bce" : !strncmp(lab, "class", 5) ? "softmax_ce" : "mse";
    const ts_plugin *lp = NULL;
    if (lname && !(lp = ts_plugin_find(TS_LOSS, lname, e))) goto out;
    static const char *const hk[] = {"type", "input", "label", "loss", "weight", NULL};
    const ts_key *lists[2] = {p->keys, lp ? lp->keys : NULL};
    if (ts_cfg_validate(&ini.sec[0], hk, lists, 2, e)) goto out;
    if (lab) {
        int k = !strncmp(lab, "class", 5) ? atoi(lab + 5) : 1;
        if (k < 1) k = 1;
        label.dtype = TS_F32;
        label.ndim = 2;
        label.dim[0] = B;
        label.dim[1] = 1;
        label.x = malloc(sizeof(float) * (size_t)B);
        draw_labels(!strncmp(lab, "binary", 6) ? TS_LABEL_BINARY :
                    !strncmp(lab, "class", 5) ? TS_LABEL_CLASS : TS_LABEL_REAL, B, k, label.x, &r);
        H.label = &label;
    }
    H.name = "check";
    H.ctx = &ctx;
    H.nin = nin;
    H.grad_scale = 1;
    for (int i = 0; i < nin; i++) H.in[i] = &in[i].t;
    if (lp) {
        H.loss = lp->ops;
        if (H.loss->init(&H.loss_state, &ini.sec[0], e)) goto out;
    }
    ctx.owner = "head.check";
    if (ops->build(&H, &ini.sec[0], e)) goto out;
    built = 1;
    if (ts_ctx_alloc_params(&ctx, 0, &arena, &arena_n, e)) goto out;
    for (int i = 0; i < ctx.nparams; i++) {
        ts_param *pp = ctx.params[i];
        if (pp->rows * pp->cols == 1) continue;   /* a learned scalar (temperature) keeps its init */
        for (long j = 0; j < (long)pp->rows * pp->cols; j++)
            pp->w[j] = (float)(0.5 * ts_rng_normal(&r));
    }
    hc.rng0 = ctx.rng;
    int ok = 1;
    for (int i = 0; i < ctx.nparams; i++)
        memset(ctx.params[i]->g, 0, sizeof(float) * (size_t)ctx.params[i]->rows * ctx.params[i]->cols);
    double l0 = head_loss(&hc, &ok);
    if (!ok) goto out;
    if (!isfinite(l0)) { ts_fail(e, "%s: the loss is %g on ordinary inputs", p->name, l0); goto out; }
    fd_stats st = {0};
    char what[TS_NAME_MAX * 3];
    float *gin[TS_MAX_IN] = {0};
    for (int i = 0; i < nin; i++)
        if (in[i].t.dtype == TS_F32) {
            long n = ts_numel(&in[i].t);
            gin[i] = malloc((size_t)n * sizeof(float));
            memcpy(gin[i], in[i].t.dx, (size_t)n * sizeof(float));
        }
    float **gp = calloc((size_t)(ctx.nparams ? ctx.nparams : 1), sizeof *gp);
    for (int i = 0; i < ctx.nparams; i++) {
        long n = (long)ctx.params[i]->rows * ctx.params[i]->cols;
        gp[i] = malloc((size_t)n * sizeof(float));
        memcpy(gp[i], ctx.params[i]->g, (size_t)n * sizeof(float));
    }
    for (int i = 0; i < nin; i++) {
        if (!gin[i]) continue;
        snprintf(what, sizeof what, "d input %d", i);
        fd_check(in[i].t.x, gin[i], ts_numel(&in[i].t), head_loss, &hc, &r, what, log, &st, NULL,
                 0, 0);
    }
    for (int i = 0; i < ctx.nparams; i++) {
        ts_param *pp = ctx.params[i];
        snprintf(what, sizeof what, "d %s", pp->name);
        int sparse = (pp->flags & TS_PARAM_SPARSE) != 0;
        fd_check(pp->w, gp[i], (long)pp->rows * pp->cols, head_loss, &hc, &r, what, log, &st,
                 sparse ? pp->touched : NULL, sparse ? pp->ntouched : 0, pp->cols);
    }
    for (int i = 0; i < nin; i++) free(gin[i]);
    for (int i = 0; i < ctx.nparams; i++) free(gp[i]);
    free(gp);
    if (log)
        fprintf(log, "  head %s: %d gradient coordinates checked, %d wrong (worst error %.2f of "
                "the tolerance)\n", p->name, st.checked, st.failed, st.worst);
    if (st.failed)
        ts_fail(e, "%s: its gradient disagrees with finite differences in %d of %d coordinates",
                p->name, st.failed, st.checked);
    else
        rc = 0;
out:
    if (built && ops->destroy) ops->destroy(&H);
    if (H.loss && H.loss_state && H.loss->destroy) H.loss->destroy(H.loss_state);
    for (int i = 0; i < nin; i++) free_tensor(&in[i].t);
    free(label.x);
    free(len);
    free(ga);
    free(arena);
    ts_ctx_free(&ctx);
    ts_ini_free(&ini);
    return rc;
}

/* ---- optimizers ---------------------------------------------------------------------------- */
/* f(w) = 1/2 sum_i a_i (w_i - c_i)^2 with a_i in [0.5, 2]: every sane optimizer with a
 * moderate rate gets f below 1 % of its start within 2000 steps. */
static int check_optimizer(const ts_plugin *p, FILE *log, ts_err *e)
{
    const ts_optim_ops *ops = p->ops;
    int has_lr = 0;
    for (const ts_key *k = p->keys; k && k->key; k++) has_lr |= !strcmp(k->key, "lr");
    ts_ini ini;
    if (ts_ini_from_pairs(&ini, "optimizer", has_lr ? "lr=0.05" : "", e)) return -1;
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(&ini.sec[0], NULL, lists, 1, e)) { ts_ini_free(&ini); return -1; }
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
    if (ops->init(&state, &ini.sec[0], e)) goto out;
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
    if (state && ops->destroy) ops->destroy(state);
    free(arena);
    ts_ctx_free(&ctx);
    ts_ini_free(&ini);
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

static int check_dataset(const ts_plugin *p, FILE *log, ts_err *e)
{
    const ts_dataset_ops *ops = p->ops;
    ts_ini ini;
    if (ts_ini_from_pairs(&ini, "data", "", e)) return -1;
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
    if (ts_cfg_validate(&ini.sec[0], NULL, lists, 1, &pe) || ops->open(&D, &ini.sec[0], &pe)) {
        /* A dataset whose defaults name no data cannot be opened here: say so, do not fail. */
        if (log) fprintf(log, "  dataset %s: not opened with its defaults (%s); its own tests check it\n",
                         p->name, pe.msg);
        ts_ini_free(&ini);
        ts_ctx_free(&ctx);
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
    if (ops->close) ops->close(&D);
    ts_ini_free(&ini);
    ts_ctx_free(&ctx);
    return rc;
}

int ts_check_plugin(const ts_plugin *p, FILE *log, ts_err *e)
{
    switch (p->kind) {
    case TS_LAYER: return check_layer(p, log, e);
    case TS_LOSS: return check_loss(p, log, e);
    case TS_HEAD: return check_head(p, log, e);
    case TS_OPTIMIZER: return check_optimizer(p, log, e);
    case TS_DATASET: return check_dataset(p, log, e);
    }
    return ts_fail(e, "%s: unknown kind %d", p->name, (int)p->kind);
}
