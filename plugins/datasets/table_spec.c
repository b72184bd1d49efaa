/* table_spec.c — the table reader's declarations: the list syntax of its [data] keys
 * (NAME(option:arg option ...), names quoted with "..." when they hold spaces), and one feature
 * (a dense, categorical, multi, sequence, label, weight or id column) from its declaration, with
 * a sentence for every mistake. The [data] keys as a whole are table_declare.c's; it reads no
 * data file (table_parse.c) and fits nothing (table_columns.c). */
#include "table.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the list syntax ------------------------------------------------------------------------- */
static int is_sep(char c) { return c == ',' || isspace((unsigned char)c); }

/* A quoted ("" doubles a quote) or bare word at *p; bare words stop at white space, commas,
 * parentheses and the characters in stop. Returns a malloc'ed copy or NULL with why. */
static char *word(const char **p, const char *stop, char *why, size_t nwhy)
{
    const char *s = *p;
    size_t n = 0, cap = strlen(s) + 1;
    char *out = malloc(cap);
    if (!out) { snprintf(why, nwhy, "out of memory"); return NULL; }
    if (*s == '"') {
        for (s++;; s++) {
            if (!*s) {
                free(out);
                snprintf(why, nwhy, "a quoted name is never closed: add the closing \"");
                return NULL;
            }
            if (*s == '"' && s[1] == '"') { out[n++] = '"'; s++; continue; }
            if (*s == '"') { s++; break; }
            out[n++] = *s;
        }
    } else {
        while (*s && !is_sep(*s) && *s != '(' && *s != ')' && *s != '"' && !strchr(stop, *s))
            out[n++] = *s++;
    }
    out[n] = 0;
    *p = s;
    return out;
}

static int add_arg(tb_opt *o, char *a)
{
    char **na = realloc(o->args, (size_t)(o->nargs + 1) * sizeof *na);
    if (!na) { free(a); return -1; }
    o->args = na;
    o->args[o->nargs++] = a;
    return 0;
}

int tb_specs_parse(const char *text, tb_specs *out, char *why, size_t nwhy)
{
    memset(out, 0, sizeof *out);
    const char *p = text ? text : "";
    for (;;) {
        while (*p && is_sep(*p)) p++;
        if (!*p) return 0;
        if (*p == '(' || *p == ')') {
            snprintf(why, nwhy, "'%c' where a name was expected", *p);
            goto fail;
        }
        tb_spec *ns = realloc(out->s, (size_t)(out->n + 1) * sizeof *ns);
        if (!ns) { snprintf(why, nwhy, "out of memory"); goto fail; }
        out->s = ns;
        tb_spec *sp = &out->s[out->n++];
        memset(sp, 0, sizeof *sp);
        if (!(sp->name = word(&p, "", why, nwhy))) goto fail;
        if (!*sp->name) { snprintf(why, nwhy, "an empty name (\"\")"); goto fail; }
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (*q != '(') continue;
        p = q + 1;
        for (;;) {
            while (*p && is_sep(*p)) p++;
            if (*p == ')') { p++; break; }
            if (!*p) {
                snprintf(why, nwhy, "the options of \"%s\" have no closing ')'", sp->name);
                goto fail;
            }
            tb_opt *no = realloc(sp->opt, (size_t)(sp->nopt + 1) * sizeof *no);
            if (!no) { snprintf(why, nwhy, "out of memory"); goto fail; }
            sp->opt = no;
            tb_opt *o = &sp->opt[sp->nopt++];
            memset(o, 0, sizeof *o);
            if (!(o->key = word(&p, ":", why, nwhy))) goto fail;
            if (!*o->key) {
                snprintf(why, nwhy, "unexpected '%c' in the options of \"%s\"", *p, sp->name);
                goto fail;
            }
            while (*p == ':') {
                p++;
                char *a = word(&p, ":", why, nwhy);
                if (!a || add_arg(o, a) < 0) {
                    if (a) snprintf(why, nwhy, "out of memory");
                    goto fail;
                }
            }
            if (*p && !is_sep(*p) && *p != ')') {
                snprintf(why, nwhy, "unexpected '%c' after option %s of \"%s\"", *p, o->key, sp->name);
                goto fail;
            }
        }
    }
fail:
    tb_specs_free(out);
    return -1;
}

