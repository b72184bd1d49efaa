/* util.c — errors, random numbers and tensor helpers of libtessera.
 * Small, dependency-free pieces every other file uses; no I/O and no global state here. */
#include "internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ts_fail(ts_err *e, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* splitmix64: expands one seed into well-mixed state words. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ts_rng_seed(ts_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ts_rng_next(ts_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}

double ts_rng_uniform(ts_rng *r) { return (ts_rng_next(r) >> 11) * 0x1.0p-53; }

double ts_rng_normal(ts_rng *r)
{
    double u1 = ts_rng_uniform(r), u2 = ts_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t ts_rng_below(ts_rng *r, uint64_t n)
{
    /* Lemire's nearly-divisionless method would do; plain rejection keeps it obviously unbiased. */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = ts_rng_next(r); while (x >= lim);
    return x % n;
}

void ts_rng_shuffle(ts_rng *r, long *a, long n)
{
    for (long i = n - 1; i > 0; i--) {
        long j = (long)ts_rng_below(r, (uint64_t)i + 1), t = a[i];
        a[i] = a[j]; a[j] = t;
    }
}

long ts_numel(const ts_tensor *t)
{
    long n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->dim[i];
    return n;
}

long ts_rowsize(const ts_tensor *t)
{
    long n = 1;
    for (int i = 1; i < t->ndim; i++) n *= t->dim[i];
    return n;
}

const char *ts_shape_str(const ts_tensor *t, char *buf, size_t n)
{
    static const char *names[] = {"f32", "i32", "bags"};
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %d" : "%d", t->dim[i]);
    if (k < n) snprintf(buf + k, n - k, ") %s", t->dtype <= TS_BAGS ? names[t->dtype] : "?");
    return buf;
}

int ts_grow_pair(float **a, float **b, long *cap, long need)
{
    if (need <= *cap) return 0;
    long c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    float *p = realloc(*a, sizeof(float) * (size_t)c);
    if (!p) return -1;
    *a = p;
    float *q = realloc(*b, sizeof(float) * (size_t)c);
    if (!q) return -1;     /* *a is larger than *cap says: harmless, it is grown again */
    *b = q;
    *cap = c;
    return 0;
}
