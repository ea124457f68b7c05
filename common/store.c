/* PostgreSQL connection and statement helpers; see store.h for the contracts. */
#include "store.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

#define DEFAULT_CONNECT_TIMEOUT_S 10
#define DEFAULT_STATEMENT_TIMEOUT_MS 30000L

/* Copies a libpq message into errbuf: prefix, one line, secrets masked. */
static void pq_message(const char *prefix, const char *msg, char *errbuf, size_t errlen)
{
	char line[1024], safe[1024];
	snprintf(line, sizeof(line), "%s", msg && *msg ? msg : "unknown error");
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = (p[1] ? ' ' : '\0');
	log_redact(line, safe, sizeof(safe));
	snprintf(errbuf, errlen, "%s%s", prefix, safe);
}

/* Server notices (e.g. "relation already exists, skipping") go to the log, not to stderr raw. */
static void notice_cb(void *arg, const char *message)
{
	(void)arg;
	char line[1024];
	pq_message("", message, line, sizeof(line));
	log_debug("postgres notice", "detail", line);
}

static int is_retryable(PGconn *conn, const char *sqlstate)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return 1;
	if (!sqlstate)
		return 0;
	return strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0 || strncmp(sqlstate, "08", 2) == 0 ||
	       strcmp(sqlstate, "57P01") == 0;
}

/* Checks a result; frees it unless it succeeded and the caller wants it. */
static int check_result(PGconn *conn, PGresult *r, PGresult **res, char *errbuf, size_t errlen)
{
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		if (res)
			*res = r;
		else
			PQclear(r);
		return 0;
	}
	const char *sqlstate = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "SQLSTATE %s: ", sqlstate ? sqlstate : "?????");
	pq_message(prefix, msg ? msg : PQerrorMessage(conn), errbuf, errlen);
	int rc = is_retryable(conn, sqlstate) ? STORE_ERR_RETRY : STORE_ERR;
	PQclear(r);
	return rc;
}

int store_connect(const char *dsn, const struct store_opts *opts, PGconn **out, char *errbuf, size_t errlen)
{
	int rc = STORE_ERR;
	PGconn *conn = NULL;
	char *perr = NULL;
	char connect_timeout[16], statement_timeout[32], options[64];

	if (!dsn || !*dsn) {
		snprintf(errbuf, errlen, "no PostgreSQL connection string given (DW_PG_DSN)");
		goto out;
	}
	PQconninfoOption *parsed = PQconninfoParse(dsn, &perr);
	if (!parsed) {
		/* libpq's message quotes the text, which may hold the password: say less. */
		snprintf(errbuf, errlen, "the PostgreSQL connection string (DW_PG_DSN) is not valid; "
					 "its text is not shown as it may hold a password");
		goto out;
	}
	PQconninfoFree(parsed);

	int ct = opts && opts->connect_timeout_s > 0 ? opts->connect_timeout_s : DEFAULT_CONNECT_TIMEOUT_S;
	long st = opts && opts->statement_timeout_ms > 0 ? opts->statement_timeout_ms : DEFAULT_STATEMENT_TIMEOUT_MS;
	snprintf(connect_timeout, sizeof(connect_timeout), "%d", ct);
	snprintf(statement_timeout, sizeof(statement_timeout), "%ld", st);
	/* Later keywords override earlier ones, and the expanded DSN comes last: the operator's own
	 * connect_timeout or application_name win over these defaults. A second dbname (opts->dbname)
	 * is taken as a plain database name: libpq expands only the first. */
	/* the statement timeout is also a connection option, so that a re-opened connection (revive)
	 * keeps it; the set_config below applies it when the DSN brings options of its own */
	snprintf(options, sizeof(options), "-c statement_timeout=%ld", st);
	const char *keys[] = { "connect_timeout", "application_name", "options", "dbname", "dbname", NULL };
	const char *vals[] = { connect_timeout, opts && opts->application_name ? opts->application_name : "dualwrite",
			       options, dsn, opts ? opts->dbname : NULL, NULL };
	if (!vals[4])
		keys[4] = NULL;
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn) {
		snprintf(errbuf, errlen, "cannot connect to PostgreSQL: out of memory");
		goto out;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		pq_message("cannot connect to PostgreSQL: ", PQerrorMessage(conn), errbuf, errlen);
		goto out;
	}
	PQsetNoticeProcessor(conn, notice_cb, NULL);
	const char *params[] = { statement_timeout };
	if (store_exec(conn, "SELECT set_config('statement_timeout', $1, false)", 1, params, NULL, errbuf, errlen) != 0)
		goto out;
	*out = conn;
	conn = NULL;
	rc = 0;
out:
	if (perr)
		PQfreemem(perr);
	if (conn)
		PQfinish(conn);
	return rc;
}

void store_close(PGconn *conn)
{
	if (conn)
		PQfinish(conn);
}

/* A connection found broken by an earlier statement (the server restarted, the session was
 * terminated, a network cut) is opened again before the next one. That earlier statement failed
 * with STORE_ERR_RETRY and every caller abandons its transaction on a failure, so the new session
 * never continues a transaction half done; the statement timeout goes with the connection's
 * options. Still broken: the statement fails retryable, as before. */
static void revive(PGconn *conn)
{
	if (!conn || PQstatus(conn) != CONNECTION_BAD)
		return;
	PQreset(conn);
	if (PQstatus(conn) == CONNECTION_OK)
		log_warn("postgresql connection re-opened", "application", PQparameterStatus(conn, "application_name")
									       ? PQparameterStatus(conn, "application_name")
									       : "");
}

int store_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, PGresult **res, char *errbuf,
	       size_t errlen)
{
	revive(conn);
	PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	return check_result(conn, r, res, errbuf, errlen);
}

int store_exec_script(PGconn *conn, const char *sql, char *errbuf, size_t errlen)
{
	revive(conn);
	PGresult *r = PQexec(conn, sql);
	return check_result(conn, r, NULL, errbuf, errlen);
}

int store_begin(PGconn *conn, char *errbuf, size_t errlen)
{
	return store_exec(conn, "BEGIN", 0, NULL, NULL, errbuf, errlen);
}

int store_commit(PGconn *conn, char *errbuf, size_t errlen)
{
	return store_exec(conn, "COMMIT", 0, NULL, NULL, errbuf, errlen);
}

int store_rollback(PGconn *conn, char *errbuf, size_t errlen)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return 0;
	PGTransactionStatusType ts = PQtransactionStatus(conn);
	if (ts == PQTRANS_IDLE || ts == PQTRANS_UNKNOWN)
		return 0;
	return store_exec(conn, "ROLLBACK", 0, NULL, NULL, errbuf, errlen) == 0 ? 0 : STORE_ERR;
}
