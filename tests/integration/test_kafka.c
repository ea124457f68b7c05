/* Kafka helpers against the real broker: round trips, topics, redelivery, transactions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"
#include "kafka.h"
#include "log.h"

#define WAIT_MS 60000

static char err[1024];

/* Settings for the test broker plus optional librdkafka properties (borrowed). */
static struct config_common test_cfg(struct config_kv *props, size_t n)
{
	struct config_common cfg = { 0 };
	cfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	cfg.topic_prefix = (char *)"dw";
	cfg.kafka_props = props;
	cfg.kafka_props_len = n;
	return cfg;
}

static char *new_topic(const char *what, int partitions, long long retention_ms)
{
	char *name = harness_unique(what);
	struct config_common cfg = test_cfg(NULL, 0);
	struct kafka_admin *a = NULL;
	if (kafka_admin_new(&cfg, &a, err, sizeof(err)) != 0)
		fail_msg("admin: %s", err);
	struct kafka_topic_spec spec = { partitions, 1, retention_ms };
	enum kafka_topic_outcome outcome;
	if (kafka_topic_ensure(a, name, &spec, 30000, &outcome, err, sizeof(err)) != 0)
		fail_msg("create %s: %s", name, err);
	assert_int_equal(KAFKA_TOPIC_CREATED, outcome);
	kafka_admin_free(a);
	return name;
}

/* ---- produce -> consume ------------------------------------------------------------------ */

#define RT_KEYS 10
#define RT_PER_KEY 25
#define RT_TOTAL (RT_KEYS * RT_PER_KEY)

/* Message i's value: binary, with NUL and 0xff bytes, length varying with i. */
static size_t rt_value(int i, unsigned char *buf)
{
	size_t len = 8 + (size_t)(i % 13);
	for (size_t j = 0; j < len; j++)
		buf[j] = (unsigned char)((i * 31 + (int)j * 7) & 0xff);
	buf[0] = 0x00;
	buf[1] = (unsigned char)(i & 0xff);
	buf[2] = (unsigned char)(i >> 8);
	buf[3] = 0xff;
	buf[len - 1] = 0x00;
	return len;
}

struct rt_delivery {
	int delivered, failed;
	int32_t partition_of_key[RT_KEYS];
	int partition_conflict;
};

static void rt_on_delivery(const struct kafka_delivery *d, void *ctx)
{
	struct rt_delivery *s = ctx;
	if (d->err) {
		s->failed++;
		return;
	}
	s->delivered++;
	int key = (int)((uintptr_t)d->msg_opaque % RT_KEYS);
	if (s->partition_of_key[key] == -1)
		s->partition_of_key[key] = d->partition;
	else if (s->partition_of_key[key] != d->partition)
		s->partition_conflict = 1;
	assert_true(d->offset >= 0);
}

struct rt_rebalance {
	int assigned_parts, revoked_parts;
};

static void rt_on_rebalance(int assigned, int lost, const rd_kafka_topic_partition_list_t *parts, void *ctx)
{
	struct rt_rebalance *r = ctx;
	(void)lost;
	if (assigned)
		r->assigned_parts += parts->cnt;
	else
		r->revoked_parts += parts->cnt;
}

