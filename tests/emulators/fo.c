#include "fo.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "odata.h"
#include "query.h"

static void store_error(struct api *a, struct server_response *resp, const char *what, const char *err)
{
	log_error("store failure", "op", what, "error", err);
	api_std_error(a, resp, SCHEMA_E_INTERNAL, NULL, "The storage failed.");
}

/* The key fields of a record as an object (what data events carry in Target). New tree. */
static cJSON *key_fields(const struct schema_entity *e, const cJSON *data)
{
	cJSON *o = cJSON_CreateObject();
	for (size_t i = 0; o && i < e->primary_key.n_fields; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(data, e->primary_key.fields[i]);
		if (v)
			cJSON_AddItemToObject(o, e->primary_key.fields[i], cJSON_Duplicate(v, 1));
	}
	return o;
}

/* The entity's key predicate for a record, for Location headers: "(dataAreaId='usmf',...)". */
static char *key_predicate(const struct api *a, const struct schema_entity *e, const cJSON *data)
{
	struct odata_key_part parts[ODATA_KEY_MAX_PARTS];
	char texts[ODATA_KEY_MAX_PARTS][64];
	char enum_types[ODATA_KEY_MAX_PARTS][128];
	size_t n = 0;
	char err[128];
	for (size_t i = 0; i < e->primary_key.n_fields && n < ODATA_KEY_MAX_PARTS; i++, n++) {
		const struct schema_field *f = schema_field(e, e->primary_key.fields[i]);
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(data, e->primary_key.fields[i]);
		parts[n].name = e->primary_key.fields[i];
		parts[n].enum_type = NULL;
		parts[n].kind = ODATA_KIND_STRING;
		if (cJSON_IsString(v)) {
			parts[n].value = v->valuestring;
			if (f && f->type == SCHEMA_T_ENUM && f->enum_type) {
				snprintf(enum_types[n], sizeof(enum_types[n]), "%s.%s", a->schema->namespace_name,
					 f->enum_type->name);
				parts[n].kind = ODATA_KIND_ENUM;
				parts[n].enum_type = enum_types[n];
			}
		} else if (cJSON_IsNumber(v)) {
			snprintf(texts[n], sizeof(texts[n]), "%.0f", v->valuedouble);
			parts[n].value = texts[n];
			parts[n].kind = ODATA_KIND_INT;
		} else {
			return NULL;
		}
	}
	char *out = NULL;
	if (odata_key_build(parts, n, &out, err, sizeof(err)) < 0)
		return NULL;
	return out;
}

char *fo_key_predicate(const struct api *a, const struct schema_entity *e, const cJSON *data)
{
	return key_predicate(a, e, data);
}

/* "CustomerAccount: US-001, dataAreaId: usmf" for infolog-style messages. */
static void key_text_human(const struct schema_entity *e, const cJSON *data, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < e->primary_key.n_fields && o < len; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(data, e->primary_key.fields[i]);
		char num[32];
		const char *t = cJSON_IsString(v) ? v->valuestring : "";
		if (cJSON_IsNumber(v)) {
			snprintf(num, sizeof(num), "%.0f", v->valuedouble);
			t = num;
		}
		o += (size_t)snprintf(buf + o, len - o, "%s%s: %s", i ? ", " : "", e->primary_key.fields[i], t);
	}
}

static void respond_record(struct api *a, const struct schema_entity *e, const char *set,
			   const struct server_request *req, const struct estore_record *rec, int status,
			   struct server_response *resp)
{
	struct query q;
	char err[256];
	memset(&q, 0, sizeof(q));
	if (query_parse(req->query, strlen(req->query), QUERY_FO, &q, err, sizeof(err)) < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, err);
		return;
	}
	for (size_t i = 0; i < q.nselect; i++) {
		if (api_field_query_type((void *)e, q.select[i]) == QUERY_T_UNKNOWN) {
			char msg[300];
			snprintf(msg, sizeof(msg), "Could not find a property named '%.100s' on type '%s'.", q.select[i],
				 e->type_name);
			api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, msg);
			query_clear(&q);
			return;
		}
	}
	cJSON *o = api_render(a, e, rec, q.select, q.nselect);
	cJSON *root = cJSON_CreateObject();
	char ctx[512];
	snprintf(ctx, sizeof(ctx), "%s%s$metadata#%s/$entity", a->base_url, a->prefix, set);
	if (root) {
		cJSON_AddStringToObject(root, "@odata.context", ctx);
		while (o && o->child) {
			cJSON *item = cJSON_DetachItemViaPointer(o, o->child);
			cJSON_AddItemToObject(root, item->string, item);
		}
	}
	server_response_json(resp, status, root);
	char etag[96];
	api_etag(a, rec->version, etag, sizeof(etag));
	server_response_header(resp, "ETag", etag);
	cJSON_Delete(o);
	cJSON_Delete(root);
	query_clear(&q);
}

