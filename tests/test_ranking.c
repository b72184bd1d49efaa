/* test_ranking.c — the YouTube DNN ranking stage (plugins/datasets/movielens_ranking.c,
 * core/retriever.c, the binary head's `group =`): one short recall run (1 epoch of
 * movielens_youtube_dnn.ini on ml-latest-small) is shared by all the tests.
 *  - no future leak: a user's later ratings are altered (other movies, other ratings, the same
 *    times); the rows of every step before them (candidates, history bags, raw features, labels,
 *    weights) stay bit for bit the same, while a step whose history holds an altered watch
 *    does change (so the comparison can fail);
 *  - the candidate order on the test steps IS the recall stage: its recall@10 and ndcg@10 equal
 *    the recall run's own test figures (same history, exclusions, example age 0);
 *  - end to end with a quality floor: 1 epoch of movielens_youtube_ranking.ini ranks the test
 *    steps' candidates better than the candidate order (ndcg@10, recall@10);
 *  - `tessera recommend --rank` prints the user's candidates best first by exp(z);
 *  - a missing recall run is refused with the key's line and what to do. */
#include "testutil.h"
#include "internal.h"

#include <math.h>
#include <sys/stat.h>

static char dir[64];                      /* the recall run, the altered data, the ranking run */
static char recall[128], rec_ov[256], data_ov[4200];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/tessera-ranking-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(recall, sizeof recall, "%s/recall", dir);
    snprintf(rec_ov, sizeof rec_ov, "data.recall_run=%s", recall);
    snprintf(data_ov, sizeof data_ov, "data.path=%s", tu_src("data/movielens/ml-latest-small"));
    char *ov[] = {"train.epochs=1", "train.patience=0", data_ov};
    ts_run_opts o = {.results_dir = recall, .noverride = 3, .overrides = ov};
    ts_err e = {{0}};
    if (ts_run(tu_src("experiments/movielens_youtube_dnn.ini"), &o, &e)) {
        fprintf(stderr, "ts_run: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static double metric(const char *run, const char *key)
{
    double v;
    ts_err e = {{0}};
    if (ts_metrics_get(run, key, &v, &e)) fail_msg("%s", e.msg);
    return v;
}

/* The ranking experiment on the data in `path`, opened and built (not trained). */
static ts_exp *open_ranking(const char *path, ts_err *e)
{
    char pov[4200];
    snprintf(pov, sizeof pov, "data.path=%s", path);
    char *ov[] = {pov, rec_ov, "data.train_steps=3"};
    ts_run_opts o = {.results_dir = dir, .noverride = 3, .overrides = ov};
    ts_exp *x = ts_exp_load(tu_src("experiments/movielens_youtube_ranking.ini"), &o, e);
    if (x && ts_exp_build(x, e)) { ts_exp_free(x); x = NULL; }
    return x;
}

/* One row, every value that may not depend on the future, as text (movieIds, not indices). */
typedef struct { int user, pos; char *text; } row_t;

static row_t *dump(ts_exp *x, const char *want_user_s, long *nrows)
{
    ts_err e;
    const void *p;
    long n;
    assert_int_equal(ts_ctx_aux(&x->ctx, "item_raw_id", &p, &n), 0);
    const int32_t *iraw = p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "step_user", &p, &n), 0);
    const int32_t *suser = p;
    assert_int_equal(ts_ctx_aux(&x->ctx, "step_pos", &p, &n), 0);
    const int32_t *spos = p;
    int want = atoi(want_user_s);
    const ts_tensor *item = ts_ctx_field(&x->ctx, "item"), *hist = ts_ctx_field(&x->ctx, "history"),
                    *raw = ts_ctx_field(&x->ctx, "raw"), *lab = ts_ctx_field(&x->ctx, "label"),
                    *w = ts_ctx_field(&x->ctx, "weight"), *step = ts_ctx_field(&x->ctx, "step");
    assert_non_null(item); assert_non_null(hist); assert_non_null(raw); assert_non_null(lab);
    assert_non_null(w); assert_non_null(step);
    row_t *out = NULL;
    long m = 0;
    for (int sp = 0; sp < 3; sp++) {
        for (long r = 0; r < x->data.nrows[sp]; r++) {
            if (ts_exp_data_ops(x)->batch(&x->data, (ts_phase)sp, &r, 1, &e)) fail_msg("%s", e.msg);
            int st = step->ids[0];
            if (suser[st] != want) continue;
            char buf[8192];
            int k = snprintf(buf, sizeof buf, "split %d item %d label %g weight %g raw", sp,
                             iraw[item->ids[0]], (double)lab->x[0], (double)w->x[0]);
            for (int f = 0; f < raw->dim[1]; f++) k += snprintf(buf + k, sizeof buf - k, " %.9g", (double)raw->x[f]);
            k += snprintf(buf + k, sizeof buf - k, " history");
            for (int32_t j = hist->off[0]; j < hist->off[1]; j++)
                k += snprintf(buf + k, sizeof buf - k, " %d", iraw[hist->ids[j]]);
            out = realloc(out, (size_t)(m + 1) * sizeof *out);
            out[m].user = want;
            out[m].pos = spos[st];
            out[m].text = strdup(buf);
            m++;
        }
    }
    *nrows = m;
    return out;
}

