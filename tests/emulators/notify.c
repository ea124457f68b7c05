#include "notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"

#define XRM_NS "http://schemas.microsoft.com/xrm/2011/Contracts"
#define URL_MAX 2048
#define MSG_SIZE_LIMIT (256 * 1024) /* Dataverse strips images above this and says so in a header */
#define BACKOFF_CAP_MS 30000
#define BLOCKED_MAX 64
#define FO_OPTION_BASE 200000000L /* enum value -> virtual-table option value [unverified] */

struct reg {
	char id[37];
	char *entity; /* as registered; NULL = every entity */
	const struct schema_entity *ent;
	unsigned messages;
	char *url;      /* as registered, shown in stats */
	char *post_url; /* with the auth query parameter */
	enum notify_auth auth;
	char *header; /* "Name: value" for NOTIFY_AUTH_HEADER */
	unsigned long delivered, failed, retried, pending;
	int refs;    /* queued or in-flight deliveries */
	int removed; /* unregistered; freed when refs drops to 0 */
};

struct item {
	struct item *next;
	struct reg *reg;
	uint64_t record; /* hash of entity + record identity: per-record order */
	char *body;
	char entity[128];
	char message[16];
	char correlation[37];
	int size_exceeded;
	int attempts;
	long long not_before_ms;
};

struct notify {
	struct notify_options opt;
	char *organization, *organization_name, *organization_id, *business_unit_id;
	pthread_mutex_t mu;
	pthread_cond_t wake; /* new work or stop */
	pthread_cond_t idle; /* queue empty and nothing in flight */
	pthread_t thread;
	int thread_started;
	int stop; /* set under mu; read without it (atomically) by the transfer callback */
	struct reg **regs;
	size_t n_regs;
	struct item *head, *tail;
	size_t queued;
	int in_flight;
	unsigned long overflow, build_failed;
	uint64_t guid_state;
};

/* ---- small helpers ---- */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; s && *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void guid_from(uint64_t a, uint64_t b, char out[37])
{
	a = (a & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;
	b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;
	snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)((a >> 16) & 0xFFFF),
		 (unsigned)(a & 0xFFFF), (unsigned)(b >> 48), (unsigned long long)(b & 0xFFFFFFFFFFFFULL));
}

/* A fresh GUID; caller holds n->mu or owns n exclusively. */
static void new_guid(struct notify *n, char out[37])
{
	uint64_t a = splitmix64(&n->guid_state), b = splitmix64(&n->guid_state);
	guid_from(a, b, out);
}

static const char *message_name(enum notify_message m)
{
	switch (m) {
	case NOTIFY_CREATE:
		return "Create";
	case NOTIFY_UPDATE:
		return "Update";
	case NOTIFY_DELETE:
		return "Delete";
	default:
		return NULL;
	}
}

/* Appends name=value (value percent-encoded) to a URL. */
static char *url_with_param(const char *url, const char *name, const char *value)
{
	size_t cap = strlen(url) + strlen(name) + strlen(value) * 3 + 4, n;
	char *out = malloc(cap);
	static const char hex[] = "0123456789ABCDEF";

	if (out == NULL)
		return NULL;
	n = (size_t)snprintf(out, cap, "%s%c%s=", url, strchr(url, '?') ? '&' : '?', name);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '_' || *p == '.' || *p == '~') {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	out[n] = '\0';
	return out;
}

/* ---- value conversion ---- */

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static long long days_from_civil(int y, int m, int d)
{
	long long era, yoe, doy, doe;
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* ISO 8601 date or date-time (offset Z / +-hh:mm) to Unix ms; -1 on a malformed value. */
static int iso_to_ms(const char *s, long long *out)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, oh = 0, om = 0, sign = 1;
	const char *p;

	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d))
		return -1;
	p = s + 10;
	if (*p == 'T') {
		if (digits(p + 1, 2, &h) || p[3] != ':' || digits(p + 4, 2, &mi))
			return -1;
		p += 6;
		if (*p == ':') {
			if (digits(p + 1, 2, &sec))
				return -1;
			p += 3;
			if (*p == '.') {
				int scale = 100;
				p++;
				while (*p >= '0' && *p <= '9') {
					ms += (*p - '0') * scale;
					scale /= 10;
					p++;
				}
			}
		}
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p == '-' ? -1 : 1;
			if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
				return -1;
			p += 6;
		}
	}
	if (*p != '\0')
		return -1;
	*out = ((days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec) -
		sign * (oh * 3600LL + om * 60LL)) *
		       1000LL +
	       ms;
	return 0;
}

static cJSON *date_value(const char *iso)
{
	long long ms;
	char buf[48];

	if (iso_to_ms(iso, &ms) != 0)
		return cJSON_CreateString(iso);
	snprintf(buf, sizeof(buf), "/Date(%lld)/", ms);
	return cJSON_CreateString(buf);
}

