//! What hostile or broken clients get: no crash, no unbounded memory, and the next client is
//! served. Every test ends with that positive control.

use super::*;

/// The proxy still tunnels to the echo server.
async fn still_serves(p: &Proxy, port: u16) {
    let (mut s, head) = p.connect(&format!("echo.test:{port}")).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    roundtrip(&mut s, b"still here").await;
}

/// Sends `bytes` on a fresh connection (after the token line when `token`), half-closes, and
/// returns all the proxy answers before it closes.
async fn answer_to(p: &Proxy, token: bool, bytes: &[u8]) -> Vec<u8> {
    let mut s = match token {
        true => p.client().await,
        false => p.raw().await,
    };
    // The proxy may close before reading everything; that is its right.
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    read_rest(&mut s).await
}

#[tokio::test]
async fn without_the_token_nothing_is_answered() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let connect = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\n");
    for first in [
        String::new(),
        connect.clone(),
        format!("AGENTBOX wrong\n{connect}"),
        format!("AGENTBOX t0kex\n{connect}"),
        format!("AGENTBOX {TOKEN}X\n{connect}"),
        format!("agentbox {TOKEN}\n{connect}"),
        format!("AGENTBOX {TOKEN}\r\n{connect}"),
    ] {
        let reply = answer_to(&p, false, first.as_bytes()).await;
        assert_eq!(reply, b"", "answered {first:?}");
    }
    still_serves(&p, port).await;
    let (summary, log) = p.stop();
    assert_eq!(
        (summary.requested.len(), log.len()),
        (1, 1),
        "strangers are not even tallied"
    );
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_next_client_is_served() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let mut garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    garbage.extend_from_slice(b"\r\n\r\n");
    for bad in [
        &garbage[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /relative HTTP/1.1\r\nHost: echo.test\r\n\r\n",
        b"GET https://echo.test/ HTTP/1.1\r\n\r\n",
        b"GET http://echo.test@x.org/ HTTP/1.1\r\n\r\n",
        b"CONNECT echo.test HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
    ] {
        let reply = String::from_utf8_lossy(&answer_to(&p, true, bad).await).into_owned();
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{bad:?}: {reply}"
        );
    }
    still_serves(&p, port).await;
}

