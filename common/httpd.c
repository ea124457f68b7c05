/* First cut: API compiles; the server is implemented in the next commit. */
#include "httpd.h"

#include <stdio.h>
#include <string.h>

int httpd_config_load(struct httpd_config *cfg, char *errbuf, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(errbuf, errlen, "httpd_config_load: not available in this build yet");
	return -1;
}

void httpd_config_free(struct httpd_config *cfg)
{
	(void)cfg;
}

const char *httpd_request_header(const struct httpd_request *req, const char *name)
{
	(void)req, (void)name;
	return NULL;
}

const char *httpd_request_query(const struct httpd_request *req, const char *name)
{
	(void)req, (void)name;
	return NULL;
}

int httpd_response_set(struct httpd_response *resp, int status, const char *content_type, const void *body,
		       size_t body_len)
{
	(void)resp, (void)status, (void)content_type, (void)body, (void)body_len;
	return -1;
}

int httpd_response_header(struct httpd_response *resp, const char *name, const char *value)
{
	(void)resp, (void)name, (void)value;
	return -1;
}

int httpd_new(const struct httpd_opts *opts, struct httpd **out, char *errbuf, size_t errlen)
{
	(void)opts;
	*out = NULL;
	snprintf(errbuf, errlen, "httpd_new: not available in this build yet");
	return -1;
}

int httpd_route(struct httpd *h, const char *method, const char *path, size_t body_max, httpd_handler fn,
		void *arg, char *errbuf, size_t errlen)
{
	(void)h, (void)method, (void)path, (void)body_max, (void)fn, (void)arg;
	snprintf(errbuf, errlen, "httpd_route: not available in this build yet");
	return -1;
}

int httpd_start(struct httpd *h, char *errbuf, size_t errlen)
{
	(void)h;
	snprintf(errbuf, errlen, "httpd_start: not available in this build yet");
	return -1;
}

unsigned httpd_port(const struct httpd *h)
{
	(void)h;
	return 0;
}

void httpd_set_ready(struct httpd *h, int ready, const char *reason)
{
	(void)h, (void)ready, (void)reason;
}

void httpd_heartbeat(struct httpd *h)
{
	(void)h;
}

void httpd_set_alive(struct httpd *h, int alive)
{
	(void)h, (void)alive;
}

void httpd_stop(struct httpd *h)
{
	(void)h;
}

void httpd_free(struct httpd *h)
{
	(void)h;
}
