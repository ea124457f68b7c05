#include "capture_records.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "store.h"

struct capture_records {
	int n;
	PGconn **conns;
	int *busy;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

int capture_records_new(const char *dsn, int nconn, struct capture_records **out, char *errbuf, size_t errlen)
{
	int rc = -1;
	struct capture_records *r = NULL;
	*out = NULL;
	if (!dsn) {
		snprintf(errbuf, errlen, "DW_PG_DSN is not set");
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		goto oom;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->conns = calloc((size_t)nconn, sizeof(*r->conns));
	r->busy = calloc((size_t)nconn, sizeof(*r->busy));
	if (!r->conns || !r->busy)
		goto oom;
	r->n = nconn;
	struct store_opts so = { .application_name = "dw-capture", .statement_timeout_ms = 15000 };
	for (int i = 0; i < nconn; i++) {
		if (store_connect(dsn, &so, &r->conns[i], errbuf, errlen) != 0)
			goto out;
	}
	*out = r;
	r = NULL;
	rc = 0;
	goto out;
oom:
	snprintf(errbuf, errlen, "out of memory");
out:
	capture_records_free(r);
	return rc;
}

void capture_records_free(struct capture_records *r)
{
	if (!r)
		return;
	for (int i = 0; r->conns && i < r->n; i++)
		store_close(r->conns[i]);
	free(r->conns);
	free(r->busy);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static int acquire(struct capture_records *r)
{
	pthread_mutex_lock(&r->mu);
	for (;;) {
		for (int i = 0; i < r->n; i++) {
			if (!r->busy[i]) {
				r->busy[i] = 1;
				pthread_mutex_unlock(&r->mu);
				return i;
			}
		}
		pthread_cond_wait(&r->cv, &r->mu);
	}
}

static void release(struct capture_records *r, int i)
{
	pthread_mutex_lock(&r->mu);
	r->busy[i] = 0;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* One statement on a pooled connection; a broken connection is reset and the statement retried
 * once (every statement here is idempotent or a single atomic upsert). */
static int exec(struct capture_records *r, const char *sql, int np, const char *const *params, PGresult **res, char *errbuf,
		size_t errlen)
{
	int i = acquire(r);
	int rc = store_exec(r->conns[i], sql, np, params, res, errbuf, errlen);
	if (rc != 0 && PQstatus(r->conns[i]) != CONNECTION_OK) {
		PQreset(r->conns[i]);
		if (PQstatus(r->conns[i]) == CONNECTION_OK)
			rc = store_exec(r->conns[i], sql, np, params, res, errbuf, errlen);
	}
	release(r, i);
	return rc == 0 ? 0 : -1;
}

static const char *const SQL_CHECKPOINT_GET =
	"SELECT position FROM dw_capture_checkpoint WHERE side = $1 AND environment = $2 AND entity = $3 "
	"AND kind = $4";
static const char *const SQL_CHECKPOINT_SET =
	"INSERT INTO dw_capture_checkpoint (side, environment, entity, kind, position) "
	"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (side, environment, entity, kind) "
	"DO UPDATE SET position = EXCLUDED.position, updated_at = now()";
static const char *const SQL_CHECKPOINT_DELETE =
	"DELETE FROM dw_capture_checkpoint WHERE side = $1 AND environment = $2 AND entity = $3 AND kind = $4";

/* The first column of the first row of res as a new string into *pos (NULL without rows). */
static int position_from(PGresult *res, char **pos, char *errbuf, size_t errlen)
{
	*pos = NULL;
	if (PQntuples(res) == 0)
		return 0;
	*pos = strdup(PQgetvalue(res, 0, 0));
	if (*pos)
		return 0;
	snprintf(errbuf, errlen, "out of memory");
	return -1;
}

int capture_records_checkpoint_load(PGconn *c, const char *side, const char *env, const char *entity,
				    const char *kind, char **pos, char *errbuf, size_t errlen)
{
	PGresult *res = NULL;
	const char *p[] = { side, env, entity, kind };
	*pos = NULL;
	if (store_exec(c, SQL_CHECKPOINT_GET, 4, p, &res, errbuf, errlen) != 0)
		return -1;
	int rc = position_from(res, pos, errbuf, errlen);
	PQclear(res);
	return rc;
}

int capture_records_checkpoint_save(PGconn *c, const char *side, const char *env, const char *entity,
				    const char *kind, const char *pos, char *errbuf, size_t errlen)
{
	const char *p[] = { side, env, entity, kind, pos };
	return store_exec(c, SQL_CHECKPOINT_SET, 5, p, NULL, errbuf, errlen) == 0 ? 0 : -1;
}

int capture_records_checkpoint_drop(PGconn *c, const char *side, const char *env, const char *entity,
				    const char *kind, char *errbuf, size_t errlen)
{
	const char *p[] = { side, env, entity, kind };
	return store_exec(c, SQL_CHECKPOINT_DELETE, 4, p, NULL, errbuf, errlen) == 0 ? 0 : -1;
}

int capture_records_checkpoint_get(struct capture_records *r, const char *side, const char *env, const char *entity,
			   const char *kind, char **pos, char *errbuf, size_t errlen)
{
	PGresult *res = NULL;
	const char *p[] = { side, env, entity, kind };
	*pos = NULL;
	if (exec(r, SQL_CHECKPOINT_GET, 4, p, &res, errbuf, errlen) != 0)
		return -1;
	int rc = position_from(res, pos, errbuf, errlen);
	PQclear(res);
	return rc;
}

int capture_records_checkpoint_set(struct capture_records *r, const char *side, const char *env, const char *entity,
			   const char *kind, const char *pos, char *errbuf, size_t errlen)
{
	const char *p[] = { side, env, entity, kind, pos };
	return exec(r, SQL_CHECKPOINT_SET, 5, p, NULL, errbuf, errlen);
}

static char *json_string_array(const char *const *v, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; a && i < n; i++) {
		cJSON *s = cJSON_CreateString(v[i]);
		if (!s) {
			cJSON_Delete(a);
			return NULL;
		}
		cJSON_AddItemToArray(a, s);
	}
	char *text = a ? cJSON_PrintUnformatted(a) : NULL;
	cJSON_Delete(a);
	return text;
}

int capture_records_state(struct capture_records *r, const char *side, const char *env, const char *entity, const char *const *ids,
		  size_t n, struct capture_records_state *out, char *errbuf, size_t errlen)
{
	PGresult *res = NULL;
	memset(out, 0, n * sizeof(*out));
	if (n == 0)
		return 0;
	char *arr = json_string_array(ids, n);
	if (!arr) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	const char *p[] = { side, env, entity, arr };
	int rc = exec(r,
		      "SELECT x.i, r.version, COALESCE(r.deleted_version, 0) "
		      "FROM jsonb_array_elements_text($4::jsonb) WITH ORDINALITY AS x(id, i) "
		      "JOIN dw_capture_record r ON r.side = $1 AND r.environment = $2 AND r.entity = $3 "
		      "AND r.record_id = x.id",
		      4, p, &res, errbuf, errlen);
	free(arr);
	if (rc != 0)
		return -1;
	for (int row = 0; row < PQntuples(res); row++) {
		long long i = strtoll(PQgetvalue(res, row, 0), NULL, 10);
		if (i < 1 || (size_t)i > n)
			continue;
		out[i - 1].known = 1;
		out[i - 1].version = strtoll(PQgetvalue(res, row, 1), NULL, 10);
		out[i - 1].deleted = strtoll(PQgetvalue(res, row, 2), NULL, 10);
	}
	PQclear(res);
	return 0;
}

/* $4: [{id, key, version, alive?}]; see capture_records_confirm. */
static const char *const SQL_CONFIRM =
	"WITH x AS (SELECT DISTINCT ON (id) id, key, version, alive "
	"  FROM jsonb_to_recordset($4::jsonb) AS t(id text, key jsonb, version bigint, alive boolean) "
	"  ORDER BY id, version DESC) "
	"INSERT INTO dw_capture_record AS r (side, environment, entity, record_id, record_key, version) "
	"SELECT $1, $2, $3, x.id, x.key, x.version FROM x "
	"ON CONFLICT (side, environment, entity, record_id) DO UPDATE SET "
	"record_key = CASE WHEN EXCLUDED.version >= r.version THEN EXCLUDED.record_key ELSE r.record_key END, "
	"version = GREATEST(r.version, EXCLUDED.version), "
	"deleted_version = CASE WHEN r.deleted_version IS NOT NULL AND (EXCLUDED.version > r.deleted_version "
	"  OR COALESCE((SELECT x.alive FROM x WHERE x.id = EXCLUDED.record_id), false)) "
	"  THEN NULL ELSE r.deleted_version END, "
	"updated_at = now()";

/* $3: [{i, id, key, hash, modified?}]; see capture_records_fo_versions_json. */
static const char *const SQL_FO_VERSIONS =
	"WITH x0 AS (SELECT * FROM jsonb_to_recordset($3::jsonb) "
	"  AS t(i int, id text, key jsonb, hash text, modified text)), "
	"x AS (SELECT DISTINCT ON (id) id, key, hash, modified FROM x0 ORDER BY id, i DESC), "
	"up AS (INSERT INTO dw_capture_record AS r (side, environment, entity, record_id, record_key, version, "
	"  content_hash, source_modified) SELECT 'fo', $1, $2, x.id, x.key, 1, x.hash, x.modified FROM x "
	"  ON CONFLICT (side, environment, entity, record_id) DO UPDATE SET "
	"  version = CASE WHEN r.content_hash = EXCLUDED.content_hash AND r.deleted_version IS NULL "
	"    THEN r.version ELSE GREATEST(r.version, COALESCE(r.deleted_version, 0)) + 1 END, "
	"  content_hash = EXCLUDED.content_hash, record_key = EXCLUDED.record_key, deleted_version = NULL, "
	"  source_modified = COALESCE(EXCLUDED.source_modified, r.source_modified), updated_at = now() "
	"  WHERE r.source_modified IS NULL OR EXCLUDED.source_modified IS NULL OR "
	"    NOT (EXCLUDED.source_modified < r.source_modified OR "
	"         (r.deleted_version IS NOT NULL AND EXCLUDED.source_modified <= r.source_modified)) "
	"  RETURNING record_id, version) "
	"SELECT x0.i, up.version FROM x0 JOIN up ON up.record_id = x0.id";

int capture_records_confirm_json(PGconn *c, const char *side, const char *env, const char *entity,
				 const char *rows_json, char *errbuf, size_t errlen)
{
	const char *p[] = { side, env, entity, rows_json };
	return store_exec(c, SQL_CONFIRM, 4, p, NULL, errbuf, errlen) == 0 ? 0 : -1;
}

int capture_records_fo_versions_json(PGconn *c, const char *env, const char *entity, const char *rows_json,
				     PGresult **res, char *errbuf, size_t errlen)
{
	const char *p[] = { env, entity, rows_json };
	return store_exec(c, SQL_FO_VERSIONS, 3, p, res, errbuf, errlen) == 0 ? 0 : -1;
}

int capture_records_confirm(struct capture_records *r, const char *side, const char *env, const char *entity, size_t n,
		    const char *const *ids, const char *const *keys_json, const long long *versions, const int *alive,
		    char *errbuf, size_t errlen)
{
	if (n == 0)
		return 0;
	cJSON *a = cJSON_CreateArray();
	int rc = -1;
	char *text = NULL;
	for (size_t i = 0; a && i < n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON *key = cJSON_Parse(keys_json[i]);
		if (!o || !key) {
			cJSON_Delete(o);
			cJSON_Delete(key);
			goto oom;
		}
		cJSON_AddStringToObject(o, "id", ids[i]);
		cJSON_AddItemToObject(o, "key", key);
		cJSON_AddNumberToObject(o, "version", (double)versions[i]);
		cJSON_AddBoolToObject(o, "alive", alive ? alive[i] : 0);
		cJSON_AddItemToArray(a, o);
	}
	if (!a || !(text = cJSON_PrintUnformatted(a)))
		goto oom;
	const char *p[] = { side, env, entity, text };
	rc = exec(r, SQL_CONFIRM, 4, p, NULL, errbuf, errlen);
	goto out;
oom:
	snprintf(errbuf, errlen, "out of memory");
out:
	free(text);
	cJSON_Delete(a);
	return rc;
}

int capture_records_delete(struct capture_records *r, const char *side, const char *env, const char *entity, const char *id,
		   const char *key_json, long long floor, long long *version, char **key_json_out, char *errbuf,
		   size_t errlen)
{
	PGresult *res = NULL;
	char fl[24];
	snprintf(fl, sizeof(fl), "%lld", floor > 0 ? floor : 0);
	const char *p[] = { side, env, entity, id, key_json, fl };
	*key_json_out = NULL;
	if (exec(r,
		 "INSERT INTO dw_capture_record AS r (side, environment, entity, record_id, record_key, version, "
		 "deleted_version) VALUES ($1, $2, $3, $4, $5::jsonb, 0, GREATEST(1, $6::bigint)) "
		 "ON CONFLICT (side, environment, entity, record_id) DO UPDATE SET "
		 "deleted_version = GREATEST(COALESCE(r.deleted_version, r.version + 1), $6::bigint), updated_at = now() "
		 "RETURNING deleted_version, record_key::text",
		 6, p, &res, errbuf, errlen) != 0)
		return -1;
	int rc = -1;
	if (PQntuples(res) == 1) {
		*version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*key_json_out = strdup(PQgetvalue(res, 0, 1));
		rc = *key_json_out ? 0 : -1;
		if (rc)
			snprintf(errbuf, errlen, "out of memory");
	} else {
		snprintf(errbuf, errlen, "delete version: no row returned");
	}
	PQclear(res);
	return rc;
}

int capture_records_fo_version(struct capture_records *r, const char *env, const char *entity, const char *id, const char *key_json,
		       const char *hash, const char *modified, long long *version, char *errbuf, size_t errlen)
{
	PGresult *res = NULL;
	const char *p[] = { env, entity, id, key_json, hash, modified };
	if (exec(r,
		 "WITH old AS (SELECT content_hash, deleted_version FROM dw_capture_record "
		 "  WHERE side = 'fo' AND environment = $1 AND entity = $2 AND record_id = $3) "
		 "INSERT INTO dw_capture_record AS r (side, environment, entity, record_id, record_key, version, "
		 "content_hash, source_modified) VALUES ('fo', $1, $2, $3, $4::jsonb, 1, $5, $6) "
		 "ON CONFLICT (side, environment, entity, record_id) DO UPDATE SET "
		 "version = CASE WHEN r.content_hash = EXCLUDED.content_hash AND r.deleted_version IS NULL "
		 "  THEN r.version ELSE GREATEST(r.version, COALESCE(r.deleted_version, 0)) + 1 END, "
		 "content_hash = EXCLUDED.content_hash, record_key = EXCLUDED.record_key, deleted_version = NULL, "
		 "source_modified = COALESCE(EXCLUDED.source_modified, r.source_modified), updated_at = now() "
		 "WHERE r.source_modified IS NULL OR EXCLUDED.source_modified IS NULL OR "
		 "  NOT (EXCLUDED.source_modified < r.source_modified OR "
		 "       (r.deleted_version IS NOT NULL AND EXCLUDED.source_modified <= r.source_modified)) "
		 "RETURNING version, COALESCE((SELECT content_hash = $5 AND deleted_version IS NULL FROM old), false)",
		 6, p, &res, errbuf, errlen) != 0)
		return -1;
	int rc = 1;
	if (PQntuples(res) == 1) {
		*version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		rc = strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? 2 : 0;
	}
	PQclear(res);
	return rc;
}
