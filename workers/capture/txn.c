#include "txn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include "app.h"
#include "kafka.h"
#include "log.h"
#include "publish.h"

#define TXN_ID_CAP 256
#define TXN_TOPIC_MAX 300
#define TXN_OP_STAGED "staged"
#define TXN_OP_DONE "done"
#define TXN_RETENTION_MS (7LL * 24 * 3600 * 1000)
#define TXN_RECOVERY_MS 60000

struct staged_ev {
	char id[SHA256_HEX_LEN + 1];
	char *text; /* encoded event */
};

struct open_txn {
	char id[TXN_ID_CAP + 1];
	long long last_ms;  /* last event staged */
	long long retry_ms; /* not before this time (after a failed publish) */
	int inflight;       /* events of it being staged now: the unit is not closed meanwhile */
	struct staged_ev *evs;
	size_t n, cap;
};

struct txn {
	struct app *a;
	char topic[TXN_TOPIC_MAX];
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

static void open_clear(struct open_txn *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->evs[i].text);
	free(o->evs);
	memset(o, 0, sizeof(*o));
}

/* The open transaction `id` (caller holds mu), created when create is set; NULL when absent or out
 * of memory. */
static struct open_txn *find_open(struct txn *t, const char *id, int create)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->open[i].id, id) == 0)
			return &t->open[i];
	if (!create)
		return NULL;
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 16;
		struct open_txn *o = realloc(t->open, nc * sizeof(*o));
		if (!o)
			return NULL;
		t->open = o;
		t->cap = nc;
	}
	struct open_txn *o = &t->open[t->n++];
	memset(o, 0, sizeof(*o));
	snprintf(o->id, sizeof(o->id), "%s", id);
	return o;
}

/* Adds a staged event (text copied) to transaction id at time `when` (caller holds mu); an event id
 * already there is kept once. Returns 0 or -1 when out of memory. */
static int add_staged(struct txn *t, const char *id, const char *event_id, const char *text, size_t len,
		      long long when)
{
	struct open_txn *o = find_open(t, id, 1);
	if (!o)
		return -1;
	o->last_ms = when;
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->evs[i].id, event_id) == 0)
			return 0;
	if (o->n == o->cap) {
		size_t nc = o->cap ? o->cap * 2 : 8;
		struct staged_ev *e = realloc(o->evs, nc * sizeof(*e));
		if (!e)
			return -1;
		o->evs = e;
		o->cap = nc;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return -1;
	memcpy(copy, text, len);
	copy[len] = '\0';
	snprintf(o->evs[o->n].id, sizeof(o->evs[o->n].id), "%s", event_id);
	o->evs[o->n].text = copy;
	o->n++;
	return 0;
}

/* Removes the published event ids[0..n) from transaction id, and the transaction when nothing of it
 * is left (caller holds mu). */
static void remove_staged(struct txn *t, const char *id, const char *const *ids, size_t n)
{
	struct open_txn *o = find_open(t, id, 0);
	if (!o)
		return;
	size_t k = 0;
	for (size_t i = 0; i < o->n; i++) {
		int gone = 0;
		for (size_t j = 0; j < n && !gone; j++)
			gone = strcmp(o->evs[i].id, ids[j]) == 0;
		if (gone)
			free(o->evs[i].text);
		else
			o->evs[k++] = o->evs[i];
	}
	o->n = k;
	if (k == 0) {
		open_clear(o);
		*o = t->open[--t->n];
	}
}

/* The staging record key ["<env>","<txn id>"] (new string) or NULL when out of memory. */
static char *staging_key(const struct txn *t, const char *txn_id)
{
	cJSON *k = cJSON_CreateArray();
	char *text = NULL;
	if (k && cJSON_AddItemToArray(k, cJSON_CreateString(t->a->set.env)) &&
	    cJSON_AddItemToArray(k, cJSON_CreateString(txn_id)))
		text = cJSON_PrintUnformatted(k);
	cJSON_Delete(k);
	return text;
}

/* Publishes the staged events of transaction id as one unit, with the done record, in one Kafka
 * transaction. Returns 0 when it is out (or was empty). */
