/* fuzz_checkpoint.c — libFuzzer harness of what tessera reads back from a results folder: a
 * checkpoint (core/checkpoint.c's reader, with params_io.c's records) resumed by a real run, and
 * params.bin loaded into a built experiment (ts_load_params, as `tessera export` does).
 *
 * The input is the file. One starting with "TSPR" is a params.bin; anything else is written as
 * the checkpoint.tsck of a killed run's folder (its config.ini, train.csv and eval.csv beside it)
 * and resumed with ts_run(--resume), which trains to the end when the file is accepted. Before
 * that the harness recomputes every CRC-32 the input holds (each block's, params.bin's last four
 * bytes), so the fuzzer's mutations reach the field checks instead of stopping at "the CRC does
 * not match": the inputs are forged files, not damaged ones (the damaged ones are
 * tests/test_checkpoint.c's). A crash input replays as it is: the harness fixes its CRCs again.
 *
 * The experiment is tests/fuzz/data/checkpoint.ini: two regression heads with GradNorm (so every
 * block exists) on 48 synthetic rows; a checkpoint is 2.7 KB. At start the harness runs it once,
 * keeping checkpoints, and takes that run's files as the folder's; with
 * TESSERA_FUZZ_WRITE_SEEDS=DIR it also writes those genuine checkpoints and params.bin into DIR
 * (run.sh passes the corpus folder), so the fuzzer starts from files of this very tessera even
 * after the format changed and the committed seeds went stale. The private folder is in /dev/shm
 * when there is one (each resumed run fsyncs its checkpoints).
 *
 * The contract checked besides the sanitizers: a failed run leaves a message; a checkpoint that
 * is refused leaves train.csv and eval.csv as they were; a resumed run leaves them text (cut back
 * to the checkpoint's bytes, never padded with zeros); params.bin refused leaves a message. */
#include "fuzz_common.h"

#include <zlib.h>

#ifndef FUZZ_SRCDIR
#define FUZZ_SRCDIR "tests/fuzz"        /* build.sh passes the absolute folder */
#endif
#ifndef FUZZ_PLUGIN_DIR
#define FUZZ_PLUGIN_DIR "plugins"
#endif

static char ini_path[2048], src_dir[2048], run_dir[2048];
static unsigned char *csv[2];            /* train.csv and eval.csv of the genuine run */
static size_t ncsv[2];
static const char *const csv_name[2] = {"train.csv", "eval.csv"};
static ts_exp *built;                    /* the experiment params.bin is loaded into */

static const char *in(const char *dir, const char *file)
{
    static char p[4][2200];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, file);
    return p[k];
}

/* The whole file, malloc'ed (NULL when it cannot be read). */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            unsigned char *m = realloc(b, cap = cap ? 2 * cap : 4096);
            if (!m) abort();
            b = m;
        }
        size_t k = fread(b + *n, 1, cap - *n, f);
        *n += k;
        if (!k) break;
    }
    fclose(f);
    return b;
}

