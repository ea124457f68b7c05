/*
 * Conformance of the Dataverse Web API emulator, spoken as raw HTTP in the documented wire format
 * (dynamics.md section 3). The emulator is the one the stack started (DW_CE_URL).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#include "emu_client.h"

/* A number unique to this run, for keys: the process id mixed with the start time, so a later run
 * with a recycled pid on a reused database does not meet this run's records. */
static unsigned run_token(void)
{
	static unsigned tok;
	if (!tok)
		tok = ((unsigned)getpid() * 2654435761u) ^ (unsigned)harness_now_ms() ^ 1u;
	return tok;
}

static char *token;
static char auth_header[256];
static const char *base;

#define API "/api/data/v9.2/"

static int group_setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	base = getenv("DW_CE_URL");
	if (!base || !*base) {
		fprintf(stderr, "DW_CE_URL is not set: run through tests/run.sh (make test)\n");
		return -1;
	}
	token = emu_token("CE");
	snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s", token);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(token);
	curl_global_cleanup();
	return 0;
}

/* A request to {base}/api/data/v9.2/<rel> with the token, JSON headers and any extra headers. */
static void call(const char *method, const char *rel, const char *body, const char *extra1, const char *extra2,
		 struct emu_resp *r)
{
	char url[4096];
	snprintf(url, sizeof(url), "%s" API "%s", base, rel);
	const char *h[] = {auth_header, "Accept: application/json", "OData-Version: 4.0", "OData-MaxVersion: 4.0",
			   "Content-Type: application/json", extra1, extra2, NULL};
	emu_http(method, url, h, body, r);
}

/* A company code unique to this run (max 30 chars). */
static char *unique_code(const char *tag)
{
	static unsigned n;
	char *s = malloc(31);
	assert_non_null(s);
	snprintf(s, 31, "%s%x%04x", tag, run_token() & 0xffffff, n++ & 0xffff);
	return s;
}

/* Creates a company with the given code; returns its GUID (from OData-EntityId) in id. */
static void create_company(const char *code, char id[37])
{
	char body[512];
	struct emu_resp r;
	snprintf(body, sizeof(body), "{\"cdm_companycode\":\"%s\",\"cdm_name\":\"Test company\"}", code);
	call("POST", "cdm_companies", body, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	char loc[512];
	assert_non_null(emu_header(&r, "OData-EntityId", loc, sizeof(loc)));
	const char *open = strrchr(loc, '(');
	assert_non_null(open);
	snprintf(id, 37, "%.36s", open + 1);
	assert_int_equal(strlen(id), 36);
	emu_resp_free(&r);
}

static void test_create_returns_204_and_entity_id_then_reads_back(void **state)
{
	(void)state;
	char *code = unique_code("C");
	char id[37], rel[256], etag[64];
	create_company(code, id);
	struct emu_resp r;
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(emu_header(&r, "OData-Version", etag, sizeof(etag)));
	assert_string_equal(etag, "4.0");
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "cdm_companycode")->valuestring, code);
	assert_string_equal(cJSON_GetObjectItem(j, "cdm_companyid")->valuestring, id);
	const cJSON *tag = cJSON_GetObjectItem(j, "@odata.etag");
	assert_true(cJSON_IsString(tag));
	assert_true(strncmp(tag->valuestring, "W/\"", 3) == 0);
	assert_non_null(strstr(cJSON_GetObjectItem(j, "@odata.context")->valuestring, "$metadata#cdm_companies"));
	cJSON_Delete(j);
	emu_resp_free(&r);
	free(code);
}

static void test_return_representation_gives_201_with_body(void **state)
{
	(void)state;
	char *code = unique_code("R");
	char body[256];
	snprintf(body, sizeof(body), "{\"cdm_companycode\":\"%s\"}", code);
	struct emu_resp r;
	call("POST", "cdm_companies", body, "Prefer: return=representation", NULL, &r);
	assert_int_equal(r.status, 201);
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "cdm_companycode")->valuestring, code);
	const cJSON *tag = cJSON_GetObjectItem(j, "@odata.etag");
	assert_true(cJSON_IsString(tag));
	/* defaults set on create, and the ETag is the versionnumber */
	assert_int_equal((int)cJSON_GetObjectItem(j, "statecode")->valuedouble, 0);
	assert_int_equal((int)cJSON_GetObjectItem(j, "statuscode")->valuedouble, 1);
	char expect[64];
	snprintf(expect, sizeof(expect), "W/\"%.0f\"", cJSON_GetObjectItem(j, "versionnumber")->valuedouble);
	assert_string_equal(tag->valuestring, expect);
	cJSON_Delete(j);
	emu_resp_free(&r);
	free(code);
}

