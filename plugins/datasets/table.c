/* table.c — the `table` dataset plugin: a delimited file (and side tables joined to it by key)
 * whose columns an experiment declares as dense, categorical, multi-valued, sequence, label,
 * weight and id columns, with one field per column and grouped fields (docs/data.md).
 *
 * open() declares (table_declare.c), reads (table_parse.c), joins and splits (table_split.c),
 * fits on the training split or takes a trained run's fitted state (table_columns.c,
 * table_state.c), applies, and declares the fields; batch() gathers rows; fitted() returns the
 * state as text. Aux: "skipped_rows", "unseen_values", "missing_keys" (one long each),
 * "row_id" (const char *, one per test row, from `id =`), "row_line" (long, one per test row: its
 * first line in the file), "item_freq" (float, one per item id,
 * training interactions, with `item =`). It does no feature engineering beyond its declared
 * transforms. The table lives in memory, unless stream = true (table_stream.c). */
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void table_close(ts_data *D)
{
    tb_data *T = D->state;
    if (!T) return;
    tb_stream_close(T);                 /* first: it joins the stream's reader thread */
    for (int t = 0; t < T->ntab; t++) {
        tb_table *tab = &T->tab[t];
        for (int c = 0; c < tab->ncol && tab->colname; c++) free(tab->colname[c]);
        for (int c = 0; c < tab->nuser; c++) free(tab->username[c]);
        free(tab->colname); free(tab->username); free(tab->line); free(tab->key_row);
        free(tab->join); free(tab->item_row);
    }
    free(T->hist_rows); free(T->hist_at); free(T->hist_first); free(T->period);
    for (int i = 0; i < T->nsrc; i++) {
        tb_src *s = &T->src[i];
        if (s->in_group) s->num = NULL, s->tok = NULL;   /* the group's memory */
        free(s->name); free(s->num); free(s->time); free(s->tok); free(s->loff); free(s->lids);
        free(s->cache); free(s->cs);
    }
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        for (int k = 0; k < f->npos; k++) free(f->pos[k]);
        for (int k = 0; k < f->nneg; k++) free(f->neg[k]);
        for (int k = 0; k < f->nmv && f->mkey; k++) free(f->mkey[k]);
        free(f->pos); free(f->neg); free(f->mkey); free(f->mval); free(f->lab); free(f->present);
        free(f->val); free(f->map); free(f->bx); free(f->bm); free(f->bids); free(f->blen); free(f->boff);
        free(f->over_row);
        if (T->item_map) free(T->item_map[i]);
    }
    for (int g = 0; g < T->ngroup; g++) {
        free(T->group[g].bx); free(T->group[g].bids); free(T->group[g].boff);
        free(T->group[g].px); free(T->group[g].pids);
    }
    for (int i = 0; i < T->nmissing; i++) free(T->missing[i]);
    for (int s = 0; s < 3; s++) free(T->rows[s]);
    free(T->missing); free(T->src); free(T->feat); free(T->item_map);
    free(T->neg_row); free(T->neg_item); free(T->pop); free(T->item_freq); free(T->row_id);
    free(T->row_line);
    free(T->b_implicit); free(T->train_sorted);
    ts_strtab_free(T->strs);
    free(T);
    D->state = NULL;
}

