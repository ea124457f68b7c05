/*
 * `ctl status`: per map and direction, the map's state, the consumer lag of its apply group, its
 * parked events, dead letters and open (partly staged) source transactions.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "applystate.h"
#include "ctl.h"
#include "ops.h"
#include "store.h"

static const char usage[] =
	"usage: ctl status [--map NAME] [--json]\n"
	"\n"
	"Shows, for every map in DW_MAPS_DIR (or just NAME) and every direction it syncs, by target side:\n"
	"  STATE      running, paused or failed (dw_map_state), with its reason\n"
	"  LAG        events on the source topic not yet committed by the group <prefix>.apply.<map>.<to>\n"
	"             (sum over partitions of high watermark - committed offset; a partition without a\n"
	"             committed offset counts from its low watermark)\n"
	"  PARKED     events parked behind a conflict or missing dependency (dw_parked_event)\n"
	"  DLQ        messages in the dead-letter topic <prefix>.dlq.<map>.<to> (end - start offsets)\n"
	"  OPEN_TXNS  source transactions with parts staged, waiting for the rest (dw_txn_part; a unit\n"
	"             is cleared once applied or dead-lettered)\n"
	"as an aligned table, or as a JSON array with --json.\n"
	"\n"
	"options:\n"
	"  --map NAME   only this map\n"
	"  --json       one JSON document on stdout\n"
	"  -h, --help   this text\n"
	"settings: DW_KAFKA_BROKERS, DW_PG_DSN[_FILE], DW_TOPIC_PREFIX, DW_MAPS_DIR, DW_KAFKA_*\n"
	"exit status: 0 done, 1 failure, 2 usage error\n";

struct row {
	const struct ops_target *t;
	char state[16];
	char *reason;
	int64_t lag, parked, dlq, open_txns;
};

/* Lag of t's group on its source topic. */
static int group_lag(const struct config_common *cfg, const struct ops_target *t, int64_t *lag, char *err,
		     size_t errlen)
{
	rd_kafka_t *rk = ops_kafka_handle(cfg, t->group, err, errlen);
	rd_kafka_topic_partition_list_t *l = NULL;
	int rc = -1, parts = 0, exists = 0;
	*lag = 0;
	if (!rk || ops_partitions(rk, t->source_topic, &parts, &exists, err, errlen) != 0)
		goto out;
	if (!exists) {
		rc = 0;
		goto out;
	}
	l = rd_kafka_topic_partition_list_new(parts);
	for (int p = 0; p < parts; p++)
		rd_kafka_topic_partition_list_add(l, t->source_topic, p);
	rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, OPS_TIMEOUT_MS);
	if (e) {
		snprintf(err, errlen, "committed offsets of %s: %s", t->group, rd_kafka_err2str(e));
		goto out;
	}
	for (int p = 0; p < parts; p++) {
		int64_t lo = 0, hi = 0;
		e = rd_kafka_query_watermark_offsets(rk, t->source_topic, p, &lo, &hi, OPS_TIMEOUT_MS);
		if (e) {
			snprintf(err, errlen, "watermarks of %s [%d]: %s", t->source_topic, p, rd_kafka_err2str(e));
			goto out;
		}
		int64_t c = l->elems[p].offset < lo ? lo : l->elems[p].offset;
		if (hi > c)
			*lag += hi - c;
	}
	rc = 0;
out:
	if (l)
		rd_kafka_topic_partition_list_destroy(l);
	if (rk)
		rd_kafka_destroy(rk);
	return rc;
}

/* Messages held in topic (0 when it does not exist). */
static int topic_count(const struct config_common *cfg, const char *topic, int64_t *count, char *err,
		       size_t errlen)
{
	rd_kafka_t *rk = ops_kafka_handle(cfg, NULL, err, errlen);
	int rc = -1, parts = 0, exists = 0;
	*count = 0;
	if (!rk || ops_partitions(rk, topic, &parts, &exists, err, errlen) != 0)
		goto out;
	for (int p = 0; p < parts; p++) {
		int64_t lo = 0, hi = 0;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, OPS_TIMEOUT_MS);
		if (e) {
			snprintf(err, errlen, "watermarks of %s [%d]: %s", topic, p, rd_kafka_err2str(e));
			goto out;
		}
		*count += hi - lo;
	}
	rc = 0;
out:
	if (rk)
		rd_kafka_destroy(rk);
	return rc;
}

