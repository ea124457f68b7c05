#ifndef DW_UTF8_H
#define DW_UTF8_H

#include <stddef.h>

/*
 * Strict UTF-8 (RFC 3629 / Unicode 15 table 3-7) for text that arrives from outside: Kafka
 * payloads, HTTP bodies, strings about to be published.
 */

/*
 * Checks that buf[0..len) is well-formed UTF-8 text: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence, no stray continuation byte,
 * and no NUL byte. Borrows buf for the call; buf need not be NUL-terminated.
 * Returns 0, or -1 with *bad_off (when not NULL) set to the offset of the first byte that
 * cannot start or continue a valid character (for a truncated sequence at the end, the offset of
 * its lead byte).
 */
int utf8_validate(const void *buf, size_t len, size_t *bad_off) __attribute__((warn_unused_result));

/* Number of code points in buf[0..len), which must already have passed utf8_validate. */
size_t utf8_codepoints(const char *buf, size_t len);

#endif
