#include "estore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <libpq-fe.h>

#include "log.h"

#define ESTORE_MAX_ENTITY 128
#define ESTORE_MAX_PENDING 4096

struct stat_row {
	char *entity;
	unsigned long long n[3];
};

struct estore {
	PGconn **conns;
	int nconns;
	int *free_idx;
	int nfree;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_mutex_t stat_mu;
	struct stat_row *stats;
	size_t nstats;
};

struct pending {
	char entity[ESTORE_MAX_ENTITY];
	enum estore_op op;
};

struct estore_tx {
	struct estore *s;
	int idx;
	PGconn *conn;
	struct pending *pend;
	size_t npend;
	size_t pend_alloc;
	int begun;  /* BEGIN sent (with the first statement, see tx_px) */
	/* Deferred creates (estore_put_deferred): JSON objects joined by commas, written as one
	 * multi-row statement before the transaction's next statement or at commit. */
	char *dbuf;
	size_t dlen, dcap;
	size_t dn, dkeys;
	int defer_failed;
	int fenced; /* holds the shared write fence (see ESTORE_FENCE_KEY) */
	/* A queued update (estore_put_at): written with the next statement or with COMMIT. */
	int upd;
	char upd_entity[ESTORE_MAX_ENTITY];
	char upd_id[37];
	char upd_version[24];
	char *upd_text;
};

/*
 * Change tracking needs version order to equal commit visibility order, or a delta read could
 * hand out a token above a version whose transaction commits later. The write fence: every
 * transaction takes this advisory lock in shared mode before it allocates its first version (or
 * locks a row it may write) and holds it to commit; a change-tracking read takes it exclusively
 * for an instant, which waits out every writer already holding it, and reads the version sequence
 * while it holds it: every version up to that value is then committed (or rolled back), so a read
 * up to it can never be overtaken. Writers do not wait for each other.
 */
#define ESTORE_FENCE_KEY "727275"

static int prepare_all(PGconn *c, char *errbuf, size_t errlen);
static PGresult *tx_px(struct estore_tx *tx, const char *sql, int n, const char *const *p, int write);
static int flush_deferred(struct estore_tx *tx, char *errbuf, size_t errlen);
static int flush_update(struct estore_tx *tx, char *errbuf, size_t errlen);
static int commit_update(struct estore_tx *tx, char *errbuf, size_t errlen);
static int commit_plain(struct estore_tx *tx, char *errbuf, size_t errlen);
static PGconn *read_conn(struct estore *s, struct estore_tx *tx, int *idx);

static const char *const SCHEMA_SQL[] = {
	"CREATE SEQUENCE IF NOT EXISTS emu_version",
	"CREATE TABLE IF NOT EXISTS emu_record ("
	" entity text NOT NULL, id uuid NOT NULL, data jsonb NOT NULL, version bigint NOT NULL,"
	" created_at timestamptz NOT NULL DEFAULT now(), modified_at timestamptz NOT NULL DEFAULT now(),"
	" deleted boolean NOT NULL DEFAULT false, writes bigint NOT NULL DEFAULT 0,"
	" PRIMARY KEY (entity, id))",
	"CREATE INDEX IF NOT EXISTS emu_record_version ON emu_record (entity, version)",
	"CREATE TABLE IF NOT EXISTS emu_key ("
	" entity text NOT NULL, keyname text NOT NULL, keyvalue text NOT NULL, id uuid NOT NULL,"
	" PRIMARY KEY (entity, keyname, keyvalue))",
	"CREATE INDEX IF NOT EXISTS emu_key_id ON emu_key (entity, id)",
};

/* Copies the server's message (never the DSN) into errbuf. */
static void pg_err(char *errbuf, size_t errlen, const char *what, PGconn *c, const PGresult *r)
{
	const char *m = r ? PQresultErrorMessage(r) : NULL;
	if (!m || !*m)
		m = c ? PQerrorMessage(c) : "unknown error";
	snprintf(errbuf, errlen, "%s: %.*s", what, (int)strcspn(m, "\n"), m);
}

static int exec_ok(PGconn *c, const char *sql, char *errbuf, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		pg_err(errbuf, errlen, sql, c, r);
	PQclear(r);
	return ok ? 0 : ESTORE_EDB;
}

static int valid_dbname(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > 63)
		return 0;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	return 1;
}

static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *connect_db(const char *dsn, const char *dbname, char *errbuf, size_t errlen)
{
	const char *const kw[] = {"dbname", "dbname", "application_name", NULL};
	const char *const val[] = {dsn, dbname, "dw-emulator", NULL};
	PGconn *c = PQconnectdbParams(kw, val, 1);
	if (!c || PQstatus(c) != CONNECTION_OK) {
		pg_err(errbuf, errlen, "cannot connect to PostgreSQL", c, NULL);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	return c;
}

/* Creates the tables, serialised between emulators sharing a database. */
static int create_schema(PGconn *c, char *errbuf, size_t errlen)
{
	if (exec_ok(c, "SELECT pg_advisory_lock(727274)", errbuf, errlen) < 0)
		return ESTORE_EDB;
	int rc = 0;
	for (size_t i = 0; i < sizeof(SCHEMA_SQL) / sizeof(SCHEMA_SQL[0]) && rc == 0; i++)
		rc = exec_ok(c, SCHEMA_SQL[i], errbuf, errlen);
	char ignore[64];
	if (exec_ok(c, "SELECT pg_advisory_unlock(727274)", ignore, sizeof(ignore)) < 0 && rc == 0) {
		snprintf(errbuf, errlen, "%s", ignore);
		rc = ESTORE_EDB;
	}
	return rc;
}

int estore_open(const char *dsn, const char *dbname, int pool_size, struct estore **out, char *errbuf,
		size_t errlen)
{
	int rc = ESTORE_EDB;
	PGconn *admin = NULL;
	PGresult *r = NULL;
	struct estore *s = NULL;
	*out = NULL;
	if (!valid_dbname(dbname)) {
		snprintf(errbuf, errlen, "database name must match [a-z0-9_]{1,63}");
		goto out;
	}
	if (pool_size < 1 || pool_size > 256) {
		snprintf(errbuf, errlen, "pool size must be in [1, 256]");
		goto out;
	}
	{
		const char *const kw[] = {"dbname", NULL};
		const char *const val[] = {dsn, NULL};
		admin = PQconnectdbParams(kw, val, 1);
	}
	if (!admin || PQstatus(admin) != CONNECTION_OK) {
		pg_err(errbuf, errlen, "cannot connect to PostgreSQL", admin, NULL);
		goto out;
	}
	{
		const char *p[] = {dbname};
		r = PQexecParams(admin, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, p, NULL, NULL, 0);
	}
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "pg_database", admin, r);
		goto out;
	}
	if (PQntuples(r) == 0) {
		PQclear(r);
		/* The name was checked against [a-z0-9_] above; identifiers cannot be parameters. */
		char sql[128];
		snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", dbname);
		r = PQexec(admin, sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			if (!state || strcmp(state, "42P04") != 0) { /* 42P04: created concurrently */
				pg_err(errbuf, errlen, "CREATE DATABASE", admin, r);
				goto out;
			}
		}
	}
	PQclear(r);
	r = NULL;

	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->stat_mu, NULL);
	s->conns = calloc((size_t)pool_size, sizeof(*s->conns));
	s->free_idx = calloc((size_t)pool_size, sizeof(*s->free_idx));
	if (!s->conns || !s->free_idx) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < pool_size; i++) {
		s->conns[i] = connect_db(dsn, dbname, errbuf, errlen);
		if (!s->conns[i])
			goto out;
		s->nconns++;
		if (exec_ok(s->conns[i], "SET synchronous_commit = off", errbuf, errlen) < 0 ||
		    exec_ok(s->conns[i], "SET statement_timeout = '30s'", errbuf, errlen) < 0)
			goto out;
		if (i == 0 && create_schema(s->conns[0], errbuf, errlen) < 0)
			goto out;
		if (prepare_all(s->conns[i], errbuf, errlen) < 0)
			goto out;
		s->free_idx[s->nfree++] = i;
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	PQclear(r);
	PQfinish(admin);
	estore_close(s);
	return rc;
}

