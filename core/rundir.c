/* rundir.c — the life of a results folder: what a folder holds (nothing, a finished run, an
 * unfinished one, or something that is not a run), the lock a writing run holds, what may be
 * replaced and when, and the run's identity (identity.txt: the resolved configuration, the data
 * files' contents and the plugins' versions and checksums) by which a finished run is reused.
 * It decides nothing about training and computes no figure. docs/ini.md ("The results folder")
 * states the rules this file implements. */
#define _GNU_SOURCE
#include "config.h"
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"     /* a build without configure's config.h (tests/fuzz) */
#endif

/* ---- names ----------------------------------------------------------------------------------- */
int ts_check_run_name(const char *name, const char *where, ts_err *e)
{
    size_t n = strlen(name);
    if (!n || n >= TS_NAME_MAX)
        return ts_fail(e, "%s: [experiment] name = '%s' must be 1 to %d bytes long (it names the "
                       "results folder results/NAME)", where, name, TS_NAME_MAX - 1);
    if (name[0] == '.')
        return ts_fail(e, "%s: [experiment] name = '%s' starts with a dot; '.', '..' and hidden "
                       "names would put results outside results/NAME or hide them: choose a name "
                       "that starts with a letter or digit", where, name);
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return ts_fail(e, "%s: [experiment] name = '%s' holds a %s; the name is one folder "
                           "name, so it may not contain '/' or control characters", where, name,
                           *p == '/' ? "'/'" : "control character");
    return 0;
}

/* ---- what a folder holds ----------------------------------------------------------------------- */
/* Files tessera writes into a run folder; only these are ever removed (--overwrite). Reports of
 * plugins are matched by prefix or suffix below. */
static int run_file(const char *f)
{
    static const char *const exact[] = {
        "config.ini", "identity.txt", "data_state.txt", "train.csv", "eval.csv", "metrics.json", "params.bin",
        "predictions.csv", "gates.csv", "item_vectors.txt", "item_vectors.bin",
        "checkpoint.tsck", "checkpoint.prev.tsck", "checkpoint-best.tsck", "checkpoint.tmp",
        "checkpoint.new.tsck", "checkpoint-best.tmp", NULL};
    for (int i = 0; exact[i]; i++)
        if (!strcmp(f, exact[i])) return 1;
    if (!strncmp(f, "pretrained_", 11) && strstr(f, ".csv")) return 1;
    /* a run with tables split across ranks (docs/scale.md): every rank's params and checkpoints */
    const char *rk = strstr(f, ".rank");
    if (rk && (!strncmp(f, "params.rank", 11) || !strncmp(f, "checkpoint", 10))) {
        int a, b, len = 0;
        if (sscanf(rk, ".rank%d-of-%d%n", &a, &b, &len) == 2 && len > 0 &&
            (!strcmp(rk + len, ".bin") || !strcmp(rk + len, ".tsck") || !strcmp(rk + len, ".tmp")))
            return 1;
    }
    /* ts_write_atomic's temporary files: NAME.tmpPID */
    const char *t = strstr(f, ".tmp");
    if (t && t[4] && strspn(t + 4, "0123456789") == strlen(t + 4)) return 1;
    return 0;
}

/* Files that are part of a folder but never make it a run nor block one. */
static int neutral_file(const char *f)
{
    return !strcmp(f, ".") || !strcmp(f, "..") || !strcmp(f, ".lock") || !strcmp(f, "log.txt");
}

ts_dir_state ts_rundir_state(const char *dir, char *other, size_t n)
{
    DIR *d = opendir(dir);
    if (!d) return TS_DIR_EMPTY;
    int run = 0, metrics = 0, foreign = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *f = de->d_name;
        if (neutral_file(f)) continue;
        if (!strcmp(f, "config.ini") || !strcmp(f, "identity.txt") ||
            !strncmp(f, "checkpoint", 10) || !strcmp(f, "train.csv"))
            run = 1;
        if (!strcmp(f, "metrics.json")) metrics = run = 1;
        if (!run_file(f) && !foreign) {
            foreign = 1;
            if (other) snprintf(other, n, "%s", f);
        }
    }
    closedir(d);
    if (!run) return foreign ? TS_DIR_FOREIGN : TS_DIR_EMPTY;
    return metrics ? TS_DIR_FINISHED : TS_DIR_UNFINISHED;
}

