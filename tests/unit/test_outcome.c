/* test_outcome.c - the outcome table (docs/outcomes.md), one row per cell in ledger and
 * gateway mode, and sequences of commands to one order inside one batch. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "outcome.h"

#define ORDER "order-1"
#define HASH_A "aa"
#define HASH_B "bb"
#define TOPIC "payq.commands"

enum mode { LEDGER = 1, GATEWAY = 2, BOTH = 3 };
enum start { NO_ORDER, UNPAID, PAID, CANCELLED };
enum key { NEW_KEY, SAME_KEY, SAME_KEY_PENDING, OTHER_PAYLOAD };

/* What the batch's state holds before the command: the order (read FOR UPDATE) at
 * version 3 for 1000 EUR, and perhaps the command's key (read from processed_commands). */
struct cell {
	const char *name;
	unsigned modes;
	enum start order;
	bool in_progress; /* gateway mode: a pending or unknown payment */
	enum key key;
	payq_cmd_type_t type;
	int64_t amount;
	const char *currency;
	/* expected */
	payq_outcome_t outcome;
	enum start status; /* afterwards */
	int version;	   /* afterwards; 0: no order */
	bool changed, charge, new_payment, key_reuse;
};

#define C PAYQ_CMD_CREATE_ORDER
#define P PAYQ_CMD_PAY
#define X PAYQ_CMD_CANCEL_ORDER
#define O(x) PAYQ_OUT_##x

