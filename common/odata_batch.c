#include "odata_batch.h"

#include "errbuf.h"
#include "strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* ---- arena: parsed trees own one list of chunks ---- */

struct chunk {
	struct chunk *next;
	size_t used;
	size_t cap;
	_Alignas(16) char data[];
};

struct arena {
	struct chunk *head;
};

#define ARENA_CHUNK (16 * 1024)

static void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		struct chunk *c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		if (a->head && n > ARENA_CHUNK) {
			/* keep the current chunk open for small allocations */
			c->next = a->head->next;
			a->head->next = c;
			c->used = n;
			return c->data;
		}
		c->next = a->head;
		a->head = c;
	}
	void *p = a->head->data + a->head->used;
	a->head->used += n;
	return p;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void arena_free(struct arena *a)
{
	if (!a)
		return;
	struct chunk *c = a->head;
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	free(a);
}

/* ---- output of the builders (strbuf) ---- */

/* ---- shared helpers ---- */

const char *odata_batch_header_get(const struct odata_batch_header *headers, size_t nheaders, const char *name)
{
	for (size_t i = 0; i < nheaders; i++)
		if (headers[i].name && strcasecmp(headers[i].name, name) == 0)
			return headers[i].value;
	return NULL;
}

const char *odata_batch_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

static int valid_batch_id(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	if (n == 0 || n > ODATA_BATCH_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

static int has_crlf(const char *s)
{
	return s && strpbrk(s, "\r\n") != NULL;
}

static int is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int valid_token(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++)
		if (!is_tchar((unsigned char)*s))
			return 0;
	return 1;
}

/* Checks that `boundary` ("--" + it) does not occur inside a body. */
static int body_has_boundary(const char *body, size_t len, const char *boundary)
{
	size_t bl = strlen(boundary);
	if (!body || len < bl + 2)
		return 0;
	for (size_t i = 0; i + bl + 2 <= len; i++)
		if (body[i] == '-' && body[i + 1] == '-' && memcmp(body + i + 2, boundary, bl) == 0)
			return 1;
	return 0;
}

static void write_headers(struct strbuf *b, const struct odata_batch_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		strbuf_puts(b, h[i].name);
		strbuf_put(b, ": ", 2);
		strbuf_puts(b, h[i].value ? h[i].value : "");
		strbuf_put(b, "\r\n", 2);
	}
}

static int check_headers(const struct odata_batch_header *h, size_t n, const char *what, size_t idx, char *errbuf,
			 size_t errlen)
{
	if (n > ODATA_BATCH_MAX_HEADERS) {
		errbuf_set(errbuf, errlen, "%s %zu has %zu headers, more than %d", what, idx, n, ODATA_BATCH_MAX_HEADERS);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		/* a name starting with '-' could begin a line that looks like a delimiter */
		if (!valid_token(h[i].name) || h[i].name[0] == '-' || has_crlf(h[i].value)) {
			errbuf_set(errbuf, errlen, "%s %zu: header %zu has an invalid name or a CR/LF in its value", what,
			       idx, i);
			return -1;
		}
	}
	return 0;
}

/* ---- builders ---- */

