/* metrics.c — the evaluation kernels every head shares: exact AUC with ties, logloss,
 * top-K selection and rank of a target. Pure functions over explicit buffers. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float s; float y; float w; } scored;

static int by_score(const void *a, const void *b)
{
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

/* AUC = P(score of a random positive > score of a random negative) + 0.5 P(tie), weighted:
 * sort by score, walk groups of equal scores; each positive in a group beats the negative
 * weight seen before the group and ties with half the negative weight inside it. A row whose
 * label is NaN has none (a masked task) and is left out. */
double ts_auc(const float *score, const float *label, const float *w, long n)
{
    scored *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return NAN;
    long m = 0;
    for (long i = 0; i < n; i++) {
        if (isnan(label[i])) continue;
        v[m].s = score[i];
        v[m].y = label[i] > 0.5f;
        v[m].w = w ? w[i] : 1.0f;
        m++;
    }
    n = m;
    qsort(v, (size_t)n, sizeof *v, by_score);
    double neg_below = 0, pos_total = 0, neg_total = 0, num = 0;
    for (long i = 0; i < n;) {
        long j = i;
        double pos = 0, neg = 0;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].y > 0.5f) pos += v[j].w; else neg += v[j].w;
            j++;
        }
        num += pos * (neg_below + 0.5 * neg);
        neg_below += neg;
        pos_total += pos;
        neg_total += neg;
        i = j;
    }
    free(v);
    if (pos_total <= 0 || neg_total <= 0) return NAN;
    return num / (pos_total * neg_total);
}

double ts_logloss(const float *p, const float *label, const float *w, long n)
{
    double s = 0, ws = 0;
    for (long i = 0; i < n; i++) {
        double q = p[i], wi = w ? w[i] : 1.0;
        if (isnan(label[i])) continue;           /* no label: a masked row */
        if (q < 1e-7) q = 1e-7;
        if (q > 1 - 1e-7) q = 1 - 1e-7;
        s += -wi * (label[i] > 0.5f ? log(q) : log(1 - q));
        ws += wi;
    }
    return ws > 0 ? s / ws : NAN;
}

/* Min-heap of k (score, index) pairs: the root is the weakest of the best k so far. A
 * candidate enters when it beats the root; ties go to the lower index (seen first). */
static int worse(float sa, int32_t ia, float sb, int32_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

static void sift_down(float *hs, int32_t *hi, int k, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && worse(hs[l], hi[l], hs[m], hi[m])) m = l;
        if (r < k && worse(hs[r], hi[r], hs[m], hi[m])) m = r;
        if (m == i) return;
        float ts = hs[i]; hs[i] = hs[m]; hs[m] = ts;
        int32_t ti = hi[i]; hi[i] = hi[m]; hi[m] = ti;
        i = m;
    }
}

int ts_topk(const float *s, long n, int k, int32_t *top)
{
    if (k <= 0) return 0;
    float *hs = malloc((size_t)k * sizeof *hs);
    if (!hs) return 0;
    int m = 0;
    for (long j = 0; j < n; j++) {
        float v = s[j];
        if (v == -INFINITY || v != v) continue;
        if (m < k) {
            /* sift up */
            int i = m++;
            hs[i] = v; top[i] = (int32_t)j;
            while (i > 0) {
                int p = (i - 1) / 2;
                if (!worse(hs[i], top[i], hs[p], top[p])) break;
                float ts = hs[i]; hs[i] = hs[p]; hs[p] = ts;
                int32_t ti = top[i]; top[i] = top[p]; top[p] = ti;
                i = p;
            }
        } else if (worse(hs[0], top[0], v, (int32_t)j)) {
            hs[0] = v; top[0] = (int32_t)j;
            sift_down(hs, top, k, 0);
        }
    }
    /* Heap sort in place: repeatedly move the weakest to the end, so the result is best first. */
    for (int end = m - 1; end > 0; end--) {
        float ts = hs[0]; hs[0] = hs[end]; hs[end] = ts;
        int32_t ti = top[0]; top[0] = top[end]; top[end] = ti;
        sift_down(hs, top, end, 0);
    }
    free(hs);
    return m;
}

long ts_rank_of(const float *s, long n, long target)
{
    float st = s[target];
    long r = 1;
    for (long j = 0; j < n; j++)
        if (s[j] > st || (s[j] == st && j < target)) r++;
    return r;
}
