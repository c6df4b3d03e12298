//! A run's private directory in agentbox's runtime directory (`ssh-PID`, `docker-PID`,
//! `ports-PID`, `net-PID`: 0700, removed at the end, and a leftover of a SIGKILLed run by the
//! next one), and the UNIX socket server the `--ssh-agent` and `--docker` filters run in it:
//! a thread per connection, at most so many at once. Every write goes through `hostfs`: the
//! runtime directory is one the sandbox reaches.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};

use crate::error::Fail;
use crate::hostfs::{self, Untrusted};

/// Makes `base` (0700, ours) if needed; refuses one that another user could have prepared.
pub fn private_base(base: &Path, uid: u32, areas: &Untrusted) -> Result<()> {
    hostfs::create_dir_all(base, 0o700, areas)?;
    let meta = fs::symlink_metadata(base)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        bail!(Fail::hint(
            format!(
                "{} is not a private directory of yours (another user may have made it)",
                base.display()
            ),
            "remove it, or set XDG_RUNTIME_DIR; agentbox makes it 0700",
        ));
    }
    Ok(())
}

/// Makes `dir` (named `PREFIX-PID` in a private base), after removing the `PREFIX-` leftovers
/// of runs whose agentbox is gone.
pub fn make(dir: &Path, prefix: &str, uid: u32, areas: &Untrusted) -> Result<()> {
    let base = dir.parent().context("a run directory has no parent")?;
    private_base(base, uid, areas)?;
    for old in crate::stale::orphans(base, prefix) {
        if let Err(e) = hostfs::remove_tree(&old, areas) {
            eprintln!("agentbox: warning: leftover of an earlier run: {e:#}");
        }
    }
    hostfs::create_dir(dir, 0o700, areas)
}

/// One connection counted in `open` until it is dropped: when its thread ends, panics, or
/// was never started (a count that only grew would refuse every connection after a while).
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    pub fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::SeqCst);
        Slot(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A socket served in its own run directory; dropping it stops accepting and removes the
/// directory.
pub struct SocketServer {
    dir: PathBuf,
    socket: PathBuf,
    areas: Untrusted,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl SocketServer {
    /// Makes `socket`'s directory (see `make`), binds it (before bwrap starts, which binds it
    /// inside) and serves each connection with `handle` on a thread of its own (`name-conn`),
    /// at most `max` at once: each is a thread and, for the filters, an upstream connection,
    /// so a sandbox opening them without end is stopped there.
    pub fn start(
        socket: &Path,
        prefix: &str,
        name: &str,
        max: usize,
        uid: u32,
        areas: &Untrusted,
        handle: impl Fn(UnixStream) + Send + Sync + 'static,
    ) -> Result<SocketServer> {
        let dir = socket.parent().context("a socket has no directory")?;
        make(dir, prefix, uid, areas)?;
        // From here on, dropping it removes the directory, also when binding fails.
        let mut server = SocketServer {
            dir: dir.to_owned(),
            socket: socket.to_owned(),
            areas: areas.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            accept: None,
        };
        let listener =
            UnixListener::bind(socket).with_context(|| format!("binding the {name} socket"))?;
        let stop = server.stop.clone();
        let open = Arc::new(AtomicUsize::new(0));
        let handle = Arc::new(handle);
        let conn_name = format!("{name}-conn");
        server.accept = Some(
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(conn) = conn else { continue };
                        if open.load(Ordering::SeqCst) >= max {
                            continue;
                        }
                        let slot = Slot::take(&open);
                        let handle = handle.clone();
                        // A connection that misbehaves only ends itself; one whose thread
                        // could not start took its slot with it.
                        let _ =
                            std::thread::Builder::new()
                                .name(conn_name.clone())
                                .spawn(move || {
                                    let _slot = slot;
                                    handle(conn);
                                });
                    }
                })
                .with_context(|| format!("starting the {name} filter"))?,
        );
        Ok(server)
    }

    /// Stops accepting and waits for the accept loop (connections being served go on until
    /// they end).
    pub fn stop(&mut self) {
        if let Some(h) = self.accept.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wakes the accept loop, which then sees the flag.
            let _ = UnixStream::connect(&self.socket);
            let _ = h.join();
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.stop();
        if let Err(e) = hostfs::remove_tree(&self.dir, &self.areas) {
            eprintln!("agentbox: warning: {e:#}");
        }
    }
}