static cJSON *typed(const char *type, double value)
{
	char t[96];
	cJSON *o = cJSON_CreateObject();

	snprintf(t, sizeof(t), "%s:" XRM_NS, type);
	if (o == NULL || cJSON_AddStringToObject(o, "__type", t) == NULL || cJSON_AddNumberToObject(o, "Value", value) == NULL) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *entity_reference(const char *logical, const char *id)
{
	cJSON *o = cJSON_CreateObject();

	if (o == NULL)
		return NULL;
	cJSON_AddStringToObject(o, "__type", "EntityReference:" XRM_NS);
	cJSON_AddStringToObject(o, "Id", id);
	cJSON_AddItemToObject(o, "KeyAttributes", cJSON_CreateArray());
	cJSON_AddStringToObject(o, "LogicalName", logical);
	cJSON_AddNullToObject(o, "Name");
	cJSON_AddNullToObject(o, "RowVersion");
	return o;
}

static int kv_add(cJSON *list, const char *key, cJSON *value)
{
	cJSON *kv = cJSON_CreateObject();

	if (kv == NULL || value == NULL) {
		cJSON_Delete(kv);
		cJSON_Delete(value);
		return -1;
	}
	cJSON_AddStringToObject(kv, "key", key);
	cJSON_AddItemToObject(kv, "value", value);
	cJSON_AddItemToArray(list, kv);
	return 0;
}

/* The attribute name and typed value of one record property in a body (CE), or -1 to skip it. */
static int ce_attribute(const struct schema_entity *e, const cJSON *item, const char **name, cJSON **value)
{
	const struct schema_field *f;

	if (item->string == NULL || strchr(item->string, '@'))
		return -1; /* annotations */
	f = schema_field_by_value_name(e, item->string);
	if (f == NULL)
		f = schema_field(e, item->string);
	*name = f ? f->name : item->string;
	if (f == NULL || cJSON_IsNull(item)) {
		*value = cJSON_Duplicate(item, 1);
		return 0;
	}
	switch (f->type) {
	case SCHEMA_T_LOOKUP:
		*value = cJSON_IsString(item) ? entity_reference(f->target, item->valuestring) : cJSON_Duplicate(item, 1);
		return 0;
	case SCHEMA_T_PICKLIST:
	case SCHEMA_T_STATE:
	case SCHEMA_T_STATUS:
		*value = cJSON_IsNumber(item) ? typed("OptionSetValue", item->valuedouble) : cJSON_Duplicate(item, 1);
		return 0;
	case SCHEMA_T_MONEY:
		*value = cJSON_IsNumber(item) ? typed("Money", item->valuedouble) : cJSON_Duplicate(item, 1);
		return 0;
	case SCHEMA_T_DATETIME:
	case SCHEMA_T_DATE:
		*value = cJSON_IsString(item) ? date_value(item->valuestring) : cJSON_Duplicate(item, 1);
		return 0;
	default:
		*value = cJSON_Duplicate(item, 1);
		return 0;
	}
}

/* "mserp_" + lower-case field name: the virtual-table column name [unverified]. */
static void fo_name(const char *field, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "mserp_");
	for (const char *p = field; *p && n + 1 < len; p++)
		out[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	out[n < len ? n : len - 1] = '\0';
}

/* The typed value of an F&O property, or NULL to drop it (null dates, unknown enum members). */
static cJSON *fo_value(const struct schema_entity *e, const cJSON *item)
{
	const struct schema_field *f = schema_field(e, item->string);

	if (f == NULL)
		return cJSON_Duplicate(item, 1);
	if (f->type == SCHEMA_T_DATETIME || f->type == SCHEMA_T_DATE) {
		if (!cJSON_IsString(item) || strncmp(item->valuestring, "1900-01-01", 10) == 0)
			return NULL; /* F&O's empty date: dropped like NULL datetimes */
		return date_value(item->valuestring);
	}
	if (f->type == SCHEMA_T_ENUM && cJSON_IsString(item)) {
		const struct schema_option *m = schema_enum_member(f->enum_type, item->valuestring);
		return m ? typed("OptionSetValue", (double)(FO_OPTION_BASE + m->value)) : NULL;
	}
	if (cJSON_IsNull(item))
		return NULL;
	return cJSON_Duplicate(item, 1);
}

/* Is item's value different in `pre` (absent counts as different)? */
static int changed(const cJSON *pre, const cJSON *item)
{
	const cJSON *old;

	if (pre == NULL)
		return 1;
	old = cJSON_GetObjectItemCaseSensitive(pre, item->string);
	return old == NULL || !cJSON_Compare(old, item, 1);
}

/* Builds the attribute list of an image or Target. changed_only: only what differs from pre. */
static cJSON *attributes(const struct schema *s, const struct schema_entity *e, const cJSON *rec, const cJSON *pre,
			 int changed_only, const cJSON *keys)
{
	cJSON *list = cJSON_CreateArray();
	const cJSON *item;

	if (list == NULL)
		return NULL;
	if (s->flavour == SCHEMA_FO && keys) {
		cJSON_ArrayForEach(item, keys)
		{
			char name[160];
			cJSON *v;
			if (item->string == NULL)
				continue;
			fo_name(item->string, name, sizeof(name));
			v = fo_value(e, item);
			if (v && kv_add(list, name, v) != 0)
				goto fail;
		}
	}
	cJSON_ArrayForEach(item, rec)
	{
		const char *name;
		cJSON *v;
		if (item->string == NULL)
			continue;
		if (s->flavour == SCHEMA_CE) {
			int is_id = e->id_field && strcmp(item->string, e->id_field) == 0;
			if (changed_only && !is_id && !changed(pre, item))
				continue;
			if (ce_attribute(e, item, &name, &v) != 0)
				continue;
			if (kv_add(list, name, v) != 0)
				goto fail;
		} else {
			char fname[160];
			const struct schema_field *f = schema_field(e, item->string);
			if (strchr(item->string, '@'))
				continue;
			if (keys && cJSON_GetObjectItemCaseSensitive(keys, item->string))
				continue; /* already there */
			if (changed_only && !(f && f->is_key) && !changed(pre, item))
				continue;
			fo_name(item->string, fname, sizeof(fname));
			v = fo_value(e, item);
			if (v && kv_add(list, fname, v) != 0)
				goto fail;
		}
	}
	return list;
fail:
	cJSON_Delete(list);
	return NULL;
}

static cJSON *entity_object(const struct schema *s, const struct schema_entity *e, const char *id, const cJSON *rec,
			    const cJSON *pre, int changed_only, const cJSON *keys, int with_type, long long version)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *attrs = attributes(s, e, rec, pre, changed_only, keys);
	char rv[32];

	if (o == NULL || attrs == NULL) {
		cJSON_Delete(o);
		cJSON_Delete(attrs);
		return NULL;
	}
	if (with_type)
		cJSON_AddStringToObject(o, "__type", "Entity:" XRM_NS);
	cJSON_AddItemToObject(o, "Attributes", attrs);
	cJSON_AddNullToObject(o, "EntityState");
	cJSON_AddItemToObject(o, "FormattedValues", cJSON_CreateArray());
	cJSON_AddStringToObject(o, "Id", id);
	cJSON_AddItemToObject(o, "KeyAttributes", cJSON_CreateArray());
	cJSON_AddStringToObject(o, "LogicalName", e->event_name);
	cJSON_AddItemToObject(o, "RelatedEntities", cJSON_CreateArray());
	if (version > 0) {
		snprintf(rv, sizeof(rv), "%lld", version);
		cJSON_AddStringToObject(o, "RowVersion", rv);
	} else {
		cJSON_AddNullToObject(o, "RowVersion");
	}
	return o;
}

