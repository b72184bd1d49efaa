/* table_stream.c — `stream = true` for the table reader (docs/scale.md, docs/data.md): the main
 * file read as a stream of files through core/stream.c (ts_stream_*), with memory bounded by the
 * shuffle block, not by the rows.
 *
 * What streams: features that depend only on their own row and on fitted state: dense columns
 * (fixed clip bounds, log, fill, standard / min-max scaling), categorical and multi-valued
 * columns (a vocabulary or a hash), labels and the weight. Each line is parsed as the in-memory
 * reader parses a record (table_parse.c, into a one-row table) and made into a fixed record: a
 * 4-byte cell a feature (a float or an id), one a label's presence, then each multi column's
 * length and room for its longest bag over every line (the scan finds it: ts_stream_row_bytes).
 * The scan pass fits on the training lines (a line's split is a hash of its bytes): running
 * statistics of each dense column and the training count of each vocabulary value, numbered as
 * the in-memory reader numbers them (tb_fit_vocab). A resumed run takes the saved state instead.
 * A column only one hashed feature reads is hashed as it is read (tb_src.direct), never interned.
 *
 * What does not stream is refused at open, naming the key: anything that reads other rows
 * (split = user|time|column, user histories, min_history, row_order = user_time, negatives and
 * item popularity), side tables, sequence columns and multi over:,
 * percentile clip bounds and example_age (a sort, or a time range of every training row),
 * vocab_rows:all and label ids:. */
#include "table.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dstat { long n, miss; double mean, m2, lo, hi; } dstat;

struct tb_stream {
    ts_stream *s;
    int fit, header;
    long nfit;                 /* training lines fitted on */
    size_t rb;
    char *rec;                 /* (cap) records of a batch */
    int cap;
    dstat *ds;                 /* (nfeat) dense: running statistics of the training values */
    long **cnt;                /* (nfeat) vocabulary owners: training count of each raw id */
    int32_t *ncnt;
    int32_t *mmax;             /* (nfeat) multi: the most values of a row, over every line */
    size_t *moff;              /* (nfeat) multi: where its length and ids start in a record
                                  (int32 cells) */
    char report[320];
    char *state;               /* the fitted state's text, made once at open: the reader thread
                                  may intern values while the host asks for it */
    size_t nstate;
};

static int refuse(const ts_cfg *cfg, const char *key, const char *what, ts_err *e)
{
    return ts_fail(e, "%s: [data] %s: stream = true cannot stream %s; set stream = false to read "
                   "the rows in memory", ts_cfg_where(cfg, key), key, what);
}

static int check(const tb_data *T, const ts_cfg *cfg, ts_err *e)
{
    static const char *const split[] = {"random", "user", "time", "column"};
    if (T->split_kind != TB_SPLIT_RANDOM) {
        char w[160];
        snprintf(w, sizeof w, "split = %s (a streamed row's split is a hash of its line; only "
                 "split = random streams)", split[T->split_kind]);
        return refuse(cfg, "split", w, e);
    }
    if (T->min_history) return refuse(cfg, "min_history", "min_history (it reads each user's earlier rows)", e);
    if (T->row_order_user) return refuse(cfg, "row_order", "row_order = user_time (it sorts every row)", e);
    if (T->neg_declared) return refuse(cfg, "negatives", "sampled negatives (they draw from every row's items)", e);
    if (T->item_feat >= 0) return refuse(cfg, "item", "item = (item popularity counts every row)", e);
    if (T->ntab > 1) return refuse(cfg, "tables", "side tables (not yet: a streamed row reads only its own line)", e);
    for (int i = 0; i < T->nfeat; i++) {
        const tb_feat *f = &T->feat[i];
        char w[200];
        if (f->kind == TB_SEQ) {
            snprintf(w, sizeof w, "sequence column \"%s\" (%s)", T->src[f->src].name,
                     f->history ? "a user's history reads earlier rows" : "not yet streamed");
            return refuse(cfg, "sequence", w, e);
        }
        if (f->kind == TB_MULTI && f->over >= 0) {
            snprintf(w, sizeof w, "multi column \"%s\"(over:%s) (a side column gathered over a "
                     "sequence)", T->src[f->src].name, f->over_name);
            return refuse(cfg, "multi", w, e);
        }
        if (f->kind == TB_DENSE && (!isnan(f->q_lo) || !isnan(f->q_hi))) {
            snprintf(w, sizeof w, "dense column \"%s\" clipped at training percentiles (a sort of "
                     "every training value; give the bounds in numbers, clip:LO:HI)", T->src[f->src].name);
            return refuse(cfg, "dense", w, e);
        }
        if (f->example_age) {
            snprintf(w, sizeof w, "dense \"%s\"(example_age)", T->src[f->src].name);
            return refuse(cfg, "dense", w, e);
        }
        if (f->rows_all) {
            snprintf(w, sizeof w, "categorical \"%s\"(vocab_rows:all)", T->src[f->src].name);
            return refuse(cfg, "categorical", w, e);
        }
        if (f->ids_of >= 0) {
            snprintf(w, sizeof w, "label \"%s\"(ids:%s)", T->src[f->src].name, f->ids_name);
            return refuse(cfg, "labels", w, e);
        }
    }
    return 0;
}

