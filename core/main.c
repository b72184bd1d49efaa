/* main.c — the tessera program: parses the command line, calls libtessera, prints what it
 * returns and sets the exit status. The only place (with compare.c) that prints and exits. */
#include "config.h"
#include "internal.h"
#include "dist.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ts_cmd_compare(int argc, char **argv);
int ts_cmd_plot(int argc, char **argv);
int ts_cmd_export(int argc, char **argv);
int ts_cmd_recommend(int argc, char **argv);

/* One command's command line: the help `tessera CMD --help` prints (stdout, exit 0) and the
 * options it takes, so that an option it does not take is refused before any work, named, with
 * exit status 2. The commands parse their own arguments after this check; a command missing
 * from the table (one added later) parses all of its own. docs/tessera.1 says the same. */
typedef struct command {
    const char *name;
    const char *values;   /* the options that take a value, each followed by a blank */
    const char *flags;    /* the options that take none, each followed by a blank */
    const char *help;
} command;

#define EXIT_HELP \
    "Exit status: 0 done, 1 an error (the message names the file, the line and what to do),\n" \
    "2 a bad command line.\n"

extern const char ts_tune_help[];   /* core/tune.c */

static const command commands[] = {
    {"run", "--results --max-epochs --max-memory ", "--resume --overwrite --if-changed --quiet ",
     "usage: tessera run EXP.ini [SECTION.KEY=VALUE ...] [OPTIONS]\n"
     "\n"
     "Trains and evaluates one experiment into results/NAME ([experiment] name) or --results DIR.\n"
     "\n"
     "  SECTION.KEY=VALUE   set any key of the experiment; the section is everything before the\n"
     "                      last dot: train.epochs=3 layer.h1.units=64 experiment.seed=7\n"
     "  --results DIR       the run's folder: new, empty, or holding the run to resume or replace\n"
     "  --resume            continue the unfinished run the folder holds from its last checkpoint\n"
     "  --overwrite         replace the run the folder holds (only the files a run writes go)\n"
     "  --if-changed        keep a finished run of the same identity (configuration, data and\n"
     "                      plugin checksums), replace a changed one, resume an unfinished one;\n"
     "                      --resume, --overwrite and --if-changed exclude each other\n"
     "  --max-epochs N      train at most N epochs, whatever [train] epochs says\n"
     "  --max-memory SIZE   refuse to start a run that would need more than SIZE (512M, 4G);\n"
     "                      default: the memory the system has available\n"
     "  --quiet             print errors only\n"
     "  -h, --help          print this help\n"
     "\n"
     "Progress goes to stderr. On a terminal: a live line (epoch, step, loss, examples/s,\n"
     "elapsed, ETA) rewritten every [train] log_every steps, and a line per epoch with its\n"
     "validation figures. Not on a terminal (a pipe, a file): the epoch lines, and the progress\n"
     "line at most every 30 seconds (TESSERA_PROGRESS=SECONDS sets it; 0: none).\n"
     "\n"
     "Exit status: 0 done (or up to date, --if-changed), 1 an error (the message names the file,\n"
     "the line and what to do), 2 a bad command line, 128+N stopped by signal N at a checkpoint\n"
     "(continue with tessera resume DIR).\n"},
    {"resume", "--max-epochs --max-memory ", "--resume --quiet ",
     "usage: tessera resume RUN_DIR [SECTION.KEY=VALUE ...] [OPTIONS]\n"
     "\n"
     "Continues a killed or interrupted run from its latest usable checkpoint: the same as\n"
     "tessera run RUN_DIR/config.ini --results RUN_DIR --resume. A finished run is refused,\n"
     "unless it kept its checkpoints (keep_checkpoints = true) and an override asks for more\n"
     "epochs or steps; so is a run whose data files changed since it started.\n"
     "\n"
     "  SECTION.KEY=VALUE   override a key of the run's config.ini (train.epochs=20)\n"
     "  --max-epochs N      train at most N epochs\n"
     "  --max-memory SIZE   refuse to go on when the run would need more than SIZE (512M, 4G)\n"
     "  --quiet             print errors only\n"
     "  -h, --help          print this help\n"
     "\n"
     "Progress and exit status: as for tessera run (tessera run --help).\n"},
    {"compare", "--seeds --jobs --out --sweep ", "--quick ",
     "usage: tessera compare EXP.ini|SUITE.ini ... [OPTIONS] [SECTION.KEY=VALUE ...]\n"
     "\n"
     "Runs every experiment over seeds 1..N (and over the values of one swept key) in parallel\n"
     "processes, each as `tessera run ... --if-changed`, so a finished run of the same\n"
     "configuration, data and plugins is reused; then writes OUT/report.md (mean +- std over\n"
     "seeds, paired t-tests), summary.csv, significance.csv and plots/. A suite file lists\n"
     "experiments and other suites (docs/ini.md, \"Suite files\").\n"
     "\n"
     "  --seeds N           seeds 1..N for every experiment (default 1, at most 32)\n"
     "  --jobs N            runs at a time (default 1); each gets ncpu/N threads\n"
     "  --quick             add each experiment's [experiment] quick overrides (fewer epochs\n"
     "                      or rows); the default folder gets a -quick suffix\n"
     "  --sweep SECTION.KEY=V1,V2,...\n"
     "                      run every experiment at each value of one key (at most 16 values)\n"
     "  --out DIR           the report folder; default results/compare-NAME[-quick], NAME the\n"
     "                      experiment's name (one experiment) or the first file's name\n"
     "  SECTION.KEY=VALUE   an override given to every run\n"
     "  -h, --help          print this help\n"
     "\n"
     "Progress goes to stderr: a line per finished run, \"[3/12, elapsed 4:10, ETA 12:30] NAME\n"
     "seed S: run\" (or reused, or FAILED with the run's last line), the ETA estimated from the\n"
     "wall times of the runs finished so far; on a terminal also a live line below them with the\n"
     "runs done, running and failed, elapsed and ETA. Each run's own output is in\n"
     "OUT/logs/NAME/seed-N.log.\n"
     "\n"
     "Exit status: 0 every run finished, 1 a run failed (the report covers the others) or a file\n"
     "is refused, 2 a bad command line, 128+N stopped by signal N (the runs stop at a\n"
     "checkpoint; the same command continues them).\n"},
    {"tune", "--random --seeds --jobs --out --metric --select-on --select-fraction --halving "
     "--trial-seeds "
     "--search-seed ", "",
     ts_tune_help},
    {"plot", "--out ", "",
     "usage: tessera plot RUN_DIR ... [--out FILE.png]\n"
     "\n"
     "Draws the training loss and the validation losses of up to 64 runs in one PNG (gnuplot).\n"
     "\n"
     "  --out FILE.png      where to write it (default curves.png)\n"
     "  -h, --help          print this help\n"
     "\n" EXIT_HELP},
    {"predict", "--data --out ", "--quiet ",
     "usage: tessera predict RUN_DIR --data FILE [--out FILE.csv] [SECTION.KEY=VALUE ...]\n"
     "\n"
     "Applies a finished run to new rows of the training data's layout: every row of FILE, in\n"
     "file order, read with the run's fitted vocabularies and statistics (data_state.txt, never\n"
     "refitted), through the trained weights (params.bin). Writes one CSV line per row: an id\n"
     "column when the data has one, then one column per binary or regression head.\n"
     "\n"
     "  --data FILE         the rows (label fields may be absent)\n"
     "  --out FILE.csv      write the predictions there (default: stdout)\n"
     "  SECTION.KEY=VALUE   override a key of the run's config.ini\n"
     "  --quiet             print errors only\n"
     "  -h, --help          print this help\n"
     "\n" EXIT_HELP},
    {"evaluate", "--data --out ", "--quiet ",
     "usage: tessera evaluate RUN_DIR --data FILE [--out DIR] [SECTION.KEY=VALUE ...]\n"
     "\n"
     "The same as predict on labelled rows: prints the heads' metrics on FILE's rows\n"
     "(test.TASK.METRIC = VALUE).\n"
     "\n"
     "  --data FILE         the labelled rows\n"
     "  --out DIR           also write metrics.json and predictions.csv there (a new or empty\n"
     "                      folder)\n"
     "  SECTION.KEY=VALUE   override a key of the run's config.ini\n"
     "  --quiet             print the metrics and errors only\n"
     "  -h, --help          print this help\n"
     "\n" EXIT_HELP},
    {"export", "--out --head ", "",
     "usage: tessera export RUN_DIR [--out DIR] [--head TASK] [SECTION.KEY=VALUE ...]\n"
     "\n"
     "Writes a retrieval run's user and item vectors (user_vectors.txt/.bin,\n"
     "item_vectors.txt/.bin) for an external nearest-neighbour index.\n"
     "\n"
     "  --out DIR           where to write them (default: RUN_DIR)\n"
     "  --head TASK         the head whose vectors to write (default: the type = retrieval head)\n"
     "  SECTION.KEY=VALUE   override a key of the run's config.ini\n"
     "  -h, --help          print this help\n"
     "\n" EXIT_HELP},
    {"recommend", "--user -k --k --head ", "--rank ",
     "usage: tessera recommend RUN_DIR --user ID [-k K] [--rank] [--head TASK] [SECTION.KEY=VALUE ...]\n"
     "\n"
     "Prints a user's top-K items from a retrieval run, the items the user watched excluded.\n"
     "With --rank, RUN_DIR is a ranking run (docs/models/youtube_ranking.md): recall, then the\n"
     "ranking model re-orders the recall run's top 100 for the user by exp(z), best first.\n"
     "\n"
     "  --user ID           the dataset's user id (MovieLens userId)\n"
     "  -k K, --k K         how many items (default 10)\n"
     "  --rank              recall then ranking (a ranking run)\n"
     "  --head TASK         the head to score with (default: the type = retrieval head; with\n"
     "                      --rank the head that trains)\n"
     "  SECTION.KEY=VALUE   override a key of the run's config.ini\n"
     "  -h, --help          print this help\n"
     "\n" EXIT_HELP},
    {"plugins", "", "",
     "usage: tessera plugins\n"
     "\n"
     "Lists the plugins found (kind, name, version, file), those hidden by an earlier folder of\n"
     "the search path or defined twice, and the files skipped, with the reason.\n"
     "\n"
     "  -h, --help          print this help\n"
     "\n" EXIT_HELP},
    {"describe", "", "--all --markdown ",
     "usage: tessera describe NAME | --all [--markdown]\n"
     "\n"
     "Prints a plugin's INI keys: type, default (or required) and meaning.\n"
     "\n"
     "  NAME                a plugin's name (the value of type = in an experiment)\n"
     "  --all               every plugin, by kind and name\n"
     "  --markdown          as Markdown tables (docs/reference.md is describe --all --markdown)\n"
     "  -h, --help          print this help\n"
     "\n" EXIT_HELP},
    {"check-plugin", "", "",
     "usage: tessera check-plugin FILE.so|NAME ... [KEY=VALUE ...]\n"
     "\n"
     "Runs the conformance checks on plugins: a layer's and a loss's gradients against finite\n"
     "differences at several shapes, backward accumulating, NULL input gradients, sparse rows;\n"
     "an optimizer on a quadratic; a head's metrics; a dataset's batches. A FILE.so (a path with\n"
     "a '/') checks every plugin the file holds; a NAME the one the plugin path finds.\n"
     "\n"
     "  KEY=VALUE           a key the plugins are built with, over their own check keys\n"
     "  -h, --help          print this help\n"
     "\n"
     "Exit status: 0 every check passed, 1 a check failed or a plugin did not load, 2 a bad\n"
     "command line.\n"},
    {"version", "", "",
     "usage: tessera version\n"
     "\n"
     "Prints tessera's version and the plugin ABI it loads.\n"
     "\n"
     "  -h, --help          print this help\n"},
    {"help", "", "",
     "usage: tessera help [COMMAND]\n"
     "\n"
     "Prints the list of commands, or a command's help (the same as tessera COMMAND --help).\n"},
};

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

