#include "fo.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "capture_ce.h"
#include "capture_fo.h"
#include "hook.h"
#include "log.h"
#include "odata.h"
#include "publish.h"
#include "capture_records.h"
#include "sha256.h"
#include "source.h"
#include "txn.h"

/* Re-read and version assignment of one record run under one of these locks, so the version
 * order of a record follows the order of its reads. */
#define STRIPES 64
static pthread_mutex_t stripes[STRIPES] = { [0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER };

static pthread_mutex_t *stripe(const char *record_id)
{
	uint8_t d[SHA256_DIGEST_LEN];
	sha256(record_id, strlen(record_id), d);
	return &stripes[d[0] % STRIPES];
}

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Versions an OData entity `row` of t and builds its event (op 0: create for version 1, else
 * update). Takes the record's stripe lock unless the caller holds it (locked). Returns 1 with *ev, 2 with *ev when the image is
 * unchanged since the last capture, 0 when the image is older than the recorded one (skip), -1. */
static int row_event(struct app *a, const struct capture_fo_table *t, const cJSON *row, int op, long long ts_ms,
		     const char *user, int locked, struct event *ev, char *errbuf, size_t errlen)
{
	cJSON *image = NULL, *key = NULL;
	char *keystr = NULL, *keyjson = NULL;
	int rc = -1;
	char e[512];
	char hash[SHA256_HEX_LEN + 1];

	key = capture_fo_row_key(t, row, errbuf, errlen);
	if (!key)
		goto out;
	image = capture_fo_image(row);
	if (!image || capture_fo_image_hash(image, hash) != 0)
		goto oom;
	if (event_key_string(key, &keystr, e, sizeof(e)) != 0) {
		snprintf(errbuf, errlen, "key: %s", e);
		goto out;
	}
	keyjson = cJSON_PrintUnformatted(key);
	if (!keyjson)
		goto oom;
	const cJSON *mod = t->modified ? cJSON_GetObjectItemCaseSensitive(row, t->modified) : NULL;
	long long version = 0;
	pthread_mutex_t *mu = locked ? NULL : stripe(keystr);
	if (mu)
		pthread_mutex_lock(mu);
	int vr = capture_records_fo_version(a->rec, a->set.env, t->set, keystr, keyjson, hash,
				    cJSON_IsString(mod) ? mod->valuestring : NULL, &version, errbuf, errlen);
	if (mu)
		pthread_mutex_unlock(mu);
	if (vr < 0)
		goto out;
	if (vr == 1) {
		rc = 0;
		goto out;
	}
	if (op == 0)
		op = version == 1 ? EVENT_OP_CREATE : EVENT_OP_UPDATE;
	if (capture_fo_event(a->set.env, a->set.own_user, t, op, key, image, version, ts_ms, user, ev, errbuf, errlen) != 0)
		goto out;
	rc = vr == 2 ? 2 : 1;
	goto out;
oom:
	snprintf(errbuf, errlen, "out of memory");
out:
	cJSON_Delete(image);
	cJSON_Delete(key);
	free(keystr);
	free(keyjson);
	return rc;
}

/* Reads the record, assigns its version and builds the event. Returns 1 with *ev, 0 when the record
 * is gone, -1 with errbuf. Caller holds the record's stripe lock. */
static int read_event(struct app *a, const struct capture_fo_table *t, const struct capture_fo_notice *n,
		      struct event *ev, char *errbuf, size_t errlen)
{
	char *path = NULL, *url = NULL;
	cJSON *row = NULL;
	struct http_response resp;
	int rc = -1;

	memset(&resp, 0, sizeof(resp));
	if (capture_fo_key_path(t, n->key, &path, errbuf, errlen) != 0)
		goto out;
	if (asprintf(&url, "%s%s?cross-company=true", t->set, path) < 0) {
		url = NULL;
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	if (source_get(a->src, url, NULL, &resp, errbuf, errlen) != 0)
		goto out;
	if (resp.status == 404) {
		rc = 0;
		goto out;
	}
	if (resp.status != 200) {
		snprintf(errbuf, errlen, "re-read %s%s: HTTP %ld", t->set, path, resp.status);
		goto out;
	}
	row = cJSON_ParseWithLength(resp.body, resp.body_len);
	if (!cJSON_IsObject(row)) {
		snprintf(errbuf, errlen, "re-read %s%s: not a JSON object", t->set, path);
		goto out;
	}
	int r = row_event(a, t, row, n->op, n->ts_ms ? n->ts_ms : wall_ms(), n->user, 1, ev, errbuf, errlen);
	rc = r < 0 ? -1 : r == 0 ? 0 : 1;
out:
	http_response_free(&resp);
	cJSON_Delete(row);
	free(path);
	free(url);
	return rc;
}

/* ---- modified-time polling ----------------------------------------------------------------- */

#define POLL_PREFER "odata.maxpagesize=5000"

static int poll_table(struct app *a, const struct capture_fo_table *t)
{
	char err[1024];
	char *wm = NULL, *url = NULL, *wm_enc = NULL, *maxmod = NULL;
	int rc = -1;
	struct http_response resp;
	cJSON *doc = NULL;

	memset(&resp, 0, sizeof(resp));
	if (capture_records_checkpoint_get(a->rec, "fo", a->set.env, t->set, "watermark", &wm, err, sizeof(err)) != 0)
		goto fail;
	if (!wm) {
		/* first start: the newest modified time is the watermark; nothing is published */
		if (asprintf(&url, "%s?cross-company=true&$select=%s&$orderby=%s%%20desc&$top=1", t->set, t->modified,
			     t->modified) < 0) {
			url = NULL;
			goto oom;
		}
		if (source_get(a->src, url, NULL, &resp, err, sizeof(err)) != 0)
			goto fail;
		if (resp.status != 200) {
			snprintf(err, sizeof(err), "GET %s: HTTP %ld", t->set, resp.status);
			goto fail;
		}
		doc = cJSON_ParseWithLength(resp.body, resp.body_len);
		const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "value"), 0);
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(first, t->modified);
		const char *start = cJSON_IsString(m) ? m->valuestring : "1900-01-01T00:00:00Z";
		if (capture_records_checkpoint_set(a->rec, "fo", a->set.env, t->set, "watermark", start, err, sizeof(err)) != 0)
			goto fail;
		log_info("modified-time polling started; nothing published for the existing rows", "table", t->set,
			 "watermark", start);
		rc = 0;
		goto out;
	}
	if (odata_pct_encode(wm, strlen(wm), &wm_enc, err, sizeof(err)) != 0)
		goto fail;
	if (asprintf(&url, "%s?cross-company=true&$filter=%s%%20ge%%20%s&$orderby=%s", t->set, t->modified, wm_enc,
		     t->modified) < 0) {
		url = NULL;
		goto oom;
	}
	while (url && !*a->stop) {
		http_response_free(&resp);
		cJSON_Delete(doc);
		doc = NULL;
		if (source_get(a->src, url, POLL_PREFER, &resp, err, sizeof(err)) != 0)
			goto fail;
		if (resp.status != 200) {
			snprintf(err, sizeof(err), "GET %s: HTTP %ld: %.300s", t->set, resp.status, resp.body);
			goto fail;
		}
		doc = cJSON_ParseWithLength(resp.body, resp.body_len);
		const cJSON *value = cJSON_GetObjectItemCaseSensitive(doc, "value");
		if (!cJSON_IsArray(value)) {
			snprintf(err, sizeof(err), "GET %s: no \"value\" array", t->set);
			goto fail;
		}
		size_t n = (size_t)cJSON_GetArraySize(value), m = 0;
		struct event *evs = calloc(n ? n : 1, sizeof(*evs));
		if (!evs)
			goto oom;
		const cJSON *row;
		int bad = 0;
		cJSON_ArrayForEach(row, value)
		{
			const cJSON *mod = cJSON_GetObjectItemCaseSensitive(row, t->modified);
			long long ts = 0;
			if (!cJSON_IsString(mod) || capture_ce_parse_iso(mod->valuestring, &ts) != 0) {
				log_warn("row without a valid modified time skipped", "table", t->set);
				continue;
			}
			int r = row_event(a, t, row, 0, ts, NULL, 0, &evs[m], err, sizeof(err));
			if (r < 0) {
				bad = 1;
				break;
			}
			if (!maxmod || strcmp(mod->valuestring, maxmod) > 0) {
				free(maxmod);
				maxmod = strdup(mod->valuestring);
			}
			if (r == 1)
				m++;
			else
				event_clear(&evs[m]); /* unchanged or older: already captured */
		}
		int prc = bad ? -1 : m ? app_publish(a, evs, m, NULL, err, sizeof(err)) : 0;
		for (size_t i = 0; i < n; i++)
			event_clear(&evs[i]);
		free(evs);
		if (prc != 0)
			goto fail;
		if (maxmod && strcmp(maxmod, wm) > 0 &&
		    capture_records_checkpoint_set(a->rec, "fo", a->set.env, t->set, "watermark", maxmod, err, sizeof(err)) != 0)
			goto fail;
		const cJSON *nl = cJSON_GetObjectItemCaseSensitive(doc, "@odata.nextLink");
		free(url);
		url = cJSON_IsString(nl) ? strdup(nl->valuestring) : NULL;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, sizeof(err), "out of memory");
fail:
	log_warn("modified-time poll failed; retried next round", "table", t->set, "reason", err);
out:
	http_response_free(&resp);
	cJSON_Delete(doc);
	free(wm);
	free(url);
	free(wm_enc);
	free(maxmod);
	return rc;
}

