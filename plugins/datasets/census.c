/* census.c — the UCI Census-Income (KDD) dataset (Lane & Kohavi; UCI #117, CC BY 4.0) for the
 * multi-task experiments of Ma et al. (KDD 2018): income > 50K and "never married".
 *
 * Reads the 42-field ", "-separated file (plain or .gz), splits it train/valid/test with its own
 * split_seed (never the experiment seed), standardises the 7 continuous attributes with the
 * TRAINING split's mean and std, and indexes the 32 nominal attributes from the training split
 * (one unseen-value bucket per attribute, all attributes in one id space). Fields:
 *   continuous      F32 (B, 7)   age, wage/hour, capital gains, capital losses, dividends,
 *                                persons worked for employer, weeks worked; (v - mean) / std
 *   categorical     I32 (B, 32)  attribute f's ids lie in [offset_f, offset_f + n_f]; id offset_f
 *                                is the bucket for a value never seen in the training split
 *   instance_weight F32 (B, 1)   column 24, the CPS sampling weight, raw (never a feature)
 *   income          F32 (B, 1)   1 when the last column is "50000+."
 *   marital         F32 (B, 1)   1 when column 7 is "Never married" (never a feature)
 *   education       F32 (B, 1)   only with education_label = true: 1 when column 4 is a
 *                                bachelor's, master's, professional or doctoral degree (14.7 %);
 *                                the education attribute then carries one constant id for every
 *                                row, so the label is not a feature (a third task; Ma et al.
 *                                use "education at least college" in their group 2)
 * Aux arrays (ts_ctx_aux): "skipped_rows" (1 long), "continuous_mean" / "continuous_std"
 * (7 doubles, the training statistics), "categorical_offsets" (33 int32: offsets, then vocab),
 * "row_line" (one long per test row: its line in the file), "unseen_values" (1 long: nominal
 * values of the rows read that the training split never had).
 * Fitted state (ts_dataset_ops.fitted): the statistics and every attribute's vocabulary as text,
 * so `tessera predict` / `evaluate` and a resumed run read new rows as the training rows were
 * read; opened with it (ts_ctx_fitted), the reader fits nothing. In the evaluate and predict
 * modes every row of the file is the test split, in file order; predict accepts rows without the
 * income field (41 fields).
 * Not a generic CSV reader (that is csv.c), and it does no feature engineering beyond this. */
#include "tessera.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCOL 42
#define NCONT 7
#define NCAT 32
#define COL_MARITAL 7
#define COL_EDUCATION 4
#define COL_WEIGHT 24
#define COL_INCOME 41

/* 0-based column names, from census-income.names.txt (instance weight inserted at 24). */
static const char *const colname[NCOL] = {
    "age", "class of worker", "detailed industry recode", "detailed occupation recode",
    "education", "wage per hour", "enroll in edu inst last wk", "marital stat",
    "major industry code", "major occupation code", "race", "hispanic origin", "sex",
    "member of a labor union", "reason for unemployment", "full or part time employment stat",
    "capital gains", "capital losses", "dividends from stocks", "tax filer stat",
    "region of previous residence", "state of previous residence",
    "detailed household and family stat", "detailed household summary in household",
    "instance weight", "migration code-change in msa", "migration code-change in reg",
    "migration code-move within reg", "live in this house 1 year ago",
    "migration prev res in sunbelt", "num persons worked for employer", "family members under 18",
    "country of birth father", "country of birth mother", "country of birth self", "citizenship",
    "own business or self employed", "fill inc questionnaire for veteran's admin",
    "veterans benefits", "weeks worked in year", "year", "income"};
static const int cont_col[NCONT] = {0, 5, 16, 17, 18, 30, 39};
/* The nominal attributes: every column but the continuous ones, the weight, income and marital
 * status (a label), in column order. */
static const int cat_col[NCAT] = {1,  2,  3,  4,  6,  8,  9,  10, 11, 12, 13,
                                  14, 15, 19, 20, 21, 22, 23, 25, 26, 27, 28,
                                  29, 31, 32, 33, 34, 35, 36, 37, 38, 40};

/* One row as the batches read it (and a streamed row, parsed): its features and labels side by
 * side in three cache lines, so that a shuffled batch costs three line fetches per row instead
 * of eight (the row number, the continuous, categorical and four label arrays). */
typedef struct crow {
    int32_t cat[NCAT];
    float cont[NCONT];
    float w, inc, mar, edu;
    float pad_[5];
} crow;

typedef struct census {
    long n;                  /* usable rows in the file */
    crow *pack[3];           /* (nrows[split]) each split's rows in split order, built by
                                pack_splits once prepare is done; batches read only these
                                (in memory; a stream reads its records) */
    float *cont;             /* (n, NCONT) standardised */
    int32_t *cat;            /* (n, NCAT) raw ids at first, final ids after indexing */
    long *line;              /* (n) the file line of each row */
    long *test_line;         /* (nrows[TS_TEST]) the file line of each test row, in split order */
    long unseen;             /* nominal values not in the training vocabulary */
    int nvocab[NCAT];        /* fitted state given: values of each attribute's vocabulary */
    char *state;             /* the fitted state's text (fitted()) */
    size_t nstate;
    float *weight, *income, *marital;  /* (n) each */
    float *education;        /* (n) bachelor's or higher; allocated with the others */
    int edu_label;           /* education_label = true: education is a label, not a feature */
    long *rows[3];           /* (nrows[split]) row numbers of each split */
    long skipped;            /* bad rows skipped under skip_bad_rows */
    double mean[NCONT], sd[NCONT];
    int32_t offsets[NCAT + 1];
    int cap;                 /* rows the batch buffers hold */
    float *b_cont, *b_w, *b_inc, *b_mar, *b_edu; /* (cap, NCONT), (cap) each */
    int32_t *b_cat;          /* (cap, NCAT) */
    ts_tensor *f_cont, *f_cat, *f_w, *f_inc, *f_mar, *f_edu;  /* f_edu NULL without the label */
    ts_strtab *dict;         /* (attribute, text) -> raw id per attribute; NULL after indexing */
    /* stream = true (docs/scale.md): rows parsed into crow records as they are read */
    ts_stream *stream;
    int skip, fitted;        /* skip_bad_rows; a fitted state was given */
    long nfit;               /* training rows the scan fitted on */
    double m2[NCONT];        /* Welford's sums of squares */
    crow *rec;               /* (cap) records of a batch */
    char report[256];        /* aux "report" of a streamed run */
} census;


