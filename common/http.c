/* First cut: API compiles; transfers are implemented in the next commit. */
#include "http.h"

#include <stdio.h>
#include <string.h>

int http_client_new(const struct http_opts *opts, struct http_client **out, char *errbuf, size_t errlen)
{
	(void)opts;
	*out = NULL;
	snprintf(errbuf, errlen, "http_client_new: not available in this build yet");
	return HTTP_ERR;
}

void http_client_free(struct http_client *c)
{
	(void)c;
}

int http_do(struct http_client *c, const struct http_request *req, struct http_response *resp, char *errbuf,
	    size_t errlen)
{
	(void)c;
	(void)req;
	memset(resp, 0, sizeof(*resp));
	snprintf(errbuf, errlen, "http_do: not available in this build yet");
	return HTTP_ERR;
}

void http_response_free(struct http_response *resp)
{
	(void)resp;
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
	(void)resp;
	(void)name;
	return NULL;
}

int http_status_retryable(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status <= 599 && status != 501 && status != 505);
}

long http_retry_after_ms(const struct http_response *resp, long default_ms)
{
	(void)resp;
	return default_ms;
}

long http_retry_after_value_ms(const char *value, long long now_s, long default_ms)
{
	(void)value;
	(void)now_s;
	return default_ms;
}

char *http_url_redact(const char *url, char *out, size_t outlen)
{
	(void)url;
	if (outlen)
		out[0] = 0;
	return out;
}
