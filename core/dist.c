/* dist.c — data-parallel training across processes (dist.h says the contract).
 *
 * Two builds share this file:
 *  - without TS_HAVE_MPI (the default `./configure`): one rank, every collective the identity;
 *  - with TS_HAVE_MPI (`./configure --with-mpi`): the collectives below run over MPI when the
 *    process was started by an MPI launcher (mpirun, mpiexec, srun with PMI/PMIx); a plain
 *    `tessera run` in the same build never calls MPI_Init and behaves as the first build.
 *
 * The gradient sum, for N ranks each holding the gradient g_r of its slice already scaled by
 * (its rows / the global batch's rows), leaves sum_r g_r, the gradient of the global batch's mean
 * loss, in every rank:
 *  - dense parameters: one in-place MPI_Allreduce(MPI_SUM) over the contiguous range g_dense;
 *  - sparse parameters (embedding tables): only touched rows travel. One MPI_Allgather tells
 *    every rank how many rows each rank touched in each table; then per table one
 *    MPI_Allgatherv of the row ids and one of the rows' values. Every rank rebuilds each touched
 *    row as ((0 + c_0) + c_1) + ... + c_{N-1}, the contributions in rank order, so all ranks hold
 *    bit-identical gradients (adding only the other ranks' rows onto one's own would sum in a
 *    different order on each rank from N = 3 on, and the replicas' weights would drift apart by
 *    rounding). The union of the rows is marked touched, so the optimizer updates exactly the
 *    rows a single process would have updated for the whole global batch. When the ranks
 *    together touch more than twice a table's rows, one allreduce of the whole table is
 *    cheaper than the values' allgatherv and replaces it (whole_table; the ids still travel so
 *    the union is marked). TESSERA_SPARSE_EXCHANGE=allgatherv|allreduce forces one way.
 * Bytes per step: ring allreduce sends about 2 (N-1)/N * 4 * n_dense per rank; the allgathers
 * deliver every rank's touched rows (4 * (1 + cols) bytes each) to every rank. */
#ifdef HAVE_CONFIG_H
#include "config.h"          /* TS_HAVE_MPI from ./configure --with-mpi */
#endif
#include "dist.h"

#ifndef TS_HAVE_MPI

/* ---- single process ------------------------------------------------------------------------ */
#include <stdlib.h>
#include <string.h>

/* Started by `mpirun -np N` (N > 1) in a build without MPI, every process would train the whole
 * model alone and all of them would write the same files: refuse, and say how to build. */
int ts_dist_init(int *argc, char ***argv, ts_err *e)
{
    (void)argc; (void)argv;
    const char *force = getenv("TESSERA_MPI");
    if (force && !strcmp(force, "0")) return 0;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1)
            return ts_fail(e, "this tessera was built without MPI, but an MPI launcher started %s "
                           "processes of it; rebuild with ./configure --with-mpi (apt-get install "
                           "libopenmpi-dev openmpi-bin), or set TESSERA_MPI=0 to run them as "
                           "independent single processes", v);
    }
    return 0;
}
void ts_dist_finalize(void) {}
int ts_dist_rank(void) { return 0; }
int ts_dist_size(void) { return 1; }
void ts_dist_abort(int code) { (void)code; }

int ts_dist_sum_grads(ts_param *const *params, int nparams, float *g_dense, size_t n_dense,
                      ts_err *e)
{
    (void)params; (void)nparams; (void)g_dense; (void)n_dense; (void)e;
    return 0;
}

int ts_dist_sum(double *v, int n, ts_err *e) { (void)v; (void)n; (void)e; return 0; }
int ts_dist_bcast_longs(long *v, long n, ts_err *e) { (void)v; (void)n; (void)e; return 0; }

void ts_dist_shard_scale(float c) { (void)c; }

/* One rank: every gather is a copy, every reduction the identity. */
int ts_dist_allgather(const void *mine, size_t bytes, void *all, ts_err *e)
{
    (void)e;
    if (bytes && all != mine) memmove(all, mine, bytes);
    return 0;
}
int ts_dist_allgatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of, ts_err *e)
{
    (void)bytes_of;
    return ts_dist_allgather(mine, bytes, all, e);
}
int ts_dist_sum_floats(float *v, size_t n, ts_err *e) { (void)v; (void)n; (void)e; return 0; }
int ts_dist_max(double *v, int n, ts_err *e) { (void)v; (void)n; (void)e; return 0; }
int ts_dist_bcast(void *v, size_t bytes, ts_err *e) { (void)v; (void)bytes; (void)e; return 0; }

