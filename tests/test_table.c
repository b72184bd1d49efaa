/* test_table.c — the `table` dataset plugin on small files written here: each column kind,
 * each split, side tables, negative sampling, the fitted state's round trip (train, then apply
 * the state to the same rows and new ones), quoting, encodings, and every class of bad row
 * with its FILE:LINE sentence; one census run through the table reader that must match the
 * census reader's figures and clear a quality floor; and MovieLens through the table reader,
 * which must make the movielens reader's fields and parameters to the bit. */
#include "testutil.h"

#include <math.h>
#include <zlib.h>

static char tmpdir[256];

static const char *in_tmp(const char *name)
{
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(in_tmp(name), "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* An experiment whose [data] is `type = table` plus keys (FILE stands for tmpdir/), opened in
 * a mode; state: a fitted state file to read with (NULL: fit). */
static ts_exp *open_table(const char *keys, const char *label, ts_open_mode mode, const char *state,
                          ts_err *e)
{
    char text[16384], k2[8192];
    size_t n = 0;
    for (const char *s = keys; *s && n < sizeof k2 - 600; s++) {
        if (!strncmp(s, "FILE", 4)) { n += (size_t)snprintf(k2 + n, sizeof k2 - n, "%s/", tmpdir); s += 3; }
        else k2[n++] = *s;
    }
    k2[n] = 0;
    snprintf(text, sizeof text,
             "[experiment]\nname = table_test\n\n[data]\ntype = table\n%s\n\n"
             "[layer.x]\ntype = dense\ninput = age\nunits = 1\n\n"
             "[head.t]\ntype = binary\ninput = x\nlabel = %s\nloss = bce\n\n"
             "[optimizer]\ntype = adam\n\n[train]\nbatch = 64\n", k2, label);
    write_file("exp.ini", text);
    ts_run_opts o = {.results_dir = in_tmp("run"), .open_mode = mode, .fitted_from = state};
    ts_exp *x = ts_exp_load(in_tmp("exp.ini"), &o, e);
    if (!x) return NULL;
    if (ts_exp_open_data(x, e)) {
        /* The host's open refuses an empty training split; applying a run has one by design
         * (the lead's predict/evaluate commands accept it). The dataset itself has opened. */
        if (mode == TS_OPEN_TRAIN || !strstr(e->msg, "training split is empty")) {
            ts_exp_free(x);
            return NULL;
        }
    }
    return x;
}

static ts_exp *must_open(const char *keys, const char *label, ts_open_mode mode, const char *state)
{
    ts_err e;
    ts_exp *x = open_table(keys, label, mode, state, &e);
    if (!x) fail_msg("%s", e.msg);
    return x;
}

/* Opening must fail with a message holding every NULL-terminated part. */
static void must_fail(const char *keys, const char *label, ...)
{
    ts_err e;
    ts_exp *x = open_table(keys, label, TS_OPEN_TRAIN, NULL, &e);
    if (x) { ts_exp_free(x); fail_msg("opened but should fail: %s", keys); }
    va_list ap;
    va_start(ap, label);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(e.msg, s)) { va_end(ap); fail_msg("message lacks \"%s\": %s", s, e.msg); }
    va_end(ap);
}

static ts_tensor *field(ts_exp *x, const char *name)
{
    ts_data *D = ts_exp_data(x);
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return &D->field[i];
    fail_msg("no field %s", name);
    return NULL;
}

static int has_field(ts_exp *x, const char *name)
{
    ts_data *D = ts_exp_data(x);
    for (int i = 0; i < D->nfield; i++)
        if (!strcmp(D->field_name[i], name)) return 1;
    return 0;
}

/* Every row of split s in one batch; returns the row count. */
static long fetch(ts_exp *x, ts_phase s)
{
    ts_data *D = ts_exp_data(x);
    long n = D->nrows[s], rows[4096];
    assert_true(n <= 4096);
    for (long i = 0; i < n; i++) rows[i] = i;
    ts_err e;
    if (n && ts_exp_data_ops(x)->batch(D, s, rows, (int)n, &e)) fail_msg("%s", e.msg);
    return n;
}

static long aux_long(ts_exp *x, const char *name)
{
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(x)->aux(ts_exp_data(x), name, &p, &n), 0);
    assert_int_equal(n, 1);
    return *(const long *)p;
}

/* The fitted state of an open dataset, written to tmpdir/NAME; returns the text (malloc'ed). */
static char *save_state(ts_exp *x, const char *name)
{
    char *text = NULL;
    size_t n = 0;
    ts_err e;
    if (ts_exp_data_ops(x)->fitted(ts_exp_data(x), &text, &n, &e)) fail_msg("%s", e.msg);
    assert_int_equal(strlen(text), n);
    write_file(name, text);
    return text;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-table-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* n people: id r<i>, age 20 + i, city (Lima once, then a cycle of four, one with a space),
 * "hours per week" 1.5 i, clicked i % 2, score i / 10 (so a row's i is 10 * score). */
static void people(const char *name, int n, int labels, const char *extra_city)
{
    static char text[1 << 16];
    size_t k = (size_t)snprintf(text, sizeof text, "id,age,city,hours per week%s\n",
                                labels ? ",clicked,score" : "");
    const char *city[4] = {"Paris", "Oslo", "\"New York\"", "Rome"};
    for (int i = 0; i < n; i++) {
        const char *c = i == 0 ? "Lima" : i >= 40 && extra_city ? extra_city : city[i % 4];
        k += (size_t)snprintf(text + k, sizeof text - k, "r%d,%d,%s,%g", i, 20 + i, c, 1.5 * i);
        if (labels) k += (size_t)snprintf(text + k, sizeof text - k, ",%d,%g", i % 2, i / 10.0);
        text[k++] = '\n';
    }
    text[k] = 0;
    write_file(name, text);
}

/* The [data] keys of a people file; clicked: options of the clicked label; extra: more keys. */
static const char *people_keys(const char *file, int min_count, const char *clicked, const char *extra)
{
    static char buf[2][2048];
    static int k;
    k = !k;
    snprintf(buf[k], sizeof buf[k],
             "path = FILE%s\ndense = age, \"hours per week\"(log as:hours)\n"
             "categorical = city(min_count:%d)\nlabels = clicked%s, score(regression)\nid = id\n"
             "split_fractions = 0.5, 0.25, 0.25\n%s", file, min_count, clicked, extra);
    return buf[k];
}

/* What the train-mode reader made of row i, to compare a second reader against. */
typedef struct { float age, hours, clicked; int32_t city; int seen; } row_values;

static void collect(ts_exp *x, row_values *v, int nv)
{
    for (int s = 0; s < 3; s++) {
        long n = fetch(x, (ts_phase)s);
        for (long j = 0; j < n; j++) {
            int i = (int)lround(field(x, "score")->x[j] * 10);
            assert_true(i >= 0 && i < nv);
            v[i] = (row_values){field(x, "age")->x[j], field(x, "hours")->x[j],
                                field(x, "clicked")->x[j], field(x, "city")->ids[j], 1};
        }
    }
}

static void test_dense_categorical_labels(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    ts_data *D = ts_exp_data(x);
    assert_int_equal(D->nrows[0], 20);
    assert_int_equal(D->nrows[1], 10);
    assert_int_equal(D->nrows[2], 10);
    ts_tensor *age = field(x, "age"), *city = field(x, "city");
    assert_int_equal(age->dtype, TS_F32);
    assert_int_equal(city->dtype, TS_I32);
    assert_int_equal(city->dim[1], 1);
    assert_int_equal(city->vocab, 5);        /* four cities seen twice or more, and id 0 */
    assert_false(has_field(x, "id"));        /* an id is aux row_id, never a feature */
    /* the training rows: standardised with their own mean and deviation */
    long n = fetch(x, TS_TRAIN);
    double s1 = 0, s2 = 0, h1 = 0, raw = 0;
    for (long j = 0; j < n; j++) {
        int i = (int)lround(field(x, "score")->x[j] * 10);
        s1 += age->x[j];
        s2 += (double)age->x[j] * age->x[j];
        h1 += field(x, "hours")->x[j];
        raw += 20 + i;
        assert_true(field(x, "clicked")->x[j] == (float)(i % 2));
        assert_true(city->ids[j] == 0 ? i == 0 : city->ids[j] >= 1 && city->ids[j] < 5);
    }
    assert_true(fabs(s1 / n) < 1e-6 && fabs(s2 / n - 1) < 1e-5 && fabs(h1 / n) < 1e-5);
    /* one id per city, the same in every split */
    row_values v[40];
    memset(v, 0, sizeof v);
    collect(x, v, 40);
    for (int i = 1; i < 40; i++) {
        assert_true(v[i].seen);
        for (int j = 1; j < i; j++) assert_true((v[i].city == v[j].city) == (i % 4 == j % 4));
        /* age is (20 + i - mean) / sd: increasing in i */
        assert_true(v[i].age > v[i - 1].age);
    }
    assert_int_equal(v[0].city, 0);          /* Lima: seen once, under min_count 2 */
    assert_int_equal(aux_long(x, "unseen_values"), 1);
    assert_int_equal(aux_long(x, "skipped_rows"), 0);
    ts_exp_free(x);
}

static void test_random_split_is_a_partition(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    int count[40] = {0};
    for (int s = 0; s < 3; s++) {
        long n = fetch(x, (ts_phase)s);
        for (long j = 0; j < n; j++) count[lround(field(x, "score")->x[j] * 10)]++;
    }
    for (int i = 0; i < 40; i++) assert_int_equal(count[i], 1);
    ts_exp_free(x);
    /* another split_seed, another split; the same seed, the same one */
    const char *keys = people_keys("people.csv", 2, "", "split_seed = 7");
    ts_exp *a = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    fetch(a, TS_TEST);
    float first[10], second[10];
    for (int j = 0; j < 10; j++) first[j] = field(a, "score")->x[j];
    ts_exp_free(a);
    ts_exp *b = must_open(keys, "clicked", TS_OPEN_TRAIN, NULL);
    fetch(b, TS_TEST);
    for (int j = 0; j < 10; j++) second[j] = field(b, "score")->x[j];
    ts_exp_free(b);
    assert_true(memcmp(first, second, sizeof first) != 0);
}

static void test_fitted_state_round_trip(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    row_values v[40];
    collect(x, v, 40);
    char *text = save_state(x, "state.txt");
    ts_exp_free(x);
    assert_true(!strncmp(text, "tessera-table-state 1\n", 22));
    free(text);
    /* the same rows and two new ones (an unseen city) read with the state: nothing refitted */
    people("new.csv", 42, 1, "Quito");
    ts_exp *y = must_open(people_keys("new.csv", 2, "", ""), "clicked", TS_OPEN_EVALUATE, in_tmp("state.txt"));
    ts_data *D = ts_exp_data(y);
    assert_int_equal(D->nrows[TS_TRAIN], 0);
    assert_int_equal(D->nrows[TS_VALID], 0);
    assert_int_equal(D->nrows[TS_TEST], 42);
    assert_int_equal(fetch(y, TS_TEST), 42);
    const void *p;
    long n;
    assert_int_equal(ts_exp_data_ops(y)->aux(D, "row_id", &p, &n), 0);
    assert_int_equal(n, 42);
    for (int i = 0; i < 42; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        assert_string_equal(((const char *const *)p)[i], id);   /* file order */
        if (i >= 40) { assert_int_equal(field(y, "city")->ids[i], 0); continue; }
        /* bit for bit what the training reader made of the row */
        assert_true(field(y, "age")->x[i] == v[i].age);
        assert_true(field(y, "hours")->x[i] == v[i].hours);
        assert_true(field(y, "clicked")->x[i] == v[i].clicked);
        assert_int_equal(field(y, "city")->ids[i], v[i].city);
    }
    assert_int_equal(aux_long(y, "unseen_values"), 3);   /* Lima and the two Quito rows */
    assert_int_equal(field(y, "city")->vocab, 5);
    ts_exp_free(y);
}

static void test_state_must_match_the_declaration(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_TRAIN, NULL);
    free(save_state(x, "state.txt"));
    ts_exp_free(x);
    ts_err e;
    ts_exp *y = open_table(people_keys("people.csv", 3, "", ""), "clicked", TS_OPEN_EVALUATE, in_tmp("state.txt"), &e);
    if (y) { ts_exp_free(y); fail_msg("a changed declaration was read with an old state"); }
    tu_contains(e.msg, "the fitted state, line", "min_count=3", "changed since the run was trained",
                NULL);
    write_file("junk.txt", "hello\n");
    y = open_table(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_EVALUATE, in_tmp("junk.txt"), &e);
    if (y) { ts_exp_free(y); fail_msg("a junk state was read"); }
    tu_contains(e.msg, "does not start with \"tessera-table-state 1\"", NULL);
    /* applying a run needs its state */
    y = open_table(people_keys("people.csv", 2, "", ""), "clicked", TS_OPEN_PREDICT, NULL, &e);
    if (y) { ts_exp_free(y); fail_msg("predict without a state"); }
    tu_contains(e.msg, "fitted state", "data_state.txt", NULL);
}

static void test_predict_without_label_columns(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    ts_exp *x = must_open(people_keys("people.csv", 2, "(mask:has_click)", ""), "clicked", TS_OPEN_TRAIN, NULL);
    row_values v[40];
    collect(x, v, 40);
    free(save_state(x, "state.txt"));
    ts_exp_free(x);
    people("unlabelled.csv", 40, 0, NULL);
    const char *k2 = people_keys("unlabelled.csv", 2, "(mask:has_click)", "");
    ts_exp *y = must_open(k2, "clicked", TS_OPEN_PREDICT, in_tmp("state.txt"));
    assert_int_equal(fetch(y, TS_TEST), 40);
    for (int i = 0; i < 40; i++) {
        assert_true(field(y, "age")->x[i] == v[i].age);
        assert_true(field(y, "clicked")->x[i] == 0 && field(y, "has_click")->x[i] == 0);
        assert_true(field(y, "score")->x[i] == 0);
    }
    ts_exp_free(y);
    /* evaluating needs the labels */
    ts_err e;
    y = open_table(k2, "clicked", TS_OPEN_EVALUATE, in_tmp("state.txt"), &e);
    if (y) { ts_exp_free(y); fail_msg("evaluate without labels"); }
    tu_contains(e.msg, "\"clicked\"", "unlabelled.csv", NULL);
}


/* The fitted state's vocabulary of one field, one word a line, in id order (ids 1, 2, ...). */
static const char *vocab_of(const char *state, const char *fieldname)
{
    static char out[4096];
    char key[128];
    snprintf(key, sizeof key, "field=%s ", fieldname);
    const char *p = strstr(state, key);
    assert_non_null(p);
    p = strstr(p, "\nvocab ");
    assert_non_null(p);
    int n = atoi(p + 7);
    p = strchr(p + 1, '\n') + 1;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const char *nl = strchr(p, '\n');
        k += (size_t)snprintf(out + k, sizeof out - k, "%.*s|", (int)(nl - p), p);
        p = nl + 1;
    }
    out[k] = 0;
    return out;
}