/* Copies ml-latest-small into DIR/alt with user 1's last `nalt` watches (by time, then file
 * order) moved to other movies with other ratings, same timestamps. Returns the position of the
 * first altered watch. */
static int write_altered(const char *alt, int nalt)
{
    char cmd[4400];
    mkdir(alt, 0700);
    snprintf(cmd, sizeof cmd, "cp '%s/movies.csv' '%s/'", tu_src("data/movielens/ml-latest-small"), alt);
    assert_int_equal(system(cmd), 0);
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/ratings.csv", tu_src("data/movielens/ml-latest-small"));
    snprintf(dst, sizeof dst, "%s/ratings.csv", alt);
    FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
    assert_non_null(in); assert_non_null(out);
    static char lines[110000][64];
    long n = 0, u1[4000], nu1 = 0;
    long long t1[4000];
    static int seen[200000];
    while (n < 110000 && fgets(lines[n], sizeof lines[n], in)) {
        long long u, it, t;
        double r;
        if (sscanf(lines[n], "%lld,%lld,%lf,%lld", &u, &it, &r, &t) == 4 && u == 1) {
            u1[nu1] = n; t1[nu1++] = t;
            if (it < 200000) seen[it] = 1;
        }
        n++;
    }
    fclose(in);
    /* user 1's watches by (time, file order): the last nalt are altered */
    for (long a = 1; a < nu1; a++)
        for (long b = a; b > 0 && t1[b - 1] > t1[b]; b--) {
            long tl = u1[b]; u1[b] = u1[b - 1]; u1[b - 1] = tl;
            long long tt = t1[b]; t1[b] = t1[b - 1]; t1[b - 1] = tt;
        }
    int movie = 1;
    for (long k = nu1 - nalt; k < nu1; k++) {
        while (seen[movie]) movie++;              /* a movie user 1 never rated (and it exists:
                                                     movies 1.. are in the file) */
        seen[movie] = 1;
        snprintf(lines[u1[k]], sizeof lines[u1[k]], "1,%d,0.5,%lld\n", movie, t1[k]);
    }
    for (long i = 0; i < n; i++) fputs(lines[i], out);
    fclose(out);
    return (int)(nu1 - nalt);
}

