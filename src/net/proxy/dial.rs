//! From a requested host and port to a connected socket, in the order that makes the allowlist
//! hold: `decide` on the name before any lookup, `reachable` on the resolved addresses, then a
//! dial of exactly those addresses. It must never resolve a denied name, nor resolve twice
//! (a second answer could differ from the checked one).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::net::rules::{Decision, Host, NetPolicy};

/// A lookup that takes longer has failed; getaddrinfo's own retries can take far longer.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Per address tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Addresses tried per request, so a name with many dead addresses cannot hold a client long.
const MAX_ATTEMPTS: usize = 4;

/// Why a request got no connection.
#[derive(Debug)]
pub(super) enum Refusal {
    /// By the policy, before or after resolution.
    Denied(String),
    /// Allowed, but the name did not resolve.
    Unresolved(String),
    /// Allowed and resolved, but no address answered (the last error).
    Unreachable(io::Error),
}

impl Refusal {
    /// The policy's verdict, for the log.
    pub fn allowed(&self) -> bool {
        !matches!(self, Refusal::Denied(_))
    }

    pub fn reason(&self) -> String {
        match self {
            Refusal::Denied(r) => r.clone(),
            Refusal::Unresolved(e) => format!("could not resolve: {e}"),
            Refusal::Unreachable(e) => format!("could not connect: {e}"),
        }
    }
}

/// Where names become addresses.
pub(super) enum Resolver {
    /// The host's resolver (getaddrinfo on tokio's blocking pool).
    System,
    /// A table standing in for DNS (untrusted, unlike `fixed`), so tests can count lookups and
    /// stage rebinding answers.
    #[cfg(test)]
    Table(Arc<Lookup>),
}

#[cfg(test)]
pub(super) type Lookup = dyn Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync;

pub(super) struct Dialer {
    policy: Arc<NetPolicy>,
    /// Where rules allowed since the launch come from (`agentbox allow`), asked only when
    /// `policy` refuses.
    reload: Option<super::Refresh>,
    /// Trusted test resolutions, lowercase names.
    fixed: Vec<(String, IpAddr)>,
    resolver: Resolver,
}

impl Dialer {
    pub fn new(
        policy: NetPolicy,
        reload: Option<super::Refresh>,
        fixed: Vec<(String, IpAddr)>,
        resolver: Resolver,
    ) -> Dialer {
        let fixed = fixed
            .into_iter()
            .map(|(n, ip)| (n.trim_end_matches('.').to_ascii_lowercase(), ip))
            .collect();
        Dialer {
            policy: Arc::new(policy),
            reload,
            fixed,
            resolver,
        }
    }

    /// A connection to `host:port` and the reason it was allowed.
    pub async fn open(&self, host: &Host, port: u16) -> Result<(TcpStream, String), Refusal> {
        let (reason, addrs) = self.addresses(host, port).await?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for ip in addrs.into_iter().take(MAX_ATTEMPTS) {
            let addr = SocketAddr::new(ip, port);
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // Interactive traffic (TLS handshakes, terminals) must not wait on Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, reason));
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        Err(Refusal::Unreachable(last))
    }

    /// Why the request is allowed and the addresses it may reach: by the launch's rules, or
    /// where those refuse, by the rules the config files give now (read again off the
    /// runtime's thread), checked the same way from the start.
    pub async fn addresses(
        &self,
        host: &Host,
        port: u16,
    ) -> Result<(String, Vec<IpAddr>), Refusal> {
        let first = self.addresses_by(&self.policy, host, port).await;
        let (Err(Refusal::Denied(_)), Some(reload)) = (&first, &self.reload) else {
            return first;
        };
        let reload = reload.clone();
        let fresh = match tokio::task::spawn_blocking(move || reload()).await {
            Ok(p) => p,
            Err(_) => return first,
        };
        if *fresh == *self.policy {
            return first;
        }
        self.addresses_by(&fresh, host, port).await
    }

    async fn addresses_by(
        &self,
        policy: &NetPolicy,
        host: &Host,
        port: u16,
    ) -> Result<(String, Vec<IpAddr>), Refusal> {
        // Before anything else: a denied name must not even reach a DNS server.
        let idx = match policy.decide(host, port) {
            Decision::Allow(idx) => idx,
            Decision::Deny(reason) => return Err(Refusal::Denied(reason)),
        };
        let resolved = match host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                if let Some((_, ip)) = self.fixed.iter().find(|(n, _)| n == name) {
                    return Ok((reason_of(policy, idx), vec![*ip]));
                }
                self.resolve(name, port).await?
            }
        };
        let addrs = policy
            .reachable(host, idx, &resolved)
            .map_err(Refusal::Denied)?;
        Ok((reason_of(policy, idx), addrs))
    }

    async fn resolve(&self, name: &str, port: u16) -> Result<Vec<IpAddr>, Refusal> {
        let found: io::Result<Vec<IpAddr>> = match &self.resolver {
            Resolver::System => {
                match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
                    .await
                {
                    Ok(r) => r.map(|it| it.map(|a| a.ip()).collect()),
                    Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "lookup timed out")),
                }
            }
            #[cfg(test)]
            Resolver::Table(f) => f(name),
        };
        let found = found.map_err(|e| Refusal::Unresolved(e.to_string()))?;
        // getaddrinfo lists an address once per socket type; dial each once.
        let mut addrs: Vec<IpAddr> = Vec::with_capacity(found.len());
        for a in found {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        match addrs.is_empty() {
            true => Err(Refusal::Unresolved("no address".into())),
            false => Ok(addrs),
        }
    }
}

