/* test_abi.c — the growable plugin ABI and the init op, through the library:
 *  - TS_OP reads an op only when the plugin's ops size covers it;
 *  - the loader refuses an ops table smaller than ABI 3's first layout with a sentence, and
 *    loads a table shorter (older plugin) or longer (newer plugin) than this host's;
 *  - a plugin compiled before `init` was appended runs, and its init is never called;
 *  - a head's init is called once, after the parameter arena holds its initial values;
 *  - a trainable embedding with `pretrained =` resumed from a checkpoint ends bit-identical to
 *    an uninterrupted run (the file's vectors go in at init, before the restore, not at the
 *    first forward, where they overwrote the trained rows). One BLAS thread (make check sets it).
 * The command-line side (skipped files, warnings, check-plugin) is tests/abi.sh. */
#include "testutil.h"

#include <math.h>
#include <stddef.h>

static const char *ops_sizes(void) { return tu_build("tests/plugins/.libs/ops_sizes.so"); }

static int never(ts_layer *L, ts_err *e) { (void)L; return ts_fail(e, "never"); }

static void test_ts_op_reads_what_the_size_covers(void **st)
{
    (void)st;
    ts_layer_ops ops = {.size = sizeof ops, .init = never};
    assert_true(TS_OP(&ops, init) == never);
    ops.size = (uint32_t)offsetof(ts_layer_ops, init);   /* compiled before init existed */
    assert_null(TS_OP(&ops, init));
    assert_null(TS_OP(&ops, check_keys));                 /* NULL in the table itself */
    ops.size = (uint32_t)offsetof(ts_layer_ops, init) + 1;   /* a torn field is not read */
    assert_null(TS_OP(&ops, init));
    ts_head_ops h = {.size = (uint32_t)offsetof(ts_head_ops, predictions)};
    assert_null(TS_OP(&h, predictions));
}

static void test_loader_checks_the_ops_size(void **st)
{
    (void)st;
    ts_err e;
    const ts_plugin *p = ts_plugin_open_file(ops_sizes(), 0, &e);
    if (!p) fail_msg("%s", e.msg);
    assert_string_equal(p->name, "ops_before_init");
    p = ts_plugin_open_file(ops_sizes(), 1, &e);
    if (!p) fail_msg("%s", e.msg);
    assert_string_equal(p->name, "ops_from_future");
    assert_null(ts_plugin_open_file(ops_sizes(), 2, &e));
    tu_contains(e.msg, "ops_sizes.so", "the layer 'ops_too_small' has an ops table of 8 bytes",
                "first layout", "rebuild it", NULL);
}

/* An experiment whose hidden layer is the given plugin file's first entry. */
static const char *exp_with_plugin(const char *file)
{
    static char text[4096];
    snprintf(text, sizeof text,
             "[experiment]\nname = abi\nseed = 1\n"
             "[data]\ntype = synthetic_mmoe\nrows = 300, 100, 100\nd = 6\n"
             "[layer.h]\ntype = ops_before_init\nplugin = %s\ninput = x\n"
             "[layer.out]\ntype = dense\ninput = h\nunits = 1\n"
             "[head.y1]\ntype = regression\ninput = out\nlabel = y1\nloss = mse\n"
             "[optimizer]\ntype = sgd\nlr = 0.01\n[train]\nepochs = 1\nbatch = 50\n", file);
    return tu_write(".ini", text);
}

static void test_init_past_the_size_is_not_called(void **st)
{
    (void)st;
    ts_err e;
    const char *ini = exp_with_plugin(ops_sizes());
    if (tu_build_exp(ini, 0, NULL, &e)) fail_msg("%s", e.msg);
    unlink(ini);
}

/* A head's init: called once, after the arena exists and holds the initial values. */
static void test_head_init_called_once_after_the_arena(void **st)
{
    (void)st;
    char text[2048], results[] = "/tmp/tessera-abi-head-XXXXXX";
    assert_non_null(mkdtemp(results));
    snprintf(text, sizeof text,
             "[experiment]\nname = abi_head\nseed = 1\n"
             "[data]\ntype = synthetic_mmoe\nrows = 300, 100, 100\nd = 6\n"
             "[layer.out]\ntype = dense\ninput = x\nunits = 1\n"
             "[head.y1]\ntype = init_probe\nplugin = %s\ninput = out\nlabel = y1\n"
             "[optimizer]\ntype = sgd\nlr = 0.01\n[train]\nepochs = 2\nbatch = 50\n",
             tu_build("tests/plugins/.libs/init_probe.so"));
    const char *ini = tu_write(".ini", text);
    ts_run_opts o = {0};
    o.results_dir = results;
    ts_err e;
    if (ts_run(ini, &o, &e)) fail_msg("%s", e.msg);
    double calls = 0, saw = 0;
    if (ts_metrics_get(results, "test.y1.init_calls", &calls, &e)) fail_msg("%s", e.msg);
    if (ts_metrics_get(results, "test.y1.init_saw", &saw, &e)) fail_msg("%s", e.msg);
    assert_true(calls == 1);
    assert_true(saw == 0.25);
    unlink(ini);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", results);
    assert_int_equal(system(cmd), 0);
}

