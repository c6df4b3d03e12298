//! The host side of `--net filtered`: a proxy on a UNIX socket (the relay inside the sandbox
//! forwards every client connection to it) that speaks HTTP CONNECT, plain HTTP forwarding and
//! SOCKS5, and connects a client only where `rules::NetPolicy` allows.
//!
//! It owns the order of the checks, which is the security property: a name is decided before
//! any DNS lookup (a denied name is never resolved, so lookups cannot carry data out), resolved
//! addresses are checked before any dial (a public name resolving to loopback or cloud metadata
//! is DNS rebinding), and only the checked addresses are dialled, never re-resolved.
//!
//! It must not need root or run other programs, and no client may grow its memory without
//! bound: request heads, copy buffers, the tally and the number of connections are all capped,
//! and a client that does not finish its request in time is dropped. It runs a current-thread
//! tokio runtime on its own thread, because the rest of agentbox is synchronous and one thread
//! is plenty for one agent's traffic.

mod dial;
mod hello;
mod http;
mod socks;
mod tally;
#[cfg(test)]
mod tests;
pub(crate) mod tunnel;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::net::handoff::{self, Passed};
use crate::net::rules::{Host, NetPolicy};
use dial::{Dialer, Refusal};
use tally::{Entry, Record, Tally};

/// A client must have sent its token and whole request head by then.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; past it new ones are closed at once, so a flood costs nothing.
const MAX_CONNS: usize = 4096;
/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long `stop` lets a DNS lookup still running on the blocking pool finish.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);
/// DNS lookups run on tokio's blocking pool (getaddrinfo blocks); a few threads are enough and
/// keep the proxy small.
const MAX_BLOCKING_THREADS: usize = 4;

pub struct ProxyConfig {
    pub policy: NetPolicy,
    /// Every connection must start with the line "AGENTBOX <token>\n"; anything else is closed
    /// at once (stops other local processes from using the proxy).
    pub token: String,
    /// Test-only name -> address mapping: used instead of DNS, and trusted (the private-range
    /// check of `reachable` is skipped for these, so tests can point a name at 127.0.0.1).
    pub fixed: Vec<(String, IpAddr)>,
    /// Where to append one JSON line per decision (None: no log).
    pub log: Option<std::fs::File>,
    /// Where to look for rules allowed since the launch, when `policy` refuses.
    pub reload: Option<Refresh>,
    /// The credential broker's routes (`net::broker`): served on connections the relay marks,
    /// and every other way to their hosts refused.
    pub broker: Vec<crate::net::broker::Route>,
}

/// The rules as they are now (the launch's, with what the user allowed since); called off the
/// runtime's thread, as it may read files.
pub type Refresh = Arc<dyn Fn() -> Arc<NetPolicy> + Send + Sync>;

/// What the proxy saw, for the report at exit and `--learn`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every (host, port) a client asked for, allowed or not (for `--learn`), sorted, deduplicated.
    pub requested: Vec<(String, u16)>,
    /// Denied requests: (host, port, reason, count), sorted.
    pub denied: Vec<(String, u16, String, u64)>,
    /// Connections made (allowed and dialled).
    pub allowed: u64,
    /// Allowed requests whose name did not resolve or whose destination did not answer.
    pub failed: u64,
    /// Requests left out of `requested`/`denied` because those lists reached their cap.
    pub untracked: u64,
}

/// The running proxy. Dropping it stops the proxy too, without waiting for it.
pub struct ProxyHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    tally: Arc<Mutex<Tally>>,
}

impl ProxyHandle {
    /// Stops accepting, ends the runtime (open tunnels are cut, and logged with the bytes they
    /// carried) and returns the tally.
    pub fn stop(mut self) -> Summary {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the proxy thread has already been printed; the tally is still ours.
            let _ = thread.join();
        }
        tally::lock(&self.tally).summary()
    }
}

/// Knobs tests turn; `start` uses the defaults.
struct Tuning {
    head_deadline: Duration,
    max_conns: usize,
    resolver: dial::Resolver,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            head_deadline: HEAD_DEADLINE,
            max_conns: MAX_CONNS,
            resolver: dial::Resolver::System,
        }
    }
}

