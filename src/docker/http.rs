//! Just enough HTTP/1.1 for the Docker filter: read a message head as sent, learn how its body
//! is framed, and copy or read that body without changing a byte. Ambiguous framing (both
//! `Transfer-Encoding` and `Content-Length`, two different lengths, a coding other than
//! chunked) is refused: the filter and the daemon must agree on where a request ends.

use std::io::{self, BufRead, ErrorKind, Read, Write};

/// The longest head accepted (the daemon's own limit is of this order).
pub const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// A response that ends when the daemon closes.
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub framing: Framing,
    /// `Expect: 100-continue`: the client waits for a 100 before it sends the body.
    pub expect_continue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub framing: Framing,
    /// The connection has left HTTP: 101, or the daemon's raw or multiplexed stream (attach,
    /// exec start), which is only ever followed by the stream itself.
    pub hijacked: bool,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg.to_owned())
}

/// A whole head (through the empty line), as read; `None` at a clean end before one starts.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r
            .by_ref()
            .take((MAX_HEAD - before) as u64 + 1)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            return match head.is_empty() {
                true => Ok(None),
                false => Err(ErrorKind::UnexpectedEof.into()),
            };
        }
        if head.len() > MAX_HEAD {
            return Err(bad("a head over 64 KiB"));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
    }
}

fn framing(headers: &[httparse::Header]) -> io::Result<Option<Framing>> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in headers {
        let value = std::str::from_utf8(h.value).map_err(|_| bad("a header that is not text"))?;
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match coding.eq_ignore_ascii_case("chunked") && !chunked {
                    true => chunked = true,
                    false => return Err(bad("a transfer coding other than chunked")),
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad("a Content-Length that is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("two different Content-Lengths"));
            }
            length = Some(n);
        }
    }
    match (chunked, length) {
        (true, Some(_)) => Err(bad("both Transfer-Encoding and Content-Length")),
        (true, None) => Ok(Some(Framing::Chunked)),
        (false, Some(n)) => Ok(Some(Framing::Length(n))),
        (false, None) => Ok(None),
    }
}

pub fn parse_request(head: &[u8]) -> io::Result<Request> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return Err(bad("not an HTTP/1.1 request head")),
    }
    let framing = framing(req.headers)?.unwrap_or(Framing::None);
    // Go's server ignores Transfer-Encoding in an HTTP/1.0 request (its body is then empty
    // and the chunks would be read as the next request): the two would frame it apart.
    if framing == Framing::Chunked && req.version == Some(0) {
        return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let expect_continue = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue")
    });
    Ok(Request {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        framing,
        expect_continue,
    })
}

pub fn parse_response(head: &[u8], method: &str) -> io::Result<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return Err(bad("not an HTTP/1.1 response head")),
    }
    let status = resp.code.unwrap_or(0);
    let stream = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && [
                &b"application/vnd.docker.raw-stream"[..],
                b"application/vnd.docker.multiplexed-stream",
            ]
            .iter()
            .any(|t| h.value.len() >= t.len() && h.value[..t.len()].eq_ignore_ascii_case(t))
    });
    // A hijacked stream is written straight on the connection, with no framing; the logs
    // endpoint answers in a stream's type too, but framed (chunked), and stays HTTP.
    let framed = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || h.name.eq_ignore_ascii_case("content-length")
    });
    let hijacked = status == 101 || (status == 200 && stream && !framed);
    let framing = match (status, method) {
        _ if hijacked => Framing::UntilClose,
        (100..=199 | 204 | 304, _) => Framing::None,
        (_, m) if m.eq_ignore_ascii_case("HEAD") => Framing::None,
        _ => framing(resp.headers)?.unwrap_or(Framing::UntilClose),
    };
    Ok(Response {
        status,
        framing,
        hijacked,
    })
}

/// Copies one body from `r` to `w` exactly as framed.
pub fn copy_body(r: &mut impl BufRead, w: &mut impl Write, framing: Framing) -> io::Result<()> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => {
            let copied = io::copy(&mut r.by_ref().take(n), w)?;
            match copied == n {
                true => Ok(()),
                false => Err(ErrorKind::UnexpectedEof.into()),
            }
        }
        Framing::UntilClose => io::copy(r, w).map(|_| ()),
        Framing::Chunked => loop {
            let mut line = Vec::new();
            r.by_ref().take(4096).read_until(b'\n', &mut line)?;
            if !line.ends_with(b"\n") {
                return Err(bad("a chunk size line that does not end"));
            }
            w.write_all(&line)?;
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailers, through the empty line.
                loop {
                    let mut t = Vec::new();
                    r.by_ref().take(4096).read_until(b'\n', &mut t)?;
                    if !t.ends_with(b"\n") {
                        return Err(bad("a trailer that does not end"));
                    }
                    w.write_all(&t)?;
                    if t == b"\r\n" || t == b"\n" {
                        return w.flush();
                    }
                }
            }
            let with_crlf = size
                .checked_add(2)
                .ok_or_else(|| bad("a chunk too large"))?;
            let copied = io::copy(&mut r.by_ref().take(with_crlf), w)?;
            if copied != with_crlf {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            w.flush()?;
        },
    }
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(line).map_err(|_| bad("a chunk size that is not text"))?;
    let hex = text.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16).map_err(|_| bad("a chunk size that is not hex"))
}

