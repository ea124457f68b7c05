#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odata_batch.h"

static char err[512];

#define MAX_BODY (16u * 1024 * 1024)

/* The request example of dynamics.md 5.5, with LF line ends and a quoted boundary. */
static const char DOC_REQUEST[] =
	"--batch_AAA123\n"
	"Content-Type: multipart/mixed; boundary=\"changeset_BBB456\"\n"
	"\n"
	"--changeset_BBB456\n"
	"Content-Type: application/http\n"
	"Content-Transfer-Encoding: binary\n"
	"Content-ID: 1\n"
	"\n"
	"PATCH /api/data/v9.2/msdyn_purchaseorders(msdyn_name='00000123') HTTP/1.1\n"
	"Content-Type: application/json; type=entry\n"
	"\n"
	"{\"msdyn_dateexpected\":\"2025-01-31\",\"msdyn_vendor@odata.bind\":\"/accounts(accountnumber='V-100')\"}\n"
	"--changeset_BBB456\n"
	"Content-Type: application/http\n"
	"Content-Transfer-Encoding: binary\n"
	"Content-ID: 2\n"
	"\n"
	"POST /api/data/v9.2/msdyn_purchaseorderproducts HTTP/1.1\n"
	"Content-Type: application/json; type=entry\n"
	"\n"
	"{\"msdyn_lineorder\":1,\"msdyn_quantity\":5,\"msdyn_PurchaseOrder@odata.bind\":\"$1\"}\n"
	"--changeset_BBB456--\n"
	"--batch_AAA123--\n";

/* The response example of dynamics.md 5.5 (LF line ends, unquoted boundaries). */
static const char DOC_RESPONSE[] =
	"--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f\n"
	"Content-Type: multipart/mixed; boundary=changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15\n"
	"\n"
	"--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15\n"
	"Content-Type: application/http\n"
	"Content-Transfer-Encoding: binary\n"
	"Content-ID: 1\n"
	"\n"
	"HTTP/1.1 204 No Content\n"
	"OData-Version: 4.0\n"
	"OData-EntityId: {org}/api/data/v9.2/msdyn_purchaseorders(e73ffc82-e292-ed11-aad1-000d3a9933c9)\n"
	"\n"
	"--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15\n"
	"Content-Type: application/http\n"
	"Content-Transfer-Encoding: binary\n"
	"Content-ID: 2\n"
	"\n"
	"HTTP/1.1 204 No Content\n"
	"OData-Version: 4.0\n"
	"Location: {org}/api/data/v9.2/msdyn_purchaseorderproducts(e83ffc82-e292-ed11-aad1-000d3a9933c9)\n"
	"OData-EntityId: {org}/api/data/v9.2/msdyn_purchaseorderproducts(e83ffc82-e292-ed11-aad1-000d3a9933c9)\n"
	"\n"
	"--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15--\n"
	"--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f--\n";

/* LF -> CRLF copy; caller frees. */
static char *to_crlf(const char *s, size_t *len)
{
	size_t n = strlen(s), lf = 0;
	for (size_t i = 0; i < n; i++)
		lf += s[i] == '\n';
	char *out = malloc(n + lf + 1);
	assert_non_null(out);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			out[o++] = '\r';
		out[o++] = s[i];
	}
	out[o] = '\0';
	*len = o;
	return out;
}

static void check_doc_request(const struct odata_batch *b)
{
	assert_int_equal(1, b->nparts);
	assert_int_equal(2, b->nrequests);
	assert_true(b->parts[0].changeset);
	assert_int_equal(2, b->parts[0].nrequests);
	const struct odata_batch_request *r1 = &b->parts[0].requests[0], *r2 = &b->parts[0].requests[1];
	assert_string_equal("1", r1->content_id);
	assert_string_equal("PATCH", r1->method);
	assert_string_equal("/api/data/v9.2/msdyn_purchaseorders(msdyn_name='00000123')", r1->url);
	assert_int_equal(1, r1->nheaders);
	assert_string_equal("application/json; type=entry", odata_batch_header_get(r1->headers, r1->nheaders,
										    "content-type"));
	assert_string_equal("{\"msdyn_dateexpected\":\"2025-01-31\",\"msdyn_vendor@odata.bind\":\"/accounts("
			    "accountnumber='V-100')\"}",
			    r1->body);
	assert_int_equal(strlen(r1->body), r1->body_len);
	assert_string_equal("2", r2->content_id);
	assert_string_equal("POST", r2->method);
	assert_string_equal("/api/data/v9.2/msdyn_purchaseorderproducts", r2->url);
	assert_non_null(strstr(r2->body, "\"$1\""));
}

