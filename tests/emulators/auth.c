#include "auth.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "b64.h"

#define AUTH_BUCKETS 1024
#define AUTH_MAX_TOKENS 100000
#define AUTH_TOKEN_HEX 64

struct token {
	char value[AUTH_TOKEN_HEX + 1];
	long long expires_ms;
	struct token *next;
};

struct auth {
	pthread_mutex_t mu;
	char *client_id;
	char *client_secret;
	long ttl_s;
	struct token *buckets[AUTH_BUCKETS];
	size_t count;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned hash_token(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % AUTH_BUCKETS;
}

struct auth *auth_new(const char *client_id, const char *client_secret, long ttl_s)
{
	struct auth *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	pthread_mutex_init(&a->mu, NULL);
	a->client_id = strdup(client_id);
	a->client_secret = strdup(client_secret);
	a->ttl_s = ttl_s > 0 ? ttl_s : 3600;
	if (!a->client_id || !a->client_secret) {
		auth_free(a);
		return NULL;
	}
	return a;
}

static void drop_all(struct auth *a)
{
	for (size_t i = 0; i < AUTH_BUCKETS; i++) {
		struct token *t = a->buckets[i];
		while (t) {
			struct token *n = t->next;
			free(t);
			t = n;
		}
		a->buckets[i] = NULL;
	}
	a->count = 0;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	drop_all(a);
	pthread_mutex_destroy(&a->mu);
	free(a->client_id);
	free(a->client_secret);
	free(a);
}

void auth_set_ttl(struct auth *a, long ttl_s)
{
	pthread_mutex_lock(&a->mu);
	a->ttl_s = ttl_s > 0 ? ttl_s : 1;
	pthread_mutex_unlock(&a->mu);
}

void auth_revoke_all(struct auth *a)
{
	pthread_mutex_lock(&a->mu);
	drop_all(a);
	pthread_mutex_unlock(&a->mu);
}

int auth_is_token_path(const char *path)
{
	/* "/" tenant "/oauth2/v2.0/token", tenant non-empty without '/' */
	static const char suffix[] = "/oauth2/v2.0/token";
	if (path[0] != '/')
		return 0;
	const char *slash = strchr(path + 1, '/');
	if (!slash || slash == path + 1)
		return 0;
	return strcmp(slash, suffix) == 0;
}

static void purge_expired(struct auth *a, long long now)
{
	for (size_t i = 0; i < AUTH_BUCKETS; i++) {
		struct token **pp = &a->buckets[i];
		while (*pp) {
			if ((*pp)->expires_ms <= now) {
				struct token *dead = *pp;
				*pp = dead->next;
				free(dead);
				a->count--;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
}

static void identity_error(struct server_response *resp, int status, const char *error, int code,
			   const char *description)
{
	char desc[600];
	snprintf(desc, sizeof(desc), "AADSTS%d: %s Trace ID: 00000000-0000-0000-0000-000000000000", code,
		 description);
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "error", error);
	cJSON_AddStringToObject(root, "error_description", desc);
	cJSON *codes = cJSON_AddArrayToObject(root, "error_codes");
	cJSON_AddItemToArray(codes, cJSON_CreateNumber(code));
	char ts[32];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%SZ", &tm);
	cJSON_AddStringToObject(root, "timestamp", ts);
	cJSON_AddStringToObject(root, "trace_id", "00000000-0000-0000-0000-000000000000");
	cJSON_AddStringToObject(root, "correlation_id", "00000000-0000-0000-0000-000000000000");
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text) {
		resp->status = 500;
		return;
	}
	server_response_take_body(resp, status, "application/json; charset=utf-8", text, strlen(text));
}

/* Value of a form field from an application/x-www-form-urlencoded body; new string or NULL. */
static char *form_field(const struct server_request *req, const char *name)
{
	if (!req->body || req->body_len == 0)
		return NULL;
	char *copy = strndup(req->body, req->body_len);
	if (!copy)
		return NULL;
	struct server_request fake = {.query = copy};
	char *v = server_request_query_param(&fake, name);
	free(copy);
	return v;
}

/* client_id and client_secret from "Authorization: Basic base64(id:secret)" (the identity platform
 * accepts either form). New strings in *id and *secret, or both left NULL. */
static void basic_credentials(const struct server_request *req, char **id, char **secret)
{
	const char *h = server_request_header(req, "Authorization");
	if (!h || strncasecmp(h, "Basic ", 6) != 0)
		return;
	const char *in = h + 6;
	size_t n = strlen(in);
	if (n == 0 || n > 4096)
		return;
	char *out = malloc(n + 1);
	if (!out)
		return;
	long o = b64_decode(in, n, out, n + 1);
	if (o < 0) {
		free(out);
		return;
	}
	char *colon = strchr(out, ':');
	if (colon && strlen(out) == (size_t)o) {
		*colon = '\0';
		*id = strdup(out);
		*secret = strdup(colon + 1);
	}
	free(out);
}

static int consttime_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = (unsigned char)(la != lb);
	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

void auth_handle_token(struct auth *a, const struct server_request *req, struct server_response *resp)
{
	char *grant = NULL, *cid = NULL, *secret = NULL, *scope = NULL;
	if (strcmp(req->method, "POST") != 0) {
		identity_error(resp, 400, "invalid_request", 900561,
			       "The endpoint only accepts POST requests.");
		goto out;
	}
	const char *ct = server_request_header(req, "Content-Type");
	if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
		identity_error(resp, 400, "invalid_request", 900144,
			       "The request body must contain the following parameter: 'grant_type'.");
		goto out;
	}
	grant = form_field(req, "grant_type");
	cid = form_field(req, "client_id");
	secret = form_field(req, "client_secret");
	scope = form_field(req, "scope");
	if (!cid && !secret)
		basic_credentials(req, &cid, &secret);
	if (!grant || !*grant) {
		identity_error(resp, 400, "invalid_request", 900144,
			       "The request body must contain the following parameter: 'grant_type'.");
		goto out;
	}
	if (strcmp(grant, "client_credentials") != 0) {
		identity_error(resp, 400, "unsupported_grant_type", 70003,
			       "The app requested an unsupported grant type.");
		goto out;
	}
	if (!cid || !*cid) {
		identity_error(resp, 400, "invalid_request", 900144,
			       "The request body must contain the following parameter: 'client_id'.");
		goto out;
	}
	if (!scope || !*scope) {
		identity_error(resp, 400, "invalid_request", 90014, "The required field 'scope' is missing.");
		goto out;
	}
	size_t sl = strlen(scope);
	if (sl < 9 || strcmp(scope + sl - 9, "/.default") != 0) {
		identity_error(resp, 400, "invalid_scope", 1002012,
			       "The provided value for scope is not valid. Client credential flows must have a "
			       "scope value with /.default suffixed to the resource identifier (application ID "
			       "URI).");
		goto out;
	}
	if (strcmp(cid, a->client_id) != 0) {
		identity_error(resp, 400, "unauthorized_client", 700016,
			       "Application was not found in the directory. This can happen if the application has "
			       "not been installed by the administrator of the tenant.");
		goto out;
	}
	if (!secret || !consttime_eq(secret, a->client_secret)) {
		identity_error(resp, 401, "invalid_client", 7000215,
			       "Invalid client secret provided. Ensure the secret being sent in the request is the "
			       "client secret value, not the client secret ID.");
		goto out;
	}

	unsigned char rnd[AUTH_TOKEN_HEX / 2];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		identity_error(resp, 500, "temporarily_unavailable", 50000, "Token generation failed.");
		goto out;
	}
	struct token *t = calloc(1, sizeof(*t));
	if (!t) {
		identity_error(resp, 500, "temporarily_unavailable", 50000, "Out of memory.");
		goto out;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(t->value + 2 * i, 3, "%02x", rnd[i]);
	long long now = now_ms();
	pthread_mutex_lock(&a->mu);
	long ttl = a->ttl_s;
	t->expires_ms = now + (long long)ttl * 1000;
	if (a->count >= AUTH_MAX_TOKENS)
		purge_expired(a, now);
	if (a->count >= AUTH_MAX_TOKENS) {
		pthread_mutex_unlock(&a->mu);
		free(t);
		identity_error(resp, 429, "temporarily_unavailable", 50196,
			       "The server terminated an operation because it encountered a client request loop.");
		goto out;
	}
	unsigned h = hash_token(t->value);
	t->next = a->buckets[h];
	a->buckets[h] = t;
	a->count++;
	pthread_mutex_unlock(&a->mu);

	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "token_type", "Bearer");
	cJSON_AddNumberToObject(root, "expires_in", (double)ttl);
	cJSON_AddNumberToObject(root, "ext_expires_in", (double)ttl);
	cJSON_AddStringToObject(root, "access_token", t->value);
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text) {
		resp->status = 500;
		goto out;
	}
	server_response_take_body(resp, 200, "application/json; charset=utf-8", text, strlen(text));
	server_response_header(resp, "Cache-Control", "no-store, no-cache");
