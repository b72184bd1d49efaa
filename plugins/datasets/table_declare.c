/* table_declare.c — the table reader's [data] keys turned into its plan: the main file and the
 * side tables (path, separator, header, encoding), the features of every kind, the groups,
 * the split rule and negative sampling, each mistake refused with FILE:LINE and the fix.
 * It reads no data (table_parse.c) and fits nothing (table_columns.c). */
#include "table.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A separator from its INI text: a name (tab, comma...) or the text itself, quotes removed. */
static int separator(const char *v, char *out, size_t n)
{
    static const char *const named[][2] = {{"tab", "\t"}, {"\\t", "\t"}, {"space", " "},
        {"comma", ","}, {"semicolon", ";"}, {"pipe", "|"}, {"colon", ":"}};
    if (!v) v = "";
    size_t len = strlen(v);
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (!strcmp(v, named[i][0])) v = named[i][1], len = 1;
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') v++, len -= 2;
    if (len == 0 || len >= n) return -1;
    memcpy(out, v, len);
    out[len] = 0;
    return 0;
}

/* One column name from a key holding a single name (quoted when it has spaces); "" when unset. */
static int one_name(const ts_cfg *cfg, const char *key, char *out, size_t n, ts_err *e)
{
    tb_specs l;
    char why[160];
    out[0] = 0;
    if (tb_specs_parse(ts_cfg_str(cfg, key), &l, why, sizeof why) < 0)
        return ts_fail(e, "%s: [data] %s: %s", ts_cfg_where(cfg, key), key, why);
    int rc = 0;
    if (l.n > 1 || (l.n == 1 && (l.s[0].nopt || strlen(l.s[0].name) >= n)))
        rc = ts_fail(e, "%s: [data] %s takes one column name (quote it if it has spaces)",
                     ts_cfg_where(cfg, key), key);
    else if (l.n == 1) snprintf(out, n, "%s", l.s[0].name);
    tb_specs_free(&l);
    return rc;
}

static int bool_arg(const tb_opt *o, int *v)
{
    if (!o) return 0;
    const char *a = o->nargs == 1 ? o->args[0] : "";
    if (!strcmp(a, "true") || !strcmp(a, "yes") || !strcmp(a, "1")) *v = 1;
    else if (!strcmp(a, "false") || !strcmp(a, "no") || !strcmp(a, "0")) *v = 0;
    else return -1;
    return 0;
}

