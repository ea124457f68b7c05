#ifndef DW_CONFIG_H
#define DW_CONFIG_H

#include <stddef.h>

/*
 * Configuration from environment variables (12-factor). Every reader names the variable and the
 * reason in errbuf when a value is invalid, so a program fails at start with a message an operator
 * can act on. Secrets may come from a file: NAME_FILE holds a path whose contents (one trailing
 * newline stripped) are the value. Setting both NAME and NAME_FILE is an error.
 *
 * All functions return 0 on success or -1 with errbuf filled. Strings returned through `out` are
 * new allocations the caller frees with free().
 */

#define CONFIG_SECRET_MAX (64 * 1024) /* cap on a secret file's size */

/* NAME as a string; `def` (may be NULL) when unset or empty. *out is NULL only when def is NULL
 * and the variable is unset. */
int config_str(const char *name, const char *def, char **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Like config_str, but fails when the variable is unset or empty. */
int config_str_required(const char *name, char **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* NAME or NAME_FILE (not both). Registers the value with log_secret_add() so it never reaches a
 * log line. `required` makes an unset secret an error; otherwise *out is NULL when unset. */
int config_secret(const char *name, int required, char **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* A decimal integer in [min, max]; `def` when unset or empty. */
int config_long(const char *name, long def, long min, long max, long *out, char *errbuf,
		size_t errlen) __attribute__((warn_unused_result));

/* true/false/1/0/yes/no/on/off (any case); `def` when unset or empty. */
int config_bool(const char *name, int def, int *out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* A duration in milliseconds: a number with an optional unit ms, s, m, h or d ("500ms", "30s",
 * "7d"); a bare number is milliseconds. `def_ms` when unset or empty; result in [min_ms, max_ms]. */
int config_duration_ms(const char *name, long long def_ms, long long min_ms, long long max_ms,
		       long long *out, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Parses a duration string as config_duration_ms does; `what` names it in errors. */
int config_parse_duration_ms(const char *what, const char *text, long long *out, char *errbuf,
			     size_t errlen) __attribute__((warn_unused_result));

/* One librdkafka property taken from the environment. */
struct config_kv {
	char *key;
	char *value;
};

/*
 * Settings every program shares. Built once by config_common_load() and passed down as const.
 *   DW_KAFKA_BROKERS   bootstrap servers (NULL when unset; the Kafka helpers then fail with its name)
 *   DW_PG_DSN[_FILE]   libpq connection string or URI (secret; NULL when unset, as above)
 *   DW_TOPIC_PREFIX    topic prefix, default "dw" ([a-zA-Z0-9._-]{1,64})
 *   DW_LOG_LEVEL       debug|info|warn|error, default info
 *   DW_KAFKA_<PROP>[_FILE]  any other librdkafka property, e.g. DW_KAFKA_SECURITY_PROTOCOL=ssl
 *                      becomes security.protocol=ssl (lower case, '_' -> '.'); values whose name
 *                      contains PASSWORD, SECRET or KEY are treated as secrets
 */
struct config_common {
	char *kafka_brokers;
	char *pg_dsn;
	char *topic_prefix;
	int log_level;
	struct config_kv *kafka_props;
	size_t kafka_props_len;
};

/* Loads the common settings from the environment. On failure everything already loaded is freed. */
int config_common_load(struct config_common *cfg, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees what config_common_load allocated; NULL-safe; leaves *cfg zeroed. */
void config_common_free(struct config_common *cfg);

#endif
