#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "harness.h"
#include "log.h"
#include "oauth.h"

/*
 * The token cache against a fake identity-platform token endpoint run inside this test with
 * libmicrohttpd on 127.0.0.1 (real HTTP over loopback). Time is a fake clock the test moves.
 */

#define SECRET "s3cr&t=+/ value~X"
#define SECRET_FORM "s3cr%26t%3D%2B%2F%20value~X"
#define SCOPE "https://org.crm.dynamics.com/.default"

static char err[1024];
/* oauth_config holds char * (it owns its strings when loaded): writable copies for the tests. */
static char cid[] = "11111111-2222-3333-4444-555555555555";
static char secret[] = SECRET;
static char scope[] = SCOPE;
static char empty[] = "";
static char short_id[] = "id";
static _Atomic long long fake_now = 1000000;

static long long fake_clock(void)
{
	return atomic_load(&fake_now);
}

/* What the endpoint answers; set by each test. `body` may contain %d, replaced by the hit number. */
struct endpoint {
	struct MHD_Daemon *d;
	unsigned port;
	atomic_int hits;
	unsigned status;
	char body[1024];
	int delay_ms;
	pthread_mutex_t mu;
	char last_form[1024];
	char last_ctype[128];
	char last_method[16];
};

struct upload {
	char data[2048];
	size_t len;
	int answered; /* one hit per request, even if libmicrohttpd calls the final phase again */
};