void estore_close(struct estore *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nconns; i++)
		PQfinish(s->conns[i]);
	free(s->conns);
	free(s->free_idx);
	for (size_t i = 0; i < s->nstats; i++)
		free(s->stats[i].entity);
	free(s->stats);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->stat_mu);
	free(s);
}

/* Opens the session again (after a broken connection, or one left in an unknown state) with the
 * settings and prepared statements of a new one. */
static void reopen(PGconn *c)
{
	char err[256];
	PQreset(c);
	if (PQstatus(c) == CONNECTION_OK &&
	    (exec_ok(c, "SET synchronous_commit = off", err, sizeof(err)) < 0 ||
	     exec_ok(c, "SET statement_timeout = '30s'", err, sizeof(err)) < 0 || prepare_all(c, err, sizeof(err)) < 0))
		log_warn("store: reconnect setup failed", "error", err);
}

static int checkout(struct estore *s)
{
	pthread_mutex_lock(&s->mu);
	while (s->nfree == 0)
		pthread_cond_wait(&s->cv, &s->mu);
	int idx = s->free_idx[--s->nfree];
	pthread_mutex_unlock(&s->mu);
	return idx;
}

static void checkin(struct estore *s, int idx)
{
	/* A connection broken by a server restart is reset before it goes back. */
	if (PQstatus(s->conns[idx]) != CONNECTION_OK)
		reopen(s->conns[idx]);
	pthread_mutex_lock(&s->mu);
	s->free_idx[s->nfree++] = idx;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int estore_begin(struct estore *s, struct estore_tx **out, char *errbuf, size_t errlen)
{
	struct estore_tx *tx = calloc(1, sizeof(*tx));
	*out = NULL;
	if (!tx) {
		snprintf(errbuf, errlen, "out of memory");
		return ESTORE_EDB;
	}
	tx->s = s;
	tx->idx = checkout(s);
	tx->conn = s->conns[tx->idx];
	/* BEGIN goes out with the first statement (tx_px): one round trip fewer per transaction. */
	*out = tx;
	return 0;
}

static void tx_free(struct estore_tx *tx)
{
	checkin(tx->s, tx->idx);
	free(tx->upd_text);
	free(tx->dbuf);
	free(tx->pend);
	free(tx);
}

static void count_locked(struct estore *s, const char *entity, enum estore_op op, unsigned long long n)
{
	for (size_t i = 0; i < s->nstats; i++) {
		if (strcmp(s->stats[i].entity, entity) == 0) {
			s->stats[i].n[op] += n;
			return;
		}
	}
	struct stat_row *ns = realloc(s->stats, (s->nstats + 1) * sizeof(*ns));
	if (!ns)
		return;
	s->stats = ns;
	s->stats[s->nstats].entity = strdup(entity);
	if (!s->stats[s->nstats].entity)
		return;
	memset(s->stats[s->nstats].n, 0, sizeof(s->stats[s->nstats].n));
	s->stats[s->nstats].n[op] = n;
	s->nstats++;
}

int estore_commit(struct estore_tx *tx, char *errbuf, size_t errlen)
{
	if (flush_deferred(tx, errbuf, errlen) < 0) {
		estore_rollback(tx);
		return ESTORE_EDB;
	}
	/* Nothing was sent in a transaction: nothing to commit. */
	int rc = tx->upd ? commit_update(tx, errbuf, errlen) : tx->begun ? commit_plain(tx, errbuf, errlen) : 0;
	if (rc == 0 && tx->npend > 0) {
		pthread_mutex_lock(&tx->s->stat_mu);
		for (size_t i = 0; i < tx->npend; i++)
			count_locked(tx->s, tx->pend[i].entity, tx->pend[i].op, 1);
		pthread_mutex_unlock(&tx->s->stat_mu);
	}
	tx_free(tx);
	return rc;
}

void estore_rollback(struct estore_tx *tx)
{
	if (!tx)
		return;
	char ignore[256];
	if (tx->begun)
		(void)exec_ok(tx->conn, "ROLLBACK", ignore, sizeof(ignore));
	tx_free(tx);
}

static void note_write(struct estore_tx *tx, const char *entity, enum estore_op op)
{
	if (tx->npend >= ESTORE_MAX_PENDING)
		return;
	if (tx->npend == tx->pend_alloc) {
		size_t na = tx->pend_alloc ? tx->pend_alloc * 2 : 8;
		struct pending *np = realloc(tx->pend, na * sizeof(*np));
		if (!np)
			return;
		tx->pend = np;
		tx->pend_alloc = na;
	}
	snprintf(tx->pend[tx->npend].entity, ESTORE_MAX_ENTITY, "%s", entity);
	tx->pend[tx->npend].op = op;
	tx->npend++;
}

void estore_record_clear(struct estore_record *r)
{
	if (!r)
		return;
	cJSON_Delete(r->data);
	memset(r, 0, sizeof(*r));
}

void estore_records_free(struct estore_record *recs, size_t n)
{
	if (!recs)
		return;
	for (size_t i = 0; i < n; i++)
		estore_record_clear(&recs[i]);
	free(recs);
}

#define RECORD_COLS                                                                                              \
	"id::text, data::text, version, (extract(epoch from created_at) * 1000)::bigint,"                       \
	" (extract(epoch from modified_at) * 1000)::bigint, deleted, writes"

/* Hot statements, prepared once per connection (PQexecPrepared skips parse and plan). */
#define SQL_GET "SELECT " RECORD_COLS " FROM emu_record WHERE entity = $1 AND id = $2::uuid AND NOT deleted FOR UPDATE"
#define SQL_FIND "SELECT id::text FROM emu_key WHERE entity = $1 AND keyname = $2 AND keyvalue = lower($3)"
#define SQL_FIND_GET                                                                                              \
	"SELECT " RECORD_COLS " FROM emu_record WHERE entity = $1 AND NOT deleted AND id = (SELECT id FROM emu_key" \
	" WHERE entity = $1 AND keyname = $2 AND keyvalue = lower($3)) FOR UPDATE"
#define SQL_CREATE                                                                                                \
	"INSERT INTO emu_record (entity, id, data, version, writes)"                                              \
	" VALUES ($1, $2::uuid, $3::jsonb, nextval('emu_version'), 1)"                                            \
	" ON CONFLICT (entity, id) DO UPDATE SET data = EXCLUDED.data, version = EXCLUDED.version,"               \
	" created_at = now(), modified_at = now(), deleted = false, writes = emu_record.writes + 1"                \
	" WHERE emu_record.deleted RETURNING version"
/* Create plus its key rows in one round trip: version (NULL when the id is live), how many keys
 * were taken, and their names. */
#define SQL_CREATE_KEYS                                                                                           \
	"WITH rec AS (" SQL_CREATE "), k AS (INSERT INTO emu_key (entity, keyname, keyvalue, id)"                 \
	" SELECT $1, e.key, lower(e.value), $2::uuid FROM jsonb_each_text($4::jsonb) e, rec"                      \
	" ON CONFLICT (entity, keyname, keyvalue) DO UPDATE SET id = EXCLUDED.id"                                 \
	" WHERE emu_key.id = EXCLUDED.id RETURNING keyname)"                                                      \
	" SELECT (SELECT version FROM rec), (SELECT count(*) FROM k), (SELECT string_agg(keyname, ',') FROM k)"
#define SQL_UPDATE                                                                                                \
	"UPDATE emu_record SET data = $3::jsonb, version = nextval('emu_version'), modified_at = now(),"          \
	" writes = writes + 1 WHERE entity = $1 AND id = $2::uuid AND NOT deleted RETURNING version"
#define SQL_MERGE                                                                                                 \
	"UPDATE emu_record SET data = data || $3::jsonb, version = nextval('emu_version'), modified_at = now(),"  \
	" writes = writes + 1 WHERE entity = $1 AND id = $2::uuid AND NOT deleted RETURNING version"
#define SQL_KEYS_DEL                                                                                              \
	"DELETE FROM emu_key k WHERE k.entity = $1 AND k.id = $2::uuid AND NOT EXISTS ("                          \
	"SELECT 1 FROM jsonb_each_text($3::jsonb) e WHERE e.key = k.keyname AND lower(e.value) = k.keyvalue)"
#define SQL_KEYS_INS                                                                                              \
	"INSERT INTO emu_key (entity, keyname, keyvalue, id)"                                                     \
	" SELECT $1, e.key, lower(e.value), $2::uuid FROM jsonb_each_text($3::jsonb) e"                           \
	" ON CONFLICT (entity, keyname, keyvalue) DO UPDATE SET id = EXCLUDED.id"                                 \
	" WHERE emu_key.id = EXCLUDED.id RETURNING keyname"
#define SQL_DELETE                                                                                                \
	"UPDATE emu_record SET deleted = true, version = nextval('emu_version'), modified_at = now(),"            \
	" writes = writes + 1 WHERE entity = $1 AND id = $2::uuid AND NOT deleted RETURNING version"
#define SQL_DELETE_KEYS "DELETE FROM emu_key WHERE entity = $1 AND id = $2::uuid"

/* Every deferred create in one statement: how many records and key rows were written. A live id
 * or a taken key writes fewer rows than asked (checked by the caller); the same id or key twice
 * in one statement is an error. */
#define SQL_CREATE_MANY                                                                                           \
	"WITH src AS (SELECT r.entity, r.id::uuid AS id, r.data, r.keys FROM jsonb_to_recordset($1::jsonb)"     \
	" AS r(entity text, id text, data jsonb, keys jsonb)), rec AS ("                                          \
	"INSERT INTO emu_record (entity, id, data, version, writes)"                                             \
	" SELECT entity, id, data, nextval('emu_version'), 1 FROM src"                                            \
	" ON CONFLICT (entity, id) DO UPDATE SET data = EXCLUDED.data, version = EXCLUDED.version,"               \
	" created_at = now(), modified_at = now(), deleted = false, writes = emu_record.writes + 1"                \
	" WHERE emu_record.deleted RETURNING entity, id), k AS ("                                                 \
	"INSERT INTO emu_key (entity, keyname, keyvalue, id)"                                                     \
	" SELECT s.entity, e.key, lower(e.value), s.id FROM src s JOIN rec USING (entity, id),"                   \
	" jsonb_each_text(s.keys) e ON CONFLICT (entity, keyname, keyvalue) DO UPDATE SET id = EXCLUDED.id"      \
	" WHERE emu_key.id = EXCLUDED.id RETURNING 1)"                                                            \
	" SELECT (SELECT count(*) FROM rec), (SELECT count(*) FROM k)"

/* SQL_FIND_GET plus the version the record's next write will carry (allocated under the fence,
 * like every version). */
#define SQL_FIND_GET_NEXT                                                                                         \
	"SELECT " RECORD_COLS ", nextval('emu_version') FROM emu_record WHERE entity = $1 AND NOT deleted AND id = ("  \
	"SELECT id FROM emu_key WHERE entity = $1 AND keyname = $2 AND keyvalue = lower($3)) FOR UPDATE"
/* The queued update (estore_put_at) of a record locked by the transaction: it fails (division by
 * zero) when no live row was written, so the COMMIT sent behind it in the same round trip is then
 * skipped and nothing is committed. */
#define SQL_UPDATE_AT                                                                                             \
	"WITH u AS (UPDATE emu_record SET data = $3::jsonb, version = $4::bigint, modified_at = now(),"           \
	" writes = writes + 1 WHERE entity = $1 AND id = $2::uuid AND NOT deleted RETURNING 1)"                   \
	" SELECT 1 / (SELECT count(*) FROM u)::int"

/* estore_patch_many's statements: the live record found by key is written when its version is
 * the one asked for ($5; 0: any) and answered as it is after the write (RECORD_COLS). No row:
 * nothing written. The version check is on the updated row itself, so a write that waited for
 * another one to the record is checked against that one's version. SQL_PATCH_KEY_OLD also answers
 * the data, version and modified time from before the write (for change notices): the record is
 * locked by a read first, then updated. */
#define PATCH_RETURNING                                                                                           \
	" RETURNING u.id::text, u.data::text, u.version, (extract(epoch from u.created_at) * 1000)::bigint,"        \
	" (extract(epoch from u.modified_at) * 1000)::bigint, u.deleted, u.writes"
#define PATCH_SET                                                                                                 \
	" SET data = u.data || $4::jsonb, version = nextval('emu_version'), modified_at = now(), writes = u.writes + 1"
#define SQL_PATCH_KEY                                                                                             \
	"UPDATE emu_record u" PATCH_SET " WHERE u.entity = $1 AND NOT u.deleted AND u.id = (SELECT id FROM emu_key" \
	" WHERE entity = $1 AND keyname = $2 AND keyvalue = lower($3)) AND ($5::bigint = 0 OR u.version = $5::bigint)" \
	PATCH_RETURNING
#define SQL_PATCH_KEY_OLD                                                                                         \
	"WITH o AS (SELECT id, version, data, modified_at FROM emu_record WHERE entity = $1 AND NOT deleted AND id = (" \
	"SELECT id FROM emu_key WHERE entity = $1 AND keyname = $2 AND keyvalue = lower($3)) FOR UPDATE)"           \
	" UPDATE emu_record u" PATCH_SET " FROM o WHERE u.entity = $1 AND u.id = o.id"                              \
	" AND ($5::bigint = 0 OR o.version = $5::bigint)" PATCH_RETURNING                                          \
	", o.data::text, o.version, (extract(epoch from o.modified_at) * 1000)::bigint"

/* Transaction control and the fence, sent for every transaction: prepared too (no parse each time). */
#define SQL_BEGIN "BEGIN"
#define SQL_COMMIT "COMMIT"
#define SQL_FENCE "SELECT pg_advisory_xact_lock_shared(" ESTORE_FENCE_KEY ")"

static const char *const PREPARED[] = {SQL_BEGIN, SQL_COMMIT, SQL_FENCE, SQL_GET,      SQL_FIND,     SQL_CREATE, SQL_CREATE_KEYS, SQL_UPDATE,
				       SQL_MERGE,    SQL_KEYS_DEL, SQL_KEYS_INS, SQL_DELETE,      SQL_DELETE_KEYS,
				       SQL_CREATE_MANY, SQL_FIND_GET, SQL_FIND_GET_NEXT, SQL_UPDATE_AT, SQL_PATCH_KEY,
				       SQL_PATCH_KEY_OLD};
#define NPREPARED (sizeof(PREPARED) / sizeof(PREPARED[0]))

static int prepare_all(PGconn *c, char *errbuf, size_t errlen)
{
	for (size_t i = 0; i < NPREPARED; i++) {
		char name[16];
		snprintf(name, sizeof(name), "emu%zu", i);
		PGresult *r = PQprepare(c, name, PREPARED[i], 0, NULL);
		int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		if (!ok)
			pg_err(errbuf, errlen, "prepare", c, r);
		PQclear(r);
		if (!ok)
			return ESTORE_EDB;
	}
	return 0;
}

/* Runs sql with parameters: prepared when it is one of PREPARED, else parsed each time. */
static PGresult *px(PGconn *c, const char *sql, int n, const char *const *p)
{
	for (size_t i = 0; i < NPREPARED; i++) {
		if (sql == PREPARED[i] || strcmp(sql, PREPARED[i]) == 0) {
			char name[16];
			snprintf(name, sizeof(name), "emu%zu", i);
			return PQexecPrepared(c, name, n, p, NULL, NULL, 0);
		}
	}
	return PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
}

/* Sends sql (prepared when it is one of PREPARED) without waiting for its result. */
static int send_px(PGconn *c, const char *sql, int n, const char *const *p)
{
	for (size_t i = 0; i < NPREPARED; i++) {
		if (sql == PREPARED[i] || strcmp(sql, PREPARED[i]) == 0) {
			char name[16];
			snprintf(name, sizeof(name), "emu%zu", i);
			return PQsendQueryPrepared(c, name, n, p, NULL, NULL, 0);
		}
	}
	return PQsendQueryParams(c, sql, n, NULL, p, NULL, NULL, 0);
}

/* Reads the next result of the pipeline and the NULL that ends it. */
static PGresult *pipeline_result(PGconn *c)
{
	PGresult *r = PQgetResult(c), *extra;
	if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC)
		return r; /* a sync has no NULL after it */
	while ((extra = PQgetResult(c)) != NULL)
		PQclear(extra);
	return r;
}

