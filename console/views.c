/* views.c - payq-console: the data of the read-only pages, from PostgreSQL as
 * payq_readonly and from Kafka through replay's group-less range reader. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "admin.h"
#include "console.h"
#include "kafka.h"
#include "range.h"
#include "util.h"

#define DLQ_SCAN_MAX 20000 /* records read per DLQ scan: the page says when it stopped */
#define PREVIEW_BYTES 160

typedef struct dlq_scan {
	cJSON *groups; /* reason -> {count, first_ms, last_ms, preview, records: [...]} */
	cJSON *targets;
	const char *only_reason;
	bool redact;
	int64_t seen;
} dlq_scan_t;

/* A viewer's and an operator's preview keeps the shape of the payload and hides its
 * content: letters become x, digits 9. */
static void preview(const rd_kafka_message_t *m, bool redact, char *out, size_t size)
{
	size_t n = m->len < PREVIEW_BYTES ? m->len : PREVIEW_BYTES;

	payq_utf8_clean(out, size, m->payload ? (const char *)m->payload : "", m->payload ? n : 0);
	if (!redact)
		return;
	for (char *p = out; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80)
			*p = 'x';
		else if (c >= '0' && c <= '9')
			*p = '9';
	}
}

static int dlq_record(void *opaque, const rd_kafka_message_t *m)
{
	dlq_scan_t *s = opaque;
	char reason[64] = "unknown", st[256] = "?", sp[16] = "?", so[32] = "?",
	     buf[PREVIEW_BYTES * 2 + 8];
	char coords[64];
	rd_kafka_timestamp_type_t tstype;
	int64_t ts = rd_kafka_message_timestamp(m, &tstype);
	cJSON *g, *rec;

	if (++s->seen > DLQ_SCAN_MAX)
		return -1;
	payq_kafka_header_str(m, "payq-dlq-reason", reason, sizeof(reason));
	payq_kafka_header_str(m, "payq-dlq-topic", st, sizeof(st));
	payq_kafka_header_str(m, "payq-dlq-partition", sp, sizeof(sp));
	payq_kafka_header_str(m, "payq-dlq-offset", so, sizeof(so));
	payq_utf8_clean(buf, sizeof(reason), reason, strlen(reason));
	memcpy(reason, buf, sizeof(reason));
	snprintf(coords, sizeof(coords), "%" PRId32 "/%" PRId64, m->partition, m->offset);
	if (s->only_reason && !strcmp(s->only_reason, reason))
		cJSON_AddItemToArray(s->targets, cJSON_CreateString(coords));
	if (!(g = cJSON_GetObjectItemCaseSensitive(s->groups, reason))) {
		g = cJSON_AddObjectToObject(s->groups, reason);
		cJSON_AddNumberToObject(g, "count", 0);
		cJSON_AddNumberToObject(g, "first_ms", (double)ts);
		cJSON_AddNumberToObject(g, "last_ms", (double)ts);
		preview(m, s->redact, buf, sizeof(buf));
		cJSON_AddStringToObject(g, "preview", buf);
		cJSON_AddArrayToObject(g, "records");
	}
	cJSON_SetNumberValue(cJSON_GetObjectItem(g, "count"),
			     cJSON_GetObjectItem(g, "count")->valuedouble + 1);
	if (ts < cJSON_GetObjectItem(g, "first_ms")->valuedouble)
		cJSON_SetNumberValue(cJSON_GetObjectItem(g, "first_ms"), (double)ts);
	if (ts > cJSON_GetObjectItem(g, "last_ms")->valuedouble)
		cJSON_SetNumberValue(cJSON_GetObjectItem(g, "last_ms"), (double)ts);
	if (cJSON_GetArraySize(cJSON_GetObjectItem(g, "records")) < 50) {
		rec = cJSON_CreateObject();
		cJSON_AddStringToObject(rec, "dlq", coords);
		payq_utf8_clean(buf, sizeof(buf), st, strlen(st));
		cJSON_AddStringToObject(rec, "source_topic", buf);
		cJSON_AddStringToObject(rec, "source_partition", sp);
		cJSON_AddStringToObject(rec, "source_offset", so);
		cJSON_AddItemToArray(cJSON_GetObjectItem(g, "records"), rec);
	}
	return 0;
}