static const struct schema_entity *resolve(const struct schema *s, const char *name)
{
	const struct schema_entity *e = schema_entity_by_name(s, name);
	return e ? e : schema_entity_by_set(s, name);
}

/* Builds the body; step_id (may be NULL) is the registration's id for OwningExtension. */
static cJSON *build(const struct notify *n, const struct notify_change *c, const char *step_id, const char *correlation,
		    const char *operation_id, char *errbuf, size_t errlen)
{
	const struct schema *s = n->opt.schema;
	const struct schema_entity *e;
	const char *msg = message_name(c->message);
	const char *id = c->id && c->id[0] ? c->id : "00000000-0000-0000-0000-000000000000";
	const char *user = c->user_id ? c->user_id : "00000000-0000-0000-0000-000000000000";
	cJSON *root = NULL, *inputs, *target, *post_images, *pre_images, *outputs;
	char when[48];

	if (msg == NULL) {
		snprintf(errbuf, errlen, "notify: message must be one of Create, Update, Delete");
		return NULL;
	}
	e = c->entity ? resolve(s, c->entity) : NULL;
	if (e == NULL) {
		snprintf(errbuf, errlen, "notify: unknown entity \"%s\"", c->entity ? c->entity : "(null)");
		return NULL;
	}
	if (c->message != NOTIFY_DELETE && !cJSON_IsObject(c->post)) {
		snprintf(errbuf, errlen, "notify: %s of %s needs a post image", msg, e->logical_name);
		return NULL;
	}
	if (s->flavour == SCHEMA_FO && !cJSON_IsObject(c->keys)) {
		snprintf(errbuf, errlen, "notify: F&O %s of %s needs the key fields", msg, e->logical_name);
		return NULL;
	}
	snprintf(when, sizeof(when), "/Date(%lld)/", c->time_ms);

	root = cJSON_CreateObject();
	inputs = cJSON_CreateArray();
	post_images = cJSON_CreateArray();
	pre_images = cJSON_CreateArray();
	outputs = cJSON_CreateArray();
	if (root == NULL || inputs == NULL || post_images == NULL || pre_images == NULL || outputs == NULL) {
		cJSON_Delete(inputs);
		cJSON_Delete(post_images);
		cJSON_Delete(pre_images);
		cJSON_Delete(outputs);
		goto oom;
	}
	if (c->message == NOTIFY_DELETE) {
		if (s->flavour == SCHEMA_FO)
			target = entity_object(s, e, id, NULL, NULL, 0, c->keys, 1, 0);
		else
			target = entity_reference(e->event_name, id);
	} else {
		target = entity_object(s, e, id, c->post, c->pre, c->message == NOTIFY_UPDATE && c->pre != NULL,
				       c->keys, 1, c->version);
	}
	if (kv_add(inputs, "Target", target) != 0)
		goto oom_parts;
	if (s->flavour == SCHEMA_FO && c->pre && kv_add(inputs, "PreImage", entity_object(s, e, id, c->pre, NULL, 0, c->keys, 0, 0)) != 0)
		goto oom_parts;
	if (s->flavour == SCHEMA_CE) {
		if (c->post && c->message != NOTIFY_DELETE &&
		    kv_add(post_images, "PostImage", entity_object(s, e, id, c->post, NULL, 0, NULL, 0, c->version)) != 0)
			goto oom_parts;
		if (c->pre && kv_add(pre_images, "PreImage", entity_object(s, e, id, c->pre, NULL, 0, NULL, 0, 0)) != 0)
			goto oom_parts;
		if (c->message == NOTIFY_CREATE && kv_add(outputs, "id", cJSON_CreateString(id)) != 0)
			goto oom_parts;
	}

	/* members in the order Dataverse serialises them (alphabetical) */
	if (s->flavour == SCHEMA_CE)
		cJSON_AddStringToObject(root, "BusinessUnitId", n->business_unit_id);
	cJSON_AddStringToObject(root, "CorrelationId", correlation);
	cJSON_AddNumberToObject(root, "Depth", 1);
	cJSON_AddStringToObject(root, "InitiatingUserId", user);
	cJSON_AddItemToObject(root, "InputParameters", inputs);
	inputs = NULL;
	cJSON_AddBoolToObject(root, "IsExecutingOffline", 0);
	cJSON_AddBoolToObject(root, "IsInTransaction", c->in_transaction != 0);
	cJSON_AddBoolToObject(root, "IsOfflinePlayback", 0);
	cJSON_AddNumberToObject(root, "IsolationMode", 1);
	cJSON_AddStringToObject(root, "MessageName", msg);
	cJSON_AddNumberToObject(root, "Mode", 1);
	cJSON_AddStringToObject(root, "OperationCreatedOn", when);
	cJSON_AddStringToObject(root, "OperationId", operation_id);
	cJSON_AddStringToObject(root, "OrganizationId", n->organization_id);
	cJSON_AddStringToObject(root, "OrganizationName", n->organization_name);
	cJSON_AddItemToObject(root, "OutputParameters", outputs);
	outputs = NULL;
	{
		cJSON *ext = entity_reference("sdkmessageprocessingstep", step_id ? step_id : "00000000-0000-0000-0000-000000000000");
		if (ext == NULL)
			goto oom_parts;
		cJSON_DeleteItemFromObjectCaseSensitive(ext, "__type");
		cJSON_AddItemToObject(root, "OwningExtension", ext);
	}
	cJSON_AddNullToObject(root, "ParentContext");
	cJSON_AddItemToObject(root, "PostEntityImages", post_images);
	post_images = NULL;
	cJSON_AddItemToObject(root, "PreEntityImages", pre_images);
	pre_images = NULL;
	cJSON_AddStringToObject(root, "PrimaryEntityId", id);
	cJSON_AddStringToObject(root, "PrimaryEntityName", e->event_name);
	cJSON_AddNullToObject(root, "RequestId");
	cJSON_AddStringToObject(root, "SecondaryEntityName", "none");
	cJSON_AddItemToObject(root, "SharedVariables", cJSON_CreateArray());
	cJSON_AddNumberToObject(root, "Stage", 40);
	cJSON_AddStringToObject(root, "UserId", user);
	return root;
oom_parts:
	cJSON_Delete(inputs);
	cJSON_Delete(post_images);
	cJSON_Delete(pre_images);
	cJSON_Delete(outputs);
oom:
	cJSON_Delete(root);
	snprintf(errbuf, errlen, "notify: out of memory building the body");
	return NULL;
}

