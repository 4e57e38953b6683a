/* commands.h - payq-producer's pay, create-order, cancel and send subcommands. */
#pragma once

#include <stdbool.h>

#include "codec.h"
#include "config.h"
#include "sink.h"

/* Flag values of a single command, as given; NULL where a flag is absent. */
typedef struct payq_producer_flags {
	const char *order;
	const char *amount;
	const char *currency;
	const char *payer;
	const char *customer;
	const char *reason;
	const char *command_id;
} payq_producer_flags_t;

/* Builds a command of type t from flags, checking each flag (the error names it) and then
 * the whole command with the codec. Without --command-id a random 128-bit ID (32 hex
 * characters) is made and *generated is set. Returns 0, or -1 with errstr. */
int payq_producer_command_from_flags(payq_cmd_type_t t, const payq_producer_flags_t *f,
				     payq_command_t *cmd, bool *generated, char *errstr,
				     size_t errstr_size);

/* Sends one command built by payq_producer_command_from_flags(). A generated command ID is printed
 * on stdout. Returns a PAYQ_PRODUCER_EXIT_* code. */
int payq_producer_command_send(const payq_config_t *cfg, const payq_producer_opts_t *opts,
			       payq_cmd_type_t t, const payq_producer_flags_t *f);

/* Reads JSONL from path ("-" is stdin) and validates every non-blank line with the codec
 * before anything is sent. Bad lines are reported on stderr as
 * "line N: <reason_code>: <message>". With any bad line nothing is sent and the result is
 * PAYQ_PRODUCER_EXIT_USAGE, unless skip_invalid, which sends the valid lines as given. Keys are
 * the lines' order_id. Returns a PAYQ_PRODUCER_EXIT_* code. */
int payq_producer_command_send_file(const payq_config_t *cfg, const payq_producer_opts_t *opts,
				    const char *path, bool skip_invalid);
