#include "query.h"

#include "errbuf.h"
#include "strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "odata.h"


/* ---- the $filter tree ---- */

enum node_kind { N_AND, N_OR, N_NOT, N_CMP, N_FUNC };
enum cmp_op { OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE };
enum lit_kind { L_NULL, L_STRING, L_INT, L_DECIMAL, L_BOOL, L_GUID, L_DATE, L_DATETIME, L_ENUM };
enum func_kind { F_CONTAINS, F_STARTSWITH, F_ENDSWITH };

struct lit {
	enum lit_kind kind;
	char *text;      /* string content (unquoted), number, true/false, guid (lower case), date, datetime,
			  * or enum member */
	char *enum_type; /* L_ENUM only */
};

struct query_expr {
	enum node_kind kind;
	struct query_expr *l, *r; /* N_AND, N_OR: both; N_NOT: l */
	char *field;              /* N_CMP, N_FUNC */
	enum cmp_op op;           /* N_CMP */
	enum func_kind func;      /* N_FUNC */
	struct lit lit;           /* N_CMP, N_FUNC (a string) */
	size_t offset;            /* where the comparison starts in the decoded $filter */
};

static const char *const OP_NAMES[] = { "eq", "ne", "gt", "ge", "lt", "le" };
static const char *const OP_KINDS[] = { "Equal", "NotEqual", "GreaterThan", "GreaterThanOrEqual", "LessThan",
					"LessThanOrEqual" };
static const char *const OP_SQL[] = { "=", "<>", ">", ">=", "<", "<=" };
static const char *const FUNC_NAMES[] = { "contains", "startswith", "endswith" };

static void expr_free(struct query_expr *e)
{
	if (!e)
		return;
	expr_free(e->l);
	expr_free(e->r);
	free(e->field);
	free(e->lit.text);
	free(e->lit.enum_type);
	free(e);
}

/* ---- tokenizer ---- */

enum tok_kind {
	T_END,
	T_LPAREN,
	T_RPAREN,
	T_COMMA,
	T_IDENT, /* field names, keywords, function names */
	T_LIT,
};

struct tok {
	enum tok_kind kind;
	size_t off;
	size_t len;     /* T_IDENT: length of the name */
	struct lit lit; /* T_LIT: owned until moved */
};

struct parser {
	const char *s;
	size_t len;
	size_t pos;
	struct tok t; /* current token */
	int depth;
	int nodes;
	enum query_flavour flavour;
	char *errbuf;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) static int perr(struct parser *p, size_t off, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	errbuf_set(p->errbuf, p->errlen, "Syntax error at position %zu in $filter: %s", off, what);
	return -1;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_ident_char(char c)
{
	return is_alpha(c) || is_digit(c) || c == '_';
}

static int is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int ndigits(const char *s, size_t avail, size_t n)
{
	if (avail < n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]))
			return 0;
	return 1;
}

static int num2(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

static int days_in_month(int y, int m)
{
	static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return d[m - 1];
}

/* Matches YYYY-MM-DD at s; returns 10 or 0. Sets *bad when the shape matches but the date does not
 * exist. */
static size_t match_date(const char *s, size_t avail, int *bad)
{
	if (!ndigits(s, avail, 4) || avail < 10 || s[4] != '-' || !ndigits(s + 5, 2, 2) || s[7] != '-' ||
	    !ndigits(s + 8, 2, 2))
		return 0;
	int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + num2(s + 2);
	int m = num2(s + 5), d = num2(s + 8);
	if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
		*bad = 1;
	return 10;
}

/* Matches THH:MM[:SS[.fff]](Z|+HH:MM|-HH:MM) after a date; returns its length or 0. */
static size_t match_time(const char *s, size_t avail, int *bad)
{
	size_t i = 0;
	if (avail < 6 || (s[0] != 'T' && s[0] != 't') || !ndigits(s + 1, avail - 1, 2) || s[3] != ':' ||
	    !ndigits(s + 4, avail - 4, 2))
		return 0;
	if (num2(s + 1) > 23 || num2(s + 4) > 59)
		*bad = 1;
	i = 6;
	if (i < avail && s[i] == ':') {
		if (!ndigits(s + i + 1, avail - i - 1, 2))
			return 0;
		if (num2(s + i + 1) > 59)
			*bad = 1;
		i += 3;
		if (i < avail && s[i] == '.') {
			size_t j = i + 1;
			while (j < avail && is_digit(s[j]))
				j++;
			if (j == i + 1 || j - i - 1 > 12)
				return 0;
			i = j;
		}
	}
	if (i < avail && (s[i] == 'Z' || s[i] == 'z'))
		return i + 1;
	if (i < avail && (s[i] == '+' || s[i] == '-') && ndigits(s + i + 1, avail - i - 1, 2) && avail >= i + 6 &&
	    s[i + 3] == ':' && ndigits(s + i + 4, 2, 2)) {
		if (num2(s + i + 1) > 14 || num2(s + i + 4) > 59)
			*bad = 1;
		return i + 6;
	}
	return 0;
}

static size_t match_guid(const char *s, size_t avail)
{
	if (avail < 36)
		return 0;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!is_hex(s[i])) {
			return 0;
		}
	}
	return 36;
}

static char *dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static void tok_release(struct tok *t)
{
	if (t->kind == T_LIT) {
		free(t->lit.text);
		free(t->lit.enum_type);
	}
	memset(t, 0, sizeof(*t));
}

static int oom(struct parser *p)
{
	errbuf_set(p->errbuf, p->errlen, "out of memory");
	return -1;
}

