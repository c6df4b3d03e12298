#!/usr/bin/env bash
# A/B of two agentbox binaries on the filtered network, interleaved, in one command from the
# repository root:
#
#   bash bench/net_ab.sh BASE CAND [PAIRS]
#
# PAIRS (default 4) rounds of bench/net.sh's network part, CAND then BASE each time (the
# machine's load drifts: ratios are compared within a pair, medians over pairs), then the
# launch ratio of both (bench/launch_ratio.py), then the ceiling of any proxy with one hop on
# this machine (bench/hop.py). Knobs as bench/net.sh (NET_ROUNDS default 3, NET_MIB 256,
# NET_CONNS 10, NET_TUNNELS 1000 here). Prints each run's RESULT lines and the
# throughput, CPU-per-GiB and memory tables; keeps the full outputs in $CARGO_TARGET_DIR/bench/ab/.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { echo "usage: bash bench/net_ab.sh BASE CAND [PAIRS]" >&2; exit 2; }
base=$(realpath "$1")
cand=$(realpath "$2")
pairs=${3:-4}
out=$(realpath -m "${CARGO_TARGET_DIR:-target}")/bench/ab
mkdir -p "$out"
for i in $(seq "$pairs"); do
    for v in cand base; do
        bin=$base
        [[ $v == cand ]] && bin=$cand
        echo "== $v, pair $i, load $(cut -d' ' -f1-3 /proc/loadavg)"
        AGENTBOX=$bin LAUNCH_RUNS=0 NET_DIAG=0 NET_ROUNDS=${NET_ROUNDS:-3} \
            NET_MIB=${NET_MIB:-256} NET_CONNS=${NET_CONNS:-10} \
            NET_TUNNELS=${NET_TUNNELS:-1000} bash bench/net.sh >"$out/$v-$i.txt" 2>&1
        grep -E '^RESULT|^    (down|up|curl):|tunnels open' "$out/$v-$i.txt" || true
    done
done
echo "== launch: agentbox run [--net filtered] -- true, both binaries interleaved"
python3 -B bench/launch_ratio.py 25 "$base" "$cand"
echo "== the ceiling of one proxy hop on this machine (bench/hop.py)"
python3 -B bench/hop.py 3 "${NET_MIB:-256}"
