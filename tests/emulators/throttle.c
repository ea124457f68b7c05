#include "throttle.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct throttle {
	pthread_mutex_t mu;
	int ce;
	long max_requests;
	long window_s;
	long max_concurrent;
	long retry_after_s;
	long latency_ms;
	long error_status;
	double error_rate;
	int outage;
	long long window_start_ms;
	long window_count;
	long in_flight;
	unsigned long long throttled;
	unsigned long long faulted;
	unsigned long long rng;
};

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct throttle *throttle_new(const char *flavour)
{
	struct throttle *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	pthread_mutex_init(&l->mu, NULL);
	l->ce = strcmp(flavour, "ce") == 0;
	l->rng = 0x9e3779b97f4a7c15ull ^ (unsigned long long)mono_ms();
	throttle_reset(l);
	return l;
}

void throttle_free(struct throttle *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->mu);
	free(l);
}

void throttle_reset(struct throttle *l)
{
	pthread_mutex_lock(&l->mu);
	l->max_requests = 0;
	l->window_s = 300;
	l->max_concurrent = 0;
	l->retry_after_s = 0;
	l->latency_ms = 0;
	l->error_status = 0;
	l->error_rate = 0;
	l->outage = 0;
	l->window_start_ms = 0;
	l->window_count = 0;
	l->throttled = 0;
	l->faulted = 0;
	pthread_mutex_unlock(&l->mu);
}

