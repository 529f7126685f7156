"""Shared by the report scripts (perf_report.py, npu_report.py): logging to stderr, running a
command (its output captured; a failure ends the report with the command's stderr), the JSON
object a command prints as its last line, and the CPU's name."""
import json, platform, subprocess, sys

log = lambda *a: print(*a, file=sys.stderr, flush=True)


def run(args, check=True):
    log("$ " + " ".join(args))
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(args), r.stderr[-2000:]))
    return r


def last_json(out):
    return json.loads(out.strip().splitlines()[-1])


def cpu_name():
    try:
        cpu = open("/proc/cpuinfo").read()
        return next(l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"
