//! The credential broker: the agent's API keys stay in agentbox's host process. The sandbox
//! gets a phantom key (random per run, worth nothing anywhere) and the agent's base-URL
//! variable pointing at the relay's broker port inside (`inside::BROKER_PORT`); the relay
//! passes those connections to the host proxy, which hands them here. Every request is sent
//! on to the one upstream its route names, with every credential header the agent sent removed
//! and the real key put in. The proxy refuses every other way to a brokered host (CONNECT,
//! SOCKS, plain HTTP, captured connections: `bypass`), so a key of the attacker's can never
//! reach it, and the agent cannot send the project to its own account there.
//!
//! `routes` (pure) turns the profile's credentials and the host's variables into routes; the
//! plan puts the phantoms and base URLs in the sandbox's environment; `serve` is the HTTP side.
//! The real keys are in `Secret`s, which never print, and never pass through bwrap: they go
//! from agentbox's environment to the proxy thread's memory only.

mod serve;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;

use anyhow::Result;

use crate::error::Fail;
use crate::inside::{BROKER_ADDR, BROKER_PORT};
use crate::net::rules::Host;

pub use serve::{Broker, Event};

/// The first byte the relay sends (after the token line) on a broker connection: neither an
/// HTTP method's first byte nor SOCKS's version, so the proxy tells the three apart at once.
pub const MARK: u8 = 0x01;

/// Headers that carry credentials: whatever the agent put in them never goes upstream.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
];

/// Query parameters APIs take a credential in (Google's `key`, and its OAuth token under
/// three names: `access_token`, `oauth_token`, `bearer_token`): removed from every brokered
/// request, as is one named after a route's header (`private-token` -> `private_token`).
pub const CREDENTIAL_QUERY: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "access_token",
    "oauth_token",
    "bearer_token",
];

/// A real key: never printed (`Debug` says only that it is there).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A key the credential broker can hold on the host side: the sandbox gets a phantom in `var`
/// and `base_url_var` pointing at the broker, which sends the real one upstream in `header`.
/// A built-in profile's are `CredentialSpec`s; a user's config adds more
/// (`[[profile.NAME.credential]]`), checked as they are read so errors have a line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawCredential")]
pub struct Credential {
    /// The host variable holding the key.
    pub var: String,
    /// The (lowercase) header that carries it upstream.
    pub header: String,
    /// Sent as `Bearer KEY` rather than the bare key.
    pub bearer: bool,
    /// The variable the agent reads its API's base URL from.
    pub base_url_var: String,
    /// The API's base URL when the host does not set `base_url_var`.
    pub upstream: String,
}

/// `Credential` as built-in data.
pub struct CredentialSpec {
    pub var: &'static str,
    pub header: &'static str,
    pub bearer: bool,
    pub base_url_var: &'static str,
    pub upstream: &'static str,
}

impl From<&CredentialSpec> for Credential {
    fn from(c: &CredentialSpec) -> Credential {
        Credential {
            var: c.var.to_owned(),
            header: c.header.to_owned(),
            bearer: c.bearer,
            base_url_var: c.base_url_var.to_owned(),
            upstream: c.upstream.to_owned(),
        }
    }
}

/// A credential as a config file spells it, before the checks.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    var: String,
    header: String,
    #[serde(default)]
    bearer: bool,
    base_url_var: String,
    upstream: String,
}

fn is_var_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

impl TryFrom<RawCredential> for Credential {
    type Error = String;

    fn try_from(r: RawCredential) -> Result<Credential, String> {
        for (key, v) in [("var", &r.var), ("base_url_var", &r.base_url_var)] {
            if !is_var_name(v) {
                return Err(format!("{key} = {v:?}: not a variable name (A-Z, 0-9, _)"));
            }
        }
        let header = r.header.to_ascii_lowercase();
        let framing = [
            "host",
            "connection",
            "content-length",
            "transfer-encoding",
            "te",
        ];
        if http::HeaderName::from_bytes(header.as_bytes()).is_err()
            || framing.contains(&header.as_str())
        {
            return Err(format!(
                "header = {:?}: not a header that can carry a key",
                r.header
            ));
        }
        Upstream::parse(&r.upstream)
            .map_err(|why| format!("upstream = {:?}: {why}", r.upstream))?;
        Ok(Credential {
            var: r.var,
            header,
            bearer: r.bearer,
            base_url_var: r.base_url_var,
            upstream: r.upstream,
        })
    }
}

/// One key of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub var: String,
    pub header: String,
    pub bearer: bool,
    pub real: Secret,
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub https: bool,
    /// Lowercase name or IP literal (without brackets).
    pub host: String,
    pub port: u16,
    /// The base URL's path, without a trailing `/` ("" for none).
    pub prefix: String,
}

