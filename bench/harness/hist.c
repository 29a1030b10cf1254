/* Log-linear latency histogram (see hist.h).
 *
 * Values below 2^HIST_SUB_BITS have a bucket each. Above, a value whose
 * highest set bit is k falls in one of 2^HIST_SUB_BITS equal buckets
 * spanning [2^k, 2^(k+1)), chosen by the HIST_SUB_BITS bits below bit k; a
 * bucket is then 2^(k - HIST_SUB_BITS) wide, at most 2^-HIST_SUB_BITS of
 * any value in it. The index of the first bucket of power k is
 * (k - HIST_SUB_BITS + 1) << HIST_SUB_BITS, so the exact range and the
 * first power (k = HIST_SUB_BITS, also one value per bucket) join without a
 * gap and the index grows with the value. */
#include "bench/harness/hist.h"

#include <string.h>

#define SUB_COUNT ((uint64_t)1 << HIST_SUB_BITS)

static unsigned hist_index(uint64_t v)
{
	if (v < SUB_COUNT)
		return (unsigned)v;
	unsigned k = 63u - (unsigned)__builtin_clzll(v);
	unsigned sub = (unsigned)(v >> (k - HIST_SUB_BITS)) & (unsigned)(SUB_COUNT - 1);
	return ((k - HIST_SUB_BITS + 1) << HIST_SUB_BITS) + sub;
}

/* The highest value that lands in bucket i. */
static uint64_t hist_bucket_high(unsigned i)
{
	if (i < SUB_COUNT)
		return i;
	unsigned k = (i >> HIST_SUB_BITS) + HIST_SUB_BITS - 1;
	uint64_t sub = i & (SUB_COUNT - 1);
	unsigned shift = k - HIST_SUB_BITS;
	return ((SUB_COUNT + sub) << shift) + (((uint64_t)1 << shift) - 1);
}

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void hist_record(struct hist *h, uint64_t v)
{
	if (v > HIST_MAX_VALUE)
		v = HIST_MAX_VALUE;
	h->b[hist_index(v)]++;
	h->count++;
	h->sum += (double)v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (src->count == 0)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	if (h->count == 0)
		return 0;
	if (!(p < 100.0))          /* also NaN */
		return h->max;
	if (p < 0.0)
		p = 0.0;
	/* The rank of the value at p: ceil(p% of count), at least the first.
	 * Rounded down first by a hair so that 99.9% of 1000 is 999, not 1000
	 * because 99.9 / 100 is not exact in binary. */
	double want = p / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)want;
	if ((double)rank < want - 1e-9)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t hi = hist_bucket_high(i);
			/* The value is in this bucket and not above max: the
			 * smaller of the two still never understates it. */
			return hi < h->max ? hi : h->max;
		}
	}
	return h->max;
}

double hist_mean(const struct hist *h)
{
	return h->count ? h->sum / (double)h->count : 0.0;
}