static char *train_state(const char *keys, const char *label)
{
    ts_exp *x = must_open(keys, label, TS_OPEN_TRAIN, NULL);
    char *s = save_state(x, "state.txt");
    ts_exp_free(x);
    return s;
}

static void test_quotes_crlf_bom_and_names_with_spaces(void **st)
{
    (void)st;
    write_file("quote.csv", "\xEF\xBB\xBF" "age,\"city, country\",note\r\n"
               "1,\"Paris, France\",a\r\n"
               "2,\"say \"\"hi\"\"\",b\r\n"
               "3,\"line one\r\nline two\",c\r\n"
               "4,  plain  ,d\r\n"
               "\r\n"
               "5, \"spaced\" ,e\r\n");
    char *s = train_state("path = FILEquote.csv\ndense = age\ncategorical = \"city, country\"(as:city)\n"
                          "split_fractions = 1, 0, 0\nvocab_order = first", "age");
    assert_string_equal(vocab_of(s, "city"),
                        "Paris, France|say \"hi\"|line one\\nline two|plain|spaced|");
    free(s);
    /* a bad row after a quoted field of two lines: the line number counts both */
    write_file("quote2.csv", "age,city\n1,\"a\nb\"\n2\n");
    must_fail("path = FILEquote2.csv\ndense = age\ncategorical = city", "age",
              "quote2.csv:4:", "expected 2 fields", NULL);
    /* quoting = false: quotes are text */
    write_file("noquote.tsv", "age\tcity\n1\t\"x\"\n2\ty\n");
    s = train_state("path = FILEnoquote.tsv\nseparator = tab\nquoting = false\ndense = age\n"
                    "categorical = city\nsplit_fractions = 1, 0, 0\nvocab_order = first", "age");
    assert_string_equal(vocab_of(s, "city"), "\"x\"|y|");
    free(s);
}

static void test_separators_headers_and_gzip(void **st)
{
    (void)st;
    /* no header: columns = names them; a two-character separator */
    write_file("plain.txt", "1::a|b::x\n2::b::y\n3::::z\n");
    char *s = train_state("path = FILEplain.txt\nheader = false\nseparator = \"::\"\n"
                          "columns = age, tags, \"the note\"\ndense = age\nmulti = tags\n"
                          "categorical = \"the note\"\nsplit_fractions = 1, 0, 0\n"
                          "vocab_order = first", "age");
    assert_string_equal(vocab_of(s, "tags"), "a|b|");
    assert_string_equal(vocab_of(s, "the_note"), "x|y|z|");
    free(s);
    /* no header, no names: 0, 1, 2 (fields c0, c1, ...) */
    s = train_state("path = FILEplain.txt\nheader = false\nseparator = \"::\"\ndense = 0(as:age)\n"
                    "categorical = 2\nsplit_fractions = 1, 0, 0\nvocab_order = first", "age");
    assert_string_equal(vocab_of(s, "c2"), "x|y|z|");
    free(s);
    /* gzip, semicolons */
    gzFile gz = gzopen(in_tmp("semi.csv.gz"), "wb");
    assert_non_null(gz);
    gzputs(gz, "age;city\n1;Oslo\n2;Rome\n3;Oslo\n");
    gzclose(gz);
    s = train_state("path = FILEsemi.csv.gz\nseparator = semicolon\ndense = age\ncategorical = city\n"
                    "split_fractions = 1, 0, 0", "age");
    assert_string_equal(vocab_of(s, "city"), "Oslo|Rome|");   /* by training frequency */
    free(s);
}

/* The splitter reads a line 64 bytes at a time: separators, blanks to trim and line ends on
 * either side of those edges read as anywhere else. */
static void test_fields_across_64_byte_edges(void **st)
{
    (void)st;
    char text[4096], pad[200];
    size_t k = (size_t)snprintf(text, sizeof text, "age,c\n");
    memset(pad, ' ', sizeof pad);
    /* the separator at byte 62, 63, 64 and 127, 128 of the line (the age after blanks) */
    int at[] = {62, 63, 64, 127, 128};
    for (int i = 0; i < 5; i++)
        k += (size_t)snprintf(text + k, sizeof text - k, "%.*s%d,s%d\n", at[i] - 1, pad, i + 1, at[i]);
    /* a value whose trailing blanks, or leading ones, run over byte 64; a line of exactly 64
     * and of 128 bytes; an empty last field ending at byte 64 */
    k += (size_t)snprintf(text + k, sizeof text - k, "6,w%.*s\n", 70, pad);
    k += (size_t)snprintf(text + k, sizeof text - k, "7,%.*sz\n", 70, pad);
    k += (size_t)snprintf(text + k, sizeof text - k, "8,%.*sL64\n", 64 - 2 - 3, pad);
    k += (size_t)snprintf(text + k, sizeof text - k, "9,%.*sL128\n", 128 - 2 - 4, pad);
    k += (size_t)snprintf(text + k, sizeof text - k, "%.*s10,\n", 64 - 3, pad);
    assert_true(k < sizeof text);
    write_file("edges.csv", text);
    char *s = train_state("path = FILEedges.csv\ndense = age\ncategorical = c\nmissing_values = NA\n"
                          "split_fractions = 1, 0, 0\nvocab_order = first", "age");
    assert_string_equal(vocab_of(s, "c"), "s62|s63|s64|s127|s128|w|z|L64|L128||");
    assert_non_null(strstr(s, "\ndense -inf inf 5.5 5.5 2.87228"));   /* ages 1..10 */
    free(s);
}

/* ---- gzip read as the plain file: the line reader's blocks, ISA-L's or zlib's inflate ------ */
/* A table of n rows (about 80 bytes each) with what splits and joins lines differently: CRLF
 * endings, quoted separators and a quoted field over two lines, UTF-8, blank lines, one row
 * whose note is longer than the line reader's block (256 KiB), so lines fall across every
 * block boundary. Deterministic (an LCG); *len gets the byte count. */
static char *big_table(int n, size_t *len)
{
    static const char *city[] = {"Oslo", "\"Paris, France\"", "Z\xc3\xbcrich", "Lima", "S\xc3\xa3o Paulo",
                                 "\"say \"\"hi\"\"\"", "Rome"};
    size_t cap = (size_t)n * 120 + (1 << 20), k = 0;
    char *t = malloc(cap);
    assert_non_null(t);
    uint64_t r = 2026;
    k += (size_t)snprintf(t + k, cap - k, "age,city,note,score,label\n");
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        unsigned v = (unsigned)(r >> 33);
        if (i == n / 3) {                             /* one line longer than a block */
            k += (size_t)snprintf(t + k, cap - k, "%d,Oslo,", i % 90);
            memset(t + k, 'x', 300000);
            k += 300000;
            k += (size_t)snprintf(t + k, cap - k, ",1.5,1\n");
            continue;
        }
        if (v % 97 == 0) k += (size_t)snprintf(t + k, cap - k, "\n");   /* blank */
        const char *end = v % 5 == 0 ? "\r\n" : "\n";
        if (v % 211 == 0)                             /* a quoted note over two lines */
            k += (size_t)snprintf(t + k, cap - k, "%u,%s,\"two\nlines %u\",%u.%02u,%u%s",
                                  v % 90, city[v % 7], v % 13, v % 1000, v % 100, (v >> 7) % 2, end);
        else
            k += (size_t)snprintf(t + k, cap - k, "%u, %s ,note %u of the row %d,%u.%02u,%u%s",
                                  v % 90, city[v % 7], v % 1013, i % 7, v % 1000, v % 100, (v >> 7) % 2,
                                  end);
    }
    *len = k;
    return t;
}