impl Upstream {
    /// `https://host[:port][/path]`, or `http://` to a loopback address (a local gateway, a
    /// test); nothing else (no user, query or fragment).
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("not an http:// or https:// URL".into());
        };
        if rest.contains(['@', '?', '#']) || rest.chars().any(|c| c.is_ascii_control()) {
            return Err("a user, query or fragment in the URL".into());
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !h.is_empty() && !authority.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| "a bad port")?)
            }
            _ if authority.starts_with('[') => match authority.rsplit_once("]:") {
                Some((h, p)) => (
                    h.trim_start_matches('['),
                    p.parse::<u16>().map_err(|_| "a bad port")?,
                ),
                None => (
                    authority.trim_start_matches('[').trim_end_matches(']'),
                    default_port(https),
                ),
            },
            _ => (authority, default_port(https)),
        };
        let host = match Host::parse(host) {
            Some(Host::Name(n)) => n,
            Some(Host::Ip(ip)) => ip.to_string(),
            None => return Err("no valid host name".into()),
        };
        if !https && !is_loopback(&host) {
            return Err("plain http:// leaves the machine unencrypted; only loopback may".into());
        }
        Ok(Upstream {
            https,
            host,
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        };
        match self.port == default_port(self.https) {
            true => host,
            false => format!("{host}:{}", self.port),
        }
    }

    /// Whether a request for `host` (any port) is for this upstream: the same name, the same
    /// address (`::ffff:a.b.c.d` is `a.b.c.d`), or `localhost` and its addresses, which are
    /// one host whatever DNS says.
    pub fn is(&self, host: &Host) -> bool {
        let localhost = |h: &str| match h.parse::<IpAddr>() {
            Ok(ip) => [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ]
            .contains(&ip.to_canonical()),
            Err(_) => h == "localhost",
        };
        match host {
            Host::Name(n) => *n == self.host || (n == "localhost" && localhost(&self.host)),
            Host::Ip(ip) => match self.host.parse::<IpAddr>() {
                Ok(u) => u.to_canonical() == ip.to_canonical(),
                Err(_) => localhost(&self.host) && localhost(&ip.to_canonical().to_string()),
            },
        }
    }
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One brokered API: the keys it adds, where it goes, what the sandbox sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The first path segment on the broker port that selects it (from the base-URL variable:
    /// `ANTHROPIC_BASE_URL` -> `anthropic`).
    pub name: String,
    pub base_url_var: String,
    pub upstream: Upstream,
    pub keys: Vec<Key>,
    /// What the sandbox gets in each key's variable.
    pub phantom: String,
}

impl Route {
    /// The base URL the sandbox gets.
    pub fn inside_url(&self) -> String {
        format!("http://{BROKER_ADDR}:{BROKER_PORT}/{}", self.name)
    }

    pub fn vars(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.var.as_str()).collect()
    }
}

/// The routes for `credentials` whose variable `var` finds set (and not empty) on the host:
/// keys sharing a base-URL variable share a route. `phantom` makes each route's phantom key.
pub fn routes(
    credentials: &[Credential],
    var: impl Fn(&str) -> Option<OsString>,
    mut phantom: impl FnMut() -> Result<String>,
) -> Result<Vec<Route>> {
    let mut out: Vec<Route> = Vec::new();
    for c in credentials {
        let Some(value) = var(&c.var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let real = value.into_string().map_err(|_| {
            Fail::hint(
                format!(
                    "{} is not valid UTF-8, so it cannot be sent as a header",
                    c.var
                ),
                "fix the key, or run with --no-broker",
            )
        })?;
        if real.bytes().any(|b| b.is_ascii_control()) {
            return Err(Fail::hint(
                format!(
                    "{} holds a control character, so it cannot be a header",
                    c.var
                ),
                "fix the key (a trailing newline?), or run with --no-broker",
            )
            .into());
        }
        let key = Key {
            var: c.var.clone(),
            header: c.header.clone(),
            bearer: c.bearer,
            real: Secret(real),
        };
        if let Some(r) = out.iter_mut().find(|r| r.base_url_var == c.base_url_var) {
            r.keys.push(key);
            continue;
        }
        let (url, from) = match var(&c.base_url_var).filter(|v| !v.is_empty()) {
            Some(v) => (v.to_string_lossy().into_owned(), c.base_url_var.as_str()),
            None => (c.upstream.clone(), "the profile's default"),
        };
        let upstream = Upstream::parse(&url).map_err(|why| {
            Fail::hint(
                format!(
                    "the credential broker's upstream for {} ({from}): {why}",
                    c.var
                ),
                format!(
                    "set {} to an https:// URL, or run with --no-broker",
                    c.base_url_var
                ),
            )
        })?;
        let base = c.base_url_var.as_str();
        let short = base
            .strip_suffix("_BASE_URL")
            .or_else(|| base.strip_suffix("_URL"))
            .filter(|s| !s.is_empty())
            .unwrap_or(base)
            .to_ascii_lowercase();
        // Distinct per route: the first path segment is what selects it.
        let mut name = short.clone();
        let mut n = 1;
        while out.iter().any(|r| r.name == name) {
            n += 1;
            name = format!("{short}{n}");
        }
        out.push(Route {
            name,
            base_url_var: c.base_url_var.clone(),
            upstream,
            keys: vec![key],
            phantom: phantom()?,
        });
    }
    Ok(out)
}

/// A phantom key: recognisable as one, random, the length of a real one.
pub fn random_phantom() -> Result<String> {
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sk-agentbox-phantom-{hex}"))
}

/// The reason a request for `host` must not go out directly, when a route's upstream is it.
pub fn bypass(routes: &[Route], host: &Host) -> Option<String> {
    routes.iter().find(|r| r.upstream.is(host)).map(|r| {
        format!(
            "{} is brokered: only the credential broker ({}) reaches this host",
            r.vars().join(", "),
            r.base_url_var
        )
    })
}

/// One line per route for `--dry-run` and `-v`: names, never values.
pub fn describe(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| {
            format!(
                "credential broker: {} held by agentbox, sent to {}://{}{} (the sandbox gets a \
                 phantom key and {}={})",
                r.vars().join(", "),
                if r.upstream.https { "https" } else { "http" },
                r.upstream.authority(),
                r.upstream.prefix,
                r.base_url_var,
                r.inside_url()
            )
        })
        .collect()
}
