//! Connections the relay hands over (`net::handoff`): the agent's own TCP socket, passed with
//! what it is for. The agent's side here is a loopback TCP connection the test makes, as the
//! relay's listener accepts it inside the sandbox.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use tokio::net::TcpStream;

use super::*;
use crate::net::handoff::{self, Kind};

/// A loopback TCP connection: (the agent's end, the end the relay accepted).
async fn agent_connection() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let agent = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = l.accept().await.unwrap();
    (agent, accepted)
}

/// The relay's line: the token, `HELLO`, and the proxy's answer.
async fn relay_line(p: &Proxy) -> UnixStream {
    let mut line = p.client().await;
    line.write_all(&[handoff::HELLO]).await.unwrap();
    let mut answer = [0u8; 1];
    within("registering", line.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(answer, [handoff::HELLO]);
    line
}

/// What the relay does on its line: the socket with its kind and the capture's target; then
/// it keeps nothing.
async fn hand_over(line: &UnixStream, kind: Kind, target: Option<&str>) -> TcpStream {
    let (agent, accepted) = agent_connection().await;
    let tail = target.map(|t| format!("{t}\n")).unwrap_or_default();
    within(
        "handing over",
        handoff::send(line, kind, &accepted, tail.as_bytes()),
    )
    .await
    .unwrap();
    agent
}

/// Sends `data` in one message with `fds` attached (up to two), as a relay under the agent's
/// control could.
fn send_with(unix: &UnixStream, data: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)));
    rustix::net::sendmsg(
        unix,
        &[IoSlice::new(data)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
}

/// Sends `byte` with `fd` attached.
fn send_raw(unix: &UnixStream, byte: u8, fd: impl AsFd) {
    send_with(unix, &[byte], &[fd.as_fd()]);
}

/// Reads the answer to a CONNECT the proxy accepted.
async fn expect_connect_ok(agent: &mut TcpStream) {
    let mut head = vec![0u8; crate::net::proxy::http::CONNECT_OK.len()];
    within("reply", agent.read_exact(&mut head)).await.unwrap();
    assert_eq!(head, crate::net::proxy::http::CONNECT_OK);
}

/// Everything until the proxy closes the agent's connection (a reset counts as a close).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match within("reading to the end", s.read(&mut buf)).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_handed_over_proxy_client_is_served_on_its_own_socket() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let line = relay_line(&p).await;
    let mut agent = hand_over(&line, Kind::Proxy, None).await;
    let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\nearly|");
    agent.write_all(req.as_bytes()).await.unwrap();
    expect_connect_ok(&mut agent).await;
    agent.write_all(b"ping").await.unwrap();
    agent.shutdown().await.unwrap();
    // Half-close passes through: the echo comes back whole after the agent's FIN.
    assert_eq!(read_to_close(&mut agent).await, b"early|ping");
    drop(agent);
    let (summary, log) = p.stop();
    assert_eq!((summary.allowed, summary.denied.len()), (1, 0));
    assert_eq!(log[0]["method"], "CONNECT");
    assert_eq!(
        (log[0]["bytes_up"].as_u64(), log[0]["bytes_down"].as_u64()),
        (Some(10), Some(10))
    );
}

#[tokio::test]
async fn a_captured_connection_goes_to_its_name_with_no_reply_head() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let target = format!("echo.test:{port}");
    let line = relay_line(&p).await;
    let mut agent = hand_over(&line, Kind::Capture, Some(&target)).await;
    // The agent speaks its own protocol from the first byte, as to the server itself.
    agent.write_all(b"\x16\x03\x01hello").await.unwrap();
    agent.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut agent).await, b"\x16\x03\x01hello");
    drop(agent);
    let (summary, log) = p.stop();
    assert_eq!(summary.requested, [("echo.test".to_string(), port)]);
    assert_eq!(summary.allowed, 1);
    assert_eq!(log[0]["method"], "captured");
}

