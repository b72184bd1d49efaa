/* runinfo.c — what the comparison's report reads about its runs and where they ran: the
 * figures of metrics.json, the resolved configuration (identity.txt, or config.ini) and what
 * differs between experiments, the commit of tessera's source tree and the machine.
 * What it is not: a writer of anything, nor the report's layout (report.c). Every reader here
 * gives up quietly (an empty result, "unknown") rather than failing a report. */
#include "config.h"
#include "report.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TS_SRCDIR
#define TS_SRCDIR ""
#endif

/* ---- figures -------------------------------------------------------------------------------- */
void ts_agg_init(ts_agg *a, int nsw, int seeds)
{
    memset(a, 0, sizeof *a);
    a->nsw = nsw;
    a->seeds = seeds;
}

void ts_agg_free(ts_agg *a)
{
    for (int i = 0; i < a->n; i++) free(a->s[i].v);
    free(a->s);
    a->s = NULL;
    a->n = a->cap = 0;
}

ts_series *ts_agg_find(const ts_agg *a, const char *key)
{
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->s[i].key, key)) return &a->s[i];
    return NULL;
}

/* The series of key, added (all NAN) when new; NULL when out of memory. */
static ts_series *agg_get(ts_agg *a, const char *key)
{
    ts_series *s = ts_agg_find(a, key);
    if (s) return s;
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        ts_series *t = realloc(a->s, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        a->s = t;
        a->cap = cap;
    }
    size_t nv = (size_t)a->nsw * (size_t)a->seeds;
    double *v = malloc(nv * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < nv; i++) v[i] = NAN;
    s = &a->s[a->n++];
    snprintf(s->key, sizeof s->key, "%s", key);
    s->v = v;
    return s;
}

/* metrics.json is flat, one `"key": value,` a line (ts_write_metrics_json); null is NAN. */
int ts_agg_read(ts_agg *a, const char *dir, int sw, int seed)
{
    char path[TS_PATH_MAX + 16], line[1024];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    FILE *f = ts_fopen_regular(path);
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        char *q1 = strchr(line, '"'), *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
        if (!q2) continue;
        *q2 = 0;
        char *colon = strchr(q2 + 1, ':');
        if (!colon) continue;
        double v = strncmp(colon + 2, "null", 4) ? strtod(colon + 1, NULL) : NAN;
        ts_series *s = agg_get(a, q1 + 1);
        if (!s) { fclose(f); return -1; }
        s->v[sw * a->seeds + seed - 1] = v;
    }
    fclose(f);
    return 0;
}

int ts_series_values(const ts_agg *a, const ts_series *s, int sw, double *v)
{
    int n = 0;
    for (int r = 0; s && r < a->seeds; r++)
        if (isfinite(s->v[sw * a->seeds + r])) v[n++] = s->v[sw * a->seeds + r];
    return n;
}

int ts_number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && !*end && isfinite(*v);
}

/* ---- the resolved configuration ------------------------------------------------------------- */
void ts_conf_free(ts_conf *c)
{
    for (int i = 0; i < c->n; i++) { free(c->kv[i].key); free(c->kv[i].val); }
    free(c->kv);
    memset(c, 0, sizeof *c);
}

static int conf_add(ts_conf *c, const char *key, size_t klen, const char *val, int *cap)
{
    if (c->n == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        ts_conf_kv *t = realloc(c->kv, (size_t)nc * sizeof *t);
        if (!t) return -1;
        c->kv = t;
        *cap = nc;
    }
    ts_conf_kv *kv = &c->kv[c->n];
    kv->key = strndup(key, klen);
    kv->val = strdup(val);
    if (!kv->key || !kv->val) { free(kv->key); free(kv->val); return -1; }
    c->n++;
    return 0;
}

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const ts_conf_kv *)a)->key, ((const ts_conf_kv *)b)->key);
}

/* identity.txt's "config section.key = value" lines (written sorted, rundir.c). */
static int conf_from_identity(const char *dir, ts_conf *c, int *cap)
{
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/identity.txt", dir);
    FILE *f = ts_fopen_regular(p);
    if (!f) return -1;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &lcap, f)) > 0) {
        if (strncmp(line, "config ", 7)) continue;
        line[strcspn(line, "\n")] = 0;
        char *eq = strstr(line + 7, " = ");
        if (eq) rc = conf_add(c, line + 7, (size_t)(eq - line - 7), eq + 3, cap);
    }
    free(line);
    fclose(f);
    return rc;
}

/* config.ini's keys, for a run without identity.txt (an older tessera); the keys that cannot
 * change a figure (ts_config_text mode 1 leaves them out of the identity) are left out here too. */
