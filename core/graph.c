/* graph.c — from a parsed experiment to a runnable graph: the run context (parameters in one
 * arena, rng, lookups), the dataset, layers sorted topologically with cycle / unknown-input /
 * shape errors, label leaks and layers named like fields refused, dead layers warned about,
 * tied weights, heads, the labels checked once against what each head takes, and one forward
 * and backward pass. The training loop itself is in train.c. */
#define _XOPEN_SOURCE 700   /* realpath */
#define _DEFAULT_SOURCE     /* madvise's MADV_HUGEPAGE */
#include "internal.h"
#include "dist.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdint.h>
#include <sys/mman.h>

/* ---- context ------------------------------------------------------------------------------- */
void ts_ctx_init(ts_ctx *ctx, uint64_t seed, int max_batch)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->seed = seed;
    ctx->max_batch = max_batch;
    ts_rng_seed(&ctx->rng, seed);
}

void ts_ctx_free(ts_ctx *ctx)
{
    for (int i = 0; i < ctx->nparams; i++) {
        ts_param *p = ctx->params[i];
        if (p->shared) { free(p); continue; }   /* a proxy: its arrays belong to the owner */
        free(p->touched);
        free(p->is_touched);
        free(p);
    }
    free(ctx->params);
    free(ctx->metrics);
    for (int i = 0; i < ctx->ndata; i++) free(ctx->data_files[i]);
    free(ctx->data_files);
    free(ctx->fitted);
}

/* Remembers a data path that exists, once, for the run's identity (rundir.c). */
static void note_data_file(ts_ctx *ctx, const char *path)
{
    if (!ctx) return;
    for (int i = 0; i < ctx->ndata; i++)
        if (!strcmp(ctx->data_files[i], path)) return;
    if (ctx->ndata == ctx->data_cap) {
        int cap = ctx->data_cap ? 2 * ctx->data_cap : 8;
        char **m = realloc(ctx->data_files, (size_t)cap * sizeof *m);
        if (!m) return;
        ctx->data_files = m;
        ctx->data_cap = cap;
    }
    char abs[TS_PATH_MAX];
    const char *p = realpath(path, abs) ? abs : path;
    if ((ctx->data_files[ctx->ndata] = strdup(p))) ctx->ndata++;
}

ts_rng *ts_ctx_rng(ts_ctx *ctx) { return &ctx->rng; }
ts_open_mode ts_ctx_open_mode(const ts_ctx *ctx) { return ctx ? ctx->open_mode : TS_OPEN_TRAIN; }

const char *ts_ctx_fitted(const ts_ctx *ctx, size_t *n)
{
    if (n) *n = ctx && ctx->fitted ? ctx->nfitted : 0;
    return ctx ? ctx->fitted : NULL;
}
int ts_ctx_max_batch(const ts_ctx *ctx) { return ctx->max_batch; }
void ts_ctx_parallel(ts_ctx *ctx, int ntasks, void (*fn)(void *arg, int task), void *arg)
{
    ts_pool_run(ctx ? ctx->pool : NULL, ntasks, fn, arg);
}
uint64_t ts_ctx_seed(const ts_ctx *ctx) { return ctx->seed; }
const char *ts_ctx_results_dir(const ts_ctx *ctx) { return ctx->results_dir; }

const ts_tensor *ts_ctx_field(ts_ctx *ctx, const char *name)
{
    ts_data *D = ctx->data;
    for (int i = 0; D && i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return &D->field[i];
    return NULL;
}

int ts_ctx_aux(ts_ctx *ctx, const char *name, const void **ptr, long *n)
{
    if (!ctx->data || !ctx->data_ops || !TS_OP(ctx->data_ops, aux)) return -1;
    return TS_OP(ctx->data_ops, aux)(ctx->data, name, ptr, n);
}

void ts_metric(ts_ctx *ctx, const char *task, const char *metric, double value)
{
    if (ctx->nmetrics == ctx->mcap) {
        int cap = ctx->mcap ? 2 * ctx->mcap : 32;
        ts_metric_rec *m = realloc(ctx->metrics, (size_t)cap * sizeof *m);
        if (!m) return;
        ctx->metrics = m;
        ctx->mcap = cap;
    }
    ts_metric_rec *r = &ctx->metrics[ctx->nmetrics++];
    r->split = ctx->phase;
    snprintf(r->task, sizeof r->task, "%s", task);
    snprintf(r->metric, sizeof r->metric, "%s", metric);
    r->value = value;
}

const char *ts_ctx_path(ts_ctx *ctx, const char *path_in, char *buf, size_t n)
{
    char path[TS_PATH_MAX];   /* path_in may be buf itself: every candidate is written into buf */
    snprintf(path, sizeof path, "%s", path_in);
    if (path[0] == '/' || access(path, F_OK) == 0) {
        snprintf(buf, n, "%s", path);
        if (access(buf, F_OK) == 0) note_data_file(ctx, buf);
        return buf;
    }
    const char *dirs[3] = {ctx ? ctx->exp_dir : NULL, NULL, getenv("TESSERA_DATA_DIR")};
    char parent[TS_PATH_MAX];
    if (ctx && ctx->exp_dir[0]) {
        snprintf(parent, sizeof parent, "%s/..", ctx->exp_dir);
        dirs[1] = parent;
    }
    for (int i = 0; i < 3; i++) {
        if (!dirs[i] || !dirs[i][0]) continue;
        snprintf(buf, n, "%s/%s", dirs[i], path);
        if (access(buf, F_OK) == 0) {
            note_data_file(ctx, buf);
            return buf;
        }
    }
    snprintf(buf, n, "%s", path);
    return buf;
}

ts_tensor *ts_data_field(ts_data *D, const char *name, ts_dtype dtype, int ndim, const int *dims,
                         int64_t vocab, ts_err *e)
{
    if (D->nfield == TS_MAX_FIELDS)
        return ts_fail(e, "a dataset may declare at most %d fields", TS_MAX_FIELDS), NULL;
    if (ndim < 1 || ndim > TS_MAX_DIMS)
        return ts_fail(e, "field '%s': ndim %d is outside 1..%d", name, ndim, TS_MAX_DIMS), NULL;
    int i = D->nfield++;
    snprintf(D->field_name[i], TS_NAME_MAX, "%s", name);
    ts_tensor *t = &D->field[i];
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    t->dim[0] = D->ctx ? D->ctx->max_batch : 0;
    for (int k = 1; k < ndim; k++) t->dim[k] = dims[k - 1];
    t->vocab = vocab;
    return t;
}

int ts_data_label(ts_data *D, const char *name, ts_err *e)
{
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) {
            if (D->ctx) D->ctx->field_label[i] = 1;
            return 0;
        }
    return ts_fail(e, "ts_data_label: the dataset has no field '%s' (declare it with "
                   "ts_data_field first)", name);
}

void ts_head_label_classes(ts_head *H, long k)
{
    if (H && H->ctx) H->ctx->label_classes = k;
}

/* ---- parameters ---------------------------------------------------------------------------- */
ts_param *ts_param_add(ts_ctx *ctx, const char *name, int rows, int cols, ts_init init,
                       float scale, unsigned flags, ts_err *e)
{
    if (rows <= 0 || cols <= 0)
        return ts_fail(e, "%s: parameter %s has shape (%d, %d); both must be positive",
                       ctx->owner ? ctx->owner : "?", name, rows, cols), NULL;
    if (ctx->share_from) {
        /* Tied weights: hand back the other layer's parameter in the same position. */
        if (ctx->share_i >= ctx->share_n)
            return ts_fail(e, "%s: shares weights with a layer that has only %d parameters",
                           ctx->owner, ctx->share_n), NULL;
        ts_param *p = ctx->share_from[ctx->share_i++];
        if ((p->flags & TS_PARAM_SHARDED ? p->shard_rows : p->rows) != rows || p->cols != cols)
            return ts_fail(e, "%s: cannot share parameter %s: here it is (%d, %d), in %s it is "
                           "(%d, %d); give both layers the same keys and input widths",
                           ctx->owner, name, rows, cols, p->name, p->rows, p->cols), NULL;
        if (ctx->nparams == ctx->cap) {
            int cap = ctx->cap ? 2 * ctx->cap : 32;
            ts_param **n = realloc(ctx->params, (size_t)cap * sizeof *n);
            if (!n) return ts_fail(e, "out of memory"), NULL;
            ctx->params = n;
            ctx->cap = cap;
        }
        /* The list holds a second reference marked by a proxy: the optimizer skips it. */
        ts_param *proxy = calloc(1, sizeof *proxy);
        if (!proxy) return ts_fail(e, "out of memory"), NULL;
        *proxy = *p;
        proxy->shared = 1;
        proxy->host = p;
        ctx->params[ctx->nparams++] = proxy;
        return p;
    }
    ts_param *p = calloc(1, sizeof *p);
    if (!p) return ts_fail(e, "out of memory"), NULL;
    snprintf(p->name, sizeof p->name, "%s.%s", ctx->owner ? ctx->owner : "param", name);
    p->rows = rows;
    p->cols = cols;
    if (flags & TS_PARAM_SHARDED) {
        if (!(flags & TS_PARAM_SPARSE))
            return free(p), ts_fail(e, "%s: parameter %s: only a sparse table can be sharded",
                                    ctx->owner ? ctx->owner : "?", name), NULL;
        /* this rank's rows: r = rank, rank + size, ... below rows */
        int rk = ts_dist_rank(), sz = ts_dist_size();
        p->shard_rows = rows;
        p->rows = rows > rk ? (rows - rk + sz - 1) / sz : 0;
        if (p->rows < 1)
            return free(p), ts_fail(e, "%s: parameter %s has %d rows, fewer than the %d ranks it "
                                    "is sharded over; run fewer ranks or leave it whole",
                                    ctx->owner ? ctx->owner : "?", name, rows, sz), NULL;
    }
    p->init = init;
    p->scale = scale;
    p->flags = flags;
    if (flags & TS_PARAM_SPARSE) {
        p->touched = malloc((size_t)rows * sizeof *p->touched);
        p->is_touched = calloc((size_t)rows, 1);
        if (!p->touched || !p->is_touched) { free(p->touched); free(p->is_touched); free(p);
            return ts_fail(e, "out of memory"), NULL; }
    }
    if (ctx->nparams == ctx->cap) {
        int cap = ctx->cap ? 2 * ctx->cap : 32;
        ts_param **n = realloc(ctx->params, (size_t)cap * sizeof *n);
        if (!n) { free(p); return ts_fail(e, "out of memory"), NULL; }
        ctx->params = n;
        ctx->cap = cap;
    }
    ctx->params[ctx->nparams++] = p;
    return p;
}

void ts_param_touch(ts_param *p, int32_t r)
{
    if (!p->is_touched || r < 0 || r >= p->rows || p->is_touched[r]) return;
    p->is_touched[r] = 1;
    p->touched[p->ntouched++] = r;
}

/* A sharded table draws the whole table's values in row order, as one process would, and keeps
 * this rank's rows: every rank of any size starts from the one-process table (the draws cost
 * time for the whole table, the memory is the shard's). */
