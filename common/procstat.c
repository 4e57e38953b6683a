/* procstat.c - the standard process_* metrics of Prometheus client libraries, read from /proc. */
#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics.h"

bool payq_procstat_parse_stat(const char *text, long clk_tck, long page_size, double boot_time,
			      payq_procstat_t *ps)
{
	const char *p = strrchr(text, ')');
	unsigned long long utime, stime, starttime, vsize;
	long long rss;

	if (!p || clk_tck <= 0 || page_size <= 0)
		return false;
	/* After "pid (comm)": state is field 3; utime 14, stime 15, starttime 22, vsize 23,
	 * rss 24 (proc(5)). */
	if (sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d"
		   " %*d %llu %llu %lld",
		   &utime, &stime, &starttime, &vsize, &rss) != 5)
		return false;
	ps->cpu_seconds = (double)(utime + stime) / (double)clk_tck;
	ps->start_time = boot_time + (double)starttime / (double)clk_tck;
	ps->vsize_bytes = (int64_t)vsize;
	ps->rss_bytes = (int64_t)rss * page_size;
	return true;
}

static double boot_time(void)
{
	FILE *f = fopen("/proc/stat", "r");
	char line[256];
	double bt = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lf", &bt) == 1)
			break;
	fclose(f);
	return bt;
}

static int64_t count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int64_t n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

bool payq_procstat_read(payq_procstat_t *ps)
{
	char text[1024];
	size_t n;
	struct rlimit rl;
	FILE *f = fopen("/proc/self/stat", "r");

	if (!f)
		return false;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	if (!payq_procstat_parse_stat(text, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE),
				      boot_time(), ps))
		return false;
	ps->open_fds = count_fds();
	ps->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
			      ? (int64_t)rl.rlim_cur
			      : -1;
	return true;
}

void payq_procstat_update_metrics(void)
{
	payq_procstat_t ps;

	payq_metrics_declare("process_cpu_seconds_total", PAYQ_METRIC_COUNTER,
			     "Total user and system CPU time spent in seconds.", NULL, 0);
	payq_metrics_declare("process_start_time_seconds", PAYQ_METRIC_GAUGE,
			     "Start time of the process since unix epoch in seconds.", NULL, 0);
	payq_metrics_declare("process_resident_memory_bytes", PAYQ_METRIC_GAUGE,
			     "Resident memory size in bytes.", NULL, 0);
	payq_metrics_declare("process_virtual_memory_bytes", PAYQ_METRIC_GAUGE,
			     "Virtual memory size in bytes.", NULL, 0);
	payq_metrics_declare("process_open_fds", PAYQ_METRIC_GAUGE,
			     "Number of open file descriptors.", NULL, 0);
	payq_metrics_declare("process_max_fds", PAYQ_METRIC_GAUGE,
			     "Maximum number of open file descriptors.", NULL, 0);
	if (!payq_procstat_read(&ps))
		return;
	/* A counter set from the kernel's own running total: it only grows. */
	payq_metrics_set("process_cpu_seconds_total", NULL, ps.cpu_seconds);
	payq_metrics_set("process_start_time_seconds", NULL, ps.start_time);
	payq_metrics_set("process_resident_memory_bytes", NULL, (double)ps.rss_bytes);
	payq_metrics_set("process_virtual_memory_bytes", NULL, (double)ps.vsize_bytes);
	if (ps.open_fds >= 0)
		payq_metrics_set("process_open_fds", NULL, (double)ps.open_fds);
	if (ps.max_fds >= 0)
		payq_metrics_set("process_max_fds", NULL, (double)ps.max_fds);
}
