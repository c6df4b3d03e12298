"""The ceiling of a proxy on this machine: how fast one large transfer goes over loopback
directly, and through minimal forwarders that do nothing but move bytes, each in a process of
its own (as agentbox's proxy is): one hop with splice(2), one hop with a user-space copy, and
two splice hops in a row (the shape of agentbox's path before the relay handed its connections
over). No policy, no sandbox, no tokio: what is left is the kernel's cost of a hop and the
sharing of the cores, which no proxy design with a hop avoids.

    python3 bench/hop.py [ROUNDS] [MIB]
    python3 bench/hop.py forward PORT    (bench/net.sh's "hop" path: prints "PORT PID", serves)

ROUNDS (default 5) rounds, each one download and one upload of MIB (default 512) MiB per path,
in rotating order; the figure is the median MB/s and its ratio to the median of direct. (Many
parallel streams are left to bench/net.sh: a threaded Python client measures its own locking
there, not the hop.)
"""
import fcntl, multiprocessing as mp, os, socket, statistics, sys, time

FORWARD = sys.argv[1:2] == ["forward"]
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 and not FORWARD else 5
NBYTES = (int(sys.argv[2]) if len(sys.argv) > 2 and not FORWARD else 512) << 20
CHUNK = 1 << 20
TIMEOUT = 60  # seconds per socket operation: nothing here may hang
F_SETPIPE_SZ = 1031


def listener():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    return ls


def server(ls):
    """"D n" sends n bytes, "U n" takes n bytes then answers one byte; a thread per connection."""
    import threading

    def serve(s):
        s.settimeout(TIMEOUT)
        line = b""
        while not line.endswith(b"\n") and len(line) < 64:
            line += s.recv(1)
        word, n = line.split()
        left, data, buf = int(n), memoryview(bytes(CHUNK)), bytearray(CHUNK)
        if word == b"D":
            while left:
                left -= s.send(data[:min(left, CHUNK)])
        elif word == b"U":
            while left:
                k = s.recv_into(buf)
                if not k:
                    break
                left -= k
            s.sendall(b"K")
        s.close()

    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


def splice_pump(src, dst):
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
    while True:
        n = os.splice(src.fileno(), w, CHUNK)
        if not n:
            break
        while n:
            n -= os.splice(r, dst.fileno(), n)
    os.close(r)
    os.close(w)
    dst.shutdown(socket.SHUT_WR)


def copy_pump(src, dst):
    buf = bytearray(256 << 10)
    view = memoryview(buf)
    while True:
        n = src.recv_into(buf)
        if not n:
            break
        dst.sendall(view[:n])
    dst.shutdown(socket.SHUT_WR)


def forwarder(ls, up_port, pump):
    """Accepts, dials upstream, moves bytes both ways (a thread per direction)."""
    import threading

    def serve(c):
        # Blocking sockets (splice needs them; a timeout makes Python's sockets non-blocking):
        # the client's own timeout bounds a stuck forwarder.
        u = socket.create_connection(("127.0.0.1", up_port))
        u.settimeout(None)
        c.settimeout(None)
        t = threading.Thread(target=pump, args=(u, c), daemon=True)
        t.start()
        pump(c, u)
        t.join(TIMEOUT)
        c.close()
        u.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def transfer(port, word, nbytes=NBYTES):
    """One transfer of nbytes -> seconds from the request to the last byte."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(b"%s %d\n" % (word, nbytes))
    t0 = time.monotonic()
    buf = bytearray(CHUNK)
    if word == b"D":
        got = 0
        while True:
            n = s.recv_into(buf)
            if not n:
                break
            got += n
        assert got == nbytes, f"got {got} of {nbytes}"
    else:
        data, left = memoryview(bytes(CHUNK)), nbytes
        while left:
            left -= s.send(data[:min(left, CHUNK)])
        assert s.recv(1) == b"K", "upload not acknowledged"
    s.close()
    return time.monotonic() - t0


def start(target, *args):
    p = mp.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def main():
    srv = listener()
    start(server, srv)
    ports = {"direct": srv.getsockname()[1]}
    for name, pump in (("1 hop, splice", splice_pump), ("1 hop, copy", copy_pump)):
        ls = listener()
        start(forwarder, ls, ports["direct"], pump)
        ports[name] = ls.getsockname()[1]
    second = listener()
    start(forwarder, second, ports["1 hop, splice"], splice_pump)
    ports["2 hops, splice"] = second.getsockname()[1]
    names = list(ports)
    tasks = {
        "down": lambda p: NBYTES / transfer(p, b"D") / 1e6,
        "up": lambda p: NBYTES / transfer(p, b"U") / 1e6,
    }
    results = {}
    transfer(ports["direct"], b"D")  # warm-up
    for r in range(ROUNDS):
        order = names[r % len(names):] + names[:r % len(names)]
        for label, task in tasks.items():
            for name in order:
                results.setdefault((label, name), []).append(task(ports[name]))
    print(f"hop ceiling: {ROUNDS} rounds of {NBYTES >> 20} MiB, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for label in tasks:
        base = statistics.median(results[(label, "direct")])
        for name in names:
            v = statistics.median(results[(label, name)])
            print(f"    {label:4} {name:15} {v:7.0f} MB/s  {v / base:.2f}x")


if __name__ == "__main__" and FORWARD:
    ls = listener()
    print(ls.getsockname()[1], os.getpid(), flush=True)
    forwarder(ls, int(sys.argv[2]), splice_pump)
elif __name__ == "__main__":
    main()