/// Reads one body whole, up to `max` bytes: the bytes as sent, and the payload (chunks
/// joined).
pub fn read_body(
    r: &mut impl BufRead,
    framing: Framing,
    max: usize,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut raw = Vec::new();
    {
        let mut bounded = Bounded {
            out: &mut raw,
            max: max + 64 * 1024,
        };
        match framing {
            Framing::Length(n) if n > max as u64 => return Err(bad("a body too large to check")),
            Framing::UntilClose => return Err(bad("a body without a length")),
            f => copy_body(r, &mut bounded, f)?,
        }
    }
    let payload = match framing {
        Framing::Chunked => dechunk(&raw)?,
        _ => raw.clone(),
    };
    if payload.len() > max {
        return Err(bad("a body too large to check"));
    }
    Ok((raw, payload))
}

fn dechunk(mut raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = raw
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("truncated chunk"))?;
        let size =
            usize::try_from(chunk_size(&raw[..=end])?).map_err(|_| bad("a chunk too large"))?;
        raw = &raw[end + 1..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len().saturating_sub(2) < size {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A writer that refuses to grow past `max`.
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    max: usize,
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            return Err(bad("a body too large to check"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The refusal the sandbox's client shows: 403 and Docker's error shape.
pub fn refusal(status: u16, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "message": format!("agentbox: {message}") }).to_string();
    let reason = match status {
        403 => "Forbidden",
        413 => "Payload Too Large",
        _ => "Bad Request",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_size_at_the_limit_is_an_error_not_a_panic() {
        let body = b"ffffffffffffffff\r\nab\r\n0\r\n\r\n";
        let mut out = Vec::new();
        assert!(copy_body(&mut &body[..], &mut out, Framing::Chunked).is_err());
        assert!(read_body(&mut &body[..], Framing::Chunked, 1 << 20).is_err());
        assert!(dechunk(b"fffffffffffffffe\r\nab\r\n").is_err());
    }

    #[test]
    fn framing_of_requests_and_responses() {
        let r = parse_request(
            b"POST /v1.43/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 12\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.framing),
            ("POST", Framing::Length(12))
        );
        let r = parse_request(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(
            parse_request(b"GET /_ping HTTP/1.1\r\n\r\n")
                .unwrap()
                .framing,
            Framing::None
        );
        for smuggled in [
            &b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(parse_request(smuggled).is_err(), "{smuggled:?}");
        }
        let ok = |h: &[u8], m: &str| parse_response(h, m).unwrap().framing;
        assert_eq!(
            ok(b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE"),
            Framing::None
        );
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD"),
            Framing::None
        );
        assert_eq!(ok(b"HTTP/1.1 200 OK\r\n\r\n", "GET"), Framing::UntilClose);
        let hijacked = |h: &[u8]| parse_response(h, "POST").unwrap().hijacked;
        assert!(hijacked(b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n"));
        assert!(hijacked(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n"
        ));
        // An error to an exec start, or a detached start, stays HTTP.
        assert!(!hijacked(b"HTTP/1.1 409 Conflict\r\nContent-Type: application/vnd.docker.raw-stream\r\nContent-Length: 2\r\n\r\n"));
        assert!(!hijacked(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        // Logs: a stream's type, framed as HTTP.
        assert!(!hijacked(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        let r =
            parse_request(b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .unwrap();
        assert!(r.expect_continue);
        assert!(parse_request(b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_request(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_ok());
    }

    #[test]
    fn chunked_bodies_copy_exactly_and_decode() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut r = io::BufReader::new(&body[..]);
        let mut out = Vec::new();
        copy_body(&mut r, &mut out, Framing::Chunked).unwrap();
        assert_eq!(out, &body[..body.len() - 4]);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
        let mut r = io::BufReader::new(&body[..]);
        let (raw, payload) = read_body(&mut r, Framing::Chunked, 100).unwrap();
        assert_eq!((raw, payload), (out, b"hello world".to_vec()));
        // Over the bound: refused, not truncated.
        let mut r = io::BufReader::new(&body[..]);
        assert!(read_body(&mut r, Framing::Chunked, 5).is_err());
        let mut r = io::BufReader::new(&b"12345"[..]);
        assert!(read_body(&mut r, Framing::Length(5), 4).is_err());
    }

    #[test]
    fn heads_end_at_the_empty_line_and_are_bounded() {
        let mut r = io::BufReader::new(&b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"[..]);
        assert_eq!(
            read_head(&mut r).unwrap().unwrap(),
            b"GET / HTTP/1.1\r\nA: b\r\n\r\n"
        );
        let mut r = io::BufReader::new(&b""[..]);
        assert!(read_head(&mut r).unwrap().is_none());
        let long = [
            b"GET / HTTP/1.1\r\nA: ".to_vec(),
            vec![b'x'; MAX_HEAD],
            b"\r\n\r\n".to_vec(),
        ]
        .concat();
        assert!(read_head(&mut io::BufReader::new(&long[..])).is_err());
        let r = refusal(403, "no");
        assert!(r.ends_with(br#"{"message":"agentbox: no"}"#));
    }
}
