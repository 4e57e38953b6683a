/* metrics.h - a small Prometheus registry: counters, gauges and histograms with labels. */
#pragma once

#include <stddef.h>

typedef enum { PAYQ_METRIC_COUNTER, PAYQ_METRIC_GAUGE, PAYQ_METRIC_HISTOGRAM } payq_metric_type_t;

/* Declares a metric family before use. For histograms, buckets holds nbuckets finite
 * upper bounds in increasing order (+Inf is implicit). Declaring twice is harmless: the
 * first declaration stays. A counter or gauge with no series yet renders one unlabelled
 * 0 sample. Returns 0, or -1 when the registry is full or the name or buckets are invalid. */
int payq_metrics_declare(const char *name, payq_metric_type_t type, const char *help,
			 const double *buckets, size_t nbuckets);

/* Series are named by the family plus a label set in Prometheus syntax without braces,
 * for example "type=\"pay\",outcome=\"applied\"", or NULL for none. Label values must
 * already be escaped. All calls are thread-safe. Calls naming an undeclared family, or a
 * family of the wrong type, are ignored; add with v = 0 creates a series at 0. */
void payq_metrics_add(const char *name, const char *labels, double v);	   /* counter/gauge += v */
void payq_metrics_set(const char *name, const char *labels, double v);	   /* gauge = v */
void payq_metrics_observe(const char *name, const char *labels, double v); /* histogram */

/* Forgets one series of a family (any type), as if it had never been set; no-op if absent.
 * For series whose subject went away, such as a revoked partition's lag. */
void payq_metrics_remove(const char *name, const char *labels);

/* Writes value into buf escaped for a label value (backslash, double quote, newline), cut
 * to fit size with a NUL. Returns the length written. */
size_t payq_metrics_escape_label(char *buf, size_t size, const char *value);

/* Current value of a counter or gauge series, 0 if absent (for tests and summaries). */
double payq_metrics_get(const char *name, const char *labels);

/* Renders every family in the Prometheus text format (version 0.0.4), passing
 * `promtool check metrics`. Returns a malloc()ed string the caller frees. */
char *payq_metrics_render(void);

/* Forgets every series and family (tests). */
void payq_metrics_reset(void);
