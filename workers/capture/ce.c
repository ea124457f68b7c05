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

/* Moves the events not marked in gone[0..m) (those are empty: cleared or moved away) to the front of
 * evs, keeping alive[] in step; returns how many are left. */
static long compact(struct event *evs, int *alive, long m, const int *gone)
{
	long k = 0;
	for (long i = 0; i < m; i++) {
		if (gone[i])
			continue;
		if (k != i) {
			evs[k] = evs[i];
			alive[k] = alive[i];
			memset(&evs[i], 0, sizeof(evs[i]));
		}
		k++;
	}
	return k;
}

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
			/* completed (version, key, id) only when it goes out: see complete_deletes */
			if (capture_ce_delete_event(&ctx, t, en->id, wall_ms(), NULL, ev, e, sizeof(e)) != 0) {
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
		txn_staged(a->txn, eids, (size_t)m, pending);
		free(eids);
		for (long i = 0; i < m; i++)
			if (pending[i])
				event_clear(&evs[i]);
		m = compact(evs, alive, m, pending);
		free(pending);
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

/* Completes the delete skeletons among evs[0..n) (op delete, no id yet): version and key from the
 * record table, then the id (app_complete_delete). Returns 0 or -1 with err. */
static int complete_deletes(struct app *a, const struct capture_ce_table *t, struct event *evs, size_t n, char *err,
			    size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (evs[i].op != EVENT_OP_DELETE || evs[i].id[0])
			continue;
		char rid[CAPTURE_GUID_LEN + 1];
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(evs[i].key, t->id_field);
		snprintf(rid, sizeof(rid), "%s", cJSON_IsString(id) ? id->valuestring : "");
		if (app_complete_delete(a, &evs[i], rid, err, errlen) != 0)
			return -1;
	}
	return 0;
}

/* ---- holding recent rows back for their webhooks (docs/capture.md "Source transactions") ------ */

struct held_row {
	struct event ev;
	int alive;
	long long until_ms;     /* wall clock: published alone after this, unless a webhook took it */
	unsigned long long seq; /* order in which rows were held */
};

struct held_link {
	unsigned long long seq; /* rows held up to this page have seq <= this */
	char *link;             /* the link after that page */
};

struct ce_hold_table {
	struct held_row *rows;
	size_t n, cap;
	struct held_link *links;
	size_t nlinks, caplinks;
	unsigned long long seq;
	char *link; /* where the next poll continues (NULL: from the checkpoint) */
};

struct ce_hold {
	struct ce_hold_table t[APP_TABLES_MAX];
};

int ce_hold_new(struct ce_hold **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -1;
}

void ce_hold_free(struct ce_hold *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < APP_TABLES_MAX; i++) {
		struct ce_hold_table *t = &h->t[i];
		for (size_t j = 0; j < t->n; j++)
			event_clear(&t->rows[j].ev);
		for (size_t j = 0; j < t->nlinks; j++)
			free(t->links[j].link);
		free(t->rows);
		free(t->links);
		free(t->link);
	}
	free(h);
}

/* Whether held event h and ev are the same change: the same id, or both a delete of one record
 * whose version is not assigned yet. */
static int same_change(const struct event *h, const struct event *ev)
{
	if (ev->id[0])
		return strcmp(h->id, ev->id) == 0;
	/* a skeleton's key is {id field: GUID}; a completed one holds that member too */
	const cJSON *k = ev->key ? ev->key->child : NULL;
	const cJSON *hk = k && k->string ? cJSON_GetObjectItemCaseSensitive(h->key, k->string) : NULL;
	return h->op == EVENT_OP_DELETE && ev->op == EVENT_OP_DELETE && hk && cJSON_Compare(hk, k, 1);
}

/* Moves *ev into the held rows of ht (ev is cleared); a change already held is kept once.
 * Returns 0 or -1 when out of memory (ev untouched then). */