static void test_parse_doc_example_lf_and_crlf(void **state)
{
	(void)state;
	struct odata_batch b;
	const char *ct = "multipart/mixed; boundary=\"batch_AAA123\"";
	assert_int_equal(0, odata_batch_request_parse(ct, DOC_REQUEST, strlen(DOC_REQUEST), MAX_BODY, &b, err,
						      sizeof(err)));
	check_doc_request(&b);
	odata_batch_clear(&b);
	odata_batch_clear(&b);
	odata_batch_clear(NULL);

	size_t n = 0;
	char *crlf = to_crlf(DOC_REQUEST, &n);
	/* unquoted boundary, other parameters and odd casing are fine too */
	assert_int_equal(0, odata_batch_request_parse("Multipart/Mixed;charset=utf-8;  BOUNDARY=batch_AAA123", crlf,
						      n, MAX_BODY, &b, err, sizeof(err)));
	check_doc_request(&b);
	odata_batch_clear(&b);
	free(crlf);
}

static void test_build_request_golden(void **state)
{
	(void)state;
	struct odata_batch_header h[] = { { "Prefer", "return=representation" } };
	struct odata_batch_request get = { .method = "GET", .url = "accounts?$select=name" };
	struct odata_batch_request cs[] = {
		{ .content_id = "1", .method = "POST", .url = "accounts", .headers = h, .nheaders = 1,
		  .body = "{\"name\":\"A\"}", .body_len = 12 },
		{ .content_id = "2", .method = "DELETE", .url = "$1" },
	};
	struct odata_batch_part parts[] = { { 0, &get, 1 }, { 1, cs, 2 } };
	char *body = NULL, *ct = NULL;
	size_t len = 0;
	assert_int_equal(0, odata_batch_request_build(parts, 2, "X1", &body, &len, &ct, err, sizeof(err)));
	assert_string_equal("multipart/mixed; boundary=batch_X1", ct);
	assert_string_equal("--batch_X1\r\n"
			    "Content-Type: application/http\r\n"
			    "Content-Transfer-Encoding: binary\r\n"
			    "\r\n"
			    "GET accounts?$select=name HTTP/1.1\r\n"
			    "\r\n"
			    "\r\n--batch_X1\r\n"
			    "Content-Type: multipart/mixed; boundary=changeset_X1_1\r\n"
			    "\r\n"
			    "--changeset_X1_1\r\n"
			    "Content-Type: application/http\r\n"
			    "Content-Transfer-Encoding: binary\r\n"
			    "Content-ID: 1\r\n"
			    "\r\n"
			    "POST accounts HTTP/1.1\r\n"
			    "Prefer: return=representation\r\n"
			    "Content-Type: application/json; type=entry\r\n"
			    "\r\n"
			    "{\"name\":\"A\"}"
			    "\r\n--changeset_X1_1\r\n"
			    "Content-Type: application/http\r\n"
			    "Content-Transfer-Encoding: binary\r\n"
			    "Content-ID: 2\r\n"
			    "\r\n"
			    "DELETE $1 HTTP/1.1\r\n"
			    "\r\n"
			    "\r\n--changeset_X1_1--"
			    "\r\n--batch_X1--\r\n",
			    body);
	assert_int_equal(strlen(body), len);
	free(body);
	free(ct);
}