/* Whether opt is one of list's blank-separated options. */
static int listed(const char *list, const char *opt, size_t n)
{
    for (const char *p = list; *p; p += strcspn(p, " "), p += *p == ' ') {
        size_t k = strcspn(p, " ");
        if (k == n && !strncmp(p, opt, n)) return 1;
    }
    return 0;
}

/* Checks the options of command c among argv[0..argc) (those after the command's name):
 * -h or --help anywhere (not as an option's value) prints the command's help; an option the
 * command does not take, or one without its value, is refused by name. Returns -1 when the
 * command should go on, else the exit status. */
static int check_options(const command *c, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (listed(c->values, argv[i], strlen(argv[i]))) { i++; continue; }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(c->help, stdout);
            return fflush(stdout) ? 1 : 0;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        size_t n = strlen(a);
        if (a[0] != '-' || n == 1) continue;                    /* "-" is not an option */
        if (listed(c->flags, a, n)) continue;
        if (listed(c->values, a, n)) {
            if (i + 1 < argc) { i++; continue; }
            fprintf(stderr, "tessera %s: %s needs a value; 'tessera %s --help' shows it\n",
                    c->name, a, c->name);
            return 2;
        }
        size_t k = strcspn(a, "=");
        if (a[k] && listed(c->values, a, k))
            fprintf(stderr, "tessera %s: unknown option %s: give %.*s and its value as two "
                    "arguments (%.*s %s)\n", c->name, a, (int)k, a, (int)k, a, a + k + 1);
        else
            fprintf(stderr, "tessera %s: unknown option %s; 'tessera %s --help' lists the "
                    "options\n", c->name, a, c->name);
        return 2;
    }
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: tessera COMMAND [ARGS]\n"
        "\n"
        "  run EXP.ini [SECTION.KEY=VALUE ...] [--results DIR] [--quiet] [--max-memory SIZE]\n"
        "      [--resume | --overwrite | --if-changed]\n"
        "                          train and evaluate one experiment into a new or empty folder;\n"
        "                          --resume continues the folder's run from its checkpoint,\n"
        "                          --overwrite replaces the run it holds, --if-changed keeps a\n"
        "                          finished run of the same identity and replaces a changed one\n"
        "  resume RUN_DIR          continue a killed or interrupted run from its checkpoint\n"
        "  compare EXP.ini|SUITE.ini ... [--seeds N] [--jobs N] [--quick] [--out DIR]\n"
        "          [--sweep SECTION.KEY=V1,V2,...] [SECTION.KEY=VALUE ...]\n"
        "                          run experiments over seeds and write a comparison report\n"
        "  tune EXP.ini [--random N] [--seeds N] [--jobs N] [--out DIR] KEY=V1,V2 KEY=LO:HI ...\n"
        "                          search hyper-parameters, choose on the validation split,\n"
        "                          report the choice beside the default on test (tune --help)\n"
        "  plot RUN_DIR ... [--out FILE.png]\n"
        "                          draw the loss curves of runs\n"
        "  predict RUN_DIR --data FILE [--out FILE.csv]\n"
        "                          apply a trained run to new rows: one line of predictions per\n"
        "                          row, in file order (the run's fitted vocabularies and statistics)\n"
        "  evaluate RUN_DIR --data FILE [--out DIR]\n"
        "                          the same with labels: print the heads' metrics on those rows\n"
        "  export RUN_DIR [--out DIR] [--head TASK]\n"
        "                          write a retrieval run's user and item vectors (ANN index)\n"
        "  recommend RUN_DIR --user ID [-k 10]\n"
        "                          print a user's top-K items, watched ones excluded\n"
        "  plugins                 list the plugins found, where, kind and version\n"
        "  describe NAME|--all [--markdown]\n"
        "                          print a plugin's keys (the INI reference)\n"
        "  check-plugin FILE.so|NAME ... [KEY=VALUE ...]\n"
        "                          run the conformance checks (finite-difference gradients,\n"
        "                          accumulation, NULL gradients...), built with the keys given\n"
        "  version                 print the version and the plugin ABI\n"
        "  help [COMMAND]          this list, or a command's help\n"
        "\n"
        "tessera COMMAND --help (or -h) prints a command's options; man tessera has them all.\n"
        "Plugins are searched in TESSERA_PLUGIN_PATH (colon-separated; an empty element is the\n"
        "default), then %s. Documentation: docs/ in the source tree.\n", TS_PLUGINDIR);
}

