/* table_state.c — the table reader's fitted state as text, and back: what a trained run needs
 * to read new rows exactly as it read its training rows (dense clip bounds, fill values and
 * scaling; vocabularies in id order; fitted sequence lengths; the item popularity negative
 * sampling draws from), with each feature's canonical declaration so a state is refused, with
 * a sentence, when the experiment's [data] keys no longer match it.
 *
 *   tessera-table-state 1
 *   features 3
 *   feature dense field=age column="age" table= log=0 scale=0 fill=0
 *   dense -inf inf 38.5 38.5 12.25          clip low, clip high, fill, shift, divisor (%.17g)
 *   feature categorical field=city column="city" table= min_count=1 order=frequency
 *   vocab 2                                 then one value a line, ids 1, 2, ... (\\ \n \r escaped)
 *   Paris
 *   Oslo
 *   feature label field=clicked column="clicked" table= binary
 *   none
 *   popularity 0                            then that many counts, 8 a line
 *   end
 *
 * Not a general serialisation format: only this reader writes and reads it. */
#include "table.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct outbuf { char *p; size_t n, cap; int oom; } outbuf;

static void put(outbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(outbuf *b, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !b->oom; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->n + (size_t)k) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
}

/* A vocabulary word on one line: backslash, newline and carriage return escaped. */
static void put_word(outbuf *b, const char *w)
{
    char tmp[256];
    size_t k = 0;
    for (; *w; w++) {
        if (k + 3 >= sizeof tmp) { tmp[k] = 0; put(b, "%s", tmp); k = 0; }
        if (*w == '\\' || *w == '\n' || *w == '\r') {
            tmp[k++] = '\\';
            tmp[k++] = *w == '\n' ? 'n' : *w == '\r' ? 'r' : '\\';
        } else tmp[k++] = *w;
    }
    tmp[k] = 0;
    put(b, "%s\n", tmp);
}

