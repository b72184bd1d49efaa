/* test_text.c — the semantic-matching family on hand-made cases: word hashing and the field
 * shapes of the textpairs dataset, a bad row's file:line message, the ranking figures of
 * ranking.h on a hand case (ties and several relevant items), and BM25 on three documents
 * whose ranking needs both IDF and length normalisation. The end-to-end run on WordNet is in
 * test_text_e2e.c. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>

#include "../core/ranking.h"

static char dir[64];

/* A tiny WikiQA: the test split is the BM25 hand case (3 questions x the same 3 sentences). */
static const char *HEADER = "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel\r\n";
static const char *DOC1 = "the cat sat on the mat";
static const char *DOC2 = "a dog chased the cat across the long garden path to the house";
static const char *DOC3 = "the dogs and cats";

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Three questions over the same three sentences; the third lists them in reverse file order. */
static void write_split(const char *name)
{
    static const char *q[3] = {"the cat", "a cat cats", "the"};
    static const int pos[3] = {0, 1, 0};  /* the relevant sentence of each question */
    const char *docs[3] = {DOC1, DOC2, DOC3};
    char text[4096];
    size_t k = (size_t)snprintf(text, sizeof text, "%s", HEADER);
    for (int i = 0; i < 3; i++)
        for (int jj = 0; jj < 3; jj++) {
            int j = i == 2 ? 2 - jj : jj;
            k += (size_t)snprintf(text + k, sizeof text - k, "Q%d\t%s\tD%d\tTitle\tD%d-%d\t%s\t%d\r\n",
                                  10 + i, q[i], i, i, j, docs[j], pos[i] == j);
        }
    write_file(name, text);
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/tessera-text-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    char text[2048];
    snprintf(text, sizeof text,
             "%sQ1\tGood food?\tD1\tT\tD1-0\tgoods are sold here\t1\r\n"
             "Q1\tGood food?\tD1\tT\tD1-1\ta cat\t0\r\n"
             "Q2\twhere is the cat\tD2\tT\tD2-0\tthe cat sat\t1\r\n"
             "Q3\tgood dog\tD3\tT\tD3-0\ta good dog barks\t1\r\n", HEADER);
    write_file("WikiQA-train.tsv", text);
    write_split("WikiQA-dev.tsv");
    write_split("WikiQA-test.tsv");
    /* a query with a known word, an unseen word and an empty text, in the dev split */
    snprintf(text, sizeof text,
             "%sQ7\tGood xqz good\tD7\tT\tD7-0\t...\t1\r\n", HEADER);
    write_file("hash-dev.tsv", text);
    snprintf(text, sizeof text, "%sQ1\tGood food?\tD1\tT\tD1-0\tgoods are sold here\t1\r\n"
             "Q1\tGood food?\tD1\tT\tD1-1\r\n", HEADER);
    write_file("bad-train.tsv", text);
    return 0;
}

/* Removes a folder of plain files and folders of plain files. */
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