static void init_sharded(ts_param *p, ts_rng *r)
{
    int rk = ts_dist_rank(), sz = ts_dist_size();
    double rows = (double)p->shard_rows, a = 0;
    if (p->init == TS_INIT_XAVIER) a = sqrt(6.0 / (rows + p->cols));
    else if (p->init == TS_INIT_HE) a = sqrt(2.0 / rows);
    for (int64_t g = 0; g < p->shard_rows; g++) {
        float *w = g % sz == rk ? p->w + (g / sz) * (int64_t)p->cols : NULL;
        for (int j = 0; j < p->cols; j++) {
            double v;
            switch (p->init) {
            case TS_INIT_ZEROS: v = 0; break;
            case TS_INIT_ONES: v = 1; break;
            case TS_INIT_CONST: v = p->scale; break;
            case TS_INIT_UNIFORM: v = (2 * ts_rng_uniform(r) - 1) * p->scale; break;
            case TS_INIT_NORMAL: v = ts_rng_normal(r) * p->scale; break;
            case TS_INIT_XAVIER: v = (2 * ts_rng_uniform(r) - 1) * a; break;
            default: v = ts_rng_normal(r) * a; break;
            }
            if (w) w[j] = (float)v;
        }
    }
}

void ts_param_init_values(ts_param *p, ts_rng *r)
{
    if ((p->flags & TS_PARAM_SHARDED) && p->shard_rows != p->rows) {
        init_sharded(p, r);
        return;
    }
    long n = (long)p->rows * p->cols;
    double a;
    switch (p->init) {
    case TS_INIT_ZEROS: memset(p->w, 0, (size_t)n * sizeof *p->w); break;
    case TS_INIT_ONES: for (long i = 0; i < n; i++) p->w[i] = 1; break;
    case TS_INIT_CONST: for (long i = 0; i < n; i++) p->w[i] = p->scale; break;
    case TS_INIT_UNIFORM:
        for (long i = 0; i < n; i++) p->w[i] = (float)((2 * ts_rng_uniform(r) - 1) * p->scale);
        break;
    case TS_INIT_NORMAL:
        for (long i = 0; i < n; i++) p->w[i] = (float)(ts_rng_normal(r) * p->scale);
        break;
    case TS_INIT_XAVIER:
        a = sqrt(6.0 / (p->rows + p->cols));
        for (long i = 0; i < n; i++) p->w[i] = (float)((2 * ts_rng_uniform(r) - 1) * a);
        break;
    case TS_INIT_HE:
        a = sqrt(2.0 / p->rows);
        for (long i = 0; i < n; i++) p->w[i] = (float)(ts_rng_normal(r) * a);
        break;
    }
}