int tb_state_write(tb_data *T, char **text, size_t *n, ts_err *e)
{
    outbuf b = {0};
    put(&b, "%s\nfeatures %d\n", TB_STATE_MAGIC, T->nfeat);
    for (int i = 0; i < T->nfeat; i++) {
        const tb_feat *f = &T->feat[i];
        put(&b, "feature %s\n", f->sig);
        if (f->kind == TB_DENSE)
            put(&b, "dense %.17g %.17g %.17g %.17g %.17g\n", f->clip_lo, f->clip_hi, f->fill,
                f->shift, f->div);
        else if (f->kind >= TB_CAT && f->kind <= TB_SEQ) {
            if (f->hash) put(&b, "hash\n");
            else if (f->vocab_of != i) put(&b, "shared\n");
            else {
                int32_t nw = ts_strtab_count(T->strs, T->nsrc + i);
                put(&b, "vocab %d\n", (int)nw);
                for (int32_t w = 0; w < nw; w++) put_word(&b, ts_strtab_str(T->strs, T->nsrc + i, w));
            }
            if (f->kind == TB_SEQ) put(&b, "length %d\n", f->maxlen);
        } else put(&b, "none\n");
    }
    long np = T->item_feat >= 0 && T->pop ? T->feat[T->item_feat].nvocab : 0;
    put(&b, "popularity %ld\n", np);
    for (long i = 0; i < np; i++) put(&b, "%.17g%s", T->pop[i], i % 8 == 7 || i == np - 1 ? "\n" : " ");
    put(&b, "end\n");
    if (b.oom) { free(b.p); return ts_fail(e, "table: out of memory writing the fitted state"); }
    *text = b.p;
    *n = b.n;
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------------- */
typedef struct inbuf { const char *p, *end; long line; char *cur; size_t cap; } inbuf;

/* The next line (unescaped when word is set) in in->cur; NULL at the end. */
static const char *get(inbuf *in, int word)
{
    if (in->p >= in->end) return NULL;
    const char *nl = memchr(in->p, '\n', (size_t)(in->end - in->p));
    size_t n = nl ? (size_t)(nl - in->p) : (size_t)(in->end - in->p);
    if (n + 1 > in->cap) {
        char *c = realloc(in->cur, n + 1);
        if (!c) return NULL;
        in->cur = c;
        in->cap = n + 1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in->p[i];
        if (word && c == '\\' && i + 1 < n) {
            c = in->p[++i];
            c = c == 'n' ? '\n' : c == 'r' ? '\r' : c;
        }
        in->cur[k++] = c;
    }
    in->cur[k] = 0;
    in->p += n + (nl ? 1 : 0);
    in->line++;
    return in->cur;
}

int tb_state_read(tb_data *T, const char *text, size_t n, ts_err *e)
{
    inbuf in = {text, text + n, 0, NULL, 0};
    const char *l = get(&in, 0);
    int rc = -1, nf;
    char tail;
    if (!l || strcmp(l, TB_STATE_MAGIC)) {
        ts_fail(e, "the fitted state does not start with \"%s\" (it starts \"%.40s\"): it was "
                "written by another reader or version; apply the run with the [data] type it was "
                "trained with", TB_STATE_MAGIC, l ? l : "");
        goto out;
    }
    if (!(l = get(&in, 0)) || sscanf(l, "features %d%c", &nf, &tail) != 1 || nf != T->nfeat) {
        ts_fail(e, "the fitted state, line %ld: \"%.40s\", but [data] declares %d features: the "
                "experiment's [data] keys changed since the run was trained; apply the run with "
                "the [data] keys it was trained with", in.line, l ? l : "", T->nfeat);
        goto out;
    }
    for (int i = 0; i < T->nfeat; i++) {
        tb_feat *f = &T->feat[i];
        if (!(l = get(&in, 0)) || strncmp(l, "feature ", 8) || strcmp(l + 8, f->sig)) {
            ts_fail(e, "the fitted state, line %ld: it has `%.200s` where [data] declares `feature "
                    "%.200s`: the experiment's [data] keys changed since the run was trained; apply "
                    "the run with the [data] keys it was trained with", in.line, l ? l : "(the end)",
                    f->sig);
            goto out;
        }
        if (!(l = get(&in, 0))) goto cut;
        int ok = 0, nw = 0;
        if (f->kind == TB_DENSE)
            ok = sscanf(l, "dense %lf %lf %lf %lf %lf%c", &f->clip_lo, &f->clip_hi, &f->fill,
                        &f->shift, &f->div, &tail) == 5 && f->div != 0 && !isnan(f->shift);
        else if (f->kind >= TB_CAT && f->kind <= TB_SEQ && f->hash) ok = !strcmp(l, "hash");
        else if (f->kind >= TB_CAT && f->kind <= TB_SEQ && f->vocab_of != i) ok = !strcmp(l, "shared");
        else if (f->kind >= TB_CAT && f->kind <= TB_SEQ) {
            ok = sscanf(l, "vocab %d%c", &nw, &tail) == 1 && nw >= 0 && nw < INT32_MAX - 1;
            for (int w = 0; ok && w < nw; w++) {
                if (!(l = get(&in, 1))) goto cut;
                int32_t id = ts_strtab_id(T->strs, T->nsrc + i, l, strlen(l), 1);
                if (id == -2) { ts_fail(e, "table: out of memory"); goto out; }
                if (id != w) {
                    ts_fail(e, "the fitted state, line %ld: the value \"%.60s\" is in the vocabulary "
                            "of %s twice; the state file is damaged: use the run's own "
                            "data_state.txt", in.line, l, f->field);
                    goto out;
                }
            }
            f->nvocab = nw + (f->no_oov ? 0 : 1);
        } else ok = !strcmp(l, "none");
        if (ok && f->kind == TB_SEQ) {
            int len;
            ok = (l = get(&in, 0)) && sscanf(l, "length %d%c", &len, &tail) == 1 && len >= 1 && len <= 100000;
            if (ok) f->maxlen = len;
        }
        if (!ok) {
            ts_fail(e, "the fitted state, line %ld: \"%.60s\" is not what a %s field's state holds; "
                    "the state file is damaged: use the run's own data_state.txt", in.line,
                    l ? l : "", tb_kind_key[f->kind]);
            goto out;
        }
    }
    long np;
    if (!(l = get(&in, 0)) || sscanf(l, "popularity %ld%c", &np, &tail) != 1 || np < 0 ||
        np != (T->item_feat >= 0 ? T->feat[T->item_feat].nvocab : 0)) {
        ts_fail(e, "the fitted state, line %ld: \"%.60s\" does not give the popularity of the %s "
                "items (item =); apply the run with the [data] keys it was trained "
                "with", in.line, l ? l : "", T->item_feat >= 0 ? "vocabulary's" : "(no)");
        goto out;
    }
    if (np && !(T->pop = calloc((size_t)np, sizeof *T->pop))) { ts_fail(e, "table: out of memory"); goto out; }
    for (long i = 0; i < np;) {
        if (!(l = get(&in, 0))) goto cut;
        char *s = in.cur, *end;
        while (i < np) {
            double v = strtod(s, &end);
            if (end == s) break;
            if (!(v >= 0) || isinf(v)) { s = end; i = -1; break; }
            T->pop[i++] = v;
            s = end;
        }
        if (i < 0 || *s) { ts_fail(e, "the fitted state, line %ld: a popularity that is not a count", in.line); goto out; }
    }
    if (!(l = get(&in, 0)) || strcmp(l, "end")) goto cut;
    rc = 0;
    goto out;
cut:
    ts_fail(e, "the fitted state ends early or holds something else at line %ld (\"%.60s\"); the "
            "state file is damaged: use the run's own data_state.txt", in.line, l ? l : "");
out:
    free(in.cur);
    return rc;
}

/* The canonical declaration of a feature: the fitted state must hold the same one. */
int tb_feat_sig(tb_data *T, tb_feat *f)
{
    static const char *const kn[] = {"dense", "categorical", "multi", "sequence", "label",
                                     "weight", "id"};
    static const char *const order_name[] = {"frequency", "first", "value"};
    const tb_src *s = &T->src[f->src];
    int n = snprintf(f->sig, sizeof f->sig, "%s field=%s column=\"%s\" table=%s", kn[f->kind],
                     f->field, s->name, T->tab[s->table].name);
    size_t m = sizeof f->sig;
#define SIG(...) do { if (n >= 0 && (size_t)n < m) n += snprintf(f->sig + n, m - (size_t)n, __VA_ARGS__); } while (0)
    if (f->kind == TB_DENSE) {
        SIG(" log=%d scale=%d fill=%d", f->log, f->scale, f->fill_kind);
        if (f->example_age) SIG(" example_age");
        if (f->fill_kind == TB_FILL_VALUE) SIG(":%.17g", f->fill);
        if (!isnan(f->q_lo) || !isnan(f->q_hi)) SIG(" clip=p%.17g:p%.17g", f->q_lo, f->q_hi);
        else if (isfinite(f->clip_lo) || isfinite(f->clip_hi)) SIG(" clip=%.17g:%.17g", f->clip_lo, f->clip_hi);
    } else if (f->kind == TB_CAT || f->kind == TB_MULTI || f->kind == TB_SEQ) {
        if (f->hash) SIG(" hash=%lld seed=%llu", (long long)f->buckets, (unsigned long long)f->seed);
        else if (*f->vocab_name) SIG(" vocab=%s", f->vocab_name);
        else SIG(" min_count=%ld order=%s", f->min_count, order_name[f->order]);
        if (f->ties_value) SIG(" ties=value");
        if (f->rows_all) SIG(" vocab_rows=all");
        if (f->no_oov) SIG(" oov=none");
        if (*f->over_name) SIG(" over=%s", f->over_name);
        if (f->kind != TB_CAT && !f->history) SIG(" sep=\"%s\"", s->list_sep);
        if (f->kind == TB_SEQ) SIG(" max=%s%d out=%s%s", f->maxlen_auto ? "auto" : "",
                                   f->maxlen_auto ? 0 : f->maxlen, f->as_bag ? "bag" : "ids",
                                   f->history ? " history" : "");
    } else if (f->kind == TB_LABEL) {
        SIG(" %s", *f->ids_name ? "ids" : f->regression ? "regression" : "binary");
        if (!isnan(f->threshold)) SIG(" threshold=%.17g", f->threshold);
        for (int k = 0; k < f->npos; k++) SIG(" positive=\"%s\"", f->pos[k]);
        for (int k = 0; k < f->nneg; k++) SIG(" negative=\"%s\"", f->neg[k]);
        for (int k = 0; k < f->nmv; k++) SIG(" map=\"%s\":%.17g", f->mkey[k], f->mval[k]);
        if (*f->ids_name) SIG(" ids=%s", f->ids_name);
        if (*f->mask) SIG(" mask=%s", f->mask);
        if (*f->times_name) SIG(" times=%s", f->times_name);
    }
#undef SIG
    if (n < 0 || (size_t)n >= m) snprintf(f->sig + m - 4, 4, "...");
    return 0;
}
