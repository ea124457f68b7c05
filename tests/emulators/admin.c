#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fo.h"
#include "log.h"
#include "notify.h"
#include "odata.h"
#include "seed.h"

#define ADMIN_PREFIX "/_emulator/"

static void admin_error(struct server_response *resp, int status, const char *msg)
{
	server_response_odata_error(resp, status, "", msg);
}

static cJSON *parse_json_body(const struct server_request *req, struct server_response *resp)
{
	if (!req->body || req->body_len == 0)
		return cJSON_CreateObject();
	cJSON *j = cJSON_ParseWithLength(req->body, req->body_len);
	if (!j || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		admin_error(resp, 400, "The body must be a JSON object.");
		return NULL;
	}
	return j;
}

static void stats(struct admin_deps *d, struct server_response *resp)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *w = estore_stats(d->api->store);
	if (!root || !w) {
		cJSON_Delete(root);
		cJSON_Delete(w);
		admin_error(resp, 500, "Out of memory.");
		return;
	}
	/* Report each entity under its canonical set name. */
	cJSON_AddItemToObject(root, "writes", w);
	cJSON_AddNumberToObject(root, "requests", (double)__atomic_load_n(d->requests, __ATOMIC_RELAXED));
	cJSON_AddItemToObject(root, "limits", throttle_to_json(d->limits));
	if (d->api->notify)
		cJSON_AddItemToObject(root, "notify", notify_stats(d->api->notify));
	server_response_json(resp, 200, root);
	cJSON_Delete(root);
}

static void record(struct admin_deps *d, const struct server_request *req, const char *set,
		   struct server_response *resp)
{
	struct api *a = d->api;
	char err[256], id[37] = "";
	char *idp = server_request_query_param(req, "id");
	char *keyp = server_request_query_param(req, "key");
	struct odata_key key;
	struct estore_tx *tx = NULL;
	struct estore_record rec;
	memset(&key, 0, sizeof(key));
	memset(&rec, 0, sizeof(rec));
	const struct schema_entity *e = schema_entity_by_set(a->schema, set);
	if (!e) {
		admin_error(resp, 404, "Unknown entity set.");
		goto out;
	}
	if (idp) {
		snprintf(id, sizeof(id), "%s", idp);
	} else if (keyp) {
		if (odata_key_parse(keyp, strlen(keyp), NULL, &key, err, sizeof(err)) < 0) {
			admin_error(resp, 400, err);
			goto out;
		}
		const char *names[ODATA_KEY_MAX_PARTS];
		for (size_t i = 0; i < key.nparts; i++)
			names[i] = key.parts[i].name ? key.parts[i].name : "";
		const struct schema_key *k = schema_key_match(e, names, key.nparts);
		if (!k) {
			admin_error(resp, 400, "The key does not match a key of the entity.");
			goto out;
		}
		if (k == &e->primary_key && e->id_field) {
			snprintf(id, sizeof(id), "%s", key.parts[0].value);
		} else {
			char *text = api_key_text_from_url(e, k, key.parts, key.nparts);
			const char *kname = k == &e->primary_key ? "primary" : k->name;
			int rc = text ? estore_begin(a->store, &tx, err, sizeof(err)) : -1;
			if (rc == 0)
				rc = estore_find(tx, e->set_names[0], kname, text, id, err, sizeof(err));
			free(text);
			/* Give the connection back before estore_peek takes one. */
			estore_rollback(tx);
			tx = NULL;
			if (rc != 0) {
				admin_error(resp, rc == ESTORE_NOTFOUND ? 404 : 500, "No record with that key.");
				goto out;
			}
		}
	} else {
		admin_error(resp, 400, "Give ?id=<guid> or ?key=<key predicate>.");
		goto out;
	}
	int rc = estore_peek(a->store, e->set_names[0], id, &rec, err, sizeof(err));
	if (rc != 0) {
		admin_error(resp, rc == ESTORE_NOTFOUND ? 404 : 500, rc == ESTORE_NOTFOUND ? "No such record." : err);
		goto out;
	}
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "id", rec.id);
	cJSON_AddNumberToObject(root, "version", (double)rec.version);
	cJSON_AddNumberToObject(root, "writes", (double)rec.writes);
	cJSON_AddBoolToObject(root, "deleted", rec.deleted);
	server_response_json(resp, 200, root);
	cJSON_Delete(root);
