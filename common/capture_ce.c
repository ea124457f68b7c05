#include "capture_ce.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsoncheck.h"
#include "utf8.h"

#define NAME_MAX_LEN 100

/* ---- small helpers ------------------------------------------------------------------------ */

static int valid_name(const char *s, size_t len)
{
	if (len == 0 || len > NAME_MAX_LEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* Copies a GUID (with or without braces) lower-cased into out[37]; returns 0 or -1. */
static int guid_norm(const char *in, char out[CAPTURE_GUID_LEN + 1])
{
	size_t len = in ? strlen(in) : 0;
	if (len == CAPTURE_GUID_LEN + 2 && in[0] == '{' && in[len - 1] == '}') {
		in++;
		len -= 2;
	}
	if (len != CAPTURE_GUID_LEN)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return -1;
		} else if (!isxdigit((unsigned char)c)) {
			return -1;
		}
		out[i] = (char)tolower((unsigned char)c);
	}
	out[len] = '\0';
	return 0;
}

int capture_ce_parse_date(const char *text, long long *ms)
{
	if (!text || strncmp(text, "/Date(", 6) != 0)
		return -1;
	const char *p = text + 6;
	char *end;
	errno = 0;
	long long v = strtoll(p, &end, 10);
	if (end == p || errno != 0)
		return -1;
	p = end;
	if (*p == '+' || *p == '-') {
		p++;
		for (int i = 0; i < 4; i++, p++)
			if (!isdigit((unsigned char)*p))
				return -1;
	}
	if (strcmp(p, ")/") != 0)
		return -1;
	*ms = v;
	return 0;
}

char *capture_ce_format_time(long long ms, char *out, size_t outlen)
{
	long long secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
	time_t t = (time_t)secs;
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		if (outlen)
			out[0] = '\0';
	}
	return out;
}

static long long days_from_civil(long long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

static int digits(const char *p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return 0;
}

int capture_ce_parse_iso(const char *s, long long *ms)
{
	int y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0, sign = 0;
	if (!s || strlen(s) < 20)
		return -1;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    s[10] != 'T' || digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
	    digits(s + 17, 2, &sec))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	const char *p = s + 19;
	if (*p == '.') {
		p++;
		int n = 0;
		while (isdigit((unsigned char)*p)) {
			if (n < 3)
				frac = frac * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0)
			return -1;
		for (; n < 3; n++)
			frac *= 10;
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
			return -1;
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	*ms = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400LL + h * 3600LL + mi * 60LL + sec) -
	       sign * (oh * 3600LL + om * 60LL)) * 1000LL + frac;
	return 0;
}

/* ---- tables ------------------------------------------------------------------------------- */

void capture_ce_table_clear(struct capture_ce_table *t)
{
	if (!t)
		return;
	free(t->logical);
	free(t->set);
	free(t->id_field);
	for (size_t i = 0; i < t->nalt; i++)
		free(t->alt[i]);
	memset(t, 0, sizeof(*t));
}

int capture_ce_table_parse(const char *spec, struct capture_ce_table *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const char *at = spec ? strchr(spec, '@') : NULL;
	if (!at) {
		snprintf(err, errlen, "table \"%.100s\": expected <logical name>@<entity set>[:<key>+<key>...]",
			 spec ? spec : "");
		return -1;
	}
	const char *colon = strchr(at, ':');
	size_t llen = (size_t)(at - spec);
	size_t slen = colon ? (size_t)(colon - at - 1) : strlen(at + 1);
	if (!valid_name(spec, llen) || !valid_name(at + 1, slen)) {
		snprintf(err, errlen, "table \"%.100s\": names must be 1-100 letters, digits or _", spec);
		return -1;
	}
	out->logical = dup_n(spec, llen);
	out->set = dup_n(at + 1, slen);
	if (out->logical && asprintf(&out->id_field, "%sid", out->logical) < 0)
		out->id_field = NULL;
	if (!out->logical || !out->set || !out->id_field)
		goto oom;
	if (colon) {
		const char *p = colon + 1;
		for (;;) {
			const char *plus = strchr(p, '+');
			size_t n = plus ? (size_t)(plus - p) : strlen(p);
			if (!valid_name(p, n)) {
				snprintf(err, errlen, "table \"%.100s\": bad key field name", spec);
				goto fail;
			}
			if (out->nalt == CAPTURE_CE_ALT_KEYS_MAX) {
				snprintf(err, errlen, "table \"%.100s\": more than %d key fields", spec,
					 CAPTURE_CE_ALT_KEYS_MAX);
				goto fail;
			}
			out->alt[out->nalt] = dup_n(p, n);
			if (!out->alt[out->nalt])
				goto oom;
			out->nalt++;
			if (!plus)
				break;
			p = plus + 1;
		}
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	capture_ce_table_clear(out);
	return -1;
}

/* ---- rows -> events ----------------------------------------------------------------------- */

/* Non-zero when s is exactly a calendar date "YYYY-MM-DD" (the Web API form of a date-only column). */
static int is_date_only(const char *s)
{
	int y, m, d;
	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) != 0 || digits(s + 5, 2, &m) != 0 ||
	    digits(s + 8, 2, &d) != 0)
		return 0;
	return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/*
 * The image: row without annotations and nulls, and without versionnumber (it is source.version).
 * Date-only values ("YYYY-MM-DD", Edm.Date in Web API rows) become midnight UTC date-times
 * ("YYYY-MM-DDT00:00:00Z"), the form a webhook image gives for the same column (its
 * "/Date(ms)/" carries no type), so both paths give one image.
 */
