//! `--port [HOST:]PORT[:PORT]`: a port the agent listens on inside the sandbox, published on the
//! host (its loopback unless an address is named) while the sandbox's network stays filtered or
//! off. This module owns the option's syntax; `helper` is the process inside (`agentbox
//! __ports`), `serve` the host side, `bwrap::ports` its part of the plan.
//!
//! The channel: the host listens on TCP, and on a UNIX socket of its own that the plan binds
//! (alone, read-only) into the sandbox. The helper inside keeps a few connections open to that
//! socket ("standbys"); for each TCP client the host takes one, writes the inside port on it
//! (two bytes), and from then on copies bytes both ways; the helper connects to that port on
//! the sandbox's own loopback and does the same. Every socket of the host's network namespace
//! stays in agentbox on the host: a TCP socket handed into the sandbox could be disconnected
//! (`connect(AF_UNSPEC)`) and connected anywhere the host reaches, which would end `--net none`.
//! The host never connects to a path the sandbox could replace: the sandbox connects to it.

pub mod helper;
mod pump;
pub mod serve;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use crate::error::Fail;

/// One `--port`: `host:host_port` on the host reaches `port` on the sandbox's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub host: IpAddr,
    pub host_port: u16,
    pub port: u16,
}

impl Publish {
    /// Loopback: only this machine reaches it. Anything else is the network's too.
    pub fn loopback(&self) -> bool {
        self.host.is_loopback()
    }

    pub fn host_addr(&self) -> String {
        match self.host {
            IpAddr::V4(a) => format!("{a}:{}", self.host_port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.host_port),
        }
    }
}

impl std::fmt::Display for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.host_addr(), self.port)
    }
}

const SYNTAX: &str = "--port 3000 (host 127.0.0.1:3000 to 3000 inside), --port 8080:3000 (host \
                      8080 to 3000 inside), --port 127.0.0.2:8080:3000; another address only as \
                      an IP ([::1]:3000 for IPv6)";

fn bad(spec: &str, why: &str) -> anyhow::Error {
    Fail::hint(format!("--port {spec:?}: {why}"), SYNTAX).into()
}

fn port_of(spec: &str, s: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(bad(spec, &format!("{s:?} is not a port (1-65535)"))),
    }
}

/// The host address: an IP, or `localhost` (127.0.0.1). A name is refused: what it resolves
/// to could change, and a non-loopback bind must be what the user wrote.
fn host_of(spec: &str, s: &str) -> Result<IpAddr> {
    if s == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let ip = match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().map(IpAddr::V6),
        None => s.parse::<Ipv4Addr>().map(IpAddr::V4),
    };
    ip.map_err(|_| bad(spec, &format!("{s:?} is not an IP address")))
}

/// `PORT`, `HOSTPORT:PORT`, `HOST:PORT` or `HOST:HOSTPORT:PORT` (HOST an IPv4 address,
/// `localhost`, or `[IPv6]`).
pub fn parse(spec: &str) -> Result<Publish> {
    let (host, rest) = match spec.strip_prefix('[') {
        Some(_) => {
            let end = spec
                .find("]:")
                .ok_or_else(|| bad(spec, "[IPv6] needs a port"))?;
            (Some(&spec[..=end]), &spec[end + 2..])
        }
        None => (None, spec),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (h, hp, p) = match (host, parts.as_slice()) {
        (None, [p]) => (localhost, *p, *p),
        (None, [a, p]) if a.bytes().all(|b| b.is_ascii_digit()) => (localhost, *a, *p),
        (None, [h, p]) => (host_of(spec, h)?, *p, *p),
        (None, [h, hp, p]) => (host_of(spec, h)?, *hp, *p),
        (Some(h), [p]) => (host_of(spec, h)?, *p, *p),
        (Some(h), [hp, p]) => (host_of(spec, h)?, *hp, *p),
        _ => return Err(bad(spec, "expected [HOST:]PORT[:PORT]")),
    };
    Ok(Publish {
        host: h,
        host_port: port_of(spec, hp)?,
        port: port_of(spec, p)?,
    })
}

/// Every `--port` (flags and config), each host address and port once.
pub fn parse_all(specs: &[String]) -> Result<Vec<Publish>> {
    let mut out: Vec<Publish> = Vec::new();
    for spec in specs {
        let p = parse(spec.trim())?;
        if out.contains(&p) {
            continue;
        }
        if out
            .iter()
            .any(|o| o.host == p.host && o.host_port == p.host_port)
        {
            return Err(Fail::hint(
                format!("--port: {} is published twice", p.host_addr()),
                "publish each host port once: --port HOSTPORT:PORT picks another host port",
            )
            .into());
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(host: &str, hp: u16, port: u16) -> Publish {
        Publish {
            host: host.parse().unwrap(),
            host_port: hp,
            port,
        }
    }

    #[test]
    fn specs_parse_as_docker_spells_them() {
        let table = [
            ("3000", p("127.0.0.1", 3000, 3000)),
            ("8080:3000", p("127.0.0.1", 8080, 3000)),
            ("127.0.0.2:3000", p("127.0.0.2", 3000, 3000)),
            ("localhost:3000", p("127.0.0.1", 3000, 3000)),
            ("0.0.0.0:8080:3000", p("0.0.0.0", 8080, 3000)),
            ("[::1]:3000", p("::1", 3000, 3000)),
            ("[::1]:8080:3000", p("::1", 8080, 3000)),
            ("65535", p("127.0.0.1", 65535, 65535)),
        ];
        for (spec, want) in table {
            assert_eq!(parse(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn bad_specs_are_refused_with_the_syntax() {
        for spec in [
            "",
            "0",
            "65536",
            "-1",
            "+80",
            "abc",
            "host.example:3000",
            "1:2:3:4",
            "[::1]",
            "::1:3000",
            "3000:",
            ":3000",
            "[::1]:",
            "127.0.0.1:0:3000",
            "[nothing]:3000",
            "1.2.3:80",
        ] {
            let e = parse(spec).unwrap_err();
            let f = e.downcast_ref::<Fail>().expect("a Fail with a hint");
            assert!(f.to_string().contains("--port"), "{spec}: {f}");
        }
    }

    #[test]
    fn a_host_port_is_published_once() {
        let all = parse_all(&["3000".into(), "3000".into(), "127.0.0.2:3000".into()]).unwrap();
        assert_eq!(all.len(), 2);
        assert!(parse_all(&["3000".into(), "3000:4000".into()]).is_err());
        assert!(parse_all(&["3000:4000".into(), "3001:4000".into()]).is_ok());
    }

    #[test]
    fn only_loopback_is_quiet() {
        assert!(parse("127.0.0.5:1").unwrap().loopback());
        assert!(parse("[::1]:1").unwrap().loopback());
        assert!(!parse("0.0.0.0:1").unwrap().loopback());
        assert!(!parse("192.168.1.4:1").unwrap().loopback());
    }
}
