#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "harness.h"
#include "notify.h"
#include "schema.h"

/*
 * A webhook receiver on 127.0.0.1 (ephemeral port) that records every POST: path, query
 * `code`, the x-ms-* headers, a named auth header and the body. Its answers come from a script:
 * statuses[i] for the i-th request (200 after the script ends); delay_ms slows every answer.
 */
#define MAX_REQ 256
#define BODY_CAP (1024 * 1024)

struct req {
	char path[128];
	char code[128];
	char org[128], entity[128], request[32], corr[64], size_exceeded[16], auth[128];
	char *body;
	int status; /* what the receiver answered */
};

struct receiver {
	struct MHD_Daemon *d;
	unsigned short port;
	pthread_mutex_t mu;
	struct req reqs[MAX_REQ];
	int n;
	int statuses[MAX_REQ];
	int n_statuses;
	int delay_ms;
};

static struct receiver rx;

struct upload {
	char *buf;
	size_t len;
	int too_big;
};

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t len)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	snprintf(out, len, "%s", v ? v : "");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			       const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct upload *u = *con_cls;
	struct MHD_Response *resp;
	enum MHD_Result r;
	int status = 200;
	(void)cls;
	(void)version;

	if (u == NULL) {
		u = calloc(1, sizeof(*u));
		*con_cls = u;
		return MHD_YES;
	}
	if (*upload_size) {
		if (u->len + *upload_size > BODY_CAP) {
			u->too_big = 1;
		} else {
			u->buf = realloc(u->buf, u->len + *upload_size + 1);
			memcpy(u->buf + u->len, upload_data, *upload_size);
			u->len += *upload_size;
			u->buf[u->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&rx.mu);
	if (strcmp(method, "POST") == 0 && rx.n < MAX_REQ && !u->too_big) {
		struct req *q = &rx.reqs[rx.n];
		const char *code = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "code");
		snprintf(q->path, sizeof(q->path), "%s", url);
		snprintf(q->code, sizeof(q->code), "%s", code ? code : "");
		copy_header(c, "x-ms-dynamics-organization", q->org, sizeof(q->org));
		copy_header(c, "x-ms-dynamics-entity-name", q->entity, sizeof(q->entity));
		copy_header(c, "x-ms-dynamics-request-name", q->request, sizeof(q->request));
		copy_header(c, "x-ms-correlation-request-id", q->corr, sizeof(q->corr));
		copy_header(c, "x-ms-dynamics-msg-size-exceeded", q->size_exceeded, sizeof(q->size_exceeded));
		copy_header(c, "X-Hook-Key", q->auth, sizeof(q->auth));
		q->body = u->buf ? u->buf : strdup("");
		u->buf = NULL;
		status = rx.n < rx.n_statuses ? rx.statuses[rx.n] : 200;
		q->status = status;
		rx.n++;
	}
	pthread_mutex_unlock(&rx.mu);
	if (rx.delay_ms)
		usleep((useconds_t)rx.delay_ms * 1000);
	resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	r = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return r;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct upload *u = *con_cls;
	(void)cls;
	(void)c;
	(void)toe;
	if (u) {
		free(u->buf);
		free(u);
	}
	*con_cls = NULL;
}

static void rx_reset(void)
{
	pthread_mutex_lock(&rx.mu);
	for (int i = 0; i < rx.n; i++)
		free(rx.reqs[i].body);
	rx.n = 0;
	rx.n_statuses = 0;
	rx.delay_ms = 0;
	pthread_mutex_unlock(&rx.mu);
}

static int rx_count(void)
{
	int n;
	pthread_mutex_lock(&rx.mu);
	n = rx.n;
	pthread_mutex_unlock(&rx.mu);
	return n;
}

static struct schema *ce, *fo;

