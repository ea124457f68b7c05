/*
 * `ctl initial-sync`: pages through a whole source entity set and publishes one snapshot event per
 * row into the table's topic, checkpointing the next page link in PostgreSQL after each page's
 * events are confirmed by Kafka, so that a killed run resumes where it stopped.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "capture_ce.h"
#include "capture_fo.h"
#include "capture_records.h"
#include "config.h"
#include "ctl.h"
#include "event.h"
#include "http.h"
#include "log.h"
#include "map.h"
#include "oauth.h"
#include "publish.h"
#include "store.h"

#define SYNC_CE_PAGE_MAX 5000   /* Dataverse: default and maximum odata.maxpagesize */
#define SYNC_FO_PAGE_MAX 10000  /* F&O: server-driven paging, 10,000 rows per page */
#define SYNC_BODY_MAX ((size_t)256 * 1024 * 1024) /* one page of wide rows stays far below this */
#define SYNC_HTTP_TIMEOUT_MS 300000L /* a 10,000-row page can take a while on a busy service */
#define SYNC_FETCH_ATTEMPTS 8        /* per page, for 429/5xx/transport failures */
#define SYNC_PUBLISH_ATTEMPTS 6      /* per page, for a Kafka transaction that did not commit */
#define SYNC_BACKOFF_MAX_MS 30000L
#define SYNC_PROGRESS_LOG_MS 5000LL
#define SYNC_URL_MAX 8192
#define SYNC_POSITION_MAX (SYNC_URL_MAX + 512)

static const char usage[] =
	"usage: ctl initial-sync --from ce|fo TABLE [--page-size N] [--restart]\n"
	"       ctl initial-sync --all [--page-size N] [--restart]\n"
	"\n"
	"Publishes every row of one source table as a snapshot event (op \"snapshot\") into the table's\n"
	"topic, <DW_TOPIC_PREFIX>.<side>.<entity>, the same topic capture writes to, so one apply path\n"
	"serves both. It pages through the whole entity set with the largest page the service allows\n"
	"(Dataverse: Prefer odata.maxpagesize=5000; F&O: 10,000 rows per page, cross-company=true so\n"
	"every legal entity is read) following @odata.nextLink. Each page goes out as one Kafka\n"
	"transaction; only once it committed is the next page link saved in PostgreSQL, so a run that\n"
	"is killed continues where it stopped when started again (the last unconfirmed page may be\n"
	"published twice, with the same event ids). A table that was synced completely is not synced\n"
	"again unless --restart is given.\n"
	"\n"
	"TABLE is an entry written as in DW_CAPTURE_TABLES (docs/capture.md), e.g.\n"
	"account@accounts:accountnumber+_msdyn_company_value (ce) or\n"
	"CustomersV3@mserp_custcustomerv3entity:dataAreaId+CustomerAccount (fo), or just its first part\n"
	"(account, CustomersV3) when DW_CAPTURE_TABLES holds the entry.\n"
	"\n"
	"Event versions and keys are built as capture builds them (docs/capture.md), so a snapshot of a\n"
	"row carries the same event id as capture's event for the same change of that row.\n"
	"\n"
	"options:\n"
	"  --from ce|fo     the source side (required with TABLE)\n"
	"  --all            every map of DW_MAPS_DIR (default schemas/maps) in dependency order (maps\n"
	"                   declare \"dependencies\"; a cycle is refused, naming the maps), each from its\n"
	"                   initial_sync_master side; the table is the DW_CAPTURE_TABLES entry of the\n"
	"                   master side's entity (CE logical name, FO entity set). A table two maps share\n"
	"                   is synced once. Rows the other side already holds with the same content are\n"
	"                   not rewritten: apply skips a write whose mapped content it recorded there\n"
	"                   (docs/initial-sync.md)\n"
	"  --page-size N    rows per page asked for (default and maximum: 5000 on ce, 10000 on fo)\n"
	"  --restart        forget the saved position and start from the first page\n"
	"  -h, --help       this text\n"
	"\n"
	"progress: on a terminal a bar with rows, rows/s and ETA (when the service gives a $count);\n"
	"otherwise a JSON log line every 5 s. The run ends with a summary line on stdout.\n"
	"\n"
	"settings: DW_KAFKA_BROKERS, DW_PG_DSN, DW_TOPIC_PREFIX, DW_KAFKA_*; DW_<SIDE>_URL,\n"
	"DW_<SIDE>_TOKEN_URL, DW_<SIDE>_CLIENT_ID, DW_<SIDE>_CLIENT_SECRET[_FILE], DW_<SIDE>_SCOPE;\n"
	"DW_<SIDE>_OWN_USER_ID (optional); DW_ENV (environment name, default \"default\"); DW_CAPTURE_TABLES;\n"
	"DW_MAPS_DIR (--all)\n"
	"exit status: 0 done (or already complete), 1 failed or interrupted (re-run to resume),\n"
	"2 usage error\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_requested)
		_exit(130);
	stop_requested = 1;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps up to ms, waking early when a stop was requested. */