static void test_alternate_key_literals_with_quotes_spaces_unicode_slashes(void **state)
{
	(void)state;
	char code[31], id[37], body[256], rel[512];
	/* O'Br n/é<pid>: a quote, a space, a slash and a two-byte UTF-8 letter */
	snprintf(code, sizeof(code), "O'Br n/\xc3\xa9%x", run_token() & 0xfffff);
	snprintf(body, sizeof(body), "{\"cdm_companycode\":\"%s\"}", code);
	struct emu_resp r;
	call("POST", "cdm_companies", body, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	char loc[512];
	assert_non_null(emu_header(&r, "OData-EntityId", loc, sizeof(loc)));
	snprintf(id, sizeof(id), "%.36s", strrchr(loc, '(') + 1);
	emu_resp_free(&r);
	/* The literal: quotes doubled, then percent-encoded (quote, space, slash, UTF-8 bytes). */
	snprintf(rel, sizeof(rel), "cdm_companies(cdm_companycode='O%%27%%27Br%%20n%%2F%%C3%%A9%x')",
		 run_token() & 0xfffff);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "cdm_companyid")->valuestring, id);
	assert_string_equal(cJSON_GetObjectItem(j, "cdm_companycode")->valuestring, code);
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* A single (undoubled) quote inside the literal is a malformed key: 400, not a match. */
	snprintf(rel, sizeof(rel), "cdm_companies(cdm_companycode='O%%27Br%%20n')");
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 400);
	emu_resp_free(&r);
}

static void test_patch_upsert_and_conditional_headers(void **state)
{
	(void)state;
	char id[37] = "6d81597f-0f9f-e711-8122-000d3a";
	char rel[256], body[256], etag[64], etag2[64];
	snprintf(id + strlen(id), sizeof(id) - strlen(id), "%06x", run_token() & 0xffffff);
	char *code = unique_code("U");
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id);
	snprintf(body, sizeof(body), "{\"cdm_companycode\":\"%s\",\"cdm_name\":\"one\"}", code);
	struct emu_resp r;
	/* If-Match: * prevents create: 404 when missing. */
	call("PATCH", rel, body, "If-Match: *", NULL, &r);
	assert_int_equal(r.status, 404);
	char expect[128];
	snprintf(expect, sizeof(expect), "cdm_company With Id = %s Does Not Exist", id);
	assert_non_null(strstr(r.body, expect));
	emu_resp_free(&r);
	/* Plain PATCH upserts: creates the row with the URL's id. */
	call("PATCH", rel, body, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	snprintf(etag, sizeof(etag), "%s", cJSON_GetObjectItem(j, "@odata.etag")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* If-None-Match: * prevents update: 412 when present. */
	call("PATCH", rel, "{\"cdm_name\":\"two\"}", "If-None-Match: *", NULL, &r);
	assert_int_equal(r.status, 412);
	emu_resp_free(&r);
	/* Matching If-Match updates; the ETag (versionnumber) grows. */
	char im[96];
	snprintf(im, sizeof(im), "If-Match: %s", etag);
	call("PATCH", rel, "{\"cdm_name\":\"two\"}", im, "Prefer: return=representation", &r);
	assert_int_equal(r.status, 200);
	j = emu_json(&r);
	snprintf(etag2, sizeof(etag2), "%s", cJSON_GetObjectItem(j, "@odata.etag")->valuestring);
	assert_string_equal(cJSON_GetObjectItem(j, "cdm_name")->valuestring, "two");
	cJSON_Delete(j);
	emu_resp_free(&r);
	assert_true(strtoll(etag2 + 3, NULL, 10) > strtoll(etag + 3, NULL, 10));
	/* The old ETag is now stale: 412. */
	call("PATCH", rel, "{\"cdm_name\":\"three\"}", im, NULL, &r);
	assert_int_equal(r.status, 412);
	emu_resp_free(&r);
	/* Conditional GET with the current ETag: 304. */
	snprintf(im, sizeof(im), "If-None-Match: %s", etag2);
	call("GET", rel, NULL, im, NULL, &r);
	assert_int_equal(r.status, 304);
	emu_resp_free(&r);
	free(code);
}

static void test_lookup_bind_by_alternate_key_and_missing_target(void **state)
{
	(void)state;
	char *code = unique_code("L");
	char *acct = unique_code("A");
	char cid[37], body[512], rel[512];
	create_company(code, cid);
	struct emu_resp r;
	snprintf(body, sizeof(body),
		 "{\"name\":\"Lookup test\",\"accountnumber\":\"%.20s\","
		 "\"msdyn_company@odata.bind\":\"/cdm_companies(cdm_companycode='%s')\"}",
		 acct, code);
	call("POST", "accounts", body, "Prefer: return=representation", NULL, &r);
	assert_int_equal(r.status, 201);
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "_msdyn_company_value")->valuestring, cid);
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* Composite alternate key with a lookup part, given as _x_value. */
	snprintf(rel, sizeof(rel), "accounts(accountnumber='%.20s',_msdyn_company_value=%s)", acct, cid);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
	/* A bind to a row that does not exist: 400. */
	call("POST", "accounts",
	     "{\"name\":\"x\",\"msdyn_company@odata.bind\":\"/cdm_companies(00000000-0000-0000-0000-0000000000ff)\"}",
	     NULL, NULL, &r);
	assert_int_equal(r.status, 400);
	emu_resp_free(&r);
	free(code);
	free(acct);
}

