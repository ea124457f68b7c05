#ifndef DW_DEMO_DPLAN_H
#define DW_DEMO_DPLAN_H

#include <stddef.h>

#include "map.h"

/*
 * What the maps of a directory need running: the capture table entries of each side (the
 * DW_CAPTURE_TABLES syntax of docs/capture.md), the topics, one apply worker per map and
 * direction, and the entities webhooks are registered for. The parts maps do not carry (FO
 * data-event names, which CE key columns are lookups) come from the emulators' schema files.
 */

#define DPLAN_TABLES_MAX (2 * MAP_MAPS_MAX)
#define DPLAN_ENTRY_MAX 1024

struct dplan {
	char ce_tables[DPLAN_TABLES_MAX][DPLAN_ENTRY_MAX]; /* "account@accounts:accountnumber+_msdyn_company_value" */
	size_t n_ce;
	char fo_tables[DPLAN_TABLES_MAX][DPLAN_ENTRY_MAX]; /* "CustomersV3@mserp_custcustomerv3entity:dataAreaId+..." */
	size_t n_fo;
	char ce_entities[DPLAN_TABLES_MAX][MAP_IDENT_MAX + 1]; /* webhook entity / topic entity per CE table */
	char fo_entities[DPLAN_TABLES_MAX][MAP_IDENT_MAX + 1];
	char topics[2 * DPLAN_TABLES_MAX][MAP_IDENT_MAX + 4]; /* "ce.account", "fo.customersv3" (as apply names them) */
	size_t n_topics;
};

/*
 * Builds the plan for set from the emulator schema files ce.json and fo.json in schemas_dir.
 * *out is the caller's (free()). Returns 0, or -1 with err (unreadable schema, an FO entity set
 * the schema does not know).
 */
int dplan_build(const struct map_set *set, const char *schemas_dir, struct dplan **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Prints the plan as shell assignments (DEMO_MAPS, DEMO_CE_TABLES, DEMO_FO_TABLES, DEMO_TOPICS,
 * DEMO_WORKERS); every value is made of identifier characters and @:+.,_ only. */
void dplan_print(const struct map_set *set, const struct dplan *p);

#endif
