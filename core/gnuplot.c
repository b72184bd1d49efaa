/* gnuplot.c — drawing a figure with gnuplot, as a PNG and an SVG beside it, without any
 * user-controlled string read as code; and running a helper program (gnuplot, git) without a
 * shell. What each figure shows is plots.c's; this file only knows how to hand a script over.
 *
 * No user-controlled string (an experiment or task name, a run folder, --out, a data path, a
 * sweep value) is ever interpreted by gnuplot or by a shell (issue 12):
 * - gnuplot runs without a shell: fork, chdir into a private folder, execvp("gnuplot",
 *   {"gnuplot", "plot.gp"}); its output comes back through a pipe that tessera only reads
 *   (so no SIGPIPE can reach tessera), and `ts_have_gnuplot` execs `gnuplot --version` the same way;
 * - the private folder is made with mkdtemp beside the output; the data go into files of fixed
 *   names there (d0.dat, d1.dat, ...), gnuplot draws out.png and out.svg there, and C rename()s
 *   them to the user's paths: no path ever appears in a script;
 * - every text (title, key entry, axis and tic label) is written by ts_gp_str as a gnuplot
 *   string expression of single-quoted pieces that hold no quote, joined by the variable TS_Q,
 *   which holds one quote: Bob's -> 'Bob'.TS_Q.'s'. Read in gnuplot 5.4 (scanner.c, command.c)
 *   and measured: inside single quotes there is no backquote command substitution (there is
 *   inside double quotes) and no backslash escape; @macros are not expanded while the macro pass
 *   counts an odd number of ' before them (it toggles on every ' and ignores nesting, so a " that
 *   holds a ' would confuse it: hence a variable, not "'"); and doubling a quote ('') is not
 *   enough: a string that starts with a quote, or holds two in a row, falls apart into several
 *   tokens. Explicit tic labels are format strings (`%s` in one prints a number), so ts_gp_str
 *   doubles `%` in them. Control characters would end the command line, and bytes that are not
 *   UTF-8 make gnuplot re-read the whole string as Latin-1, so both are replaced. The terminals
 *   are `noenhanced`: _ ^ { } @ & are shown as themselves.
 * The script draws its body twice: on pngcairo into out.png, then, after `reset`, on svg into
 * out.svg (the vector figure a paper takes). */
#include "config.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a growing string ----------------------------------------------------------------------- */
void ts_sb_printf(ts_sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && (size_t)k < b->cap - b->n) { b->n += (size_t)k; return; }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            fprintf(stderr, "tessera: out of memory while writing a report\n");
            exit(1);
        }
        b->s = s;
        b->cap = cap;
    }
}

void ts_sb_putn(ts_sbuf *b, const char *p, size_t n)
{
    ts_sb_printf(b, "%.*s", (int)n, p);
}

