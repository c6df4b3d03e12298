//! The host side of `--port` for one run: the TCP listeners (bound before bwrap starts, so a
//! taken port is refused before anything else is made), a private directory (`ports-PID`, 0700,
//! in agentbox's runtime directory; removed at the end, and a leftover of a SIGKILLed run by the
//! next one) with the socket the plan binds inside, and threads that pair each TCP client with
//! a standby connection of the helper inside. At the end the listeners are closed: nothing
//! listens on the host after the run. Every write goes through `hostfs`.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Publish;
use crate::error::Fail;
use crate::hostfs::{self, Untrusted};

/// Idle connections from inside held at once: the helper keeps a few; a sandbox opening more
/// cannot make the host hold them without end.
const MAX_STANDBYS: usize = 32;
/// Clients carried at once (two threads each); more wait in the listen queue... or are closed.
const MAX_ACTIVE: usize = 512;
/// How long a client waits for the helper to offer a connection.
const WAIT_STANDBY: Duration = Duration::from_secs(10);

/// The socket's name in its directory.
pub const SOCKET: &str = "ports.sock";

/// This run's socket: `ports-PID/ports.sock` in `runtime` (agentbox's runtime directory).
pub fn socket_path(runtime: &Path) -> PathBuf {
    runtime
        .join(format!("ports-{}", std::process::id()))
        .join(SOCKET)
}

/// The helper's idle connections, oldest first.
#[derive(Default)]
struct Pool {
    idle: Mutex<VecDeque<UnixStream>>,
    offered: Condvar,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<UnixStream>> {
        match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A standby, waiting a while for one; `None` when none came or the run is ending.
    fn take(&self, stop: &AtomicBool) -> Option<UnixStream> {
        let deadline = Instant::now() + WAIT_STANDBY;
        let mut idle = self.lock();
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(s) = idle.pop_front() {
                return Some(s);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            idle = match self
                .offered
                .wait_timeout(idle, left.min(Duration::from_millis(200)))
            {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// A listener thread and its listener: shutting the listener down ends its blocking `accept`
/// (EINVAL) and its listening at once, whatever the sandbox or the clients do meanwhile.
struct Accepting {
    thread: JoinHandle<()>,
    listener: Arc<dyn AsFd + Send + Sync>,
}

pub struct Running {
    dir: PathBuf,
    areas: Untrusted,
    stop: Arc<AtomicBool>,
    pool: Arc<Pool>,
    accepting: Vec<Accepting>,
}

/// The run's published ports, listening, when the plan binds the socket (`socket`).
pub fn for_run(
    ports: &[Publish],
    socket: Option<&Path>,
    uid: u32,
    areas: &Untrusted,
) -> Result<Option<Running>> {
    match socket {
        Some(s) if !ports.is_empty() => start(ports, s, uid, areas).map(Some),
        _ => Ok(None),
    }
}

fn bind(p: &Publish) -> Result<TcpListener> {
    let addr = SocketAddr::new(p.host, p.host_port);
    TcpListener::bind(addr).map_err(|e| {
        let (why, hint) = match e.kind() {
            std::io::ErrorKind::AddrInUse => (
                "is already in use on the host".to_owned(),
                format!(
                    "publish it on another host port: --port {}:{} (`ss -ltnp` shows what \
                     listens on {})",
                    p.host_port.wrapping_add(1).max(1),
                    p.port,
                    p.host_port
                ),
            ),
            std::io::ErrorKind::AddrNotAvailable => (
                "is not an address of this host".to_owned(),
                "name one of its addresses, or leave it out for 127.0.0.1".to_owned(),
            ),
            std::io::ErrorKind::PermissionDenied => (
                "needs privileges (a port below 1024)".to_owned(),
                format!("publish it on a higher host port: --port 8080:{}", p.port),
            ),
            _ => (format!(": {e}"), "--port HOSTPORT:PORT".to_owned()),
        };
        Fail::hint(format!("--port: {addr} {why}"), hint).into()
    })
}

/// Binds every host port first (a taken one is refused with nothing made), then the directory
/// and the socket, and starts serving.
pub fn start(ports: &[Publish], socket: &Path, uid: u32, areas: &Untrusted) -> Result<Running> {
    let listeners = ports
        .iter()
        .map(|p| Ok((*p, bind(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let dir = socket.parent().context("ports socket has no directory")?;
    crate::rundir::make(dir, "ports-", uid, areas)?;
    let mut running = Running {
        dir: dir.to_owned(),
        areas: areas.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        pool: Arc::default(),
        accepting: Vec::new(),
    };
    let unix = Arc::new(UnixListener::bind(socket).context("binding the --port socket")?);
    let (stop, pool, l) = (running.stop.clone(), running.pool.clone(), unix.clone());
    let thread = std::thread::Builder::new()
        .name("ports-inside".into())
        .spawn(move || offers(&l, &stop, &pool))
        .context("starting --port")?;
    running.accepting.push(Accepting {
        thread,
        listener: unix,
    });
    let active = Arc::new(AtomicUsize::new(0));
    for (p, tcp) in listeners {
        let tcp = Arc::new(tcp);
        let (stop, pool, active) = (running.stop.clone(), running.pool.clone(), active.clone());
        let l = tcp.clone();
        let thread = std::thread::Builder::new()
            .name("ports-host".into())
            .spawn(move || clients(&l, p.port, &stop, &pool, &active))
            .context("starting --port")?;
        running.accepting.push(Accepting {
            thread,
            listener: tcp,
        });
    }
    Ok(running)
}

/// The helper's standbys, kept until a client takes one.
fn offers(listener: &UnixListener, stop: &AtomicBool, pool: &Pool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            // Out of fds, say: not a busy loop meanwhile.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let mut idle = pool.lock();
        if idle.len() < MAX_STANDBYS {
            idle.push_back(conn);
            pool.offered.notify_one();
        }
    }
}

/// The host's clients of one published port, each carried in on a standby.
fn clients(
    l: &TcpListener,
    port: u16,
    stop: &Arc<AtomicBool>,
    pool: &Arc<Pool>,
    active: &Arc<AtomicUsize>,
) {
    for conn in l.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if active.load(Ordering::SeqCst) >= MAX_ACTIVE {
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (stop, pool, open) = (stop.clone(), pool.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("ports-conn".into())
            .spawn(move || {
                carry_in(conn, port, &stop, &pool);
                open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // The client went with the closure; its place is free again.
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Names the port on a standby (one that has gone is passed over) and copies both ways.
fn carry_in(client: TcpStream, port: u16, stop: &AtomicBool, pool: &Pool) {
    let _ = client.set_nodelay(true);
    while let Some(mut up) = pool.take(stop) {
        if up.write_all(&port.to_be_bytes()).is_ok() {
            super::pump::pump(client, up);
            return;
        }
    }
}

impl Running {
    /// Closes the listeners and removes the directory (what dropping it does, said where the
    /// run ends).
    pub fn finish(self) {
        drop(self);
    }

    fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.pool.offered.notify_all();
        for a in self.accepting.drain(..) {
            // The accept loop wakes with an error, sees the flag and returns.
            let _ = rustix::net::shutdown(&a.listener, rustix::net::Shutdown::Read);
            let _ = a.thread.join();
        }
        // The idle standbys: the helper sees them end with the sandbox anyway.
        self.pool.lock().clear();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_accepting();
        if let Err(e) = hostfs::remove_tree(&self.dir, &self.areas) {
            eprintln!("agentbox: warning: {e:#}");
        }
    }
}