void tb_specs_free(tb_specs *l)
{
    for (int i = 0; i < l->n; i++) {
        for (int k = 0; k < l->s[i].nopt; k++) {
            for (int a = 0; a < l->s[i].opt[k].nargs; a++) free(l->s[i].opt[k].args[a]);
            free(l->s[i].opt[k].args);
            free(l->s[i].opt[k].key);
        }
        free(l->s[i].opt);
        free(l->s[i].name);
    }
    free(l->s);
    memset(l, 0, sizeof *l);
}

const tb_opt *tb_opt_find(const tb_spec *s, const char *key)
{
    for (int i = 0; i < s->nopt; i++)
        if (!strcmp(s->opt[i].key, key)) return &s->opt[i];
    return NULL;
}

/* A field name from a column name: letters, digits and _ kept, the rest become _. */
static void field_name(const char *col, char *out)
{
    size_t n = 0;
    if (isdigit((unsigned char)col[0])) out[n++] = 'c';
    for (const char *s = col; *s && n < TS_NAME_MAX - 1; s++) {
        char c = isalnum((unsigned char)*s) ? *s : '_';
        if (c == '_' && (n == 0 || out[n - 1] == '_')) continue;
        out[n++] = c;
    }
    while (n > 1 && out[n - 1] == '_') n--;
    if (n == 0) out[n++] = 'c';
    out[n] = 0;
}

/* Options each kind accepts, for the "unknown option" sentence. */
static const char *const kind_opts[] = {
    [TB_DENSE] = "as table log clip missing scale example_age",
    [TB_CAT] = "as table min_count hash seed vocab order ties vocab_rows oov",
    [TB_MULTI] = "as table sep min_count hash seed vocab order ties vocab_rows oov over",
    [TB_SEQ] = "as table sep max out min_count hash seed vocab order ties vocab_rows oov history",
    [TB_LABEL] = "as regression threshold positive negative map mask ids times",
    [TB_WEIGHT] = "as",
    [TB_ID] = "as"};
const char *const tb_kind_key[] = {"dense", "categorical", "multi", "sequence", "labels",
                                       "weight", "id"};

static int has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = strstr(list, w); p; p = strstr(p + 1, w))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n])) return 1;
    return 0;
}

static int num_arg(const ts_cfg *cfg, const char *key, const tb_spec *sp, const tb_opt *o, int i,
                   double *v, ts_err *e)
{
    if (o->nargs <= i || tb_parse_number(o->args[i], strlen(o->args[i]), v) < 0)
        return ts_fail(e, "%s: [data] %s: \"%s\" option %s needs a number%s, got \"%s\"",
                       ts_cfg_where(cfg, key), key, sp->name, o->key, i ? " as its second value" : "",
                       o->nargs > i ? o->args[i] : "");
    return 0;
}

static int word_list(const tb_opt *o, char ***out, int *n)
{
    *n = o->nargs;
    *out = calloc((size_t)(o->nargs ? o->nargs : 1), sizeof **out);
    if (!*out) return -1;
    for (int i = 0; i < o->nargs; i++)
        if (!((*out)[i] = strdup(o->args[i]))) return -1;
    return 0;
}

static int table_of(tb_data *T, const ts_cfg *cfg, const char *key, const tb_spec *sp, ts_err *e)
{
    const tb_opt *o = tb_opt_find(sp, "table");
    if (!o) return 0;
    for (int t = 1; t < T->ntab && o->nargs == 1; t++)
        if (!strcmp(T->tab[t].name, o->args[0])) return t;
    return ts_fail(e, "%s: [data] %s: \"%s\" names table:%s, which [data] tables does not "
                   "declare; declare it there (tables = NAME(path:FILE key:COLUMN))",
                   ts_cfg_where(cfg, key), key, sp->name, o->nargs ? o->args[0] : "");
}

/* dense NAME(example_age): the YouTube DNN's example age from a time column, read as a double
 * (timestamps need more than a float's 24 bits); it takes no other transform. */