/* Reads a quoted string starting at p->pos (a quote) into *out. */
static int read_quoted(struct parser *p, char **out)
{
	size_t start = p->pos, i = p->pos + 1, n = 0;
	char *buf = malloc(p->len - p->pos + 1);
	if (!buf)
		return oom(p);
	for (;;) {
		if (i >= p->len) {
			free(buf);
			return perr(p, start, "unbalanced quote: the string starting here never ends");
		}
		if (p->s[i] == '\'') {
			if (i + 1 < p->len && p->s[i + 1] == '\'') {
				buf[n++] = '\'';
				i += 2;
				continue;
			}
			i++;
			break;
		}
		buf[n++] = p->s[i++];
	}
	buf[n] = '\0';
	p->pos = i;
	*out = buf;
	return 0;
}

/* Advances to the next token in p->t. */
static int next_tok(struct parser *p)
{
	tok_release(&p->t);
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
		p->pos++;
	struct tok *t = &p->t;
	t->off = p->pos;
	if (p->pos >= p->len) {
		t->kind = T_END;
		return 0;
	}
	const char *s = p->s + p->pos;
	size_t avail = p->len - p->pos;
	char c = s[0];
	if (c == '(' || c == ')' || c == ',') {
		t->kind = c == '(' ? T_LPAREN : c == ')' ? T_RPAREN : T_COMMA;
		p->pos++;
		return 0;
	}
	if (c == '\'') {
		t->kind = T_LIT;
		t->lit.kind = L_STRING;
		return read_quoted(p, &t->lit.text);
	}
	size_t n;
	if ((n = match_guid(s, avail)) && (n == avail || !is_ident_char(s[n]))) {
		t->kind = T_LIT;
		t->lit.kind = L_GUID;
		t->lit.text = dupn(s, n);
		if (!t->lit.text)
			return oom(p);
		for (size_t i = 0; i < n; i++)
			if (t->lit.text[i] >= 'A' && t->lit.text[i] <= 'F')
				t->lit.text[i] = (char)(t->lit.text[i] - 'A' + 'a');
		p->pos += n;
		return 0;
	}
	int bad = 0;
	if ((n = match_date(s, avail, &bad))) {
		size_t tn = match_time(s + n, avail - n, &bad);
		size_t total = n + tn;
		if (total < avail && (is_ident_char(s[total]) || s[total] == '.' || s[total] == ':'))
			return perr(p, p->pos, "expected a date (YYYY-MM-DD) or a date-time "
					       "(YYYY-MM-DDThh:mm[:ss[.fff]] with Z or an offset)");
		if (bad)
			return perr(p, p->pos, "'%.*s' is not a valid date or time", (int)total, s);
		t->kind = T_LIT;
		t->lit.kind = tn ? L_DATETIME : L_DATE;
		t->lit.text = dupn(s, total);
		if (!t->lit.text)
			return oom(p);
		p->pos += total;
		return 0;
	}
	if (is_digit(c) || (c == '-' && avail > 1 && is_digit(s[1]))) {
		size_t i = c == '-' ? 1 : 0;
		while (i < avail && is_digit(s[i]))
			i++;
		int dec = 0;
		if (i < avail && s[i] == '.') {
			size_t j = i + 1;
			while (j < avail && is_digit(s[j]))
				j++;
			if (j == i + 1)
				return perr(p, p->pos + i, "expected digits after the decimal point");
			i = j;
			dec = 1;
		}
		if (i < avail && (s[i] == 'e' || s[i] == 'E')) {
			size_t j = i + 1;
			if (j < avail && (s[j] == '+' || s[j] == '-'))
				j++;
			size_t k = j;
			while (k < avail && is_digit(s[k]))
				k++;
			if (k == j)
				return perr(p, p->pos + i, "expected digits in the exponent");
			i = k;
			dec = 1;
		}
		if (i < avail && (is_ident_char(s[i]) || s[i] == '.'))
			return perr(p, p->pos, "'%.*s' is not a valid number, GUID or date", (int)(i + 1), s);
		if (i > 40)
			return perr(p, p->pos, "number literal longer than 40 characters");
		t->kind = T_LIT;
		t->lit.kind = dec ? L_DECIMAL : L_INT;
		t->lit.text = dupn(s, i);
		if (!t->lit.text)
			return oom(p);
		p->pos += i;
		return 0;
	}
	if (is_alpha(c) || c == '_') {
		size_t i = 0;
		int dotted = 0;
		while (i < avail && (is_ident_char(s[i]) || (s[i] == '.' && i + 1 < avail && is_alpha(s[i + 1])))) {
			dotted |= s[i] == '.';
			i++;
		}
		if (i > 256)
			return perr(p, p->pos, "name longer than 256 characters");
		if (i < avail && s[i] == '\'') {
			if (!dotted)
				return perr(p, p->pos, "expected an enum literal Namespace.EnumType'Member', or a space "
						       "before the quote");
			t->kind = T_LIT;
			t->lit.kind = L_ENUM;
			t->lit.enum_type = dupn(s, i);
			if (!t->lit.enum_type)
				return oom(p);
			p->pos += i;
			if (read_quoted(p, &t->lit.text) < 0)
				return -1;
			if (t->lit.text[0] == '\0')
				return perr(p, t->off, "empty enum member name");
			return 0;
		}
		if (dotted)
			return perr(p, p->pos, "'%.*s' is not a property name (expected an enum literal "
					       "Namespace.EnumType'Member')", (int)i, s);
		if (i < avail && s[i] == '/')
			return perr(p, p->pos + i, "navigation paths ('/') are not supported by the emulator");
		t->kind = T_IDENT;
		t->len = i;
		if (i == 4 && memcmp(s, "true", 4) == 0) {
			t->kind = T_LIT;
			t->lit.kind = L_BOOL;
		} else if (i == 5 && memcmp(s, "false", 5) == 0) {
			t->kind = T_LIT;
			t->lit.kind = L_BOOL;
		} else if (i == 4 && memcmp(s, "null", 4) == 0) {
			t->kind = T_LIT;
			t->lit.kind = L_NULL;
		}
		if (t->kind == T_LIT) {
			t->lit.text = dupn(s, i);
			if (!t->lit.text)
				return oom(p);
		}
		p->pos += i;
		return 0;
	}
	if (c > 0x20 && c < 0x7f)
		return perr(p, p->pos, "unexpected character '%c'", c);
	return perr(p, p->pos, "unexpected byte 0x%02X", (unsigned)(unsigned char)c);
}