cJSON *console_dlq_scan(const char *only_reason, bool redact, cJSON **targets, char *errstr,
			size_t errstr_size)
{
	payq_range_spec_t spec;
	payq_range_t r;
	dlq_scan_t s = {.groups = cJSON_CreateObject(),
			.targets = cJSON_CreateArray(),
			.only_reason = only_reason,
			.redact = redact};
	int rc;
	cJSON *out;

	payq_range_spec_init(&spec);
	if (payq_range_resolve(console.rk, console.cfg.dlq_topic, &spec, &r, errstr, errstr_size)) {
		cJSON_Delete(s.groups);
		cJSON_Delete(s.targets);
		return NULL;
	}
	rc = payq_range_read(console.rk, &r, dlq_record, &s, errstr, errstr_size);
	payq_range_free(&r);
	if (rc && s.seen <= DLQ_SCAN_MAX) {
		cJSON_Delete(s.groups);
		cJSON_Delete(s.targets);
		return NULL;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "topic", console.cfg.dlq_topic);
	cJSON_AddItemToObject(out, "groups", s.groups);
	cJSON_AddBoolToObject(out, "truncated", s.seen > DLQ_SCAN_MAX);
	cJSON_AddBoolToObject(out, "redacted", redact);
	if (targets)
		*targets = s.targets;
	else
		cJSON_Delete(s.targets);
	return out;
}

static const char sql_payments[] =
	"SELECT order_id, command_id, status, amount_minor, currency, attempts,"
	" idempotency_key, decline_code, extract(epoch FROM now() - created_at)::bigint AS age_s,"
	" (SELECT a.detail FROM payq.anomalies a WHERE a.order_id = p.order_id"
	"   AND a.command_id = p.command_id ORDER BY a.id DESC LIMIT 1) AS last_answer,"
	" created_at, updated_at FROM payq.payments p WHERE status IN ('pending', 'unknown')"
	" ORDER BY created_at LIMIT 500";

static const char sql_anomalies[] =
	"SELECT kind, date_trunc('hour', at) AS hour, count(*) AS n, min(id) AS first_id,"
	" max(id) AS last_id,"
	" count(*) FILTER (WHERE id IN (SELECT (jsonb_array_elements_text(targets))::bigint"
	"   FROM payq.operator_actions WHERE action = 'anomaly-ack' AND phase = 'result' AND ok))"
	"   AS acknowledged"
	" FROM payq.anomalies WHERE at > now() - interval '14 days'"
	" GROUP BY 1, 2 ORDER BY 2 DESC, 1";

static const char sql_actions[] =
	"SELECT id, at, actor, role, action, phase, plan_id, plan_hash, target_count, reason,"
	" result, ok FROM payq.operator_actions ORDER BY id DESC LIMIT 300";

static const char sql_progress[] =
	"SELECT topic, partition, next_offset, updated_at,"
	" extract(epoch FROM now() - updated_at)::bigint AS idle_s"
	" FROM payq.consumer_progress WHERE group_id = $1 ORDER BY topic, partition";

static cJSON *rows(const char *sql, int n, const char *const *params, console_reply_t *r)
{
	char errstr[512];
	cJSON *j = console_sql_rows(&console.ro, console.cfg.db, sql, n, params, errstr,
				    sizeof(errstr));
	if (!j)
		console_error(r, 503, "PostgreSQL: %s", errstr);
	return j;
}

/* One order: every source found through an index on order_id; no topic is scanned. */
static void view_order(const char *order, console_reply_t *r)
{
	static const char *const sqls[][2] = {
		{"commands",
		 "SELECT command_id, command_type, outcome, detail, kafka_topic,"
		 " kafka_partition, kafka_offset, duplicates, first_seen_at, last_seen_at"
		 " FROM payq.processed_commands WHERE order_id = $1 ORDER BY first_seen_at"},
		{"order",
		 "SELECT order_id, status, amount_minor, currency, version, paid_command_id,"
		 " created_at, updated_at FROM payq.orders WHERE order_id = $1"},
		{"payments",
		 "SELECT payment_id, command_id, status, amount_minor, currency, attempts,"
		 " idempotency_key, gateway_charge_id, decline_code, created_at, updated_at"
		 " FROM payq.payments WHERE order_id = $1 ORDER BY payment_id"},
		{"transitions", "SELECT payment_id, from_status, to_status, by_role, by_program, at"
				" FROM payq.payment_transitions WHERE order_id = $1 ORDER BY id"},
		{"anomalies",
		 "SELECT id, kind, command_id, detail, kafka_topic, kafka_partition,"
		 " kafka_offset, at FROM payq.anomalies WHERE order_id = $1 ORDER BY id"},
		{"actions", "SELECT id, at, actor, action, phase, reason, result, ok"
			    " FROM payq.operator_actions WHERE $1 = ANY (order_ids) ORDER BY id"},
	};
	const char *params[1] = {order};
	cJSON *out = cJSON_CreateObject();

	cJSON_AddStringToObject(out, "order_id", order);
	for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]); i++) {
		cJSON *j = rows(sqls[i][1], 1, params, r);
		if (!j) {
			cJSON_Delete(out);
			return;
		}
		cJSON_AddItemToObject(out, sqls[i][0], j);
	}
	console_json(r, 200, out);
}