/* One process holds the whole table (p->rows = p->shard_rows): plain loops. */
int ts_param_shard_gather(ts_param *p, const int32_t *ids, long n, float *out, ts_err *e)
{
    (void)e;
    for (long i = 0; i < n; i++)
        memcpy(out + i * p->cols, p->w + (size_t)ids[i] * p->cols, (size_t)p->cols * sizeof *out);
    return 0;
}

int ts_param_shard_scatter(ts_param *p, const int32_t *ids, long n, const float *d, ts_err *e)
{
    (void)e;
    for (long i = 0; i < n; i++) {
        float *g = p->g + (size_t)ids[i] * p->cols;
        const float *v = d + i * p->cols;
        for (int j = 0; j < p->cols; j++) g[j] += v[j];
        ts_param_touch(p, ids[i]);
    }
    return 0;
}

#else /* TS_HAVE_MPI */

/* ---- MPI ----------------------------------------------------------------------------------- */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest element count handed to one MPI call: counts are ints in the MPI-3 C interface. */
#define TS_DIST_CHUNK ((size_t)1 << 30)
/* Row datatypes kept for reuse, one per distinct width of a sparse table. */
#define TS_DIST_NTYPES 16

/* The job's state: one process is one rank, so one static instance. */
static struct {
    int active;               /* MPI is in use: we or our caller initialised it, size known */
    int owns_init;            /* we called MPI_Init, so we call MPI_Finalize */
    int rank, size;
    MPI_Comm comm;            /* a duplicate of MPI_COMM_WORLD: our traffic never mixes with a
                                 library's that shares the process */
    int checked;              /* the ranks agreed on the model's sizes (first sum_grads) */
    size_t checked_dense;     /* n_dense at that check */
    int checked_nsparse;
    int sparse_mode;          /* TESSERA_SPARSE_EXCHANGE: 0 auto, 1 allgatherv, 2 allreduce */
    /* buffers grown to the high-water mark, never shrunk: no allocation once warmed up */
    int *counts;              /* (size, nsparse) rows each rank touched in each sparse table */
    size_t counts_cap;
    int *mine;                /* (nsparse) this rank's touched rows per table */
    size_t mine_cap;
    int *rcount, *displ;      /* (size) rows from each rank, and where they start, for one table */
    int32_t *rows;            /* (total) every rank's touched row ids, rank after rank */
    size_t rows_cap;
    float *vals;              /* (total, cols) the values of those rows */
    size_t vals_cap;
    int ntypes;
    int type_cols[TS_DIST_NTYPES];
    MPI_Datatype type[TS_DIST_NTYPES];   /* cols contiguous floats: one row of a table */
} D = {.size = 1, .comm = MPI_COMM_NULL};

/* Sharded tables' exchange buffers (ts_param_shard_gather/_scatter, below). */
static struct {
    int *scount, *sdispl, *rcount, *rdispl;   /* (size) */
    long *perm;                               /* (n) the ids in owner order: perm[k] = i */
    size_t perm_cap;
    int32_t *sid, *rid;                       /* (n) sent / (total) received local rows */
    size_t sid_cap, rid_cap;
    float *sbuf, *rbuf;                       /* rows sent / received */
    size_t sbuf_cap, rbuf_cap;
    long nrecv;                               /* rows requested of this rank (total) */
    float scale;                              /* ts_dist_shard_scale; 0: not set (1) */
} S;

/* Fills e with "core/dist.c: WHAT failed on rank R of N: MPI's text; HINT" and returns -1. */
static int mpi_fail(ts_err *e, int rc, const char *what, const char *hint)
{
    char text[MPI_MAX_ERROR_STRING] = "unknown MPI error";
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", rc);
    return ts_fail(e, "core/dist.c: %s failed on rank %d of %d: %s; %s", what, D.rank, D.size,
                   text, hint);
}

