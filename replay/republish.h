/* republish.h - payq-replay republish: copies a range of a topic back onto a topic. */
#pragma once

#include <stdio.h>

#include "cli.h"
#include "config.h"

/* Prints republish's part of --help. */
void replay_republish_usage(FILE *fp);

/* `republish`: exits with a replay_exit_t. */
extern const replay_steps_t replay_republish_steps;
