/* publish: units of events into Kafka transactions, on the real broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "event.h"
#include "harness.h"
#include "kafka.h"
#include "log.h"
#include "publish.h"

#define WAIT_MS 60000

static char err[1024];

static struct config_common test_cfg(void)
{
	struct config_common cfg = { 0 };
	cfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	cfg.topic_prefix = (char *)"dw";
	return cfg;
}

/* A fresh prefix (so topics are new) whose topic for entity is created. */
static char *new_prefix(const char *entity, char *topic, size_t tlen)
{
	char *u = harness_unique("pubtest");
	struct config_common cfg = test_cfg();
	struct kafka_admin *a = NULL;
	char table[128];
	snprintf(table, sizeof(table), "ce.%s", entity);
	assert_int_equal(0, kafka_table_topic(u, table, topic, tlen, err, sizeof(err)));
	if (kafka_admin_new(&cfg, &a, err, sizeof(err)) != 0)
		fail_msg("admin: %s", err);
	struct kafka_topic_spec spec = { 3, 1, -1 };
	enum kafka_topic_outcome outcome;
	if (kafka_topic_ensure(a, topic, &spec, 30000, &outcome, err, sizeof(err)) != 0)
		fail_msg("create %s: %s", topic, err);
	kafka_admin_free(a);
	return u;
}

static void make_event(struct event *ev, const char *entity, const char *id, long long version, int op)
{
	memset(ev, 0, sizeof(*ev));
	ev->v = EVENT_FORMAT_VERSION;
	ev->source.side = EVENT_SIDE_CE;
	ev->source.env = strdup("test");
	ev->source.entity = strdup(entity);
	ev->source.entity_set = strdup("accounts");
	ev->source.version = version;
	ev->source.ts = 1764464400000LL;
	ev->op = (enum event_op)op;
	ev->key = cJSON_CreateObject();
	char idf[160];
	snprintf(idf, sizeof(idf), "%sid", entity);
	cJSON_AddStringToObject(ev->key, idf, id);
	if (op != EVENT_OP_DELETE) {
		ev->data = cJSON_CreateObject();
		cJSON_AddStringToObject(ev->data, "name", "Contoso, \"Ltd\"");
		cJSON_AddNumberToObject(ev->data, "revenue", 12.5);
	}
	assert_int_equal(0, event_compute_id(ev, err, sizeof(err)));
}

static struct publish *new_publisher(void)
{
	struct config_common cfg = test_cfg();
	char *tid = harness_unique("pubtest-txn");
	struct publish_opts o = { .transactional_id = tid, .txn_timeout_ms = 20000 };
	struct publish *p = NULL;
	if (publish_new(&cfg, &o, &p, err, sizeof(err)) != 0)
		fail_msg("publish_new: %s", err);
	free(tid);
	return p;
}

struct got {
	char key[128];
	char id[65];
	char op[16];
	struct event ev;
};

/* Reads n messages (read_committed) from topic within WAIT_MS, then checks for extra ones for
 * quiet_ms. Returns how many were read (up to cap). */
static size_t consume(const char *topic, struct got *out, size_t cap, size_t n, int quiet_ms)
{
	struct config_common cfg = test_cfg();
	char *group = harness_unique("pubtest-group");
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	if (kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)) != 0)
		fail_msg("consumer: %s", err);
	const char *topics[] = { topic };
	assert_int_equal(0, kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)));
	size_t got = 0;
	long long deadline = harness_now_ms() + WAIT_MS;
	long long quiet_until = -1;
	for (;;) {
		long long now = harness_now_ms();
		if (got >= n && quiet_until < 0)
			quiet_until = now + quiet_ms;
		if ((quiet_until >= 0 && now >= quiet_until) || now >= deadline)
			break;
		struct kafka_message *m = NULL;
		int r = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (r < 0)
			fail_msg("consume: %s", err);
		if (r == 0)
			continue;
		if (got < cap) {
			struct got *g = &out[got];
			snprintf(g->key, sizeof(g->key), "%.*s", (int)m->key_len, (const char *)m->key);
			struct kafka_header h;
			if (kafka_message_header_find(m, PUBLISH_HEADER_ID, &h) == 0)
				snprintf(g->id, sizeof(g->id), "%.*s", (int)h.value_len, (const char *)h.value);
			if (kafka_message_header_find(m, PUBLISH_HEADER_OP, &h) == 0)
				snprintf(g->op, sizeof(g->op), "%.*s", (int)h.value_len, (const char *)h.value);
			if (event_decode(m->value, m->value_len, 0, 0, &g->ev, err, sizeof(err)) != 0)
				fail_msg("decode: %s", err);
		}
		got++;
		kafka_message_free(m);
	}
	kafka_consumer_close(c);
	free(group);
	return got;
}

