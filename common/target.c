/* Target writers over OData: CE upsert by key, FO PATCH-then-POST, deletes, $batch, outcomes. */
#include "target.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "odata_batch.h"

#define TARGET_WRITES_MAX 100000

struct target {
	int ce;             /* 1: Dataverse, 0: FO */
	char *root;         /* base + service prefix, e.g. http://h/api/data/v9.2/ */
	struct http_client *http;
	struct oauth *oauth;
	long timeout_ms;
	size_t batch_max;
	unsigned long requests;
	unsigned long batch_seq;
};

/* Internal marker while classifying: FO PATCH answered 404, a POST is to follow. */
#define NEEDS_POST 100

const char *target_outcome_name(enum target_outcome o)
{
	switch (o) {
	case TARGET_OK: return "ok";
	case TARGET_RETRY: return "retry";
	case TARGET_CONFLICT: return "conflict";
	case TARGET_MISSING_DEP: return "missing_dependency";
	case TARGET_INVALID: return "invalid";
	}
	return NULL;
}

int target_new(const struct target_opts *opts, struct target **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	if (!opts || !opts->side || (strcmp(opts->side, "ce") != 0 && strcmp(opts->side, "fo") != 0)) {
		snprintf(errbuf, errlen, "target: side must be ce or fo");
		return -1;
	}
	if (!opts->base_url || !*opts->base_url || strlen(opts->base_url) > 2048) {
		snprintf(errbuf, errlen, "target %s: base URL must be 1..2048 bytes", opts->side);
		return -1;
	}
	if (!opts->http || !opts->oauth) {
		snprintf(errbuf, errlen, "target %s: an HTTP client and a token cache are required", opts->side);
		return -1;
	}
	if (opts->batch_max > TARGET_BATCH_MAX) {
		snprintf(errbuf, errlen, "target %s: batch_max %zu exceeds %d", opts->side, opts->batch_max,
			 TARGET_BATCH_MAX);
		return -1;
	}
	struct target *t = calloc(1, sizeof(*t));
	if (!t)
		goto oom;
	t->ce = strcmp(opts->side, "ce") == 0;
	size_t bl = strlen(opts->base_url);
	while (bl > 0 && opts->base_url[bl - 1] == '/')
		bl--;
	const char *prefix = t->ce ? "/api/data/v9.2/" : "/data/";
	size_t rl = bl + strlen(prefix) + 1;
	t->root = malloc(rl);
	if (!t->root)
		goto oom;
	snprintf(t->root, rl, "%.*s%s", (int)bl, opts->base_url, prefix);
	t->http = opts->http;
	t->oauth = opts->oauth;
	t->timeout_ms = opts->timeout_ms;
	t->batch_max = opts->batch_max;
	*out = t;
	return 0;
oom:
	target_free(t);
	snprintf(errbuf, errlen, "target: out of memory");
	return -1;
}

void target_free(struct target *t)
{
	if (!t)
		return;
	free(t->root);
	free(t);
}

unsigned long target_request_count(const struct target *t)
{
	return t ? t->requests : 0;
}

void target_write_clear(struct target_write *w)
{
	if (!w)
		return;
	free(w->etag);
	free(w->target_id);
	free(w->error);
	free(w->error_body);
	free(w->representation);
	w->etag = w->target_id = w->error = w->error_body = w->representation = NULL;
	w->outcome = 0;
	w->status = 0;
	w->retry_after_ms = 0;
	w->created = 0;
}

static int valid_set_name(const char *s)
{
	if (!s || !*s || strlen(s) > ODATA_NAME_MAX)
		return 0;
	for (const char *c = s; *c; c++) {
		int ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '_' ||
			 (c != s && *c >= '0' && *c <= '9');
		if (!ok)
			return 0;
	}
	return 1;
}

