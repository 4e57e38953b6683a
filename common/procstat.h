/* procstat.h - the standard process_* metrics of Prometheus client libraries, read from /proc. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* One reading of this process. */
typedef struct payq_procstat {
	double cpu_seconds;  /* user + system CPU time */
	double start_time;   /* Unix time the process started */
	int64_t rss_bytes;   /* resident set size */
	int64_t vsize_bytes; /* virtual memory size */
	int64_t open_fds;    /* entries in /proc/self/fd */
	int64_t max_fds;     /* RLIMIT_NOFILE soft limit */
} payq_procstat_t;

/* Parses the text of /proc/PID/stat into ps (CPU, start, RSS, virtual size). clk_tck and
 * page_size convert ticks and pages; boot_time is btime from /proc/stat. The command name
 * may hold spaces and parentheses: the fields are read after its last ')'. Returns false if
 * the text is not a stat line. */
bool payq_procstat_parse_stat(const char *text, long clk_tck, long page_size, double boot_time,
			      payq_procstat_t *ps);

/* Reads this process from /proc. Returns false if /proc/self/stat cannot be read. */
bool payq_procstat_read(payq_procstat_t *ps);

/* Declares (once) and sets process_cpu_seconds_total, process_start_time_seconds,
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds and
 * process_max_fds from a fresh reading; keeps the last values if /proc cannot be read.
 * Called before each /metrics render. */
void payq_procstat_update_metrics(void);
