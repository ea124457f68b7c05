#ifndef DW_MAPNAMES_H
#define DW_MAPNAMES_H

#include <stddef.h>

#include "event.h"
#include "map.h"

/*
 * What one map and target side are called in Kafka, in one place for the apply worker and ctl:
 *   source topic   <prefix>.<from>.<from entity, lower case>   (DESIGN section 4)
 *   dead letters   <prefix>.dlq.<map>.<to>
 *   consumer group <prefix>.apply.<map>.<to>
 * The prefix (DW_TOPIC_PREFIX) is in every name, so pairings that share a Kafka cluster with
 * different prefixes never share a topic or a consumer group.
 */

#define MAPNAMES_MAX 256

struct mapnames {
	char source_topic[MAPNAMES_MAX];
	char dlq_topic[MAPNAMES_MAX];
	char group[MAPNAMES_MAX];
};

/* Fills *out for map m written to side `to`. Returns 0, or -1 with err when a name would be too
 * long or not a valid topic name. */
int mapnames_of(const char *prefix, const struct map *m, enum event_side to, struct mapnames *out, char *err,
		size_t errlen) __attribute__((warn_unused_result));

#endif
