/* gates.c — reads gates.csv (gates.h): every mixture layer and level of a run, as one
 * (gates, experts) matrix each, with NAN where a gate does not reach an expert (PLE's task gates
 * see the shared experts and their own task's, not the other tasks'). Part of the program, for
 * `tessera compare`'s gate plots; it never writes the file. */
#include "gates.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cell { int g, x; double w; } cell;
typedef struct build { ts_gate_mix m; cell *c; int nc, cap, gcap, xcap; } build;

/* The index of name in a growing list of names (*n of them, room for *cap), added when new;
 * -1 past max or out of memory. */
static int name_index(char (**list)[TS_NAME_MAX], int *n, int *cap, const char *name, int max)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp((*list)[i], name)) return i;
    if (*n >= max) return -1;
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 8;
        char (*t)[TS_NAME_MAX] = realloc(*list, (size_t)c * sizeof *t);
        if (!t) return -1;
        *list = t;
        *cap = c;
    }
    snprintf((*list)[*n], TS_NAME_MAX, "%s", name);
    return (*n)++;
}

static int add_cell(build *b, const char *gate, const char *expert, double w)
{
    int gi = name_index(&b->m.gate, &b->m.ngate, &b->gcap, gate, TS_GATES_MAX_GATES);
    int xi = gi < 0 ? -1 : name_index(&b->m.expert, &b->m.nexp, &b->xcap, expert, TS_GATES_MAX_EXPERTS);
    if (xi < 0) return 0;   /* past the limits: ignored */
    if (b->nc == b->cap) {
        int c = b->cap ? 2 * b->cap : 64;
        cell *t = realloc(b->c, (size_t)c * sizeof *t);
        if (!t) return -1;
        b->c = t;
        b->cap = c;
    }
    b->c[b->nc++] = (cell){gi, xi, w};
    return 0;
}

/* The matrix of a mixture from its cells; the last row of a repeated cell wins. */
static int finish(build *b)
{
    ts_gate_mix *m = &b->m;
    m->w = malloc((size_t)(m->ngate ? m->ngate : 1) * (m->nexp ? m->nexp : 1) * sizeof *m->w);
    if (!m->w) return -1;
    for (long i = 0; i < (long)m->ngate * m->nexp; i++) m->w[i] = NAN;
    for (int i = 0; i < b->nc; i++) m->w[(long)b->c[i].g * m->nexp + b->c[i].x] = b->c[i].w;
    return 0;
}

static void free_mix(ts_gate_mix *m)
{
    free(m->gate);
    free(m->expert);
    free(m->w);
}

int ts_gates_read(const char *dir, ts_gates *g)
{
    char p[TS_PATH_MAX + 16], line[1024];
    snprintf(p, sizeof p, "%s/gates.csv", dir);
    memset(g, 0, sizeof *g);
    FILE *f = ts_fopen_regular(p);
    if (!f) return -1;
    build *b = NULL;
    int nb = 0, rc = 0, old = -1;
    while (!rc && fgets(line, sizeof line, f)) {
        char *fld[6];
        line[strcspn(line, "\r\n")] = 0;
        int n = ts_split(line, ",", fld, 5);
        if (old < 0) {   /* the header says which format */
            old = n == 3 && !strcmp(fld[0], "task");
            if (old || (n == 5 && !strcmp(fld[0], "layer"))) continue;
            old = 0;
        }
        if (n != (old ? 3 : 5)) continue;
        char *end;
        const char *layer = old ? "" : fld[0];
        long level = old ? 1 : strtol(fld[1], &end, 10);
        if (!old && (*end || level < 1)) continue;
        double w = strtod(fld[old ? 2 : 4], &end);
        if (*end || !isfinite(w)) continue;
        int m = 0;
        while (m < nb && (strcmp(b[m].m.layer, layer) || b[m].m.level != level)) m++;
        if (m == nb) {
            if (nb == TS_GATES_MAX_MIX) continue;
            build *t = realloc(b, (size_t)(nb + 1) * sizeof *t);
            if (!t) { rc = -1; break; }
            b = t;
            memset(&b[nb], 0, sizeof b[nb]);
            snprintf(b[nb].m.layer, TS_NAME_MAX, "%s", layer);
            b[nb].m.level = (int)level;
            nb++;
        }
        rc = add_cell(&b[m], fld[old ? 0 : 2], fld[old ? 1 : 3], w);
    }
    fclose(f);
    for (int m = 0; !rc && m < nb; m++) rc = finish(&b[m]);
    if (!rc && nb > 0 && (g->mix = malloc((size_t)nb * sizeof *g->mix))) {
        for (int m = 0; m < nb; m++) g->mix[m] = b[m].m;
        g->nmix = nb;
    } else {
        for (int m = 0; m < nb; m++) free_mix(&b[m].m);
    }
    for (int m = 0; m < nb; m++) free(b[m].c);
    free(b);
    return g->nmix ? 0 : -1;
}

void ts_gates_free(ts_gates *g)
{
    for (int m = 0; m < g->nmix; m++) free_mix(&g->mix[m]);
    free(g->mix);
    g->mix = NULL;
    g->nmix = 0;
}
