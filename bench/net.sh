#!/usr/bin/env bash
# The benchmark for `--net filtered`, in one command from the repository root:
#
#   bash bench/net.sh
#
# Knobs (environment): NET_ROUNDS (network rounds, default 5), NET_MIB (MiB per bulk transfer,
# default 512), NET_CONNS (connections per path per round, default 40), NET_TUNNELS
# (concurrent tunnels, default 500), LAUNCH_RUNS (timed launch rounds, default 150), WARMUP
# (launch warm-up rounds, default 20), NET_DIAG=0 (skip the perf diagnosis),
# AGENTBOX=PATH (measure that binary instead of building one: to compare a candidate change).
# LAUNCH_RUNS=0 or NET_ROUNDS=0 skips that part.
#
# 1. Throughput: a Python server on the host's loopback streams or swallows NET_MIB MiB (one
#    stream each way; "par": 100 parallel downloads of NET_MIB/100 each); the
#    same Python client (and curl, as a cross-check) moves them directly on the host, and inside
#    `agentbox run --allow-domain bulk.test:PORT --test-resolve bulk.test=127.0.0.1` through
#    the proxy port (HTTP CONNECT to 127.0.0.1:3128), through capture (the name's synthetic
#    address, no proxy), and on the sandbox's own loopback (a server inside: what the sandbox
#    costs without agentbox's network). Target: >= 0.9x of direct.
# 2. Connect latency: sequential connect + 1-byte exchange + close, per path; the added ms.
# 3. Memory: VmRSS of the `agentbox run` process (the whole process: the proxy is a thread in
#    it) sampled every 20 ms, idle, during the transfers and with NET_TUNNELS tunnels open.
#    Target: <= 10 MiB.
# 4. Launch: `agentbox run --net filtered -- true` against bare bwrap given the argv and data
#    fds `agentbox run -- true` execs (recorded with a stand-in bwrap, as bench/launch.sh does),
#    interleaved round by round. Target: <= 1.6x.
# 5. Diagnosis (needs perf; NET_DIAG=0 skips it): a launch timeline from the kernel's fork, exec
#    and exit events, and syscalls, CPU and context switches per process for one 1 GiB
#    download on each path.
#
# Launch runs first (the machine is quietest before any transfer), then the network parts.
#
# The programs are beside this script: net_launch.py and net_timeline.py (launch),
# net_bench.py (the network harness), net_server.py and net_client.py (copied into the
# project, the only place the sandbox sees them).
#
# Loopback only; every run, socket and loop is bounded. Needs bash, bwrap, python3, curl, git
# and a cargo that has the dependencies cached. Writes raw samples to
# $CARGO_TARGET_DIR/bench/net.json and launch-net.json. Method and figures: BENCHMARKS.md. It
# reports; it never fails on a missed target, only on a broken measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$target_dir
launch_runs=${LAUNCH_RUNS:-150}
net_rounds=${NET_ROUNDS:-5}
warmup=${WARMUP:-20}

work=$(mktemp -d "${TMPDIR:-/tmp}/agentbox-net-bench.XXXXXX")
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n ${AGENTBOX:-} ]]; then
    agentbox=$(realpath "$AGENTBOX")
    echo "== using $agentbox (AGENTBOX set: not built)"
else
    echo "== building (cargo build --release)"
    cargo build --release --quiet
    agentbox=$target_dir/release/agentbox
fi
bwrap=$(realpath "$(command -v bwrap)")
dirty=$(git status --porcelain -- src 2>/dev/null | grep -q . && echo '(src/ changed)' || true)
echo "   at $(git log -1 --format='%h %s' 2>/dev/null || echo '(not a git checkout)') $dirty"
echo "   $(nproc) cores; $(free -h | awk '/^Mem:/ {print $2}') memory; kernel $(uname -r);" \
    "$("$bwrap" --version); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# A small project (the one bench/launch.sh uses) and an empty home, so a developer's own files
# and variables do not change what is timed. The clients live in the project: inside the
# sandbox only the system, the project and an empty /tmp are there.
project=$work/project
bench_project "$work"
mkdir -p "$work/rec"
chmod 700 "$work/rec"
cd "$project"
run_env=(env -i "HOME=$work/home" "PATH=/usr/local/bin:/usr/bin:/bin" "LANG=C.UTF-8" "TERM=dumb")

