/* table_split.c — the table reader's rows: side tables joined to the main file by key (a
 * missing key counted, its features taking their defaults), the splits (random with a seed,
 * by user, leave-last-out by time per user, or a column naming the split; every row of the
 * file as the test split when a trained run is applied), which rows are examples (min_history)
 * and in what order (row_order), and negative sampling for implicit feedback (k per positive,
 * uniform or by training popularity, seeded, never an item the user interacted with in
 * training). Reading and fitting are table_parse.c's and table_columns.c's. */
#include "table.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int tb_join(tb_data *T, ts_err *e)
{
    long n = T->tab[0].n;
    for (int t = 1; t < T->ntab; t++) {
        tb_table *tab = &T->tab[t];
        const tb_src *on = &T->src[tab->on_src];
        int32_t non = ts_strtab_count(T->strs, tab->on_src);
        int32_t *row = malloc((size_t)(non + 1) * sizeof *row);
        if (!row || !(tab->join = malloc((size_t)(n ? n : 1) * sizeof *tab->join))) {
            free(row);
            return ts_fail(e, "table: out of memory");
        }
        for (int32_t k = 0; k < non; k++) {      /* each distinct value once */
            const char *w = ts_strtab_str(T->strs, tab->on_src, k);
            int32_t id = ts_strtab_id(T->strs, tab->key_src, w, strlen(w), 0);
            row[k] = id >= 0 && id < tab->key_cap ? tab->key_row[id] : -1;
        }
        for (long r = 0; r < n; r++) {
            tab->join[r] = row[on->tok[r]];
            T->missing_keys += tab->join[r] < 0;
        }
        free(row);
    }
    for (int i = 0; i < T->nfeat; i++) {         /* gathered columns: the side row of each value */
        tb_feat *f = &T->feat[i];
        if (f->over < 0) continue;
        int o = T->feat[f->over].src;
        const tb_table *tab = &T->tab[T->src[f->src].table];
        int32_t nraw = ts_strtab_count(T->strs, o);
        if (!(f->over_row = malloc((size_t)(nraw + 1) * sizeof *f->over_row)))
            return ts_fail(e, "table: out of memory");
        for (int32_t k = 0; k < nraw; k++) {
            const char *w = ts_strtab_str(T->strs, o, k);
            int32_t id = ts_strtab_id(T->strs, tab->key_src, w, strlen(w), 0);
            f->over_row[k] = id >= 0 && id < tab->key_cap ? tab->key_row[id] : -1;
        }
    }
    return 0;
}

static int split_of_word(const char *w)
{
    return !strcasecmp(w, "train") ? TS_TRAIN : !strcasecmp(w, "test") ? TS_TEST : TS_VALID;
}

typedef struct { double time; long row; } timed;

