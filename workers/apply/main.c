/* apply --map NAME --to ce|fo: the apply worker. main() parses options, builds the parts, runs the
 * poll loop and shuts down in order; batch.c holds the logic. */
#include <ctype.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apply.h"
#include "log.h"
#include "mapnames.h"
#include "store.h"

static const char usage[] =
	"usage: apply --map NAME --to ce|fo\n"
	"Applies the changes of the other side's table (topic <DW_TOPIC_PREFIX>.<side>.<entity>) to side\n"
	"ce or fo through map NAME (DW_MAPS_DIR/NAME.json, default schemas/maps), exactly once in effect.\n"
	"settings: DW_KAFKA_BROKERS, DW_PG_DSN[_FILE], DW_TOPIC_PREFIX (dw), DW_MAPS_DIR,\n"
	"  DW_<SIDE>_URL, DW_<SIDE>_TOKEN_URL, DW_<SIDE>_CLIENT_ID, DW_<SIDE>_CLIENT_SECRET[_FILE],\n"
	"  DW_<SIDE>_SCOPE for the target side (and for ce when the map resolves CE lookups),\n"
	"  DW_APPLY_BATCH_MAX (500; 1 = one request per event and a commit after each),\n"
	"  DW_APPLY_BATCH_WAIT_MS (20), DW_APPLY_HTTP_TIMEOUT_MS (30000), DW_APPLY_BACKOFF_MIN_MS (500),\n"
	"  DW_APPLY_HTTP_PARALLEL (4: $batch requests in flight at once per batch),\n"
	"  DW_APPLY_PIPELINE (true: a batch's outcomes are recorded while the next is written; false: in line),\n"
	"  DW_APPLY_BACKOFF_MAX_MS (60000), DW_APPLY_DLQ_PARTITIONS (1), DW_APPLY_DLQ_REPLICATION (1),\n"
	"  DW_APPLY_STATE_CHECK_MS (5000: how often the map's paused/failed state is read),\n"
	"  DW_APPLY_APPLIED_RETENTION (8d: idempotency keys older than this are pruned; keep it above the\n"
	"  topic retention), DW_APPLY_PRUNE_INTERVAL (1h),\n"
	"  DW_HTTP_ADDR, DW_HTTP_PORT (8080; /healthz /readyz /metrics), DW_KAFKA_* (librdkafka)\n"
	"exit status: 0 clean shutdown, 1 failure, 2 usage error\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_requested)
		_exit(1); /* a second signal: leave at once */
	stop_requested = 1;
}

/* One side's HTTP client, token cache and writer. */
struct side_conn {
	struct http_client *http;
	struct oauth *oauth;
	struct target *target;
};