/* Batch buffers for cap rows (bags grow as batches need). */
int tb_ensure_cap(tb_data *T, int cap)
{
    if (cap <= T->cap) return 0;
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        int w = f->kind == TB_SEQ && !f->as_bag ? f->maxlen : 1;
        void *p;
        if ((f->kind == TB_DENSE || f->kind == TB_LABEL || f->kind == TB_WEIGHT) &&
            !(p = realloc(f->bx, (size_t)cap * sizeof *f->bx))) return -1;
        if (f->kind == TB_DENSE || f->kind == TB_LABEL || f->kind == TB_WEIGHT) f->bx = p;
        if (f->kind == TB_LABEL && !(f->bm = realloc(f->bm, (size_t)cap * sizeof *f->bm))) return -1;
        if (f->kind >= TB_CAT && f->kind <= TB_SEQ) {
            if (f->bids_cap < (int64_t)cap * w) {
                if (!(p = realloc(f->bids, (size_t)cap * (size_t)w * sizeof *f->bids))) return -1;
                f->bids = p;
                f->bids_cap = (int64_t)cap * w;
            }
            if (!(p = realloc(f->boff, ((size_t)cap + 1) * sizeof *f->boff))) return -1;
            f->boff = p;
            if (!(p = realloc(f->blen, (size_t)cap * sizeof *f->blen))) return -1;
            f->blen = p;
        }
    }
    for (int g = 0; g < T->ngroup; g++) {
        tb_group *G = &T->group[g];
        void *p;
        if (G->kind == TB_DENSE) {
            if (!(p = realloc(G->bx, (size_t)cap * (size_t)G->n * sizeof *G->bx))) return -1;
            G->bx = p;
            continue;
        }
        if (G->bids_cap < (int64_t)cap * G->n) {
            if (!(p = realloc(G->bids, (size_t)cap * (size_t)G->n * sizeof *G->bids))) return -1;
            G->bids = p;
            G->bids_cap = (int64_t)cap * G->n;
        }
        if (!(p = realloc(G->boff, ((size_t)cap * (size_t)G->n + 1) * sizeof *G->boff))) return -1;
        G->boff = p;
    }
    if (!(T->b_implicit = realloc(T->b_implicit, (size_t)cap * sizeof *T->b_implicit))) return -1;
    T->cap = cap;
    return 0;
}

static int declare_fields(ts_data *D, tb_data *T, ts_err *e)
{
    int one = 1;
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        if (f->kind == TB_ID || !f->own_field) {
            if (f->kind == TB_LABEL && *f->mask && !(f->tm = ts_data_field(D, f->mask, TS_F32, 2, &one, 0, e)))
                return -1;
            continue;
        }
        if (f->kind == TB_DENSE || f->kind == TB_LABEL || f->kind == TB_WEIGHT)
            f->t = ts_data_field(D, f->field, TS_F32, 2, &one, 0, e);
        else if (f->kind == TB_CAT) f->t = ts_data_field(D, f->field, TS_I32, 2, &one, f->nvocab, e);
        else if (f->kind == TB_MULTI || f->as_bag) f->t = ts_data_field(D, f->field, TS_BAGS, 2, &one, f->nvocab, e);
        else f->t = ts_data_field(D, f->field, TS_I32, 2, &f->maxlen, f->nvocab, e);
        if (!f->t) return -1;
        if (f->kind == TB_LABEL && *f->mask && !(f->tm = ts_data_field(D, f->mask, TS_F32, 2, &one, 0, e)))
            return -1;
    }
    for (int g = 0; g < T->ngroup; g++) {
        tb_group *G = &T->group[g];
        G->off[0] = 0;
        for (int k = 0; k < G->n; k++) G->off[k + 1] = G->off[k] + (G->kind == TB_DENSE ? 0 : T->feat[G->feat[k]].nvocab);
        if (G->off[G->n] > INT32_MAX)
            return ts_fail(e, "table: group %s has %lld ids, more than int32 holds; hash its largest "
                           "columns (hash:N)", G->name, (long long)G->off[G->n]);
        ts_dtype dt = G->kind == TB_DENSE ? TS_F32 : G->kind == TB_CAT ? TS_I32 : TS_BAGS;
        if (!(G->t = ts_data_field(D, G->name, dt, 2, &G->n, G->kind == TB_DENSE ? 0 : G->off[G->n], e)))
            return -1;
    }
    if (T->neg_declared && !(T->t_implicit = ts_data_field(D, T->implicit, TS_F32, 2, &one, 0, e)))
        return -1;
    return 0;
}

