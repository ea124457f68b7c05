#ifndef DW_TEST_EMU_CLIENT_H
#define DW_TEST_EMU_CLIENT_H

/*
 * Raw-HTTP helpers for the emulator conformance suites (test_emu_*.c): every request is written
 * in the documented wire format with libcurl, so the suites test the protocol, not the emulator's
 * internals. Include after <cmocka.h> and harness.h. Functions are static inline so that each
 * suite uses what it needs without unused-function warnings. A suite that needs an emulator to
 * itself (restart, reset) starts a private one (emu_private_*): own port, own database.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>

#define EMU_BODY_MAX (64 * 1024 * 1024)

struct emu_resp {
	long status;
	char *body;
	size_t len;
	char headers[16384];
	size_t hlen;
};

static inline size_t emu_body_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct emu_resp *r = ud;
	size_t add = sz * n;
	if (!r) /* body not wanted */
		return add;
	if (r->len + add > EMU_BODY_MAX)
		return 0;
	char *nb = realloc(r->body, r->len + add + 1);
	if (!nb)
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, p, add);
	r->len += add;
	r->body[r->len] = '\0';
	return add;
}

static inline size_t emu_header_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct emu_resp *r = ud;
	size_t add = sz * n;
	if (r->hlen + add < sizeof(r->headers)) {
		memcpy(r->headers + r->hlen, p, add);
		r->hlen += add;
		r->headers[r->hlen] = '\0';
	}
	return add;
}

static inline void emu_resp_free(struct emu_resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* One request. `headers` is a NULL-terminated list of "Name: value" lines (may be NULL). */
static inline void emu_http(const char *method, const char *url, const char *const *headers, const char *body,
			    struct emu_resp *out)
{
	memset(out, 0, sizeof(*out));
	CURL *c = curl_easy_init();
	assert_non_null(c);
	struct curl_slist *h = NULL;
	for (size_t i = 0; headers && headers[i]; i++)
		h = curl_slist_append(h, headers[i]);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, emu_body_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, emu_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK)
		fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

/* Value of a response header (first match, case-insensitive) copied into buf; NULL when absent. */
static inline const char *emu_header(const struct emu_resp *r, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);
	const char *p = r->headers;
	while (*p) {
		const char *eol = strstr(p, "\r\n");
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);
		if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			snprintf(buf, len, "%.*s", (int)(ll - (size_t)(v - p)), v);
			return buf;
		}
		p += ll + (eol ? 2 : 0);
		if (!eol)
			break;
	}
	return NULL;
}

/* Parses the body as JSON (fails the test when it is not). Caller cJSON_Delete()s. */
static inline cJSON *emu_json(const struct emu_resp *r)
{
	cJSON *j = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
	if (!j)
		fail_msg("response %ld is not JSON: %.300s", r->status, r->body ? r->body : "(empty)");
	return j;
}

/* error.code of an OData error body, copied into buf. */
static inline const char *emu_error_code(const struct emu_resp *r, char *buf, size_t len)
{
	cJSON *j = emu_json(r);
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
	assert_true(cJSON_IsString(code));
	snprintf(buf, len, "%s", code->valuestring);
	cJSON_Delete(j);
	return buf;
}

