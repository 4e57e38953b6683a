/* signals.h - the SIGINT and SIGTERM handlers every payq program installs. */
#pragma once

#include <signal.h>
#include <stdbool.h>

/* Installs handlers for SIGINT and SIGTERM that record the signal and, when flag is not
 * NULL, set *flag to 0 (the program's own run flag, read by its loops). Call once, at
 * startup. */
void payq_signals_install(volatile sig_atomic_t *flag);

/* True once SIGINT or SIGTERM has arrived since payq_signals_install(). */
bool payq_signals_stopped(void);
