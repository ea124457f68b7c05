#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "harness.h"
#include "http.h"
#include "log.h"

/*
 * The HTTP client against a libmicrohttpd server run inside this test on 127.0.0.1 (ephemeral
 * port), and against raw sockets for refused and dropped connections. Real HTTP over loopback.
 *
 * Server paths:
 *   /status/NNN       answers NNN with X-Test-Header: Yes and Content-Type text/plain
 *   /echo             answers 200, body "METHOD\n<request body>", X-Echo-Custom: <X-Custom header>,
 *                     X-Echo-Agent: <User-Agent>, X-Echo-Auth: <Authorization>
 *   /big?n=N          N bytes of 'x' with Content-Length
 *   /chunked?n=N      N bytes of 'y', chunked (no Content-Length)
 *   /slow?ms=N        waits N ms (or until the test stops the server), then 200
 *   /retry?v=V        503 with Retry-After: V
 *   /port             200 with the client's source port as body (shows connection reuse)
 */

static char err[512];

/* A self-signed certificate for 127.0.0.1 (valid until 2126) and its key, made for this test with
 * openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
 *   -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 */
static const char test_cert_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBkDCCATagAwIBAgIUHrzHbNqiehyT0m0A/kOFO9cJTU4wCgYIKoZIzj0EAwIw\n"
	"FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEzMDAxMzQxMVoYDzIxMjYxMTA2\n"
	"MDEzNDExWjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO\n"
	"PQMBBwNCAATjn0jZJEgRCeP9UM7ZB+RpY12kddqTSClVsOS1X2cJzO1XpkmE+Jrl\n"
	"BMUlAGuKwb0IYJpEWqsWAg+fSKRwOVbNo2QwYjAdBgNVHQ4EFgQUYJDz7NkRMqtT\n"
	"euKeAECriGVVNRQwHwYDVR0jBBgwFoAUYJDz7NkRMqtTeuKeAECriGVVNRQwDwYD\n"
	"VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC\n"
	"IQCESKhUJrBvZwsx6WHFMhpPEcBuvK3cvyNxjx6igK+BBQIgWduRLe3mIEyJYHpS\n"
	"xOZgKNQx2E7kpPVtbIIfIdQxztY=\n"
	"-----END CERTIFICATE-----\n";
static const char test_key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1bznVWLbSq3HdSZh\n"
	"oT3Os6zn4O/i4iLkNmgCP2jt3gehRANCAATjn0jZJEgRCeP9UM7ZB+RpY12kddqT\n"
	"SClVsOS1X2cJzO1XpkmE+JrlBMUlAGuKwb0IYJpEWqsWAg+fSKRwOVbN\n"
	"-----END PRIVATE KEY-----\n";
static volatile int stopping;

struct upload {
	char *data;
	size_t len;
};

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *body, size_t len,
				 struct MHD_Response **keep)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", "text/plain");
	if (keep) {
		*keep = r;
		return MHD_YES;
	}
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static ssize_t chunk_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	size_t total = (size_t)(uintptr_t)cls;

	if (pos >= total)
		return MHD_CONTENT_READER_END_OF_STREAM;
	size_t n = total - (size_t)pos;
	if (n > max)
		n = max;
	if (n > 1000)
		n = 1000;
	memset(buf, 'y', n);
	return (ssize_t)n;
}

