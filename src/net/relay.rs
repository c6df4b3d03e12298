//! The sandbox's first process in filtered mode (`agentbox __relay`). It binds, while it still
//! holds the two capabilities bwrap lent it: a proxy port on loopback, a DNS server on
//! 127.0.0.1:53 that answers only allowed names (with synthetic loopback addresses, never
//! asking another server), and listeners on 80, 443 and each port an allow pattern names, for
//! connections to those synthetic addresses. That captures clients that ignore proxy
//! variables. Then it gives the agent back the user's own uid in a nested user namespace, drops
//! every capability, loads the seccomp programs and starts the agent.
//!
//! It carries no traffic: each connection it accepts is handed to the host proxy as it is
//! (`handoff`: the socket itself, with what it is for and, if captured, the name behind its
//! address), and the proxy decides and copies. So a tunnel costs the relay nothing after the
//! handover, and the bytes take one proxy hop. The handovers all go over one line to the
//! proxy, registered before the agent starts: the proxy takes sockets from no other.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};

use crate::inside::{BROKER_ADDR, BROKER_PORT, PROXY_PORT, SOCKET_DIR, SOCKET_NAME, TOKEN_FILE};
use crate::net::dns::{self, Answer};
use crate::net::handoff;
use crate::net::rules::{Host, NetPolicy};
use crate::seccomp;
use crate::sys;

/// Synthetic addresses for allowed names: 127.80.0.0/16, all on the loopback interface.
const SYNTH_BASE: u32 = u32::from_be_bytes([127, 80, 0, 0]);
const SYNTH_SIZE: u32 = 1 << 16;

/// What the plan tells the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCtx {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Answer every name (the host proxy still decides), so `--learn` sees what is asked.
    pub learn: bool,
    /// The user's uid and gid on the host side of bwrap's namespace, given back to the agent.
    pub uid: u32,
    pub gid: u32,
    pub seccomp: seccomp::Allow,
    pub interactive: bool,
    /// Serve the credential broker's port (`inside::BROKER_PORT`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broker: bool,
}

/// Synthetic address <-> name, shared by the DNS server and the capture listeners.
#[derive(Default)]
struct Synth {
    by_name: HashMap<String, Ipv4Addr>,
    by_ip: HashMap<Ipv4Addr, String>,
}

impl Synth {
    fn addr_for(&mut self, name: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_name.get(name) {
            return Some(*ip);
        }
        let n = self.by_name.len() as u32 + 1;
        if n >= SYNTH_SIZE - 1 {
            return None;
        }
        let ip = Ipv4Addr::from(SYNTH_BASE + n);
        self.by_name.insert(name.to_owned(), ip);
        self.by_ip.insert(ip, name.to_owned());
        Some(ip)
    }
}

struct Shared {
    policy: NetPolicy,
    learn: bool,
    synth: Mutex<Synth>,
}

/// The line to the host proxy, one handover at a time.
type Line = Arc<tokio::sync::Mutex<UnixStream>>;

/// How long the relay waits for the proxy to take its line.
const REGISTER_LIMIT: Duration = Duration::from_secs(10);

/// Opens and registers the relay's line (`handoff::HELLO`), before the agent exists: the proxy
/// takes the first registration only and sockets from this line only, so nothing the agent
/// passes the proxy itself is taken.
fn register(token: &str) -> Result<std::os::unix::net::UnixStream> {
    use std::io::{Read, Write};
    let socket = std::path::Path::new(SOCKET_DIR).join(SOCKET_NAME);
    let mut line =
        std::os::unix::net::UnixStream::connect(&socket).context("connecting to the host proxy")?;
    line.set_read_timeout(Some(REGISTER_LIMIT))?;
    let mut hello = format!("AGENTBOX {token}\n").into_bytes();
    hello.push(handoff::HELLO);
    line.write_all(&hello)
        .context("registering with the host proxy")?;
    let mut answer = [0u8; 1];
    line.read_exact(&mut answer)
        .context("registering with the host proxy")?;
    anyhow::ensure!(
        answer[0] == handoff::HELLO,
        "the host proxy refused the relay's line"
    );
    line.set_read_timeout(None)?;
    Ok(line)
}

/// The sockets bound while privileged.
struct Bound {
    proxy: Vec<std::net::TcpListener>,
    capture: Vec<std::net::TcpListener>,
    broker: Option<std::net::TcpListener>,
    dns: std::net::UdpSocket,
}

