#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"

struct http_client {
	CURL *curl;
	long timeout_ms;
	long connect_timeout_ms;
	size_t body_max;
	char *ca_file;
	int insecure;
};

/* State of one transfer, filled by the libcurl callbacks. */
struct transfer {
	size_t body_max;
	char *body;
	size_t body_len, body_cap;
	int body_too_large;
	struct http_resp_header *headers;
	size_t nheaders, headers_cap;
	size_t header_bytes;
	int headers_too_large;
	int oom;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static atomic_int insecure_warned;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int http_client_new(const struct http_opts *opts, struct http_client **out, char *errbuf, size_t errlen)
{
	static const struct http_opts defaults = {0};
	struct http_client *c = NULL;
	int rc = HTTP_ERR;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		snprintf(errbuf, errlen, "http: libcurl global init failed: %s", curl_easy_strerror(global_rc));
		goto out;
	}
	if (opts->timeout_ms < 0 || opts->connect_timeout_ms < 0) {
		snprintf(errbuf, errlen, "http: timeouts must not be negative");
		goto out;
	}
	if (opts->ca_file && access(opts->ca_file, R_OK) != 0) {
		snprintf(errbuf, errlen, "http: CA file %s is not readable: %s", opts->ca_file, strerror(errno));
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto oom;
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : HTTP_TIMEOUT_MS_DEFAULT;
	c->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : HTTP_CONNECT_TIMEOUT_MS_DEFAULT;
	c->body_max = opts->body_max ? opts->body_max : HTTP_BODY_MAX_DEFAULT;
	c->insecure = opts->insecure != 0;
	if (opts->ca_file) {
		c->ca_file = strdup(opts->ca_file);
		if (!c->ca_file)
			goto oom;
	}
	c->curl = curl_easy_init();
	if (!c->curl) {
		snprintf(errbuf, errlen, "http: curl_easy_init failed");
		goto out;
	}
	if (c->insecure && atomic_exchange(&insecure_warned, 1) == 0)
		log_warn("TLS certificate verification is disabled for an HTTP client (insecure flag set)");
	*out = c;
	c = NULL;
	rc = 0;
	goto out;
oom:
	snprintf(errbuf, errlen, "http: out of memory");
out:
	http_client_free(c);
	return rc;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->ca_file);
	free(c);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *t = arg;
	size_t n = size * nmemb;

	if (n > t->body_max - t->body_len) {
		t->body_too_large = 1;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (t->body_len + n + 1 > t->body_cap) {
		size_t cap = t->body_cap ? t->body_cap : 4096;
		while (cap < t->body_len + n + 1)
			cap *= 2;
		if (cap > t->body_max + 1)
			cap = t->body_max + 1;
		char *p = realloc(t->body, cap);
		if (!p) {
			t->oom = 1;
			return 0;
		}
		t->body = p;
		t->body_cap = cap;
	}
	memcpy(t->body + t->body_len, data, n);
	t->body_len += n;
	t->body[t->body_len] = 0;
	return n;
}

static void headers_clear(struct transfer *t)
{
	for (size_t i = 0; i < t->nheaders; i++) {
		free(t->headers[i].name);
		free(t->headers[i].value);
	}
	t->nheaders = 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct transfer *t = arg;
	size_t n = size * nmemb;
	size_t colon, start, end;

	t->header_bytes += n;
	if (t->header_bytes > HTTP_HEADERS_BYTES_MAX) {
		t->headers_too_large = 1;
		return 0;
	}
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* A new status line (after 100 Continue, say): keep only the final response's headers. */
		headers_clear(t);
		return n;
	}
	for (colon = 0; colon < n && data[colon] != ':'; colon++)
		;
	if (colon == 0 || colon == n || data[0] == ' ' || data[0] == '\t')
		return n; /* blank line, folded continuation or junk: ignored */
	end = colon;
	while (end > 0 && (data[end - 1] == ' ' || data[end - 1] == '\t'))
		end--;
	start = colon + 1;
	size_t vend = n;
	while (start < vend && (data[start] == ' ' || data[start] == '\t'))
		start++;
	while (vend > start && (data[vend - 1] == '\r' || data[vend - 1] == '\n' || data[vend - 1] == ' ' ||
				data[vend - 1] == '\t'))
		vend--;
	if (t->nheaders == t->headers_cap) {
		size_t cap = t->headers_cap ? t->headers_cap * 2 : 16;
		struct http_resp_header *p = realloc(t->headers, cap * sizeof(*p));
		if (!p) {
			t->oom = 1;
			return 0;
		}
		t->headers = p;
		t->headers_cap = cap;
	}
	char *name = strndup(data, end);
	char *value = strndup(data + start, vend - start);
	if (!name || !value) {
		free(name);
		free(value);
		t->oom = 1;
		return 0;
	}
	t->headers[t->nheaders].name = name;
	t->headers[t->nheaders].value = value;
	t->nheaders++;
	return n;
}

static void transfer_free(struct transfer *t)
{
	headers_clear(t);
	free(t->headers);
	free(t->body);
	memset(t, 0, sizeof(*t));
}

