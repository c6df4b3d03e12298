//! The broker's pure parts: routes from the host's variables, upstream URLs, what is stripped.
//! (End to end, through a real proxy: `net::proxy`'s tests, `broker.rs`.)

use super::serve::{is_credential, strip_credentials, strip_hop_by_hop};
use super::*;

fn cred(var: &'static str, header: &'static str, bearer: bool, base: &'static str) -> Credential {
    Credential {
        var: var.into(),
        header: header.into(),
        bearer,
        base_url_var: base.into(),
        upstream: "https://api.example.com".into(),
    }
}

#[test]
fn routes_from_the_hosts_variables() {
    let creds = vec![
        cred(
            "ANTHROPIC_API_KEY",
            "x-api-key",
            false,
            "ANTHROPIC_BASE_URL",
        ),
        cred("OPENAI_API_KEY", "authorization", true, "OPENAI_BASE_URL"),
    ];
    let phantom = || Ok("p".to_owned());
    // Unset and empty variables are not brokered.
    let r = routes(
        &creds,
        |v| (v == "OPENAI_API_KEY").then(|| "".into()),
        phantom,
    );
    assert!(r.unwrap().is_empty());
    let r = routes(
        &creds,
        |v| (v == "ANTHROPIC_API_KEY").then(|| "sk".into()),
        phantom,
    )
    .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].name, "anthropic");
    assert_eq!(r[0].upstream.host, "api.example.com");
    assert_eq!(r[0].inside_url(), "http://127.0.0.3:3129/anthropic");
    // Route names are distinct, whatever the variables' names.
    let named = vec![
        cred("A_KEY", "x-api-key", false, "FOO_BASE_URL"),
        cred("B_KEY", "x-api-key", false, "FOO_URL"),
        cred("C_KEY", "x-api-key", false, "_URL"),
    ];
    let r = routes(&named, |v| v.ends_with("KEY").then(|| "k".into()), phantom).unwrap();
    let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["foo", "foo2", "_url"]);
    // The key never prints.
    let shown = format!("{r:?} {}", describe(&r).join(" "));
    assert!(
        !shown.contains("\"sk\"") && shown.contains("Secret(..)"),
        "{shown}"
    );
    for bad in ["sk\n", "sk\u{7f}"] {
        let e = routes(&creds, |v| v.ends_with("KEY").then(|| bad.into()), phantom);
        assert!(e.is_err());
    }
    let e = routes(
        &creds,
        |v| match v {
            "ANTHROPIC_BASE_URL" => Some("http://gateway.example.com".into()),
            _ => Some("sk".into()),
        },
        phantom,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("ANTHROPIC_BASE_URL"), "{e:#}");
}

#[test]
fn upstream_urls() {
    let ok = |u: &str| Upstream::parse(u).unwrap();
    let u = ok("https://API.example.com/v1/");
    assert_eq!(
        (u.https, u.host.as_str(), u.port, u.prefix.as_str()),
        (true, "api.example.com", 443, "/v1")
    );
    assert_eq!(u.authority(), "api.example.com");
    let u = ok("http://127.0.0.1:8080");
    assert_eq!(
        (u.port, u.prefix.as_str(), u.authority()),
        (8080, "", "127.0.0.1:8080".into())
    );
    let u = ok("http://[::1]:9/x");
    assert_eq!((u.host.as_str(), u.authority()), ("::1", "[::1]:9".into()));
    ok("http://localhost:1");
    for bad in [
        "ftp://a.com",
        "http://a.com",
        "https://user@a.com",
        "https://a.com/?x=1",
        "https://a.com:99999",
        "https://",
        "api.example.com",
    ] {
        assert!(Upstream::parse(bad).is_err(), "{bad}");
    }
    assert!(u.is(&Host::parse("[::1]").unwrap()));
    assert!(ok("https://a.com").is(&Host::parse("A.com.").unwrap()));
    assert!(!ok("https://a.com").is(&Host::parse("b.a.com").unwrap()));
    // One host by another spelling: a mapped address, localhost and its addresses.
    let is = |up: &str, h: &str| ok(up).is(&Host::parse(h).unwrap());
    assert!(is("http://127.0.0.1:9", "[::ffff:127.0.0.1]"));
    assert!(is("https://1.2.3.4", "[::ffff:1.2.3.4]"));
    assert!(is("http://localhost:9", "127.0.0.1"));
    assert!(is("http://localhost:9", "[::1]"));
    assert!(is("http://localhost:9", "[::ffff:127.0.0.1]"));
    assert!(is("http://127.0.0.1:9", "localhost"));
    assert!(is("http://[::1]:9", "LOCALHOST."));
    assert!(!is("http://localhost:9", "127.0.0.2"));
    assert!(!is("http://127.0.0.2:9", "localhost"));
    assert!(!is("https://a.com", "127.0.0.1"));
}

#[test]
fn query_and_hop_by_hop_headers() {
    let route = &routes(
        &[cred("GITLAB_TOKEN", "private-token", false, "GITLAB_URL")],
        |v| (v == "GITLAB_TOKEN").then(|| "k".into()),
        || Ok("p".to_owned()),
    )
    .unwrap()[0];
    assert_eq!(
        strip_credentials("key=a&b=c&KEY=d&%6bey=e&keys=f", route),
        "b=c&keys=f"
    );
    assert_eq!(
        strip_credentials("Access-Token=a&x;oauth_token=b&private_token=c&d=1", route),
        "d=1"
    );
    for name in [
        "X_Api_Key",
        "authorization",
        "API-KEY",
        "Private_Token",
        "cookie",
    ] {
        assert!(is_credential(name, route), "{name}");
    }
    for name in ["anthropic-version", "content-type", "keys", "x-api-keys"] {
        assert!(!is_credential(name, route), "{name}");
    }
    let mut h = http::HeaderMap::new();
    for (n, v) in [
        ("connection", "x-a, keep-alive"),
        ("x-a", "1"),
        ("upgrade", "websocket"),
        ("te", "trailers"),
        ("x-b", "2"),
    ] {
        h.append(
            http::header::HeaderName::from_static(n),
            http::HeaderValue::from_static(v),
        );
    }
    strip_hop_by_hop(&mut h);
    let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["x-b"]);
}

#[test]
fn phantoms_are_random() {
    let a = random_phantom().unwrap();
    let b = random_phantom().unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with("sk-agentbox-phantom-") && a.len() == 20 + 48);
}
