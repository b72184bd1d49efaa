/* test_ckpt_forged.c — a forged checkpoint or params.bin never crashes tessera and is refused
 * with a sentence naming the file, the block and the field. Each case takes a real checkpoint of a
 * tiny GradNorm experiment (written mid-epoch), changes one field, recomputes the block's CRC so
 * the file is intact as far as CRCs can tell, and resumes from it: the run must stop before it
 * trains, touch nothing, and say what is wrong. With a valid previous checkpoint beside the
 * forged one, resuming falls back to it and ends bit-identical to an uninterrupted run.
 * Not the damaged-file cases (test_checkpoint.c), nor random forgeries (tests/fuzz/). */
#include "testutil.h"
#include "internal.h"

#include <math.h>
#include <sys/stat.h>
#include <zlib.h>

#define SRC "/tmp/tessera-test-forged-src"     /* the run the checkpoints come from */
#define REF "/tmp/tessera-test-forged-ref"     /* the same experiment, uninterrupted */
#define DIR "/tmp/tessera-test-forged"         /* where each forged file is resumed from */

static const char *exp_ini(void)
{
    static const char *path;
    if (!path)
        path = tu_write(".ini",
                        "[experiment]\nname = forged\nseed = 5\n"
                        "[data]\ntype = synthetic_mmoe\nrows = 2000, 400, 400\n"
                        "[layer.h]\ntype = dense\ninput = x\nunits = 16\nactivation = relu\n"
                        "[layer.o1]\ntype = dense\ninput = h\nunits = 1\n"
                        "[layer.o2]\ntype = dense\ninput = h\nunits = 1\n"
                        "[head.y1]\ntype = regression\ninput = o1\nlabel = y1\nloss = mse\n"
                        "[head.y2]\ntype = regression\ninput = o2\nlabel = y2\nloss = mse\n"
                        "[optimizer]\ntype = adam\nlr = 0.01\n"
                        "[train]\nepochs = 2\nbatch = 64\nearly_stop = y1.mse\n"
                        "weighting = gradnorm\n");
    return path;
}

static int run(const char *dir, int resume, int nover, char **over, char *log, size_t cap,
               ts_err *e)
{
    ts_run_opts o = {0};
    o.results_dir = dir;
    o.noverride = nover;
    o.overrides = over;
    o.resume = resume;
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

static const char *at(const char *dir, const char *file)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, file);
    return buf[k];
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)k + 1);
    assert_non_null(b);
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
    if (na != nb || memcmp(x, y, na)) fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

static long long size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (long long)st.st_size;
}

/* ---- a checkpoint as editable blocks (docs/checkpoints.md) -------------------------------- */
typedef struct blk {
    char tag[5];
    unsigned char *b;
    size_t n;
} blk;
typedef struct ckf {
    blk k[16];
    int nk;
    size_t ntail;                  /* bytes written after the END block */
} ckf;

static void ck_load(ckf *c, const char *path)
{
    size_t n = 0, off = 8;
    unsigned char *b = slurp(path, &n);
    memset(c, 0, sizeof *c);
    assert_memory_equal(b, "TSCK", 4);
    while (off < n) {
        assert_true(c->nk < 15);
        blk *k = &c->k[c->nk++];
        uint64_t len;
        memcpy(k->tag, b + off, 4);
        memcpy(&len, b + off + 4, 8);
        k->n = (size_t)len;
        k->b = malloc(k->n + 1);
        memcpy(k->b, b + off + 12, k->n);
        off += 16 + k->n;
    }
    free(b);
}

static void ck_free(ckf *c)
{
    for (int i = 0; i < c->nk; i++) free(c->k[i].b);
}

/* Writes the blocks with their CRC-32 recomputed: every block is intact as far as CRCs go. */
static void ck_save(const ckf *c, const char *path)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint32_t v = 1;
    fwrite("TSCK", 1, 4, f);
    fwrite(&v, 4, 1, f);
    for (int i = 0; i < c->nk; i++) {
        const blk *k = &c->k[i];
        uint64_t len = k->n;
        uLong crc = crc32(0L, Z_NULL, 0);
        crc = crc32(crc, (const Bytef *)k->tag, 4);
        crc = crc32(crc, (const Bytef *)&len, 8);
        crc = crc32(crc, k->b, (uInt)k->n);
        uint32_t c32 = (uint32_t)crc;
        fwrite(k->tag, 1, 4, f);
        fwrite(&len, 8, 1, f);
        fwrite(k->b, 1, k->n, f);
        fwrite(&c32, 4, 1, f);
    }
    for (size_t i = 0; i < c->ntail; i++) fputc(0, f);
    assert_int_equal(fclose(f), 0);
}

