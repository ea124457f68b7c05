#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "http.h"
#include "httpd.h"
#include "metrics.h"

/*
 * The embedded server on 127.0.0.1, ephemeral port, driven by the project's HTTP client (real
 * HTTP over loopback).
 */

static char err[512];

struct fixture {
	struct httpd *h;
	struct metrics *m;
	struct http_client *c;
	atomic_int calls;     /* handler invocations */
	atomic_int blocked;   /* the slow handler is inside */
	atomic_int release;   /* lets the slow handler return */
	atomic_int handler_errors;
	char last_body[256];  /* what the echo handler saw */
	size_t last_body_len;
};

static void echo_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
	struct fixture *f = arg;
	char out[1024];
	const char *ct = httpd_request_header(req, "content-type");
	const char *tok = httpd_request_query(req, "token");
	const char *tok_upper = httpd_request_query(req, "TOKEN");

	atomic_fetch_add(&f->calls, 1);
	f->last_body_len = req->body_len < sizeof(f->last_body) ? req->body_len : sizeof(f->last_body);
	memcpy(f->last_body, req->body, f->last_body_len);
	int n = snprintf(out, sizeof(out),
			 "{\"method\":\"%s\",\"path\":\"%s\",\"ct\":\"%s\",\"token\":\"%s\",\"TOKEN\":\"%s\","
			 "\"nquery\":%zu,\"len\":%zu,\"nul\":%d}",
			 req->method, req->path, ct ? ct : "-", tok ? tok : "-", tok_upper ? tok_upper : "-",
			 req->nquery, req->body_len, req->body[req->body_len] == 0);
	/* cmocka asserts must not run on a server thread: record problems, the test checks them. */
	if (httpd_response_set(resp, 202, "application/json", out, (size_t)n) != 0 ||
	    httpd_response_header(resp, "X-Handled-By", "echo") != 0 ||
	    httpd_response_header(resp, "Bad Name", "x") != -1 ||
	    httpd_response_header(resp, "X-Split", "a\r\nInjected: 1") != -1)
		atomic_store(&f->handler_errors, 1);
}

static void slow_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
	struct fixture *f = arg;
	(void)req;
	atomic_store(&f->blocked, 1);
	long long deadline = harness_now_ms() + 10000;
	while (!atomic_load(&f->release) && harness_now_ms() < deadline)
		usleep(5000);
	if (httpd_response_set(resp, 200, NULL, "slow done", 9) != 0)
		resp->status = 0;
}

