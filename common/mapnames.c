#include "mapnames.h"

#include <stdio.h>
#include <string.h>

#include "kafka.h"

int mapnames_of(const char *prefix, const struct map *m, enum event_side to, struct mapnames *out, char *err,
		size_t errlen)
{
	enum event_side from = to == EVENT_SIDE_CE ? EVENT_SIDE_FO : EVENT_SIDE_CE;
	char table[MAP_IDENT_MAX + 8], entity[MAP_IDENT_MAX + 1];
	const char *e = map_side_of(m, from)->entity;
	size_t k = 0;
	memset(out, 0, sizeof(*out));
	for (; e[k] && k < sizeof(entity) - 1; k++)
		entity[k] = (char)(e[k] >= 'A' && e[k] <= 'Z' ? e[k] - 'A' + 'a' : e[k]);
	entity[k] = '\0';
	snprintf(table, sizeof(table), "%s.%s", event_side_name(from), entity);
	if (kafka_table_topic(prefix, table, out->source_topic, sizeof(out->source_topic), err, errlen) != 0)
		return -1;
	int a = snprintf(out->dlq_topic, sizeof(out->dlq_topic), "%s.dlq.%s.%s", prefix, m->name, event_side_name(to));
	int b = snprintf(out->group, sizeof(out->group), "%s.apply.%s.%s", prefix, m->name, event_side_name(to));
	if (a < 0 || (size_t)a >= sizeof(out->dlq_topic) || b < 0 || (size_t)b >= sizeof(out->group)) {
		snprintf(err, errlen, "map %s: its dead-letter topic or consumer group name would be too long", m->name);
		return -1;
	}
	return 0;
}
