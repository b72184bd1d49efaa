/* table_parse.c — one delimited file of the table reader read into its source columns: the
 * header (or columns = names, or positions), each declared column found by name (the nearest
 * name suggested), every row's values kept as its columns need them (numbers, raw ids, lists,
 * split words), labels derived (threshold, positive values, a map; missing ones masked) and
 * weights checked, a side table's keys kept unique, and bad rows: FILE:LINE, what was found and
 * what to do, or skipped and counted under skip_bad_rows. Splitting records is table_record.c's. */
#include "table.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A hash of s[0..n), eight bytes at a time (the string table's goes a byte at a time). */
/* ---- sources ----------------------------------------------------------------------------------- */
int tb_src_get(tb_data *T, int table, const char *name, ts_err *e)
{
    for (int i = 0; i < T->nsrc; i++)
        if (T->src[i].table == table && !strcmp(T->src[i].name, name)) return i;
    if (T->nsrc == T->srccap) {
        int cap = T->srccap ? 2 * T->srccap : 16;
        tb_src *ns = realloc(T->src, (size_t)cap * sizeof *ns);
        if (!ns) return ts_fail(e, "table: out of memory");
        T->src = ns;
        T->srccap = cap;
    }
    tb_src *s = &T->src[T->nsrc];
    memset(s, 0, sizeof *s);
    s->table = table;
    s->col = -1;
    s->stride = 1;
    if (!(s->name = strdup(name))) return ts_fail(e, "table: out of memory");
    return T->nsrc++;
}

/* Grows every per-row array of table t to cap rows. */
static int grow(tb_data *T, int t, long cap)
{
    for (int g = 0; g < T->ngroup && t == 0; g++) {   /* columns read into their group's rows */
        tb_group *G = &T->group[g];
        if (!G->inplace) continue;
        size_t cells = (size_t)cap * (size_t)G->n;
        if (G->kind == TB_DENSE) {
            float *p = realloc(G->px, cells * sizeof *p);
            if (!p) return -1;
            G->px = p;
        } else {
            int32_t *p = realloc(G->pids, cells * sizeof *p);
            if (!p) return -1;
            G->pids = p;
        }
        for (int k = 0; k < G->n; k++) {
            tb_src *s = &T->src[T->feat[G->feat[k]].src];
            if (s->in_group != g + 1) continue;
            if (G->px) s->num = G->px + k;
            else s->tok = G->pids + k;
        }
    }
    for (int i = 0; i < T->nsrc; i++) {
        tb_src *s = &T->src[i];
        if (s->table != t || s->in_group) continue;
        void *p;
        if ((s->need & TB_NEED_NUM) && !(p = realloc(s->num, (size_t)cap * sizeof *s->num))) return -1;
        if (s->need & TB_NEED_NUM) s->num = p;
        if ((s->need & TB_NEED_TIME) && !(p = realloc(s->time, (size_t)cap * sizeof *s->time))) return -1;
        if (s->need & TB_NEED_TIME) s->time = p;
        if ((s->need & TB_NEED_TOK) && !(p = realloc(s->tok, (size_t)cap * sizeof *s->tok))) return -1;
        if (s->need & TB_NEED_TOK) s->tok = p;
        if ((s->need & TB_NEED_LIST) && !(p = realloc(s->loff, (size_t)(cap + 1) * sizeof *s->loff))) return -1;
        if (s->need & TB_NEED_LIST) s->loff = p;
    }
    for (int i = 0; i < T->nfeat && t == 0; i++) {
        tb_feat *f = &T->feat[i];
        if (f->kind != TB_LABEL && f->kind != TB_WEIGHT) continue;
        float *l = realloc(f->lab, (size_t)cap * sizeof *l);
        if (!l) return -1;
        f->lab = l;
        uint8_t *pr = realloc(f->present, (size_t)cap);
        if (!pr) return -1;
        f->present = pr;
    }
    long *l = realloc(T->tab[t].line, (size_t)cap * sizeof *l);   /* rows' lines: messages, row_line */
    if (!l) return -1;
    T->tab[t].line = l;
    T->tab[t].cap = cap;
    return 0;
}