/* The signal that asked a run to stop (SIGINT, SIGTERM, SIGHUP): the training loop writes a
 * checkpoint at the next step and returns; a second signal ends the process at once (the
 * checkpoints on disk are complete at every moment). */
static volatile sig_atomic_t stop_sig;

static void on_stop_signal(int sig)
{
    stop_sig = sig;
    signal(sig, SIG_DFL);
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        struct sigaction old;
        /* a signal ignored by whoever started us (nohup) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

static int fail(const ts_err *e)
{
    fprintf(stderr, "tessera: %s\n", e->msg);
    return 1;
}

/* One line per problem the plugin scan found and stepped over (a skipped file, a hidden or
 * duplicated name); a scan that cannot even run is reported by the command itself. */
static void print_plugin_warnings(void)
{
    ts_err e;
    if (ts_plugins_scan(&e)) return;
    for (int i = 0; i < ts_plugin_warning_count(); i++)
        fprintf(stderr, "tessera: warning: %s\n", ts_plugin_warning(i));
}

/* "2G", "512M", "100k" or bytes; -1 when it is not a size. */
static double parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return -1;
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': v *= 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end += *end == 'i' ? 1 : 0;
    if (*end == 'B') end++;
    return *end ? -1 : v;
}

/* Seconds between a run's progress lines when stderr is not a terminal: TESSERA_PROGRESS, or
 * 30. Returns -1 (said) when the variable is not a number of seconds. */