static void test_validation_errors_have_dataverse_codes(void **state)
{
	(void)state;
	char code[16];
	struct emu_resp r;
	char body[512];
	/* cdm_companycode is at most 30 characters. */
	snprintf(body, sizeof(body), "{\"cdm_companycode\":\"%s\"}", "0123456789012345678901234567890123");
	call("POST", "cdm_companies", body, NULL, NULL, &r);
	assert_int_equal(r.status, 400);
	assert_string_equal(emu_error_code(&r, code, sizeof(code)), "0x80044331");
	emu_resp_free(&r);
	/* Unknown property. */
	call("POST", "cdm_companies", "{\"cdm_companycode\":\"x\",\"nosuchfield\":1}", NULL, NULL, &r);
	assert_int_equal(r.status, 400);
	emu_resp_free(&r);
	/* Not JSON. */
	call("POST", "cdm_companies", "{nope", NULL, NULL, &r);
	assert_int_equal(r.status, 400);
	emu_resp_free(&r);
	/* Unknown entity set: 404. */
	call("GET", "nosuchsets", NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
}

static void test_delete_then_404(void **state)
{
	(void)state;
	char *code = unique_code("D");
	char id[37], rel[256];
	create_company(code, id);
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id);
	struct emu_resp r;
	call("DELETE", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
	call("DELETE", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
	free(code);
}

static void test_filter_select_and_paging_with_next_link(void **state)
{
	(void)state;
	char prefix[16], code[31], id[37], rel[512];
	snprintf(prefix, sizeof(prefix), "P%x", run_token() & 0xfffff);
	for (int i = 0; i < 5; i++) {
		snprintf(code, sizeof(code), "%s-%d", prefix, i);
		create_company(code, id);
	}
	snprintf(rel, sizeof(rel), "cdm_companies?$select=cdm_companycode&$filter=startswith(cdm_companycode,'%s-')",
		 prefix);
	struct emu_resp r;
	call("GET", rel, NULL, "Prefer: odata.maxpagesize=2", NULL, &r);
	assert_int_equal(r.status, 200);
	int total = 0, pages = 0;
	for (;;) {
		cJSON *j = emu_json(&r);
		const cJSON *v = cJSON_GetObjectItem(j, "value");
		assert_true(cJSON_GetArraySize(v) <= 2);
		total += cJSON_GetArraySize(v);
		pages++;
		const cJSON *row;
		cJSON_ArrayForEach(row, v)
		{
			assert_non_null(cJSON_GetObjectItem(row, "cdm_companycode"));
			assert_null(cJSON_GetObjectItem(row, "cdm_name")); /* not selected */
		}
		const cJSON *next = cJSON_GetObjectItem(j, "@odata.nextLink");
		if (!cJSON_IsString(next)) {
			cJSON_Delete(j);
			break;
		}
		char url[2048];
		snprintf(url, sizeof(url), "%s", next->valuestring);
		cJSON_Delete(j);
		emu_resp_free(&r);
		const char *h[] = {auth_header, "Prefer: odata.maxpagesize=2", NULL};
		emu_http("GET", url, h, NULL, &r);
		assert_int_equal(r.status, 200);
	}
	emu_resp_free(&r);
	assert_int_equal(total, 5);
	assert_int_equal(pages, 3);
}

static void test_delta_after_creates_updates_and_deletes(void **state)
{
	(void)state;
	struct emu_resp r;
	/* Start tracking: the full set plus a deltaLink. */
	call("GET", "cdm_companies?$select=cdm_companycode", NULL, "Prefer: odata.track-changes", NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	/* A large set comes in pages: follow nextLinks to the page that carries the deltaLink. */
	for (;;) {
		const cJSON *next = cJSON_GetObjectItem(j, "@odata.nextLink");
		if (!cJSON_IsString(next))
			break;
		char url[2048];
		snprintf(url, sizeof(url), "%s", next->valuestring);
		cJSON_Delete(j);
		emu_resp_free(&r);
		const char *nh[] = {auth_header, NULL};
		emu_http("GET", url, nh, NULL, &r);
		assert_int_equal(r.status, 200);
		j = emu_json(&r);
	}
	const cJSON *dl = cJSON_GetObjectItem(j, "@odata.deltaLink");
	assert_true(cJSON_IsString(dl));
	assert_non_null(strstr(dl->valuestring, "$deltatoken="));
	char delta[2048];
	snprintf(delta, sizeof(delta), "%s", dl->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);

	char *c1 = unique_code("T"), *c2 = unique_code("T");
	char id1[37], id2[37], rel[256];
	create_company(c1, id1);
	create_company(c2, id2);
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id1);
	call("PATCH", rel, "{\"cdm_name\":\"changed\"}", NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id2);
	call("DELETE", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);

	const char *h[] = {auth_header, "OData-Version: 4.0", NULL};
	emu_http("GET", delta, h, NULL, &r);
	assert_int_equal(r.status, 200);
	j = emu_json(&r);
	assert_non_null(strstr(cJSON_GetObjectItem(j, "@odata.context")->valuestring, "/$delta"));
	assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "@odata.deltaLink")));
	int seen_changed = 0, seen_deleted = 0, deleted_pos = -1, last_live_pos = -1, pos = 0;
	const cJSON *row;
	cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "value"))
	{
		const cJSON *ctx = cJSON_GetObjectItem(row, "@odata.context");
		if (ctx && strstr(ctx->valuestring, "$deletedEntity")) {
			if (strcmp(cJSON_GetObjectItem(row, "id")->valuestring, id2) == 0) {
				seen_deleted = 1;
				deleted_pos = pos;
				assert_string_equal(cJSON_GetObjectItem(row, "reason")->valuestring, "deleted");
			}
		} else {
			last_live_pos = pos;
			if (strcmp(cJSON_GetObjectItem(row, "cdm_companyid")->valuestring, id1) == 0)
				seen_changed = 1;
			assert_string_not_equal(cJSON_GetObjectItem(row, "cdm_companyid")->valuestring, id2);
		}
		pos++;
	}
	assert_true(seen_changed);
	assert_true(seen_deleted);
	assert_true(deleted_pos > last_live_pos); /* upserts first, deletes last */
	cJSON_Delete(j);
	emu_resp_free(&r);
	free(c1);
	free(c2);
}

