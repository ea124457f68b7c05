#include "oauth.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "log.h"

#define REFRESH_MARGIN_MIN_MS 60000LL
#define DESCRIPTION_MAX 400 /* identity platform error text quoted in errors */

struct oauth {
	pthread_mutex_t mu; /* guards everything below; held during a fetch (one fetch at a time) */
	struct oauth_config cfg;
	struct http_client *http;
	long long (*clock_ms)(void);
	char *form;  /* the request body; holds the secret */
	size_t form_len;
	char url_safe[512]; /* token_url with secret query values masked, for messages */
	char *token;
	long long refresh_at_ms; /* fetch again from here on */
	long long expires_at_ms; /* the token is unusable from here on */
	unsigned long fetches;
};

static long long monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

int oauth_config_load(const char *side, struct oauth_config *cfg, char *errbuf, size_t errlen)
{
	char name[64];
	int rc = OAUTH_ERR;

	memset(cfg, 0, sizeof(*cfg));
	if (!side || (strcmp(side, "CE") != 0 && strcmp(side, "FO") != 0)) {
		snprintf(errbuf, errlen, "oauth: side must be CE or FO");
		goto out;
	}
	snprintf(name, sizeof(name), "DW_%s_TOKEN_URL", side);
	if (config_str_required(name, &cfg->token_url, errbuf, errlen) != 0)
		goto out;
	if (strncmp(cfg->token_url, "https://", 8) != 0 && strncmp(cfg->token_url, "http://", 7) != 0) {
		snprintf(errbuf, errlen, "%s: must be an http:// or https:// URL", name);
		goto out;
	}
	snprintf(name, sizeof(name), "DW_%s_CLIENT_ID", side);
	if (config_str_required(name, &cfg->client_id, errbuf, errlen) != 0)
		goto out;
	snprintf(name, sizeof(name), "DW_%s_CLIENT_SECRET", side);
	if (config_secret(name, 1, &cfg->client_secret, errbuf, errlen) != 0)
		goto out;
	snprintf(name, sizeof(name), "DW_%s_SCOPE", side);
	if (config_str_required(name, &cfg->scope, errbuf, errlen) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		oauth_config_free(cfg);
	return rc;
}

void oauth_config_free(struct oauth_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->token_url);
	free(cfg->client_id);
	free_secret(cfg->client_secret);
	free(cfg->scope);
	memset(cfg, 0, sizeof(*cfg));
}

/* Appends "name=<form-encoded value>" (with a leading & unless first) to the growing body. */
static int form_add(char **body, size_t *len, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t need = strlen(name) + 2 + 3 * strlen(value) + 1;
	char *p = realloc(*body, *len + need);

	if (!p)
		return -1;
	*body = p;
	if (*len)
		p[(*len)++] = '&';
	memcpy(p + *len, name, strlen(name));
	*len += strlen(name);
	p[(*len)++] = '=';
	for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
		if (isalnum(*v) || *v == '-' || *v == '.' || *v == '_' || *v == '~') {
			p[(*len)++] = (char)*v;
		} else {
			p[(*len)++] = '%';
			p[(*len)++] = hex[*v >> 4];
			p[(*len)++] = hex[*v & 15];
		}
	}
	p[*len] = 0;
	return 0;
}

int oauth_new(const struct oauth_config *cfg, const struct oauth_opts *opts, struct oauth **out, char *errbuf,
	      size_t errlen)
{
	static const struct oauth_opts defaults = {0};
	struct oauth *o = NULL;
	struct http_opts hopts;
	int rc = OAUTH_ERR;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (!cfg || !cfg->token_url || !cfg->client_id || !cfg->client_secret || !cfg->scope || !*cfg->token_url ||
	    !*cfg->client_id || !*cfg->client_secret || !*cfg->scope) {
		snprintf(errbuf, errlen, "oauth: token_url, client_id, client_secret and scope are all required");
		goto out;
	}
	o = calloc(1, sizeof(*o));
	if (!o)
		goto oom;
	if (pthread_mutex_init(&o->mu, NULL) != 0) {
		free(o);
		o = NULL;
		snprintf(errbuf, errlen, "oauth: mutex init failed");
		goto out;
	}
	o->cfg.token_url = strdup(cfg->token_url);
	o->cfg.client_id = strdup(cfg->client_id);
	o->cfg.client_secret = strdup(cfg->client_secret);
	o->cfg.scope = strdup(cfg->scope);
	if (!o->cfg.token_url || !o->cfg.client_id || !o->cfg.client_secret || !o->cfg.scope)
		goto oom;
	if (log_secret_add(o->cfg.client_secret) != 0)
		goto oom;
	if (form_add(&o->form, &o->form_len, "grant_type", "client_credentials") != 0 ||
	    form_add(&o->form, &o->form_len, "client_id", o->cfg.client_id) != 0 ||
	    form_add(&o->form, &o->form_len, "client_secret", o->cfg.client_secret) != 0 ||
	    form_add(&o->form, &o->form_len, "scope", o->cfg.scope) != 0)
		goto oom;
	http_url_redact(o->cfg.token_url, o->url_safe, sizeof(o->url_safe));
	o->clock_ms = opts->clock_ms ? opts->clock_ms : monotonic_ms;
	hopts = opts->http;
	if (!hopts.body_max)
		hopts.body_max = OAUTH_RESPONSE_MAX;
	if (http_client_new(&hopts, &o->http, errbuf, errlen) != 0)
		goto out;
	*out = o;
	o = NULL;
	rc = 0;
	goto out;
oom:
	snprintf(errbuf, errlen, "oauth: out of memory");
out:
	oauth_free(o);
	return rc;
}

