#include "hook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "metrics.h"

long long hook_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int hook_authorized(const struct app *a, const struct httpd_request *req)
{
	const char *code = httpd_request_query(req, "code");
	if (code && app_key_ok(a, code))
		return 1;
	const char *h = httpd_request_header(req, a->set.key_header);
	return h && app_key_ok(a, h);
}

int hook_json_body(const struct httpd_request *req)
{
	const char *ct = httpd_request_header(req, "Content-Type");
	static const char json[] = "application/json";
	if (!ct)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, json, sizeof(json) - 1) != 0)
		return 0;
	ct += sizeof(json) - 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

void hook_reply(struct app *a, struct httpd_response *resp, int status, const char *outcome, const char *member,
		long n, const char *reason, long long t0_ms)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	if (o) {
		if (reason)
			cJSON_AddStringToObject(o, "error", reason);
		else if (member)
			cJSON_AddNumberToObject(o, member, (double)n);
		text = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
	}
	if (httpd_response_set(resp, status, "application/json", text ? text : "{}", text ? strlen(text) : 2) != 0)
		resp->status = 500;
	free(text);
	const char *lv[] = { outcome };
	metrics_counter_add(a->m_hooks, lv, 1);
	if (status >= 200 && status < 300)
		metrics_histogram_observe(a->m_hook_s, NULL, (double)(hook_now_ms() - t0_ms) / 1000.0);
}
