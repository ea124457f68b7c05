#include "ce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "capture_ce.h"
#include "hook.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "capture_records.h"
#include "source.h"
#include "txn.h"

#define PAGE_PREFER "odata.maxpagesize=5000"
#define TRACK_PREFER "odata.track-changes,odata.maxpagesize=5000"

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Re-reads row id of table t. Returns 1 with *row (cJSON_Delete) when it exists, 0 when it is gone
 * (404), -1 with errbuf. */
static int reread(struct app *a, const struct capture_ce_table *t, const char *id, cJSON **row, char *errbuf,
		  size_t errlen)
{
	char path[256];
	struct http_response resp;
	*row = NULL;
	snprintf(path, sizeof(path), "%s(%s)", t->set, id);
	if (source_get(a->src, path, NULL, &resp, errbuf, errlen) != 0)
		return -1;
	int rc = -1;
	if (resp.status == 404) {
		rc = 0;
	} else if (resp.status == 200) {
		*row = cJSON_ParseWithLength(resp.body, resp.body_len);
		if (cJSON_IsObject(*row))
			rc = 1;
		else
			snprintf(errbuf, errlen, "re-read %s: response is not a JSON object", path);
	} else {
		snprintf(errbuf, errlen, "re-read %s: HTTP %ld", path, resp.status);
	}
	if (rc != 1) {
		cJSON_Delete(*row);
		*row = NULL;
	}
	http_response_free(&resp);
	return rc;
}

/* ---- change tracking ---------------------------------------------------------------------- */

/* Builds the events of one delta page (entries of table t) into evs/alive; returns the count or -1. */
static long page_events(struct app *a, const struct capture_ce_table *t, const struct capture_ce_delta *d,
			struct event *evs, int *alive, char *errbuf, size_t errlen)
{
	struct capture_ce_ctx ctx = { a->set.env, a->set.own_user };
	const char **ids = calloc(d->n ? d->n : 1, sizeof(*ids));
	struct capture_records_state *st = calloc(d->n ? d->n : 1, sizeof(*st));
	long m = -1;
	char e[512];
	if (!ids || !st) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < d->n; i++)
		ids[i] = d->entries[i].id;
	if (capture_records_state(a->rec, "ce", a->set.env, t->logical, ids, d->n, st, errbuf, errlen) != 0)
		goto out;
	m = 0;
	for (size_t i = 0; i < d->n; i++) {
		const struct capture_ce_delta_entry *en = &d->entries[i];
		struct event *ev = &evs[m];
		alive[m] = 0;
		if (en->deleted) {
			if (capture_ce_delete_event(&ctx, t, en->id, wall_ms(), NULL, ev, e, sizeof(e)) != 0 ||
			    app_complete_delete(a, ev, en->id, e, sizeof(e)) != 0) {
				snprintf(errbuf, errlen, "%s", e);
				event_clear(ev);
				m = -1;
				goto out;
			}
			m++;
			continue;
		}
		if (st[i].known && st[i].deleted) {
			/* captured as deleted: only a row that exists now is a re-creation */
			cJSON *row = NULL;
			int r = reread(a, t, en->id, &row, e, sizeof(e));
			if (r < 0) {
				snprintf(errbuf, errlen, "%s", e);
				m = -1;
				goto out;
			}
			if (r == 0)
				continue;
			r = capture_ce_row_event(&ctx, t, row, 0, ev, e, sizeof(e));
			cJSON_Delete(row);
			if (r != 0) {
				log_warn("row skipped", "table", t->set, "reason", e);
				continue;
			}
			alive[m] = 1;
			m++;
			continue;
		}
		if (capture_ce_row_event(&ctx, t, en->row, 0, ev, e, sizeof(e)) != 0) {
			log_warn("row skipped", "table", t->set, "reason", e);
			continue;
		}
		if (st[i].known && st[i].version >= ev->source.version) {
			event_clear(ev); /* already captured (webhook or an earlier poll) */
			continue;
		}
		m++;
	}
	/* events staged in a source transaction go out with their unit, not alone */
	if (m > 0) {
		const char **eids = calloc((size_t)m, sizeof(*eids));
		int *pending = calloc((size_t)m, sizeof(*pending));
		if (!eids || !pending) {
			free(eids);
			free(pending);
			snprintf(errbuf, errlen, "out of memory");
			m = -1;
			goto out;
		}
		for (long i = 0; i < m; i++)
			eids[i] = evs[i].id;
		int r = capture_records_pending_has(a->rec, "ce", a->set.env, eids, (size_t)m, pending, errbuf, errlen);
		free(eids);
		if (r != 0) {
			free(pending);
			m = -1;
			goto out;
		}
		long k = 0;
		for (long i = 0; i < m; i++) {
			if (pending[i]) {
				event_clear(&evs[i]);
				continue;
			}
			if (k != i) {
				evs[k] = evs[i];
				alive[k] = alive[i];
				memset(&evs[i], 0, sizeof(evs[i]));
			}
			k++;
		}
		free(pending);
		m = k;
	}