static int token_ok(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return 0;
	}
	return 1;
}

static int value_ok(const char *s)
{
	return s && !strpbrk(s, "\r\n");
}

static int has_header(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, name) == 0)
			return 1;
	}
	return 0;
}

/* Maps a libcurl result to our return codes. */
static int classify(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return HTTP_ERR_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return HTTP_ERR_TRANSPORT;
	case CURLE_FILESIZE_EXCEEDED:
		return HTTP_ERR_TOO_LARGE;
	default:
		return HTTP_ERR;
	}
}

int http_do(struct http_client *c, const struct http_request *req, struct http_response *resp, char *errbuf,
	    size_t errlen)
{
	struct transfer t = {0};
	struct curl_slist *hdrs = NULL, *tmp;
	char curl_err[CURL_ERROR_SIZE] = "";
	char url[1024];
	char line[8192];
	int rc = HTTP_ERR;
	CURLcode cc;
	CURL *h;

	memset(resp, 0, sizeof(*resp));
	if (!c || !req || !req->url || !token_ok(req->method)) {
		snprintf(errbuf, errlen, "http: request needs a client, a valid method and a URL");
		return HTTP_ERR;
	}
	http_url_redact(req->url, url, sizeof(url));
	if (req->body_len && !req->body) {
		snprintf(errbuf, errlen, "%s %s: body_len %zu without a body", req->method, url, req->body_len);
		return HTTP_ERR;
	}
	h = c->curl;
	t.body_max = c->body_max;

	for (size_t i = 0; i < req->nheaders; i++) {
		const struct http_header *hd = &req->headers[i];
		if (!token_ok(hd->name) || !value_ok(hd->value)) {
			/* Only the name is quoted: a value may be a secret. */
			snprintf(errbuf, errlen, "%s %s: invalid request header \"%.64s\"", req->method, url,
				 hd->name ? hd->name : "");
			goto out;
		}
		int n = snprintf(line, sizeof(line), "%s: %s", hd->name, hd->value);
		if (n < 0 || (size_t)n >= sizeof(line)) {
			snprintf(errbuf, errlen, "%s %s: request header %.64s is longer than %zu bytes", req->method,
				 url, hd->name, sizeof(line) - 1);
			goto out;
		}
		tmp = curl_slist_append(hdrs, line);
		explicit_bzero(line, sizeof(line));
		if (!tmp)
			goto oom;
		hdrs = tmp;
	}
	/* No "Expect: 100-continue" round trip for larger bodies. */
	tmp = curl_slist_append(hdrs, "Expect:");
	if (!tmp)
		goto oom;
	hdrs = tmp;
	/* libcurl would label a body without a Content-Type as a form; send none instead. */
	if (!has_header(req, "Content-Type")) {
		tmp = curl_slist_append(hdrs, "Content-Type:");
		if (!tmp)
			goto oom;
		hdrs = tmp;
	}

	curl_easy_reset(h); /* keeps the open connections */
	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->body_max);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	if (strcmp(req->method, "GET") == 0 && !req->body) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(req->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else {
		if (req->body || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
		    strcmp(req->method, "PATCH") == 0) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
		}
		if (strcmp(req->method, "POST") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	}

	cc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	if (cc != CURLE_OK) {
		if (t.body_too_large || cc == CURLE_FILESIZE_EXCEEDED) {
			rc = HTTP_ERR_TOO_LARGE;
			snprintf(errbuf, errlen, "%s %s: response body exceeds the cap of %zu bytes", req->method, url,
				 c->body_max);
		} else if (t.headers_too_large) {
			rc = HTTP_ERR_TOO_LARGE;
			snprintf(errbuf, errlen, "%s %s: response headers exceed the cap of %zu bytes", req->method,
				 url, (size_t)HTTP_HEADERS_BYTES_MAX);
		} else if (t.oom) {
			goto oom;
		} else {
			rc = classify(cc);
			snprintf(errbuf, errlen, "%s %s: %s", req->method, url,
				 curl_err[0] ? curl_err : curl_easy_strerror(cc));
			/* libcurl's own message may end in a newline */
			size_t len = strlen(errbuf);
			while (len > 0 && (errbuf[len - 1] == '\n' || errbuf[len - 1] == '\r'))
				errbuf[--len] = 0;
		}
		goto out;
	}
	if (!t.body) {
		t.body = calloc(1, 1);
		if (!t.body)
			goto oom;
	}
	long status = 0, nconnects = 0;
	double total = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &total);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconnects);
	resp->status = status;
	resp->headers = t.headers;
	resp->nheaders = t.nheaders;
	resp->body = t.body;
	resp->body_len = t.body_len;
	resp->total_s = total;
	resp->reused = nconnects == 0;
	memset(&t, 0, sizeof(t));
	rc = 0;
	goto out;
oom:
	rc = HTTP_ERR;
	snprintf(errbuf, errlen, "%s %s: out of memory", req->method, url);