static long query_long(struct MHD_Connection *conn, const char *name)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
	return v ? strtol(v, NULL, 10) : 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			       const char *version, const char *upload_data, size_t *upload_data_size,
			       void **con_cls)
{
	(void)cls;
	(void)version;
	struct upload *up = *con_cls;
	struct MHD_Response *r = NULL;
	enum MHD_Result ret;
	unsigned status = 200;

	if (!up) {
		up = calloc(1, sizeof(*up));
		*con_cls = up;
		return MHD_YES;
	}
	if (*upload_data_size) {
		char *p = realloc(up->data, up->len + *upload_data_size + 1);
		if (!p)
			return MHD_NO;
		up->data = p;
		memcpy(up->data + up->len, upload_data, *upload_data_size);
		up->len += *upload_data_size;
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (strncmp(url, "/status/", 8) == 0) {
		status = (unsigned)strtoul(url + 8, NULL, 10);
		send_text(conn, status, "status body", 11, &r);
		MHD_add_response_header(r, "X-Test-Header", "Yes");
	} else if (strcmp(url, "/echo") == 0) {
		size_t ml = strlen(method);
		char *body = malloc(ml + 1 + up->len + 1);
		memcpy(body, method, ml);
		body[ml] = '\n';
		if (up->len)
			memcpy(body + ml + 1, up->data, up->len);
		send_text(conn, 200, body, ml + 1 + up->len, &r);
		free(body);
		const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Custom");
		MHD_add_response_header(r, "X-Echo-Custom", h ? h : "(none)");
		h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
		MHD_add_response_header(r, "X-Echo-Agent", h ? h : "(none)");
		h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
		MHD_add_response_header(r, "X-Echo-Auth", h ? h : "(none)");
		h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
		MHD_add_response_header(r, "X-Echo-Type", h ? h : "(none)");
	} else if (strcmp(url, "/big") == 0) {
		size_t n = (size_t)query_long(conn, "n");
		char *body = malloc(n + 1);
		memset(body, 'x', n);
		r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
	} else if (strcmp(url, "/chunked") == 0) {
		size_t n = (size_t)query_long(conn, "n");
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1000, chunk_cb, (void *)(uintptr_t)n, NULL);
	} else if (strcmp(url, "/slow") == 0) {
		long ms = query_long(conn, "ms");
		for (long waited = 0; waited < ms && !stopping; waited += 10)
			usleep(10000);
		send_text(conn, 200, "slow", 4, &r);
	} else if (strcmp(url, "/retry") == 0) {
		const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "v");
		status = 503;
		send_text(conn, status, "busy", 4, &r);
		MHD_add_response_header(r, "Retry-After", v ? v : "");
	} else if (strcmp(url, "/port") == 0) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ci->client_addr;
		char body[16];
		int n = snprintf(body, sizeof(body), "%u", ntohs(sin->sin_port));
		send_text(conn, 200, body, (size_t)n, &r);
	} else {
		status = 404;
		send_text(conn, status, "no", 2, &r);
	}
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct upload *up = *con_cls;
	if (up) {
		free(up->data);
		free(up);
		*con_cls = NULL;
	}
}

struct fixture {
	struct MHD_Daemon *d;
	unsigned port;
	struct http_client *c;
	char base[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_in sa = {0};

	stopping = 0;
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
				handler, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				MHD_OPTION_END);
	if (!f->d)
		return -1;
	f->port = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT)->port;
	snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%u", f->port);
	if (http_client_new(NULL, &f->c, err, sizeof(err)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	stopping = 1;
	http_client_free(f->c);
	MHD_stop_daemon(f->d);
	free(f);
	return 0;
}

static const char *url(struct fixture *f, const char *path)
{
	static char buf[512];
	snprintf(buf, sizeof(buf), "%s%s", f->base, path);
	return buf;
}

static void test_status_and_headers(void **state)
{
	struct fixture *f = *state;
	struct http_request req = {.method = "GET", .url = url(f, "/status/201")};
	struct http_response resp;

	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 201);
	assert_string_equal(http_response_header(&resp, "x-test-header"), "Yes");
	assert_string_equal(http_response_header(&resp, "X-TEST-HEADER"), "Yes");
	assert_string_equal(http_response_header(&resp, "content-type"), "text/plain");
	assert_null(http_response_header(&resp, "X-Absent"));
	assert_int_equal(resp.body_len, 11);
	assert_string_equal(resp.body, "status body");
	assert_true(resp.total_s > 0 && resp.total_s < 5);
	http_response_free(&resp);
	http_response_free(&resp); /* second free of a zeroed response is harmless */

	/* Error statuses are responses too, not failures. */
	req.url = url(f, "/status/503");
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 503);
	http_response_free(&resp);
}

