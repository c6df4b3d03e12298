//! The host side of `--ssh-agent` for one run: a private directory (`ssh-PID`, 0700, in
//! agentbox's runtime directory; removed at the end, and a leftover of a SIGKILLed run by the
//! next one), the socket in it that the plan binds inside, and a thread per connection that
//! talks to the user's agent on the sandbox's behalf, one upstream connection each (as `ssh -A`
//! does), so the user's agent sees one client per sandbox connection. Every write (the
//! directory, its removal) goes through `hostfs`: the runtime directory is one the sandbox
//! reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::{
    FAILURE, Identity, KeyFilter, Malformed, REQUEST_IDENTITIES, Request, body_len, fingerprint,
    frame, identities_answer, parse_identities, parse_request,
};
use crate::hostfs::Untrusted;
use crate::rundir::SocketServer;

/// Connections served at once (`ssh`, `git` and `ssh-add` use one each).
const MAX_CONNECTIONS: usize = 64;

/// The socket's name in its directory.
pub const SOCKET: &str = "agent.sock";

/// This run's socket: `ssh-PID/agent.sock` in `runtime` (agentbox's runtime directory).
pub fn socket_path(runtime: &Path) -> PathBuf {
    runtime
        .join(format!("ssh-{}", std::process::id()))
        .join(SOCKET)
}

/// What a connection checks a request against.
struct Filter {
    keys: KeyFilter,
    askpass: Option<PathBuf>,
    host_keys: Vec<String>,
    /// One question on the host at a time.
    asking: Mutex<()>,
}

