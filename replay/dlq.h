/* dlq.h - payq-replay dlq: re-drives dead letters to the topic they came from. */
#pragma once

#include <stdio.h>

#include "config.h"

/* Prints dlq's part of --help. */
void replay_dlq_usage(FILE *fp);

/* Runs `dlq` with its own options in argv (argv[0] is "dlq"). Returns a REPLAY_EXIT_*
 * code. */
int replay_dlq_main(const payq_config_t *cfg, int argc, char **argv);
