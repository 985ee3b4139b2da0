#!/usr/bin/env python3
"""Interleaved A/B timing: bench/ab.py N [--gap S] [--block K] 'cmd1' 'cmd2' ...

Runs the commands in turn, N timed runs each after two warm-up rounds, and prints each one's
median, 25th and 75th percentile in ms, in the order given. Taking turns keeps a noisy
machine's drift out of the comparison: every command sees the same stretch of time.

--gap S    sleep S seconds before each run (runs "isolated" from the one before).
--block K  each turn is K runs of one command back to back, of which the first is not timed
           (it follows another command's run): back-to-back timing, with the drift still
           shared. N is rounded up to a whole number of blocks.

Used for old/new binary comparisons on two daemons, e.g.
  bench/ab.py 60 'env DOCKER_HOST=unix:///tmp/a.sock ./old run --rm busybox true' \
                 'env DOCKER_HOST=unix:///tmp/b.sock ./new run --rm busybox true'
"""
import subprocess, sys, time, statistics, shlex

args = sys.argv[1:]
n = int(args.pop(0))
gap = 0.0
block = 1
while args and args[0] in ('--gap', '--block'):
    opt = args.pop(0)
    if opt == '--gap':
        gap = float(args.pop(0))
    else:
        block = int(args.pop(0))
cmds = args
if not cmds or block < 1:
    sys.exit(__doc__)
timed_per_turn = block - 1 if block > 1 else 1
turns = -(-n // timed_per_turn)


def once(c):
    if gap:
        time.sleep(gap)
    s = time.perf_counter()
    r = subprocess.run(shlex.split(c), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    e = time.perf_counter()
    if r.returncode != 0:
        print("FAIL", c, file=sys.stderr)
    return (e - s) * 1000


t = {c: [] for c in cmds}
for i in range(turns + 2):
    for c in cmds:
        runs = [once(c) for _ in range(block)]
        if i >= 2:
            t[c].extend(runs[1:] if block > 1 else runs)
for c in cmds:
    v = sorted(t[c])
    print(f"{statistics.median(v):7.2f} ms  (p25 {v[len(v)//4]:.2f}, p75 {v[3*len(v)//4]:.2f})  {c}")
