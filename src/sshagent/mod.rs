//! `--ssh-agent`'s filter: the sandbox gets a socket served by agentbox (on the host, in the
//! supervising process), which forwards to the user's agent only listing and signing with the
//! keys the config names (`ssh_keys`, by `SHA256:` fingerprint or by comment), and the
//! `session-bind@openssh.com` extension `ssh` sends (which only narrows what the user's agent
//! allows). Adding, removing, locking, unlocking and every other request are answered
//! `SSH_AGENT_FAILURE` without reaching the user's agent. A message longer than `MAX_MESSAGE`
//! or one that does not parse closes the connection.
//!
//! This file is the protocol and the decision, pure (no I/O): `serve` does the sockets.
//! Wire format: draft-ietf-sshm-ssh-agent (uint32 length, then the type byte and its fields;
//! `string` is a uint32 length and bytes) and OpenSSH's PROTOCOL.agent for the extension.
//!
//! With `ssh_hosts` named, a signature is made only for user authentication in a session the
//! connection was bound to (`session-bind`, whose server signature the user's agent checks)
//! with a named server's host key: the signed data must start with that session's identifier.
//! A bind to another server taints the connection (through a forwarded agent, that server
//! would sign for others). `ssh-keygen -Y sign` and other signatures with no session are then
//! refused.
//!
//! With no key named, `--ssh-agent` refuses to start (with the fingerprints to name in the
//! hint): handing over every key the agent holds is what `--ssh-agent=raw` says it does, and
//! the filtered form never does that silently.

pub mod hosts;
pub mod serve;

use sha2::{Digest, Sha256};

/// The largest message either side may send (OpenSSH's own agent caps at 256 KiB).
pub const MAX_MESSAGE: usize = 256 * 1024;

pub const FAILURE: u8 = 5;
pub const SUCCESS: u8 = 6;
pub const REQUEST_IDENTITIES: u8 = 11;
pub const IDENTITIES_ANSWER: u8 = 12;
pub const SIGN_REQUEST: u8 = 13;
pub const ADD_IDENTITY: u8 = 17;
pub const REMOVE_IDENTITY: u8 = 18;
pub const REMOVE_ALL_IDENTITIES: u8 = 19;
pub const ADD_SMARTCARD_KEY: u8 = 20;
pub const REMOVE_SMARTCARD_KEY: u8 = 21;
pub const LOCK: u8 = 22;
pub const UNLOCK: u8 = 23;
pub const ADD_ID_CONSTRAINED: u8 = 25;
pub const ADD_SMARTCARD_KEY_CONSTRAINED: u8 = 26;
pub const EXTENSION: u8 = 27;
// The retired SSH1 requests, still sent by some clients (`ssh-add -D` sends both removes).
const SSH1_ADD: [u8; 2] = [7, 24];
const SSH1_REMOVE: [u8; 2] = [8, 9];

pub const SESSION_BIND: &[u8] = b"session-bind@openssh.com";

/// This run's filtering agent: where it listens (bound inside by the plan), the user's agent
/// it forwards to, and the keys it lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub socket: std::path::PathBuf,
    pub upstream: std::path::PathBuf,
    pub filter: KeyFilter,
    /// The program that asks the user (`$SSH_ASKPASS`), when signatures are confirmed.
    pub askpass: Option<std::path::PathBuf>,
    /// The host key fingerprints `filter.hosts` stands for (from `known_hosts`).
    pub host_keys: Vec<String>,
}

/// The keys the sandbox may list and sign with: an entry `SHA256:...` names a key by its
/// fingerprint (as `ssh-add -l` prints it), any other entry by its comment, exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    pub names: Vec<String>,
    /// Every signature is confirmed on the host first (`ssh_confirm`).
    pub confirm: bool,
    /// `ssh_hosts`: the servers signatures are for, by name or host key fingerprint; empty:
    /// any.
    pub hosts: Vec<String>,
}

