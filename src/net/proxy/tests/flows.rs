//! What clients get: CONNECT, plain HTTP forwarding and SOCKS5 to allowed destinations, the
//! refusals, the tally and the log.

use super::*;
use crate::net::proxy::socks;

/// The whole reply to `CONNECT target` on a connection the proxy closes.
async fn refused(p: &Proxy, target: &str) -> String {
    let (mut s, head) = p.connect(target).await;
    let body = read_rest(&mut s).await;
    head + &String::from_utf8_lossy(&body)
}

#[tokio::test]
async fn connect_tunnels_to_an_allowed_name_with_half_close() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let mut s = p.client().await;
    // Bytes sent right behind the request head (as a TLS client might) must not be lost.
    let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\nearly|");
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(
        read_head(&mut s).await,
        "HTTP/1.1 200 Connection established\r\n\r\n"
    );
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 10];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"early|ping");
    s.write_all(b"last").await.unwrap();
    s.shutdown().await.unwrap();
    // The echo server only closes after our half-close reached it, and its data still flows.
    assert_eq!(read_rest(&mut s).await, b"last");
    drop(s);
    let (summary, log) = p.stop();
    assert_eq!(summary.requested, [("echo.test".to_string(), port)]);
    assert_eq!((summary.allowed, summary.denied.len()), (1, 0));
    assert_eq!(log.len(), 1, "{log:?}");
    let line = &log[0];
    assert!(line["time"].as_f64().unwrap() > 1.6e9);
    let mut rest = line.clone();
    rest.as_object_mut().unwrap().remove("time");
    assert_eq!(
        rest,
        serde_json::json!({"host": "echo.test", "port": port, "method": "CONNECT",
            "allowed": true, "reason": format!("allowed by --allow-domain echo.test:{port}"),
            "bytes_up": 14, "bytes_down": 14})
    );
}

