/* admin.c - consumer group admin calls: describe, committed offsets, alter offsets. */
#include "admin.h"

#include <inttypes.h>
#include <string.h>

#include "util.h"

#define ADMIN_TIMEOUT_MS 15000

/* One admin request: its result queue, its options and, once answered, its event. */
typedef struct admin_call {
	const char *what; /* the request's name, for messages */
	rd_kafka_queue_t *q;
	rd_kafka_AdminOptions_t *o;
	rd_kafka_event_t *ev;
} admin_call_t;

static void call_begin(admin_call_t *c, rd_kafka_t *rk, rd_kafka_admin_op_t op, const char *what)
{
	c->what = what;
	c->q = rd_kafka_queue_new(rk);
	c->o = rd_kafka_AdminOptions_new(rk, op);
	c->ev = NULL;
	rd_kafka_AdminOptions_set_request_timeout(c->o, ADMIN_TIMEOUT_MS, NULL, 0);
}

static void call_end(admin_call_t *c)
{
	if (c->ev)
		rd_kafka_event_destroy(c->ev);
	rd_kafka_AdminOptions_destroy(c->o);
	rd_kafka_queue_destroy(c->q);
}

/* Waits for the request's answer on its queue. Returns 0, or -1 with errstr. */
static int await(admin_call_t *c, char *errstr, size_t errstr_size)
{
	c->ev = rd_kafka_queue_poll(c->q, ADMIN_TIMEOUT_MS + 5000);
	if (!c->ev)
		return payq_err(errstr, errstr_size, "%s: no answer within %d ms", c->what,
				ADMIN_TIMEOUT_MS + 5000);
	if (rd_kafka_event_error(c->ev))
		return payq_err(errstr, errstr_size, "%s: %s", c->what,
				rd_kafka_event_error_string(c->ev));
	return 0;
}

int replay_group_describe(rd_kafka_t *rk, const char *group, replay_group_info_t *info,
			  char *errstr, size_t errstr_size)
{
	admin_call_t c;
	const rd_kafka_ConsumerGroupDescription_t **groups;
	const rd_kafka_error_t *gerr;
	size_t cnt, len = 0;
	int ret = -1;

	memset(info, 0, sizeof(*info));
	call_begin(&c, rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, "DescribeConsumerGroups");
	rd_kafka_DescribeConsumerGroups(rk, &group, 1, c.o, c.q);
	if (await(&c, errstr, errstr_size))
		goto out;
	groups = rd_kafka_DescribeConsumerGroups_result_groups(
		rd_kafka_event_DescribeConsumerGroups_result(c.ev), &cnt);
	if (cnt != 1) {
		payq_err(errstr, errstr_size, "DescribeConsumerGroups: %zu results for 1 group",
			 cnt);
		goto out;
	}
	gerr = rd_kafka_ConsumerGroupDescription_error(groups[0]);
	if (gerr) {
		payq_err(errstr, errstr_size, "DescribeConsumerGroups %s: %s", group,
			 rd_kafka_error_string(gerr));
		goto out;
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
out:
	call_end(&c);
	return ret;
}

bool replay_group_active(const replay_group_info_t *info)
{
	return info->members > 0 ||
	       info->state == RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE ||
	       info->state == RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE ||
	       info->state == RD_KAFKA_CONSUMER_GROUP_STATE_STABLE;
}

/* Waits for a List- or AlterConsumerGroupOffsets answer and returns the partitions of its
 * one group result, or NULL with errstr (the request's error, the group's, or, prefixed by
 * part_what, the first partition's). */
static const rd_kafka_topic_partition_list_t *group_offsets(admin_call_t *c, const char *part_what,
							    char *errstr, size_t errstr_size)
{
	const rd_kafka_group_result_t **groups;
	const rd_kafka_topic_partition_list_t *got;
	const rd_kafka_error_t *gerr;
	size_t cnt;

	if (await(c, errstr, errstr_size))
		return NULL;
	if (rd_kafka_event_type(c->ev) == RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT)
		groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
			rd_kafka_event_ListConsumerGroupOffsets_result(c->ev), &cnt);
	else
		groups = rd_kafka_AlterConsumerGroupOffsets_result_groups(
			rd_kafka_event_AlterConsumerGroupOffsets_result(c->ev), &cnt);
	if (cnt != 1) {
		payq_err(errstr, errstr_size, "%s: %zu results for 1 group", c->what, cnt);
		return NULL;
	}
	gerr = rd_kafka_group_result_error(groups[0]);
	if (gerr) {
		payq_err(errstr, errstr_size, "%s: %s", c->what, rd_kafka_error_string(gerr));
		return NULL;
	}
	got = rd_kafka_group_result_partitions(groups[0]);
	for (int i = 0; i < got->cnt; i++) {
		const rd_kafka_topic_partition_t *e = &got->elems[i];
		if (e->err) {
			payq_err(errstr, errstr_size, "%s %s/%" PRId32 ": %s", part_what, e->topic,
				 e->partition, rd_kafka_err2str(e->err));
			return NULL;
		}
	}
	return got;
}

int replay_group_committed(rd_kafka_t *rk, const char *group, const char *topic, int nparts,
			   int64_t *out, char *errstr, size_t errstr_size)
{
	admin_call_t c;
	rd_kafka_topic_partition_list_t *want = rd_kafka_topic_partition_list_new(nparts);
	rd_kafka_ListConsumerGroupOffsets_t *req;
	const rd_kafka_topic_partition_list_t *got;

	for (int p = 0; p < nparts; p++) {
		rd_kafka_topic_partition_list_add(want, topic, p);
		out[p] = -1;
	}
	call_begin(&c, rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, "ListConsumerGroupOffsets");
	req = rd_kafka_ListConsumerGroupOffsets_new(group, want);
	rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, c.o, c.q);
	rd_kafka_ListConsumerGroupOffsets_destroy(req);
	rd_kafka_topic_partition_list_destroy(want);
	got = group_offsets(&c, "committed offset of", errstr, errstr_size);
	for (int i = 0; got && i < got->cnt; i++) {
		const rd_kafka_topic_partition_t *e = &got->elems[i];
		if (!strcmp(e->topic, topic) && e->partition >= 0 && e->partition < nparts)
			out[e->partition] = e->offset >= 0 ? e->offset : -1;
	}
	call_end(&c);
	return got ? 0 : -1;
}

int replay_group_alter(rd_kafka_t *rk, const char *group,
		       const rd_kafka_topic_partition_list_t *offsets, char *errstr,
		       size_t errstr_size)
{
	admin_call_t c;
	rd_kafka_AlterConsumerGroupOffsets_t *req =
		rd_kafka_AlterConsumerGroupOffsets_new(group, offsets);
	int ret;

	call_begin(&c, rk, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
		   "AlterConsumerGroupOffsets");
	rd_kafka_AlterConsumerGroupOffsets(rk, &req, 1, c.o, c.q);
	rd_kafka_AlterConsumerGroupOffsets_destroy(req);
	ret = group_offsets(&c, "AlterConsumerGroupOffsets", errstr, errstr_size) ? 0 : -1;
	call_end(&c);
	return ret;
}
