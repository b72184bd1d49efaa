/* test_inifiles.c — every INI file tessera writes reads back to the same configuration, and odd
 * files and odd INI text are refused with a sentence: a seeded property test of ts_ini_format /
 * ts_ini_write -> ts_ini_load over hostile values (long paths, " ;", blanks at the ends, 4-10 KiB,
 * non-ASCII, backslashes), the overrides' refusals, an indented `key = value` under a list, a
 * UTF-8 byte order mark with a duplicated section, and FIFOs, /dev/zero and folders given to the
 * INI, data and checkpoint readers (under an alarm, so a reader that blocks fails the test).
 * Not a test of what the values mean: test_config.c checks keys against plugins. */
#include "testutil.h"
#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---- a small seeded generator ---------------------------------------------------------------- */
static uint64_t rng_s;

static uint32_t rnd(void)
{
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return (uint32_t)(rng_s >> 11);
}

static size_t below(size_t n) { return n ? rnd() % n : 0; }

/* Appends to a growing string. */
typedef struct { char *p; size_t n, cap; } str;

static void sput(str *s, const char *t, size_t k)
{
    if (s->n + k + 1 > s->cap) {
        while (s->n + k + 1 > s->cap) s->cap = s->cap ? 2 * s->cap : 256;
        s->p = realloc(s->p, s->cap);
        assert_non_null(s->p);
    }
    memcpy(s->p + s->n, t, k);
    s->n += k;
    s->p[s->n] = 0;
}

static void sputs(str *s, const char *t) { sput(s, t, strlen(t)); }

/* Pieces of hostile values: path parts, INI syntax, blanks, UTF-8 and bytes that are not. */
static const char *const pieces[] = {
    "/home/researcher/experiments/", "data/census/census-income.test.gz", "a", "b", "0.001",
    ",", ", ", ";", " ;", "\t;", "#", " #", "=", " = ", "[", "]", "[layer.x]", "\"", "'", ":",
    " ", "  ", "\t", "\\", "\\\\", " \\", "\\ ", "%", "$HOME", "é", "日本語", "\xF0\x9F\x98\x80",
    "\xff", "\xc3", "\x80", "\v", "\f", "\x01", "\x1b[0m", "units = 16", "key=value", "\n", "\r",
};

static char *gen_value(void)
{
    str s = {0};
    sput(&s, "", 0);
    int kind = (int)below(20), breaks = below(20) == 0;   /* may hold a line break */
    if (kind == 0) return s.p;                                     /* empty */
    if (kind == 1) {                                               /* blanks only */
        size_t n = 1 + below(400);
        for (size_t i = 0; i < n; i++) sputs(&s, below(3) ? " " : "\t");
        return s.p;
    }
    size_t target = kind < 4 ? 4096 + below(6145)                  /* 4-10 KiB */
                  : kind < 7 ? 120 + below(300)                    /* a long path */
                  : below(60);
    while (s.n < target) {
        if (below(4) == 0) {                                       /* a run of one byte */
            char c = "a ;\\/\t"[below(6)];
            size_t n = 1 + below(kind < 4 ? 400 : 40);
            for (size_t i = 0; i < n; i++) sput(&s, &c, 1);
        } else {
            const char *p = pieces[below(sizeof pieces / sizeof *pieces)];
            if ((p[0] == '\n' || p[0] == '\r') && !breaks) continue;
            sputs(&s, p);
        }
        if (kind >= 7 && below(3) == 0) break;
    }
    return s.p;
}

/* A section or key name: mostly valid, sometimes with a character no INI name may hold. */
static void gen_name(char *out, size_t maxlen, int section, int i)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    size_t n = 1 + below(maxlen);
    int spoil = !section && below(20) == 0;     /* a key with a character no name may hold */
    int k = snprintf(out, maxlen + 1, "%c%d_", section ? 's' : 'k', i);   /* a unique prefix */
    for (size_t j = (size_t)k; j < n; j++) {
        out[j] = ok[below(sizeof ok - 1)];
        if (section && below(8) == 0) out[j] = '.';
        if (spoil && j + 1 < n && below(4) == 0) out[j] = " ;#[]:\t"[below(7)];
        if (below(300) == 0) out[j] = (char)0xc3;                  /* non-ASCII bytes */
    }
    if ((size_t)k > n) n = (size_t)k;
    out[n] = 0;
    if (section && out[n - 1] == '.') out[n - 1] = 'x';
}