out:
	estore_rollback(tx);
	estore_record_clear(&rec);
	odata_key_clear(&key);
	free(idp);
	free(keyp);
}

struct seed_ctx {
	struct admin_deps *d;
	long created;
	long failed;
	char first_error[512];
};

/* Whether a record with the FO primary key of `rec` exists (a failed look-up counts as no: the
 * POST that follows then reports the problem). */
static int fo_key_exists(struct api *a, const struct schema_entity *e, const cJSON *rec)
{
	char err[256], id[37];
	struct estore_tx *tx = NULL;
	char *text = api_key_text(e, &e->primary_key, rec);
	int found = 0;
	if (text && estore_begin(a->store, &tx, err, sizeof(err)) == 0)
		found = estore_find(tx, e->set_names[0], "primary", text, id, err, sizeof(err)) == 0;
	estore_rollback(tx);
	free(text);
	return found;
}

static int seed_emit(void *ctx, const char *entity_set, cJSON *rec)
{
	struct seed_ctx *sc = ctx;
	struct api *a = sc->d->api;
	const struct schema_entity *e = schema_entity_by_set(a->schema, entity_set);
	if (!e) { /* the other side's record */
		cJSON_Delete(rec);
		return 0;
	}
	char *body = cJSON_PrintUnformatted(rec);
	char path[512];
	const char *method = "POST";
	const cJSON *id = e->id_field ? cJSON_GetObjectItemCaseSensitive(rec, e->id_field) : NULL;
	char *pred = NULL;
	if (cJSON_IsString(id)) {
		/* CE records carry their GUID: upsert, so seeding twice is harmless. */
		snprintf(path, sizeof(path), "%s%s(%s)", a->prefix, entity_set, id->valuestring);
		method = "PATCH";
	} else if (a->flavour == SCHEMA_FO && fo_key_exists(a, e, rec) && (pred = fo_key_predicate(a, e, rec)) &&
		   strlen(pred) < sizeof(path) - strlen(a->prefix) - strlen(entity_set)) {
		/* FO: POST on an existing key is an error, so an existing record is updated instead. */
		snprintf(path, sizeof(path), "%s%s%s", a->prefix, entity_set, pred);
		method = "PATCH";
	} else {
		snprintf(path, sizeof(path), "%s%s", a->prefix, entity_set);
	}
	free(pred);
	cJSON_Delete(rec);
	if (!body)
		return -1;
	struct server_header h = {(char *)"Content-Type", (char *)"application/json"};
	struct server_request req = {
		.method = method,
		.path = path,
		.query = "",
		.headers = &h,
		.nheaders = 1,
		.body = body,
		.body_len = strlen(body),
	};
	struct server_response resp;
	memset(&resp, 0, sizeof(resp));
	struct api_txn t;
	memset(&t, 0, sizeof(t));
	if (api_txn_begin(a, &t, &resp) == 0) {
		sc->d->exec(a, &t, &req, path + strlen(a->prefix), &resp);
		if (resp.status >= 400)
			api_txn_rollback(&t);
		else if (api_txn_commit(a, &t, &resp) < 0)
			log_warn("seed: commit failed");
	}
	if (resp.status >= 200 && resp.status < 300) {
		sc->created++;
	} else {
		sc->failed++;
		if (!sc->first_error[0])
			snprintf(sc->first_error, sizeof(sc->first_error), "%s: %d %.*s", entity_set, resp.status,
				 (int)(resp.body_len > 400 ? 400 : resp.body_len), resp.body ? resp.body : "");
	}
	server_response_clear(&resp);
	free(body);
	return 0;
}

