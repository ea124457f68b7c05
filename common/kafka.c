/* Kafka producer, consumer and admin helpers; see kafka.h for the contracts. */
#include "kafka.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define QUEUE_FULL_WAIT_MS 10000 /* how long kafka_produce waits for room in the local queue */
#define CLOSE_REPORT_WAIT_MS 2000 /* how long close waits for the reports of purged messages */
#define TABLE_ENTITY_MAX 100
#define TOPIC_NAME_MAX 249 /* Kafka's own limit */

/* A setting the helpers rely on; the operator may repeat it but not change it. */
struct forced {
	const char *key;
	const char *value;
	const char *why;
};

static const struct forced producer_forced[] = {
	{ "enable.idempotence", "true", "the producer must not duplicate or reorder messages" },
	{ "acks", "all", "a message counts as delivered only when all in-sync replicas have it" },
};

static const struct forced consumer_forced[] = {
	{ "enable.auto.commit", "false", "offsets are committed only after outcomes are recorded" },
	{ "enable.auto.offset.store", "false", "offsets are stored only after outcomes are recorded" },
	{ "isolation.level", "read_committed", "aborted transactions must never be applied" },
	{ "partition.assignment.strategy", "cooperative-sticky", "rebalances must not stop every partition" },
};

/*
 * Consumer defaults the operator may change through DW_KAFKA_*: where a new group starts, and a
 * bounded pre-fetch. librdkafka's own pre-fetch (queued.max.messages.kbytes 65536, queued.min.messages
 * 100000) lets a worker that starts on a backlog hold up to 64 MB of fetched messages before it has
 * processed any; a worker applies at most a few thousand events per second, so 8 MB per fetch queue
 * keeps it busy and its memory small.
 */
static const struct forced consumer_defaults[] = {
	{ "auto.offset.reset", "earliest", "a new group starts at the beginning of the history" },
	{ "queued.max.messages.kbytes", "8192", "bounded pre-fetch (librdkafka's default is 65536)" },
	{ "queued.min.messages", "10000", "bounded pre-fetch (librdkafka's default is 100000)" },
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "sasl.mechanism" -> "DW_KAFKA_SASL_MECHANISM", the variable an operator sets. */
static void prop_env_name(const char *key, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "DW_KAFKA_");
	for (size_t i = 0; key[i] && (size_t)n + 1 < outlen; i++, n++)
		out[n] = key[i] == '.' ? '_' : (char)toupper((unsigned char)key[i]);
	out[(size_t)n < outlen ? (size_t)n : outlen - 1] = '\0';
}

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, const char *source, char *errbuf,
		    size_t errlen)
{
	char why[512], safe[512];
	if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
		log_redact(why, safe, sizeof(safe));
		snprintf(errbuf, errlen, "Kafka property %s (from %s) rejected: %s", key, source, safe);
		return -1;
	}
	return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	enum log_level l = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
	if (log_enabled(l))
		log_write(l, "librdkafka", "facility", fac, "detail", buf, NULL);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[512];
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		log_error("kafka fatal error", "error", rd_kafka_err2name(orig), "reason", fatal);
		return;
	}
	log_warn("kafka error", "error", rd_kafka_err2name((rd_kafka_resp_err_t)err), "reason", reason);
}

/*
 * A configuration with bootstrap.servers, every operator property, then the forced settings.
 * An operator property that contradicts a forced one is an error naming both.
 */
static int conf_build(const struct config_common *cfg, const struct forced *forced, size_t nforced,
		      rd_kafka_conf_t **out, char *errbuf, size_t errlen)
{
	int rc = KAFKA_ERR;
	rd_kafka_conf_t *conf = NULL;
	char env[160];

	if (!cfg->kafka_brokers || !*cfg->kafka_brokers) {
		snprintf(errbuf, errlen, "DW_KAFKA_BROKERS is not set (Kafka bootstrap servers, host:port[,...])");
		goto out;
	}
	conf = rd_kafka_conf_new();
	if (conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, "DW_KAFKA_BROKERS", errbuf, errlen) != 0)
		goto out;
	for (size_t i = 0; i < cfg->kafka_props_len; i++) {
		const struct config_kv *kv = &cfg->kafka_props[i];
		prop_env_name(kv->key, env, sizeof(env));
		for (size_t f = 0; f < nforced; f++) {
			if (strcmp(kv->key, forced[f].key) == 0 && strcmp(kv->value, forced[f].value) != 0) {
				snprintf(errbuf, errlen, "%s must be %s here (%s): it is set to '%s'", env,
					 forced[f].value, forced[f].why, kv->value);
				goto out;
			}
		}
		if (conf_set(conf, kv->key, kv->value, env, errbuf, errlen) != 0)
			goto out;
	}
	for (size_t f = 0; f < nforced; f++)
		if (conf_set(conf, forced[f].key, forced[f].value, "dualwrite", errbuf, errlen) != 0)
			goto out;
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	*out = conf;
	conf = NULL;
	rc = 0;