static void tu_trim(char *s)
{
    size_t n = strlen(s), a = 0;
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    while (s[a] && isspace((unsigned char)s[a])) a++;
    memmove(s, s + a, n - a + 1);
}

/* ---- the property: write, load, compare --------------------------------------------------- */
typedef struct expected {
    char sec[64], key[80];
    char *value;
} expected;

static void compare_loaded(const ts_ini *back, const expected *ex, int nex, int nsec, int seed)
{
    assert_int_equal(back->nsec, nsec);
    int nent = 0;
    for (int i = 0; i < back->nsec; i++) nent += back->sec[i].n;
    if (nent != nex) fail_msg("seed %d: %d keys read back, %d written", seed, nent, nex);
    for (int i = 0; i < nex; i++) {
        ts_cfg *c = ts_ini_find((ts_ini *)back, ex[i].sec);
        if (!c) fail_msg("seed %d: section [%s] not read back", seed, ex[i].sec);
        ts_entry *en = ts_cfg_entry(c, ex[i].key);
        if (!en) fail_msg("seed %d: [%s] %s not read back", seed, ex[i].sec, ex[i].key);
        if (strcmp(en->value, ex[i].value))
            fail_msg("seed %d: [%s] %s: wrote %zu bytes '%.80s', read %zu bytes '%.80s'", seed,
                     ex[i].sec, ex[i].key, strlen(ex[i].value), ex[i].value, strlen(en->value),
                     en->value);
    }
}

/* One random configuration: sections (some dotted, as [layer.x] is), keys set through the
 * command line's entry point or directly (as a file's value is), plugin defaults; what the entry
 * points refuse must be exactly what ts_ini_value_problem / ts_ini_name_problem refuse. */