static cJSON *image(const struct api *a, const struct schema_entity *e, const struct estore_record *rec)
{
	if (!api_notify_wanted(a))
		return NULL;
	cJSON *o = api_render(a, e, rec, NULL, 0);
	if (o)
		cJSON_DeleteItemFromObjectCaseSensitive(o, "@odata.etag");
	return o;
}

/* Copies body fields (annotations dropped) onto data; dataAreaId is lower-cased as FO does. */
static int apply_body(const struct schema_entity *e, const cJSON *body, cJSON *data)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, body)
	{
		if (strchr(m->string, '@'))
			continue;
		if (!schema_field(e, m->string))
			continue;
		cJSON *copy = cJSON_Duplicate(m, 1);
		if (!copy)
			return -1;
		if (e->company_field && strcmp(m->string, e->company_field) == 0 && cJSON_IsString(copy))
			for (char *p = copy->valuestring; *p; p++)
				*p = (char)tolower((unsigned char)*p);
		cJSON_DeleteItemFromObjectCaseSensitive(data, m->string);
		cJSON_AddItemToObject(data, m->string, copy);
	}
	return 0;
}

static void do_create(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
		      const struct server_request *req, const cJSON *body, struct server_response *resp)
{
	struct schema_error serr;
	char err[256], id[37];
	cJSON *data = NULL, *keys = NULL;
	char *text = NULL, *pred = NULL;
	memset(&serr, 0, sizeof(serr));
	if (schema_validate(a->schema, e, body, SCHEMA_OP_CREATE, &serr) < 0) {
		api_error(a, resp, &serr);
		goto out;
	}
	data = cJSON_CreateObject();
	if (!data || apply_body(e, body, data) < 0)
		goto oom;
	api_apply_defaults(e, data);
	text = api_key_text(e, &e->primary_key, data);
	if (!text) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, "Every key field must be given.");
		goto out;
	}
	int rc = estore_find(t->tx, e->set_names[0], "primary", text, id, err, sizeof(err));
	if (rc < 0) {
		store_error(a, resp, "find", err);
		goto out;
	}
	char human[512];
	key_text_human(e, data, human, sizeof(human));
	if (rc == 0) {
		api_std_error(a, resp, SCHEMA_E_ALREADY_EXISTS, e, human);
		goto out;
	}
	estore_new_guid(id);
	keys = api_keys_json(a, e, data);
	if (!keys)
		goto oom;
	long long version = 0;
	rc = estore_put(t->tx, ESTORE_OP_CREATE, e->set_names[0], id, data, keys, &version, err, sizeof(err));
	if (rc == ESTORE_EDUP) {
		api_std_error(a, resp, SCHEMA_E_ALREADY_EXISTS, e, human);
		goto out;
	}
	if (rc != 0) {
		store_error(a, resp, "create", err);
		goto out;
	}
	long long now = api_now_ms();
	struct estore_record rec = {.data = data, .version = version, .created_ms = now, .modified_ms = now};
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	api_txn_note(t, NOTIFY_CREATE, e, id, key_fields(e, data), image(a, e, &rec), NULL, version);
	if (api_prefer(req, "return=minimal")) {
		server_response_empty(resp, 204);
		server_response_header(resp, "Preference-Applied", "return=minimal");
	} else {
		respond_record(a, e, set, req, &rec, 201, resp);
	}
	pred = key_predicate(a, e, data);
	if (pred) {
		char url[1024];
		snprintf(url, sizeof(url), "%s%s%s%s", a->base_url, a->prefix, set, pred);
		server_response_header(resp, "Location", url);
		server_response_header(resp, "OData-EntityId", url);
	}
	goto out;
oom:
	api_std_error(a, resp, SCHEMA_E_INTERNAL, e, "Out of memory.");
out:
	free(pred);
	free(text);
	cJSON_Delete(keys);
	cJSON_Delete(data);
}

static int check_if_match(struct api *a, const struct server_request *req, const struct schema_entity *e,
			  long long version, struct server_response *resp)
{
	const char *im = server_request_header(req, "If-Match");
	if (!im || strcmp(im, "*") == 0)
		return 0;
	char etag[96];
	api_etag(a, version, etag, sizeof(etag));
	if (strcmp(im, etag) == 0)
		return 0;
	api_std_error(a, resp, SCHEMA_E_VERSION_MISMATCH, e, NULL);
	return -1;
}

