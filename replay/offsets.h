/* offsets.h - payq-replay reset-offsets: moves a stopped group's offsets, and its progress. */
#pragma once

#include <stdio.h>

#include "cli.h"
#include "config.h"

/* Prints reset-offsets' part of --help. */
void replay_offsets_usage(FILE *fp);

/* `reset-offsets`: exits with a replay_exit_t. The group is cfg->group, which is NULL when
 * neither --group nor PAYQ_GROUP named one: the default group is never reset implicitly. */
extern const replay_steps_t replay_offsets_steps;