/* ---- helper programs ------------------------------------------------------------------------ */
int ts_exec_capture(const char *dir, const char *const *args, char *out, size_t cap)
{
    int fd[2];
    out[0] = 0;
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int er = errno;
        close(fd[0]);
        close(fd[1]);
        errno = er;
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec (BLAS threads may exist). */
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        if (null > 2) close(null);
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        if (fd[1] > 2) close(fd[1]);
        if (dir && chdir(dir)) {
            static const char nodir[] = "cannot enter the temporary folder\n";
            ssize_t k = write(2, nodir, sizeof nodir - 1);
            (void)k;
            _exit(126);
        }
        execvp(args[0], (char *const *)args);
        static const char nope[] = "cannot run it: not found in PATH or not executable\n";
        ssize_t k = write(2, nope, sizeof nope - 1);
        (void)k;
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    char buf[4096];
    for (;;) {
        ssize_t k = read(fd[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        size_t take = (size_t)k < cap - 1 - n ? (size_t)k : cap - 1 - n;
        memcpy(out + n, buf, take);
        n += take;
    }
    out[n] = 0;
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return st;
}

int ts_have_gnuplot(void)
{
    char msg[256];
    const char *const args[] = {"gnuplot", "--version", NULL};
    int st = ts_exec_capture(NULL, args, msg, sizeof msg);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ---- text in a script ----------------------------------------------------------------------- */
/* The length of the valid UTF-8 sequence at p (1 to 4), or 0 when the bytes there are not
 * one (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF) or encode a
 * C1 control character (U+0080 to U+009F). */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    unsigned cp;
    if (p[0] < 0x80) return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) { n = 2; cp = p[0] & 0x1fu; }
    else if (p[0] >= 0xe0 && p[0] <= 0xef) { n = 3; cp = p[0] & 0x0fu; }
    else if (p[0] >= 0xf0 && p[0] <= 0xf4) { n = 4; cp = p[0] & 0x07u; }
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
        return 0;
    return n;
}

/* Single-quoted pieces joined by .TS_Q. where s has a quote; tab, newline and carriage return
 * shown as a space; other control characters, DEL and bytes that are not UTF-8 shown as U+FFFD
 * (the replacement character); in a tic label (tic = 1) % doubled. */
void ts_gp_str(ts_sbuf *b, const char *s, int tic)
{
    const unsigned char *p = (const unsigned char *)s;
    ts_sb_putn(b, "'", 1);
    while (*p) {
        size_t n = utf8_len(p);
        if (*p == '\'') ts_sb_putn(b, "'.TS_Q.'", 8);
        else if (*p == '%' && tic) ts_sb_putn(b, "%%", 2);
        else if (*p == '\t' || *p == '\n' || *p == '\r') ts_sb_putn(b, " ", 1);
        else if (*p < 0x20 || *p == 0x7f || !n) ts_sb_putn(b, "\xef\xbf\xbd", 3);
        else { ts_sb_putn(b, (const char *)p, n); p += n; continue; }
        p++;
    }
    ts_sb_putn(b, "'", 1);
}

/* bytes outside [A-Za-z0-9._-] become '_' ('@' too, as report names always had:
 * bar_1_test.next.recall_50.png). When any other byte was replaced, or the text was cut to fit,
 * "-" and 8 hex digits of a hash of the whole text follow, so "a b" and "a_b" stay two files.
 * The name is used by rename() and in the report's markdown links, never in a script. */
void ts_file_part(char *buf, size_t n, const char *text)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    size_t k = 0, room = n > 10 ? n - 10 : 1;
    int changed = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h = (h ^ *p) * 16777619u;
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-';
        if (!ok && *p != '@') changed = 1;
        if (k + 1 < room) buf[k++] = ok ? (char)*p : '_';
        else changed = 1;
    }
    buf[k] = 0;
    if (changed) snprintf(buf + k, n - k, "-%08x", (unsigned)h);
}

void ts_svg_path(char *buf, size_t n, const char *png)
{
    size_t len = strlen(png);
    if (len > 4 && !strcmp(png + len - 4, ".png")) snprintf(buf, n, "%.*s.svg", (int)(len - 4), png);
    else snprintf(buf, n, "%s.svg", png);
}

/* ---- the private folder --------------------------------------------------------------------- */
/* A file of the private folder: "d3.dat", "plot.gp", "out.png". */
static void gp_path(char *buf, size_t n, const ts_gp *g, const char *name)
{
    snprintf(buf, n, "%s/%s", g->dir, name);
}

void ts_gp_cleanup(ts_gp *g)
{
    static const char *const fixed[] = {"plot.gp", "out.png", "out.svg", NULL};
    char p[TS_PATH_MAX + 32], name[32];
    for (int i = 0; i < g->ndata; i++) {
        snprintf(name, sizeof name, "d%d.dat", i);
        gp_path(p, sizeof p, g, name);
        unlink(p);
    }
    for (int i = 0; fixed[i]; i++) {
        gp_path(p, sizeof p, g, fixed[i]);
        unlink(p);
    }
    rmdir(g->dir);
    free(g->s.s);
    g->s.s = NULL;
}

int ts_gp_begin(ts_gp *g, const char *who, const char *png, int w, int h)
{
    memset(g, 0, sizeof *g);
    g->out = png;
    g->who = who;
    g->w = w;
    g->h = h;
    size_t len = strlen(png);
    const char *slash = strrchr(png, '/');
    if (!len || png[len - 1] == '/') {
        fprintf(stderr, "%s: the plot's path '%s' names a folder; give a file name such as "
                "curves.png\n", who, png);
        return -1;
    }
    int room = slash ? snprintf(g->dir, sizeof g->dir, "%.*s/.tessera-plot-XXXXXX",
                                (int)(slash - png), png)
                     : snprintf(g->dir, sizeof g->dir, ".tessera-plot-XXXXXX");
    if (room >= (int)sizeof g->dir || len + 8 >= TS_PATH_MAX) {
        fprintf(stderr, "%s: the plot's path '%s' is too long\n", who, png);
        return -1;
    }
    if (!mkdtemp(g->dir)) {
        fprintf(stderr, "%s: cannot make a temporary folder beside %s to draw it in: %s; give "
                "a path in an existing folder you can write\n", who, png, strerror(errno));
        return -1;
    }
    return 0;
}

