//! What to say about the network when a run ends: the one line after a failed run whose
//! network was off or blocked something, and the `agentbox allow` command that would allow
//! what was blocked. Pure: the exit status, the mode and the proxy's summary in, text out.

use crate::net::proxy::Summary;
use crate::net::rules::{CLOSED_LOGIN, IP_NOT_LISTED, NOT_LISTED, PRIVATE_ADDRESS};
use crate::text::printable_str;

/// `host` or `host:port` as `--allow-domain` and `agentbox allow` take it (80 and 443 are
/// what a bare host allows).
pub fn pattern_of(host: &str, port: u16) -> String {
    match port {
        80 | 443 => printable_str(host),
        p => format!("{}:{p}", printable_str(host)),
    }
}

/// The hosts the allowlist refused for want of a pattern (not those a `--deny-domain`
/// refused, nor those refused for their address), as patterns, sorted, deduplicated.
pub fn allowable(s: &Summary) -> Vec<String> {
    let mut v: Vec<String> = s
        .denied
        .iter()
        .filter(|(_, _, why, _)| why == NOT_LISTED || why == IP_NOT_LISTED)
        .map(|(h, p, _, _)| pattern_of(h, *p))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The profile's hosts refused as closed while the broker holds its key, as patterns, sorted,
/// deduplicated: never offered for allowing (`--learn` names them apart).
pub fn closed(s: &Summary) -> Vec<String> {
    let mut v: Vec<String> = s
        .denied
        .iter()
        .filter(|(_, _, why, _)| why == CLOSED_LOGIN)
        .map(|(h, p, _, _)| pattern_of(h, *p))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The allowed names refused because they resolved to a private address, sorted, deduplicated.
pub fn private(s: &Summary) -> Vec<String> {
    let mut v: Vec<String> = s
        .denied
        .iter()
        .filter(|(_, _, why, _)| why.starts_with(PRIVATE_ADDRESS))
        .map(|(h, _, _, _)| printable_str(h))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The line for a run that ended with `code`: only when it failed and the network may be why
/// (`net_off`, or the filter's `summary` shows something blocked). With `--net host` (neither)
/// nothing was in the way.
pub fn after_exit(code: i32, net_off: bool, summary: Option<&Summary>) -> Option<String> {
    // 126 and 127 are "cannot execute" and "not found", 128 and up a signal (Ctrl-C, a kill,
    // the OOM killer): not the network.
    if code == 0 || code >= 126 {
        return None;
    }
    match (net_off, summary) {
        (true, _) => Some(format!(
            "agentbox: the command failed (exit {code}) with the network off; if it needs the \
             network, see what it asks for with `--learn`, then allow it with `--allow-domain HOST` \
             (this run) or `agentbox allow HOST` (every run)"
        )),
        (false, Some(s)) => {
            let hosts = allowable(s);
            let private = private(s);
            if !hosts.is_empty() {
                Some(format!(
                    "agentbox: the command failed (exit {code}) and the network filter blocked \
                     it; to allow: `agentbox allow {}` (or `--allow-domain HOST` for one run)",
                    hosts.join(" ")
                ))
            } else if !private.is_empty() {
                Some(format!(
                    "agentbox: the command failed (exit {code}) and the network filter refused \
                     private addresses; if these are yours: `--allow-private-host {}`",
                    private.join(" --allow-private-host ")
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(denied: &[(&str, u16, &str)]) -> Summary {
        Summary {
            denied: denied
                .iter()
                .map(|(h, p, w)| ((*h).to_owned(), *p, (*w).to_owned(), 1))
                .collect(),
            ..Summary::default()
        }
    }

    #[test]
    fn only_a_failure_gets_a_line() {
        let s = summary(&[("a.example", 443, NOT_LISTED)]);
        assert_eq!(after_exit(0, true, None), None);
        assert_eq!(after_exit(0, false, Some(&s)), None);
        assert_eq!(after_exit(1, false, None), None);
        assert_eq!(after_exit(127, true, None), None);
        assert_eq!(after_exit(130, true, None), None);
        let off = after_exit(1, true, None).unwrap();
        assert!(
            off.contains("network off") && off.contains("--learn"),
            "{off}"
        );
        assert!(off.contains("agentbox allow HOST"), "{off}");
        // Filtered, nothing blocked: the network was not in the way.
        assert_eq!(after_exit(1, false, Some(&summary(&[]))), None);
    }

    #[test]
    fn blocked_hosts_are_named_in_the_command() {
        let s = summary(&[
            ("b.example", 443, NOT_LISTED),
            ("a.example", 8080, NOT_LISTED),
            ("b.example", 80, NOT_LISTED),
            ("10.0.0.1", 443, IP_NOT_LISTED),
            ("evil.example", 443, "denied by --deny-domain evil.example"),
        ]);
        assert_eq!(allowable(&s), ["10.0.0.1", "a.example:8080", "b.example"]);
        // A login closed while the broker holds the key is not offered for every run.
        let c = summary(&[("login.example", 443, CLOSED_LOGIN)]);
        assert!(allowable(&c).is_empty() && after_exit(1, false, Some(&c)).is_none());
        assert_eq!(closed(&c), ["login.example"]);
        let line = after_exit(2, false, Some(&s)).unwrap();
        assert!(
            line.contains("`agentbox allow 10.0.0.1 a.example:8080 b.example`"),
            "{line}"
        );
    }

    #[test]
    fn private_refusals_say_how() {
        let why = format!("{PRIVATE_ADDRESS} 10.1.2.3");
        let s = summary(&[("mirror.corp.example", 443, why.as_str())]);
        assert!(allowable(&s).is_empty());
        let line = after_exit(1, false, Some(&s)).unwrap();
        assert!(
            line.contains("--allow-private-host mirror.corp.example"),
            "{line}"
        );
    }
}
