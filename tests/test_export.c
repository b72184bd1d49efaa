/* test_export.c — runs are reloadable: params.bin (ts_save_params / ts_load_params) restores
 * the trained weights exactly and refuses damaged or mismatched files, `tessera export` writes
 * user and item vectors whose dot products (+ item bias) rank the test targets as the retrieval
 * head did (recall@K equal to metrics.json), and `tessera recommend` prints the top K of those
 * scores for a MovieLens userId, watched items excluded, or a clear error for an unknown user.
 * One short training run (1 epoch of movielens_youtube_dnn.ini on ml-latest-small, a few
 * seconds) is shared by all the tests. Uses libtessera's internal structures, as check.c does. */
#include "testutil.h"
#include "internal.h"

#include <math.h>
#include <sys/wait.h>

static char dir[64];                  /* the run */
static char data_ov[4200];            /* data.path=<source tree>/data/movielens/ml-latest-small */

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/tessera-export-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(data_ov, sizeof data_ov, "data.path=%s", tu_src("data/movielens/ml-latest-small"));
    char *ov[] = {"train.epochs=1", "train.patience=0"};
    ts_run_opts o = {.results_dir = dir, .noverride = 2, .overrides = ov};
    ts_err e = {{0}};
    if (ts_run(tu_src("experiments/movielens_youtube_dnn.ini"), &o, &e)) {
        fprintf(stderr, "ts_run: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static double metric(const char *key)
{
    double v;
    ts_err e = {{0}};
    if (ts_metrics_get(dir, key, &v, &e)) fail_msg("%s", e.msg);
    return v;
}

/* The run's config.ini, built, with extra overrides; the data path made absolute. */
static ts_exp *rebuild(const char *extra, ts_err *e)
{
    char cfg[128], *ov[2] = {data_ov, (char *)extra};
    snprintf(cfg, sizeof cfg, "%s/config.ini", dir);
    ts_run_opts o = {.results_dir = dir, .noverride = extra ? 2 : 1, .overrides = ov};
    ts_exp *x = ts_exp_load(cfg, &o, e);
    if (x && ts_exp_build(x, e)) { ts_exp_free(x); x = NULL; }
    return x;
}

static void reload_reproduces_test_metrics(void **state)
{
    ts_err e = {{0}};
    char pp[128];
    snprintf(pp, sizeof pp, "%s/params.bin", dir);
    ts_exp *x = rebuild(NULL, &e);
    if (!x) fail_msg("%s", e.msg);
    if (ts_load_params(x, pp, &e)) fail_msg("%s", e.msg);
    x->ctx.nmetrics = 0;
    if (ts_exp_evaluate(x, TS_TEST, &e)) fail_msg("%s", e.msg);
    int found = 0;
    for (int i = 0; i < x->ctx.nmetrics; i++) {
        ts_metric_rec *m = &x->ctx.metrics[i];
        if (strcmp(m->task, "next") || strncmp(m->metric, "recall@", 7)) continue;
        char key[160];
        snprintf(key, sizeof key, "test.next.%s", m->metric);
        assert_true(fabs(m->value - metric(key)) < 1e-12);   /* same weights, same figures */
        found++;
    }
    assert_int_equal(found, 3);
    /* save and load again: a byte-identical round trip */
    char p2[160];
    snprintf(p2, sizeof p2, "%s/again.bin", dir);
    if (ts_save_params(x, p2, &e)) fail_msg("%s", e.msg);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", pp, p2);
    assert_int_equal(system(cmd), 0);
    ts_exp_free(x);
}

static void damaged_or_mismatched_files_are_refused(void **state)
{
    ts_err e = {{0}};
    char pp[128], bad[160];
    snprintf(pp, sizeof pp, "%s/params.bin", dir);
    snprintf(bad, sizeof bad, "%s/bad.bin", dir);
    ts_exp *x = rebuild(NULL, &e);
    if (!x) fail_msg("%s", e.msg);
    FILE *f = fopen(pp, "rb"), *g = fopen(bad, "wb");
    assert_non_null(f); assert_non_null(g);
    long n = 0;
    for (int c; (c = fgetc(f)) != EOF; n++) fputc(n == 5000 ? c ^ 1 : c, g);   /* one bit */
    fclose(f); fclose(g);
    float w0 = x->ctx.params[0]->w[0];
    assert_int_equal(ts_load_params(x, bad, &e), -1);
    tu_contains(e.msg, "bad.bin", "CRC-32", NULL);
    assert_true(x->ctx.params[0]->w[0] == w0);          /* nothing was loaded */
    snprintf(bad, sizeof bad, "%s/none.bin", dir);
    assert_int_equal(ts_load_params(x, bad, &e), -1);
    tu_contains(e.msg, "none.bin", "cannot open", NULL);
    ts_exp_free(x);
    /* a narrower user vector: the tower's and the head's shapes differ from the file */
    x = rebuild("layer.user_vec.units=32", &e);
    if (!x) fail_msg("%s", e.msg);
    assert_int_equal(ts_load_params(x, pp, &e), -1);
    tu_contains(e.msg, "does not match", "layer.user_vec.W is (128, 64) in the file but (128, 32)",
                "head.next.V is (9724, 64) in the file but (9724, 32)", NULL);
    ts_exp_free(x);
}

/* Runs the tessera program; returns its exit status, output (stdout + stderr) into out. */
static int tessera(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s '%s' 2>&1", tu_build("tessera"), args, data_ov);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void *slurp(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc((size_t)*n);
    assert_int_equal(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

/* Exported vectors against the head: every test user's target ranked among all items by
 * u.v + b with the watched items excluded gives the recall@K the head reported; and
 * `recommend` prints the top 10 of the same scores (the held-out target excluded too). */
static void export_reproduces_ranking_and_recommend(void **state)
{
    char args[300], out[16384];
    snprintf(args, sizeof args, "export '%s' --out '%s/exp'", dir, dir);
    if (tessera(args, out, sizeof out)) fail_msg("tessera %s: %s", args, out);
    char path[160];
    long nu, ni;
    snprintf(path, sizeof path, "%s/exp/user_vectors.bin", dir);
    uint32_t *ub = slurp(path, &nu);
    snprintf(path, sizeof path, "%s/exp/item_vectors.bin", dir);
    uint32_t *ib = slurp(path, &ni);
    assert_int_equal(ub[0], 0x56555354u);               /* "TSUV" */
    assert_int_equal(ib[0], 0x56495354u);               /* "TSIV" */
    int users = (int)ub[2], D = (int)ub[3], items = (int)ib[2];
    assert_int_equal(users, 610); assert_int_equal(items, 9724);
    assert_int_equal(D, 64); assert_int_equal(ib[3], 64);
    assert_int_equal(nu, 16 + 4L * users + 4L * users * D);
    assert_int_equal(ni, 16 + 4L * items * D + 4L * items);
    const int32_t *uid = (const int32_t *)(ub + 4);
    const float *U = (const float *)(uid + users), *V = (const float *)(ib + 4), *bias = V + (long)items * D;

    ts_err e = {{0}};
    ts_exp *x = rebuild(NULL, &e);                    /* for the test split's targets */
    if (!x) fail_msg("%s", e.msg);
    const void *p;
    long n;
    assert_int_equal(ts_ctx_aux(&x->ctx, "user_raw_id", &p, &n), 0);
    const int32_t *uraw = p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_raw_id", &p, &n), 0);
    const int32_t *iraw = p;
    const ts_tensor *watched = ts_ctx_field(&x->ctx, "watched"), *label = ts_ctx_field(&x->ctx, "next_item");
    const ts_tensor *user = ts_ctx_field(&x->ctx, "user");
    float *s = malloc((size_t)items * sizeof *s);
    int hit[3] = {0, 0, 0}, K[3] = {10, 50, 100}, row1 = -1;
    int32_t top[10], want[10];
    for (long r = 0; r < users; r++) {
        if (ts_exp_data_ops(x)->batch(&x->data, TS_TEST, &r, 1, &e)) fail_msg("%s", e.msg);
        assert_int_equal(uid[r], uraw[user->ids[0]]);   /* the row's MovieLens userId */
        for (int i = 0; i < items; i++) {
            double d = bias[i];
            for (int k = 0; k < D; k++) d += (double)U[r * D + k] * V[(long)i * D + k];
            s[i] = (float)d;
        }
        for (int j = watched->off[0]; j < watched->off[1]; j++) s[watched->ids[j]] = -INFINITY;
        int t = (int)label->x[0];
        long rank = isfinite(s[t]) ? ts_rank_of(s, items, t) : 0;
        for (int q = 0; q < 3; q++) hit[q] += rank >= 1 && rank <= K[q];
        if (uid[r] == 1) {                              /* recommend --user 1 excludes t too */
            row1 = (int)r;
            s[t] = -INFINITY;
            assert_int_equal(ts_topk(s, items, 10, top), 10);
            for (int q = 0; q < 10; q++) want[q] = iraw[top[q]];
        }
    }
    /* the head scored in float by sgemm, here in double: allow one user's rank to flip */
    for (int q = 0; q < 3; q++) {
        char key[64];
        snprintf(key, sizeof key, "test.next.recall@%d", K[q]);
        double head = metric(key), mine = (double)hit[q] / users;
        printf("# recall@%d: head %.4f, exported vectors %.4f\n", K[q], head, mine);
        assert_true(fabs(head - mine) <= 1.0 / users + 1e-9);
    }
    assert_true(row1 >= 0);

    snprintf(args, sizeof args, "recommend '%s' --user 1 -k 10", dir);
    if (tessera(args, out, sizeof out)) fail_msg("tessera %s: %s", args, out);
    int lines = 0, same = 0;
    double prev = INFINITY;
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        if (l[0] == '#') continue;
        int rank, id;
        double score;
        char title[256] = "";
        assert_true(sscanf(l, "%d\t%lf\t%d\t%255[^\n]", &rank, &score, &id, title) >= 3);
        assert_int_equal(rank, lines + 1);
        assert_true(score <= prev + 1e-4);
        assert_true(title[0]);
        prev = score;
        same += id == want[lines];
        lines++;
    }
    assert_int_equal(lines, 10);
    assert_true(same >= 9);                             /* near-ties may swap, nothing more */

    snprintf(args, sizeof args, "recommend '%s' --user 99999 -k 5", dir);
    assert_int_equal(tessera(args, out, sizeof out), 1);
    tu_contains(out, "unknown user 99999", "610 users", NULL);
    snprintf(args, sizeof args, "recommend '%s' -k 5", dir);
    assert_int_equal(tessera(args, out, sizeof out), 2);
    tu_contains(out, "usage: tessera recommend", NULL);
    free(s); free(ub); free(ib);
    ts_exp_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reload_reproduces_test_metrics),
        cmocka_unit_test(damaged_or_mismatched_files_are_refused),
        cmocka_unit_test(export_reproduces_ranking_and_recommend)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