out:
	if (conf)
		rd_kafka_conf_destroy(conf);
	return rc;
}

/* rd_kafka_new, which takes ownership of conf on success only. */
static int client_new(rd_kafka_type_t type, rd_kafka_conf_t **conf, rd_kafka_t **out, char *errbuf, size_t errlen)
{
	char why[512];
	rd_kafka_t *rk = rd_kafka_new(type, *conf, why, sizeof(why));
	if (!rk) {
		snprintf(errbuf, errlen, "cannot create Kafka client: %s", why);
		return KAFKA_ERR;
	}
	*conf = NULL;
	*out = rk;
	return 0;
}

static int fatal_reason(rd_kafka_t *rk, char *errbuf, size_t errlen)
{
	char why[512];
	rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk, why, sizeof(why));
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "fatal Kafka error %s: %s", rd_kafka_err2name(err), why);
	return 1;
}

int kafka_table_topic(const char *prefix, const char *table, char *out, size_t outlen, char *errbuf, size_t errlen)
{
	const char *dot = strchr(table, '.');
	if (!dot) {
		snprintf(errbuf, errlen, "table '%s' must be <side>.<entity>, e.g. ce.account or fo.customersv3",
			 table);
		return -1;
	}
	size_t side_len = (size_t)(dot - table);
	if (!((side_len == 2 && strncmp(table, "ce", 2) == 0) || (side_len == 2 && strncmp(table, "fo", 2) == 0))) {
		snprintf(errbuf, errlen, "table '%s': side must be ce or fo", table);
		return -1;
	}
	const char *entity = dot + 1;
	size_t elen = strlen(entity);
	if (elen == 0 || elen > TABLE_ENTITY_MAX) {
		snprintf(errbuf, errlen, "table '%s': entity must be 1 to %d characters", table, TABLE_ENTITY_MAX);
		return -1;
	}
	for (size_t i = 0; i < elen; i++) {
		char ch = entity[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
			snprintf(errbuf, errlen, "table '%s': entity may only hold a-z, 0-9 and _", table);
			return -1;
		}
	}
	int n = snprintf(out, outlen, "%s.%s", prefix, table);
	if (n < 0 || (size_t)n >= outlen || n > TOPIC_NAME_MAX) {
		snprintf(errbuf, errlen, "topic for table '%s' is longer than %d characters", table, TOPIC_NAME_MAX);
		return -1;
	}
	return 0;
}

/* ---- producer ---------------------------------------------------------------------------- */

struct kafka_producer {
	rd_kafka_t *rk;
	kafka_delivery_fn *on_delivery;
	void *ctx;
	uint64_t queued, delivered, failed;
	int transactional;
	int in_txn;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct kafka_producer *p = opaque;
	struct kafka_delivery d = {
		.msg_opaque = m->_private,
		.topic = rd_kafka_topic_name(m->rkt),
		.partition = m->partition,
		.offset = m->err ? -1 : m->offset,
		.err = m->err,
		.error = m->err ? rd_kafka_err2str(m->err) : NULL,
	};
	if (m->err)
		p->failed++;
	else
		p->delivered++;
	if (p->on_delivery)
		p->on_delivery(&d, p->ctx);
}

