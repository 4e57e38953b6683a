/* outcome.c - DESIGN.md's outcome table (docs/outcomes.md), with no I/O. */
#include "outcome.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const outcome_names[] = {
	"applied",
	"rejected_order_exists",
	"rejected_unknown_order",
	"rejected_already_paid",
	"rejected_order_cancelled",
	"rejected_amount_mismatch",
	"pending",
	"rejected_declined",
	"rejected_payment_in_progress",
	"duplicate",
	"key_reuse",
};

static const char *const status_names[] = {"unpaid", "paid", "cancelled"};

const char *payq_outcome_name(payq_outcome_t o)
{
	return o < PAYQ_OUT__CNT ? outcome_names[o] : "unknown";
}

payq_outcome_t payq_outcome_parse(const char *name)
{
	for (int o = 0; o < PAYQ_OUT__CNT; o++)
		if (!strcmp(outcome_names[o], name))
			return (payq_outcome_t)o;
	return PAYQ_OUT__CNT;
}

const char *payq_order_status_name(payq_order_status_t s)
{
	return status_names[s];
}

payq_order_status_t payq_order_status_parse(const char *name)
{
	return !strcmp(name, "paid")	    ? PAYQ_ORDER_PAID
	       : !strcmp(name, "cancelled") ? PAYQ_ORDER_CANCELLED
					    : PAYQ_ORDER_UNPAID;
}

payq_outcome_status_t payq_batch_reset(payq_batch_state_t *b, size_t norders, size_t nkeys)
{
	if (payq_grow((void **)&b->orders, &b->orders_cap, norders, sizeof(*b->orders)) ||
	    payq_grow((void **)&b->keys, &b->keys_cap, nkeys, sizeof(*b->keys)) ||
	    payq_strmap_reset(&b->order_map, norders) != PAYQ_STRMAP_OK ||
	    payq_strmap_reset(&b->key_map, nkeys) != PAYQ_STRMAP_OK)
		return PAYQ_OUTCOME_NOMEM;
	b->norders = b->nkeys = 0;
	return PAYQ_OUTCOME_OK;
}

payq_outcome_status_t payq_batch_reserve_keys(payq_batch_state_t *b, size_t nkeys)
{
	if (payq_grow((void **)&b->keys, &b->keys_cap, nkeys, sizeof(*b->keys)) ||
	    payq_strmap_reset(&b->key_map, nkeys) != PAYQ_STRMAP_OK)
		return PAYQ_OUTCOME_NOMEM;
	b->nkeys = 0;
	return PAYQ_OUTCOME_OK;
}

void payq_batch_free(payq_batch_state_t *b)
{
	free(b->orders);
	free(b->keys);
	payq_strmap_free(&b->order_map);
	payq_strmap_free(&b->key_map);
	memset(b, 0, sizeof(*b));
}

payq_order_state_t *payq_batch_order(payq_batch_state_t *b, const char *order_id, bool add)
{
	payq_strmap_slot_t *s = payq_strmap_slot(&b->order_map, order_id, NULL);
	payq_order_state_t *o;

	if (s->idx >= 0)
		return &b->orders[s->idx];
	if (!add || b->norders == b->orders_cap)
		return NULL;
	s->k1 = order_id;
	s->k2 = NULL;
	s->idx = (int)b->norders;
	o = &b->orders[b->norders++];
	memset(o, 0, sizeof(*o));
	o->order_id = order_id;
	return o;
}

payq_key_state_t *payq_batch_key(payq_batch_state_t *b, const char *order_id,
				 const char *command_id)
{
	int idx = payq_strmap_get(&b->key_map, order_id, command_id);
	return idx < 0 ? NULL : &b->keys[idx];
}

payq_key_state_t *payq_batch_key_add(payq_batch_state_t *b, const char *order_id,
				     const char *command_id)
{
	payq_key_state_t *k;

	if (b->nkeys == b->keys_cap)
		return NULL;
	k = &b->keys[b->nkeys];
	payq_strmap_put(&b->key_map, order_id, command_id, (int)b->nkeys++);
	memset(k, 0, sizeof(*k));
	k->order_id = order_id;
	k->command_id = command_id;
	k->first = -1;
	return k;
}

/* pay and cancel_order share these rows of the table: both need an unpaid order with
 * no payment in progress. */
static payq_outcome_t check_unpaid(const payq_order_state_t *o, payq_cmd_type_t type, char *detail,
				   size_t size)
{
	if (!o->exists) {
		snprintf(detail, size, "no such order");
		return PAYQ_OUT_REJECTED_UNKNOWN_ORDER;
	}
	if (o->status == PAYQ_ORDER_PAID) {
		snprintf(detail, size, "order is paid");
		return PAYQ_OUT_REJECTED_ALREADY_PAID;
	}
#ifdef PAYQ_MUTATION_PAY_CANCELLED
	/* Deliberately broken build: a pay on a cancelled order passes. */
	if (o->status == PAYQ_ORDER_CANCELLED && type == PAYQ_CMD_PAY)
		return PAYQ_OUT_APPLIED;
#else
	(void)type;
#endif
	if (o->status == PAYQ_ORDER_CANCELLED) {
		snprintf(detail, size, "order is cancelled");
		return PAYQ_OUT_REJECTED_ORDER_CANCELLED;
	}
	if (o->in_progress) {
		snprintf(detail, size, "a payment of the order is pending or unknown");
		return PAYQ_OUT_REJECTED_PAYMENT_IN_PROGRESS;
	}
	return PAYQ_OUT_APPLIED;
}

