#include "capture_fo.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture_ce.h"
#include "jsoncheck.h"
#include "odata.h"
#include "utf8.h"

#define NAME_MAX_LEN 100

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

void capture_fo_table_clear(struct capture_fo_table *t)
{
	if (!t)
		return;
	free(t->set);
	free(t->event_name);
	for (size_t i = 0; i < t->nkeys; i++)
		free(t->keys[i]);
	free(t->modified);
	memset(t, 0, sizeof(*t));
}

int capture_fo_table_parse(const char *spec, struct capture_fo_table *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	const char *at = spec ? strchr(spec, '@') : NULL;
	const char *colon = at ? strchr(at, ':') : NULL;
	if (!at || !colon) {
		snprintf(err, errlen, "table \"%.100s\": expected <entity set>@<data event name>:<key>+<key>...[:<modified field>]",
			 spec ? spec : "");
		return -1;
	}
	size_t slen = (size_t)(at - spec), elen = (size_t)(colon - at - 1);
	if (!valid_name(spec, slen) || !valid_name(at + 1, elen)) {
		snprintf(err, errlen, "table \"%.100s\": names must be 1-100 letters, digits or _", spec);
		return -1;
	}
	out->set = dup_n(spec, slen);
	out->event_name = dup_n(at + 1, elen);
	if (!out->set || !out->event_name)
		goto oom;
	const char *p = colon + 1;
	const char *colon2 = strchr(p, ':');
	const char *kend = colon2 ? colon2 : p + strlen(p);
	while (p < kend) {
		const char *plus = memchr(p, '+', (size_t)(kend - p));
		size_t n = plus ? (size_t)(plus - p) : (size_t)(kend - p);
		if (!valid_name(p, n)) {
			snprintf(err, errlen, "table \"%.100s\": bad key field name", spec);
			goto fail;
		}
		if (out->nkeys == CAPTURE_FO_KEYS_MAX) {
			snprintf(err, errlen, "table \"%.100s\": more than %d key fields", spec, CAPTURE_FO_KEYS_MAX);
			goto fail;
		}
		out->keys[out->nkeys] = dup_n(p, n);
		if (!out->keys[out->nkeys])
			goto oom;
		out->nkeys++;
		p += n + (plus ? 1 : 0);
		if (plus && p == kend) {
			snprintf(err, errlen, "table \"%.100s\": empty key field name", spec);
			goto fail;
		}
	}
	if (out->nkeys == 0) {
		snprintf(err, errlen, "table \"%.100s\": no key fields", spec);
		goto fail;
	}
	if (colon2) {
		if (!valid_name(colon2 + 1, strlen(colon2 + 1))) {
			snprintf(err, errlen, "table \"%.100s\": bad modified-time field name", spec);
			goto fail;
		}
		out->modified = strdup(colon2 + 1);
		if (!out->modified)
			goto oom;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	capture_fo_table_clear(out);
	return -1;
}

void capture_fo_notice_clear(struct capture_fo_notice *n)
{
	if (!n)
		return;
	cJSON_Delete(n->key);
	memset(n, 0, sizeof(*n));
}

static const cJSON *kv_find(const cJSON *list, const char *name)
{
	const cJSON *kv;
	cJSON_ArrayForEach(kv, list)
	{
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
		if (cJSON_IsString(k) && strcasecmp(k->valuestring, name) == 0)
			return cJSON_GetObjectItemCaseSensitive(kv, "value");
	}
	return NULL;
}

static int add_key_value(cJSON *key, const char *name, const cJSON *v)
{
	if (cJSON_IsString(v))
		return cJSON_AddStringToObject(key, name, v->valuestring) ? 0 : -1;
	if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) <= (double)EVENT_INT_MAX)
		return cJSON_AddNumberToObject(key, name, v->valuedouble) ? 0 : -1;
	return 1;
}

int capture_fo_event_parse(const struct capture_fo_table *tables, size_t ntables, const char *body, size_t len,
			   struct capture_fo_notice *out, char *err, size_t errlen)
{
	cJSON *doc = NULL;
	int rc = -1;
	char why[128];
	size_t off = 0;