static void one_case(int seed, int through_files, int *refused, int *kept)
{
    rng_s = 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed * 0x2545F4914F6CDD1Dull);
    rnd();
    int nsec = 1 + (int)below(5);
    char secs[8][64];
    str headers = {0};
    sputs(&headers, "; generated\n");
    for (int i = 0; i < nsec; i++) {
        gen_name(secs[i], 49, 1, i);
        sputs(&headers, "[");
        sputs(&headers, secs[i]);
        sputs(&headers, "]\n");
    }
    ts_ini ini;
    ts_err e;
    if (ts_ini_load_string(&ini, "gen.ini", headers.p, &e)) fail_msg("seed %d: %s", seed, e.msg);
    free(headers.p);
    expected ex[64];
    int nex = 0;
    ts_key *keys[8] = {0};
    char *defs[8][4] = {{0}};
    for (int i = 0; i < nsec; i++) {
        int nkey = (int)below(8);
        for (int j = 0; j < nkey; j++) {
            char key[80];
            gen_name(key, 63, 0, j);
            char *v = gen_value();
            int direct = below(2) == 0;
            str assign = {0};
            sputs(&assign, secs[i]);
            sputs(&assign, ".");
            sputs(&assign, key);
            sputs(&assign, "=");
            if (!direct) sputs(&assign, v);
            int bad_name = ts_ini_name_problem(key, 0) != NULL;
            int rc = ts_ini_override(&ini, assign.p, &e);
            free(assign.p);
            if (bad_name) {
                if (rc == 0) fail_msg("seed %d: the key '%s' was accepted", seed, key);
                tu_contains(e.msg, "command line", "write SECTION.KEY=VALUE", NULL);
                (*refused)++;
                free(v);
                continue;
            }
            ts_entry *en = ts_cfg_entry(ts_ini_find(&ini, secs[i]), key);
            if (direct) {   /* a value as a file may give it: blanks at its ends included */
                assert_int_equal(rc, 0);
                if (ts_ini_value_problem(v)) {
                    (*refused)++;
                    free(v);
                    ts_ini_find(&ini, secs[i])->n--;     /* drop the entry just added */
                    free(en->value);
                    continue;
                }
                free(en->value);
                en->value = v;
            } else {
                str t = {0};                   /* the override trims the value first */
                sputs(&t, v);
                tu_trim(t.p);
                int problem = ts_ini_value_problem(t.p) != NULL;
                free(t.p);
                if (problem) {
                    if (rc == 0) fail_msg("seed %d: a value with a line break was accepted", seed);
                    tu_contains(e.msg, "command line", "line break", NULL);
                    (*refused)++;
                    free(v);
                    continue;
                }
                if (rc) fail_msg("seed %d: %s", seed, e.msg);
                free(v);
            }
            snprintf(ex[nex].sec, sizeof ex[nex].sec, "%s", secs[i]);
            snprintf(ex[nex].key, sizeof ex[nex].key, "%s", key);
            ex[nex++].value = en->value;
        }
        /* a plugin's declared keys with defaults that are not set: written with "; default" */
        int ndef = (int)below(4);
        keys[i] = calloc((size_t)ndef + 1, sizeof *keys[i]);
        assert_non_null(keys[i]);
        for (int d = 0; d < ndef; d++) {
            char *def = gen_value();
            while (ts_ini_value_problem(def)) { free(def); def = gen_value(); }
            defs[i][d] = def;
            char *name = malloc(16);
            assert_non_null(name);
            snprintf(name, 16, "def%d", d);
            keys[i][d].key = name;
            keys[i][d].def = def;
            snprintf(ex[nex].sec, sizeof ex[nex].sec, "%s", secs[i]);
            snprintf(ex[nex].key, sizeof ex[nex].key, "%s", name);
            ex[nex++].value = def;
        }
        ts_ini_find(&ini, secs[i])->keys[0] = keys[i];
    }
    ts_ini back;
    if (through_files) {
        char dir[] = "/tmp/tessera-inifiles-XXXXXX", path[64];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/config.ini", dir);
        if (ts_ini_write(&ini, path, &e)) fail_msg("seed %d: %s", seed, e.msg);
        if (ts_ini_load(&back, path, &e)) fail_msg("seed %d: %s", seed, e.msg);
        unlink(path);
        rmdir(dir);
    } else {
        char *text;
        size_t n;
        if (ts_ini_format(&ini, &text, &n, &e)) fail_msg("seed %d: %s", seed, e.msg);
        assert_int_equal(strlen(text), n);
        if (ts_ini_load_string(&back, "config.ini", text, &e))
            fail_msg("seed %d: %s\n--- the text ---\n%.2000s", seed, e.msg, text);
        free(text);
    }
    compare_loaded(&back, ex, nex, nsec, seed);
    *kept += nex;
    ts_ini_free(&back);
    ts_ini_free(&ini);
    for (int i = 0; i < nsec; i++) {
        for (int d = 0; keys[i] && keys[i][d].key; d++) free((char *)keys[i][d].key);
        for (int d = 0; d < 4; d++) free(defs[i][d]);
        free(keys[i]);
    }
}

static void test_written_configuration_reads_back(void **st)
{
    (void)st;
    int refused = 0, kept = 0;
    for (int seed = 1; seed <= 3000; seed++) one_case(seed, seed % 100 == 0, &refused, &kept);
    /* the generator reaches the refusals, and mostly makes values that must round-trip */
    print_message("%d keys written and read back, %d refused where they enter\n", kept, refused);
    assert_true(refused > 100);
    assert_true(kept > 10 * refused);
}