/* One row per cell of the outcome table, aligned as a table: clang-format would wrap it. */
/* clang-format off */
static const struct cell cells[] = {
	/* name                                modes    order     prog   key               cmd amount  cur    outcome                       status  ver  chg    charge pay    reuse */
	{"any: same key, same payload",         BOTH,    UNPAID,   false, SAME_KEY,         P, 1000, "EUR", O(DUPLICATE),                  UNPAID,    3, false, false, false, false},
	{"any: same key, same payload, create", BOTH,    UNPAID,   false, SAME_KEY,         C, 1000, "EUR", O(DUPLICATE),                  UNPAID,    3, false, false, false, false},
	{"any: same key, another payload",      BOTH,    UNPAID,   false, OTHER_PAYLOAD,    P, 1000, "EUR", O(KEY_REUSE),                  UNPAID,    3, false, false, false, true},
	{"create_order: no order",              BOTH,    NO_ORDER, false, NEW_KEY,          C, 1000, "EUR", O(APPLIED),                    UNPAID,    1, true,  false, false, false},
	{"create_order: exists unpaid",         BOTH,    UNPAID,   false, NEW_KEY,          C, 1000, "EUR", O(REJECTED_ORDER_EXISTS),      UNPAID,    3, false, false, false, false},
	{"create_order: exists paid",           BOTH,    PAID,     false, NEW_KEY,          C, 1000, "EUR", O(REJECTED_ORDER_EXISTS),      PAID,      3, false, false, false, false},
	{"create_order: exists cancelled",      BOTH,    CANCELLED,false, NEW_KEY,          C, 1000, "EUR", O(REJECTED_ORDER_EXISTS),      CANCELLED, 3, false, false, false, false},
	{"pay: no order",                       BOTH,    NO_ORDER, false, NEW_KEY,          P, 1000, "EUR", O(REJECTED_UNKNOWN_ORDER),     NO_ORDER,  0, false, false, false, false},
	{"pay: order paid",                     BOTH,    PAID,     false, NEW_KEY,          P, 1000, "EUR", O(REJECTED_ALREADY_PAID),      PAID,      3, false, false, false, false},
	{"pay: order cancelled",                BOTH,    CANCELLED,false, NEW_KEY,          P, 1000, "EUR", O(REJECTED_ORDER_CANCELLED),   CANCELLED, 3, false, false, false, false},
	{"pay: amount differs",                 BOTH,    UNPAID,   false, NEW_KEY,          P, 999,  "EUR", O(REJECTED_AMOUNT_MISMATCH),   UNPAID,    3, false, false, false, false},
	{"pay: currency differs",               BOTH,    UNPAID,   false, NEW_KEY,          P, 1000, "USD", O(REJECTED_AMOUNT_MISMATCH),   UNPAID,    3, false, false, false, false},
	{"pay: unpaid, matching (ledger)",      LEDGER,  UNPAID,   false, NEW_KEY,          P, 1000, "EUR", O(APPLIED),                    PAID,      4, true,  false, true,  false},
	{"pay: unpaid, matching (gateway)",     GATEWAY, UNPAID,   false, NEW_KEY,          P, 1000, "EUR", O(PENDING),                    UNPAID,    3, false, true,  true,  false},
	{"cancel_order: unpaid",                BOTH,    UNPAID,   false, NEW_KEY,          X, 0,    "",    O(APPLIED),                    CANCELLED, 4, true,  false, false, false},
	{"cancel_order: paid",                  BOTH,    PAID,     false, NEW_KEY,          X, 0,    "",    O(REJECTED_ALREADY_PAID),      PAID,      3, false, false, false, false},
	{"cancel_order: cancelled",             BOTH,    CANCELLED,false, NEW_KEY,          X, 0,    "",    O(REJECTED_ORDER_CANCELLED),   CANCELLED, 3, false, false, false, false},
	{"cancel_order: no order",              BOTH,    NO_ORDER, false, NEW_KEY,          X, 0,    "",    O(REJECTED_UNKNOWN_ORDER),     NO_ORDER,  0, false, false, false, false},
	/* Gateway mode: a pending or unknown payment blocks pay and cancel_order. */
	{"pay: payment in progress",            GATEWAY, UNPAID,   true,  NEW_KEY,          P, 1000, "EUR", O(REJECTED_PAYMENT_IN_PROGRESS), UNPAID,  3, false, false, false, false},
	{"cancel_order: payment in progress",   GATEWAY, UNPAID,   true,  NEW_KEY,          X, 0,    "",    O(REJECTED_PAYMENT_IN_PROGRESS), UNPAID,  3, false, false, false, false},
	/* The order's own rows win over a payment in progress: paid is paid. */
	{"pay: no order, in progress",          GATEWAY, NO_ORDER, true,  NEW_KEY,          P, 1000, "EUR", O(REJECTED_UNKNOWN_ORDER),     NO_ORDER,  0, false, false, false, false},
	/* Gateway mode: a redelivered pay still pending resumes its charge; ledger mode
	 * never charges. */
	{"pay: duplicate of a pending pay",     GATEWAY, UNPAID,   true,  SAME_KEY_PENDING, P, 1000, "EUR", O(DUPLICATE),                  UNPAID,    3, false, true,  false, false},
	{"pay: duplicate, pending (ledger)",    LEDGER,  UNPAID,   false, SAME_KEY_PENDING, P, 1000, "EUR", O(DUPLICATE),                  UNPAID,    3, false, false, false, false},
	{"cancel: duplicate of a pending key",  GATEWAY, UNPAID,   true,  SAME_KEY_PENDING, X, 0,    "",    O(DUPLICATE),                  UNPAID,    3, false, false, false, false},
};
/* clang-format on */

#undef C
#undef P
#undef X
#undef O

static payq_command_t make_cmd(payq_cmd_type_t type, const char *order_id, const char *command_id,
			       int64_t amount, const char *currency)
{
	payq_command_t c;

	memset(&c, 0, sizeof(c));
	c.type = type;
	snprintf(c.order_id, sizeof(c.order_id), "%s", order_id);
	snprintf(c.command_id, sizeof(c.command_id), "%s", command_id);
	c.amount_minor = amount;
	snprintf(c.currency, sizeof(c.currency), "%s", currency);
	return c;
}

