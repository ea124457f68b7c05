#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

static const char *env_value(const char *name)
{
	const char *v = getenv(name);
	return (v && *v) ? v : NULL;
}

int config_str(const char *name, const char *def, char **out, char *errbuf, size_t errlen)
{
	const char *v = env_value(name);
	*out = NULL;
	if (!v)
		v = def;
	if (!v)
		return 0;
	*out = strdup(v);
	if (!*out) {
		snprintf(errbuf, errlen, "%s: out of memory", name);
		return -1;
	}
	return 0;
}

int config_str_required(const char *name, char **out, char *errbuf, size_t errlen)
{
	if (config_str(name, NULL, out, errbuf, errlen) != 0)
		return -1;
	if (!*out) {
		snprintf(errbuf, errlen, "%s: is required but not set", name);
		return -1;
	}
	return 0;
}

/* Reads a whole secret file, capped at CONFIG_SECRET_MAX, one trailing newline (LF or CRLF) stripped. */
static int read_secret_file(const char *var, const char *path, char **out, char *errbuf, size_t errlen)
{
	int rc = -1;
	char *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(errbuf, errlen, "%s: cannot open '%s': %s", var, path, strerror(errno));
		return -1;
	}
	buf = malloc(CONFIG_SECRET_MAX + 1);
	if (!buf) {
		snprintf(errbuf, errlen, "%s: out of memory", var);
		goto out;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, CONFIG_SECRET_MAX + 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(errbuf, errlen, "%s: cannot read '%s': %s", var, path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONFIG_SECRET_MAX) {
			snprintf(errbuf, errlen, "%s: '%s' is larger than %d bytes", var, path, CONFIG_SECRET_MAX);
			goto out;
		}
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	if (memchr(buf, '\0', len)) {
		snprintf(errbuf, errlen, "%s: '%s' contains a NUL byte", var, path);
		goto out;
	}
	if (len == 0) {
		snprintf(errbuf, errlen, "%s: '%s' is empty", var, path);
		goto out;
	}
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

int config_secret(const char *name, int required, char **out, char *errbuf, size_t errlen)
{
	char file_var[256];
	*out = NULL;
	if ((size_t)snprintf(file_var, sizeof(file_var), "%s_FILE", name) >= sizeof(file_var)) {
		snprintf(errbuf, errlen, "%s: variable name too long", name);
		return -1;
	}
	const char *direct = env_value(name);
	const char *path = env_value(file_var);
	if (direct && path) {
		snprintf(errbuf, errlen, "%s: set either %s or %s, not both", name, name, file_var);
		return -1;
	}
	if (path) {
		if (read_secret_file(file_var, path, out, errbuf, errlen) != 0)
			return -1;
	} else if (direct) {
		*out = strdup(direct);
		if (!*out) {
			snprintf(errbuf, errlen, "%s: out of memory", name);
			return -1;
		}
	} else {
		if (required) {
			snprintf(errbuf, errlen, "%s: is required but neither %s nor %s is set", name, name,
				 file_var);
			return -1;
		}
		return 0;
	}
	if (log_secret_add(*out) != 0) {
		free(*out);
		*out = NULL;
		snprintf(errbuf, errlen, "%s: out of memory", name);
		return -1;
	}
	return 0;
}

int config_long(const char *name, long def, long min, long max, long *out, char *errbuf, size_t errlen)
{
	const char *v = env_value(name);
	if (!v) {
		*out = def;
		return 0;
	}
	char *end = NULL;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0') {
		snprintf(errbuf, errlen, "%s: '%s' is not a whole number", name, v);
		return -1;
	}
	if (n < min || n > max) {
		snprintf(errbuf, errlen, "%s: %ld is out of range [%ld, %ld]", name, n, min, max);
		return -1;
	}
	*out = n;
	return 0;
}

int config_bool(const char *name, int def, int *out, char *errbuf, size_t errlen)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	const char *v = env_value(name);
	if (!v) {
		*out = def;
		return 0;
	}
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	snprintf(errbuf, errlen, "%s: '%s' is not a boolean (use true or false)", name, v);
	return -1;
}