/* A line into row 0 of the one-row table: 1, 0 a skipped bad row, -1 an error. */
static int parse(tb_data *T, char *line, size_t len, const char *path, long lineno, int count,
                 ts_err *e)
{
    char why[640];
    int rc = tb_parse_line(T, line, len, lineno, why, sizeof why);
    if (rc == -2) return ts_fail(e, "%s:%ld: %s", path, lineno, why);
    if (rc < 0 && !T->skip_bad)
        return ts_fail(e, "%s:%ld: %s; fix or delete the row, or set skip_bad_rows = true in "
                       "[data]", path, lineno, why);
    if (rc < 0) { T->skipped += count; return 0; }
    return 1;
}

static int scan_line(void *u, ts_phase sp, char *line, size_t len, const char *path, long lineno,
                     ts_err *e)
{
    tb_data *T = u;
    struct tb_stream *S = T->stream;
    if (S->header && lineno == 1) return 0;            /* every file's header */
    int rc = parse(T, line, len, path, lineno, 1, e);
    if (rc <= 0) return rc;
    for (int i = 0; i < T->nfeat; i++) {   /* the longest bag of every line: the record's size */
        const tb_src *s = &T->src[T->feat[i].src];
        if (T->feat[i].kind == TB_MULTI && s->loff[1] > S->mmax[i]) S->mmax[i] = (int32_t)s->loff[1];
    }
    if (!S->fit || sp != TS_TRAIN) return rc;
    S->nfit++;
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        const tb_src *s = &T->src[f->src];
        if (f->kind == TB_DENSE) {
            dstat *d = &S->ds[i];
            double x = TB_NUM(s, 0);
            if (isnan(x)) { d->miss++; continue; }
            double t = tb_dense_t(f, x), dl = t - d->mean;
            d->n++;
            d->mean += dl / (double)d->n;
            d->m2 += dl * (t - d->mean);
            d->lo = t < d->lo ? t : d->lo;
            d->hi = t > d->hi ? t : d->hi;
        } else if (S->cnt[i]) {
            int64_t nv = f->kind == TB_MULTI ? s->loff[1] : 1;
            for (int64_t k = 0; k < nv; k++) {
                int32_t raw = f->kind == TB_MULTI ? s->lids[k] : TB_TOK(s, 0);
                if (raw >= S->ncnt[i]) {
                    int32_t c = S->ncnt[i] ? 2 * S->ncnt[i] : 1024;
                    while (c <= raw) c *= 2;
                    long *p = realloc(S->cnt[i], (size_t)c * sizeof *p);
                    if (!p) return ts_fail(e, "table: out of memory");
                    memset(p + S->ncnt[i], 0, (size_t)(c - S->ncnt[i]) * sizeof *p);
                    S->cnt[i] = p;
                    S->ncnt[i] = c;
                }
                S->cnt[i][raw]++;
            }
        }
    }
    return 1;
}