static int hold_row(struct ce_hold_table *ht, struct event *ev, int alive, long long until)
{
	for (size_t i = 0; i < ht->n; i++) {
		if (same_change(&ht->rows[i].ev, ev)) {
			event_clear(ev);
			return 0;
		}
	}
	if (ht->n == ht->cap) {
		size_t nc = ht->cap ? ht->cap * 2 : 64;
		struct held_row *r = realloc(ht->rows, nc * sizeof(*r));
		if (!r)
			return -1;
		ht->rows = r;
		ht->cap = nc;
	}
	ht->rows[ht->n] = (struct held_row){ .ev = *ev, .alive = alive, .until_ms = until, .seq = ++ht->seq };
	memset(ev, 0, sizeof(*ev));
	ht->n++;
	return 0;
}

/* Notes the link after a page (its held rows have seq <= ht->seq). Returns 0 or -1 (memory). */
static int hold_link(struct ce_hold_table *ht, const char *link)
{
	char *copy = strdup(link);
	if (!copy)
		return -1;
	if (ht->nlinks == ht->caplinks) {
		size_t nc = ht->caplinks ? ht->caplinks * 2 : 16;
		struct held_link *l = realloc(ht->links, nc * sizeof(*l));
		if (!l) {
			free(copy);
			return -1;
		}
		ht->links = l;
		ht->caplinks = nc;
	}
	ht->links[ht->nlinks++] = (struct held_link){ ht->seq, copy };
	free(ht->link);
	ht->link = strdup(link);
	return ht->link ? 0 : -1;
}

/* Checkpoints the newest link no held row is older than. Returns 0 or -1 with err. */
static int hold_checkpoint(struct app *a, const struct capture_ce_table *t, struct ce_hold_table *ht, char *err,
			   size_t errlen)
{
	unsigned long long min = ~0ULL;
	for (size_t i = 0; i < ht->n; i++)
		if (ht->rows[i].seq < min)
			min = ht->rows[i].seq;
	size_t k = ht->nlinks;
	while (k > 0 && ht->links[k - 1].seq >= min)
		k--;
	if (k == 0)
		return 0;
	if (capture_records_checkpoint_set(a->rec, "ce", a->set.env, t->logical, "delta", ht->links[k - 1].link, err,
					   errlen) != 0)
		return -1;
	for (size_t i = 0; i < k; i++)
		free(ht->links[i].link);
	memmove(ht->links, ht->links + k, (ht->nlinks - k) * sizeof(*ht->links));
	ht->nlinks -= k;
	return 0;
}

/* Publishes the held rows whose time is up and that no webhook captured meanwhile (neither staged
 * in a source transaction nor recorded at their version). Creates and updates go first, then the
 * deletes: a delete's version is assigned only now, above every version recorded for its row
 * (which includes the rows just published and whatever the webhooks published meanwhile).
 * Returns 0 or -1 with err. */
static int hold_release(struct app *a, const struct capture_ce_table *t, struct ce_hold_table *ht, char *err,
			size_t errlen)
{
	long long now = wall_ms();
	size_t due = 0;
	for (size_t i = 0; i < ht->n; i++)
		due += ht->rows[i].until_ms <= now || *a->stop;
	if (due == 0 || *a->stop)
		return 0;
	int rc = -1;
	const char **eids = calloc(ht->n, sizeof(*eids)), **rids = calloc(ht->n, sizeof(*rids));
	char (*rbuf)[CAPTURE_GUID_LEN + 1] = calloc(ht->n, sizeof(*rbuf));
	int *staged = calloc(ht->n, sizeof(*staged));
	struct capture_records_state *st = calloc(ht->n, sizeof(*st));
	struct event *out = calloc(ht->n, sizeof(*out));
	int *alive = calloc(ht->n, sizeof(*alive));
	size_t *idx = calloc(ht->n, sizeof(*idx));
	if (!eids || !rids || !rbuf || !staged || !st || !out || !alive || !idx) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int deletes = 0; deletes <= 1; deletes++) {
		size_t m = 0, nd = 0;
		for (size_t i = 0; i < ht->n; i++) {
			struct event *ev = &ht->rows[i].ev;
			if (ht->rows[i].until_ms > now || (ev->op == EVENT_OP_DELETE) != deletes)
				continue;
			if (deletes && complete_deletes(a, t, ev, 1, err, errlen) != 0)
				goto out;
			const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev->key, t->id_field);
			snprintf(rbuf[nd], sizeof(rbuf[nd]), "%s", cJSON_IsString(id) ? id->valuestring : "");
			rids[nd] = rbuf[nd];
			eids[nd] = ev->id;
			idx[nd++] = i;
		}
		if (nd == 0)
			continue;
		txn_staged(a->txn, eids, nd, staged);
		if (!deletes && capture_records_state(a->rec, "ce", a->set.env, t->logical, rids, nd, st, err, errlen) != 0)
			goto out;
		for (size_t j = 0; j < nd; j++) {
			const struct event *ev = &ht->rows[idx[j]].ev;
			if (staged[j])
				continue; /* its transaction's unit has it */
			if (!deletes && st[j].known &&
			    (st[j].version >= ev->source.version || st[j].deleted > ev->source.version))
				continue; /* a webhook has it, or a later delete */
			out[m] = *ev; /* shallow: published from the held copy */
			alive[m] = ht->rows[idx[j]].alive;
			m++;
		}
		/* a delete a webhook already published goes out again under the same id (its tombstone):
		 * the record table cannot tell a published tombstone from one whose publish failed */
		if (m > 0 && app_publish(a, out, m, alive, err, errlen) != 0)
			goto out;
	}
	/* drop the released rows (published or taken by a webhook) */
	size_t k = 0;
	for (size_t i = 0; i < ht->n; i++) {
		if (ht->rows[i].until_ms <= now)
			event_clear(&ht->rows[i].ev);
		else
			ht->rows[k++] = ht->rows[i];
	}
	ht->n = k;
	rc = 0;
