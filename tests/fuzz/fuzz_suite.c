/* fuzz_suite.c — libFuzzer harness of how `tessera compare` reads its arguments' files: suites
 * ([suite] experiments = ..., suites = ...) that list experiments and other suites by relative
 * paths, resolved from the listing file's folder, down to the experiments' [experiment] name,
 * [data] and quick keys. That reader is add_experiment of core/compare.c, which belongs to the
 * program, not to libtessera (it prints its refusals on stderr), so this file includes
 * compare.c itself and calls it; nothing runs, forks or plots.
 *
 * The input is up to eight files separated by lines that are exactly "%%": the first is
 * main.ini (what `tessera compare main.ini` gets), the others a.ini, b.ini, sub/c.ini,
 * sub/d.ini, sub/deep/e.ini, f.ini, g.ini, so the fuzzer can list them from each other
 * ("a.ini", "sub/c.ini", "../a.ini", "deep/e.ini") and make cycles, diamonds and depth.
 * The files live in the harness's private folder (in /dev/shm when there is one); main.ini is
 * given by its absolute path.
 *
 * The contract checked besides the sanitizers: a refusal (add_experiment != 0) prints a message
 * (captured from stderr); an accepted input gives experiments with a path and a name, no two
 * with the same name.
 *
 * Skipped, not reported: inputs naming /dev, /proc or /sys (a device never ends; the INI loader's
 * own hardening is tested elsewhere). docs/fuzzing.md. */
#include "fuzz_common.h"

#define PACKAGE_VERSION "fuzz"
#include "../../core/compare.c"

/* The report (core/report.c, runinfo.c) and the process runner (core/runner.c) are not linked:
 * the harness reads suites and never runs or reports a comparison, so these are never called. */
int ts_report_write(const ts_report_in *in) { (void)in; abort(); }
double ts_wall_clock(void) { return 0; }
int ts_runner_run(const ts_runner *r, ts_job *jobs, int n, ts_run_counts *counts, int *stopped)
{
    (void)r; (void)jobs; (void)n; (void)counts; (void)stopped;
    abort();
}
const char *ts_runner_signal_name(int sig) { (void)sig; abort(); }

static const char *const names[FUZZ_MAX_PARTS] = {"main.ini", "a.ini", "b.ini", "sub/c.ini",
    "sub/d.ini", "sub/deep/e.ini", "f.ini", "g.ini"};
static FILE *capture;                    /* compare.c's messages for one input */

/* The private folder's path of a file. */
static const char *at(const char *name)
{
    static char p[2][2048];
    static int k;
    k = !k;
    snprintf(p[k], sizeof p[k], "%s/%s", fuzz_tmpdir(), name);
    return p[k];
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Every input writes and removes eight small files: on a tmpfs that is free. */
    struct stat sb;
    if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    if (mkdir(at("sub"), 0700) || mkdir(at("sub/deep"), 0700)) { perror("mkdir"); exit(2); }
    if (!(capture = fopen(at("messages.txt"), "w+"))) { perror("messages.txt"); exit(2); }
    return 0;
}

/* Releases what add_experiment allocated for each experiment: nothing at 0b960b7 (fixed-size
 * strings); the compare branch's cmp_exp holds malloc'ed group and quick strings. */
static void free_exps(cmp_exp *v, int n)
{
    for (int i = 0; i < n; i++) {
        if (sizeof v[i].group == sizeof(char *)) free(*(char **)(void *)&v[i].group);
        if (sizeof v[i].quick == sizeof(char *)) free(*(char **)(void *)&v[i].quick);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16) return 0;
    for (size_t i = 0; i + 4 <= size; i++)
        if (!memcmp(data + i, "/dev", 4) || !memcmp(data + i, "/pro", 4) ||
            !memcmp(data + i, "/sys", 4))
            return 0;
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    int np = fuzz_split(data, size, part, len);
    for (int i = 0; i < FUZZ_MAX_PARTS; i++) {
        if (i < np) fuzz_write(at(names[i]), part[i], len[i]);
        else remove(at(names[i]));
    }
    static cmp_exp v[MAX_EXP];
    int n = 0;
    /* compare.c prints to stderr; the sanitizers write to the descriptor, not through it */
    FILE *saved = stderr;
    rewind(capture);
    if (ftruncate(fileno(capture), 0)) abort();
    stderr = capture;
    int rc = add_experiment(v, &n, at("main.ini"));
    fflush(capture);
    long said = ftell(capture);
    stderr = saved;
    if (fuzz_verbose()) {
        char msg[2048] = "";
        rewind(capture);
        size_t k = fread(msg, 1, sizeof msg - 1, capture);
        msg[k] = 0;
        fprintf(stderr, "fuzz_suite: rc %d, %d experiment%s; %s\n", rc, n, n == 1 ? "" : "s",
                k ? msg : "(no message)\n");
    }
    if (rc && said <= 0) FUZZ_BUG("add_experiment refused the input without a message");
    if (n < 0 || n > MAX_EXP) FUZZ_BUG("add_experiment counted %d experiments", n);
    for (int i = 0; !rc && i < n; i++) {
        if (!v[i].path[0] || !v[i].name[0]) FUZZ_BUG("experiment %d has no path or no name", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(v[i].name, v[j].name))
                FUZZ_BUG("two experiments named %s (%s, %s)", v[i].name, v[j].path, v[i].path);
    }
    free_exps(v, n);
    return 0;
}