static double next_random(struct throttle *l)
{
	/* xorshift64*, under the mutex */
	l->rng ^= l->rng >> 12;
	l->rng ^= l->rng << 25;
	l->rng ^= l->rng >> 27;
	return (double)((l->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void throttle(struct throttle *l, struct server_response *resp, int concurrency, long retry_after)
{
	char ra[32];
	snprintf(ra, sizeof(ra), "%ld", retry_after > 0 ? retry_after : 1);
	if (l->ce) {
		char msg[200];
		if (concurrency)
			snprintf(msg, sizeof(msg),
				 "Number of concurrent requests exceeded the limit of %ld.", l->max_concurrent);
		else
			snprintf(msg, sizeof(msg),
				 "Number of requests exceeded the limit of %ld over time window of %ld seconds.",
				 l->max_requests, l->window_s);
		server_response_odata_error(resp, 429, concurrency ? "0x80072326" : "0x80072322", msg);
	} else {
		server_response_odata_error(resp, 429, "", "Too many requests");
	}
	server_response_header(resp, "Retry-After", ra);
}

int throttle_enter(struct throttle *l, struct server_response *resp)
{
	long latency;
	pthread_mutex_lock(&l->mu);
	latency = l->latency_ms;
	if (l->outage) {
		l->faulted++;
		pthread_mutex_unlock(&l->mu);
		server_response_odata_error(resp, 503, l->ce ? "0x80040216" : "",
					    "The service is temporarily unavailable (emulated outage).");
		server_response_header(resp, "Retry-After", "1");
		return -1;
	}
	if (l->max_concurrent > 0 && l->in_flight >= l->max_concurrent) {
		l->throttled++;
		long ra = l->retry_after_s > 0 ? l->retry_after_s : 1;
		throttle(l, resp, 1, ra);
		pthread_mutex_unlock(&l->mu);
		return -1;
	}
	if (l->max_requests > 0) {
		long long now = mono_ms();
		if (l->window_start_ms == 0 || now - l->window_start_ms >= (long long)l->window_s * 1000) {
			l->window_start_ms = now;
			l->window_count = 0;
		}
		if (l->window_count >= l->max_requests) {
			l->throttled++;
			long remain = (long)(((long long)l->window_s * 1000 - (now - l->window_start_ms) + 999) / 1000);
			long ra = l->retry_after_s > 0 ? l->retry_after_s : remain;
			throttle(l, resp, 0, ra);
			pthread_mutex_unlock(&l->mu);
			return -1;
		}
		l->window_count++;
	}
	if (l->error_status > 0 && l->error_rate > 0 && next_random(l) < l->error_rate) {
		int status = (int)l->error_status;
		l->faulted++;
		pthread_mutex_unlock(&l->mu);
		if (latency > 0)
			usleep((useconds_t)latency * 1000);
		server_response_odata_error(resp, status, l->ce ? "0x80040216" : "",
					    "An unexpected error occurred (emulated fault).");
		return -1;
	}
	l->in_flight++;
	pthread_mutex_unlock(&l->mu);
	if (latency > 0)
		usleep((useconds_t)latency * 1000);
	return 0;
}

void throttle_leave(struct throttle *l)
{
	pthread_mutex_lock(&l->mu);
	if (l->in_flight > 0)
		l->in_flight--;
	pthread_mutex_unlock(&l->mu);
}

static int get_long(const cJSON *obj, const char *name, long min, long max, long *out, char *errbuf, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || v->valuedouble < (double)min || v->valuedouble > (double)max ||
	    v->valuedouble != (double)(long)v->valuedouble) {
		snprintf(errbuf, errlen, "%s must be an integer in [%ld, %ld]", name, min, max);
		return -1;
	}
	*out = (long)v->valuedouble;
	return 0;
}

int throttle_configure(struct throttle *l, const cJSON *limits_json, const cJSON *faults_json, char *errbuf,
		     size_t errlen)
{
	int rc = -1;
	pthread_mutex_lock(&l->mu);
	long max_requests = l->max_requests, window_s = l->window_s, max_concurrent = l->max_concurrent;
	long retry_after_s = l->retry_after_s, latency_ms = l->latency_ms, error_status = l->error_status;
	double error_rate = l->error_rate;
	int outage = l->outage;
	if (limits_json) {
		if (!cJSON_IsObject(limits_json)) {
			snprintf(errbuf, errlen, "limits must be an object");
			goto out;
		}
		if (get_long(limits_json, "max_requests", 0, 100000000, &max_requests, errbuf, errlen) < 0 ||
		    get_long(limits_json, "window_s", 1, 86400, &window_s, errbuf, errlen) < 0 ||
		    get_long(limits_json, "max_concurrent", 0, 100000, &max_concurrent, errbuf, errlen) < 0 ||
		    get_long(limits_json, "retry_after_s", 0, 86400, &retry_after_s, errbuf, errlen) < 0)
			goto out;
	}
	if (faults_json) {
		if (!cJSON_IsObject(faults_json)) {
			snprintf(errbuf, errlen, "faults must be an object");
			goto out;
		}
		if (get_long(faults_json, "latency_ms", 0, 60000, &latency_ms, errbuf, errlen) < 0)
			goto out;
		const cJSON *es = cJSON_GetObjectItemCaseSensitive(faults_json, "error_status");
		if (es && !(cJSON_IsNumber(es) && (es->valueint == 0 || (es->valueint >= 400 && es->valueint <= 599)))) {
			snprintf(errbuf, errlen, "error_status must be 0 or an HTTP status in [400, 599]");
			goto out;
		}
		if (es)
			error_status = es->valueint;
		const cJSON *er = cJSON_GetObjectItemCaseSensitive(faults_json, "error_rate");
		if (er && !(cJSON_IsNumber(er) && er->valuedouble >= 0 && er->valuedouble <= 1)) {
			snprintf(errbuf, errlen, "error_rate must be a number in [0, 1]");
			goto out;
		}
		if (er)
			error_rate = er->valuedouble;
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(faults_json, "outage");
		if (o && !cJSON_IsBool(o)) {
			snprintf(errbuf, errlen, "outage must be true or false");
			goto out;
		}
		if (o)
			outage = cJSON_IsTrue(o);
	}
	if (window_s != l->window_s || max_requests != l->max_requests) {
		l->window_start_ms = 0;
		l->window_count = 0;
	}
	l->max_requests = max_requests;
	l->window_s = window_s;
	l->max_concurrent = max_concurrent;
	l->retry_after_s = retry_after_s;
	l->latency_ms = latency_ms;
	l->error_status = error_status;
	l->error_rate = error_rate;
	l->outage = outage;
	rc = 0;
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

cJSON *throttle_to_json(struct throttle *l)
{
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	pthread_mutex_lock(&l->mu);
	cJSON *lim = cJSON_AddObjectToObject(root, "limits");
	cJSON_AddNumberToObject(lim, "max_requests", (double)l->max_requests);
	cJSON_AddNumberToObject(lim, "window_s", (double)l->window_s);
	cJSON_AddNumberToObject(lim, "max_concurrent", (double)l->max_concurrent);
	cJSON_AddNumberToObject(lim, "retry_after_s", (double)l->retry_after_s);
	cJSON *f = cJSON_AddObjectToObject(root, "faults");
	cJSON_AddNumberToObject(f, "latency_ms", (double)l->latency_ms);
	cJSON_AddNumberToObject(f, "error_status", (double)l->error_status);
	cJSON_AddNumberToObject(f, "error_rate", l->error_rate);
	cJSON_AddBoolToObject(f, "outage", l->outage);
	cJSON_AddNumberToObject(root, "throttled", (double)l->throttled);
	cJSON_AddNumberToObject(root, "faulted", (double)l->faulted);
	pthread_mutex_unlock(&l->mu);
	return root;
}