static int example_age(tb_data *T, const ts_cfg *cfg, const tb_spec *sp, tb_feat *f, ts_err *e)
{
    static const char *const other[] = {"log", "clip", "missing", "scale"};
    for (int k = 0; k < 4; k++)
        if (tb_opt_find(sp, other[k]))
            return ts_fail(e, "%s: [data] dense: \"%s\" example_age is scaled by its own rule "
                           "((t_max - t) / (t_max - t_min) over the training examples, 0 elsewhere); "
                           "remove %s", ts_cfg_where(cfg, "dense"), sp->name, other[k]);
    if (T->src[f->src].table)
        return ts_fail(e, "%s: [data] dense: \"%s\" example_age reads a time column of the main "
                       "file, not of a side table", ts_cfg_where(cfg, "dense"), sp->name);
    if (tb_opt_find(sp, "example_age")->nargs)
        return ts_fail(e, "%s: [data] dense: \"%s\" example_age takes no value",
                       ts_cfg_where(cfg, "dense"), sp->name);
    f->example_age = 1;
    f->scale = TB_SCALE_NONE;
    T->src[f->src].need |= TB_NEED_TIME;
    return tb_feat_sig(T, f);
}

/* A vocabulary's own options: order:frequency|first|value, ties:first|value, vocab_rows:train|all,
 * oov:bucket|none, and over:FIELD (a side column gathered over a sequence's values). */
static int vocab_options(tb_data *T, const ts_cfg *cfg, const char *key, const tb_spec *sp,
                         tb_feat *f, int table, ts_err *e)
{
    static const char *const name[] = {"order", "ties", "vocab_rows", "oov"};
    static const char *const choices[] = {"frequency|first|value", "first|value", "train|all",
                                          "bucket|none"};
    int v[4] = {f->order, 0, 0, 0}, given = 0;
    for (int k = 0; k < 4; k++) {
        const tb_opt *o = tb_opt_find(sp, name[k]);
        if (!o) continue;
        given = 1;
        const char *a = o->nargs == 1 ? o->args[0] : "", *c = choices[k];
        int i = 0, found = -1;
        for (const char *p = c; *p; i++) {
            size_t n = strcspn(p, "|");
            if (strlen(a) == n && !strncmp(p, a, n)) found = i;
            p += n + (p[n] == '|');
        }
        if (found < 0)
            return ts_fail(e, "%s: [data] %s: \"%s\" %s is \"%s\"; use %s:%s",
                           ts_cfg_where(cfg, key), key, sp->name, name[k], a, name[k], c);
        v[k] = found;
    }
    if (given && (f->hash || *f->vocab_name))
        return ts_fail(e, "%s: [data] %s: \"%s\" order, ties, vocab_rows and oov shape a vocabulary "
                       "of its own; with %s the column has none: remove them", ts_cfg_where(cfg, key),
                       key, sp->name, f->hash ? "hash:" : "vocab:");
    if (v[1] && v[0] != TB_ORDER_FREQUENCY)
        return ts_fail(e, "%s: [data] %s: \"%s\" ties:value breaks ties of the frequency order; "
                       "the column is numbered by %s", ts_cfg_where(cfg, key), key, sp->name,
                       v[0] == TB_ORDER_FIRST ? "first appearance" : "value");
    if (v[3] && table && f->kind == TB_CAT)
        return ts_fail(e, "%s: [data] categorical: \"%s\" comes from a side table, whose missing "
                       "keys take the out-of-vocabulary id; remove oov:none", ts_cfg_where(cfg, key),
                       sp->name);
    f->order = v[0];
    f->ties_value = v[1];
    f->rows_all = v[2];
    f->no_oov = v[3];
    const tb_opt *o = tb_opt_find(sp, "over");
    if (!o) return 0;
    if (o->nargs != 1 || !*o->args[0] || strlen(o->args[0]) >= TS_NAME_MAX || !table)
        return ts_fail(e, "%s: [data] multi: \"%s\" over needs a side table's column (table:NAME) "
                       "and the sequence whose values are that table's keys (over:FIELD)",
                       ts_cfg_where(cfg, key), sp->name);
    snprintf(f->over_name, sizeof f->over_name, "%s", o->args[0]);
    return 0;
}

