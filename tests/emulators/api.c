#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "b64.h"
#include "log.h"
#include "odata_batch.h"

long long api_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- errors ---- */

void api_error(struct api *a, struct server_response *resp, const struct schema_error *err)
{
	char *text = schema_error_json(a->flavour, err);
	if (!text) {
		server_response_odata_error(resp, err->status, err->code, err->message);
		return;
	}
	server_response_take_body(resp, err->status, "application/json; odata.metadata=minimal", text,
				  strlen(text));
}

void api_std_error(struct api *a, struct server_response *resp, enum schema_std_error kind,
		   const struct schema_entity *e, const char *detail)
{
	struct schema_error err;
	memset(&err, 0, sizeof(err));
	schema_error_std(a->flavour, kind, e, detail, &err);
	if (err.status == 0) /* defensive: a kind the schema module left unfilled */
		schema_error_set(&err, kind == SCHEMA_E_INTERNAL ? 500 : 400, "", "%s", detail ? detail : "error");
	api_error(a, resp, &err);
}

/* ---- transactions ---- */

int api_txn_begin(struct api *a, struct api_txn *t, struct server_response *resp)
{
	char err[256];
	struct api_ref *refs = t->refs;
	size_t *nrefs = t->nrefs;
	int defer = t->defer;
	memset(t, 0, sizeof(*t));
	t->refs = refs;
	t->nrefs = nrefs;
	t->defer = defer;
	estore_new_guid(t->correlation_id);
	if (estore_begin(a->store, &t->tx, err, sizeof(err)) < 0) {
		log_error("store: begin failed", "error", err);
		api_std_error(a, resp, SCHEMA_E_INTERNAL, NULL, "The storage is unavailable.");
		return -1;
	}
	return 0;
}

/* Announces t's recorded changes through the notifier (after they were committed). */
static void announce(struct api *a, const struct api_txn *t)
{
	if (api_notify_wanted(a)) {
		for (size_t i = 0; i < t->nchanges; i++) {
			struct api_change *c = &t->changes[i];
			struct notify_change nc = {
				.message = c->message,
				.entity = c->e->logical_name,
				.id = c->id,
				.keys = c->keys,
				.post = c->post,
				.pre = c->pre,
				.correlation_id = t->correlation_id,
				.in_transaction = t->in_changeset,
				.user_id = NULL,
				.time_ms = c->time_ms,
				.version = c->version,
			};
			(void)notify_change(a->notify, &nc);
		}
	}
}

static void txn_free_changes(struct api_txn *t)
{
	for (size_t i = 0; i < t->nchanges; i++) {
		cJSON_Delete(t->changes[i].keys);
		cJSON_Delete(t->changes[i].post);
		cJSON_Delete(t->changes[i].pre);
	}
	free(t->changes);
	t->changes = NULL;
	t->nchanges = 0;
	t->changes_alloc = 0;
}

int api_txn_commit(struct api *a, struct api_txn *t, struct server_response *resp)
{
	char err[256];
	struct estore_tx *tx = t->tx;
	t->tx = NULL;
	if (estore_commit(tx, err, sizeof(err)) < 0) {
		log_error("store: commit failed", "error", err);
		txn_free_changes(t);
		server_response_clear(resp);
		api_std_error(a, resp, SCHEMA_E_INTERNAL, NULL, "The transaction could not be committed.");
		return -1;
	}
	announce(a, t);
	txn_free_changes(t);
	return 0;
}

void api_txn_rollback(struct api_txn *t)
{
	if (t->tx)
		estore_rollback(t->tx);
	t->tx = NULL;
	txn_free_changes(t);
}

int api_notify_wanted(const struct api *a)
{
	return a->notify && __atomic_load_n(&a->webhooks, __ATOMIC_RELAXED) > 0;
}

void api_txn_note(struct api_txn *t, enum notify_message m, const struct schema_entity *e, const char *id,
		  cJSON *keys, cJSON *post, cJSON *pre, long long version)
{
	if (t->nchanges == t->changes_alloc) {
		size_t na = t->changes_alloc ? t->changes_alloc * 2 : 4;
		struct api_change *nc = realloc(t->changes, na * sizeof(*nc));
		if (!nc) {
			cJSON_Delete(keys);
			cJSON_Delete(post);
			cJSON_Delete(pre);
			return;
		}
		t->changes = nc;
		t->changes_alloc = na;
	}
	struct api_change *c = &t->changes[t->nchanges++];
	memset(c, 0, sizeof(*c));
	c->message = m;
	c->e = e;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->keys = keys;
	c->post = post;
	c->pre = pre;
	c->version = version;
	c->time_ms = api_now_ms();
}

/* ---- ETags and keys ---- */

void api_etag(const struct api *a, long long version, char *buf, size_t len)
{
	if (a->flavour == SCHEMA_CE) {
		snprintf(buf, len, "W/\"%lld\"", version);
		return;
	}
	char raw[48];
	int n = snprintf(raw, sizeof(raw), "'1,%lld'", version);
	char enc[80];
	b64_encode(raw, (size_t)n, enc, sizeof(enc));
	snprintf(buf, len, "W/\"%s\"", enc);
}

