#include "ce.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "odata.h"
#include "query.h"

#define CE_ZERO_GUID "00000000-0000-0000-0000-000000000000"

static int is_guid(const char *s)
{
	static const char pat[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	if (strlen(s) != sizeof(pat) - 1)
		return 0;
	for (size_t i = 0; pat[i]; i++) {
		if (pat[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

static void lower_guid(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static void store_error(struct api *a, struct server_response *resp, const char *what, const char *err)
{
	log_error("store failure", "op", what, "error", err);
	api_std_error(a, resp, SCHEMA_E_INTERNAL, NULL, "The storage failed.");
}

/* Resolution of a key predicate to a record id. */
enum resolved { RES_FOUND = 0, RES_MISSING = 1, RES_ERROR = -1 };

/*
 * Resolves `key` of entity e. On RES_FOUND and RES_MISSING fills id (RES_MISSING with an id only
 * when the URL named the GUID itself; else id is ""); *alt gets the alternate key used (NULL for
 * the id forms). On RES_FOUND, *rec_out (when not NULL) holds the record, locked for the unit of work
 * (clear it with estore_record_clear). RES_ERROR fills resp.
 */
static enum resolved resolve_key(struct api *a, struct api_txn *t, const struct schema_entity *e,
				 const struct odata_key *key, char id[37], const struct schema_key **alt,
				 struct estore_record *rec_out, struct server_response *resp)
{
	char err[256];
	*alt = NULL;
	id[0] = '\0';
	const char *guid = NULL;
	if (key->nparts == 1 && !key->parts[0].name) {
		if (key->parts[0].kind != ODATA_KIND_GUID) {
			api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, NULL);
			return RES_ERROR;
		}
		guid = key->parts[0].value;
	} else if (key->nparts == 1 && e->id_field && strcmp(key->parts[0].name, e->id_field) == 0) {
		if (!is_guid(key->parts[0].value)) {
			api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, NULL);
			return RES_ERROR;
		}
		guid = key->parts[0].value;
	}
	if (guid) {
		snprintf(id, 37, "%s", guid);
		lower_guid(id);
		struct estore_record rec;
		int rc = estore_get(t->tx, e->set_names[0], id, &rec, err, sizeof(err));
		if (rc < 0) {
			store_error(a, resp, "get", err);
			return RES_ERROR;
		}
		if (rc == 0) {
			if (rec_out)
				*rec_out = rec;
			else
				estore_record_clear(&rec);
		}
		return rc == 0 ? RES_FOUND : RES_MISSING;
	}
	const char *names[ODATA_KEY_MAX_PARTS];
	for (size_t i = 0; i < key->nparts; i++)
		names[i] = key->parts[i].name ? key->parts[i].name : "";
	const struct schema_key *k = schema_key_match(e, names, key->nparts);
	if (!k || k == &e->primary_key) {
		api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, NULL);
		return RES_ERROR;
	}
	*alt = k;
	char *text = api_key_text_from_url(e, k, key->parts, key->nparts);
	if (!text) {
		api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, NULL);
		return RES_ERROR;
	}
	int rc = estore_find(t->tx, e->set_names[0], k->name, text, id, err, sizeof(err));
	free(text);
	if (rc < 0) {
		store_error(a, resp, "find", err);
		return RES_ERROR;
	}
	if (rc == ESTORE_NOTFOUND) {
		id[0] = '\0';
		return RES_MISSING;
	}
	if (rec_out) {
		rc = estore_get(t->tx, e->set_names[0], id, rec_out, err, sizeof(err));
		if (rc != 0) {
			store_error(a, resp, "get", rc < 0 ? err : "key row without record");
			return RES_ERROR;
		}
	}
	return RES_FOUND;
}

/* Human text of a key for "Does Not Exist" messages. */
static void key_detail(const struct schema_entity *e, const struct odata_key *key, const char *id, char *buf,
		       size_t len)
{
	if (id && *id) {
		snprintf(buf, len, "%s With Id = %s", e->logical_name, id);
		return;
	}
	size_t o = (size_t)snprintf(buf, len, "%s With Ids = ", e->logical_name);
	for (size_t i = 0; i < key->nparts && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s:%s", i ? "," : "", key->parts[i].name ? key->parts[i].name : "",
				      key->parts[i].value);
}

/*
 * Resolves an @odata.bind value for lookup field f of e to the target's GUID. Accepts
 * "/set(key)", "set(key)", an absolute URL under the service root, or "$n" inside a batch.
 * 0 on success, -1 with resp filled (400 when malformed or when the target does not exist).
 */
static int resolve_bind(struct api *a, struct api_txn *t, const struct schema_entity *e, const struct schema_field *f,
			const char *value, char id_out[37], struct server_response *resp)
{
	char err[256];
	const char *p = value;
	if (p[0] == '$') {
		p = api_ref_lookup(t, value);
		if (!p) {
			char msg[200];
			snprintf(msg, sizeof(msg), "Content-ID Reference: '%.100s' does not exist in the batch context.",
				 value);
			api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, msg);
			return -1;
		}
	}
	size_t bl = strlen(a->base_url);
	if (strncmp(p, a->base_url, bl) == 0)
		p += bl;
	if (strncmp(p, a->prefix, strlen(a->prefix)) == 0)
		p += strlen(a->prefix);
	else if (p[0] == '/')
		p++;
	size_t setlen = strcspn(p, "(");
	char msg[300];
	if (p[setlen] != '(' || setlen == 0 || setlen > 127) {
		snprintf(msg, sizeof(msg), "The value '%.150s' of '%s@odata.bind' is not a valid entity reference.",
			 value, f->nav);
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, msg);
		return -1;
	}
	char set[128];
	snprintf(set, sizeof(set), "%.*s", (int)setlen, p);
	const struct schema_entity *target = schema_entity_by_set(a->schema, set);
	if (!target || (f->target && strcmp(target->logical_name, f->target) != 0)) {
		snprintf(msg, sizeof(msg), "The entity set '%.100s' is not valid for navigation property '%s'.", set,
			 f->nav);
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, msg);
		return -1;
	}
	struct odata_key key;
	memset(&key, 0, sizeof(key));
	if (odata_key_parse(p + setlen, strlen(p + setlen), NULL, &key, err, sizeof(err)) < 0) {
		snprintf(msg, sizeof(msg), "Bad key in '%s@odata.bind': %s", f->nav, err);
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, msg);
		return -1;
	}
	const struct schema_key *alt;
	enum resolved r = resolve_key(a, t, target, &key, id_out, &alt, NULL, resp);
	if (r == RES_MISSING) {
		key_detail(target, &key, id_out, msg, sizeof(msg));
		api_std_error(a, resp, SCHEMA_E_LOOKUP_MISSING, e, msg);
	}
	odata_key_clear(&key);
	return r == RES_FOUND ? 0 : -1;
}