static void test_request_headers_body_and_methods(void **state)
{
	struct fixture *f = *state;
	static const char body[] = {'a', 0, 'b', '\n', 'c'}; /* binary, with a NUL */
	const struct http_header hdrs[] = {{"X-Custom", "hello world"},
					   {"Authorization", "Bearer tok-123"},
					   {"content-type", "application/octet-stream"}};
	struct http_request req = {.method = "PATCH", .url = url(f, "/echo"), .headers = hdrs, .nheaders = 3,
				   .body = body, .body_len = sizeof(body)};
	struct http_response resp;

	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 6 + sizeof(body));
	assert_memory_equal(resp.body, "PATCH\n", 6);
	assert_memory_equal(resp.body + 6, body, sizeof(body));
	assert_int_equal(resp.body[resp.body_len], 0);
	assert_string_equal(http_response_header(&resp, "X-Echo-Custom"), "hello world");
	assert_string_equal(http_response_header(&resp, "X-Echo-Agent"), HTTP_USER_AGENT);
	assert_string_equal(http_response_header(&resp, "X-Echo-Auth"), "Bearer tok-123");
	assert_string_equal(http_response_header(&resp, "X-Echo-Type"), "application/octet-stream");
	http_response_free(&resp);

	/* A body without a Content-Type goes without one (libcurl would call it a form). */
	req.nheaders = 2;
	req.method = "POST";
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	assert_string_equal(http_response_header(&resp, "X-Echo-Type"), "(none)");
	http_response_free(&resp);

	static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
	for (size_t i = 0; i < 4; i++) {
		struct http_request r2 = {.method = methods[i], .url = url(f, "/echo")};
		char want[16];
		assert_int_equal(http_do(f->c, &r2, &resp, err, sizeof(err)), 0);
		snprintf(want, sizeof(want), "%s\n", methods[i]);
		assert_string_equal(resp.body, want);
		assert_string_equal(http_response_header(&resp, "X-Echo-Auth"), "(none)"); /* nothing left over */
		http_response_free(&resp);
	}
}

static void test_bad_requests_are_rejected_before_sending(void **state)
{
	struct fixture *f = *state;
	const struct http_header bad[] = {{"X-Ok", "a\r\nInjected: yes"}};
	struct http_request req = {.method = "GET", .url = url(f, "/echo"), .headers = bad, .nheaders = 1};
	struct http_response resp;

	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), HTTP_ERR);
	assert_non_null(strstr(err, "invalid request header \"X-Ok\""));
	assert_null(strstr(err, "Injected"));
	req.nheaders = 0;
	req.method = "GE T";
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), HTTP_ERR);
}

static void test_body_cap(void **state)
{
	struct fixture *f = *state;
	struct http_opts o = {.body_max = 1000};
	struct http_client *c;
	struct http_request req = {.method = "GET"};
	struct http_response resp;
	char u[128];

	assert_int_equal(http_client_new(&o, &c, err, sizeof(err)), 0);
	/* Exactly at the cap: fine, with and without Content-Length. */
	snprintf(u, sizeof(u), "%s/big?n=1000", f->base);
	req.url = u;
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.body_len, 1000);
	http_response_free(&resp);
	snprintf(u, sizeof(u), "%s/chunked?n=1000", f->base);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.body_len, 1000);
	assert_int_equal(resp.body[999], 'y');
	http_response_free(&resp);

	/* One byte over: a distinct error that names the cap. */
	snprintf(u, sizeof(u), "%s/big?n=1001", f->base);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), HTTP_ERR_TOO_LARGE);
	assert_null(resp.body);
	char want[256];
	snprintf(want, sizeof(want), "GET %s/big?n=1001: response body exceeds the cap of 1000 bytes", f->base);
	assert_string_equal(err, want);
	snprintf(u, sizeof(u), "%s/chunked?n=5000", f->base);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), HTTP_ERR_TOO_LARGE);
	assert_non_null(strstr(err, "exceeds the cap of 1000 bytes"));

	/* The client is still usable afterwards. */
	snprintf(u, sizeof(u), "%s/status/200", f->base);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	http_response_free(&resp);
	http_client_free(c);
}

