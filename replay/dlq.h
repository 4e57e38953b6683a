/* dlq.h - payq-replay dlq: re-drives dead letters to the topic they came from. */
#pragma once

#include <stdio.h>

#include "cli.h"
#include "config.h"

/* Prints dlq's part of --help. */
void replay_dlq_usage(FILE *fp);

/* `dlq`: exits with a replay_exit_t. */
extern const replay_steps_t replay_dlq_steps;

/* Runs `dlq` with its own options in argv (argv[0] is "dlq"), for payq-console, which runs
 * it in-process. Returns a replay_exit_t. */
int replay_dlq_main(const payq_config_t *cfg, int argc, char **argv);
