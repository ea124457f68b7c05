#include "dside.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "oauth.h"
#include "odata_batch.h"

#define DSIDE_URL_MAX 8192

struct dside {
	enum event_side side;
	char *url;  /* DW_<SIDE>_URL */
	char *root; /* service root, ending in '/' */
	struct http_client *http;
	struct oauth *oauth;
};

int dside_open(enum event_side side, struct dside **out, char *err, size_t errlen)
{
	const char *up = side == EVENT_SIDE_CE ? "CE" : "FO";
	char name[32];
	struct oauth_config oc;
	struct dside *d = calloc(1, sizeof(*d));
	int rc = -1;
	memset(&oc, 0, sizeof(oc));
	*out = NULL;
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	d->side = side;
	snprintf(name, sizeof(name), "DW_%s_URL", up);
	if (config_str_required(name, &d->url, err, errlen) != 0)
		goto out;
	size_t n = strlen(d->url);
	while (n > 0 && d->url[n - 1] == '/')
		d->url[--n] = '\0';
	const char *suffix = side == EVENT_SIDE_CE ? "/api/data/v9.2/" : "/data/";
	d->root = malloc(n + strlen(suffix) + 1);
	if (!d->root) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memcpy(d->root, d->url, n);
	memcpy(d->root + n, suffix, strlen(suffix) + 1);
	struct http_opts ho = { .timeout_ms = 60000, .body_max = DSIDE_BODY_MAX };
	if (oauth_config_load(up, &oc, err, errlen) != 0 || oauth_new(&oc, NULL, &d->oauth, err, errlen) != 0 ||
	    http_client_new(&ho, &d->http, err, errlen) != 0)
		goto out;
	*out = d;
	d = NULL;
	rc = 0;
out:
	oauth_config_free(&oc);
	dside_free(d);
	return rc;
}

void dside_free(struct dside *d)
{
	if (!d)
		return;
	http_client_free(d->http);
	oauth_free(d->oauth);
	free(d->url);
	free(d->root);
	free(d);
}

const char *dside_name(const struct dside *d)
{
	return event_side_name(d->side);
}

const char *dside_url(const struct dside *d)
{
	return d->url;
}

