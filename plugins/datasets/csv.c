/* csv.c — a generic tabular dataset: one delimited text file (plain or .gz) whose columns an
 * experiment names as dense features, categorical features and labels.
 *
 *   [data]
 *   type = csv
 *   path = data/mine.csv
 *   dense = age, hours          -> field `dense`       F32 (B, 2), (v - mean) / std of TRAINING rows
 *   categorical = city, device  -> field `categorical` I32 (B, 2), one id space: column f's ids lie
 *                                  in [offset_f, offset_f + n_f], id offset_f = value unseen in training
 *   labels = clicked, bought    -> fields `clicked`, `bought` F32 (B, 1), the numbers as written
 *
 * Columns are named by the header line, or "0", "1", ... (0-based) when header = false; the
 * INI lists split on commas and spaces, so a column whose name has a space cannot be named. Fields
 * are trimmed of white space and of one pair of surrounding double quotes; a quoted separator is
 * NOT supported (such a row has the wrong field count and is reported). Blank lines are skipped.
 * Splits come from split_seed alone. Aux: "skipped_rows" (1 long), "dense_mean" / "dense_std"
 * (doubles), "categorical_offsets" (ncat + 1 int32: offsets, then vocab).
 * Not for ragged columns (bags of ids, texts): those need their own dataset plugin. */
#include "tessera.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXLIST 1024

typedef struct csvdata {
    int ncol, ndense, ncat, nlab;
    int *dense_col, *cat_col, *lab_col;   /* column index of each named column */
    long n, skipped;
    float *dense;          /* (n, ndense) */
    int32_t *cat;          /* (n, ncat) raw ids, then final ids */
    float *lab;            /* (n, nlab) */
    long *rows[3];
    double *mean, *sd;     /* (ndense) training statistics */
    int32_t *offsets;      /* (ncat + 1) */
    int cap;
    float *b_dense, *b_lab;   /* (cap, ndense), (nlab, cap): one column per label field */
    int32_t *b_cat;           /* (cap, ncat) */
    ts_tensor *f_dense, *f_cat, *f_lab[TS_MAX_FIELDS];
    ts_strtab *dict;       /* (column, text) -> raw id, numbered per column; NULL after indexing */
} csvdata;

/* Trims white space and one pair of surrounding double quotes, in place. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') { s[n - 1] = 0; s++; }
    return s;
}

/* 0 for a number, -1 for text that is not one, -2 for a number beyond float's range (it is
 * stored as a float and would become infinite, and every loss NaN). */
static int parse_num(const char *s, double *v)
{
    char *end;
    if (!*s) return -1;
    *v = strtod(s, &end);
    if (*end || !isfinite(*v)) return -1;
    return fabs(*v) > FLT_MAX ? -2 : 0;
}

/* Levenshtein distance, for "did you mean" hints. */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b), row[TS_NAME_MAX + 1];
    if (lb > TS_NAME_MAX) return 1 << 20;
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Maps the names of one list key onto column indices; a helpful message for an unknown name. */
static int resolve(const ts_cfg *cfg, const char *key, char names[][TS_NAME_MAX], int n,
                   char **head, int ncol, int *owner, int tag, int *out, const char *path, ts_err *e)
{
    for (int i = 0; i < n; i++) {
        int c = 0, best = 0, bd = 1 << 20;
        while (c < ncol && strcmp(head[c], names[i]) != 0) c++;
        if (c == ncol) {
            for (int k = 0; k < ncol; k++) {
                int d = edit_distance(names[i], head[k]);
                if (d < bd) { bd = d; best = k; }
            }
            return ts_fail(e, "%s: [data] %s names column \"%s\", which %s does not have; the "
                           "nearest is \"%s\" (columns are named by the header line, or 0, 1, ... "
                           "with header = false)", ts_cfg_where(cfg, key), key, names[i], path,
                           ncol ? head[best] : "");
        }
        if (owner[c])
            return ts_fail(e, "%s: column \"%s\" is named twice in [data] dense / categorical / "
                           "labels; a column can be one thing only", ts_cfg_where(cfg, key), names[i]);
        owner[c] = tag;
        out[i] = c;
    }
    return 0;
}

static int grow(void **p, size_t bytes)
{
    void *q = realloc(*p, bytes ? bytes : 1);
    if (!q) return -1;
    *p = q;
    return 0;
}

