#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_buckets_default[11] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

enum family_type { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM };

struct series {
	uint64_t hash;
	char *values[METRICS_LABELS_MAX];
	double value;                   /* counter or gauge */
	double sum;                     /* histogram */
	uint64_t count;                 /* histogram */
	uint64_t *bucket_counts;        /* histogram: per bucket (not cumulative), nbuckets + 1 (+Inf) */
	struct series *next;
};

struct metrics_family {
	struct metrics *reg;
	enum family_type type;
	char *name;
	char *help;
	char *labels[METRICS_LABELS_MAX];
	size_t nlabels;
	double buckets[METRICS_BUCKETS_MAX];
	size_t nbuckets;
	struct series *head, *tail;
	size_t nseries;
	struct metrics_family *next;
};

struct metrics {
	pthread_mutex_t mu;
	struct metrics_family *head, *tail;
	unsigned long dropped;
};

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	if (pthread_mutex_init(&m->mu, NULL) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

static void series_free(struct series *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < METRICS_LABELS_MAX; i++)
		free(s->values[i]);
	free(s->bucket_counts);
	free(s);
}

static void family_free(struct metrics_family *f)
{
	struct series *s, *next;

	if (!f)
		return;
	for (s = f->head; s; s = next) {
		next = s->next;
		series_free(s);
	}
	for (size_t i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	free(f->name);
	free(f->help);
	free(f);
}

void metrics_free(struct metrics *m)
{
	struct metrics_family *f, *next;

	if (!m)
		return;
	for (f = m->head; f; f = next) {
		next = f->next;
		family_free(f);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static int name_ok(const char *s, int colon_ok)
{
	if (!s || !*s)
		return 0;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return 0;
	}
	return 1;
}

static struct series *series_new(struct metrics_family *f, uint64_t hash, const char *const *values);

static int family_add(struct metrics *m, enum family_type type, const char *name, const char *help,
		      const char *const *labels, const double *buckets, size_t nbuckets, struct metrics_family **out,
		      char *errbuf, size_t errlen)
{
	struct metrics_family *f = NULL;
	int rc = -1, locked = 0;

	*out = NULL;
	if (!m) {
		snprintf(errbuf, errlen, "metrics: no registry");
		goto out;
	}
	if (!name_ok(name, 1) || strlen(name) > METRICS_NAME_MAX) {
		snprintf(errbuf, errlen, "metrics: invalid metric name \"%.*s\"", METRICS_NAME_MAX, name ? name : "");
		goto out;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		goto oom;
	f->reg = m;
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	if (!f->name || !f->help)
		goto oom;
	for (size_t i = 0; labels && labels[i]; i++) {
		if (i >= METRICS_LABELS_MAX) {
			snprintf(errbuf, errlen, "metrics %s: more than %d labels", name, METRICS_LABELS_MAX);
			goto out;
		}
		if (!name_ok(labels[i], 0) || strlen(labels[i]) > METRICS_NAME_MAX ||
		    strncmp(labels[i], "__", 2) == 0 || (type == FAM_HISTOGRAM && strcmp(labels[i], "le") == 0)) {
			snprintf(errbuf, errlen, "metrics %s: invalid label name \"%.*s\"", name, METRICS_NAME_MAX,
				 labels[i]);
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(labels[j], labels[i]) == 0) {
				snprintf(errbuf, errlen, "metrics %s: label \"%s\" given twice", name, labels[i]);
				goto out;
			}
		}
		f->labels[i] = strdup(labels[i]);
		if (!f->labels[i])
			goto oom;
		f->nlabels = i + 1;
	}
	if (type == FAM_HISTOGRAM) {
		if (!buckets || nbuckets == 0 || nbuckets > METRICS_BUCKETS_MAX) {
			snprintf(errbuf, errlen, "metrics %s: a histogram needs 1 to %d buckets, got %zu", name,
				 METRICS_BUCKETS_MAX, buckets ? nbuckets : 0);
			goto out;
		}
		for (size_t i = 0; i < nbuckets; i++) {
			if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
				snprintf(errbuf, errlen,
					 "metrics %s: bucket bounds must be finite and strictly increasing (bound %zu)",
					 name, i);
				goto out;
			}
			f->buckets[i] = buckets[i];
		}
		f->nbuckets = nbuckets;
	}

	pthread_mutex_lock(&m->mu);
	locked = 1;
	for (struct metrics_family *g = m->head; g; g = g->next) {
		if (strcmp(g->name, name) == 0) {
			snprintf(errbuf, errlen, "metrics: %s registered twice", name);
			goto out;
		}
	}
	/* A family without labels has exactly one series; it exists (at 0) from the start. */
	if (f->nlabels == 0 && !series_new(f, 0, NULL))
		goto oom;
	if (m->tail)
		m->tail->next = f;
	else
		m->head = f;
	m->tail = f;
	*out = f;
	f = NULL;
	rc = 0;
	goto out;
oom:
	snprintf(errbuf, errlen, "metrics %s: out of memory", name);
out:
	if (locked)
		pthread_mutex_unlock(&m->mu);
	family_free(f);
	return rc;
}

int metrics_counter_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
			struct metrics_family **out, char *errbuf, size_t errlen)
{
	return family_add(m, FAM_COUNTER, name, help, labels, NULL, 0, out, errbuf, errlen);
}