static void no_future_leak(void **state)
{
    (void)state;
    char alt[128];
    snprintf(alt, sizeof alt, "%s/alt", dir);
    int first_alt = write_altered(alt, 3);       /* the last training step, valid and test */
    ts_err e = {{0}};
    ts_exp *a = open_ranking(tu_src("data/movielens/ml-latest-small"), &e);
    if (!a) fail_msg("%s", e.msg);
    long na, nb;
    row_t *ra = dump(a, "1", &na);
    ts_exp_free(a);
    ts_exp *b = open_ranking(alt, &e);
    if (!b) fail_msg("%s", e.msg);
    row_t *rb = dump(b, "1", &nb);
    ts_exp_free(b);
    assert_int_equal(na, nb);
    assert_int_equal(na, 5 * 100);               /* 3 training steps, valid, test; K = 100 */
    long same = 0, changed = 0;
    for (long i = 0; i < na; i++) {
        assert_int_equal(ra[i].pos, rb[i].pos);
        if (ra[i].pos < first_alt) {             /* before every altered watch: identical */
            if (strcmp(ra[i].text, rb[i].text))
                fail_msg("step at position %d changed when later rows were altered:\n%s\n%s",
                         ra[i].pos, ra[i].text, rb[i].text);
            same++;
        } else if (ra[i].pos > first_alt && strcmp(ra[i].text, rb[i].text)) {
            changed++;                           /* its history holds an altered watch */
        }
    }
    assert_int_equal(same, 2 * 100);             /* the first two training steps */
    assert_true(changed >= 100);                 /* the comparison sees a change when there is one */
    for (long i = 0; i < na; i++) { free(ra[i].text); free(rb[i].text); }
    free(ra); free(rb);
}

static char rank_run[128];

static void ranking_end_to_end(void **state)
{
    (void)state;
    snprintf(rank_run, sizeof rank_run, "%s/ranking", dir);
    char *ov[] = {data_ov, rec_ov, "data.train_steps=3", "train.epochs=1", "train.patience=0"};
    ts_run_opts o = {.results_dir = rank_run, .noverride = 5, .overrides = ov};
    ts_err e = {{0}};
    if (ts_run(tu_src("experiments/movielens_youtube_ranking.ini"), &o, &e)) fail_msg("%s", e.msg);
    /* the candidate order is the recall stage's own ranking of the test step */
    assert_true(fabs(metric(rank_run, "test.candidate_order.recall@10") -
                     metric(recall, "test.next.recall@10")) < 1e-9);
    assert_true(fabs(metric(rank_run, "test.candidate_order.ndcg@10") -
                     metric(recall, "test.next.ndcg@10")) < 1e-6);
    assert_true(metric(rank_run, "test.rank.groups") == 610);
    /* quality floor: the ranking stage beats the order it re-ranks */
    double r = metric(rank_run, "test.rank.ndcg@10"), c = metric(rank_run, "test.candidate_order.ndcg@10");
    fprintf(stderr, "ranking ndcg@10 %.4f, candidate order %.4f, popularity %.4f\n", r, c,
            metric(rank_run, "test.popularity.ndcg@10"));
    assert_true(r > c + 0.005);
    assert_true(metric(rank_run, "test.rank.recall@10") > metric(rank_run, "test.candidate_order.recall@10"));
}

/* recommend --rank: the user's candidates re-ranked, best first, 10 lines */
static void recommend_rank_mode(void **state)
{
    (void)state;
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "'%s' recommend '%s' --user 1 -k 10 --rank '%s' 2>&1",
             tu_build("tessera"), rank_run, data_ov);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[1024];
    int rows = 0, header = 0;
    double prev = INFINITY;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') { header++; continue; }
        int rank, rrank, id;
        double score;
        if (sscanf(line, "%d\t%lf\t%d\t%d", &rank, &score, &rrank, &id) != 4) fail_msg("%s", line);
        assert_int_equal(rank, rows + 1);
        assert_true(score <= prev && score > 0);           /* exp(z), best first */
        assert_true(rrank >= 1 && rrank <= 100);
        prev = score;
        rows++;
    }
    assert_int_equal(pclose(f), 0);
    assert_int_equal(header, 2);
    assert_int_equal(rows, 10);
    snprintf(cmd, sizeof cmd, "'%s' recommend '%s' --user 99999 --rank '%s' 2>&1",
             tu_build("tessera"), rank_run, data_ov);
    f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "unknown user 99999"));
    while (fgets(line, sizeof line, f)) {}
    assert_int_not_equal(pclose(f), 0);
}