static int table_open(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    tb_data *T = calloc(1, sizeof *T);
    if (!T) return ts_fail(e, "table: out of memory");
    D->state = T;
    T->mode = ts_ctx_open_mode(D->ctx);
    size_t nstate = 0;
    const char *state = ts_ctx_fitted(D->ctx, &nstate);
    T->from_state = state != NULL;
    T->id_feat = -1;
    if (T->mode != TS_OPEN_TRAIN && !state)
        return ts_fail(e, "table: applying a trained run needs the fitted state it saved "
                       "(RUN_DIR/data_state.txt); none was given");
    if (!(T->strs = ts_strtab_new())) return ts_fail(e, "table: out of memory");
    if (tb_declare(T, D, cfg, e) < 0) return -1;
    if (!(T->item_map = calloc((size_t)T->nfeat, sizeof *T->item_map))) return ts_fail(e, "table: out of memory");
    int stream;
    long buffer;
    if (ts_cfg_bool(cfg, "stream", &stream, e) < 0 || ts_cfg_int(cfg, "shuffle_buffer", &buffer, e) < 0)
        return -1;
    /* streamed: training only; predict and evaluate read the file they are given in memory */
    if (stream && T->mode == TS_OPEN_TRAIN) {
        if ((state && tb_state_read(T, state, nstate, e) < 0) || tb_stream_open(T, D, cfg, buffer, e) < 0)
            return -1;
        for (int s = 0; s < 3; s++) D->nrows[s] = T->nrows[s];
        if (declare_fields(D, T, e) < 0) return -1;
        int mb = ts_ctx_max_batch(D->ctx);
        if (tb_ensure_cap(T, mb > 0 ? mb : 1) < 0)
            return ts_fail(e, "table: out of memory for batches of %d rows", mb);
        return 0;
    }
    for (int t = 0; t < T->ntab; t++)
        if (tb_read_table(T, t, cfg, e) < 0) return -1;
    if (tb_join(T, e) < 0 || (T->has_history && tb_histories(T, e) < 0) || tb_split(T, e) < 0)
        return -1;
    if (state ? tb_state_read(T, state, nstate, e) < 0 : tb_fit(T, e) < 0) return -1;
    if (tb_apply(T, e) < 0) return -1;
    if (T->item_feat >= 0 && tb_popularity(T, e) < 0) return -1;
    if (T->negatives && tb_negatives(T, e) < 0) return -1;
    for (int s = 0; s < 3; s++) D->nrows[s] = T->nrows[s];
    if (declare_fields(D, T, e) < 0 || tb_pack(T, e) < 0) return -1;
    int mb = ts_ctx_max_batch(D->ctx);
    if (tb_ensure_cap(T, mb > 0 ? mb : 1) < 0) return ts_fail(e, "table: out of memory for batches of %d rows", mb);
    return 0;
}

/* Grows a bag buffer to hold need ids. */
int tb_bag_room(int32_t **ids, int64_t *cap, int64_t need)
{
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    int32_t *p = realloc(*ids, (size_t)c * sizeof *p);
    if (!p) return -1;
    *ids = p;
    *cap = c;
    return 0;
}

/* The row of feature f's table for an example (main row r; item v when sampled, else -1). */
static int feat_row(const tb_data *T, const tb_feat *f, long r, int32_t v)
{
    int t = T->src[f->src].table;
    if (t == 0) return (int)r;
    const tb_table *tab = &T->tab[t];
    return v >= 0 && tab->item_row ? tab->item_row[v] : tab->join[r];
}

/* Appends the final ids of a multi or sequence cell to ids at *at; returns the count. */
static int64_t cell_ids(const tb_data *T, const tb_feat *f, int sr, int32_t *ids, int64_t at, int last)
{
    if (sr < 0) return 0;
    const tb_src *s = &T->src[f->src];
    if (f->history) {                           /* the values of the user's latest earlier rows */
        int64_t b = T->hist_at[sr], a = b - last < T->hist_first[sr] ? T->hist_first[sr] : b - last;
        for (int64_t k = a; k < b; k++) ids[at + k - a] = f->map[s->tok[T->hist_rows[k]]];
        return b - a;
    }
    int64_t a = s->loff[sr], b = s->loff[sr + 1];
    if (last > 0 && b - a > last) a = b - last;            /* a sequence keeps its latest steps */
    for (int64_t k = a; k < b; k++) ids[at + k - a] = f->map[s->lids[k]];
    return b - a;
}

/* Row b of every group's batch buffers from its members' (unpacked groups: from the members'
 * buffers of row b; packed groups: main row r). */
int tb_group_row(tb_data *T, int b, long r, ts_err *e)
{
    for (int g = 0; g < T->ngroup; g++) {
        tb_group *G = &T->group[g];
        if (G->px) { memcpy(G->bx + (size_t)b * G->n, G->px + (size_t)r * G->n, (size_t)G->n * sizeof *G->bx); continue; }
        if (G->pids) { memcpy(G->bids + (size_t)b * G->n, G->pids + (size_t)r * G->n, (size_t)G->n * sizeof *G->bids); continue; }
        for (int k = 0; k < G->n; k++) {
            const tb_feat *f = &T->feat[G->feat[k]];
            size_t c = (size_t)b * G->n + k;
            if (G->kind == TB_DENSE) { G->bx[c] = f->bx[b]; continue; }
            if (G->kind == TB_CAT) { G->bids[c] = (int32_t)G->off[k] + f->bids[b]; continue; }
            int64_t at = G->boff[c], m = f->kind == TB_CAT ? 1 : f->boff[b + 1] - f->boff[b];
            if (tb_bag_room(&G->bids, &G->bids_cap, at + m) < 0) return ts_fail(e, "table: out of memory");
            for (int64_t j = 0; j < m; j++)
                G->bids[at + j] = (int32_t)G->off[k] + (f->kind == TB_CAT ? f->bids[b] : f->bids[f->boff[b] + j]);
            G->boff[c + 1] = (int32_t)(at + m);
        }
    }
    return 0;
}

