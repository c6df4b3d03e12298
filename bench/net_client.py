"""The client of bench/net.sh, run on the host and inside `agentbox run --net filtered` (a copy
in the project, the only place the sandbox sees). Runs the tasks it is given ("down:proxy",
"lat:capture", "tunnels:proxy"...) and, inside, the controls that the sandbox filters; prints
one JSON line: results, phases (for the sampler's memory and CPU), checks.

Argument: one JSON object (port, bytes, conns, tasks, tunnels, hold, idle, where, server).
"""
import json, os, resource, socket, subprocess, sys, threading, time

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


def parallel(path, n, streams=100):
    """`streams` downloads at once, n bytes in all: the aggregate MB/s."""
    each, errors = n // streams, []

    def one():
        try:
            buf = bytearray(1 << 18)
            s = dial(path)
            s.sendall(b"D %d\n" % each)
            got = 0
            while got < each:
                k = s.recv_into(buf)
                if not k:
                    raise OSError(f"{path}: a parallel download ended at {got} of {each} bytes")
                got += k
            s.close()
        except Exception as e:  # reported below, after every thread has ended
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 4)
    dt = time.perf_counter() - t0
    if errors or any(t.is_alive() for t in threads):
        raise OSError(f"{path}: parallel downloads failed: {errors[:1]}")
    return each * streams / dt / 1e6


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
ADDR = {"direct": "127.0.0.1", "inside": "127.0.0.1", "hop": "127.0.0.1"}
PORTS = {"direct": PORT, "capture": PORT, "proxy": PORT, "forward": PORT, "hop": cfg.get("hop")}
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
            elif kind == "par":
                results[task] = parallel(path, NBYTES)
            elif kind == "tunnels":
                results[task] = tunnels(cfg["tunnels"], cfg["hold"])
    with Phase("idle-after"):
        time.sleep(cfg["idle"])
finally:
    if server:
        server.kill()
        server.wait(timeout=10)
print(json.dumps({"results": results, "phases": phases, "checks": checks}))
