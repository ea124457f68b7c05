#include "event.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncheck.h"
#include "jsonout.h"
#include "strbuf.h"
#include "utf8.h"

/* Writes "<path>: <reason>" into err. Always returns -1 so callers can `return seterr(...)`. */
__attribute__((format(printf, 4, 5))) static int seterr(char *err, size_t errlen, const char *path,
							const char *fmt, ...)
{
	if (!err || errlen == 0)
		return -1;
	int n = snprintf(err, errlen, "%s: ", path);
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Renders external text for an error message: JSON-style quoted and escaped, at most about 48
 * bytes of it, never cutting a UTF-8 sequence, "..." when shortened. `quote` adds the quotes.
 */
static void render_text(const char *s, char *buf, size_t n, int quote)
{
	size_t o = 0, i = 0;
	const size_t limit = 48;
	if (n < 16) {
		if (n)
			buf[0] = '\0';
		return;
	}
	if (utf8_validate(s, strlen(s), NULL) < 0) {
		snprintf(buf, n, "(text that is not valid UTF-8)");
		return;
	}
	if (quote)
		buf[o++] = '"';
	for (;;) {
		unsigned char c = (unsigned char)s[i];
		if (!c)
			break;
		/* Room is kept for "...", the quote and the NUL (at most 6 bytes are added per byte). */
		if ((i >= limit || o + 12 >= n) && (c & 0xc0) != 0x80) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(buf + o, n - o, "\\u%04x", c);
		} else {
			buf[o++] = (char)c;
		}
		i++;
	}
	if (quote)
		buf[o++] = '"';
	buf[o] = '\0';
}

/* A member name as it appears in a path: bare when it is a plain identifier, else quoted. */
static void render_name(const char *s, char *buf, size_t n)
{
	size_t len = strlen(s);
	int plain = len > 0 && len <= 64;
	for (size_t i = 0; plain && i < len; i++) {
		char c = s[i];
		plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
			c == '-' || c == '@' || c == '$';
	}
	if (plain)
		snprintf(buf, n, "%s", s);
	else
		render_text(s, buf, n, 1);
}

/* Describes a JSON value for "got ..." in an error message. */
static void describe(const cJSON *item, char *buf, size_t n)
{
	if (cJSON_IsString(item) && item->valuestring) {
		render_text(item->valuestring, buf, n, 1);
	} else if (cJSON_IsNumber(item)) {
		double d = item->valuedouble;
		snprintf(buf, n, "%.15g", d);
		if (strtod(buf, NULL) != d)
			snprintf(buf, n, "%.17g", d);
	} else if (cJSON_IsBool(item)) {
		snprintf(buf, n, "%s", cJSON_IsTrue(item) ? "true" : "false");
	} else if (cJSON_IsNull(item)) {
		snprintf(buf, n, "null");
	} else if (cJSON_IsObject(item)) {
		snprintf(buf, n, "an object");
	} else if (cJSON_IsArray(item)) {
		snprintf(buf, n, "an array");
	} else {
		snprintf(buf, n, "an invalid value");
	}
}

const char *event_op_name(enum event_op op)
{
	switch (op) {
	case EVENT_OP_CREATE:
		return "create";
	case EVENT_OP_UPDATE:
		return "update";
	case EVENT_OP_DELETE:
		return "delete";
	case EVENT_OP_SNAPSHOT:
		return "snapshot";
	}
	return NULL;
}

int event_op_parse(const char *text)
{
	for (int op = EVENT_OP_CREATE; op <= EVENT_OP_SNAPSHOT; op++)
		if (text && strcmp(text, event_op_name((enum event_op)op)) == 0)
			return op;
	return -1;
}

const char *event_side_name(enum event_side side)
{
	switch (side) {
	case EVENT_SIDE_CE:
		return "ce";
	case EVENT_SIDE_FO:
		return "fo";
	}
	return NULL;
}

int event_side_parse(const char *text)
{
	for (int side = EVENT_SIDE_CE; side <= EVENT_SIDE_FO; side++)
		if (text && strcmp(text, event_side_name((enum event_side)side)) == 0)
			return side;
	return -1;
}