/* The side tables: NAME(path:FILE key:COLUMN on:COLUMN sep:S header:B encoding:E columns:a:b). */
static int side_tables(tb_data *T, ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    tb_specs l;
    char why[160];
    const char *w = "tables";
    if (tb_specs_parse(ts_cfg_str(cfg, w), &l, why, sizeof why) < 0)
        return ts_fail(e, "%s: [data] tables: %s", ts_cfg_where(cfg, w), why);
    int rc = -1;
    if (l.n > TB_MAX_TABLES - 1) {
        ts_fail(e, "%s: [data] tables: at most %d side tables", ts_cfg_where(cfg, w), TB_MAX_TABLES - 1);
        goto out;
    }
    for (int i = 0; i < l.n; i++) {
        const tb_spec *sp = &l.s[i];
        tb_table *t = &T->tab[T->ntab];
        for (int k = 0; k < sp->nopt; k++) {
            char pad[TS_NAME_MAX + 2];
            snprintf(pad, sizeof pad, " %s ", sp->opt[k].key);
            if (!strstr(" path key on sep header encoding columns quoting trim ", pad)) {
                ts_fail(e, "%s: [data] tables: \"%s\" has the option %s; a table takes path key on "
                        "sep header encoding columns quoting trim", ts_cfg_where(cfg, w), sp->name,
                        sp->opt[k].key);
                goto out;
            }
        }
        for (int k = 1; k < T->ntab; k++)
            if (!strcmp(T->tab[k].name, sp->name)) {
                ts_fail(e, "%s: [data] tables: \"%s\" is declared twice", ts_cfg_where(cfg, w), sp->name);
                goto out;
            }
        const tb_opt *p = tb_opt_find(sp, "path"), *k = tb_opt_find(sp, "key"),
                     *on = tb_opt_find(sp, "on"), *o;
        if (strlen(sp->name) >= TS_NAME_MAX || !p || p->nargs != 1 || !k || k->nargs != 1 ||
            (on && on->nargs != 1)) {
            ts_fail(e, "%s: [data] tables: \"%s\" needs path:FILE and key:COLUMN (its key column), "
                    "and on:COLUMN when the main file's column has another name",
                    ts_cfg_where(cfg, w), sp->name);
            goto out;
        }
        T->ntab++;
        snprintf(t->name, sizeof t->name, "%s", sp->name);
        /* the path as any data path, else beside the main file */
        ts_ctx_path(D->ctx, p->args[0], t->path, sizeof t->path);
        if (access(t->path, R_OK) != 0 && p->args[0][0] != '/') {
            const char *slash = strrchr(T->tab[0].path, '/');
            char beside[TB_PATH_MAX];
            snprintf(beside, sizeof beside, "%.*s/%s", slash ? (int)(slash - T->tab[0].path) : 1,
                     slash ? T->tab[0].path : ".", p->args[0]);
            if (access(beside, R_OK) == 0) snprintf(t->path, sizeof t->path, "%s", beside);
        }
        snprintf(t->sep, sizeof t->sep, "%s", T->tab[0].sep);
        t->header = 1;
        t->quoting = T->tab[0].quoting;
        t->trim = T->tab[0].trim;
        t->latin1 = T->tab[0].latin1;
        if ((o = tb_opt_find(sp, "sep")) &&
            (o->nargs != 1 || separator(o->args[0], t->sep, sizeof t->sep) < 0)) {
            ts_fail(e, "%s: [data] tables: \"%s\" sep needs one separator (sep:tab, sep:\"::\")",
                    ts_cfg_where(cfg, w), sp->name);
            goto out;
        }
        if (bool_arg(tb_opt_find(sp, "header"), &t->header) < 0 ||
            bool_arg(tb_opt_find(sp, "quoting"), &t->quoting) < 0 ||
            bool_arg(tb_opt_find(sp, "trim"), &t->trim) < 0) {
            ts_fail(e, "%s: [data] tables: \"%s\": header, quoting and trim take true or false",
                    ts_cfg_where(cfg, w), sp->name);
            goto out;
        }
        if ((o = tb_opt_find(sp, "encoding"))) {
            const char *a = o->nargs == 1 ? o->args[0] : "";
            if (strcmp(a, "utf-8") && strcmp(a, "latin-1")) {
                ts_fail(e, "%s: [data] tables: \"%s\" encoding is utf-8 or latin-1, not \"%s\"",
                        ts_cfg_where(cfg, w), sp->name, a);
                goto out;
            }
            t->latin1 = !strcmp(a, "latin-1");
        }
        if ((o = tb_opt_find(sp, "columns")) && o->nargs) {
            if (!(t->username = calloc((size_t)o->nargs, sizeof *t->username))) goto oom;
            for (int c = 0; c < o->nargs; c++)
                if (!(t->username[t->nuser++] = strdup(o->args[c]))) goto oom;
        }
        if ((t->key_src = tb_src_get(T, T->ntab - 1, k->args[0], e)) < 0 ||
            (t->on_src = tb_src_get(T, 0, on ? on->args[0] : k->args[0], e)) < 0)
            goto out;
        T->src[t->key_src].need |= TB_NEED_TOK;
        T->src[t->on_src].need |= TB_NEED_TOK;
    }
    rc = 0;
    goto out;
oom:
    ts_fail(e, "table: out of memory");
out:
    tb_specs_free(&l);
    return rc;
}

