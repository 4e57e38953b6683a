/* republish.h - payq-replay republish: copies a range of a topic back onto a topic. */
#pragma once

#include <stdio.h>

#include "config.h"

/* Prints republish's part of --help. */
void replay_republish_usage(FILE *fp);

/* Runs `republish` with its own options in argv (argv[0] is "republish"). Returns a
 * REPLAY_EXIT_* code. */
int replay_republish_main(const payq_config_t *cfg, int argc, char **argv);