/* 0 for a number, -1 for text that is not one, -2 for a number beyond float's range (it is
 * stored as a float and would become infinite, and every loss NaN). */
static int parse_num(const char *s, double *v)
{
    char *end;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return -1;
    *v = strtod(s, &end);
    while (isspace((unsigned char)*end)) end++;
    if (*end || !isfinite(*v)) return -1;
    return fabs(*v) > FLT_MAX ? -2 : 0;
}

static const char *num_problem(int rc)
{
    return rc == -2 ? "beyond the float range (+-3.4e38)" : "not a number";
}

/* Parses one split line into row r of the arrays; a message in why on a bad row. */
static int parse_row(census *st, char **f, int nf, long r, int predict, int add, char *why,
                     size_t nwhy)
{
    static char none[] = "- 50000.";
    if (predict && nf == NCOL - 1) f[COL_INCOME] = none;   /* no label: predictions only */
    else if (nf != NCOL) {
        snprintf(why, nwhy, "expected %d fields separated by \", \", found %s%d", NCOL,
                 nf > NCOL ? "more than " : "", nf > NCOL ? NCOL : nf);
        return -1;
    }
    double v;
    int rc;
    for (int c = 0; c < NCONT; c++) {
        if ((rc = parse_num(f[cont_col[c]], &v)) < 0) {
            snprintf(why, nwhy, "field %d (%s) is \"%.40s\", %s", cont_col[c],
                     colname[cont_col[c]], f[cont_col[c]], num_problem(rc));
            return -1;
        }
        st->cont[r * NCONT + c] = (float)v;
    }
    if ((rc = parse_num(f[COL_WEIGHT], &v)) < 0) {
        snprintf(why, nwhy, "field 24 (instance weight) is \"%.40s\", %s", f[COL_WEIGHT],
                 num_problem(rc));
        return -1;
    }
    st->weight[r] = (float)v;
    const char *inc = f[COL_INCOME];
    if (strncmp(inc, "50000+", 6) == 0 && (!inc[6] || strcmp(inc + 6, ".") == 0)) st->income[r] = 1;
    else if (strncmp(inc, "- 50000", 7) == 0 && (!inc[7] || strcmp(inc + 7, ".") == 0)) st->income[r] = 0;
    else {
        snprintf(why, nwhy, "field 41 (income) is \"%.40s\", expected \"- 50000.\" or \"50000+.\"", inc);
        return -1;
    }
    st->marital[r] = strcmp(f[COL_MARITAL], "Never married") == 0 ? 1.0f : 0.0f;
    static const char *const degree[] = {"Bachelors degree", "Masters degree", "Doctorate degree",
                                         "Prof school degree"};
    st->education[r] = 0;
    for (int k = 0; k < 4; k++)
        if (strncmp(f[COL_EDUCATION], degree[k], strlen(degree[k])) == 0) st->education[r] = 1;
    for (int a = 0; a < NCAT; a++) {
        int c = cat_col[a];
        /* With the education label the attribute is one constant value: it must not leak. */
        const char *text = st->edu_label && c == COL_EDUCATION ? "(the education label)" : f[c];
        /* ts_split(", ") ended field c where field c + 1 starts, less the separator */
        size_t len = text == f[c] && c + 1 < nf ? (size_t)(f[c + 1] - f[c] - 2) : strlen(text);
        int32_t id = ts_strtab_id(st->dict, a, text, len, add);
        if (id == -2 || (id < 0 && add)) {
            snprintf(why, nwhy, "out of memory");
            return -2;
        }
        st->cat[r * NCAT + a] = id;
    }
    return 0;
}

static int grow_rows(census *st, long cap)
{
    float *c = realloc(st->cont, (size_t)cap * NCONT * sizeof(float));
    if (c) st->cont = c;
    int32_t *k = realloc(st->cat, (size_t)cap * NCAT * sizeof(int32_t));
    if (k) st->cat = k;
    float *w = realloc(st->weight, (size_t)cap * sizeof(float));
    if (w) st->weight = w;
    float *i = realloc(st->income, (size_t)cap * sizeof(float));
    if (i) st->income = i;
    float *m = realloc(st->marital, (size_t)cap * sizeof(float));
    if (m) st->marital = m;
    float *ed = realloc(st->education, (size_t)cap * sizeof(float));
    if (ed) st->education = ed;
    long *ln = realloc(st->line, (size_t)cap * sizeof(long));
    if (ln) st->line = ln;
    return (c && k && w && i && m && ed && ln) ? 0 : -1;
}