static void write_seeds(const char *dir)
{
    static const char *const files[] = {"checkpoint.tsck", "checkpoint.prev.tsck",
                                        "checkpoint-best.tsck", "params.bin"};
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        unsigned char *b = slurp(in(src_dir, files[i]), &n);
        if (!b) { fprintf(stderr, "fuzz_checkpoint: the genuine run wrote no %s\n", files[i]); exit(2); }
        char name[64];
        snprintf(name, sizeof name, "genuine-%s", files[i]);
        fuzz_write(in(dir, name), b, n);
        free(b);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A resumed run fsyncs every checkpoint it writes: on a disk that costs more than the run.
     * On a tmpfs it is free, so the private folder goes to /dev/shm when there is one. */
    struct stat sb;
    if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    const char *dir = fuzz_tmpdir();
    const char *plugins = getenv("TESSERA_FUZZ_PLUGINS");
    setenv("TESSERA_PLUGIN_PATH", plugins && *plugins ? plugins : FUZZ_PLUGIN_DIR, 1);
    unsetenv("TESSERA_DATA_DIR");
    const char *root = getenv("TESSERA_FUZZ_SRC");
    char src[2048];
    snprintf(src, sizeof src, "%s/data/checkpoint.ini", root && *root ? root : FUZZ_SRCDIR);
    snprintf(ini_path, sizeof ini_path, "%s/exp.ini", dir);
    snprintf(src_dir, sizeof src_dir, "%s/genuine", dir);
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    fuzz_copy(src, ini_path);
    /* The genuine run: checkpoints every 4 steps, kept (the latest is the end of epoch 2, the
     * one before it mid-epoch). */
    char *over[] = {"train.keep_checkpoints=true", "train.checkpoint_every=4"};
    ts_run_opts o = {.results_dir = src_dir, .noverride = 2, .overrides = over};
    ts_err e = {{0}};
    if (ts_run(ini_path, &o, &e)) { fprintf(stderr, "fuzz_checkpoint: %s\n", e.msg); exit(2); }
    for (int k = 0; k < 2; k++)
        if (!(csv[k] = slurp(in(src_dir, csv_name[k]), &ncsv[k]))) {
            fprintf(stderr, "fuzz_checkpoint: the genuine run wrote no %s\n", csv_name[k]);
            exit(2);
        }
    const char *seeds = getenv("TESSERA_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) write_seeds(seeds);
    ts_run_opts ob = {.results_dir = run_dir};
    if (!(built = ts_exp_load(ini_path, &ob, &e)) || ts_exp_build(built, &e)) {
        fprintf(stderr, "fuzz_checkpoint: %s\n", e.msg);
        exit(2);
    }
    return 0;
}

/* Recomputes the CRC-32 of every whole block (docs/checkpoints.md: tag, length, bytes, CRC). */
static void fix_checkpoint_crcs(unsigned char *b, size_t n)
{
    size_t off = 8;
    while (off < n && n - off >= 16) {
        uint64_t len;
        memcpy(&len, b + off + 4, 8);
        if (len > n - off - 16) break;
        uint32_t crc = ts_crc_of(b + off, 12 + (size_t)len);
        memcpy(b + off + 12 + len, &crc, 4);
        off += 16 + (size_t)len;
    }
}

static void params_one(unsigned char *b, size_t n)
{
    if (n >= 8) {
        uint32_t crc = ts_crc_of(b, n - 4);
        memcpy(b + n - 4, &crc, 4);
    }
    const char *path = in(fuzz_tmpdir(), "params.bin");
    fuzz_write(path, b, n);
    ts_err e = {{0}};
    int rc = ts_load_params(built, path, &e);
    if (rc && !e.msg[0]) FUZZ_BUG("ts_load_params failed without a message");
    if (fuzz_verbose()) fprintf(stderr, "fuzz_checkpoint: params.bin %s%s\n", rc ? "refused: " :
                                "loaded", rc ? e.msg : "");
}

static void checkpoint_one(unsigned char *b, size_t n)
{
    fix_checkpoint_crcs(b, n);
    /* a killed run's folder: what the run had written, and this checkpoint */
    static const char *const stale[] = {"checkpoint.prev.tsck", "checkpoint-best.tsck",
        "checkpoint.new.tsck", "checkpoint.tmp", "checkpoint-best.tmp", "params.bin",
        "metrics.json", NULL};
    mkdir(run_dir, 0700);
    for (int i = 0; stale[i]; i++) remove(in(run_dir, stale[i]));
    for (int k = 0; k < 2; k++) fuzz_write(in(run_dir, csv_name[k]), csv[k], ncsv[k]);
    size_t nconf = 0;
    unsigned char *conf = slurp(in(src_dir, "config.ini"), &nconf);
    if (conf) fuzz_write(in(run_dir, "config.ini"), conf, nconf);
    free(conf);
    fuzz_write(in(run_dir, "checkpoint.tsck"), b, n);
    ts_run_opts o = {.results_dir = run_dir, .resume = 1};
    ts_err e = {{0}};
    int rc = ts_run(ini_path, &o, &e);
    if (rc && !e.msg[0]) FUZZ_BUG("ts_run --resume failed without a message");
    if (rc && strstr(e.msg, "no usable checkpoint"))
        for (int k = 0; k < 2; k++) {
            /* refused: nothing of the folder may have changed */
            size_t m = 0;
            unsigned char *now = slurp(in(run_dir, csv_name[k]), &m);
            if (!now || m != ncsv[k] || memcmp(now, csv[k], m))
                FUZZ_BUG("the checkpoint was refused but %s changed: %s", csv_name[k], e.msg);
            free(now);
        }
    if (!rc)
        for (int k = 0; k < 2; k++) {
            /* resumed: the logs were cut back to the checkpoint's bytes, never padded */
            size_t m = 0;
            unsigned char *now = slurp(in(run_dir, csv_name[k]), &m);
            if (!now || memchr(now, 0, m))
                FUZZ_BUG("the run resumed but %s %s", csv_name[k], now ? "holds a NUL byte" :
                         "is gone");
            free(now);
        }
    if (fuzz_verbose()) fprintf(stderr, "fuzz_checkpoint: %s%s\n", rc ? "refused: " :
                                "resumed and finished", rc ? e.msg : "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20) return 0;
    unsigned char *b = malloc(size ? size : 1);
    if (!b) abort();
    memcpy(b, data, size);
    if (size >= 4 && !memcmp(b, "TSPR", 4)) params_one(b, size);
    else checkpoint_one(b, size);
    free(b);
    return 0;
}
