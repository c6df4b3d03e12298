//! Probes of what reaches out: socket families, UNIX sockets, the terminal, privileges,
//! /dev and /sys, the network.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

pub(super) fn sockets() -> Vec<Probe> {
    use libc::*;
    let fam = "socket-families";
    let unix = "unix-sockets";
    vec![
        p(
            "af-vsock",
            fam,
            Blocked,
            "AF_VSOCK (to the hypervisor) is refused",
            |_| fails(raw::socket(AF_VSOCK, SOCK_STREAM)),
        ),
        p(
            "af-alg",
            fam,
            Blocked,
            "AF_ALG (kernel crypto) is refused",
            |_| fails(raw::socket(AF_ALG, SOCK_SEQPACKET)),
        ),
        p(
            "af-packet",
            fam,
            Blocked,
            "AF_PACKET (raw frames) is refused",
            |_| fails(raw::socket(AF_PACKET, SOCK_RAW)),
        ),
        p(
            "af-key",
            fam,
            Blocked,
            "AF_KEY (IPsec keys) is refused",
            |_| fails(raw::socket(AF_KEY, SOCK_RAW)),
        ),
        p(
            "af-bluetooth",
            fam,
            Blocked,
            "AF_BLUETOOTH is refused",
            |_| fails(raw::socket(AF_BLUETOOTH, SOCK_STREAM)),
        ),
        p("af-unix", fam, Allowed, "AF_UNIX sockets open", |_| {
            fails(raw::socket(AF_UNIX, SOCK_STREAM))
        }),
        p("af-inet", fam, Allowed, "AF_INET sockets open", |_| {
            fails(raw::socket(AF_INET, SOCK_STREAM))
        }),
        p(
            "af-netlink",
            fam,
            Allowed,
            "AF_NETLINK sockets open",
            |_| fails(raw::socket(AF_NETLINK, SOCK_RAW)),
        ),
        p(
            "unix-abstract-host",
            unix,
            Blocked,
            "a host abstract socket is unreachable",
            |c| {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(&c.abstract_name);
                io_fails(addr.and_then(|a| UnixStream::connect_addr(&a)))
            },
        ),
        p(
            "unix-path-host",
            unix,
            Blocked,
            "a host socket file is unreachable",
            |c| io_fails(UnixStream::connect(path(&c.socket_path))),
        ),
        p(
            "unix-runtime-dir",
            unix,
            Blocked,
            "no $XDG_RUNTIME_DIR (D-Bus, agents)",
            |_| {
                let uid =
                    fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
                absent(&Path::new("/run/user").join(uid.unwrap_or(0).to_string()))
            },
        ),
        p(
            "unix-any-socket",
            unix,
            Blocked,
            "no socket file in /run, /tmp, /var or ~",
            |c| {
                let mut found = Vec::new();
                for dir in [
                    PathBuf::from("/run"),
                    "/tmp".into(),
                    "/var".into(),
                    c.home(),
                ] {
                    find_sockets(&dir, 4, &mut found);
                }
                if found.is_empty() {
                    blocked("none")
                } else {
                    allowed(found.join(", "))
                }
            },
        ),
        p(
            "unix-local",
            unix,
            Allowed,
            "UNIX sockets within the sandbox work",
            |_| {
                let r = UnixDatagram::pair().and_then(|(a, b)| {
                    a.send(b"x")?;
                    let mut buf = [0u8; 1];
                    b.recv(&mut buf)
                });
                io_fails(r)
            },
        ),
    ]
}

pub(super) fn find_sockets(dir: &Path, depth: u32, found: &mut Vec<String>) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        // agentbox's own proxy socket (filtered network) is the one door that is meant to be.
        if e.path().starts_with(crate::inside::SOCKET_DIR) {
            continue;
        }
        if t.is_socket() {
            found.push(e.path().display().to_string());
        } else if t.is_dir() && depth > 0 {
            find_sockets(&e.path(), depth - 1, found);
        }
    }
}

pub(super) fn terminal() -> Vec<Probe> {
    const C: &str = "terminal";
    vec![
        p(
            "tiocsti",
            C,
            Blocked,
            "TIOCSTI cannot type into a terminal",
            |_| own_tty(crate::seccomp::TIOCSTI),
        ),
        p(
            "tiocsti-high-bits",
            C,
            Blocked,
            "TIOCSTI with high bits set is caught too",
            |_| own_tty(crate::seccomp::TIOCSTI | (1 << 32)),
        ),
        p(
            "tioclinux",
            C,
            Blocked,
            "TIOCLINUX is refused by the filter",
            |_| match raw::open_pty() {
                Ok((_m, s)) => fails_with(
                    raw::ioctl_byte(s.as_raw_fd(), crate::seccomp::TIOCLINUX, &mut 2u8.clone()),
                    libc::EPERM,
                ),
                Err(e) => blocked(format!("no pty: {}", errno_text(e))),
            },
        ),
        p(
            "tiocgwinsz",
            C,
            Allowed,
            "ordinary terminal ioctls work",
            |_| tty(raw::window_size),
        ),
    ]
}

