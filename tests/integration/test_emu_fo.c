/*
 * Conformance of the FO OData emulator, spoken as raw HTTP in the documented wire format
 * (dynamics.md section 4). The emulator is the one the stack started (DW_FO_URL).
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
#include "odata_batch.h"

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

static int group_setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	base = getenv("DW_FO_URL");
	if (!base || !*base) {
		fprintf(stderr, "DW_FO_URL is not set: run through tests/run.sh (make test)\n");
		return -1;
	}
	token = emu_token("FO");
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

static void call(const char *method, const char *rel, const char *body, const char *extra, struct emu_resp *r)
{
	char url[4096];
	snprintf(url, sizeof(url), "%s/data/%s", base, rel);
	const char *h[] = {auth_header, "Accept: application/json", "OData-Version: 4.0",
			   "Content-Type: application/json", extra, NULL};
	emu_http(method, url, h, body, r);
}

/* A customer account unique to this run (max 20 chars). */
static void unique_account(const char *tag, char out[21])
{
	static unsigned n;
	snprintf(out, 21, "%s%x-%x", tag, run_token() & 0xfffff, n++);
}

static void create_customer(const char *company, const char *account, struct emu_resp *r)
{
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"dataAreaId\":\"%s\",\"CustomerAccount\":\"%s\",\"OrganizationName\":\"Fabrikam\","
		 "\"CustomerGroupId\":\"10\",\"OnHoldStatus\":\"No\",\"CreditLimit\":1000}",
		 company, account);
	call("POST", "CustomersV3", body, NULL, r);
}

static void test_post_creates_201_with_entity_and_location(void **state)
{
	(void)state;
	char acct[21], loc[512];
	unique_account("C", acct);
	struct emu_resp r;
	create_customer("usmf", acct, &r);
	assert_int_equal(r.status, 201);
	assert_non_null(emu_header(&r, "Location", loc, sizeof(loc)));
	assert_non_null(strstr(loc, "CustomersV3(dataAreaId='usmf',CustomerAccount="));
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "CustomerAccount")->valuestring, acct);
	assert_string_equal(cJSON_GetObjectItem(j, "OnHoldStatus")->valuestring, "No");
	const cJSON *tag = cJSON_GetObjectItem(j, "@odata.etag");
	assert_true(cJSON_IsString(tag) && strncmp(tag->valuestring, "W/\"", 3) == 0);
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* A second POST with the same key is refused. */
	create_customer("USMF", acct, &r);
	assert_true(r.status >= 400 && r.status < 500);
	cJSON *e = emu_json(&r);
	assert_non_null(cJSON_GetObjectItem(e, "error"));
	cJSON_Delete(e);
	emu_resp_free(&r);
}

static void test_key_literals_every_key_part_required(void **state)
{
	(void)state;
	char acct[21], rel[512];
	/* quote, space, slash and a UTF-8 letter inside the key: O'B /é<pid> */
	snprintf(acct, sizeof(acct), "O'B /\xc3\xa9%x", run_token() & 0xfffff);
	struct emu_resp r;
	create_customer("usmf", acct, &r);
	assert_int_equal(r.status, 201);
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='O%%27%%27B%%20%%2F%%C3%%A9%x')",
		 run_token() & 0xfffff);
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "CustomerAccount")->valuestring, acct);
	assert_string_equal(cJSON_GetObjectItem(j, "dataAreaId")->valuestring, "usmf");
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* Without dataAreaId the key is incomplete: 400. */
	snprintf(rel, sizeof(rel), "CustomersV3(CustomerAccount='O%%27%%27B%%20%%2F%%C3%%A9%x')",
		 run_token() & 0xfffff);
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 400);
	emu_resp_free(&r);
}