static void seed(struct admin_deps *d, const struct server_request *req, struct server_response *resp)
{
	cJSON *j = parse_json_body(req, resp);
	if (!j)
		return;
	struct seed_options opt;
	seed_options_init(&opt);
	const char *companies[SEED_MAX_COMPANIES];
	char err[512];
	const cJSON *v;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "n")) && cJSON_IsNumber(v) && v->valuedouble >= 0)
		opt.per_table = (size_t)v->valuedouble;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "seed")) && cJSON_IsNumber(v) && v->valuedouble >= 0)
		opt.seed = (uint64_t)v->valuedouble;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "side")) && cJSON_IsString(v) &&
	    seed_parse_side(v->valuestring, &opt.side) < 0) {
		admin_error(resp, 400, "side must be ce, fo or both.");
		goto out;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "companies")) && cJSON_IsArray(v)) {
		size_t n = 0;
		const cJSON *c;
		cJSON_ArrayForEach(c, v)
		{
			if (!cJSON_IsString(c) || n >= SEED_MAX_COMPANIES) {
				admin_error(resp, 400, "companies must be at most 16 strings.");
				goto out;
			}
			companies[n++] = c->valuestring;
		}
		opt.companies = companies;
		opt.n_companies = n;
	}
	struct seed_ctx sc = {.d = d};
	if (seed_generate(&opt, seed_emit, &sc, err, sizeof(err)) != 0) {
		admin_error(resp, 400, err);
		goto out;
	}
	cJSON *root = cJSON_CreateObject();
	cJSON_AddNumberToObject(root, "created", (double)sc.created);
	cJSON_AddNumberToObject(root, "failed", (double)sc.failed);
	if (sc.first_error[0])
		cJSON_AddStringToObject(root, "first_error", sc.first_error);
	server_response_json(resp, 200, root);
	cJSON_Delete(root);
out:
	cJSON_Delete(j);
}

static void webhook_add(struct admin_deps *d, const struct server_request *req, struct server_response *resp)
{
	if (!d->api->notify) {
		admin_error(resp, 400, "Notifications are not enabled.");
		return;
	}
	cJSON *j = parse_json_body(req, resp);
	if (!j)
		return;
	struct notify_registration reg;
	memset(&reg, 0, sizeof(reg));
	const cJSON *v;
	char err[256], id[37];
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "entity")) && cJSON_IsString(v))
		reg.entity = v->valuestring;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "url")) && cJSON_IsString(v))
		reg.url = v->valuestring;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "messages")) && cJSON_IsArray(v)) {
		const cJSON *m;
		cJSON_ArrayForEach(m, v)
		{
			if (!cJSON_IsString(m))
				continue;
			if (strcmp(m->valuestring, "Create") == 0)
				reg.messages |= NOTIFY_CREATE;
			else if (strcmp(m->valuestring, "Update") == 0)
				reg.messages |= NOTIFY_UPDATE;
			else if (strcmp(m->valuestring, "Delete") == 0)
				reg.messages |= NOTIFY_DELETE;
			else {
				admin_error(resp, 400, "messages are Create, Update or Delete.");
				goto out;
			}
		}
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "auth")) && cJSON_IsString(v)) {
		if (strcmp(v->valuestring, "code") == 0)
			reg.auth = NOTIFY_AUTH_CODE;
		else if (strcmp(v->valuestring, "header") == 0)
			reg.auth = NOTIFY_AUTH_HEADER;
		else if (strcmp(v->valuestring, "query") == 0)
			reg.auth = NOTIFY_AUTH_QUERY;
		else if (strcmp(v->valuestring, "none") != 0) {
			admin_error(resp, 400, "auth is none, code, header or query.");
			goto out;
		}
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "auth_name")) && cJSON_IsString(v))
		reg.auth_name = v->valuestring;
	if ((v = cJSON_GetObjectItemCaseSensitive(j, "auth_value")) && cJSON_IsString(v))
		reg.auth_value = v->valuestring;
	if (!reg.url) {
		admin_error(resp, 400, "url is required.");
		goto out;
	}
	if (notify_register(d->api->notify, &reg, id, err, sizeof(err)) < 0) {
		admin_error(resp, 400, err);
		goto out;
	}
	__atomic_add_fetch(&d->api->webhooks, 1, __ATOMIC_RELAXED);
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "id", id);
	server_response_json(resp, 201, root);
	cJSON_Delete(root);