out:
	if (m < 0) {
		for (size_t i = 0; i < d->n; i++)
			event_clear(&evs[i]);
	}
	free(ids);
	free(st);
	return m;
}

/* Polls one table until its latest page. Returns 0 or -1. */
static int poll_table(struct app *a, const struct capture_ce_table *t)
{
	char err[1024];
	char *pos = NULL;
	int rc = -1;
	int initial = 0;
	char *link = NULL;

	if (capture_records_checkpoint_get(a->rec, "ce", a->set.env, t->logical, "delta", &pos, err, sizeof(err)) != 0)
		goto fail;
	if (!pos) {
		initial = 1;
		link = strdup(t->set);
	} else {
		link = pos;
		pos = NULL;
	}
	if (!link) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	while (!*a->stop) {
		struct http_response resp;
		struct capture_ce_delta d;
		if (source_get(a->src, link, initial ? TRACK_PREFER : PAGE_PREFER, &resp, err, sizeof(err)) != 0)
			goto fail;
		if (resp.status != 200) {
			snprintf(err, sizeof(err), "GET %s: HTTP %ld: %.300s", t->set, resp.status, resp.body);
			http_response_free(&resp);
			goto fail;
		}
		int pr = capture_ce_delta_parse(t, resp.body, resp.body_len, &d, err, sizeof(err));
		http_response_free(&resp);
		if (pr != 0)
			goto fail;
		if (!initial && d.n > 0) {
			struct event *evs = calloc(d.n, sizeof(*evs));
			int *alive = calloc(d.n, sizeof(*alive));
			long m = evs && alive ? page_events(a, t, &d, evs, alive, err, sizeof(err)) : -1;
			int prc = m < 0 ? -1 : m == 0 ? 0 : app_publish(a, evs, (size_t)m, alive, err, sizeof(err));
			for (long i = 0; i < m; i++)
				event_clear(&evs[i]);
			free(evs);
			free(alive);
			if (prc != 0) {
				capture_ce_delta_free(&d);
				goto fail;
			}
		}
		const char *next = d.next_link ? d.next_link : d.delta_link;
		char *nl = strdup(next);
		int more = d.next_link != NULL;
		capture_ce_delta_free(&d);
		if (!nl) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		/* during the first read only the final delta link is worth keeping */
		if ((!initial || !more) &&
		    capture_records_checkpoint_set(a->rec, "ce", a->set.env, t->logical, "delta", nl, err, sizeof(err)) != 0) {
			free(nl);
			goto fail;
		}
		if (initial && !more)
			log_info("change tracking started; nothing published for the existing rows", "table", t->set);
		free(link);
		link = nl;
		if (!more)
			break;
	}
	rc = 0;
	goto out;
fail:
	log_warn("change tracking poll failed; retried next round", "table", t->set, "reason", err);
out:
	free(link);
	free(pos);
	return rc;
}

