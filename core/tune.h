/* tune.h — the pure pieces of `tessera tune` (core/tune.c): reading one KEY=SPEC argument into
 * a fixed value, a list, a range or a log-uniform range; drawing the trials of a grid or of a
 * random search; choosing the best trial from validation figures. No I/O, no processes: the
 * program's part (running trials, reports) stays in tune.c, and tests/test_tune.c tests these. */
#ifndef TESSERA_TUNE_H
#define TESSERA_TUNE_H

#include <stddef.h>
#include "tessera.h"

#define TS_TUNE_KEY_MAX 160      /* bytes of "section.key" */
#define TS_TUNE_VAL_MAX 256      /* bytes of one value */
#define TS_TUNE_MAX_KEYS 16      /* keys one search may vary */
#define TS_TUNE_MAX_VALUES 64    /* values of one list */
#define TS_TUNE_MAX_GRID 256     /* trials of a grid; a larger one needs --random */
#define TS_TUNE_MAX_TRIALS 1000  /* --random N at most */

typedef enum ts_tune_kind {
    TS_TUNE_FIXED = 0,           /* KEY=VALUE: a plain override of every trial */
    TS_TUNE_LIST,                /* KEY=V1,V2,...: the grid's axis, or a uniform choice */
    TS_TUNE_RANGE,               /* KEY=LO:HI: uniform in [LO, HI] (--random only) */
    TS_TUNE_LOG                  /* KEY=log:LO:HI: log-uniform in [LO, HI], LO > 0 (--random) */
} ts_tune_kind;

typedef struct ts_tune_key {
    char key[TS_TUNE_KEY_MAX];   /* "layer.mix.units" */
    ts_tune_kind kind;
    int integer;                 /* a range written with whole numbers: draws stay whole */
    double lo, hi;               /* a range's ends */
    int nval;                    /* a list's values (a fixed key: one) */
    char val[TS_TUNE_MAX_VALUES][TS_TUNE_VAL_MAX];
} ts_tune_key;

/* One trial: the value of each searched key, in the order of the keys (their `vals`). */
typedef struct ts_tune_trial {
    char val[TS_TUNE_MAX_KEYS][TS_TUNE_VAL_MAX];
} ts_tune_trial;

/* Reads "SECTION.KEY=SPEC" into k. A SPEC with a comma is a list, "log:LO:HI" a log-uniform
 * range, "LO:HI" of two numbers a range (integers when both are written as integers), anything
 * else one fixed value. Refuses with a sentence in e: no '=' or no section, an empty value or
 * list element, a value listed twice, LO > HI (or LO = HI), a log range with LO <= 0, a key
 * the search may not vary (the seed, the name, the data split). */
int ts_tune_parse_key(const char *arg, ts_tune_key *k, ts_err *e);

/* The number of trials of the grid of the list keys (product of their sizes; 1 without any),
 * or -1 when it is over TS_TUNE_MAX_GRID. */
long ts_tune_grid_size(const ts_tune_key *keys, int nkeys);

/* The trials of a grid: every combination of the list keys, the last key varying fastest.
 * Refuses a range (it has no grid: --random) and a grid over TS_TUNE_MAX_GRID. Fills t[0..n). */
int ts_tune_grid(const ts_tune_key *keys, int nkeys, ts_tune_trial *t, int max, int *n, ts_err *e);

/* n random trials drawn with seed: a list key uniformly among its values, a range uniformly
 * (a whole number when integer), a log range log-uniformly; numbers written with %.4g. A trial
 * equal to an earlier one is drawn again (up to 200 times); when the space has fewer distinct
 * trials than n, *got says how many were drawn. Fixed keys are not part of a trial. */
int ts_tune_random(const ts_tune_key *keys, int nkeys, int n, uint64_t seed, ts_tune_trial *t,
                   int *got, ts_err *e);

/* Lower is better for losses and errors (names holding loss, mse, mae, rmse: logloss too), as
 * [train] early_stop decides; higher for AUC, MRR, recall and the rest. */
int ts_tune_lower_better(const char *metric);

/* The index of the best of n trials by their validation figure (valid[i], used only where
 * ok[i]; NaN never wins), lowest or highest by `lower`; ties go to the lower index, so a
 * default placed first is kept unless a trial beats it. -1 when no trial has a figure. */
int ts_tune_choose(const double *valid, const unsigned char *ok, int n, int lower);

#endif
