/* Aggregated maps (map.aggregate, e.g. product inventory): before an FO event is mapped, the
 * group it belongs to is re-read from F&O and the event's image becomes the group's sum. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "apply.h"
#include "odata.h"

#define AGG_FILTER_MAX 4096

/* The value of field `name` of the event: data first, then key. */
static const cJSON *event_value(const struct event *ev, const char *name)
{
	const cJSON *v = cJSON_IsObject(ev->data) ? cJSON_GetObjectItemCaseSensitive(ev->data, name) : NULL;
	return v ? v : cJSON_GetObjectItemCaseSensitive(ev->key, name);
}

/* "cross-company=true&$filter=<f1 eq 'v1' and ...>" (percent-encoded) with the event's values of
 * fields[0..n), as a new string; NULL with err when a field has no usable value. */
static char *filter_query(char *const *fields, size_t n, const struct event *ev, char *err, size_t errlen)
{
	char filter[AGG_FILTER_MAX], *enc = NULL, *out = NULL;
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		const cJSON *v = event_value(ev, fields[i]);
		char *lit = NULL, num[64];
		if (cJSON_IsString(v)) {
			if (odata_quote_literal(v->valuestring, &lit, err, errlen) != 0)
				return NULL;
		} else if (cJSON_IsNumber(v) && v->valuedouble == trunc(v->valuedouble)) {
			snprintf(num, sizeof(num), "%.0f", v->valuedouble);
		} else {
			snprintf(err, errlen, "aggregate: field %s has no string or whole-number value", fields[i]);
			return NULL;
		}
		int w = snprintf(filter + used, sizeof(filter) - used, "%s%s eq %s", i ? " and " : "", fields[i],
				 lit ? lit : num);
		free(lit);
		if (w < 0 || (size_t)w >= sizeof(filter) - used) {
			snprintf(err, errlen, "aggregate: group filter longer than %d bytes", AGG_FILTER_MAX);
			return NULL;
		}
		used += (size_t)w;
	}
	if (odata_pct_encode(filter, used, &enc, err, errlen) != 0)
		return NULL;
	if (asprintf(&out, "cross-company=true&$filter=%s", enc) < 0) {
		out = NULL;
		snprintf(err, errlen, "out of memory");
	}
	free(enc);
	return out;
}

/* aggregate.join: reads join_set by the event's join_on values and copies join_fields of its
 * first row into image. MAP_OK, MAP_NOT_FOUND (no such row: park), MAP_ERR_RESOLVE (retry) or
 * MAP_ERR_EVENT, with err. */
static int add_join(struct apply *a, const struct event *ev, cJSON *image, char *err, size_t errlen)
{
	const struct map_aggregate *ag = a->map->aggregate;
	char *query = filter_query(ag->join_on, ag->njoin_on, ev, err, errlen), *body = NULL;
	cJSON *res = NULL;
	int rc = MAP_ERR_EVENT, retryable = 0;
	if (!query)
		goto out;
	if (target_query(a->fo_reads, ag->join_set, query, &body, &retryable, err, errlen) != 0) {
		rc = MAP_ERR_RESOLVE;
		goto out;
	}
	res = cJSON_Parse(body);
	const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(res, "value"), 0);
	if (!cJSON_IsObject(row)) {
		snprintf(err, errlen, "aggregate: no %s row for the group yet", ag->join_set);
		rc = MAP_NOT_FOUND;
		goto out;
	}
	for (size_t i = 0; i < ag->njoin_fields; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, ag->join_fields[i]);
		cJSON *c = v ? cJSON_Duplicate(v, 0) : cJSON_CreateNull();
		cJSON_DeleteItemFromObjectCaseSensitive(image, ag->join_fields[i]);
		if (!c || !cJSON_AddItemToObject(image, ag->join_fields[i], c)) {
			cJSON_Delete(c);
			snprintf(err, errlen, "out of memory");
			rc = MAP_ERR_RESOLVE;
			goto out;
		}
	}
	rc = MAP_OK;
out:
	cJSON_Delete(res);
	free(body);
	free(query);
	return rc;
}

int apply_aggregate(struct apply *a, struct event *ev, long long now_ms, char *err, size_t errlen)
{
	const struct map_aggregate *ag = a->map->aggregate;
	char *query = NULL, *body = NULL;
	cJSON *res = NULL, *image = NULL;
	int rc = MAP_ERR_EVENT, retryable = 0;
	if (!ag || ev->source.side != EVENT_SIDE_FO)
		return MAP_OK;
	if (!a->fo_reads) {
		snprintf(err, errlen, "aggregate: no F&O reader configured");
		return MAP_ERR_RESOLVE;
	}
	if (!(query = filter_query(ag->group_by, ag->ngroup_by, ev, err, errlen)))
		goto out;
	if (target_query(a->fo_reads, a->map->fo.entity_set, query, &body, &retryable, err, errlen) != 0) {
		rc = MAP_ERR_RESOLVE;
		goto out;
	}
	res = cJSON_Parse(body);
	const cJSON *rows = cJSON_GetObjectItemCaseSensitive(res, "value");
	if (!cJSON_IsArray(rows)) {
		snprintf(err, errlen, "aggregate: the %s answer has no value array", a->map->fo.entity_set);
		rc = MAP_ERR_RESOLVE;
		goto out;
	}
	if (cJSON_GetObjectItemCaseSensitive(res, "@odata.nextLink")) {
		snprintf(err, errlen, "aggregate: the group has more rows than one %s page", a->map->fo.entity_set);
		goto out;
	}
	/* the image: the event's own (or its key, for a delete) with the group's sums */
	image = cJSON_Duplicate(cJSON_IsObject(ev->data) ? ev->data : ev->key, 1);
	if (!image) {
		snprintf(err, errlen, "out of memory");
		rc = MAP_ERR_RESOLVE;
		goto out;
	}
	for (size_t s = 0; s < ag->nsum; s++) {
		double sum = 0;
		const cJSON *row;
		cJSON_ArrayForEach(row, rows)
		{
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, ag->sum[s]);
			if (cJSON_IsNumber(v))
				sum += v->valuedouble;
			else if (v && !cJSON_IsNull(v)) {
				snprintf(err, errlen, "aggregate: %s of a %s row is not a number", ag->sum[s],
					 a->map->fo.entity_set);
				goto out;
			}
		}
		sum = round(sum * 1e6) / 1e6; /* decimals summed as doubles: no 0.1 + 0.2 tails */
		cJSON_DeleteItemFromObjectCaseSensitive(image, ag->sum[s]);
		if (!cJSON_AddNumberToObject(image, ag->sum[s], sum == 0 ? 0 : sum)) {
			snprintf(err, errlen, "out of memory");
			rc = MAP_ERR_RESOLVE;
			goto out;
		}
	}
	if (ag->join_set && (rc = add_join(a, ev, image, err, errlen)) != MAP_OK)
		goto out;
	rc = MAP_ERR_EVENT;
	cJSON_Delete(ev->data);
	ev->data = image;
	image = NULL;
	if (ev->op == EVENT_OP_DELETE)
		ev->op = EVENT_OP_UPDATE; /* a row gone: the group is written with what remains */
	/* every re-read is the group's current state: it supersedes any earlier one, whatever the
	 * order or number of the events that triggered them */
	ev->source.version = now_ms;
	rc = MAP_OK;
out:
	cJSON_Delete(image);
	cJSON_Delete(res);
	free(body);
	free(query);
	return rc;
}