static cJSON *row_image(const cJSON *row)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *it;
	if (!o)
		return NULL;
	cJSON_ArrayForEach(it, row)
	{
		if (!it->string || strchr(it->string, '@') || cJSON_IsNull(it) || strcmp(it->string, "versionnumber") == 0)
			continue;
		cJSON *c;
		if (cJSON_IsString(it) && is_date_only(it->valuestring)) {
			char dt[24];
			snprintf(dt, sizeof(dt), "%sT00:00:00Z", it->valuestring);
			c = cJSON_CreateString(dt);
		} else {
			c = cJSON_Duplicate(it, 1);
		}
		if (!c) {
			cJSON_Delete(o);
			return NULL;
		}
		cJSON_AddItemToObject(o, it->string, c);
	}
	return o;
}

static int key_value(cJSON *key, const char *name, const cJSON *v)
{
	if (cJSON_IsString(v)) {
		return cJSON_AddStringToObject(key, name, v->valuestring) ? 0 : -1;
	}
	if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) <= (double)EVENT_INT_MAX)
		return cJSON_AddNumberToObject(key, name, v->valuedouble) ? 0 : -1;
	return 1; /* no usable value: left out */
}

static int fill_source(const struct capture_ce_ctx *ctx, const struct capture_ce_table *t, struct event *ev,
		       const char *user)
{
	ev->v = EVENT_FORMAT_VERSION;
	ev->source.side = EVENT_SIDE_CE;
	ev->source.env = strdup(ctx && ctx->env ? ctx->env : "default");
	ev->source.entity = strdup(t->logical);
	ev->source.entity_set = strdup(t->set);
	if (user && *user) {
		ev->source.user = strdup(user);
		if (!ev->source.user)
			return -1;
		if (ctx && ctx->own_user_id && strcasecmp(ctx->own_user_id, user) == 0)
			ev->source.own = 1;
	}
	return ev->source.env && ev->source.entity && ev->source.entity_set ? 0 : -1;
}

/* A versionnumber / RowVersion value (a number, or digits in a string as the webhook sends it):
 * the version, or -1 when absent or not a non-negative integer. */
static long long version_value(const cJSON *v)
{
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= (double)EVENT_INT_MAX &&
	    v->valuedouble == floor(v->valuedouble))
		return (long long)v->valuedouble;
	if (cJSON_IsString(v)) {
		char *end;
		errno = 0;
		long long n = strtoll(v->valuestring, &end, 10);
		if (end != v->valuestring && *end == '\0' && n >= 0 && n <= EVENT_INT_MAX && errno == 0)
			return n;
	}
	return -1;
}