/// Serves `listener` on a background thread until `stop`.
pub fn start(listener: std::os::unix::net::UnixListener, cfg: ProxyConfig) -> Result<ProxyHandle> {
    start_with(listener, cfg, Tuning::default())
}

fn start_with(
    listener: std::os::unix::net::UnixListener,
    cfg: ProxyConfig,
    tuning: Tuning,
) -> Result<ProxyHandle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("agentbox-dns")
        .build()
        .context("starting the proxy's runtime")?;
    listener
        .set_nonblocking(true)
        .context("setting the proxy socket non-blocking")?;
    let listener = {
        let _guard = rt.enter();
        UnixListener::from_std(listener).context("registering the proxy socket")?
    };
    let tally = Arc::new(Mutex::new(Tally::new(cfg.log)));
    let broker = match cfg.broker.is_empty() {
        true => None,
        false => Some(Arc::new(crate::net::broker::Broker::new(cfg.broker)?)),
    };
    let ctx = Arc::new(Ctx {
        broker,
        token_line: format!("AGENTBOX {}\n", cfg.token).into_bytes(),
        dialer: Dialer::new(cfg.policy, cfg.reload, cfg.fixed, tuning.resolver),
        tally: tally.clone(),
        head_deadline: tuning.head_deadline,
        relay: AtomicBool::new(false),
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let max_conns = tuning.max_conns;
    let thread = std::thread::Builder::new()
        .name("agentbox-proxy".into())
        .spawn(move || {
            rt.block_on(accept_loop(listener, ctx, max_conns, stop_rx));
            // Dropping the runtime's tasks cuts open tunnels (their records log on drop); only
            // a lookup stuck in getaddrinfo could delay this, and only by the grace period.
            rt.shutdown_timeout(SHUTDOWN_GRACE);
        })
        .context("starting the proxy thread")?;
    Ok(ProxyHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
        tally,
    })
}

/// What every connection shares.
struct Ctx {
    broker: Option<Arc<crate::net::broker::Broker>>,
    token_line: Vec<u8>,
    dialer: Dialer,
    tally: Arc<Mutex<Tally>>,
    head_deadline: Duration,
    /// The relay's line is registered (`handoff::HELLO`): nobody else hands over a socket.
    relay: AtomicBool,
}

async fn accept_loop(
    listener: UnixListener,
    ctx: Arc<Ctx>,
    max_conns: usize,
    mut stop: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(max_conns));
    loop {
        let accepted = tokio::select! {
            // Stop asked for, or the handle dropped.
            _ = &mut stop => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((conn, _)) => match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (ctx, permits) = (ctx.clone(), permits.clone());
                    tokio::spawn(async move { serve(conn, ctx, permits, permit).await });
                }
                Err(_) => drop(conn),
            },
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}

/// One client's request, whichever protocol it came in.
struct Request {
    kind: Kind,
    host: Host,
    port: u16,
    /// Bytes the client sent after its request head, owed to the destination.
    early: Vec<u8>,
}

enum Kind {
    Connect,
    /// Plain HTTP: the method for the log and the rewritten head for the origin.
    Forward {
        method: String,
        head: Vec<u8>,
    },
    Socks,
    /// A connection the relay captured on a synthetic address and handed over.
    Captured,
}

impl Kind {
    fn label(&self) -> &str {
        match self {
            Kind::Connect => "CONNECT",
            Kind::Forward { method, .. } => method,
            Kind::Socks => "SOCKS5",
            Kind::Captured => "captured",
        }
    }
}

/// One connection to the proxy's socket; `permit` is its place among `MAX_CONNS`, held until
/// the connection (or the tunnel it becomes) ends.
async fn serve(
    mut unix: UnixStream,
    ctx: Arc<Ctx>,
    permits: Arc<Semaphore>,
    permit: OwnedSemaphorePermit,
) {
    // One deadline over the token and the whole request head, not per read: a client sending
    // a byte a second must not hold a connection for hours.
    let deadline = tokio::time::Instant::now() + ctx.head_deadline;
    let first = tokio::time::timeout_at(deadline, read_token(&mut unix, &ctx)).await;
    let Ok(Some((first, passed))) = first else {
        return;
    };
    match (first, passed) {
        (handoff::HELLO, Passed::None) => relay_line(unix, ctx, permits).await,
        // A client on the UNIX socket itself.
        (b, Passed::None) if handoff::Kind::from_byte(b).is_none() => {
            serve_client(unix, first, deadline, &ctx, permit).await
        }
        // A descriptor anywhere but on the relay's line: the agent can read the token and
        // reach this socket, and a socket it passed itself is one it still holds (`handoff`).
        // Or a handover byte without one. Closed.
        _ => {}
    }
}