static void nap(long ms)
{
	while (ms > 0 && !stop_requested) {
		long step = ms > 100 ? 100 : ms;
		struct timespec ts = { 0, step * 1000000L };
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

/* ---- tables ----------------------------------------------------------------------------- */

#define SYNC_SPEC_MAX 2048

/* One table, as an entry of DW_CAPTURE_TABLES describes it (parsed by capture's own parsers). */
struct sync_table {
	enum event_side side;
	const char *side_name;
	char spec[SYNC_SPEC_MAX];   /* the entry as given */
	const char *entity;         /* source.entity (borrowed from ce/fo) */
	const char *entity_set;
	struct capture_ce_table ce; /* side ce */
	struct capture_fo_table fo; /* side fo */
};

static void table_clear(struct sync_table *t)
{
	capture_ce_table_clear(&t->ce);
	capture_fo_table_clear(&t->fo);
	memset(t, 0, sizeof(*t));
}

static int table_parse(enum event_side side, const char *text, struct sync_table *t, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	t->side = side;
	t->side_name = event_side_name(side);
	if (strlen(text) >= sizeof(t->spec)) {
		snprintf(err, errlen, "table entry is longer than %zu bytes", sizeof(t->spec) - 1);
		return -1;
	}
	snprintf(t->spec, sizeof(t->spec), "%s", text);
	if (side == EVENT_SIDE_CE) {
		if (capture_ce_table_parse(text, &t->ce, err, errlen) != 0)
			return -1;
		t->entity = t->ce.logical;
		t->entity_set = t->ce.set;
	} else {
		if (capture_fo_table_parse(text, &t->fo, err, errlen) != 0)
			return -1;
		t->entity = t->entity_set = t->fo.set;
	}
	return 0;
}

/* TABLE is a whole entry, or the first part of one in DW_CAPTURE_TABLES. */
static int table_resolve(enum event_side side, const char *arg, struct sync_table *t, char *err, size_t errlen)
{
	if (strchr(arg, '@'))
		return table_parse(side, arg, t, err, errlen);
	char *list = NULL;
	int rc = -1;
	if (config_str("DW_CAPTURE_TABLES", NULL, &list, err, errlen) != 0)
		return -1;
	size_t alen = strlen(arg);
	for (char *p = list; p && *p;) {
		size_t n = strcspn(p, ", \t\n");
		if (n > alen && p[alen] == '@' && strncmp(p, arg, alen) == 0) {
			char entry[SYNC_SPEC_MAX];
			snprintf(entry, sizeof(entry), "%.*s", (int)(n < sizeof(entry) ? n : sizeof(entry) - 1), p);
			rc = table_parse(side, entry, t, err, errlen);
			goto out;
		}
		p += n;
		p += strspn(p, ", \t\n");
	}
	snprintf(err, errlen, "table '%.200s' is not in DW_CAPTURE_TABLES; give the whole entry (see --help)", arg);
out:
	free(list);
	return rc;
}

/* ---- the run ----------------------------------------------------------------------------- */

struct sync {
	const struct config_common *cfg;
	struct sync_table table;
	char side_upper[3];
	char *base_url;   /* DW_<SIDE>_URL */
	char *root;       /* service root ending in '/' */
	char *env;        /* DW_ENV */
	char *own_user;   /* DW_<SIDE>_OWN_USER_ID, may be NULL */
	long page_size;
	struct http_client *http;
	struct oauth *oauth;
	PGconn *pg;
	struct publish *pub;
	/* position */
	long long rows_before; /* rows confirmed by earlier runs (from the checkpoint) */
	long long pages_before;
	long long rows;        /* rows confirmed in this run */
	long long pages;
	long long total;       /* rows in the entity set, -1 when unknown */
	long long stale;       /* FO rows left out: capture already published a newer image */
	long long started_ms;
	long long last_log_ms;
	int tty;
};

/* A fetched page, handed from the fetch thread to the publishing loop. */
struct page {
	char url[SYNC_URL_MAX];
	int rc;                 /* 0 or -1 with err */
	char err[1024];
	cJSON *doc;             /* the parsed body */
	char next[SYNC_URL_MAX]; /* @odata.nextLink, "" on the last page */
	long long number;        /* page number in the whole sync, for messages */
	struct sync *s;
};

/* Fetches one URL with the bearer token, retrying 401 once (new token) and 408/429/5xx and
 * transport failures with backoff (Retry-After honoured). On success *resp holds a 200. */
static int get_with_retry(struct sync *s, const char *url, int prefer_page, struct http_response *resp,
			  char *err, size_t errlen)
{
	int rc = -1;
	char *token = NULL;
	long backoff = 1000;
	int refreshed = 0;
	char prefer[64];
	snprintf(prefer, sizeof(prefer), "odata.maxpagesize=%ld", s->page_size);
	for (int attempt = 1; attempt <= SYNC_FETCH_ATTEMPTS && !stop_requested; attempt++) {
		free(token);
		token = NULL;
		char e[1024];
		int orc = oauth_token(s->oauth, &token, e, sizeof(e));
		if (orc != 0) {
			snprintf(err, errlen, "token: %.900s", e);
			if (orc != OAUTH_ERR_RETRY)
				goto out;
			nap(backoff);
			backoff = backoff * 2 > SYNC_BACKOFF_MAX_MS ? SYNC_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		char auth[OAUTH_TOKEN_MAX + 16];
		snprintf(auth, sizeof(auth), "Bearer %s", token);
		struct http_header h[] = {
			{ "Authorization", auth },
			{ "Accept", "application/json" },
			{ "OData-MaxVersion", "4.0" },
			{ "OData-Version", "4.0" },
			{ "Prefer", prefer },
		};
		struct http_request req = {
			.method = "GET",
			.url = url,
			.headers = h,
			.nheaders = prefer_page ? 5 : 4,
		};
		int hrc = http_do(s->http, &req, resp, e, sizeof(e));
		if (hrc != 0) {
			snprintf(err, errlen, "%s", e);
			if (hrc == HTTP_ERR || hrc == HTTP_ERR_TOO_LARGE)
				goto out;
			char at[16];
			snprintf(at, sizeof(at), "%d", attempt);
			log_warn("initial sync: request failed, retrying", "reason", e, "attempt", at);
			nap(backoff);
			backoff = backoff * 2 > SYNC_BACKOFF_MAX_MS ? SYNC_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		if (resp->status == 200) {
			rc = 0;
			goto out;
		}
		char red[512];
		snprintf(err, errlen, "GET %s: HTTP %ld: %.300s", http_url_redact(url, red, sizeof(red)), resp->status,
			 resp->body);
		if (resp->status == 401 && !refreshed) {
			refreshed = 1;
			oauth_invalidate(s->oauth, token);
			http_response_free(resp);
			attempt--;
			continue;
		}
		if (!http_status_retryable(resp->status))
			goto out;
		long wait = http_retry_after_ms(resp, backoff);
		log_warn("initial sync: service busy, retrying", "reason", err);
		http_response_free(resp);
		nap(wait);
		backoff = backoff * 2 > SYNC_BACKOFF_MAX_MS ? SYNC_BACKOFF_MAX_MS : backoff * 2;
	}
	if (stop_requested && rc != 0)
		snprintf(err, errlen, "interrupted");
out:
	if (rc != 0)
		http_response_free(resp);
	free(token);
	return rc;
}

/* Fetch-thread body: GET page->url and parse it. */
static void *fetch_page(void *arg)
{
	struct page *pg = arg;
	struct sync *s = pg->s;
	struct http_response resp = { 0 };
	pg->rc = -1;
	pg->doc = NULL;
	pg->next[0] = '\0';
	if (get_with_retry(s, pg->url, 1, &resp, pg->err, sizeof(pg->err)) != 0)
		return NULL;
	pg->doc = cJSON_ParseWithLength(resp.body, resp.body_len);
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(pg->doc, "value");
	if (!pg->doc || !cJSON_IsArray(value)) {
		snprintf(pg->err, sizeof(pg->err), "page %lld: the response is not an OData collection (%zu bytes)",
			 pg->number, resp.body_len);
		goto out;
	}
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(pg->doc, "@odata.nextLink");
	if (next) {
		if (!cJSON_IsString(next) || strlen(next->valuestring) >= sizeof(pg->next)) {
			snprintf(pg->err, sizeof(pg->err), "page %lld: @odata.nextLink is not a usable link",
				 pg->number);
			goto out;
		}
		/* The bearer token goes only to the configured service. */
		if (strncmp(next->valuestring, s->root, strlen(s->root)) != 0) {
			snprintf(pg->err, sizeof(pg->err),
				 "page %lld: @odata.nextLink points outside the service root %s; refusing to follow it",
				 pg->number, s->root);
			goto out;
		}
		snprintf(pg->next, sizeof(pg->next), "%s", next->valuestring);
	}
	pg->rc = 0;
out:
	if (pg->rc != 0) {
		cJSON_Delete(pg->doc);
		pg->doc = NULL;
	}
	http_response_free(&resp);
	return NULL;
}

/* ---- checkpoint -------------------------------------------------------------------------- */

/* The saved position: {"next":"<url>","rows":N,"pages":N} while running, {"done":true,...} after. */
struct position {
	int found;
	int done;
	char next[SYNC_URL_MAX];
	long long rows, pages;
};

static int checkpoint_load(struct sync *s, struct position *pos, char *err, size_t errlen)
{
	char *text = NULL;
	int rc = -1;
	memset(pos, 0, sizeof(*pos));
	cJSON *j = NULL;
	char e[1024];
	if (capture_records_checkpoint_load(s->pg, s->table.side_name, s->env, s->table.entity, "initial_sync", &text,
					    e, sizeof(e)) != 0) {
		snprintf(err, errlen, "reading the checkpoint: %s", e);
		goto out;
	}
	if (!text) {
		rc = 0;
		goto out;
	}
	j = cJSON_ParseWithLength(text, strlen(text));
	const cJSON *done = cJSON_GetObjectItemCaseSensitive(j, "done");
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "next");
	const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "rows");
	const cJSON *pages = cJSON_GetObjectItemCaseSensitive(j, "pages");
	if (!cJSON_IsNumber(rows) || !cJSON_IsNumber(pages) ||
	    !(cJSON_IsTrue(done) || (cJSON_IsString(next) && strlen(next->valuestring) < sizeof(pos->next)))) {
		snprintf(err, errlen, "the saved initial-sync position for %s.%s is not readable; use --restart",
			 s->table.side_name, s->table.entity);
		goto out;
	}
	pos->found = 1;
	pos->done = cJSON_IsTrue(done);
	if (!pos->done)
		snprintf(pos->next, sizeof(pos->next), "%s", next->valuestring);
	pos->rows = (long long)rows->valuedouble;
	pos->pages = (long long)pages->valuedouble;
	if (!pos->done && strncmp(pos->next, s->root, strlen(s->root)) != 0) {
		snprintf(err, errlen,
			 "the saved position of %s.%s is a link outside the service root %s (was DW_%s_URL "
			 "changed?); use --restart",
			 s->table.side_name, s->table.entity, s->root, s->side_upper);
		goto out;
	}
	rc = 0;
out:
	cJSON_Delete(j);
	free(text);
	return rc;
}

static int checkpoint_save(struct sync *s, const char *next, char *err, size_t errlen)
{
	int rc = -1;
	char *text = NULL;
	cJSON *j = cJSON_CreateObject();
	if (!j)
		goto oom;
	if (next) {
		if (!cJSON_AddStringToObject(j, "next", next))
			goto oom;
	} else if (!cJSON_AddTrueToObject(j, "done")) {
		goto oom;
	}
	if (!cJSON_AddNumberToObject(j, "rows", (double)(s->rows_before + s->rows)) ||
	    !cJSON_AddNumberToObject(j, "pages", (double)(s->pages_before + s->pages)))
		goto oom;
	text = cJSON_PrintUnformatted(j);
	if (!text)
		goto oom;
	char e[1024];
	if (capture_records_checkpoint_save(s->pg, s->table.side_name, s->env, s->table.entity, "initial_sync", text, e,
					    sizeof(e)) != 0) {
		snprintf(err, errlen, "saving the checkpoint: %.900s", e);
		goto out;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	free(text);
	cJSON_Delete(j);
	return rc;
}

/* ---- progress ---------------------------------------------------------------------------- */

static void fmt_duration(long long s, char *out, size_t len)
{
	if (s >= 3600)
		snprintf(out, len, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(out, len, "%lld:%02lld", s / 60, s % 60);
}

static void progress(struct sync *s, int final)
{
	long long t = now_ms();
	double secs = (double)(t - s->started_ms) / 1000.0;
	double rate = secs > 0 ? (double)s->rows / secs : 0;
	long long done = s->rows_before + s->rows;
	long long eta = -1;
	if (s->total > 0 && rate > 0)
		eta = done >= s->total ? 0 : (long long)((double)(s->total - done) / rate + 0.5);
	if (s->tty) {
		char bar[33];
		int width = 30;
		int fill = s->total > 0 ? (int)(done * width / (s->total > done ? s->total : done)) : 0;
		for (int i = 0; i < width; i++)
			bar[i] = s->total > 0 ? (i < fill ? '#' : '-') : (i == (int)(s->pages % width) ? '#' : '-');
		bar[width] = '\0';
		char etas[32] = "--:--";
		if (eta >= 0)
			fmt_duration(eta, etas, sizeof(etas));
		char tot[32] = "?";
		if (s->total > 0)
			snprintf(tot, sizeof(tot), "%lld", s->total);
		fprintf(stderr, "\r%s.%s [%s] %lld/%s rows  %.0f rows/s  ETA %s   ", s->table.side_name,
			s->table.entity, bar, done, tot, rate, etas);
		if (final)
			fputc('\n', stderr);
		fflush(stderr);
		return;
	}
	if (!final && t - s->last_log_ms < SYNC_PROGRESS_LOG_MS)
		return;
	s->last_log_ms = t;
	char rows[32], pages[32], rps[32], tot[32], etas[32];
	snprintf(rows, sizeof(rows), "%lld", done);
	snprintf(pages, sizeof(pages), "%lld", s->pages_before + s->pages);
	snprintf(rps, sizeof(rps), "%.0f", rate);
	snprintf(tot, sizeof(tot), "%lld", s->total);
	snprintf(etas, sizeof(etas), "%lld", eta);
	log_info("initial sync progress", "table", s->table.spec, "rows", rows, "pages", pages, "rows_per_s", rps,
		 "total", s->total > 0 ? tot : NULL, "eta_s", eta >= 0 ? etas : NULL);
}

/* Rows in the entity set from <set>/$count, or -1 when the service does not say. Dataverse caps
 * $count at 5000, so that answer means "at least 5000" and is not used. */
static long long count_rows(struct sync *s)
{
	char url[SYNC_URL_MAX];
	snprintf(url, sizeof(url), "%s%s/$count%s", s->root, s->table.entity_set,
		 s->table.side == EVENT_SIDE_FO ? "?cross-company=true" : "");
	struct http_response resp = { 0 };
	char err[1024];
	long long n = -1;
	if (get_with_retry(s, url, 0, &resp, err, sizeof(err)) != 0) {
		log_debug("initial sync: no row count", "reason", err);
		return -1;
	}
	char *end = NULL;
	errno = 0;
	long long v = strtoll(resp.body, &end, 10);
	if (!errno && end != resp.body && (*end == '\0' || *end == '\n' || *end == '\r') && v >= 0 &&
	    !(s->table.side == EVENT_SIDE_CE && v == SYNC_CE_PAGE_MAX))
		n = v;
	http_response_free(&resp);
	return n;
}

/* ---- one page ---------------------------------------------------------------------------- */

/*
 * Versions and keys come from capture's own builders (capture_ce.h, capture_fo.h) and capture's
 * record table (dw_capture_record, through capture_records.h), used with the same rules as the
 * capture program (docs/capture.md), so a snapshot of a row state has the id capture gives that
 * state:
 *  - CE: version = versionnumber. After the page's commit the rows are recorded (last key and
 *    version) so that a later delete seen by change tracking, which carries only the GUID, gets the
 *    full key. A tombstone is left alone unless the snapshot's version is above it.
 *  - FO: version from the image hash: unchanged image -> the record's last version, new or changed
 *    image -> last + 1 (1 for a record capture never saw), assigned and stored before publishing,
 *    exactly as capture does after a re-read; one statement per page.
 */
/* CE: one snapshot event per row into u; the rows' {id, key, version} into records. */
static int ce_page_unit(struct sync *s, cJSON *value, struct publish_unit *u, cJSON *records, char *err,
			size_t errlen)
{
	const struct capture_ce_ctx ctx = { .env = s->env, .own_user_id = s->own_user };
	size_t i = 0;
	cJSON *row;
	cJSON_ArrayForEach(row, value)
	{
		struct event ev;
		char e[1024];
		if (capture_ce_row_event(&ctx, &s->table.ce, row, EVENT_OP_SNAPSHOT, &ev, e, sizeof(e)) != 0 ||
		    publish_unit_add(u, s->cfg->topic_prefix, &ev, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "page %lld, row %zu: %s", s->pages_before + s->pages + 1, i + 1, e);
			event_clear(&ev);
			return -1;
		}
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev.key, s->table.ce.id_field);
		cJSON *rec = cJSON_CreateObject();
		cJSON *key = cJSON_Duplicate(ev.key, 1);
		int ok = rec && key && cJSON_AddItemToArray(records, rec);
		if (!ok)
			cJSON_Delete(rec);
		if (ok && !cJSON_AddItemToObject(rec, "key", key))
			ok = 0;
		else if (ok)
			key = NULL; /* owned by rec now */
		ok = ok && cJSON_AddStringToObject(rec, "id", id->valuestring) &&
		     cJSON_AddNumberToObject(rec, "version", (double)ev.source.version);
		cJSON_Delete(key);
		event_clear(&ev);
		if (!ok) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		i++;
	}
	return 0;
}

/* FO: versions for every row of the page (stored in dw_capture_record), then the events into u. */
static int fo_page_unit(struct sync *s, cJSON *value, struct publish_unit *u, char *err, size_t errlen)
{
	int rc = -1;
	size_t n = (size_t)cJSON_GetArraySize(value);
	cJSON **keys = calloc(n + 1, sizeof(*keys)), **images = calloc(n + 1, sizeof(*images));
	long long *versions = calloc(n + 1, sizeof(*versions));
	cJSON *in = cJSON_CreateArray();
	char *text = NULL, *ks = NULL;
	PGresult *res = NULL;
	char e[1024];
	if (!keys || !images || !versions || !in)
		goto oom;
	size_t i = 0;
	cJSON *row;
	cJSON_ArrayForEach(row, value)
	{
		char hash[SHA256_HEX_LEN + 1];
		keys[i] = capture_fo_row_key(&s->table.fo, row, e, sizeof(e));
		if (!keys[i]) {
			snprintf(err, errlen, "page %lld, row %zu: %s", s->pages_before + s->pages + 1, i + 1, e);
			goto out;
		}
		images[i] = capture_fo_image(row);
		if (!images[i] || capture_fo_image_hash(images[i], hash) != 0)
			goto oom;
		if (event_key_string(keys[i], &ks, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "page %lld, row %zu: key: %s", s->pages_before + s->pages + 1, i + 1, e);
			goto out;
		}
		cJSON *rec = cJSON_CreateObject();
		cJSON *kc = cJSON_Duplicate(keys[i], 1);
		if (!rec || !cJSON_AddItemToArray(in, rec)) {
			cJSON_Delete(rec);
			cJSON_Delete(kc);
			goto oom;
		}
		if (!kc || !cJSON_AddItemToObject(rec, "key", kc)) {
			cJSON_Delete(kc);
			goto oom;
		}
		if (!cJSON_AddNumberToObject(rec, "i", (double)i) || !cJSON_AddStringToObject(rec, "id", ks) ||
		    !cJSON_AddStringToObject(rec, "hash", hash))
			goto oom;
		const cJSON *mod = s->table.fo.modified ? cJSON_GetObjectItemCaseSensitive(row, s->table.fo.modified) : NULL;
		if (cJSON_IsString(mod) && !cJSON_AddStringToObject(rec, "modified", mod->valuestring))
			goto oom;
		free(ks);
		ks = NULL;
		versions[i] = -1;
		i++;
	}
	if (n > 0) {
		if (!(text = cJSON_PrintUnformatted(in)))
			goto oom;
		if (capture_records_fo_versions_json(s->pg, s->env, s->table.entity, text, &res, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "assigning versions: %s", e);
			goto out;
		}
		for (int r = 0; r < PQntuples(res); r++) {
			long idx = strtol(PQgetvalue(res, r, 0), NULL, 10);
			if (idx >= 0 && (size_t)idx < n)
				versions[idx] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		}
	}
	for (i = 0; i < n; i++) {
		struct event ev;
		long long ts = 0;
		if (versions[i] < 0) {
			/* Stale: capture already versioned a newer image of this record (its modified
			 * time is later), so that newer event stands and this snapshot is left out. */
			s->stale++;
			continue;
		}
		if (s->table.fo.modified) {
			const cJSON *m = cJSON_GetObjectItemCaseSensitive(images[i], s->table.fo.modified);
			if (!cJSON_IsString(m) || capture_ce_parse_iso(m->valuestring, &ts) != 0)
				ts = 0;
		}
		if (capture_fo_event(s->env, s->own_user, &s->table.fo, EVENT_OP_SNAPSHOT, keys[i], images[i],
				     versions[i], ts, NULL, &ev, e, sizeof(e)) != 0 ||
		    publish_unit_add(u, s->cfg->topic_prefix, &ev, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "page %lld, row %zu: %s", s->pages_before + s->pages + 1, i + 1, e);
			event_clear(&ev);
			goto out;
		}
		event_clear(&ev);
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	for (size_t k = 0; k < n; k++) {
		if (keys)
			cJSON_Delete(keys[k]);
		if (images)
			cJSON_Delete(images[k]);
	}
	free(keys);
	free(images);
	free(versions);
	free(ks);
	free(text);
	PQclear(res);
	cJSON_Delete(in);
	return rc;
}

/* After the page's commit: CE records and the next position, in one PostgreSQL transaction. */
static int page_confirmed(struct sync *s, const cJSON *records, const char *next, char *err, size_t errlen)
{
	char e[1024];
	char *text = NULL;
	int rc = -1;
	if (store_begin(s->pg, e, sizeof(e)) != 0)
		goto fail;
	if (records && cJSON_GetArraySize(records) > 0) {
		if (!(text = cJSON_PrintUnformatted(records))) {
			snprintf(e, sizeof(e), "out of memory");
			goto fail;
		}
		if (capture_records_confirm_json(s->pg, s->table.side_name, s->env, s->table.entity, text, e,
						 sizeof(e)) != 0)
			goto fail;
	}
	if (checkpoint_save(s, next, e, sizeof(e)) != 0 || store_commit(s->pg, e, sizeof(e)) != 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	snprintf(err, errlen, "recording the page: %.900s", e);
	(void)store_rollback(s->pg, e, sizeof(e));
out:
	free(text);
	return rc;
}

static int publish_with_retry(struct sync *s, struct publish_unit *u, char *err, size_t errlen)
{
	long backoff = 1000;
	for (int attempt = 1; attempt <= SYNC_PUBLISH_ATTEMPTS; attempt++) {
		int rc = publish_send(s->pub, u, err, errlen);
		if (rc == 0)
			return 0;
		if (rc != PUBLISH_ERR || stop_requested || attempt == SYNC_PUBLISH_ATTEMPTS)
			return -1;
		log_warn("initial sync: page not confirmed by Kafka, retrying", "reason", err);
		nap(backoff);
		backoff = backoff * 2 > SYNC_BACKOFF_MAX_MS ? SYNC_BACKOFF_MAX_MS : backoff * 2;
	}
	return -1;
}

/* The paging loop: page k is published and checkpointed while page k+1 is being fetched. */
static int sync_pages(struct sync *s, const char *first, char *err, size_t errlen)
{
	int rc = -1;
	struct page *cur = calloc(1, sizeof(*cur)), *nxt = calloc(1, sizeof(*nxt));
	struct publish_unit *u = NULL;
	cJSON *records = NULL;
	int fetching = 0;
	pthread_t th;
	if (!cur || !nxt) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	cur->s = nxt->s = s;
	snprintf(cur->url, sizeof(cur->url), "%s", first);
	cur->number = s->pages_before + 1;
	fetch_page(cur);
	for (;;) {
		if (cur->rc != 0) {
			snprintf(err, errlen, "%s", cur->err);
			goto out;
		}
		if (stop_requested) {
			snprintf(err, errlen, "interrupted");
			goto out;
		}
		if (cur->next[0]) {
			snprintf(nxt->url, sizeof(nxt->url), "%s", cur->next);
			nxt->number = cur->number + 1;
			if (pthread_create(&th, NULL, fetch_page, nxt) != 0) {
				snprintf(err, errlen, "cannot start the fetch thread");
				goto out;
			}
			fetching = 1;
		}
		u = publish_unit_new();
		records = s->table.side == EVENT_SIDE_CE ? cJSON_CreateArray() : NULL;
		if (!u || (s->table.side == EVENT_SIDE_CE && !records)) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		cJSON *value = cJSON_GetObjectItemCaseSensitive(cur->doc, "value");
		if ((s->table.side == EVENT_SIDE_CE ? ce_page_unit(s, value, u, records, err, errlen)
						    : fo_page_unit(s, value, u, err, errlen)) != 0)
			goto out;
		long long n = (long long)publish_unit_count(u);
		if (publish_with_retry(s, u, err, errlen) != 0)
			goto out;
		publish_unit_free(u);
		u = NULL;
		s->rows += n;
		s->pages++;
		if (page_confirmed(s, records, cur->next[0] ? cur->next : NULL, err, errlen) != 0)
			goto out;
		cJSON_Delete(records);
		records = NULL;
		progress(s, 0);
		cJSON_Delete(cur->doc);
		cur->doc = NULL;
		if (!fetching)
			break;
		pthread_join(th, NULL);
		fetching = 0;
		struct page *t = cur;
		cur = nxt;
		nxt = t;
	}
	rc = 0;
out:
	if (fetching) {
		stop_requested = 1; /* cut the fetch thread's retries short */
		pthread_join(th, NULL);
	}
	publish_unit_free(u);
	cJSON_Delete(records);
	if (cur)
		cJSON_Delete(cur->doc);
	if (nxt)
		cJSON_Delete(nxt->doc);
	free(cur);
	free(nxt);
	return rc;
}

/* ---- set-up ------------------------------------------------------------------------------ */

static int parse_page_size(const char *text, long max, long *out)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < 1 || v > max) {
		fprintf(stderr, "ctl initial-sync: --page-size must be a whole number from 1 to %ld, got '%s'\n", max,
			text);
		return -1;
	}
	*out = v;
	return 0;
}

static int sync_open(struct sync *s, char *err, size_t errlen)
{
	char name[64], e[1024];
	int rc = -1;
	snprintf(name, sizeof(name), "DW_%s_URL", s->side_upper);
	if (config_str_required(name, &s->base_url, e, sizeof(e)) != 0)
		goto fail;
	size_t bl = strlen(s->base_url);
	while (bl > 0 && s->base_url[bl - 1] == '/')
		s->base_url[--bl] = '\0';
	if (asprintf(&s->root, "%s%s", s->base_url, s->table.side == EVENT_SIDE_CE ? "/api/data/v9.2/" : "/data/") < 0) {
		s->root = NULL;
		snprintf(e, sizeof(e), "out of memory");
		goto fail;
	}
	if (config_str("DW_ENV", "default", &s->env, e, sizeof(e)) != 0)
		goto fail;
	snprintf(name, sizeof(name), "DW_%s_OWN_USER_ID", s->side_upper);
	if (config_str(name, NULL, &s->own_user, e, sizeof(e)) != 0)
		goto fail;
	struct oauth_config oc;
	if (oauth_config_load(s->side_upper, &oc, e, sizeof(e)) != 0)
		goto fail;
	int orc = oauth_new(&oc, NULL, &s->oauth, e, sizeof(e));
	oauth_config_free(&oc);
	if (orc != 0)
		goto fail;
	struct http_opts ho = { .timeout_ms = SYNC_HTTP_TIMEOUT_MS, .body_max = SYNC_BODY_MAX };
	if (http_client_new(&ho, &s->http, e, sizeof(e)) != 0)
		goto fail;
	if (!s->cfg->pg_dsn) {
		snprintf(e, sizeof(e), "DW_PG_DSN (or DW_PG_DSN_FILE) is not set");
		goto fail;
	}
	const struct store_opts so = { .application_name = "dualwrite-ctl-initial-sync" };
	if (store_connect(s->cfg->pg_dsn, &so, &s->pg, e, sizeof(e)) != 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	snprintf(err, errlen, "%s", e);
out:
	return rc;
}

static int sync_publisher(struct sync *s, char *err, size_t errlen)
{
	/* One transactional id per table: a second run of the same table fences the first. */
	char txid[EVENT_ENTITY_MAX * 4 + EVENT_ENV_MAX * 4 + 64];
	snprintf(txid, sizeof(txid), "dw-initial-sync-%s-%s-%s", s->table.side_name, s->env, s->table.entity);
	const struct publish_opts po = {
		.transactional_id = txid,
		.client_id = "dualwrite-ctl-initial-sync",
		.max_batch_events = SYNC_FO_PAGE_MAX,
	};
	return publish_new(s->cfg, &po, &s->pub, err, errlen) == 0 ? 0 : -1;
}

static void sync_close(struct sync *s)
{
	publish_free(s->pub);
	store_close(s->pg);
	http_client_free(s->http);
	oauth_free(s->oauth);
	table_clear(&s->table);
	free(s->base_url);
	free(s->root);
	free(s->env);
	free(s->own_user);
}

/*
 * Syncs one table (t is taken: cleared here whatever happens). Returns 0 when the table is done
 * (or was already complete), 1 when it failed or was interrupted (the position of the last
 * committed page is kept).
 */
static int sync_one(const struct config_common *cfg, struct sync_table *t, long page_size, int restart)
{
	struct sync s;
	char err[2048];
	int rc = 1;
	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	s.total = -1;
	s.table = *t;
	memset(t, 0, sizeof(*t));
	s.page_size = page_size;
	enum event_side side = s.table.side;
	snprintf(s.side_upper, sizeof(s.side_upper), "%s", side == EVENT_SIDE_CE ? "CE" : "FO");

	if (sync_open(&s, err, sizeof(err)) != 0) {
		log_error("initial sync: cannot start", "table", s.table.spec, "reason", err);
		goto out;
	}
	struct position pos;
	if (restart) {
		if (capture_records_checkpoint_drop(s.pg, s.table.side_name, s.env, s.table.entity, "initial_sync", err,
						    sizeof(err)) != 0) {
			log_error("initial sync: cannot clear the saved position", "reason", err);
			goto out;
		}
	}
	if (checkpoint_load(&s, &pos, err, sizeof(err)) != 0) {
		log_error("initial sync: cannot start", "table", s.table.spec, "reason", err);
		goto out;
	}
	if (pos.done) {
		printf("initial sync %s.%s: already complete (%lld rows, %lld pages); use --restart to run it again\n",
		       s.table.side_name, s.table.entity, pos.rows, pos.pages);
		rc = 0;
		goto out;
	}
	char first[SYNC_URL_MAX];
	if (pos.found) {
		snprintf(first, sizeof(first), "%s", pos.next);
		s.rows_before = pos.rows;
		s.pages_before = pos.pages;
		char r[32];
		snprintf(r, sizeof(r), "%lld", pos.rows);
		log_info("initial sync: resuming", "table", s.table.spec, "rows_done", r);
	} else {
		snprintf(first, sizeof(first), "%s%s%s", s.root, s.table.entity_set,
			 side == EVENT_SIDE_FO ? "?cross-company=true" : "");
	}
	if (sync_publisher(&s, err, sizeof(err)) != 0) {
		log_error("initial sync: cannot start the Kafka producer", "reason", err);
		goto out;
	}
	s.tty = isatty(STDERR_FILENO);
	s.total = count_rows(&s);
	s.started_ms = s.last_log_ms = now_ms();
	int prc = sync_pages(&s, first, err, sizeof(err));
	progress(&s, 1);
	double secs = (double)(now_ms() - s.started_ms) / 1000.0;
	double rate = secs > 0 ? (double)s.rows / secs : 0;
	if (prc != 0) {
		log_error("initial sync: stopped", "table", s.table.spec, "reason", err);
		printf("initial sync %s.%s: stopped after %lld rows, %lld pages in %.1f s (%.0f rows/s); %lld rows "
		       "done in all; run it again to resume\n",
		       s.table.side_name, s.table.entity, s.rows, s.pages, secs, rate, s.rows_before + s.rows);
		goto out;
	}
	printf("initial sync %s.%s: %lld rows, %lld pages in %.1f s (%.0f rows/s)%s\n", s.table.side_name,
	       s.table.entity, s.rows, s.pages, secs, rate, s.rows_before ? "; resumed" : "");
	if (s.stale)
		printf("initial sync %s.%s: %lld rows left out, capture had already published a newer image of "
		       "them\n", s.table.side_name, s.table.entity, s.stale);
	if (s.rows_before)
		printf("initial sync %s.%s: %lld rows in all, over %lld pages\n", s.table.side_name, s.table.entity,
		       s.rows_before + s.rows, s.pages_before + s.pages);
	rc = 0;
out:
	fflush(stdout);
	sync_close(&s);
	return rc;
}

/* The master side's table of map m, as DW_CAPTURE_TABLES lists it (CE by logical name, FO by
 * entity set): the entry carries what the map does not (FO data-event name, CE lookup key form). */
static int map_table(const struct map *m, struct sync_table *t, char *err, size_t errlen)
{
	enum event_side side = m->initial_sync_master;
	const struct map_side *ms = map_side_of(m, side);
	const char *name = side == EVENT_SIDE_CE ? ms->entity : ms->entity_set;
	char why[1024];
	if (table_resolve(side, name, t, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "map %s (master %s): %s", m->name, event_side_name(side), why);
		return -1;
	}
	return 0;
}

/*
 * --all: every map of DW_MAPS_DIR in dependency order (map_load_dir refuses a cycle, naming the
 * maps), each from its initial-sync master side. A table shared by two maps is synced once.
 * Stops at the first table that fails.
 */
static int sync_all(const struct config_common *cfg, const char *page_text, int restart)
{
	struct map_set *set = NULL;
	char *dir = NULL;
	char err[2048];
	char (*done)[SYNC_SPEC_MAX] = NULL;
	size_t ndone = 0;
	int rc = 2;
	if (config_str("DW_MAPS_DIR", "schemas/maps", &dir, err, sizeof(err)) != 0 ||
	    map_load_dir(dir, &set, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl initial-sync: %s\n", err);
		goto out;
	}
	done = calloc(set->n, sizeof(*done));
	if (!done) {
		fprintf(stderr, "ctl initial-sync: out of memory\n");
		goto out;
	}
	/* Resolve every table first, so a missing entry is reported before anything is published. */
	for (size_t i = 0; i < set->n; i++) {
		struct sync_table t;
		if (map_table(set->maps[i], &t, err, sizeof(err)) != 0) {
			fprintf(stderr, "ctl initial-sync: %s\n", err);
			goto out;
		}
		long max = t.side == EVENT_SIDE_CE ? SYNC_CE_PAGE_MAX : SYNC_FO_PAGE_MAX, ps;
		table_clear(&t);
		if (page_text && parse_page_size(page_text, max, &ps) != 0)
			goto out;
	}
	printf("initial sync: %zu maps in dependency order:", set->n);
	for (size_t i = 0; i < set->n; i++)
		printf(" %s", set->maps[i]->name);
	printf("\n");
	fflush(stdout);
	rc = 0;
	for (size_t i = 0; i < set->n && !stop_requested; i++) {
		const struct map *m = set->maps[i];
		struct sync_table t;
		if (map_table(m, &t, err, sizeof(err)) != 0) {
			fprintf(stderr, "ctl initial-sync: %s\n", err);
			rc = 1;
			break;
		}
		char id[SYNC_SPEC_MAX];
		snprintf(id, sizeof(id), "%s.%s", t.side_name, t.entity);
		int seen = 0;
		for (size_t k = 0; k < ndone; k++)
			seen |= strcmp(done[k], id) == 0;
		if (seen) {
			printf("map %s: table %s already synced above\n", m->name, id);
			table_clear(&t);
			continue;
		}
		snprintf(done[ndone++], SYNC_SPEC_MAX, "%s", id);
		long ps = t.side == EVENT_SIDE_CE ? SYNC_CE_PAGE_MAX : SYNC_FO_PAGE_MAX;
		if (page_text && parse_page_size(page_text, ps, &ps) != 0) {
			table_clear(&t);
			rc = 2;
			break;
		}
		printf("map %s: from %s\n", m->name, t.side_name);
		fflush(stdout);
		if (sync_one(cfg, &t, ps, restart) != 0) {
			rc = 1;
			break;
		}
	}
	if (stop_requested && rc == 0)
		rc = 1;
out:
	free(done);
	map_set_free(set);
	free(dir);
	return rc;
}

static int run(int argc, char **argv, const struct config_common *cfg)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "page-size", required_argument, NULL, 'p' },
		{ "restart", no_argument, NULL, 'r' },
		{ "all", no_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	const char *from = NULL, *page_text = NULL;
	int restart = 0, all = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			from = optarg;
			break;
		case 'p':
			page_text = optarg;
			break;
		case 'r':
			restart = 1;
			break;
		case 'a':
			all = 1;
			break;
		default:
			return 2;
		}
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	stop_requested = 0;
	if (all) {
		if (from || optind != argc) {
			fprintf(stderr, "ctl initial-sync: --all takes neither --from nor TABLE (see ctl initial-sync --help)\n");
			return 2;
		}
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		return sync_all(cfg, page_text, restart);
	}
	int side = from ? event_side_parse(from) : -1;
	if (side < 0) {
		fprintf(stderr, "ctl initial-sync: --from ce or --from fo is required (see ctl initial-sync --help)\n");
		return 2;
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "ctl initial-sync: give exactly one TABLE (see ctl initial-sync --help)\n");
		return 2;
	}
	char err[2048];
	struct sync_table t;
	if (table_resolve((enum event_side)side, argv[optind], &t, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl initial-sync: %s\n", err);
		return 2;
	}
	long page_size = side == EVENT_SIDE_CE ? SYNC_CE_PAGE_MAX : SYNC_FO_PAGE_MAX;
	if (page_text && parse_page_size(page_text, page_size, &page_size) != 0) {
		table_clear(&t);
		return 2;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return sync_one(cfg, &t, page_size, restart);
}

const struct ctl_command ctl_initial_sync_command = {
	.name = "initial-sync",
	.summary = "publish a whole source table as snapshot events (resumable)",
	.usage = usage,
	.run = run,
};