static int setup_all(void **state)
{
	char err[512];
	const union MHD_DaemonInfo *info;
	(void)state;

	if (schema_load("tests/emulators/schemas/ce.json", &ce, err, sizeof(err)) != 0 ||
	    schema_load("tests/emulators/schemas/fo.json", &fo, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	pthread_mutex_init(&rx.mu, NULL);
	rx.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, handler, NULL,
				MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
	if (rx.d == NULL)
		return -1;
	info = MHD_get_daemon_info(rx.d, MHD_DAEMON_INFO_BIND_PORT);
	rx.port = info ? info->port : 0;
	return rx.port ? 0 : -1;
}

static int teardown_all(void **state)
{
	(void)state;
	rx_reset();
	MHD_stop_daemon(rx.d);
	pthread_mutex_destroy(&rx.mu);
	schema_free(ce);
	schema_free(fo);
	return 0;
}

static int reset_each(void **state)
{
	(void)state;
	rx_reset();
	return 0;
}

static struct notify *make(struct schema *s, int max_attempts, long backoff_ms, size_t cap)
{
	struct notify_options o = { 0 };
	struct notify *n;
	char err[256];

	o.schema = s;
	o.organization = "contoso.crm.dynamics.com";
	o.organization_name = "contoso";
	o.max_attempts = max_attempts;
	o.backoff_ms = backoff_ms;
	o.timeout_ms = 5000;
	o.queue_cap = cap;
	if (notify_new(&o, &n, err, sizeof(err)) != 0)
		fail_msg("notify_new: %s", err);
	return n;
}

static void url(char *out, size_t len, const char *path)
{
	snprintf(out, len, "http://127.0.0.1:%u%s", rx.port, path);
}

/* Value of key `k` in a [{"key":..,"value":..}] list. */
static const cJSON *kv(const cJSON *list, const char *k)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, list)
	if (strcmp(cJSON_GetObjectItem(it, "key")->valuestring, k) == 0)
		return cJSON_GetObjectItem(it, "value");
	return NULL;
}

static const cJSON *target_of(const cJSON *body)
{
	return kv(cJSON_GetObjectItem(body, "InputParameters"), "Target");
}

static double stat_of(struct notify *n, const char *name)
{
	cJSON *s = notify_stats(n);
	const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "registrations"), 0);
	double v = r ? cJSON_GetObjectItem(r, name)->valuedouble : -1;
	cJSON_Delete(s);
	return v;
}

#define ACCOUNT_ID "6d81597f-0f9f-e711-8122-000d3aa2331c"
#define COMPANY_ID "11111111-2222-4333-8444-555555555555"