static void test_timeout(void **state)
{
	struct fixture *f = *state;
	struct http_opts o = {.timeout_ms = 300};
	struct http_client *c;
	struct http_request req = {.method = "GET", .url = url(f, "/slow?ms=5000")};
	struct http_response resp;

	assert_int_equal(http_client_new(&o, &c, err, sizeof(err)), 0);
	long long t0 = harness_now_ms();
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), HTTP_ERR_TIMEOUT);
	long long took = harness_now_ms() - t0;
	assert_true(took >= 250 && took < 2000);
	assert_non_null(strstr(err, "GET http://127.0.0.1:"));
	assert_non_null(strstr(err, "timed out"));

	/* A per-request timeout overrides the client's. */
	req.url = url(f, "/slow?ms=100");
	req.timeout_ms = 3000;
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	http_response_free(&resp);
	http_client_free(c);
}

/* A socket bound to a loopback port but not listening: connecting to it is refused. */
static int refusing_socket(unsigned *port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {0};
	socklen_t len = sizeof(sa);

	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return s;
}

static void test_connection_refused_masks_secrets(void **state)
{
	struct fixture *f = *state;
	unsigned port;
	int s = refusing_socket(&port);
	char u[256], want[256];
	struct http_request req = {.method = "POST"};
	struct http_response resp;

	snprintf(u, sizeof(u), "http://127.0.0.1:%u/token?client_secret=s3cr3t-value&tenant=t1&code=abc123", port);
	req.url = u;
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), HTTP_ERR_TRANSPORT);
	snprintf(want, sizeof(want), "POST http://127.0.0.1:%u/token?client_secret=***&tenant=t1&code=***: ", port);
	assert_memory_equal(err, want, strlen(want));
	assert_null(strstr(err, "s3cr3t"));
	assert_null(strstr(err, "abc123"));
	assert_non_null(strstr(err, "Failed to connect"));
	close(s);
}

static void test_unresolvable_host_is_transport_error(void **state)
{
	struct fixture *f = *state;
	struct http_request req = {.method = "GET", .url = "http://dw-test.invalid/x"}; /* RFC 6761 */
	struct http_response resp;

	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), HTTP_ERR_TRANSPORT);
	assert_string_equal(err, "GET http://dw-test.invalid/x: Could not resolve host: dw-test.invalid");
}

struct dropper {
	int lfd;
	unsigned port;
	pthread_t t;
};

static void *drop_one(void *arg)
{
	struct dropper *d = arg;
	int c = accept(d->lfd, NULL, NULL);
	char buf[1024];
	if (c >= 0) {
		/* read the request, then close without a response */
		ssize_t n = recv(c, buf, sizeof(buf), 0);
		(void)n;
		close(c);
	}
	return NULL;
}

static void test_connection_dropped_is_transport_error(void **state)
{
	struct fixture *f = *state;
	struct dropper d;
	struct sockaddr_in sa = {0};
	socklen_t len = sizeof(sa);
	char u[128];
	struct http_response resp;

	d.lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(d.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(d.lfd, 1), 0);
	assert_int_equal(getsockname(d.lfd, (struct sockaddr *)&sa, &len), 0);
	d.port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&d.t, NULL, drop_one, &d), 0);
	snprintf(u, sizeof(u), "http://127.0.0.1:%u/x", d.port);
	struct http_request req = {.method = "GET", .url = u};
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), HTTP_ERR_TRANSPORT);
	assert_non_null(strstr(err, "Empty reply from server"));
	pthread_join(d.t, NULL);
	close(d.lfd);
}

static void test_keep_alive_reuses_the_connection(void **state)
{
	struct fixture *f = *state;
	struct http_request req = {.method = "GET", .url = url(f, "/port")};
	struct http_response a, b;
	struct http_client *other;

	assert_int_equal(http_do(f->c, &req, &a, err, sizeof(err)), 0);
	assert_int_equal(http_do(f->c, &req, &b, err, sizeof(err)), 0);
	assert_int_equal(a.reused, 0);
	assert_int_equal(b.reused, 1);
	assert_string_equal(a.body, b.body); /* same client source port: the same TCP connection */
	http_response_free(&b);

	/* A different client opens its own connection. */
	assert_int_equal(http_client_new(NULL, &other, err, sizeof(err)), 0);
	assert_int_equal(http_do(other, &req, &b, err, sizeof(err)), 0);
	assert_int_equal(b.reused, 0);
	assert_string_not_equal(a.body, b.body);
	http_response_free(&a);
	http_response_free(&b);
	http_client_free(other);
}

