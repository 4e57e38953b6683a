/* manifest.c - the generator's expected results: DESIGN.md's outcome table, simulated per order. */
#include "manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

#define ORDER_KEYS_MAX 16 /* distinct command keys per order; the generator uses at most 8 */

enum outcome {
	O_APPLIED,
	O_ORDER_EXISTS,
	O_ALREADY_PAID,
	O_ORDER_CANCELLED,
	O_UNKNOWN_ORDER,
	O_AMOUNT_MISMATCH,
	O__CNT
};

static const char *const outcome_names[O__CNT] = {
	"applied",
	"rejected_order_exists",
	"rejected_already_paid",
	"rejected_order_cancelled",
	"rejected_unknown_order",
	"rejected_amount_mismatch",
};

/* The outcomes DESIGN.md's table allows for each command type, -1 terminated. */
static const int type_outcomes[][O__CNT + 1] = {
	[PAYQ_CMD_CREATE_ORDER] = {O_APPLIED, O_ORDER_EXISTS, -1},
	[PAYQ_CMD_PAY] = {O_APPLIED, O_ALREADY_PAID, O_ORDER_CANCELLED, O_UNKNOWN_ORDER,
			  O_AMOUNT_MISMATCH, -1},
	[PAYQ_CMD_CANCEL_ORDER] = {O_APPLIED, O_ALREADY_PAID, O_ORDER_CANCELLED, O_UNKNOWN_ORDER,
				   -1},
};

enum status { ST_NONE, ST_UNPAID, ST_PAID, ST_CANCELLED };

typedef struct malformed {
	char order_id[PAYQ_ID_MAX + 1];
	int64_t index;
	payq_reason_t reason;
} malformed_t;

struct payq_manifest {
	int64_t outcomes[PAYQ_CMD_CANCEL_ORDER + 1][O__CNT];
	int64_t messages, valid_commands, duplicates, double_payment_attempts, key_reuse;
	int64_t dlq[PAYQ_REASON__CNT];
	int64_t paid, cancelled, unpaid;
	malformed_t *malformed;
	size_t malformed_cnt, malformed_cap;

	/* The order being simulated. */
	enum status status;
	int64_t amount;
	char currency[4];
	struct {
		char command_id[PAYQ_ID_MAX + 1];
		unsigned char sha[PAYQ_SHA256_LEN];
	} seen[ORDER_KEYS_MAX];
	int seen_cnt;
};

payq_manifest_t *payq_manifest_new(void)
{
	return calloc(1, sizeof(payq_manifest_t));
}

void payq_manifest_destroy(payq_manifest_t *m)
{
	if (!m)
		return;
	free(m->malformed);
	free(m);
}

void payq_manifest_order_begin(payq_manifest_t *m)
{
	m->status = ST_NONE;
	m->amount = 0;
	m->currency[0] = '\0';
	m->seen_cnt = 0;
}

/* One row of DESIGN.md's outcome table: the state found decides the outcome. */
static enum outcome decide(payq_manifest_t *m, const payq_command_t *c)
{
	switch (c->type) {
	case PAYQ_CMD_CREATE_ORDER:
		if (m->status != ST_NONE)
			return O_ORDER_EXISTS;
		m->status = ST_UNPAID;
		m->amount = c->amount_minor;
		memcpy(m->currency, c->currency, sizeof(m->currency));
		return O_APPLIED;
	case PAYQ_CMD_PAY:
		if (m->status == ST_NONE)
			return O_UNKNOWN_ORDER;
		if (m->status == ST_PAID) {
			m->double_payment_attempts++;
			return O_ALREADY_PAID;
		}
		if (m->status == ST_CANCELLED)
			return O_ORDER_CANCELLED;
		if (c->amount_minor != m->amount || strcmp(c->currency, m->currency))
			return O_AMOUNT_MISMATCH;
		m->status = ST_PAID;
		return O_APPLIED;
	case PAYQ_CMD_CANCEL_ORDER:
	default:
		if (m->status == ST_UNPAID) {
			m->status = ST_CANCELLED;
			return O_APPLIED;
		}
		return m->status == ST_PAID	   ? O_ALREADY_PAID
		       : m->status == ST_CANCELLED ? O_ORDER_CANCELLED
						   : O_UNKNOWN_ORDER;
	}
}

void payq_manifest_apply(payq_manifest_t *m, const payq_command_t *cmd)
{
	/* The dedup rows: a key seen before never gets an outcome of its own. */
	for (int i = 0; i < m->seen_cnt; i++) {
		if (strcmp(m->seen[i].command_id, cmd->command_id))
			continue;
		if (!memcmp(m->seen[i].sha, cmd->payload_sha256, PAYQ_SHA256_LEN))
			m->duplicates++;
		else
			m->key_reuse++;
		return;
	}
	if (m->seen_cnt < ORDER_KEYS_MAX) {
		memcpy(m->seen[m->seen_cnt].command_id, cmd->command_id, PAYQ_ID_MAX + 1);
		memcpy(m->seen[m->seen_cnt].sha, cmd->payload_sha256, PAYQ_SHA256_LEN);
		m->seen_cnt++;
	}
	m->valid_commands++;
	m->outcomes[cmd->type][decide(m, cmd)]++;
}

