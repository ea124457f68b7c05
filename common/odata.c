#include "odata.h"

#include "errbuf.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_' || c == '~';
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static const char HEX[] = "0123456789ABCDEF";

/* Appends the encoding of in[0..len) to out (room for 3*len bytes); keeps `'` literal when
 * keep_quote. Returns the number of bytes written. */
static size_t encode_into(char *out, const char *in, size_t len, int keep_quote)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (is_unreserved(c) || (keep_quote && c == '\'')) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = HEX[c >> 4];
			out[o++] = HEX[c & 15];
		}
	}
	return o;
}

int odata_pct_encode(const char *in, size_t len, char **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	if (len > ODATA_TEXT_MAX) {
		errbuf_set(errbuf, errlen, "text to percent-encode is %zu bytes, over the %d-byte limit", len,
		       ODATA_TEXT_MAX);
		return -1;
	}
	char *buf = malloc(3 * len + 1);
	if (!buf) {
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	size_t n = encode_into(buf, in, len, 0);
	buf[n] = '\0';
	*out = buf;
	return 0;
}

int odata_pct_decode(const char *in, size_t len, char **out, size_t *outlen, char *errbuf, size_t errlen)
{
	int rc = -1;
	char *buf = NULL;
	*out = NULL;
	if (outlen)
		*outlen = 0;
	if (len > ODATA_TEXT_MAX) {
		errbuf_set(errbuf, errlen, "text to percent-decode is %zu bytes, over the %d-byte limit", len,
		       ODATA_TEXT_MAX);
		goto out;
	}
	buf = malloc(len + 1);
	if (!buf) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '\0') {
			errbuf_set(errbuf, errlen, "NUL byte at offset %zu", i);
			goto out;
		}
		if (c != '%') {
			buf[o++] = (char)c;
			continue;
		}
		int hi = i + 1 < len ? hexval((unsigned char)in[i + 1]) : -1;
		int lo = i + 2 < len ? hexval((unsigned char)in[i + 2]) : -1;
		if (hi < 0 || lo < 0) {
			errbuf_set(errbuf, errlen, "bad percent-escape at offset %zu: expected two hex digits after '%%'", i);
			goto out;
		}
		if (hi == 0 && lo == 0) {
			errbuf_set(errbuf, errlen, "percent-escape %%00 at offset %zu is not allowed", i);
			goto out;
		}
		buf[o++] = (char)(hi * 16 + lo);
		i += 2;
	}
	buf[o] = '\0';
	*out = buf;
	buf = NULL;
	if (outlen)
		*outlen = o;
	rc = 0;
out:
	free(buf);
	return rc;
}

/* Writes 'value' with quotes doubled into out (room for 2*len+2); returns bytes written. */
static size_t quote_into(char *out, const char *value, size_t len)
{
	size_t o = 0;
	out[o++] = '\'';
	for (size_t i = 0; i < len; i++) {
		if (value[i] == '\'')
			out[o++] = '\'';
		out[o++] = value[i];
	}
	out[o++] = '\'';
	return o;
}

