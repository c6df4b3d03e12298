"""The timing loop of bench/git_repos.sh: `agentbox run -- /usr/bin/true` with git found and with
git not found, interleaved round by round after 10 warm-up rounds; prints the two medians (ms).

Arguments: RUNS WITH_GIT_ENV NO_GIT_ENV AGENTBOX BWRAP: each *_ENV is an `env -i ...` prefix
as one word, split on spaces.
"""
import subprocess, sys
import time
runs, with_git, no_git, agentbox, bwrap = int(sys.argv[1]), *sys.argv[2:]
tail = [agentbox, "run", "--bwrap", bwrap, "--", "/usr/bin/true"]
cmds = [with_git.split() + tail, no_git.split() + tail]
for _ in range(10):
    for c in cmds:
        subprocess.run(c, check=True, stderr=subprocess.DEVNULL)
ts = [[], []]
for _ in range(runs):
    for i, c in enumerate(cmds):
        t = time.perf_counter()
        subprocess.run(c, check=True, stderr=subprocess.DEVNULL)
        ts[i].append(time.perf_counter() - t)
for t in ts:
    t.sort()
print(" ".join(f"{t[len(t) // 2] * 1000:.2f}" for t in ts))
