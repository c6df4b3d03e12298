//! End-to-end tests of the proxy: a real proxy on a UNIX socket in a temp dir, real servers on
//! 127.0.0.1 (never any other address: destinations that must be refused are refused before any
//! dial, and the pure checks for other addresses live in `dial`'s tests), every wait bounded.

mod broker;
mod flows;
mod handoff;
mod robust;

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

use super::{ProxyConfig, ProxyHandle, Summary, Tuning, dial::Resolver, start_with};
use crate::net::rules::NetPolicy;

const TOKEN: &str = "t0ken";
/// No wait in these tests may take longer (a hang is a failure, not a stuck CI run).
const BOUND: Duration = Duration::from_secs(30);
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(BOUND, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {BOUND:?}"),
    }
}

/// How to start a test proxy. DNS is a table (`rebind.test` -> 127.0.0.1, anything else
/// NXDOMAIN) that counts lookups, unless `system_dns`; `echo.test` and `web.test` are `fixed`
/// to 127.0.0.1.
#[derive(Default)]
struct Opts {
    allow: Vec<String>,
    deny: Vec<String>,
    system_dns: bool,
    head_deadline: Option<Duration>,
    max_conns: Option<usize>,
    unwritable_log: bool,
}

fn allow(patterns: &[String]) -> Opts {
    Opts {
        allow: patterns.to_vec(),
        ..Opts::default()
    }
}

struct Proxy {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    log: PathBuf,
    handle: Option<ProxyHandle>,
    lookups: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(opts: Opts) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("proxy.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let lookups = Arc::new(AtomicUsize::new(0));
        let counter = lookups.clone();
        let mut tuning = Tuning {
            resolver: Resolver::Table(Arc::new(move |name: &str| {
                counter.fetch_add(1, Ordering::SeqCst);
                match name {
                    "rebind.test" => Ok(vec![LOOPBACK]),
                    _ => Err(io::Error::new(io::ErrorKind::NotFound, "NXDOMAIN")),
                }
            })),
            ..Tuning::default()
        };
        if opts.system_dns {
            tuning.resolver = Resolver::System;
        }
        tuning.head_deadline = opts.head_deadline.unwrap_or(tuning.head_deadline);
        tuning.max_conns = opts.max_conns.unwrap_or(tuning.max_conns);
        let log = dir.path().join("net.log");
        let file = std::fs::File::create(&log).unwrap();
        let file = match opts.unwritable_log {
            true => std::fs::File::open(&log).unwrap(),
            false => file,
        };
        let cfg = ProxyConfig {
            policy: NetPolicy::new(&opts.allow, &opts.deny).unwrap(),
            token: TOKEN.into(),
            fixed: vec![
                ("echo.test".into(), LOOPBACK),
                ("Web.Test".into(), LOOPBACK),
            ],
            log: Some(file),
            reload: None,
            broker: vec![],
        };
        let handle = start_with(listener, cfg, tuning).unwrap();
        Proxy {
            _dir: dir,
            sock,
            log,
            handle: Some(handle),
            lookups,
        }
    }

    /// A connection that has sent nothing yet.
    async fn raw(&self) -> UnixStream {
        within("connecting", UnixStream::connect(&self.sock))
            .await
            .unwrap()
    }

    /// A connection that has sent the token line (write errors are left for the reads to
    /// show: a proxy that closed at once is something tests check).
    async fn client(&self) -> UnixStream {
        let mut s = self.raw().await;
        let _ = s.write_all(format!("AGENTBOX {TOKEN}\n").as_bytes()).await;
        s
    }

    /// `CONNECT target` -> the stream and the reply head.
    async fn connect(&self, target: &str) -> (UnixStream, String) {
        let mut s = self.client().await;
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        let head = read_head(&mut s).await;
        (s, head)
    }

    /// A SOCKS5 CONNECT to `addr` (ATYP and address bytes) -> the stream and the reply.
    async fn socks(&self, addr: &[u8], port: u16) -> (UnixStream, Vec<u8>) {
        let mut s = self.client().await;
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut method = [0u8; 2];
        within("socks method", s.read_exact(&mut method))
            .await
            .unwrap();
        assert_eq!(method, [5, 0]);
        let req = [&[5, 1, 0][..], addr, &port.to_be_bytes()].concat();
        s.write_all(&req).await.unwrap();
        let mut reply = vec![0u8; 10];
        let n = within("socks reply", read_up_to(&mut s, &mut reply)).await;
        reply.truncate(n);
        (s, reply)
    }

    /// Stops the proxy (bounded) -> its summary and log lines.
    fn stop(mut self) -> (Summary, Vec<serde_json::Value>) {
        let handle = self.handle.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(handle.stop()));
        let summary = rx.recv_timeout(BOUND).expect("stop did not return");
        (summary, self.log_lines())
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The name as SOCKS5 ATYP 3 bytes.
fn socks_name(name: &str) -> Vec<u8> {
    [&[3, name.len() as u8][..], name.as_bytes()].concat()
}

/// Fills `buf` as far as the peer sends before closing -> how much.
async fn read_up_to(s: &mut UnixStream, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Reads up to the end of a reply head (or EOF).
async fn read_head(s: &mut UnixStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match within("reading a reply head", s.read(&mut byte)).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Everything until the proxy closes; a reset counts as a close (a UNIX socket closed with
/// unread data resets its peer).
async fn read_rest(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match within("reading to the end", s.read(&mut buf)).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `msg` through a tunnel to the echo server and checks it comes back.
async fn roundtrip(s: &mut UnixStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, msg);
}

/// An echo server on 127.0.0.1 (half-close aware) -> its port.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// A port on 127.0.0.1 where nothing listens.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Asserts a 403 naming `target` and `reason`, in the header and the body.
fn assert_blocked(reply: &str, target: &str, reason: &str) {
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{reply}");
    assert!(
        reply.contains(&format!("\r\nX-Agentbox-Blocked: {reason}\r\n")),
        "{reply}"
    );
    assert!(
        reply.ends_with(&format!("\r\n\r\nagentbox: blocked {target} ({reason})\n")),
        "{reply}"
    );
}