int api_etag_version(const struct api *a, const char *etag, long long *version)
{
	size_t n = strlen(etag);
	if (n < 5 || n > 80 || strncmp(etag, "W/\"", 3) != 0 || etag[n - 1] != '"')
		return -1;
	char text[64];
	const char *in = etag + 3;
	size_t len = n - 4;
	if (a->flavour == SCHEMA_CE) {
		snprintf(text, sizeof(text), "%.*s", (int)len, in);
	} else {
		/* base64 of '1,<version>' */
		long dl = b64_decode(in, len, text, sizeof(text));
		if (dl < 0)
			return -1;
		size_t o = (size_t)dl;
		if (o < 5 || text[0] != '\'' || text[o - 1] != '\'' || strncmp(text + 1, "1,", 2) != 0)
			return -1;
		memmove(text, text + 3, o - 4);
		text[o - 4] = '\0';
	}
	char *end = NULL;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno || end == text || *end || v <= 0)
		return -1;
	/* only the exact text api_etag writes names a version */
	char again[96];
	api_etag(a, v, again, sizeof(again));
	if (strcmp(again, etag) != 0)
		return -1;
	*version = v;
	return 0;
}

/* Name under which a field is stored in a record: lookups by their "_x_value" name. */
static const char *stored_name(const struct schema_field *f)
{
	return f->type == SCHEMA_T_LOOKUP && f->value_name ? f->value_name : f->name;
}

/* Text form of a JSON scalar for keys; -1 for null/missing/containers. */
static int scalar_text(const cJSON *v, char *buf, size_t len)
{
	if (!v || cJSON_IsNull(v))
		return -1;
	if (cJSON_IsString(v)) {
		snprintf(buf, len, "%s", v->valuestring);
		return 0;
	}
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d == (double)(long long)d)
			snprintf(buf, len, "%lld", (long long)d);
		else
			snprintf(buf, len, "%.17g", d);
		return 0;
	}
	if (cJSON_IsBool(v)) {
		snprintf(buf, len, "%s", cJSON_IsTrue(v) ? "true" : "false");
		return 0;
	}
	return -1;
}

char *api_key_text(const struct schema_entity *e, const struct schema_key *k, const cJSON *data)
{
	cJSON *arr = cJSON_CreateArray();
	char *out = NULL;
	char buf[4096];
	if (!arr)
		return NULL;
	for (size_t i = 0; i < k->n_fields; i++) {
		const struct schema_field *f = schema_field(e, k->fields[i]);
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(data, f ? stored_name(f) : k->fields[i]);
		if (scalar_text(v, buf, sizeof(buf)) < 0)
			goto out;
		if (f && (f->type == SCHEMA_T_GUID || f->type == SCHEMA_T_LOOKUP)) {
			for (char *p = buf; *p; p++)
				if (*p >= 'A' && *p <= 'F')
					*p = (char)(*p - 'A' + 'a');
		}
		cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
	}
	out = cJSON_PrintUnformatted(arr);
out:
	cJSON_Delete(arr);
	return out;
}

char *api_key_text_from_url(const struct schema_entity *e, const struct schema_key *k,
			    const struct odata_key_part *parts, size_t nparts)
{
	cJSON *arr = cJSON_CreateArray();
	char *out = NULL;
	if (!arr)
		return NULL;
	for (size_t i = 0; i < k->n_fields; i++) {
		const struct schema_field *f = schema_field(e, k->fields[i]);
		const struct odata_key_part *hit = NULL;
		for (size_t j = 0; j < nparts && !hit; j++) {
			if (!parts[j].name)
				continue;
			if (strcmp(parts[j].name, k->fields[i]) == 0 ||
			    (f && f->value_name && strcmp(parts[j].name, f->value_name) == 0))
				hit = &parts[j];
		}
		if (!hit)
			goto out;
		cJSON_AddItemToArray(arr, cJSON_CreateString(hit->value));
	}
	out = cJSON_PrintUnformatted(arr);
out:
	cJSON_Delete(arr);
	return out;
}

cJSON *api_keys_json(const struct api *a, const struct schema_entity *e, const cJSON *data)
{
	cJSON *keys = cJSON_CreateObject();
	if (!keys)
		return NULL;
	if (a->flavour == SCHEMA_FO) {
		char *t = api_key_text(e, &e->primary_key, data);
		if (t)
			cJSON_AddStringToObject(keys, "primary", t);
		free(t);
	}
	for (size_t i = 0; i < e->n_alt_keys; i++) {
		char *t = api_key_text(e, &e->alt_keys[i], data);
		if (t)
			cJSON_AddStringToObject(keys, e->alt_keys[i].name, t);
		free(t);
	}
	return keys;
}

/* ---- rendering ---- */

static int selected(char *const *select, size_t n, const char *name)
{
	if (!select)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (strcmp(select[i], name) == 0)
			return 1;
	return 0;
}

