//! Bulk transfers through `--net filtered`: the tunnels' copy moves to splice(2) once a
//! direction is busy (src/net/proxy/tunnel.rs), in the relay inside and the proxy on the host.
//! These check that what arrives is exactly what was sent, both ways, on the CONNECT and the
//! captured paths. Loopback only; bounded in size, connections and time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::harness::each_user;

/// A loopback HTTP server that answers each request with its own body (read by
/// Content-Length): the upload comes back as the download. Bounded in connections and time.
fn echo_server(max: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut served = 0;
        while served < max && Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            served += 1;
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let mut len = 0usize;
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut s = reader.into_inner();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(&body);
        }
    });
    port
}

#[test]
fn bulk_transfers_arrive_byte_exact_both_ways() {
    each_user(|w| {
        let port = echo_server(4);
        let url = format!("http://bulk.test:{port}/");
        // 24 MiB of random bytes up, the same back down; `cmp` compares them. `-p`: a CONNECT
        // tunnel through the proxy port; `--noproxy '*'`: the captured path.
        let script = format!(
            "head -c 25165824 /dev/urandom >/tmp/up || exit 1; \
             for how in -p \"--noproxy *\"; do \
               rm -f /tmp/down; \
               curl -s -m 60 -H 'Expect:' $how --data-binary @/tmp/up -o /tmp/down {url} \
                 && cmp -s /tmp/up /tmp/down && echo same || echo differs; \
             done"
        );
        let allow = format!("bulk.test:{port}");
        let out = w.sh(
            &[
                "--allow-domain",
                &allow,
                "--test-resolve",
                "bulk.test=127.0.0.1",
            ],
            &script,
        );
        assert_eq!(out.ok(), "same\nsame\n", "stderr: {}", out.stderr());
    });
}
