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
# 1. Throughput: a Python server on the host's loopback streams or swallows NET_MIB MiB; the
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
# Loopback only; every run, socket and loop is bounded. Needs bash, bwrap, python3, curl, git
# and a cargo that has the dependencies cached. Writes raw samples to
# $CARGO_TARGET_DIR/bench/net.json and launch-net.json. Method and figures: BENCHMARKS.md. It
# reports; it never fails on a missed target, only on a broken measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
repo=$PWD

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

# ---- the programs: a loopback server, the client (host and sandbox), the harness -------------
cat >"$work/netserver.py" <<'PY'
import os, socket, socketserver

CHUNK = memoryview(bytes(1 << 20))


class Conn(socketserver.BaseRequestHandler):
    """One request per connection: "D n\n" sends n bytes, "U n\n" takes n bytes then sends K,
    "E" echoes one byte and holds the connection until the client closes, "GET /n" is HTTP."""

    def handle(self):
        s = self.request
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(120)
        line = s.recv(1)
        if line == b"E":
            s.sendall(b"e")
            while s.recv(4096):
                pass
            return
        while not line.endswith(b"\n") and 0 < len(line) < 4096:
            line += s.recv(1)
        word, arg = (line.split() + [b"", b""])[:2]
        if word == b"D":
            self.send(int(arg))
        elif word == b"U":
            n, buf = int(arg), bytearray(1 << 20)
            while n > 0:
                k = s.recv_into(buf)
                if not k:
                    return
                n -= k
            s.sendall(b"K")
        elif word == b"GET":
            while not line.endswith(b"\r\n\r\n") and len(line) < 65536:
                b = s.recv(4096)
                if not b:
                    return
                line += b
            n = int(arg.strip(b"/"))
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
            self.send(n)

    def send(self, n):
        while n > 0:
            k = min(n, len(CHUNK))
            self.request.sendall(CHUNK[:k])
            n -= k


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        pass  # a client that went away; the client side reports real failures


srv = Server(("127.0.0.1", 0), Conn)
print(srv.server_address[1], os.getpid(), flush=True)
srv.serve_forever()
PY
cat >"$work/netclient.py" <<'PY'
import json, os, resource, socket, subprocess, sys, time

cfg = json.loads(sys.argv[1])
PORT, NBYTES, CONNS = cfg["port"], cfg["bytes"], cfg["conns"]
TIMEOUT = 60  # seconds, per socket operation: nothing here may hang
CHUNK = 1 << 20
phases, results, checks = [], {}, {}


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Phase:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t0, self.c0 = time.monotonic(), cpu()

    def __exit__(self, *exc):
        phases.append([self.name, self.t0, time.monotonic(), cpu() - self.c0])


def read_head(s):
    head = b""
    while b"\r\n\r\n" not in head:
        # After a 200 nothing follows the head: the server speaks only once asked.
        b = s.recv(4096)
        if not b or len(head) > 8192:
            raise OSError(f"proxy closed or sent a bad reply head: {head[:80]!r}")
        head += b
    return head