static void iso_time(long long ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

cJSON *api_render(const struct api *a, const struct schema_entity *e, const struct estore_record *rec,
		  char *const *select, size_t nselect)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	char etag[96];
	api_etag(a, rec->version, etag, sizeof(etag));
	cJSON_AddStringToObject(o, "@odata.etag", etag);
	for (size_t i = 0; i < e->n_fields; i++) {
		const struct schema_field *f = &e->fields[i];
		const char *name = stored_name(f);
		int is_id = e->id_field && strcmp(f->name, e->id_field) == 0;
		if (!is_id && !selected(select, nselect, name))
			continue;
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec->data, name);
		if (v) {
			cJSON_AddItemToObject(o, name, cJSON_Duplicate(v, 1));
			continue;
		}
		char buf[40];
		if (strcmp(f->name, "versionnumber") == 0) {
			cJSON_AddNumberToObject(o, name, (double)rec->version);
		} else if (strcmp(f->name, "modifiedon") == 0 || strcmp(f->name, "createdon") == 0) {
			iso_time(strcmp(f->name, "modifiedon") == 0 ? rec->modified_ms : rec->created_ms, buf,
				 sizeof(buf));
			cJSON_AddStringToObject(o, name, buf);
		} else {
			cJSON_AddNullToObject(o, name);
		}
	}
	return o;
}

void api_apply_defaults(const struct schema_entity *e, cJSON *data)
{
	for (size_t i = 0; i < e->n_fields; i++) {
		const struct schema_field *f = &e->fields[i];
		if (!f->default_value || f->type == SCHEMA_T_LOOKUP || cJSON_GetObjectItemCaseSensitive(data, f->name))
			continue;
		cJSON *v = cJSON_Duplicate(f->default_value, 1);
		if (v)
			cJSON_AddItemToObject(data, f->name, v);
	}
}

enum query_type api_field_query_type(void *ctx, const char *name)
{
	const struct schema_entity *e = ctx;
	const struct schema_field *f = schema_field(e, name);
	if (f && f->type == SCHEMA_T_LOOKUP)
		f = NULL; /* lookups are read and filtered as _<name>_value */
	if (!f) {
		f = schema_field_by_value_name(e, name);
		return f ? QUERY_T_GUID : QUERY_T_UNKNOWN;
	}
	switch (f->type) {
	case SCHEMA_T_STRING:
	case SCHEMA_T_MEMO:
		return QUERY_T_STRING;
	case SCHEMA_T_INT:
	case SCHEMA_T_BIGINT:
	case SCHEMA_T_PICKLIST:
	case SCHEMA_T_STATE:
	case SCHEMA_T_STATUS:
		return QUERY_T_INT;
	case SCHEMA_T_DECIMAL:
	case SCHEMA_T_MONEY:
		return QUERY_T_DECIMAL;
	case SCHEMA_T_DOUBLE:
		return QUERY_T_DOUBLE;
	case SCHEMA_T_BOOL:
		return QUERY_T_BOOL;
	case SCHEMA_T_DATETIME:
		return QUERY_T_DATETIME;
	case SCHEMA_T_DATE:
		return QUERY_T_DATE;
	case SCHEMA_T_GUID:
		return QUERY_T_GUID;
	case SCHEMA_T_ENUM:
		return QUERY_T_ENUM;
	case SCHEMA_T_LOOKUP:
		return QUERY_T_GUID;
	}
	return QUERY_T_UNKNOWN;
}

/* ---- requests ---- */

int api_prefer(const struct server_request *req, const char *token)
{
	size_t tl = strlen(token);
	for (size_t i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, "Prefer") != 0)
			continue;
		const char *p = req->headers[i].value;
		while (*p) {
			while (*p == ' ' || *p == ',')
				p++;
			if (strncasecmp(p, token, tl) == 0 && (p[tl] == '\0' || p[tl] == ',' || p[tl] == ' ' ||
							      p[tl] == '=' || p[tl] == ';'))
				return 1;
			p += strcspn(p, ",");
		}
	}
	return 0;
}

/* Value of "name=value" inside the Prefer header(s), or -1. */
static long prefer_value(const struct server_request *req, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, "Prefer") != 0)
			continue;
		const char *p = req->headers[i].value;
		while (*p) {
			while (*p == ' ' || *p == ',')
				p++;
			if (strncasecmp(p, name, nl) == 0 && p[nl] == '=') {
				char *end;
				long v = strtol(p + nl + 1, &end, 10);
				if (end != p + nl + 1 && v > 0)
					return v;
			}
			p += strcspn(p, ",");
		}
	}
	return -1;
}

cJSON *api_parse_body(struct api *a, const struct server_request *req, struct server_response *resp)
{
	if (!req->body || req->body_len == 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, NULL, "The request body is empty; a JSON object is expected.");
		return NULL;
	}
	cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
	if (!body || !cJSON_IsObject(body)) {
		cJSON_Delete(body);
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, NULL,
			      "The request body is not valid JSON: an object is expected.");
		return NULL;
	}
	return body;
}

