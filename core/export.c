/* export.c — `tessera export` and `tessera recommend`: reload a finished run (its resolved
 * config.ini and params.bin), run the TEST split forward and take, per user, the vector the
 * retrieval head scores (its input), then either write every user's and item's vectors for an
 * external nearest-neighbour index (faiss, hnswlib), or print one user's top-K items.
 *
 * Program side: it prints and returns exit statuses, like main.c. It is not a serving system
 * (one exact scan of the catalogue per query, see bench/bench_topk.c for the speed) and it does
 * not train. The user vector is the one the test evaluation scored: for MovieLens, from the
 * history before the user's last watch. docs/models/youtube_dnn.md has the file layouts. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ts_cmd_export(int argc, char **argv);
int ts_cmd_recommend(int argc, char **argv);

typedef struct {
    ts_exp *x;
    ts_hnode *hn;                 /* the retrieval head */
    const ts_param *V, *b;        /* (items, D) item vectors, (items, 1) biases */
    int items, D;
    const ts_tensor *user, *label, *ex;   /* dataset fields: user ids, target, exclusions */
    const int32_t *uraw, *iraw;   /* aux user_raw_id (nusers), item_raw_id (items), or NULL */
    long nuraw;
    const char *const *title;     /* aux item_title (items), or NULL */
} run_t;

static int fail(const char *cmd, const ts_err *e)
{
    fprintf(stderr, "tessera %s: %s\n", cmd, e->msg);
    return 1;
}

/* config.ini starts "; resolved configuration of PATH: ..."; relative data paths of the run
 * resolve against PATH's folder (and its parent), as they did when it ran. */
static void original_dir(const char *cfg, char *dir, size_t n)
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

static const ts_param *param_named(ts_exp *x, const char *head, const char *name)
{
    char full[3 * TS_NAME_MAX];
    snprintf(full, sizeof full, "head.%s.%s", head, name);
    for (int i = 0; i < x->ctx.nparams; i++)
        if (!x->ctx.params[i]->shared && !strcmp(x->ctx.params[i]->name, full)) return x->ctx.params[i];
    return NULL;
}

/* Loads RUN_DIR/config.ini (with overrides), builds it, loads params.bin, finds the head. */
static int load_run(run_t *R, const char *dir, const char *head, int nover, char **over, ts_err *e)
{
    memset(R, 0, sizeof *R);
    char cfg[TS_PATH_MAX + 32], odir[TS_PATH_MAX], pp[TS_PATH_MAX + 32];
    snprintf(cfg, sizeof cfg, "%s/config.ini", dir);
    snprintf(pp, sizeof pp, "%s/params.bin", dir);
    FILE *f = ts_fopen_regular(cfg);
    if (!f) return ts_fail(e, "%s has no config.ini: give the folder a `tessera run` wrote", dir);
    fclose(f);
    ts_run_opts o = {.results_dir = dir, .noverride = nover, .overrides = over};
    if (!(R->x = ts_exp_load(cfg, &o, e))) return -1;
    ts_exp *x = R->x;
    original_dir(cfg, odir, sizeof odir);
    if (odir[0] && access(odir, F_OK) == 0)
        snprintf(x->ctx.exp_dir, sizeof x->ctx.exp_dir, "%s", odir);
    if (ts_exp_build(x, e)) {
        /* the usual cause: a relative data path of a run made from another folder */
        size_t k = strlen(e->msg);
        snprintf(e->msg + k, sizeof e->msg - k, " (the run's relative paths resolve from the "
                 "current folder and from %s; run this where the run was made, set "
                 "TESSERA_DATA_DIR, or add data.path=FOLDER)", x->ctx.exp_dir);
        return -1;
    }
    for (int i = 0; i < x->nheads && !R->hn; i++)
        if (head ? !strcmp(x->heads[i].H.name, head) : !strcmp(x->heads[i].pl->name, "retrieval"))
            R->hn = &x->heads[i];
    if (!R->hn)
        return ts_fail(e, head ? "%s: the run has no [head.%s]" : "%s: the run has no head of "
                       "type = retrieval, whose input is the user vector to export%s", cfg,
                       head ? head : "");
    const char *hname = R->hn->H.name;
    R->V = param_named(x, hname, "V");
    R->b = param_named(x, hname, "b");
    ts_tensor *in = R->hn->H.in[0];
    if (!R->V || !R->b || R->hn->H.nin != 1 || in->dtype != TS_F32 || in->ndim != 2 ||
        R->V->cols != in->dim[1] || R->b->rows != R->V->rows || R->b->cols != 1)
        return ts_fail(e, "[head.%s] (type %s) has no item vectors V (items, D) and biases b "
                       "(items, 1) over a (B, D) input; export needs a retrieval head", hname,
                       R->hn->pl->name);
    if (ts_load_params(x, pp, e)) return -1;
    /* A head whose V is computed (the retrieval head's item tower) refreshes it from the loaded
     * weights at the start of an evaluation, as the run's own evaluations did. */
    ts_err pe;
    if (TS_OP(R->hn->ops, eval_begin) && R->hn->ops->eval_begin(&R->hn->H, TS_TEST, &pe))
        return ts_fail(e, "[head.%s] %s", hname, pe.msg);
    R->items = R->V->rows;
    R->D = R->V->cols;
    R->user = ts_ctx_field(&x->ctx, "user");
    if (R->user && (R->user->dtype != TS_I32 || ts_rowsize(R->user) != 1)) R->user = NULL;
    const char *lab = ts_cfg_str(R->hn->cfg, "label");
    R->label = lab ? ts_ctx_field(&x->ctx, lab) : NULL;
    const char *exn = ts_cfg_str(R->hn->cfg, "exclude_watched");
    R->ex = exn ? ts_ctx_field(&x->ctx, exn) : NULL;
    if (R->ex && R->ex->dtype != TS_BAGS) R->ex = NULL;
    const void *p;
    long n;
    if (ts_ctx_aux(&x->ctx, "user_raw_id", &p, &n) == 0) { R->uraw = p; R->nuraw = n; }
    if (ts_ctx_aux(&x->ctx, "item_raw_id", &p, &n) == 0 && n == R->items) R->iraw = p;
    if (ts_ctx_aux(&x->ctx, "item_title", &p, &n) == 0 && n == R->items) R->title = p;
    return 0;
}