static int features(tb_data *T, const ts_cfg *cfg, ts_err *e)
{
    for (int kind = TB_DENSE; kind <= TB_ID; kind++) {
        const char *key = tb_kind_key[kind];
        tb_specs l;
        char why[160];
        if (tb_specs_parse(ts_cfg_str(cfg, key), &l, why, sizeof why) < 0)
            return ts_fail(e, "%s: [data] %s: %s", ts_cfg_where(cfg, key), key, why);
        int rc = 0;
        if ((kind == TB_WEIGHT || kind == TB_ID) && l.n > 1)
            rc = ts_fail(e, "%s: [data] %s names %d columns; it takes one", ts_cfg_where(cfg, key),
                         key, l.n);
        for (int i = 0; i < l.n && !rc; i++) rc = tb_add_feature(T, cfg, (tb_kind)kind, &l.s[i], e);
        tb_specs_free(&l);
        if (rc) return -1;
    }
    int nin = 0;
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        nin += f->kind <= TB_SEQ;
        if (f->kind == TB_ID) T->id_feat = i;
        T->has_history |= f->history;
        if (*f->ids_name) {                       /* a label numbered by a field's vocabulary */
            int o = 0;
            while (o < T->nfeat && strcmp(T->feat[o].field, f->ids_name)) o++;
            if (o == T->nfeat || T->feat[o].hash || T->feat[o].kind < TB_CAT || T->feat[o].kind > TB_SEQ)
                return ts_fail(e, "%s: [data] labels: %s has ids:%s, which is not a categorical, "
                               "multi or sequence field with a vocabulary",
                               ts_cfg_where(cfg, "labels"), f->field, f->ids_name);
            f->ids_of = o;
        }
        if (*f->times_name) {                     /* a label times another label */
            int o = 0;
            while (o < T->nfeat && strcmp(T->feat[o].field, f->times_name)) o++;
            if (o == T->nfeat || o == i || T->feat[o].kind != TB_LABEL || *T->feat[o].times_name ||
                *T->feat[o].ids_name)
                return ts_fail(e, "%s: [data] labels: %s has times:%s, which is not another label "
                               "of `labels =` (nor one with times: or ids: itself)",
                               ts_cfg_where(cfg, "labels"), f->field, f->times_name);
            if (*T->feat[o].mask && !*f->mask)
                return ts_fail(e, "%s: [data] labels: %s has times:%s, whose label may be missing "
                               "(mask:%s); give %s a mask too (mask:NAME), for the rows where the "
                               "product is unknown", ts_cfg_where(cfg, "labels"), f->field,
                               f->times_name, T->feat[o].mask, f->field);
            f->times_of = o;
        }
        if (*f->over_name) {                      /* a side column gathered over a sequence */
            int o = 0;
            while (o < T->nfeat && strcmp(T->feat[o].field, f->over_name)) o++;
            if (o == T->nfeat || o == i || (T->feat[o].kind != TB_MULTI && T->feat[o].kind != TB_SEQ) ||
                T->src[T->feat[o].src].table || *T->feat[o].over_name)
                return ts_fail(e, "%s: [data] multi: %s has over:%s, which is not a multi or sequence "
                               "field of the main file (a history, or a list of the side table's keys)",
                               ts_cfg_where(cfg, "multi"), f->field, f->over_name);
            f->over = o;
        }
        if (!*f->vocab_name) continue;
        int o = 0;
        while (o < T->nfeat && strcmp(T->feat[o].field, f->vocab_name)) o++;
        if (o == T->nfeat || o == i || T->feat[o].hash || *T->feat[o].vocab_name ||
            T->feat[o].kind < TB_CAT || T->feat[o].kind > TB_SEQ)
            return ts_fail(e, "%s: [data] %s: field %s shares vocab:%s, which is not a categorical, "
                           "multi or sequence field with a vocabulary of its own",
                           ts_cfg_where(cfg, tb_kind_key[f->kind]), tb_kind_key[f->kind], f->field,
                           f->vocab_name);
        f->vocab_of = o;
    }
    for (int i = 0; i < T->nfeat; i++)          /* a label's vocabulary is its field's owner's */
        if (T->feat[i].ids_of >= 0) T->feat[i].vocab_of = T->feat[T->feat[i].ids_of].vocab_of;
    if (!nin)
        return ts_fail(e, "%s: [data] declares no feature column; list some under dense =, "
                       "categorical =, multi = or sequence =", ts_cfg_where(cfg, "dense"));
    return 0;
}

