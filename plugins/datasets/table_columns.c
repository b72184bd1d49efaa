/* table_columns.c — what the table reader fits on the training split and how it applies it:
 * dense transforms (clip to fixed bounds or training percentiles, a signed log, a fill value
 * for missing numbers, then standard or min-max scaling with training statistics),
 * the example age, and (through table_vocab.c) vocabularies and hashing. Fitting happens only
 * when the run has no fitted state; applying happens always. Groups of main-file columns are
 * then kept row-major (packed) for fast batches. Reading is table_parse.c's. */
#include "table.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t tb_hash(const char *s, size_t n, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 33;                      /* splitmix64's finaliser: every bit of h moves the bucket */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* t(v): clip, then the signed log log(1 + |v|) * sign(v) when asked. */
static double transform(const tb_feat *f, double v)
{
    if (v < f->clip_lo) v = f->clip_lo;
    if (v > f->clip_hi) v = f->clip_hi;
    return f->log ? copysign(log1p(fabs(v)), v) : v;
}

double tb_dense_t(const tb_feat *f, double x) { return transform(f, x); }

/* A dense feature's output for a raw value x (NaN: missing), as tb_apply makes it. */
double tb_dense_out(const tb_feat *f, double x)
{
    double v = isnan(x) ? f->fill : transform(f, x);
    return (v - f->shift) / f->div;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Clip bounds, fill value and scaling from the training rows. One gather in split order, then
 * sequential passes: the sums run over the training rows in split order, as the census reader's
 * did, so the figures are the same to the bit. */
static int fit_dense(tb_data *T, tb_feat *f, double *x, ts_err *e)
{
    const tb_src *s = &T->src[f->src];
    long ntr = T->nrows[TS_TRAIN], np = 0;
    double *y = NULL;
    if (!x && !(x = malloc((size_t)(ntr ? ntr : 1) * sizeof *x))) return ts_fail(e, "table: out of memory");
    for (long i = 0; i < ntr && !s->in_group; i++) {   /* a group's columns come gathered */
        int r = tb_src_row(T, f, T->rows[TS_TRAIN][i]);
        x[i] = r >= 0 ? TB_NUM(s, r) : NAN;      /* NaN: missing (or no row in its side table) */
    }
    if (!isnan(f->q_lo) || !isnan(f->q_hi)) {
        if (!(y = malloc((size_t)(ntr ? ntr : 1) * sizeof *y))) { free(x); return ts_fail(e, "table: out of memory"); }
        for (long i = 0; i < ntr; i++) if (!isnan(x[i])) y[np++] = x[i];
        qsort(y, (size_t)np, sizeof *y, cmp_double);
        for (int k = 0; k < 2 && np; k++) {
            double q = k ? f->q_hi : f->q_lo, pos = q / 100 * (double)(np - 1);
            if (isnan(q)) continue;
            long a = (long)floor(pos);
            double b = a + 1 < np ? y[a + 1] : y[a];
            *(k ? &f->clip_hi : &f->clip_lo) = y[a] + (pos - (double)a) * (b - y[a]);
        }
        free(y);
        np = 0;
    }
    double s1 = 0;
    for (long i = 0; i < ntr; i++)
        if (!isnan(x[i])) { s1 += (x[i] = transform(f, x[i])); np++; }
    f->fill = f->fill_kind == TB_FILL_VALUE ? transform(f, f->fill) : np ? s1 / (double)np : 0;
    /* the statistics of what the model sees: every training row, missing ones filled */
    double sum = 0, lo = INFINITY, hi = -INFINITY, s2 = 0;
    for (long i = 0; i < ntr; i++) {
        double v = isnan(x[i]) ? (x[i] = f->fill) : x[i];
        sum += v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    double mu = ntr ? sum / (double)ntr : 0;
    for (long i = 0; i < ntr; i++) s2 += (x[i] - mu) * (x[i] - mu);
    free(x);
    double sd = ntr ? sqrt(s2 / (double)ntr) : 0;
    if (f->scale == TB_SCALE_STANDARD) { f->shift = mu; f->div = sd > 1e-12 ? sd : 1.0; }
    else if (f->scale == TB_SCALE_MINMAX) { f->shift = ntr ? lo : 0; f->div = hi - lo > 1e-12 ? hi - lo : 1.0; }
    else { f->shift = 0; f->div = 1; }
    return 0;
}

/* example_age: t_max and t_max - t_min of the time column over the training examples (the
 * movielens reader's rule: 0 and 1 when there are none or all share one time). */
static void fit_age(tb_data *T, tb_feat *f)
{
    const tb_src *s = &T->src[f->src];
    double lo = 1e300, hi = -1e300;
    long n = T->nrows[TS_TRAIN];
    for (long i = 0; i < n; i++) {
        double t = s->time[T->rows[TS_TRAIN][i]];
        if (t < lo) lo = t;
        if (t > hi) hi = t;
    }
    f->clip_lo = -INFINITY;
    f->clip_hi = INFINITY;
    f->fill = 0;
    f->shift = n ? hi : 0;
    f->div = n && hi > lo ? hi - lo : 1;
}

int tb_fit(tb_data *T, ts_err *e)
{
    long n = T->tab[0].n;
    uint8_t *is_train = calloc((size_t)n + 1, 1);
    if (!is_train || !(T->train_sorted = malloc((size_t)(n + 1) * sizeof *T->train_sorted))) {
        free(is_train);
        return ts_fail(e, "table: out of memory");
    }
    for (long i = 0; i < T->nperiod; i++) is_train[T->period[i]] = 1;   /* before min_history */
    T->ntrain_sorted = 0;
    for (long r = 0; r < n; r++) {               /* no branch on a coin flip per row */
        T->train_sorted[T->ntrain_sorted] = r;
        T->ntrain_sorted += is_train[r];
    }
    free(is_train);
    /* Columns read into a group's rows: one pass over the rows a group, not one a column. */
    long ntr = T->nrows[TS_TRAIN];
    for (int g = 0; g < T->ngroup; g++) {
        tb_group *G = &T->group[g];
        int F = G->n, rc = 0;
        if (!G->inplace) continue;
        if (G->kind == TB_DENSE) {
            float *xs = malloc((size_t)(ntr ? ntr : 1) * (size_t)F * sizeof *xs);
            if (!xs) return ts_fail(e, "table: out of memory");
            for (long i = 0; i < ntr; i++)
                memcpy(xs + (size_t)i * F, G->px + (size_t)T->rows[TS_TRAIN][i] * F, (size_t)F * sizeof *xs);
            for (int k = 0; k < F && !rc; k++) {
                tb_feat *f = &T->feat[G->feat[k]];
                if (T->src[f->src].in_group != g + 1) continue;
                double *x = malloc((size_t)(ntr ? ntr : 1) * sizeof *x);
                if (!x) { free(xs); return ts_fail(e, "table: out of memory"); }
                for (long i = 0; i < ntr; i++) x[i] = xs[(size_t)i * F + k];
                rc = fit_dense(T, f, x, e);
            }
            free(xs);
        } else {
            tb_count *c[TS_MAX_FIELDS] = {0};
            for (int k = 0; k < F; k++) {
                const tb_feat *f = &T->feat[G->feat[k]];
                if (T->src[f->src].in_group != g + 1 || f->hash || f->vocab_of != G->feat[k]) continue;
                if (!(c[k] = calloc((size_t)ts_strtab_count(T->strs, f->src) + 1, sizeof **c))) rc = -1;
            }
            for (long i = 0; i < T->ntrain_sorted && !rc; i++) {
                const int32_t *row = G->pids + (size_t)T->train_sorted[i] * F;
                for (int k = 0; k < F; k++) if (c[k]) c[k][row[k]].count++;
            }
            for (int k = 0; k < F; k++) {
                if (!c[k]) continue;
                if (rc) free(c[k]);
                else rc = tb_fit_vocab(T, G->feat[k], c[k], e);
            }
            if (rc && !*e->msg) ts_fail(e, "table: out of memory");
        }
        if (rc) return -1;
    }
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        int rc = 0;
        if (T->src[f->src].in_group) continue;
        if (f->example_age) fit_age(T, f);
        else if (f->kind == TB_DENSE) rc = fit_dense(T, f, NULL, e);
        else if (f->kind >= TB_CAT && f->kind <= TB_SEQ && !f->hash && f->vocab_of == i) rc = tb_fit_vocab(T, i, NULL, e);
        if (rc) return -1;
    }
    free(T->train_sorted);                       /* only fitting reads it */
    T->train_sorted = NULL;
    return 0;
}

int tb_apply(tb_data *T, ts_err *e)
{
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        tb_src *s = &T->src[f->src];
        long n = T->tab[s->table].n;
        if (f->kind == TB_DENSE) {
            if (!s->in_group && !(f->val = malloc((size_t)(n ? n : 1) * sizeof *f->val)))
                return ts_fail(e, "table: out of memory");
            for (long r = 0; r < n && f->example_age; r++)   /* in double: timestamps */
                f->val[r] = (float)((f->shift - s->time[r]) / f->div);
            for (long r = 0; r <= n && !f->example_age; r++) {
                double v = r == n ? f->fill : isnan(TB_NUM(s, r)) ? f->fill : transform(f, TB_NUM(s, r));
                double z = (v - f->shift) / f->div;
                if (!(fabs(z) <= FLT_MAX))
                    return ts_fail(e, "%s: column \"%s\" = %g (data row %ld) lies %g training %s "
                                   "from the training %s %g, beyond the float range; check that value",
                                   T->tab[s->table].path, s->name, r < n ? (double)TB_NUM(s, r) : f->fill, r + 1,
                                   z, f->scale == TB_SCALE_MINMAX ? "ranges" : "standard deviations",
                                   f->scale == TB_SCALE_MINMAX ? "minimum" : "mean", f->shift);
                if (r < n && s->in_group) TB_NUM(s, r) = (float)z;   /* in place, in its group */
                else if (r < n) f->val[r] = (float)z;
                else f->missing_out = (float)z;
            }
        } else if (((f->kind >= TB_CAT && f->kind <= TB_SEQ) || f->ids_of >= 0) && tb_apply_vocab(T, i, e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Groups of single values of main-file columns are kept row-major (one or two cache lines a
 * shuffled row); a column only such a group reads is read straight into the group's rows. */
void tb_plan_packing(tb_data *T)
{
    for (int g = 0; g < T->ngroup; g++) {
        tb_group *G = &T->group[g];
        G->packable = G->kind == TB_DENSE || G->kind == TB_CAT;
        for (int k = 0; k < G->n && G->packable; k++) {
            const tb_feat *f = &T->feat[G->feat[k]];
            G->packable = T->src[f->src].table == 0 && !(T->neg_declared && f->src == T->item_src);
        }
        for (int k = 0; k < G->n && G->packable; k++) {
            const tb_feat *f = &T->feat[G->feat[k]];
            tb_src *s = &T->src[f->src];
            int only = !f->own_field && s->need == (f->kind == TB_DENSE ? TB_NEED_NUM : TB_NEED_TOK);
            only &= f->src != T->user_src && f->src != T->item_src && f->src != T->time_src &&
                    f->src != T->split_src && !s->in_group;
            for (int t = 1; t < T->ntab; t++) only &= f->src != T->tab[t].on_src;
            for (int i = 0; i < T->nfeat && only; i++) only = T->feat[i].src != f->src || &T->feat[i] == f;
            if (!only) continue;
            s->in_group = g + 1;
            s->gcol = k;
            s->stride = (size_t)G->n;
            G->inplace = 1;
        }
    }
}

/* A group whose members are single values of main-file columns (not the sampled item column)
 * gets its rows packed row-major at open, as the census reader keeps its rows: a batch of
 * shuffled rows then reads a cache line or two a row instead of one per column. What only the
 * group read is freed. */
int tb_pack(tb_data *T, ts_err *e)
{
    long n = T->tab[0].n;
    for (int g = 0; g < T->ngroup; g++) {
        tb_group *G = &T->group[g];
        if (!G->packable) continue;
        size_t cells = (size_t)(n ? n : 1) * (size_t)G->n;
        if (!G->inplace &&
            (G->kind == TB_DENSE ? !(G->px = malloc(cells * sizeof *G->px)) : !(G->pids = malloc(cells * sizeof *G->pids))))
            return ts_fail(e, "table: out of memory packing group %s", G->name);
        for (int k = 0; k < G->n; k++) {
            tb_feat *f = &T->feat[G->feat[k]];
            tb_src *s = &T->src[f->src];
            for (long r = 0; r < n && s->in_group != g + 1; r++) {   /* a copy */
                if (G->px) G->px[r * G->n + k] = f->val[r];
                else G->pids[r * G->n + k] = (int32_t)G->off[k] + f->map[TB_TOK(s, r)];
            }
            if (!f->own_field) { f->packed = 1; free(f->val); f->val = NULL; }
        }
        const int32_t *map[TS_MAX_FIELDS] = {0};   /* raw ids read into the rows: mapped, one pass */
        long unseen[TS_MAX_FIELDS] = {0};
        for (int k = 0; k < G->n; k++) {
            tb_src *s = &T->src[T->feat[G->feat[k]].src];
            if (s->in_group == g + 1 && G->pids) map[k] = T->feat[G->feat[k]].map;
            if (s->in_group == g + 1) { s->tok = NULL; s->num = NULL; }   /* the group's now */
        }
        for (long r = 0; r < n && G->inplace && G->pids; r++) {
            int32_t *row = G->pids + (size_t)r * G->n;
            for (int k = 0; k < G->n; k++) {
                if (!map[k]) continue;
                int32_t v = map[k][row[k]];
                unseen[k] += v == 0;
                row[k] = (int32_t)G->off[k] + v;
            }
        }
        for (int k = 0; k < G->n; k++) {
            tb_feat *f = &T->feat[G->feat[k]];
            if (!map[k] || f->hash) continue;
            f->unseen += unseen[k];
            T->unseen += unseen[k];
        }
    }
    for (int i = 0; i < T->nsrc; i++) {          /* raw values nothing reads any more */
        tb_src *s = &T->src[i];
        int used = i == T->user_src || i == T->item_src || i == T->time_src || i == T->split_src;
        for (int t = 1; t < T->ntab; t++) used |= i == T->tab[t].on_src || i == T->tab[t].key_src;
        for (int k = 0; k < T->nfeat && !used; k++)
            used = T->feat[k].src == i && (!T->feat[k].packed || T->feat[k].kind != TB_CAT);
        if (s->in_group) continue;
        if (!used) { free(s->tok); s->tok = NULL; }
        free(s->num);                            /* dense values live in each feature's val */
        s->num = NULL;
    }
    return 0;
}