/* A bearer token for flavour "CE" or "FO" from the stack's token endpoint. Caller frees. */
static inline char *emu_token(const char *flavour)
{
	char name[64];
	snprintf(name, sizeof(name), "DW_%s_TOKEN_URL", flavour);
	const char *url = harness_env(name);
	snprintf(name, sizeof(name), "DW_%s_CLIENT_ID", flavour);
	const char *id = harness_env(name);
	snprintf(name, sizeof(name), "DW_%s_CLIENT_SECRET", flavour);
	const char *secret = harness_env(name);
	snprintf(name, sizeof(name), "DW_%s_SCOPE", flavour);
	const char *scope = harness_env(name);
	CURL *c = curl_easy_init();
	char *eid = curl_easy_escape(c, id, 0), *esecret = curl_easy_escape(c, secret, 0),
	     *escope = curl_easy_escape(c, scope, 0);
	char form[2048];
	snprintf(form, sizeof(form), "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", eid,
		 esecret, escope);
	curl_free(eid);
	curl_free(esecret);
	curl_free(escope);
	curl_easy_cleanup(c);
	const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	struct emu_resp r;
	emu_http("POST", url, h, form, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "access_token");
	assert_true(cJSON_IsString(tok));
	char *out = strdup(tok->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
	return out;
}

/* An admin call (no token) on the emulator at base URL `base`; body may be NULL. */
static inline void emu_admin(const char *base, const char *method, const char *path, const char *body,
			     struct emu_resp *out)
{
	char url[1024];
	snprintf(url, sizeof(url), "%s/_emulator/%s", base, path);
	const char *h[] = {"Content-Type: application/json", NULL};
	emu_http(method, url, h, body, out);
}

/* ---- webhooks / data events: a receiver in the test process ---- */

#define EMU_HOOK_MAX 64

struct emu_hook_post {
	char request_name[32];
	char entity[64];
	char code[64];
	char *body;
};

static struct {
	pthread_mutex_t mu;
	struct emu_hook_post posts[EMU_HOOK_MAX];
	int n;
} emu_hooks = {PTHREAD_MUTEX_INITIALIZER, {{{0}, {0}, {0}, NULL}}, 0};

struct emu_hook_conn {
	char *body;
	size_t len;
};

static inline enum MHD_Result emu_hook_handler(void *cls, struct MHD_Connection *con, const char *url, const char *method,
				    const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	struct emu_hook_conn *hc = *con_cls;
	if (!hc) {
		hc = calloc(1, sizeof(*hc));
		*con_cls = hc;
		return hc ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		char *nb = realloc(hc->body, hc->len + *upload_size + 1);
		if (!nb)
			return MHD_NO;
		hc->body = nb;
		memcpy(hc->body + hc->len, upload, *upload_size);
		hc->len += *upload_size;
		hc->body[hc->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&emu_hooks.mu);
	if (emu_hooks.n < EMU_HOOK_MAX) {
		struct emu_hook_post *p = &emu_hooks.posts[emu_hooks.n++];
		const char *v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "x-ms-dynamics-request-name");
		snprintf(p->request_name, sizeof(p->request_name), "%s", v ? v : "");
		v = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "x-ms-dynamics-entity-name");
		snprintf(p->entity, sizeof(p->entity), "%s", v ? v : "");
		v = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "code");
		snprintf(p->code, sizeof(p->code), "%s", v ? v : "");
		p->body = hc->body;
		hc->body = NULL;
	}
	pthread_mutex_unlock(&emu_hooks.mu);
	free(hc->body);
	free(hc);
	*con_cls = NULL;
	struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(con, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* Waits up to 10 s for a post whose x-ms-dynamics-request-name (ignored when NULL) and body match.
 * Returns its index or -1. */
static inline int emu_hooks_wait(const char *request_name, const char *needle)
{
	long long deadline = harness_now_ms() + 10000;
	while (harness_now_ms() < deadline) {
		pthread_mutex_lock(&emu_hooks.mu);
		for (int i = 0; i < emu_hooks.n; i++) {
			if ((!request_name || strcmp(emu_hooks.posts[i].request_name, request_name) == 0) && emu_hooks.posts[i].body &&
			    strstr(emu_hooks.posts[i].body, needle)) {
				pthread_mutex_unlock(&emu_hooks.mu);
				return i;
			}
		}
		pthread_mutex_unlock(&emu_hooks.mu);
		usleep(50 * 1000);
	}
	return -1;
}

/* Starts the receiver on 127.0.0.1:port (fails the test when it cannot listen). */
static inline struct MHD_Daemon *emu_hooks_start(int port)
{
	struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, (uint16_t)port, NULL,
						NULL, emu_hook_handler, NULL, MHD_OPTION_END);
	assert_non_null(d);
	return d;
}

/* Stops the receiver and forgets what it received. */
static inline void emu_hooks_stop(struct MHD_Daemon *d)
{
	MHD_stop_daemon(d);
	pthread_mutex_lock(&emu_hooks.mu);
	for (int k = 0; k < emu_hooks.n; k++)
		free(emu_hooks.posts[k].body);
	emu_hooks.n = 0;
	pthread_mutex_unlock(&emu_hooks.mu);
}

/* ---- a private emulator: own port and database, started and stopped by a test ---- */

