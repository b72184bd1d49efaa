/* gates.h — reading a run's gates.csv (written by the mixture-of-experts layers' report(),
 * plugins/layers/moe.h) into one matrix per mixture: the program's `compare` draws them.
 * What it is not: the writer (the layers own that), nor the plotting (compare.c). */
#ifndef TS_GATES_H
#define TS_GATES_H

#include "tessera.h"

typedef struct ts_gate_mix {      /* one mixture: a layer's level */
    char layer[TS_NAME_MAX];      /* the layer's name; "" in a file of the older 3-column format */
    int level;                    /* 1..levels */
    int ngate, nexp;              /* rows (gates) and columns (experts), in file order */
    char (*gate)[TS_NAME_MAX];    /* (ngate) a task's name, or "shared" */
    char (*expert)[TS_NAME_MAX];  /* (nexp) "0", "shared.1", "income.0", ... */
    double *w;                    /* (ngate, nexp) mean gate weights; NAN where the gate does not
                                     choose among that expert */
} ts_gate_mix;

typedef struct ts_gates {
    int nmix;
    ts_gate_mix *mix;             /* (nmix) in the order of their first row in the file */
} ts_gates;

/* Limits past which rows are ignored (a file no layer of tessera writes). */
enum { TS_GATES_MAX_MIX = 64, TS_GATES_MAX_GATES = 64, TS_GATES_MAX_EXPERTS = 4096 };

/* Reads dir/gates.csv: the current format (layer,level,gate,expert,weight) or the older one
 * (task,expert,weight: one mixture, level 1). Returns 0, or -1 when there is no such regular
 * file, it holds no row, or memory ran out (g is then empty). Free with ts_gates_free. */
int ts_gates_read(const char *dir, ts_gates *g);
void ts_gates_free(ts_gates *g);

#endif /* TS_GATES_H */
