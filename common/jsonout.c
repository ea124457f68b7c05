/* Compact JSON text of cJSON trees (see jsonout.h). */
#include "jsonout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSONOUT_DEPTH_MAX 64

void jsonout_number(double d, char *buf, size_t len)
{
	if (isnan(d) || isinf(d)) {
		snprintf(buf, len, "null");
		return;
	}
	if (d == trunc(d) && fabs(d) < 1e17) {
		/* integral: its digits, without printf's floating-point path */
		long long v = (long long)d;
		unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
		char tmp[24];
		size_t n = 0;
		do {
			tmp[n++] = (char)('0' + u % 10);
			u /= 10;
		} while (u);
		size_t k = 0;
		if ((v < 0 || signbit(d)) && k + 1 < len) /* -0 too: read back bit for bit */
			buf[k++] = '-';
		while (n > 0 && k + 1 < len)
			buf[k++] = tmp[--n];
		buf[k] = '\0';
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	for (char *c = buf; *c; c++)
		if (*c == ',')
			*c = '.'; /* a program that set LC_NUMERIC must still write JSON */
}

void jsonout_string(struct strbuf *b, const char *s)
{
	strbuf_put(b, "\"", 1);
	const char *run = s;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		strbuf_put(b, run, (size_t)(p - run));
		char esc[8];
		switch (c) {
		case '"':
		case '\\':
			snprintf(esc, sizeof(esc), "\\%c", c);
			break;
		case '\b':
			snprintf(esc, sizeof(esc), "\\b");
			break;
		case '\f':
			snprintf(esc, sizeof(esc), "\\f");
			break;
		case '\n':
			snprintf(esc, sizeof(esc), "\\n");
			break;
		case '\r':
			snprintf(esc, sizeof(esc), "\\r");
			break;
		case '\t':
			snprintf(esc, sizeof(esc), "\\t");
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			break;
		}
		strbuf_puts(b, esc);
		run = p + 1;
	}
	strbuf_puts(b, run);
	strbuf_put(b, "\"", 1);
}

static int put_value(struct strbuf *b, const cJSON *v, int depth)
{
	if (depth > JSONOUT_DEPTH_MAX)
		return -1;
	switch (v->type & 0xFF) {
	case cJSON_NULL:
		strbuf_put(b, "null", 4);
		return 0;
	case cJSON_False:
		strbuf_put(b, "false", 5);
		return 0;
	case cJSON_True:
		strbuf_put(b, "true", 4);
		return 0;
	case cJSON_Number: {
		char num[40];
		jsonout_number(v->valuedouble, num, sizeof(num));
		strbuf_puts(b, num);
		return 0;
	}
	case cJSON_String:
		if (!v->valuestring)
			return -1;
		jsonout_string(b, v->valuestring);
		return 0;
	case cJSON_Raw:
		if (!v->valuestring)
			return -1;
		strbuf_puts(b, v->valuestring);
		return 0;
	case cJSON_Array:
	case cJSON_Object: {
		int obj = (v->type & 0xFF) == cJSON_Object;
		strbuf_put(b, obj ? "{" : "[", 1);
		for (const cJSON *c = v->child; c; c = c->next) {
			if (c != v->child)
				strbuf_put(b, ",", 1);
			if (obj) {
				if (!c->string)
					return -1;
				jsonout_string(b, c->string);
				strbuf_put(b, ":", 1);
			}
			if (put_value(b, c, depth + 1) != 0)
				return -1;
		}
		strbuf_put(b, obj ? "}" : "]", 1);
		return 0;
	}
	default:
		return -1;
	}
}

int jsonout_value(struct strbuf *b, const cJSON *v)
{
	return v ? put_value(b, v, 0) : -1;
}

char *jsonout_print(const cJSON *v)
{
	struct strbuf b = { 0 };
	if (jsonout_value(&b, v) != 0 || b.failed || !b.p) {
		strbuf_free(&b);
		return NULL;
	}
	return b.p;
}