/* "<root><set><key segment>" (key NULL: the collection URL). New string or NULL with errbuf. */
static char *record_url(const struct target *t, const char *set, const struct odata_key_part *key, size_t nkey,
			char *errbuf, size_t errlen)
{
	char *seg = NULL, *url = NULL;
	if (!valid_set_name(set)) {
		snprintf(errbuf, errlen, "entity set name is not an identifier");
		return NULL;
	}
	if (key && odata_key_build(key, nkey, &seg, errbuf, errlen) != 0)
		return NULL;
	size_t n = strlen(t->root) + strlen(set) + (seg ? strlen(seg) : 0) + 1;
	url = malloc(n);
	if (url)
		snprintf(url, n, "%s%s%s", t->root, set, seg ? seg : "");
	else
		snprintf(errbuf, errlen, "out of memory");
	free(seg);
	return url;
}

/* Sends one request with the bearer token and the OData headers (plus `extra`), sending once more
 * with a fresh token after a 401. Returns what http_do returns, or HTTP_ERR_TRANSPORT (errbuf
 * says so) when no token could be had (a retryable condition for the caller). */
static int send_req(struct target *t, const char *method, const char *url, const struct http_header *extra,
		    size_t nextra, const char *body, size_t body_len, struct http_response *resp, char *errbuf,
		    size_t errlen)
{
	struct http_header h[16];
	int rc = HTTP_ERR;
	memset(resp, 0, sizeof(*resp));
	if (nextra > 10) {
		snprintf(errbuf, errlen, "too many headers");
		return HTTP_ERR;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		char *token = NULL;
		int orc = oauth_token(t->oauth, &token, errbuf, errlen);
		if (orc != 0)
			return orc == OAUTH_ERR_RETRY ? HTTP_ERR_TRANSPORT : HTTP_ERR;
		size_t al = strlen(token) + 8;
		char *auth = malloc(al);
		if (!auth) {
			free(token);
			snprintf(errbuf, errlen, "out of memory");
			return HTTP_ERR;
		}
		snprintf(auth, al, "Bearer %s", token);
		size_t nh = 0;
		h[nh++] = (struct http_header){ "Authorization", auth };
		h[nh++] = (struct http_header){ "Accept", "application/json" };
		h[nh++] = (struct http_header){ "OData-MaxVersion", "4.0" };
		h[nh++] = (struct http_header){ "OData-Version", "4.0" };
		if (body && !(nextra > 0 && strcasecmp(extra[0].name, "Content-Type") == 0))
			h[nh++] = (struct http_header){ "Content-Type", "application/json" };
		for (size_t i = 0; i < nextra; i++)
			h[nh++] = extra[i];
		struct http_request req = { .method = method, .url = url, .headers = h, .nheaders = nh,
					    .body = body, .body_len = body ? body_len : 0, .timeout_ms = t->timeout_ms };
		t->requests++;
		rc = http_do(t->http, &req, resp, errbuf, errlen);
		free(auth);
		if (rc == 0 && resp->status == 401 && attempt == 0) {
			oauth_invalidate(t->oauth, token);
			free(token);
			http_response_free(resp);
			continue;
		}
		free(token);
		break;
	}
	return rc;
}

static char *dup_capped(const char *s, size_t len, size_t cap)
{
	if (len > cap)
		len = cap;
	char *d = malloc(len + 1);
	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* Sets w->error to "<reason> (HTTP <status>): <detail>", cut at 1 KiB (the full target body is
 * kept apart in error_body). */
static void set_error(struct target_write *w, const char *reason, long status, const char *detail)
{
	char buf[1024], st[32] = "";
	if (status)
		snprintf(st, sizeof(st), " (HTTP %ld)", status);
	int n = snprintf(buf, sizeof(buf), "%s%s%s%s", reason, st, detail && *detail ? ": " : "",
			 detail ? detail : "");
	if (n < 0)
		buf[0] = '\0';
	free(w->error);
	w->error = strdup(buf);
}

/* The id in an OData-EntityId / Location URL: CE the GUID inside "(...)", FO the key predicate. */
static char *id_from_url(int ce, const char *url)
{
	if (!url)
		return NULL;
	const char *open = strchr(url, '(');
	if (!open)
		return NULL;
	size_t len = strlen(open);
	if (len < 2 || open[len - 1] != ')')
		return NULL;
	if (ce)
		return dup_capped(open + 1, len - 2, 256);
	return dup_capped(open, len, 2048);
}

/* The ETag from a header value, else from the body's "@odata.etag". New string or NULL. */
static char *etag_of(const char *header, const char *body, size_t body_len)
{
	if (header && *header)
		return dup_capped(header, strlen(header), 1024);
	if (!body || body_len == 0)
		return NULL;
	cJSON *j = cJSON_ParseWithLength(body, body_len);
	char *e = NULL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "@odata.etag");
	if (cJSON_IsString(v))
		e = dup_capped(v->valuestring, strlen(v->valuestring), 1024);
	cJSON_Delete(j);
	return e;
}