static void test_request_round_trip(void **state)
{
	(void)state;
	/* a pretty-printed body with inner line breaks and a line that starts like a boundary */
	const char *pretty = "{\r\n  \"name\": \"O'Brien\",\r\n  \"x\": \"--batch_R\"\r\n}";
	struct odata_batch_header h1[] = { { "If-Match", "W/\"12\"" }, { "Content-Type", "application/json" } };
	struct odata_batch_request a = { .content_id = "a1", .method = "PATCH",
					 .url = "https://org.crm.dynamics.com/api/data/v9.2/accounts(accountnumber='A%2F1')",
					 .headers = h1, .nheaders = 2, .body = pretty, .body_len = strlen(pretty) };
	struct odata_batch_request b1[] = {
		{ .content_id = "1", .method = "POST", .url = "/data/CustomersV3", .body = "{}", .body_len = 2 },
		{ .content_id = "2", .method = "PUT", .url = "$1/Name", .body = "{\"value\":\"x\"}", .body_len = 13 },
	};
	struct odata_batch_request c1 = { .method = "DELETE", .url = "accounts(00000000-0000-0000-0000-000000000001)" };
	struct odata_batch_part parts[] = { { 0, &a, 1 }, { 1, b1, 2 }, { 0, &c1, 1 } };
	char *body = NULL, *ct = NULL;
	size_t len = 0;
	assert_int_equal(0, odata_batch_request_build(parts, 3, "R-1.x", &body, &len, &ct, err, sizeof(err)));
	struct odata_batch p;
	assert_int_equal(0, odata_batch_request_parse(ct, body, len, MAX_BODY, &p, err, sizeof(err)));
	assert_int_equal(3, p.nparts);
	assert_int_equal(4, p.nrequests);
	assert_false(p.parts[0].changeset);
	assert_true(p.parts[1].changeset);
	assert_false(p.parts[2].changeset);
	const struct odata_batch_request *ra = &p.parts[0].requests[0];
	assert_string_equal("a1", ra->content_id);
	assert_string_equal(a.url, ra->url);
	assert_int_equal(2, ra->nheaders);
	assert_string_equal("W/\"12\"", odata_batch_header_get(ra->headers, ra->nheaders, "if-match"));
	/* the caller's Content-Type is kept, no default added */
	assert_string_equal("application/json", odata_batch_header_get(ra->headers, ra->nheaders, "Content-Type"));
	assert_int_equal(strlen(pretty), ra->body_len);
	assert_memory_equal(pretty, ra->body, ra->body_len);
	assert_string_equal("$1/Name", p.parts[1].requests[1].url);
	assert_string_equal("PUT", p.parts[1].requests[1].method);
	assert_string_equal("{\"value\":\"x\"}", p.parts[1].requests[1].body);
	assert_null(p.parts[2].requests[0].body);
	assert_int_equal(0, p.parts[2].requests[0].body_len);
	assert_null(p.parts[2].requests[0].content_id);
	odata_batch_clear(&p);
	free(body);
	free(ct);
}

static void test_preamble_epilogue_and_prefix_boundary(void **state)
{
	(void)state;
	const char *body = "This is a preamble.\r\n"
			   "--b\r\n"
			   "Content-Type: application/http\r\n"
			   "\r\n"
			   "POST accounts HTTP/1.1\r\n"
			   "\r\n"
			   "line1\r\n"
			   "--bX not a delimiter\r\n"
			   "--b-- neither\r\n"
			   "--b\r\n"
			   "Content-Type: application/http\r\n"
			   "\r\n"
			   "GET accounts HTTP/1.1\r\n"
			   "--b--\r\n"
			   "epilogue --b\r\n";
	struct odata_batch p;
	assert_int_equal(0, odata_batch_request_parse("multipart/mixed; boundary=b", body, strlen(body), MAX_BODY,
						      &p, err, sizeof(err)));
	assert_int_equal(2, p.nrequests);
	assert_string_equal("line1\r\n--bX not a delimiter\r\n--b-- neither", p.parts[0].requests[0].body);
	assert_string_equal("GET", p.parts[1].requests[0].method);
	odata_batch_clear(&p);
}