static void test_ce_create_update_delete_shapes(void **state)
{
	struct notify *n = make(ce, 3, 50, 100);
	struct notify_registration reg = { 0 };
	char u[256], id[37], err[256];
	cJSON *post = cJSON_Parse("{\"accountid\":\"" ACCOUNT_ID "\",\"name\":\"Contoso Ltd\",\"accountnumber\":\"US-001\","
				  "\"creditlimit\":1500.5,\"customertypecode\":3,\"_msdyn_company_value\":\"" COMPANY_ID "\","
				  "\"createdon\":\"2017-09-26T00:04:07Z\",\"versionnumber\":468026,\"telephone1\":null,"
				  "\"@odata.etag\":\"W/\\\"468026\\\"\"}");
	cJSON *post2 = cJSON_Duplicate(post, 1);
	struct notify_change ch = { 0 };
	(void)state;

	cJSON_ReplaceItemInObject(post2, "telephone1", cJSON_CreateString("555-0100"));
	url(u, sizeof(u), "/hooks/dataverse");
	reg.entity = "accounts"; /* a set name works as well as the logical name */
	reg.url = u;
	reg.auth = NOTIFY_AUTH_CODE;
	reg.auth_value = "s3cr3t key/+";
	assert_int_equal(notify_register(n, &reg, id, err, sizeof(err)), 0);
	assert_int_equal(strlen(id), 36);

	ch.entity = "account";
	ch.id = ACCOUNT_ID;
	ch.correlation_id = "9b0f4c1e-2a39-4f7a-9d8e-0c6d3b1f7a11";
	ch.user_id = "75c2dd85-e89e-e711-8122-000d3aa2331c";
	ch.time_ms = 1506409448000LL;
	ch.version = 468026;
	ch.message = NOTIFY_CREATE;
	ch.post = post;
	assert_int_equal(notify_change(n, &ch), 1);
	ch.message = NOTIFY_UPDATE;
	ch.pre = post;
	ch.post = post2;
	ch.in_transaction = 1;
	assert_int_equal(notify_change(n, &ch), 1);
	ch.message = NOTIFY_DELETE;
	ch.pre = post2;
	ch.post = NULL;
	ch.in_transaction = 0;
	assert_int_equal(notify_change(n, &ch), 1);
	/* another entity does not match the registration */
	ch.entity = "product";
	assert_int_equal(notify_change(n, &ch), 0);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal(rx_count(), 3);
	assert_int_equal((int)stat_of(n, "delivered"), 3);

	for (int i = 0; i < 3; i++) {
		static const char *const names[] = { "Create", "Update", "Delete" };
		const struct req *q = &rx.reqs[i];
		cJSON *b = cJSON_Parse(q->body);
		const cJSON *t;
		assert_non_null(b);
		assert_string_equal(q->path, "/hooks/dataverse");
		assert_string_equal(q->code, "s3cr3t key/+"); /* percent-encoded on the wire, decoded here */
		assert_string_equal(q->org, "contoso.crm.dynamics.com");
		assert_string_equal(q->entity, "account");
		assert_string_equal(q->request, names[i]);
		assert_string_equal(q->corr, "9b0f4c1e-2a39-4f7a-9d8e-0c6d3b1f7a11");
		assert_string_equal(cJSON_GetObjectItem(b, "MessageName")->valuestring, names[i]);
		assert_string_equal(cJSON_GetObjectItem(b, "PrimaryEntityName")->valuestring, "account");
		assert_string_equal(cJSON_GetObjectItem(b, "PrimaryEntityId")->valuestring, ACCOUNT_ID);
		assert_string_equal(cJSON_GetObjectItem(b, "CorrelationId")->valuestring, "9b0f4c1e-2a39-4f7a-9d8e-0c6d3b1f7a11");
		assert_string_equal(cJSON_GetObjectItem(b, "UserId")->valuestring, "75c2dd85-e89e-e711-8122-000d3aa2331c");
		assert_string_equal(cJSON_GetObjectItem(b, "InitiatingUserId")->valuestring, "75c2dd85-e89e-e711-8122-000d3aa2331c");
		assert_int_equal(cJSON_GetObjectItem(b, "Stage")->valueint, 40);
		assert_int_equal(cJSON_GetObjectItem(b, "Depth")->valueint, 1);
		assert_int_equal(cJSON_GetObjectItem(b, "Mode")->valueint, 1);
		assert_string_equal(cJSON_GetObjectItem(b, "OperationCreatedOn")->valuestring, "/Date(1506409448000)/");
		assert_string_equal(cJSON_GetObjectItem(b, "OrganizationName")->valuestring, "contoso");
		assert_string_equal(cJSON_GetObjectItem(b, "SecondaryEntityName")->valuestring, "none");
		assert_true(cJSON_IsNull(cJSON_GetObjectItem(b, "ParentContext")));
		assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "OwningExtension"), "LogicalName")->valuestring,
				    "sdkmessageprocessingstep");
		assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "OwningExtension"), "Id")->valuestring, id);
		assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(b, "IsInTransaction")), i == 1);
		t = target_of(b);
		assert_non_null(t);
		if (i < 2) {
			const cJSON *attrs = cJSON_GetObjectItem(t, "Attributes");
			const cJSON *post_img = kv(cJSON_GetObjectItem(b, "PostEntityImages"), "PostImage");
			assert_string_equal(cJSON_GetObjectItem(t, "__type")->valuestring,
					    "Entity:http://schemas.microsoft.com/xrm/2011/Contracts");
			assert_string_equal(cJSON_GetObjectItem(t, "LogicalName")->valuestring, "account");
			assert_string_equal(cJSON_GetObjectItem(t, "Id")->valuestring, ACCOUNT_ID);
			assert_string_equal(cJSON_GetObjectItem(t, "RowVersion")->valuestring, "468026");
			assert_string_equal(kv(attrs, "accountid")->valuestring, ACCOUNT_ID);
			assert_non_null(post_img);
			assert_string_equal(kv(cJSON_GetObjectItem(post_img, "Attributes"), "name")->valuestring, "Contoso Ltd");
			if (i == 0) {
				/* typed values */
				const cJSON *m = kv(attrs, "creditlimit");
				const cJSON *o = kv(attrs, "customertypecode");
				const cJSON *l = kv(attrs, "msdyn_company");
				assert_string_equal(cJSON_GetObjectItem(m, "__type")->valuestring,
						    "Money:http://schemas.microsoft.com/xrm/2011/Contracts");
				assert_true(cJSON_GetObjectItem(m, "Value")->valuedouble == 1500.5);
				assert_string_equal(cJSON_GetObjectItem(o, "__type")->valuestring,
						    "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts");
				assert_int_equal(cJSON_GetObjectItem(o, "Value")->valueint, 3);
				assert_string_equal(cJSON_GetObjectItem(l, "__type")->valuestring,
						    "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts");
				assert_string_equal(cJSON_GetObjectItem(l, "LogicalName")->valuestring, "cdm_company");
				assert_string_equal(cJSON_GetObjectItem(l, "Id")->valuestring, COMPANY_ID);
				assert_null(kv(attrs, "_msdyn_company_value"));
				assert_string_equal(kv(attrs, "createdon")->valuestring, "/Date(1506384247000)/");
				assert_true(cJSON_IsNull(kv(attrs, "telephone1")));
				assert_null(kv(attrs, "@odata.etag"));
				/* Create returns the new id */
				assert_string_equal(kv(cJSON_GetObjectItem(b, "OutputParameters"), "id")->valuestring, ACCOUNT_ID);
				assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "PreEntityImages")), 0);
			} else {
				/* Update: Target carries the changed attributes (and the id); images both */
				assert_int_equal(cJSON_GetArraySize(attrs), 2);
				assert_string_equal(kv(attrs, "telephone1")->valuestring, "555-0100");
				assert_non_null(kv(cJSON_GetObjectItem(b, "PreEntityImages"), "PreImage"));
			}
		} else {
			/* Delete: Target is an EntityReference */
			assert_string_equal(cJSON_GetObjectItem(t, "__type")->valuestring,
					    "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts");
			assert_string_equal(cJSON_GetObjectItem(t, "LogicalName")->valuestring, "account");
			assert_string_equal(cJSON_GetObjectItem(t, "Id")->valuestring, ACCOUNT_ID);
			assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "PostEntityImages")), 0);
			assert_non_null(kv(cJSON_GetObjectItem(b, "PreEntityImages"), "PreImage"));
		}
		cJSON_Delete(b);
	}
	notify_free(n);
	cJSON_Delete(post);
	cJSON_Delete(post2);
}