static cJSON *partition_lag(const payq_range_t *topic, const int64_t *committed)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; i < topic->cnt; i++) {
		const payq_range_part_t *p = &topic->parts[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "partition", p->partition);
		cJSON_AddNumberToObject(o, "high", (double)p->high);
		cJSON_AddNumberToObject(o, "committed", (double)committed[i]);
		cJSON_AddNumberToObject(
			o, "lag",
			(double)(committed[i] < 0 ? p->high - p->low : p->high - committed[i]));
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

static void view_lag(console_reply_t *r)
{
	const char *params[1] = {console.cfg.group};
	char errstr[512];
	payq_range_spec_t spec;
	payq_range_t t;
	replay_group_info_t info;
	int64_t *committed;
	cJSON *out, *progress = rows(sql_progress, 1, params, r);

	if (!progress)
		return;
	payq_range_spec_init(&spec);
	if (payq_range_resolve(console.rk, console.cfg.topic, &spec, &t, errstr, sizeof(errstr))) {
		cJSON_Delete(progress);
		console_error(r, 503, "Kafka: %s", errstr);
		return;
	}
	committed = calloc(t.cnt ? t.cnt : 1, sizeof(*committed));
	if (!committed ||
	    replay_group_committed(console.rk, console.cfg.group, console.cfg.topic, (int)t.cnt,
				   committed, errstr, sizeof(errstr)) ||
	    replay_group_describe(console.rk, console.cfg.group, &info, errstr, sizeof(errstr))) {
		free(committed);
		payq_range_free(&t);
		cJSON_Delete(progress);
		console_error(r, 503, "Kafka: %s", errstr);
		return;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "group", console.cfg.group);
	cJSON_AddStringToObject(out, "topic", console.cfg.topic);
	cJSON_AddStringToObject(out, "state", rd_kafka_consumer_group_state_name(info.state));
	cJSON_AddNumberToObject(out, "members", (double)info.members);
	cJSON_AddStringToObject(out, "member_detail", info.detail);
	cJSON_AddItemToObject(out, "partitions", partition_lag(&t, committed));
	cJSON_AddItemToObject(out, "progress", progress);
	free(committed);
	payq_range_free(&t);
	console_json(r, 200, out);
}

void console_view(const char *path, struct MHD_Connection *conn, const console_ident_t *id,
		  console_reply_t *r)
{
	char errstr[512];
	cJSON *j;

	if (!strcmp(path, "/api/me")) {
		j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "user", id->user);
		cJSON_AddStringToObject(j, "role", console_role_name(id->role));
		cJSON_AddStringToObject(j, "csrf", id->csrf);
		cJSON_AddNumberToObject(j, "plan_ttl_s", (double)console.plan_ttl_ms / 1000.0);
		console_json(r, 200, j);
	} else if (!strcmp(path, "/api/dlq")) {
		/* Unredacted payloads are for admins: the server decides, not the page. */
		j = console_dlq_scan(NULL, !console_allowed(id, CONSOLE_ROLE_ADMIN), NULL, errstr,
				     sizeof(errstr));
		if (j)
			console_json(r, 200, j);
		else
			console_error(r, 503, "Kafka: %s", errstr);
	} else if (!strcmp(path, "/api/payments")) {
		if ((j = rows(sql_payments, 0, NULL, r)))
			console_json(r, 200, j);
	} else if (!strcmp(path, "/api/order")) {
		const char *order = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
		if (!order || !*order || strlen(order) > 200)
			console_error(r, 400, "?id=ORDER_ID (1 to 200 bytes)");
		else
			view_order(order, r);
	} else if (!strcmp(path, "/api/anomalies")) {
		if ((j = rows(sql_anomalies, 0, NULL, r)))
			console_json(r, 200, j);
	} else if (!strcmp(path, "/api/lag")) {
		view_lag(r);
	} else if (!strcmp(path, "/api/actions")) {
		if ((j = rows(sql_actions, 0, NULL, r)))
			console_json(r, 200, j);
	} else {
		console_error(r, 404, "not found");
	}
}
