#include "txn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "log.h"
#include "publish.h"
#include "capture_records.h"

#define TXN_ID_CAP 256

struct open_txn {
	char id[TXN_ID_CAP + 1];
	long long last_ms;  /* last event staged */
	long long retry_ms; /* not before this time (after a failed publish) */
};

struct txn {
	struct app *a;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct open_txn *open;
	size_t n, cap;
	int stopping;
	pthread_t thread;
	int started;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Notes activity of txn id (caller holds mu). Returns 0 or -1 when out of memory. */
static int touch(struct txn *t, const char *id, long long when)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->open[i].id, id) == 0) {
			t->open[i].last_ms = when;
			return 0;
		}
	}
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 16;
		struct open_txn *o = realloc(t->open, nc * sizeof(*o));
		if (!o)
			return -1;
		t->open = o;
		t->cap = nc;
	}
	snprintf(t->open[t->n].id, sizeof(t->open[t->n].id), "%s", id);
	t->open[t->n].last_ms = when;
	t->open[t->n].retry_ms = 0;
	t->n++;
	return 0;
}

/* Publishes staged transaction id as one unit. Returns 0 when it is out (or was empty). */
static int flush_one(struct txn *t, const char *id)
{
	struct app *a = t->a;
	char err[1024];
	char **texts = NULL;
	size_t n = 0;
	struct event *evs = NULL;
	const char **ids = NULL;
	int rc = -1;

	if (capture_records_pending_get(a->rec, a->set.side_name, a->set.env, id, &texts, &n, err, sizeof(err)) != 0) {
		log_warn("cannot read staged transaction", "txn", id, "reason", err);
		goto out;
	}
	if (n == 0) {
		rc = 0;
		goto out;
	}
	evs = calloc(n, sizeof(*evs));
	ids = calloc(n, sizeof(*ids));
	if (!evs || !ids)
		goto out;
	size_t total = n > EVENT_TXN_TOTAL_MAX ? EVENT_TXN_TOTAL_MAX : n;
	for (size_t i = 0; i < total; i++) {
		if (event_decode(texts[i], strlen(texts[i]), 0, 0, &evs[i], err, sizeof(err)) != 0) {
			log_error("staged event is invalid; dropped", "txn", id, "reason", err);
			memset(&evs[i], 0, sizeof(evs[i]));
			continue;
		}
		evs[i].has_txn = 1;
		free(evs[i].txn.id);
		evs[i].txn.id = strdup(id);
		evs[i].txn.total = (int)total;
		evs[i].txn.order = (int)i + 1;
		ids[i] = evs[i].id;
		if (!evs[i].txn.id)
			goto out;
	}
	/* drop undecodable ones (never expected: we encoded them) by compacting */
	size_t m = 0;
	for (size_t i = 0; i < total; i++) {
		if (evs[i].v == 0)
			continue;
		if (m != i) {
			evs[m] = evs[i];
			memset(&evs[i], 0, sizeof(evs[i]));
		}
		ids[m] = evs[m].id;
		m++;
	}
	for (size_t i = 0; i < m; i++) {
		evs[i].txn.total = (int)m;
		evs[i].txn.order = (int)i + 1;
	}
	int prc = app_publish(a, evs, m, NULL, err, sizeof(err));
	if (prc != 0) {
		log_warn("source transaction not published; will retry", "txn", id, "reason", err);
		goto out;
	}
	if (capture_records_pending_delete(a->rec, a->set.side_name, a->set.env, id, ids, m, err, sizeof(err)) != 0) {
		/* published: a later retry republishes the same ids, harmless */
		log_warn("cannot delete staged transaction", "txn", id, "reason", err);
		goto out;
	}
	char cnt[24];
	snprintf(cnt, sizeof(cnt), "%zu", m);
	log_debug("source transaction published", "txn", id, "events", cnt);
	rc = 0;
out:
	for (size_t i = 0; evs && i < n; i++)
		event_clear(&evs[i]);
	free(evs);
	free(ids);
	capture_records_strings_free(texts, n);
	return rc;
}