static int flush_one(struct txn *t, const char *id)
{
	struct app *a = t->a;
	char err[1024];
	struct staged_ev *copy = NULL;
	struct event *evs = NULL;
	const char **ids = NULL;
	struct publish_unit *u = NULL;
	char *key = NULL, *done = NULL;
	cJSON *dj = NULL;
	size_t n = 0, m = 0;
	int rc = -1;

	pthread_mutex_lock(&t->mu);
	struct open_txn *o = find_open(t, id, 0);
	n = o ? o->n : 0;
	if (n > EVENT_TXN_TOTAL_MAX)
		n = EVENT_TXN_TOTAL_MAX;
	copy = calloc(n ? n : 1, sizeof(*copy));
	for (size_t i = 0; copy && i < n; i++) {
		memcpy(copy[i].id, o->evs[i].id, sizeof(copy[i].id));
		copy[i].text = strdup(o->evs[i].text);
	}
	pthread_mutex_unlock(&t->mu);
	if (n == 0) {
		rc = 0;
		goto out;
	}
	evs = calloc(n, sizeof(*evs));
	ids = calloc(n, sizeof(*ids));
	dj = cJSON_CreateObject();
	cJSON *arr = dj ? cJSON_AddArrayToObject(dj, "done") : NULL;
	if (!copy || !evs || !ids || !arr)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		if (!copy[i].text)
			goto oom;
		if (event_decode(copy[i].text, strlen(copy[i].text), 0, 0, &evs[m], err, sizeof(err)) != 0) {
			/* never expected: we encoded it; published as done so it does not come back */
			log_error("staged event is invalid; dropped", "txn", id, "reason", err);
			event_clear(&evs[m]);
		} else {
			m++;
		}
		ids[i] = copy[i].id;
		if (!cJSON_AddItemToArray(arr, cJSON_CreateString(copy[i].id)))
			goto oom;
	}
	for (size_t i = 0; i < m; i++) {
		free(evs[i].txn.id);
		evs[i].has_txn = 1;
		evs[i].txn.id = strdup(id);
		evs[i].txn.total = (int)m;
		evs[i].txn.order = (int)i + 1;
		if (!evs[i].txn.id)
			goto oom;
	}
	u = publish_unit_new();
	key = staging_key(t, id);
	done = cJSON_PrintUnformatted(dj);
	if (!u || !key || !done)
		goto oom;
	if (publish_unit_add_message(u, t->topic, key, done, strlen(done), NULL, TXN_OP_DONE, err, sizeof(err)) != 0) {
		log_warn("source transaction not published; will retry", "txn", id, "reason", err);
		goto out;
	}
	if (app_publish_unit(a, u, evs, m, NULL, err, sizeof(err)) != 0) {
		log_warn("source transaction not published; will retry", "txn", id, "reason", err);
		goto out;
	}
	pthread_mutex_lock(&t->mu);
	remove_staged(t, id, ids, n);
	pthread_mutex_unlock(&t->mu);
	char cnt[24];
	snprintf(cnt, sizeof(cnt), "%zu", m);
	log_debug("source transaction published", "txn", id, "events", cnt);
	rc = 0;
	goto out;
oom:
	log_warn("source transaction not published; will retry", "txn", id, "reason", "out of memory");
out:
	for (size_t i = 0; evs && i < n; i++)
		event_clear(&evs[i]);
	for (size_t i = 0; copy && i < n; i++)
		free(copy[i].text);
	free(copy);
	free(evs);
	free(ids);
	free(key);
	free(done);
	cJSON_Delete(dj);
	publish_unit_free(u);
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
			if (t->open[i].inflight > 0)
				continue;
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
			pthread_mutex_unlock(&t->mu);
			int ok = flush_one(t, id) == 0;
			pthread_mutex_lock(&t->mu);
			struct open_txn *o = find_open(t, id, 0);
			if (o && !ok) {
				o->retry_ms = now_ms() + 1000;
			} else if (o && o->n == 0 && o->inflight == 0) {
				open_clear(o); /* only noted (txn_note), nothing staged */
				*o = t->open[--t->n];
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

/* Creates the staging topic when it does not exist. */
static int ensure_topic(struct txn *t, char *errbuf, size_t errlen)
{
	struct kafka_admin *adm = NULL;
	struct kafka_topic_spec have;
	int rc = -1;
	if (kafka_admin_new(t->a->cfg, &adm, errbuf, errlen) != 0)
		goto out;
	int r = kafka_topic_describe(adm, t->topic, 15000, &have, errbuf, errlen);
	if (r == 1) {
		struct kafka_topic_spec want = { .partitions = 1, .replication_factor = -1,
						 .retention_ms = TXN_RETENTION_MS };
		enum kafka_topic_outcome oc;
		if (kafka_topic_ensure(adm, t->topic, &want, 15000, &oc, errbuf, errlen) != 0)
			goto out;
		log_info("staging topic created", "topic", t->topic);
	} else if (r != 0) {
		goto out;
	}
	rc = 0;
out:
	kafka_admin_free(adm);
	return rc;
}

/* One staging record read back at start-up (caller holds no lock: recovery runs alone). */
static void recover_record(struct txn *t, const rd_kafka_message_t *rkm, long long when)
{
	cJSON *key = rkm->key ? cJSON_ParseWithLength(rkm->key, rkm->key_len) : NULL;
	const cJSON *env = cJSON_GetArrayItem(key, 0), *id = cJSON_GetArrayItem(key, 1);
	rd_kafka_headers_t *hdrs = NULL;
	const void *op = NULL, *eid = NULL;
	size_t oplen = 0, eidlen = 0;
	if (!cJSON_IsString(env) || !cJSON_IsString(id) || strcmp(env->valuestring, t->a->set.env) != 0 ||
	    strlen(id->valuestring) > TXN_ID_CAP || !rkm->payload)
		goto out;
	if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(hdrs, PUBLISH_HEADER_OP, &op, &oplen) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(hdrs, PUBLISH_HEADER_ID, &eid, &eidlen) != RD_KAFKA_RESP_ERR_NO_ERROR)
		goto out;
	if (oplen == strlen(TXN_OP_STAGED) && memcmp(op, TXN_OP_STAGED, oplen) == 0 && eidlen == SHA256_HEX_LEN) {
		char ev_id[SHA256_HEX_LEN + 1];
		memcpy(ev_id, eid, SHA256_HEX_LEN);
		ev_id[SHA256_HEX_LEN] = '\0';
		if (add_staged(t, id->valuestring, ev_id, rkm->payload, rkm->len, when) != 0)
			log_error("out of memory reading the staging topic");
	} else if (oplen == strlen(TXN_OP_DONE) && memcmp(op, TXN_OP_DONE, oplen) == 0) {
		cJSON *d = cJSON_ParseWithLength(rkm->payload, rkm->len);
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(d, "done");
		size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
		const char **ids = calloc(n ? n : 1, sizeof(*ids));
		const cJSON *it;
		cJSON_ArrayForEach(it, arr)
		{
			if (ids && cJSON_IsString(it))
				ids[k++] = it->valuestring;
		}
		if (ids)
			remove_staged(t, id->valuestring, ids, k);
		free(ids);
		cJSON_Delete(d);
	}
out:
	cJSON_Delete(key);
}