void tb_point_fields(tb_data *T, int n)
{
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        if (f->tm) { f->tm->x = f->bm; f->tm->dim[0] = n; }
        if (!f->t) continue;
        f->t->dim[0] = n;
        if (f->t->dtype == TS_F32) f->t->x = f->bx;
        else f->t->ids = f->bids;
        if (f->t->dtype == TS_BAGS) f->t->off = f->boff;
        if (f->kind == TB_SEQ && !f->as_bag) f->t->len = f->blen;
    }
    for (int g = 0; g < T->ngroup; g++) {
        tb_group *G = &T->group[g];
        G->t->dim[0] = n;
        if (G->kind == TB_DENSE) G->t->x = G->bx;
        else G->t->ids = G->bids;
        if (G->kind == TB_MULTI) G->t->off = G->boff;
    }
    if (T->t_implicit) { T->t_implicit->x = T->b_implicit; T->t_implicit->dim[0] = n; }
}

static int table_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    tb_data *T = D->state;
    if (T->stream) return tb_stream_batch(D, split, rows, n, e);
    long nmain = T->tab[0].n;
    if (tb_ensure_cap(T, n) < 0) return ts_fail(e, "table: out of memory for a batch of %d rows", n);
    for (int i = 0; i < T->nfeat; i++) if (T->feat[i].boff) T->feat[i].boff[0] = 0;
    for (int g = 0; g < T->ngroup; g++) if (T->group[g].boff) T->group[g].boff[0] = 0;
    for (int b = 0; b < n; b++) {
        if (rows[b] < 0 || rows[b] >= T->nrows[split])
            return ts_fail(e, "table: row %ld asked of a split of %ld rows", rows[b], T->nrows[split]);
        long x = T->rows[split][rows[b]], r = x < nmain ? x : T->neg_row[x - nmain];
        int32_t v = x < nmain ? -1 : T->neg_item[x - nmain];
        T->b_implicit[b] = x < nmain && T->mode != TS_OPEN_PREDICT ? 1.0f : 0.0f;
        for (int i = 0; i < T->nfeat; i++) {
            tb_feat *f = &T->feat[i];
            const tb_src *s = &T->src[f->src];
            if (f->packed) continue;
            int sr = f->kind <= TB_SEQ ? feat_row(T, f, r, v) : (int)r;
            if (f->kind == TB_DENSE)   /* an example age is 0 at serving time: outside training */
                f->bx[b] = f->example_age && split != TS_TRAIN ? 0 : sr < 0 ? f->missing_out : f->val[sr];
            else if (f->kind == TB_CAT)
                f->bids[b] = v >= 0 && T->item_map[i] ? T->item_map[i][v] : sr < 0 ? 0 : f->map[s->tok[sr]];
            else if (f->kind == TB_LABEL) {
                /* times:G: the product, known where both are, and 0 where G is 0 (no click: no
                 * click-and-conversion, whether or not the conversion cell is filled) */
                const tb_feat *g = f->times_of >= 0 ? &T->feat[f->times_of] : NULL;
                int gzero = g && v < 0 && g->present[r] && g->lab[r] == 0;
                int has = gzero || (v < 0 && f->present[r] && (!g || g->present[r]));
                f->bx[b] = !has || gzero ? 0 : g ? f->lab[r] * g->lab[r] : f->lab[r];
                if (f->bm) f->bm[b] = (float)has;
            } else if (f->kind == TB_WEIGHT) f->bx[b] = f->lab[r];
            else if (f->over >= 0) {                 /* a side column over a sequence's values */
                int64_t at = tb_gather(T, f, r, &f->bids, &f->bids_cap, f->boff[b]);
                if (at < 0) return ts_fail(e, "table: out of memory");
                f->boff[b + 1] = (int32_t)at;
            } else if (f->kind == TB_MULTI || (f->kind == TB_SEQ && f->as_bag)) {
                int64_t at = f->boff[b], m = sr < 0 ? 0 : f->history ? f->maxlen
                           : T->src[f->src].loff[sr + 1] - T->src[f->src].loff[sr];
                if (tb_bag_room(&f->bids, &f->bids_cap, at + m) < 0) return ts_fail(e, "table: out of memory");
                at += cell_ids(T, f, sr, f->bids, at, f->kind == TB_SEQ ? f->maxlen : 0);
                f->boff[b + 1] = (int32_t)at;
            } else if (f->kind == TB_SEQ) {
                int32_t *row = f->bids + (size_t)b * f->maxlen;
                int64_t m = cell_ids(T, f, sr, row, 0, f->maxlen);
                for (int64_t k = m; k < f->maxlen; k++) row[k] = 0;
                f->blen[b] = m > 0 ? (int32_t)m : 1;    /* an empty history: one padding id 0 */
            }
        }
        if (tb_group_row(T, b, r, e) < 0) return -1;
    }
    tb_point_fields(T, n);
    return 0;
}