int metrics_gauge_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
		      struct metrics_family **out, char *errbuf, size_t errlen)
{
	return family_add(m, FAM_GAUGE, name, help, labels, NULL, 0, out, errbuf, errlen);
}

int metrics_histogram_new(struct metrics *m, const char *name, const char *help, const char *const *labels,
			  const double *buckets, size_t nbuckets, struct metrics_family **out, char *errbuf,
			  size_t errlen)
{
	return family_add(m, FAM_HISTOGRAM, name, help, labels, buckets, nbuckets, out, errbuf, errlen);
}

/* Length of v cut to METRICS_LABEL_VALUE_MAX bytes without splitting a UTF-8 sequence. */
static size_t value_len(const char *v)
{
	size_t n = strnlen(v, METRICS_LABEL_VALUE_MAX + 1);

	if (n <= METRICS_LABEL_VALUE_MAX)
		return n;
	n = METRICS_LABEL_VALUE_MAX;
	while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80)
		n--;
	return n;
}

static uint64_t values_hash(const struct metrics_family *f, const char *const *values)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (size_t i = 0; i < f->nlabels; i++) {
		const char *v = values && values[i] ? values[i] : "";
		size_t n = value_len(v);
		for (size_t k = 0; k < n; k++) {
			h ^= (unsigned char)v[k];
			h *= 1099511628211ULL;
		}
		h ^= 0xff; /* separator: ("a","bc") and ("ab","c") differ */
		h *= 1099511628211ULL;
	}
	return h;
}

static int series_match(const struct metrics_family *f, const struct series *s, uint64_t hash,
			const char *const *values)
{
	if (s->hash != hash)
		return 0;
	for (size_t i = 0; i < f->nlabels; i++) {
		const char *v = values && values[i] ? values[i] : "";
		size_t n = value_len(v);
		if (strlen(s->values[i]) != n || memcmp(s->values[i], v, n) != 0)
			return 0;
	}
	return 1;
}

/* Creates and links a series; called with the registry locked. Returns NULL when out of memory or
 * over the series cap. */
static struct series *series_new(struct metrics_family *f, uint64_t hash, const char *const *values)
{
	struct series *s;

	if (f->nseries >= METRICS_SERIES_MAX)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->hash = hash;
	for (size_t i = 0; i < f->nlabels; i++) {
		const char *v = values && values[i] ? values[i] : "";
		s->values[i] = strndup(v, value_len(v));
		if (!s->values[i])
			goto fail;
	}
	if (f->type == FAM_HISTOGRAM) {
		s->bucket_counts = calloc(f->nbuckets + 1, sizeof(*s->bucket_counts));
		if (!s->bucket_counts)
			goto fail;
	}
	if (f->tail)
		f->tail->next = s;
	else
		f->head = s;
	f->tail = s;
	f->nseries++;
	return s;
fail:
	series_free(s);
	return NULL;
}

/* Finds (or creates, when `create`) the series; called with the registry locked. */
static struct series *series_get(struct metrics_family *f, const char *const *values, int create)
{
	uint64_t hash = f->nlabels ? values_hash(f, values) : 0;
	struct series *s;

	for (s = f->head; s; s = s->next) {
		if (series_match(f, s, hash, values))
			return s;
	}
	if (!create)
		return NULL;
	s = series_new(f, hash, values);
	if (!s)
		f->reg->dropped++;
	return s;
}

static void update(struct metrics_family *f, enum family_type want, const char *const *values, double v, int op)
{
	struct series *s;

	if (!f || f->type != want || isnan(v))
		return;
	pthread_mutex_lock(&f->reg->mu);
	s = series_get(f, values, 1);
	if (s) {
		switch (op) {
		case 0: /* add */
			s->value += v;
			break;
		case 1: /* set */
			s->value = v;
			break;
		default: { /* observe */
			size_t i = 0;
			while (i < f->nbuckets && v > f->buckets[i])
				i++;
			s->bucket_counts[i]++;
			s->count++;
			s->sum += v;
			break;
		}
		}
	}
	pthread_mutex_unlock(&f->reg->mu);
}

void metrics_counter_add(struct metrics_family *f, const char *const *values, double v)
{
	if (v < 0)
		return;
	update(f, FAM_COUNTER, values, v, 0);
}

void metrics_gauge_set(struct metrics_family *f, const char *const *values, double v)
{
	update(f, FAM_GAUGE, values, v, 1);
}

void metrics_gauge_add(struct metrics_family *f, const char *const *values, double delta)
{
	update(f, FAM_GAUGE, values, delta, 0);
}

void metrics_histogram_observe(struct metrics_family *f, const char *const *values, double v)
{
	update(f, FAM_HISTOGRAM, values, v, 2);
}

