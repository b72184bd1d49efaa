/* holdout.c — the selection split: a seeded share of the training split held out of training.
 *
 * [data] select_fraction = F (0 < F < 1) carves round(F x rows) of the rows the reader put in
 * its training split (or, with select_by = FIELD, round(F x groups) of the groups of an I32 field:
 * a user's rows all together) into a fourth split, drawn with select_seed (default 2026, never
 * the experiment seed, so every seed and every trial of a search holds out the same rows). The
 * run trains on the rest; after training it evaluates the kept (best-epoch) weights on the held
 * rows as it does the validation split, and writes the figures as select.TASK.FIG in
 * metrics.json. So `tessera tune --select-on holdout` chooses the trial on rows that neither
 * trained the model nor chose its epoch (docs/tuning.md).
 *
 * It is one mechanism of the host for every reader: a reader makes its three splits as always,
 * and the host only decides which of the training rows it asks for when training (train.c maps
 * the loop's positions through x->train_rows) and which it evaluates as the selection split
 * (x->select_rows, asked of the reader as training rows, evaluated by the heads as a validation
 * split). What a reader fits on its training split (vocabularies, standardisation) is fitted
 * before the host holds rows out, so those label-free statistics have seen the held rows;
 * docs/ini.md says so. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ts_holdout_draw(long n, const long *group, long ngroups, double frac, uint64_t seed,
                    long *sel, long *nsel, long *keep, long *nkeep, ts_err *e)
{
    *nsel = *nkeep = 0;
    long ng = group ? ngroups : n;
    if (!(frac > 0 && frac < 1))
        return ts_fail(e, "the selection fraction %g is not between 0 and 1 (both excluded)", frac);
    long k = lround(frac * (double)ng);
    if (k < 1 || k >= ng)
        return ts_fail(e, "a selection fraction of %g of %ld %s holds out %ld; it must hold out at "
                       "least one and leave at least one to train on: %s the fraction", frac, ng,
                       group ? "groups" : "training rows", k, k < 1 ? "raise" : "lower");
    long *perm = malloc((size_t)ng * sizeof *perm);
    unsigned char *held = calloc((size_t)ng, 1);
    if (!perm || !held) {
        free(perm);
        free(held);
        return ts_fail(e, "out of memory");
    }
    for (long g = 0; g < ng; g++) perm[g] = g;
    ts_rng r;
    ts_rng_seed(&r, seed);
    ts_rng_shuffle(&r, perm, ng);
    for (long i = 0; i < k; i++) held[perm[i]] = 1;
    for (long i = 0; i < n; i++) {
        if (held[group ? group[i] : i]) sel[(*nsel)++] = i;
        else keep[(*nkeep)++] = i;
    }
    free(perm);
    free(held);
    if (!*nsel || !*nkeep)
        return ts_fail(e, "the selection split holds %ld of %ld training rows; it must hold some "
                       "and leave some", *nsel, n);
    return 0;
}

typedef struct { int32_t v; long row; } id_row;

static int by_id(const void *a, const void *b)
{
    const id_row *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* The dense group number (0..*ng) of every training row by the I32 field `name`. */