static int table_aux(ts_data *D, const char *name, const void **ptr, long *n)
{
    tb_data *T = D->state;
    if (T->stream) {   /* streamed: no rows kept, unseen values not counted (every epoch reads) */
        if (!strcmp(name, "report")) { *ptr = tb_stream_report(T); *n = (long)strlen(*ptr); return 0; }
        if (strcmp(name, "skipped_rows") && strcmp(name, "missing_keys")) return -1;
    }
    if (!strcmp(name, "skipped_rows")) { *ptr = &T->skipped; *n = 1; }
    else if (!strcmp(name, "unseen_values")) { *ptr = &T->unseen; *n = 1; }
    else if (!strcmp(name, "missing_keys")) { *ptr = &T->missing_keys; *n = 1; }
    else if (!strcmp(name, "item_freq") && T->item_freq) { *ptr = T->item_freq; *n = T->feat[T->item_feat].nvocab; }
    else if (!strcmp(name, "row_id") && T->id_feat >= 0) {
        long m = T->nrows[TS_TEST], nmain = T->tab[0].n;
        const tb_feat *f = &T->feat[T->id_feat];
        if (!T->row_id && !(T->row_id = malloc((size_t)(m ? m : 1) * sizeof *T->row_id))) return -1;
        for (long i = 0; i < m; i++) {
            long x = T->rows[TS_TEST][i], r = x < nmain ? x : T->neg_row[x - nmain];
            T->row_id[i] = ts_strtab_str(T->strs, f->src, T->src[f->src].tok[r]);
        }
        *ptr = T->row_id;
        *n = m;
    } else if (!strcmp(name, "row_line")) {
        long m = T->nrows[TS_TEST], nmain = T->tab[0].n;
        if (!T->row_line && !(T->row_line = malloc((size_t)(m ? m : 1) * sizeof *T->row_line)))
            return -1;
        for (long i = 0; i < m; i++) {   /* a sampled negative: the line of its positive */
            long x = T->rows[TS_TEST][i], r = x < nmain ? x : T->neg_row[x - nmain];
            T->row_line[i] = T->tab[0].line[r];
        }
        *ptr = T->row_line;
        *n = m;
    } else return -1;
    return 0;
}

static int table_fitted(ts_data *D, char **text, size_t *n, ts_err *e)
{
    tb_data *T = D->state;
    if (T->stream) return tb_stream_fitted(T, text, n, e);
    return tb_state_write(T, text, n, e);
}