int capture_ce_row_event(const struct capture_ce_ctx *ctx, const struct capture_ce_table *t, const cJSON *row,
			 int op, struct event *out, char *err, size_t errlen)
{
	char guid[CAPTURE_GUID_LEN + 1];
	char e[256];
	memset(out, 0, sizeof(*out));

	if (!cJSON_IsObject(row)) {
		snprintf(err, errlen, "%s row: not an object", t->set);
		goto fail;
	}
	const cJSON *idv = cJSON_GetObjectItemCaseSensitive(row, t->id_field);
	if (!cJSON_IsString(idv) || guid_norm(idv->valuestring, guid) != 0) {
		snprintf(err, errlen, "%s row: %s missing or not a GUID", t->set, t->id_field);
		goto fail;
	}
	long long version = version_value(cJSON_GetObjectItemCaseSensitive(row, "versionnumber"));
	if (version < 0) {
		snprintf(err, errlen, "%s row %s: versionnumber missing or invalid", t->set, guid);
		goto fail;
	}
	const cJSON *mod = cJSON_GetObjectItemCaseSensitive(row, "modifiedon");
	const cJSON *cre = cJSON_GetObjectItemCaseSensitive(row, "createdon");
	long long ts = 0;
	if (cJSON_IsString(mod))
		(void)capture_ce_parse_iso(mod->valuestring, &ts);
	if (ts < 0)
		ts = 0;
	if (op == 0)
		op = (cJSON_IsString(mod) && cJSON_IsString(cre) && strcmp(mod->valuestring, cre->valuestring) == 0)
			     ? EVENT_OP_CREATE
			     : EVENT_OP_UPDATE;
	const cJSON *by = cJSON_GetObjectItemCaseSensitive(row, "_modifiedby_value");
	if (fill_source(ctx, t, out, cJSON_IsString(by) ? by->valuestring : NULL) != 0)
		goto oom;
	out->source.version = version;
	out->source.ts = ts;
	out->op = (enum event_op)op;
	out->key = cJSON_CreateObject();
	if (!out->key || !cJSON_AddStringToObject(out->key, t->id_field, guid))
		goto oom;
	for (size_t i = 0; i < t->nalt; i++) {
		if (strcmp(t->alt[i], t->id_field) == 0)
			continue;
		if (key_value(out->key, t->alt[i], cJSON_GetObjectItemCaseSensitive(row, t->alt[i])) < 0)
			goto oom;
	}
	out->data = row_image(row);
	if (!out->data)
		goto oom;
	if (event_compute_id(out, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "%s row %s: %s", t->set, guid, e);
		goto fail;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	event_clear(out);
	return -1;
}

int capture_ce_delete_event(const struct capture_ce_ctx *ctx, const struct capture_ce_table *t, const char *id,
			    long long ts_ms, const char *user, struct event *out, char *err, size_t errlen)
{
	char guid[CAPTURE_GUID_LEN + 1];
	memset(out, 0, sizeof(*out));
	if (guid_norm(id, guid) != 0) {
		snprintf(err, errlen, "%s delete: id is not a GUID", t->set);
		return -1;
	}
	if (fill_source(ctx, t, out, user) != 0)
		goto oom;
	out->source.ts = ts_ms > 0 && ts_ms <= EVENT_INT_MAX ? ts_ms : 0;
	out->op = EVENT_OP_DELETE;
	out->key = cJSON_CreateObject();
	if (!out->key || !cJSON_AddStringToObject(out->key, t->id_field, guid))
		goto oom;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	event_clear(out);
	return -1;
}

/* ---- delta pages --------------------------------------------------------------------------- */

void capture_ce_delta_free(struct capture_ce_delta *d)
{
	if (!d)
		return;
	cJSON_Delete(d->doc);
	free(d->entries);
	memset(d, 0, sizeof(*d));
}

static int parse_strict(const char *body, size_t len, cJSON **out, char *err, size_t errlen)
{
	char e[128];
	size_t off = 0;
	if (utf8_validate(body, len, &off) != 0) {
		snprintf(err, errlen, "body: not valid UTF-8 at byte %zu", off);
		return -1;
	}
	if (jsoncheck_validate(body, len, &off, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "body: not valid JSON at byte %zu: %s", off, e);
		return -1;
	}
	*out = cJSON_ParseWithLength(body, len);
	if (!*out) {
		snprintf(err, errlen, "body: not valid JSON");
		return -1;
	}
	return 0;
}

int capture_ce_delta_parse(const struct capture_ce_table *t, const char *body, size_t len,
			   struct capture_ce_delta *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (parse_strict(body, len, &out->doc, err, errlen) != 0)
		return -1;
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(out->doc, "value");
	if (!cJSON_IsObject(out->doc) || !cJSON_IsArray(value)) {
		snprintf(err, errlen, "%s page: no \"value\" array", t->set);
		goto fail;
	}
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(out->doc, "@odata.nextLink");
	const cJSON *delta = cJSON_GetObjectItemCaseSensitive(out->doc, "@odata.deltaLink");
	if (cJSON_IsString(next))
		out->next_link = next->valuestring;
	if (cJSON_IsString(delta))
		out->delta_link = delta->valuestring;
	if (!!out->next_link == !!out->delta_link) {
		snprintf(err, errlen, "%s page: expected exactly one of @odata.nextLink and @odata.deltaLink", t->set);
		goto fail;
	}
	size_t n = (size_t)cJSON_GetArraySize(value);
	out->entries = calloc(n ? n : 1, sizeof(*out->entries));
	if (!out->entries) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	const cJSON *row;
	cJSON_ArrayForEach(row, value)
	{
		struct capture_ce_delta_entry *en = &out->entries[out->n];
		if (!cJSON_IsObject(row)) {
			snprintf(err, errlen, "%s page: value[%zu] is not an object", t->set, out->n);
			goto fail;
		}
		const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(row, "@odata.context");
		const cJSON *rid = cJSON_GetObjectItemCaseSensitive(row, "id");
		int deleted = cJSON_IsString(ctx) && strstr(ctx->valuestring, "$deletedEntity") != NULL;
		if (!deleted && cJSON_IsString(rid) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(row, "reason")) &&
		    !cJSON_GetObjectItemCaseSensitive(row, t->id_field))
			deleted = 1;
		if (deleted) {
			if (!cJSON_IsString(rid) || guid_norm(rid->valuestring, en->id) != 0) {
				snprintf(err, errlen, "%s page: value[%zu]: deleted entry without a GUID id", t->set, out->n);
				goto fail;
			}
			en->deleted = 1;
		} else {
			const cJSON *idv = cJSON_GetObjectItemCaseSensitive(row, t->id_field);
			if (!cJSON_IsString(idv) || guid_norm(idv->valuestring, en->id) != 0) {
				snprintf(err, errlen, "%s page: value[%zu]: %s missing or not a GUID", t->set, out->n,
					 t->id_field);
				goto fail;
			}
			en->row = row;
		}
		out->n++;
	}
	return 0;
fail:
	capture_ce_delta_free(out);
	return -1;
}