static void test_response_build_golden_and_round_trip(void **state)
{
	(void)state;
	struct odata_batch_header h1[] = {
		{ "OData-Version", "4.0" },
		{ "OData-EntityId", "https://org/api/data/v9.2/accounts(e73ffc82-e292-ed11-aad1-000d3a9933c9)" },
	};
	struct odata_batch_response cs[] = {
		{ .content_id = "1", .status = 204, .headers = h1, .nheaders = 2 },
		{ .content_id = "2", .status = 201, .body = "{\"name\":\"x\"}", .body_len = 12 },
	};
	struct odata_batch_response get = { .status = 200, .body = "{\"value\":[]}", .body_len = 12 };
	struct odata_batch_response_part parts[] = { { 1, cs, 2 }, { 0, &get, 1 } };
	char *body = NULL, *ct = NULL;
	size_t len = 0;
	assert_int_equal(0, odata_batch_response_build(parts, 2, "f27e", &body, &len, &ct, err, sizeof(err)));
	assert_string_equal("multipart/mixed; boundary=batchresponse_f27e", ct);
	assert_string_equal("--batchresponse_f27e\r\n"
			    "Content-Type: multipart/mixed; boundary=changesetresponse_f27e_1\r\n"
			    "\r\n"
			    "--changesetresponse_f27e_1\r\n"
			    "Content-Type: application/http\r\n"
			    "Content-Transfer-Encoding: binary\r\n"
			    "Content-ID: 1\r\n"
			    "\r\n"
			    "HTTP/1.1 204 No Content\r\n"
			    "OData-Version: 4.0\r\n"
			    "OData-EntityId: https://org/api/data/v9.2/accounts(e73ffc82-e292-ed11-aad1-000d3a9933c9)\r\n"
			    "\r\n"
			    "\r\n--changesetresponse_f27e_1\r\n"
			    "Content-Type: application/http\r\n"
			    "Content-Transfer-Encoding: binary\r\n"
			    "Content-ID: 2\r\n"
			    "\r\n"
			    "HTTP/1.1 201 Created\r\n"
			    "Content-Type: application/json; odata.metadata=minimal\r\n"
			    "\r\n"
			    "{\"name\":\"x\"}"
			    "\r\n--changesetresponse_f27e_1--"
			    "\r\n--batchresponse_f27e\r\n"
			    "Content-Type: application/http\r\n"
			    "Content-Transfer-Encoding: binary\r\n"
			    "\r\n"
			    "HTTP/1.1 200 OK\r\n"
			    "Content-Type: application/json; odata.metadata=minimal\r\n"
			    "\r\n"
			    "{\"value\":[]}"
			    "\r\n--batchresponse_f27e--\r\n",
			    body);
	struct odata_batch_result r;
	assert_int_equal(0, odata_batch_response_parse(ct, body, len, MAX_BODY, &r, err, sizeof(err)));
	assert_int_equal(2, r.nparts);
	assert_int_equal(3, r.nresponses);
	assert_true(r.parts[0].changeset);
	assert_int_equal(204, r.parts[0].responses[0].status);
	assert_string_equal("1", r.parts[0].responses[0].content_id);
	assert_null(r.parts[0].responses[0].body);
	assert_string_equal(h1[1].value, odata_batch_header_get(r.parts[0].responses[0].headers,
								 r.parts[0].responses[0].nheaders, "odata-entityid"));
	assert_int_equal(201, r.parts[0].responses[1].status);
	assert_string_equal("{\"name\":\"x\"}", r.parts[0].responses[1].body);
	assert_false(r.parts[1].changeset);
	assert_int_equal(200, r.parts[1].responses[0].status);
	odata_batch_result_clear(&r);
	odata_batch_result_clear(&r);
	odata_batch_result_clear(NULL);
	free(body);
	free(ct);
}

static void test_response_failed_changeset_is_one_part(void **state)
{
	(void)state;
	const char *e = "{\"error\":{\"code\":\"0x80044331\",\"message\":\"too long\"}}";
	struct odata_batch_response fail = { .content_id = "2", .status = 400, .body = e, .body_len = strlen(e) };
	struct odata_batch_response_part parts[] = { { 0, &fail, 1 } };
	char *body = NULL, *ct = NULL;
	size_t len = 0;
	assert_int_equal(0, odata_batch_response_build(parts, 1, "e1", &body, &len, &ct, err, sizeof(err)));
	assert_null(strstr(body, "changesetresponse"));
	assert_non_null(strstr(body, "HTTP/1.1 400 Bad Request\r\n"));
	struct odata_batch_result r;
	assert_int_equal(0, odata_batch_response_parse(ct, body, len, MAX_BODY, &r, err, sizeof(err)));
	assert_int_equal(1, r.nresponses);
	assert_false(r.parts[0].changeset);
	assert_int_equal(400, r.parts[0].responses[0].status);
	assert_string_equal(e, r.parts[0].responses[0].body);
	odata_batch_result_clear(&r);
	free(body);
	free(ct);
}