/* Checks a string: present, valid UTF-8, min..max code points. */
static int check_text(const char *s, const char *path, size_t min, size_t max, char *err, size_t errlen)
{
	if (!s)
		return seterr(err, errlen, path, "is missing");
	size_t len = strlen(s), off;
	if (utf8_validate(s, len, &off) < 0)
		return seterr(err, errlen, path, "invalid UTF-8 at byte %zu of the string", off);
	size_t cp = utf8_codepoints(s, len);
	if (cp < min || cp > max) {
		char got[80];
		render_text(s, got, sizeof(got), 1);
		if (min == 0)
			return seterr(err, errlen, path, "must be at most %zu characters, got %zu", max, cp);
		return seterr(err, errlen, path, "must be %zu to %zu characters long, got %zu: %s", min, max, cp,
			      got);
	}
	return 0;
}

/* Checks that a JSON number is integral and in [min, max]; stores it in *out. */
static int check_json_int(const cJSON *item, const char *path, long long min, long long max, int64_t *out,
			  char *err, size_t errlen)
{
	if (cJSON_IsNumber(item)) {
		double d = item->valuedouble;
		if (isfinite(d) && d == floor(d) && d >= (double)min && d <= (double)max) {
			*out = (int64_t)d;
			return 0;
		}
	}
	char got[80];
	describe(item, got, sizeof(got));
	return seterr(err, errlen, path, "must be an integer from %lld to %lld, got %s", min, max, got);
}