/* Removes the files a run wrote (run_file), nothing else; log.txt stays (compare appends it). */
int ts_rundir_clear(const char *dir, ts_err *e)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    char p[TS_PATH_MAX + 300];
    int rc = 0;
    while ((de = readdir(d)) && !rc) {
        if (!run_file(de->d_name)) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (unlink(p) && errno != ENOENT)
            rc = ts_fail(e, "%s: cannot remove it to replace the run: %s", p, strerror(errno));
    }
    closedir(d);
    return rc;
}

/* ---- the lock ------------------------------------------------------------------------------------ */
int ts_rundir_lock(const char *dir, int *fd_out, ts_err *e)
{
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return ts_fail(e, "%s is a file, not a folder: give --results a folder (a new one, or "
                       "the folder of an earlier run)", dir);
    if (ts_mkdirs(dir, e)) return -1;
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/.lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return ts_fail(e, "%s: cannot create the lock file: %s; check that the folder is "
                       "writable", p, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int er = errno;
        char pid[32] = "";
        ssize_t k = pread(fd, pid, sizeof pid - 1, 0);
        pid[k > 0 ? k : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (er == EWOULDBLOCK)
            return ts_fail(e, "%s is being written by another tessera run%s%s%s; wait for it to "
                           "end, or give this run another --results folder", dir,
                           *pid ? " (process " : "", pid, *pid ? ")" : "");
        return ts_fail(e, "%s: cannot lock: %s", p, strerror(er));
    }
    char buf[32];
    int k = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)k, 0) != k) { /* best effort */ }
    *fd_out = fd;
    return 0;
}

void ts_rundir_unlock(int fd)
{
    if (fd < 0) return;
    if (ftruncate(fd, 0)) { /* the pid is a hint only */ }
    close(fd);   /* releases the flock */
}

void ts_rundir_release(ts_exp *x)
{
    if (x->lock_fd < 0) return;
    const char *dir = x->ctx.results_dir;
    /* a run refused before it wrote anything leaves no empty folder it made itself */
    if (x->dir_created) {
        char lock[TS_PATH_MAX + 16];
        snprintf(lock, sizeof lock, "%s/.lock", dir);
        DIR *d = opendir(dir);
        int only_lock = d != NULL;
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, ".lock"))
                only_lock = 0;
        if (d) closedir(d);
        if (only_lock && !unlink(lock)) rmdir(dir);
    }
    ts_rundir_unlock(x->lock_fd);
    x->lock_fd = -1;
}

/* ---- identity ------------------------------------------------------------------------------------ */
typedef struct sbuf { char *s; size_t n, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap ? 2 * b->cap : 4096) + (size_t)k;
        char *m = realloc(b->s, cap);
        if (!m) { b->oom = 1; return; }
        b->s = m;
        b->cap = cap;
    }
}

/* FNV-1a over a file's bytes; -1 when it cannot be read. */
static int hash_file(const char *path, uint64_t *h, long long *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) { close(fd); return -1; }
    static unsigned char buf[1 << 16];
    uint64_t v = 0xcbf29ce484222325ull;
    long long total = 0;
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { close(fd); return -1; }
        if (k == 0) break;
        for (ssize_t i = 0; i < k; i++) v = (v ^ buf[i]) * 0x100000001b3ull;
        total += k;
    }
    close(fd);
    *h = v;
    *size = total;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "data fnv:H SIZE PATH" for a file, or for each regular file of a folder (sorted). */
static void add_data(sbuf *b, const char *path)
{
    struct stat sb;
    if (stat(path, &sb)) return;
    uint64_t h;
    long long size;
    if (S_ISREG(sb.st_mode)) {
        if (!hash_file(path, &h, &size))
            sb_add(b, "data fnv:%016llx %lld %s\n", (unsigned long long)h, size, path);
        return;
    }
    if (!S_ISDIR(sb.st_mode)) return;
    DIR *d = opendir(path);
    if (!d) return;
    char **names = NULL;
    int nn = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (nn == cap) {
            char **m = realloc(names, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *m);
            if (!m) break;
            names = m;
        }
        if (!(names[nn] = strdup(de->d_name))) break;
        nn++;
    }
    closedir(d);
    if (nn) qsort(names, (size_t)nn, sizeof *names, cmp_name);
    for (int i = 0; i < nn; i++) {
        char p[TS_PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && !hash_file(p, &h, &size))
            sb_add(b, "data fnv:%016llx %lld %s\n", (unsigned long long)h, size, p);
        free(names[i]);
    }
    free(names);
}