/* Classifies one answer to write w (sent with `method`). Fills w's outputs. */
static void classify(struct target *t, struct target_write *w, const char *method, long status, const char *etag,
		     const char *entity_id, const char *retry_after, const char *body, size_t body_len)
{
	w->status = status;
	if (status >= 200 && status < 300) {
		w->outcome = TARGET_OK;
		w->created = status == 201 || strcmp(method, "POST") == 0;
		if (w->op == TARGET_UPSERT) {
			free(w->etag);
			w->etag = etag_of(etag, body, body_len);
			free(w->target_id);
			w->target_id = id_from_url(t->ce, entity_id);
			free(w->representation);
			w->representation = body && body_len > 1 && body_len <= TARGET_REPR_MAX && body[0] == '{'
						    ? dup_capped(body, body_len, TARGET_REPR_MAX)
						    : NULL;
		}
		return;
	}
	if (status == 404 && w->op == TARGET_DELETE) {
		w->outcome = TARGET_OK; /* already gone */
		return;
	}
	if (status == 404 && !t->ce && strcmp(method, "PATCH") == 0) {
		w->outcome = NEEDS_POST;
		return;
	}
	struct odata_error oe = { 0 };
	int parsed = body && body_len ? odata_error_parse(body, body_len, &oe) : -1;
	const char *detail = parsed >= 0 ? (*oe.inner_message ? oe.inner_message : oe.message) : "";
	free(w->error_body);
	w->error_body = body && body_len ? dup_capped(body, body_len, TARGET_ERROR_BODY_MAX) : NULL;
	if (http_status_retryable(status)) {
		w->outcome = TARGET_RETRY;
		w->retry_after_ms = retry_after ? http_retry_after_value_ms(retry_after, (long long)time(NULL), 0) : 0;
		set_error(w, "target busy or failing", status, detail);
	} else if (status == 412 || (status == 404 && w->if_match)) {
		w->outcome = TARGET_CONFLICT;
		set_error(w, status == 412 ? "record changed on the target" : "record deleted on the target",
			  status, detail);
	} else if (t->ce && status == 400 && parsed == 0 && strcmp(oe.code, "0x80040217") == 0) {
		w->outcome = TARGET_MISSING_DEP;
		set_error(w, "lookup target missing", status, detail);
	} else {
		w->outcome = TARGET_INVALID;
		set_error(w, "target refused the write", status, detail);
	}
	odata_error_clear(&oe);
}

/* Classifies a write that got no answer (transport trouble): retryable unless the request itself
 * was wrong. */
static void classify_failure(struct target_write *w, int rc, const char *err)
{
	w->status = 0;
	w->outcome = rc == HTTP_ERR_TRANSPORT || rc == HTTP_ERR_TIMEOUT ? TARGET_RETRY : TARGET_INVALID;
	set_error(w, rc == HTTP_ERR_TIMEOUT ? "target timed out" : "no answer from the target", 0, err);
}

/* The FO create body: the write's body with every key field added that it lacks. New string. */
static char *post_body(const struct target_write *w, char *errbuf, size_t errlen)
{
	cJSON *j = cJSON_Parse(w->body ? w->body : "{}");
	char *out = NULL;
	if (!cJSON_IsObject(j)) {
		snprintf(errbuf, errlen, "write body is not a JSON object");
		goto out;
	}
	for (size_t i = 0; i < w->nkey; i++) {
		const struct odata_key_part *p = &w->key[i];
		if (!p->name || cJSON_GetObjectItemCaseSensitive(j, p->name))
			continue;
		cJSON *v = p->kind == ODATA_KIND_INT ? cJSON_CreateNumber((double)strtoll(p->value, NULL, 10))
						     : cJSON_CreateString(p->value);
		if (!v || !cJSON_AddItemToObject(j, p->name, v)) {
			cJSON_Delete(v);
			snprintf(errbuf, errlen, "out of memory");
			goto out;
		}
	}
	out = cJSON_PrintUnformatted(j);
	if (!out)
		snprintf(errbuf, errlen, "out of memory");
out:
	cJSON_Delete(j);
	return out;
}