static void part_preamble(struct strbuf *b, const char *content_id)
{
	strbuf_puts(b, "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
	if (content_id) {
		strbuf_puts(b, "Content-ID: ");
		strbuf_puts(b, content_id);
		strbuf_put(b, "\r\n", 2);
	}
	strbuf_put(b, "\r\n", 2);
}

static int check_request(const struct odata_batch_request *r, size_t idx, const char *const *ids, size_t nids,
			 int in_changeset, char *errbuf, size_t errlen)
{
	if (!r->method || !r->url || !*r->url || !valid_token(r->method)) {
		errbuf_set(errbuf, errlen, "request %zu needs a method and a URL", idx);
		return -1;
	}
	if (has_crlf(r->url) || strchr(r->url, ' ') || has_crlf(r->content_id) ||
	    (r->content_id && (!*r->content_id || strchr(r->content_id, ' ')))) {
		errbuf_set(errbuf, errlen, "request %zu: URL or Content-ID holds spaces or CR/LF", idx);
		return -1;
	}
	if (in_changeset && strcmp(r->method, "GET") == 0) {
		errbuf_set(errbuf, errlen, "request %zu: GET is not allowed inside a changeset", idx);
		return -1;
	}
	for (size_t i = 0; r->content_id && i < nids; i++) {
		if (strcmp(ids[i], r->content_id) == 0) {
			errbuf_set(errbuf, errlen, "request %zu: duplicate Content-ID '%s'", idx, r->content_id);
			return -1;
		}
	}
	if (r->body_len && !r->body) {
		errbuf_set(errbuf, errlen, "request %zu: body_len without a body", idx);
		return -1;
	}
	return check_headers(r->headers, r->nheaders, "request", idx, errbuf, errlen);
}

static void write_request(struct strbuf *b, const struct odata_batch_request *r)
{
	part_preamble(b, r->content_id);
	strbuf_puts(b, r->method);
	strbuf_put(b, " ", 1);
	strbuf_puts(b, r->url);
	strbuf_puts(b, " HTTP/1.1\r\n");
	write_headers(b, r->headers, r->nheaders);
	if (r->body && r->body_len && !odata_batch_header_get(r->headers, r->nheaders, "Content-Type"))
		strbuf_puts(b, "Content-Type: application/json; type=entry\r\n");
	strbuf_put(b, "\r\n", 2);
	if (r->body && r->body_len)
		strbuf_put(b, r->body, r->body_len);
}

static void write_response(struct strbuf *b, const struct odata_batch_response *r)
{
	part_preamble(b, r->content_id);
	strbuf_printf(b, "HTTP/1.1 %d %s\r\n", r->status, odata_batch_status_text(r->status));
	write_headers(b, r->headers, r->nheaders);
	if (r->body && r->body_len && !odata_batch_header_get(r->headers, r->nheaders, "Content-Type"))
		strbuf_puts(b, "Content-Type: application/json; odata.metadata=minimal\r\n");
	strbuf_put(b, "\r\n", 2);
	if (r->body && r->body_len)
		strbuf_put(b, r->body, r->body_len);
}

/* The delimiter before item i of a changeset. */
static void changeset_item(struct strbuf *b, const char *cs_boundary, size_t i)
{
	if (i > 0)
		strbuf_put(b, "\r\n", 2);
	strbuf_puts(b, "--");
	strbuf_puts(b, cs_boundary);
	strbuf_put(b, "\r\n", 2);
}

/* The close delimiter of a multipart body, then `after`. */
static void close_boundary(struct strbuf *b, const char *boundary, const char *after)
{
	strbuf_puts(b, "\r\n--");
	strbuf_puts(b, boundary);
	strbuf_puts(b, "--");
	strbuf_puts(b, after);
}

static int finish_build(struct strbuf *b, const char *boundary, char **body, size_t *body_len, char **content_type,
			char *errbuf, size_t errlen)
{
	char ct[128];
	snprintf(ct, sizeof(ct), "multipart/mixed; boundary=%s", boundary);
	char *ctdup = b->failed ? NULL : strdup(ct);
	if (!ctdup) {
		free(b->p);
		errbuf_set(errbuf, errlen, "out of memory");
		return -1;
	}
	*body = b->p;
	*body_len = b->len;
	*content_type = ctdup;
	return 0;
}

int odata_batch_request_build(const struct odata_batch_part *parts, size_t nparts, const char *batch_id,
			      char **body, size_t *body_len, char **content_type, char *errbuf, size_t errlen)
{
	int rc = -1;
	struct strbuf b = { 0 };
	const char **ids = NULL;
	size_t nids = 0, total = 0;
	*body = NULL;
	*body_len = 0;
	*content_type = NULL;
	if (!valid_batch_id(batch_id)) {
		errbuf_set(errbuf, errlen, "batch id must be 1 to %d characters of [A-Za-z0-9_.-]", ODATA_BATCH_ID_MAX);
		goto out;
	}
	for (size_t p = 0; p < nparts; p++)
		total += parts[p].nrequests;
	if (nparts == 0 || total == 0) {
		errbuf_set(errbuf, errlen, "a batch needs at least one request");
		goto out;
	}
	if (total > ODATA_BATCH_MAX_REQUESTS) {
		errbuf_set(errbuf, errlen, "The batch contains %zu requests, more than the limit of %d", total,
		       ODATA_BATCH_MAX_REQUESTS);
		goto out;
	}
	ids = calloc(total, sizeof(*ids));
	if (!ids) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	char boundary[96], cs_boundary[96];
	snprintf(boundary, sizeof(boundary), "batch_%s", batch_id);
	size_t idx = 0;
	int ncs = 0;
	for (size_t p = 0; p < nparts; p++) {
		const struct odata_batch_part *part = &parts[p];
		if (part->nrequests == 0) {
			errbuf_set(errbuf, errlen, "part %zu: a changeset must hold at least one request", p);
			goto out;
		}
		if (!part->changeset && part->nrequests != 1) {
			errbuf_set(errbuf, errlen, "part %zu: a part outside a changeset holds exactly one request", p);
			goto out;
		}
		if (part->changeset)
			snprintf(cs_boundary, sizeof(cs_boundary), "changeset_%s_%d", batch_id, ++ncs);
		if (idx > 0)
			strbuf_put(&b, "\r\n", 2);
		strbuf_puts(&b, "--");
		strbuf_puts(&b, boundary);
		strbuf_put(&b, "\r\n", 2);
		if (part->changeset) {
			strbuf_puts(&b, "Content-Type: multipart/mixed; boundary=");
			strbuf_puts(&b, cs_boundary);
			strbuf_puts(&b, "\r\n\r\n");
		}
		for (size_t i = 0; i < part->nrequests; i++, idx++) {
			const struct odata_batch_request *r = &part->requests[i];
			if (check_request(r, idx, ids, nids, part->changeset, errbuf, errlen) < 0)
				goto out;
			if (body_has_boundary(r->body, r->body_len, boundary) ||
			    (part->changeset && body_has_boundary(r->body, r->body_len, cs_boundary))) {
				errbuf_set(errbuf, errlen, "request %zu: its body contains the boundary; use another batch id",
				       idx);
				goto out;
			}
			if (r->content_id)
				ids[nids++] = r->content_id;
			if (part->changeset)
				changeset_item(&b, cs_boundary, i);
			write_request(&b, r);
		}
		if (part->changeset)
			close_boundary(&b, cs_boundary, "");
	}
	close_boundary(&b, boundary, "\r\n");
	rc = finish_build(&b, boundary, body, body_len, content_type, errbuf, errlen);
	b.p = NULL;
out:
	free(b.p);
	free(ids);
	return rc;
}

int odata_batch_response_build(const struct odata_batch_response_part *parts, size_t nparts,
			       const char *batch_id, char **body, size_t *body_len, char **content_type,
			       char *errbuf, size_t errlen)
{
	int rc = -1;
	struct strbuf b = { 0 };
	*body = NULL;
	*body_len = 0;
	*content_type = NULL;
	if (!valid_batch_id(batch_id)) {
		errbuf_set(errbuf, errlen, "batch id must be 1 to %d characters of [A-Za-z0-9_.-]", ODATA_BATCH_ID_MAX);
		goto out;
	}
	if (nparts == 0) {
		errbuf_set(errbuf, errlen, "a batch response needs at least one part");
		goto out;
	}
	char boundary[96], cs_boundary[96];
	snprintf(boundary, sizeof(boundary), "batchresponse_%s", batch_id);
	size_t idx = 0;
	int ncs = 0;
	for (size_t p = 0; p < nparts; p++) {
		const struct odata_batch_response_part *part = &parts[p];
		if (part->nresponses == 0 || (!part->changeset && part->nresponses != 1)) {
			errbuf_set(errbuf, errlen, "response part %zu: a changeset needs responses, a plain part exactly one",
			       p);
			goto out;
		}
		if (part->changeset)
			snprintf(cs_boundary, sizeof(cs_boundary), "changesetresponse_%s_%d", batch_id, ++ncs);
		if (p > 0)
			strbuf_put(&b, "\r\n", 2);
		strbuf_puts(&b, "--");
		strbuf_puts(&b, boundary);
		strbuf_put(&b, "\r\n", 2);
		if (part->changeset) {
			strbuf_puts(&b, "Content-Type: multipart/mixed; boundary=");
			strbuf_puts(&b, cs_boundary);
			strbuf_puts(&b, "\r\n\r\n");
		}
		for (size_t i = 0; i < part->nresponses; i++, idx++) {
			const struct odata_batch_response *r = &part->responses[i];
			if (r->status < 100 || r->status > 599) {
				errbuf_set(errbuf, errlen, "response %zu: status %d is outside 100..599", idx, r->status);
				goto out;
			}
			if (has_crlf(r->content_id) || (r->body_len && !r->body)) {
				errbuf_set(errbuf, errlen, "response %zu: CR/LF in Content-ID or body_len without body",
				       idx);
				goto out;
			}
			if (check_headers(r->headers, r->nheaders, "response", idx, errbuf, errlen) < 0)
				goto out;
			if (body_has_boundary(r->body, r->body_len, boundary) ||
			    (part->changeset && body_has_boundary(r->body, r->body_len, cs_boundary))) {
				errbuf_set(errbuf, errlen, "response %zu: its body contains the boundary; use another batch id",
				       idx);
				goto out;
			}
			if (part->changeset)
				changeset_item(&b, cs_boundary, i);
			write_response(&b, r);
		}
		if (part->changeset)
			close_boundary(&b, cs_boundary, "");
	}
	close_boundary(&b, boundary, "\r\n");
	rc = finish_build(&b, boundary, body, body_len, content_type, errbuf, errlen);
	b.p = NULL;
out:
	free(b.p);
	return rc;
}

/* ---- parsers ---- */

/* One operation as parsed, before it becomes a request or a response. */
struct op {
	const char *content_id;
	int changeset; /* 0 or the changeset's 1-based number */
	const char *method;
	const char *url;
	int status;
	struct odata_batch_header *headers;
	size_t nheaders;
	const char *body;
	size_t body_len;
};

struct pctx {
	struct arena *a;
	int response;
	const char *base; /* start of the whole body, for offsets */
	struct op *ops;
	size_t nops;
	size_t cap;
	int nchangesets;
	char *errbuf;
	size_t errlen;
};

#define OFF(c, p) ((size_t)((p) - (c)->base))

/* Reads one line from [p, end): *line and *llen, without the terminator (LF or CRLF). Returns the
 * position after the terminator, or end when the text ends without one. */
static const char *next_line(const char *p, const char *end, const char **line, size_t *llen)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	const char *stop = nl ? nl : end;
	*line = p;
	*llen = (size_t)(stop - p);
	if (*llen > 0 && p[*llen - 1] == '\r')
		(*llen)--;
	return nl ? nl + 1 : end;
}

