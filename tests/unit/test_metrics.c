#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char err[512];

static char *render(struct metrics *m)
{
	char *out = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(m, &out, &len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	return out;
}

static void test_counter_and_gauge_exact_text(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *applied, *lag, *up;
	static const char *const labels[] = {"map", "outcome", NULL};
	static const char *const lag_labels[] = {"topic", NULL};

	assert_non_null(m);
	assert_int_equal(metrics_counter_new(m, "dw_events_applied_total", "Events applied to the target.", labels,
					     &applied, err, sizeof(err)),
			 0);
	assert_int_equal(metrics_gauge_new(m, "dw_consumer_lag", "Messages behind.", lag_labels, &lag, err,
					   sizeof(err)),
			 0);
	assert_int_equal(metrics_gauge_new(m, "dw_up", "1 while running.", NULL, &up, err, sizeof(err)), 0);

	const char *a[] = {"accounts", "applied"};
	const char *d[] = {"accounts", "duplicate"};
	metrics_counter_add(applied, a, 1);
	metrics_counter_add(applied, a, 2);
	metrics_counter_add(applied, d, 0.5);
	metrics_counter_add(applied, d, -4); /* counters never go down: dropped */
	metrics_gauge_set(lag, (const char *[]){"dw.ce.account"}, 10);
	metrics_gauge_add(lag, (const char *[]){"dw.ce.account"}, -3);
	metrics_gauge_set(up, NULL, 1);

	assert_true(metrics_value(applied, a) == 3);
	assert_true(metrics_value(applied, d) == 0.5);
	assert_true(metrics_value(applied, (const char *[]){"none", "x"}) == 0);

	char *out = render(m);
	assert_string_equal(out, "# HELP dw_events_applied_total Events applied to the target.\n"
				 "# TYPE dw_events_applied_total counter\n"
				 "dw_events_applied_total{map=\"accounts\",outcome=\"applied\"} 3\n"
				 "dw_events_applied_total{map=\"accounts\",outcome=\"duplicate\"} 0.5\n"
				 "# HELP dw_consumer_lag Messages behind.\n"
				 "# TYPE dw_consumer_lag gauge\n"
				 "dw_consumer_lag{topic=\"dw.ce.account\"} 7\n"
				 "# HELP dw_up 1 while running.\n"
				 "# TYPE dw_up gauge\n"
				 "dw_up 1\n");
	free(out);
	metrics_free(m);
}

static void test_unlabelled_series_exists_at_zero_and_labelled_family_is_empty(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *c, *l;

	assert_int_equal(metrics_counter_new(m, "a_total", "A.", NULL, &c, err, sizeof(err)), 0);
	assert_int_equal(metrics_counter_new(m, "b_total", "B.", (const char *[]){"k", NULL}, &l, err,
					     sizeof(err)),
			 0);
	char *out = render(m);
	assert_string_equal(out, "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
				 "# HELP b_total B.\n# TYPE b_total counter\n");
	free(out);
	metrics_free(m);
}

static void test_histogram_exact_text(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *h, *h2;
	static const double b[] = {0.1, 0.5, 1};

	assert_int_equal(metrics_histogram_new(m, "dw_batch_seconds", "Batch latency.",
					       (const char *[]){"map", NULL}, b, 3, &h, err, sizeof(err)),
			 0);
	const char *v[] = {"po"};
	metrics_histogram_observe(h, v, 0.05);
	metrics_histogram_observe(h, v, 0.1); /* le is inclusive */
	metrics_histogram_observe(h, v, 0.7);
	metrics_histogram_observe(h, v, 3);
	metrics_histogram_observe(h, v, NAN); /* dropped */
	assert_int_equal(metrics_histogram_new(m, "plain_seconds", "No labels.", NULL, metrics_buckets_default,
					       METRICS_BUCKETS_DEFAULT_N, &h2, err, sizeof(err)),
			 0);
	metrics_histogram_observe(h2, NULL, 0.02);

	char *out = render(m);
	assert_string_equal(out, "# HELP dw_batch_seconds Batch latency.\n"
				 "# TYPE dw_batch_seconds histogram\n"
				 "dw_batch_seconds_bucket{map=\"po\",le=\"0.1\"} 2\n"
				 "dw_batch_seconds_bucket{map=\"po\",le=\"0.5\"} 2\n"
				 "dw_batch_seconds_bucket{map=\"po\",le=\"1\"} 3\n"
				 "dw_batch_seconds_bucket{map=\"po\",le=\"+Inf\"} 4\n"
				 "dw_batch_seconds_sum{map=\"po\"} 3.85\n"
				 "dw_batch_seconds_count{map=\"po\"} 4\n"
				 "# HELP plain_seconds No labels.\n"
				 "# TYPE plain_seconds histogram\n"
				 "plain_seconds_bucket{le=\"0.005\"} 0\n"
				 "plain_seconds_bucket{le=\"0.01\"} 0\n"
				 "plain_seconds_bucket{le=\"0.025\"} 1\n"
				 "plain_seconds_bucket{le=\"0.05\"} 1\n"
				 "plain_seconds_bucket{le=\"0.1\"} 1\n"
				 "plain_seconds_bucket{le=\"0.25\"} 1\n"
				 "plain_seconds_bucket{le=\"0.5\"} 1\n"
				 "plain_seconds_bucket{le=\"1\"} 1\n"
				 "plain_seconds_bucket{le=\"2.5\"} 1\n"
				 "plain_seconds_bucket{le=\"5\"} 1\n"
				 "plain_seconds_bucket{le=\"10\"} 1\n"
				 "plain_seconds_bucket{le=\"+Inf\"} 1\n"
				 "plain_seconds_sum 0.02\n"
				 "plain_seconds_count 1\n");
	free(out);
	metrics_free(m);
}

static void test_escaping(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *c;

	assert_int_equal(metrics_counter_new(m, "esc_total", "Back\\slash and\nnewline \"quoted\".",
					     (const char *[]){"v", NULL}, &c, err, sizeof(err)),
			 0);
	metrics_counter_add(c, (const char *[]){"a\\b\"c\nd"}, 1);
	metrics_counter_add(c, (const char *[]){NULL}, 2); /* NULL value is "" */
	char *out = render(m);
	/* HELP escapes \ and newline only; label values also escape the double quote. */
	assert_string_equal(out, "# HELP esc_total Back\\\\slash and\\nnewline \"quoted\".\n"
				 "# TYPE esc_total counter\n"
				 "esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
				 "esc_total{v=\"\"} 2\n");
	free(out);
	metrics_free(m);
}

static void test_number_forms(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *g;
	static const char *const names[] = {"n", NULL};

	assert_int_equal(metrics_gauge_new(m, "num", "Numbers.", names, &g, err, sizeof(err)), 0);
	metrics_gauge_set(g, (const char *[]){"a"}, 0.1);
	metrics_gauge_set(g, (const char *[]){"b"}, 1e21);
	metrics_gauge_set(g, (const char *[]){"c"}, -2.5);
	metrics_gauge_set(g, (const char *[]){"d"}, INFINITY);
	metrics_gauge_set(g, (const char *[]){"e"}, -INFINITY);
	metrics_gauge_set(g, (const char *[]){"f"}, 9007199254740993.0); /* rounds to 2^53 */
	metrics_gauge_set(g, (const char *[]){"g"}, 1.0 / 3.0);
	char *out = render(m);
	assert_string_equal(out, "# HELP num Numbers.\n# TYPE num gauge\n"
				 "num{n=\"a\"} 0.1\n"
				 "num{n=\"b\"} 1e+21\n"
				 "num{n=\"c\"} -2.5\n"
				 "num{n=\"d\"} +Inf\n"
				 "num{n=\"e\"} -Inf\n"
				 "num{n=\"f\"} 9007199254740992\n"
				 "num{n=\"g\"} 0.3333333333333333\n");
	free(out);
	metrics_free(m);
}

static void test_registration_errors(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *f = NULL;
	static const double bad[] = {1, 0.5};

	assert_int_equal(metrics_counter_new(m, "ok_total", "x", NULL, &f, err, sizeof(err)), 0);
	assert_int_equal(metrics_gauge_new(m, "ok_total", "x", NULL, &f, err, sizeof(err)), -1);
	assert_null(f);
	assert_string_equal(err, "metrics: ok_total registered twice");
	assert_int_equal(metrics_counter_new(m, "9bad", "x", NULL, &f, err, sizeof(err)), -1);
	assert_string_equal(err, "metrics: invalid metric name \"9bad\"");
	assert_int_equal(metrics_counter_new(m, "bad-name", "x", NULL, &f, err, sizeof(err)), -1);
	assert_int_equal(metrics_counter_new(m, "x_total", "x", (const char *[]){"a", "b", "c", "d", "e", NULL},
					     &f, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "metrics x_total: more than 4 labels");
	assert_int_equal(metrics_counter_new(m, "x_total", "x", (const char *[]){"a:b", NULL}, &f, err,
					     sizeof(err)),
			 -1);
	assert_string_equal(err, "metrics x_total: invalid label name \"a:b\"");
	assert_int_equal(metrics_counter_new(m, "x_total", "x", (const char *[]){"a", "a", NULL}, &f, err,
					     sizeof(err)),
			 -1);
	assert_string_equal(err, "metrics x_total: label \"a\" given twice");
	assert_int_equal(metrics_histogram_new(m, "h", "x", (const char *[]){"le", NULL}, metrics_buckets_default,
					       1, &f, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "metrics h: invalid label name \"le\"");
	assert_int_equal(metrics_histogram_new(m, "h", "x", NULL, bad, 2, &f, err, sizeof(err)), -1);
	assert_string_equal(err, "metrics h: bucket bounds must be finite and strictly increasing (bound 1)");
	assert_int_equal(metrics_histogram_new(m, "h", "x", NULL, bad, 0, &f, err, sizeof(err)), -1);
	assert_string_equal(err, "metrics h: a histogram needs 1 to 32 buckets, got 0");
	/* Only the one good family was registered. */
	char *out = render(m);
	assert_string_equal(out, "# HELP ok_total x\n# TYPE ok_total counter\nok_total 0\n");
	free(out);
	metrics_free(m);
}

static void test_wrong_type_calls_are_ignored(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *c;

	assert_int_equal(metrics_counter_new(m, "c_total", "C.", NULL, &c, err, sizeof(err)), 0);
	metrics_gauge_set(c, NULL, 5);
	metrics_histogram_observe(c, NULL, 1);
	metrics_counter_add(c, NULL, 2);
	assert_true(metrics_value(c, NULL) == 2);
	metrics_counter_add(NULL, NULL, 1); /* NULL family: nothing happens */
	metrics_free(m);
}

static void test_series_cap_and_long_values(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_family *c;
	char v[32];

	assert_int_equal(metrics_counter_new(m, "card_total", "C.", (const char *[]){"id", NULL}, &c, err,
					     sizeof(err)),
			 0);
	for (int i = 0; i < METRICS_SERIES_MAX + 5; i++) {
		snprintf(v, sizeof(v), "%d", i);
		metrics_counter_add(c, (const char *[]){v}, 1);
	}
	assert_int_equal(metrics_dropped(m), 5);
	assert_true(metrics_value(c, (const char *[]){"0"}) == 1);
	assert_true(metrics_value(c, (const char *[]){"10004"}) == 0);
	/* An existing series still counts after the cap is reached. */
	metrics_counter_add(c, (const char *[]){"7"}, 1);
	assert_true(metrics_value(c, (const char *[]){"7"}) == 2);
	metrics_free(m);

	/* Values over METRICS_LABEL_VALUE_MAX are cut at a UTF-8 boundary; the cut value is the key. */
	m = metrics_new();
	assert_int_equal(metrics_counter_new(m, "long_total", "L.", (const char *[]){"v", NULL}, &c, err,
					     sizeof(err)),
			 0);
	char big[METRICS_LABEL_VALUE_MAX + 10];
	memset(big, 'a', sizeof(big));
	big[METRICS_LABEL_VALUE_MAX - 1] = (char)0xC3; /* "é" straddles the cap */
	big[METRICS_LABEL_VALUE_MAX] = (char)0xA9;
	big[sizeof(big) - 1] = 0;
	metrics_counter_add(c, (const char *[]){big}, 1);
	char *out = render(m);
	char *open = strstr(out, "v=\"");
	assert_non_null(open);
	char *close = strchr(open + 3, '"');
	assert_int_equal(close - (open + 3), METRICS_LABEL_VALUE_MAX - 1);
	free(out);
	metrics_free(m);
}

struct race {
	struct metrics_family *c, *h;
};

static void *hammer(void *arg)
{
	struct race *r = arg;
	for (int i = 0; i < 20000; i++) {
		metrics_counter_add(r->c, (const char *[]){(i & 1) ? "odd" : "even"}, 1);
		metrics_histogram_observe(r->h, NULL, 0.001);
	}
	return NULL;
}

static void test_concurrent_updates_are_not_lost(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct race r;
	pthread_t t[4];

	assert_int_equal(metrics_counter_new(m, "race_total", "R.", (const char *[]){"p", NULL}, &r.c, err,
					     sizeof(err)),
			 0);
	assert_int_equal(metrics_histogram_new(m, "race_seconds", "R.", NULL, metrics_buckets_default,
					       METRICS_BUCKETS_DEFAULT_N, &r.h, err, sizeof(err)),
			 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, &r), 0);
	for (int i = 0; i < 4; i++) {
		char *out = render(m); /* rendering while others write */
		free(out);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_true(metrics_value(r.c, (const char *[]){"odd"}) == 40000);
	assert_true(metrics_value(r.c, (const char *[]){"even"}) == 40000);
	char *out = render(m);
	assert_non_null(strstr(out, "race_seconds_count 80000\n"));
	assert_non_null(strstr(out, "race_seconds_bucket{le=\"0.005\"} 80000\n"));
	free(out);
	metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge_exact_text),
		cmocka_unit_test(test_unlabelled_series_exists_at_zero_and_labelled_family_is_empty),
		cmocka_unit_test(test_histogram_exact_text),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_number_forms),
		cmocka_unit_test(test_registration_errors),
		cmocka_unit_test(test_wrong_type_calls_are_ignored),
		cmocka_unit_test(test_series_cap_and_long_values),
		cmocka_unit_test(test_concurrent_updates_are_not_lost),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