static int check_write(const struct target_write *w, size_t i, char *errbuf, size_t errlen)
{
	if (w->op != TARGET_UPSERT && w->op != TARGET_DELETE) {
		snprintf(errbuf, errlen, "write %zu: invalid op", i);
		return -1;
	}
	if (!valid_set_name(w->entity_set)) {
		snprintf(errbuf, errlen, "write %zu: entity set is not an identifier", i);
		return -1;
	}
	if (!w->key || w->nkey == 0) {
		snprintf(errbuf, errlen, "write %zu: no key", i);
		return -1;
	}
	if (w->op == TARGET_UPSERT && !w->body) {
		snprintf(errbuf, errlen, "write %zu: upsert without a body", i);
		return -1;
	}
	return 0;
}

/* An FO upsert the caller marked as a create (target_write.create): POST at once. */
static int creates_fo(const struct target *t, const struct target_write *w)
{
	return !t->ce && w->create && w->op == TARGET_UPSERT;
}

/* One write as single requests (PATCH, then POST for FO on 404; or DELETE). */
static int apply_single(struct target *t, struct target_write *w, char *errbuf, size_t errlen)
{
	char err[1024];
	struct http_response resp;
	char *url = record_url(t, w->entity_set, w->key, w->nkey, err, sizeof(err));
	if (!url) {
		w->outcome = TARGET_INVALID;
		set_error(w, "cannot build the record URL", 0, err);
		return 0;
	}
	struct http_header extra[2];
	size_t ne = 0;
	if (w->if_match)
		extra[ne++] = (struct http_header){ "If-Match", w->if_match };
	if (w->op == TARGET_UPSERT)
		extra[ne++] = (struct http_header){ "Prefer", "return=representation" };
	const char *method = w->op == TARGET_DELETE ? "DELETE" : "PATCH";
	if (creates_fo(t, w)) {
		w->outcome = NEEDS_POST; /* the caller knows the record is not there: no PATCH first */
	} else {
		int rc = send_req(t, method, url, extra, ne, w->body, w->body ? strlen(w->body) : 0, &resp, err,
				  sizeof(err));
		if (rc != 0) {
			classify_failure(w, rc, err);
		} else {
			classify(t, w, method, resp.status, http_response_header(&resp, "ETag"),
				 http_response_header(&resp, "OData-EntityId"), http_response_header(&resp, "Retry-After"),
				 resp.body, resp.body_len);
		}
		http_response_free(&resp);
	}
	free(url);
	if (w->outcome != NEEDS_POST)
		return 0;
	/* FO: the record is not there; create it */
	char *body = post_body(w, errbuf, errlen);
	if (!body)
		return -1;
	url = record_url(t, w->entity_set, NULL, 0, err, sizeof(err));
	if (!url) {
		free(body);
		snprintf(errbuf, errlen, "%s", err);
		return -1;
	}
	int rc = send_req(t, "POST", url, NULL, 0, body, strlen(body), &resp, err, sizeof(err));
	if (rc != 0)
		classify_failure(w, rc, err);
	else
		classify(t, w, "POST", resp.status, http_response_header(&resp, "ETag"),
			 http_response_header(&resp, "Location"), http_response_header(&resp, "Retry-After"), resp.body,
			 resp.body_len);
	http_response_free(&resp);
	free(url);
	free(body);
	return 0;
}

/* What one batch request carries: for each operation, which write and which method. */
struct op {
	size_t write;
	const char *method;
	char *url;
	char *body; /* owned when the POST body was built here */
	struct odata_batch_header headers[2];
	char cid[24];
};