/// The relay's line: registered once, by the relay before the agent starts (it waits for
/// the answer), then one handover after another, each served on a task of its own. A line
/// out of step (a byte without a socket, a target cut short) ends; a socket that is not a
/// connected TCP socket, one past `MAX_CONNS`, or one the kernel could not give this process
/// (out of descriptors: the agent can open many connections) is closed and the line goes on.
async fn relay_line(mut line: UnixStream, ctx: Arc<Ctx>, permits: Arc<Semaphore>) {
    if ctx.relay.swap(true, Ordering::SeqCst) {
        return; // taken: only the first comer, the relay, has a line
    }
    if line.write_all(&[handoff::HELLO]).await.is_err() {
        return;
    }
    loop {
        let Ok(Some((byte, passed))) = handoff::recv_byte(&line).await else {
            return;
        };
        let Some(kind) = handoff::Kind::from_byte(byte) else {
            return;
        };
        let fd = match passed {
            Passed::None => return,
            Passed::One(fd) => Some(fd),
            Passed::Refused => None,
        };
        let deadline = tokio::time::Instant::now() + ctx.head_deadline;
        let target = match kind {
            handoff::Kind::Capture => {
                match tokio::time::timeout_at(deadline, read_target(&mut line)).await {
                    Ok(Some(line)) => Some(line),
                    _ => return,
                }
            }
            _ => None,
        };
        // The target is read even without a socket, for the line to stay in step.
        let Some(fd) = fd else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let Ok(client) = handoff::tcp_stream(fd) else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(
            async move { handed_over(client, kind, target, deadline, &ctx, permit).await },
        );
    }
}

/// The agent's own connection, which the relay accepted and handed over; `target` is a
/// capture's line.
async fn handed_over(
    mut client: TcpStream,
    kind: handoff::Kind,
    target: Option<Vec<u8>>,
    deadline: tokio::time::Instant,
    ctx: &Ctx,
    permit: OwnedSemaphorePermit,
) {
    match kind {
        handoff::Kind::Proxy => {
            let mut first = [0u8; 1];
            let read = tokio::time::timeout_at(deadline, client.read_exact(&mut first)).await;
            if let Ok(Ok(_)) = read {
                serve_client(client, first[0], deadline, ctx, permit).await;
            }
        }
        handoff::Kind::Broker => Box::pin(serve_broker(client, ctx)).await,
        handoff::Kind::Capture => {
            if let Some((host, port)) = target.as_deref().and_then(parse_target) {
                let req = Request {
                    kind: Kind::Captured,
                    host,
                    port,
                    early: Vec::new(),
                };
                proceed(client, req, ctx, permit).await;
            }
        }
    }
}

/// A client that speaks to the proxy itself (on the UNIX socket, or handed over from the
/// relay's proxy port), whose first byte was `first`.
async fn serve_client<C>(
    mut client: C,
    first: u8,
    deadline: tokio::time::Instant,
    ctx: &Ctx,
    permit: OwnedSemaphorePermit,
) where
    C: tunnel::Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if first == crate::net::broker::MARK {
        // A request for the credential broker, through the relay's broker port: HTTP with
        // keep-alive from here, under no head deadline (an agent's connection idles between
        // requests).
        return Box::pin(serve_broker(client, ctx)).await;
    }
    let req = Box::pin(tokio::time::timeout_at(
        deadline,
        read_request(&mut client, first),
    ))
    .await;
    if let Ok(Some(req)) = req {
        proceed(client, req, ctx, permit).await;
    }
}