struct emu_private {
	const char *flavour; /* "ce" or "fo" */
	pid_t pid;
	int port;
	char db[64];
	char base[128];
	char auth[512]; /* "Authorization: Bearer <token>" once started */
	char log[512];
};

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static inline int emu_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t al = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Prepares p for flavour with a database name unique to this process and `tag`; nothing runs yet. */
static inline void emu_private_init(struct emu_private *p, const char *flavour, const char *tag)
{
	memset(p, 0, sizeof(*p));
	p->flavour = flavour;
	snprintf(p->db, sizeof(p->db), "dw_emu_%s_%s_%d", tag, flavour, (int)getpid());
}

/*
 * Starts (or restarts, on the same port and database) the emulator binary of the build under
 * test (DW_BUILD) with the stack's DW_PG_DSN, waits until its token endpoint answers and puts a
 * bearer token in p->auth. Fails the test when it does not come up within 30 s.
 */
static inline void emu_private_start(struct emu_private *p)
{
	if (p->port == 0) {
		p->port = emu_free_port();
		snprintf(p->base, sizeof(p->base), "http://127.0.0.1:%d", p->port);
	}
	snprintf(p->log, sizeof(p->log), "%s/emu-private-%s.log", harness_env("DW_STATE_DIR"), p->db);
	char port[16], schema[128];
	snprintf(port, sizeof(port), "%d", p->port);
	snprintf(schema, sizeof(schema), "tests/emulators/schemas/%s.json", p->flavour);
	const char *bin = harness_bin("dw-emulator");
	(void)harness_env("DW_PG_DSN");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (freopen(p->log, "a", stdout))
			dup2(fileno(stdout), 2);
		setenv("DW_EMU_CLIENT_SECRET", "private-emulator-secret", 1);
		unsetenv("DW_EMU_CLIENT_SECRET_FILE");
		execl(bin, bin, "--flavour", p->flavour, "--port", port, "--schema", schema, "--db", p->db, "--pool", "4",
		      (char *)NULL);
		_exit(127);
	}
	p->pid = pid;
	char url[256];
	snprintf(url, sizeof(url), "%s/dualwrite/oauth2/v2.0/token", p->base);
	const char *form = "grant_type=client_credentials&client_id=dw-emulator&client_secret=private-emulator-secret"
			   "&scope=x%2F.default";
	long long deadline = harness_now_ms() + 30000;
	for (;;) {
		CURL *c = curl_easy_init();
		assert_non_null(c);
		struct emu_resp r;
		memset(&r, 0, sizeof(r));
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, emu_body_cb);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		CURLcode rc = curl_easy_perform(c);
		if (rc == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
		curl_easy_cleanup(c);
		if (rc == CURLE_OK && r.status == 200) {
			cJSON *j = emu_json(&r);
			const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "access_token");
			assert_true(cJSON_IsString(tok));
			snprintf(p->auth, sizeof(p->auth), "Authorization: Bearer %s", tok->valuestring);
			cJSON_Delete(j);
			emu_resp_free(&r);
			return;
		}
		emu_resp_free(&r);
		int status;
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			fail_msg("private emulator exited (log %s)", p->log);
		}
		if (harness_now_ms() > deadline)
			fail_msg("private emulator not answering on %s (log %s)", p->base, p->log);
		usleep(100 * 1000);
	}
}

/* SIGTERM, then waits (10 s, then SIGKILL). Returns the wait status; 0 when nothing ran. */
static inline int emu_private_stop(struct emu_private *p)
{
	int status = 0;
	if (p->pid <= 0)
		return 0;
	kill(p->pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			p->pid = 0;
			return status;
		}
		usleep(100 * 1000);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
	return status;
}

static inline void emu_quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Stops the emulator and drops its database (for teardowns: never fails the test). */
static inline void emu_private_destroy(struct emu_private *p)
{
	(void)emu_private_stop(p);
	const char *dsn = getenv("DW_PG_DSN");
	if (!dsn || !p->db[0])
		return;
	const char *const kw[] = {"dbname", NULL};
	const char *const val[] = {dsn, NULL};
	PGconn *pg = PQconnectdbParams(kw, val, 1);
	if (PQstatus(pg) == CONNECTION_OK) {
		PQsetNoticeProcessor(pg, emu_quiet_notice, NULL);
		char sql[128];
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", p->db);
		PQclear(PQexec(pg, sql));
	}
	PQfinish(pg);
}

#endif