static void test_header_auth_and_message_filter(void **state)
{
	struct notify *n = make(ce, 3, 50, 100);
	struct notify_registration reg = { 0 };
	char u[256], err[256];
	cJSON *post = cJSON_Parse("{\"accountid\":\"" ACCOUNT_ID "\",\"name\":\"A\"}");
	struct notify_change ch = { .entity = "account", .id = ACCOUNT_ID, .post = post };
	(void)state;

	url(u, sizeof(u), "/hooks/deletes");
	reg.entity = "account";
	reg.messages = NOTIFY_DELETE;
	reg.url = u;
	reg.auth = NOTIFY_AUTH_HEADER;
	reg.auth_name = "X-Hook-Key";
	reg.auth_value = "k-123";
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	ch.message = NOTIFY_CREATE;
	assert_int_equal(notify_change(n, &ch), 0);
	ch.message = NOTIFY_UPDATE;
	assert_int_equal(notify_change(n, &ch), 0);
	ch.message = NOTIFY_DELETE;
	assert_int_equal(notify_change(n, &ch), 1);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal(rx_count(), 1);
	assert_string_equal(rx.reqs[0].auth, "k-123");
	assert_string_equal(rx.reqs[0].code, "");
	assert_string_equal(rx.reqs[0].request, "Delete");

	/* bad registrations */
	reg.auth_name = "X-Bad: header";
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), -1);
	reg.auth_name = "X-Hook-Key";
	reg.entity = "nosuchtable";
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown entity"));
	reg.entity = NULL;
	reg.url = "ftp://example.com/x";
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), -1);
	notify_free(n);
	cJSON_Delete(post);
}