static int side_open(const char *side, long timeout_ms, size_t batch_max, size_t parallel, struct side_conn *sc,
		     char *err, size_t errlen)
{
	char SIDE[3] = { (char)toupper((unsigned char)side[0]), (char)toupper((unsigned char)side[1]), 0 };
	char name[32], *url = NULL;
	struct oauth_config oc = { 0 };
	int rc = -1;
	snprintf(name, sizeof(name), "DW_%s_URL", SIDE);
	if (config_str_required(name, &url, err, errlen) != 0 || oauth_config_load(SIDE, &oc, err, errlen) != 0)
		goto out;
	struct http_opts ho = { .timeout_ms = timeout_ms };
	if (http_client_new(&ho, &sc->http, err, errlen) != 0 || oauth_new(&oc, NULL, &sc->oauth, err, errlen) != 0)
		goto out;
	struct target_opts to = { .side = side, .base_url = url, .http = sc->http, .oauth = sc->oauth,
				  .timeout_ms = timeout_ms, .batch_max = batch_max, .parallel = parallel,
				  .http_opts = &ho };
	if (target_new(&to, &sc->target, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	free(url);
	oauth_config_free(&oc);
	return rc;
}

static void side_close(struct side_conn *sc)
{
	target_free(sc->target);
	oauth_free(sc->oauth);
	http_client_free(sc->http);
	memset(sc, 0, sizeof(*sc));
}

/* Whether the map needs CE rows read (company striping or lookups on the CE side). */
static int needs_ce_reads(const struct map *m)
{
	if (m->company)
		return 1;
	for (size_t i = 0; i < m->nfields; i++)
		if (m->fields[i].lookup)
			return 1;
	return 0;
}

/* Makes sure the dead-letter topic exists (created with DW_APPLY_DLQ_* when missing). */
static int ensure_dlq(const struct config_common *cfg, const char *topic, char *err, size_t errlen)
{
	struct kafka_admin *ad = NULL;
	long parts = 1, repl = 1;
	int rc = -1;
	if (config_long("DW_APPLY_DLQ_PARTITIONS", 1, 1, 10000, &parts, err, errlen) != 0 ||
	    config_long("DW_APPLY_DLQ_REPLICATION", 1, 1, 100, &repl, err, errlen) != 0 ||
	    kafka_admin_new(cfg, &ad, err, errlen) != 0)
		goto out;
	struct kafka_topic_spec have;
	int d = kafka_topic_describe(ad, topic, 30000, &have, err, errlen);
	if (d == 0) {
		rc = 0;
		goto out;
	}
	if (d != 1)
		goto out;
	struct kafka_topic_spec want = { (int)parts, (int)repl, -1 };
	enum kafka_topic_outcome oc;
	rc = kafka_topic_ensure(ad, topic, &want, 30000, &oc, err, errlen) == 0 ? 0 : -1;
out:
	kafka_admin_free(ad);
	return rc;
}

static void on_rebalance(int assigned, int lost, const rd_kafka_topic_partition_list_t *parts, void *ctx)
{
	struct apply *a = ctx;
	char cnt[16];
	snprintf(cnt, sizeof(cnt), "%d", parts ? parts->cnt : 0);
	log_info(assigned ? "partitions assigned" : lost ? "partitions lost" : "partitions revoked", "map",
		 a->map->name, "count", cnt);
	if (!assigned) {
		/* the batch being recorded stores its offsets before the partitions go */
		char err[1024];
		if (apply_flush(a, err, sizeof(err)) == APPLY_FATAL)
			log_error("offsets of the last batch not stored before the rebalance", "error", err);
	}
	if (assigned)
		apply_on_assigned(a, parts);
	if (!assigned && a->paused) {
		/* pauses end with the assignment; the seek position goes with the committed offsets */
		rd_kafka_topic_partition_list_destroy(a->paused);
		a->paused = NULL;
	}
	if (!assigned && a->owed) {
		/* the next owner starts at the committed offsets, which never passed what was owed */
		rd_kafka_topic_partition_list_destroy(a->owed);
		a->owed = NULL;
	}
}

int main(int argc, char **argv)
{
	const char *map_name = NULL, *to = NULL;
	char err[1024];
	int exit_code = 1;
	struct config_common cfg = { 0 };
	struct map_set *maps = NULL;
	char *maps_dir = NULL;
	PGconn *pg = NULL, *pg_record = NULL;
	struct side_conn tgt = { 0 }, ce = { 0 }, fo = { 0 };
	struct kafka_consumer *consumer = NULL;
	struct kafka_producer *dlq = NULL;
	struct metrics *reg = NULL;
	struct httpd *httpd = NULL;
	struct httpd_config hc = { 0 };
	struct apply a;
	struct kafka_message **batch = NULL;
	size_t nbatch = 0;
	memset(&a, 0, sizeof(a));

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return 0;
		} else if (strcmp(argv[i], "--map") == 0 && i + 1 < argc) {
			map_name = argv[++i];
		} else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
			to = argv[++i];
		} else {
			fprintf(stderr, "apply: unknown or incomplete option '%s'\n\n%s", argv[i], usage);
			return 2;
		}
	}
	if (!map_name || !to || (strcmp(to, "ce") != 0 && strcmp(to, "fo") != 0)) {
		fprintf(stderr, "apply: --map NAME and --to ce|fo are required\n\n%s", usage);
		return 2;
	}
	log_init("apply", LOG_INFO);
	srandom((unsigned)(time(NULL) ^ getpid()));
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* The writer threads and the recorder would each keep a malloc arena at its own peak (about
	 * +10 MB for a 1000-event batch); two arenas keep the worker's RSS bounded (docs/performance.md). */
	mallopt(M_ARENA_MAX, 2);
	/* No fastbins: every batch frees buffers of hundreds of kB, and each such free made glibc
	 * consolidate the fastbins of the small JSON nodes freed meanwhile (malloc_consolidate was
	 * 10 % of the worker's CPU); small blocks still come from the per-thread caches. */
	mallopt(M_MXFAST, 0);

	long batch_max = 500, batch_wait = 20, http_timeout = 30000, bmin = 500, bmax = 60000, state_check = 5000, redrive = 5000;
	long http_parallel = 4;
	int pipeline = 1;
	long long txn_timeout = 300000, applied_retention = 8LL * 86400000, prune_interval = 3600000;
	long long park_max_age = 86400000;
	if (config_common_load(&cfg, err, sizeof(err)) != 0 || config_str("DW_MAPS_DIR", "schemas/maps", &maps_dir, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_BATCH_MAX", 500, 1, APPLYSTATE_BATCH_MAX / 2, &batch_max, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_BATCH_WAIT_MS", 20, 0, 10000, &batch_wait, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_HTTP_TIMEOUT_MS", 30000, 100, 600000, &http_timeout, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_HTTP_PARALLEL", 4, 1, TARGET_PARALLEL_MAX, &http_parallel, err, sizeof(err)) != 0 ||
	    config_bool("DW_APPLY_PIPELINE", 1, &pipeline, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_BACKOFF_MIN_MS", 500, 1, 600000, &bmin, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_BACKOFF_MAX_MS", 60000, 1, 3600000, &bmax, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_STATE_CHECK_MS", 5000, 100, 600000, &state_check, err, sizeof(err)) != 0 ||
	    config_long("DW_APPLY_REDRIVE_MS", 5000, 100, 3600000, &redrive, err, sizeof(err)) != 0 ||
	    config_duration_ms("DW_APPLY_TXN_TIMEOUT", 300000, 1000, 86400000LL, &txn_timeout, err, sizeof(err)) != 0 ||
	    config_duration_ms("DW_APPLY_PARK_MAX_AGE", park_max_age, 0, 3650 * 86400000LL, &park_max_age, err,
			       sizeof(err)) != 0 ||
	    config_duration_ms("DW_APPLY_APPLIED_RETENTION", applied_retention, 1000, 3650 * 86400000LL, &applied_retention,
			       err, sizeof(err)) != 0 ||
	    config_duration_ms("DW_APPLY_PRUNE_INTERVAL", prune_interval, 1000, 86400000LL, &prune_interval, err,
			       sizeof(err)) != 0 ||
	    httpd_config_load(&hc, err, sizeof(err)) != 0) {
		log_error("configuration", "error", err);
		goto out;
	}
	log_init("apply", (enum log_level)cfg.log_level);
	if (!cfg.pg_dsn || !cfg.kafka_brokers) {
		log_error("configuration", "error", "DW_PG_DSN and DW_KAFKA_BROKERS are required");
		goto out;
	}
	if (map_load_dir(maps_dir, &maps, err, sizeof(err)) != 0) {
		log_error("maps", "error", err);
		goto out;
	}
	a.map = map_set_find(maps, map_name);
	if (!a.map) {
		log_error("no such map", "map", map_name, "dir", maps_dir);
		goto out;
	}
	a.cfg = &cfg;
	a.to = strcmp(to, "ce") == 0 ? EVENT_SIDE_CE : EVENT_SIDE_FO;
	a.from = a.to == EVENT_SIDE_CE ? EVENT_SIDE_FO : EVENT_SIDE_CE;
	a.to_name = event_side_name(a.to);
	a.from_name = event_side_name(a.from);
	unsigned dir_bit = a.to == EVENT_SIDE_FO ? MAP_DIR_CE_TO_FO : MAP_DIR_FO_TO_CE;
	if (!(a.map->direction & dir_bit)) {
		log_error("the map does not sync in this direction", "map", map_name, "direction",
			  map_direction_name(a.map->direction));
		goto out;
	}
	a.batch_max = (size_t)batch_max;
	a.batch_wait_ms = batch_wait;
	a.backoff_min_ms = bmin;
	a.backoff_max_ms = bmax < bmin ? bmin : bmax;
	a.stop = &stop_requested;
	a.state_check_ms = state_check;
	a.redrive_ms = redrive;
	a.txn_timeout_ms = (long)txn_timeout;
	a.park_max_age_ms = park_max_age;
	a.applied_retention_ms = applied_retention;
	a.prune_interval_ms = prune_interval;
	if (batch_max <= 1)
		log_warn("DW_APPLY_BATCH_MAX=1 sends one request per write: atomic units (txn) are then written "
			 "part by part, not all or nothing",
			 "map", map_name);
	if (a.map->threshold.count > 0 && !(a.err_times = calloc((size_t)a.map->threshold.count, sizeof(long long)))) {
		log_error("out of memory", "where", "error threshold");
		goto out;
	}
	struct mapnames names;
	if (mapnames_of(cfg.topic_prefix, a.map, a.to, &names, err, sizeof(err)) != 0) {
		log_error("topic names", "error", err);
		goto out;
	}
	snprintf(a.source_topic, sizeof(a.source_topic), "%s", names.source_topic);
	snprintf(a.dlq_topic, sizeof(a.dlq_topic), "%s", names.dlq_topic);
	a.maps = maps;

	reg = metrics_new();
	if (!reg || apply_metrics_init(reg, &a.m, err, sizeof(err)) != 0) {
		log_error("metrics", "error", reg ? err : "out of memory");
		goto out;
	}
	struct httpd_opts ho = { .addr = hc.addr, .port = hc.port, .metrics = reg, .liveness_timeout_ms = 120000 };
	if (httpd_new(&ho, &httpd, err, sizeof(err)) != 0 || httpd_start(httpd, err, sizeof(err)) != 0) {
		log_error("http server", "error", err);
		goto out;
	}
	a.httpd = httpd;

	struct store_opts so = { .application_name = "dw-apply" };
	if (store_connect(cfg.pg_dsn, &so, &pg, err, sizeof(err)) != 0 ||
	    applystate_new(pg, a.map->name, a.to_name, &a.state, err, sizeof(err)) != 0) {
		log_error("postgresql", "error", err);
		goto out;
	}
	/* one request per event keeps its commit after each event: no pipelining there */
	struct store_opts ro = { .application_name = "dw-apply-record" };
	if (pipeline && batch_max > 1 &&
	    (store_connect(cfg.pg_dsn, &ro, &pg_record, err, sizeof(err)) != 0 ||
	     applystate_new(pg_record, a.map->name, a.to_name, &a.record_state, err, sizeof(err)) != 0)) {
		log_error("postgresql (recording connection)", "error", err);
		goto out;
	}
	size_t tb = batch_max <= 1 ? 1 : (size_t)(batch_max > TARGET_BATCH_MAX ? TARGET_BATCH_MAX : batch_max);
	if (side_open(a.to_name, http_timeout, tb, (size_t)http_parallel, &tgt, err, sizeof(err)) != 0) {
		log_error("target", "side", a.to_name, "error", err);
		goto out;
	}
	a.target = tgt.target;
	if (a.map->aggregate) {
		if (side_open("fo", http_timeout, 1, 1, &fo, err, sizeof(err)) != 0) {
			log_error("F&O reads for the aggregate", "error", err);
			goto out;
		}
		a.fo_reads = fo.target;
	}
	if (needs_ce_reads(a.map)) {
		struct target *ce_reads = tgt.target;
		if (a.to != EVENT_SIDE_CE) {
			if (side_open("ce", http_timeout, 1, 1, &ce, err, sizeof(err)) != 0) {
				log_error("CE lookups", "error", err);
				goto out;
			}
			ce_reads = ce.target;
		}
		if (resolver_new(ce_reads, &a.resolver, err, sizeof(err)) != 0) {
			log_error("resolver", "error", err);
			goto out;
		}
	}

	if (ensure_dlq(&cfg, a.dlq_topic, err, sizeof(err)) != 0) {
		log_error("dead-letter topic", "topic", a.dlq_topic, "error", err);
		goto out;
	}
	a.pg = pg;
	/* a unit's parts of a sibling map go to that map's dead-letter topic (unit.c) */
	for (size_t i = 0; a.map->atomic_unit && i < maps->n; i++) {
		struct mapnames sn;
		const struct map *m = maps->maps[i];
		if (m == a.map || apply_unit_sibling(&a, map_side_of(m, a.from)->entity) != m)
			continue;
		if (mapnames_of(cfg.topic_prefix, m, a.to, &sn, err, sizeof(err)) != 0 ||
		    ensure_dlq(&cfg, sn.dlq_topic, err, sizeof(err)) != 0) {
			log_error("dead-letter topic of a sibling map", "map", m->name, "error", err);
			goto out;
		}
	}
	char client_id[128];
	snprintf(client_id, sizeof(client_id), "dw-apply-dlq-%s-%s", a.map->name, a.to_name);
	struct kafka_producer_opts po = { .client_id = client_id };
	if (kafka_producer_new(&cfg, &po, &dlq, err, sizeof(err)) != 0) {
		log_error("dead-letter producer", "error", err);
		goto out;
	}
	a.dlq = dlq;
	const char *group = names.group;
	char *instance = NULL;
	if (config_str("DW_KAFKA_GROUP_INSTANCE_ID", NULL, &instance, err, sizeof(err)) != 0) {
		log_error("configuration", "error", err);
		goto out;
	}
	struct kafka_consumer_opts co = { .group_id = group, .group_instance_id = instance,
					  .on_rebalance = on_rebalance, .ctx = &a };
	int crc = kafka_consumer_new(&cfg, &co, &consumer, err, sizeof(err));
	free(instance);
	const char *topics[] = { a.source_topic };
	if (crc != 0 || kafka_consumer_subscribe(consumer, topics, 1, err, sizeof(err)) != 0) {
		log_error("consumer", "error", err);
		goto out;
	}
	a.consumer = consumer;
	batch = calloc(a.batch_max, sizeof(*batch));
	if (!batch) {
		log_error("out of memory", "where", "batch");
		goto out;
	}
	httpd_set_ready(httpd, 1, NULL);
	log_info("apply started", "map", a.map->name, "to", a.to_name, "topic", a.source_topic, "group", group);

	exit_code = 0;
	while (!stop_requested) {
		httpd_heartbeat(httpd);
		if (apply_check_map_state(&a, err, sizeof(err)) != 0)
			log_warn("map state not read; keeping the last known", "error", err);
		apply_resume_due(&a);
		apply_prune(&a);
		if (apply_redrive(&a, err, sizeof(err)) != 0 || apply_expire_units(&a, err, sizeof(err)) != 0) {
			log_error("kafka fatal error", "error", err);
			exit_code = 1;
			goto drain;
		}
		/* fill a batch: wait for the first message, then take what is fetched already and wait
		 * up to batch_wait_ms (from the first message) for more */
		long long deadline = 0;
		while (nbatch < a.batch_max && !stop_requested) {
			/* the batch being recorded stores its offsets as soon as it is done */
			if (apply_reap(&a, err, sizeof(err)) == APPLY_FATAL) {
				log_error("kafka fatal error", "error", err);
				exit_code = 1;
				goto drain;
			}
			long wait = a.inflight ? 5 : 200;
			if (nbatch > 0) {
				long long left = deadline - apply_now_ms();
				wait = left <= 0 ? 0 : left < wait ? (long)left : wait;
			}
			struct kafka_message *m = NULL;
			int prc = kafka_consumer_poll(consumer, (int)wait, &m, err, sizeof(err));
			if (prc == KAFKA_ERR_FATAL) {
				log_error("kafka fatal error", "error", err);
				exit_code = 1;
				goto drain;
			}
			if (prc == KAFKA_ERR) {
				log_warn("consume error", "error", err);
				break;
			}
			if (prc == 0) {
				if ((nbatch == 0 && !a.inflight) || wait == 0)
					break;
				continue;
			}
			if (a.map_paused) {
				/* fetched before the pause took effect: leave it for later */
				apply_seek_back(&a, m);
				kafka_message_free(m);
				break;
			}
			if (nbatch == 0) {
				deadline = apply_now_ms() + a.batch_wait_ms;
				a.batch_gen = a.seek_gen;
			}
			batch[nbatch++] = m;
		}
		if (nbatch == 0)
			continue;
		int brc = apply_batch(&a, batch, nbatch, err, sizeof(err)); /* takes the messages */
		nbatch = 0;
		if (brc == APPLY_FATAL) {
			log_error("stopping", "error", err);
			exit_code = 1;
			break;
		}
	}
drain:
	/* shutdown: not ready, drop what was polled but not processed (uncommitted: redelivered) */
	httpd_set_ready(httpd, 0, "shutting down");
	for (size_t i = 0; i < nbatch; i++)
		kafka_message_free(batch[i]);
	nbatch = 0;
	log_info("apply stopping", "map", a.map->name, "to", a.to_name);
out:
	/* the batch being recorded: recorded and its offsets stored before the final commit */
	if (a.inflight && apply_flush(&a, err, sizeof(err)) == APPLY_FATAL)
		log_error("offsets of the last batch not stored", "error", err);
	if (a.paused) {
		/* NULL it: closing the consumer below revokes, and the rebalance callback frees it too */
		rd_kafka_topic_partition_list_destroy(a.paused);
		a.paused = NULL;
	}
	if (a.owed) {
		/* NULL it too: the rebalance callback of the close below would free it again */
		rd_kafka_topic_partition_list_destroy(a.owed);
		a.owed = NULL;
	}
	free(batch);
	free(a.err_times);
	if (consumer) {
		char cerr[256];
		if (kafka_consumer_commit(consumer, cerr, sizeof(cerr)) != 0)
			log_warn("final commit failed; recorded events will be skipped when redelivered", "error", cerr);
	}
	kafka_consumer_close(consumer);
	if (dlq && kafka_producer_close(dlq, 10000) != 0)
		exit_code = 1;
	resolver_free(a.resolver);
	side_close(&ce);
	side_close(&fo);
	side_close(&tgt);
	applystate_free(a.state);
	applystate_free(a.record_state);
	store_close(pg);
	store_close(pg_record);
	httpd_free(httpd);
	metrics_free(reg);
	httpd_config_free(&hc);
	map_set_free(maps);
	free(maps_dir);
	config_common_free(&cfg);
	return exit_code;
}
