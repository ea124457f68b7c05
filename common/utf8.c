#include "utf8.h"

#include <stdint.h>

int utf8_validate(const void *buf, size_t len, size_t *bad_off)
{
	const uint8_t *s = buf;
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c >= 0x01 && c <= 0x7f) {
			i++;
			continue;
		}
		size_t need;
		uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			if (c == 0xe0)
				lo = 0xa0; /* below: overlong */
			else if (c == 0xed)
				hi = 0x9f; /* above: surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			if (c == 0xf0)
				lo = 0x90; /* below: overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above: beyond U+10FFFF */
		} else {
			/* NUL, a continuation byte with no lead, C0/C1 (overlong), F5..FF. */
			goto bad_here;
		}
		if (i + 1 >= len)
			goto bad_here; /* truncated at the end: report the lead byte */
		if (s[i + 1] < lo || s[i + 1] > hi) {
			i += 1;
			goto bad_here;
		}
		for (size_t k = 2; k <= need; k++) {
			if (i + k >= len)
				goto bad_here;
			if (s[i + k] < 0x80 || s[i + k] > 0xbf) {
				i += k;
				goto bad_here;
			}
		}
		i += need + 1;
	}
	return 0;
bad_here:
	if (bad_off)
		*bad_off = i;
	return -1;
}

size_t utf8_codepoints(const char *buf, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (((uint8_t)buf[i] & 0xc0) != 0x80)
			n++;
	return n;
}
