#include "server.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "log.h"

#define SERVER_MAX_REQUEST_HEADERS 128

struct server {
	struct MHD_Daemon *daemon;
	struct server_config cfg;
};

/* Per-request state, created by the URI log callback (which sees the raw URI). */
struct conn_state {
	char *raw_uri;
	char *body;
	size_t body_len;
	size_t body_alloc;
	int too_large;
	int started;
};

const char *server_request_header(const struct server_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes n bytes of s (percent escapes, '+' as space) into a new string. */
static char *form_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
			   hexval(s[i + 2]) >= 0) {
			out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}

char *server_request_query_param(const struct server_request *req, const char *name)
{
	const char *q = req->query ? req->query : "";
	size_t nlen = strlen(name);
	while (*q) {
		const char *amp = strchr(q, '&');
		size_t plen = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', plen);
		size_t klen = eq ? (size_t)(eq - q) : plen;
		char *k = form_decode(q, klen);
		if (!k)
			return NULL;
		int match = strlen(k) == nlen && strcmp(k, name) == 0;
		free(k);
		if (match)
			return eq ? form_decode(eq + 1, plen - klen - 1) : strdup("");
		if (!amp)
			break;
		q = amp + 1;
	}
	return NULL;
}

void server_response_header(struct server_response *resp, const char *name, const char *value)
{
	for (size_t i = 0; i < resp->nheaders; i++) {
		if (strcasecmp(resp->headers[i].name, name) == 0) {
			char *v = strdup(value);
			if (!v)
				return;
			free(resp->headers[i].value);
			resp->headers[i].value = v;
			return;
		}
	}
	if (resp->nheaders >= SERVER_MAX_RESPONSE_HEADERS)
		return;
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return;
	}
	resp->headers[resp->nheaders].name = n;
	resp->headers[resp->nheaders].value = v;
	resp->nheaders++;
}

const char *server_response_get_header(const struct server_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->nheaders; i++)
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	return NULL;
}

void server_response_take_body(struct server_response *resp, int status, const char *content_type, char *body,
			       size_t len)
{
	free(resp->body);
	resp->status = status;
	resp->body = body;
	resp->body_len = body ? len : 0;
	if (content_type)
		server_response_header(resp, "Content-Type", content_type);
	server_response_header(resp, "OData-Version", "4.0");
}

void server_response_json(struct server_response *resp, int status, const cJSON *json)
{
	char *text = cJSON_PrintUnformatted(json);
	if (!text) {
		server_response_take_body(resp, 500, "text/plain", strdup("out of memory"), 13);
		return;
	}
	server_response_take_body(resp, status, "application/json; odata.metadata=minimal", text, strlen(text));
}

void server_response_empty(struct server_response *resp, int status)
{
	server_response_take_body(resp, status, NULL, NULL, 0);
}

void server_response_odata_error(struct server_response *resp, int status, const char *code, const char *message)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *err = cJSON_AddObjectToObject(root, "error");
	cJSON_AddStringToObject(err, "code", code ? code : "");
	cJSON_AddStringToObject(err, "message", message ? message : "");
	server_response_json(resp, status, root);
	cJSON_Delete(root);
}

void server_response_clear(struct server_response *resp)
{
	for (size_t i = 0; i < resp->nheaders; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *con)
{
	(void)cls;
	(void)con;
	struct conn_state *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->raw_uri = strdup(uri ? uri : "/");
	if (!st->raw_uri) {
		free(st);
		return NULL;
	}
	return st;
}

static void request_completed(void *cls, struct MHD_Connection *con, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)con;
	(void)toe;
	struct conn_state *st = *con_cls;
	if (!st)
		return;
	free(st->raw_uri);
	free(st->body);
	free(st);
	*con_cls = NULL;
}

struct header_collect {
	struct server_header *hdrs;
	size_t n;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	struct header_collect *hc = cls;
	if (hc->n >= SERVER_MAX_REQUEST_HEADERS)
		return MHD_NO;
	hc->hdrs[hc->n].name = (char *)key;
	hc->hdrs[hc->n].value = (char *)(value ? value : "");
	hc->n++;
	return MHD_YES;
}

