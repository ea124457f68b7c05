/*
 * `ctl dlq list|show|retry`: reads a map's dead-letter topic (<prefix>.dlq.<map>.<to>) and sends
 * dead-lettered events back to the source topic for another try.
 */
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ctl.h"
#include "kafka.h"
#include "log.h"
#include "ops.h"
#include "store.h"

#define DLQ_LIMIT_DEFAULT 1000
#define DLQ_LIMIT_MAX 1000000

static const char usage[] =
	"usage: ctl dlq list  --map NAME --to ce|fo [--limit N]\n"
	"       ctl dlq show  --map NAME --to ce|fo --offset N [--partition P]\n"
	"       ctl dlq retry --map NAME --to ce|fo (--offset N [--partition P] | --all)\n"
	"\n"
	"Works on the dead-letter topic of map NAME writing to side <to>: <DW_TOPIC_PREFIX>.dlq.NAME.<to>.\n"
	"  list   one line per dead letter: partition, offset, time, reason (header dw.reason), key;\n"
	"         the first N (default 1000)\n"
	"  show   one dead letter in full: its error headers (dw.reason, dw.error, dw.http.status,\n"
	"         dw.target.error.body, dw.source.topic/partition/offset, ...) and the event\n"
	"  retry  produces the original event again, unchanged and with its original key, to the map's\n"
	"         source topic, and forgets the recorded dead-letter outcome of its event id so the\n"
	"         worker decides on it afresh. A retried event must pass the normal rules: it is\n"
	"         skipped when a newer version of the record was applied meanwhile (stale) or its\n"
	"         content is already there (echo), and it is dead-lettered again when it still fails.\n"
	"         The dead letter itself stays in its topic (Kafka topics are append-only).\n"
	"         One event can appear twice in a dead-letter topic (a worker produced it, then failed\n"
	"         to record the outcome, and produced it again on its retry); retrying both is\n"
	"         harmless: the second copy is skipped as a duplicate of the first.\n"
	"\n"
	"options:\n"
	"  --map NAME      the map (required)\n"
	"  --to ce|fo      the side the map writes to (required)\n"
	"  --offset N      the dead letter's offset (as `list` shows it)\n"
	"  --partition P   its partition (default 0; the dead-letter topic has one unless\n"
	"                  DW_APPLY_DLQ_PARTITIONS said otherwise)\n"
	"  --all           retry: every dead letter in the topic\n"
	"  --limit N       list: at most N lines (default 1000)\n"
	"  -h, --help      this text\n"
	"settings: DW_KAFKA_BROKERS, DW_PG_DSN[_FILE] (retry), DW_TOPIC_PREFIX, DW_MAPS_DIR, DW_KAFKA_*\n"
	"exit status: 0 done, 1 failure (or no such dead letter), 2 usage error\n";

enum dlq_action { DLQ_LIST, DLQ_SHOW, DLQ_RETRY };

struct dlq_ctx {
	const struct config_common *cfg;
	const struct ops_target *t;
	enum dlq_action action;
	long limit;
	long seen;
	PGconn *pg;
	struct kafka_producer *producer;
	long retried;
	char err[1024];
};

/* Writes bytes with control and non-ASCII bytes escaped as \xNN. */
static void put_bytes(FILE *out, const void *p, size_t len)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f)
			fputc(b[i], out);
		else if (b[i] == '\n')
			fputs("\\n", out);
		else
			fprintf(out, "\\x%02x", b[i]);
	}
}

