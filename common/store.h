#ifndef DW_STORE_H
#define DW_STORE_H

#include <stddef.h>

#include <libpq-fe.h>

/*
 * PostgreSQL connection and statement helpers over libpq. Every statement goes through
 * store_exec(), which is parameterised (PQexecParams) and turns a failed PGresult into one errbuf
 * line "SQLSTATE XXXXX: message". The DSN holds a password: it never appears in an error or a log
 * line, only the server's own messages (which name host, port, user and database) do.
 *
 * Return codes: 0 on success; STORE_ERR (ordinary failure) or STORE_ERR_RETRY (serialization
 * failure, deadlock, lost connection: the caller may retry the whole transaction) with errbuf.
 */

enum { STORE_ERR = -1, STORE_ERR_RETRY = -2 };

struct store_opts {
	const char *application_name; /* shown in pg_stat_activity; a DSN's own value wins */
	int connect_timeout_s;        /* 0: 10 s; a DSN's own connect_timeout wins */
	long statement_timeout_ms;    /* 0: 30 s; applies to every statement of the session */
	const char *dbname;           /* NULL: the DSN's database; else this one instead */
};

/* Opens a connection to `dsn` (a libpq key=value string or postgresql:// URI) and sets the
 * session's statement_timeout. Borrows dsn and opts for the call. On success *out is a new
 * connection the caller closes with store_close(). Fails with errbuf: an unparsable DSN is
 * reported without quoting it. */
int store_connect(const char *dsn, const struct store_opts *opts, PGconn **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Closes the connection; NULL-safe. */
void store_close(PGconn *conn);

/* Runs one parameterised statement: params are nparams text values (NULL means SQL NULL). When
 * res is non-NULL and the statement succeeds, *res is the result the caller frees with PQclear();
 * otherwise the result is freed here. Returns 0, STORE_ERR or STORE_ERR_RETRY with errbuf. */
int store_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, PGresult **res,
	       char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Runs a script of one or more statements without parameters (simple query protocol), for fixed
 * SQL shipped with the program such as migrations; never for text from outside. Same returns. */
int store_exec_script(PGconn *conn, const char *sql, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* BEGIN / COMMIT / ROLLBACK. store_rollback is safe to call when no transaction is open and when
 * the connection is broken (it then does nothing); it returns 0 or STORE_ERR. */
int store_begin(PGconn *conn, char *errbuf, size_t errlen) __attribute__((warn_unused_result));
int store_commit(PGconn *conn, char *errbuf, size_t errlen) __attribute__((warn_unused_result));
int store_rollback(PGconn *conn, char *errbuf, size_t errlen);

#endif
