#ifndef DW_DEMO_DMETRICS_H
#define DW_DEMO_DMETRICS_H

#include <stddef.h>

/*
 * What the demo reads from an apply worker's /metrics (Prometheus text): events by outcome and the
 * end-to-end latency histogram (dw_apply_end_to_end_seconds, default buckets of metrics.h).
 */

#define DMET_BUCKETS 12 /* the 11 default bounds and +Inf */

struct dmet {
	double applied;     /* dw_apply_events_total{outcome="applied"} */
	double dead_letter; /* dw_apply_events_total{outcome="dead_letter"} */
	double events;      /* every outcome */
	double bucket[DMET_BUCKETS]; /* cumulative counts per bound of the latency histogram */
	double count;
};

/* Reads url (e.g. http://127.0.0.1:19110/metrics) into *out. Returns 0 or -1 with err. */
int dmet_scrape(const char *url, struct dmet *out, char *err, size_t errlen) __attribute__((warn_unused_result));

/* a += b (sum of two workers), or a -= b with sign -1 (what happened since b). */
void dmet_add(struct dmet *a, const struct dmet *b, int sign);

/* The q quantile (0..1) of the latency histogram in seconds, interpolated within its bucket;
 * -1 when the histogram is empty; the top bound (10 s) when it falls in +Inf. */
double dmet_quantile(const struct dmet *m, double q);

#endif