static void test_roundtrip_binary_keys_headers_order(void **state)
{
	(void)state;
	char *topic = new_topic("rt", 4, 3600000);
	struct config_common cfg = test_cfg(NULL, 0);
	struct rt_delivery dstate = { 0 };
	for (int k = 0; k < RT_KEYS; k++)
		dstate.partition_of_key[k] = -1;
	struct kafka_producer_opts po = { .on_delivery = rt_on_delivery, .ctx = &dstate };
	struct kafka_producer *p = NULL;
	if (kafka_producer_new(&cfg, &po, &p, err, sizeof(err)) != 0)
		fail_msg("producer: %s", err);

	static const unsigned char bin_header[] = { 0x00, 0x01, 0x00, 0xfe };
	for (int i = 0; i < RT_TOTAL; i++) {
		int k = i % RT_KEYS, seq = i / RT_KEYS;
		char key[32], seqtxt[16];
		unsigned char value[32];
		snprintf(key, sizeof(key), "account:%d", k);
		snprintf(seqtxt, sizeof(seqtxt), "%d", seq);
		size_t vlen = rt_value(i, value);
		struct kafka_header hdrs[] = {
			{ "dw-seq", seqtxt, strlen(seqtxt) },
			{ "bin", bin_header, sizeof(bin_header) },
			{ "empty", NULL, 0 },
			{ "dup", "a", 1 },
			{ "dup", "b", 1 },
		};
		if (kafka_produce(p, topic, key, strlen(key), value, vlen, hdrs, 5, (void *)(uintptr_t)i, err,
				  sizeof(err)) != 0)
			fail_msg("produce %d: %s", i, err);
		assert_true(kafka_producer_poll(p, 0) >= 0);
	}
	if (kafka_producer_flush(p, 30000, err, sizeof(err)) != 0)
		fail_msg("flush: %s", err);
	assert_int_equal(RT_TOTAL, dstate.delivered);
	assert_int_equal(0, dstate.failed);
	assert_false(dstate.partition_conflict);
	assert_int_equal(0, kafka_producer_close(p, 5000));
	/* the keys really spread over several partitions, so per-key order is a real claim */
	int used[4] = { 0 }, nused = 0;
	for (int k = 0; k < RT_KEYS; k++)
		if (!used[dstate.partition_of_key[k]]++)
			nused++;
	assert_true(nused >= 2);

	char *group = harness_unique("rt-group");
	struct rt_rebalance rb = { 0 };
	struct kafka_consumer_opts co = { .group_id = group, .on_rebalance = rt_on_rebalance, .ctx = &rb };
	struct kafka_consumer *c = NULL;
	if (kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)) != 0)
		fail_msg("consumer: %s", err);
	const char *topics[] = { topic };
	assert_int_equal(0, kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)));

	int next_seq[RT_KEYS] = { 0 }, received = 0;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (received < RT_TOTAL && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (rc < 0)
			fail_msg("poll: %s", err);
		if (rc == 0)
			continue;
		/* key -> which record; header dw-seq -> which change of it */
		char key[32];
		assert_true(m->key_len < sizeof(key));
		memcpy(key, m->key, m->key_len);
		key[m->key_len] = '\0';
		int k = -1;
		assert_int_equal(1, sscanf(key, "account:%d", &k));
		assert_true(k >= 0 && k < RT_KEYS);
		assert_int_equal(dstate.partition_of_key[k], m->partition);
		assert_int_equal(5, kafka_message_header_count(m));
		struct kafka_header h;
		assert_int_equal(0, kafka_message_header(m, 0, &h));
		assert_string_equal("dw-seq", h.name);
		char seqtxt[16];
		assert_true(h.value_len < sizeof(seqtxt));
		memcpy(seqtxt, h.value, h.value_len);
		seqtxt[h.value_len] = '\0';
		int seq = (int)strtol(seqtxt, NULL, 10);
		if (seq != next_seq[k])
			fail_msg("key %d: got change %d, expected %d (per-key order broken)", k, seq, next_seq[k]);
		next_seq[k]++;
		/* value intact, NUL bytes included */
		unsigned char want[32];
		size_t wlen = rt_value(seq * RT_KEYS + k, want);
		assert_int_equal(wlen, m->value_len);
		assert_memory_equal(want, m->value, wlen);
		/* headers intact, in order */
		assert_int_equal(0, kafka_message_header(m, 1, &h));
		assert_string_equal("bin", h.name);
		assert_int_equal(sizeof(bin_header), h.value_len);
		assert_memory_equal(bin_header, h.value, sizeof(bin_header));
		assert_int_equal(0, kafka_message_header(m, 2, &h));
		assert_string_equal("empty", h.name);
		assert_int_equal(0, h.value_len);
		assert_int_equal(0, kafka_message_header_find(m, "dup", &h));
		assert_int_equal(1, h.value_len);
		assert_memory_equal("b", h.value, 1);
		assert_int_equal(-1, kafka_message_header(m, 5, &h));
		assert_int_equal(-1, kafka_message_header_find(m, "absent", &h));
		assert_true(m->timestamp_ms > 0);
		assert_int_equal(0, kafka_consumer_store(c, m, err, sizeof(err)));
		kafka_message_free(m);
		received++;
	}
	assert_int_equal(RT_TOTAL, received);
	for (int k = 0; k < RT_KEYS; k++)
		assert_int_equal(RT_PER_KEY, next_seq[k]);
	assert_int_equal(0, kafka_consumer_commit(c, err, sizeof(err)));
	assert_int_equal(4, rb.assigned_parts);
	kafka_consumer_close(c);
	assert_int_equal(4, rb.revoked_parts); /* close left the group cleanly */
	free(group);
	free(topic);
}

/* ---- topics ------------------------------------------------------------------------------ */