static int by_time(const void *a, const void *b)
{
    const timed *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* Which split each row falls in, for the user, time and column rules. */
static int assign(tb_data *T, uint8_t *which, ts_err *e)
{
    long n = T->tab[0].n;
    if (T->split_kind == TB_SPLIT_COLUMN) {
        const tb_src *s = &T->src[T->split_src];
        for (long r = 0; r < n; r++) which[r] = (uint8_t)split_of_word(ts_strtab_str(T->strs, T->split_src, s->tok[r]));
        return 0;
    }
    const tb_src *u = &T->src[T->user_src];
    int32_t nu = ts_strtab_count(T->strs, T->user_src);
    long *off = calloc((size_t)nu + 2, sizeof *off);
    if (!off) return ts_fail(e, "table: out of memory");
    for (long r = 0; r < n; r++) off[u->tok[r] + 2]++;
    for (int32_t k = 0; k < nu; k++) off[k + 2] += off[k + 1];
    if (T->split_kind == TB_SPLIT_USER) {   /* users with rows, in first-appearance order, shuffled */
        long *users = malloc((size_t)(nu ? nu : 1) * sizeof *users), m = 0;
        uint8_t *us = malloc((size_t)(nu ? nu : 1));
        if (!users || !us) { free(off); free(users); free(us); return ts_fail(e, "table: out of memory"); }
        for (int32_t k = 0; k < nu; k++) if (off[k + 2] > off[k + 1]) users[m++] = k;
        ts_rng rng;
        ts_rng_seed(&rng, T->split_seed);
        ts_rng_shuffle(&rng, users, m);
        long ntr = (long)(T->frac[0] * m + 0.5), nva = (long)(T->frac[1] * m + 0.5);
        if (ntr > m) ntr = m;
        if (ntr + nva > m) nva = m - ntr;
        for (long k = 0; k < m; k++) us[users[k]] = k < ntr ? TS_TRAIN : k < ntr + nva ? TS_VALID : TS_TEST;
        for (long r = 0; r < n; r++) which[r] = us[u->tok[r]];
        free(users); free(us); free(off);
        return 0;
    }
    /* leave-last-out: each user's rows by time (ties: file order); the last is test, the one
     * before valid (users with 3 rows or more), the rest train */
    timed *tr = malloc((size_t)(n ? n : 1) * sizeof *tr);
    if (!tr) { free(off); return ts_fail(e, "table: out of memory"); }
    for (long r = 0; r < n; r++) {
        long at = off[u->tok[r] + 1]++;
        tr[at].time = T->src[T->time_src].time[r];
        tr[at].row = r;
    }
    for (int32_t k = 0; k < nu; k++) {        /* off[k] .. off[k + 1] are user k's rows now */
        long a = k ? off[k] : 0, b = off[k + 1], m = b - a;
        qsort(tr + a, (size_t)m, sizeof *tr, by_time);
        for (long i = a; i < b; i++)
            which[tr[i].row] = i == b - 1 && m >= 2 ? TS_TEST : i == b - 2 && m >= 3 ? TS_VALID : TS_TRAIN;
    }
    free(tr);
    free(off);
    return 0;
}

/* Each user's rows in time order (ties: file order), for sequences of earlier rows. */
int tb_histories(tb_data *T, ts_err *e)
{
    long n = T->tab[0].n;
    const tb_src *u = &T->src[T->user_src];
    int32_t nu = ts_strtab_count(T->strs, T->user_src);
    long *off = calloc((size_t)nu + 2, sizeof *off);
    timed *tr = malloc((size_t)(n ? n : 1) * sizeof *tr);
    T->hist_rows = malloc((size_t)(n ? n : 1) * sizeof *T->hist_rows);
    T->hist_at = malloc((size_t)(n ? n : 1) * sizeof *T->hist_at);
    T->hist_first = malloc((size_t)(n ? n : 1) * sizeof *T->hist_first);
    if (!off || !tr || !T->hist_rows || !T->hist_at || !T->hist_first) {
        free(off); free(tr);
        return ts_fail(e, "table: out of memory");
    }
    for (long r = 0; r < n; r++) off[u->tok[r] + 2]++;
    for (int32_t k = 0; k < nu; k++) off[k + 2] += off[k + 1];
    for (long r = 0; r < n; r++) {
        long at = off[u->tok[r] + 1]++;
        tr[at].time = T->src[T->time_src].time[r];
        tr[at].row = r;
    }
    for (int32_t k = 0; k < nu; k++) {
        long a = k ? off[k] : 0, b = off[k + 1];
        qsort(tr + a, (size_t)(b - a), sizeof *tr, by_time);
        for (long i = a; i < b; i++) {
            T->hist_rows[i] = (int32_t)tr[i].row;
            T->hist_at[tr[i].row] = (int32_t)i;
            T->hist_first[tr[i].row] = (int32_t)a;
        }
    }
    free(tr);
    free(off);
    return 0;
}

/* min_history: the rows of split s whose user has fewer earlier rows are no examples. */
static void keep_examples(tb_data *T, int s)
{
    long m = 0;
    for (long i = 0; i < T->nrows[s] && T->min_history > 0; i++) {
        long r = T->rows[s][i];
        if (T->hist_at[r] - T->hist_first[r] >= T->min_history) T->rows[s][m++] = r;
    }
    if (T->min_history > 0) T->nrows[s] = m;
}

/* row_order = user_time: each split's rows in the order of the users' histories (users by first
 * appearance, each user's rows by time, ties in file order). */
static int by_user_time(tb_data *T)
{
    long n = T->tab[0].n, at[3] = {0, 0, 0};
    uint8_t *which = malloc((size_t)(n ? n : 1));
    if (!which) return -1;
    for (int s = 0; s < 3; s++)
        for (long i = 0; i < T->nrows[s]; i++) which[T->rows[s][i]] = (uint8_t)s;
    for (long i = 0; i < n; i++) {
        long r = T->hist_rows[i];
        T->rows[which[r]][at[which[r]]++] = r;
    }
    free(which);
    return 0;
}

int tb_split(tb_data *T, ts_err *e)
{
    long n = T->tab[0].n, cnt[3] = {0, 0, 0};
    for (int s = 0; s < 3; s++) T->rows[s] = NULL;
    if (T->mode != TS_OPEN_TRAIN) {            /* applying a trained run: the file is the test split */
        if (!(T->rows[TS_TEST] = malloc((size_t)(n ? n : 1) * sizeof(long))) ||
            !(T->period = malloc((size_t)(n ? n : 1) * sizeof(long))))
            return ts_fail(e, "table: out of memory");
        for (long r = 0; r < n; r++) T->rows[TS_TEST][r] = T->period[r] = r;
        T->nrows[TS_TRAIN] = T->nrows[TS_VALID] = 0;
        T->nrows[TS_TEST] = T->nperiod = n;
        if (T->mode == TS_OPEN_EVALUATE) keep_examples(T, TS_TEST);   /* predict: every row */
        return 0;
    }
    long *perm = malloc((size_t)(n ? n : 1) * sizeof *perm);
    if (!perm) return ts_fail(e, "table: out of memory");
    if (T->split_kind == TB_SPLIT_RANDOM) {     /* the census and csv readers' rule, to the row */
        for (long i = 0; i < n; i++) perm[i] = i;
        ts_rng rng;
        ts_rng_seed(&rng, T->split_seed);
        ts_rng_shuffle(&rng, perm, n);
        cnt[0] = (long)(T->frac[0] * n + 0.5);
        cnt[1] = (long)(T->frac[1] * n + 0.5);
        if (cnt[0] > n) cnt[0] = n;
        if (cnt[0] + cnt[1] > n) cnt[1] = n - cnt[0];
        cnt[2] = n - cnt[0] - cnt[1];
    } else {                                    /* file order within each split */
        uint8_t *which = malloc((size_t)(n ? n : 1));
        if (!which || assign(T, which, e) < 0) {
            free(perm); free(which);
            return *e->msg ? -1 : ts_fail(e, "table: out of memory");
        }
        for (long r = 0; r < n; r++) cnt[which[r]]++;
        long at[3] = {0, cnt[0], cnt[0] + cnt[1]};
        for (long r = 0; r < n; r++) perm[at[which[r]]++] = r;
        free(which);
    }
    long at = 0;
    for (int s = 0; s < 3; s++) {
        T->nrows[s] = cnt[s];
        if (!(T->rows[s] = malloc((size_t)(cnt[s] ? cnt[s] : 1) * sizeof(long)))) {
            free(perm);
            return ts_fail(e, "table: out of memory");
        }
        memcpy(T->rows[s], perm + at, (size_t)cnt[s] * sizeof(long));
        at += cnt[s];
    }
    free(perm);
    if (cnt[0] == 0)
        return ts_fail(e, "%s: the training split of %ld rows is empty; check [data] split and "
                       "split_fractions (or the split column's values)", T->tab[0].path, n);
    if (T->row_order_user && by_user_time(T) < 0) return ts_fail(e, "table: out of memory");
    if (!(T->period = malloc((size_t)T->nrows[TS_TRAIN] * sizeof(long))))
        return ts_fail(e, "table: out of memory");
    memcpy(T->period, T->rows[TS_TRAIN], (size_t)T->nrows[TS_TRAIN] * sizeof(long));
    T->nperiod = T->nrows[TS_TRAIN];
    for (int s = 0; s < 3; s++) keep_examples(T, s);
    if (T->nrows[TS_TRAIN] == 0)
        return ts_fail(e, "%s: no training row has min_history = %ld earlier rows of its user; "
                       "lower [data] min_history", T->tab[0].path, T->min_history);
    return 0;
}

/* Item ids of the user's rows in rows[0..n), per user: CSR sorted for binary search. */
static int user_items(tb_data *T, const long *rows, long n, long **off, int32_t **items)
{
    const tb_src *u = &T->src[T->user_src], *it = &T->src[T->item_src];
    const tb_feat *f = &T->feat[T->item_feat];
    int32_t nu = ts_strtab_count(T->strs, T->user_src);
    *off = calloc((size_t)nu + 2, sizeof **off);
    *items = malloc((size_t)(n ? n : 1) * sizeof **items);
    if (!*off || !*items) return -1;
    for (long i = 0; i < n; i++) (*off)[u->tok[rows[i]] + 2]++;
    for (int32_t k = 0; k < nu; k++) (*off)[k + 2] += (*off)[k + 1];
    for (long i = 0; i < n; i++) (*items)[(*off)[u->tok[rows[i]] + 1]++] = f->map[it->tok[rows[i]]];
    for (int32_t k = 0; k < nu; k++) {           /* insertion sort per user: histories are short */
        int32_t *a = *items + (k ? (*off)[k] : 0);
        long m = (*off)[k + 1] - (k ? (*off)[k] : 0);
        for (long i = 1; i < m; i++) {
            int32_t v = a[i];
            long j = i;
            while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
            a[j] = v;
        }
    }
    return 0;
}

static int has_item(const int32_t *a, long m, int32_t v)
{
    long lo = 0, hi = m;
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo < m && a[lo] == v;
}

int tb_popularity(tb_data *T, ts_err *e)
{
    tb_feat *f = &T->feat[T->item_feat];
    const tb_src *it = &T->src[T->item_src];
    int32_t base = tb_base(T, f);
    if (!T->pop) {                              /* fitted on the training rows */
        if (!(T->pop = calloc((size_t)f->nvocab, sizeof *T->pop))) return ts_fail(e, "table: out of memory");
        for (long i = 0; i < T->nperiod; i++) T->pop[f->map[it->tok[T->period[i]]]] += 1;
        if (base) T->pop[0] = 0;                /* the out-of-vocabulary bucket is never drawn */
    }
    if (!(T->item_freq = malloc((size_t)f->nvocab * sizeof *T->item_freq))) return ts_fail(e, "table: out of memory");
    for (int32_t v = 0; v < f->nvocab; v++) T->item_freq[v] = (float)T->pop[v];
    /* what sampled rows show: each item column feature's id of an item, each item table's row */
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *g = &T->feat[i];
        if (g->kind != TB_CAT || g->src != T->item_src) continue;
        if (!(T->item_map[i] = malloc((size_t)f->nvocab * sizeof(int32_t)))) return ts_fail(e, "table: out of memory");
        int32_t gbase = tb_base(T, g);
        for (int32_t v = 0; v < f->nvocab; v++) {
            const char *w = v >= base ? ts_strtab_str(T->strs, T->nsrc + T->item_feat, v - base) : "";
            int32_t id = g->hash ? (int32_t)(tb_hash(w, strlen(w), g->seed) % (uint64_t)g->buckets)
                       : v >= base ? ts_strtab_id(T->strs, T->nsrc + g->vocab_of, w, strlen(w), 0) + gbase : 0;
            T->item_map[i][v] = id < 0 ? 0 : id;   /* (oov:none holds every item of the file) */
        }
    }
    for (int t = 1; t < T->ntab; t++) {
        tb_table *tab = &T->tab[t];
        if (tab->on_src != T->item_src) continue;
        if (!(tab->item_row = malloc((size_t)f->nvocab * sizeof(int32_t)))) return ts_fail(e, "table: out of memory");
        for (int32_t v = 0; v < f->nvocab; v++) {
            const char *w = v >= base ? ts_strtab_str(T->strs, T->nsrc + T->item_feat, v - base) : NULL;
            int32_t id = w ? ts_strtab_id(T->strs, tab->key_src, w, strlen(w), 0) : -1;
            tab->item_row[v] = id >= 0 && id < tab->key_cap ? tab->key_row[id] : -1;
        }
    }
    return 0;
}

