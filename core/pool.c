/* pool.c — a fixed set of threads that run the tasks of one call at once: the independent
 * layers of a level of the graph, the optimizer's parameters ([train] threads,
 * docs/architecture.md "Branches"). The calling thread takes tasks too; ts_pool_run returns
 * when every task has run. Tasks are taken in order from a shared counter, so which thread runs
 * a task changes nothing a task computes. The threads take no signal (the training thread does).
 * Plugins reach the pool through ts_ctx_parallel (a head's rows, a layer alone in its level). */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

struct ts_pool {
    int n;                        /* threads, the caller's included */
    pthread_t *th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    long gen;
    atomic_long agen;             /* gen, read without the lock while polling */
    int busy, quit;
    int ntasks;
    atomic_int next;
    atomic_int active;            /* 1 while a call runs: a call from inside one runs alone */
    void (*fn)(void *arg, int task);
    void *arg;
};

static void take(ts_pool *p)
{
    for (int t; (t = atomic_fetch_add(&p->next, 1)) < p->ntasks;) p->fn(p->arg, t);
}

/* A worker polls for the next call a little before it sleeps: the calls of a training step
 * come every few hundred microseconds, and a sleeping thread takes tens of them to wake. */
#define SPIN 4000

static void *worker(void *arg)
{
    ts_pool *p = arg;
    long seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN && atomic_load(&p->agen) == seen; i++) ts_relax();
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        int quit = p->quit;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        if (quit) return NULL;
        take(p);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

ts_pool *ts_pool_new(int n)
{
    if (n < 2) return NULL;
    ts_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->th = calloc((size_t)n, sizeof *p->th))) { free(p); return NULL; }
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 1; i < n; i++) {
        if (pthread_create(&p->th[i], NULL, worker, p)) break;
        p->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!p->started) { ts_pool_free(p); return NULL; }
    p->n = p->started + 1;
    return p;
}

int ts_pool_threads(const ts_pool *p) { return p ? p->n : 1; }

void ts_pool_run(ts_pool *p, int ntasks, void (*fn)(void *arg, int task), void *arg)
{
    /* One call at a time: a call made while another runs (a plugin's ts_ctx_parallel from a
     * layer that runs beside others in its level, or from another thread) runs its tasks on
     * its own thread, in order. */
    if (!p || ntasks < 2 || atomic_exchange(&p->active, 1)) {
        for (int t = 0; t < ntasks; t++) fn(arg, t);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->ntasks = ntasks;
    atomic_store(&p->next, 0);
    pthread_mutex_lock(&p->mu);
    p->busy = p->started;
    p->gen++;
    atomic_store(&p->agen, p->gen);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    take(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    atomic_store(&p->active, 0);
}

void ts_pool_free(ts_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i <= p->started; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}