out:
	/* The header list may hold an Authorization value: clear it before it goes back to malloc. */
	for (tmp = hdrs; tmp; tmp = tmp->next)
		explicit_bzero(tmp->data, strlen(tmp->data));
	curl_slist_free_all(hdrs);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	transfer_free(&t);
	return rc;
}

void http_response_free(struct http_response *resp)
{
	if (!resp)
		return;
	for (size_t i = 0; i < resp->nheaders; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->headers);
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
	if (!resp || !name)
		return NULL;
	for (size_t i = 0; i < resp->nheaders; i++) {
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	}
	return NULL;
}

int http_status_retryable(long status)
{
	return status == 408 || status == 429 || (status >= 500 && status <= 599 && status != 501 && status != 505);
}

long http_retry_after_value_ms(const char *value, long long now_s, long default_ms)
{
	const char *p = value;
	size_t n;

	if (!p)
		return default_ms;
	while (*p == ' ' || *p == '\t')
		p++;
	n = strlen(p);
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0)
		return default_ms;
	if (isdigit((unsigned char)p[0])) {
		long long secs = 0;
		for (size_t i = 0; i < n; i++) {
			if (!isdigit((unsigned char)p[i]))
				return default_ms;
			if (secs < HTTP_RETRY_AFTER_MAX_MS) /* stops growing once past the cap: no overflow */
				secs = secs * 10 + (p[i] - '0');
		}
		return secs * 1000 >= HTTP_RETRY_AFTER_MAX_MS ? HTTP_RETRY_AFTER_MAX_MS : (long)(secs * 1000);
	}
	if (!isalpha((unsigned char)p[0]) || n > 64)
		return default_ms;
	char date[65];
	memcpy(date, p, n);
	date[n] = 0;
	time_t when = curl_getdate(date, NULL);
	if (when == (time_t)-1)
		return default_ms;
	long long delta = (long long)when - now_s;
	if (delta <= 0)
		return 0;
	return delta * 1000 >= HTTP_RETRY_AFTER_MAX_MS ? HTTP_RETRY_AFTER_MAX_MS : (long)(delta * 1000);
}

long http_retry_after_ms(const struct http_response *resp, long default_ms)
{
	return http_retry_after_value_ms(http_response_header(resp, "Retry-After"), (long long)time(NULL),
					 default_ms);
}

/* Appends n bytes of s to out at *pos, keeping room for the terminator. */
static void put(char *out, size_t outlen, size_t *pos, const char *s, size_t n)
{
	if (*pos + 1 >= outlen)
		return;
	if (n > outlen - 1 - *pos)
		n = outlen - 1 - *pos;
	memcpy(out + *pos, s, n);
	*pos += n;
	out[*pos] = 0;
}

static int secret_param(const char *name, size_t n)
{
	static const char *const secret[] = {"code", "client_secret", "sig", "access_token", "password",
					     "token", "refresh_token", "id_token", "api_key", "apikey"};
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
		if (strlen(secret[i]) == n && strncasecmp(secret[i], name, n) == 0)
			return 1;
	}
	return 0;
}

char *http_url_redact(const char *url, char *out, size_t outlen)
{
	size_t pos = 0;
	const char *p, *q, *frag, *end;

	if (!out || outlen == 0)
		return out;
	out[0] = 0;
	if (!url)
		return out;
	end = url + strlen(url);
	q = strchr(url, '?');
	frag = strchr(url, '#');
	if (frag && q && frag < q)
		q = NULL;
	const char *auth_end = q ? q : (frag ? frag : end);

	/* scheme://user:password@host -> scheme://user:***@host */
	p = strstr(url, "://");
	if (p && p < auth_end) {
		const char *host = p + 3;
		const char *slash = host + strcspn(host, "/?#");
		const char *at = memchr(host, '@', (size_t)(slash - host));
		const char *colon = at ? memchr(host, ':', (size_t)(at - host)) : NULL;
		if (colon) {
			put(out, outlen, &pos, url, (size_t)(colon + 1 - url));
			put(out, outlen, &pos, "***", 3);
			url = at;
		}
	}
	if (!q) {
		put(out, outlen, &pos, url, (size_t)(end - url));
		return out;
	}
	put(out, outlen, &pos, url, (size_t)(q + 1 - url));
	const char *qend = frag && frag > q ? frag : end;
	for (p = q + 1; p < qend;) {
		const char *amp = memchr(p, '&', (size_t)(qend - p));
		const char *pend = amp ? amp : qend;
		const char *eq = memchr(p, '=', (size_t)(pend - p));
		if (eq && secret_param(p, (size_t)(eq - p))) {
			put(out, outlen, &pos, p, (size_t)(eq + 1 - p));
			put(out, outlen, &pos, "***", 3);
		} else {
			put(out, outlen, &pos, p, (size_t)(pend - p));
		}
		if (amp)
			put(out, outlen, &pos, "&", 1);
		p = amp ? amp + 1 : qend;
	}
	if (frag && frag > q)
		put(out, outlen, &pos, frag, (size_t)(end - frag));
	return out;
}
