"""The measurement of bench/peers.sh: launch time of `true` under each sandbox, interleaved, then
peak memory per launch (a fresh memory cgroup each, and GNU time's %M); prints the table of
BENCHMARKS.md ("Against the alternatives") and writes the raw samples.

Arguments: RUNS WARMUP MEM_RUNS AGENTBOX BWRAP FIREJAIL SRT SRT_NODE SRT_OLD_NODE WORK DATA_FDS
OUT AS_USER [NAME=VALUE...]: an empty FIREJAIL, SRT or SRT_OLD_NODE leaves that row out;
AS_USER is the setpriv prefix (one word, split on spaces) or empty; NAME=VALUE the environment.
WORK holds bench_record's "run" recording and skipped.tsv (the peers the checks left out).
"""
import json, os, select, signal, subprocess, sys, time
from benchlib import preload, q

runs, warmup, mem_runs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
agentbox, bwrap, firejail, srt, srt_node, srt_old_node, work, data_fds, out = sys.argv[4:13]
as_user = sys.argv[13].split()  # setpriv ... (PEERS_USER), or nothing
env = dict(kv.split("=", 1) for kv in sys.argv[14:])


def node_env(node):
    """srt's environment: its node first on PATH (srt is `#!/usr/bin/env node`), and TMPDIR."""
    return dict(env, PATH=os.path.dirname(node) + ":" + env["PATH"], TMPDIR=f"{work}/srt-tmp")


def node_version(node):
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


data_fds = [int(fd) for fd in data_fds.split()]
argv = open(f"{work}/rec/run.argv", "rb").read().split(b"\0")[:-1]
assert argv[-2:] == [b"--", b"true"], argv[-2:]
data = {fd: open(f"{work}/rec/run.fd{fd}", "rb").read() for fd in data_fds}
TIMEOUT = 60  # seconds for one launch of `true`; far above any tool's time here
skipped = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{work}/skipped.tsv") if l.strip())


def data_fds_like_agentbox():
    preload(data)


# name -> (argv, env, fds the child keeps, set-up before the clock starts)
BARE = "bare bwrap, agentbox's argv"
AB = "agentbox run"
cmds = {
    BARE: ([bwrap, *argv], {}, data_fds, data_fds_like_agentbox),
    AB: ([agentbox, "run", "--", "true"], env, (), None),
    "agentbox run --net filtered": ([agentbox, "run", "--net", "filtered", "--", "true"], env, (), None),
}
if firejail:
    for variant in (["--noprofile"], ["--profile=default"], ["--profile=default", "--net=none"]):
        name = "firejail " + " ".join(variant)
        if name not in skipped:
            cmds[name] = ([firejail, "--quiet", *variant, "true"], env, (), None)
srt_cmd = [srt, "--settings", f"{work}/srt-settings.json", "true"]
if srt:
    cmds[f"srt (node {node_version(srt_node)})"] = (srt_cmd, node_env(srt_node), (), None)
if srt and srt_old_node:
    cmds[f"srt (system node {node_version(srt_old_node)}, below its engines)"] = (
        srt_cmd, node_env(srt_old_node), (), None)
# References, not sandboxes: the floor of any launcher, and of any node CLI.
cmds["(no sandbox) /usr/bin/true"] = (["/usr/bin/true"], env, (), None)
for node in filter(None, [srt and srt_node, srt and srt_old_node]):
    cmds[f"(no sandbox) node {node_version(node)} -e 0"] = ([node, "-e", "0"], env, (), None)

cmds = {n: (as_user + args, *rest) for n, (args, *rest) in cmds.items()}
failed = {}  # name -> why it stopped running


