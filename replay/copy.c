/* copy.c - a run of copies, as republish and dlq make them. */
#include "copy.h"

#include <inttypes.h>
#include <stdio.h>

#include "log.h"

int replay_copy_start(replay_copy_t *c, const char *what, const payq_config_t *cfg, double rate,
		      bool dry_run, int64_t total, char *errstr, size_t errstr_size)
{
	c->what = what;
	c->total = total;
	replay_progress_init(&c->progress);
	if (dry_run)
		return 0;
	c->sink = payq_sink_new(cfg, rate, errstr, errstr_size);
	return c->sink ? 0 : -1;
}

int replay_copy_one(replay_copy_t *c, const char *topic, const rd_kafka_message_t *m,
		    const char *strip_prefix)
{
	char errstr[512];

	if (!payq_sink_copy(c->sink, topic, m, strip_prefix, errstr, sizeof(errstr)))
		return 0;
	if (replay_run)
		log_error("%s", errstr);
	return -1;
}

void replay_copy_progress(replay_copy_t *c, bool quiet_dry)
{
	payq_sink_stats_t st;

	if (!c->sink) {
		if (!quiet_dry)
			replay_progress(&c->progress, false, "%s: %" PRId64 "/%" PRId64 " read",
					c->what, c->read, c->total);
		return;
	}
	st = payq_sink_stats(c->sink);
	payq_sink_poll(c->sink);
	replay_progress(&c->progress, false,
			"%s: %" PRId64 "/%" PRId64 " read, %" PRId64 " sent, %" PRId64 " delivered",
			c->what, c->read, c->total, st.queued, st.delivered);
}

payq_range_read_t replay_copy_read(replay_copy_t *c, const replay_env_t *env,
				   const payq_range_t *range, payq_range_cb cb, void *opaque,
				   char *errstr, size_t errstr_size)
{
	payq_range_read_t rd = payq_range_read(env->rk, range, cb, opaque, errstr, errstr_size);

	if (c->sink)
		rd = payq_sink_finish_read(c->sink, env->cfg, rd, errstr, errstr_size);
	replay_progress_end(&c->progress);
	return rd;
}

void replay_copy_print_sent(const replay_copy_t *c)
{
	payq_sink_stats_t st = payq_sink_stats(c->sink);

	printf("%s: read=%" PRId64 " matched=%" PRId64 " sent=%" PRId64 " delivered=%" PRId64
	       " failed=%" PRId64,
	       c->what, c->read, c->matched, st.queued, st.delivered, st.queued - st.delivered);
}

void replay_copy_free(replay_copy_t *c)
{
	payq_sink_destroy(c->sink);
	c->sink = NULL;
}
