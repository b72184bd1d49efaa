/* plugin.c — finding and opening plugin files: the search path, dlopen, the versioned
 * descriptor and ops-table checks, and the problems of a plugin path (files that are not
 * plugins, plugins of another ABI, a name defined twice in one folder, a name hidden by an
 * earlier folder), kept as reasons and warnings instead of stopping every command.
 * It does not run plugins (graph.c and check.c do) and it prints nothing: the program prints
 * the warnings (ts_plugin_warning). The registry is process-wide state: the one exception to
 * "no globals", because dlopen'ed code is process-wide too. */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TS_PLUGINDIR
#define TS_PLUGINDIR "/usr/local/lib/tessera"
#endif
#ifndef TS_BUILDDIR
#define TS_BUILDDIR ""
#endif

/* Fields a descriptor must have for this host to read it: everything up to `ops`. */
#define TS_PLUGIN_MIN_SIZE (offsetof(ts_plugin, ops) + sizeof(void *))

/* ABI 3's first layout of each ops table: every field above its "appended" line. A table of
 * fewer bytes was not compiled against an ABI 3 tessera.h. */
#define TS_END(type, f) (offsetof(type, f) + sizeof(((type *)0)->f))
static size_t ops_min_size(ts_kind k)
{
    switch (k) {
    case TS_LAYER: return TS_END(ts_layer_ops, check_keys);
    case TS_LOSS: return TS_END(ts_loss_ops, destroy);
    case TS_OPTIMIZER: return TS_END(ts_optim_ops, destroy);
    case TS_HEAD: return TS_END(ts_head_ops, predictions);
    case TS_DATASET: return TS_END(ts_dataset_ops, close);
    }
    return 0;
}

typedef struct reg_entry {
    const ts_plugin *p;
    char path[TS_PATH_MAX];
    int dir_rank;             /* position of its folder in the search path; -1: a `plugin =` path */
    int hidden_by;            /* an entry of an earlier folder with the same kind and name, or -1 */
    int twin;                 /* an entry of the same folder with the same kind and name, or -1 */
} reg_entry;

typedef struct skipped {
    char *path;               /* "DIR/file.so" or "DIR/file.so (entry 2)" */
    char *reason;             /* why it is not used, with what to do */
} skipped;

static struct {
    reg_entry *e;
    int n, cap;
    skipped *s;
    int ns, scap;
    char **warn;              /* one sentence per problem of the plugin path */
    int nw, wcap;
    int scanned;
} reg;

const char *ts_kind_name(ts_kind k)
{
    static const char *names[] = {"?", "layer", "loss", "optimizer", "head", "dataset"};
    return k >= TS_LAYER && k <= TS_DATASET ? names[k] : "?";
}

static int in_build_tree(void)
{
    if (!*TS_BUILDDIR) return 0;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = 0;
    size_t b = strlen(TS_BUILDDIR);
    return !strncmp(exe, TS_BUILDDIR, b) && exe[b] == '/';
}

/* The default plugin folders: the build tree's when this program runs from it, else the
 * installed one. */
static int default_dirs(char dirs[][TS_PATH_MAX], int max)
{
    static const char *kinds[] = {"layers", "losses", "optimizers", "heads", "datasets"};
    int n = 0;
    if (in_build_tree()) {
        for (int i = 0; i < 5 && n < max; i++)
            snprintf(dirs[n++], TS_PATH_MAX, "%s/plugins/%s/.libs", TS_BUILDDIR, kinds[i]);
    } else if (n < max) {
        snprintf(dirs[n++], TS_PATH_MAX, "%s", TS_PLUGINDIR);
    }
    return n;
}

static int search_dirs(char dirs[][TS_PATH_MAX], int max)
{
    const char *env = getenv("TESSERA_PLUGIN_PATH");
    if (!env) return default_dirs(dirs, max);
    int n = 0;
    for (const char *s = env;;) {
        const char *t = strchr(s, ':');
        size_t len = t ? (size_t)(t - s) : strlen(s);
        if (len == 0) n += default_dirs(dirs + n, max - n);   /* empty element: the default */
        else if (n < max) snprintf(dirs[n++], TS_PATH_MAX, "%.*s", (int)len, s);
        if (!t) break;
        s = t + 1;
    }
    return n;
}