cJSON *notify_build_body(const struct notify *n, const struct notify_change *c, char *errbuf, size_t errlen)
{
	char corr[37], op[37];
	uint64_t st;

	if (n == NULL || c == NULL) {
		snprintf(errbuf, errlen, "notify: no notifier or change");
		return NULL;
	}
	/* a stand-alone body: ids derived from the change so the call has no side effects */
	st = fnv1a(fnv1a(0xcbf29ce484222325ULL, c->id), c->entity) ^ (uint64_t)c->time_ms;
	guid_from(splitmix64(&st), splitmix64(&st), op);
	if (c->correlation_id)
		snprintf(corr, sizeof(corr), "%s", c->correlation_id);
	else
		guid_from(splitmix64(&st), splitmix64(&st), corr);
	return build(n, c, NULL, corr, op, errbuf, errlen);
}

/* ---- queue ---- */

static void reg_unref(struct notify *n, struct reg *r)
{
	(void)n;
	if (--r->refs == 0 && r->removed) {
		free(r->entity);
		free(r->url);
		free(r->post_url);
		free(r->header);
		free(r);
	}
}

static void item_free(struct item *it)
{
	if (it == NULL)
		return;
	free(it->body);
	free(it);
}

static void signal_idle_if(struct notify *n)
{
	if (n->queued == 0 && !n->in_flight)
		pthread_cond_broadcast(&n->idle);
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
	(void)ptr;
	(void)ud;
	return size * nmemb;
}

