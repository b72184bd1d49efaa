/* test_report.c — the comparison's report (core/report.c, runinfo.c) on run folders written
 * here: what differs between configurations (exactly the differing keys), a configuration read
 * from config.ini when identity.txt is missing, the commit (never a failure without git or a
 * checkout), the machine, a baseline head shown once (and only when it is one), validation
 * figures in summary.csv, the title, the runs' costs. tests/report.sh runs the real thing. */
#include "testutil.h"
#include "report.h"

#include <sys/stat.h>
#include <sys/wait.h>

static char root[256];

static void put(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *s = calloc(1, 1 << 20);
    size_t n = fread(s, 1, (1 << 20) - 1, f);
    s[n] = 0;
    fclose(f);
    return s;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static const char *sub(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    mkdir(buf[k], 0755);
    return buf[k];
}

/* ---- what differs ------------------------------------------------------------------------------ */
static void conf_of(ts_conf *c, const char *dir, const char *config_lines)
{
    char text[4096];
    snprintf(text, sizeof text, "# identity\ntessera 0.1.0 abi 3 fnv:0 /x\n%skey 0123\n", config_lines);
    put(dir, "identity.txt", text);
    assert_int_equal(ts_conf_read(dir, c), 0);
}

static void test_diff_lists_exactly_the_differing_keys(void **st)
{
    (void)st;
    ts_conf a, b, none = {0};
    /* a number written two ways (the default 1 of a head's weight, 1.0 written out; 0.5, 5e-1)
     * is the same value */
    conf_of(&a, sub("diff_a"), "config experiment.name = a\nconfig experiment.seed = 1\n"
            "config head.y.weight = 1\nconfig head.y.x = 5e-1\n"
            "config layer.h.units = 4\nconfig optimizer.lr = 0.01\nconfig optimizer.type = adam\n"
            "config train.epochs = 3\n");
    conf_of(&b, sub("diff_b"), "config experiment.name = b\nconfig experiment.seed = 2\n"
            "config head.y.weight = 1.0\nconfig head.y.x = 0.5\n"
            "config layer.extra.type = dense\nconfig layer.extra.units = 2\n"
            "config layer.h.units = 8\nconfig optimizer.lr = 0.02\nconfig optimizer.type = adam\n"
            "config train.epochs = 3\n");
    const ts_conf *c[3] = {&a, &none, &b};   /* an experiment without a run takes no part */
    const char *skip[] = {"experiment.name", "experiment.seed", NULL};
    ts_diff_row *rows;
    int n = ts_conf_diff(c, 3, skip, &rows);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].key, "layer.extra");   /* a section only b has: one row */
    assert_int_equal(rows[0].section, 1);
    assert_null(ts_diff_cell(&a, &rows[0]));
    assert_string_equal(ts_diff_cell(&b, &rows[0]), "dense");
    assert_string_equal(rows[1].key, "layer.h.units");
    assert_string_equal(ts_diff_cell(&a, &rows[1]), "4");
    assert_string_equal(ts_diff_cell(&b, &rows[1]), "8");
    assert_string_equal(rows[2].key, "optimizer.lr");
    free(rows);
    /* the same configuration but for the skipped keys: nothing differs */
    const ts_conf *same[2] = {&a, &a};
    assert_int_equal(ts_conf_diff(same, 2, skip, &rows), 0);
    free(rows);
    ts_conf_free(&a);
    ts_conf_free(&b);
}

static void test_config_ini_when_identity_is_missing(void **st)
{
    (void)st;
    const char *d = sub("ini_only");
    put(d, "config.ini", "; resolved\n[experiment]\nname = old_run\nseed = 3\nsource = /x/y.ini\n\n"
        "[layer.h]\ntype = dense\nunits = 4\nbias = true ; default\n\n[train]\nthreads = 2\n"
        "epochs = 5\n");
    ts_conf c;
    assert_int_equal(ts_conf_read(d, &c), 0);
    assert_string_equal(ts_conf_get(&c, "experiment.name"), "old_run");
    assert_string_equal(ts_conf_get(&c, "layer.h.bias"), "true");   /* no comment in the value */
    assert_string_equal(ts_conf_get(&c, "train.epochs"), "5");
    assert_null(ts_conf_get(&c, "train.threads"));       /* cannot change a figure */
    assert_null(ts_conf_get(&c, "experiment.source"));
    ts_conf_free(&c);
    assert_int_equal(ts_conf_read(sub("empty_run"), &c), -1);
    assert_int_equal(c.n, 0);
}