async fn serve_broker<C>(client: C, ctx: &Ctx)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Some(broker) = &ctx.broker {
        let tally = ctx.tally.clone();
        broker.clone().serve(client, broker_log(tally)).await;
    }
}

/// A captured connection's line, "name:port\n", as the relay sends it with the socket, read
/// a byte at a time so that nothing of the next handover is taken. `None`: too long or cut
/// short (the line is out of step).
async fn read_target(unix: &mut UnixStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        if line.len() > handoff::MAX_TARGET {
            return None;
        }
        unix.read_exact(&mut byte).await.ok()?;
        line.push(byte[0]);
    }
    Some(line)
}

/// The destination in a capture's line. `None`: malformed.
fn parse_target(line: &[u8]) -> Option<(Host, u16)> {
    let text = std::str::from_utf8(line.strip_suffix(b"\n")?).ok()?;
    http::authority(text, None)
}

/// The net log's line for a brokered request: host, method, path, status; never a header.
fn broker_log(tally: Arc<Mutex<Tally>>) -> Arc<dyn Fn(crate::net::broker::Event) + Send + Sync> {
    Arc::new(move |ev: crate::net::broker::Event| {
        let reason = match &ev.outcome {
            Ok(status) => format!("credential broker ({}): {} -> {status}", ev.vars, ev.path),
            Err(why) => format!("credential broker ({}): {}: {why}", ev.vars, ev.path),
        };
        let mut t = tally::lock(&tally);
        t.request(&ev.host, ev.port);
        match ev.outcome {
            Ok(_) => t.connected(),
            Err(_) => t.refused(Entry::new(
                &ev.host,
                ev.port,
                &ev.method,
                true,
                reason.clone(),
            )),
        }
        if ev.outcome.is_ok() {
            t.log(&Entry::new(&ev.host, ev.port, &ev.method, true, reason));
        }
    })
}

/// The token line, then the first byte of what follows with the descriptor the relay may
/// have passed with it (`handoff`). `None`: the client is to be closed.
async fn read_token(client: &mut UnixStream, ctx: &Ctx) -> Option<(u8, Passed)> {
    let mut line = vec![0u8; ctx.token_line.len()];
    client.read_exact(&mut line).await.ok()?;
    // No reply at all to a wrong token: nothing for a stranger to learn.
    if !same_bytes(&line, &ctx.token_line) {
        return None;
    }
    handoff::recv_byte(client).await.ok()?
}

