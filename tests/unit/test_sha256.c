#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sha256.h"

/* Digests from FIPS 180-4's examples (NIST CSRC "Example Values", SHA256.pdf) and the NIST
 * long-message vector (one million 'a'). */
static void test_nist_empty(void **state)
{
	(void)state;
	char hex[SHA256_HEX_LEN + 1];
	sha256_hex("", 0, hex);
	assert_string_equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex);
	sha256_hex(NULL, 0, hex);
	assert_string_equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex);
}

static void test_nist_abc(void **state)
{
	(void)state;
	char hex[SHA256_HEX_LEN + 1];
	sha256_hex("abc", 3, hex);
	assert_string_equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex);
}

static void test_nist_448_bit_message(void **state)
{
	(void)state;
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	assert_int_equal(56, strlen(m));
	char hex[SHA256_HEX_LEN + 1];
	sha256_hex(m, strlen(m), hex);
	assert_string_equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", hex);
}

static void test_nist_896_bit_message(void **state)
{
	(void)state;
	const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
			"klmnopqrlmnopqrsmnopqrstnopqrstu";
	assert_int_equal(112, strlen(m));
	char hex[SHA256_HEX_LEN + 1];
	sha256_hex(m, strlen(m), hex);
	assert_string_equal("cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1", hex);
}

static void test_nist_million_a_fed_in_uneven_chunks(void **state)
{
	(void)state;
	size_t n = 1000000;
	char *m = malloc(n);
	assert_non_null(m);
	memset(m, 'a', n);
	char hex[SHA256_HEX_LEN + 1];
	sha256_hex(m, n, hex);
	assert_string_equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", hex);

	/* Same message, fed in chunks of 1..97 bytes so every buffer boundary case is crossed. */
	struct sha256_ctx ctx;
	sha256_init(&ctx);
	size_t off = 0, step = 1;
	while (off < n) {
		size_t take = step < n - off ? step : n - off;
		sha256_update(&ctx, m + off, take);
		off += take;
		step = step % 97 + 1;
	}
	uint8_t d[SHA256_DIGEST_LEN];
	sha256_final(&ctx, d);
	sha256_to_hex(d, hex);
	assert_string_equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", hex);
	free(m);
}

/* Lengths around the padding boundaries (55/56 bytes: length field fits or needs another block;
 * 64/128: exact blocks). Expected values computed with coreutils sha256sum over 'x' * n. */
static void test_padding_boundaries(void **state)
{
	(void)state;
	static const struct {
		size_t n;
		const char *hex;
	} v[] = {
		{ 55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072" },
		{ 56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e" },
		{ 63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2" },
		{ 64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c" },
		{ 65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9" },
		{ 119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c" },
		{ 120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98" },
		{ 127, "70156a14adbabf98cff3a71c7084b417abf057a8efd27329ca36b7202c87d81f" },
		{ 128, "24da1b81d0b16df6428eee73c69fcb2a93c76bc6df706f0c6670fe6bfe800464" },
	};
	char m[128];
	memset(m, 'x', sizeof(m));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char hex[SHA256_HEX_LEN + 1];
		sha256_hex(m, v[i].n, hex);
		assert_string_equal(v[i].hex, hex);
	}
}

/* Incremental hashing equals one-shot hashing for every length up to 300 and every split point. */
static void test_incremental_matches_one_shot(void **state)
{
	(void)state;
	uint8_t m[300];
	for (size_t i = 0; i < sizeof(m); i++)
		m[i] = (uint8_t)(i * 131 + 7);
	for (size_t n = 0; n <= sizeof(m); n += 1) {
		uint8_t whole[SHA256_DIGEST_LEN];
		sha256(m, n, whole);
		for (size_t cut = 0; cut <= n; cut += 13) {
			struct sha256_ctx ctx;
			uint8_t parts[SHA256_DIGEST_LEN];
			sha256_init(&ctx);
			sha256_update(&ctx, m, cut);
			sha256_update(&ctx, m + cut, n - cut);
			sha256_final(&ctx, parts);
			assert_memory_equal(whole, parts, SHA256_DIGEST_LEN);
		}
	}
}

static void test_one_bit_change_changes_digest(void **state)
{
	(void)state;
	char a[SHA256_HEX_LEN + 1], b[SHA256_HEX_LEN + 1];
	sha256_hex("ce\naccount\naccountid=1\n7", 25, a);
	sha256_hex("ce\naccount\naccountid=1\n6", 25, b);
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nist_empty),
		cmocka_unit_test(test_nist_abc),
		cmocka_unit_test(test_nist_448_bit_message),
		cmocka_unit_test(test_nist_896_bit_message),
		cmocka_unit_test(test_nist_million_a_fed_in_uneven_chunks),
		cmocka_unit_test(test_padding_boundaries),
		cmocka_unit_test(test_incremental_matches_one_shot),
		cmocka_unit_test(test_one_bit_change_changes_digest),
	};
	return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