/*
 * Runs sql in the transaction. The first statement carries the transaction's BEGIN, and the first
 * writing statement (`write`: it allocates a version or locks a row) the shared write fence, in
 * one pipelined round trip. Returns the statement's result, or the first failing one of
 * BEGIN / fence (the caller's error path reports it).
 */
static PGresult *tx_px(struct estore_tx *tx, const char *sql, int n, const char *const *p, int write)
{
	PGconn *c = tx->conn;
	if (tx->dn) {
		char ignore[256];
		if (flush_deferred(tx, ignore, sizeof(ignore)) < 0)
			return PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
	}
	if (tx->upd) {
		char ignore[256];
		if (flush_update(tx, ignore, sizeof(ignore)) < 0)
			return PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
	}
	int need_begin = !tx->begun, need_fence = write && !tx->fenced;
	if (!need_begin && !need_fence)
		return px(c, sql, n, p);
	if (PQenterPipelineMode(c) != 1)
		return PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
	int nq = 0, sent = 1;
	if (need_begin) {
		sent = sent && send_px(c, SQL_BEGIN, 0, NULL);
		nq++;
	}
	if (need_fence) {
		sent = sent && send_px(c, SQL_FENCE, 0, NULL);
		nq++;
	}
	sent = sent && send_px(c, sql, n, p);
	nq++;
	if (!sent || !PQpipelineSync(c)) {
		/* Cannot tell what reached the server: drop the session (checkin reconnects). */
		PGresult *e = PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
		reopen(c);
		return e;
	}
	PGresult *first_bad = NULL, *last = NULL;
	for (int q = 0; q < nq; q++) {
		PGresult *r = pipeline_result(c);
		if (q == nq - 1) {
			last = r;
		} else if (!first_bad && PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
			first_bad = r;
		} else {
			PQclear(r);
		}
	}
	PQclear(pipeline_result(c)); /* the sync */
	if (PQexitPipelineMode(c) != 1) {
		PQclear(first_bad);
		PQclear(last);
		PGresult *e = PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
		reopen(c);
		return e;
	}
	if (first_bad) {
		PQclear(last);
		return first_bad;
	}
	tx->begun = 1;
	if (need_fence)
		tx->fenced = 1;
	return last;
}

