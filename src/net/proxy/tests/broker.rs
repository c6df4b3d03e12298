//! The credential broker (`net::broker`) end to end on loopback: a real proxy (`proxy::start`) on a UNIX socket, spoken
//! to as the relay does (token line, mark, then HTTP), and a scripted upstream that records
//! what reached it. Every wait is bounded.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Notify;

use crate::net::broker::{Credential, MARK, Route, routes};
use crate::net::proxy::{self, ProxyConfig};
use crate::net::rules::NetPolicy;

const TOKEN: &str = "0123456789abcdef";
const REAL: &str = "sk-real-key-0042";

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn cred(var: &'static str, header: &'static str, bearer: bool, base: &'static str) -> Credential {
    Credential {
        var: var.into(),
        header: header.into(),
        bearer,
        base_url_var: base.into(),
        upstream: "https://api.example.com".into(),
    }
}

/// What the upstream saw: one entry per request (head, decoded body), and connections made.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, Vec<u8>)>,
    conns: usize,
}

/// A scripted upstream on loopback. By path: `/sse` streams two events with a pause the test
/// ends; `/slow` answers after 1.5 s; `/cut` sends half a body and closes; anything else
/// answers 200 with a short body, keeping the connection.
struct Origin {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    gate: Arc<Notify>,
}

impl Origin {
    async fn start() -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let gate = Arc::new(Notify::new());
        let (s, g) = (seen.clone(), gate.clone());
        tokio::spawn(async move {
            loop {
                let (c, _) = l.accept().await.unwrap();
                s.lock().unwrap().conns += 1;
                tokio::spawn(upstream_conn(c, s.clone(), g.clone()));
            }
        });
        Origin { port, seen, gate }
    }

    fn route(&self, creds: &[Credential]) -> Vec<Route> {
        let url = format!("http://127.0.0.1:{}/base", self.port);
        let mut n = 0;
        routes(
            creds,
            |v| match v.ends_with("_BASE_URL") {
                true => Some(url.clone().into()),
                false => Some(REAL.into()),
            },
            || {
                n += 1;
                Ok(format!("phantom-{n}"))
            },
        )
        .unwrap()
    }

    fn heads(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| r.0.clone())
            .collect()
    }
}

async fn read_head(c: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..i + 4].to_vec()).unwrap();
            buf.drain(..i + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn fill(c: &mut TcpStream, buf: &mut Vec<u8>, want: usize) {
    while buf.len() < want {
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "upstream: body cut short");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A chunked body from `buf` (reading more from `c` as needed), decoded.
async fn read_chunked(c: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            let want = buf.len() + 1;
            fill(c, buf, want).await;
        };
        let size_text = String::from_utf8(buf[..line_end].to_vec()).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        buf.drain(..line_end + 2);
        if size == 0 {
            fill(c, buf, 2).await; // the blank line after the last chunk (no trailers sent)
            buf.drain(..2);
            return body;
        }
        fill(c, buf, size + 2).await;
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

fn header<'h>(head: &'h str, name: &str) -> Vec<&'h str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

async fn upstream_conn(mut c: TcpStream, seen: Arc<Mutex<Seen>>, gate: Arc<Notify>) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut c, &mut buf).await {
        let body = if header(&head, "transfer-encoding")
            .iter()
            .any(|v| v.contains("chunked"))
        {
            read_chunked(&mut c, &mut buf).await
        } else {
            let n: usize = header(&head, "content-length")
                .first()
                .map_or(0, |v| v.parse().unwrap());
            fill(&mut c, &mut buf, n).await;
            buf.drain(..n).collect()
        };
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        seen.lock().unwrap().requests.push((head, body.clone()));
        let w = &mut c;
        if path.ends_with("/sse") {
            let start = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                          transfer-encoding: chunked\r\n\r\n";
            w.write_all(start).await.unwrap();
            w.write_all(b"d\r\ndata: first\n\n\r\n").await.unwrap();
            within("the test's go-ahead", gate.notified()).await;
            w.write_all(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
                .await
                .unwrap();
        } else if path.ends_with("/slow") {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
                .await
                .unwrap();
        } else if path.ends_with("/cut") {
            w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf")
                .await
                .unwrap();
            return;
        } else {
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-upstream: yes\r\n\r\n",
                body.len()
            );
            w.write_all(reply.as_bytes()).await.unwrap();
            w.write_all(&body).await.unwrap();
        }
    }
}