/* A $batch body with one changeset of the given operations (each "METHOD url\nbody"). */
static char *changeset_body(const char *const *ops, size_t n, const char *const *content_ids)
{
	size_t cap = 4096;
	for (size_t i = 0; i < n; i++)
		cap += strlen(ops[i]) + 256;
	char *b = malloc(cap);
	assert_non_null(b);
	size_t o = (size_t)snprintf(b, cap, "--batch_T1\r\nContent-Type: multipart/mixed; boundary=changeset_C1\r\n\r\n");
	for (size_t i = 0; i < n; i++) {
		const char *nl = strchr(ops[i], '\n');
		o += (size_t)snprintf(b + o, cap - o,
				      "--changeset_C1\r\nContent-Type: application/http\r\n"
				      "Content-Transfer-Encoding: binary\r\nContent-ID: %s\r\n\r\n"
				      "%.*s HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n%s\r\n",
				      content_ids[i], (int)(nl - ops[i]), ops[i], nl + 1);
	}
	snprintf(b + o, cap - o, "--changeset_C1--\r\n--batch_T1--\r\n");
	return b;
}

static void batch(const char *body, struct emu_resp *r)
{
	char url[512];
	snprintf(url, sizeof(url), "%s" API "$batch", base);
	const char *h[] = {auth_header, "OData-Version: 4.0", "Accept: application/json",
			   "Content-Type: multipart/mixed; boundary=batch_T1", NULL};
	emu_http("POST", url, h, body, r);
}