#[tokio::test]
async fn a_captured_connection_to_a_denied_name_is_closed_unresolved() {
    // Control: the same handover to an allowed name is served (test above); here the name is
    // not allowed, so nothing is looked up and the agent's connection is closed silently.
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let line = relay_line(&p).await;
    let target = format!("rebind.test:{port}");
    let mut agent = hand_over(&line, Kind::Capture, Some(&target)).await;
    let _ = agent.write_all(b"\x16\x03\x01hello").await;
    assert_eq!(read_to_close(&mut agent).await, b"");
    assert_eq!(p.lookups.load(Ordering::SeqCst), 0);
    let (summary, _) = p.stop();
    assert_eq!(summary.allowed, 0);
    assert_eq!(summary.denied.len(), 1, "{:?}", summary.denied);
}

#[tokio::test]
async fn malformed_capture_targets_are_closed_unasked() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let long = format!("{}.test:{port}", "a".repeat(400));
    let line = relay_line(&p).await;
    // The long one last: a target past MAX_TARGET puts the line out of step, and it ends.
    for target in [
        "echo.test",
        "echo.test:",
        "user@echo.test:1",
        "echo.test:99999",
        &long,
    ] {
        let mut agent = hand_over(&line, Kind::Capture, Some(target)).await;
        let _ = agent.write_all(b"x").await;
        assert_eq!(read_to_close(&mut agent).await, b"", "{target}");
    }
    let (summary, _) = p.stop();
    assert!(summary.requested.is_empty(), "{:?}", summary.requested);
}

#[tokio::test]
async fn a_line_needs_the_token() {
    // Control: the relay's line below, with the token, is taken and serves a handover.
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let mut stranger = p.raw().await;
    stranger.write_all(b"AGENTBOX wr0ng\n").await.unwrap();
    stranger.write_all(&[handoff::HELLO]).await.unwrap();
    assert!(read_rest(&mut stranger).await.is_empty(), "no answer");
    // A stranger's try takes nothing from the relay: its line is still free.
    let line = relay_line(&p).await;
    let mut agent = hand_over(&line, Kind::Proxy, None).await;
    let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\n");
    agent.write_all(req.as_bytes()).await.unwrap();
    expect_connect_ok(&mut agent).await;
    drop(agent);
    let (summary, _) = p.stop();
    assert_eq!(summary.allowed, 1);
}

#[tokio::test]
async fn only_the_first_comer_gets_a_line() {
    // The relay registers before the agent starts; a second HELLO (the agent's: it can read
    // the token) is closed unanswered, and a socket passed on it is not served.
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let line = relay_line(&p).await;
    let mut second = p.client().await;
    second.write_all(&[handoff::HELLO]).await.unwrap();
    let (mut agent, accepted) = agent_connection().await;
    let _ = handoff::send(&second, Kind::Proxy, &accepted, b"").await;
    drop(accepted);
    assert!(read_rest(&mut second).await.is_empty(), "no answer");
    let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\n");
    let _ = agent.write_all(req.as_bytes()).await;
    assert_eq!(read_to_close(&mut agent).await, b"");
    // Control: the first line still hands over.
    let mut agent = hand_over(&line, Kind::Proxy, None).await;
    agent.write_all(req.as_bytes()).await.unwrap();
    expect_connect_ok(&mut agent).await;
    drop(agent);
    let (summary, _) = p.stop();
    assert_eq!((summary.allowed, summary.requested.len()), (1, 1));
}

/// Clears `O_NONBLOCK` on `s`'s file description, as the agent can on a copy it kept.
fn set_blocking(s: &TcpStream) {
    let flags = rustix::fs::fcntl_getfl(s).unwrap();
    rustix::fs::fcntl_setfl(s, flags - rustix::fs::OFlags::NONBLOCK).unwrap();
}

