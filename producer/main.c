/* main.c - payq-producer: parses the command line and hands over to a subcommand. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "commands.h"
#include "config.h"
#include "generate.h"
#include "log.h"
#include "signals.h"
#include "sink.h"
#include "util.h"

enum { C_PAY = 1, C_CREATE = 2, C_CANCEL = 4, C_SEND = 8, C_GENERATE = 16, C_ALL = 31 };

enum opt_id {
	O_ORDER,
	O_AMOUNT,
	O_CURRENCY,
	O_PAYER,
	O_CUSTOMER,
	O_REASON,
	O_COMMAND_ID,
	O_SKIP_INVALID,
	O_ORDERS,
	O_SEED,
	O_DUP,
	O_DOUBLE_PAY,
	O_CANCEL,
	O_KEY_REUSE,
	O_MALFORMED,
	O_MANIFEST,
	O_ID_PREFIX,
	O_RATE,
	O_DRY_RUN,
	O_PARTITIONS,
	O_PRINT,
	O__CNT
};

static const struct {
	const char *name;
	unsigned cmds;
	bool has_arg;
} opts_table[O__CNT] = {
	[O_ORDER] = {"order", C_PAY | C_CREATE | C_CANCEL, true},
	[O_AMOUNT] = {"amount", C_PAY | C_CREATE, true},
	[O_CURRENCY] = {"currency", C_PAY | C_CREATE, true},
	[O_PAYER] = {"payer", C_PAY, true},
	[O_CUSTOMER] = {"customer", C_CREATE, true},
	[O_REASON] = {"reason", C_CANCEL, true},
	[O_COMMAND_ID] = {"command-id", C_PAY | C_CREATE | C_CANCEL, true},
	[O_SKIP_INVALID] = {"skip-invalid", C_SEND, false},
	[O_ORDERS] = {"orders", C_GENERATE, true},
	[O_SEED] = {"seed", C_GENERATE, true},
	[O_DUP] = {"dup-rate", C_GENERATE, true},
	[O_DOUBLE_PAY] = {"double-pay-rate", C_GENERATE, true},
	[O_CANCEL] = {"cancel-rate", C_GENERATE, true},
	[O_KEY_REUSE] = {"key-reuse-rate", C_GENERATE, true},
	[O_MALFORMED] = {"malformed-rate", C_GENERATE, true},
	[O_MANIFEST] = {"manifest", C_GENERATE, true},
	[O_ID_PREFIX] = {"id-prefix", C_GENERATE, true},
	[O_RATE] = {"rate", C_SEND | C_GENERATE, true},
	[O_DRY_RUN] = {"dry-run", C_ALL, false},
	[O_PARTITIONS] = {"partitions", C_ALL, true},
	[O_PRINT] = {"print", C_ALL, false},
};

static const struct {
	const char *name;
	unsigned bit;
	payq_cmd_type_t type;
} commands[] = {
	{"pay", C_PAY, PAYQ_CMD_PAY},
	{"create-order", C_CREATE, PAYQ_CMD_CREATE_ORDER},
	{"cancel", C_CANCEL, PAYQ_CMD_CANCEL_ORDER},
	{"send", C_SEND, PAYQ_CMD_NONE},
	{"generate", C_GENERATE, PAYQ_CMD_NONE},
};

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-producer [SETTINGS] COMMAND [OPTIONS]\n"
		"Puts payment commands on the commands topic, keyed by order ID (murmur2, as the\n"
		"Java client), with an idempotent producer (acks=all).\n"
		"\n"
		"Commands:\n"
		"  pay --order ID --amount N --currency CUR [--payer ID] [--command-id ID]\n"
		"  create-order --order ID --amount N --currency CUR [--customer ID] [--command-id "
		"ID]\n"
		"  cancel --order ID [--reason TEXT] [--command-id ID]\n"
		"      One command, checked by the codec before it is sent. N is in minor units.\n"
		"      Without --command-id a random 128-bit ID is made and printed on stdout.\n"
		"  send FILE|- [--skip-invalid] [--rate R]\n"
		"      JSONL, one command per line (blank lines skipped), sent as given. Every\n"
		"      line is validated first: if any is bad, each is reported as\n"
		"      \"line N: REASON: message\" and nothing is sent (exit 2). --skip-invalid\n"
		"      sends the valid lines instead and reports the rest.\n"
		"  generate --orders N [--seed S] [--dup-rate P] [--double-pay-rate P]\n"
		"           [--cancel-rate P] [--key-reuse-rate P] [--malformed-rate P]\n"
		"           [--rate R] [--manifest FILE] [--id-prefix STR]\n"
		"      Load: per order create_order then pay, plus anomalies with probability P\n"
		"      (0..1): an identical re-sent pay, a second pay, a cancel (before or after\n"
		"      the pay), a pay reusing the command ID with another amount, a malformed\n"
		"      message (cycling through every DLQ reason). Same seed and options, same\n"
		"      bytes. The seed (0..2^53-1) is random when absent and always logged.\n"
		"      IDs: PREFIXORD-SEED-N, PREFIXc-SEED-N-K. --manifest writes the expected\n"
		"      outcomes as JSON (\"-\" for stdout).\n"
		"\n"
		"Options for every command:\n"
		"  --dry-run        send nothing; print \"partition order_id command_id type\" "
		"per\n"
		"                   message (partition count from the broker, or --partitions)\n"
		"  --partitions N   with --dry-run: assume N partitions, no broker needed\n"
		"  --print          print each message as \"partition<TAB>key<TAB>value\" (kcat "
		"-f\n"
		"                   '%%p\\t%%k\\t%%s\\n'); without --dry-run, once it is "
		"persisted\n"
		"  --rate R         at most R messages per second (send, generate)\n"
		"\n"
		"Exit codes: 0 every message persisted (--skip-invalid: every valid one);\n"
		"  1 some message not persisted, or a Kafka error; 2 usage error or invalid "
		"input,\n"
		"  nothing sent; 130 stopped by SIGINT or SIGTERM (after a bounded flush).\n"
		"A closing summary on stderr gives sent, delivered, failed and counts per "
		"partition.\n"
		"\n");
}

static int parse_rate(const char *flag, const char *s, double lo, double hi, double *out,
		      char *errstr, size_t errstr_size)
{
	char *end;
	double v;

	if (!s)
		return 0;
	v = strtod(s, &end);
	if (end == s || *end || !isfinite(v) || v < lo || v > hi)
		return payq_err(errstr, errstr_size, "--%s: \"%s\" is not a number from %g to %g",
				flag, s, lo, hi);
	*out = v;
	return 0;
}

static int parse_generate(const char **v, payq_producer_gen_opts_t *go, char *errstr,
			  size_t errstr_size)
{
	int64_t n;

	memset(go, 0, sizeof(*go));
	if (!v[O_ORDERS])
		return payq_err(errstr, errstr_size, "--orders is required");
	if (payq_parse_int64(v[O_ORDERS], 1, PAYQ_GEN_ORDERS_MAX, &go->orders))
		return payq_err(errstr, errstr_size,
				"--orders: \"%s\" is not an integer from 1 to %lld", v[O_ORDERS],
				(long long)PAYQ_GEN_ORDERS_MAX);
	if (v[O_SEED]) {
		if (payq_parse_int64(v[O_SEED], 0, (int64_t)PAYQ_GEN_SEED_MAX, &n))
			return payq_err(errstr, errstr_size,
					"--seed: \"%s\" is not an integer from 0 to %llu",
					v[O_SEED], (unsigned long long)PAYQ_GEN_SEED_MAX);
		go->seed = (uint64_t)n;
	} else {
		if (payq_random_bytes(&go->seed, sizeof(go->seed)))
			return payq_err(errstr, errstr_size, "no random bytes for a seed");
		go->seed &= PAYQ_GEN_SEED_MAX;
	}
	go->id_prefix = v[O_ID_PREFIX] ? v[O_ID_PREFIX] : "";
	if (*go->id_prefix &&
	    (strlen(go->id_prefix) > PAYQ_GEN_PREFIX_MAX || !payq_codec_valid_id(go->id_prefix)))
		return payq_err(
			errstr, errstr_size,
			"--id-prefix: \"%s\" is not up to %d characters from [A-Za-z0-9._:-]",
			go->id_prefix, PAYQ_GEN_PREFIX_MAX);
	go->manifest_path = v[O_MANIFEST];
	return parse_rate("dup-rate", v[O_DUP], 0, 1, &go->dup_rate, errstr, errstr_size) ||
			       parse_rate("double-pay-rate", v[O_DOUBLE_PAY], 0, 1,
					  &go->double_pay_rate, errstr, errstr_size) ||
			       parse_rate("cancel-rate", v[O_CANCEL], 0, 1, &go->cancel_rate,
					  errstr, errstr_size) ||
			       parse_rate("key-reuse-rate", v[O_KEY_REUSE], 0, 1,
					  &go->key_reuse_rate, errstr, errstr_size) ||
			       parse_rate("malformed-rate", v[O_MALFORMED], 0, 1,
					  &go->malformed_rate, errstr, errstr_size)
		       ? -1
		       : 0;
}

/* Fills v[] from argv[2..] for command bit cmd; positional arguments go to pos[]. */
static int parse_options(unsigned cmd, int argc, char **argv, const char **v, const char **pos,
			 int *pos_cnt, char *errstr, size_t errstr_size)
{
	static const char on[] = "1";

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *eq;
		size_t len;
		int id;

		if (strncmp(a, "--", 2) || !a[2]) {
			if (*pos_cnt >= 1)
				return payq_err(errstr, errstr_size, "unexpected argument \"%s\"",
						a);
			pos[(*pos_cnt)++] = a;
			continue;
		}
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		for (id = 0; id < O__CNT; id++)
			if (strlen(opts_table[id].name) == len &&
			    !strncmp(a + 2, opts_table[id].name, len))
				break;
		if (id == O__CNT || !(opts_table[id].cmds & cmd))
			return payq_err(errstr, errstr_size, "unknown option \"%.*s\" (see --help)",
					(int)len + 2, a);
		if (!opts_table[id].has_arg) {
			if (eq)
				return payq_err(errstr, errstr_size, "--%s takes no value",
						opts_table[id].name);
			v[id] = on;
		} else if (eq) {
			v[id] = eq + 1;
		} else if (i + 1 < argc) {
			v[id] = argv[++i];
		} else {
			return payq_err(errstr, errstr_size, "--%s needs a value",
					opts_table[id].name);
		}
	}
	return 0;
}