#define NET_HINT "check that every host can reach the others (mpirun --mca btl_base_verbose 30 " \
                 "shows the transport) and that all ranks run the same tessera build"

/* Whether an MPI launcher started this process. Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE
 * (and PMIX_RANK); MPICH's hydra and Slurm's srun --mpi=pmi2 set PMI_SIZE / PMI_RANK; a PMIx
 * launcher sets PMIX_RANK. TESSERA_MPI=0 forces a single process (e.g. a tessera run started
 * by a script that itself runs under mpirun), TESSERA_MPI=1 forces MPI_Init (a singleton or an
 * unusual launcher). Without a launcher MPI_Init would try a singleton start, slow at best. */
static int launched_by_mpi(void)
{
    const char *force = getenv("TESSERA_MPI");
    if (force && *force) return strcmp(force, "0") != 0;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                       "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int ts_dist_init(int *argc, char ***argv, ts_err *e)
{
    if (D.active || !launched_by_mpi()) return 0;
    const char *mode = getenv("TESSERA_SPARSE_EXCHANGE");
    if (mode && *mode && strcmp(mode, "auto")) {
        if (!strcmp(mode, "allgatherv")) D.sparse_mode = 1;
        else if (!strcmp(mode, "allreduce")) D.sparse_mode = 2;
        else return ts_fail(e, "core/dist.c: TESSERA_SPARSE_EXCHANGE=%s: use auto (the default), "
                            "allgatherv or allreduce", mode);
    }
    int inited = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS)
            return ts_fail(e, "core/dist.c: MPI_Init failed (code %d); start tessera with mpirun "
                           "from the same MPI as this build (`mpicc --showme` names it), or set "
                           "TESSERA_MPI=0 to run one process", rc);
        D.owns_init = 1;
    }
    /* Errors come back as codes, so a failed collective ends in a sentence, not a trap. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    rc = MPI_Comm_dup(MPI_COMM_WORLD, &D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Comm_dup", NET_HINT);
    MPI_Comm_set_errhandler(D.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(D.comm, &D.rank);
    MPI_Comm_size(D.comm, &D.size);
    D.rcount = malloc((size_t)D.size * sizeof *D.rcount);
    D.displ = malloc((size_t)D.size * sizeof *D.displ);
    if (!D.rcount || !D.displ)
        return ts_fail(e, "core/dist.c: out of memory for %d ranks' counts", D.size);
    D.active = 1;
    return 0;
}

void ts_dist_finalize(void)
{
    if (!D.active) return;
    for (int i = 0; i < D.ntypes; i++) MPI_Type_free(&D.type[i]);
    D.ntypes = 0;
    free(D.counts); free(D.mine); free(D.rcount); free(D.displ); free(D.rows); free(D.vals);
    free(S.scount); free(S.perm); free(S.sid); free(S.rid); free(S.sbuf); free(S.rbuf);
    memset(&S, 0, sizeof S);   /* scale too: 1 again */
    D.counts = D.mine = D.rcount = D.displ = NULL;
    D.rows = NULL;
    D.vals = NULL;
    D.counts_cap = D.mine_cap = D.rows_cap = D.vals_cap = 0;
    MPI_Comm_free(&D.comm);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (D.owns_init && !finalized) MPI_Finalize();
    D.active = D.owns_init = D.checked = 0;
    D.rank = 0;
    D.size = 1;
}

int ts_dist_rank(void) { return D.active ? D.rank : 0; }
int ts_dist_size(void) { return D.active ? D.size : 1; }

void ts_dist_abort(int code)
{
    if (!D.active || D.size < 2) return;
    /* The caller printed this rank's message; make sure it leaves the process before the
     * launcher kills it, then end every rank so none waits forever in a collective. */
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}

/* buf grown to hold n elements of size sz, or NULL (buf still valid) when memory is short.
 * Capacities only grow (the high-water mark), so a warmed-up step allocates nothing. */
static void *grow(void *buf, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap) return buf;
    size_t c = *cap ? *cap : 64;
    while (c < n) c *= 2;
    void *p = realloc(buf, c * sz);
    if (p) *cap = c;
    return p;
}

