#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First commit: parser and translator not written yet; they fail cleanly. */

static int todo(char *errbuf, size_t errlen)
{
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "query: not implemented yet");
	return -1;
}

int query_parse(const char *qs, size_t len, enum query_flavour flavour, struct query *q, char *errbuf,
		size_t errlen)
{
	(void)qs; (void)len; (void)flavour;
	memset(q, 0, sizeof(*q));
	q->top = q->skip = -1;
	q->count = -1;
	return todo(errbuf, errlen);
}

void query_clear(struct query *q)
{
	if (!q)
		return;
	memset(q, 0, sizeof(*q));
	q->top = q->skip = -1;
	q->count = -1;
}

int query_filter_format(const struct query *q, char **out, char *errbuf, size_t errlen)
{
	(void)q;
	*out = NULL;
	return todo(errbuf, errlen);
}

int query_to_sql(const struct query *q, enum query_flavour flavour, const char *column, int first_param,
		 query_type_fn type_of, void *ctx, const char *type_name, struct query_sql *out, char *errbuf,
		 size_t errlen)
{
	(void)q; (void)flavour; (void)column; (void)first_param; (void)type_of; (void)ctx; (void)type_name;
	memset(out, 0, sizeof(*out));
	return todo(errbuf, errlen);
}

void query_sql_clear(struct query_sql *s)
{
	if (s)
		memset(s, 0, sizeof(*s));
}

const char *query_type_edm(enum query_type t)
{
	(void)t;
	return "Edm.Untyped";
}
