/* test_recall_e2e.c — the YouTube DNN recall model learns: experiments/movielens_youtube_dnn.ini
 * trained for a short budget on the bundled ml-latest-small must beat the most-popular
 * baseline on the test users' Recall@50 (watched items excluded from both), the baseline must
 * land where it does for this split (about 0.11), and the head's report must write the item
 * vectors `tessera export` reads. Takes about half a minute on one core. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"

static double get(const char *dir, const char *key)
{
    double v;
    ts_err e = {{0}};
    if (ts_metrics_get(dir, key, &v, &e)) fail_msg("%s", e.msg);
    return v;
}

static void sampled_softmax_beats_popularity(void **state)
{
    const char *top = getenv("top_srcdir");
    char ini[1024], dir[64], path[128], line[256];
    snprintf(ini, sizeof ini, "%s/experiments/movielens_youtube_dnn.ini", top ? top : ".");
    snprintf(dir, sizeof dir, "/tmp/test_recall_e2e_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char *ov[] = {"train.epochs=3", "train.patience=0"};
    ts_run_opts o = {.results_dir = dir, .noverride = 2, .overrides = ov, .log = NULL};
    ts_err e = {{0}};
    if (ts_run(ini, &o, &e)) fail_msg("ts_run(%s): %s", ini, e.msg);
    double model = get(dir, "test.next.recall@50"), pop = get(dir, "test.popularity.recall@50");
    double ndcg = get(dir, "test.next.ndcg@10"), mrr = get(dir, "test.next.mrr");
    printf("# test recall@50: sampled softmax %.4f, popularity %.4f; ndcg@10 %.4f, mrr %.4f\n",
           model, pop, ndcg, mrr);
    assert_true(pop > 0.09 && pop < 0.13);
    assert_true(model > pop + 0.03);
    assert_true(get(dir, "test.next.recall@100") >= model);
    assert_true(mrr > 0 && mrr < 1 && ndcg > 0);
    snprintf(path, sizeof path, "%s/item_vectors.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("the retrieval head's report did not write %s", path);
    long lines = 0;
    while (fgets(line, sizeof line, f))
        if (line[strlen(line) - 1] == '\n') lines++;
    fclose(f);
    assert_int_equal(lines, 1 + 9724);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(sampled_softmax_beats_popularity)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