/// A proxy with the broker for `routes`, allowing `allow` for direct requests.
struct Proxy {
    _dir: tempfile::TempDir,
    sock: std::path::PathBuf,
    log: std::path::PathBuf,
    handle: Option<proxy::ProxyHandle>,
}

impl Proxy {
    fn start(routes: Vec<Route>, allow: &[&str]) -> Proxy {
        Proxy::start_fixed(routes, allow, vec![])
    }

    /// With names resolved from `fixed` (trusted, so they may be loopback).
    fn start_fixed(routes: Vec<Route>, allow: &[&str], fixed: Vec<(String, IpAddr)>) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("proxy.sock");
        let log = dir.path().join("net.log");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        let cfg = ProxyConfig {
            policy: NetPolicy::new(&allow, &[]).unwrap(),
            token: TOKEN.into(),
            fixed,
            log: Some(std::fs::File::create(&log).unwrap()),
            reload: None,
            broker: routes,
        };
        let handle = proxy::start(listener, cfg).unwrap();
        Proxy {
            _dir: dir,
            sock,
            log,
            handle: Some(handle),
        }
    }

    /// A connection as the relay's broker port makes it.
    async fn broker(&self) -> UnixStream {
        let mut s = within("connecting", UnixStream::connect(&self.sock))
            .await
            .unwrap();
        s.write_all(format!("AGENTBOX {TOKEN}\n").as_bytes())
            .await
            .unwrap();
        s.write_all(&[MARK]).await.unwrap();
        s
    }

    async fn direct(&self, request: &str) -> String {
        let mut s = within("connecting", UnixStream::connect(&self.sock))
            .await
            .unwrap();
        s.write_all(format!("AGENTBOX {TOKEN}\n{request}").as_bytes())
            .await
            .unwrap();
        // The reply's head and whatever came with it (the tunnel may stay open).
        let mut out = Vec::new();
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = within("direct reply", s.read(&mut chunk)).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut rest = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut rest)).await
        {
            out.extend_from_slice(&rest[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn log(mut self) -> String {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// Reads one response (content-length or chunked) off `s`: (head, body).
async fn response(s: &mut UnixStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let head = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..i + 4].to_vec()).unwrap();
            buf.drain(..i + 4);
            break head;
        }
        let mut chunk = [0u8; 4096];
        let n = within("response head", s.read(&mut chunk)).await.unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let n: usize = header(&head, "content-length")
        .first()
        .map_or(0, |v| v.parse().unwrap());
    while buf.len() < n {
        let mut chunk = [0u8; 4096];
        let k = within("response body", s.read(&mut chunk)).await.unwrap();
        assert!(k > 0);
        buf.extend_from_slice(&chunk[..k]);
    }
    (head, buf)
}

fn anthropic() -> Vec<Credential> {
    vec![cred(
        "ANTHROPIC_API_KEY",
        "x-api-key",
        false,
        "ANTHROPIC_BASE_URL",
    )]
}

#[tokio::test]
async fn every_credential_header_is_replaced_by_the_real_key() {
    let up = Origin::start().await;
    let p = Proxy::start(up.route(&anthropic()), &[]);
    let mut s = p.broker().await;
    // Case variants, duplicates, both kinds at once, a cookie and a key in the query.
    let req = "POST /anthropic/v1/messages?key=sk-q&beta=true&%6Bey=sk-q2 HTTP/1.1\r\n\
               Host: 127.0.0.3:3129\r\n\
               x-api-key: sk-attacker\r\n\
               X-API-KEY: sk-attacker-2\r\n\
               X-Api-Key: phantom-1\r\n\
               Authorization: Bearer sk-attacker-3\r\n\
               authorization: Basic c2stYXR0YWNrZXI=\r\n\
               x-goog-api-key: sk-attacker-4\r\n\
               Api-Key: sk-attacker-5\r\n\
               Cookie: session=sk-attacker-6\r\n\
               Proxy-Authorization: Basic eDp5\r\n\
               Connection: keep-alive, x-hop\r\n\
               x-hop: dropped\r\n\
               anthropic-version: 2023-06-01\r\n\
               content-length: 5\r\n\r\nhello";
    s.write_all(req.as_bytes()).await.unwrap();
    let (head, body) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"hello");
    let heads = up.heads();
    let h = &heads[0];
    assert!(
        h.starts_with("POST /base/v1/messages?beta=true HTTP/1.1\r\n"),
        "{h}"
    );
    assert_eq!(header(h, "x-api-key"), [REAL], "{h}");
    for gone in [
        "authorization",
        "x-goog-api-key",
        "api-key",
        "cookie",
        "proxy-authorization",
        "x-hop",
    ] {
        assert!(header(h, gone).is_empty(), "{gone} reached upstream: {h}");
    }
    assert!(!h.contains("sk-attacker") && !h.contains("phantom"), "{h}");
    assert_eq!(header(h, "host"), [format!("127.0.0.1:{}", up.port)]);
    assert_eq!(header(h, "anthropic-version"), ["2023-06-01"]);
    let log = p.log();
    assert!(
        log.contains("credential broker (ANTHROPIC_API_KEY): /base/v1/messages -> 200"),
        "{log}"
    );
    // Never a key, a header or a body in the log.
    for secret in [REAL, "sk-attacker", "hello", "anthropic-version"] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}