int config_parse_duration_ms(const char *what, const char *text, long long *out, char *errbuf, size_t errlen)
{
	char *end = NULL;
	errno = 0;
	long long n = strtoll(text, &end, 10);
	if (errno != 0 || end == text || n < 0) {
		snprintf(errbuf, errlen, "%s: '%s' is not a duration (e.g. 500ms, 30s, 5m, 7d)", what, text);
		return -1;
	}
	long long mult;
	if (*end == '\0' || strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60LL * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600LL * 1000;
	else if (strcmp(end, "d") == 0)
		mult = 86400LL * 1000;
	else {
		snprintf(errbuf, errlen, "%s: '%s' has an unknown unit (use ms, s, m, h or d)", what, text);
		return -1;
	}
	if (n > LLONG_MAX / mult) {
		snprintf(errbuf, errlen, "%s: '%s' is too large", what, text);
		return -1;
	}
	*out = n * mult;
	return 0;
}

int config_duration_ms(const char *name, long long def_ms, long long min_ms, long long max_ms, long long *out,
		       char *errbuf, size_t errlen)
{
	const char *v = env_value(name);
	if (!v) {
		*out = def_ms;
		return 0;
	}
	long long ms;
	if (config_parse_duration_ms(name, v, &ms, errbuf, errlen) != 0)
		return -1;
	if (ms < min_ms || ms > max_ms) {
		snprintf(errbuf, errlen, "%s: %lld ms is out of range [%lld, %lld] ms", name, ms, min_ms, max_ms);
		return -1;
	}
	*out = ms;
	return 0;
}

static int valid_prefix(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n > 64)
		return 0;
	for (; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
			return 0;
	return 1;
}

static int is_secret_name(const char *name)
{
	return strstr(name, "PASSWORD") || strstr(name, "SECRET") || strstr(name, "KEY");
}

/* DW_KAFKA_<PROP> (other than BROKERS) -> librdkafka property; NAME_FILE variants read the file. */
static int load_kafka_props(struct config_common *cfg, char *errbuf, size_t errlen)
{
	static const char pfx[] = "DW_KAFKA_";
	for (char **e = environ; *e; e++) {
		if (strncmp(*e, pfx, sizeof(pfx) - 1) != 0)
			continue;
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		char var[256];
		size_t vlen = (size_t)(eq - *e);
		if (vlen >= sizeof(var)) {
			snprintf(errbuf, errlen, "%.64s...: variable name too long", *e);
			return -1;
		}
		memcpy(var, *e, vlen);
		var[vlen] = '\0';
		if (strcmp(var, "DW_KAFKA_BROKERS") == 0 || strcmp(var, "DW_KAFKA_BROKERS_FILE") == 0)
			continue;
		int from_file = vlen > 5 && strcmp(var + vlen - 5, "_FILE") == 0;
		char base[256];
		snprintf(base, sizeof(base), "%.*s", (int)(from_file ? vlen - 5 : vlen), var);
		if (!from_file) {
			char fv[300];
			snprintf(fv, sizeof(fv), "%s_FILE", base);
			if (env_value(fv) && env_value(base)) {
				snprintf(errbuf, errlen, "%s: set either %s or %s, not both", base, base, fv);
				return -1;
			}
		}
		if (base[sizeof(pfx) - 1] == '\0') {
			snprintf(errbuf, errlen, "%s: names no librdkafka property", var);
			return -1;
		}
		char *value = NULL;
		if (from_file || is_secret_name(base)) {
			if (config_secret(base, 1, &value, errbuf, errlen) != 0)
				return -1;
		} else if (config_str(base, NULL, &value, errbuf, errlen) != 0) {
			return -1;
		}
		if (!value)
			continue;
		char *key = strdup(base + sizeof(pfx) - 1);
		struct config_kv *grown = realloc(cfg->kafka_props, (cfg->kafka_props_len + 1) * sizeof(*grown));
		if (!key || !grown) {
			free(key);
			free(value);
			if (grown)
				cfg->kafka_props = grown;
			snprintf(errbuf, errlen, "%s: out of memory", var);
			return -1;
		}
		cfg->kafka_props = grown;
		for (char *k = key; *k; k++)
			*k = *k == '_' ? '.' : (char)tolower((unsigned char)*k);
		cfg->kafka_props[cfg->kafka_props_len].key = key;
		cfg->kafka_props[cfg->kafka_props_len].value = value;
		cfg->kafka_props_len++;
	}
	return 0;
}

/* Registers the password inside a libpq DSN (URI userinfo or password=...) as a log secret, so
 * that an error message quoting only the password is masked too. */
static int register_dsn_password(const char *dsn)
{
	char pw[512];
	const char *p = NULL;
	size_t n = 0;
	const char *scheme = strstr(dsn, "://");
	if (scheme) {
		const char *start = scheme + 3;
		const char *at = start + strcspn(start, "/?#@");
		const char *colon = memchr(start, ':', (size_t)(at - start));
		if (*at == '@' && colon) {
			p = colon + 1;
			n = (size_t)(at - p);
		}
	} else if ((p = strstr(dsn, "password="))) {
		p += 9;
		if (*p == '\'') {
			p++;
			n = strcspn(p, "'");
		} else {
			n = strcspn(p, " \t");
		}
	}
	if (!p || n == 0 || n >= sizeof(pw))
		return 0;
	memcpy(pw, p, n);
	pw[n] = '\0';
	return log_secret_add(pw);
}

int config_common_load(struct config_common *cfg, char *errbuf, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	char *level = NULL;
	if (config_str("DW_KAFKA_BROKERS", NULL, &cfg->kafka_brokers, errbuf, errlen) != 0 ||
	    config_secret("DW_PG_DSN", 0, &cfg->pg_dsn, errbuf, errlen) != 0 ||
	    config_str("DW_TOPIC_PREFIX", "dw", &cfg->topic_prefix, errbuf, errlen) != 0 ||
	    config_str("DW_LOG_LEVEL", "info", &level, errbuf, errlen) != 0)
		goto fail;
	if (cfg->pg_dsn && register_dsn_password(cfg->pg_dsn) != 0) {
		snprintf(errbuf, errlen, "DW_PG_DSN: out of memory");
		goto fail;
	}
	if (!valid_prefix(cfg->topic_prefix)) {
		snprintf(errbuf, errlen, "DW_TOPIC_PREFIX: '%s' must be 1-64 characters of [a-zA-Z0-9._-]",
			 cfg->topic_prefix);
		goto fail;
	}
	cfg->log_level = log_level_parse(level);
	if (cfg->log_level < 0) {
		snprintf(errbuf, errlen, "DW_LOG_LEVEL: '%s' is not one of debug, info, warn, error", level);
		goto fail;
	}
	free(level);
	level = NULL;
	if (load_kafka_props(cfg, errbuf, errlen) != 0)
		goto fail;
	return 0;
fail:
	free(level);
	config_common_free(cfg);
	return -1;
}

void config_common_free(struct config_common *cfg)
{
	if (!cfg)
		return;
	free(cfg->kafka_brokers);
	free(cfg->pg_dsn);
	free(cfg->topic_prefix);
	for (size_t i = 0; i < cfg->kafka_props_len; i++) {
		free(cfg->kafka_props[i].key);
		free(cfg->kafka_props[i].value);
	}
	free(cfg->kafka_props);
	memset(cfg, 0, sizeof(*cfg));
}