static int row_fill(const struct config_common *cfg, PGconn *pg, struct row *r, char *err, size_t errlen)
{
	struct applystate *st = NULL;
	PGresult *res = NULL;
	enum applystate_map_state s;
	int rc = -1;
	if (applystate_new(pg, r->t->map, r->t->to, &st, err, errlen) != 0 ||
	    applystate_map_get(st, &s, &r->reason, err, errlen) != 0 ||
	    applystate_parked_count(st, &r->parked, err, errlen) != 0)
		goto out;
	snprintf(r->state, sizeof(r->state), "%s", applystate_map_state_name(s));
	const char *p[] = { r->t->map, r->t->from };
	if (store_exec(pg,
		       "SELECT count(DISTINCT txn_id) FROM dw_txn_part WHERE map_name = $1 AND source_side = $2",
		       2, p, &res, err, errlen) != 0)
		goto out;
	r->open_txns = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (group_lag(cfg, r->t, &r->lag, err, errlen) != 0 || topic_count(cfg, r->t->dlq_topic, &r->dlq, err, errlen) != 0)
		goto out;
	rc = 0;
out:
	PQclear(res);
	applystate_free(st);
	return rc;
}

static void print_table(const struct row *rows, size_t n)
{
	int wm = 3;
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(rows[i].t->map) > wm)
			wm = (int)strlen(rows[i].t->map);
	printf("%-*s  %-2s  %-7s  %10s  %8s  %8s  %9s  %s\n", wm, "MAP", "TO", "STATE", "LAG", "PARKED", "DLQ",
	       "OPEN_TXNS", "REASON");
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		printf("%-*s  %-2s  %-7s  %10" PRId64 "  %8" PRId64 "  %8" PRId64 "  %9" PRId64 "  %s\n", wm, r->t->map,
		       r->t->to, r->state, r->lag, r->parked, r->dlq, r->open_txns, r->reason ? r->reason : "");
	}
}

static int print_json(const struct row *rows, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; a && i < n; i++) {
		const struct row *r = &rows[i];
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(a, o)) {
			cJSON_Delete(o);
			cJSON_Delete(a);
			return -1;
		}
		cJSON_AddStringToObject(o, "map", r->t->map);
		cJSON_AddStringToObject(o, "to", r->t->to);
		cJSON_AddStringToObject(o, "state", r->state);
		if (r->reason)
			cJSON_AddStringToObject(o, "reason", r->reason);
		else
			cJSON_AddNullToObject(o, "reason");
		cJSON_AddStringToObject(o, "source_topic", r->t->source_topic);
		cJSON_AddStringToObject(o, "group", r->t->group);
		cJSON_AddNumberToObject(o, "lag", (double)r->lag);
		cJSON_AddNumberToObject(o, "parked", (double)r->parked);
		cJSON_AddStringToObject(o, "dlq_topic", r->t->dlq_topic);
		cJSON_AddNumberToObject(o, "dead_letters", (double)r->dlq);
		cJSON_AddNumberToObject(o, "open_transactions", (double)r->open_txns);
	}
	char *s = a ? cJSON_Print(a) : NULL;
	cJSON_Delete(a);
	if (!s)
		return -1;
	puts(s);
	free(s);
	return 0;
}

static int run(int argc, char **argv, const struct config_common *cfg)
{
	static const struct option longopts[] = {
		{ "map", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *map = NULL;
	int json = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm': map = optarg; break;
		case 'j': json = 1; break;
		default: fprintf(stderr, "ctl status: see `ctl status --help`\n"); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ctl status: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	char err[1024];
	struct ops_target *t = NULL;
	struct row *rows = NULL;
	size_t n = 0;
	PGconn *pg = NULL;
	int rc = 1;
	if (ops_targets(cfg, map, NULL, &t, &n, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl status: %s\n", err);
		goto out;
	}
	if (!cfg->pg_dsn) {
		fprintf(stderr, "ctl status: DW_PG_DSN is not set\n");
		goto out;
	}
	struct store_opts so = { .application_name = "dw-ctl" };
	if (store_connect(cfg->pg_dsn, &so, &pg, err, sizeof(err)) != 0) {
		fprintf(stderr, "ctl status: postgresql: %s\n", err);
		goto out;
	}
	rows = calloc(n + 1, sizeof(*rows));
	if (!rows) {
		fprintf(stderr, "ctl status: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rows[i].t = &t[i];
		if (row_fill(cfg, pg, &rows[i], err, sizeof(err)) != 0) {
			fprintf(stderr, "ctl status: map %s to %s: %s%s\n", t[i].map, t[i].to, err,
				strstr(err, "SQLSTATE 42P01") ? " (is the schema there? run `ctl migrate`)" : "");
			goto out;
		}
	}
	if (json) {
		if (print_json(rows, n) != 0) {
			fprintf(stderr, "ctl status: out of memory\n");
			goto out;
		}
	} else {
		print_table(rows, n);
	}
	rc = 0;
out:
	for (size_t i = 0; rows && i < n; i++)
		free(rows[i].reason);
	free(rows);
	store_close(pg);
	free(t);
	return rc;
}

const struct ctl_command ctl_status_command = {
	.name = "status",
	.summary = "per map and direction: state, consumer lag, parked, dead letters, open transactions",
	.usage = usage,
	.run = run,
};
