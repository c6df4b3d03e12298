//! `agentbox __ports`, inside the sandbox in front of the command: keeps a few connections open
//! to the host's `--port` socket, and carries each one the host uses to the sandbox's own
//! loopback port it names, one of those given on the command line. It dials nothing else.

use std::ffi::OsString;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::inside::PORTS_INSIDE;

/// How many idle connections the helper keeps open to the host (more connect while these serve).
const STANDBYS: usize = 4;

/// Inside the sandbox: serves the host's connections for `ports`, runs `command` and exits
/// with its status.
pub fn helper_main(tty: bool, ports: Vec<u16>, command: &[OsString]) -> Result<ExitCode> {
    // On a terminal Ctrl-C reaches the whole foreground group: the agent's, not this helper's
    // (its death would end the sandbox). The shim after it gives Ctrl-C back to the command.
    if tty {
        crate::sys::ignore_interrupts()?;
    }
    let ports = Arc::new(ports);
    for _ in 0..STANDBYS {
        let ports = ports.clone();
        std::thread::spawn(move || standby_loop(&ports));
    }
    let (prog, args) = command.split_first().context("no command")?;
    let mut child = match std::process::Command::new(prog).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentbox: {}: {e}", prog.to_string_lossy());
            return Ok(ExitCode::from(match e.kind() {
                std::io::ErrorKind::NotFound => crate::error::EXIT_NOT_FOUND,
                _ => crate::error::EXIT_NOT_EXECUTABLE,
            }));
        }
    };
    // What agentbox (or the relay) passes on goes on to the command, which may end cleanly.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let forwarded: &[i32] = match tty {
        true => &[SIGTERM, SIGHUP],
        false => &[SIGTERM, SIGHUP, SIGINT, SIGQUIT],
    };
    let mut signals =
        signal_hook::iterator::Signals::new(forwarded).context("installing signal handlers")?;
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            crate::sys::send_signal(pid, sig);
        }
    });
    let status = child.wait().context("waiting for the command")?;
    Ok(crate::error::exit_code(status))
}

/// One standby at a time: connect to the host, wait for a port, hand the connection on.
fn standby_loop(ports: &[u16]) {
    loop {
        let Ok(mut up) = UnixStream::connect(PORTS_INSIDE) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let mut head = [0u8; 2];
        if up.read_exact(&mut head).is_err() {
            // The host closed it (too many standbys, or it is ending).
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let port = u16::from_be_bytes(head);
        // The host names only published ports; anything else is not carried.
        if ports.contains(&port) {
            std::thread::spawn(move || carry(up, port));
        }
    }
}

/// Connects to the sandbox's own loopback port (IPv4, then IPv6: a server on `localhost` may
/// listen on either) and copies both ways. Nothing else is ever dialled.
fn carry(up: UnixStream, port: u16) {
    let inner = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .or_else(|_| TcpStream::connect((Ipv6Addr::LOCALHOST, port)));
    // Refused: closing the channel closes the host's client.
    if let Ok(inner) = inner {
        let _ = inner.set_nodelay(true);
        super::pump::pump(up, inner);
    }
}
