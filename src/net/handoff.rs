//! How the relay gives the host proxy a connection it accepted inside the sandbox: the TCP
//! socket itself, passed over the proxy's UNIX socket (`SCM_RIGHTS`), so the proxy reads and
//! writes the agent's connection directly and the relay leaves the data path. The bytes then
//! take one proxy hop (the sandbox's loopback, the proxy's splice, the upstream connection)
//! instead of two (relay, UNIX socket, proxy).
//!
//! Sockets only ever leave the sandbox this way, never enter it: the proxy keeps every socket
//! of the host's network namespace to itself, because a TCP socket can be dissolved with
//! `connect(AF_UNSPEC)` and connected again anywhere its namespace reaches.
//!
//! What arrives is the sandbox's word, so the proxy takes only a connected TCP socket (no
//! listener, no UNIX socket, no file, no pipe), exactly one, and reads it like any client: the
//! same token, the same request parsing, the same policy. Anything the sandbox could pass
//! instead is something it could already read and write itself.
//!
//! And only from the relay, on its line: one connection it opens and registers (`HELLO`)
//! before the agent starts, the only one the proxy takes sockets from. The agent can read the
//! token and reach the proxy's socket, so a socket it passed itself would be one it still
//! holds: the file description is shared, and clearing `O_NONBLOCK` on its copy would make the
//! proxy's next read, write or splice on it block the proxy's one thread, every tunnel with it,
//! and `agentbox`'s exit (a socket the relay accepted it never holds: the relay closes its copy
//! and nothing can take one from it, ptrace and pidfd_getfd being refused).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketType,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// What a handed-over connection carries; the byte the socket travels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client of the proxy port: CONNECT, plain HTTP or SOCKS5 follow on the socket.
    Proxy,
    /// A connection to a synthetic address: "name:port\n" follows on the UNIX stream, then the
    /// client's own protocol on the socket.
    Capture,
    /// A client of the credential broker's port: HTTP on the socket.
    Broker,
}

impl Kind {
    // Neither an HTTP method's first byte, SOCKS's version nor the broker's stream mark.
    const PROXY: u8 = 0x02;
    const CAPTURE: u8 = 0x03;
    const BROKER: u8 = 0x04;

    fn byte(self) -> u8 {
        match self {
            Kind::Proxy => Kind::PROXY,
            Kind::Capture => Kind::CAPTURE,
            Kind::Broker => Kind::BROKER,
        }
    }

    pub fn from_byte(b: u8) -> Option<Kind> {
        match b {
            Kind::PROXY => Some(Kind::Proxy),
            Kind::CAPTURE => Some(Kind::Capture),
            Kind::BROKER => Some(Kind::Broker),
            _ => None,
        }
    }
}

/// Longest "name:port\n" a capture sends (a DNS name is at most 253 bytes).
pub const MAX_TARGET: usize = 300;

/// The relay's first byte after the token on its line, and the proxy's answer once the line
/// is registered. Neither a handover byte, the broker's mark, SOCKS's version nor an HTTP
/// method's first byte.
pub const HELLO: u8 = 0x06;