static int read_file(census *st, const char *path, int skip_bad, int predict, ts_err *e)
{
    ts_err sub;
    ts_lines *in = ts_lines_open(path, &sub);
    if (!in)
        return ts_fail(e, "%s. The census data ships as data/census/census-income.test.gz; set "
                       "[data] path to that file.", sub.msg);
    long cap = 0;
    char *line, why[256];
    char *f[NCOL + 1];
    size_t len;
    while ((line = ts_lines_next(in, &len))) {
        size_t k = 0;
        while (k < len && isspace((unsigned char)line[k])) k++;
        if (k == len) continue;                           /* blank lines carry nothing */
        if (st->n == cap) {
            cap = cap ? 2 * cap : 1024;   /* doubling: a tiny file costs kilobytes */
            if (grow_rows(st, cap) < 0) {
                ts_lines_close(in);
                return ts_fail(e, "%s: out of memory after %ld rows", path, st->n);
            }
        }
        int nf = ts_split(line, ", ", f, NCOL);
        int rc = parse_row(st, f, nf, st->n, predict, 1, why, sizeof why);
        st->line[st->n] = ts_lines_lineno(in);
        if (rc == -2 || (rc < 0 && !skip_bad)) {
            long ln = ts_lines_lineno(in);
            ts_lines_close(in);
            return ts_fail(e, "%s:%ld: %s; fix or delete the row, or set skip_bad_rows = true "
                           "in [data]", path, ln, why);
        }
        if (rc < 0) st->skipped++;
        else st->n++;
    }
    int rc = ts_lines_error(in, e);
    ts_lines_close(in);
    if (rc < 0) return -1;
    if (st->n == 0)
        return ts_fail(e, "%s: no usable rows (%ld bad rows skipped); point [data] path at "
                       "census-income.test.gz or a file in its format", path, st->skipped);
    return 0;
}

/* The rows of each split: shuffled with split_seed into train / valid / test fractions, or (a
 * trained run applied to new rows) every row as the test split in file order. */
static int make_splits(ts_data *D, census *st, const double *frac, uint64_t seed, int apply,
                       ts_err *e)
{
    long n = st->n, *perm = malloc((size_t)n * sizeof(long));
    if (!perm) return ts_fail(e, "census: out of memory");
    for (long i = 0; i < n; i++) perm[i] = i;
    long cnt[3] = {0, 0, n}, at = 0;
    if (!apply) {
        ts_rng rng;
        ts_rng_seed(&rng, seed);
        ts_rng_shuffle(&rng, perm, n);
        long ntr = (long)(frac[0] * n + 0.5), nva = (long)(frac[1] * n + 0.5);
        if (ntr > n) ntr = n;           /* fractions summing to 1 + 1e-6 may round past n */
        if (ntr + nva > n) nva = n - ntr;
        if (ntr < 1) {
            free(perm);
            return ts_fail(e, "census: the training split of %ld rows is empty; raise its "
                           "fraction in [data] split", n);
        }
        cnt[0] = ntr;
        cnt[1] = nva;
        cnt[2] = n - ntr - nva;
    }
    for (int s = 0; s < 3; s++) {
        D->nrows[s] = cnt[s];
        st->rows[s] = malloc((size_t)(cnt[s] ? cnt[s] : 1) * sizeof(long));
        if (!st->rows[s]) { free(perm); return ts_fail(e, "census: out of memory"); }
        memcpy(st->rows[s], perm + at, (size_t)cnt[s] * sizeof(long));
        at += cnt[s];
    }
    free(perm);
    if (!(st->test_line = malloc((size_t)(cnt[2] ? cnt[2] : 1) * sizeof(long))))
        return ts_fail(e, "census: out of memory");
    for (long i = 0; i < cnt[2]; i++) st->test_line[i] = st->line[st->rows[2][i]];
    return 0;
}

/* Mean and std of each continuous attribute over the training rows only. */
static void fit_statistics(census *st, long ntr)
{
    for (int c = 0; c < NCONT; c++) {
        double s1 = 0, s2 = 0;
        for (long i = 0; i < ntr; i++) s1 += st->cont[st->rows[0][i] * NCONT + c];
        double mu = s1 / ntr;
        for (long i = 0; i < ntr; i++) {
            double d = st->cont[st->rows[0][i] * NCONT + c] - mu;
            s2 += d * d;
        }
        double sd = sqrt(s2 / ntr);
        st->mean[c] = mu;
        st->sd[c] = sd > 1e-12 ? sd : 1.0;   /* a constant column becomes all zeros */
    }
}

/* Appends to the state text; -1 when out of memory. */
static int state_add(census *st, size_t *cap, const char *s, size_t k)
{
    if (st->nstate + k + 1 > *cap) {
        size_t c = 2 * (*cap) + k + 4096;
        char *m = realloc(st->state, c);
        if (!m) return -1;
        st->state = m;
        *cap = c;
    }
    memcpy(st->state + st->nstate, s, k);
    st->nstate += k;
    st->state[st->nstate] = 0;
    return 0;
}

/* The fitted state as text: a version line, the statistics, then each attribute's training
 * vocabulary in id order, one value a line (values never hold a newline). */
