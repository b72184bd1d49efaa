/* test_recall_data.c — the movielens dataset plugin: the leave-last-out split on a hand-made
 * folder (time ties, a re-watch, a user too short to split, quoted titles), bad rows named by
 * file and line, the ml-1m `::` format with users.dat, and on the bundled ml-latest-small the
 * split's invariants for every example: the test target is the user's last watch, the
 * validation target the one before, histories are the most recent <= N earlier watches and no
 * history item is later than its target (no future leakage).
 * Not a model test: test_recall_e2e.c trains one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

typedef struct {
    ts_ctx ctx;
    ts_ini ini;
    ts_data D;
    const ts_dataset_ops *ops;
} fixture;

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Opens the movielens dataset with "k=v" pairs; returns open()'s status, message in e. */
static int open_ml(fixture *F, const char *pairs, int max_batch, ts_err *e)
{
    memset(F, 0, sizeof *F);
    const ts_plugin *p = ts_plugin_find(TS_DATASET, "movielens", e);
    if (!p) fail_msg("%s", e->msg);
    F->ops = p->ops;
    ts_ctx_init(&F->ctx, 1, max_batch);
    F->D.ctx = &F->ctx;
    if (ts_ini_from_pairs(&F->ini, "data", pairs, e)) fail_msg("%s", e->msg);
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(&F->ini.sec[0], NULL, lists, 1, e)) fail_msg("%s", e->msg);
    int rc = F->ops->open(&F->D, &F->ini.sec[0], e);
    if (rc == 0) { F->ctx.data = &F->D; F->ctx.data_ops = F->ops; }
    return rc;
}

static void close_ml(fixture *F)
{
    if (F->ops->close) F->ops->close(&F->D);
    ts_ini_free(&F->ini);
    ts_ctx_free(&F->ctx);
}

static const ts_tensor *field(fixture *F, const char *name)
{
    const ts_tensor *t = ts_ctx_field(&F->ctx, name);
    if (!t) fail_msg("no field %s", name);
    return t;
}

/* Bag of row r as "a b c" for comparisons. */
static const char *bag(const ts_tensor *t, int r, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = 0;
    for (int32_t q = t->off[r]; q < t->off[r + 1] && o + 12 < n; q++)
        o += (size_t)snprintf(buf + o, n - o, q > t->off[r] ? " %d" : "%d", t->ids[q]);
    return buf;
}

static char tmpdir[64];