impl KeyFilter {
    pub fn allows(&self, blob: &[u8], comment: &[u8]) -> bool {
        let fp = fingerprint(blob);
        self.names
            .iter()
            .any(|n| *n == fp || (!n.starts_with("SHA256:") && n.as_bytes() == comment))
    }

    /// Whether a sign request needs the key's comment (some entry is not a fingerprint).
    pub fn needs_comments(&self) -> bool {
        self.names.iter().any(|n| !n.starts_with("SHA256:"))
    }
}

/// `SHA256:` and the unpadded base64 of the key blob's SHA-256, as OpenSSH prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    use base64::Engine;
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// A protocol violation: the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Reads the fields of one message body (after the length), never past its end.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.buf.split_first().ok_or(Malformed("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        if self.buf.len() < 4 {
            return Err(Malformed("truncated"));
        }
        let (head, rest) = self.buf.split_at(4);
        self.buf = rest;
        Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    }

    pub fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        if self.buf.len() < n {
            return Err(Malformed("a string longer than its message"));
        }
        let (s, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(s)
    }

    /// Everything was read: trailing bytes are a violation, not something to pass on.
    pub fn end(&self) -> Result<(), Malformed> {
        match self.buf.is_empty() {
            true => Ok(()),
            false => Err(Malformed("trailing bytes")),
        }
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Whether `data` (what a sign request signs) starts with `session_id` as an SSH string: user
/// authentication signs its session's identifier first, so a signature over data that does
/// not is not for that session.
pub fn signs_for_session(data: &[u8], session_id: &[u8]) -> bool {
    let mut head = (session_id.len() as u32).to_be_bytes().to_vec();
    head.extend_from_slice(session_id);
    !session_id.is_empty() && data.starts_with(&head)
}

/// A whole message (length and body) from its body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    put_string(&mut out, body);
    out
}

/// The length in a message's first four bytes, checked against the bound.
pub fn body_len(head: [u8; 4]) -> Result<usize, Malformed> {
    let n = u32::from_be_bytes(head) as usize;
    match n {
        0 => Err(Malformed("an empty message")),
        n if n > MAX_MESSAGE => Err(Malformed("a message over 256 KiB")),
        n => Ok(n),
    }
}

/// A key the user's agent listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub blob: Vec<u8>,
    pub comment: Vec<u8>,
}

/// The keys in an `IDENTITIES_ANSWER` body.
pub fn parse_identities(body: &[u8]) -> Result<Vec<Identity>, Malformed> {
    let mut r = Reader::new(body);
    if r.byte()? != IDENTITIES_ANSWER {
        return Err(Malformed("not an identities answer"));
    }
    let n = r.u32()?;
    let mut keys = Vec::new();
    for _ in 0..n {
        let blob = r.string()?.to_vec();
        let comment = r.string()?.to_vec();
        keys.push(Identity { blob, comment });
    }
    r.end()?;
    Ok(keys)
}

/// An `IDENTITIES_ANSWER` body with `keys`.
pub fn identities_answer(keys: &[Identity]) -> Vec<u8> {
    let mut out = vec![IDENTITIES_ANSWER];
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for k in keys {
        put_string(&mut out, &k.blob);
        put_string(&mut out, &k.comment);
    }
    out
}

/// What the sandbox asked, as far as the filter cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    List,
    /// A signature with the key `blob` over `data`.
    Sign {
        blob: &'a [u8],
        data: &'a [u8],
    },
    /// `session-bind@openssh.com`: the host key of the server `ssh` is connected to, and the
    /// session's identifier (which user authentication signs first).
    SessionBind {
        host_key: &'a [u8],
        session_id: &'a [u8],
        forwarding: bool,
    },
    /// Anything else: refused, with this name in the run's summary.
    Refused(&'static str),
}