/* Independent of kafka.c: partition count from raw metadata, retention.ms from DescribeConfigs. */
static rd_kafka_t *raw_client(void)
{
	char why[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	assert_int_equal(RD_KAFKA_CONF_OK,
			 rd_kafka_conf_set(conf, "bootstrap.servers", harness_env("DW_KAFKA_BROKERS"), why, sizeof(why)));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
	assert_non_null(rk);
	return rk;
}

static int raw_partitions(rd_kafka_t *rk, const char *topic)
{
	const struct rd_kafka_metadata *md = NULL;
	assert_int_equal(0, rd_kafka_metadata(rk, 1, NULL, &md, 10000));
	int n = -1;
	for (int i = 0; i < md->topic_cnt; i++)
		if (strcmp(md->topics[i].topic, topic) == 0)
			n = md->topics[i].partition_cnt;
	rd_kafka_metadata_destroy(md);
	return n;
}

static long long raw_retention(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
	assert_non_null(ev);
	assert_int_equal(0, rd_kafka_event_error(ev));
	size_t n = 0, nc = 0;
	const rd_kafka_ConfigResource_t **rs =
		rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
	assert_int_equal(1, n);
	const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(rs[0], &nc);
	long long v = -2;
	for (size_t i = 0; i < nc; i++)
		if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), "retention.ms") == 0)
			v = strtoll(rd_kafka_ConfigEntry_value(entries[i]), NULL, 10);
	rd_kafka_event_destroy(ev);
	rd_kafka_ConfigResource_destroy(res);
	rd_kafka_queue_destroy(q);
	return v;
}

static void test_topics_created_as_asked_and_compared(void **state)
{
	(void)state;
	char *topic = harness_unique("topics");
	struct config_common cfg = test_cfg(NULL, 0);
	struct kafka_admin *a = NULL;
	assert_int_equal(0, kafka_admin_new(&cfg, &a, err, sizeof(err)));
	rd_kafka_t *raw = raw_client();
	enum kafka_topic_outcome outcome = 0;

	struct kafka_topic_spec want = { 3, 1, 3600000 };
	if (kafka_topic_ensure(a, topic, &want, 30000, &outcome, err, sizeof(err)) != 0)
		fail_msg("create: %s", err);
	assert_int_equal(KAFKA_TOPIC_CREATED, outcome);
	assert_int_equal(3, raw_partitions(raw, topic));
	assert_int_equal(3600000, raw_retention(raw, topic));

	/* again with the same settings: fine, reported as existing */
	outcome = 0;
	if (kafka_topic_ensure(a, topic, &want, 30000, &outcome, err, sizeof(err)) != 0)
		fail_msg("ensure again: %s", err);
	assert_int_equal(KAFKA_TOPIC_EXISTS, outcome);

	/* other partitions: an error naming the topic and the difference, nothing changed */
	struct kafka_topic_spec more = { 5, 1, 3600000 };
	err[0] = '\0';
	assert_int_equal(KAFKA_ERR, kafka_topic_ensure(a, topic, &more, 30000, &outcome, err, sizeof(err)));
	assert_non_null(strstr(err, topic));
	assert_non_null(strstr(err, "partitions 3 (asked 5)"));
	assert_null(strstr(err, "retention"));
	struct kafka_topic_spec longer = { 3, 1, 7200000 };
	err[0] = '\0';
	assert_int_equal(KAFKA_ERR, kafka_topic_ensure(a, topic, &longer, 30000, &outcome, err, sizeof(err)));
	assert_non_null(strstr(err, "retention.ms 3600000 (asked 7200000)"));
	assert_null(strstr(err, "partitions"));
	assert_int_equal(3, raw_partitions(raw, topic));
	assert_int_equal(3600000, raw_retention(raw, topic));

	/* describe agrees with the raw view */
	struct kafka_topic_spec have;
	assert_int_equal(0, kafka_topic_describe(a, topic, 10000, &have, err, sizeof(err)));
	assert_int_equal(3, have.partitions);
	assert_int_equal(1, have.replication_factor);
	assert_int_equal(3600000, have.retention_ms);
	char *absent = harness_unique("absent");
	assert_int_equal(1, kafka_topic_describe(a, absent, 10000, &have, err, sizeof(err)));

	/* a replication factor the cluster cannot give is refused with the broker's reason */
	struct kafka_topic_spec rf3 = { 1, 3, 3600000 };
	err[0] = '\0';
	assert_int_equal(KAFKA_ERR, kafka_topic_ensure(a, absent, &rf3, 30000, &outcome, err, sizeof(err)));
	assert_non_null(strstr(err, absent));
	assert_int_equal(-1, raw_partitions(raw, absent));

	rd_kafka_destroy(raw);
	kafka_admin_free(a);
	free(absent);
	free(topic);
}