/* The raw query string without the named parameters (decoded-name comparison). New string. */
static char *query_without(const char *query, const char *const *drop, size_t ndrop)
{
	size_t len = strlen(query);
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	const char *p = query;
	while (*p) {
		size_t plen = strcspn(p, "&");
		size_t klen = strcspn(p, "=&");
		char name[64];
		size_t n = 0;
		for (size_t i = 0; i < klen && n + 1 < sizeof(name); i++) {
			if (p[i] == '%' && i + 2 < klen && strncasecmp(p + i, "%24", 3) == 0) {
				name[n++] = '$';
				i += 2;
			} else {
				name[n++] = p[i];
			}
		}
		name[n] = '\0';
		int keep = 1;
		for (size_t d = 0; d < ndrop; d++)
			if (strcmp(name, drop[d]) == 0)
				keep = 0;
		if (keep && plen > 0) {
			if (o > 0)
				out[o++] = '&';
			memcpy(out + o, p, plen);
			o += plen;
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	out[o] = '\0';
	return out;
}

static cJSON *context_for(const struct api *a, const char *set, char *const *select, size_t nselect,
			  const char *suffix)
{
	size_t cap = strlen(a->base_url) + strlen(a->prefix) + strlen(set) + 64;
	for (size_t i = 0; i < nselect; i++)
		cap += strlen(select[i]) + 1;
	char *ctx = malloc(cap);
	if (!ctx)
		return NULL;
	int n = snprintf(ctx, cap, "%s%s$metadata#%s", a->base_url, a->prefix, set);
	if (select && nselect > 0) {
		n += snprintf(ctx + n, cap - (size_t)n, "(");
		for (size_t i = 0; i < nselect; i++)
			n += snprintf(ctx + n, cap - (size_t)n, "%s%s", i ? "," : "", select[i]);
		n += snprintf(ctx + n, cap - (size_t)n, ")");
	}
	if (suffix)
		snprintf(ctx + n, cap - (size_t)n, "%s", suffix);
	cJSON *s = cJSON_CreateString(ctx);
	free(ctx);
	return s;
}

void api_collection_get(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
			const struct server_request *req, const char *company, long long track_version,
			struct server_response *resp)
{
	struct query q;
	struct query_sql sql;
	char err[512];
	char *where = NULL;
	const char **params = NULL;
	struct estore_record *recs = NULL;
	size_t n = 0;
	cJSON *root = NULL;
	char *rest = NULL;
	memset(&q, 0, sizeof(q));
	memset(&sql, 0, sizeof(sql));
	enum query_flavour qf = a->flavour == SCHEMA_CE ? QUERY_CE : QUERY_FO;

	if (query_parse(req->query, strlen(req->query), qf, &q, err, sizeof(err)) < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, err);
		goto out;
	}
	if (query_to_sql(&q, qf, "data", 2, api_field_query_type, (void *)e, e->type_name, &sql, err,
			 sizeof(err)) < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, err);
		goto out;
	}
	if (track_version >= 0 && (q.filter || q.orderby || q.top >= 0)) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e,
			      "$filter, $orderby, $expand and $top are not supported with change tracking.");
		goto out;
	}

	/* Paging position. */
	long long offset = 0;
	if (a->flavour == SCHEMA_CE) {
		if (q.skiptoken) {
			char *end;
			offset = strtoll(q.skiptoken, &end, 10);
			if (end == q.skiptoken || offset < 0) {
				api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, "The $skiptoken is not valid.");
				goto out;
			}
			if (*end == '_')
				track_version = strtoll(end + 1, NULL, 10);
		}
	} else if (q.skip >= 0) {
		offset = q.skip;
	}
	long page = a->max_page;
	long pref = prefer_value(req, "odata.maxpagesize");
	if (pref > 0 && pref < page)
		page = pref;
	long long want = page;
	if (q.top >= 0) {
		long long remaining = a->flavour == SCHEMA_CE ? q.top - offset : q.top;
		if (remaining < 0)
			remaining = 0;
		if (remaining < want)
			want = remaining;
	}

	/* WHERE: the filter, plus the company restriction. */
	size_t np = sql.nparams + (company ? 1 : 0);
	params = calloc(np + 1, sizeof(*params));
	if (!params)
		goto oom;
	for (size_t i = 0; i < sql.nparams; i++)
		params[i] = sql.params[i];
	if (company && e->company_field) {
		params[sql.nparams] = company;
		if (asprintf(&where, "(%s) AND lower(data->>'%s') = lower($%zu)", sql.where, e->company_field,
			     sql.nparams + 2) < 0) {
			where = NULL;
			goto oom;
		}
	} else {
		np = sql.nparams;
		where = strdup(sql.where);
		if (!where)
			goto oom;
	}
	if (estore_query(a->store, t->tx, e->set_names[0], where, params, (int)np, sql.order_by, (long)want + 1,
			 (long)offset, &recs, &n, err, sizeof(err)) < 0) {
		log_error("store: query failed", "entity", set, "error", err);
		api_std_error(a, resp, SCHEMA_E_INTERNAL, e, "The query could not be run.");
		goto out;
	}
	int more = (long long)n > want;
	size_t shown = more ? (size_t)want : n;
	if (q.top >= 0 && a->flavour == SCHEMA_CE && offset + (long long)shown >= q.top)
		more = 0; /* CE: $top counts from the first page */
	if (q.top >= 0 && a->flavour == SCHEMA_FO && (long long)shown >= q.top)
		more = 0; /* FO: each nextLink carries the $top still to go */

	root = cJSON_CreateObject();
	if (!root)
		goto oom;
	cJSON_AddItemToObject(root, "@odata.context", context_for(a, set, q.select, q.nselect, NULL));
	if (q.count == 1) {
		long long total = 0;
		if (estore_count(a->store, t->tx, e->set_names[0], where, params, (int)np, &total, err, sizeof(err)) < 0) {
			log_error("store: count failed", "entity", set, "error", err);
			api_std_error(a, resp, SCHEMA_E_INTERNAL, e, "The query could not be run.");
			goto out;
		}
		cJSON_AddNumberToObject(root, "@odata.count", (double)total);
	}
	cJSON *value = cJSON_AddArrayToObject(root, "value");
	for (size_t i = 0; i < shown; i++)
		cJSON_AddItemToArray(value, api_render(a, e, &recs[i], q.select, q.nselect));

	if (more || (!more && track_version >= 0)) {
		/* FO pages move $skip forward and shrink $top by what was shown. */
		static const char *const drop[] = {"$skiptoken", "$skip", "$deltatoken", "$top"};
		int fo_top = a->flavour == SCHEMA_FO && q.top >= 0;
		rest = query_without(req->query, drop, fo_top ? 4 : 3);
		if (!rest)
			goto oom;
		char tok[64];
		if (more && a->flavour == SCHEMA_CE) {
			if (track_version >= 0)
				snprintf(tok, sizeof(tok), "$skiptoken=%lld_%lld", offset + (long long)shown,
					 track_version);
			else
				snprintf(tok, sizeof(tok), "$skiptoken=%lld", offset + (long long)shown);
		} else if (more && fo_top) {
			snprintf(tok, sizeof(tok), "$top=%lld&$skip=%lld", q.top - (long long)shown,
				 offset + (long long)shown);
		} else if (more) {
			snprintf(tok, sizeof(tok), "$skip=%lld", offset + (long long)shown);
		} else {
			snprintf(tok, sizeof(tok), "$deltatoken=%lld", track_version);
		}
		char *link = NULL;
		if (asprintf(&link, "%s%s?%s%s%s", a->base_url, req->path, rest, *rest ? "&" : "", tok) < 0)
			goto oom;
		cJSON_AddStringToObject(root, more ? "@odata.nextLink" : "@odata.deltaLink", link);
		free(link);
	}
	server_response_json(resp, 200, root);
	if (pref > 0 && a->flavour == SCHEMA_CE) {
		char pa[64];
		snprintf(pa, sizeof(pa), "odata.maxpagesize=%ld", page);
		server_response_header(resp, "Preference-Applied", pa);
	}
	if (track_version >= 0)
		server_response_header(resp, "Preference-Applied", "odata.track-changes");
	goto out;
