#ifndef DW_CTL_OPS_H
#define DW_CTL_OPS_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

/*
 * Shared by the operator commands (status, pause/resume, replay, dlq): what one map and target
 * side is called in Kafka, and a plain librdkafka consumer handle for offset queries.
 */

#define OPS_NAME_MAX 256
#define OPS_TIMEOUT_MS 10000

/* One map and the side it writes to, with the names the apply worker uses for it. */
struct ops_target {
	char map[OPS_NAME_MAX];
	char to[3];                       /* "ce" or "fo" */
	char from[3];                     /* the other side */
	char source_topic[OPS_NAME_MAX];  /* <prefix>.<from>.<entity> */
	char group[OPS_NAME_MAX];         /* <prefix>.apply.<map>.<to> */
	char dlq_topic[OPS_NAME_MAX];     /* <prefix>.dlq.<map>.<to> */
};

/*
 * Loads the maps (DW_MAPS_DIR, default schemas/maps) and fills the targets of map `map` (every
 * map when NULL) and side `to` (every side the map syncs to when NULL), in map order, ce before
 * fo. *out is a new array of *n entries the caller frees with free(). Fails (-1, errbuf) when the
 * maps do not load, the map is unknown, `to` is not ce/fo or the map does not sync towards it.
 */
int ops_targets(const struct config_common *cfg, const char *map, const char *to, struct ops_target **out,
		size_t *n, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Creates a librdkafka consumer handle with bootstrap.servers and the DW_KAFKA_* properties and,
 * when group is not NULL, group.id = group (no subscription, auto commit off). Returns the new
 * handle (rd_kafka_destroy) or NULL with errbuf. */
rd_kafka_t *ops_kafka_handle(const struct config_common *cfg, const char *group, char *errbuf, size_t errlen);

/* Partition count of `topic`: 0 and *exists 0 when the topic does not exist. Returns 0 or -1. */
int ops_partitions(rd_kafka_t *rk, const char *topic, int *count, int *exists, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Parses a time given as RFC 3339 (2026-11-30T01:00:00Z, offsets +hh:mm allowed, fractions
 * ignored) or relative to now (30s, 15m, 2h, 7d) into epoch milliseconds. Returns 0 or -1. */
int ops_parse_time(const char *text, int64_t now_ms, int64_t *out_ms);

/* Formats epoch milliseconds as RFC 3339 UTC with milliseconds into out. */
void ops_format_time(int64_t ms, char *out, size_t len);

/* Current wall-clock time in epoch milliseconds. */
int64_t ops_now_ms(void);

#endif