int odata_quote_literal(const char *value, char **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	size_t len = strlen(value);
	if (len > ODATA_TEXT_MAX) {
		errbuf_set(errbuf, errlen, "literal is %zu bytes, over the %d-byte limit", len, ODATA_TEXT_MAX);
		return -1;
	}
	char *buf = malloc(2 * len + 3);
	if (!buf) {
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	size_t n = quote_into(buf, value, len);
	buf[n] = '\0';
	*out = buf;
	return 0;
}

const char *odata_kind_name(enum odata_kind kind)
{
	switch (kind) {
	case ODATA_KIND_STRING:
		return "string";
	case ODATA_KIND_INT:
		return "int";
	case ODATA_KIND_GUID:
		return "guid";
	case ODATA_KIND_ENUM:
		return "enum";
	}
	return "unknown";
}

static int is_ident_start(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_ident_char(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

static int valid_ident(const char *s, size_t len)
{
	if (len == 0 || len > ODATA_NAME_MAX || !is_ident_start((unsigned char)s[0]))
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!is_ident_char((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Dotted identifiers: Microsoft.Dynamics.DataEntities.NoYes */
static int valid_qualified(const char *s, size_t len)
{
	if (len == 0 || len > ODATA_NAME_MAX)
		return 0;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (!valid_ident(s + start, i - start))
				return 0;
			start = i + 1;
		}
	}
	return 1;
}

static int valid_int(const char *s, size_t len)
{
	size_t i = 0;
	if (len > 0 && s[0] == '-')
		i = 1;
	if (i == len || len - i > 19)
		return 0;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static int valid_guid(const char *s, size_t len)
{
	if (len != 36)
		return 0;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (hexval((unsigned char)s[i]) < 0) {
			return 0;
		}
	}
	return 1;
}

int odata_key_build(const struct odata_key_part *parts, size_t nparts, char **out, char *errbuf, size_t errlen)
{
	int rc = -1;
	char *buf = NULL;
	*out = NULL;
	if (nparts == 0 || nparts > ODATA_KEY_MAX_PARTS) {
		errbuf_set(errbuf, errlen, "a key needs 1 to %d parts, got %zu", ODATA_KEY_MAX_PARTS, nparts);
		goto out;
	}
	size_t cap = 3;
	for (size_t i = 0; i < nparts; i++) {
		const struct odata_key_part *p = &parts[i];
		if (!p->name && nparts > 1) {
			errbuf_set(errbuf, errlen, "key part %zu has no name; a key with several parts must name each",
			       i);
			goto out;
		}
		if (p->name && !valid_ident(p->name, strlen(p->name))) {
			errbuf_set(errbuf, errlen, "key part %zu: name is not an identifier", i);
			goto out;
		}
		for (size_t j = 0; p->name && j < i; j++) {
			if (strcmp(parts[j].name, p->name) == 0) {
				errbuf_set(errbuf, errlen, "key part %zu: duplicate name '%s'", i, p->name);
				goto out;
			}
		}
		if (!p->value) {
			errbuf_set(errbuf, errlen, "key part %zu has no value", i);
			goto out;
		}
		size_t vlen = strlen(p->value);
		if (vlen > ODATA_TEXT_MAX) {
			errbuf_set(errbuf, errlen, "key part %zu: value over the %d-byte limit", i, ODATA_TEXT_MAX);
			goto out;
		}
		switch (p->kind) {
		case ODATA_KIND_INT:
			if (!valid_int(p->value, vlen)) {
				errbuf_set(errbuf, errlen, "key part %zu: '%s' is not an integer", i, p->value);
				goto out;
			}
			break;
		case ODATA_KIND_GUID:
			if (!valid_guid(p->value, vlen)) {
				errbuf_set(errbuf, errlen, "key part %zu: value is not a GUID (8-4-4-4-12 hex)", i);
				goto out;
			}
			break;
		case ODATA_KIND_ENUM:
			if (!p->enum_type || !valid_qualified(p->enum_type, strlen(p->enum_type)) ||
			    !strchr(p->enum_type, '.')) {
				errbuf_set(errbuf, errlen, "key part %zu: enum needs a qualified enum type name", i);
				goto out;
			}
			cap += strlen(p->enum_type);
			break;
		case ODATA_KIND_STRING:
			break;
		default:
			errbuf_set(errbuf, errlen, "key part %zu: unknown kind %d", i, (int)p->kind);
			goto out;
		}
		/* name '=' quote (value doubled then encoded: <= 6 bytes per byte) quote ',' */
		cap += (p->name ? strlen(p->name) : 0) + 6 * vlen + 4;
	}
	buf = malloc(cap);
	if (!buf) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	size_t o = 0;
	buf[o++] = '(';
	for (size_t i = 0; i < nparts; i++) {
		const struct odata_key_part *p = &parts[i];
		if (i > 0)
			buf[o++] = ',';
		if (p->name) {
			size_t nl = strlen(p->name);
			memcpy(buf + o, p->name, nl);
			o += nl;
			buf[o++] = '=';
		}
		size_t vlen = strlen(p->value);
		if (p->kind == ODATA_KIND_INT || p->kind == ODATA_KIND_GUID) {
			memcpy(buf + o, p->value, vlen);
			o += vlen;
			continue;
		}
		if (p->kind == ODATA_KIND_ENUM) {
			size_t tl = strlen(p->enum_type);
			memcpy(buf + o, p->enum_type, tl);
			o += tl;
		}
		char *q = malloc(2 * vlen + 3);
		if (!q) {
			errbuf_set(errbuf, errlen, "out of memory");
			goto out;
		}
		size_t ql = quote_into(q, p->value, vlen);
		o += encode_into(buf + o, q, ql, 1);
		free(q);
	}
	buf[o++] = ')';
	buf[o] = '\0';
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	return rc;
}

/* A reader over raw URL text that decodes %XX on the fly. */
struct kreader {
	const char *s;
	size_t len;
	size_t pos;
	char *errbuf;
	size_t errlen;
};

/* Peeks the next decoded byte: returns it (0..255), -1 at the end, -2 on a bad escape (errbuf
 * filled). *next receives the raw position after it. */
static int kr_peek(struct kreader *r, size_t *next)
{
	if (r->pos >= r->len)
		return -1;
	unsigned char c = (unsigned char)r->s[r->pos];
	if (c == '\0') {
		errbuf_set(r->errbuf, r->errlen, "Invalid key predicate at offset %zu: NUL byte", r->pos);
		return -2;
	}
	if (c != '%') {
		*next = r->pos + 1;
		return c;
	}
	int hi = r->pos + 1 < r->len ? hexval((unsigned char)r->s[r->pos + 1]) : -1;
	int lo = r->pos + 2 < r->len ? hexval((unsigned char)r->s[r->pos + 2]) : -1;
	if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
		errbuf_set(r->errbuf, r->errlen,
		       "Invalid key predicate at offset %zu: bad percent-escape (expected %%XX, not %%00)", r->pos);
		return -2;
	}
	*next = r->pos + 3;
	return hi * 16 + lo;
}

static int tok_char(int c)
{
	return c >= 0 && (is_ident_char((unsigned char)c) || c == '.' || c == '-');
}

/* Reads a run of [A-Za-z0-9_.-] into dst; returns its length or (size_t)-1 on a bad escape. */
static size_t kr_token(struct kreader *r, char *dst)
{
	size_t n = 0, next = 0;
	for (;;) {
		int c = kr_peek(r, &next);
		if (c == -2)
			return (size_t)-1;
		if (!tok_char(c))
			return n;
		dst[n++] = (char)c;
		r->pos = next;
	}
}

/* Reads a quoted literal starting at a quote; writes the unquoted value into dst. Returns its
 * length, or (size_t)-1 with errbuf filled. */
static size_t kr_quoted(struct kreader *r, char *dst)
{
	size_t start = r->pos, next = 0, n = 0;
	int c = kr_peek(r, &next); /* the opening quote */
	r->pos = next;
	(void)c;
	for (;;) {
		c = kr_peek(r, &next);
		if (c == -2)
			return (size_t)-1;
		if (c == -1) {
			errbuf_set(r->errbuf, r->errlen,
			       "Invalid key predicate at offset %zu: unbalanced quote (string starting here never ends)",
			       start);
			return (size_t)-1;
		}
		r->pos = next;
		if (c == '\'') {
			size_t next2 = 0;
			int c2 = kr_peek(r, &next2);
			if (c2 == -2)
				return (size_t)-1;
			if (c2 == '\'') {
				dst[n++] = '\'';
				r->pos = next2;
				continue;
			}
			return n;
		}
		dst[n++] = (char)c;
	}
}

int odata_key_parse(const char *text, size_t len, size_t *consumed, struct odata_key *key, char *errbuf,
		    size_t errlen)
{
	int rc = -1;
	memset(key, 0, sizeof(*key));
	size_t off[ODATA_KEY_MAX_PARTS][3]; /* offsets into buf of name, value, enum type; SIZE_MAX = none */
	if (consumed)
		*consumed = 0;
	if (len > ODATA_TEXT_MAX) {
		errbuf_set(errbuf, errlen, "Invalid key predicate: %zu bytes, over the %d-byte limit", len, ODATA_TEXT_MAX);
		return -1;
	}
	char *buf = malloc(len + 3 * ODATA_KEY_MAX_PARTS + 1);
	if (!buf) {
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	size_t bo = 0;
	struct kreader r = { .s = text, .len = len, .pos = 0, .errbuf = errbuf, .errlen = errlen };
	size_t next = 0;
	int c = kr_peek(&r, &next);
	if (c != '(') {
		if (c != -2)
			errbuf_set(errbuf, errlen, "Invalid key predicate at offset 0: expected '('");
		goto out;
	}
	r.pos = next;
	size_t n = 0;
	int named = -1;
	for (;;) {
		if (n == ODATA_KEY_MAX_PARTS) {
			errbuf_set(errbuf, errlen, "Invalid key predicate at offset %zu: more than %d key parts", r.pos,
			       ODATA_KEY_MAX_PARTS);
			goto out;
		}
		size_t item_start = r.pos, part_start = r.pos;
		size_t tstart = bo;
		size_t tl = kr_token(&r, buf + bo);
		if (tl == (size_t)-1)
			goto out;
		c = kr_peek(&r, &next);
		if (c == -2)
			goto out;
		off[n][0] = off[n][1] = off[n][2] = (size_t)-1;
		int is_named = 0;
		if (c == '=') {
			if (!valid_ident(buf + tstart, tl)) {
				errbuf_set(errbuf, errlen,
				       "Invalid key predicate at offset %zu: expected a property name before '='",
				       item_start);
				goto out;
			}
			buf[tstart + tl] = '\0';
			for (size_t j = 0; j < n; j++) {
				if (off[j][0] != (size_t)-1 && strcmp(buf + off[j][0], buf + tstart) == 0) {
					errbuf_set(errbuf, errlen,
					       "Invalid key predicate at offset %zu: duplicate key property '%s'",
					       item_start, buf + tstart);
					goto out;
				}
			}
			off[n][0] = tstart;
			bo = tstart + tl + 1;
			r.pos = next;
			is_named = 1;
			item_start = r.pos;
			tstart = bo;
			tl = kr_token(&r, buf + bo);
			if (tl == (size_t)-1)
				goto out;
			c = kr_peek(&r, &next);
			if (c == -2)
				goto out;
		}
		if (named >= 0 && named != is_named) {
			errbuf_set(errbuf, errlen,
			       "Invalid key predicate at offset %zu: named and unnamed key values cannot be mixed",
			       part_start);
			goto out;
		}
		named = is_named;
		enum odata_kind kind;
		if (c == '\'') {
			if (tl == 0) {
				kind = ODATA_KIND_STRING;
			} else if (memchr(buf + tstart, '.', tl) && valid_qualified(buf + tstart, tl)) {
				kind = ODATA_KIND_ENUM;
				buf[tstart + tl] = '\0';
				off[n][2] = tstart;
				bo = tstart + tl + 1;
				tstart = bo;
			} else {
				errbuf_set(errbuf, errlen,
				       "Invalid key predicate at offset %zu: expected a quoted string or an enum literal "
				       "(Namespace.EnumType'Member')",
				       item_start);
				goto out;
			}
			size_t vl = kr_quoted(&r, buf + tstart);
			if (vl == (size_t)-1)
				goto out;
			buf[tstart + vl] = '\0';
			off[n][1] = tstart;
			bo = tstart + vl + 1;
		} else {
			if (tl == 0) {
				errbuf_set(errbuf, errlen,
				       "Invalid key predicate at offset %zu: expected a key value (GUID, integer, "
				       "'string' or enum literal)",
				       item_start);
				goto out;
			}
			if (valid_guid(buf + tstart, tl)) {
				kind = ODATA_KIND_GUID;
				for (size_t k = 0; k < tl; k++)
					if (buf[tstart + k] >= 'A' && buf[tstart + k] <= 'F')
						buf[tstart + k] = (char)(buf[tstart + k] - 'A' + 'a');
			} else if (valid_int(buf + tstart, tl)) {
				kind = ODATA_KIND_INT;
			} else {
				errbuf_set(errbuf, errlen,
				       "Invalid key predicate at offset %zu: expected a GUID, an integer, a quoted "
				       "string or an enum literal",
				       item_start);
				goto out;
			}
			buf[tstart + tl] = '\0';
			off[n][1] = tstart;
			bo = tstart + tl + 1;
		}
		key->parts[n].kind = kind;
		n++;
		c = kr_peek(&r, &next);
		if (c == -2)
			goto out;
		if (c == ',') {
			r.pos = next;
			continue;
		}
		if (c == ')') {
			r.pos = next;
			break;
		}
		errbuf_set(errbuf, errlen, "Invalid key predicate at offset %zu: expected ',' or ')'%s", r.pos,
		       c == -1 ? " but the text ended" : "");
		goto out;
	}
	if (!named && n > 1) {
		errbuf_set(errbuf, errlen, "Invalid key predicate: a key with several values must name each one");
		goto out;
	}
	if (consumed) {
		*consumed = r.pos;
	} else if (r.pos != len) {
		errbuf_set(errbuf, errlen, "Invalid key predicate at offset %zu: unexpected text after ')'", r.pos);
		goto out;
	}
	key->nparts = n;
	for (size_t i = 0; i < n; i++) {
		key->parts[i].name = off[i][0] == (size_t)-1 ? NULL : buf + off[i][0];
		key->parts[i].value = buf + off[i][1];
		key->parts[i].enum_type = off[i][2] == (size_t)-1 ? NULL : buf + off[i][2];
	}
	key->buf_ = buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	if (rc != 0) {
		memset(key, 0, sizeof(*key));
		if (consumed)
			*consumed = 0;
	}
	return rc;
}

int odata_entity_ref_parse(const char *text, size_t len, char **entity_set, struct odata_key *key, char *errbuf,
			   size_t errlen)
{
	*entity_set = NULL;
	memset(key, 0, sizeof(*key));
	if (len > ODATA_TEXT_MAX) {
		errbuf_set(errbuf, errlen, "Invalid entity reference: %zu bytes, over the %d-byte limit", len,
		       ODATA_TEXT_MAX);
		return -1;
	}
	const char *paren = memchr(text, '(', len);
	if (!paren) {
		errbuf_set(errbuf, errlen, "Invalid entity reference: expected EntitySet(key)");
		return -1;
	}
	size_t p = (size_t)(paren - text), start = p;
	while (start > 0 && text[start - 1] != '/')
		start--;
	if (!valid_ident(text + start, p - start)) {
		errbuf_set(errbuf, errlen, "Invalid entity reference at offset %zu: expected an entity set name before '('",
		       start);
		return -1;
	}
	char kerr[256];
	if (odata_key_parse(paren, len - p, NULL, key, kerr, sizeof(kerr)) < 0) {
		errbuf_set(errbuf, errlen, "Invalid entity reference (key starts at offset %zu): %s", p, kerr);
		return -1;
	}
	*entity_set = strndup(text + start, p - start);
	if (!*entity_set) {
		odata_key_clear(key);
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	return 0;
}

void odata_key_clear(struct odata_key *key)
{
	if (!key)
		return;
	free(key->buf_);
	memset(key, 0, sizeof(*key));
}

const struct odata_key_part *odata_key_find(const struct odata_key *key, const char *name)
{
	for (size_t i = 0; i < key->nparts; i++)
		if (key->parts[i].name && strcmp(key->parts[i].name, name) == 0)
			return &key->parts[i];
	return NULL;
}

static char *dup_str(const char *s)
{
	return strdup(s ? s : "");
}

static const char *json_str(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int odata_error_parse(const char *body, size_t len, struct odata_error *err)
{
	int rc = -1;
	memset(err, 0, sizeof(*err));
	cJSON *root = NULL;
	if (body && len > 0)
		root = cJSON_ParseWithLength(body, len);
	const cJSON *e = root ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
	if (cJSON_IsObject(e) && (json_str(e, "message") || json_str(e, "code"))) {
		const cJSON *inner = cJSON_GetObjectItemCaseSensitive(e, "innererror");
		const char *im = cJSON_IsObject(inner) ? json_str(inner, "message") : NULL;
		if (!im)
			im = json_str(e, "@Microsoft.PowerApps.CDS.InnerError.Message");
		err->code = dup_str(json_str(e, "code"));
		err->message = dup_str(json_str(e, "message"));
		err->inner_message = dup_str(im);
		if (!err->code || !err->message || !err->inner_message)
			goto out;
		rc = 0;
		goto out;
	}
	size_t n = len < ODATA_ERROR_RAW_MAX ? len : ODATA_ERROR_RAW_MAX;
	err->code = dup_str("");
	err->inner_message = dup_str("");
	err->message = malloc(n + 1);
	if (!err->code || !err->inner_message || !err->message)
		goto out;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)body[i];
		err->message[i] = (char)((c < 0x20 || c == 0x7f) ? ' ' : c);
	}
	err->message[n] = '\0';
	rc = 1;
out:
	cJSON_Delete(root);
	if (rc < 0)
		odata_error_clear(err);
	return rc;
}

void odata_error_clear(struct odata_error *err)
{
	if (!err)
		return;
	free(err->code);
	free(err->message);
	free(err->inner_message);
	memset(err, 0, sizeof(*err));
}

int odata_error_build(const char *code, const char *message, const char *inner_message, const char *inner_type,
		      char **out, char *errbuf, size_t errlen)
{
	int rc = -1;
	*out = NULL;
	cJSON *root = cJSON_CreateObject();
	cJSON *e = cJSON_AddObjectToObject(root, "error");
	int ok = e && cJSON_AddStringToObject(e, "code", code) && cJSON_AddStringToObject(e, "message", message);
	if (ok && inner_message) {
		cJSON *in = cJSON_AddObjectToObject(e, "innererror");
		ok = in && cJSON_AddStringToObject(in, "message", inner_message) &&
		     cJSON_AddStringToObject(in, "type", inner_type ? inner_type : "") &&
		     cJSON_AddStringToObject(in, "stacktrace", "");
	}
	if (ok)
		*out = cJSON_PrintUnformatted(root);
	if (!*out) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	cJSON_Delete(root);
	return rc;
}
