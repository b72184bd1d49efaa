/* table_vocab.c — the table reader's vocabularies: fitted from the training rows (or every
 * row, vocab_rows:all) with a minimum count, numbered by training frequency (ties by first
 * appearance or by value), first appearance or value, from 1 after the out-of-vocabulary id 0 or
 * from 0 without one (oov:none); applied as a map from raw values to ids, with the values outside
 * counted (or, without an out-of-vocabulary id, refused with FILE:LINE); and a side table's column
 * gathered over a sequence's values (over:). Dense columns and packing are table_columns.c's. */
#include "table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_count(const void *a, const void *b)
{
    const tb_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->raw > y->raw) - (x->raw < y->raw);
}

/* Numbers first, in numeric order; then the rest in byte order (a total order: "1" and "1.0"
 * are told apart by their bytes). */
static int by_value(const void *a, const void *b)
{
    const tb_count *x = a, *y = b;
    if (x->isnum != y->isnum) return x->isnum ? -1 : 1;
    if (x->isnum && x->num != y->num) return x->num < y->num ? -1 : 1;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->raw > y->raw) - (x->raw < y->raw);
}

static int by_count_value(const void *a, const void *b)
{
    const tb_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return by_value(a, b);
}

/* The side row of each value a gathered feature reaches from main row r, into sr[0..]; a
 * history reaches its own row's value (the rows a history is made of), a list every value. */
static long over_rows(const tb_data *T, const tb_feat *f, long r, int32_t *sr, long cap)
{
    const tb_feat *o = &T->feat[f->over];
    const tb_src *os = &T->src[o->src];
    if (o->history) { sr[0] = f->over_row[TB_TOK(os, r)]; return 1; }
    long n = 0;
    for (int64_t k = os->loff[r]; k < os->loff[r + 1] && n < cap; k++) sr[n++] = f->over_row[os->lids[k]];
    return n;
}

static long over_max(const tb_data *T, const tb_feat *f)
{
    const tb_feat *o = &T->feat[f->over];
    const tb_src *os = &T->src[o->src];
    long m = 1;
    for (long r = 0; !o->history && r < T->tab[0].n; r++)
        if (os->loff[r + 1] - os->loff[r] > m) m = (long)(os->loff[r + 1] - os->loff[r]);
    return m;
}

/* Counts the values feature f reads in main row r (into all or count). */
static void count_row(const tb_data *T, const tb_feat *f, long r, tb_count *c, int all, int32_t *sr,
                      long cap)
{
    const tb_src *s = &T->src[f->src];
    long n = 1;
    if (f->over >= 0) n = over_rows(T, f, r, sr, cap);
    else sr[0] = tb_src_row(T, f, r);
    for (long i = 0; i < n; i++) {
        if (sr[i] < 0) continue;
        if (f->kind == TB_CAT || f->history) {
            tb_count *x = &c[TB_TOK(s, sr[i])];
            if (all) x->all++; else x->count++;
            continue;
        }
        for (int64_t k = s->loff[sr[i]]; k < s->loff[sr[i] + 1]; k++) {
            if (all) c[s->lids[k]].all++; else c[s->lids[k]].count++;
        }
    }
}

/* A vocabulary from the training rows: values seen min_count times or more (in every row with
 * vocab_rows:all), ids from 1 (0 with oov:none) in order of training frequency (ties: first
 * appearance, or value), of first appearance in the file, or of value; interned in space
 * nsrc + f. counted: the training counts when a group's pass made them. */