/// Runs an ioctl probe on a fresh pseudo-terminal.
/// TIOCSTI-like `request` on a new pty that the probe's child has made its own terminal.
fn own_tty(request: u64) -> Obs {
    match raw::open_pty() {
        Ok((_m, s)) => match raw::ioctl_byte_on_own_tty(s.as_raw_fd(), request, b'x') {
            Ok(r) => fails(r),
            Err(()) => blocked("could not make a pty the controlling terminal to test on"),
        },
        Err(e) => blocked(format!("no pty to test on: {}", errno_text(e))),
    }
}

pub(super) fn tty(f: impl Fn(BorrowedFd) -> Sys) -> Obs {
    match raw::open_pty() {
        Ok((_m, s)) => fails(f(s.as_fd())),
        Err(e) => blocked(format!("no pty to test on: {}", errno_text(e))),
    }
}

pub(super) fn privileges() -> Vec<Probe> {
    let caps = "privileges";
    let dev = "dev-sys";
    vec![
        p(
            "cap-effective",
            caps,
            Blocked,
            "no effective capabilities",
            |_| match status_field("CapEff") {
                Some(v) if v.trim_start_matches('0').is_empty() => blocked("CapEff 0"),
                other => allowed(format!("CapEff {other:?}")),
            },
        ),
        p(
            "cap-bounding",
            caps,
            Blocked,
            "no capability can be regained",
            |_| match status_field("CapBnd") {
                Some(v) if v.trim_start_matches('0').is_empty() => blocked("CapBnd 0"),
                other => allowed(format!("CapBnd {other:?}")),
            },
        ),
        p(
            "no-new-privs",
            caps,
            Blocked,
            "setuid binaries gain nothing (no_new_privs)",
            |_| match status_field("NoNewPrivs") {
                Some(v) if v == "1" => blocked("NoNewPrivs 1"),
                other => allowed(format!("NoNewPrivs {other:?}")),
            },
        ),
        p("dev-mem", dev, Blocked, "/dev/mem is not there", |_| {
            absent(Path::new("/dev/mem"))
        }),
        p("dev-kvm", dev, Blocked, "/dev/kvm is not there", |_| {
            absent(Path::new("/dev/kvm"))
        }),
        p("dev-disks", dev, Blocked, "no block device in /dev", |_| {
            use std::os::unix::fs::FileTypeExt;
            let disks: Vec<String> = fs::read_dir("/dev")
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
                        .map(|e| e.path().display().to_string())
                        .collect()
                })
                .unwrap_or_default();
            if disks.is_empty() {
                blocked("none")
            } else {
                allowed(disks.join(", "))
            }
        }),
        p(
            "sys-cgroup",
            dev,
            Blocked,
            "/sys/fs/cgroup is not writable",
            |_| write_fails(Path::new("/sys/fs/cgroup/agentbox-probe")),
        ),
        p(
            "proc-sys-write",
            dev,
            Blocked,
            "host kernel settings (core_pattern) cannot be written",
            |_| {
                // Writes back the value it reads, so even a broken sandbox changes nothing.
                let path = "/proc/sys/kernel/core_pattern";
                let r = fs::read(path)
                    .and_then(|v| fs::OpenOptions::new().write(true).open(path)?.write_all(&v));
                io_fails(r)
            },
        ),
        p(
            "sysrq",
            dev,
            Blocked,
            "/proc/sysrq-trigger cannot be written",
            |_| {
                io_fails(
                    fs::OpenOptions::new()
                        .write(true)
                        .open("/proc/sysrq-trigger"),
                )
            },
        ),
        p(
            "dev-null",
            dev,
            Allowed,
            "/dev/null and /dev/urandom work",
            |_| {
                let r = fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .and_then(|mut f| {
                        f.write_all(b"x")?;
                        let mut b = [0u8; 8];
                        fs::File::open("/dev/urandom")?.read_exact(&mut b)
                    });
                io_fails(r)
            },
        ),
    ]
}

