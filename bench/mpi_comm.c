/* mpi_comm.c (the program bench/bench_comm) — the time of one data-parallel gradient exchange
 * (ts_dist_sum_grads) with the sizes of each model family, on the machines mpirun gives it: the
 * dense floats and, per sparse table, (rows, cols, rows a rank touches per step), as measured
 * for docs/distributed.md.
 *
 *   mpirun -np N bench/bench_comm [REPS]
 *
 * Prints, per family, the median and the fastest of REPS exchanges (default 30), so that a
 * user compares them with the family's compute time per step on the same hosts. */
#include "dist.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct family {
    const char *name;
    long dense;                    /* dense gradient floats */
    int ntables;
    int rows[4], cols[4], touched[4];   /* per sparse table; touched = rows per rank and step */
} family;

/* Sizes measured on the bundled experiments at their batch (docs/distributed.md). */
static const family fams[] = {
    {"census MLP (b=512)", 25729, 1, {526}, {4}, {371}},
    {"Shared-Bottom (b=256)", 19794, 1, {526}, {4}, {314}},
    {"MMoE (b=256)", 19874, 1, {526}, {4}, {313}},
    {"DSSM (b=256)", 257656, 2, {10828, 10828}, {300, 300}, {1745, 3097}},
    {"CNN-DSSM (b=256)", 617656, 2, {10828, 10828}, {300, 300}, {1742, 3098}},
    {"LSTM-DSSM (b=256)", 296960, 2, {10828, 10828}, {128, 128}, {1760, 3101}},
    {"YouTube DNN (b=256)", 18752, 4, {9724, 20, 9724, 9724}, {64, 16, 64, 1}, {3768, 20, 301, 301}},
};

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void touch(ts_param *p, int32_t r)
{
    if (p->is_touched[r]) return;
    p->is_touched[r] = 1;
    p->touched[p->ntouched++] = r;
}

int main(int argc, char **argv)
{
    ts_err e;
    if (ts_dist_init(&argc, &argv, &e)) { fprintf(stderr, "bench_comm: %s\n", e.msg); return 1; }
    int rank = ts_dist_rank(), size = ts_dist_size();
    if (size < 2) {
        fprintf(stderr, "bench_comm: run it with mpirun -np N (N >= 2) in a --with-mpi build\n");
        ts_dist_finalize();
        return 1;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 30;
    if (reps < 1) reps = 1;
    double *ms = malloc((size_t)reps * sizeof *ms);
    if (!ms) return 1;
    if (rank == 0) printf("%d ranks, %d exchanges per family\n%-24s %12s %12s %10s\n", size, reps,
                          "family", "median_ms", "fastest_ms", "MB/rank");
    unsigned seed = 12345u + 977u * (unsigned)rank;   /* each rank touches its own rows */
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        const family *F = &fams[f];
        float *g_dense = calloc((size_t)F->dense, sizeof *g_dense);   /* (dense) */
        ts_param tab[4], *ps[4];
        double mb = 4.0 * F->dense;
        for (int t = 0; t < F->ntables; t++) {
            memset(&tab[t], 0, sizeof tab[t]);
            snprintf(tab[t].name, sizeof tab[t].name, "table%d", t);
            tab[t].rows = F->rows[t];
            tab[t].cols = F->cols[t];
            tab[t].flags = TS_PARAM_SPARSE;
            /* (rows, cols) gradient, written once so its pages exist before the clock runs */
            tab[t].g = malloc((size_t)F->rows[t] * F->cols[t] * sizeof(float));
            tab[t].touched = malloc((size_t)F->rows[t] * sizeof(int32_t));
            tab[t].is_touched = calloc((size_t)F->rows[t], 1);
            if (!tab[t].g || !tab[t].touched || !tab[t].is_touched) return 1;
            memset(tab[t].g, 0, (size_t)F->rows[t] * F->cols[t] * sizeof(float));
            ps[t] = &tab[t];
            mb += 4.0 * F->touched[t] * (F->cols[t] + 1);
        }
        if (!g_dense) return 1;
        for (int i = 0; i < reps; i++) {
            for (int t = 0; t < F->ntables; t++) {   /* a fresh random set of touched rows */
                ts_param *p = &tab[t];
                for (int k = 0; k < p->ntouched; k++) {
                    memset(p->g + (size_t)p->touched[k] * p->cols, 0, (size_t)p->cols * sizeof(float));
                    p->is_touched[p->touched[k]] = 0;
                }
                p->ntouched = 0;
                while (p->ntouched < F->touched[t]) touch(p, (int32_t)(rand_r(&seed) % p->rows));
            }
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            if (ts_dist_sum_grads(ps, F->ntables, g_dense, (size_t)F->dense, &e)) {
                fprintf(stderr, "bench_comm: %s\n", e.msg);
                ts_dist_abort(1);
                return 1;
            }
            ms[i] = (MPI_Wtime() - t0) * 1e3;
        }
        /* the slowest rank sets the step: take every repetition's maximum over the ranks */
        MPI_Allreduce(MPI_IN_PLACE, ms, reps, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        qsort(ms, (size_t)reps, sizeof *ms, cmp);
        if (rank == 0)
            printf("%-24s %12.3f %12.3f %10.2f\n", F->name, ms[reps / 2], ms[0], mb / 1e6);
        for (int t = 0; t < F->ntables; t++) {
            free(tab[t].g);
            free(tab[t].touched);
            free(tab[t].is_touched);
        }
        free(g_dense);
    }
    free(ms);
    ts_dist_finalize();
    return 0;
}