int tb_fit_vocab(tb_data *T, int fi, tb_count *counted, ts_err *e)
{
    tb_feat *f = &T->feat[fi];
    const tb_src *s = &T->src[f->src];
    int32_t nraw = ts_strtab_count(T->strs, f->src);
    tb_count *c = counted ? counted : calloc((size_t)nraw + 1, sizeof *c);
    long *len = f->kind == TB_SEQ && f->maxlen_auto ? malloc((size_t)(T->ntrain_sorted + 1) * sizeof *len) : NULL;
    long cap = f->over >= 0 ? over_max(T, f) : 1;
    int32_t *sr = malloc((size_t)cap * sizeof *sr);
    if (!c || !sr || (f->kind == TB_SEQ && f->maxlen_auto && !len)) {
        if (!counted) free(c);
        free(len); free(sr);
        return ts_fail(e, "table: out of memory");
    }
    for (int32_t i = 0; i < nraw; i++) c[i].raw = i;
    for (long i = 0; i < T->ntrain_sorted && !counted; i++) {   /* file order: counting needs no other */
        if (len) {
            int q = tb_src_row(T, f, T->train_sorted[i]);
            len[i] = q >= 0 ? (long)(s->loff[q + 1] - s->loff[q]) : 0;
        }
        count_row(T, f, T->train_sorted[i], c, 0, sr, cap);
    }
    for (long r = 0; f->rows_all && r < T->tab[0].n; r++) count_row(T, f, r, c, 1, sr, cap);
    free(sr);
    if (len) {          /* max:auto: the 95th percentile of the training lengths, at least 1 */
        long n = T->ntrain_sorted, m = 0;
        for (long i = 0; i < n; i++) m = len[i] > m ? len[i] : m;
        long *hist = calloc((size_t)m + 2, sizeof *hist), acc = 0, q = 0;
        if (!hist) { free(c); free(len); return ts_fail(e, "table: out of memory"); }
        for (long i = 0; i < n; i++) hist[len[i]]++;
        while (q <= m && (acc += hist[q]) < (long)ceil(0.95 * (double)n)) q++;
        f->maxlen = q < 1 ? 1 : q > 100000 ? 100000 : (int)q;
        free(hist);
        free(len);
    }
    if (f->order == TB_ORDER_VALUE || f->ties_value)
        for (int32_t i = 0; i < nraw; i++) {
            c[i].s = ts_strtab_str(T->strs, f->src, i);
            c[i].isnum = tb_parse_number(c[i].s, strlen(c[i].s), &c[i].num) == 0;
        }
    if (f->order == TB_ORDER_VALUE) qsort(c, (size_t)nraw, sizeof *c, by_value);
    else if (f->order == TB_ORDER_FREQUENCY)
        qsort(c, (size_t)nraw, sizeof *c, f->ties_value ? by_count_value : by_count);
    int32_t n = 0;
    for (int32_t i = 0; i < nraw; i++) {
        if ((f->rows_all ? c[i].all : c[i].count) < f->min_count) continue;
        const char *w = ts_strtab_str(T->strs, f->src, c[i].raw);
        if (ts_strtab_id(T->strs, T->nsrc + fi, w, strlen(w), 1) != n++) {
            free(c);
            return ts_fail(e, "table: out of memory");
        }
    }
    free(c);
    f->nvocab = n + (f->no_oov ? 0 : 1);
    return 0;
}

/* Values outside a vocabulary (id 0, or none with oov:none) over every main row, and the first. */
typedef struct { long n, row; int table; int32_t raw; } unseen_at;

static void unseen_value(const tb_feat *f, int32_t base, int table, long row, int32_t raw, unseen_at *u)
{
    if (f->map[raw] >= base) return;
    if (!u->n++) { u->table = table; u->row = row; u->raw = raw; }
}

static void count_unseen(const tb_data *T, const tb_feat *f, int32_t base, unseen_at *u)
{
    const tb_src *s = &T->src[f->src];
    int32_t one[1], *sr = one;
    long cap = f->over >= 0 ? over_max(T, f) : 1;
    if (cap > 1 && !(sr = malloc((size_t)cap * sizeof *sr))) sr = one, cap = 1;
    for (long r = 0; r < T->tab[0].n; r++) {
        long m = 1;
        if (f->over >= 0) m = over_rows(T, f, r, sr, cap);
        else sr[0] = tb_src_row(T, f, r);
        for (long i = 0; i < m; i++) {
            if (sr[i] < 0) continue;
            if (f->kind == TB_CAT || f->history) unseen_value(f, base, s->table, sr[i], TB_TOK(s, sr[i]), u);
            else for (int64_t k = s->loff[sr[i]]; k < s->loff[sr[i] + 1]; k++)
                unseen_value(f, base, s->table, sr[i], s->lids[k], u);
        }
    }
    if (sr != one) free(sr);
}

/* A value a vocabulary without an out-of-vocabulary id (oov:none) does not hold. */
static int no_id(const tb_data *T, const tb_feat *f, int table, long row, int32_t raw, ts_err *e)
{
    const tb_src *s = &T->src[f->src];
    const tb_feat *o = &T->feat[f->vocab_of];
    const char *v = ts_strtab_str(T->strs, f->src, raw);
    if (T->mode != TS_OPEN_TRAIN)
        return ts_fail(e, "%s:%ld: column \"%s\" holds \"%.60s\", which the trained run's vocabulary "
                       "of %s does not have, and that vocabulary has no out-of-vocabulary id "
                       "(oov:none): the run cannot read the row; remove it, or train with an "
                       "out-of-vocabulary id", T->tab[table].path, T->tab[table].line[row], s->name,
                       v, o->field);
    return ts_fail(e, "%s:%ld: column \"%s\" holds \"%.60s\", which is not in the vocabulary of %s, "
                   "and %s has no out-of-vocabulary id (oov:none); declare %s with vocab_rows:all "
                   "(every row's values) and min_count:1, or remove oov:none so that such values "
                   "take id 0", T->tab[table].path, T->tab[table].line[row], s->name, v, o->field,
                   o->field, o->field);
}