static enum MHD_Result on_token(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				const char *version, const char *upload_data, size_t *upload_data_size,
				void **con_cls)
{
	struct endpoint *e = cls;
	struct upload *up = *con_cls;
	(void)url;
	(void)version;

	if (!up) {
		*con_cls = calloc(1, sizeof(*up));
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		if (n > sizeof(up->data) - 1 - up->len)
			n = sizeof(up->data) - 1 - up->len;
		memcpy(up->data + up->len, upload_data, n);
		up->len += n;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (up->answered)
		return MHD_YES;
	up->answered = 1;
	int hit = atomic_fetch_add(&e->hits, 1) + 1;
	if (e->delay_ms)
		usleep((useconds_t)e->delay_ms * 1000);
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
	char body[1100];
	pthread_mutex_lock(&e->mu);
	snprintf(e->last_form, sizeof(e->last_form), "%.*s", (int)up->len, up->data);
	snprintf(e->last_ctype, sizeof(e->last_ctype), "%s", ct ? ct : "");
	snprintf(e->last_method, sizeof(e->last_method), "%s", method);
	snprintf(body, sizeof(body), e->body, hit);
	unsigned status = e->status;
	pthread_mutex_unlock(&e->mu);
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

static void respond(struct endpoint *e, unsigned status, const char *body)
{
	pthread_mutex_lock(&e->mu);
	e->status = status;
	snprintf(e->body, sizeof(e->body), "%s", body);
	pthread_mutex_unlock(&e->mu);
}

struct fixture {
	struct endpoint e;
	struct oauth *o;
	char url[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_in sa = {0};

	pthread_mutex_init(&f->e.mu, NULL);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->e.d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
				  on_token, &f->e, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_done,
				  NULL, MHD_OPTION_END);
	if (!f->e.d)
		return -1;
	f->e.port = MHD_get_daemon_info(f->e.d, MHD_DAEMON_INFO_BIND_PORT)->port;
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u/tenant-1/oauth2/v2.0/token", f->e.port);
	respond(&f->e, 200, "{\"token_type\":\"Bearer\",\"expires_in\":3600,\"ext_expires_in\":3600,"
			    "\"access_token\":\"eyJ0eXAi.tok%d.sig\"}");
	struct oauth_config cfg = {.token_url = f->url, .client_id = cid, .client_secret = secret, .scope = scope};
	struct oauth_opts opts = {.clock_ms = fake_clock};
	if (oauth_new(&cfg, &opts, &f->o, err, sizeof(err)) != 0)
		return -1;
	atomic_store(&fake_now, 1000000);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	oauth_free(f->o);
	MHD_stop_daemon(f->e.d);
	pthread_mutex_destroy(&f->e.mu);
	free(f);
	log_secret_clear();
	return 0;
}

/* oauth_token that must succeed; returns the token (caller frees). */
static char *token_ok(struct fixture *f)
{
	char *t = NULL;
	int rc = oauth_token(f->o, &t, err, sizeof(err));
	if (rc != 0)
		print_error("oauth_token: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(t);
	return t;
}

static void test_form_request_and_caching(void **state)
{
	struct fixture *f = *state;
	char *first = token_ok(f);

	assert_string_equal(first, "eyJ0eXAi.tok1.sig");
	assert_string_equal(f->e.last_method, "POST");
	assert_string_equal(f->e.last_ctype, "application/x-www-form-urlencoded");
	assert_string_equal(f->e.last_form, "grant_type=client_credentials"
					    "&client_id=11111111-2222-3333-4444-555555555555"
					    "&client_secret=" SECRET_FORM
					    "&scope=https%3A%2F%2Forg.crm.dynamics.com%2F.default");
	for (int i = 0; i < 50; i++) {
		char *t = token_ok(f);
		assert_string_equal(t, first);
		free(t);
		atomic_fetch_add(&fake_now, 1000); /* 50 s pass in all: far from expiry */
	}
	assert_int_equal(atomic_load(&f->e.hits), 1);
	assert_int_equal(oauth_fetch_count(f->o), 1);
	free(first);
}

static void test_refresh_when_near_expiry(void **state)
{
	struct fixture *f = *state;
	long long t0 = atomic_load(&fake_now);
	char *t;

	/* 3600 s lifetime: refresh once less than max(60 s, 360 s) = 360 s remain, i.e. from 3240 s. */
	t = token_ok(f);
	assert_string_equal(t, "eyJ0eXAi.tok1.sig");
	free(t);
	assert_int_equal(oauth_fetch_count(f->o), 1);
	atomic_store(&fake_now, t0 + 3239999);
	t = token_ok(f);
	assert_int_equal(oauth_fetch_count(f->o), 1);
	assert_string_equal(t, "eyJ0eXAi.tok1.sig");
	free(t);
	assert_int_equal(atomic_load(&f->e.hits), 1);
	atomic_store(&fake_now, t0 + 3240000);
	t = token_ok(f);
	assert_string_equal(t, "eyJ0eXAi.tok2.sig");
	free(t);
	assert_int_equal(atomic_load(&f->e.hits), 2);

	/* 300 s lifetime (as a string, like the v1 endpoint): 10% is 30 s, so the 60 s floor rules. */
	respond(&f->e, 200, "{\"token_type\":\"bearer\",\"expires_in\":\"300\",\"access_token\":\"short%d\"}");
	oauth_invalidate(f->o, NULL);
	long long t1 = atomic_load(&fake_now);
	t = token_ok(f);
	assert_string_equal(t, "short3");
	free(t);
	atomic_store(&fake_now, t1 + 239999);
	free(token_ok(f));
	assert_int_equal(atomic_load(&f->e.hits), 3);
	atomic_store(&fake_now, t1 + 240000);
	t = token_ok(f);
	assert_string_equal(t, "short4");
	free(t);
	assert_int_equal(atomic_load(&f->e.hits), 4);
}

static void test_failed_refresh_keeps_valid_token_until_expiry(void **state)
{
	struct fixture *f = *state;
	long long t0 = atomic_load(&fake_now);
	char *t;

	free(token_ok(f));
	respond(&f->e, 503, "{\"error\":\"temporarily_unavailable\",\"error_description\":\"try later\"}");
	atomic_store(&fake_now, t0 + 3300000); /* inside the refresh window, before expiry */
	t = token_ok(f);
	assert_string_equal(t, "eyJ0eXAi.tok1.sig");
	free(t);
	assert_int_equal(atomic_load(&f->e.hits), 2); /* it did try */

	atomic_store(&fake_now, t0 + 3600000); /* expired: the failure surfaces */
	t = NULL;
	assert_int_equal(oauth_token(f->o, &t, err, sizeof(err)), OAUTH_ERR_RETRY);
	assert_null(t);
	char want[512];
	snprintf(want, sizeof(want), "token endpoint %s: HTTP 503 temporarily_unavailable: try later", f->url);
	assert_string_equal(err, want);
}

static void test_invalidate_after_401(void **state)
{
	struct fixture *f = *state;
	char *a = token_ok(f), *b, *c;

	oauth_invalidate(f->o, "some-older-token"); /* not the cached one: ignored */
	b = token_ok(f);
	assert_string_equal(a, b);
	assert_int_equal(atomic_load(&f->e.hits), 1);
	free(b);

	oauth_invalidate(f->o, a); /* the resource said 401 to this token */
	b = token_ok(f);
	assert_string_equal(b, "eyJ0eXAi.tok2.sig");
	assert_int_equal(atomic_load(&f->e.hits), 2);

	oauth_invalidate(f->o, a); /* a late 401 for the old token does not drop the new one */
	c = token_ok(f);
	assert_string_equal(c, b);
	free(c);
	oauth_invalidate(f->o, NULL);
	c = token_ok(f);
	assert_string_equal(c, "eyJ0eXAi.tok3.sig");
	free(a);
	free(b);
	free(c);
}

static void expect_error(struct fixture *f, unsigned status, const char *body, int rc, const char *want_tail)
{
	char *t = NULL, want[1024];

	respond(&f->e, status, body);
	oauth_invalidate(f->o, NULL);
	assert_int_equal(oauth_token(f->o, &t, err, sizeof(err)), rc);
	assert_null(t);
	snprintf(want, sizeof(want), "token endpoint %s: %s", f->url, want_tail);
	assert_string_equal(err, want);
	assert_null(strstr(err, SECRET));
	assert_null(strstr(err, SECRET_FORM));
}

static void test_error_bodies(void **state)
{
	struct fixture *f = *state;

	expect_error(f, 401,
		     "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid client secret "
		     "provided ('" SECRET "').\\r\\nTrace ID: 1\",\"error_codes\":[7000215]}",
		     OAUTH_ERR, "HTTP 401 invalid_client: AADSTS7000215: Invalid client secret provided ('***').  "
				"Trace ID: 1");
	expect_error(f, 400, "{\"error\":\"invalid_scope\"}", OAUTH_ERR, "HTTP 400 invalid_scope");
	expect_error(f, 502, "<html>bad gateway</html>", OAUTH_ERR_RETRY,
		     "HTTP 502 no OAuth error in the response body");
	expect_error(f, 429, "{\"error\":\"throttled\"}", OAUTH_ERR_RETRY, "HTTP 429 throttled");
	expect_error(f, 200, "{\"token_type\":\"Bearer\",\"expires_in\":3600", OAUTH_ERR,
		     "HTTP 200 but the body is not a JSON object");
	expect_error(f, 200, "{\"token_type\":\"Bearer\",\"expires_in\":3600}", OAUTH_ERR,
		     "no access_token in the response");
	expect_error(f, 200, "{\"token_type\":\"MAC\",\"expires_in\":3600,\"access_token\":\"x\"}", OAUTH_ERR,
		     "token_type is \"MAC\", expected Bearer");
	expect_error(f, 200, "{\"token_type\":\"Bearer\",\"expires_in\":-5,\"access_token\":\"x\"}", OAUTH_ERR,
		     "expires_in is not a positive number of seconds");
	expect_error(f, 200, "{\"token_type\":\"Bearer\",\"expires_in\":\"soon\",\"access_token\":\"x\"}",
		     OAUTH_ERR, "expires_in is not a positive number of seconds");
	expect_error(f, 200, "{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":\"a\\r\\nb\"}",
		     OAUTH_ERR, "access_token holds characters not allowed in a header");
	assert_int_equal(oauth_fetch_count(f->o), 10);
}

static void test_unreachable_endpoint_is_retryable(void **state)
{
	(void)state;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {0};
	socklen_t len = sizeof(sa);
	char url[128];
	struct oauth *o;
	char *t = NULL;

	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0); /* bound, not listening */
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/token", ntohs(sa.sin_port));
	struct oauth_config cfg = {.token_url = url, .client_id = short_id, .client_secret = secret, .scope = scope};
	assert_int_equal(oauth_new(&cfg, NULL, &o, err, sizeof(err)), 0);
	assert_int_equal(oauth_token(o, &t, err, sizeof(err)), OAUTH_ERR_RETRY);
	assert_null(t);
	assert_non_null(strstr(err, "token endpoint: POST http://127.0.0.1:"));
	assert_null(strstr(err, SECRET_FORM));
	oauth_free(o);
	close(s);

	cfg.scope = empty;
	assert_int_equal(oauth_new(&cfg, NULL, &o, err, sizeof(err)), OAUTH_ERR);
	assert_null(o);
	log_secret_clear();
}

/* Runs fn with stderr sent to a file and returns what was written (static buffer). */
static const char *capture_stderr(void (*fn)(struct fixture *), struct fixture *f)
{
	static char out[65536];
	char path[] = "/tmp/dw-test-oauth-XXXXXX";
	int fd = mkstemp(path), saved = dup(2);

	assert_true(fd >= 0);
	unlink(path);
	dup2(fd, 2);
	fn(f);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	ssize_t n = read(fd, out, sizeof(out) - 1);
	close(fd);
	out[n > 0 ? n : 0] = 0;
	return out;
}

static void noisy_flow(struct fixture *f)
{
	char *t = NULL;
	log_init("test_oauth", LOG_DEBUG);
	t = token_ok(f);
	/* Someone logging the token or the secret by mistake still leaks nothing. */
	log_info("careless", "value", t, "other", SECRET);
	oauth_invalidate(f->o, t);
	free(t);
	respond(&f->e, 401, "{\"error\":\"invalid_client\",\"error_description\":\"bad secret " SECRET "\"}");
	atomic_fetch_add(&fake_now, 10);
	assert_int_equal(oauth_token(f->o, &t, err, sizeof(err)), OAUTH_ERR);
	log_error("token failed", "reason", err);
}

static void test_secret_and_token_never_logged(void **state)
{
	struct fixture *f = *state;
	const char *out = capture_stderr(noisy_flow, f);

	assert_non_null(strstr(out, "oauth: token fetched"));
	assert_non_null(strstr(out, "\"expires_in_s\":\"3600\""));
	assert_non_null(strstr(out, "\"endpoint\":\"http://127.0.0.1:")); /* the URL itself is no secret */
	assert_non_null(strstr(out, "token failed"));
	assert_non_null(strstr(out, "careless"));
	assert_null(strstr(out, "eyJ0eXAi.tok1.sig"));
	assert_null(strstr(out, SECRET));
	assert_null(strstr(out, SECRET_FORM));
}

struct racer {
	struct fixture *f;
	int failures;
	char first[64];
};

static void *race(void *arg)
{
	struct racer *r = arg;
	char e[512];
	for (int i = 0; i < 100; i++) {
		char *t = NULL;
		if (oauth_token(r->f->o, &t, e, sizeof(e)) != 0) {
			r->failures++;
			continue;
		}
		if (!r->first[0])
			snprintf(r->first, sizeof(r->first), "%s", t);
		else if (strcmp(r->first, t) != 0)
			r->failures++;
		free(t);
	}
	return NULL;
}

static void test_concurrent_callers_share_one_fetch(void **state)
{
	struct fixture *f = *state;
	struct racer r[8];
	pthread_t t[8];

	f->e.delay_ms = 200; /* the fetch is slow, so every thread arrives while it runs */
	for (int i = 0; i < 8; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].f = f;
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].failures, 0);
		assert_string_equal(r[i].first, "eyJ0eXAi.tok1.sig");
	}
	assert_int_equal(atomic_load(&f->e.hits), 1);
}