static void add_plugin(sbuf *b, const ts_plugin *p)
{
    if (!p) return;
    const char *path = ts_plugin_path(p);
    uint64_t h = 0;
    long long size = 0;
    if (!path || hash_file(path, &h, &size)) h = 0;
    sb_add(b, "plugin %s %s %s fnv:%016llx %s\n", ts_kind_name(p->kind), p->name,
           p->version ? p->version : "-", (unsigned long long)h, path ? path : "?");
}

/* The library's own file, so a rebuilt training loop is a different identity too. */
static void add_library(sbuf *b)
{
    Dl_info info;
    uint64_t h = 0;
    long long size = 0;
    if (dladdr((void *)ts_rundir_identity, &info) && info.dli_fname &&
        !hash_file(info.dli_fname, &h, &size))
        sb_add(b, "tessera %s abi %u fnv:%016llx %s\n", PACKAGE_VERSION, TS_ABI,
               (unsigned long long)h, info.dli_fname);
    else
        sb_add(b, "tessera %s abi %u\n", PACKAGE_VERSION, TS_ABI);
}

/* The part of a line that identifies (paths are left out: a moved file is the same file). */
static size_t ident_len(const char *line, size_t len)
{
    if (!strncmp(line, "config ", 7)) return len;
    /* data fnv:H SIZE PATH / plugin KIND NAME VERSION fnv:H PATH / tessera V abi N fnv:H PATH */
    int fields = !strncmp(line, "data ", 5) ? 3 : !strncmp(line, "plugin ", 7) ? 5 : 5;
    size_t i = 0;
    for (int f = 0; i < len && f < fields; f++) {
        while (i < len && line[i] != ' ') i++;
        if (f < fields - 1) i++;
    }
    return i;
}

char *ts_rundir_identity(const ts_exp *x, uint64_t *key)
{
    sbuf b = {0};
    sb_add(&b, "# What this run was computed from. `tessera run --if-changed` (and so `tessera "
               "compare`) reuses\n# a finished run only when the key is unchanged; the key "
               "hashes every line below but\n# the paths (docs/ini.md, \"The results folder\").\n");
    add_library(&b);
    /* every plugin the experiment uses, once, in the order of first use */
    int np = 0, cap = 2 + x->nnodes + 2 * x->nheads;
    const ts_plugin **seen = calloc((size_t)cap, sizeof *seen);
    if (!seen) { free(b.s); return NULL; }
    seen[np++] = x->data_pl;
    seen[np++] = x->opt_pl;
    for (int i = 0; i < x->nnodes; i++) seen[np++] = x->nodes[i].pl;
    for (int i = 0; i < x->nheads; i++) {
        seen[np++] = x->heads[i].pl;
        seen[np++] = x->heads[i].loss_pl;
    }
    for (int i = 0; i < np; i++) {
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) dup = seen[j] == seen[i];
        if (!dup) add_plugin(&b, seen[i]);
    }
    free(seen);
    for (int i = 0; i < x->ctx.ndata; i++) add_data(&b, x->ctx.data_files[i]);
    size_t nc;
    char *conf = ts_config_text(x, 1, &nc);
    for (char *s = conf, *t; s && *s; s = t + 1) {
        if (!(t = strchr(s, '\n'))) break;
        sb_add(&b, "config %.*s\n", (int)(t - s), s);
    }
    free(conf);
    if (b.oom || !conf) { free(b.s); return NULL; }
    uint64_t h = 0xcbf29ce484222325ull;
    for (char *s = b.s, *t; *s; s = t + 1) {
        t = strchr(s, '\n');
        size_t len = (size_t)(t - s);
        if (*s != '#') {
            size_t k = ident_len(s, len);
            for (size_t i = 0; i < k; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
            h = (h ^ '\n') * 0x100000001b3ull;
        }
    }
    *key = h;
    sb_add(&b, "key %016llx\n", (unsigned long long)h);
    if (b.oom) { free(b.s); return NULL; }
    return b.s;
}