/* ---- webhooks ------------------------------------------------------------------------------ */

static const char *type_of(const cJSON *o)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "__type");
	return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

cJSON *capture_ce_attributes_to_row(const cJSON *attrs, char *err, size_t errlen)
{
	cJSON *row = NULL;
	const cJSON *kv;
	char name[NAME_MAX_LEN + 16];

	if (!cJSON_IsArray(attrs)) {
		snprintf(err, errlen, "Attributes: not a list");
		return NULL;
	}
	row = cJSON_CreateObject();
	if (!row)
		goto oom;
	cJSON_ArrayForEach(kv, attrs)
	{
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
		if (!cJSON_IsString(k) || !v || !valid_name(k->valuestring, strlen(k->valuestring))) {
			snprintf(err, errlen, "Attributes: an entry without a valid key/value");
			goto fail;
		}
		const char *key = k->valuestring;
		cJSON *nv = NULL;
		const char *out_name = key;
		if (cJSON_IsNull(v))
			continue;
		if (cJSON_IsObject(v)) {
			const char *ty = type_of(v);
			const cJSON *val = cJSON_GetObjectItemCaseSensitive(v, "Value");
			const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "Id");
			const cJSON *ln = cJSON_GetObjectItemCaseSensitive(v, "LogicalName");
			if (starts(ty, "EntityReference:") || (!ty && cJSON_IsString(id) && cJSON_IsString(ln))) {
				char g[CAPTURE_GUID_LEN + 1];
				if (!cJSON_IsString(id) || guid_norm(id->valuestring, g) != 0) {
					snprintf(err, errlen, "Attributes.%s: EntityReference without a GUID Id", key);
					goto fail;
				}
				snprintf(name, sizeof(name), "_%s_value", key);
				out_name = name;
				nv = cJSON_CreateString(g);
			} else if (starts(ty, "OptionSetValue:") || starts(ty, "Money:")) {
				if (!cJSON_IsNumber(val)) {
					snprintf(err, errlen, "Attributes.%s: %s without a numeric Value", key,
						 starts(ty, "Money:") ? "Money" : "OptionSetValue");
					goto fail;
				}
				nv = cJSON_CreateNumber(val->valuedouble);
			} else {
				nv = cJSON_Duplicate(v, 1);
			}
		} else if (cJSON_IsString(v)) {
			long long ms;
			char buf[40];
			if (capture_ce_parse_date(v->valuestring, &ms) == 0)
				nv = cJSON_CreateString(capture_ce_format_time(ms, buf, sizeof(buf)));
			else
				nv = cJSON_Duplicate(v, 1);
		} else {
			nv = cJSON_Duplicate(v, 1);
		}
		if (!nv)
			goto oom;
		cJSON_DeleteItemFromObjectCaseSensitive(row, out_name);
		cJSON_AddItemToObject(row, out_name, nv);
	}
	return row;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	cJSON_Delete(row);
	return NULL;
}