/* Rows [s, s + n) of the TEST split through the layers: fields filled, H->in[0] = (n, D). */
static int forward_rows(run_t *R, const long *rows, int n, ts_err *e)
{
    ts_exp *x = R->x;
    ts_err pe;
    if (ts_exp_data_ops(x)->batch(&x->data, TS_TEST, rows, n, &pe))
        return ts_fail(e, "[data] %s: %s", x->data_pl->name, pe.msg);
    for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = n;
    return ts_exp_forward(x, TS_TEST, n, e);
}

static long user_id(const run_t *R, int r, long row)
{
    if (!R->user) return row;
    long u = R->user->ids[r];
    return R->uraw && u >= 0 && u < R->nuraw ? R->uraw[u] : u;
}

static int write_users(run_t *R, const char *out, ts_err *e)
{
    ts_exp *x = R->x;
    long n = x->data.nrows[TS_TEST], B = x->eval_batch;
    float *U = malloc((size_t)(n ? n : 1) * (size_t)R->D * sizeof *U);   /* (n, D) */
    int32_t *id = malloc((size_t)(n ? n : 1) * sizeof *id);              /* (n) */
    long *rows = malloc((size_t)B * sizeof *rows);
    int rc = !U || !id || !rows ? ts_fail(e, "out of memory for %ld user vectors", n) : 0;
    for (long s = 0; s < n && !rc; s += B) {
        int b = (int)(n - s < B ? n - s : B);
        for (int i = 0; i < b; i++) rows[i] = s + i;
        if ((rc = forward_rows(R, rows, b, e))) break;
        memcpy(U + s * R->D, R->hn->H.in[0]->x, (size_t)b * R->D * sizeof *U);
        for (int i = 0; i < b; i++) id[s + i] = (int32_t)user_id(R, i, s + i);
    }
    char path[TS_PATH_MAX + 32];
    FILE *f = NULL;
    if (!rc) {
        snprintf(path, sizeof path, "%s/user_vectors.txt", out);
        if (!(f = fopen(path, "w"))) rc = ts_fail(e, "cannot write %s", path);
    }
    if (!rc) {
        fprintf(f, "# tessera export: head %s, test split, users=%ld dim=%d; row user_id v_1..v_%d\n",
                R->hn->H.name, n, R->D, R->D);
        for (long r = 0; r < n; r++) {
            fprintf(f, "%ld\t%d\t", r, id[r]);
            for (int d = 0; d < R->D; d++) fprintf(f, d ? " %.7g" : "%.7g", U[r * R->D + d]);
            fputc('\n', f);
        }
        if (fclose(f)) rc = ts_fail(e, "cannot write %s: check disk space", path);
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/user_vectors.bin", out);
        uint32_t hdr[4] = {0x56555354u /* "TSUV" */, 1, (uint32_t)n, (uint32_t)R->D};
        int bad = !(f = fopen(path, "wb"));
        if (!bad)
            bad = fwrite(hdr, sizeof hdr, 1, f) != 1 || fwrite(id, sizeof *id, (size_t)n, f) != (size_t)n ||
                  fwrite(U, sizeof *U, (size_t)n * R->D, f) != (size_t)n * R->D;
        if (f && fclose(f)) bad = 1;
        if (bad) rc = ts_fail(e, "cannot write %s: check the folder and disk space", path);
    }
    free(U); free(id); free(rows);
    return rc;
}