int kafka_producer_new(const struct config_common *cfg, const struct kafka_producer_opts *opts,
		       struct kafka_producer **out, char *errbuf, size_t errlen)
{
	int rc = KAFKA_ERR;
	rd_kafka_conf_t *conf = NULL;
	struct kafka_producer *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	if (conf_build(cfg, producer_forced, sizeof(producer_forced) / sizeof(producer_forced[0]), &conf, errbuf,
		       errlen) != 0)
		goto out;
	if (opts && opts->client_id && conf_set(conf, "client.id", opts->client_id, "caller", errbuf, errlen) != 0)
		goto out;
	if (opts && opts->transactional_id) {
		if (conf_set(conf, "transactional.id", opts->transactional_id, "caller", errbuf, errlen) != 0)
			goto out;
		p->transactional = 1;
	}
	if (opts) {
		p->on_delivery = opts->on_delivery;
		p->ctx = opts->ctx;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_opaque(conf, p);
	if (client_new(RD_KAFKA_PRODUCER, &conf, &p->rk, errbuf, errlen) != 0)
		goto out;
	*out = p;
	p = NULL;
	rc = 0;
out:
	if (conf)
		rd_kafka_conf_destroy(conf);
	free(p);
	return rc;
}

int kafka_produce(struct kafka_producer *p, const char *topic, const void *key, size_t key_len, const void *value,
		  size_t value_len, const struct kafka_header *headers, size_t n, void *msg_opaque, char *errbuf,
		  size_t errlen)
{
	int rc = KAFKA_ERR;
	rd_kafka_headers_t *hdrs = NULL;
	if (n > 0) {
		hdrs = rd_kafka_headers_new(n);
		for (size_t i = 0; i < n; i++) {
			rd_kafka_resp_err_t herr = rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
								      (ssize_t)headers[i].value_len);
			if (herr) {
				snprintf(errbuf, errlen, "header '%s': %s", headers[i].name, rd_kafka_err2str(herr));
				goto out;
			}
		}
	}
	long long deadline = now_ms() + QUEUE_FULL_WAIT_MS;
	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
			p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
			RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(msg_opaque),
			RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			hdrs = NULL; /* the message owns them now */
			p->queued++;
			rd_kafka_poll(p->rk, 0);
			rc = 0;
			goto out;
		}
		if (err == RD_KAFKA_RESP_ERR__FATAL) {
			fatal_reason(p->rk, errbuf, errlen);
			rc = KAFKA_ERR_FATAL;
			goto out;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || now_ms() >= deadline) {
			snprintf(errbuf, errlen, "cannot produce to %s: %s", topic, rd_kafka_err2str(err));
			goto out;
		}
		rd_kafka_poll(p->rk, 100);
	}
out:
	if (hdrs)
		rd_kafka_headers_destroy(hdrs);
	return rc;
}

int kafka_producer_poll(struct kafka_producer *p, int timeout_ms)
{
	int served = rd_kafka_poll(p->rk, timeout_ms);
	if (fatal_reason(p->rk, NULL, 0))
		return KAFKA_ERR_FATAL;
	return served;
}

