#include "httpd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "config.h"
#include "log.h"

#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct route {
	char *method;
	char *path;
	size_t body_max;
	httpd_handler fn;
	void *arg;
};

struct httpd {
	char addr[INET6_ADDRSTRLEN];
	unsigned port_wanted;
	struct metrics *metrics;
	unsigned max_connections;
	unsigned timeout_s;
	long liveness_timeout_ms;
	struct route *routes;
	size_t nroutes;
	struct MHD_Daemon *daemon;
	unsigned port;

	pthread_mutex_t mu; /* guards the fields below */
	int ready;
	char reason[HTTPD_REASON_MAX + 1];
	int alive;
	long long last_beat_ms;
};

/* Per-request state, kept in MHD's con_cls between calls. */
struct conn_state {
	const struct route *route; /* NULL for built-in paths */
	char *body;
	size_t len, cap;
	int answered;  /* a response (404/405/413) was queued before the body arrived */
	int too_large; /* the body passed the route's cap while it was being read */
};

struct kv_list {
	struct httpd_kv items[HTTPD_REQ_KV_MAX];
	size_t n;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int httpd_config_load(struct httpd_config *cfg, char *errbuf, size_t errlen)
{
	long port = 0;
	int rc = -1;

	memset(cfg, 0, sizeof(*cfg));
	if (config_str("DW_HTTP_ADDR", "0.0.0.0", &cfg->addr, errbuf, errlen) != 0)
		goto out;
	if (config_long("DW_HTTP_PORT", 8080, 0, 65535, &port, errbuf, errlen) != 0)
		goto out;
	cfg->port = (unsigned)port;
	rc = 0;
out:
	if (rc != 0)
		httpd_config_free(cfg);
	return rc;
}

void httpd_config_free(struct httpd_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->addr);
	memset(cfg, 0, sizeof(*cfg));
}

const char *httpd_request_header(const struct httpd_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	}
	return NULL;
}

const char *httpd_request_query(const struct httpd_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t i = 0; i < req->nquery; i++) {
		if (strcmp(req->query[i].name, name) == 0)
			return req->query[i].value;
	}
	return NULL;
}

int httpd_response_set(struct httpd_response *resp, int status, const char *content_type, const void *body,
		       size_t body_len)
{
	char *copy;

	if (!content_type)
		content_type = DEFAULT_CONTENT_TYPE;
	if (strlen(content_type) >= sizeof(resp->content_type) || strpbrk(content_type, "\r\n") ||
	    (body_len && !body))
		return -1;
	copy = malloc(body_len + 1);
	if (!copy)
		return -1;
	if (body_len)
		memcpy(copy, body, body_len);
	copy[body_len] = 0;
	free(resp->body);
	resp->body = copy;
	resp->body_len = body_len;
	resp->status = status;
	snprintf(resp->content_type, sizeof(resp->content_type), "%s", content_type);
	return 0;
}

static int header_name_ok(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return 0;
	}
	return 1;
}

int httpd_response_header(struct httpd_response *resp, const char *name, const char *value)
{
	char *n, *v;

	if (!header_name_ok(name) || !value || strpbrk(value, "\r\n") || resp->nheaders >= HTTPD_RESP_HEADERS_MAX)
		return -1;
	n = strdup(name);
	v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return -1;
	}
	resp->headers[resp->nheaders].name = n;
	resp->headers[resp->nheaders].value = v;
	resp->nheaders++;
	return 0;
}

static void response_clear(struct httpd_response *resp)
{
	free(resp->body);
	for (size_t i = 0; i < resp->nheaders; i++) {
		free((void *)resp->headers[i].name);
		free((void *)resp->headers[i].value);
	}
	memset(resp, 0, sizeof(*resp));
}