static int conf_from_ini(const char *dir, ts_conf *c, int *cap)
{
    static const char *const skip[] = {"experiment.source", "train.threads", "train.log_every",
                                       "train.checkpoint_every", "train.keep_checkpoints", NULL};
    char p[TS_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/config.ini", dir);
    FILE *f = ts_fopen_regular(p);   /* a regular file: never block on a FIFO */
    if (!f) return -1;
    fclose(f);
    ts_ini ini;
    ts_err e;
    if (ts_ini_load(&ini, p, &e)) return -1;
    int rc = 0;
    for (int s = 0; s < ini.nsec && !rc; s++)
        for (int k = 0; k < ini.sec[s].n && !rc; k++) {
            char key[3 * TS_NAME_MAX + 2];
            int kl = snprintf(key, sizeof key, "%s.%s", ini.sec[s].name, ini.sec[s].ent[k].key);
            int skipped = 0;
            for (int i = 0; skip[i]; i++) skipped |= !strcmp(key, skip[i]);
            if (!skipped) rc = conf_add(c, key, (size_t)kl, ini.sec[s].ent[k].value, cap);
        }
    ts_ini_free(&ini);
    return rc;
}

int ts_conf_read(const char *dir, ts_conf *c)
{
    int cap = 0;
    memset(c, 0, sizeof *c);
    int rc = conf_from_identity(dir, c, &cap);
    if (rc || !c->n) {
        ts_conf_free(c);
        cap = 0;
        rc = conf_from_ini(dir, c, &cap);
    }
    if (rc) { ts_conf_free(c); return -1; }
    if (c->n) qsort(c->kv, (size_t)c->n, sizeof *c->kv, cmp_kv);
    return 0;
}

const char *ts_conf_get(const ts_conf *c, const char *key)
{
    int lo = 0, hi = c ? c->n - 1 : -1;
    while (lo <= hi) {   /* the keys are sorted */
        int mid = (lo + hi) / 2, d = strcmp(c->kv[mid].key, key);
        if (!d) return c->kv[mid].val;
        if (d < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* ---- what differs ----------------------------------------------------------------------------- */
/* The section of "layer.q_conv.units": "layer.q_conv" (the key never holds a dot). */
static size_t section_len(const char *key)
{
    const char *dot = strrchr(key, '.');
    return dot ? (size_t)(dot - key) : 0;
}

/* 1 when configuration c has a key in the section of length sl that starts key. */
static int has_section(const ts_conf *c, const char *key, size_t sl)
{
    for (int i = 0; i < c->n; i++)
        if (section_len(c->kv[i].key) == sl && !strncmp(c->kv[i].key, key, sl)) return 1;
    return 0;
}

/* 1 when two values are the same: the same text, or the same number written two ways (1, 1.0). */
static int same_value(const char *a, const char *b)
{
    if (!strcmp(a, b)) return 1;
    char *ea, *eb;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    return ea != a && eb != b && !*ea && !*eb && x == y;
}

/* 1 when key differs among the configurations that were read (one lacking it differs too). */
static int key_differs(const ts_conf *const *c, int n, const char *key)
{
    const char *first = NULL;
    int seen = 0;
    for (int i = 0; i < n; i++) {
        if (!c[i] || !c[i]->n) continue;
        const char *v = ts_conf_get(c[i], key);
        if (!seen++) { first = v; continue; }
        if (!v != !first || (v && !same_value(v, first))) return 1;
    }
    return 0;
}

static int add_row(ts_diff_row **rows, int *nr, const char *key, size_t len, int section)
{
    for (int i = 0; i < *nr; i++)
        if ((*rows)[i].section == section && strlen((*rows)[i].key) == len &&
            !strncmp((*rows)[i].key, key, len))
            return 0;
    ts_diff_row *t = realloc(*rows, (size_t)(*nr + 1) * sizeof *t);
    if (!t) return -1;
    *rows = t;
    snprintf(t[*nr].key, sizeof t[*nr].key, "%.*s", (int)len, key);
    t[*nr].section = section;
    (*nr)++;
    return 0;
}

static int cmp_rows(const void *a, const void *b)
{
    return strcmp(((const ts_diff_row *)a)->key, ((const ts_diff_row *)b)->key);
}

int ts_conf_diff(const ts_conf *const *c, int n, const char *const *skip, ts_diff_row **rows)
{
    int nr = 0;
    *rows = NULL;
    for (int i = 0; i < n; i++) {
        for (int k = 0; c[i] && k < c[i]->n; k++) {
            const char *key = c[i]->kv[k].key;
            int skipped = 0;
            for (int s = 0; skip && skip[s]; s++) skipped |= !strcmp(key, skip[s]);
            if (skipped || !key_differs(c, n, key)) continue;
            /* a section some configurations lack is one row, not one per key */
            size_t sl = section_len(key);
            int whole = 0;
            for (int j = 0; j < n && !whole; j++)
                whole = c[j] && c[j]->n && !has_section(c[j], key, sl);
            if (add_row(rows, &nr, key, whole ? sl : strlen(key), whole)) {
                free(*rows);
                *rows = NULL;
                return -1;
            }
        }
    }
    if (nr) qsort(*rows, (size_t)nr, sizeof **rows, cmp_rows);
    return nr;
}

const char *ts_diff_cell(const ts_conf *c, const ts_diff_row *r)
{
    if (!c || !c->n) return NULL;
    if (!r->section) return ts_conf_get(c, r->key);
    char type[sizeof r->key + 8];
    snprintf(type, sizeof type, "%s.type", r->key);
    const char *t = ts_conf_get(c, type);
    return t ? t : has_section(c, r->key, strlen(r->key)) ? "present" : NULL;
}

/* ---- where it ran --------------------------------------------------------------------------- */
double ts_wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The first line of `git -C dir ARGS` when it exits 0, else "" (git missing, no checkout). */
static void git_line(const char *dir, const char *a1, const char *a2, const char *a3, char *buf,
                     size_t n)
{
    const char *const args[] = {"git", "-C", dir, a1, a2, a3, NULL};
    char out[4096];
    int st = ts_exec_capture(NULL, args, out, sizeof out);
    buf[0] = 0;
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) return;
    out[strcspn(out, "\n")] = 0;
    snprintf(buf, n, "%s", out);
}

void ts_source_commit(char *buf, size_t n)
{
    char head[128], dirty[128];
    const char *dir = getenv("TESSERA_SOURCE_DIR");   /* the tests point it elsewhere */
    if (!dir) dir = TS_SRCDIR;
    snprintf(buf, n, "unknown");
    if (!*dir) return;
    git_line(dir, "rev-parse", "--short", "HEAD", head, sizeof head);
    if (!head[0] || strspn(head, "0123456789abcdef") != strlen(head)) return;
    git_line(dir, "status", "--porcelain", "--untracked-files=no", dirty, sizeof dirty);
    snprintf(buf, n, "%s%s", head, dirty[0] ? " (with uncommitted changes)" : "");
}

/* The value of the first line of /proc/cpuinfo that starts with field, or "". */
static void cpu_field(const char *field, char *buf, size_t n)
{
    char line[512];
    buf[0] = 0;
    FILE *f = ts_fopen_regular("/proc/cpuinfo");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, field, strlen(field)) || !colon) continue;
        colon += 1 + strspn(colon + 1, " \t");
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, n, "%s", colon);
        break;
    }
    if (f) fclose(f);
}