fn bind(policy: &NetPolicy, broker: bool) -> Result<Bound> {
    let mut proxy = vec![
        std::net::TcpListener::bind(("127.0.0.1", PROXY_PORT)).context("binding the proxy port")?,
    ];
    // IPv6 loopback too where the kernel has it; clients may resolve localhost to ::1.
    if let Ok(l) = std::net::TcpListener::bind(("::1", PROXY_PORT)) {
        proxy.push(l);
    }
    let mut ports = vec![80, 443];
    ports.extend(policy.extra_ports());
    let capture = ports
        .iter()
        .map(|p| {
            std::net::TcpListener::bind(("0.0.0.0", *p))
                .with_context(|| format!("binding capture port {p}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let dns = std::net::UdpSocket::bind(("127.0.0.1", 53)).context("binding DNS on port 53")?;
    let broker = match broker {
        true => Some(
            std::net::TcpListener::bind((BROKER_ADDR, BROKER_PORT))
                .context("binding the credential broker's port")?,
        ),
        false => None,
    };
    Ok(Bound {
        proxy,
        capture,
        broker,
        dns,
    })
}

/// Gives the agent the user's own ids: a nested user namespace mapping them onto the uid 0
/// bwrap set up for the relay. It is the last namespace: the limit of one (where nesting is not
/// allowed) and the seccomp programs forbid another.
fn become_user(ctx: &RelayCtx) -> Result<()> {
    if !ctx.seccomp.nested {
        // Where /proc/sys is read-only (agentbox started as root covers it), the seccomp
        // programs alone refuse nested namespaces.
        match std::fs::write("/proc/sys/user/max_user_namespaces", "1") {
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
            r => r.context("limiting nested user namespaces")?,
        }
    }
    sys::unshare_user()?;
    std::fs::write("/proc/self/setgroups", "deny").context("writing setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("{} 0 1", ctx.uid)).context("writing uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("{} 0 1", ctx.gid)).context("writing gid_map")?;
    // The last write to /proc: from here it is read-only, so the agent cannot write another
    // process's memory through /proc/PID/mem (bwrap does this in the other network modes).
    if !ctx.seccomp.debug && !ctx.seccomp.nested {
        sys::proc_read_only()?;
    }
    sys::drop_all_caps()
}

pub fn relay_main(ctx_json: &str, command: &[OsString]) -> Result<ExitCode> {
    let ctx: RelayCtx = serde_json::from_str(ctx_json).context("reading the relay context")?;
    let policy = NetPolicy::new(&ctx.allow, &ctx.deny)?;
    let token = std::fs::read_to_string(TOKEN_FILE).context("reading the proxy token")?;
    let bound = bind(&policy, ctx.broker)?;
    become_user(&ctx)?;
    seccomp::apply(ctx.seccomp)?;
    // The agent runs as the same user; where Landlock does not stand between them
    // (--allow-nested leaves /proc writable too), it could write this process's memory and
    // use the line for sockets of its own (`handoff`).
    sys::not_dumpable()?;
    let line = register(token.trim())?;
    let shared = Arc::new(Shared {
        policy,
        learn: ctx.learn,
        synth: Mutex::new(Synth::default()),
    });
    let (prog, args) = command.split_first().context("no command")?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    let spawned = if ctx.interactive {
        sys::spawn_with_default_interrupts(&mut cmd)
    } else {
        cmd.spawn()
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentbox: {}: {e}", prog.to_string_lossy());
            return Ok(ExitCode::from(match e.kind() {
                std::io::ErrorKind::NotFound => crate::error::EXIT_NOT_FOUND,
                _ => crate::error::EXIT_NOT_EXECUTABLE,
            }));
        }
    };
    // The agent starts first: its connections wait in the bound sockets' queues meanwhile.
    std::thread::spawn(move || serve(shared, bound, line));
    // Termination requests agentbox passes on (or the user sends this process) go to the
    // agent, which may end cleanly; its exit ends the sandbox.
    let agent = child.id() as i32;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            sys::send_signal(agent, sig);
        }
    });
    let status = child.wait().context("waiting for the agent")?;
    Ok(crate::error::exit_code(status))
}