static int tok_is(const struct parser *p, const char *word)
{
	size_t n = strlen(word);
	return p->t.kind == T_IDENT && p->t.len == n && memcmp(p->s + p->t.off, word, n) == 0;
}

static struct query_expr *new_node(struct parser *p, enum node_kind kind, size_t off)
{
	struct query_expr *e = calloc(1, sizeof(*e));
	if (!e) {
		oom(p);
		return NULL;
	}
	e->kind = kind;
	e->offset = off;
	return e;
}

static int parse_or(struct parser *p, struct query_expr **out);

static int take_lit(struct parser *p, struct lit *dst)
{
	*dst = p->t.lit;
	memset(&p->t.lit, 0, sizeof(p->t.lit));
	p->t.kind = T_END;
	return next_tok(p);
}

/* function '(' field ',' 'string' ')' */
static int parse_func(struct parser *p, enum func_kind f, struct query_expr **out)
{
	size_t off = p->t.off;
	struct query_expr *e = NULL;
	if (p->flavour == QUERY_FO)
		return perr(p, off, "the function %s is not supported by Finance and Operations OData; use a "
				    "wildcard such as Name eq '*text*'", FUNC_NAMES[f]);
	if (++p->nodes > QUERY_NODES_MAX)
		return perr(p, off, "more than %d comparisons", QUERY_NODES_MAX);
	if (next_tok(p) < 0)
		return -1;
	if (p->t.kind != T_LPAREN)
		return perr(p, p->t.off, "expected '(' after %s", FUNC_NAMES[f]);
	if (next_tok(p) < 0)
		return -1;
	if (p->t.kind != T_IDENT)
		return perr(p, p->t.off, "expected a property name as the first argument of %s", FUNC_NAMES[f]);
	e = new_node(p, N_FUNC, off);
	if (!e)
		return -1;
	e->func = f;
	e->field = dupn(p->s + p->t.off, p->t.len);
	if (!e->field)
		goto fail_oom;
	if (next_tok(p) < 0)
		goto fail;
	if (p->t.kind != T_COMMA) {
		perr(p, p->t.off, "expected ',' in %s(property,'text')", FUNC_NAMES[f]);
		goto fail;
	}
	if (next_tok(p) < 0)
		goto fail;
	if (p->t.kind != T_LIT || p->t.lit.kind != L_STRING) {
		perr(p, p->t.off, "expected a string literal as the second argument of %s", FUNC_NAMES[f]);
		goto fail;
	}
	if (take_lit(p, &e->lit) < 0)
		goto fail;
	if (p->t.kind != T_RPAREN) {
		perr(p, p->t.off, "expected ')' to close %s(", FUNC_NAMES[f]);
		goto fail;
	}
	if (next_tok(p) < 0)
		goto fail;
	*out = e;
	return 0;
fail_oom:
	oom(p);
fail:
	expr_free(e);
	return -1;
}

static int parse_primary(struct parser *p, struct query_expr **out)
{
	*out = NULL;
	if (p->t.kind == T_LPAREN) {
		size_t off = p->t.off;
		if (++p->depth > QUERY_DEPTH_MAX)
			return perr(p, off, "nesting deeper than %d levels", QUERY_DEPTH_MAX);
		if (next_tok(p) < 0)
			return -1;
		struct query_expr *e = NULL;
		if (parse_or(p, &e) < 0)
			return -1;
		if (p->t.kind != T_RPAREN) {
			expr_free(e);
			return perr(p, p->t.off, "expected ')' to close the '(' at position %zu", off);
		}
		p->depth--;
		if (next_tok(p) < 0) {
			expr_free(e);
			return -1;
		}
		*out = e;
		return 0;
	}
	if (p->t.kind == T_END)
		return perr(p, p->t.off, "expected a comparison, but the filter ended");
	if (p->t.kind != T_IDENT)
		return perr(p, p->t.off, "expected a property name, a function or '('");
	{
		/* a name followed by '(' is a function call */
		size_t q = p->pos;
		while (q < p->len && (p->s[q] == ' ' || p->s[q] == '\t'))
			q++;
		if (q < p->len && p->s[q] == '(') {
			for (int f = 0; f < 3; f++)
				if (tok_is(p, FUNC_NAMES[f]))
					return parse_func(p, (enum func_kind)f, out);
			return perr(p, p->t.off, "unknown or unsupported function '%.*s' (supported: %s)", (int)p->t.len,
				    p->s + p->t.off,
				    p->flavour == QUERY_CE ? "contains, startswith, endswith" : "none");
		}
	}
	size_t off = p->t.off;
	if (tok_is(p, "and") || tok_is(p, "or") || tok_is(p, "eq") || tok_is(p, "ne") || tok_is(p, "gt") ||
	    tok_is(p, "ge") || tok_is(p, "lt") || tok_is(p, "le"))
		return perr(p, off, "expected a property name, found the operator '%.*s'", (int)p->t.len,
			    p->s + off);
	if (++p->nodes > QUERY_NODES_MAX)
		return perr(p, off, "more than %d comparisons", QUERY_NODES_MAX);
	struct query_expr *e = new_node(p, N_CMP, off);
	if (!e)
		return -1;
	e->field = dupn(p->s + p->t.off, p->t.len);
	if (!e->field) {
		expr_free(e);
		return oom(p);
	}
	if (next_tok(p) < 0)
		goto fail;
	int op = -1;
	for (int i = 0; i < 6; i++)
		if (tok_is(p, OP_NAMES[i]))
			op = i;
	if (op < 0) {
		if (tok_is(p, "has") || tok_is(p, "in"))
			perr(p, p->t.off, "the operator '%.*s' is not supported", (int)p->t.len, p->s + p->t.off);
		else if (tok_is(p, "add") || tok_is(p, "sub") || tok_is(p, "mul") || tok_is(p, "div") ||
			 tok_is(p, "mod"))
			perr(p, p->t.off, "arithmetic operators are not supported by the emulator");
		else
			perr(p, p->t.off, "expected a comparison operator (eq, ne, gt, ge, lt, le) after '%s'",
			     e->field);
		goto fail;
	}
	e->op = (enum cmp_op)op;
	if (next_tok(p) < 0)
		goto fail;
	if (p->t.kind != T_LIT) {
		perr(p, p->t.off, "expected a literal after '%s' (a 'string', number, true, false, null, GUID, date or "
				  "enum literal)", OP_NAMES[op]);
		goto fail;
	}
	if (take_lit(p, &e->lit) < 0)
		goto fail;
	*out = e;
	return 0;
fail:
	expr_free(e);
	return -1;
}

