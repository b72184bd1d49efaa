/* bagmath.h — the bag kernels that embedding_bag and sparse_conv share: the sum of the table rows
 * a bag of ids names, and the gradient added back into those rows.
 *
 * What it is for: both layers multiply a sparse count vector x (the ids of a bag, an id counted
 * once per occurrence) by a table W (rows, ld): x W = sum_{i in bag} W[i], and backward adds
 * sc * d into W[i] for every id of the bag. embedding_bag uses whole rows (len = ld = E);
 * sparse_conv adds a filter block of a row (len = F of ld = window * F) at a time.
 * What it is not: a place for the layers' other maths. Each plugin that includes it gets its own
 * copies (static functions, vectorised through TS_VEC of vecmath.h).
 */
#ifndef TS_PLUGIN_BAGMATH_H
#define TS_PLUGIN_BAGMATH_H

#include <stddef.h>
#include <stdint.h>

#include "vecmath.h"

/* y (E) = sum of the rows W[ids[k]] (E each, ld = E floats apart), k < n (0 when n = 0), added in
 * the order of ids. Four rows per pass over y: y is loaded and stored once per four rows, and four
 * rows stream from memory at once (the table does not fit in cache; a bag's rows are scattered).
 * The sum per element is still (((y + w0) + w1) + w2) + w3, the order of one row at a time. */
TS_VEC static void ts_bag_sum(const float *restrict W, const int32_t *ids, int n, int E,
                              float *restrict y)
{
    if (n == 0) {
        for (int j = 0; j < E; j++) y[j] = 0.0f;
        return;
    }
    const float *w0 = W + (size_t)ids[0] * E;
    for (int j = 0; j < E; j++) y[j] = w0[j];
    int k = 1;
    for (; k + 4 <= n; k += 4) {
        const float *a = W + (size_t)ids[k] * E, *b = W + (size_t)ids[k + 1] * E,
                    *c = W + (size_t)ids[k + 2] * E, *d = W + (size_t)ids[k + 3] * E;
        for (int j = 0; j < E; j++) y[j] = (((y[j] + a[j]) + b[j]) + c[j]) + d[j];
    }
    for (; k < n; k++) {
        const float *w = W + (size_t)ids[k] * E;
        for (int j = 0; j < E; j++) y[j] += w[j];
    }
}

/* G[ids[k] * ld + j] += sc * d[j] for j < len, k < n: rows ld floats apart, len <= ld of each
 * (G may point inside a row: a block of it). Four rows per pass over d when the four ids differ
 * (a bag may hold an id twice; then those rows go one at a time, in order). Every row receives
 * the same sc * d[j] in the same order as a row-at-a-time loop. */
TS_VEC static void ts_bag_grad(float *G, long ld, const int32_t *ids, int n, int len, float sc,
                               const float *restrict d)
{
    int k = 0;
    for (; k + 4 <= n; k += 4) {
        int32_t i0 = ids[k], i1 = ids[k + 1], i2 = ids[k + 2], i3 = ids[k + 3];
        if (i0 != i1 && i0 != i2 && i0 != i3 && i1 != i2 && i1 != i3 && i2 != i3) {
            float *restrict a = G + (size_t)i0 * ld, *restrict b = G + (size_t)i1 * ld,
                  *restrict c = G + (size_t)i2 * ld, *restrict e = G + (size_t)i3 * ld;
            for (int j = 0; j < len; j++) {
                float t = sc * d[j];
                a[j] += t;
                b[j] += t;
                c[j] += t;
                e[j] += t;
            }
        } else {
            for (int q = 0; q < 4; q++) {
                float *g = G + (size_t)ids[k + q] * ld;
                for (int j = 0; j < len; j++) g[j] += sc * d[j];
            }
        }
    }
    for (; k < n; k++) {
        float *g = G + (size_t)ids[k] * ld;
        for (int j = 0; j < len; j++) g[j] += sc * d[j];
    }
}

#endif /* TS_PLUGIN_BAGMATH_H */