/// Asks the user, through `askpass` (as ssh-agent asks for a key added with `ssh-add -c`),
/// whether the sandbox may sign; yes only on the program's success.
fn confirmed(f: &Filter, key: &str, comment: &[u8], host: Option<&str>) -> bool {
    let Some(askpass) = &f.askpass else {
        return true;
    };
    let _one = match f.asking.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let comment = crate::text::printable_str(&String::from_utf8_lossy(comment));
    let prompt = format!(
        "agentbox: the sandbox asks your ssh-agent to sign with {key} ({comment}){}. Allow?",
        host.map(|h| format!(" for the server with host key {h}"))
            .unwrap_or_default()
    );
    std::process::Command::new(askpass)
        .arg(prompt)
        .env("SSH_ASKPASS_PROMPT", "confirm")
        .stdin(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the sandbox did with the agent, for the line at exit.
#[derive(Debug, Default)]
struct Stats {
    signed: BTreeMap<String, u64>,
    refused: BTreeMap<&'static str, u64>,
    hosts: BTreeSet<String>,
}

pub struct Running {
    server: SocketServer,
    stats: Arc<Mutex<Stats>>,
}

/// The run's filtering agent, started, when the plan binds one (`proxy`).
pub fn for_run(
    proxy: Option<&super::Proxy>,
    uid: u32,
    areas: &Untrusted,
) -> Result<Option<Running>> {
    match proxy {
        Some(p) => start(p, uid, areas).map(Some),
        None => Ok(None),
    }
}

/// Makes the directory, binds the socket (before bwrap starts, which binds it inside) and
/// starts serving it. `upstream` is the user's agent.
pub fn start(proxy: &super::Proxy, uid: u32, areas: &Untrusted) -> Result<Running> {
    let stats: Arc<Mutex<Stats>> = Arc::default();
    let upstream = proxy.upstream.clone();
    let filter = Filter {
        keys: proxy.filter.clone(),
        askpass: proxy.askpass.clone(),
        host_keys: proxy.host_keys.clone(),
        asking: Mutex::new(()),
    };
    let counts = stats.clone();
    // Each connection is a thread and a connection to the user's agent (`ssh`, `git` and
    // `ssh-add` use one each).
    let server = SocketServer::start(
        &proxy.socket,
        "ssh-",
        "ssh-agent",
        MAX_CONNECTIONS,
        uid,
        areas,
        move |conn| {
            let _ = serve(conn, &upstream, &filter, &counts);
        },
    )?;
    Ok(Running { server, stats })
}

impl Running {
    /// Stops accepting, removes the directory and says what the sandbox did with the agent.
    pub fn finish(mut self) {
        self.server.stop();
        let s = match self.stats.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Some(line) = summary(&s) {
            eprintln!("agentbox: {line}");
        }
    }
}

fn summary(s: &Stats) -> Option<String> {
    if s.signed.is_empty() && s.refused.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for (fp, n) in &s.signed {
        parts.push(format!("signed with {fp} x{n}"));
    }
    if !s.hosts.is_empty() {
        let hosts: Vec<&str> = s.hosts.iter().map(String::as_str).collect();
        parts.push(format!("for host key(s) {}", hosts.join(", ")));
    }
    for (what, n) in &s.refused {
        parts.push(format!("refused {what} x{n}"));
    }
    Some(format!("--ssh-agent: {}", parts.join("; ")))
}

/// One message body, or `None` at a clean end of the stream.
fn read_msg(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = body_len(head).map_err(invalid)?;
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

fn invalid(m: Malformed) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, m.0)
}

/// The user agent's answer to one request: a body, or the end of this connection.
fn ask(upstream: &mut UnixStream, body: &[u8]) -> std::io::Result<Vec<u8>> {
    upstream.write_all(&frame(body))?;
    read_msg(upstream)?.ok_or_else(|| ErrorKind::UnexpectedEof.into())
}

/// The user's agent's keys; none if it refuses to list them.
fn identities(upstream: &mut UnixStream) -> std::io::Result<Vec<Identity>> {
    let reply = ask(upstream, &[REQUEST_IDENTITIES])?;
    match reply.first() {
        Some(&FAILURE) => Ok(Vec::new()),
        _ => parse_identities(&reply).map_err(invalid),
    }
}

fn count(stats: &Mutex<Stats>, f: impl FnOnce(&mut Stats)) {
    let mut s = match stats.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    f(&mut s);
}

/// Serves one sandbox connection until it ends or breaks the protocol.
fn serve(
    mut client: UnixStream,
    upstream: &Path,
    f: &Filter,
    stats: &Mutex<Stats>,
) -> std::io::Result<()> {
    let filter = &f.keys;
    let mut up = UnixStream::connect(upstream)?;
    // The server this connection's `ssh` is talking to, once it has said (session-bind): its
    // host key's fingerprint and the session's identifier.
    let mut bound: Option<(String, Vec<u8>)> = None;
    // A bind to a server `ssh_hosts` does not name was refused: nothing is signed on this
    // connection any more (through a forwarded agent, that server would sign for others).
    let mut tainted = false;
    let hosts_named = !f.host_keys.is_empty();
    while let Some(body) = read_msg(&mut client)? {
        let reply = match parse_request(&body).map_err(invalid)? {
            Request::List => {
                let keys: Vec<Identity> = identities(&mut up)?
                    .into_iter()
                    .filter(|k| filter.allows(&k.blob, &k.comment))
                    .collect();
                identities_answer(&keys)
            }
            Request::Sign { blob, data } => {
                // The comment is the user agent's, never the sandbox's word.
                let comment = match filter.needs_comments() || filter.confirm {
                    true => identities(&mut up)?
                        .into_iter()
                        .find(|k| k.blob == blob)
                        .map(|k| k.comment),
                    false => Some(Vec::new()),
                };
                // With `ssh_hosts`: only user authentication to a named server, for the
                // session bound on this connection.
                let for_named_host = !hosts_named
                    || (!tainted
                        && bound
                            .as_ref()
                            .is_some_and(|(_, sid)| super::signs_for_session(data, sid)));
                match comment {
                    Some(_) if !for_named_host => {
                        count(stats, |s| {
                            *s.refused.entry("not for a named host").or_default() += 1
                        });
                        vec![FAILURE]
                    }
                    Some(c) if filter.allows(blob, &c) => {
                        let fp = fingerprint(blob);
                        let host = bound.as_ref().map(|(h, _)| h.as_str());
                        if confirmed(f, &fp, &c, host) {
                            let reply = ask(&mut up, &body)?;
                            count(stats, |s| *s.signed.entry(fp).or_default() += 1);
                            reply
                        } else {
                            count(stats, |s| {
                                *s.refused.entry("not confirmed").or_default() += 1
                            });
                            vec![FAILURE]
                        }
                    }
                    _ => {
                        count(stats, |s| {
                            *s.refused.entry("a key not named").or_default() += 1
                        });
                        vec![FAILURE]
                    }
                }
            }
            Request::SessionBind {
                host_key,
                session_id,
                ..
            } => {
                let fp = fingerprint(host_key);
                if hosts_named && !f.host_keys.contains(&fp) {
                    tainted = true;
                    count(stats, |s| {
                        *s.refused.entry("a host not named").or_default() += 1
                    });
                    vec![FAILURE]
                } else {
                    // It only narrows what the user's agent allows (its own destination
                    // constraints): passed on as sent.
                    let reply = ask(&mut up, &body)?;
                    // Only a binding the user's agent accepted: it checks the server's
                    // signature of the session identifier.
                    if reply.first() == Some(&super::SUCCESS) {
                        bound = Some((fp.clone(), session_id.to_vec()));
                        count(stats, |s| {
                            s.hosts.insert(fp);
                        });
                    }
                    reply
                }
            }
            Request::Refused(what) => {
                count(stats, |s| *s.refused.entry(what).or_default() += 1);
                vec![FAILURE]
            }
        };
        client.write_all(&frame(&reply))?;
    }
    Ok(())
}