static void test_batch_changeset_with_failing_part_leaves_no_trace(void **state)
{
	(void)state;
	char *code = unique_code("B");
	char op1[512], op2[512], rel[256];
	snprintf(op1, sizeof(op1), "POST " API "cdm_companies\n{\"cdm_companycode\":\"%s\"}", code);
	snprintf(op2, sizeof(op2), "POST " API "cdm_companies\n{\"cdm_companycode\":\"%s\"}",
		 "0123456789012345678901234567890123456789"); /* too long: fails */
	const char *ops[] = {op1, op2};
	const char *ids[] = {"1", "2"};
	char *body = changeset_body(ops, 2, ids);
	struct emu_resp r;
	batch(body, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "HTTP/1.1 400"));
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "cdm_companies(cdm_companycode='%s')", code);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 404); /* the first create was rolled back */
	emu_resp_free(&r);
	free(body);
	free(code);
}

static void test_batch_changeset_with_content_id_reference_commits(void **state)
{
	(void)state;
	char *code = unique_code("K");
	char *acct = unique_code("N");
	char op1[512], op2[512], rel[512];
	snprintf(op1, sizeof(op1), "POST " API "cdm_companies\n{\"cdm_companycode\":\"%s\"}", code);
	snprintf(op2, sizeof(op2),
		 "POST " API "accounts\n{\"name\":\"batch\",\"accountnumber\":\"%.20s\","
		 "\"msdyn_company@odata.bind\":\"$1\"}",
		 acct);
	const char *ops[] = {op1, op2};
	const char *ids[] = {"1", "2"};
	char *body = changeset_body(ops, 2, ids);
	struct emu_resp r;
	batch(body, &r);
	assert_int_equal(r.status, 200);
	char ct[256];
	assert_non_null(emu_header(&r, "Content-Type", ct, sizeof(ct)));
	assert_non_null(strstr(ct, "multipart/mixed"));
	assert_non_null(strstr(r.body, "changesetresponse"));
	assert_non_null(strstr(r.body, "HTTP/1.1 204"));
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "cdm_companies(cdm_companycode='%s')", code);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	char cid[37];
	snprintf(cid, sizeof(cid), "%s", cJSON_GetObjectItem(j, "cdm_companyid")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "accounts(accountnumber='%.20s',msdyn_company=%s)", acct, cid);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
	free(body);
	free(code);
	free(acct);
}

/* Three top-level creates (no changeset): good, bad (too long), good. */
static char *three_parts(const char *c1, const char *c3)
{
	char *b = malloc(4096);
	assert_non_null(b);
	const char *codes[] = {c1, "0123456789012345678901234567890123456789", c3};
	size_t o = 0;
	for (int i = 0; i < 3; i++)
		o += (size_t)snprintf(b + o, 4096 - o,
				      "--batch_T1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
				      "POST cdm_companies HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n"
				      "{\"cdm_companycode\":\"%s\"}\r\n",
				      codes[i]);
	snprintf(b + o, 4096 - o, "--batch_T1--\r\n");
	return b;
}

static int company_exists(const char *code)
{
	char rel[256];
	struct emu_resp r;
	snprintf(rel, sizeof(rel), "cdm_companies(cdm_companycode='%s')", code);
	call("GET", rel, NULL, NULL, NULL, &r);
	int found = r.status == 200;
	emu_resp_free(&r);
	return found;
}

static void test_batch_stops_at_first_failure_unless_continue_on_error(void **state)
{
	(void)state;
	char *a = unique_code("E"), *b = unique_code("E");
	char *body = three_parts(a, b);
	struct emu_resp r;
	batch(body, &r);
	assert_int_equal(r.status, 400); /* the failing status, processing stopped */
	emu_resp_free(&r);
	assert_true(company_exists(a));
	assert_false(company_exists(b));
	free(body);
	free(a);
	free(b);

	a = unique_code("F");
	b = unique_code("F");
	body = three_parts(a, b);
	char url[512];
	snprintf(url, sizeof(url), "%s" API "$batch", base);
	const char *h[] = {auth_header, "OData-Version: 4.0", "Prefer: odata.continue-on-error",
			   "Content-Type: multipart/mixed; boundary=batch_T1", NULL};
	emu_http("POST", url, h, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "HTTP/1.1 400"));
	emu_resp_free(&r);
	assert_true(company_exists(a));
	assert_true(company_exists(b));
	free(body);
	free(a);
	free(b);
}