static int row_to_record(PGresult *r, int row, struct estore_record *out, char *errbuf, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(r, row, 0));
	out->data = cJSON_ParseWithLength(PQgetvalue(r, row, 1), (size_t)PQgetlength(r, row, 1));
	if (!out->data) {
		snprintf(errbuf, errlen, "stored record %s is not JSON", out->id);
		return ESTORE_EDB;
	}
	out->version = strtoll(PQgetvalue(r, row, 2), NULL, 10);
	out->created_ms = strtoll(PQgetvalue(r, row, 3), NULL, 10);
	out->modified_ms = strtoll(PQgetvalue(r, row, 4), NULL, 10);
	out->deleted = PQgetvalue(r, row, 5)[0] == 't';
	out->writes = strtoll(PQgetvalue(r, row, 6), NULL, 10);
	return 0;
}

static int rows_to_records(PGresult *r, struct estore_record **out, size_t *n, char *errbuf, size_t errlen)
{
	int rows = PQntuples(r);
	*out = NULL;
	*n = 0;
	if (rows == 0)
		return 0;
	struct estore_record *recs = calloc((size_t)rows, sizeof(*recs));
	if (!recs) {
		snprintf(errbuf, errlen, "out of memory");
		return ESTORE_EDB;
	}
	for (int i = 0; i < rows; i++) {
		if (row_to_record(r, i, &recs[i], errbuf, errlen) < 0) {
			estore_records_free(recs, (size_t)i);
			return ESTORE_EDB;
		}
	}
	*out = recs;
	*n = (size_t)rows;
	return 0;
}

/* Runs sql (RECORD_COLS of at most one record, then when next_version is not NULL the version
 * allocated for its next write) with params p[0..n): in tx (a locking read) when not NULL, else
 * on connection c. 0 with *out (and *next_version) filled, ESTORE_NOTFOUND or ESTORE_EDB. */
static int read_one(struct estore_tx *tx, PGconn *c, const char *sql, const char *const *p, int n,
		    struct estore_record *out, long long *next_version, char *errbuf, size_t errlen)
{
	if (tx)
		c = tx->conn;
	PGresult *r = tx ? tx_px(tx, sql, n, p, 1) : px(c, sql, n, p);
	int rc;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (state && strcmp(state, "22P02") == 0) /* not a uuid: cannot exist */
			rc = ESTORE_NOTFOUND;
		else {
			pg_err(errbuf, errlen, "read record", c, r);
			rc = ESTORE_EDB;
		}
	} else if (PQntuples(r) == 0) {
		rc = ESTORE_NOTFOUND;
	} else {
		rc = row_to_record(r, 0, out, errbuf, errlen);
		if (next_version)
			*next_version = strtoll(PQgetvalue(r, 0, 7), NULL, 10);
	}
	PQclear(r);
	return rc;
}