/* The options every command shares: --dry-run, --print, --partitions and --rate. */
static int parse_sink_options(const char **v, payq_producer_opts_t *so, char *errstr,
			      size_t errstr_size)
{
	so->dry_run = v[O_DRY_RUN] != NULL;
	so->print = v[O_PRINT] != NULL;
	if (v[O_PARTITIONS]) {
		int64_t n;

		if (!so->dry_run)
			return payq_err(errstr, errstr_size,
					"--partitions works only with --dry-run");
		if (payq_parse_int64(v[O_PARTITIONS], 1, 100000, &n))
			return payq_err(errstr, errstr_size,
					"--partitions: \"%s\" is not an integer from 1 to 100000",
					v[O_PARTITIONS]);
		so->partitions = (int)n;
	}
	return parse_rate("rate", v[O_RATE], 0.001, 1e7, &so->rate, errstr, errstr_size);
}

/* Runs command c with its parsed options. Returns a PAYQ_PRODUCER_EXIT_* code; with
 * PAYQ_PRODUCER_EXIT_USAGE, errstr says why and nothing was sent. */
static int run_command(payq_config_t *cfg, const payq_producer_opts_t *so, size_t c, const char **v,
		       const char **pos, int pos_cnt, char *errstr, size_t errstr_size)
{
	payq_producer_gen_opts_t go;

	if (commands[c].bit == C_SEND) {
		if (!pos_cnt) {
			payq_err(errstr, errstr_size, "send needs a FILE, or - for stdin");
			return PAYQ_PRODUCER_EXIT_USAGE;
		}
		return payq_producer_command_send_file(cfg, so, pos[0], v[O_SKIP_INVALID] != NULL);
	}
	if (pos_cnt) {
		payq_err(errstr, errstr_size, "unexpected argument \"%s\"", pos[0]);
		return PAYQ_PRODUCER_EXIT_USAGE;
	}
	if (commands[c].bit & (C_PAY | C_CREATE | C_CANCEL)) {
		payq_producer_flags_t f = {
			.order = v[O_ORDER],
			.amount = v[O_AMOUNT],
			.currency = v[O_CURRENCY],
			.payer = v[O_PAYER],
			.customer = v[O_CUSTOMER],
			.reason = v[O_REASON],
			.command_id = v[O_COMMAND_ID],
		};
		return payq_producer_command_send(cfg, so, commands[c].type, &f);
	}
	if (parse_generate(v, &go, errstr, errstr_size))
		return PAYQ_PRODUCER_EXIT_USAGE;
	return payq_producer_generate(cfg, so, &go);
}

