/* retriever.c — a finished retrieval run as a scoring function, for a plugin that needs a
 * recall stage's candidates (the ranking dataset, plugins/datasets/movielens_ranking.c).
 *
 * ts_retriever_open loads RUN_DIR/config.ini, builds the experiment (its dataset is opened as
 * the run opened it, which fixes the item numbering of the weights), loads RUN_DIR/params.bin
 * and finds the retrieval head (the head whose parameters are item vectors V (items, D) and
 * biases b (items, 1) over a (B, D) user vector). The caller then fills the run's dataset fields
 * (ts_retriever_field) with rows of its own making and ts_retriever_score runs them through the
 * layers and returns s = U V^T + b for every item: nothing of the run's own rows is used, so the
 * caller decides exactly what each row's user vector may see. Library code: never prints. */
#include "internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ts_retriever {
    ts_exp *x;
    ts_hnode *hn;
    const ts_param *V, *b;        /* (items, D), (items, 1) */
    int items, D, maxb;
    int32_t **fbuf;               /* (nfield) zeroed buffers for fields the caller leaves alone */
};

static const ts_param *head_param(ts_exp *x, const char *head, const char *name)
{
    char full[3 * TS_NAME_MAX];
    snprintf(full, sizeof full, "head.%s.%s", head, name);
    for (int i = 0; i < x->ctx.nparams; i++)
        if (!x->ctx.params[i]->shared && !strcmp(x->ctx.params[i]->name, full)) return x->ctx.params[i];
    return NULL;
}

/* config.ini's first line names the experiment file; its folder resolves relative data paths. */
static void run_exp_dir(const char *cfg, char *dir, size_t n)
{
    static const char tag[] = "; resolved configuration of ";
    char line[TS_PATH_MAX + 128];
    FILE *f = ts_fopen_regular(cfg);
    dir[0] = 0;
    if (!f) return;
    if (fgets(line, sizeof line, f) && !strncmp(line, tag, sizeof tag - 1)) {
        char *p = line + sizeof tag - 1, *end = strstr(p, ": file values"), *slash = NULL;
        for (char *c = p; end && c < end; c++) if (*c == '/') slash = c;
        if (slash) snprintf(dir, n, "%.*s", (int)(slash - p), p);
    }
    fclose(f);
}

void ts_retriever_close(ts_retriever *r)
{
    if (!r) return;
    if (r->fbuf && r->x)
        for (int i = 0; i < r->x->data.nfield; i++) free(r->fbuf[i]);
    free(r->fbuf);
    ts_exp_free(r->x);
    free(r);
}

