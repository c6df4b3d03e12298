//! The network allowlist: `--allow-domain` / `--deny-domain` patterns, the decision on a host
//! name before any DNS lookup, and the check of resolved addresses. Pure: no I/O.

use std::fmt;
use std::net::IpAddr;

use crate::error::Fail;

/// The reasons a request is refused for want of a pattern (the exit hint offers to allow
/// these), and the start of the reason for an allowed name with only non-public addresses.
pub const NOT_LISTED: &str = "not in the allowlist";
pub const IP_NOT_LISTED: &str = "an IP address no --allow-domain names";
/// The refusal of a profile host closed while the broker holds the profile's key
/// (`NetFilter::drop_login_hosts`): not a host missing from the list, so the failure hint and
/// `agentbox allow --from-learn` do not offer to allow it for every run.
pub const CLOSED_LOGIN: &str = "closed while the broker holds the profile's key (a login or another API: a way out with another account)";
pub const PRIVATE_ADDRESS: &str = "resolves to non-public address";

/// Ports a pattern without one allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// What a pattern names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com` (lowercase, no trailing dot).
    Exact(String),
    /// `*.example.com`: any name below `example.com`, not `example.com` itself.
    Subdomains(String),
    /// `127.0.0.1`, `[::1]`.
    Ip(IpAddr),
}

/// One `--allow-domain` / `--deny-domain` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub host: HostPattern,
    /// `None`: the default ports (80 and 443).
    pub port: Option<u16>,
    /// As the user wrote it, for messages and logs.
    pub text: String,
}

/// The host part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// From a request's host field: an IP literal (`[v6]` or v4) or a name, normalised.
    pub fn parse(raw: &str) -> Option<Host> {
        let trimmed = raw.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        let name = raw.trim_end_matches('.').to_ascii_lowercase();
        valid_name(&name).then_some(Host::Name(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
        })
}

fn bad(text: &str, why: &str) -> anyhow::Error {
    Fail::hint(
        format!("bad domain pattern {text:?}: {why}"),
        "use api.example.com, *.example.com or host:port (e.g. 127.0.0.1:8080)",
    )
    .into()
}

impl Pattern {
    pub fn parse(text: &str) -> anyhow::Result<Pattern> {
        let t = text.trim();
        // Split off a port: "[v6]:port", "host:port"; a bare v6 literal has several colons.
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| bad(text, "unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad(text, "junk after ]")),
            };
            (h, port)
        } else if t.matches(':').count() == 1 {
            let (h, p) = t.split_once(':').unwrap_or((t, ""));
            (h, Some(p))
        } else {
            (t, None)
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad(text, "the port must be a number from 1 to 65535"))?,
            ),
            None => None,
        };
        let host = if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if host == "*" {
            return Err(bad(
                text,
                "a bare * matches every host: use --net host to allow all, --net none to deny all",
            ));
        } else if let Some(base) = host.strip_prefix("*.") {
            let base = base.trim_end_matches('.').to_ascii_lowercase();
            if !valid_name(&base) {
                return Err(bad(text, "not a domain name"));
            }
            if !base.contains('.') {
                return Err(bad(text, "a whole top-level domain is too broad"));
            }
            HostPattern::Subdomains(base)
        } else {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            if !valid_name(&name) {
                return Err(bad(text, "not a domain name"));
            }
            HostPattern::Exact(name)
        };
        Ok(Pattern {
            host,
            port,
            text: t.to_owned(),
        })
    }

    /// Does this pattern cover `host` on `port`?
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        port_ok && self.covers(host)
    }

    /// Does this pattern name `host`, on whatever port?
    pub fn covers(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostPattern::Exact(p), Host::Name(n)) => p == n,
            (HostPattern::Subdomains(base), Host::Name(n)) => {
                n.len() > base.len() + 1
                    && n.ends_with(base.as_str())
                    && n.as_bytes()[n.len() - base.len() - 1] == b'.'
            }
            (HostPattern::Ip(p), Host::Ip(ip)) => p == ip,
            _ => false,
        }
    }

    /// Whether this pattern names a non-public destination itself, which is what allows
    /// connecting to one (`127.0.0.1:8080`, `localhost:3000`, `10.0.0.5`).
    pub fn allows_private(&self) -> bool {
        match &self.host {
            HostPattern::Ip(ip) => !is_public(*ip),
            HostPattern::Exact(n) => n == "localhost" || n.ends_with(".localhost"),
            HostPattern::Subdomains(_) => false,
        }
    }
}