static int ieq_prefix(const char *s, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);
	return n >= pl && strncasecmp(s, prefix, pl) == 0;
}

/* Extracts the boundary parameter of a multipart/mixed content type into out (NUL-terminated).
 * Returns 0, or -1 with errbuf filled. */
static int content_type_boundary(const char *ct, size_t ctlen, char *out, size_t outlen, char *errbuf,
				 size_t errlen)
{
	const char *end = ct + ctlen;
	while (ct < end && (*ct == ' ' || *ct == '\t'))
		ct++;
	if (!ieq_prefix(ct, (size_t)(end - ct), "multipart/mixed")) {
		errbuf_set(errbuf, errlen, "Content-Type must be multipart/mixed with a boundary");
		return -1;
	}
	const char *p = ct + strlen("multipart/mixed");
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
			p++;
		const char *name = p;
		while (p < end && *p != '=' && *p != ';')
			p++;
		size_t nlen = (size_t)(p - name);
		while (nlen > 0 && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
			nlen--;
		if (p >= end || *p != '=')
			continue;
		p++;
		const char *val;
		size_t vlen;
		if (p < end && *p == '"') {
			val = ++p;
			while (p < end && *p != '"')
				p++;
			if (p >= end) {
				errbuf_set(errbuf, errlen, "Content-Type: unterminated quoted parameter");
				return -1;
			}
			vlen = (size_t)(p - val);
			p++;
		} else {
			val = p;
			while (p < end && *p != ';' && *p != ' ' && *p != '\t')
				p++;
			vlen = (size_t)(p - val);
		}
		if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
			if (vlen == 0 || vlen > 70 || vlen >= outlen) {
				errbuf_set(errbuf, errlen, "Content-Type: boundary must be 1 to 70 characters");
				return -1;
			}
			for (size_t i = 0; i < vlen; i++) {
				unsigned char c = (unsigned char)val[i];
				if (c < 0x20 || c == 0x7f) {
					errbuf_set(errbuf, errlen, "Content-Type: control character in boundary");
					return -1;
				}
			}
			memcpy(out, val, vlen);
			out[vlen] = '\0';
			return 0;
		}
	}
	errbuf_set(errbuf, errlen, "Content-Type multipart/mixed has no boundary parameter");
	return -1;
}

