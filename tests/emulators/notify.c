#include "notify.h"

#include <stdio.h>
#include <stdlib.h>

struct notify {
	struct notify_options opt;
};

int notify_new(const struct notify_options *opt, struct notify **out, char *errbuf, size_t errlen)
{
	(void)opt;
	*out = NULL;
	snprintf(errbuf, errlen, "notify: not built yet");
	return -1;
}

void notify_free(struct notify *n)
{
	free(n);
}

int notify_register(struct notify *n, const struct notify_registration *reg, char id_out[37], char *errbuf,
		    size_t errlen)
{
	(void)n;
	(void)reg;
	(void)id_out;
	snprintf(errbuf, errlen, "notify: not built yet");
	return -1;
}

int notify_unregister(struct notify *n, const char *id)
{
	(void)n;
	(void)id;
	return -1;
}

void notify_reset(struct notify *n)
{
	(void)n;
}

int notify_change(struct notify *n, const struct notify_change *c)
{
	(void)n;
	(void)c;
	return 0;
}

cJSON *notify_build_body(const struct notify *n, const struct notify_change *c, char *errbuf, size_t errlen)
{
	(void)n;
	(void)c;
	snprintf(errbuf, errlen, "notify: not built yet");
	return NULL;
}

cJSON *notify_stats(struct notify *n)
{
	(void)n;
	return cJSON_CreateObject();
}

int notify_drain(struct notify *n, long timeout_ms)
{
	(void)n;
	(void)timeout_ms;
	return 0;
}
