/* lag.h - payq_consumer_lag{group,topic,partition}: set from librdkafka statistics, forgotten on
 * revoke. */
#pragma once

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* Sets payq_consumer_lag for every partition of a statistics JSON document (librdkafka's
 * stats_cb) that this consumer is assigned and whose lag is known. Unassigned partitions
 * (librdkafka's "desired": false) are skipped, so a late statistics tick cannot bring back
 * a series that payq_lag_forget() removed. */
void payq_lag_from_stats(const char *group, const char *json, size_t len);

/* Removes the payq_consumer_lag series of each partition in parts (a revoke): another
 * worker owns them now and reports their lag. */
void payq_lag_forget(const char *group, const rd_kafka_topic_partition_list_t *parts);