int httpd_new(const struct httpd_opts *opts, struct httpd **out, char *errbuf, size_t errlen)
{
	static const struct httpd_opts defaults = {0};
	struct httpd *h = NULL;
	const char *addr;
	unsigned char sa[sizeof(struct in6_addr)];
	int rc = -1;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	addr = opts->addr ? opts->addr : "0.0.0.0";
	if (strlen(addr) >= INET6_ADDRSTRLEN ||
	    (inet_pton(AF_INET, addr, sa) != 1 && inet_pton(AF_INET6, addr, sa) != 1)) {
		snprintf(errbuf, errlen, "httpd: listen address \"%.64s\" is not an IPv4 or IPv6 literal", addr);
		goto out;
	}
	if (opts->port > 65535) {
		snprintf(errbuf, errlen, "httpd: port %u out of range", opts->port);
		goto out;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(errbuf, errlen, "httpd: out of memory");
		goto out;
	}
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h);
		h = NULL;
		snprintf(errbuf, errlen, "httpd: mutex init failed");
		goto out;
	}
	snprintf(h->addr, sizeof(h->addr), "%s", addr);
	h->port_wanted = opts->port;
	h->metrics = opts->metrics;
	h->max_connections = opts->max_connections ? opts->max_connections : 64;
	h->timeout_s = opts->timeout_s ? opts->timeout_s : 60;
	h->liveness_timeout_ms = opts->liveness_timeout_ms;
	h->alive = 1;
	h->last_beat_ms = now_ms();
	snprintf(h->reason, sizeof(h->reason), "starting");
	*out = h;
	rc = 0;
out:
	return rc;
}

static int builtin_path(const char *path)
{
	return strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 || strcmp(path, "/metrics") == 0;
}

int httpd_route(struct httpd *h, const char *method, const char *path, size_t body_max, httpd_handler fn,
		void *arg, char *errbuf, size_t errlen)
{
	struct route *r;

	if (!h || !fn || !header_name_ok(method) || !path || path[0] != '/') {
		snprintf(errbuf, errlen, "httpd: a route needs a method, a path starting with / and a handler");
		return -1;
	}
	if (h->daemon) {
		snprintf(errbuf, errlen, "httpd: route %s %s added after start", method, path);
		return -1;
	}
	if (builtin_path(path)) {
		snprintf(errbuf, errlen, "httpd: %s is a built-in path", path);
		return -1;
	}
	for (size_t i = 0; i < h->nroutes; i++) {
		if (strcmp(h->routes[i].method, method) == 0 && strcmp(h->routes[i].path, path) == 0) {
			snprintf(errbuf, errlen, "httpd: route %s %s registered twice", method, path);
			return -1;
		}
	}
	r = realloc(h->routes, (h->nroutes + 1) * sizeof(*r));
	if (!r) {
		snprintf(errbuf, errlen, "httpd: out of memory");
		return -1;
	}
	h->routes = r;
	r = &h->routes[h->nroutes];
	r->method = strdup(method);
	r->path = strdup(path);
	if (!r->method || !r->path) {
		free(r->method);
		free(r->path);
		snprintf(errbuf, errlen, "httpd: out of memory");
		return -1;
	}
	r->body_max = body_max ? body_max : HTTPD_BODY_MAX_DEFAULT;
	r->fn = fn;
	r->arg = arg;
	h->nroutes++;
	return 0;
}