int ts_rundir_read_key(const char *dir, uint64_t *key, char **text)
{
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/identity.txt", dir);
    unsigned char *buf;
    size_t n;
    ts_err e;
    if (ts_read_file(p, &buf, &n, &e)) return -1;
    char *s = realloc(buf, n + 1);
    if (!s) { free(buf); return -1; }
    s[n] = 0;
    const char *k = strstr(s, "\nkey ");
    unsigned long long v;
    if (!k || sscanf(k + 5, "%16llx", &v) != 1) { free(s); return -1; }
    *key = v;
    if (text) *text = s;
    else free(s);
    return 0;
}

/* Lines of a (without paths) that b lacks, as "what changed", up to n bytes. */
void ts_rundir_diff(const char *old_text, const char *new_text, char *out, size_t n)
{
    size_t k = 0;
    int shown = 0, more = 0;
    out[0] = 0;
    for (const char *s = new_text, *t; *s; s = t + 1) {
        if (!(t = strchr(s, '\n'))) break;
        size_t len = (size_t)(t - s);
        if (*s == '#' || !strncmp(s, "key ", 4)) continue;
        size_t il = ident_len(s, len);
        int found = 0;
        for (const char *u = old_text, *v; *u && !found; u = v + 1) {
            if (!(v = strchr(u, '\n'))) break;
            size_t ul = ident_len(u, (size_t)(v - u));
            found = ul == il && !strncmp(u, s, il);
        }
        if (found) continue;
        if (shown == 3) { more++; continue; }
        /* name what changed: "config train.lr = 0.01" -> "train.lr = 0.01" */
        const char *what = !strncmp(s, "config ", 7) ? s + 7 : s;
        int w = snprintf(out + k, n - k, "%s%.*s", shown ? "; " : "", (int)(t - what), what);
        if (w < 0 || (size_t)w >= n - k) break;
        k += (size_t)w;
        shown++;
    }
    if (more && k < n) snprintf(out + k, n - k, "; and %d more", more);
    if (!shown) snprintf(out, n, "the identity file is from another tessera");
}

/* ---- the rules (docs/ini.md, "The results folder") ------------------------------------------ */
int ts_rundir_begin(ts_exp *x, ts_err *e)
{
    const char *dir = x->ctx.results_dir;
    const ts_run_opts *o = &x->opts;
    char other[300] = "";
    /* Look before creating anything: a folder of someone else's files is never written into. */
    if (ts_rundir_state(dir, other, sizeof other) == TS_DIR_FOREIGN)
        return ts_fail(e, "%s holds files tessera did not write (%s, ...), so it is not a results "
                       "folder; give --results a new or empty folder (a run never writes into or "
                       "deletes from other folders)", dir, other);
    x->dir_created = access(dir, F_OK) != 0;
    if (ts_rundir_lock(dir, &x->lock_fd, e)) return -1;
    ts_dir_state st = ts_rundir_state(dir, other, sizeof other);
    x->dir_state = st;
    if (st == TS_DIR_FOREIGN)
        return ts_fail(e, "%s holds files tessera did not write (%s, ...); give --results a new "
                       "or empty folder", dir, other);
    if (o->overwrite || o->if_changed || st == TS_DIR_EMPTY) return 0;
    char ck[TS_PATH_MAX + 32];
    snprintf(ck, sizeof ck, "%s/checkpoint.tsck", dir);
    int has_ckpt = access(ck, F_OK) == 0;
    if (!has_ckpt) {              /* a run that split its tables: every rank's own files */
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && !has_ckpt && (de = readdir(d)))
            has_ckpt = !strncmp(de->d_name, "checkpoint.rank0-of-", 20);
        if (d) closedir(d);
    }
    if (!o->resume) {
        if (st == TS_DIR_FINISHED)
            return ts_fail(e, "%s already holds a finished run (metrics.json); it is kept as it "
                           "is. Give this run another folder (--results DIR), or pass --overwrite "
                           "to replace it", dir);
        return ts_fail(e, "%s holds an unfinished run (no metrics.json yet); it is kept as it is. "
                       "Continue it with --resume (or `tessera resume %s`), give this run another "
                       "folder (--results DIR), or pass --overwrite to start again", dir, dir);
    }
    if (st == TS_DIR_FINISHED && !has_ckpt)
        return ts_fail(e, "%s holds a finished run: there is nothing to resume, and its results "
                       "stay as they are. To train it longer, run it with [train] "
                       "keep_checkpoints = true next time; to train again, pass --overwrite or "
                       "give another --results folder", dir);
    return 0;
}

