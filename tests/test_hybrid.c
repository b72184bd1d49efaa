/* test_hybrid.c — the hybrid lexical-semantic matcher's pieces on hand cases: the `lexical`
 * layer's features against a reference written here from the formulas and against the bm25
 * head's scores on the same rows, and textpairs' position field; the statistics as frozen
 * parameters that a restore replaces (what resume, predict and evaluate rely on: nothing
 * refitted); [train] group_by's shuffle; and the refusals of bad input, each naming the
 * experiment's FILE:LINE. The gradient checks
 * are check-plugin's (tests/check_plugins.sh); the end-to-end run is test_hybrid_e2e.c. */
#include "testutil.h"

#include <sys/stat.h>
#include "internal.h"

#include <dirent.h>
#include <math.h>

static char dir[64];

static const char *HEADER = "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel\r\n";

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Training documents (distinct): their words fix N, df and avgdl of the reference below. */
static const char *TRAIN_Q[3] = {"the cat", "dogs bark", "a cat cats"};
static const char *TRAIN_D[3][2] = {{"the cat sat on the mat", "dogs bark at night"},
                                    {"dogs bark at night", "a bird sang"},
                                    {"cats and a cat", "the mat"}};
/* The test split: every question against every sentence. */
static const char *TEST_Q[3] = {"the cat", "a cat cats", "cat sat on a mat"};
static const char *TEST_D[3] = {"the cat sat on the mat", "a dog chased the cat across the long garden",
                                "the dogs and cats"};

static void write_fixture(void)
{
    char text[4096];
    size_t k = (size_t)snprintf(text, sizeof text, "%s", HEADER);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            k += (size_t)snprintf(text + k, sizeof text - k, "Q%d\t%s\tD%d\tT\tD%d-%d\t%s\t%d\r\n",
                                  i, TRAIN_Q[i], i, i, j, TRAIN_D[i][j], j == 0);
    write_file("WikiQA-train.tsv", text);
    k = (size_t)snprintf(text, sizeof text, "%s", HEADER);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            k += (size_t)snprintf(text + k, sizeof text - k, "T%d\t%s\tE%d\tT\tE%d-%d\t%s\t%d\r\n",
                                  i, TEST_Q[i], i, i, j, TEST_D[j], i == j);
    write_file("WikiQA-dev.tsv", text);
    write_file("WikiQA-test.tsv", text);
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/tessera-hybrid-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    write_fixture();
    return 0;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) { unlink(path); return; }
    struct dirent *de;
    char sub[512];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_tree(sub);
        }
    closedir(d);
    rmdir(path);
}

static int teardown(void **st)
{
    (void)st;
    rm_tree(dir);
    return 0;
}

/* ---- a reference written from the formulas (lexical.h), on space-separated words ---------- */
static int words(const char *s, char w[][32], int max)
{
    int n = 0;
    const char *p = s;
    while (*p && n < max) {
        while (*p == ' ') p++;
        if (!*p) break;
        int k = 0;
        while (*p && *p != ' ' && k < 31) w[n][k++] = *p++;
        w[n++][k] = 0;
    }
    return n;
}

static int count_in(char w[][32], int n, const char *x)
{
    int c = 0;
    for (int i = 0; i < n; i++) c += !strcmp(w[i], x);
    return c;
}

/* N, df(word) and avgdl over the distinct training sentences. */
static void train_stats(const char *word, double *N, double *df, double *avgdl)
{
    const char *docs[6];
    int nd = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            int dup = 0;
            for (int k = 0; k < nd; k++) dup |= !strcmp(docs[k], TRAIN_D[i][j]);
            if (!dup) docs[nd++] = TRAIN_D[i][j];
        }
    *N = nd;
    *df = 0;
    *avgdl = 0;
    char w[64][32];
    for (int k = 0; k < nd; k++) {
        int n = words(docs[k], w, 64);
        *avgdl += n;
        *df += count_in(w, n, word) > 0;
    }
    *avgdl /= nd;
}

