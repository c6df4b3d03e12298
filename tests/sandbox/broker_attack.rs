//! Attacks on the credential broker from inside the real sandbox that the first tests did not
//! try: a tunnel opened to another allowed name or address of the brokered API's front end,
//! carrying TLS for the brokered host (what a CDN or Google's front ends serve at every
//! address). The positive control runs the same attack with `--no-broker`.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Out, World, each_user};

const REAL: &str = "sk-real-broker-attack-51c2";

/// A loopback "front end": records every byte each connection sends (for up to 3 s), answers
/// nothing. Bounded in connections and time.
fn front(max: usize) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut served = 0;
        while served < max && Instant::now() < deadline {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            served += 1;
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            record.lock().unwrap().push(got);
        }
    });
    (port, seen)
}

/// Inside: CONNECT to front.allowed.test:PORT through the proxy port, then a TLS hello naming
/// api.brokered.test (the brokered upstream) in that tunnel. Prints the CONNECT status.
fn hello_through_tunnel(port: u16) -> String {
    format!(
        "python3 -c '
import socket, ssl
s = socket.create_connection((\"127.0.0.1\", 3128), timeout=5)
s.sendall(b\"CONNECT front.allowed.test:{port} HTTP/1.1\\r\\nHost: front.allowed.test:{port}\\r\\n\\r\\n\")
print(\"connect:\", s.recv(200).split(b\" \")[1].decode())
c = ssl.create_default_context()
c.check_hostname = False
c.verify_mode = ssl.CERT_NONE
try:
    c.wrap_socket(s, server_hostname=\"api.brokered.test\")
except Exception as e:
    print(\"tls:\", type(e).__name__)
'"
    )
}

fn run(w: &World, flags: &[&str], base: &str, script: &str) -> Out {
    let mut args: Vec<&str> = vec!["run", "--profile", "claude"];
    args.extend_from_slice(flags);
    args.extend(["--", "sh", "-c", script]);
    let mut c = w.cmd(&args.iter().map(std::ffi::OsStr::new).collect::<Vec<_>>());
    c.env("ANTHROPIC_API_KEY", REAL);
    c.env("ANTHROPIC_BASE_URL", base);
    Out(c.output().unwrap())
}

#[test]
fn a_tunnel_to_the_front_ends_address_cannot_carry_tls_for_the_brokered_name() {
    each_user(|w| {
        let (port, seen) = front(4);
        // The brokered API and another allowed name, both at the one front end.
        let base = format!("https://api.brokered.test:{port}");
        let allow = format!("front.allowed.test:{port}");
        let log = w.home.join("net.log");
        let log_arg = log.to_str().unwrap();
        let script = hello_through_tunnel(port);
        let flags = [
            "--allow-domain",
            &allow,
            "--test-resolve",
            "front.allowed.test=127.0.0.1",
            "--test-resolve",
            "api.brokered.test=127.0.0.1",
            "--net-log",
            log_arg,
        ];

        // Positive control: the broker off, the hello reaches the front end.
        let mut off = flags.to_vec();
        off.push("--no-broker");
        let out = run(w, &off, &base, &script);
        assert!(out.ok().contains("connect: 200"), "{}", out.stdout());
        let wait = Instant::now();
        while seen.lock().unwrap().is_empty() && wait.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let first = seen.lock().unwrap().first().cloned().unwrap_or_default();
        assert!(
            first.starts_with(&[0x16]) && first.windows(17).any(|w| w == b"api.brokered.test"),
            "the control's hello did not arrive: {first:?}"
        );

        // The broker on: the tunnel opens (the address is allowed), the hello is cut there.
        let _ = std::fs::remove_file(&log);
        let out = run(w, &flags, &base, &script);
        let stdout = out.ok();
        assert!(stdout.contains("connect: 200"), "{stdout}");
        assert!(stdout.contains("tls:"), "{stdout}");
        std::thread::sleep(Duration::from_millis(300));
        let seen = seen.lock().unwrap();
        assert!(
            seen[1..].iter().all(|b| b.is_empty()),
            "bytes reached the front end: {:?}",
            seen[1..].iter().map(Vec::len).collect::<Vec<_>>()
        );
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            log.contains("a TLS hello naming api.brokered.test: ANTHROPIC_API_KEY is brokered"),
            "{log}"
        );
        assert!(!log.contains(REAL), "{log}");
    });
}
