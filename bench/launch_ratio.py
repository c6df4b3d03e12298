"""Launch of `agentbox run --net filtered -- true` against `agentbox run -- true`, for one or
more binaries, interleaved round by round (method: BENCHMARKS.md, "Network"). Each launch is
timed from spawn to agentbox's exit, which comes after it has reaped every process it started
(teardown included). An empty git project and an empty home, the environment cleared.

Arguments: ROUNDS BINARY... Prints the medians and the ratio per binary; fails on a launch
that does not succeed.
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

rounds, bins = int(sys.argv[1]), sys.argv[2:]
work = tempfile.mkdtemp(prefix="agentbox-launch-ratio.")
project, home = f"{work}/p", f"{work}/h"
os.makedirs(project)
os.makedirs(home)
subprocess.run(["git", "init", "-q", project], check=True)
env = {"HOME": home, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"}
MODES = {"plain": [], "filtered": ["--net", "filtered"]}


def launch(binary, mode):
    cmd = [binary, "run", *MODES[mode], "--", "true"]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=project, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)
    took = (time.perf_counter() - t) * 1000
    if r.returncode:
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr[:300]!r}")
    return took


ms = {(b, m): [] for b in bins for m in MODES}
for i in range(rounds + 3):  # 3 warm-up rounds
    for b in bins:
        for m in MODES:
            took = launch(b, m)
            if i >= 3:
                ms[(b, m)].append(took)
for b in bins:
    plain, filt = ms[(b, "plain")], ms[(b, "filtered")]
    per_round = statistics.median(f / p for f, p in zip(filt, plain))
    print(f"  {b}: plain {statistics.median(plain):.1f} ms, filtered "
          f"{statistics.median(filt):.1f} ms: {statistics.median(filt) / statistics.median(plain):.2f}x "
          f"(median of per-round ratios {per_round:.2f}x); target <= 1.25x")
shutil.rmtree(work, ignore_errors=True)
print(f"  load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