/* ---- kill before commit ------------------------------------------------------------------ */

#define KB_TOTAL 40
#define KB_COMMITTED 10 /* the child commits after this many */
#define KB_READ 25      /* and reads this many in all before it is killed */

static struct config_kv kb_props[] = {
	{ (char *)"session.timeout.ms", (char *)"6000" },
	{ (char *)"heartbeat.interval.ms", (char *)"500" },
};

/* The child: consume, commit after KB_COMMITTED, read on (storing, never committing), then tell
 * the parent and wait to be killed. Reports 'R' when ready, 'E' on any failure. */
static void kb_child(const char *topic, const char *group, int fd)
{
	struct config_common cfg = test_cfg(kb_props, 2);
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	char cerr[512];
	const char *topics[] = { topic };
	if (kafka_consumer_new(&cfg, &co, &c, cerr, sizeof(cerr)) != 0 ||
	    kafka_consumer_subscribe(c, topics, 1, cerr, sizeof(cerr)) != 0)
		goto fail;
	int n = 0;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (n < KB_READ && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, cerr, sizeof(cerr));
		if (rc < 0)
			goto fail;
		if (rc == 0)
			continue;
		if (m->offset != n || kafka_consumer_store(c, m, cerr, sizeof(cerr)) != 0)
			goto fail;
		kafka_message_free(m);
		n++;
		if (n == KB_COMMITTED && kafka_consumer_commit(c, cerr, sizeof(cerr)) != 0)
			goto fail;
	}
	if (n != KB_READ)
		goto fail;
	if (write(fd, "R", 1) != 1)
		goto fail;
	for (;;) { /* keep the membership alive until SIGKILL */
		struct kafka_message *m = NULL;
		if (kafka_consumer_poll(c, 100, &m, cerr, sizeof(cerr)) == 1)
			kafka_message_free(m); /* read, neither stored nor committed */
	}
fail:
	fprintf(stderr, "kill-before-commit child: %s\n", cerr);
	if (write(fd, "E", 1) != 1)
		_exit(3);
	_exit(2);
}

static void test_killed_consumer_redelivers_uncommitted(void **state)
{
	(void)state;
	char *topic = new_topic("kb", 1, 3600000);
	char *group = harness_unique("kb-group");
	struct config_common cfg = test_cfg(NULL, 0);
	struct kafka_producer *p = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	for (int i = 0; i < KB_TOTAL; i++) {
		char v[16];
		snprintf(v, sizeof(v), "m-%d", i);
		assert_int_equal(0, kafka_produce(p, topic, "k", 1, v, strlen(v), NULL, 0, NULL, err, sizeof(err)));
	}
	assert_int_equal(0, kafka_producer_flush(p, 30000, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_close(p, 1000)); /* no client threads alive across fork */

	int fds[2];
	assert_int_equal(0, pipe(fds));
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		kb_child(topic, group, fds[1]);
	}
	close(fds[1]);
	struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
	char status = 0;
	int ready = poll(&pfd, 1, WAIT_MS);
	if (ready == 1 && read(fds[0], &status, 1) != 1)
		status = 0;
	kill(pid, SIGKILL);
	int wstatus = 0;
	waitpid(pid, &wstatus, 0);
	close(fds[0]);
	if (status != 'R')
		fail_msg("child did not get ready (status '%c')", status ? status : '-');
	assert_true(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);

	/* A new member of the same group resumes at the committed offset: everything after the
	 * first KB_COMMITTED again, the uncommitted ones included, none missing. */
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	struct config_common ccfg = test_cfg(kb_props, 2);
	assert_int_equal(0, kafka_consumer_new(&ccfg, &co, &c, err, sizeof(err)));
	const char *topics[] = { topic };
	assert_int_equal(0, kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)));
	int64_t expect = KB_COMMITTED;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (expect < KB_TOTAL && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (rc < 0)
			fail_msg("poll: %s", err);
		if (rc == 0)
			continue;
		if (m->offset != expect)
			fail_msg("expected offset %lld, got %lld", (long long)expect, (long long)m->offset);
		char v[32];
		snprintf(v, sizeof(v), "m-%lld", (long long)expect);
		assert_int_equal(strlen(v), m->value_len);
		assert_memory_equal(v, m->value, m->value_len);
		kafka_message_free(m);
		expect++;
	}
	assert_int_equal(KB_TOTAL, expect);
	kafka_consumer_close(c);
	free(group);
	free(topic);
}

