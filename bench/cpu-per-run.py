#!/usr/bin/env python3
"""CPU time a command costs the whole machine per run, its background work included.

    bench/cpu-per-run.py RUNS COMMAND...

Reads the busy time of all CPUs (/proc/stat, idle and iowait excluded) before RUNS runs of
COMMAND and one second after the last, so that work a run leaves behind (a daemon's background
removal, the kernel's namespace teardown) is counted. Other load on the machine counts too:
run it on a quiet one. Example:
    bench/cpu-per-run.py 60 crun run -b BUNDLE x
    bench/cpu-per-run.py 60 berth run --rm busybox true
"""
import os
import subprocess
import sys
import time


def busy_ticks():
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    runs, cmd = int(sys.argv[1]), sys.argv[2:]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    for _ in range(3):
        subprocess.run(cmd, **quiet)
    time.sleep(0.5)
    before, start = busy_ticks(), time.perf_counter()
    for _ in range(runs):
        subprocess.run(cmd, **quiet)
    wall = time.perf_counter() - start
    time.sleep(1.0)
    cpu = (busy_ticks() - before) / os.sysconf("SC_CLK_TCK")
    print(f"{cpu / runs * 1000:.1f} CPU-ms per run, {wall / runs * 1000:.1f} ms wall per run: {' '.join(cmd)}")


if __name__ == "__main__":
    main()