#[tokio::test]
async fn bearer_and_shared_routes() {
    let up = Origin::start().await;
    let creds = vec![
        cred(
            "ANTHROPIC_API_KEY",
            "x-api-key",
            false,
            "ANTHROPIC_BASE_URL",
        ),
        cred(
            "ANTHROPIC_AUTH_TOKEN",
            "authorization",
            true,
            "ANTHROPIC_BASE_URL",
        ),
        cred("OPENAI_API_KEY", "authorization", true, "OPENAI_BASE_URL"),
    ];
    let routes = up.route(&creds);
    assert_eq!(routes.len(), 2, "keys of one base URL share a route");
    let p = Proxy::start(routes, &[]);
    let mut s = p.broker().await;
    for path in ["/anthropic/v1/messages", "/openai/responses"] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-attacker\r\n\
             x-api-key: sk-attacker\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, _) = response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let heads = up.heads();
    let bearer = format!("Bearer {REAL}");
    assert_eq!(header(&heads[0], "x-api-key"), [REAL]);
    assert_eq!(header(&heads[0], "authorization"), [bearer.as_str()]);
    assert_eq!(header(&heads[1], "authorization"), [bearer.as_str()]);
    assert!(header(&heads[1], "x-api-key").is_empty(), "{}", heads[1]);
    // Unknown routes go nowhere.
    s.write_all(b"GET /other/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    s.write_all(b"GET /anthropicx/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert_eq!(up.heads().len(), 2);
}

#[tokio::test]
async fn chunked_requests_keep_alive_and_one_upstream_connection() {
    let up = Origin::start().await;
    let p = Proxy::start(up.route(&anthropic()), &[]);
    let mut s = p.broker().await;
    let req = "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n\
               Transfer-Encoding: chunked\r\n\r\n\
               5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    for _ in 0..3 {
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"hello world");
    }
    let seen = up.seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 3);
    assert!(seen.requests.iter().all(|r| r.1 == b"hello world"));
    assert_eq!(seen.conns, 1, "the upstream connection is kept");
}