/* Writes text[0..n) to a gzip file: members cut at the given byte offsets (mid-line), as
 * `cat a.gz b.gz` makes, one of them empty; after: bytes appended after the last member. */
static void write_gz(const char *path, const char *text, size_t n, const size_t *cuts, int ncut,
                     const char *after)
{
    unlink(path);
    size_t at = 0;
    for (int c = 0; c <= ncut; c++) {
        size_t to = c < ncut ? cuts[c] : n;
        gzFile gz = gzopen(path, c ? "ab6" : "wb1");   /* "a": a new member at the end */
        assert_non_null(gz);
        if (to > at) assert_int_equal(gzwrite(gz, text + at, (unsigned)(to - at)), (int)(to - at));
        assert_int_equal(gzclose(gz), Z_OK);
        at = to;
    }
    if (after) {
        FILE *f = fopen(path, "ab");
        assert_non_null(f);
        fputs(after, f);
        fclose(f);
    }
}

/* Every field of every row of every split, and the fitted state, as one buffer. */
static char *dump_all(ts_exp *x, size_t *len)
{
    ts_data *D = ts_exp_data(x);
    size_t cap = 1 << 20, k = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    char *state = NULL;
    size_t ns = 0;
    ts_err e;
    if (ts_exp_data_ops(x)->fitted(D, &state, &ns, &e)) fail_msg("%s", e.msg);
    for (int s = 0; s < 3; s++)
        for (long at = 0; at < D->nrows[s]; at += 512) {
            long rows[512];
            int m = (int)(D->nrows[s] - at < 512 ? D->nrows[s] - at : 512);
            for (int i = 0; i < m; i++) rows[i] = at + i;
            if (ts_exp_data_ops(x)->batch(D, (ts_phase)s, rows, m, &e)) fail_msg("%s", e.msg);
            for (int f = 0; f < D->nfield; f++) {
                const ts_tensor *t = &D->field[f];
                size_t b = (size_t)ts_numel(t) * (t->dtype == TS_F32 ? sizeof(float) : sizeof(int32_t));
                assert_true(t->dtype == TS_F32 || t->dtype == TS_I32);
                while (k + b > cap) assert_non_null(out = realloc(out, cap *= 2));
                memcpy(out + k, t->dtype == TS_F32 ? (const void *)t->x : (const void *)t->ids, b);
                k += b;
            }
        }
    while (k + ns > cap) assert_non_null(out = realloc(out, cap *= 2));
    memcpy(out + k, state, ns);
    free(state);
    *len = k + ns;
    return out;
}

static void test_gzip_reads_as_the_plain_file(void **st)
{
    (void)st;
    size_t n;
    char *text = big_table(20000, &n);
    assert_true(n > 4 * (256 << 10));                 /* several blocks of the line reader */
    FILE *f = fopen(in_tmp("big.csv"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
    size_t cuts[] = {n / 5 + 7, n / 5 + 7, n / 2 + 13, 3 * n / 4 + 1};   /* one member empty */
    write_gz(in_tmp("one.csv.gz"), text, n, NULL, 0, NULL);
    write_gz(in_tmp("multi.csv.gz"), text, n, cuts, 4, NULL);
    write_gz(in_tmp("junk.csv.gz"), text, n, cuts, 2, "trailing bytes, not gzip\n");
    /* line by line: the same bytes and line numbers */
    static const char *names[] = {"big.csv", "one.csv.gz", "multi.csv.gz", "junk.csv.gz"};
    char paths[4][600];
    for (int i = 0; i < 4; i++) snprintf(paths[i], sizeof paths[i], "%s", in_tmp(names[i]));
    ts_err e;
    ts_lines *L[4];
    for (int i = 0; i < 4; i++) assert_non_null(L[i] = ts_lines_open(paths[i], &e));
    long lines = 0;
    const char *t = text, *end = text + n;
    for (;;) {
        size_t n0, ni;
        char *l0 = ts_lines_next(L[0], &n0);
        if (l0) {                                     /* the plain file: the text's lines */
            const char *nl = memchr(t, '\n', (size_t)(end - t)), *te = nl ? nl : end;
            while (te > t && te[-1] == '\r') te--;
            assert_int_equal(n0, te - t);
            assert_memory_equal(l0, t, n0);
            t = nl ? nl + 1 : end;
        } else assert_true(t == end);
        for (int i = 1; i < 4; i++) {
            char *li = ts_lines_next(L[i], &ni);
            if (!l0) { assert_null(li); continue; }
            assert_non_null(li);
            assert_int_equal(ni, n0);
            assert_memory_equal(li, l0, n0 + 1);      /* with its NUL */
            assert_int_equal(ts_lines_lineno(L[i]), ts_lines_lineno(L[0]));
        }
        if (!l0) break;
        lines++;
    }
    assert_true(lines > 20000);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ts_lines_error(L[i], &e), 0);
        ts_lines_close(L[i]);
    }
    /* through the table reader: every field of every row, and the fitted state, to the bit */
    const char *keys = "path = FILE%s\ndense = age, score\ncategorical = city, note\nlabels = label\n"
                       "split_seed = 7";
    char k[512];
    size_t n0 = 0;
    char *d0 = NULL;
    for (int i = 0; i < 4; i++) {
        snprintf(k, sizeof k, keys, names[i]);
        ts_exp *x = must_open(k, "label", TS_OPEN_TRAIN, NULL);
        ts_data *D = ts_exp_data(x);
        assert_int_equal(D->nrows[0] + D->nrows[1] + D->nrows[2], 20000);
        size_t ni;
        char *di = dump_all(x, &ni);
        ts_exp_free(x);
        if (!i) { d0 = di; n0 = ni; continue; }
        assert_int_equal(ni, n0);
        assert_memory_equal(di, d0, n0);
        free(di);
    }
    free(d0);
    free(text);
}

/* A gzip file cut short or damaged: a sentence naming the file, never a crash or a silent end. */
static void test_damaged_gzip(void **st)
{
    (void)st;
    size_t n;
    char *text = big_table(3000, &n);
    write_gz(in_tmp("whole.csv.gz"), text, n, NULL, 0, NULL);
    FILE *f = fopen(in_tmp("whole.csv.gz"), "rb");
    assert_non_null(f);
    static unsigned char z[1 << 20];
    size_t nz = fread(z, 1, sizeof z, f);
    fclose(f);
    assert_true(nz > 1000 && nz < sizeof z);
    struct { const char *name; size_t keep; long flip; } bad[] = {
        {"half.csv.gz", 0, -1},            /* cut in the middle of the deflate data */
        {"notrailer.csv.gz", 0, -1},       /* the 8-byte trailer (CRC, length) cut off */
        {"header.csv.gz", 5, -1},          /* only the start of the header */
        {"crc.csv.gz", 0, -2},             /* a wrong CRC in the trailer */
        {"flip.csv.gz", 0, -3},            /* a damaged byte inside the deflate data */
    };
    bad[0].keep = nz / 2;
    bad[1].keep = nz - 8;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        unsigned char *c = malloc(nz);
        assert_non_null(c);
        memcpy(c, z, nz);
        size_t m = bad[i].keep ? bad[i].keep : nz;
        if (bad[i].flip == -2) c[nz - 8] ^= 0x55;
        if (bad[i].flip == -3) c[nz / 3] ^= 0xFF;
        f = fopen(in_tmp(bad[i].name), "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(c, 1, m, f), m);
        fclose(f);
        free(c);
        char k[256];
        snprintf(k, sizeof k, "path = FILE%s\ndense = age, score\ncategorical = city, note\n"
                 "labels = label", bad[i].name);
        ts_err e;
        ts_exp *x = open_table(k, "label", TS_OPEN_TRAIN, NULL, &e);
        if (x) { ts_exp_free(x); fail_msg("%s opened", bad[i].name); }
        tu_contains(e.msg, bad[i].name, "read error after line", "truncated or not gzip", NULL);
        const char *p = strstr(e.msg, bad[i].name);
        assert_null(strstr(p + 1, bad[i].name));      /* the file named once */
    }
    free(text);
}

static void test_encodings(void **st)
{
    (void)st;
    write_file("latin.csv", "age,city\n1,Caf\xe9\n2,Sa\xfao Paulo\n");
    must_fail("path = FILElatin.csv\ndense = age\ncategorical = city", "age",
              "latin.csv:2:", "byte 6 (0xE9, after \"1,Caf\") is not UTF-8", "encoding = latin-1",
              NULL);
    write_file("latin2.csv", "age,city\n1,\"a\nCaf\xe9\"\n");
    must_fail("path = FILElatin2.csv\ndense = age\ncategorical = city", "age",
              "latin2.csv:2:", "byte 4 on line 3 (0xE9", NULL);
    char *s = train_state("path = FILElatin.csv\nencoding = latin-1\ndense = age\ncategorical = city\n"
                          "split_fractions = 1, 0, 0\nvocab_order = first", "age");
    assert_string_equal(vocab_of(s, "city"), "Caf\xc3\xa9|Sa\xc3\xbao Paulo|");
    free(s);
    /* valid UTF-8 passes through; an overlong form and a lone continuation byte do not */
    write_file("utf.csv", "age,city\n1,K\xc3\xb8" "benhavn\n2,\xe2\x82\xac\n");
    s = train_state("path = FILEutf.csv\ndense = age\ncategorical = city\nsplit_fractions = 1, 0, 0\n"
                    "vocab_order = first", "age");
    assert_string_equal(vocab_of(s, "city"), "K\xc3\xb8" "benhavn|\xe2\x82\xac|");
    free(s);
    write_file("over.csv", "age,city\n1,ok\n2,\xc0\xaf\n");
    must_fail("path = FILEover.csv\ndense = age\ncategorical = city", "age", "over.csv:3:",
              "0xC0", NULL);
    write_file("cont.csv", "age,city\n1,\x80x\n");
    must_fail("path = FILEcont.csv\ndense = age\ncategorical = city", "age", "cont.csv:2:",
              "0x80", NULL);
}

