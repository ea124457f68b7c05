#include "odata_batch.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* First commit: framing not written yet; every builder/parser fails cleanly. */

static int todo(char *errbuf, size_t errlen)
{
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "odata_batch: not implemented yet");
	return -1;
}

int odata_batch_request_build(const struct odata_batch_part *parts, size_t nparts, const char *batch_id,
			      char **body, size_t *body_len, char **content_type, char *errbuf, size_t errlen)
{
	(void)parts; (void)nparts; (void)batch_id;
	*body = NULL; *body_len = 0; *content_type = NULL;
	return todo(errbuf, errlen);
}

int odata_batch_request_parse(const char *content_type, const char *body, size_t len, size_t max_body,
			      struct odata_batch *out, char *errbuf, size_t errlen)
{
	(void)content_type; (void)body; (void)len; (void)max_body;
	memset(out, 0, sizeof(*out));
	return todo(errbuf, errlen);
}

void odata_batch_clear(struct odata_batch *b)
{
	if (b)
		memset(b, 0, sizeof(*b));
}

const char *odata_batch_status_text(int status)
{
	(void)status;
	return "Unknown";
}

int odata_batch_response_build(const struct odata_batch_response_part *parts, size_t nparts,
			       const char *batch_id, char **body, size_t *body_len, char **content_type,
			       char *errbuf, size_t errlen)
{
	(void)parts; (void)nparts; (void)batch_id;
	*body = NULL; *body_len = 0; *content_type = NULL;
	return todo(errbuf, errlen);
}

int odata_batch_response_parse(const char *content_type, const char *body, size_t len, size_t max_body,
			       struct odata_batch_result *out, char *errbuf, size_t errlen)
{
	(void)content_type; (void)body; (void)len; (void)max_body;
	memset(out, 0, sizeof(*out));
	return todo(errbuf, errlen);
}

void odata_batch_result_clear(struct odata_batch_result *r)
{
	if (r)
		memset(r, 0, sizeof(*r));
}

const char *odata_batch_header_get(const struct odata_batch_header *headers, size_t nheaders, const char *name)
{
	for (size_t i = 0; i < nheaders; i++)
		if (strcasecmp(headers[i].name, name) == 0)
			return headers[i].value;
	return NULL;
}