int tb_label_value(tb_data *T, tb_feat *f, const char *s, size_t n, float *v, int *present,
                   char *why, size_t nwhy)
{
    const char *col = T->src[f->src].name;
    double x;
    *present = 1;
    *v = 0;
    if (f->kind == TB_WEIGHT) {
        if (tb_parse_number(s, n, &x) < 0 || x < 0 || x > FLT_MAX) {
            snprintf(why, nwhy, "weight column \"%.60s\" is \"%.40s\"; a sample weight is a number "
                     ">= 0", col, s);
            return -1;
        }
        *v = (float)x;
        return 0;
    }
    if (tb_is_missing(T, s, n) && !f->nmv && !f->npos) {
        if (*f->mask || T->mode == TS_OPEN_PREDICT) { *present = 0; return 0; }
        snprintf(why, nwhy, "label column \"%.60s\" is empty or missing (\"%.20s\"); declare a mask "
                 "(labels = %s(mask:NAME)) to train this task on the rows that have one", col, s,
                 f->field);
        return -1;
    }
    for (int k = 0; k < f->nmv; k++)
        if (strlen(f->mkey[k]) == n && !memcmp(f->mkey[k], s, n)) { *v = (float)f->mval[k]; return 0; }
    for (int k = 0; k < f->npos; k++)
        if (strlen(f->pos[k]) == n && !memcmp(f->pos[k], s, n)) { *v = 1; return 0; }
    for (int k = 0; k < f->nneg; k++)
        if (strlen(f->neg[k]) == n && !memcmp(f->neg[k], s, n)) return 0;
    if ((f->nmv || f->npos) && tb_is_missing(T, s, n) && (*f->mask || T->mode == TS_OPEN_PREDICT)) {
        *present = 0;                            /* a missing word: masked, not a negative */
        return 0;
    }
    if (f->npos && !f->nneg) return 0;
    if (f->nmv || f->npos) {
        snprintf(why, nwhy, "label column \"%.60s\" is \"%.40s\", which its %s does not list; add "
                 "it there%s", col, s, f->nmv ? "map:" : "positive: and negative: values",
                 *f->mask ? "" : " or declare a mask to leave such rows out of the task");
        return -1;
    }
    if (tb_parse_number(s, n, &x) < 0 || fabs(x) > FLT_MAX) {
        snprintf(why, nwhy, "label column \"%.60s\" is \"%.40s\", not a number; map words to numbers "
                 "with map:WORD:1 or positive:WORD", col, s);
        return -1;
    }
    if (!isnan(f->threshold)) x = x >= f->threshold;
    else if (!f->regression && x != 0 && x != 1) {
        snprintf(why, nwhy, "label column \"%.60s\" is %.40s; a binary label is 0 or 1: derive it "
                 "with threshold:X, or declare the label regression", col, s);
        return -1;
    }
    *v = (float)x;
    return 0;
}

/* What every row of a table reads, listed once before its rows (a row then visits neither
 * the other tables' sources nor the features that are not labels: tb_feat is large). */
typedef struct tb_plan {
    int nsrc, nlab, nlist;
    int *src;                  /* the sources of the table found in its file */
    int *lab;                  /* the main file's label and weight features */
    int *list;                 /* the sources of multi-valued cells */
    int *buf;
} tb_plan;

static int plan_rows(const tb_data *T, int t, tb_plan *P)
{
    memset(P, 0, sizeof *P);
    if (!(P->buf = malloc((size_t)(2 * T->nsrc + T->nfeat + 1) * sizeof *P->buf))) return -1;
    P->src = P->buf;
    P->list = P->src + T->nsrc;
    P->lab = P->list + T->nsrc;
    for (int i = 0; i < T->nsrc; i++) {
        if (T->src[i].table != t) continue;
        if (T->src[i].col >= 0) P->src[P->nsrc++] = i;
        if (T->src[i].need & TB_NEED_LIST) P->list[P->nlist++] = i;
    }
    for (int i = 0; i < T->nfeat && t == 0; i++)
        if (T->feat[i].kind == TB_LABEL || T->feat[i].kind == TB_WEIGHT) P->lab[P->nlab++] = i;
    return 0;
}