static void test_retry_after_500(void **state)
{
	struct notify *n = make(ce, 3, 50, 100);
	struct notify_registration reg = { 0 };
	char u[256], err[256];
	cJSON *post = cJSON_Parse("{\"accountid\":\"" ACCOUNT_ID "\",\"name\":\"A\"}");
	struct notify_change ch = { .entity = "account", .id = ACCOUNT_ID, .post = post, .message = NOTIFY_UPDATE };
	(void)state;

	rx.statuses[0] = 500;
	rx.n_statuses = 1;
	url(u, sizeof(u), "/hooks/flaky");
	reg.url = u;
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	assert_int_equal(notify_change(n, &ch), 1);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal(rx_count(), 2);
	assert_int_equal(rx.reqs[0].status, 500);
	assert_int_equal(rx.reqs[1].status, 200);
	assert_string_equal(rx.reqs[0].body, rx.reqs[1].body); /* the same delivery, again */
	assert_int_equal((int)stat_of(n, "delivered"), 1);
	assert_int_equal((int)stat_of(n, "retried"), 1);
	assert_int_equal((int)stat_of(n, "failed"), 0);
	assert_int_equal((int)stat_of(n, "pending"), 0);

	/* always 503: gives up after max_attempts and counts a failure */
	rx_reset();
	for (int i = 0; i < 3; i++)
		rx.statuses[i] = 503;
	rx.n_statuses = 3;
	assert_int_equal(notify_change(n, &ch), 1);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal(rx_count(), 3);
	assert_int_equal((int)stat_of(n, "failed"), 1);
	assert_int_equal((int)stat_of(n, "retried"), 3);
	notify_free(n);
	cJSON_Delete(post);
}

static void test_connection_refused_counts_failure(void **state)
{
	struct notify *n = make(ce, 2, 20, 100);
	struct notify_registration reg = { .url = "http://127.0.0.1:1/nothing-listens-here" };
	char err[256];
	cJSON *post = cJSON_Parse("{\"name\":\"A\"}");
	struct notify_change ch = { .entity = "account", .id = ACCOUNT_ID, .post = post, .message = NOTIFY_CREATE };
	(void)state;

	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	assert_int_equal(notify_change(n, &ch), 1);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal((int)stat_of(n, "failed"), 1);
	assert_int_equal((int)stat_of(n, "retried"), 1);
	assert_int_equal((int)stat_of(n, "delivered"), 0);
	notify_free(n);
	cJSON_Delete(post);
}

/* While the first deliveries fail, later changes of the same record wait; what arrives with a
 * 2xx is in change order for each record. */