static int abort_on_stop(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	const struct notify *n = ud;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return __atomic_load_n(&n->stop, __ATOMIC_RELAXED) ? 1 : 0;
}

/* One POST; returns the HTTP status, or 0 on a connection error / timeout. */
static long post(struct notify *n, CURL *curl, const struct reg *r, const struct item *it)
{
	struct curl_slist *h = NULL;
	char line[256];
	long status = 0;

	h = curl_slist_append(h, "Content-Type: application/json; charset=utf-8");
	if (n->opt.schema->flavour == SCHEMA_CE) {
		snprintf(line, sizeof(line), "x-ms-dynamics-organization: %s", n->organization);
		h = curl_slist_append(h, line);
		snprintf(line, sizeof(line), "x-ms-dynamics-entity-name: %s", it->entity);
		h = curl_slist_append(h, line);
		snprintf(line, sizeof(line), "x-ms-dynamics-request-name: %s", it->message);
		h = curl_slist_append(h, line);
		snprintf(line, sizeof(line), "x-ms-correlation-request-id: %s", it->correlation);
		h = curl_slist_append(h, line);
		if (it->size_exceeded)
			h = curl_slist_append(h, "x-ms-dynamics-msg-size-exceeded: true");
	}
	if (r->header)
		h = curl_slist_append(h, r->header);
	h = curl_slist_append(h, "Expect:");
	if (h == NULL)
		return 0;
	curl_easy_setopt(curl, CURLOPT_URL, r->post_url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, it->body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(it->body));
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	return status;
}

/* The first deliverable item (ready, and no earlier item of the same record and registration
 * still waiting); unlinks it. *wait_ms is set to the time until the earliest waiting item. */
static struct item *pick(struct notify *n, long long now, long long *wait_ms)
{
	struct {
		const struct reg *reg;
		uint64_t record;
	} blocked[BLOCKED_MAX];
	size_t nb = 0;
	struct item *prev = NULL;

	*wait_ms = -1;
	for (struct item *it = n->head; it; prev = it, it = it->next) {
		int is_blocked = 0;
		for (size_t i = 0; i < nb; i++)
			if (blocked[i].reg == it->reg && blocked[i].record == it->record)
				is_blocked = 1;
		if (!is_blocked && it->not_before_ms <= now) {
			if (prev)
				prev->next = it->next;
			else
				n->head = it->next;
			if (n->tail == it)
				n->tail = prev;
			it->next = NULL;
			return it;
		}
		if (!is_blocked) {
			long long w = it->not_before_ms - now;
			if (*wait_ms < 0 || w < *wait_ms)
				*wait_ms = w;
			if (nb == BLOCKED_MAX)
				break; /* many records waiting for retries: serve them first */
			blocked[nb].reg = it->reg;
			blocked[nb].record = it->record;
			nb++;
		}
	}
	return NULL;
}

static void *sender(void *arg)
{
	struct notify *n = arg;
	CURL *curl = curl_easy_init();

	if (curl) {
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, n->opt.timeout_ms);
		curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, n->opt.timeout_ms);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, abort_on_stop);
		curl_easy_setopt(curl, CURLOPT_XFERINFODATA, n);
		curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	}
	pthread_mutex_lock(&n->mu);
	while (!n->stop) {
		long long wait_ms;
		struct item *it = pick(n, now_ms(), &wait_ms);
		long status;

		if (it == NULL) {
			if (wait_ms < 0) {
				pthread_cond_wait(&n->wake, &n->mu);
			} else {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_sec += (time_t)(wait_ms / 1000);
				ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&n->wake, &n->mu, &ts);
			}
			continue;
		}
		n->queued--;
		n->in_flight = 1;
		pthread_mutex_unlock(&n->mu);

		status = curl ? post(n, curl, it->reg, it) : 0;

		pthread_mutex_lock(&n->mu);
		n->in_flight = 0;
		it->attempts++;
		if (status >= 200 && status < 300) {
			it->reg->delivered++;
		} else if (it->attempts >= n->opt.max_attempts || it->reg->removed || n->stop) {
			it->reg->failed++;
			log_warn("webhook delivery failed", "url", it->reg->url, "entity", it->entity, "message",
				 it->message, "status", status ? "non-2xx" : "connection error");
		} else {
			long long delay = n->opt.backoff_ms;
			for (int i = 1; i < it->attempts && delay < BACKOFF_CAP_MS; i++)
				delay *= 2;
			if (delay > BACKOFF_CAP_MS)
				delay = BACKOFF_CAP_MS;
			it->reg->retried++;
			it->not_before_ms = now_ms() + delay;
			/* back to the front: it was the first of its record, so order holds */
			it->next = n->head;
			n->head = it;
			if (n->tail == NULL)
				n->tail = it;
			n->queued++;
			signal_idle_if(n);
			continue;
		}
		it->reg->pending--;
		reg_unref(n, it->reg);
		item_free(it);
		signal_idle_if(n);
	}
	pthread_mutex_unlock(&n->mu);
	curl_easy_cleanup(curl);
	return NULL;
}

/* ---- API ---- */

static char *dup_or(const char *s, const char *def)
{
	return strdup(s ? s : def);
}

