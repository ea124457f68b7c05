/* Compact JSON text of cJSON trees (see jsonout.h). */
#include "jsonout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSONOUT_DEPTH_MAX 64

struct out {
	char *p;
	size_t len, cap;
	int failed;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 256;
		while (o->len + n + 1 > cap)
			cap *= 2;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->failed = 1;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

void jsonout_number(double d, char *buf, size_t len)
{
	if (isnan(d) || isinf(d)) {
		snprintf(buf, len, "null");
		return;
	}
	if (d == trunc(d) && fabs(d) <= 9007199254740992.0) {
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
		if (v < 0 && k + 1 < len)
			buf[k++] = '-';
		while (n > 0 && k + 1 < len)
			buf[k++] = tmp[--n];
		buf[k] = '\0';
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

static void put_string(struct out *o, const char *s)
{
	put(o, "\"", 1);
	const char *run = s;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(o, run, (size_t)(p - run));
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
		put(o, esc, strlen(esc));
		run = p + 1;
	}
	put(o, run, strlen(run));
	put(o, "\"", 1);
}

static void put_value(struct out *o, const cJSON *v, int depth)
{
	if (depth > JSONOUT_DEPTH_MAX) {
		o->failed = 1;
		return;
	}
	switch (v->type & 0xFF) {
	case cJSON_NULL:
		put(o, "null", 4);
		break;
	case cJSON_False:
		put(o, "false", 5);
		break;
	case cJSON_True:
		put(o, "true", 4);
		break;
	case cJSON_Number: {
		char num[40];
		jsonout_number(v->valuedouble, num, sizeof(num));
		put(o, num, strlen(num));
		break;
	}
	case cJSON_String:
		if (!v->valuestring) {
			o->failed = 1;
			return;
		}
		put_string(o, v->valuestring);
		break;
	case cJSON_Raw:
		if (!v->valuestring) {
			o->failed = 1;
			return;
		}
		put(o, v->valuestring, strlen(v->valuestring));
		break;
	case cJSON_Array:
	case cJSON_Object: {
		int obj = (v->type & 0xFF) == cJSON_Object;
		put(o, obj ? "{" : "[", 1);
		for (const cJSON *c = v->child; c && !o->failed; c = c->next) {
			if (c != v->child)
				put(o, ",", 1);
			if (obj) {
				if (!c->string) {
					o->failed = 1;
					return;
				}
				put_string(o, c->string);
				put(o, ":", 1);
			}
			put_value(o, c, depth + 1);
		}
		put(o, obj ? "}" : "]", 1);
		break;
	}
	default:
		o->failed = 1;
		break;
	}
}

char *jsonout_print(const cJSON *v)
{
	if (!v)
		return NULL;
	struct out o = { 0 };
	put_value(&o, v, 0);
	if (o.failed || !o.p) {
		free(o.p);
		return NULL;
	}
	return o.p;
}