static int ts_dist_allgather_one(const void *mine, size_t bytes, void *all)
{
    if (bytes && all != mine) memmove(all, mine, bytes);
    return 0;
}

static int out_of_memory(ts_err *e, size_t n, size_t sz)
{
    return ts_fail(e, "core/dist.c: out of memory for %zu MiB of gradient exchange buffers on "
                   "rank %d; use a smaller batch or fewer ranks per host", n * sz >> 20, D.rank);
}

/* The datatype of one row of cols floats, created once per width and kept. */
static int row_type(int cols, MPI_Datatype *t, int *temporary, ts_err *e)
{
    *temporary = 0;
    for (int i = 0; i < D.ntypes; i++)
        if (D.type_cols[i] == cols) { *t = D.type[i]; return 0; }
    int rc = MPI_Type_contiguous(cols, MPI_FLOAT, t);
    if (rc == MPI_SUCCESS) rc = MPI_Type_commit(t);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Type_contiguous (a table row)", NET_HINT);
    if (D.ntypes < TS_DIST_NTYPES) {
        D.type_cols[D.ntypes] = cols;
        D.type[D.ntypes++] = *t;
    } else {
        *temporary = 1;       /* more widths than slots: the caller frees it after use */
    }
    return 0;
}

static int is_exchanged(const ts_param *p)
{
    /* Tied copies share the owner's g (the owner is exchanged); frozen tables never update. */
    return !p->shared && (p->flags & TS_PARAM_SPARSE) && !(p->flags & TS_PARAM_FROZEN) &&
           !(p->flags & TS_PARAM_SHARDED);   /* a shard's rows were summed at their owner */
}

/* First call: every rank must have built the same model, or the collectives below would pair
 * buffers of different sizes (undefined behaviour, often a hang). One allreduce of the sizes'
 * minimum and maximum finds a mismatch and names it. */
static int check_agreement(size_t n_dense, int nsparse, ts_err *e)
{
    long mine[4] = {(long)n_dense, nsparse, -(long)n_dense, -nsparse}, all[4];
    int rc = MPI_Allreduce(mine, all, 4, MPI_LONG, MPI_MIN, D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Allreduce (model size check)", NET_HINT);
    if (all[0] != -all[2] || all[1] != -all[3])
        return ts_fail(e, "core/dist.c: the ranks built different models (dense gradient floats "
                       "%ld..%ld, sparse tables %ld..%ld across ranks; this rank: %zu and %d); "
                       "start every rank with the same experiment file, overrides and plugins",
                       all[0], -all[2], all[1], -all[3], n_dense, nsparse);
    D.checked = 1;
    D.checked_dense = n_dense;
    D.checked_nsparse = nsparse;
    return 0;
}

/* Allreduce of n floats in place, in chunks an int count can describe. */
static int allreduce_floats(float *v, size_t n, const char *what, ts_err *e)
{
    for (size_t off = 0; off < n; off += TS_DIST_CHUNK) {
        size_t k = n - off < TS_DIST_CHUNK ? n - off : TS_DIST_CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, v + off, (int)k, MPI_FLOAT, MPI_SUM, D.comm);
        if (rc != MPI_SUCCESS) return mpi_fail(e, rc, what, NET_HINT);
    }
    return 0;
}

/* Whether table p's rows travel better as one allreduce of the whole (rows, cols) table than
 * as an allgatherv of the touched rows. With total rows touched over the ranks, each rank of
 * a ring allgatherv receives (N-1)/N * total * cols floats; a ring allreduce of the table moves
 * 2 (N-1)/N * rows * cols. So past total = 2 * rows the whole table is cheaper (DSSM's
 * document word table, about 3,100 rows of 10,828 per rank, from 7 ranks on); every rank
 * decides from the same gathered counts. */
static int whole_table(const ts_param *p, size_t total)
{
    if (D.sparse_mode) return D.sparse_mode == 2;
    return total > 2 * (size_t)p->rows;
}