/* One record's fields into row r of table t; -1 a bad row (why), -2 out of memory. */
static int parse_row(tb_data *T, int t, const tb_plan *P, char **f, size_t *fl, int nf, long r,
                     char *why, size_t nwhy)
{
    tb_table *tab = &T->tab[t];
    if (nf != tab->ncol) {
        snprintf(why, nwhy, "expected %d fields separated by \"%s\", found %d", tab->ncol,
                 !strcmp(tab->sep, "\t") ? "\\t" : tab->sep, nf);
        return -1;
    }
    for (int j = 0; j < P->nsrc; j++) {
        int i = P->src[j];
        tb_src *s = &T->src[i];
        const char *v = f[s->col];
        size_t n = fl[s->col];
        if (s->need & (TB_NEED_NUM | TB_NEED_TIME)) {
            double x = NAN;
            int ok = tb_parse_number(v, n, &x) == 0, miss = !ok && tb_is_missing(T, v, n);
            if (miss && (!s->missing_ok || (s->need & TB_NEED_TIME))) {
                if (s->need & TB_NEED_TIME)
                    snprintf(why, nwhy, "column \"%.60s\" is missing (\"%.20s\"); the time column "
                             "needs a number on every row", s->name, v);
                else
                    snprintf(why, nwhy, "column \"%.60s\" is missing (\"%.20s\"); give its dense "
                             "column a fill value, e.g. %.60s(missing:mean) or missing:0", s->name, v,
                             s->name);
                return -1;
            }
            if (!miss && (!ok || ((s->need & TB_NEED_NUM) && fabs(x) > FLT_MAX))) {
                snprintf(why, nwhy, "column \"%.60s\" is \"%.40s\", %s", s->name, v,
                         ok ? "beyond the float range (+-3.4e38)" : "not a number");
                return -1;
            }
            if (s->need & TB_NEED_NUM) TB_NUM(s, r) = (float)x;
            if (s->need & TB_NEED_TIME) s->time[r] = x;
        }
        if (s->need & TB_NEED_TOK) {
            const tb_feat *hf = s->direct ? &T->feat[s->direct - 1] : NULL;
            int32_t id = hf ? (int32_t)(tb_hash(v, n, hf->seed) % (uint64_t)hf->buckets) : tb_intern(T, i, v, n);
            if (id < 0) return -2;
            TB_TOK(s, r) = id;
            if ((s->need & TB_NEED_SPLIT) && strcasecmp(v, "train") && strcasecmp(v, "valid") &&
                strcasecmp(v, "validation") && strcasecmp(v, "test")) {
                snprintf(why, nwhy, "split column \"%.60s\" is \"%.40s\"; it must say train, valid "
                         "or test", s->name, v);
                return -1;
            }
        }
        if (s->need & TB_NEED_LIST) {
            size_t k = 0, sl = strlen(s->list_sep);
            int64_t at = s->lused;
            while (k < n) {
                const char *q = strstr(v + k, s->list_sep);
                size_t end = q ? (size_t)(q - v) : n, a = k, b = end;
                while (a < b && isspace((unsigned char)v[a])) a++;
                while (b > a && isspace((unsigned char)v[b - 1])) b--;
                if (b > a) {
                    if (at == s->lcap) {
                        int64_t cap = s->lcap ? 2 * s->lcap : 1024;
                        int32_t *ids = realloc(s->lids, (size_t)cap * sizeof *ids);
                        if (!ids) return -2;
                        s->lids = ids;
                        s->lcap = cap;
                    }
                    int32_t id = tb_intern(T, i, v + a, b - a);
                    if (id < 0) return -2;
                    s->lids[at++] = id;
                }
                k = q ? end + sl : n;
            }
            s->loff[r + 1] = at;     /* s->lused moves only when the row is kept */
        }
    }
    for (int j = 0; j < P->nlab; j++) {
        tb_feat *ft = &T->feat[P->lab[j]];
        int col = T->src[ft->src].col, present = 0;
        if (col < 0) { ft->lab[r] = 0; ft->present[r] = 0; continue; }
        if (ft->ids_of >= 0) continue;           /* numbered once the vocabulary exists */
        if (tb_label_value(T, ft, f[col], fl[col], &ft->lab[r], &present, why, nwhy) < 0) return -1;
        ft->present[r] = (uint8_t)present;
    }
    return 0;
}

/* The [data] key that names source i, for messages. */
static const char *who(const tb_data *T, int i)
{
    for (int k = 0; k < T->nfeat; k++)
        if (T->feat[k].src == i) return tb_kind_key[T->feat[k].kind];
    return i == T->user_src ? "user" : i == T->item_src ? "item" : i == T->time_src ? "time"
         : i == T->split_src ? "split_column" : "tables";
}