/* Reads one record by id: in tx (a locking read) when not NULL, else on connection c. */
static int get_one(struct estore_tx *tx, PGconn *c, const char *sql, const char *entity, const char *id,
		   struct estore_record *out, char *errbuf, size_t errlen)
{
	const char *p[] = {entity, id};
	return read_one(tx, c, sql, p, 2, out, NULL, errbuf, errlen);
}

int estore_get(struct estore_tx *tx, const char *entity, const char *id, struct estore_record *out, char *errbuf,
	       size_t errlen)
{
	/* A locking read: the fence comes first (tx_px), so a transaction waiting for the fence holds
	 * no row lock a fenced writer could be waiting for. */
	return get_one(tx, NULL, SQL_GET, entity, id, out, errbuf, errlen);
}

int estore_peek(struct estore *s, const char *entity, const char *id, struct estore_record *out, char *errbuf,
		size_t errlen)
{
	int idx = checkout(s);
	int rc = get_one(NULL, s->conns[idx], "SELECT " RECORD_COLS " FROM emu_record WHERE entity = $1 AND id = $2::uuid",
			 entity, id, out, errbuf, errlen);
	checkin(s, idx);
	return rc;
}

int estore_find(struct estore_tx *tx, const char *entity, const char *keyname, const char *keyvalue,
		char id_out[37], char *errbuf, size_t errlen)
{
	const char *p[] = {entity, keyname, keyvalue};
	PGresult *r = tx_px(tx, SQL_FIND, 3, p, 0);
	int rc;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "find key", tx->conn, r);
		rc = ESTORE_EDB;
	} else if (PQntuples(r) == 0) {
		rc = ESTORE_NOTFOUND;
	} else {
		snprintf(id_out, 37, "%s", PQgetvalue(r, 0, 0));
		rc = 0;
	}
	PQclear(r);
	return rc;
}

int estore_find_get(struct estore_tx *tx, const char *entity, const char *keyname, const char *keyvalue,
		    struct estore_record *out, char *errbuf, size_t errlen)
{
	const char *p[] = {entity, keyname, keyvalue};
	/* a locking read: the fence first, as for estore_get */
	return read_one(tx, NULL, SQL_FIND_GET, p, 3, out, NULL, errbuf, errlen);
}

int estore_find_get_next(struct estore_tx *tx, const char *entity, const char *keyname, const char *keyvalue,
			 struct estore_record *out, long long *next_version, char *errbuf, size_t errlen)
{
	const char *p[] = {entity, keyname, keyvalue};
	/* a locking read: the fence first, as for estore_get */
	return read_one(tx, NULL, SQL_FIND_GET_NEXT, p, 3, out, next_version, errbuf, errlen);
}

int estore_put_at(struct estore_tx *tx, const char *entity, const char *id, const cJSON *data, long long version,
		  char *errbuf, size_t errlen)
{
	if (tx->upd && flush_update(tx, errbuf, errlen) < 0)
		return ESTORE_EDB;
	if (strlen(entity) >= sizeof(tx->upd_entity) || strlen(id) >= sizeof(tx->upd_id)) {
		snprintf(errbuf, errlen, "entity or id too long");
		return ESTORE_EDB;
	}
	char *text = cJSON_PrintUnformatted(data);
	if (!text) {
		snprintf(errbuf, errlen, "out of memory");
		return ESTORE_EDB;
	}
	free(tx->upd_text);
	tx->upd_text = text;
	snprintf(tx->upd_entity, sizeof(tx->upd_entity), "%s", entity);
	snprintf(tx->upd_id, sizeof(tx->upd_id), "%s", id);
	snprintf(tx->upd_version, sizeof(tx->upd_version), "%lld", version);
	tx->upd = 1;
	note_write(tx, entity, ESTORE_OP_UPDATE);
	return 0;
}

/* Writes the queued update now (another statement follows in the transaction). 0 or ESTORE_EDB. */
static int flush_update(struct estore_tx *tx, char *errbuf, size_t errlen)
{
	const char *p[] = {tx->upd_entity, tx->upd_id, tx->upd_text, tx->upd_version};
	tx->upd = 0; /* tx_px below must not flush again */
	PGresult *r = tx_px(tx, SQL_UPDATE_AT, 4, p, 1);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "update record", tx->conn, r);
		rc = ESTORE_EDB;
	}
	PQclear(r);
	return rc;
}

/* COMMIT (prepared). 0 or ESTORE_EDB. */
static int commit_plain(struct estore_tx *tx, char *errbuf, size_t errlen)
{
	PGresult *r = px(tx->conn, SQL_COMMIT, 0, NULL);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		pg_err(errbuf, errlen, "COMMIT", tx->conn, r);
	PQclear(r);
	return ok ? 0 : ESTORE_EDB;
}

/* The queued update and COMMIT in one pipelined round trip. A failed update aborts the
 * transaction (COMMIT is then skipped by the pipeline): it is rolled back. 0 or ESTORE_EDB. */
static int commit_update(struct estore_tx *tx, char *errbuf, size_t errlen)
{
	PGconn *c = tx->conn;
	const char *p[] = {tx->upd_entity, tx->upd_id, tx->upd_text, tx->upd_version};
	tx->upd = 0;
	if (PQenterPipelineMode(c) != 1) {
		pg_err(errbuf, errlen, "pipeline", c, NULL);
		return ESTORE_EDB;
	}
	if (!send_px(c, SQL_UPDATE_AT, 4, p) || !send_px(c, SQL_COMMIT, 0, NULL) ||
	    !PQpipelineSync(c)) {
		/* Cannot tell what reached the server: drop the session (checkin reconnects). */
		pg_err(errbuf, errlen, "update and commit", c, NULL);
		reopen(c);
		return ESTORE_EDB;
	}
	int rc = 0;
	for (int q = 0; q < 2; q++) {
		PGresult *r = pipeline_result(c);
		ExecStatusType st = PQresultStatus(r);
		if (rc == 0 && st != (q == 0 ? PGRES_TUPLES_OK : PGRES_COMMAND_OK)) {
			pg_err(errbuf, errlen, q == 0 ? "update record" : "commit", c, r);
			rc = ESTORE_EDB;
		}
		PQclear(r);
	}
	PQclear(pipeline_result(c)); /* the sync */
	if (PQexitPipelineMode(c) != 1) {
		reopen(c);
		return ESTORE_EDB;
	}
	if (rc != 0) {
		char ignore[256];
		(void)exec_ok(c, "ROLLBACK", ignore, sizeof(ignore));
	}
	return rc;
}

/* At most this many patches, and this much text, in one pipeline: what is sent stays well under
 * the socket buffers, so the sender never waits on a server that waits on its unread answers. */
#define ESTORE_PATCH_PIPELINE 32
#define ESTORE_PATCH_PIPELINE_BYTES (128 * 1024)

/* One patch's answer (the rows of SQL_PATCH_KEY or SQL_PATCH_KEY_OLD) into p. */
static void patch_result(struct estore_patch *p, PGresult *r, PGconn *c, char *errbuf, size_t errlen)
{
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "patch record", c, r);
		p->rc = ESTORE_EDB;
	} else if (PQntuples(r) == 0) {
		p->rc = ESTORE_NOTFOUND;
	} else if (row_to_record(r, 0, &p->rec, errbuf, errlen) < 0) {
		p->rc = ESTORE_EDB;
	} else {
		p->rc = 0;
		if (p->want_old) {
			snprintf(p->old.id, sizeof(p->old.id), "%s", p->rec.id);
			p->old.data = cJSON_ParseWithLength(PQgetvalue(r, 0, 7), (size_t)PQgetlength(r, 0, 7));
			p->old.version = strtoll(PQgetvalue(r, 0, 8), NULL, 10);
			p->old.created_ms = p->rec.created_ms;
			p->old.modified_ms = strtoll(PQgetvalue(r, 0, 9), NULL, 10);
		}
	}
}