/* ---- a pretrained, trainable table resumed ------------------------------------------------ */
static char dir[64];

static const char *at(const char *file)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, file);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A csv of 600 rows (a category of 24 values, a number, a binary label that depends on both),
 * a word2vec file with vectors for ids 0..29 (dim 4), and the experiment over them. */
static const char *pretrained_experiment(void)
{
    ts_rng r;
    ts_rng_seed(&r, 77);
    FILE *f = fopen(at("data.csv"), "w");
    assert_non_null(f);
    fprintf(f, "cat,num,y\n");
    for (int i = 0; i < 600; i++) {
        int c = (int)ts_rng_below(&r, 24);
        double x = ts_rng_normal(&r);
        fprintf(f, "c%d,%.4f,%d\n", c, x, (c % 3 == 0) ^ (x > 0.8) ^ (ts_rng_uniform(&r) < 0.1));
    }
    fclose(f);
    f = fopen(at("vectors.txt"), "w");
    assert_non_null(f);
    fprintf(f, "30 4\n");
    for (int id = 0; id < 30; id++)
        fprintf(f, "%d %.3f %.3f %.3f %.3f\n", id, 0.3 * sin(id), 0.3 * cos(id), 0.01 * id,
                -0.2 + 0.02 * id);
    fclose(f);
    static char text[2048];
    snprintf(text, sizeof text,
             "[experiment]\nname = pretrained_resume\nseed = 5\n"
             "[data]\ntype = csv\npath = %s\ncategorical = cat\ndense = num\nlabels = y\n"
             "[layer.emb]\ntype = embedding\ninput = categorical\ndim = 4\npretrained = %s\n"
             "[layer.x]\ntype = concat\ninput = emb, dense\n"
             "[layer.out]\ntype = dense\ninput = x\nunits = 1\n"
             "[head.y]\ntype = binary\ninput = out\nlabel = y\nloss = bce\n"
             "[optimizer]\ntype = adam\nlr = 0.05\n"
             "[train]\nepochs = 3\nbatch = 32\nthreads = 1\n", at("data.csv"), at("vectors.txt"));
    write_text(at("exp.ini"), text);
    return at("exp.ini");
}

static int run_into(const char *ini, const char *results, int resume, int nover, char **over,
                    ts_err *e)
{
    ts_run_opts o = {0};
    o.results_dir = results;
    o.resume = resume;
    o.noverride = nover;
    o.overrides = over;
    return ts_run(ini, &o, e);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)k + 1);
    *n = fread(b, 1, (size_t)k, f);
    fclose(f);
    return b;
}

static void test_pretrained_trainable_table_resumes_bit_identical(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/tessera-abi-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *ini = pretrained_experiment();
    char ref[600], part[600];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(part, sizeof part, "%s/part", dir);
    ts_err e;
    /* three epochs in one go */
    if (run_into(ini, ref, 0, 0, NULL, &e)) fail_msg("%s", e.msg);
    /* one epoch keeping its checkpoint, then resumed for the other two */
    char *one[] = {"train.epochs=1", "train.keep_checkpoints=true"};
    if (run_into(ini, part, 0, 2, one, &e)) fail_msg("%s", e.msg);
    if (run_into(ini, part, 1, 0, NULL, &e)) fail_msg("%s", e.msg);
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/params.bin", ref);
    snprintf(b, sizeof b, "%s/params.bin", part);
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    if (na != nb || memcmp(x, y, na))
        fail_msg("the resumed run's params.bin differs from the uninterrupted run's: the "
                 "pretrained vectors overwrote trained rows after the restore");
    free(x);
    free(y);
    /* and the file's vectors did reach the table: the layer's report counts them */
    snprintf(a, sizeof a, "%s/pretrained_emb.csv", ref);
    size_t nr;
    unsigned char *rep = slurp(a, &nr);
    rep[nr] = 0;
    long loaded = 0;
    const char *line2 = strchr((char *)rep, '\n');
    assert_non_null(line2);
    assert_int_equal(sscanf(line2 + 1, "emb,%ld,", &loaded), 1);
    assert_true(loaded > 0);
    free(rep);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ts_op_reads_what_the_size_covers),
        cmocka_unit_test(test_loader_checks_the_ops_size),
        cmocka_unit_test(test_init_past_the_size_is_not_called),
        cmocka_unit_test(test_head_init_called_once_after_the_arena),
        cmocka_unit_test(test_pretrained_trainable_table_resumes_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