static blk *ck_find(ckf *c, const char *tag)
{
    for (int i = 0; i < c->nk; i++)
        if (!memcmp(c->k[i].tag, tag, 4)) return &c->k[i];
    fail_msg("no %s block", tag);
    return NULL;
}

static void ck_append(blk *k, const void *p, size_t n)
{
    k->b = realloc(k->b, k->n + n + 1);
    memcpy(k->b + k->n, p, n);
    k->n += n;
}

static int64_t get64(const blk *k, size_t off)
{
    int64_t v;
    memcpy(&v, k->b + off, 8);
    return v;
}

static void put64(blk *k, size_t off, int64_t v) { memcpy(k->b + off, &v, 8); }
static void put32(blk *k, size_t off, int32_t v) { memcpy(k->b + off, &v, 4); }
static void putd(blk *k, size_t off, double v) { memcpy(k->b + off, &v, 8); }
static void putf(blk *k, size_t off, float v) { memcpy(k->b + off, &v, 4); }

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* PARM's records: offset of record i's name length, and its rows and cols. */
static size_t parm_rec(const blk *k, int i, int32_t *rows, int32_t *cols)
{
    size_t off = 4;
    for (int r = 0;; r++) {
        uint32_t len;
        memcpy(&len, k->b + off, 4);
        memcpy(rows, k->b + off + 4 + len, 4);
        memcpy(cols, k->b + off + 8 + len, 4);
        if (r == i) return off;
        off += 12 + len + (size_t)*rows * *cols * 4;
    }
}

/* ---- the forgeries -------------------------------------------------------------------------
 * META (offsets): epoch 0, next step 8, steps 16, seen 24, seen at the log line 32, steps since
 * it 40, best epoch 48, evaluations without improvement 52, train.csv 64, eval.csv 72, shuffled
 * 80, done 84, loss sum 88, best figure 96, seconds trained 104 and run 112, head losses 120.
 * The source checkpoint is at step 60, the 28th of epoch 2 (2000 rows, batches of 64). */
enum { SET64, ADD64, SET32, SETD, SETF, CUSTOM };
typedef struct forgery {
    const char *tag;
    size_t off;
    int op;
    double v;
    const char *want1, *want2;     /* in the message, besides the file's name */
} forgery;