/* Parses one row of split fields into row st->n; a message in why when the row is bad. */
static int parse_row(csvdata *st, char **f, int nf, char *why, size_t nwhy, char **head)
{
    if (nf != st->ncol) {
        snprintf(why, nwhy, "expected %d fields, found %s%d", st->ncol,
                 nf > st->ncol ? "more than " : "", nf > st->ncol ? st->ncol : nf);
        return -1;
    }
    long r = st->n;
    double v;
    for (int i = 0; i < st->ndense + st->nlab; i++) {
        int c = i < st->ndense ? st->dense_col[i] : st->lab_col[i - st->ndense];
        char *s = trim(f[c]);
        int rc = parse_num(s, &v);
        if (rc < 0) {
            snprintf(why, nwhy, "column \"%.60s\" is \"%.40s\", %s", head[c], s,
                     rc == -2 ? "beyond the float range (+-3.4e38)" : "not a number");
            return -1;
        }
        if (i < st->ndense) st->dense[r * st->ndense + i] = (float)v;
        else st->lab[r * st->nlab + i - st->ndense] = (float)v;
    }
    for (int i = 0; i < st->ncat; i++) {
        const char *text = trim(f[st->cat_col[i]]);
        int32_t id = ts_strtab_id(st->dict, i, text, strlen(text), 1);
        if (id < 0) { snprintf(why, nwhy, "out of memory"); return -2; }
        st->cat[r * st->ncat + i] = id;
    }
    return 0;
}

static int read_file(csvdata *st, const ts_cfg *cfg, const char *path, const char *sep, int header,
                     int skip_bad, ts_err *e)
{
    ts_err sub;
    ts_lines *in = ts_lines_open(path, &sub);
    if (!in) return ts_fail(e, "%s; set [data] path (%s) to an existing file", sub.msg,
                            ts_cfg_where(cfg, "path"));
    char *line, why[256], **f = NULL, **head = NULL;
    char (*names)[TS_NAME_MAX] = malloc(MAXLIST * sizeof *names);
    int rc = -1, nf, n;
    long cap = 0;
    size_t len, seplen = strlen(sep);
    const char *key[3] = {"dense", "categorical", "labels"};
    if (!names) goto oom;
    while ((line = ts_lines_next(in, &len))) {
        size_t lead = 0;
        while (lead < len && isspace((unsigned char)line[lead])) lead++;
        if (lead == len) continue;                           /* blank lines carry nothing */
        if (!head) {                                      /* the first line fixes the columns */
            nf = 1;
            for (const char *p = strstr(line, sep); p; p = strstr(p + seplen, sep)) nf++;
            if (!(f = malloc((size_t)(nf + 1) * sizeof *f)) || !(head = calloc((size_t)nf, sizeof *head)))
                goto oom;
            char *copy = header ? NULL : strdup(line);   /* a data line: split a copy of it */
            if (!header && !copy) goto oom;
            st->ncol = nf = ts_split(header ? line : copy, sep, f, nf);
            for (int c = 0; c < nf; c++) {
                char num[24];
                snprintf(num, sizeof num, "%d", c);
                head[c] = strdup(header ? trim(f[c]) : num);
                for (int k = 0; head[c] && k < c; k++)
                    if (strcmp(head[k], head[c]) == 0) {
                        free(copy);
                        rc = ts_fail(e, "%s:%ld: the header names column \"%s\" twice; rename one",
                                     path, ts_lines_lineno(in), head[c]);
                        goto done;
                    }
            }
            free(copy);
            for (int c = 0; c < nf; c++) if (!head[c]) goto oom;
            int *owner = calloc((size_t)nf, sizeof *owner), *cnt[3] = {&st->ndense, &st->ncat, &st->nlab};
            int **cols[3] = {&st->dense_col, &st->cat_col, &st->lab_col};
            if (!owner) goto oom;
            for (int k = 0; k < 3; k++) {
                if (ts_cfg_list(cfg, key[k], names, MAXLIST, &n, e) < 0) { free(owner); goto done; }
                if (k == 2 && n > TS_MAX_FIELDS - 2) {
                    free(owner);
                    rc = ts_fail(e, "%s: at most %d labels", ts_cfg_where(cfg, key[k]), TS_MAX_FIELDS - 2);
                    goto done;
                }
                if (!(*cols[k] = malloc((size_t)(n ? n : 1) * sizeof(int)))) { free(owner); goto oom; }
                if (resolve(cfg, key[k], names, n, head, nf, owner, k + 1, *cols[k], path, e) < 0) {
                    free(owner);
                    goto done;
                }
                *cnt[k] = n;
            }
            free(owner);
            if (!(st->dict = ts_strtab_new())) goto oom;
            if (header) continue;
        }
        if (st->n == cap) {
            cap = cap ? 2 * cap : 1024;   /* doubling: a tiny file costs kilobytes */
            if (grow((void **)&st->dense, (size_t)cap * st->ndense * sizeof(float)) < 0 ||
                grow((void **)&st->cat, (size_t)cap * st->ncat * sizeof(int32_t)) < 0 ||
                grow((void **)&st->lab, (size_t)cap * st->nlab * sizeof(float)) < 0)
                goto oom;
        }
        nf = ts_split(line, sep, f, st->ncol);
        int pr = parse_row(st, f, nf, why, sizeof why, head);
        if (pr == -2) goto oom;
        if (pr < 0 && !skip_bad) {
            rc = ts_fail(e, "%s:%ld: %s; fix or delete the row, or set skip_bad_rows = true in "
                         "[data]", path, ts_lines_lineno(in), why);
            goto done;
        }
        if (pr < 0) st->skipped++;
        else st->n++;
    }
    if (ts_lines_error(in, e) < 0) goto done;
    if (st->n == 0)
        rc = ts_fail(e, "%s: no data rows (%ld bad rows skipped); the file needs %s at least one "
                     "row of values", path, st->skipped, header ? "a header line and" : "");
    else rc = 0;
    goto done;
oom:
    rc = ts_fail(e, "%s: out of memory reading the file", path);
done:
    if (head) for (int c = 0; c < st->ncol; c++) free(head[c]);
    free(head); free(f); free(names);
    ts_lines_close(in);
    return rc;
}