static void header_str(rd_kafka_message_t *m, const char *name, char *out, size_t len)
{
	rd_kafka_headers_t *h = NULL;
	const void *v = NULL;
	size_t vl = 0;
	out[0] = '\0';
	if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    rd_kafka_header_get_last(h, name, &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
		snprintf(out, len, "%.*s", (int)(vl < len ? vl : len - 1), (const char *)v);
}

static void do_list(rd_kafka_message_t *m)
{
	char when[48], reason[128];
	rd_kafka_timestamp_type_t tt;
	ops_format_time(rd_kafka_message_timestamp(m, &tt), when, sizeof(when));
	header_str(m, "dw.reason", reason, sizeof(reason));
	printf("%9" PRId32 "  %10" PRId64 "  %-24s  %-16s  ", m->partition, m->offset, when, reason[0] ? reason : "-");
	if (m->key)
		put_bytes(stdout, m->key, m->key_len);
	else
		fputs("-", stdout);
	fputc('\n', stdout);
}

static void do_show(struct dlq_ctx *c, rd_kafka_message_t *m)
{
	char when[48];
	rd_kafka_timestamp_type_t tt;
	ops_format_time(rd_kafka_message_timestamp(m, &tt), when, sizeof(when));
	printf("topic:      %s\npartition:  %" PRId32 "\noffset:     %" PRId64 "\ntime:       %s\nkey:        ",
	       c->t->dlq_topic, m->partition, m->offset, when);
	if (m->key)
		put_bytes(stdout, m->key, m->key_len);
	printf("\nheaders:\n");
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		const char *name;
		const void *v;
		size_t vl;
		for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
			printf("  %s: ", name);
			if (v)
				put_bytes(stdout, v, vl);
			fputc('\n', stdout);
		}
	}
	printf("event:\n");
	cJSON *j = m->payload ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
	char *pretty = j ? cJSON_Print(j) : NULL;
	if (pretty)
		puts(pretty);
	else if (m->payload) {
		put_bytes(stdout, m->payload, m->len);
		fputs("\n(not valid JSON)\n", stdout);
	} else {
		puts("(none: tombstone)");
	}
	free(pretty);
	cJSON_Delete(j);
}

static int do_retry(struct dlq_ctx *c, rd_kafka_message_t *m)
{
	if (!m->payload) {
		fprintf(stderr, "ctl dlq retry: partition %" PRId32 " offset %" PRId64 " has no event (tombstone); skipped\n",
			m->partition, m->offset);
		return 0;
	}
	cJSON *j = cJSON_ParseWithLength(m->payload, m->len);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
	if (cJSON_IsString(id) && id->valuestring[0]) {
		const char *p[] = { c->t->map, c->t->to, id->valuestring };
		if (store_exec(c->pg,
			       "DELETE FROM dw_applied_event WHERE map_name = $1 AND target_side = $2 AND event_id = $3 "
			       "AND outcome = 'dead_letter'",
			       3, p, NULL, c->err, sizeof(c->err)) != 0) {
			cJSON_Delete(j);
			fprintf(stderr, "ctl dlq retry: postgresql: %s\n", c->err);
			return -1;
		}
	}
	cJSON_Delete(j);
	char off[32];
	snprintf(off, sizeof(off), "%" PRId64, m->offset);
	struct kafka_header h[] = { { "dw.retried.from", c->t->dlq_topic, strlen(c->t->dlq_topic) },
				    { "dw.retried.offset", off, strlen(off) } };
	if (kafka_produce(c->producer, c->t->source_topic, m->key, m->key ? m->key_len : 0, m->payload, m->len, h, 2,
			  NULL, c->err, sizeof(c->err)) != 0) {
		fprintf(stderr, "ctl dlq retry: produce to %s: %s\n", c->t->source_topic, c->err);
		return -1;
	}
	c->retried++;
	printf("retried partition %" PRId32 " offset %" PRId64 " -> %s\n", m->partition, m->offset, c->t->source_topic);
	return 0;
}

/*
 * Reads partition `only` (all when < 0) of the DLQ from `from` (the start when < 0) to the end,
 * or just one message when `one`, calling the action. *found counts the messages handled.
 */
