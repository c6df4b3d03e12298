"""The loopback server of bench/net.sh: on the host (for every path but one) and inside the
sandbox (the "inside" path, started by net_client.py). Listens on 127.0.0.1 at a free port and
prints "PORT PID" once it does.
"""
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