/*
 * Sends writes idx[0..n) (all needing `post` == 0: their PATCH/DELETE; post == 1: FO POSTs) as one
 * $batch, one changeset per write or unit, and classifies each from its part.
 */
static int apply_batch(struct target *t, struct target_write *w, const size_t *idx, size_t n, int post,
		       char *errbuf, size_t errlen)
{
	int rc = -1;
	char err[1024];
	struct op *ops = calloc(n, sizeof(*ops));
	struct odata_batch_request *reqs = calloc(n, sizeof(*reqs));
	struct odata_batch_part *parts = calloc(n, sizeof(*parts));
	size_t *part_of = calloc(n, sizeof(*part_of)); /* op -> part */
	size_t *order = calloc(n, sizeof(*order));     /* ops in part order */
	char *body = NULL, *ctype = NULL;
	size_t body_len = 0, nparts = 0;
	struct http_response resp;
	struct odata_batch_result res = { 0 };
	memset(&resp, 0, sizeof(resp));
	if (!ops || !reqs || !parts || !part_of || !order) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	/* group into parts: a unit's writes join the part of its first write */
	for (size_t i = 0; i < n; i++) {
		size_t p = nparts;
		if (w[idx[i]].unit != 0)
			for (size_t j = 0; j < i; j++)
				if (w[idx[j]].unit == w[idx[i]].unit) {
					p = part_of[j];
					break;
				}
		if (p == nparts)
			nparts++;
		part_of[i] = p;
	}
	size_t k = 0;
	for (size_t p = 0; p < nparts; p++)
		for (size_t i = 0; i < n; i++)
			if (part_of[i] == p)
				order[k++] = i;
	/* build the operations in part order */
	for (size_t q = 0; q < n; q++) {
		size_t i = order[q];
		struct op *o = &ops[q];
		struct target_write *x = &w[idx[i]];
		o->write = idx[i];
		snprintf(o->cid, sizeof(o->cid), "%zu", q + 1);
		size_t nh = 0;
		if (post || creates_fo(t, x)) {
			o->method = "POST";
			o->url = record_url(t, x->entity_set, NULL, 0, err, sizeof(err));
			o->body = o->url ? post_body(x, err, sizeof(err)) : NULL;
			if (!o->body) {
				x->outcome = TARGET_INVALID;
				set_error(x, "cannot build the create request", 0, err);
			}
		} else {
			o->method = x->op == TARGET_DELETE ? "DELETE" : "PATCH";
			o->url = record_url(t, x->entity_set, x->key, x->nkey, err, sizeof(err));
			if (!o->url) {
				x->outcome = TARGET_INVALID;
				set_error(x, "cannot build the record URL", 0, err);
			}
			if (x->if_match)
				o->headers[nh++] = (struct odata_batch_header){ "If-Match", x->if_match };
			if (x->op == TARGET_UPSERT)
				o->headers[nh++] = (struct odata_batch_header){ "Prefer", "return=representation" };
		}
		const char *b = post ? o->body : x->body;
		reqs[q] = (struct odata_batch_request){ .content_id = o->cid, .method = o->method, .url = o->url,
							.headers = o->headers, .nheaders = nh, .body = b,
							.body_len = b ? strlen(b) : 0 };
	}
	/* a write that could not be built is left out (it is classified already) */
	size_t nq = 0, np = 0;
	for (size_t q = 0, p = SIZE_MAX; q < n; q++) {
		struct target_write *x = &w[ops[q].write];
		if (x->outcome == TARGET_INVALID && !reqs[q].url)
			continue;
		if (x->outcome == TARGET_INVALID && post && !ops[q].body)
			continue;
		if (part_of[order[q]] != p) {
			p = part_of[order[q]];
			parts[np++] = (struct odata_batch_part){ .changeset = 1, .requests = &reqs[nq], .nrequests = 0 };
		}
		reqs[nq] = reqs[q];
		ops[nq] = ops[q];
		if (nq != q) {
			ops[q].url = NULL;
			ops[q].body = NULL;
		}
		parts[np - 1].nrequests++;
		nq++;
	}
	/* the pointers into an op must follow the op they moved with */
	for (size_t q = 0; q < nq; q++) {
		reqs[q].headers = ops[q].headers;
		reqs[q].content_id = ops[q].cid;
	}
	if (nq == 0) {
		rc = 0;
		goto out;
	}
	char batch_id[40];
	snprintf(batch_id, sizeof(batch_id), "dw%lx_%lu", (unsigned long)time(NULL), ++t->batch_seq);
	if (odata_batch_request_build(parts, np, batch_id, &body, &body_len, &ctype, errbuf, errlen) != 0)
		goto out;
	char url[2200];
	snprintf(url, sizeof(url), "%s$batch", t->root);
	struct http_header extra[] = { { "Content-Type", ctype }, { "Prefer", "odata.continue-on-error" } };
	int hrc = send_req(t, "POST", url, extra, 2, body, body_len, &resp, err, sizeof(err));
	const char *rctype = hrc == 0 ? http_response_header(&resp, "Content-Type") : NULL;
	if (hrc == 0 && resp.status == 200 && rctype &&
	    odata_batch_response_parse(rctype, resp.body, resp.body_len, resp.body_len + 1, &res, err,
				       sizeof(err)) != 0) {
		for (size_t q = 0; q < nq; q++) {
			struct target_write *x = &w[ops[q].write];
			x->outcome = TARGET_RETRY;
			set_error(x, "unreadable $batch response", 200, err);
		}
		rc = 0;
		goto out;
	}
	if (hrc != 0 || resp.status != 200 || !rctype) {
		/* the whole batch failed: every write shares its fate */
		for (size_t q = 0; q < nq; q++) {
			struct target_write *x = &w[ops[q].write];
			if (hrc != 0)
				classify_failure(x, hrc, err);
			else
				classify(t, x, ops[q].method, resp.status, NULL, NULL,
					 http_response_header(&resp, "Retry-After"), resp.body, resp.body_len);
		}
		rc = 0;
		goto out;
	}
	/* part p of the response answers part p of the request */
	size_t q0 = 0;
	for (size_t p = 0; p < np; p++) {
		size_t cnt = parts[p].nrequests;
		const struct odata_batch_response_part *rp = p < res.nparts ? &res.parts[p] : NULL;
		for (size_t j = 0; j < cnt; j++) {
			struct op *o = &ops[q0 + j];
			struct target_write *x = &w[o->write];
			const struct odata_batch_response *r = NULL;
			if (rp && rp->changeset) {
				for (size_t m = 0; m < rp->nresponses && !r; m++)
					if (rp->responses[m].content_id && strcmp(rp->responses[m].content_id, o->cid) == 0)
						r = &rp->responses[m];
				if (!r && j < rp->nresponses)
					r = &rp->responses[j];
			} else if (rp && rp->nresponses == 1) {
				r = &rp->responses[0]; /* a failed changeset: its one error for all of it */
			}
			if (!r) {
				x->outcome = TARGET_RETRY;
				set_error(x, "no answer for this write in the $batch response", 200, NULL);
				continue;
			}
			classify(t, x, o->method, r->status, odata_batch_header_get(r->headers, r->nheaders, "ETag"),
				 odata_batch_header_get(r->headers, r->nheaders,
							strcmp(o->method, "POST") == 0 ? "Location" : "OData-EntityId"),
				 odata_batch_header_get(r->headers, r->nheaders, "Retry-After"), r->body, r->body_len);
			/* a write rolled back with its unit's failing member did not fail by itself */
			if (!rp->changeset && cnt > 1 && x->outcome != TARGET_RETRY && x->outcome != NEEDS_POST &&
			    x->outcome != TARGET_OK)
				set_error(x, "unit rolled back", r->status, x->error);
		}
		q0 += cnt;
	}
	rc = 0;
out:
	if (ops)
		for (size_t q = 0; q < n; q++) {
			free(ops[q].url);
			free(ops[q].body);
		}
	free(ops);
	free(reqs);
	free(parts);
	free(part_of);
	free(order);
	free(body);
	free(ctype);
	http_response_free(&resp);
	odata_batch_result_clear(&res);
	return rc;
}