int ts_cmd_export(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *head = NULL;
    char **over = calloc((size_t)argc + 1, sizeof *over);
    int nover = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--head") && i + 1 < argc) head = argv[++i];
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else if (argv[i][0] != '-' && strchr(argv[i], '=')) over[nover++] = argv[i];
        else { dir = NULL; break; }
    }
    if (!dir) {
        fprintf(stderr, "usage: tessera export RUN_DIR [--out DIR] [--head TASK] [SECTION.KEY=VALUE ...]\n");
        free(over);
        return 2;
    }
    if (!out) out = dir;
    run_t R;
    ts_err e;
    int rc = load_run(&R, dir, head, nover, over, &e) || ts_mkdirs(out, &e) || write_users(&R, out, &e);
    if (!rc) {
        ts_err pe;
        if (TS_OP(R.hn->ops, report) && R.hn->ops->report(&R.hn->H, out, &pe))
            rc = ts_fail(&e, "[head.%s] report: %s", R.hn->H.name, pe.msg);
    }
    if (!rc)
        printf("%s/user_vectors.{txt,bin}: %ld users; %s/item_vectors.{txt,bin}: %d items; dim %d\n",
               out, R.x->data.nrows[TS_TEST], out, R.items, R.D);
    ts_exp_free(R.x);
    free(over);
    return rc ? fail("export", &e) : 0;
}

/* The TEST row of user ID (raw id when the dataset offers user_raw_id): the row whose index
 * equals the user's index is tried first (one row per user, in order, as movielens does),
 * then every row. Leaves that row's fields and user vector in place. -1 when none. */
static long find_user(run_t *R, long want, ts_err *e)
{
    long n = R->x->data.nrows[TS_TEST], B = R->x->eval_batch, idx = want;
    if (R->uraw) {
        for (idx = 0; idx < R->nuraw && R->uraw[idx] != want; idx++) {}
        if (idx == R->nuraw) return -1;
    }
    if (idx < n) {
        long row = idx;
        if (forward_rows(R, &row, 1, e)) return -2;
        if (user_id(R, 0, row) == want) return row;
    }
    long *rows = malloc((size_t)B * sizeof *rows), found = -1;
    if (!rows) return ts_fail(e, "out of memory"), -2;
    for (long s = 0; s < n && found < 0; s += B) {
        int b = (int)(n - s < B ? n - s : B);
        for (int i = 0; i < b; i++) rows[i] = s + i;
        if (ts_exp_data_ops(R->x)->batch(&R->x->data, TS_TEST, rows, b, e)) { free(rows); return -2; }
        for (int i = 0; i < b && found < 0; i++)
            if (user_id(R, i, s + i) == want) found = s + i;
    }
    free(rows);
    if (found >= 0 && forward_rows(R, &found, 1, e)) return -2;
    return found;
}

/* ---- rank mode: recall, then the ranking stage ------------------------------------------------ */
typedef struct { float z; int i; } zrow;
static int by_z(const void *a, const void *b)
{
    const zrow *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return x->i - y->i;                         /* ties: the candidate order */
}

/* A ranking run (dataset movielens_ranking: each test step's rows are the recall run's top K for
 * the user, from the history before the last watch): the user's K candidates through the ranking
 * model, printed best first by exp(z), the head's engagement estimate. */
