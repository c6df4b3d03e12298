#!/usr/bin/env bash
# What git's model costs at launch, on a project with many nested repositories:
#
#   bash bench/git_repos.sh [AGENTBOX] [RUNS]     # default: the release build, 100 rounds
#
# For N = 0, 1 and 50 nested repositories (each `git init`, at depth 2: vendor/rN/.git) beside
# a top repository, prints the bwrap argument count and the mounts agentbox adds (pins and
# read-only binds, from --dry-run), and the median time of `agentbox run -- true`. Reports;
# fails only on a broken measurement. Needs bash, bwrap, git and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
agentbox=${1:-$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/agentbox}
runs=${2:-100}
[[ -x $agentbox ]] || fail "no agentbox at $agentbox (cargo build --release)"
work=$(mktemp -d "${TMPDIR:-/tmp}/agentbox-git-bench.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
printf '%-6s %8s %6s %6s %10s\n' repos args pins ro-bind "median ms"
for n in 0 1 50; do
    rm -rf "${work:?}/project" "$work/home"
    bench_project "$work"
    for ((i = 0; i < n; i++)); do
        git -C "$work/project" init -q "vendor/r$i"
    done
    run_env=(env -i HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin)
    cd "$work/project"
    dry=$("${run_env[@]}" "$agentbox" run --dry-run -- true 2>/dev/null) ||
        fail "agentbox --dry-run failed with $n repositories"
    args=$(grep -cE '^  ' <<<"$dry" || true)
    pins=$(grep -cE '^  --bind .* # pinned' <<<"$dry" || true)
    ro=$(grep -cE '^  --ro-bind .* # read-only' <<<"$dry" || true)
    median=$(python3 - "$runs" "${run_env[@]}" "$agentbox" run -- true <<'PY'
import subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
for _ in range(10):
    subprocess.run(cmd, check=True)
ts = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    ts.append(time.perf_counter() - t)
ts.sort()
print(f"{ts[len(ts) // 2] * 1000:.2f}")
PY
)
    cd - >/dev/null
    printf '%-6s %8s %6s %6s %10s\n' "$n" "$args" "$pins" "$ro" "$median"
done