#[tokio::test]
async fn a_socket_the_sender_keeps_cannot_wedge_the_proxy() {
    // The agent reads the token, connects to the proxy's socket and passes one end of a TCP
    // connection of its own, keeping a copy: the file description is shared. Were it served,
    // clearing O_NONBLOCK on the copy would make the tunnel's next read block the proxy's one
    // thread (every client, and the proxy's stop, with it).
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let _line = relay_line(&p).await;
    let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\n");
    let (mut agent, kept) = agent_connection().await;
    let unix = p.client().await;
    let _ = handoff::send(&unix, Kind::Proxy, &kept, b"").await;
    agent.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    let served = tokio::time::timeout(Duration::from_secs(2), agent.read_exact(&mut head)).await;
    if let Ok(Ok(_)) = served {
        // The attack goes on, to show what it does: a blocking socket under the tunnel.
        set_blocking(&kept);
        agent.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Control and check: another client is served promptly, and the proxy stops.
    let (mut s, reply) = within("another client", p.connect(&format!("echo.test:{port}"))).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    roundtrip(&mut s, b"still here").await;
    drop(s);
    assert!(!matches!(served, Ok(Ok(_))), "the kept socket was served");
    drop((agent, kept, unix));
    let (summary, _) = p.stop();
    assert_eq!(summary.allowed, 1);
}

#[tokio::test]
async fn only_a_connected_tcp_socket_with_a_handover_byte_is_taken() {
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\n");

    // A UNIX socket instead of a TCP one, on the relay's line: its other end gets nothing,
    // and is closed; the line goes on.
    let line = relay_line(&p).await;
    let (mut other, passed) = UnixStream::pair().unwrap();
    send_raw(&line, 0x02, &passed);
    drop(passed);
    let _ = other.write_all(req.as_bytes()).await;
    assert!(read_rest(&mut other).await.is_empty());
    // Control: the next handover on the line is served.
    let mut agent = hand_over(&line, Kind::Proxy, None).await;
    agent.write_all(req.as_bytes()).await.unwrap();
    expect_connect_ok(&mut agent).await;
    drop(agent);

    // A TCP socket attached to a request's first byte ("C" of CONNECT on the UNIX socket):
    // neither the socket nor the request on the UNIX socket is served.
    let (mut agent, accepted) = agent_connection().await;
    let mut unix = p.client().await;
    send_raw(&unix, b'C', &accepted);
    drop(accepted);
    let _ = unix.write_all(&req.as_bytes()[1..]).await;
    assert!(read_rest(&mut unix).await.is_empty());
    let _ = agent.write_all(req.as_bytes()).await;
    assert_eq!(read_to_close(&mut agent).await, b"");

    // A handover byte without a socket: closed.
    let mut unix = p.client().await;
    unix.write_all(&[0x02]).await.unwrap();
    let _ = unix.write_all(req.as_bytes()).await;
    assert!(read_rest(&mut unix).await.is_empty());

    // The same on the relay's line puts it out of step: it ends.
    let mut line = line;
    line.write_all(&[0x02]).await.unwrap();
    assert!(read_rest(&mut line).await.is_empty());

    let (summary, _) = p.stop();
    assert_eq!(
        summary.allowed, 1,
        "only the control: {:?}",
        summary.requested
    );
}

#[tokio::test]
async fn a_refused_set_of_descriptors_leaves_the_line_in_step() {
    // The kernel cuts a set short when the proxy is out of descriptors (the agent can open
    // many connections), as it refuses more than one: the byte and a capture's target are
    // still read, that connection is closed, and the line goes on (it used to end, and with
    // it the network for the rest of the run).
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let line = relay_line(&p).await;
    let (mut first, a) = agent_connection().await;
    let (_second, b) = agent_connection().await;
    let target = format!("echo.test:{port}\n");
    let msg = [&[0x03][..], target.as_bytes()].concat();
    send_with(&line, &msg, &[a.as_fd(), b.as_fd()]);
    drop((a, b));
    let _ = first.write_all(b"x").await;
    assert_eq!(read_to_close(&mut first).await, b"", "refused, closed");
    // Control: the next handover on the same line is served.
    let mut agent = hand_over(&line, Kind::Capture, Some(target.trim_end())).await;
    agent.write_all(b"ping").await.unwrap();
    agent.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut agent).await, b"ping");
    drop(agent);
    let (summary, _) = p.stop();
    assert_eq!(summary.allowed, 1);
}

