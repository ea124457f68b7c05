#ifndef DW_KAFKA_H
#define DW_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "config.h"

/*
 * Kafka producer, consumer and admin helpers over librdkafka.
 *
 * Every client takes bootstrap.servers from cfg->kafka_brokers (DW_KAFKA_BROKERS) and then every
 * cfg->kafka_props entry (DW_KAFKA_<PROP>: TLS, SASL, timeouts...), so the operator's settings
 * reach librdkafka unchanged; the settings that make the guarantees below hold are applied last
 * and cannot be overridden.
 *
 * Return codes: 0 on success, or one of the negative KAFKA_ERR_* codes with errbuf filled.
 * A KAFKA_ERR_FATAL means the client hit a fatal error (RD_KAFKA_RESP_ERR__FATAL: for example the
 * idempotent producer lost its guarantees): the caller stops, reports and exits non-zero.
 */

enum {
	KAFKA_ERR = -1,        /* ordinary failure; errbuf says why */
	KAFKA_ERR_FATAL = -2,  /* the client is unusable; stop */
	KAFKA_ERR_TIMEOUT = -3 /* the operation did not finish in time */
};

/* One message header: a name and a value of arbitrary bytes (value may be NULL when len is 0). */
struct kafka_header {
	const char *name;
	const void *value;
	size_t value_len;
};

/* Builds the topic for a table, "<prefix>.<side>.<entity>", from `table` = "<side>.<entity>"
 * (side ce or fo, entity [a-z0-9_]{1,100}). Writes it into out. Returns 0, or -1 with errbuf naming
 * what is wrong with `table` (or that out is too small). Pure: no Kafka involved. */
int kafka_table_topic(const char *prefix, const char *table, char *out, size_t outlen, char *errbuf,
		      size_t errlen) __attribute__((warn_unused_result));

/* ---- producer ---------------------------------------------------------------------------- */

struct kafka_producer;

/* The outcome of one produced message, reported once per message from kafka_produce() and the
 * poll/flush/close helpers, on the calling thread. `msg_opaque` is the value given to kafka_produce(). */
struct kafka_delivery {
	void *msg_opaque;
	const char *topic;
	int32_t partition;
	int64_t offset;    /* -1 when not delivered */
	int err;           /* 0 delivered, else the rd_kafka_resp_err_t */
	const char *error; /* NULL when delivered, else a readable reason */
};

typedef void kafka_delivery_fn(const struct kafka_delivery *d, void *ctx);

struct kafka_producer_opts {
	const char *client_id;          /* NULL: librdkafka's default */
	kafka_delivery_fn *on_delivery; /* may be NULL: outcomes are then only counted */
	void *ctx;                      /* passed to on_delivery */
	const char *transactional_id;   /* non-NULL makes a transactional producer (see below) */
};

/* Creates an idempotent producer (enable.idempotence=true, acks=all). Borrows cfg and opts for
 * the call. On success *out is a new producer the caller closes with kafka_producer_close().
 * Fails with errbuf naming DW_KAFKA_BROKERS when it is unset, or the property librdkafka
 * rejected. */