oom:
	server_response_clear(resp);
	api_std_error(a, resp, SCHEMA_E_INTERNAL, e, "Out of memory.");
out:
	cJSON_Delete(root);
	free(rest);
	free(where);
	free(params);
	estore_records_free(recs, n);
	query_sql_clear(&sql);
	query_clear(&q);
}

/* ---- $batch ---- */

const char *api_ref_lookup(const struct api_txn *t, const char *ref)
{
	if (!t->refs || !t->nrefs || ref[0] != '$')
		return NULL;
	for (size_t i = 0; i < *t->nrefs; i++)
		if (strcmp(t->refs[i].content_id, ref + 1) == 0)
			return t->refs[i].path;
	return NULL;
}

/* Resolves an inner request URL to a full path (new string), or NULL when it is not under the
 * service root or names an unknown Content-ID. */
static char *inner_path(const struct api *a, const struct api_txn *t, const char *url)
{
	char *out = NULL;
	if (url[0] == '$') {
		size_t idlen = strcspn(url + 1, "/?");
		char ref[80];
		if (idlen + 2 > sizeof(ref))
			return NULL;
		snprintf(ref, sizeof(ref), "$%.*s", (int)idlen, url + 1);
		const char *p = api_ref_lookup(t, ref);
		if (!p)
			return NULL;
		if (asprintf(&out, "%s%s%s", a->prefix, p, url + 1 + idlen) < 0)
			return NULL;
		return out;
	}
	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
		const char *slash = strchr(url + (url[4] == 's' ? 8 : 7), '/');
		if (!slash)
			return NULL;
		url = slash;
	}
	if (url[0] == '/')
		out = strdup(url);
	else if (asprintf(&out, "%s%s", a->prefix, url) < 0)
		out = NULL;
	if (out && strncmp(out, a->prefix, strlen(a->prefix)) != 0) {
		free(out);
		out = NULL;
	}
	return out;
}

struct batch_state {
	struct api *a;
	api_exec_fn exec;
	struct server_response *resps; /* one per request */
	struct odata_batch_response *bresp;
	struct odata_batch_header *bhdrs; /* SERVER_MAX_RESPONSE_HEADERS per response */
	struct odata_batch_response_part *rparts;
	size_t nrparts;
	size_t nresp;
	struct api_ref *refs;
	size_t nrefs;
};

/* The inner request r as the flavour's handlers take it (hdrs: ODATA_BATCH_MAX_HEADERS entries).
 * Returns its path (allocated: free it; inner's path and query point into it), or NULL with resp
 * filled when the URL is not under the service root. */