/* Sends and reads one pipeline of p[0..n). 0, or ESTORE_EDB when the connection failed (every rc
 * not yet read is then ESTORE_EDB; the connection is reset). */
static int patch_pipeline(struct estore *s, PGconn *c, struct estore_patch *p, size_t n, char *errbuf,
			  size_t errlen)
{
	if (PQenterPipelineMode(c) != 1) {
		pg_err(errbuf, errlen, "pipeline", c, NULL);
		return ESTORE_EDB;
	}
	int sent = 1;
	for (size_t i = 0; i < n && sent; i++) {
		char ver[24];
		snprintf(ver, sizeof(ver), "%lld", p[i].if_version);
		const char *params[] = {p[i].entity, p[i].keyname, p[i].keyvalue, p[i].fields, ver};
		/* fence and write in the implicit transaction that the sync commits */
		sent = send_px(c, SQL_FENCE, 0, NULL) &&
		       send_px(c, p[i].want_old ? SQL_PATCH_KEY_OLD : SQL_PATCH_KEY, 5, params) && PQpipelineSync(c);
	}
	if (!sent) {
		/* Cannot tell what reached the server: drop the session (checkin reconnects). */
		pg_err(errbuf, errlen, "patch pipeline", c, NULL);
		reopen(c);
		return ESTORE_EDB;
	}
	for (size_t i = 0; i < n; i++) {
		PGresult *fence = pipeline_result(c);
		PGresult *write = pipeline_result(c);
		PGresult *sync = pipeline_result(c);
		if (!fence || !write || PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
			PQclear(fence);
			PQclear(write);
			PQclear(sync);
			pg_err(errbuf, errlen, "patch pipeline", c, NULL);
			reopen(c);
			return ESTORE_EDB;
		}
		if (PQresultStatus(fence) != PGRES_TUPLES_OK) {
			pg_err(errbuf, errlen, "write fence", c, fence);
			p[i].rc = ESTORE_EDB;
		} else {
			patch_result(&p[i], write, c, errbuf, errlen);
		}
		if (p[i].rc == 0) {
			pthread_mutex_lock(&s->stat_mu);
			count_locked(s, p[i].entity, ESTORE_OP_UPDATE, 1);
			pthread_mutex_unlock(&s->stat_mu);
		}
		PQclear(fence);
		PQclear(write);
		PQclear(sync);
	}
	if (PQexitPipelineMode(c) != 1) {
		pg_err(errbuf, errlen, "pipeline", c, NULL);
		reopen(c);
	}
	return 0;
}

int estore_patch_many(struct estore *s, struct estore_patch *p, size_t n, char *errbuf, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		p[i].rc = ESTORE_EDB;
		memset(&p[i].rec, 0, sizeof(p[i].rec));
		memset(&p[i].old, 0, sizeof(p[i].old));
	}
	int idx = checkout(s), rc = 0;
	for (size_t at = 0; at < n && rc == 0;) {
		size_t k = 0, bytes = 0;
		while (at + k < n && k < ESTORE_PATCH_PIPELINE &&
		       (k == 0 || bytes + strlen(p[at + k].fields) <= ESTORE_PATCH_PIPELINE_BYTES))
			bytes += strlen(p[at + k++].fields);
		rc = patch_pipeline(s, s->conns[idx], p + at, k, errbuf, errlen);
		at += k;
	}
	checkin(s, idx);
	return rc;
}

void estore_patch_clear(struct estore_patch *p)
{
	estore_record_clear(&p->rec);
	estore_record_clear(&p->old);
}

static int write_keys(struct estore_tx *tx, const char *entity, const char *id, const cJSON *keys, char *errbuf,
		      size_t errlen)
{
	int rc = ESTORE_EDB;
	char *keys_text = cJSON_PrintUnformatted(keys);
	PGresult *r = NULL;
	if (!keys_text) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	const char *p[] = {entity, id, keys_text};
	r = tx_px(tx, SQL_KEYS_DEL, 3, p, 1);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		pg_err(errbuf, errlen, "delete keys", tx->conn, r);
		goto out;
	}
	PQclear(r);
	r = tx_px(tx, SQL_KEYS_INS, 3, p, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "write keys", tx->conn, r);
		goto out;
	}
	if (PQntuples(r) < cJSON_GetArraySize(keys)) {
		/* Name the first key that did not come back: it belongs to another record. */
		const cJSON *k;
		const char *taken = "?";
		cJSON_ArrayForEach(k, keys)
		{
			int seen = 0;
			for (int i = 0; i < PQntuples(r); i++)
				if (strcmp(PQgetvalue(r, i, 0), k->string) == 0)
					seen = 1;
			if (!seen) {
				taken = k->string;
				break;
			}
		}
		snprintf(errbuf, errlen, "%s", taken);
		rc = ESTORE_EDUP;
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	free(keys_text);
	return rc;
}

/* One round trip for a create and its keys (see SQL_CREATE_KEYS). */
static int create_with_keys(struct estore_tx *tx, const char *entity, const char *id, const char *text,
			    const cJSON *keys, long long *version_out, char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	char *keys_text = cJSON_PrintUnformatted(keys);
	PGresult *r = NULL;
	if (!keys_text) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	const char *p[] = {entity, id, text, keys_text};
	r = tx_px(tx, SQL_CREATE_KEYS, 4, p, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		pg_err(errbuf, errlen, "create record", tx->conn, r);
		goto out;
	}
	if (PQgetisnull(r, 0, 0)) {
		snprintf(errbuf, errlen, "id");
		rc = ESTORE_EDUP;
		goto out;
	}
	if (strtol(PQgetvalue(r, 0, 1), NULL, 10) < cJSON_GetArraySize(keys)) {
		const char *got = PQgetisnull(r, 0, 2) ? "" : PQgetvalue(r, 0, 2);
		const cJSON *k;
		const char *taken = "?";
		cJSON_ArrayForEach(k, keys)
		{
			size_t kl = strlen(k->string);
			const char *hit = strstr(got, k->string);
			int seen = 0;
			while (hit) {
				if ((hit == got || hit[-1] == ',') && (hit[kl] == '\0' || hit[kl] == ','))
					seen = 1;
				hit = strstr(hit + 1, k->string);
			}
			if (!seen) {
				taken = k->string;
				break;
			}
		}
		snprintf(errbuf, errlen, "%s", taken);
		rc = ESTORE_EDUP;
		goto out;
	}
	*version_out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	rc = 0;
out:
	PQclear(r);
	free(keys_text);
	return rc;
}