/* Splits rows with split_seed, standardises with training statistics, indexes categories. */
static int prepare(ts_data *D, csvdata *st, const double *frac, uint64_t seed, ts_err *e)
{
    long n = st->n, *perm = malloc((size_t)n * sizeof(long)), at = 0;
    int nd = st->ndense, ncat = st->ncat;
    if (!perm) return ts_fail(e, "csv: out of memory");
    for (long i = 0; i < n; i++) perm[i] = i;
    ts_rng rng;
    ts_rng_seed(&rng, seed);
    ts_rng_shuffle(&rng, perm, n);
    long ntr = (long)(frac[0] * n + 0.5), nva = (long)(frac[1] * n + 0.5);
    if (ntr > n) ntr = n;           /* fractions summing to 1 + 1e-6 may round past n */
    if (ntr + nva > n) nva = n - ntr;
    long cnt[3] = {ntr, nva, n - ntr - nva};
    for (int s = 0; s < 3; s++) {
        D->nrows[s] = cnt[s];
        if (!(st->rows[s] = malloc((size_t)(cnt[s] ? cnt[s] : 1) * sizeof(long)))) break;
        memcpy(st->rows[s], perm + at, (size_t)cnt[s] * sizeof(long));
        at += cnt[s];
    }
    free(perm);
    if (!st->rows[2]) return ts_fail(e, "csv: out of memory");
    if (ntr < 1)
        return ts_fail(e, "csv: the training split of %ld rows is empty; raise its fraction in "
                       "[data] split or add rows", n);
    st->mean = calloc((size_t)nd + 1, sizeof(double));
    st->sd = calloc((size_t)nd + 1, sizeof(double));
    st->offsets = calloc((size_t)ncat + 1, sizeof(int32_t));
    if (!st->mean || !st->sd || !st->offsets) return ts_fail(e, "csv: out of memory");
    for (int c = 0; c < nd; c++) {                  /* training mean and std of each dense column */
        double s1 = 0, s2 = 0;
        for (long i = 0; i < ntr; i++) s1 += st->dense[st->rows[0][i] * nd + c];
        double mu = s1 / ntr;
        for (long i = 0; i < ntr; i++) {
            double d = st->dense[st->rows[0][i] * nd + c] - mu;
            s2 += d * d;
        }
        st->mean[c] = mu;
        st->sd[c] = sqrt(s2 / ntr) > 1e-12 ? sqrt(s2 / ntr) : 1.0;  /* a constant column -> 0 */
    }
    for (long r = 0; r < n; r++)
        for (int c = 0; c < nd; c++) {
            /* A validation or test value can lie so many (small) training standard deviations
             * away that it overflows float: say so rather than train on inf. */
            double z = (st->dense[r * nd + c] - st->mean[c]) / st->sd[c];
            if (fabs(z) > FLT_MAX)
                return ts_fail(e, "csv: column %d (dense) = %g lies %g training standard deviations "
                               "from the training mean %g, beyond the float range; check that "
                               "value", st->dense_col[c], (double)st->dense[r * nd + c], z,
                               st->mean[c]);
            st->dense[r * nd + c] = (float)z;
        }
    for (int a = 0; a < ncat; a++) {                /* local ids 1.. for values seen in training */
        int32_t *map = calloc((size_t)ts_strtab_count(st->dict, a) + 1, sizeof *map), next = 1;
        if (!map) return ts_fail(e, "csv: out of memory");
        for (long i = 0; i < ntr; i++) map[st->cat[st->rows[0][i] * ncat + a]] = 1;
        for (int32_t v = 0, nv = ts_strtab_count(st->dict, a); v < nv; v++) map[v] = map[v] ? next++ : 0;
        st->offsets[a + 1] = st->offsets[a] + next;
        for (long r = 0; r < n; r++) st->cat[r * ncat + a] = st->offsets[a] + map[st->cat[r * ncat + a]];
        free(map);
    }
    ts_strtab_free(st->dict);
    st->dict = NULL;
    return 0;
}