out:
	free(grant);
	free(cid);
	free(secret);
	free(scope);
}

static void unauthorized(struct server_response *resp, const char *flavour, const char *why)
{
	/* Both services answer 401 with an empty body and a Bearer challenge. */
	(void)flavour;
	server_response_empty(resp, 401);
	char challenge[256];
	snprintf(challenge, sizeof(challenge),
		 "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, "
		 "error=\"invalid_token\", error_description=\"%s\"",
		 why);
	server_response_header(resp, "WWW-Authenticate", challenge);
}

int auth_check(struct auth *a, const struct server_request *req, const char *flavour, struct server_response *resp)
{
	const char *h = server_request_header(req, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		unauthorized(resp, flavour, "The access token is missing");
		return -1;
	}
	const char *tok = h + 7;
	while (*tok == ' ')
		tok++;
	if (strlen(tok) != AUTH_TOKEN_HEX) {
		unauthorized(resp, flavour, "The access token is invalid");
		return -1;
	}
	long long now = now_ms();
	int found = 0, expired = 0;
	pthread_mutex_lock(&a->mu);
	for (struct token *t = a->buckets[hash_token(tok)]; t; t = t->next) {
		if (strcmp(t->value, tok) == 0) {
			found = 1;
			expired = t->expires_ms <= now;
			break;
		}
	}
	pthread_mutex_unlock(&a->mu);
	if (!found) {
		unauthorized(resp, flavour, "The access token is invalid");
		return -1;
	}
	if (expired) {
		unauthorized(resp, flavour, "The access token expiry UTC time is earlier than current UTC time");
		return -1;
	}
	return 0;
}
