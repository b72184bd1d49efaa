/* bench_topk.c — speed of the YouTube DNN's retrieval kernels, standalone (libtessera + cblas).
 *
 * mode topk: exact top-K retrieval over a large catalogue, as the retrieval head evaluates and
 *   `tessera recommend` serves: items (N, D) random vectors, a batch of B user vectors, scores
 *   U V_blk^T by blocked sgemm (`--block` items at a time, so only (B, block) scores ever
 *   exist), per query the block's scores above the running K-th best go through ts_topk and
 *   are merged into the running list. Prints queries/s, and the bound of the sgemm alone.
 *   Threads split the queries (each with one BLAS thread), so `--threads 2` uses 2 cores.
 * mode softmax: one training step of the retrieval head (found with ts_plugin_find and built
 *   in a bare run context, as the tests do) on a synthetic catalogue, full softmax against
 *   sampled softmax: milliseconds per step and examples/s.
 * Not a test: it asserts nothing; bench/README.md records what it printed.
 *
 *   bench_topk [--mode topk|softmax|all] [--items N] [--dim D] [--k K] [--queries Q]
 *              [--batch B] [--block S] [--threads T] [--softmax-items N] [--negatives J] */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

typedef struct {
    long items, queries;
    int dim, k, batch, block, threads, softmax_items, negatives;
    const float *V;       /* (items, dim) */
    const float *U;       /* (queries, dim) */
    int32_t *result;      /* (queries, k) */
    int sgemm_only;
} job;

typedef struct { job *j; long q0, q1; } slice;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Queries [q0, q1): blocked scores, threshold filter, ts_topk, merge (best first, ties to the
 * lower index as in ts_topk, since every later block holds larger indices). */
static void *run_slice(void *arg)
{
    slice *s = arg;
    job *j = s->j;
    int B = j->batch, D = j->dim, K = j->k, S = j->block;
    float *sc = malloc(sizeof(float) * (size_t)B * S);         /* (B, S) block scores */
    float *cand = malloc(sizeof(float) * (size_t)(S + 1));     /* (S) scores above the bar */
    int32_t *cidx = malloc(sizeof(int32_t) * (size_t)(S + 1)), *tk = malloc(sizeof(int32_t) * (size_t)K);
    float *bs = malloc(sizeof(float) * (size_t)B * K), *ms = malloc(sizeof(float) * (size_t)K);
    int32_t *bi = malloc(sizeof(int32_t) * (size_t)B * K), *mi = malloc(sizeof(int32_t) * (size_t)K);
    int *nb = malloc(sizeof(int) * (size_t)B);
    for (long q0 = s->q0; q0 < s->q1; q0 += B) {
        int nq = (int)(s->q1 - q0 < B ? s->q1 - q0 : B);
        for (int r = 0; r < nq; r++) nb[r] = 0;
        for (long j0 = 0; j0 < j->items; j0 += S) {
            int n = (int)(j->items - j0 < S ? j->items - j0 : S);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n, D, 1.0f, j->U + q0 * D, D,
                        j->V + j0 * D, D, 0.0f, sc, n);
            if (j->sgemm_only) continue;
            for (int r = 0; r < nq; r++) {
                const float *x = sc + (long)r * n;
                float bar = nb[r] == K ? bs[(long)r * K + K - 1] : -INFINITY;
                int m = 0;
                for (int t0 = 0; t0 < n; t0 += 16) {            /* most chunks of 16 lose */
                    int any = 0, t1 = t0 + 16 < n ? t0 + 16 : n;
                    if (t1 - t0 == 16)
                        for (int t = t0; t < t0 + 16; t++) any |= x[t] > bar;   /* vectorised */
                    else
                        any = 1;
                    if (!any) continue;
                    for (int t = t0; t < t1; t++) {
                        cand[m] = x[t];
                        cidx[m] = t;
                        m += x[t] > bar;
                    }
                }
                if (!m) continue;
                int got = ts_topk(cand, m, K, tk);
                float *as = bs + (long)r * K;
                int32_t *ai = bi + (long)r * K;
                int a = 0, b = 0, o = 0;
                while (o < K && (a < nb[r] || b < got)) {
                    if (b >= got || (a < nb[r] && as[a] >= cand[tk[b]])) { ms[o] = as[a]; mi[o++] = ai[a++]; }
                    else { ms[o] = cand[tk[b]]; mi[o++] = (int32_t)(j0 + cidx[tk[b++]]); }
                }
                memcpy(as, ms, sizeof(float) * (size_t)o);
                memcpy(ai, mi, sizeof(int32_t) * (size_t)o);
                nb[r] = o;
            }
        }
        if (!j->sgemm_only)
            for (int r = 0; r < nq; r++) memcpy(j->result + (q0 + r) * K, bi + (long)r * K, sizeof(int32_t) * (size_t)K);
    }
    free(sc); free(cand); free(cidx); free(tk); free(bs); free(ms); free(bi); free(mi); free(nb);
    return NULL;
}

