/* offsets.h - payq-replay reset-offsets: moves a stopped group's offsets, and its progress. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

/* Prints reset-offsets' part of --help. */
void replay_offsets_usage(FILE *fp);

/* Runs `reset-offsets` with its own options in argv (argv[0] is "reset-offsets"). The
 * group is cfg->group; group_given says whether --group or PAYQ_GROUP named it, since
 * the default group is never reset implicitly. Returns a REPLAY_EXIT_* code. */
int replay_offsets_main(const payq_config_t *cfg, bool group_given, int argc, char **argv);