static int progress_every(double *secs)
{
    const char *v = getenv("TESSERA_PROGRESS");
    char *end;
    *secs = 30;
    if (!v || !*v) return 0;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= 0) || d > 1e9) {
        fprintf(stderr, "tessera: TESSERA_PROGRESS=%s: give the seconds between progress lines "
                "when the output is not a terminal (30 by default; 0: none)\n", v);
        return -1;
    }
    *secs = d;
    return 0;
}

/* `run` and `resume`: a run_dir (resume) stands for RUN_DIR/config.ini --results RUN_DIR. */
static int cmd_run(int argc, char **argv, const char *run_dir)
{
    const char *ini = NULL;
    char cfg[4096];
    ts_run_opts o = {0};
    o.log = stderr;
    if (progress_every(&o.progress_every)) return 2;
    if (run_dir) {
        snprintf(cfg, sizeof cfg, "%s/config.ini", run_dir);
        ini = cfg;
        if (access(cfg, R_OK)) {
            fprintf(stderr, "tessera resume: %s has no config.ini: the run stopped before it "
                    "started (or this is not a results folder); run the experiment again with "
                    "--results %s --resume\n", run_dir, run_dir);
            return 1;
        }
        o.results_dir = run_dir;
        o.resume = 1;
    }
    char **over = calloc((size_t)argc + 1, sizeof *over);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--results") && i + 1 < argc && !run_dir) o.results_dir = argv[++i];
        else if (!strcmp(argv[i], "--quiet")) o.log = NULL;
        else if (!strcmp(argv[i], "--resume")) o.resume = 1;
        else if (!strcmp(argv[i], "--overwrite") && !run_dir) o.overwrite = 1;
        else if (!strcmp(argv[i], "--if-changed") && !run_dir) o.if_changed = 1;
        else if (!strcmp(argv[i], "--max-epochs") && i + 1 < argc) o.max_epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-memory") && i + 1 < argc) {
            if ((o.max_memory = parse_size(argv[++i])) <= 0) {
                fprintf(stderr, "tessera run: --max-memory %s: give a size such as 512M or 4G\n",
                        argv[i]);
                free(over);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "tessera %s: unknown option %s; 'tessera %s --help' lists the options\n",
                    run_dir ? "resume" : "run", argv[i], run_dir ? "resume" : "run");
            free(over);
            return 2;
        } else if (!ini) ini = argv[i];
        else over[o.noverride++] = argv[i];
    }
    if (!ini) {
        fprintf(stderr, "usage: tessera run EXP.ini [SECTION.KEY=VALUE ...] [OPTIONS]; "
                "tessera run --help lists the options\n");
        free(over);
        return 2;
    }
    o.overrides = over;
    if (o.resume + o.overwrite + o.if_changed > 1 || (run_dir && (o.overwrite || o.if_changed))) {
        fprintf(stderr, "tessera %s: --resume, --overwrite and --if-changed exclude each other; "
                "give one\n", run_dir ? "resume" : "run");
        free(over);
        return 2;
    }
    catch_stop_signals();
    o.stop = &stop_sig;
    ts_err e;
    if (ts_dist_init(&argc, &argv, &e)) { free(over); return fail(&e); }
    if (ts_dist_rank() == 0) print_plugin_warnings();
    int rc = ts_run(ini, &o, &e);
    free(over);
    if (rc && ts_dist_size() > 1) {
        /* one rank's failure ends the job, never a hang in a collective */
        fprintf(stderr, "tessera (rank %d of %d): %s\n", ts_dist_rank(), ts_dist_size(), e.msg);
        fflush(stderr);
        ts_dist_abort(1);
    }
    ts_dist_finalize();
    if (rc && stop_sig) {
        fprintf(stderr, "tessera: %s\n", e.msg);
        return 128 + (int)stop_sig;
    }
    return rc ? fail(&e) : 0;
}