static int is_hex64(const char *s)
{
	for (int i = 0; i < SHA256_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[SHA256_HEX_LEN] == '\0';
}

/* Validates a key object; on success fills fields[] (borrowed pointers) and *count. */
static int check_key(const cJSON *key, const cJSON **fields, size_t *count, char *err, size_t errlen)
{
	char path[200], got[80];
	if (!key)
		return seterr(err, errlen, "key", "is missing");
	if (!cJSON_IsObject(key)) {
		describe(key, got, sizeof(got));
		return seterr(err, errlen, "key", "must be an object, got %s", got);
	}
	size_t n = 0;
	for (const cJSON *f = key->child; f; f = f->next) {
		if (n == EVENT_KEY_FIELDS_MAX)
			return seterr(err, errlen, "key", "must have at most %d fields", EVENT_KEY_FIELDS_MAX);
		fields[n++] = f;
	}
	if (n == 0)
		return seterr(err, errlen, "key", "must have at least one field");
	for (size_t i = 0; i < n; i++) {
		const cJSON *f = fields[i];
		if (!f->string)
			return seterr(err, errlen, "key", "field without a name");
		char name[80];
		render_name(f->string, name, sizeof(name));
		snprintf(path, sizeof(path), "key.%s", name);
		size_t off;
		if (utf8_validate(f->string, strlen(f->string), &off) < 0)
			return seterr(err, errlen, "key", "field name is not valid UTF-8 (byte %zu)", off);
		size_t cp = utf8_codepoints(f->string, strlen(f->string));
		if (cp < 1 || cp > EVENT_KEY_NAME_MAX)
			return seterr(err, errlen, path, "field name must be 1 to %d characters long, got %zu",
				      EVENT_KEY_NAME_MAX, cp);
		for (size_t j = 0; j < i; j++)
			if (strcmp(fields[j]->string, f->string) == 0)
				return seterr(err, errlen, path, "duplicate field");
		if (cJSON_IsString(f) && f->valuestring) {
			if (check_text(f->valuestring, path, 0, EVENT_KEY_VALUE_MAX, err, errlen) < 0)
				return -1;
		} else if (cJSON_IsNumber(f)) {
			int64_t v;
			if (check_json_int(f, path, -EVENT_INT_MAX, EVENT_INT_MAX, &v, err, errlen) < 0)
				return -1;
		} else {
			describe(f, got, sizeof(got));
			return seterr(err, errlen, path, "must be a string or an integer, got %s", got);
		}
	}
	*count = n;
	return 0;
}

/* Checks what encode and decode need of data: UTF-8 strings and names, finite numbers, depth. */
static int check_data_tree(const cJSON *item, char *path, size_t pathlen, int depth, char *err, size_t errlen)
{
	if (depth > EVENT_DATA_DEPTH_MAX)
		return seterr(err, errlen, path, "nested deeper than %d levels", EVENT_DATA_DEPTH_MAX);
	if (cJSON_IsString(item)) {
		if (!item->valuestring)
			return seterr(err, errlen, path, "string without a value");
		return check_text(item->valuestring, path, 0, SIZE_MAX, err, errlen);
	}
	if (cJSON_IsNumber(item)) {
		if (!isfinite(item->valuedouble))
			return seterr(err, errlen, path, "number must be finite");
		return 0;
	}
	if (!cJSON_IsObject(item) && !cJSON_IsArray(item))
		return 0;
	size_t base = strlen(path);
	size_t index = 0;
	for (const cJSON *c = item->child; c; c = c->next, index++) {
		if (cJSON_IsObject(item)) {
			if (!c->string)
				return seterr(err, errlen, path, "member without a name");
			if (check_text(c->string, path, 0, SIZE_MAX, err, errlen) < 0)
				return -1;
			char name[80];
			render_name(c->string, name, sizeof(name));
			snprintf(path + base, pathlen - base, ".%s", name);
		} else {
			snprintf(path + base, pathlen - base, "[%zu]", index);
		}
		if (check_data_tree(c, path, pathlen, depth + 1, err, errlen) < 0)
			return -1;
		path[base] = '\0';
	}
	return 0;
}

/* The rules that concern only side, entity, key and version: the inputs of the id. */
static int check_id_inputs(const struct event *ev, const cJSON **fields, size_t *count, char *err,
			   size_t errlen)
{
	if (!event_side_name(ev->source.side))
		return seterr(err, errlen, "source.side", "must be \"ce\" or \"fo\"");
	if (check_text(ev->source.entity, "source.entity", 1, EVENT_ENTITY_MAX, err, errlen) < 0)
		return -1;
	if (ev->source.version < 0 || ev->source.version > EVENT_INT_MAX)
		return seterr(err, errlen, "source.version", "must be an integer from 0 to %lld, got %" PRId64,
			      EVENT_INT_MAX, ev->source.version);
	return check_key(ev->key, fields, count, err, errlen);
}

static int cmp_field_name(const void *a, const void *b)
{
	const cJSON *const *fa = a;
	const cJSON *const *fb = b;
	return strcmp((*fa)->string, (*fb)->string);
}

/* Appends s with '%', ',' and '=' percent-encoded; counts only when out is NULL. */
static size_t put_escaped(char *out, const char *s)
{
	size_t n = 0;
	for (; *s; s++) {
		if (*s == '%' || *s == ',' || *s == '=') {
			if (out)
				snprintf(out + n, 4, "%%%02X", (unsigned char)*s);
			n += 3;
		} else {
			if (out)
				out[n] = *s;
			n++;
		}
	}
	return n;
}

/* Builds the canonical key from already validated, unsorted fields. */
static int build_key_string(const cJSON **fields, size_t count, char **out, char *err, size_t errlen)
{
	const cJSON *sorted[EVENT_KEY_FIELDS_MAX];
	char nums[EVENT_KEY_FIELDS_MAX][24];
	memcpy(sorted, fields, count * sizeof(*fields));
	qsort(sorted, count, sizeof(*sorted), cmp_field_name);
	size_t total = 0;
	for (size_t i = 0; i < count; i++) {
		const cJSON *f = sorted[i];
		if (cJSON_IsNumber(f))
			snprintf(nums[i], sizeof(nums[i]), "%" PRId64, (int64_t)f->valuedouble);
		const char *value = cJSON_IsNumber(f) ? nums[i] : f->valuestring;
		total += put_escaped(NULL, f->string) + 1 + put_escaped(NULL, value) + (i > 0);
	}
	char *s = malloc(total + 1);
	if (!s)
		return seterr(err, errlen, "key", "out of memory");
	size_t o = 0;
	for (size_t i = 0; i < count; i++) {
		const cJSON *f = sorted[i];
		if (i > 0)
			s[o++] = ',';
		o += put_escaped(s + o, f->string);
		s[o++] = '=';
		o += put_escaped(s + o, cJSON_IsNumber(f) ? nums[i] : f->valuestring);
	}
	s[o] = '\0';
	*out = s;
	return 0;
}

int event_key_string(const cJSON *key, char **out, char *err, size_t errlen)
{
	const cJSON *fields[EVENT_KEY_FIELDS_MAX];
	size_t count = 0;
	if (check_key(key, fields, &count, err, errlen) < 0)
		return -1;
	return build_key_string(fields, count, out, err, errlen);
}

/* Hex id of the already validated inputs into hex. */
static int id_of(const struct event *ev, const cJSON **fields, size_t count, char hex[SHA256_HEX_LEN + 1],
		 char *err, size_t errlen)
{
	char *key = NULL;
	if (build_key_string(fields, count, &key, err, errlen) < 0)
		return -1;
	char version[24];
	snprintf(version, sizeof(version), "%" PRId64, ev->source.version);
	const char *side = event_side_name(ev->source.side);
	struct sha256_ctx ctx;
	uint8_t digest[SHA256_DIGEST_LEN];
	sha256_init(&ctx);
	sha256_update(&ctx, side, strlen(side));
	sha256_update(&ctx, "\n", 1);
	sha256_update(&ctx, ev->source.entity, strlen(ev->source.entity));
	sha256_update(&ctx, "\n", 1);
	sha256_update(&ctx, key, strlen(key));
	sha256_update(&ctx, "\n", 1);
	sha256_update(&ctx, version, strlen(version));
	sha256_final(&ctx, digest);
	sha256_to_hex(digest, hex);
	free(key);
	return 0;
}

int event_compute_id(struct event *ev, char *err, size_t errlen)
{
	const cJSON *fields[EVENT_KEY_FIELDS_MAX];
	size_t count = 0;
	if (check_id_inputs(ev, fields, &count, err, errlen) < 0)
		return -1;
	return id_of(ev, fields, count, ev->id, err, errlen);
}

int event_validate(const struct event *ev, int flags, char *err, size_t errlen)
{
	const cJSON *fields[EVENT_KEY_FIELDS_MAX];
	size_t count = 0;
	if (ev->v != EVENT_FORMAT_VERSION)
		return seterr(err, errlen, "v", "must be %d, got %d", EVENT_FORMAT_VERSION, ev->v);
	if (!is_hex64(ev->id))
		return seterr(err, errlen, "id", "must be 64 lowercase hex digits");
	if (check_id_inputs(ev, fields, &count, err, errlen) < 0)
		return -1;
	if (check_text(ev->source.env, "source.env", 1, EVENT_ENV_MAX, err, errlen) < 0 ||
	    check_text(ev->source.entity_set, "source.entity_set", 1, EVENT_ENTITY_MAX, err, errlen) < 0)
		return -1;
	if (ev->source.ts < 0 || ev->source.ts > EVENT_INT_MAX)
		return seterr(err, errlen, "source.ts", "must be an integer from 0 to %lld, got %" PRId64,
			      EVENT_INT_MAX, ev->source.ts);
	if (ev->source.user && check_text(ev->source.user, "source.user", 0, EVENT_USER_MAX, err, errlen) < 0)
		return -1;
	if (ev->source.own != 0 && ev->source.own != 1)
		return seterr(err, errlen, "source.own", "must be true or false");
	const char *op = event_op_name(ev->op);
	if (!op)
		return seterr(err, errlen, "op", "must be \"create\", \"update\", \"delete\" or \"snapshot\"");

	int data_null = !ev->data || cJSON_IsNull(ev->data);
	if (!data_null && !cJSON_IsObject(ev->data)) {
		char got[80];
		describe(ev->data, got, sizeof(got));
		return seterr(err, errlen, "data", "must be an object or null, got %s", got);
	}
	if (ev->op == EVENT_OP_DELETE && !data_null)
		return seterr(err, errlen, "data", "must be null when op is delete");
	if (ev->op != EVENT_OP_DELETE && data_null)
		return seterr(err, errlen, "data", "must be an object when op is %s", op);
	if (!data_null) {
		char path[256] = "data";
		if (check_data_tree(ev->data, path, sizeof(path), 1, err, errlen) < 0)
			return -1;
	}

	if (ev->changed) {
		if (!cJSON_IsArray(ev->changed)) {
			char got[80];
			describe(ev->changed, got, sizeof(got));
			return seterr(err, errlen, "changed", "must be an array of field names, got %s", got);
		}
		size_t i = 0;
		for (const cJSON *c = ev->changed->child; c; c = c->next, i++) {
			char path[32];
			snprintf(path, sizeof(path), "changed[%zu]", i);
			if (i == EVENT_CHANGED_MAX)
				return seterr(err, errlen, "changed", "must have at most %d entries",
					      EVENT_CHANGED_MAX);
			if (!cJSON_IsString(c) || !c->valuestring) {
				char got[80];
				describe(c, got, sizeof(got));
				return seterr(err, errlen, path, "must be a string, got %s", got);
			}
			if (check_text(c->valuestring, path, 1, EVENT_FIELD_NAME_MAX, err, errlen) < 0)
				return -1;
		}
	}

	if (ev->has_txn) {
		if (check_text(ev->txn.id, "txn.id", 1, EVENT_TXN_ID_MAX, err, errlen) < 0)
			return -1;
		if (ev->txn.total < 1 || ev->txn.total > EVENT_TXN_TOTAL_MAX)
			return seterr(err, errlen, "txn.total", "must be an integer from 1 to %d, got %d",
				      EVENT_TXN_TOTAL_MAX, ev->txn.total);
		if (ev->txn.order < 1 || ev->txn.order > ev->txn.total)
			return seterr(err, errlen, "txn.order", "must be an integer from 1 to txn.total (%d), got %d",
				      ev->txn.total, ev->txn.order);
	}

	if (!(flags & EVENT_SKIP_ID_CHECK)) {
		char expect[SHA256_HEX_LEN + 1];
		if (id_of(ev, fields, count, expect, err, errlen) < 0)
			return -1;
		if (strcmp(expect, ev->id) != 0)
			return seterr(err, errlen, "id",
				      "does not match sha256 of side, entity, key and version (expected %s)", expect);
	}
	return 0;
}

void event_clear(struct event *ev)
{
	if (!ev)
		return;
	free(ev->source.env);
	free(ev->source.entity);
	free(ev->source.entity_set);
	free(ev->source.user);
	cJSON_Delete(ev->key);
	cJSON_Delete(ev->data);
	cJSON_Delete(ev->changed);
	free(ev->txn.id);
	memset(ev, 0, sizeof(*ev));
}

/* ---- decoding ---- */

static const char *const TOP_MEMBERS[] = { "v", "id", "source", "op", "key", "data", "changed", "txn", NULL };
static const char *const TOP_REQUIRED[] = { "v", "id", "source", "op", "key", "data", NULL };
static const char *const SOURCE_MEMBERS[] = { "side", "env", "entity", "entity_set", "version",
					      "ts", "user", "own", NULL };
static const char *const SOURCE_REQUIRED[] = { "side", "env", "entity", "entity_set", "version", "ts", NULL };
static const char *const TXN_MEMBERS[] = { "id", "total", "order", NULL };

static int in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return 1;
	return 0;
}