/* Queues a response built from `body` (copied). */
static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status, const char *content_type,
			     const char *body, const char *allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result serve_builtin(struct httpd *h, struct MHD_Connection *conn, const char *path)
{
	char body[HTTPD_REASON_MAX + 64];

	if (strcmp(path, "/healthz") == 0) {
		unsigned status = 200;
		pthread_mutex_lock(&h->mu);
		long long idle = now_ms() - h->last_beat_ms;
		if (!h->alive) {
			status = 503;
			snprintf(body, sizeof(body), "not alive\n");
		} else if (h->liveness_timeout_ms > 0 && idle > h->liveness_timeout_ms) {
			status = 503;
			snprintf(body, sizeof(body), "loop stalled: no heartbeat for %lld ms\n", idle);
		} else {
			snprintf(body, sizeof(body), "ok\n");
		}
		pthread_mutex_unlock(&h->mu);
		return queue(conn, status, DEFAULT_CONTENT_TYPE, body, NULL);
	}
	if (strcmp(path, "/readyz") == 0) {
		unsigned status;
		pthread_mutex_lock(&h->mu);
		status = h->ready ? 200 : 503;
		snprintf(body, sizeof(body), "%s\n", h->ready ? "ready" : h->reason);
		pthread_mutex_unlock(&h->mu);
		return queue(conn, status, DEFAULT_CONTENT_TYPE, body, NULL);
	}
	/* /metrics */
	if (!h->metrics)
		return queue(conn, 404, DEFAULT_CONTENT_TYPE, "no metrics\n", NULL);
	char *text = NULL;
	size_t len = 0;
	if (metrics_render(h->metrics, &text, &len) != 0)
		return queue(conn, 500, DEFAULT_CONTENT_TYPE, "out of memory\n", NULL);
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
	enum MHD_Result ret = MHD_queue_response(conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct kv_list *l = cls;
	(void)kind;
	if (l->n >= HTTPD_REQ_KV_MAX)
		return MHD_NO; /* stop iterating */
	l->items[l->n].name = key ? key : "";
	l->items[l->n].value = value ? value : "";
	l->n++;
	return MHD_YES;
}

static enum MHD_Result serve_route(const struct route *r, struct MHD_Connection *conn, const char *method,
				   const char *path, struct conn_state *st)
{
	struct kv_list *hdrs = calloc(1, sizeof(*hdrs));
	struct kv_list *query = calloc(1, sizeof(*query));
	struct httpd_response resp = {0};
	struct MHD_Response *mr = NULL;
	enum MHD_Result ret = MHD_NO;

	if (!hdrs || !query) {
		ret = queue(conn, 500, DEFAULT_CONTENT_TYPE, "out of memory\n", NULL);
		goto out;
	}
	MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_kv, hdrs);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_kv, query);
	struct httpd_request req = {
		.method = method,
		.path = path,
		.headers = hdrs->items,
		.nheaders = hdrs->n,
		.query = query->items,
		.nquery = query->n,
		.body = st->body ? st->body : "",
		.body_len = st->len,
	};
	r->fn(r->arg, &req, &resp);
	if (resp.status < 100 || resp.status > 599) {
		log_error("httpd: handler left no valid status", "method", method, "path", path);
		ret = queue(conn, 500, DEFAULT_CONTENT_TYPE, "internal error\n", NULL);
		goto out;
	}
	mr = MHD_create_response_from_buffer(resp.body_len, resp.body ? resp.body : (void *)"",
					     resp.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!mr)
		goto out;
	resp.body = NULL; /* now owned by mr */
	MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
				resp.content_type[0] ? resp.content_type : DEFAULT_CONTENT_TYPE);
	for (size_t i = 0; i < resp.nheaders; i++)
		MHD_add_response_header(mr, resp.headers[i].name, resp.headers[i].value);
	ret = MHD_queue_response(conn, (unsigned)resp.status, mr);
out:
	if (mr)
		MHD_destroy_response(mr);
	response_clear(&resp);
	free(hdrs);
	free(query);
	return ret;
}

/* Path known with another method: 405 with the allowed methods. */
static enum MHD_Result method_not_allowed(struct httpd *h, struct MHD_Connection *conn, const char *path)
{
	char allow[256] = "";
	size_t pos = 0;

	for (size_t i = 0; i < h->nroutes && pos < sizeof(allow); i++) {
		if (strcmp(h->routes[i].path, path) == 0) {
			int n = snprintf(allow + pos, sizeof(allow) - pos, "%s%s", pos ? ", " : "",
					 h->routes[i].method);
			if (n < 0)
				break;
			pos += (size_t)n;
		}
	}
	return queue(conn, 405, DEFAULT_CONTENT_TYPE, "method not allowed\n", allow);
}