/* Finds each source column of table t among the file's columns. */
static int resolve(tb_data *T, int t, const ts_cfg *cfg, ts_err *e)
{
    tb_table *tab = &T->tab[t];
    for (int i = 0; i < T->nsrc; i++) {
        tb_src *s = &T->src[i];
        if (s->table != t) continue;
        int c = 0, best = 0;
        while (c < tab->ncol && strcmp(tab->colname[c], s->name)) c++;
        if (c < tab->ncol) { s->col = c; continue; }
        if (s->optional) { s->col = -1; continue; }
        size_t bd = (size_t)-1;
        for (int k = 0; k < tab->ncol; k++) {   /* the nearest name: longest common prefix, then length */
            size_t p = 0;
            while (tab->colname[k][p] && tab->colname[k][p] == s->name[p]) p++;
            size_t d = strlen(tab->colname[k]) + strlen(s->name) - 2 * p;
            if (d < bd) { bd = d; best = k; }
        }
        return ts_fail(e, "%s: [data] %s names column \"%s\", which %s does not have (its columns: "
                       "\"%s\"%s%s%s, ...; nearest \"%s\"); columns are named by the header line, "
                       "or by columns = (or 0, 1, ...) when header = false",
                       ts_cfg_where(cfg, who(T, i)), who(T, i), s->name, tab->path,
                       tab->ncol ? tab->colname[0] : "", tab->ncol > 1 ? ", \"" : "",
                       tab->ncol > 1 ? tab->colname[1] : "", tab->ncol > 1 ? "\"" : "",
                       tab->ncol ? tab->colname[best] : "");
    }
    return 0;
}

/* A record that could not be read: FILE:LINE: why, unless why names them already (the line
 * reader's read errors do). */
static int record_fail(const tb_reader *R, const char *why, ts_err *e)
{
    if (R->why_named) return ts_fail(e, "%s", why);
    return ts_fail(e, "%s:%ld: %s", R->t->path, R->line, why);
}

static int read_table(tb_data *T, int t, const ts_cfg *cfg, int head, ts_err *e);

int tb_read_table(tb_data *T, int t, const ts_cfg *cfg, ts_err *e)
{
    return read_table(T, t, cfg, 0, e);
}

/* stream = true: the main file's columns from tab[0].path (the first file), and a one-row
 * table that tb_parse_line fills. */
int tb_read_head(tb_data *T, const ts_cfg *cfg, ts_err *e)
{
    if (read_table(T, 0, cfg, 1, e) < 0) return -1;
    if (!(T->line_plan = malloc(sizeof(tb_plan))) || plan_rows(T, 0, T->line_plan) < 0 ||
        grow(T, 0, 1) < 0)
        return ts_fail(e, "table: out of memory");
    for (int i = 0; i < T->nsrc; i++)
        if (T->src[i].need & TB_NEED_LIST) T->src[i].loff[0] = 0;
    return 0;
}

void tb_free_head(tb_data *T)
{
    if (T->line_plan) free(((tb_plan *)T->line_plan)->buf);
    free(T->line_plan);
    T->line_plan = NULL;
    if (T->line_reader_p) {
        T->line_reader_p->in = NULL;
        tb_record_free(T->line_reader_p);
    }
    free(T->line_reader_p);
    T->line_reader_p = NULL;
}

/* stream = true: one line into row 0 of the main table's columns, as the in-memory reader
 * parses a record: 0, -1 a bad row (why), -2 out of memory or an error (why). */
int tb_parse_line(tb_data *T, char *line, size_t len, long lineno, char *why, size_t nwhy)
{
    if (!T->line_reader_p && !(T->line_reader_p = calloc(1, sizeof *T->line_reader_p))) {
        snprintf(why, nwhy, "out of memory");
        return -2;
    }
    tb_reader *R = T->line_reader_p;
    int nf = 0, rc;
    if (!R->t) {
        tb_table *tab = &T->tab[0];
        R->t = tab;
        R->seplen = strlen(tab->sep);
        R->trim_space = tab->trim && !strchr(tab->sep, ' ');
        R->trim_tab = tab->trim && !strchr(tab->sep, '\t');
    }
    if ((rc = tb_record_line(R, line, len, lineno, &nf, why, nwhy)) < 0) return rc;
    for (int i = 0; i < T->nsrc; i++)
        if (T->src[i].need & TB_NEED_LIST) T->src[i].lused = 0;
    return parse_row(T, 0, T->line_plan, R->f, R->flen, nf, 0, why, nwhy);
}

