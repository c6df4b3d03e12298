"""The network part of bench/net.sh: throughput, connect latency, memory and, with perf, the
per-process diagnosis (method: BENCHMARKS.md, "Network"). Runs net_client.py on the host and in
the sandbox round by round while a sampler reads /proc; prints the tables and RESULT lines,
writes the raw figures.

Arguments: AGENTBOX PROJECT PORT SERVER_PID ROUNDS MIB CONNS TUNNELS DIAG WORK OUT
[NAME=VALUE...]: PROJECT holds the copies of net_client.py and net_server.py, PORT and
SERVER_PID are the host server's, DIAG 0 skips the diagnosis, NAME=VALUE is the environment of
every client run.
"""
import atexit, json, os, signal, struct, subprocess, sys, threading, time

from benchlib import q

keys = ["agentbox", "project", "port", "server_pid", "rounds", "mib", "conns", "tunnels", "diag",
        "work", "out"]
cfg = dict(zip(keys, sys.argv[1:]))
for k in ("port", "server_pid", "rounds", "mib", "conns", "tunnels"):
    cfg[k] = int(cfg[k])
cfg["diag"] = cfg["diag"] != "0"
env = dict(kv.split("=", 1) for kv in sys.argv[1 + len(keys):])
AGENTBOX, PROJECT, PORT = cfg["agentbox"], cfg["project"], cfg["port"]
SERVER_PID = cfg["server_pid"]
CLIENT, SERVER = f"{PROJECT}/net_client.py", f"{PROJECT}/net_server.py"
HZ = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT = 600  # seconds for one client run, sandboxed or not
SAMPLE_EVERY = 0.02
SANDBOX = [AGENTBOX, "run", "--net", "filtered", "--allow-domain", f"bulk.test:{PORT}",
           "--test-resolve", "bulk.test=127.0.0.1", "--"]


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


def resident_frames(pid):
    """The physical frames of a process's resident pages (root only: others read zeros), so
    pages two processes share (the agentbox binary's text, libc) count once."""
    frames = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pm:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if line.rstrip().endswith("[vsyscall]"):
                continue
            pm.seek(lo // 4096 * 8)
            raw = pm.read((hi - lo) // 4096 * 8)
            for (e,) in struct.iter_unpack("<Q", raw):
                if e >> 63 and e & ((1 << 55) - 1):
                    frames.add(e & ((1 << 55) - 1))
    return frames


def together_kib(pids):
    """Resident memory of several processes counted once (None where frames are hidden)."""
    try:
        frames = set().union(*(resident_frames(p) for p in pids))
    except OSError:
        return None
    return len(frames) * 4 if frames else None


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
            # Every tenth sample: the proxy and the relay together, their shared pages once
            # (reading the page maps takes a few ms).
            if len(self.samples) % 10 == 0 and "agentbox" in snap and "relay" in snap:
                both = together_kib([self.roles["agentbox"], self.roles["relay"]])
                if both:
                    snap["together"] = (both, None, 0.0)
            self.samples.append((now, snap))
            self.done.wait(SAMPLE_EVERY)

    def phase(self, t0, t1):
        """role -> (max VmRSS KiB, CPU seconds) over [t0, t1]."""
        out = {}
        inside = [s for t, s in self.samples if t0 <= t <= t1]
        before = [s for t, s in self.samples if t <= t0][-1:] or self.samples[:1]
        after = [s for t, s in self.samples if t >= t1][:1] or self.samples[-1:]
        for role in [*self.roles, "together"]:
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
            "tunnels": tunnels, "hold": 1.0, "idle": idle, "server": SERVER, "hop": HOP_PORT}
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
                 "curl:capture", "curl:forward", "par:proxy", "par:capture"]
HOST_TASKS = ["down:direct", "up:direct", "lat:direct", "curl:direct", "par:direct", "down:hop",
              "up:hop", "par:hop"]