int main(int argc, char **argv)
{
	payq_config_t cfg;
	const char *v[O__CNT] = {0}, *pos[1] = {0};
	int pos_cnt = 0, rc = PAYQ_PRODUCER_EXIT_USAGE;
	char errstr[512];
	payq_producer_opts_t so = {0};
	size_t c = PAYQ_ARRAY_SIZE(commands);

	payq_config_init(&cfg);
	if (payq_config_load_env(&cfg, PAYQ_PROG_PRODUCER, errstr, sizeof(errstr)))
		goto usage_error;
	switch (payq_config_parse_args(&cfg, PAYQ_PROG_PRODUCER, "payq-producer", usage, &argc,
				       argv, errstr, sizeof(errstr))) {
	case PAYQ_ARGS_EXIT: rc = PAYQ_PRODUCER_EXIT_OK; goto out;
	case PAYQ_ARGS_ERROR: goto usage_error;
	case PAYQ_ARGS_OK: break;
	}
	if (argc < 2) {
		usage(stderr);
		goto out;
	}
	for (c = 0; c < PAYQ_ARRAY_SIZE(commands); c++)
		if (!strcmp(argv[1], commands[c].name))
			break;
	if (c == PAYQ_ARRAY_SIZE(commands)) {
		payq_err(errstr, sizeof(errstr), "unknown command \"%s\" (see --help)", argv[1]);
		goto usage_error;
	}
	if (parse_options(commands[c].bit, argc, argv, v, pos, &pos_cnt, errstr, sizeof(errstr)) ||
	    parse_sink_options(v, &so, errstr, sizeof(errstr)))
		goto usage_error;
	payq_signals_install(NULL);
	errstr[0] = '\0';
	rc = run_command(&cfg, &so, c, v, pos, pos_cnt, errstr, sizeof(errstr));
	if (rc == PAYQ_PRODUCER_EXIT_USAGE && errstr[0])
		goto usage_error;
	goto out;

usage_error:
	fprintf(stderr, "payq-producer%s%s: %s\n",
		argc >= 2 && c < PAYQ_ARRAY_SIZE(commands) ? " " : "",
		argc >= 2 && c < PAYQ_ARRAY_SIZE(commands) ? commands[c].name : "", errstr);
	rc = PAYQ_PRODUCER_EXIT_USAGE;
out:
	fflush(stdout);
	payq_config_destroy(&cfg);
	return rc;
}
