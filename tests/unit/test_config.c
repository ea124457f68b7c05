#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static char err[512];

static void clear_env(void)
{
	static const char *const vars[] = { "DW_KAFKA_BROKERS", "DW_PG_DSN", "DW_PG_DSN_FILE", "DW_TOPIC_PREFIX",
					    "DW_LOG_LEVEL", "DW_KAFKA_SECURITY_PROTOCOL", "DW_KAFKA_SASL_PASSWORD",
					    "DW_KAFKA_SASL_PASSWORD_FILE", "T_NUM", "T_BOOL", "T_DUR", "T_SECRET",
					    "T_SECRET_FILE", "T_STR" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	log_secret_clear();
}

static int setup(void **state)
{
	(void)state;
	clear_env();
	err[0] = '\0';
	return 0;
}

/* Writes `content` to a new temporary file; returns its path (static buffer). */
static const char *temp_file(const char *content, size_t len)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/dw-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal((ssize_t)len, write(fd, content, len));
	close(fd);
	return path;
}

static void test_str_default_and_required(void **state)
{
	(void)state;
	char *v = NULL;
	assert_int_equal(0, config_str("T_STR", "fallback", &v, err, sizeof(err)));
	assert_string_equal("fallback", v);
	free(v);
	setenv("T_STR", "", 1);
	assert_int_equal(0, config_str("T_STR", NULL, &v, err, sizeof(err)));
	assert_null(v);
	assert_int_equal(-1, config_str_required("T_STR", &v, err, sizeof(err)));
	assert_non_null(strstr(err, "T_STR"));
	assert_non_null(strstr(err, "required"));
	setenv("T_STR", "value", 1);
	assert_int_equal(0, config_str_required("T_STR", &v, err, sizeof(err)));
	assert_string_equal("value", v);
	free(v);
}

static void test_long_rejects_garbage_and_range(void **state)
{
	(void)state;
	long n = 0;
	assert_int_equal(0, config_long("T_NUM", 7, 1, 10, &n, err, sizeof(err)));
	assert_int_equal(7, n);
	setenv("T_NUM", "12x", 1);
	assert_int_equal(-1, config_long("T_NUM", 7, 1, 10, &n, err, sizeof(err)));
	assert_non_null(strstr(err, "T_NUM"));
	assert_non_null(strstr(err, "not a whole number"));
	setenv("T_NUM", "11", 1);
	assert_int_equal(-1, config_long("T_NUM", 7, 1, 10, &n, err, sizeof(err)));
	assert_non_null(strstr(err, "out of range"));
	setenv("T_NUM", "99999999999999999999999", 1);
	assert_int_equal(-1, config_long("T_NUM", 7, 1, 10, &n, err, sizeof(err)));
	setenv("T_NUM", "10", 1);
	assert_int_equal(0, config_long("T_NUM", 7, 1, 10, &n, err, sizeof(err)));
	assert_int_equal(10, n);
}

static void test_bool_forms(void **state)
{
	(void)state;
	int b = -1;
	const char *yes[] = { "1", "true", "YES", "On" };
	const char *no[] = { "0", "False", "no", "OFF" };
	for (int i = 0; i < 4; i++) {
		setenv("T_BOOL", yes[i], 1);
		assert_int_equal(0, config_bool("T_BOOL", 0, &b, err, sizeof(err)));
		assert_int_equal(1, b);
		setenv("T_BOOL", no[i], 1);
		assert_int_equal(0, config_bool("T_BOOL", 1, &b, err, sizeof(err)));
		assert_int_equal(0, b);
	}
	setenv("T_BOOL", "maybe", 1);
	assert_int_equal(-1, config_bool("T_BOOL", 1, &b, err, sizeof(err)));
	assert_non_null(strstr(err, "T_BOOL: 'maybe' is not a boolean"));
}

static void test_duration_units(void **state)
{
	(void)state;
	long long ms = 0;
	struct {
		const char *text;
		long long ms;
	} ok[] = { { "250", 250 }, { "250ms", 250 }, { "30s", 30000 }, { "5m", 300000 }, { "2h", 7200000 },
		   { "7d", 604800000 } };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		setenv("T_DUR", ok[i].text, 1);
		assert_int_equal(0, config_duration_ms("T_DUR", 1, 0, 1LL << 50, &ms, err, sizeof(err)));
		assert_int_equal(ok[i].ms, ms);
	}
	const char *bad[] = { "5 weeks", "-1s", "s", "1.5s", "3y" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("T_DUR", bad[i], 1);
		assert_int_equal(-1, config_duration_ms("T_DUR", 1, 0, 1LL << 50, &ms, err, sizeof(err)));
		assert_non_null(strstr(err, "T_DUR"));
	}
	setenv("T_DUR", "2d", 1);
	assert_int_equal(-1, config_duration_ms("T_DUR", 1, 0, 1000, &ms, err, sizeof(err)));
	assert_non_null(strstr(err, "out of range"));
}