static void test_order_per_record_holds(void **state)
{
	struct notify *n = make(ce, 5, 30, 1000);
	struct notify_registration reg = { 0 };
	char u[256], err[256];
	static const char *const ids[] = { "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b" };
	int last[2] = { 0, 0 };
	(void)state;

	rx.statuses[0] = 500;
	rx.statuses[1] = 502;
	rx.statuses[2] = 200;
	rx.statuses[3] = 500;
	rx.n_statuses = 4;
	url(u, sizeof(u), "/hooks/order");
	reg.url = u;
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	for (int v = 1; v <= 10; v++)
		for (int r = 0; r < 2; r++) {
			char json[128];
			cJSON *post;
			struct notify_change ch = { .entity = "account", .message = NOTIFY_UPDATE };
			snprintf(json, sizeof(json), "{\"accountid\":\"%s\",\"accountnumber\":\"%d\"}", ids[r], v);
			post = cJSON_Parse(json);
			ch.id = ids[r];
			ch.post = post;
			assert_int_equal(notify_change(n, &ch), 1);
			cJSON_Delete(post);
		}
	assert_int_equal(notify_drain(n, 10000), 0);
	assert_int_equal((int)stat_of(n, "delivered"), 20);
	for (int i = 0; i < rx_count(); i++) {
		cJSON *b = cJSON_Parse(rx.reqs[i].body);
		const char *id = cJSON_GetObjectItem(b, "PrimaryEntityId")->valuestring;
		int r = strcmp(id, ids[0]) == 0 ? 0 : 1;
		int v = (int)strtol(kv(cJSON_GetObjectItem(target_of(b), "Attributes"), "accountnumber")->valuestring, NULL, 10);
		if (rx.reqs[i].status == 200) {
			if (v != last[r] + 1)
				fail_msg("record %d: version %d delivered after %d", r, v, last[r]);
			last[r] = v;
		}
		cJSON_Delete(b);
	}
	assert_int_equal(last[0], 10);
	assert_int_equal(last[1], 10);
	notify_free(n);
}

static void test_queue_overflow_is_counted(void **state)
{
	struct notify *n = make(ce, 1, 10, 1);
	struct notify_registration reg = { 0 };
	char u[256], err[256];
	cJSON *post = cJSON_Parse("{\"name\":\"A\"}");
	struct notify_change ch = { .entity = "account", .id = ACCOUNT_ID, .post = post, .message = NOTIFY_UPDATE };
	int refused = 0;
	cJSON *s;
	(void)state;

	rx.delay_ms = 200;
	url(u, sizeof(u), "/hooks/slow");
	reg.url = u;
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	for (int i = 0; i < 5; i++)
		if (notify_change(n, &ch) < 0)
			refused++;
	assert_true(refused >= 3);
	s = notify_stats(n);
	assert_int_equal(cJSON_GetObjectItem(s, "overflow")->valueint, refused);
	cJSON_Delete(s);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal((int)stat_of(n, "delivered"), 5 - refused);
	notify_free(n);
	cJSON_Delete(post);
}