static void test_bad_rows(void **st)
{
    (void)st;
    const char *k = "path = FILEbad.csv\ndense = age\ncategorical = city\nlabels = clicked";
    struct { const char *text, *keys, *parts[4]; } cases[] = {
        {"age,city,clicked\n1,a,1\n2,b\n", NULL, {"bad.csv:3:", "expected 3 fields separated by \",\", found 2", "skip_bad_rows"}},
        {"age,city,clicked\n1,a,1\nx31,b,0\n", NULL, {"bad.csv:3:", "column \"age\" is \"x31\", not a number"}},
        {"age,city,clicked\n1e39,a,1\n", NULL, {"bad.csv:2:", "beyond the float range"}},
        {"age,city,clicked\n1,a,1\n?,b,0\n", NULL, {"bad.csv:3:", "column \"age\" is missing (\"?\")", "missing:mean"}},
        {"age,city,clicked\n1,a,2\n", NULL, {"bad.csv:2:", "label column \"clicked\" is 2", "threshold:X"}},
        {"age,city,clicked\n1,a,yes\n", NULL, {"bad.csv:2:", "\"yes\", not a number", "map:WORD:1"}},
        {"age,city,clicked\n1,a,\n", NULL, {"bad.csv:2:", "label column \"clicked\" is empty", "mask:NAME"}},
        {"age,city,clicked\n1,a,maybe\n", "path = FILEbad.csv\ndense = age\ncategorical = city\n"
         "labels = clicked(map:yes:1:no:0)", {"bad.csv:2:", "\"maybe\", which its map: does not list"}},
        {"age,city,clicked\n1,a,1\n2,\"b,0\n", NULL, {"bad.csv:3:", "field 2 opens a quote that is never closed"}},
        {"age,city,clicked\n1,\"a\"x,1\n", NULL, {"bad.csv:2:", "text after its closing quote"}},
        {"age,city,clicked,w\n1,a,1,-1\n", "path = FILEbad.csv\ndense = age\ncategorical = city\n"
         "labels = clicked\nweight = w", {"bad.csv:2:", "weight column \"w\" is \"-1\""}},
        {"age,city,clicked,fold\n1,a,1,trian\n", "path = FILEbad.csv\ndense = age\ncategorical = city\n"
         "labels = clicked\nsplit = column\nsplit_column = fold", {"bad.csv:2:", "split column \"fold\" is \"trian\""}},
        {"age,city,clicked\n", NULL, {"bad.csv", "no data rows"}},
        {"", NULL, {"bad.csv", "the file is empty"}},
        {"age,city,age\n1,a,1\n", NULL, {"bad.csv:1:", "names column \"age\" twice"}},
        {"age,city,clicked\n1,a,1\n", "path = FILEbad.csv\ndense = agee\ncategorical = city\n"
         "labels = clicked", {"exp.ini:7:", "names column \"agee\"", "nearest \"age\""}},
        {"age,city,clicked\n1,a,1\n", "path = FILEbad.csv\ndense = age(lgo)\ncategorical = city\n"
         "labels = clicked", {"exp.ini:7:", "option lgo", "log clip missing scale"}},
        {"age,city,clicked\n1,a,1\n", "path = FILEbad.csv\ndense = age(log\ncategorical = city\n"
         "labels = clicked", {"exp.ini:7:", "no closing ')'"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file("bad.csv", cases[i].text);
        ts_err e;
        ts_exp *x = open_table(cases[i].keys ? cases[i].keys : k, "clicked", TS_OPEN_TRAIN, NULL, &e);
        if (x) { ts_exp_free(x); fail_msg("case %zu opened but should fail", i); }
        for (int j = 0; j < 4 && cases[i].parts[j]; j++)
            if (!strstr(e.msg, cases[i].parts[j]))
                fail_msg("case %zu: message lacks \"%s\": %s", i, cases[i].parts[j], e.msg);
    }
    /* a derived label with a mask: a missing value is masked, not made a negative */
    write_file("mask.csv", "n,y\n0,yes\n1,?\n2,no\n3,\n");
    ts_exp *m = must_open("path = FILEmask.csv\ndense = n(scale:none as:age)\n"
                          "labels = y(positive:yes mask:has_y)\nsplit_fractions = 1, 0, 0", "y",
                          TS_OPEN_TRAIN, NULL);
    long nm = fetch(m, TS_TRAIN);
    for (long j = 0; j < nm; j++) {
        int i = (int)field(m, "age")->x[j];
        assert_true(field(m, "y")->x[j] == (i == 0 ? 1.0f : 0.0f));
        assert_true(field(m, "has_y")->x[j] == (i % 2 == 0 ? 1.0f : 0.0f));
    }
    ts_exp_free(m);
    /* skip_bad_rows keeps the good rows and counts the rest */
    write_file("bad.csv", "age,city,clicked\n1,a,1\n2,b\n3,c,0\nx,d,1\n4,\xff,1\n5,e,1\n6,\"f,1\n");
    ts_exp *x = must_open("path = FILEbad.csv\ndense = age\ncategorical = city\nlabels = clicked\n"
                          "skip_bad_rows = true\nsplit_fractions = 1, 0, 0", "clicked", TS_OPEN_TRAIN, NULL);
    assert_int_equal(ts_exp_data(x)->nrows[TS_TRAIN], 3);
    assert_int_equal(aux_long(x, "skipped_rows"), 4);
    ts_exp_free(x);
}

static void test_dense_transforms(void **st)
{
    (void)st;
    /* v = 0, 1, ..., 9 and one missing; 100 once (an outlier) */
    write_file("num.csv", "a,b,c,d,e\n0,0,0,0,0\n1,1,1,1,1\n2,2,2,2,2\n3,3,3,3,3\n4,4,4,4,4\n"
               "?,?,100,?,5\n");
    ts_exp *x = must_open("path = FILEnum.csv\ndense = a(missing:mean), b(missing:0 scale:none),"
                          " c(clip:0:4 scale:none), d(missing:mean scale:minmax), e(log scale:none)\n"
                          "split_fractions = 1, 0, 0\nlabels = \n", "a", TS_OPEN_TRAIN, NULL);
    long n = fetch(x, TS_TRAIN);
    assert_int_equal(n, 6);
    for (long j = 0; j < n; j++) {
        float e = field(x, "e")->x[j], v = expm1f(e);       /* e = log(1 + v) */
        int i = (int)lroundf(v);
        assert_true(fabsf(e - (float)log1p(i)) < 1e-6f);
        float a = field(x, "a")->x[j], b = field(x, "b")->x[j], c = field(x, "c")->x[j], d = field(x, "d")->x[j];
        if (i == 5) {   /* the missing row */
            assert_true(fabsf(a) < 1e-6f);                  /* the mean, standardised */
            assert_true(b == 0);                            /* filled with 0, not scaled */
            assert_true(c == 4);                            /* 100 clipped */
            assert_true(fabsf(d - 0.5f) < 1e-6f);           /* mean 2 of 0..4 */
        } else {
            assert_true(b == (float)i && c == (float)i);
            assert_true(fabsf(d - i / 4.0f) < 1e-6f);
        }
    }
    ts_exp_free(x);
    /* percentile bounds are fitted and saved */
    char *s = train_state("path = FILEnum.csv\ndense = c(clip:p0:p50 scale:none), a(missing:mean)\n"
                          "split_fractions = 1, 0, 0\nlabels = \n", "a");
    assert_non_null(strstr(s, "\ndense 0 2.5 "));          /* 0,1,2,3,4,100: median 2.5 */
    free(s);
}


/* Users u0..u9: user k has 1 + k % 4 rows, written latest first; the j-th oldest has time
 * 100 k + j, item i((3 k + j) % 20) and fold train / valid / test by the row's number % 3. */
static int inter_user[40], inter_j[40], inter_m[40];

static int interactions(const char *name)
{
    static char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "row,user,item,t,fold\n");
    int r = 0;
    static const char *fold[3] = {"train", "Valid", "TEST"};
    for (int k = 0; k < 10; k++)
        for (int j = k % 4; j >= 0; j--, r++) {
            inter_user[r] = k, inter_j[r] = j, inter_m[r] = 1 + k % 4;
            n += (size_t)snprintf(text + n, sizeof text - n, "%d,u%d,i%d,%d,%s\n", r, k,
                                  (3 * k + j) % 20, 100 * k + j, fold[r % 3]);
        }
    write_file(name, text);
    return r;
}

static const char *inter_keys(const char *extra)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "path = FILEinter.csv\ndense = row(scale:none)\ncategorical = user, item\n"
             "user = user\ntime = t\n%s", extra);
    return buf;
}

/* The split of each row (by its row field), -1 when absent. */
static void splits_of(ts_exp *x, int *which, int n)
{
    for (int i = 0; i < n; i++) which[i] = -1;
    for (int s = 0; s < 3; s++) {
        long m = fetch(x, (ts_phase)s);
        for (long j = 0; j < m; j++) {
            int r = (int)field(x, "row")->x[j];
            assert_true(r >= 0 && r < n && which[r] == -1);
            which[r] = s;
        }
    }
}

static void test_splits_by_user_time_and_column(void **st)
{
    (void)st;
    int nrow = interactions("inter.csv"), which[40], users[3] = {0, 0, 0};
    assert_int_equal(nrow, 23);                          /* 10 users */
    ts_exp *x = must_open(inter_keys("split = user"), "row", TS_OPEN_TRAIN, NULL);
    splits_of(x, which, nrow);
    ts_exp_free(x);
    for (int r = 0; r < nrow; r++) {
        assert_true(which[r] >= 0);
        for (int q = 0; q < r; q++)                      /* a user's rows: one split */
            if (inter_user[q] == inter_user[r]) assert_int_equal(which[q], which[r]);
        if (inter_j[r] == 0) users[which[r]]++;
    }
    assert_int_equal(users[0], 6);
    assert_int_equal(users[1], 2);
    assert_int_equal(users[2], 2);
    /* leave-last-out: each user's latest row is test, the one before valid (3 rows or more) */
    x = must_open(inter_keys("split = time"), "row", TS_OPEN_TRAIN, NULL);
    splits_of(x, which, nrow);
    ts_exp_free(x);
    for (int r = 0; r < nrow; r++) {
        int m = inter_m[r], j = inter_j[r];
        int want = m >= 2 && j == m - 1 ? TS_TEST : m >= 3 && j == m - 2 ? TS_VALID : TS_TRAIN;
        assert_int_equal(which[r], want);
    }
    /* a column names the split (any case) */
    x = must_open(inter_keys("split = column\nsplit_column = fold"), "row", TS_OPEN_TRAIN, NULL);
    splits_of(x, which, nrow);
    ts_exp_free(x);
    for (int r = 0; r < nrow; r++) assert_int_equal(which[r], r % 3);
    must_fail("path = FILEinter.csv\ndense = row\nuser = user\nsplit = time", "row",
              "split = time needs time =", NULL);
}