static int ensure_cap(csvdata *st, int n)
{
    if (n <= st->cap) return 0;
    if (grow((void **)&st->b_dense, (size_t)n * st->ndense * sizeof(float)) < 0 ||
        grow((void **)&st->b_cat, (size_t)n * st->ncat * sizeof(int32_t)) < 0 ||
        grow((void **)&st->b_lab, (size_t)n * st->nlab * sizeof(float)) < 0)
        return -1;
    st->cap = n;
    return 0;
}

static void csv_close(ts_data *D)
{
    csvdata *st = D->state;
    if (!st) return;
    ts_strtab_free(st->dict);
    free(st->dense_col); free(st->cat_col); free(st->lab_col);
    free(st->dense); free(st->cat); free(st->lab);
    for (int s = 0; s < 3; s++) free(st->rows[s]);
    free(st->mean); free(st->sd); free(st->offsets);
    free(st->b_dense); free(st->b_lab); free(st->b_cat);
    free(st);
    D->state = NULL;
}

static int csv_open(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    double frac[4];
    int nfrac, skip, header;
    long seed;
    if (ts_cfg_floats(cfg, "split", frac, 4, &nfrac, e) < 0 || ts_cfg_int(cfg, "split_seed", &seed, e) < 0 ||
        ts_cfg_bool(cfg, "skip_bad_rows", &skip, e) < 0 || ts_cfg_bool(cfg, "header", &header, e) < 0)
        return -1;
    if (nfrac != 3 || frac[0] < 0 || frac[1] < 0 || frac[2] < 0 ||
        fabs(frac[0] + frac[1] + frac[2] - 1.0) > 1e-6)
        return ts_fail(e, "%s: [data] split must be three fractions train, valid, test that sum "
                       "to 1, like 0.6, 0.2, 0.2", ts_cfg_where(cfg, "split"));
    /* Names for separators an INI value cannot hold (inih trims spaces and takes " ;" as a comment). */
    static const char *const named[][2] = {{"tab", "\t"}, {"\\t", "\t"}, {"space", " "},
        {"comma", ","}, {"semicolon", ";"}, {"pipe", "|"}};
    const char *sep = ts_cfg_str(cfg, "separator");
    for (size_t i = 0; sep && i < sizeof named / sizeof named[0]; i++)
        if (strcmp(sep, named[i][0]) == 0) sep = named[i][1];
    if (!sep || !*sep)
        return ts_fail(e, "%s: [data] separator is empty; write it out (, or |) or name it: tab, "
                       "space, comma, semicolon, pipe", ts_cfg_where(cfg, "separator"));
    csvdata *st = calloc(1, sizeof *st);
    char (*names)[TS_NAME_MAX] = NULL;
    if (!st) return ts_fail(e, "csv: out of memory");
    D->state = st;
    char path[4096];
    ts_ctx_path(D->ctx, ts_cfg_str(cfg, "path"), path, sizeof path);
    if (read_file(st, cfg, path, sep, header, skip, e) < 0 || prepare(D, st, frac, (uint64_t)seed, e) < 0)
        goto fail;
    if (st->ndense + st->ncat == 0) {
        ts_fail(e, "%s: [data] names no feature column; list some under dense = or categorical =",
                ts_cfg_where(cfg, "dense"));
        goto fail;
    }
    names = malloc(MAXLIST * sizeof *names);
    int nlab = 0, one = 1;
    if (!names) { ts_fail(e, "csv: out of memory"); goto fail; }
    if (ts_cfg_list(cfg, "labels", names, MAXLIST, &nlab, e) < 0) goto fail;
    for (int i = 0; i < nlab; i++)
        if (strcmp(names[i], "dense") == 0 || strcmp(names[i], "categorical") == 0) {
            ts_fail(e, "%s: a label column may not be called \"%s\" (that is a feature field's "
                    "name); rename the column", ts_cfg_where(cfg, "labels"), names[i]);
            goto fail;
        }
    if ((st->ndense && !(st->f_dense = ts_data_field(D, "dense", TS_F32, 2, &st->ndense, 0, e))) ||
        (st->ncat && !(st->f_cat = ts_data_field(D, "categorical", TS_I32, 2, &st->ncat,
                                                 st->offsets[st->ncat], e))))
        goto fail;
    for (int i = 0; i < nlab; i++)
        if (!(st->f_lab[i] = ts_data_field(D, names[i], TS_F32, 2, &one, 0, e)) ||
            ts_data_label(D, names[i], e))   /* never a layer's input */
            goto fail;
    int mb = ts_ctx_max_batch(D->ctx);
    if (ensure_cap(st, mb > 0 ? mb : 1) < 0) {
        ts_fail(e, "csv: out of memory for batches of %d rows", mb);
        goto fail;
    }
    free(names);
    return 0;
fail:
    free(names);
    csv_close(D);
    return -1;
}