/* The value of key `name` in a key/value list, or NULL. */
static const cJSON *kv_find(const cJSON *list, const char *name)
{
	const cJSON *kv;
	cJSON_ArrayForEach(kv, list)
	{
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
		if (cJSON_IsString(k) && strcmp(k->valuestring, name) == 0)
			return cJSON_GetObjectItemCaseSensitive(kv, "value");
	}
	return NULL;
}

/* The version of the first pre-image (its versionnumber attribute, else its RowVersion), or -1. */
static long long pre_image_version(const cJSON *pres)
{
	const cJSON *first = cJSON_IsArray(pres) ? cJSON_GetArrayItem(pres, 0) : NULL;
	const cJSON *image = first ? cJSON_GetObjectItemCaseSensitive(first, "value") : NULL;
	if (!cJSON_IsObject(image))
		return -1;
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(image, "Attributes");
	long long v = cJSON_IsArray(attrs) ? version_value(kv_find(attrs, "versionnumber")) : -1;
	return v >= 0 ? v : version_value(cJSON_GetObjectItemCaseSensitive(image, "RowVersion"));
}

void capture_ce_hook_clear(struct capture_ce_hook *h)
{
	if (!h)
		return;
	event_clear(&h->ev);
	memset(h, 0, sizeof(*h));
}

int capture_ce_webhook_parse(const struct capture_ce_ctx *ctx, const struct capture_ce_table *tables,
			     size_t ntables, const char *body, size_t len, int size_exceeded,
			     struct capture_ce_hook *out, char *err, size_t errlen)
{
	cJSON *doc = NULL, *row = NULL;
	int rc = -1;
	char e[256];

