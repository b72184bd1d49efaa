/* bench_rank.c — serving cost of the YouTube DNN's two stages for one user, as `tessera
 * recommend --rank` serves it, on trained runs (docs/models/youtube_ranking.md).
 *
 *   recall:  the user's history (the 50 watches before the last one) through the recall run's
 *            tower (one row), scores of every item s = V u + b (one sgemm row), earlier watches
 *            excluded, exact top 100 (ts_topk);
 *   ranking: the user's 100 candidate rows (ids, bags, quantile-normalised features: the
 *            dataset's batch()), the ranking tower over them (ts_exp_forward), sorted by z.
 * Each is repeated --reps times; prints milliseconds per user (mean, and the best repetition).
 * Not included: opening the runs (reading the data, computing every step's impressions and raw
 * features, which the ranking dataset does once at open). One core: run it with
 * OPENBLAS_NUM_THREADS=1 (the make target does). Not a test: it asserts nothing.
 *
 *   bench_rank RANKING_RUN RECALL_RUN [--user ID] [--reps N] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int by_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_rank RANKING_RUN RECALL_RUN [--user ID] [--reps N]\n");
        return 2;
    }
    const char *run = argv[1], *recall = argv[2];
    long want = 1, reps = 1000;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--user")) want = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atol(argv[i + 1]);
    }
    char cfg[4200], pp[4200], ov[4300];
    snprintf(cfg, sizeof cfg, "%s/config.ini", run);
    snprintf(pp, sizeof pp, "%s/params.bin", run);
    snprintf(ov, sizeof ov, "data.recall_run=%s", recall);
    char *over[] = {ov};
    ts_run_opts o = {.results_dir = run, .noverride = 1, .overrides = over};
    ts_err e;
    ts_exp *x = ts_exp_load(cfg, &o, &e);
    if (!x || ts_exp_build(x, &e) || ts_load_params(x, pp, &e)) {
        fprintf(stderr, "bench_rank: %s\n", e.msg);
        return 1;
    }
    ts_hnode *hn = NULL;
    for (int i = 0; i < x->nheads && !hn; i++) if (x->heads[i].weight > 0) hn = &x->heads[i];
    const void *p;
    long n, K;
    if (!hn || ts_ctx_aux(&x->ctx, "candidates", &p, &n)) { fprintf(stderr, "bench_rank: %s is not a ranking run\n", run); return 1; }
    K = *(const long *)p;
    ts_ctx_aux(&x->ctx, "step_user", &p, &n);
    const int32_t *suser = p;
    ts_ctx_aux(&x->ctx, "item_raw_id", &p, &n);
    const int32_t *own_raw = p;
    const ts_tensor *step = ts_ctx_field(&x->ctx, "step"), *hist = ts_ctx_field(&x->ctx, "history");
    long found = -1, nt = x->data.nrows[TS_TEST];
    for (long r = 0; r < nt && found < 0; r += K) {
        if (ts_exp_data_ops(x)->batch(&x->data, TS_TEST, &r, 1, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        if (suser[step->ids[0]] == want) found = r;
    }
    if (found < 0) { fprintf(stderr, "bench_rank: user %ld has no test step\n", want); return 1; }
    /* the user's history in the recall run's numbering */
    ts_retriever *R = ts_retriever_open(&x->ctx, recall, NULL, &e);
    if (!R) { fprintf(stderr, "bench_rank: %s\n", e.msg); return 1; }
    int N = ts_retriever_items(R);
    const int32_t *rraw, *rgoff = NULL, *rgids = NULL;
    ts_retriever_aux(R, "item_raw_id", &p, &n); rraw = p;
    if (ts_retriever_aux(R, "item_feature_off", &p, &n) == 0) rgoff = p;
    if (ts_retriever_aux(R, "item_feature_ids", &p, &n) == 0) rgids = p;
    int hn_ = hist->off[1] - hist->off[0];
    int32_t *hids = malloc((size_t)hn_ * sizeof *hids), hoff[2] = {0, 0}, goff[2] = {0, 0};
    int32_t *gids = malloc((size_t)hn_ * 32 * sizeof *gids);
    for (int j = 0; j < hn_; j++) {
        int32_t raw = own_raw[hist->ids[hist->off[0] + j]], it = -1;
        for (int q = 0; q < N && it < 0; q++) if (rraw[q] == raw) it = q;
        if (it < 0) continue;
        hids[hoff[1]++] = it;
        for (int32_t g = rgoff ? rgoff[it] : 0; rgoff && g < rgoff[it + 1]; g++) gids[goff[1]++] = rgids[g];
    }
    ts_tensor *th = ts_retriever_field(R, "history"), *tg = ts_retriever_field(R, "genres");
    th->ids = hids; th->off = hoff;
    if (tg) { tg->ids = gids; tg->off = goff; }
    float *s = malloc((size_t)N * sizeof *s), z[1024];
    int32_t top[1024];
    long *rows = malloc((size_t)K * sizeof *rows);
    for (long i = 0; i < K; i++) rows[i] = found + i;
    double t_rec = 0, t_rank = 0, best_rec = 1e9, best_rank = 1e9;
    for (long it = 0; it < reps; it++) {
        double t0 = now();
        if (ts_retriever_score(R, 1, s, NULL, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        for (int j = 0; j < hoff[1]; j++) s[hids[j]] = -INFINITY;   /* earlier watches */
        int m = ts_topk(s, N, (int)K, top);
        double t1 = now();
        if (ts_exp_data_ops(x)->batch(&x->data, TS_TEST, rows, (int)K, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = (int)K;
        if (ts_exp_forward(x, TS_TEST, (int)K, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        memcpy(z, hn->H.in[0]->x, (size_t)K * sizeof *z);
        qsort(z, (size_t)K, sizeof *z, by_desc);
        double t2 = now();
        (void)m;
        t_rec += t1 - t0; t_rank += t2 - t1;
        if (t1 - t0 < best_rec) best_rec = t1 - t0;
        if (t2 - t1 < best_rank) best_rank = t2 - t1;
    }
    printf("bench_rank: user %ld, %d items, top %ld candidates, %ld repetitions, one thread\n",
           want, N, K, reps);
    printf("  recall  (tower, V u + b over %d items, top %ld): %.3f ms per user (best %.3f)\n", N,
           K, 1e3 * t_rec / reps, 1e3 * best_rec);
    printf("  ranking (features of %ld rows, tower, sort):      %.3f ms per user (best %.3f)\n", K,
           1e3 * t_rank / reps, 1e3 * best_rank);
    printf("  both:                                            %.3f ms per user\n",
           1e3 * (t_rec + t_rank) / reps);
    free(s); free(rows); free(hids); free(gids);
    ts_retriever_close(R);
    ts_exp_free(x);
    return 0;
}