static const forgery forgeries[] = {
    {"META", 0, SET64, 0, "META block: epoch 0 after 60 steps", NULL},
    {"META", 8, SET64, -1, "META block: the next step within epoch 2 is -1", NULL},
    {"META", 8, SET64, 32, "is 32, but an epoch of 2000 training rows in batches of 64 has 32 steps",
     NULL},
    {"META", 16, SET64, -1, "META block: the step count is -1", NULL},
    {"META", 24, SET64, 59, "META block: 59 examples seen in 60 steps", NULL},
    {"META", 24, ADD64, 4000, "META block: 7792 examples seen by epoch 2, more than 2 epochs of "
     "2000 training rows hold", NULL},
    {"META", 32, ADD64, 1000000, "examples seen at the last log line, of 3792", NULL},
    {"META", 40, SET64, 61, "META block: 61 steps since the last log line", NULL},
    {"META", 48, SET64, 2, "META block: the best epoch is 2 while epoch 2 is under way", NULL},
    {"META", 56, ADD64, 1, "META block: the count of evaluations without improvement is 1, but 0 epochs", NULL},
    {"META", 64, ADD64, 1000, "META block: ", "bytes of train.csv written, but"},
    {"META", 72, SET64, 0, "META block: 0 bytes of eval.csv written", NULL},
    {"META", 80, SET32, 2, "META block: the flag shuffled is 2", NULL},
    {"META", 84, SET32, 5, "META block: the flag done is 5", NULL},
    {"META", 80, SET32, 0, "META block: epoch 2 is at step 28 but its order of rows was not drawn",
     NULL},
    {"META", 88, SETD, NAN, "META block: the loss sum since the last log line is nan", NULL},
    {"META", 96, SETD, INFINITY, "META block: the best y1.mse is inf", NULL},
    {"META", 104, SETD, -1, "META block: the time trained is -1 s", NULL},
    {"META", 112, SETD, INFINITY, "META block: the time run is inf s", NULL},
    {"META", 128, SETD, NAN, "META block: the loss sum of task y2", NULL},
    {"RNG ", 0, CUSTOM, 0, "RNG block: the generator's state is all zero", NULL},
    {"ORDR", 8, CUSTOM, 0, "ORDR block: row", "appears twice"},
    {"ORDR", 16, SET64, 2000, "ORDR block: position 2 holds row 2000, outside the 2000 training "
     "rows", NULL},
    {"ORDR", 0, SET64, -7, "ORDR block: position 0 holds row -7", NULL},
    {"PARM", 0, CUSTOM, 1, "PARM block: a record is cut short", NULL},
    {"PARM", 4, SET32, 0, "PARM block: a record is cut short", NULL},
    {"PARM", 0, CUSTOM, 2, "PARM block does not match the experiment", "the file has layer.h.W twice"},
    {"PARM", 0, CUSTOM, 3, "PARM block does not match the experiment",
     "layer.h.W is (16, 100) in the file but (100, 16) in the experiment"},
    {"PARM", 0, CUSTOM, 4, "PARM block: layer.h.W holds nan at row 2, column 3", NULL},
    {"OPTS", 0, CUSTOM, 0, "OPTS block: optimizer slot 2 of layer.h.W holds nan at row 0, column 3",
     NULL},
    {"BEST", 4 * 17, SETF, INFINITY, "BEST block: the best weights of layer.h.W hold inf at row 1, "
     "column 1", NULL},
    {"GNRM", 0, ADD64, 1, "GNRM block: 61 updates after 60 steps", NULL},
    {"GNRM", 8, SETD, -1, "GNRM block: the weight of task y1 is -1", NULL},
    {"GNRM", 8, SETD, 1e-300, "GNRM block: the task weights sum to", "not to the 2 tasks"},
    {"GNRM", 8 + 8 * 3, SETD, NAN, "GNRM block: the first loss of task y2 is nan", NULL},
    {"GNRM", 8 + 8 * 10, SETD, -1, "GNRM block: the second moment of task y1 is -1", NULL},
    {"HEAD", 8, ADD64, 1, "HEAD block: the configuration's hash is not the hash of the CONF block",
     NULL},
    {"CONF", 0, CUSTOM, 1, "CONF block: its text is not the configuration whose hash HEAD holds",
     NULL},
    {"CONF", 0, CUSTOM, 2, "belongs to another experiment", "the checkpoint has x?[31m"},
    {"RNG ", 0, CUSTOM, 1, "is damaged: it has two RNG blocks", NULL},
    {"END ", 0, CUSTOM, 0, "is damaged: its END block is not empty", NULL},
    {"END ", 0, CUSTOM, 1, "is damaged: it has bytes after its END block", NULL},
};

static void forge_custom(ckf *c, const forgery *f)
{
    blk *k = ck_find(c, f->tag);
    int32_t rows, cols;
    int which = (int)f->v;
    if (!strcmp(f->tag, "RNG ") && which == 0) {
        memset(k->b, 0, k->n);
    } else if (!strcmp(f->tag, "RNG ")) {            /* a second RNG block, after the first */
        assert_true(c->nk < 16);
        int i = (int)(k - c->k);
        memmove(&c->k[i + 2], &c->k[i + 1], (size_t)(c->nk - i - 1) * sizeof *k);
        c->nk++;
        c->k[i + 1] = *k;
        c->k[i + 1].b = malloc(k->n);
        memcpy(c->k[i + 1].b, k->b, k->n);
    } else if (!strcmp(f->tag, "ORDR")) {           /* position 1 repeats position 0's row */
        put64(k, 8, get64(k, 0));
    } else if (!strcmp(f->tag, "PARM") && which == 1) {   /* one record more than there are */
        uint32_t n;
        memcpy(&n, k->b, 4);
        put32(k, 0, (int32_t)n + 1);
    } else if (!strcmp(f->tag, "PARM") && which == 2) {   /* layer.h.b renamed layer.h.W */
        size_t o = parm_rec(k, 1, &rows, &cols);
        assert_memory_equal(k->b + o + 4, "layer.h.b", 9);
        k->b[o + 4 + 8] = 'W';
    } else if (!strcmp(f->tag, "PARM") && which == 3) {   /* (100, 16) written as (16, 100) */
        size_t o = parm_rec(k, 0, &rows, &cols);
        assert_int_equal(rows, 100);
        put32(k, o + 4 + 9, cols);
        put32(k, o + 8 + 9, rows);
    } else if (!strcmp(f->tag, "PARM")) {                 /* a NaN weight at (2, 3) */
        size_t o = parm_rec(k, 0, &rows, &cols);
        putf(k, o + 12 + 9 + 4 * (2 * (size_t)cols + 3), (float)NAN);
    } else if (!strcmp(f->tag, "OPTS")) {                 /* slot 2 of the first parameter */
        putf(k, 4 * (100 * 16 + 3), (float)NAN);
    } else if (!strcmp(f->tag, "CONF") && which == 1) {   /* lr 0.01 -> 0.02, hash kept */
        char *p = memmem(k->b, k->n, "optimizer.lr = 0.01", 19);
        assert_non_null(p);
        p[18] = '2';
    } else if (!strcmp(f->tag, "CONF")) {
        /* another experiment's text, hash and all, whose last line has no newline and holds a
         * terminal escape: at 0b960b7 the message's diff read through a NULL pointer */
        ck_append(k, "x\033[31m", 6);
        blk *h = ck_find(c, "HEAD");
        uint64_t hash = fnv(k->b, k->n);
        memcpy(h->b + 8, &hash, 8);
    } else if (!strcmp(f->tag, "END ") && which == 0) {
        ck_append(k, "junk", 4);
    } else {
        c->ntail = 3;
    }
}