static enum MHD_Result too_large(struct MHD_Connection *conn, const struct route *r)
{
	char body[128];
	snprintf(body, sizeof(body), "request body larger than %zu bytes\n", r->body_max);
	return queue(conn, 413, DEFAULT_CONTENT_TYPE, body, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct httpd *h = cls;
	struct conn_state *st = *con_cls;
	(void)version;

	if (!st) {
		/* First call: headers are in, the body (if any) is not. */
		st = calloc(1, sizeof(*st));
		if (!st)
			return MHD_NO;
		*con_cls = st;
		if (builtin_path(url)) {
			if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
				st->answered = 1;
				return queue(conn, 405, DEFAULT_CONTENT_TYPE, "method not allowed\n", "GET, HEAD");
			}
			return MHD_YES;
		}
		int path_known = 0;
		for (size_t i = 0; i < h->nroutes; i++) {
			if (strcmp(h->routes[i].path, url) != 0)
				continue;
			path_known = 1;
			if (strcmp(h->routes[i].method, method) == 0)
				st->route = &h->routes[i];
		}
		if (!st->route) {
			st->answered = 1;
			if (path_known)
				return method_not_allowed(h, conn, url);
			return queue(conn, 404, DEFAULT_CONTENT_TYPE, "not found\n", NULL);
		}
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl) {
			char *end;
			unsigned long long n = strtoull(cl, &end, 10);
			if (end != cl && *end == 0 && n > st->route->body_max) {
				st->answered = 1;
				return too_large(conn, st->route);
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (st->answered || !st->route)
			return MHD_YES; /* discarded: the answer is already queued */
		if (st->too_large)
			return MHD_YES; /* discarded; 413 at the end */
		if (n > st->route->body_max - st->len) {
			/* libmicrohttpd accepts a response only before or after the upload, not during it:
			 * drop the rest (memory stays bounded) and answer 413 once it is read. */
			st->too_large = 1;
			free(st->body);
			st->body = NULL;
			st->len = st->cap = 0;
			return MHD_YES;
		}
		if (st->len + n + 1 > st->cap) {
			size_t cap = st->cap ? st->cap : 4096;
			while (cap < st->len + n + 1)
				cap *= 2;
			if (cap > st->route->body_max + 1)
				cap = st->route->body_max + 1;
			char *p = realloc(st->body, cap);
			if (!p)
				return MHD_NO;
			st->body = p;
			st->cap = cap;
		}
		memcpy(st->body + st->len, upload_data, n);
		st->len += n;
		st->body[st->len] = 0;
		return MHD_YES;
	}
	if (st->answered)
		return MHD_YES;
	/* Answer once: a handler must never run twice for one request, whatever libmicrohttpd does. */
	st->answered = 1;
	if (st->too_large)
		return too_large(conn, st->route);
	if (!st->route)
		return serve_builtin(h, conn, url);
	return serve_route(st->route, conn, method, url, st);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct conn_state *st = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;
	if (st) {
		free(st->body);
		free(st);
		*con_cls = NULL;
	}
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = 0;
	log_warn("httpd: libmicrohttpd", "detail", msg);
}

int httpd_start(struct httpd *h, char *errbuf, size_t errlen)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	const struct sockaddr *sa;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (!h) {
		snprintf(errbuf, errlen, "httpd: no server");
		return -1;
	}
	if (h->daemon) {
		snprintf(errbuf, errlen, "httpd: already started");
		return -1;
	}
	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, h->addr, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)h->port_wanted);
		sa = (const struct sockaddr *)&sin;
	} else {
		if (inet_pton(AF_INET6, h->addr, &sin6.sin6_addr) != 1) {
			snprintf(errbuf, errlen, "httpd: bad listen address %s", h->addr);
			return -1;
		}
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)h->port_wanted);
		sa = (const struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	}
	h->daemon = MHD_start_daemon(flags, (uint16_t)h->port_wanted, NULL, NULL, on_request, h,
				     MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_SOCK_ADDR, sa,
				     MHD_OPTION_CONNECTION_LIMIT, h->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
				     h->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_END);
	if (!h->daemon) {
		snprintf(errbuf, errlen, "httpd: cannot listen on %s port %u (address in use or not permitted)",
			 h->addr, h->port_wanted);
		return -1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : h->port_wanted;
	char port[16];
	snprintf(port, sizeof(port), "%u", h->port);
	log_info("httpd listening", "addr", h->addr, "port", port);
	return 0;
}

unsigned httpd_port(const struct httpd *h)
{
	return h && h->daemon ? h->port : 0;
}

void httpd_set_ready(struct httpd *h, int ready, const char *reason)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->ready = ready != 0;
	snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : (ready ? "ready" : "not ready"));
	pthread_mutex_unlock(&h->mu);
}

void httpd_heartbeat(struct httpd *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->last_beat_ms = now_ms();
	pthread_mutex_unlock(&h->mu);
}

void httpd_set_alive(struct httpd *h, int alive)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->alive = alive != 0;
	if (alive)
		h->last_beat_ms = now_ms();
	pthread_mutex_unlock(&h->mu);
}

void httpd_stop(struct httpd *h)
{
	if (!h || !h->daemon)
		return;
	MHD_stop_daemon(h->daemon);
	h->daemon = NULL;
	h->port = 0;
}

void httpd_free(struct httpd *h)
{
	if (!h)
		return;
	httpd_stop(h);
	for (size_t i = 0; i < h->nroutes; i++) {
		free(h->routes[i].method);
		free(h->routes[i].path);
	}
	free(h->routes);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