static void test_patch_missing_is_404_and_if_match(void **state)
{
	(void)state;
	char acct[21], rel[256], etag[128], im[160];
	unique_account("P", acct);
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", acct);
	struct emu_resp r;
	call("PATCH", rel, "{\"OrganizationName\":\"x\"}", NULL, &r);
	assert_int_equal(r.status, 404); /* FO PATCH does not upsert */
	emu_resp_free(&r);
	create_customer("usmf", acct, &r);
	assert_int_equal(r.status, 201);
	cJSON *j = emu_json(&r);
	snprintf(etag, sizeof(etag), "%s", cJSON_GetObjectItem(j, "@odata.etag")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
	snprintf(im, sizeof(im), "If-Match: %s", etag);
	call("PATCH", rel, "{\"OrganizationName\":\"Renamed\"}", im, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	/* Now stale. */
	call("PATCH", rel, "{\"OrganizationName\":\"Again\"}", im, &r);
	assert_int_equal(r.status, 412);
	emu_resp_free(&r);
	/* Key fields cannot change. */
	call("PATCH", rel, "{\"CustomerAccount\":\"OTHER\"}", NULL, &r);
	assert_int_equal(r.status, 400);
	emu_resp_free(&r);
	call("GET", rel, NULL, NULL, &r);
	j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "OrganizationName")->valuestring, "Renamed");
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* PUT replaces: fields not given are cleared, keys stay. */
	call("PUT", rel, "{\"CreditLimit\":5}", NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	call("GET", rel, NULL, NULL, &r);
	j = emu_json(&r);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "OrganizationName")));
	assert_string_equal(cJSON_GetObjectItem(j, "CustomerAccount")->valuestring, acct);
	assert_int_equal((int)cJSON_GetObjectItem(j, "CreditLimit")->valuedouble, 5);
	cJSON_Delete(j);
	emu_resp_free(&r);
	call("DELETE", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
}

static int count_rows(const char *rel)
{
	struct emu_resp r;
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "value"));
	cJSON_Delete(j);
	emu_resp_free(&r);
	return n;
}

static void test_default_company_unless_cross_company(void **state)
{
	(void)state;
	char a1[21], a2[21], rel[512];
	unique_account("X", a1);
	unique_account("X", a2);
	struct emu_resp r;
	create_customer("usmf", a1, &r);
	assert_int_equal(r.status, 201);
	emu_resp_free(&r);
	create_customer("usrt", a2, &r);
	assert_int_equal(r.status, 201);
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "CustomersV3?$filter=CustomerAccount%%20eq%%20'%s'%%20or%%20CustomerAccount%%20eq%%20'%s'",
		 a1, a2);
	assert_int_equal(count_rows(rel), 1);
	size_t l = strlen(rel);
	snprintf(rel + l, sizeof(rel) - l, "&cross-company=true");
	assert_int_equal(count_rows(rel), 2);
	/* Enum literal filter. */
	snprintf(rel, sizeof(rel),
		 "CustomersV3?$filter=CustomerAccount%%20eq%%20'%s'%%20and%%20OnHoldStatus%%20eq%%20"
		 "Microsoft.Dynamics.DataEntities.CustVendorBlocked'No'",
		 a1);
	assert_int_equal(count_rows(rel), 1);
	snprintf(rel, sizeof(rel),
		 "CustomersV3?$filter=CustomerAccount%%20eq%%20'%s'%%20and%%20OnHoldStatus%%20eq%%20"
		 "Microsoft.Dynamics.DataEntities.CustVendorBlocked'All'",
		 a1);
	assert_int_equal(count_rows(rel), 0);
}