/* The answer to an update that wrote `rec` over `old` (NULL: not known), noted in t for the change
 * notices: 200 with the record when the request prefers a representation, else 204 with its ETag. */
static void answer_update(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
			  const struct server_request *req, const struct estore_record *rec,
			  const struct estore_record *old, struct server_response *resp)
{
	api_txn_note(t, NOTIFY_UPDATE, e, rec->id, key_fields(e, rec->data), image(a, e, rec),
		     old ? image(a, e, old) : NULL, rec->version);
	if (api_prefer(req, "return=representation")) {
		respond_record(a, e, set, req, rec, 200, resp);
	} else {
		server_response_empty(resp, 204);
		char etag[96];
		api_etag(a, rec->version, etag, sizeof(etag));
		server_response_header(resp, "ETag", etag);
	}
}

/* PATCH or PUT of record `old` (locked in t by estore_find_get_next); `version` is the one its
 * write carries. */
static void do_update(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
		      const struct server_request *req, const cJSON *body, const struct estore_record *old,
		      long long version, struct server_response *resp)
{
	struct schema_error serr;
	char err[256];
	cJSON *data = NULL;
	memset(&serr, 0, sizeof(serr));
	if (check_if_match(a, req, e, old->version, resp) < 0)
		return;
	if (schema_validate(a->schema, e, body, SCHEMA_OP_UPDATE, &serr) < 0) {
		api_error(a, resp, &serr);
		return;
	}
	/* PATCH merges into the stored record; PUT replaces it (key fields kept, the rest from the body). */
	data = strcmp(req->method, "PUT") == 0 ? key_fields(e, old->data) : cJSON_Duplicate(old->data, 1);
	if (!data || apply_body(e, body, data) < 0) {
		api_std_error(a, resp, SCHEMA_E_INTERNAL, e, "Out of memory.");
		goto out;
	}
	for (size_t i = 0; i < e->primary_key.n_fields; i++) {
		const char *k = e->primary_key.fields[i];
		const cJSON *nv = cJSON_GetObjectItemCaseSensitive(data, k);
		const cJSON *ov = cJSON_GetObjectItemCaseSensitive(old->data, k);
		int same = nv && ov &&
			   (cJSON_IsString(nv) && cJSON_IsString(ov) ? strcasecmp(nv->valuestring, ov->valuestring) == 0
								       : cJSON_Compare(nv, ov, 1));
		if (!same) {
			char msg[200];
			snprintf(msg, sizeof(msg), "Key field '%s' cannot be changed.", k);
			api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, msg);
			goto out;
		}
	}
	int rc = estore_put_at(t->tx, e->set_names[0], old->id, data, version, err, sizeof(err));
	if (rc != 0) {
		store_error(a, resp, "update", err);
		goto out;
	}
	struct estore_record rec = {.data = data, .version = version, .created_ms = old->created_ms,
				    .modified_ms = api_now_ms()};
	snprintf(rec.id, sizeof(rec.id), "%s", old->id);
	answer_update(a, t, e, set, req, &rec, old, resp);
out:
	cJSON_Delete(data);
}

/* The record a request's path names: "<set>(<primary key>)". Fills e, set, key and *text (the
 * key's canonical text, caller frees). 0; 1 when the path is the set itself (no key); -1 when it
 * names nothing, with resp (when not NULL) filled. */
static int parse_record_path(struct api *a, const char *rel, const struct schema_entity **e_out, char set[128],
			     struct odata_key *key, char **text, struct server_response *resp)
{
	char err[256];
	size_t setlen = strcspn(rel, "(/");
	*text = NULL;
	if (setlen == 0 || setlen >= 128) {
		if (resp)
			api_std_error(a, resp, SCHEMA_E_NOT_FOUND, NULL, "Resource not found for the segment.");
		return -1;
	}
	snprintf(set, 128, "%.*s", (int)setlen, rel);
	const struct schema_entity *e = schema_entity_by_set(a->schema, set);
	*e_out = e;
	if (!e) {
		char msg[512];
		snprintf(msg, sizeof(msg), "No HTTP resource was found that matches the request URI '%s%s%.100s'.",
			 a->base_url, a->prefix, set);
		if (resp)
			server_response_odata_error(resp, 404, "", msg);
		return -1;
	}
	const char *rest = rel + setlen;
	if (*rest == '/') {
		if (resp)
			api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, "The emulator does not serve property paths.");
		return -1;
	}
	if (*rest == '\0')
		return 1;
	if (odata_key_parse(rest, strlen(rest), NULL, key, err, sizeof(err)) < 0) {
		if (resp)
			api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, err);
		return -1;
	}
	const char *names[ODATA_KEY_MAX_PARTS];
	for (size_t i = 0; i < key->nparts; i++)
		names[i] = key->parts[i].name ? key->parts[i].name : "";
	if (schema_key_match(e, names, key->nparts) != &e->primary_key ||
	    !(*text = api_key_text_from_url(e, &e->primary_key, key->parts, key->nparts))) {
		if (resp)
			api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, NULL);
		return -1;
	}
	return 0;
}

