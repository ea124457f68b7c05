/* First cut: API compiles; the token cache is implemented in the next commit. */
#include "oauth.h"

#include <stdio.h>
#include <string.h>

int oauth_config_load(const char *side, struct oauth_config *cfg, char *errbuf, size_t errlen)
{
	(void)side;
	memset(cfg, 0, sizeof(*cfg));
	snprintf(errbuf, errlen, "oauth_config_load: not available in this build yet");
	return OAUTH_ERR;
}

void oauth_config_free(struct oauth_config *cfg)
{
	(void)cfg;
}

int oauth_new(const struct oauth_config *cfg, const struct oauth_opts *opts, struct oauth **out, char *errbuf,
	      size_t errlen)
{
	(void)cfg;
	(void)opts;
	*out = NULL;
	snprintf(errbuf, errlen, "oauth_new: not available in this build yet");
	return OAUTH_ERR;
}

void oauth_free(struct oauth *o)
{
	(void)o;
}

int oauth_token(struct oauth *o, char **token, char *errbuf, size_t errlen)
{
	(void)o;
	*token = NULL;
	snprintf(errbuf, errlen, "oauth_token: not available in this build yet");
	return OAUTH_ERR;
}

void oauth_invalidate(struct oauth *o, const char *token)
{
	(void)o;
	(void)token;
}

unsigned long oauth_fetch_count(struct oauth *o)
{
	(void)o;
	return 0;
}
