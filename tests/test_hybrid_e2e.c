/* test_hybrid_e2e.c — the hybrid lexical-semantic matcher learns: experiments/wikiqa_hybrid.ini
 * with narrower CNN towers, trained for one epoch on the bundled WikiQA (seconds), must rank the
 * 243 test questions' candidate sentences better than BM25 and than the file order of the
 * sentences, the two baselines every neural matcher of the bundle loses to, measured by the same
 * run on the same candidates. The same run searches [train] output_weights = match.map, the late
 * fusion of the three rankers' standardised scores on each question's own candidates: its
 * validation MAP is never below the hybrid's own (the weights (1, 0, 0) are in the grid), and it
 * reports every ranking figure of the chosen mixture on test. */
#include "testutil.h"

#include <dirent.h>

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

static void test_wikiqa_hybrid_beats_bm25_and_file_order(void **st)
{
    (void)st;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/tessera-hybrid-e2e-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char *ov[] = {"train.epochs=1", "layer.q_words.dim=128", "layer.d_words.dim=128",
                  "layer.q_conv.filters=128", "layer.d_conv.filters=128", "layer.q_vec.units=64",
                  "layer.d_vec.units=64", "train.output_weights=match.map"};
    ts_run_opts o = {.results_dir = dir, .noverride = 8, .overrides = ov, .log = NULL};
    ts_err e = {{0}};
    if (ts_run(tu_src("experiments/wikiqa_hybrid.ini"), &o, &e)) { rm_tree(dir); fail_msg("%s", e.msg); }
    double map, bm25, order, n, vmap, vcomb, tcomb, tq, wm, wb, wo;
    if (ts_metrics_get(dir, "test.match.map", &map, &e) || ts_metrics_get(dir, "test.bm25.map", &bm25, &e) ||
        ts_metrics_get(dir, "test.file_order.map", &order, &e) ||
        ts_metrics_get(dir, "test.match.queries", &n, &e) ||
        ts_metrics_get(dir, "valid.match.map", &vmap, &e) ||
        ts_metrics_get(dir, "valid.combined.map", &vcomb, &e) ||
        ts_metrics_get(dir, "test.combined.map", &tcomb, &e) ||
        ts_metrics_get(dir, "test.combined.queries", &tq, &e) ||
        ts_metrics_get(dir, "test.combined.w_match", &wm, &e) ||
        ts_metrics_get(dir, "test.combined.w_bm25", &wb, &e) ||
        ts_metrics_get(dir, "test.combined.w_file_order", &wo, &e)) {
        rm_tree(dir);
        fail_msg("%s", e.msg);
    }
    rm_tree(dir);
    print_message("WikiQA test MAP: hybrid %.4f, BM25 %.4f, file order %.4f over %.0f questions\n",
                  map, bm25, order, n);
    assert_float_equal(n, 243, 0);
    assert_true(bm25 > 0.58 && bm25 < 0.62);     /* deterministic: 0.6005 */
    assert_true(order > 0.63 && order < 0.65);   /* deterministic: 0.6421 */
    assert_true(map > order + 0.02);
    print_message("output weights: match %.2f, bm25 %.2f, file order %.2f; valid MAP %.4f -> "
                  "%.4f, test %.4f\n", wm, wb, wo, vmap, vcomb, tcomb);
    assert_true(vcomb >= vmap - 1e-9);
    assert_float_equal(tq, 243, 0);                /* the same questions as the heads' own */
    assert_true(tcomb > order && tcomb > bm25);
    double mx = wm > wb ? wm : wb;
    mx = mx > wo ? mx : wo;
    assert_float_equal(mx, 1.0, 1e-12);
    assert_true(wm >= 0 && wb >= 0 && wo >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_wikiqa_hybrid_beats_bm25_and_file_order)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