fn reason_of(policy: &NetPolicy, idx: usize) -> String {
    format!("allowed by --allow-domain {}", policy.allow[idx].text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A dialer whose DNS answers `table` and counts the lookups.
    fn dialer(allow: &[&str], table: &[(&str, &str)]) -> (Dialer, Arc<AtomicUsize>) {
        let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
        let policy = NetPolicy::new(&allow, &["evil.example.com".into()]).unwrap();
        let table: Vec<(String, IpAddr)> =
            table.iter().map(|(n, a)| (n.to_string(), ip(a))).collect();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let resolver = Resolver::Table(Arc::new(move |name: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
            let found: Vec<IpAddr> = table
                .iter()
                .filter(|(n, _)| n == name)
                .map(|e| e.1)
                .collect();
            match found.is_empty() {
                true => Err(io::Error::new(io::ErrorKind::NotFound, "NXDOMAIN")),
                false => Ok(found),
            }
        }));
        let fixed = vec![("Fixed.Example.com.".to_string(), ip("127.0.0.1"))];
        (Dialer::new(policy, None, fixed, resolver), calls)
    }

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[tokio::test]
    async fn the_order_of_checks() {
        let (d, calls) = dialer(
            &["*.example.com", "127.0.0.1:8080", "169.254.169.254:80"],
            &[
                ("api.example.com", "93.184.216.34"),
                ("rebind.example.com", "127.0.0.1"),
                ("meta.example.com", "169.254.169.254"),
                ("mixed.example.com", "10.0.0.1"),
                ("mixed.example.com", "1.1.1.1"),
                ("gone.example.com", "10.0.0.1"),
            ],
        );
        let check = |h: &'static str, port: u16| {
            let d = &d;
            async move {
                d.addresses(&host(h), port)
                    .await
                    .map(|(_, a)| a)
                    .map_err(|e| e.reason())
            }
        };
        // (request, expected result, lookups it costs)
        let cases = [
            ("other.org", 443, Err("not in the allowlist"), 0),
            (
                "evil.example.com",
                443,
                Err("denied by --deny-domain evil.example.com"),
                0,
            ),
            ("api.example.com", 22, Err("not in the allowlist"), 0),
            (
                "93.184.216.34",
                443,
                Err("an IP address no --allow-domain names"),
                0,
            ),
            (
                "127.0.0.1",
                80,
                Err("an IP address no --allow-domain names"),
                0,
            ),
            ("127.0.0.1", 8080, Ok(vec![ip("127.0.0.1")]), 0),
            // Named explicitly, so allowed; only via a name is metadata rebinding.
            ("169.254.169.254", 80, Ok(vec![ip("169.254.169.254")]), 0),
            ("fixed.example.com", 443, Ok(vec![ip("127.0.0.1")]), 0),
            ("api.example.com", 443, Ok(vec![ip("93.184.216.34")]), 1),
            (
                "rebind.example.com",
                443,
                Err("resolves to non-public address 127.0.0.1"),
                1,
            ),
            (
                "meta.example.com",
                80,
                Err("resolves to non-public address 169.254.169.254"),
                1,
            ),
            ("mixed.example.com", 443, Ok(vec![ip("1.1.1.1")]), 1),
            ("nx.example.com", 443, Err("could not resolve: NXDOMAIN"), 1),
        ];
        for (h, port, want, lookups) in cases {
            let before = calls.load(Ordering::SeqCst);
            let got = check(h, port).await;
            assert_eq!(got, want.map_err(str::to_owned), "{h}:{port}");
            assert_eq!(
                calls.load(Ordering::SeqCst) - before,
                lookups,
                "lookups for {h}:{port}"
            );
        }
    }

    #[tokio::test]
    async fn a_refusal_asks_for_fresh_rules_which_are_checked_from_the_start() {
        let (mut d, calls) = dialer(
            &["api.example.com"],
            &[
                ("new.example.org", "93.184.216.34"),
                ("rebind.example.org", "10.0.0.1"),
            ],
        );
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let fresh = NetPolicy::new(
            &[
                "api.example.com".into(),
                "new.example.org".into(),
                "rebind.example.org".into(),
                "evil.example.com".into(),
            ],
            &["evil.example.com".into()],
        )
        .unwrap();
        let fresh = Arc::new(fresh);
        d.reload = Some(Arc::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
            fresh.clone()
        }));
        // Allowed by the launch's rules: the files are not read.
        let _ = d.addresses(&host("api.example.com"), 443).await;
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        // Allowed since: reached.
        let got = d.addresses(&host("new.example.org"), 443).await.unwrap();
        assert_eq!(got.1, [ip("93.184.216.34")]);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // The fresh rules still deny what they deny, before any lookup, and still refuse a
        // private answer.
        let before = calls.load(Ordering::SeqCst);
        let e = d
            .addresses(&host("evil.example.com"), 443)
            .await
            .unwrap_err();
        assert!(e.reason().contains("--deny-domain"), "{}", e.reason());
        assert_eq!(calls.load(Ordering::SeqCst), before);
        let e = d
            .addresses(&host("rebind.example.org"), 443)
            .await
            .unwrap_err();
        assert!(e.reason().contains("non-public"), "{}", e.reason());
    }

    #[tokio::test]
    async fn refusals_say_whether_policy_allowed() {
        let (d, _) = dialer(&["*.example.com"], &[]);
        let denied = d.addresses(&host("x.org"), 443).await.unwrap_err();
        let unresolved = d.addresses(&host("nx.example.com"), 443).await.unwrap_err();
        assert!(!denied.allowed());
        assert!(unresolved.allowed());
    }
}
