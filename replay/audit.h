/* audit.h - payq-replay audit: checks the topic against the database and the DLQ. */
#pragma once

#include <stdio.h>

#include "config.h"

/* Prints audit's part of --help. */
void replay_audit_usage(FILE *fp);

/* Runs `audit` with its own options in argv (argv[0] is "audit") for group cfg->group.
 * Returns REPLAY_EXIT_OK when there is no gap, REPLAY_EXIT_GAPS when there is one, or
 * another REPLAY_EXIT_* code. */
int replay_audit_main(const payq_config_t *cfg, int argc, char **argv);