void fo_exec(struct api *a, struct api_txn *t, const struct server_request *req, const char *rel,
	     struct server_response *resp)
{
	char err[256], id[37];
	struct odata_key key;
	struct estore_record rec;
	cJSON *body = NULL;
	char *text = NULL;
	memset(&key, 0, sizeof(key));
	memset(&rec, 0, sizeof(rec));
	char set[128];
	const struct schema_entity *e = NULL;
	int path = parse_record_path(a, rel, &e, set, &key, &text, resp);
	if (path < 0)
		goto out;
	if (path == 1) {
		if (strcmp(req->method, "GET") == 0) {
			char *cc = server_request_query_param(req, "cross-company");
			int cross = cc && strcasecmp(cc, "true") == 0;
			free(cc);
			api_collection_get(a, t, e, set, req, cross ? NULL : a->schema->default_company, -1, resp);
		} else if (strcmp(req->method, "POST") == 0) {
			body = api_parse_body(a, req, resp);
			if (body)
				do_create(a, t, e, set, req, body, resp);
		} else {
			api_std_error(a, resp, SCHEMA_E_METHOD_NOT_ALLOWED, e, NULL);
		}
		goto out;
	}
	const char *rest = rel + strlen(set);
	/* a write gets its version with the locking read, so that its update can go with the commit */
	int writes = strcmp(req->method, "PATCH") == 0 || strcmp(req->method, "PUT") == 0;
	long long next_version = 0;
	int rc = writes ? estore_find_get_next(t->tx, e->set_names[0], "primary", text, &rec, &next_version, err,
					       sizeof(err))
			: estore_find_get(t->tx, e->set_names[0], "primary", text, &rec, err, sizeof(err));
	if (rc < 0) {
		store_error(a, resp, "get", err);
		goto out;
	}
	if (rc == ESTORE_NOTFOUND) {
		api_std_error(a, resp, SCHEMA_E_NOT_FOUND, e, rest);
		goto out;
	}
	snprintf(id, sizeof(id), "%s", rec.id);
	if (strcmp(req->method, "GET") == 0) {
		char etag[96];
		api_etag(a, rec.version, etag, sizeof(etag));
		const char *inm = server_request_header(req, "If-None-Match");
		if (inm && strcmp(inm, etag) == 0) {
			server_response_empty(resp, 304);
			server_response_header(resp, "ETag", etag);
		} else {
			respond_record(a, e, set, req, &rec, 200, resp);
		}
	} else if (strcmp(req->method, "PATCH") == 0 || strcmp(req->method, "PUT") == 0) {
		body = api_parse_body(a, req, resp);
		if (body)
			do_update(a, t, e, set, req, body, &rec, next_version, resp);
	} else if (strcmp(req->method, "DELETE") == 0) {
		if (check_if_match(a, req, e, rec.version, resp) < 0)
			goto out;
		long long version = 0;
		rc = estore_delete(t->tx, e->set_names[0], id, &version, err, sizeof(err));
		if (rc != 0) {
			store_error(a, resp, "delete", err);
			goto out;
		}
		api_txn_note(t, NOTIFY_DELETE, e, id, key_fields(e, rec.data), NULL, image(a, e, &rec), version);
		server_response_empty(resp, 204);
	} else {
		api_std_error(a, resp, SCHEMA_E_METHOD_NOT_ALLOWED, e, NULL);
	}
out:
	free(text);
	cJSON_Delete(body);
	estore_record_clear(&rec);
	odata_key_clear(&key);
}

/* Whether the key fields that body sets (if any) hold the values of the URL's key: FO refuses to
 * change a key, so a body that would is left to do_update, which says so. */
static int body_keeps_key(const struct schema_entity *e, const cJSON *body, const struct odata_key *key)
{
	for (size_t i = 0; i < e->primary_key.n_fields; i++) {
		const char *k = e->primary_key.fields[i];
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, k);
		if (!v)
			continue;
		const char *url_value = NULL;
		for (size_t j = 0; j < key->nparts; j++)
			if (key->parts[j].name && strcmp(key->parts[j].name, k) == 0)
				url_value = key->parts[j].value;
		if (!cJSON_IsString(v) || !url_value || strcasecmp(v->valuestring, url_value) != 0)
			return 0;
	}
	return 1;
}