/// Parses a request body (type byte first). A request the filter would forward must parse
/// completely; one it refuses is only named.
pub fn parse_request(body: &[u8]) -> Result<Request<'_>, Malformed> {
    let mut r = Reader::new(body);
    let kind = r.byte()?;
    let req = match kind {
        REQUEST_IDENTITIES => Request::List,
        SIGN_REQUEST => {
            let blob = r.string()?;
            let data = r.string()?;
            let _flags = r.u32()?;
            Request::Sign { blob, data }
        }
        EXTENSION => {
            let name = r.string()?;
            if name != SESSION_BIND {
                // `query` and vendor extensions: nothing the sandbox needs.
                return Ok(Request::Refused("extension"));
            }
            let host_key = r.string()?;
            let session_id = r.string()?;
            let _signature = r.string()?;
            let forwarding = match r.byte()? {
                0 => false,
                1 => true,
                _ => return Err(Malformed("a bool that is neither 0 nor 1")),
            };
            Request::SessionBind {
                host_key,
                session_id,
                forwarding,
            }
        }
        ADD_IDENTITY | ADD_ID_CONSTRAINED | ADD_SMARTCARD_KEY | ADD_SMARTCARD_KEY_CONSTRAINED => {
            return Ok(Request::Refused("add"));
        }
        k if SSH1_ADD.contains(&k) => return Ok(Request::Refused("add")),
        REMOVE_IDENTITY | REMOVE_ALL_IDENTITIES | REMOVE_SMARTCARD_KEY => {
            return Ok(Request::Refused("remove"));
        }
        k if SSH1_REMOVE.contains(&k) => return Ok(Request::Refused("remove")),
        LOCK | UNLOCK => return Ok(Request::Refused("lock")),
        _ => return Ok(Request::Refused("other")),
    };
    r.end()?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn s(x: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_string(&mut v, x);
        v
    }

    #[test]
    fn fingerprint_matches_openssh() {
        // `ssh-keygen -lf` on this ed25519 public key prints this fingerprint.
        use base64::Engine;
        let blob = base64::engine::general_purpose::STANDARD
            .decode("AAAAC3NzaC1lZDI1NTE5AAAAIBJSuscpi/AxRuzys19UPN1SiKE1qK8LUubOeJ0OTi6S")
            .unwrap();
        assert_eq!(
            fingerprint(&blob),
            "SHA256:qr7GNEjIsAf5S2uS8/IDplY9ZX1/uvNKhrn38Xe7zxw"
        );
    }

    #[test]
    fn filter_by_fingerprint_or_exact_comment() {
        let a = b"key-a".to_vec();
        let f = KeyFilter {
            names: vec![fingerprint(&a), "work@laptop".into()],
            confirm: false,
            hosts: vec![],
        };
        assert!(f.allows(&a, b"anything"));
        assert!(f.allows(b"key-b", b"work@laptop"));
        assert!(!f.allows(b"key-b", b"work@laptop2"));
        assert!(!f.allows(b"key-b", b"other"));
        // A comment that looks like a fingerprint does not name a key by comment.
        let g = KeyFilter {
            names: vec!["SHA256:xyz".into()],
            confirm: false,
            hosts: vec![],
        };
        assert!(!g.allows(b"key-b", b"SHA256:xyz"));
        assert!(!g.needs_comments());
        assert!(f.needs_comments());
        assert!(!KeyFilter::default().allows(&a, b""));
    }

    #[test]
    fn identities_round_trip_and_filter() {
        let keys = vec![
            Identity {
                blob: b"a".to_vec(),
                comment: b"one".to_vec(),
            },
            Identity {
                blob: b"b".to_vec(),
                comment: b"two".to_vec(),
            },
        ];
        let answer = identities_answer(&keys);
        assert_eq!(parse_identities(&answer).unwrap(), keys);
        // One key fewer is exactly what a one-key agent would answer.
        let one = identities_answer(&keys[1..]);
        assert_eq!(
            one,
            body(&[
                &[IDENTITIES_ANSWER],
                &1u32.to_be_bytes(),
                &s(b"b"),
                &s(b"two")
            ])
        );
        // A count larger than the keys that follow, or bytes after them, is refused.
        let mut short = answer.clone();
        short[4] = 3;
        assert!(parse_identities(&short).is_err());
        let mut long = answer;
        long.push(0);
        assert!(parse_identities(&long).is_err());
    }

    #[test]
    fn requests_parse_or_are_refused_by_name() {
        let sign = body(&[
            &[SIGN_REQUEST],
            &s(b"blob"),
            &s(b"data"),
            &0u32.to_be_bytes(),
        ]);
        assert_eq!(
            parse_request(&sign).unwrap(),
            Request::Sign {
                blob: b"blob",
                data: b"data"
            }
        );
        assert!(signs_for_session(&s(b"sid-then-more"), b"sid-then-more"));
        assert!(signs_for_session(
            &[s(b"sid"), b"\x32rest".to_vec()].concat(),
            b"sid"
        ));
        assert!(!signs_for_session(&s(b"other"), b"sid"));
        assert!(!signs_for_session(b"sid", b"sid"));
        assert!(!signs_for_session(&s(b""), b""));
        assert_eq!(parse_request(&[REQUEST_IDENTITIES]).unwrap(), Request::List);
        for (kind, name) in [
            (ADD_IDENTITY, "add"),
            (ADD_ID_CONSTRAINED, "add"),
            (ADD_SMARTCARD_KEY, "add"),
            (REMOVE_IDENTITY, "remove"),
            (REMOVE_ALL_IDENTITIES, "remove"),
            (LOCK, "lock"),
            (UNLOCK, "lock"),
            (9, "remove"),
            (7, "add"),
            (1, "other"),
            (99, "other"),
        ] {
            assert_eq!(
                parse_request(&[kind, 1, 2, 3]).unwrap(),
                Request::Refused(name)
            );
        }
        let bind = body(&[
            &[EXTENSION],
            &s(SESSION_BIND),
            &s(b"hostkey"),
            &s(b"sid"),
            &s(b"sig"),
            &[1],
        ]);
        assert_eq!(
            parse_request(&bind).unwrap(),
            Request::SessionBind {
                host_key: b"hostkey",
                session_id: b"sid",
                forwarding: true
            }
        );
        let query = body(&[&[EXTENSION], &s(b"query")]);
        assert_eq!(
            parse_request(&query).unwrap(),
            Request::Refused("extension")
        );
    }

    #[test]
    fn malformed_requests_are_errors() {
        // Truncated sign request, trailing bytes, a string past the end, an empty body.
        let sign = body(&[&[SIGN_REQUEST], &s(b"blob"), &s(b"data")]);
        assert!(parse_request(&sign).is_err());
        let trailing = body(&[
            &[SIGN_REQUEST],
            &s(b"blob"),
            &s(b"data"),
            &0u32.to_be_bytes(),
            b"x",
        ]);
        assert!(parse_request(&trailing).is_err());
        let past = body(&[&[SIGN_REQUEST], &100u32.to_be_bytes(), b"ab"]);
        assert!(parse_request(&past).is_err());
        assert!(parse_request(&[]).is_err());
        let bad_bool = body(&[
            &[EXTENSION],
            &s(SESSION_BIND),
            &s(b"k"),
            &s(b"i"),
            &s(b"g"),
            &[7],
        ]);
        assert!(parse_request(&bad_bool).is_err());
    }

    #[test]
    fn lengths_are_bounded() {
        assert!(body_len(0u32.to_be_bytes()).is_err());
        assert_eq!(body_len(1u32.to_be_bytes()), Ok(1));
        assert_eq!(
            body_len((MAX_MESSAGE as u32).to_be_bytes()),
            Ok(MAX_MESSAGE)
        );
        assert!(body_len((MAX_MESSAGE as u32 + 1).to_be_bytes()).is_err());
        assert!(body_len(u32::MAX.to_be_bytes()).is_err());
        assert_eq!(frame(&[5]), [0, 0, 0, 1, 5]);
    }
}
