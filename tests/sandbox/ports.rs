//! `--port`: a server inside the sandbox (an echo server in python3 that answers after the
//! client's half-close, its reply tagged with the server's name), clients on the host through
//! the published port, with the network off and filtered. Many connections, concurrent ones, a
//! 32 MiB body both ways byte-exact; nothing listens on the host after the run; a taken host
//! port is refused (a free one works); the published port reaches the sandbox's own
//! 127.0.0.1:PORT and nothing else (another port inside, a server on the host's loopback).

use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{World, each_user, wait_for};

/// Serves PORT until `stop` appears in the project (at most 120 s): reads a connection to its
/// end, then answers `TAG:` and what it read. Writes `ready-TAG` when listening and
/// `count-TAG` (connections accepted) when done.
const SERVER: &str = r#"
import os, socket, sys, threading, time
port, tag = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(128)
s.settimeout(0.1)
open("ready-" + tag, "w").write("1")
def serve(c):
    c.settimeout(60)
    data = bytearray()
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        data += b
    c.sendall(tag.encode() + b":" + bytes(data))
    c.close()
n = 0
deadline = time.time() + 120
while time.time() < deadline and not os.path.exists("stop"):
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    n += 1
    threading.Thread(target=serve, args=(c,), daemon=True).start()
open("count-" + tag, "w").write(str(n))
"#;

/// A port free on the host's loopback right now.
fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// N distinct ports free on the host's loopback right now.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// `agentbox run FLAGS -- sh -c SCRIPT`, in the background.
fn start(w: &World, flags: &[String], script: &str) -> Child {
    std::fs::write(w.project.join("srv.py"), SERVER).unwrap();
    w.chown_all();
    let mut args: Vec<&OsStr> = vec![OsStr::new("run")];
    args.extend(flags.iter().map(OsStr::new));
    args.extend(["--", "sh", "-c", script].map(OsStr::new));
    w.cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Tells the servers to stop and waits (bounded) for the run; its status and stderr.
fn finish(w: &World, mut child: Child) -> (i32, String) {
    std::fs::write(w.project.join("stop"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end after stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ready(w: &World, tag: &str) {
    assert!(
        wait_for(
            &w.project.join(format!("ready-{tag}")),
            Duration::from_secs(20)
        )
        .is_some(),
        "the server {tag} inside did not start"
    );
}

/// Sends `body`, shuts the writing half, reads the answer to its end.
fn exchange(port: u16, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(body)?;
    s.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    Ok(reply)
}

fn tagged(tag: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{tag}:").into_bytes();
    v.extend_from_slice(body);
    v
}

/// Bytes no two positions of which are likely to be confused (a 64-bit LCG).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

/// Whether something listens on `port` on the host (IPv4, any address): /proc/net/tcp.
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3
            && f[3] == "0A"
            && f[1]
                .rsplit(':')
                .next()
                .is_some_and(|p| u16::from_str_radix(p, 16) == Ok(port))
    })
}

fn no_ports_dir_left(w: &World) {
    let base = w.home.join(".run/agentbox");
    let left: Vec<String> = std::fs::read_dir(&base)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ports-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        base.display()
    );
}