static void missing_recall_run(void **state)
{
    (void)state;
    char *ov[] = {data_ov, "data.recall_run=/nonexistent/run"};
    ts_run_opts o = {.results_dir = dir, .noverride = 2, .overrides = ov};
    ts_err e = {{0}};
    ts_exp *x = ts_exp_load(tu_src("experiments/movielens_youtube_ranking.ini"), &o, &e);
    assert_non_null(x);
    assert_int_equal(ts_exp_build(x, &e), -1);
    ts_exp_free(x);
    assert_non_null(strstr(e.msg, "recall_run"));
    assert_non_null(strstr(e.msg, "/nonexistent/run is not a finished run"));
    assert_non_null(strstr(e.msg, "tessera run"));
}

/* the binary head's group = must name a field of one id per row */
static void group_names_a_field(void **state)
{
    (void)state;
    char *ov[] = {data_ov, rec_ov, "data.train_steps=1", "head.rank.group=stp"};
    ts_run_opts o = {.results_dir = dir, .noverride = 4, .overrides = ov};
    ts_err e = {{0}};
    ts_exp *x = ts_exp_load(tu_src("experiments/movielens_youtube_ranking.ini"), &o, &e);
    assert_non_null(x);
    assert_int_equal(ts_exp_build(x, &e), -1);
    ts_exp_free(x);
    assert_non_null(strstr(e.msg, "head.rank (binary): group = stp must name a dataset field"));
    assert_non_null(strstr(e.msg, "the dataset has no such field"));
}

/* a malformed ratings row is refused with FILE:LINE and what to do */
static void bad_rating_row(void **state)
{
    (void)state;
    char bad[128], path[256], pov[300];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    mkdir(bad, 0700);
    snprintf(path, sizeof path, "%s/ratings.csv", bad);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,four,964981247\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/movies.csv", bad);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n", f);
    fclose(f);
    snprintf(pov, sizeof pov, "data.path=%s", bad);
    char *ov[] = {pov, rec_ov};
    ts_run_opts o = {.results_dir = dir, .noverride = 2, .overrides = ov};
    ts_err e = {{0}};
    ts_exp *x = ts_exp_load(tu_src("experiments/movielens_youtube_ranking.ini"), &o, &e);
    assert_non_null(x);
    assert_int_equal(ts_exp_build(x, &e), -1);
    ts_exp_free(x);
    assert_non_null(strstr(e.msg, "bad/ratings.csv:3: expected userId,movieId,rating,timestamp"));
    assert_non_null(strstr(e.msg, "fix or delete the row"));
}

/* inside `tessera compare` (this run in OUT/runs/NAME/seed-N), a recall_run that does not exist
 * is looked for as the same comparison's seed-1 run of the experiment it names */
static void compare_sibling_recall_run(void **state)
{
    (void)state;
    char cmd[512], me[256], lone[256];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/cmp/runs/movielens_youtube_dnn' && cp -r '%s' "
             "'%s/cmp/runs/movielens_youtube_dnn/seed-1'", dir, recall, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(me, sizeof me, "%s/cmp/runs/movielens_youtube_ranking/seed-2", dir);
    snprintf(lone, sizeof lone, "%s/lone/movielens_youtube_ranking/seed-2", dir);
    char *ov[] = {data_ov, "data.recall_run=no/such/movielens_youtube_dnn", "data.train_steps=1"};
    for (int k = 0; k < 2; k++) {
        ts_run_opts o = {.results_dir = k ? lone : me, .noverride = 3, .overrides = ov};
        ts_err e = {{0}};
        ts_exp *x = ts_exp_load(tu_src("experiments/movielens_youtube_ranking.ini"), &o, &e);
        assert_non_null(x);
        int rc = ts_exp_build(x, &e);
        ts_exp_free(x);
        if (k == 0 && rc) fail_msg("%s", e.msg);               /* found the comparison's run */
        if (k == 1) {                                           /* no comparison around it */
            assert_int_equal(rc, -1);
            assert_non_null(strstr(e.msg, "no/such/movielens_youtube_dnn is not a finished run"));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_future_leak),
        cmocka_unit_test(ranking_end_to_end),
        cmocka_unit_test(recommend_rank_mode),
        cmocka_unit_test(missing_recall_run),
        cmocka_unit_test(group_names_a_field),
        cmocka_unit_test(bad_rating_row),
        cmocka_unit_test(compare_sibling_recall_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
