/* admin.h - consumer group admin calls: describe, committed offsets, alter offsets. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

/* What DescribeConsumerGroups says about a group. */
typedef struct replay_group_info {
	rd_kafka_consumer_group_state_t state;
	size_t members;
	char detail[1024]; /* "client_id@host (instance id)" of each member, for messages */
} replay_group_info_t;

/* Describes group. A group that does not exist reads as Dead with no members.
 * Returns 0, or -1 with errstr. */
int replay_group_describe(rd_kafka_t *rk, const char *group, replay_group_info_t *info,
			  char *errstr, size_t errstr_size);

/* True while the group has members or is rebalancing: offsets must not be altered. */
bool replay_group_active(const replay_group_info_t *info);

/* Reads group's committed offsets for partitions 0..nparts-1 of topic (ListConsumer-
 * GroupOffsets): out[p] gets the offset, or -1 where nothing is committed. Returns 0, or
 * -1 with errstr. */
int replay_group_committed(rd_kafka_t *rk, const char *group, const char *topic, int nparts,
			   int64_t *out, char *errstr, size_t errstr_size);

/* Commits offsets (topic, partition, offset of each element) for group through
 * AlterConsumerGroupOffsets, which the broker refuses while the group has members.
 * Returns 0, or -1 with errstr naming the first failed partition. */
int replay_group_alter(rd_kafka_t *rk, const char *group,
		       const rd_kafka_topic_partition_list_t *offsets, char *errstr,
		       size_t errstr_size);