static void test_retry_after_from_response(void **state)
{
	struct fixture *f = *state;
	struct http_request req = {.method = "GET", .url = url(f, "/retry?v=7")};
	struct http_response resp;

	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 503);
	assert_true(http_status_retryable(resp.status));
	assert_int_equal(http_retry_after_ms(&resp, 1234), 7000);
	http_response_free(&resp);

	/* An HTTP-date ~20 s ahead. */
	char u[256], date[64];
	time_t when = time(NULL) + 20;
	struct tm tm;
	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a,%%20%d%%20%b%%20%Y%%20%H:%M:%S%%20GMT", &tm);
	snprintf(u, sizeof(u), "%s/retry?v=%s", f->base, date);
	req.url = u;
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	long ms = http_retry_after_ms(&resp, 1234);
	assert_true(ms >= 18000 && ms <= 20000);
	http_response_free(&resp);

	/* No header: the default. */
	req.url = url(f, "/status/503");
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(http_retry_after_ms(&resp, 1234), 1234);
	http_response_free(&resp);
	assert_int_equal(http_retry_after_ms(NULL, 99), 99);
}

static void test_retry_after_values(void **state)
{
	(void)state;
	const long long now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */

	assert_int_equal(http_retry_after_value_ms("0", now, 5), 0);
	assert_int_equal(http_retry_after_value_ms(" 120 ", now, 5), 120000);
	assert_int_equal(http_retry_after_value_ms("300", now, 5), HTTP_RETRY_AFTER_MAX_MS);
	assert_int_equal(http_retry_after_value_ms("86400", now, 5), HTTP_RETRY_AFTER_MAX_MS);
	assert_int_equal(http_retry_after_value_ms("99999999999999999999999", now, 5), HTTP_RETRY_AFTER_MAX_MS);
	assert_int_equal(http_retry_after_value_ms("Wed, 21 Oct 2015 07:28:30 GMT", now, 5), 30000);
	assert_int_equal(http_retry_after_value_ms("Wednesday, 21-Oct-15 07:29:00 GMT", now, 5), 60000);
	assert_int_equal(http_retry_after_value_ms("Wed Oct 21 07:28:10 2015", now, 5), 10000);
	assert_int_equal(http_retry_after_value_ms("Wed, 21 Oct 2015 07:00:00 GMT", now, 5), 0); /* past */
	assert_int_equal(http_retry_after_value_ms("Thu, 22 Oct 2015 07:28:00 GMT", now, 5),
			 HTTP_RETRY_AFTER_MAX_MS);
	assert_int_equal(http_retry_after_value_ms("-5", now, 5), 5);
	assert_int_equal(http_retry_after_value_ms("1.5", now, 5), 5);
	assert_int_equal(http_retry_after_value_ms("soon", now, 5), 5);
	assert_int_equal(http_retry_after_value_ms("", now, 5), 5);
	assert_int_equal(http_retry_after_value_ms(NULL, now, 5), 5);
}

static void test_status_retryable(void **state)
{
	(void)state;
	static const long yes[] = {408, 429, 500, 502, 503, 504, 507, 599};
	static const long no[] = {200, 201, 204, 301, 400, 401, 403, 404, 409, 412, 413, 501, 505, 600};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(http_status_retryable(yes[i]));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(http_status_retryable(no[i]));
}

static void test_url_redact(void **state)
{
	(void)state;
	char out[256];

	assert_string_equal(http_url_redact("https://h/p?a=1&code=xyz&b=2", out, sizeof(out)),
			    "https://h/p?a=1&code=***&b=2");
	assert_string_equal(http_url_redact("https://h/p?CLIENT_SECRET=x&sig=abc%2F", out, sizeof(out)),
			    "https://h/p?CLIENT_SECRET=***&sig=***");
	assert_string_equal(http_url_redact("https://u:pw@h:8/p?x=1#frag", out, sizeof(out)),
			    "https://u:***@h:8/p?x=1#frag");
	assert_string_equal(http_url_redact("https://h/p?codex=1&xcode=2&code", out, sizeof(out)),
			    "https://h/p?codex=1&xcode=2&code");
	assert_string_equal(http_url_redact("https://h/accounts(name='a@b')", out, sizeof(out)),
			    "https://h/accounts(name='a@b')");
	assert_string_equal(http_url_redact("https://h/p", out, 9), "https://");
	assert_int_equal(strlen(http_url_redact("https://h/p?sig=abcdef", out, 18)), 17);
	assert_null(strstr(out, "abc"));
}

