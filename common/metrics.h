#ifndef DW_METRICS_H
#define DW_METRICS_H

#include <stddef.h>

/*
 * Counters, gauges and histograms rendered in the Prometheus text exposition format 0.0.4.
 * A program creates one registry with metrics_new(), registers its families at start-up and passes
 * the registry (or the family pointers) down; there are no globals.
 *
 * A family has a name, a help text and 0 to METRICS_LABELS_MAX label names. Each distinct tuple of
 * label values is one series, created on first use. Label values are given as an array in the
 * order of the family's label names (NULL when the family has no labels).
 *
 * Thread-safe: every operation takes the registry's mutex, so observations from any thread and a
 * concurrent render are consistent.
 *
 * Recording never fails visibly, so metrics cannot break the work they measure: when a series
 * cannot be created (out of memory, or more than METRICS_SERIES_MAX series in the family) the
 * observation is dropped and counted; metrics_dropped() reports how many.
 *
 * Rendering: families in registration order, series in creation order; "# HELP" (help escaped: \\
 * and \n) and "# TYPE" lines; label values escaped (\\, \", \n); histograms as cumulative
 * name_bucket{...,le="..."} lines ending with le="+Inf", then name_sum and name_count. Numbers in
 * the shortest form that reads back exactly ("3", "0.25", "1e+21"), +Inf, -Inf, NaN.
 */

#define METRICS_LABELS_MAX 4
#define METRICS_BUCKETS_MAX 32
#define METRICS_SERIES_MAX 10000 /* per family: a guard against unbounded label values */
#define METRICS_NAME_MAX 128
#define METRICS_LABEL_VALUE_MAX 256 /* longer label values are truncated at a UTF-8 boundary */

struct metrics;
struct metrics_family;

/* Latency buckets in seconds: 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10. */
extern const double metrics_buckets_default[11];
#define METRICS_BUCKETS_DEFAULT_N 11

/* Creates an empty registry; the caller frees it with metrics_free(). Returns NULL when out of
 * memory. */
struct metrics *metrics_new(void);

/* Frees the registry and every family in it; NULL-safe. Family pointers become invalid. */
void metrics_free(struct metrics *m);

/* Register a family. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* (at most METRICS_NAME_MAX bytes)
 * and be new in the registry; `labels` is a NULL-terminated array of up to METRICS_LABELS_MAX
 * label names matching [a-zA-Z_][a-zA-Z0-9_]* (not "le" for histograms), or NULL for none. All
 * strings are copied. On success *out is owned by the registry (valid until metrics_free()).
 * Fails with -1 and errbuf naming the problem. */
int metrics_counter_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
			struct metrics_family **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));
int metrics_gauge_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
		      struct metrics_family **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* As above for a histogram with `nbuckets` (1..METRICS_BUCKETS_MAX) finite upper bounds in
 * strictly increasing order (copied); +Inf is implicit. */
int metrics_histogram_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
			  const double *buckets, size_t nbuckets, struct metrics_family **out, char *errbuf,
			  size_t errlen) __attribute__((warn_unused_result));

/* Adds v (>= 0; negative or NaN values are dropped) to a counter series. `values` holds one label
 * value per label name (borrowed; NULL values count as ""). Ignored when f is not a counter. */
void metrics_counter_add(struct metrics_family *f, const char *const *values, double v);

/* Sets / adds to a gauge series. Ignored when f is not a gauge. */
void metrics_gauge_set(struct metrics_family *f, const char *const *values, double v);
void metrics_gauge_add(struct metrics_family *f, const char *const *values, double delta);

/* Records one observation (seconds, for latencies) in a histogram series. Ignored when f is not a
 * histogram or v is NaN. */
void metrics_histogram_observe(struct metrics_family *f, const char *const *values, double v);

/* The current value of a counter or gauge series (0 when the series does not exist); for tests
 * and for programs that report a value elsewhere too. */
double metrics_value(struct metrics_family *f, const char *const *values);

/* Observations dropped because a series could not be created. */
unsigned long metrics_dropped(struct metrics *m);

/* Renders the registry. On success *out is a new NUL-terminated string of *len bytes the caller
 * frees with free(). Returns 0, or -1 when out of memory. */
int metrics_render(struct metrics *m, char **out, size_t *len) __attribute__((warn_unused_result));

#endif