/* Sets up the batch as apply.c's load_state does after reading the database. */
static void seed(payq_batch_state_t *b, bool gateway, enum start order, bool in_progress,
		 size_t ncmds)
{
	payq_order_state_t *o;

	ck_assert_int_eq(payq_batch_reset(b, 4, 4), PAYQ_OUTCOME_OK);
	b->gateway = gateway;
	o = payq_batch_order(b, ORDER, true);
	ck_assert_ptr_nonnull(o);
	ck_assert_int_eq(payq_batch_reserve_keys(b, ncmds + 2), PAYQ_OUTCOME_OK);
	if (order == NO_ORDER)
		return;
	o->in_db = o->exists = true;
	o->status = order == PAID	 ? PAYQ_ORDER_PAID
		    : order == CANCELLED ? PAYQ_ORDER_CANCELLED
					 : PAYQ_ORDER_UNPAID;
	o->db_version = o->version = 3;
	o->amount = 1000;
	o->currency = "EUR";
	o->in_progress = gateway && in_progress;
}

static void seed_key(payq_batch_state_t *b, const char *command_id, const char *hash,
		     const char *outcome, bool pending)
{
	payq_key_state_t *k = payq_batch_key_add(b, ORDER, command_id);

	ck_assert_ptr_nonnull(k);
	k->in_db = true;
	k->hash_hex = hash;
	k->pending = pending;
	k->outcome = outcome;
	k->topic = TOPIC;
	k->partition = 0;
	k->offset = 7;
}

static payq_outcome_out_t eval(payq_batch_state_t *b, const payq_command_t *c, const char *hash,
			       int idx)
{
	payq_outcome_out_t out;
	const payq_outcome_in_t in = {
		.cmd = c,
		.hash_hex = hash,
		.topic = TOPIC,
		.partition = 0,
		.offset = 100 + idx,
	};

	payq_outcome_eval(b, &in, idx, &out);
	return out;
}

/* Loop index: cell i / 2 in ledger (even) or gateway (odd) mode. */
START_TEST(test_cell)
{
	const struct cell *t = &cells[_i / 2];
	bool gateway = _i % 2;
	payq_batch_state_t b = {0};
	payq_command_t c = make_cmd(t->type, ORDER, "cmd-1", t->amount, t->currency);
	payq_outcome_out_t out;
	const payq_order_state_t *o;

	if (!(t->modes & (gateway ? GATEWAY : LEDGER))) {
		payq_batch_free(&b);
		return;
	}
	seed(&b, gateway, t->order, t->in_progress, 1);
	if (t->key == SAME_KEY)
		seed_key(&b, "cmd-1", HASH_A, "applied", false);
	else if (t->key == SAME_KEY_PENDING)
		seed_key(&b, "cmd-1", HASH_A, "pending", true);
	else if (t->key == OTHER_PAYLOAD)
		seed_key(&b, "cmd-1", HASH_B, "applied", false);

	out = eval(&b, &c, HASH_A, 0);
	o = payq_batch_order(&b, ORDER, false);
	ck_assert_msg(out.outcome == t->outcome, "%s (%s mode): outcome %s, want %s", t->name,
		      gateway ? "gateway" : "ledger", payq_outcome_name(out.outcome),
		      payq_outcome_name(t->outcome));
	ck_assert_msg(out.charge == t->charge, "%s (%s mode): charge %d", t->name,
		      gateway ? "gateway" : "ledger", out.charge);
	ck_assert_msg(out.new_payment == t->new_payment, "%s: new_payment %d", t->name,
		      out.new_payment);
	ck_assert_msg(out.key_reuse == t->key_reuse, "%s: key_reuse %d", t->name, out.key_reuse);
	ck_assert_msg(o->changed == t->changed, "%s: changed %d", t->name, o->changed);
	if (t->status == NO_ORDER) {
		ck_assert_msg(!o->exists, "%s: the order exists", t->name);
	} else {
		payq_order_status_t want = t->status == PAID	    ? PAYQ_ORDER_PAID
					   : t->status == CANCELLED ? PAYQ_ORDER_CANCELLED
								    : PAYQ_ORDER_UNPAID;
		ck_assert_msg(o->exists && o->status == want, "%s: status %s", t->name,
			      payq_order_status_name(o->status));
		ck_assert_msg(o->version == t->version, "%s: version %d, want %d", t->name,
			      o->version, t->version);
	}
	/* A rejection says why; an applied command, a duplicate or key reuse does not. */
	if (t->outcome >= PAYQ_OUT_REJECTED_ORDER_EXISTS && t->outcome != PAYQ_OUT_PENDING &&
	    t->outcome < PAYQ_OUT_DUPLICATE)
		ck_assert_msg(out.detail[0], "%s: no detail", t->name);
	/* A new key is recorded once, by this command; a known one counts a duplicate. */
	if (t->key == NEW_KEY)
		ck_assert_int_eq(payq_batch_key(&b, ORDER, "cmd-1")->first, 0);
	if (t->key == SAME_KEY || t->key == SAME_KEY_PENDING)
		ck_assert_int_eq(payq_batch_key(&b, ORDER, "cmd-1")->dups, 1);
	payq_batch_free(&b);
}
END_TEST