static void forge(ckf *c, const forgery *f)
{
    blk *k = ck_find(c, f->tag);
    switch (f->op) {
    case SET64: put64(k, f->off, (int64_t)f->v); break;
    case ADD64: put64(k, f->off, get64(k, f->off) + (int64_t)f->v); break;
    case SET32: put32(k, f->off, (int32_t)f->v); break;
    case SETD: putd(k, f->off, f->v); break;
    case SETF: putf(k, f->off, (float)f->v); break;
    default: forge_custom(c, f);
    }
}

/* The source run: 2 epochs with a checkpoint every 20 steps, so checkpoint.prev.tsck is the one
 * of step 60, in the middle of epoch 2; and the uninterrupted reference. */
static int setup(void **st)
{
    (void)st;
    char *over[] = {"train.keep_checkpoints=true", "train.checkpoint_every=20"};
    ts_err e;
    assert_int_equal(system("rm -rf " SRC " " REF), 0);
    if (run(SRC, 0, 2, over, NULL, 0, &e) || run(REF, 0, 0, NULL, NULL, 0, &e)) {
        print_error("%s\n", e.msg);
        return -1;
    }
    return 0;
}

/* DIR as a killed run's folder: the source's files (config.ini, the logs...) without its
 * checkpoints or final results. */
static void fresh_dir(void)
{
    assert_int_equal(system("rm -rf " DIR " && mkdir -p " DIR), 0);
    static const char *const keep[] = {"config.ini", "train.csv", "eval.csv", "identity.txt"};
    for (int i = 0; i < 4; i++) {
        if (access(at(SRC, keep[i]), F_OK)) continue;
        size_t n = 0;
        unsigned char *b = slurp(at(SRC, keep[i]), &n);
        spill(at(DIR, keep[i]), b, n);
        free(b);
    }
}

static void test_every_forged_field_is_refused(void **st)
{
    (void)st;
    int nf = (int)(sizeof forgeries / sizeof *forgeries), failed = 0;
    for (int i = 0; i < nf; i++) {
        const forgery *f = &forgeries[i];
        fresh_dir();
        ckf c;
        ck_load(&c, at(SRC, "checkpoint.prev.tsck"));
        forge(&c, f);
        ck_save(&c, at(DIR, "checkpoint.tsck"));
        ck_free(&c);
        long long tsize = size_of(at(DIR, "train.csv"));
        ts_err e = {{0}};
        char log[8192];
        int rc = run(DIR, 1, 0, NULL, log, sizeof log, &e);
        int ok = rc == -1 && strstr(e.msg, "no usable checkpoint in " DIR) &&
                 strstr(e.msg, DIR "/checkpoint.tsck") && strstr(e.msg, f->want1) &&
                 (!f->want2 || strstr(e.msg, f->want2)) && !strchr(e.msg, '\033') &&
                 size_of(at(DIR, "train.csv")) == tsize &&
                 access(at(DIR, "checkpoint.tsck"), F_OK) == 0;
        if (!ok) {
            print_error("case %d (%s at %zu): rc %d, message: %s\n  wanted: %s%s%s\n", i, f->tag,
                        f->off, rc, rc ? e.msg : "(none: the run resumed)", f->want1,
                        f->want2 ? " ... " : "", f->want2 ? f->want2 : "");
            failed++;
        }
    }
    if (failed) fail_msg("%d of %d forged checkpoints were not refused as expected", failed, nf);
}