/* Unsets every variable oauth_config_load reads, so the test sees only what it sets (a shell that
 * sourced a stack's settings holds DW_FO_CLIENT_SECRET, which conflicts with the _FILE form). */
static void clear_oauth_env(void)
{
	static const char *const vars[] = {"DW_CE_TOKEN_URL", "DW_CE_CLIENT_ID", "DW_CE_CLIENT_SECRET",
					   "DW_CE_CLIENT_SECRET_FILE", "DW_CE_SCOPE", "DW_FO_TOKEN_URL",
					   "DW_FO_CLIENT_ID", "DW_FO_CLIENT_SECRET", "DW_FO_CLIENT_SECRET_FILE",
					   "DW_FO_SCOPE"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void test_config_load(void **state)
{
	(void)state;
	struct oauth_config cfg;
	char path[] = "/tmp/dw-test-oauth-secret-XXXXXX";
	clear_oauth_env();

	setenv("DW_CE_TOKEN_URL", "https://login.microsoftonline.com/t/oauth2/v2.0/token", 1);
	setenv("DW_CE_CLIENT_ID", "cid", 1);
	setenv("DW_CE_CLIENT_SECRET", "ce-secret-1234", 1);
	setenv("DW_CE_SCOPE", SCOPE, 1);
	assert_int_equal(oauth_config_load("CE", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.token_url, "https://login.microsoftonline.com/t/oauth2/v2.0/token");
	assert_string_equal(cfg.client_id, "cid");
	assert_string_equal(cfg.client_secret, "ce-secret-1234");
	assert_string_equal(cfg.scope, SCOPE);
	oauth_config_free(&cfg);
	/* The secret was registered with the logger. */
	char line[512];
	log_format(line, sizeof(line), LOG_INFO, "x", "v", "ce-secret-1234", NULL);
	assert_null(strstr(line, "ce-secret-1234"));

	/* FO with the secret from a file; a missing variable is named. */
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "fo-secret-5678\n", 15), 15);
	close(fd);
	unsetenv("DW_FO_TOKEN_URL");
	assert_int_equal(oauth_config_load("FO", &cfg, err, sizeof(err)), OAUTH_ERR);
	assert_non_null(strstr(err, "DW_FO_TOKEN_URL"));
	assert_null(cfg.token_url);
	setenv("DW_FO_TOKEN_URL", "http://127.0.0.1:1/token", 1);
	setenv("DW_FO_CLIENT_ID", "fid", 1);
	setenv("DW_FO_CLIENT_SECRET_FILE", path, 1);
	setenv("DW_FO_SCOPE", "https://fo.example/.default", 1);
	assert_int_equal(oauth_config_load("FO", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.client_secret, "fo-secret-5678");
	oauth_config_free(&cfg);
	setenv("DW_FO_TOKEN_URL", "ftp://x/token", 1);
	assert_int_equal(oauth_config_load("FO", &cfg, err, sizeof(err)), OAUTH_ERR);
	assert_string_equal(err, "DW_FO_TOKEN_URL: must be an http:// or https:// URL");
	assert_int_equal(oauth_config_load("XX", &cfg, err, sizeof(err)), OAUTH_ERR);
	unlink(path);
	clear_oauth_env();
	log_secret_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_form_request_and_caching, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_when_near_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_refresh_keeps_valid_token_until_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_after_401, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_bodies, setup, teardown),
		cmocka_unit_test(test_unreachable_endpoint_is_retryable),
		cmocka_unit_test_setup_teardown(test_secret_and_token_never_logged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_callers_share_one_fetch, setup, teardown),
		cmocka_unit_test(test_config_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