static int recommend_rank(const char *dir, const char *head, long want, long k, int nover,
                          char **over, ts_err *e)
{
    char cfg[TS_PATH_MAX + 32], odir[TS_PATH_MAX], pp[TS_PATH_MAX + 32];
    snprintf(cfg, sizeof cfg, "%s/config.ini", dir);
    snprintf(pp, sizeof pp, "%s/params.bin", dir);
    FILE *f = ts_fopen_regular(cfg);
    if (!f) return ts_fail(e, "%s has no config.ini: give the folder a `tessera run` wrote", dir);
    fclose(f);
    ts_run_opts o = {.results_dir = dir, .noverride = nover, .overrides = over};
    ts_exp *x = ts_exp_load(cfg, &o, e);
    if (!x) return -1;
    original_dir(cfg, odir, sizeof odir);
    if (odir[0] && access(odir, F_OK) == 0) snprintf(x->ctx.exp_dir, sizeof x->ctx.exp_dir, "%s", odir);
    int rc = ts_exp_build(x, e) || ts_load_params(x, pp, e) ? -1 : 0;
    ts_hnode *hn = NULL;
    for (int i = 0; !rc && i < x->nheads && !hn; i++)
        if (head ? !strcmp(x->heads[i].H.name, head) : x->heads[i].weight > 0) hn = &x->heads[i];
    const void *p;
    long n, K = 0, nsteps = 0;
    const int32_t *suser = NULL, *iraw = NULL;
    const char *const *title = NULL;
    if (!rc && !hn) rc = ts_fail(e, "%s: the run has no %s%s", cfg, head ? "head " : "head that trains", head ? head : "");
    if (!rc && (ts_ctx_aux(&x->ctx, "candidates", &p, &n) || n != 1 ||
                ts_ctx_aux(&x->ctx, "step_user", &p, &nsteps) || !nsteps))
        rc = ts_fail(e, "%s: --rank needs a ranking run (dataset type = movielens_ranking: each "
                     "test step's rows are a recall run's top K); for a recall run leave --rank out", dir);
    if (!rc) {
        ts_ctx_aux(&x->ctx, "candidates", &p, &n); K = *(const long *)p;
        ts_ctx_aux(&x->ctx, "step_user", &p, &n); suser = p;
        if (ts_ctx_aux(&x->ctx, "item_raw_id", &p, &n) == 0) iraw = p;
        if (ts_ctx_aux(&x->ctx, "item_title", &p, &n) == 0) title = p;
    }
    const ts_tensor *step = ts_ctx_field(&x->ctx, "step"), *item = ts_ctx_field(&x->ctx, "item"),
                    *raw = ts_ctx_field(&x->ctx, "raw");
    long nt = rc ? 0 : x->data.nrows[TS_TEST], found = -1;
    long *rows = rc ? NULL : malloc((size_t)(K > 0 ? K : 1) * sizeof *rows);
    if (!rc && (!rows || !step || !item || K < 1)) rc = ts_fail(e, "out of memory");
    for (long r = 0; !rc && r < nt && found < 0; r += K) {     /* K rows per test step */
        if (ts_exp_data_ops(x)->batch(&x->data, TS_TEST, &r, 1, e)) { rc = -1; break; }
        if (suser[step->ids[0]] == want) found = r;
    }
    if (!rc && found < 0)
        rc = ts_fail(e, "unknown user %ld: the test split of %s has no step of that user id", want, dir);
    zrow *z = !rc ? malloc((size_t)K * sizeof *z) : NULL;
    if (!rc && !z) rc = ts_fail(e, "out of memory");
    if (!rc) {
        int m = (int)(found + K <= nt ? K : nt - found);
        for (int i = 0; i < m; i++) rows[i] = found + i;
        if (ts_exp_data_ops(x)->batch(&x->data, TS_TEST, rows, m, e)) rc = -1;
        for (int i = 0; !rc && i < x->data.nfield; i++) x->data.field[i].dim[0] = m;
        if (!rc && ts_exp_forward(x, TS_TEST, m, e)) rc = -1;
        if (!rc) {
            const float *lz = hn->H.in[0]->x;                      /* (m, 1) logits */
            for (int i = 0; i < m; i++) z[i] = (zrow){lz[i], i};
            qsort(z, (size_t)m, sizeof *z, by_z);
            int show = (int)(k < m ? k : m);
            printf("# user %ld: top %d of the recall run's %d candidates by the ranking head %s, "
                   "score exp(z) (run %s)\n# rank\tscore\trecall_rank\titem_id\ttitle\n",
                   want, show, m, hn->H.name, dir);
            for (int j = 0; j < show; j++) {
                int i = z[j].i, it = item->ids[i];
                printf("%d\t%.4g\t%d\t%d\t%s\n", j + 1, exp((double)z[j].z),
                       raw && raw->dim[1] > 1 ? (int)raw->x[i * raw->dim[1] + 1] : i + 1,
                       iraw ? iraw[it] : it, title && title[it] ? title[it] : "");
            }
        }
    }
    free(z);
    free(rows);
    ts_exp_free(x);
    return rc;
}

