/* First cut: API compiles; the registry is implemented in the next commit. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>

const double metrics_buckets_default[11] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct metrics *metrics_new(void)
{
	return NULL;
}

void metrics_free(struct metrics *m)
{
	(void)m;
}

static int not_yet(struct metrics_family **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	snprintf(errbuf, errlen, "metrics: not available in this build yet");
	return -1;
}

int metrics_counter_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
			struct metrics_family **out, char *errbuf, size_t errlen)
{
	(void)m, (void)name, (void)help, (void)labels;
	return not_yet(out, errbuf, errlen);
}

int metrics_gauge_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
		      struct metrics_family **out, char *errbuf, size_t errlen)
{
	(void)m, (void)name, (void)help, (void)labels;
	return not_yet(out, errbuf, errlen);
}

int metrics_histogram_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
			  const double *buckets, size_t nbuckets, struct metrics_family **out, char *errbuf,
			  size_t errlen)
{
	(void)m, (void)name, (void)help, (void)labels, (void)buckets, (void)nbuckets;
	return not_yet(out, errbuf, errlen);
}

void metrics_counter_add(struct metrics_family *f, const char *const *values, double v)
{
	(void)f, (void)values, (void)v;
}

void metrics_gauge_set(struct metrics_family *f, const char *const *values, double v)
{
	(void)f, (void)values, (void)v;
}

void metrics_gauge_add(struct metrics_family *f, const char *const *values, double delta)
{
	(void)f, (void)values, (void)delta;
}

void metrics_histogram_observe(struct metrics_family *f, const char *const *values, double v)
{
	(void)f, (void)values, (void)v;
}

double metrics_value(struct metrics_family *f, const char *const *values)
{
	(void)f, (void)values;
	return 0;
}

unsigned long metrics_dropped(struct metrics *m)
{
	(void)m;
	return 0;
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
	(void)m;
	*out = NULL;
	*len = 0;
	return -1;
}