static char *inner_request(struct batch_state *st, const struct api_txn *t, const struct odata_batch_request *r,
			   struct server_header *hdrs, struct server_request *inner, struct server_response *resp)
{
	size_t nh = 0;
	for (size_t i = 0; i < r->nheaders && nh < ODATA_BATCH_MAX_HEADERS; i++, nh++) {
		hdrs[nh].name = (char *)r->headers[i].name;
		hdrs[nh].value = (char *)r->headers[i].value;
	}
	char *path = inner_path(st->a, t, r->url);
	if (!path) {
		char msg[256];
		if (r->url[0] == '$')
			snprintf(msg, sizeof(msg), "Content-ID Reference: '%.100s' does not exist in the batch context.",
				 r->url);
		else
			snprintf(msg, sizeof(msg), "The request URI '%.100s' is not under the service root.", r->url);
		if (resp)
			api_std_error(st->a, resp, SCHEMA_E_BAD_REQUEST, NULL, msg);
		return NULL;
	}
	char *q = strchr(path, '?');
	if (q)
		*q++ = '\0';
	*inner = (struct server_request){
		.method = r->method,
		.path = path,
		.query = q ? q : "",
		.headers = hdrs,
		.nheaders = nh,
		.body = r->body,
		.body_len = r->body_len,
	};
	return path;
}

/* Takes the next response slot for an inner request. */
static struct server_response *next_response(struct batch_state *st)
{
	return &st->resps[st->nresp++];
}

/* Files the inner response of r (the last slot taken): its batch response, and where its
 * Content-ID points for later "$n" references. Returns its status. */
static int file_response(struct batch_state *st, const struct odata_batch_request *r)
{
	size_t at = st->nresp - 1;
	struct server_response *resp = &st->resps[at];
	struct odata_batch_response *br = &st->bresp[at];
	struct odata_batch_header *bh = &st->bhdrs[at * SERVER_MAX_RESPONSE_HEADERS];
	const char *loc = server_response_get_header(resp, "OData-EntityId");
	if (!loc)
		loc = server_response_get_header(resp, "Location");
	if (r->content_id && loc && resp->status < 400) {
		size_t root = strlen(st->a->base_url) + strlen(st->a->prefix);
		if (strlen(loc) > root) {
			st->refs[st->nrefs].content_id = strdup(r->content_id);
			st->refs[st->nrefs].path = strdup(loc + root);
			if (st->refs[st->nrefs].content_id && st->refs[st->nrefs].path)
				st->nrefs++;
			else {
				free(st->refs[st->nrefs].content_id);
				free(st->refs[st->nrefs].path);
			}
		}
	}
	br->content_id = r->content_id;
	br->status = resp->status;
	br->headers = bh;
	br->nheaders = 0;
	for (size_t i = 0; i < resp->nheaders; i++) {
		bh[br->nheaders].name = resp->headers[i].name;
		bh[br->nheaders].value = resp->headers[i].value;
		br->nheaders++;
	}
	br->body = resp->body;
	br->body_len = resp->body_len;
	return resp->status;
}

/* Runs one inner request; its response goes to st->resps[st->nresp++]. Returns its status. */
static int run_one(struct batch_state *st, struct api_txn *t, const struct odata_batch_request *r)
{
	struct server_response *resp = next_response(st);
	struct server_header hdrs[ODATA_BATCH_MAX_HEADERS];
	struct server_request inner;
	char *path = inner_request(st, t, r, hdrs, &inner, resp);
	if (path) {
		st->exec(st->a, t, &inner, path + strlen(st->a->prefix), resp);
		if (resp->status == 0)
			api_std_error(st->a, resp, SCHEMA_E_BAD_REQUEST, NULL, "Resource not found for the segment.");
		free(path);
	}
	return file_response(st, r);
}

/* The parts of a $batch served by quick writes (api_quick_ops): prepared per part, written a run
 * at a time. */
struct quick_runs {
	const struct api_quick_ops *ops;
	struct api_quick *q; /* one per part */
	int *ready;          /* the part's q is prepared (and, once its run is written, has a result) */
	size_t end;          /* parts before this one have been looked at */
};

/* At most this many parts in one run (one estore_patch_many call). */
#define QUICK_RUN_MAX 512

static void quick_clear(struct api_quick *q)
{
	free(q->keyvalue);
	free(q->fields);
	estore_patch_clear(&q->patch);
	memset(q, 0, sizeof(*q));
}

/* Whether part p is a single request that qr->ops serves, of a record no part of the run (from
 * `first`) names; prepares qr->q[p]. */
static int quick_prepare(struct batch_state *st, struct quick_runs *qr, const struct odata_batch_part *part,
			 size_t p, size_t first)
{
	if (part->nrequests != 1 || part->requests[0].url[0] == '$')
		return 0;
	struct api_txn none;
	memset(&none, 0, sizeof(none));
	struct server_header hdrs[ODATA_BATCH_MAX_HEADERS];
	struct server_request inner;
	char *path = inner_request(st, &none, &part->requests[0], hdrs, &inner, NULL);
	if (!path)
		return 0;
	int ok = qr->ops->prepare(st->a, &inner, path + strlen(st->a->prefix), &qr->q[p]);
	free(path);
	for (size_t k = first; ok && k < p; k++)
		if (qr->q[k].e == qr->q[p].e && strcasecmp(qr->q[k].keyvalue, qr->q[p].keyvalue) == 0)
			ok = 0;
	if (!ok)
		quick_clear(&qr->q[p]);
	return ok;
}

