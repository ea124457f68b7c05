/* Purchase orders as atomic units across two maps (purchase_order_headers + purchase_order_lines,
 * DESIGN 5 rule 5) and inventory aggregation (product_inventory), with the real apply binaries
 * against the real broker, PostgreSQL and both emulators. Events are produced straight onto the
 * source topics; writes are counted on the emulators. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config.h"
#include "event.h"
#include "harness.h"
#include "emu_client.h"
#include "apply_test.h"
#include "kafka.h"
#include "migrate.h"
#include "store.h"

#define WAIT_MS 90000
/* Reference data of this suite's own: the emulators' seed creates USD, ea, ... with GUIDs of its
 * own, and rows created here under those codes would make a later seed fail (key taken). XTS is
 * the ISO 4217 code reserved for testing. */
#define CUR "XTS"
#define UNIT "dwtu"
#define PARTITIONS 2

/* the workers of the suite, then (W_N..W_ALL) the other maps' workers, started by one test */
enum { W_HDR_FO, W_LINE_FO, W_HDR_CE, W_LINE_CE, W_INV_CE, W_N, W_ASSET_FO = W_N, W_ASSET_CE, W_PROD_CE, W_ACCT_FO,
       W_ACCT_CE, W_ALL };
static const char *const w_map[W_ALL] = { "purchase_order_headers", "purchase_order_lines", "purchase_order_headers",
					  "purchase_order_lines", "product_inventory", "customer_assets",
					  "customer_assets", "products", "accounts", "accounts" };
static const char *const w_to[W_ALL] = { "fo", "fo", "ce", "ce", "ce", "fo", "ce", "ce", "fo", "ce" };

/* source topics by table */
enum { T_CE_HDR, T_CE_LINE, T_FO_HDR, T_FO_LINE, T_FO_INV, T_CE_ASSET, T_FO_ASSET, T_FO_PROD, T_CE_ACCT, T_FO_ACCT,
       T_N };
static const char *const t_table[T_N] = { "ce.msdyn_purchaseorder", "ce.msdyn_purchaseorderproduct",
					  "fo.purchaseorderheadersv2", "fo.purchaseorderlinesv2",
					  "fo.warehousesonhandv2", "ce.msdyn_customerasset",
					  "fo.assetmaintenanceassetsv3", "fo.cdsreleaseddistinctproducts",
					  "ce.account", "fo.customersv3" };

static char err[1024];
static char prefix[32];
static char topics[T_N][96];
static char dbname[64];
static char dsn[1024];
static char maps_dir[1024];      /* the worker's maps: a copy of schemas/maps (one test breaks it) */
static char good_maps[1024];     /* schemas/maps */
static pid_t workers[W_ALL];
static struct kafka_producer *producer;
static struct config_common kcfg;
static const char *ce_base, *fo_base;
static char *ce_token, *fo_token;
static unsigned run_id;
static char company_guid[40], cur_guid[40], unit_guid[40], vendor_guid[40], vendor_no[32];

/* ---- helpers ------------------------------------------------------------------------------- */

static long long staged_parts(const char *side, const char *txn_id)
{
	const char *p[] = { side, txn_id };
	return at_query_ll(dbname, "SELECT count(*) FROM dw_txn_part WHERE source_side = $1 AND txn_id = $2", 2, p);
}

static void copy_file(const char *from, const char *to, const char *find, const char *repl)
{
	FILE *in = fopen(from, "rb");
	assert_non_null(in);
	char *buf = calloc(1, 1 << 20);
	assert_non_null(buf);
	size_t n = fread(buf, 1, (1 << 20) - 1, in);
	fclose(in);
	buf[n] = '\0';
	FILE *out = fopen(to, "wb");
	assert_non_null(out);
	char *at = find ? strstr(buf, find) : NULL;
	if (find && !at)
		fail_msg("%s: '%s' not found", from, find);
	if (at) {
		fwrite(buf, 1, (size_t)(at - buf), out);
		fputs(repl, out);
		fputs(at + strlen(find), out);
	} else {
		fwrite(buf, 1, n, out);
	}
	fclose(out);
	free(buf);
}

/* Writes the worker maps: schemas/maps, with the purchase order lines' description sent to the
 * CE line's name (100 characters) instead of its description when `broken`. */
static const char *const map_names[] = { "accounts", "customer_assets", "products", "purchase_order_headers",
					 "purchase_order_lines", "product_inventory" };

static void write_maps(int broken)
{
	const char *const *names = map_names;
	for (size_t i = 0; i < sizeof(map_names) / sizeof(map_names[0]); i++) {
		char from[1200], to[1200];
		snprintf(from, sizeof(from), "%s/%s.json", good_maps, names[i]);
		snprintf(to, sizeof(to), "%s/%s.json", maps_dir, names[i]);
		int lines = strcmp(names[i], "purchase_order_lines") == 0;
		copy_file(from, to, broken && lines ? "\"ce\": \"msdyn_description\"" : NULL, "\"ce\": \"msdyn_name\"");
	}
}

static int metrics_port(int w)
{
	return (int)strtol(harness_env("DW_PORT_BASE"), NULL, 10) + 62 + w;
}

/* fork(); in the child, output goes to `out` (appended) and the suite's settings (database,
 * topic prefix, maps) are in the environment. Returns what fork() returns. */
static pid_t child_fork(const char *out)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		setenv("DW_PG_DSN", dsn, 1);
		setenv("DW_TOPIC_PREFIX", prefix, 1);
		setenv("DW_MAPS_DIR", maps_dir, 1);
	}
	return pid;
}