/// The decision on a request, made before anything is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this pattern (index into the allow list).
    Allow(usize),
    Deny(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
    /// Names (`--allow-private-host`) that may reach private addresses though they do not
    /// name one themselves: the user's own mirror behind split DNS.
    pub private: Vec<Pattern>,
    /// The profile's hosts closed while its key is brokered (`NetFilter::drop_login_hosts`):
    /// refused with their own reason where nothing else allows them.
    pub closed: Vec<Pattern>,
}

impl NetPolicy {
    pub fn new(allow: &[String], deny: &[String]) -> anyhow::Result<NetPolicy> {
        Ok(NetPolicy {
            allow: allow
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<_, _>>()?,
            deny: deny
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<_, _>>()?,
            private: Vec::new(),
            closed: Vec::new(),
        })
    }

    /// With `hosts` (names, not addresses: an address pattern reaches its own address
    /// already) allowed to reach private addresses, and allowed at all.
    pub fn with_private(mut self, hosts: &[String]) -> anyhow::Result<NetPolicy> {
        for h in hosts {
            let p = Pattern::parse(h)?;
            if matches!(p.host, HostPattern::Ip(_)) {
                return Err(Fail::hint(
                    format!("--allow-private-host {h}: takes a name, not an address"),
                    format!("--allow-domain {h} allows an address, private or not"),
                )
                .into());
            }
            if !self.allow.contains(&p) {
                self.allow.push(p.clone());
            }
            self.private.push(p);
        }
        Ok(self)
    }

    /// Whether a name may be looked up at all (the relay's DNS): some allow pattern names it
    /// and no deny pattern refuses it on every port.
    pub fn name_allowed(&self, host: &Host) -> bool {
        let denied_everywhere = self.deny.iter().any(|p| p.covers(host) && p.port.is_none());
        !denied_everywhere && self.allow.iter().any(|p| p.covers(host))
    }

    /// Every port an allow pattern names beyond the default ones (the relay listens on them
    /// for clients that ignore proxy settings).
    pub fn extra_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.allow.iter().filter_map(|p| p.port).collect();
        v.retain(|p| !DEFAULT_PORTS.contains(p));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether some allow pattern reaches the host's loopback (then loopback traffic must go
    /// through the proxy, not stay inside the sandbox).
    pub fn allows_loopback(&self) -> bool {
        self.allow.iter().any(|p| match &p.host {
            HostPattern::Ip(ip) => ip.is_loopback(),
            HostPattern::Exact(n) => n == "localhost",
            HostPattern::Subdomains(_) => false,
        })
    }

    /// Deny wins over allow; an IP literal needs a pattern that names it.
    pub fn decide(&self, host: &Host, port: u16) -> Decision {
        if let Some(d) = self.deny.iter().find(|p| p.matches(host, port)) {
            return Decision::Deny(format!("denied by --deny-domain {}", d.text));
        }
        match self.allow.iter().position(|p| p.matches(host, port)) {
            Some(i) => Decision::Allow(i),
            None if matches!(host, Host::Ip(_)) => Decision::Deny(IP_NOT_LISTED.to_owned()),
            None if self.closed.iter().any(|p| p.matches(host, port)) => {
                Decision::Deny(CLOSED_LOGIN.to_owned())
            }
            None => Decision::Deny(NOT_LISTED.to_owned()),
        }
    }

    /// After resolution: the addresses the allowing pattern may reach. Loopback, private,
    /// link-local (cloud metadata), CGNAT and ULA addresses only where the pattern names such
    /// an address itself; a public name resolving there is DNS rebinding, not permission.
    pub fn reachable(
        &self,
        host: &Host,
        allowed_by: usize,
        addrs: &[IpAddr],
    ) -> Result<Vec<IpAddr>, String> {
        let pattern = &self.allow[allowed_by];
        let named = pattern.allows_private() || self.private.iter().any(|p| p.covers(host));
        let ok: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|a| is_public(*a) || named)
            .collect();
        match (ok.is_empty(), addrs.first()) {
            (false, _) => Ok(ok),
            (true, Some(a)) => Err(format!("{PRIVATE_ADDRESS} {a}")),
            (true, None) => Err("no address".to_owned()),
        }
    }
}

/// A globally routable unicast address (not loopback, private, link-local, CGNAT, ULA,
/// multicast, documentation, benchmarking or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // ULA fc00::/7 (includes fd00:ec2::254)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 to anywhere, v4 rules unknown
        }
    }
}

