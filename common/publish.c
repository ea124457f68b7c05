#include "publish.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "log.h"

#define TOPIC_MAX 300

struct pub_msg {
	char topic[TOPIC_MAX];
	char *key;
	size_t key_len;
	char *value;
	size_t value_len;
	char id[SHA256_HEX_LEN + 1];
	const char *op; /* static string */
};

struct publish_unit {
	struct pub_msg *msgs;
	size_t n, cap;
	/* submission state, guarded by the publisher's lock */
	int done;
	int rc;
	char err[1024];
	struct publish_unit *next;
};

struct publish {
	struct kafka_producer *prod;
	int txn_timeout_ms;
	size_t max_batch;

	pthread_mutex_t mu;
	pthread_cond_t work_cv; /* queue gained a unit, or stop */
	pthread_cond_t done_cv; /* some unit finished */
	struct publish_unit *head, *tail;
	int queued;
	int stopping;
	int fatal;
	int recovering; /* a transaction could not be aborted yet: refuse new units */
	char fatal_err[512];
	char recover_err[1024];
	struct publish_stats st;
	pthread_t thread;
	int thread_started;

	/* delivery errors seen in the current transaction (publisher thread only) */
	int txn_delivery_errors;
	char txn_delivery_err[256];
};

static void on_delivery(const struct kafka_delivery *d, void *ctx)
{
	struct publish *p = ctx;
	if (d->err == 0)
		return;
	if (p->txn_delivery_errors++ == 0)
		snprintf(p->txn_delivery_err, sizeof(p->txn_delivery_err), "delivery to %s failed: %s",
			 d->topic ? d->topic : "?", d->error ? d->error : "unknown error");
}

/* ---- units ------------------------------------------------------------------------------- */

struct publish_unit *publish_unit_new(void)
{
	return calloc(1, sizeof(struct publish_unit));
}

void publish_unit_free(struct publish_unit *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->n; i++) {
		free(u->msgs[i].key);
		free(u->msgs[i].value);
	}
	free(u->msgs);
	free(u);
}

/* The next (zeroed) message slot of u, not yet counted (u->n++ once filled); NULL when out of memory. */
static struct pub_msg *unit_slot(struct publish_unit *u)
{
	if (u->n == u->cap) {
		size_t ncap = u->cap ? u->cap * 2 : 16;
		struct pub_msg *m = realloc(u->msgs, ncap * sizeof(*m));
		if (!m)
			return NULL;
		u->msgs = m;
		u->cap = ncap;
	}
	memset(&u->msgs[u->n], 0, sizeof(u->msgs[u->n]));
	return &u->msgs[u->n];
}

int publish_unit_add_message(struct publish_unit *u, const char *topic, const char *key, const char *value,
			     size_t value_len, const char *id, const char *op, char *err, size_t errlen)
{
	if (!u || !topic || !key || !value || strlen(topic) >= TOPIC_MAX || (id && strlen(id) != SHA256_HEX_LEN)) {
		snprintf(err, errlen, "publish_unit_add_message: bad topic, key, value or id");
		return PUBLISH_ERR_INVALID;
	}
	struct pub_msg *m = unit_slot(u);
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return PUBLISH_ERR_INVALID;
	}
	m->key = strdup(key);
	m->value = malloc(value_len ? value_len : 1);
	if (!m->key || !m->value) {
		free(m->key);
		free(m->value);
		snprintf(err, errlen, "out of memory");
		return PUBLISH_ERR_INVALID;
	}
	memcpy(m->value, value, value_len);
	snprintf(m->topic, sizeof(m->topic), "%s", topic);
	m->key_len = strlen(key);
	m->value_len = value_len;
	memset(m->id, '0', SHA256_HEX_LEN);
	if (id)
		memcpy(m->id, id, SHA256_HEX_LEN);
	m->id[SHA256_HEX_LEN] = '\0';
	m->op = op;
	u->n++;
	return 0;
}

size_t publish_unit_count(const struct publish_unit *u)
{
	return u ? u->n : 0;
}

const char *publish_unit_event_id(const struct publish_unit *u, size_t idx)
{
	return (u && idx < u->n) ? u->msgs[idx].id : NULL;
}

const char *publish_unit_topic(const struct publish_unit *u, size_t idx)
{
	return (u && idx < u->n) ? u->msgs[idx].topic : NULL;
}

