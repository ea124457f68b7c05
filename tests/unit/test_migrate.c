/* The migration runner's pure parts: versions from file names and the ordering check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "migrate.h"

static char err[512];

static void test_version_from_name(void **state)
{
	(void)state;
	int v = -1;
	assert_int_equal(0, migrate_version("001_initial.sql", &v));
	assert_int_equal(1, v);
	assert_int_equal(0, migrate_version("042_add_index.sql", &v));
	assert_int_equal(42, v);
	assert_int_equal(0, migrate_version("7_x.sql", &v));
	assert_int_equal(7, v);
	assert_int_equal(0, migrate_version("123456789_max.sql", &v));
	assert_int_equal(123456789, v);
}

static void test_version_rejects_bad_names(void **state)
{
	(void)state;
	int v = 99;
	assert_int_equal(-1, migrate_version("initial.sql", &v));
	assert_int_equal(-1, migrate_version("000_zero.sql", &v));
	assert_int_equal(-1, migrate_version("001initial.sql", &v));
	assert_int_equal(-1, migrate_version("001-initial.sql", &v));
	assert_int_equal(-1, migrate_version("_001.sql", &v));
	assert_int_equal(-1, migrate_version("1234567890_too_long.sql", &v));
	assert_int_equal(-1, migrate_version("", &v));
	assert_int_equal(99, v); /* untouched on failure */
}

static void test_check_accepts_increasing(void **state)
{
	(void)state;
	const struct migrate_file files[] = { { "001_a.sql", "" }, { "002_b.sql", "" }, { "010_c.sql", "" } };
	assert_int_equal(0, migrate_check(files, 3, err, sizeof(err)));
	assert_int_equal(0, migrate_check(files, 0, err, sizeof(err)));
}

static void test_check_rejects_order_and_duplicates(void **state)
{
	(void)state;
	const struct migrate_file swapped[] = { { "002_b.sql", "" }, { "001_a.sql", "" } };
	assert_int_equal(-1, migrate_check(swapped, 2, err, sizeof(err)));
	assert_non_null(strstr(err, "001_a.sql"));
	const struct migrate_file dup[] = { { "001_a.sql", "" }, { "001_b.sql", "" } };
	assert_int_equal(-1, migrate_check(dup, 2, err, sizeof(err)));
	assert_non_null(strstr(err, "001_b.sql"));
	const struct migrate_file bad[] = { { "001_a.sql", "" }, { "notes.sql", "" } };
	assert_int_equal(-1, migrate_check(bad, 2, err, sizeof(err)));
	assert_non_null(strstr(err, "notes.sql"));
}

/* The migrations compiled into the programs pass the same check the runner makes. */
static void test_shipped_migrations_are_valid(void **state)
{
	(void)state;
	assert_true(migrate_files_len >= 1);
	assert_int_equal(0, migrate_check(migrate_files, migrate_files_len, err, sizeof(err)));
	assert_string_equal("001_initial.sql", migrate_files[0].name);
	assert_non_null(strstr(migrate_files[0].sql, "CREATE TABLE dw_record_state"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_from_name),
		cmocka_unit_test(test_version_rejects_bad_names),
		cmocka_unit_test(test_check_accepts_increasing),
		cmocka_unit_test(test_check_rejects_order_and_duplicates),
		cmocka_unit_test(test_shipped_migrations_are_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