/* ---- one entry of one file ------------------------------------------------------------------ */
typedef enum { OPEN_OK, OPEN_END, OPEN_BAD } open_rc;

static open_rc bad(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static open_rc bad(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return OPEN_BAD;
}

/* A file cut short (a copy interrupted, a full disk) still has an ELF header, and dlopen maps the
 * segments the header promises: touching a page past the end of the file is SIGBUS in the loader,
 * before any error can be returned. So an ELF file's program and section header tables, and every
 * segment they describe, must lie inside the file. NULL when it does (or when the file is not ELF,
 * which dlopen itself reports), else the reason. */
static const char *elf_cut_short(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return NULL;                     /* dlopen says why */
    struct stat sb;
    Elf64_Ehdr h;
    const char *why = NULL;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        why = "not a regular file";
    } else if (pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && !memcmp(h.e_ident, ELFMAG, SELFMAG) &&
               h.e_ident[EI_CLASS] == ELFCLASS64) {
        uint64_t size = (uint64_t)sb.st_size;
        if (h.e_phoff > size || (uint64_t)h.e_phnum * h.e_phentsize > size - h.e_phoff ||
            (h.e_shoff && (h.e_shoff > size ||
                           (uint64_t)h.e_shnum * h.e_shentsize > size - h.e_shoff))) {
            snprintf(buf, n, "its ELF header promises tables past the end of the file (%llu "
                     "bytes): the file was cut short", (unsigned long long)size);
            why = buf;
        }
        for (int i = 0; !why && i < h.e_phnum && h.e_phentsize >= sizeof(Elf64_Phdr); i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(h.e_phoff + (uint64_t)i * h.e_phentsize)) !=
                (ssize_t)sizeof ph)
                break;
            if (ph.p_type == PT_LOAD && (ph.p_offset > size || ph.p_filesz > size - ph.p_offset)) {
                snprintf(buf, n, "segment %d lies past the end of the file (%llu of %llu bytes): "
                         "the file was cut short", i,
                         (unsigned long long)(ph.p_offset + ph.p_filesz), (unsigned long long)size);
                why = buf;
            }
        }
    }
    close(fd);
    return why;
}

/* Opens path and validates its index-th entry: OPEN_OK with *out, OPEN_END past the last entry,
 * or OPEN_BAD with the reason (without the path) and what to do in why. */
static open_rc open_entry(const char *path, uint32_t index, const ts_plugin **out, char *why,
                          size_t n)
{
    char ebuf[200];
    const char *cut = elf_cut_short(path, ebuf, sizeof ebuf);
    if (cut)
        return bad(why, n, "cannot load: %s; copy or build the plugin again", cut);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *d = dlerror();
        size_t pl = strlen(path);
        if (d && !strncmp(d, path, pl) && d[pl] == ':') d += pl + 1;   /* it names the file too */
        while (d && *d == ' ') d++;
        return bad(why, n, "cannot load: %s. If it is a tessera plugin with a missing symbol, "
                   "rebuild it against this tessera (pkg-config --cflags --libs tessera) and link "
                   "it with -ltessera", d ? d : "unknown error");
    }
    dlerror();
    ts_entry_fn entry = (ts_entry_fn)(uintptr_t)dlsym(h, "tessera_plugin_entry");
    if (!entry) {
        dlclose(h);
        return bad(why, n, "not a tessera plugin: it exports no tessera_plugin_entry. A plugin "
                   "defines `const ts_plugin *tessera_plugin_entry(uint32_t index)`; see "
                   "docs/plugins.md");
    }
    const ts_plugin *p = entry(index);
    if (!p) {
        if (index > 0) return OPEN_END;   /* keep h open: earlier entries of this file are used */
        dlclose(h);
        return bad(why, n, "tessera_plugin_entry(0) returned NULL: the file carries no plugin");
    }
    /* From here on h stays open: earlier entries of the file may be in use. */
    if (p->abi != TS_ABI)
        return bad(why, n, "built for tessera plugin ABI %u, but this tessera speaks ABI %u; "
                   "rebuild the plugin against this tessera's tessera.h (pkg-config --cflags "
                   "--libs tessera)", p->abi, TS_ABI);
    if (p->size < TS_PLUGIN_MIN_SIZE)
        return bad(why, n, "its descriptor is %u bytes, smaller than the %zu this ABI needs; "
                   "rebuild it against this tessera", p->size, (size_t)TS_PLUGIN_MIN_SIZE);
    if (p->kind < TS_LAYER || p->kind > TS_DATASET || !p->name || !p->ops)
        return bad(why, n, "entry %u has an unknown kind (%d), no name or no ops", index,
                   (int)p->kind);
    uint32_t ops_size = *(const uint32_t *)p->ops;   /* every ops table starts with its size */
    if (ops_size < ops_min_size(p->kind))
        return bad(why, n, "the %s '%s' has an ops table of %u bytes, smaller than the %zu of "
                   "plugin ABI %u's first layout: it was not compiled against this tessera.h "
                   "(or does not set `.size = sizeof(ts_%s_ops)`); rebuild it",
                   ts_kind_name(p->kind), p->name, ops_size, ops_min_size(p->kind), TS_ABI,
                   p->kind == TS_OPTIMIZER ? "optim" : ts_kind_name(p->kind));
    *out = p;
    return OPEN_OK;
}

