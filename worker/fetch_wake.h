/* fetch_wake.h - keeps librdkafka fetching while the worker drains its queue. */
#pragma once

#include <librdkafka/rdkafka.h>
#include <stddef.h>

typedef struct payq_fetch_wake payq_fetch_wake_t;

/* Starts the helper thread for consumer rk, whose queue is cq. NULL when the thread cannot
 * start (logged): the worker then runs as before, fetching after librdkafka's own wakeup. */
payq_fetch_wake_t *payq_fetch_wake_start(rd_kafka_t *rk, rd_kafka_queue_t *cq);

/* Notes a message of len bytes taken from the queue (the running average of the sizes). */
void payq_fetch_wake_taken(payq_fetch_wake_t *fw, size_t len);

/* Called after draining the queue: wakes the broker threads once the queue holds less
 * than half of queued.max.messages.kbytes (bytes estimated from the average taken) and
 * of queued.min.messages, at most every 100 ms. Never blocks. NULL-safe. */
void payq_fetch_wake_check(payq_fetch_wake_t *fw);

/* Stops and joins the thread. NULL-safe. */
void payq_fetch_wake_stop(payq_fetch_wake_t *fw);