/* Every feature of lexical.h's list for query q against document d. */
static void reference(const char *q, const char *d, double *f)
{
    char qw[64][32], dw[64][32];
    int nq = words(q, qw, 64), nd = words(d, dw, 64);
    double bm = 0, hit_idf = 0, idf_sum = 0, hits = 0, distinct = 0, found = 0;
    for (int a = 0; a < nq; a++) {
        if (count_in(qw, a, qw[a])) continue;   /* a repeated query word counts once */
        distinct++;
        double N, df, avgdl;
        train_stats(qw[a], &N, &df, &avgdl);
        double idf = log(1 + (N - df + 0.5) / (df + 0.5));
        int tf = count_in(dw, nd, qw[a]);
        idf_sum += idf;
        if (!tf) continue;
        hits++;
        found += tf;
        hit_idf += idf;
        bm += idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * nd / avgdl));
    }
    double big = 0;
    for (int a = 0; a + 1 < nq; a++)
        for (int b = 0; b + 1 < nd; b++)
            if (!strcmp(qw[a], dw[b]) && !strcmp(qw[a + 1], dw[b + 1])) { big++; break; }
    f[0] = bm;
    f[1] = log1p(bm);
    f[2] = hits / distinct;
    f[3] = hit_idf / idf_sum;
    f[4] = nq > 1 ? big / (nq - 1) : 0;
    f[5] = found / nd;
}

/* An experiment on the fixture: the lexical layer feeding a pointwise scorer, and BM25 with the
 * training split's statistics. */
