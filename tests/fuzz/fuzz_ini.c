/* fuzz_ini.c — libFuzzer harness of the whole path from an experiment file to a built graph:
 * the input is written as an experiment INI and goes through ts_exp_load (inih, prescan, keys
 * checked against every plugin's list, plugins found by name) and ts_exp_build (dataset open,
 * topological sort, cycle and shape errors, tied weights, heads, optimizer, parameter arena).
 * Nothing trains. The plugins are the real .so files of build.sh (sanitized), found through
 * TESSERA_PLUGIN_PATH; the data are tiny copies of the bundled datasets, laid out in a private
 * folder under their usual names (data/census/census-income.test.gz, ...) so the experiments of
 * experiments/ work as seeds. The process's folder is that private folder, so a data path never
 * finds a big file of the folder the harness was started from; the command line's relative paths
 * (inputs, corpus folders, -artifact_prefix, -dict, ...) are made absolute first.
 *
 * An input may end with a line "%%" and command-line overrides, one SECTION.KEY=VALUE a line
 * (`tessera run EXP.ini train.lr=0.1`): they go through ts_ini_override.
 *
 * Skipped, not reported: an input whose values name /dev, /proc or /sys (a device never ends),
 * a `plugin =` path (dlopen of an arbitrary file runs its constructors) or [experiment] source
 * (it moves the folder relative data paths are resolved from). docs/fuzzing.md. */
#include "fuzz_common.h"

#ifndef FUZZ_SRCDIR
#define FUZZ_SRCDIR "tests/fuzz"        /* build.sh passes the absolute folder */
#endif
#ifndef FUZZ_PLUGIN_DIR
#define FUZZ_PLUGIN_DIR "plugins"
#endif

static char ini_path[2048], results_dir[2048];

static void place(const char *src, const char *dst)
{
    char a[2048], b[2048];
    const char *root = getenv("TESSERA_FUZZ_SRC");
    snprintf(a, sizeof a, "%s/data/%s", root && *root ? root : FUZZ_SRCDIR, src);
    snprintf(b, sizeof b, "%s/%s", fuzz_tmpdir(), dst);
    fuzz_copy(a, b);
}

/* cwd/p, or p when it is absolute (malloc'ed; lives as long as the process). */
static char *absolute(const char *cwd, const char *flag, const char *p)
{
    size_t n = strlen(cwd) + strlen(flag) + strlen(p) + 2;
    char *a = malloc(n);
    if (!a) abort();
    if (p[0] == '/') snprintf(a, n, "%s%s", flag, p);
    else snprintf(a, n, "%s%s/%s", flag, cwd, p);
    return a;
}

/* The arguments libFuzzer reads after this call, with relative paths made absolute, and an
 * -artifact_prefix so a crash input lands where the harness was started (not in the private
 * folder, which is removed at exit). */
static void absolute_args(int *argc, char ***argv)
{
    static const char *const flags[] = {"-artifact_prefix=", "-exact_artifact_path=", "-dict=",
        "-features_dir=", NULL};
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) { perror("getcwd"); exit(2); }
    char **v = calloc((size_t)*argc + 2, sizeof *v);
    if (!v) abort();
    int n = 0, prefix = 0;
    for (int i = 0; i < *argc; i++) {
        const char *a = (*argv)[i];
        if (i > 0 && a[0] != '-') { v[n++] = absolute(cwd, "", a); continue; }
        v[n] = (*argv)[i];
        for (int f = 0; i > 0 && flags[f]; f++)
            if (!strncmp(a, flags[f], strlen(flags[f])) && a[strlen(flags[f])]) {
                v[n] = absolute(cwd, flags[f], a + strlen(flags[f]));
                prefix |= f == 0;
            }
        n++;
    }
    if (!prefix) v[n++] = absolute(cwd, "-artifact_prefix=", "");
    v[n] = NULL;
    *argc = n;
    *argv = v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    absolute_args(argc, argv);
    const char *dir = fuzz_tmpdir();
    static const char *const sub[] = {"data", "data/census", "data/wordnet", "data/wikiqa",
        "data/movielens", "data/movielens/ml-latest-small", "data/bad", "exp", "results", NULL};
    char p[2048];
    for (int i = 0; sub[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, sub[i]);
        if (mkdir(p, 0700)) { perror(p); exit(2); }
    }
    /* zlib reads plain text through a .gz name, so the usual names need no compression */
    place("census.txt", "data/census/census-income.test.gz");
    place("wordnet.tsv", "data/wordnet/wordnet30_gloss_pairs.tsv.gz");
    place("wikiqa-train.tsv", "data/wikiqa/WikiQA-train.tsv.gz");
    place("wikiqa-dev.tsv", "data/wikiqa/WikiQA-dev.tsv.gz");
    place("wikiqa-test.tsv", "data/wikiqa/WikiQA-test.tsv.gz");
    place("ml-ratings.csv", "data/movielens/ml-latest-small/ratings.csv");
    place("ml-movies.csv", "data/movielens/ml-latest-small/movies.csv");
    place("tiny.csv", "data/tiny.csv");
    place("census-trunc.txt", "data/bad/census-trunc.txt");
    snprintf(p, sizeof p, "%s/data/bad/empty.txt", dir);
    fuzz_write(p, "", 0);
    snprintf(ini_path, sizeof ini_path, "%s/exp/fuzz.ini", dir);
    snprintf(results_dir, sizeof results_dir, "%s/results/run", dir);
    const char *plugins = getenv("TESSERA_FUZZ_PLUGINS");
    setenv("TESSERA_PLUGIN_PATH", plugins && *plugins ? plugins : FUZZ_PLUGIN_DIR, 1);
    unsetenv("TESSERA_DATA_DIR");
    if (chdir(dir)) { perror(dir); exit(2); }
    return 0;
}

