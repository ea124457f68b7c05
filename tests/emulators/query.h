#ifndef DW_EMU_QUERY_H
#define DW_EMU_QUERY_H

#include <stddef.h>

/*
 * The emulators' OData query options: parsing a request's query string and translating $filter
 * and $orderby into PostgreSQL over a JSONB column. Pure (no I/O), thread-safe.
 *
 * Translation never pastes a value into SQL: every literal becomes a $n placeholder with its text
 * in the parameter array; field names are checked identifiers written as JSON-key string literals
 * (r.data->>'name'). String comparisons are case-insensitive (lower() on both sides), as on the
 * SQL Server collations behind both real services. Each comparison yields true or false, never
 * NULL, so "not" behaves as in OData (null ne 'x' is true).
 *
 * Conventions: fallible functions return 0 or -1 with errbuf filled; the message is meant for the
 * client (an emulator puts it in an OData error body with HTTP 400) and names the byte offset in
 * the option's decoded text where it helps.
 */

#define QUERY_STRING_MAX (64 * 1024) /* cap on the raw query string */
#define QUERY_FILTER_MAX (32 * 1024) /* cap on the decoded $filter text */
#define QUERY_DEPTH_MAX 32           /* cap on parenthesis / not nesting */
#define QUERY_NODES_MAX 1000         /* cap on comparisons in one $filter */
#define QUERY_SELECT_MAX 500         /* cap on $select / $orderby items */

enum query_flavour {
	QUERY_CE = 0, /* Dataverse Web API: contains/startswith/endswith, no $skip, no cross-company */
	QUERY_FO,     /* FO OData: $skip, cross-company, eq '*x*' wildcards, no string functions */
};

/* Field types, as the caller's schema knows them. */
enum query_type {
	QUERY_T_UNKNOWN = 0, /* no such field: "Could not find a property named 'x'" */
	QUERY_T_STRING,
	QUERY_T_INT,
	QUERY_T_DECIMAL,
	QUERY_T_DOUBLE,
	QUERY_T_BOOL,
	QUERY_T_DATETIME, /* ISO 8601 with zone in the JSON, compared as timestamptz */
	QUERY_T_DATE,     /* YYYY-MM-DD in the JSON */
	QUERY_T_GUID,
	QUERY_T_ENUM, /* FO enum: the JSON holds the member name ("Yes"); eq/ne only */
};

/* Returns the type of field `name` in the caller's entity, QUERY_T_UNKNOWN when it has none. */
typedef enum query_type (*query_type_fn)(void *ctx, const char *name);

struct query_expr; /* a parsed $filter (opaque) */

struct query_order {
	char *field;
	int desc; /* 0 asc, 1 desc */
};

struct query_param {
	char *name;  /* decoded */
	char *value; /* decoded, "" when the parameter had no '=' */
};

/* A parsed query string; every pointer is owned by the struct (query_clear releases it). */
struct query {
	struct query_expr *filter; /* NULL when no $filter */
	char **select;             /* NULL when no $select */
	size_t nselect;
	struct query_order *orderby; /* NULL when no $orderby */
	size_t norderby;
	long long top;       /* -1 when absent */
	long long skip;      /* -1 when absent (FO only) */
	int count;           /* -1 absent, 0 false, 1 true */
	int cross_company;   /* FO: 1 for cross-company=true; always 0 on CE */
	char *skiptoken;     /* $skiptoken, NULL when absent (opaque to this module) */
	char *deltatoken;    /* $deltatoken, NULL when absent (opaque to this module) */
	struct query_param *extra; /* other parameters without '$' (passed through), in order */
	size_t nextra;
};

/*
 * Parses a raw query string (the text after '?', without it; may be empty or NULL with len 0).
 * Parameters are split on '&', names and values percent-decoded per RFC 3986 ('+' is a plus,
 * not a space). Known options: $filter, $select, $orderby, $top, $skip (FO only), $count,
 * $skiptoken, $deltatoken, and on FO cross-company=true|false. $expand is refused ("not
 * supported by the emulator"); other $-options ($search, $apply, $format, unknown) are refused;
 * a repeated option is refused. Names without '$' (other than cross-company on FO) go to
 * q->extra. $filter is parsed completely here (syntax only: field types are checked by
 * query_to_sql). $select and $orderby hold identifiers; $top and $skip non-negative integers;
 * $count true or false.
 * $filter grammar: or < and < not < comparison; parentheses; comparisons "field op literal" with
 * op in eq ne gt ge lt le; literals 'text' (quotes doubled), integers, decimals, true, false, null,
 * GUIDs, dates (2025-01-31), datetimes (2025-01-31T10:00:00Z, offsets and fractions allowed),
 * enum literals Microsoft.Dynamics.DataEntities.<Enum>'<Member>'; on CE also
 * contains(field,'x'), startswith(field,'x'), endswith(field,'x'). Caps QUERY_FILTER_MAX,
 * QUERY_DEPTH_MAX and QUERY_NODES_MAX.
 * On success *q is filled (caller releases it with query_clear); on failure *q is left empty.
 */
int query_parse(const char *qs, size_t len, enum query_flavour flavour, struct query *q,
		char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Releases everything in *q; NULL-safe; leaves *q as after a parse of "" (top/skip/count -1). */
void query_clear(struct query *q);

/*
 * Writes q->filter in a canonical, fully parenthesised form for tests and logs, e.g.
 * "((name eq 'O''Brien') and (not (revenue gt 10)))". *out is new; "" when there is no filter.
 */
int query_filter_format(const struct query *q, char **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* SQL produced by query_to_sql; every member owned by the struct. */
struct query_sql {
	char *where;    /* boolean expression; "TRUE" when there is no $filter */
	char *order_by; /* "expr ASC, expr DESC" without "ORDER BY"; NULL when no $orderby */
	char **params;  /* text values of $first_param .. $first_param+nparams-1, never NULL members */
	size_t nparams;
};

/*
 * Translates q's $filter and $orderby for PostgreSQL. `column` is the SQL expression of the JSONB
 * column holding the record (e.g. "r.data"; trusted, written as given). Placeholders are numbered
 * from `first_param` (>= 1). `type_of(ctx, name)` gives each field's type; every field named in
 * $filter, $orderby and $select is checked: an unknown one fails with "Could not find a property
 * named '<name>' on type '<type_name>'." (type_name may be NULL: then the "on type" clause is
 * left out). A literal whose type does not fit the field fails with "A binary operator with
 * incompatible types was detected. Found operand types '<Edm.X>' and '<Edm.Y>' for operator kind
 * '<Kind>'."; gt/ge/lt/le on bool, guid or enum fields, and on null, fail; string functions need
 * string fields. On FO, "eq '<text with *>'" on a string field matches with '*' as a wildcard
 * (LIKE, with %, _ and \ in the text matched literally); ne gives the negation.
 * On success *out is filled (caller releases with query_sql_clear); on failure *out is empty.
 */
int query_to_sql(const struct query *q, enum query_flavour flavour, const char *column,
		 int first_param, query_type_fn type_of, void *ctx, const char *type_name,
		 struct query_sql *out, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Releases a query_sql's members; NULL-safe; leaves it zeroed. */
void query_sql_clear(struct query_sql *s);

/* The OData type name used in error messages ("Edm.String", "Edm.Int32", ...). */
const char *query_type_edm(enum query_type t);

#endif
