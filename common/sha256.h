#ifndef DW_SHA256_H
#define DW_SHA256_H

#include <stddef.h>
#include <stdint.h>

/*
 * SHA-256 as specified in FIPS 180-4, written here so that event ids and content hashes do not
 * depend on a crypto library. Not constant-time with respect to anything secret: it hashes
 * public data (record keys, mapped field values), never keys or passwords.
 */

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 64 /* lowercase hex digits, without the terminating NUL */

/* Running state of one hash. Plain data: no allocation, copyable, nothing to free. */
struct sha256_ctx {
	uint32_t h[8];
	uint64_t total;  /* bytes fed so far */
	uint8_t buf[64]; /* pending partial block */
	size_t buflen;
};

/* Starts a new hash in *ctx. */
void sha256_init(struct sha256_ctx *ctx);

/* Feeds len bytes (may be 0; data may then be NULL). Borrows data for the call. */
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);

/* Finishes the hash into out; *ctx must be re-initialised before it is used again. */
void sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN]);

/* One-shot digest of len bytes. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);

/* Writes the digest as 64 lowercase hex digits plus a NUL into hex (65 bytes). */
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_LEN], char hex[SHA256_HEX_LEN + 1]);

/* One-shot digest of len bytes as lowercase hex into hex (65 bytes). */
void sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1]);

#endif
