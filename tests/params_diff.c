/* params_diff.c — compares two runs' trained parameters (RUN_DIR/params.bin, the layout
 * core/params_io.c documents), for the MPI equivalence test (tests/mpi_equiv.sh).
 *
 *   params_diff A/params.bin B/params.bin [--rtol R] [--atol A]
 *   params_diff --shards K A0.bin .. A{K-1}.bin B/params.bin [--rtol R] [--atol A]
 *
 * With --shards, A is a run over K ranks whose tables were split by rows (shard = rows; every
 * rank wrote params.rankR-of-K.bin): a parameter with the same shape in every shard is
 * replicated (it must be bit-identical in all of them) and is compared as is; one whose shards'
 * rows add up to B's rows is reassembled (local row k of rank r is row k * K + r) first.
 *
 * Both files must hold the same parameters (names and shapes, in any order) and pass their
 * CRC-32. For each parameter it prints the largest |a - b| and the relative L2 distance
 * ||a - b|| / ||b||, then the same over all parameters together. Exit status: 0 when every
 * weight satisfies |a - b| <= atol + rtol * |b| (defaults atol = 1e-5, rtol = 1e-3), 1 when
 * one does not, 2 when a file cannot be read or the two do not hold the same parameters. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct rec {
    char name[256];
    int32_t rows, cols;
    const float *w;          /* (rows, cols): a copy, since the file's offsets are unaligned */
} rec;

typedef struct pfile {
    unsigned char *bytes;
    size_t n;
    rec *r;
    uint32_t count;
} pfile;

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads and checks path; on failure prints why and returns -1. */
static int load(const char *path, pfile *f)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "params_diff: cannot open %s: %s\n", path, strerror(errno)); return -1; }
    size_t cap = 1 << 16;
    f->bytes = malloc(cap);
    for (size_t k; f->bytes && (k = fread(f->bytes + f->n, 1, cap - f->n, fp)) > 0;) {
        f->n += k;
        if (f->n == cap) {
            unsigned char *b = realloc(f->bytes, cap *= 2);
            if (!b) { free(f->bytes); f->bytes = NULL; }
            else f->bytes = b;
        }
    }
    int err = ferror(fp);
    fclose(fp);
    if (!f->bytes || err) { fprintf(stderr, "params_diff: cannot read %s\n", path); return -1; }
    const unsigned char *b = f->bytes;
    if (f->n < 16 || memcmp(b, "TSPR", 4) || rd32(b + 4) != 1) {
        fprintf(stderr, "params_diff: %s is not a version-1 params.bin (core/params_io.c)\n", path);
        return -1;
    }
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(f->n - 4));
    if (crc != rd32(b + f->n - 4)) {
        fprintf(stderr, "params_diff: %s: CRC-32 mismatch (truncated or corrupt file)\n", path);
        return -1;
    }
    f->count = rd32(b + 8);
    f->r = calloc(f->count ? f->count : 1, sizeof *f->r);
    if (!f->r) { fprintf(stderr, "params_diff: out of memory\n"); return -1; }
    size_t o = 12;
    for (uint32_t i = 0; i < f->count; i++) {
        if (o + 4 > f->n - 4) goto short_file;
        uint32_t len = rd32(b + o);
        o += 4;
        if (len < 1 || len > 255 || o + len + 8 > f->n - 4) goto short_file;
        memcpy(f->r[i].name, b + o, len);
        f->r[i].name[len] = 0;
        o += len;
        f->r[i].rows = (int32_t)rd32(b + o);
        f->r[i].cols = (int32_t)rd32(b + o + 4);
        o += 8;
        size_t nw = (size_t)f->r[i].rows * (size_t)f->r[i].cols;
        if (f->r[i].rows <= 0 || f->r[i].cols <= 0 || o + 4 * nw > f->n - 4) goto short_file;
        float *w = malloc(nw * sizeof *w);  /* (rows, cols) */
        if (!w) { fprintf(stderr, "params_diff: out of memory\n"); return -1; }
        memcpy(w, b + o, nw * sizeof *w);
        f->r[i].w = w;
        o += 4 * nw;
    }
    return 0;
short_file:
    fprintf(stderr, "params_diff: %s: a record runs past the end of the file\n", path);
    return -1;
}

static void unload(pfile *f)
{
    for (uint32_t i = 0; f->r && i < f->count; i++) free((void *)f->r[i].w);
    free(f->r);
    free(f->bytes);
}

/* Merges the K shards sh[] into a, whose tables get the rows of b's table of the same name.
 * -1 (printed) when they do not fit together. */