static double run_queries(job *j)
{
    pthread_t th[64];
    slice sl[64];
    long per = (j->queries + j->threads - 1) / j->threads;
    double t0 = now();
    for (int t = 0; t < j->threads; t++) {
        sl[t] = (slice){j, t * per, (t + 1) * per < j->queries ? (t + 1) * per : j->queries};
        pthread_create(&th[t], NULL, run_slice, &sl[t]);
    }
    for (int t = 0; t < j->threads; t++) pthread_join(th[t], NULL);
    return now() - t0;
}

static int mode_topk(job *j)
{
    ts_rng r;
    ts_rng_seed(&r, 1);
    float *V = malloc(sizeof(float) * (size_t)j->items * j->dim), *U = malloc(sizeof(float) * (size_t)j->queries * j->dim);
    j->result = malloc(sizeof(int32_t) * (size_t)j->queries * j->k);
    if (!V || !U || !j->result) { fprintf(stderr, "bench_topk: out of memory\n"); return 1; }
    for (long i = 0; i < j->items * j->dim; i++) V[i] = (float)ts_rng_normal(&r);
    for (long i = 0; i < j->queries * j->dim; i++) U[i] = (float)ts_rng_normal(&r);
    j->V = V; j->U = U;
    openblas_set_num_threads(1);
    /* check one query against a full scan with ts_topk */
    long save = j->queries;
    j->queries = 1; j->sgemm_only = 0;
    run_queries(j);
    j->queries = save;
    float *all = malloc(sizeof(float) * (size_t)j->items);
    int32_t *ref = malloc(sizeof(int32_t) * (size_t)j->k);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)j->items, j->dim, 1.0f, V, j->dim, U, 1, 0.0f, all, 1);
    ts_topk(all, j->items, j->k, ref);
    int same = 0;
    for (int i = 0; i < j->k; i++) same += ref[i] == j->result[i];
    free(all); free(ref);
    j->sgemm_only = 1;
    double ts = run_queries(j);
    j->sgemm_only = 0;
    double tt = run_queries(j);
    printf("topk: %ld items x %d dims, K = %d, %ld queries in batches of %d, blocks of %d items, %d thread(s)\n",
           j->items, j->dim, j->k, j->queries, j->batch, j->block, j->threads);
    printf("topk: blocked sgemm + ts_topk: %.1f queries/s (%.2f ms per query per thread)\n",
           j->queries / tt, 1e3 * tt * j->threads / j->queries);
    printf("topk: sgemm alone (the bound): %.1f queries/s, %.1f GFLOP/s\n", j->queries / ts,
           2.0 * j->items * j->dim * j->queries / ts * 1e-9);
    printf("topk: first query's top-%d equals a full scan's in %d of %d places (same scores up to sgemm rounding)\n",
           j->k, same, j->k);
    free(V); free(U); free(j->result);
    return 0;
}

