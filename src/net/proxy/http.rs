//! The HTTP side of the proxy: reading a bounded request head, parsing it (`httparse` splits and
//! checks it, the narrower rules are ours) as `CONNECT host:port` or an absolute-form request,
//! rewriting the latter for the origin, and the proxy's own replies.
//!
//! The head sent on is rebuilt from the parsed parts, never passed through, so the origin sees
//! the same request the proxy checked: `Host` comes from the checked URL (a client-chosen Host
//! would let a shared front end route to a host the allowlist never saw), and `Proxy-*`
//! headers, which carry credentials meant for a proxy, never leave.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Kind, Request};
use crate::net::rules::Host;

/// Longest request head accepted (431 past it).
pub(super) const MAX_HEAD: usize = 16 * 1024;
/// Bytes asked of the socket per read while reading a head.
const READ_CHUNK: usize = 4096;

pub(super) const CONNECT_OK: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Headers that concern the hop to the proxy (or that the proxy sets itself): not forwarded.
fn hop_by_hop(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("proxy-") || matches!(n.as_str(), "connection" | "keep-alive" | "host")
}

/// Reads a request head whose first byte is `first`; answers 400 or 431 itself.
pub(super) async fn read_request<S>(client: &mut S, first: u8) -> Option<Request>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    buf.push(first);
    let mut scanned = 0;
    let end = loop {
        if let Some(end) = find_end(&buf, scanned) {
            break end;
        }
        // Rescanning only the tail keeps a client that sends a byte at a time from costing
        // quadratic time; the last 2 bytes may start a terminator not yet complete.
        scanned = buf.len().saturating_sub(2);
        if buf.len() >= MAX_HEAD {
            let reply = error(
                431,
                "Request Header Fields Too Large",
                "request head over 16 KiB",
            );
            let _ = client.write_all(&reply).await;
            return None;
        }
        let old = buf.len();
        buf.resize((old + READ_CHUNK).min(MAX_HEAD), 0);
        let n = client.read(&mut buf[old..]).await.ok()?;
        buf.truncate(old + n);
        if n == 0 {
            return None; // hung up mid-head: nobody to answer
        }
    };
    match parse(&buf[..end]) {
        Ok((kind, host, port)) => Some(Request {
            kind,
            host,
            port,
            early: buf[end..].to_vec(),
        }),
        Err(why) => {
            let _ = client.write_all(&error(400, "Bad Request", why)).await;
            None
        }
    }
}

/// The index just past the blank line ending the head (CRLF or bare LF), searching from `from`.
fn find_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| match &buf[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Most header lines accepted in one head; a head with more is refused. Real clients send a
/// dozen or two; the 16 KiB cap would allow about 4000 one-letter ones.
const MAX_HEADERS: usize = 100;

/// A head (up to and including its blank line) -> what it asks for.
///
/// The request line and header lines are split and checked by `httparse` (methods and header
/// names are tokens, the target has no spaces or controls, the version is HTTP/1.0 or 1.1, no
/// folded lines, no control bytes but tab in a value, at most [`MAX_HEADERS`]); what is
/// narrower than HTTP is checked here on top.
pub(super) fn parse(head: &[u8]) -> Result<(Kind, Host, u16), &'static str> {
    // Everything below is text: the method and host go to the log, the rest is rebuilt.
    std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    // Narrower than a token, and checked first so that the answer names it: the method is
    // logged and summarised, and `$`, `&` or a backtick (all valid token characters) have no
    // business in any real method. Checking the head's first word also refuses the blank lines
    // httparse skips before a request line (RFC 9112 2.2), which no client of a proxy sends.
    let method = head.split(|&b| b == b' ').next().unwrap_or_default();
    if method.is_empty() || method.len() > 32 || !method.iter().all(|&b| is_method_char(b)) {
        return Err("malformed method");
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(head) {
        // The head ends where the reader found its blank line, or the two disagree about
        // where it ends: refuse rather than pick one.
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err("malformed request head"),
        Err(e) => return Err(refusal(e)),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err("malformed request line");
    };
    // httparse lets bytes past 0x7f through (checked as UTF-8 above); the rest it refuses too.
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("malformed request target");
    }
    let version = match minor {
        0 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    if method == "CONNECT" {
        let (host, port) = authority(target, None).ok_or("CONNECT needs host:port")?;
        return Ok((Kind::Connect, host, port));
    }
    let headers = req
        .headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value).map_err(|_| "malformed header value")?;
            Ok((h.name, value.trim_matches([' ', '\t'])))
        })
        .collect::<Result<Vec<_>, &'static str>>()?;
    forward(method, target, version, &headers)
}