static int scan(struct dlq_ctx *c, int32_t only, int64_t from, int one, long *found)
{
	rd_kafka_t *rk = ops_kafka_handle(c->cfg, NULL, c->err, sizeof(c->err));
	rd_kafka_topic_partition_list_t *l = NULL;
	int rc = -1, parts = 0, exists = 0;
	int64_t *end = NULL;
	*found = 0;
	if (!rk || ops_partitions(rk, c->t->dlq_topic, &parts, &exists, c->err, sizeof(c->err)) != 0) {
		fprintf(stderr, "ctl dlq: %s\n", c->err);
		goto out;
	}
	if (!exists || (only >= 0 && only >= parts)) {
		if (!exists)
			fprintf(stderr, "ctl dlq: dead-letter topic %s does not exist (no worker ran yet)\n", c->t->dlq_topic);
		else
			fprintf(stderr, "ctl dlq: %s has no partition %" PRId32 "\n", c->t->dlq_topic, only);
		goto out;
	}
	end = calloc((size_t)parts, sizeof(*end));
	l = rd_kafka_topic_partition_list_new(parts);
	if (!end || !l)
		goto out;
	int open = 0;
	for (int p = 0; p < parts; p++) {
		int64_t lo = 0, hi = 0;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, c->t->dlq_topic, p, &lo, &hi, OPS_TIMEOUT_MS);
		if (e) {
			fprintf(stderr, "ctl dlq: watermarks of %s [%d]: %s\n", c->t->dlq_topic, p, rd_kafka_err2str(e));
			goto out;
		}
		int64_t start = from >= 0 ? from : lo;
		if ((only >= 0 && p != only) || start >= hi)
			continue;
		if (start < lo) {
			fprintf(stderr, "ctl dlq: offset %" PRId64 " of partition %d is gone (retention; oldest %" PRId64 ")\n",
				start, p, lo);
			goto out;
		}
		end[p] = hi;
		rd_kafka_topic_partition_list_add(l, c->t->dlq_topic, p)->offset = start;
		open++;
	}
	if (open && rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "ctl dlq: cannot read %s\n", c->t->dlq_topic);
		goto out;
	}
	if (c->action == DLQ_LIST)
		printf("%9s  %10s  %-24s  %-16s  %s\n", "PARTITION", "OFFSET", "TIME", "REASON", "KEY");
	int64_t deadline = ops_now_ms() + 60000;
	while (open > 0) {
		if (ops_now_ms() > deadline) {
			fprintf(stderr, "ctl dlq: reading %s timed out\n", c->t->dlq_topic);
			goto out;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
		if (!m)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (m->partition >= 0 && m->partition < parts && end[m->partition] > 0) {
				end[m->partition] = 0;
				open--;
			}
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err) {
			fprintf(stderr, "ctl dlq: reading %s: %s\n", c->t->dlq_topic, rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			goto out;
		}
		int32_t p = m->partition;
		int hit = !one || m->offset == from;
		int act = 0;
		if (hit && (c->action != DLQ_LIST || *found < c->limit)) {
			(*found)++;
			if (c->action == DLQ_LIST)
				do_list(m);
			else if (c->action == DLQ_SHOW)
				do_show(c, m);
			else
				act = do_retry(c, m);
		}
		int last = m->offset + 1 >= end[p] || one;
		rd_kafka_message_destroy(m);
		if (act != 0)
			goto out;
		if (last && end[p] > 0) {
			end[p] = 0;
			open--;
		}
	}
	rc = 0;
out:
	if (l)
		rd_kafka_topic_partition_list_destroy(l);
	free(end);
	if (rk) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	return rc;
}