int estore_put(struct estore_tx *tx, enum estore_op op, const char *entity, const char *id, const cJSON *data,
	       const cJSON *keys, long long *version_out, char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	PGresult *r = NULL;
	char *text = cJSON_PrintUnformatted(data);
	if (!text) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	const char *p[] = {entity, id, text, NULL};
	if (op == ESTORE_OP_CREATE && keys) {
		rc = create_with_keys(tx, entity, id, text, keys, version_out, errbuf, errlen);
		if (rc == 0)
			note_write(tx, entity, op);
		goto out;
	}
	r = tx_px(tx, op == ESTORE_OP_CREATE ? SQL_CREATE : SQL_UPDATE, 3, p, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "write record", tx->conn, r);
		goto out;
	}
	if (PQntuples(r) == 0) {
		if (op == ESTORE_OP_CREATE) {
			snprintf(errbuf, errlen, "id");
			rc = ESTORE_EDUP;
		} else {
			rc = ESTORE_NOTFOUND;
		}
		goto out;
	}
	*version_out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	if (keys) {
		rc = write_keys(tx, entity, id, keys, errbuf, errlen);
		if (rc < 0)
			goto out;
	}
	note_write(tx, entity, op);
	rc = 0;
out:
	PQclear(r);
	free(text);
	return rc;
}

#define ESTORE_DEFER_MAX_ROWS 1000
#define ESTORE_DEFER_MAX_BYTES (16u * 1024 * 1024)

/* Whether s is safe inside a JSON string without escaping (entity names, GUIDs). */
static int json_plain(const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			return 0;
	return 1;
}

static int dbuf_add(struct estore_tx *tx, const char *a, size_t n)
{
	if (tx->dlen + n + 1 > tx->dcap) {
		size_t nc = tx->dcap ? tx->dcap * 2 : 64 * 1024;
		while (nc < tx->dlen + n + 1)
			nc *= 2;
		char *nb = realloc(tx->dbuf, nc);
		if (!nb)
			return -1;
		tx->dbuf = nb;
		tx->dcap = nc;
	}
	memcpy(tx->dbuf + tx->dlen, a, n);
	tx->dlen += n;
	tx->dbuf[tx->dlen] = '\0';
	return 0;
}

/* Writes the deferred creates (see SQL_CREATE_MANY). 0, or ESTORE_EDEFER with defer_failed set. */
static int flush_deferred(struct estore_tx *tx, char *errbuf, size_t errlen)
{
	if (tx->dn == 0)
		return 0;
	size_t n = tx->dn, nkeys = tx->dkeys;
	tx->dn = 0; /* tx_px below must not flush again */
	tx->dkeys = 0;
	int rc = ESTORE_EDEFER;
	PGresult *r = NULL;
	if (dbuf_add(tx, "]", 1) < 0) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	tx->dbuf[0] = '[';
	const char *p[] = {tx->dbuf};
	r = tx_px(tx, SQL_CREATE_MANY, 1, p, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		pg_err(errbuf, errlen, "deferred creates", tx->conn, r);
		goto out;
	}
	if ((size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10) != n ||
	    (size_t)strtoull(PQgetvalue(r, 0, 1), NULL, 10) != nkeys) {
		snprintf(errbuf, errlen, "deferred creates: an id or key is taken");
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	tx->dlen = 0;
	if (rc < 0)
		tx->defer_failed = 1;
	return rc;
}

int estore_put_deferred(struct estore_tx *tx, const char *entity, const char *id, const cJSON *data,
			const cJSON *keys, char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	char *dtext = NULL, *ktext = NULL;
	if (tx->defer_failed) {
		snprintf(errbuf, errlen, "deferred creates failed earlier in this transaction");
		return ESTORE_EDEFER;
	}
	if (!json_plain(entity) || !json_plain(id)) {
		snprintf(errbuf, errlen, "entity or id cannot be deferred");
		goto out;
	}
	dtext = cJSON_PrintUnformatted(data);
	ktext = keys ? cJSON_PrintUnformatted(keys) : strdup("{}");
	if (!dtext || !ktext) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	/* The first byte is a placeholder for '[' (or a ',' between rows). */
	char head[256];
	int hl = snprintf(head, sizeof(head), ",{\"entity\":\"%s\",\"id\":\"%s\",\"data\":", entity, id);
	if (hl < 0 || (size_t)hl >= sizeof(head)) {
		snprintf(errbuf, errlen, "entity name too long");
		goto out;
	}
	if (dbuf_add(tx, head, (size_t)hl) < 0 || dbuf_add(tx, dtext, strlen(dtext)) < 0 ||
	    dbuf_add(tx, ",\"keys\":", 8) < 0 || dbuf_add(tx, ktext, strlen(ktext)) < 0 || dbuf_add(tx, "}", 1) < 0) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	tx->dn++;
	tx->dkeys += keys ? (size_t)cJSON_GetArraySize(keys) : 0;
	note_write(tx, entity, ESTORE_OP_CREATE);
	rc = 0;
	if (tx->dn >= ESTORE_DEFER_MAX_ROWS || tx->dlen >= ESTORE_DEFER_MAX_BYTES)
		rc = flush_deferred(tx, errbuf, errlen);
out:
	free(dtext);
	free(ktext);
	return rc;
}

int estore_flush(struct estore_tx *tx, char *errbuf, size_t errlen)
{
	if (tx->defer_failed) {
		snprintf(errbuf, errlen, "deferred creates failed");
		return ESTORE_EDEFER;
	}
	return flush_deferred(tx, errbuf, errlen);
}

int estore_deferred_failed(const struct estore_tx *tx)
{
	return tx && tx->defer_failed;
}

int estore_merge(struct estore_tx *tx, const char *entity, const char *id, const cJSON *patch, long long *version_out,
		 char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	PGresult *r = NULL;
	char *text = cJSON_PrintUnformatted(patch);
	if (!text) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	const char *p[] = {entity, id, text};
	r = tx_px(tx, SQL_MERGE, 3, p, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (state && strcmp(state, "22P02") == 0) { /* not a uuid: cannot exist */
			rc = ESTORE_NOTFOUND;
			goto out;
		}
		pg_err(errbuf, errlen, "merge record", tx->conn, r);
		goto out;
	}
	if (PQntuples(r) == 0) {
		rc = ESTORE_NOTFOUND;
		goto out;
	}
	*version_out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	note_write(tx, entity, ESTORE_OP_UPDATE);
	rc = 0;
out:
	PQclear(r);
	free(text);
	return rc;
}

int estore_delete(struct estore_tx *tx, const char *entity, const char *id, long long *version_out, char *errbuf,
		  size_t errlen)
{
	int rc = ESTORE_EDB;
	const char *p[] = {entity, id};
	PGresult *r = tx_px(tx, SQL_DELETE, 2, p, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "delete record", tx->conn, r);
		goto out;
	}
	if (PQntuples(r) == 0) {
		rc = ESTORE_NOTFOUND;
		goto out;
	}
	*version_out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	r = tx_px(tx, SQL_DELETE_KEYS, 2, p, 1);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		pg_err(errbuf, errlen, "delete keys", tx->conn, r);
		goto out;
	}
	note_write(tx, entity, ESTORE_OP_DELETE);
	rc = 0;
out:
	PQclear(r);
	return rc;
}