static void test_top_skip_and_next_link(void **state)
{
	(void)state;
	char prefix[12], acct[32], rel[512];
	snprintf(prefix, sizeof(prefix), "S%x", run_token() & 0xfffff);
	struct emu_resp r;
	for (int i = 0; i < 4; i++) {
		snprintf(acct, sizeof(acct), "%s-%d", prefix, i);
		create_customer("usmf", acct, &r);
		assert_int_equal(r.status, 201);
		emu_resp_free(&r);
	}
	snprintf(rel, sizeof(rel), "CustomersV3?$filter=CustomerAccount%%20eq%%20'%s-*'&$orderby=CustomerAccount%%20desc&$top=2&$skip=1&$select=CustomerAccount&$count=true",
		 prefix);
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	const cJSON *v = cJSON_GetObjectItem(j, "value");
	assert_int_equal(cJSON_GetArraySize(v), 2);
	assert_int_equal((int)cJSON_GetObjectItem(j, "@odata.count")->valuedouble, 4); /* all matches */
	snprintf(acct, sizeof(acct), "%s-2", prefix);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 0), "CustomerAccount")->valuestring, acct);
	assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 0), "OrganizationName"));
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* Server-driven paging with Prefer: odata.maxpagesize gives a $skip nextLink. */
	snprintf(rel, sizeof(rel), "CustomersV3?$filter=CustomerAccount%%20eq%%20'%s-*'", prefix);
	call("GET", rel, NULL, "Prefer: odata.maxpagesize=3", &r);
	j = emu_json(&r);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "value")), 3);
	const cJSON *next = cJSON_GetObjectItem(j, "@odata.nextLink");
	assert_true(cJSON_IsString(next));
	assert_non_null(strstr(next->valuestring, "$skip=3"));
	char url[1024];
	snprintf(url, sizeof(url), "%s", next->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
	const char *h[] = {auth_header, NULL};
	emu_http("GET", url, h, NULL, &r);
	j = emu_json(&r);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "value")), 1);
	assert_null(cJSON_GetObjectItem(j, "@odata.nextLink"));
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* $top caps the total across pages: 3 rows in pages of 2. */
	snprintf(rel, sizeof(rel), "CustomersV3?$filter=CustomerAccount%%20eq%%20'%s-*'&$top=3", prefix);
	call("GET", rel, NULL, "Prefer: odata.maxpagesize=2", &r);
	j = emu_json(&r);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "value")), 2);
	next = cJSON_GetObjectItem(j, "@odata.nextLink");
	assert_true(cJSON_IsString(next));
	snprintf(url, sizeof(url), "%s", next->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
	emu_http("GET", url, h, NULL, &r);
	j = emu_json(&r);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "value")), 1);
	assert_null(cJSON_GetObjectItem(j, "@odata.nextLink"));
	cJSON_Delete(j);
	emu_resp_free(&r);
}

static void test_batch_changeset_failure_rolls_back(void **state)
{
	(void)state;
	char acct[21], body[4096], rel[256];
	unique_account("B", acct);
	/* Two creates of the same key in one changeset: the second fails, the first must vanish. */
	int n = snprintf(body, sizeof(body), "--batch_F\r\nContent-Type: multipart/mixed; boundary=changeset_G\r\n\r\n");
	for (int i = 1; i <= 2; i++)
		n += snprintf(body + n, sizeof(body) - (size_t)n,
			      "--changeset_G\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
			      "Content-ID: %d\r\n\r\nPOST CustomersV3 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
			      "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"%s\",\"CreditLimit\":1}\r\n",
			      i, acct);
	snprintf(body + n, sizeof(body) - (size_t)n, "--changeset_G--\r\n--batch_F--\r\n");
	char url[512];
	snprintf(url, sizeof(url), "%s/data/$batch", base);
	const char *h[] = {auth_header, "Content-Type: multipart/mixed; boundary=batch_F", NULL};
	struct emu_resp r;
	emu_http("POST", url, h, body, &r);
	assert_int_equal(r.status, 200); /* OData v4: the batch succeeds, the changeset part carries the error */
	assert_null(strstr(r.body, "HTTP/1.1 201"));
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", acct);
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
	/* The same changeset with distinct keys commits both. */
	n = snprintf(body, sizeof(body), "--batch_F\r\nContent-Type: multipart/mixed; boundary=changeset_G\r\n\r\n");
	for (int i = 1; i <= 2; i++)
		n += snprintf(body + n, sizeof(body) - (size_t)n,
			      "--changeset_G\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
			      "Content-ID: %d\r\n\r\nPOST CustomersV3 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
			      "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"%s%d\",\"CreditLimit\":1}\r\n",
			      i, acct, i);
	snprintf(body + n, sizeof(body) - (size_t)n, "--changeset_G--\r\n--batch_F--\r\n");
	emu_http("POST", url, h, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "HTTP/1.1 201"));
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s2')", acct);
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	emu_resp_free(&r);
}