static int parse_unary(struct parser *p, struct query_expr **out)
{
	*out = NULL;
	if (tok_is(p, "not")) {
		size_t off = p->t.off;
		if (++p->depth > QUERY_DEPTH_MAX)
			return perr(p, off, "nesting deeper than %d levels", QUERY_DEPTH_MAX);
		if (next_tok(p) < 0)
			return -1;
		struct query_expr *inner = NULL;
		if (parse_unary(p, &inner) < 0)
			return -1;
		p->depth--;
		struct query_expr *e = new_node(p, N_NOT, off);
		if (!e) {
			expr_free(inner);
			return -1;
		}
		e->l = inner;
		*out = e;
		return 0;
	}
	return parse_primary(p, out);
}

static int parse_binary(struct parser *p, int level, struct query_expr **out)
{
	*out = NULL;
	struct query_expr *l = NULL;
	if ((level == 0 ? parse_binary(p, 1, &l) : parse_unary(p, &l)) < 0)
		return -1;
	const char *word = level == 0 ? "or" : "and";
	while (tok_is(p, word)) {
		size_t off = p->t.off;
		if (next_tok(p) < 0)
			goto fail;
		struct query_expr *r = NULL;
		if ((level == 0 ? parse_binary(p, 1, &r) : parse_unary(p, &r)) < 0)
			goto fail;
		struct query_expr *e = new_node(p, level == 0 ? N_OR : N_AND, off);
		if (!e) {
			expr_free(r);
			goto fail;
		}
		e->l = l;
		e->r = r;
		l = e;
	}
	*out = l;
	return 0;
fail:
	expr_free(l);
	return -1;
}

static int parse_or(struct parser *p, struct query_expr **out)
{
	return parse_binary(p, 0, out);
}

static int parse_filter(const char *s, size_t len, enum query_flavour flavour, struct query_expr **out,
			char *errbuf, size_t errlen)
{
	struct parser p = { .s = s, .len = len, .flavour = flavour, .errbuf = errbuf, .errlen = errlen };
	struct query_expr *e = NULL;
	int rc = -1;
	*out = NULL;
	if (len > QUERY_FILTER_MAX) {
		errbuf_set(errbuf, errlen, "$filter is %zu characters, over the limit of %d", len, QUERY_FILTER_MAX);
		goto out;
	}
	if (next_tok(&p) < 0)
		goto out;
	if (p.t.kind == T_END) {
		errbuf_set(errbuf, errlen, "$filter is empty");
		goto out;
	}
	if (parse_or(&p, &e) < 0)
		goto out;
	if (p.t.kind != T_END) {
		perr(&p, p.t.off, p.t.kind == T_RPAREN ? "unbalanced ')'" : "expected 'and', 'or' or the end of the filter");
		goto out;
	}
	*out = e;
	e = NULL;
	rc = 0;
out:
	tok_release(&p.t);
	expr_free(e);
	return rc;
}

/* ---- query string ---- */

/* Replaces bytes outside printable ASCII by '?' in place (client text echoed in a message). */
static const char *printable(char *s)
{
	for (char *c = s; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	return s;
}

static void query_init(struct query *q)
{
	memset(q, 0, sizeof(*q));
	q->top = -1;
	q->skip = -1;
	q->count = -1;
}

void query_clear(struct query *q)
{
	if (!q)
		return;
	expr_free(q->filter);
	for (size_t i = 0; i < q->nselect; i++)
		free(q->select[i]);
	free(q->select);
	for (size_t i = 0; i < q->norderby; i++)
		free(q->orderby[i].field);
	free(q->orderby);
	free(q->skiptoken);
	free(q->deltatoken);
	for (size_t i = 0; i < q->nextra; i++) {
		free(q->extra[i].name);
		free(q->extra[i].value);
	}
	free(q->extra);
	query_init(q);
}

static int valid_ident(const char *s, size_t n)
{
	if (n == 0 || n > 256 || !(is_alpha(s[0]) || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!is_ident_char(s[i]))
			return 0;
	return 1;
}

/* Splits a comma list; each item trimmed. fn is called with the item; returns -1 to stop. */
typedef int (*item_fn)(void *ctx, const char *item, size_t n, size_t off, char *errbuf, size_t errlen);

static int split_list(const char *v, const char *what, item_fn fn, void *ctx, char *errbuf, size_t errlen)
{
	size_t len = strlen(v), start = 0, count = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && v[i] != ',')
			continue;
		size_t a = start, b = i;
		while (a < b && (v[a] == ' ' || v[a] == '\t'))
			a++;
		while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
			b--;
		if (a == b) {
			errbuf_set(errbuf, errlen, "%s: empty item at position %zu", what, a);
			return -1;
		}
		if (++count > QUERY_SELECT_MAX) {
			errbuf_set(errbuf, errlen, "%s: more than %d items", what, QUERY_SELECT_MAX);
			return -1;
		}
		if (fn(ctx, v + a, b - a, a, errbuf, errlen) < 0)
			return -1;
		start = i + 1;
	}
	return 0;
}