static void test_unit_round_trip(void **state)
{
	(void)state;
	char topic[300];
	char *prefix = new_prefix("account", topic, sizeof(topic));
	struct publish *p = new_publisher();
	struct publish_unit *u = publish_unit_new();
	struct event evs[3];
	make_event(&evs[0], "account", "6d81597f-0f9f-e711-8122-000d3aa2331c", 10, EVENT_OP_CREATE);
	make_event(&evs[1], "account", "6d81597f-0f9f-e711-8122-000d3aa2331c", 11, EVENT_OP_UPDATE);
	make_event(&evs[2], "account", "2e451703-c686-e711-80e5-00155db19e6d", 12, EVENT_OP_DELETE);
	for (int i = 0; i < 3; i++)
		assert_int_equal(0, publish_unit_add(u, prefix, &evs[i], err, sizeof(err)));
	assert_int_equal(3, publish_unit_count(u));
	assert_string_equal(topic, publish_unit_topic(u, 0));
	assert_string_equal(evs[1].id, publish_unit_event_id(u, 1));
	assert_int_equal(0, publish_send(p, u, err, sizeof(err)));

	struct got got[8];
	memset(got, 0, sizeof(got));
	size_t n = consume(topic, got, 8, 3, 1000);
	assert_int_equal(3, n);
	/* per key order holds; match each message to its event by id */
	int seen[3] = { 0 };
	for (size_t i = 0; i < n; i++) {
		int k = -1;
		for (int j = 0; j < 3; j++)
			if (strcmp(got[i].id, evs[j].id) == 0)
				k = j;
		assert_true(k >= 0);
		seen[k]++;
		assert_string_equal(evs[k].id, got[i].ev.id);
		assert_string_equal(event_op_name(evs[k].op), got[i].op);
		char *ks = NULL;
		assert_int_equal(0, event_key_string(evs[k].key, &ks, err, sizeof(err)));
		assert_string_equal(ks, got[i].key);
		free(ks);
		assert_int_equal(evs[k].source.version, got[i].ev.source.version);
		assert_true(cJSON_Compare(evs[k].data ? evs[k].data : NULL, got[i].ev.data, 1) || (!evs[k].data && !got[i].ev.data));
	}
	assert_int_equal(1, seen[0]);
	assert_int_equal(1, seen[1]);
	assert_int_equal(1, seen[2]);
	struct publish_stats st;
	publish_get_stats(p, &st);
	assert_int_equal(1, st.units_ok);
	assert_int_equal(3, st.events_ok);
	assert_int_equal(0, st.units_failed);

	for (size_t i = 0; i < n; i++)
		event_clear(&got[i].ev);
	for (int i = 0; i < 3; i++)
		event_clear(&evs[i]);
	publish_unit_free(u);
	publish_free(p);
	free(prefix);
}

#define THREADS 8
#define UNITS_PER_THREAD 25

struct worker {
	struct publish *p;
	const char *prefix;
	int index;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char e[512];
	for (int i = 0; i < UNITS_PER_THREAD; i++) {
		struct publish_unit *u = publish_unit_new();
		struct event ev;
		char id[40];
		snprintf(id, sizeof(id), "00000000-0000-0000-%04d-%012d", w->index, i);
		make_event(&ev, "account", id, 100 + i, EVENT_OP_UPDATE);
		if (publish_unit_add(u, w->prefix, &ev, e, sizeof(e)) != 0 || publish_send(w->p, u, e, sizeof(e)) != 0)
			w->failures++;
		event_clear(&ev);
		publish_unit_free(u);
	}
	return NULL;
}