/* Every plugin found, usable or not (hidden by an earlier folder, or its name defined twice in
 * one folder: the note says which), then the files skipped and why. */
static int cmd_plugins(void)
{
    ts_err e;
    if (ts_plugins_scan(&e)) return fail(&e);
    printf("%-10s %-18s %-8s %s\n", "kind", "name", "version", "file");
    for (ts_kind k = TS_LAYER; k <= TS_DATASET; k++)
        for (int i = 0; i < ts_plugin_count(); i++) {
            const ts_plugin *p = ts_plugin_at(i);
            if (p->kind != k) continue;
            char buf[2 * TS_PATH_MAX];
            const char *note = ts_plugin_note(i, buf, sizeof buf);
            printf("%-10s %-18s %-8s %s%s%s%s\n", ts_kind_name(p->kind), p->name,
                   p->version ? p->version : "-", ts_plugin_path(p), note ? "  [" : "",
                   note ? note : "", note ? "]" : "");
        }
    if (ts_plugin_skipped_count()) {
        printf("\nskipped (not tessera plugins of this ABI; experiments that do not use them "
               "run):\n");
        for (int i = 0; i < ts_plugin_skipped_count(); i++) {
            const char *why = NULL;
            const char *path = ts_plugin_skipped(i, &why);
            printf("skipped    %s: %s\n", path, why);
        }
    }
    return 0;
}