static void worker_start(int w)
{
	char log_path[1024];
	snprintf(log_path, sizeof(log_path), "%s/logs/apply-units-%s-to-%s.log", harness_env("DW_STATE_DIR"), w_map[w],
		 w_to[w]);
	pid_t pid = child_fork(log_path);
	if (pid == 0) {
		char port[16];
		snprintf(port, sizeof(port), "%d", metrics_port(w));
		setenv("DW_HTTP_PORT", port, 1);
		setenv("DW_HTTP_ADDR", "127.0.0.1", 1);
		setenv("DW_APPLY_STATE_CHECK_MS", "300", 1);
		setenv("DW_APPLY_BACKOFF_MIN_MS", "200", 1);
		setenv("DW_APPLY_BACKOFF_MAX_MS", "1000", 1);
		setenv("DW_KAFKA_SESSION_TIMEOUT_MS", "6000", 1);
		setenv("DW_APPLY_REDRIVE_MS", "300", 1);
		setenv("DW_APPLY_TXN_TIMEOUT", "5m", 1);
		execl(harness_bin("apply"), "apply", "--map", w_map[w], "--to", w_to[w], (char *)NULL);
		_exit(127);
	}
	workers[w] = pid;
}

static int worker_stop(int w)
{
	pid_t pid = workers[w];
	workers[w] = -1;
	return at_stop_child(pid);
}

static void flush_producer(void)
{
	at_flush(producer);
}

/* Waits until worker w's group has committed every partition of topic t up to its end. */
static void wait_caught_up(int w, int t)
{
	char group[128];
	snprintf(group, sizeof(group), "%s.apply.%s.%s", prefix, w_map[w], w_to[w]);
	at_wait_committed(kcfg.kafka_brokers, group, topics[t], PARTITIONS, WAIT_MS);
}

/* Produces an event onto topic t (see at_produce_event). */
static void produce(int t, const char *side, const char *entity, const char *set, const char *op, int64_t v,
		    const cJSON *key, const cJSON *data, const char *txn_id, int total, int order)
{
	at_produce_event(producer, topics[t], side, entity, set, op, v, key, data, txn_id, total, order);
}

/* A request with a bearer token; the JSON answer (annotations kept) or NULL on 404/204. Fails on
 * any other error status. */
static cJSON *call(const char *method, const char *url, const char *token, const char *body)
{
	char auth[8192];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	const char *h[] = { auth, "Accept: application/json", "Content-Type: application/json",
			    "Prefer: return=representation", NULL };
	struct emu_resp r;
	emu_http(method, url, h, body, &r);
	cJSON *j = NULL;
	if (r.status == 200 || r.status == 201)
		j = emu_json(&r);
	else if (r.status != 404 && r.status != 204)
		fail_msg("%s %s: HTTP %ld %.500s", method, url, (long)r.status, r.body ? r.body : "");
	emu_resp_free(&r);
	return j;
}

static cJSON *ce_call(const char *method, const char *path, const char *body)
{
	char url[2048];
	snprintf(url, sizeof(url), "%s/api/data/v9.2/%s", ce_base, path);
	return call(method, url, ce_token, body);
}

static cJSON *fo_call(const char *method, const char *path, const char *body)
{
	char url[2048];
	snprintf(url, sizeof(url), "%s/data/%s", fo_base, path);
	return call(method, url, fo_token, body);
}

/* Upserts a CE row; copies member `id` of the answer into out[40]. */
static void ce_upsert(const char *path, const char *body, const char *id, char out[40])
{
	cJSON *j = ce_call("PATCH", path, body);
	assert_non_null(j);
	const cJSON *v = cJSON_GetObjectItem(j, id);
	assert_true(cJSON_IsString(v));
	snprintf(out, 40, "%s", v->valuestring);
	cJSON_Delete(j);
}

/* Committed writes (create + update + delete) of one entity set on an emulator. */
static long writes_of(const char *base, const char *set)
{
	struct emu_resp r;
	emu_admin(base, "GET", "stats", NULL, &r);
	assert_int_equal(200, r.status);
	cJSON *j = emu_json(&r);
	const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "writes"), set);
	long n = 0;
	if (s)
		n = (long)(cJSON_GetObjectItem(s, "create")->valuedouble + cJSON_GetObjectItem(s, "update")->valuedouble +
			   cJSON_GetObjectItem(s, "delete")->valuedouble);
	cJSON_Delete(j);
	emu_resp_free(&r);
	return n;
}

static long po_writes_fo(void)
{
	return writes_of(fo_base, "PurchaseOrderHeadersV2") + writes_of(fo_base, "PurchaseOrderLinesV2");
}

static long po_writes_ce(void)
{
	return writes_of(ce_base, "msdyn_purchaseorders") + writes_of(ce_base, "msdyn_purchaseorderproducts");
}

static cJSON *fo_header(const char *po)
{
	char path[256];
	snprintf(path, sizeof(path), "PurchaseOrderHeadersV2(dataAreaId='usmf',PurchaseOrderNumber='%s')", po);
	return fo_call("GET", path, NULL);
}

static cJSON *fo_line(const char *po, int line)
{
	char path[256];
	snprintf(path, sizeof(path), "PurchaseOrderLinesV2(dataAreaId='usmf',PurchaseOrderNumber='%s',LineNumber=%d)", po,
		 line);
	return fo_call("GET", path, NULL);
}

static cJSON *ce_header(const char *po)
{
	char path[256];
	snprintf(path, sizeof(path), "msdyn_purchaseorders(msdyn_name='%s',msdyn_company=%s)", po, company_guid);
	return ce_call("GET", path, NULL);
}

/* The CE line `line` of the CE header with GUID hdr, or NULL. */
static cJSON *ce_line(const char *hdr, int line)
{
	char path[256];
	snprintf(path, sizeof(path), "msdyn_purchaseorderproducts(msdyn_purchaseorder=%s,msdyn_lineorder=%d)", hdr, line);
	return ce_call("GET", path, NULL);
}

static const char *str_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItem(o, name);
	return cJSON_IsString(v) ? v->valuestring : "(none)";
}

static double num_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItem(o, name);
	if (!cJSON_IsNumber(v))
		fail_msg("%s is not a number", name);
	return v->valuedouble;
}

