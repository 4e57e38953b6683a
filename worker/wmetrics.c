/* wmetrics.c - declares the worker's metric families. */
#include "wmetrics.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>

#include "metrics.h"
#include "util.h"

static const double batch_size_buckets[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
static const double seconds_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					 0.25,	0.5,	1,     2.5,  5,	    10};
static const double latency_buckets[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1,
					 0.15,	0.2,   0.3,   0.5,  1,	  2,	5,    10,    30};

void payq_worker_metrics_init(void)
{
	char labels[128];

	payq_metrics_declare("payq_commands_total", PAYQ_METRIC_COUNTER,
			     "Commands recorded in processed_commands, by type and outcome.", NULL,
			     0);
	payq_metrics_declare("payq_duplicates_total", PAYQ_METRIC_COUNTER,
			     "Redeliveries of an already recorded command (same payload).", NULL,
			     0);
	payq_metrics_declare("payq_double_payment_attempts_total", PAYQ_METRIC_COUNTER,
			     "pay commands rejected because the order was already paid.", NULL, 0);
	payq_metrics_declare("payq_anomalies_total", PAYQ_METRIC_COUNTER,
			     "Anomalies recorded, by kind (key_reuse, offset_gap, progress_rewind, "
			     "no_progress, unresolved_payment, charge_mismatch, settle_refused).",
			     NULL, 0);
	payq_metrics_declare("payq_dlq_total", PAYQ_METRIC_COUNTER,
			     "Messages dead-lettered, by reason code.", NULL, 0);
	payq_metrics_declare("payq_batch_size", PAYQ_METRIC_HISTOGRAM,
			     "Messages per applied batch.", batch_size_buckets,
			     PAYQ_ARRAY_SIZE(batch_size_buckets));
	payq_metrics_declare("payq_batch_duration_seconds", PAYQ_METRIC_HISTOGRAM,
			     "Time to apply one batch, database retries included.", seconds_buckets,
			     PAYQ_ARRAY_SIZE(seconds_buckets));
	payq_metrics_declare("payq_commit_latency_seconds", PAYQ_METRIC_HISTOGRAM,
			     "From the Kafka message timestamp to the database commit.",
			     latency_buckets, PAYQ_ARRAY_SIZE(latency_buckets));
	payq_metrics_declare("payq_poll_latency_seconds", PAYQ_METRIC_HISTOGRAM,
			     "From the Kafka message timestamp to the worker taking the message "
			     "from librdkafka's queue (the part of payq_commit_latency_seconds "
			     "before the worker holds it).",
			     latency_buckets, PAYQ_ARRAY_SIZE(latency_buckets));
	payq_metrics_declare("payq_db_retries_total", PAYQ_METRIC_COUNTER,
			     "Batches retried after a transient database error, by SQLSTATE.", NULL,
			     0);
	payq_metrics_declare("payq_consumer_lag", PAYQ_METRIC_GAUGE,
			     "Consumer lag in messages per assigned partition, from librdkafka "
			     "statistics; removed when the partition is revoked.",
			     NULL, 0);
	payq_metrics_declare("payq_rebalances_total", PAYQ_METRIC_COUNTER,
			     "Partition assignments and revocations seen.", NULL, 0);
	payq_metrics_declare(
		"payq_offset_rewinds_total", PAYQ_METRIC_COUNTER,
		"Partitions whose Kafka offset differed from consumer_progress (on assign, "
		"or after a new database session), by direction: forward (Kafka "
		"behind) or back (the database lost commits; re-applied).",
		NULL, 0);
	payq_metrics_declare("payq_fetch_wakes_total", PAYQ_METRIC_COUNTER,
			     "Times the worker woke librdkafka's fetch as its queue drained "
			     "(worker/fetch_wake.c).",
			     NULL, 0);
	payq_metrics_declare("payq_commit_errors_total", PAYQ_METRIC_COUNTER,
			     "Kafka offset commits that failed.", NULL, 0);
	payq_metrics_declare("payq_last_commit_timestamp_seconds", PAYQ_METRIC_GAUGE,
			     "Unix time of the last successful Kafka offset commit.", NULL, 0);
	payq_metrics_declare("payq_gateway_requests_total", PAYQ_METRIC_COUNTER,
			     "Gateway mode: requests to the payment channel, by operation (charge, "
			     "query) and result (succeeded, declined, unknown, not_found).",
			     NULL, 0);
	payq_metrics_declare("payq_gateway_request_seconds", PAYQ_METRIC_HISTOGRAM,
			     "Gateway mode: time for one request to the payment channel.",
			     seconds_buckets, PAYQ_ARRAY_SIZE(seconds_buckets));
	payq_metrics_declare("payq_reconciled_total", PAYQ_METRIC_COUNTER,
			     "Gateway mode: reconciler looks at pending or unknown payments, by "
			     "result (succeeded, declined, unresolved).",
			     NULL, 0);
	payq_metrics_declare("payq_payments_unresolved", PAYQ_METRIC_GAUGE,
			     "Gateway mode: payments still pending or unknown after "
			     "PAYQ_RECONCILE_MAX_ATTEMPTS looks (as last seen by the reconciler "
			     "that leads).",
			     NULL, 0);
	payq_metrics_declare("payq_build_info", PAYQ_METRIC_GAUGE,
			     "Build information; the value is always 1.", NULL, 0);
	snprintf(labels, sizeof(labels), "version=\"%s\",librdkafka=\"%s\"", PAYQ_VERSION,
		 rd_kafka_version_str());
	payq_metrics_set("payq_build_info", labels, 1);
	payq_metrics_add("payq_duplicates_total", NULL, 0);
	payq_metrics_add("payq_double_payment_attempts_total", NULL, 0);
	payq_metrics_add("payq_rebalances_total", NULL, 0);
	payq_metrics_add("payq_offset_rewinds_total", "direction=\"forward\"", 0);
	payq_metrics_add("payq_offset_rewinds_total", "direction=\"back\"", 0);
	payq_metrics_add("payq_commit_errors_total", NULL, 0);
	payq_metrics_set("payq_last_commit_timestamp_seconds", NULL, 0);
	payq_metrics_add("payq_anomalies_total", "kind=\"key_reuse\"", 0);
	payq_metrics_add("payq_anomalies_total", "kind=\"offset_gap\"", 0);
	payq_metrics_add("payq_anomalies_total", "kind=\"progress_rewind\"", 0);
	payq_metrics_add("payq_anomalies_total", "kind=\"no_progress\"", 0);
	payq_metrics_add("payq_anomalies_total", "kind=\"unresolved_payment\"", 0);
	payq_metrics_add("payq_anomalies_total", "kind=\"charge_mismatch\"", 0);
	payq_metrics_add("payq_anomalies_total", "kind=\"settle_refused\"", 0);
	payq_metrics_set("payq_payments_unresolved", NULL, 0);
}