/* One training step of the retrieval head, via the plugin, full or sampled. */
static double head_step_ms(job *j, const char *pairs, int steps)
{
    ts_err e = {{0}};
    const ts_plugin *p = ts_plugin_find(TS_HEAD, "retrieval", &e);
    if (!p) { fprintf(stderr, "bench_topk: %s\n", e.msg); exit(1); }
    const ts_head_ops *ops = p->ops;
    ts_ctx ctx;
    ts_ctx_init(&ctx, 1, j->batch);
    ctx.owner = "head.bench";
    ts_ini ini = {0};
    if (ts_ini_from_pairs(&ini, "head.bench", pairs, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    const ts_key *lists[1] = {p->keys};
    if (ts_cfg_validate(&ini.sec[0], NULL, lists, 1, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    ts_tensor in = {.dtype = TS_F32, .ndim = 2, .dim = {j->batch, j->dim}}, lab = {.dtype = TS_F32, .ndim = 2, .dim = {j->batch, 1}};
    in.x = malloc(sizeof(float) * (size_t)j->batch * j->dim);
    in.dx = calloc((size_t)j->batch * j->dim, sizeof(float));
    lab.x = malloc(sizeof(float) * (size_t)j->batch);
    ts_head H = {.name = "bench", .nin = 1, .in = {&in}, .label = &lab, .grad_scale = 1, .ctx = &ctx};
    float *arena = NULL;
    size_t an;
    if (ops->build(&H, &ini.sec[0], &e) || ts_ctx_alloc_params(&ctx, 0, &arena, &an, &e)) {
        fprintf(stderr, "bench_topk: %s\n", e.msg);
        exit(1);
    }
    ts_rng r;
    ts_rng_seed(&r, 2);
    double t = 0, loss;
    for (int s = -1; s < steps; s++) {          /* step -1 warms up */
        for (long i = 0; i < (long)j->batch * j->dim; i++) in.x[i] = (float)ts_rng_normal(&r);
        for (int i = 0; i < j->batch; i++)       /* Zipf-like targets: popular items more often */
            lab.x[i] = (float)(long)(exp(ts_rng_uniform(&r) * log(j->softmax_items + 1.0)) - 1);
        double t0 = now();
        if (ops->forward(&H, TS_TRAIN, &loss, &e)) { fprintf(stderr, "bench_topk: %s\n", e.msg); exit(1); }
        if (s >= 0) t += now() - t0;
        ts_params_zero_grad(&ctx);
    }
    ops->destroy(&H);
    free(in.x); free(in.dx); free(lab.x); free(arena);
    ts_ini_free(&ini);
    ts_ctx_free(&ctx);
    return 1e3 * t / steps;
}

static int mode_softmax(job *j)
{
    char full[256], samp[256];
    snprintf(full, sizeof full, "items=%d softmax=full", j->softmax_items);
    snprintf(samp, sizeof samp, "items=%d softmax=sampled negatives=%d", j->softmax_items, j->negatives);
    openblas_set_num_threads(j->threads);
    double mf = head_step_ms(j, full, 5), ms = head_step_ms(j, samp, 50);
    printf("softmax: %d items x %d dims, batch %d, %d BLAS thread(s); head forward + backward per step:\n",
           j->softmax_items, j->dim, j->batch, j->threads);
    printf("softmax: full     %8.2f ms/step  %9.0f examples/s\n", mf, j->batch / mf * 1e3);
    printf("softmax: sampled  %8.2f ms/step  %9.0f examples/s  (J = %d shared negatives, log-uniform, logQ)\n",
           ms, j->batch / ms * 1e3, j->negatives);
    printf("softmax: sampled is %.0fx faster\n", mf / ms);
    return 0;
}

int main(int argc, char **argv)
{
    job j = {.items = 1000000, .queries = 2048, .dim = 64, .k = 100, .batch = 256, .block = 4096,
             .threads = 1, .softmax_items = 100000, .negatives = 100};
    const char *mode = "all";
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--items")) j.items = atol(v);
        else if (!strcmp(a, "--dim")) j.dim = atoi(v);
        else if (!strcmp(a, "--k")) j.k = atoi(v);
        else if (!strcmp(a, "--queries")) j.queries = atol(v);
        else if (!strcmp(a, "--batch")) j.batch = atoi(v);
        else if (!strcmp(a, "--block")) j.block = atoi(v);
        else if (!strcmp(a, "--threads")) j.threads = atoi(v);
        else if (!strcmp(a, "--softmax-items")) j.softmax_items = atoi(v);
        else if (!strcmp(a, "--negatives")) j.negatives = atoi(v);
        else { fprintf(stderr, "bench_topk: unknown option %s (see the comment at the top of bench/bench_topk.c)\n", a); return 2; }
    }
    if (argc % 2 == 0) { fprintf(stderr, "bench_topk: every option takes a value\n"); return 2; }
    if (j.items < 1 || j.dim < 1 || j.k < 1 || j.queries < 1 || j.batch < 1 || j.block < 1 ||
        j.threads < 1 || j.threads > 64 || j.k > j.block) {
        fprintf(stderr, "bench_topk: sizes must be positive, threads at most 64 and k at most the block\n");
        return 2;
    }
    int rc = 0;
    if (!strcmp(mode, "topk") || !strcmp(mode, "all")) rc |= mode_topk(&j);
    if (!strcmp(mode, "softmax") || !strcmp(mode, "all")) rc |= mode_softmax(&j);
    return rc;
}