/* A CE product (msdyn_productnumber = number) with its GUID in out. */
static void ce_product(const char *number, char out[40])
{
	char path[256], body[512];
	snprintf(path, sizeof(path), "products(msdyn_productnumber='%s')", number);
	snprintf(body, sizeof(body),
		 "{\"name\":\"Product %s\",\"productnumber\":\"%s\",\"defaultuomid@odata.bind\":\"/uoms(%s)\"}", number,
		 number, unit_guid);
	ce_upsert(path, body, "productid", out);
}

static char *dlq_header(const char *dlq, const char *key, const char *name)
{
	return at_dlq_header(&kcfg, dlq, key, name, WAIT_MS);
}

/* Runs `ctl dlq retry --map M --to S --all` with the workers' settings; returns its exit status. */
static int ctl_dlq_retry(const char *map, const char *to)
{
	pid_t pid = child_fork("/dev/null");
	if (pid == 0) {
		execl(harness_bin("ctl"), "ctl", "dlq", "retry", "--map", map, "--to", to, "--all", (char *)NULL);
		_exit(127);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A unique purchase order number (FO: at most 20 characters). */
static void po_no(char *out, size_t len, unsigned i)
{
	snprintf(out, len, "PO%u-%u-%u", run_id % 10000, (unsigned)(harness_now_ms() % 100000), i);
}

/* A new purchase order number (po, i) and product numbers po-P0.. for its n lines, the first
 * `in_ce` of them created as CE products (GUIDs in prod). */
static void new_order(char *po, size_t len, unsigned i, int n, int in_ce, char pnum[][48], char prod[][40])
{
	po_no(po, len, i);
	for (int k = 0; k < n; k++) {
		snprintf(pnum[k], 48, "%s-P%d", po, k);
		if (k < in_ce)
			ce_product(pnum[k], prod[k]);
	}
}

/* ---- setup --------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	run_id = (unsigned)getpid();
	for (int w = 0; w < W_ALL; w++)
		workers[w] = -1;
	snprintf(prefix, sizeof(prefix), "dwu%u", run_id);
	for (int t = 0; t < T_N; t++)
		snprintf(topics[t], sizeof(topics[t]), "%s.%s", prefix, t_table[t]);
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(good_maps, sizeof(good_maps), "%s/schemas/maps", cwd);
	snprintf(maps_dir, sizeof(maps_dir), "%s/maps-units-%u", harness_env("DW_STATE_DIR"), run_id);
	mkdir(maps_dir, 0755);
	write_maps(0);
	ce_base = harness_env("DW_CE_URL");
	fo_base = harness_env("DW_FO_URL");
	ce_token = emu_token("CE");
	fo_token = emu_token("FO");

	snprintf(dbname, sizeof(dbname), "dwt_units_%u_%lld", run_id, harness_now_ms());
	at_fresh_db(dbname, dsn, sizeof(dsn));

	/* reference data on CE, as a real installation has it (synced or seeded) */
	ce_upsert("cdm_companies(cdm_companycode='usmf')", "{\"cdm_name\":\"USMF\"}", "cdm_companyid", company_guid);
	ce_upsert("transactioncurrencies(isocurrencycode='" CUR "')",
		  "{\"currencyname\":\"Testing currency\",\"currencysymbol\":\"T\",\"exchangerate\":1}",
		  "transactioncurrencyid", cur_guid);
	ce_upsert("uoms(msdyn_symbol='" UNIT "')", "{\"name\":\"Test unit\"}", "uomid", unit_guid);
	snprintf(vendor_no, sizeof(vendor_no), "V%u", run_id % 1000000);
	char path[256], body[512];
	snprintf(path, sizeof(path), "accounts(accountnumber='%s',msdyn_company=%s)", vendor_no, company_guid);
	snprintf(body, sizeof(body), "{\"name\":\"Vendor %s\",\"customertypecode\":11}", vendor_no);
	ce_upsert(path, body, "accountid", vendor_guid);

	kcfg.kafka_brokers = (char *)harness_env("DW_KAFKA_BROKERS");
	kcfg.topic_prefix = prefix;
	struct kafka_admin *ad = NULL;
	if (kafka_admin_new(&kcfg, &ad, err, sizeof(err)) != 0)
		fail_msg("admin: %s", err);
	struct kafka_topic_spec spec = { PARTITIONS, 1, -1 };
	enum kafka_topic_outcome oc;
	for (int t = 0; t < T_N; t++)
		if (kafka_topic_ensure(ad, topics[t], &spec, 30000, &oc, err, sizeof(err)) != 0)
			fail_msg("topic: %s", err);
	kafka_admin_free(ad);
	if (kafka_producer_new(&kcfg, NULL, &producer, err, sizeof(err)) != 0)
		fail_msg("producer: %s", err);
	for (int w = 0; w < W_N; w++)
		worker_start(w);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	int bad = 0;
	for (int w = 0; w < W_ALL; w++)
		if (worker_stop(w) != 0)
			bad++;
	kafka_producer_close(producer, 10000);
	free(ce_token);
	free(fo_token);
	at_admin_db(dbname, "DROP DATABASE", " WITH (FORCE)");
	for (size_t i = 0; i < sizeof(map_names) / sizeof(map_names[0]); i++) {
		char f[1200];
		snprintf(f, sizeof(f), "%s/%s.json", maps_dir, map_names[i]);
		unlink(f);
	}
	rmdir(maps_dir);
	assert_int_equal(0, bad); /* SIGTERM: every worker exits cleanly */
	return 0;
}

/* ---- CE -> FO: a purchase order created in CE in one transaction --------------------------- */

/* Creates header po and `nlines` lines in CE (line i: product products[i], quantity i+1,
 * description desc or "Line i"), and produces their events as one unit: the lines first, the
 * header last. hdr_out receives the CE header's GUID. */
static void ce_po_unit(const char *po, int nlines, char products[][40], const char *desc, char hdr_out[40])
{
	char path[512], body[4096], txn[64];
	snprintf(txn, sizeof(txn), "ce-%s", po);
	snprintf(path, sizeof(path), "msdyn_purchaseorders(msdyn_name='%s',msdyn_company=%s)", po, company_guid);
	snprintf(body, sizeof(body),
		 "{\"msdyn_vendor@odata.bind\":\"/accounts(%s)\",\"transactioncurrencyid@odata.bind\":"
		 "\"/transactioncurrencies(%s)\",\"msdyn_ordererpersonnelnumber\":\"000123\","
		 "\"msdyn_dateexpected\":\"2026-12-24\"}",
		 vendor_guid, cur_guid);
	cJSON *hdr = ce_call("PATCH", path, body);
	assert_non_null(hdr);
	snprintf(hdr_out, 40, "%s", str_of(hdr, "msdyn_purchaseorderid"));
	for (int i = 0; i < nlines; i++) {
		snprintf(path, sizeof(path), "msdyn_purchaseorderproducts(msdyn_purchaseorder=%s,msdyn_lineorder=%d)",
			 hdr_out, i + 1);
		char d[1300];
		snprintf(d, sizeof(d), "%s", desc && i == 1 ? desc : "");
		if (!d[0])
			snprintf(d, sizeof(d), "Line %d", i + 1);
		snprintf(body, sizeof(body),
			 "{\"msdyn_product@odata.bind\":\"/products(%s)\",\"msdyn_unit@odata.bind\":\"/uoms(%s)\","
			 "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(%s)\","
			 "\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\",\"msdyn_quantity\":%d,"
			 "\"msdyn_description\":\"%s\"}",
			 products[i], unit_guid, cur_guid, company_guid, i + 1, d);
		cJSON *line = ce_call("PATCH", path, body);
		assert_non_null(line);
		cJSON *k = cJSON_CreateObject();
		cJSON_AddStringToObject(k, "_msdyn_purchaseorder_value", hdr_out);
		cJSON_AddNumberToObject(k, "msdyn_lineorder", i + 1);
		produce(T_CE_LINE, "ce", "msdyn_purchaseorderproduct", "msdyn_purchaseorderproducts", "create", 1, k, line,
			txn, nlines + 1, i + 2);
		cJSON_Delete(k);
		cJSON_Delete(line);
	}
	flush_producer();
	wait_caught_up(W_LINE_FO, T_CE_LINE);
	cJSON *k = cJSON_CreateObject();
	cJSON_AddStringToObject(k, "msdyn_name", po);
	cJSON_AddStringToObject(k, "_msdyn_company_value", company_guid);
	assert_int_equal(nlines, staged_parts("ce", txn));
	produce(T_CE_HDR, "ce", "msdyn_purchaseorder", "msdyn_purchaseorders", "create", 1, k, hdr, txn, nlines + 1, 1);
	cJSON_Delete(k);
	cJSON_Delete(hdr);
	flush_producer();
	wait_caught_up(W_HDR_FO, T_CE_HDR);
}

static void test_ce_purchase_order_arrives_in_fo_all_at_once(void **state)
{
	(void)state;
	char po[32], prod[3][40], pnum[3][48], hdr[40];
	new_order(po, sizeof(po), 1, 3, 3, pnum, prod);
	long w0 = po_writes_fo();
	/* the three lines arrive first (lines map): staged, nothing written; the header (headers
	 * map, another topic and worker) completes the unit: four creates in one changeset */
	ce_po_unit(po, 3, prod, NULL, hdr);
	assert_int_equal(w0 + 4, po_writes_fo());
	cJSON *h = fo_header(po);
	assert_non_null(h);
	assert_string_equal(vendor_no, str_of(h, "OrderVendorAccountNumber"));
	assert_string_equal(CUR, str_of(h, "CurrencyCode"));
	assert_string_equal("Purch", str_of(h, "PurchaseType"));
	assert_string_equal("2026-12-24T12:00:00Z", str_of(h, "RequestedDeliveryDate")); /* a date field */
	cJSON_Delete(h);
	for (int i = 0; i < 3; i++) {
		cJSON *l = fo_line(po, i + 1);
		assert_non_null(l);
		assert_string_equal(pnum[i], str_of(l, "ProductNumber"));
		assert_string_equal(UNIT, str_of(l, "PurchaseUnitSymbol"));
		assert_true(num_of(l, "OrderedPurchaseQuantity") == i + 1);
		cJSON_Delete(l);
	}
	char txn[64];
	snprintf(txn, sizeof(txn), "ce-%s", po);
	assert_int_equal(0, staged_parts("ce", txn));
	/* each part's outcome is recorded under its own map */
	assert_int_equal(1, at_query_ll(dbname, "SELECT count(*) FROM dw_record_state WHERE map_name = 'purchase_order_headers' "
				     "AND target_side = 'fo' AND record_key LIKE '%' || $1 || '%'",
				     1, (const char *const[]){ po }));
	assert_int_equal(3, at_query_ll(dbname, "SELECT count(*) FROM dw_record_state WHERE map_name = 'purchase_order_lines' "
				     "AND target_side = 'fo' AND record_key LIKE '%' || $1 || '%'",
				     1, (const char *const[]){ po }));
}

/*
 * A unit's writes are known field by field like single writes: FO's change event of the header a
 * CE order created (FO capture sends one for our own write, its image our values) is an echo and
 * writes nothing back to CE; a later FO change of one field of the header writes that field only.
 */
static void test_unit_write_known_field_by_field(void **state)
{
	(void)state;
	char po[32], prod[2][40], pnum[2][48], hdr[40];
	new_order(po, sizeof(po), 4, 2, 2, pnum, prod);
	ce_po_unit(po, 2, prod, NULL, hdr);
	cJSON *h = fo_header(po);
	assert_non_null(h);
	/* the image FO capture would send: the record without OData annotations */
	for (cJSON *x = h->child, *next; x; x = next) {
		next = x->next;
		if (strchr(x->string, '@'))
			cJSON_Delete(cJSON_DetachItemViaPointer(h, x));
	}
	cJSON *k = cJSON_CreateObject();
	cJSON_AddStringToObject(k, "dataAreaId", "usmf");
	cJSON_AddStringToObject(k, "PurchaseOrderNumber", po);
	long c0 = po_writes_ce();
	at_event_ts = at_wall_ms(); /* FO's events come after our write */
	produce(T_FO_HDR, "fo", "PurchaseOrderHeadersV2", "PurchaseOrderHeadersV2", "update", 2, k, h, NULL, 0, 0);
	flush_producer();
	wait_caught_up(W_HDR_CE, T_FO_HDR);
	assert_int_equal(c0, po_writes_ce());
	/* FO changes the delivery city: only that field goes to CE */
	cJSON_ReplaceItemInObjectCaseSensitive(h, "DeliveryAddressCity", cJSON_CreateString("Tacoma"));
	at_event_ts = at_wall_ms();
	produce(T_FO_HDR, "fo", "PurchaseOrderHeadersV2", "PurchaseOrderHeadersV2", "update", 3, k, h, NULL, 0, 0);
	at_event_ts = 0;
	flush_producer();
	wait_caught_up(W_HDR_CE, T_FO_HDR);
	assert_int_equal(c0 + 1, po_writes_ce());
	cJSON *c = ce_header(po);
	assert_non_null(c);
	assert_string_equal("Tacoma", str_of(c, "msdyn_city"));
	cJSON_Delete(c);
	cJSON_Delete(k);
	cJSON_Delete(h);
}

static void test_ce_purchase_order_with_invalid_line_is_dead_lettered_whole(void **state)
{
	(void)state;
	char po[32], prod[3][40], pnum[3][48], hdr[40], longdesc[1201];
	new_order(po, sizeof(po), 2, 3, 3, pnum, prod);
	memset(longdesc, 'd', 1200); /* CE takes 2000; F&O's LineDescription holds 1000 */
	longdesc[1200] = '\0';
	long w0 = po_writes_fo();
	ce_po_unit(po, 3, prod, longdesc, hdr);
	assert_int_equal(w0, po_writes_fo());
	cJSON *h = fo_header(po);
	assert_null(h);
	for (int i = 0; i < 3; i++) {
		cJSON *l = fo_line(po, i + 1);
		assert_null(l);
	}
	/* every part in its own map's dead-letter topic with the target's reason */
	char dlq[128], key[256];
	snprintf(dlq, sizeof(dlq), "%s.dlq.purchase_order_headers.fo", prefix);
	snprintf(key, sizeof(key), "_msdyn_company_value=%s,msdyn_name=%s", company_guid, po);
	char *reason = dlq_header(dlq, key, "dw.reason");
	assert_string_equal("txn_rejected", reason);
	free(reason);
	char *body = dlq_header(dlq, key, "dw.target.error.body");
	int names_field = strstr(body, "LineDescription") != NULL;
	free(body);
	assert_true(names_field);
	char *status = dlq_header(dlq, key, "dw.http.status");
	assert_string_equal("400", status);
	free(status);
	snprintf(dlq, sizeof(dlq), "%s.dlq.purchase_order_lines.fo", prefix);
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "_msdyn_purchaseorder_value=%s,msdyn_lineorder=%d", hdr, i + 1);
		reason = dlq_header(dlq, key, "dw.reason");
		assert_string_equal("txn_rejected", reason);
		free(reason);
	}
}