static void test_parse_doc_response(void **state)
{
	(void)state;
	struct odata_batch_result r;
	const char *ct = "multipart/mixed; boundary=batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f";
	assert_int_equal(0, odata_batch_response_parse(ct, DOC_RESPONSE, strlen(DOC_RESPONSE), MAX_BODY, &r, err,
						       sizeof(err)));
	assert_int_equal(1, r.nparts);
	assert_int_equal(2, r.nresponses);
	const struct odata_batch_response *b = &r.parts[0].responses[1];
	assert_string_equal("2", b->content_id);
	assert_int_equal(204, b->status);
	assert_int_equal(3, b->nheaders);
	assert_string_equal("{org}/api/data/v9.2/msdyn_purchaseorderproducts(e83ffc82-e292-ed11-aad1-000d3a9933c9)",
			    odata_batch_header_get(b->headers, b->nheaders, "Location"));
	odata_batch_result_clear(&r);
}

static void test_status_text(void **state)
{
	(void)state;
	assert_string_equal("No Content", odata_batch_status_text(204));
	assert_string_equal("Precondition Failed", odata_batch_status_text(412));
	assert_string_equal("Too Many Requests", odata_batch_status_text(429));
	assert_string_equal("Unknown", odata_batch_status_text(299));
}

/* A body of n plain GET parts; caller frees. */
static char *many_parts(size_t n, size_t *len)
{
	const char *one = "--b\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n\r\n";
	size_t ol = strlen(one);
	char *s = malloc(n * ol + 16);
	assert_non_null(s);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * ol, one, ol);
	memcpy(s + n * ol, "--b--\r\n", 8);
	*len = n * ol + 7;
	return s;
}

