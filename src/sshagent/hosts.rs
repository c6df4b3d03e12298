//! `ssh_hosts`: the servers the filter signs for, named by host key fingerprint (`SHA256:...`)
//! or by name, looked up in the user's `known_hosts` (plain and hashed entries; a
//! `@cert-authority` or `@revoked` line names no key to trust here). Pure: the file's text is
//! given.

use base64::Engine;
use hmac::{KeyInit, Mac};

use super::fingerprint;

/// The host key fingerprints `names` stand for. `Err` names the first host not found.
pub fn resolve(names: &[String], known_hosts: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for n in names {
        if n.starts_with("SHA256:") {
            out.push(n.clone());
            continue;
        }
        let found: Vec<String> = known_hosts.lines().filter_map(|l| key_for(l, n)).collect();
        if found.is_empty() {
            return Err(n.clone());
        }
        out.extend(found);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The fingerprint of the key on `line` when the line is for `host`.
fn key_for(line: &str, host: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
        return None;
    }
    let mut words = line.split_whitespace();
    let patterns = words.next()?;
    let _kind = words.next()?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(words.next()?)
        .ok()?;
    let matches = patterns.split(',').any(|p| match p.strip_prefix("|1|") {
        Some(hashed) => hashed_matches(hashed, host),
        // A negated or wildcard pattern is not a name: not used to trust a key.
        None => p == host,
    });
    matches.then(|| fingerprint(&blob))
}

/// `|1|SALT|HASH`: HASH is HMAC-SHA1(SALT, host), both base64.
fn hashed_matches(rest: &str, host: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = rest.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(host.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -H` of "github.example" with this key, and a plain line.
    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBJSuscpi/AxRuzys19UPN1SiKE1qK8LUubOeJ0OTi6S";
    const FP: &str = "SHA256:qr7GNEjIsAf5S2uS8/IDplY9ZX1/uvNKhrn38Xe7zxw";

    fn hashed(host: &str) -> String {
        let salt = b"0123456789abcdef0123";
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(host.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD;
        format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn names_resolve_through_known_hosts() {
        let text = format!(
            "# comment\nplain.example,10.0.0.1 ssh-ed25519 {KEY}\n{} ssh-ed25519 {KEY}\n\
             @cert-authority *.ca.example ssh-ed25519 {KEY}\n*.wild.example ssh-ed25519 {KEY}\n",
            hashed("hashed.example")
        );
        let r = |names: &[&str]| {
            resolve(
                &names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &text,
            )
        };
        assert_eq!(r(&["plain.example"]), Ok(vec![FP.to_owned()]));
        assert_eq!(r(&["10.0.0.1"]), Ok(vec![FP.to_owned()]));
        assert_eq!(r(&["hashed.example"]), Ok(vec![FP.to_owned()]));
        assert_eq!(r(&["SHA256:abc"]), Ok(vec!["SHA256:abc".to_owned()]));
        // Not found, a CA line, a wildcard, another hashed name: no key.
        for missing in [
            "other.example",
            "x.ca.example",
            "a.wild.example",
            "hashed.exampl",
        ] {
            assert_eq!(r(&[missing]), Err(missing.to_owned()));
        }
    }
}