int kafka_producer_outstanding(const struct kafka_producer *p)
{
	return (int)(p->queued - p->delivered - p->failed);
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
{
	rd_kafka_flush(p->rk, timeout_ms);
	if (fatal_reason(p->rk, errbuf, errlen))
		return KAFKA_ERR_FATAL;
	int left = kafka_producer_outstanding(p);
	if (left > 0) {
		snprintf(errbuf, errlen, "%d message(s) not delivered after %d ms", left, timeout_ms);
		return KAFKA_ERR_TIMEOUT;
	}
	return 0;
}

void kafka_producer_counts(const struct kafka_producer *p, uint64_t *delivered, uint64_t *failed)
{
	if (delivered)
		*delivered = p->delivered;
	if (failed)
		*failed = p->failed;
}

int kafka_producer_fatal(struct kafka_producer *p, char *errbuf, size_t errlen)
{
	return fatal_reason(p->rk, errbuf, errlen);
}

rd_kafka_t *kafka_producer_handle(struct kafka_producer *p)
{
	return p->rk;
}

int kafka_producer_close(struct kafka_producer *p, int timeout_ms)
{
	if (!p)
		return 0;
	char err[512];
	if (p->in_txn && kafka_txn_abort(p, timeout_ms, err, sizeof(err)) != 0)
		log_warn("could not abort the open Kafka transaction", "reason", err);
	rd_kafka_flush(p->rk, timeout_ms);
	int left = kafka_producer_outstanding(p);
	if (left > 0) {
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		long long deadline = now_ms() + CLOSE_REPORT_WAIT_MS;
		while (kafka_producer_outstanding(p) > 0 && now_ms() < deadline)
			rd_kafka_poll(p->rk, 50);
		snprintf(err, sizeof(err), "%d", left);
		log_warn("kafka producer closed with undelivered messages", "count", err);
	}
	rd_kafka_destroy(p->rk);
	free(p);
	return left;
}

/* Turns a transactional API error into a return code and errbuf; frees the error. */
static int txn_error(rd_kafka_error_t *error, const char *what, char *errbuf, size_t errlen)
{
	int rc = KAFKA_ERR;
	if (rd_kafka_error_is_fatal(error))
		rc = KAFKA_ERR_FATAL;
	snprintf(errbuf, errlen, "%s: %s%s%s", what, rd_kafka_error_string(error),
		 rd_kafka_error_txn_requires_abort(error) ? " (abort required)" : "",
		 rd_kafka_error_is_retriable(error) ? " (retriable)" : "");
	rd_kafka_error_destroy(error);
	return rc;
}

static int require_txn(struct kafka_producer *p, char *errbuf, size_t errlen)
{
	if (p->transactional)
		return 0;
	snprintf(errbuf, errlen, "producer is not transactional (no transactional id given)");
	return KAFKA_ERR;
}

int kafka_txn_init(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
{
	if (require_txn(p, errbuf, errlen) != 0)
		return KAFKA_ERR;
	rd_kafka_error_t *e = rd_kafka_init_transactions(p->rk, timeout_ms);
	return e ? txn_error(e, "init transactions", errbuf, errlen) : 0;
}

int kafka_txn_begin(struct kafka_producer *p, char *errbuf, size_t errlen)
{
	if (require_txn(p, errbuf, errlen) != 0)
		return KAFKA_ERR;
	rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
	if (e)
		return txn_error(e, "begin transaction", errbuf, errlen);
	p->in_txn = 1;
	return 0;
}

int kafka_txn_commit(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
{
	if (require_txn(p, errbuf, errlen) != 0)
		return KAFKA_ERR;
	rd_kafka_error_t *e = rd_kafka_commit_transaction(p->rk, timeout_ms);
	if (e)
		return txn_error(e, "commit transaction", errbuf, errlen);
	p->in_txn = 0;
	return 0;
}

int kafka_txn_abort(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
{
	if (require_txn(p, errbuf, errlen) != 0)
		return KAFKA_ERR;
	rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, timeout_ms);
	if (e)
		return txn_error(e, "abort transaction", errbuf, errlen);
	p->in_txn = 0;
	return 0;
}

/* ---- consumer ---------------------------------------------------------------------------- */

struct kafka_consumer {
	rd_kafka_t *rk;
	kafka_rebalance_fn *on_rebalance;
	void *ctx;
};

static void log_partitions(const char *msg, const rd_kafka_topic_partition_list_t *parts)
{
	if (!log_enabled(LOG_INFO))
		return;
	char list[1024];
	size_t used = 0;
	list[0] = '\0';
	for (int i = 0; i < parts->cnt && used + 1 < sizeof(list); i++) {
		int n = snprintf(list + used, sizeof(list) - used, "%s%s[%" PRId32 "]", i ? "," : "",
				 parts->elems[i].topic, parts->elems[i].partition);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	log_info(msg, "partitions", list);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
			 void *opaque)
{
	struct kafka_consumer *c = opaque;
	const char *proto = rd_kafka_rebalance_protocol(rk);
	int cooperative = proto && strcmp(proto, "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		if (cooperative)
			error = rd_kafka_incremental_assign(rk, parts);
		else
			rerr = rd_kafka_assign(rk, parts);
		log_partitions("partitions assigned", parts);
		if (c->on_rebalance)
			c->on_rebalance(1, 0, parts, c->ctx);
	} else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
		int lost = rd_kafka_assignment_lost(rk);
		log_partitions(lost ? "partitions lost" : "partitions revoked", parts);
		if (c->on_rebalance)
			c->on_rebalance(0, lost, parts, c->ctx);
		if (!lost) {
			/* Offsets stored so far belong to recorded outcomes: commit them before the
			 * partitions move, so the next owner does not redo that work. */
			rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
			if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
				log_warn("commit before revoke failed", "error", rd_kafka_err2str(cerr));
		}
		if (cooperative)
			error = rd_kafka_incremental_unassign(rk, parts);
		else
			rerr = rd_kafka_assign(rk, NULL);
	} else {
		log_error("rebalance failed", "error", rd_kafka_err2str(err));
		rerr = rd_kafka_assign(rk, NULL);
	}
	if (error) {
		log_error("partition assignment failed", "error", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (rerr) {
		log_error("partition assignment failed", "error", rd_kafka_err2str(rerr));
	}
}

/* The outcome of a commit (served by consumer_poll): failures of asynchronous commits are logged
 * here, as nobody waits for them. Harmless: the offsets belong to recorded outcomes, a later
 * commit carries them again, and events redelivered meanwhile are skipped as duplicates. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
		      void *opaque)
{
	(void)rk;
	(void)offsets;
	(void)opaque;
	if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_warn("offset commit failed; a later commit carries the offsets again", "error",
			 rd_kafka_err2str(err));
}

int kafka_consumer_new(const struct config_common *cfg, const struct kafka_consumer_opts *opts,
		       struct kafka_consumer **out, char *errbuf, size_t errlen)
{
	int rc = KAFKA_ERR;
	rd_kafka_conf_t *conf = NULL;
	struct kafka_consumer *c = NULL;
	if (!opts || !opts->group_id || !*opts->group_id) {
		snprintf(errbuf, errlen, "Kafka consumer needs a group id");
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	if (conf_build(cfg, consumer_forced, sizeof(consumer_forced) / sizeof(consumer_forced[0]), &conf, errbuf,
		       errlen) != 0)
		goto out;
	if (conf_set(conf, "group.id", opts->group_id, "caller", errbuf, errlen) != 0)
		goto out;
	/* defaults the operator may change (e.g. auto.offset.reset=latest for a new map that skips
	 * history, or a larger pre-fetch) */
	for (size_t d = 0; d < sizeof(consumer_defaults) / sizeof(consumer_defaults[0]); d++) {
		int given = 0;
		for (size_t i = 0; i < cfg->kafka_props_len && !given; i++)
			given = strcmp(cfg->kafka_props[i].key, consumer_defaults[d].key) == 0;
		if (!given &&
		    conf_set(conf, consumer_defaults[d].key, consumer_defaults[d].value, "dualwrite", errbuf, errlen) != 0)
			goto out;
	}
	if (opts->client_id && conf_set(conf, "client.id", opts->client_id, "caller", errbuf, errlen) != 0)
		goto out;
	if (opts->group_instance_id &&
	    conf_set(conf, "group.instance.id", opts->group_instance_id, "caller", errbuf, errlen) != 0)
		goto out;
	c->on_rebalance = opts->on_rebalance;
	c->ctx = opts->ctx;
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
	rd_kafka_conf_set_opaque(conf, c);
	if (client_new(RD_KAFKA_CONSUMER, &conf, &c->rk, errbuf, errlen) != 0)
		goto out;
	rd_kafka_poll_set_consumer(c->rk); /* errors, logs and rebalances are served by consumer_poll */
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (conf)
		rd_kafka_conf_destroy(conf);
	free(c);
	return rc;
}

int kafka_consumer_subscribe(struct kafka_consumer *c, const char *const *topics, size_t n, char *errbuf,
			     size_t errlen)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
	for (size_t i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err) {
		snprintf(errbuf, errlen, "cannot subscribe: %s", rd_kafka_err2str(err));
		return KAFKA_ERR;
	}
	return 0;
}

int kafka_consumer_poll(struct kafka_consumer *c, int timeout_ms, struct kafka_message **out, char *errbuf,
			size_t errlen)
{
	*out = NULL;
	rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, timeout_ms);
	if (fatal_reason(c->rk, errbuf, errlen)) {
		if (rkm)
			rd_kafka_message_destroy(rkm);
		return KAFKA_ERR_FATAL;
	}
	if (!rkm)
		return 0;
	if (rkm->err) {
		rd_kafka_resp_err_t err = rkm->err;
		int rc = 0;
		switch (err) {
		case RD_KAFKA_RESP_ERR__PARTITION_EOF:
			break;
		case RD_KAFKA_RESP_ERR__TRANSPORT:
		case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
			log_warn("kafka consumer: transient error", "error", rd_kafka_message_errstr(rkm));
			break;
		default:
			snprintf(errbuf, errlen, "consume error%s%s: %s", rkm->rkt ? " on " : "",
				 rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "", rd_kafka_message_errstr(rkm));
			rc = KAFKA_ERR;
		}
		rd_kafka_message_destroy(rkm);
		return rc;
	}
	struct kafka_message *m = calloc(1, sizeof(*m));
	if (!m) {
		rd_kafka_message_destroy(rkm);
		snprintf(errbuf, errlen, "out of memory");
		return KAFKA_ERR;
	}
	rd_kafka_timestamp_type_t tstype;
	m->rkm = rkm;
	m->topic = rd_kafka_topic_name(rkm->rkt);
	m->partition = rkm->partition;
	m->offset = rkm->offset;
	m->timestamp_ms = rd_kafka_message_timestamp(rkm, &tstype);
	m->key = rkm->key;
	m->key_len = rkm->key_len;
	m->value = rkm->payload;
	m->value_len = rkm->len;
	*out = m;
	return 1;
}

void kafka_message_free(struct kafka_message *m)
{
	if (!m)
		return;
	rd_kafka_message_destroy(m->rkm);
	free(m);
}

static rd_kafka_headers_t *message_headers(const struct kafka_message *m)
{
	rd_kafka_headers_t *hdrs = NULL;
	if (rd_kafka_message_headers(m->rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return hdrs;
}

size_t kafka_message_header_count(const struct kafka_message *m)
{
	rd_kafka_headers_t *hdrs = message_headers(m);
	return hdrs ? rd_kafka_header_cnt(hdrs) : 0;
}

int kafka_message_header(const struct kafka_message *m, size_t idx, struct kafka_header *out)
{
	rd_kafka_headers_t *hdrs = message_headers(m);
	const char *name;
	const void *val;
	size_t size;
	if (!hdrs || rd_kafka_header_get_all(hdrs, idx, &name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	out->name = name;
	out->value = val;
	out->value_len = val ? size : 0;
	return 0;
}

int kafka_message_header_find(const struct kafka_message *m, const char *name, struct kafka_header *out)
{
	rd_kafka_headers_t *hdrs = message_headers(m);
	const void *val;
	size_t size;
	if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	out->name = name;
	out->value = val;
	out->value_len = val ? size : 0;
	return 0;
}

int kafka_consumer_store(struct kafka_consumer *c, const struct kafka_message *m, char *errbuf, size_t errlen)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, m->topic, m->partition)->offset = m->offset + 1;
	rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, list);
	if (!err)
		err = list->elems[0].err;
	rd_kafka_topic_partition_list_destroy(list);
	if (err) {
		snprintf(errbuf, errlen, "cannot store offset %" PRId64 " of %s [%" PRId32 "]: %s", m->offset + 1,
			 m->topic, m->partition, rd_kafka_err2str(err));
		return KAFKA_ERR;
	}
	return 0;
}

static int commit_stored(struct kafka_consumer *c, int async, char *errbuf, size_t errlen)
{
	rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, async);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return 0;
	if (err == RD_KAFKA_RESP_ERR__FATAL && fatal_reason(c->rk, errbuf, errlen))
		return KAFKA_ERR_FATAL;
	snprintf(errbuf, errlen, "offset commit failed: %s", rd_kafka_err2str(err));
	return KAFKA_ERR;
}

int kafka_consumer_commit(struct kafka_consumer *c, char *errbuf, size_t errlen)
{
	return commit_stored(c, 0, errbuf, errlen);
}

int kafka_consumer_commit_async(struct kafka_consumer *c, char *errbuf, size_t errlen)
{
	return commit_stored(c, 1, errbuf, errlen);
}

int kafka_consumer_fatal(struct kafka_consumer *c, char *errbuf, size_t errlen)
{
	return fatal_reason(c->rk, errbuf, errlen);
}

rd_kafka_t *kafka_consumer_handle(struct kafka_consumer *c)
{
	return c->rk;
}

void kafka_consumer_close(struct kafka_consumer *c)
{
	if (!c)
		return;
	rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
	if (err)
		log_warn("kafka consumer close", "error", rd_kafka_err2str(err));
	rd_kafka_destroy(c->rk);
	free(c);
}

/* ---- admin ------------------------------------------------------------------------------- */

struct kafka_admin {
	rd_kafka_t *rk;
};

int kafka_admin_new(const struct config_common *cfg, struct kafka_admin **out, char *errbuf, size_t errlen)
{
	int rc = KAFKA_ERR;
	rd_kafka_conf_t *conf = NULL;
	struct kafka_admin *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	if (conf_build(cfg, NULL, 0, &conf, errbuf, errlen) != 0)
		goto out;
	if (client_new(RD_KAFKA_PRODUCER, &conf, &a->rk, errbuf, errlen) != 0)
		goto out;
	*out = a;
	a = NULL;
	rc = 0;
out:
	if (conf)
		rd_kafka_conf_destroy(conf);
	free(a);
	return rc;
}

void kafka_admin_free(struct kafka_admin *a)
{
	if (!a)
		return;
	rd_kafka_destroy(a->rk);
	free(a);
}

/* Partition count and replication factor from the metadata of all topics (asking for one topic
 * by name could auto-create it on brokers that allow that). Returns 0, 1 when absent or still
 * without partitions, KAFKA_ERR. */
static int topic_metadata(struct kafka_admin *a, const char *name, int timeout_ms, struct kafka_topic_spec *out,
			  char *errbuf, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(a->rk, 1, NULL, &md, timeout_ms);
	if (err) {
		snprintf(errbuf, errlen, "cannot read Kafka metadata: %s", rd_kafka_err2str(err));
		return KAFKA_ERR;
	}
	int rc = 1;
	for (int i = 0; i < md->topic_cnt; i++) {
		const struct rd_kafka_metadata_topic *t = &md->topics[i];
		if (strcmp(t->topic, name) != 0)
			continue;
		if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || t->partition_cnt == 0)
			break;
		out->partitions = t->partition_cnt;
		out->replication_factor = t->partitions[0].replica_cnt;
		rc = 0;
		break;
	}
	rd_kafka_metadata_destroy(md);
	return rc;
}

/* Waits for one admin result event of the wanted type; caller destroys it. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, int timeout_ms, const char *what, char *errbuf,
				    size_t errlen)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
	if (!ev) {
		snprintf(errbuf, errlen, "%s: no answer from Kafka within %d ms", what, timeout_ms);
		return NULL;
	}
	if (rd_kafka_event_error(ev)) {
		snprintf(errbuf, errlen, "%s: %s", what, rd_kafka_event_error_string(ev));
		rd_kafka_event_destroy(ev);
		return NULL;
	}
	return ev;
}

/* retention.ms of an existing topic through DescribeConfigs. Returns 0, 1 when the topic is
 * unknown, KAFKA_ERR. */
static int topic_retention(struct kafka_admin *a, const char *name, int timeout_ms, long long *out, char *errbuf,
			   size_t errlen)
{
	int rc = KAFKA_ERR;
	char why[512];
	rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
	rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name);
	rd_kafka_event_t *ev = NULL;
	if (rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, why, sizeof(why))) {
		snprintf(errbuf, errlen, "describe configs: %s", why);
		goto out;
	}
	rd_kafka_DescribeConfigs(a->rk, &res, 1, o, q);
	char what[300];
	snprintf(what, sizeof(what), "describe configs of topic %s", name);
	ev = admin_wait(q, timeout_ms, what, errbuf, errlen);
	if (!ev)
		goto out;
	const rd_kafka_DescribeConfigs_result_t *result = rd_kafka_event_DescribeConfigs_result(ev);
	size_t nres = 0;
	const rd_kafka_ConfigResource_t **rs = result ? rd_kafka_DescribeConfigs_result_resources(result, &nres) : NULL;
	if (nres != 1) {
		snprintf(errbuf, errlen, "describe configs of %s: unexpected answer", name);
		goto out;
	}
	rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(rs[0]);
	if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
		rc = 1;
		goto out;
	}
	if (err) {
		snprintf(errbuf, errlen, "describe configs of %s: %s", name, rd_kafka_ConfigResource_error_string(rs[0]));
		goto out;
	}
	size_t nconf = 0;
	const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(rs[0], &nconf);
	for (size_t i = 0; i < nconf; i++) {
		if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), "retention.ms") != 0)
			continue;
		const char *v = rd_kafka_ConfigEntry_value(entries[i]);
		char *end = NULL;
		errno = 0;
		long long ms = v ? strtoll(v, &end, 10) : 0;
		if (!v || errno || end == v || *end) {
			snprintf(errbuf, errlen, "topic %s has an unreadable retention.ms '%s'", name, v ? v : "");
			goto out;
		}
		*out = ms;
		rc = 0;
		goto out;
	}
	snprintf(errbuf, errlen, "topic %s: broker did not report retention.ms", name);
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_ConfigResource_destroy(res);
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_queue_destroy(q);
	return rc;
}