static void test_fo_data_event_shape(void **state)
{
	struct notify *n = make(fo, 3, 50, 100);
	struct notify_registration reg = { 0 };
	char u[256], err[256];
	cJSON *keys = cJSON_Parse("{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"00000123\"}");
	cJSON *pre = cJSON_Parse("{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"00000123\",\"PurchaseOrderStatus\":\"Backorder\","
				 "\"RequestedDeliveryDate\":\"2025-01-31T12:00:00Z\",\"AccountingDate\":\"1900-01-01T00:00:00Z\"}");
	cJSON *post = cJSON_Parse("{\"dataAreaId\":\"usmf\",\"PurchaseOrderNumber\":\"00000123\",\"PurchaseOrderStatus\":\"Received\","
				  "\"RequestedDeliveryDate\":\"2025-01-31T12:00:00Z\",\"AccountingDate\":\"1900-01-01T00:00:00Z\"}");
	struct notify_change ch = { .entity = "PurchaseOrderHeadersV2", .keys = keys, .pre = pre, .post = post,
				    .message = NOTIFY_UPDATE, .time_ms = 1000 };
	cJSON *b;
	const cJSON *t, *attrs, *st;
	(void)state;

	url(u, sizeof(u), "/hooks/fo");
	reg.url = u;
	reg.entity = "PurchaseOrderHeaderV2";
	reg.auth = NOTIFY_AUTH_CODE;
	reg.auth_value = "fo-key";
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	assert_int_equal(notify_change(n, &ch), 1);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal(rx_count(), 1);
	assert_string_equal(rx.reqs[0].code, "fo-key");
	assert_string_equal(rx.reqs[0].entity, ""); /* no Dataverse headers on data events */
	b = cJSON_Parse(rx.reqs[0].body);
	assert_string_equal(cJSON_GetObjectItem(b, "MessageName")->valuestring, "Update");
	assert_string_equal(cJSON_GetObjectItem(b, "PrimaryEntityName")->valuestring, "mserp_purchpurchaseorderheaderv2entity");
	assert_string_equal(cJSON_GetObjectItem(b, "PrimaryEntityId")->valuestring, "00000000-0000-0000-0000-000000000000");
	t = target_of(b);
	assert_string_equal(cJSON_GetObjectItem(t, "LogicalName")->valuestring, "mserp_purchpurchaseorderheaderv2entity");
	attrs = cJSON_GetObjectItem(t, "Attributes");
	/* key fields first, then what changed; enum as OptionSetValue */
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(attrs, 0), "key")->valuestring, "mserp_dataareaid");
	assert_string_equal(kv(attrs, "mserp_dataareaid")->valuestring, "usmf");
	assert_string_equal(kv(attrs, "mserp_purchaseordernumber")->valuestring, "00000123");
	st = kv(attrs, "mserp_purchaseorderstatus");
	assert_string_equal(cJSON_GetObjectItem(st, "__type")->valuestring,
			    "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts");
	assert_int_equal(cJSON_GetObjectItem(st, "Value")->valueint, 200000002);
	assert_null(kv(attrs, "mserp_requesteddeliverydate")); /* unchanged */
	assert_int_equal(cJSON_GetArraySize(attrs), 3);
	/* the PreImage is in InputParameters; its 1900 date is dropped like a NULL */
	{
		const cJSON *pi = kv(cJSON_GetObjectItem(b, "InputParameters"), "PreImage");
		const cJSON *pa = cJSON_GetObjectItem(pi, "Attributes");
		assert_non_null(pi);
		assert_string_equal(kv(pa, "mserp_requesteddeliverydate")->valuestring, "/Date(1738324800000)/");
		assert_null(kv(pa, "mserp_accountingdate"));
	}
	cJSON_Delete(b);

	/* Delete: the key fields only */
	ch.message = NOTIFY_DELETE;
	ch.post = NULL;
	ch.pre = NULL;
	b = notify_build_body(n, &ch, err, sizeof(err));
	assert_non_null(b);
	attrs = cJSON_GetObjectItem(target_of(b), "Attributes");
	assert_int_equal(cJSON_GetArraySize(attrs), 2);
	cJSON_Delete(b);
	/* F&O needs the key fields */
	ch.keys = NULL;
	assert_null(notify_build_body(n, &ch, err, sizeof(err)));
	assert_non_null(strstr(err, "needs the key fields"));
	ch.entity = "Nope";
	assert_null(notify_build_body(n, &ch, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown entity"));
	notify_free(n);
	cJSON_Delete(keys);
	cJSON_Delete(pre);
	cJSON_Delete(post);
}

static void test_unregister_and_stats(void **state)
{
	struct notify *n = make(ce, 3, 50, 100);
	struct notify_registration reg = { 0 };
	char u[256], err[256], id[37];
	cJSON *s, *post = cJSON_Parse("{\"name\":\"A\"}");
	struct notify_change ch = { .entity = "account", .id = ACCOUNT_ID, .post = post, .message = NOTIFY_CREATE };
	const cJSON *r;
	(void)state;

	url(u, sizeof(u), "/hooks/x");
	reg.url = u;
	reg.entity = "account";
	reg.messages = NOTIFY_CREATE | NOTIFY_UPDATE;
	reg.auth = NOTIFY_AUTH_QUERY;
	reg.auth_name = "sig";
	reg.auth_value = "topsecret";
	assert_int_equal(notify_register(n, &reg, id, err, sizeof(err)), 0);
	s = notify_stats(n);
	r = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "registrations"), 0);
	assert_string_equal(cJSON_GetObjectItem(r, "id")->valuestring, id);
	assert_string_equal(cJSON_GetObjectItem(r, "entity")->valuestring, "account");
	assert_string_equal(cJSON_GetObjectItem(r, "url")->valuestring, u);
	assert_string_equal(cJSON_GetObjectItem(r, "auth")->valuestring, "query");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "messages")), 2);
	{
		char *text = cJSON_PrintUnformatted(s);
		assert_null(strstr(text, "topsecret")); /* the key never shows */
		free(text);
	}
	cJSON_Delete(s);
	assert_int_equal(notify_unregister(n, id), 0);
	assert_int_equal(notify_unregister(n, id), -1);
	assert_int_equal(notify_change(n, &ch), 0);
	assert_int_equal(notify_drain(n, 1000), 0);
	assert_int_equal(rx_count(), 0);
	notify_free(n);
	cJSON_Delete(post);
}