/* The source checkpoint rewritten by the same code, unchanged: it passes every check (so the
 * checks refuse forgeries, not this tessera's own files), and the run ends as the reference. */
static void test_rewritten_checkpoint_resumes(void **st)
{
    (void)st;
    fresh_dir();
    ckf c;
    ck_load(&c, at(SRC, "checkpoint.prev.tsck"));
    ck_save(&c, at(DIR, "checkpoint.tsck"));
    ck_free(&c);
    ts_err e;
    char log[8192];
    if (run(DIR, 1, 0, NULL, log, sizeof log, &e)) fail_msg("%s", e.msg);
    tu_contains(log, "resumed from the checkpoint of step 60 (epoch 2)", NULL);
    assert_same_file(at(REF, "params.bin"), at(DIR, "params.bin"));
    assert_same_file(at(REF, "eval.csv"), at(DIR, "eval.csv"));
}

/* A forged latest checkpoint beside a valid previous one: the run says why it passes over the
 * first and ends bit-identical to the uninterrupted run. */
static void test_forged_latest_falls_back_to_previous(void **st)
{
    (void)st;
    fresh_dir();
    ckf c;
    ck_load(&c, at(SRC, "checkpoint.prev.tsck"));
    const forgery *twice = &forgeries[21];        /* ORDR: a row twice */
    assert_string_equal(twice->tag, "ORDR");
    assert_int_equal(twice->op, CUSTOM);
    forge(&c, twice);
    ck_save(&c, at(DIR, "checkpoint.tsck"));
    ck_free(&c);
    size_t n = 0;
    unsigned char *b = slurp(at(SRC, "checkpoint.prev.tsck"), &n);
    spill(at(DIR, "checkpoint.prev.tsck"), b, n);
    free(b);
    ts_err e;
    char log[8192];
    if (run(DIR, 1, 0, NULL, log, sizeof log, &e)) fail_msg("%s", e.msg);
    tu_contains(log, "refused: " DIR "/checkpoint.tsck: ORDR block: row", "appears twice",
                "resuming from " DIR "/checkpoint.prev.tsck instead", NULL);
    assert_same_file(at(REF, "params.bin"), at(DIR, "params.bin"));
}

/* params.bin: records with a CRC redone over a NaN weight or a name twice. */
static void test_forged_params_bin_is_refused(void **st)
{
    (void)st;
    size_t n = 0;
    unsigned char *orig = slurp(at(REF, "params.bin"), &n);
    ts_run_opts o = {0};
    o.results_dir = DIR;
    ts_err e;
    ts_exp *x = ts_exp_load(exp_ini(), &o, &e);
    assert_non_null(x);
    if (ts_exp_build(x, &e)) fail_msg("%s", e.msg);
    const char *path = "/tmp/tessera-test-forged-params.bin";
    for (int which = 0; which < 3; which++) {
        unsigned char *b = malloc(n);
        memcpy(b, orig, n);
        /* the first record: name length at 12, "layer.h.W" at 16, (100, 16) at 25, weights at 33;
         * the second's name at 33 + 6400 + 4 */
        assert_memory_equal(b + 16, "layer.h.W", 9);
        if (which == 1) {
            float nan = (float)NAN;
            memcpy(b + 33 + 4 * (16 * 5 + 7), &nan, 4);
        } else if (which == 2) {
            assert_memory_equal(b + 33 + 6400 + 4, "layer.h.b", 9);
            b[33 + 6400 + 4 + 8] = 'W';
        }
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(n - 4));
        memcpy(b + n - 4, &crc, 4);
        spill(path, b, n);
        free(b);
        int rc = ts_load_params(x, path, &e);
        if (which == 0 && rc) fail_msg("the genuine file was refused: %s", e.msg);
        if (which == 1) {
            assert_int_equal(rc, -1);
            tu_contains(e.msg, path, "layer.h.W holds nan at row 5, column 7", NULL);
        }
        if (which == 2) {
            assert_int_equal(rc, -1);
            tu_contains(e.msg, path, "does not match the experiment", "the file has layer.h.W twice",
                        NULL);
        }
    }
    ts_exp_free(x);
    free(orig);
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_forged_field_is_refused),
        cmocka_unit_test(test_rewritten_checkpoint_resumes),
        cmocka_unit_test(test_forged_latest_falls_back_to_previous),
        cmocka_unit_test(test_forged_params_bin_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