/* Applies a (validated) client body onto `data`: plain fields copied, lookups resolved and stored
 * as _x_value GUIDs, annotations dropped. 0 or -1 with resp filled. */
static int apply_body(struct api *a, struct api_txn *t, const struct schema_entity *e, const cJSON *body,
		      cJSON *data, struct server_response *resp)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, body)
	{
		const char *at = strchr(m->string, '@');
		if (at) {
			if (strcmp(at, "@odata.bind") != 0)
				continue;
			char nav[128];
			snprintf(nav, sizeof(nav), "%.*s", (int)(at - m->string), m->string);
			const struct schema_field *f = schema_field_by_nav(e, nav);
			if (!f)
				continue; /* schema_validate refused unknown ones already */
			const char *vn = f->value_name ? f->value_name : f->name;
			if (cJSON_IsNull(m)) {
				cJSON_DeleteItemFromObjectCaseSensitive(data, vn);
				cJSON_AddNullToObject(data, vn);
				continue;
			}
			char id[37];
			if (resolve_bind(a, t, e, f, m->valuestring, id, resp) < 0)
				return -1;
			cJSON_DeleteItemFromObjectCaseSensitive(data, vn);
			cJSON_AddStringToObject(data, vn, id);
			continue;
		}
		const struct schema_field *f = schema_field(e, m->string);
		if (!f)
			continue;
		cJSON *copy = cJSON_Duplicate(m, 1);
		if (!copy)
			return -1;
		if (f->type == SCHEMA_T_GUID && cJSON_IsString(copy))
			lower_guid(copy->valuestring);
		cJSON_DeleteItemFromObjectCaseSensitive(data, f->name);
		cJSON_AddItemToObject(data, f->name, copy);
	}
	return 0;
}