int ts_gp_data(ts_gp *g, const char *text, char *name, size_t n)
{
    char p[TS_PATH_MAX + 32];
    snprintf(name, n, "d%d.dat", g->ndata);
    gp_path(p, sizeof p, g, name);
    FILE *f = fopen(p, "wx");
    if (!f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", g->who, p, strerror(errno));
        return -1;
    }
    g->ndata++;
    size_t k = strlen(text);
    int bad = fwrite(text, 1, k, f) != k;
    if (fclose(f) || bad) {
        fprintf(stderr, "%s: cannot write %s: %s\n", g->who, p, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- drawing -------------------------------------------------------------------------------- */
/* plot.gp: the body on pngcairo into out.png, then on svg into out.svg. */
static int write_script(const ts_gp *g, const char *path)
{
    static const char *const term[2][2] = {
        {"pngcairo noenhanced size %d,%d font 'sans,10'", "out.png"},
        {"svg noenhanced size %d,%d font 'sans,10' background '#ffffff'", "out.svg"}};
    FILE *f = fopen(path, "wx");
    if (!f) return -1;
    for (int t = 0; t < 2; t++) {
        if (t) fputs("reset\n", f);
        fputs("TS_Q = \"'\"\nset encoding utf8\nset terminal ", f);
        fprintf(f, term[t][0], g->w, g->h);
        fprintf(f, "\nset output '%s'\n%s", term[t][1], g->s.s ? g->s.s : "");
        fputs("unset output\n", f);
    }
    int bad = ferror(f);
    return fclose(f) || bad ? -1 : 0;
}

/* Moves the private folder's file name to dest; a message and -1 when it cannot. */
static int move_out(const ts_gp *g, const char *name, const char *dest)
{
    char p[TS_PATH_MAX + 32];
    gp_path(p, sizeof p, g, name);
    if (!rename(p, dest)) return 0;
    fprintf(stderr, "%s: cannot move the plot to %s: %s\n", g->who, dest, strerror(errno));
    return -1;
}

int ts_gp_finish(ts_gp *g)
{
    char script[TS_PATH_MAX + 32], png[TS_PATH_MAX + 32], svg[TS_PATH_MAX + 32], msg[4096];
    gp_path(script, sizeof script, g, "plot.gp");
    if (write_script(g, script)) {
        fprintf(stderr, "%s: cannot write %s: %s\n", g->who, script, strerror(errno));
        ts_gp_cleanup(g);
        return -1;
    }
    const char *const args[] = {"gnuplot", "plot.gp", NULL};
    int st = ts_exec_capture(g->dir, args, msg, sizeof msg);
    struct stat sb;
    gp_path(png, sizeof png, g, "out.png");
    gp_path(svg, sizeof svg, g, "out.svg");
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) || stat(png, &sb) || stat(svg, &sb)) {
        if (st == -1) snprintf(msg, sizeof msg, "cannot start it: %s\n", strerror(errno));
        fprintf(stderr, "%s: gnuplot could not draw %s; it said:\n%s%sthe script and its data "
                "are kept in %s (gnuplot 5 with the pngcairo terminal is needed: apt-get install "
                "gnuplot-nox)\n", g->who, g->out, msg,
                msg[0] && msg[strlen(msg) - 1] != '\n' ? "\n" : "", g->dir);
        free(g->s.s);
        g->s.s = NULL;
        return -1;
    }
    if (msg[0])   /* warnings of a plot that was drawn */
        fprintf(stderr, "%s: gnuplot, drawing %s:\n%s%s", g->who, g->out, msg,
                msg[strlen(msg) - 1] != '\n' ? "\n" : "");
    char dest[TS_PATH_MAX + 8];
    ts_svg_path(dest, sizeof dest, g->out);
    int rc = move_out(g, "out.png", g->out) || move_out(g, "out.svg", dest) ? -1 : 0;
    ts_gp_cleanup(g);
    return rc;
}