/* ---- FO -> CE ------------------------------------------------------------------------------ */

/* Produces an FO purchase order (header + lines, line i with product pnum[i]) as one unit: the
 * header first, then the lines. */
static void fo_po_unit(const char *po, int nlines, char pnum[][48], const char *desc)
{
	char txn[64];
	snprintf(txn, sizeof(txn), "fo-%s", po);
	cJSON *k = cJSON_CreateObject(), *d = cJSON_CreateObject();
	cJSON_AddStringToObject(k, "dataAreaId", "usmf");
	cJSON_AddStringToObject(k, "PurchaseOrderNumber", po);
	cJSON_AddStringToObject(d, "dataAreaId", "usmf");
	cJSON_AddStringToObject(d, "PurchaseOrderNumber", po);
	cJSON_AddStringToObject(d, "OrderVendorAccountNumber", vendor_no);
	cJSON_AddStringToObject(d, "CurrencyCode", CUR);
	cJSON_AddStringToObject(d, "PurchaseOrderStatus", "Backorder");
	cJSON_AddStringToObject(d, "DocumentApprovalStatus", "Approved");
	cJSON_AddStringToObject(d, "DeliveryAddressCity", "Redmond");
	produce(T_FO_HDR, "fo", "PurchaseOrderHeadersV2", "PurchaseOrderHeadersV2", "create", 1, k, d, txn, nlines + 1,
		1);
	cJSON_Delete(k);
	cJSON_Delete(d);
	for (int i = 0; i < nlines; i++) {
		k = cJSON_CreateObject();
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(k, "dataAreaId", "usmf");
		cJSON_AddStringToObject(k, "PurchaseOrderNumber", po);
		cJSON_AddNumberToObject(k, "LineNumber", i + 1);
		cJSON_AddStringToObject(d, "dataAreaId", "usmf");
		cJSON_AddStringToObject(d, "PurchaseOrderNumber", po);
		cJSON_AddNumberToObject(d, "LineNumber", i + 1);
		cJSON_AddStringToObject(d, "ProductNumber", pnum[i]);
		cJSON_AddNumberToObject(d, "OrderedPurchaseQuantity", 10 * (i + 1));
		cJSON_AddStringToObject(d, "PurchaseUnitSymbol", UNIT);
		cJSON_AddStringToObject(d, "CurrencyCode", CUR);
		cJSON_AddNumberToObject(d, "PurchasePrice", 2.5);
		cJSON_AddNumberToObject(d, "LineAmount", 25.0 * (i + 1));
		cJSON_AddStringToObject(d, "PurchaseOrderLineStatus", "Backorder");
		if (desc && i == 1)
			cJSON_AddStringToObject(d, "LineDescription", desc);
		else
			cJSON_AddStringToObject(d, "LineDescription", "An ordinary line");
		produce(T_FO_LINE, "fo", "PurchaseOrderLinesV2", "PurchaseOrderLinesV2", "create", 1, k, d, txn,
			nlines + 1, i + 2);
		cJSON_Delete(k);
		cJSON_Delete(d);
	}
	flush_producer();
	wait_caught_up(W_HDR_CE, T_FO_HDR);
	wait_caught_up(W_LINE_CE, T_FO_LINE);
}