/// The request whose first byte was `first`. `None`: the client is to be closed (anything it
/// was owed, such as a 400, has been sent).
async fn read_request<C>(client: &mut C, first: u8) -> Option<Request>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let first = [first];
    match first[0] {
        socks::VERSION => socks::read_request(client).await,
        b => http::read_request(client, b).await,
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn proceed<C>(mut client: C, req: Request, ctx: &Ctx, permit: OwnedSemaphorePermit)
where
    C: tunnel::Socket + AsyncWrite + Unpin + Send + 'static,
{
    let Some((mut upstream, record)) = Box::pin(open(&mut client, &req, ctx)).await else {
        return;
    };
    // While a broker runs, a tunnel's TLS hello must not name a brokered host (`hello`).
    let routes = match (&ctx.broker, &req.kind) {
        (Some(b), Kind::Connect | Kind::Socks | Kind::Captured) => b.routes(),
        _ => &[],
    };
    if !routes.is_empty() {
        return Box::pin(checked(&mut client, upstream, req, routes, record, ctx)).await;
    }
    let greeted = Box::pin(greet(&mut client, &mut upstream, &req, &req.early, &record)).await;
    if greeted.is_err() {
        return;
    }
    // The copy gets a task of its own holding only what it needs; this one, sized for every
    // step before, ends. A thousand idle tunnels are a thousand of these small tasks.
    tokio::spawn(async move {
        tunnel::run(&client, &upstream, &record.up, &record.down).await;
        drop((record, permit));
    });
}

/// Decides and dials: the upstream connection and the tunnel's record, or `None` once the
/// client has been told why not.
async fn open<C>(client: &mut C, req: &Request, ctx: &Ctx) -> Option<(TcpStream, Record)>
where
    C: AsyncWrite + Unpin,
{
    let host = req.host.to_string();
    let label = req.kind.label();
    tally::lock(&ctx.tally).request(&host, req.port);
    let entry = |allowed, reason| Entry::new(&host, req.port, label, allowed, reason);
    // A brokered host is reached through the broker only: directly, the agent could send it
    // a key of its own (and the project to that key's account).
    let bypass = ctx
        .broker
        .as_ref()
        .and_then(|b| crate::net::broker::bypass(b.routes(), &req.host));
    let opened = match bypass {
        Some(why) => Err(Refusal::Denied(why)),
        None => ctx.dialer.open(&req.host, req.port).await,
    };
    match opened {
        Ok((upstream, reason)) => {
            tally::lock(&ctx.tally).connected();
            Some((
                upstream,
                Record::new(ctx.tally.clone(), entry(true, reason)),
            ))
        }
        Err(refusal) => {
            tally::lock(&ctx.tally).refused(entry(refusal.allowed(), refusal.reason()));
            let _ = client.write_all(&refusal_reply(req, &host, &refusal)).await;
            None
        }
    }
}

/// A tunnel whose TLS hello is checked first, while a broker runs: the hello must not name a
/// brokered host.
async fn checked<C>(
    client: &mut C,
    mut upstream: TcpStream,
    req: Request,
    routes: &[crate::net::broker::Route],
    record: Record,
    ctx: &Ctx,
) where
    C: tunnel::Socket + AsyncWrite + Unpin,
{
    if greet(client, &mut upstream, &req, &[], &record)
        .await
        .is_err()
    {
        return;
    }
    let host = req.host.to_string();
    let entry = |allowed, reason| Entry::new(&host, req.port, req.kind.label(), allowed, reason);
    let mut refused = None;
    let up = async {
        let first = hello::first_flight(&mut tunnel::Reader(&*client), req.early, |h| {
            crate::net::broker::bypass(routes, h)
        })
        .await?;
        let first = match first {
            Ok(first) => first,
            Err(why) => {
                refused = Some(why);
                return Err(std::io::ErrorKind::PermissionDenied.into());
            }
        };
        tunnel::write_all(&upstream, &first).await?;
        record.add_up(first.len());
        // Checked: from here the kernel copies (`tunnel`), nothing else is read.
        tunnel::pump(&*client, &upstream, &record.up).await
    };
    let _ = tokio::try_join!(up, tunnel::pump(&upstream, &*client, &record.down));
    if let Some(why) = refused {
        tally::lock(&ctx.tally).refused(entry(false, why));
    }
}

/// Tells the client the tunnel is open (or sends the origin the rewritten request), then
/// passes on `early`, what the client sent with its request.
async fn greet<C: AsyncWrite + Unpin>(
    client: &mut C,
    upstream: &mut TcpStream,
    req: &Request,
    early: &[u8],
    record: &Record,
) -> std::io::Result<()> {
    match &req.kind {
        Kind::Connect => client.write_all(http::CONNECT_OK).await?,
        // The client connected to the destination's (synthetic) address: nothing to say.
        Kind::Captured => {}
        Kind::Socks => client.write_all(&socks::reply(socks::SUCCEEDED)).await?,
        Kind::Forward { head, .. } => {
            upstream.write_all(head).await?;
            record.add_up(head.len());
        }
    }
    upstream.write_all(early).await?;
    record.add_up(early.len());
    Ok(())
}

fn refusal_reply(req: &Request, host: &str, refusal: &Refusal) -> Vec<u8> {
    match (&req.kind, refusal) {
        // It speaks its own protocol (TLS, mostly): it is closed, as the relay closed it.
        (Kind::Captured, _) => Vec::new(),
        (Kind::Socks, Refusal::Denied(_)) => socks::reply(socks::NOT_ALLOWED).to_vec(),
        (Kind::Socks, Refusal::Unresolved(_)) => socks::reply(socks::HOST_UNREACHABLE).to_vec(),
        (Kind::Socks, Refusal::Unreachable(e)) => socks::reply(socks::dial_error_code(e)).to_vec(),
        (_, Refusal::Denied(reason)) => http::blocked(host, req.port, reason),
        (_, other) => http::bad_gateway(host, req.port, &other.reason()),
    }
}
