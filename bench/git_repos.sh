#!/usr/bin/env bash
# What git's model costs at launch, on a project with many nested repositories:
#
#   bash bench/git_repos.sh [AGENTBOX] [RUNS]     # default: the release build, 100 rounds
#
# For N = 0, 1 and 50 nested repositories (each `git init`, at depth 2: vendor/rN/.git) beside
# a top repository, prints the bwrap argument count and the mounts agentbox adds (pins and
# read-only binds, from --dry-run), and the median time of `agentbox run -- true` with git
# found, and with git not found (PATH without it: no configuration read), the two interleaved
# round by round. The difference is what reading git's configuration costs. Reports; fails
# only on a broken measurement. Needs bash, bwrap, git and python3 (the timing loop is
# bench/git_repos.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
agentbox=${1:-$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/agentbox}
runs=${2:-100}
[[ -x $agentbox ]] || fail "no agentbox at $agentbox (cargo build --release)"
work=$(mktemp -d "${TMPDIR:-/tmp}/agentbox-git-bench.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
bwrap=$(command -v bwrap)
printf '%-6s %8s %6s %6s %12s %12s\n' repos ops pins ro-bind "git ms" "no-git ms"
for n in 0 1 50; do
    rm -rf "${work:?}/project" "$work/home"
    bench_project "$work"
    for ((i = 0; i < n; i++)); do
        git -C "$work/project" init -q "vendor/r$i"
    done
    run_env=(env -i HOME="$work/home" PATH=/usr/local/bin:/usr/bin:/bin)
    no_git_env=(env -i HOME="$work/home" PATH=/nonexistent)
    cd "$work/project"
    dry=$("${run_env[@]}" "$agentbox" run --dry-run -- true 2>/dev/null) ||
        fail "agentbox --dry-run failed with $n repositories"
    ops=$(grep -cE '^  ' <<<"$dry" || true)
    pins=$(grep -cE '^  --bind .* # pinned' <<<"$dry" || true)
    ro=$(grep -cE '^  --ro-bind .* # read-only' <<<"$dry" || true)
    medians=$(python3 -B "$bench_dir/git_repos.py" "$runs" "${run_env[*]}" "${no_git_env[*]}" \
        "$agentbox" "$bwrap")
    cd - >/dev/null
    read -r m_git m_nogit <<<"$medians"
    printf '%-6s %8s %6s %6s %12s %12s\n' "$n" "$ops" "$pins" "$ro" "$m_git" "$m_nogit"
done
