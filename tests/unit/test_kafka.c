/* Kafka helpers without a broker: topic names, configuration checks, close and fatal paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kafka.h"
#include "log.h"

static char err[1024];

/* A configuration pointing at a port nothing listens on, with optional extra properties. */
static struct config_common cfg_with(struct config_kv *props, size_t n)
{
	struct config_common cfg = { 0 };
	cfg.kafka_brokers = (char *)"127.0.0.1:1";
	cfg.topic_prefix = (char *)"dw";
	cfg.kafka_props = props;
	cfg.kafka_props_len = n;
	return cfg;
}

static void test_table_topic_valid(void **state)
{
	(void)state;
	char topic[64];
	assert_int_equal(0, kafka_table_topic("dw", "ce.account", topic, sizeof(topic), err, sizeof(err)));
	assert_string_equal("dw.ce.account", topic);
	assert_int_equal(0, kafka_table_topic("prod-1", "fo.customersv3", topic, sizeof(topic), err, sizeof(err)));
	assert_string_equal("prod-1.fo.customersv3", topic);
	assert_int_equal(0, kafka_table_topic("dw", "fo.inventory_onhand_2", topic, sizeof(topic), err, sizeof(err)));
	assert_string_equal("dw.fo.inventory_onhand_2", topic);
}

static void expect_bad_table(const char *table, const char *needle)
{
	char topic[64];
	err[0] = '\0';
	assert_int_equal(-1, kafka_table_topic("dw", table, topic, sizeof(topic), err, sizeof(err)));
	if (!strstr(err, needle))
		fail_msg("error for '%s' does not mention '%s': %s", table, needle, err);
}

static void test_table_topic_invalid(void **state)
{
	(void)state;
	expect_bad_table("account", "<side>.<entity>");
	expect_bad_table("xx.account", "side must be ce or fo");
	expect_bad_table("cee.account", "side must be ce or fo");
	expect_bad_table(".account", "side must be ce or fo");
	expect_bad_table("ce.", "entity must be 1 to");
	expect_bad_table("ce.Account", "a-z, 0-9 and _");
	expect_bad_table("ce.acc.ount", "a-z, 0-9 and _");
	expect_bad_table("ce.acc-ount", "a-z, 0-9 and _");
	expect_bad_table("ce.acc ount", "a-z, 0-9 and _");
	/* every error names the table it rejects */
	expect_bad_table("fo.Bad", "fo.Bad");
	char longname[128];
	memset(longname, 'a', sizeof(longname));
	memcpy(longname, "ce.", 3);
	longname[sizeof(longname) - 1] = '\0';
	expect_bad_table(longname, "entity must be 1 to 100");
}

static void test_table_topic_too_long_for_buffer(void **state)
{
	(void)state;
	char topic[12];
	assert_int_equal(-1, kafka_table_topic("dw", "ce.account", topic, sizeof(topic), err, sizeof(err)));
	assert_non_null(strstr(err, "longer than"));
}