static int write_state(census *st, int32_t *const *map, ts_err *e)
{
    size_t cap = 0;
    char buf[256];
    int bad = 0, k = snprintf(buf, sizeof buf, "tessera-census-state 1\neducation_label %d\n",
                              st->edu_label);
    bad |= state_add(st, &cap, buf, (size_t)k);
    for (int c = 0; c < NCONT; c++) {
        k = snprintf(buf, sizeof buf, "continuous %d %.17g %.17g\n", c, st->mean[c], st->sd[c]);
        bad |= state_add(st, &cap, buf, (size_t)k);
    }
    for (int a = 0; a < NCAT && !bad; a++) {
        int32_t nv = ts_strtab_count(st->dict, a), nlocal = st->offsets[a + 1] - st->offsets[a] - 1;
        int32_t *raw = malloc((size_t)(nlocal + 1) * sizeof *raw);   /* local id -> raw id */
        if (!raw) return ts_fail(e, "census: out of memory");
        for (int32_t v = 0; v < nv; v++)
            if (map[a][v] > 0) raw[map[a][v]] = v;
        k = snprintf(buf, sizeof buf, "attribute %d %d\n", a, nlocal);
        bad |= state_add(st, &cap, buf, (size_t)k);
        for (int32_t l = 1; l <= nlocal && !bad; l++) {
            const char *t = ts_strtab_str(st->dict, a, raw[l]);
            bad |= state_add(st, &cap, t, strlen(t)) || state_add(st, &cap, "\n", 1);
        }
        free(raw);
    }
    return bad ? ts_fail(e, "census: out of memory") : 0;
}

/* Reads a fitted state (ts_ctx_fitted) into the statistics and a dictionary whose attribute a
 * numbers its training values 0 .. nvocab[a]-1 in vocabulary order. */
static int read_state(census *st, const char *text, size_t n, ts_err *e)
{
    const char *p = text, *end = text + n;
    char line[4096];
    int a = -1, left = 0, cont = 0, ver = 0, edu = -1, natt = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (k >= sizeof line) return ts_fail(e, "census: the fitted state has a line of %zu bytes", k);
        memcpy(line, p, k);
        line[k] = 0;
        p += k + 1;
        int i, c, m;
        double mu, sd;
        if (left > 0) {
            if (ts_strtab_id(st->dict, a, line, k, 1) != st->nvocab[a] - left)
                return ts_fail(e, "census: the fitted state lists \"%s\" twice in attribute %d", line, a);
            left--;
        } else if (sscanf(line, "tessera-census-state %d", &ver) == 1) {
            if (ver != 1) return ts_fail(e, "census: fitted state version %d; this reader knows 1", ver);
        } else if (sscanf(line, "education_label %d", &edu) == 1) {
        } else if (sscanf(line, "continuous %d %lg %lg", &c, &mu, &sd) == 3 && c >= 0 && c < NCONT &&
                   isfinite(mu) && isfinite(sd) && sd > 0) {
            st->mean[c] = mu;
            st->sd[c] = sd;
            cont++;
        } else if (sscanf(line, "attribute %d %d", &i, &m) == 2 && i == natt && m >= 0 && m < (1 << 28)) {
            a = i;
            natt++;
            st->nvocab[a] = left = m;
        } else if (k) {
            return ts_fail(e, "census: the fitted state cannot be read at \"%.60s\"", line);
        }
    }
    if (ver != 1 || cont != NCONT || natt != NCAT || left)
        return ts_fail(e, "census: the fitted state is incomplete (version %d, %d of %d statistics, "
                       "%d of %d attributes); it was not written by this reader", ver, cont, NCONT,
                       natt, NCAT);
    if (edu != st->edu_label)
        return ts_fail(e, "census: the run was trained with education_label = %s; set it the same",
                       edu ? "true" : "false");
    return 0;
}

/* Standardises with the training statistics and gives every nominal value its final id: local id
 * 1.. for values of the training vocabulary, 0 (the attribute's unseen bucket) otherwise. With a
 * fitted state the vocabulary is the state's; without one it is fitted on the training split. */
static int prepare(ts_data *D, census *st, const double *frac, uint64_t seed, int fitted, int apply,
                   ts_err *e)
{
    long n = st->n;
    if (make_splits(D, st, frac, seed, apply, e)) return -1;
    if (!fitted) fit_statistics(st, D->nrows[TS_TRAIN]);
    for (long r = 0; r < n; r++)
        for (int c = 0; c < NCONT; c++) {
            /* A validation or test value can lie so many (small) training standard deviations
             * away that it overflows float: say so rather than train on inf. */
            double z = (st->cont[r * NCONT + c] - st->mean[c]) / st->sd[c];
            if (fabs(z) > FLT_MAX)
                return ts_fail(e, "census: %s = %g lies %g training standard deviations from the "
                               "training mean %g, beyond the float range; check that value",
                               colname[cont_col[c]], (double)st->cont[r * NCONT + c], z,
                               st->mean[c]);
            st->cont[r * NCONT + c] = (float)z;
        }
    int32_t *map[NCAT] = {0};
    int fail = 0;
    for (int a = 0; a < NCAT; a++)
        fail |= !(map[a] = calloc((size_t)ts_strtab_count(st->dict, a) + 1, 4));
    if (!fail) {
        if (fitted) {
            /* the state's values came first into the dictionary: raw id v < nvocab is local v+1 */
            for (int a = 0; a < NCAT; a++)
                for (int32_t v = 0, nv = ts_strtab_count(st->dict, a); v < nv; v++)
                    map[a][v] = v < st->nvocab[a] ? v + 1 : 0;
        } else {
            long ntr = D->nrows[TS_TRAIN];
            for (long i = 0; i < ntr; i++)
                for (int a = 0; a < NCAT; a++) map[a][st->cat[st->rows[0][i] * NCAT + a]] = 1;
            for (int a = 0; a < NCAT; a++) {
                int32_t next = 1;
                for (int32_t v = 0, nv = ts_strtab_count(st->dict, a); v < nv; v++)
                    map[a][v] = map[a][v] ? next++ : 0;
            }
        }
        st->offsets[0] = 0;
        for (int a = 0; a < NCAT; a++) {
            int32_t nlocal = 0;
            for (int32_t v = 0, nv = ts_strtab_count(st->dict, a); v < nv; v++)
                if (map[a][v] > nlocal) nlocal = map[a][v];
            if (fitted) nlocal = st->nvocab[a];
            st->offsets[a + 1] = st->offsets[a] + nlocal + 1;
        }
        for (long r = 0; r < n; r++)
            for (int a = 0; a < NCAT; a++) {
                int32_t local = map[a][st->cat[r * NCAT + a]];
                st->unseen += local == 0;
                st->cat[r * NCAT + a] = st->offsets[a] + local;
            }
        if (!fitted && write_state(st, map, e)) fail = 2;
    }
    for (int a = 0; a < NCAT; a++) free(map[a]);
    if (fail) return fail == 2 ? -1 : ts_fail(e, "census: out of memory");
    ts_strtab_free(st->dict);
    st->dict = NULL;
    return 0;
}