/*
 * Checks an envelope object's members: all known, none twice, all required present. `prefix` is
 * "" at the top level, else "source." / "txn.".
 */
static int check_members(const cJSON *obj, const char *prefix, const char *const *known,
			 const char *const *required, char *err, size_t errlen)
{
	char path[160], name[80];
	for (const cJSON *c = obj->child; c; c = c->next) {
		render_name(c->string, name, sizeof(name));
		snprintf(path, sizeof(path), "%s%s", prefix, name);
		if (!in_list(known, c->string))
			return seterr(err, errlen, path, "unknown member");
		for (const cJSON *p = obj->child; p != c; p = p->next)
			if (strcmp(p->string, c->string) == 0)
				return seterr(err, errlen, path, "duplicate member");
	}
	for (; *required; required++) {
		if (!cJSON_GetObjectItemCaseSensitive(obj, *required)) {
			snprintf(path, sizeof(path), "%s%s", prefix, *required);
			return seterr(err, errlen, path, "required member is missing");
		}
	}
	return 0;
}

/* A member that must be a string; returns a copy in *out (caller frees). */
static int take_string(const cJSON *obj, const char *member, const char *path, char **out, char *err,
		       size_t errlen)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, member);
	if (!cJSON_IsString(item) || !item->valuestring) {
		char got[80];
		describe(item, got, sizeof(got));
		return seterr(err, errlen, path, "must be a string, got %s", got);
	}
	*out = strdup(item->valuestring);
	if (!*out)
		return seterr(err, errlen, path, "out of memory");
	return 0;
}

