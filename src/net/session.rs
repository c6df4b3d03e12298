//! The host side of one filtered-network run: the private socket directory (0700, removed at
//! the end; a leftover from a SIGKILLed run is removed by the next one), the proxy on it, and
//! what is reported at exit (a one-line summary of what was blocked, `--learn`'s allowlist).
//! Every write here (the directory, its removal, the `--net-log` file) goes through `hostfs`:
//! the log is often in the project, and the runtime directory is one the sandbox reaches.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::hostfs::{self, Untrusted};
use crate::inside::SOCKET_NAME;
use crate::net::hint;
use crate::net::proxy::{self, ProxyConfig, ProxyHandle, Summary};
use crate::net::rules::NetFilter;
use crate::text::printable_str;

/// What one filtered-network run generates: the private directory that will hold the proxy's
/// socket (created at launch, 0700), a token other local processes cannot guess, and the ids
/// the relay gives back to the agent. Run-scoped state, made after the host's facts are read
/// and before the plan, which binds the socket and writes the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSession {
    pub dir: PathBuf,
    pub token: String,
    pub uid: u32,
    pub gid: u32,
    /// The credential broker's routes (none: no broker).
    pub broker: Vec<crate::net::broker::Route>,
}

impl NetSession {
    /// This run's: `net-PID` in `runtime` (agentbox's runtime directory), a fresh token.
    pub fn new(runtime: &Path, uid: u32, gid: u32) -> Result<Self> {
        Ok(NetSession {
            dir: runtime.join(format!("net-{}", std::process::id())),
            token: random_token()?,
            uid,
            gid,
            broker: Vec::new(),
        })
    }
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut bytes)
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub struct Running {
    dir: PathBuf,
    areas: Untrusted,
    proxy: Option<ProxyHandle>,
    learn: bool,
}

/// Removes `net-PID` directories whose agentbox is gone, whatever was done inside them.
fn sweep(base: &Path, areas: &Untrusted) {
    for dir in crate::stale::orphans(base, "net-") {
        if let Err(e) = hostfs::remove_tree(&dir, areas) {
            eprintln!("agentbox: warning: leftover of an earlier run: {e:#}");
        }
    }
}

/// The socket directory made and the socket bound, the proxy not started yet: bwrap can start
/// meanwhile (connections wait in the socket's queue), which takes the proxy's start-up off the
/// sandbox's.
pub struct Pending {
    running: Running,
    listener: std::os::unix::net::UnixListener,
    config: ProxyConfig,
}

impl Pending {
    pub fn start(self) -> Result<Running> {
        let mut running = self.running;
        running.proxy = Some(proxy::start(self.listener, self.config)?);
        Ok(running)
    }
}

/// `cwd` is agentbox's current directory, against which a relative `--net-log` is read;
/// `refresh` gives the rules as the config files say now (`pickup`).
pub fn prepare(
    net: &NetSession,
    filter: &NetFilter,
    areas: &Untrusted,
    cwd: &Path,
    refresh: Option<proxy::Refresh>,
) -> Result<Pending> {
    let base = net.dir.parent().context("socket directory has no parent")?;
    crate::rundir::private_base(base, net.uid, areas)?;
    sweep(base, areas);
    hostfs::create_dir(&net.dir, 0o700, areas)?;
    // From here on, dropping `running` removes the directory again.
    let running = Running {
        dir: net.dir.clone(),
        areas: areas.clone(),
        proxy: None,
        learn: filter.learn,
    };
    let listener = std::os::unix::net::UnixListener::bind(net.dir.join(SOCKET_NAME))
        .context("binding the proxy socket")?;
    let log = match &filter.log {
        // Often in the project, where an earlier run could have left a symlink to the user's
        // shell rc file, or a FIFO, in its place.
        Some(p) => Some(
            hostfs::open_file(&cwd.join(p), hostfs::Write::Append, areas)
                .context("opening --net-log")?,
        ),
        None => None,
    };
    let config = ProxyConfig {
        policy: filter.rules.clone(),
        token: net.token.clone(),
        fixed: filter.fixed.clone(),
        log,
        reload: refresh,
        broker: net.broker.clone(),
    };
    Ok(Pending {
        running,
        listener,
        config,
    })
}

impl Running {
    /// Stops the proxy, removes the directory, reports, and returns what the proxy saw.
    pub fn finish(mut self) -> Option<Summary> {
        let summary = self.proxy.take()?.stop();
        report(&summary, self.learn);
        Some(summary)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            let _ = p.stop();
        }
        if let Err(e) = hostfs::remove_tree(&self.dir, &self.areas) {
            eprintln!("agentbox: warning: {e:#}");
        }
    }
}

fn report(s: &Summary, learn: bool) {
    let mut err = std::io::stderr().lock();
    if !s.denied.is_empty() {
        let total: u64 = s.denied.iter().map(|d| d.3).sum();
        let shown: Vec<String> = s
            .denied
            .iter()
            .take(5)
            .map(|(h, p, why, n)| {
                // Names are checked by the proxy; escaped here all the same, as everything
                // the sandbox chose is before it reaches the terminal.
                format!("{}:{p} ({}) x{n}", printable_str(h), printable_str(why))
            })
            .collect();
        let more = s.denied.len().saturating_sub(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(
            err,
            "agentbox: blocked {total} request(s): {}{more}",
            shown.join(", ")
        );
        let hosts = hint::allowable(s);
        if !hosts.is_empty() {
            let _ = writeln!(err, "  to allow: agentbox allow {}", hosts.join(" "));
        }
        let private = hint::private(s);
        if !private.is_empty() {
            let _ = writeln!(
                err,
                "  allowed, but private addresses (refused unless named): --allow-private-host {}",
                private.join(" --allow-private-host ")
            );
        }
    }
    if learn {
        // A name refused for its private address is already allowed: saying "allow it" again
        // would not help, so it is named with its reason instead.
        let private = hint::private(s);
        // The profile's logins closed while its key is brokered are named apart, not offered.
        let closed = hint::closed(s);
        let hosts: Vec<String> = s
            .requested
            .iter()
            .filter(|(h, _)| !private.contains(&printable_str(h)))
            .map(|(h, p)| hint::pattern_of(h, *p))
            .filter(|p| !closed.contains(p))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let _ = writeln!(
            err,
            "agentbox: --learn: the sandbox asked for {} host(s):",
            hosts.len()
        );
        let flags: Vec<String> = hosts
            .iter()
            .map(|h| format!("--allow-domain {h}"))
            .collect();
        let _ = writeln!(err, "  as flags:  {}", flags.join(" "));
        let quoted: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
        let _ = writeln!(err, "  in config: allow_domains = [{}]", quoted.join(", "));
        if !hosts.is_empty() {
            let _ = writeln!(err, "  for good:  agentbox allow {}", hosts.join(" "));
        }
        let _ = writeln!(
            err,
            "  (with --net-log FILE, `agentbox allow --from-learn FILE` takes the refused ones)"
        );
        for h in &closed {
            let _ = writeln!(err, "  {h}: {}", crate::net::rules::CLOSED_LOGIN);
        }
        for h in &private {
            let _ = writeln!(
                err,
                "  {h}: allowed, but it resolves to a private address, refused unless named: \
                 --allow-private-host {h}"
            );
        }
    }
}