#[test]
fn published_port_carries_many_connections_large_bodies_and_half_closes() {
    each_user(|w| {
        for net in ["none", "filtered"] {
            eprintln!("--net {net}");
            let _ = std::fs::remove_file(w.project.join("stop"));
            let _ = std::fs::remove_file(w.project.join("ready-a"));
            let hp = free_port();
            let flags = [
                "--net".to_owned(),
                net.to_owned(),
                "--port".to_owned(),
                format!("{hp}:8000"),
            ];
            let child = start(w, &flags, "python3 srv.py 8000 a");
            ready(w, "a");
            assert!(listening(hp), "the host side listens during the run");
            for i in 0..50 {
                let body = format!("sequential {i}");
                assert_eq!(
                    exchange(hp, body.as_bytes()).unwrap(),
                    tagged("a", body.as_bytes()),
                    "sequential connection {i}"
                );
            }
            let threads: Vec<_> = (0..20)
                .map(|i| {
                    std::thread::spawn(move || {
                        let body = pattern(256 << 10, i);
                        let reply = exchange(hp, &body).unwrap();
                        assert!(reply == tagged("a", &body), "concurrent connection {i}");
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            // 32 MiB in, then (after the half-close) 32 MiB back, byte for byte.
            let big = pattern(32 << 20, 99);
            let reply = exchange(hp, &big).unwrap();
            assert_eq!(reply.len(), big.len() + 2, "the whole body came back");
            assert!(reply == tagged("a", &big), "the body came back byte-exact");
            let (code, stderr) = finish(w, child);
            assert_eq!(code, 0, "{stderr}");
            assert!(
                stderr.contains(&format!("--port: 127.0.0.1:{hp} -> 8000 published")),
                "one line says what is published: {stderr}"
            );
            let count = std::fs::read_to_string(w.project.join("count-a")).unwrap();
            assert_eq!(count, "71", "every connection reached the server once");
            // After the run: nothing listens, a client is refused.
            assert!(!listening(hp), "something still listens on {hp}");
            let e = TcpStream::connect(("127.0.0.1", hp)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
            no_ports_dir_left(w);
        }
    });
}

#[test]
fn taken_host_port_is_refused_and_a_free_one_works() {
    each_user(|w| {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let out = w.sh(&["--port", &port.to_string()], "echo ran");
        assert_eq!(out.code(), 125, "{}", out.stderr());
        assert!(!out.stdout().contains("ran"), "the command did not run");
        let err = out.stderr();
        assert!(
            err.contains("already in use") && err.contains("hint:"),
            "{err}"
        );
        no_ports_dir_left(w);
        // The port is still the holder's: a client reaches it, not agentbox.
        taken.set_nonblocking(true).unwrap();
        let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(taken.accept().is_ok());
        // Control: the same run on a free port.
        let free = free_port();
        let out = w.sh(&["--port", &format!("{free}:8000")], "echo ran");
        assert_eq!(out.code(), 0, "{}", out.stderr());
        assert!(out.stdout().contains("ran"));
        assert!(!listening(free));
        // A malformed one is refused the same way.
        let out = w.sh(&["--port", "example.com:3000"], "echo ran");
        assert_eq!(out.code(), 125);
        assert!(
            out.stderr().contains("not an IP address"),
            "{}",
            out.stderr()
        );
    });
}

#[test]
fn published_port_reaches_only_the_sandbox_loopback_port() {
    each_user(|w| {
        for net in ["none", "filtered"] {
            eprintln!("--net {net}");
            for f in ["stop", "ready-b", "count-b"] {
                let _ = std::fs::remove_file(w.project.join(f));
            }
            // A server on the host's loopback the published port must not reach.
            let host_server = TcpListener::bind("127.0.0.1:0").unwrap();
            host_server.set_nonblocking(true).unwrap();
            let host_port = host_server.local_addr().unwrap().port();
            // Published: 8000 inside, where nothing listens; 8001 inside, where `b` listens.
            let [empty, control] = free_ports::<2>();
            let flags = [
                "--net".to_owned(),
                net.to_owned(),
                "--port".to_owned(),
                format!("{empty}:8000"),
                "--port".to_owned(),
                format!("{control}:8001"),
            ];
            let child = start(w, &flags, "python3 srv.py 8001 b");
            ready(w, "b");
            let attempts = [
                format!("GET http://127.0.0.1:{host_port}/ HTTP/1.1\r\nHost: x\r\n\r\n"),
                format!("CONNECT 127.0.0.1:{host_port} HTTP/1.1\r\n\r\n"),
                "CONNECT 127.0.0.1:8001 HTTP/1.1\r\n\r\n".to_owned(),
                "\u{5}\u{1}\u{0}".to_owned(),
            ];
            for a in &attempts {
                let reply = exchange(empty, a.as_bytes()).unwrap_or_default();
                assert!(
                    reply.is_empty(),
                    "{a:?} got {:?}",
                    String::from_utf8_lossy(&reply)
                );
            }
            // Control: the other published port does reach its server.
            assert_eq!(exchange(control, b"hi").unwrap(), tagged("b", b"hi"));
            let (code, stderr) = finish(w, child);
            assert_eq!(code, 0, "{stderr}");
            let count = std::fs::read_to_string(w.project.join("count-b")).unwrap();
            assert_eq!(count, "1", "only the control reached the server inside");
            let e = host_server.accept().unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::WouldBlock,
                "the host's server was reached"
            );
            // Control: the host's server counts a connection that does reach it.
            let _c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            assert!(host_server.accept().is_ok());
            assert!(!listening(empty) && !listening(control));
        }
    });
}