fn serve(shared: Arc<Shared>, bound: Bound, line: std::os::unix::net::UnixStream) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentbox: relay: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let line = match line
            .set_nonblocking(true)
            .and_then(|_| UnixStream::from_std(line))
        {
            Ok(l) => Arc::new(tokio::sync::Mutex::new(l)),
            Err(e) => {
                eprintln!("agentbox: relay: {e}");
                return;
            }
        };
        let mut tasks = Vec::new();
        let mut listen = |l, mode| {
            let (shared, line) = (shared.clone(), line.clone());
            tasks.push(tokio::spawn(accept_loop(l, shared, line, mode)));
        };
        for l in bound.proxy {
            listen(l, Mode::Proxy);
        }
        for l in bound.capture {
            listen(l, Mode::Capture);
        }
        if let Some(l) = bound.broker {
            listen(l, Mode::Broker);
        }
        tasks.push(tokio::spawn(dns_loop(bound.dns, shared.clone())));
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// What a listener's connections are.
#[derive(Clone, Copy)]
enum Mode {
    /// Proxy protocols, passed on as they are.
    Proxy,
    /// Connections to a synthetic address: tunnelled by name.
    Capture,
    /// Plain HTTP for the credential broker: passed on after its mark.
    Broker,
}

async fn accept_loop(listener: std::net::TcpListener, shared: Arc<Shared>, line: Line, mode: Mode) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|_| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("agentbox: relay: {e}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (shared, line) = (shared.clone(), line.clone());
        tokio::spawn(async move {
            let _ = match mode {
                Mode::Capture => tunnel_by_name(stream, &shared, &line).await,
                Mode::Proxy => hand_over(stream, &line, handoff::Kind::Proxy, None).await,
                Mode::Broker => hand_over(stream, &line, handoff::Kind::Broker, None).await,
            };
        });
    }
}

/// Hands `client` to the host proxy (`handoff`) and keeps nothing: the proxy reads and writes
/// the agent's connection itself from here. `target` is a captured connection's destination.
async fn hand_over(
    client: TcpStream,
    line: &Line,
    kind: handoff::Kind,
    target: Option<String>,
) -> std::io::Result<()> {
    let tail = target.map(|t| format!("{t}\n")).unwrap_or_default();
    let line = line.lock().await;
    handoff::send(&line, kind, &client, tail.as_bytes()).await
}

/// A client that connected to a synthetic address: the host proxy is to tunnel it to the name
/// behind that address, on the same port.
async fn tunnel_by_name(client: TcpStream, shared: &Shared, line: &Line) -> std::io::Result<()> {
    let local: SocketAddr = client.local_addr()?;
    let SocketAddr::V4(v4) = local else {
        return Ok(());
    };
    let name = shared
        .synth
        .lock()
        .ok()
        .and_then(|s| s.by_ip.get(v4.ip()).cloned());
    let Some(name) = name else {
        return Ok(()); // not an address our DNS gave out: close
    };
    let target = format!("{name}:{}", v4.port());
    hand_over(client, line, handoff::Kind::Capture, Some(target)).await
}

fn answer(shared: &Shared, q: &dns::Question) -> Answer {
    let Some(host @ Host::Name(_)) = Host::parse(&q.name) else {
        return Answer::NxDomain;
    };
    let allowed = shared.learn || shared.policy.name_allowed(&host);
    match (allowed, q.qtype, q.qclass) {
        (false, _, _) => Answer::NxDomain,
        (true, dns::TYPE_A, 1) => shared
            .synth
            .lock()
            .ok()
            .and_then(|mut s| s.addr_for(&q.name))
            .map_or(Answer::NxDomain, Answer::A),
        (true, _, 1) => Answer::NoData,
        (true, _, _) => Answer::NotImplemented,
    }
}

async fn dns_loop(socket: std::net::UdpSocket, shared: Arc<Shared>) {
    let socket = match socket
        .set_nonblocking(true)
        .and_then(|_| UdpSocket::from_std(socket))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agentbox: relay dns: {e}");
            return;
        }
    };
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(q) = dns::parse_query(&buf[..n]) {
            let reply = dns::build_response(&q, answer(&shared, &q));
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_addresses_are_stable_and_distinct() {
        let mut s = Synth::default();
        let a = s.addr_for("a.example.com").unwrap();
        let b = s.addr_for("b.example.com").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.addr_for("a.example.com"), Some(a));
        assert_eq!(a.octets()[..2], [127, 80]);
        assert_eq!(s.by_ip[&b], "b.example.com");
    }
}
