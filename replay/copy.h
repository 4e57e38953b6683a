/* copy.h - a run of copies, as republish and dlq make them: the sink (none for a dry run),
 * the progress line, the counts and the summary's common part. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "range.h"
#include "sink.h"

/* The shared options of a command that copies a range: republish and dlq. */
#define REPLAY_TAKES_COPY                                                                       \
	(REPLAY_TAKES_PARTITION | REPLAY_TAKES_FROM | REPLAY_TAKES_TO | REPLAY_TAKES_TO_TOPIC | \
	 REPLAY_TAKES_RATE | REPLAY_TAKES_DRY_RUN | REPLAY_TAKES_FORCE)

typedef struct replay_copy {
	const char *what;  /* the command: the progress line and the summary start with it */
	payq_sink_t *sink; /* NULL for a dry run */
	replay_progress_t progress;
	int64_t total, read, matched;
} replay_copy_t;

/* Starts a run over total messages: with a sink at rate (messages per second, 0: no limit)
 * unless dry_run. Returns 0, or -1 with errstr. */
int replay_copy_start(replay_copy_t *c, const char *what, const payq_config_t *cfg, double rate,
		      bool dry_run, int64_t total, char *errstr, size_t errstr_size);

/* Copies m to topic (payq_sink_copy()); logs why it could not, unless interrupted.
 * Returns 0, or -1 to stop the read. */
int replay_copy_one(replay_copy_t *c, const char *topic, const rd_kafka_message_t *m,
		    const char *strip_prefix);

/* Redraws the progress line: read, and with a sink, sent and delivered. quiet_dry: no line
 * at all for a dry run. */
void replay_copy_progress(replay_copy_t *c, bool quiet_dry);

/* Reads range through cb (which counts and copies), then waits for every delivery report
 * (payq_sink_finish_read()) and ends the progress line. */
payq_range_read_t replay_copy_read(replay_copy_t *c, const replay_env_t *env,
				   const payq_range_t *range, payq_range_cb cb, void *opaque,
				   char *errstr, size_t errstr_size);

/* Prints the summary's start for a run that sent: "WHAT: read=N matched=N sent=N
 * delivered=N failed=N", without the end of the line. */
void replay_copy_print_sent(const replay_copy_t *c);

/* Destroys the sink. */
void replay_copy_free(replay_copy_t *c);