/* Plugin i is the one its name finds (not hidden, not ambiguous). */
static int usable(int i)
{
    char buf[2 * TS_PATH_MAX];
    return ts_plugin_note(i, buf, sizeof buf) == NULL;
}

static void describe(const ts_plugin *p, int md)
{
    if (md) {
        printf("### `%s` (%s)\n\n%s\n\n", p->name, ts_kind_name(p->kind), p->summary ? p->summary : "");
        if (!p->keys || !p->keys->key) { printf("No keys.\n\n"); return; }
        printf("| key | type | default | meaning |\n|---|---|---|---|\n");
        for (const ts_key *k = p->keys; k->key; k++) {
            /* a '|' inside a cell (choice:a|b) would split the Markdown table */
            char type[256] = "";
            for (const char *c = k->type ? k->type : ""; *c && strlen(type) < sizeof type - 3; c++) {
                size_t n = strlen(type);
                if (*c == '|') { type[n] = '\\'; type[n + 1] = '|'; type[n + 2] = 0; }
                else { type[n] = *c; type[n + 1] = 0; }
            }
            printf("| `%s` | %s | %s | %s |\n", k->key, type,
                   k->def ? (k->def[0] ? k->def : "\"\"") : "**required**", k->help ? k->help : "");
        }
        printf("\n");
        return;
    }
    printf("%s %s %s — %s\n  file: %s\n", ts_kind_name(p->kind), p->name,
           p->version ? p->version : "", p->summary ? p->summary : "", ts_plugin_path(p));
    for (const ts_key *k = p->keys; k && k->key; k++)
        printf("  %-16s %-14s %-12s %s\n", k->key, k->type ? k->type : "",
               k->def ? k->def : "(required)", k->help ? k->help : "");
}

