/* Shared pieces of the operator commands: map targets and their Kafka names, offset queries, times. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka.h"
#include "map.h"
#include "mapnames.h"
#include "ops.h"

static int fill_target(const struct config_common *cfg, const struct map *m, enum event_side to,
		       struct ops_target *t, char *errbuf, size_t errlen)
{
	enum event_side from = to == EVENT_SIDE_CE ? EVENT_SIDE_FO : EVENT_SIDE_CE;
	memset(t, 0, sizeof(*t));
	snprintf(t->map, sizeof(t->map), "%s", m->name);
	snprintf(t->to, sizeof(t->to), "%s", event_side_name(to));
	snprintf(t->from, sizeof(t->from), "%s", event_side_name(from));
	struct mapnames names;
	if (mapnames_of(cfg->topic_prefix, m, to, &names, errbuf, errlen) != 0)
		return -1;
	snprintf(t->source_topic, sizeof(t->source_topic), "%s", names.source_topic);
	snprintf(t->group, sizeof(t->group), "%s", names.group);
	snprintf(t->dlq_topic, sizeof(t->dlq_topic), "%s", names.dlq_topic);
	return 0;
}

int ops_targets(const struct config_common *cfg, const char *map, const char *to, struct ops_target **out,
		size_t *n, char *errbuf, size_t errlen)
{
	struct map_set *set = NULL;
	char *dir = NULL;
	struct ops_target *v = NULL;
	size_t cnt = 0;
	int rc = -1;
	*out = NULL;
	*n = 0;
	if (to && strcmp(to, "ce") != 0 && strcmp(to, "fo") != 0) {
		snprintf(errbuf, errlen, "--to must be ce or fo, not '%s'", to);
		goto out;
	}
	if (config_str("DW_MAPS_DIR", "schemas/maps", &dir, errbuf, errlen) != 0 ||
	    map_load_dir(dir, &set, errbuf, errlen) != 0)
		goto out;
	if (map && !map_set_find(set, map)) {
		snprintf(errbuf, errlen, "no map '%s' in %s", map, dir);
		goto out;
	}
	v = calloc(set->n * 2 + 1, sizeof(*v));
	if (!v) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < set->n; i++) {
		const struct map *m = set->maps[i];
		if (map && strcmp(m->name, map) != 0)
			continue;
		for (int s = 0; s < 2; s++) {
			enum event_side side = s == 0 ? EVENT_SIDE_CE : EVENT_SIDE_FO;
			unsigned bit = side == EVENT_SIDE_FO ? MAP_DIR_CE_TO_FO : MAP_DIR_FO_TO_CE;
			if (to && strcmp(to, event_side_name(side)) != 0)
				continue;
			if (!(m->direction & bit)) {
				if (to) {
					snprintf(errbuf, errlen, "map '%s' does not sync to %s (direction %s)", m->name, to,
						 map_direction_name(m->direction));
					goto out;
				}
				continue;
			}
			if (fill_target(cfg, m, side, &v[cnt], errbuf, errlen) != 0)
				goto out;
			cnt++;
		}
	}
	*out = v;
	*n = cnt;
	v = NULL;
	rc = 0;
out:
	free(v);
	free(dir);
	map_set_free(set);
	return rc;
}

rd_kafka_t *ops_kafka_handle(const struct config_common *cfg, const char *group, char *errbuf, size_t errlen)
{
	char es[512];
	if (!cfg->kafka_brokers || !*cfg->kafka_brokers) {
		snprintf(errbuf, errlen, "DW_KAFKA_BROKERS is not set (Kafka bootstrap servers, host:port[,...])");
		return NULL;
	}
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, es, sizeof(es)) != RD_KAFKA_CONF_OK)
		goto bad;
	for (size_t i = 0; i < cfg->kafka_props_len; i++)
		if (rd_kafka_conf_set(conf, cfg->kafka_props[i].key, cfg->kafka_props[i].value, es, sizeof(es)) !=
		    RD_KAFKA_CONF_OK)
			goto bad;
	if (rd_kafka_conf_set(conf, "group.id", group ? group : "dw-ctl", es, sizeof(es)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", es, sizeof(es)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", es, sizeof(es)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "enable.partition.eof", "true", es, sizeof(es)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "isolation.level", "read_committed", es, sizeof(es)) != RD_KAFKA_CONF_OK)
		goto bad;
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es));
	if (!rk) {
		snprintf(errbuf, errlen, "kafka client: %s", es);
		return NULL;
	}
	return rk;
bad:
	snprintf(errbuf, errlen, "kafka setting: %s", es);
	rd_kafka_conf_destroy(conf);
	return NULL;
}

int ops_partitions(rd_kafka_t *rk, const char *topic, int *count, int *exists, char *errbuf, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	if (!t) {
		snprintf(errbuf, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, OPS_TIMEOUT_MS);
	rd_kafka_topic_destroy(t);
	if (e) {
		snprintf(errbuf, errlen, "metadata of %s: %s", topic, rd_kafka_err2str(e));
		return -1;
	}
	*count = 0;
	*exists = 0;
	if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		*count = md->topics[0].partition_cnt;
		*exists = 1;
	} else if (md->topic_cnt == 1 && md->topics[0].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
		snprintf(errbuf, errlen, "metadata of %s: %s", topic, rd_kafka_err2str(md->topics[0].err));
		rd_kafka_metadata_destroy(md);
		return -1;
	}
	rd_kafka_metadata_destroy(md);
	return 0;
}

int64_t ops_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int ops_parse_time(const char *text, int64_t now_ms, int64_t *out_ms)
{
	size_t len = text ? strlen(text) : 0;
	if (len == 0 || len > 64)
		return -1;
	/* relative: N followed by s, m, h or d */
	if (isdigit((unsigned char)text[0]) && strchr("smhd", text[len - 1]) && len <= 12) {
		int64_t v = 0;
		size_t i = 0;
		for (; i < len - 1; i++) {
			if (!isdigit((unsigned char)text[i]))
				break;
			v = v * 10 + (text[i] - '0');
		}
		if (i == len - 1) {
			int64_t unit = text[len - 1] == 's' ? 1000 : text[len - 1] == 'm' ? 60000
				     : text[len - 1] == 'h' ? 3600000 : 86400000;
			if (v > now_ms / unit)
				return -1;
			*out_ms = now_ms - v * unit;
			return 0;
		}
	}
	/* RFC 3339: YYYY-MM-DD[T ]hh:mm:ss[.frac](Z|+hh:mm|-hh:mm) */
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	int y, mo, d, h, mi, s;
	if (len < 20 || digits(text, 4, &y) || text[4] != '-' || digits(text + 5, 2, &mo) || text[7] != '-' ||
	    digits(text + 8, 2, &d) || (text[10] != 'T' && text[10] != 't' && text[10] != ' ') ||
	    digits(text + 11, 2, &h) || text[13] != ':' || digits(text + 14, 2, &mi) || text[16] != ':' ||
	    digits(text + 17, 2, &s))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return -1;
	const char *p = text + 19;
	int frac_ms = 0, scale = 100;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		for (; isdigit((unsigned char)*p); p++) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
		}
	}
	int off_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
			return -1;
		off_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -1;
	}
	if (*p)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	time_t t = timegm(&tm);
	struct tm back;
	if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != d || back.tm_mon != mo - 1)
		return -1; /* 2026-02-31 and the like */
	*out_ms = ((int64_t)t - (int64_t)off_min * 60) * 1000 + frac_ms;
	return 0;
}

void ops_format_time(int64_t ms, char *out, size_t len)
{
	if (ms < 0) {
		snprintf(out, len, "-");
		return;
	}
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char b[32];
	strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03dZ", b, (int)(ms % 1000));
}