/// What the answer says about a head httparse refused.
fn refusal(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::Token => "malformed method or request target",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::HeaderName => "malformed header name",
        httparse::Error::HeaderValue => "malformed header value",
        httparse::Error::NewLine => "malformed line ending",
        httparse::Error::TooManyHeaders => "too many header lines",
        _ => "malformed request head",
    }
}

/// An absolute-form request -> its destination and the head to send it, in origin form.
fn forward(
    method: &str,
    target: &str,
    version: &str,
    headers: &[(&str, &str)],
) -> Result<(Kind, Host, u16), &'static str> {
    let rest = strip_prefix_ignore_case(target, "http://")
        .ok_or("not a proxy request (absolute http:// URL expected)")?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, path) = rest.split_at(split);
    let (host, port) = authority(auth, Some(80)).ok_or("malformed host in URL")?;
    // The fragment is the client's business; an empty path is "/".
    let path = path.split('#').next().unwrap_or("");
    let path = match path.starts_with('/') {
        true => path.to_owned(),
        false => format!("/{path}"),
    };
    let host_header = match port {
        80 => host.to_string(),
        p => format!("{host}:{p}"),
    };
    let mut out = format!("{method} {path} {version}\r\nHost: {host_header}\r\n");
    for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    // One request per connection: the copy that follows is blind to message boundaries.
    out.push_str("Connection: close\r\n\r\n");
    let kind = Kind::Forward {
        method: method.to_owned(),
        head: out.into_bytes(),
    };
    Ok((kind, host, port))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host:port`, `[v6]:port`, or without the port where there is a default. No userinfo:
/// `http://allowed.com@evil.com/` is exactly the confusion to refuse.
pub(super) fn authority(s: &str, default_port: Option<u16>) -> Option<(Host, u16)> {
    if s.contains('@') {
        return None;
    }
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            match after {
                "" => (h, None),
                _ => (h, Some(after.strip_prefix(':')?)),
            }
        }
        None => match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        },
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => default_port?,
    };
    // An IPv6 literal must have come in brackets; anything else in a name is refused by parse.
    let host = Host::parse(host)?;
    Some((host, port))
}

/// Every registered method is made of these (`GET`, `M-SEARCH`, `BASELINE-CONTROL`).
fn is_method_char(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'-' || b == b'_'
}

/// The proxy's own answer: a short text body, the connection closed after it.
fn response(status: u16, text: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error(status: u16, text: &str, why: &str) -> Vec<u8> {
    response(status, text, "", &format!("agentbox: {why}\n"))
}

/// Keeps a reason on one header line whatever it contains.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn blocked(host: &str, port: u16, reason: &str) -> Vec<u8> {
    let reason = one_line(reason);
    response(
        403,
        "Forbidden",
        &format!("X-Agentbox-Blocked: {reason}\r\n"),
        &format!("agentbox: blocked {host}:{port} ({reason})\n"),
    )
}