/* Concurrent callers (webhook threads) all get their units confirmed, and share transactions. */
static void test_concurrent_units_group_commit(void **state)
{
	(void)state;
	char topic[300];
	char *prefix = new_prefix("account", topic, sizeof(topic));
	struct publish *p = new_publisher();
	pthread_t th[THREADS];
	struct worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ p, prefix, i, 0 };
		assert_int_equal(0, pthread_create(&th[i], NULL, worker_main, &w[i]));
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(0, w[i].failures);
	}
	struct publish_stats st;
	publish_get_stats(p, &st);
	assert_int_equal(THREADS * UNITS_PER_THREAD, st.units_ok);
	assert_true(st.txns_committed <= st.units_ok);
	printf("# %d units in %llu Kafka transactions\n", THREADS * UNITS_PER_THREAD,
	       (unsigned long long)st.txns_committed);
	struct got *got = calloc(THREADS * UNITS_PER_THREAD + 8, sizeof(*got));
	size_t n = consume(topic, got, THREADS * UNITS_PER_THREAD + 8, THREADS * UNITS_PER_THREAD, 1000);
	assert_int_equal(THREADS * UNITS_PER_THREAD, n);
	for (size_t i = 0; i < n && i < THREADS * UNITS_PER_THREAD + 8; i++)
		event_clear(&got[i].ev);
	free(got);
	publish_free(p);
	free(prefix);
}

/* An invalid event is refused when added; the unit stays as it was. */
static void test_invalid_event_refused(void **state)
{
	(void)state;
	struct publish_unit *u = publish_unit_new();
	struct event ev;
	make_event(&ev, "account", "6d81597f-0f9f-e711-8122-000d3aa2331c", 10, EVENT_OP_UPDATE);
	ev.source.version = 11; /* id no longer matches */
	assert_int_equal(PUBLISH_ERR_INVALID, publish_unit_add(u, "dw", &ev, err, sizeof(err)));
	assert_non_null(strstr(err, "id"));
	assert_int_equal(0, publish_unit_count(u));
	event_clear(&ev);
	make_event(&ev, "Bad-Entity", "6d81597f-0f9f-e711-8122-000d3aa2331c", 10, EVENT_OP_UPDATE);
	assert_int_equal(PUBLISH_ERR_INVALID, publish_unit_add(u, "dw", &ev, err, sizeof(err)));
	assert_non_null(strstr(err, "topic"));
	assert_int_equal(0, publish_unit_count(u));
	event_clear(&ev);
	publish_unit_free(u);
}

/* After publish_stop nothing more is accepted; an empty unit is trivially confirmed. */
static void test_stop_refuses(void **state)
{
	(void)state;
	struct publish *p = new_publisher();
	struct publish_unit *u = publish_unit_new();
	assert_int_equal(0, publish_send(p, u, err, sizeof(err)));
	struct event ev;
	make_event(&ev, "account", "6d81597f-0f9f-e711-8122-000d3aa2331c", 10, EVENT_OP_UPDATE);
	assert_int_equal(0, publish_unit_add(u, "dw", &ev, err, sizeof(err)));
	publish_stop(p);
	assert_int_equal(PUBLISH_ERR_STOPPED, publish_send(p, u, err, sizeof(err)));
	event_clear(&ev);
	publish_unit_free(u);
	publish_free(p);
}

/* No broker: creation fails within the transaction timeout, with a reason. */
static void test_no_broker(void **state)
{
	(void)state;
	struct config_common cfg = test_cfg();
	cfg.kafka_brokers = (char *)"127.0.0.1:1";
	struct publish_opts o = { .transactional_id = "pubtest-nobroker", .txn_timeout_ms = 2000 };
	struct publish *p = NULL;
	long long t0 = harness_now_ms();
	assert_true(publish_new(&cfg, &o, &p, err, sizeof(err)) < 0);
	assert_null(p);
	assert_true(harness_now_ms() - t0 < 15000);
	assert_true(strlen(err) > 0);
}

int main(void)
{
	log_init("test_publish", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unit_round_trip),
		cmocka_unit_test(test_concurrent_units_group_commit),
		cmocka_unit_test(test_invalid_event_refused),
		cmocka_unit_test(test_stop_refuses),
		cmocka_unit_test(test_no_broker),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