static enum MHD_Result send_response(struct MHD_Connection *con, struct server_response *resp)
{
	struct MHD_Response *r;
	if (resp->body_len > 0) {
		r = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
		if (r)
			resp->body = NULL; /* MHD owns it now */
	} else {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (!r)
		return MHD_NO;
	for (size_t i = 0; i < resp->nheaders; i++)
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	enum MHD_Result ret = MHD_queue_response(con, (unsigned)resp->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result simple_error(struct MHD_Connection *con, int status, const char *code, const char *msg)
{
	struct server_response resp = {0};
	server_response_odata_error(&resp, status, code, msg);
	enum MHD_Result ret = send_response(con, &resp);
	server_response_clear(&resp);
	return ret;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *con, const char *url, const char *method,
				      const char *version, const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	(void)url;
	(void)version;
	struct server *srv = cls;
	struct conn_state *st = *con_cls;
	if (!st)
		return MHD_NO; /* out of memory in the URI logger: drop the connection */

	if (!st->started) {
		st->started = 1;
		const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
		if (cl) {
			char *end;
			unsigned long long n = strtoull(cl, &end, 10);
			if (*end == '\0' && n > srv->cfg.body_cap)
				return simple_error(con, 413, "0x8004d2a1",
						    "The request body is larger than the emulator's limit.");
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (st->too_large || st->body_len + n > srv->cfg.body_cap) {
			st->too_large = 1;
			return MHD_YES;
		}
		if (st->body_len + n + 1 > st->body_alloc) {
			size_t want = st->body_alloc ? st->body_alloc : 4096;
			while (want < st->body_len + n + 1)
				want *= 2;
			if (want > srv->cfg.body_cap + 1)
				want = srv->cfg.body_cap + 1;
			char *nb = realloc(st->body, want);
			if (!nb)
				return MHD_NO;
			st->body = nb;
			st->body_alloc = want;
		}
		memcpy(st->body + st->body_len, upload_data, n);
		st->body_len += n;
		st->body[st->body_len] = '\0';
		return MHD_YES;
	}
	if (st->too_large)
		return simple_error(con, 413, "0x8004d2a1", "The request body is larger than the emulator's limit.");

	struct server_header hdrs[SERVER_MAX_REQUEST_HEADERS];
	struct header_collect hc = {hdrs, 0};
	MHD_get_connection_values(con, MHD_HEADER_KIND, collect_header, &hc);

	char *q = strchr(st->raw_uri, '?');
	if (q)
		*q++ = '\0';
	struct server_request req = {
		.method = method,
		.path = st->raw_uri,
		.query = q ? q : "",
		.headers = hdrs,
		.nheaders = hc.n,
		.body = st->body,
		.body_len = st->body_len,
	};
	struct server_response resp = {0};
	srv->cfg.handler(srv->cfg.handler_ctx, &req, &resp);
	if (resp.status == 0) {
		server_response_clear(&resp);
		server_response_odata_error(&resp, 404, "0x80060888", "Resource not found for the segment.");
	}
	enum MHD_Result ret = send_response(con, &resp);
	server_response_clear(&resp);
	return ret;
}

struct server *server_start(const struct server_config *cfg, char *errbuf, size_t errlen)
{
	struct server *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	srv->cfg = *cfg;
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)cfg->port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
					       MHD_USE_POLL | MHD_USE_ERROR_LOG,
				       (uint16_t)cfg->port, NULL, NULL, access_handler, srv, MHD_OPTION_SOCK_ADDR,
				       (struct sockaddr *)&addr, MHD_OPTION_URI_LOG_CALLBACK, uri_logger, srv,
				       MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv,
				       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT,
				       (unsigned)512, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
				       MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
	if (!srv->daemon) {
		snprintf(errbuf, errlen, "cannot listen on 127.0.0.1:%d", cfg->port);
		free(srv);
		return NULL;
	}
	return srv;
}

void server_stop(struct server *srv)
{
	if (!srv)
		return;
	if (srv->daemon)
		MHD_stop_daemon(srv->daemon);
	free(srv);
}
