/* lag.c - payq_consumer_lag{group,topic,partition}: set from librdkafka statistics, forgotten on
 * revoke. */
#include "lag.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metrics.h"

#define LAG_METRIC "payq_consumer_lag"

/* group, topic and partition as a label set; group and topic come from outside. */
static void lag_labels(char *buf, size_t size, const char *group, const char *topic,
		       const char *partition)
{
	char g[256], t[256];

	payq_metrics_escape_label(g, sizeof(g), group);
	payq_metrics_escape_label(t, sizeof(t), topic);
	snprintf(buf, size, "group=\"%s\",topic=\"%s\",partition=\"%s\"", g, t, partition);
}

void payq_lag_from_stats(const char *group, const char *json, size_t len)
{
	cJSON *root = cJSON_ParseWithLength(json, len), *topics, *t;

	topics = cJSON_GetObjectItemCaseSensitive(root, "topics");
	cJSON_ArrayForEach(t, topics)
	{
		cJSON *parts = cJSON_GetObjectItemCaseSensitive(t, "partitions"), *p;
		cJSON_ArrayForEach(p, parts)
		{
			cJSON *lag = cJSON_GetObjectItemCaseSensitive(p, "consumer_lag");
			cJSON *desired = cJSON_GetObjectItemCaseSensitive(p, "desired");
			char labels[640];
			if (!t->string || !p->string || !strcmp(p->string, "-1") ||
			    !cJSON_IsNumber(lag) || lag->valuedouble < 0 || cJSON_IsFalse(desired))
				continue;
			lag_labels(labels, sizeof(labels), group, t->string, p->string);
			payq_metrics_set(LAG_METRIC, labels, lag->valuedouble);
		}
	}
	cJSON_Delete(root);
}

void payq_lag_forget(const char *group, const rd_kafka_topic_partition_list_t *parts)
{
	for (int i = 0; i < parts->cnt; i++) {
		char labels[640], partition[16];

		snprintf(partition, sizeof(partition), "%d", (int)parts->elems[i].partition);
		lag_labels(labels, sizeof(labels), group, parts->elems[i].topic, partition);
		payq_metrics_remove(LAG_METRIC, labels);
	}
}