/* Asserts the CE header po exists with its lines 1..nlines. */
static void assert_ce_order(const char *po, int nlines, char pnum[][48], char prod[][40])
{
	cJSON *h = ce_header(po);
	if (!h)
		fail_msg("CE header %s missing", po);
	assert_string_equal(vendor_guid, str_of(h, "_msdyn_vendor_value"));
	assert_true(num_of(h, "msdyn_purchaseorderstatus") == 192350001);
	assert_string_equal("Redmond", str_of(h, "msdyn_city"));
	char hid[40];
	snprintf(hid, sizeof(hid), "%s", str_of(h, "msdyn_purchaseorderid"));
	cJSON_Delete(h);
	for (int i = 0; i < nlines; i++) {
		cJSON *l = ce_line(hid, i + 1);
		if (!l)
			fail_msg("CE line %d of %s missing", i + 1, po);
		assert_string_equal(prod[i], str_of(l, "_msdyn_product_value"));
		assert_string_equal(company_guid, str_of(l, "_msdyn_company_value"));
		assert_true(num_of(l, "msdyn_quantity") == 10 * (i + 1));
		assert_true(num_of(l, "msdyn_unitcost") == 2.5);
		(void)pnum;
		cJSON_Delete(l);
	}
}

static void test_fo_purchase_order_arrives_in_ce_all_at_once(void **state)
{
	(void)state;
	char po[32], prod[3][40], pnum[3][48];
	new_order(po, sizeof(po), 3, 3, 3, pnum, prod);
	long w0 = po_writes_ce();
	fo_po_unit(po, 3, pnum, NULL);
	assert_int_equal(w0 + 4, po_writes_ce());
	assert_ce_order(po, 3, pnum, prod);
}