/* The defects of issue 12, one by one: what a run wrote and could not read back. */
static void test_known_values_read_back(void **st)
{
    (void)st;
    char longpath[400] = "/tmp/";
    while (strlen(longpath) < 300) strcat(longpath, "a_rather_long_folder_name/");
    strcat(longpath, "exp.ini");
    char big[6000];
    for (size_t i = 0; i < sizeof big - 1; i++) big[i] = "abc, ;#=\\"[i % 9];
    big[sizeof big - 1] = 0;
    const char *values[] = {longpath, "a ;b", "ends with a backslash\\", "x", "; at the start",
                            "  blanks at both ends  ", "\\", " \\ ", "", big};
    ts_ini ini, back;
    ts_err e;
    if (ts_ini_load_string(&ini, "t.ini", "[experiment]\nname = t\n", &e)) fail_msg("%s", e.msg);
    char assign[64], key[16];
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        snprintf(key, sizeof key, "v%zu", i);
        snprintf(assign, sizeof assign, "experiment.%s=", key);
        assert_int_equal(ts_ini_override(&ini, assign, &e), 0);
        ts_entry *en = ts_cfg_entry(ts_ini_find(&ini, "experiment"), key);
        assert_non_null(en);
        free(en->value);
        en->value = strdup(values[i]);     /* as a file's raw lines may give it */
    }
    char *text;
    size_t n;
    if (ts_ini_format(&ini, &text, &n, &e)) fail_msg("%s", e.msg);
    for (char *l = text; *l;) {            /* every line within inih's limit but the comment */
        char *nl = strchr(l, '\n');
        if (*l != ';') assert_true(nl - l <= 199);
        l = nl + 1;
    }
    if (ts_ini_load_string(&back, "back.ini", text, &e)) fail_msg("%s\n%s", e.msg, text);
    ts_cfg *c = ts_ini_find(&back, "experiment");
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        snprintf(key, sizeof key, "v%zu", i);
        ts_entry *en = ts_cfg_entry(c, key);
        assert_non_null(en);
        assert_string_equal(en->value, values[i]);
    }
    free(text);
    ts_ini_free(&back);
    /* a value that no INI file can hold is refused by the writer too, never written broken */
    ts_entry *en = ts_cfg_entry(ts_ini_find(&ini, "experiment"), "v0");
    free(en->value);
    en->value = strdup("two\nlines");
    assert_int_equal(ts_ini_format(&ini, &text, &n, &e), -1);
    tu_contains(e.msg, "[experiment] v0", "line break", NULL);
    ts_ini_free(&ini);
}

static void test_overrides_refuse_what_a_file_cannot_hold(void **st)
{
    (void)st;
    ts_ini ini;
    ts_err e;
    if (ts_ini_load_string(&ini, "t.ini", "[train]\nepochs = 1\n", &e)) fail_msg("%s", e.msg);
    assert_int_equal(ts_ini_override(&ini, "train.note=first\nsecond", &e), -1);
    tu_contains(e.msg, "command line: [train] note: the value holds a line break",
                "give the value on one line", NULL);
    assert_int_equal(ts_ini_override(&ini, "train.note=a\rb", &e), -1);
    assert_int_equal(ts_ini_override(&ini, "train.my key=1", &e), -1);
    tu_contains(e.msg, "a key cannot hold white space", NULL);
    assert_int_equal(ts_ini_override(&ini, "tr]ain.k=1", &e), -1);
    tu_contains(e.msg, "a section name cannot hold", NULL);
    char longsec[80];
    memset(longsec, 's', 60);
    strcpy(longsec + 60, ".k=1");
    assert_int_equal(ts_ini_override(&ini, longsec, &e), -1);
    tu_contains(e.msg, "49 bytes", NULL);
    /* over 4 KiB: kept whole (it was cut at 4095 bytes) */
    char *big = malloc(9000);
    assert_non_null(big);
    strcpy(big, "train.note=");
    memset(big + 11, 'x', 8000);
    big[8011] = 0;
    assert_int_equal(ts_ini_override(&ini, big, &e), 0);
    assert_int_equal(strlen(ts_cfg_entry(ts_ini_find(&ini, "train"), "note")->value), 8000);
    assert_int_equal(ts_ini_override(&ini, "train.note= a ;b ", &e), 0);
    assert_string_equal(ts_cfg_entry(ts_ini_find(&ini, "train"), "note")->value, "a ;b");
    free(big);
    ts_ini_free(&ini);
}

