/*
 * sysinfo.h - what the benchmarks and `--json` reports measure about the process:
 * monotonic wall time, process CPU time, peak resident memory. The three calls are public
 * (evlm_time_ms, evlm_cpu_time_ms, evlm_peak_rss_mb in evlm.h: applications report with the
 * clocks evlm_gen_result uses); this header only names their home, core/sysinfo.c.
 */
#ifndef EVLM_CORE_SYSINFO_H
#define EVLM_CORE_SYSINFO_H

#include "evlm.h"

#endif