/* A step of a batch: the command, its payload hash, the outcome it must get. */
struct step {
	payq_cmd_type_t type;
	const char *command_id;
	int64_t amount;
	const char *hash;
	payq_outcome_t want;
	bool charge;
};

#define SEQ_MAX 4

struct sequence {
	const char *name;
	unsigned modes;
	enum start order;
	struct step steps[SEQ_MAX];
	size_t n;
	/* the merged order write */
	enum start status;
	int version;
	const char *paid_command_id;
	int new_keys; /* processed_commands rows to write */
};

/* The sequences as a table, one command per S(): clang-format would put one field a line. */
/* clang-format off */
#define S(t, id, amt, h, o, ch) {PAYQ_CMD_##t, id, amt, h, PAYQ_OUT_##o, ch}

static const struct sequence sequences[] = {
	{"create then pay", LEDGER, NO_ORDER,
	 {S(CREATE_ORDER, "c", 1000, HASH_A, APPLIED, false),
	  S(PAY, "p", 1000, HASH_A, APPLIED, false)},
	 2, PAID, 2, "p", 2},
	{"create then pay", GATEWAY, NO_ORDER,
	 {S(CREATE_ORDER, "c", 1000, HASH_A, APPLIED, false),
	  S(PAY, "p", 1000, HASH_A, PENDING, true)},
	 2, UNPAID, 1, NULL, 2},
	{"pay then pay", LEDGER, UNPAID,
	 {S(PAY, "p1", 1000, HASH_A, APPLIED, false),
	  S(PAY, "p2", 1000, HASH_A, REJECTED_ALREADY_PAID, false)},
	 2, PAID, 4, "p1", 2},
	{"pay then pay", GATEWAY, UNPAID,
	 {S(PAY, "p1", 1000, HASH_A, PENDING, true),
	  S(PAY, "p2", 1000, HASH_A, REJECTED_PAYMENT_IN_PROGRESS, false)},
	 2, UNPAID, 3, NULL, 2},
	{"pay, cancel, pay", LEDGER, UNPAID,
	 {S(PAY, "p1", 1000, HASH_A, APPLIED, false),
	  S(CANCEL_ORDER, "x", 0, HASH_A, REJECTED_ALREADY_PAID, false),
	  S(PAY, "p2", 1000, HASH_A, REJECTED_ALREADY_PAID, false)},
	 3, PAID, 4, "p1", 3},
	{"pay, cancel, pay", GATEWAY, UNPAID,
	 {S(PAY, "p1", 1000, HASH_A, PENDING, true),
	  S(CANCEL_ORDER, "x", 0, HASH_A, REJECTED_PAYMENT_IN_PROGRESS, false),
	  S(PAY, "p2", 1000, HASH_A, REJECTED_PAYMENT_IN_PROGRESS, false)},
	 3, UNPAID, 3, NULL, 3},
	/* A mismatched pay, then a cancel, then a pay: the cancel wins. */
	{"mismatch, cancel, pay", BOTH, UNPAID,
	 {S(PAY, "p1", 999, HASH_A, REJECTED_AMOUNT_MISMATCH, false),
	  S(CANCEL_ORDER, "x", 0, HASH_A, APPLIED, false),
	  S(PAY, "p2", 1000, HASH_A, REJECTED_ORDER_CANCELLED, false)},
	 3, CANCELLED, 4, NULL, 3},
	/* The same key with another payload in the same batch: key_reuse, the first stays. */
	{"key reuse", LEDGER, UNPAID,
	 {S(PAY, "p", 1000, HASH_A, APPLIED, false),
	  S(PAY, "p", 1000, HASH_B, KEY_REUSE, false)},
	 2, PAID, 4, "p", 1},
	{"key reuse", GATEWAY, UNPAID,
	 {S(PAY, "p", 1000, HASH_A, PENDING, true),
	  S(PAY, "p", 1000, HASH_B, KEY_REUSE, false)},
	 2, UNPAID, 3, NULL, 1},
	/* A redelivery inside the batch is a duplicate of the first, never charged twice. */
	{"duplicate in the batch", LEDGER, UNPAID,
	 {S(PAY, "p", 1000, HASH_A, APPLIED, false),
	  S(PAY, "p", 1000, HASH_A, DUPLICATE, false),
	  S(PAY, "p", 1000, HASH_A, DUPLICATE, false)},
	 3, PAID, 4, "p", 1},
	{"duplicate in the batch", GATEWAY, UNPAID,
	 {S(PAY, "p", 1000, HASH_A, PENDING, true),
	  S(PAY, "p", 1000, HASH_A, DUPLICATE, false),
	  S(PAY, "p", 1000, HASH_A, DUPLICATE, false)},
	 3, UNPAID, 3, NULL, 1},
	{"create, duplicate create, cancel", BOTH, NO_ORDER,
	 {S(CREATE_ORDER, "c", 1000, HASH_A, APPLIED, false),
	  S(CREATE_ORDER, "c", 1000, HASH_A, DUPLICATE, false),
	  S(CANCEL_ORDER, "x", 0, HASH_A, APPLIED, false)},
	 3, CANCELLED, 2, NULL, 2},
};
/* clang-format on */