/* Is there a delimiter line "--boundary" at p (start of a line)? Sets *close for "--boundary--". */
static int at_delimiter(const char *p, const char *end, const char *boundary, size_t bl, int *close)
{
	if ((size_t)(end - p) < bl + 2 || p[0] != '-' || p[1] != '-' || memcmp(p + 2, boundary, bl) != 0)
		return 0;
	const char *q = p + 2 + bl;
	*close = 0;
	if (end - q >= 2 && q[0] == '-' && q[1] == '-') {
		*close = 1;
		q += 2;
	}
	while (q < end && (*q == ' ' || *q == '\t'))
		q++;
	return q == end || *q == '\n' || (*q == '\r' && q + 1 < end && q[1] == '\n') || (*q == '\r' && q + 1 == end);
}

typedef int (*part_fn)(struct pctx *c, const char *p, const char *end, int changeset);

/* Splits [p, end) at the boundary and calls fn for each part's content. */
static int split_multipart(struct pctx *c, const char *p, const char *end, const char *boundary, int changeset,
			   part_fn fn)
{
	size_t bl = strlen(boundary);
	int close = 0, nparts = 0;
	/* find the first delimiter at the start of a line; what comes before is a preamble */
	const char *d = p;
	for (;;) {
		if (at_delimiter(d, end, boundary, bl, &close))
			break;
		const char *nl = memchr(d, '\n', (size_t)(end - d));
		if (!nl) {
			errbuf_set(c->errbuf, c->errlen, "no delimiter line '--%s' found in the %s", boundary,
			       changeset ? "changeset" : "batch body");
			return -1;
		}
		d = nl + 1;
	}
	while (!close) {
		const char *line;
		size_t llen;
		const char *start = next_line(d, end, &line, &llen);
		/* the part's content runs up to the line break before the next delimiter */
		const char *q = start;
		const char *next = NULL;
		for (;;) {
			if (q >= end)
				break;
			if (at_delimiter(q, end, boundary, bl, &close)) {
				next = q;
				break;
			}
			const char *nl = memchr(q, '\n', (size_t)(end - q));
			if (!nl)
				break;
			q = nl + 1;
		}
		if (!next) {
			errbuf_set(c->errbuf, c->errlen, "offset %zu: the %s has no closing delimiter '--%s--'", OFF(c, d),
			       changeset ? "changeset" : "batch", boundary);
			return -1;
		}
		const char *cend = next;
		if (cend > start && cend[-1] == '\n')
			cend--;
		if (cend > start && cend[-1] == '\r')
			cend--;
		if (cend < start)
			cend = start;
		nparts++;
		if (fn(c, start, cend, changeset) < 0)
			return -1;
		d = next;
	}
	if (nparts == 0) {
		errbuf_set(c->errbuf, c->errlen, "offset %zu: the %s holds no parts", OFF(c, d),
		       changeset ? "changeset" : "batch");
		return -1;
	}
	return 0;
}

