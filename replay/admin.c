/* admin.c - consumer group admin calls: describe, committed offsets, alter offsets. */
#include "admin.h"

#include <inttypes.h>
#include <string.h>

#include "util.h"

#define ADMIN_TIMEOUT_MS 15000

/* Runs one admin request whose result lands on q; returns the event or NULL with errstr. */
static rd_kafka_event_t *await(rd_kafka_queue_t *q, const char *what, char *errstr,
			       size_t errstr_size)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS + 5000);

	if (!ev) {
		payq_err(errstr, errstr_size, "%s: no answer within %d ms", what,
			 ADMIN_TIMEOUT_MS + 5000);
		return NULL;
	}
	if (rd_kafka_event_error(ev)) {
		payq_err(errstr, errstr_size, "%s: %s", what, rd_kafka_event_error_string(ev));
		rd_kafka_event_destroy(ev);
		return NULL;
	}
	return ev;
}

static rd_kafka_AdminOptions_t *options(rd_kafka_t *rk, rd_kafka_admin_op_t op)
{
	rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);

	rd_kafka_AdminOptions_set_request_timeout(o, ADMIN_TIMEOUT_MS, NULL, 0);
	return o;
}

int replay_group_describe(rd_kafka_t *rk, const char *group, replay_group_info_t *info,
			  char *errstr, size_t errstr_size)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_AdminOptions_t *o = options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
	const rd_kafka_ConsumerGroupDescription_t **groups;
	const rd_kafka_error_t *gerr;
	rd_kafka_event_t *ev;
	size_t cnt, len = 0;
	int ret = -1;

	memset(info, 0, sizeof(*info));
	rd_kafka_DescribeConsumerGroups(rk, &group, 1, o, q);
	ev = await(q, "DescribeConsumerGroups", errstr, errstr_size);
	if (!ev)
		goto out;
	groups = rd_kafka_DescribeConsumerGroups_result_groups(
		rd_kafka_event_DescribeConsumerGroups_result(ev), &cnt);
	if (cnt != 1) {
		payq_err(errstr, errstr_size, "DescribeConsumerGroups: %zu results for 1 group",
			 cnt);
		goto out_ev;
	}
	gerr = rd_kafka_ConsumerGroupDescription_error(groups[0]);
	if (gerr) {
		payq_err(errstr, errstr_size, "DescribeConsumerGroups %s: %s", group,
			 rd_kafka_error_string(gerr));
		goto out_ev;
	}
	info->state = rd_kafka_ConsumerGroupDescription_state(groups[0]);
	info->members = rd_kafka_ConsumerGroupDescription_member_count(groups[0]);
	for (size_t i = 0; i < info->members && len < sizeof(info->detail); i++) {
		const rd_kafka_MemberDescription_t *m =
			rd_kafka_ConsumerGroupDescription_member(groups[0], i);
		const char *inst = rd_kafka_MemberDescription_group_instance_id(m);
		int n = snprintf(info->detail + len, sizeof(info->detail) - len, "%s%s@%s%s%s%s",
				 i ? ", " : "", rd_kafka_MemberDescription_client_id(m),
				 rd_kafka_MemberDescription_host(m), inst ? " (instance " : "",
				 inst ? inst : "", inst ? ")" : "");
		if (n < 0)
			break;
		len += (size_t)n;
	}
	ret = 0;
out_ev:
	rd_kafka_event_destroy(ev);
out:
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_queue_destroy(q);
	return ret;
}

bool replay_group_active(const replay_group_info_t *info)
{
	return info->members > 0 ||
	       info->state == RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE ||
	       info->state == RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE ||
	       info->state == RD_KAFKA_CONSUMER_GROUP_STATE_STABLE;
}

