/* CE lookups: GUID -> alternate-key value for the map engine, value -> GUID for CE target keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "apply.h"

struct cache_entry {
	char *q; /* "g|<set>|<guid>|<field>" or "k|<set>|<field>|<value>" */
	char *v;
};

struct resolver {
	struct target *ce;
	struct cache_entry cache[RESOLVE_CACHE_MAX];
	size_t next; /* round-robin replacement */
};

int resolver_new(struct target *ce, struct resolver **out, char *errbuf, size_t errlen)
{
	*out = calloc(1, sizeof(**out));
	if (!*out) {
		snprintf(errbuf, errlen, "resolver: out of memory");
		return -1;
	}
	(*out)->ce = ce;
	return 0;
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < RESOLVE_CACHE_MAX; i++) {
		free(r->cache[i].q);
		free(r->cache[i].v);
	}
	free(r);
}

static const char *cache_get(struct resolver *r, const char *q)
{
	for (size_t i = 0; i < RESOLVE_CACHE_MAX && r->cache[i].q; i++)
		if (strcmp(r->cache[i].q, q) == 0)
			return r->cache[i].v;
	return NULL;
}

static void cache_put(struct resolver *r, const char *q, const char *v)
{
	char *qc = strdup(q), *vc = strdup(v);
	if (!qc || !vc) {
		free(qc);
		free(vc);
		return; /* a cache miss later costs one read, nothing else */
	}
	struct cache_entry *e = &r->cache[r->next];
	free(e->q);
	free(e->v);
	e->q = qc;
	e->v = vc;
	r->next = (r->next + 1) % RESOLVE_CACHE_MAX;
}

/* Reads one CE row by key; MAP_OK with *row (caller deletes), MAP_NOT_FOUND or MAP_ERR_RESOLVE. */
static int read_row(struct resolver *r, const char *set, const struct odata_key_part *key, size_t nkey, cJSON **row,
		    char *err, size_t errlen)
{
	int found = 0, retryable = 0;
	char *body = NULL, *etag = NULL;
	*row = NULL;
	if (target_read(r->ce, set, key, nkey, &found, &body, &etag, &retryable, err, errlen) != 0)
		return MAP_ERR_RESOLVE;
	free(etag);
	if (!found)
		return MAP_NOT_FOUND;
	*row = cJSON_Parse(body);
	free(body);
	if (!cJSON_IsObject(*row)) {
		cJSON_Delete(*row);
		*row = NULL;
		snprintf(err, errlen, "%s: the row read is not a JSON object", set);
		return MAP_ERR_RESOLVE;
	}
	return MAP_OK;
}

int resolver_map_cb(void *ctx, enum event_side side, const char *entity_set, const char *guid, const char *key_field,
		    char *out, size_t outlen, char *err, size_t errlen)
{
	struct resolver *r = ctx;
	if (side != EVENT_SIDE_CE) {
		snprintf(err, errlen, "only CE rows are resolved");
		return MAP_ERR_RESOLVE;
	}
	char q[1024];
	snprintf(q, sizeof(q), "g|%s|%s|%s", entity_set, guid, key_field);
	const char *hit = cache_get(r, q);
	if (hit) {
		snprintf(out, outlen, "%s", hit);
		return MAP_OK;
	}
	struct odata_key_part k = { NULL, guid, ODATA_KIND_GUID, NULL };
	cJSON *row = NULL;
	int rc = read_row(r, entity_set, &k, 1, &row, err, errlen);
	if (rc != MAP_OK)
		return rc;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key_field);
	if (cJSON_IsString(v) && strlen(v->valuestring) < outlen) {
		snprintf(out, outlen, "%s", v->valuestring);
	} else if (cJSON_IsNumber(v)) {
		snprintf(out, outlen, "%.0f", v->valuedouble);
	} else {
		snprintf(err, errlen, "%s(%s) has no usable %s", entity_set, guid, key_field);
		cJSON_Delete(row);
		return MAP_NOT_FOUND;
	}
	cJSON_Delete(row);
	cache_put(r, q, out);
	return MAP_OK;
}