/* An experiment on the fixture: a tiny DSSM, the match head and BM25 heads. */
static const char *write_exp(const char *train, const char *dev, const char *extra)
{
    static char path[256];
    char text[4096];
    snprintf(text, sizeof text,
             "[experiment]\nname = text_fixture\nseed = 1\n\n"
             "[data]\ntype = textpairs\nformat = wikiqa\npath = %s/%s\nvalid_path = %s/%s\n"
             "test_path = %s/WikiQA-test.tsv\nmax_words = 4\ndoc_max_words = 6\nvocab_cap = 1000\n\n"
             "[layer.q_vec]\ntype = embedding_bag\ninput = query\ndim = 4\n\n"
             "[layer.d_vec]\ntype = embedding_bag\ninput = doc\ndim = 4\n\n"
             "[head.match]\ntype = match\ninput = q_vec, d_vec\nlabel = label\nloss = softmax_ce\n"
             "rank = group\n\n"
             "[head.bm25]\ntype = bm25\ninput = query_words, doc_words\nlabel = label\nweight = 0\n"
             "rank = group\nidf = eval\n\n"
             "[head.bm25_all]\ntype = bm25\ninput = query_words, doc_words\nlabel = label\n"
             "weight = 0\nrank = all\nidf = eval\n\n"
             "[head.file_order]\ntype = bm25\ninput = query_words, doc_words\nlabel = label\n"
             "weight = 0\nrank = group\nscorer = file_order\n\n%s"
             "[optimizer]\ntype = adam\n\n[train]\nepochs = 1\nbatch = 4\n",
             dir, train, dir, dev, dir, extra ? extra : "");
    snprintf(path, sizeof path, "%s/exp.ini", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* The trigram key of three bytes, as the dataset packs it. */
static int32_t key3(const char *t) { return (uint8_t)t[0] << 16 | (uint8_t)t[1] << 8 | (uint8_t)t[2]; }

static void test_word_hashing_and_fields(void **st)
{
    (void)st;
    ts_err e = {{0}};
    ts_run_opts o = {0};
    ts_exp *x = ts_exp_load(write_exp("WikiQA-train.tsv", "hash-dev.tsv", NULL), &o, &e);
    if (!x) fail_msg("%s", e.msg);
    if (ts_exp_open_data(x, &e)) fail_msg("%s", e.msg);
    ts_data *D = ts_exp_data(x);
    const ts_dataset_ops *ops = ts_exp_data_ops(x);
    assert_int_equal(D->nrows[TS_TRAIN], 4);
    assert_int_equal(D->nrows[TS_VALID], 1);
    assert_int_equal(D->nrows[TS_TEST], 9);
    const void *p;
    long ntri;
    assert_int_equal(ops->aux(D, "trigram_keys", &p, &ntri), 0);
    const int32_t *keys = p;
    /* "good" -> #go goo ood od#, all seen in training ("Good food?", "a good dog barks") */
    static const char *good[4] = {"#go", "goo", "ood", "od#"};
    int32_t want[4];
    for (int k = 0; k < 4; k++) {
        want[k] = -1;
        for (long i = 0; i < ntri; i++) if (keys[i] == key3(good[k])) want[k] = (int32_t)i;
        assert_true(want[k] >= 0);
    }
    long row = 0;
    if (ops->batch(D, TS_VALID, &row, 1, &e)) fail_msg("%s", e.msg);
    const char *names[7] = {"query", "doc", "label", "qid", "doc_id", "query_words", "doc_words"};
    const ts_tensor *f[7] = {0};
    for (int i = 0; i < D->nfield; i++)
        for (int k = 0; k < 7; k++)
            if (!strcmp(D->field_name[i], names[k])) f[k] = &D->field[i];
    for (int k = 0; k < 7; k++) {
        if (!f[k]) fail_msg("field %s missing", names[k]);
        assert_int_equal(f[k]->dim[0], 1);
        assert_int_equal(f[k]->ndim, 2);
    }
    assert_int_equal(f[0]->dtype, TS_BAGS);
    assert_int_equal(f[0]->dim[1], 4);   /* max_words */
    assert_int_equal(f[1]->dim[1], 6);   /* doc_max_words */
    assert_int_equal(f[2]->dtype, TS_F32);
    assert_int_equal(f[3]->dtype, TS_I32);
    assert_int_equal(f[4]->dtype, TS_I32);
    assert_int_equal(f[5]->dtype, TS_BAGS);
    assert_int_equal(f[5]->dim[1], 1);
    assert_int_equal(f[0]->vocab, ntri);
    /* query "Good xqz good": 3 words; cell 0 and 2 = the four trigrams of "good" in order;
     * "xqz" has no trigram seen in training, so its cell is empty; cell 3 is padding */
    const ts_tensor *q = f[0];
    assert_non_null(q->len);
    assert_int_equal(q->len[0], 3);
    assert_int_equal(q->off[1] - q->off[0], 4);
    assert_int_equal(q->off[2] - q->off[1], 0);
    assert_int_equal(q->off[3] - q->off[2], 4);
    assert_int_equal(q->off[4] - q->off[3], 0);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(q->ids[q->off[0] + k], want[k]);
        assert_int_equal(q->ids[q->off[2] + k], want[k]);
    }
    /* document "...": no word at all -> one empty word */
    assert_int_equal(f[1]->len[0], 1);
    assert_int_equal(f[1]->off[6] - f[1]->off[0], 0);
    assert_int_equal(f[5]->off[1] - f[5]->off[0], 3);  /* the query's word ids, all of them */
    assert_int_equal(f[5]->ids[f[5]->off[0]], f[5]->ids[f[5]->off[0] + 2]);
    assert_float_equal(f[2]->x[0], 1.0f, 0);
    /* a training batch: labels and query groups as in the file */
    long rows[4] = {0, 1, 2, 3};
    if (ops->batch(D, TS_TRAIN, rows, 4, &e)) fail_msg("%s", e.msg);
    assert_int_equal(f[0]->dim[0], 4);
    assert_float_equal(f[2]->x[1], 0.0f, 0);
    assert_int_equal(f[3]->ids[0], f[3]->ids[1]);
    assert_true(f[3]->ids[0] != f[3]->ids[2]);
    assert_true(f[4]->ids[0] != f[4]->ids[1]);
    ts_exp_free(x);
}

static void test_bad_row_names_file_and_line(void **st)
{
    (void)st;
    ts_err e = {{0}};
    ts_run_opts o = {0};
    ts_exp *x = ts_exp_load(write_exp("bad-train.tsv", "WikiQA-dev.tsv", NULL), &o, &e);
    if (!x) fail_msg("%s", e.msg);
    assert_int_equal(ts_exp_open_data(x, &e), -1);
    tu_contains(e.msg, "bad-train.tsv:3:", "expected 7", "skip_bad_rows", NULL);
    ts_exp_free(x);
}

/* format = tsv: three files of named (or numbered) columns; what is cut is reported */
static ts_exp *open_tsv(const char *cols, const char *suffix, ts_err *e)
{
    char text[2048], path[256];
    snprintf(text, sizeof text,
             "[experiment]\nname = tsv_fixture\nseed = 1\n\n"
             "[data]\ntype = textpairs\nformat = tsv\npath = %s/qa-train%s.tsv\n%s\n"
             "max_words = 3\ndoc_max_words = 4\n\n"
             "[layer.q_vec]\ntype = embedding_bag\ninput = query\ndim = 4\n\n"
             "[layer.d_vec]\ntype = embedding_bag\ninput = doc\ndim = 4\n\n"
             "[head.match]\ntype = match\ninput = q_vec, d_vec\nlabel = label\nloss = softmax_ce\n"
             "rank = group\n\n[optimizer]\ntype = adam\n\n[train]\nepochs = 1\nbatch = 4\n",
             dir, suffix, cols);
    snprintf(path, sizeof path, "%s/tsv.ini", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    ts_run_opts o = {0};
    ts_exp *x = ts_exp_load(path, &o, e);
    if (!x) fail_msg("%s", e->msg);
    if (ts_exp_open_data(x, e)) { ts_exp_free(x); return NULL; }
    return x;
}

static void test_generic_tsv_layout(void **st)
{
    (void)st;
    static const char *rows = "q1\twhat do cats eat\tcats eat fish and mice every day\t1\n"
                              "q1\twhat do cats eat\tdogs bark\t0\n"
                              "q2\twho barks\tdogs bark\t1\n";
    char text[1024];
    for (int h = 0; h < 2; h++) {
        const char *split[3] = {"train", "dev", "test"};
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "qa-%s%s.tsv", split[k], h ? "-nohead" : "");
            snprintf(text, sizeof text, "%s%s", h ? "" : "id\tquestion\tanswer\trel\n", rows);
            write_file(name, text);
        }
    }
    ts_err e = {{0}};
    ts_exp *x = open_tsv("query_column = question\ndoc_column = answer\nlabel_column = rel\n"
                         "group_column = id", "", &e);
    if (!x) fail_msg("%s", e.msg);
    ts_data *D = ts_exp_data(x);
    const ts_dataset_ops *ops = ts_exp_data_ops(x);
    assert_int_equal(D->nrows[TS_TRAIN], 3);      /* the header is not a row */
    assert_int_equal(D->nrows[TS_VALID], 3);
    assert_int_equal(D->nrows[TS_TEST], 3);
    long r[3] = {0, 1, 2};
    if (ops->batch(D, TS_TRAIN, r, 3, &e)) fail_msg("%s", e.msg);
    const ts_tensor *qid = NULL, *label = NULL;
    for (int i = 0; i < D->nfield; i++) {
        if (!strcmp(D->field_name[i], "qid")) qid = &D->field[i];
        if (!strcmp(D->field_name[i], "label")) label = &D->field[i];
    }
    assert_int_equal(qid->ids[0], qid->ids[1]);
    assert_true(qid->ids[0] != qid->ids[2]);
    assert_float_equal(label->x[0], 1, 0);
    assert_float_equal(label->x[1], 0, 0);
    const void *p;
    long n;
    assert_int_equal(ops->aux(D, "report", &p, &n), 0);
    /* "what do cats eat" has 4 words > max_words 3; "cats eat fish ..." 7 > doc_max_words 4 */
    tu_contains(p, "queries_cut 1\n", "docs_cut 1\n", "query_words_max 4\n", "doc_words_max 7\n", NULL);
    ts_exp_free(x);
    /* no header: columns by number */
    x = open_tsv("query_column = 1\ndoc_column = 2\nlabel_column = 3\ngroup_column = 0", "-nohead", &e);
    if (!x) fail_msg("%s", e.msg);
    assert_int_equal(ts_exp_data(x)->nrows[TS_TRAIN], 3);
    ts_exp_free(x);
    /* a name the header does not have */
    x = open_tsv("query_column = question\ndoc_column = answr\nlabel_column = rel", "", &e);
    assert_null(x);
    tu_contains(e.msg, "qa-train.tsv:1: [data] doc_column = answr names no column", "\"answer\"", NULL);
}