/* ---- transactions ------------------------------------------------------------------------ */

static void test_transactions_commit_visible_abort_invisible(void **state)
{
	(void)state;
	char *topic = new_topic("txn", 1, 3600000);
	char *txid = harness_unique("txn-id");
	struct config_common cfg = test_cfg(NULL, 0);
	struct kafka_producer_opts po = { .transactional_id = txid };
	struct kafka_producer *p = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, &po, &p, err, sizeof(err)));
	if (kafka_txn_init(p, 30000, err, sizeof(err)) != 0)
		fail_msg("init: %s", err);
	static const char *const batches[][2] = { { "c-1", "c-2" }, { "aborted-1", "aborted-2" }, { "c-3", NULL } };
	for (int b = 0; b < 3; b++) {
		assert_int_equal(0, kafka_txn_begin(p, err, sizeof(err)));
		for (int i = 0; i < 2 && batches[b][i]; i++)
			assert_int_equal(0, kafka_produce(p, topic, "k", 1, batches[b][i], strlen(batches[b][i]), NULL, 0,
							  NULL, err, sizeof(err)));
		if (b == 1) {
			/* make sure the aborted messages really reached the broker's log */
			assert_int_equal(0, kafka_producer_flush(p, 30000, err, sizeof(err)));
			if (kafka_txn_abort(p, 30000, err, sizeof(err)) != 0)
				fail_msg("abort: %s", err);
		} else if (kafka_txn_commit(p, 30000, err, sizeof(err)) != 0) {
			fail_msg("commit: %s", err);
		}
	}
	/* an open transaction is aborted on close */
	assert_int_equal(0, kafka_txn_begin(p, err, sizeof(err)));
	assert_int_equal(0, kafka_produce(p, topic, "k", 1, "left-open", 9, NULL, 0, NULL, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_close(p, 10000));

	/* a marker after everything, so the reader knows it has seen it all */
	po.transactional_id = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, &po, &p, err, sizeof(err)));
	assert_int_equal(0, kafka_produce(p, topic, "k", 1, "end", 3, NULL, 0, NULL, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_flush(p, 30000, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_close(p, 1000));

	char *group = harness_unique("txn-group");
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	assert_int_equal(0, kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)));
	const char *topics[] = { topic };
	assert_int_equal(0, kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)));
	static const char *const want[] = { "c-1", "c-2", "c-3", "end" };
	int got = 0;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (got < 4 && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		if (rc < 0)
			fail_msg("poll: %s", err);
		if (rc == 0)
			continue;
		char v[32];
		snprintf(v, sizeof(v), "%.*s", (int)m->value_len, (const char *)m->value);
		kafka_message_free(m);
		if (strcmp(v, want[got]) != 0)
			fail_msg("message %d: got '%s', expected '%s'", got, v, want[got]);
		got++;
	}
	assert_int_equal(4, got);
	kafka_consumer_close(c);
	free(group);
	free(txid);
	free(topic);
}

/* ---- offsets stored but not committed go with a clean close ------------------------------ */

static void test_close_commits_stored_offsets(void **state)
{
	(void)state;
	char *topic = new_topic("close", 1, 3600000);
	char *group = harness_unique("close-group");
	struct config_common cfg = test_cfg(NULL, 0);
	struct kafka_producer *p = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	for (int i = 0; i < 10; i++)
		assert_int_equal(0, kafka_produce(p, topic, "k", 1, "v", 1, NULL, 0, NULL, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_close(p, 30000));

	const char *topics[] = { topic };
	struct kafka_consumer_opts co = { .group_id = group };
	for (int round = 0; round < 2; round++) {
		struct kafka_consumer *c = NULL;
		assert_int_equal(0, kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)));
		assert_int_equal(0, kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)));
		/* round 0 reads and stores 6 messages, then closes without committing; round 1 must
		 * start right after them (the revoke on close committed what was stored) */
		int64_t first = -1;
		int n = 0;
		long long deadline = harness_now_ms() + WAIT_MS;
		while (n < (round == 0 ? 6 : 1) && harness_now_ms() < deadline) {
			struct kafka_message *m = NULL;
			int rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
			if (rc < 0)
				fail_msg("poll: %s", err);
			if (rc == 0)
				continue;
			if (first < 0)
				first = m->offset;
			assert_int_equal(0, kafka_consumer_store(c, m, err, sizeof(err)));
			kafka_message_free(m);
			n++;
		}
		assert_int_equal(round == 0 ? 0 : 6, first);
		kafka_consumer_close(c);
	}
	free(group);
	free(topic);
}