static void test_multi_sequence_hash_and_shared_vocab(void **st)
{
    (void)st;
    write_file("seq.csv", "id,genres,hist,last\n0,a|b|c,x1|x2|x3|x4|x5,x5\n1,b,x2,x2\n2,,,x9\n"
               "3,c| c |a,x5;x1|x1,x1\n");
    ts_exp *x = must_open("path = FILEseq.csv\ndense = id(scale:none)\nmulti = genres\n"
                          "sequence = hist(max:3 sep:|), hist(max:2 out:bag as:hbag)\n"
                          "categorical = last(vocab:hist), id(hash:7 seed:3 as:hid)\n"
                          "split_fractions = 1, 0, 0", "id", TS_OPEN_TRAIN, NULL);
    ts_tensor *g = field(x, "genres"), *h = field(x, "hist"), *hb = field(x, "hbag"),
              *last = field(x, "last"), *hid = field(x, "hid");
    assert_int_equal(g->dtype, TS_BAGS);
    assert_int_equal(h->dtype, TS_I32);
    assert_int_equal(h->dim[1], 3);
    assert_int_equal(hb->dtype, TS_BAGS);
    assert_int_equal(hid->vocab, 7);
    assert_int_equal(last->vocab, h->vocab);
    long n = fetch(x, TS_TRAIN);
    assert_int_equal(n, 4);
    int32_t hist_id[4][3], hl[4], gid[4][3], gn[4], lastid[4], hbn[4], hbl[4][2];
    for (long j = 0; j < n; j++) {
        int i = (int)field(x, "id")->x[j];
        gn[i] = g->off[j + 1] - g->off[j];
        for (int k = 0; k < gn[i]; k++) gid[i][k] = g->ids[g->off[j] + k];
        hl[i] = h->len[j];
        for (int k = 0; k < 3; k++) hist_id[i][k] = h->ids[j * 3 + k];
        hbn[i] = hb->off[j + 1] - hb->off[j];
        for (int k = 0; k < hbn[i]; k++) hbl[i][k] = hb->ids[hb->off[j] + k];
        lastid[i] = last->ids[j];
        assert_true(hid->ids[j] >= 0 && hid->ids[j] < 7);
    }
    assert_int_equal(gn[0], 3);
    assert_int_equal(gn[1], 1);
    assert_int_equal(gn[2], 0);                          /* an empty field: an empty bag */
    assert_int_equal(gn[3], 3);
    assert_int_equal(gid[1][0], gid[0][1]);              /* b */
    assert_int_equal(gid[3][0], gid[0][2]);              /* c, trimmed */
    assert_int_equal(gid[3][1], gid[0][2]);
    assert_int_equal(gid[3][2], gid[0][0]);              /* a */
    assert_int_equal(hl[0], 3);                          /* x3 x4 x5: the latest three */
    assert_int_equal(hl[1], 1);
    assert_int_equal(hist_id[1][1], 0);                  /* padding */
    assert_int_equal(hl[2], 1);                          /* an empty history: one padding id */
    assert_int_equal(hist_id[2][0], 0);
    assert_int_equal(hl[3], 2);                          /* "x5;x1" is one value with sep | */
    assert_true(hist_id[3][0] >= 1 && hist_id[3][0] != hist_id[0][2]);   /* "x5;x1" is not x5 */
    assert_int_equal(lastid[0], hist_id[0][2]);          /* x5: one id in the shared vocabulary */
    assert_int_equal(lastid[1], hist_id[1][0]);          /* x2 */
    assert_int_equal(lastid[2], 0);                      /* x9: not in hist's vocabulary */
    assert_int_equal(lastid[3], hist_id[3][1]);          /* x1 */
    assert_int_equal(hbn[0], 2);
    assert_int_equal(hbl[0][0], hist_id[0][1]);          /* x4 x5 */
    assert_int_equal(hbl[0][1], hist_id[0][2]);
    ts_exp_free(x);
    /* hashing: the same value, the same bucket, whatever the file; max:auto is fitted */
    char *s = train_state("path = FILEseq.csv\ndense = id\ncategorical = last(hash:1000 seed:5)\n"
                          "sequence = hist(max:auto)\nsplit_fractions = 1, 0, 0", "id");
    assert_non_null(strstr(s, "hash=1000 seed=5"));
    assert_non_null(strstr(s, "\nlength 5\n"));          /* lengths 5, 1, 0, 2: p95 = 5 */
    free(s);
}

static void test_groups(void **st)
{
    (void)st;
    write_file("grp.csv", "id,x,y,city,tags\n0,1,10,a,p|q\n1,2,20,b,\n2,3,30,a,q\n");
    ts_exp *x = must_open("path = FILEgrp.csv\ndense = id(scale:none), x, y\ncategorical = city\n"
                          "multi = tags\ngroups = nums(x y), cats(city tags), ids(id)\n"
                          "column_fields = ungrouped\nsplit_fractions = 1, 0, 0", "id", TS_OPEN_TRAIN, NULL);
    assert_false(has_field(x, "x"));
    assert_false(has_field(x, "city"));
    ts_tensor *nums = field(x, "nums"), *cats = field(x, "cats"), *ids = field(x, "ids");
    assert_int_equal(nums->dtype, TS_F32);
    assert_int_equal(nums->dim[1], 2);
    assert_int_equal(cats->dtype, TS_BAGS);                /* a multi member: bags per cell */
    assert_int_equal(cats->dim[1], 2);
    assert_int_equal(cats->vocab, 3 + 3);                  /* city a, b + OOV; tags p, q + OOV */
    long n = fetch(x, TS_TRAIN);
    for (long j = 0; j < n; j++) {
        int i = (int)ids->x[j];
        assert_true(fabsf(nums->x[2 * j] - nums->x[2 * j + 1]) < 1e-5f);   /* x, y standardised alike */
        int32_t c0 = cats->off[2 * j], c1 = cats->off[2 * j + 1], c2 = cats->off[2 * j + 2];
        assert_int_equal(c1 - c0, 1);                      /* a categorical cell: one id */
        assert_true(cats->ids[c0] >= 1 && cats->ids[c0] < 3);
        assert_int_equal(c2 - c1, i == 0 ? 2 : i == 1 ? 0 : 1);
        for (int32_t k = c1; k < c2; k++) assert_true(cats->ids[k] >= 4 && cats->ids[k] < 6);
    }
    ts_exp_free(x);
    /* categorical members only: one I32 (B, F) id space with offsets */
    x = must_open("path = FILEgrp.csv\ndense = id(scale:none)\ncategorical = city, x\n"
                  "groups = cats(city x)\nsplit_fractions = 1, 0, 0", "id", TS_OPEN_TRAIN, NULL);
    ts_tensor *c = field(x, "cats");
    assert_int_equal(c->dtype, TS_I32);
    assert_int_equal(c->vocab, 3 + 4);
    n = fetch(x, TS_TRAIN);
    for (long j = 0; j < n; j++) {
        assert_int_equal(c->ids[2 * j], field(x, "city")->ids[j]);
        assert_int_equal(c->ids[2 * j + 1], 3 + field(x, "x")->ids[j]);
    }
    ts_exp_free(x);
    /* grouped columns only the group reads are read into its rows: the same ids, the unseen
     * value counted, and the same again from the fitted state */
    write_file("grp2.csv", "id,x,y,city\n0,1,10,a\n1,2,20,b\n2,3,30,a\n3,4,40,c\n4,5,50,a\n");
    const char *k = "path = FILEgrp2.csv\ndense = id(scale:none), x, y\n"
                    "categorical = city(min_count:2), x(as:xc)\ngroups = cats(city xc), nums(x y)\n"
                    "column_fields = ungrouped\nsplit_fractions = 1, 0, 0";
    x = must_open(k, "id", TS_OPEN_TRAIN, NULL);
    assert_int_equal(aux_long(x, "unseen_values"), 2);      /* b and c: seen once each */
    free(save_state(x, "state.txt"));
    int32_t gid[5][2];
    float nv[5][2];
    n = fetch(x, TS_TRAIN);
    for (long j = 0; j < n; j++) {
        int i = (int)field(x, "id")->x[j];
        memcpy(gid[i], field(x, "cats")->ids + 2 * j, sizeof gid[i]);
        memcpy(nv[i], field(x, "nums")->x + 2 * j, sizeof nv[i]);
    }
    ts_exp_free(x);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gid[i][0], i % 2 == 0 ? 1 : 0);     /* a, or the OOV id */
        assert_true(gid[i][1] >= 2 && gid[i][1] < 2 + 6);     /* x's ids after city's two */
    }
    x = must_open(k, "id", TS_OPEN_EVALUATE, in_tmp("state.txt"));
    assert_int_equal(fetch(x, TS_TEST), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(field(x, "cats")->ids[2 * i], gid[i][0]);
        assert_int_equal(field(x, "cats")->ids[2 * i + 1], gid[i][1]);
        assert_true(field(x, "nums")->x[2 * i] == nv[i][0] && field(x, "nums")->x[2 * i + 1] == nv[i][1]);
    }
    assert_int_equal(aux_long(x, "unseen_values"), 2);
    ts_exp_free(x);
    must_fail("path = FILEgrp.csv\ndense = x\ncategorical = city\ngroups = g(x city)", "x",
              "mixes dense and categorical", NULL);
}

static void test_side_tables(void **st)
{
    (void)st;
    write_file("items.csv", "item,genres,price\ni1,a|b,10\ni2,b,20\ni3,,30\n");
    write_file("users.tsv", "uid\tage\nu1\t30\nu2\t40\n");
    write_file("main.csv", "n,user,item,clicked\n0,u1,i1,1\n1,u1,i2,0\n2,u2,i3,1\n3,u2,i9,0\n"
               "4,u3,i1,1\n");
    ts_exp *x = must_open("path = FILEmain.csv\ntables = items(path:items.csv key:item),\n"
                          "    people(path:users.tsv key:uid on:user sep:tab)\n"
                          "dense = n(scale:none), price(table:items scale:none), age(table:people)\n"
                          "multi = genres(table:items)\ncategorical = item, user\nlabels = clicked\n"
                          "split_fractions = 1, 0, 0", "clicked", TS_OPEN_TRAIN, NULL);
    assert_int_equal(aux_long(x, "missing_keys"), 2);     /* i9 and u3 */
    long n = fetch(x, TS_TRAIN);
    ts_tensor *g = field(x, "genres");
    float price[5], age[5];
    int ng[5];
    for (long j = 0; j < n; j++) {
        int i = (int)field(x, "n")->x[j];
        price[i] = field(x, "price")->x[j];
        age[i] = field(x, "age")->x[j];
        ng[i] = g->off[j + 1] - g->off[j];
    }
    assert_true(price[0] == 10 && price[1] == 20 && price[2] == 30 && price[4] == 10);
    assert_true(fabsf(price[3] - 17.5f) < 1e-5f);          /* a missing key: the training mean */
    assert_int_equal(ng[0], 2);
    assert_int_equal(ng[2], 0);
    assert_int_equal(ng[3], 0);
    assert_true(age[0] == age[1] && age[0] < 0 && age[2] > 0);
    assert_true(fabsf(age[4]) < 1e-6f);                    /* u3: no row, the mean */
    ts_exp_free(x);
    write_file("items2.csv", "item,genres,price\ni1,a,1\ni1,b,2\n");
    must_fail("path = FILEmain.csv\ntables = items(path:items2.csv key:item)\n"
              "dense = price(table:items)\nlabels = clicked", "clicked",
              "items2.csv:3:", "key \"i1\" was the key of line 2 already", NULL);
    must_fail("path = FILEmain.csv\ndense = price(table:itemz)\nlabels = clicked", "clicked",
              "table:itemz", "tables = NAME(path:FILE key:COLUMN)", NULL);
}