static void silent_handler(void *arg, const struct httpd_request *req, struct httpd_response *resp)
{
	(void)arg;
	(void)req;
	(void)resp; /* leaves no status: the server answers 500 */
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct metrics_family *fam;

	f->m = metrics_new();
	if (!f->m || metrics_counter_new(f->m, "dw_test_total", "A test counter.", NULL, &fam, err, sizeof(err)))
		return -1;
	metrics_counter_add(fam, NULL, 3);
	struct httpd_opts o = {.addr = "127.0.0.1", .port = 0, .metrics = f->m};
	if (httpd_new(&o, &f->h, err, sizeof(err)) != 0)
		return -1;
	if (httpd_route(f->h, "POST", "/hooks/ce", 100, echo_handler, f, err, sizeof(err)) != 0 ||
	    httpd_route(f->h, "PUT", "/hooks/ce", 0, echo_handler, f, err, sizeof(err)) != 0 ||
	    httpd_route(f->h, "GET", "/slow", 0, slow_handler, f, err, sizeof(err)) != 0 ||
	    httpd_route(f->h, "GET", "/silent", 0, silent_handler, f, err, sizeof(err)) != 0)
		return -1;
	if (httpd_start(f->h, err, sizeof(err)) != 0)
		return -1;
	if (http_client_new(NULL, &f->c, err, sizeof(err)) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int handler_errors = atomic_load(&f->handler_errors);
	atomic_store(&f->release, 1);
	http_client_free(f->c);
	httpd_free(f->h);
	metrics_free(f->m);
	free(f);
	return handler_errors ? -1 : 0;
}

/* One request; returns the status and fills resp (caller frees). */
static long request(struct fixture *f, const char *method, const char *path, const char *body, size_t len,
		    const struct http_header *hdrs, size_t nhdrs, struct http_response *resp)
{
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", httpd_port(f->h), path);
	struct http_request req = {.method = method, .url = url, .headers = hdrs, .nheaders = nhdrs, .body = body,
				   .body_len = len};
	assert_int_equal(http_do(f->c, &req, resp, err, sizeof(err)), 0);
	return resp->status;
}

static void expect(struct fixture *f, const char *path, long status, const char *body)
{
	struct http_response resp;
	assert_int_equal(request(f, "GET", path, NULL, 0, NULL, 0, &resp), status);
	assert_string_equal(resp.body, body);
	http_response_free(&resp);
}

static void test_health_and_ready_transitions(void **state)
{
	struct fixture *f = *state;

	assert_true(httpd_port(f->h) > 0);
	expect(f, "/healthz", 200, "ok\n");
	expect(f, "/readyz", 503, "starting\n");
	httpd_set_ready(f->h, 1, NULL);
	expect(f, "/readyz", 200, "ready\n");
	httpd_set_ready(f->h, 0, "kafka: broker unreachable");
	expect(f, "/readyz", 503, "kafka: broker unreachable\n");
	httpd_set_alive(f->h, 0);
	expect(f, "/healthz", 503, "not alive\n");
	httpd_set_alive(f->h, 1);
	expect(f, "/healthz", 200, "ok\n");

	/* HEAD works on the built-ins; other methods are 405. */
	struct http_response resp;
	assert_int_equal(request(f, "HEAD", "/healthz", NULL, 0, NULL, 0, &resp), 200);
	assert_int_equal(resp.body_len, 0);
	http_response_free(&resp);
	assert_int_equal(request(f, "POST", "/readyz", "x", 1, NULL, 0, &resp), 405);
	assert_string_equal(http_response_header(&resp, "Allow"), "GET, HEAD");
	http_response_free(&resp);
}

static void test_liveness_timeout(void **state)
{
	(void)state;
	struct httpd_opts o = {.addr = "127.0.0.1", .liveness_timeout_ms = 300};
	struct httpd *h;
	struct http_client *c;
	struct http_response resp;
	char url[128];

	assert_int_equal(httpd_new(&o, &h, err, sizeof(err)), 0);
	assert_int_equal(httpd_start(h, err, sizeof(err)), 0);
	assert_int_equal(http_client_new(NULL, &c, err, sizeof(err)), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/healthz", httpd_port(h));
	struct http_request req = {.method = "GET", .url = url};

	httpd_heartbeat(h);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	http_response_free(&resp);

	/* Without heartbeats, /healthz turns 503 once the timeout passes (polled with a deadline). */
	long long start = harness_now_ms(), deadline = start + 5000;
	long status = 200;
	while (status == 200 && harness_now_ms() < deadline) {
		usleep(20000);
		assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
		status = resp.status;
		if (status == 503)
			assert_non_null(strstr(resp.body, "loop stalled: no heartbeat for "));
		http_response_free(&resp);
	}
	assert_int_equal(status, 503);
	assert_true(harness_now_ms() - start >= 250);

	httpd_heartbeat(h);
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	http_response_free(&resp);
	http_client_free(c);
	httpd_free(h);
}

static void test_metrics_endpoint(void **state)
{
	struct fixture *f = *state;
	struct http_response resp;
	char *want;
	size_t len;

	assert_int_equal(request(f, "GET", "/metrics", NULL, 0, NULL, 0, &resp), 200);
	assert_string_equal(http_response_header(&resp, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
	assert_int_equal(metrics_render(f->m, &want, &len), 0);
	assert_string_equal(resp.body, want);
	assert_non_null(strstr(resp.body, "dw_test_total 3\n"));
	free(want);
	http_response_free(&resp);

	/* A server without a registry has no /metrics. */
	struct httpd *h;
	struct httpd_opts o = {.addr = "127.0.0.1"};
	char url[128];
	assert_int_equal(httpd_new(&o, &h, err, sizeof(err)), 0);
	assert_int_equal(httpd_start(h, err, sizeof(err)), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/metrics", httpd_port(h));
	struct http_request req = {.method = "GET", .url = url};
	assert_int_equal(http_do(f->c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 404);
	http_response_free(&resp);
	httpd_free(h);
}

static void test_custom_post_route(void **state)
{
	struct fixture *f = *state;
	struct http_response resp;
	static const char body[] = {'{', '"', 'a', '"', ':', '1', '}', 0, 'z'};
	const struct http_header hdrs[] = {{"Content-Type", "application/json"}};

	assert_int_equal(request(f, "POST", "/hooks/ce?token=abc%20d&x&TOKEN=up", body, sizeof(body), hdrs, 1,
				 &resp),
			 202);
	assert_string_equal(resp.body, "{\"method\":\"POST\",\"path\":\"/hooks/ce\",\"ct\":\"application/json\","
				       "\"token\":\"abc d\",\"TOKEN\":\"up\",\"nquery\":3,\"len\":9,\"nul\":1}");
	assert_string_equal(http_response_header(&resp, "content-type"), "application/json");
	assert_string_equal(http_response_header(&resp, "X-Handled-By"), "echo");
	assert_null(http_response_header(&resp, "X-Split"));
	assert_int_equal(f->last_body_len, sizeof(body));
	assert_memory_equal(f->last_body, body, sizeof(body));
	http_response_free(&resp);

	/* The same path with another registered method reaches the same handler. */
	assert_int_equal(request(f, "PUT", "/hooks/ce", NULL, 0, NULL, 0, &resp), 202);
	assert_non_null(strstr(resp.body, "\"method\":\"PUT\""));
	assert_non_null(strstr(resp.body, "\"len\":0"));
	http_response_free(&resp);
	assert_int_equal(atomic_load(&f->calls), 2);

	/* A handler that sets no status gives 500. */
	assert_int_equal(request(f, "GET", "/silent", NULL, 0, NULL, 0, &resp), 500);
	http_response_free(&resp);
}

static void test_oversize_body_is_413_without_handler(void **state)
{
	struct fixture *f = *state;
	struct http_response resp;
	char big[5000];
	memset(big, 'b', sizeof(big));

	/* Exactly at the cap (100): accepted. */
	assert_int_equal(request(f, "POST", "/hooks/ce", big, 100, NULL, 0, &resp), 202);
	http_response_free(&resp);
	assert_int_equal(atomic_load(&f->calls), 1);

	/* One over, announced by Content-Length. */
	assert_int_equal(request(f, "POST", "/hooks/ce", big, 101, NULL, 0, &resp), 413);
	assert_string_equal(resp.body, "request body larger than 100 bytes\n");
	http_response_free(&resp);

	/* Chunked (no Content-Length): cut off while reading. */
	const struct http_header chunked[] = {{"Transfer-Encoding", "chunked"}};
	assert_int_equal(request(f, "POST", "/hooks/ce", big, sizeof(big), chunked, 1, &resp), 413);
	http_response_free(&resp);
	assert_int_equal(atomic_load(&f->calls), 1);

	/* The server still serves afterwards. */
	assert_int_equal(request(f, "POST", "/hooks/ce", big, 10, chunked, 1, &resp), 202);
	assert_non_null(strstr(resp.body, "\"len\":10"));
	http_response_free(&resp);
	assert_int_equal(atomic_load(&f->calls), 2);
}

static void test_oversize_headers_refused_by_libmicrohttpd(void **state)
{
	struct fixture *f = *state;
	struct http_response resp;
	static char big[7000];
	struct http_header hdrs[6];
	static const char *const names[] = {"X-A", "X-B", "X-C", "X-D", "X-E", "X-F"};

	memset(big, 'h', sizeof(big) - 1);
	for (int i = 0; i < 6; i++) {
		hdrs[i].name = names[i];
		hdrs[i].value = big;
	}
	long status = request(f, "POST", "/hooks/ce", "x", 1, hdrs, 6, &resp);
	print_message("# 42 KB of headers: HTTP %ld\n", status);
	assert_int_equal(status, 431);
	http_response_free(&resp);
	assert_int_equal(atomic_load(&f->calls), 0);
}

static void test_unknown_path_404_and_wrong_method_405(void **state)
{
	struct fixture *f = *state;
	struct http_response resp;

	assert_int_equal(request(f, "GET", "/nope", NULL, 0, NULL, 0, &resp), 404);
	http_response_free(&resp);
	assert_int_equal(request(f, "GET", "/hooks/ce/extra", NULL, 0, NULL, 0, &resp), 404);
	http_response_free(&resp);
	assert_int_equal(request(f, "DELETE", "/hooks/ce", NULL, 0, NULL, 0, &resp), 405);
	assert_string_equal(http_response_header(&resp, "Allow"), "POST, PUT");
	http_response_free(&resp);
	assert_int_equal(atomic_load(&f->calls), 0);
}

struct bg {
	struct fixture *f;
	long status;
};

static void *bg_slow(void *arg)
{
	struct bg *b = arg;
	struct http_client *c;
	struct http_response resp;
	char url[128], e[256];
	if (http_client_new(NULL, &c, e, sizeof(e)) != 0)
		return NULL;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/slow", httpd_port(b->f->h));
	struct http_request req = {.method = "GET", .url = url};
	if (http_do(c, &req, &resp, e, sizeof(e)) == 0) {
		b->status = resp.status;
		http_response_free(&resp);
	}
	http_client_free(c);
	return NULL;
}

static void test_blocking_handler_does_not_stall_health(void **state)
{
	struct fixture *f = *state;
	struct bg b = {.f = f};
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, bg_slow, &b), 0);
	long long deadline = harness_now_ms() + 5000;
	while (!atomic_load(&f->blocked) && harness_now_ms() < deadline)
		usleep(5000);
	assert_true(atomic_load(&f->blocked));
	expect(f, "/healthz", 200, "ok\n"); /* served while the slow handler holds its thread */
	atomic_store(&f->release, 1);
	pthread_join(t, NULL);
	assert_int_equal(b.status, 200);
}

static void test_stop_and_route_rules(void **state)
{
	struct fixture *f = *state;
	unsigned port = httpd_port(f->h);
	char url[128];

	/* Registration rules. */
	assert_int_equal(httpd_route(f->h, "GET", "/late", 0, echo_handler, f, err, sizeof(err)), -1);
	assert_string_equal(err, "httpd: route GET /late added after start");

	struct httpd *h;
	struct httpd_opts o = {.addr = "127.0.0.1", .port = port};
	assert_int_equal(httpd_new(&o, &h, err, sizeof(err)), 0);
	assert_int_equal(httpd_route(h, "GET", "/metrics", 0, echo_handler, f, err, sizeof(err)), -1);
	assert_string_equal(err, "httpd: /metrics is a built-in path");
	assert_int_equal(httpd_route(h, "GET", "/a", 0, echo_handler, f, err, sizeof(err)), 0);
	assert_int_equal(httpd_route(h, "GET", "/a", 0, echo_handler, f, err, sizeof(err)), -1);
	assert_string_equal(err, "httpd: route GET /a registered twice");
	assert_int_equal(httpd_route(h, "GET", "a", 0, echo_handler, f, err, sizeof(err)), -1);
	/* The port is taken by the running fixture server. */
	assert_int_equal(httpd_start(h, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot listen on 127.0.0.1 port"));
	assert_int_equal(httpd_port(h), 0);
	httpd_free(h);

	/* Stop: the port no longer answers; stopping twice is harmless. */
	httpd_stop(f->h);
	httpd_stop(f->h);
	assert_int_equal(httpd_port(f->h), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/healthz", port);
	struct http_client *c;
	struct http_response resp;
	assert_int_equal(http_client_new(NULL, &c, err, sizeof(err)), 0);
	struct http_request req = {.method = "GET", .url = url};
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), HTTP_ERR_TRANSPORT);
	http_client_free(c);

	assert_int_equal(httpd_new(&(struct httpd_opts){.addr = "localhost"}, &h, err, sizeof(err)), -1);
	assert_string_equal(err, "httpd: listen address \"localhost\" is not an IPv4 or IPv6 literal");
	assert_null(h);
}

static void test_ipv6_loopback(void **state)
{
	(void)state;
	struct httpd *h;
	struct http_client *c;
	struct http_response resp;
	char url[128];

	assert_int_equal(httpd_new(&(struct httpd_opts){.addr = "::1"}, &h, err, sizeof(err)), 0);
	if (httpd_start(h, err, sizeof(err)) != 0) {
		/* No IPv6 on this host: the failure must say so clearly. */
		assert_non_null(strstr(err, "cannot listen on ::1"));
		httpd_free(h);
		return;
	}
	assert_int_equal(http_client_new(NULL, &c, err, sizeof(err)), 0);
	snprintf(url, sizeof(url), "http://[::1]:%u/healthz", httpd_port(h));
	struct http_request req = {.method = "GET", .url = url};
	assert_int_equal(http_do(c, &req, &resp, err, sizeof(err)), 0);
	assert_int_equal(resp.status, 200);
	http_response_free(&resp);
	http_client_free(c);
	httpd_free(h);
}

static void test_config_load(void **state)
{
	(void)state;
	struct httpd_config cfg;

	unsetenv("DW_HTTP_ADDR");
	unsetenv("DW_HTTP_PORT");
	assert_int_equal(httpd_config_load(&cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.addr, "0.0.0.0");
	assert_int_equal(cfg.port, 8080);
	httpd_config_free(&cfg);

	setenv("DW_HTTP_ADDR", "127.0.0.1", 1);
	setenv("DW_HTTP_PORT", "0", 1);
	assert_int_equal(httpd_config_load(&cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.addr, "127.0.0.1");
	assert_int_equal(cfg.port, 0);
	httpd_config_free(&cfg);

	setenv("DW_HTTP_PORT", "70000", 1);
	assert_int_equal(httpd_config_load(&cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "DW_HTTP_PORT"));
	assert_null(cfg.addr);
	unsetenv("DW_HTTP_ADDR");
	unsetenv("DW_HTTP_PORT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_health_and_ready_transitions, setup, teardown),
		cmocka_unit_test(test_liveness_timeout),
		cmocka_unit_test_setup_teardown(test_metrics_endpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_custom_post_route, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize_body_is_413_without_handler, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize_headers_refused_by_libmicrohttpd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_path_404_and_wrong_method_405, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocking_handler_does_not_stall_health, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_route_rules, setup, teardown),
		cmocka_unit_test(test_ipv6_loopback),
		cmocka_unit_test(test_config_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
