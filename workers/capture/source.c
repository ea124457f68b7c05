#include "source.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oauth.h"

#define POOL_MAX 32

struct source {
	char *root;
	struct oauth *oauth;
	pthread_mutex_t mu;
	struct http_client *idle[POOL_MAX];
	size_t nidle;
};

int source_new(const char *root, struct oauth *oauth, struct source **out, char *errbuf, size_t errlen)
{
	struct source *s = calloc(1, sizeof(*s));
	*out = NULL;
	if (!s || !(s->root = strdup(root))) {
		free(s);
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	s->oauth = oauth;
	pthread_mutex_init(&s->mu, NULL);
	*out = s;
	return 0;
}

void source_free(struct source *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nidle; i++)
		http_client_free(s->idle[i]);
	pthread_mutex_destroy(&s->mu);
	free(s->root);
	free(s);
}

static struct http_client *take(struct source *s, char *errbuf, size_t errlen)
{
	struct http_client *c = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->nidle > 0)
		c = s->idle[--s->nidle];
	pthread_mutex_unlock(&s->mu);
	if (c)
		return c;
	struct http_opts o = { .timeout_ms = 30000, .body_max = (size_t)64 * 1024 * 1024 };
	if (http_client_new(&o, &c, errbuf, errlen) != 0)
		return NULL;
	return c;
}

static void give(struct source *s, struct http_client *c)
{
	pthread_mutex_lock(&s->mu);
	if (s->nidle < POOL_MAX) {
		s->idle[s->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	http_client_free(c);
}

int source_get(struct source *s, const char *url, const char *prefer, struct http_response *resp, char *errbuf,
	       size_t errlen)
{
	char *full = NULL, *auth = NULL, *token = NULL;
	int rc = -1;
	struct http_client *c = NULL;

	memset(resp, 0, sizeof(*resp));
	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
		full = strdup(url);
	else if (asprintf(&full, "%s%s", s->root, url) < 0)
		full = NULL;
	if (!full) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	c = take(s, errbuf, errlen);
	if (!c)
		goto out;
	for (int attempt = 0; attempt < 2; attempt++) {
		free(token);
		free(auth);
		token = auth = NULL;
		if (oauth_token(s->oauth, &token, errbuf, errlen) != 0)
			goto out;
		if (asprintf(&auth, "Bearer %s", token) < 0) {
			auth = NULL;
			snprintf(errbuf, errlen, "out of memory");
			goto out;
		}
		struct http_header h[4] = {
			{ "Authorization", auth },
			{ "Accept", "application/json" },
			{ "OData-Version", "4.0" },
			{ "Prefer", prefer },
		};
		struct http_request req = { .method = "GET", .url = full, .headers = h, .nheaders = prefer ? 4 : 3 };
		http_response_free(resp);
		if (http_do(c, &req, resp, errbuf, errlen) != 0)
			goto out;
		if (resp->status != 401)
			break;
		oauth_invalidate(s->oauth, token);
	}
	rc = 0;
out:
	if (c)
		give(s, c);
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	free(token);
	free(full);
	return rc;
}