/* Parses header lines from *pp until a blank line (or the end). */
static int parse_headers(struct pctx *c, const char **pp, const char *end, struct odata_batch_header *out,
			 size_t *n)
{
	const char *p = *pp;
	*n = 0;
	while (p < end) {
		const char *line;
		size_t llen;
		const char *after = next_line(p, end, &line, &llen);
		if (llen > ODATA_BATCH_LINE_MAX) {
			errbuf_set(c->errbuf, c->errlen, "offset %zu: header line longer than %d bytes", OFF(c, p),
			       ODATA_BATCH_LINE_MAX);
			return -1;
		}
		if (llen == 0) {
			p = after;
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			errbuf_set(c->errbuf, c->errlen, "offset %zu: folded header lines are not supported", OFF(c, p));
			return -1;
		}
		const char *colon = memchr(line, ':', llen);
		size_t nlen = colon ? (size_t)(colon - line) : 0;
		int ok = colon && nlen > 0;
		for (size_t i = 0; ok && i < nlen; i++)
			ok = is_tchar((unsigned char)line[i]);
		if (!ok) {
			errbuf_set(c->errbuf, c->errlen, "offset %zu: expected a header line 'Name: value'", OFF(c, p));
			return -1;
		}
		if (*n == ODATA_BATCH_MAX_HEADERS) {
			errbuf_set(c->errbuf, c->errlen, "offset %zu: more than %d headers in one part", OFF(c, p),
			       ODATA_BATCH_MAX_HEADERS);
			return -1;
		}
		const char *v = colon + 1, *vend = line + llen;
		while (v < vend && (*v == ' ' || *v == '\t'))
			v++;
		while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		out[*n].name = arena_strndup(c->a, line, nlen);
		out[*n].value = arena_strndup(c->a, v, (size_t)(vend - v));
		if (!out[*n].name || !out[*n].value) {
			errbuf_set(c->errbuf, c->errlen, "out of memory");
			return -1;
		}
		(*n)++;
		p = after;
	}
	*pp = p;
	return 0;
}