/* Prepares the run of parts that starts at p and writes it. */
static void quick_run(struct batch_state *st, struct quick_runs *qr, const struct odata_batch *b, size_t p)
{
	size_t end = p;
	while (end < b->nparts && end - p < QUICK_RUN_MAX && quick_prepare(st, qr, &b->parts[end], end, p)) {
		qr->q[end].patch.rc = ESTORE_EDB; /* not written until estore_patch_many says so */
		qr->ready[end++] = 1;
	}
	qr->end = end > p ? end : p + 1;
	if (end == p)
		return;
	struct estore_patch *patches = calloc(end - p, sizeof(*patches));
	char err[256];
	if (patches) {
		for (size_t k = p; k < end; k++)
			patches[k - p] = qr->q[k].patch;
		if (estore_patch_many(st->a->store, patches, end - p, err, sizeof(err)) < 0)
			log_warn("batch: pipelined writes failed; the parts run one by one", "error", err);
		for (size_t k = p; k < end; k++)
			qr->q[k].patch = patches[k - p];
		free(patches);
	}
	for (size_t k = p; k < end; k++)
		if (qr->q[k].patch.rc != 0) {
			/* not written: the part runs the usual way, which finds out why */
			quick_clear(&qr->q[k]);
			qr->ready[k] = 0;
		}
}

/* Answers part `part` (index p) from its quick write, as a committed one-request part. */
static void quick_answer(struct batch_state *st, struct quick_runs *qr, const struct odata_batch_part *part, size_t p,
			 struct odata_batch_response_part *rp)
{
	struct api_txn t;
	memset(&t, 0, sizeof(t));
	t.refs = st->refs;
	t.nrefs = &st->nrefs;
	t.in_changeset = part->changeset;
	estore_new_guid(t.correlation_id);
	size_t first = st->nresp;
	struct server_response *resp = next_response(st);
	struct server_header hdrs[ODATA_BATCH_MAX_HEADERS];
	struct server_request inner;
	char *path = inner_request(st, &t, &part->requests[0], hdrs, &inner, resp);
	if (path) {
		qr->ops->respond(st->a, &t, &inner, &qr->q[p], resp);
		free(path);
	}
	(void)file_response(st, &part->requests[0]);
	announce(st->a, &t);
	txn_free_changes(&t);
	quick_clear(&qr->q[p]);
	qr->ready[p] = 0;
	rp->changeset = part->changeset;
	rp->responses = &st->bresp[first];
	rp->nresponses = 1;
}

