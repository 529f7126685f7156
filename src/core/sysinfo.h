/*
 * sysinfo.h - what the benchmarks and `--json` reports measure about the process:
 * monotonic wall time, process CPU time, peak resident memory.
 */
#ifndef EVLM_CORE_SYSINFO_H
#define EVLM_CORE_SYSINFO_H

double evlm_time_ms(void);     /* CLOCK_MONOTONIC */
double evlm_cpu_time_ms(void); /* user + system time of the whole process */
double evlm_peak_rss_mb(void); /* high-water mark of resident memory */

#endif
