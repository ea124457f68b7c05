#ifndef DW_COMPAT_H
#define DW_COMPAT_H

/*
 * The one place for library-version gates. Debian 12 ships librdkafka 2.0.2; the code is written
 * against that API and states here what it relies on and what it must avoid.
 *
 * Relied on (all present since librdkafka 1.6): the incremental (cooperative) assign/unassign
 * calls and rd_kafka_rebalance_protocol(), rd_kafka_error_t, idempotent and transactional
 * producers, rd_kafka_purge(), the Admin API's CreateTopics and DescribeConfigs.
 *
 * Avoided on purpose:
 *  - rd_kafka_consume_batch*(): unsafe together with concurrent rebalances and pause/resume in
 *    2.0.x; consumers poll one message at a time.
 *  - rd_kafka_DescribeTopics() (2.3+): partition counts come from rd_kafka_metadata().
 *  - rd_kafka_offset_store_message() (2.1+ in practice): offsets are stored with
 *    rd_kafka_offsets_store() and a one-entry list.
 */

#include <librdkafka/rdkafka.h>

#define COMPAT_RDKAFKA_MIN 0x010600ff /* 1.6.0: incremental rebalancing */

#if RD_KAFKA_VERSION < COMPAT_RDKAFKA_MIN
#error "librdkafka 1.6.0 or newer is required (cooperative rebalancing)"
#endif

#endif