/* stream = true: the map grown to every raw id the string table holds now (values first met
 * after the vocabulary was fitted map to the out-of-vocabulary id, or by their hash). */
int tb_map_extend(tb_data *T, int i)
{
    tb_feat *f = &T->feat[i];
    int32_t n = ts_strtab_count(T->strs, f->src), base = tb_base(T, f);
    if (n <= f->nmap && f->map) return 0;
    int32_t *m = realloc(f->map, (size_t)(n + 1) * sizeof *m);
    if (!m) return -1;
    f->map = m;
    for (int32_t raw = f->nmap; raw < n; raw++) {
        const char *w = ts_strtab_str(T->strs, f->src, raw);
        size_t wl = strlen(w);
        if (f->hash) { m[raw] = (int32_t)(tb_hash(w, wl, f->seed) % (uint64_t)f->buckets); continue; }
        int32_t id = ts_strtab_id(T->strs, T->nsrc + f->vocab_of, w, wl, 0);
        m[raw] = id >= 0 ? id + base : base - 1;
    }
    f->nmap = n;
    return 0;
}

int tb_apply_vocab(tb_data *T, int i, ts_err *e)
{
    tb_feat *f = &T->feat[i];
    const tb_src *s = &T->src[f->src];
    const tb_feat *o = &T->feat[f->vocab_of];
    int32_t base = tb_base(T, f);
    f->nmap = ts_strtab_count(T->strs, f->src);
    if (!(f->map = malloc((size_t)(f->nmap + 1) * sizeof *f->map)))
        return ts_fail(e, "table: out of memory");
    f->nvocab = f->hash ? (int32_t)f->buckets : o->nvocab;
    for (int32_t raw = 0; raw < f->nmap; raw++) {
        const char *w = ts_strtab_str(T->strs, f->src, raw);
        size_t wl = strlen(w);
        if (f->hash) { f->map[raw] = (int32_t)(tb_hash(w, wl, f->seed) % (uint64_t)f->buckets); continue; }
        int32_t id = ts_strtab_id(T->strs, T->nsrc + f->vocab_of, w, wl, 0);
        f->map[raw] = id >= 0 ? id + base : base - 1;   /* the bucket 0, or -1: no id */
    }
    if (f->ids_of >= 0) {                               /* a label: the id of its value */
        for (long r = 0; r < T->tab[0].n && s->col >= 0; r++) {
            if (f->map[s->tok[r]] < 0) return no_id(T, f, 0, r, s->tok[r], e);
            f->lab[r] = (float)f->map[s->tok[r]];
            f->present[r] = 1;
        }
        return 0;
    }
    if (f->hash || (s->in_group && !o->no_oov)) return 0;   /* a group's: counted when packed */
    unseen_at u = {0, -1, 0, 0};
    count_unseen(T, f, base, &u);
    if (u.n && o->no_oov) return no_id(T, f, u.table, u.row, u.raw, e);
    if (s->in_group) return 0;
    f->unseen += u.n;
    T->unseen += u.n;
    return 0;
}

int64_t tb_gather(const tb_data *T, const tb_feat *f, long r, int32_t **ids, int64_t *cap, int64_t at)
{
    const tb_feat *o = &T->feat[f->over];
    const tb_src *os = &T->src[o->src], *s = &T->src[f->src];
    int64_t a, b;                                   /* the steps o holds for row r */
    if (o->history) {
        b = T->hist_at[r];
        a = b - o->maxlen < T->hist_first[r] ? T->hist_first[r] : b - o->maxlen;
    } else {
        a = os->loff[r];
        b = os->loff[r + 1];
        if (o->kind == TB_SEQ && b - a > o->maxlen) a = b - o->maxlen;
    }
    for (int64_t k = a; k < b; k++) {
        int32_t raw = o->history ? TB_TOK(os, T->hist_rows[k]) : os->lids[k];
        int32_t sr = f->over_row[raw];
        if (sr < 0) continue;
        int64_t m = s->loff[sr + 1] - s->loff[sr];
        if (at + m > *cap) {
            int64_t c = *cap ? *cap : 1024;
            while (c < at + m) c *= 2;
            int32_t *p = realloc(*ids, (size_t)c * sizeof *p);
            if (!p) return -1;
            *ids = p;
            *cap = c;
        }
        for (int64_t j = 0; j < m; j++) (*ids)[at + j] = f->map[s->lids[s->loff[sr] + j]];
        at += m;
    }
    return at;
}