static void *flusher(void *arg)
{
	struct txn *t = arg;
	long long settle = t->a->set.settle_ms;
	pthread_mutex_lock(&t->mu);
	while (!t->stopping) {
		long long now = now_ms();
		long long next = now + 1000;
		char id[TXN_ID_CAP + 1];
		int found = 0;
		for (size_t i = 0; i < t->n; i++) {
			long long due = t->open[i].last_ms + settle;
			if (t->open[i].retry_ms > due)
				due = t->open[i].retry_ms;
			if (due <= now) {
				snprintf(id, sizeof(id), "%s", t->open[i].id);
				found = 1;
				break;
			}
			if (due < next)
				next = due;
		}
		if (found) {
			long long seen = 0;
			for (size_t i = 0; i < t->n; i++)
				if (strcmp(t->open[i].id, id) == 0)
					seen = t->open[i].last_ms;
			pthread_mutex_unlock(&t->mu);
			int ok = flush_one(t, id) == 0;
			pthread_mutex_lock(&t->mu);
			for (size_t i = 0; i < t->n; i++) {
				if (strcmp(t->open[i].id, id) != 0)
					continue;
				if (ok && t->open[i].last_ms == seen) {
					t->open[i] = t->open[--t->n];
				} else if (!ok) {
					t->open[i].retry_ms = now_ms() + 1000;
				}
				break;
			}
			continue;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long long wait = next - now;
		if (wait < 1)
			wait = 1;
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&t->cv, &t->mu, &ts);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

int txn_new(struct app *a, struct txn **out, char *errbuf, size_t errlen)
{
	struct txn *t = calloc(1, sizeof(*t));
	char **ids = NULL;
	size_t n = 0;
	*out = NULL;
	if (!t) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	t->a = a;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	if (capture_records_pending_txns(a->rec, a->set.side_name, a->set.env, &ids, &n, errbuf, errlen) != 0)
		goto fail;
	long long now = now_ms();
	for (size_t i = 0; i < n; i++) {
		if (touch(t, ids[i], now) != 0) {
			snprintf(errbuf, errlen, "out of memory");
			goto fail;
		}
	}
	if (n > 0) {
		char cnt[24];
		snprintf(cnt, sizeof(cnt), "%zu", n);
		log_info("staged source transactions found; they are published after the settle window", "count", cnt);
	}
	capture_records_strings_free(ids, n);
	ids = NULL;
	if (pthread_create(&t->thread, NULL, flusher, t) != 0) {
		snprintf(errbuf, errlen, "cannot start the transaction flusher");
		goto fail;
	}
	t->started = 1;
	*out = t;
	return 0;
fail:
	capture_records_strings_free(ids, n);
	txn_free(t);
	return -1;
}

void txn_free(struct txn *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->stopping = 1;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	if (t->started)
		pthread_join(t->thread, NULL);
	free(t->open);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

int txn_stage(struct txn *t, const struct event *ev, const char *txn_id, char *errbuf, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	char e[512];
	if (strlen(txn_id) == 0 || strlen(txn_id) > TXN_ID_CAP) {
		snprintf(errbuf, errlen, "transaction id must be 1..%d characters", TXN_ID_CAP);
		return -1;
	}
	if (event_encode(ev, &text, &len, e, sizeof(e)) != 0) {
		snprintf(errbuf, errlen, "event: %s", e);
		return -1;
	}
	int rc = capture_records_pending_add(t->a->rec, t->a->set.side_name, t->a->set.env, txn_id, ev->id, text, errbuf, errlen);
	free(text);
	if (rc != 0)
		return -1;
	pthread_mutex_lock(&t->mu);
	rc = touch(t, txn_id, now_ms());
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	if (rc != 0)
		snprintf(errbuf, errlen, "out of memory");
	return rc;
}

size_t txn_open_count(struct txn *t)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}
