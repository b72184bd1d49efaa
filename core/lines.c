/* lines.c — reading text data line by line from plain or gzip files (zlib), with line
 * numbers for messages, and splitting a line into fields. Every dataset reader uses it, so
 * CRLF endings, long lines and read errors are handled once. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct ts_lines {
    gzFile gz;            /* zlib reads plain files transparently too */
    char *path;
    char *buf;            /* the current line */
    size_t cap;
    long lineno;
    int error;            /* a read error happened */
    char errmsg[256];
};

ts_lines *ts_lines_open(const char *path, ts_err *e)
{
    ts_lines *r = calloc(1, sizeof *r);
    if (!r) return ts_fail(e, "out of memory"), NULL;
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        ts_fail(e, "%s: cannot open: %s", path, errno ? strerror(errno) : "zlib failed");
        free(r);
        return NULL;
    }
    gzbuffer(r->gz, 1 << 17);
    r->path = strdup(path);
    r->cap = 4096;
    r->buf = malloc(r->cap);
    if (!r->path || !r->buf) { ts_lines_close(r); return ts_fail(e, "out of memory"), NULL; }
    return r;
}

char *ts_lines_next(ts_lines *r, size_t *len)
{
    size_t n = 0;
    for (;;) {
        if (!gzgets(r->gz, r->buf + n, (int)(r->cap - n))) {
            int err;
            const char *m = gzerror(r->gz, &err);
            if (err != Z_OK && err != Z_STREAM_END) {
                r->error = 1;
                snprintf(r->errmsg, sizeof r->errmsg, "%s", m);
                return NULL;
            }
            if (n == 0) {
                if (!gzeof(r->gz)) { r->error = 1; snprintf(r->errmsg, sizeof r->errmsg, "%s", m); }
                return NULL;
            }
            break;   /* last line without an ending */
        }
        n += strlen(r->buf + n);
        if (n > 0 && r->buf[n - 1] == '\n') break;
        if (n + 1 < r->cap) {
            if (gzeof(r->gz)) break;
            continue;
        }
        char *b = realloc(r->buf, r->cap * 2);
        if (!b) { r->error = 1; snprintf(r->errmsg, sizeof r->errmsg, "out of memory"); return NULL; }
        r->buf = b;
        r->cap *= 2;
    }
    while (n > 0 && (r->buf[n - 1] == '\n' || r->buf[n - 1] == '\r')) r->buf[--n] = 0;
    r->lineno++;
    if (len) *len = n;
    return r->buf;
}

long ts_lines_lineno(const ts_lines *r) { return r->lineno; }
const char *ts_lines_path(const ts_lines *r) { return r->path; }

int ts_lines_error(const ts_lines *r, ts_err *e)
{
    if (!r->error) return 0;
    return ts_fail(e, "%s: read error after line %ld (%s); is the file truncated or not gzip?",
                   r->path, r->lineno, r->errmsg);
}

void ts_lines_close(ts_lines *r)
{
    if (!r) return;
    if (r->gz) gzclose(r->gz);
    free(r->path);
    free(r->buf);
    free(r);
}

int ts_split(char *s, const char *sep, char **fields, int max)
{
    size_t k = strlen(sep);
    int n = 0;
    for (;;) {
        if (n == max) return max + 1;
        fields[n++] = s;
        char *t = strstr(s, sep);
        if (!t) return n;
        *t = 0;
        s = t + k;
    }
}