static int cmd_describe(int argc, char **argv)
{
    int md = 0, all = 0;
    const char *name = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--markdown")) md = 1;
        else if (!strcmp(argv[i], "--all")) all = 1;
        else name = argv[i];
    }
    ts_err e;
    if (ts_plugins_scan(&e)) return fail(&e);
    if (all) {
        static const char *titles[] = {"", "Layers", "Losses", "Optimizers", "Heads", "Datasets"};
        if (md)
            printf("# Plugin reference\n\nGenerated by `tessera describe --all --markdown` from "
                   "the plugins' own key descriptions; do not edit by hand.\n\n");
        for (ts_kind k = TS_LAYER; k <= TS_DATASET; k++) {
            /* sorted by name, so the output does not depend on the folder scan order */
            int n = ts_plugin_count();
            const ts_plugin **v = calloc((size_t)n + 1, sizeof *v);
            int m = 0;
            for (int i = 0; i < n; i++)
                if (ts_plugin_at(i)->kind == k && usable(i)) v[m++] = ts_plugin_at(i);
            for (int i = 1; i < m; i++)
                for (int j = i; j > 0 && strcmp(v[j - 1]->name, v[j]->name) > 0; j--) {
                    const ts_plugin *t = v[j]; v[j] = v[j - 1]; v[j - 1] = t;
                }
            if (md && m) printf("## %s\n\n", titles[k]);
            for (int i = 0; i < m; i++) { describe(v[i], md); if (!md) printf("\n"); }
            free(v);
        }
        return 0;
    }
    if (!name) {
        fprintf(stderr, "usage: tessera describe NAME | --all [--markdown] "
                "(tessera describe --help)\n");
        return 2;
    }
    int found = 0;
    for (int i = 0; i < ts_plugin_count(); i++)
        if (!strcmp(ts_plugin_at(i)->name, name) && usable(i)) {
            describe(ts_plugin_at(i), md);
            found = 1;
        }
    if (!found && !ts_plugin_find_any(name, &e)) return fail(&e);
    return 0;
}

/* An argument KEY=VALUE (no '/' before the '='), as opposed to a plugin file or name. */
static int is_key(const char *a)
{
    const char *eq = strchr(a, '=');
    return eq && eq > a && !memchr(a, '/', (size_t)(eq - a));
}

static int check_one(const ts_plugin *p, const char *file, char **keys, int nkeys)
{
    ts_err ce;
    int rc = ts_check_plugin_keys(p, keys, nkeys, stdout, &ce);
    printf("%s %s %s%s%s%s%s%s\n", rc ? "FAIL" : "ok  ", ts_kind_name(p->kind), p->name,
           file ? " (" : "", file ? file : "", file ? ")" : "", rc ? ": " : "", rc ? ce.msg : "");
    fflush(stdout);
    return rc != 0;
}