/* ---- continuation lines ----------------------------------------------------------------- */
static void expect_load_error(const char *text, ...)
{
    ts_ini ini;
    ts_err e;
    int rc = ts_ini_load_string(&ini, "exp.ini", text, &e);
    ts_ini_free(&ini);
    if (rc == 0) fail_msg("loaded, but should not have:\n%s", text);
    va_list ap;
    va_start(ap, text);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(e.msg, s)) fail_msg("message: %s\nmissing: %s", e.msg, s);
    va_end(ap);
}

static const char *value_of(ts_ini *ini, const char *sec, const char *key)
{
    ts_cfg *c = ts_ini_find(ini, sec);
    assert_non_null(c);
    ts_entry *en = ts_cfg_entry(c, key);
    assert_non_null(en);
    return en->value;
}

static void test_indented_key_under_a_list(void **st)
{
    (void)st;
    /* MMoE's tasks became "y1, y2, units, =, 16" */
    expect_load_error("[layer.mix]\ntype = mmoe\ntasks = y1, y2\n  units = 16\n",
                      "exp.ini:4:", "'units = 16'", "[layer.mix] tasks (line 3)",
                      "remove the indentation", NULL);
    expect_load_error("[layer.mix]\ntasks = y1,\n\ty2\n\texperts=8\n", "exp.ini:4:",
                      "'experts=8'", "tasks (line 2)", NULL);
    expect_load_error("[a]\nk = v\n  [b]\nx = 1\n", "exp.ini:3:", "'[b]'", "[a] k (line 2)",
                      "a section header", NULL);
    /* what a list continuation legitimately holds still continues it */
    ts_ini ini;
    ts_err e;
    const char *ok = "[suite]\nexperiments = ../a.ini, ../b.ini,\n  ../c.ini, ../d.ini ; comment\n"
                     "[experiment]\nquick = train.epochs=3\n  data.rows=20,2,2\nlist =\n  a\n  b\n"
                     "raw = /very/long/\n  \\path/with spaces ;and semicolons\n  \\ ends blank \\\n"
                     "description = MMoE; tasks\n"               /* docs/ini.md's example */
                     "  \\ ; notes with a semicolon, and two blanks at the end:  \\\n"
                     "item = a\n  \\, b = c\n";
    if (ts_ini_load_string(&ini, "ok.ini", ok, &e)) fail_msg("%s", e.msg);
    assert_string_equal(value_of(&ini, "suite", "experiments"),
                        "../a.ini, ../b.ini,, ../c.ini, ../d.ini");
    assert_string_equal(value_of(&ini, "experiment", "quick"), "train.epochs=3, data.rows=20,2,2");
    assert_string_equal(value_of(&ini, "experiment", "list"), "a, b");
    assert_string_equal(value_of(&ini, "experiment", "raw"),
                        "/very/long/path/with spaces ;and semicolons ends blank ");
    assert_string_equal(value_of(&ini, "experiment", "description"),
                        "MMoE; tasks ; notes with a semicolon, and two blanks at the end:  ");
    assert_string_equal(value_of(&ini, "experiment", "item"), "a, b = c");
    ts_ini_free(&ini);
}

/* Every experiment and suite the repository ships still loads. */
static void test_bundled_files_load(void **st)
{
    (void)st;
    const char *dirs[] = {"experiments", "experiments/suites"};
    int n = 0;
    for (int d = 0; d < 2; d++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", tu_src(dirs[d]));
        DIR *D = opendir(dir);
        assert_non_null(D);
        for (struct dirent *de; (de = readdir(D));) {
            size_t k = strlen(de->d_name);
            if (k < 5 || strcmp(de->d_name + k - 4, ".ini")) continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            ts_ini ini;
            ts_err e;
            if (ts_ini_load(&ini, path, &e)) fail_msg("%s", e.msg);
            ts_ini_free(&ini);
            n++;
        }
        closedir(D);
    }
    assert_true(n >= 20);
}

