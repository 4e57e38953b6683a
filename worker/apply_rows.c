/* apply_rows.c - between a batch's two round trips: the rows read become the outcome
 * table's state (apply_load_state), the table is evaluated in offset order
 * (apply_evaluate, over worker/outcome.c), and its results become the arrays the writes
 * send (command, key and order rows). No I/O. */
#include "apply_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int apply_load_state(payq_apply_t *a, size_t n, PGresult *locked, PGresult *dedup)
{
	if (apply_load_keys(a, n, dedup))
		return -1;
	apply_load_orders(a, locked);
	return 0;
}

void apply_load_orders(payq_apply_t *a, PGresult *locked)
{
	for (int r = 0; r < PQntuples(locked); r++) {
		payq_order_state_t *o =
			payq_batch_order(&a->batch, PQgetvalue(locked, r, 0), false);

		if (!o)
			continue;
		o->in_db = o->exists = true;
		o->status = payq_order_status_parse(PQgetvalue(locked, r, 1));
		o->db_version = o->version = atoi(PQgetvalue(locked, r, 2));
		o->amount = strtoll(PQgetvalue(locked, r, 3), NULL, 10);
		o->currency = PQgetvalue(locked, r, 4);
		o->in_progress = a->gateway && PQgetvalue(locked, r, 5)[0] == 't';
	}
}

int apply_load_keys(payq_apply_t *a, size_t n, PGresult *dedup)
{
	/* The dedup read returns every row of the batch's orders, not only the batch's
	 * commands, so size the key index for both. */
	if (payq_batch_reserve_keys(&a->batch, n + (size_t)PQntuples(dedup)) != PAYQ_OUTCOME_OK)
		return -1;
#ifndef PAYQ_MUTATION_SKIP_DEDUP
	for (int r = 0; r < PQntuples(dedup); r++) {
		payq_key_state_t *k = payq_batch_key_add(&a->batch, PQgetvalue(dedup, r, 0),
							 PQgetvalue(dedup, r, 1));
		k->in_db = true;
		k->hash_hex = PQgetvalue(dedup, r, 2);
		k->pending = PQgetvalue(dedup, r, 3)[0] == 't';
		k->outcome = PQgetvalue(dedup, r, 4);
		k->topic = PQgetvalue(dedup, r, 5);
		k->partition = (int32_t)atoi(PQgetvalue(dedup, r, 6));
		k->offset = strtoll(PQgetvalue(dedup, r, 7), NULL, 10);
	}
#else
	(void)dedup;
#endif
	return 0;
}

bool apply_all_found(payq_apply_t *a, const payq_item_t *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!payq_batch_key(&a->batch, items[i].cmd.order_id, items[i].cmd.command_id))
			return false;
	return true;
}

void apply_unfound_orders(payq_apply_t *a, const payq_item_t *items, size_t n)
{
	const char *last = NULL;

	payq_sqlbuf_reset(&a->p[P_LOCK_IDS]);
#ifdef PAYQ_MUTATION_LOCK_SKIP_ANY
	/* Deliberately broken build: an order with any command found is not locked, so a
	 * new command next to a duplicate is evaluated against no order. (changed is
	 * scratch here: it is set only by the evaluation that follows.) */
	for (size_t i = 0; i < n; i++)
		if (payq_batch_key(&a->batch, items[i].cmd.order_id, items[i].cmd.command_id))
			payq_batch_order(&a->batch, items[i].cmd.order_id, false)->changed = true;
#endif
	for (size_t i = 0; i < n; i++) {
		const payq_command_t *c = &items[i].cmd;

		if (payq_batch_key(&a->batch, c->order_id, c->command_id))
			continue;
#ifdef PAYQ_MUTATION_LOCK_SKIP_ANY
		if (payq_batch_order(&a->batch, c->order_id, false)->changed)
			continue;
#endif
		/* The statement takes each order once (DISTINCT); a run of one order's
		 * commands is listed once here. */
		if (!last || strcmp(last, c->order_id))
			payq_sqlbuf_str(&a->p[P_LOCK_IDS], c->order_id);
		last = c->order_id;
	}
#ifdef PAYQ_MUTATION_LOCK_SKIP_ANY
	for (size_t j = 0; j < a->batch.norders; j++)
		a->batch.orders[j].changed = false;
#endif
}

/* The effects of one command that are rows of their own: a key_reuse anomaly, a
 * payment. */
static void command_rows(payq_apply_t *a, const payq_item_t *it, const payq_outcome_out_t *out)
{
	const payq_command_t *c = &it->cmd;
	char num[32], key[PAYQ_GATEWAY_KEY_MAX + 1];

	if (out->key_reuse) {
		payq_sqlbuf_str(&a->p[P_AN_KIND], "key_reuse");
		payq_sqlbuf_str(&a->p[P_AN_ORDER], c->order_id);
		payq_sqlbuf_str(&a->p[P_AN_CMD], c->command_id);
		payq_sqlbuf_str(&a->p[P_AN_DETAIL],
				"same (order_id, command_id) with another payload_sha256");
		snprintf(num, sizeof(num), "%d", (int)it->partition);
		payq_sqlbuf_str(&a->p[P_AN_PART], num);
		snprintf(num, sizeof(num), "%" PRId64, it->offset);
		payq_sqlbuf_str(&a->p[P_AN_OFF], num);
	}
	if (out->new_payment) {
		payq_sqlbuf_str(&a->p[P_PAY_ORDER], c->order_id);
		payq_sqlbuf_str(&a->p[P_PAY_CMD], c->command_id);
		snprintf(num, sizeof(num), "%" PRId64, c->amount_minor);
		payq_sqlbuf_str(&a->p[P_PAY_AMOUNT], num);
		payq_sqlbuf_str(&a->p[P_PAY_CUR], c->currency);
		payq_sqlbuf_str(&a->p[P_PAY_PAYER], c->has_payer_id ? c->payer_id : NULL);
		payq_gateway_key(c->order_id, c->command_id, key, sizeof(key));
		payq_sqlbuf_str(&a->p[P_PAY_KEY], key);
	}
}