const ts_plugin *ts_plugin_open_file(const char *path, uint32_t index, ts_err *e)
{
    char why[TS_ERR_MAX];
    const ts_plugin *p = NULL;
    switch (open_entry(path, index, &p, why, sizeof why)) {
    case OPEN_OK: return p;
    case OPEN_END: return ts_fail(e, "%s: no entry %u", path, index), NULL;
    case OPEN_BAD: break;
    }
    return ts_fail(e, "%s: %s", path, why), NULL;
}

/* ---- the registry ---------------------------------------------------------------------------- */
static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int grow(void **v, int *cap, int n, size_t elem)
{
    if (n < *cap) return 0;
    int c = *cap ? 2 * *cap : 32;
    void *m = realloc(*v, (size_t)c * elem);
    if (!m) return -1;
    *v = m;
    *cap = c;
    return 0;
}

static int add_entry(const ts_plugin *p, const char *path, int rank)
{
    if (grow((void **)&reg.e, &reg.cap, reg.n, sizeof *reg.e)) return -1;
    reg_entry *r = &reg.e[reg.n++];
    r->p = p;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->dir_rank = rank;
    r->hidden_by = r->twin = -1;
    return 0;
}

static int add_skipped(const char *path, const char *reason)
{
    if (grow((void **)&reg.s, &reg.scap, reg.ns, sizeof *reg.s)) return -1;
    skipped *s = &reg.s[reg.ns];
    s->path = dup_str(path);
    s->reason = dup_str(reason);
    if (!s->path || !s->reason) { free(s->path); free(s->reason); return -1; }
    reg.ns++;
    return 0;
}

static int add_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int add_warning(const char *fmt, ...)
{
    if (grow((void **)&reg.warn, &reg.wcap, reg.nw, sizeof *reg.warn)) return -1;
    char buf[2 * TS_PATH_MAX + TS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!(reg.warn[reg.nw] = dup_str(buf))) return -1;
    reg.nw++;
    return 0;
}

static int same_name(const reg_entry *a, const reg_entry *b)
{
    return a->p->kind == b->p->kind && !strcmp(a->p->name, b->p->name);
}

/* After the scan: who hides whom, which names are defined twice in one folder, and a warning
 * for each problem. */