/* ---- where it ran ------------------------------------------------------------------------------ */
static int run(const char *const *args)
{
    char out[4096];
    int st = ts_exec_capture(NULL, args, out, sizeof out);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_commit_never_fails(void **st)
{
    (void)st;
    char buf[256];
    const char *plain = sub("not_a_checkout");
    setenv("TESSERA_SOURCE_DIR", plain, 1);
    ts_source_commit(buf, sizeof buf);
    assert_string_equal(buf, "unknown");
    char *path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    setenv("PATH", sub("no_programs"), 1);   /* no git at all */
    setenv("TESSERA_SOURCE_DIR", tu_env("top_srcdir", "."), 1);
    ts_source_commit(buf, sizeof buf);
    assert_string_equal(buf, "unknown");
    setenv("PATH", path, 1);
    free(path);
    /* a checkout of one commit: its short hash, then "uncommitted changes" once a file changes */
    const char *repo = sub("checkout");
    const char *init[] = {"git", "-C", repo, "init", "-q", NULL};
    if (run(init) != 0) { unsetenv("TESSERA_SOURCE_DIR"); skip(); }
    put(repo, "a.txt", "one\n");
    const char *add[] = {"git", "-C", repo, "add", "a.txt", NULL};
    const char *commit[] = {"git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t",
                            "commit", "-q", "-m", "x", NULL};
    assert_int_equal(run(add), 0);
    assert_int_equal(run(commit), 0);
    setenv("TESSERA_SOURCE_DIR", repo, 1);
    ts_source_commit(buf, sizeof buf);
    assert_true(strlen(buf) >= 7 && strspn(buf, "0123456789abcdef") == strlen(buf));
    put(repo, "a.txt", "two\n");
    ts_source_commit(buf, sizeof buf);
    assert_non_null(strstr(buf, " (with uncommitted changes)"));
    unsetenv("TESSERA_SOURCE_DIR");
}

static void test_machine(void **st)
{
    (void)st;
    char buf[1024];
    ts_machine(buf, sizeof buf);
    assert_non_null(strstr(buf, "core"));
    assert_non_null(strstr(buf, "OpenBLAS"));
    ts_svg_path(buf, sizeof buf, "plots/loss_1.png");
    assert_string_equal(buf, "plots/loss_1.svg");
    ts_svg_path(buf, sizeof buf, "curves");
    assert_string_equal(buf, "curves.svg");
}

/* ---- the report of runs ------------------------------------------------------------------------ */
/* A finished run: figures of a learned head (match, moving with the seed) and of a baseline
 * (bm25, the same in every run), its costs, its configuration and curves. */
static char *fake_run(const char *exp, int seed, double shift, int bm25_loss)
{
    char name[128], text[4096];
    snprintf(name, sizeof name, "runs_%s_%d", exp, seed);
    const char *d = sub(name);
    double m = 0.5 + shift + 0.01 * seed;
    snprintf(text, sizeof text, "{\n  \"valid.match.mrr\": %.4f,\n  \"valid.bm25.mrr\": 0.2000,\n"
             "  \"test.match.mrr\": %.4f,\n  \"test.match.queries\": 50,\n  \"test.bm25.mrr\": 0.1634,\n"
             "  \"test.bm25.queries\": 50,\n  \"train.run.examples_per_sec\": %d,\n"
             "  \"train.run.seconds\": %d,\n  \"train.run.best_epoch\": %d,\n  \"train.run.params\": %d\n}\n",
             m + 0.02, m, 1000 + seed, 60 + seed, 1 + seed, shift > 0 ? 2345 : 1234);
    put(d, "metrics.json", text);
    snprintf(text, sizeof text, "config experiment.name = %s\nconfig experiment.seed = %d\n"
             "config head.bm25.type = bm25\n%sconfig head.match.loss = softmax_ce\n"
             "config layer.q.dim = %d\nconfig train.epochs = 3\n", exp, seed,
             bm25_loss ? "config head.bm25.loss = bce\n" : "", shift > 0 ? 16 : 8);
    ts_conf c;
    conf_of(&c, d, text);
    ts_conf_free(&c);
    put(d, "train.csv", "step,epoch,examples,loss,loss.match,examples_per_sec\n10,1,100,2.0,2.0,9\n"
        "20,2,200,1.5,1.5,9\n30,3,300,1.2,1.2,9\n");
    snprintf(text, sizeof text, "epoch,step,split,task,metric,value\n1,10,valid,match,mrr,%.4f\n"
             "1,10,valid,bm25,mrr,0.2\n2,20,valid,match,mrr,%.4f\n2,20,valid,bm25,mrr,0.2\n"
             "0,30,test,match,mrr,%.4f\n", m - 0.05, m, m);
    put(d, "eval.csv", text);
    return strdup(d);
}

/* Writes the report of experiments "narrow" and "wide" over `seeds` seeds into OUT; returns
 * report.md's text (*csv: summary.csv's). */
static char *report_of(const char *out, int seeds, int bm25_loss, int failed_first, char **csv)
{
    static const char *names[2] = {"narrow", "wide"};
    ts_report_exp exp[2] = {{"narrow", "n.ini", "textpairs fake"}, {"wide", "w.ini", "textpairs fake"}};
    char *dirs[4] = {NULL};
    for (int i = 0; i < 2; i++)
        for (int s = 1; s <= seeds; s++) dirs[i * seeds + s - 1] = fake_run(names[i], s, 0.1 * i, bm25_loss);
    if (failed_first) { free(dirs[0]); dirs[0] = NULL; }   /* narrow's seed 1 failed */
    char *argv[] = {"suite.ini", "--seeds", "2"};
    ts_report_in in = {.out = sub(out), .title = "My suite", .description = "two towers",
                       .argc = 3, .argv = argv, .seeds = seeds, .exp = exp, .nexp = 2,
                       .run_dir = dirs, .started = ts_wall_clock(), .failed = failed_first};
    assert_int_equal(ts_report_write(&in), 0);
    for (int i = 0; i < 4; i++) free(dirs[i]);
    char p[600];
    snprintf(p, sizeof p, "%s/summary.csv", in.out);
    *csv = slurp(p);
    snprintf(p, sizeof p, "%s/report.md", in.out);
    char *md = slurp(p);
    assert_non_null(md);
    assert_non_null(*csv);
    return md;
}

static void test_report_of_two_experiments(void **st)
{
    (void)st;
    char *csv, *md = report_of("report_two", 2, 0, 0, &csv);
    assert_true(!strncmp(md, "# My suite\n\ntwo towers\n", 23));   /* the suite's name, first */
    tu_contains(md, "- Command: `tessera compare suite.ini --seeds 2`", "commit ", "- Machine: ",
                "| layer.q.dim | 8 | 16 |",                     /* what differs ... */
                "| parameters | 1,234 | 2,345 |", "| best epoch | 2, 3 | 2, 3 |",
                "| wall time per run | 1 min 1 s ± 0.71 s |", "| match.mrr | 0.5150 ± 0.0071 | 0.6150 ± 0.0071 |",
                "| bm25.mrr | 0.1634 | 4 |", NULL);
    assert_null(strstr(md, "experiment.seed"));                 /* ... and only that */
    assert_null(strstr(md, "head.match.loss"));
    /* the baseline once, and as the b of the t-tests against the baselines (one per experiment) */
    assert_int_equal(count(md, "bm25.mrr"), 3);
    tu_contains(md, "Against the baselines: paired t-test over seeds",
                "| match.mrr | narrow | bm25.mrr | ", "| match.mrr | wide | bm25.mrr | ", NULL);
    /* its table, the t-test, the per-seed wins, the two tests against the baseline */
    assert_int_equal(count(md, "| match.mrr |"), 5);
    /* summary.csv: the validation figures beside the test figures, and the costs */
    assert_int_equal(count(csv, "narrow,textpairs fake,valid.match.mrr,2,"), 1);
    assert_int_equal(count(csv, "wide,textpairs fake,valid.match.mrr,2,"), 1);
    assert_int_equal(count(csv, ",test.match.mrr,2,"), 2);
    assert_int_equal(count(csv, ",train.run.params,2,1234,0,1234 1234\n"), 1);
    assert_int_equal(count(csv, ",test.match.queries,"), 0);   /* counts are no figures */
    free(md);
    free(csv);
}

static void test_baseline_needs_evidence(void **st)
{
    (void)st;
    char *csv, *md;
    /* one seed and a head with a loss: equal figures prove nothing, so it keeps its columns */
    md = report_of("report_one_loss", 1, 1, 0, &csv);
    assert_null(strstr(md, "**Baselines**"));
    tu_contains(md, "| bm25.mrr | 0.1634 | 0.1634 |", NULL);
    free(md);
    free(csv);
    /* one seed and no loss: a head that does not train, shown once */
    md = report_of("report_one", 1, 0, 0, &csv);
    tu_contains(md, "**Baselines**", "| bm25.mrr | 0.1634 | 2 |", NULL);
    assert_int_equal(count(md, "bm25.mrr"), 1);
    free(md);
    free(csv);
}

/* A failed run adds nothing; the configuration then comes from another seed, whose seed is
 * no difference between the experiments. */
static void test_failed_run(void **st)
{
    (void)st;
    char *csv, *md = report_of("report_failed", 2, 0, 1, &csv);
    tu_contains(md, "| runs finished | 1 | 2 |", "| best epoch | –, 3 | 2, 3 |",
                "| match.mrr | 0.5200 | 0.6150 ± 0.0071 |", "| layer.q.dim | 8 | 16 |", "1 failed", NULL);
    assert_null(strstr(md, "experiment.seed"));
    assert_int_equal(count(csv, "narrow,textpairs fake,test.match.mrr,1,0.52,"), 1);
    free(md);
    free(csv);
}

static void test_plots_beside_the_report(void **st)
{
    (void)st;
    if (!ts_have_gnuplot()) skip();
    char *csv, *md = report_of("report_plots", 2, 0, 0, &csv);
    struct stat sb;
    char p[600];
    static const char *files[] = {"loss_1.png", "loss_1.svg", "bar_1_test.match.mrr.png",
                                  "bar_1_test.match.mrr.svg", NULL};
    for (int i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "%s/report_plots/plots/%s", root, files[i]);
        if (stat(p, &sb) || sb.st_size < 100) fail_msg("%s is missing", p);
    }
    tu_contains(md, "(plots/loss_1.png)\n(vector: [loss_1.svg](plots/loss_1.svg))", NULL);
    assert_null(strstr(md, "bar_1_test.bm25"));   /* no figure of a baseline alone */
    /* the validation panel shows mrr per epoch, and the baseline once */
    snprintf(p, sizeof p, "%s/report_plots/plots/loss_1.svg", root);
    char *svg = slurp(p);
    assert_non_null(svg);
    tu_contains(svg, "validation match.mrr per epoch", ">narrow<", ">wide<", NULL);
    assert_int_equal(count(svg, ">bm25 (baseline)<"), 1);
    free(svg);
    free(md);
    free(csv);
}

static int setup(void **st)
{
    (void)st;
    snprintf(root, sizeof root, "%s/tessera-report-XXXXXX", tu_env("TMPDIR", "/tmp"));
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    if (getenv("KEEP_TMP")) return 0;
    const char *args[] = {"rm", "-rf", root, NULL};
    return run(args) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_lists_exactly_the_differing_keys),
        cmocka_unit_test(test_config_ini_when_identity_is_missing),
        cmocka_unit_test(test_commit_never_fails),
        cmocka_unit_test(test_machine),
        cmocka_unit_test(test_report_of_two_experiments),
        cmocka_unit_test(test_baseline_needs_evidence),
        cmocka_unit_test(test_failed_run),
        cmocka_unit_test(test_plots_beside_the_report),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