int kafka_topic_describe(struct kafka_admin *a, const char *name, int timeout_ms, struct kafka_topic_spec *out,
			 char *errbuf, size_t errlen)
{
	struct kafka_topic_spec spec = { 0 };
	int rc = topic_metadata(a, name, timeout_ms, &spec, errbuf, errlen);
	if (rc != 0)
		return rc;
	rc = topic_retention(a, name, timeout_ms, &spec.retention_ms, errbuf, errlen);
	if (rc != 0)
		return rc;
	*out = spec;
	return 0;
}

/* Polls describe until the topic shows up (creation propagates asynchronously) or the deadline. */
static int describe_until(struct kafka_admin *a, const char *name, long long deadline, struct kafka_topic_spec *out,
			  char *errbuf, size_t errlen)
{
	for (;;) {
		long long left = deadline - now_ms();
		int rc = kafka_topic_describe(a, name, left > 1000 ? (int)left : 1000, out, errbuf, errlen);
		if (rc != 1)
			return rc;
		if (now_ms() >= deadline) {
			snprintf(errbuf, errlen, "topic %s does not appear in the cluster metadata", name);
			return KAFKA_ERR;
		}
		rd_kafka_poll(a->rk, 200);
	}
}

static int create_topic(struct kafka_admin *a, const char *name, const struct kafka_topic_spec *want, int timeout_ms,
			rd_kafka_resp_err_t *topic_err, char *errbuf, size_t errlen)
{
	int rc = KAFKA_ERR;
	char why[512], retention[32];
	rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
	rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(a->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_NewTopic_t *nt = NULL;
	rd_kafka_event_t *ev = NULL;

	nt = rd_kafka_NewTopic_new(name, want->partitions, want->replication_factor, why, sizeof(why));
	if (!nt) {
		snprintf(errbuf, errlen, "topic %s: %s", name, why);
		goto out;
	}
	snprintf(retention, sizeof(retention), "%lld", want->retention_ms);
	if (rd_kafka_NewTopic_set_config(nt, "retention.ms", retention) ||
	    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, why, sizeof(why)) ||
	    rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, why, sizeof(why))) {
		snprintf(errbuf, errlen, "topic %s: cannot prepare the request", name);
		goto out;
	}
	rd_kafka_CreateTopics(a->rk, &nt, 1, o, q);
	char what[300];
	snprintf(what, sizeof(what), "create topic %s", name);
	ev = admin_wait(q, timeout_ms, what, errbuf, errlen);
	if (!ev)
		goto out;
	const rd_kafka_CreateTopics_result_t *result = rd_kafka_event_CreateTopics_result(ev);
	size_t n = 0;
	const rd_kafka_topic_result_t **tr = result ? rd_kafka_CreateTopics_result_topics(result, &n) : NULL;
	if (n != 1) {
		snprintf(errbuf, errlen, "create topic %s: unexpected answer", name);
		goto out;
	}
	*topic_err = rd_kafka_topic_result_error(tr[0]);
	if (*topic_err && *topic_err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
		const char *msg = rd_kafka_topic_result_error_string(tr[0]);
		snprintf(errbuf, errlen, "cannot create topic %s: %s", name, msg ? msg : rd_kafka_err2str(*topic_err));
		goto out;
	}
	rc = 0;
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	if (nt)
		rd_kafka_NewTopic_destroy(nt);
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_queue_destroy(q);
	return rc;
}

