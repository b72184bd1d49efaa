/* testutil.h — small helpers shared by the cmocka tests: paths into the source and build
 * trees, writing a temporary experiment file, and asserting that an error names what it
 * should. Test code only. */
#ifndef TS_TESTUTIL_H
#define TS_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* mkstemps, qsort_r */
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "host.h"

static inline const char *tu_env(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* A path under the source tree (data, experiments) or the build tree (test plugins). */
static inline const char *tu_src(const char *rel)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_env("top_srcdir", "."), rel);
    return buf[k];
}

static inline const char *tu_build(const char *rel)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_env("top_builddir", "."), rel);
    return buf[k];
}

/* Writes text to a fresh temporary file with the given suffix; returns its path (static). */
static inline const char *tu_write(const char *suffix, const char *text)
{
    static char path[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(path[k], sizeof path[k], "/tmp/tessera-test-XXXXXX%s", suffix);
    int fd = mkstemps(path[k], (int)strlen(suffix));
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path[k];
}

/* Asserts that msg contains every NULL-terminated needle; prints the message otherwise. */
static inline void tu_contains(const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    for (const char *s; (s = va_arg(ap, const char *));) {
        if (!strstr(msg, s)) {
            print_error("message: %s\nmissing: %s\n", msg, s);
            fail();
        }
    }
    va_end(ap);
}

/* Loads and builds an experiment; returns -1 with the error in e when any stage fails. */
static inline int tu_build_exp(const char *ini, int nover, char **over, ts_err *e)
{
    ts_run_opts o = {0};
    o.noverride = nover;
    o.overrides = over;
    ts_exp *x = ts_exp_load(ini, &o, e);
    if (!x) return -1;
    int rc = ts_exp_build(x, e);
    ts_exp_free(x);
    return rc;
}

/* ---- a private folder per test program ------------------------------------------------------
 * tu_dir_make("ple") makes /tmp/tessera-ple-XXXXXX (a cmocka group setup), tu_in("a.csv") is a
 * path in it (a ring of 8), tu_dir_remove() removes it with everything in it (the teardown). */
static char tu_dir[256];

static inline int tu_dir_make(const char *tag)
{
    snprintf(tu_dir, sizeof tu_dir, "/tmp/tessera-%s-XXXXXX", tag);
    return mkdtemp(tu_dir) ? 0 : -1;
}

static inline int tu_dir_remove(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static inline const char *tu_in(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_dir, name);
    return buf[k];
}

#endif