def dial(path, name=b"bulk.test"):
    if path == "proxy":  # proxy-aware client: HTTP CONNECT to the relay's proxy port
        s = socket.create_connection(("127.0.0.1", 3128), timeout=TIMEOUT)
        s.sendall(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (name, PORT, name, PORT))
        head = read_head(s)
        if not head.startswith(b"HTTP/1.1 200"):
            s.close()
            raise PermissionError(head.split(b"\r\n")[0].decode())
    else:  # direct (host), capture (the synthetic address, resolved once), inside (own loopback)
        s = socket.create_connection((ADDR[path], PORTS[path]), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def download(path, n):
    buf = bytearray(CHUNK)
    t0 = time.perf_counter()
    s = dial(path)
    s.sendall(b"D %d\n" % n)
    got = 0
    while got < n:
        k = s.recv_into(buf)
        if not k:
            raise OSError(f"{path}: download ended at {got} of {n} bytes")
        got += k
    dt = time.perf_counter() - t0
    s.close()
    return n / dt / 1e6


def upload(path, n):
    data = memoryview(bytes(CHUNK))
    t0 = time.perf_counter()
    s = dial(path)
    s.sendall(b"U %d\n" % n)
    left = n
    while left:
        k = min(left, CHUNK)
        s.sendall(data[:k])
        left -= k
    if s.recv(1) != b"K":
        raise OSError(f"{path}: upload not acknowledged")
    dt = time.perf_counter() - t0
    s.close()
    return n / dt / 1e6


def latency(path, conns):
    out = []
    for _ in range(conns):
        t0 = time.perf_counter()
        s = dial(path)
        s.sendall(b"E")
        if s.recv(1) != b"e":
            raise OSError(f"{path}: no echo")
        s.close()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def curl(path, n):
    url = f"http://{ADDR_NAME[path]}:{PORTS[path]}/{n}"
    how = {"proxy": ["-p", "-x", "http://127.0.0.1:3128"],  # CONNECT, as for https
           "forward": ["-x", "http://127.0.0.1:3128"]}.get(path, ["--noproxy", "*"])
    out = subprocess.run(["curl", "-sS", "--max-time", "120", "-o", "/dev/null", "-w",
                          "%{speed_download} %{size_download}", *how, url],
                         capture_output=True, text=True, timeout=150)
    speed, size = out.stdout.split()
    if out.returncode or int(size) != n:
        raise OSError(f"curl {path}: rc {out.returncode}, {size} bytes: {out.stderr.strip()}")
    return float(speed) / 1e6


def tunnels(n, hold):
    """n concurrent tunnels through the proxy port, each with one exchange, held open."""
    socks = []
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            s = dial("proxy")
            s.sendall(b"E")
            if s.recv(1) != b"e":
                raise OSError("tunnel: no echo")
            socks.append(s)
        opened = time.perf_counter() - t0
        with Phase("tunnels-open"):
            time.sleep(hold)
        return opened
    finally:
        for s in socks:
            s.close()


inside = cfg["where"] == "sandbox"
ADDR = {"direct": "127.0.0.1", "inside": "127.0.0.1"}
PORTS = {"direct": PORT, "capture": PORT, "proxy": PORT, "forward": PORT}
ADDR_NAME = {"direct": "127.0.0.1", "inside": "127.0.0.1", "capture": "bulk.test",
             "proxy": "bulk.test", "forward": "bulk.test"}
server = None
try:
    with Phase("idle"):
        time.sleep(cfg["idle"])
    if inside:
        # Controls: the sandbox reaches the host server only through agentbox, by allowlist.
        # Each check names a leak; True fails the benchmark.
        try:
            socket.getaddrinfo("other.test", PORT)
            checks["unlisted name resolves"] = True
        except socket.gaierror:
            checks["unlisted name resolves"] = False
        try:
            dial("proxy", b"other.test").close()
            checks["proxy tunnels to an unlisted name"] = True
        except PermissionError:
            checks["proxy tunnels to an unlisted name"] = False
        try:
            s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            s.sendall(b"E")
            checks["host server reachable at 127.0.0.1 from inside"] = s.recv(1) == b"e"
            s.close()
        except OSError:
            checks["host server reachable at 127.0.0.1 from inside"] = False
        t0 = time.perf_counter()
        ADDR["capture"] = socket.gethostbyname("bulk.test")
        results["dns_ms"] = (time.perf_counter() - t0) * 1e3
        checks["allowed name resolves outside 127.80/16"] = \
            not ADDR["capture"].startswith("127.80.")
        # The same server, inside the sandbox on its own loopback: what the sandbox costs alone.
        server = subprocess.Popen([sys.executable, cfg["server"]], stdout=subprocess.PIPE)
        PORTS["inside"] = int(server.stdout.readline().split()[0])
    for task in cfg["tasks"]:
        kind, path = task.split(":")
        with Phase(task):
            if kind == "down":
                results[task] = download(path, NBYTES)
            elif kind == "up":
                results[task] = upload(path, NBYTES)
            elif kind == "lat":
                results[task] = latency(path, CONNS)
            elif kind == "curl":
                results[task] = curl(path, NBYTES)
            elif kind == "tunnels":
                results[task] = tunnels(cfg["tunnels"], cfg["hold"])
    with Phase("idle-after"):
        time.sleep(cfg["idle"])
finally:
    if server:
        server.kill()
        server.wait(timeout=10)
print(json.dumps({"results": results, "phases": phases, "checks": checks}))
PY
cat >"$work/netbench.py" <<'PY'
import json, os, signal, subprocess, sys, threading, time

keys = ["agentbox", "project", "port", "server_pid", "rounds", "mib", "conns", "tunnels", "diag",
        "work", "out"]
cfg = dict(zip(keys, sys.argv[1:]))
for k in ("port", "server_pid", "rounds", "mib", "conns", "tunnels"):
    cfg[k] = int(cfg[k])
cfg["diag"] = cfg["diag"] != "0"
env = dict(kv.split("=", 1) for kv in sys.argv[1 + len(keys):])
AGENTBOX, PROJECT, PORT = cfg["agentbox"], cfg["project"], cfg["port"]
SERVER_PID = cfg["server_pid"]
CLIENT, SERVER = f"{PROJECT}/netclient.py", f"{PROJECT}/netserver.py"
HZ = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT = 600  # seconds for one client run, sandboxed or not
SAMPLE_EVERY = 0.02
SANDBOX = [AGENTBOX, "run", "--net", "filtered", "--allow-domain", f"bulk.test:{PORT}",
           "--test-resolve", "bulk.test=127.0.0.1", "--"]


from benchlib import q


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def stat(path):
    """(ppid, cpu seconds) from a /proc .../stat file."""
    s = read(path)
    if not s:
        return None
    rest = s[s.rfind(b")") + 2:].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / HZ


def rss_kib(pid):
    s = read(f"/proc/{pid}/status")
    if not s:
        return None
    f = dict(l.split(b":", 1) for l in s.splitlines() if b":" in l)
    if b"VmRSS" not in f:  # a zombie
        return None
    return int(f[b"VmRSS"].split()[0]), int(f[b"VmHWM"].split()[0])


def descendants(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(f"/proc/{d}/stat")
            if st:
                kids.setdefault(st[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY: VmRSS, VmHWM and CPU time of each role's process (and the proxy
    thread's CPU time), so each phase the client reports can be given its memory and CPU."""

    def __init__(self, roles, root=None):
        super().__init__(daemon=True)
        self.roles, self.root, self.samples = dict(roles), root, []
        self.done = threading.Event()

    def discover(self):
        for pid in descendants(self.root):
            argv = (read(f"/proc/{pid}/cmdline") or b"").split(b"\0")
            comm = (read(f"/proc/{pid}/comm") or b"").strip()
            if comm == b"agentbox" and argv[1:2] == [b"__relay"]:
                self.roles["relay"] = pid
            elif comm.startswith(b"python") and CLIENT.encode() in argv:
                self.roles["client"] = pid
            elif comm.startswith(b"python") and SERVER.encode() in argv:
                self.roles["inner-server"] = pid  # the server on the sandbox's own loopback
        for t in os.listdir(f"/proc/{self.root}/task"):
            if read(f"/proc/{self.root}/task/{t}/comm") == b"agentbox-proxy\n":
                self.roles["proxy-thread"] = (self.root, int(t))

    def run(self):
        while not self.done.is_set():
            wanted = {"relay", "client", "inner-server", "proxy-thread"}
            if self.root and not wanted <= set(self.roles):
                try:
                    self.discover()
                except OSError:
                    pass
            now, snap = time.monotonic(), {}
            for role, pid in self.roles.items():
                if isinstance(pid, tuple):
                    st = stat(f"/proc/{pid[0]}/task/{pid[1]}/stat")
                    if st:
                        snap[role] = (None, None, st[1])
                    continue
                st, mem = stat(f"/proc/{pid}/stat"), rss_kib(pid)
                if st and mem:
                    snap[role] = (mem[0], mem[1], st[1])
            self.samples.append((now, snap))
            self.done.wait(SAMPLE_EVERY)

    def phase(self, t0, t1):
        """role -> (max VmRSS KiB, CPU seconds) over [t0, t1]."""
        out = {}
        inside = [s for t, s in self.samples if t0 <= t <= t1]
        before = [s for t, s in self.samples if t <= t0][-1:] or self.samples[:1]
        after = [s for t, s in self.samples if t >= t1][:1] or self.samples[-1:]
        for role in self.roles:
            rss = [s[role][0] for s in inside if role in s and s[role][0]]
            c0 = [s[role][2] for s in before if role in s]
            c1 = [s[role][2] for s in after if role in s]
            out[role] = (max(rss, default=None), c1[0] - c0[0] if c0 and c1 else None)
        return out

    def last_hwm(self, role):
        return max((s[role][1] for _, s in self.samples if role in s and s[role][1]), default=None)


def client(where, tasks, nbytes, conns, tunnels=0, idle=0.3, perf=None):
    """One run of the client, on the host or in the sandbox, sampled all along."""
    ccfg = {"where": where, "port": PORT, "bytes": nbytes, "conns": conns, "tasks": tasks,
            "tunnels": tunnels, "hold": 1.0, "idle": idle, "server": SERVER}
    argv = ["/usr/bin/python3", CLIENT, json.dumps(ccfg)]
    if where == "sandbox":
        argv = SANDBOX + argv
    p = subprocess.Popen(argv, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    roles = {"server": SERVER_PID}
    if where == "sandbox":
        roles["agentbox"] = p.pid
    else:
        roles["client"] = p.pid
    sampler = Sampler(roles, p.pid if where == "sandbox" else None)
    sampler.start()
    perfs = perf(sampler) if perf else []
    try:
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.terminate()  # agentbox passes it on to the sandbox; --die-with-parent does the rest
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
        sys.exit(f"bench: a {where} client run took over {RUN_TIMEOUT} s: broken")
    finally:
        sampler.done.set()
        sampler.join(timeout=10)
        for pp in perfs:
            try:
                pp.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pp.send_signal(signal.SIGINT)
                pp.wait(timeout=10)
    if p.returncode != 0:
        sys.exit(f"bench: {where} client failed ({p.returncode}):\n{err.decode()[-2000:]}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    res["per_phase"] = {name: sampler.phase(t0, t1) for name, t0, t1, _ in res["phases"]}
    res["client_cpu"] = {name: c for name, _, _, c in res["phases"]}
    res["hwm"] = {r: sampler.last_hwm(r) for r in ("agentbox", "relay")}
    res["roles"] = {r: v for r, v in sampler.roles.items() if not isinstance(v, tuple)}
    return res


ROUNDS, NBYTES, CONNS, TUNNELS = cfg["rounds"], cfg["mib"] << 20, cfg["conns"], cfg["tunnels"]
SANDBOX_TASKS = ["down:proxy", "up:proxy", "down:capture", "up:capture", "down:inside",
                 "up:inside", "lat:proxy", "lat:capture", "lat:inside", "curl:proxy",
                 "curl:capture", "curl:forward"]
HOST_TASKS = ["down:direct", "up:direct", "lat:direct", "curl:direct"]


def rot(xs, k):
    k %= len(xs)
    return xs[k:] + xs[:k]


print(f"== network: 1 warm-up round, then {ROUNDS} rounds; {cfg['mib']} MiB per transfer, "
      f"{CONNS} connections per path per round, {TUNNELS} concurrent tunnels", flush=True)
client("host", HOST_TASKS, 64 << 20, 5)
client("sandbox", SANDBOX_TASKS + ["tunnels:proxy"], 64 << 20, 5, tunnels=min(TUNNELS, 50))
runs = []
for rnd in range(ROUNDS):
    pair = [("host", rot(HOST_TASKS, rnd), 0),
            ("sandbox", rot(SANDBOX_TASKS, rnd) + ["tunnels:proxy"], TUNNELS)]
    got = {}
    for where, tasks, tun in rot(pair, rnd):
        got[where] = client(where, tasks, NBYTES, CONNS, tunnels=tun)
    bad = [k for k, v in got["sandbox"]["checks"].items() if v]
    if bad:
        sys.exit(f"bench: the sandbox is not filtering: {bad}")
    runs.append(got)
    thr = {t: v for g in got.values() for t, v in g["results"].items()
           if t.split(":")[0] in ("down", "up", "curl")}
    print(f"  round {rnd + 1}: MB/s " + " ".join(f"{t}={v:.0f}" for t, v in sorted(thr.items())),
          flush=True)

# -- throughput
def series(task):
    return [r[w]["results"][task] for r in runs for w in r if task in r[w]["results"]]

report = {"throughput": {}, "latency": {}, "rss": {}, "cpu_per_gib": {}}
print(f"  throughput, MB/s (10^6 bytes/s), {ROUNDS} transfers of {cfg['mib']} MiB each; "
      "ratio = median / median of the same client direct on the host")
print(f"    {'client:path':<16} {'min':>7} {'median':>7} {'max':>7} {'ratio':>6} {'per-round':>9}")
for kind in ("down", "up", "curl"):
    base = series(f"{kind}:direct")
    for path in ("direct", "proxy", "capture", "forward", "inside"):
        xs = series(f"{kind}:{path}")
        if not xs:
            continue
        paired = q([a / b for a, b in zip(xs, base)], .5)
        ratio = q(xs, .5) / q(base, .5)
        report["throughput"][f"{kind}:{path}"] = {"median": q(xs, .5), "ratio": ratio,
                                                  "per_round_ratio": paired, "samples": xs}
        print(f"    {kind + ':' + path:<16} {min(xs):7.0f} {q(xs, .5):7.0f} {max(xs):7.0f} "
              f"{ratio:5.2f}x {paired:8.2f}x")

# -- where the CPU goes: CPU seconds per GiB moved, by process, medians over rounds
print("  CPU seconds per GiB moved (medians over rounds, from /proc ticks every 20 ms; agentbox "
      "= the whole supervising process, its proxy thread shown apart; for inside, the server "
      "is the one in the sandbox)")
roles = ("server", "agentbox", "proxy-thread", "relay", "client")
print(f"    {'transfer':<16}" + "".join(f"{r:>13}" for r in roles) + f"{'total':>9}")
for kind in ("down", "up"):
    for path in ("direct", "inside", "proxy", "capture"):
        task = f"{kind}:{path}"
        per = {r: [] for r in roles}
        totals = []
        for r in runs:
            for w, g in r.items():
                if task not in g["per_phase"]:
                    continue
                ph = g["per_phase"][task]
                gib = NBYTES / (1 << 30)
                vals = {ro: (ph.get(ro, (None, None))[1]) for ro in roles}
                if path == "inside":
                    vals["server"] = ph.get("inner-server", (None, None))[1]
                vals["client"] = g["client_cpu"][task]
                for ro in roles:
                    if vals[ro] is not None:
                        per[ro].append(vals[ro] / gib)
                totals.append(sum(vals[ro] or 0 for ro in roles if ro != "proxy-thread") / gib)
        if not totals:
            continue
        report["cpu_per_gib"][task] = {ro: q(v, .5) for ro, v in per.items() if v}
        report["cpu_per_gib"][task]["total"] = q(totals, .5)
        print(f"    {task:<16}" + "".join(f"{q(per[ro], .5):13.2f}" if per[ro] else f"{'-':>13}"
                                      for ro in roles) + f"{q(totals, .5):9.2f}")

# -- connect latency
lat = {p: [x for r in runs for w in r for x in r[w]["results"].get(f"lat:{p}", [])]
       for p in ("direct", "inside", "proxy", "capture")}
print(f"  connect latency, ms (connect, 1-byte exchange, close; {len(lat['direct'])} "
      "sequential connections per path)")
print(f"    {'path':<10} {'min':>7} {'median':>7} {'p90':>7} {'p99':>7} {'added median':>13} "
      f"{'added p90':>10}")
for p, xs in lat.items():
    am, a9 = q(xs, .5) - q(lat["direct"], .5), q(xs, .9) - q(lat["direct"], .9)
    report["latency"][p] = {"median": q(xs, .5), "p90": q(xs, .9), "added_median": am,
                            "added_p90": a9, "n": len(xs)}
    print(f"    {p:<10} {min(xs):7.3f} {q(xs, .5):7.3f} {q(xs, .9):7.3f} {q(xs, .99):7.3f} "
          f"{am:+13.3f} {a9:+10.3f}")
dns = [r["sandbox"]["results"]["dns_ms"] for r in runs]
print(f"    (a name lookup through the relay's DNS, first of a run: median {q(dns, .5):.3f} ms)")
tun = [r["sandbox"]["results"]["tunnels:proxy"] for r in runs]
print(f"    opening {TUNNELS} tunnels one after another: median {q(tun, .5) * 1e3:.0f} ms "
      f"({q(tun, .5) / TUNNELS * 1e3:.2f} ms each)")

# -- memory
def peak(role, pred):
    xs = [ph[role][0] for r in runs for name, ph in r["sandbox"]["per_phase"].items()
          if pred(name) and ph.get(role, (None,))[0]]
    return max(xs, default=None)

phases = {
    "idle (before any connection)": lambda n: n == "idle",
    "bulk transfers (proxy, capture)": lambda n: n.split(":")[0] in ("down", "up", "curl")
    and n.split(":")[1] != "inside",
    f"{TUNNELS} tunnels open": lambda n: n == "tunnels-open",
    "idle after": lambda n: n == "idle-after",
}
print("  memory, VmRSS MiB (max over samples every 20 ms, over all rounds)")
print(f"    {'phase':<34} {'agentbox run':>13} {'relay':>8}")
for label, pred in phases.items():
    a, rl = peak("agentbox", pred), peak("relay", pred)
    report["rss"][label] = {"agentbox": a, "relay": rl}
    print(f"    {label:<34} {a / 1024:13.2f} {rl / 1024:8.2f}")
hwm = max(r["sandbox"]["hwm"]["agentbox"] for r in runs)
hwm_relay = max(r["sandbox"]["hwm"]["relay"] for r in runs)
report["rss"]["VmHWM"] = {"agentbox": hwm, "relay": hwm_relay}
print(f"    {'VmHWM (peak over the whole run)':<34} {hwm / 1024:13.2f} {hwm_relay / 1024:8.2f}")

# -- verdicts
t = report["throughput"]
worst = min(t[k]["ratio"] for k in ("down:proxy", "up:proxy", "down:capture", "up:capture"))
peak_rss = max(hwm, *(v["agentbox"] for v in report["rss"].values() if v["agentbox"]))
print(f"RESULT throughput through the sandbox: download proxy {t['down:proxy']['ratio']:.2f}x, "
      f"capture {t['down:capture']['ratio']:.2f}x; upload proxy {t['up:proxy']['ratio']:.2f}x, "
      f"capture {t['up:capture']['ratio']:.2f}x of direct loopback (worst {worst:.2f}x); "
      f"target >= 0.90x: {'MET' if worst >= 0.9 else 'MISSED'}")
print(f"RESULT added connect latency: proxy {report['latency']['proxy']['added_median']:+.3f} ms "
      f"median ({report['latency']['proxy']['added_p90']:+.3f} ms p90), capture "
      f"{report['latency']['capture']['added_median']:+.3f} ms median "
      f"({report['latency']['capture']['added_p90']:+.3f} ms p90); no target")
print(f"RESULT proxy RSS (the whole supervising agentbox process): peak {peak_rss / 1024:.2f} MiB; "
      f"target <= 10 MiB: {'MET' if peak_rss <= 10 * 1024 else 'MISSED'}")
json.dump({"config": cfg, "report": report, "runs": runs}, open(cfg["out"], "w"), indent=1)

# -- diagnosis: syscalls, CPU time and context switches per process for one download per path
if cfg["diag"]:
    EVENTS = ["raw_syscalls:sys_enter", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_sendto",
              "syscalls:sys_enter_epoll_wait", "task-clock", "context-switches"]
    DIAG_BYTES = 1 << 30
    diag_dir = cfg["work"] + "/perf"
    os.makedirs(diag_dir, exist_ok=True)

    def attach(tag):
        def start(sampler):
            want = {"server", "client"} | ({"agentbox", "relay"} if tag != "direct" else set())
            deadline = time.monotonic() + 10
            while not want <= set(sampler.roles) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not want <= set(sampler.roles):
                sys.exit(f"bench: diagnosis: processes not found: {want - set(sampler.roles)}")
            return [subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(EVENTS), "-p",
                                      str(sampler.roles[r]), "-o", f"{diag_dir}/{tag}.{r}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    for r in sorted(want)]
        return start

    def parse(path):
        vals = {}
        for line in open(path):
            f = line.strip().split(",")
            if len(f) > 3 and f[2] in EVENTS:
                vals[f[2]] = float(f[0]) if f[0] not in ("", "<not counted>") else None
        return vals

    print("== diagnosis: one 1 GiB download per path under `perf stat -p` (the server's "
          "counts include its idle accept loop)")
    print(f"    {'path':<8} {'process':<9} {'syscalls/MiB':>12} {'recv/MiB':>9} {'send/MiB':>9} "
          f"{'KiB/recv':>8} {'epoll/MiB':>9} {'CPU ms/GiB':>10} {'cswitch/MiB':>11}")
    diag = {}
    # The server's perf also sees the server's threads for the other paths' leftovers: none,
    # each run ends its connections before the next starts.
    for tag in ("direct", "proxy", "capture"):
        client("host" if tag == "direct" else "sandbox", [f"down:{tag}"], DIAG_BYTES, 1,
               idle=1.0, perf=attach(tag))
        for role in ("server", "agentbox", "relay", "client"):
            path = f"{diag_dir}/{tag}.{role}"
            if not os.path.exists(path):
                continue
            v = parse(path)
            mib = DIAG_BYTES >> 20
            recv, send = v.get("syscalls:sys_enter_recvfrom"), v.get("syscalls:sys_enter_sendto")
            per = {"syscalls_per_mib": v["raw_syscalls:sys_enter"] / mib,
                   "recv_per_mib": recv / mib, "send_per_mib": send / mib,
                   "kib_per_recv": 1024 / (recv / mib) if recv else None,
                   "epoll_per_mib": v["syscalls:sys_enter_epoll_wait"] / mib,
                   "cpu_ms_per_gib": v["task-clock"] * (1 << 30) / DIAG_BYTES,
                   "cswitch_per_mib": v["context-switches"] / mib}
            diag[f"{tag}.{role}"] = per
            print(f"    {tag:<8} {role:<9} {per['syscalls_per_mib']:12.1f} "
                  f"{per['recv_per_mib']:9.1f} "
                  f"{per['send_per_mib']:9.1f} "
                  + (f"{per['kib_per_recv']:8.1f} " if per["recv_per_mib"] >= 1 else f"{'-':>8} ") +
                  f"{per['epoll_per_mib']:9.1f} {per['cpu_ms_per_gib']:10.0f} "
                  f"{per['cswitch_per_mib']:11.1f}")
    report["diagnosis"] = diag
    json.dump({"config": cfg, "report": report, "runs": runs}, open(cfg["out"], "w"), indent=1)
PY

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

    mkdir -p "$target_dir/bench" "$work/netdir"
    chmod 700 "$work/netdir"
    echo "== launch: $launch_runs rounds after $warmup warm-up rounds, interleaved"
    PYTHONPATH=$repo/bench python3 - "$launch_runs" "$warmup" "$agentbox" "$bwrap" "$work" \
        "$target_dir/bench/launch-net.json" "${run_env[@]:2}" <<'PY'
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
# The socket directory (net-PID) and the token differ from run to run; the rest must not.
net = after(filt, b"--bind", b"/run/agentbox/net")
tok = int(filt[after(filt, b"--ro-bind-data", b"/run/agentbox/token")])
for argv in (filt, filt_dry):
    argv[after(argv, b"--bind", b"/run/agentbox/net")] = os.fsencode(f"{work}/netdir")
filt_dry_fds[tok] = filt_fds[tok]
if (filt, filt_fds) != (filt_dry, filt_dry_fds):
    fail("agentbox run --net filtered execs a different argv than --dry-run prints")
assert plain[-2:] == [b"--", b"true"], plain[-2:]
relay = filt.index(b"__relay")
assert filt[relay - 2:relay] == [b"--", b"/run/agentbox/agentbox"] and filt[-2:] == [b"--", b"true"]
# The filtered sandbox without its relay: bwrap's share of the filtered start.
filt_norelay = filt[:relay - 1] + [b"true"]

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
PY
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
    python3 - "$agentbox" "$work/sched.txt" <<'PY'
import re, statistics, sys

agentbox = sys.argv[1]
ev = []
for line in open(sys.argv[2]):
    m = re.match(r"\s*(.+?)\s+(\d+)\s+\[\d+\]\s+([\d.]+): sched:(\w+): (.*)", line)
    if m:
        comm, pid, t, kind, rest = m.groups()
        ev.append((float(t) * 1e3, kind, int(pid), comm, rest))
runs = {"filtered": [], "plain": []}
for i, (t, kind, pid, comm, rest) in enumerate(ev):
    if kind != "sched_process_exec" or f"filename={agentbox} " not in rest + " ":
        continue
    tree, marks = {pid}, {"start": t}
    for t2, k2, p2, c2, r2 in ev[i + 1:]:
        if p2 not in tree:
            continue
        if k2 == "sched_process_fork":
            tree.add(int(re.search(r"child_pid=(\d+)", r2).group(1)))
            if c2 == "bwrap":
                marks.setdefault("bwrap forks", t2)
        elif k2 == "sched_process_exec":
            marks.setdefault(re.search(r"filename=(\S+)", r2).group(1), t2)
        elif k2 == "sched_process_exit" and c2 == "true":
            marks["true exits"] = t2
        elif k2 == "sched_process_exit" and p2 == pid and "group_dead=true" in r2:
            marks["end"] = t2
            break
    kind = "filtered" if "/run/agentbox/agentbox" in marks else "plain"
    runs[kind].append(marks)
steps = [
    ("agentbox, until it starts bwrap", "start", "/usr/bin/bwrap"),
    ("bwrap, until its namespaced child", "/usr/bin/bwrap", "bwrap forks"),
    ("bwrap's setup, until the command", "bwrap forks", "/usr/bin/true"),
    ("  of which bwrap, until the relay", "bwrap forks", "/run/agentbox/agentbox"),
    ("  of which the relay, until the command", "/run/agentbox/agentbox", "/usr/bin/true"),
    ("the command (true)", "/usr/bin/true", "true exits"),
    ("from its exit until agentbox's", "true exits", "end"),
    ("total", "start", "end"),
]
print(f"    {'step (medians, ms)':<42} {'--net filtered':>14} {'plain':>8} {'added':>8}")
for label, a, b in steps:
    med = {}
    for kind, ms in runs.items():
        xs = [m[b] - m[a] for m in ms if a in m and b in m]
        med[kind] = statistics.median(xs) if xs else None
    f, p = med["filtered"], med["plain"]
    fmt = lambda x: f"{x:8.2f}" if x is not None else f"{'':>8}"
    added = fmt(f - p) if f is not None and p is not None else fmt(None)
    print(f"    {label:<42} {fmt(f):>14} {fmt(p)} {added}")
print(f"    ({len(runs['filtered'])} filtered and {len(runs['plain'])} plain launches found)")
PY
}

# ---- network: throughput, connect latency, memory ------------------------------------------
net_bench() {
    local port real_server_pid diag
    cp "$work/netserver.py" "$work/netclient.py" "$project/"
    timeout 3600 python3 "$project/netserver.py" >"$work/server.out" 2>/dev/null &
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
    PYTHONPATH=$repo/bench python3 "$work/netbench.py" "$agentbox" "$project" "$port" \
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