static long writes_of(const char *set, const char *op)
{
	struct emu_resp r;
	emu_admin(base, "GET", "stats", NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "writes"), set), op);
	long v = cJSON_IsNumber(n) ? (long)n->valuedouble : 0;
	cJSON_Delete(j);
	emu_resp_free(&r);
	return v;
}

static void test_stats_count_committed_writes_and_per_record_writes(void **state)
{
	(void)state;
	long before = writes_of("cdm_companies", "create");
	long upd_before = writes_of("cdm_companies", "update");
	char *code = unique_code("S");
	char id[37], rel[256];
	create_company(code, id);
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id);
	struct emu_resp r;
	call("PATCH", rel, "{\"cdm_name\":\"a\"}", NULL, NULL, &r);
	emu_resp_free(&r);
	call("PATCH", rel, "{\"cdm_name\":\"b\"}", NULL, NULL, &r);
	emu_resp_free(&r);
	/* A failing write is not counted. */
	call("PATCH", rel, "{\"cdm_name\":\"c\"}", "If-Match: W/\"1\"", NULL, &r);
	assert_int_equal(r.status, 412);
	emu_resp_free(&r);
	assert_int_equal(writes_of("cdm_companies", "create"), before + 1);
	assert_int_equal(writes_of("cdm_companies", "update"), upd_before + 2);
	char path[256];
	snprintf(path, sizeof(path), "records/cdm_companies?id=%s", id);
	emu_admin(base, "GET", path, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	assert_int_equal((long)cJSON_GetObjectItem(j, "writes")->valuedouble, 3);
	cJSON_Delete(j);
	emu_resp_free(&r);
	free(code);
}

/* ---- changesets of creates: written as one multi-row statement, redone one by one on a clash ---- */

/* GET cdm_companies(id): status, and cdm_name when 200. */
static long company_name(const char *id, char *name, size_t len)
{
	char rel[128];
	struct emu_resp r;
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id);
	call("GET", rel, NULL, NULL, NULL, &r);
	long st = r.status;
	if (st == 200) {
		cJSON *j = emu_json(&r);
		const cJSON *n = cJSON_GetObjectItem(j, "cdm_name");
		snprintf(name, len, "%s", cJSON_IsString(n) ? n->valuestring : "");
		cJSON_Delete(j);
	}
	emu_resp_free(&r);
	return st;
}

/* A GUID unique to this run: n in the last part. */
static void run_guid(unsigned n, char out[37])
{
	snprintf(out, 37, "%08x-0d0d-4000-8000-%012x", run_token(), n);
}

static void test_changeset_of_many_creates_commits_every_record(void **state)
{
	(void)state;
	enum { N = 60 };
	char ops[N][2560], ids[N][37], cids[N][8];
	const char *op[N], *cid[N];
	long before = writes_of("cdm_companies", "create");
	for (int i = 0; i < N; i++) {
		run_guid(0x100 + (unsigned)i, ids[i]);
		snprintf(ops[i], sizeof(ops[i]), "PATCH " API "cdm_companies(%s)\n{\"cdm_companycode\":\"M%x-%d\",\"cdm_name\":\"m%d\"}",
			 ids[i], run_token(), i, i);
		snprintf(cids[i], sizeof(cids[i]), "%d", i + 1);
		op[i] = ops[i];
		cid[i] = cids[i];
	}
	char *body = changeset_body(op, N, cid);
	struct emu_resp r;
	batch(body, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "HTTP/1.1 4"));
	emu_resp_free(&r);
	free(body);
	for (int i = 0; i < N; i++) {
		char name[64], want[16];
		assert_int_equal(company_name(ids[i], name, sizeof(name)), 200);
		snprintf(want, sizeof(want), "m%d", i);
		assert_string_equal(name, want);
	}
	assert_int_equal(writes_of("cdm_companies", "create"), before + N);
}