static int cmd_check(int argc, char **argv)
{
    char **keys = calloc((size_t)argc + 1, sizeof *keys);
    int nkeys = 0, nplug = 0;
    for (int i = 0; i < argc; i++) {
        if (is_key(argv[i])) keys[nkeys++] = argv[i];
        else nplug++;
    }
    if (nplug < 1) {
        fprintf(stderr, "usage: tessera check-plugin FILE.so|NAME ... [KEY=VALUE ...] "
                "(tessera check-plugin --help)\n");
        free(keys);
        return 2;
    }
    int failed = 0, total = 0, warned = 0;
    for (int i = 0; i < argc; i++) {
        if (is_key(argv[i])) continue;
        ts_err e;
        if (strchr(argv[i], '/')) {
            const ts_plugin *p;
            uint32_t k = 0;
            for (; (p = ts_plugin_open_file(argv[i], k, &e)); k++) {
                total++;
                failed += check_one(p, argv[i], keys, nkeys);
            }
            char end[TS_PATH_MAX + 32];
            snprintf(end, sizeof end, "%s: no entry %u", argv[i], k);
            if (k == 0 || strcmp(e.msg, end)) {   /* not the end of the file's entries */
                fprintf(stderr, "tessera: %s\n", e.msg);
                failed++;
                total++;
            }
        } else {
            if (!warned++) print_plugin_warnings();
            const ts_plugin *p = ts_plugin_find_any(argv[i], &e);
            total++;
            if (!p) { fprintf(stderr, "tessera: %s\n", e.msg); failed++; continue; }
            failed += check_one(p, NULL, keys, nkeys);
        }
    }
    printf("%d passed, %d failed\n", total - failed, failed);
    free(keys);
    return failed ? 1 : 0;
}

/* gnuplot (compare, plot) reads its labels as UTF-8 (`set encoding utf8`), and it warns on every
 * plot, which tests/plot_injection.sh counts as a failure, when the locale it inherits has
 * another character set: the C locale of a fresh container, where LANG is unset. tessera itself
 * never calls setlocale, so the variable reaches only the programs it starts. */
static void utf8_for_children(void)
{
    const char *v = getenv("LC_ALL");
    if (!v || !*v) v = getenv("LC_CTYPE");
    if (!v || !*v) v = getenv("LANG");
    if (!v || !*v || !strcmp(v, "C") || !strcmp(v, "POSIX")) setenv("LC_ALL", "C.UTF-8", 1);
}

int main(int argc, char **argv)
{
    utf8_for_children();
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        (argc == 2 && !strcmp(argv[1], "help"))) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* Past a file size limit (ulimit -f) a write fails with EFBIG and the message names the
     * file, instead of SIGXFSZ ending the process half-way through a line. */
    signal(SIGXFSZ, SIG_IGN);
    const char *cmd = argv[1];
    const command *c = find_command(cmd);
    int checked = c ? check_options(c, argc - 2, argv + 2) : -1;
    if (checked >= 0) return checked;
    if (!strcmp(cmd, "help")) {
        const command *h = argc > 2 ? find_command(argv[2]) : NULL;
        if (argc > 2 && !h) {
            fprintf(stderr, "tessera help: unknown command '%s'\n\n", argv[2]);
            usage(stderr);
            return 2;
        }
        if (h) fputs(h->help, stdout);
        else usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2, NULL);
    if (!strcmp(cmd, "resume")) {
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "usage: tessera resume RUN_DIR [SECTION.KEY=VALUE ...] [OPTIONS]; "
                    "tessera resume --help lists the options\n");
            return 2;
        }
        return cmd_run(argc - 3, argv + 3, argv[2]);
    }
    if (!strcmp(cmd, "plugins")) return cmd_plugins();
    if (!strcmp(cmd, "describe")) return cmd_describe(argc - 2, argv + 2);
    if (!strcmp(cmd, "check-plugin")) return cmd_check(argc - 2, argv + 2);
    if (!strcmp(cmd, "compare")) return ts_cmd_compare(argc - 2, argv + 2);
    if (!strcmp(cmd, "tune")) return ts_cmd_tune(argc - 2, argv + 2);
    if (!strcmp(cmd, "plot")) return ts_cmd_plot(argc - 2, argv + 2);
    if (!strcmp(cmd, "export")) return ts_cmd_export(argc - 2, argv + 2);
    if (!strcmp(cmd, "predict")) return ts_cmd_predict(argc - 2, argv + 2);
    if (!strcmp(cmd, "evaluate")) return ts_cmd_evaluate(argc - 2, argv + 2);
    if (!strcmp(cmd, "recommend")) return ts_cmd_recommend(argc - 2, argv + 2);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("tessera %s (plugin ABI %u)\n", PACKAGE_VERSION, TS_ABI);
        return 0;
    }
    fprintf(stderr, "tessera: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