# The "hop" path: the same client and server on the host through a minimal splice forwarder
# in a process of its own (bench/hop.py), the ceiling of any proxy with one hop here.
HOP = subprocess.Popen([sys.executable, "-B", os.path.join(os.path.dirname(__file__), "hop.py"),
                        "forward", str(PORT)], stdout=subprocess.PIPE, text=True)
HOP_PORT = int(HOP.stdout.readline().split()[0])
atexit.register(HOP.kill)


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
           if t.split(":")[0] in ("down", "up", "curl", "par")}
    print(f"  round {rnd + 1}: MB/s " + " ".join(f"{t}={v:.0f}" for t, v in sorted(thr.items())),
          flush=True)

# -- throughput
def series(task):
    return [r[w]["results"][task] for r in runs for w in r if task in r[w]["results"]]

report = {"throughput": {}, "latency": {}, "rss": {}, "cpu_per_gib": {}}
print(f"  throughput, MB/s (10^6 bytes/s), {ROUNDS} transfers of {cfg['mib']} MiB each; "
      "ratio = median / median of the same client direct on the host")
print(f"    {'client:path':<16} {'min':>7} {'median':>7} {'max':>7} {'ratio':>6} {'per-round':>9}")
for kind in ("down", "up", "curl", "par"):
    base = series(f"{kind}:direct")
    for path in ("direct", "hop", "proxy", "capture", "forward", "inside"):
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
    "bulk transfers (proxy, capture)": lambda n: n.split(":")[0] in ("down", "up", "curl", "par")
    and n.split(":")[1] != "inside",
    f"{TUNNELS} tunnels open": lambda n: n == "tunnels-open",
    "idle after": lambda n: n == "idle-after",
}
print("  memory, VmRSS MiB (max over samples every 20 ms, over all rounds; sum = the two RSS added;")
print("  together = their resident pages counted once, from /proc/PID/pagemap every 200 ms, as root)")
print(f"    {'phase':<34} {'agentbox run':>13} {'relay':>8} {'sum':>8} {'together':>9}")
mib = lambda k: f"{k / 1024:.2f}" if k else "-"
for label, pred in phases.items():
    a, rl, both = peak("agentbox", pred), peak("relay", pred), peak("together", pred)
    report["rss"][label] = {"agentbox": a, "relay": rl, "together": both}
    print(f"    {label:<34} {mib(a):>13} {mib(rl):>8} {mib(a + rl):>8} {mib(both):>9}")
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
print("RESULT the ceiling of one proxy hop here (a minimal splice forwarder, bench/hop.py): "
      + ", ".join(f"{k} {t[k + ':hop']['ratio']:.2f}x" for k in ("down", "up", "par"))
      + " of direct; agentbox's proxy path at "
      + ", ".join(f"{k} {t[k + ':proxy']['median'] / t[k + ':hop']['median']:.2f}x"
                  for k in ("down", "up", "par"))
      + " of that ceiling")
print(f"RESULT added connect latency: proxy {report['latency']['proxy']['added_median']:+.3f} ms "
      f"median ({report['latency']['proxy']['added_p90']:+.3f} ms p90), capture "
      f"{report['latency']['capture']['added_median']:+.3f} ms median "
      f"({report['latency']['capture']['added_p90']:+.3f} ms p90); no target")
print(f"RESULT proxy RSS (the whole supervising agentbox process): peak {peak_rss / 1024:.2f} MiB")
tun = report["rss"][f"{TUNNELS} tunnels open"]
pair = tun["agentbox"] + tun["relay"]
both = tun["together"]
print(f"RESULT proxy and relay with {TUNNELS} tunnels open: RSS added {pair / 1024:.2f} MiB "
      f"({'MET' if pair <= 10 * 1024 else 'MISSED'}), together "
      + (f"{both / 1024:.2f} MiB ({'MET' if both <= 10 * 1024 else 'MISSED'})" if both else "not measured (needs root)")
      + "; target <= 10 MiB")
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
