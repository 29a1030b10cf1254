/* Latency histogram, HdrHistogram-style log-linear buckets: values from 1
 * to 2^40 ns (about 18 minutes) with a relative error below 2^-7 (0.8%),
 * in a fixed array (no allocation after init). One per thread; merged for
 * the per-second line and the final report. Not thread-safe. */
#ifndef STANZA_BENCH_HIST_H
#define STANZA_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7                       /* 128 sub-buckets per power of two */
#define HIST_MAX_EXP  40                      /* values up to 2^40 ns */
#define HIST_BUCKETS  ((HIST_MAX_EXP - HIST_SUB_BITS + 1) << HIST_SUB_BITS)
#define HIST_MAX_VALUE ((UINT64_C(1) << HIST_MAX_EXP) - 1)   /* larger values are recorded as this */

struct hist {
	uint64_t count;
	uint64_t min;          /* UINT64_MAX when empty */
	uint64_t max;
	double sum;            /* for the mean */
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t v);          /* v in ns; values above HIST_MAX_VALUE clamp to it (count, sum, max too) */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at percentile p (0..100): the highest value of the bucket that
 * holds it (or max, if max is lower), so reported values never understate;
 * 0 when empty. p 100 gives max exactly. */
uint64_t hist_percentile(const struct hist *h, double p);
double hist_mean(const struct hist *h);

#endif