static const ts_key keys[] = {
    {"path", "string", NULL, "the main delimited file (plain or .gz)"},
    {"separator", "string", ",", "field separator: the text (quoted: \"::\") or tab, space, comma, semicolon, pipe, colon"},
    {"header", "bool", "true", "the first line names the columns (else columns = or 0, 1, ...)"},
    {"columns", "string", "", "names of the columns of a file without a header, in order"},
    {"encoding", "choice:utf-8|latin-1", "utf-8", "utf-8 (checked: FILE:LINE on an invalid byte) or latin-1 (converted)"},
    {"quoting", "bool", "true", "RFC 4180 quotes: \"a, b\" is one field, \"\" a quote inside one"},
    {"trim", "bool", "true", "strip spaces and tabs around unquoted fields"},
    {"missing_values", "string", "?, NA, NaN, null", "besides an empty field, the texts that mean a missing number or label"},
    {"skip_bad_rows", "bool", "false", "skip malformed rows (aux skipped_rows) instead of failing"},
    {"dense", "string", "", "numeric columns: NAME(log clip:LO:HI missing:mean|V scale:standard|minmax|none as:FIELD table:T), or a time column's NAME(example_age)"},
    {"categorical", "string", "", "categorical columns: NAME(min_count:N order:frequency|first|value ties:first|value vocab_rows:train|all oov:bucket|none | hash:N seed:S | vocab:FIELD, as:FIELD table:T)"},
    {"multi", "string", "", "multi-valued categorical columns, a bag per row: NAME(sep:| min_count:N hash:N vocab:FIELD, the vocabulary options of categorical), or a side column gathered over a sequence's values: NAME(table:T over:FIELD)"},
    {"sequence", "string", "", "ordered lists, the last max kept: NAME(sep:| max:N|auto out:ids|bag vocab:FIELD), or the user's earlier rows: NAME(history max:N)"},
    {"labels", "string", "", "label columns: NAME(regression threshold:X positive:V negative:V map:V:N mask:FIELD)"},
    {"weight", "string", "", "the sample weight column (a number >= 0 a row)"},
    {"id", "string", "", "the column naming each row (aux row_id, for predictions)"},
    {"groups", "string", "", "grouped fields: NAME(field field ...), one I32 (B, F) id space or F32 (B, F)"},
    {"column_fields", "choice:all|ungrouped", "all", "all: grouped columns keep their own fields too; ungrouped: only the group"},
    {"tables", "string", "", "side tables: NAME(path:FILE key:COLUMN on:COLUMN sep:S header:B encoding:E columns:a:b)"},
    {"min_count", "int", "1", "default minimum training count of a vocabulary value (else the OOV id 0)"},
    {"vocab_order", "choice:frequency|first", "frequency", "vocabulary ids by training frequency or by first appearance"},
    {"split", "choice:random|user|time|column", "random", "how rows are split into train, valid, test"},
    {"split_fractions", "list", "0.6, 0.2, 0.2", "train, valid, test fractions (random: of rows; user: of users)"},
    {"split_seed", "int", "2026", "seed of the random and user splits"},
    {"split_column", "string", "", "split = column: the column saying train, valid or test"},
    {"user", "string", "", "the column naming the user (split = user / time, negatives)"},
    {"item", "string", "", "the column naming the item (negatives, aux item_freq); also declare it categorical"},
    {"time", "string", "", "split = time: the column ordering a user's rows (leave-last-out)"},
    {"negatives", "int", "0", "negative items sampled per positive row (implicit feedback), 0 = none"},
    {"sampler", "choice:uniform|popularity", "uniform", "how negatives are drawn: uniformly or by training popularity"},
    {"negative_seed", "int", "2026", "seed of negative sampling"},
    {"implicit_label", "string", "label", "with negatives: the field that is 1 for the file's rows, 0 for sampled ones"},
    {"min_history", "int", "0", "a row is an example only when its user has this many earlier rows (user =, time =); the others still count for vocabularies and popularity and appear in histories"},
    {"stream", "bool", "false", "read the main file as a stream (path: a file, a folder of shards or a glob; plain or .gz) with memory bounded by shuffle_buffer; a row's split is a hash of its line; dense, categorical, label and weight columns only (docs/scale.md)"},
    {"shuffle_buffer", "int", "65536", "stream = true: rows of the shuffle block (8 bytes a declared column each) of the whole job: each of N MPI ranks holds ceil(rows / N) (docs/scale.md)"},
    {"row_order", "choice:file|user_time", "file", "the order of each split's rows: the file's, or each user's rows together by time (users in order of first appearance)"},
    {NULL, NULL, NULL, NULL}};

static const ts_dataset_ops ops = {.size = sizeof(ts_dataset_ops), .open = table_open,
                                   .batch = table_batch, .aux = table_aux, .close = table_close,
                                   .fitted = table_fitted, .stream_begin = tb_stream_begin,
                                   .stream_next = tb_stream_next, .stream_pos = tb_stream_pos,
    .concurrency = TS_BRANCH_SAFE};   /* batch() fills the fields only */
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_DATASET, "table", "1.0",
    "a delimited file (and side tables) read through declared feature columns", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