/* MemTotal of /proc/meminfo in GiB, or -1. */
static double memory_gib(void)
{
    char line[256];
    double kib = -1;
    FILE *f = ts_fopen_regular("/proc/meminfo");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "MemTotal:", 9)) { kib = strtod(line + 9, NULL); break; }
    if (f) fclose(f);
    return kib > 0 ? kib / (1024.0 * 1024.0) : -1;
}

void ts_machine(char *buf, size_t n)
{
    char cpu[256];
    ts_sbuf b = {0};
    cpu_field("model name", cpu, sizeof cpu);
    if (!cpu[0]) cpu_field("Model", cpu, sizeof cpu);   /* some ARM kernels */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ts_sb_printf(&b, "%s", cpu[0] ? cpu : "CPU model unknown");
    if (cores > 0) ts_sb_printf(&b, " (%ld core%s)", cores, cores > 1 ? "s" : "");
    double mem = memory_gib();
    if (mem > 0) ts_sb_printf(&b, ", %.1f GiB memory", mem);
    struct utsname u;
    if (!uname(&u)) ts_sb_printf(&b, ", %s %s %s", u.sysname, u.release, u.machine);
    const char *blas = openblas_get_config();
    if (blas && *blas) {
        /* "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64": name and version */
        int words = 0;
        size_t len = 0;
        while (blas[len] && words < 2) {
            len += strcspn(blas + len, " ");
            words++;
            if (words < 2 && blas[len]) len++;
        }
        ts_sb_printf(&b, ", %.*s", (int)len, blas);
    }
    snprintf(buf, n, "%s", b.s);
    free(b.s);
}