int tb_negatives(tb_data *T, ts_err *e)
{
    tb_feat *f = &T->feat[T->item_feat];
    const tb_src *it = &T->src[T->item_src], *u = &T->src[T->user_src];
    int32_t V = f->nvocab;
    long n = T->tab[0].n, *off = NULL;
    int32_t *items = NULL;
    double *cum = NULL;
    int rc = -1;
    if (!(cum = malloc((size_t)V * sizeof *cum))) goto oom;
    int32_t base = tb_base(T, f);
    for (int32_t v = 0; v < V; v++) cum[v] = (v ? cum[v - 1] : 0) + (v < base ? 0 : T->neg_popularity ? T->pop[v] : 1);
    if (V <= base || cum[V - 1] <= 0) {
        ts_fail(e, "table: negative sampling needs items in the vocabulary of %s; the training "
                "split has none", f->field);
        goto out;
    }
    /* What each user interacted with: the training rows (the file's rows when applying a run). */
    if (user_items(T, T->period, T->nperiod, &off, &items) < 0) goto oom;
    ts_rng rng;
    ts_rng_seed(&rng, T->neg_seed);
    long k = T->negatives;
    for (int s = 0; s < 3; s++) {
        long m = T->nrows[s], at = 0;
        long *rows = malloc((size_t)(m * (k + 1) + 1) * sizeof *rows);
        int32_t *nr = realloc(T->neg_row, (size_t)(T->nneg + m * k + 1) * sizeof *nr);
        if (nr) T->neg_row = nr;
        int32_t *ni = nr ? realloc(T->neg_item, (size_t)(T->nneg + m * k + 1) * sizeof *ni) : NULL;
        if (ni) T->neg_item = ni;
        if (!rows || !nr || !ni) { free(rows); goto oom; }
        for (long i = 0; i < m; i++) {
            long r = T->rows[s][i];
            int32_t uk = u->tok[r], own = f->map[it->tok[r]];
            const int32_t *seen = items + (uk ? off[uk] : 0);
            long ns = off[uk + 1] - (uk ? off[uk] : 0);
            rows[at++] = r;
            for (long j = 0; j < k; j++)
                for (int tries = 0; tries < 100; tries++) {   /* a user who saw nearly everything gets fewer */
                    double x = ts_rng_uniform(&rng) * cum[V - 1];
                    int32_t lo = base, hi = V - 1;
                    while (lo < hi) {
                        int32_t mid = (lo + hi) / 2;
                        if (cum[mid] > x) hi = mid;
                        else lo = mid + 1;
                    }
                    if (lo == own || has_item(seen, ns, lo)) continue;
                    T->neg_row[T->nneg] = (int32_t)r;
                    T->neg_item[T->nneg] = lo;
                    rows[at++] = n + T->nneg++;
                    break;
                }
        }
        free(T->rows[s]);
        T->rows[s] = rows;
        T->nrows[s] = at;
    }
    rc = 0;
    goto out;
oom:
    ts_fail(e, "table: out of memory sampling negatives");
out:
    free(off); free(items); free(cum);
    return rc;
}
