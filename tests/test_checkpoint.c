/* test_checkpoint.c — checkpoints and resuming: a finished run resumed with more epochs ends
 * bit-identical to one trained that long in one go; a damaged latest checkpoint (one flipped
 * byte, a truncated file, another ABI) is refused with the reason and the previous one is used,
 * still bit-identical; a checkpoint of another configuration is refused naming the key that
 * differs; --max-memory refuses a run before training with the estimate. The SIGKILL trials are
 * tests/kill_resume.sh. */
#include "testutil.h"

#include <zlib.h>

static const char *exp_ini(void)
{
    static const char *path;
    if (!path)
        path = tu_write(".ini",
                        "[experiment]\nname = ckpt\nseed = 3\n"
                        "[data]\ntype = synthetic_mmoe\nrows = 2000, 400, 400\n"
                        "[layer.h]\ntype = dense\ninput = x\nunits = 16\nactivation = relu\n"
                        "[layer.out]\ntype = dense\ninput = h\nunits = 1\n"
                        "[head.y1]\ntype = regression\ninput = out\nlabel = y1\nloss = mse\n"
                        "[optimizer]\ntype = adam\nlr = 0.01\n"
                        "[train]\nepochs = 4\nbatch = 64\nearly_stop = y1.mse\n");
    return path;
}

/* Runs the experiment into dir; returns ts_run's code, the log in log (if not NULL). */
static int run(const char *dir, int resume, int nover, char **over, char *log, size_t cap,
               ts_err *e)
{
    ts_run_opts o = {0};
    o.results_dir = dir;
    o.noverride = nover;
    o.overrides = over;
    o.resume = resume;
    o.overwrite = !resume;    /* a fresh run replaces what an earlier test run left */
    FILE *f = log ? tmpfile() : NULL;
    o.log = f;
    int rc = ts_run(exp_ini(), &o, e);
    if (f) {
        rewind(f);
        size_t n = fread(log, 1, cap - 1, f);
        log[n] = 0;
        fclose(f);
    }
    return rc;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)k + 1);
    *n = fread(b, 1, (size_t)k, f);
    fclose(f);
    return b;
}

static void spill(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    if (na != nb || memcmp(x, y, na)) {
        print_error("%s and %s differ\n", a, b);
        fail();
    }
    free(x);
    free(y);
}

static const char *at(const char *dir, const char *file)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, file);
    return buf[k];
}

/* The uninterrupted 4-epoch run, once. */
static const char *reference(void)
{
    static int done;
    const char *dir = "/tmp/tessera-test-ckpt-ref";
    if (!done) {
        ts_err e;
        if (run(dir, 0, 0, NULL, NULL, 0, &e)) { print_error("%s\n", e.msg); fail(); }
        done = 1;
    }
    return dir;
}

/* Trains 2 epochs keeping the checkpoints, so dir has checkpoint.tsck (end of epoch 2),
 * checkpoint.prev.tsck (end of epoch 1) and checkpoint-best.tsck. */
static void two_epochs(const char *dir)
{
    char *over[] = {"train.epochs=2", "train.keep_checkpoints=true"};
    ts_err e;
    if (run(dir, 0, 2, over, NULL, 0, &e)) { print_error("%s\n", e.msg); fail(); }
    assert_int_equal(access(at(dir, "checkpoint.tsck"), F_OK), 0);
    assert_int_equal(access(at(dir, "checkpoint.prev.tsck"), F_OK), 0);
}

static void resume_and_compare(const char *dir, char *log, size_t cap)
{
    ts_err e;
    if (run(dir, 1, 0, NULL, log, cap, &e)) { print_error("%s\n", e.msg); fail(); }
    assert_same_file(at(reference(), "params.bin"), at(dir, "params.bin"));
    assert_same_file(at(reference(), "eval.csv"), at(dir, "eval.csv"));
    /* a finished run removes its checkpoints (keep_checkpoints = false by default) */
    assert_int_not_equal(access(at(dir, "checkpoint.tsck"), F_OK), 0);
}

static void test_resume_with_more_epochs_is_bit_identical(void **st)
{
    (void)st;
    const char *dir = "/tmp/tessera-test-ckpt-more";
    two_epochs(dir);
    char log[8192];
    resume_and_compare(dir, log, sizeof log);
    tu_contains(log, "resumed from the checkpoint of step", NULL);
}