/* The primary key column of a CE row: Dataverse names it <logical name>id, and entity set names
 * start with the logical name or its -y/-ies plural (account/accounts, cdm_company/cdm_companies). Picks the member
 * ending in "id" holding a GUID-shaped string whose stem the set name starts with. */
static const char *row_id(const cJSON *row, const char *set)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, row)
	{
		size_t n = strlen(m->string);
		if (n < 3 || m->string[0] == '_' || strcmp(m->string + n - 2, "id") != 0 || !cJSON_IsString(m) ||
		    strlen(m->valuestring) != 36)
			continue;
		size_t stem = n - 2;
		if (strncmp(set, m->string, stem) == 0)
			return m->valuestring;
		/* company -> companies */
		if (m->string[stem - 1] == 'y' && strncmp(set, m->string, stem - 1) == 0 &&
		    strncmp(set + stem - 1, "ies", 3) == 0)
			return m->valuestring;
	}
	return NULL;
}

/* The GUID of the row of entity_set with key parts k[0..n), cached under q. */
static int guid_by_key(struct resolver *r, const char *entity_set, const struct odata_key_part *k, size_t n,
		       const char *q, char out[37], char *err, size_t errlen)
{
	const char *hit = cache_get(r, q);
	if (hit) {
		snprintf(out, 37, "%s", hit);
		return MAP_OK;
	}
	cJSON *row = NULL;
	int rc = read_row(r, entity_set, k, n, &row, err, errlen);
	if (rc != MAP_OK)
		return rc;
	const char *id = row_id(row, entity_set);
	if (!id) {
		snprintf(err, errlen, "%s(%s='%s'): no primary key column in the row", entity_set, k[0].name, k[0].value);
		cJSON_Delete(row);
		return MAP_ERR_RESOLVE;
	}
	snprintf(out, 37, "%s", id);
	cJSON_Delete(row);
	cache_put(r, q, out);
	return MAP_OK;
}

int resolver_guid(struct resolver *r, const char *entity_set, const char *key_field, const char *value,
		  char out[37], char *err, size_t errlen)
{
	char q[2048];
	snprintf(q, sizeof(q), "k|%s|%s|%s", entity_set, key_field, value);
	struct odata_key_part k = { key_field, value, ODATA_KIND_STRING, NULL };
	return guid_by_key(r, entity_set, &k, 1, q, out, err, errlen);
}

int resolver_guid_cb(void *ctx, const char *entity_set, const char *key_field, const char *value, char out[37],
		     char *err, size_t errlen)
{
	return resolver_guid(ctx, entity_set, key_field, value, out, err, errlen);
}

/* The cache key of a company-keyed look-up. */
static void company_query(char *q, size_t qlen, const char *entity_set, const char *key_field, const char *value,
			  const char *company_field, const char *company_guid)
{
	snprintf(q, qlen, "c|%s|%s|%s|%s|%s", entity_set, key_field, value, company_field, company_guid);
}

void resolver_assume(struct resolver *r, const char *entity_set, const char *key_field, const char *value,
		     const char *company_field, const char *company_guid, const char *guid)
{
	char q[2048];
	if (company_field)
		company_query(q, sizeof(q), entity_set, key_field, value, company_field, company_guid);
	else
		snprintf(q, sizeof(q), "k|%s|%s|%s", entity_set, key_field, value);
	cache_put(r, q, guid);
}

int resolver_guid_company(struct resolver *r, const char *entity_set, const char *key_field, const char *value,
			  const char *company_field, const char *company_guid, char out[37], char *err, size_t errlen)
{
	char q[2048];
	company_query(q, sizeof(q), entity_set, key_field, value, company_field, company_guid);
	struct odata_key_part k[2] = { { key_field, value, ODATA_KIND_STRING, NULL },
				       { company_field, company_guid, ODATA_KIND_GUID, NULL } };
	return guid_by_key(r, entity_set, k, 2, q, out, err, errlen);
}