static void test_missing_brokers_named(void **state)
{
	(void)state;
	struct config_common cfg = cfg_with(NULL, 0);
	cfg.kafka_brokers = NULL;
	struct kafka_producer *p = NULL;
	struct kafka_consumer *c = NULL;
	struct kafka_admin *a = NULL;
	assert_int_equal(KAFKA_ERR, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_KAFKA_BROKERS"));
	struct kafka_consumer_opts co = { .group_id = "g" };
	err[0] = '\0';
	assert_int_equal(KAFKA_ERR, kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_KAFKA_BROKERS"));
	err[0] = '\0';
	assert_int_equal(KAFKA_ERR, kafka_admin_new(&cfg, &a, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_KAFKA_BROKERS"));
	assert_null(p);
	assert_null(c);
	assert_null(a);
}

static void test_rejected_property_named(void **state)
{
	(void)state;
	struct config_kv props[] = { { (char *)"socket.timeout.ms", (char *)"60000" },
				     { (char *)"no.such.property", (char *)"1" } };
	struct config_common cfg = cfg_with(props, 2);
	struct kafka_producer *p = NULL;
	assert_int_equal(KAFKA_ERR, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "no.such.property"));
	assert_non_null(strstr(err, "DW_KAFKA_NO_SUCH_PROPERTY"));
	assert_null(p);
}

static void test_property_value_rejected(void **state)
{
	(void)state;
	struct config_kv props[] = { { (char *)"security.protocol", (char *)"carrier-pigeon" } };
	struct config_common cfg = cfg_with(props, 1);
	struct kafka_admin *a = NULL;
	assert_int_equal(KAFKA_ERR, kafka_admin_new(&cfg, &a, err, sizeof(err)));
	assert_non_null(strstr(err, "security.protocol"));
	assert_non_null(strstr(err, "DW_KAFKA_SECURITY_PROTOCOL"));
}

static void test_guarantees_cannot_be_overridden(void **state)
{
	(void)state;
	struct config_kv pprops[] = { { (char *)"acks", (char *)"1" } };
	struct config_common cfg = cfg_with(pprops, 1);
	struct kafka_producer *p = NULL;
	assert_int_equal(KAFKA_ERR, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_KAFKA_ACKS"));
	assert_non_null(strstr(err, "all"));

	struct config_kv cprops[] = { { (char *)"enable.auto.commit", (char *)"true" } };
	cfg = cfg_with(cprops, 1);
	struct kafka_consumer_opts co = { .group_id = "g" };
	struct kafka_consumer *c = NULL;
	assert_int_equal(KAFKA_ERR, kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_KAFKA_ENABLE_AUTO_COMMIT"));

	/* repeating the required value is fine */
	struct config_kv same[] = { { (char *)"acks", (char *)"all" }, { (char *)"client.id", (char *)"t" } };
	cfg = cfg_with(same, 2);
	assert_int_equal(0, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_close(p, 0));
}

static void test_consumer_needs_group(void **state)
{
	(void)state;
	struct config_common cfg = cfg_with(NULL, 0);
	struct kafka_consumer_opts co = { 0 };
	struct kafka_consumer *c = NULL;
	assert_int_equal(KAFKA_ERR, kafka_consumer_new(&cfg, &co, &c, err, sizeof(err)));
	assert_non_null(strstr(err, "group id"));
	assert_int_equal(KAFKA_ERR, kafka_consumer_new(&cfg, NULL, &c, err, sizeof(err)));
}

struct outcomes {
	int failed;
	int delivered;
	unsigned seen_mask;
};

static void record(const struct kafka_delivery *d, void *ctx)
{
	struct outcomes *o = ctx;
	if (d->err) {
		o->failed++;
		assert_non_null(d->error);
		assert_int_equal(-1, d->offset);
	} else {
		o->delivered++;
	}
	o->seen_mask |= 1u << (unsigned)(uintptr_t)d->msg_opaque;
}

static void test_close_reports_undelivered(void **state)
{
	(void)state;
	struct config_common cfg = cfg_with(NULL, 0);
	struct outcomes o = { 0 };
	struct kafka_producer_opts po = { .on_delivery = record, .ctx = &o };
	struct kafka_producer *p = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, &po, &p, err, sizeof(err)));
	const char value[] = { 'a', '\0', 'b' };
	for (uintptr_t i = 1; i <= 3; i++)
		assert_int_equal(0, kafka_produce(p, "dw.ce.account", "k", 1, value, sizeof(value), NULL, 0, (void *)i,
						  err, sizeof(err)));
	assert_int_equal(3, kafka_producer_outstanding(p));
	assert_int_equal(KAFKA_ERR_TIMEOUT, kafka_producer_flush(p, 200, err, sizeof(err)));
	assert_non_null(strstr(err, "3 message(s) not delivered"));
	assert_int_equal(3, kafka_producer_close(p, 300));
	/* every purged message was reported, as failed, with its own opaque */
	assert_int_equal(3, o.failed);
	assert_int_equal(0, o.delivered);
	assert_int_equal(0xEu, o.seen_mask);
}

static void test_fatal_error_surfaces(void **state)
{
	(void)state;
	struct config_common cfg = cfg_with(NULL, 0);
	struct kafka_producer *p = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	assert_int_equal(0, kafka_producer_fatal(p, err, sizeof(err)));
	assert_int_equal(RD_KAFKA_RESP_ERR_NO_ERROR,
			 rd_kafka_test_fatal_error(kafka_producer_handle(p), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
						   "test-induced"));
	assert_int_equal(KAFKA_ERR_FATAL, kafka_producer_poll(p, 0));
	assert_int_not_equal(0, kafka_producer_fatal(p, err, sizeof(err)));
	assert_non_null(strstr(err, "test-induced"));
	err[0] = '\0';
	assert_int_equal(KAFKA_ERR_FATAL, kafka_produce(p, "dw.ce.account", "k", 1, "v", 1, NULL, 0, NULL, err,
							sizeof(err)));
	assert_non_null(strstr(err, "fatal"));
	kafka_producer_close(p, 0);
}

static void test_txn_calls_need_transactional_producer(void **state)
{
	(void)state;
	struct config_common cfg = cfg_with(NULL, 0);
	struct kafka_producer *p = NULL;
	assert_int_equal(0, kafka_producer_new(&cfg, NULL, &p, err, sizeof(err)));
	assert_int_equal(KAFKA_ERR, kafka_txn_begin(p, err, sizeof(err)));
	assert_non_null(strstr(err, "not transactional"));
	kafka_producer_close(p, 0);
}

int main(void)
{
	log_init("test_kafka", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_topic_valid),
		cmocka_unit_test(test_table_topic_invalid),
		cmocka_unit_test(test_table_topic_too_long_for_buffer),
		cmocka_unit_test(test_missing_brokers_named),
		cmocka_unit_test(test_rejected_property_named),
		cmocka_unit_test(test_property_value_rejected),
		cmocka_unit_test(test_guarantees_cannot_be_overridden),
		cmocka_unit_test(test_consumer_needs_group),
		cmocka_unit_test(test_close_reports_undelivered),
		cmocka_unit_test(test_fatal_error_surfaces),
		cmocka_unit_test(test_txn_calls_need_transactional_producer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