int publish_unit_add(struct publish_unit *u, const char *prefix, const struct event *ev, char *err, size_t errlen)
{
	int rc = PUBLISH_ERR_INVALID;
	char *key = NULL, *value = NULL;
	size_t value_len = 0;
	char table[EVENT_ENTITY_MAX * 4 + 8];
	char e[256];

	if (!u || !ev) {
		snprintf(err, errlen, "publish_unit_add: no unit or event");
		goto out;
	}
	if (event_encode(ev, &value, &value_len, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "event: %s", e);
		goto out;
	}
	if (event_key_string(ev->key, &key, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "event key: %s", e);
		goto out;
	}
	const char *side = event_side_name(ev->source.side);
	int n = snprintf(table, sizeof(table), "%s.%s", side ? side : "?", ev->source.entity);
	if (n < 0 || (size_t)n >= sizeof(table)) {
		snprintf(err, errlen, "source.entity: too long for a topic name");
		goto out;
	}
	for (char *c = table; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	struct pub_msg *m = unit_slot(u);
	if (!m) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (kafka_table_topic(prefix && *prefix ? prefix : "dw", table, m->topic, sizeof(m->topic), e,
			      sizeof(e)) != 0) {
		snprintf(err, errlen, "topic: %s", e);
		goto out;
	}
	m->key = key;
	m->key_len = strlen(key);
	m->value = value;
	m->value_len = value_len;
	memcpy(m->id, ev->id, sizeof(m->id));
	m->id[SHA256_HEX_LEN] = '\0';
	m->op = event_op_name(ev->op);
	key = NULL;
	value = NULL;
	u->n++;
	rc = 0;
out:
	free(key);
	free(value);
	return rc;
}

/* ---- publisher thread --------------------------------------------------------------------- */

static void finish_units(struct publish *p, struct publish_unit *list, int rc, const char *err)
{
	pthread_mutex_lock(&p->mu);
	for (struct publish_unit *u = list; u;) {
		struct publish_unit *next = u->next;
		u->rc = rc;
		snprintf(u->err, sizeof(u->err), "%s", err ? err : "");
		u->next = NULL;
		if (rc == 0) {
			p->st.units_ok++;
			p->st.events_ok += u->n;
		} else {
			p->st.units_failed++;
			p->st.events_failed += u->n;
		}
		u->done = 1;
		u = next;
	}
	pthread_cond_broadcast(&p->done_cv);
	pthread_mutex_unlock(&p->mu);
}

static void set_fatal(struct publish *p, const char *err)
{
	pthread_mutex_lock(&p->mu);
	if (!p->fatal) {
		p->fatal = 1;
		snprintf(p->fatal_err, sizeof(p->fatal_err), "%s", err);
	}
	pthread_mutex_unlock(&p->mu);
	log_error("Kafka producer fatal error; capture must stop", "reason", err);
}

/* Aborts the open transaction, retrying while the broker is unreachable. While this goes on, new
 * units are refused (recovering). Returns 0 once aborted, -1 on a fatal error or when stopping. */
static int abort_txn(struct publish *p, const char *why)
{
	char e[256];
	int attempts = 0;
	for (;;) {
		int rc = kafka_txn_abort(p->prod, p->txn_timeout_ms, e, sizeof(e));
		/* A commit that timed out (broker down) is still in progress inside librdkafka: abort then
		 * fails with "Conflicting commit_transaction API call is already in progress" for ever,
		 * and the only way out is to resume the commit by calling it again. Once it completes
		 * the transaction is closed; its units were reported failed, so they are sent again
		 * (same ids: at worst a duplicate). */
		if (rc == KAFKA_ERR && strstr(e, "commit_transaction API call is already in progress"))
			rc = kafka_txn_commit(p->prod, p->txn_timeout_ms, e, sizeof(e));
		if (rc == 0) {
			pthread_mutex_lock(&p->mu);
			p->recovering = 0;
			p->st.txns_aborted++;
			pthread_mutex_unlock(&p->mu);
			if (attempts > 0)
				log_info("Kafka transaction aborted after retries; publishing resumes");
			return 0;
		}
		if (rc == KAFKA_ERR_FATAL) {
			set_fatal(p, e);
			return -1;
		}
		struct publish_unit *waiting = NULL;
		pthread_mutex_lock(&p->mu);
		if (!p->recovering) {
			p->recovering = 1;
			snprintf(p->recover_err, sizeof(p->recover_err),
				 "Kafka unavailable: a failed transaction is still being aborted (%.900s)", why);
		}
		/* units queued meanwhile fail now rather than wait for the broker */
		waiting = p->head;
		p->head = p->tail = NULL;
		p->queued = 0;
		int stopping = p->stopping;
		pthread_mutex_unlock(&p->mu);
		if (waiting)
			finish_units(p, waiting, PUBLISH_ERR, p->recover_err);
		log_warn("could not abort the Kafka transaction yet; retrying", "reason", e);
		if (stopping)
			return -1;
		attempts++;
		struct timespec ts = { 0, 200 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* Publishes the units in *listp (linked by next) in one transaction. Returns 0 or the unit rc. When
 * the transaction has to be aborted, the units are reported failed before the abort is attempted
 * (which may take as long as the broker is away) and *listp is set to NULL. */
static int run_txn(struct publish *p, struct publish_unit **listp, char *err, size_t errlen)
{
	struct publish_unit *list = *listp;
	char e[256];
	int rc;

	p->txn_delivery_errors = 0;
	p->txn_delivery_err[0] = '\0';
	rc = kafka_txn_begin(p->prod, e, sizeof(e));
	if (rc != 0) {
		snprintf(err, errlen, "Kafka: %s", e);
		if (rc == KAFKA_ERR_FATAL) {
			set_fatal(p, e);
			return PUBLISH_ERR_FATAL;
		}
		return PUBLISH_ERR;
	}
	for (struct publish_unit *u = list; u; u = u->next) {
		for (size_t i = 0; i < u->n; i++) {
			struct pub_msg *m = &u->msgs[i];
			struct kafka_header h[2] = {
				{ PUBLISH_HEADER_ID, m->id, SHA256_HEX_LEN },
				{ PUBLISH_HEADER_OP, m->op, m->op ? strlen(m->op) : 0 },
			};
			rc = kafka_produce(p->prod, m->topic, m->key, m->key_len, m->value, m->value_len, h, 2,
					   NULL, e, sizeof(e));
			if (rc != 0) {
				snprintf(err, errlen, "Kafka produce to %s: %s", m->topic, e);
				if (rc == KAFKA_ERR_FATAL) {
					set_fatal(p, e);
					return PUBLISH_ERR_FATAL;
				}
				goto abort;
			}
		}
	}
	rc = kafka_txn_commit(p->prod, p->txn_timeout_ms, e, sizeof(e));
	if (rc == 0 && p->txn_delivery_errors == 0) {
		pthread_mutex_lock(&p->mu);
		p->st.txns_committed++;
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	if (rc == KAFKA_ERR_FATAL) {
		snprintf(err, errlen, "Kafka: %s", e);
		set_fatal(p, e);
		return PUBLISH_ERR_FATAL;
	}
	if (rc == 0) {
		/* Committed although a delivery report said otherwise: should not happen with
		 * transactions; report the unit as failed so the caller retries (same ids). */
		snprintf(err, errlen, "Kafka: %s", p->txn_delivery_err);
		return PUBLISH_ERR;
	}
	snprintf(err, errlen, "Kafka: %s", e);
abort:
	/* refuse new units and answer these now; then abort, however long the broker takes */
	pthread_mutex_lock(&p->mu);
	if (!p->recovering) {
		p->recovering = 1;
		snprintf(p->recover_err, sizeof(p->recover_err),
			 "Kafka unavailable: a failed transaction is being aborted (%.900s)", err);
	}
	pthread_mutex_unlock(&p->mu);
	finish_units(p, list, PUBLISH_ERR, err);
	*listp = NULL;
	if (abort_txn(p, err) != 0) {
		char fe[512];
		if (publish_fatal(p, fe, sizeof(fe)))
			return PUBLISH_ERR_FATAL;
	}
	return PUBLISH_ERR;
}

static void *publisher_main(void *arg)
{
	struct publish *p = arg;
	char err[1024];

	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->work_cv, &p->mu);
		if (!p->head) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		/* take whole units up to max_batch events (at least one unit) */
		struct publish_unit *list = p->head, *last = p->head;
		size_t events = last->n;
		int taken = 1;
		while (last->next && events + last->next->n <= p->max_batch) {
			last = last->next;
			events += last->n;
			taken++;
		}
		p->head = last->next;
		if (!p->head)
			p->tail = NULL;
		last->next = NULL;
		p->queued -= taken;
		int fatal = p->fatal;
		char fe[512];
		snprintf(fe, sizeof(fe), "%s", p->fatal_err);
		pthread_mutex_unlock(&p->mu);

		if (fatal) {
			finish_units(p, list, PUBLISH_ERR_FATAL, fe);
			continue;
		}
		err[0] = '\0';
		int rc = run_txn(p, &list, err, sizeof(err));
		if (list)
			finish_units(p, list, rc, err);
	}
	return NULL;
}

/* ---- publisher ----------------------------------------------------------------------------- */

int publish_new(const struct config_common *cfg, const struct publish_opts *opts, struct publish **out,
		char *errbuf, size_t errlen)
{
	int rc = PUBLISH_ERR;
	struct publish *p = NULL;
	char e[256];

	*out = NULL;
	if (!opts || !opts->transactional_id || !*opts->transactional_id) {
		snprintf(errbuf, errlen, "publish: a transactional id is required");
		goto out;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work_cv, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	p->txn_timeout_ms = opts->txn_timeout_ms > 0 ? opts->txn_timeout_ms : 30000;
	p->max_batch = opts->max_batch_events > 0 ? opts->max_batch_events : 10000;

	struct kafka_producer_opts po = {
		.client_id = opts->client_id,
		.on_delivery = on_delivery,
		.ctx = p,
		.transactional_id = opts->transactional_id,
	};
	/* A broker outage must not outlive the transaction on the coordinator, or the producer turns
	 * fatal when the broker returns: keep transactions (and, through librdkafka, their messages)
	 * alive for up to 15 minutes, the brokers' default transaction.max.timeout.ms, unless the
	 * operator chose a value (DW_KAFKA_TRANSACTION_TIMEOUT_MS). Commits and aborts still return
	 * after txn_timeout_ms; a commit that timed out is resumed once the broker is back. */
	struct config_common c2 = *cfg;
	struct config_kv *props = calloc(cfg->kafka_props_len + 1, sizeof(*props));
	if (!props) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	int has_timeout = 0;
	for (size_t i = 0; i < cfg->kafka_props_len; i++) {
		props[i] = cfg->kafka_props[i];
		has_timeout |= strcmp(props[i].key, "transaction.timeout.ms") == 0;
	}
	c2.kafka_props = props;
	c2.kafka_props_len = cfg->kafka_props_len;
	if (!has_timeout)
		props[c2.kafka_props_len++] = (struct config_kv){ (char *)"transaction.timeout.ms", (char *)"900000" };
	int krc = kafka_producer_new(&c2, &po, &p->prod, e, sizeof(e));
	free(props);
	if (krc != 0) {
		snprintf(errbuf, errlen, "Kafka producer: %s", e);
		rc = krc == KAFKA_ERR_FATAL ? PUBLISH_ERR_FATAL : PUBLISH_ERR;
		goto out;
	}
	krc = kafka_txn_init(p->prod, p->txn_timeout_ms, e, sizeof(e));
	if (krc != 0) {
		snprintf(errbuf, errlen, "Kafka transactions: %s", e);
		rc = krc == KAFKA_ERR_FATAL ? PUBLISH_ERR_FATAL : PUBLISH_ERR;
		goto out;
	}
	if (pthread_create(&p->thread, NULL, publisher_main, p) != 0) {
		snprintf(errbuf, errlen, "publish: cannot start the publisher thread: %s", strerror(errno));
		goto out;
	}
	p->thread_started = 1;
	*out = p;
	p = NULL;
	rc = 0;
out:
	publish_free(p);
	return rc;
}

void publish_stop(struct publish *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
}

void publish_free(struct publish *p)
{
	if (!p)
		return;
	publish_stop(p);
	if (p->thread_started)
		pthread_join(p->thread, NULL);
	if (p->prod) {
		int left = kafka_producer_close(p->prod, p->txn_timeout_ms);
		if (left > 0)
			log_warn("Kafka producer closed with undelivered messages (their units were not confirmed)");
	}
	pthread_cond_destroy(&p->done_cv);
	pthread_cond_destroy(&p->work_cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int publish_fatal(struct publish *p, char *errbuf, size_t errlen)
{
	pthread_mutex_lock(&p->mu);
	int f = p->fatal;
	if (f)
		snprintf(errbuf, errlen, "%s", p->fatal_err);
	pthread_mutex_unlock(&p->mu);
	return f;
}

void publish_get_stats(struct publish *p, struct publish_stats *out)
{
	pthread_mutex_lock(&p->mu);
	*out = p->st;
	out->queued_units = p->queued;
	pthread_mutex_unlock(&p->mu);
}

int publish_send(struct publish *p, struct publish_unit *u, char *errbuf, size_t errlen)
{
	int rc;

	if (!u || u->n == 0)
		return 0;
	pthread_mutex_lock(&p->mu);
	if (p->stopping) {
		snprintf(errbuf, errlen, "publisher is stopping");
		rc = PUBLISH_ERR_STOPPED;
		goto out;
	}
	if (p->fatal) {
		snprintf(errbuf, errlen, "%s", p->fatal_err);
		rc = PUBLISH_ERR_FATAL;
		goto out;
	}
	if (p->recovering) {
		snprintf(errbuf, errlen, "%s", p->recover_err);
		p->st.units_failed++;
		p->st.events_failed += u->n;
		rc = PUBLISH_ERR;
		goto out;
	}
	u->done = 0;
	u->rc = 0;
	u->err[0] = '\0';
	u->next = NULL;
	if (p->tail)
		p->tail->next = u;
	else
		p->head = u;
	p->tail = u;
	p->queued++;
	pthread_cond_signal(&p->work_cv);
	while (!u->done)
		pthread_cond_wait(&p->done_cv, &p->mu);
	rc = u->rc;
	if (rc != 0)
		snprintf(errbuf, errlen, "%s", u->err);
out:
	pthread_mutex_unlock(&p->mu);
	return rc;
}
