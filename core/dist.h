/* dist.h — data-parallel training across processes. Built with `./configure --with-mpi` and
 * launched by `mpirun -np N tessera run EXP.ini`, every rank trains the same model on its slice
 * of each global batch and the gradients are summed over MPI; otherwise (no MPI in the build, or
 * a plain `tessera run`) every function below is the single-process identity and costs nothing.
 *
 * The contract the training loop (train.c) relies on:
 *  - every rank builds the same experiment from the same seed, so the initial weights agree;
 *  - rank 0 shuffles each epoch's order and broadcasts it (ts_dist_bcast_longs);
 *  - a global batch of size*batch rows is cut into per-rank slices; each rank scales its
 *    gradients by (its rows / the global batch's rows), then ts_dist_sum_grads leaves in every
 *    rank the gradient of the mean loss over the global batch;
 *  - rank 0 alone writes files (config.ini, train.csv, eval.csv, checkpoints, metrics.json);
 *  - an error on any rank ends the whole job (ts_dist_abort) with that rank's message. */
#ifndef TESSERA_DIST_H
#define TESSERA_DIST_H

#include <stddef.h>
#include "tessera.h"

/* Joins the job when launched by mpirun (MPI_Init); a no-op otherwise. 0 on success. */
int ts_dist_init(int *argc, char ***argv, ts_err *e);
void ts_dist_finalize(void);
int ts_dist_rank(void);          /* 0 without MPI */
int ts_dist_size(void);          /* 1 without MPI */
/* Ends every rank of the job (MPI_Abort) after this rank's message was printed; returns
 * without doing anything in a single process. */
void ts_dist_abort(int code);

/* Sums the gradients of every rank into every rank, in place: the dense ones in one allreduce
 * over g_dense (n_dense floats, one contiguous range of the arena), and the touched rows of each
 * sparse parameter as (row, values) pairs, marking the received rows touched. */
int ts_dist_sum_grads(ts_param *const *params, int nparams, float *g_dense, size_t n_dense,
                      ts_err *e);
/* Sums n doubles over the ranks, in place (losses for the log). */
int ts_dist_sum(double *v, int n, ts_err *e);
/* Rank 0's n longs to every rank (the epoch's shuffled order). */
int ts_dist_bcast_longs(long *v, long n, ts_err *e);

/* The weight of this rank's rows in the global batch this step (its rows / the global batch's):
 * ts_param_shard_scatter multiplies the gradient rows it sends by it (1 until set). */
void ts_dist_shard_scale(float c);

#endif
