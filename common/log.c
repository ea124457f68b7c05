#include "log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define SECRETS_MAX 64  /* configured secrets, kept for the life of the process */
#define ROTATING_MAX 16 /* short-lived secrets (tokens); the oldest are forgotten first */

static char program_name[64] = "dualwrite";
static int min_level = LOG_INFO;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
/* secrets[0..npermanent) are permanent; secrets[npermanent..nsecrets) rotate. */
static char *secrets[SECRETS_MAX + ROTATING_MAX];
static size_t npermanent;
static size_t nsecrets;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* Field names whose values are masked whole. Compared case-insensitively as substrings. */
static const char *const secret_keys[] = { "password", "passwd", "secret", "token", "authorization",
					   "apikey", "api_key", "dsn", "credential", "cookie" };

void log_init(const char *program, enum log_level level)
{
	snprintf(program_name, sizeof(program_name), "%s", program ? program : "dualwrite");
	min_level = level;
}

int log_level_parse(const char *text)
{
	if (!text)
		return -1;
	for (int i = 0; i < 4; i++)
		if (strcasecmp(text, level_names[i]) == 0)
			return i;
	if (strcasecmp(text, "warning") == 0)
		return LOG_WARN;
	return -1;
}

int log_enabled(enum log_level level)
{
	return (int)level >= min_level;
}

static int secret_known(const char *value)
{
	for (size_t i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], value) == 0)
			return 1;
	return 0;
}

int log_secret_add(const char *value)
{
	if (!value || strlen(value) < 4)
		return 0;
	int rc = 0;
	pthread_mutex_lock(&secrets_lock);
	if (secret_known(value))
		goto out;
	if (npermanent == SECRETS_MAX) {
		rc = -1;
		goto out;
	}
	char *copy = strdup(value);
	if (!copy) {
		rc = -1;
		goto out;
	}
	/* Keep permanent secrets in front of the rotating ones. */
	memmove(secrets + npermanent + 1, secrets + npermanent, (nsecrets - npermanent) * sizeof(*secrets));
	secrets[npermanent++] = copy;
	nsecrets++;
out:
	pthread_mutex_unlock(&secrets_lock);
	return rc;
}

int log_secret_add_rotating(const char *value)
{
	if (!value || strlen(value) < 4)
		return 0;
	int rc = 0;
	pthread_mutex_lock(&secrets_lock);
	if (secret_known(value))
		goto out;
	char *copy = strdup(value);
	if (!copy) {
		rc = -1;
		goto out;
	}
	if (nsecrets - npermanent == ROTATING_MAX) {
		free(secrets[npermanent]);
		memmove(secrets + npermanent, secrets + npermanent + 1, (ROTATING_MAX - 1) * sizeof(*secrets));
		nsecrets--;
	}
	secrets[nsecrets++] = copy;
out:
	pthread_mutex_unlock(&secrets_lock);
	return rc;
}

void log_secret_clear(void)
{
	pthread_mutex_lock(&secrets_lock);
	for (size_t i = 0; i < nsecrets; i++)
		free(secrets[i]);
	nsecrets = 0;
	npermanent = 0;
	pthread_mutex_unlock(&secrets_lock);
}

/* Masks "scheme://user:password@" userinfo passwords in place. */
static void mask_uri_passwords(char *s)
{
	for (char *p = strstr(s, "://"); p; p = strstr(p, "://")) {
		char *start = p + 3;
		char *end = start + strcspn(start, "/?#@ \t\"'");
		if (*end != '@') {
			p = start;
			continue;
		}
		char *colon = memchr(start, ':', (size_t)(end - start));
		if (colon && end - colon > 1) {
			size_t pwlen = (size_t)(end - colon - 1);
			if (pwlen >= 3) {
				/* Shrinks or keeps the length, so it fits where the password was. */
				memcpy(colon + 1, "***", 3);
				memmove(colon + 4, end, strlen(end) + 1);
				p = colon + 4;
			} else {
				memset(colon + 1, '*', pwlen);
				p = end;
			}
		} else {
			p = end;
		}
	}
}

char *log_redact(const char *in, char *out, size_t outlen)
{
	if (outlen == 0)
		return out;
	size_t o = 0;
	pthread_mutex_lock(&secrets_lock);
	for (const char *p = in; *p && o + 1 < outlen;) {
		size_t hit = 0;
		for (size_t i = 0; i < nsecrets; i++) {
			size_t n = strlen(secrets[i]);
			if (strncmp(p, secrets[i], n) == 0 && n > hit)
				hit = n;
		}
		if (hit) {
			for (const char *m = "***"; *m && o + 1 < outlen; m++)
				out[o++] = *m;
			p += hit;
		} else {
			out[o++] = *p++;
		}
	}
	pthread_mutex_unlock(&secrets_lock);
	out[o] = '\0';
	mask_uri_passwords(out);
	return out;
}