double metrics_value(struct metrics_family *f, const char *const *values)
{
	struct series *s;
	double v = 0;

	if (!f || f->type == FAM_HISTOGRAM)
		return 0;
	pthread_mutex_lock(&f->reg->mu);
	s = series_get(f, values, 0);
	if (s)
		v = s->value;
	pthread_mutex_unlock(&f->reg->mu);
	return v;
}

unsigned long metrics_dropped(struct metrics *m)
{
	unsigned long n;

	if (!m)
		return 0;
	pthread_mutex_lock(&m->mu);
	n = m->dropped;
	pthread_mutex_unlock(&m->mu);
	return n;
}

/* Output buffer for rendering (our own text, not outside input). */
struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void buf_reserve(struct buf *b, size_t more)
{
	char *np;
	size_t ncap;

	if (b->oom || b->len + more + 1 <= b->cap)
		return;
	ncap = b->cap ? b->cap : 1024;
	while (ncap < b->len + more + 1)
		ncap *= 2;
	np = realloc(b->p, ncap);
	if (!np) {
		b->oom = 1;
		return;
	}
	b->p = np;
	b->cap = ncap;
}

static void buf_put(struct buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* Writes s with \ and newline escaped, and " too when `quote` (label values). */
static void buf_escaped(struct buf *b, const char *s, int quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_put(b, "\\\\", 2);
		else if (*s == '\n')
			buf_put(b, "\\n", 2);
		else if (quote && *s == '"')
			buf_put(b, "\\\"", 2);
		else
			buf_put(b, s, 1);
	}
}

/* The shortest %g form that reads back as the same double. */
static void fmt_number(double v, char *out, size_t outlen)
{
	if (isnan(v)) {
		snprintf(out, outlen, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	/* Exponent form only where %.17g would use it too (so 10 is "10", not "1e+01"). */
	char full[64];
	snprintf(full, sizeof(full), "%.17g", v);
	int exp_ok = strchr(full, 'e') != NULL;
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, outlen, "%.*g", prec, v);
		if (strtod(out, NULL) == v && (exp_ok || !strchr(out, 'e')))
			return;
	}
}

static void buf_number(struct buf *b, double v)
{
	char num[64];

	fmt_number(v, num, sizeof(num));
	buf_str(b, num);
}

static void buf_u64(struct buf *b, uint64_t v)
{
	char num[32];

	snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
	buf_str(b, num);
}

/* name{l1="v1",...[,le="x"]} — braces only when there is at least one label. */
static void put_series_name(struct buf *b, const struct metrics_family *f, const struct series *s,
			    const char *suffix, const char *le)
{
	buf_str(b, f->name);
	buf_str(b, suffix);
	if (f->nlabels == 0 && !le)
		return;
	buf_put(b, "{", 1);
	for (size_t i = 0; i < f->nlabels; i++) {
		if (i)
			buf_put(b, ",", 1);
		buf_str(b, f->labels[i]);
		buf_put(b, "=\"", 2);
		buf_escaped(b, s->values[i], 1);
		buf_put(b, "\"", 1);
	}
	if (le) {
		if (f->nlabels)
			buf_put(b, ",", 1);
		buf_str(b, "le=\"");
		buf_str(b, le);
		buf_put(b, "\"", 1);
	}
	buf_put(b, "}", 1);
}

static void render_family(struct buf *b, const struct metrics_family *f)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};

	buf_str(b, "# HELP ");
	buf_str(b, f->name);
	buf_put(b, " ", 1);
	buf_escaped(b, f->help, 0);
	buf_str(b, "\n# TYPE ");
	buf_str(b, f->name);
	buf_put(b, " ", 1);
	buf_str(b, types[f->type]);
	buf_put(b, "\n", 1);
	for (const struct series *s = f->head; s; s = s->next) {
		if (f->type != FAM_HISTOGRAM) {
			put_series_name(b, f, s, "", NULL);
			buf_put(b, " ", 1);
			buf_number(b, s->value);
			buf_put(b, "\n", 1);
			continue;
		}
		uint64_t cum = 0;
		for (size_t i = 0; i <= f->nbuckets; i++) {
			char le[64];
			if (i < f->nbuckets)
				fmt_number(f->buckets[i], le, sizeof(le));
			else
				snprintf(le, sizeof(le), "+Inf");
			cum += s->bucket_counts[i];
			put_series_name(b, f, s, "_bucket", le);
			buf_put(b, " ", 1);
			buf_u64(b, cum);
			buf_put(b, "\n", 1);
		}
		put_series_name(b, f, s, "_sum", NULL);
		buf_put(b, " ", 1);
		buf_number(b, s->sum);
		buf_put(b, "\n", 1);
		put_series_name(b, f, s, "_count", NULL);
		buf_put(b, " ", 1);
		buf_u64(b, s->count);
		buf_put(b, "\n", 1);
	}
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
	struct buf b = {0};

	*out = NULL;
	*len = 0;
	if (!m)
		return -1;
	buf_reserve(&b, 0);
	pthread_mutex_lock(&m->mu);
	for (const struct metrics_family *f = m->head; f; f = f->next)
		render_family(&b, f);
	pthread_mutex_unlock(&m->mu);
	if (b.oom) {
		free(b.p);
		return -1;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}