#[tokio::test]
async fn server_sent_events_pass_unbuffered() {
    let up = Origin::start().await;
    let p = Proxy::start(up.route(&anthropic()), &[]);
    let mut s = p.broker().await;
    s.write_all(b"GET /anthropic/sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The first event arrives while the upstream still holds the second back.
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("data: first") {
        let mut chunk = [0u8; 4096];
        let n = within("the first event", s.read(&mut chunk)).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(!text.contains("second"));
    up.gate.notify_one();
    while !String::from_utf8_lossy(&got).contains("data: second") {
        let mut chunk = [0u8; 4096];
        let n = within("the second event", s.read(&mut chunk))
            .await
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn upstream_errors_and_a_slow_upstream() {
    let up = Origin::start().await;
    let p = Proxy::start(up.route(&anthropic()), &[]);
    // Slow: answered when it answers.
    let mut s = p.broker().await;
    let t = Instant::now();
    s.write_all(b"GET /anthropic/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut s).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && body == b"slow",
        "{head}"
    );
    assert!(t.elapsed() >= Duration::from_millis(1400));
    // Cut mid-body: the agent's connection ends too, short of the promised length.
    let mut s = p.broker().await;
    s.write_all(b"GET /anthropic/cut HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    let _ = within("a cut response", s.read_to_end(&mut all)).await;
    let all = String::from_utf8_lossy(&all);
    assert!(
        all.contains("content-length: 100") && all.ends_with("half"),
        "{all}"
    );
    // Nothing listening upstream: 502, said in words.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let routes = routes(
        &anthropic(),
        |v| match v {
            "ANTHROPIC_BASE_URL" => Some(format!("http://127.0.0.1:{dead}").into()),
            _ => Some(REAL.into()),
        },
        || Ok("phantom".into()),
    )
    .unwrap();
    let p2 = Proxy::start(routes, &[]);
    let mut s = p2.broker().await;
    s.write_all(b"GET /anthropic/v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("could not connect"),
        "{body:?}"
    );
    let log = p2.log();
    assert!(log.contains("could not connect"), "{log}");
}

#[tokio::test]
async fn every_other_way_to_a_brokered_host_is_refused() {
    let up = Origin::start().await;
    let target = format!("127.0.0.1:{}", up.port);
    // The positive control: without the broker, the same allowlist lets the key through.
    let open = Proxy::start(vec![], &[&target]);
    let r = open
        .direct(&format!(
            "GET http://{target}/x HTTP/1.1\r\nx-api-key: sk-attacker\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(up.heads().iter().any(|h| h.contains("sk-attacker")));

    let p = Proxy::start(up.route(&anthropic()), &[&target]);
    let before = up.heads().len();
    for request in [
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        format!("GET http://{target}/x HTTP/1.1\r\nx-api-key: sk-attacker\r\n\r\n"),
    ] {
        let r = p.direct(&request).await;
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        assert!(r.contains("ANTHROPIC_API_KEY is brokered"), "{r}");
    }
    // SOCKS5 by address.
    let mut s = UnixStream::connect(&p.sock).await.unwrap();
    s.write_all(format!("AGENTBOX {TOKEN}\n").as_bytes())
        .await
        .unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    within("socks", s.read_exact(&mut m)).await.unwrap();
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&up.port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    within("socks reply", s.read_exact(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply[1], 2, "SOCKS: not allowed");
    assert_eq!(up.heads().len(), before, "nothing reached the upstream");
    let log = p.log();
    assert_eq!(log.matches("is brokered").count(), 3, "{log}");
}

#[tokio::test]
async fn credential_look_alikes_and_echoing_methods_never_go_upstream() {
    let up = Origin::start().await;
    let creds = vec![
        cred(
            "ANTHROPIC_API_KEY",
            "x-api-key",
            false,
            "ANTHROPIC_BASE_URL",
        ),
        cred("GITLAB_TOKEN", "private-token", false, "GITLAB_BASE_URL"),
    ];
    let p = Proxy::start(up.route(&creds), &[]);
    let mut s = p.broker().await;
    // Servers that name headers CGI-style (WSGI, Rack, many gateways) read `x_api_key` as
    // `x-api-key`; Google's APIs take an OAuth token in `access_token` (an attacker's is the
    // attacker's account); `;` separates parameters to some parsers.
    let req = "GET /anthropic/v1/models?access_token=sk-attacker-1&ACCESS-TOKEN=sk-attacker-2\
               &x;key=sk-attacker-3&oauth_token=sk-attacker-4&%61pi_key=sk-attacker-5&v=1 HTTP/1.1\r\n\
               Host: x\r\n\
               x_api_key: sk-attacker-6\r\n\
               X_API_KEY: sk-attacker-7\r\n\
               API_KEY: sk-attacker-8\r\n\
               apikey: sk-attacker-9\r\n\
               x-goog-api_key: sk-attacker-10\r\n\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let (head, _) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A route's own header, under its query parameter's name.
    s.write_all(
        b"GET /gitlab/api/v4/user?private_token=sk-attacker-11&Private-Token=sk-attacker-12 \
          HTTP/1.1\r\nHost: x\r\nprivate_token: sk-attacker-13\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let heads = up.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /base/v1/models?v=1 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[1].starts_with("GET /base/api/v4/user HTTP/1.1\r\n"),
        "{}",
        heads[1]
    );
    assert_eq!(header(&heads[0], "x-api-key"), [REAL]);
    assert_eq!(header(&heads[1], "private-token"), [REAL]);
    for h in &heads {
        assert!(!h.contains("sk-attacker"), "{h}");
    }
    // TRACE has the server echo the request it got, the real key with it; CONNECT asks
    // for a tunnel. Neither is an API call: refused, nothing sent.
    for method in ["TRACE", "CONNECT"] {
        let mut s = p.broker().await;
        s.write_all(format!("{method} /anthropic/v1 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 405"), "{method}: {head}");
        assert!(String::from_utf8_lossy(&body).contains(method), "{body:?}");
    }
    assert_eq!(up.heads().len(), 2, "nothing more reached the upstream");
}

/// A TLS ClientHello naming `name`, as a real client sends it.
fn client_hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[tokio::test]
async fn a_tunnel_to_another_name_cannot_carry_tls_for_a_brokered_host() {
    // One front end serving two names (as a CDN's or Google's does): the brokered API and
    // another host the policy allows.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            let g = g.clone();
            tokio::spawn(async move {
                let i = {
                    let mut g = g.lock().unwrap();
                    g.push(Vec::new());
                    g.len() - 1
                };
                let mut chunk = [0u8; 4096];
                while let Ok(n) = c.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    g.lock().unwrap()[i].extend_from_slice(&chunk[..n]);
                }
            });
        }
    });
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let fixed = vec![
        ("api.brokered.test".to_owned(), lo),
        ("front.allowed.test".to_owned(), lo),
    ];
    let url = format!("https://api.brokered.test:{port}");
    let routes = routes(
        &anthropic(),
        |v| match v {
            "ANTHROPIC_BASE_URL" => Some(url.clone().into()),
            _ => Some(REAL.into()),
        },
        || Ok("phantom".into()),
    )
    .unwrap();
    let allowed = format!("front.allowed.test:{port}");
    let p = Proxy::start_fixed(routes, &[&allowed], fixed);
    let connect =
        format!("AGENTBOX {TOKEN}\nCONNECT {allowed} HTTP/1.1\r\nHost: {allowed}\r\n\r\n");
    // The hello after the tunnel opens (in two pieces), or sent along with the CONNECT.
    let attempt = |name: &'static str, early: bool| {
        let sock = p.sock.clone();
        let connect = connect.clone();
        async move {
            let hello = client_hello(name);
            let mut s = UnixStream::connect(&sock).await.unwrap();
            if early {
                let mut all = connect.into_bytes();
                all.extend_from_slice(&hello);
                s.write_all(&all).await.unwrap();
            } else {
                s.write_all(connect.as_bytes()).await.unwrap();
                let mut head = [0u8; 39];
                within("CONNECT reply", s.read_exact(&mut head))
                    .await
                    .unwrap();
                assert!(head.starts_with(b"HTTP/1.1 200"));
                s.write_all(&hello[..7]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                s.write_all(&hello[7..]).await.unwrap();
            }
            (s, hello.len())
        }
    };
    // The positive control: a hello for the name the tunnel was opened for goes through.
    for early in [false, true] {
        let before = got.lock().unwrap().len();
        let (_s, len) = attempt("front.allowed.test", early).await;
        within("the hello upstream", async {
            while got
                .lock()
                .unwrap()
                .get(before)
                .is_none_or(|b| b.len() < len)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
    // The same tunnel, the hello naming the brokered host: cut, not a byte upstream.
    for (name, early) in [("api.brokered.test", false), ("API.Brokered.test.", true)] {
        let before = got.lock().unwrap().len();
        let (mut s, _) = attempt(name, early).await;
        let mut rest = Vec::new();
        within("the tunnel cut", s.read_to_end(&mut rest))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = got.lock().unwrap();
        assert!(
            got[before..].iter().all(|b| b.is_empty()),
            "{name}: bytes went upstream"
        );
    }
    let log = p.log();
    assert_eq!(
        log.matches("a TLS hello naming api.brokered.test: ANTHROPIC_API_KEY is brokered")
            .count(),
        2,
        "{log}"
    );
}