/* Reads the staging topic (read_committed) from its start to its end and keeps what is staged and
 * not done. Returns 0 or -1 with errbuf. */
static int recover(struct txn *t, char *errbuf, size_t errlen)
{
	struct config_common cfg = *t->a->cfg;
	struct config_kv *kv = calloc(cfg.kafka_props_len + 1, sizeof(*kv));
	struct kafka_consumer *c = NULL;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_topic_t *rkt = NULL;
	char group[400];
	int rc = -1;
	int *eof = NULL;
	if (!kv) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	if (cfg.kafka_props_len)
		memcpy(kv, cfg.kafka_props, cfg.kafka_props_len * sizeof(*kv));
	static char eof_name[] = "enable.partition.eof", eof_value[] = "true";
	kv[cfg.kafka_props_len] = (struct config_kv){ eof_name, eof_value };
	cfg.kafka_props = kv;
	cfg.kafka_props_len++;
	snprintf(group, sizeof(group), "dw-capture-staging-%s-%s", t->a->set.side_name, t->a->set.env);
	struct kafka_consumer_opts co = { .group_id = group, .client_id = "dw-capture-staging" };
	if (kafka_consumer_new(&cfg, &co, &c, errbuf, errlen) != 0)
		goto out;
	rd_kafka_t *h = kafka_consumer_handle(c);
	rkt = rd_kafka_topic_new(h, t->topic, NULL);
	rd_kafka_resp_err_t err = rkt ? rd_kafka_metadata(h, 0, rkt, &md, 15000) : RD_KAFKA_RESP_ERR__NOENT;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errlen, "staging topic %s: no metadata (%s)", t->topic,
			 err ? rd_kafka_err2str(err) : rd_kafka_err2str(md->topics[0].err));
		goto out;
	}
	int np = md->topics[0].partition_cnt;
	eof = calloc((size_t)(np > 0 ? np : 1), sizeof(*eof));
	parts = rd_kafka_topic_partition_list_new(np);
	if (!eof || !parts) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < np; i++)
		rd_kafka_topic_partition_list_add(parts, t->topic, md->topics[0].partitions[i].id)->offset =
			RD_KAFKA_OFFSET_BEGINNING;
	if ((err = rd_kafka_assign(h, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(errbuf, errlen, "staging topic %s: assign: %s", t->topic, rd_kafka_err2str(err));
		goto out;
	}
	long long when = now_ms(), deadline = when + TXN_RECOVERY_MS;
	long records = 0;
	int left = np;
	while (left > 0) {
		if (*t->a->stop) {
			snprintf(errbuf, errlen, "stopped while reading the staging topic %s", t->topic);
			goto out;
		}
		if (now_ms() > deadline) {
			snprintf(errbuf, errlen, "staging topic %s: not read to its end within %d s", t->topic,
				 TXN_RECOVERY_MS / 1000);
			goto out;
		}
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(h, 200);
		if (!rkm)
			continue;
		if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			for (int i = 0; i < np; i++) {
				if (md->topics[0].partitions[i].id == rkm->partition && !eof[i]) {
					eof[i] = 1;
					left--;
				}
			}
		} else if (rkm->err) {
			log_warn("reading the staging topic", "topic", t->topic, "reason", rd_kafka_message_errstr(rkm));
		} else {
			recover_record(t, rkm, when);
			records++;
		}
		rd_kafka_message_destroy(rkm);
	}
	char cnt[24], open[24];
	snprintf(cnt, sizeof(cnt), "%ld", records);
	snprintf(open, sizeof(open), "%zu", t->n);
	log_info("staging topic read", "topic", t->topic, "records", cnt, "open_transactions", open);
	rc = 0;
out:
	if (c)
		(void)rd_kafka_assign(kafka_consumer_handle(c), NULL);
	if (md)
		rd_kafka_metadata_destroy(md);
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	kafka_consumer_close(c);
	free(eof);
	free(kv);
	return rc;
}

