#include "dmetrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metrics.h"

#define DMET_BODY_MAX ((size_t)4 * 1024 * 1024)

static double value_of(const char *line)
{
	const char *sp = strrchr(line, ' ');
	return sp ? strtod(sp + 1, NULL) : 0;
}

static void parse_line(struct dmet *m, const char *line)
{
	static const char ev[] = "dw_apply_events_total{";
	static const char bk[] = "dw_apply_end_to_end_seconds_bucket{";
	static const char ct[] = "dw_apply_end_to_end_seconds_count";
	if (strncmp(line, ev, sizeof(ev) - 1) == 0) {
		double v = value_of(line);
		m->events += v;
		if (strstr(line, "outcome=\"applied\""))
			m->applied += v;
		else if (strstr(line, "outcome=\"dead_letter\""))
			m->dead_letter += v;
	} else if (strncmp(line, bk, sizeof(bk) - 1) == 0) {
		const char *le = strstr(line, "le=\"");
		if (!le)
			return;
		le += 4;
		if (strncmp(le, "+Inf", 4) == 0) {
			m->bucket[DMET_BUCKETS - 1] = value_of(line);
			return;
		}
		double bound = strtod(le, NULL);
		for (size_t i = 0; i < METRICS_BUCKETS_DEFAULT_N && i < DMET_BUCKETS - 1; i++)
			if (fabs(metrics_buckets_default[i] - bound) < 1e-9)
				m->bucket[i] = value_of(line);
	} else if (strncmp(line, ct, sizeof(ct) - 1) == 0 && line[sizeof(ct) - 1] == ' ') {
		m->count = value_of(line);
	}
}

int dmet_scrape(const char *url, struct dmet *out, char *err, size_t errlen)
{
	struct http_client *c = NULL;
	struct http_response resp;
	struct http_opts o = { .timeout_ms = 10000, .body_max = DMET_BODY_MAX };
	int rc = -1;
	memset(out, 0, sizeof(*out));
	memset(&resp, 0, sizeof(resp));
	if (http_client_new(&o, &c, err, errlen) != 0)
		return -1;
	struct http_request req = { .method = "GET", .url = url };
	if (http_do(c, &req, &resp, err, errlen) != 0)
		goto out;
	if (resp.status != 200) {
		snprintf(err, errlen, "GET %s: HTTP %ld", url, resp.status);
		goto out;
	}
	for (char *line = resp.body; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (line[0] != '#')
			parse_line(out, line);
		line = nl ? nl + 1 : NULL;
	}
	rc = 0;
out:
	http_response_free(&resp);
	http_client_free(c);
	return rc;
}

void dmet_add(struct dmet *a, const struct dmet *b, int sign)
{
	a->applied += sign * b->applied;
	a->dead_letter += sign * b->dead_letter;
	a->events += sign * b->events;
	a->count += sign * b->count;
	for (size_t i = 0; i < DMET_BUCKETS; i++)
		a->bucket[i] += sign * b->bucket[i];
}

double dmet_quantile(const struct dmet *m, double q)
{
	double total = m->bucket[DMET_BUCKETS - 1];
	if (total <= 0)
		return -1;
	double rank = q * total, prev_count = 0, prev_bound = 0;
	for (size_t i = 0; i < DMET_BUCKETS - 1 && i < METRICS_BUCKETS_DEFAULT_N; i++) {
		if (m->bucket[i] >= rank) {
			double in = m->bucket[i] - prev_count;
			double frac = in > 0 ? (rank - prev_count) / in : 1;
			return prev_bound + frac * (metrics_buckets_default[i] - prev_bound);
		}
		prev_count = m->bucket[i];
		prev_bound = metrics_buckets_default[i];
	}
	return metrics_buckets_default[METRICS_BUCKETS_DEFAULT_N - 1];
}
