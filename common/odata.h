#ifndef DW_ODATA_H
#define DW_ODATA_H

#include <stddef.h>

/*
 * OData URL codecs shared by the apply workers (client side) and the emulators (server side):
 * percent-encoding, string literals, key predicates ("(...)" after an entity set name) and OData
 * error bodies. Pure: no I/O, no global state, thread-safe.
 *
 * Conventions: fallible functions return 0 on success or -1 with errbuf filled (errbuf may be
 * NULL when errlen is 0). Strings returned through `out` are new allocations the caller frees
 * with free(). Inputs longer than ODATA_TEXT_MAX are refused with a clear error.
 */

#define ODATA_TEXT_MAX (64 * 1024) /* cap on any single input (a URL in a $batch may be 64 KB) */
#define ODATA_KEY_MAX_PARTS 16      /* WarehousesOnHandV2 has nine key parts */
#define ODATA_NAME_MAX 128          /* cap on a key property name */

/* RFC 3986 percent-encoding: every byte except the unreserved set (A-Z a-z 0-9 - . _ ~) becomes
 * %XX (upper-case hex); UTF-8 is encoded byte by byte. `len` bytes of `in` are read (may contain
 * no NUL). *out is a new NUL-terminated string. Fails only on the size cap or out of memory. */
int odata_pct_encode(const char *in, size_t len, char **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Decodes %XX sequences (either hex case); every other byte is copied as is ('+' stays '+', as
 * RFC 3986 and OData want). Fails, naming the 0-based byte offset, on a '%' not followed by two
 * hex digits and on %00 (values are C strings). *out is a new NUL-terminated string; *outlen
 * (may be NULL) receives its length. */
int odata_pct_decode(const char *in, size_t len, char **out, size_t *outlen, char *errbuf,
		     size_t errlen) __attribute__((warn_unused_result));

/* OData string literal, not yet percent-encoded: O'Brien -> 'O''Brien' (quotes around, every
 * embedded single quote doubled). *out is new. */
int odata_quote_literal(const char *value, char **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Kinds of key values. */
enum odata_kind {
	ODATA_KIND_STRING = 0, /* 'text' */
	ODATA_KIND_INT,        /* 42, -7 */
	ODATA_KIND_GUID,       /* bare 8-4-4-4-12 hex */
	ODATA_KIND_ENUM,       /* Microsoft.Dynamics.DataEntities.NoYes'Yes' (FO) */
};

/* Returns "string", "int", "guid" or "enum". */
const char *odata_kind_name(enum odata_kind kind);

/*
 * One part of a key predicate. For building, the strings are borrowed from the caller.
 *   name       property name, or NULL for the single-value form "(value)"
 *   value      the plain (decoded, unquoted) value: O'Brien, 42, a GUID, or the enum member Yes
 *   kind       how the value is written
 *   enum_type  for ODATA_KIND_ENUM only: the qualified enum type,
 *              e.g. "Microsoft.Dynamics.DataEntities.NoYes"; NULL otherwise
 */
struct odata_key_part {
	const char *name;
	const char *value;
	enum odata_kind kind;
	const char *enum_type;
};

/*
 * Builds the key segment for a URL, parentheses included:
 *   one unnamed part        (00000000-0000-0000-0000-000000000001)  ('ABC')  (42)
 *   named parts             (dataAreaId='usmf',CustomerAccount='US%2F001')
 * String and enum member literals are quote-doubled, then percent-encoded (spaces, '/', '#', '?',
 * '%', non-ASCII... become %XX; the surrounding quotes, '(', ')', '=' and ',' stay literal).
 * Names must be identifiers ([A-Za-z_][A-Za-z0-9_]*), unique; an unnamed part must be the only
 * one; INT values must be decimal integers, GUID values 8-4-4-4-12 hex, enum types dotted
 * identifiers. Fails on any violation, naming the part. *out is new.
 */
int odata_key_build(const struct odata_key_part *parts, size_t nparts, char **out, char *errbuf,
		    size_t errlen) __attribute__((warn_unused_result));

/*
 * A parsed key predicate. parts[i] point into `buf_`, owned by the struct and released by
 * odata_key_clear(). Values are decoded and unquoted; GUID values are lower-cased.
 */
struct odata_key {
	size_t nparts;
	struct odata_key_part parts[ODATA_KEY_MAX_PARTS];
	char *buf_;
};

/*
 * Parses a key predicate from raw (still percent-encoded) URL text starting at '(' - the text
 * after the entity set name, e.g. "(accountnumber='O''Brien%2F1')". Percent-escapes are decoded
 * while parsing, so an encoded quote (%27) counts as a quote. Accepts: a bare GUID, an integer,
 * a quoted string with doubled quotes, an FO enum literal, or a list of name=value pairs of
 * these. Strict: unbalanced quotes, empty or invalid names, duplicate names, a mix of named and
 * unnamed parts, a missing value ("name=,"; '' is a valid value), more than ODATA_KEY_MAX_PARTS
 * parts and bad %XX fail with an
 * error naming the 0-based byte offset in `text` and what was expected.
 * When `consumed` is NULL the predicate must end the text (anything after ')' is trailing junk);
 * otherwise parsing stops after ')' and *consumed receives the number of bytes used (so a caller
 * can go on with "/$ref" or a property path). On success *key is filled (the caller clears it
 * with odata_key_clear); on failure *key is left empty.
 * Note for servers: libmicrohttpd unescapes the URL by default; keep the raw path (for example
 * with MHD_OPTION_UNESCAPE_CALLBACK) so that %2F and %27 inside literals survive.
 */
int odata_key_parse(const char *text, size_t len, size_t *consumed, struct odata_key *key,
		    char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/*
 * Parses an entity reference as found in "nav@odata.bind" values and batch URLs:
 * "accounts(<key>)", "/accounts(<key>)", "/api/data/v9.2/accounts(<key>)" or an absolute URL
 * ending in one of those. The entity set is the identifier right before the first '(' (after the
 * last '/' before it); the key predicate must end the text (a query string is not allowed).
 * *entity_set is new (caller frees); *key as for odata_key_parse. Fails (naming the offset) when
 * there is no '(' or no valid entity set name before it, or when the key predicate is invalid;
 * on failure *entity_set is NULL and *key empty.
 */
int odata_entity_ref_parse(const char *text, size_t len, char **entity_set, struct odata_key *key,
			   char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Releases what odata_key_parse allocated; NULL-safe; leaves *key empty (nparts 0). */
void odata_key_clear(struct odata_key *key);

/* Returns the part named `name` (exact, case-sensitive) or NULL. */
const struct odata_key_part *odata_key_find(const struct odata_key *key, const char *name);

/* An OData error as a client sees it. All three are new strings, never NULL after a successful
 * parse ("" when absent). */
struct odata_error {
	char *code;          /* Dataverse "0x80044331"; often "" on FO */
	char *message;       /* error.message, or the raw body (capped) when it is not OData JSON */
	char *inner_message; /* error.innererror.message (FO), or the Dataverse
			      * "@Microsoft.PowerApps.CDS.InnerError.Message" annotation; "" if absent */
};

#define ODATA_ERROR_RAW_MAX 1024 /* cap on the raw-body message kept for a non-JSON body */

/*
 * Parses an error response body: {"error":{"code":..,"message":..[,"innererror":{"message":..}]}}
 * (Dataverse and FO shapes). A body that is not such JSON (HTML, plain text, empty) is tolerated:
 * code "" and message = the body's first ODATA_ERROR_RAW_MAX bytes with control characters
 * replaced by spaces. Returns 0 for an OData error body, 1 for the tolerated fallback, -1 only
 * when out of memory (then *err is left empty). The caller clears *err with odata_error_clear.
 */
int odata_error_parse(const char *body, size_t len, struct odata_error *err)
	__attribute__((warn_unused_result));

/* Releases an odata_error's strings; NULL-safe; leaves it zeroed. */
void odata_error_clear(struct odata_error *err);

/*
 * Builds an OData error body {"error":{"code":code,"message":message}}; when inner_message is not
 * NULL an "innererror":{"message":inner_message,"type":inner_type or "",...} object is added (FO
 * shape). code and message may not be NULL (use "" for an empty code). *out is a new compact
 * JSON string. Fails only when out of memory.
 */
int odata_error_build(const char *code, const char *message, const char *inner_message,
		      const char *inner_type, char **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

#endif