/// Sends `socket` with the byte for `kind`, then `tail` (a capture's "name:port\n"), on the
/// relay's line. The caller keeps the line to itself until this returns, so that one
/// handover's bytes are not mixed with another's.
pub async fn send(unix: &UnixStream, kind: Kind, socket: impl AsFd, tail: &[u8]) -> io::Result<()> {
    let fds = [socket.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let byte = [kind.byte()];
    // One message, so the socket and its target arrive together; the socket rides on the
    // first byte, which the proxy reads alone with room for it.
    let sent = loop {
        unix.ready(Interest::WRITABLE).await?;
        let sent = unix.try_io(Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(io::ErrorKind::OutOfMemory.into());
            }
            Ok(rustix::net::sendmsg(
                unix,
                &[IoSlice::new(&byte), IoSlice::new(tail)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?)
        });
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    // What did not fit in the socket's buffer follows (the descriptor went with the first).
    let mut rest = &tail[sent - 1..];
    while !rest.is_empty() {
        unix.ready(Interest::WRITABLE).await?;
        match unix.try_io(Interest::WRITABLE, || {
            Ok(rustix::net::send(unix, rest, SendFlags::NOSIGNAL)?)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The descriptors that came with a byte.
#[derive(Debug)]
pub enum Passed {
    None,
    /// Exactly one (closed on exec).
    One(OwnedFd),
    /// More than one, or a set the kernel cut short (this process out of descriptors, say):
    /// all of them closed. The byte still counts, so that the relay's line stays in step
    /// and goes on once descriptors are free again.
    Refused,
}

/// Reads one byte, and the descriptors that came with it. `None`: end of input.
pub async fn recv_byte(unix: &UnixStream) -> io::Result<Option<(u8, Passed)>> {
    // Room for a few: what does not fit is closed by the kernel and flagged as truncated.
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    loop {
        unix.ready(Interest::READABLE).await?;
        let got = unix.try_io(Interest::READABLE, || {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut byte = [0u8; 1];
            let msg = rustix::net::recvmsg(
                unix,
                &mut [IoSliceMut::new(&mut byte)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            let mut fds: Vec<OwnedFd> = Vec::new();
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = m {
                    fds.extend(rights);
                }
            }
            if msg.bytes == 0 {
                return Ok(None);
            }
            if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > 1 {
                return Ok(Some((byte[0], Passed::Refused)));
            }
            Ok(Some((byte[0], fds.pop().map_or(Passed::None, Passed::One))))
        });
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// The passed descriptor as a TCP stream, if it is one: a connected TCP socket (IPv4 or IPv6),
/// not a listener, a UNIX socket, a datagram socket or anything that is not a socket.
pub fn tcp_stream(fd: OwnedFd) -> io::Result<tokio::net::TcpStream> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let stat = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        return Err(bad("not a socket"));
    }
    let domain = rustix::net::sockopt::socket_domain(&fd)?;
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err(bad("not an internet socket"));
    }
    if rustix::net::sockopt::socket_type(&fd)? != SocketType::STREAM
        || rustix::net::sockopt::socket_protocol(&fd)? != Some(rustix::net::ipproto::TCP)
    {
        return Err(bad("not a TCP socket"));
    }
    if rustix::net::sockopt::socket_acceptconn(&fd)? {
        return Err(bad("a listening socket"));
    }
    // Connected (or it was: a peer that has gone is an end of input, as for any client).
    rustix::net::getpeername(&fd)?.ok_or_else(|| bad("not connected"))?;
    let stream = std::net::TcpStream::from(fd);
    stream.set_nonblocking(true)?;
    let _ = stream.set_nodelay(true);
    tokio::net::TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn a_tcp_socket_crosses_and_works() {
        let (relay, mut proxy) = UnixStream::pair().unwrap();
        let (mut agent, accepted) = tcp_pair().await;
        send(&relay, Kind::Capture, &accepted, b"echo.test:443\n")
            .await
            .unwrap();
        drop(accepted); // the relay keeps nothing
        let (byte, passed) = recv_byte(&proxy).await.unwrap().unwrap();
        assert_eq!(Kind::from_byte(byte), Some(Kind::Capture));
        let Passed::One(fd) = passed else {
            panic!("{passed:?}")
        };
        // The target follows the byte, for plain reads.
        let mut tail = [0u8; 14];
        proxy.read_exact(&mut tail).await.unwrap();
        assert_eq!(&tail, b"echo.test:443\n");
        let mut stream = tcp_stream(fd).unwrap();
        agent.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        stream.write_all(b"pong").await.unwrap();
        agent.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        // The received copy is closed on exec.
        let flags = rustix::io::fcntl_getfd(&stream).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    #[tokio::test]
    async fn a_plain_byte_has_no_descriptor() {
        let (mut relay, proxy) = UnixStream::pair().unwrap();
        relay.write_all(b"C").await.unwrap();
        drop(relay);
        let (byte, passed) = recv_byte(&proxy).await.unwrap().unwrap();
        assert_eq!(byte, b'C');
        assert!(matches!(passed, Passed::None), "{passed:?}");
        assert!(recv_byte(&proxy).await.unwrap().is_none(), "end of input");
    }

    #[tokio::test]
    async fn anything_but_a_connected_tcp_socket_is_refused() {
        // Positive control: a connected TCP socket passes the same check.
        let (_agent, accepted) = tcp_pair().await;
        let owned: OwnedFd = accepted.into_std().unwrap().into();
        assert!(tcp_stream(owned).is_ok());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let unconnected = rustix::net::socket(
            AddressFamily::INET,
            SocketType::STREAM,
            Some(rustix::net::ipproto::TCP),
        )
        .unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect("127.0.0.1:9").unwrap();
        let (unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (pipe_r, _pipe_w) = rustix::pipe::pipe().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let cases: Vec<(&str, OwnedFd)> = vec![
            ("listener", listener.into()),
            ("unconnected", unconnected),
            ("udp", udp.into()),
            ("unix", unix.into()),
            ("pipe", pipe_r),
            ("file", file.into()),
        ];
        for (what, fd) in cases {
            assert!(tcp_stream(fd).is_err(), "{what} accepted");
        }
    }

    #[tokio::test]
    async fn more_than_one_descriptor_is_refused() {
        let (relay, proxy) = UnixStream::pair().unwrap();
        let (_a, b) = tcp_pair().await;
        let (_c, d) = tcp_pair().await;
        let fds = [b.as_fd(), d.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &relay,
            &[IoSlice::new(&[Kind::PROXY])],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        let (byte, passed) = recv_byte(&proxy).await.unwrap().unwrap();
        assert_eq!(byte, Kind::PROXY);
        assert!(matches!(passed, Passed::Refused), "{passed:?}");
    }
}