/* api_quick_ops.prepare: a PATCH by primary key whose body is valid, changes no key and names a
 * version (If-Match) the way this emulator writes ETags, or none. */
static int quick_prepare(struct api *a, const struct server_request *req, const char *rel, struct api_quick *q)
{
	struct odata_key key;
	char *text = NULL;
	cJSON *body = NULL, *fields = NULL;
	const struct schema_entity *e = NULL;
	struct schema_error serr;
	long long version = 0;
	int ok = 0;
	memset(&key, 0, sizeof(key));
	memset(q, 0, sizeof(*q));
	if (strcmp(req->method, "PATCH") != 0)
		return 0;
	const char *im = server_request_header(req, "If-Match");
	if (im && strcmp(im, "*") != 0 && api_etag_version(a, im, &version) < 0)
		goto out;
	if (parse_record_path(a, rel, &e, q->set, &key, &text, NULL) != 0)
		goto out;
	body = req->body && req->body_len ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
	memset(&serr, 0, sizeof(serr));
	if (!cJSON_IsObject(body) || schema_validate(a->schema, e, body, SCHEMA_OP_UPDATE, &serr) < 0 ||
	    !body_keeps_key(e, body, &key))
		goto out;
	fields = cJSON_CreateObject();
	if (!fields || apply_body(e, body, fields) < 0 || !(q->fields = cJSON_PrintUnformatted(fields)))
		goto out;
	q->e = e;
	q->keyvalue = text;
	text = NULL;
	q->patch = (struct estore_patch){.entity = e->set_names[0],
					 .keyname = "primary",
					 .keyvalue = q->keyvalue,
					 .fields = q->fields,
					 .if_version = version,
					 .want_old = api_notify_wanted(a)};
	ok = 1;
out:
	if (!ok) {
		free(q->fields);
		q->fields = NULL;
	}
	free(text);
	cJSON_Delete(body);
	cJSON_Delete(fields);
	odata_key_clear(&key);
	return ok;
}

/* api_quick_ops.respond: the answer of do_update for the write q->patch made. */
static void quick_respond(struct api *a, struct api_txn *t, const struct server_request *req, const struct api_quick *q,
			  struct server_response *resp)
{
	answer_update(a, t, q->e, q->set, req, &q->patch.rec, q->patch.old.data ? &q->patch.old : NULL, resp);
}

static const struct api_quick_ops QUICK = {.prepare = quick_prepare, .respond = quick_respond};

static void service_document(struct api *a, struct server_response *resp)
{
	cJSON *root = cJSON_CreateObject();
	char ctx[512];
	snprintf(ctx, sizeof(ctx), "%s%s$metadata", a->base_url, a->prefix);
	cJSON_AddStringToObject(root, "@odata.context", ctx);
	cJSON *v = cJSON_AddArrayToObject(root, "value");
	for (size_t i = 0; i < a->schema->n_entities; i++) {
		for (size_t j = 0; j < a->schema->entities[i].n_set_names; j++) {
			cJSON *s = cJSON_CreateObject();
			cJSON_AddStringToObject(s, "name", a->schema->entities[i].set_names[j]);
			cJSON_AddStringToObject(s, "kind", "EntitySet");
			cJSON_AddStringToObject(s, "url", a->schema->entities[i].set_names[j]);
			cJSON_AddItemToArray(v, s);
		}
	}
	server_response_json(resp, 200, root);
	cJSON_Delete(root);
}

void fo_handle(void *ctx, const struct server_request *req, struct server_response *resp)
{
	struct api *a = ctx;
	const char *rel = req->path + strlen(a->prefix);
	if (strncmp(rel, "$metadata", 9) == 0) {
		server_response_odata_error(resp, 501, "", "The emulator does not serve $metadata.");
		return;
	}
	if (*rel == '\0') {
		service_document(a, resp);
		return;
	}
	if (strcmp(rel, "$batch") == 0) {
		api_batch(a, req, fo_exec, &QUICK, resp);
		return;
	}
	struct api_txn t;
	memset(&t, 0, sizeof(t));
	if (api_txn_begin(a, &t, resp) < 0)
		return;
	fo_exec(a, &t, req, rel, resp);
	if (resp->status >= 400 || resp->status == 0)
		api_txn_rollback(&t);
	else if (api_txn_commit(a, &t, resp) < 0)
		log_warn("commit failed; answered 500");
}