/* The lines of an identity text that start with prefix, in order, without the paths. */
static int same_lines(const char *a, const char *b, const char *prefix)
{
    size_t pl = strlen(prefix);
    const char *s = a, *t = b;
    for (;;) {
        while (*s && strncmp(s, prefix, pl)) { s = strchr(s, '\n'); s = s ? s + 1 : ""; }
        while (*t && strncmp(t, prefix, pl)) { t = strchr(t, '\n'); t = t ? t + 1 : ""; }
        if (!*s || !*t) return !*s && !*t;
        const char *se = strchr(s, '\n'), *te = strchr(t, '\n');
        size_t sl = ident_len(s, se ? (size_t)(se - s) : strlen(s));
        size_t tl = ident_len(t, te ? (size_t)(te - t) : strlen(t));
        if (sl != tl || strncmp(s, t, sl)) return 0;
        s = se ? se + 1 : "";
        t = te ? te + 1 : "";
    }
}

int ts_rundir_prepare(ts_exp *x, FILE *log, int *resume, ts_err *e)
{
    const char *dir = x->ctx.results_dir;
    const ts_run_opts *o = &x->opts;
    uint64_t key, old_key;
    char *text = ts_rundir_identity(x, &key), *old = NULL;
    if (!text) return ts_fail(e, "out of memory");
    int have_old = ts_rundir_read_key(dir, &old_key, &old) == 0;
    int st = x->dir_state, rc = 0;
    char diff[512] = "";
    if (have_old) ts_rundir_diff(old, text, diff, sizeof diff);
    *resume = 0;
    if (o->overwrite) {
        if (st != TS_DIR_EMPTY && log)
            fprintf(log, "%s  --overwrite: replacing the %s run in %s\n", x->name,
                    st == TS_DIR_FINISHED ? "finished" : "unfinished", dir);
        rc = st == TS_DIR_EMPTY ? 0 : ts_rundir_clear(dir, e);
    } else if (o->if_changed) {
        if (st == TS_DIR_FINISHED && have_old && old_key == key) {
            x->up_to_date = 1;
            if (log) fprintf(log, "%s  up to date: %s holds a finished run of the same identity "
                             "(identity.txt); nothing to do\n", x->name, dir);
        } else if (st == TS_DIR_UNFINISHED && (!have_old || old_key == key)) {
            *resume = 1;
        } else if (st != TS_DIR_EMPTY) {
            if (log)
                fprintf(log, "%s  replacing the %s run in %s: %s\n", x->name,
                        st == TS_DIR_FINISHED ? "finished" : "unfinished", dir,
                        have_old ? diff : "it has no identity.txt (made by an older tessera)");
            rc = ts_rundir_clear(dir, e);
        }
    } else if (o->resume) {
        *resume = 1;             /* an empty folder: "no checkpoint, starting from the beginning" */
        if (have_old && !same_lines(old, text, "data ")) {
            rc = ts_fail(e, "cannot resume %s: its data changed since the run started (%s). "
                         "Resuming would train one run on two datasets; start again with "
                         "--overwrite, or restore the data", dir, diff);
        } else if (have_old && log && (!same_lines(old, text, "plugin ") ||
                                       !same_lines(old, text, "tessera "))) {
            fprintf(log, "%s  warning: tessera or a plugin changed since this run started (%s); "
                    "the resumed run is not bit-identical to an uninterrupted one\n", x->name, diff);
        }
    }
    free(x->identity);
    x->identity = text;            /* written by ts_rundir_write_identity once the run starts */
    free(old);
    return rc;
}

int ts_rundir_write_identity(ts_exp *x, ts_err *e)
{
    if (!x->identity) return 0;
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/identity.txt", x->ctx.results_dir);
    return ts_write_atomic(p, x->identity, strlen(x->identity), e);
}