#[tokio::test]
async fn plain_http_reaches_the_origin_in_origin_form() {
    let origin = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = origin.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = origin.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.unwrap() == 1 {
            head.push(byte[0]);
        }
        let mut body = [0u8; 4];
        s.read_exact(&mut body).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        (String::from_utf8(head).unwrap(), body)
    });
    let p = Proxy::start(allow(&[format!("web.test:{port}")]));
    let mut s = p.client().await;
    let req = format!(
        "POST http://web.test:{port}/p?q=1 HTTP/1.1\r\nHost: elsewhere.org\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n\
         User-Agent: t\r\nContent-Length: 4\r\n\r\nbody"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let reply = read_rest(&mut s).await;
    assert!(
        reply.ends_with(b"\r\n\r\nhello"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let (head, body) = within("origin", server).await.unwrap();
    assert_eq!(
        head,
        format!(
            "POST /p?q=1 HTTP/1.1\r\nHost: web.test:{port}\r\nUser-Agent: t\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\n"
        )
    );
    assert_eq!(&body, b"body");
    let (summary, log) = p.stop();
    assert_eq!(summary.allowed, 1);
    assert_eq!(
        (log[0]["method"].as_str(), log[0]["bytes_down"].as_u64()),
        (Some("POST"), Some(43))
    );
}

#[tokio::test]
async fn socks5_connects_by_name_and_address_and_refuses_with_codes() {
    let port = echo_server().await;
    let dead = closed_port().await;
    let p = Proxy::start(allow(&[
        format!("echo.test:{port}"),
        format!("echo.test:{dead}"),
        format!("127.0.0.1:{port}"),
        format!("nx.test:{port}"),
    ]));
    for addr in [socks_name("echo.test"), vec![1, 127, 0, 0, 1]] {
        let (mut s, reply) = p.socks(&addr, port).await;
        assert_eq!(reply, socks::reply(socks::SUCCEEDED), "{addr:?}");
        roundtrip(&mut s, b"over socks").await;
    }
    for (addr, port, code) in [
        (socks_name("other.test"), port, socks::NOT_ALLOWED),
        (socks_name("rebind.test"), port, socks::NOT_ALLOWED),
        (
            vec![4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            port,
            socks::NOT_ALLOWED,
        ),
        (socks_name("nx.test"), port, socks::HOST_UNREACHABLE),
        (socks_name("echo.test"), dead, socks::REFUSED),
    ] {
        let (mut s, reply) = p.socks(&addr, port).await;
        assert_eq!(reply, socks::reply(code), "{addr:?}");
        assert_eq!(read_rest(&mut s).await, b"", "closed after a refusal");
    }
    let (summary, log) = p.stop();
    assert_eq!(
        (summary.allowed, summary.failed, summary.denied.len()),
        (2, 2, 3)
    );
    assert!(log.iter().all(|l| l["method"] == "SOCKS5"));
}

#[tokio::test]
async fn a_denied_name_is_refused_before_any_lookup() {
    let port = echo_server().await;
    let p = Proxy::start(Opts {
        allow: vec!["*.example.com".into(), format!("echo.test:{port}")],
        deny: vec!["evil.example.com".into()],
        ..Opts::default()
    });
    let reply = refused(&p, "never-resolves.invalid:443").await;
    assert_blocked(&reply, "never-resolves.invalid:443", "not in the allowlist");
    let reply = refused(&p, "evil.example.com:443").await;
    assert_blocked(
        &reply,
        "evil.example.com:443",
        "denied by --deny-domain evil.example.com",
    );
    let mut s = p.client().await;
    s.write_all(b"GET http://other.org/x HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8(read_rest(&mut s).await).unwrap();
    assert_blocked(&reply, "other.org:80", "not in the allowlist");
    assert_eq!(
        p.lookups.load(Ordering::SeqCst),
        0,
        "a denied name was looked up"
    );
    // Positive control: an allowed name is looked up (and, being NXDOMAIN here, fails: 502).
    let reply = refused(&p, "nx.example.com:443").await;
    assert!(reply.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{reply}");
    assert!(reply.contains("could not resolve: NXDOMAIN"), "{reply}");
    assert_eq!(p.lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn private_destinations_need_a_pattern_that_names_them() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[
        format!("rebind.test:{port}"),
        format!("localhost:{port}"),
    ]));
    // IP literals no pattern names (the echo server is there: a leak would show as a 200).
    for target in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let reply = refused(&p, &target).await;
        assert_blocked(&reply, &target, "an IP address no --allow-domain names");
    }
    // Allowed by name, but DNS answers loopback: rebinding, refused after the lookup.
    let target = format!("rebind.test:{port}");
    let reply = refused(&p, &target).await;
    assert_blocked(&reply, &target, "resolves to non-public address 127.0.0.1");
    p.stop();

    // Positive controls: a pattern naming the address, or `localhost` itself (the rules let a
    // pattern that names localhost reach loopback; this one goes through the host's resolver).
    let p = Proxy::start(Opts {
        system_dns: true,
        ..allow(&[format!("127.0.0.1:{port}"), format!("localhost:{port}")])
    });
    for target in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (mut s, head) = p.connect(&target).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{target}: {head}");
        roundtrip(&mut s, target.as_bytes()).await;
    }
    assert_eq!(p.stop().0.allowed, 2);
}

#[tokio::test]
async fn the_summary_and_the_log_agree() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[
        format!("echo.test:{port}"),
        format!("nx.test:{port}"),
    ]));
    let (mut s, _) = p.connect(&format!("echo.test:{port}")).await;
    roundtrip(&mut s, b"12345").await;
    drop(s);
    for _ in 0..2 {
        refused(&p, "x.org:443").await;
    }
    let (mut s, _) = p.socks(&socks_name("x.org"), 443).await;
    read_rest(&mut s).await;
    refused(&p, &format!("nx.test:{port}")).await;
    let (summary, log) = p.stop();
    assert_eq!(
        summary,
        Summary {
            requested: vec![
                ("echo.test".into(), port),
                ("nx.test".into(), port),
                ("x.org".into(), 443)
            ],
            denied: vec![("x.org".into(), 443, "not in the allowlist".into(), 3)],
            allowed: 1,
            failed: 1,
            untracked: 0,
        }
    );
    let mut got: Vec<(String, bool, String, u64)> = log
        .iter()
        .map(|l| {
            let (h, m) = (l["host"].as_str().unwrap(), l["method"].as_str().unwrap());
            (
                format!("{m} {h}"),
                l["allowed"].as_bool().unwrap(),
                l["reason"].as_str().unwrap().into(),
                l["bytes_up"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let want =
        |m: &str, allowed, reason: &str, up| (m.to_string(), allowed, reason.to_string(), up);
    assert_eq!(
        got,
        [
            want(
                "CONNECT echo.test",
                true,
                &format!("allowed by --allow-domain echo.test:{port}"),
                5
            ),
            want("CONNECT nx.test", true, "could not resolve: NXDOMAIN", 0),
            want("CONNECT x.org", false, "not in the allowlist", 0),
            want("CONNECT x.org", false, "not in the allowlist", 0),
            want("SOCKS5 x.org", false, "not in the allowlist", 0),
        ]
    );
}

#[tokio::test]
async fn an_unwritable_log_costs_log_lines_only() {
    let port = echo_server().await;
    let p = Proxy::start(Opts {
        unwritable_log: true,
        ..allow(&[format!("echo.test:{port}")])
    });
    refused(&p, "x.org:443").await;
    let (mut s, head) = p.connect(&format!("echo.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    roundtrip(&mut s, b"still works").await;
    drop(s);
    let (summary, log) = p.stop();
    assert_eq!(
        (summary.allowed, summary.denied.len(), log.len()),
        (1, 1, 0)
    );
}