#[tokio::test]
async fn an_oversized_head_gets_431() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let mut req = format!("CONNECT echo.test:{port} HTTP/1.1\r\nX-Big: ").into_bytes();
    req.extend(std::iter::repeat_n(b'a', 20 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let reply = String::from_utf8_lossy(&answer_to(&p, true, &req).await).into_owned();
    assert!(
        reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{reply}"
    );
    // Never-ending header bytes are cut at the same cap, not buffered.
    let mut s = p.client().await;
    let mut sent = 0usize;
    let chunk = [b'a'; 4096];
    while s.write_all(&chunk).await.is_ok() && sent < 64 << 20 {
        sent += chunk.len();
    }
    assert!(sent < 64 << 20, "the proxy read {sent} bytes of one head");
    still_serves(&p, port).await;
}

#[tokio::test]
async fn slow_clients_are_dropped_at_the_deadline() {
    let port = echo_server().await;
    let p = Proxy::start(Opts {
        head_deadline: Some(Duration::from_millis(300)),
        ..allow(&[format!("echo.test:{port}")])
    });
    // Silent after connecting, after the token, and in the middle of a head.
    for sent in [
        "",
        "AGENTBOX t0",
        &format!("AGENTBOX {TOKEN}\nCONNECT echo.test:{port} HTT"),
    ] {
        let mut s = p.raw().await;
        s.write_all(sent.as_bytes()).await.unwrap();
        assert_eq!(read_rest(&mut s).await, b"", "after {sent:?}");
    }
    // A byte every 20 ms keeps no connection past the deadline: it is one deadline for the
    // whole head, not per read. 500 bytes would take 10 s.
    let mut s = p.client().await;
    let (mut r, mut w) = s.split();
    let drip = async {
        let mut n = 0;
        while n < 500 && w.write_all(b"G").await.is_ok() {
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    };
    let mut byte = [0u8; 1];
    let closed = tokio::select! {
        n = drip => panic!("still open after {n} bytes"),
        r = within("drip", r.read(&mut byte)) => r,
    };
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    // A client that is merely slow but in time still gets through.
    let (mut s, head) = p.connect(&format!("echo.test:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    roundtrip(&mut s, b"tunnels have no head deadline").await;
}

#[tokio::test]
async fn hangups_at_every_stage_leave_the_proxy_serving() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let token = format!("AGENTBOX {TOKEN}\n");
    let connect = format!("{token}CONNECT echo.test:{port} HTTP/1.1\r\n\r\n");
    let get = format!("{token}GET http://echo.test:{port}/ HTTP/1.1\r\n\r\n");
    let socks_req = [
        token.as_bytes(),
        &[5, 1, 0, 5, 1, 0],
        &socks_name("echo.test"),
        &port.to_be_bytes(),
    ]
    .concat();
    let stages: Vec<Vec<u8>> = vec![
        vec![],
        b"AGENT".to_vec(),
        token.clone().into_bytes(),
        format!("{token}CONN").into_bytes(),
        connect.clone().into_bytes(),
        get.into_bytes(),
        [token.as_bytes(), &[5]].concat(),
        [token.as_bytes(), &[5, 1, 0]].concat(),
        [token.as_bytes(), &[5, 1, 0, 5, 1, 0, 3, 9, b'e']].concat(),
        socks_req,
        format!("{connect}half a message").into_bytes(),
    ];
    for _round in 0..3 {
        for bytes in &stages {
            let mut s = p.raw().await;
            s.write_all(bytes).await.unwrap();
            drop(s);
        }
    }
    // Hang up while the echo server is still sending back.
    let (mut s, _) = p.connect(&format!("echo.test:{port}")).await;
    s.write_all(&vec![b'x'; 256 * 1024]).await.unwrap();
    drop(s);
    still_serves(&p, port).await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let port = echo_server().await;
    let p = Proxy::start(Opts {
        max_conns: Some(2),
        ..allow(&[format!("echo.test:{port}")])
    });
    let (mut a, _) = p.connect(&format!("echo.test:{port}")).await;
    let (b, _) = p.connect(&format!("echo.test:{port}")).await;
    let (mut c, head) = p.connect(&format!("echo.test:{port}")).await;
    assert_eq!(head, "", "a third connection was served");
    assert_eq!(read_rest(&mut c).await, b"");
    roundtrip(&mut a, b"the first two still work").await;
    drop(b);
    // Its permit comes back once the proxy has seen the close; bounded retries.
    let mut served = false;
    for _ in 0..250 {
        let (mut s, head) = p.connect(&format!("echo.test:{port}")).await;
        if !head.is_empty() {
            roundtrip(&mut s, b"a freed slot").await;
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the freed slot was never given out");
}

/// Open-file limit (soft) from /proc/self/limits.
fn nofile_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test]
async fn a_thousand_tunnels_at_once() {
    // Each tunnel costs 4 descriptors in this process: client, proxy's two ends, echo's end.
    let limit = nofile_limit().unwrap_or(1024);
    let n = 1000.min(limit.saturating_sub(100) / 4);
    if n < 1000 {
        println!("NOTE: open-file limit {limit} allows {n} tunnels, not 1000");
    }
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    // Open them all (64 handshakes in flight at a time), then talk on all of them at once.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let opened = (0..n).map(|_| {
        let gate = gate.clone();
        let p = &p;
        async move {
            let _turn = gate.acquire().await.unwrap();
            let (s, head) = p.connect(&format!("echo.test:{port}")).await;
            assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
            s
        }
    });
    let mut tunnels = within("opening", join_all(opened)).await;
    let talks = tunnels.iter_mut().enumerate().map(|(i, s)| async move {
        roundtrip(s, format!("tunnel {i} of many").as_bytes()).await;
    });
    within("talking", join_all(talks)).await;
    println!("{n} tunnels open; test process {}", rss());
    drop(tunnels);
    let (summary, _) = p.stop();
    assert_eq!(summary.allowed, n as u64);
}

/// `join_all` without the futures crate: polls every future in one task (fine for a test).
async fn join_all<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        match pending {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(()),
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?");
    line.split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn stop_is_prompt_with_tunnels_open_and_logs_them() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let mut open = Vec::new();
    for i in 0..3 {
        let (mut s, _) = p.connect(&format!("echo.test:{port}")).await;
        roundtrip(&mut s, &vec![b'x'; 10 * (i + 1)]).await;
        open.push(s);
    }
    // `stop` itself is bounded by `Proxy::stop`; the tunnels are cut, not waited for.
    let (summary, log) = p.stop();
    assert_eq!(summary.allowed, 3);
    let mut bytes: Vec<(u64, u64)> = log
        .iter()
        .map(|l| {
            (
                l["bytes_up"].as_u64().unwrap(),
                l["bytes_down"].as_u64().unwrap(),
            )
        })
        .collect();
    bytes.sort();
    assert_eq!(bytes, [(10, 10), (20, 20), (30, 30)]);
    for mut s in open {
        assert_eq!(
            read_rest(&mut s).await,
            b"",
            "the client sees its tunnel closed"
        );
    }
}
