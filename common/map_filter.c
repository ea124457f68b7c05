/* Map filters: a small subset of OData $filter, parsed once at load and evaluated per record. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"

#define FILTER_DEPTH_MAX 32

enum fkind { F_AND = 1, F_OR, F_NOT, F_CMP };
enum fop { OP_EQ = 1, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE };

struct map_filter {
	enum fkind kind;
	struct map_filter *l, *r; /* and/or: both; not: l */
	char *field;              /* cmp */
	enum fop op;
	cJSON *lit;
};

struct parser {
	const char *s;
	size_t pos;
	int depth;
	char *err;
	size_t errlen;
	int failed;
};

static void perr(struct parser *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void perr(struct parser *p, size_t at, const char *fmt, ...)
{
	if (p->failed)
		return;
	p->failed = 1;
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "offset %zu: %s", at, why);
}

static int is_ident_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_ident_char(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

static void skip_ws(struct parser *p)
{
	while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r')
		p->pos++;
}

/* Length of the identifier (dots allowed inside, for qualified enum type names) at pos. */
static size_t ident_len(const struct parser *p, int allow_dots)
{
	size_t n = 0;
	const char *s = p->s + p->pos;
	if (!is_ident_start(s[0]))
		return 0;
	while (is_ident_char(s[n]) || (allow_dots && s[n] == '.' && is_ident_start(s[n + 1])))
		n++;
	return n;
}

/* Is the word at pos exactly `kw` (followed by a non-identifier character)? */
static int at_keyword(const struct parser *p, const char *kw)
{
	size_t n = strlen(kw);
	return strncmp(p->s + p->pos, kw, n) == 0 && !is_ident_char(p->s[p->pos + n]);
}

static struct map_filter *node_new(struct parser *p, enum fkind kind)
{
	struct map_filter *f = calloc(1, sizeof(*f));
	if (!f)
		perr(p, p->pos, "out of memory");
	else
		f->kind = kind;
	return f;
}

/* 'text' with '' for a quote; pos at the opening quote. Returns a new cJSON string or NULL. */
static cJSON *parse_string(struct parser *p)
{
	size_t start = p->pos;
	size_t cap = strlen(p->s + start) + 1, n = 0;
	char *buf = malloc(cap);
	if (!buf) {
		perr(p, start, "out of memory");
		return NULL;
	}
	p->pos++;
	for (;;) {
		char c = p->s[p->pos];
		if (c == '\0') {
			free(buf);
			perr(p, start, "unterminated string literal");
			return NULL;
		}
		if (c == '\'') {
			if (p->s[p->pos + 1] == '\'') {
				buf[n++] = '\'';
				p->pos += 2;
				continue;
			}
			p->pos++;
			break;
		}
		buf[n++] = c;
		p->pos++;
	}
	buf[n] = '\0';
	cJSON *s = cJSON_CreateString(buf);
	free(buf);
	if (!s)
		perr(p, start, "out of memory");
	return s;
}

static cJSON *parse_literal(struct parser *p)
{
	skip_ws(p);
	size_t start = p->pos;
	char c = p->s[p->pos];
	if (c == '\'')
		return parse_string(p);
	if (c == '-' || (c >= '0' && c <= '9')) {
		size_t n = 0;
		const char *s = p->s + p->pos;
		if (s[n] == '-')
			n++;
		if (!(s[n] >= '0' && s[n] <= '9')) {
			perr(p, start, "expected a digit after '-'");
			return NULL;
		}
		while ((s[n] >= '0' && s[n] <= '9') || s[n] == '.' || s[n] == 'e' || s[n] == 'E' ||
		       ((s[n] == '+' || s[n] == '-') && (s[n - 1] == 'e' || s[n - 1] == 'E')))
			n++;
		if (n > 63) {
			perr(p, start, "number literal longer than 63 characters");
			return NULL;
		}
		char num[64];
		memcpy(num, s, n);
		num[n] = '\0';
		char *end = NULL;
		errno = 0;
		double d = strtod(num, &end);
		if (errno || *end || !isfinite(d) || is_ident_char(s[n])) {
			perr(p, start, "malformed number literal '%s'", num);
			return NULL;
		}
		p->pos += n;
		cJSON *v = cJSON_CreateNumber(d);
		if (!v)
			perr(p, start, "out of memory");
		return v;
	}
	size_t n = ident_len(p, 1);
	if (n == 0) {
		perr(p, start, "expected a literal ('text', number, true, false or null)");
		return NULL;
	}
	if (p->s[p->pos + n] == '\'') {
		/* Enum literal, e.g. Microsoft.Dynamics.DataEntities.NoYes'Yes': compared by member name. */
		p->pos += n;
		return parse_string(p);
	}
	cJSON *v = NULL;
	if (n == 4 && strncmp(p->s + p->pos, "true", 4) == 0)
		v = cJSON_CreateTrue();
	else if (n == 5 && strncmp(p->s + p->pos, "false", 5) == 0)
		v = cJSON_CreateFalse();
	else if (n == 4 && strncmp(p->s + p->pos, "null", 4) == 0)
		v = cJSON_CreateNull();
	else {
		perr(p, start, "expected a literal ('text', number, true, false or null), got '%.*s'", (int)n,
		     p->s + p->pos);
		return NULL;
	}
	if (!v)
		perr(p, start, "out of memory");
	p->pos += n;
	return v;
}

static struct map_filter *parse_or(struct parser *p);

static struct map_filter *parse_comparison(struct parser *p)
{
	skip_ws(p);
	size_t start = p->pos;
	size_t n = ident_len(p, 0);
	if (n == 0 || at_keyword(p, "and") || at_keyword(p, "or") || at_keyword(p, "not")) {
		if (p->s[p->pos] == '\0')
			perr(p, start, "unexpected end of filter, expected a field name");
		else
			perr(p, start, "expected a field name or '('");
		return NULL;
	}
	if (n > MAP_IDENT_MAX) {
		perr(p, start, "field name longer than %d characters", MAP_IDENT_MAX);
		return NULL;
	}
	struct map_filter *f = node_new(p, F_CMP);
	if (!f)
		return NULL;
	f->field = strndup(p->s + p->pos, n);
	if (!f->field) {
		perr(p, start, "out of memory");
		map_filter_free(f);
		return NULL;
	}
	p->pos += n;
	skip_ws(p);
	static const struct {
		const char *kw;
		enum fop op;
	} ops[] = { { "eq", OP_EQ }, { "ne", OP_NE }, { "gt", OP_GT },
		    { "ge", OP_GE }, { "lt", OP_LT }, { "le", OP_LE } };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (at_keyword(p, ops[i].kw)) {
			f->op = ops[i].op;
			p->pos += 2;
			break;
		}
	if (!f->op) {
		perr(p, p->pos, "expected an operator (eq, ne, gt, ge, lt, le) after '%s'", f->field);
		map_filter_free(f);
		return NULL;
	}
	f->lit = parse_literal(p);
	if (!f->lit) {
		map_filter_free(f);
		return NULL;
	}
	return f;
}

static struct map_filter *parse_unary(struct parser *p)
{
	skip_ws(p);
	if (++p->depth > FILTER_DEPTH_MAX) {
		perr(p, p->pos, "nested deeper than %d levels", FILTER_DEPTH_MAX);
		return NULL;
	}
	struct map_filter *f = NULL;
	if (at_keyword(p, "not")) {
		p->pos += 3;
		struct map_filter *inner = parse_unary(p);
		if (inner) {
			f = node_new(p, F_NOT);
			if (f)
				f->l = inner;
			else
				map_filter_free(inner);
		}
	} else if (p->s[p->pos] == '(') {
		size_t open = p->pos++;
		f = parse_or(p);
		skip_ws(p);
		if (f && p->s[p->pos] != ')') {
			perr(p, p->pos, "expected ')' to close the '(' at offset %zu", open);
			map_filter_free(f);
			f = NULL;
		} else if (f) {
			p->pos++;
		}
	} else {
		f = parse_comparison(p);
	}
	p->depth--;
	return f;
}

static struct map_filter *parse_binary(struct parser *p, const char *kw, enum fkind kind,
				       struct map_filter *(*sub)(struct parser *))
{
	struct map_filter *left = sub(p);
	while (left) {
		skip_ws(p);
		if (!at_keyword(p, kw))
			break;
		p->pos += strlen(kw);
		struct map_filter *right = sub(p);
		if (!right) {
			map_filter_free(left);
			return NULL;
		}
		struct map_filter *f = node_new(p, kind);
		if (!f) {
			map_filter_free(left);
			map_filter_free(right);
			return NULL;
		}
		f->l = left;
		f->r = right;
		left = f;
	}
	return left;
}

static struct map_filter *parse_and(struct parser *p)
{
	return parse_binary(p, "and", F_AND, parse_unary);
}

static struct map_filter *parse_or(struct parser *p)
{
	return parse_binary(p, "or", F_OR, parse_and);
}

int map_filter_parse(const char *text, struct map_filter **out, char *err, size_t errlen)
{
	*out = NULL;
	if (strlen(text) > MAP_FILTER_MAX) {
		snprintf(err, errlen, "longer than %d bytes", MAP_FILTER_MAX);
		return -1;
	}
	struct parser p = { .s = text, .err = err, .errlen = errlen };
	struct map_filter *f = parse_or(&p);
	if (f) {
		skip_ws(&p);
		if (p.s[p.pos] != '\0') {
			perr(&p, p.pos, "unexpected '%.20s' after a complete expression", p.s + p.pos);
			map_filter_free(f);
			return -1;
		}
		*out = f;
		return 0;
	}
	if (!p.failed)
		perr(&p, p.pos, "invalid filter");
	return -1;
}

void map_filter_free(struct map_filter *f)
{
	if (!f)
		return;
	map_filter_free(f->l);
	map_filter_free(f->r);
	free(f->field);
	cJSON_Delete(f->lit);
	free(f);
}

/* JSON scalar equality; absent and null are the same. */
static int scalar_equal(const cJSON *a, const cJSON *b)
{
	int an = !a || cJSON_IsNull(a), bn = !b || cJSON_IsNull(b);
	if (an || bn)
		return an && bn;
	if (cJSON_IsBool(a) && cJSON_IsBool(b))
		return cJSON_IsTrue(a) == cJSON_IsTrue(b);
	if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
		return a->valuedouble == b->valuedouble;
	if (cJSON_IsString(a) && cJSON_IsString(b))
		return strcmp(a->valuestring, b->valuestring) == 0;
	return 0;
}

/* <0, 0, >0, or 2 when the two cannot be ordered (different types, null, booleans). */
static int scalar_order(const cJSON *a, const cJSON *b)
{
	if (!a || !b)
		return 2;
	if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
		return a->valuedouble < b->valuedouble ? -1 : a->valuedouble > b->valuedouble;
	if (cJSON_IsString(a) && cJSON_IsString(b)) {
		int c = strcmp(a->valuestring, b->valuestring);
		return c < 0 ? -1 : c > 0;
	}
	return 2;
}

int map_filter_match(const struct map_filter *f, const cJSON *record)
{
	if (!f)
		return 1;
	switch (f->kind) {
	case F_AND:
		return map_filter_match(f->l, record) && map_filter_match(f->r, record);
	case F_OR:
		return map_filter_match(f->l, record) || map_filter_match(f->r, record);
	case F_NOT:
		return !map_filter_match(f->l, record);
	case F_CMP:
		break;
	}
	const cJSON *v = record ? cJSON_GetObjectItemCaseSensitive(record, f->field) : NULL;
	if (f->op == OP_EQ)
		return scalar_equal(v, f->lit);
	if (f->op == OP_NE)
		return !scalar_equal(v, f->lit);
	int o = scalar_order(v, f->lit);
	if (o == 2)
		return 0;
	switch (f->op) {
	case OP_GT:
		return o > 0;
	case OP_GE:
		return o >= 0;
	case OP_LT:
		return o < 0;
	case OP_LE:
		return o <= 0;
	default:
		return 0;
	}
}