/* ranks of the relevant items 1 and 3 among [0.9, 0.5, 0.7, 0.1] are 3 and 4 */
static void test_ranking_hand_case(void **st)
{
    (void)st;
    float s[4] = {0.9f, 0.5f, 0.7f, 0.1f};
    uint32_t tie[4] = {1, 2, 3, 4};
    long rel[2] = {3, 1}, ranks[2];
    rk_acc a = {0};
    rk_add(&a, s, tie, 4, rel, 2, ranks);
    assert_int_equal(a.nq, 1);
    assert_float_equal(a.rr, 1.0 / 3, 1e-12);
    assert_float_equal(a.ap, (1.0 / 3 + 2.0 / 4) / 2, 1e-12);
    assert_float_equal(a.ndcg10, (1 / log2(4.0) + 1 / log2(5.0)) / (1 + 1 / log2(3.0)), 1e-12);
    assert_float_equal(a.r1, 0, 1e-12);
    assert_float_equal(a.r10, 1, 1e-12);
    /* a second query: one relevant item tied with two others; the tie key decides, so the
     * relevant item (key 5) ranks after key 2 and before key 9: rank 2 */
    float s2[3] = {0.3f, 0.3f, 0.3f};
    uint32_t tie2[3] = {9, 5, 2};
    long rel2[1] = {1};
    rk_add(&a, s2, tie2, 3, rel2, 1, ranks);
    assert_int_equal(a.nq, 2);
    assert_float_equal(a.rr, 1.0 / 3 + 1.0 / 2, 1e-12);
    assert_float_equal(a.r1, 0, 1e-12);
    /* 12 candidates, the relevant one last: outside the top 10 */
    float s3[12];
    uint32_t tie3[12];
    for (int i = 0; i < 12; i++) { s3[i] = (float)(12 - i); tie3[i] = (uint32_t)i; }
    long rel3[1] = {11};
    rk_acc b = {0};
    rk_add(&b, s3, tie3, 12, rel3, 1, ranks);
    assert_float_equal(b.rr, 1.0 / 12, 1e-12);
    assert_float_equal(b.ndcg10, 0, 1e-12);
    assert_float_equal(b.r10, 0, 1e-12);
    /* grouping: rows by qid, distinct documents numbered */
    int32_t qid[5] = {7, 3, 7, 3, 9}, doc[5] = {4, 4, 5, 6, 5};
    rk_groups g;
    assert_int_equal(rk_groups_make(&g, qid, doc, 5), 0);
    assert_int_equal(g.nq, 3);
    assert_int_equal(g.nd, 3);
    assert_int_equal(g.order[0], 1);
    assert_int_equal(g.order[1], 3);
    assert_int_equal(g.qstart[1], 2);
    assert_int_equal(g.cand[0], g.cand[1]);
    assert_int_equal(g.cand[2], g.cand[4]);
    assert_true(g.cand[3] != g.cand[0]);
    rk_groups_free(&g);
}