static int csv_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    csvdata *st = D->state;
    int nd = st->ndense, nc = st->ncat, nl = st->nlab;
    if (ensure_cap(st, n) < 0) return ts_fail(e, "csv: out of memory for a batch of %d rows", n);
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= D->nrows[split])
            return ts_fail(e, "csv: row %ld asked of a split of %ld rows", rows[i], D->nrows[split]);
        long r = st->rows[split][rows[i]];
        memcpy(st->b_dense + (size_t)i * nd, st->dense + r * nd, (size_t)nd * sizeof(float));
        memcpy(st->b_cat + (size_t)i * nc, st->cat + r * nc, (size_t)nc * sizeof(int32_t));
        for (int k = 0; k < nl; k++) st->b_lab[(size_t)k * st->cap + i] = st->lab[r * nl + k];
    }
    if (st->f_dense) { st->f_dense->x = st->b_dense; st->f_dense->dim[0] = n; }
    if (st->f_cat) { st->f_cat->ids = st->b_cat; st->f_cat->dim[0] = n; }
    for (int k = 0; k < nl; k++) {
        st->f_lab[k]->x = st->b_lab + (size_t)k * st->cap;
        st->f_lab[k]->dim[0] = n;
    }
    return 0;
}

static int csv_aux(ts_data *D, const char *name, const void **ptr, long *n)
{
    csvdata *st = D->state;
    if (strcmp(name, "skipped_rows") == 0) { *ptr = &st->skipped; *n = 1; }
    else if (strcmp(name, "dense_mean") == 0) { *ptr = st->mean; *n = st->ndense; }
    else if (strcmp(name, "dense_std") == 0) { *ptr = st->sd; *n = st->ndense; }
    else if (strcmp(name, "categorical_offsets") == 0) { *ptr = st->offsets; *n = st->ncat + 1; }
    else return -1;
    return 0;
}

static const ts_key keys[] = {
    {"path", "string", NULL, "the delimited text file (plain or .gz)"},
    {"separator", "string", ",", "field separator: the text itself, or tab, space, comma, semicolon, pipe"},
    {"header", "bool", "true", "the first line names the columns (else they are 0, 1, ...)"},
    {"dense", "list", "", "numeric feature columns, standardised with training mean and std"},
    {"categorical", "list", "", "categorical feature columns, indexed from the training split"},
    {"labels", "list", "", "label columns; each becomes an F32 (B, 1) field of its name"},
    {"split", "list", "0.6, 0.2, 0.2", "fractions of rows for train, valid, test"},
    {"split_seed", "int", "2026", "seed of the row shuffle that makes the splits"},
    {"skip_bad_rows", "bool", "false", "skip malformed rows (counted in aux skipped_rows) instead of failing"},
    {NULL, NULL, NULL, NULL}};
static const ts_dataset_ops ops = {.size = sizeof(ts_dataset_ops),
    .open = csv_open, .batch = csv_batch, .aux = csv_aux,
                                   .close = csv_close,
    .concurrency = TS_BRANCH_SAFE};   /* batch() fills the fields only */
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_DATASET, "csv", "1.0",
    "a delimited text file with named dense, categorical and label columns", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