/* 1 when a value (or an override) stays inside the private folder and the fuzz plugins. */
static int harmless_value(const char *key, const char *value)
{
    return !strstr(value, "/dev") && !strstr(value, "/proc") && !strstr(value, "/sys") &&
           !strstr(key, "source") && !(strstr(key, "plugin") && strchr(value, '/'));
}

/* 1 when the experiment stays inside the private folder and the fuzz plugins (see the top). */
static int harmless(const char *text)
{
    ts_ini ini;
    ts_err e;
    int ok = 1;
    if (ts_ini_load_string(&ini, "fuzz.ini", text, &e) == 0)
        for (int s = 0; ok && s < ini.nsec; s++)
            for (int k = 0; ok && k < ini.sec[s].n; k++) {
                const ts_entry *en = &ini.sec[s].ent[k];
                ok = harmless_value(en->key, en->value);
            }
    /* a file that does not parse fails the same way inside ts_exp_load, before any path is used */
    ts_ini_free(&ini);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16) return 0;
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    int np = fuzz_split(data, size, part, len);
    char *text = malloc(size + 1), *ov[64];
    int nov = 0;
    if (!text) abort();
    memcpy(text, part[0], len[0]);
    text[len[0]] = 0;               /* a NUL inside: ts_exp_load refuses the file by itself */
    int ok = harmless(text);
    if (np > 1) {                   /* overrides: the lines of part 1, NUL-terminated in place */
        char *o = text + len[0] + 1;
        memcpy(o, part[1], len[1]);
        o[len[1]] = 0;
        for (char *line = o, *next; line && nov < 64; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            if (!*line) continue;
            ov[nov++] = line;
            const char *eq = strchr(line, '=');
            ok = ok && (!eq || harmless_value(line, eq));
        }
    }
    if (!ok) {
        if (fuzz_verbose()) fprintf(stderr, "fuzz_ini: skipped (/dev, /proc, /sys, source or a "
                                    "plugin path)\n");
        free(text);
        return 0;
    }
    fuzz_write(ini_path, part[0], len[0]);
    ts_run_opts o = {.results_dir = results_dir, .noverride = nov, .overrides = ov};
    ts_err e = {{0}};
    ts_exp *x = ts_exp_load(ini_path, &o, &e);
    if (!x) {
        if (!e.msg[0]) FUZZ_BUG("ts_exp_load failed without a message");
        if (fuzz_verbose()) fprintf(stderr, "fuzz_ini: load refused: %s\n", e.msg);
        free(text);
        return 0;
    }
    e.msg[0] = 0;
    int rc = ts_exp_build(x, &e);
    if (rc && !e.msg[0]) FUZZ_BUG("ts_exp_build failed without a message");
    if (fuzz_verbose()) fprintf(stderr, "fuzz_ini: %s%s\n", rc ? "build refused: " : "built",
                                rc ? e.msg : "");
    ts_exp_free(x);
    free(text);                     /* the overrides, kept while x held their pointers */
    return 0;
}