/* 20 users: u0..u9 each watched "big" 5 times and small<k> once; u10..u19 each watched solo<k>. */
static void implicit_file(void)
{
    static char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "user,item\n");
    for (int k = 0; k < 10; k++) {
        for (int j = 0; j < 5; j++) n += (size_t)snprintf(text + n, sizeof text - n, "u%d,big\n", k);
        n += (size_t)snprintf(text + n, sizeof text - n, "u%d,small%d\n", k, k);
    }
    for (int k = 10; k < 20; k++) n += (size_t)snprintf(text + n, sizeof text - n, "u%d,solo%d\n", k, k);
    write_file("implicit.csv", text);
}

/* The sampled rows of every split: checks them and returns how often "big" was drawn for
 * u10..u19 (who never watched it). */
static int check_negatives(ts_exp *x, const char *state, int k)
{
    ts_data *D = ts_exp_data(x);
    char items[4096], users[4096];
    snprintf(items, sizeof items, "%s", vocab_of(state, "item"));
    snprintf(users, sizeof users, "%s", vocab_of(state, "user"));
    int big = 0, watched[64][64];
    memset(watched, 0, sizeof watched);
    long n = fetch(x, TS_TRAIN), pos = 0;
    for (long j = 0; j < n; j++)
        if (field(x, "label")->x[j] == 1) watched[field(x, "user")->ids[j]][field(x, "item")->ids[j]] = 1;
    for (int s = 0; s < 3; s++) {
        n = fetch(x, (ts_phase)s);
        int32_t own = -1;
        for (long j = 0; j < n; j++) {
            int32_t u = field(x, "user")->ids[j], it = field(x, "item")->ids[j];
            if (field(x, "label")->x[j] == 1) { own = it; pos++; continue; }
            assert_true(it >= 1 && it < field(x, "item")->vocab);
            assert_true(it != own && !watched[u][it]);   /* never an item the user has */
            /* u10..u19 (or a user without training rows: one of them) never watched big */
            const char *p = users;
            for (int q = 1; q < u; q++) p = strchr(p, '|') + 1;
            const char *b = items;
            for (int q = 1; q < it; q++) b = strchr(b, '|') + 1;
            if ((u == 0 || atoi(p + 1) >= 10) && !strncmp(b, "big|", 4)) big++;
        }
    }
    assert_int_equal(D->nrows[0] + D->nrows[1] + D->nrows[2], pos * (k + 1));
    return big;
}

static void test_negative_sampling(void **st)
{
    (void)st;
    implicit_file();
    const char *keys = "path = FILEimplicit.csv\ncategorical = user, item\nuser = user\nitem = item\n"
                       "negatives = 4\nsampler = popularity\nsplit_fractions = 0.5, 0.25, 0.25";
    ts_exp *x = must_open(keys, "label", TS_OPEN_TRAIN, NULL);
    char *state = save_state(x, "state.txt");
    int big_pop = check_negatives(x, state, 4);
    ts_exp_free(x);
    /* seeded: the same draws again */
    x = must_open(keys, "label", TS_OPEN_TRAIN, NULL);
    assert_int_equal(check_negatives(x, state, 4), big_pop);
    ts_exp_free(x);
    char k2[1024];
    snprintf(k2, sizeof k2, "%s\nsampler = uniform", keys);
    *strstr(k2, "sampler = popularity") = ';';            /* comment out the first one */
    x = must_open(k2, "label", TS_OPEN_TRAIN, NULL);
    char *state2 = save_state(x, "state2.txt");
    int big_uni = check_negatives(x, state2, 4);
    ts_exp_free(x);
    free(state2);
    /* 40 draws for u10..u19: big holds about 70 % of the popularity, 1 in 20 items */
    print_message("negatives drawing 'big': popularity %d, uniform %d of 40\n", big_pop, big_uni);
    assert_true(big_pop >= 15 && big_uni <= 10);
    /* applying the run samples from the saved popularity, excluding the file's own items */
    x = must_open(keys, "label", TS_OPEN_EVALUATE, in_tmp("state.txt"));
    assert_int_equal(ts_exp_data(x)->nrows[TS_TEST], 70 * 5);   /* 70 rows, 4 negatives each */
    check_negatives(x, state, 4);
    ts_exp_free(x);
    free(state);
    must_fail("path = FILEimplicit.csv\ncategorical = user\nuser = user\nitem = item\nnegatives = 2",
              "label", "declare item under categorical", NULL);
}


/* A history: the values of the user's earlier rows by time (the latest max of them); a label
 * numbered by a field's vocabulary (next-item prediction). */
static void test_history_sequences_and_id_labels(void **st)
{
    (void)st;
    int nrow = interactions("inter.csv");
    ts_exp *x = must_open(inter_keys("sequence = item(history max:2 out:bag vocab:item as:hist),\n"
                                     "    item(history max:3 vocab:item as:seq)\n"
                                     "labels = item(ids:item as:next)\nsplit = time"),
                          "next", TS_OPEN_TRAIN, NULL);
    int32_t id_of[20];                              /* the item field's id of each i<k> */
    for (int k = 0; k < 20; k++) id_of[k] = -1;
    int32_t hist[40][3], nh[40], seq[40][3], ns[40];
    float next[40];
    for (int s = 0; s < 3; s++) {
        long n = fetch(x, (ts_phase)s);
        for (long j = 0; j < n; j++) {
            int r = (int)field(x, "row")->x[j], k = inter_user[r], it = (3 * k + inter_j[r]) % 20;
            if (s == TS_TRAIN) id_of[it] = field(x, "item")->ids[j];
            ts_tensor *h = field(x, "hist"), *q = field(x, "seq");
            nh[r] = h->off[j + 1] - h->off[j];
            for (int m = 0; m < nh[r]; m++) hist[r][m] = h->ids[h->off[j] + m];
            ns[r] = q->len[j];
            for (int m = 0; m < 3; m++) seq[r][m] = q->ids[j * 3 + m];
            next[r] = field(x, "next")->x[j];
            assert_true(next[r] == (float)field(x, "item")->ids[j]);
        }
    }
    ts_exp_free(x);
    for (int r = 0; r < nrow; r++) {
        int k = inter_user[r], j = inter_j[r];
        int want = j < 2 ? j : 2;                   /* rows j-2, j-1 of the same user */
        assert_int_equal(nh[r], want);
        for (int m = 0; m < want; m++) {
            int it = (3 * k + j - want + m) % 20;
            assert_int_equal(hist[r][m], id_of[it] >= 0 ? id_of[it] : 0);
        }
        int wq = j < 3 ? j : 3;
        assert_int_equal(ns[r], wq ? wq : 1);       /* no earlier row: one padding id */
        for (int m = 0; m < wq; m++) assert_int_equal(seq[r][m], id_of[(3 * k + j - wq + m) % 20] >= 0 ?
                                                       id_of[(3 * k + j - wq + m) % 20] : 0);
    }
    must_fail("path = FILEinter.csv\ndense = row\ncategorical = item\n"
              "sequence = item(history max:2 vocab:item as:h)", "row",
              "a history sequence needs user =", "and time =", NULL);
}

/* A resumed run reads with its own state: the same rows, splits, ids and values, nothing refit. */
static void test_resume_reads_the_state(void **st)
{
    (void)st;
    people("people.csv", 40, 1, NULL);
    const char *keys = people_keys("people.csv", 2, "", "");
    ts_exp *x = must_open(keys, "clicked", TS_OPEN_TRAIN, NULL);
    row_values a[40], b[40];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    collect(x, a, 40);
    free(save_state(x, "state.txt"));
    ts_exp_free(x);
    /* a state whose statistics differ from what fitting gives: it is what the reader uses */
    FILE *f = fopen(in_tmp("state.txt"), "rb");
    char text[1 << 14];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *d = strstr(text, "\ndense ");
    assert_non_null(d);
    char *end = strchr(d + 1, '\n');
    char rest[1 << 14];
    snprintf(rest, sizeof rest, "%s", end);
    snprintf(d, sizeof text - (size_t)(d - text), "\ndense -inf inf 0 10 2%s", rest);
    write_file("state.txt", text);
    x = must_open(keys, "clicked", TS_OPEN_TRAIN, in_tmp("state.txt"));
    collect(x, b, 40);
    ts_exp_free(x);
    for (int i = 0; i < 40; i++) {
        assert_true(b[i].seen && b[i].city == a[i].city && b[i].hours == a[i].hours);
        assert_true(b[i].age == (float)((20 + i - 10) / 2.0));   /* (v - 10) / 2 from the state */
    }
}

/* A column's ids by row (the n field), for several declarations of one column. */
static void ids_by_row(ts_exp *x, const char *name, int32_t *out, int nrow)
{
    for (int i = 0; i < nrow; i++) out[i] = -9;
    for (int s = 0; s < 3; s++) {
        long m = fetch(x, (ts_phase)s);
        for (long j = 0; j < m; j++) out[(int)field(x, "n")->x[j]] = field(x, name)->ids[j];
    }
}

/* Vocabulary options: order:frequency|first|value, ties:value, vocab_rows:all, oov:none; each
 * saved in the fitted state and read back; a value oov:none has no id for is FILE:LINE. */