/* Exchanges the touched rows of table p, whose rows per rank are counts[r * ns + j]. */
static int sum_sparse(ts_param *p, int j, int ns, ts_err *e)
{
    const int N = D.size, cols = p->cols;
    size_t total = 0;
    for (int r = 0; r < N; r++) {
        D.rcount[r] = D.counts[(size_t)r * ns + j];
        D.displ[r] = (int)total;
        total += (size_t)D.rcount[r];
    }
    if (total == 0) return 0;                 /* nobody touched the table: nothing to send */
    if (total > (size_t)INT32_MAX)
        return ts_fail(e, "core/dist.c: %s: %zu touched rows over the ranks exceed what one "
                       "MPI call can describe; use a smaller batch", p->name, total);
    int whole = whole_table(p, total);
    int32_t *rows = grow(D.rows, &D.rows_cap, total, sizeof *D.rows);
    if (!rows) return out_of_memory(e, total, sizeof *D.rows);
    D.rows = rows;
    if (!whole) {
        float *vals = grow(D.vals, &D.vals_cap, total * (size_t)cols, sizeof *D.vals);
        if (!vals) return out_of_memory(e, total * (size_t)cols, sizeof *D.vals);
        D.vals = vals;
    }
    /* own part in place: (ntouched) row ids and their (ntouched, cols) values at this rank's slot */
    int32_t *my_rows = D.rows + D.displ[D.rank];
    memcpy(my_rows, p->touched, (size_t)p->ntouched * sizeof *my_rows);
    if (!whole) {
        float *my_vals = D.vals + (size_t)D.displ[D.rank] * cols;
        for (int k = 0; k < p->ntouched; k++)
            memcpy(my_vals + (size_t)k * cols, p->g + (size_t)p->touched[k] * cols,
                   (size_t)cols * sizeof(float));
    }
    /* the row ids travel either way: every rank must mark the union touched */
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, D.rows, D.rcount, D.displ,
                            MPI_INT32_T, D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Allgatherv (sparse row ids)", NET_HINT);
    for (size_t k = 0; k < total; k++)
        if (D.rows[k] < 0 || D.rows[k] >= p->rows)
            return ts_fail(e, "core/dist.c: %s: rank %d received row %d of a table of %d rows; the "
                           "ranks disagree on the model: start them with the same experiment "
                           "and build", p->name, D.rank, (int)D.rows[k], p->rows);
    if (whole) {
        /* untouched rows are zero on every rank, so the table's sum is the rows' sum */
        if (allreduce_floats(p->g, (size_t)p->rows * cols, "MPI_Allreduce (a sparse table)", e))
            return -1;
        for (size_t k = 0; k < total; k++) ts_param_touch(p, D.rows[k]);
        return 0;
    }
    MPI_Datatype t;
    int temporary;
    if (row_type(cols, &t, &temporary, e)) return -1;
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, D.vals, D.rcount, D.displ, t, D.comm);
    if (temporary) MPI_Type_free(&t);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Allgatherv (sparse row values)", NET_HINT);
    /* g's untouched rows are zero (the host zeroes touched rows each step); zero our own too,
     * then add every rank's rows in rank order so each rank computes the same float sums. */
    for (int k = 0; k < p->ntouched; k++)
        memset(p->g + (size_t)p->touched[k] * cols, 0, (size_t)cols * sizeof(float));
    for (size_t k = 0; k < total; k++) {
        int32_t r = D.rows[k];
        float *g = p->g + (size_t)r * cols;            /* (cols) */
        const float *v = D.vals + k * (size_t)cols;    /* (cols) */
        for (int c = 0; c < cols; c++) g[c] += v[c];
        ts_param_touch(p, r);
    }
    return 0;
}