static void test_insecure_warns_and_bad_ca_fails(void **state)
{
	(void)state;
	struct http_opts o = {.insecure = 1};
	struct http_client *c = NULL;
	char logbuf[4096] = "";
	int fds[2], saved;

	/* The first insecure client of this process (test_tls_verification runs later). Capture stderr
	 * (the logger's output) through a pipe. */
	assert_int_equal(pipe(fds), 0);
	saved = dup(2);
	dup2(fds[1], 2);
	log_init("test_http", LOG_INFO);
	assert_int_equal(http_client_new(&o, &c, err, sizeof(err)), 0);
	struct http_client *c2 = NULL;
	assert_int_equal(http_client_new(&o, &c2, err, sizeof(err)), 0); /* no second warning */
	http_client_free(c2);
	dup2(saved, 2);
	close(saved);
	close(fds[1]);
	ssize_t n = read(fds[0], logbuf, sizeof(logbuf) - 1);
	close(fds[0]);
	assert_true(n > 0);
	logbuf[n] = 0;
	assert_non_null(strstr(logbuf, "\"level\":\"warn\""));
	char *first = strstr(logbuf, "TLS certificate verification is disabled");
	assert_non_null(first);
	assert_null(strstr(first + 1, "TLS certificate verification is disabled"));
	http_client_free(c);

	struct http_opts bad = {.ca_file = "/nonexistent/ca.pem"};
	assert_int_equal(http_client_new(&bad, &c, err, sizeof(err)), HTTP_ERR);
	assert_null(c);
	assert_string_equal(err, "http: CA file /nonexistent/ca.pem is not readable: No such file or directory");
}

static void test_tls_verification(void **state)
{
	(void)state;
	struct sockaddr_in sa = {0};
	struct MHD_Daemon *d;
	struct http_client *c;
	struct http_response resp;
	char u[128], ca[] = "/tmp/dw-test-http-ca-XXXXXX";

	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d = MHD_start_daemon(MHD_USE_TLS | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
			     NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, completed,
			     NULL, MHD_OPTION_HTTPS_MEM_KEY, test_key_pem, MHD_OPTION_HTTPS_MEM_CERT, test_cert_pem,
			     MHD_OPTION_END);
	assert_non_null(d);
	snprintf(u, sizeof(u), "https://127.0.0.1:%u/status/200", MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
	struct http_request req = {.method = "GET", .url = u};

	/* Default: verification on, the self-signed certificate is refused (not a transport error). */
	assert_int_equal(http_client_new(NULL, &c, err, sizeof(err)), 0);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), HTTP_ERR);
	assert_non_null(strstr(err, "certificate"));
	print_message("# refused as expected: %s\n", err);
	http_client_free(c);

	/* Trusting that certificate through ca_file: verified and accepted. */
	int fd = mkstemp(ca);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, test_cert_pem, strlen(test_cert_pem)), (ssize_t)strlen(test_cert_pem));
	close(fd);
	struct http_opts with_ca = {.ca_file = ca};
	assert_int_equal(http_client_new(&with_ca, &c, err, sizeof(err)), 0);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	http_response_free(&resp);
	http_client_free(c);
	unlink(ca);

	/* Insecure: accepted without verification. */
	struct http_opts insecure = {.insecure = 1};
	assert_int_equal(http_client_new(&insecure, &c, err, sizeof(err)), 0);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	http_response_free(&resp);
	http_client_free(c);
	MHD_stop_daemon(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status_and_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_headers_body_and_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests_are_rejected_before_sending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_refused_masks_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unresolvable_host_is_transport_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_dropped_is_transport_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_alive_reuses_the_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_after_from_response, setup, teardown),
		cmocka_unit_test(test_retry_after_values),
		cmocka_unit_test(test_status_retryable),
		cmocka_unit_test(test_url_redact),
		cmocka_unit_test(test_insecure_warns_and_bad_ca_fails),
		cmocka_unit_test(test_tls_verification),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