static void test_vocabulary_order_rows_and_oov(void **st)
{
    (void)st;
    /* training counts: 10 and 9 twice, b 2 a once each; zz only in the test row */
    write_file("voc.csv", "n,v,fold\n0,10,train\n1,9,train\n2,10,train\n3,b,train\n4,9,train\n"
               "5,2,train\n6,a,train\n7,zz,test\n8,2,valid\n");
    const char *fmt = "path = FILE%s\ndense = n(scale:none)\nsplit = column\nsplit_column = fold\n"
                      "categorical = v(as:dflt), v(as:tv ties:value), v(as:val order:value),\n"
                      "    v(as:fst order:first), v(as:all vocab_rows:all),\n"
                      "    v(as:none ties:value vocab_rows:all oov:none)";
    char k[1024], k2[1024];
    snprintf(k, sizeof k, fmt, "voc.csv");
    snprintf(k2, sizeof k2, fmt, "voc2.csv");
    ts_exp *x = must_open(k, "n", TS_OPEN_TRAIN, NULL);
    /* values by row:  10  9 10  b  9  2  a  zz 2 */
    static const int32_t want[6][9] = {
        {1, 2, 1, 3, 2, 4, 5, 0, 4},       /* frequency, ties by first appearance */
        {2, 1, 2, 5, 1, 3, 4, 0, 3},       /* ties by value: 9 < 10; 2 < a < b */
        {3, 2, 3, 5, 2, 1, 4, 0, 1},       /* by value: 2 9 10 a b */
        {1, 2, 1, 3, 2, 4, 5, 0, 4},       /* first appearance: 10 9 b 2 a */
        {1, 2, 1, 3, 2, 4, 5, 6, 4},       /* every row's values: zz too, last */
        {1, 0, 1, 4, 0, 2, 3, 5, 2}};      /* no out-of-vocabulary id: ids from 0 */
    static const char *const name[6] = {"dflt", "tv", "val", "fst", "all", "none"};
    static const int vocab[6] = {6, 6, 6, 6, 7, 6};
    int32_t got[9];
    for (int f = 0; f < 6; f++) {
        ids_by_row(x, name[f], got, 9);
        assert_int_equal(field(x, name[f])->vocab, vocab[f]);
        for (int i = 0; i < 9; i++)
            if (got[i] != want[f][i]) fail_msg("%s: row %d has id %d, want %d", name[f], i, got[i], want[f][i]);
    }
    char *state = save_state(x, "state.txt");
    ts_exp_free(x);
    assert_non_null(strstr(state, "field=none column=\"v\" table= min_count=1 order=frequency ties=value "
                                  "vocab_rows=all oov=none\nvocab 6\n9\n10\n2\na\nb\nzz\n"));
    assert_non_null(strstr(state, "field=val column=\"v\" table= min_count=1 order=value\n"));
    free(state);
    /* applied with the state: the same ids, nothing refitted */
    x = must_open(k, "n", TS_OPEN_EVALUATE, in_tmp("state.txt"));
    for (int f = 0; f < 6; f++) {
        ids_by_row(x, name[f], got, 9);
        for (int i = 0; i < 9; i++) assert_int_equal(got[i], want[f][i]);
    }
    ts_exp_free(x);
    /* a value the run never numbered: id 0 for the others, a sentence for oov:none */
    write_file("voc2.csv", "n,v,fold\n0,10,train\n1,new,train\n");
    ts_err e;
    x = open_table(k2, "n", TS_OPEN_PREDICT, in_tmp("state.txt"), &e);
    if (x) { ts_exp_free(x); fail_msg("a value oov:none has no id for was read"); }
    tu_contains(e.msg, "voc2.csv:3:", "\"new\"", "trained run's vocabulary of none", "oov:none", NULL);
    /* training: a value only the test rows have, without vocab_rows:all */
    must_fail("path = FILEvoc.csv\ndense = n\nsplit = column\nsplit_column = fold\n"
              "categorical = v(oov:none)", "n", "voc.csv:9:", "\"zz\"", "not in the vocabulary of v",
              "vocab_rows:all", NULL);
    must_fail("path = FILEvoc.csv\ndense = n\ncategorical = v(order:first ties:value)", "n",
              "exp.ini:", "ties:value breaks ties of the frequency order", NULL);
    must_fail("path = FILEvoc.csv\ndense = n\ncategorical = v(hash:10 oov:none)", "n",
              "exp.ini:", "with hash: the column has none", NULL);
    must_fail("path = FILEvoc.csv\ndense = n\ncategorical = v(oov:maybe)", "n",
              "exp.ini:", "oov is \"maybe\"", "oov:bucket|none", NULL);
    must_fail("path = FILEvoc.csv\ndense = n\ncategorical = v(order:size)", "n",
              "order:frequency|first|value", NULL);
}

/* A side table's column gathered over a sequence's values: a history's (the items of the user's
 * earlier rows) and a list column's; a key the table lacks adds nothing. */
static void test_side_column_over_a_sequence(void **st)
{
    (void)st;
    write_file("films.csv", "item,genres\ni1,a|b\ni2,b\ni3,\ni4,c|a\n");
    write_file("watch.csv", "n,user,item,t,basket\n0,u1,i1,1,i1|i2\n1,u1,i2,2,i5\n2,u1,i4,3,\n"
               "3,u1,i3,4,i4|i3|i1\n4,u2,i5,1,i2\n5,u2,i4,2,i1\n");
    const char *k = "path = FILEwatch.csv\ntables = films(path:films.csv key:item)\n"
                    "dense = n(scale:none)\ncategorical = item\nuser = user\ntime = t\n"
                    "sequence = item(history max:2 out:bag vocab:item as:hist)\n"
                    "multi = basket(vocab:item), genres(table:films over:hist order:value as:hg),\n"
                    "    genres(table:films over:basket order:value as:bg)\n"
                    "split_fractions = 1, 0, 0";
    /* ids a = 1, b = 2, c = 3 (by value) */
    static const char *const hg[6] = {"", "12", "122", "231", "", ""};
    static const char *const bg[6] = {"122", "", "", "3112", "2", "12"};
    for (int pass = 0; pass < 2; pass++) {
        ts_exp *x = must_open(k, "n", pass ? TS_OPEN_EVALUATE : TS_OPEN_TRAIN, pass ? in_tmp("state.txt") : NULL);
        if (!pass) free(save_state(x, "state.txt"));
        assert_int_equal(field(x, "hg")->vocab, 4);
        ts_phase s = pass ? TS_TEST : TS_TRAIN;
        long m = fetch(x, s);
        assert_int_equal(m, 6);
        for (long j = 0; j < m; j++) {
            int i = (int)field(x, "n")->x[j];
            for (int w = 0; w < 2; w++) {
                ts_tensor *t = field(x, w ? "bg" : "hg");
                char got[16];
                int n = 0;
                for (int32_t q = t->off[j]; q < t->off[j + 1] && n < 15; q++) got[n++] = (char)('0' + t->ids[q]);
                got[n] = 0;
                if (strcmp(got, (w ? bg : hg)[i])) fail_msg("%s of row %d: %s, want %s", w ? "bg" : "hg", i, got, (w ? bg : hg)[i]);
            }
        }
        ts_exp_free(x);
    }
    must_fail("path = FILEwatch.csv\ntables = films(path:films.csv key:item)\ndense = n\n"
              "categorical = item\nmulti = genres(table:films over:item)", "n",
              "over:item", "not a multi or sequence field of the main file", NULL);
    must_fail("path = FILEwatch.csv\ndense = n\nmulti = basket, genres(over:basket)", "n",
              "over needs a side table's column", NULL);
}

/* example_age, min_history and row_order on inter.csv: users u0..u9 with 1 + k % 4 rows. */
static void test_example_age_min_history_and_row_order(void **st)
{
    (void)st;
    int nrow = interactions("inter.csv");
    const char *k = "path = FILEinter.csv\ndense = row(scale:none), t(example_age as:age)\n"
                    "categorical = user, item\nuser = user\nitem = item\ntime = t\nsplit = time\n"
                    "min_history = 1";
    ts_exp *x = must_open(k, "row", TS_OPEN_TRAIN, NULL);
    ts_data *D = ts_exp_data(x);
    /* no first row of a user is an example: train keeps j = 1 of the 4-row users (u3, u7) */
    assert_int_equal(D->nrows[TS_TRAIN], 2);
    assert_int_equal(D->nrows[TS_VALID], 4);
    assert_int_equal(D->nrows[TS_TEST], 7);
    for (int s = 0; s < 3; s++) {
        long m = fetch(x, (ts_phase)s);
        for (long j = 0; j < m; j++) {
            int r = (int)field(x, "row")->x[j], u = inter_user[r];
            assert_true(inter_j[r] >= 1);
            /* (t_max - t) / (t_max - t_min) over the training examples (t 301, 701); 0 elsewhere */
            float age = s == TS_TRAIN ? (float)((701.0 - (100 * u + inter_j[r])) / 400.0) : 0.0f;
            assert_true(field(x, "age")->x[j] == age);
        }
    }
    /* the first rows still count: the popularity holds all 12 training-split rows */
    const void *p;
    long nv;
    assert_int_equal(ts_exp_data_ops(x)->aux(D, "item_freq", &p, &nv), 0);
    double sum = 0;
    for (long i = 0; i < nv; i++) sum += ((const float *)p)[i];
    assert_true(sum == 12);
    char *state = save_state(x, "state.txt");
    assert_non_null(strstr(state, "example_age\ndense -inf inf 0 701 400\n"));
    free(state);
    ts_exp_free(x);
    /* applied: evaluate keeps the rows with an earlier row, predict every row; the age is 0 */
    x = must_open(k, "row", TS_OPEN_EVALUATE, in_tmp("state.txt"));
    assert_int_equal(fetch(x, TS_TEST), nrow - 10);
    for (int j = 0; j < nrow - 10; j++) assert_true(field(x, "age")->x[j] == 0);
    ts_exp_free(x);
    x = must_open(k, "row", TS_OPEN_PREDICT, in_tmp("state.txt"));
    assert_int_equal(fetch(x, TS_TEST), nrow);
    for (int j = 0; j < nrow; j++) assert_true(field(x, "age")->x[j] == 0);
    ts_exp_free(x);
    /* row_order = user_time: a user's training rows by time (the file has them latest first) */
    for (int order = 0; order < 2; order++) {
        char k2[1024];
        snprintf(k2, sizeof k2, "path = FILEinter.csv\ndense = row(scale:none)\ncategorical = item\n"
                 "user = user\ntime = t\nsplit = time\nrow_order = %s", order ? "user_time" : "file");
        x = must_open(k2, "row", TS_OPEN_TRAIN, NULL);
        long m = fetch(x, TS_TRAIN);
        int ascending = 0, descending = 0;
        for (long j = 1; j < m; j++) {
            int a = (int)field(x, "row")->x[j - 1], b = (int)field(x, "row")->x[j];
            assert_true(inter_user[a] <= inter_user[b]);
            if (inter_user[a] == inter_user[b]) inter_j[a] < inter_j[b] ? ascending++ : descending++;
        }
        assert_int_equal(order ? descending : ascending, 0);
        assert_true((order ? ascending : descending) > 0);
        ts_exp_free(x);
    }
    must_fail("path = FILEinter.csv\ndense = row\nuser = user\nmin_history = 1", "row",
              "exp.ini:", "min_history needs user = (whose rows) and time =", NULL);
    must_fail("path = FILEinter.csv\ndense = row, t(example_age log)", "row",
              "example_age is scaled by its own rule", "remove log", NULL);
    must_fail("path = FILEinter.csv\ndense = row, t(example_age)\ngroups = g(row t)", "row",
              "an example_age", NULL);
}

/* Negatives drawn from a vocabulary without an out-of-vocabulary id: id 0 is an item (the most
 * popular one here), drawn and counted in the popularity like any other. */