/* The one group result of a List/AlterConsumerGroupOffsets event, after its error. */
static const rd_kafka_topic_partition_list_t *
group_partitions(const rd_kafka_group_result_t **groups, size_t cnt, const char *what, char *errstr,
		 size_t errstr_size)
{
	const rd_kafka_error_t *gerr;

	if (cnt != 1) {
		payq_err(errstr, errstr_size, "%s: %zu results for 1 group", what, cnt);
		return NULL;
	}
	gerr = rd_kafka_group_result_error(groups[0]);
	if (gerr) {
		payq_err(errstr, errstr_size, "%s: %s", what, rd_kafka_error_string(gerr));
		return NULL;
	}
	return rd_kafka_group_result_partitions(groups[0]);
}

int replay_group_committed(rd_kafka_t *rk, const char *group, const char *topic, int nparts,
			   int64_t *out, char *errstr, size_t errstr_size)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_AdminOptions_t *o = options(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
	rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(nparts);
	rd_kafka_ListConsumerGroupOffsets_t *req;
	const rd_kafka_topic_partition_list_t *got;
	const rd_kafka_group_result_t **groups;
	rd_kafka_event_t *ev;
	size_t cnt;
	int ret = -1;

	for (int p = 0; p < nparts; p++) {
		rd_kafka_topic_partition_list_add(want, topic, p);
		out[p] = -1;
	}
	req = rd_kafka_ListConsumerGroupOffsets_new(group, want);
	rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, o, q);
	rd_kafka_ListConsumerGroupOffsets_destroy(req);
	ev = await(q, "ListConsumerGroupOffsets", errstr, errstr_size);
	if (!ev)
		goto out;
	groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
		rd_kafka_event_ListConsumerGroupOffsets_result(ev), &cnt);
	got = group_partitions(groups, cnt, "ListConsumerGroupOffsets", errstr, errstr_size);
	if (!got)
		goto out_ev;
	for (int i = 0; i < got->cnt; i++) {
		const rd_kafka_topic_partition_t *e = &got->elems[i];
		if (e->err) {
			payq_err(errstr, errstr_size, "committed offset of %s/%" PRId32 ": %s",
				 e->topic, e->partition, rd_kafka_err2str(e->err));
			goto out_ev;
		}
		if (!strcmp(e->topic, topic) && e->partition >= 0 && e->partition < nparts)
			out[e->partition] = e->offset >= 0 ? e->offset : -1;
	}
	ret = 0;
out_ev:
	rd_kafka_event_destroy(ev);
out:
	rd_kafka_topic_partition_list_destroy(want);
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_queue_destroy(q);
	return ret;
}

int replay_group_alter(rd_kafka_t *rk, const char *group,
		       const rd_kafka_topic_partition_list_t *offsets, char *errstr,
		       size_t errstr_size)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_AdminOptions_t *o = options(rk, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS);
	rd_kafka_AlterConsumerGroupOffsets_t *req =
		rd_kafka_AlterConsumerGroupOffsets_new(group, offsets);
	const rd_kafka_topic_partition_list_t *got;
	const rd_kafka_group_result_t **groups;
	rd_kafka_event_t *ev;
	size_t cnt;
	int ret = -1;

	rd_kafka_AlterConsumerGroupOffsets(rk, &req, 1, o, q);
	rd_kafka_AlterConsumerGroupOffsets_destroy(req);
	ev = await(q, "AlterConsumerGroupOffsets", errstr, errstr_size);
	if (!ev)
		goto out;
	groups = rd_kafka_AlterConsumerGroupOffsets_result_groups(
		rd_kafka_event_AlterConsumerGroupOffsets_result(ev), &cnt);
	got = group_partitions(groups, cnt, "AlterConsumerGroupOffsets", errstr, errstr_size);
	if (!got)
		goto out_ev;
	for (int i = 0; i < got->cnt; i++) {
		if (got->elems[i].err) {
			payq_err(errstr, errstr_size,
				 "AlterConsumerGroupOffsets %s/%" PRId32 ": %s",
				 got->elems[i].topic, got->elems[i].partition,
				 rd_kafka_err2str(got->elems[i].err));
			goto out_ev;
		}
	}
	ret = 0;
out_ev:
	rd_kafka_event_destroy(ev);
out:
	rd_kafka_AdminOptions_destroy(o);
	rd_kafka_queue_destroy(q);
	return ret;
}
