/* sgemm_peak.c — this machine's single-precision matrix-product speed, the roof for the
 * sgemm-bound models (CNN-DSSM above all): cblas_sgemm C = A B on large square matrices
 * (--n, default 2048: 17 GFLOP a product, big enough that packing and threading overheads
 * vanish) with --threads OpenBLAS threads, the best of --reps timed products after one
 * untimed one. With --shape M,N,K it times that shape instead (e.g. CNN-DSSM's im2col product
 * 2990,300,900: a batch of 256 pairs has about 256 x 11.7 valid words), to show how much of the
 * peak a model-sized product can reach.
 * Prints "sgemm_peak gflops <value> threads <t> n <n>" (or "... shape M,N,K").
 * Not a test: it asserts nothing; bench/README.md records what it printed.
 *
 *   sgemm_peak [--threads T] [--n N] [--reps R] [--shape M,N,K] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, M = 2048, N = 2048, K = 2048, shape = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--n")) M = N = K = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--shape")) {
            if (sscanf(v, "%d,%d,%d", &M, &N, &K) != 3) {
                fprintf(stderr, "sgemm_peak: --shape takes M,N,K (three positive integers)\n");
                return 2;
            }
            shape = 1;
        } else {
            fprintf(stderr, "sgemm_peak: unknown option %s (see the comment at the top of bench/sgemm_peak.c)\n", a);
            return 2;
        }
    }
    if (argc % 2 == 0) { fprintf(stderr, "sgemm_peak: every option takes a value\n"); return 2; }
    if (threads < 1 || reps < 1 || M < 1 || N < 1 || K < 1) {
        fprintf(stderr, "sgemm_peak: threads, reps and sizes must be positive\n");
        return 2;
    }
    float *A = malloc(sizeof(float) * (size_t)M * K);   /* (M, K) */
    float *B = malloc(sizeof(float) * (size_t)K * N);   /* (K, N) */
    float *C = malloc(sizeof(float) * (size_t)M * N);   /* (M, N) */
    if (!A || !B || !C) { fprintf(stderr, "sgemm_peak: out of memory; lower --n\n"); return 1; }
    unsigned s = 1;   /* small values in [-0.5, 0.5): no overflow, no denormals */
    for (size_t i = 0; i < (size_t)M * K; i++) { s = s * 1664525u + 1013904223u; A[i] = (float)(s >> 8) / 16777216.0f - 0.5f; }
    for (size_t i = 0; i < (size_t)K * N; i++) { s = s * 1664525u + 1013904223u; B[i] = (float)(s >> 8) / 16777216.0f - 0.5f; }
    openblas_set_num_threads(threads);
    /* small shapes take microseconds: repeat each timed sample until it lasts >= 50 ms */
    double flop = 2.0 * M * N * K, best = 0;
    int inner = 1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    for (;;) {
        double t0 = now();
        for (int i = 0; i < inner; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        double t = now() - t0;
        if (t >= 0.05 || inner >= 1 << 20) { best = flop * inner / t; break; }
        inner *= 2;
    }
    for (int r = 1; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < inner; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        double g = flop * inner / (now() - t0);
        if (g > best) best = g;
    }
    /* a value from C, so the products cannot be dropped and the figure is of real work */
    double check = C[0] + C[(size_t)M * N - 1];
    if (shape)
        printf("sgemm_peak gflops %.1f threads %d shape %d,%d,%d (check %.3g)\n", best * 1e-9, threads, M, N, K, check);
    else
        printf("sgemm_peak gflops %.1f threads %d n %d (check %.3g)\n", best * 1e-9, threads, M, check);
    free(A); free(B); free(C);
    return 0;
}