int estore_query(struct estore *s, struct estore_tx *tx, const char *entity, const char *where_sql,
		 const char *const *params, int nparams, const char *order_sql, long limit, long offset,
		 struct estore_record **out, size_t *n, char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	char *sql = NULL;
	const char **p = NULL;
	PGresult *r = NULL;
	int idx = -1;
	*out = NULL;
	*n = 0;
	if (nparams < 0 || nparams > 1000) {
		snprintf(errbuf, errlen, "too many query parameters");
		goto out;
	}
	if (asprintf(&sql, "SELECT " RECORD_COLS " FROM emu_record WHERE entity = $1 AND NOT deleted%s%s%s"
			   " ORDER BY %s%sid LIMIT %ld OFFSET %ld",
		     where_sql ? " AND (" : "", where_sql ? where_sql : "", where_sql ? ")" : "",
		     order_sql ? order_sql : "", order_sql ? ", " : "", limit, offset) < 0) {
		sql = NULL;
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	p = calloc((size_t)nparams + 1, sizeof(*p));
	if (!p) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	p[0] = entity;
	for (int i = 0; i < nparams; i++)
		p[i + 1] = params[i];
	PGconn *c = read_conn(s, tx, &idx);
	r = PQexecParams(c, sql, nparams + 1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "query", c, r);
		goto out;
	}
	rc = rows_to_records(r, out, n, errbuf, errlen);
out:
	PQclear(r);
	if (idx >= 0)
		checkin(s, idx);
	free(p);
	free(sql);
	return rc;
}

/* The connection for a read: the transaction's, or a pooled one (*idx >= 0 to give back). A read
 * inside an open transaction must use its connection: taking a second one could wait forever once
 * every pooled connection is held by a transaction doing the same. */
static PGconn *read_conn(struct estore *s, struct estore_tx *tx, int *idx)
{
	if (tx) {
		*idx = -1;
		if (tx->dn) {
			char ignore[256];
			(void)flush_deferred(tx, ignore, sizeof(ignore)); /* on failure the read fails too */
		}
		return tx->conn;
	}
	*idx = checkout(s);
	return s->conns[*idx];
}

int estore_count(struct estore *s, struct estore_tx *tx, const char *entity, const char *where_sql,
		 const char *const *params, int nparams, long long *out, char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	char *sql = NULL;
	const char **p = NULL;
	PGresult *r = NULL;
	int idx = -1;
	if (nparams < 0 || nparams > 1000) {
		snprintf(errbuf, errlen, "too many query parameters");
		goto out;
	}
	if (asprintf(&sql, "SELECT count(*) FROM emu_record WHERE entity = $1 AND NOT deleted%s%s%s",
		     where_sql ? " AND (" : "", where_sql ? where_sql : "", where_sql ? ")" : "") < 0) {
		sql = NULL;
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	p = calloc((size_t)nparams + 1, sizeof(*p));
	if (!p) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	p[0] = entity;
	for (int i = 0; i < nparams; i++)
		p[i + 1] = params[i];
	PGconn *c = read_conn(s, tx, &idx);
	r = PQexecParams(c, sql, nparams + 1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "count", c, r);
		goto out;
	}
	*out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	rc = 0;
out:
	PQclear(r);
	if (idx >= 0)
		checkin(s, idx);
	free(p);
	free(sql);
	return rc;
}

/*
 * Highest version of `entity` that no later commit can undercut: waits out the writers holding
 * the fence (see ESTORE_FENCE_KEY), reads the sequence while holding it exclusively, then the
 * entity's highest version up to that value (with a snapshot taken after the wait).
 */
static int max_version_on(PGconn *c, const char *entity, long long *out, char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	/* One statement, evaluated left to right: the session lock never outlives it. */
	PGresult *r = PQexec(c, "SELECT pg_advisory_lock(" ESTORE_FENCE_KEY "),"
				" coalesce(pg_sequence_last_value('emu_version'), 0),"
				" pg_advisory_unlock(" ESTORE_FENCE_KEY ")");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		pg_err(errbuf, errlen, "version fence", c, r);
		goto out;
	}
	char bound[32];
	snprintf(bound, sizeof(bound), "%s", PQgetvalue(r, 0, 1));
	PQclear(r);
	const char *p[] = {entity, bound};
	r = PQexecParams(c, "SELECT coalesce(max(version), 0) FROM emu_record WHERE entity = $1 AND version <= $2::bigint",
			 2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "max version", c, r);
		goto out;
	}
	*out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	rc = 0;
out:
	PQclear(r);
	return rc;
}

int estore_max_version(struct estore *s, struct estore_tx *tx, const char *entity, long long *out, char *errbuf,
		       size_t errlen)
{
	int idx;
	PGconn *c = read_conn(s, tx, &idx);
	int rc = max_version_on(c, entity, out, errbuf, errlen);
	if (idx >= 0)
		checkin(s, idx);
	return rc;
}

int estore_changes(struct estore *s, struct estore_tx *tx, const char *entity, long long since, long limit,
		   struct estore_record **out, size_t *n, long long *max_version_out, char *errbuf, size_t errlen)
{
	int rc = ESTORE_EDB;
	int idx;
	PGconn *c = read_conn(s, tx, &idx);
	PGresult *r = NULL;
	long long top = 0;
	*out = NULL;
	*n = 0;
	/* The token first, then the rows up to it: a row committed in between waits for the next read. */
	if (max_version_on(c, entity, &top, errbuf, errlen) < 0)
		goto out;
	char since_s[32], limit_s[32], top_s[32];
	snprintf(since_s, sizeof(since_s), "%lld", since);
	snprintf(limit_s, sizeof(limit_s), "%ld", limit);
	snprintf(top_s, sizeof(top_s), "%lld", top);
	const char *p[] = {entity, since_s, limit_s, top_s};
	r = PQexecParams(c,
			 "SELECT " RECORD_COLS " FROM (SELECT * FROM emu_record WHERE entity = $1 AND"
			 " version > $2::bigint AND version <= $4::bigint ORDER BY version LIMIT $3::bigint) r"
			 " ORDER BY deleted, version",
			 4, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pg_err(errbuf, errlen, "changes", c, r);
		goto out;
	}
	if (rows_to_records(r, out, n, errbuf, errlen) < 0)
		goto out;
	*max_version_out = top > since ? top : since;
	if ((long)*n >= limit) {
		/* A full page: the next token continues right after the newest row returned. */
		long long last = since;
		for (size_t i = 0; i < *n; i++)
			if ((*out)[i].version > last)
				last = (*out)[i].version;
		*max_version_out = last;
	}
	rc = 0;
out:
	PQclear(r);
	if (idx >= 0)
		checkin(s, idx);
	return rc;
}

int estore_reset(struct estore *s, char *errbuf, size_t errlen)
{
	int idx = checkout(s);
	int rc = exec_ok(s->conns[idx], "TRUNCATE emu_record, emu_key", errbuf, errlen);
	checkin(s, idx);
	pthread_mutex_lock(&s->stat_mu);
	for (size_t i = 0; i < s->nstats; i++)
		free(s->stats[i].entity);
	free(s->stats);
	s->stats = NULL;
	s->nstats = 0;
	pthread_mutex_unlock(&s->stat_mu);
	return rc;
}

cJSON *estore_stats(struct estore *s)
{
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	pthread_mutex_lock(&s->stat_mu);
	for (size_t i = 0; i < s->nstats; i++) {
		cJSON *o = cJSON_AddObjectToObject(root, s->stats[i].entity);
		cJSON_AddNumberToObject(o, "create", (double)s->stats[i].n[ESTORE_OP_CREATE]);
		cJSON_AddNumberToObject(o, "update", (double)s->stats[i].n[ESTORE_OP_UPDATE]);
		cJSON_AddNumberToObject(o, "delete", (double)s->stats[i].n[ESTORE_OP_DELETE]);
	}
	pthread_mutex_unlock(&s->stat_mu);
	return root;
}

void estore_new_guid(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		/* getrandom on Linux does not fail for 16 bytes once the pool is initialised; fall back
		 * to a time-derived value rather than leave the buffer unset. */
		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (unsigned char)(rand() & 0xff);
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
		 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}