static void test_invalid_line_fix_and_dlq_retry_brings_the_whole_order(void **state)
{
	(void)state;
	char po[32], prod[3][40], pnum[3][48], desc[160];
	new_order(po, sizeof(po), 4, 3, 3, pnum, prod);
	memset(desc, 'x', 150);
	desc[150] = '\0';
	/* a mapping mistake: the line description goes to the CE line's name (100 characters) */
	worker_stop(W_HDR_CE);
	worker_stop(W_LINE_CE);
	write_maps(1);
	worker_start(W_HDR_CE);
	worker_start(W_LINE_CE);
	long w0 = po_writes_ce();
	fo_po_unit(po, 3, pnum, desc);
	assert_int_equal(w0, po_writes_ce());
	cJSON *h = ce_header(po);
	assert_null(h);
	char dlq[128], key[256];
	snprintf(dlq, sizeof(dlq), "%s.dlq.purchase_order_lines.ce", prefix);
	snprintf(key, sizeof(key), "LineNumber=2,PurchaseOrderNumber=%s,dataAreaId=usmf", po);
	char *reason = dlq_header(dlq, key, "dw.reason");
	assert_string_equal("txn_rejected", reason);
	free(reason);
	char *body = dlq_header(dlq, key, "dw.target.error.body");
	int says = strstr(body, "msdyn_name") != NULL;
	free(body);
	assert_true(says);
	snprintf(dlq, sizeof(dlq), "%s.dlq.purchase_order_headers.ce", prefix);
	snprintf(key, sizeof(key), "PurchaseOrderNumber=%s,dataAreaId=usmf", po);
	reason = dlq_header(dlq, key, "dw.reason");
	assert_string_equal("txn_rejected", reason);
	free(reason);
	/* the fix: the right map, the workers restarted; then every dead letter of both maps retried */
	worker_stop(W_HDR_CE);
	worker_stop(W_LINE_CE);
	write_maps(0);
	worker_start(W_HDR_CE);
	worker_start(W_LINE_CE);
	assert_int_equal(0, ctl_dlq_retry("purchase_order_lines", "ce"));
	assert_int_equal(0, ctl_dlq_retry("purchase_order_headers", "ce"));
	wait_caught_up(W_HDR_CE, T_FO_HDR);
	wait_caught_up(W_LINE_CE, T_FO_LINE);
	assert_int_equal(w0 + 4, po_writes_ce());
	assert_ce_order(po, 3, pnum, prod);
	cJSON *hh = ce_header(po);
	char hid[40];
	snprintf(hid, sizeof(hid), "%s", str_of(hh, "msdyn_purchaseorderid"));
	cJSON_Delete(hh);
	cJSON *l = ce_line(hid, 2);
	assert_string_equal(desc, str_of(l, "msdyn_description"));
	cJSON_Delete(l);
}

