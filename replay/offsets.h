/* offsets.h - payq-replay reset-offsets: moves a stopped group's offsets, and its progress. */
#pragma once

#include <stdio.h>

#include "config.h"

/* Prints reset-offsets' part of --help. */
void replay_offsets_usage(FILE *fp);

/* Runs `reset-offsets` with its own options in argv (argv[0] is "reset-offsets"). The
 * group is cfg->group, which is NULL when neither --group nor PAYQ_GROUP named one: the
 * default group is never reset implicitly. Returns a replay_exit_t. */
int replay_offsets_main(const payq_config_t *cfg, int argc, char **argv);