static void test_request_count_cap(void **state)
{
	(void)state;
	size_t len = 0;
	char *s = many_parts(1000, &len);
	struct odata_batch p;
	assert_int_equal(0, odata_batch_request_parse("multipart/mixed; boundary=b", s, len, MAX_BODY, &p, err,
						      sizeof(err)));
	assert_int_equal(1000, p.nrequests);
	assert_int_equal(1000, p.nparts);
	odata_batch_clear(&p);
	free(s);
	s = many_parts(1001, &len);
	assert_int_equal(-1, odata_batch_request_parse("multipart/mixed; boundary=b", s, len, MAX_BODY, &p, err,
						       sizeof(err)));
	assert_non_null(strstr(err, "more than 1000 requests"));
	assert_null(p.parts);
	free(s);

	/* the builder refuses too */
	struct odata_batch_request *reqs = calloc(1001, sizeof(*reqs));
	assert_non_null(reqs);
	for (size_t i = 0; i < 1001; i++) {
		reqs[i].method = "POST";
		reqs[i].url = "accounts";
	}
	struct odata_batch_part part = { 1, reqs, 1001 };
	char *body = NULL, *ct = NULL;
	assert_int_equal(-1, odata_batch_request_build(&part, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "limit of 1000"));
	assert_null(body);
	assert_null(ct);
	part.nrequests = 1000;
	assert_int_equal(0, odata_batch_request_build(&part, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_int_equal(0, odata_batch_request_parse(ct, body, len, MAX_BODY, &p, err, sizeof(err)));
	assert_int_equal(1, p.nparts);
	assert_int_equal(1000, p.parts[0].nrequests);
	odata_batch_clear(&p);
	free(body);
	free(ct);
	free(reqs);
}

struct bad_parse {
	const char *ct;
	const char *body;
	const char *words;
};

#define PART "Content-Type: application/http\r\n\r\n"

static void test_request_parse_errors(void **state)
{
	(void)state;
	static const struct bad_parse cases[] = {
		{ "application/json", "--b\r\n", "multipart/mixed" },
		{ "multipart/mixed", "--b\r\n", "no boundary" },
		{ "multipart/mixed; boundary=\"b", "--b\r\n", "unterminated" },
		{ "multipart/mixed; boundary=b", "no delimiter here", "no delimiter" },
		{ "multipart/mixed; boundary=b", "--b--\r\n", "holds no parts" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "GET a HTTP/1.1\r\n\r\n", "no closing delimiter" },
		{ "multipart/mixed; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\nGET a HTTP/1.1\r\n--b--",
		  "application/http" },
		{ "multipart/mixed; boundary=b", "--b\r\n\r\nGET a HTTP/1.1\r\n--b--", "application/http" },
		{ "multipart/mixed; boundary=b",
		  "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n"
		  "Content-Type: multipart/mixed; boundary=d\r\n\r\n--d\r\n" PART "POST a HTTP/1.1\r\n--d--\r\n--c--\r\n--b--",
		  "cannot be nested" },
		{ "multipart/mixed; boundary=b",
		  "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n" PART "GET a HTTP/1.1\r\n--c--\r\n--b--",
		  "GET is not allowed inside a changeset" },
		{ "multipart/mixed; boundary=b", "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c--\r\n--b--",
		  "holds no parts" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "GET a\r\n--b--", "request line" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "GET  HTTP/1.1\r\n--b--", "request line" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "FETCH a HTTP/1.1\r\n--b--", "unsupported method" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "GET a SPDY/3\r\n--b--", "request line" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "GET a HTTP/1.1\r\nNoColon\r\n\r\n--b--", "Name: value" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "GET a HTTP/1.1\r\nA: 1\r\n  folded\r\n\r\n--b--",
		  "folded" },
		{ "multipart/mixed; boundary=b",
		  "--b\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nPOST a HTTP/1.1\r\n"
		  "--b\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nPOST a HTTP/1.1\r\n--b--",
		  "duplicate Content-ID in the batch" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct odata_batch p;
		err[0] = '\0';
		int rc = odata_batch_request_parse(cases[i].ct, cases[i].body, strlen(cases[i].body), MAX_BODY, &p, err,
						   sizeof(err));
		if (rc != -1)
			fail_msg("case %zu was accepted", i);
		assert_null(p.parts);
		assert_null(p.arena_);
		if (!strstr(err, cases[i].words))
			fail_msg("case %zu: expected '%s' in: %s", i, cases[i].words, err);
	}
}

static void test_parse_caps(void **state)
{
	(void)state;
	struct odata_batch p;
	/* body over the caller's cap */
	assert_int_equal(-1, odata_batch_request_parse("multipart/mixed; boundary=b", DOC_REQUEST, strlen(DOC_REQUEST),
						       100, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "over the limit of 100"));
	/* 65 headers */
	char *s = malloc(4096);
	assert_non_null(s);
	int n = snprintf(s, 4096, "--b\r\n" PART "GET a HTTP/1.1\r\n");
	for (int i = 0; i < 65; i++)
		n += snprintf(s + n, 4096 - (size_t)n, "H%d: v\r\n", i);
	n += snprintf(s + n, 4096 - (size_t)n, "\r\n--b--\r\n");
	assert_int_equal(-1, odata_batch_request_parse("multipart/mixed; boundary=b", s, (size_t)n, MAX_BODY, &p, err,
						       sizeof(err)));
	assert_non_null(strstr(err, "more than 64 headers"));
	free(s);
	/* a request line over the cap */
	size_t big = ODATA_BATCH_LINE_MAX + 100;
	s = malloc(big + 200);
	assert_non_null(s);
	n = snprintf(s, 200, "--b\r\n" PART "GET ");
	memset(s + n, 'a', big);
	n += (int)big;
	n += snprintf(s + n, 200, " HTTP/1.1\r\n--b--\r\n");
	assert_int_equal(-1, odata_batch_request_parse("multipart/mixed; boundary=b", s, (size_t)n, MAX_BODY, &p, err,
						       sizeof(err)));
	assert_non_null(strstr(err, "longer than"));
	free(s);
	/* a header line over the cap */
	s = malloc(big + 200);
	assert_non_null(s);
	n = snprintf(s, 200, "--b\r\n" PART "GET a HTTP/1.1\r\nX-Long: ");
	memset(s + n, 'a', big);
	n += (int)big;
	n += snprintf(s + n, 200, "\r\n\r\n--b--\r\n");
	assert_int_equal(-1, odata_batch_request_parse("multipart/mixed; boundary=b", s, (size_t)n, MAX_BODY, &p, err,
						       sizeof(err)));
	assert_non_null(strstr(err, "header line longer than"));
	free(s);
	/* a control character in the boundary, a missing body */
	assert_int_equal(-1, odata_batch_request_parse("multipart/mixed; boundary=\"a\tb\"", "x", 1, MAX_BODY, &p, err,
						       sizeof(err)));
	assert_non_null(strstr(err, "control character"));
	assert_int_equal(-1, odata_batch_request_parse(NULL, "x", 1, MAX_BODY, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "missing Content-Type"));
	assert_int_equal(-1, odata_batch_request_parse("multipart/mixed; boundary=b", NULL, 0, MAX_BODY, &p, err,
						       sizeof(err)));
	/* a boundary over 70 characters */
	char ct[128];
	snprintf(ct, sizeof(ct), "multipart/mixed; boundary=%071d", 0);
	assert_int_equal(-1, odata_batch_request_parse(ct, "x", 1, MAX_BODY, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "1 to 70"));
}

static void test_build_errors(void **state)
{
	(void)state;
	char *body = NULL, *ct = NULL;
	size_t len = 0;
	struct odata_batch_request ok = { .method = "GET", .url = "accounts" };
	struct odata_batch_part p1 = { 0, &ok, 1 };
	assert_int_equal(-1, odata_batch_request_build(&p1, 1, "bad id!", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "batch id"));
	assert_int_equal(-1, odata_batch_request_build(&p1, 1, "0123456789012345678901234567890123456789X", &body,
						       &len, &ct, err, sizeof(err)));
	assert_int_equal(-1, odata_batch_request_build(&p1, 0, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "at least one"));
	struct odata_batch_part get_in_cs = { 1, &ok, 1 };
	assert_int_equal(-1, odata_batch_request_build(&get_in_cs, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "GET is not allowed"));
	struct odata_batch_request crlf = { .method = "POST", .url = "accounts\r\nX: y" };
	struct odata_batch_part p2 = { 0, &crlf, 1 };
	assert_int_equal(-1, odata_batch_request_build(&p2, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "CR/LF"));
	struct odata_batch_header hh = { "X-A", "1\r\nInjected: yes" };
	struct odata_batch_request hdr = { .method = "POST", .url = "a", .headers = &hh, .nheaders = 1 };
	struct odata_batch_part p3 = { 0, &hdr, 1 };
	assert_int_equal(-1, odata_batch_request_build(&p3, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "header"));
	struct odata_batch_header dash = { "--batch_x", "1" };
	struct odata_batch_request dashreq = { .method = "POST", .url = "a", .headers = &dash, .nheaders = 1 };
	struct odata_batch_part pd = { 0, &dashreq, 1 };
	assert_int_equal(-1, odata_batch_request_build(&pd, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "header"));
	struct odata_batch_request dup[] = { { .content_id = "1", .method = "POST", .url = "a" },
					     { .content_id = "1", .method = "POST", .url = "b" } };
	struct odata_batch_part p4 = { 1, dup, 2 };
	assert_int_equal(-1, odata_batch_request_build(&p4, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "duplicate Content-ID"));
	struct odata_batch_request inb = { .method = "POST", .url = "a", .body = "x\r\n--batch_x\r\ny", .body_len = 16 };
	struct odata_batch_part p5 = { 0, &inb, 1 };
	assert_int_equal(-1, odata_batch_request_build(&p5, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "boundary"));
	struct odata_batch_part two = { 0, dup, 2 };
	assert_int_equal(-1, odata_batch_request_build(&two, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "exactly one"));
	struct odata_batch_request nomethod = { .url = "a" };
	struct odata_batch_part p6 = { 0, &nomethod, 1 };
	assert_int_equal(-1, odata_batch_request_build(&p6, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "method"));
	assert_null(body);
	assert_null(ct);

	struct odata_batch_header many[ODATA_BATCH_MAX_HEADERS + 1];
	for (size_t i = 0; i < ODATA_BATCH_MAX_HEADERS + 1; i++)
		many[i] = (struct odata_batch_header){ "X", "y" };
	struct odata_batch_request manyh = { .method = "POST", .url = "a", .headers = many,
					     .nheaders = ODATA_BATCH_MAX_HEADERS + 1 };
	struct odata_batch_part p7 = { 0, &manyh, 1 };
	assert_int_equal(-1, odata_batch_request_build(&p7, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "more than 64"));
	struct odata_batch_request nobody = { .method = "POST", .url = "a", .body_len = 3 };
	struct odata_batch_part p8 = { 0, &nobody, 1 };
	assert_int_equal(-1, odata_batch_request_build(&p8, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "body_len without a body"));
	struct odata_batch_part emptycs[] = { { 0, &ok, 1 }, { 1, NULL, 0 } };
	assert_int_equal(-1, odata_batch_request_build(emptycs, 2, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "part 1: a changeset must hold at least one request"));

	struct odata_batch_response fine = { .status = 204 };
	struct odata_batch_response_part rpf = { 0, &fine, 1 };
	assert_int_equal(-1, odata_batch_response_build(&rpf, 1, "", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "batch id"));
	struct odata_batch_response rcid = { .status = 204, .content_id = "1\r\nX: y" };
	struct odata_batch_response_part rpc = { 0, &rcid, 1 };
	assert_int_equal(-1, odata_batch_response_build(&rpc, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "CR/LF"));
	struct odata_batch_response rnb = { .status = 200, .body_len = 2 };
	struct odata_batch_response_part rpn = { 0, &rnb, 1 };
	assert_int_equal(-1, odata_batch_response_build(&rpn, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "body_len without body"));
	struct odata_batch_response rb = { .status = 200, .body = "--batchresponse_x", .body_len = 17 };
	struct odata_batch_response_part rpb = { 0, &rb, 1 };
	assert_int_equal(-1, odata_batch_response_build(&rpb, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "boundary"));
	struct odata_batch_response rcs = { .status = 200, .body = "a--changesetresponse_x_1", .body_len = 24 };
	struct odata_batch_response_part rpcs = { 1, &rcs, 1 };
	assert_int_equal(-1, odata_batch_response_build(&rpcs, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "boundary"));

	struct odata_batch_response bad = { .status = 99 };
	struct odata_batch_response_part rp = { 0, &bad, 1 };
	assert_int_equal(-1, odata_batch_response_build(&rp, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "100..599"));
	struct odata_batch_response_part empty = { 1, NULL, 0 };
	assert_int_equal(-1, odata_batch_response_build(&empty, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_int_equal(-1, odata_batch_response_build(NULL, 0, "x", &body, &len, &ct, err, sizeof(err)));
	struct odata_batch_header rh = { "Bad Name", "v" };
	struct odata_batch_response badh = { .status = 200, .headers = &rh, .nheaders = 1 };
	struct odata_batch_response_part rp2 = { 0, &badh, 1 };
	assert_int_equal(-1, odata_batch_response_build(&rp2, 1, "x", &body, &len, &ct, err, sizeof(err)));
	assert_non_null(strstr(err, "header"));
	assert_null(body);
}

static void test_response_parse_errors(void **state)
{
	(void)state;
	static const struct bad_parse cases[] = {
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "HTTP/1.1 20 OK\r\n--b--", "status line" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "HTTP/2 200 OK\r\n--b--", "status line" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "HTTP/1.1 200OK\r\n--b--", "status line" },
		{ "multipart/mixed; boundary=b", "--b\r\n" PART "HTTP/1.1 600 X\r\n--b--", "status line" },
		{ "text/html", "<html>", "multipart/mixed" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct odata_batch_result r;
		err[0] = '\0';
		int rc = odata_batch_response_parse(cases[i].ct, cases[i].body, strlen(cases[i].body), MAX_BODY, &r,
						    err, sizeof(err));
		if (rc != -1)
			fail_msg("case %zu was accepted", i);
		assert_null(r.parts);
		if (!strstr(err, cases[i].words))
			fail_msg("case %zu: expected '%s' in: %s", i, cases[i].words, err);
	}
	/* a status line with no reason phrase is fine */
	const char *ok = "--b\r\n" PART "HTTP/1.1 204\r\n\r\n--b--";
	struct odata_batch_result r;
	assert_int_equal(0, odata_batch_response_parse("multipart/mixed; boundary=b", ok, strlen(ok), MAX_BODY, &r, err,
						       sizeof(err)));
	assert_int_equal(204, r.parts[0].responses[0].status);
	odata_batch_result_clear(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_doc_example_lf_and_crlf),
		cmocka_unit_test(test_build_request_golden),
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_preamble_epilogue_and_prefix_boundary),
		cmocka_unit_test(test_response_build_golden_and_round_trip),
		cmocka_unit_test(test_response_failed_changeset_is_one_part),
		cmocka_unit_test(test_parse_doc_response),
		cmocka_unit_test(test_status_text),
		cmocka_unit_test(test_request_count_cap),
		cmocka_unit_test(test_request_parse_errors),
		cmocka_unit_test(test_parse_caps),
		cmocka_unit_test(test_build_errors),
		cmocka_unit_test(test_response_parse_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