/* A line into a record: (nfeat) cells of a float or an id, then (nfeat) label presences. */
static int row_line(void *u, char *line, size_t len, const char *path, long lineno, void *row,
                    ts_err *e)
{
    tb_data *T = u;
    if (T->stream->header && lineno == 1) return 0;
    int rc = parse(T, line, len, path, lineno, 0, e);
    if (rc <= 0) return rc;
    float *x = row, *has = x + T->nfeat;
    int32_t *ids = row;
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        const tb_src *s = &T->src[f->src];
        has[i] = 0;
        if (f->kind == TB_DENSE) {
            double z = tb_dense_out(f, TB_NUM(s, 0));
            if (!(fabs(z) <= FLT_MAX))
                return ts_fail(e, "%s:%ld: column \"%s\" = %g lies %g training %s from the "
                               "training %s %g, beyond the float range; check that value", path,
                               lineno, s->name, (double)TB_NUM(s, 0), z,
                               f->scale == TB_SCALE_MINMAX ? "ranges" : "standard deviations",
                               f->scale == TB_SCALE_MINMAX ? "minimum" : "mean", f->shift);
            x[i] = (float)z;
        } else if (f->kind == TB_CAT) {
            int32_t raw = TB_TOK(s, 0);
            if (s->direct) { ids[i] = raw; continue; }    /* hashed as read */
            if (raw >= f->nmap && tb_map_extend(T, i) < 0) return ts_fail(e, "table: out of memory");
            if (f->map[raw] < 0)
                return ts_fail(e, "%s:%ld: column \"%s\" has \"%s\", outside the training "
                               "vocabulary of %s, which has no out-of-vocabulary id (oov:none); "
                               "remove oov:none so that such values take id 0", path, lineno,
                               s->name, ts_strtab_str(T->strs, f->src, raw),
                               T->feat[f->vocab_of].field);
            ids[i] = f->map[raw];
        } else if (f->kind == TB_MULTI) {
            int32_t *bag = ids + T->stream->moff[i];
            int64_t nv = s->loff[1];
            if (nv > T->stream->mmax[i])
                return ts_fail(e, "%s:%ld: column \"%s\" has %lld values, more than the %d of "
                               "every row the scan read; did the files change since?", path, lineno,
                               s->name, (long long)nv, (int)T->stream->mmax[i]);
            bag[0] = (int32_t)nv;
            for (int64_t k = 0; k < nv; k++) {
                int32_t raw = s->lids[k];
                if (raw >= f->nmap && tb_map_extend(T, i) < 0) return ts_fail(e, "table: out of memory");
                if (f->map[raw] < 0)
                    return ts_fail(e, "%s:%ld: column \"%s\" has \"%s\", outside the training "
                                   "vocabulary of %s, which has no out-of-vocabulary id (oov:none); "
                                   "remove oov:none so that such values take id 0", path, lineno,
                                   s->name, ts_strtab_str(T->strs, f->src, raw),
                                   T->feat[f->vocab_of].field);
                bag[1 + k] = f->map[raw];
            }
        } else if (f->kind == TB_LABEL) {
            /* times:G as the in-memory batch makes it (table.c) */
            const tb_feat *g = f->times_of >= 0 ? &T->feat[f->times_of] : NULL;
            int gzero = g && g->present[0] && g->lab[0] == 0;
            int h = gzero || (f->present[0] && (!g || g->present[0]));
            x[i] = !h || gzero ? 0 : g ? f->lab[0] * g->lab[0] : f->lab[0];
            has[i] = (float)h;
        } else if (f->kind == TB_WEIGHT) x[i] = f->lab[0];
        else x[i] = 0;
    }
    return 1;
}

/* The statistics and vocabularies from the scan, as tb_fit makes them from rows in memory. */
static int finish_fit(tb_data *T, ts_err *e)
{
    struct tb_stream *S = T->stream;
    T->ntrain_sorted = 0;
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        if (f->kind == TB_DENSE) {
            const dstat *d = &S->ds[i];
            long n = d->n + d->miss;
            f->fill = f->fill_kind == TB_FILL_VALUE ? tb_dense_t(f, f->fill) : d->n ? d->mean : 0;
            /* missing values count as the fill (Chan's merge of two groups' moments) */
            double mu = d->miss ? ((double)d->n * d->mean + (double)d->miss * f->fill) / (double)n : d->mean;
            double m2 = d->miss ? d->m2 + (double)d->n * (d->mean - mu) * (d->mean - mu) +
                        (double)d->miss * (f->fill - mu) * (f->fill - mu) : d->m2;
            double lo = d->lo, hi = d->hi, sd = n ? sqrt(m2 / (double)n) : 0;
            if (d->miss) { lo = f->fill < lo ? f->fill : lo; hi = f->fill > hi ? f->fill : hi; }
            if (f->scale == TB_SCALE_STANDARD) { f->shift = mu; f->div = sd > 1e-12 ? sd : 1.0; }
            else if (f->scale == TB_SCALE_MINMAX) { f->shift = n ? lo : 0; f->div = hi - lo > 1e-12 ? hi - lo : 1.0; }
            else { f->shift = 0; f->div = 1; }
        } else if (S->cnt[i]) {
            int32_t nraw = ts_strtab_count(T->strs, f->src);
            tb_count *c = calloc((size_t)nraw + 1, sizeof *c);
            if (!c) return ts_fail(e, "table: out of memory");
            for (int32_t r = 0; r < nraw && r < S->ncnt[i]; r++) c[r].count = S->cnt[i][r];
            if (tb_fit_vocab(T, i, c, e) < 0) return -1;   /* it frees c */
        }
    }
    return 0;
}

