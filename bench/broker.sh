#!/usr/bin/env bash
# The credential broker's benchmark, from the repository root:
#
#   bash bench/broker.sh
#
# A keep-alive HTTP/1.1 upstream on the host's loopback (bench/broker_bench.py server). The
# same Python client sends BROKER_N sequential small requests on one kept-alive connection,
# then downloads BROKER_MIB MiB (chunked):
#   direct:  on the host, to 127.0.0.1:PORT;
#   broker:  inside `agentbox run --profile claude --allow-domain 127.0.0.1:PORT` with
#            ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL=http://127.0.0.1:PORT set on the host,
#            to the broker's base URL inside (http://127.0.0.3:3129/anthropic): relay, UNIX
#            socket, host proxy, header replacement, a kept-alive upstream connection.
# Rounds alternate direct and broker (BROKER_ROUNDS, default 5); the report pools the samples
# and prints latency (median, p90, p99; ratio and added ms) and throughput (ratio).
# Target: <= 1 ms added at the median.
#
# Knobs: BROKER_ROUNDS, BROKER_N (requests per round, default 1000), BROKER_MIB (default 256),
# AGENTBOX=PATH (measure that binary instead of a release build of this checkout).
# Loopback only; every loop bounded. Method and figures: BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${BROKER_ROUNDS:-5}
n=${BROKER_N:-1000}
mib=${BROKER_MIB:-256}
if [[ -z ${AGENTBOX:-} ]]; then
    cargo build --release --quiet
    AGENTBOX=$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/agentbox
fi
# The same interpreter on both sides (the sandbox sees the system's, not a pyenv shim).
py=/usr/bin/python3
[[ -x $py ]] || py=$(command -v python3)
work=$(mktemp -d "${TMPDIR:-/tmp}/agentbox-broker-bench.XXXXXX")
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/project" "$work/home"
cp bench/broker_bench.py "$work/project/"
"$py" bench/broker_bench.py server "$work/port" &
server_pid=$!
for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.1; done
port=$(cat "$work/port")
merge() { "$py" -c 'import json,sys
out={"latency_ms":[],"mib_s":[]}
for f in sys.argv[2:]:
    for l in open(f):
        d=json.loads(l); out["latency_ms"]+=d["latency_ms"]; out["mib_s"].append(d["mib_s"])
import statistics; out["mib_s"]=statistics.median(out["mib_s"])
json.dump(out,open(sys.argv[1],"w"))' "$@"; }
for r in $(seq "$rounds"); do
    timeout 600 "$py" bench/broker_bench.py client "http://127.0.0.1:$port" "$n" "$mib" \
        >>"$work/direct.jsonl"
    (cd "$work/project" && timeout 600 env -i PATH="$PATH" HOME="$work/home" \
        XDG_RUNTIME_DIR="$work/home/.run" ANTHROPIC_API_KEY=sk-bench-key \
        ANTHROPIC_BASE_URL="http://127.0.0.1:$port" \
        "$AGENTBOX" run -q --profile claude --allow-domain "127.0.0.1:$port" -- \
        "$py" broker_bench.py client http://127.0.0.3:3129/anthropic "$n" "$mib") \
        >>"$work/broker.jsonl"
    echo "round $r/$rounds done" >&2
done
merge "$work/direct.json" "$work/direct.jsonl"
merge "$work/broker.json" "$work/broker.jsonl"
echo "agentbox $("$AGENTBOX" --version); $rounds rounds x $n requests; $mib MiB per download"
"$py" bench/broker_bench.py report "$work/direct.json" "$work/broker.json"