static void test_changeset_upserting_an_existing_record_updates_it(void **state)
{
	(void)state;
	char a[37], b[37], c[37], code_b[40];
	run_guid(0x200, a);
	run_guid(0x201, b);
	run_guid(0x202, c);
	snprintf(code_b, sizeof(code_b), "U%x-b", run_token());
	/* b exists before the changeset. */
	char rel[128], body1[256];
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", b);
	snprintf(body1, sizeof(body1), "{\"cdm_companycode\":\"%s\",\"cdm_name\":\"old\"}", code_b);
	struct emu_resp r;
	call("PATCH", rel, body1, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	long creates = writes_of("cdm_companies", "create"), updates = writes_of("cdm_companies", "update");
	/* a new, b existing (an update), c new and then patched again in the same changeset. */
	char o1[256], o2[256], o3[256], o4[256];
	snprintf(o1, sizeof(o1), "PATCH " API "cdm_companies(%s)\n{\"cdm_companycode\":\"U%x-a\",\"cdm_name\":\"a1\"}", a,
		 run_token());
	snprintf(o2, sizeof(o2), "PATCH " API "cdm_companies(%s)\n{\"cdm_companycode\":\"%s\",\"cdm_name\":\"new\"}", b,
		 code_b);
	snprintf(o3, sizeof(o3), "PATCH " API "cdm_companies(%s)\n{\"cdm_companycode\":\"U%x-c\",\"cdm_name\":\"c1\"}", c,
		 run_token());
	snprintf(o4, sizeof(o4), "PATCH " API "cdm_companies(%s)\n{\"cdm_companycode\":\"U%x-c\",\"cdm_name\":\"c2\"}", c,
		 run_token());
	const char *ops[] = {o1, o2, o3, o4};
	const char *cids[] = {"1", "2", "3", "4"};
	char *body = changeset_body(ops, 4, cids);
	batch(body, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "HTTP/1.1 4"));
	emu_resp_free(&r);
	free(body);
	char name[64];
	assert_int_equal(company_name(a, name, sizeof(name)), 200);
	assert_string_equal(name, "a1");
	assert_int_equal(company_name(b, name, sizeof(name)), 200);
	assert_string_equal(name, "new");
	assert_int_equal(company_name(c, name, sizeof(name)), 200);
	assert_string_equal(name, "c2");
	assert_int_equal(writes_of("cdm_companies", "create"), creates + 2);
	assert_int_equal(writes_of("cdm_companies", "update"), updates + 2);
}

static void test_changeset_create_with_a_taken_key_fails_whole_with_duplicate_key(void **state)
{
	(void)state;
	char *taken = unique_code("D");
	char id[37];
	create_company(taken, id);
	char *fresh = unique_code("D");
	char o1[256], o2[256], rel[256];
	snprintf(o1, sizeof(o1), "POST " API "cdm_companies\n{\"cdm_companycode\":\"%s\"}", fresh);
	snprintf(o2, sizeof(o2), "POST " API "cdm_companies\n{\"cdm_companycode\":\"%s\"}", taken);
	const char *ops[] = {o1, o2};
	const char *cids[] = {"1", "2"};
	char *body = changeset_body(ops, 2, cids);
	struct emu_resp r;
	batch(body, &r);
	/* The same answer as when each create is written at once: the second part's duplicate key. */
	assert_int_equal(r.status, 412);
	assert_non_null(strstr(r.body, "HTTP/1.1 412"));
	assert_non_null(strstr(r.body, "0x80060892"));
	emu_resp_free(&r);
	free(body);
	assert_false(company_exists(fresh)); /* the first create left no trace */
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id);
	call("GET", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
	free(taken);
	free(fresh);
}