static int resolve(void)
{
    for (int i = 0; i < reg.n; i++) {
        reg_entry *r = &reg.e[i];
        for (int j = 0; j < i && r->dir_rank >= 0 && r->hidden_by < 0; j++) {
            reg_entry *o = &reg.e[j];
            if (o->dir_rank < 0 || !same_name(o, r) || o->p == r->p) continue;
            if (o->dir_rank < r->dir_rank) {
                r->hidden_by = o->hidden_by >= 0 ? o->hidden_by : j;
            } else if (o->dir_rank == r->dir_rank) {
                if (o->twin < 0) o->twin = i;
                r->twin = j;
            }
        }
    }
    for (int i = 0; i < reg.ns; i++)
        if (add_warning("skipped %s: %s", reg.s[i].path, reg.s[i].reason)) return -1;
    for (int i = 0; i < reg.n; i++) {
        reg_entry *r = &reg.e[i];
        if (r->hidden_by >= 0) {
            if (add_warning("the %s '%s' of %s is hidden by the one of %s, which comes earlier in "
                            "the plugin path and is used instead; rename one of them if both are "
                            "meant to be used", ts_kind_name(r->p->kind), r->p->name, r->path,
                            reg.e[r->hidden_by].path))
                return -1;
        } else if (r->twin > i) {
            if (add_warning("two plugins define the %s '%s' in one folder: %s and %s; an "
                            "experiment that uses '%s' fails until one is removed or renamed",
                            ts_kind_name(r->p->kind), r->p->name, r->path, reg.e[r->twin].path,
                            r->p->name))
                return -1;
        }
    }
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int so_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 3 && !strcmp(d->d_name + n - 3, ".so");
}

int ts_plugins_scan(ts_err *e)
{
    if (reg.scanned) return 0;
    char dirs[32][TS_PATH_MAX];
    int nd = search_dirs(dirs, 32);
    int rc = 0;
    for (int d = 0; d < nd; d++) {
        struct dirent **list;
        int n = scandir(dirs[d], &list, so_filter, by_name);
        if (n < 0) continue;   /* a folder of the path that does not exist is not an error */
        for (int i = 0; i < n; i++) {
            char path[TS_PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dirs[d], list[i]->d_name);
            free(list[i]);
            int dup = 0;   /* the same folder named twice in the path */
            for (int k = 0; k < reg.n && !dup; k++)
                dup = reg.e[k].dir_rank >= 0 && !strcmp(reg.e[k].path, path);
            for (uint32_t k = 0; !dup && !rc; k++) {
                const ts_plugin *p = NULL;
                char why[TS_ERR_MAX];
                open_rc o = open_entry(path, k, &p, why, sizeof why);
                if (o == OPEN_END) break;
                if (o == OPEN_OK) { rc = add_entry(p, path, d); continue; }
                char what[TS_PATH_MAX + 32];
                if (k == 0) snprintf(what, sizeof what, "%s", path);
                else snprintf(what, sizeof what, "%s (entry %u)", path, k);
                rc = add_skipped(what, why);
                if (k == 0) break;   /* a file that is no plugin: no further entries */
            }
        }
        free(list);
    }
    if (!rc) rc = resolve();
    reg.scanned = 1;
    return rc ? ts_fail(e, "out of memory while scanning the plugin path") : 0;
}

/* ". N skipped in the plugin path: PATH (reason); ..." appended to a "no plugin named" message:
 * files whose name contains the name asked for first, each reason cut to its first sentence. */
static void skipped_note(const char *name, char *buf, size_t cap)
{
    buf[0] = 0;
    if (!reg.ns) return;
    size_t k = (size_t)snprintf(buf, cap, ". Skipped in the plugin path (%d; `tessera plugins` "
                                "shows what to do): ", reg.ns);
    int first = 1;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < reg.ns && k < cap; i++) {
            const char *base = strrchr(reg.s[i].path, '/');
            int match = strstr(base ? base : reg.s[i].path, name) != NULL;
            if (match != (pass == 0)) continue;
            const char *r = reg.s[i].reason;
            size_t n = strlen(r);
            const char *stop1 = strstr(r, "; "), *stop2 = strstr(r, ". ");
            if (stop1 && (size_t)(stop1 - r) < n) n = (size_t)(stop1 - r);
            if (stop2 && (size_t)(stop2 - r) < n) n = (size_t)(stop2 - r);
            k += (size_t)snprintf(buf + k, cap - k, "%s%s (%.*s)", first ? "" : "; ",
                                  reg.s[i].path, (int)n, r);
            first = 0;
        }
}