def launch(args, cenv, fds, preexec=None, stderr=subprocess.DEVNULL):
    """Starts args and waits for its exit, bounded by TIMEOUT: the exit status, or a string.
    The wait sleeps on a pidfd, which wakes at the exit itself. (Popen.wait(timeout=...) polls
    with a doubling sleep from 0.5 ms, which rounds every launch up to the next 0.5*(2^k-1) ms:
    15.5, 31.5, 63.5 ms...)"""
    p = subprocess.Popen(args, env=cenv, pass_fds=fds, preexec_fn=preexec,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    pidfd = os.pidfd_open(p.pid)
    try:
        if not select.select([pidfd], [], [], TIMEOUT)[0]:
            p.kill()
            p.wait()
            return f"no exit within {TIMEOUT} s"
    finally:
        os.close(pidfd)
    return p.wait()


def why(name):
    """Runs a failed command once more to say why (stderr, exit status)."""
    args, cenv, fds, setup = cmds[name]
    if setup:
        setup()
    with open(f"{work}/why.err", "w+b") as err:
        rc = launch(args, cenv, fds, stderr=err)
        err.seek(0)
        return f"exit {rc}: " + err.read().decode(errors="replace").strip()[:300]


# ---- launch time -------------------------------------------------------------------------------
names = list(cmds)
samples = {n: [] for n in names}
for rnd in range(warmup + runs):
    live = [n for n in names if n not in failed]
    order = live[rnd % len(live):] + live[:rnd % len(live)]
    for name in order:
        args, cenv, fds, setup = cmds[name]
        if setup:
            setup()
        t0 = time.perf_counter_ns()
        rc = launch(args, cenv, fds)
        dt = time.perf_counter_ns() - t0
        if rc != 0:
            if name in (BARE, AB, "agentbox run --net filtered"):
                sys.exit(f"bench: {name!r} failed ({rc}): the measurement is broken")
            failed[name] = f"round {rnd}: " + why(name)
            print(f"   NOT RUN further: {name}: {failed[name]}", flush=True)
            continue
        if rnd >= warmup:
            samples[name].append(dt / 1e6)

# ---- peak memory: a fresh cgroup per launch ------------------------------------------------------


def memory_cgroup():
    """Where per-launch memory cgroups can be made: (dir, peak file, None) or (None, None, why).
    v1: children of this process's memory cgroup. v2: siblings of this process's cgroup (v2
    forbids children of a cgroup that holds processes), where its parent hands out memory."""
    try:
        cgroups = open("/proc/self/cgroup").read().splitlines()
        mountinfo = open("/proc/self/mountinfo").read().splitlines()
    except OSError as e:
        return None, None, str(e)
    for line in mountinfo:
        left, right = line.split(" - ", 1)
        f, r = left.split(" "), right.split(" ")
        root, mount, fstype, opts = f[3], f[4], r[0], (r[2] if len(r) > 2 else "")
        v2 = fstype == "cgroup2"
        if not v2 and not (fstype == "cgroup" and "memory" in opts.split(",")):
            continue
        for l in cgroups:
            hid, ctrls, path = l.split(":", 2)
            if (v2 and hid == "0" and ctrls == "") or (not v2 and "memory" in ctrls.split(",")):
                break
        else:
            continue
        rel = os.path.relpath(path, root)
        own = os.path.normpath(os.path.join(mount, rel))
        if not v2:
            return own, "memory.max_usage_in_bytes", None
        try:
            if "memory" not in open(f"{own}/cgroup.controllers").read().split():
                continue
        except OSError:
            continue
        base = own if own == mount else os.path.dirname(own)
        if not os.path.exists(f"{own}/memory.peak"):
            return None, None, "cgroup v2 without memory.peak (kernel older than 5.19)"
        return base, "memory.peak", None
    return None, None, "no cgroup hierarchy with the memory controller"


cg_base, peak_file, cg_why = memory_cgroup()
cg_seq = 0


def reap_cgroup(d):
    """Removes a per-launch cgroup; the kernel may take a moment to see it empty."""
    deadline = time.monotonic() + 5
    while True:
        try:
            os.rmdir(d)
            return
        except OSError:
            if time.monotonic() > deadline:
                print(f"   warning: could not remove {d}", file=sys.stderr)
                return
            time.sleep(0.01)


def cg_peak_run(name):
    global cg_seq
    cg_seq += 1
    d = f"{cg_base}/peers-bench-{os.getpid()}-{cg_seq}"
    os.mkdir(d)
    with open(f"{work}/cgroups", "a") as f:
        f.write(d + "\n")
    args, cenv, fds, setup = cmds[name]
    if setup:
        setup()

    def join():  # in the child, before exec: it and all it starts are charged to d from here on
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write("0")

    rc = launch(args, cenv, fds, preexec=join)
    # The launcher has exited; what it started may take a moment to go (or stay: then killed).
    deadline = time.monotonic() + 5
    while open(f"{d}/cgroup.procs").read().strip() and time.monotonic() < deadline:
        time.sleep(0.01)
    left = open(f"{d}/cgroup.procs").read().split()
    peak = int(open(f"{d}/{peak_file}").read())
    for pid in left:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    reap_cgroup(d)
    return rc, peak, len(left)


time_bin = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def max_rss(name):
    """GNU time's %M: the largest resident set of one process of the tree, in KiB."""
    args, cenv, fds, setup = cmds[name]
    if setup:
        setup()
    rss = f"{work}/rss"
    rc = launch([time_bin, "-f", "%M", "-o", rss, *args], cenv, fds)
    if rc != 0:
        return rc, 0
    return rc, int(open(rss).read().strip().splitlines()[-1])


peaks = {n: [] for n in names}
rsses = {n: [] for n in names}
leftovers = {n: 0 for n in names}
mem_why = {}
if cg_base is None:
    mem_why["cgroup"] = cg_why
if time_bin is None:
    mem_why["time"] = "GNU time (/usr/bin/time) is not installed"
if cg_base is not None:
    try:
        cg_peak_run("(no sandbox) /usr/bin/true")
    except OSError as e:
        mem_why["cgroup"] = f"cannot use {cg_base}: {e}"
        cg_base = None
for rnd in range(mem_runs + 1):  # round 0 is a warm-up
    live = [n for n in names if n not in failed]
    order = live[rnd % len(live):] + live[:rnd % len(live)]
    for name in order:
        if cg_base is not None:
            rc, peak, left = cg_peak_run(name)
            if rc == 0 and rnd:
                peaks[name].append(peak / 2**20)
                leftovers[name] += left
        if time_bin:
            rc, kib = max_rss(name)
            if rc == 0 and rnd:
                rsses[name].append(kib / 1024)

# ---- report --------------------------------------------------------------------------------------



ran = [n for n in names if samples[n] and n not in failed]
med = {n: q(samples[n], .5) for n in ran}
print(f"   load average after: {open('/proc/loadavg').read().split()[:3]}")
print()
print("| sandbox running `true` | launch median (ms) | p10 | p90 | x bare bwrap | x agentbox run "
      "| peak memory, whole tree, cgroup (MiB) | largest process max RSS (MiB) |")
print("|---|---|---|---|---|---|---|---|")
for n in ran:
    xs = samples[n]
    pk = f"{q(peaks[n], .5):.2f} (max {max(peaks[n]):.2f})" if peaks[n] else "n/a"
    rs = f"{q(rsses[n], .5):.1f}" if rsses[n] else "n/a"
    print(f"| {n} | **{med[n]:.2f}** | {q(xs, .1):.2f} | {q(xs, .9):.2f} | "
          f"**{med[n] / med[BARE]:.2f}x** | {med[n] / med[AB]:.2f}x | {pk} | {rs} |")
for n, reason in {**skipped, **failed}.items():
    print(f"| {n} | not run here: {reason} | | | | | | |")
print()
if as_user:
    print(f"every row started as `{' '.join(as_user)} COMMAND`")
print(f"({runs} timed rounds after {warmup} warm-up rounds; memory: {mem_runs} rounds after one "
      f"warm-up, medians; wall time from spawn to exit)")
for k, v in mem_why.items():
    print(f"memory ({k}) not measured: {v}")
if cg_base is not None:
    print(f"cgroup: per-launch {peak_file} under {cg_base}")
for n, c in leftovers.items():
    if c:
        print(f"note: {n} left {c} process(es) in its cgroup after its launcher exited "
              f"(killed after 5 s)")
paired = {n: q([a / b for a, b in zip(samples[n], samples[BARE])], .5) for n in ran}
print("median of per-round ratios to bare bwrap (a cross-check of the ratio of medians): " +
      ", ".join(f"{n}: {paired[n]:.2f}x" for n in ran if n != BARE))
json.dump({"runs": runs, "warmup": warmup, "mem_runs": mem_runs, "unit": "ms, MiB",
           "launch_ms": samples, "cgroup_peak_mib": peaks, "max_rss_mib": rsses,
           "not_run": {**skipped, **failed}, "cgroup": [cg_base, peak_file]},
          open(out, "w"), indent=1)