static int merge(pfile *sh, int K, const pfile *b, pfile *a, const char *const *names)
{
    memset(a, 0, sizeof *a);
    a->count = sh[0].count;
    a->r = calloc(a->count ? a->count : 1, sizeof *a->r);
    if (!a->r) return -1;
    for (uint32_t i = 0; i < a->count; i++) {
        const rec *x0 = &sh[0].r[i];
        rec *o = &a->r[i];
        memcpy(o->name, x0->name, sizeof o->name);
        o->cols = x0->cols;
        const rec *x[64];
        long rows = 0;
        int same = 1;
        for (int r = 0; r < K; r++) {
            x[r] = NULL;
            for (uint32_t j = 0; j < sh[r].count && !x[r]; j++)
                if (!strcmp(sh[r].r[j].name, x0->name)) x[r] = &sh[r].r[j];
            if (!x[r] || x[r]->cols != x0->cols) {
                fprintf(stderr, "params_diff: %s is missing from shard %s or has other columns\n",
                        x0->name, names[r]);
                return -1;
            }
            rows += x[r]->rows;
            same &= x[r]->rows == x0->rows;
        }
        const rec *y = NULL;
        for (uint32_t j = 0; j < b->count && !y; j++)
            if (!strcmp(b->r[j].name, x0->name)) y = &b->r[j];
        int split = y && y->rows == rows && !(same && x0->rows == y->rows);
        o->rows = split ? (int32_t)rows : x0->rows;
        float *w = malloc((size_t)o->rows * (size_t)o->cols * sizeof *w);
        if (!w) return -1;
        o->w = w;
        size_t c = (size_t)o->cols;
        if (split) {
            for (int r = 0; r < K; r++)
                for (int32_t k = 0; k < x[r]->rows; k++)
                    memcpy(w + ((size_t)k * K + r) * c, x[r]->w + (size_t)k * c, c * 4);
            printf("%-32s reassembled from %d shards (%ld rows)\n", o->name, K, rows);
        } else {
            if (!same) {
                fprintf(stderr, "params_diff: %s has different shapes in the shards\n", o->name);
                return -1;
            }
            memcpy(w, x0->w, (size_t)o->rows * c * 4);
            for (int r = 1; r < K; r++)
                if (memcmp(x[r]->w, x0->w, (size_t)o->rows * c * 4)) {
                    fprintf(stderr, "params_diff: %s is replicated but differs between %s and "
                            "%s\n", o->name, names[0], names[r]);
                    return -2;
                }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    double rtol = 1e-3, atol = 1e-5;
    const char *path[66] = {NULL};
    int np = 0, K = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rtol") && i + 1 < argc) rtol = atof(argv[++i]);
        else if (!strcmp(argv[i], "--atol") && i + 1 < argc) atol = atof(argv[++i]);
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc) K = atoi(argv[++i]);
        else if (np < 66 && argv[i][0] != '-') path[np++] = argv[i];
        else np = 99;
    }
    if (K < 0 || K > 64 || np != (K ? K + 1 : 2)) {
        fprintf(stderr, "usage: params_diff A/params.bin B/params.bin [--rtol R] [--atol A]\n"
                "       params_diff --shards K A0.bin .. A{K-1}.bin B/params.bin [...] (K <= 64)\n");
        return 2;
    }
    pfile a, b;
    int rc = 2;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (K) {
        pfile sh[64];
        memset(sh, 0, sizeof sh);
        int bad = load(path[K], &b);
        for (int r = 0; r < K && !bad; r++) bad = load(path[r], &sh[r]);
        int m = bad ? -1 : merge(sh, K, &b, &a, path);
        for (int r = 0; r < K; r++) unload(&sh[r]);
        if (m == -2) { rc = 1; goto done; }
        if (bad || m) goto done;
        path[1] = path[K];
    } else if (load(path[0], &a) || load(path[1], &b)) {
        goto done;
    }
    if (a.count != b.count) {
        fprintf(stderr, "params_diff: %s holds %u parameters, %s %u\n", path[0], a.count, path[1],
                b.count);
        goto done;
    }
    double d2_all = 0, b2_all = 0, max_all = 0;
    long bad = 0, total = 0;
    for (uint32_t i = 0; i < a.count; i++) {
        const rec *x = &a.r[i], *y = NULL;
        for (uint32_t j = 0; j < b.count && !y; j++)
            if (!strcmp(b.r[j].name, x->name)) y = &b.r[j];
        if (!y || y->rows != x->rows || y->cols != x->cols) {
            fprintf(stderr, "params_diff: %s (%d, %d) of %s has no match of that shape in %s\n",
                    x->name, x->rows, x->cols, path[0], path[1]);
            goto done;
        }
        size_t n = (size_t)x->rows * (size_t)x->cols;
        double d2 = 0, b2 = 0, dmax = 0;
        for (size_t k = 0; k < n; k++) {
            double d = fabs((double)x->w[k] - (double)y->w[k]);
            if (!(d <= atol + rtol * fabs((double)y->w[k]))) bad++;  /* NaN counts as bad */
            if (!(d <= dmax)) dmax = d;
            d2 += d * d;
            b2 += (double)y->w[k] * y->w[k];
        }
        total += (long)n;
        printf("%-32s (%d, %d)  max |a-b| %.3g  rel L2 %.3g\n", x->name, x->rows, x->cols, dmax,
               b2 > 0 ? sqrt(d2 / b2) : sqrt(d2));
        d2_all += d2;
        b2_all += b2;
        if (!(dmax <= max_all)) max_all = dmax;
    }
    printf("all %ld weights: max |a-b| %.3g  rel L2 %.3g  outside atol %g + rtol %g * |b|: %ld\n",
           total, max_all, b2_all > 0 ? sqrt(d2_all / b2_all) : sqrt(d2_all), atol, rtol, bad);
    rc = bad ? 1 : 0;
done:
    unload(&a);
    unload(&b);
    return rc;
}