	memset(out, 0, sizeof(*out));
	if (utf8_validate(body, len, &off) != 0) {
		snprintf(err, errlen, "body: not valid UTF-8 at byte %zu", off);
		goto out;
	}
	if (jsoncheck_validate(body, len, &off, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "body: not valid JSON at byte %zu: %s", off, why);
		goto out;
	}
	doc = cJSON_ParseWithLength(body, len);
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen, "body: not a data event object");
		goto out;
	}
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "MessageName");
	if (!cJSON_IsString(msg)) {
		snprintf(err, errlen, "MessageName: missing (not a data event)");
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
	while (ti < ntables && strcasecmp(tables[ti].event_name, pen->valuestring) != 0)
		ti++;
	if (ti == ntables) {
		snprintf(err, errlen, "PrimaryEntityName: entity \"%.100s\" is not captured", pen->valuestring);
		goto out;
	}
	const struct capture_fo_table *t = &tables[ti];
	out->table = ti;
	const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc, "InputParameters");
	const cJSON *target = cJSON_IsArray(inputs) ? kv_find(inputs, "Target") : NULL;
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(target, "Attributes");
	if (!cJSON_IsArray(attrs)) {
		snprintf(err, errlen, "InputParameters: no Target entity with Attributes");
		goto out;
	}
	out->key = cJSON_CreateObject();
	if (!out->key) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < t->nkeys; i++) {
		char name[NAME_MAX_LEN + 8];
		snprintf(name, sizeof(name), "mserp_%s", t->keys[i]);
		const cJSON *v = kv_find(attrs, name);
		int r = v ? add_key_value(out->key, t->keys[i], v) : 1;
		if (r < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		if (r > 0) {
			snprintf(err, errlen, "Target: key field %s missing or not a string/integer", name);
			goto out;
		}
	}
	const cJSON *corr = cJSON_GetObjectItemCaseSensitive(doc, "CorrelationId");
	if (cJSON_IsString(corr)) {
		if (strlen(corr->valuestring) > CAPTURE_FO_CORRELATION_MAX) {
			snprintf(err, errlen, "CorrelationId: longer than %d characters", CAPTURE_FO_CORRELATION_MAX);
			goto out;
		}
		snprintf(out->correlation_id, sizeof(out->correlation_id), "%s", corr->valuestring);
	}
	out->in_transaction = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "IsInTransaction"));
	const cJSON *when = cJSON_GetObjectItemCaseSensitive(doc, "OperationCreatedOn");
	long long ts = 0;
	if (cJSON_IsString(when) && capture_ce_parse_date(when->valuestring, &ts) == 0 && ts > 0)
		out->ts_ms = ts;
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(doc, "InitiatingUserId");
	if (cJSON_IsString(user) && strlen(user->valuestring) < sizeof(out->user))
		snprintf(out->user, sizeof(out->user), "%s", user->valuestring);
	rc = 0;
out:
	if (rc != 0)
		capture_fo_notice_clear(out);
	cJSON_Delete(doc);
	return rc;
}

int capture_fo_key_path(const struct capture_fo_table *t, const cJSON *key, char **out, char *err, size_t errlen)
{
	struct odata_key_part parts[CAPTURE_FO_KEYS_MAX];
	char nums[CAPTURE_FO_KEYS_MAX][32];
	*out = NULL;
	for (size_t i = 0; i < t->nkeys; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(key, t->keys[i]);
		parts[i].name = t->keys[i];
		parts[i].enum_type = NULL;
		if (cJSON_IsString(v)) {
			parts[i].value = v->valuestring;
			parts[i].kind = ODATA_KIND_STRING;
		} else if (cJSON_IsNumber(v)) {
			snprintf(nums[i], sizeof(nums[i]), "%lld", (long long)v->valuedouble);
			parts[i].value = nums[i];
			parts[i].kind = ODATA_KIND_INT;
		} else {
			snprintf(err, errlen, "key: field %s missing", t->keys[i]);
			return -1;
		}
	}
	return odata_key_build(parts, t->nkeys, out, err, errlen);
}

cJSON *capture_fo_row_key(const struct capture_fo_table *t, const cJSON *row, char *err, size_t errlen)
{
	cJSON *key = cJSON_CreateObject();
	if (!key) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < t->nkeys; i++) {
		int r = add_key_value(key, t->keys[i], cJSON_GetObjectItemCaseSensitive(row, t->keys[i]));
		if (r != 0) {
			snprintf(err, errlen, r < 0 ? "out of memory" : "%s entity: key field %s missing or not a string/integer",
				 t->set, t->keys[i]);
			cJSON_Delete(key);
			return NULL;
		}
	}
	return key;
}