/// The filtered network's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetFilter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub rules: NetPolicy,
    pub log: Option<std::path::PathBuf>,
    pub learn: bool,
    /// Test-only fixed resolutions (trusted by the proxy).
    pub fixed: Vec<(String, std::net::IpAddr)>,
    /// The config files the allow rules came from, which the proxy reads again when its
    /// rules refuse a request (`agentbox allow` in another terminal). None: no pick-up.
    pub sources: Option<AllowSources>,
    /// `--allow-registry` names, whose hosts the tools on the host say (`host::registry`).
    pub registries: Vec<String>,
    /// The profile's own hosts that the user did not name too (its API and its login hosts),
    /// and the variables of the profile's own keys: while one of those keys is brokered, the
    /// login hosts go (`drop_login_hosts`).
    pub profile_hosts: Vec<String>,
    pub profile_keys: Vec<String>,
}

/// Where a run's allow rules came from, to read them again (`pickup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowSources {
    /// agentbox's config directory (`config::dir`).
    pub config_dir: std::path::PathBuf,
    /// The project directory whose `.agentbox.toml` the launch read, canonical.
    pub project: Option<std::path::PathBuf>,
    /// The profile in force: its `[profile.NAME]` section counts.
    pub profile: String,
}

impl NetFilter {
    /// With one of the profile's own keys brokered (`brokered` are the variables the broker
    /// holds this run), the profile's hosts other than the brokered APIs' (`apis`) are not
    /// allowed: they serve logins (claude.ai, chatgpt.com, Google's OAuth), which an agent
    /// with a key does not need, or another API whose key is not set (aider's), and each takes
    /// an attacker's own login or key, a way out that no header replacement can close. A host
    /// the user named is kept. Returns the hosts dropped.
    pub fn drop_login_hosts(&mut self, brokered: &[&str], apis: &[&str]) -> Vec<String> {
        if !brokered
            .iter()
            .any(|v| self.profile_keys.iter().any(|k| k == v))
        {
            return Vec::new();
        }
        let api = |h: &str| {
            Pattern::parse(h).is_ok_and(|p| {
                apis.iter()
                    .any(|a| Host::parse(a).is_some_and(|a| p.covers(&a)))
            })
        };
        let drop: Vec<String> = self
            .profile_hosts
            .iter()
            .filter(|h| !api(h))
            .cloned()
            .collect();
        let gone: Vec<Pattern> = drop.iter().filter_map(|h| Pattern::parse(h).ok()).collect();
        self.rules.allow.retain(|p| !gone.contains(p));
        self.allow.retain(|h| !drop.contains(h));
        self.rules.closed.extend(gone);
        drop
    }

