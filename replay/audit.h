/* audit.h - payq-replay audit: checks the topic against the database and the DLQ. */
#pragma once

#include <stdio.h>

#include "cli.h"
#include "config.h"

/* Prints audit's part of --help. */
void replay_audit_usage(FILE *fp);

/* `audit`, for group cfg->group: exits REPLAY_EXIT_OK when there is no gap, REPLAY_EXIT_GAPS
 * when there is one, or with another replay_exit_t. */
extern const replay_steps_t replay_audit_steps;

/* Runs `audit` with its own options in argv (argv[0] is "audit"), for payq-console, which
 * runs it in-process. Returns a replay_exit_t. */
int replay_audit_main(const payq_config_t *cfg, int argc, char **argv);