static int take_object(const cJSON *obj, const char *member, const cJSON **out, char *err, size_t errlen)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, member);
	if (!cJSON_IsObject(item)) {
		char got[80];
		describe(item, got, sizeof(got));
		return seterr(err, errlen, member, "must be an object, got %s", got);
	}
	*out = item;
	return 0;
}

static int take_enum(const cJSON *obj, const char *member, const char *path, int (*parse)(const char *),
		     const char *allowed, int *out, char *err, size_t errlen)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, member);
	int v = cJSON_IsString(item) ? parse(item->valuestring) : -1;
	if (v < 0) {
		char got[80];
		describe(item, got, sizeof(got));
		return seterr(err, errlen, path, "must be one of %s, got %s", allowed, got);
	}
	*out = v;
	return 0;
}

static int decode_source(const cJSON *src, struct event *ev, char *err, size_t errlen)
{
	int side = 0;
	int64_t v;
	if (check_members(src, "source.", SOURCE_MEMBERS, SOURCE_REQUIRED, err, errlen) < 0 ||
	    take_enum(src, "side", "source.side", event_side_parse, "\"ce\", \"fo\"", &side, err, errlen) < 0 ||
	    take_string(src, "env", "source.env", &ev->source.env, err, errlen) < 0 ||
	    take_string(src, "entity", "source.entity", &ev->source.entity, err, errlen) < 0 ||
	    take_string(src, "entity_set", "source.entity_set", &ev->source.entity_set, err, errlen) < 0)
		return -1;
	ev->source.side = (enum event_side)side;
	if (check_json_int(cJSON_GetObjectItemCaseSensitive(src, "version"), "source.version", 0, EVENT_INT_MAX,
			   &v, err, errlen) < 0)
		return -1;
	ev->source.version = v;
	if (check_json_int(cJSON_GetObjectItemCaseSensitive(src, "ts"), "source.ts", 0, EVENT_INT_MAX, &v, err,
			   errlen) < 0)
		return -1;
	ev->source.ts = v;
	if (cJSON_GetObjectItemCaseSensitive(src, "user") &&
	    take_string(src, "user", "source.user", &ev->source.user, err, errlen) < 0)
		return -1;
	const cJSON *own = cJSON_GetObjectItemCaseSensitive(src, "own");
	if (own) {
		if (!cJSON_IsBool(own)) {
			char got[80];
			describe(own, got, sizeof(got));
			return seterr(err, errlen, "source.own", "must be true or false, got %s", got);
		}
		ev->source.own = cJSON_IsTrue(own) ? 1 : 0;
	}
	return 0;
}