out:
	cJSON_Delete(j);
}

void admin_handle(void *ctx, const struct server_request *req, struct server_response *resp)
{
	struct admin_deps *d = ctx;
	const char *what = req->path + strlen(ADMIN_PREFIX);
	int get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
	char err[256];
	if (strcmp(what, "stats") == 0 && get) {
		stats(d, resp);
	} else if (strncmp(what, "records/", 8) == 0 && get) {
		record(d, req, what + 8, resp);
	} else if ((strcmp(what, "faults") == 0 || strcmp(what, "limits") == 0) && post) {
		cJSON *j = parse_json_body(req, resp);
		if (!j)
			return;
		int is_faults = strcmp(what, "faults") == 0;
		if (throttle_configure(d->limits, is_faults ? NULL : j, is_faults ? j : NULL, err, sizeof(err)) < 0)
			admin_error(resp, 400, err);
		else {
			cJSON *cur = throttle_to_json(d->limits);
			server_response_json(resp, 200, cur);
			cJSON_Delete(cur);
		}
		cJSON_Delete(j);
	} else if (strcmp(what, "auth") == 0 && post) {
		cJSON *j = parse_json_body(req, resp);
		if (!j)
			return;
		const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(j, "token_ttl_s");
		if (ttl && (!cJSON_IsNumber(ttl) || ttl->valuedouble < 1 || ttl->valuedouble > 86400)) {
			admin_error(resp, 400, "token_ttl_s must be in [1, 86400].");
		} else {
			if (ttl)
				auth_set_ttl(d->auth, (long)ttl->valuedouble);
			if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "revoke_all")))
				auth_revoke_all(d->auth);
			server_response_empty(resp, 204);
		}
		cJSON_Delete(j);
	} else if (strcmp(what, "reset") == 0 && post) {
		if (estore_reset(d->api->store, err, sizeof(err)) < 0) {
			admin_error(resp, 500, err);
			return;
		}
		throttle_reset(d->limits);
		if (d->api->notify)
			notify_reset(d->api->notify);
		__atomic_store_n(&d->api->webhooks, 0, __ATOMIC_RELAXED);
		__atomic_store_n(d->requests, 0, __ATOMIC_RELAXED);
		server_response_empty(resp, 204);
	} else if (strcmp(what, "seed") == 0 && post) {
		seed(d, req, resp);
	} else if (strcmp(what, "webhooks") == 0 && get) {
		if (!d->api->notify) {
			admin_error(resp, 400, "Notifications are not enabled.");
			return;
		}
		cJSON *s = notify_stats(d->api->notify);
		server_response_json(resp, 200, s);
		cJSON_Delete(s);
	} else if (strcmp(what, "webhooks") == 0 && post) {
		webhook_add(d, req, resp);
	} else if (strncmp(what, "webhooks/", 9) == 0 && strcmp(req->method, "DELETE") == 0) {
		if (!d->api->notify || notify_unregister(d->api->notify, what + 9) < 0) {
			admin_error(resp, 404, "No such registration.");
		} else {
			__atomic_sub_fetch(&d->api->webhooks, 1, __ATOMIC_RELAXED);
			server_response_empty(resp, 204);
		}
	} else {
		admin_error(resp, 404, "Unknown admin endpoint or method.");
	}
}