static void test_line_whose_product_is_missing_is_parked_then_redriven(void **state)
{
	(void)state;
	char po[32], prod[2][40], pnum[2][48];
	new_order(po, sizeof(po), 5, 2, 1, pnum, prod); /* the second product has not arrived in CE yet */
	long w0 = po_writes_ce();
	fo_po_unit(po, 2, pnum, NULL);
	assert_int_equal(w0, po_writes_ce());
	assert_true(at_query_ll(dbname, "SELECT count(*) FROM dw_parked_event WHERE map_name LIKE 'purchase_order_%' AND "
			     "event::text LIKE '%' || $1 || '%'",
			     1, (const char *const[]){ po }) >= 1);
	char txn[64];
	snprintf(txn, sizeof(txn), "fo-%s", po);
	assert_int_equal(3, staged_parts("fo", txn));
	/* the product arrives: the re-drive applies the whole order */
	ce_product(pnum[1], prod[1]);
	long long deadline = harness_now_ms() + WAIT_MS;
	while (po_writes_ce() < w0 + 3 && harness_now_ms() < deadline)
		usleep(200000);
	assert_int_equal(w0 + 3, po_writes_ce());
	assert_ce_order(po, 2, pnum, prod);
	assert_int_equal(0, staged_parts("fo", txn));
	deadline = harness_now_ms() + WAIT_MS;
	while (at_query_ll(dbname, "SELECT count(*) FROM dw_parked_event WHERE event::text LIKE '%' || $1 || '%'", 1,
			(const char *const[]){ po }) > 0 &&
	       harness_now_ms() < deadline)
		usleep(200000);
	assert_int_equal(0, at_query_ll(dbname, "SELECT count(*) FROM dw_parked_event WHERE event::text LIKE '%' || $1 || '%'",
				     1, (const char *const[]){ po }));
}

/* ---- product inventory: F&O on-hand rows summed per company, item and warehouse ------------- */

static const char *const dims[] = { "ProductColorId", "ProductConfigurationId", "ProductSizeId", "ProductStyleId",
				     "ProductVersionId" };

/* The key of on-hand row (item, warehouse, colour) in site S1 of usmf, as a new object. */
static cJSON *onhand_key(const char *item, const char *wh, const char *color)
{
	cJSON *k = cJSON_CreateObject();
	cJSON_AddStringToObject(k, "dataAreaId", "usmf");
	cJSON_AddStringToObject(k, "ItemNumber", item);
	for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++)
		cJSON_AddStringToObject(k, dims[i], i == 0 ? color : "");
	cJSON_AddStringToObject(k, "InventorySiteId", "S1");
	cJSON_AddStringToObject(k, "InventoryWarehouseId", wh);
	return k;
}

static void onhand_path(const cJSON *k, char *out, size_t len)
{
	snprintf(out, len,
		 "WarehousesOnHandV2(dataAreaId='usmf',ItemNumber='%s',ProductColorId='%s',ProductConfigurationId='',"
		 "ProductSizeId='',ProductStyleId='',ProductVersionId='',InventorySiteId='S1',InventoryWarehouseId='%s')",
		 str_of(k, "ItemNumber"), str_of(k, "ProductColorId"), str_of(k, "InventoryWarehouseId"));
}

/* Creates or updates the FO on-hand row with `onhand` (available = onhand - 1, reserved 1). */
static void fo_onhand_set(const char *item, const char *wh, const char *color, double onhand)
{
	cJSON *k = onhand_key(item, wh, color);
	char path[1024];
	onhand_path(k, path, sizeof(path));
	cJSON *have = fo_call("GET", path, NULL);
	cJSON *b = have ? cJSON_CreateObject() : cJSON_Duplicate(k, 1);
	cJSON_AddNumberToObject(b, "OnHandQuantity", onhand);
	cJSON_AddNumberToObject(b, "AvailableOnHandQuantity", onhand - 1);
	cJSON_AddNumberToObject(b, "ReservedOnHandQuantity", 1);
	cJSON_AddNumberToObject(b, "OnOrderQuantity", 2);
	char *body = cJSON_PrintUnformatted(b);
	cJSON *r = have ? fo_call("PATCH", path, body) : fo_call("POST", "WarehousesOnHandV2", body);
	cJSON_Delete(r);
	cJSON_Delete(have);
	free(body);
	cJSON_Delete(b);
	cJSON_Delete(k);
}

/* Produces an event of the on-hand row: its current FO image (op create/update), or a delete. */
static void onhand_event(const char *item, const char *wh, const char *color, const char *op, int64_t v,
			 double stale_onhand)
{
	cJSON *k = onhand_key(item, wh, color);
	cJSON *d = NULL;
	if (strcmp(op, "delete") != 0) {
		/* the event's own image may be stale (older than FO now): the worker re-reads the group */
		d = cJSON_Duplicate(k, 1);
		cJSON_AddNumberToObject(d, "OnHandQuantity", stale_onhand);
		cJSON_AddNumberToObject(d, "AvailableOnHandQuantity", stale_onhand);
		cJSON_AddNumberToObject(d, "ReservedOnHandQuantity", 0);
		cJSON_AddNumberToObject(d, "OnOrderQuantity", 0);
	}
	produce(T_FO_INV, "fo", "WarehousesOnHandV2", "WarehousesOnHandV2", op, v, k, d, NULL, 0, 0);
	cJSON_Delete(k);
	cJSON_Delete(d);
}

static cJSON *ce_inventory(const char *prod, const char *wh)
{
	char path[256];
	snprintf(path, sizeof(path), "msdyn_productinventories(msdyn_product=%s,msdyn_warehouse=%s)", prod, wh);
	return ce_call("GET", path, NULL);
}