#undef S

START_TEST(test_sequence)
{
	const struct sequence *t = &sequences[_i / 2];
	bool gateway = _i % 2;
	const char *mode = gateway ? "gateway" : "ledger";
	payq_command_t cmds[SEQ_MAX];
	payq_batch_state_t b = {0};
	const payq_order_state_t *o;
	int new_keys = 0;

	if (!(t->modes & (gateway ? GATEWAY : LEDGER)))
		return;
	seed(&b, gateway, t->order, false, t->n);
	for (size_t i = 0; i < t->n; i++) {
		const struct step *s = &t->steps[i];
		payq_outcome_out_t out;

		cmds[i] = make_cmd(s->type, ORDER, s->command_id, s->amount, "EUR");
		out = eval(&b, &cmds[i], s->hash, (int)i);
		ck_assert_msg(out.outcome == s->want, "%s (%s mode), step %zu: %s, want %s",
			      t->name, mode, i + 1, payq_outcome_name(out.outcome),
			      payq_outcome_name(s->want));
		ck_assert_msg(out.charge == s->charge, "%s (%s mode), step %zu: charge %d", t->name,
			      mode, i + 1, out.charge);
	}
	o = payq_batch_order(&b, ORDER, false);
	{
		payq_order_status_t want = t->status == PAID	    ? PAYQ_ORDER_PAID
					   : t->status == CANCELLED ? PAYQ_ORDER_CANCELLED
								    : PAYQ_ORDER_UNPAID;
		ck_assert_msg(o->exists && o->status == want, "%s (%s mode): status %s", t->name,
			      mode, payq_order_status_name(o->status));
	}
	ck_assert_msg(o->version == t->version, "%s (%s mode): version %d, want %d", t->name, mode,
		      o->version, t->version);
	if (t->paid_command_id)
		ck_assert_str_eq(o->paid_command_id, t->paid_command_id);
	else
		ck_assert_ptr_null(o->paid_command_id);
	/* One order in the batch, whatever number of commands touched it. */
	ck_assert_uint_eq(b.norders, 1);
	for (size_t j = 0; j < b.nkeys; j++)
		new_keys += !b.keys[j].in_db;
	ck_assert_int_eq(new_keys, t->new_keys);
	payq_batch_free(&b);
}
END_TEST