/* ---- stream = true (docs/scale.md) ---------------------------------------------------------
 * The rows are never all held: a scan over the files fits the statistics (Welford's running
 * mean and variance, in double) and the vocabularies on the training rows (the split of a row
 * is a hash of its line, ts_stream_split), or takes them from a given fitted state; then each
 * line read is parsed into a crow record with the final ids. */
static int parse_line(census *st, char *line, int add, const char *path, long lineno, ts_err *e)
{
    char *f[NCOL + 1], why[256];
    (void)lineno;
    int nf = ts_split(line, ", ", f, NCOL);
    int rc = parse_row(st, f, nf, 0, 0, add, why, sizeof why);
    if (rc == -2 || (rc < 0 && !st->skip))
        return ts_fail(e, "%s:%ld: %s; fix or delete the row, or set skip_bad_rows = true in "
                       "[data]", path, lineno, why);
    return rc < 0 ? 0 : 1;
}

static int census_scan(void *u, ts_phase sp, char *line, size_t len, const char *path,
                       long lineno, ts_err *e)
{
    census *st = u;
    (void)len;
    int fit = sp == TS_TRAIN && !st->fitted;
    int rc = parse_line(st, line, fit, path, lineno, e);
    if (rc < 0) return -1;
    if (rc == 0) { st->skipped++; return 0; }
    if (fit) {
        st->nfit++;
        for (int c = 0; c < NCONT; c++) {
            double v = st->cont[c], d = v - st->mean[c];
            st->mean[c] += d / st->nfit;
            st->m2[c] += d * (v - st->mean[c]);
        }
    }
    return 1;
}

static int census_row(void *u, char *line, size_t len, const char *path, long lineno, void *row,
                      ts_err *e)
{
    census *st = u;
    (void)len;
    int rc = parse_line(st, line, 0, path, lineno, e);
    if (rc <= 0) return rc;
    crow *r = row;
    memset(r, 0, sizeof *r);
    for (int c = 0; c < NCONT; c++) {
        double z = (st->cont[c] - st->mean[c]) / st->sd[c];
        if (fabs(z) > FLT_MAX)
            return ts_fail(e, "%s:%ld: %s = %g lies %g training standard deviations from the "
                           "training mean %g, beyond the float range; check that value", path,
                           lineno, colname[cont_col[c]], (double)st->cont[c], z, st->mean[c]);
        r->cont[c] = (float)z;
    }
    for (int a = 0; a < NCAT; a++) {
        int32_t raw = st->cat[a];   /* -1: a value the training rows never had */
        r->cat[a] = st->offsets[a] + (raw < 0 ? 0 : raw + 1);
    }
    r->w = st->weight[0];
    r->inc = st->income[0];
    r->mar = st->marital[0];
    r->edu = st->education[0];
    return 1;
}

/* The scan, then the statistics, the ids' offsets and the fitted state. */
static int stream_prepare(ts_data *D, census *st, const char *pattern, const char *where,
                          long buffer, const double *frac, uint64_t seed, ts_err *e)
{
    if (grow_rows(st, 1) < 0) return ts_fail(e, "census: out of memory");
    if (!(st->stream = ts_stream_open(D->ctx, pattern, where, sizeof(crow), buffer, frac, seed,
                                      census_scan, census_row, st, e)))
        return -1;
    if (ts_stream_scan(st->stream, e) < 0) return -1;
    for (int sp = 0; sp < 3; sp++) D->nrows[sp] = ts_stream_rows(st->stream, (ts_phase)sp);
    ts_stream_report(st->stream, st->report, sizeof st->report);
    if (!st->fitted) {
        if (st->nfit < 1)
            return ts_fail(e, "%s: no training rows in %d file(s) (%ld bad rows skipped); check "
                           "the path and the split", where, ts_stream_nfiles(st->stream),
                           st->skipped);
        for (int c = 0; c < NCONT; c++) {
            double sd = sqrt(st->m2[c] / st->nfit);
            st->sd[c] = sd > 1e-12 ? sd : 1.0;
        }
    }
    st->offsets[0] = 0;
    for (int a = 0; a < NCAT; a++)
        st->offsets[a + 1] = st->offsets[a] + (st->fitted ? st->nvocab[a]
                                                          : ts_strtab_count(st->dict, a)) + 1;
    if (st->fitted) return 0;
    /* every value of the dictionary is a training value, numbered in order of appearance */
    int32_t *map[NCAT] = {0};
    int rc = 0;
    for (int a = 0; a < NCAT && !rc; a++) {
        int32_t nv = ts_strtab_count(st->dict, a);
        if (!(map[a] = malloc((size_t)(nv + 1) * sizeof **map))) rc = ts_fail(e, "census: out of memory");
        for (int32_t v = 0; !rc && v < nv; v++) map[a][v] = v + 1;
    }
    if (!rc) rc = write_state(st, map, e);
    for (int a = 0; a < NCAT; a++) free(map[a]);
    return rc;
}

