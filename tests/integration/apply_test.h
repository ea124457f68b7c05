/* Helpers for the suites that run the apply worker (test_apply_units.c; the older suites keep
 * their own copies for now): a fresh migrated database, SQL counts, events onto a topic, a
 * consumer group caught up, dead-letter headers, stopping a child. Static functions in a header:
 * each suite is its own program. Include after <cmocka.h>. */
#ifndef DW_APPLY_TEST_H
#define DW_APPLY_TEST_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "event.h"
#include "harness.h"
#include "kafka.h"
#include "migrate.h"
#include "store.h"

static __attribute__((unused)) char at_err[1024];

/* A connection to database db of the stack's PostgreSQL (NULL: the DSN's own). */
static __attribute__((unused)) PGconn *at_connect(const char *db)
{
	const struct store_opts opts = { .application_name = "dw-test-apply", .dbname = db };
	PGconn *c = NULL;
	if (store_connect(harness_env("DW_PG_DSN"), &opts, &c, at_err, sizeof(at_err)) != 0)
		fail_msg("connect: %s", at_err);
	return c;
}

/* Runs "<verb> <db><suffix>" (CREATE DATABASE, DROP DATABASE ... WITH (FORCE)). */
static __attribute__((unused)) void at_admin_db(const char *db, const char *verb, const char *suffix)
{
	PGconn *admin = at_connect(NULL);
	char *ident = PQescapeIdentifier(admin, db, strlen(db));
	char sql[256];
	snprintf(sql, sizeof(sql), "%s %s%s", verb, ident, suffix);
	PQfreemem(ident);
	if (store_exec(admin, sql, 0, NULL, NULL, at_err, sizeof(at_err)) != 0)
		fail_msg("%s: %s", sql, at_err);
	store_close(admin);
}

/* Creates database db, migrates it, and writes the stack's DSN with db as its database. */
static __attribute__((unused)) void at_fresh_db(const char *db, char *dsn, size_t dsn_len)
{
	at_admin_db(db, "CREATE DATABASE", "");
	PGconn *c = at_connect(db);
	struct migrate_result res;
	if (migrate_run(c, migrate_files, migrate_files_len, &res, at_err, sizeof(at_err)) != 0)
		fail_msg("migrate: %s", at_err);
	store_close(c);
	const char *base = harness_env("DW_PG_DSN");
	const char *q = strchr(base, '?');
	const char *slash = q ? q : base + strlen(base);
	while (slash > base && *slash != '/')
		slash--;
	snprintf(dsn, dsn_len, "%.*s/%s%s", (int)(slash - base), base, db, q ? q : "");
}

/* The first column of the first row of a query on database db, as a number. */
static __attribute__((unused)) long long at_query_ll(const char *db, const char *sql, int n, const char *const *params)
{
	PGconn *c = at_connect(db);
	PGresult *r = NULL;
	if (store_exec(c, sql, n, params, &r, at_err, sizeof(at_err)) != 0)
		fail_msg("%s: %s", sql, at_err);
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	store_close(c);
	return v;
}

/* The source time of the events at_produce_event makes when > 0 (ms since the epoch). */
static long long at_event_ts;

/* Wall-clock milliseconds since the epoch (the timeline of event source times). */
static __attribute__((unused)) long long at_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Produces an event of side/entity onto topic: key and data borrowed (data NULL for a delete);
 * part `order` of `total` of unit txn_id when txn_id is not NULL. Version v, time base + v (or
 * at_event_ts when set). */
