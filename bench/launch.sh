#!/usr/bin/env bash
# The benchmarks for "agentbox run", in one command from the repository root:
#
#   bash bench/launch.sh [RUNS]        # RUNS timed rounds, default 200 (WARMUP=20 before them)
#
# AGENTBOX=PATH measures that binary instead of building one; AGENTBOX_BASE=PATH adds its
# `run -- true` (and `--dry-run`) as rows of the same rounds: an interleaved A/B of two builds.
# SCAN=0 skips part 2.
#
# 1. Launch: `agentbox run -- true` against bwrap run bare with the very argv and data fds
#    agentbox hands it, interleaved round by round in one process, so both see the same machine
#    state. The figure is the ratio of medians; the target is <= 1.2x bare bwrap.
# 2. Scan: `cargo bench --bench scan` (bench/scan.rs), the secret scan of a generated
#    100,000-file tree against a plain read_dir walk; the target is <= 60 ms warm.
#
# Needs bash, bwrap, python3, git and a cargo that has the dependencies cached (no network is
# used). The timing loop is bench/launch.py. Writes raw samples to
# $CARGO_TARGET_DIR/bench/launch.json. Method and figures: BENCHMARKS.md. It reports; it never
# fails on a missed target, only on a broken measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
repo=$PWD

runs=${1:-200}
warmup=${WARMUP:-20}
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$target_dir

if [[ -n ${AGENTBOX:-} ]]; then
    agentbox=$(realpath "$AGENTBOX")
    echo "== using $agentbox (AGENTBOX set: not built)"
else
    echo "== building (cargo build --release)"
    cargo build --release --quiet
    agentbox=$target_dir/release/agentbox
fi
base=
[[ -n ${AGENTBOX_BASE:-} ]] && base=$(realpath "$AGENTBOX_BASE")
bwrap=$(realpath "$(command -v bwrap)")
echo "   at $(git log -1 --format='%h %s' 2>/dev/null || echo '(not a git checkout)')" \
    "$(git status --porcelain -- src 2>/dev/null | grep -q . && echo '(src/ has uncommitted changes)')"

work=$(mktemp -d "${TMPDIR:-/tmp}/agentbox-launch-bench.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

# A small project and an empty home, so a developer's own files do not change what is timed.
project=$work/project
bench_project "$work"
mkdir -p "$work/rec"
cd "$project"

# Every timed command gets this environment, the same for agentbox and the baselines.
run_env=(env -i "HOME=$work/home" "PATH=/usr/local/bin:/usr/bin:/bin" "LANG=C.UTF-8" "TERM=dumb")

# What `agentbox run -- true` hands bwrap, checked against what --dry-run prints.
bench_record run
bench_same_as_dry run

# Positive control: the timed launch really is a sandbox (.env masked, own hostname).
"${run_env[@]}" "$agentbox" run -- sh -c \
    'test ! -s .env && test "$(cat /proc/sys/kernel/hostname)" = agentbox' 2>/dev/null ||
    fail "agentbox run did not give the expected sandbox"

mkdir -p "$target_dir/bench"
echo "== launch: $runs rounds after $warmup warm-up rounds, interleaved" \
    "($(wc -c <"$work/rec/run.argv") bytes of argv, data fds: $data_fds)"
AGENTBOX_BASE=$base \
    python3 -B "$bench_dir/launch.py" "$runs" "$warmup" "$agentbox" "$bwrap" "$work" "$data_fds" \
    "$target_dir/bench/launch.json" "${run_env[@]:2}"

[[ ${SCAN:-1} == 0 ]] && exit 0

echo "== scan (cargo bench --bench scan)"
cd "$repo"
cargo bench --quiet --bench scan