/* Copies n records into the batch buffers and points the fields at them. */
static void fill_fields(census *st, int n)
{
    for (int i = 0; i < n; i++) {
        const crow *r = &st->rec[i];
        memcpy(st->b_cont + (size_t)i * NCONT, r->cont, sizeof r->cont);
        memcpy(st->b_cat + (size_t)i * NCAT, r->cat, sizeof r->cat);
        st->b_w[i] = r->w;
        st->b_inc[i] = r->inc;
        st->b_mar[i] = r->mar;
        st->b_edu[i] = r->edu;
    }
}

/* Copies each split's rows, in split order, into its packed array (crow), then frees the
 * per-column arrays, which nothing reads after open: the batches read the packs. */
static int pack_splits(ts_data *D, census *st)
{
    _Static_assert(sizeof(crow) % 64 == 0, "a packed row is whole cache lines");
    for (int s = 0; s < 3; s++) {
        long n = D->nrows[s];
        st->pack[s] = aligned_alloc(64, (size_t)(n ? n : 1) * sizeof(crow));
        if (!st->pack[s]) return -1;
        for (long i = 0; i < n; i++) {
            long r = st->rows[s][i];
            crow *c = &st->pack[s][i];
            memset(c, 0, sizeof *c);
            memcpy(c->cat, st->cat + r * NCAT, sizeof c->cat);
            memcpy(c->cont, st->cont + r * NCONT, sizeof c->cont);
            c->w = st->weight[r];
            c->inc = st->income[r];
            c->mar = st->marital[r];
            c->edu = st->education[r];
        }
    }
    free(st->cont); free(st->cat); free(st->weight); free(st->income); free(st->marital);
    free(st->education);
    st->cont = st->weight = st->income = st->marital = st->education = NULL;
    st->cat = NULL;
    return 0;
}

static int ensure_cap(census *st, int n)
{
    if (n <= st->cap) return 0;
    float *a = realloc(st->b_cont, (size_t)n * NCONT * sizeof(float));
    if (a) st->b_cont = a;
    int32_t *b = realloc(st->b_cat, (size_t)n * NCAT * sizeof(int32_t));
    if (b) st->b_cat = b;
    float *c = realloc(st->b_w, (size_t)n * sizeof(float));
    if (c) st->b_w = c;
    float *d = realloc(st->b_inc, (size_t)n * sizeof(float));
    if (d) st->b_inc = d;
    float *m = realloc(st->b_mar, (size_t)n * sizeof(float));
    if (m) st->b_mar = m;
    float *ed = realloc(st->b_edu, (size_t)n * sizeof(float));
    if (ed) st->b_edu = ed;
    crow *rc = st->stream ? realloc(st->rec, (size_t)n * sizeof *rc) : st->rec;
    if (rc) st->rec = rc;
    if (!(a && b && c && d && m && ed && (rc || !st->stream))) return -1;
    st->cap = n;
    return 0;
}

static void census_close(ts_data *D)
{
    census *st = D->state;
    if (!st) return;
    ts_strtab_free(st->dict);
    free(st->cont); free(st->cat); free(st->weight); free(st->income); free(st->marital);
    free(st->education);
    free(st->line);
    free(st->test_line);
    free(st->state);
    for (int s = 0; s < 3; s++) {
        free(st->rows[s]);
        free(st->pack[s]);
    }
    free(st->b_cont); free(st->b_cat); free(st->b_w); free(st->b_inc); free(st->b_mar);
    free(st->b_edu);
    ts_stream_close(st->stream);
    free(st->rec);
    free(st);
    D->state = NULL;
}

