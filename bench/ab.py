#!/usr/bin/env python3
"""Interleaved A/B timing: bench/ab.py N [--gap S] 'cmd1' 'cmd2' ...

Runs the commands round robin, N times each after two warm-up rounds (S seconds apart if
--gap), and prints each one's median, 25th and 75th percentile in ms. Interleaving keeps a noisy
machine's drift out of the comparison: every command sees the same stretch of time. Used for
old/new binary comparisons on two daemons, e.g.
  bench/ab.py 60 'env DOCKER_HOST=unix:///tmp/a.sock ./old run --rm busybox true' \
                 'env DOCKER_HOST=unix:///tmp/b.sock ./new run --rm busybox true'
"""
import subprocess, sys, time, statistics, shlex
args = sys.argv[1:]
n = int(args.pop(0)); gap = 0.0
if args and args[0] == '--gap':
    args.pop(0); gap = float(args.pop(0))
cmds = args
t = {c: [] for c in cmds}
for i in range(n + 2):
    for c in cmds:
        if gap: time.sleep(gap)
        s = time.perf_counter()
        r = subprocess.run(shlex.split(c), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        e = time.perf_counter()
        if r.returncode != 0: print("FAIL", c, file=sys.stderr)
        if i >= 2: t[c].append((e - s) * 1000)
for c in cmds:
    v = sorted(t[c])
    print(f"{statistics.median(v):7.2f} ms  (p25 {v[len(v)//4]:.2f}, p75 {v[3*len(v)//4]:.2f})  {c}")
