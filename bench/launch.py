"""The launch benchmark's timing loop, run by bench/launch.sh (method: BENCHMARKS.md, "Launch").

Times `agentbox run -- true` against bare bwrap given the argv and data fds bench_record
recorded, and the reference rows, interleaved round by round; prints the table and the RESULT
line, writes the raw samples.

Arguments: RUNS WARMUP AGENTBOX BWRAP WORK DATA_FDS OUT [NAME=VALUE...]: DATA_FDS is one
space-separated word, OUT the JSON file for the samples, NAME=VALUE the environment of every
timed agentbox command. AGENTBOX_BASE in the environment: another build whose `run -- true`
and `run --dry-run` are timed in the same rounds (an interleaved A/B).
"""
import json, os, subprocess, sys, time
from benchlib import place, preload, q, table

runs, warmup = int(sys.argv[1]), int(sys.argv[2])
agentbox, bwrap, work, data_fds, out = sys.argv[3:8]
env = dict(kv.split("=", 1) for kv in sys.argv[8:])
data_fds = [int(fd) for fd in data_fds.split()]
argv = open(f"{work}/rec/run.argv", "rb").read().split(b"\0")[:-1]
assert argv[-2:] == [b"--", b"true"], argv[-2:]
data = {fd: open(f"{work}/rec/run.fd{fd}", "rb").read() for fd in data_fds}
ARGS_FD = max(data_fds, default=2) + 1
# bwrap's options go in the file; the command (agentbox's shim, then `true`) stays after `--` on
# the command line: an argv that ended at the shim's own `--` would run a different command.
opts_end = argv.index(b"--")
with open(f"{work}/args", "wb") as f:
    f.write(b"".join(a + b"\0" for a in argv[:opts_end]))

def data_fds_like_agentbox():
    preload(data)

def with_args_file():
    data_fds_like_agentbox()
    place(ARGS_FD, os.open(f"{work}/args", os.O_RDONLY))

# name -> (argv, env, fds the child keeps, set-up done before the clock starts)
# bwrap gets an empty environment from agentbox (env_clear), so the direct baselines do too.
direct = [bwrap, *argv]
cmds = {
    "agentbox run -- true": ([agentbox, "run", "--", "true"], env, (), None),
    "bare: bwrap ARGV -- true": (direct, {}, data_fds, data_fds_like_agentbox),
    "bare: bwrap --args FD -- true": (
        [bwrap, "--args", str(ARGS_FD), *argv[opts_end:]], {}, [*data_fds, ARGS_FD],
        with_args_file),
    "bare: bash dry-run script": (["bash", f"{work}/run.dry.sh"], env, (), None),
    "part: agentbox run --dry-run": ([agentbox, "run", "--dry-run", "--", "true"], env, (), None),
    "part: bwrap --version": ([bwrap, "--version"], {}, (), None),
    # The shim bwrap runs inside (Landlock, then exec), run on the host: its cost in both rows.
    "part: agentbox __exec (shim) true": ([agentbox, *argv[opts_end + 2:]], {}, (), None),
    "part: agentbox --version": ([agentbox, "--version"], env, (), None),
    "floor: env -i bwrap ARGV -- true": (["/usr/bin/env", "-i", *direct], {}, data_fds,
                                         data_fds_like_agentbox),
    "floor: /usr/bin/true": (["/usr/bin/true"], env, (), None),
}
base = os.environ.get("AGENTBOX_BASE")
if base:
    cmds["A/B: base run -- true"] = ([base, "run", "--", "true"], env, (), None)
    cmds["A/B: base run --dry-run"] = ([base, "run", "--dry-run", "--", "true"], env, (), None)

names = list(cmds)
samples = {n: [] for n in names}
for rnd in range(warmup + runs):
    order = names[rnd % len(names):] + names[:rnd % len(names)]
    for name in order:
        args, cenv, fds, setup = cmds[name]
        if setup:
            setup()
        t0 = time.perf_counter_ns()
        rc = subprocess.call(args, env=cenv, pass_fds=fds, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter_ns() - t0
        if rc != 0:
            sys.exit(f"bench: {name!r} exited with {rc}: the measurement is broken")
        if rnd >= warmup:
            samples[name].append(dt / 1e6)

table(samples, names, 36)
med = {n: q(samples[n], .5) for n in names}
ab = "agentbox run -- true"
print("  ratio agentbox / baseline (ratio of medians; median of per-round ratios):")
for n in names[1:4]:
    paired = [a / b for a, b in zip(samples[ab], samples[n])]
    print(f"    / {n[6:]:<28} {med[ab] / med[n]:5.2f}x   {q(paired, .5):5.2f}x   "
          f"(+{med[ab] - med[n]:.2f} ms)")
bare = "bare: bwrap ARGV -- true"
chain = "floor: env -i bwrap ARGV -- true"
print(f"  one extra exec before bwrap (env -i) costs {med[chain] / med[bare]:.2f}x "
      f"(+{med[chain] - med[bare]:.2f} ms): the floor for any launcher that execs bwrap")
if base:
    paired = [a / b for a, b in zip(samples[ab], samples["A/B: base run -- true"])]
    print(f"  A/B: this build / base, run -- true: {med[ab] / med['A/B: base run -- true']:.3f}x "
          f"(median of per-round ratios {q(paired, .5):.3f}x); --dry-run: "
          f"{med['part: agentbox run --dry-run'] / med['A/B: base run --dry-run']:.3f}x")
ratio = med[ab] / med[bare]
verdict = "MET" if ratio <= 1.2 else "MISSED"
print(f"RESULT launch median {med[ab]:.2f} ms vs bare bwrap {med[bare]:.2f} ms: {ratio:.2f}x; "
      f"target <= 1.20x: {verdict}")
json.dump({"runs": runs, "warmup": warmup, "unit": "ms", "samples": samples},
          open(out, "w"), indent=1)