int fo_poll_round(struct app *a)
{
	int rc = 0;
	for (size_t i = 0; i < a->set.ntables && !*a->stop; i++) {
		if (!a->set.fo_tables[i].modified)
			continue;
		if (poll_table(a, &a->set.fo_tables[i]) != 0)
			rc = -1;
	}
	return rc;
}

int fo_polls(const struct app *a)
{
	for (size_t i = 0; i < a->set.ntables; i++)
		if (a->set.fo_tables[i].modified)
			return 1;
	return 0;
}

void fo_webhook(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
	struct app *a = arg;
	long long t0 = hook_now_ms();
	struct capture_fo_notice n;
	struct event ev;
	char err[1024];
	char *record_id = NULL;
	int bad = 0;

	memset(&ev, 0, sizeof(ev));
	if (!hook_authorized(a, req)) {
		hook_reply(a, resp, 401, "unauthorized", NULL, 0, "missing or wrong webhook key", t0);
		return;
	}
	if (!hook_json_body(req)) {
		hook_reply(a, resp, 415, "bad_request", NULL, 0, "Content-Type must be application/json", t0);
		return;
	}
	if (capture_fo_event_parse(a->set.fo_tables, a->set.ntables, req->body, req->body_len, &n, err, sizeof(err)) != 0) {
		hook_reply(a, resp, 400, "bad_request", NULL, 0, err, t0);
		return;
	}
	const struct capture_fo_table *t = &a->set.fo_tables[n.table];
	if (n.in_transaction && n.correlation_id[0])
		txn_note(a->txn, n.correlation_id); /* the re-read below must not close the unit */
	if (event_key_string(n.key, &record_id, err, sizeof(err)) != 0) {
		bad = 1;
		goto fail;
	}
	if (n.op == EVENT_OP_DELETE) {
		if (capture_fo_event(a->set.env, a->set.own_user, t, EVENT_OP_DELETE, n.key, NULL, 0,
				     n.ts_ms ? n.ts_ms : wall_ms(), n.user, &ev, err, sizeof(err)) != 0) {
			bad = 1;
			goto fail;
		}
		if (app_complete_delete(a, &ev, record_id, err, sizeof(err)) != 0)
			goto fail;
	} else {
		pthread_mutex_t *mu = stripe(record_id);
		pthread_mutex_lock(mu);
		int r = read_event(a, t, &n, &ev, err, sizeof(err));
		pthread_mutex_unlock(mu);
		if (r < 0)
			goto fail;
		if (r == 0) {
			hook_reply(a, resp, 200, "gone", "published", 0, NULL, t0);
			goto out;
		}
	}
	if (n.in_transaction && n.correlation_id[0]) {
		if (txn_stage(a->txn, &ev, n.correlation_id, err, sizeof(err)) != 0)
			goto fail;
		hook_reply(a, resp, 202, "staged", "staged", 1, NULL, t0);
		goto out;
	}
	int prc = app_publish(a, &ev, 1, NULL, err, sizeof(err));
	if (prc == PUBLISH_ERR_INVALID) {
		bad = 1;
		goto fail;
	}
	if (prc != 0)
		goto fail;
	hook_reply(a, resp, 200, "published", "published", 1, NULL, t0);
	goto out;
fail:
	if (bad) {
		hook_reply(a, resp, 400, "bad_request", NULL, 0, err, t0);
	} else {
		log_warn("data event not accepted", "table", t->set, "reason", err);
		hook_reply(a, resp, 503, "unavailable", NULL, 0, "temporarily unavailable; retry", t0);
	}
out:
	free(record_id);
	event_clear(&ev);
	capture_fo_notice_clear(&n);
}
