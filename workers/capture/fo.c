#include "fo.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "capture_fo.h"
#include "hook.h"
#include "log.h"
#include "publish.h"
#include "records.h"
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

/* Reads the record, assigns its version and builds the event. Returns 1 with *ev, 0 when the record
 * is gone, -1 with errbuf. Caller holds the record's stripe lock. */
static int read_event(struct app *a, const struct capture_fo_table *t, const struct capture_fo_notice *n,
		      struct event *ev, char *errbuf, size_t errlen)
{
	char *path = NULL, *url = NULL, *keystr = NULL, *keyjson = NULL;
	cJSON *row = NULL, *image = NULL, *key = NULL;
	struct http_response resp;
	int rc = -1;
	char e[512];

	memset(&resp, 0, sizeof(resp));
	if (capture_fo_key_path(t, n->key, &path, errbuf, errlen) != 0)
		goto out;
	if (asprintf(&url, "%s%s?cross-company=true", t->set, path) < 0) {
		url = NULL;
		goto oom;
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
	key = capture_fo_row_key(t, row, errbuf, errlen);
	if (!key)
		goto out;
	image = capture_fo_image(row);
	char hash[SHA256_HEX_LEN + 1];
	if (!image || capture_fo_image_hash(image, hash) != 0)
		goto oom;
	if (event_key_string(key, &keystr, e, sizeof(e)) != 0) {
		snprintf(errbuf, errlen, "key: %s", e);
		goto out;
	}
	keyjson = cJSON_PrintUnformatted(key);
	if (!keyjson)
		goto oom;
	long long version = 0;
	if (records_fo_version(a->rec, a->set.env, t->set, keystr, keyjson, hash, &version, errbuf, errlen) != 0)
		goto out;
	if (capture_fo_event(a->set.env, a->set.own_user, t, n->op, key, image, version,
			     n->ts_ms ? n->ts_ms : wall_ms(), n->user, ev, errbuf, errlen) != 0)
		goto out;
	rc = 1;
	goto out;
oom:
	snprintf(errbuf, errlen, "out of memory");
out:
	http_response_free(&resp);
	cJSON_Delete(row);
	cJSON_Delete(image);
	cJSON_Delete(key);
	free(path);
	free(url);
	free(keystr);
	free(keyjson);
	return rc;
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
	if (capture_fo_event_parse(a->set.fo_tables, a->set.ntables, req->body, req->body_len, &n, err, sizeof(err)) != 0) {
		hook_reply(a, resp, 400, "bad_request", NULL, 0, err, t0);
		return;
	}
	const struct capture_fo_table *t = &a->set.fo_tables[n.table];
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