static int make_dir(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_recall_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* User 1: 20@90, 10@100, 30@100 (a tie: file order), 40@120, 10@130 (a re-watch).
 * User 2: 20@50, 30@60, 50@70, 10@80. User 3 has two watches: dropped.
 * Training-period counts (all but each user's last two): 20:2, 30:2, 10:1, 40:0, 50:0, so
 * the new ids are 20->0, 30->1, 10->2, 40->3, 50->4. */
static void split_by_hand(void **state)
{
    char dir[128], pairs[256], b[256];
    snprintf(dir, sizeof dir, "%s/small", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "ratings.csv", "userId,movieId,rating,timestamp\r\n1,10,4.0,100\r\n1,20,3.5,90\r\n"
               "1,30,5.0,100\r\n1,40,2.0,120\r\n1,10,4.0,130\r\n2,20,1.0,50\r\n2,30,1.0,60\r\n"
               "2,50,1.0,70\r\n2,10,2.0,80\r\n3,10,1.0,10\r\n3,20,1.0,20\r\n");
    write_file(dir, "movies.csv", "movieId,title,genres\n10,\"Movie, The (1990)\",Drama|Comedy\n"
               "20,Other (1991),Comedy\n30,\"Say \"\"Hi\"\" (1992)\",(no genres listed)\n99,Unrated (1993),Horror\n");
    snprintf(pairs, sizeof pairs, "path=%s history=2", dir);
    fixture F;
    ts_err e = {{0}};
    if (open_ml(&F, pairs, 8, &e)) fail_msg("%s", e.msg);
    assert_int_equal(F.D.nrows[TS_TRAIN], 3);
    assert_int_equal(F.D.nrows[TS_VALID], 2);
    assert_int_equal(F.D.nrows[TS_TEST], 2);
    const ts_tensor *hist = field(&F, "history"), *gen = field(&F, "genres"), *w = field(&F, "watched"),
                    *age = field(&F, "age"), *lab = field(&F, "next_item"), *user = field(&F, "user");
    assert_int_equal(hist->vocab, 5);
    assert_int_equal(gen->vocab, 3);                  /* Drama, Comedy, (no genres listed) */
    assert_int_equal(user->vocab, 2);
    long rows[3] = {0, 1, 2};
    assert_int_equal(F.ops->batch(&F.D, TS_TRAIN, rows, 3, &e), 0);
    assert_int_equal(hist->dim[0], 3);
    assert_string_equal(bag(hist, 0, b, sizeof b), "0");
    assert_string_equal(bag(hist, 1, b, sizeof b), "0 2");
    assert_string_equal(bag(hist, 2, b, sizeof b), "0");
    assert_string_equal(bag(gen, 1, b, sizeof b), "1 0 1");   /* Comedy; Drama, Comedy */
    assert_true(lab->x[0] == 2 && lab->x[1] == 1 && lab->x[2] == 1);
    assert_true(user->ids[0] == 0 && user->ids[1] == 0 && user->ids[2] == 1);
    /* age = (t_max - t) / (t_max - t_min) over training labels: times 100, 100, 60 */
    assert_float_equal(age->x[0], 0.0, 1e-6);
    assert_float_equal(age->x[2], 1.0, 1e-6);
    assert_int_equal(F.ops->batch(&F.D, TS_VALID, rows, 2, &e), 0);
    assert_true(lab->x[0] == 3 && lab->x[1] == 4);            /* 40 and 50 */
    assert_string_equal(bag(hist, 0, b, sizeof b), "2 1");    /* the 2 most recent: 10, 30 */
    assert_string_equal(bag(w, 0, b, sizeof b), "0 2 1");
    assert_float_equal(age->x[0], 0.0, 0);
    assert_int_equal(F.ops->batch(&F.D, TS_TEST, rows, 2, &e), 0);
    assert_true(lab->x[0] == 2 && lab->x[1] == 2);            /* 10, re-watched by user 1 */
    assert_string_equal(bag(hist, 0, b, sizeof b), "1 3");
    assert_string_equal(bag(w, 0, b, sizeof b), "0 2 1 3");
    assert_string_equal(bag(w, 1, b, sizeof b), "0 1 4");
    const void *p;
    long n;
    assert_int_equal(ts_ctx_aux(&F.ctx, "item_freq", &p, &n), 0);
    assert_int_equal(n, 5);
    const float *freq = p;
    assert_true(freq[0] == 2 && freq[1] == 2 && freq[2] == 1 && freq[3] == 0 && freq[4] == 0);
    assert_int_equal(ts_ctx_aux(&F.ctx, "item_title", &p, &n), 0);
    const char *const *title = p;
    assert_string_equal(title[2], "Movie, The (1990)");
    assert_string_equal(title[1], "Say \"Hi\" (1992)");
    assert_string_equal(title[3], "movie 40");
    assert_int_equal(ts_ctx_aux(&F.ctx, "item_raw_id", &p, &n), 0);
    assert_int_equal(((const int32_t *)p)[4], 50);
    close_ml(&F);
}

/* ml-1m as shipped elsewhere: gzip-compressed files, a users.dat with a sixth field (and one
 * with only four), Latin-1 titles; a users.dat of another layout is an error that says what
 * its rows hold, even under skip_bad_rows. */
static void ml1m_variants(void **state)
{
    char dir[128], pairs[256], cmd[512];
    snprintf(dir, sizeof dir, "%s/ml1mgz", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "ratings.dat", "1::10::5::100\n1::20::3::200\n1::30::4::300\n1::40::4::400\n"
               "2::20::5::100\n2::10::5::150\n2::40::5::160\n");
    write_file(dir, "users.dat", "1::F::25::7::12345::extra\n2::M::56::20\n");
    write_file(dir, "movies.dat", "10::Am\xe9lie (2001)::Comedy|Romance\n20::Twenty (1991)::Comedy|Drama\n");
    snprintf(cmd, sizeof cmd, "gzip %s/ratings.dat %s/movies.dat", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(pairs, sizeof pairs, "path=%s", dir);
    fixture F;
    ts_err e = {{0}};
    if (open_ml(&F, pairs, 4, &e)) fail_msg("%s", e.msg);
    const ts_tensor *o = field(&F, "occupation");
    long rows[2] = {0, 1};
    assert_int_equal(F.ops->batch(&F.D, TS_TEST, rows, 2, &e), 0);
    assert_true(o->ids[0] == 7 && o->ids[1] == 20);
    const void *p;
    long n;
    assert_int_equal(F.ops->aux(&F.D, "item_title", &p, &n), 0);
    const char *const *title = p;
    int found = 0;
    for (long i = 0; i < n; i++) found |= title[i] && !strcmp(title[i], "Am\xc3\xa9lie (2001)");
    assert_true(found);                                    /* Latin-1 e-acute -> UTF-8 */
    close_ml(&F);
    snprintf(pairs, sizeof pairs, "path=%s encoding=utf-8", dir);
    assert_int_equal(open_ml(&F, pairs, 4, &e), -1);
    assert_non_null(strstr(e.msg, "movies.dat.gz:1: the title holds a byte that is not UTF-8 (0xe9"));
    assert_non_null(strstr(e.msg, "encoding = latin-1"));
    ts_ini_free(&F.ini); ts_ctx_free(&F.ctx);
    /* users.dat in another layout: every row bad */
    write_file(dir, "users.dat", "1,F,25,7,12345\n2,M,56,20,54321\n");
    snprintf(pairs, sizeof pairs, "path=%s", dir);
    assert_int_equal(open_ml(&F, pairs, 4, &e), -1);
    assert_non_null(strstr(e.msg, "users.dat:1: expected at least 4 ::-separated fields"));
    assert_non_null(strstr(e.msg, "found 1"));
    ts_ini_free(&F.ini); ts_ctx_free(&F.ctx);
    snprintf(pairs, sizeof pairs, "path=%s skip_bad_rows=true", dir);
    assert_int_equal(open_ml(&F, pairs, 4, &e), -1);
    assert_non_null(strstr(e.msg, "none of its 2 rows parse (line 1: expected at least 4"));
    ts_ini_free(&F.ini); ts_ctx_free(&F.ctx);
}

static void bad_rows_named(void **state)
{
    char dir[128], pairs[256];
    snprintf(dir, sizeof dir, "%s/bad", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,x7,4.0,101\n"
               "1,20,3.0,102\n1,30,3.0\n1,40,3.0,104\n");
    fixture F;
    ts_err e = {{0}};
    snprintf(pairs, sizeof pairs, "path=%s", dir);
    assert_int_equal(open_ml(&F, pairs, 4, &e), -1);
    assert_non_null(strstr(e.msg, "ratings.csv:3: "));
    assert_non_null(strstr(e.msg, "skip_bad_rows = true"));
    ts_ini_free(&F.ini); ts_ctx_free(&F.ctx);
    snprintf(pairs, sizeof pairs, "path=%s skip_bad_rows=true", dir);
    if (open_ml(&F, pairs, 4, &e)) fail_msg("%s", e.msg);
    assert_int_equal(F.D.nrows[TS_TRAIN], 0);                 /* 3 good watches: valid + test */
    assert_int_equal(F.D.nrows[TS_TEST], 1);
    close_ml(&F);
    snprintf(pairs, sizeof pairs, "path=%s/none", tmpdir);
    assert_int_equal(open_ml(&F, pairs, 4, &e), -1);
    assert_non_null(strstr(e.msg, "ratings.dat"));
    ts_ini_free(&F.ini); ts_ctx_free(&F.ctx);
}

/* Found by tests/fuzz: a ratings file without a row sorted a NULL array (undefined behaviour);
 * it is now refused with its name. */
static void empty_ratings_named(void **state)
{
    (void)state;
    char dir[128], pairs[256];
    snprintf(dir, sizeof dir, "%s/empty", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "ratings.csv", "userId,movieId,rating,timestamp\n");
    fixture F;
    ts_err e = {{0}};
    snprintf(pairs, sizeof pairs, "path=%s", dir);
    assert_int_equal(open_ml(&F, pairs, 4, &e), -1);
    assert_non_null(strstr(e.msg, "ratings.csv: no rating rows"));
    if (F.ops->close) F.ops->close(&F.D);
    ts_ini_free(&F.ini); ts_ctx_free(&F.ctx);
}

static void ml1m_format(void **state)
{
    char dir[128], pairs[256];
    snprintf(dir, sizeof dir, "%s/ml1m", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(dir, "ratings.dat", "1::10::5::100\n1::20::3::200\n1::30::4::300\n1::40::4::400\n"
               "2::20::5::100\n2::10::5::150\n2::40::5::160\n");
    write_file(dir, "users.dat", "1::F::25::7::12345\n2::M::56::20::54321\n");
    write_file(dir, "movies.dat", "10::Ten (1990)::Drama\n20::Twenty (1991)::Comedy|Drama\n");
    snprintf(pairs, sizeof pairs, "path=%s", dir);
    fixture F;
    ts_err e = {{0}};
    if (open_ml(&F, pairs, 4, &e)) fail_msg("%s", e.msg);
    assert_int_equal(F.D.nrows[TS_TRAIN], 1);
    const ts_tensor *g = field(&F, "gender"), *a = field(&F, "user_age"), *o = field(&F, "occupation");
    assert_int_equal(o->vocab, 21);
    long rows[2] = {0, 1};
    assert_int_equal(F.ops->batch(&F.D, TS_TEST, rows, 2, &e), 0);
    assert_true(g->ids[0] == 1 && g->ids[1] == 0);
    assert_true(a->ids[0] == 2 && a->ids[1] == 6);            /* 25 -> bucket 2, 56 -> 6 */
    assert_true(o->ids[0] == 7 && o->ids[1] == 20);
    close_ml(&F);
}

/* ---- the bundled ml-latest-small ---------------------------------------------------------- */
typedef struct { int64_t user, item, time; } watch;

static int by_user_item(const void *a, const void *b)
{
    const watch *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

static void bundled_split_invariants(void **state)
{
    const char *top = getenv("top_srcdir");
    char dir[1024], path[1100], pairs[1200];
    snprintf(dir, sizeof dir, "%s/data/movielens/ml-latest-small", top ? top : ".");
    snprintf(path, sizeof path, "%s/ratings.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s (set top_srcdir)", path);
    watch *ws = malloc(sizeof *ws * 110000);
    long n = 0;
    char line[256];
    while (fgets(line, sizeof line, f) && n < 110000) {
        long long u, i, t;
        double r;
        if (sscanf(line, "%lld,%lld,%lf,%lld", &u, &i, &r, &t) == 4) ws[n++] = (watch){u, i, t};
    }
    fclose(f);
    assert_int_equal(n, 100836);
    qsort(ws, (size_t)n, sizeof *ws, by_user_item);    /* no (user, movie) repeats in this file */
    long users[1000], nu = 0, ustart[1001];
    for (long i = 0; i < n; i++)
        if (i == 0 || ws[i].user != ws[i - 1].user) { ustart[nu] = i; users[nu++] = ws[i].user; }
    ustart[nu] = n;
    assert_int_equal(nu, 610);

    fixture F;
    ts_err e = {{0}};
    snprintf(pairs, sizeof pairs, "path=%s history=50", dir);
    if (open_ml(&F, pairs, 512, &e)) fail_msg("%s", e.msg);
    assert_int_equal(F.D.nrows[TS_TRAIN], 100836 - 3 * 610);
    const void *p;
    long ni;
    assert_int_equal(ts_ctx_aux(&F.ctx, "item_raw_id", &p, &ni), 0);
    const int32_t *raw = p;
    assert_int_equal(ni, 9724);
    assert_int_equal(ts_ctx_aux(&F.ctx, "item_freq", &p, &ni), 0);
    const float *freq = p;
    for (long i = 1; i < ni; i++) assert_true(freq[i] <= freq[i - 1]);
    const ts_tensor *hist = field(&F, "history"), *w = field(&F, "watched"), *lab = field(&F, "next_item"),
                    *user = field(&F, "user");
    long rows[512], examples = 0;
    for (int split = 0; split < 3; split++)
        for (long s = 0; s < F.D.nrows[split]; s += 512) {
            int b = (int)(F.D.nrows[split] - s < 512 ? F.D.nrows[split] - s : 512);
            for (int i = 0; i < b; i++) rows[i] = s + i;
            if (F.ops->batch(&F.D, split, rows, b, &e)) fail_msg("%s", e.msg);
            for (int r = 0; r < b; r++, examples++) {
                int u = user->ids[r];
                long nw = ustart[u + 1] - ustart[u];
                watch key = {users[u], raw[(int)lab->x[r]], 0};
                watch *tw = bsearch(&key, ws + ustart[u], (size_t)nw, sizeof *ws, by_user_item);
                assert_non_null(tw);                          /* the label is the user's watch */
                int hn = hist->off[r + 1] - hist->off[r], wn = w->off[r + 1] - w->off[r];
                assert_true(hn <= 50 && hn >= 1);
                assert_int_equal(hn, wn < 50 ? wn : 50);
                /* the history is the end of the watched list */
                assert_memory_equal(hist->ids + hist->off[r], w->ids + w->off[r + 1] - hn, sizeof(int32_t) * (size_t)hn);
                if (split == TS_VALID) assert_int_equal(wn, nw - 2);
                if (split == TS_TEST) assert_int_equal(wn, nw - 1);
                int64_t tmax = 0;
                for (int32_t q = w->off[r]; q < w->off[r + 1]; q++) {
                    key.item = raw[w->ids[q]];
                    watch *hw = bsearch(&key, ws + ustart[u], (size_t)nw, sizeof *ws, by_user_item);
                    assert_non_null(hw);
                    assert_true(hw->time <= tw->time);        /* no future leakage */
                    if (hw->time > tmax) tmax = hw->time;
                }
                if (split == TS_TEST)                         /* the test target is the last watch */
                    for (long q = ustart[u]; q < ustart[u + 1]; q++) assert_true(ws[q].time <= tw->time);
            }
        }
    assert_int_equal(examples, 100836 - 3 * 610 + 2 * 610);
    close_ml(&F);
    free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_by_hand),
        cmocka_unit_test(bad_rows_named),
        cmocka_unit_test(empty_ratings_named),
        cmocka_unit_test(ml1m_format),
        cmocka_unit_test(ml1m_variants),
        cmocka_unit_test(bundled_split_invariants),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