/* The usable entry of kind and name (kind 0: any kind), or -1 with the reason in e. */
static int lookup(ts_kind kind, const char *name, ts_err *e)
{
    for (int i = 0; i < reg.n; i++) {
        reg_entry *r = &reg.e[i];
        if (r->dir_rank < 0 || r->hidden_by >= 0 || (kind && r->p->kind != kind) ||
            strcmp(r->p->name, name))
            continue;
        if (r->twin >= 0)
            return ts_fail(e, "two plugins define the %s '%s' in one folder: %s and %s; remove "
                           "or rename one (a plugin's name is the `type =` value experiments "
                           "use)", ts_kind_name(r->p->kind), name, r->path, reg.e[r->twin].path);
        return i;
    }
    const char *near = NULL;
    int best = 99;
    for (int i = 0; i < reg.n; i++) {
        if (reg.e[i].dir_rank < 0 || (kind && reg.e[i].p->kind != kind)) continue;
        int d = ts_edit_distance(name, reg.e[i].p->name);
        if (d < best) { best = d; near = reg.e[i].p->name; }
    }
    char note[TS_ERR_MAX];
    skipped_note(name, note, sizeof note);
    const char *what = kind ? ts_kind_name(kind) : "";
    if (near && best <= 3)
        ts_fail(e, "no %s%splugin named '%s'; did you mean '%s'? (`tessera plugins` lists them)%s",
                what, kind ? " " : "", name, near, note);
    else
        ts_fail(e, "no %s%splugin named '%s' in the plugin path; `tessera plugins` lists what is "
                "found and where, and TESSERA_PLUGIN_PATH adds folders%s", what, kind ? " " : "",
                name, note);
    return -1;
}

const ts_plugin *ts_plugin_find(ts_kind kind, const char *name, ts_err *e)
{
    if (name && strchr(name, '/')) {   /* a path: load it directly, for this section only */
        const ts_plugin *p = ts_plugin_open_file(name, 0, e);
        if (p && p->kind != kind)
            return ts_fail(e, "%s is a %s plugin, not a %s", name, ts_kind_name(p->kind),
                           ts_kind_name(kind)), NULL;
        if (!p) return NULL;
        for (int i = 0; i < reg.n; i++)
            if (reg.e[i].p == p) return p;
        if (add_entry(p, name, -1)) return ts_fail(e, "out of memory"), NULL;
        return p;
    }
    if (ts_plugins_scan(e)) return NULL;
    int i = lookup(kind, name, e);
    return i < 0 ? NULL : reg.e[i].p;
}

const ts_plugin *ts_plugin_find_any(const char *name, ts_err *e)
{
    if (ts_plugins_scan(e)) return NULL;
    int i = lookup((ts_kind)0, name, e);
    return i < 0 ? NULL : reg.e[i].p;
}

const char *ts_plugin_path(const ts_plugin *p)
{
    for (int i = 0; i < reg.n; i++)
        if (reg.e[i].p == p) return reg.e[i].path;
    return "?";
}

int ts_plugin_count(void) { return reg.n; }
const ts_plugin *ts_plugin_at(int i) { return i >= 0 && i < reg.n ? reg.e[i].p : NULL; }

const char *ts_plugin_note(int i, char *buf, size_t n)
{
    if (i < 0 || i >= reg.n) return NULL;
    const reg_entry *r = &reg.e[i];
    if (r->dir_rank < 0) snprintf(buf, n, "loaded by path (`plugin =`)");
    else if (r->hidden_by >= 0) snprintf(buf, n, "hidden by %s", reg.e[r->hidden_by].path);
    else if (r->twin >= 0)
        snprintf(buf, n, "not usable: %s defines the same name in the same folder",
                 reg.e[r->twin].path);
    else return NULL;
    return buf;
}

int ts_plugin_skipped_count(void) { return reg.ns; }
const char *ts_plugin_skipped(int i, const char **reason)
{
    if (i < 0 || i >= reg.ns) return NULL;
    if (reason) *reason = reg.s[i].reason;
    return reg.s[i].path;
}

int ts_plugin_warning_count(void) { return reg.nw; }
const char *ts_plugin_warning(int i) { return i >= 0 && i < reg.nw ? reg.warn[i] : NULL; }
