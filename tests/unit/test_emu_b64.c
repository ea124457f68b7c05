/* The emulators' base64 (ETags, Basic credentials): RFC 4648 vectors, round trips, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "b64.h"

static void test_rfc4648_vectors(void **state)
{
	(void)state;
	const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		char enc[32], dec[32];
		assert_int_equal(b64_encode(plain[i], strlen(plain[i]), enc, sizeof(enc)), strlen(coded[i]));
		assert_string_equal(enc, coded[i]);
		assert_int_equal(b64_decode(coded[i], strlen(coded[i]), dec, sizeof(dec)), (long)strlen(plain[i]));
		assert_string_equal(dec, plain[i]);
	}
}

static void test_etag_text_round_trip(void **state)
{
	(void)state;
	char enc[64], dec[64];
	assert_true(b64_encode("'1,5637144576'", 14, enc, sizeof(enc)) > 0);
	assert_string_equal(enc, "JzEsNTYzNzE0NDU3Nic=");
	assert_int_equal(b64_decode(enc, strlen(enc), dec, sizeof(dec)), 14);
	assert_string_equal(dec, "'1,5637144576'");
	/* padding is optional when decoding */
	assert_int_equal(b64_decode("Zg", 2, dec, sizeof(dec)), 1);
	assert_string_equal(dec, "f");
}

static void test_bad_input_and_small_buffers(void **state)
{
	(void)state;
	char out[8];
	assert_int_equal(b64_decode("Zm9v!", 5, out, sizeof(out)), -1);
	assert_int_equal(b64_decode("Zm 9v", 5, out, sizeof(out)), -1);
	assert_int_equal(b64_decode("Zm9vYmFy", 8, out, 6), -1); /* 6 bytes + NUL do not fit in 6 */
	assert_int_equal(b64_decode("Zm9vYmFy", 8, out, 7), 6);
	assert_int_equal(b64_encode("foobar", 6, out, 8), 0);    /* 8 chars + NUL do not fit in 8 */
	char nine[9];
	assert_int_equal(b64_encode("foobar", 6, nine, sizeof(nine)), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_etag_text_round_trip),
		cmocka_unit_test(test_bad_input_and_small_buffers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