static void test_flipped_byte_falls_back_to_previous(void **st)
{
    (void)st;
    const char *dir = "/tmp/tessera-test-ckpt-flip";
    two_epochs(dir);
    size_t n = 0;
    unsigned char *b = slurp(at(dir, "checkpoint.tsck"), &n);
    assert_true(n > 200);
    b[n - 40] ^= 0x10;              /* inside the BEST block's weights */
    spill(at(dir, "checkpoint.tsck"), b, n);
    free(b);
    char log[8192];
    resume_and_compare(dir, log, sizeof log);
    tu_contains(log, "checkpoint.tsck is damaged", "CRC-32", "resuming from", "checkpoint.prev.tsck",
                NULL);
}

static void test_truncated_and_other_abi_are_refused(void **st)
{
    (void)st;
    const char *dir = "/tmp/tessera-test-ckpt-abi";
    two_epochs(dir);
    /* latest: cut in half; prev: written by another plugin ABI (HEAD's field, CRC redone) */
    size_t n = 0;
    unsigned char *b = slurp(at(dir, "checkpoint.tsck"), &n);
    spill(at(dir, "checkpoint.tsck"), b, n / 2);
    free(b);
    b = slurp(at(dir, "checkpoint.prev.tsck"), &n);
    assert_memory_equal(b + 8, "HEAD", 4);
    b[20] = 0x63;                    /* the ABI: 99 */
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b + 8, 52);
    memcpy(b + 60, &crc, 4);
    spill(at(dir, "checkpoint.prev.tsck"), b, n);
    free(b);
    char log[8192];
    resume_and_compare(dir, log, sizeof log);   /* from checkpoint-best.tsck */
    tu_contains(log, "cut short", "plugin ABI 99", "checkpoint-best.tsck", NULL);
}

static void test_other_configuration_is_refused(void **st)
{
    (void)st;
    const char *dir = "/tmp/tessera-test-ckpt-conf";
    two_epochs(dir);
    char *over[] = {"optimizer.lr=0.02"};
    ts_err e;
    char log[8192];
    assert_int_equal(run(dir, 1, 1, over, log, sizeof log, &e), -1);
    tu_contains(e.msg, "no usable checkpoint", "another experiment", "optimizer.lr = 0.02",
                "checkpoint: 0.01", NULL);
    /* nothing was lost: the checkpoints and the first run's files are still there */
    assert_int_equal(access(at(dir, "checkpoint.tsck"), F_OK), 0);
    assert_int_equal(access(at(dir, "params.bin"), F_OK), 0);
}

static void test_resume_without_checkpoint_starts_over(void **st)
{
    (void)st;
    const char *dir = "/tmp/tessera-test-ckpt-none";
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    char log[8192];
    ts_err e;
    if (run(dir, 1, 0, NULL, log, sizeof log, &e)) { print_error("%s\n", e.msg); fail(); }
    tu_contains(log, "no checkpoint", "starting from the beginning", NULL);
    assert_same_file(at(reference(), "params.bin"), at(dir, "params.bin"));
}

static void test_max_memory_refuses_before_training(void **st)
{
    (void)st;
    const char *dir = "/tmp/tessera-test-ckpt-mem";
    assert_int_equal(system("rm -rf /tmp/tessera-test-ckpt-mem"), 0);
    ts_run_opts o = {0};
    o.results_dir = dir;
    o.max_memory = 1024 * 1024;      /* 1 MiB: less than the program itself */
    ts_err e;
    assert_int_equal(ts_run(exp_ini(), &o, &e), -1);
    tu_contains(e.msg, "would need about", "MiB", "--max-memory allows 1.0 MiB", NULL);
    assert_int_not_equal(access(at(dir, "train.csv"), F_OK), 0);   /* refused before training */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_with_more_epochs_is_bit_identical),
        cmocka_unit_test(test_flipped_byte_falls_back_to_previous),
        cmocka_unit_test(test_truncated_and_other_abi_are_refused),
        cmocka_unit_test(test_other_configuration_is_refused),
        cmocka_unit_test(test_resume_without_checkpoint_starts_over),
        cmocka_unit_test(test_max_memory_refuses_before_training),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