static int decode_txn(const cJSON *txn, struct event *ev, char *err, size_t errlen)
{
	int64_t v;
	if (check_members(txn, "txn.", TXN_MEMBERS, TXN_MEMBERS, err, errlen) < 0 ||
	    take_string(txn, "id", "txn.id", &ev->txn.id, err, errlen) < 0)
		return -1;
	if (check_json_int(cJSON_GetObjectItemCaseSensitive(txn, "total"), "txn.total", 1, EVENT_TXN_TOTAL_MAX,
			   &v, err, errlen) < 0)
		return -1;
	ev->txn.total = (int)v;
	if (check_json_int(cJSON_GetObjectItemCaseSensitive(txn, "order"), "txn.order", 1, EVENT_TXN_TOTAL_MAX,
			   &v, err, errlen) < 0)
		return -1;
	ev->txn.order = (int)v;
	ev->has_txn = 1;
	return 0;
}

/* Fills ev from the parsed root; detaches key, data and changed from root into ev. */
static int decode_tree(cJSON *root, struct event *ev, char *err, size_t errlen)
{
	const cJSON *obj = NULL;
	int64_t v;
	int op = 0;
	if (!cJSON_IsObject(root)) {
		char got[80];
		describe(root, got, sizeof(got));
		return seterr(err, errlen, "payload", "must be a JSON object, got %s", got);
	}
	if (check_members(root, "", TOP_MEMBERS, TOP_REQUIRED, err, errlen) < 0)
		return -1;
	if (check_json_int(cJSON_GetObjectItemCaseSensitive(root, "v"), "v", 0, EVENT_INT_MAX, &v, err, errlen) < 0)
		return -1;
	if (v != EVENT_FORMAT_VERSION)
		return seterr(err, errlen, "v", "unsupported envelope version %" PRId64 " (this build reads %d)", v,
			      EVENT_FORMAT_VERSION);
	ev->v = (int)v;

	const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
	if (!cJSON_IsString(id) || !id->valuestring || !is_hex64(id->valuestring)) {
		char got[80];
		describe(id, got, sizeof(got));
		return seterr(err, errlen, "id", "must be 64 lowercase hex digits, got %s", got);
	}
	memcpy(ev->id, id->valuestring, SHA256_HEX_LEN + 1);

	if (take_object(root, "source", &obj, err, errlen) < 0 || decode_source(obj, ev, err, errlen) < 0)
		return -1;
	if (take_enum(root, "op", "op", event_op_parse, "\"create\", \"update\", \"delete\", \"snapshot\"", &op,
		      err, errlen) < 0)
		return -1;
	ev->op = (enum event_op)op;
	if (take_object(root, "key", &obj, err, errlen) < 0)
		return -1;

	const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
	if (!cJSON_IsObject(data) && !cJSON_IsNull(data)) {
		char got[80];
		describe(data, got, sizeof(got));
		return seterr(err, errlen, "data", "must be an object or null, got %s", got);
	}
	const cJSON *changed = cJSON_GetObjectItemCaseSensitive(root, "changed");
	if (changed && !cJSON_IsArray(changed)) {
		char got[80];
		describe(changed, got, sizeof(got));
		return seterr(err, errlen, "changed", "must be an array of field names, got %s", got);
	}
	const cJSON *txn = cJSON_GetObjectItemCaseSensitive(root, "txn");
	if (txn) {
		if (take_object(root, "txn", &obj, err, errlen) < 0 || decode_txn(obj, ev, err, errlen) < 0)
			return -1;
	}

	ev->key = cJSON_DetachItemFromObjectCaseSensitive(root, "key");
	if (cJSON_IsObject(data))
		ev->data = cJSON_DetachItemFromObjectCaseSensitive(root, "data");
	if (changed)
		ev->changed = cJSON_DetachItemFromObjectCaseSensitive(root, "changed");
	return 0;
}