/* BM25 (k1 1.2, b 0.75, idf = ln(1 + (3 - df + 0.5)/(df + 0.5)) over the 3 documents of
 * lengths 6, 13 and 4), worked by hand (scores of doc1, doc2, doc3):
 *   "the cat"     0.711 0.549 0.166  relevant doc1 -> rank 1 (with b = 0 doc2 would win)
 *   "a cat cats"  0.516 1.129 1.219  relevant doc2 -> rank 2 (without idf doc2 would win)
 *   "the"         0.196 0.183 0.166  relevant doc1 -> rank 1 (with binary tf doc3 would win)
 * so MRR = MAP = (1 + 1/2 + 1)/3, nDCG@10 = (2 + 1/log2 3)/3, Recall@1 = 2/3, in group and all
 * modes alike (the questions share the candidates); AUC of the 9 pair scores 13/18. File
 * order: relevant at positions 1, 2, 3. */
static void test_bm25_three_documents(void **st)
{
    (void)st;
    char rdir[80];
    snprintf(rdir, sizeof rdir, "%s/run", dir);
    ts_err e = {{0}};
    ts_run_opts o = {.results_dir = rdir};
    if (ts_run(write_exp("WikiQA-train.tsv", "WikiQA-dev.tsv", NULL), &o, &e)) fail_msg("%s", e.msg);
    double v;
    struct { const char *key; double want; } cases[] = {
        {"test.bm25.mrr", 2.5 / 3}, {"test.bm25.map", 2.5 / 3}, {"test.bm25.recall@1", 2.0 / 3},
        {"test.bm25.recall@10", 1}, {"test.bm25.queries", 3},
        {"test.bm25.ndcg@10", (2 + 1 / log2(3.0)) / 3}, {"test.bm25.auc", 13.0 / 18},
        {"test.bm25_all.mrr", 2.5 / 3}, {"test.bm25_all.queries", 3},
        {"test.file_order.mrr", (1 + 0.5 + 1.0 / 3) / 3},
        {"test.match.queries", 3}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (ts_metrics_get(rdir, cases[i].key, &v, &e)) fail_msg("%s", e.msg);
        if (fabs(v - cases[i].want) > 1e-6) fail_msg("%s = %.6f, expected %.6f", cases[i].key, v, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_word_hashing_and_fields),
        cmocka_unit_test(test_bad_row_names_file_and_line),
        cmocka_unit_test(test_generic_tsv_layout),
        cmocka_unit_test(test_ranking_hand_case),
        cmocka_unit_test(test_bm25_three_documents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