static void test_inventory_sums_rows_per_item_and_warehouse_in_any_order(void **state)
{
	(void)state;
	char item[32], prod[40], w1[40], w2[40], w1id[16], w2id[16], path[256], body[512];
	snprintf(item, sizeof(item), "I%u-%u", run_id % 10000, (unsigned)(harness_now_ms() % 100000));
	snprintf(w1id, sizeof(w1id), "W%u", run_id % 1000);
	snprintf(w2id, sizeof(w2id), "X%u", run_id % 1000);
	ce_product(item, prod);
	snprintf(path, sizeof(path), "msdyn_warehouses(msdyn_warehouseidentifier='%s',msdyn_company=%s)", w1id,
		 company_guid);
	ce_upsert(path, "{\"msdyn_name\":\"Main\"}", "msdyn_warehouseid", w1);
	snprintf(path, sizeof(path), "msdyn_warehouses(msdyn_warehouseidentifier='%s',msdyn_company=%s)", w2id,
		 company_guid);
	ce_upsert(path, "{\"msdyn_name\":\"Spare\"}", "msdyn_warehouseid", w2);
	snprintf(body, sizeof(body),
		 "{\"dataAreaId\":\"usmf\",\"ProductNumber\":\"%s\",\"ItemNumber\":\"%s\",\"ProductName\":\"Item\","
		 "\"InventoryUnitSymbol\":\"" UNIT "\"}",
		 item, item);
	cJSON *r = fo_call("POST", "CDSReleasedDistinctProducts", body);
	cJSON_Delete(r);
	/* two colours of the item in warehouse 1, one row in warehouse 2 */
	fo_onhand_set(item, w1id, "Red", 5);
	fo_onhand_set(item, w1id, "Blue", 7);
	fo_onhand_set(item, w2id, "Red", 100);
	long w0 = writes_of(ce_base, "msdyn_productinventories");
	/* events in an order unlike the changes, with stale images, one delivered twice */
	onhand_event(item, w1id, "Blue", "create", 1, 1);
	onhand_event(item, w1id, "Red", "create", 1, 3);
	onhand_event(item, w1id, "Red", "create", 1, 3);
	onhand_event(item, w2id, "Red", "create", 1, 0);
	flush_producer();
	wait_caught_up(W_INV_CE, T_FO_INV);
	cJSON *inv = ce_inventory(prod, w1);
	if (!inv)
		fail_msg("no CE inventory row for warehouse 1");
	assert_true(num_of(inv, "msdyn_qtyonhand") == 12);
	assert_true(num_of(inv, "msdyn_qtyavailable") == 10);
	assert_true(num_of(inv, "msdyn_qtyallocated") == 2);
	assert_true(num_of(inv, "msdyn_qtyonorder") == 4);
	assert_string_equal(unit_guid, str_of(inv, "_msdyn_unit_value"));
	cJSON_Delete(inv);
	inv = ce_inventory(prod, w2);
	assert_non_null(inv);
	assert_true(num_of(inv, "msdyn_qtyonhand") == 100);
	cJSON_Delete(inv);
	/* one write per group: the second event of warehouse 1 re-read the same sums (no-op) */
	long w1n = writes_of(ce_base, "msdyn_productinventories");
	assert_int_equal(w0 + 2, w1n);
	/* red moves to 8 in F&O; the newest event arrives first, the older ones after it */
	fo_onhand_set(item, w1id, "Red", 6);
	fo_onhand_set(item, w1id, "Red", 8);
	onhand_event(item, w1id, "Red", "update", 3, 8);
	onhand_event(item, w1id, "Red", "update", 2, 6);
	flush_producer();
	wait_caught_up(W_INV_CE, T_FO_INV);
	inv = ce_inventory(prod, w1);
	assert_true(num_of(inv, "msdyn_qtyonhand") == 15);
	cJSON_Delete(inv);
	long w2n = writes_of(ce_base, "msdyn_productinventories");
	assert_int_equal(w1n + 1, w2n); /* the older event re-read 15 too: no second write */
	/* blue is gone from F&O: the group is written with what remains */
	char bp[1024];
	cJSON *bk = onhand_key(item, w1id, "Blue");
	onhand_path(bk, bp, sizeof(bp));
	cJSON_Delete(bk);
	r = fo_call("DELETE", bp, NULL);
	cJSON_Delete(r);
	onhand_event(item, w1id, "Blue", "delete", 2, 0);
	flush_producer();
	wait_caught_up(W_INV_CE, T_FO_INV);
	inv = ce_inventory(prod, w1);
	assert_true(num_of(inv, "msdyn_qtyonhand") == 8);
	assert_true(num_of(inv, "msdyn_qtyavailable") == 7);
	cJSON_Delete(inv);
}

/* GET /healthz of worker w: the HTTP status, 0 when nothing answers. */
static long worker_health(int w)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", metrics_port(w));
	CURL *c = curl_easy_init();
	assert_non_null(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
	long st = 0;
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	curl_easy_cleanup(c);
	return st;
}

static void test_every_map_and_direction_starts_in_apply(void **state)
{
	(void)state;
	/* the suite's own workers run already; the other maps' workers start, serve, and stop cleanly */
	for (int w = W_N; w < W_ALL; w++)
		worker_start(w);
	for (int w = 0; w < W_ALL; w++) {
		long long deadline = harness_now_ms() + 30000;
		long st = 0;
		while ((st = worker_health(w)) != 200 && harness_now_ms() < deadline) {
			int status;
			if (workers[w] > 0 && waitpid(workers[w], &status, WNOHANG) == workers[w]) {
				workers[w] = -1;
				fail_msg("apply --map %s --to %s exited at start-up (see its log)", w_map[w], w_to[w]);
			}
			usleep(100000);
		}
		if (st != 200)
			fail_msg("apply --map %s --to %s: /healthz %ld", w_map[w], w_to[w], st);
	}
	for (int w = W_N; w < W_ALL; w++)
		assert_int_equal(0, worker_stop(w));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_map_and_direction_starts_in_apply),
		cmocka_unit_test(test_ce_purchase_order_arrives_in_fo_all_at_once),
		cmocka_unit_test(test_unit_write_known_field_by_field),
		cmocka_unit_test(test_ce_purchase_order_with_invalid_line_is_dead_lettered_whole),
		cmocka_unit_test(test_fo_purchase_order_arrives_in_ce_all_at_once),
		cmocka_unit_test(test_invalid_line_fix_and_dlq_retry_brings_the_whole_order),
		cmocka_unit_test(test_line_whose_product_is_missing_is_parked_then_redriven),
		cmocka_unit_test(test_inventory_sums_rows_per_item_and_warehouse_in_any_order),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
