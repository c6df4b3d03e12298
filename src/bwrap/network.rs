//! The filtered network's part of the plan: what bwrap must add so the relay can set up inside
//! (uid 0 and two capabilities, which it drops before the agent starts), the files it reads,
//! the proxy variables the agent gets, and the relay's own command line. Pure.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;

use super::{Builder, Op};
use crate::inside::{PROXY_PORT, SELF_INSIDE, SOCKET_DIR, SOCKET_NAME, TOKEN_FILE};
use crate::net::relay::RelayCtx;
use crate::net::rules::NetPolicy;
use crate::net::session::NetSession;
use crate::policy::Policy;

/// The resolver the sandbox sees: the relay's DNS, which answers only allowed names.
const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n";

pub(crate) fn privileges(b: &mut Builder) {
    b.push(
        Op::Uid0,
        "the relay sets up as uid 0 in the sandbox's namespace; the agent gets your uid back",
    );
    b.push(
        Op::CapAdd("CAP_NET_BIND_SERVICE"),
        "for the relay only: DNS on port 53 and capture on 80/443; dropped before the agent",
    );
    b.push(
        Op::CapAdd("CAP_SYS_RESOURCE"),
        "for the relay only: to cap nested user namespaces; dropped before the agent",
    );
    // Mapping a uid onto uid 0 of the parent namespace needs CAP_SETFCAP at unshare time
    // (since Linux 5.12), so file capabilities cannot be smuggled through the mapping.
    b.push(
        Op::CapAdd("CAP_SETFCAP"),
        "for the relay only: to map your uid back for the agent; dropped before the agent",
    );
}

pub(crate) fn files(net: &NetSession, resolv_target: Option<&Path>, b: &mut Builder) {
    // The socket alone, read-only (connect() needs no write access to the mount): the
    // directory it is in stays out of reach, so nothing the sandbox does can leave anything
    // in it for the host to trip over at cleanup.
    b.push(
        Op::RoBindAt {
            src: net.dir.join(SOCKET_NAME),
            dest: Path::new(SOCKET_DIR).join(SOCKET_NAME),
        },
        "the host proxy's socket (alone, read-only): the only way out",
    );
    b.push(
        Op::DataFile {
            dest: TOKEN_FILE.into(),
            bytes: net.token.clone().into_bytes(),
        },
        "this run's proxy token: other local processes cannot use the proxy",
    );
    // Where /etc/resolv.conf is a symlink (into /run, say), the file it names is the one to
    // cover: a mount follows the link.
    let dest = resolv_target.unwrap_or(Path::new("/etc/resolv.conf"));
    b.push(
        Op::DataFile {
            dest: dest.to_owned(),
            bytes: RESOLV_CONF.as_bytes().to_vec(),
        },
        "names resolve through the relay, which knows only allowed ones",
    );
}

/// With the network off, package tools are told not to retry: every lookup fails at once
/// (the empty namespace has no route to any nameserver, getaddrinfo says EAI_AGAIN), but npm
/// retries any such failure with a 10 s then 60 s back-off, which is the silent 70 s hang of
/// `npm install`; pip and cargo do the same with shorter waits. A retry here waits for nothing.
pub(crate) const OFFLINE_ENV: [(&str, &str, &str); 3] = [
    (
        "npm_config_fetch_retries",
        "0",
        "--net none: npm fails at once instead of retrying for 70 s",
    ),
    (
        "PIP_RETRIES",
        "0",
        "--net none: pip fails at once instead of retrying",
    ),
    (
        "CARGO_NET_RETRY",
        "0",
        "--net none: cargo fails at once instead of retrying",
    ),
];

/// The variables that send proxy-aware clients to the relay.
pub(crate) fn proxy_env(rules: &NetPolicy) -> Vec<(&'static str, String, &'static str)> {
    let http = format!("http://127.0.0.1:{PROXY_PORT}");
    let socks = format!("socks5h://127.0.0.1:{PROXY_PORT}");
    let why = "the relay inside: HTTP, HTTPS and SOCKS5 to the host proxy";
    let mut v = Vec::new();
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        v.push((name, http.clone(), why));
    }
    for name in ["ALL_PROXY", "all_proxy"] {
        v.push((name, socks.clone(), why));
    }
    // Loopback stays inside the sandbox, unless an allow pattern names the host's loopback:
    // then it must go through the proxy, or it would reach nothing.
    let broker = crate::inside::BROKER_ADDR;
    let no_proxy = if rules.allows_loopback() {
        broker.to_owned()
    } else {
        format!("localhost,127.0.0.1,::1,{broker}")
    };
    let why_no = "loopback: inside the sandbox, unless the host's loopback is allowed";
    v.push(("NO_PROXY", no_proxy.clone(), why_no));
    v.push(("no_proxy", no_proxy, why_no));
    v.push((
        "NODE_USE_ENV_PROXY",
        "1".to_owned(),
        "Node's own fetch honours the proxy variables",
    ));
    v.push((
        "GLOBAL_AGENT_HTTP_PROXY",
        http,
        "Node programs using global-agent",
    ));
    v
}

/// The brokered keys' phantoms and the base URLs pointing at the broker port inside.
pub(crate) fn broker_env(net: &NetSession) -> Vec<(String, String, &'static str)> {
    let mut v = Vec::new();
    for r in &net.broker {
        for k in &r.keys {
            let why = "credential broker: a phantom key; the real one stays in agentbox";
            v.push((k.var.clone(), r.phantom.clone(), why));
        }
        let why = "credential broker: the relay's broker port, which adds the real key";
        v.push((r.base_url_var.clone(), r.inside_url(), why));
    }
    v
}

/// `agentbox __relay CTX --`, in front of the command.
pub(crate) fn relay_argv(
    policy: &Policy,
    net: &NetSession,
    interactive: bool,
) -> Result<Vec<OsString>> {
    let ctx = RelayCtx {
        // The rules' own list: `--allow-private-host` names are allowed too.
        allow: policy
            .filter
            .rules
            .allow
            .iter()
            .map(|p| p.text.clone())
            .collect(),
        deny: policy.filter.deny.clone(),
        learn: policy.filter.learn,
        uid: net.uid,
        gid: net.gid,
        seccomp: policy.allow,
        interactive,
        broker: !net.broker.is_empty(),
    };
    Ok(vec![
        SELF_INSIDE.into(),
        "__relay".into(),
        serde_json::to_string(&ctx)?.into(),
        "--".into(),
    ])
}