static const char *write_exp(const char *train, const char *extra)
{
    static char path[256];
    char text[4096];
    snprintf(text, sizeof text,
             "[experiment]\nname = hybrid_fixture\nseed = 1\n\n"
             "[data]\ntype = textpairs\nformat = wikiqa\npath = %s/%s\nvalid_path = %s/WikiQA-dev.tsv\n"
             "test_path = %s/WikiQA-test.tsv\nmax_words = 4\ndoc_max_words = 8\n\n"
             "[layer.lex]\ntype = lexical\ninput = query_words, doc_words\n"
             "features = bm25, log_bm25, overlap, idf_overlap, bigram, doc_overlap\n\n"
             "[layer.score]\ntype = dense\ninput = lex\nunits = 1\n\n"
             "[head.fit]\ntype = binary\ninput = score\nlabel = label\nloss = bce\n\n"
             "[head.bm25]\ntype = bm25\ninput = query_words, doc_words\nlabel = label\nweight = 0\n"
             "rank = group\nidf = train\navgdl = train\n\n%s"
             "[optimizer]\ntype = adam\n\n[train]\nepochs = 1\nbatch = 4\neval_batch = 64\n",
             dir, train, dir, dir, extra ? extra : "");
    snprintf(path, sizeof path, "%s/exp.ini", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static ts_exp *built(const char *train, ts_err *e)
{
    ts_run_opts o = {0};
    ts_exp *x = ts_exp_load(write_exp(train, NULL), &o, e);
    if (!x) return NULL;
    if (ts_exp_open_data(x, e) || ts_exp_build(x, e)) { ts_exp_free(x); return NULL; }
    return x;
}

static ts_node *node(ts_exp *x, const char *name)
{
    for (int i = 0; i < x->nnodes; i++)
        if (!strcmp(x->nodes[i].L.name, name)) return &x->nodes[i];
    fail_msg("no layer %s", name);
    return NULL;
}

static ts_param *param(ts_exp *x, const char *name)
{
    for (int i = 0; i < x->ctx.nparams; i++)
        if (!strcmp(x->ctx.params[i]->name, name)) return x->ctx.params[i];
    fail_msg("no parameter %s", name);
    return NULL;
}

/* The layer's six features of the nine test pairs equal the reference, and its bm25 column the
 * bm25 head's score of each row (idf = train, avgdl = train). */
static void test_layer_features_and_bm25_head(void **st)
{
    (void)st;
    ts_err e = {{0}};
    ts_exp *x = built("WikiQA-train.tsv", &e);
    if (!x) fail_msg("%s", e.msg);
    if (ts_exp_evaluate(x, TS_TEST, &e)) fail_msg("%s", e.msg);   /* one batch of 9 rows */
    const ts_tensor *out = &node(x, "lex")->L.out[0];
    assert_int_equal(out->dim[0], 9);
    assert_int_equal(out->dim[1], 6);
    const float *ps, *lb;
    long n = 0;
    ts_hnode *bm = &x->heads[1];
    assert_string_equal(bm->H.name, "bm25");
    assert_int_equal(bm->ops->predictions(&bm->H, &ps, &lb, &n), 0);
    assert_int_equal(n, 9);
    int some_bigram = 0, some_partial = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            int r = 3 * i + j;
            double ref[6];
            reference(TEST_Q[i], TEST_D[j], ref);
            for (int k = 0; k < 6; k++) {
                double got = out->x[r * 6 + k];
                if (fabs(got - ref[k]) > 1e-5 * (1 + fabs(ref[k])))
                    fail_msg("row %d (%s | %s) feature %d: %.7f, the formula gives %.7f", r,
                             TEST_Q[i], TEST_D[j], k, got, ref[k]);
            }
            assert_float_equal(ps[r], out->x[r * 6], 1e-5 * (1 + fabs(ps[r])));
            some_bigram |= ref[4] > 0 && ref[4] < 1;
            some_partial |= ref[2] > 0 && ref[2] < 1;
        }
    assert_true(some_bigram && some_partial);   /* the fixture exercises the fractions */
    /* textpairs' position: each row's place among its question's rows (3 rows per question) */
    const ts_tensor *pos = ts_ctx_field(&x->ctx, "position");
    assert_non_null(pos);
    for (int r = 0; r < 9; r++) assert_float_equal(pos->x[r], (float)(r % 3), 0);
    /* the statistics are the layer's frozen parameters: {N, avgdl} of the training sentences */
    ts_param *meta = param(x, "layer.lex.meta"), *idf = param(x, "layer.lex.idf");
    assert_true(meta->flags & TS_PARAM_FROZEN);
    assert_true(idf->flags & TS_PARAM_FROZEN);
    double N, df, avgdl;
    train_stats("cat", &N, &df, &avgdl);
    assert_float_equal(meta->w[0], N, 0);
    assert_float_equal(meta->w[1], avgdl, 1e-6);
    ts_exp_free(x);
}

/* Another training file with the same words in the same order but other document frequencies:
 * its own fit differs, and restoring the first run's parameters brings back the first run's
 * statistics, which the features then use (nothing is refitted on the rows at hand). */
static void test_statistics_restored_not_refitted(void **st)
{
    (void)st;
    char other[4096];
    size_t k = (size_t)snprintf(other, sizeof other, "%s", HEADER);
    for (int i = 0; i < 3; i++)   /* the same texts, but the first sentence everywhere */
        for (int j = 0; j < 2; j++)
            k += (size_t)snprintf(other + k, sizeof other - k, "Q%d\t%s\tD%d\tT\tD%d-%d\t%s\t%d\r\n",
                                  i, TRAIN_Q[i], i, i, j, TRAIN_D[i][j], j == 0);
    k += (size_t)snprintf(other + k, sizeof other - k,
                          "Q9\tthe cat\tD9\tT\tD9-0\tthe cat sat on the mat\t1\r\n"
                          "Q9\tthe cat\tD9\tT\tD9-1\tthe cat and a mat\t0\r\n");
    write_file("other-train.tsv", other);
    char run[300];
    snprintf(run, sizeof run, "%s/run", dir);
    ts_run_opts o = {.results_dir = run};
    ts_err e = {{0}};
    if (ts_run(write_exp("WikiQA-train.tsv", NULL), &o, &e)) fail_msg("%s", e.msg);
    ts_exp *a = built("WikiQA-train.tsv", &e), *b = built("other-train.tsv", &e);
    if (!a || !b) fail_msg("%s", e.msg);
    ts_param *ma = param(a, "layer.lex.meta"), *mb = param(b, "layer.lex.meta");
    ts_param *ia = param(a, "layer.lex.idf"), *ib = param(b, "layer.lex.idf");
    assert_int_equal(ia->cols, ib->cols);
    assert_true(mb->w[0] != ma->w[0]);   /* b fitted its own: one more training sentence */
    char params[320];
    snprintf(params, sizeof params, "%s/params.bin", run);
    if (ts_load_params(b, params, &e)) fail_msg("%s", e.msg);
    assert_memory_equal(mb->w, ma->w, 2 * sizeof(float));
    assert_memory_equal(ib->w, ia->w, (size_t)ia->cols * sizeof(float));
    if (ts_exp_evaluate(a, TS_TEST, &e) || ts_exp_evaluate(b, TS_TEST, &e)) fail_msg("%s", e.msg);
    const ts_tensor *oa = &node(a, "lex")->L.out[0], *ob = &node(b, "lex")->L.out[0];
    assert_memory_equal(oa->x, ob->x, 9 * 6 * sizeof(float));
    ts_exp_free(a);
    ts_exp_free(b);
    rm_tree(run);
}

/* [train] group_by: a permutation in which every group's rows are adjacent, the groups in an
 * order that depends on the generator. */
static void test_group_order(void **st)
{
    (void)st;
    enum { N = 40, G = 7 };
    long group[N], order[N], first[2][G];
    for (long i = 0; i < N; i++) group[i] = (i * 3) % G;   /* groups spread over the rows */
    for (int seed = 0; seed < 2; seed++) {
        ts_rng r;
        ts_rng_seed(&r, 11 + (uint64_t)seed);
        for (long i = 0; i < N; i++) order[i] = i;
        ts_rng_shuffle(&r, order, N);
        ts_err e;
        assert_int_equal(ts_group_order(order, N, group, G, &r, &e), 0);
        int seen[N] = {0}, closed[G] = {0}, ng = 0;
        for (long i = 0; i < N; i++) {
            assert_true(order[i] >= 0 && order[i] < N && !seen[order[i]]);
            seen[order[i]] = 1;
            long g = group[order[i]];
            if (i == 0 || group[order[i - 1]] != g) {
                assert_false(closed[g]);   /* a group starts once: its rows are adjacent */
                closed[g] = 1;
                first[seed][ng++] = g;
            }
        }
        assert_int_equal(ng, G);
    }
    assert_memory_not_equal(first[0], first[1], sizeof first[0]);
}

/* Bad input: each refusal names the experiment file and the line of the key at fault. */
static void test_bad_input_names_file_and_line(void **st)
{
    (void)st;
    static const struct { const char *extra, *what; } cases[] = {
        {"[head.h]\ntype = hybrid\ninput = lex, lex, query_words\nlabel = label\nloss = softmax_ce\n\n",
         "input = q_vec, d_vec, query_words, doc_words"},
        {"[layer.v]\ntype = embedding_bag\ninput = query\ndim = 4\n\n"
         "[head.h]\ntype = hybrid\ninput = v, v, query_words, doc_words\nlabel = label\n"
         "loss = softmax_ce\nlexical = bm25, jaccard\n\n", "'jaccard' is unknown"},
        {"[layer.v]\ntype = embedding_bag\ninput = query\ndim = 4\n\n"
         "[head.h]\ntype = hybrid\ninput = v, v, query_words, doc_words\nlabel = label\n"
         "loss = softmax_ce\nscorer_units = -2\n\n", "scorer_units = -2"},
        {"[layer.v]\ntype = embedding_bag\ninput = query\ndim = 4\n\n"
         "[head.h]\ntype = hybrid\ninput = v, v, query_words, doc_words, query\nlabel = label\n"
         "loss = softmax_ce\n\n", "document prior, must be f32 (B, P)"},
        {"[layer.bad]\ntype = lexical\ninput = query_words, lex\n\n", "lexical takes two bags"},
        {"[layer.bad]\ntype = lexical\ninput = query_words, doc_words\nfeatures = bm25, bm25\n\n",
         "'bm25' is unknown or repeated"},
        {"[layer.bad]\ntype = lexical\ninput = query_words, doc_words\nb = 2\n\n", "0 <= b <= 1"},
        {"[layer.v]\ntype = embedding_bag\ninput = query\ndim = 4\n\n"
         "[head.h]\ntype = match\ninput = v, v\nlabel = label\nloss = softmax_ce\n"
         "negatives_from = group\ngroup_field = nope\n\n", "negatives_from = group needs"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ts_run_opts o = {0};
        ts_err e = {{0}};
        const char *path = write_exp("WikiQA-train.tsv", cases[c].extra);
        ts_exp *x = ts_exp_load(path, &o, &e);
        int rc = !x || ts_exp_open_data(x, &e) || ts_exp_build(x, &e);
        ts_exp_free(x);
        if (!rc) fail_msg("case %zu was accepted", c);
        char where[300];
        snprintf(where, sizeof where, "%s:", path);
        tu_contains(e.msg, where, cases[c].what, NULL);
        const char *line = strstr(e.msg, where) + strlen(where);   /* FILE:LINE: */
        if (!(line[0] >= '1' && line[0] <= '9')) fail_msg("case %zu: no line in: %s", c, e.msg);
    }
    /* [train] output_weights on a ranking figure grouped by a field of one row per value (each
     * sentence its own document): refused before training (no metrics.json), naming the key */
    {
        char dev[600];
        snprintf(dev, sizeof dev, "%s%s", HEADER,
                 "T0\tthe cat\tE0\tT\tE0-0\tthe cat sat\t1\r\n"
                 "T0\tthe cat\tE0\tT\tE0-1\ta dog ran\t0\r\n"
                 "T1\tdogs bark\tE1\tT\tE1-0\tdogs bark loud\t1\r\n"
                 "T1\tdogs bark\tE1\tT\tE1-1\tthe mat\t0\r\n");
        write_file("WikiQA-dev-distinct.tsv", dev);
        const char *path = write_exp("WikiQA-train.tsv", NULL);
        char res[300], vp[300];
        snprintf(res, sizeof res, "%s/owg", dir);
        snprintf(vp, sizeof vp, "data.valid_path=%s/WikiQA-dev-distinct.tsv", dir);
        char *ov[] = {"train.output_weights=bm25.map", "train.output_group=doc_id", vp};
        ts_run_opts o = {.results_dir = res, .noverride = 3, .overrides = ov};
        ts_err e = {{0}};
        assert_int_not_equal(ts_run(path, &o, &e), 0);
        tu_contains(e.msg, "holds one row of the validation split", "output_group", NULL);
        struct stat sb;
        assert_int_not_equal(stat(res, &sb) == 0 && access(strcat(res, "/metrics.json"), F_OK) == 0, 1);
    }
    /* stats = train on data without BM25's statistics (a table of two bags of one vocabulary) */
    write_file("bags.csv", "q,d,y\na|b,b|c,1\nc|d,d|e,0\na|e,b|b,1\nb|c,c|d,0\n");
    char ini[4096], ipath[300];
    snprintf(ini, sizeof ini,
             "[experiment]\nname = bags\nseed = 1\n\n[data]\ntype = table\npath = %s/bags.csv\n"
             "separator = comma\nmulti = q, d(vocab:q)\nlabels = y\nsplit = random\n"
             "split_fractions = 0.5, 0.25, 0.25\n\n[layer.lex]\ntype = lexical\ninput = q, d\n\n"
             "[layer.s]\ntype = dense\ninput = lex\nunits = 1\n\n[head.y]\ntype = binary\n"
             "input = s\nlabel = y\nloss = bce\n\n[optimizer]\ntype = adam\n\n[train]\nepochs = 1\n",
             dir);
    write_file("bags.ini", ini);
    snprintf(ipath, sizeof ipath, "%s/bags.ini", dir);
    {
        ts_run_opts ob = {0};
        ts_err eb = {{0}};
        ts_exp *x = ts_exp_load(ipath, &ob, &eb);
        int rc = !x || ts_exp_open_data(x, &eb) || ts_exp_build(x, &eb);
        ts_exp_free(x);
        assert_int_equal(rc, 1);
        char where[320];
        snprintf(where, sizeof where, "%s:14:", ipath);   /* the [layer.lex] line */
        tu_contains(eb.msg, where, "stats = train needs", "stats = uniform", NULL);
        char *uni[] = {"layer.lex.stats=uniform"};   /* accepted with uniform statistics */
        ob.noverride = 1;
        ob.overrides = uni;
        x = ts_exp_load(ipath, &ob, &eb);
        rc = !x || ts_exp_open_data(x, &eb) || ts_exp_build(x, &eb);
        ts_exp_free(x);
        if (rc) fail_msg("%s", eb.msg);
    }
    /* [train] group_by names no field: refused before training, with its line */
    char run[300];
    snprintf(run, sizeof run, "%s/run-group", dir);
    char *ov[] = {"train.group_by=nope"};
    ts_run_opts o = {.results_dir = run, .noverride = 1, .overrides = ov};
    ts_err e = {{0}};
    assert_int_equal(ts_run(write_exp("WikiQA-train.tsv", NULL), &o, &e), -1);
    tu_contains(e.msg, "group_by = nope", "I32 field", NULL);
    rm_tree(run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_features_and_bm25_head),
        cmocka_unit_test(test_statistics_restored_not_refitted),
        cmocka_unit_test(test_group_order),
        cmocka_unit_test(test_bad_input_names_file_and_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