static void test_secret_from_file_and_conflicts(void **state)
{
	(void)state;
	char *v = NULL;
	const char *path = temp_file("s3cr3t-from-file\n", 17);
	setenv("T_SECRET_FILE", path, 1);
	assert_int_equal(0, config_secret("T_SECRET", 1, &v, err, sizeof(err)));
	assert_string_equal("s3cr3t-from-file", v);
	/* Registered for redaction. */
	char line[512];
	log_format(line, sizeof(line), LOG_INFO, "connecting with s3cr3t-from-file", "detail",
		   "x=s3cr3t-from-file", NULL);
	assert_null(strstr(line, "s3cr3t-from-file"));
	free(v);
	unlink(path);

	setenv("T_SECRET", "direct", 1);
	assert_int_equal(-1, config_secret("T_SECRET", 1, &v, err, sizeof(err)));
	assert_non_null(strstr(err, "not both"));
	unsetenv("T_SECRET");
	unsetenv("T_SECRET_FILE");
	assert_int_equal(-1, config_secret("T_SECRET", 1, &v, err, sizeof(err)));
	assert_non_null(strstr(err, "T_SECRET_FILE"));
	assert_int_equal(0, config_secret("T_SECRET", 0, &v, err, sizeof(err)));
	assert_null(v);

	setenv("T_SECRET_FILE", "/nonexistent/dw-secret", 1);
	assert_int_equal(-1, config_secret("T_SECRET", 1, &v, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/dw-secret"));

	path = temp_file("", 0);
	setenv("T_SECRET_FILE", path, 1);
	assert_int_equal(-1, config_secret("T_SECRET", 1, &v, err, sizeof(err)));
	assert_non_null(strstr(err, "empty"));
	unlink(path);
}

static void test_secret_file_size_cap(void **state)
{
	(void)state;
	size_t n = CONFIG_SECRET_MAX + 10;
	char *big = malloc(n);
	assert_non_null(big);
	memset(big, 'a', n);
	const char *path = temp_file(big, n);
	free(big);
	setenv("T_SECRET_FILE", path, 1);
	char *v = NULL;
	assert_int_equal(-1, config_secret("T_SECRET", 1, &v, err, sizeof(err)));
	assert_non_null(strstr(err, "larger than"));
	unlink(path);
}

static void test_common_defaults_and_kafka_passthrough(void **state)
{
	(void)state;
	struct config_common cfg;
	setenv("DW_KAFKA_BROKERS", "127.0.0.1:9092", 1);
	setenv("DW_PG_DSN", "postgresql://dw:hunter22@127.0.0.1/dw", 1);
	setenv("DW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", 1);
	setenv("DW_KAFKA_SASL_PASSWORD", "kafkapass", 1);
	assert_int_equal(0, config_common_load(&cfg, err, sizeof(err)));
	assert_string_equal("127.0.0.1:9092", cfg.kafka_brokers);
	assert_string_equal("dw", cfg.topic_prefix);
	assert_int_equal(LOG_INFO, cfg.log_level);
	assert_int_equal(2, cfg.kafka_props_len);
	int seen = 0;
	for (size_t i = 0; i < cfg.kafka_props_len; i++) {
		if (strcmp(cfg.kafka_props[i].key, "security.protocol") == 0) {
			assert_string_equal("SASL_SSL", cfg.kafka_props[i].value);
			seen |= 1;
		}
		if (strcmp(cfg.kafka_props[i].key, "sasl.password") == 0) {
			assert_string_equal("kafkapass", cfg.kafka_props[i].value);
			seen |= 2;
		}
	}
	assert_int_equal(3, seen);
	char line[512];
	log_format(line, sizeof(line), LOG_INFO, "x", "detail", "pw kafkapass and hunter22", NULL);
	assert_null(strstr(line, "kafkapass"));
	assert_null(strstr(line, "hunter22"));
	config_common_free(&cfg);
	assert_null(cfg.kafka_brokers);
}

static void test_common_rejects_bad_values(void **state)
{
	(void)state;
	struct config_common cfg;
	setenv("DW_TOPIC_PREFIX", "bad prefix!", 1);
	assert_int_equal(-1, config_common_load(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_TOPIC_PREFIX"));
	unsetenv("DW_TOPIC_PREFIX");
	setenv("DW_LOG_LEVEL", "chatty", 1);
	assert_int_equal(-1, config_common_load(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_LOG_LEVEL: 'chatty'"));
	unsetenv("DW_LOG_LEVEL");
	setenv("DW_PG_DSN", "a", 1);
	setenv("DW_PG_DSN_FILE", "/tmp/x", 1);
	assert_int_equal(-1, config_common_load(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "DW_PG_DSN"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_str_default_and_required, setup),
		cmocka_unit_test_setup(test_long_rejects_garbage_and_range, setup),
		cmocka_unit_test_setup(test_bool_forms, setup),
		cmocka_unit_test_setup(test_duration_units, setup),
		cmocka_unit_test_setup(test_secret_from_file_and_conflicts, setup),
		cmocka_unit_test_setup(test_secret_file_size_cap, setup),
		cmocka_unit_test_setup(test_common_defaults_and_kafka_passthrough, setup),
		cmocka_unit_test_setup(test_common_rejects_bad_values, setup),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
