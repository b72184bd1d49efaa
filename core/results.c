/* results.c — what a run leaves on disk: folders, files written atomically (temporary file,
 * fsync, rename), metrics.json, and reading a value back from it. Nothing here trains. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *ts_phase_name(ts_phase p)
{
    return p == TS_TRAIN ? "train" : p == TS_VALID ? "valid" : p == TS_TEST ? "test" : "select";
}

int ts_mkdirs(const char *path, ts_err *e)
{
    char buf[TS_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return ts_fail(e, "%s: cannot create the folder: %s; give --results a folder you may write", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

int ts_write_error(ts_err *e, const char *path, int err, const char *kept)
{
    const char *why = err == ENOSPC || err == EDQUOT ? "the disk (or your quota) is full: free space"
                      : err == EFBIG ? "the file size limit was reached (ulimit -f, or the file "
                                       "system's largest file): raise the limit"
                      : err == EROFS ? "the file system is read-only: give --results a writable folder"
                      : err == EACCES || err == EPERM ? "permission denied: give --results a "
                                                        "folder you may write"
                      : "check the results folder and the disk";
    return ts_fail(e, "cannot write %s: %s; %s; %s", path, strerror(err), why,
                   kept && *kept ? kept : "the files written before are kept");
}

int ts_write_atomic(const char *path, const char *text, size_t n, ts_err *e)
{
    char tmp[TS_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return ts_write_error(e, tmp, errno, NULL);
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, text + off, n - off);
        if (k < 0) {
            if (errno == EINTR) continue;
            int er = errno;
            close(fd);
            unlink(tmp);
            return ts_write_error(e, tmp, er, NULL);
        }
        off += (size_t)k;
    }
    if (fsync(fd) || close(fd)) {
        int er = errno;
        unlink(tmp);
        return ts_write_error(e, tmp, er, NULL);
    }
    if (rename(tmp, path)) {
        int er = errno;
        unlink(tmp);
        return ts_fail(e, "%s: cannot rename into place: %s", path, strerror(er));
    }
    return 0;
}

int ts_write_metrics_json(const char *path, const ts_metric_rec *m, int n, ts_err *e)
{
    size_t cap = 256 + (size_t)n * 200, k = 0;
    char *out = malloc(cap);
    if (!out) return ts_fail(e, "out of memory");
    k += (size_t)snprintf(out + k, cap - k, "{");
    for (int i = 0; i < n; i++) {
        /* JSON has no NaN: a figure that could not be computed is null. */
        char v[64];
        if (isfinite(m[i].value)) snprintf(v, sizeof v, "%.17g", m[i].value);
        else snprintf(v, sizeof v, "null");
        k += (size_t)snprintf(out + k, cap - k, "%s\n  \"%s.%s.%s\": %s", i ? "," : "",
                              ts_phase_name(m[i].split), m[i].task, m[i].metric, v);
    }
    k += (size_t)snprintf(out + k, cap - k, "\n}\n");
    int rc = ts_write_atomic(path, out, k, e);
    free(out);
    return rc;
}

int ts_metrics_get(const char *results_dir, const char *key, double *value, ts_err *e)
{
    char path[TS_PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics.json", results_dir);
    FILE *f = ts_fopen_regular(path);
    if (!f) return ts_fail(e, "%s: cannot open: %s", path,
                           errno ? strerror(errno) : "not a regular file");
    char line[1024], want[512];
    snprintf(want, sizeof want, "\"%s\":", key);
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, want);
        if (!p) continue;
        p += strlen(want);
        while (*p == ' ') p++;
        *value = strncmp(p, "null", 4) ? strtod(p, NULL) : NAN;
        found = 1;
        break;
    }
    fclose(f);
    return found ? 0 : ts_fail(e, "%s: has no key %s", path, key);
}

/* ---- per-row predictions -------------------------------------------------------------------- */
int ts_write_predictions(ts_exp *x, const char *path, int with_labels, int with_row, ts_err *e)
{
    long n = x->data.nrows[TS_TEST];
    const float *score[TS_MAX_OUT * 4], *label[TS_MAX_OUT * 4];
    int use[TS_MAX_OUT * 4], nuse = 0;
    for (int h = 0; h < x->nheads && nuse < TS_MAX_OUT * 4; h++) {
        ts_hnode *hn = &x->heads[h];
        long k;
        if (!TS_OP(hn->ops, predictions) ||
            hn->ops->predictions(&hn->H, &score[nuse], &label[nuse], &k) || k != n)
            continue;
        use[nuse++] = h;
    }
    if (!nuse) {
        ts_fail(e, "no head of this run gives one prediction per row (binary and regression "
                "heads do; matching and retrieval heads rank lists instead)");
        return 1;
    }
    const void *p;
    long m;
    const long *line = ts_ctx_aux(&x->ctx, "row_line", &p, &m) == 0 && m == n ? p : NULL;
    const char *const *id = ts_ctx_aux(&x->ctx, "row_id", &p, &m) == 0 && m == n ? p : NULL;
    char tmp[TS_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return ts_write_error(e, tmp, errno, NULL);
    int first = 1;
    if (with_row) { fprintf(f, "row"); first = 0; }
    if (line && with_row) fprintf(f, ",line");
    if (id) { fprintf(f, "%sid", first ? "" : ","); first = 0; }
    for (int k = 0; k < nuse; k++) {
        const char *t = x->heads[use[k]].H.name;
        fprintf(f, "%s%s", first && !k ? "" : ",", t);
        if (with_labels) fprintf(f, ",%s.label", t);
    }
    fprintf(f, "\n");
    for (long i = 0; i < n; i++) {
        first = 1;
        if (with_row) { fprintf(f, "%ld", i); first = 0; }
        if (line && with_row) fprintf(f, ",%ld", line[i]);
        if (id) {
            /* a CSV field: quoted when it holds a comma, a quote or a line break */
            const char *s = id[i] ? id[i] : "";
            fprintf(f, "%s", first ? "" : ",");
            if (strpbrk(s, ",\"\r\n")) {
                fputc('"', f);
                for (; *s; s++) { if (*s == '"') fputc('"', f); fputc(*s, f); }
                fputc('"', f);
            } else {
                fputs(s, f);
            }
            first = 0;
        }
        for (int k = 0; k < nuse; k++) {
            fprintf(f, "%s%.9g", first && !k ? "" : ",", score[k][i]);
            if (with_labels && isnan(label[k][i])) fputc(',', f);   /* a masked row: no label */
            else if (with_labels) fprintf(f, ",%.9g", label[k][i]);
        }
        fputc('\n', f);
    }
    int err = 0;
    if (fflush(f) || ferror(f)) err = errno ? errno : EIO;
    if (fclose(f) && !err) err = errno;
    if (err) { unlink(tmp); return ts_write_error(e, tmp, err, NULL); }
    if (rename(tmp, path)) {
        int er = errno;
        unlink(tmp);
        return ts_fail(e, "cannot rename %s to %s: %s", tmp, path, strerror(er));
    }
    return 0;
}