int ts_dist_sum_grads(ts_param *const *params, int nparams, float *g_dense, size_t n_dense,
                      ts_err *e)
{
    if (!D.active || D.size < 2) return 0;
    int ns = 0;
    for (int i = 0; i < nparams; i++) ns += is_exchanged(params[i]);
    if ((!D.checked || D.checked_dense != n_dense || D.checked_nsparse != ns) &&
        check_agreement(n_dense, ns, e))
        return -1;
    /* dense: the whole range in place */
    if (allreduce_floats(g_dense, n_dense, "MPI_Allreduce (dense gradients)", e)) return -1;
    if (ns == 0) return 0;
    /* sparse: how many rows each rank touched in each table, in one allgather */
    int *counts = grow(D.counts, &D.counts_cap, (size_t)D.size * ns, sizeof *D.counts);
    if (!counts) return out_of_memory(e, (size_t)D.size * ns, sizeof *D.counts);
    D.counts = counts;
    int *mine = grow(D.mine, &D.mine_cap, (size_t)ns, sizeof *D.mine);
    if (!mine) return out_of_memory(e, (size_t)ns, sizeof *D.mine);
    D.mine = mine;
    for (int i = 0, j = 0; i < nparams; i++)
        if (is_exchanged(params[i])) D.mine[j++] = params[i]->ntouched;
    int rc = MPI_Allgather(D.mine, ns, MPI_INT, D.counts, ns, MPI_INT, D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Allgather (sparse row counts)", NET_HINT);
    for (int i = 0, j = 0; i < nparams; i++)
        if (is_exchanged(params[i]) && sum_sparse(params[i], j++, ns, e)) return -1;
    return 0;
}

int ts_dist_sum(double *v, int n, ts_err *e)
{
    if (!D.active || D.size < 2 || n <= 0) return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, D.comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(e, rc, "MPI_Allreduce (sums of doubles)", NET_HINT);
}

int ts_dist_bcast_longs(long *v, long n, ts_err *e)
{
    if (!D.active || D.size < 2) return 0;
    for (long off = 0; off < n; off += (long)TS_DIST_CHUNK) {
        long k = n - off < (long)TS_DIST_CHUNK ? n - off : (long)TS_DIST_CHUNK;
        int rc = MPI_Bcast(v + off, (int)k, MPI_LONG, 0, D.comm);
        if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Bcast (the epoch's order)", NET_HINT);
    }
    return 0;
}

/* ---- collectives for plugins that split their work (tessera.h) ------------------------------ */

int ts_dist_allgather(const void *mine, size_t bytes, void *all, ts_err *e)
{
    if (!D.active || D.size < 2) return ts_dist_allgather_one(mine, bytes, all);
    if (bytes > (size_t)INT32_MAX)
        return ts_fail(e, "core/dist.c: an allgather of %zu bytes a rank exceeds MPI's int counts",
                       bytes);
    int rc = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, D.comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(e, rc, "MPI_Allgather", NET_HINT);
}

int ts_dist_allgatherv(const void *mine, size_t bytes, void *all, const size_t *bytes_of, ts_err *e)
{
    if (!D.active || D.size < 2) return ts_dist_allgather_one(mine, bytes, all);
    int *cnt = malloc(2 * (size_t)D.size * sizeof *cnt);
    if (!cnt) return out_of_memory(e, 2 * (size_t)D.size, sizeof *cnt);
    size_t tot = 0;
    for (int r = 0; r < D.size; r++) {
        cnt[D.size + r] = (int)tot;
        cnt[r] = (int)bytes_of[r];
        tot += bytes_of[r];
    }
    if (tot > (size_t)INT32_MAX || bytes != bytes_of[D.rank]) {
        free(cnt);
        return ts_fail(e, "core/dist.c: an allgatherv of %zu bytes (this rank %zu, expected %zu) "
                       "exceeds MPI's int counts or disagrees with the ranks' sizes; use a "
                       "smaller batch", tot, bytes, bytes_of[D.rank]);
    }
    int rc = MPI_Allgatherv(mine, (int)bytes, MPI_BYTE, all, cnt, cnt + D.size, MPI_BYTE, D.comm);
    free(cnt);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(e, rc, "MPI_Allgatherv", NET_HINT);
}

int ts_dist_sum_floats(float *v, size_t n, ts_err *e)
{
    if (!D.active || D.size < 2 || n == 0) return 0;
    return allreduce_floats(v, n, "MPI_Allreduce (floats)", e);
}

int ts_dist_max(double *v, int n, ts_err *e)
{
    if (!D.active || D.size < 2 || n <= 0) return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, D.comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(e, rc, "MPI_Allreduce (maximum)", NET_HINT);
}

int ts_dist_bcast(void *v, size_t bytes, ts_err *e)
{
    if (!D.active || D.size < 2 || bytes == 0) return 0;
    if (bytes > (size_t)INT32_MAX)
        return ts_fail(e, "core/dist.c: a broadcast of %zu bytes exceeds MPI's int counts", bytes);
    int rc = MPI_Bcast(v, (int)bytes, MPI_BYTE, 0, D.comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(e, rc, "MPI_Bcast", NET_HINT);
}

/* ---- sharded tables ------------------------------------------------------------------------
 * Row r of a sharded table lives on rank r % size at local row r / size. A lookup of n ids:
 *  1. each id goes to its owner: the ids are ordered by owner (a stable counting sort, so each
 *     owner sees a rank's ids in their batch order), one MPI_Alltoall of the counts, one
 *     MPI_Alltoallv of the local row numbers;
 *  2. each owner copies the requested rows and one MPI_Alltoallv (a row datatype) returns them;
 *  3. the rows are put back in the ids' order.
 * The gradient goes the same way with the values: the owner adds the rows of rank 0 first, then
 * rank 1, ..., each in batch order; this is the order one process adds the global batch's rows
 * in (the global batch is the ranks' slices one after the other), so the table's gradient is
 * the one-process gradient, bit for bit. Ids are not de-duplicated (that would change the order
 * of the sums); bytes per rank and step: 4 n (ids) + 4 n cols (rows) each way. */

/* Routes n ids to their owners: fills S.perm, the counts and S.rid (the local rows this rank
 * serves, rank after rank). */
static int shard_route(const ts_param *p, const int32_t *ids, long n, ts_err *e)
{
    int sz = D.size;
    if (!S.scount) {
        S.scount = calloc((size_t)sz * 4, sizeof(int));
        if (!S.scount) return out_of_memory(e, (size_t)sz * 4, sizeof(int));
        S.sdispl = S.scount + sz;
        S.rcount = S.sdispl + sz;
        S.rdispl = S.rcount + sz;
    }
    if (n > INT32_MAX) return ts_fail(e, "core/dist.c: %ld lookups of %s in one step exceed "
                                      "MPI's int counts; use a smaller batch", n, p->name);
    long *perm = grow(S.perm, &S.perm_cap, (size_t)(n ? n : 1), sizeof *S.perm);
    if (!perm) return out_of_memory(e, (size_t)n, sizeof *S.perm);
    S.perm = perm;
    int32_t *sid = grow(S.sid, &S.sid_cap, (size_t)(n ? n : 1), sizeof *S.sid);
    if (!sid) return out_of_memory(e, (size_t)n, sizeof *S.sid);
    S.sid = sid;
    memset(S.scount, 0, (size_t)sz * sizeof(int));
    for (long i = 0; i < n; i++) S.scount[ids[i] % sz]++;
    for (int r = 0, o = 0; r < sz; r++) { S.sdispl[r] = o; o += S.scount[r]; }
    for (int r = 0; r < sz; r++) S.rdispl[r] = S.sdispl[r];   /* a cursor per owner */
    for (long i = 0; i < n; i++) {
        int o = ids[i] % sz;
        long k = S.rdispl[o]++;
        S.perm[k] = i;
        S.sid[k] = ids[i] / sz;
    }
    int rc = MPI_Alltoall(S.scount, 1, MPI_INT, S.rcount, 1, MPI_INT, D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Alltoall (shard lookup counts)", NET_HINT);
    long tot = 0;
    for (int r = 0; r < sz; r++) { S.rdispl[r] = (int)tot; tot += S.rcount[r]; }
    if (tot > INT32_MAX) return ts_fail(e, "core/dist.c: rank %d serves %ld rows of %s in one "
                                        "step; use a smaller batch", D.rank, tot, p->name);
    S.nrecv = tot;
    int32_t *rid = grow(S.rid, &S.rid_cap, (size_t)(tot ? tot : 1), sizeof *S.rid);
    if (!rid) return out_of_memory(e, (size_t)tot, sizeof *S.rid);
    S.rid = rid;
    rc = MPI_Alltoallv(S.sid, S.scount, S.sdispl, MPI_INT32_T, S.rid, S.rcount, S.rdispl,
                       MPI_INT32_T, D.comm);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Alltoallv (shard row ids)", NET_HINT);
    for (long k = 0; k < tot; k++)
        if (S.rid[k] < 0 || S.rid[k] >= p->rows)
            return ts_fail(e, "core/dist.c: rank %d was asked for local row %d of %s, which has "
                           "%d here; the ranks built different models (start them with the same "
                           "experiment file and overrides)", D.rank, S.rid[k], p->name, p->rows);
    return 0;
}

static int shard_bufs(const ts_param *p, long n, ts_err *e)
{
    size_t c = (size_t)p->cols;
    float *a = grow(S.sbuf, &S.sbuf_cap, (size_t)(n ? n : 1) * c, sizeof *S.sbuf);
    if (!a) return out_of_memory(e, (size_t)n * c, sizeof *S.sbuf);
    S.sbuf = a;
    float *b = grow(S.rbuf, &S.rbuf_cap, (size_t)(S.nrecv ? S.nrecv : 1) * c, sizeof *S.rbuf);
    if (!b) return out_of_memory(e, (size_t)S.nrecv * c, sizeof *S.rbuf);
    S.rbuf = b;
    return 0;
}

void ts_dist_shard_scale(float c) { S.scale = c; }

int ts_param_shard_gather(ts_param *p, const int32_t *ids, long n, float *out, ts_err *e)
{
    size_t c = (size_t)p->cols;
    if (!D.active || D.size < 2 || !(p->flags & TS_PARAM_SHARDED)) {
        for (long i = 0; i < n; i++) memcpy(out + i * c, p->w + (size_t)ids[i] * c, c * 4);
        return 0;
    }
    if (shard_route(p, ids, n, e) || shard_bufs(p, n, e)) return -1;
    for (long k = 0; k < S.nrecv; k++)      /* the rows asked of this rank, in request order */
        memcpy(S.rbuf + k * c, p->w + (size_t)S.rid[k] * c, c * 4);
    MPI_Datatype t;
    int tmp, rc;
    if (row_type(p->cols, &t, &tmp, e)) return -1;
    rc = MPI_Alltoallv(S.rbuf, S.rcount, S.rdispl, t, S.sbuf, S.scount, S.sdispl, t, D.comm);
    if (tmp) MPI_Type_free(&t);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Alltoallv (shard rows)", NET_HINT);
    for (long k = 0; k < n; k++) memcpy(out + S.perm[k] * c, S.sbuf + k * c, c * 4);
    return 0;
}

int ts_param_shard_scatter(ts_param *p, const int32_t *ids, long n, const float *d, ts_err *e)
{
    size_t c = (size_t)p->cols;
    if (!D.active || D.size < 2 || !(p->flags & TS_PARAM_SHARDED)) {
        for (long i = 0; i < n; i++) {
            float *g = p->g + (size_t)ids[i] * c;
            for (size_t j = 0; j < c; j++) g[j] += d[i * c + j];
            ts_param_touch(p, ids[i]);
        }
        return 0;
    }
    if (shard_route(p, ids, n, e) || shard_bufs(p, n, e)) return -1;
    float w = S.scale != 0 ? S.scale : 1.0f;
    for (long k = 0; k < n; k++) {
        float *o = S.sbuf + k * c;
        const float *v = d + S.perm[k] * c;
        if (w == 1.0f) memcpy(o, v, c * 4);
        else for (size_t j = 0; j < c; j++) o[j] = v[j] * w;
    }
    MPI_Datatype t;
    int tmp, rc;
    if (row_type(p->cols, &t, &tmp, e)) return -1;
    rc = MPI_Alltoallv(S.sbuf, S.scount, S.sdispl, t, S.rbuf, S.rcount, S.rdispl, t, D.comm);
    if (tmp) MPI_Type_free(&t);
    if (rc != MPI_SUCCESS) return mpi_fail(e, rc, "MPI_Alltoallv (shard gradient rows)", NET_HINT);
    for (long k = 0; k < S.nrecv; k++) {    /* rank 0's rows first, each rank's in batch order */
        float *g = p->g + (size_t)S.rid[k] * c;
        const float *v = S.rbuf + k * c;
        for (size_t j = 0; j < c; j++) g[j] += v[j];
        ts_param_touch(p, S.rid[k]);
    }
    return 0;
}

#endif /* TS_HAVE_MPI */