pub(super) fn network() -> Vec<Probe> {
    const C: &str = "network";
    vec![
        p(
            "net-host-loopback",
            C,
            Blocked,
            "a server on the host's loopback is unreachable",
            |c| {
                let addr = format!("127.0.0.1:{}", c.tcp_port);
                let r = addr
                    .parse()
                    .map_err(std::io::Error::other)
                    .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)));
                match r {
                    Err(e) => blocked(errno_text(e.raw_os_error().unwrap_or(0))),
                    Ok(mut s) => {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = String::new();
                        let _ = s.read_to_string(&mut buf);
                        if buf.contains(&c.greeting) {
                            allowed("reached the host's server")
                        } else {
                            blocked("connected to something that is not the host's server")
                        }
                    }
                }
            },
        ),
        p(
            "net-route",
            C,
            Blocked,
            "no route to the internet (192.0.2.1)",
            |_| udp_route("192.0.2.1:9"),
        ),
        p(
            "net-route-v6",
            C,
            Blocked,
            "no IPv6 route to the internet (2001:db8::1)",
            |_| udp_route("[2001:db8::1]:9"),
        ),
        p(
            "net-metadata",
            C,
            Blocked,
            "no route to the cloud metadata address",
            |_| udp_route("169.254.169.254:80"),
        ),
        p("net-dns", C, Blocked, "no DNS server is reachable", |_| {
            let conf = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let servers: Vec<String> = conf
                .lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .map(|s| s.trim().to_owned())
                .collect();
            let external: Vec<&String> = servers
                .iter()
                .filter(|s| !s.starts_with("127.") && *s != "::1")
                .collect();
            match external.first() {
                Some(s) if s.contains(':') => udp_route(&format!("[{s}]:53")),
                Some(s) => udp_route(&format!("{s}:53")),
                // A loopback resolver answers only in the host's network namespace.
                None => match interfaces().iter().any(|i| i != "lo") {
                    true => allowed("a loopback resolver in the host's network"),
                    false => blocked("no resolver reachable"),
                },
            }
        }),
        p(
            "net-interfaces",
            C,
            Blocked,
            "no network interface but loopback",
            |_| {
                let ifs = interfaces();
                if ifs.iter().all(|i| i == "lo") {
                    blocked("only lo")
                } else {
                    allowed(ifs.join(", "))
                }
            },
        ),
        p(
            "net-proxy-handover",
            C,
            Blocked,
            "the host proxy takes no socket the agent passes itself, nor a line of its own",
            |_| proxy_handover(),
        ),
        p(
            "net-loopback-inside",
            C,
            Allowed,
            "loopback inside the sandbox works",
            |_| {
                let r = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| {
                    let a = l.local_addr()?;
                    let _c = TcpStream::connect_timeout(&a, Duration::from_secs(2))?;
                    l.accept().map(|_| ())
                });
                io_fails(r)
            },
        ),
    ]
}

/// With the filtered network the agent can read the proxy token and reach the proxy's
/// socket: as a plain client it is served (the control), but a TCP socket it passes and
/// keeps a copy of must not be (on a shared file description it could turn the proxy's
/// calls blocking), nor may it register a line of its own (the relay holds the only one).
fn proxy_handover() -> Obs {
    use crate::inside::{SOCKET_DIR, SOCKET_NAME, TOKEN_FILE};
    let Ok(token) = fs::read_to_string(TOKEN_FILE) else {
        return blocked("no proxy token here (not the filtered network)");
    };
    let path = Path::new(SOCKET_DIR).join(SOCKET_NAME);
    let open = || -> std::io::Result<UnixStream> {
        let mut u = UnixStream::connect(&path)?;
        u.set_read_timeout(Some(Duration::from_secs(2)))?;
        u.write_all(format!("AGENTBOX {}\n", token.trim()).as_bytes())?;
        Ok(u)
    };
    // An IP literal: the proxy refuses it with a 403 and dials nothing.
    let req = b"CONNECT 192.0.2.1:443 HTTP/1.1\r\n\r\n";
    let first = |r: &mut dyn Read| -> String {
        let mut buf = [0u8; 12];
        match r.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        }
    };
    let control = open().and_then(|mut u| {
        u.write_all(req)?;
        Ok(first(&mut u))
    });
    match control {
        Ok(reply) if reply.starts_with("HTTP/1.1 ") => {}
        Ok(reply) => return blocked(format!("the proxy answered no plain client ({reply:?})")),
        Err(e) => return blocked(format!("proxy socket: {e}")),
    }
    let line = open().and_then(|mut u| {
        u.write_all(&[crate::net::handoff::HELLO])?;
        Ok(first(&mut u))
    });
    if let Ok(answer) = line
        && !answer.is_empty()
    {
        return allowed("the proxy gave the agent a line of its own");
    }
    let passed = (|| -> std::io::Result<String> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut kept = TcpStream::connect(l.local_addr()?)?;
        let (s, _) = l.accept()?;
        let u = open()?;
        let fds = [s.as_fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
        // 0x02: a proxy client's handover byte (`net::handoff`).
        rustix::net::sendmsg(
            &u,
            &[std::io::IoSlice::new(&[0x02])],
            &mut control,
            rustix::net::SendFlags::empty(),
        )?;
        kept.set_read_timeout(Some(Duration::from_secs(2)))?;
        kept.write_all(req)?;
        Ok(first(&mut kept))
    })();
    match passed {
        Ok(reply) if !reply.is_empty() => allowed(format!(
            "the proxy served a socket the agent keeps ({reply:?})"
        )),
        Ok(_) => blocked("a plain client is served; a passed socket is not"),
        Err(e) => blocked(format!("passing a socket: {e}")),
    }
}

pub(super) fn interfaces() -> Vec<String> {
    fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control for the `tiocsti` probes: outside any sandbox, on this kernel, the probe's
    /// own action types into its terminal (or the kernel's legacy_tiocsti=0 refuses it for
    /// everyone), so the sandbox's "blocked" is the filter's doing, not the probe's set-up.
    #[test]
    fn tiocsti_probe_succeeds_outside_the_sandbox() {
        let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti");
        let refused_by_kernel = legacy.is_ok_and(|v| v.trim() == "0");
        let seen = own_tty(crate::seccomp::TIOCSTI);
        assert_eq!(seen.blocked, refused_by_kernel, "{}", seen.detail);
    }
}