static int key_is_secret(const char *key)
{
	char lower[64];
	size_t i;
	for (i = 0; key[i] && i + 1 < sizeof(lower); i++)
		lower[i] = (char)tolower((unsigned char)key[i]);
	lower[i] = '\0';
	for (size_t k = 0; k < sizeof(secret_keys) / sizeof(secret_keys[0]); k++)
		if (strstr(lower, secret_keys[k]))
			return 1;
	return 0;
}

struct linebuf {
	char *buf;
	size_t cap;
	size_t len;
	int truncated;
};

static void put(struct linebuf *lb, const char *s, size_t n)
{
	/* Keep room for the closing `,"truncated":true}\n`. */
	const size_t reserve = 24;
	if (lb->len + n + reserve > lb->cap) {
		lb->truncated = 1;
		n = lb->cap > lb->len + reserve ? lb->cap - lb->len - reserve : 0;
	}
	memcpy(lb->buf + lb->len, s, n);
	lb->len += n;
}

static void put_str(struct linebuf *lb, const char *s)
{
	put(lb, s, strlen(s));
}

/* Appends `s` as a JSON string literal, redacted. When the line is full the value is cut at a
 * character boundary (never inside an escape or a UTF-8 sequence), the quote is still closed and the
 * line is marked truncated. */
static void put_json_string(struct linebuf *lb, const char *s)
{
	const size_t reserve = 24;
	char red[LOG_LINE_MAX];
	log_redact(s, red, sizeof(red));
	if (lb->truncated)
		return;
	put(lb, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)red; *p; p++) {
		char esc[8];
		const char *out = (const char *)p;
		size_t n = 1;
		switch (*p) {
		case '"': out = "\\\""; n = 2; break;
		case '\\': out = "\\\\"; n = 2; break;
		case '\n': out = "\\n"; n = 2; break;
		case '\r': out = "\\r"; n = 2; break;
		case '\t': out = "\\t"; n = 2; break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				out = esc;
				n = 6;
			} else if (*p >= 0xc0) {
				/* A UTF-8 lead byte: keep the whole sequence together. */
				n = 1;
				while ((p[n] & 0xc0) == 0x80 && n < 4)
					n++;
			}
		}
		if (lb->len + n + 1 + reserve > lb->cap) {
			lb->truncated = 1;
			break;
		}
		memcpy(lb->buf + lb->len, out, n);
		lb->len += n;
		p += (out == (const char *)p) ? n - 1 : 0;
	}
	/* put() keeps room for the quote. */
	lb->buf[lb->len++] = '"';
}

static size_t format_line(char *buf, size_t buflen, enum log_level level, const char *msg, va_list ap)
{
	struct linebuf lb = { buf, buflen, 0, 0 };
	if (buflen < 256)
		return 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char head[128];
	int n = snprintf(head, sizeof(head), "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, level_names[level < 0 || level > 3 ? 3 : level]);
	put(&lb, head, (size_t)n);
	put_str(&lb, "\"program\":");
	put_json_string(&lb, program_name);
	put_str(&lb, ",\"msg\":");
	put_json_string(&lb, msg ? msg : "");
	for (;;) {
		const char *key = va_arg(ap, const char *);
		if (!key)
			break;
		const char *val = va_arg(ap, const char *);
		if (lb.truncated)
			continue;
		size_t mark = lb.len;
		put_str(&lb, ",");
		put_json_string(&lb, key);
		put_str(&lb, ":");
		if (lb.truncated) {
			/* No room for this field's value: drop the field whole. */
			lb.len = mark;
			continue;
		}
		if (!val)
			put_str(&lb, "null");
		else if (key_is_secret(key))
			put_str(&lb, "\"***\"");
		else
			put_json_string(&lb, val);
	}
	if (lb.truncated) {
		/* put() kept room for this tail. */
		const char *tail = ",\"truncated\":true}\n";
		memcpy(lb.buf + lb.len, tail, strlen(tail));
		lb.len += strlen(tail);
	} else {
		put_str(&lb, "}\n");
	}
	buf[lb.len < buflen ? lb.len : buflen - 1] = '\0';
	return lb.len;
}

size_t log_format(char *buf, size_t buflen, enum log_level level, const char *msg, ...)
{
	va_list ap;
	va_start(ap, msg);
	size_t n = format_line(buf, buflen, level, msg, ap);
	va_end(ap);
	return n;
}

void log_write(enum log_level level, const char *msg, ...)
{
	if (!log_enabled(level))
		return;
	char buf[LOG_LINE_MAX];
	va_list ap;
	va_start(ap, msg);
	size_t n = format_line(buf, sizeof(buf) - 1, level, msg, ap);
	va_end(ap);
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
}
