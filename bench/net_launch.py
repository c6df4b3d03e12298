"""The launch part of bench/net.sh: `agentbox run --net filtered -- true` against bare bwrap given
what `agentbox run -- true` execs, and the parts of the filtered start, interleaved (method:
BENCHMARKS.md, "Network"). Checks the recordings against --dry-run first.

Arguments: RUNS WARMUP AGENTBOX BWRAP WORK OUT [NAME=VALUE...]: WORK/rec holds bench_record's
"plain" and "filtered" recordings (and their .fds), OUT is the JSON file for the samples.
"""
import json, os, select, subprocess, sys, time
from benchlib import preload, q, table

runs, warmup = int(sys.argv[1]), int(sys.argv[2])
agentbox, bwrap, work, out = sys.argv[3:7]
env = dict(kv.split("=", 1) for kv in sys.argv[7:])
rec = f"{work}/rec"

def fail(msg):
    sys.exit(f"bench: {msg}")

def load(name):
    fds = [int(fd) for fd in open(f"{rec}/{name.split('-')[0]}.fds").read().split()]
    argv = open(f"{rec}/{name}.argv", "rb").read().split(b"\0")[:-1]
    return argv, {fd: open(f"{rec}/{name}.fd{fd}", "rb").read() for fd in fds}

def after(argv, flag, dest):
    """Index of SRC in `flag SRC dest`."""
    for i in range(len(argv) - 2):
        if argv[i] == flag and argv[i + 2] == dest:
            return i + 1
    fail(f"no {flag.decode()} ... {dest.decode()} in the filtered argv")

plain, plain_fds = load("plain")
plain_dry, plain_dry_fds = load("plain-dry")
if (plain, plain_fds) != (plain_dry, plain_dry_fds):
    fail("agentbox run -- true execs a different argv or fd contents than --dry-run prints")
filt, filt_fds = load("filtered")
filt_dry, filt_dry_fds = load("filtered-dry")
# The proxy's socket (in a net-PID directory) and the token differ from run to run; the rest
# must not. The socket is gone once the recorded run ended: bare bwrap binds a stand-in.
SOCK = b"/run/agentbox/net/proxy.sock"
tok = int(filt[after(filt, b"--ro-bind-data", b"/run/agentbox/token")])
for argv in (filt, filt_dry):
    argv[after(argv, b"--ro-bind", SOCK)] = os.fsencode(f"{work}/netdir/proxy.sock")
filt_dry_fds[tok] = filt_fds[tok]
if (filt, filt_fds) != (filt_dry, filt_dry_fds):
    fail("agentbox run --net filtered execs a different argv than --dry-run prints")
assert plain[-2:] == [b"--", b"true"], plain[-2:]
relay = filt.index(b"__relay")
assert filt[relay - 2:relay] == [b"--", b"/run/agentbox/agentbox"] and filt[-2:] == [b"--", b"true"]
assert filt[relay + 2] == b"--", filt[relay:relay + 3]
# The filtered sandbox without its relay (`__relay CONFIG --`): bwrap's share of the filtered
# start. What the relay would start (the shim, then true) stays.
filt_norelay = filt[:relay - 1] + filt[relay + 3:]

def data_fds_like_agentbox(data):
    return lambda: preload(data)

cmds = {
    "agentbox run --net filtered -- true": ([agentbox, "run", "--net", "filtered", "--", "true"],
                                            env, (), None),
    "bare: bwrap ARGV -- true": ([bwrap, *plain], {}, list(plain_fds),
                                 data_fds_like_agentbox(plain_fds)),
    "context: agentbox run -- true": ([agentbox, "run", "--", "true"], env, (), None),
    "part: bwrap FILTERED-ARGV -- relay -- true": ([bwrap, *filt], {}, list(filt_fds),
                                                   data_fds_like_agentbox(filt_fds)),
    "part: bwrap FILTERED-ARGV -- true": ([bwrap, *filt_norelay], {}, list(filt_fds),
                                          data_fds_like_agentbox(filt_fds)),
    "part: agentbox run --net filtered --dry-run": (
        [agentbox, "run", "--net", "filtered", "--dry-run", "--", "true"], env, (), None),
    "floor: /usr/bin/true": (["/usr/bin/true"], env, (), None),
}
names = list(cmds)
samples = {n: [] for n in names}
for rnd in range(warmup + runs):
    for name in names[rnd % len(names):] + names[:rnd % len(names)]:
        args, cenv, fds, setup = cmds[name]
        if setup:
            setup()
        t0 = time.perf_counter_ns()
        # Wait on a pidfd, which wakes at the exit itself: Popen.wait(timeout=...) polls with a
        # doubling sleep from 0.5 ms and rounds every launch up (7.5, 15.5, 31.5 ms...).
        p = subprocess.Popen(args, env=cenv, pass_fds=fds, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pidfd = os.pidfd_open(p.pid)
        try:
            if not select.select([pidfd], [], [], 30)[0]:
                p.kill()
                p.wait()
                fail(f"{name!r} took over 30 s: the measurement is broken")
        finally:
            os.close(pidfd)
        rc = p.wait()
        dt = time.perf_counter_ns() - t0
        if rc != 0:
            fail(f"{name!r} exited with {rc}: the measurement is broken")
        if rnd >= warmup:
            samples[name].append(dt / 1e6)

table(samples, names, 46)
med = {n: q(samples[n], .5) for n in names}
full, bare = names[0], names[1]
plainrun, relayed, norelay = names[2], names[3], names[4]
paired = q([a / b for a, b in zip(samples[full], samples[bare])], .5)
print("  where the filtered start's time goes (differences of medians):")
print(f"    bwrap's extra options (uid 0, caps, binds)  {med[norelay] - med[bare]:+6.2f} ms")
print(f"    the relay inside (exec, bind, userns, seccomp) {med[relayed] - med[norelay]:+6.2f} ms")
print(f"    agentbox on the host (plan, proxy, spawn)   {med[full] - med[relayed]:+6.2f} ms")
print(f"  context: agentbox run -- true / bare bwrap = {med[plainrun] / med[bare]:.2f}x")
ratio = med[full] / med[bare]
print(f"RESULT launch --net filtered median {med[full]:.2f} ms vs bare bwrap {med[bare]:.2f} ms: "
      f"{ratio:.2f}x (per-round {paired:.2f}x, +{med[full] - med[bare]:.2f} ms); "
      f"target <= 1.60x: {'MET' if ratio <= 1.6 else 'MISSED'}")
json.dump({"runs": runs, "warmup": warmup, "unit": "ms", "samples": samples},
          open(out, "w"), indent=1)