static int read_table(tb_data *T, int t, const ts_cfg *cfg, int head, ts_err *e)
{
    tb_table *tab = &T->tab[t];
    tb_reader R = {0};
    tb_plan P = {0};
    ts_err sub;
    char why[640];
    int nf = 0, rc = -1, have = 0;
    R.t = tab;
    R.seplen = strlen(tab->sep);
    R.trim_space = tab->trim && !strchr(tab->sep, ' ');
    R.trim_tab = tab->trim && !strchr(tab->sep, '\t');
    if (!(R.in = ts_lines_open(tab->path, &sub)))
        return ts_fail(e, "%s; set %s to an existing file", sub.msg,
                       t ? "the table's path: in [data] tables" : "[data] path");
    int r = tb_record_next(&R, &nf, why, sizeof why);
    if (r == 0) { ts_fail(e, "%s: the file is empty; it needs %sone row of values", tab->path,
                          tab->header ? "a header line and at least " : "at least "); goto done; }
    if (r < 0) { record_fail(&R, why, e); goto done; }
    tab->ncol = tab->header ? nf : tab->nuser ? tab->nuser : nf;
    if (!(tab->colname = calloc((size_t)tab->ncol, sizeof *tab->colname))) goto oom;
    for (int c = 0; c < tab->ncol; c++) {
        char num[24];
        snprintf(num, sizeof num, "%d", c);
        if (!(tab->colname[c] = strdup(tab->header ? R.f[c] : tab->nuser ? tab->username[c] : num)))
            goto oom;
        for (int k = 0; k < c; k++)
            if (!strcmp(tab->colname[k], tab->colname[c])) {
                ts_fail(e, "%s:%ld: the %s names column \"%s\" twice; rename one", tab->path,
                        tab->header ? R.line : 0L, tab->header ? "header" : "columns key",
                        tab->colname[c]);
                goto done;
            }
    }
    if (resolve(T, t, cfg, e) < 0) goto done;
    if (head) { rc = 0; goto done; }
    if (plan_rows(T, t, &P) < 0) goto oom;
    if (grow(T, t, 1024) < 0) goto oom;
    for (int i = 0; i < T->nsrc; i++)
        if (T->src[i].table == t && (T->src[i].need & TB_NEED_LIST)) T->src[i].loff[0] = 0;
    have = !tab->header;
    for (;;) {
        if (!have && (r = tb_record_next(&R, &nf, why, sizeof why)) == 0) break;
        have = 0;
        if (r == -2) { record_fail(&R, why, e); goto done; }
        if (tab->n == tab->cap && grow(T, t, 2 * tab->cap) < 0) goto oom;
        int pr = r < 0 ? -1 : parse_row(T, t, &P, R.f, R.flen, nf, tab->n, why, sizeof why);
        if (pr == -2) goto oom;
        if (pr == 0 && t > 0) {                          /* a side table: one row per key */
            int32_t k = T->src[tab->key_src].tok[tab->n];
            if (k >= tab->key_cap) {
                long cap = tab->key_cap ? 2 * tab->key_cap : 1024;
                while (cap <= k) cap *= 2;
                int32_t *kr = realloc(tab->key_row, (size_t)cap * sizeof *kr);
                if (!kr) goto oom;
                for (long j = tab->key_cap; j < cap; j++) kr[j] = -1;
                tab->key_row = kr;
                tab->key_cap = cap;
            }
            if (tab->key_row[k] >= 0) {
                snprintf(why, sizeof why, "key \"%.60s\" was the key of line %ld already; a side "
                         "table holds one row per key", R.f[T->src[tab->key_src].col],
                         tab->line[tab->key_row[k]]);
                pr = -1;
            } else {
                tab->key_row[k] = (int32_t)tab->n;
                tab->line[tab->n] = R.line;
            }
        }
        if (pr == 0 && t == 0) tab->line[tab->n] = R.line;
        if (pr < 0 && !T->skip_bad) {
            ts_fail(e, "%s:%ld: %s; fix or delete the row, or set skip_bad_rows = true in [data]",
                    tab->path, R.line, why);
            goto done;
        }
        if (pr < 0) { T->skipped++; continue; }
        for (int k = 0; k < P.nlist; k++)
            T->src[P.list[k]].lused = T->src[P.list[k]].loff[tab->n + 1];
        if (++tab->n > INT32_MAX - 1) { ts_fail(e, "%s: more than %d rows", tab->path, INT32_MAX - 1); goto done; }
    }
    for (int i = 0; i < T->nsrc; i++)            /* the intern caches served their purpose */
        if (T->src[i].table == t) {
            free(T->src[i].cache); free(T->src[i].cs);
            T->src[i].cache = NULL; T->src[i].cs = NULL;
            T->src[i].cmask = T->src[i].cn = 0;
        }
    if (tab->n == 0)
        ts_fail(e, "%s: no data rows (%ld bad rows skipped); the file needs %sat least one row of "
                "values", tab->path, T->skipped, tab->header ? "a header line and " : "");
    else rc = 0;
    goto done;
oom:
    ts_fail(e, "%s: out of memory after %ld rows", tab->path, tab->n);
done:
    tb_record_free(&R);
    free(P.buf);
    return rc;
}