static int read_groups(ts_exp *x, ts_cfg *cd, const char *name, long **group, long *ng, ts_err *e)
{
    const ts_tensor *f = ts_ctx_field(&x->ctx, name);
    if (!f || f->dtype != TS_I32 || ts_rowsize(f) != 1)
        return ts_fail(e, "%s: [data] select_by = %s: name an I32 field of one id per row that the "
                       "dataset declares (a user or query id), or leave select_by out to hold out "
                       "single rows", ts_cfg_where(cd, "select_by"), name);
    long n = x->data.nrows[TS_TRAIN], B = x->ctx.max_batch > 0 ? x->ctx.max_batch : 256;
    id_row *k = malloc((size_t)n * sizeof *k);
    long *rows = malloc((size_t)B * sizeof *rows);
    *group = malloc((size_t)n * sizeof **group);
    *ng = 0;
    int rc = !k || !rows || !*group ? ts_fail(e, "out of memory") : 0;
    const ts_dataset_ops *ops = x->data_pl->ops;
    /* the graph is not built yet and takes the fields' shapes as open() left them: restored below */
    int64_t dim0[TS_MAX_FIELDS];
    for (int i = 0; i < x->data.nfield; i++) dim0[i] = x->data.field[i].dim[0];
    for (long s = 0; !rc && s < n; s += B) {
        int b = (int)(n - s < B ? n - s : B);
        for (int i = 0; i < b; i++) rows[i] = s + i;
        ts_err pe;
        if (ops->batch(&x->data, TS_TRAIN, rows, b, &pe)) {
            rc = ts_fail(e, "[data] %s: %s", x->data_pl->name, pe.msg);
            break;
        }
        for (int i = 0; i < b; i++) k[s + i] = (id_row){f->ids[i], s + i};
    }
    for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = dim0[i];
    if (!rc) qsort(k, (size_t)n, sizeof *k, by_id);
    for (long i = 0; !rc && i < n; i++) {
        if (i == 0 || k[i].v != k[i - 1].v) (*ng)++;
        (*group)[k[i].row] = *ng - 1;
    }
    free(k);
    free(rows);
    if (rc) { free(*group); *group = NULL; }
    return rc;
}

int ts_exp_holdout(ts_exp *x, ts_err *e)
{
    ts_cfg *cd = ts_ini_find(&x->ini, "data");
    const char *fs = cd ? ts_cfg_str(cd, "select_fraction") : NULL;
    const char *ss = cd ? ts_cfg_str(cd, "select_seed") : NULL;
    const char *by = cd ? ts_cfg_str(cd, "select_by") : NULL;
    double frac = 0;
    if (fs && *fs && ts_cfg_float(cd, "select_fraction", &frac, e)) return -1;
    if (frac == 0) {
        if ((ss && *ss) || (by && *by))
            return ts_fail(e, "%s: [data] %s is set but select_fraction is not: give "
                           "select_fraction = F (such as 0.1) to hold out a selection split, or "
                           "remove %s", ts_cfg_where(cd, ss && *ss ? "select_seed" : "select_by"),
                           ss && *ss ? "select_seed" : "select_by",
                           ss && *ss ? "select_seed" : "select_by");
        return 0;
    }
    if (!(frac > 0 && frac < 1))
        return ts_fail(e, "%s: [data] select_fraction = %s: give the share of the training split "
                       "to hold out for selection, between 0 and 1 (such as 0.1), or 0 for none",
                       ts_cfg_where(cd, "select_fraction"), fs);
    long seed = 2026;
    if (ss && *ss && ts_cfg_int(cd, "select_seed", &seed, e)) return -1;
    if (seed < 0)
        return ts_fail(e, "%s: [data] select_seed = %ld: give a whole number ≥ 0",
                       ts_cfg_where(cd, "select_seed"), seed);
    if (x->ctx.open_mode != TS_OPEN_TRAIN) return 0;   /* applying a run: no training split */
    if (x->data.stream)   /* streamed rows are read in blocks, never by number */
        return ts_fail(e, "%s: [data] select_fraction holds out training rows by number, which a "
                       "streamed dataset (stream = true) does not offer; give the selection rows "
                       "a file of their own and tune on that, or read the data in memory",
                       ts_cfg_where(cd, "select_fraction"));
    long n = x->data.nrows[TS_TRAIN], *group = NULL, ng = 0;
    if (by && *by && read_groups(x, cd, by, &group, &ng, e)) return -1;
    x->select_rows = malloc((size_t)n * sizeof *x->select_rows);
    x->train_rows = malloc((size_t)n * sizeof *x->train_rows);
    int rc = !x->select_rows || !x->train_rows ? ts_fail(e, "out of memory") : 0;
    ts_err pe;
    if (!rc && ts_holdout_draw(n, group, ng, frac, (uint64_t)seed, x->select_rows, &x->nselect,
                               x->train_rows, &x->ntrain_rows, &pe))
        rc = ts_fail(e, "%s: [data] select_fraction = %s: %s", ts_cfg_where(cd, "select_fraction"),
                     fs, pe.msg);
    free(group);
    if (rc) {
        free(x->select_rows);
        free(x->train_rows);
        x->select_rows = x->train_rows = NULL;
        x->nselect = x->ntrain_rows = 0;
    }
    return rc;
}