/* A body over 256 KB goes out without the images and says so, as Dataverse does. */
static void test_large_body_is_trimmed(void **state)
{
	struct notify *n = make(ce, 1, 10, 10);
	struct notify_registration reg = { 0 };
	char u[256], err[256];
	size_t big = 300 * 1024;
	char *text = malloc(big + 1);
	cJSON *post = cJSON_CreateObject(), *b;
	struct notify_change ch = { .entity = "account", .id = ACCOUNT_ID, .message = NOTIFY_CREATE };
	(void)state;

	memset(text, 'x', big);
	text[big] = '\0';
	cJSON_AddStringToObject(post, "name", "big");
	cJSON_AddStringToObject(post, "description", text);
	ch.post = post;
	url(u, sizeof(u), "/hooks/big");
	reg.url = u;
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	assert_int_equal(notify_change(n, &ch), 1);
	assert_int_equal(notify_drain(n, 5000), 0);
	assert_int_equal(rx_count(), 1);
	assert_string_equal(rx.reqs[0].size_exceeded, "true");
	assert_true(strlen(rx.reqs[0].body) < 10000);
	b = cJSON_Parse(rx.reqs[0].body);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "InputParameters")), 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "PostEntityImages")), 0);
	assert_null(cJSON_GetObjectItem(b, "ParentContext"));
	assert_string_equal(cJSON_GetObjectItem(b, "PrimaryEntityId")->valuestring, ACCOUNT_ID);
	cJSON_Delete(b);
	notify_free(n);
	cJSON_Delete(post);
	free(text);
}

/* notify_free does not wait for a slow endpoint: the transfer in flight is abandoned. */
static void test_free_abandons_slow_delivery(void **state)
{
	struct notify *n = make(ce, 1, 10, 10);
	struct notify_registration reg = { 0 };
	char u[256], err[256];
	cJSON *post = cJSON_Parse("{\"name\":\"A\"}");
	struct notify_change ch = { .entity = "account", .id = ACCOUNT_ID, .post = post, .message = NOTIFY_CREATE };
	long long t0, deadline;
	(void)state;

	rx.delay_ms = 3000;
	url(u, sizeof(u), "/hooks/stuck");
	reg.url = u;
	assert_int_equal(notify_register(n, &reg, NULL, err, sizeof(err)), 0);
	assert_int_equal(notify_change(n, &ch), 1);
	deadline = harness_now_ms() + 2000;
	while (rx_count() == 0 && harness_now_ms() < deadline)
		usleep(10000);
	assert_int_equal(rx_count(), 1); /* the receiver has it and is sitting on the answer */
	t0 = harness_now_ms();
	notify_free(n);
	assert_true(harness_now_ms() - t0 < 2000);
	cJSON_Delete(post);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_ce_create_update_delete_shapes, reset_each),
		cmocka_unit_test_setup(test_header_auth_and_message_filter, reset_each),
		cmocka_unit_test_setup(test_retry_after_500, reset_each),
		cmocka_unit_test_setup(test_connection_refused_counts_failure, reset_each),
		cmocka_unit_test_setup(test_order_per_record_holds, reset_each),
		cmocka_unit_test_setup(test_queue_overflow_is_counted, reset_each),
		cmocka_unit_test_setup(test_fo_data_event_shape, reset_each),
		cmocka_unit_test_setup(test_unregister_and_stats, reset_each),
		cmocka_unit_test_setup(test_large_body_is_trimmed, reset_each),
		cmocka_unit_test_setup(test_free_abandons_slow_delivery, reset_each),
	};
	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