static int groups(tb_data *T, const ts_cfg *cfg, ts_err *e)
{
    tb_specs l;
    char why[160];
    const char *w = "groups";
    if (tb_specs_parse(ts_cfg_str(cfg, w), &l, why, sizeof why) < 0)
        return ts_fail(e, "%s: [data] groups: %s", ts_cfg_where(cfg, w), why);
    int rc = -1;
    if (l.n > TS_MAX_FIELDS) { ts_fail(e, "%s: [data] groups: too many", ts_cfg_where(cfg, w)); goto out; }
    for (int i = 0; i < l.n; i++) {
        tb_group *g = &T->group[T->ngroup++];
        snprintf(g->name, sizeof g->name, "%s", l.s[i].name);
        if (!l.s[i].nopt || l.s[i].nopt > TS_MAX_FIELDS || strlen(l.s[i].name) >= TS_NAME_MAX) {
            ts_fail(e, "%s: [data] groups: \"%s\" needs its member fields in parentheses, "
                    "NAME(field field ...)", ts_cfg_where(cfg, w), l.s[i].name);
            goto out;
        }
        g->kind = -1;
        for (int k = 0; k < l.s[i].nopt; k++) {
            const char *m = l.s[i].opt[k].key;
            int f = 0;
            while (f < T->nfeat && strcmp(T->feat[f].field, m)) f++;
            if (f == T->nfeat || T->feat[f].kind > TB_MULTI || T->feat[f].group >= 0 ||
                T->feat[f].example_age) {
                ts_fail(e, "%s: [data] groups: \"%s\" lists %s, which is %s", ts_cfg_where(cfg, w),
                        g->name, m, f == T->nfeat ? "no declared field" : T->feat[f].group >= 0 ?
                        "in another group already" : T->feat[f].example_age ? "an example_age "
                        "(0 outside the training split: a field of its own)" :
                        "not a dense, categorical or multi field");
                goto out;
            }
            int kind = T->feat[f].kind == TB_DENSE ? TB_DENSE : TB_CAT;
            if (g->kind >= 0 && (g->kind == TB_DENSE) != (kind == TB_DENSE)) {
                ts_fail(e, "%s: [data] groups: \"%s\" mixes dense and categorical fields; a group "
                        "is one tensor: make two groups", ts_cfg_where(cfg, w), g->name);
                goto out;
            }
            if (g->kind != TB_MULTI) g->kind = T->feat[f].kind == TB_MULTI ? TB_MULTI : kind;
            T->feat[f].group = T->ngroup - 1;
            T->feat[f].own_field = T->column_fields_all;
            g->feat[g->n++] = f;
        }
    }
    rc = 0;
out:
    tb_specs_free(&l);
    return rc;
}

/* Every output name once, and no more fields than a dataset may have. */
static int names_unique(tb_data *T, const ts_cfg *cfg, ts_err *e)
{
    const char *name[4 * TS_MAX_FIELDS];
    int n = 0;
    for (int i = 0; i < T->nfeat && n < 4 * TS_MAX_FIELDS - 2; i++) {
        if (T->feat[i].own_field && T->feat[i].kind != TB_ID) name[n++] = T->feat[i].field;
        if (*T->feat[i].mask) name[n++] = T->feat[i].mask;
    }
    for (int g = 0; g < T->ngroup && n < 4 * TS_MAX_FIELDS; g++) name[n++] = T->group[g].name;
    if (T->neg_declared && n < 4 * TS_MAX_FIELDS) name[n++] = T->implicit;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(name[i], name[j]))
                return ts_fail(e, "%s: [data] two outputs are called %s; rename one with as:NAME "
                               "(or rename the group or mask)", ts_cfg_where(cfg, "dense"), name[i]);
    if (n > TS_MAX_FIELDS)
        return ts_fail(e, "%s: [data] declares %d fields, more than a dataset may have (%d); put "
                       "columns into groups and set column_fields = ungrouped",
                       ts_cfg_where(cfg, "groups"), n, TS_MAX_FIELDS);
    return 0;
}