# ---- launch: what `agentbox run [--net filtered] -- true` hands bwrap, recorded --------------
launch_bench() {
    local mode flags
    for mode in plain filtered; do
        flags=()
        [[ $mode == filtered ]] && flags=(--net filtered)
        bench_record "$mode" "${flags[@]}"
        echo "$data_fds" >"$work/rec/$mode.fds"
    done

    # Positive controls: both timed launches really are sandboxes (.env masked, own hostname), and
    # the filtered one has the proxy variables.
    "${run_env[@]}" "$agentbox" run -- sh -c \
        'test ! -s .env && test "$(cat /proc/sys/kernel/hostname)" = agentbox' 2>/dev/null ||
        fail "agentbox run did not give the expected sandbox"
    "${run_env[@]}" "$agentbox" run --net filtered -- sh -c \
        'test ! -s .env && test "$(cat /proc/sys/kernel/hostname)" = agentbox &&
         test "$HTTPS_PROXY" = http://127.0.0.1:3128' 2>/dev/null ||
        fail "agentbox run --net filtered did not give the expected sandbox"

    # Where bare bwrap's filtered launches find the proxy socket: a stand-in, never connected to
    # (they run `true`).
    mkdir -p "$target_dir/bench" "$work/netdir"
    chmod 700 "$work/netdir"
    : >"$work/netdir/proxy.sock"
    echo "== launch: $launch_runs rounds after $warmup warm-up rounds, interleaved"
    python3 -B "$bench_dir/net_launch.py" "$launch_runs" "$warmup" "$agentbox" "$bwrap" "$work" \
        "$target_dir/bench/launch-net.json" "${run_env[@]:2}"
    if [[ ${NET_DIAG:-1} != 0 ]] && command -v perf >/dev/null; then
        launch_timeline
    fi
}

# Where a launch's time goes, without slowing it down: the kernel's fork, exec and exit events
# (perf's sched tracepoints, system-wide) for 30 launches of each kind, followed down the
# process tree of each agentbox; medians of the steps.
launch_timeline() {
    local n=30
    echo "== diagnosis: launch timeline from sched tracepoints ($n launches of each, alternating)"
    if ! timeout 300 perf record -q -o "$work/sched.data" -a \
        -e sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit -- \
        bash -c 'for _ in $(seq "$1"); do "${@:3}" "$2" run --net filtered -- true
                 "${@:3}" "$2" run -- true; done' _ "$n" "$agentbox" "${run_env[@]}" \
        >/dev/null 2>&1; then
        echo "   (perf record failed: no timeline)"
        return
    fi
    perf script -i "$work/sched.data" >"$work/sched.txt" 2>/dev/null
    python3 -B "$bench_dir/net_timeline.py" "$agentbox" "$work/sched.txt"
}

# ---- network: throughput, connect latency, memory ------------------------------------------
net_bench() {
    local port real_server_pid diag
    cp "$bench_dir/net_server.py" "$bench_dir/net_client.py" "$project/"
    timeout 3600 python3 "$project/net_server.py" >"$work/server.out" 2>/dev/null &
    server_pid=$!
    for _ in $(seq 100); do
        [[ -s $work/server.out ]] && break
        sleep 0.05
    done
    read -r port real_server_pid <"$work/server.out" || fail "the loopback server did not start"
    diag=${NET_DIAG:-1}
    if [[ $diag != 0 ]] && ! command -v perf >/dev/null; then
        echo "   (no perf: the diagnosis is skipped)"
        diag=0
    fi
    python3 -B "$bench_dir/net_bench.py" "$agentbox" "$project" "$port" \
        "$real_server_pid" "$net_rounds" \
        "${NET_MIB:-512}" "${NET_CONNS:-40}" "${NET_TUNNELS:-500}" "$diag" "$work" \
        "$target_dir/bench/net.json" "${run_env[@]:2}"
}

mkdir -p "$target_dir/bench"
if (( launch_runs > 0 )); then
    launch_bench
fi
if (( net_rounds > 0 )); then
    net_bench
fi
