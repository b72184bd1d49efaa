/* plugin.c — finding and opening plugin files: the search path, dlopen, the versioned
 * descriptor check, duplicate detection and errors that say what to do.
 * It does not run plugins (graph.c and check.c do). The registry is process-wide state: the
 * one exception to "no globals", because dlopen'ed code is process-wide too. */
#define _GNU_SOURCE
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
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

typedef struct reg_entry {
    const ts_plugin *p;
    char path[TS_PATH_MAX];
    int dir_rank;             /* position of its folder in the search path */
} reg_entry;

static struct {
    reg_entry *e;
    int n, cap;
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

const ts_plugin *ts_plugin_open_file(const char *path, uint32_t index, ts_err *e)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return ts_fail(e, "%s: cannot load: %s. If a symbol is missing, rebuild the plugin "
                       "against this tessera (pkg-config --cflags --libs tessera) and link it "
                       "with -ltessera", path, dlerror()), NULL;
    dlerror();
    ts_entry_fn entry = (ts_entry_fn)(uintptr_t)dlsym(h, "tessera_plugin_entry");
    if (!entry) {
        ts_fail(e, "%s: not a tessera plugin: it exports no tessera_plugin_entry (%s). A plugin "
                "defines `const ts_plugin *tessera_plugin_entry(uint32_t index)`; see "
                "docs/plugins.md", path, dlerror());
        dlclose(h);
        return NULL;
    }
    const ts_plugin *p = entry(index);
    if (!p) {
        if (index == 0)
            ts_fail(e, "%s: tessera_plugin_entry(0) returned NULL: the file carries no plugin",
                    path);
        else
            ts_fail(e, "%s: no entry %u", path, index);
        return NULL;   /* keep h open: earlier entries of this file may be in use */
    }
    if (p->abi != TS_ABI) {
        ts_fail(e, "%s: built for tessera plugin ABI %u, but this tessera speaks ABI %u; rebuild "
                "the plugin against this tessera's tessera.h (pkg-config --cflags --libs tessera)",
                path, p->abi, TS_ABI);
        return NULL;
    }
    if (p->size < TS_PLUGIN_MIN_SIZE) {
        ts_fail(e, "%s: its descriptor is %u bytes, smaller than the %zu this ABI needs; rebuild "
                "it against this tessera", path, p->size, (size_t)TS_PLUGIN_MIN_SIZE);
        return NULL;
    }
    if (p->kind < TS_LAYER || p->kind > TS_DATASET || !p->name || !p->ops) {
        ts_fail(e, "%s: entry %u has an unknown kind (%d), no name or no ops", path, index,
                (int)p->kind);
        return NULL;
    }
    return p;
}

static int add(const ts_plugin *p, const char *path, int rank, ts_err *e)
{
    for (int i = 0; i < reg.n; i++) {
        reg_entry *r = &reg.e[i];
        if (r->p->kind != p->kind || strcmp(r->p->name, p->name)) continue;
        if (r->p == p) return 0;   /* the same file named twice (`plugin =` on two layers) */
        if (r->dir_rank < rank) return 0;   /* an earlier folder of the path wins, like PATH */
        return ts_fail(e, "two plugins define the %s '%s': %s and %s; remove or rename one "
                       "(a plugin's name is the `type =` value experiments use)",
                       ts_kind_name(p->kind), p->name, r->path, path);
    }
    if (reg.n == reg.cap) {
        int cap = reg.cap ? 2 * reg.cap : 32;
        reg_entry *n = realloc(reg.e, (size_t)cap * sizeof *n);
        if (!n) return ts_fail(e, "out of memory");
        reg.e = n;
        reg.cap = cap;
    }
    reg_entry *r = &reg.e[reg.n++];
    r->p = p;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->dir_rank = rank;
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
    for (int d = 0; d < nd; d++) {
        struct dirent **list;
        int n = scandir(dirs[d], &list, so_filter, by_name);
        if (n < 0) continue;   /* a folder of the path that does not exist is not an error */
        int rc = 0;
        for (int i = 0; i < n; i++) {
            char path[TS_PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dirs[d], list[i]->d_name);
            for (uint32_t k = 0; !rc; k++) {
                ts_err pe;
                const ts_plugin *p = ts_plugin_open_file(path, k, &pe);
                if (!p) {
                    if (k == 0 || strstr(pe.msg, "ABI") || strstr(pe.msg, "descriptor")) {
                        snprintf(e->msg, sizeof e->msg, "%s", pe.msg);
                        rc = -1;
                    }
                    break;
                }
                rc = add(p, path, d, e);
            }
            free(list[i]);
        }
        free(list);
        if (rc) return -1;
    }
    reg.scanned = 1;
    return 0;
}

const ts_plugin *ts_plugin_find(ts_kind kind, const char *name, ts_err *e)
{
    if (name && strchr(name, '/')) {   /* a path: load it directly */
        const ts_plugin *p = ts_plugin_open_file(name, 0, e);
        if (p && p->kind != kind)
            return ts_fail(e, "%s is a %s plugin, not a %s", name, ts_kind_name(p->kind),
                           ts_kind_name(kind)), NULL;
        if (p && add(p, name, -1, e)) return NULL;
        return p;
    }
    if (ts_plugins_scan(e)) return NULL;
    const char *near = NULL;
    int best = 99;
    for (int i = 0; i < reg.n; i++) {
        if (reg.e[i].p->kind != kind) continue;
        if (!strcmp(reg.e[i].p->name, name)) return reg.e[i].p;
        int d = ts_edit_distance(name, reg.e[i].p->name);
        if (d < best) { best = d; near = reg.e[i].p->name; }
    }
    if (near && best <= 3)
        ts_fail(e, "no %s plugin named '%s'; did you mean '%s'? (`tessera plugins` lists them)",
                ts_kind_name(kind), name, near);
    else
        ts_fail(e, "no %s plugin named '%s' in the plugin path; `tessera plugins` lists what is "
                "found and where, and TESSERA_PLUGIN_PATH adds folders", ts_kind_name(kind), name);
    return NULL;
}

const char *ts_plugin_path(const ts_plugin *p)
{
    for (int i = 0; i < reg.n; i++)
        if (reg.e[i].p == p) return reg.e[i].path;
    return "?";
}

int ts_plugin_count(void) { return reg.n; }
const ts_plugin *ts_plugin_at(int i) { return i >= 0 && i < reg.n ? reg.e[i].p : NULL; }