static int census_open(ts_data *D, const ts_cfg *cfg, ts_err *e)
{
    double frac[4];
    int nfrac, skip, edu, stream;
    long seed, buffer;
    if (ts_cfg_floats(cfg, "split", frac, 4, &nfrac, e) < 0 || ts_cfg_int(cfg, "split_seed", &seed, e) < 0 ||
        ts_cfg_bool(cfg, "skip_bad_rows", &skip, e) < 0 ||
        ts_cfg_bool(cfg, "education_label", &edu, e) < 0 ||
        ts_cfg_bool(cfg, "stream", &stream, e) < 0 || ts_cfg_int(cfg, "shuffle_buffer", &buffer, e) < 0)
        return -1;
    if (nfrac != 3 || frac[0] < 0 || frac[1] < 0 || frac[2] < 0 ||
        fabs(frac[0] + frac[1] + frac[2] - 1.0) > 1e-6)
        return ts_fail(e, "%s: [data] split must be three fractions train, valid, test that sum "
                       "to 1, like 0.6, 0.2, 0.2", ts_cfg_where(cfg, "split"));
    census *st = calloc(1, sizeof *st);
    if (!st) return ts_fail(e, "census: out of memory");
    D->state = st;
    if (!(st->dict = ts_strtab_new())) {
        census_close(D);
        return ts_fail(e, "census: out of memory");
    }
    st->edu_label = edu;
    size_t nfit;
    const char *fit = ts_ctx_fitted(D->ctx, &nfit);
    int mode = ts_ctx_open_mode(D->ctx);
    const char *given = ts_cfg_str(cfg, "fitted_state");
    if (!fit && given && *given) {
        /* a state fitted before (a sample's, or another run's data_state.txt): no fitting */
        char gp[4096];
        ts_ctx_path(D->ctx, given, gp, sizeof gp);
        FILE *f = fopen(gp, "rb");
        long sz = -1;
        if (f && !fseek(f, 0, SEEK_END) && (sz = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
            (st->state = malloc((size_t)sz + 1)) && fread(st->state, 1, (size_t)sz, f) == (size_t)sz) {
            st->state[sz] = 0;
            st->nstate = (size_t)sz;
        } else {
            if (f) fclose(f);
            census_close(D);
            return ts_fail(e, "%s: fitted_state = %s: cannot read %s; give the data_state.txt of "
                           "a census run", ts_cfg_where(cfg, "fitted_state"), given, gp);
        }
        fclose(f);
        if (read_state(st, st->state, st->nstate, e) < 0) {
            char m[TS_ERR_MAX];
            snprintf(m, sizeof m, "%s", e->msg);
            census_close(D);
            return ts_fail(e, "%s: fitted_state = %s: %s", ts_cfg_where(cfg, "fitted_state"), gp, m);
        }
        fit = st->state;
    } else if (fit && read_state(st, fit, nfit, e) < 0) {
        census_close(D);
        return -1;
    }
    char path[4096];
    st->skip = skip;
    st->fitted = fit != NULL;
    /* streamed: training only; predict and evaluate read the file they are given in memory */
    if (stream && mode == TS_OPEN_TRAIN) {
        D->stream = 1;
        if (buffer < 1 || buffer > (1L << 30)) {
            census_close(D);
            return ts_fail(e, "%s: shuffle_buffer = %ld: give a number of rows from 1 to 2^30 "
                           "(65536 rows of census are 11.8 MB)", ts_cfg_where(cfg, "shuffle_buffer"),
                           buffer);
        }
        if (stream_prepare(D, st, ts_cfg_str(cfg, "path"), ts_cfg_where(cfg, "path"), buffer, frac,
                           (uint64_t)seed, e) < 0) {
            census_close(D);
            return -1;
        }
    } else {
    ts_ctx_path(D->ctx, ts_cfg_str(cfg, "path"), path, sizeof path);
    if (read_file(st, path, skip, mode == TS_OPEN_PREDICT, e) < 0 ||
        prepare(D, st, frac, (uint64_t)seed, fit != NULL, mode != TS_OPEN_TRAIN, e) < 0) {
        census_close(D);
        return -1;
    }
    if (pack_splits(D, st) < 0) {
        census_close(D);
        return ts_fail(e, "census: out of memory for the %ld rows", st->n);
    }
    }
    int one = 1, ncont = NCONT, ncat = NCAT;
    if (!(st->f_cont = ts_data_field(D, "continuous", TS_F32, 2, &ncont, 0, e)) ||
        !(st->f_cat = ts_data_field(D, "categorical", TS_I32, 2, &ncat, st->offsets[NCAT], e)) ||
        !(st->f_w = ts_data_field(D, "instance_weight", TS_F32, 2, &one, 0, e)) ||
        !(st->f_inc = ts_data_field(D, "income", TS_F32, 2, &one, 0, e)) ||
        !(st->f_mar = ts_data_field(D, "marital", TS_F32, 2, &one, 0, e)) ||
        (edu && !(st->f_edu = ts_data_field(D, "education", TS_F32, 2, &one, 0, e))) ||
        /* targets, never features: the graph refuses them as a layer's input */
        ts_data_label(D, "instance_weight", e) || ts_data_label(D, "income", e) ||
        ts_data_label(D, "marital", e) || (edu && ts_data_label(D, "education", e))) {
        census_close(D);
        return -1;
    }
    int mb = ts_ctx_max_batch(D->ctx);
    if (ensure_cap(st, mb > 0 ? mb : 1) < 0) {
        census_close(D);
        return ts_fail(e, "census: out of memory for batches of %d rows", mb);
    }
    return 0;
}

/* Points the fields at the batch buffers, n rows. */
static void point_fields(census *st, int n)
{
    st->f_cont->x = st->b_cont;
    st->f_cat->ids = st->b_cat;
    st->f_w->x = st->b_w;
    st->f_inc->x = st->b_inc;
    st->f_mar->x = st->b_mar;
    st->f_cont->dim[0] = st->f_cat->dim[0] = st->f_w->dim[0] = st->f_inc->dim[0] = st->f_mar->dim[0] = n;
    if (st->f_edu) {
        st->f_edu->x = st->b_edu;
        st->f_edu->dim[0] = n;
    }
}


static int census_batch(ts_data *D, ts_phase split, const long *rows, int n, ts_err *e)
{
    census *st = D->state;
    if (ensure_cap(st, n) < 0) return ts_fail(e, "census: out of memory for a batch of %d rows", n);
    if (st->stream) {
        /* streamed: valid and test rows in file order, asked from row 0 on */
        if (ts_stream_read(st->stream, split, rows, n, st->rec, e) < 0) return -1;
        fill_fields(st, n);
        point_fields(st, n);
        return 0;
    }
    /* The rows come shuffled, so each one is a cache miss: ask for row i + AHEAD's lines while
     * row i is copied (a hint only; it changes no value). */
    enum { AHEAD = 8 };
    const crow *pk = st->pack[split];
    long nr = D->nrows[split];
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= nr)
            return ts_fail(e, "census: row %ld asked of a split of %ld rows", rows[i], nr);
        if (i + AHEAD < n && rows[i + AHEAD] >= 0 && rows[i + AHEAD] < nr) {
            const char *q = (const char *)(pk + rows[i + AHEAD]);
            __builtin_prefetch(q);
            __builtin_prefetch(q + 64);
            __builtin_prefetch(q + 128);
        }
        const crow *c = pk + rows[i];
        memcpy(st->b_cont + (size_t)i * NCONT, c->cont, NCONT * sizeof(float));
        memcpy(st->b_cat + (size_t)i * NCAT, c->cat, NCAT * sizeof(int32_t));
        st->b_w[i] = c->w;
        st->b_inc[i] = c->inc;
        st->b_mar[i] = c->mar;
        st->b_edu[i] = c->edu;
    }
    point_fields(st, n);
    return 0;
}