int kafka_topic_ensure(struct kafka_admin *a, const char *name, const struct kafka_topic_spec *want, int timeout_ms,
		       enum kafka_topic_outcome *outcome, char *errbuf, size_t errlen)
{
	long long deadline = now_ms() + timeout_ms;
	struct kafka_topic_spec have;
	rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (create_topic(a, name, want, timeout_ms, &topic_err, errbuf, errlen) != 0)
		return KAFKA_ERR;
	if (describe_until(a, name, deadline, &have, errbuf, errlen) != 0)
		return KAFKA_ERR;
	if (topic_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		*outcome = KAFKA_TOPIC_CREATED;
		return 0;
	}
	if (have.partitions == want->partitions && have.retention_ms == want->retention_ms) {
		if (have.replication_factor != want->replication_factor) {
			char hrf[16], wrf[16];
			snprintf(hrf, sizeof(hrf), "%d", have.replication_factor);
			snprintf(wrf, sizeof(wrf), "%d", want->replication_factor);
			log_warn("existing topic has another replication factor", "topic", name, "has", hrf, "asked",
				 wrf);
		}
		*outcome = KAFKA_TOPIC_EXISTS;
		return 0;
	}
	char parts[96] = "", ret[128] = "";
	if (have.partitions != want->partitions)
		snprintf(parts, sizeof(parts), " partitions %d (asked %d)", have.partitions, want->partitions);
	if (have.retention_ms != want->retention_ms)
		snprintf(ret, sizeof(ret), "%s retention.ms %lld (asked %lld)", parts[0] ? "," : "", have.retention_ms,
			 want->retention_ms);
	snprintf(errbuf, errlen, "topic %s exists with different settings:%s%s", name, parts, ret);
	return KAFKA_ERR;
}