ts_retriever *ts_retriever_open(ts_ctx *ctx, const char *run_dir, const char *head, ts_err *e)
{
    char dir[TS_PATH_MAX], cfg[TS_PATH_MAX + 32], pp[TS_PATH_MAX + 32], odir[TS_PATH_MAX];
    char want[TS_PATH_MAX + 32];
    if (!run_dir || !*run_dir) return ts_fail(e, "no run folder given"), NULL;
    /* resolved as a data path, so the run's params.bin enters the caller's run identity */
    snprintf(want, sizeof want, "%s/params.bin", run_dir);
    ts_ctx_path(ctx, want, pp, sizeof pp);
    snprintf(dir, sizeof dir, "%.*s", (int)(strlen(pp) - strlen("/params.bin")), pp);
    snprintf(cfg, sizeof cfg, "%s/config.ini", dir);
    if (access(cfg, F_OK) || access(pp, F_OK))
        return ts_fail(e, "%s is not a finished run (it has no %s): train the recall experiment "
                       "first (tessera run EXPERIMENT.ini) and name its results folder",
                       dir, access(cfg, F_OK) ? "config.ini" : "params.bin"), NULL;
    ts_retriever *r = calloc(1, sizeof *r);
    if (!r) return ts_fail(e, "out of memory"), NULL;
    ts_run_opts o = {.results_dir = dir};
    ts_err le;
    if (!(r->x = ts_exp_load(cfg, &o, &le))) {
        ts_fail(e, "recall run %s: %s", dir, le.msg);
        ts_retriever_close(r);
        return NULL;
    }
    ts_exp *x = r->x;
    run_exp_dir(cfg, odir, sizeof odir);
    if (odir[0] && access(odir, F_OK) == 0)
        snprintf(x->ctx.exp_dir, sizeof x->ctx.exp_dir, "%s", odir);
    if (ts_exp_build(x, &le)) {
        ts_fail(e, "recall run %s: %s (its relative data paths resolve from the current folder "
                "and from %s)", dir, le.msg, x->ctx.exp_dir);
        ts_retriever_close(r);
        return NULL;
    }
    for (int i = 0; i < x->nheads && !r->hn; i++)
        if (head && *head ? !strcmp(x->heads[i].H.name, head) : !strcmp(x->heads[i].pl->name, "retrieval"))
            r->hn = &x->heads[i];
    const char *hname = r->hn ? r->hn->H.name : "";
    if (r->hn) { r->V = head_param(x, hname, "V"); r->b = head_param(x, hname, "b"); }
    ts_tensor *in = r->hn ? r->hn->H.in[0] : NULL;
    if (!r->hn || !r->V || !r->b || r->hn->H.nin != 1 || in->dtype != TS_F32 || in->ndim != 2 ||
        r->V->cols != in->dim[1] || r->b->rows != r->V->rows || r->b->cols != 1) {
        ts_fail(e, "recall run %s has no %s%s%s with item vectors V (items, D) and biases b "
                "(items, 1) over a (B, D) user vector; name a run of a retrieval model",
                dir, head && *head ? "[head." : "head of type = retrieval", head && *head ? head : "",
                head && *head ? "]" : "");
        ts_retriever_close(r);
        return NULL;
    }
    if (ts_load_params(x, pp, &le)) {
        ts_fail(e, "recall run %s: %s", dir, le.msg);
        ts_retriever_close(r);
        return NULL;
    }
    if (TS_OP(r->hn->ops, eval_begin) && r->hn->ops->eval_begin(&r->hn->H, TS_TEST, &le)) {
        ts_fail(e, "recall run %s: [head.%s] %s", dir, hname, le.msg);
        ts_retriever_close(r);
        return NULL;
    }
    r->items = r->V->rows;
    r->D = r->V->cols;
    r->maxb = x->ctx.max_batch > 0 ? x->ctx.max_batch : 1;
    /* every field starts as rows of zeros / empty bags, large enough for the largest batch */
    r->fbuf = calloc((size_t)x->data.nfield, sizeof *r->fbuf);
    for (int i = 0; r->fbuf && i < x->data.nfield; i++) {
        ts_tensor *t = &x->data.field[i];
        long cells = (long)r->maxb * ts_rowsize(t);
        if (!(r->fbuf[i] = calloc((size_t)cells + 1, sizeof(int32_t)))) { free(r->fbuf[i]); break; }
        if (t->dtype == TS_F32) t->x = (float *)r->fbuf[i];
        else if (t->dtype == TS_I32) t->ids = r->fbuf[i];
        else { t->off = r->fbuf[i]; t->ids = r->fbuf[i]; }
        t->len = NULL;
    }
    for (int i = 0; i < x->data.nfield; i++)
        if (!r->fbuf || !r->fbuf[i]) {
            ts_fail(e, "out of memory for the recall run's fields");
            ts_retriever_close(r);
            return NULL;
        }
    return r;
}

ts_tensor *ts_retriever_field(ts_retriever *r, const char *name)
{
    for (int i = 0; i < r->x->data.nfield; i++)
        if (!strcmp(r->x->data.field_name[i], name)) return &r->x->data.field[i];
    return NULL;
}

int ts_retriever_aux(ts_retriever *r, const char *name, const void **ptr, long *n)
{
    return ts_ctx_aux(&r->x->ctx, name, ptr, n);
}

int ts_retriever_items(const ts_retriever *r) { return r->items; }
int ts_retriever_dim(const ts_retriever *r) { return r->D; }
int ts_retriever_max_batch(const ts_retriever *r) { return r->maxb; }

int ts_retriever_score(ts_retriever *r, int n, float *scores, float *user, ts_err *e)
{
    if (n < 1 || n > r->maxb)
        return ts_fail(e, "the recall run scores 1 to %d rows at a time, not %d", r->maxb, n);
    ts_exp *x = r->x;
    for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = n;
    ts_err le;
    if (ts_exp_forward(x, TS_TEST, n, &le)) return ts_fail(e, "recall run: %s", le.msg);
    const float *U = r->hn->H.in[0]->x;                 /* (n, D) */
    if (user) memcpy(user, U, (size_t)n * r->D * sizeof *user);
    if (!scores) return 0;
    for (int i = 0; i < n; i++) memcpy(scores + (size_t)i * r->items, r->b->w, (size_t)r->items * sizeof *scores);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r->items, r->D, 1.0f, U, r->D,
                r->V->w, r->D, 1.0f, scores, r->items);
    return 0;
}