/* One request to an absolute URL; token when with_token. */
static int request_ct(struct dside *d, const char *method, const char *url, const char *ctype, const char *body,
		      size_t body_len, int with_token, long *status, cJSON **out, char **raw, char *err, size_t errlen)
{
	char *token = NULL;
	char auth[OAUTH_TOKEN_MAX + 16];
	struct http_header h[5];
	size_t nh = 0;
	struct http_response resp;
	int rc = -1;
	memset(&resp, 0, sizeof(resp));
	if (out)
		*out = NULL;
	*status = 0;
	if (with_token) {
		if (oauth_token(d->oauth, &token, err, errlen) != 0)
			goto out;
		snprintf(auth, sizeof(auth), "Bearer %s", token);
		h[nh++] = (struct http_header){ "Authorization", auth };
		h[nh++] = (struct http_header){ "OData-Version", "4.0" };
		h[nh++] = (struct http_header){ "Accept", "application/json" };
	}
	if (body)
		h[nh++] = (struct http_header){ "Content-Type", ctype };
	struct http_request req = {
		.method = method, .url = url, .headers = h, .nheaders = nh, .body = body, .body_len = body_len,
	};
	if (http_do(d->http, &req, &resp, err, errlen) != 0)
		goto out;
	*status = resp.status;
	if (raw && !(*raw = strdup(resp.body))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (out && resp.body_len > 0) {
		*out = cJSON_ParseWithLength(resp.body, resp.body_len);
		if (!*out && resp.status / 100 == 2) {
			snprintf(err, errlen, "%s %s: answer is not JSON", method, url);
			goto out;
		}
	}
	rc = 0;
out:
	http_response_free(&resp);
	free(token);
	return rc;
}

static int request(struct dside *d, const char *method, const char *url, const char *body, int with_token,
		   long *status, cJSON **out, char *err, size_t errlen)
{
	return request_ct(d, method, url, "application/json", body, body ? strlen(body) : 0, with_token, status, out,
			  NULL, err, errlen);
}

int dside_batch(struct dside *d, const struct odata_batch_part *parts, size_t nparts, long *status, char **out,
		char *err, size_t errlen)
{
	char url[DSIDE_URL_MAX], *body = NULL, *ctype = NULL;
	size_t len = 0;
	int rc = -1;
	*out = NULL;
	snprintf(url, sizeof(url), "%s$batch", d->root);
	if (odata_batch_request_build(parts, nparts, "dwdemo", &body, &len, &ctype, err, errlen) != 0)
		return -1;
	rc = request_ct(d, "POST", url, ctype, body, len, 1, status, NULL, out, err, errlen);
	free(body);
	free(ctype);
	return rc;
}

int dside_call(struct dside *d, const char *method, const char *path, const char *body, long *status, cJSON **out,
	       char *err, size_t errlen)
{
	char url[DSIDE_URL_MAX];
	if ((size_t)snprintf(url, sizeof(url), "%s%s", d->root, path) >= sizeof(url)) {
		snprintf(err, errlen, "URL longer than %d bytes", DSIDE_URL_MAX);
		return -1;
	}
	return request(d, method, url, body, 1, status, out, err, errlen);
}

int dside_admin(struct dside *d, const char *method, const char *path, const char *body, long *status, cJSON **out,
		char *err, size_t errlen)
{
	char url[DSIDE_URL_MAX];
	if ((size_t)snprintf(url, sizeof(url), "%s/_emulator/%s", d->url, path) >= sizeof(url)) {
		snprintf(err, errlen, "URL longer than %d bytes", DSIDE_URL_MAX);
		return -1;
	}
	return request(d, method, url, body, 0, status, out, err, errlen);
}

int dside_rows(struct dside *d, const char *set, cJSON **out, char *err, size_t errlen)
{
	char url[DSIDE_URL_MAX];
	cJSON *all = cJSON_CreateArray();
	cJSON *page = NULL;
	int rc = -1, n = 0;
	*out = NULL;
	if (!all) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(url, sizeof(url), "%s%s%s", d->root, set, d->side == EVENT_SIDE_FO ? "?cross-company=true" : "");
	for (;;) {
		long status;
		if (request(d, "GET", url, NULL, 1, &status, &page, err, errlen) != 0)
			goto out;
		if (status != 200) {
			snprintf(err, errlen, "GET %s: HTTP %ld", set, status);
			goto out;
		}
		cJSON *value = cJSON_DetachItemFromObjectCaseSensitive(page, "value");
		if (!cJSON_IsArray(value)) {
			cJSON_Delete(value);
			snprintf(err, errlen, "GET %s: no value array", set);
			goto out;
		}
		cJSON *row;
		while ((row = cJSON_DetachItemFromArray(value, 0)) != NULL) {
			if (++n > DSIDE_ROWS_MAX) {
				cJSON_Delete(row);
				cJSON_Delete(value);
				snprintf(err, errlen, "%s has more than %d rows", set, DSIDE_ROWS_MAX);
				goto out;
			}
			cJSON_AddItemToArray(all, row);
		}
		cJSON_Delete(value);
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "@odata.nextLink");
		if (!cJSON_IsString(next))
			break;
		if (strncmp(next->valuestring, d->url, strlen(d->url)) != 0 || strlen(next->valuestring) >= sizeof(url)) {
			snprintf(err, errlen, "GET %s: next link points elsewhere", set);
			goto out;
		}
		snprintf(url, sizeof(url), "%s", next->valuestring);
		cJSON_Delete(page);
		page = NULL;
	}
	*out = all;
	all = NULL;
	rc = 0;
out:
	cJSON_Delete(page);
	cJSON_Delete(all);
	return rc;
}