int notify_new(const struct notify_options *opt, struct notify **out, char *errbuf, size_t errlen)
{
	struct notify *n = NULL;
	int mu_ok = 0, wake_ok = 0, idle_ok = 0;
	struct timespec ts;

	*out = NULL;
	if (opt == NULL || opt->schema == NULL) {
		snprintf(errbuf, errlen, "notify: a schema is required");
		return -1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) { /* reference-counted by libcurl */
		snprintf(errbuf, errlen, "notify: libcurl initialisation failed");
		return -1;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		goto oom;
	n->opt = *opt;
	if (n->opt.queue_cap == 0)
		n->opt.queue_cap = 10000;
	if (n->opt.timeout_ms <= 0)
		n->opt.timeout_ms = 60000;
	if (n->opt.max_attempts <= 0)
		n->opt.max_attempts = 4;
	if (n->opt.backoff_ms <= 0)
		n->opt.backoff_ms = 200;
	if (n->opt.max_registrations == 0)
		n->opt.max_registrations = 64;
	n->organization = dup_or(opt->organization, "localhost");
	n->organization_name = dup_or(opt->organization_name, "emulator");
	n->business_unit_id = dup_or(opt->business_unit_id, "00000000-0000-0000-0000-000000000000");
	if (n->organization == NULL || n->organization_name == NULL || n->business_unit_id == NULL)
		goto oom;
	if (opt->organization_id) {
		n->organization_id = strdup(opt->organization_id);
	} else {
		char g[37];
		uint64_t h = fnv1a(0xcbf29ce484222325ULL, n->organization);
		guid_from(splitmix64(&h), splitmix64(&h), g);
		n->organization_id = strdup(g);
	}
	n->regs = calloc(n->opt.max_registrations, sizeof(*n->regs));
	if (n->organization_id == NULL || n->regs == NULL)
		goto oom;
	clock_gettime(CLOCK_REALTIME, &ts);
	n->guid_state = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)n;
	if (pthread_mutex_init(&n->mu, NULL) != 0)
		goto thread_fail;
	mu_ok = 1;
	if (pthread_cond_init(&n->wake, NULL) != 0)
		goto thread_fail;
	wake_ok = 1;
	if (pthread_cond_init(&n->idle, NULL) != 0)
		goto thread_fail;
	idle_ok = 1;
	if (pthread_create(&n->thread, NULL, sender, n) != 0)
		goto thread_fail;
	n->thread_started = 1;
	*out = n;
	return 0;
thread_fail:
	snprintf(errbuf, errlen, "notify: cannot start the sender thread");
	goto fail;
oom:
	snprintf(errbuf, errlen, "notify: out of memory");
fail:
	if (n) {
		if (idle_ok)
			pthread_cond_destroy(&n->idle);
		if (wake_ok)
			pthread_cond_destroy(&n->wake);
		if (mu_ok)
			pthread_mutex_destroy(&n->mu);
		free(n->organization);
		free(n->organization_name);
		free(n->organization_id);
		free(n->business_unit_id);
		free(n->regs);
		free(n);
	}
	curl_global_cleanup();
	return -1;
}

/* Drops queued deliveries of `r` (NULL: all); caller holds n->mu. */
static void drop_queued(struct notify *n, const struct reg *r)
{
	struct item **pp = &n->head;

	n->tail = NULL;
	while (*pp) {
		struct item *it = *pp;
		if (r == NULL || it->reg == r) {
			*pp = it->next;
			n->queued--;
			it->reg->pending--;
			reg_unref(n, it->reg);
			item_free(it);
		} else {
			n->tail = it;
			pp = &it->next;
		}
	}
	signal_idle_if(n);
}

static void remove_reg(struct notify *n, size_t i)
{
	struct reg *r = n->regs[i];

	drop_queued(n, r);
	memmove(&n->regs[i], &n->regs[i + 1], (n->n_regs - i - 1) * sizeof(*n->regs));
	n->n_regs--;
	r->removed = 1;
	r->refs++; /* balance the unref below, which frees when nothing else holds it */
	reg_unref(n, r);
}

void notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	pthread_mutex_lock(&n->mu);
	__atomic_store_n(&n->stop, 1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&n->wake);
	pthread_mutex_unlock(&n->mu);
	if (n->thread_started)
		pthread_join(n->thread, NULL);
	pthread_mutex_lock(&n->mu);
	while (n->n_regs > 0)
		remove_reg(n, n->n_regs - 1);
	pthread_mutex_unlock(&n->mu);
	pthread_cond_destroy(&n->idle);
	pthread_cond_destroy(&n->wake);
	pthread_mutex_destroy(&n->mu);
	free(n->organization);
	free(n->organization_name);
	free(n->organization_id);
	free(n->business_unit_id);
	free(n->regs);
	free(n);
	curl_global_cleanup();
}

