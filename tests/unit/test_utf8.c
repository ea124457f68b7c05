#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "utf8.h"

/* Encodes cp the textbook way (RFC 3629 section 3); returns the length. */
static size_t encode(uint32_t cp, uint8_t out[4])
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xc0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xe0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (uint8_t)(0xf0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

static void test_every_scalar_value_accepted_and_counted_once(void **state)
{
	(void)state;
	for (uint32_t cp = 1; cp <= 0x10ffff; cp++) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		uint8_t b[4];
		size_t n = encode(cp, b);
		size_t off = 99;
		if (utf8_validate(b, n, &off) != 0)
			fail_msg("U+%04X rejected at %zu", (unsigned)cp, off);
		assert_int_equal(1, utf8_codepoints((const char *)b, n));
	}
}

static void test_surrogates_rejected(void **state)
{
	(void)state;
	for (uint32_t cp = 0xd800; cp <= 0xdfff; cp++) {
		uint8_t b[4];
		size_t n = encode(cp, b), off = 99;
		assert_int_equal(-1, utf8_validate(b, n, &off));
		assert_int_equal(1, off); /* ED is a fine lead byte; A0..BF after it is not */
	}
}

/* Among all two-, three- and four-byte strings starting with a non-ASCII lead byte, exactly the
 * shortest encodings of scalar values pass: 1920, 61440 (63488 minus 2048 surrogates) and
 * 1048576. So no overlong form, surrogate or value above U+10FFFF slips through. */
static void test_exact_counts_of_valid_multibyte_sequences(void **state)
{
	(void)state;
	uint8_t b[4];
	size_t valid = 0;
	for (unsigned a = 0x80; a <= 0xff; a++)
		for (unsigned c = 0; c <= 0xff; c++) {
			b[0] = (uint8_t)a;
			b[1] = (uint8_t)c;
			valid += utf8_validate(b, 2, NULL) == 0;
		}
	assert_int_equal(1920, valid);

	valid = 0;
	for (unsigned a = 0xe0; a <= 0xff; a++)
		for (unsigned c = 0; c <= 0xff; c++)
			for (unsigned d = 0; d <= 0xff; d++) {
				b[0] = (uint8_t)a;
				b[1] = (uint8_t)c;
				b[2] = (uint8_t)d;
				valid += utf8_validate(b, 3, NULL) == 0;
			}
	assert_int_equal(61440, valid);

	valid = 0;
	for (unsigned a = 0xf0; a <= 0xff; a++)
		for (unsigned c = 0x70; c <= 0xcf; c++)
			for (unsigned d = 0x70; d <= 0xcf; d++)
				for (unsigned e = 0x70; e <= 0xcf; e++) {
					b[0] = (uint8_t)a;
					b[1] = (uint8_t)c;
					b[2] = (uint8_t)d;
					b[3] = (uint8_t)e;
					valid += utf8_validate(b, 4, NULL) == 0;
				}
	assert_int_equal(1048576, valid);
}

static void test_offsets_of_first_bad_byte(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t len, off;
	} cases[] = {
		{ "abc\0def", 7, 3 },          /* NUL */
		{ "ab\x80", 3, 2 },            /* lone continuation */
		{ "\xc3\xa9\xc3", 3, 2 },      /* truncated at the end: the lead byte */
		{ "\xe2\x82x", 3, 2 },         /* truncated before ASCII: the ASCII byte */
		{ "\xc0\x80", 2, 0 },          /* overlong NUL */
		{ "\xe0\x9f\xbf", 3, 1 },      /* overlong U+07FF */
		{ "\xf0\x8f\xbf\xbf", 4, 1 },  /* overlong U+FFFF */
		{ "\xf4\x90\x80\x80", 4, 1 },  /* U+110000 */
		{ "ok\xf8\x88\x80\x80\x80", 7, 2 }, /* 5-byte form */
		{ "\xf0\x9f\x9a\x80\xf0\x9f\x9a", 7, 4 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t off = 99;
		assert_int_equal(-1, utf8_validate(cases[i].s, cases[i].len, &off));
		if (off != cases[i].off)
			fail_msg("case %zu: offset %zu, expected %zu", i, off, cases[i].off);
	}
	assert_int_equal(0, utf8_validate("", 0, NULL));
	assert_int_equal(0, utf8_validate(NULL, 0, NULL));
	assert_int_equal(4, utf8_codepoints("a\xc3\xa9\xe6\x9d\xb1\xf0\x9f\x9a\x80", 10));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_scalar_value_accepted_and_counted_once),
		cmocka_unit_test(test_surrogates_rejected),
		cmocka_unit_test(test_exact_counts_of_valid_multibyte_sequences),
		cmocka_unit_test(test_offsets_of_first_bad_byte),
	};
	return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