int event_decode(const void *buf, size_t len, size_t max_bytes, int flags, struct event *out, char *err,
		 size_t errlen)
{
	int rc = -1;
	cJSON *root = NULL;
	size_t off = 0;
	char why[96];

	memset(out, 0, sizeof(*out));
	if (max_bytes == 0)
		max_bytes = EVENT_MAX_BYTES;
	if (len > max_bytes) {
		seterr(err, errlen, "payload", "%zu bytes exceeds the %zu-byte cap", len, max_bytes);
		goto out;
	}
	if (!buf || len == 0) {
		seterr(err, errlen, "payload", "is empty");
		goto out;
	}
	if (utf8_validate(buf, len, &off) < 0) {
		seterr(err, errlen, "payload", "invalid UTF-8 at byte %zu", off);
		goto out;
	}
	if (jsoncheck_validate(buf, len, &off, why, sizeof(why)) < 0) {
		seterr(err, errlen, "payload", "not valid JSON at byte %zu of %zu: %s", off, len, why);
		goto out;
	}
	root = cJSON_ParseWithLength(buf, len);
	if (!root) {
		seterr(err, errlen, "payload", "could not be parsed (%zu bytes; out of memory?)", len);
		goto out;
	}
	if (decode_tree(root, out, err, errlen) < 0)
		goto out;
	if (event_validate(out, flags, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	cJSON_Delete(root);
	if (rc < 0)
		event_clear(out);
	return rc;
}

/* ---- encoding ---- */

/*
 * The encoder writes JSON with jsonout rather than through cJSON's printer: cJSON prints numbers
 * with 15 significant digits whenever that reads back within two units in the last place, so
 * 9007199254740991 would come out as 9.00719925474099e+15 and change the value. jsonout writes
 * every number so that it reads back to exactly the same double.
 */
static void put_int(struct strbuf *b, int64_t v)
{
	char tmp[24];
	snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	strbuf_puts(b, tmp);
}

/* A member name and colon, preceded by a comma unless it is the first member. */
static void put_member(struct strbuf *b, const char *name, int first)
{
	if (!first)
		strbuf_put(b, ",", 1);
	jsonout_string(b, name);
	strbuf_put(b, ":", 1);
}

int event_encode(const struct event *ev, char **out, size_t *outlen, char *err, size_t errlen)
{
	int rc = -1;
	struct strbuf b = { .max = EVENT_MAX_BYTES };
	int bad_value = 0;

	*out = NULL;
	*outlen = 0;
	if (event_validate(ev, 0, err, errlen) < 0)
		goto out;

	strbuf_put(&b, "{", 1);
	put_member(&b, "v", 1);
	put_int(&b, ev->v);
	put_member(&b, "id", 0);
	jsonout_string(&b, ev->id);
	put_member(&b, "source", 0);
	strbuf_put(&b, "{", 1);
	put_member(&b, "side", 1);
	jsonout_string(&b, event_side_name(ev->source.side));
	put_member(&b, "env", 0);
	jsonout_string(&b, ev->source.env);
	put_member(&b, "entity", 0);
	jsonout_string(&b, ev->source.entity);
	put_member(&b, "entity_set", 0);
	jsonout_string(&b, ev->source.entity_set);
	put_member(&b, "version", 0);
	put_int(&b, ev->source.version);
	put_member(&b, "ts", 0);
	put_int(&b, ev->source.ts);
	if (ev->source.user) {
		put_member(&b, "user", 0);
		jsonout_string(&b, ev->source.user);
	}
	if (ev->source.own) {
		put_member(&b, "own", 0);
		strbuf_puts(&b, "true");
	}
	strbuf_put(&b, "}", 1);
	put_member(&b, "op", 0);
	jsonout_string(&b, event_op_name(ev->op));
	put_member(&b, "key", 0);
	strbuf_put(&b, "{", 1);
	for (const cJSON *f = ev->key->child; f; f = f->next) {
		put_member(&b, f->string, f == ev->key->child);
		if (cJSON_IsNumber(f))
			put_int(&b, (int64_t)f->valuedouble);
		else
			jsonout_string(&b, f->valuestring);
	}
	strbuf_put(&b, "}", 1);
	put_member(&b, "data", 0);
	if (!ev->data || cJSON_IsNull(ev->data))
		strbuf_puts(&b, "null");
	else
		bad_value |= jsonout_value(&b, ev->data);
	if (ev->changed) {
		put_member(&b, "changed", 0);
		bad_value |= jsonout_value(&b, ev->changed);
	}
	if (ev->has_txn) {
		put_member(&b, "txn", 0);
		strbuf_put(&b, "{", 1);
		put_member(&b, "id", 1);
		jsonout_string(&b, ev->txn.id);
		put_member(&b, "total", 0);
		put_int(&b, ev->txn.total);
		put_member(&b, "order", 0);
		put_int(&b, ev->txn.order);
		strbuf_put(&b, "}", 1);
	}
	strbuf_put(&b, "}", 1);

	if (bad_value) {
		seterr(err, errlen, "payload", "data or changed holds a value JSON cannot carry");
		goto out;
	}
	if (b.failed == STRBUF_OOM) {
		seterr(err, errlen, "payload", "out of memory while encoding");
		goto out;
	}
	if (b.failed == STRBUF_TOO_BIG) {
		seterr(err, errlen, "payload", "%zu bytes exceeds the %zu-byte cap", b.len, EVENT_MAX_BYTES);
		goto out;
	}
	*out = b.p;
	*outlen = b.len;
	b.p = NULL;
	rc = 0;
out:
	free(b.p);
	return rc;
}