int tb_declare(tb_data *T, ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    tb_table *m = &T->tab[0];
    T->ntab = 1;
    ts_ctx_path(D->ctx, ts_cfg_str(cfg, "path"), m->path, sizeof m->path);
    int enc = 0, order = 0, cf = 0, split = 0, sampler = 0;
    long v;
    if (ts_cfg_bool(cfg, "header", &m->header, e) || ts_cfg_bool(cfg, "quoting", &m->quoting, e) ||
        ts_cfg_bool(cfg, "trim", &m->trim, e) || ts_cfg_bool(cfg, "skip_bad_rows", &T->skip_bad, e) ||
        ts_cfg_choice(cfg, "encoding", "utf-8|latin-1", &enc, e) ||
        ts_cfg_choice(cfg, "vocab_order", "frequency|first", &order, e) ||
        ts_cfg_choice(cfg, "column_fields", "all|ungrouped", &cf, e) ||
        ts_cfg_choice(cfg, "split", "random|user|time|column", &split, e) ||
        ts_cfg_choice(cfg, "sampler", "uniform|popularity", &sampler, e))
        return -1;
    m->latin1 = enc == 1;
    T->vocab_first = order == 1;
    T->column_fields_all = cf == 0;
    T->split_kind = split;
    T->neg_popularity = sampler == 1;
    if (separator(ts_cfg_str(cfg, "separator"), m->sep, sizeof m->sep) < 0)
        return ts_fail(e, "%s: [data] separator is empty; write it out (, or \"::\") or name it: "
                       "tab, space, comma, semicolon, pipe, colon", ts_cfg_where(cfg, "separator"));
    if (ts_cfg_int(cfg, "min_count", &v, e)) return -1;
    if (v < 1) return ts_fail(e, "%s: [data] min_count must be >= 1", ts_cfg_where(cfg, "min_count"));
    T->default_min_count = v;
    tb_specs l;
    char why[160];
    if (tb_specs_parse(ts_cfg_str(cfg, "columns"), &l, why, sizeof why) < 0)
        return ts_fail(e, "%s: [data] columns: %s", ts_cfg_where(cfg, "columns"), why);
    if (l.n && m->header) {
        tb_specs_free(&l);
        return ts_fail(e, "%s: [data] columns names the columns of a file without a header; with "
                       "header = true the header names them: remove one of the two",
                       ts_cfg_where(cfg, "columns"));
    }
    int want = l.n;
    m->username = calloc((size_t)(l.n ? l.n : 1), sizeof *m->username);
    for (int i = 0; m->username && i < l.n; i++)
        if ((m->username[m->nuser] = strdup(l.s[i].name))) m->nuser++;
    tb_specs_free(&l);
    if (!m->username || m->nuser != want) return ts_fail(e, "table: out of memory");
    if (tb_specs_parse(ts_cfg_str(cfg, "missing_values"), &l, why, sizeof why) < 0)
        return ts_fail(e, "%s: [data] missing_values: %s", ts_cfg_where(cfg, "missing_values"), why);
    want = l.n;
    T->missing = calloc((size_t)(l.n ? l.n : 1), sizeof *T->missing);
    for (int i = 0; T->missing && i < l.n; i++)
        if ((T->missing[T->nmissing] = strdup(l.s[i].name))) T->nmissing++;
    tb_specs_free(&l);
    if (!T->missing || T->nmissing != want) return ts_fail(e, "table: out of memory");

    if (side_tables(T, D, cfg, e) || features(T, cfg, e) || groups(T, cfg, e)) return -1;

    /* splits, users, items, time */
    char user[TS_NAME_MAX * 4], item[TS_NAME_MAX * 4], time[TS_NAME_MAX * 4], scol[TS_NAME_MAX * 4];
    if (one_name(cfg, "user", user, sizeof user, e) || one_name(cfg, "item", item, sizeof item, e) ||
        one_name(cfg, "time", time, sizeof time, e) ||
        one_name(cfg, "split_column", scol, sizeof scol, e))
        return -1;
    double frac[4];
    int nfrac;
    if (ts_cfg_floats(cfg, "split_fractions", frac, 4, &nfrac, e) ||
        ts_cfg_int(cfg, "split_seed", &v, e))
        return -1;
    T->split_seed = (uint64_t)v;
    if (nfrac != 3 || frac[0] < 0 || frac[1] < 0 || frac[2] < 0 ||
        fabs(frac[0] + frac[1] + frac[2] - 1.0) > 1e-6)
        return ts_fail(e, "%s: [data] split_fractions must be three fractions train, valid, test "
                       "that sum to 1, like 0.6, 0.2, 0.2", ts_cfg_where(cfg, "split_fractions"));
    memcpy(T->frac, frac, sizeof T->frac);
    T->split_src = T->user_src = T->item_src = T->time_src = -1;
    int train = T->mode == TS_OPEN_TRAIN;
    static const char *const need_user[] = {"", "split = user", "split = time", ""};
    if (train && (split == TB_SPLIT_USER || split == TB_SPLIT_TIME) && !*user)
        return ts_fail(e, "%s: [data] %s needs user = the column that names the user",
                       ts_cfg_where(cfg, "split"), need_user[split]);
    int rowo = 0;
    if (ts_cfg_int(cfg, "min_history", &v, e) || ts_cfg_choice(cfg, "row_order", "file|user_time", &rowo, e))
        return -1;
    if (v < 0 || v > 100000)
        return ts_fail(e, "%s: [data] min_history must be 0 (every row is an example) to 100000",
                       ts_cfg_where(cfg, "min_history"));
    T->min_history = v;
    T->row_order_user = rowo == 1;
    if ((T->min_history || T->row_order_user) && (!*user || !*time))
        return ts_fail(e, "%s: [data] %s needs user = (whose rows) and time = (their order)",
                       ts_cfg_where(cfg, T->min_history ? "min_history" : "row_order"),
                       T->min_history ? "min_history" : "row_order = user_time");
    T->has_history |= T->min_history > 0 || T->row_order_user;
    if (T->has_history && (!*user || !*time))
        return ts_fail(e, "%s: [data] a history sequence needs user = (whose rows) and time = (their "
                       "order)", ts_cfg_where(cfg, "sequence"));
    if (train && split == TB_SPLIT_TIME && !*time)
        return ts_fail(e, "%s: [data] split = time needs time = the column that orders a user's "
                       "rows (a timestamp or any number)", ts_cfg_where(cfg, "split"));
    if (train && split == TB_SPLIT_COLUMN && !*scol)
        return ts_fail(e, "%s: [data] split = column needs split_column = the column whose values "
                       "are train, valid or test", ts_cfg_where(cfg, "split"));
    if (ts_cfg_int(cfg, "negatives", &v, e)) return -1;
    if (v < 0 || v > 1000)
        return ts_fail(e, "%s: [data] negatives must be 0 (none) to 1000 per positive",
                       ts_cfg_where(cfg, "negatives"));
    int declared = (int)v;   /* predicting samples nothing, but reads the state of a run that did */
    T->negatives = T->mode == TS_OPEN_PREDICT ? 0 : declared;
    T->neg_declared = declared;
    if (ts_cfg_int(cfg, "negative_seed", &v, e)) return -1;
    T->neg_seed = (uint64_t)v;
    snprintf(T->implicit, sizeof T->implicit, "%s", ts_cfg_str(cfg, "implicit_label"));
    if (declared && (!*user || !*item))
        return ts_fail(e, "%s: [data] negatives needs user = and item = (the columns that name the "
                       "user and the item of a row)", ts_cfg_where(cfg, "negatives"));
    if (*user && (train || T->negatives || T->has_history) && (T->user_src = tb_src_get(T, 0, user, e)) < 0)
        return -1;
    if (*item && (T->item_src = tb_src_get(T, 0, item, e)) < 0) return -1;
    if (*time && ((train && split == TB_SPLIT_TIME) || T->has_history) &&
        (T->time_src = tb_src_get(T, 0, time, e)) < 0)
        return -1;
    if (*scol && train && split == TB_SPLIT_COLUMN && (T->split_src = tb_src_get(T, 0, scol, e)) < 0)
        return -1;
    if (T->user_src >= 0) T->src[T->user_src].need |= TB_NEED_TOK;
    if (T->item_src >= 0) T->src[T->item_src].need |= TB_NEED_TOK;
    if (T->time_src >= 0) T->src[T->time_src].need |= TB_NEED_TIME;
    if (T->split_src >= 0) T->src[T->split_src].need |= TB_NEED_SPLIT | TB_NEED_TOK;
    T->item_feat = -1;           /* the item vocabulary: negatives draw from it, aux item_freq */
    for (int i = 0; i < T->nfeat && T->item_feat < 0 && T->item_src >= 0; i++)
        if (T->feat[i].kind == TB_CAT && T->feat[i].src == T->item_src && !T->feat[i].hash &&
            !*T->feat[i].vocab_name)
            T->item_feat = i;
    if (declared && T->item_feat < 0)
        return ts_fail(e, "%s: [data] negatives samples items from the vocabulary of item = %s: "
                       "declare %s under categorical = too (without hash)",
                       ts_cfg_where(cfg, "negatives"), item, item);
    if (names_unique(T, cfg, e) < 0) return -1;
    tb_plan_packing(T);
    return 0;
}