static int census_stream_begin(ts_data *D, long epoch, const int64_t *pos, ts_err *e)
{
    census *st = D->state;
    return ts_stream_begin(st->stream, TS_TRAIN, epoch, pos, e);
}

static int census_stream_next(ts_data *D, int n, int *got, ts_err *e)
{
    census *st = D->state;
    if (ensure_cap(st, n) < 0) return ts_fail(e, "census: out of memory for a batch of %d rows", n);
    if (ts_stream_next(st->stream, TS_TRAIN, st->rec, n, got, e) < 0) return -1;
    fill_fields(st, *got);
    point_fields(st, *got);
    return 0;
}

static void census_stream_pos(ts_data *D, int64_t *pos)
{
    census *st = D->state;
    ts_stream_pos(st->stream, pos);
}

static int census_aux(ts_data *D, const char *name, const void **ptr, long *n)
{
    census *st = D->state;
    /* streamed: no per-row lines, and unseen values are not counted once (every epoch reads) */
    if (st->stream && (!strcmp(name, "row_line") || !strcmp(name, "unseen_values"))) return -1;
    if (st->stream && !strcmp(name, "report")) {
        *ptr = st->report;
        *n = (long)strlen(st->report);
        return 0;
    }
    if (strcmp(name, "skipped_rows") == 0) { *ptr = &st->skipped; *n = 1; }
    else if (strcmp(name, "continuous_mean") == 0) { *ptr = st->mean; *n = NCONT; }
    else if (strcmp(name, "continuous_std") == 0) { *ptr = st->sd; *n = NCONT; }
    else if (strcmp(name, "categorical_offsets") == 0) { *ptr = st->offsets; *n = NCAT + 1; }
    else if (strcmp(name, "row_line") == 0) { *ptr = st->test_line; *n = D->nrows[TS_TEST]; }
    else if (strcmp(name, "unseen_values") == 0) { *ptr = &st->unseen; *n = 1; }
    else return -1;
    return 0;
}

static int census_fitted(ts_data *D, char **text, size_t *n, ts_err *e)
{
    census *st = D->state;
    if (!st->state) return ts_fail(e, "census: no fitted state (the reader was given one)");
    if (!(*text = malloc(st->nstate + 1))) return ts_fail(e, "census: out of memory");
    memcpy(*text, st->state, st->nstate + 1);
    *n = st->nstate;
    return 0;
}

static const ts_key keys[] = {
    {"path", "string", "data/census/census-income.test.gz", "the census-income file (plain or .gz)"},
    {"split", "list", "0.6, 0.2, 0.2", "fractions of rows for train, valid, test"},
    {"split_seed", "int", "2026", "seed of the row shuffle that makes the splits"},
    {"skip_bad_rows", "bool", "false", "skip malformed rows (counted in aux skipped_rows) instead of failing"},
    {"education_label", "bool", "false", "add the label `education` (bachelor's degree or higher) "
     "and drop education from the features"},
    {"stream", "bool", "false", "read the rows as a stream (path: a file, a folder of shards or a "
     "glob; plain or .gz) with memory bounded by shuffle_buffer; a row's split is a hash of its "
     "line (docs/scale.md)"},
    {"fitted_state", "string", "", "a data_state.txt to read rows with instead of fitting the "
     "statistics and vocabularies on the training split (e.g. fitted once on a sample)"},
    {"shuffle_buffer", "int", "65536", "stream = true: rows of the shuffle block (172 bytes each) of the whole job: each of N MPI ranks holds ceil(rows / N) (docs/scale.md)"},
    {NULL, NULL, NULL, NULL}};
static const ts_dataset_ops ops = {.size = sizeof(ts_dataset_ops),
    .open = census_open, .batch = census_batch, .aux = census_aux, .close = census_close,
    .fitted = census_fitted, .stream_begin = census_stream_begin,
    .stream_next = census_stream_next, .stream_pos = census_stream_pos,
    .concurrency = TS_BRANCH_SAFE};   /* batch() fills the fields only */
static const ts_plugin plugin = {TS_ABI, sizeof(ts_plugin), TS_DATASET, "census", "1.0",
    "UCI Census-Income (KDD): income and never-married labels for multi-task models", keys, &ops};
const ts_plugin *tessera_plugin_entry(uint32_t i) { return i == 0 ? &plugin : NULL; }