int tb_stream_open(tb_data *T, ts_data *D, const ts_cfg *cfg, long buffer, ts_err *e)
{
    if (check(T, cfg, e) < 0) return -1;
    if (buffer < 1 || buffer > (1L << 30))
        return ts_fail(e, "%s: shuffle_buffer = %ld: give a number of rows from 1 to 2^30",
                       ts_cfg_where(cfg, "shuffle_buffer"), buffer);
    for (int i = 0; i < T->nsrc; i++) { T->src[i].in_group = 0; T->src[i].stride = 1; }
    /* a column only one hashed feature reads is hashed as it is read: its values are never
     * interned, so a column of any number of distinct values costs no memory */
    for (int i = 0; i < T->nfeat; i++) {
        const tb_feat *f = &T->feat[i];
        int only = f->kind == TB_CAT && f->hash && f->src != T->user_src && f->src != T->item_src &&
                   f->src != T->time_src && f->src != T->split_src;
        for (int k = 0; k < T->nfeat && only; k++) only = k == i || T->feat[k].src != f->src;
        if (only) T->src[f->src].direct = i + 1;
    }
    for (int g = 0; g < T->ngroup; g++) T->group[g].packable = T->group[g].inplace = 0;
    struct tb_stream *S = calloc(1, sizeof *S);
    if (!S) return ts_fail(e, "table: out of memory");
    T->stream = S;
    S->fit = !T->from_state;
    S->header = T->tab[0].header;
    S->rb = 2 * (size_t)T->nfeat * sizeof(float);
    if (!(S->ds = calloc((size_t)T->nfeat, sizeof *S->ds)) ||
        !(S->cnt = calloc((size_t)T->nfeat, sizeof *S->cnt)) ||
        !(S->ncnt = calloc((size_t)T->nfeat, sizeof *S->ncnt)) ||
        !(S->mmax = calloc((size_t)T->nfeat, sizeof *S->mmax)) ||
        !(S->moff = calloc((size_t)T->nfeat, sizeof *S->moff)))
        return ts_fail(e, "table: out of memory");
    for (int i = 0; i < T->nfeat; i++) {
        const tb_feat *f = &T->feat[i];
        S->ds[i].lo = INFINITY;
        S->ds[i].hi = -INFINITY;
        if (S->fit && (f->kind == TB_CAT || f->kind == TB_MULTI) && !f->hash && f->vocab_of == i &&
            !(S->cnt[i] = calloc(1, sizeof **S->cnt)))
            return ts_fail(e, "table: out of memory");
    }
    if (!(S->s = ts_stream_open(D->ctx, ts_cfg_str(cfg, "path"), ts_cfg_where(cfg, "path"), S->rb,
                                buffer, T->frac, T->split_seed, scan_line, row_line, T, e)))
        return -1;
    snprintf(T->tab[0].path, sizeof T->tab[0].path, "%s", ts_stream_file(S->s, 0));
    if (tb_read_head(T, cfg, e) < 0 || ts_stream_scan(S->s, e) < 0) return -1;
    if (S->fit) {
        if (S->nfit < 1)
            return ts_fail(e, "%s: no training rows in %d file(s) (%ld bad rows skipped); check "
                           "the path and split_fractions", ts_cfg_where(cfg, "path"),
                           ts_stream_nfiles(S->s), T->skipped);
        if (finish_fit(T, e) < 0) return -1;
    }
    /* the record: a cell a column, a presence a column, then each multi column's length and up
     * to its longest bag's ids */
    size_t cells = 2 * (size_t)T->nfeat;
    for (int i = 0; i < T->nfeat; i++)
        if (T->feat[i].kind == TB_MULTI) { S->moff[i] = cells; cells += 1 + (size_t)S->mmax[i]; }
    S->rb = cells * sizeof(int32_t);
    if (ts_stream_row_bytes(S->s, S->rb, e) < 0) return -1;
    for (int i = 0; i < T->nfeat; i++) {   /* ids of every categorical column */
        tb_feat *f = &T->feat[i];
        if (f->kind != TB_CAT && f->kind != TB_MULTI) continue;
        f->nvocab = f->hash ? (int32_t)f->buckets : T->feat[f->vocab_of].nvocab;
        if (!T->src[f->src].direct && tb_map_extend(T, i) < 0) return ts_fail(e, "table: out of memory");
    }
    for (int sp = 0; sp < 3; sp++) T->nrows[sp] = ts_stream_rows(S->s, (ts_phase)sp);
    ts_stream_report(S->s, S->report, sizeof S->report);
    if (tb_state_write(T, &S->state, &S->nstate, e) < 0) return -1;
    D->stream = 1;
    return 0;
}