int notify_register(struct notify *n, const struct notify_registration *reg, char id_out[37], char *errbuf,
		    size_t errlen)
{
	struct reg *r = NULL;
	const struct schema_entity *e = NULL;
	int rc = -1;

	if (reg == NULL || reg->url == NULL || (strncmp(reg->url, "http://", 7) != 0 && strncmp(reg->url, "https://", 8) != 0) ||
	    strlen(reg->url) > URL_MAX) {
		snprintf(errbuf, errlen, "notify: the URL must be http(s):// and at most %d bytes", URL_MAX);
		return -1;
	}
	if (reg->entity && strcmp(reg->entity, "*") != 0 && (e = resolve(n->opt.schema, reg->entity)) == NULL) {
		snprintf(errbuf, errlen, "notify: unknown entity \"%s\"", reg->entity);
		return -1;
	}
	if (reg->messages & ~(unsigned)NOTIFY_ALL) {
		snprintf(errbuf, errlen, "notify: messages must be Create, Update and/or Delete");
		return -1;
	}
	if (reg->auth != NOTIFY_AUTH_NONE && (reg->auth_value == NULL || reg->auth_value[0] == '\0')) {
		snprintf(errbuf, errlen, "notify: the auth value is missing");
		return -1;
	}
	if ((reg->auth == NOTIFY_AUTH_HEADER || reg->auth == NOTIFY_AUTH_QUERY) &&
	    (reg->auth_name == NULL || reg->auth_name[0] == '\0' || strpbrk(reg->auth_name, ":\r\n =&?") != NULL)) {
		snprintf(errbuf, errlen, "notify: a header / query parameter name without ':', '=', '&', spaces or line breaks is required");
		return -1;
	}
	if (reg->auth == NOTIFY_AUTH_HEADER && strpbrk(reg->auth_value, "\r\n") != NULL) {
		snprintf(errbuf, errlen, "notify: the header value must not contain line breaks");
		return -1;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto oom;
	r->ent = e;
	r->messages = reg->messages ? reg->messages : NOTIFY_ALL;
	r->auth = reg->auth;
	r->url = strdup(reg->url);
	if (reg->entity && strcmp(reg->entity, "*") != 0 && (r->entity = strdup(reg->entity)) == NULL)
		goto oom;
	if (reg->auth == NOTIFY_AUTH_CODE)
		r->post_url = url_with_param(reg->url, "code", reg->auth_value);
	else if (reg->auth == NOTIFY_AUTH_QUERY)
		r->post_url = url_with_param(reg->url, reg->auth_name, reg->auth_value);
	else
		r->post_url = strdup(reg->url);
	if (reg->auth == NOTIFY_AUTH_HEADER) {
		size_t len = strlen(reg->auth_name) + strlen(reg->auth_value) + 3;
		r->header = malloc(len);
		if (r->header)
			snprintf(r->header, len, "%s: %s", reg->auth_name, reg->auth_value);
		else
			goto oom;
	}
	if (r->url == NULL || r->post_url == NULL)
		goto oom;
	pthread_mutex_lock(&n->mu);
	if (n->n_regs >= n->opt.max_registrations) {
		pthread_mutex_unlock(&n->mu);
		snprintf(errbuf, errlen, "notify: at most %zu registrations", n->opt.max_registrations);
		goto out;
	}
	new_guid(n, r->id);
	n->regs[n->n_regs++] = r;
	if (id_out)
		memcpy(id_out, r->id, 37);
	pthread_mutex_unlock(&n->mu);
	r = NULL;
	rc = 0;
	goto out;
oom:
	snprintf(errbuf, errlen, "notify: out of memory");
out:
	if (r) {
		free(r->entity);
		free(r->url);
		free(r->post_url);
		free(r->header);
		free(r);
	}
	return rc;
}

int notify_unregister(struct notify *n, const char *id)
{
	int rc = -1;

	if (n == NULL || id == NULL)
		return -1;
	pthread_mutex_lock(&n->mu);
	for (size_t i = 0; i < n->n_regs; i++)
		if (strcmp(n->regs[i]->id, id) == 0) {
			remove_reg(n, i);
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&n->mu);
	return rc;
}

void notify_reset(struct notify *n)
{
	if (n == NULL)
		return;
	pthread_mutex_lock(&n->mu);
	while (n->n_regs > 0)
		remove_reg(n, n->n_regs - 1);
	n->overflow = 0;
	n->build_failed = 0;
	pthread_mutex_unlock(&n->mu);
}

static uint64_t record_hash(const struct schema_entity *e, const struct notify_change *c)
{
	uint64_t h = fnv1a(0xcbf29ce484222325ULL, e->logical_name);

	h = fnv1a(h, "|");
	if (c->id && c->id[0]) {
		h = fnv1a(h, c->id);
	} else if (c->keys) {
		char *k = cJSON_PrintUnformatted(c->keys);
		h = fnv1a(h, k);
		free(k);
	}
	return h;
}

int notify_change(struct notify *n, const struct notify_change *c)
{
	const struct schema_entity *e;
	int queued = 0, failed = 0;

	if (n == NULL || c == NULL)
		return -1;
	e = c->entity ? resolve(n->opt.schema, c->entity) : NULL;
	pthread_mutex_lock(&n->mu);
	if (e == NULL || message_name(c->message) == NULL) {
		n->build_failed++;
		pthread_mutex_unlock(&n->mu);
		return -1;
	}
	for (size_t i = 0; i < n->n_regs; i++) {
		struct reg *r = n->regs[i];
		struct item *it;
		cJSON *body;
		char err[256], corr[37], op[37];

		if ((r->ent && r->ent != e) || !(r->messages & (unsigned)c->message))
			continue;
		if (n->queued >= n->opt.queue_cap) {
			n->overflow++;
			failed = 1;
			continue;
		}
		if (c->correlation_id)
			snprintf(corr, sizeof(corr), "%s", c->correlation_id);
		else
			new_guid(n, corr);
		new_guid(n, op);
		body = build(n, c, r->id, corr, op, err, sizeof(err));
		it = calloc(1, sizeof(*it));
		if (body == NULL || it == NULL) {
			cJSON_Delete(body);
			free(it);
			n->build_failed++;
			failed = 1;
			continue;
		}
		it->body = cJSON_PrintUnformatted(body);
		if (it->body && n->opt.schema->flavour == SCHEMA_CE && strlen(it->body) > MSG_SIZE_LIMIT) {
			/* as Dataverse: drop the large parts and say so in a header */
			cJSON_DeleteItemFromObjectCaseSensitive(body, "ParentContext");
			cJSON_ReplaceItemInObjectCaseSensitive(body, "InputParameters", cJSON_CreateArray());
			cJSON_ReplaceItemInObjectCaseSensitive(body, "PreEntityImages", cJSON_CreateArray());
			cJSON_ReplaceItemInObjectCaseSensitive(body, "PostEntityImages", cJSON_CreateArray());
			free(it->body);
			it->body = cJSON_PrintUnformatted(body);
			it->size_exceeded = 1;
		}
		cJSON_Delete(body);
		if (it->body == NULL) {
			free(it);
			n->build_failed++;
			failed = 1;
			continue;
		}
		it->reg = r;
		it->record = record_hash(e, c);
		snprintf(it->entity, sizeof(it->entity), "%s", e->event_name);
		snprintf(it->message, sizeof(it->message), "%s", message_name(c->message));
		snprintf(it->correlation, sizeof(it->correlation), "%s", corr);
		if (n->tail)
			n->tail->next = it;
		else
			n->head = it;
		n->tail = it;
		n->queued++;
		r->pending++;
		r->refs++;
		queued++;
	}
	if (queued)
		pthread_cond_signal(&n->wake);
	pthread_mutex_unlock(&n->mu);
	return failed ? -1 : queued;
}

static cJSON *messages_json(unsigned m)
{
	cJSON *a = cJSON_CreateArray();
	if (a == NULL)
		return NULL;
	if (m & NOTIFY_CREATE)
		cJSON_AddItemToArray(a, cJSON_CreateString("Create"));
	if (m & NOTIFY_UPDATE)
		cJSON_AddItemToArray(a, cJSON_CreateString("Update"));
	if (m & NOTIFY_DELETE)
		cJSON_AddItemToArray(a, cJSON_CreateString("Delete"));
	return a;
}

cJSON *notify_stats(struct notify *n)
{
	static const char *const auth_names[] = { "none", "code", "header", "query" };
	cJSON *root = cJSON_CreateObject(), *regs;

	if (root == NULL || n == NULL)
		return root;
	pthread_mutex_lock(&n->mu);
	cJSON_AddNumberToObject(root, "queued", (double)n->queued);
	cJSON_AddNumberToObject(root, "overflow", (double)n->overflow);
	cJSON_AddNumberToObject(root, "build_failed", (double)n->build_failed);
	regs = cJSON_AddArrayToObject(root, "registrations");
	for (size_t i = 0; regs && i < n->n_regs; i++) {
		const struct reg *r = n->regs[i];
		cJSON *o = cJSON_CreateObject();
		if (o == NULL)
			break;
		cJSON_AddStringToObject(o, "id", r->id);
		if (r->entity)
			cJSON_AddStringToObject(o, "entity", r->entity);
		else
			cJSON_AddStringToObject(o, "entity", "*");
		cJSON_AddItemToObject(o, "messages", messages_json(r->messages));
		cJSON_AddStringToObject(o, "url", r->url);
		cJSON_AddStringToObject(o, "auth", auth_names[r->auth <= NOTIFY_AUTH_QUERY ? r->auth : 0]);
		cJSON_AddNumberToObject(o, "delivered", (double)r->delivered);
		cJSON_AddNumberToObject(o, "failed", (double)r->failed);
		cJSON_AddNumberToObject(o, "retried", (double)r->retried);
		cJSON_AddNumberToObject(o, "pending", (double)r->pending);
		cJSON_AddItemToArray(regs, o);
	}
	pthread_mutex_unlock(&n->mu);
	return root;
}

int notify_drain(struct notify *n, long timeout_ms)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(timeout_ms / 1000);
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&n->mu);
	while (n->queued > 0 || n->in_flight) {
		if (pthread_cond_timedwait(&n->idle, &n->mu, &ts) == ETIMEDOUT) {
			rc = (n->queued > 0 || n->in_flight) ? -1 : 0;
			break;
		}
	}
	pthread_mutex_unlock(&n->mu);
	return rc;
}