int kafka_producer_new(const struct config_common *cfg, const struct kafka_producer_opts *opts,
		       struct kafka_producer **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Queues one message. key/value are bytes (may contain NUL; NULL with length 0 means none),
 * copied by librdkafka. headers (n of them) are copied too. The partition is chosen from the key
 * (same key, same partition). Serves pending delivery reports before it returns (so reports flow
 * even when the caller rarely polls); when the local queue is full, serves them and retries for up
 * to 10 s. The outcome arrives later through on_delivery with msg_opaque. Returns 0,
 * KAFKA_ERR_FATAL, or KAFKA_ERR with errbuf. */
int kafka_produce(struct kafka_producer *p, const char *topic, const void *key, size_t key_len,
		  const void *value, size_t value_len, const struct kafka_header *headers, size_t n,
		  void *msg_opaque, char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Serves delivery reports and client events for up to timeout_ms. Returns the number of events
 * served, or KAFKA_ERR_FATAL once the producer has a fatal error. */
int kafka_producer_poll(struct kafka_producer *p, int timeout_ms) __attribute__((warn_unused_result));

/* Waits up to timeout_ms for every queued message to be delivered or to fail (serving reports).
 * Returns 0 when nothing is left, KAFKA_ERR_TIMEOUT with errbuf saying how many remain, or
 * KAFKA_ERR_FATAL. */
int kafka_producer_flush(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Messages queued or in flight (not yet reported). */
int kafka_producer_outstanding(const struct kafka_producer *p);

/* Counts of reported outcomes since creation. */
void kafka_producer_counts(const struct kafka_producer *p, uint64_t *delivered, uint64_t *failed);

/* Non-zero when the producer hit a fatal error; the reason goes to errbuf. */
int kafka_producer_fatal(struct kafka_producer *p, char *errbuf, size_t errlen);

/* The librdkafka handle, borrowed (for callers that need a call not wrapped here). */
rd_kafka_t *kafka_producer_handle(struct kafka_producer *p);

/* Flushes for up to timeout_ms, then purges whatever is left, reporting each purged message to
 * on_delivery as failed, and frees the producer (a transaction still open is aborted first).
 * NULL-safe. Returns how many messages were not delivered (0 when everything was). */
int kafka_producer_close(struct kafka_producer *p, int timeout_ms);

/*
 * Transactions (opts.transactional_id set). Messages produced between begin and commit become
 * visible to read_committed consumers atomically on commit and never after abort. init once after
 * creation; each call blocks up to timeout_ms. A failure that librdkafka marks as needing an
 * abort returns KAFKA_ERR with "abort required" in errbuf: call kafka_txn_abort() and retry the
 * unit; a fatal one returns KAFKA_ERR_FATAL.
 */
int kafka_txn_init(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));
int kafka_txn_begin(struct kafka_producer *p, char *errbuf, size_t errlen) __attribute__((warn_unused_result));
int kafka_txn_commit(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));
int kafka_txn_abort(struct kafka_producer *p, int timeout_ms, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* ---- consumer ---------------------------------------------------------------------------- */

struct kafka_consumer;

/* Partition (re)assignment news, called on the polling thread. `assigned` is 1 after partitions
 * were added, 0 before they are taken away; `lost` is 1 when they were lost without a clean
 * revoke (offsets can no longer be committed for them). `parts` is borrowed for the call. */
typedef void kafka_rebalance_fn(int assigned, int lost, const rd_kafka_topic_partition_list_t *parts,
				void *ctx);

struct kafka_consumer_opts {
	const char *group_id;            /* required */
	const char *client_id;           /* NULL: librdkafka's default */
	const char *group_instance_id;   /* NULL: dynamic membership; else static membership */
	kafka_rebalance_fn *on_rebalance; /* may be NULL */
	void *ctx;
};

/* One consumed message. Pointers stay valid until kafka_message_free(). */
struct kafka_message {
	const char *topic;
	int32_t partition;
	int64_t offset;
	int64_t timestamp_ms; /* -1 when the broker gave none */
	const void *key;      /* NULL when the message has no key */
	size_t key_len;
	const void *value;    /* NULL for a tombstone */
	size_t value_len;
	rd_kafka_message_t *rkm; /* private */
};

/* Creates a consumer in opts->group_id: manual offset store and commit
 * (enable.auto.commit=false, enable.auto.offset.store=false), isolation.level=read_committed,
 * cooperative-sticky assignment with an incremental rebalance callback (eager calls if the group
 * runs the eager protocol). Defaults the operator may change through DW_KAFKA_*:
 * auto.offset.reset=earliest, and a bounded pre-fetch (queued.max.messages.kbytes=8192,
 * queued.min.messages=10000 instead of librdkafka's 65536 and 100000); the other settings named
 * here cannot be changed. Failed asynchronous commits are logged (warn) from kafka_consumer_poll. Offsets stored for partitions being revoked are committed before they go. Borrows cfg
 * and opts for the call; on success *out is a new consumer the caller closes with
 * kafka_consumer_close(). Fails as kafka_producer_new does, or when group_id is missing. */
int kafka_consumer_new(const struct config_common *cfg, const struct kafka_consumer_opts *opts,
		       struct kafka_consumer **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Subscribes to exactly these n topics (replacing any earlier subscription). */
int kafka_consumer_subscribe(struct kafka_consumer *c, const char *const *topics, size_t n, char *errbuf,
			     size_t errlen) __attribute__((warn_unused_result));

/* Waits up to timeout_ms (keep it short, e.g. 100-500 ms, so shutdown is prompt) for one message.
 * Returns 1 with *out set to a new message the caller frees with kafka_message_free(); 0 when no
 * message arrived (timeout, end of partition, transient broker trouble, which is logged);
 * KAFKA_ERR with errbuf for a consume error the caller should see (e.g. unknown topic);
 * KAFKA_ERR_FATAL on a fatal error. Rebalance callbacks run inside this call. */
int kafka_consumer_poll(struct kafka_consumer *c, int timeout_ms, struct kafka_message **out, char *errbuf,
			size_t errlen) __attribute__((warn_unused_result));

/* Frees a message; NULL-safe. */
void kafka_message_free(struct kafka_message *m);

/* Number of headers on the message. */
size_t kafka_message_header_count(const struct kafka_message *m);

/* Header number idx (in the order produced) into *out, pointers borrowed from m. Returns 0, or -1
 * when idx is out of range. */
int kafka_message_header(const struct kafka_message *m, size_t idx, struct kafka_header *out);

/* The last header called `name` into *out, borrowed from m. Returns 0, or -1 when there is none. */
int kafka_message_header_find(const struct kafka_message *m, const char *name, struct kafka_header *out);

/* Marks m as done: its offset + 1 is stored for the next commit. Call only after the message's
 * outcome is recorded. Fails (KAFKA_ERR) when its partition is no longer assigned. */
int kafka_consumer_store(struct kafka_consumer *c, const struct kafka_message *m, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Commits the stored offsets synchronously. Returns 0 (also when nothing was stored since the
 * last commit), KAFKA_ERR with errbuf, or KAFKA_ERR_FATAL. */
int kafka_consumer_commit(struct kafka_consumer *c, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Starts a commit of the stored offsets and returns without waiting for the broker: the next
 * commit (or the commit before a revoke, or the caller's final synchronous commit) carries them
 * again if this one fails, which is logged. Returns 0 (also when nothing was stored), KAFKA_ERR
 * with errbuf when the commit could not be started, or KAFKA_ERR_FATAL. */
int kafka_consumer_commit_async(struct kafka_consumer *c, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Non-zero when the consumer hit a fatal error; the reason goes to errbuf. */
int kafka_consumer_fatal(struct kafka_consumer *c, char *errbuf, size_t errlen);

/* The librdkafka handle, borrowed (pause/resume, positions, lag queries). */
rd_kafka_t *kafka_consumer_handle(struct kafka_consumer *c);

/* Leaves the group (revoking the assignment, which commits stored offsets) and frees the
 * consumer. Nothing else is committed: commit first what must be. NULL-safe. */
void kafka_consumer_close(struct kafka_consumer *c);

/* ---- admin ------------------------------------------------------------------------------- */

struct kafka_admin;

/* What a topic has (or should have). */
struct kafka_topic_spec {
	int partitions;
	int replication_factor;
	long long retention_ms; /* -1: unlimited */
};

enum kafka_topic_outcome { KAFKA_TOPIC_CREATED = 1, KAFKA_TOPIC_EXISTS = 2 };

/* Creates an admin client. On success *out is new; free with kafka_admin_free(). Fails as
 * kafka_producer_new does. */
int kafka_admin_new(const struct config_common *cfg, struct kafka_admin **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Frees the admin client; NULL-safe. */
void kafka_admin_free(struct kafka_admin *a);

/* Reads what topic `name` has: partition count and replication factor from the cluster metadata,
 * retention.ms from DescribeConfigs. Returns 0, 1 when the topic does not exist, or KAFKA_ERR with
 * errbuf. */
int kafka_topic_describe(struct kafka_admin *a, const char *name, int timeout_ms, struct kafka_topic_spec *out,
			 char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Makes sure topic `name` exists as `want` says: creates it (partitions, replication factor,
 * retention.ms), or, when it exists, compares its partition count and retention.ms with `want`.
 * Returns 0 with *outcome CREATED or EXISTS (same settings); KAFKA_ERR with errbuf naming the
 * topic, what it has and what was asked when they differ, or any other failure. The replication
 * factor of an existing topic is not compared (reassignment changes it; a difference is logged).
 * Returns only once the topic shows in the cluster metadata, so it can be used at once. */
int kafka_topic_ensure(struct kafka_admin *a, const char *name, const struct kafka_topic_spec *want,
		       int timeout_ms, enum kafka_topic_outcome *outcome, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

#endif