static int run(int argc, char **argv, const struct config_common *cfg)
{
	static const struct option longopts[] = {
		{ "map", required_argument, NULL, 'm' },  { "to", required_argument, NULL, 't' },
		{ "offset", required_argument, NULL, 'o' }, { "partition", required_argument, NULL, 'p' },
		{ "all", no_argument, NULL, 'a' },          { "limit", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "ctl dlq: give a subcommand: list, show or retry (see `ctl dlq --help`)\n");
		return 2;
	}
	struct dlq_ctx c = { .cfg = cfg, .limit = DLQ_LIMIT_DEFAULT };
	if (strcmp(argv[1], "list") == 0)
		c.action = DLQ_LIST;
	else if (strcmp(argv[1], "show") == 0)
		c.action = DLQ_SHOW;
	else if (strcmp(argv[1], "retry") == 0)
		c.action = DLQ_RETRY;
	else {
		fprintf(stderr, "ctl dlq: unknown subcommand '%s' (list, show or retry)\n", argv[1]);
		return 2;
	}
	const char *map = NULL, *to = NULL;
	long long offset = -1, partition = -1;
	int all = 0, opt;
	char *endp;
	optind = 1;
	while ((opt = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm': map = optarg; break;
		case 't': to = optarg; break;
		case 'a': all = 1; break;
		case 'o':
		case 'p':
		case 'l': {
			long long v = strtoll(optarg, &endp, 10);
			long long max = opt == 'l' ? DLQ_LIMIT_MAX : opt == 'p' ? 100000 : INT64_MAX;
			if (!isdigit((unsigned char)optarg[0]) || *endp || v < (opt == 'l' ? 1 : 0) || v > max) {
				fprintf(stderr, "ctl dlq: --%s '%s' is not a valid number\n",
					opt == 'o' ? "offset" : opt == 'p' ? "partition" : "limit", optarg);
				return 2;
			}
			if (opt == 'o')
				offset = v;
			else if (opt == 'p')
				partition = v;
			else
				c.limit = (long)v;
			break;
		}
		default: fprintf(stderr, "ctl dlq: see `ctl dlq --help`\n"); return 2;
		}
	}
	if (optind < argc - 1) {
		fprintf(stderr, "ctl dlq: unexpected argument '%s'\n", argv[optind + 1]);
		return 2;
	}
	if (!map || !to) {
		fprintf(stderr, "ctl dlq: --map NAME and --to ce|fo are required\n");
		return 2;
	}
	if (strcmp(to, "ce") != 0 && strcmp(to, "fo") != 0) {
		fprintf(stderr, "ctl dlq: --to must be ce or fo, not '%s'\n", to);
		return 2;
	}
	if (c.action == DLQ_SHOW && offset < 0) {
		fprintf(stderr, "ctl dlq show: --offset N is required\n");
		return 2;
	}
	if (c.action == DLQ_RETRY && (offset < 0) == !all) {
		fprintf(stderr, "ctl dlq retry: give exactly one of --offset N and --all\n");
		return 2;
	}
	if (c.action == DLQ_LIST && (offset >= 0 || all)) {
		fprintf(stderr, "ctl dlq list: --offset and --all are for show and retry\n");
		return 2;
	}
	struct ops_target *t = NULL;
	size_t n = 0;
	int rc = 1;
	if (ops_targets(cfg, map, to, &t, &n, c.err, sizeof(c.err)) != 0 || n != 1) {
		fprintf(stderr, "ctl dlq: %s\n", n != 1 && t ? "no such direction" : c.err);
		goto out;
	}
	c.t = t;
	if (c.action == DLQ_RETRY) {
		struct store_opts so = { .application_name = "dw-ctl" };
		if (!cfg->pg_dsn) {
			fprintf(stderr, "ctl dlq retry: DW_PG_DSN is not set\n");
			goto out;
		}
		struct kafka_producer_opts po = { .client_id = "dw-ctl-dlq-retry" };
		if (store_connect(cfg->pg_dsn, &so, &c.pg, c.err, sizeof(c.err)) != 0 ||
		    kafka_producer_new(cfg, &po, &c.producer, c.err, sizeof(c.err)) != 0) {
			fprintf(stderr, "ctl dlq retry: %s\n", c.err);
			goto out;
		}
	}
	long found = 0;
	int32_t only = offset >= 0 ? (int32_t)(partition < 0 ? 0 : partition) : (int32_t)partition;
	if (scan(&c, only, offset, offset >= 0, &found) != 0)
		goto out;
	if (offset >= 0 && found == 0) {
		fprintf(stderr, "ctl dlq: no dead letter at partition %" PRId32 " offset %lld of %s\n", only, offset,
			t->dlq_topic);
		goto out;
	}
	if (c.action == DLQ_RETRY) {
		if (kafka_producer_flush(c.producer, 30000, c.err, sizeof(c.err)) != 0) {
			fprintf(stderr, "ctl dlq retry: not every event was delivered: %s\n", c.err);
			goto out;
		}
		uint64_t ok = 0, failed = 0;
		kafka_producer_counts(c.producer, &ok, &failed);
		if (failed) {
			fprintf(stderr, "ctl dlq retry: %" PRIu64 " event(s) not delivered\n", failed);
			goto out;
		}
		printf("%ld event(s) sent back to %s\n", c.retried, t->source_topic);
		log_info("dead letters retried", "topic", t->dlq_topic, "to", t->source_topic);
	}
	rc = 0;
out:
	if (c.producer && kafka_producer_close(c.producer, 10000) != 0)
		rc = 1;
	store_close(c.pg);
	free(t);
	return rc;
}

const struct ctl_command ctl_dlq_command = {
	.name = "dlq",
	.summary = "list, show or retry a map's dead letters",
	.usage = usage,
	.run = run,
};