static void test_webhooks_post_remote_execution_context_after_commit(void **state)
{
	(void)state;
	int port = 32083;
	const char *p = getenv("DW_PORT_BASE");
	if (p && *p)
		port = (int)strtol(p, NULL, 10) + 83;
	struct MHD_Daemon *d = emu_hooks_start(port);
	char reg[512];
	snprintf(reg, sizeof(reg),
		 "{\"entity\":\"cdm_company\",\"messages\":[\"Create\",\"Delete\"],"
		 "\"url\":\"http://127.0.0.1:%d/hook\",\"auth\":\"code\",\"auth_value\":\"k3y-value\"}",
		 port);
	struct emu_resp r;
	emu_admin(base, "POST", "webhooks", reg, &r);
	assert_int_equal(r.status, 201);
	cJSON *j = emu_json(&r);
	char reg_id[64], path[128];
	snprintf(reg_id, sizeof(reg_id), "%s", cJSON_GetObjectItem(j, "id")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);

	char *code = unique_code("W");
	char id[37], rel[256];
	create_company(code, id);
	int i = emu_hooks_wait("Create", id);
	assert_true(i >= 0);
	pthread_mutex_lock(&emu_hooks.mu);
	assert_string_equal(emu_hooks.posts[i].entity, "cdm_company");
	assert_string_equal(emu_hooks.posts[i].code, "k3y-value");
	cJSON *ctx = cJSON_Parse(emu_hooks.posts[i].body);
	pthread_mutex_unlock(&emu_hooks.mu);
	assert_non_null(ctx);
	assert_string_equal(cJSON_GetObjectItem(ctx, "MessageName")->valuestring, "Create");
	assert_string_equal(cJSON_GetObjectItem(ctx, "PrimaryEntityId")->valuestring, id);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(ctx, "IsInTransaction")));
	cJSON_Delete(ctx);

	/* An update is not registered: no post; a delete is. */
	snprintf(rel, sizeof(rel), "cdm_companies(%s)", id);
	call("PATCH", rel, "{\"cdm_name\":\"x\"}", NULL, NULL, &r);
	emu_resp_free(&r);
	call("DELETE", rel, NULL, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	assert_true(emu_hooks_wait("Delete", id) >= 0);
	pthread_mutex_lock(&emu_hooks.mu);
	for (int k = 0; k < emu_hooks.n; k++)
		assert_string_not_equal(emu_hooks.posts[k].request_name, "Update");
	pthread_mutex_unlock(&emu_hooks.mu);

	/* A changeset: one CorrelationId for both creates, IsInTransaction true. */
	char *c1 = unique_code("X"), *c2 = unique_code("X");
	char op1[256], op2[256];
	snprintf(op1, sizeof(op1), "POST " API "cdm_companies\n{\"cdm_companycode\":\"%s\"}", c1);
	snprintf(op2, sizeof(op2), "POST " API "cdm_companies\n{\"cdm_companycode\":\"%s\"}", c2);
	const char *ops[] = {op1, op2};
	const char *cids[] = {"1", "2"};
	char *body = changeset_body(ops, 2, cids);
	batch(body, &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
	int i1 = emu_hooks_wait("Create", c1), i2 = emu_hooks_wait("Create", c2);
	assert_true(i1 >= 0 && i2 >= 0);
	pthread_mutex_lock(&emu_hooks.mu);
	cJSON *b1 = cJSON_Parse(emu_hooks.posts[i1].body), *b2 = cJSON_Parse(emu_hooks.posts[i2].body);
	pthread_mutex_unlock(&emu_hooks.mu);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(b1, "IsInTransaction")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(b2, "IsInTransaction")));
	assert_string_equal(cJSON_GetObjectItem(b1, "CorrelationId")->valuestring,
			    cJSON_GetObjectItem(b2, "CorrelationId")->valuestring);
	cJSON_Delete(b1);
	cJSON_Delete(b2);
	free(body);
	free(c1);
	free(c2);

	snprintf(path, sizeof(path), "webhooks/%s", reg_id);
	emu_admin(base, "DELETE", path, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	emu_hooks_stop(d);
	free(code);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_returns_204_and_entity_id_then_reads_back),
		cmocka_unit_test(test_return_representation_gives_201_with_body),
		cmocka_unit_test(test_alternate_key_literals_with_quotes_spaces_unicode_slashes),
		cmocka_unit_test(test_patch_upsert_and_conditional_headers),
		cmocka_unit_test(test_lookup_bind_by_alternate_key_and_missing_target),
		cmocka_unit_test(test_validation_errors_have_dataverse_codes),
		cmocka_unit_test(test_delete_then_404),
		cmocka_unit_test(test_filter_select_and_paging_with_next_link),
		cmocka_unit_test(test_delta_after_creates_updates_and_deletes),
		cmocka_unit_test(test_batch_changeset_with_failing_part_leaves_no_trace),
		cmocka_unit_test(test_batch_changeset_with_content_id_reference_commits),
		cmocka_unit_test(test_batch_stops_at_first_failure_unless_continue_on_error),
		cmocka_unit_test(test_stats_count_committed_writes_and_per_record_writes),
		cmocka_unit_test(test_changeset_of_many_creates_commits_every_record),
		cmocka_unit_test(test_changeset_upserting_an_existing_record_updates_it),
		cmocka_unit_test(test_changeset_create_with_a_taken_key_fails_whole_with_duplicate_key),
		cmocka_unit_test(test_webhooks_post_remote_execution_context_after_commit),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