int target_apply(struct target *t, struct target_write *w, size_t n, char *errbuf, size_t errlen)
{
	if (n > TARGET_WRITES_MAX) {
		snprintf(errbuf, errlen, "target_apply: %zu writes exceed %d", n, TARGET_WRITES_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		target_write_clear(&w[i]);
		if (check_write(&w[i], i, errbuf, errlen) != 0)
			return -1;
	}
	if (t->batch_max <= 1) {
		for (size_t i = 0; i < n; i++)
			if (apply_single(t, &w[i], errbuf, errlen) != 0)
				return -1;
		return 0;
	}
	size_t *idx = calloc(n ? n : 1, sizeof(*idx));
	if (!idx) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	int rc = 0;
	for (size_t start = 0; start < n && rc == 0; start += t->batch_max) {
		size_t cnt = n - start < t->batch_max ? n - start : t->batch_max;
		for (size_t i = 0; i < cnt; i++)
			idx[i] = start + i;
		rc = apply_batch(t, w, idx, cnt, 0, errbuf, errlen);
	}
	/* FO: the records PATCH did not find are created in a second round */
	size_t np = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (w[i].outcome == NEEDS_POST) {
			idx[np++] = i;
			if (np == t->batch_max) {
				rc = apply_batch(t, w, idx, np, 1, errbuf, errlen);
				np = 0;
			}
		}
	if (rc == 0 && np > 0)
		rc = apply_batch(t, w, idx, np, 1, errbuf, errlen);
	free(idx);
	return rc;
}

/* GET url: 200 -> *found 1 with *body and *etag; 404 -> *found 0; else -1 with errbuf. */
static int get_url(struct target *t, const char *url, const char *what, int *found, char **body, char **etag,
		   int *retryable, char *errbuf, size_t errlen)
{
	struct http_response resp;
	*found = 0;
	*body = NULL;
	*etag = NULL;
	if (retryable)
		*retryable = 0;
	int rc = send_req(t, "GET", url, NULL, 0, NULL, 0, &resp, errbuf, errlen);
	if (rc != 0) {
		if (retryable)
			*retryable = rc == HTTP_ERR_TRANSPORT || rc == HTTP_ERR_TIMEOUT;
		return -1;
	}
	if (resp.status == 404) {
		http_response_free(&resp);
		return 0;
	}
	if (resp.status != 200) {
		snprintf(errbuf, errlen, "read %s: HTTP %ld", what, resp.status);
		if (retryable)
			*retryable = http_status_retryable(resp.status);
		http_response_free(&resp);
		return -1;
	}
	*body = dup_capped(resp.body, resp.body_len, resp.body_len);
	*etag = etag_of(http_response_header(&resp, "ETag"), resp.body, resp.body_len);
	http_response_free(&resp);
	if (!*body) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	*found = 1;
	return 0;
}

int target_read(struct target *t, const char *entity_set, const struct odata_key_part *key, size_t nkey,
		int *found, char **body, char **etag, int *retryable, char *errbuf, size_t errlen)
{
	*found = 0;
	*body = NULL;
	*etag = NULL;
	if (retryable)
		*retryable = 0;
	char *url = record_url(t, entity_set, key, nkey, errbuf, errlen);
	if (!url)
		return -1;
	int rc = get_url(t, url, entity_set, found, body, etag, retryable, errbuf, errlen);
	free(url);
	return rc;
}

int target_query(struct target *t, const char *entity_set, const char *query, char **body, int *retryable,
		 char *errbuf, size_t errlen)
{
	*body = NULL;
	if (retryable)
		*retryable = 0;
	char *base = record_url(t, entity_set, NULL, 0, errbuf, errlen);
	if (!base)
		return -1;
	char *url = NULL, *etag = NULL;
	int found = 0, rc = -1;
	if (asprintf(&url, "%s?%s", base, query) < 0) {
		url = NULL;
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	rc = get_url(t, url, entity_set, &found, body, &etag, retryable, errbuf, errlen);
	if (rc == 0 && !found) {
		snprintf(errbuf, errlen, "query %s: HTTP 404", entity_set);
		rc = -1;
	}
out:
	free(etag);
	free(url);
	free(base);
	return rc;
}
