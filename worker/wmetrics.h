/* wmetrics.h - the worker's metric families (DESIGN.md, Metrics and health). */
#pragma once

/* Declares every family, so each shows on /metrics from the start. */
void payq_worker_metrics_init(void);
