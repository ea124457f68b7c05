#ifndef DW_LOG_H
#define DW_LOG_H

#include <stddef.h>

/*
 * JSON-lines logger: one object per line on stderr,
 *   {"ts":"2026-11-30T01:02:03.456Z","level":"info","program":"apply","msg":"...","topic":"dw.ce.account"}
 * Context is given as NULL-terminated key/value string pairs. Levels are checked before anything
 * is formatted. Secrets never reach the output: values registered with log_secret_add() are
 * replaced by "***" wherever they appear, fields whose key names a secret (password, secret,
 * token, authorization, apikey, dsn...) are masked whole, and the password in a URI's userinfo
 * (scheme://user:password@host) is masked. Thread-safe: each line is written with one write(2).
 */

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

#define LOG_LINE_MAX 8192 /* a longer line is truncated and marked "truncated":true */

/* Sets the program name shown on every line and the minimum level. Call once at start-up. */
void log_init(const char *program, enum log_level min_level);

/* Parses "debug", "info", "warn" or "error"; returns the level or -1. */
int log_level_parse(const char *text);

/* Returns non-zero when lines at `level` are written. */
int log_enabled(enum log_level level);

/* Registers a configured secret (copied) for the life of the process; later lines never contain
 * it. Values shorter than 4 bytes are ignored (too short to mask without mangling ordinary text).
 * Returns 0, or -1 when out of memory or when 64 permanent secrets are already held. */
int log_secret_add(const char *value);

/* Registers a short-lived secret such as an access token. The 16 newest are kept; older ones are
 * forgotten first (they have expired), never the permanent ones. Returns 0 or -1 when out of memory. */
int log_secret_add_rotating(const char *value);

/* Forgets every registered secret (tests). */
void log_secret_clear(void);

/* Writes one line; `...` is NULL-terminated key, value pairs (values may be NULL -> null). */
void log_write(enum log_level level, const char *msg, ...) __attribute__((sentinel));

/* Formats one line into buf without writing it (for tests). Returns the length written. */
size_t log_format(char *buf, size_t buflen, enum log_level level, const char *msg, ...)
	__attribute__((sentinel));

/* Masks secrets in `in` (registered values, URI passwords) into out; returns out. */
char *log_redact(const char *in, char *out, size_t outlen);

#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, __VA_ARGS__, NULL); } while (0)
#define log_info(...) do { if (log_enabled(LOG_INFO)) log_write(LOG_INFO, __VA_ARGS__, NULL); } while (0)
#define log_warn(...) do { if (log_enabled(LOG_WARN)) log_write(LOG_WARN, __VA_ARGS__, NULL); } while (0)
#define log_error(...) do { if (log_enabled(LOG_ERROR)) log_write(LOG_ERROR, __VA_ARGS__, NULL); } while (0)

#endif
