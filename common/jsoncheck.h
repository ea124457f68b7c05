#ifndef DW_JSONCHECK_H
#define DW_JSONCHECK_H

#include <stddef.h>

/*
 * Strict JSON syntax check (RFC 8259) for payloads from outside, run before cJSON parses them.
 * cJSON is lenient where a strict consumer must not be: it accepts leading zeros ("01"), a
 * trailing dot ("1."), raw control characters inside strings, and it silently truncates strings
 * at an escaped NUL ("\u0000"). It also does not say where a document went wrong without its
 * global, thread-unsafe error pointer. This check rejects all of that and names the byte offset.
 *
 * What it accepts is exactly one JSON value with optional surrounding whitespace, with these
 * additional limits chosen so that whatever passes also parses faithfully with cJSON:
 *   - no "\u0000" escape (cJSON's C strings cannot hold NUL),
 *   - numbers at most JSONCHECK_NUMBER_MAX characters (cJSON's number buffer),
 *   - nesting at most JSONCHECK_MAX_DEPTH arrays/objects deep (cJSON stops at 1000).
 * Bytes >= 0x80 are not examined here: validate the encoding first (utf8_validate).
 */

#define JSONCHECK_MAX_DEPTH 512
#define JSONCHECK_NUMBER_MAX 63

/*
 * Checks buf[0..len) (not NUL-terminated). Borrows buf for the call; allocates nothing.
 * Returns 0 when the text is one valid JSON value; otherwise -1, with *err_off set to the byte
 * offset of the first offending byte (len when the input ends too early) and `why` filled with a
 * short reason such as "unexpected end of input" or "expected ',' or '}'".
 */
int jsoncheck_validate(const char *buf, size_t len, size_t *err_off, char *why, size_t whylen)
	__attribute__((warn_unused_result));

#endif