/* ---- a topic that does not exist is reported to the caller ------------------------------- */

static void test_unknown_topic_reported(void **state)
{
	(void)state;
	char *topic = harness_unique("nonexistent");
	char *group = harness_unique("unknown-group");
	struct config_common cfg = test_cfg(NULL, 0);
	struct kafka_consumer_opts co = { .group_id = group };
	struct kafka_consumer *c = NULL;
	assert_int_equal(0, kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)));
	const char *topics[] = { topic };
	assert_int_equal(0, kafka_consumer_subscribe(c, topics, 1, err, sizeof(err)));
	int rc = 0;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (rc == 0 && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		rc = kafka_consumer_poll(c, 200, &m, err, sizeof(err));
		kafka_message_free(m);
	}
	assert_int_equal(KAFKA_ERR, rc);
	assert_non_null(strstr(err, topic));
	kafka_consumer_close(c);
	free(group);
	free(topic);
}

/* ---- a fatal consumer error takes its own path ------------------------------------------- */

/* Two static members with one group.instance.id: the broker fences the older one, which
 * librdkafka treats as fatal. The older consumer must see KAFKA_ERR_FATAL, not a retryable error. */
static void test_fenced_static_member_is_fatal(void **state)
{
	(void)state;
	char *topic = new_topic("fenced", 1, 3600000);
	char *group = harness_unique("fenced-group");
	struct config_common cfg = test_cfg(kb_props, 2);
	struct kafka_producer *p = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	for (int i = 0; i < 3; i++)
		assert_int_equal(0, kafka_produce(p, topic, "k", 1, "v", 1, NULL, 0, NULL, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_close(p, 30000));

	const char *topics[] = { topic };
	struct kafka_consumer_opts co = { .group_id = group, .group_instance_id = "replica-0" };
	struct kafka_consumer *older = NULL, *newer = NULL;
	assert_int_equal(0, kafka_consumer_new(&cfg, &co, &older, err, sizeof(err)));
	assert_int_equal(0, kafka_consumer_subscribe(older, topics, 1, err, sizeof(err)));
	int got = 0;
	long long deadline = harness_now_ms() + WAIT_MS;
	while (!got && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		int rc = kafka_consumer_poll(older, 200, &m, err, sizeof(err));
		if (rc < 0)
			fail_msg("poll before fencing: %s", err);
		got = rc == 1;
		kafka_message_free(m);
	}
	assert_true(got);
	assert_int_equal(0, kafka_consumer_fatal(older, err, sizeof(err)));

	assert_int_equal(0, kafka_consumer_new(&cfg, &co, &newer, err, sizeof(err)));
	assert_int_equal(0, kafka_consumer_subscribe(newer, topics, 1, err, sizeof(err)));
	int rc = 0;
	deadline = harness_now_ms() + WAIT_MS;
	while (rc != KAFKA_ERR_FATAL && harness_now_ms() < deadline) {
		struct kafka_message *m = NULL;
		if (kafka_consumer_poll(newer, 100, &m, err, sizeof(err)) == 1)
			kafka_message_free(m);
		m = NULL;
		rc = kafka_consumer_poll(older, 100, &m, err, sizeof(err));
		kafka_message_free(m);
	}
	assert_int_equal(KAFKA_ERR_FATAL, rc);
	assert_non_null(strstr(err, "fatal"));
	assert_int_not_equal(0, kafka_consumer_fatal(older, err, sizeof(err)));
	assert_int_equal(KAFKA_ERR_FATAL, kafka_consumer_commit(older, err, sizeof(err)));
	kafka_consumer_close(older);
	kafka_consumer_close(newer);
	free(group);
	free(topic);
}

int main(void)
{
	log_init("test_kafka", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_binary_keys_headers_order),
		cmocka_unit_test(test_topics_created_as_asked_and_compared),
		cmocka_unit_test(test_killed_consumer_redelivers_uncommitted),
		cmocka_unit_test(test_transactions_commit_visible_abort_invisible),
		cmocka_unit_test(test_close_commits_stored_offsets),
		cmocka_unit_test(test_unknown_topic_reported),
		cmocka_unit_test(test_fenced_static_member_is_fatal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