/* The committed write count of a customer (admin API). */
static long writes_of(const char *acct)
{
	char path[512];
	struct emu_resp r;
	snprintf(path, sizeof(path), "records/CustomersV3?key=%%28dataAreaId%%3D%%27usmf%%27%%2CCustomerAccount%%3D%%27%s%%27%%29",
		 acct);
	emu_admin(base, "GET", path, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	long n = (long)cJSON_GetObjectItem(j, "writes")->valuedouble;
	cJSON_Delete(j);
	emu_resp_free(&r);
	return n;
}

/* The @odata.etag of a customer as read now. */
static void etag_of(const char *acct, char *out, size_t len)
{
	char rel[256];
	struct emu_resp r;
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", acct);
	call("GET", rel, NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	snprintf(out, len, "%s", cJSON_GetObjectItem(j, "@odata.etag")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);
}

/*
 * A $batch of one-PATCH changesets with continue-on-error (what the apply worker sends): the
 * emulator writes a run of them in one pipelined round trip, and each part still gets the answer
 * it would get alone and in order: 200 with the representation, 412 for a stale If-Match, 404, 400
 * for a key change or an invalid value, 204; two changesets of one record (keys in another case)
 * apply in order; a write happens once per successful part and never for a failed one.
 */
static void test_batch_patches_answer_each_part(void **state)
{
	(void)state;
	char a[21], b[21], c[21], missing[21], a_lower[21];
	char etag_a[128], etag_b[128];
	struct emu_resp r;
	unique_account("QA", a);
	unique_account("QB", b);
	unique_account("QC", c);
	unique_account("QM", missing);
	const char *accts[] = {a, b, c};
	for (int i = 0; i < 3; i++) {
		create_customer("usmf", accts[i], &r);
		assert_int_equal(r.status, 201);
		emu_resp_free(&r);
	}
	etag_of(a, etag_a, sizeof(etag_a));
	etag_of(b, etag_b, sizeof(etag_b));
	char rel[256];
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", b);
	call("PATCH", rel, "{\"CreditLimit\":2}", NULL, &r); /* etag_b is stale now */
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	for (size_t i = 0; a[i]; i++)
		a_lower[i] = (char)(a[i] >= 'A' && a[i] <= 'Z' ? a[i] - 'A' + 'a' : a[i]);
	a_lower[strlen(a)] = '\0';

	struct {
		const char *acct, *if_match, *body;
		int representation, status;
	} ops[] = {
		{a, etag_a, "{\"OrganizationName\":\"A1\"}", 1, 200},
		{b, etag_b, "{\"OrganizationName\":\"B1\"}", 0, 412},
		{missing, NULL, "{\"OrganizationName\":\"M1\"}", 0, 404},
		{c, NULL, "{\"CustomerAccount\":\"OTHER\"}", 0, 400},
		{c, NULL, "{\"OnHoldStatus\":\"NotAMember\"}", 0, 400},
		{c, NULL, "{\"CreditLimit\":5}", 0, 204},
		{c, NULL, "{\"CreditLimit\":6}", 0, 204},
		{a_lower, NULL, "{\"CustomerGroupId\":\"20\"}", 0, 204},
	};
	enum { N = sizeof(ops) / sizeof(ops[0]) };
	char urls[N][256], ims[N][160];
	struct odata_batch_header hdrs[N][3];
	struct odata_batch_request reqs[N];
	struct odata_batch_part parts[N];
	for (size_t i = 0; i < N; i++) {
		size_t nh = 0;
		snprintf(urls[i], sizeof(urls[i]), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", ops[i].acct);
		hdrs[i][nh++] = (struct odata_batch_header){"Content-Type", "application/json"};
		if (ops[i].if_match) {
			snprintf(ims[i], sizeof(ims[i]), "%s", ops[i].if_match);
			hdrs[i][nh++] = (struct odata_batch_header){"If-Match", ims[i]};
		}
		if (ops[i].representation)
			hdrs[i][nh++] = (struct odata_batch_header){"Prefer", "return=representation"};
		reqs[i] = (struct odata_batch_request){.method = "PATCH", .url = urls[i], .headers = hdrs[i],
						       .nheaders = nh, .body = ops[i].body,
						       .body_len = strlen(ops[i].body)};
		parts[i] = (struct odata_batch_part){.changeset = 1, .requests = &reqs[i], .nrequests = 1};
	}
	char *body = NULL, *ctype = NULL, err[256];
	size_t blen = 0;
	assert_int_equal(odata_batch_request_build(parts, N, "quick", &body, &blen, &ctype, err, sizeof(err)), 0);
	char url[512], ct[300];
	snprintf(url, sizeof(url), "%s/data/$batch", base);
	snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
	const char *h[] = {auth_header, ct, "Prefer: odata.continue-on-error", NULL};
	emu_http("POST", url, h, body, &r);
	free(body);
	free(ctype);
	assert_int_equal(r.status, 200);
	char rct[300];
	assert_non_null(emu_header(&r, "Content-Type", rct, sizeof(rct)));
	struct odata_batch_result res;
	assert_int_equal(odata_batch_response_parse(rct, r.body, r.len, 1 << 24, &res, err, sizeof(err)), 0);
	assert_int_equal(res.nparts, N);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(res.parts[i].nresponses, 1);
		const struct odata_batch_response *x = &res.parts[i].responses[0];
		if (x->status != ops[i].status)
			fail_msg("part %zu (%s %s): status %d, expected %d", i, ops[i].acct, ops[i].body, x->status,
				 ops[i].status);
		if (x->status < 300)
			assert_non_null(odata_batch_header_get(x->headers, x->nheaders, "ETag"));
	}
	const struct odata_batch_response *first = &res.parts[0].responses[0];
	assert_non_null(first->body);
	assert_non_null(strstr(first->body, "\"OrganizationName\":\"A1\""));
	odata_batch_result_clear(&res);
	emu_resp_free(&r);

	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", a);
	call("GET", rel, NULL, NULL, &r);
	cJSON *j = emu_json(&r);
	assert_string_equal(cJSON_GetObjectItem(j, "OrganizationName")->valuestring, "A1");
	assert_string_equal(cJSON_GetObjectItem(j, "CustomerGroupId")->valuestring, "20");
	cJSON_Delete(j);
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", c);
	call("GET", rel, NULL, NULL, &r);
	j = emu_json(&r);
	assert_int_equal((int)cJSON_GetObjectItem(j, "CreditLimit")->valuedouble, 6);
	assert_string_equal(cJSON_GetObjectItem(j, "CustomerAccount")->valuestring, c);
	cJSON_Delete(j);
	emu_resp_free(&r);
	/* creates, the PATCH before the batch and the batch's successful parts: nothing more */
	assert_int_equal(writes_of(a), 3);
	assert_int_equal(writes_of(b), 2);
	assert_int_equal(writes_of(c), 3);
}

static void test_validation_error_has_fo_shape(void **state)
{
	(void)state;
	struct emu_resp r;
	call("POST", "CustomersV3",
	     "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"x\",\"OnHoldStatus\":\"NotAMember\",\"CreditLimit\":1}",
	     NULL, &r);
	assert_int_equal(r.status, 400);
	cJSON *j = emu_json(&r);
	const cJSON *e = cJSON_GetObjectItem(j, "error");
	assert_non_null(e);
	assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "message")));
	cJSON_Delete(j);
	emu_resp_free(&r);
	call("GET", "NoSuchEntities", NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	emu_resp_free(&r);
}