static void entity_url(const struct api *a, const char *set, const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s(%s)", a->base_url, a->prefix, set, id);
}

static void respond_record(struct api *a, const struct schema_entity *e, const char *set,
			   const struct server_request *req, const struct estore_record *rec, int status,
			   struct server_response *resp)
{
	struct query q;
	char err[256];
	memset(&q, 0, sizeof(q));
	if (query_parse(req->query, strlen(req->query), QUERY_CE, &q, err, sizeof(err)) < 0) {
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
	char ctx[512];
	snprintf(ctx, sizeof(ctx), "%s%s$metadata#%s/$entity", a->base_url, a->prefix, set);
	cJSON *root = cJSON_CreateObject();
	if (root) {
		cJSON_AddStringToObject(root, "@odata.context", ctx);
		while (o && o->child) {
			cJSON *item = cJSON_DetachItemViaPointer(o, o->child);
			cJSON_AddItemToObject(root, item->string, item);
		}
	}
	cJSON_Delete(o);
	o = root;
	server_response_json(resp, status, o);
	char etag[96];
	api_etag(a, rec->version, etag, sizeof(etag));
	server_response_header(resp, "ETag", etag);
	cJSON_Delete(o);
	query_clear(&q);
}

/* Renders a record image for notifications (no annotations). */
static cJSON *image(const struct api *a, const struct schema_entity *e, const struct estore_record *rec)
{
	if (!api_notify_wanted(a))
		return NULL;
	cJSON *o = api_render(a, e, rec, NULL, 0);
	if (o)
		cJSON_DeleteItemFromObjectCaseSensitive(o, "@odata.etag");
	return o;
}

enum create_mode { CREATE_POST, CREATE_UPSERT, CREATE_OPTIMISTIC };

/*
 * Creates a record from `body`; forced_id (may be NULL) is the GUID from an upsert URL. Returns 0
 * with resp filled. CREATE_OPTIMISTIC is an upsert by GUID tried as a create before any read (one
 * round trip for new rows): it returns 1 with resp untouched when the body is not a valid create
 * or the id is already live, so the caller goes on with the read-then-update path.
 */
static int do_create(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
		     const struct server_request *req, const cJSON *body, const char *forced_id, enum create_mode mode,
		     struct server_response *resp)
{
	struct schema_error serr;
	char err[256];
	cJSON *data = NULL, *keys = NULL;
	int ret = 0;
	int upsert = mode != CREATE_POST;
	memset(&serr, 0, sizeof(serr));
	if (schema_validate(a->schema, e, body, SCHEMA_OP_CREATE, &serr) < 0) {
		if (mode == CREATE_OPTIMISTIC)
			return 1;
		api_error(a, resp, &serr);
		goto out;
	}
	char id[37];
	const cJSON *bid = e->id_field ? cJSON_GetObjectItemCaseSensitive(body, e->id_field) : NULL;
	if (forced_id) {
		snprintf(id, sizeof(id), "%s", forced_id);
	} else if (cJSON_IsString(bid) && is_guid(bid->valuestring)) {
		snprintf(id, sizeof(id), "%s", bid->valuestring);
		lower_guid(id);
	} else {
		estore_new_guid(id);
	}
	data = cJSON_CreateObject();
	if (!data)
		goto oom;
	if (apply_body(a, t, e, body, data, resp) < 0)
		goto out;
	api_apply_defaults(e, data);
	if (e->id_field) {
		cJSON_DeleteItemFromObjectCaseSensitive(data, e->id_field);
		cJSON_AddStringToObject(data, e->id_field, id);
	}
	keys = api_keys_json(a, e, data);
	if (!keys)
		goto oom;
	long long version = 0;
	if (t->defer && mode != CREATE_UPSERT && !api_notify_wanted(a) && !api_prefer(req, "return=representation")) {
		/* Inside a changeset nobody needs the version before the end: queue the row (the batch
		 * redoes the changeset without deferring if its id or a key turns out to be taken). */
		if (estore_put_deferred(t->tx, e->set_names[0], id, data, keys, err, sizeof(err)) < 0) {
			store_error(a, resp, "create", err);
			goto out;
		}
		server_response_empty(resp, 204);
		char url[512];
		entity_url(a, set, id, url, sizeof(url));
		server_response_header(resp, "OData-EntityId", url);
		if (!upsert)
			server_response_header(resp, "Location", url);
		goto out;
	}
	int rc = estore_put(t->tx, ESTORE_OP_CREATE, e->set_names[0], id, data, keys, &version, err, sizeof(err));
	if (rc == ESTORE_EDUP && mode == CREATE_OPTIMISTIC && strcmp(err, "id") == 0) {
		ret = 1; /* live already: nothing was written, the transaction is intact */
		goto out;
	}
	if (rc == ESTORE_EDUP) {
		api_std_error(a, resp, SCHEMA_E_DUPLICATE_KEY, e, strcmp(err, "id") == 0 ? id : err);
		goto out;
	}
	if (rc != 0) {
		store_error(a, resp, "create", err);
		goto out;
	}
	long long now = api_now_ms();
	struct estore_record rec = {.data = data, .version = version, .created_ms = now, .modified_ms = now};
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	api_txn_note(t, NOTIFY_CREATE, e, id, cJSON_Duplicate(keys, 1), image(a, e, &rec), NULL, version);
	if (api_prefer(req, "return=representation")) {
		respond_record(a, e, set, req, &rec, 201, resp);
		server_response_header(resp, "Preference-Applied", "return=representation");
	} else {
		server_response_empty(resp, 204);
	}
	char url[512];
	entity_url(a, set, id, url, sizeof(url));
	server_response_header(resp, "OData-EntityId", url);
	if (!upsert)
		server_response_header(resp, "Location", url);
	goto out;
oom:
	api_std_error(a, resp, SCHEMA_E_INTERNAL, e, "Out of memory.");
out:
	cJSON_Delete(keys);
	cJSON_Delete(data);
	return ret;
}

/* Whether a body writes the id or a field of an alternate key (then the stored keys must be
 * recomputed, which the one-statement merge does not do). */
static int touches_keys(const struct schema_entity *e, const cJSON *body)
{
	if (e->id_field && cJSON_GetObjectItemCaseSensitive(body, e->id_field))
		return 1;
	for (size_t k = 0; k < e->n_alt_keys; k++) {
		for (size_t i = 0; i < e->alt_keys[k].n_fields; i++) {
			const struct schema_field *f = schema_field(e, e->alt_keys[k].fields[i]);
			if (!f || cJSON_GetObjectItemCaseSensitive(body, f->name))
				return 1;
			if (f->type == SCHEMA_T_LOOKUP && f->nav) {
				char bind[200];
				snprintf(bind, sizeof(bind), "%s@odata.bind", f->nav);
				if (cJSON_GetObjectItemCaseSensitive(body, bind))
					return 1;
			}
		}
	}
	return 0;
}

/*
 * The common update, PATCH by GUID with no conditions, no key change, no representation asked and
 * no webhook to feed: one statement that merges the body into the stored record. Returns 0 with
 * resp filled (done or an error), 1 when the fast path does not apply or the row is missing
 * (resp untouched; the caller takes the general path).
 */
static int fast_update(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
		       const cJSON *body, const char *id, struct server_response *resp)
{
	struct schema_error serr;
	char err[256];
	memset(&serr, 0, sizeof(serr));
	if (touches_keys(e, body) || schema_validate(a->schema, e, body, SCHEMA_OP_UPDATE, &serr) < 0)
		return 1;
	cJSON *patch = cJSON_CreateObject();
	if (!patch)
		return 1;
	int ret = 0;
	if (apply_body(a, t, e, body, patch, resp) < 0)
		goto out; /* a bind that does not resolve fails the same way on the general path */
	long long version = 0;
	int rc = estore_merge(t->tx, e->set_names[0], id, patch, &version, err, sizeof(err));
	if (rc == ESTORE_NOTFOUND) {
		ret = 1;
		goto out;
	}
	if (rc != 0) {
		store_error(a, resp, "merge", err);
		goto out;
	}
	server_response_empty(resp, 204);
	char url[512];
	entity_url(a, set, id, url, sizeof(url));
	server_response_header(resp, "OData-EntityId", url);
out:
	cJSON_Delete(patch);
	return ret;
}

/* If-Match handling for an existing record: 0 to go on, -1 with 412 in resp. */
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

static void do_update(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set,
		      const struct server_request *req, const cJSON *body, const struct estore_record *old_rec,
		      struct server_response *resp)
{
	struct schema_error serr;
	char err[256];
	const char *id = old_rec->id;
	const struct estore_record old = *old_rec;
	cJSON *data = NULL, *keys = NULL, *old_keys = NULL;
	memset(&serr, 0, sizeof(serr));
	int rc;
	if (server_request_header(req, "If-None-Match") &&
	    strcmp(server_request_header(req, "If-None-Match"), "*") == 0) {
		api_std_error(a, resp, SCHEMA_E_ALREADY_EXISTS, e, NULL);
		goto out;
	}
	if (check_if_match(a, req, e, old.version, resp) < 0)
		goto out;
	if (schema_validate(a->schema, e, body, SCHEMA_OP_UPDATE, &serr) < 0) {
		api_error(a, resp, &serr);
		goto out;
	}
	data = cJSON_Duplicate(old.data, 1);
	if (!data)
		goto oom;
	if (apply_body(a, t, e, body, data, resp) < 0)
		goto out;
	if (e->id_field) {
		cJSON_DeleteItemFromObjectCaseSensitive(data, e->id_field);
		cJSON_AddStringToObject(data, e->id_field, id);
	}
	keys = api_keys_json(a, e, data);
	old_keys = api_keys_json(a, e, old.data);
	if (!keys || !old_keys)
		goto oom;
	long long version = 0;
	rc = estore_put(t->tx, ESTORE_OP_UPDATE, e->set_names[0], id, data,
			cJSON_Compare(keys, old_keys, 1) ? NULL : keys, &version, err, sizeof(err));
	if (rc == ESTORE_EDUP) {
		api_std_error(a, resp, SCHEMA_E_DUPLICATE_KEY, e, err);
		goto out;
	}
	if (rc != 0) {
		store_error(a, resp, "update", err);
		goto out;
	}
	struct estore_record rec = {.data = data, .version = version, .created_ms = old.created_ms,
				    .modified_ms = api_now_ms()};
	snprintf(rec.id, sizeof(rec.id), "%s", id);
	api_txn_note(t, NOTIFY_UPDATE, e, id, cJSON_Duplicate(keys, 1), image(a, e, &rec), image(a, e, &old), version);
	if (api_prefer(req, "return=representation")) {
		respond_record(a, e, set, req, &rec, 200, resp);
		server_response_header(resp, "Preference-Applied", "return=representation");
	} else {
		server_response_empty(resp, 204);
	}
	char url[512];
	entity_url(a, set, id, url, sizeof(url));
	server_response_header(resp, "OData-EntityId", url);
	goto out;
oom:
	api_std_error(a, resp, SCHEMA_E_INTERNAL, e, "Out of memory.");
out:
	cJSON_Delete(keys);
	cJSON_Delete(old_keys);
	cJSON_Delete(data);
}

/* Adds the URL's alternate key values to an upsert-create body (typed per field). */
static int add_url_key(struct api *a, const struct schema_entity *e, const struct schema_key *k,
		       const struct odata_key *key, cJSON *body)
{
	for (size_t i = 0; i < k->n_fields; i++) {
		const struct schema_field *f = schema_field(e, k->fields[i]);
		if (!f)
			return -1;
		const struct odata_key_part *part = NULL;
		for (size_t j = 0; j < key->nparts && !part; j++)
			if (strcmp(key->parts[j].name, f->name) == 0 ||
			    (f->value_name && strcmp(key->parts[j].name, f->value_name) == 0))
				part = &key->parts[j];
		if (!part)
			return -1;
		if (f->type == SCHEMA_T_LOOKUP) {
			const struct schema_entity *target = f->target ? schema_entity_by_name(a->schema, f->target) : NULL;
			if (!target || !f->nav)
				return -1;
			char bind[256], ref[300];
			snprintf(bind, sizeof(bind), "%s@odata.bind", f->nav);
			snprintf(ref, sizeof(ref), "/%s(%s)", target->set_names[0], part->value);
			cJSON_DeleteItemFromObjectCaseSensitive(body, bind);
			cJSON_AddStringToObject(body, bind, ref);
		} else if (part->kind == ODATA_KIND_INT) {
			cJSON_DeleteItemFromObjectCaseSensitive(body, f->name);
			cJSON_AddNumberToObject(body, f->name, strtod(part->value, NULL));
		} else {
			cJSON_DeleteItemFromObjectCaseSensitive(body, f->name);
			cJSON_AddStringToObject(body, f->name, part->value);
		}
	}
	return 0;
}

static void do_delete(struct api *a, struct api_txn *t, const struct schema_entity *e,
		      const struct server_request *req, const struct estore_record *old_rec, struct server_response *resp)
{
	char err[256];
	const struct estore_record old = *old_rec;
	const char *id = old.id;
	int rc;
	if (check_if_match(a, req, e, old.version, resp) < 0)
		goto out;
	long long version = 0;
	rc = estore_delete(t->tx, e->set_names[0], id, &version, err, sizeof(err));
	if (rc != 0) {
		store_error(a, resp, "delete", err);
		goto out;
	}
	api_txn_note(t, NOTIFY_DELETE, e, id, api_keys_json(a, e, old.data), NULL, image(a, e, &old), version);
	server_response_empty(resp, 204);
out:
	return;
}

static void do_delta(struct api *a, struct api_txn *t, const struct schema_entity *e, const char *set, const struct server_request *req,
		     struct server_response *resp)
{
	struct query q;
	char err[256];
	struct estore_record *recs = NULL;
	size_t n = 0;
	cJSON *root = NULL;
	memset(&q, 0, sizeof(q));
	if (query_parse(req->query, strlen(req->query), QUERY_CE, &q, err, sizeof(err)) < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, err);
		goto out;
	}
	char *end;
	long long since = strtoll(q.deltatoken, &end, 10);
	if (end == q.deltatoken || *end || since < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, "The delta token is not valid.");
		goto out;
	}
	if (q.filter || q.orderby || q.top >= 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e,
			      "$filter, $orderby, $expand and $top are not supported with change tracking.");
		goto out;
	}
	for (size_t i = 0; i < q.nselect; i++) {
		if (api_field_query_type((void *)e, q.select[i]) == QUERY_T_UNKNOWN) {
			char msg[300];
			snprintf(msg, sizeof(msg), "Could not find a property named '%.100s' on type '%s'.", q.select[i],
				 e->type_name);
			api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, msg);
			goto out;
		}
	}
	long long next = 0;
	if (estore_changes(a->store, t->tx, e->set_names[0], since, a->max_page, &recs, &n, &next, err, sizeof(err)) < 0) {
		store_error(a, resp, "changes", err);
		goto out;
	}
	root = cJSON_CreateObject();
	if (!root)
		goto out;
	char buf[1024];
	size_t o = (size_t)snprintf(buf, sizeof(buf), "%s%s$metadata#%s", a->base_url, a->prefix, set);
	if (q.nselect) {
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "(");
		for (size_t i = 0; i < q.nselect && o < sizeof(buf); i++)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "", q.select[i]);
		if (o < sizeof(buf))
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, ")");
	}
	if (o < sizeof(buf))
		snprintf(buf + o, sizeof(buf) - o, "/$delta");
	cJSON_AddStringToObject(root, "@odata.context", buf);
	cJSON *value = cJSON_AddArrayToObject(root, "value");
	for (size_t i = 0; i < n; i++) {
		if (recs[i].deleted) {
			cJSON *d = cJSON_CreateObject();
			snprintf(buf, sizeof(buf), "%s%s$metadata#%s/$deletedEntity", a->base_url, a->prefix, set);
			cJSON_AddStringToObject(d, "@odata.context", buf);
			cJSON_AddStringToObject(d, "id", recs[i].id);
			cJSON_AddStringToObject(d, "reason", "deleted");
			cJSON_AddItemToArray(value, d);
		} else {
			cJSON_AddItemToArray(value, api_render(a, e, &recs[i], q.select, q.nselect));
		}
	}
	static const char prefix_sel[] = "$select=";
	char *sel = NULL;
	if (q.nselect) {
		size_t cap = sizeof(prefix_sel) + 1;
		for (size_t i = 0; i < q.nselect; i++)
			cap += strlen(q.select[i]) + 1;
		sel = malloc(cap);
		if (sel) {
			size_t so = (size_t)snprintf(sel, cap, "%s", prefix_sel);
			for (size_t i = 0; i < q.nselect; i++)
				so += (size_t)snprintf(sel + so, cap - so, "%s%s", i ? "," : "", q.select[i]);
		}
	}
	char *link = NULL;
	if (asprintf(&link, "%s%s?%s%s$deltatoken=%lld", a->base_url, req->path, sel ? sel : "", sel ? "&" : "",
		     next) >= 0) {
		cJSON_AddStringToObject(root, (long)n >= a->max_page ? "@odata.nextLink" : "@odata.deltaLink", link);
		free(link);
	}
	free(sel);
	server_response_json(resp, 200, root);