#[tokio::test]
async fn a_socket_riding_on_the_token_is_dropped() {
    // The token, a handover byte and a socket in one message: the token's plain read takes
    // the message's descriptor with it, and the kernel closes it; the byte then comes alone
    // and is refused. Control: the same socket handed over on the relay's line is served
    // (`a_handed_over_proxy_client_is_served_on_its_own_socket`).
    let port = echo_server().await;
    let p = Proxy::start(allow(&[format!("echo.test:{port}")]));
    let _line = relay_line(&p).await;
    let (mut agent, accepted) = agent_connection().await;
    let mut unix = p.raw().await;
    let mut msg = format!("AGENTBOX {TOKEN}\n").into_bytes();
    msg.push(0x02);
    send_with(&unix, &msg, &[accepted.as_fd()]);
    drop(accepted);
    let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\n");
    let _ = agent.write_all(req.as_bytes()).await;
    assert_eq!(read_to_close(&mut agent).await, b"", "not served");
    assert!(read_rest(&mut unix).await.is_empty());
    let (summary, _) = p.stop();
    assert!(summary.requested.is_empty(), "{:?}", summary.requested);
}

#[tokio::test]
async fn each_handover_gives_its_place_back_however_it_ends() {
    // Two places: the relay's line holds one, so every handover below needs the other, and
    // one that kept it would leave the next closed at once.
    let port = echo_server().await;
    let p = Proxy::start(Opts {
        max_conns: Some(2),
        ..allow(&[format!("echo.test:{port}")])
    });
    let line = relay_line(&p).await;
    let ok = crate::net::proxy::http::CONNECT_OK;
    // A capture to a name not allowed: closed.
    let mut a = hand_over(&line, Kind::Capture, Some(&format!("rebind.test:{port}"))).await;
    assert_eq!(read_to_close(&mut a).await, b"");
    // A proxy client asking for a name not allowed: refused with a reply.
    let mut a = hand_over(&line, Kind::Proxy, None).await;
    a.write_all(b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut a).await;
    assert!(got.starts_with(b"HTTP/1.1 403"), "{got:?}");
    // A request head that is not one: 400.
    let mut a = hand_over(&line, Kind::Proxy, None).await;
    a.write_all(b"NONSENSE\r\n\r\n").await.unwrap();
    assert!(!read_to_close(&mut a).await.is_empty());
    // The broker's kind with no broker running: closed.
    let mut a = hand_over(&line, Kind::Broker, None).await;
    assert_eq!(read_to_close(&mut a).await, b"");
    // Not a TCP socket: closed, and the line goes on.
    let (mut other, passed) = UnixStream::pair().unwrap();
    send_raw(&line, 0x02, &passed);
    drop(passed);
    assert!(read_rest(&mut other).await.is_empty());
    // A tunnel served and ended by the agent.
    for round in 0..3 {
        let mut a = hand_over(&line, Kind::Proxy, None).await;
        let req = format!("CONNECT echo.test:{port} HTTP/1.1\r\n\r\nround {round}");
        a.write_all(req.as_bytes()).await.unwrap();
        let mut head = vec![0u8; ok.len()];
        within("reply", a.read_exact(&mut head)).await.unwrap();
        assert_eq!(head, ok, "round {round}");
        a.shutdown().await.unwrap();
        assert_eq!(
            read_to_close(&mut a).await,
            format!("round {round}").as_bytes()
        );
    }
    drop(line);
    let (summary, _) = p.stop();
    assert_eq!(summary.allowed, 3);
}