static int add_select(void *ctx, const char *item, size_t n, size_t off, char *errbuf, size_t errlen)
{
	struct query *q = ctx;
	if (!valid_ident(item, n)) {
		errbuf_set(errbuf, errlen, "$select: '%.*s' at position %zu is not a property name", (int)n, item, off);
		return -1;
	}
	char **ns = realloc(q->select, (q->nselect + 1) * sizeof(*ns));
	if (!ns) {
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	q->select = ns;
	q->select[q->nselect] = dupn(item, n);
	if (!q->select[q->nselect]) {
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	q->nselect++;
	return 0;
}

static int add_order(void *ctx, const char *item, size_t n, size_t off, char *errbuf, size_t errlen)
{
	struct query *q = ctx;
	size_t f = 0;
	while (f < n && item[f] != ' ' && item[f] != '\t')
		f++;
	if (!valid_ident(item, f)) {
		errbuf_set(errbuf, errlen, "$orderby: '%.*s' at position %zu is not a property name", (int)f, item, off);
		return -1;
	}
	size_t d = f;
	while (d < n && (item[d] == ' ' || item[d] == '\t'))
		d++;
	int desc = 0;
	if (d < n) {
		if (n - d == 4 && strncmp(item + d, "desc", 4) == 0)
			desc = 1;
		else if (!(n - d == 3 && strncmp(item + d, "asc", 3) == 0)) {
			errbuf_set(errbuf, errlen, "$orderby: expected 'asc' or 'desc' at position %zu", off + d);
			return -1;
		}
	}
	struct query_order *no = realloc(q->orderby, (q->norderby + 1) * sizeof(*no));
	if (!no) {
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	q->orderby = no;
	q->orderby[q->norderby].field = dupn(item, f);
	q->orderby[q->norderby].desc = desc;
	if (!q->orderby[q->norderby].field) {
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	q->norderby++;
	return 0;
}

static int parse_nonneg(const char *name, const char *v, long long *out, char *errbuf, size_t errlen)
{
	size_t n = strlen(v);
	if (n == 0 || n > 10) {
		errbuf_set(errbuf, errlen, "%s must be a non-negative integer up to 2147483647", name);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(v[i])) {
			errbuf_set(errbuf, errlen, "%s must be a non-negative integer up to 2147483647", name);
			return -1;
		}
	}
	errno = 0;
	long long x = strtoll(v, NULL, 10);
	if (errno || x > 2147483647LL) {
		errbuf_set(errbuf, errlen, "%s must be a non-negative integer up to 2147483647", name);
		return -1;
	}
	*out = x;
	return 0;
}

int query_parse(const char *qs, size_t len, enum query_flavour flavour, struct query *q, char *errbuf,
		size_t errlen)
{
	int rc = -1;
	char *name = NULL, *value = NULL;
	unsigned seen = 0;
	query_init(q);
	if (len > QUERY_STRING_MAX) {
		errbuf_set(errbuf, errlen, "the query string is %zu bytes, over the limit of %d", len, QUERY_STRING_MAX);
		goto out;
	}
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && qs[i] != '&')
			continue;
		size_t plen = i - start;
		const char *param = qs + start;
		start = i + 1;
		if (plen == 0)
			continue;
		const char *eq = memchr(param, '=', plen);
		size_t nlen = eq ? (size_t)(eq - param) : plen;
		char derr[200];
		if (odata_pct_decode(param, nlen, &name, NULL, derr, sizeof(derr)) < 0) {
			errbuf_set(errbuf, errlen, "query parameter name: %s", derr);
			goto out;
		}
		if (eq) {
			if (odata_pct_decode(eq + 1, plen - nlen - 1, &value, NULL, derr, sizeof(derr)) < 0) {
				errbuf_set(errbuf, errlen, "query parameter %s: %s", name, derr);
				goto out;
			}
		} else {
			value = strdup("");
			if (!value) {
				errbuf_set(errbuf, errlen, "out of memory");
				goto out;
			}
		}
		static const char *const known[] = { "$filter", "$select", "$orderby", "$top", "$skip", "$count",
						     "$skiptoken", "$deltatoken", "cross-company" };
		int k = -1;
		for (int j = 0; j < (int)(sizeof(known) / sizeof(known[0])); j++)
			if (strcmp(name, known[j]) == 0)
				k = j;
		if (k == 8 && flavour != QUERY_FO)
			k = -1; /* an ordinary parameter on Dataverse */
		if (k < 0 && name[0] == '$') {
			if (strcmp(name, "$expand") == 0)
				errbuf_set(errbuf, errlen, "The query parameter $expand is not supported by the emulator");
			else
				errbuf_set(errbuf, errlen, "The query parameter %s is not supported", printable(name));
			goto out;
		}
		if (k == 4 && flavour == QUERY_CE) {
			errbuf_set(errbuf, errlen, "The query parameter $skip is not supported");
			goto out;
		}
		if (k >= 0) {
			if (seen & (1u << k)) {
				errbuf_set(errbuf, errlen, "The query parameter %s is specified more than once", name);
				goto out;
			}
			seen |= 1u << k;
		}
		switch (k) {
		case 0:
			if (parse_filter(value, strlen(value), flavour, &q->filter, errbuf, errlen) < 0)
				goto out;
			break;
		case 1:
			if (split_list(value, "$select", add_select, q, errbuf, errlen) < 0)
				goto out;
			break;
		case 2:
			if (split_list(value, "$orderby", add_order, q, errbuf, errlen) < 0)
				goto out;
			break;
		case 3:
			if (parse_nonneg("$top", value, &q->top, errbuf, errlen) < 0)
				goto out;
			break;
		case 4:
			if (parse_nonneg("$skip", value, &q->skip, errbuf, errlen) < 0)
				goto out;
			break;
		case 5:
			if (strcmp(value, "true") == 0) {
				q->count = 1;
			} else if (strcmp(value, "false") == 0) {
				q->count = 0;
			} else {
				errbuf_set(errbuf, errlen, "$count must be true or false");
				goto out;
			}
			break;
		case 6:
			q->skiptoken = value;
			value = NULL;
			break;
		case 7:
			q->deltatoken = value;
			value = NULL;
			break;
		case 8:
			if (strcasecmp(value, "true") == 0) {
				q->cross_company = 1;
			} else if (strcasecmp(value, "false") == 0) {
				q->cross_company = 0;
			} else {
				errbuf_set(errbuf, errlen, "cross-company must be true or false");
				goto out;
			}
			break;
		default: {
			if (q->nextra >= QUERY_SELECT_MAX) {
				errbuf_set(errbuf, errlen, "more than %d query parameters", QUERY_SELECT_MAX);
				goto out;
			}
			struct query_param *np = realloc(q->extra, (q->nextra + 1) * sizeof(*np));
			if (!np) {
				errbuf_set(errbuf, errlen, "out of memory");
				goto out;
			}
			q->extra = np;
			q->extra[q->nextra].name = name;
			q->extra[q->nextra].value = value;
			q->nextra++;
			name = value = NULL;
			break;
		}
		}
		free(name);
		free(value);
		name = value = NULL;
	}
	rc = 0;
out:
	free(name);
	free(value);
	if (rc < 0)
		query_clear(q);
	return rc;
}

/* ---- output buffer ---- */

/* ---- canonical form ---- */

static void fmt_quoted(struct strbuf *b, const char *s)
{
	strbuf_put(b, "'", 1);
	for (; *s; s++) {
		if (*s == '\'')
			strbuf_put(b, "'", 1);
		strbuf_put(b, s, 1);
	}
	strbuf_put(b, "'", 1);
}

static void fmt_lit(struct strbuf *b, const struct lit *l)
{
	switch (l->kind) {
	case L_STRING:
		fmt_quoted(b, l->text);
		break;
	case L_ENUM:
		strbuf_puts(b, l->enum_type);
		fmt_quoted(b, l->text);
		break;
	default:
		strbuf_puts(b, l->text);
		break;
	}
}

static void fmt_expr(struct strbuf *b, const struct query_expr *e)
{
	switch (e->kind) {
	case N_AND:
	case N_OR:
		strbuf_put(b, "(", 1);
		fmt_expr(b, e->l);
		strbuf_puts(b, e->kind == N_AND ? " and " : " or ");
		fmt_expr(b, e->r);
		strbuf_put(b, ")", 1);
		break;
	case N_NOT:
		strbuf_puts(b, "(not ");
		fmt_expr(b, e->l);
		strbuf_put(b, ")", 1);
		break;
	case N_CMP:
		strbuf_printf(b, "(%s %s ", e->field, OP_NAMES[e->op]);
		fmt_lit(b, &e->lit);
		strbuf_put(b, ")", 1);
		break;
	case N_FUNC:
		strbuf_printf(b, "%s(%s,", FUNC_NAMES[e->func], e->field);
		fmt_lit(b, &e->lit);
		strbuf_put(b, ")", 1);
		break;
	}
}

int query_filter_format(const struct query *q, char **out, char *errbuf, size_t errlen)
{
	struct strbuf b = { 0 };
	*out = NULL;
	strbuf_puts(&b, "");
	if (q->filter)
		fmt_expr(&b, q->filter);
	if (b.failed) {
		free(b.p);
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	*out = b.p;
	return 0;
}

/* ---- translation to PostgreSQL ---- */

const char *query_type_edm(enum query_type t)
{
	switch (t) {
	case QUERY_T_STRING: return "Edm.String";
	case QUERY_T_INT: return "Edm.Int32";
	case QUERY_T_DECIMAL: return "Edm.Decimal";
	case QUERY_T_DOUBLE: return "Edm.Double";
	case QUERY_T_BOOL: return "Edm.Boolean";
	case QUERY_T_DATETIME: return "Edm.DateTimeOffset";
	case QUERY_T_DATE: return "Edm.Date";
	case QUERY_T_GUID: return "Edm.Guid";
	case QUERY_T_ENUM: return "Edm.Enum";
	case QUERY_T_UNKNOWN: break;
	}
	return "Edm.Untyped";
}

static const char *lit_edm(const struct lit *l)
{
	switch (l->kind) {
	case L_STRING: return "Edm.String";
	case L_INT: return strlen(l->text) > 10 ? "Edm.Int64" : "Edm.Int32";
	case L_DECIMAL: return "Edm.Decimal";
	case L_BOOL: return "Edm.Boolean";
	case L_GUID: return "Edm.Guid";
	case L_DATE: return "Edm.Date";
	case L_DATETIME: return "Edm.DateTimeOffset";
	case L_ENUM: return l->enum_type;
	case L_NULL: return "null";
	}
	return "Edm.Untyped";
}

struct sqlctx {
	struct strbuf b;
	const char *col;
	int next_param;
	char **params;
	size_t nparams;
	enum query_flavour flavour;
	query_type_fn type_of;
	void *ctx;
	const char *type_name;
	char *errbuf;
	size_t errlen;
};

static int field_type(struct sqlctx *c, const char *field, enum query_type *t)
{
	*t = c->type_of(c->ctx, field);
	if (*t == QUERY_T_UNKNOWN || *t > QUERY_T_ENUM) {
		if (c->type_name)
			errbuf_set(c->errbuf, c->errlen, "Could not find a property named '%s' on type '%s'.", field,
			       c->type_name);
		else
			errbuf_set(c->errbuf, c->errlen, "Could not find a property named '%s'.", field);
		return -1;
	}
	return 0;
}

/* Adds a parameter (taking ownership of v) and returns its number, or -1. */
static int add_param(struct sqlctx *c, char *v)
{
	if (!v) {
		errbuf_set(c->errbuf, c->errlen, "out of memory");
		return -1;
	}
	char **np = realloc(c->params, (c->nparams + 1) * sizeof(*np));
	if (!np) {
		free(v);
		errbuf_set(c->errbuf, c->errlen, "out of memory");
		return -1;
	}
	c->params = np;
	c->params[c->nparams++] = v;
	return c->next_param++;
}

/* The shape of an ISO 8601 date-time as stored; a value of another shape reads as null rather than
 * failing the cast (an impossible date such as 2025-02-30 still fails: the schema refuses those). */
#define DATETIME_RE "^\\d{4}-\\d{2}-\\d{2}([Tt ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?)?([Zz]|[+-]\\d{2}(:?\\d{2})?)?$"

/* The SQL for a field's value, typed. Field names are checked identifiers. */
static void sql_field(struct sqlctx *c, const char *field, enum query_type t)
{
	switch (t) {
	case QUERY_T_INT:
	case QUERY_T_DECIMAL:
	case QUERY_T_DOUBLE:
		strbuf_printf(&c->b, "(CASE WHEN jsonb_typeof(%s->'%s') = 'number' THEN (%s->>'%s')::numeric END)", c->col, field,
		       c->col, field);
		break;
	case QUERY_T_BOOL:
		strbuf_printf(&c->b, "(CASE WHEN jsonb_typeof(%s->'%s') = 'boolean' THEN (%s->>'%s')::boolean END)", c->col,
		       field, c->col, field);
		break;
	case QUERY_T_DATETIME:
		strbuf_printf(&c->b,
		       "(CASE WHEN (%s->>'%s') ~ '%s' THEN (%s->>'%s')::timestamptz END)", c->col,
		       field, DATETIME_RE, c->col, field);
		break;
	case QUERY_T_DATE:
		strbuf_printf(&c->b, "(CASE WHEN (%s->>'%s') ~ '^\\d{4}-\\d{2}-\\d{2}$' THEN (%s->>'%s')::date END)", c->col,
		       field, c->col, field);
		break;
	case QUERY_T_STRING:
	case QUERY_T_GUID:
	case QUERY_T_ENUM:
	default:
		strbuf_printf(&c->b, "lower(%s->>'%s')", c->col, field);
		break;
	}
}

static const char *param_cast(enum query_type t)
{
	switch (t) {
	case QUERY_T_INT:
	case QUERY_T_DECIMAL:
	case QUERY_T_DOUBLE: return "::numeric";
	case QUERY_T_BOOL: return "::boolean";
	case QUERY_T_DATETIME: return "::timestamptz";
	case QUERY_T_DATE: return "::date";
	default: return "::text";
	}
}

static int type_mismatch(struct sqlctx *c, enum query_type t, const struct lit *l, enum cmp_op op)
{
	errbuf_set(c->errbuf, c->errlen,
	       "A binary operator with incompatible types was detected. Found operand types '%s' and '%s' for "
	       "operator kind '%s'.",
	       query_type_edm(t), lit_edm(l), OP_KINDS[op]);
	return -1;
}

/* LIKE pattern text: % _ \ escaped; '*' becomes % when wildcards is set. */
static char *like_escape(const char *s, int wildcards, const char *prefix, const char *suffix)
{
	size_t n = strlen(s);
	char *out = malloc(2 * n + 3);
	if (!out)
		return NULL;
	size_t o = 0;
	if (prefix[0])
		out[o++] = prefix[0];
	for (size_t i = 0; i < n; i++) {
		if (wildcards && s[i] == '*') {
			out[o++] = '%';
			continue;
		}
		if (s[i] == '%' || s[i] == '_' || s[i] == '\\')
			out[o++] = '\\';
		out[o++] = s[i];
	}
	if (suffix[0])
		out[o++] = suffix[0];
	out[o] = '\0';
	return out;
}

static int sql_cmp(struct sqlctx *c, const struct query_expr *e)
{
	enum query_type t;
	if (field_type(c, e->field, &t) < 0)
		return -1;
	const struct lit *l = &e->lit;
	if (l->kind == L_NULL) {
		if (e->op != OP_EQ && e->op != OP_NE) {
			errbuf_set(c->errbuf, c->errlen, "null can only be compared with eq or ne (property '%s')", e->field);
			return -1;
		}
		strbuf_printf(&c->b, "((%s->>'%s') IS %sNULL)", c->col, e->field, e->op == OP_NE ? "NOT " : "");
		return 0;
	}
	int ok = 0;
	switch (t) {
	case QUERY_T_STRING: ok = l->kind == L_STRING; break;
	case QUERY_T_INT:
	case QUERY_T_DECIMAL:
	case QUERY_T_DOUBLE: ok = l->kind == L_INT || l->kind == L_DECIMAL; break;
	case QUERY_T_BOOL: ok = l->kind == L_BOOL; break;
	case QUERY_T_DATETIME: ok = l->kind == L_DATETIME || l->kind == L_DATE; break;
	case QUERY_T_DATE: ok = l->kind == L_DATE; break;
	case QUERY_T_GUID: ok = l->kind == L_GUID; break;
	case QUERY_T_ENUM: ok = l->kind == L_ENUM || l->kind == L_STRING; break;
	default: break;
	}
	if (!ok)
		return type_mismatch(c, t, l, e->op);
	if ((t == QUERY_T_BOOL || t == QUERY_T_GUID || t == QUERY_T_ENUM) && e->op != OP_EQ && e->op != OP_NE) {
		errbuf_set(c->errbuf, c->errlen, "The operator '%s' cannot be used on the %s property '%s'; use eq or ne.",
		       OP_NAMES[e->op], query_type_edm(t), e->field);
		return -1;
	}
	/* FO: eq '*text*' matches with wildcards */
	if (c->flavour == QUERY_FO && t == QUERY_T_STRING && (e->op == OP_EQ || e->op == OP_NE) &&
	    strchr(l->text, '*')) {
		int n = add_param(c, like_escape(l->text, 1, "", ""));
		if (n < 0)
			return -1;
		strbuf_puts(&c->b, e->op == OP_NE ? "(NOT COALESCE(" : "COALESCE(");
		sql_field(c, e->field, t);
		strbuf_printf(&c->b, " LIKE lower($%d::text), FALSE)%s", n, e->op == OP_NE ? ")" : "");
		return 0;
	}
	char *v;
	if (t == QUERY_T_DATETIME && l->kind == L_DATE) {
		size_t len = strlen(l->text) + 16;
		v = malloc(len);
		if (v)
			snprintf(v, len, "%sT00:00:00Z", l->text);
	} else {
		v = strdup(l->text);
	}
	int n = add_param(c, v);
	if (n < 0)
		return -1;
	int text = t == QUERY_T_STRING || t == QUERY_T_GUID || t == QUERY_T_ENUM;
	if (e->op == OP_NE) {
		strbuf_put(&c->b, "(", 1);
		sql_field(c, e->field, t);
		strbuf_printf(&c->b, text ? " IS DISTINCT FROM lower($%d::text))" : " IS DISTINCT FROM $%d%s)", n,
		       param_cast(t));
		return 0;
	}
	strbuf_puts(&c->b, "COALESCE(");
	sql_field(c, e->field, t);
	strbuf_printf(&c->b, text ? " %s lower($%d::text), FALSE)" : " %s $%d%s, FALSE)", OP_SQL[e->op], n, param_cast(t));
	return 0;
}

static int sql_func(struct sqlctx *c, const struct query_expr *e)
{
	enum query_type t;
	if (field_type(c, e->field, &t) < 0)
		return -1;
	if (t != QUERY_T_STRING) {
		errbuf_set(c->errbuf, c->errlen, "The function %s needs a string property; '%s' is %s.", FUNC_NAMES[e->func],
		       e->field, query_type_edm(t));
		return -1;
	}
	const char *pre = e->func == F_STARTSWITH ? "" : "%";
	const char *suf = e->func == F_ENDSWITH ? "" : "%";
	int n = add_param(c, like_escape(e->lit.text, 0, pre, suf));
	if (n < 0)
		return -1;
	strbuf_puts(&c->b, "COALESCE(");
	sql_field(c, e->field, t);
	strbuf_printf(&c->b, " LIKE lower($%d::text), FALSE)", n);
	return 0;
}

static int sql_expr(struct sqlctx *c, const struct query_expr *e)
{
	switch (e->kind) {
	case N_AND:
	case N_OR:
		strbuf_put(&c->b, "(", 1);
		if (sql_expr(c, e->l) < 0)
			return -1;
		strbuf_puts(&c->b, e->kind == N_AND ? " AND " : " OR ");
		if (sql_expr(c, e->r) < 0)
			return -1;
		strbuf_put(&c->b, ")", 1);
		return 0;
	case N_NOT:
		strbuf_puts(&c->b, "(NOT ");
		if (sql_expr(c, e->l) < 0)
			return -1;
		strbuf_put(&c->b, ")", 1);
		return 0;
	case N_CMP:
		return sql_cmp(c, e);
	case N_FUNC:
		return sql_func(c, e);
	}
	return -1;
}

void query_sql_clear(struct query_sql *s)
{
	if (!s)
		return;
	free(s->where);
	free(s->order_by);
	for (size_t i = 0; i < s->nparams; i++)
		free(s->params[i]);
	free(s->params);
	memset(s, 0, sizeof(*s));
}

int query_to_sql(const struct query *q, enum query_flavour flavour, const char *column, int first_param,
		 query_type_fn type_of, void *ctx, const char *type_name, struct query_sql *out, char *errbuf,
		 size_t errlen)
{
	int rc = -1;
	struct sqlctx c = { .col = column, .next_param = first_param, .flavour = flavour, .type_of = type_of,
			    .ctx = ctx, .type_name = type_name, .errbuf = errbuf, .errlen = errlen };
	struct strbuf ob = { 0 };
	memset(out, 0, sizeof(*out));
	if (!column || !*column || first_param < 1 || !type_of) {
		errbuf_set(errbuf, errlen, "query_to_sql: column, first_param >= 1 and type_of are required");
		goto out;
	}
	for (size_t i = 0; i < q->nselect; i++) {
		enum query_type t;
		if (field_type(&c, q->select[i], &t) < 0)
			goto out;
	}
	if (q->filter) {
		if (sql_expr(&c, q->filter) < 0)
			goto out;
	} else {
		strbuf_puts(&c.b, "TRUE");
	}
	for (size_t i = 0; i < q->norderby; i++) {
		enum query_type t;
		if (field_type(&c, q->orderby[i].field, &t) < 0)
			goto out;
		if (i > 0)
			strbuf_puts(&ob, ", ");
		struct strbuf save = c.b;
		c.b = ob;
		sql_field(&c, q->orderby[i].field, t);
		ob = c.b;
		c.b = save;
		/* SQL Server, behind both services, sorts NULL first in ascending order */
		strbuf_puts(&ob, q->orderby[i].desc ? " DESC NULLS LAST" : " ASC NULLS FIRST");
	}
	if (c.b.failed || ob.failed) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	out->where = c.b.p;
	c.b.p = NULL;
	out->order_by = ob.p;
	ob.p = NULL;
	out->params = c.params;
	out->nparams = c.nparams;
	c.params = NULL;
	c.nparams = 0;
	rc = 0;
out:
	free(c.b.p);
	free(ob.p);
	for (size_t i = 0; i < c.nparams; i++)
		free(c.params[i]);
	free(c.params);
	return rc;
}