int txn_new(struct app *a, struct txn **out, char *errbuf, size_t errlen)
{
	struct txn *t = calloc(1, sizeof(*t));
	*out = NULL;
	if (!t) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	t->a = a;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	snprintf(t->topic, sizeof(t->topic), "%s.capture-staging.%s", a->cfg->topic_prefix ? a->cfg->topic_prefix : "dw",
		 a->set.side_name);
	if (ensure_topic(t, errbuf, errlen) != 0 || recover(t, errbuf, errlen) != 0)
		goto fail;
	if (pthread_create(&t->thread, NULL, flusher, t) != 0) {
		snprintf(errbuf, errlen, "cannot start the transaction flusher");
		goto fail;
	}
	t->started = 1;
	*out = t;
	return 0;
fail:
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
	for (size_t i = 0; i < t->n; i++)
		open_clear(&t->open[i]);
	free(t->open);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

int txn_stage(struct txn *t, const struct event *ev, const char *txn_id, char *errbuf, size_t errlen)
{
	char *text = NULL, *key = NULL;
	size_t len = 0;
	char e[512];
	int rc = PUBLISH_ERR_INVALID;
	struct publish_unit *u = NULL;
	if (strlen(txn_id) == 0 || strlen(txn_id) > TXN_ID_CAP) {
		snprintf(errbuf, errlen, "transaction id must be 1..%d characters", TXN_ID_CAP);
		goto out;
	}
	if (event_encode(ev, &text, &len, e, sizeof(e)) != 0) {
		snprintf(errbuf, errlen, "event: %s", e);
		goto out;
	}
	u = publish_unit_new();
	key = staging_key(t, txn_id);
	if (!u || !key) {
		snprintf(errbuf, errlen, "out of memory");
		rc = PUBLISH_ERR;
		goto out;
	}
	if ((rc = publish_unit_add_message(u, t->topic, key, text, len, ev->id, TXN_OP_STAGED, errbuf, errlen)) != 0)
		goto out;
	pthread_mutex_lock(&t->mu);
	struct open_txn *o = find_open(t, txn_id, 1);
	if (o)
		o->inflight++;
	pthread_mutex_unlock(&t->mu);
	rc = publish_send(t->a->pub, u, errbuf, errlen);
	pthread_mutex_lock(&t->mu);
	o = find_open(t, txn_id, 1); /* may have moved */
	if (o && o->inflight > 0)
		o->inflight--;
	if (rc == 0 && add_staged(t, txn_id, ev->id, text, len, now_ms()) != 0) {
		rc = PUBLISH_ERR; /* staged in Kafka: the next start publishes it */
		snprintf(errbuf, errlen, "out of memory");
	} else if (o) {
		o->last_ms = now_ms();
	}
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
out:
	free(text);
	free(key);
	publish_unit_free(u);
	return rc;
}

void txn_note(struct txn *t, const char *txn_id)
{
	if (!txn_id || strlen(txn_id) == 0 || strlen(txn_id) > TXN_ID_CAP)
		return;
	pthread_mutex_lock(&t->mu);
	struct open_txn *o = find_open(t, txn_id, 1);
	if (o)
		o->last_ms = now_ms();
	pthread_mutex_unlock(&t->mu);
}

void txn_staged(struct txn *t, const char *const *ids, size_t n, int *staged)
{
	pthread_mutex_lock(&t->mu);
	for (size_t k = 0; k < n; k++) {
		staged[k] = 0;
		for (size_t i = 0; i < t->n && !staged[k]; i++)
			for (size_t j = 0; j < t->open[i].n && !staged[k]; j++)
				staged[k] = strcmp(t->open[i].evs[j].id, ids[k]) == 0;
	}
	pthread_mutex_unlock(&t->mu);
}

size_t txn_open_count(struct txn *t)
{
	pthread_mutex_lock(&t->mu);
	size_t n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}