static struct op *new_op(struct pctx *c, const char *at)
{
	if (c->nops == ODATA_BATCH_MAX_REQUESTS) {
		errbuf_set(c->errbuf, c->errlen, "offset %zu: The batch contains more than %d requests", OFF(c, at),
		       ODATA_BATCH_MAX_REQUESTS);
		return NULL;
	}
	if (c->nops == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		if (cap > ODATA_BATCH_MAX_REQUESTS)
			cap = ODATA_BATCH_MAX_REQUESTS;
		struct op *n = realloc(c->ops, cap * sizeof(*n));
		if (!n) {
			errbuf_set(c->errbuf, c->errlen, "out of memory");
			return NULL;
		}
		c->ops = n;
		c->cap = cap;
	}
	struct op *o = &c->ops[c->nops++];
	memset(o, 0, sizeof(*o));
	return o;
}

static int parse_status_line(struct pctx *c, const char *at, const char *line, size_t llen, struct op *o)
{
	if (llen < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' || line[9] < '1' || line[9] > '5' ||
	    line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' || (llen > 12 && line[12] != ' ')) {
		errbuf_set(c->errbuf, c->errlen, "offset %zu: expected a status line 'HTTP/1.1 <code> <reason>'",
		       OFF(c, at));
		return -1;
	}
	o->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	return 0;
}