cJSON *capture_fo_image(const cJSON *row)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *it;
	if (!o)
		return NULL;
	cJSON_ArrayForEach(it, row)
	{
		if (!it->string || strchr(it->string, '@'))
			continue;
		cJSON *c = cJSON_Duplicate(it, 1);
		if (!c) {
			cJSON_Delete(o);
			return NULL;
		}
		cJSON_AddItemToObject(o, it->string, c);
	}
	return o;
}

static int cmp_items(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
	return strcmp(x->string ? x->string : "", y->string ? y->string : "");
}

/* Feeds a canonical serialisation of v into the hash: objects with sorted members. */
static int hash_value(struct sha256_ctx *h, const cJSON *v)
{
	if (cJSON_IsObject(v)) {
		size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
		const cJSON **items = calloc(n ? n : 1, sizeof(*items));
		const cJSON *it;
		if (!items)
			return -1;
		cJSON_ArrayForEach(it, v) items[i++] = it;
		qsort(items, n, sizeof(*items), cmp_items);
		sha256_update(h, "{", 1);
		for (i = 0; i < n; i++) {
			const char *name = items[i]->string ? items[i]->string : "";
			sha256_update(h, name, strlen(name) + 1); /* NUL separates name and value */
			if (hash_value(h, items[i]) != 0) {
				free(items);
				return -1;
			}
		}
		sha256_update(h, "}", 1);
		free(items);
		return 0;
	}
	if (cJSON_IsArray(v)) {
		const cJSON *it;
		sha256_update(h, "[", 1);
		cJSON_ArrayForEach(it, v)
		{
			if (hash_value(h, it) != 0)
				return -1;
		}
		sha256_update(h, "]", 1);
		return 0;
	}
	if (cJSON_IsString(v)) {
		sha256_update(h, "s", 1);
		sha256_update(h, v->valuestring, strlen(v->valuestring) + 1);
		return 0;
	}
	if (cJSON_IsNumber(v)) {
		char buf[40];
		int n = snprintf(buf, sizeof(buf), "n%.17g", v->valuedouble);
		sha256_update(h, buf, (size_t)n + 1);
		return 0;
	}
	sha256_update(h, cJSON_IsTrue(v) ? "t" : cJSON_IsFalse(v) ? "f" : "z", 1);
	return 0;
}

int capture_fo_image_hash(const cJSON *image, char hex[SHA256_HEX_LEN + 1])
{
	struct sha256_ctx h;
	uint8_t d[SHA256_DIGEST_LEN];
	sha256_init(&h);
	if (hash_value(&h, image) != 0)
		return -1;
	sha256_final(&h, d);
	sha256_to_hex(d, hex);
	return 0;
}

int capture_fo_event(const char *env, const char *own_user_id, const struct capture_fo_table *t, int op,
		     const cJSON *key, const cJSON *data, long long version, long long ts_ms, const char *user,
		     struct event *out, char *err, size_t errlen)
{
	char e[256];
	memset(out, 0, sizeof(*out));
	out->v = EVENT_FORMAT_VERSION;
	out->source.side = EVENT_SIDE_FO;
	out->source.env = strdup(env && *env ? env : "default");
	out->source.entity = strdup(t->set);
	out->source.entity_set = strdup(t->set);
	if (!out->source.env || !out->source.entity || !out->source.entity_set)
		goto oom;
	if (user && *user) {
		out->source.user = strdup(user);
		if (!out->source.user)
			goto oom;
		if (own_user_id && strcasecmp(own_user_id, user) == 0)
			out->source.own = 1;
	}
	out->source.version = version;
	out->source.ts = ts_ms > 0 && ts_ms <= EVENT_INT_MAX ? ts_ms : 0;
	out->op = (enum event_op)op;
	out->key = cJSON_Duplicate(key, 1);
	if (!out->key)
		goto oom;
	if (data) {
		out->data = cJSON_Duplicate(data, 1);
		if (!out->data)
			goto oom;
	}
	if (event_compute_id(out, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "%s event: %s", t->set, e);
		event_clear(out);
		return -1;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	event_clear(out);
	return -1;
}
