#include "jsoncheck.h"

#include <stdio.h>
#include <string.h>

struct scan {
	const char *s;
	size_t len;
	size_t pos;
	const char *why;
};

static void skip_ws(struct scan *sc)
{
	while (sc->pos < sc->len) {
		char c = sc->s[sc->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		sc->pos++;
	}
}

static int fail(struct scan *sc, const char *why)
{
	sc->why = why;
	return -1;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads the 4 hex digits of a \u escape starting at pos; advances past them. */
static int read_u4(struct scan *sc, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of input");
		int h = hex_value(sc->s[sc->pos]);
		if (h < 0)
			return fail(sc, "invalid \\u escape (needs 4 hex digits)");
		v = v << 4 | (unsigned)h;
		sc->pos++;
	}
	*out = v;
	return 0;
}

/* A string starting at the opening quote at pos; on success pos is past the closing quote. */
static int scan_string(struct scan *sc)
{
	sc->pos++;
	for (;;) {
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of input");
		unsigned char c = (unsigned char)sc->s[sc->pos];
		if (c == '"') {
			sc->pos++;
			return 0;
		}
		if (c < 0x20)
			return fail(sc, "control character in string (must be escaped)");
		if (c != '\\') {
			sc->pos++;
			continue;
		}
		size_t esc = sc->pos;
		sc->pos++;
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of input");
		c = (unsigned char)sc->s[sc->pos];
		if (strchr("\"\\/bfnrt", c) && c != '\0') {
			sc->pos++;
			continue;
		}
		if (c != 'u') {
			sc->pos = esc;
			return fail(sc, "invalid escape in string");
		}
		sc->pos++;
		unsigned u;
		if (read_u4(sc, &u) < 0)
			return -1;
		if (u == 0) {
			sc->pos = esc;
			return fail(sc, "\\u0000 is not allowed in strings");
		}
		if (u >= 0xdc00 && u <= 0xdfff) {
			sc->pos = esc;
			return fail(sc, "unpaired low surrogate in \\u escape");
		}
		if (u >= 0xd800 && u <= 0xdbff) {
			if (sc->pos + 1 >= sc->len)
				return fail(sc, "unexpected end of input");
			if (sc->s[sc->pos] != '\\' || sc->s[sc->pos + 1] != 'u') {
				sc->pos = esc;
				return fail(sc, "unpaired high surrogate in \\u escape");
			}
			sc->pos += 2;
			unsigned lo;
			if (read_u4(sc, &lo) < 0)
				return -1;
			if (lo < 0xdc00 || lo > 0xdfff) {
				sc->pos = esc;
				return fail(sc, "unpaired high surrogate in \\u escape");
			}
		}
	}
}

/* A number per RFC 8259 section 6, starting at pos. */
static int scan_number(struct scan *sc)
{
	size_t start = sc->pos;
	if (sc->s[sc->pos] == '-')
		sc->pos++;
	if (sc->pos >= sc->len)
		return fail(sc, "unexpected end of input");
	if (sc->s[sc->pos] == '0') {
		sc->pos++;
		if (sc->pos < sc->len && is_digit(sc->s[sc->pos]))
			return fail(sc, "leading zero in number");
	} else if (is_digit(sc->s[sc->pos])) {
		while (sc->pos < sc->len && is_digit(sc->s[sc->pos]))
			sc->pos++;
	} else {
		return fail(sc, "invalid number");
	}
	if (sc->pos < sc->len && sc->s[sc->pos] == '.') {
		sc->pos++;
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of input");
		if (!is_digit(sc->s[sc->pos]))
			return fail(sc, "invalid number (digit expected after '.')");
		while (sc->pos < sc->len && is_digit(sc->s[sc->pos]))
			sc->pos++;
	}
	if (sc->pos < sc->len && (sc->s[sc->pos] == 'e' || sc->s[sc->pos] == 'E')) {
		sc->pos++;
		if (sc->pos < sc->len && (sc->s[sc->pos] == '+' || sc->s[sc->pos] == '-'))
			sc->pos++;
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of input");
		if (!is_digit(sc->s[sc->pos]))
			return fail(sc, "invalid number (digit expected in exponent)");
		while (sc->pos < sc->len && is_digit(sc->s[sc->pos]))
			sc->pos++;
	}
	if (sc->pos - start > JSONCHECK_NUMBER_MAX) {
		sc->pos = start;
		return fail(sc, "number longer than 63 characters");
	}
	return 0;
}

static int scan_literal(struct scan *sc, const char *word)
{
	size_t n = strlen(word);
	for (size_t i = 0; i < n; i++, sc->pos++) {
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of input");
		if (sc->s[sc->pos] != word[i])
			return fail(sc, "expected a value");
	}
	return 0;
}

/* An object member name and its colon; pos is at the name's opening quote (after whitespace). */
static int scan_member_name(struct scan *sc)
{
	if (sc->pos >= sc->len)
		return fail(sc, "unexpected end of input");
	if (sc->s[sc->pos] != '"')
		return fail(sc, "expected a member name in double quotes");
	if (scan_string(sc) < 0)
		return -1;
	skip_ws(sc);
	if (sc->pos >= sc->len)
		return fail(sc, "unexpected end of input");
	if (sc->s[sc->pos] != ':')
		return fail(sc, "expected ':'");
	sc->pos++;
	return 0;
}

static int scan(struct scan *sc)
{
	char stack[JSONCHECK_MAX_DEPTH]; /* '{' or '[' per open container */
	size_t depth = 0;

	skip_ws(sc);
	for (;;) {
		/* A value is expected at pos. */
		skip_ws(sc);
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of input");
		char c = sc->s[sc->pos];
		if (c == '{' || c == '[') {
			if (depth == JSONCHECK_MAX_DEPTH)
				return fail(sc, "nested deeper than 512 levels");
			stack[depth++] = c;
			sc->pos++;
			skip_ws(sc);
			if (sc->pos >= sc->len)
				return fail(sc, "unexpected end of input");
			if (sc->s[sc->pos] == (c == '{' ? '}' : ']')) {
				sc->pos++;
				depth--;
			} else {
				if (c == '{' && scan_member_name(sc) < 0)
					return -1;
				continue;
			}
		} else if (c == '"') {
			if (scan_string(sc) < 0)
				return -1;
		} else if (c == '-' || is_digit(c)) {
			if (scan_number(sc) < 0)
				return -1;
		} else if (c == 't') {
			if (scan_literal(sc, "true") < 0)
				return -1;
		} else if (c == 'f') {
			if (scan_literal(sc, "false") < 0)
				return -1;
		} else if (c == 'n') {
			if (scan_literal(sc, "null") < 0)
				return -1;
		} else {
			return fail(sc, "expected a value");
		}

		/* After a complete value: close containers or move to the next element. */
		for (;;) {
			skip_ws(sc);
			if (depth == 0) {
				if (sc->pos != sc->len)
					return fail(sc, "unexpected data after the JSON value");
				return 0;
			}
			if (sc->pos >= sc->len)
				return fail(sc, "unexpected end of input");
			char open = stack[depth - 1];
			char d = sc->s[sc->pos];
			if (d == ',') {
				sc->pos++;
				if (open == '{') {
					skip_ws(sc);
					if (scan_member_name(sc) < 0)
						return -1;
				}
				break;
			}
			if (d == (open == '{' ? '}' : ']')) {
				sc->pos++;
				depth--;
				continue;
			}
			return fail(sc, open == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
		}
	}
}

int jsoncheck_validate(const char *buf, size_t len, size_t *err_off, char *why, size_t whylen)
{
	struct scan sc = { .s = buf, .len = len, .pos = 0, .why = NULL };
	int rc = scan(&sc);
	if (rc < 0) {
		if (err_off)
			*err_off = sc.pos;
		if (why && whylen)
			snprintf(why, whylen, "%s", sc.why);
	}
	return rc;
}