out:
	free(eids);
	free(rids);
	free(rbuf);
	free(staged);
	free(st);
	free(out);
	free(alive);
	free(idx);
	return rc;
}

/* Polls one table until its latest page. Returns 0 or -1. */
static int poll_table(struct app *a, const struct capture_ce_table *t, struct ce_hold_table *ht)
{
	char err[1024];
	char *pos = NULL;
	int rc = -1;
	int initial = 0;
	char *link = NULL;
	long long grace = a->set.delta_grace_ms;

	if (hold_release(a, t, ht, err, sizeof(err)) != 0 || hold_checkpoint(a, t, ht, err, sizeof(err)) != 0)
		goto fail;
	if (ht->link) {
		link = strdup(ht->link);
	} else {
		if (capture_records_checkpoint_get(a->rec, "ce", a->set.env, t->logical, "delta", &pos, err,
						   sizeof(err)) != 0)
			goto fail;
		if (!pos) {
			initial = 1;
			link = strdup(t->set);
		} else {
			link = pos;
			pos = NULL;
		}
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
			/* recent creates/updates wait for their webhooks (a transaction's rows then go out
			 * in its unit, never alone first); the rest goes out now */
			long long now = wall_ms();
			int *held = calloc(d.n, sizeof(*held));
			/* a delete carries no time: it is held from now, so that the webhooks of the row's
			 * last changes are recorded before its version is assigned */
			for (long i = 0; held && i < m; i++) {
				int del = evs[i].op == EVENT_OP_DELETE;
				held[i] = grace > 0 && (del || evs[i].source.ts > now - grace) &&
					  hold_row(ht, &evs[i], alive[i], (del ? now : evs[i].source.ts) + grace) == 0;
			}
			long k = held ? compact(evs, alive, m, held) : m;
			free(held);
			int prc = m < 0 || (k > 0 && complete_deletes(a, t, evs, (size_t)k, err, sizeof(err)) != 0) ? -1
				  : k == 0 ? 0
					   : app_publish(a, evs, (size_t)k, alive, err, sizeof(err));
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
		if (!initial || !more) {
			if (hold_link(ht, nl) != 0) {
				free(nl);
				snprintf(err, sizeof(err), "out of memory");
				goto fail;
			}
			if (hold_checkpoint(a, t, ht, err, sizeof(err)) != 0) {
				free(nl);
				goto fail;
			}
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
		if (poll_table(a, t, &a->ce_hold->t[i]) != 0)
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
	if (h.in_transaction && h.correlation_id[0])
		txn_note(a->txn, h.correlation_id);
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
		int src = txn_stage(a->txn, &h.ev, h.correlation_id, err, sizeof(err));
		if (src == PUBLISH_ERR_INVALID) {
			hook_reply(a, resp, 400, "bad_request", NULL, 0, err, t0);
			goto out;
		}
		if (src != 0)
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
