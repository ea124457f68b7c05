#ifndef DW_COMMON_JSONOUT_H
#define DW_COMMON_JSONOUT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "strbuf.h"

/*
 * Compact JSON text of cJSON trees, for the apply worker's hot paths (known images, payloads).
 * cJSON_PrintUnformatted formats every number that does not fit an int (millisecond timestamps)
 * with sprintf and reads it back with sscanf to check it: a known image of 20 fields cost more to
 * print than to parse. Here an integral number up to 2^53 is written digit by digit; others as the
 * shortest of %.15g..%.17g that reads back exactly. Strings are escaped as cJSON does (", \, the
 * control characters; UTF-8 left as it is); NaN and infinities print as null, as in cJSON.
 * The event encoder (event.c) and the content hash (map_transform.c) write with the same rules.
 */

/* The text of number d into buf (at least 32 bytes): integral values below 1e17 in plain digits
 * (-0 as "-0", so that it reads back bit for bit),
 * others as the shortest of %.15g/%.16g/%.17g that reads back exactly (a '.' whatever the locale),
 * NaN and infinities as null. */
void jsonout_number(double d, char *buf, size_t len);

/* Appends s as a JSON string. */
void jsonout_string(struct strbuf *b, const char *s);

/* Appends the compact JSON text of v. 0, or -1 when v holds an invalid item (or a member without
 * a name) or nests deeper than 64: b then holds a partial text. */
int jsonout_value(struct strbuf *b, const cJSON *v);

/* The compact JSON text of v: a new NUL-terminated string, freed with free(); NULL when v is NULL,
 * holds an invalid item, nests deeper than 64, or memory runs out. */
char *jsonout_print(const cJSON *v);

#endif