pub(super) fn bad_gateway(host: &str, port: u16, why: &str) -> Vec<u8> {
    error(
        502,
        "Bad Gateway",
        &format!("{host}:{port}: {}", one_line(why)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(head: &str) -> (String, String, u16) {
        match parse(head.as_bytes()).unwrap() {
            (Kind::Forward { head, .. }, host, port) => {
                (String::from_utf8(head).unwrap(), host.to_string(), port)
            }
            _ => panic!("not a forward: {head:?}"),
        }
    }

    #[test]
    fn connect_targets() {
        for (line, want) in [
            (
                "CONNECT api.example.com:443 HTTP/1.1",
                Some(("api.example.com", 443)),
            ),
            (
                "CONNECT API.Example.COM.:8443 HTTP/1.0",
                Some(("api.example.com", 8443)),
            ),
            ("CONNECT [::1]:22 HTTP/1.1", Some(("[::1]", 22))),
            ("CONNECT 127.0.0.1:80 HTTP/1.1", Some(("127.0.0.1", 80))),
            ("CONNECT api.example.com HTTP/1.1", None),
            ("CONNECT api.example.com:99999 HTTP/1.1", None),
            ("CONNECT api.example.com:+1 HTTP/1.1", None),
            ("CONNECT ::1:22 HTTP/1.1", None),
            ("CONNECT a@b.com:443 HTTP/1.1", None),
            ("CONNECT bad_host!:443 HTTP/1.1", None),
            ("CONNECT a.com:443 HTTP/2", None),
            ("CONNECT  a.com:443 HTTP/1.1", None),
        ] {
            let got = parse(format!("{line}\r\n\r\n").as_bytes())
                .ok()
                .map(|(_, h, p)| (h.to_string(), p));
            assert_eq!(got, want.map(|(h, p)| (h.to_owned(), p)), "{line}");
        }
    }

    #[test]
    fn forwarding_rewrites_to_origin_form() {
        let (head, host, port) = forwarded(
            "GET http://Example.com/a/b?q=1#frag HTTP/1.1\r\nHost: evil.org\r\nAccept: */*\r\n\
             Proxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n\
             Connection: keep-alive\r\nKeep-Alive: 5\r\nX-Y:  z \r\n\r\n",
        );
        assert_eq!((host.as_str(), port), ("example.com", 80));
        assert_eq!(
            head,
            "GET /a/b?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Y: z\r\n\
             Connection: close\r\n\r\n"
        );
        let (head, _, port) = forwarded("POST HTTP://example.com:8080?x HTTP/1.0\n\n");
        assert_eq!(port, 8080);
        assert_eq!(
            head,
            "POST /?x HTTP/1.0\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for head in [
            "GET /relative HTTP/1.1\r\n\r\n",
            "GET https://example.com/ HTTP/1.1\r\n\r\n",
            "GET http://allowed.com@evil.com/ HTTP/1.1\r\n\r\n",
            "GET http:///x HTTP/1.1\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\n folded\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\nNo-Colon\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\nA: b\rc\r\n\r\n",
            "G(T http://example.com/ HTTP/1.1\r\n\r\n",
            "GET http://example.com/\u{0}x HTTP/1.1\r\n\r\n",
            "\u{1}\u{2}garbage\r\n\r\n",
        ] {
            assert!(parse(head.as_bytes()).is_err(), "{head:?}");
        }
        assert!(parse(b"GET http://a.com/ HTTP/1.1\r\nX: \xff\r\n\r\n").is_err());
    }

    #[test]
    fn shell_and_terminal_characters_never_pass() {
        // Each would reach the decision log (or, through a redirected log, a shell rc file).
        for method in [
            "G`id`T",
            "GET$(id)",
            "GET&",
            "G;T",
            "GE|T",
            "\u{1b}[2J",
            "G\u{1b}]0;x\u{7}",
        ] {
            let head = format!("{method} http://example.com/ HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse(head.as_bytes()).err(),
                Some("malformed method"),
                "{method:?}"
            );
        }
        // Header names are not logged, only forwarded: any token passes, nothing else does.
        for name in ["X\u{1b}Y", "X Y", "X\u{7f}Y", "X(Y)", "X\"Y"] {
            let head = format!("GET http://example.com/ HTTP/1.1\r\n{name}: v\r\n\r\n");
            assert!(parse(head.as_bytes()).is_err(), "{name:?}");
        }
        for target in ["http://example.com/\u{1b}[2J", "http://example.com/a\nb"] {
            let head = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert!(parse(head.as_bytes()).is_err(), "{target:?}");
        }
        for host in ["a`id`.com", "$(id).com", "a&b.com", "a\u{1b}b.com"] {
            let head = format!("CONNECT {host}:443 HTTP/1.1\r\n\r\n");
            assert!(parse(head.as_bytes()).is_err(), "{host:?}");
        }
        // Controls: real methods, including ones with '-', still pass.
        for method in ["GET", "POST", "M-SEARCH", "PROPFIND"] {
            let head = format!("{method} http://example.com/ HTTP/1.1\r\n\r\n");
            assert!(parse(head.as_bytes()).is_ok(), "{method}");
        }
    }

    #[test]
    fn what_httparse_refuses_stays_refused() {
        let req = |headers: &str| format!("GET http://example.com/ HTTP/1.1\r\n{headers}\r\n");
        for (headers, why) in [
            ("A: b\r\n c\r\n", "malformed header name"),
            ("A: b\r\n\tc\r\n", "malformed header name"),
            ("A : b\r\n", "malformed header name"),
            ("A\u{0}B: c\r\n", "malformed header name"),
            ("[A]: b\r\n", "malformed header name"),
            (": b\r\n", "malformed header name"),
            ("A: b\u{0}c\r\n", "malformed header value"),
            ("A: b\rc\r\n", "malformed header value"),
            ("A: b\u{1b}c\r\n", "malformed header value"),
            ("A: b\u{7f}c\r\n", "malformed header value"),
        ] {
            assert_eq!(
                parse(req(headers).as_bytes()).err(),
                Some(why),
                "{headers:?}"
            );
        }
        // Controls: a tab and bytes past 0x7f (as UTF-8) are a value's to carry.
        let (head, _, _) = forwarded(&req("A: b\tc \u{e9}\r\n"));
        assert!(head.contains("\r\nA: b\tc \u{e9}\r\n"), "{head:?}");

        let many = |n: usize| req(&"A: b\r\n".repeat(n));
        assert!(parse(many(MAX_HEADERS).as_bytes()).is_ok());
        assert_eq!(
            parse(many(MAX_HEADERS + 1).as_bytes()).err(),
            Some("too many header lines")
        );

        for head in [
            // httparse would skip the blank line; nothing before the method is accepted.
            "\r\nGET http://example.com/ HTTP/1.1\r\n\r\n",
            " GET http://example.com/ HTTP/1.1\r\n\r\n",
            "GET http://example.com/ HTTP/1.1 \r\n\r\n",
            "GET http://example.com/ HTTP/1.1\r\r\n\r\n",
            "GET http://example.com/ http/1.1\r\n\r\n",
            // The head must end where the reader saw its blank line, not before.
            "GET http://example.com/ HTTP/1.1\r\n\r\nA: b\r\n\r\n",
            // Nor after: no blank line at all.
            "GET http://example.com/ HTTP/1.1\r\nA: b\r\n",
        ] {
            assert!(parse(head.as_bytes()).is_err(), "{head:?}");
        }
        let long = "A".repeat(33);
        assert_eq!(
            parse(format!("{long} http://example.com/ HTTP/1.1\r\n\r\n").as_bytes()).err(),
            Some("malformed method")
        );
        assert!(parse(format!("{} http://a.com/ HTTP/1.1\r\n\r\n", &long[1..]).as_bytes()).is_ok());
    }

    #[test]
    fn head_end_and_early_bytes() {
        assert_eq!(find_end(b"GET x\r\n\r\nbody", 0), Some(9));
        assert_eq!(find_end(b"GET x\n\nbody", 0), Some(7));
        assert_eq!(find_end(b"GET x\r\nA: b\r\n", 0), None);
    }

    #[tokio::test]
    async fn reading_keeps_early_bytes_and_caps_the_head() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(b"ONNECT a.com:443 HTTP/1.1\r\n\r\nhello")
            .await
            .unwrap();
        let req = read_request(&mut b, b'C').await.unwrap();
        assert_eq!(
            (req.host.to_string(), req.port, req.early),
            ("a.com".into(), 443, b"hello".to_vec())
        );

        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(b"ET http://a.com/ HTTP/1.1\r\n").await.unwrap();
        a.write_all(&vec![b'x'; MAX_HEAD]).await.unwrap();
        assert!(read_request(&mut b, b'G').await.is_none());
        drop(b);
        let mut reply = String::new();
        a.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    }

    #[test]
    fn blocked_reply_keeps_the_reason_on_one_line() {
        let r = String::from_utf8(blocked("a.com", 443, "bad\r\nX-Evil: 1")).unwrap();
        assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(r.contains("X-Agentbox-Blocked: bad  X-Evil: 1\r\n"));
        assert!(r.ends_with("\r\n\r\nagentbox: blocked a.com:443 (bad  X-Evil: 1)\n"));
    }
}
