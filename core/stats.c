/* stats.c — the statistics of a comparison: mean and sample standard deviation over seeds,
 * and the paired t-test (with Student's t distribution through the regularised incomplete
 * beta function). Pure functions, tested against hand-computed values; no I/O. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

/* ---- statistics ---------------------------------------------------------------------------- */
/* Regularised incomplete beta I_x(a, b) by Lentz's continued fraction. */
static double betacf(double a, double b, double x)
{
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < 1e-300) d = 1e-300;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 300; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d; if (fabs(d) < 1e-300) d = 1e-300;
        c = 1 + aa / c; if (fabs(c) < 1e-300) c = 1e-300;
        d = 1 / d; h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d; if (fabs(d) < 1e-300) d = 1e-300;
        c = 1 + aa / c; if (fabs(c) < 1e-300) c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-14) break;
    }
    return h;
}

static double ibeta(double a, double b, double x)
{
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    double bt = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log(1 - x));
    if (x < (a + 1) / (a + b + 2)) return bt * betacf(a, b, x) / a;
    return 1 - bt * betacf(b, a, 1 - x) / b;
}

/* Two-sided p-value of Student's t with df degrees of freedom. */
double ts_t_pvalue(double t, double df)
{
    if (!isfinite(t)) return 0;
    return ibeta(df / 2, 0.5, df / (df + t * t));
}

/* Mean and sample standard deviation (n - 1); std is NAN for one value. */
void ts_mean_std(const double *v, int n, double *mean, double *std)
{
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *std = n > 1 ? sqrt(q / (n - 1)) : NAN;
}

/* Paired t-test of a - b over n pairs: the t statistic and its two-sided p-value. When every
 * difference is equal the test is undefined unless they are all zero (t = 0, p = 1). */
int ts_paired_t(const double *a, const double *b, int n, double *t, double *p)
{
    if (n < 2) return -1;
    double *d = malloc((size_t)n * sizeof *d), m, s;
    if (!d) return -1;
    for (int i = 0; i < n; i++) d[i] = a[i] - b[i];
    ts_mean_std(d, n, &m, &s);
    free(d);
    if (s == 0) {
        *t = m == 0 ? 0 : (m > 0 ? INFINITY : -INFINITY);
        *p = m == 0 ? 1 : 0;
        return 0;
    }
    *t = m / (s / sqrt(n));
    *p = ts_t_pvalue(*t, n - 1);
    return 0;
}