/* n records of S->rec into the features' batch buffers and the fields. */
static int fill(tb_data *T, int n, ts_err *e)
{
    struct tb_stream *S = T->stream;
    for (int i = 0; i < T->nfeat; i++) if (T->feat[i].boff) T->feat[i].boff[0] = 0;
    for (int g = 0; g < T->ngroup; g++) if (T->group[g].boff) T->group[g].boff[0] = 0;
    for (int b = 0; b < n; b++) {
        const float *x = (const float *)(S->rec + (size_t)b * S->rb), *has = x + T->nfeat;
        const int32_t *ids = (const int32_t *)x;
        for (int i = 0; i < T->nfeat; i++) {
            tb_feat *f = &T->feat[i];
            if (f->kind == TB_DENSE || f->kind == TB_LABEL || f->kind == TB_WEIGHT) f->bx[b] = x[i];
            else if (f->kind == TB_CAT) f->bids[b] = ids[i];
            else if (f->kind == TB_MULTI) {
                const int32_t *bag = ids + S->moff[i];
                int64_t at = f->boff[b];
                if (tb_bag_room(&f->bids, &f->bids_cap, at + bag[0]) < 0)
                    return ts_fail(e, "table: out of memory");
                memcpy(f->bids + at, bag + 1, (size_t)bag[0] * sizeof *bag);
                f->boff[b + 1] = (int32_t)(at + bag[0]);
            }
            if (f->bm) f->bm[b] = has[i];
        }
        if (tb_group_row(T, b, 0, e) < 0) return -1;
    }
    tb_point_fields(T, n);
    return 0;
}

static int room(tb_data *T, int n, ts_err *e)
{
    struct tb_stream *S = T->stream;
    if (tb_ensure_cap(T, n) < 0) return ts_fail(e, "table: out of memory for a batch of %d rows", n);
    if (n <= S->cap) return 0;
    char *r = realloc(S->rec, (size_t)n * S->rb);
    if (!r) return ts_fail(e, "table: out of memory for a batch of %d rows", n);
    S->rec = r;
    S->cap = n;
    return 0;
}

int tb_stream_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    tb_data *T = D->state;
    if (room(T, n, e) < 0 || ts_stream_read(T->stream->s, split, rows, n, T->stream->rec, e) < 0)
        return -1;
    return fill(T, n, e);
}

int tb_stream_begin(ts_data *D, long epoch, const int64_t *pos, ts_err *e)
{
    tb_data *T = D->state;
    return ts_stream_begin(T->stream->s, TS_TRAIN, epoch, pos, e);
}

int tb_stream_next(ts_data *D, int n, int *got, ts_err *e)
{
    tb_data *T = D->state;
    if (room(T, n, e) < 0 || ts_stream_next(T->stream->s, TS_TRAIN, T->stream->rec, n, got, e) < 0)
        return -1;
    return fill(T, *got, e);
}

void tb_stream_pos(ts_data *D, int64_t *pos)
{
    tb_data *T = D->state;
    ts_stream_pos(T->stream->s, pos);
}

int tb_stream_fitted(const tb_data *T, char **text, size_t *n, ts_err *e)
{
    const struct tb_stream *S = T->stream;
    if (!(*text = malloc(S->nstate + 1))) return ts_fail(e, "table: out of memory");
    memcpy(*text, S->state, S->nstate + 1);
    *n = S->nstate;
    return 0;
}

const char *tb_stream_report(const tb_data *T)
{
    return T->stream ? T->stream->report : NULL;
}

void tb_stream_close(tb_data *T)
{
    struct tb_stream *S = T->stream;
    if (!S) return;
    ts_stream_close(S->s);
    for (int i = 0; i < T->nfeat && S->cnt; i++) free(S->cnt[i]);
    free(S->cnt); free(S->ncnt); free(S->ds); free(S->rec); free(S->mmax); free(S->moff);
    free(S->state);
    free(S);
    T->stream = NULL;
    tb_free_head(T);
}