/* One declared feature of a kind from its spec. */
int tb_add_feature(tb_data *T, const ts_cfg *cfg, tb_kind kind, const tb_spec *sp, ts_err *e)
{
    const char *key = tb_kind_key[kind];
    for (int i = 0; i < sp->nopt; i++)
        if (!has_word(kind_opts[kind], sp->opt[i].key))
            return ts_fail(e, "%s: [data] %s: \"%s\" has the option %s, which a %s column does not "
                           "take; it takes: %s", ts_cfg_where(cfg, key), key, sp->name,
                           sp->opt[i].key, key, kind_opts[kind]);
    int table = table_of(T, cfg, key, sp, e);
    if (table < 0) return -1;
    if (T->nfeat == T->featcap) {
        int cap = T->featcap ? 2 * T->featcap : 16;
        tb_feat *nf = realloc(T->feat, (size_t)cap * sizeof *nf);
        if (!nf) return ts_fail(e, "table: out of memory");
        T->feat = nf;
        T->featcap = cap;
    }
    tb_feat *f = &T->feat[T->nfeat];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->group = -1;
    f->own_field = 1;
    f->vocab_of = T->nfeat;
    f->clip_lo = -INFINITY;
    f->clip_hi = INFINITY;
    f->q_lo = f->q_hi = NAN;
    f->threshold = NAN;
    f->ids_of = -1;
    f->times_of = -1;
    f->min_count = T->default_min_count;
    f->maxlen = 0;
    f->over = -1;
    f->order = T->vocab_first ? TB_ORDER_FIRST : TB_ORDER_FREQUENCY;
    if ((f->src = tb_src_get(T, table, sp->name, e)) < 0) return -1;
    T->nfeat++;          /* from here on tb_close frees what f holds */
    const tb_opt *o = tb_opt_find(sp, "as");
    if (o && (o->nargs != 1 || !*o->args[0] || strlen(o->args[0]) >= TS_NAME_MAX))
        return ts_fail(e, "%s: [data] %s: \"%s\" option as needs one field name (as:NAME)",
                       ts_cfg_where(cfg, key), key, sp->name);
    if (o) snprintf(f->field, sizeof f->field, "%s", o->args[0]);
    else field_name(sp->name, f->field);
    tb_src *s = &T->src[f->src];
    if (table && (kind == TB_LABEL || kind == TB_WEIGHT || kind == TB_ID))
        return ts_fail(e, "%s: [data] %s: \"%s\" comes from a side table; labels, weights and ids "
                       "come from the main file", ts_cfg_where(cfg, key), key, sp->name);
    double v;
    if (kind == TB_DENSE && tb_opt_find(sp, "example_age")) return example_age(T, cfg, sp, f, e);
    if (kind == TB_DENSE) {
        s->need |= TB_NEED_NUM;
        f->log = tb_opt_find(sp, "log") != NULL;
        if ((o = tb_opt_find(sp, "clip"))) {
            if (o->nargs != 2)
                return ts_fail(e, "%s: [data] dense: \"%s\" clip needs two bounds, clip:LOW:HIGH "
                               "(numbers, or percentiles of the training rows like p1:p99)",
                               ts_cfg_where(cfg, key), sp->name);
            for (int k = 0; k < 2; k++) {
                double *q = k ? &f->q_hi : &f->q_lo, *b = k ? &f->clip_hi : &f->clip_lo;
                if (o->args[k][0] == 'p') {
                    if (tb_parse_number(o->args[k] + 1, strlen(o->args[k] + 1), q) < 0 || *q < 0 || *q > 100)
                        return ts_fail(e, "%s: [data] dense: \"%s\" clip bound \"%s\" is not a "
                                       "percentile p0..p100", ts_cfg_where(cfg, key), sp->name,
                                       o->args[k]);
                } else if (num_arg(cfg, key, sp, o, k, b, e) < 0) return -1;
            }
        }
        if ((o = tb_opt_find(sp, "missing"))) {
            s->missing_ok = 1;
            if (o->nargs == 1 && !strcmp(o->args[0], "mean")) f->fill_kind = TB_FILL_MEAN;
            else if (num_arg(cfg, key, sp, o, 0, &f->fill, e) < 0) return -1;
            else f->fill_kind = TB_FILL_VALUE;
        }
        if ((o = tb_opt_find(sp, "scale"))) {
            const char *a = o->nargs == 1 ? o->args[0] : "";
            f->scale = !strcmp(a, "standard") ? TB_SCALE_STANDARD : !strcmp(a, "none") ? TB_SCALE_NONE
                     : !strcmp(a, "minmax") ? TB_SCALE_MINMAX : -1;
            if (f->scale < 0)
                return ts_fail(e, "%s: [data] dense: \"%s\" scale is \"%s\"; use scale:standard "
                               "(the default), scale:minmax or scale:none", ts_cfg_where(cfg, key),
                               sp->name, a);
        }
    } else if (kind == TB_CAT || kind == TB_MULTI || kind == TB_SEQ) {
        f->history = kind == TB_SEQ && tb_opt_find(sp, "history");
        if (f->history && table)
            return ts_fail(e, "%s: [data] sequence: \"%s\" history is made of the main file's rows; "
                           "it cannot come from a side table", ts_cfg_where(cfg, key), sp->name);
        if (kind == TB_CAT || f->history) s->need |= TB_NEED_TOK;
        else {
            const char *sep = (o = tb_opt_find(sp, "sep")) && o->nargs == 1 ? o->args[0] : "|";
            if (!*sep || strlen(sep) >= sizeof s->list_sep)
                return ts_fail(e, "%s: [data] %s: \"%s\" sep needs the separator of its values "
                               "(sep:| or sep:\";\")", ts_cfg_where(cfg, key), key, sp->name);
            if ((s->need & TB_NEED_LIST) && strcmp(s->list_sep, sep))
                return ts_fail(e, "%s: [data] %s: column \"%s\" is read with two value separators "
                               "(\"%s\" and \"%s\"); use one", ts_cfg_where(cfg, key), key,
                               sp->name, s->list_sep, sep);
            snprintf(s->list_sep, sizeof s->list_sep, "%s", sep);
            s->need |= TB_NEED_LIST;
        }
        if ((o = tb_opt_find(sp, "min_count"))) {
            if (num_arg(cfg, key, sp, o, 0, &v, e) < 0) return -1;
            if (v < 1 || v != floor(v) || v > 1e12)
                return ts_fail(e, "%s: [data] %s: \"%s\" min_count must be a whole number >= 1",
                               ts_cfg_where(cfg, key), key, sp->name);
            f->min_count = (long)v;
        }
        if ((o = tb_opt_find(sp, "hash"))) {
            if (num_arg(cfg, key, sp, o, 0, &v, e) < 0) return -1;
            if (v < 1 || v != floor(v) || v > INT32_MAX - 1)
                return ts_fail(e, "%s: [data] %s: \"%s\" hash needs a bucket count from 1 to %d",
                               ts_cfg_where(cfg, key), key, sp->name, INT32_MAX - 1);
            f->hash = 1;
            f->buckets = (int64_t)v;
        }
        if ((o = tb_opt_find(sp, "vocab"))) {
            if (o->nargs != 1 || !*o->args[0] || strlen(o->args[0]) >= TS_NAME_MAX || f->hash)
                return ts_fail(e, "%s: [data] %s: \"%s\" vocab needs the field whose vocabulary it "
                               "shares (vocab:FIELD), and no hash", ts_cfg_where(cfg, key), key,
                               sp->name);
            snprintf(f->vocab_name, sizeof f->vocab_name, "%s", o->args[0]);
        }
        if ((o = tb_opt_find(sp, "seed"))) {
            if (num_arg(cfg, key, sp, o, 0, &v, e) < 0) return -1;
            f->seed = (uint64_t)(int64_t)v;
        }
        if (vocab_options(T, cfg, key, sp, f, table, e) < 0) return -1;
        if (kind == TB_SEQ) {
            f->maxlen = 50;
            if ((o = tb_opt_find(sp, "max"))) {
                if (o->nargs == 1 && !strcmp(o->args[0], "auto")) f->maxlen_auto = 1;
                else if (num_arg(cfg, key, sp, o, 0, &v, e) < 0) return -1;
                else if (v < 1 || v > 100000 || v != floor(v))
                    return ts_fail(e, "%s: [data] sequence: \"%s\" max must be 1..100000 or auto",
                                   ts_cfg_where(cfg, key), sp->name);
                else f->maxlen = (int)v;
            }
            if (f->maxlen_auto && (f->hash || tb_opt_find(sp, "vocab") || f->history))
                return ts_fail(e, "%s: [data] sequence: \"%s\" max:auto is fitted with its own "
                               "vocabulary from a list column; give a number with hash:, vocab: or "
                               "history",
                               ts_cfg_where(cfg, key), sp->name);
            if ((o = tb_opt_find(sp, "out"))) {
                const char *a = o->nargs == 1 ? o->args[0] : "";
                if (strcmp(a, "ids") && strcmp(a, "bag"))
                    return ts_fail(e, "%s: [data] sequence: \"%s\" out is \"%s\"; use out:ids "
                                   "(I32 (B, max) with lengths) or out:bag (a bag per row)",
                                   ts_cfg_where(cfg, key), sp->name, a);
                f->as_bag = !strcmp(a, "bag");
            }
        }
    } else if (kind == TB_LABEL) {
        f->regression = tb_opt_find(sp, "regression") != NULL;
        if ((o = tb_opt_find(sp, "threshold")) && num_arg(cfg, key, sp, o, 0, &f->threshold, e) < 0)
            return -1;
        if ((o = tb_opt_find(sp, "positive")) && word_list(o, &f->pos, &f->npos) < 0)
            return ts_fail(e, "table: out of memory");
        if ((o = tb_opt_find(sp, "negative")) && word_list(o, &f->neg, &f->nneg) < 0)
            return ts_fail(e, "table: out of memory");
        if ((o = tb_opt_find(sp, "map"))) {
            if (o->nargs < 2 || o->nargs % 2)
                return ts_fail(e, "%s: [data] labels: \"%s\" map needs pairs map:VALUE:NUMBER:VALUE:"
                               "NUMBER (quote a value with spaces)", ts_cfg_where(cfg, key), sp->name);
            f->nmv = o->nargs / 2;
            f->mkey = calloc((size_t)f->nmv, sizeof *f->mkey);
            f->mval = calloc((size_t)f->nmv, sizeof *f->mval);
            if (!f->mkey || !f->mval) return ts_fail(e, "table: out of memory");
            for (int k = 0; k < f->nmv; k++) {
                if (!(f->mkey[k] = strdup(o->args[2 * k]))) return ts_fail(e, "table: out of memory");
                if (num_arg(cfg, key, sp, o, 2 * k + 1, &f->mval[k], e) < 0) return -1;
            }
        }
        if (f->npos && f->nmv)
            return ts_fail(e, "%s: [data] labels: \"%s\" has both positive: and map:; use one",
                           ts_cfg_where(cfg, key), sp->name);
        if (f->nneg && !f->npos)
            return ts_fail(e, "%s: [data] labels: \"%s\" has negative: without positive:; list the "
                           "positive values too", ts_cfg_where(cfg, key), sp->name);
        if ((o = tb_opt_find(sp, "ids"))) {
            if (o->nargs != 1 || !*o->args[0] || strlen(o->args[0]) >= TS_NAME_MAX || f->npos ||
                f->nmv || f->regression || !isnan(f->threshold))
                return ts_fail(e, "%s: [data] labels: \"%s\" ids needs the field whose vocabulary "
                               "numbers the label (ids:FIELD), and no other way of reading it",
                               ts_cfg_where(cfg, key), sp->name);
            snprintf(f->ids_name, sizeof f->ids_name, "%s", o->args[0]);
            s->need |= TB_NEED_TOK;
        }
        if ((o = tb_opt_find(sp, "mask"))) {
            if (o->nargs != 1 || !*o->args[0] || strlen(o->args[0]) >= TS_NAME_MAX)
                return ts_fail(e, "%s: [data] labels: \"%s\" mask needs a field name (mask:NAME)",
                               ts_cfg_where(cfg, key), sp->name);
            snprintf(f->mask, sizeof f->mask, "%s", o->args[0]);
        }
        if ((o = tb_opt_find(sp, "times"))) {
            if (o->nargs != 1 || !*o->args[0] || strlen(o->args[0]) >= TS_NAME_MAX || *f->ids_name)
                return ts_fail(e, "%s: [data] labels: \"%s\" times needs another label's field "
                               "name (times:FIELD: this label times that one, e.g. a conversion "
                               "times its click), and no ids:", ts_cfg_where(cfg, key), sp->name);
            snprintf(f->times_name, sizeof f->times_name, "%s", o->args[0]);
        }
        s->optional = T->mode == TS_OPEN_PREDICT;
    } else if (kind == TB_ID) {
        s->need |= TB_NEED_TOK;
    }
    return tb_feat_sig(T, f);
}