/* A duplicate of the very message that wrote the row (same topic, partition, offset)
 * reports the outcome it recorded, for a retry whose first COMMIT landed. */
START_TEST(test_own_row)
{
	payq_batch_state_t b = {0};
	payq_command_t c = make_cmd(PAYQ_CMD_PAY, ORDER, "cmd-1", 1000, "EUR");
	payq_outcome_out_t out;
	const payq_outcome_in_t own = {&c, HASH_A, TOPIC, 0, 7};
	const payq_outcome_in_t other = {&c, HASH_A, TOPIC, 1, 7};

	seed(&b, false, PAID, false, 2);
	seed_key(&b, "cmd-1", HASH_A, "applied", false);
	payq_outcome_eval(&b, &own, 0, &out);
	ck_assert_int_eq(out.outcome, PAYQ_OUT_DUPLICATE);
	ck_assert(out.own_row);
	ck_assert_int_eq(out.recorded, PAYQ_OUT_APPLIED);
	payq_outcome_eval(&b, &other, 1, &out);
	ck_assert(!out.own_row);
	ck_assert_int_eq(out.recorded, PAYQ_OUT__CNT);
	ck_assert_int_eq(payq_batch_key(&b, ORDER, "cmd-1")->dups, 2);
	payq_batch_free(&b);
}
END_TEST

/* A pending pay redelivered twice in one batch is charged once. */
START_TEST(test_resume_once)
{
	payq_batch_state_t b = {0};
	payq_command_t c = make_cmd(PAYQ_CMD_PAY, ORDER, "cmd-1", 1000, "EUR");

	seed(&b, true, UNPAID, true, 2);
	seed_key(&b, "cmd-1", HASH_A, "pending", true);
	ck_assert(eval(&b, &c, HASH_A, 0).charge);
	ck_assert(!eval(&b, &c, HASH_A, 1).charge);
	payq_batch_free(&b);
}
END_TEST

START_TEST(test_names)
{
	for (int o = 0; o < PAYQ_OUT__CNT; o++)
		ck_assert_int_eq(payq_outcome_parse(payq_outcome_name((payq_outcome_t)o)), o);
	ck_assert_int_eq(payq_outcome_parse("nonsense"), PAYQ_OUT__CNT);
	ck_assert_str_eq(payq_outcome_name(PAYQ_OUT__CNT), "unknown");
	ck_assert_int_eq(payq_order_status_parse("cancelled"), PAYQ_ORDER_CANCELLED);
	ck_assert_str_eq(payq_order_status_name(PAYQ_ORDER_PAID), "paid");
}
END_TEST

static Suite *outcome_suite(void)
{
	Suite *s = suite_create("outcome");
	TCase *tc = tcase_create("outcome");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_cell, 0, (int)(2 * sizeof(cells) / sizeof(cells[0])));
	tcase_add_loop_test(tc, test_sequence, 0,
			    (int)(2 * sizeof(sequences) / sizeof(sequences[0])));
	tcase_add_test(tc, test_own_row);
	tcase_add_test(tc, test_resume_once);
	tcase_add_test(tc, test_names);
	suite_add_tcase(s, tc);
	return s;
}

PAYQ_TEST_SUITES(outcome_suite);