void api_batch(struct api *a, const struct server_request *req, api_exec_fn exec, const struct api_quick_ops *quick,
	       struct server_response *resp)
{
	struct odata_batch b;
	struct batch_state st;
	struct quick_runs qr;
	char err[512];
	memset(&b, 0, sizeof(b));
	memset(&st, 0, sizeof(st));
	memset(&qr, 0, sizeof(qr));
	if (strcmp(req->method, "POST") != 0) {
		api_std_error(a, resp, SCHEMA_E_METHOD_NOT_ALLOWED, NULL, "$batch accepts POST only.");
		return;
	}
	const char *ct = server_request_header(req, "Content-Type");
	if (!ct || odata_batch_request_parse(ct, req->body ? req->body : "", req->body_len, a->max_body, &b, err,
					     sizeof(err)) < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, NULL, ct ? err : "The $batch request needs a multipart/mixed Content-Type.");
		return;
	}
	int keep_going = api_prefer(req, "odata.continue-on-error");
	size_t nreq = b.nrequests;
	st.a = a;
	st.exec = exec;
	st.resps = calloc(nreq + 1, sizeof(*st.resps));
	st.bresp = calloc(nreq + 1, sizeof(*st.bresp));
	st.bhdrs = calloc((nreq + 1) * SERVER_MAX_RESPONSE_HEADERS, sizeof(*st.bhdrs));
	st.rparts = calloc(b.nparts + 1, sizeof(*st.rparts));
	st.refs = calloc(nreq + 1, sizeof(*st.refs));
	if (quick && keep_going) {
		qr.ops = quick;
		qr.q = calloc(b.nparts + 1, sizeof(*qr.q));
		qr.ready = calloc(b.nparts + 1, sizeof(*qr.ready));
	}
	if (!st.resps || !st.bresp || !st.bhdrs || !st.rparts || !st.refs || (qr.ops && (!qr.q || !qr.ready))) {
		api_std_error(a, resp, SCHEMA_E_INTERNAL, NULL, "Out of memory.");
		goto out;
	}
	int failed_status = 0;
	/* A changeset of several requests first runs with creates deferred (one multi-row statement
	 * at the end); when the deferred write fails (an id or key turned out to be taken), it is
	 * rolled back and run again without deferring, which gives each request its exact outcome. */
	int defer = 1;
	for (size_t p = 0; p < b.nparts && !failed_status; p++) {
		const struct odata_batch_part *part = &b.parts[p];
		if (qr.ops && p >= qr.end)
			quick_run(&st, &qr, &b, p);
		if (qr.ops && qr.ready[p]) {
			quick_answer(&st, &qr, part, p, &st.rparts[st.nrparts++]);
			continue;
		}
		struct api_txn t;
		memset(&t, 0, sizeof(t));
		t.refs = st.refs;
		t.nrefs = &st.nrefs;
		t.defer = defer && part->changeset && part->nrequests > 1;
		defer = 1;
		size_t first = st.nresp;
		struct odata_batch_response_part *rp = &st.rparts[st.nrparts++];
		if (api_txn_begin(a, &t, &st.resps[st.nresp]) < 0) {
			/* begin filled the error response: report it as this part's outcome */
			st.bresp[st.nresp].status = st.resps[st.nresp].status;
			st.bresp[st.nresp].body = st.resps[st.nresp].body;
			st.bresp[st.nresp].body_len = st.resps[st.nresp].body_len;
			rp->responses = &st.bresp[st.nresp];
			rp->nresponses = 1;
			st.nresp++;
			failed_status = 500;
			break;
		}
		t.in_changeset = part->changeset;
		size_t refs_before = st.nrefs;
		int failed = 0;
		for (size_t i = 0; i < part->nrequests; i++) {
			int status = run_one(&st, &t, &part->requests[i]);
			if (status >= 400) {
				failed = status;
				break;
			}
		}
		if (t.defer && (estore_deferred_failed(t.tx) || (!failed && estore_flush(t.tx, err, sizeof(err)) == ESTORE_EDEFER))) {
			/* Redo this changeset without deferring: forget its responses and Content-IDs. */
			api_txn_rollback(&t);
			for (size_t i = first; i < st.nresp; i++)
				server_response_clear(&st.resps[i]);
			memset(&st.bresp[first], 0, (st.nresp - first) * sizeof(*st.bresp));
			st.nresp = first;
			for (size_t r = refs_before; r < st.nrefs; r++) {
				free(st.refs[r].content_id);
				free(st.refs[r].path);
			}
			st.nrefs = refs_before;
			st.nrparts--;
			defer = 0;
			p--;
			continue;
		}
		if (failed) {
			api_txn_rollback(&t);
			if (part->changeset) {
				/* The whole changeset is reported as its one failing response; forget the
				 * Content-IDs it declared. */
				size_t last = st.nresp - 1;
				if (last != first) {
					st.bresp[first] = st.bresp[last];
				}
				st.nresp = last + 1; /* keep the server_responses for freeing */
				rp->changeset = 0;
				rp->responses = &st.bresp[first];
				rp->nresponses = 1;
				for (size_t r = refs_before; r < st.nrefs; r++) {
					free(st.refs[r].content_id);
					free(st.refs[r].path);
				}
				st.nrefs = refs_before;
			} else {
				rp->changeset = 0;
				rp->responses = &st.bresp[first];
				rp->nresponses = 1;
			}
			if (!keep_going)
				failed_status = failed;
			continue;
		}
		if (api_txn_commit(a, &t, &st.resps[st.nresp - 1]) < 0) {
			size_t last = st.nresp - 1;
			st.bresp[first] = st.bresp[last];
			st.bresp[first].status = st.resps[last].status;
			st.bresp[first].body = st.resps[last].body;
			st.bresp[first].body_len = st.resps[last].body_len;
			st.bresp[first].nheaders = 0;
			rp->changeset = 0;
			rp->responses = &st.bresp[first];
			rp->nresponses = 1;
			failed_status = 500;
			continue;
		}
		rp->changeset = part->changeset;
		rp->responses = &st.bresp[first];
		rp->nresponses = st.nresp - first;
	}
	char bid[37];
	estore_new_guid(bid);
	char *body = NULL, *ctype = NULL;
	size_t blen = 0;
	if (odata_batch_response_build(st.rparts, st.nrparts, bid, &body, &blen, &ctype, err, sizeof(err)) < 0) {
		log_error("batch: response build failed", "error", err);
		api_std_error(a, resp, SCHEMA_E_INTERNAL, NULL, "The batch response could not be built.");
		goto out;
	}
	int status = 200;
	if (failed_status && a->flavour == SCHEMA_CE)
		status = failed_status;
	server_response_take_body(resp, status, ctype, body, blen);
	free(ctype);
out:
	if (st.resps)
		for (size_t i = 0; i < st.nresp; i++)
			server_response_clear(&st.resps[i]);
	if (st.refs)
		for (size_t i = 0; i < st.nrefs; i++) {
			free(st.refs[i].content_id);
			free(st.refs[i].path);
		}
	free(st.refs);
	if (qr.q)
		for (size_t p = 0; p < b.nparts; p++)
			quick_clear(&qr.q[p]);
	free(qr.q);
	free(qr.ready);
	free(st.resps);
	free(st.bresp);
	free(st.bhdrs);
	free(st.rparts);
	odata_batch_clear(&b);
}