/* ---- a byte order mark ------------------------------------------------------------------- */
static void test_byte_order_mark(void **st)
{
    (void)st;
    /* the pre-scan missed the first [experiment] behind the mark, and inih merged the two */
    expect_load_error("\xEF\xBB\xBF[experiment]\nname = a\n\n[train]\nepochs = 1\n\n"
                      "[experiment]\nseed = 3\n", "exp.ini:7:", "section [experiment] appears twice",
                      "first on line 1", NULL);
    ts_ini ini;
    ts_err e;
    const char *path = tu_write(".ini", "\xEF\xBB\xBF[experiment]\nname = a\n[train]\nepochs = 1\n");
    if (ts_ini_load(&ini, path, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ini.nsec, 2);
    assert_string_equal(value_of(&ini, "experiment", "name"), "a");
    assert_int_equal(ts_ini_find(&ini, "experiment")->line, 1);
    ts_ini_free(&ini);
    unlink(path);
}

/* ---- files that are not regular files --------------------------------------------------- */
static char tmpdir[64];

static int setup_dir(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-inifiles-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    alarm(60);   /* a reader that blocks on a FIFO, or reads /dev/zero for ever, fails the test */
    return 0;
}

static int teardown_dir(void **st)
{
    (void)st;
    alarm(0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *in_tmp(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void test_fifo_and_devices_are_refused(void **st)
{
    (void)st;
    const char *fifo = in_tmp("pipe.ini");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(mkdir(in_tmp("folder.ini"), 0700), 0);
    struct { const char *path, *kind; } bad[] = {
        {fifo, "a FIFO"}, {"/dev/zero", "a character device"},
        {"/dev/urandom", "a character device"}, {in_tmp("folder.ini"), "a folder"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ts_ini ini;
        ts_err e;
        assert_int_equal(ts_ini_load(&ini, bad[i].path, &e), -1);
        ts_ini_free(&ini);
        tu_contains(e.msg, bad[i].path, "is not a regular file but", bad[i].kind,
                    "give the path of an experiment file", NULL);
        ts_lines *L = ts_lines_open(bad[i].path, &e);
        assert_null(L);
        tu_contains(e.msg, bad[i].path, bad[i].kind, "give the path of a data file", NULL);
        unsigned char *buf;
        size_t n;
        assert_int_equal(ts_read_file(bad[i].path, &buf, &n, &e), -1);
        tu_contains(e.msg, bad[i].path, bad[i].kind, "give the path of a file tessera wrote", NULL);
    }
    /* a symbolic link to a regular file is a regular file */
    const char *real = in_tmp("real.ini"), *link = in_tmp("link.ini");
    FILE *f = fopen(real, "w");
    assert_non_null(f);
    fputs("[experiment]\nname = x\n", f);
    fclose(f);
    assert_int_equal(symlink(real, link), 0);
    ts_ini ini;
    ts_err e;
    if (ts_ini_load(&ini, link, &e)) fail_msg("%s", e.msg);
    ts_ini_free(&ini);
    ts_lines *L = ts_lines_open(link, &e);
    assert_non_null(L);
    assert_string_equal(ts_lines_next(L, NULL), "[experiment]");
    ts_lines_close(L);
    unsigned char *buf;
    size_t n;
    assert_int_equal(ts_read_file(link, &buf, &n, &e), 0);
    assert_int_equal(n, strlen("[experiment]\nname = x\n"));
    free(buf);
    /* a missing file keeps its message */
    assert_null(ts_lines_open(in_tmp("missing.csv"), &e));
    tu_contains(e.msg, "missing.csv: cannot open: No such file or directory", NULL);
    assert_int_equal(ts_ini_load(&ini, in_tmp("missing.ini"), &e), -1);
    ts_ini_free(&ini);
    tu_contains(e.msg, "cannot open the experiment file: No such file", NULL);
}

/* Through a dataset plugin and through a whole experiment: a FIFO as the data path. */
static void test_fifo_as_data(void **st)
{
    (void)st;
    const char *fifo = in_tmp("census.csv");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    char text[2048];
    snprintf(text, sizeof text,
             "[experiment]\nname = fifo\n[data]\ntype = census\npath = %s\n"
             "[layer.out]\ntype = dense\ninput = continuous\nunits = 1\n"
             "[head.income]\ntype = binary\ninput = out\nlabel = income\nloss = bce\n"
             "[optimizer]\ntype = adam\n[train]\nepochs = 1\n", fifo);
    const char *ini = tu_write(".ini", text);
    ts_err e;
    assert_int_equal(tu_build_exp(ini, 0, NULL, &e), -1);
    tu_contains(e.msg, "[data] type = census", fifo, "is not a regular file but a FIFO", NULL);
    unlink(ini);
    /* movielens looked for its files with fopen(), which waits for a FIFO's writer */
    assert_int_equal(mkdir(in_tmp("ml"), 0700), 0);
    assert_int_equal(mkfifo(in_tmp("ml/ratings.csv"), 0600), 0);
    snprintf(text, sizeof text,
             "[experiment]\nname = fifo\n[data]\ntype = movielens\npath = %s\n"
             "[head.next]\ntype = retrieval\ninput = history\nlabel = target\nloss = softmax_ce\n"
             "[optimizer]\ntype = adam\n[train]\nepochs = 1\n", in_tmp("ml"));
    ini = tu_write(".ini", text);
    assert_int_equal(tu_build_exp(ini, 0, NULL, &e), -1);
    tu_contains(e.msg, "ratings.csv is not a regular file but a FIFO", NULL);
    unlink(ini);
}

/* A gzip file that inflates into one endless line, and one of zeros: bounded by the line limit
 * and by the NUL check, not by memory. */
static void test_endless_gzip_lines(void **st)
{
    (void)st;
    const char *path = in_tmp("bomb.csv.gz");
    gzFile gz = gzopen(path, "wb1");
    assert_non_null(gz);
    char block[1 << 16];
    memset(block, 'a', sizeof block);
    for (int i = 0; i < (17 << 20) / (int)sizeof block; i++)
        assert_int_equal(gzwrite(gz, block, sizeof block), (int)sizeof block);
    gzclose(gz);
    ts_err e;
    ts_lines *L = ts_lines_open(path, &e);
    assert_non_null(L);
    assert_null(ts_lines_next(L, NULL));
    assert_int_equal(ts_lines_error(L, &e), -1);
    tu_contains(e.msg, "bomb.csv.gz:1: the line is longer than 16 MiB", NULL);
    ts_lines_close(L);
    path = in_tmp("zeros.csv.gz");
    gz = gzopen(path, "wb1");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, "id,x\n1,2\n", 9), 9);
    memset(block, 0, sizeof block);
    for (int i = 0; i < 64; i++) assert_int_equal(gzwrite(gz, block, sizeof block), (int)sizeof block);
    gzclose(gz);
    L = ts_lines_open(path, &e);
    assert_non_null(L);
    assert_string_equal(ts_lines_next(L, NULL), "id,x");
    assert_string_equal(ts_lines_next(L, NULL), "1,2");
    assert_null(ts_lines_next(L, NULL));
    assert_int_equal(ts_lines_error(L, &e), -1);
    tu_contains(e.msg, "zeros.csv.gz:3: the line holds a NUL byte", NULL);
    ts_lines_close(L);
}

/* An experiment file over 16 MiB is refused without reading it all. */
static void test_huge_experiment_file(void **st)
{
    (void)st;
    const char *path = in_tmp("huge.ini");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[experiment]\nname = huge\n", f);
    char line[100];
    memset(line, ';', sizeof line - 1);
    line[sizeof line - 2] = '\n';
    line[sizeof line - 1] = 0;
    for (int i = 0; i < (17 << 20) / 99; i++) fputs(line, f);
    fclose(f);
    ts_ini ini;
    ts_err e;
    assert_int_equal(ts_ini_load(&ini, path, &e), -1);
    ts_ini_free(&ini);
    tu_contains(e.msg, "huge.ini: is over 16 MiB", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_written_configuration_reads_back),
        cmocka_unit_test(test_known_values_read_back),
        cmocka_unit_test(test_overrides_refuse_what_a_file_cannot_hold),
        cmocka_unit_test(test_indented_key_under_a_list),
        cmocka_unit_test(test_bundled_files_load),
        cmocka_unit_test(test_byte_order_mark),
        cmocka_unit_test_setup_teardown(test_fifo_and_devices_are_refused, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_fifo_as_data, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_endless_gzip_lines, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_huge_experiment_file, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