int ts_ctx_alloc_params(ts_ctx *ctx, int nslots, float **arena, size_t *arena_n, ts_err *e)
{
    size_t total = 0;
    for (int i = 0; i < ctx->nparams; i++) {
        ts_param *p = ctx->params[i];
        if (!p->shared) total += (size_t)p->rows * p->cols * (size_t)(2 + nslots);
    }
    float *a = calloc(total ? total : 1, sizeof *a);
    if (!a)
        return ts_fail(e, "cannot allocate %.1f MiB for the parameters; make the model or the "
                       "embedding tables smaller", total * 4.0 / 1048576);
#ifdef MADV_HUGEPAGE
    /* A batch reads and updates a table's rows in random order: 2 MiB pages, where the system
     * gives them on request (transparent_hugepage = madvise), spare the TLB a miss per row (the
     * DSSM trained 13 % faster on 2 threads, issue 17). Only the aligned 2 MiB blocks inside the
     * arena are asked for; a page still becomes resident at its first use. */
    size_t big = (size_t)2 << 20;
    uintptr_t lo = ((uintptr_t)a + big - 1) & ~(uintptr_t)(big - 1);
    uintptr_t hi = ((uintptr_t)a + total * sizeof *a) & ~(uintptr_t)(big - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#endif
    /* layout: every w, then every g, then every parameter's optimizer slots (nslots * n
     * contiguous floats each), so w and g are each one flat array; within each block the dense
     * parameters come before the sparse ones, so the dense gradients are one contiguous range
     * (one allreduce in data-parallel training, dist.h) */
    size_t off = 0;
    ctx->n_dense = 0;
    for (int k = 0; k < 3; k++)
        for (int sparse = 0; sparse < 2; sparse++)
            for (int i = 0; i < ctx->nparams; i++) {
                ts_param *p = ctx->params[i];
                if (p->shared || !(p->flags & TS_PARAM_SPARSE) != !sparse) continue;
                size_t n = (size_t)p->rows * p->cols;
                if (k == 0) p->w = a + off;
                else if (k == 1) p->g = a + off;
                else p->state = nslots ? a + off : NULL;
                if (k == 0 && !sparse) ctx->n_dense += n;
                off += k < 2 ? n : n * (size_t)nslots;
            }
    for (int i = 0; i < ctx->nparams; i++) {
        ts_param *p = ctx->params[i];
        if (p->shared) {
            ts_param *o = p->host;
            p->w = o->w; p->g = o->g; p->state = o->state;
        } else {
            ts_param_init_values(p, &ctx->rng);
        }
    }
    *arena = a;
    *arena_n = total;
    return 0;
}

void ts_param_zero_grad(ts_param *p)
{
    if (p->flags & TS_PARAM_SPARSE) {
        for (int k = 0; k < p->ntouched; k++) {
            int32_t r = p->touched[k];
            memset(p->g + (size_t)r * p->cols, 0, (size_t)p->cols * sizeof *p->g);
            p->is_touched[r] = 0;
        }
        p->ntouched = 0;
    } else {
        memset(p->g, 0, (size_t)p->rows * p->cols * sizeof *p->g);
    }
}

void ts_params_zero_grad(ts_ctx *ctx)
{
    for (int i = 0; i < ctx->nparams; i++)
        if (!ctx->params[i]->shared) ts_param_zero_grad(ctx->params[i]);
}

/* ---- loading an experiment ----------------------------------------------------------------- */
static const char *const experiment_keys[] = {"name", "seed", "description", "quick", "source",
                                              NULL};
static const char *const train_keys[] = {"epochs", "batch", "eval_batch", "early_stop", "patience",
                                         "log_every", "threads", "clip_norm", "weighting",
                                         "gradnorm_alpha", "gradnorm_lr", "output_weights",
                                         "max_steps", "checkpoint_every", "keep_checkpoints",
                                         "group_by", "output_group", "replicas", NULL};
static const char *const layer_keys[] = {"type", "input", "share", "plugin", NULL};
static const char *const head_keys[] = {"type", "input", "label", "loss", "weight", "plugin",
                                        "sample_weight", "mask", NULL};
static const char *const plugin_keys[] = {"type", "plugin", NULL};
/* The host's head keys that have a default, so that the resolved configuration (identity.txt,
 * the report's "what differs") reads the same whether the default is written out or not. */
static const ts_key head_defaults[] = {
    {"weight", "float", "1", "the head's weight in the total loss"}, {NULL, NULL, NULL, NULL}};
static const char *const data_keys[] = {"type", "plugin", "select_fraction", "select_seed",
                                        "select_by", NULL};   /* holdout.c */

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static const ts_plugin *section_plugin(ts_cfg *c, ts_kind kind, ts_err *e)
{
    const char *type = ts_cfg_str(c, "type");
    if (!type)
        return ts_fail(e, "%s:%d: [%s] needs `type =` (the %s plugin to use; `tessera plugins` "
                       "lists them)", c->file, c->line, c->name, ts_kind_name(kind)), NULL;
    const char *path = ts_cfg_str(c, "plugin");
    ts_err pe;
    const ts_plugin *p = ts_plugin_find(kind, path ? path : type, &pe);
    if (!p)
        ts_fail(e, "%s: [%s] type = %s: %s", ts_cfg_where(c, "type"), c->name, type, pe.msg);
    return p;
}

ts_exp *ts_exp_load(const char *ini_path, const ts_run_opts *o, ts_err *e)
{
    ts_exp *x = calloc(1, sizeof *x);
    if (!x) return ts_fail(e, "out of memory"), NULL;
    x->lock_fd = -1;
    if (o) x->opts = *o;
    if (ts_ini_load(&x->ini, ini_path, e)) goto fail;
    for (int i = 0; i < x->opts.noverride; i++)
        if (ts_ini_override(&x->ini, x->opts.overrides[i], e)) goto fail;

    ts_ini *ini = &x->ini;
    static const char *required[] = {"experiment", "data", "optimizer", "train"};
    for (int i = 0; i < 4; i++)
        if (!ts_ini_find(ini, required[i]))
            { ts_fail(e, "%s: has no [%s] section; every experiment needs [experiment], [data], "
                      "[optimizer], [train], layers and at least one [head.TASK] (see "
                      "docs/ini.md)", ini->file, required[i]); goto fail; }
    /* Sections: known names only. */
    for (int i = 0; i < ini->nsec; i++) {
        ts_cfg *c = &ini->sec[i];
        if (!strcmp(c->name, "experiment") || !strcmp(c->name, "data") ||
            !strcmp(c->name, "optimizer") || !strcmp(c->name, "train") ||
            starts(c->name, "layer.") || starts(c->name, "head."))
            continue;
        static const char *known[] = {"experiment", "data", "optimizer", "train", "layer.",
                                      "head."};
        const char *near = known[0];
        int best = 99;
        for (int k = 0; k < 6; k++) {
            int d = ts_edit_distance(c->name, known[k]);
            if (d < best) { best = d; near = known[k]; }
        }
        ts_fail(e, "%s:%d: unknown section [%s]; sections are [experiment], [data], [optimizer], "
                "[train], [layer.NAME] and [head.TASK]%s%s%s", ini->file, c->line, c->name,
                best <= 3 ? " — did you mean [" : "", best <= 3 ? near : "",
                best <= 3 ? (strchr(near, '.') ? "NAME]?" : "]?") : "");
        goto fail;
    }
    ts_cfg *ce = ts_ini_find(ini, "experiment");
    if (!ts_cfg_entry(ce, "source")) {
        /* Remember where the experiment came from, so a results folder's config.ini finds the
         * same relative data paths from anywhere (export, recommend, resumed comparisons). */
        char abs[TS_PATH_MAX], assign[TS_PATH_MAX + 32];
        if (realpath(ini_path, abs)) {
            snprintf(assign, sizeof assign, "experiment.source=%s", abs);
            if (ts_ini_override(ini, assign, e)) goto fail;
            ce = ts_ini_find(ini, "experiment");
        }
    }
    if (ts_cfg_validate(ce, experiment_keys, NULL, 0, e)) goto fail;
    const char *name = ts_cfg_str(ce, "name");
    if (!name) {
        ts_fail(e, "%s:%d: [experiment] needs `name =` (results go to results/NAME)", ini->file,
                ce->line);
        goto fail;
    }
    if (ts_check_run_name(name, ts_cfg_where(ce, "name"), e)) goto fail;
    snprintf(x->name, sizeof x->name, "%s", name);
    long seed = 1;
    if (ts_cfg_str(ce, "seed") && ts_cfg_int(ce, "seed", &seed, e)) goto fail;

    ts_cfg *ct = ts_ini_find(ini, "train");
    if (ts_cfg_validate(ct, train_keys, NULL, 0, e)) goto fail;
    x->epochs = 10; x->batch = 256; x->log_every = 100; x->patience = 0; x->threads = 0;
    x->replicas = 1;
    struct { const char *k; long *v; long lo, hi; } ints[] = {
        {"epochs", &x->epochs, 1, 100000}, {"batch", &x->batch, 1, 1 << 20},
        {"eval_batch", &x->eval_batch, 0, 1 << 20}, {"patience", &x->patience, 0, 100000},
        {"log_every", &x->log_every, 1, 1 << 30}, {"threads", &x->threads, 0, 256},
        {"replicas", &x->replicas, 1, 64},
        {"max_steps", &x->max_steps, 0, 1L << 40},
        {"checkpoint_every", &x->checkpoint_every, 0, 1L << 40}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (!ts_cfg_str(ct, ints[i].k)) continue;
        if (ts_cfg_int(ct, ints[i].k, ints[i].v, e)) goto fail;
        if (*ints[i].v < ints[i].lo || *ints[i].v > ints[i].hi) {
            ts_fail(e, "%s: [train] %s = %ld is outside %ld..%ld", ts_cfg_where(ct, ints[i].k),
                    ints[i].k, *ints[i].v, ints[i].lo, ints[i].hi);
            goto fail;
        }
    }
    if (x->opts.max_epochs > 0 && x->epochs > x->opts.max_epochs) x->epochs = x->opts.max_epochs;
    if (!x->eval_batch) x->eval_batch = x->batch > 1024 ? x->batch : 1024;
    if (ts_cfg_str(ct, "clip_norm") && ts_cfg_float(ct, "clip_norm", &x->clip_norm, e)) goto fail;
    if (!(x->clip_norm >= 0) || !isfinite(x->clip_norm)) {
        ts_fail(e, "%s: [train] clip_norm = %g: give a norm > 0 to clip gradients at, or 0 (the "
                "default) for no clipping", ts_cfg_where(ct, "clip_norm"), x->clip_norm);
        goto fail;
    }
    if (ts_cfg_str(ct, "early_stop"))
        snprintf(x->early_stop, sizeof x->early_stop, "%s", ts_cfg_str(ct, "early_stop"));
    if (ts_cfg_str(ct, "keep_checkpoints") &&
        ts_cfg_bool(ct, "keep_checkpoints", &x->keep_checkpoints, e)) goto fail;
    if (ts_cfg_str(ct, "weighting") &&
        ts_cfg_choice(ct, "weighting", "static|uncertainty|gradnorm", &x->weighting, e)) goto fail;

    int maxb = (int)(x->batch > x->eval_batch ? x->batch : x->eval_batch);
    ts_ctx_init(&x->ctx, (uint64_t)seed, maxb);
    {
        const char *src = ts_cfg_str(ce, "source") ? ts_cfg_str(ce, "source") : ini_path;
        const char *slash = strrchr(src, '/');
        if (slash) snprintf(x->ctx.exp_dir, sizeof x->ctx.exp_dir, "%.*s", (int)(slash - src), src);
        else snprintf(x->ctx.exp_dir, sizeof x->ctx.exp_dir, ".");
    }
    if (x->opts.results_dir && !*x->opts.results_dir) {
        ts_fail(e, "--results needs a folder: give a path");
        goto fail;
    }
    if (x->opts.results_dir)
        snprintf(x->ctx.results_dir, sizeof x->ctx.results_dir, "%s", x->opts.results_dir);
    else
        snprintf(x->ctx.results_dir, sizeof x->ctx.results_dir, "results/%s", x->name);

    /* Plugins of every section, and their keys. */
    ts_cfg *cd = ts_ini_find(ini, "data");
    if (!(x->data_pl = section_plugin(cd, TS_DATASET, e))) goto fail;
    if (ts_cfg_str(cd, "stream") || ts_cfg_str(cd, "shuffle_buffer")) {
        /* a reader that does not stream has no such keys: say what the key needs */
        int has = 0;
        for (const ts_key *k = x->data_pl->keys; k && k->key; k++) has |= !strcmp(k->key, "stream");
        const ts_dataset_ops *dops = x->data_pl->ops;
        if (!has || !TS_OP(dops, stream_begin)) {
            const char *key = ts_cfg_str(cd, "stream") ? "stream" : "shuffle_buffer";
            ts_fail(e, "%s: [data] %s: the dataset type %s cannot stream its rows (it reads them "
                    "all into memory); drop the key, or use a reader that streams (census, "
                    "table; docs/scale.md)", ts_cfg_where(cd, key), key, x->data_pl->name);
            goto fail;
        }
    }
    {
        const ts_key *l[1] = {x->data_pl->keys};
        if (ts_cfg_validate(cd, data_keys, l, 1, e)) goto fail;
    }
    ts_cfg *co = ts_ini_find(ini, "optimizer");
    if (!(x->opt_pl = section_plugin(co, TS_OPTIMIZER, e))) goto fail;
    {
        const ts_key *l[1] = {x->opt_pl->keys};
        if (ts_cfg_validate(co, plugin_keys, l, 1, e)) goto fail;
    }
    int nl = 0, nh = 0;
    for (int i = 0; i < ini->nsec; i++) {
        nl += starts(ini->sec[i].name, "layer.");
        nh += starts(ini->sec[i].name, "head.");
    }
    if (!nh) {
        ts_fail(e, "%s: has no [head.TASK] section; a head names the task, its input, label and "
                "loss (see docs/ini.md)", ini->file);
        goto fail;
    }
    x->nodes = calloc((size_t)(nl ? nl : 1), sizeof *x->nodes);
    x->heads = calloc((size_t)nh, sizeof *x->heads);
    if (!x->nodes || !x->heads) { ts_fail(e, "out of memory"); goto fail; }
    for (int i = 0; i < ini->nsec; i++) {
        ts_cfg *c = &ini->sec[i];
        if (starts(c->name, "layer.")) {
            ts_node *nd = &x->nodes[x->nnodes++];
            nd->cfg = c;
            nd->L.name = c->name + 6;
            if (!*nd->L.name || strchr(nd->L.name, '.')) {
                ts_fail(e, "%s:%d: [%s]: a layer name is one word without dots", c->file, c->line,
                        c->name);
                goto fail;
            }
            if (!(nd->pl = section_plugin(c, TS_LAYER, e))) goto fail;
            nd->ops = nd->pl->ops;
            const ts_key *l[1] = {nd->pl->keys};
            if (ts_cfg_validate(c, layer_keys, l, 1, e)) goto fail;
        } else if (starts(c->name, "head.")) {
            ts_hnode *hn = &x->heads[x->nheads++];
            hn->cfg = c;
            hn->H.name = c->name + 5;
            if (!(hn->pl = section_plugin(c, TS_HEAD, e))) goto fail;
            hn->ops = hn->pl->ops;
            const ts_key *l[3] = {hn->pl->keys, NULL, head_defaults};
            const char *loss = ts_cfg_str(c, "loss");
            const ts_plugin *lp = NULL;
            if (loss) {
                ts_err pe;
                if (!(lp = ts_plugin_find(TS_LOSS, loss, &pe))) {
                    ts_fail(e, "%s: [%s] loss = %s: %s", ts_cfg_where(c, "loss"), c->name, loss,
                            pe.msg);
                    goto fail;
                }
                l[1] = lp->keys;
                hn->H.loss = lp->ops;
                hn->loss_pl = lp;
            }
            if (ts_cfg_validate(c, head_keys, l, 3, e)) goto fail;
            hn->weight = 1;
            if (ts_cfg_str(c, "weight") && ts_cfg_float(c, "weight", &hn->weight, e)) goto fail;
            if (hn->weight < 0) {
                ts_fail(e, "%s: [%s] weight must be ≥ 0", ts_cfg_where(c, "weight"), c->name);
                goto fail;
            }
        }
    }
    return x;
fail:
    ts_exp_free(x);
    return NULL;
}

int ts_exp_open_data(ts_exp *x, ts_err *e)
{
    if (x->data_open) return 0;
    const ts_dataset_ops *ops = x->data_pl->ops;
    x->data.ctx = &x->ctx;
    x->ctx.data = &x->data;
    x->ctx.data_ops = ops;
    ts_cfg *cd = ts_ini_find(&x->ini, "data");
    ts_err pe;
    x->ctx.owner = "data";
    x->ctx.open_mode = x->opts.open_mode;
    /* The fitted state to read with: the one named (predict, evaluate), or a resumed run's own. */
    char state_path[TS_PATH_MAX + 32];
    const char *from = x->opts.fitted_from;
    if (!from && (x->opts.resume || x->opts.if_changed)) {
        snprintf(state_path, sizeof state_path, "%s/data_state.txt", x->ctx.results_dir);
        if (access(state_path, F_OK) == 0) from = state_path;
    }
    if (from && !x->ctx.fitted) {
        unsigned char *buf;
        size_t n;
        if (ts_read_file(from, &buf, &n, e)) return -1;
        char *t = realloc(buf, n + 1);
        if (!t) { free(buf); return ts_fail(e, "out of memory"); }
        t[n] = 0;
        x->ctx.fitted = t;
        x->ctx.nfitted = n;
    }
    if (ops->open(&x->data, cd, &pe)) {
        if (TS_OP(ops, close)) TS_OP(ops, close)(&x->data);
        return ts_fail(e, "%s: [data] type = %s: %s%s%s%s", ts_cfg_where(cd, "type"),
                       x->data_pl->name, pe.msg, from ? " (read with the fitted state of " : "",
                       from ? from : "", from ? ")" : "");
    }
    x->data_open = 1;
    if (TS_OP(ops, fitted) && !x->ctx.fitted) {
        if (ops->fitted(&x->data, &x->data_state, &x->ndata_state, &pe))
            return ts_fail(e, "%s: [data] type = %s: saving what it fitted: %s",
                           ts_cfg_where(cd, "type"), x->data_pl->name, pe.msg);
    } else if (x->ctx.fitted && !(x->data_state = malloc(x->ctx.nfitted + 1))) {
        return ts_fail(e, "out of memory");
    } else if (x->ctx.fitted) {
        memcpy(x->data_state, x->ctx.fitted, x->ctx.nfitted + 1);
        x->ndata_state = x->ctx.nfitted;
    }
    const void *sk = NULL;
    long nsk = 0;
    const void *rp = NULL;
    long nrp = 0;
    if (TS_OP(ops, aux) && ops->aux(&x->data, "report", &rp, &nrp) == 0 && rp && nrp > 0 &&
        (x->data_report = malloc((size_t)nrp + 1))) {
        memcpy(x->data_report, rp, (size_t)nrp);
        x->data_report[nrp] = 0;
    }
    x->skipped_rows = TS_OP(ops, aux) && ops->aux(&x->data, "skipped_rows", &sk, &nsk) == 0 && sk &&
                      nsk == 1 ? *(const long *)sk : -1;
    if (x->ctx.open_mode == TS_OPEN_TRAIN && x->data.nrows[TS_TRAIN] <= 0)
        return ts_fail(e, "%s: [data] the training split is empty; check the path and split",
                       ts_cfg_where(cd, "path"));
    if (x->ctx.open_mode != TS_OPEN_TRAIN && x->data.nrows[TS_TEST] <= 0)
        return ts_fail(e, "%s: [data] no rows to apply the run to; check the file",
                       ts_cfg_where(cd, "path"));
    return ts_exp_holdout(x, e);
}

ts_data *ts_exp_data(ts_exp *x) { return &x->data; }
const ts_dataset_ops *ts_exp_data_ops(ts_exp *x) { return x->data_pl ? x->data_pl->ops : NULL; }

ts_tensor *ts_exp_tensor(ts_exp *x, const char *name)
{
    for (int i = 0; i < x->data.nfield; i++)
        if (!strcmp(x->data.field_name[i], name)) return &x->data.field[i];
    for (int i = 0; i < x->nnodes; i++) {
        ts_node *nd = &x->nodes[i];
        size_t n = strlen(nd->L.name);
        if (strncmp(name, nd->L.name, n)) continue;
        if (!name[n] && nd->built) {
            if (nd->L.nout == 1) return &nd->L.out[0];
            return NULL;
        }
        if (name[n] == '.' && nd->built)
            for (int k = 0; k < nd->L.nout; k++)
                if (!strcmp(nd->L.out_name[k], name + n + 1)) return &nd->L.out[k];
    }
    return NULL;
}

/* Which layer produces `name` ("mix.income" -> the node "mix"); -1 for a dataset field. */
static int producer(ts_exp *x, const char *name)
{
    for (int i = 0; i < x->nnodes; i++) {
        size_t n = strlen(x->nodes[i].L.name);
        if (!strncmp(name, x->nodes[i].L.name, n) && (!name[n] || name[n] == '.')) return i;
    }
    return -1;
}

static int field_index(ts_exp *x, const char *name)
{
    for (int i = 0; i < x->data.nfield; i++)
        if (!strcmp(x->data.field_name[i], name)) return i;
    return -1;
}

/* "did you mean": the nearest field or layer name. */
static const char *nearest_source(ts_exp *x, const char *name)
{
    const char *best = NULL;
    int bd = 4;
    for (int i = 0; i < x->data.nfield; i++) {
        int d = ts_edit_distance(name, x->data.field_name[i]);
        if (d < bd) { bd = d; best = x->data.field_name[i]; }
    }
    for (int i = 0; i < x->nnodes; i++) {
        int d = ts_edit_distance(name, x->nodes[i].L.name);
        if (d < bd) { bd = d; best = x->nodes[i].L.name; }
    }
    return best;
}

static int parse_inputs(ts_exp *x, ts_cfg *c, char names[][2 * TS_NAME_MAX], int *n, ts_err *e)
{
    char items[TS_MAX_IN][TS_NAME_MAX];
    if (!ts_cfg_str(c, "input"))
        return ts_fail(e, "%s:%d: [%s] needs `input =` (dataset fields or layer names)", c->file,
                       c->line, c->name);
    if (ts_cfg_list(c, "input", items, TS_MAX_IN, n, e)) return -1;
    if (*n == 0) return ts_fail(e, "%s: [%s] input is empty", ts_cfg_where(c, "input"), c->name);
    for (int i = 0; i < *n; i++) {
        const char *s = items[i];
        int layer = starts(s, "layer.");
        if (layer) s += 6;   /* accept `input = layer.q_conv` too */
        snprintf(names[i], 2 * TS_NAME_MAX, "%s", s);
        if (layer && producer(x, names[i]) < 0 && field_index(x, names[i]) >= 0)
            /* a name that says "layer" never falls back to a field (a label, say) */
            return ts_fail(e, "%s: [%s] input '%s' names no layer; '%s' is a field of the "
                           "dataset: write `input = %s` if the field is what you mean",
                           ts_cfg_where(c, "input"), c->name, items[i], names[i], names[i]);
        if (field_index(x, names[i]) < 0 && producer(x, names[i]) < 0) {
            const char *near = nearest_source(x, names[i]);
            char fields[1024] = "";
            for (int f = 0; f < x->data.nfield; f++) {
                size_t k = strlen(fields);
                snprintf(fields + k, sizeof fields - k, "%s%s", f ? ", " : "", x->data.field_name[f]);
            }
            return ts_fail(e, "%s: [%s] input '%s' is neither a dataset field nor a layer%s%s%s. "
                           "The dataset's fields: %s", ts_cfg_where(c, "input"), c->name, names[i],
                           near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "",
                           fields);
        }
    }
    return 0;
}

/* ---- what the graph refuses (label leaks, a layer named like a field) or warns about -------- */
static void add_warning(ts_exp *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warning(ts_exp *x, const char *fmt, ...)
{
    char buf[TS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(x->warnings, (size_t)(x->nwarnings + 1) * sizeof *w);
    if (!w) return;                       /* a warning lost to a full memory is no harm */
    x->warnings = w;
    if ((w[x->nwarnings] = strdup(buf))) x->nwarnings++;
}

int ts_exp_warning_count(const ts_exp *x) { return x ? x->nwarnings : 0; }

const char *ts_exp_warning(const ts_exp *x, int i)
{
    return x && i >= 0 && i < x->nwarnings ? x->warnings[i] : NULL;
}

/* The head whose `label =` names field f, or -1 when none does. */
static int label_head(ts_exp *x, int f)
{
    for (int h = 0; h < x->nheads; h++) {
        const char *l = ts_cfg_str(x->heads[h].cfg, "label");
        if (l && !strcmp(l, x->data.field_name[f])) return h;
    }
    return -1;
}

/* A label leak: `input = NAME` of section c names a label field (a head's `label =`, or a
 * field the dataset declares a label). Any path from a label into the model starts with such
 * an edge, so checking every layer's and head's inputs covers paths through LAYER.OUTPUT too. */
static int refuse_label_input(ts_exp *x, ts_cfg *c, const char *name, ts_err *e)
{
    int f = field_index(x, name);
    if (f < 0) return 0;
    int h = label_head(x, f);
    if (h < 0 && !x->ctx.field_label[f]) return 0;
    char at[TS_PATH_MAX + 32];
    snprintf(at, sizeof at, "%s", ts_cfg_where(c, "input"));
    if (h >= 0 && x->heads[h].cfg == c)
        return ts_fail(e, "%s: [%s] input '%s' is the head's own label: a model that reads "
                       "its answer scores a perfect, meaningless result. Give the head a layer's "
                       "output instead", at, c->name, name);
    if (h >= 0)
        return ts_fail(e, "%s: [%s] input '%s' is the label of [%s] (%s): a model that reads "
                       "its answer scores a perfect, meaningless result (a test AUC of 1). Take "
                       "'%s' out of `input =`", at, c->name, name, x->heads[h].cfg->name,
                       ts_cfg_where(x->heads[h].cfg, "label"), name);
    return ts_fail(e, "%s: [%s] input '%s' is a label: the dataset (type = %s) declares it a "
                   "target of prediction, never a feature. Take '%s' out of `input =`", at,
                   c->name, name, x->data_pl->name, name);
}

/* Before the layers are built: a layer that has the name of a dataset field (the field would
 * win every lookup), label leaks, and a warning for each layer whose output reaches no head.
 * hin / hnin: each head's parsed `input =` names. */
static int check_graph(ts_exp *x, char (*hin)[TS_MAX_IN][2 * TS_NAME_MAX], const int *hnin,
                       ts_err *e)
{
    for (int i = 0; i < x->nnodes; i++) {
        ts_cfg *c = x->nodes[i].cfg;
        if (field_index(x, c->name + 6) >= 0)
            return ts_fail(e, "%s:%d: [%s] has the name of the dataset's field '%s' (type = %s): "
                           "`input = %s` names the field, never this layer, so a layer or head "
                           "meant to read the layer would silently read the data. Rename the "
                           "layer", c->file, c->line, c->name, c->name + 6, x->data_pl->name,
                           c->name + 6);
    }
    for (int i = 0; i < x->nnodes; i++)
        for (int k = 0; k < x->nodes[i].nin; k++)
            if (refuse_label_input(x, x->nodes[i].cfg, x->nodes[i].in_name[k], e)) return -1;
    for (int h = 0; h < x->nheads; h++)
        for (int k = 0; k < hnin[h]; k++)
            if (refuse_label_input(x, x->heads[h].cfg, hin[h][k], e)) return -1;
    /* reach[i]: a head depends on layer i (directly or through the layers it feeds);
     * is_read[i]: some layer or head names one of its outputs. */
    int n = x->nnodes;
    char *reach = calloc((size_t)(n ? n : 1), 1), *is_read = calloc((size_t)(n ? n : 1), 1);
    if (!reach || !is_read) { free(reach); free(is_read); return ts_fail(e, "out of memory"); }
    for (int h = 0; h < x->nheads; h++)
        for (int k = 0; k < hnin[h]; k++) {
            int p = producer(x, hin[h][k]);
            if (p >= 0) reach[p] = is_read[p] = 1;
        }
    for (int j = 0; j < n; j++)
        for (int k = 0; k < x->nodes[j].nin; k++) {
            int p = producer(x, x->nodes[j].in_name[k]);
            if (p >= 0) is_read[p] = 1;
        }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int j = 0; j < n; j++) {
            if (!reach[j]) continue;
            for (int k = 0; k < x->nodes[j].nin; k++) {
                int p = producer(x, x->nodes[j].in_name[k]);
                if (p >= 0 && !reach[p]) reach[p] = changed = 1;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        ts_cfg *c = x->nodes[i].cfg;
        if (reach[i]) continue;
        if (!is_read[i]) {
            add_warning(x, "%s:%d: warning: nothing reads the output of [%s] (no layer's or "
                        "head's `input =` names it): it is computed every step for nothing. "
                        "Give it to a layer or a head, or delete the section", c->file, c->line,
                        c->name);
            continue;
        }
        char readers[512] = "";
        for (int j = 0; j < n; j++)
            for (int k = 0; k < x->nodes[j].nin; k++)
                if (producer(x, x->nodes[j].in_name[k]) == i) {
                    size_t m = strlen(readers);
                    snprintf(readers + m, sizeof readers - m, "%s[%s]", m ? ", " : "",
                             x->nodes[j].cfg->name);
                    break;
                }
        add_warning(x, "%s:%d: warning: [%s] reaches no head: the layers that read it (%s) feed "
                    "no head, so it is computed every step for nothing. Connect them to a head "
                    "or delete them", c->file, c->line, c->name, readers);
    }
    free(reach);
    free(is_read);
    return 0;
}

/* A plugin's message that already names one of the experiment's files (the file itself or a base
 * it extends): it is passed on as it is, without a second place in front. */
static int names_a_file(const ts_ini *ini, const char *msg)
{
    if (strstr(msg, ini->file)) return 1;
    for (int i = 0; i < ini->nbases; i++)
        if (strstr(msg, ini->bases[i])) return 1;
    return 0;
}

/* ---- a head's fields: its label, per-row weights and mask ------------------------------------ */
/* The field named by the head's `key =` (label, sample_weight, mask), or NULL when the key is not
 * set; an unknown name is an error that lists the dataset's fields. */
static int head_field(ts_exp *x, ts_hnode *hn, const char *key, const ts_tensor **t, ts_err *e)
{
    const char *name = ts_cfg_str(hn->cfg, key);
    *t = NULL;
    if (!name) return 0;
    int f = field_index(x, name);
    if (f < 0) {
        char fields[1024] = "";
        for (int j = 0; j < x->data.nfield; j++) {
            size_t k = strlen(fields);
            snprintf(fields + k, sizeof fields - k, "%s%s", j ? ", " : "", x->data.field_name[j]);
        }
        return ts_fail(e, "%s: [%s] %s '%s' is not a field of the dataset (%s)",
                       ts_cfg_where(hn->cfg, key), hn->cfg->name, key, name, fields);
    }
    *t = &x->data.field[f];
    return 0;
}

/* `sample_weight =` and `mask =`: one float a row each, for a head that honours them. */
static int head_row_weights(ts_exp *x, ts_hnode *hn, ts_err *e)
{
    static const char *const keys[2] = {"sample_weight", "mask"};
    const ts_tensor **t[2] = {&hn->sample_weight, &hn->mask};
    for (int k = 0; k < 2; k++) {
        if (head_field(x, hn, keys[k], t[k], e)) return -1;
        const ts_tensor *f = *t[k];
        if (!f) continue;
        if (!TS_OP(hn->ops, row_weights))
            return ts_fail(e, "%s: [%s] (type %s) does not take per-row weights or masks; remove "
                           "%s = (the binary and regression heads take them)",
                           ts_cfg_where(hn->cfg, keys[k]), hn->cfg->name, hn->pl->name, keys[k]);
        if (f->dtype != TS_F32 || ts_rowsize(f) != 1)
            return ts_fail(e, "%s: [%s] %s = %s: the field must hold one number a row; declare it "
                           "in [data] as a %s", ts_cfg_where(hn->cfg, keys[k]), hn->cfg->name,
                           keys[k], ts_cfg_str(hn->cfg, keys[k]),
                           k ? "label's mask (labels = NAME(mask:FIELD))" : "weight column");
        if (f == hn->H.label)
            return ts_fail(e, "%s: [%s] %s = %s is the head's own label", ts_cfg_where(hn->cfg,
                           keys[k]), hn->cfg->name, keys[k], ts_cfg_str(hn->cfg, keys[k]));
    }
    if ((hn->sample_weight || hn->mask) &&
        !(hn->wbuf = malloc((size_t)(x->ctx.max_batch > 0 ? x->ctx.max_batch : 1) * sizeof(float))))
        return ts_fail(e, "out of memory");
    return 0;
}

static ts_hnode *hnode_of(const ts_head *H)
{
    ts_ctx *c = H ? H->ctx : NULL;
    for (int h = 0; c && h < c->nheads; h++)
        if (&c->heads[h].H == H) return &c->heads[h];
    return NULL;
}

const float *ts_head_weights(ts_head *H, int n)
{
    ts_hnode *hn = hnode_of(H);
    if (!hn || !hn->wbuf) return NULL;
    const float *w = hn->sample_weight ? hn->sample_weight->x : NULL;
    const float *m = hn->mask ? hn->mask->x : NULL;
    for (int i = 0; i < n; i++) hn->wbuf[i] = (w ? w[i] : 1.0f) * (m ? m[i] : 1.0f);
    return hn->wbuf;
}

const float *ts_head_mask(const ts_head *H)
{
    ts_hnode *hn = hnode_of(H);
    return hn && hn->mask ? hn->mask->x : NULL;
}

/* ---- the labels, checked once before training -------------------------------------------------
 * A label must be what the head and its loss take: the head's declared kind (ts_head_ops
 * check_label: "binary", "real", "class K") and its loss's label_kind, the stricter of the two
 * (binary, then class, then real). A binary head fed 2, 0.5 or -1/+1 would otherwise train
 * (bce gives a negative loss) and report an AUC of a different question. One pass over the rows
 * of every split through the dataset's batch(), which reads no random numbers, so the run that
 * follows is the run it would have been. */
static int kind_rank(int kind)
{
    return kind == TS_LABEL_BINARY ? 3 : kind == TS_LABEL_CLASS ? 2 : kind == TS_LABEL_REAL ? 1 : 0;
}

static int declared_kind(const ts_head_ops *ops)
{
    const char *w = ops->check_label;
    if (!w) return -1;
    if (!strncmp(w, "binary", 6)) return TS_LABEL_BINARY;
    if (!strncmp(w, "real", 4)) return TS_LABEL_REAL;
    if (!strncmp(w, "class", 5)) return TS_LABEL_CLASS;
    return -1;
}

typedef struct label_tally {
    int kind;                    /* ts_label_kind, or -1: nothing to check */
    long bad[3];                 /* bad labels per split */
    double weight[3];            /* the rows' weight x mask per split (sample_weight, mask) */
    int first_split;             /* -1 until one is found */
    long first_row;
    float first_value;
} label_tally;

static int label_ok(int kind, float v, long classes)
{
    switch (kind) {
    case TS_LABEL_BINARY: return v == 0.0f || v == 1.0f;
    case TS_LABEL_REAL: return isfinite(v);
    case TS_LABEL_CLASS:
        return isfinite(v) && v >= 0 && v == floorf(v) && (classes <= 0 || v < (float)classes);
    default: return 1;
    }
}

/* A head's per-row weights (finite, >= 0) and mask (0 or 1) in rows s..s+b of split sp; adds
 * their product over the rows to *sum. */
static int check_row_weights(ts_hnode *hn, int sp, long s, int b, double *sum, ts_err *e)
{
    static const char *const split[3] = {"training", "validation", "test"};
    const ts_tensor *f[2] = {hn->sample_weight, hn->mask};
    static const char *const key[2] = {"sample_weight", "mask"};
    for (int k = 0; k < 2; k++)
        for (int i = 0; f[k] && i < b; i++) {
            float v = f[k]->x[i];
            if (k ? (v == 0 || v == 1) : (isfinite(v) && v >= 0)) continue;
            return ts_fail(e, "%s: [%s] %s = %s: row %ld of the %s split holds %g, but %s; fix "
                           "the data (the reader's weight and mask columns are checked as read)",
                           ts_cfg_where(hn->cfg, key[k]), hn->cfg->name, key[k],
                           ts_cfg_str(hn->cfg, key[k]), s + i, split[sp], (double)v,
                           k ? "a mask is 0 or 1" : "a sample weight is a finite number >= 0");
        }
    for (int i = 0; (f[0] || f[1]) && i < b; i++)
        *sum += (f[0] ? f[0]->x[i] : 1.0) * (f[1] ? f[1]->x[i] : 1.0);
    return 0;
}

/* A split whose every row weighs 0 for a head (all masked, or weights of 0): in training the
 * task would never learn, in evaluation its figures would not exist. Refused before training. */
static int check_weight_sums(ts_exp *x, const label_tally *t, ts_err *e)
{
    static const char *const split[3] = {"training", "validation", "test"};
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        if (!hn->sample_weight && !hn->mask) continue;
        const char *key = hn->mask ? "mask" : "sample_weight";
        for (int sp = TS_TRAIN; sp <= TS_TEST; sp++) {
            if (x->data.nrows[sp] <= 0 || t[h].weight[sp] > 0) continue;
            if (sp == TS_TRAIN && hn->weight == 0) continue;   /* a task reported, not trained */
            return ts_fail(e, "%s: [%s] %s = %s: every one of the %ld rows of the %s split %s, so "
                           "%s; check the data's %s column (or the split)",
                           ts_cfg_where(hn->cfg, key), hn->cfg->name, key, ts_cfg_str(hn->cfg, key),
                           x->data.nrows[sp], split[sp],
                           hn->mask ? "is masked or weighs 0" : "weighs 0",
                           sp == TS_TRAIN ? "the task would never train"
                                          : "the task's figures cannot be computed on it",
                           hn->mask ? "label (its mask)" : "weight");
        }
    }
    return 0;
}

static int check_labels(ts_exp *x, ts_err *e)
{
    label_tally *t = calloc((size_t)x->nheads, sizeof *t);
    long *rows = malloc((size_t)x->ctx.max_batch * sizeof *rows);
    if (!t || !rows) { free(t); free(rows); return ts_fail(e, "out of memory"); }
    int any = 0;
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        int d = declared_kind(hn->ops), l = hn->H.loss ? (int)hn->H.loss->label_kind : -1;
        t[h].kind = kind_rank(l) > kind_rank(d) ? l : d;
        t[h].first_split = -1;
        if (!hn->H.label || hn->H.label->dtype != TS_F32) t[h].kind = -1;
        any |= t[h].kind >= 0 || hn->sample_weight || hn->mask;
    }
    const ts_dataset_ops *ops = x->data_pl->ops;
    int rc = 0;
    for (int sp = TS_TRAIN; any && sp <= TS_TEST && !rc; sp++)
        for (long s = 0; s < x->data.nrows[sp] && !rc; s += x->ctx.max_batch) {
            long left = x->data.nrows[sp] - s;
            int b = (int)(left < x->ctx.max_batch ? left : x->ctx.max_batch);
            for (int i = 0; i < b; i++) rows[i] = s + i;
            ts_err pe;
            int got = b;
            /* streamed training rows: this rank's share, read through the stream (epoch 0) */
            int bad = x->data.stream && sp == TS_TRAIN
                ? (s == 0 && ops->stream_begin(&x->data, 0, NULL, &pe)) ||
                  ops->stream_next(&x->data, b, &got, &pe)
                : ops->batch(&x->data, (ts_phase)sp, rows, b, &pe);
            if (bad || got != b) {
                rc = bad ? ts_fail(e, "[data] %s: %s", x->data_pl->name, pe.msg)
                         : ts_fail(e, "[data] %s: the stream gave fewer rows than its scan "
                                   "counted; did the files change?", x->data_pl->name);
                break;
            }
            for (int h = 0; h < x->nheads && !rc; h++)
                rc = check_row_weights(&x->heads[h], sp, s, b, &t[h].weight[sp], e);
            for (int h = 0; h < x->nheads && !rc; h++) {
                if (t[h].kind < 0) continue;
                const ts_tensor *y = x->heads[h].H.label;
                const float *m = x->heads[h].mask ? x->heads[h].mask->x : NULL;
                long per = ts_rowsize(y), cls = x->heads[h].label_classes;
                for (long j = 0; j < (long)b * per; j++) {
                    if ((m && m[j / per] == 0) || label_ok(t[h].kind, y->x[j], cls)) continue;
                    if (t[h].first_split < 0) {
                        t[h].first_split = sp;
                        t[h].first_row = s + j / per;
                        t[h].first_value = y->x[j];
                    }
                    t[h].bad[sp]++;
                }
            }
        }
    if (!rc) rc = check_weight_sums(x, t, e);
    for (int h = 0; h < x->nheads && !rc; h++) {
        if (t[h].first_split < 0) continue;
        ts_hnode *hn = &x->heads[h];
        const char *loss = ts_cfg_str(hn->cfg, "loss"), *field = ts_cfg_str(hn->cfg, "label");
        char splits[128] = "", takes[96], is[64];
        long total = 0;
        for (int sp = TS_TRAIN; sp <= TS_TEST; sp++) {
            if (!t[h].bad[sp]) continue;
            size_t m = strlen(splits);
            snprintf(splits + m, sizeof splits - m, "%s%s %ld", m ? ", " : "",
                     ts_phase_name((ts_phase)sp), t[h].bad[sp]);
            total += t[h].bad[sp];
        }
        const char *todo;
        if (t[h].kind == TS_LABEL_BINARY) {
            snprintf(takes, sizeof takes, "labels of exactly 0 or 1");
            snprintf(is, sizeof is, "neither 0 nor 1");
            todo = declared_kind(hn->ops) == TS_LABEL_BINARY
                       ? "Put a 0/1 label in the data (e.g. 1 when the value passes a threshold), "
                         "or predict the value itself with a regression head (type = regression, "
                         "loss = mse)"
                       : "Use a loss for real values (loss = mse), or put a 0/1 label in the data";
        } else if (t[h].kind == TS_LABEL_CLASS) {
            if (hn->label_classes > 0)
                snprintf(takes, sizeof takes, "class indices, whole numbers in [0, %ld)",
                         hn->label_classes);
            else
                snprintf(takes, sizeof takes, "class indices, whole numbers >= 0");
            snprintf(is, sizeof is, "not");
            todo = "Check the label column of the data and the head's number of classes "
                   "(items =)";
        } else {
            snprintf(takes, sizeof takes, "finite real labels");
            snprintf(is, sizeof is, "NaN or infinite");
            todo = "Fix or drop those rows of the data";
        }
        rc = ts_fail(e, "%s: [%s] (type %s%s%s) takes %s, but the field '%s' holds %ld label%s "
                     "that %s %s (%s); the first is %g, row %ld of the %s split. %s",
                     ts_cfg_where(hn->cfg, "label"), hn->cfg->name, hn->pl->name,
                     loss ? ", loss " : "", loss ? loss : "", takes, field ? field : "?", total,
                     total == 1 ? "" : "s", total == 1 ? "is" : "are", is, splits,
                     (double)t[h].first_value, t[h].first_row,
                     ts_phase_name((ts_phase)t[h].first_split), todo);
    }
    free(t);
    free(rows);
    return rc;
}

/* After the build: a layer with named outputs (mmoe, ple: one per task) of which some are read
 * and another is not. That output's part of the layer (a task's gate and experts) would get no
 * gradient: a task listed that no head uses, most often a misspelt name or a missing head.
 * (A layer none of whose outputs is read is check_graph's warning.) */
static int check_named_outputs(ts_exp *x, ts_err *e)
{
    for (int i = 0; i < x->nnodes; i++) {
        ts_layer *L = &x->nodes[i].L;
        if (L->nout < 2) continue;
        int read[TS_MAX_OUT] = {0}, any = 0;
        for (int k = 0; k < L->nout; k++) {
            for (int j = 0; j < x->nnodes && !read[k]; j++)
                for (int q = 0; q < x->nodes[j].L.nin && !read[k]; q++)
                    read[k] = x->nodes[j].L.in[q] == &L->out[k];
            for (int h = 0; h < x->nheads && !read[k]; h++)
                for (int q = 0; q < x->heads[h].H.nin && !read[k]; q++)
                    read[k] = x->heads[h].H.in[q] == &L->out[k];
            any |= read[k];
        }
        for (int k = 0; k < L->nout && any; k++) {
            if (read[k]) continue;
            ts_cfg *c = x->nodes[i].cfg;
            return ts_fail(e, "%s:%d: [%s] (type %s) has an output '%s.%s' that no layer or head "
                           "reads, so its part of the layer (task '%s' of its list) would learn "
                           "nothing. Give a head (or its tower) `input = %s.%s`, or take '%s' out "
                           "of the layer's list", c->file, c->line, c->name, x->nodes[i].pl->name,
                           L->name, L->out_name[k], L->out_name[k], L->name, L->out_name[k],
                           L->out_name[k]);
        }
    }
    return 0;
}

static int alloc_outputs(ts_layer *L, ts_err *e)
{
    for (int k = 0; k < L->nout; k++) {
        ts_tensor *t = &L->out[k];
        if (t->dtype != TS_F32 || t->x) continue;
        long n = ts_numel(t);
        if (n <= 0)
            return ts_fail(e, "layer %s: output %d has no elements", L->name, k);
        t->x = calloc((size_t)n, sizeof *t->x);
        t->dx = calloc((size_t)n, sizeof *t->dx);
        if (!t->x || !t->dx) return ts_fail(e, "layer %s: out of memory for its output", L->name);
    }
    return 0;
}

/* The plugins' one-time init ops (tessera.h): after the arena is allocated and initialised,
 * before anything (a checkpoint, params.bin) is restored into it. */
static int init_plugins(ts_exp *x, ts_err *e)
{
    for (int i = 0; i < x->nnodes; i++) {
        ts_node *nd = &x->nodes[i];
        int (*init)(ts_layer *, ts_err *) = TS_OP(nd->ops, init);
        ts_err pe;
        if (init && init(&nd->L, &pe))
            return ts_fail(e, "%s:%d: [%s] (type %s) init: %s", nd->cfg->file, nd->cfg->line,
                           nd->cfg->name, nd->pl->name, pe.msg);
    }
    for (int i = 0; i < x->nheads; i++) {
        ts_hnode *hn = &x->heads[i];
        int (*init)(ts_head *, ts_err *) = TS_OP(hn->ops, init);
        ts_err pe;
        if (init && init(&hn->H, &pe))
            return ts_fail(e, "%s:%d: [%s] (type %s) init: %s", hn->cfg->file, hn->cfg->line,
                           hn->cfg->name, hn->pl->name, pe.msg);
    }
    return 0;
}

/* The parameter a tied copy stands for. */
static const ts_param *param_owner(const ts_param *p) { return p->shared ? p->host : p; }

/* Layers a and b of one level may run at once unless both add into the gradient of one tensor
 * (an input they share) or of one parameter (tied weights). */
static int conflict(const ts_exp *x, const ts_node *a, const ts_node *b)
{
    for (int i = 0; i < a->L.nin; i++)
        for (int k = 0; k < b->L.nin; k++)
            if (a->L.in[i] == b->L.in[k] && a->L.in[i]->dx) return 1;
    for (int i = 0; i < a->nparam; i++)
        for (int k = 0; k < b->nparam; k++)
            if (param_owner(x->ctx.params[a->first_param + i]) ==
                param_owner(x->ctx.params[b->first_param + k]))
                return 1;
    return 0;
}

/* The layers by level, and which levels may run their layers at once (TS_BRANCH_SAFE plugins
 * without conflicts). Every run executes in this order, whatever its threads, so the figures do
 * not depend on how many there are. */
static int schedule(ts_exp *x, ts_err *e)
{
    int n = x->nnodes, *level = calloc((size_t)(n ? n : 1), sizeof *level);
    x->sched = malloc((size_t)(n ? n : 1) * sizeof *x->sched);
    x->lvl = calloc((size_t)n + 2, sizeof *x->lvl);
    x->lvl_par = calloc((size_t)n + 1, 1);
    x->node_rc = calloc((size_t)(n ? n : 1), sizeof *x->node_rc);
    x->node_err = calloc((size_t)(n ? n : 1), sizeof *x->node_err);
    if (!level || !x->sched || !x->lvl || !x->lvl_par || !x->node_rc || !x->node_err) {
        free(level);
        return ts_fail(e, "out of memory");
    }
    int top = -1;
    for (int i = 0; i < n; i++) {              /* nodes are in a topological order */
        int l = 0;
        for (int k = 0; k < x->nodes[i].nin; k++) {
            int p = producer(x, x->nodes[i].in_name[k]);
            if (p >= 0 && level[p] + 1 > l) l = level[p] + 1;
        }
        level[i] = l;
        if (l > top) top = l;
    }
    x->nlvl = top + 1;
    int m = 0;
    for (int l = 0; l < x->nlvl; l++) {
        x->lvl[l] = m;
        for (int i = 0; i < n; i++)
            if (level[i] == l) x->sched[m++] = i;
        int par = m - x->lvl[l] >= 2;
        for (int a = x->lvl[l]; a < m && par; a++) {
            const ts_node *na = &x->nodes[x->sched[a]];
            if (!(TS_OP(na->ops, concurrency) & TS_BRANCH_SAFE)) par = 0;
            for (int b = a + 1; b < m && par; b++)
                if (conflict(x, na, &x->nodes[x->sched[b]])) par = 0;
        }
        x->lvl_par[l] = (unsigned char)par;
    }
    x->lvl[x->nlvl] = m;
    free(level);
    return 0;
}

/* A replica's parameters ([train] replicas): the same declarations as x0's, in the same order;
 * the weights are x0's (shared), the gradients its own (one block laid out as x0's: the dense
 * ones first, so that they are one contiguous range too), no optimizer slots. */
static int replica_params(ts_exp *r, ts_exp *x0, ts_err *e)
{
    ts_ctx *c = &r->ctx, *c0 = &x0->ctx;
    /* the copy's layers declare the first of x0's parameters (x0's heads declare the rest) */
    if (c->nparams > c0->nparams)
        return ts_fail(e, "[train] replicas: a copy of the graph's layers declared %d parameters "
                       "where the graph declared %d; a plugin declares parameters that depend on "
                       "more than its keys and inputs: set replicas = 1", c->nparams, c0->nparams);
    size_t total = 0;
    for (int i = 0; i < c->nparams; i++) {
        ts_param *p = c->params[i], *q = c0->params[i];
        if (strcmp(p->name, q->name) || p->rows != q->rows || p->cols != q->cols ||
            p->flags != q->flags || !p->shared != !q->shared)
            return ts_fail(e, "[train] replicas: a copy of the graph declared parameter %s (%d, "
                           "%d) where the first declared %s (%d, %d); set replicas = 1", p->name,
                           p->rows, p->cols, q->name, q->rows, q->cols);
        if (!p->shared) total += (size_t)p->rows * p->cols;
    }
    float *a = calloc(total ? total : 1, sizeof *a);
    if (!a)
        return ts_fail(e, "[train] replicas: cannot allocate %.1f MiB for a copy's gradients; "
                       "set replicas = 1 or make the embedding tables smaller", total * 4.0 / 1048576);
    size_t off = 0;
    c->n_dense = 0;
    for (int sparse = 0; sparse < 2; sparse++)
        for (int i = 0; i < c->nparams; i++) {
            ts_param *p = c->params[i];
            if (p->shared || !(p->flags & TS_PARAM_SPARSE) != !sparse) continue;
            size_t n = (size_t)p->rows * p->cols;
            p->w = c0->params[i]->w;
            p->g = a + off;
            p->state = NULL;
            if (!sparse) c->n_dense += n;
            off += n;
        }
    for (int i = 0; i < c->nparams; i++) {
        ts_param *p = c->params[i];
        if (p->shared) { ts_param *o = p->host; p->w = o->w; p->g = o->g; p->state = NULL; }
    }
    r->arena = a;
    r->arena_n = total;
    r->built = 1;
    return 0;
}

ts_exp *ts_exp_replica(ts_exp *x0, ts_err *e)
{
    ts_run_opts o = x0->opts;
    o.log = NULL;
    ts_exp *r = ts_exp_load(x0->ini.file, &o, e);
    if (!r) return NULL;
    r->replica_of = x0;
    /* its part of a training batch: ceil(batch / replicas) rows */
    r->ctx.max_batch = (int)((x0->batch + x0->replicas - 1) / x0->replicas);
    snprintf(r->ctx.results_dir, sizeof r->ctx.results_dir, "%s", x0->ctx.results_dir);
    /* the fields as the dataset declared them, without buffers: each step points them at the
     * replica's rows of the batch x0's dataset assembled (ts_exp_replica_view) */
    r->data = x0->data;
    for (int i = 0; i < r->data.nfield; i++) {
        ts_tensor *f = &r->data.field[i];
        f->x = f->dx = NULL;
        f->ids = f->off = f->len = NULL;
        f->dim[0] = r->ctx.max_batch;
    }
    r->data.ctx = &r->ctx;
    r->data.stream = 0;
    r->ctx.data = &r->data;
    r->ctx.data_ops = x0->ctx.data_ops;
    memcpy(r->ctx.field_label, x0->ctx.field_label, sizeof r->ctx.field_label);
    if (ts_exp_build(r, e)) { ts_exp_free(r); return NULL; }
    for (int i = 0; i < r->nnodes; i++)   /* the same order, so that node i's views are x0's */
        if (strcmp(r->nodes[i].L.name, x0->nodes[i].L.name)) {
            ts_fail(e, "[train] replicas: a copy of the graph sorted its layers differently "
                    "([%s] against [%s]); set replicas = 1", r->nodes[i].L.name,
                    x0->nodes[i].L.name);
            ts_exp_free(r);
            return NULL;
        }
    return r;
}

int ts_exp_replica_view(ts_exp *r, const ts_exp *x0, int lo, int n, ts_err *e)
{
    for (int i = 0; i < r->data.nfield; i++) {
        const ts_tensor *s = &x0->data.field[i];
        ts_tensor *f = &r->data.field[i];
        long rs = ts_rowsize(s);
        f->dim[0] = n;
        f->x = s->x ? s->x + (size_t)lo * rs : NULL;
        f->ids = s->dtype == TS_I32 && s->ids ? s->ids + (size_t)lo * rs : NULL;
        f->len = s->len ? s->len + lo : NULL;
        if (s->dtype == TS_BAGS && s->off && s->ids) {
            /* cells lo * rs .. (lo + n) * rs of the batch, their offsets from 0 again */
            long c0 = (long)lo * rs, nc = (long)n * rs;
            if (!f->off) {
                long cap = (long)r->ctx.max_batch * rs + 1;
                if (!(f->off = malloc((size_t)cap * sizeof *f->off)))
                    return ts_fail(e, "out of memory");
            }
            int32_t base = s->off[c0];
            for (long c = 0; c <= nc; c++) f->off[c] = s->off[c0 + c] - base;
            f->ids = s->ids + base;
        }
    }
    for (int i = 0; i < r->nnodes; i++)
        for (int k = 0; k < r->nodes[i].L.nout; k++) {
            const ts_tensor *s = &x0->nodes[i].L.out[k];
            ts_tensor *o = &r->nodes[i].L.out[k];
            if (o->dtype != TS_F32) continue;
            size_t at = (size_t)lo * (size_t)ts_rowsize(s);
            o->x = s->x ? s->x + at : NULL;
            o->dx = s->dx ? s->dx + at : NULL;
        }
    return 0;
}

int ts_exp_build(ts_exp *x, ts_err *e)
{
    if (x->built) return 0;
    if (!x->replica_of && ts_exp_open_data(x, e)) return -1;
    /* Inputs of every layer, then a topological order by repeated passes (Kahn's idea): a
     * layer is ready once all its inputs are fields or built layers. */
    for (int i = 0; i < x->nnodes; i++) {
        ts_node *nd = &x->nodes[i];
        if (parse_inputs(x, nd->cfg, nd->in_name, &nd->nin, e)) return -1;
        const char *sh = ts_cfg_str(nd->cfg, "share");
        if (sh) snprintf(nd->share, sizeof nd->share, "%s", starts(sh, "layer.") ? sh + 6 : sh);
    }
    {
        /* The heads' inputs too, so the graph's checks see every edge before anything builds. */
        char (*hin)[TS_MAX_IN][2 * TS_NAME_MAX] = calloc((size_t)x->nheads, sizeof *hin);
        int *hnin = calloc((size_t)x->nheads, sizeof *hnin), rc = 0;
        if (!hin || !hnin) rc = ts_fail(e, "out of memory");
        for (int h = 0; h < x->nheads && !rc; h++)
            rc = parse_inputs(x, x->heads[h].cfg, hin[h], &hnin[h], e);
        if (!rc) rc = check_graph(x, hin, hnin, e);
        free(hin);
        free(hnin);
        if (rc) return -1;
    }
    ts_node *sorted = calloc((size_t)(x->nnodes ? x->nnodes : 1), sizeof *sorted);
    int *done = calloc((size_t)(x->nnodes ? x->nnodes : 1), sizeof *done);
    if (!sorted || !done) { free(sorted); free(done); return ts_fail(e, "out of memory"); }
    int ns = 0, progress = 1;
    while (ns < x->nnodes && progress) {
        progress = 0;
        for (int i = 0; i < x->nnodes; i++) {
            if (done[i]) continue;
            ts_node *nd = &x->nodes[i];
            int ready = 1;
            for (int k = 0; k < nd->nin && ready; k++) {
                int p = producer(x, nd->in_name[k]);
                if (p >= 0 && !done[p]) ready = 0;
            }
            if (nd->share[0]) {
                int p = producer(x, nd->share);
                if (p < 0) {
                    free(sorted); free(done);
                    return ts_fail(e, "%s: [%s] share = %s: no such layer",
                                   ts_cfg_where(nd->cfg, "share"), nd->cfg->name, nd->share);
                }
                if (!done[p]) ready = 0;
            }
            if (!ready) continue;
            done[i] = ns + 1;
            progress = 1;
            ns++;
        }
    }
    if (ns < x->nnodes) {
        /* Walk from an unplaced layer to an unplaced producer of one of its inputs until a
         * layer repeats: the walk from that layer on is the cycle. */
        int *seen = calloc((size_t)x->nnodes, sizeof *seen), cur = 0, step = 1;
        while (done[cur]) cur++;
        while (seen && !seen[cur]) {
            seen[cur] = step++;
            ts_node *nd = &x->nodes[cur];
            int next = -1;
            for (int k = 0; k < nd->nin && next < 0; k++) {
                int p = producer(x, nd->in_name[k]);
                if (p >= 0 && !done[p]) next = p;
            }
            if (next < 0 && nd->share[0]) next = producer(x, nd->share);
            if (next < 0) break;
            cur = next;
        }
        char path[1024] = "";
        int start = seen ? seen[cur] : 0;
        for (int s2 = start; seen && s2 < step; s2++)
            for (int i = 0; i < x->nnodes; i++)
                if (seen[i] == s2) {
                    size_t k = strlen(path);
                    snprintf(path + k, sizeof path - k, "[%s] (line %d) takes input from ",
                             x->nodes[i].cfg->name, x->nodes[i].cfg->line);
                }
        {
            size_t k = strlen(path);
            snprintf(path + k, sizeof path - k, "[%s]", x->nodes[cur].cfg->name);
        }
        ts_cfg *c = x->nodes[cur].cfg;
        free(seen); free(sorted); free(done);
        return ts_fail(e, "%s: the layers form a cycle: %s; a graph must run from dataset fields "
                       "to heads (check `input =` and `share =`)", ts_cfg_where(c, "input"), path);
    }
    for (int i = 0; i < x->nnodes; i++) sorted[done[i] - 1] = x->nodes[i];
    memcpy(x->nodes, sorted, (size_t)x->nnodes * sizeof *sorted);
    free(sorted);
    free(done);

    /* Build in order. */
    for (int i = 0; i < x->nnodes; i++) {
        ts_node *nd = &x->nodes[i];
        ts_layer *L = &nd->L;
        L->name = nd->cfg->name + 6;
        L->ctx = &x->ctx;
        L->nin = nd->nin;
        for (int k = 0; k < nd->nin; k++) {
            L->in[k] = ts_exp_tensor(x, nd->in_name[k]);
            if (!L->in[k]) {
                int p = producer(x, nd->in_name[k]);
                return ts_fail(e, "%s: [%s] input '%s': layer %s has %d named outputs; name one "
                               "as %s.OUTPUT (%s%s)", ts_cfg_where(nd->cfg, "input"), nd->cfg->name,
                               nd->in_name[k], x->nodes[p].L.name, x->nodes[p].L.nout,
                               x->nodes[p].L.name, x->nodes[p].L.out_name[0],
                               x->nodes[p].L.nout > 1 ? ", ..." : "");
            }
        }
        L->nout = 1;
        nd->first_param = x->ctx.nparams;
        x->ctx.owner = nd->cfg->name;
        if (nd->share[0]) {
            ts_node *src = NULL;
            for (int j = 0; j < i; j++)
                if (!strcmp(x->nodes[j].L.name, nd->share)) src = &x->nodes[j];
            if (!src || strcmp(src->pl->name, nd->pl->name))
                return ts_fail(e, "%s: [%s] share = %s: weights can be shared only with a layer "
                               "of the same type (%s is %s)", ts_cfg_where(nd->cfg, "share"),
                               nd->cfg->name, nd->share, nd->share, src ? src->pl->name : "?");
            x->ctx.share_from = x->ctx.params + src->first_param;
            x->ctx.share_n = src->nparam;
            x->ctx.share_i = 0;
        }
        ts_err pe;
        int rc = nd->ops->build(L, nd->cfg, &pe);
        x->ctx.share_from = NULL;
        if (rc) {
            /* A plugin message that names no place gets the section's. */
            if (strchr(pe.msg, ':') && names_a_file(&x->ini, pe.msg))
                return ts_fail(e, "%s", pe.msg);
            char shapes[512] = "";
            for (int k = 0; k < L->nin; k++) {
                char b[96];
                size_t n = strlen(shapes);
                snprintf(shapes + n, sizeof shapes - n, "%s%s %s", k ? ", " : "", nd->in_name[k],
                         ts_shape_str(L->in[k], b, sizeof b));
            }
            return ts_fail(e, "%s:%d: [%s] (type %s, inputs %s): %s", nd->cfg->file, nd->cfg->line,
                           nd->cfg->name, nd->pl->name, shapes, pe.msg);
        }
        nd->nparam = x->ctx.nparams - nd->first_param;
        if (L->nout < 1 || L->nout > TS_MAX_OUT)
            return ts_fail(e, "[%s]: plugin %s declared %d outputs", nd->cfg->name, nd->pl->name,
                           L->nout);
        for (int k = 0; k < L->nout; k++) L->out[k].dim[0] = x->ctx.max_batch;
        if (!x->replica_of && alloc_outputs(L, e)) return -1;   /* a copy's: views of x0's */
        nd->built = 1;
    }
    if (schedule(x, e)) return -1;
    if (x->replica_of) return replica_params(x, x->replica_of, e);   /* no heads */
    /* Heads. */
    x->ctx.heads = x->heads;
    x->ctx.nheads = x->nheads;
    for (int i = 0; i < x->nheads; i++) {
        ts_hnode *hn = &x->heads[i];
        ts_head *H = &hn->H;
        char names[TS_MAX_IN][2 * TS_NAME_MAX];
        if (parse_inputs(x, hn->cfg, names, &H->nin, e)) return -1;
        for (int k = 0; k < H->nin; k++) {
            H->in[k] = ts_exp_tensor(x, names[k]);
            if (!H->in[k])
                return ts_fail(e, "%s: [%s] input '%s' has several outputs; name one as "
                               "LAYER.OUTPUT", ts_cfg_where(hn->cfg, "input"), hn->cfg->name,
                               names[k]);
        }
        if (head_field(x, hn, "label", &H->label, e) || head_row_weights(x, hn, e)) return -1;
        H->ctx = &x->ctx;
        H->grad_scale = (float)hn->weight;
        ts_err pe;
        if (H->loss && H->loss->init(&H->loss_state, hn->cfg, &pe))
            return ts_fail(e, "%s:%d: [%s] loss: %s", hn->cfg->file, hn->cfg->line, hn->cfg->name,
                           pe.msg);
        x->ctx.owner = hn->cfg->name;
        x->ctx.label_classes = 0;
        int brc = hn->ops->build(H, hn->cfg, &pe);
        hn->label_classes = x->ctx.label_classes;
        if (brc) {
            if (names_a_file(&x->ini, pe.msg)) return ts_fail(e, "%s", pe.msg);
            char shapes[512] = "";
            for (int k = 0; k < H->nin; k++) {
                char b[96];
                size_t n = strlen(shapes);
                snprintf(shapes + n, sizeof shapes - n, "%s%s %s", k ? ", " : "", names[k],
                         ts_shape_str(H->in[k], b, sizeof b));
            }
            return ts_fail(e, "%s:%d: [%s] (type %s, inputs %s): %s", hn->cfg->file, hn->cfg->line,
                           hn->cfg->name, hn->pl->name, shapes, pe.msg);
        }
        hn->built = 1;
    }
    if (check_named_outputs(x, e)) return -1;
    if (check_labels(x, e)) return -1;
    x->ctx.owner = "weighting";
    if (x->weighting == 1 && !(x->log_var = ts_param_add(&x->ctx, "log_var", 1, x->nheads,
                                                          TS_INIT_ZEROS, 0, 0, e)))
        return -1;
    x->ctx.owner = NULL;
    /* Optimizer and the parameter arena. */
    const ts_optim_ops *oo = x->opt_pl->ops;
    ts_err pe;
    if (oo->init(&x->opt_state, ts_ini_find(&x->ini, "optimizer"), &pe))
        return ts_fail(e, "[optimizer] type = %s: %s", x->opt_pl->name, pe.msg);
    if (ts_exp_check_memory(x, oo->nslots, e)) return -1;
    if (ts_ctx_alloc_params(&x->ctx, oo->nslots, &x->arena, &x->arena_n, e)) return -1;
    if (init_plugins(x, e)) return -1;
    x->built = 1;
    /* The warnings go to the run's log (the program's choice of stream), once per job. */
    for (int i = 0; x->opts.log && ts_dist_rank() == 0 && i < x->nwarnings; i++)
        fprintf(x->opts.log, "%s  %s\n", x->name, x->warnings[i]);
    return 0;
}

void ts_exp_free(ts_exp *x)
{
    if (!x) return;
    for (int i = 0; i < x->nheads; i++) {
        ts_hnode *hn = &x->heads[i];
        if (hn->built && TS_OP(hn->ops, destroy)) hn->ops->destroy(&hn->H);
        if (hn->H.loss && TS_OP(hn->H.loss, destroy) && hn->H.loss_state)
            hn->H.loss->destroy(hn->H.loss_state);
    }
    for (int i = 0; i < x->nnodes; i++) {
        ts_node *nd = &x->nodes[i];
        if (nd->built && TS_OP(nd->ops, destroy)) nd->ops->destroy(&nd->L);
        for (int k = 0; k < TS_MAX_OUT && !x->replica_of; k++) {   /* a copy's are views */
            if (nd->L.out[k].dtype != TS_F32) continue;
            free(nd->L.out[k].x);
            free(nd->L.out[k].dx);
        }
    }
    if (x->opt_pl && x->opt_state) {
        const ts_optim_ops *oo = x->opt_pl->ops;
        if (TS_OP(oo, destroy)) oo->destroy(x->opt_state);
    }
    const ts_dataset_ops *dops = x->data_pl ? x->data_pl->ops : NULL;
    if (x->data_open && dops && TS_OP(dops, close)) dops->close(&x->data);
    for (int i = 0; x->replica_of && i < x->data.nfield; i++)
        if (x->data.field[i].dtype == TS_BAGS) free(x->data.field[i].off);   /* its views' */
    for (int i = 0; i < x->nwarnings; i++) free(x->warnings[i]);
    free(x->warnings);
    for (int i = 0; x->heads && i < x->nheads; i++) free(x->heads[i].wbuf);
    free(x->nodes);
    free(x->heads);
    free(x->arena);
    free(x->sched); free(x->lvl); free(x->lvl_par); free(x->node_rc); free(x->node_err);
    ts_ctx_free(&x->ctx);
    ts_ini_free(&x->ini);
    ts_rundir_release(x);
    free(x->identity);
    free(x->data_state);
    free(x->data_report);
    free(x->train_rows);
    free(x->select_rows);
    free(x);
}

/* ---- one pass ------------------------------------------------------------------------------ */
typedef struct { ts_exp *x; ts_phase phase; int n, from; } pass_arg;

static void forward_node(void *arg, int task)
{
    pass_arg *a = arg;
    ts_exp *x = a->x;
    int i = x->sched[a->from + task];
    ts_layer *L = &x->nodes[i].L;
    for (int k = 0; k < L->nout; k++) {
        L->out[k].dim[0] = a->n;
        if (a->phase == TS_TRAIN && L->out[k].dx)
            memset(L->out[k].dx, 0, (size_t)ts_numel(&L->out[k]) * sizeof(float));
    }
    x->node_rc[i] = x->nodes[i].ops->forward(L, a->phase, &x->node_err[i]);
}

static void backward_node(void *arg, int task)
{
    pass_arg *a = arg;
    ts_exp *x = a->x;
    int i = x->sched[a->from + task];
    x->node_rc[i] = x->nodes[i].ops->backward(&x->nodes[i].L, &x->node_err[i]);
}

/* Runs level l's layers: at once on the pool when the level allows it, else one after another
 * (backward: in the reverse order). The first failure in schedule order is the message. */
static int run_level(ts_exp *x, int l, int back, pass_arg *a, ts_err *e)
{
    int lo = x->lvl[l], cnt = x->lvl[l + 1] - lo;
    a->from = lo;
    void (*fn)(void *, int) = back ? backward_node : forward_node;
    if (x->pool && x->replicas <= 1 && x->lvl_par[l]) {
        for (int t = 0; t < cnt; t++) x->node_rc[x->sched[lo + t]] = 0;
        ts_pool_run(x->pool, cnt, fn, a);
        for (int t = 0; t < cnt; t++) {
            int i = x->sched[lo + t];
            if (x->node_rc[i])
                return ts_fail(e, "[%s] %s: %s", x->nodes[i].cfg->name,
                               back ? "backward" : "forward", x->node_err[i].msg);
        }
        return 0;
    }
    for (int t = 0; t < cnt; t++) {
        int task = back ? cnt - 1 - t : t, i = x->sched[lo + task];
        fn(a, task);
        if (x->node_rc[i])
            return ts_fail(e, "[%s] %s: %s", x->nodes[i].cfg->name, back ? "backward" : "forward",
                           x->node_err[i].msg);
    }
    return 0;
}

int ts_exp_forward(ts_exp *x, ts_phase phase, int n, ts_err *e)
{
    x->ctx.phase = phase;
    pass_arg a = {x, phase, n, 0};
    for (int l = 0; l < x->nlvl; l++)
        if (run_level(x, l, 0, &a, e)) return -1;
    return 0;
}

int ts_exp_backward(ts_exp *x, ts_err *e)
{
    pass_arg a = {x, TS_TRAIN, 0, 0};
    for (int l = x->nlvl - 1; l >= 0; l--)
        if (run_level(x, l, 1, &a, e)) return -1;
    return 0;
}

/* ---- the memory a run will need -------------------------------------------------------------- */
/* Resident bytes of this process (/proc/self/statm); 0 when unknown. */
static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

/* The system's MemAvailable (/proc/meminfo); 0 when unknown. */
static double available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

static void human(double b, char *out, size_t cap)
{
    if (b >= 1 << 30) snprintf(out, cap, "%.2f GiB", b / (1 << 30));
    else snprintf(out, cap, "%.1f MiB", b / (1 << 20));
}

int ts_exp_check_memory(ts_exp *x, int nslots, ts_err *e)
{
    /* What is allocated from here on: the arena (weights, gradients, optimizer slots), the
     * loop's copy of the best weights and its row order; the outputs were allocated by the
     * build but not touched yet, so they are not in the resident size: count them too. */
    double params = 0, w = 0, act = 0;
    for (int i = 0; i < x->ctx.nparams; i++) {
        const ts_param *p = x->ctx.params[i];
        if (p->shared) continue;
        double n = (double)p->rows * p->cols;
        params += n * (2 + nslots) * sizeof(float);
        w += n * sizeof(float);
    }
    for (int i = 0; i < x->nnodes; i++)
        for (int k = 0; k < x->nodes[i].L.nout; k++)
            if (x->nodes[i].L.out[k].dtype == TS_F32)
                act += 2.0 * (double)ts_numel(&x->nodes[i].L.out[k]) * sizeof(float);
    double now = rss_bytes();
    double est = now + params + w + act + (double)x->data.nrows[TS_TRAIN] * sizeof(long);
    double avail = available_bytes();
    double limit = x->opts.max_memory > 0 ? x->opts.max_memory : now + avail;
    if ((x->opts.max_memory <= 0 && avail <= 0) || est <= limit) return 0;   /* no /proc: unknown */
    char s_est[32], s_lim[32], s_par[32], s_act[32], s_now[32];
    human(est, s_est, sizeof s_est);
    human(limit, s_lim, sizeof s_lim);
    human(params + w, s_par, sizeof s_par);
    human(act, s_act, sizeof s_act);
    human(now, s_now, sizeof s_now);
    return ts_fail(e, "%s: the run would need about %s (parameters with gradients, optimizer "
                   "slots and the best copy %s, activations %s, data and program %s) but %s "
                   "allows %s. Make the batch, the embedding tables or the vocabulary smaller, "
                   "or raise --max-memory", x->ini.file, s_est, s_par, s_act, s_now,
                   x->opts.max_memory > 0 ? "--max-memory" : "the memory available",
                   s_lim);
}