	memset(out, 0, sizeof(*out));
	if (parse_strict(body, len, &doc, err, errlen) != 0)
		goto out;
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen, "body: not a RemoteExecutionContext object");
		goto out;
	}
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "MessageName");
	if (!cJSON_IsString(msg)) {
		snprintf(err, errlen, "MessageName: missing (not a RemoteExecutionContext)");
		goto out;
	}
	if (strcmp(msg->valuestring, "Create") == 0)
		out->op = EVENT_OP_CREATE;
	else if (strcmp(msg->valuestring, "Update") == 0)
		out->op = EVENT_OP_UPDATE;
	else if (strcmp(msg->valuestring, "Delete") == 0)
		out->op = EVENT_OP_DELETE;
	else {
		snprintf(err, errlen, "MessageName: \"%.64s\" is not captured (Create, Update, Delete)", msg->valuestring);
		goto out;
	}
	const cJSON *pen = cJSON_GetObjectItemCaseSensitive(doc, "PrimaryEntityName");
	if (!cJSON_IsString(pen)) {
		snprintf(err, errlen, "PrimaryEntityName: missing");
		goto out;
	}
	size_t ti = 0;
	while (ti < ntables && strcmp(tables[ti].logical, pen->valuestring) != 0)
		ti++;
	if (ti == ntables) {
		snprintf(err, errlen, "PrimaryEntityName: table \"%.100s\" is not captured", pen->valuestring);
		goto out;
	}
	const struct capture_ce_table *t = &tables[ti];
	out->table = ti;
	const cJSON *pid = cJSON_GetObjectItemCaseSensitive(doc, "PrimaryEntityId");
	if (!cJSON_IsString(pid) || guid_norm(pid->valuestring, out->id) != 0) {
		snprintf(err, errlen, "PrimaryEntityId: missing or not a GUID");
		goto out;
	}
	const cJSON *corr = cJSON_GetObjectItemCaseSensitive(doc, "CorrelationId");
	if (cJSON_IsString(corr)) {
		if (strlen(corr->valuestring) > CAPTURE_CORRELATION_MAX) {
			snprintf(err, errlen, "CorrelationId: longer than %d characters", CAPTURE_CORRELATION_MAX);
			goto out;
		}
		snprintf(out->correlation_id, sizeof(out->correlation_id), "%s", corr->valuestring);
	}
	out->in_transaction = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "IsInTransaction"));
	const cJSON *when = cJSON_GetObjectItemCaseSensitive(doc, "OperationCreatedOn");
	long long ts = 0;
	if (cJSON_IsString(when) && capture_ce_parse_date(when->valuestring, &ts) != 0)
		ts = 0;
	out->ts_ms = ts > 0 ? ts : 0;
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(doc, "InitiatingUserId");
	if (!cJSON_IsString(user))
		user = cJSON_GetObjectItemCaseSensitive(doc, "UserId");
	if (cJSON_IsString(user) && guid_norm(user->valuestring, out->user) != 0)
		out->user[0] = '\0';

	if (out->op == EVENT_OP_DELETE) {
		if (capture_ce_delete_event(ctx, t, out->id, out->ts_ms, out->user, &out->ev, err, errlen) != 0)
			goto out;
		/* a pre-image (when the step registers one) gives the row's last version: the delete
		 * orders after it even when that update's event is still on its way */
		long long pre = pre_image_version(cJSON_GetObjectItemCaseSensitive(doc, "PreEntityImages"));
		if (pre >= 0 && pre < EVENT_INT_MAX)
			out->ev.source.version = pre + 1;
		out->action = CAPTURE_CE_HOOK_DELETE;
		rc = 0;
		goto out;
	}

	/* the image: PostImage, else the Target of a Create */
	const cJSON *image = NULL;
	const cJSON *posts = cJSON_GetObjectItemCaseSensitive(doc, "PostEntityImages");
	if (cJSON_IsArray(posts) && cJSON_GetArraySize(posts) > 0) {
		const cJSON *first = cJSON_GetArrayItem(posts, 0);
		image = cJSON_GetObjectItemCaseSensitive(first, "value");
		if (!cJSON_IsObject(image)) {
			snprintf(err, errlen, "PostEntityImages[0]: no entity value");
			goto out;
		}
	}
	const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc, "InputParameters");
	const cJSON *target = cJSON_IsArray(inputs) ? kv_find(inputs, "Target") : NULL;
	if (!size_exceeded && !cJSON_IsArray(inputs)) {
		snprintf(err, errlen, "InputParameters: missing (not a RemoteExecutionContext)");
		goto out;
	}
	if (!image && out->op == EVENT_OP_CREATE && cJSON_IsObject(target))
		image = target;
	if (!image) {
		out->action = CAPTURE_CE_HOOK_REREAD;
		rc = 0;
		goto out;
	}
	row = capture_ce_attributes_to_row(cJSON_GetObjectItemCaseSensitive(image, "Attributes"), err, errlen);
	if (!row)
		goto out;
	if (!cJSON_GetObjectItemCaseSensitive(row, t->id_field))
		cJSON_AddStringToObject(row, t->id_field, out->id);
	if (!cJSON_GetObjectItemCaseSensitive(row, "versionnumber")) {
		const cJSON *rv = cJSON_GetObjectItemCaseSensitive(image, "RowVersion");
		if (!cJSON_IsString(rv) && cJSON_IsObject(target))
			rv = cJSON_GetObjectItemCaseSensitive(target, "RowVersion");
		if (!cJSON_IsString(rv)) {
			/* no version in the image: the row must be read back */
			out->action = CAPTURE_CE_HOOK_REREAD;
			rc = 0;
			goto out;
		}
		cJSON_AddStringToObject(row, "versionnumber", rv->valuestring);
	}
	if (capture_ce_row_event(ctx, t, row, out->op, &out->ev, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "image: %s", e);
		goto out;
	}
	if (out->ev.source.ts == 0 && out->ts_ms > 0) {
		out->ev.source.ts = out->ts_ms;
	}
	/* the webhook names the initiating user even when the image has no modifiedby */
	if (!out->ev.source.user && out->user[0]) {
		out->ev.source.user = strdup(out->user);
		if (!out->ev.source.user) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		if (ctx && ctx->own_user_id && strcasecmp(ctx->own_user_id, out->user) == 0)
			out->ev.source.own = 1;
	}
	out->action = CAPTURE_CE_HOOK_EVENT;
	rc = 0;
out:
	if (rc != 0)
		capture_ce_hook_clear(out);
	cJSON_Delete(row);
	cJSON_Delete(doc);
	return rc;
}