int ts_cmd_recommend(int argc, char **argv)
{
    const char *dir = NULL, *head = NULL, *user = NULL;
    long k = 10;
    char **over = calloc((size_t)argc + 1, sizeof *over);
    int nover = 0, usage = 0, rank = 0;
    for (int i = 0; i < argc && !usage; i++) {
        if (!strcmp(argv[i], "--rank")) rank = 1;
        else if (!strcmp(argv[i], "--user") && i + 1 < argc) user = argv[++i];
        else if ((!strcmp(argv[i], "-k") || !strcmp(argv[i], "--k")) && i + 1 < argc) k = atol(argv[++i]);
        else if (!strcmp(argv[i], "--head") && i + 1 < argc) head = argv[++i];
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else if (argv[i][0] != '-' && strchr(argv[i], '=')) over[nover++] = argv[i];
        else usage = 1;
    }
    char *end = NULL;
    long want = user ? strtol(user, &end, 10) : 0;
    if (usage || !dir || !user || !*user || *end || k < 1) {
        fprintf(stderr, "usage: tessera recommend RUN_DIR --user ID [-k 10] [--rank] [--head TASK] "
                "[SECTION.KEY=VALUE ...]\n  ID is the dataset's user id (MovieLens userId); K >= 1\n");
        free(over);
        return 2;
    }
    if (rank) {
        ts_err re;
        int r = recommend_rank(dir, head, want, k, nover, over, &re);
        free(over);
        return r ? fail("recommend", &re) : 0;
    }
    run_t R;
    ts_err e;
    int rc = load_run(&R, dir, head, nover, over, &e);
    long row = -2;
    if (!rc && (row = find_user(&R, want, &e)) == -1) {
        /* without a `user` field (or user_raw_id) the test row number stands for the user */
        long lo = 0, hi = R.x->data.nrows[TS_TEST] - 1;
        for (long i = 0; R.uraw && i < R.nuraw; i++) {
            if (i == 0 || R.uraw[i] < lo) lo = R.uraw[i];
            if (i == 0 || R.uraw[i] > hi) hi = R.uraw[i];
        }
        rc = ts_fail(&e, "unknown user %ld: the test split of %s has no example of that %s (it "
                     "holds %ld users, ids %ld to %ld); give one of them", want, dir,
                     R.uraw ? "user id" : R.user ? "user index" : "row", R.x->data.nrows[TS_TEST],
                     lo, hi);
    } else if (!rc && row < 0) {
        rc = -1;
    }
    float *s = !rc ? malloc((size_t)R.items * sizeof *s) : NULL;   /* (items) scores */
    int32_t *top = !rc ? malloc((size_t)(k < R.items ? k : R.items) * sizeof *top) : NULL;
    if (!rc && (!s || !top)) rc = ts_fail(&e, "out of memory");
    if (!rc) {
        /* s = V u + b: the head's score of every item for this user */
        const float *u = R.hn->H.in[0]->x;                     /* (1, D) */
        memcpy(s, R.b->w, (size_t)R.items * sizeof *s);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, R.items, R.D, 1.0f, R.V->w, R.D, u, 1, 1.0f, s, 1);
        long nex = 0;
        if (R.ex)                                             /* earlier watches */
            for (int32_t j = R.ex->off[0]; j < R.ex->off[1]; j++)
                if (R.ex->ids[j] >= 0 && R.ex->ids[j] < R.items && isfinite(s[R.ex->ids[j]]))
                    s[R.ex->ids[j]] = -INFINITY, nex++;
        if (R.label && R.label->dtype == TS_F32) {            /* and the held-out last watch */
            long t = (long)R.label->x[0];
            if (t >= 0 && t < R.items && isfinite(s[t])) s[t] = -INFINITY, nex++;
        }
        int m = ts_topk(s, R.items, (int)(k < R.items ? k : R.items), top);
        printf("# user %ld: top %d of %d items by u.v + b, %ld watched items excluded "
               "(run %s, head %s)\n# rank\tscore\titem_id\ttitle\n", want, m, R.items, nex, dir,
               R.hn->H.name);
        for (int i = 0; i < m; i++)
            printf("%d\t%.4f\t%d\t%s\n", i + 1, s[top[i]], R.iraw ? R.iraw[top[i]] : top[i],
                   R.title && R.title[top[i]] ? R.title[top[i]] : "");
    }
    free(s); free(top);
    ts_exp_free(R.x);
    free(over);
    return rc ? fail("recommend", &e) : 0;
}