out:
	cJSON_Delete(root);
	estore_records_free(recs, n);
	query_clear(&q);
}

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

static void who_am_i(struct api *a, struct server_response *resp)
{
	cJSON *root = cJSON_CreateObject();
	char ctx[512];
	snprintf(ctx, sizeof(ctx), "%s%s$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", a->base_url, a->prefix);
	cJSON_AddStringToObject(root, "@odata.context", ctx);
	cJSON_AddStringToObject(root, "BusinessUnitId", CE_ZERO_GUID);
	cJSON_AddStringToObject(root, "UserId", CE_ZERO_GUID);
	cJSON_AddStringToObject(root, "OrganizationId", CE_ZERO_GUID);
	server_response_json(resp, 200, root);
	cJSON_Delete(root);
}

void ce_exec(struct api *a, struct api_txn *t, const struct server_request *req, const char *rel,
	     struct server_response *resp)
{
	char err[256];
	struct odata_key key;
	struct estore_record rec;
	cJSON *body = NULL;
	memset(&key, 0, sizeof(key));
	memset(&rec, 0, sizeof(rec));
	size_t setlen = strcspn(rel, "(/");
	char set[128];
	if (setlen == 0 || setlen >= sizeof(set)) {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, NULL, "Resource not found for the segment.");
		resp->status = 404;
		return;
	}
	snprintf(set, sizeof(set), "%.*s", (int)setlen, rel);
	if (strcmp(set, "WhoAmI") == 0 || strcmp(set, "WhoAmI()") == 0) {
		who_am_i(a, resp);
		return;
	}
	const struct schema_entity *e = schema_entity_by_set(a->schema, set);
	if (!e) {
		char msg[200];
		snprintf(msg, sizeof(msg), "Resource not found for the segment '%.100s'.", set);
		server_response_odata_error(resp, 404, "0x80060888", msg);
		return;
	}
	const char *rest = rel + setlen;
	if (*rest == '/') {
		api_std_error(a, resp, SCHEMA_E_BAD_REQUEST, e, "The emulator does not serve property paths.");
		return;
	}
	if (*rest == '\0') {
		if (strcmp(req->method, "GET") == 0) {
			char *dt = server_request_query_param(req, "$deltatoken");
			if (dt) {
				free(dt);
				do_delta(a, t, e, set, req, resp);
				return;
			}
			long long track = -1;
			if (api_prefer(req, "odata.track-changes") &&
			    estore_max_version(a->store, t->tx, e->set_names[0], &track, err, sizeof(err)) < 0) {
				store_error(a, resp, "max version", err);
				return;
			}
			api_collection_get(a, t, e, set, req, NULL, track, resp);
		} else if (strcmp(req->method, "POST") == 0) {
			body = api_parse_body(a, req, resp);
			if (body)
				(void)do_create(a, t, e, set, req, body, NULL, CREATE_POST, resp);
		} else {
			api_std_error(a, resp, SCHEMA_E_METHOD_NOT_ALLOWED, e, NULL);
		}
		goto out;
	}
	if (odata_key_parse(rest, strlen(rest), NULL, &key, err, sizeof(err)) < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, err);
		goto out;
	}
	char id[37];
	const struct schema_key *alt;
	/* PATCH by GUID without conditions: most such upserts create (initial loads, batches), so try
	 * the create first and read only when the row turns out to exist. */
	const char *guid = key.nparts == 1 && (!key.parts[0].name || (e->id_field && strcmp(key.parts[0].name,
												   e->id_field) == 0))
				   ? key.parts[0].value
				   : NULL;
	if (strcmp(req->method, "PATCH") == 0 && guid && key.parts[0].kind == ODATA_KIND_GUID &&
	    !server_request_header(req, "If-Match") && !server_request_header(req, "If-None-Match")) {
		body = api_parse_body(a, req, resp);
		if (!body)
			goto out;
		snprintf(id, sizeof(id), "%s", guid);
		lower_guid(id);
		if (!api_notify_wanted(a) && !api_prefer(req, "return=representation") &&
		    fast_update(a, t, e, set, body, id, resp) == 0)
			goto out;
		if (do_create(a, t, e, set, req, body, id, CREATE_OPTIMISTIC, resp) == 0)
			goto out;
	}
	enum resolved r = resolve_key(a, t, e, &key, id, &alt, &rec, resp);
	if (r == RES_ERROR)
		goto out;
	char detail[512];
	if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "DELETE") == 0) {
		if (r == RES_MISSING) {
			key_detail(e, &key, id, detail, sizeof(detail));
			api_std_error(a, resp, SCHEMA_E_NOT_FOUND, e, *id ? id : detail);
			goto out;
		}
		if (strcmp(req->method, "DELETE") == 0) {
			do_delete(a, t, e, req, &rec, resp);
			goto out;
		}
		char etag[96];
		api_etag(a, rec.version, etag, sizeof(etag));
		const char *inm = server_request_header(req, "If-None-Match");
		if (inm && strcmp(inm, etag) == 0) {
			server_response_empty(resp, 304);
			server_response_header(resp, "ETag", etag);
		} else {
			respond_record(a, e, set, req, &rec, 200, resp);
		}
		goto out;
	}
	if (strcmp(req->method, "PATCH") != 0) {
		api_std_error(a, resp, SCHEMA_E_METHOD_NOT_ALLOWED, e, NULL);
		goto out;
	}
	if (!body)
		body = api_parse_body(a, req, resp);
	if (!body)
		goto out;
	if (r == RES_FOUND) {
		do_update(a, t, e, set, req, body, &rec, resp);
		goto out;
	}
	if (server_request_header(req, "If-Match")) {
		key_detail(e, &key, id, detail, sizeof(detail));
		api_std_error(a, resp, SCHEMA_E_NOT_FOUND, e, *id ? id : detail);
		goto out;
	}
	if (alt && add_url_key(a, e, alt, &key, body) < 0) {
		api_std_error(a, resp, SCHEMA_E_BAD_KEY, e, NULL);
		goto out;
	}
	(void)do_create(a, t, e, set, req, body, alt ? NULL : id, CREATE_UPSERT, resp);
out:
	estore_record_clear(&rec);
	cJSON_Delete(body);
	odata_key_clear(&key);
}

void ce_handle(void *ctx, const struct server_request *req, struct server_response *resp)
{
	struct api *a = ctx;
	const char *rel = req->path + strlen(a->prefix);
	if (strncmp(rel, "$metadata", 9) == 0) {
		server_response_odata_error(resp, 501, "0x8006088a", "The emulator does not serve $metadata.");
		return;
	}
	if (*rel == '\0') {
		if (strcmp(req->method, "GET") != 0) {
			api_std_error(a, resp, SCHEMA_E_METHOD_NOT_ALLOWED, NULL, NULL);
			return;
		}
		service_document(a, resp);
		return;
	}
	if (strcmp(rel, "$batch") == 0) {
		api_batch(a, req, ce_exec, NULL, resp);
		return;
	}
	struct api_txn t;
	memset(&t, 0, sizeof(t));
	if (api_txn_begin(a, &t, resp) < 0)
		return;
	ce_exec(a, &t, req, rel, resp);
	if (resp->status >= 400 || resp->status == 0)
		api_txn_rollback(&t);
	else if (api_txn_commit(a, &t, resp) < 0)
		log_warn("commit failed; answered 500");
}