void payq_manifest_order_end(payq_manifest_t *m)
{
	if (m->status == ST_PAID)
		m->paid++;
	else if (m->status == ST_CANCELLED)
		m->cancelled++;
	else if (m->status == ST_UNPAID)
		m->unpaid++;
}

int payq_manifest_message(payq_manifest_t *m, const char *order_id, int64_t index,
			  payq_reason_t reason)
{
	malformed_t *e;

	m->messages++;
	if (reason == PAYQ_REASON_OK)
		return 0;
	if (m->malformed_cnt == m->malformed_cap) {
		size_t cap = m->malformed_cap ? 2 * m->malformed_cap : 256;
		malformed_t *grown = realloc(m->malformed, cap * sizeof(*grown));
		if (!grown)
			return -1;
		m->malformed = grown;
		m->malformed_cap = cap;
	}
	e = &m->malformed[m->malformed_cnt++];
	snprintf(e->order_id, sizeof(e->order_id), "%s", order_id);
	e->index = index;
	e->reason = reason;
	m->dlq[reason]++;
	return 0;
}

int64_t payq_manifest_messages(const payq_manifest_t *m)
{
	return m->messages;
}

int64_t payq_manifest_malformed_count(const payq_manifest_t *m)
{
	return (int64_t)m->malformed_cnt;
}

static void num(cJSON *obj, const char *name, double v)
{
	cJSON_AddItemToObject(obj, name, cJSON_CreateNumber(v));
}

static cJSON *build(const payq_manifest_t *m, const payq_manifest_params_t *p)
{
	cJSON *root = cJSON_CreateObject(), *o, *t, *a;

	num(root, "seed", (double)p->seed);
	num(root, "orders", (double)p->orders);
	num(root, "messages", (double)m->messages);
	num(root, "valid_commands", (double)m->valid_commands);
	o = cJSON_AddObjectToObject(root, "outcomes");
	for (int type = PAYQ_CMD_CREATE_ORDER; type <= PAYQ_CMD_CANCEL_ORDER; type++) {
		t = cJSON_AddObjectToObject(o, payq_cmd_type_name((payq_cmd_type_t)type));
		for (const int *oc = type_outcomes[type]; *oc >= 0; oc++)
			num(t, outcome_names[*oc], (double)m->outcomes[type][*oc]);
	}
	num(root, "duplicates", (double)m->duplicates);
	num(root, "double_payment_attempts", (double)m->double_payment_attempts);
	o = cJSON_AddObjectToObject(root, "anomalies");
	num(o, "key_reuse", (double)m->key_reuse);
	o = cJSON_AddObjectToObject(root, "dlq");
	for (int r = PAYQ_REASON_OK + 1; r < PAYQ_REASON__CNT; r++)
		num(o, payq_reason_name((payq_reason_t)r), (double)m->dlq[r]);
	a = cJSON_AddArrayToObject(root, "malformed");
	for (size_t i = 0; i < m->malformed_cnt; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "order_id", m->malformed[i].order_id);
		num(e, "index", (double)m->malformed[i].index);
		cJSON_AddStringToObject(e, "reason", payq_reason_name(m->malformed[i].reason));
		cJSON_AddItemToArray(a, e);
	}
	num(root, "paid_orders", (double)m->paid);
	num(root, "cancelled_orders", (double)m->cancelled);
	num(root, "unpaid_orders", (double)m->unpaid);
	cJSON_AddStringToObject(root, "id_prefix", p->id_prefix);
	o = cJSON_AddObjectToObject(root, "rates");
	num(o, "dup", p->dup_rate);
	num(o, "double_pay", p->double_pay_rate);
	num(o, "cancel", p->cancel_rate);
	num(o, "key_reuse", p->key_reuse_rate);
	num(o, "malformed", p->malformed_rate);
	return root;
}

int payq_manifest_write(const payq_manifest_t *m, const payq_manifest_params_t *p, const char *path,
			char *errstr, size_t errstr_size)
{
	cJSON *root = build(m, p);
	char *text = cJSON_Print(root);
	FILE *fp = NULL;
	int rc = -1;

	if (!text) {
		payq_err(errstr, errstr_size, "manifest: out of memory");
		goto fail;
	}
	fp = strcmp(path, "-") ? fopen(path, "w") : stdout;
	if (!fp) {
		payq_err(errstr, errstr_size, "manifest %s: %s", path, strerror(errno));
		goto fail;
	}
	if (fputs(text, fp) == EOF || fputc('\n', fp) == EOF || fflush(fp) == EOF) {
		payq_err(errstr, errstr_size, "manifest %s: write failed: %s", path,
			 strerror(errno));
		goto fail;
	}
	rc = 0;
fail:
	if (fp && fp != stdout && fclose(fp) == EOF && rc == 0)
		rc = payq_err(errstr, errstr_size, "manifest %s: %s", path, strerror(errno));
	free(text);
	cJSON_Delete(root);
	return rc;
}