/* Dedup rows of new keys, and duplicate counters of the keys already recorded. */
static void key_rows(payq_apply_t *a, const payq_item_t *items)
{
	char num[32];

	for (size_t j = 0; j < a->batch.nkeys; j++) {
		const payq_key_state_t *k = &a->batch.keys[j];
		if (k->in_db) {
			if (!k->dups)
				continue;
			payq_sqlbuf_str(&a->p[P_DUP_ORDER], k->order_id);
			payq_sqlbuf_str(&a->p[P_DUP_CMD], k->command_id);
			snprintf(num, sizeof(num), "%d", k->dups);
			payq_sqlbuf_str(&a->p[P_DUP_N], num);
		} else {
			const payq_item_t *it = &items[k->first];
			const char *detail = a->out[k->first].detail;
			payq_sqlbuf_str(&a->p[P_PC_ORDER], k->order_id);
			payq_sqlbuf_str(&a->p[P_PC_CMD], k->command_id);
			payq_sqlbuf_str(&a->p[P_PC_TYPE], payq_cmd_type_name(it->cmd.type));
			payq_sqlbuf_str(&a->p[P_PC_HASH], k->hash_hex);
			payq_sqlbuf_str(&a->p[P_PC_OUT], payq_outcome_name(it->outcome));
			payq_sqlbuf_str(&a->p[P_PC_DETAIL], detail[0] ? detail : NULL);
			snprintf(num, sizeof(num), "%d", (int)it->partition);
			payq_sqlbuf_str(&a->p[P_PC_PART], num);
			snprintf(num, sizeof(num), "%" PRId64, it->offset);
			payq_sqlbuf_str(&a->p[P_PC_OFF], num);
			snprintf(num, sizeof(num), "%d", k->dups);
			payq_sqlbuf_str(&a->p[P_PC_DUPS], num);
		}
	}
}

/* One row write per changed order, whatever number of commands touched it. */
static void order_rows(payq_apply_t *a)
{
	char num[32];

	for (size_t j = 0; j < a->batch.norders; j++) {
		const payq_order_state_t *o = &a->batch.orders[j];
		if (!o->changed)
			continue;
		if (!o->in_db) {
			payq_sqlbuf_str(&a->p[P_ORD_ID], o->order_id);
			snprintf(num, sizeof(num), "%" PRId64, o->amount);
			payq_sqlbuf_str(&a->p[P_ORD_AMOUNT], num);
			payq_sqlbuf_str(&a->p[P_ORD_CUR], o->currency);
			payq_sqlbuf_str(&a->p[P_ORD_CUST], o->customer_id);
			payq_sqlbuf_str(&a->p[P_ORD_STATUS], payq_order_status_name(o->status));
			snprintf(num, sizeof(num), "%d", o->version);
			payq_sqlbuf_str(&a->p[P_ORD_VERSION], num);
			payq_sqlbuf_str(&a->p[P_ORD_PAID], o->paid_command_id);
		} else {
			payq_sqlbuf_str(&a->p[P_UPD_ID], o->order_id);
			snprintf(num, sizeof(num), "%d", o->db_version);
			payq_sqlbuf_str(&a->p[P_UPD_OLD], num);
			snprintf(num, sizeof(num), "%d", o->version);
			payq_sqlbuf_str(&a->p[P_UPD_NEW], num);
			payq_sqlbuf_str(&a->p[P_UPD_STATUS], payq_order_status_name(o->status));
			payq_sqlbuf_str(&a->p[P_UPD_PAID], o->paid_command_id);
		}
	}
}

/* Runs the outcome table (outcome.c) over the batch in offset order and fills the
 * write arrays with its effects. */
void apply_evaluate(payq_apply_t *a, payq_item_t *items, size_t n)
{
	a->batch.gateway = a->gateway;
	for (size_t i = 0; i < n; i++) {
		payq_item_t *it = &items[i];
		payq_outcome_out_t *out = &a->out[i];
		const payq_outcome_in_t in = {
			.cmd = &it->cmd,
			.hash_hex = a->hex[i],
			.topic = a->topic,
			.partition = it->partition,
			.offset = it->offset,
		};

		payq_outcome_eval(&a->batch, &in, (int)i, out);
		it->outcome = out->outcome;
		it->charge = out->charge;
		it->own_row = out->own_row;
		it->recorded = out->recorded;
		command_rows(a, it, out);
	}
	key_rows(a, items);
	order_rows(a);
}