static void test_negatives_without_oov(void **st)
{
    (void)st;
    implicit_file();
    ts_exp *x = must_open("path = FILEimplicit.csv\ncategorical = user, item(oov:none vocab_rows:all)\n"
                          "user = user\nitem = item\nnegatives = 4\nsampler = popularity\n"
                          "split_fractions = 1, 0, 0", "label", TS_OPEN_TRAIN, NULL);
    char *state = save_state(x, "state.txt");
    assert_true(!strncmp(vocab_of(state, "item"), "big|", 4));   /* id 0 */
    free(state);
    const void *p;
    long nv;
    assert_int_equal(ts_exp_data_ops(x)->aux(ts_exp_data(x), "item_freq", &p, &nv), 0);
    assert_int_equal(nv, 21);                                    /* big, small0..9, solo10..19 */
    assert_true(((const float *)p)[0] == 50);                    /* big: 5 rows of 10 users */
    long n = fetch(x, TS_TRAIN), big = 0, neg = 0;
    int32_t own = -1;
    for (long j = 0; j < n; j++) {
        int32_t it = field(x, "item")->ids[j];
        assert_true(it >= 0 && it < 21);
        if (field(x, "label")->x[j] == 1) { own = it; continue; }
        assert_true(it != own);
        neg++;
        big += it == 0;
    }
    print_message("negatives without an OOV id: %ld of %ld draws are id 0 (big)\n", big, neg);
    assert_true(neg > 0 && big > 0);
    ts_exp_free(x);
}

/* ---- MovieLens: the movielens reader and the table reader make the same examples ---------- */
static ts_exp *open_experiment(const char *ini, const char *dir, ts_open_mode mode, const char *state)
{
    ts_run_opts o = {.results_dir = dir, .open_mode = mode, .fitted_from = state};
    ts_err e;
    ts_exp *x = ts_exp_load(ini, &o, &e);
    if (!x) fail_msg("%s", e.msg);
    if (ts_exp_open_data(x, &e) && (mode == TS_OPEN_TRAIN || !strstr(e.msg, "training split is empty"))) {
        ts_exp_free(x);
        fail_msg("%s", e.msg);
    }
    return x;
}

/* Field name of a (dtype, shape, vocab) and its contents, bit for bit, for rows n. */
static void same_field(ts_exp *a, ts_exp *b, const char *name, int n, const char *where)
{
    ts_tensor *x = field(a, name), *y = field(b, name);
    if (x->dtype != y->dtype || x->ndim != y->ndim || x->dim[1] != y->dim[1] || x->vocab != y->vocab ||
        x->dim[0] != n || y->dim[0] != n)
        fail_msg("%s: field %s: dtype %d/%d, dim[1] %d/%d, vocab %lld/%lld", where, name, x->dtype,
                 y->dtype, x->dim[1], y->dim[1], (long long)x->vocab, (long long)y->vocab);
    if (x->dtype == TS_F32 && memcmp(x->x, y->x, (size_t)n * x->dim[1] * sizeof(float)))
        fail_msg("%s: field %s differs", where, name);
    if (x->dtype == TS_I32 && memcmp(x->ids, y->ids, (size_t)n * x->dim[1] * sizeof(int32_t)))
        fail_msg("%s: field %s differs", where, name);
    if (x->dtype == TS_BAGS && (memcmp(x->off, y->off, (size_t)(n + 1) * sizeof(int32_t)) ||
                                memcmp(x->ids, y->ids, (size_t)x->off[n] * sizeof(int32_t))))
        fail_msg("%s: field %s differs", where, name);
}

static void batch_rows(ts_exp *x, ts_phase s, const long *rows, int n)
{
    ts_err e;
    if (ts_exp_data_ops(x)->batch(ts_exp_data(x), s, rows, n, &e)) fail_msg("%s", e.msg);
}

static double metric(const char *dir, const char *key)
{
    double v = NAN;
    ts_err e;
    if (ts_metrics_get(dir, key, &v, &e)) fail_msg("%s", e.msg);
    return v;
}

static void test_movielens_through_the_table_reader(void **st)
{
    (void)st;
    const char *ml = tu_src("experiments/movielens_youtube_dnn.ini");
    const char *tb = tu_src("experiments/movielens_youtube_dnn_table.ini");
    static const char *const names[] = {"history", "genres", "watched", "age", "next_item", "user"};
    ts_exp *a = open_experiment(ml, in_tmp("ml_open"), TS_OPEN_TRAIN, NULL);
    ts_exp *b = open_experiment(tb, in_tmp("tb_open"), TS_OPEN_TRAIN, NULL);
    ts_data *A = ts_exp_data(a), *B = ts_exp_data(b);
    static long rows[200];
    for (int s = 0; s < 3; s++) {
        assert_int_equal(A->nrows[s], B->nrows[s]);
        for (long at = 0; at < A->nrows[s]; at += 200) {
            int n = (int)(A->nrows[s] - at < 200 ? A->nrows[s] - at : 200);
            for (int i = 0; i < n; i++) rows[i] = at + i;
            batch_rows(a, (ts_phase)s, rows, n);
            batch_rows(b, (ts_phase)s, rows, n);
            char where[64];
            snprintf(where, sizeof where, "split %d rows %ld..", s, at);
            for (int f = 0; f < 6; f++) same_field(a, b, names[f], n, where);
        }
    }
    const void *pa, *pb;
    long na, nb;
    assert_int_equal(ts_exp_data_ops(a)->aux(A, "item_freq", &pa, &na), 0);
    assert_int_equal(ts_exp_data_ops(b)->aux(B, "item_freq", &pb, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, (size_t)na * sizeof(float));
    print_message("movielens: %ld, %ld, %ld examples, %ld items: every field the same\n",
                  A->nrows[0], A->nrows[1], A->nrows[2], na);
    ts_exp_free(a);
    /* training: the same parameters to the bit, the same figures */
    char *over[] = {"train.epochs=1", "train.max_steps=40", "train.threads=1"};
    const char *dir[2] = {in_tmp("ml_run"), in_tmp("tb_run")};
    for (int k = 0; k < 2; k++) {
        ts_run_opts o = {.results_dir = dir[k], .overwrite = 1, .noverride = 3, .overrides = over};
        ts_err e;
        if (ts_run(k ? tb : ml, &o, &e)) fail_msg("%s", e.msg);
    }
    char pa_path[700], pb_path[700];
    snprintf(pa_path, sizeof pa_path, "%s/params.bin", dir[0]);
    snprintf(pb_path, sizeof pb_path, "%s/params.bin", dir[1]);
    FILE *fa = fopen(pa_path, "rb"), *fb = fopen(pb_path, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    long bytes = 0;
    for (int ca, cb;; bytes++) {
        ca = getc(fa), cb = getc(fb);
        if (ca != cb) fail_msg("params.bin differs at byte %ld", bytes);
        if (ca == EOF) break;
    }
    fclose(fa);
    fclose(fb);
    assert_true(bytes > 1000000);
    double ra = metric(dir[0], "test.next.recall@50"), rb = metric(dir[1], "test.next.recall@50");
    print_message("movielens, 40 steps: params.bin the same (%ld bytes), test recall@50 %.4f %.4f\n",
                  bytes, ra, rb);
    assert_true(ra == rb);
    /* applied with the run's fitted state to the whole file: every user's last watch reads as
     * in the run's test split (age 0, the same history, genres and label); predicting keeps
     * every row */
    char state[700];
    snprintf(state, sizeof state, "%s/data_state.txt", dir[1]);
    ts_exp *ev = open_experiment(tb, in_tmp("tb_ev"), TS_OPEN_EVALUATE, state);
    ts_data *E = ts_exp_data(ev);
    assert_int_equal(E->nrows[TS_TEST], 100836 - 610);        /* no first watch */
    const void *lp;
    long nl;
    assert_int_equal(ts_exp_data_ops(ev)->aux(E, "row_line", &lp, &nl), 0);
    static long at_line[100838];
    for (long i = 0; i < nl; i++) at_line[((const long *)lp)[i]] = i;
    long nt = B->nrows[TS_TEST];
    static long test_rows[610], ev_rows[610];
    assert_int_equal(ts_exp_data_ops(b)->aux(B, "row_line", &lp, &nl), 0);
    assert_int_equal(nl, 610);
    for (long i = 0; i < nt; i++) test_rows[i] = i, ev_rows[i] = at_line[((const long *)lp)[i]];
    for (long at = 0; at < nt; at += 200) {
        int n = (int)(nt - at < 200 ? nt - at : 200);
        batch_rows(b, TS_TEST, test_rows + at, n);
        batch_rows(ev, TS_TEST, ev_rows + at, n);
        for (int f = 0; f < 6; f++) same_field(b, ev, names[f], n, "evaluate");
    }
    ts_exp_free(ev);
    ts_exp_free(b);
    ts_exp *pr = open_experiment(tb, in_tmp("tb_pr"), TS_OPEN_PREDICT, state);
    assert_int_equal(ts_exp_data(pr)->nrows[TS_TEST], 100836);
    ts_exp_free(pr);
}

static double census_auc(const char *ini, const char *dir)
{
    char *over[] = {"train.epochs=1"};
    ts_run_opts o = {.results_dir = dir, .overwrite = 1, .noverride = 1, .overrides = over};
    ts_err e;
    if (ts_run(ini, &o, &e)) fail_msg("%s", e.msg);
    double v = NAN;
    if (ts_metrics_get(dir, "test.income.auc", &v, &e)) fail_msg("%s", e.msg);
    return v;
}

/* The census experiment through the table reader: the census reader's figures, and a floor. */
static void test_census_through_the_table_reader(void **st)
{
    (void)st;
    double t = census_auc(tu_src("experiments/census_mmoe_table.ini"), in_tmp("census_table"));
    double c = census_auc(tu_src("experiments/census_mmoe.ini"), in_tmp("census_census"));
    print_message("census MMoE, 1 epoch: test income AUC %.6f (table) %.6f (census)\n", t, c);
    assert_true(t == c);
    assert_true(t >= 0.93);
    FILE *f = fopen(in_tmp("census_table/data_state.txt"), "rb");
    assert_non_null(f);
    char head[32] = {0};
    assert_true(fread(head, 1, 22, f) == 22);
    fclose(f);
    assert_string_equal(head, "tessera-table-state 1\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_categorical_labels),
        cmocka_unit_test(test_random_split_is_a_partition),
        cmocka_unit_test(test_fitted_state_round_trip),
        cmocka_unit_test(test_state_must_match_the_declaration),
        cmocka_unit_test(test_predict_without_label_columns),
        cmocka_unit_test(test_quotes_crlf_bom_and_names_with_spaces),
        cmocka_unit_test(test_separators_headers_and_gzip),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_fields_across_64_byte_edges),
        cmocka_unit_test(test_gzip_reads_as_the_plain_file),
        cmocka_unit_test(test_damaged_gzip),
        cmocka_unit_test(test_bad_rows),
        cmocka_unit_test(test_dense_transforms),
        cmocka_unit_test(test_splits_by_user_time_and_column),
        cmocka_unit_test(test_multi_sequence_hash_and_shared_vocab),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_side_tables),
        cmocka_unit_test(test_negative_sampling),
        cmocka_unit_test(test_history_sequences_and_id_labels),
        cmocka_unit_test(test_resume_reads_the_state),
        cmocka_unit_test(test_census_through_the_table_reader),
        cmocka_unit_test(test_vocabulary_order_rows_and_oov),
        cmocka_unit_test(test_side_column_over_a_sequence),
        cmocka_unit_test(test_example_age_min_history_and_row_order),
        cmocka_unit_test(test_negatives_without_oov),
        cmocka_unit_test(test_movielens_through_the_table_reader),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