static void test_record_write_counts(void **state)
{
	(void)state;
	char acct[21], rel[256], path[512];
	unique_account("W", acct);
	struct emu_resp r;
	create_customer("usmf", acct, &r);
	assert_int_equal(r.status, 201);
	emu_resp_free(&r);
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", acct);
	call("PATCH", rel, "{\"OrganizationName\":\"1\"}", NULL, &r);
	emu_resp_free(&r);
	call("PATCH", rel, "{\"OrganizationName\":\"2\"}", NULL, &r);
	emu_resp_free(&r);
	snprintf(path, sizeof(path), "records/CustomersV3?key=%%28dataAreaId%%3D%%27usmf%%27%%2CCustomerAccount%%3D%%27%s%%27%%29",
		 acct);
	emu_admin(base, "GET", path, NULL, &r);
	assert_int_equal(r.status, 200);
	cJSON *j = emu_json(&r);
	assert_int_equal((long)cJSON_GetObjectItem(j, "writes")->valuedouble, 3);
	cJSON_Delete(j);
	emu_resp_free(&r);
}

static void test_data_events_posted_after_commit_with_keys(void **state)
{
	(void)state;
	int port = 32084;
	const char *pb = getenv("DW_PORT_BASE");
	if (pb && *pb)
		port = (int)strtol(pb, NULL, 10) + 84;
	struct MHD_Daemon *d = emu_hooks_start(port);
	char reg[512], acct[21], rel[256], path[128];
	snprintf(reg, sizeof(reg),
		 "{\"entity\":\"CustomersV3\",\"url\":\"http://127.0.0.1:%d/events\",\"auth\":\"header\","
		 "\"auth_name\":\"x-events-key\",\"auth_value\":\"s3cret-events\"}",
		 port);
	struct emu_resp r;
	emu_admin(base, "POST", "webhooks", reg, &r);
	assert_int_equal(r.status, 201);
	cJSON *j = emu_json(&r);
	snprintf(path, sizeof(path), "webhooks/%s", cJSON_GetObjectItem(j, "id")->valuestring);
	cJSON_Delete(j);
	emu_resp_free(&r);

	unique_account("E", acct);
	create_customer("usmf", acct, &r);
	assert_int_equal(r.status, 201);
	emu_resp_free(&r);
	int i = emu_hooks_wait(NULL, acct);
	assert_true(i >= 0);
	pthread_mutex_lock(&emu_hooks.mu);
	cJSON *ev = cJSON_Parse(emu_hooks.posts[i].body);
	pthread_mutex_unlock(&emu_hooks.mu);
	assert_non_null(ev);
	assert_string_equal(cJSON_GetObjectItem(ev, "MessageName")->valuestring, "Create");
	assert_non_null(cJSON_GetObjectItem(ev, "InputParameters"));
	cJSON_Delete(ev);

	/* An update is announced too. */
	snprintf(rel, sizeof(rel), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", acct);
	call("PATCH", rel, "{\"OrganizationName\":\"after\"}", NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	i = emu_hooks_wait(NULL, "\"MessageName\":\"Update\"");
	assert_true(i >= 0);
	pthread_mutex_lock(&emu_hooks.mu);
	assert_non_null(strstr(emu_hooks.posts[i].body, acct));
	pthread_mutex_unlock(&emu_hooks.mu);

	/* An update through a $batch changeset (the pipelined path) is announced with its pre-image. */
	char body[2048], url[512];
	snprintf(body, sizeof(body),
		 "--batch_H\r\nContent-Type: multipart/mixed; boundary=changeset_J\r\n\r\n"
		 "--changeset_J\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
		 "PATCH %s HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"OrganizationName\":\"batched\"}\r\n"
		 "--changeset_J--\r\n--batch_H--\r\n",
		 rel);
	snprintf(url, sizeof(url), "%s/data/$batch", base);
	const char *h[] = {auth_header, "Content-Type: multipart/mixed; boundary=batch_H",
			   "Prefer: odata.continue-on-error", NULL};
	emu_http("POST", url, h, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "HTTP/1.1 204"));
	emu_resp_free(&r);
	i = emu_hooks_wait(NULL, "batched");
	assert_true(i >= 0);
	pthread_mutex_lock(&emu_hooks.mu);
	assert_non_null(strstr(emu_hooks.posts[i].body, "\"MessageName\":\"Update\""));
	assert_non_null(strstr(emu_hooks.posts[i].body, "PreImage"));
	assert_non_null(strstr(emu_hooks.posts[i].body, "\"after\""));
	pthread_mutex_unlock(&emu_hooks.mu);

	emu_admin(base, "DELETE", path, NULL, &r);
	assert_int_equal(r.status, 204);
	emu_resp_free(&r);
	emu_hooks_stop(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_post_creates_201_with_entity_and_location),
		cmocka_unit_test(test_key_literals_every_key_part_required),
		cmocka_unit_test(test_patch_missing_is_404_and_if_match),
		cmocka_unit_test(test_default_company_unless_cross_company),
		cmocka_unit_test(test_top_skip_and_next_link),
		cmocka_unit_test(test_batch_changeset_failure_rolls_back),
		cmocka_unit_test(test_batch_patches_answer_each_part),
		cmocka_unit_test(test_validation_error_has_fo_shape),
		cmocka_unit_test(test_record_write_counts),
		cmocka_unit_test(test_data_events_posted_after_commit_with_keys),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