void oauth_free(struct oauth *o)
{
	if (!o)
		return;
	http_client_free(o->http);
	oauth_config_free(&o->cfg);
	free_secret(o->form);
	free_secret(o->token);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

/* Copies src into out replacing every occurrence of the secret (if any) with "***" and control
 * characters with spaces (the text comes from outside and ends up in one log line). */
static void scrub(const char *src, const char *secret, char *out, size_t outlen)
{
	size_t pos = 0, sl = secret ? strlen(secret) : 0;

	if (outlen == 0)
		return;
	while (*src && pos + 1 < outlen) {
		if (sl && strncmp(src, secret, sl) == 0) {
			for (size_t k = 0; k < 3 && pos + 1 < outlen; k++)
				out[pos++] = '*';
			src += sl;
		} else {
			unsigned char c = (unsigned char)*src++;
			out[pos++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
		}
	}
	out[pos] = 0;
}

/* A JSON string member, or NULL. */
static const char *json_str(const cJSON *obj, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* Fetches a new token; called with o->mu held. */
static int fetch(struct oauth *o, char *errbuf, size_t errlen)
{
	const struct http_header hdrs[] = {{"Content-Type", "application/x-www-form-urlencoded"},
					   {"Accept", "application/json"}};
	struct http_request req = {.method = "POST", .url = o->cfg.token_url, .headers = hdrs, .nheaders = 2,
				   .body = o->form, .body_len = o->form_len};
	struct http_response resp = {0};
	cJSON *json = NULL;
	char herr[512], text[DESCRIPTION_MAX + 128];
	int rc = OAUTH_ERR, hrc;

	o->fetches++;
	long long started = o->clock_ms();
	hrc = http_do(o->http, &req, &resp, herr, sizeof(herr));
	if (hrc != 0) {
		/* http_do's message names method and URL (secret query values masked), never the body. */
		snprintf(errbuf, errlen, "token endpoint: %s", herr);
		rc = hrc == HTTP_ERR_TRANSPORT || hrc == HTTP_ERR_TIMEOUT ? OAUTH_ERR_RETRY : OAUTH_ERR;
		goto out;
	}
	json = cJSON_ParseWithLength(resp.body, resp.body_len);
	if (resp.status != 200) {
		const char *e = json ? json_str(json, "error") : NULL;
		const char *d = json ? json_str(json, "error_description") : NULL;
		if (e || d) {
			char quoted[DESCRIPTION_MAX + 64];
			snprintf(quoted, sizeof(quoted), "%.64s%s%.*s", e ? e : "", e && d ? ": " : "",
				 DESCRIPTION_MAX, d ? d : "");
			scrub(quoted, o->cfg.client_secret, text, sizeof(text));
		} else {
			snprintf(text, sizeof(text), "no OAuth error in the response body");
		}
		snprintf(errbuf, errlen, "token endpoint %s: HTTP %ld %s", o->url_safe, resp.status, text);
		rc = http_status_retryable(resp.status) ? OAUTH_ERR_RETRY : OAUTH_ERR;
		goto out;
	}
	if (!cJSON_IsObject(json)) {
		snprintf(errbuf, errlen, "token endpoint %s: HTTP 200 but the body is not a JSON object", o->url_safe);
		goto out;
	}
	const char *type = json_str(json, "token_type");
	const char *tok = json_str(json, "access_token");
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(json, "expires_in");
	double expires_in = 3600; /* RFC 6749 makes expires_in optional; identity platform always sends it */
	if (type && strcasecmp(type, "Bearer") != 0) {
		snprintf(errbuf, errlen, "token endpoint %s: token_type is \"%.32s\", expected Bearer", o->url_safe,
			 type);
		goto out;
	}
	if (!tok || !*tok) {
		snprintf(errbuf, errlen, "token endpoint %s: no access_token in the response", o->url_safe);
		goto out;
	}
	if (strlen(tok) > OAUTH_TOKEN_MAX) {
		snprintf(errbuf, errlen, "token endpoint %s: access_token longer than %zu bytes", o->url_safe,
			 OAUTH_TOKEN_MAX);
		goto out;
	}
	for (const unsigned char *p = (const unsigned char *)tok; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f) {
			snprintf(errbuf, errlen, "token endpoint %s: access_token holds characters not allowed in a "
						 "header",
				 o->url_safe);
			goto out;
		}
	}
	if (cJSON_IsNumber(exp)) {
		expires_in = exp->valuedouble;
	} else if (cJSON_IsString(exp)) { /* the v1 endpoint sends "3599" */
		char *end;
		expires_in = strtod(exp->valuestring, &end);
		if (end == exp->valuestring || *end)
			expires_in = -1;
	} else if (exp) {
		expires_in = -1;
	}
	if (!(expires_in > 0) || expires_in > 366.0 * 86400 || !isfinite(expires_in)) {
		snprintf(errbuf, errlen, "token endpoint %s: expires_in is not a positive number of seconds",
			 o->url_safe);
		goto out;
	}
	char *copy = strdup(tok);
	if (!copy || log_secret_add(copy) != 0) {
		free_secret(copy);
		snprintf(errbuf, errlen, "oauth: out of memory");
		goto out;
	}
	/* The logger forgets its oldest secrets when it holds many (each refresh adds one): register the
	 * client secret again so token rotation never pushes it out. */
	if (log_secret_add(o->cfg.client_secret) != 0) {
		free_secret(copy);
		snprintf(errbuf, errlen, "oauth: out of memory");
		goto out;
	}
	free_secret(o->token);
	o->token = copy;
	long long life = (long long)(expires_in * 1000);
	long long margin = life / 10 > REFRESH_MARGIN_MIN_MS ? life / 10 : REFRESH_MARGIN_MIN_MS;
	/* Lifetime counts from when the request was sent: the response may have been slow. */
	o->expires_at_ms = started + life;
	o->refresh_at_ms = started + life - margin;
	char secs[32];
	snprintf(secs, sizeof(secs), "%.0f", expires_in);
	log_info("oauth: token fetched", "endpoint", o->url_safe, "expires_in_s", secs);
	rc = 0;
out:
	cJSON_Delete(json);
	if (resp.body)
		explicit_bzero(resp.body, resp.body_len);
	http_response_free(&resp);
	return rc;
}

int oauth_token(struct oauth *o, char **token, char *errbuf, size_t errlen)
{
	int rc = 0;

	*token = NULL;
	if (!o) {
		snprintf(errbuf, errlen, "oauth: no token cache");
		return OAUTH_ERR;
	}
	pthread_mutex_lock(&o->mu);
	long long now = o->clock_ms();
	if (!o->token || now >= o->refresh_at_ms) {
		rc = fetch(o, errbuf, errlen);
		if (rc != 0 && o->token && o->clock_ms() < o->expires_at_ms) {
			/* The refresh failed but the cached token is still valid: use it, try again next call. */
			log_warn("oauth: token refresh failed, using the cached token until it expires", "reason",
				 errbuf);
			rc = 0;
		}
	}
	if (rc == 0) {
		*token = strdup(o->token);
		if (!*token) {
			snprintf(errbuf, errlen, "oauth: out of memory");
			rc = OAUTH_ERR;
		}
	}
	pthread_mutex_unlock(&o->mu);
	return rc;
}

void oauth_invalidate(struct oauth *o, const char *token)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	if (o->token && (!token || strcmp(token, o->token) == 0)) {
		free_secret(o->token);
		o->token = NULL;
		o->refresh_at_ms = o->expires_at_ms = 0;
	}
	pthread_mutex_unlock(&o->mu);
}

unsigned long oauth_fetch_count(struct oauth *o)
{
	unsigned long n;

	if (!o)
		return 0;
	pthread_mutex_lock(&o->mu);
	n = o->fetches;
	pthread_mutex_unlock(&o->mu);
	return n;
}