static int parse_request_line(struct pctx *c, const char *at, const char *line, size_t llen, struct op *o,
			      int changeset)
{
	static const char *const methods[] = { "GET", "POST", "PATCH", "PUT", "DELETE" };
	const char *sp1 = memchr(line, ' ', llen);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', llen - (size_t)(sp1 + 1 - line)) : NULL;
	const char *ver = sp2 ? sp2 + 1 : NULL;
	size_t vlen = ver ? llen - (size_t)(ver - line) : 0;
	if (!sp2 || sp2 == sp1 + 1 || vlen < 8 || strncmp(ver, "HTTP/1.", 7) != 0 ||
	    memchr(ver, ' ', vlen) != NULL) {
		errbuf_set(c->errbuf, c->errlen, "offset %zu: expected a request line '<METHOD> <URL> HTTP/1.1'",
		       OFF(c, at));
		return -1;
	}
	size_t mlen = (size_t)(sp1 - line);
	const char *method = NULL;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strlen(methods[i]) == mlen && memcmp(methods[i], line, mlen) == 0)
			method = methods[i];
	if (!method) {
		errbuf_set(c->errbuf, c->errlen, "offset %zu: unsupported method in a batch request (GET, POST, PATCH, "
		       "PUT or DELETE)", OFF(c, at));
		return -1;
	}
	if (changeset && strcmp(method, "GET") == 0) {
		errbuf_set(c->errbuf, c->errlen, "offset %zu: GET is not allowed inside a changeset", OFF(c, at));
		return -1;
	}
	o->method = method;
	o->url = arena_strndup(c->a, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	if (!o->url) {
		errbuf_set(c->errbuf, c->errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* One application/http operation: [p, end) holds the inner request or response. */
static int parse_op(struct pctx *c, const char *p, const char *end, const char *content_id, int changeset)
{
	struct odata_batch_header hdr[ODATA_BATCH_MAX_HEADERS];
	struct op *o = new_op(c, p);
	if (!o)
		return -1;
	o->content_id = content_id;
	o->changeset = changeset;
	const char *line;
	size_t llen;
	const char *at = p;
	p = next_line(p, end, &line, &llen);
	if (llen > ODATA_BATCH_LINE_MAX) {
		errbuf_set(c->errbuf, c->errlen, "offset %zu: request line longer than %d bytes", OFF(c, at),
		       ODATA_BATCH_LINE_MAX);
		return -1;
	}
	int rc = c->response ? parse_status_line(c, at, line, llen, o)
			     : parse_request_line(c, at, line, llen, o, changeset);
	if (rc < 0)
		return -1;
	size_t nh = 0;
	if (parse_headers(c, &p, end, hdr, &nh) < 0)
		return -1;
	if (nh) {
		o->headers = arena_alloc(c->a, nh * sizeof(*hdr));
		if (!o->headers) {
			errbuf_set(c->errbuf, c->errlen, "out of memory");
			return -1;
		}
		memcpy(o->headers, hdr, nh * sizeof(*hdr));
		o->nheaders = nh;
	}
	/* trailing line breaks before the delimiter are framing, not body */
	while (end > p && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	if (end > p) {
		o->body = arena_strndup(c->a, p, (size_t)(end - p));
		if (!o->body) {
			errbuf_set(c->errbuf, c->errlen, "out of memory");
			return -1;
		}
		o->body_len = (size_t)(end - p);
	}
	return 0;
}

static int parse_part(struct pctx *c, const char *p, const char *end, int changeset);

static int parse_changeset_part(struct pctx *c, const char *p, const char *end, int changeset)
{
	return parse_part(c, p, end, changeset);
}

/* A top-level part (changeset == 0) or a part inside changeset number `changeset`. */
static int parse_part(struct pctx *c, const char *p, const char *end, int changeset)
{
	struct odata_batch_header hdr[ODATA_BATCH_MAX_HEADERS];
	size_t nh = 0;
	const char *at = p;
	if (parse_headers(c, &p, end, hdr, &nh) < 0)
		return -1;
	const char *ct = odata_batch_header_get(hdr, nh, "Content-Type");
	if (ct && ieq_prefix(ct, strlen(ct), "multipart/mixed")) {
		if (changeset) {
			errbuf_set(c->errbuf, c->errlen, "offset %zu: changesets cannot be nested", OFF(c, at));
			return -1;
		}
		char boundary[80];
		if (content_type_boundary(ct, strlen(ct), boundary, sizeof(boundary), c->errbuf, c->errlen) < 0)
			return -1;
		/* split_multipart refuses a changeset without parts, so every changeset holds operations */
		int num = ++c->nchangesets;
		return split_multipart(c, p, end, boundary, num, parse_changeset_part);
	}
	if (!ct || !ieq_prefix(ct, strlen(ct), "application/http")) {
		errbuf_set(c->errbuf, c->errlen,
		       "offset %zu: a batch part must have Content-Type application/http or multipart/mixed",
		       OFF(c, at));
		return -1;
	}
	const char *cid = odata_batch_header_get(hdr, nh, "Content-ID");
	if (cid && !c->response) {
		for (size_t i = 0; i < c->nops; i++) {
			if (c->ops[i].content_id && strcmp(c->ops[i].content_id, cid) == 0) {
				errbuf_set(c->errbuf, c->errlen, "offset %zu: duplicate Content-ID in the batch", OFF(c, at));
				return -1;
			}
		}
	}
	return parse_op(c, p, end, cid, changeset);
}

static int parse_top_part(struct pctx *c, const char *p, const char *end, int changeset)
{
	(void)changeset;
	return parse_part(c, p, end, 0);
}

/* Parses a whole body into c->ops; groups are formed afterwards. */
static int parse_body(struct pctx *c, const char *content_type, const char *body, size_t len, size_t max_body)
{
	char boundary[80];
	if (!content_type || !body) {
		errbuf_set(c->errbuf, c->errlen, "missing Content-Type or body");
		return -1;
	}
	if (len > max_body) {
		errbuf_set(c->errbuf, c->errlen, "the batch body is %zu bytes, over the limit of %zu", len, max_body);
		return -1;
	}
	if (content_type_boundary(content_type, strlen(content_type), boundary, sizeof(boundary), c->errbuf,
				  c->errlen) < 0)
		return -1;
	c->base = body;
	return split_multipart(c, body, body + len, boundary, 0, parse_top_part);
}

/* Number of top-level parts: each changeset counts once, each plain op once. */
static size_t count_groups(const struct op *ops, size_t n)
{
	size_t g = 0;
	for (size_t i = 0; i < n; i++)
		if (ops[i].changeset == 0 || i == 0 || ops[i - 1].changeset != ops[i].changeset)
			g++;
	return g;
}

int odata_batch_request_parse(const char *content_type, const char *body, size_t len, size_t max_body,
			      struct odata_batch *out, char *errbuf, size_t errlen)
{
	int rc = -1;
	memset(out, 0, sizeof(*out));
	struct pctx c = { .response = 0, .errbuf = errbuf, .errlen = errlen };
	c.a = calloc(1, sizeof(*c.a));
	if (!c.a) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	if (parse_body(&c, content_type, body, len, max_body) < 0)
		goto out;
	size_t ng = count_groups(c.ops, c.nops);
	struct odata_batch_part *parts = arena_alloc(c.a, ng * sizeof(*parts));
	struct odata_batch_request *reqs = arena_alloc(c.a, c.nops * sizeof(*reqs));
	if (!parts || !reqs) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	size_t g = 0;
	for (size_t i = 0; i < c.nops; i++) {
		const struct op *o = &c.ops[i];
		reqs[i] = (struct odata_batch_request){ .content_id = o->content_id, .method = o->method,
							.url = o->url, .headers = o->headers,
							.nheaders = o->nheaders, .body = o->body,
							.body_len = o->body_len };
		if (o->changeset == 0 || i == 0 || c.ops[i - 1].changeset != o->changeset) {
			parts[g++] = (struct odata_batch_part){ .changeset = o->changeset != 0,
								.requests = &reqs[i], .nrequests = 1 };
		} else {
			parts[g - 1].nrequests++;
		}
	}
	out->parts = parts;
	out->nparts = ng;
	out->nrequests = c.nops;
	out->arena_ = c.a;
	c.a = NULL;
	rc = 0;
out:
	free(c.ops);
	arena_free(c.a);
	return rc;
}

void odata_batch_clear(struct odata_batch *b)
{
	if (!b)
		return;
	arena_free(b->arena_);
	memset(b, 0, sizeof(*b));
}

int odata_batch_response_parse(const char *content_type, const char *body, size_t len, size_t max_body,
			       struct odata_batch_result *out, char *errbuf, size_t errlen)
{
	int rc = -1;
	memset(out, 0, sizeof(*out));
	struct pctx c = { .response = 1, .errbuf = errbuf, .errlen = errlen };
	c.a = calloc(1, sizeof(*c.a));
	if (!c.a) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	if (parse_body(&c, content_type, body, len, max_body) < 0)
		goto out;
	size_t ng = count_groups(c.ops, c.nops);
	struct odata_batch_response_part *parts = arena_alloc(c.a, ng * sizeof(*parts));
	struct odata_batch_response *resps = arena_alloc(c.a, c.nops * sizeof(*resps));
	if (!parts || !resps) {
		errbuf_set(errbuf, errlen, "out of memory");
		goto out;
	}
	size_t g = 0;
	for (size_t i = 0; i < c.nops; i++) {
		const struct op *o = &c.ops[i];
		resps[i] = (struct odata_batch_response){ .content_id = o->content_id, .status = o->status,
							  .headers = o->headers, .nheaders = o->nheaders,
							  .body = o->body, .body_len = o->body_len };
		if (o->changeset == 0 || i == 0 || c.ops[i - 1].changeset != o->changeset) {
			parts[g++] = (struct odata_batch_response_part){ .changeset = o->changeset != 0,
									 .responses = &resps[i], .nresponses = 1 };
		} else {
			parts[g - 1].nresponses++;
		}
	}
	out->parts = parts;
	out->nparts = ng;
	out->nresponses = c.nops;
	out->arena_ = c.a;
	c.a = NULL;
	rc = 0;
out:
	free(c.ops);
	arena_free(c.a);
	return rc;
}

void odata_batch_result_clear(struct odata_batch_result *r)
{
	if (!r)
		return;
	arena_free(r->arena_);
	memset(r, 0, sizeof(*r));
}