static payq_outcome_t create_order(payq_order_state_t *o, const payq_command_t *c, char *detail,
				   size_t size)
{
	if (o->exists) {
		snprintf(detail, size, "order is %s", status_names[o->status]);
		return PAYQ_OUT_REJECTED_ORDER_EXISTS;
	}
	o->exists = o->changed = true;
	o->status = PAYQ_ORDER_UNPAID;
	o->version = 1;
	o->amount = c->amount_minor;
	o->currency = c->currency;
	o->customer_id = c->has_customer_id ? c->customer_id : NULL;
	return PAYQ_OUT_APPLIED;
}

static payq_outcome_t pay(payq_order_state_t *o, const payq_command_t *c, bool gateway,
			  char *detail, size_t size)
{
	payq_outcome_t out = check_unpaid(o, c->type, detail, size);

	if (out != PAYQ_OUT_APPLIED)
		return out;
	if (o->amount != c->amount_minor || strcmp(o->currency, c->currency)) {
		snprintf(detail, size, "order is %" PRId64 " %s, pay is %" PRId64 " %s", o->amount,
			 o->currency, c->amount_minor, c->currency);
		return PAYQ_OUT_REJECTED_AMOUNT_MISMATCH;
	}
	if (gateway) {
		/* Paid only once the channel says so (payq_apply_settle()). */
		o->in_progress = true;
		return PAYQ_OUT_PENDING;
	}
	o->status = PAYQ_ORDER_PAID;
	o->version++;
	o->changed = true;
	o->paid_command_id = c->command_id;
	return PAYQ_OUT_APPLIED;
}

static payq_outcome_t cancel_order(payq_order_state_t *o, const payq_command_t *c, char *detail,
				   size_t size)
{
	payq_outcome_t out = check_unpaid(o, c->type, detail, size);

	if (out != PAYQ_OUT_APPLIED)
		return out;
	o->status = PAYQ_ORDER_CANCELLED;
	o->version++;
	o->changed = true;
	return PAYQ_OUT_APPLIED;
}

/* One new command (its key unseen) against its order's state. */
static payq_outcome_t decide(payq_order_state_t *o, const payq_command_t *c, bool gateway,
			     char *detail, size_t size)
{
	switch (c->type) {
	case PAYQ_CMD_CREATE_ORDER: return create_order(o, c, detail, size);
	case PAYQ_CMD_PAY: return pay(o, c, gateway, detail, size);
	case PAYQ_CMD_CANCEL_ORDER: return cancel_order(o, c, detail, size);
	case PAYQ_CMD_NONE: break;
	}
	snprintf(detail, size, "unknown command type");
	return PAYQ_OUT_REJECTED_UNKNOWN_ORDER;
}

/* A command whose key the batch already knows: the same payload is a duplicate, another
 * payload is key reuse. */
static void seen_key(payq_batch_state_t *b, payq_key_state_t *k, const payq_outcome_in_t *in,
		     payq_outcome_out_t *out)
{
	if (strcmp(k->hash_hex, in->hash_hex)) {
		out->outcome = PAYQ_OUT_KEY_REUSE;
		out->key_reuse = true;
		return;
	}
	out->outcome = PAYQ_OUT_DUPLICATE;
	k->dups++;
	out->own_row = k->in_db && !strcmp(k->topic, in->topic) && k->partition == in->partition &&
		       k->offset == in->offset;
	if (out->own_row)
		out->recorded = payq_outcome_parse(k->outcome);
	/* The recovery point of an interrupted gateway pay: charge again with the same
	 * key (once per batch). */
	if (b->gateway && k->in_db && k->pending && !k->resumed && in->cmd->type == PAYQ_CMD_PAY)
		out->charge = k->resumed = true;
}

void payq_outcome_eval(payq_batch_state_t *b, const payq_outcome_in_t *in, int idx,
		       payq_outcome_out_t *out)
{
	const payq_command_t *c = in->cmd;
	payq_key_state_t *k = payq_batch_key(b, c->order_id, c->command_id);
	payq_order_state_t *o;

	memset(out, 0, sizeof(*out));
	out->recorded = PAYQ_OUT__CNT;
	if (k) {
		seen_key(b, k, in, out);
		return;
	}
	k = payq_batch_key_add(b, c->order_id, c->command_id);
	k->hash_hex = in->hash_hex;
	k->first = idx;
	o = payq_batch_order(b, c->order_id, true);
	out->outcome = decide(o, c, b->gateway, out->detail, sizeof(out->detail));
	out->charge = out->outcome == PAYQ_OUT_PENDING;
	out->new_payment = c->type == PAYQ_CMD_PAY &&
			   (out->outcome == PAYQ_OUT_APPLIED || out->outcome == PAYQ_OUT_PENDING);
}