    /// Allows `hosts` too (patterns checked as `--allow-domain`'s), once each.
    pub fn add_allowed(&mut self, hosts: &[String]) -> anyhow::Result<()> {
        for h in hosts {
            let p = Pattern::parse(h)?;
            if !self.rules.allow.contains(&p) {
                self.rules.allow.push(p);
                self.allow.push(h.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_hosts_go_only_while_the_profiles_own_key_is_brokered() {
        let hosts: Vec<String> = ["api.example.com", "login.example.com", "*.auth.example.com"]
            .map(String::from)
            .to_vec();
        let mut allow = hosts.clone();
        allow.push("mine.example.com".into());
        let filter = NetFilter {
            rules: NetPolicy::new(&allow, &[]).unwrap(),
            allow,
            profile_hosts: hosts,
            profile_keys: vec!["EXAMPLE_KEY".into()],
            ..NetFilter::default()
        };
        let allowed = |f: &NetFilter, h: &str| {
            matches!(
                f.rules.decide(&Host::parse(h).unwrap(), 443),
                Decision::Allow(_)
            )
        };
        // Another key brokered (the user's own credential): the profile's logins stay.
        let mut f = filter.clone();
        assert!(
            f.drop_login_hosts(&["GITHUB_TOKEN"], &["api.github.com"])
                .is_empty()
        );
        assert_eq!(f, filter);
        // The profile's key: its API and the user's host stay, its logins go.
        let mut f = filter.clone();
        let gone = f.drop_login_hosts(&["EXAMPLE_KEY"], &["api.example.com"]);
        assert_eq!(gone, ["login.example.com", "*.auth.example.com"]);
        assert!(allowed(&f, "api.example.com") && allowed(&f, "mine.example.com"));
        assert!(!allowed(&f, "login.example.com") && !allowed(&f, "x.auth.example.com"));
        assert!(allowed(&filter, "login.example.com"), "the control");
        // Refused as closed, not as unlisted: the failure hint and `--from-learn` take only
        // the unlisted, so neither offers to allow a login for every run.
        let why = |f: &NetFilter, h: &str| match f.rules.decide(&Host::parse(h).unwrap(), 443) {
            Decision::Deny(w) => w,
            Decision::Allow(_) => String::new(),
        };
        assert_eq!(why(&f, "login.example.com"), CLOSED_LOGIN);
        assert_eq!(why(&f, "other.example.com"), NOT_LISTED);
    }

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[test]
    fn patterns_parse_and_refuse_the_too_broad() {
        let p = Pattern::parse("API.Example.com.").unwrap();
        assert_eq!(p.host, HostPattern::Exact("api.example.com".into()));
        assert_eq!(p.port, None);
        let p = Pattern::parse("*.example.com:8443").unwrap();
        assert_eq!(p.host, HostPattern::Subdomains("example.com".into()));
        assert_eq!(p.port, Some(8443));
        let p = Pattern::parse("127.0.0.1:8080").unwrap();
        assert_eq!(p.host, HostPattern::Ip("127.0.0.1".parse().unwrap()));
        let p = Pattern::parse("[::1]:3000").unwrap();
        assert_eq!(
            (p.host, p.port),
            (HostPattern::Ip("::1".parse().unwrap()), Some(3000))
        );
        assert_eq!(Pattern::parse("::1").unwrap().port, None);
        for bad in [
            "*",
            "*.com",
            "*.",
            "",
            "a..b",
            "host:0",
            "host:99999",
            "host:x",
            "-a.com",
            "[::1",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_and_ports() {
        let p = Pattern::parse("*.example.com").unwrap();
        assert!(p.matches(&host("a.example.com"), 443));
        assert!(p.matches(&host("a.b.example.com"), 80));
        assert!(!p.matches(&host("example.com"), 443));
        assert!(!p.matches(&host("badexample.com"), 443));
        assert!(!p.matches(&host("a.example.com"), 22));
        let p = Pattern::parse("github.com:22").unwrap();
        assert!(p.matches(&host("github.com"), 22));
        assert!(!p.matches(&host("github.com"), 443));
    }

    #[test]
    fn deny_wins_and_ip_literals_need_naming() {
        let pol = NetPolicy::new(
            &["*.example.com".into(), "127.0.0.1:8080".into()],
            &["evil.example.com".into()],
        )
        .unwrap();
        assert_eq!(
            pol.decide(&host("api.example.com"), 443),
            Decision::Allow(0)
        );
        assert!(
            matches!(pol.decide(&host("evil.example.com"), 443), Decision::Deny(r) if r.contains("--deny-domain"))
        );
        assert!(
            matches!(pol.decide(&host("other.org"), 443), Decision::Deny(r) if r.contains("allowlist"))
        );
        assert!(
            matches!(pol.decide(&host("93.184.216.34"), 443), Decision::Deny(r) if r.contains("IP"))
        );
        assert_eq!(pol.decide(&host("127.0.0.1"), 8080), Decision::Allow(1));
        assert!(matches!(
            pol.decide(&host("127.0.0.1"), 80),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn resolved_addresses_are_checked() {
        let pol = NetPolicy::new(
            &[
                "api.example.com".into(),
                "127.0.0.1:8080".into(),
                "localhost:3000".into(),
            ],
            &[],
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            pol.reachable(&host("api.example.com"), 0, &[ip("93.184.216.34")]),
            Ok(vec![ip("93.184.216.34")])
        );
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(
                pol.reachable(&host("api.example.com"), 0, &[ip(private)])
                    .is_err(),
                "{private}"
            );
        }
        // A public address next to a private one: only the public one is dialled.
        assert_eq!(
            pol.reachable(
                &host("api.example.com"),
                0,
                &[ip("10.0.0.1"), ip("1.1.1.1")]
            ),
            Ok(vec![ip("1.1.1.1")])
        );
        assert_eq!(
            pol.reachable(&host("127.0.0.1"), 1, &[ip("127.0.0.1")]),
            Ok(vec![ip("127.0.0.1")])
        );
        assert_eq!(
            pol.reachable(&host("localhost"), 2, &[ip("127.0.0.1")]),
            Ok(vec![ip("127.0.0.1")])
        );
    }

    #[test]
    fn a_private_host_is_named_one_by_one() {
        let pol = NetPolicy::new(&["public.example".into()], &[])
            .unwrap()
            .with_private(&["mirror.corp.example".into()])
            .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Allowed by its own naming, and may reach a private address.
        let Decision::Allow(i) = pol.decide(&host("mirror.corp.example"), 443) else {
            panic!("not allowed")
        };
        assert_eq!(
            pol.reachable(&host("mirror.corp.example"), i, &[ip("10.1.2.3")]),
            Ok(vec![ip("10.1.2.3")])
        );
        // Another allowed name still may not (control: the same address).
        let err = pol
            .reachable(&host("public.example"), 0, &[ip("10.1.2.3")])
            .unwrap_err();
        assert!(err.starts_with(PRIVATE_ADDRESS), "{err}");
        assert!(
            NetPolicy::default()
                .with_private(&["10.0.0.1".into()])
                .is_err()
        );
    }
}