static __attribute__((unused)) void at_produce_event(struct kafka_producer *p, const char *topic, const char *side,
						     const char *entity, const char *set, const char *op, int64_t v,
						     const cJSON *key, const cJSON *data, const char *txn_id, int total,
						     int order)
{
	struct event ev;
	memset(&ev, 0, sizeof(ev));
	ev.v = EVENT_FORMAT_VERSION;
	ev.source.side = event_side_parse(side);
	ev.source.env = strdup("test");
	ev.source.entity = strdup(entity);
	ev.source.entity_set = strdup(set);
	ev.source.version = v;
	ev.source.ts = at_event_ts > 0 ? at_event_ts : 1764464400000LL + v;
	ev.op = event_op_parse(op);
	ev.key = cJSON_Duplicate(key, 1);
	ev.data = data ? cJSON_Duplicate(data, 1) : NULL;
	if (txn_id) {
		ev.has_txn = 1;
		ev.txn.id = strdup(txn_id);
		ev.txn.total = total;
		ev.txn.order = order;
	}
	char *out = NULL, *k = NULL;
	size_t len = 0;
	if (event_compute_id(&ev, at_err, sizeof(at_err)) != 0 || event_encode(&ev, &out, &len, at_err, sizeof(at_err)) != 0 ||
	    event_key_string(ev.key, &k, at_err, sizeof(at_err)) != 0)
		fail_msg("event: %s", at_err);
	if (kafka_produce(p, topic, k, strlen(k), out, len, NULL, 0, NULL, at_err, sizeof(at_err)) != 0)
		fail_msg("produce: %s", at_err);
	free(out);
	free(k);
	event_clear(&ev);
}

/* Flushes the producer; fails on any undelivered message. */
static __attribute__((unused)) void at_flush(struct kafka_producer *p)
{
	if (kafka_producer_flush(p, 30000, at_err, sizeof(at_err)) != 0)
		fail_msg("flush: %s", at_err);
	uint64_t ok = 0, failed = 0;
	kafka_producer_counts(p, &ok, &failed);
	assert_int_equal(0, failed);
}

/* Waits until consumer group `group` has committed every one of the `partitions` partitions of
 * topic up to its end; fails after wait_ms. */
static __attribute__((unused)) void at_wait_committed(const char *brokers, const char *group, const char *topic,
						      int partitions, long long wait_ms)
{
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	assert_non_null(rk);
	long long deadline = harness_now_ms() + wait_ms;
	int done = 0;
	while (!done && harness_now_ms() < deadline) {
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
		for (int p = 0; p < partitions; p++)
			rd_kafka_topic_partition_list_add(l, topic, p);
		done = rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR;
		for (int p = 0; p < partitions && done; p++) {
			int64_t lo = 0, hi = 0;
			if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000) != 0)
				done = 0;
			else if (hi > 0 && l->elems[p].offset < hi)
				done = 0;
		}
		rd_kafka_topic_partition_list_destroy(l);
		if (!done)
			usleep(100000);
	}
	rd_kafka_destroy(rk);
	if (!done)
		fail_msg("group %s did not catch up on %s within %lld ms", group, topic, wait_ms);
}

/* Reads topic `dlq` from the start until a message with `key` arrives; returns its header `name`
 * (new string) or fails after wait_ms. */
static __attribute__((unused)) char *at_dlq_header(const struct config_common *kcfg, const char *dlq, const char *key,
						   const char *name, long long wait_ms)
{
	char *group = harness_unique("dlq-reader");
	struct kafka_consumer_opts o = { .group_id = group };
	struct kafka_consumer *c = NULL;
	if (kafka_consumer_new(kcfg, &o, &c, at_err, sizeof(at_err)) != 0)
		fail_msg("consumer: %s", at_err);
	const char *tl[] = { dlq };
	if (kafka_consumer_subscribe(c, tl, 1, at_err, sizeof(at_err)) != 0)
		fail_msg("subscribe: %s", at_err);
	char *val = NULL;
	long long deadline = harness_now_ms() + wait_ms;
	while (!val && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		if (kafka_consumer_poll(c, 200, &m, at_err, sizeof(at_err)) != 1)
			continue;
		if (m->key && m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0) {
			struct kafka_header h;
			if (kafka_message_header_find(m, name, &h) == 0)
				val = strndup(h.value ? h.value : "", h.value_len);
		}
		kafka_message_free(m);
	}
	kafka_consumer_close(c);
	free(group);
	if (!val)
		fail_msg("no dead letter for key %s in %s", key, dlq);
	return val;
}

/* SIGTERM to a child and wait (SIGKILL after 30 s): its exit status, -1 when it did not exit
 * by itself. 0 for pid <= 0. */
static __attribute__((unused)) int at_stop_child(pid_t pid)
{
	if (pid <= 0)
		return 0;
	kill(pid, SIGTERM);
	long long deadline = harness_now_ms() + 30000;
	int status = 0;
	while (harness_now_ms() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		usleep(50000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

#endif