int ce_poll_round(struct app *a)
{
	int rc = 0;
	for (size_t i = 0; i < a->set.ntables && !*a->stop; i++) {
		const struct capture_ce_table *t = &a->set.ce_tables[i];
		if (poll_table(a, t) != 0)
			rc = -1;
		else {
			const char *lv[] = { t->logical };
			metrics_gauge_set(a->m_lag, lv, 0);
		}
	}
	return rc;
}

/* ---- webhooks ------------------------------------------------------------------------------ */

void ce_webhook(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
	struct app *a = arg;
	long long t0 = hook_now_ms();
	struct capture_ce_ctx ctx = { a->set.env, a->set.own_user };
	struct capture_ce_hook h;
	char err[1024];
	int alive = 0;
	cJSON *row = NULL;

	memset(&h, 0, sizeof(h));
	if (!hook_authorized(a, req)) {
		hook_reply(a, resp, 401, "unauthorized", NULL, 0, "missing or wrong webhook key", t0);
		return;
	}
	if (!hook_json_body(req)) {
		hook_reply(a, resp, 415, "bad_request", NULL, 0, "Content-Type must be application/json", t0);
		return;
	}
	const char *sx = httpd_request_header(req, "x-ms-dynamics-msg-size-exceeded");
	int size_exceeded = sx && strcasecmp(sx, "false") != 0;
	if (capture_ce_webhook_parse(&ctx, a->set.ce_tables, a->set.ntables, req->body, req->body_len, size_exceeded, &h,
				     err, sizeof(err)) != 0) {
		hook_reply(a, resp, 400, "bad_request", NULL, 0, err, t0);
		return;
	}
	const struct capture_ce_table *t = &a->set.ce_tables[h.table];
	if (h.action == CAPTURE_CE_HOOK_DELETE) {
		if (app_complete_delete(a, &h.ev, h.id, err, sizeof(err)) != 0)
			goto unavailable;
	} else {
		int need_read = h.action == CAPTURE_CE_HOOK_REREAD;
		if (!need_read) {
			struct capture_records_state st;
			const char *ids[] = { h.id };
			if (capture_records_state(a->rec, "ce", a->set.env, t->logical, ids, 1, &st, err, sizeof(err)) != 0)
				goto unavailable;
			need_read = st.known && st.deleted; /* a late change of a deleted row, or a re-creation */
		}
		if (need_read) {
			int r = reread(a, t, h.id, &row, err, sizeof(err));
			if (r < 0)
				goto unavailable;
			if (r == 0) {
				hook_reply(a, resp, 200, "gone", "published", 0, NULL, t0);
				goto out;
			}
			event_clear(&h.ev);
			if (capture_ce_row_event(&ctx, t, row, h.op, &h.ev, err, sizeof(err)) != 0) {
				hook_reply(a, resp, 400, "bad_request", NULL, 0, err, t0);
				goto out;
			}
			if (h.user[0] && !h.ev.source.user) {
				h.ev.source.user = strdup(h.user);
				if (a->set.own_user && h.ev.source.user && strcasecmp(a->set.own_user, h.user) == 0)
					h.ev.source.own = 1;
			}
			alive = 1;
		}
	}
	if (h.in_transaction && h.correlation_id[0]) {
		if (txn_stage(a->txn, &h.ev, h.correlation_id, err, sizeof(err)) != 0)
			goto unavailable;
		hook_reply(a, resp, 202, "staged", "staged", 1, NULL, t0);
		goto out;
	}
	int prc = app_publish(a, &h.ev, 1, &alive, err, sizeof(err));
	if (prc == PUBLISH_ERR_INVALID) {
		hook_reply(a, resp, 400, "bad_request", NULL, 0, err, t0);
		goto out;
	}
	if (prc != 0)
		goto unavailable;
	hook_reply(a, resp, 200, "published", "published", 1, NULL, t0);
	goto out;
unavailable:
	log_warn("webhook not accepted", "table", t->logical, "reason", err);
	hook_reply(a, resp, 503, "unavailable", NULL, 0, "temporarily unavailable; retry", t0);
out:
	cJSON_Delete(row);
	capture_ce_hook_clear(&h);
}
