#include "b64.h"

#include <string.h>

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_encode(const void *in, size_t n, char *out, size_t cap)
{
	const unsigned char *p = in;
	if (cap < (n + 2) / 3 * 4 + 1)
		return 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = ALPHABET[(v >> 18) & 63];
		out[o++] = ALPHABET[(v >> 12) & 63];
		out[o++] = i + 1 < n ? ALPHABET[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? ALPHABET[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

long b64_decode(const char *in, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n && in[i] != '='; i++) {
		const char *d = in[i] ? memchr(ALPHABET, in[i], 64) : NULL;
		if (!d)
			return -1;
		acc = (acc << 6) | (unsigned)(d - ALPHABET);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o + 1 >= cap)
				return -1;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (cap == 0)
		return -1;
	out[o] = '\0';
	return (long)o;
}
