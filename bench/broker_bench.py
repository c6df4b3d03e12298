"""The credential broker's benchmark (bench/broker.sh): one program in three roles.

  server PORTFILE        a loopback HTTP/1.1 upstream with keep-alive: /small answers 64
                         bytes, /bulk?mib=N streams N MiB (chunked, 256 KiB chunks)
  client URL N MIB       N sequential requests for URL/small on one kept-alive connection
                         (the latency of each, in ms), then one URL/bulk?mib=MIB (MiB/s);
                         prints one JSON line
  report DIRECT BROKER   the comparison table from two client outputs

Standard library only; loopback only; every loop bounded.
"""
import http.client, json, socket, statistics, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 256 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        # Headers and body are separate writes: with Nagle, each answer would wait for the
        # client's delayed ACK (40 ms) and the benchmark would measure that.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        if self.path.startswith("/small"):
            body = b"x" * 64
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        mib = int(self.path.split("mib=", 1)[1]) if "mib=" in self.path else 1
        self.send_response(200)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        block = b"y" * CHUNK
        for _ in range(mib * 1024 * 1024 // CHUNK):
            self.wfile.write(b"%x\r\n" % CHUNK + block + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


def server(portfile):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.replace(portfile + ".tmp", portfile)
    srv.serve_forever()


def client(url, n, mib):
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"x-api-key": "sk-phantom-or-anything"}
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", u.path + "/small", headers=headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    conn.request("GET", u.path + "/bulk?mib=%d" % mib, headers=headers)
    r = conn.getresponse()
    got = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        got += len(b)
    secs = time.perf_counter() - t
    assert got == mib * 1024 * 1024, got
    print(json.dumps({"latency_ms": lat, "mib_s": mib / secs}))


def report(direct, broker):
    d, b = json.load(open(direct)), json.load(open(broker))
    def q(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, int(p * len(v)))]
    rows = []
    for name, p in (("median", 0.5), ("p90", 0.9), ("p99", 0.99)):
        x, y = q(d["latency_ms"], p), q(b["latency_ms"], p)
        rows.append((f"request latency {name} (ms)", x, y, y / x, y - x))
    print("%-32s %10s %10s %8s %10s" % ("", "direct", "broker", "ratio", "added"))
    for name, x, y, r, a in rows:
        print("%-32s %10.3f %10.3f %7.2fx %9.3fms" % (name, x, y, r, a))
    x, y = d["mib_s"], b["mib_s"]
    print("%-32s %10.0f %10.0f %7.2fx" % ("throughput (MiB/s)", x, y, y / x))
    print("RESULT added_median_ms=%.3f latency_ratio=%.2f throughput_ratio=%.2f"
          % (rows[0][4], rows[0][3], y / x))


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "server":
        server(sys.argv[2])
    elif role == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        report(sys.argv[2], sys.argv[3])
